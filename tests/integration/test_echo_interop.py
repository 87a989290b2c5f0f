"""C-ECHO between dicomnet and real peers: Orthanc, dcmtk, pynetdicom, both ways."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from dicomnet import Client, Server
from dicomnet.errors import AssociationRejected
from dicomnet.interfaces import AssociationInfo, ServiceContext

from .peers import Orthanc, PynetdicomSCP, Storescp, echoscu, require

VERIFICATION = "1.2.840.10008.1.1"


class Recorder:
    def __init__(self) -> None:
        self.associations: list[AssociationInfo] = []
        self.echoes: list[ServiceContext] = []

    def on_association(self, info: AssociationInfo) -> None:
        self.associations.append(info)

    def on_echo(self, ctx: ServiceContext) -> None:
        self.echoes.append(ctx)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def our_server(recorder: Recorder) -> Iterator[Server]:
    with Server("DICOMNET", recorder, read_timeout=10, artim_timeout=5).start("127.0.0.1", 0) as server:
        yield server


# ------------------------------------------------------------ our Client -> peers
def test_client_echo_to_orthanc(orthanc: Orthanc) -> None:
    with Client("DICOMNET").associate("127.0.0.1", orthanc.dicom_port, orthanc.aet,
                                      contexts=[VERIFICATION]) as assoc:
        assert assoc.echo() == 0
        assert assoc.echo() == 0
        assert assoc.negotiated.peer_implementation_class_uid  # Orthanc sends dcmtk's
    assert assoc.is_closed


def test_client_default_contexts_with_orthanc(orthanc: Orthanc) -> None:
    with Client("DICOMNET").associate("127.0.0.1", orthanc.dicom_port, orthanc.aet) as assoc:
        assert len(assoc.negotiated.contexts) > 10
        assert assoc.echo() == 0


def test_wrong_called_ae_rejected_by_orthanc(orthanc: Orthanc) -> None:
    with pytest.raises(AssociationRejected) as info:
        Client("DICOMNET").associate("127.0.0.1", orthanc.dicom_port, "NOT_ORTHANC", contexts=[VERIFICATION])
    assert info.value.source == 1 and info.value.reason == 7
    assert "called-AE-title-not-recognized" in str(info.value)


def test_client_echo_to_dcmtk_storescp(storescp: Storescp) -> None:
    with Client("DICOMNET").associate("127.0.0.1", storescp.port, storescp.aet,
                                      contexts=[VERIFICATION]) as assoc:
        for _ in range(3):
            assert assoc.echo() == 0


def test_client_echo_to_pynetdicom(pynetdicom_scp: PynetdicomSCP) -> None:
    with Client("DICOMNET").associate("127.0.0.1", pynetdicom_scp.port, pynetdicom_scp.aet,
                                      contexts=[VERIFICATION]) as assoc:
        assert assoc.echo() == 0
        assert assoc.negotiated.peer_implementation_version_name.startswith("PYNETDICOM")


# ------------------------------------------------------------ peers -> our Server
def test_dcmtk_echoscu_to_our_server(our_server: Server, recorder: Recorder) -> None:
    result = echoscu(our_server.port, "DICOMNET", "--repeat", "3", calling="ECHOSCU")
    assert result.ok, result.output
    assert len(recorder.echoes) == 3
    assert recorder.associations[0].calling_ae == "ECHOSCU"
    assert recorder.associations[0].negotiated.peer_implementation_class_uid.startswith("1.2.276.0.7230010")


def test_dcmtk_echoscu_wrong_called_ae(our_server: Server, recorder: Recorder) -> None:
    result = echoscu(our_server.port, "SOMEONE_ELSE")
    assert not result.ok
    assert "Called AE Title Not Recognized" in result.output or "Rejected" in result.output
    assert recorder.echoes == []


def test_pynetdicom_to_our_server(our_server: Server, recorder: Recorder) -> None:
    require("pynetdicom")
    from pynetdicom import AE

    ae = AE("PYNETDICOM")
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate("127.0.0.1", our_server.port, ae_title="DICOMNET")
    assert assoc.is_established
    try:
        assert assoc.send_c_echo().Status == 0
        assert assoc.send_c_echo().Status == 0
    finally:
        assoc.release()
    assert assoc.is_released
    assert [c.calling_ae for c in recorder.echoes] == ["PYNETDICOM", "PYNETDICOM"]


def test_orthanc_echo_to_our_server(orthanc: Orthanc, our_server: Server, recorder: Recorder) -> None:
    orthanc.add_modality("DICOMNET_ECHO", "DICOMNET", our_server.port)
    orthanc.post("/modalities/DICOMNET_ECHO/echo", {})  # raises on failure
    assert len(recorder.echoes) == 1
    assert recorder.associations[0].calling_ae == orthanc.aet


def test_orthanc_echo_to_wrong_ae_fails(orthanc: Orthanc, our_server: Server, recorder: Recorder) -> None:
    orthanc.add_modality("DICOMNET_WRONG", "WRONG_AE", our_server.port)
    assert not orthanc.echo("DICOMNET_WRONG", timeout=20)
    assert recorder.echoes == []


def _wait_idle(server: Server, timeout: float = 5.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while server.active_associations and time.monotonic() < deadline:
        time.sleep(0.01)
    return server.active_associations == 0


def test_peers_aborting_leave_our_server_serving(our_server: Server, recorder: Recorder) -> None:
    require("pynetdicom")
    from pynetdicom import AE

    result = echoscu(our_server.port, "DICOMNET", "--abort")  # A-ABORT instead of A-RELEASE
    assert result.ok, result.output
    ae = AE("PYNETDICOM")
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate("127.0.0.1", our_server.port, ae_title="DICOMNET")
    assert assoc.send_c_echo().Status == 0
    assoc.abort()
    assert assoc.is_aborted
    assert _wait_idle(our_server)
    assert len(recorder.echoes) == 2
    assert echoscu(our_server.port, "DICOMNET").ok
