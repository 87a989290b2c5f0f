"""C-STORE and C-FIND against real peers (Orthanc, dcmtk, pynetdicom), both directions.

Every instance stored gets fresh UIDs (pydicom's sample files share SOP
Instance UIDs, and the session's Orthanc keeps the first copy of a duplicate),
and what arrives is compared byte for byte with what was sent.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dicomnet.client import Client
from dicomnet.dicom import Dataset, read_dataset, read_file, write_file
from dicomnet.dicom.writer import encode_dataset
from dicomnet.dimse.scu import FIND_MODELS
from dicomnet.errors import NoPresentationContext
from dicomnet.server import Server

from .peers import Orthanc, findscu, record_started, require, run_tool, storescu

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
BIG = "1.2.840.10008.1.2.2"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
SC = "1.2.840.10008.5.1.4.1.1.7"


def uid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def fresh_copy(src: str, folder: Path, patient_id: str | None = None) -> tuple[Path, Dataset]:
    """``src`` rewritten in its own transfer syntax with new Study/Series/SOP
    Instance UIDs (and PatientID); returns the path and the dataset read back."""
    ds = read_file(src)
    ds.SOPInstanceUID = uid()
    ds.StudyInstanceUID = uid()
    ds.SeriesInstanceUID = uid()
    if patient_id is not None:
        ds.PatientID = patient_id
    if ds.file_meta is not None:
        ds.file_meta = None                  # rebuilt for the new instance
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    write_file(path, ds, ds.transfer_syntax)
    return path, read_file(path)


def body(ds: Dataset, ts: str) -> bytes:
    return bytes(encode_dataset(ds, ts))


def body_sent_by_dcmtk(ds: Dataset, ts: str) -> bytes:
    """What a dcmtk-based sender transmits: it drops Data Set Trailing Padding
    (FFFC,FFFC), which PS3.10 7.2 lets any application remove."""
    if 0xFFFCFFFC in ds:
        ds = read_file(ds.filename)
        del ds[0xFFFCFFFC]
    return body(ds, ts)


class Recorder:
    """An SCP handler: keeps each stored dataset's bytes, answers C-FIND from a list."""

    def __init__(self, matches: list[Dataset] | None = None) -> None:
        self.stored: list[tuple[str, bytes, Dataset]] = []
        self.matches = matches or []
        self.queries: list[tuple[Any, Dataset]] = []
        self.cancelled: list[bool] = []

    def on_store(self, ctx: Any, ds: Dataset) -> None:
        self.stored.append((ctx.transfer_syntax, body(ds, ctx.transfer_syntax), ds))

    def on_find(self, ctx: Any, query: Dataset) -> Iterator[Dataset]:
        self.queries.append((ctx, query))
        try:
            for m in self.matches:
                yield m
        finally:
            self.cancelled.append(ctx.cancelled)


@pytest.fixture
def our_server(our_server: Callable[..., Server]) -> Callable[..., Server]:
    """The conftest's, with our AE title fixed: ``our_server(handler, **kw)``."""
    return lambda handler, **kw: our_server("DICOMNET", handler, **kw)


def lookup(orthanc: Orthanc, sop_instance_uid: str) -> str:
    found = orthanc.post("/tools/lookup", raw=sop_instance_uid.encode(), content_type="text/plain")
    ids = [f["ID"] for f in found if f["Type"] == "Instance"]
    assert len(ids) == 1, found
    return ids[0]


def stored_copy(orthanc: Orthanc, sop_instance_uid: str) -> tuple[str, bytes, Any]:
    """Orthanc's copy of an instance: (transfer syntax, data set bytes, pydicom dataset)."""
    import io

    import pydicom

    raw = orthanc.instance_file(lookup(orthanc, sop_instance_uid))
    ds = read_file(raw)
    return ds.transfer_syntax, body(ds, ds.transfer_syntax), pydicom.dcmread(io.BytesIO(raw))


def same_content(a: Any, b: Any) -> bool:
    """pydicom datasets equal outside File Meta (Orthanc, being dcmtk inside,
    may re-encode a sequence of undefined length with a defined one)."""
    return [e for e in a if e.tag.group != 2] == [e for e in b if e.tag.group != 2]


