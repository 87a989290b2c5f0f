"""dcmtk's newer storage tools against dicomnet: ``dcmsend`` and ``termscu``
toward our Server (and the ``dicomnet store-scp`` command), our Client and
``dicomnet store`` toward ``dcmrecv``.

dcmsend -> ``dicomnet.Server``: many files and SOP classes on one
association, conversion to the one syntax we accept, deflated files at
each compression level, directory scans with other files mixed in, the
three decompression modes against a server that does or does not accept the
compressed syntaxes, --no-illegal-proposal, more than 128 presentation
contexts (several associations, or one), small and large PDUs, warning and
failure statuses from our handler with and without --no-halt, the report
file, and the UID checks (and a handler refusing an invalid UID). Our
Client / CLI -> dcmrecv: its storage modes and file names, configuration
profiles that accept only some transfer syntaxes (our Client transcodes or
says why it cannot), its maximum PDU, and Group Length elements. termscu ->
our Server: the shutdown request is refused (or the association, or it is
accepted and released) and the server goes on serving. Every data set is
compared byte for byte with what the sender put on the wire (see "Reference
bytes" below); the in-memory handler's bytes are a view of the received
buffer, checked to be one.

Reference bytes. dcmsend never sends a file's data set as it is stored: it
re-encodes it in the negotiated syntax with explicit sequence and item
lengths, group lengths recalculated where present, and no trailing padding
(FFFC,FFFC) -- exactly what ``dcmconv +t? -p`` writes, which is our
reference (for our synthetic Explicit VR LE files that is the file's own
data set). What it decompresses is ``dcmdjpeg``/``dcmdrle``'s output of
the same file; what it sends deflated inflates to ``dcmconv +te -p``'s.
dcmrecv in bit-preserving mode keeps the bytes we sent; in normal mode it
writes what ``dcmconv -e -p`` writes (undefined lengths).

dcmtk 3.6.7 quirks these tests live with (not dicomnet's doing):

* dcmsend proposes one context per SOP class for uncompressed files
  (Explicit LE, Big Endian, Implicit LE, whatever the file's own syntax)
  and converts silently; per compressed syntax one context with that syntax
  first (plus the uncompressed ones when it may decompress the file; with
  --decompress-never none, so the Default Transfer Syntax is not proposed,
  only a warning says so).
* dcmsend exits 0 after failure statuses (0xA700, 0xC000...) and even when
  the peer accepted none of its contexts; ``--no-halt`` only concerns input
  files it cannot read and instances it finds no context for. Without it,
  the first non-DICOM file ends the run before any association (exit 22),
  and an instance without a context aborts the association (A-ABORT) --
  and then no report file is written.
* dcmsend caps its PDUs at 131072 bytes whatever we offer (1 MiB, or no
  limit). It has no JPEG 2000 decoder (--list-decoders). It proposes
  Deflated only for files that are deflated, and deflates those again at
  its --compression-level.
* With -d or --log-level, dcmsend's "Received C-STORE Response" line has no
  status: the tests read the DIMSE Status of the dumped response.
* ``--no-illegal-proposal`` drops only lossless-compressed files it may not
  decompress; a lossy file under --decompress-lossless is still proposed
  in its own syntax alone.
* ``--scan-directories`` walks folders in directory order (not sorted).
* dcmrecv cannot bind one address (it listens on all interfaces: its port is
  checked free on 0.0.0.0 too, see ``free_port``); without a configuration
  file it accepts Verification only. It names files ``<modality>.<SOP
  Instance UID>``, and writes its own implementation UID into the File Meta
  (not the sender's, no Source AE title) in normal mode. Its log holds the
  readiness check's C-ECHO too. Without TCP_NODELAY=1 in its environment
  (``peer_env`` sets it) each C-STORE waits ~40 ms for a delayed ACK.
* dcmsend -nuc cuts a SOP Instance UID longer than 64 characters to 64 in
  the C-STORE-RQ's Affected SOP Instance UID (the data set keeps it whole).
* termscu just closes the connection when its private "shutdown" context is
  refused (exit 1); when it is accepted it releases.
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dicomnet import Client, Dataset
from dicomnet.dicom import read_dataset, read_file, write_file
from dicomnet.errors import NoPresentationContext
from dicomnet.pdu.items import ABSTRACT_SYNTAX_NOT_SUPPORTED, ACCEPTANCE
from dicomnet.server import Server
from dicomnet.types.sop_classes import storage_sop_classes
from dicomnet.types.uids import is_valid_uid

from .files import dataset_bytes, make_series
from .peers import (
    HOST,
    START_TIMEOUT,
    PeerError,
    ToolResult,
    _answers_echo,
    _Process,
    dicomnet_cli_server,
    echoscu,
    free_port,
    require,
    run_tool,
)

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"
BIG = "1.2.840.10008.1.2.2"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.70"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
J2K = "1.2.840.10008.1.2.4.91"
RLE = "1.2.840.10008.1.2.5"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
SC = "1.2.840.10008.5.1.4.1.1.7"
VERIFICATION = "1.2.840.10008.1.1"
#: dcmtk's private "shutdown" abstract syntax, the only context termscu proposes.
TERMSCU_SOP_CLASS = "1.2.276.0.7230010.3.4.1915765545.18030.917282194.0"
#: dcmconv's option writing each syntax.
DCMCONV_SYNTAX = {EXPLICIT: "+te", IMPLICIT: "+ti", BIG: "+tb"}
NOT_ACCEPTED = "<no acceptable presentation context>"


# ---------------------------------------------------------------- helpers
def tiny(path: Path, sop_class: str, sop_instance: str, ts: str = EXPLICIT) -> Path:
    """A minimal instance (no pixel data) of any SOP class."""
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    ds.PatientID = "DNET-1"
    ds.PatientName = "Tiny^Instance"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file(path, ds, ts)
    return path


def uid(ds: Dataset) -> str:
    return str(ds.SOPInstanceUID)


def dcmtk_encoded(src: Path, out: Path, *options: str) -> bytes:
    """The data set of ``src`` as dcmtk re-encodes it (``dcmconv options -p``,
    see the module docstring): what dcmsend puts on the wire, or (with -e)
    what dcmrecv writes in normal mode."""
    done = run_tool("dcmconv", *options, "-p", str(src), str(out))
    assert done.ok, done.output
    return dataset_bytes(out)


def decoded(tool: str, src: Path, out: Path) -> bytes:
    """The data set ``dcmdjpeg``/``dcmdrle`` make of a compressed file."""
    done = run_tool(tool, str(src), str(out))
    assert done.ok, done.output
    return dataset_bytes(out)


def report_entries(path: Path) -> list[dict[str, str]]:
    """The per-instance blocks of a dcmsend ``--create-report-file``."""
    entries: list[dict[str, str]] = []
    for block in path.read_text().split("\n\n"):
        fields = dict(re.findall(r"^(\w[\w. ]*?)\s*: ?(.*)$", block, re.M))
        if "Number" in fields and "DIMSE Status" in fields:
            entries.append(fields)
    return entries


def statuses(output: str) -> list[str]:
    """The C-STORE-RSP statuses dcmsend -v reports, in order."""
    return re.findall(r"Received C-STORE Response \(([^)]*)\)", output)


def debug_statuses(output: str) -> list[int]:
    """The C-STORE-RSP statuses dcmsend -d (or trace) dumps, in order."""
    return [int(s, 16) for s in re.findall(r"^D: DIMSE Status\s*: (0x[0-9a-f]{4}):", output, re.M)]


def wait_idle(server: Server, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while server.active_associations:
        assert time.monotonic() < deadline, f"{server!r} still busy"
        time.sleep(0.01)


_LOG_OPTIONS = ("-v", "-d", "-q", "--log-level", "-ll", "--verbose", "--debug", "--quiet")


def with_logging(args: Sequence[str]) -> list[str]:
    """``args`` with -v unless they choose a log level (dcmtk allows one)."""
    return list(args) if any(a in _LOG_OPTIONS for a in args) else ["-v", *args]


def dcmsend(port: int, options: Sequence[str | os.PathLike[str]], files: Iterable[str | os.PathLike[str]],
            calling: str = "DCMSEND") -> ToolResult:
    """``dcmsend [-v] -aet calling -aec DICOMNET options 127.0.0.1 port files``."""
    return run_tool("dcmsend", *with_logging([str(o) for o in options]), "-aet", calling, "-aec", "DICOMNET",
                    HOST, str(port), *(str(f) for f in files))


class Recorder:
    """Handler recording associations and stores: the context, the data set
    and its bytes as received (an unmodified lazy Dataset encodes in its own
    syntax to a view of the received buffer, copied here before the buffer
    is reused). Refuses (0xA700) the SOP Instance UIDs in ``refuse``, raises
    for those in ``fail`` and answers Warning (0xB000) for those in ``warn``."""

    def __init__(self, refuse: Iterable[str] = (), fail: Iterable[str] = (), warn: Iterable[str] = ()) -> None:
        self.associations: list[Any] = []
        self.stored: list[tuple[Any, Dataset, bytes]] = []
        self.echoes: list[Any] = []
        self.refuse, self.fail, self.warn = set(refuse), set(fail), set(warn)

    def on_association(self, info: Any) -> None:
        self.associations.append(info)

    def on_echo(self, ctx: Any) -> None:
        self.echoes.append(ctx)

    def on_store(self, ctx: Any, ds: Dataset) -> int:
        encoded = ds.encode(ctx.transfer_syntax)
        # A view of the received bytes, not a re-encoding (Deflated excepted:
        # that is inflated as it is read, so it can only be re-deflated).
        assert isinstance(encoded, memoryview) or ctx.transfer_syntax == DEFLATED, type(encoded)
        self.stored.append((ctx, ds, bytes(encoded)))
        if uid(ds) in self.fail:
            raise RuntimeError("archive offline")
        if uid(ds) in self.warn:
            return 0xB000
        return 0xA700 if uid(ds) in self.refuse else 0x0000

    def by_uid(self) -> dict[str, tuple[Any, bytes]]:
        out = {uid(ds): (ctx, raw) for ctx, ds, raw in self.stored}
        assert len(out) == len(self.stored), "an instance arrived twice"
        return out


class Streamer(Recorder):
    """A Recorder whose C-STOREs are streamed to Part 10 files in ``out``."""

    def __init__(self, out: Path, **kw: Any) -> None:
        super().__init__(**kw)
        self.out = out

    def store_destination(self, ctx: Any, command: Any) -> Path:
        return self.out / f"{command['AffectedSOPInstanceUID']}.dcm"


def check_received(rec: Recorder, expected: dict[str, tuple[str, bytes]], calling: str = "DCMSEND") -> None:
    """Every instance arrived once, in the syntax and with the bytes expected
    (SOP Instance UID -> (syntax, data set bytes)); a streamed file holds
    exactly those bytes after a File Meta group naming that syntax."""
    received = rec.by_uid()
    assert sorted(received) == sorted(expected)
    for key, (ts, data) in expected.items():
        ctx, raw = received[key]
        assert ctx.transfer_syntax == ts, key
        assert raw == data, f"{key}: data set bytes differ ({len(raw)} received, {len(data)} expected)"
        if isinstance(rec, Streamer):
            written = rec.out / f"{key}.dcm"
            assert dataset_bytes(written) == data
            meta = read_file(written).file_meta
            assert (meta.TransferSyntaxUID, meta.MediaStorageSOPInstanceUID) == (ts, key)
            assert meta.SourceApplicationEntityTitle.strip() == calling


# ===================================================== dcmsend -> our Server
PYDICOM_FILES = [
    "CT_small.dcm",            # Explicit LE with trailing padding, private tags, a sequence
    "MR_small_implicit.dcm",   # Implicit LE
    "ExplVR_BigEnd.dcm",       # Big Endian (Ultrasound)
    "waveform_ecg.dcm",        # 12-lead ECG
    "reportsi.dcm",            # Basic Text SR, nested sequences
    "image_dfl.dcm",           # Deflated Explicit LE (dcmsend inflates it)
    "liver_1frame.dcm",        # Segmentation
]


@pytest.mark.parametrize("streamed", [False, True], ids=["in-memory", "streamed"])
def test_dcmsend_many_files_one_association(our_server: Callable[..., Server], testdata: Callable[[str], str],
                                            tmp_path: Path, streamed: bool) -> None:
    """Synthetic CT and MR series plus real files of seven more SOP classes in
    five transfer syntaxes: one association, every context accepted in
    Explicit VR LE, message IDs in order, the synthetic files' data sets
    arriving exactly as stored and the others as dcmtk re-encodes them."""
    files = make_series(tmp_path / "ct", 4) + make_series(tmp_path / "mr", 2, modality="MR")
    real = [Path(testdata(name)) for name in PYDICOM_FILES]
    expected = {uid(ds): (EXPLICIT, dataset_bytes(path)) for path, ds in files}
    for n, path in enumerate(real):
        expected[uid(read_file(path))] = (EXPLICIT, dcmtk_encoded(path, tmp_path / f"ref{n}.dcm", "+te"))
    rec = Streamer(tmp_path / "out") if streamed else Recorder()
    srv = our_server("DICOMNET", rec)
    report = tmp_path / "report.txt"
    result = dcmsend(srv.port, ["--create-report-file", report], [*(p for p, _ in files), *real])
    assert result.ok, result.output
    assert statuses(result.output) == ["Success"] * 13
    [info] = rec.associations
    assert info.calling_ae == "DCMSEND"
    proposed = {pc.abstract_syntax for pc in info.rq.presentation_contexts}
    assert proposed == {CT, MR, str(read_file(real[2]).SOPClassUID), "1.2.840.10008.5.1.4.1.1.9.1.1",
                        "1.2.840.10008.5.1.4.1.1.88.11", SC, "1.2.840.10008.5.1.4.1.1.66.4"}
    assert len(info.negotiated.contexts) == len(info.rq.presentation_contexts)
    assert {c.transfer_syntax for c in info.negotiated.contexts.values()} == {EXPLICIT}
    assert [ctx.message_id for ctx, _, _ in rec.stored] == list(range(1, 14))
    check_received(rec, expected)
    entries = report_entries(report)
    assert [e["DIMSE Status"] for e in entries] == ["0x0000 (Success)"] * 13
    assert {e["Association"] for e in entries} == {"1"}
    assert [e["Network Xfer"].split(" ")[0] for e in entries] == [EXPLICIT] * 13
    assert "Number of associations   : 1" in result.output


@pytest.mark.parametrize("streamed", [False, True], ids=["in-memory", "streamed"])
@pytest.mark.parametrize("ts", [IMPLICIT, BIG], ids=["implicit-only", "big-endian-only"])
def test_dcmsend_converts_to_the_syntax_we_accept(our_server: Callable[..., Server], testdata: Callable[[str], str],
                                                  tmp_path: Path, ts: str, streamed: bool) -> None:
    """Our server accepting one uncompressed syntax: dcmsend converts Explicit
    LE, Implicit LE and Big Endian files to it, and each data set arrives as
    dcmtk's own conversion writes it."""
    [(plain, ds)] = make_series(tmp_path / "ct", 1)
    real = [Path(testdata(name)) for name in ("CT_small.dcm", "MR_small_implicit.dcm", "ExplVR_BigEnd.dcm")]
    sources = [plain, *real]
    rec = Streamer(tmp_path / "out") if streamed else Recorder()
    us = str(read_file(real[2]).SOPClassUID)
    srv = our_server("DICOMNET", rec, contexts={CT: [ts], MR: [ts], us: [ts]})
    result = dcmsend(srv.port, [], sources)
    assert result.ok and statuses(result.output) == ["Success"] * 4, result.output
    [info] = rec.associations
    assert {c.transfer_syntax for c in info.negotiated.contexts.values()} == {ts}
    check_received(rec, {uid(read_file(src)): (ts, dcmtk_encoded(src, tmp_path / f"ref{n}.dcm", DCMCONV_SYNTAX[ts]))
                         for n, src in enumerate(sources)})
    assert rec.by_uid()[uid(ds)][1] == bytes(ds.encode(ts))    # and as we would have converted it


