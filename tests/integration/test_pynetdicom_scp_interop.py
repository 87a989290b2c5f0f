"""Our Client (SCU) against a pynetdicom SCP: C-STORE, C-FIND, C-GET, C-MOVE,
C-CANCEL and User Identity negotiation.

Each test starts a pynetdicom AE in its own process (:class:`PynetdicomSCP`)
whose event handlers are the module-level functions at the end of this file:
they run in that child, so they get what they need (a folder of files, a
table of move destinations) as plain arguments. What pynetdicom received is
compared with what we sent, and what we received with the originals.
"""
from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dicomnet import AssociationRejected, Client, Dataset, DimseStatusError, Server, read_file, write_file
from dicomnet.client import ContextSpec
from dicomnet.dicom.writer import encode_dataset
from dicomnet.pdu import UserIdentityRQ

from .peers import HOST, PynetdicomSCP

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"
BIG = "1.2.840.10008.1.2.2"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
SC = "1.2.840.10008.5.1.4.1.1.7"
STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"
PATIENT_GET = "1.2.840.10008.5.1.4.1.2.1.3"

MakeSCP = Callable[..., PynetdicomSCP]


def client(ae_title: str = "DICOMNET") -> Client:
    """Our Client, with a DIMSE timeout short enough that a hang fails the test."""
    return Client(ae_title, dimse_timeout=10, read_timeout=10, artim_timeout=10)


