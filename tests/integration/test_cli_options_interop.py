"""The ``dicomnet`` command line with its non-default options against real peers.

Each test runs ``python -m dicomnet ...`` as a user would from a shell (in
``tmp_path``, so nothing lands in the working tree) and checks the exit code,
what the peer received (data set bytes where the peer keeps them as sent)
and that the printed table or JSON is right:

* ``store`` of a folder (recursive, mixed transfer syntaxes, a non-DICOM
  file, a SOP class and a transfer syntax the peer refuses) to dcmtk
  ``storescp``; ``--transfer-syntax``/``--async-ops`` to pynetdicom;
* ``find`` against Orthanc: wildcards, non-ASCII values, models, levels,
  ``--no-default-keys``, tags as keys, table and JSON output;
* ``get`` and ``move`` against dcmtk ``dcmqrscp`` (``storescp`` as destination);
* ``store-scp --layout study|flat`` fed by ``storescu`` and by Orthanc;
* errors: a refused association, a wrong called AE, a closed port, a peer that
  never answers -- one line on stderr, the documented exit code, no traceback.
"""
from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from .peers import HOST, Dcmqrscp, free_port, peer_env, port_accepts, record_started, require, storescu

pydicom = pytest.importorskip("pydicom")

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
#: A SOP class no storage SCP knows (dcmtk and pynetdicom refuse its context).
PRIVATE_SOP_CLASS = "1.2.826.0.1.3680043.9.7433.1.1"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_ASSOCIATION, EXIT_NETWORK = 0, 1, 2, 3, 4


# -- running the command line ----------------------------------------------------


