"""C-MOVE and C-GET against real peers (Orthanc, dcmtk, pynetdicom), both directions.

Each test makes its own synthetic study (fresh UIDs from a random seed: the
session's Orthanc keeps the first copy of a duplicate) and compares what
arrives with what was sent: pixel arrays, and the data set bytes re-encoded in
the transfer syntax they arrived in.
"""
from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dicomnet.client import Client
from dicomnet.dicom import Dataset, read_dataset, read_file, write_file
from dicomnet.dicom.writer import encode_dataset
from dicomnet.samples.archive import Archive
from dicomnet.samples.synthetic import generate
from dicomnet.server import Server

from .peers import Orthanc, getscu, movescu, require

EXPLICIT = "1.2.840.10008.1.2.1"


def make_study(tmp_path: Path, instances: int = 3, series: int = 2) -> list[tuple[Path, Dataset]]:
    """A fresh synthetic CT study written as Explicit VR LE files; (path, dataset) each."""
    seed = random.getrandbits(48)
    out = []
    for ds in generate(patients=1, studies=1, series=series, instances=instances, rows=64, cols=64, seed=seed):
        path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
        write_file(path, ds, EXPLICIT)
        out.append((path, read_file(path)))
    return out


def study_key(files: list[tuple[Path, Dataset]], level: str = "STUDY") -> dict[str, str]:
    ds = files[0][1]
    key = {"QueryRetrieveLevel": level, "StudyInstanceUID": str(ds.StudyInstanceUID)}
    if level == "PATIENT":
        key = {"QueryRetrieveLevel": "PATIENT", "PatientID": str(ds.PatientID)}
    return key


def assert_same(received: Dataset, original: Dataset, ts: str | None = None) -> None:
    ts = ts or received.transfer_syntax
    assert bytes(encode_dataset(received, ts)) == bytes(encode_dataset(original, ts))
    assert np.array_equal(received.pixel_array, original.pixel_array)


def by_uid(files: list[tuple[Path, Dataset]]) -> dict[str, Dataset]:
    return {str(ds.SOPInstanceUID): ds for _, ds in files}


class Source:
    """An archive of files as a C-MOVE/C-GET SCP handler."""

    def __init__(self, files: list[tuple[Path, Dataset]]) -> None:
        self.archive = Archive()
        for path, ds in files:
            self.archive.add(ds, str(path))
        self.calls: list[tuple[str, Any]] = []

    def on_find(self, ctx: Any, query: Dataset) -> Iterator[Dataset]:
        return self.archive.find(query, "patient" if "1.2.1" in ctx.abstract_syntax else "study")

    def on_get(self, ctx: Any, query: Dataset) -> list[Any]:
        self.calls.append(("get", ctx))
        return self.archive.instances_for(query, _model(ctx))

    def on_move(self, ctx: Any, query: Dataset, destination: str) -> list[Any]:
        self.calls.append(("move", destination))
        return self.archive.instances_for(query, _model(ctx))


def _model(ctx: Any) -> str:
    return "patient" if ctx.abstract_syntax.startswith("1.2.840.10008.5.1.4.1.2.1.") else "study"


class Sink:
    def __init__(self) -> None:
        self.received: list[tuple[str, Dataset, Any]] = []
        self.lock = threading.Lock()

    def on_store(self, ctx: Any, ds: Dataset) -> None:
        with self.lock:
            self.received.append((ctx.transfer_syntax, ds, ctx.command))


def upload(orthanc: Orthanc, files: list[tuple[Path, Dataset]]) -> None:
    for path, _ in files:
        assert orthanc.upload(path)["Status"] in ("Success", "AlreadyStored")


# ---------------------------------------------------- our Client -> Orthanc
def test_client_gets_from_orthanc(orthanc: Orthanc, tmp_path: Path) -> None:
    files = make_study(tmp_path)
    upload(orthanc, files)
    originals = by_uid(files)
    with Client("DNETGET").associate("127.0.0.1", orthanc.dicom_port, orthanc.aet, for_get=True) as assoc:
        result = assoc.get(study_key(files))
        got = list(result)
        assert result.status == 0 and result.completed == len(files) and result.failed == 0
        assert sorted(str(d.SOPInstanceUID) for d in got) == sorted(originals)
        for ds in got:
            assert_same(ds, originals[str(ds.SOPInstanceUID)])
        # Patient root, streamed to files, on the same association.
        out = tmp_path / "out"
        paths = list(assoc.get(study_key(files, "PATIENT"), model="patient", store_to=out))
        assert len(paths) == len(files)
        for p in paths:
            ds = read_file(p)
            assert_same(ds, originals[str(ds.SOPInstanceUID)])
        assert assoc.echo() == 0