@pytest.mark.parametrize("level", [None, "0", "9"], ids=["default-level", "level-0", "level-9"])
def test_dcmsend_deflated_files(our_server: Callable[..., Server], testdata: Callable[[str], str],
                                tmp_path: Path, level: str | None) -> None:
    """Deflated files to a server that accepts Deflated Explicit VR LE: dcmsend
    deflates the data set again at its --compression-level; our streamed file
    holds that stream, which inflates to dcmtk's Explicit VR LE encoding, and
    the handler reads the same values as the source's."""
    [(plain, _)] = make_series(tmp_path / "ct", 1)
    made = tmp_path / "deflated-ct.dcm"
    assert run_tool("dcmconv", "+td", str(plain), str(made)).ok
    sources = [Path(testdata("image_dfl.dcm")), made]
    rec = Streamer(tmp_path / "out")
    srv = our_server("DICOMNET", rec, contexts={CT: [DEFLATED], SC: [DEFLATED]})
    result = dcmsend(srv.port, [] if level is None else ["+cl", level], sources)
    assert result.ok and statuses(result.output) == ["Success"] * 2, result.output
    assert [ctx.transfer_syntax for ctx, _, _ in rec.stored] == [DEFLATED] * 2
    for n, src in enumerate(sources):
        source = read_file(src)
        written = rec.out / f"{uid(source)}.dcm"
        assert read_file(written).file_meta.TransferSyntaxUID == DEFLATED
        reference = dcmtk_encoded(src, tmp_path / f"ref{n}.dcm", "+te")
        wire = dataset_bytes(written)
        assert zlib.decompress(wire, -zlib.MAX_WBITS) == reference
        if level == "0":
            assert len(wire) > len(reference)            # stored blocks: a little larger
        elif level == "9":
            assert len(wire) < len(reference) // 2
        [received] = [ds for _, ds, _ in rec.stored if uid(ds) == uid(source)]
        assert received == source