def dicomnet(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m dicomnet ARGS`` in ``cwd``; stdout/stderr captured as text."""
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-m", "dicomnet", *args], cwd=cwd, capture_output=True,
                          text=True, encoding="utf-8", timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every stdout line must be one JSON object."""
    return [json.loads(line) for line in text.splitlines()]


def no_traceback(r: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in r.stderr + r.stdout, r.stderr


def dataset_bytes(path: Path) -> bytes:
    """A Part 10 file's data set, without preamble and File Meta group."""
    raw = path.read_bytes()
    assert raw[128:132] == b"DICM", path
    return raw[144 + int.from_bytes(raw[140:144], "little"):]


def little_endian_pixels(ds: Any) -> bytes:
    """``ds.PixelData`` as a little-endian transfer syntax carries it (pydicom keeps
    a big-endian file's OW bytes as they were)."""
    data = bytes(ds.PixelData)
    if ds.file_meta.TransferSyntaxUID == BIG_ENDIAN and ds.BitsAllocated == 16:
        swapped = bytearray(data)
        swapped[0::2], swapped[1::2] = data[1::2], data[0::2]
        return bytes(swapped)
    return data


@contextmanager
def refusing_storescp() -> Iterator[int]:
    """dcmtk ``storescp --refuse``: rejects every association; yields its port."""
    require("storescp")
    port = free_port()
    proc = subprocess.Popen(["storescp", "--refuse", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=peer_env())
    try:
        deadline = time.monotonic() + 10
        while not port_accepts(port):
            assert proc.poll() is None and time.monotonic() < deadline, "storescp --refuse did not start"
            time.sleep(0.01)
        record_started("dcmtk")
        yield port
    finally:
        proc.kill()
        proc.wait()


class Daemon:
    """``dicomnet store-scp ... --port 0 --json`` as a subprocess in ``cwd``;
    the first stdout line (``"event": "listening"``) gives the port."""

    def __init__(self, cwd: Path, *args: str) -> None:
        env = dict(os.environ, PYTHONIOENCODING="utf-8")
        self.proc = subprocess.Popen([sys.executable, "-m", "dicomnet", *args, "--port", "0", "--json"],
                                     cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     encoding="utf-8", env=env, stdin=subprocess.DEVNULL)
        self.port = 0

    def __enter__(self) -> Daemon:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.proc.poll() is None:
            if select.select([self.proc.stdout], [], [], 0.1)[0]:
                first = json.loads(self.proc.stdout.readline())
                assert first["event"] == "listening", first
                self.port = int(first["port"])
                return self
        self.proc.kill()
        raise RuntimeError(f"store-scp did not start: {self.proc.communicate()[1]}")

    def stop(self) -> tuple[int, list[dict[str, Any]], str]:
        """SIGTERM; (exit code, the remaining JSON lines, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=15)
        return self.proc.returncode, json_lines(out), err

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


# -- test data ---------------------------------------------------------------------


def _uid(n: int) -> str:
    return f"2.25.{time.time_ns()}{os.getpid() % 1000:03d}{n:03d}"


def make_study(folder: Path, count: int, *, name: str = "Doe^Jane", patient_id: str = "PID-1",
               transfer_syntax: str = EXPLICIT_LE, series: int = 1, study_uid: str | None = None,
               tag: str = "s") -> list[Path]:
    """``count`` small CT instances of one study (``series`` series), written with
    pydicom in ``transfer_syntax``; returns the paths."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID

    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or _uid(900)
    series_uids = [_uid(800 + s) for s in range(series)]
    paths = []
    for i in range(count):
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.SOPInstanceUID = _uid(i)
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20240102", "101010", f"ACC{i % 3}"
        ds.Modality, ds.StudyDescription = "CT", "HEAD ÄÖÜ"
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = name, patient_id, "19700101", "F"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uids[i % series]
        ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", i % series + 1, i + 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows = ds.Columns = 8
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = bytes((i + k) % 256 for k in range(128))
        ds["PixelData"].VR = "OW"
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
        path = folder / f"{tag}{i:02d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def private_sop_class_file(path: Path, testdata: Any) -> Path:
    """CT_small.dcm re-labelled with a SOP class no storage SCP supports."""
    ds = pydicom.dcmread(testdata("CT_small.dcm"))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = PRIVATE_SOP_CLASS
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = _uid(999)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def storescp_bp(make_storescp: Any) -> Any:
    """dcmtk storescp writing the data sets bit-preserving (``+B``), uncompressed only."""
    return make_storescp(args=["+B"])


# -- store -------------------------------------------------------------------------


def test_store_folder_mixed_syntaxes_to_storescp(storescp_bp: Any, tmp_path: Path, testdata: Any) -> None:
    """A folder tree with explicit/implicit/big-endian files, a JPEG file (storescp
    accepts uncompressed syntaxes only), a private SOP class and a text file:
    the good files arrive byte for byte, the two refused ones are reported with
    their reason, the text file is skipped, exit 1, and ``--json`` has one
    object per instance plus a summary that adds up."""
    root = tmp_path / "in"
    good = make_study(root / "a", 2, tag="ex")
    good += make_study(root / "b" / "deep", 1, transfer_syntax=IMPLICIT_LE, tag="im")
    for name in ("MR_small_bigendian.dcm", "rtplan.dcm", "CT_small.dcm"):
        target = root / "b" / name
        target.write_bytes(Path(testdata(name)).read_bytes())
        good.append(target)
    jpeg = root / "c" / "jpeg.dcm"
    jpeg.parent.mkdir()
    jpeg.write_bytes(Path(testdata("SC_rgb_jpeg_dcmtk.dcm")).read_bytes())
    private_sop_class_file(root / "c" / "private.dcm", testdata)
    (root / "c" / "README.txt").write_text("not DICOM\n")

    r = dicomnet(tmp_path, "store", HOST, str(storescp_bp.port), "in", "--aec", storescp_bp.aet,
                 "--max-pdu", "16384", "--json")
    no_traceback(r)
    assert r.returncode == EXIT_FAILURE, r.stderr + r.stdout
    *records, summary = json_lines(r.stdout)
    assert summary["summary"] is True and summary["ok"] is False
    assert (summary["total"], summary["sent"], summary["failed"], summary["skipped"]) == (8, 6, 2, 1)
    assert {Path(f["file"]).name for f in summary["failures"]} == {"jpeg.dcm", "private.dcm"}
    assert summary["bytes"] == sum(p.stat().st_size for p in good)
    by_file = {Path(rec["file"]).name: rec for rec in records}
    assert len(records) == 8
    assert all(by_file[p.name]["ok"] and by_file[p.name]["status"] == 0 for p in good)
    assert "no presentation context" in by_file["private.dcm"]["error"]
    assert PRIVATE_SOP_CLASS in by_file["private.dcm"]["error"]
    assert not by_file["jpeg.dcm"]["ok"]
    assert "README.txt" in r.stderr            # the skip warning

    received = storescp_bp.wait_for_files(6)
    sent = {pydicom.dcmread(p).SOPInstanceUID: p for p in good}
    assert len(received) == 6
    same_syntax = 0
    for path in received:
        meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
        source = sent[meta.MediaStorageSOPInstanceUID]
        own = pydicom.dcmread(source, stop_before_pixels=True).file_meta.TransferSyntaxUID
        if meta.TransferSyntaxUID == own:       # kept bit for bit (storescp +B)
            assert dataset_bytes(path) == dataset_bytes(source), source.name
            same_syntax += 1
        else:
            # storescp picks Explicit VR LE from the uncompressed syntaxes we offer:
            # the data set was transcoded, its values must be the same.
            assert meta.TransferSyntaxUID == EXPLICIT_LE, source.name
            got, original = pydicom.dcmread(path), pydicom.dcmread(source)
            if "PixelData" in original:
                assert got.PixelData == little_endian_pixels(original), source.name
                del got.PixelData, original.PixelData
            assert got == original, source.name
    assert same_syntax == 3                   # the explicit VR LE files


def test_store_transfer_syntax_async_ops_to_pynetdicom(make_pynetdicom_scp: Any, tmp_path: Path,
                                                        testdata: Any) -> None:
    """``--transfer-syntax`` implicit VR LE transcodes explicit-VR files (the peer
    gets implicit VR data sets with the same values) and fails a JPEG file it
    cannot transcode; ``--async-ops 4`` is harmless with pynetdicom; the plain
    summary line reports the counts."""
    scp = make_pynetdicom_scp()
    files = make_study(tmp_path / "study", 3)
    jpeg = tmp_path / "jpeg.dcm"
    jpeg.write_bytes(Path(testdata("SC_rgb_jpeg_dcmtk.dcm")).read_bytes())
    r = dicomnet(tmp_path, "store", HOST, str(scp.port), "study", "jpeg.dcm", "--aec", scp.aet,
                 "--transfer-syntax", IMPLICIT_LE, "--async-ops", "4", "--max-pdu", "4096")
    no_traceback(r)
    assert r.returncode == EXIT_FAILURE, r.stderr + r.stdout
    assert re.search(r"^failed: jpeg\.dcm: cannot be sent in 1\.2\.840\.10008\.1\.2\b", r.stdout, re.M), r.stdout
    assert re.search(r"^sent 3 of 4 instance\(s\), .* 1 failed$", r.stdout, re.M), r.stdout
    assert len(scp.files()) == 3
    for src in files:
        original = pydicom.dcmread(src)
        got = pydicom.dcmread(scp.store_dir / f"{original.SOPInstanceUID}.dcm")
        assert got.file_meta.TransferSyntaxUID == IMPLICIT_LE
        assert got.PatientName == original.PatientName and got.StudyDescription == "HEAD ÄÖÜ"
        assert got.PixelData == original.PixelData

    # -q: nothing on stdout for a clean run.
    r = dicomnet(tmp_path, "store", HOST, str(scp.port), "study", "--aec", scp.aet, "-q")
    assert (r.returncode, r.stdout, r.stderr) == (EXIT_OK, "", "")


# -- find --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def orthanc_study(orthanc: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A two-series study with a non-ASCII patient name, uploaded over REST."""
    folder = tmp_path_factory.mktemp("orthanc-study")
    pid = f"DN-{time.time_ns()}"
    paths = make_study(folder, 4, name="Müller^Jürgen", patient_id=pid, series=2)
    for p in paths:
        orthanc.upload(p)
    first = pydicom.dcmread(paths[0])
    return {"paths": paths, "pid": pid, "study": first.StudyInstanceUID,
            "series": sorted({pydicom.dcmread(p).SeriesInstanceUID for p in paths})}


def test_find_options_against_orthanc(orthanc: Any, orthanc_study: dict[str, Any], tmp_path: Path) -> None:
    """Wildcards and a non-ASCII value match (UTF-8, with ``-k
    SpecificCharacterSet=ISO_IR 192``; Orthanc's ``?`` stands for one byte, not
    one character, so it is put on an ASCII letter), the JSON lines are DICOM JSON with the name intact,
    ``--no-default-keys`` and tag-form keys return just those columns, the
    patient model and lower levels count right, and the table shows the name."""
    port, aec, pid = str(orthanc.dicom_port), orthanc.aet, orthanc_study["pid"]
    r = dicomnet(tmp_path, "find", HOST, port, "--aec", aec, "--json", "-k", "PatientName=Mü*er^Jür?en",
                 "-k", f"PatientID={pid}", "-k", "SpecificCharacterSet=ISO_IR 192")
    no_traceback(r)
    assert r.returncode == EXIT_OK, r.stderr
    *matches, summary = json_lines(r.stdout)
    assert summary["matches"] == 1 == len(matches) and summary["ok"] and summary["status"] == 0
    assert matches[0]["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Müller^Jürgen"}]}
    assert matches[0]["0020000D"]["Value"] == [orthanc_study["study"]]
    assert matches[0]["00081030"]["Value"] == ["HEAD ÄÖÜ"]

    # Table output: the default STUDY columns, then the -k ones; the name is printed as is.
    r = dicomnet(tmp_path, "find", HOST, port, "--aec", aec, "-k", "PatientName=Müller*",
                 "-k", f"PatientID={pid}", "-k", "ModalitiesInStudy", "-k", "SpecificCharacterSet=ISO_IR 192")
    assert r.returncode == EXIT_OK, r.stderr
    header, row, last = r.stdout.splitlines()
    assert header.split() == ["PatientName", "PatientID", "StudyDate", "AccessionNumber", "StudyDescription",
                              "StudyInstanceUID", "ModalitiesInStudy"]
    assert row.startswith("Müller^Jürgen") and orthanc_study["study"] in row and row.endswith("CT")
    assert last == "1 match(es); final status Success (0x0000)"

    # --no-default-keys with tags written three ways.
    r = dicomnet(tmp_path, "find", HOST, port, "--aec", aec, "--json", "--no-default-keys", "--level", "series",
                 "-k", f"0020,000D={orthanc_study['study']}", "-k", "0020000E", "-k", "(0008,0060)")
    assert r.returncode == EXIT_OK, r.stderr
    *matches, summary = json_lines(r.stdout)
    assert summary["matches"] == 2
    assert sorted(m["0020000E"]["Value"][0] for m in matches) == orthanc_study["series"]
    for m in matches:
        # Orthanc adds its character set, the level and RetrieveAETitle to every answer.
        assert set(m) - {"00080005", "00080052", "00080054"} == {"0020000D", "0020000E", "00080060"}, m

    # Patient root, IMAGE level: every instance of one series.
    r = dicomnet(tmp_path, "find", HOST, port, "--aec", aec, "--model", "patient", "--level", "IMAGE", "--json",
                 "-k", f"PatientID={pid}", "-k", f"StudyInstanceUID={orthanc_study['study']}",
                 "-k", f"SeriesInstanceUID={orthanc_study['series'][0]}")
    assert r.returncode == EXIT_OK, r.stderr
    assert json_lines(r.stdout)[-1]["matches"] == 2
    r = dicomnet(tmp_path, "find", HOST, port, "--aec", aec, "--model", "patient", "--level", "PATIENT",
                 "-k", f"PatientID={pid}", "-k", "NumberOfPatientRelatedInstances")
    assert r.returncode == EXIT_OK, r.stderr
    assert r.stdout.splitlines()[1].split()[-1] == "4"

    # No match: exit 0, no table.
    r = dicomnet(tmp_path, "find", HOST, port, "--aec", aec, "-k", "PatientID=NO-SUCH-ID-*")
    assert (r.returncode, r.stdout) == (EXIT_OK, "0 match(es); final status Success (0x0000)\n")
    # An unknown keyword is a command-line error, not a traceback.
    r = dicomnet(tmp_path, "find", HOST, port, "--aec", aec, "-k", "NoSuchKeyword=1")
    no_traceback(r)
    assert r.returncode == EXIT_USAGE and "NoSuchKeyword" in r.stderr


def test_find_non_ascii_value_declares_its_character_set(orthanc: Any, orthanc_study: dict[str, Any],
                                                         tmp_path: Path) -> None:
    """A non-ASCII ``-k`` value without ``SpecificCharacterSet``: the command
    line's text is Unicode, so ``find`` should declare ISO_IR 192 itself (as it
    can encode the value) rather than fail to encode it as ASCII."""
    r = dicomnet(tmp_path, "find", HOST, str(orthanc.dicom_port), "--aec", orthanc.aet, "--json",
                 "-k", "PatientName=Müller*", "-k", f"PatientID={orthanc_study['pid']}")
    no_traceback(r)
    assert r.returncode == EXIT_OK, r.stdout + r.stderr
    *matches, summary = json_lines(r.stdout)
    assert summary["matches"] == 1 and matches[0]["00100010"]["Value"] == [{"Alphabetic": "Müller^Jürgen"}]


# -- get / move --------------------------------------------------------------------


def test_get_and_move_with_dcmqrscp(make_storescp: Any, tmp_path: Path) -> None:
    """C-GET at SERIES level (patient root) into a nested folder that does not
    exist yet, JSON per file; C-MOVE of the study to storescp with ``-v``
    (pending counters) and ``--json``; an unknown destination exits 1."""
    files = make_study(tmp_path / "src", 4, series=2, patient_id="QR-1")
    dest = make_storescp(aet="MOVEDEST")
    with Dcmqrscp(move_destinations={"MOVEDEST": dest.port}, preload=files) as qr:
        first = pydicom.dcmread(files[0])
        series_files = [p for p in files if pydicom.dcmread(p).SeriesInstanceUID == first.SeriesInstanceUID]
        r = dicomnet(tmp_path, "get", HOST, str(qr.port), "--aec", qr.aet, "--model", "patient",
                     "--level", "SERIES", "-k", "PatientID=QR-1", "-k", f"StudyInstanceUID={first.StudyInstanceUID}",
                     "-k", f"SeriesInstanceUID={first.SeriesInstanceUID}", "--out", "got/series", "--json")
        no_traceback(r)
        assert r.returncode == EXIT_OK, r.stderr + r.stdout
        *events, summary = json_lines(r.stdout)
        assert summary["ok"] and summary["received"] == 2 == summary["completed"] and summary["failed"] == 0
        got = sorted(tmp_path.joinpath("got", "series").iterdir())
        assert sorted(Path(e["file"]) for e in events) == got
        assert all(e["event"] == "instance" and e["bytes"] == Path(e["file"]).stat().st_size for e in events)
        for src in series_files:
            back = pydicom.dcmread(tmp_path / "got" / "series" / f"{pydicom.dcmread(src).SOPInstanceUID}.dcm")
            assert back.PixelData == pydicom.dcmread(src).PixelData and back.PatientName == "Doe^Jane"

        r = dicomnet(tmp_path, "move", HOST, str(qr.port), "--aec", qr.aet, "--dest", "MOVEDEST",
                     "-k", f"StudyInstanceUID={first.StudyInstanceUID}", "-v")
        no_traceback(r)
        assert r.returncode == EXIT_OK, r.stderr + r.stdout
        assert "4 completed, 0 failed" in r.stdout
        moved = dest.wait_for_files(4)
        assert {pydicom.dcmread(p).SOPInstanceUID for p in moved} == {pydicom.dcmread(p).SOPInstanceUID for p in files}

        r = dicomnet(tmp_path, "move", HOST, str(qr.port), "--aec", qr.aet, "--dest", "NOWHERE", "--json",
                     "-k", f"StudyInstanceUID={first.StudyInstanceUID}")
        no_traceback(r)
        assert r.returncode == EXIT_FAILURE, r.stdout
        summary = json_lines(r.stdout)[-1]
        assert summary["summary"] and not summary["ok"] and summary["status"] != 0


# -- store-scp ---------------------------------------------------------------------


def test_store_scp_study_layout_from_storescu(tmp_path: Path) -> None:
    """dcmtk storescu -> ``store-scp --layout study``: files land under
    STUDY/SERIES/SOP.dcm with the data set bytes storescu sent (it sends the
    files' explicit VR LE data sets unchanged), no temporary file is left."""
    require("storescu")
    files = make_study(tmp_path / "src", 4, series=2)
    with Daemon(tmp_path, "store-scp", "--out", "recv", "--layout", "study", "--aet", "DNSCP") as scp:
        result = storescu(scp.port, "DNSCP", files)
        code, lines, err = scp.stop()
    assert result.ok, result.output
    assert code == 0, err
    assert lines[-1]["summary"] and (lines[-1]["received"], lines[-1]["refused"]) == (4, 0)
    for src in files:
        ds = pydicom.dcmread(src)
        out = tmp_path / "recv" / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
        assert dataset_bytes(out) == dataset_bytes(src)
    left = [p for p in (tmp_path / "recv").rglob("*") if p.is_file() and p.suffix != ".dcm"]
    assert left == []


def test_store_scp_flat_layout_from_orthanc(orthanc: Any, orthanc_study: dict[str, Any], tmp_path: Path) -> None:
    """Orthanc's ``/modalities/{id}/store`` -> ``store-scp`` (default flat
    layout, ``--out`` a relative folder): each file's data set equals what
    Orthanc itself stores, and the summary counts them."""
    study_id = orthanc.post("/tools/lookup", raw=orthanc_study["study"].encode(), content_type="text/plain")[0]["ID"]
    with Daemon(tmp_path, "store-scp", "--out", "flat", "--aet", "DNFLAT", "--layout", "flat") as scp:
        orthanc.add_modality("DNFLAT", "DNFLAT", scp.port)
        answer = orthanc.store("DNFLAT", [study_id])
        code, lines, err = scp.stop()
    assert answer["InstancesCount"] == 4 and answer["FailedInstancesCount"] == 0, answer
    assert code == 0, err
    assert lines[-1]["received"] == 4
    for oid in orthanc.get(f"/studies/{study_id}/instances"):
        sop = orthanc.instance_tags(oid["ID"])["SOPInstanceUID"]
        stored = tmp_path / "pacs.dcm"
        stored.write_bytes(orthanc.instance_file(oid["ID"]))
        assert dataset_bytes(tmp_path / "flat" / f"{sop}.dcm") == dataset_bytes(stored)


# -- errors ------------------------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word."""
    server = socket.create_server((HOST, 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for s in [*held, server]:
        s.close()


def test_echo_repeat_and_error_reporting(orthanc: Any, silent_port: int,
                                         tmp_path: Path) -> None:
    """``echo -n 3 --json`` gives three numbered objects; a wrong called AE
    (Orthanc checks it) and storescp ``--refuse`` exit 3, a closed port and a
    silent peer (``--timeout``) exit 4 -- each with one ``dicomnet: error:``
    line on stderr (or a JSON error record) and no traceback."""
    port = str(orthanc.dicom_port)
    r = dicomnet(tmp_path, "echo", HOST, port, "--aec", orthanc.aet, "-n", "3", "--json", "--aet", "ECHO-ME")
    assert r.returncode == EXIT_OK, r.stderr
    echoes = json_lines(r.stdout)
    assert [e["sequence"] for e in echoes] == [1, 2, 3]
    assert all(e["ok"] and e["status"] == 0 and e["calling_ae"] == "ECHO-ME" for e in echoes)

    r = dicomnet(tmp_path, "echo", HOST, port, "--aec", "WRONG-AE")
    no_traceback(r)
    assert r.returncode == EXIT_ASSOCIATION and r.stdout == ""
    assert r.stderr.startswith("dicomnet: error: association rejected by WRONG-AE")
    assert "called-AE-title-not-recognized" in r.stderr
    r = dicomnet(tmp_path, "echo", HOST, port, "--aec", "WRONG-AE", "--json")
    (record,) = json_lines(r.stdout)
    assert r.returncode == EXIT_ASSOCIATION and record["ok"] is False
    assert (record["result"], record["source"], record["reason"]) == (1, 1, 7)
    assert record["error_type"] == "AssociationRejected"

    src = make_study(tmp_path / "one", 1)
    with refusing_storescp() as refusing:
        r = dicomnet(tmp_path, "store", HOST, str(refusing), "one", "--aec", "STORESCP")
    no_traceback(r)
    assert r.returncode == EXIT_ASSOCIATION, r.stderr + r.stdout
    assert "dicomnet: error: association rejected by" in r.stderr
    assert "sent 0 of 1 instance(s)" in r.stdout

    closed = free_port()
    for cmd in (["echo", HOST, str(closed)], ["store", HOST, str(closed), str(src[0])],
                ["find", HOST, str(closed), "-k", "PatientID=X"]):
        r = dicomnet(tmp_path, *cmd)
        no_traceback(r)
        assert r.returncode == EXIT_NETWORK, (cmd, r.stderr)
        assert re.search(r"^dicomnet: error: cannot connect to .*127\.0\.0\.1:%d: " % closed, r.stderr, re.M), r.stderr

    started = time.monotonic()
    r = dicomnet(tmp_path, "echo", HOST, str(silent_port), "--timeout", "0.5")
    elapsed = time.monotonic() - started
    no_traceback(r)
    assert r.returncode == EXIT_NETWORK, r.stderr
    assert r.stderr.splitlines()[-1].startswith("dicomnet: error: ANY-SCP at 127.0.0.1:"), r.stderr
    assert "no answer to the A-ASSOCIATE-RQ within 0.5 s" in r.stderr
    assert elapsed < 10
    r = dicomnet(tmp_path, "find", HOST, str(silent_port), "--timeout", "0.5", "--json")
    no_traceback(r)
    assert r.returncode == EXIT_NETWORK and json_lines(r.stdout)[-1]["ok"] is False
    record_started("dcmtk")