def test_client_cancels_a_get_from_orthanc(orthanc: Orthanc, tmp_path: Path) -> None:
    files = make_study(tmp_path, instances=5)
    upload(orthanc, files)
    with Client("DNETGET").associate("127.0.0.1", orthanc.dicom_port, orthanc.aet, for_get=True) as assoc:
        result = assoc.get(study_key(files))
        for _ in result:
            break
        assert result.done and result.cancelled
        # Orthanc waits for each C-STORE-RSP; our C-CANCEL goes out before the second one.
        assert result.status == 0xFE00 and result.completed < len(files)
        assert len(list(assoc.get(study_key(files)))) == len(files)


def test_client_moves_from_orthanc_to_our_server(orthanc: Orthanc, our_server: Callable[..., Server],
                                                 tmp_path: Path) -> None:
    files = make_study(tmp_path)
    upload(orthanc, files)
    sink = Sink()
    dest_ae = f"DN{uuid.uuid4().hex[:8].upper()}"
    dest = our_server(dest_ae, sink)
    orthanc.add_modality(dest_ae, dest_ae, dest.port)
    with Client("DNETMOVE").associate("127.0.0.1", orthanc.dicom_port, orthanc.aet) as assoc:
        result = assoc.move(study_key(files), dest_ae)
        list(result)
        assert result.status == 0 and result.completed == len(files)
    originals = by_uid(files)
    assert sorted(str(ds.SOPInstanceUID) for _, ds, _ in sink.received) == sorted(originals)
    for ts, ds, command in sink.received:
        assert_same(ds, originals[str(ds.SOPInstanceUID)], ts)
        assert command.get("MoveOriginatorApplicationEntityTitle") == "DNETMOVE"


def test_client_moves_from_orthanc_to_storescp(orthanc: Orthanc, make_storescp: Callable[..., Any],
                                               tmp_path: Path) -> None:
    files = make_study(tmp_path)
    upload(orthanc, files)
    scp = make_storescp(aet="STORESCP")
    name = f"S{uuid.uuid4().hex[:8].upper()}"
    orthanc.add_modality(name, "STORESCP", scp.port)
    with Client("DNETMOVE").associate("127.0.0.1", orthanc.dicom_port, orthanc.aet) as assoc:
        # Orthanc names destinations by modality symbolic name or AE title.
        assert assoc.move(study_key(files), "STORESCP").result() == 0
    originals = by_uid(files)
    received = [read_file(p) for p in scp.wait_for_files(len(files))]
    assert sorted(str(d.SOPInstanceUID) for d in received) == sorted(originals)
    for ds in received:
        assert_same(ds, originals[str(ds.SOPInstanceUID)])


# ------------------------------------------------ dcmtk SCUs -> our Server
def test_getscu_and_movescu_against_our_server(our_server: Callable[..., Server], make_storescp: Callable[..., Any],
                                               tmp_path: Path) -> None:
    require("getscu", "movescu")
    files = make_study(tmp_path)
    scp = make_storescp(aet="STORESCP")
    srv = our_server("DICOMNET", Source(files), destinations={"STORESCP": ("127.0.0.1", scp.port)})
    originals = by_uid(files)
    out = tmp_path / "getscu"
    out.mkdir()
    res = getscu(srv.port, "DICOMNET", [f"{k}={v}" for k, v in study_key(files, "PATIENT").items()], out)
    assert res.ok, res.output
    got = [read_file(p) for p in sorted(out.iterdir())]
    assert sorted(str(d.SOPInstanceUID) for d in got) == sorted(originals)
    for ds in got:
        assert_same(ds, originals[str(ds.SOPInstanceUID)])
    res = movescu(srv.port, "DICOMNET", "STORESCP", [f"{k}={v}" for k, v in study_key(files).items()])
    assert res.returncode == 0 and not res.errors, res.output
    moved = [read_file(p) for p in scp.wait_for_files(len(files))]
    assert sorted(str(d.SOPInstanceUID) for d in moved) == sorted(originals)
    for ds in moved:
        assert_same(ds, originals[str(ds.SOPInstanceUID)])
    # An unknown destination: movescu reports the failure and exits non-zero.
    res = movescu(srv.port, "DICOMNET", "NOWHERE", [f"{k}={v}" for k, v in study_key(files).items()])
    assert res.returncode != 0 and "Refused: MoveDestinationUnknown" in res.output, res.output