@pytest.mark.parametrize("options, expected_files, ignored", [
    (["+sd", "+r", "-nh"], ["top", "a", "ab", "c", "bin"],
     ["README", "a/notes.txt", "a/b/broken.dcm", "c/bare.dcm", "c/empty.dat"]),
    (["+sd", "+r", "-nh", "+sp", "*.dcm"], ["top", "a", "ab", "c"], ["a/b/broken.dcm", "c/bare.dcm"]),
    (["+sd", "-nh"], ["top"], ["README"]),                   # --no-recurse is the default
    (["+sd", "+r"], [], None),                               # the first non-DICOM file halts the run
], ids=["recurse-no-halt", "recurse-pattern", "top-level-only", "recurse-halts"])
def test_dcmsend_scans_a_tree(our_server: Callable[..., Server], tmp_path: Path, options: list[str],
                              expected_files: list[str], ignored: list[str] | None) -> None:
    """+sd [+r] [+sp] over a tree where DICOM files (one named .bin) lie among
    a text file, a 5-byte file, an empty file, a non-DICOM ``.dcm`` and a data
    set without File Meta (dcmsend reads Part 10 files only by default): the
    DICOM files the options select arrive as stored, on one association; the
    others are named as ignored (--no-halt) or end the run (exit 22)."""
    tree = tmp_path / "tree"
    places = {"top": tree, "a": tree / "a", "ab": tree / "a" / "b", "c": tree / "c"}
    made: dict[str, tuple[Path, Dataset]] = {}
    for name, folder in places.items():
        [made[name]] = make_series(folder, 1)
    [made["bin"]] = make_series(tree / "c", 1, suffix=".bin")
    (tree / "a" / "notes.txt").write_text("not DICOM\n")
    (tree / "README").write_bytes(b"short")
    (tree / "c" / "empty.dat").write_bytes(b"")
    (tree / "a" / "b" / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 40)
    bare = read_dataset(dataset_bytes(made["top"][0]), transfer_syntax=EXPLICIT)
    (tree / "c" / "bare.dcm").write_bytes(bytes(bare.encode(EXPLICIT)))      # no preamble, no File Meta
    rec = Recorder()
    srv = our_server("DICOMNET", rec)
    result = dcmsend(srv.port, options, [tree])
    if ignored is None:
        assert result.returncode == 22, result.output
        assert re.search(r"^F: bad DICOM file: ", result.output, re.M), result.output
        assert rec.associations == [] and rec.stored == []
        return
    assert result.returncode == 0, result.output
    assert all(ln.startswith("E: cannot add DICOM file to the transfer list: ") for ln in result.errors), result.output
    skipped = re.findall(r"^W: bad DICOM file: (\S+?): .*, ignoring file$", result.output, re.M)
    assert sorted(skipped) == sorted(str(tree / name) for name in ignored)
    check_received(rec, {uid(made[n][1]): (EXPLICIT, dataset_bytes(made[n][0])) for n in expected_files})
    assert len(rec.associations) == 1


