"""dcmtk's SCU tools run with their non-default options against our Server.

The other interop files mostly run storescu, findscu, movescu and getscu as
they come; sites run them with options: other transfer syntaxes (big endian,
deflated, implicit only, JPEG/JPEG-LS/RLE passed through), small PDUs,
repeats and invented UIDs, --no-halt, directory scans, user identity, odd AE
titles, C-CANCEL, the tools' own storage SCP (movescu +P), bit-preserving
receivers (+B), -X extraction -- against ``dicomnet.Server`` with recording
handlers or the sample handler, and getscu's preferences against the
``dicomnet sample-server`` command. Every test checks what our handler
received (byte for byte where the wire allows it) and what the tool reported.

dcmtk 3.6.7 quirks these tests live with (not dicomnet's doing):

* storescu cannot decompress a JPEG/JPEG-LS/RLE file on the fly (no decoders
  registered in the tool): a compressed file needs its own syntax accepted;
* getscu's ``+xi`` still proposes Explicit VR LE only, and getscu never reads
  the Identifier of a final C-GET-RSP (the Failed SOP Instance UID List that
  PS3.4 C.4.3 asks for after a failed sub-operation), so its release then
  fails with "DUL P-Data PDU arrived" (it does the same with pynetdicom);
* findscu ``--cancel`` cancels only the first of ``--repeat`` queries;
* movescu ``+B`` writes into its working directory, whatever ``-od`` says;
* the tools' receivers (findscu -X, movescu, getscu without +B) write
  sequences with undefined lengths: their files are compared by value.
"""
from __future__ import annotations

import logging
import random
import re
import shutil
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dicomnet.dicom import Dataset, read_file, write_file
from dicomnet.dicom.writer import encode_dataset
from dicomnet.dimse.scu import FIND_MODELS
from dicomnet.pdu.items import UserIdentityRQ
from dicomnet.pdu.negotiation import default_supported
from dicomnet.samples.archive import Archive
from dicomnet.samples.server import SampleHandler
from dicomnet.samples.synthetic import generate
from dicomnet.server import Server

from .files import dataset_bytes
from .files import make_series as make_study
from .peers import (
    HOST,
    ToolResult,
    dicomnet_cli_server,
    echoscu,
    findscu,
    free_port,
    getscu,
    movescu,
    require,
    run_tool,
    storescu,
)

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"
BIG = "1.2.840.10008.1.2.2"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.70"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LS = "1.2.840.10008.1.2.4.80"
RLE = "1.2.840.10008.1.2.5"
CT = "1.2.840.10008.5.1.4.1.1.2"
STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"
WORKLIST = FIND_MODELS["worklist"]

#: dcmdump's name for each transfer syntax (``=Name`` in its output).
DCMDUMP_NAMES = {
    IMPLICIT: "=LittleEndianImplicit", EXPLICIT: "=LittleEndianExplicit", BIG: "=BigEndianExplicit",
    DEFLATED: "=DeflatedLittleEndianExplicit", JPEG_LOSSLESS: "=JPEGLossless:Non-hierarchical-1stOrderPrediction",
    JPEG_EXTENDED: "=JPEGExtended:Process2+4", JPEG_LS: "=JPEGLSLossless", RLE: "=RLELossless",
}


# ---------------------------------------------------------------- helpers
def wire_bytes(ts: str, data: bytes) -> tuple[str, bytes]:
    """(syntax, bytes) with a deflated data set inflated: Explicit VR LE then."""
    if ts == DEFLATED:
        return EXPLICIT, zlib.decompress(data, -zlib.MAX_WBITS)
    return ts, data


def assert_as_sent(received: Dataset, source: Dataset, ts: str) -> None:
    """A data set read from the wire in ``ts`` and left unchanged encodes as the
    bytes it came in (inflated, for Deflated): they are the source's in ``ts``."""
    plain = EXPLICIT if ts == DEFLATED else ts
    assert encoded(received, plain) == encoded(source, plain)


def encoded(ds: Dataset, ts: str = EXPLICIT) -> bytes:
    return bytes(encode_dataset(ds, ts))


def assert_same(received: Dataset, original: Dataset) -> None:
    """Same elements and values (however sequence lengths were encoded), same pixels."""
    assert received == original
    if "PixelData" in original and original.transfer_syntax in (EXPLICIT, IMPLICIT, BIG, DEFLATED):
        assert np.array_equal(received.pixel_array, original.pixel_array)


def by_uid(paths: Iterable[Path]) -> dict[str, Dataset]:
    return {str(ds.SOPInstanceUID): ds for ds in (read_file(p) for p in paths)}


def files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def keys(**values: str) -> list[str]:
    return [f"{k}={v}" if v else k for k, v in values.items()]


def pdata_lengths(trace: str) -> list[int]:
    """Lengths of the P-DATA-TF PDUs a dcmtk tool read (``--log-level trace``)."""
    return [int(n) for n in re.findall(r"Read PDU HEAD TCP: type: 04, length: (\d+)", trace)]


def errors_but_release(result: ToolResult) -> list[str]:
    """Error lines other than getscu's release failure after a final C-GET-RSP
    with an Identifier (a dcmtk quirk, see the module docstring)."""
    return [ln for ln in result.errors if "Association Release Failed" not in ln]