def uid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def part10_body(raw: bytes) -> bytes:
    """The data set of a Part 10 file: everything after its File Meta group,
    found by walking the group's elements (Explicit VR Little Endian)."""
    assert raw[128:132] == b"DICM"
    pos = 132
    while raw[pos:pos + 2] == b"\x02\x00":
        vr = raw[pos + 4:pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            pos += 12 + int.from_bytes(raw[pos + 8:pos + 12], "little")
        else:
            pos += 8 + int.from_bytes(raw[pos + 6:pos + 8], "little")
    return raw[pos:]


def received_file(scp: PynetdicomSCP, sop_instance_uid: str) -> Path:
    """pynetdicom's copy of an instance (its default C-STORE handler's file)."""
    path = scp.store_dir / f"{sop_instance_uid}.dcm"
    assert path.exists(), sorted(p.name for p in scp.files())
    return path


def make_study(folder: Path, sources: list[str]) -> dict[str, Dataset]:
    """Copies of ``sources`` in one new study (fresh Study/Series/SOP Instance
    UIDs, each file in its own transfer syntax) in ``folder``; by SOP Instance UID."""
    folder.mkdir(parents=True, exist_ok=True)
    study, patient = uid(), f"PID-{uuid.uuid4().hex[:8]}"
    out = {}
    for src in sources:
        ds = read_file(src)
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = uid()
        ds.SOPInstanceUID = uid()
        ds.PatientID = patient
        ds.file_meta = None                   # rebuilt for the new instance
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        write_file(path, ds, ds.transfer_syntax)
        out[str(ds.SOPInstanceUID)] = read_file(path)
    return out


def study_query(study: dict[str, Dataset], level: str = "STUDY") -> dict[str, Any]:
    first = next(iter(study.values()))
    if level == "PATIENT":
        return {"QueryRetrieveLevel": "PATIENT", "PatientID": str(first.PatientID)}
    return {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": str(first.StudyInstanceUID)}


def public_values(pyds: Any) -> dict[int, Any]:
    """A pydicom data set's standard elements but Pixel Data, tag -> value
    (private ones have no VR to compare across Implicit and Explicit VR)."""
    return {int(e.tag): e.value for e in pyds if not e.tag.is_private and e.tag != 0x7FE00010}


def assert_same_instance(received: Dataset, original: Dataset, ts: str) -> None:
    """Same pixels, and the same data set bytes once both are encoded in ``ts``
    (the syntax it arrived in: pynetdicom may have converted it)."""
    assert np.array_equal(received.pixel_array, original.pixel_array)
    assert bytes(encode_dataset(received, ts)) == bytes(encode_dataset(original, ts))


# -------------------------------------------------------------------- C-STORE
@pytest.mark.parametrize("name, contexts, expected_ts", [
    ("CT_small.dcm", None, IMPLICIT),        # default proposal: pynetdicom prefers Implicit VR LE
    ("CT_small.dcm", [(CT, [EXPLICIT])], EXPLICIT),
    ("MR_small_implicit.dcm", [(MR, [IMPLICIT])], IMPLICIT),
    ("MR_small_bigendian.dcm", [(MR, [BIG])], BIG),                        # as is
    ("MR_small_bigendian.dcm", [(MR, [EXPLICIT])], EXPLICIT),              # transcoded BE -> LE
    ("image_dfl.dcm", [(SC, [DEFLATED])], DEFLATED),                       # deflated, as is
    ("JPEG-lossy.dcm", [(SC, [JPEG_EXTENDED])], JPEG_EXTENDED),            # encapsulated, as is
])
def test_store_into_pynetdicom(make_pynetdicom_scp: MakeSCP, testdata: Callable[[str], str],
                               name: str, contexts: Any, expected_ts: str) -> None:
    """A pydicom test file stored from its path arrives byte for byte: the file's
    own data set when sent in its own syntax, else our transcoding of it (whose
    values pydicom must still read the same)."""
    import pydicom

    src = testdata(name)
    scp = make_pynetdicom_scp()
    original = pydicom.dcmread(src)
    with client().associate(HOST, scp.port, scp.aet, contexts=contexts) as assoc:
        assert assoc.store(src) == 0x0000
        assert assoc.context_for(str(original.SOPClassUID), expected_ts).transfer_syntax == expected_ts
    path = received_file(scp, str(original.SOPInstanceUID))
    raw = path.read_bytes()
    copy = pydicom.dcmread(path)
    assert copy.file_meta.TransferSyntaxUID == expected_ts
    if expected_ts == original.file_meta.TransferSyntaxUID:
        assert part10_body(raw) == part10_body(Path(src).read_bytes())
    else:
        assert part10_body(raw) == bytes(encode_dataset(read_file(src), expected_ts))
        assert public_values(copy) == public_values(original)
    if expected_ts != JPEG_EXTENDED:
        assert np.array_equal(copy.pixel_array, original.pixel_array)


def test_store_many_datasets_into_pynetdicom(make_pynetdicom_scp: MakeSCP, testdata: Callable[[str], str]) -> None:
    """``store_many`` of modified Datasets (encoded by us, not sent from a file):
    every status is Success and every data set arrives as we encoded it."""
    scp = make_pynetdicom_scp()
    sent = []
    for name in ("CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "CT_small.dcm"):
        ds = read_file(testdata(name))
        ds.SOPInstanceUID = uid()
        ds.PatientName = "Stored^Many"
        sent.append(ds)
    # One context per syntax: pynetdicom accepts one syntax per context (Implicit when offered).
    contexts = [(sop, [ts]) for sop in (CT, MR) for ts in (EXPLICIT, IMPLICIT)]
    with client().associate(HOST, scp.port, scp.aet, contexts=contexts) as assoc:
        results = list(assoc.store_many(sent))
        assert [(src, status) for src, status, _ in results] == [(ds, 0x0000) for ds in sent]
    assert len(scp.files()) == len(sent)
    for ds in sent:
        raw = received_file(scp, str(ds.SOPInstanceUID)).read_bytes()
        copy = read_file(raw)
        assert copy.transfer_syntax == ds.transfer_syntax       # both syntaxes were accepted
        assert part10_body(raw) == bytes(encode_dataset(ds, ds.transfer_syntax))
        assert str(copy.PatientName) == "Stored^Many"


def test_store_statuses_from_pynetdicom(make_pynetdicom_scp: MakeSCP, testdata: Callable[[str], str]) -> None:
    """A warning from the SCP is returned, a failure raises DimseStatusError
    with the code and the SCP's Error Comment; the association goes on."""
    scp = make_pynetdicom_scp(handlers={"store": store_with_status})
    ds = read_file(testdata("CT_small.dcm"))
    with client().associate(HOST, scp.port, scp.aet) as assoc:
        ds.PatientID = "WARN"
        assert assoc.store(ds) == 0xB007
        ds.PatientID = "FULL"
        with pytest.raises(DimseStatusError) as info:
            assoc.store(ds)
        assert info.value.status == 0xA700 and info.value.comment == "disk full"
        ds.PatientID = "OK"
        assert assoc.store(ds) == 0x0000
        assert assoc.echo() == 0x0000


# --------------------------------------------------------------------- C-FIND
def test_find_returns_every_match(make_pynetdicom_scp: MakeSCP) -> None:
    """Every pending response (0xFF00, and 0xFF01: pending with a warning)
    gives a match with the SCP's values; the final status is Success. The
    SCP saw the keys we asked for (it lists them in OtherPatientIDs)."""
    scp = make_pynetdicom_scp(handlers={"find": find_handler})
    query = {"QueryRetrieveLevel": "STUDY", "PatientID": "PID-42", "PatientName": None,
             "StudyInstanceUID": None, "StudyDate": "20240101-20241231"}
    with client().associate(HOST, scp.port, scp.aet) as assoc:
        result = assoc.find(query)
        matches = list(result)
        assert result.status == 0x0000 and result.matches == FIND_MATCHES
        assert [str(m.PatientName) for m in matches] == [f"Doe^Match{i}" for i in range(FIND_MATCHES)]
        assert [m.StudyInstanceUID for m in matches] == [f"1.2.826.0.1.3680043.2.1125.{i}"
                                                          for i in range(FIND_MATCHES)]
        for i, m in enumerate(matches):
            assert m.QueryRetrieveLevel == "STUDY" and m.PatientID == "PID-42"
            assert m.NumberOfStudyRelatedInstances == i
            assert m.StudyDescription == "asked for 20240101-20241231"
            assert list(m.OtherPatientIDs) == sorted(query)
        # The same on the Patient Root model.
        patients = list(assoc.find({"QueryRetrieveLevel": "PATIENT", "PatientID": "PID-7"}, model="patient"))
        assert [m.PatientID for m in patients] == ["PID-7"] * FIND_MATCHES


def test_find_failure_raises_with_the_code(make_pynetdicom_scp: MakeSCP) -> None:
    """A failure status after some matches: those matches are yielded, then
    DimseStatusError carries the code and Error Comment; the association stays usable."""
    scp = make_pynetdicom_scp(handlers={"find": find_handler})
    with client().associate(HOST, scp.port, scp.aet) as assoc:
        result = assoc.find({"QueryRetrieveLevel": "STUDY", "PatientID": "FAIL"})
        got = []
        with pytest.raises(DimseStatusError) as info:
            for match in result:
                got.append(str(match.PatientName))
        assert info.value.status == 0xC001 and info.value.comment == "index offline"
        assert got == ["Doe^Match0", "Doe^Match1"] and result.status == 0xC001
        assert len(list(assoc.find({"QueryRetrieveLevel": "STUDY", "PatientID": "PID-1"}))) == FIND_MATCHES


def test_find_warning_is_reported_not_raised(make_pynetdicom_scp: MakeSCP,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """A warning final status (0xB001, response limit reached) ends the
    iteration without raising; ``status`` reports it. pynetdicom 3 follows
    that Warning with a second final response (Success) to the same request;
    the next request meets it, drops it with a warning and works."""
    scp = make_pynetdicom_scp(handlers={"find": find_handler})
    caplog.set_level(logging.WARNING, logger="dicomnet")
    with client().associate(HOST, scp.port, scp.aet) as assoc:
        result = assoc.find({"QueryRetrieveLevel": "STUDY", "PatientID": "WARN"})
        assert len(list(result)) == FIND_MATCHES
        assert result.status == 0xB001 and result.error_comment == "limit reached"
        assert len(list(assoc.find({"QueryRetrieveLevel": "STUDY", "PatientID": "PID-1"}))) == FIND_MATCHES
        assert assoc.echo() == 0x0000
    assert any("C_FIND_RSP to message 1, which was already answered" in r.getMessage() for r in caplog.records)


def test_find_cancel_leaves_the_association_usable(make_pynetdicom_scp: MakeSCP) -> None:
    """Leaving the loop over an endless C-FIND early sends C-CANCEL: the SCP
    stops (final status Cancel), and the next C-FIND and C-ECHO work."""
    scp = make_pynetdicom_scp(handlers={"find": find_handler})
    with client().associate(HOST, scp.port, scp.aet) as assoc:
        result = assoc.find({"QueryRetrieveLevel": "STUDY", "PatientID": "ENDLESS"})
        for n, _ in enumerate(result):
            if n == 2:
                break
        assert result.done and result.cancelled and result.status == 0xFE00
        assert result.matches < ENDLESS_MATCHES
        assert len(list(assoc.find({"QueryRetrieveLevel": "STUDY", "PatientID": "PID-1"}))) == FIND_MATCHES
        assert assoc.echo() == 0x0000


# ---------------------------------------------------------------------- C-GET
def test_get_from_pynetdicom(make_pynetdicom_scp: MakeSCP, testdata: Callable[[str], str],
                             tmp_path: Path) -> None:
    """C-GET of a study in Explicit, Implicit and JPEG: the SCP role for the
    storage classes is negotiated by ``for_get=True``, every instance arrives
    on our association with its pixels, the counters add up; a second C-GET
    (Patient Root, streamed to files) works on the same association."""
    study = make_study(tmp_path / "study", [testdata(n) for n in
                                            ("CT_small.dcm", "CT_small.dcm", "MR_small.dcm",
                                             "MR_small_implicit.dcm", "JPEG-lossy.dcm")])
    scp = make_pynetdicom_scp(handlers={"get": (get_handler, [str(tmp_path / "study")])})
    contexts: list[ContextSpec] = [VERIFICATION, STUDY_GET, PATIENT_GET, (CT, [EXPLICIT, IMPLICIT]),
                                   (MR, [IMPLICIT, EXPLICIT]), (SC, [JPEG_EXTENDED])]
    with client().associate(HOST, scp.port, scp.aet, contexts=contexts, for_get=True) as assoc:
        for sop_class in (CT, MR, SC):
            ctx = assoc.context_for(sop_class, role="scp")
            assert ctx.as_scp and not ctx.as_scu        # we are the SCP of the C-STOREs
        result = assoc.get(study_query(study))
        got = list(result)
        assert result.status == 0x0000
        assert (result.completed, result.failed, result.warning) == (len(study), 0, 0)
        assert result.received == len(study) and result.progress is not None
        assert result.progress.remaining == 0 and result.progress.completed == len(study)
        assert sorted(str(ds.SOPInstanceUID) for ds in got) == sorted(study)
        for ds in got:
            original = study[str(ds.SOPInstanceUID)]
            if original.transfer_syntax == JPEG_EXTENDED:
                assert ds.transfer_syntax == JPEG_EXTENDED
                assert [bytes(f) for f in ds.frames()] == [bytes(f) for f in original.frames()]
            else:
                assert_same_instance(ds, original, ds.transfer_syntax)
        out = tmp_path / "out"
        out.mkdir()
        paths = list(assoc.get(study_query(study, "PATIENT"), model="patient", store_to=out))
        assert sorted(Path(p).name for p in paths) == sorted(f"{u}.dcm" for u in study)
        for p in paths:
            ds = read_file(p)
            if ds.transfer_syntax != JPEG_EXTENDED:
                assert_same_instance(ds, study[str(ds.SOPInstanceUID)], ds.transfer_syntax)
        assert assoc.echo() == 0x0000


def test_get_counts_a_failed_suboperation(make_pynetdicom_scp: MakeSCP, testdata: Callable[[str], str],
                                          tmp_path: Path) -> None:
    """An instance of a class we did not propose cannot be sent: the final
    status is the Warning 0xB000 (reported, not raised), with one failed
    sub-operation and its UID in the Failed SOP Instance UID List."""
    study = make_study(tmp_path / "study", [testdata("CT_small.dcm"), testdata("rtdose.dcm")])
    scp = make_pynetdicom_scp(handlers={"get": (get_handler, [str(tmp_path / "study")])})
    dose = next(u for u, ds in study.items() if ds.SOPClassUID != CT)
    with client().associate(HOST, scp.port, scp.aet, contexts=[STUDY_GET, CT], for_get=True) as assoc:
        result = assoc.get(study_query(study))
        got = list(result)
        assert [str(ds.SOPClassUID) for ds in got] == [CT]
        assert result.status == 0xB000
        assert (result.completed, result.failed, result.warning) == (1, 1, 0)
        assert result.failed_instances == [dose]


def test_get_cancel_leaves_the_association_usable(make_pynetdicom_scp: MakeSCP, testdata: Callable[[str], str],
                                                  tmp_path: Path) -> None:
    """Leaving a C-GET loop after the first instance sends C-CANCEL: the SCP
    stops early (final status Cancel) and a full C-GET follows on the same
    association (proposed with dicomnet's default contexts and ``for_get``)."""
    study = make_study(tmp_path / "study", [testdata("CT_small.dcm")] * 6)
    scp = make_pynetdicom_scp(handlers={"get": (get_handler, [str(tmp_path / "study")])})
    with client().associate(HOST, scp.port, scp.aet, for_get=True) as assoc:     # the default proposal
        result = assoc.get(study_query(study))
        for _ in result:
            break
        assert result.done and result.cancelled and result.status == 0xFE00
        assert result.completed is not None and result.completed < len(study)
        again = assoc.get(study_query(study))
        assert len(list(again)) == len(study) and again.status == 0x0000


# --------------------------------------------------------------------- C-MOVE
class Sink:
    """Our Server's handler at the move destination: keeps what arrives."""

    def __init__(self) -> None:
        self.received: list[tuple[str, Dataset, Any]] = []

    def on_store(self, ctx: Any, ds: Dataset) -> None:
        self.received.append((ctx.transfer_syntax, ds, ctx.command))


@pytest.fixture
def sink_server() -> Iterator[tuple[Server, Sink]]:
    sink = Sink()
    with Server("DNDEST", sink, read_timeout=10).start(HOST, 0) as server:
        yield server, sink


def test_move_to_our_server(make_pynetdicom_scp: MakeSCP, sink_server: tuple[Server, Sink],
                            testdata: Callable[[str], str], tmp_path: Path) -> None:
    """C-MOVE to our own Server: one Pending response per sub-operation with
    the counters, final Success; every instance arrives at the destination
    intact, its C-STORE naming our C-MOVE's Message ID as the originator's."""
    dest, sink = sink_server
    study = make_study(tmp_path / "study", [testdata(n) for n in
                                            ("CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm")])
    scp = make_pynetdicom_scp(handlers={"move": (move_handler, [str(tmp_path / "study"), {"DNDEST": dest.port}])})
    n = len(study)
    with client("DNMOVER").associate(HOST, scp.port, scp.aet) as assoc:
        result = assoc.move(study_query(study), "DNDEST")
        progress = list(result)
        assert [(p.status, p.remaining, p.completed, p.failed, p.warning) for p in progress] == [
            (0xFF00, n - i, i, 0, 0) for i in range(1, n + 1)]
        assert result.status == 0x0000 and (result.completed, result.failed, result.warning) == (n, 0, 0)
        assert result.failed_instances == []
        message_id = result.message_id
    assert sorted(str(ds.SOPInstanceUID) for _, ds, _ in sink.received) == sorted(study)
    for ts, ds, command in sink.received:
        assert ts == study[str(ds.SOPInstanceUID)].transfer_syntax
        assert_same_instance(ds, study[str(ds.SOPInstanceUID)], ts)
        assert command.get("MoveOriginatorMessageID") == message_id
        # pynetdicom 3.0 names itself, not the C-MOVE SCU, as the Move Originator (PS3.7 9.3.1.1).
        assert command.get("MoveOriginatorApplicationEntityTitle") in ("DNMOVER", scp.aet)


def test_move_to_an_unknown_destination_fails(make_pynetdicom_scp: MakeSCP, sink_server: tuple[Server, Sink],
                                              testdata: Callable[[str], str], tmp_path: Path) -> None:
    """A destination the SCP does not know: DimseStatusError 0xA801 (Move
    Destination Unknown), nothing is sent, and the association stays usable."""
    dest, sink = sink_server
    study = make_study(tmp_path / "study", [testdata("CT_small.dcm")])
    scp = make_pynetdicom_scp(handlers={"move": (move_handler, [str(tmp_path / "study"), {"DNDEST": dest.port}])})
    with client().associate(HOST, scp.port, scp.aet) as assoc:
        result = assoc.move(study_query(study), "NOWHERE")
        with pytest.raises(DimseStatusError) as info:
            list(result)
        assert info.value.status == 0xA801 and result.status == 0xA801
        assert assoc.move(study_query(study), "DNDEST").result() == 0x0000
    assert [str(ds.SOPInstanceUID) for _, ds, _ in sink.received] == list(study)


def test_move_cancel_leaves_the_association_usable(make_pynetdicom_scp: MakeSCP, sink_server: tuple[Server, Sink],
                                                   testdata: Callable[[str], str], tmp_path: Path) -> None:
    """Leaving a C-MOVE loop after the first Pending response sends C-CANCEL:
    the SCP stops before the end (final status Cancel, its counters say what
    was left), and a full C-MOVE follows on the same association."""
    dest, sink = sink_server
    study = make_study(tmp_path / "study", [testdata("CT_small.dcm")] * 6)
    scp = make_pynetdicom_scp(handlers={"move": (move_handler, [str(tmp_path / "study"), {"DNDEST": dest.port}])})
    with client().associate(HOST, scp.port, scp.aet) as assoc:
        result = assoc.move(study_query(study), "DNDEST")
        for _ in result:
            break
        assert result.done and result.cancelled and result.status == 0xFE00
        assert result.completed is not None and result.remaining is not None
        assert result.completed < len(study) and result.completed + result.remaining == len(study)
        cancelled = len(sink.received)
        assert cancelled == result.completed
        assert assoc.move(study_query(study), "DNDEST").result() == 0x0000
    assert len(sink.received) == cancelled + len(study)


# -------------------------------------------------------------- User Identity
def test_user_identity_username_and_passcode(make_pynetdicom_scp: MakeSCP) -> None:
    """The SCP sees the username and passcode we send (its EVT_USER_ID handler
    checks them; its C-FIND handler reads them back from the association);
    a wrong passcode gets the association rejected."""
    scp = make_pynetdicom_scp(handlers={"user_id": user_id_handler, "find": find_handler})
    identity = UserIdentityRQ(UserIdentityRQ.USERNAME_PASSCODE, True, b"alice", b"s3cret")
    with client().associate(HOST, scp.port, scp.aet, user_identity=identity) as assoc:
        [me] = assoc.find({"QueryRetrieveLevel": "STUDY", "PatientID": "WHOAMI"})
        assert (str(me.PatientName), me.PatientComments) == ("alice", "type 2, passcode s3cret")
        # pynetdicom answers types 1 and 2 with no User Identity item at all (PS3.7
        # D.3.3.7.2 has an empty server response there): nothing to receive.
        assert assoc.negotiated.user_identity_response in (None, b"")
    wrong = UserIdentityRQ(UserIdentityRQ.USERNAME_PASSCODE, False, b"alice", b"guess")
    with pytest.raises(AssociationRejected) as info:
        client().associate(HOST, scp.port, scp.aet, user_identity=wrong)
    assert (info.value.result, info.value.source, info.value.reason) == (2, 2, 1)


def test_user_identity_server_response(make_pynetdicom_scp: MakeSCP) -> None:
    """A JSON Web Token with a positive response requested: the SCP's server
    response (built from the token it received) reaches
    ``negotiated.user_identity_response``; without the request, none comes."""
    scp = make_pynetdicom_scp(handlers={"user_id": user_id_handler, "find": find_handler})
    token = b"eyJhbGciOiJub25lIn0.eyJzdWIiOiJib2IifQ."
    identity = UserIdentityRQ(UserIdentityRQ.JWT, True, token)
    with client().associate(HOST, scp.port, scp.aet, user_identity=identity) as assoc:
        assert assoc.negotiated.user_identity_response == b"accepted " + token
        [me] = assoc.find({"QueryRetrieveLevel": "STUDY", "PatientID": "WHOAMI"})
        assert me.PatientComments == "type 5"
    quiet = UserIdentityRQ(UserIdentityRQ.JWT, False, token)
    with client().associate(HOST, scp.port, scp.aet, user_identity=quiet) as assoc:
        assert assoc.negotiated.user_identity_response is None
        assert assoc.echo() == 0x0000


# ---------------------------------------------------------------------------
# pynetdicom event handlers. They run in the SCP's process (see PynetdicomSCP):
# module-level, importing what they need themselves.

FIND_MATCHES = 5
ENDLESS_MATCHES = 2000   # "endless": a cap, so that a lost C-CANCEL fails the test quickly


def _find_match(query: Any, i: int) -> Any:
    from pydicom.dataset import Dataset as PyDataset

    match = PyDataset()
    match.QueryRetrieveLevel = query.QueryRetrieveLevel
    match.PatientID = query.get("PatientID", "")
    match.PatientName = f"Doe^Match{i}"
    match.StudyInstanceUID = f"1.2.826.0.1.3680043.2.1125.{i}"
    match.NumberOfStudyRelatedInstances = i
    match.StudyDescription = f"asked for {query.get('StudyDate', '')}"
    match.OtherPatientIDs = sorted(e.keyword for e in query)
    return match


def _wait_sent(event: Any) -> None:
    """Return once pynetdicom has sent everything queued. Its DUL thread either
    sends or reads in each turn of its loop, sending first: while a handler
    keeps its queue full it reads nothing, and a C-CANCEL would go unseen."""
    queued = event.assoc.dul.to_provider_queue
    deadline = time.monotonic() + 5
    while queued.qsize() and time.monotonic() < deadline:
        time.sleep(0.0005)


def find_handler(event: Any) -> Iterator[tuple[Any, Any]]:
    """C-FIND; the query's PatientID picks the behaviour: FAIL (failure after
    two matches), WARN (final warning), ENDLESS (until cancelled), WHOAMI (the
    requestor's user identity as a match), else FIND_MATCHES matches."""
    from pydicom.dataset import Dataset as PyDataset

    query = event.identifier
    pid = str(query.get("PatientID", ""))
    if pid == "WHOAMI":
        identity = event.assoc.requestor.user_identity
        match = PyDataset()
        match.QueryRetrieveLevel = query.QueryRetrieveLevel
        match.PatientName = identity.primary_field.decode() if identity.user_identity_type in (1, 2) else ""
        match.PatientComments = f"type {identity.user_identity_type}" + (
            f", passcode {identity.secondary_field.decode()}" if identity.user_identity_type == 2 else "")
        yield 0xFF00, match
        return
    if pid == "ENDLESS":
        for i in range(ENDLESS_MATCHES):
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, _find_match(query, i)
            _wait_sent(event)
        return
    for i in range(FIND_MATCHES):
        yield (0xFF01 if i == 3 else 0xFF00), _find_match(query, i)
        if pid == "FAIL" and i == 1:
            status = PyDataset()
            status.Status = 0xC001
            status.ErrorComment = "index offline"
            yield status, None
            return
    if pid == "WARN":
        status = PyDataset()
        status.Status = 0xB001
        status.ErrorComment = "limit reached"
        yield status, None


def store_with_status(event: Any) -> Any:
    """C-STORE answered by PatientID: WARN -> 0xB007, FULL -> 0xA700 "disk full", else Success."""
    from pydicom.dataset import Dataset as PyDataset

    pid = event.dataset.PatientID
    if pid == "WARN":
        return 0xB007
    if pid == "FULL":
        status = PyDataset()
        status.Status = 0xA700
        status.ErrorComment = "disk full"
        return status
    return 0x0000


def _matching(folder: str, query: Any) -> list[Any]:
    """The files in ``folder`` whose attributes equal every non-empty key of ``query``."""
    import pydicom

    keys = {e.keyword: e.value for e in query if e.value not in (None, "") and e.keyword != "QueryRetrieveLevel"}
    found = []
    for path in sorted(Path(folder).glob("*.dcm")):
        ds = pydicom.dcmread(path)
        if all(str(ds.get(k, "")) == str(v) for k, v in keys.items()):
            found.append(ds)
    return found


def get_handler(event: Any, folder: str) -> Iterator[Any]:
    """C-GET: the matching files of ``folder``, stopping when cancelled."""
    found = _matching(folder, event.identifier)
    yield len(found)
    for ds in found:
        if event.is_cancelled:
            yield 0xFE00, None
            return
        yield 0xFF00, ds


def move_handler(event: Any, folder: str, destinations: dict[str, int]) -> Iterator[Any]:
    """C-MOVE: the matching files of ``folder`` to ``destinations[AE]`` (a port
    on 127.0.0.1), proposing each file's class in its own transfer syntax (the
    sub-association's contexts are the handler's to give), stopping when cancelled."""
    from pynetdicom import build_context

    port = destinations.get(event.move_destination)     # a str, trailing spaces removed
    if port is None:
        yield None, None
        return
    found = _matching(folder, event.identifier)
    pairs = sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in found})
    yield HOST, port, {"contexts": [build_context(sop, ts) for sop, ts in pairs]}
    yield len(found)
    for ds in found:
        if event.is_cancelled:
            yield 0xFE00, None
            return
        yield 0xFF00, ds


def user_id_handler(event: Any) -> tuple[bool, bytes | None]:
    """EVT_USER_ID: username and passcode (type 2) must be alice/s3cret; a
    JSON Web Token (type 5) is accepted and answered with ``b"accepted " + token``;
    anything else is refused."""
    if event.user_id_type == 2:
        return (event.primary_field, event.secondary_field) == (b"alice", b"s3cret"), None
    if event.user_id_type == 5:
        return True, b"accepted " + event.primary_field
    return False, None