# ------------------------------------------------- our Client -> Orthanc
@pytest.mark.parametrize("name, contexts, expected_ts", [
    ("CT_small.dcm", None, EXPLICIT),
    ("MR_small_implicit.dcm", [(MR, [IMPLICIT])], IMPLICIT),
    ("MR_small_bigendian.dcm", [(MR, [EXPLICIT, IMPLICIT])], EXPLICIT),     # transcoded BE -> LE
    ("JPEG-lossy.dcm", [(SC, [JPEG_EXTENDED])], JPEG_EXTENDED),            # encapsulated, as is
])
def test_client_stores_into_orthanc(orthanc: Orthanc, testdata: Callable[[str], str], tmp_path: Path,
                                    name: str, contexts: Any, expected_ts: str) -> None:
    path, ds = fresh_copy(testdata(name), tmp_path)
    with Client("DICOMNET").associate("127.0.0.1", orthanc.dicom_port, "ORTHANC", contexts=contexts) as assoc:
        assert assoc.store(path) == 0x0000
    import pydicom

    ts, received, copy = stored_copy(orthanc, ds.SOPInstanceUID)
    assert ts == expected_ts
    if name == "JPEG-lossy.dcm":
        # dcmtk inside Orthanc re-encodes its undefined-length sequences with defined lengths.
        assert same_content(copy, pydicom.dcmread(path))
        assert copy.PixelData == pydicom.dcmread(path).PixelData
    else:
        assert received == body(ds, expected_ts)   # byte for byte, also after transcoding


def test_client_refuses_jpeg_when_only_uncompressed_was_accepted(orthanc: Orthanc,
                                                                 testdata: Callable[[str], str]) -> None:
    with Client("DICOMNET").associate("127.0.0.1", orthanc.dicom_port, "ORTHANC", contexts=[SC]) as assoc:
        with pytest.raises(NoPresentationContext):
            assoc.store(testdata("JPEG-lossy.dcm"))
        assert assoc.is_established


def test_client_finds_in_orthanc_at_every_level(orthanc: Orthanc, testdata: Callable[[str], str],
                                                tmp_path: Path) -> None:
    patient = f"DNET-{uuid.uuid4().hex[:10]}"
    path, ds = fresh_copy(testdata("CT_small.dcm"), tmp_path, patient_id=patient)
    path2, ds2 = fresh_copy(testdata("CT_small.dcm"), tmp_path, patient_id=patient)
    with Client("DICOMNET").associate("127.0.0.1", orthanc.dicom_port, "ORTHANC") as assoc:
        assert assoc.store(path) == 0 and assoc.store(path2) == 0
        found = list(assoc.find({"QueryRetrieveLevel": "PATIENT", "PatientID": patient, "PatientName": None},
                                model="patient"))
        assert [m.PatientID for m in found] == [patient]
        assert str(found[0].PatientName) == str(ds.PatientName)
        studies = assoc.find({"QueryRetrieveLevel": "STUDY", "PatientID": patient, "StudyInstanceUID": None})
        assert sorted(m.StudyInstanceUID for m in studies) == sorted([ds.StudyInstanceUID, ds2.StudyInstanceUID])
        assert studies.status == 0
        series = list(assoc.find({"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": ds.StudyInstanceUID,
                                  "SeriesInstanceUID": None, "Modality": None}))
        assert [(m.SeriesInstanceUID, m.Modality) for m in series] == [(ds.SeriesInstanceUID, "CT")]
        images = list(assoc.find({"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": ds.StudyInstanceUID,
                                  "SeriesInstanceUID": ds.SeriesInstanceUID, "SOPInstanceUID": None}))
        assert [m.SOPInstanceUID for m in images] == [ds.SOPInstanceUID]
        # Leave a find early: it is cancelled and drained, the next one works.
        for _ in assoc.find({"QueryRetrieveLevel": "STUDY", "PatientID": patient, "StudyInstanceUID": None}):
            break
        assert len(list(assoc.find({"QueryRetrieveLevel": "STUDY", "PatientID": patient}))) == 2