@pytest.fixture(scope="module")
def compressed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Compressed inputs: three synthetic CT images as JPEG lossless, JPEG
    extended (lossy: a new SOP Instance UID) and RLE, and pydicom's JPEG 2000
    SC image. For each: the file, its syntax, SOP Instance UID, the data set
    dcmtk's decoder makes of it (None: no decoder in dcmtk) and the original
    pixels (lossless only)."""
    require("dcmcjpeg", "dcmcrle", "dcmdjpeg", "dcmdrle", "dcmconv", "pydicom")
    from pydicom.data import get_testdata_file

    root = tmp_path_factory.mktemp("compressed")
    plains = make_series(root / "plain", 3, rows=128, cols=128)
    out: dict[str, Any] = {}
    for (plain, original), (key, encoder, ts, decoder, lossless) in zip(plains, (
            ("jpeg-lossless", ["dcmcjpeg"], JPEG_LOSSLESS, "dcmdjpeg", True),
            ("jpeg-lossy", ["dcmcjpeg", "+ee"], JPEG_EXTENDED, "dcmdjpeg", False),
            ("rle", ["dcmcrle"], RLE, "dcmdrle", True))):
        path = root / f"{key}.dcm"
        done = run_tool(*encoder, str(plain), str(path))
        assert done.ok, done.output
        ds = read_file(path)
        assert ds.transfer_syntax == ts
        out[key] = {"path": path, "ts": ts, "uid": uid(ds), "sop_class": CT,
                    "decoded": decoded(decoder, path, root / f"{key}-decoded.dcm"),
                    "pixels": original.pixel_array if lossless else None}
    j2k = get_testdata_file("JPEG2000.dcm", download=False)
    if j2k is None:
        pytest.skip("pydicom's JPEG2000.dcm is not available offline")
    ds = read_file(j2k)
    assert ds.transfer_syntax == J2K
    out["j2k"] = {"path": Path(j2k), "ts": J2K, "uid": uid(ds), "sop_class": SC, "decoded": None, "pixels": None}
    return out


ALL_SYNTAXES = {CT: [JPEG_LOSSLESS, JPEG_EXTENDED, RLE, EXPLICIT, IMPLICIT], SC: [J2K, EXPLICIT, IMPLICIT]}
UNCOMPRESSED = {CT: [EXPLICIT, IMPLICIT], SC: [EXPLICIT, IMPLICIT]}


@pytest.mark.parametrize("accepts_compressed", [True, False], ids=["server-accepts-compressed", "uncompressed-only"])
@pytest.mark.parametrize("mode, decompressed", [
    ("-dn", set()),
    ("+dls", {"jpeg-lossless", "rle"}),
    ("+dly", {"jpeg-lossless", "rle", "jpeg-lossy"}),          # no JPEG 2000 decoder in dcmtk
], ids=["decompress-never", "decompress-lossless", "decompress-lossy"])
def test_dcmsend_decompression_modes(our_server: Callable[..., Server], tmp_path: Path, compressed: dict[str, Any],
                                     mode: str, decompressed: set[str], accepts_compressed: bool) -> None:
    """JPEG lossless, JPEG lossy, RLE and JPEG 2000 files with --no-halt: a
    server accepting their syntaxes gets each fragment for fragment whatever
    the mode; one accepting only uncompressed data gets what the mode lets
    dcmsend decompress, in Explicit VR LE, as dcmtk's decoder makes it (the
    original pixels when lossless); the rest is reported without a context."""
    keys = ["jpeg-lossless", "jpeg-lossy", "rle", "j2k"]
    rec = Streamer(tmp_path / "out")
    srv = our_server("DICOMNET", rec, contexts=ALL_SYNTAXES if accepts_compressed else UNCOMPRESSED)
    report = tmp_path / "report.txt"
    result = dcmsend(srv.port, [mode, "-nh", "--create-report-file", report], [compressed[k]["path"] for k in keys])
    assert result.returncode == 0, result.output
    [info] = rec.associations
    proposals = {tuple(pc.transfer_syntaxes) for pc in info.rq.presentation_contexts}
    for key in keys:
        own = compressed[key]["ts"]
        assert ((own, EXPLICIT, BIG, IMPLICIT) if key in decompressed else (own,)) in proposals
    if accepts_compressed:
        sent = set(keys)
        expected = {compressed[k]["uid"]: (compressed[k]["ts"],
                                           dcmtk_encoded(compressed[k]["path"], tmp_path / f"{k}.dcm"))
                    for k in keys}
    else:
        sent = decompressed
        expected = {compressed[k]["uid"]: (EXPLICIT, compressed[k]["decoded"]) for k in sent}
    check_received(rec, expected)
    if not accepts_compressed and sent:
        for ctx, ds, _ in rec.stored:
            key = next(k for k in sent if compressed[k]["uid"] == uid(ds))
            pixels = compressed[key]["pixels"]
            if pixels is not None:
                assert np.array_equal(read_file(rec.out / f"{uid(ds)}.dcm").pixel_array, pixels)
    if accepts_compressed:
        for key in ("jpeg-lossless", "jpeg-lossy", "rle"):   # dcmtk-made files pass unchanged
            written = rec.out / f"{compressed[key]['uid']}.dcm"
            assert dataset_bytes(written) == dataset_bytes(compressed[key]["path"])
    entries = {e["SOP Instance"]: e for e in report_entries(report)}
    assert sorted(entries) == sorted(compressed[k]["uid"] for k in keys)
    for key in keys:
        entry = entries[compressed[key]["uid"]]
        if key in sent:
            ts = compressed[key]["ts"] if accepts_compressed else EXPLICIT
            assert (entry["DIMSE Status"], entry["Network Xfer"].split(" ")[0]) == ("0x0000 (Success)", ts)
        else:
            assert entry["DIMSE Status"] == NOT_ACCEPTED
    if not accepts_compressed and mode == "-dn":
        assert info.negotiated.contexts == {}       # an A-ASSOCIATE-AC with every context rejected
        assert "No Acceptable Presentation Contexts" in result.output


@pytest.mark.parametrize("options, halts", [(["-dn", "-nip", "-nh"], False), (["-dn", "-nip"], True)],
                         ids=["no-halt", "halt"])
def test_dcmsend_no_illegal_proposal(our_server: Callable[..., Server], tmp_path: Path,
                                     compressed: dict[str, Any], options: list[str], halts: bool) -> None:
    """--decompress-never --no-illegal-proposal: the JPEG lossless file cannot
    be proposed with the Default Transfer Syntax, so it is dropped before the
    association (and ends the run without --no-halt); the plain CT goes on a
    context that does include Implicit VR LE."""
    [(plain, ds)] = make_series(tmp_path / "plain", 1)
    rec = Recorder()
    srv = our_server("DICOMNET", rec, contexts=ALL_SYNTAXES)
    result = dcmsend(srv.port, options, [compressed["jpeg-lossless"]["path"], plain])
    assert "we cannot add a presentation context for this SOP instance" in result.output, result.output
    if halts:
        assert result.returncode != 0
        assert rec.associations == []
        return
    assert result.returncode == 0, result.output
    [info] = rec.associations
    assert [tuple(pc.transfer_syntaxes) for pc in info.rq.presentation_contexts] == [(EXPLICIT, BIG, IMPLICIT)]
    check_received(rec, {uid(ds): (EXPLICIT, dataset_bytes(plain))})


def many_sop_classes(folder: Path, count: int) -> list[tuple[Path, str, str]]:
    """``count`` tiny instances, each of another registered storage SOP class:
    (path, SOP class, SOP instance)."""
    classes = [str(c) for c in storage_sop_classes()][:count]
    assert len(classes) == count
    root = f"1.2.826.0.1.3680043.2.1125.{random.getrandbits(30)}"
    return [(tiny(folder / f"{n:03d}.dcm", cls, f"{root}.{n + 1}"), cls, f"{root}.{n + 1}")
            for n, cls in enumerate(classes)]


@pytest.mark.parametrize("option", ["+ma", "-ma"], ids=["multi-associations", "single-association"])
def test_dcmsend_more_than_128_contexts(our_server: Callable[..., Server], tmp_path: Path, option: str) -> None:
    """131 instances of 131 storage SOP classes: with +ma (the default) two
    associations one after the other (128 contexts, then 3) carry them all;
    with -ma one association carries the first 128 and the rest is reported
    as not sent."""
    files = many_sop_classes(tmp_path / "many", 131)
    rec = Recorder()
    srv = our_server("DICOMNET", rec)
    report = tmp_path / "report.txt"
    result = dcmsend(srv.port, [option, "-nh", "--create-report-file", report], [p for p, _, _ in files])
    assert result.returncode == 0, result.output
    counts = [len(info.rq.presentation_contexts) for info in rec.associations]
    accepted = [len(info.negotiated.contexts) for info in rec.associations]
    sent = files if option == "+ma" else files[:128]
    assert counts == accepted == ([128, 3] if option == "+ma" else [128])
    check_received(rec, {inst: (EXPLICIT, dataset_bytes(path)) for path, _, inst in sent})
    assert [ctx.abstract_syntax for ctx, _, _ in rec.stored] == [cls for _, cls, _ in sent]
    entries = report_entries(report)
    assert [e["SOP Instance"] for e in entries] == [inst for _, _, inst in files]
    if option == "+ma":
        assert [e["Association"] for e in entries] == ["1"] * 128 + ["2"] * 3
        assert {e["DIMSE Status"] for e in entries} == {"0x0000 (Success)"}
        assert "Number of associations   : 2" in result.output
    else:
        assert [e["DIMSE Status"] for e in entries[:128]] == ["0x0000 (Success)"] * 128
        assert [(e["DIMSE Status"], e["Association"]) for e in entries[128:]] == [("<not sent>", "0")] * 3
        assert re.search(r"- NOT sent to the peer\s*: 3", result.output), result.output


@pytest.mark.parametrize("streamed", [False, True], ids=["in-memory", "streamed"])
@pytest.mark.parametrize("options, server_max_pdu, peer_max_pdu, max_send_pdv, send_pdu", [
    (["-pdu", "4096", "--max-send-pdu", "4096"], None, 4096, 131060, 4096),
    ([], 4096, 16384, 4084, 4096),                                   # our A-ASSOCIATE-AC limits it
    (["-pdu", "131072"], 131072, 131072, 131060, 131072),
    ([], 0, 16384, 131060, 131072),                                  # we set no limit: dcmsend's own cap
    (["--max-send-pdu", "8192"], 20000, 16384, 19988, 8192),
], ids=["dcmsend-4096", "ours-4096", "both-131072", "ours-unlimited", "send-8192-of-20000"])
def test_dcmsend_pdu_sizes(our_server: Callable[..., Server], tmp_path: Path, options: list[str],
                           server_max_pdu: int | None, peer_max_pdu: int, max_send_pdv: int, send_pdu: int,
                           streamed: bool) -> None:
    """A 512 KB image in P-DATA-TF PDUs as small as 4 KB or as large as 128 KB:
    both ends agree on the limits, dcmsend fills each PDU to what it may send
    (one for the command, then ceil(size / (PDU - 12)) for the data set), and
    the data set is reassembled byte for byte."""
    [(path, ds)] = make_series(tmp_path / "src", 1, rows=512, cols=512)
    data = dataset_bytes(path)
    rec = Streamer(tmp_path / "out") if streamed else Recorder()
    kw = {} if server_max_pdu is None else {"max_pdu": server_max_pdu}
    srv = our_server("DICOMNET", rec, **kw)
    result = dcmsend(srv.port, [*options, "--log-level", "trace"], [path])
    assert result.returncode == 0 and debug_statuses(result.output) == [0], result.output[-3000:]
    [info] = rec.associations
    assert info.negotiated.peer_max_pdu == peer_max_pdu
    assert f"Max Send PDV: {max_send_pdv})" in result.output
    assert result.output.count("Send P DATA PDU") == 1 + math.ceil(len(data) / (send_pdu - 12))
    check_received(rec, {uid(ds): (EXPLICIT, data)})


@pytest.mark.parametrize("no_halt", [True, False], ids=["no-halt", "halt"])
def test_dcmsend_failures_and_no_halt(our_server: Callable[..., Server], tmp_path: Path,
                                      compressed: dict[str, Any], no_halt: bool) -> None:
    """Our handler warns about one instance (0xB000), refuses one (0xA700)
    and fails on another (it raises: 0xC000 with the exception as Error
    Comment); a lossy JPEG finds no context on our uncompressed-only server.
    dcmsend reports each and goes on after the statuses; --no-halt also skips
    a non-DICOM file and the JPEG, and the report and summary list every
    instance's status. Without it, the JPEG aborts the association (no
    report) -- and our server keeps serving."""
    files = make_series(tmp_path / "ct", 5)
    [a, warned, refused, failing, e] = [p for p, _ in files]
    uids = [uid(ds) for _, ds in files]
    rec = Recorder(warn={uids[1]}, refuse={uids[2]}, fail={uids[3]})
    srv = our_server("DICOMNET", rec, contexts={**UNCOMPRESSED, VERIFICATION: [IMPLICIT]})
    junk = tmp_path / "junk.dcm"
    junk.write_text("this is no DICOM file\n")
    report = tmp_path / "report.txt"
    lossy = compressed["jpeg-lossy"]["path"]
    order = [a, warned, refused, failing, *([junk] if no_halt else []), lossy, e]
    result = dcmsend(srv.port, [*(["-nh"] if no_halt else []), "-d", "--create-report-file", report], order)
    assert debug_statuses(result.output) == [0x0000, 0xB000, 0xA700, 0xC000] + ([0x0000] if no_halt else [])
    assert "(0000,0902) LO [RuntimeError: archive offline]" in result.output     # our ErrorComment
    assert "No presentation context found for sending C-STORE" in result.output
    stored = [uid(ds) for _, ds, _ in rec.stored]
    if not no_halt:
        assert result.returncode != 0, result.output
        assert "Aborting Association" in result.output
        assert stored == uids[:4]
        assert not report.exists()
        wait_idle(srv)
        assert echoscu(srv.port, "DICOMNET").ok
        assert len(rec.echoes) == 1
        return
    assert result.returncode == 0, result.output
    assert f"bad DICOM file: {junk}" in result.output
    assert stored == uids
    assert len(rec.associations) == 1
    entries = report_entries(report)
    assert [(e["SOP Instance"], e["DIMSE Status"]) for e in entries] == [
        (uids[0], "0x0000 (Success)"), (uids[1], "0xb000 (Warning: CoercionOfDataElements)"),
        (uids[2], "0xa700 (Refused: OutOfResources)"), (uids[3], "0xc000 (Error: CannotUnderstand)"),
        (compressed["jpeg-lossy"]["uid"], NOT_ACCEPTED), (uids[4], "0x0000 (Success)")]
    assert [e["Filename"] for e in entries] == [str(p) for p in (a, warned, refused, failing, lossy, e)]
    summary = result.output[result.output.index("Status Summary"):]
    for count, what in ((5, "- sent to the peer"), (2, "* with status SUCCESS"), (1, "* with status WARNING"),
                        (1, "* with status ERROR"), (1, "* with status REFUSED"), (1, "* no acceptable pres.")):
        assert re.search(rf"{re.escape(what)}\s*: {count}$", summary, re.M), summary


@pytest.mark.parametrize("sop_class, sop_instance, complaint", [
    (SC, "1.2.03.4", "Invalid SOP Instance UID"),                       # a component with a leading zero
    (SC, "1.2.3.4_x", "Invalid SOP Instance UID"),                      # not a UID character
    (SC, "1.2." + "7" * 70, "Invalid SOP Instance UID"),                # 74 characters (UI: 64)
    ("1.2.840.10008.5.1.4.1.1.07", "1.2.3.4", "Invalid SOP Class UID"),
    ("1.2.826.0.1.3680043.2.1125.99.1", "1.2.3.5", None),                # a private SOP class is fine
], ids=["leading-zero", "bad-character", "too-long", "bad-class", "private-class"])
def test_dcmsend_uid_checks(our_server: Callable[..., Server], tmp_path: Path, sop_class: str,
                            sop_instance: str, complaint: str | None) -> None:
    """dcmsend refuses files with malformed UIDs unless --no-uid-checks; then
    our server (configured for the SOP class) takes the instance as sent --
    checking UIDs is the handler's business -- and answers with them."""
    path = tiny(tmp_path / "odd.dcm", sop_class, sop_instance)
    rec = Recorder()
    srv = our_server("DICOMNET", rec, contexts={sop_class: [EXPLICIT]})
    checked = dcmsend(srv.port, [], [path])
    if complaint is not None:
        assert checked.returncode == 22 and f"F: bad DICOM file: {path}: {complaint}" in checked.output, checked.output
        assert rec.associations == []
        result = dcmsend(srv.port, ["-nuc", "-d"], [path])
    else:
        result = checked
    assert result.ok, result.output
    check_received(rec, {sop_instance: (EXPLICIT, dataset_bytes(path))})
    [(ctx, _, _)] = rec.stored
    assert ctx.abstract_syntax == sop_class
    if complaint is not None:
        # Our C-STORE-RSP names the instance as the request did (for the long
        # UID, dcmsend cut the command's copy to 64 characters; the data set
        # keeps all 74).
        answer = result.output.split("C-STORE RSP")[-1]
        assert re.search(rf"^D: Affected SOP Instance UID\s*: {re.escape(sop_instance[:64])}$", answer, re.M), answer
        assert ctx.command["AffectedSOPInstanceUID"] == sop_instance[:64]
        assert debug_statuses(result.output) == [0]