# ------------------------------------------- pynetdicom SCU -> our Server
def test_pynetdicom_get_and_move_against_our_server(our_server: Callable[..., Server], tmp_path: Path) -> None:
    require("pynetdicom")
    from pydicom.dataset import Dataset as PyDataset
    from pynetdicom import AE, build_role, evt
    from pynetdicom.sop_class import (
        CTImageStorage,
        StudyRootQueryRetrieveInformationModelGet,
        StudyRootQueryRetrieveInformationModelMove,
    )

    files = make_study(tmp_path)
    sink = Sink()
    dest = our_server("DEST", sink)
    srv = our_server("DICOMNET", Source(files), destinations={"DEST": ("127.0.0.1", dest.port)})
    originals = by_uid(files)
    received: list[Any] = []

    def on_store(event: Any) -> int:
        received.append((event.context.transfer_syntax, bytes(event.request.DataSet.getvalue())))
        return 0

    ae = AE(ae_title="PYNET")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    ae.add_requested_context(CTImageStorage)
    query = PyDataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_key(files)["StudyInstanceUID"]
    assoc = ae.associate("127.0.0.1", srv.port, ae_title="DICOMNET", ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    try:
        statuses = [s.Status for s, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet)]
        assert statuses[-1] == 0x0000 and all(s == 0xFF00 for s in statuses[:-1])
        assert len(received) == len(files)
        for ts, raw in received:
            ds = read_dataset(raw, transfer_syntax=str(ts))
            assert_same(ds, originals[str(ds.SOPInstanceUID)], str(ts))
        move = [s for s, _ in assoc.send_c_move(query, "DEST", StudyRootQueryRetrieveInformationModelMove)]
        assert move[-1].Status == 0x0000 and move[-1].NumberOfCompletedSuboperations == len(files)
        unknown = [s for s, _ in assoc.send_c_move(query, "NOWHERE", StudyRootQueryRetrieveInformationModelMove)]
        assert unknown[-1].Status == 0xA801
    finally:
        assoc.release()
    assert len(sink.received) == len(files)
    for ts, ds, command in sink.received:
        assert_same(ds, originals[str(ds.SOPInstanceUID)], ts)
        assert command.get("MoveOriginatorApplicationEntityTitle") == "PYNET"


# --------------------------------------------- Orthanc (REST) -> our Server
def test_orthanc_moves_from_our_server_into_itself(orthanc: Orthanc, our_server: Callable[..., Server],
                                                   tmp_path: Path) -> None:
    files = make_study(tmp_path, instances=4)
    srv = our_server("DICOMNET", Source(files), destinations={orthanc.aet: ("127.0.0.1", orthanc.dicom_port)})
    name = f"DNET{uuid.uuid4().hex[:8]}"
    orthanc.add_modality(name, "DICOMNET", srv.port)
    uid = study_key(files)["StudyInstanceUID"]
    orthanc.move(name, "Study", [{"StudyInstanceUID": uid}], target_aet=orthanc.aet)
    originals = by_uid(files)
    import io

    import pydicom

    for sop_uid, original in originals.items():
        found = orthanc.post("/tools/lookup", raw=sop_uid.encode(), content_type="text/plain")
        ids = [f["ID"] for f in found if f["Type"] == "Instance"]
        assert len(ids) == 1, (sop_uid, found)
        raw = orthanc.instance_file(ids[0])
        assert_same(read_file(raw), original)
        assert pydicom.dcmread(io.BytesIO(raw)).SOPInstanceUID == sop_uid


def test_movescu_cancel_against_our_server(our_server: Callable[..., Server], tmp_path: Path) -> None:
    require("movescu")
    files = make_study(tmp_path, instances=4)

    class SlowSink(Sink):
        def on_store(self, ctx: Any, ds: Dataset) -> None:
            super().on_store(ctx, ds)
            time.sleep(0.1)

    sink = SlowSink()
    dest = our_server("DEST", sink)
    source = Source(files)
    srv = our_server("DICOMNET", source, destinations={"DEST": ("127.0.0.1", dest.port)})
    res = movescu(srv.port, "DICOMNET", "DEST", [f"{k}={v}" for k, v in study_key(files).items()], "--cancel", "1",
                  "-v")
    assert "Final Move Response (Cancel" in res.output, res.output
    assert 1 <= len(sink.received) < len(files)
    # The association stays usable: a full move afterwards.
    res = movescu(srv.port, "DICOMNET", "DEST", [f"{k}={v}" for k, v in study_key(files).items()])
    assert res.returncode == 0 and not res.errors, res.output