# ------------------------------------------------- dcmtk SCUs -> our Server
def test_storescu_into_our_server(our_server: Callable[..., Server], testdata: Callable[[str], str],
                                  tmp_path: Path) -> None:
    rec = Recorder()
    srv = our_server(rec, contexts={CT: [EXPLICIT, IMPLICIT], MR: [EXPLICIT, IMPLICIT],
                                    SC: [EXPLICIT, JPEG_EXTENDED]})
    files = [fresh_copy(testdata(n), tmp_path)
             for n in ("CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "JPEG-lossy.dcm")]
    result = storescu(srv.port, "DICOMNET", [p for p, _ in files[:3]])
    assert result.ok, result.output
    result = storescu(srv.port, "DICOMNET", [files[3][0]], "-xx")   # -xx: propose JPEG Extended
    assert result.ok, result.output
    assert len(rec.stored) == 4
    by_uid = {ds.SOPInstanceUID: (ts, data) for ts, data, ds in rec.stored}
    for _, ds in files:
        ts, data = by_uid[ds.SOPInstanceUID]
        if ds.transfer_syntax == JPEG_EXTENDED:
            # As is, but dcmtk re-encodes undefined-length sequences with defined lengths.
            assert ts == JPEG_EXTENDED
            got = read_dataset(data, transfer_syntax=ts)
            # (DataElement == on encapsulated Pixel Data, a memoryview, raises: compare bytes.)
            assert got.tags() == ds.tags() and bytes(got.PixelData) == bytes(ds.PixelData)
            assert all(got[t] == ds[t] for t in ds.tags() if t != 0x7FE00010)
        else:
            # storescu may transcode among the uncompressed syntaxes; the bytes must match ours.
            assert data == body_sent_by_dcmtk(ds, ts)


def test_storescu_into_our_streaming_server(our_server: Callable[..., Server], testdata: Callable[[str], str],
                                            tmp_path: Path) -> None:
    out = tmp_path / "out"

    class Streamer(Recorder):
        def store_destination(self, ctx: Any, command: Any) -> Path:
            return out / f"{command['AffectedSOPInstanceUID']}.dcm"

    rec = Streamer()
    srv = our_server(rec)
    path, ds = fresh_copy(testdata("CT_small.dcm"), tmp_path)
    assert storescu(srv.port, "DICOMNET", [path]).ok
    written = out / f"{ds.SOPInstanceUID}.dcm"
    assert os.listdir(out) == [written.name]
    dump = run_tool("dcmdump", "-M", str(written))     # dcmtk reads our Part 10 file
    assert dump.ok and "MediaStorageSOPInstanceUID" in dump.output and ds.SOPInstanceUID in dump.output
    assert rec.stored[0][1] == body_sent_by_dcmtk(ds, rec.stored[0][0])


def match(level: str, i: int) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    ds.PatientID = "PID-1"
    ds.PatientName = f"Doe^Match{i}"
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.2.1125.{i}"
    return ds


@pytest.mark.parametrize("model, level, sop_class", [("-S", "STUDY", FIND_MODELS["study"]),
                                                      ("-P", "PATIENT", FIND_MODELS["patient"]),
                                                      ("-W", None, FIND_MODELS["worklist"])])
def test_findscu_against_our_server(our_server: Callable[..., Server], model: str, level: str | None,
                                    sop_class: str) -> None:
    rec = Recorder([match(level or "STUDY", i) for i in range(3)])
    srv = our_server(rec)
    keys = ["PatientID=PID-1", "PatientName", "StudyInstanceUID"]
    if level:
        keys.insert(0, f"QueryRetrieveLevel={level}")
    result = findscu(srv.port, "DICOMNET", keys, model=model)
    assert result.ok, result.output
    assert result.output.count("Doe^Match") == 3
    ctx, query = rec.queries[0]
    assert ctx.abstract_syntax == sop_class and query.PatientID == "PID-1" and "PatientName" in query


# -------------------------------------------- pynetdicom SCU -> our Server
def test_pynetdicom_store_find_cancel(our_server: Callable[..., Server], testdata: Callable[[str], str],
                                      tmp_path: Path) -> None:
    require("pynetdicom")
    import logging

    from pydicom import dcmread
    from pydicom.dataset import Dataset as PyDataset
    from pynetdicom import AE

    logging.getLogger("pynetdicom").setLevel(logging.ERROR)
    endless = type("Endless", (Recorder,), {"on_find": _endless_find})
    rec = endless([match("STUDY", i) for i in range(5)])
    srv = our_server(rec)
    path, ds = fresh_copy(testdata("CT_small.dcm"), tmp_path)
    ae = AE("PYNETDICOM")
    ae.add_requested_context(CT)
    ae.add_requested_context(FIND_MODELS["study"])
    assoc = ae.associate("127.0.0.1", srv.port, ae_title="DICOMNET")
    assert assoc.is_established
    record_started("pynetdicom")
    try:
        status = assoc.send_c_store(dcmread(path))
        assert status.Status == 0
        assert rec.stored[0][1] == body(ds, rec.stored[0][0])
        query = PyDataset()
        query.QueryRetrieveLevel = "STUDY"
        query.PatientID = "PID-1"
        # Endless matches until the C-CANCEL; the last status is Cancel.
        statuses = []
        for n, (status, identifier) in enumerate(assoc.send_c_find(query, FIND_MODELS["study"], msg_id=7)):
            statuses.append(status.Status)
            if n == 2:
                context_id = next(c.context_id for c in assoc.accepted_contexts
                                  if c.abstract_syntax == FIND_MODELS["study"])
                assoc.send_c_cancel(7, context_id)
        assert statuses[-1] == 0xFE00 and set(statuses[:-1]) == {0xFF00} and len(statuses) >= 4
        assert rec.cancelled == [True]
        # ... and the association carries on.
        again = [s.Status for s, _ in assoc.send_c_find(query, FIND_MODELS["study"])]
        assert again == [0xFF00, 0x0000]
    finally:
        assoc.release()


def _endless_find(self: Recorder, ctx: Any, query: Dataset) -> Iterator[Dataset]:
    self.queries.append((ctx, query))
    i = 0
    try:
        while not ctx.cancelled and len(self.queries) == 1:
            yield match("STUDY", i)
            i += 1
        if len(self.queries) > 1:
            yield match("STUDY", 0)
    finally:
        self.cancelled.append(ctx.cancelled)


# ------------------------------------------- Orthanc (REST) -> our Server
def test_orthanc_stores_and_queries_our_server(orthanc: Orthanc, our_server: Callable[..., Server],
                                               testdata: Callable[[str], str], tmp_path: Path) -> None:
    rec = Recorder([match("STUDY", i) for i in range(2)])
    srv = our_server(rec)
    name = f"DNET{uuid.uuid4().hex[:8]}"
    orthanc.add_modality(name, "DICOMNET", srv.port)
    path, ds = fresh_copy(testdata("CT_small.dcm"), tmp_path)
    orthanc_id = orthanc.upload(path)["ID"]
    answer = orthanc.store(name, [orthanc_id])
    assert answer.get("FailedInstancesCount", 0) == 0
    [(ts, data, received)] = rec.stored
    assert received.SOPInstanceUID == ds.SOPInstanceUID
    assert data == body_sent_by_dcmtk(ds, ts)
    studies = orthanc.query(name, "Study", {"PatientID": "PID-1", "StudyInstanceUID": ""})
    assert sorted(a["StudyInstanceUID"] for a in studies) == [match("STUDY", i).StudyInstanceUID for i in range(2)]
    # Orthanc's instance-level query carries group 0002 elements in the identifier.
    rec.matches = [match("IMAGE", 9)]
    images = orthanc.query(name, "Instance", {"StudyInstanceUID": "1.2.3", "SOPInstanceUID": ""})
    assert len(images) == 1
    assert rec.queries[-1][1].QueryRetrieveLevel == "IMAGE"