class UIDCheckingStreamer(Streamer):
    """A Streamer that refuses (ValueError) a SOP Instance UID unfit for a
    file name, as docs/api.md tells handlers to."""

    def store_destination(self, ctx: Any, command: Any) -> Path:
        if not is_valid_uid(str(command["AffectedSOPInstanceUID"])):
            raise ValueError(f"refused: {command['AffectedSOPInstanceUID']!r} is not a valid UID")
        return super().store_destination(ctx, command)


def test_dcmsend_invalid_uid_refused_by_store_destination(our_server: Callable[..., Server], tmp_path: Path) -> None:
    """dcmsend -nuc sends an instance whose UID our handler will not use as a
    file name: store_destination raises ValueError, dcmsend gets 0xC000 with
    the reason as Error Comment, no file (temporary or final) is left, and the
    next instance on the association is stored."""
    bad = tiny(tmp_path / "src" / "bad.dcm", SC, "1.2.3.4_x")
    [(good, ds)] = make_series(tmp_path / "src", 1)
    out = tmp_path / "out"
    out.mkdir()
    rec = UIDCheckingStreamer(out)
    srv = our_server("DICOMNET", rec)
    result = dcmsend(srv.port, ["-nuc", "-d"], [bad, good])
    assert result.returncode == 0, result.output
    assert debug_statuses(result.output) == [0xC000, 0x0000]
    assert "(0000,0902) LO [ValueError: refused: '1.2.3.4_x' is not a valid UID]" in result.output
    assert [p.name for p in out.iterdir()] == [f"{uid(ds)}.dcm"]
    check_received(rec, {uid(ds): (EXPLICIT, dataset_bytes(good))})


