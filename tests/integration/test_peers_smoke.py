"""The peer harness itself works: each peer starts, answers, and is cleaned up.

These test the fixtures in ``conftest.py``/``peers.py``, not dicomnet.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .peers import (
    PEERS_STARTED,
    Dcmqrscp,
    Orthanc,
    PynetdicomSCP,
    Storescp,
    echoscu,
    findscu,
    free_port,
    getscu,
    movescu,
    port_accepts,
    storescu,
)


def test_ci_guard_reads_this_record(request: pytest.FixtureRequest) -> None:
    root_conftest = Path(__file__).parents[1] / "conftest.py"
    guard = request.config.pluginmanager.get_plugin(str(root_conftest))
    assert guard is not None
    started, _ = guard._peer_record(request.config)
    assert started is PEERS_STARTED


def test_free_port_is_unbound_and_not_repeated() -> None:
    ports = {free_port() for _ in range(20)}
    assert len(ports) == 20
    assert not any(port_accepts(p) for p in ports)


def test_orthanc_answers_rest_and_echo(orthanc: Orthanc) -> None:
    system = orthanc.get("/system")
    assert system["DicomAet"] == "ORTHANC"
    assert system["DicomPort"] == orthanc.dicom_port
    assert echoscu(orthanc.dicom_port, "ORTHANC").ok
    # DicomCheckCalledAet is on: a wrong called AE title is rejected.
    assert not echoscu(orthanc.dicom_port, "NOT_ORTHANC").ok


def test_orthanc_upload_and_list(orthanc: Orthanc, testdata: Callable[[str], str]) -> None:
    answer = orthanc.upload(testdata("CT_small.dcm"))
    assert answer["Status"] in ("Success", "AlreadyStored")
    assert answer["ID"] in orthanc.instances()
    tags = orthanc.instance_tags(answer["ID"])
    assert tags["Modality"] == "CT"


def test_orthanc_as_scu_toward_a_registered_storescp(
    orthanc: Orthanc, storescp: Storescp, testdata: Callable[[str], str]
) -> None:
    answer = orthanc.upload(testdata("CT_small.dcm"))
    orthanc.add_modality("SMOKE", storescp.aet, storescp.port)
    assert orthanc.echo("SMOKE")
    orthanc.store("SMOKE", [answer["ID"]])
    assert len(storescp.wait_for_files(1)) == 1


def test_storescp_receives_from_storescu(
    storescp: Storescp, testdata: Callable[[str], str]
) -> None:
    from pydicom import dcmread

    src = Path(testdata("CT_small.dcm"))
    result = storescu(storescp.port, storescp.aet, [src])
    assert result.ok, result.output
    (received,) = storescp.wait_for_files(1)
    assert received.name.startswith("CT.")
    sent, got = dcmread(src), dcmread(received)
    assert got.SOPInstanceUID == sent.SOPInstanceUID
    assert got.PixelData == sent.PixelData


def test_storescp_ignore_mode_writes_nothing(
    make_storescp: Callable[..., Storescp], testdata: Callable[[str], str]
) -> None:
    scp = make_storescp(ignore=True)
    assert storescu(scp.port, scp.aet, [testdata("CT_small.dcm")]).ok
    assert scp.files() == []


def test_peer_is_stopped_and_its_dir_removed() -> None:
    with Storescp() as scp:
        port, directory = scp.port, scp.dir
        assert directory is not None and directory.is_dir()
        assert port_accepts(port)
    assert not directory.exists()
    assert not port_accepts(port)


def test_pynetdicom_scp_answers_pynetdicom_echo_and_store(
    pynetdicom_scp: PynetdicomSCP, testdata: Callable[[str], str]
) -> None:
    from pydicom import dcmread
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage, Verification

    ae = AE(ae_title="SMOKE_SCU")
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", pynetdicom_scp.port, ae_title=pynetdicom_scp.aet)
    assert assoc.is_established
    try:
        assert assoc.send_c_echo().Status == 0x0000
        ds = dcmread(testdata("CT_small.dcm"))
        assert assoc.send_c_store(ds).Status == 0x0000
    finally:
        assoc.release()
    (received,) = pynetdicom_scp.files()
    assert received.name == f"{ds.SOPInstanceUID}.dcm"
    assert dcmread(received).PatientName == ds.PatientName


def test_pynetdicom_scp_rejects_unknown_handler() -> None:
    with pytest.raises(ValueError, match="bogus"):
        PynetdicomSCP(handlers={"bogus": print})


def test_dcmqrscp_preloaded_answers_find(
    make_dcmqrscp: Callable[..., Dcmqrscp], testdata: Callable[[str], str]
) -> None:
    from pydicom import dcmread

    src = testdata("CT_small.dcm")
    qr = make_dcmqrscp(preload=[src])
    assert echoscu(qr.port, qr.aet).ok
    uid = dcmread(src).StudyInstanceUID
    result = findscu(qr.port, qr.aet, ["QueryRetrieveLevel=STUDY", "StudyInstanceUID"])
    assert result.ok, result.output
    assert uid in result.output


def test_orthanc_queries_and_moves_from_dcmqrscp(
    orthanc: Orthanc, make_dcmqrscp: Callable[..., Dcmqrscp], testdata: Callable[[str], str]
) -> None:
    from pydicom import dcmread

    src = testdata("MR_small.dcm")
    study = dcmread(src).StudyInstanceUID
    qr = make_dcmqrscp(preload=[src], move_destinations={orthanc.aet: orthanc.dicom_port})
    orthanc.add_modality("QR", qr.aet, qr.port)
    orthanc.clear()
    answers = orthanc.query("QR", "Study", {"StudyInstanceUID": study})
    assert [a["StudyInstanceUID"] for a in answers] == [study]
    orthanc.move("QR", "Study", [{"StudyInstanceUID": study}])
    (moved,) = orthanc.instances()
    assert orthanc.instance_tags(moved)["StudyInstanceUID"] == study


def _find_one_patient(event: Any) -> Iterator[tuple[int, Any]]:
    """C-FIND handler run inside the pynetdicom child process."""
    from pydicom import Dataset

    answer = Dataset()
    answer.QueryRetrieveLevel = "PATIENT"
    answer.PatientID = "SMOKE-1"
    yield 0xFF00, answer


def test_pynetdicom_scp_runs_a_handler_from_a_test_module(
    make_pynetdicom_scp: Callable[..., PynetdicomSCP],
) -> None:
    from pydicom import Dataset
    from pynetdicom import AE
    from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind as Find

    scp = make_pynetdicom_scp(handlers={"find": _find_one_patient})
    ae = AE(ae_title="SMOKE_SCU")
    ae.add_requested_context(Find)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title=scp.aet)
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientID = ""
    try:
        found = [ident.PatientID for status, ident in assoc.send_c_find(query, Find)
                 if status.Status == 0xFF00]
    finally:
        assoc.release()
    assert found == ["SMOKE-1"]


def test_dcmqrscp_serves_movescu_and_getscu(
    make_dcmqrscp: Callable[..., Dcmqrscp],
    storescp: Storescp,
    testdata: Callable[[str], str],
    tmp_path: Path,
) -> None:
    from pydicom import dcmread

    src = testdata("CT_small.dcm")
    ds = dcmread(src)
    qr = make_dcmqrscp(preload=[src], move_destinations={storescp.aet: storescp.port})
    study = ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={ds.StudyInstanceUID}"]
    moved = movescu(qr.port, qr.aet, storescp.aet, study)
    assert moved.ok, moved.output
    assert dcmread(storescp.wait_for_files(1)[0]).SOPInstanceUID == ds.SOPInstanceUID

    patient = ["QueryRetrieveLevel=PATIENT", f"PatientID={ds.PatientID}"]
    got = getscu(qr.port, qr.aet, patient, tmp_path)
    assert got.ok, got.output
    (fetched,) = tmp_path.iterdir()
    assert dcmread(fetched).SOPInstanceUID == ds.SOPInstanceUID
    # A C-MOVE toward an unknown destination AE fails (movescu exits non-zero).
    assert movescu(qr.port, qr.aet, "NOBODY", study).returncode != 0