def wait_idle(server: Server, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while server.active_associations:
        assert time.monotonic() < deadline, f"{server!r} still busy"
        time.sleep(0.01)


class Recorder:
    """Handler recording associations, echoes, stores (context and data set;
    0xA700 for the SOP Instance UIDs in ``refuse``) and queries (answered
    with ``matches``)."""

    def __init__(self, matches: list[Dataset] | None = None, refuse: set[str] | None = None) -> None:
        self.associations: list[Any] = []
        self.echoes: list[Any] = []
        self.stored: list[tuple[Any, Dataset]] = []
        self.queries: list[tuple[Any, Dataset]] = []
        self.cancelled: list[bool] = []
        self.matches = matches or []
        self.refuse = refuse or set()

    def on_association(self, info: Any) -> None:
        self.associations.append(info)

    def on_echo(self, ctx: Any) -> None:
        self.echoes.append(ctx)

    def on_store(self, ctx: Any, ds: Dataset) -> int:
        self.stored.append((ctx, ds))
        return 0xA700 if str(ds.SOPInstanceUID) in self.refuse else 0x0000

    def on_find(self, ctx: Any, query: Dataset) -> Iterator[Dataset]:
        self.queries.append((ctx, query))
        try:
            yield from self.matches
        finally:
            self.cancelled.append(ctx.cancelled)


class Streamer(Recorder):
    """A Recorder whose C-STOREs are streamed to Part 10 files in ``out``."""

    def __init__(self, out: Path, **kw: Any) -> None:
        super().__init__(**kw)
        self.out = out

    def store_destination(self, ctx: Any, command: Any) -> Path:
        return self.out / f"{command['AffectedSOPInstanceUID']}.dcm"


@pytest.fixture
def our_server(our_server: Callable[..., Server]) -> Callable[..., Server]:
    """The conftest's, handler first: ``our_server(handler, ae="DICOMNET", **kw)``."""
    return lambda handler, ae="DICOMNET", **kw: our_server(ae, handler, **kw)


# ================================================== storescu -> our Server
@pytest.mark.parametrize("streamed", [False, True], ids=["in-memory", "streamed"])
@pytest.mark.parametrize("options, accepted, expected", [
    (["-xe"], [EXPLICIT, IMPLICIT], EXPLICIT),
    (["-xi"], [EXPLICIT, IMPLICIT], IMPLICIT),
    (["-xb"], [BIG], BIG),                                  # only big endian accepted: storescu converts
    (["-xb", "+C"], [EXPLICIT, IMPLICIT, BIG], BIG),        # one context: the requestor's first choice wins
    (["-xd"], [DEFLATED, EXPLICIT], DEFLATED),
    (["-xd", "+cl", "0"], [DEFLATED], DEFLATED),            # deflate level 0: stored blocks
], ids=["little", "implicit", "big", "big-combined", "deflated", "deflated-level0"])
def test_storescu_proposals(our_server: Callable[..., Server], tmp_path: Path, options: list[str],
                            accepted: list[str], expected: str, streamed: bool) -> None:
    """storescu's -x options: the data set arrives in the negotiated syntax with
    the source's values and pixels; a streamed file has that syntax in its
    File Meta, holds the data set bytes as sent, and dcmtk reads it back."""
    [(path, source)] = make_study(tmp_path / "src", instances=1)
    out = tmp_path / "out"
    rec = Streamer(out) if streamed else Recorder()
    srv = our_server(rec, contexts={CT: accepted})
    result = storescu(srv.port, "DICOMNET", [path], *options)
    assert result.ok, result.output
    [(ctx, received)] = rec.stored
    assert ctx.transfer_syntax == expected and ctx.abstract_syntax == CT
    assert_same(received, source)
    assert_as_sent(received, source, expected)
    if streamed:
        written = out / f"{source.SOPInstanceUID}.dcm"
        meta = read_file(written).file_meta
        assert meta.TransferSyntaxUID == expected
        assert meta.MediaStorageSOPInstanceUID == source.SOPInstanceUID
        assert meta.SourceApplicationEntityTitle.strip() == "STORESCU"
        ts, data = wire_bytes(expected, dataset_bytes(written))
        assert data == encoded(source, ts)
        dump = run_tool("dcmdump", "+P", "TransferSyntaxUID", "+P", "SOPInstanceUID", str(written))
        assert dump.ok and DCMDUMP_NAMES[expected] in dump.output and str(source.SOPInstanceUID) in dump.output


@pytest.fixture(scope="module")
def compressible(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Dataset]:
    """One uncompressed 256x256 CT image the compressed variants are made from."""
    [(path, ds)] = make_study(tmp_path_factory.mktemp("compressible"), instances=1, rows=256, cols=256)
    return path, ds


@pytest.mark.parametrize("encoder, option, ts, decoder, lossless", [
    (["dcmcjpeg"], "-xs", JPEG_LOSSLESS, "dcmdjpeg", True),
    (["dcmcjpeg", "+ee"], "-xx", JPEG_EXTENDED, "dcmdjpeg", False),
    (["dcmcjpls"], "-xt", JPEG_LS, "dcmdjpls", True),
    (["dcmcrle"], "-xr", RLE, "dcmdrle", True),
], ids=["jpeg-lossless", "jpeg-extended", "jpeg-ls", "rle"])
def test_storescu_compressed_files_pass_through(our_server: Callable[..., Server], tmp_path: Path,
                                                compressible: tuple[Path, Dataset], encoder: list[str],
                                                option: str, ts: str, decoder: str, lossless: bool) -> None:
    """A compressed file proposed in its own syntax (and cut into small PDUs)
    arrives as is: our streamed file holds the very fragments, and dcmtk's
    decoder makes the same pixels of it as of the source (the original ones
    when lossless)."""
    source_path, original = compressible
    compressed = tmp_path / "compressed.dcm"
    made = run_tool(*encoder, str(source_path), str(compressed))
    assert made.ok and read_file(compressed).transfer_syntax == ts, made.output
    uid = str(read_file(compressed).SOPInstanceUID)      # new for lossy compression
    out = tmp_path / "out"
    rec = Streamer(out)
    srv = our_server(rec, contexts={CT: [ts, EXPLICIT, IMPLICIT]})
    result = storescu(srv.port, "DICOMNET", [compressed], option, "--max-send-pdu", "8192")
    assert result.ok, result.output
    [(ctx, received)] = rec.stored
    assert ctx.transfer_syntax == ts and received.transfer_syntax == ts
    written = out / f"{uid}.dcm"
    assert dataset_bytes(written) == dataset_bytes(compressed)
    decoded = {}
    for name, path in (("ours", written), ("source", compressed)):
        target = tmp_path / f"{name}-decoded.dcm"
        done = run_tool(decoder, str(path), str(target))
        assert done.ok, done.output
        decoded[name] = read_file(target)
    assert np.array_equal(decoded["ours"].pixel_array, decoded["source"].pixel_array)
    if lossless:
        assert np.array_equal(decoded["ours"].pixel_array, original.pixel_array)


@pytest.mark.parametrize("streamed", [False, True], ids=["in-memory", "streamed"])
@pytest.mark.parametrize("options, server_max_pdu, expected", [
    (["--max-send-pdu", "4096"], None, EXPLICIT),
    (["-pdu", "4096", "-xi"], 4096, IMPLICIT),
    (["-xd", "--max-send-pdu", "4096"], 8192, DEFLATED),
], ids=["send-4096", "both-4096", "deflated-4096"])
def test_storescu_small_pdus(our_server: Callable[..., Server], tmp_path: Path, options: list[str],
                             server_max_pdu: int | None, expected: str, streamed: bool) -> None:
    """A 512 KB image in PDUs of 4 KB (storescu's --max-send-pdu, or our own
    max_pdu, which storescu must read from our A-ASSOCIATE-AC) is reassembled
    byte for byte, twice on one association; storescu's -pdu reaches us too."""
    [(path, source)] = make_study(tmp_path / "src", instances=1, rows=512, cols=512)
    out = tmp_path / "out"
    rec = Streamer(out) if streamed else Recorder()
    kw = {} if server_max_pdu is None else {"max_pdu": server_max_pdu}
    srv = our_server(rec, contexts={CT: [expected]}, **kw)
    result = storescu(srv.port, "DICOMNET", [path], *options, "--repeat", "2", "--log-level", "trace")
    assert result.ok, result.output[-3000:]
    # 190 KB (deflated) to 525 KB per copy in PDUs of 4 KB (6 PDUs in all without the limits).
    assert result.output.count("Send P DATA PDU") >= 2 * 40
    if server_max_pdu is not None:
        assert f"Max Send PDV: {server_max_pdu - 12})" in result.output
    [info] = rec.associations
    assert info.negotiated.peer_max_pdu == (4096 if "-pdu" in options else 16384)
    assert len(rec.stored) == 2
    for ctx, received in rec.stored:
        assert ctx.transfer_syntax == expected
        assert_same(received, source)
        assert_as_sent(received, source, expected)
    if streamed:
        ts, data = wire_bytes(expected, dataset_bytes(out / f"{source.SOPInstanceUID}.dcm"))
        assert data == encoded(source, ts)


def test_storescu_repeat_with_invented_uids(our_server: Callable[..., Server], tmp_path: Path) -> None:
    """--repeat 3 +II: 15 C-STOREs on one association, each with a new SOP
    Instance (and patient/study/series) identity invented by storescu and the
    rest of the data set unchanged."""
    files = make_study(tmp_path / "src", instances=5)
    rec = Recorder()
    srv = our_server(rec)
    result = storescu(srv.port, "DICOMNET", [p for p, _ in files], "--repeat", "3", "+II")
    assert result.ok, result.output
    assert len(rec.associations) == 1 and len(rec.stored) == 15
    assert len({str(ds.SOPInstanceUID) for _, ds in rec.stored}) == 15
    invented = {0x00100010, 0x00100020, 0x0020000D, 0x0020000E, 0x00080018,   # names, IDs, UIDs
                0x00200010, 0x00200011, 0x00200013}                                 # and their numbers
    for n, (_, received) in enumerate(rec.stored):
        source = files[n // 3][1]                   # each file is repeated in turn
        assert str(received.SOPInstanceUID).startswith("1.2.276.0.7230010.3")   # dcmtk's UID root
        assert set(received.tags()) == set(source.tags())
        assert [t for t in source.tags() if t not in invented and received[t] != source[t]] == []
        assert np.array_equal(received.pixel_array, source.pixel_array)


@pytest.mark.parametrize("no_halt", [False, True], ids=["halt", "no-halt"])
def test_storescu_after_a_refused_instance(our_server: Callable[..., Server], tmp_path: Path,
                                           no_halt: bool) -> None:
    """Our failure status (0xA700) and a SOP class we did not accept: storescu
    stops at the first (exit code non-zero), or with --no-halt reports both and
    sends the rest on the same association."""
    files = make_study(tmp_path / "ct", instances=3)
    mr = next(generate(patients=1, studies=1, series=1, instances=1, modality="MR", seed=random.getrandbits(48)))
    mr_path = tmp_path / "mr.dcm"
    write_file(mr_path, mr, EXPLICIT)
    refused = str(files[1][1].SOPInstanceUID)
    rec = Recorder(refuse={refused})
    srv = our_server(rec, contexts=[CT])
    order = [files[0][0], files[1][0], mr_path, files[2][0]]
    result = storescu(srv.port, "DICOMNET", order, "-v", *(["--no-halt"] if no_halt else []))
    statuses = re.findall(r"Received Store Response \(([^)]*)\)", result.output)
    stored = [str(ds.SOPInstanceUID) for _, ds in rec.stored]
    if no_halt:
        assert result.returncode == 0, result.output          # dcmtk: --no-halt exits 0 anyway
        assert statuses == ["Success", "Refused: OutOfResources", "Success"]
        assert "No presentation context for: (MR)" in result.output
        assert stored == [str(files[i][1].SOPInstanceUID) for i in (0, 1, 2)]
    else:
        assert result.returncode != 0, result.output
        assert statuses == ["Success", "Refused: OutOfResources"]
        assert stored == [str(files[0][1].SOPInstanceUID), refused]
    assert len(rec.associations) == 1


def test_storescu_scans_directories(our_server: Callable[..., Server], tmp_path: Path) -> None:
    """+sd (top level only) and +sd +r +sp '*.dcm' (a tree, skipping other files)."""
    files = make_study(tmp_path / "all", instances=5)
    tree = tmp_path / "tree"
    places = [tree, tree / "a", tree / "a" / "b", tree / "c", tree / "c"]
    for (path, _), folder in zip(files, places):
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / f"{path.stem}.dcm")
    (tree / "c" / "notes.txt").write_text("not DICOM")
    uids = [str(ds.SOPInstanceUID) for _, ds in files]
    rec = Recorder()
    srv = our_server(rec)
    result = storescu(srv.port, "DICOMNET", [tree], "+sd")
    assert result.ok, result.output
    assert [str(ds.SOPInstanceUID) for _, ds in rec.stored] == uids[:1]
    result = storescu(srv.port, "DICOMNET", [tree], "+sd", "+r", "+sp", "*.dcm")
    assert result.ok, result.output
    assert sorted(str(ds.SOPInstanceUID) for _, ds in rec.stored[1:]) == sorted(uids)
    originals = {str(ds.SOPInstanceUID): ds for _, ds in files}
    for _, received in rec.stored:
        assert_same(received, originals[str(received.SOPInstanceUID)])


JWT_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"


@pytest.mark.parametrize("options, accepted, identity", [
    (["--user", "alice", "--password", "s3cret pw", "--pos-response"], True,
     (UserIdentityRQ.USERNAME_PASSCODE, True, b"alice", b"s3cret pw")),
    (["--user", "alice", "--password", "wrong"], False,
     (UserIdentityRQ.USERNAME_PASSCODE, False, b"alice", b"wrong")),
    (["--user", "alice", "--empty-password"], False, (UserIdentityRQ.USERNAME_PASSCODE, False, b"alice", b"")),
    (["--user", "bob"], True, (UserIdentityRQ.USERNAME, False, b"bob", b"")),
    (["--jwt", "TOKEN_FILE", "--pos-response"], True, (UserIdentityRQ.JWT, True, JWT_TOKEN.encode(), b"")),
], ids=["password", "wrong-password", "empty-password", "username-only", "jwt"])
def test_storescu_user_identity(our_server: Callable[..., Server], tmp_path: Path, options: list[str],
                                accepted: bool, identity: tuple[int, bool, bytes, bytes]) -> None:
    """storescu's user identity items reach our authenticate hook as sent; a
    refusal is an A-ASSOCIATE-RJ storescu reports, an acceptance stores the
    instance, and the positive response (a server response for a JWT) is sent."""
    token_file = tmp_path / "token.jwt"
    token_file.write_text(JWT_TOKEN)
    options = [str(token_file) if o == "TOKEN_FILE" else o for o in options]
    seen: list[UserIdentityRQ] = []

    def authenticate(item: UserIdentityRQ) -> bool | bytes:
        seen.append(item)
        if item.identity_type == UserIdentityRQ.JWT:
            return b"jwt-accept"
        return item.primary_field == b"bob" or (item.primary_field, item.secondary_field) == (b"alice", b"s3cret pw")

    [(path, source)] = make_study(tmp_path / "src", instances=1)
    rec = Recorder()
    srv = our_server(rec, authenticate=authenticate)
    result = storescu(srv.port, "DICOMNET", [path], "-d", *options)
    assert [(i.identity_type, i.positive_response_requested, i.primary_field, i.secondary_field)
            for i in seen] == [identity]
    if not accepted:
        assert result.returncode != 0 and "Association Rejected" in result.output, result.output
        assert rec.associations == [] and rec.stored == []
        return
    assert result.ok, result.output
    assert rec.associations[0].user_identity == seen[0]
    assert_same(rec.stored[0][1], source)
    if "--pos-response" in options:
        length = len(b"jwt-accept") if "--jwt" in options else 0
        assert f"Server Response (not dumped) length: {length}" in result.output


def test_storescu_abort_leaves_our_server_serving(our_server: Callable[..., Server], tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """--abort (A-ABORT instead of A-RELEASE) after two stores: both are kept,
    the abort is logged as such, and the next association is served."""
    caplog.set_level(logging.INFO, logger="dicomnet")
    files = make_study(tmp_path / "src", instances=2)
    rec = Recorder()
    srv = our_server(rec)
    result = storescu(srv.port, "DICOMNET", [p for p, _ in files], "--abort", calling="ABORTER")
    assert result.ok, result.output
    wait_idle(srv)
    assert [str(ds.SOPInstanceUID) for _, ds in rec.stored] == [str(ds.SOPInstanceUID) for _, ds in files]
    messages = [r.getMessage() for r in caplog.records if r.name == "dicomnet"]
    assert any("ABORTER" in m and "aborted" in m for m in messages), messages
    assert not [r for r in caplog.records if r.name.startswith("dicomnet") and r.levelno >= logging.WARNING]
    assert echoscu(srv.port, "DICOMNET").ok
    assert len(rec.echoes) == 1


# ================================================== echoscu -> our Server
def test_echoscu_many_contexts_and_syntaxes(our_server: Callable[..., Server]) -> None:
    """echoscu --propose-pc 128 --propose-ts 38 -pdu 4096 --repeat 5 with all
    its timeouts set: 128 Verification contexts accepted, 5 echoes answered."""
    rec = Recorder()
    srv = our_server(rec)
    result = echoscu(srv.port, "DICOMNET", "-v", "--propose-pc", "128", "--propose-ts", "38", "-pdu", "4096",
                     "--repeat", "5", "-to", "5", "-ta", "5", "-td", "5")
    assert result.ok, result.output
    assert result.output.count("Received Echo Response (Success)") == 5
    [info] = rec.associations
    assert len(info.rq.presentation_contexts) == 128
    assert len(info.rq.presentation_contexts[0].transfer_syntaxes) == 38
    assert len(info.negotiated.contexts) == 128
    assert {c.transfer_syntax for c in info.negotiated.contexts.values()} <= {EXPLICIT, IMPLICIT}
    assert info.negotiated.peer_max_pdu == 4096
    assert [c.message_id for c in rec.echoes] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("server_ae, called, calling, allowed, accepted", [
    ("DICOM NET", "DICOM NET", "MY SCU", None, True),                   # inner spaces
    ("ABCDEFGHIJKLMNOP", "ABCDEFGHIJKLMNOP", "0123456789ABCDEF", None, True),   # 16 characters
    ("DN", "DN", "a&b-c_d.e+f=g*h", ["a&b-c_d.e+f=g*h"], True),         # odd characters, allowed list
    ("DN", " DN", "X", None, True),                                      # leading space: insignificant
    ("DN", "DN", "STRANGER", ["a&b"], False),
    ("DN", "dn", "X", None, False),                                      # AE titles are case sensitive
], ids=["spaces", "16-chars", "odd-chars", "leading-space", "calling-refused", "called-case"])
def test_echoscu_ae_titles(our_server: Callable[..., Server], server_ae: str, called: str, calling: str,
                           allowed: list[str] | None, accepted: bool) -> None:
    """Calling/called AE titles with spaces, 16 characters or punctuation reach
    the handler as sent (padding aside); a refused one is the RJ reason echoscu shows."""
    rec = Recorder()
    srv = our_server(rec, ae=server_ae, allowed_calling_aes=allowed)
    result = echoscu(srv.port, called, "-v", calling=calling)
    if not accepted:
        assert result.returncode != 0 and rec.associations == [], result.output
        reason = "Calling AE Title Not Recognized" if allowed else "Called AE Title Not Recognized"
        assert f"Reason: {reason}" in result.output
        return
    assert result.ok, result.output
    [info] = rec.associations
    assert (info.calling_ae, info.called_ae) == (calling, server_ae)
    assert [c.calling_ae for c in rec.echoes] == [calling]


# ================================================== findscu -> our Server
def worklist_item(i: int, comments: str = "") -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.AccessionNumber = f"ACC{i:04d}"
    ds.PatientName = f"Müller^Anna{i}"
    ds.PatientID = f"PID{i}"
    if comments:
        ds.PatientComments = comments
    step = Dataset()
    step.Modality = "CT"
    step.ScheduledStationAETitle = "CT 1"
    step.ScheduledProcedureStepStartDate = f"202401{i + 10:02d}"
    step.ScheduledProcedureStepDescription = "CHEST W/O"
    ds.ScheduledProcedureStepSequence = [step]
    return ds


WORKLIST_KEYS = [
    "SpecificCharacterSet=ISO_IR 100", "AccessionNumber", "PatientName=M*ller*", "PatientID",
    "ScheduledProcedureStepSequence[0].Modality=CT",
    "ScheduledProcedureStepSequence[0].ScheduledStationAETitle",
    "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=20240101-20240131",
]


@pytest.mark.parametrize("option, expected", [
    ("-xe", EXPLICIT), ("-xi", IMPLICIT), ("-xb", BIG), ("-xd", DEFLATED),
], ids=["little", "implicit", "big", "deflated"])
def test_findscu_worklist_with_sequences_extracted(our_server: Callable[..., Server], tmp_path: Path,
                                                   option: str, expected: str) -> None:
    """findscu -W with a wildcard, a date range and sequence keys in each
    syntax: our handler decodes them, and the responses findscu extracts (-X)
    are in that syntax and equal what the handler yielded."""
    matches = [worklist_item(i) for i in range(4)]
    rec = Recorder(matches)
    srv = our_server(rec, contexts={WORKLIST: [BIG, DEFLATED, EXPLICIT, IMPLICIT]})
    out = tmp_path / "rsp"
    out.mkdir()
    result = findscu(srv.port, "DICOMNET", WORKLIST_KEYS, option, "-X", "-od", str(out), model="-W")
    assert result.ok, result.output
    [(ctx, query)] = rec.queries
    assert ctx.abstract_syntax == WORKLIST and ctx.transfer_syntax == expected
    assert str(query.PatientName) == "M*ller*" and query.SpecificCharacterSet == "ISO_IR 100"
    [step] = query.ScheduledProcedureStepSequence
    assert step.Modality == "CT" and step.ScheduledProcedureStepStartDate == "20240101-20240131"
    assert "ScheduledStationAETitle" in step
    extracted = files_in(out)
    assert [p.name for p in extracted] == [f"rsp{n:04d}.dcm" for n in range(1, 5)]
    for path, match in zip(extracted, matches):
        ds = read_file(path)
        assert ds.transfer_syntax == expected
        assert ds == match
    assert rec.cancelled == [False]


def test_findscu_small_max_pdu_gets_fragments(our_server: Callable[..., Server], tmp_path: Path) -> None:
    """findscu -pdu 4096: a 20 KB identifier (and the batched pending
    responses around it) reach it in P-DATA-TF PDUs of at most 4096 bytes."""
    matches = [worklist_item(i, comments="x" * (20000 if i == 1 else 10)) for i in range(3)]
    rec = Recorder(matches)
    srv = our_server(rec)
    out = tmp_path / "rsp"
    out.mkdir()
    result = findscu(srv.port, "DICOMNET", WORKLIST_KEYS, "-pdu", "4096", "--log-level", "trace", "-X",
                     "-od", str(out), model="-W")
    assert result.ok, result.output[-3000:]
    assert rec.associations[0].negotiated.peer_max_pdu == 4096
    lengths = pdata_lengths(result.output)
    assert lengths and max(lengths) <= 4096 and sum(lengths) > 20000, lengths
    for path, match in zip(files_in(out), matches, strict=True):
        assert read_file(path) == match


def test_findscu_cancel(our_server: Callable[..., Server]) -> None:
    """findscu --cancel 2 against a handler with (nearly) endless matches: our
    handler sees ctx.cancelled, findscu gets the matches already under way and
    a final Cancel (0xFE00)."""
    limit = 20000

    class Endless(Recorder):
        def on_find(self, ctx: Any, query: Dataset) -> Iterator[Dataset]:
            self.queries.append((ctx, query))
            try:
                for i in range(limit):
                    if ctx.cancelled:
                        break
                    yield worklist_item(i % 10)
            finally:
                self.cancelled.append(ctx.cancelled)

    rec = Endless()
    srv = our_server(rec)
    result = findscu(srv.port, "DICOMNET", WORKLIST_KEYS, "--cancel", "2", "-v", model="-W")
    assert result.ok, result.output[-3000:]
    assert rec.cancelled == [True]
    pending = len(re.findall(r"Find Response:? \d+ \(Pending\)", result.output))
    assert 2 <= pending < limit
    assert "Sending Cancel Request" in result.output
    assert re.search(r"Received Final Find Response \(Cancel", result.output), result.output[-2000:]
    assert echoscu(srv.port, "DICOMNET").ok


# ======================================= movescu / getscu -> our Server
def archive_of(files: list[tuple[Path, Dataset]]) -> Archive:
    archive = Archive()
    for path, ds in files:
        archive.add(ds, str(path))
    return archive


def study_keys(files: list[tuple[Path, Dataset]], level: str = "STUDY") -> list[str]:
    ds = files[0][1]
    if level == "PATIENT":
        return keys(QueryRetrieveLevel="PATIENT", PatientID=str(ds.PatientID))
    return keys(QueryRetrieveLevel="STUDY", StudyInstanceUID=str(ds.StudyInstanceUID))


@pytest.mark.parametrize("options, model, level, expected", [
    (["+xi"], "-S", "STUDY", IMPLICIT),                 # its SCP takes implicit only: we transcode
    (["+xb"], "-S", "STUDY", EXPLICIT),                 # big endian preferred, but we do not propose it
    (["-pdu", "4096", "+B", "+xe"], "-P", "PATIENT", EXPLICIT),   # bit preserving: the bytes as sent
], ids=["implicit-only", "prefer-big", "small-pdu-bit-preserving"])
def test_movescu_to_its_own_storage_scp(our_server: Callable[..., Server], tmp_path: Path, options: list[str],
                                        model: str, level: str, expected: str) -> None:
    """movescu +P: it is the C-MOVE destination itself; the study arrives in the
    syntax its SCP accepted, equal to the originals."""
    files = make_study(tmp_path / "src", instances=3, rows=128, cols=128)
    port = free_port()
    handler = SampleHandler(archive_of(files), {"MOVESCU": (HOST, port)})
    srv = our_server(handler, destinations=handler.destinations)
    out = tmp_path / "moved"
    out.mkdir()
    # (Run in ``out``: with +B movescu 3.6.7 writes to its working directory, not to -od.)
    result = run_tool("movescu", "-aet", "MOVESCU", "-aec", "DICOMNET", "-aem", "MOVESCU", model,
                      *(a for k in study_keys(files, level) for a in ("-k", k)), "+P", str(port), "-od", str(out),
                      "-v", *options, HOST, str(srv.port), cwd=out)
    assert result.ok, result.output
    assert "Received Final Move Response (Success)" in result.output
    originals = {str(ds.SOPInstanceUID): ds for _, ds in files}
    received = by_uid(files_in(out))
    assert sorted(received) == sorted(originals)
    for path in files_in(out):
        ds = read_file(path)
        assert ds.transfer_syntax == expected
        assert_same(ds, originals[str(ds.SOPInstanceUID)])
        if "+B" in options:
            assert dataset_bytes(path) == encoded(originals[str(ds.SOPInstanceUID)], expected)


def test_movescu_cancel_with_its_own_storage_scp(our_server: Callable[..., Server], tmp_path: Path) -> None:
    """movescu +P --cancel 1: the C-CANCEL stops our sub-operations early, the
    final response is Cancel, and what did arrive is intact."""
    files = make_study(tmp_path / "src", instances=10)
    port = free_port()
    handler = SampleHandler(archive_of(files), {"MOVESCU": (HOST, port)})
    srv = our_server(handler, destinations=handler.destinations)
    out = tmp_path / "moved"
    out.mkdir()
    result = movescu(srv.port, "DICOMNET", "MOVESCU", study_keys(files), "+P", str(port), "-od", str(out),
                     "--cancel", "1", "-v")
    assert result.ok, result.output
    assert "Received Final Move Response (Cancel" in result.output, result.output
    originals = {str(ds.SOPInstanceUID): ds for _, ds in files}
    received = files_in(out)
    assert 1 <= len(received) < len(files)
    for ds in by_uid(received).values():
        assert_same(ds, originals[str(ds.SOPInstanceUID)])


@pytest.mark.parametrize("options, storage_syntaxes, expected", [
    (["+xb", "+B"], [BIG, EXPLICIT, IMPLICIT], BIG),
    (["+xd"], [DEFLATED, EXPLICIT], DEFLATED),
    (["-pdu", "4096", "+B", "--log-level", "trace", "--repeat", "2"], None, EXPLICIT),
], ids=["big-bit-preserving", "deflated", "small-pdu-repeat"])
def test_getscu_storage_options(our_server: Callable[..., Server], tmp_path: Path, options: list[str],
                                storage_syntaxes: list[str] | None, expected: str) -> None:
    """getscu's preferred storage syntaxes: our C-GET sends the Explicit VR LE
    files transcoded to what was negotiated (big endian, deflated), in PDUs
    within its -pdu; +B keeps the bytes exactly as we sent them."""
    files = make_study(tmp_path / "src", instances=3, rows=128, cols=128)
    calls: list[int] = []

    class Counting(SampleHandler):
        def on_get(self, ctx: Any, query: Dataset) -> list[Any]:
            calls.append(ctx.message_id)
            return super().on_get(ctx, query)

    contexts = None if storage_syntaxes is None else {STUDY_GET: [EXPLICIT], CT: storage_syntaxes}
    srv = our_server(Counting(archive_of(files)), contexts=contexts)
    out = tmp_path / "got"
    out.mkdir()
    result = getscu(srv.port, "DICOMNET", study_keys(files), out, *options, model="-S")
    assert result.ok, result.output[-3000:]
    assert calls == ([1, 2] if "--repeat" in options else [1])
    originals = {str(ds.SOPInstanceUID): ds for _, ds in files}
    got = files_in(out)
    assert sorted(by_uid(got)) == sorted(originals)
    for path in got:
        ds = read_file(path)
        original = originals[str(ds.SOPInstanceUID)]
        assert ds.transfer_syntax == expected
        assert_same(ds, original)
        if "+B" in options:
            ts, data = wire_bytes(expected, dataset_bytes(path))
            assert data == encoded(original, ts)
    if "-pdu" in options:
        lengths = pdata_lengths(result.output)
        assert lengths and max(lengths) <= 4096, lengths


def compressed_study(folder: Path, instances: int) -> list[tuple[Path, Dataset]]:
    """A synthetic series, each file JPEG lossless (dcmcjpeg)."""
    out = []
    for path, _ in make_study(folder / "plain", instances=instances):
        target = folder / path.name
        assert run_tool("dcmcjpeg", str(path), str(target)).ok
        out.append((target, read_file(target)))
    return out


def test_getscu_prefer_lossless_gets_jpeg_as_is(our_server: Callable[..., Server], tmp_path: Path) -> None:
    """getscu +xs +B from a server that accepts JPEG Lossless for CT: the
    JPEG files go back as they are, fragment for fragment."""
    files = compressed_study(tmp_path / "jpeg", instances=3)
    srv = our_server(SampleHandler(archive_of(files)),
                     contexts={STUDY_GET: [EXPLICIT], CT: [JPEG_LOSSLESS, EXPLICIT, IMPLICIT]})
    out = tmp_path / "got"
    out.mkdir()
    result = getscu(srv.port, "DICOMNET", study_keys(files), out, "+xs", "+B", model="-S")
    assert result.ok, result.output
    sources = {str(ds.SOPInstanceUID): path for path, ds in files}
    got = files_in(out)
    assert sorted(by_uid(got)) == sorted(sources)
    for path in got:
        ds = read_file(path)
        assert ds.transfer_syntax == JPEG_LOSSLESS
        assert dataset_bytes(path) == dataset_bytes(sources[str(ds.SOPInstanceUID)])


def test_getscu_with_an_instance_we_cannot_send(our_server: Callable[..., Server], tmp_path: Path) -> None:
    """A JPEG instance getscu proposed no JPEG context for: that sub-operation
    fails, the others arrive, the final status is Warning with one failure,
    and our server goes on serving (getscu's release then fails: a dcmtk quirk)."""
    files = make_study(tmp_path / "src", instances=3)
    jpeg = tmp_path / "jpeg.dcm"
    assert run_tool("dcmcjpeg", str(files[0][0]), str(jpeg)).ok
    served = [(jpeg, read_file(jpeg)), *files[1:]]
    srv = our_server(SampleHandler(archive_of(served)))
    out = tmp_path / "got"
    out.mkdir()
    result = getscu(srv.port, "DICOMNET", study_keys(files), out, "-v", model="-S")
    assert result.returncode == 0 and errors_but_release(result) == [], result.output
    assert "Warning: SubOperationsCompleteOneOrMoreFailures" in result.output
    assert re.search(r"Number of Completed Suboperations\s*: 2", result.output)
    assert re.search(r"Number of Failed Suboperations\s*: 1", result.output)
    received = by_uid(files_in(out))
    assert sorted(received) == sorted(str(ds.SOPInstanceUID) for _, ds in files[1:])
    for _, ds in files[1:]:
        assert_same(received[str(ds.SOPInstanceUID)], ds)
    wait_idle(srv)
    assert echoscu(srv.port, "DICOMNET").ok


@pytest.mark.parametrize("option, syntax", [("-xb", BIG), ("-xd", DEFLATED), ("-xi", IMPLICIT)],
                         ids=["big", "deflated", "implicit"])
def test_stored_by_storescu_then_found_and_got(our_server: Callable[..., Server], tmp_path: Path,
                                               option: str, syntax: str) -> None:
    """storescu -xb/-xd/-xi into the sample handler's archive, then findscu at
    IMAGE level and getscu: the instances kept from the wire in that syntax go
    back equal to the originals, in our first syntax that getscu proposed (on
    a context where only we send, the sender's order decides): big endian and
    implicit as stored; Explicit VR LE for deflated, which getscu does not
    propose."""
    files = make_study(tmp_path / "src", instances=4)
    supported = dict(default_supported())
    supported[CT] = (syntax, EXPLICIT, IMPLICIT)
    srv = our_server(SampleHandler(Archive()), contexts=supported)
    result = storescu(srv.port, "DICOMNET", [p for p, _ in files], option, "-R")
    assert result.ok, result.output
    ds0 = files[0][1]
    found = findscu(srv.port, "DICOMNET", keys(QueryRetrieveLevel="IMAGE", StudyInstanceUID=str(ds0.StudyInstanceUID),
                                               SeriesInstanceUID=str(ds0.SeriesInstanceUID), SOPInstanceUID=""),
                    "-v")
    assert found.ok, found.output
    uids = sorted(str(ds.SOPInstanceUID) for _, ds in files)
    assert sorted(re.findall(r"\(0008,0018\) UI \[([0-9.]+)\x00?\]", found.output)) == uids
    out = tmp_path / "got"
    out.mkdir()
    result = getscu(srv.port, "DICOMNET", study_keys(files), out, model="-S")
    assert result.ok, result.output
    originals = {str(ds.SOPInstanceUID): ds for _, ds in files}
    got = by_uid(files_in(out))
    assert sorted(got) == uids
    expected = EXPLICIT if syntax == DEFLATED else syntax
    for uid_, ds in got.items():
        assert ds.transfer_syntax == expected
        assert_same(ds, originals[uid_])


# ============================================ dcmtk -> `dicomnet sample-server`
@contextmanager
def sample_server_cli(folder: Path, log: Path) -> Iterator[int]:
    """``dicomnet sample-server --dicom folder`` on a free port; yields the port."""
    with dicomnet_cli_server(["sample-server", "--aet", "SAMPLE", "--dicom", str(folder), "--timeout", "10"],
                             log) as (_, port):
        yield port


@pytest.fixture(scope="module")
def cli_archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, list[tuple[Path, Dataset]], Path]]:
    """One ``dicomnet sample-server`` for the module, serving a fresh study."""
    require("getscu")
    root = tmp_path_factory.mktemp("cli-archive")
    files = make_study(root / "study", instances=3)
    log = root / "server.log"
    with sample_server_cli(root / "study", log) as port:
        yield port, files, log


@pytest.mark.parametrize("option", ["+xd", "+xs", "+xy", "+xr"],
                         ids=["prefer-deflated", "prefer-lossless", "prefer-jpeg8", "prefer-rle"])
def test_getscu_preferences_against_sample_server_cli(cli_archive: tuple[int, list[tuple[Path, Dataset]], Path],
                                                      tmp_path: Path, option: str) -> None:
    """getscu proposing a preferred syntax first (and Explicit VR LE after it)
    for its storage contexts: the sample server's uncompressed instances must
    still arrive -- it has to accept a syntax it can send them in."""
    port, files, log = cli_archive
    out = tmp_path / "got"
    out.mkdir()
    result = getscu(port, "SAMPLE", study_keys(files), out, option, model="-S")
    assert result.ok, result.output + "\nserver log tail:\n" + "\n".join(log.read_text().splitlines()[-5:])
    originals = {str(ds.SOPInstanceUID): ds for _, ds in files}
    got = by_uid(files_in(out))
    assert sorted(got) == sorted(originals)
    for uid_, ds in got.items():
        assert_same(ds, originals[uid_])