def test_store_destination_refusal_is_logged_without_traceback(our_server: Callable[..., Server], tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """The refusal above is an expected outcome (an invalid UID from the
    peer), not a server fault: one warning naming it, no ERROR record, no
    traceback in the log."""
    caplog.set_level(logging.INFO, logger="dicomnet")
    bad = tiny(tmp_path / "src" / "bad.dcm", SC, "1.2.3.4_x")
    rec = UIDCheckingStreamer(tmp_path / "out")
    srv = our_server("DICOMNET", rec)
    result = dcmsend(srv.port, ["-nuc"], [bad])
    assert result.returncode == 0 and statuses(result.output) == ["Error: CannotUnderstand"], result.output
    wait_idle(srv)
    records = [r for r in caplog.records if r.name.startswith("dicomnet")]
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert any("store_destination refused the instance" in m and "1.2.3.4_x" in m for m in warnings), warnings
    assert [r.getMessage() for r in records if r.levelno >= logging.ERROR or r.exc_info] == []


@contextmanager
def store_scp_cli(out_dir: Path, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``dicomnet store-scp --out out_dir`` on 127.0.0.1: yields (process, port)."""
    with dicomnet_cli_server(["store-scp", "--aet", "DICOMNET", "--out", str(out_dir), "--timeout", "10"],
                             log) as running:
        yield running


def test_dcmsend_and_termscu_to_dicomnet_store_scp(tmp_path: Path, testdata: Callable[[str], str],
                                                  compressed: dict[str, Any]) -> None:
    """``dicomnet store-scp`` (every storage class in every syntax it knows):
    dcmsend -nuc -nh sends plain, JPEG, RLE, JPEG 2000 and deflated files --
    each arrives in its own syntax, as dcmsend encodes it -- and one with an
    invalid UID, refused. termscu is refused; store-scp keeps serving until
    SIGTERM, then exits 0 with its counts."""
    plain = make_series(tmp_path / "plain", 2)
    deflated = Path(testdata("image_dfl.dcm"))
    bad = tiny(tmp_path / "bad" / "bad.dcm", SC, "1.2.3.4_x")
    keys = ["jpeg-lossless", "rle", "j2k"]
    out = tmp_path / "out"
    with store_scp_cli(out, tmp_path / "store-scp.log") as (proc, port):
        result = dcmsend(port, ["-nuc", "-nh"], [*(p for p, _ in plain), *(compressed[k]["path"] for k in keys),
                                                deflated, bad])
        assert result.returncode == 0, result.output
        assert statuses(result.output) == ["Success"] * 6 + ["Error: CannotUnderstand"]
        term = run_tool("termscu", "-aec", "DICOMNET", HOST, str(port))
        assert term.returncode == 1 and "No Acceptable Presentation Contexts" in term.output, term.output
        assert echoscu(port, "DICOMNET").ok
        assert proc.poll() is None
        proc.terminate()
        assert proc.wait(timeout=15) == 0
    records = [json.loads(ln) for ln in (tmp_path / "store-scp.log").read_text().splitlines() if ln.startswith("{")]
    assert records[-1] == {"command": "store-scp", "summary": True, "received": 6, "refused": 1}
    expected = {f"{uid(ds)}.dcm": (EXPLICIT, dataset_bytes(path)) for path, ds in plain}
    for key in keys:
        expected[f"{compressed[key]['uid']}.dcm"] = (compressed[key]["ts"], dcmtk_encoded(
            compressed[key]["path"], tmp_path / f"{key}.dcm"))
    expected[f"{uid(read_file(deflated))}.dcm"] = (DEFLATED, dcmtk_encoded(deflated, tmp_path / "dfl.dcm", "+te"))
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    for name, (ts, data) in expected.items():
        written = out / name
        assert read_file(written).file_meta.TransferSyntaxUID == ts
        wire = dataset_bytes(written)
        assert (zlib.decompress(wire, -zlib.MAX_WBITS) if ts == DEFLATED else wire) == data, name


# ===================================================== termscu -> our Server
@pytest.mark.parametrize("called, contexts, outcome", [
    ("DICOMNET", None, "refused"),
    ("ANY-SCP", None, "rejected"),                               # termscu's default called AE title
    ("DICOMNET", {TERMSCU_SOP_CLASS: [IMPLICIT], VERIFICATION: [IMPLICIT]}, "accepted"),
], ids=["context-refused", "association-rejected", "context-accepted"])
def test_termscu_does_not_stop_our_server(our_server: Callable[..., Server], called: str,
                                          contexts: dict[str, list[str]] | None, outcome: str) -> None:
    """termscu asks a dcmtk server to shut down through a private abstract
    syntax. Ours refuses that context (abstract-syntax-not-supported) or the
    association; even configured to accept it, it only serves a release. Either
    way it goes on: echoscu and a second termscu are answered as before."""
    rec = Recorder()
    srv = our_server("DICOMNET", rec, contexts=contexts)
    for attempt in range(2):
        result = run_tool("termscu", "-v", "-aec", called, HOST, str(srv.port))
        if outcome == "refused":
            assert result.returncode == 1 and "F: No Acceptable Presentation Contexts" in result.output, result.output
        elif outcome == "rejected":
            assert result.returncode != 0 and "Association Rejected" in result.output, result.output
            assert "Called AE Title Not Recognized" in result.output
        else:
            assert result.ok and "Releasing Association" in result.output, result.output
        wait_idle(srv)
        assert echoscu(srv.port, "DICOMNET").ok
        assert len(rec.echoes) == attempt + 1
    if outcome == "rejected":
        assert [info.calling_ae for info in rec.associations] == ["ECHOSCU", "ECHOSCU"]
        return
    terms = [info for info in rec.associations if info.calling_ae == "TERMSCU"]
    assert len(terms) == 2
    for info in terms:
        [pc] = info.rq.presentation_contexts
        assert pc.abstract_syntax == TERMSCU_SOP_CLASS
        [answer] = info.ac.presentation_contexts
        expected = ACCEPTANCE if outcome == "accepted" else ABSTRACT_SYNTAX_NOT_SUPPORTED
        assert answer.result == expected
        assert len(info.negotiated.contexts) == (1 if outcome == "accepted" else 0)


# ===================================================== our Client -> dcmrecv
STORAGE_CFG = r"""
[[TransferSyntaxes]]
[Uncompressed]
TransferSyntax1 = LittleEndianExplicit
TransferSyntax2 = BigEndianExplicit
TransferSyntax3 = LittleEndianImplicit
[ImplicitOnly]
TransferSyntax1 = LittleEndianImplicit
[JPEGLosslessOnly]
TransferSyntax1 = JPEGLossless:Non-hierarchical-1stOrderPrediction
[BigOnly]
TransferSyntax1 = BigEndianExplicit
[DeflatedOnly]
TransferSyntax1 = DeflatedLittleEndianExplicit
[Any]
TransferSyntax1 = JPEGLossless:Non-hierarchical-1stOrderPrediction
TransferSyntax2 = RLELossless
TransferSyntax3 = LittleEndianExplicit
TransferSyntax4 = BigEndianExplicit
TransferSyntax5 = LittleEndianImplicit

[[PresentationContexts]]
[AnyContexts]
PresentationContext1 = VerificationSOPClass\Uncompressed
PresentationContext2 = CTImageStorage\Any
PresentationContext3 = MRImageStorage\Any
[ImplicitContexts]
PresentationContext1 = VerificationSOPClass\ImplicitOnly
PresentationContext2 = CTImageStorage\ImplicitOnly
PresentationContext3 = MRImageStorage\ImplicitOnly
[JPEGContexts]
PresentationContext1 = VerificationSOPClass\Uncompressed
PresentationContext2 = CTImageStorage\JPEGLosslessOnly
[BigContexts]
PresentationContext1 = VerificationSOPClass\Uncompressed
PresentationContext2 = CTImageStorage\BigOnly
[DeflatedContexts]
PresentationContext1 = VerificationSOPClass\Uncompressed
PresentationContext2 = CTImageStorage\DeflatedOnly

[[Profiles]]
[Any]
PresentationContexts = AnyContexts
[ImplicitOnly]
PresentationContexts = ImplicitContexts
[JPEGOnly]
PresentationContexts = JPEGContexts
[BigOnly]
PresentationContexts = BigContexts
[DeflatedOnly]
PresentationContexts = DeflatedContexts
"""


class Dcmrecv(_Process):
    """dcmtk ``dcmrecv`` with a profile of :data:`STORAGE_CFG`, writing to
    ``self.out_dir``. (It cannot bind 127.0.0.1 alone: see the docstring.)"""

    name = "dcmrecv"

    def __init__(self, profile: str = "Any", args: Sequence[str] = (), aet: str = "DCMRECV",
                 timeout: float = START_TIMEOUT) -> None:
        super().__init__()
        self.profile, self.args, self.aet, self.timeout = profile, list(args), aet, timeout
        self.port = 0
        self.out_dir = Path(os.devnull)

    def start(self) -> None:
        require("dcmrecv", "echoscu")
        d = self._mkdir()
        self.out_dir = d / "received"
        self.out_dir.mkdir()
        config = d / "storage.cfg"
        config.write_text(STORAGE_CFG)
        self.port = free_port()
        self._spawn(["dcmrecv", *with_logging(self.args), "-aet", self.aet, "-xf", str(config), self.profile,
                     "-dhl", "-od", str(self.out_dir), str(self.port)])
        self._wait_until(lambda: _answers_echo(self.port, self.aet), self.timeout)

    def files(self) -> list[Path]:
        return sorted(p for p in self.out_dir.iterdir() if p.is_file())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 10.0) -> str:
        """The log once ``text`` occurs ``count`` times in it (dcmrecv logs as it goes)."""
        deadline = time.monotonic() + timeout
        while (log := self.log()).count(text) < count:
            if time.monotonic() > deadline or self.proc is None or self.proc.poll() is not None:
                raise PeerError(f"dcmrecv never logged {text!r} {count} time(s); log:\n" + self.log_tail())
            time.sleep(0.02)
        return log


@pytest.fixture
def make_dcmrecv() -> Iterable[Callable[..., Dcmrecv]]:
    peers: list[Dcmrecv] = []

    def start(*args: Any, **kw: Any) -> Dcmrecv:
        peer = Dcmrecv(*args, **kw)
        peers.append(peer)
        return peer.__enter__()

    yield start
    for peer in peers:
        peer.stop()


def pdata_lengths(log: str) -> list[int]:
    """Lengths of the P-DATA-TF PDUs dcmrecv read (``--log-level trace``)."""
    return [int(n) for n in re.findall(r"Read PDU HEAD TCP: type: 04, length: (\d+)", log)]


@pytest.mark.parametrize("mode, ts, extension", [
    ("-B", EXPLICIT, None),
    ("-B", IMPLICIT, ".dcm"),
    ("+B", EXPLICIT, ".dcm"),
    ("+B", IMPLICIT, None),
    ("--ignore", EXPLICIT, None),
], ids=["normal-explicit", "normal-implicit-ext", "bit-preserving-explicit-ext", "bit-preserving-implicit",
        "ignore"])
def test_client_to_dcmrecv_storage_modes(make_dcmrecv: Callable[..., Dcmrecv], tmp_path: Path, mode: str, ts: str,
                                         extension: str | None) -> None:
    """Our Client stores a series (with nested sequences) in the syntax it
    proposed alone: bit-preserving dcmrecv keeps the data set bytes we sent,
    normal mode rewrites its sequences with undefined lengths (dcmconv -e)
    and keeps every value, --ignore answers Success and writes nothing.
    Files are named ``CT.<SOP Instance UID>`` plus --filename-extension."""
    files = make_series(tmp_path / "src", 3)
    args = [mode] + (["-fe", extension] if extension else [])
    peer = make_dcmrecv("Any", args)
    with Client("DICOMNET").associate(HOST, peer.port, "DCMRECV", contexts=[(CT, [ts])]) as assoc:
        assert assoc.context_for(CT).transfer_syntax == ts
        assert [assoc.store(path) for path, _ in files] == [0, 0, 0]
    if mode == "--ignore":
        peer.wait_for_log("Received Association Release Request")
        assert peer.files() == []
        return
    names = [f"CT.{uid(ds)}{extension or ''}" for _, ds in files]
    assert [p.name for p in peer.files()] == sorted(names)
    for (path, source), name in zip(files, names):
        written = peer.out_dir / name
        stored = read_file(written)
        assert stored.transfer_syntax == ts and stored.file_meta.MediaStorageSOPInstanceUID == uid(source)
        assert stored == source
        assert np.array_equal(stored.pixel_array, source.pixel_array)
        if mode == "+B":
            assert dataset_bytes(written) == bytes(source.encode(ts))
        else:
            reference = dcmtk_encoded(path, tmp_path / "ref.dcm", "-e", DCMCONV_SYNTAX[ts])
            assert dataset_bytes(written) == reference
            assert dataset_bytes(written) != bytes(source.encode(ts))     # the sequences were rewritten


@pytest.mark.parametrize("profile, contexts, ts", [
    ("ImplicitOnly", None, IMPLICIT),                                  # our default proposal
    ("BigOnly", [VERIFICATION, (CT, [EXPLICIT, IMPLICIT, BIG])], BIG),
    ("DeflatedOnly", [VERIFICATION, (CT, [EXPLICIT, IMPLICIT, DEFLATED])], DEFLATED),
], ids=["implicit-only", "big-endian-only", "deflated-only"])
def test_client_transcodes_to_what_dcmrecv_accepts(make_dcmrecv: Callable[..., Dcmrecv], tmp_path: Path,
                                                   compressed: dict[str, Any], profile: str,
                                                   contexts: list[Any] | None, ts: str) -> None:
    """dcmrecv with a profile accepting one uncompressed syntax for CT: our
    Explicit VR LE files (as paths and as Datasets) are transcoded to it --
    byte for byte what dcmtk's own conversion writes (inflated, for Deflated)
    --; a JPEG file, or asking for Explicit VR LE, raises NoPresentationContext
    naming what was accepted, and the association goes on."""
    files = make_series(tmp_path / "src", 2)
    jpeg = compressed["jpeg-lossless"]["path"]
    peer = make_dcmrecv(profile, ["+B"])
    with Client("DICOMNET").associate(HOST, peer.port, "DCMRECV", contexts=contexts) as assoc:
        assert assoc.context_for(CT).transfer_syntax == ts
        assert assoc.store(files[0][0]) == 0
        with pytest.raises(NoPresentationContext) as jpeg_error:
            assoc.store(jpeg)
        with pytest.raises(NoPresentationContext) as explicit_error:
            assoc.store(files[1][0], transfer_syntax=EXPLICIT)
        assert assoc.store(files[1][1]) == 0                     # a Dataset, transcoded too
        assert assoc.echo() == 0
    err = jpeg_error.value
    assert (err.sop_class, err.transfer_syntax, err.accepted, err.requested) == (CT, JPEG_LOSSLESS, [ts], None)
    assert JPEG_LOSSLESS in str(err) and "cannot be transcoded" in str(err)
    err = explicit_error.value
    assert (err.sop_class, err.transfer_syntax, err.accepted, err.requested) == (CT, EXPLICIT, [ts], EXPLICIT)
    assert [p.name for p in peer.files()] == sorted(f"CT.{uid(ds)}" for _, ds in files)
    for path, source in files:
        written = peer.out_dir / f"CT.{uid(source)}"
        stored = read_file(written)
        assert stored.transfer_syntax == ts and stored == source
        data = dataset_bytes(written)
        assert data == bytes(source.encode(ts))
        if ts == DEFLATED:
            reference = dcmtk_encoded(path, tmp_path / "ref.dcm", "+te")
            assert zlib.decompress(data, -zlib.MAX_WBITS) == reference
        else:
            assert data == dcmtk_encoded(path, tmp_path / "ref.dcm", DCMCONV_SYNTAX[ts])


def test_client_follows_a_jpeg_only_profile(make_dcmrecv: Callable[..., Dcmrecv], tmp_path: Path,
                                            compressed: dict[str, Any]) -> None:
    """dcmrecv accepting JPEG lossless only for CT: of our two CT contexts
    (uncompressed; JPEG lossless) only the JPEG one is accepted; the JPEG file
    (as a path and as a Dataset) goes as is, fragment for fragment; an
    uncompressed CT cannot be sent (we do not compress)."""
    [(plain, _)] = make_series(tmp_path / "src", 1)
    jpeg = compressed["jpeg-lossless"]["path"]
    peer = make_dcmrecv("JPEGOnly", ["+B"])
    contexts = [(CT, [EXPLICIT, IMPLICIT]), (CT, [JPEG_LOSSLESS])]
    with Client("DICOMNET").associate(HOST, peer.port, "DCMRECV", contexts=contexts) as assoc:
        assert [(c.context_id, c.transfer_syntax) for c in assoc.negotiated.contexts.values()] == [(3, JPEG_LOSSLESS)]
        assert assoc.store(jpeg) == 0
        with pytest.raises(NoPresentationContext) as error:
            assoc.store(plain)
        assert assoc.store(read_file(jpeg)) == 0
    assert (error.value.transfer_syntax, error.value.accepted) == (EXPLICIT, [JPEG_LOSSLESS])
    [written] = peer.files()
    assert written.name == f"CT.{compressed['jpeg-lossless']['uid']}"
    assert read_file(written).transfer_syntax == JPEG_LOSSLESS
    assert dataset_bytes(written) == dataset_bytes(jpeg)
    log = peer.wait_for_log("Received Association Release Request")
    assert log.count("Received C-STORE Request") == 2


@pytest.mark.parametrize("max_pdu", [4096, 131072])
def test_client_respects_dcmrecv_max_pdu(make_dcmrecv: Callable[..., Dcmrecv], tmp_path: Path, max_pdu: int) -> None:
    """dcmrecv -pdu N: our Client cuts a 512 KB data set into P-DATA-TF PDUs of
    at most N bytes (filling them), and the bytes arrive intact."""
    [(path, source)] = make_series(tmp_path / "src", 1, rows=512, cols=512)
    peer = make_dcmrecv("Any", ["+B", "-pdu", str(max_pdu), "--log-level", "trace"])
    with Client("DICOMNET").associate(HOST, peer.port, "DCMRECV", contexts=[(CT, [EXPLICIT])]) as assoc:
        assert assoc.negotiated.peer_max_pdu == max_pdu
        assert assoc.store(path) == 0
    log = peer.wait_for_log("Received Association Release Request", count=2)   # the readiness echo's, ours
    lengths = pdata_lengths(log.split("DICOMNET -> DCMRECV")[1])
    data = dataset_bytes(path)
    assert max(lengths) == max_pdu, lengths
    assert len(lengths) == 1 + math.ceil(len(data) / (max_pdu - 6))
    assert dataset_bytes(peer.out_dir / f"CT.{uid(source)}") == data


def group_lengths(data: bytes, implicit: bool) -> dict[int, tuple[int, int]]:
    """Each top-level Group Length (gggg,0000) of a little endian data set with
    defined lengths: group -> (its value, the bytes of the group after it)."""
    long_vrs = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
    pos = 0
    found: dict[int, int] = {}
    sizes: dict[int, int] = {}
    while pos < len(data):
        group, element = int.from_bytes(data[pos:pos + 2], "little"), int.from_bytes(data[pos + 2:pos + 4], "little")
        if implicit:
            head, length = 8, int.from_bytes(data[pos + 4:pos + 8], "little")
        elif data[pos + 4:pos + 6] in long_vrs:
            head, length = 12, int.from_bytes(data[pos + 8:pos + 12], "little")
        else:
            head, length = 8, int.from_bytes(data[pos + 6:pos + 8], "little")
        assert length != 0xFFFFFFFF, "undefined length"
        if element == 0:
            found[group] = int.from_bytes(data[pos + head:pos + head + 4], "little")
        else:
            sizes[group] = sizes.get(group, 0) + head + length
        pos += head + length
    return {group: (value, sizes.get(group, 0)) for group, value in found.items()}


def _without_group_lengths(ds: Dataset) -> list[Any]:
    return [(e.tag, [_without_group_lengths(i) for i in e.value]) if e.VR == "SQ" else e
            for e in ds if e.tag & 0xFFFF]


@pytest.mark.parametrize("ts, modified", [
    (EXPLICIT, False),
    (IMPLICIT, False),
    (EXPLICIT, True),
], ids=["as-is", "transcoded-to-implicit", "value-changed"])
def test_client_keeps_group_lengths_right(make_dcmrecv: Callable[..., Dcmrecv], tmp_path: Path, ts: str,
                                          modified: bool) -> None:
    """A file with Group Length elements (dcmconv +g: groups 0008 ... 7FE0, a
    sequence in 0008 and OW Pixel Data in 7FE0) stored to a bit-preserving
    dcmrecv: sent as it is, every group length still fits. Transcoded to
    Implicit VR LE (the only syntax accepted) -- the SQ and OW headers are 4
    bytes shorter there -- or with a longer Patient's Name, each must still be
    the byte count of the rest of its group (PS3.5 7.2), as dcmtk writes it."""
    [(plain, _)] = make_series(tmp_path / "src", 1)
    with_lengths = tmp_path / "group-lengths.dcm"
    assert run_tool("dcmconv", "+g", str(plain), str(with_lengths)).ok
    source = read_file(with_lengths)
    assert {t >> 16 for t in source.tags() if t & 0xFFFF == 0} >= {0x0008, 0x0010, 0x7FE0}
    if modified:
        source.PatientName = "Somebody-Else^With^A^Longer^Name"
    peer = make_dcmrecv("ImplicitOnly" if ts == IMPLICIT else "Any", ["+B"])
    with Client("DICOMNET").associate(HOST, peer.port, "DCMRECV", contexts=[(CT, [ts])]) as assoc:
        assert assoc.store(source if modified else with_lengths) == 0
    written = peer.out_dir / f"CT.{uid(source)}"
    data = dataset_bytes(written)
    # Equal but for the group lengths (in items too), which are set for the bytes sent
    assert _without_group_lengths(read_file(written)) == _without_group_lengths(source)
    lengths = group_lengths(data, implicit=ts == IMPLICIT)
    assert {0x0008, 0x0010, 0x7FE0} <= set(lengths)
    assert {g: v for g, (v, _) in lengths.items()} == {g: n for g, (_, n) in lengths.items()}
    # dcmtk's encoding of what arrived: the same bytes, its group lengths recalculated
    assert data == dcmtk_encoded(written, tmp_path / "ref.dcm", DCMCONV_SYNTAX[ts])


def dicomnet_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dicomnet", *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONIOENCODING="utf-8"))


@pytest.mark.parametrize("profile, options", [
    ("ImplicitOnly", []),
    ("ImplicitOnly", ["--transfer-syntax", IMPLICIT]),
    ("JPEGOnly", []),
    ("Any", ["--json"]),
], ids=["implicit-only", "implicit-only-requested", "jpeg-only", "any-json"])
def test_dicomnet_store_cli_against_dcmrecv(make_dcmrecv: Callable[..., Dcmrecv], tmp_path: Path,
                                            compressed: dict[str, Any], profile: str, options: list[str]) -> None:
    """``dicomnet store HOST PORT FOLDER`` (three CT files, a JPEG file and a
    text file): the text file is skipped with a warning; what dcmrecv's
    profile accepts is stored (uncompressed files transcoded to Implicit VR LE
    where it takes nothing else, the JPEG file as is), each other file fails
    with a clear reason, and the exit code is 1 when anything failed."""
    folder = tmp_path / "send"
    files = make_series(folder, 3)
    jpeg = folder / "zz-jpeg.dcm"
    shutil.copy(compressed["jpeg-lossless"]["path"], jpeg)
    (folder / "notes.txt").write_text("not DICOM\n")
    peer = make_dcmrecv(profile, ["+B"])
    done = dicomnet_cli("store", HOST, str(peer.port), "--aec", "DCMRECV", *options, str(folder))
    assert f"skipped {folder / 'notes.txt'}" in done.stderr
    jpeg_name = f"CT.{compressed['jpeg-lossless']['uid']}"
    plain = {f"CT.{uid(ds)}": bytes(ds.encode(IMPLICIT if profile == "ImplicitOnly" else EXPLICIT)) for _, ds in files}
    failures: dict[Path, str] = {}
    if profile == "ImplicitOnly":
        expected = plain
        failures[jpeg] = (f"cannot be sent in {IMPLICIT}: it is in {JPEG_LOSSLESS}, and only uncompressed data "
                          "sets are transcoded" if options else
                          f"the peer accepted no presentation context for SOP class {CT} in {JPEG_LOSSLESS}")
    elif profile == "JPEGOnly":
        expected = {jpeg_name: dataset_bytes(jpeg)}
        failures = {p: f"the peer accepted no presentation context for SOP class {CT} in {EXPLICIT}" for p, _ in files}
    else:
        expected = {**plain, jpeg_name: dataset_bytes(jpeg)}
    assert done.returncode == (1 if failures else 0), done.stdout + done.stderr
    assert {p.name: dataset_bytes(p) for p in peer.files()} == expected
    if "--json" in options:
        *per_file, summary = [json.loads(line) for line in done.stdout.splitlines()]
        assert sorted(r["file"] for r in per_file) == sorted([str(p) for p, _ in files] + [str(jpeg)])
        assert all(r["ok"] and r["status"] == 0 for r in per_file)
        assert (summary["summary"], summary["ok"], summary["total"], summary["sent"], summary["failed"],
                summary["skipped"]) == (True, True, 4, 4, 0, 1)
        return
    for path, reason in failures.items():
        assert f"failed: {path}: {reason}" in done.stdout, done.stdout
    assert f"sent {4 - len(failures)} of 4 instance(s), " in done.stdout
    assert f"; {len(failures)} failed; 1 non-DICOM file(s) skipped" in done.stdout
