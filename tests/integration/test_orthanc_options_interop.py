"""Orthanc with non-default settings, fed non-ASCII and compressed data, both directions.

The other Orthanc tests run it as it comes, with ASCII data. Here dedicated
Orthancs run with settings sites change -- DefaultEncoding, MaximumPduLength
4096, DicomScuPreferredTransferSyntax, DicomScuTimeout, LimitFindResults and
LimitFindInstances, DicomAlwaysAllow* off with a modality table, per-modality
AllowTranscoding, LocalAet and Manufacturer -- and hold the character set
samples of PS3.5 Annexes H to K (pydicom's charset files: Latin-1, Greek,
Cyrillic, Arabic, Hebrew, ISO 2022 Japanese and Korean, UTF-8, GB18030) and
RLE / JPEG-LS images. Our Client stores, finds, gets and moves; Orthanc's REST
API makes Orthanc store to, query, move from and time out on our Server. A
relay between the two (:class:`PduTap`) records every PDU, so maximum PDU
lengths are checked on the wire. Text is compared with what Orthanc's REST
API reports and with pydicom decoding the same bytes.

Orthanc 1.10 behaviours these tests live with (not dicomnet's doing):

* its C-FIND SCP answers in DefaultEncoding, whatever the request's Specific
  Character Set, dropping what that encoding cannot hold;
* with DefaultEncoding JapaneseKanji, Korean or SimplifiedChinese it sends the
  single value "ISO 2022 IR 87" / "ISO 2022 IR 149" / "ISO 2022 IR 58" (the
  sets of PS3.3 Table C.12-4 are for values 2 to n) and encodes text with
  ASCII as the initial G0 set, as pydicom reads it;
* its C-FIND SCU (REST ``/query``) refuses an answer whose Specific Character
  Set has several values ("\\ISO 2022 IR 87": HTTP 400), so our handler
  answers those in UTF-8; its ingest misreads "ISO 2022 IR 13\\ISO 2022 IR 87"
  (chrH32), which is left out;
* ``Transcode`` is no option of ``/modalities/{id}/store`` in 1.10: what it
  sends follows the accepted contexts and DicomScuPreferredTransferSyntax;
* with AllowTranscoding false a C-MOVE whose destination lacks the syntax
  fails as a whole (0xC000, no sub-operation counted), and a C-GET stops at
  the first such sub-operation;
* LimitFindResults / LimitFindInstances end a C-FIND with Cancel (0xFE00);
* a request its modality table forbids gets an A-ABORT, an AE title it does
  not know (all DicomAlwaysAllow* off) an A-ASSOCIATE-RJ;
* DicomAssociationCloseDelay only concerns Lua scripts, so it is not tested.
"""
from __future__ import annotations

import io
import random
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dicomnet.client import Client
from dicomnet.dicom import Dataset, read_file, write_file
from dicomnet.dicom.writer import encode_dataset
from dicomnet.dimse.retrieve import GET_MODELS
from dicomnet.errors import AssociationAborted, AssociationRejected, DimseStatusError
from dicomnet.samples.archive import Archive
from dicomnet.samples.server import SampleHandler
from dicomnet.samples.synthetic import generate
from dicomnet.server import Server

from .peers import HOST, Orthanc, OrthancRestError, require

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
RLE = "1.2.840.10008.1.2.5"
JPEG_LS = "1.2.840.10008.1.2.4.80"
VERIFICATION = "1.2.840.10008.1.1"
MR = "1.2.840.10008.5.1.4.1.1.4"
P_DATA_TF = 4
PIXEL_DATA = 0x7FE00010

#: pydicom's character set samples -> Patient's Name as PS3.5 Annexes H-K (and
#: pydicom) give it; the Patient ID of each is the file name's stem in capitals.
CHARSET_SAMPLES: dict[str, str] = {
    "chrFren.dcm": "Buc^Jérôme",
    "chrGerm.dcm": "Äneas^Rüdiger",
    "chrGreek.dcm": "Διονυσιος",
    "chrRuss.dcm": "Люкceмбypг",
    "chrArab.dcm": "قباني^لنزار",
    "chrHbrw.dcm": "שרון^דבורה",
    "chrH31.dcm": "Yamada^Tarou=山田^太郎=やまだ^たろう",
    "chrJapMulti.dcm": "やまだ^たろう",
    "chrI2.dcm": "Hong^Gildong=洪^吉洞=홍^길동",
    "chrKoreanMulti.dcm": "김희중",
    "chrX1.dcm": "Wang^XiaoDong=王^小東=",
    "chrX2.dcm": "Wang^XiaoDong=王^小东=",
}


def uid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def body(ds: Dataset, ts: str) -> bytes:
    return bytes(encode_dataset(ds, ts))


def same_name(value: Any, expected: str) -> bool:
    """PN text equal up to trailing empty component groups (PS3.5 6.2.1.1)."""
    return str(value).rstrip("=") == expected.rstrip("=")


def fresh_copy(src: str | Path, folder: Path, **attributes: str) -> tuple[Path, Dataset]:
    """``src`` rewritten in its own transfer syntax with new Study/Series/SOP
    Instance UIDs (``attributes`` set on top); the path and the data set read back."""
    ds = read_file(src)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = uid(), uid(), uid()
    for tag in [t for t in ds.tags() if t & 0xFFFF == 0 or t == 0xFFFCFFFC]:
        # Group Lengths (retired, PS3.5 7.2: some samples' are stale) and Data Set
        # Trailing Padding (which Orthanc, being dcmtk inside, drops; PS3.10 7.2).
        del ds[tag]
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.file_meta = None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    write_file(path, ds, ds.transfer_syntax)
    return path, read_file(path)


def pydicom_file(name: str) -> str:
    require("pydicom")
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name!r} is not available offline")
    return str(path)


def pydicom_text(ds: Dataset, keyword: str) -> str:
    """``keyword``'s value as pydicom decodes the bytes ``ds`` came in (the reference decoder)."""
    from pydicom.filereader import read_dataset as pydicom_read

    ts = ds.transfer_syntax or EXPLICIT
    other = pydicom_read(io.BytesIO(body(ds, ts)), is_implicit_VR=ts == IMPLICIT, is_little_endian=True)
    with warnings.catch_warnings():      # pydicom warns while it decodes a lone "ISO 2022 IR 87"
        warnings.simplefilter("ignore")
        return str(other[keyword].value)


def lookup(orthanc: Orthanc, sop_instance_uid: str) -> str:
    found = orthanc.post("/tools/lookup", raw=sop_instance_uid.encode(), content_type="text/plain")
    ids = [f["ID"] for f in found if f["Type"] == "Instance"]
    assert len(ids) == 1, found
    return ids[0]


def stored_copy(orthanc: Orthanc, sop_instance_uid: str) -> Dataset:
    """Orthanc's copy of an instance, read back by us."""
    return read_file(orthanc.instance_file(lookup(orthanc, sop_instance_uid)))


def set_encoding(orthanc: Orthanc, encoding: str) -> None:
    """Change Orthanc's DefaultEncoding at run time (``/tools/default-encoding``)."""
    orthanc.put("/tools/default-encoding", raw=encoding.encode(), content_type="text/plain")


def answers(orthanc: Orthanc, modality: str, level: str, query: dict[str, str]) -> list[dict[str, Any]]:
    """C-FIND from Orthanc to ``modality``: every answer as simplified tags, in one request."""
    q = orthanc.post(f"/modalities/{modality}/query", {"Level": level, "Query": query})
    return list(orthanc.get(f"/queries/{q['ID']}/answers?expand&simplify"))


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return value


def wait_idle(server: Server, timeout: float = 10.0) -> None:
    wait_for(lambda: server.active_associations == 0, timeout, f"{server!r} to be idle")


class PduTap:
    """A TCP relay on 127.0.0.1 in front of ``target_port``: forwards every byte
    both ways and records each PDU's (direction, type, length) -- "in" toward
    the target, "out" from it. The length is the PDU-length field (for a
    P-DATA-TF, the variable field a Maximum Length Received bounds, PS3.8 D.1)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.pdus: list[tuple[str, int, int]] = []
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server((HOST, 0))
        self.port: int = self._listener.getsockname()[1]

    def __enter__(self) -> PduTap:
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc: object) -> None:
        for s in [self._listener, *self._sockets]:
            try:
                s.shutdown(socket.SHUT_RDWR)     # wakes a thread blocked on it
            except OSError:
                pass
            s.close()
        for t in self._threads:
            t.join(5)

    def pdata(self, direction: str) -> list[int]:
        """Lengths of the P-DATA-TF PDUs relayed in ``direction``."""
        with self._lock:
            return [n for d, kind, n in self.pdus if d == direction and kind == P_DATA_TF]

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self._listener.accept()
                far = socket.create_connection((HOST, self.target_port), timeout=10)
            except OSError:
                return
            far.settimeout(None)
            for s in (near, far):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets += [near, far]
            self._spawn(self._pump, near, far, "in")
            self._spawn(self._pump, far, near, "out")

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        pending = b""
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
                pending += data
                while len(pending) >= 6 and len(pending) >= 6 + (n := int.from_bytes(pending[2:6], "big")):
                    with self._lock:
                        self.pdus.append((direction, pending[0], n))
                    pending = pending[6 + n:]
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass


class Sink:
    """A storage SCP handler keeping (transfer syntax, data set, command, calling AE) per C-STORE."""

    def __init__(self) -> None:
        self.received: list[tuple[str, Dataset, Any, str]] = []
        self.lock = threading.Lock()

    def on_store(self, ctx: Any, ds: Dataset) -> None:
        with self.lock:
            self.received.append((ctx.transfer_syntax, ds, ctx.command, ctx.calling_ae))


class RecordingArchive(SampleHandler):
    """The sample handler, recording each association and the C-FIND queries
    as decoded, with (calling AE, query) per query."""

    def __init__(self, archive: Archive, destinations: dict[str, tuple[str, int]] | None = None) -> None:
        super().__init__(archive, destinations)
        self.queries: list[tuple[str, Dataset]] = []
        self.associations: list[Any] = []

    def on_association(self, info: Any) -> None:
        self.associations.append(info)
        super().on_association(info)

    def on_find(self, ctx: Any, query: Dataset) -> Iterator[Dataset]:
        self.queries.append((ctx.calling_ae, query))
        return super().on_find(ctx, query)


def mr_reference() -> np.ndarray:
    """The pixels of MR_small.dcm: what its RLE and JPEG-LS lossless copies decode to."""
    return read_file(pydicom_file("MR_small.dcm")).pixel_array


def compressed_study(folder: Path, patient_id: str) -> list[tuple[Path, Dataset]]:
    """MR_small as RLE, JPEG-LS lossless and Explicit VR LE, one series each of one study."""
    study = uid()
    return [fresh_copy(pydicom_file(name), folder, PatientID=patient_id, StudyInstanceUID=study)
            for name in ("MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm")]


# ======================================================= character sets
#: Our C-FIND keys: (Specific Character Set, Patient's Name key, Patient IDs it matches).
CLIENT_KEYS = [
    ("ISO_IR 100", "Äneas*", ["CHRGERM"]),
    ("ISO_IR 100", "*rôme", ["CHRFREN"]),
    ("ISO_IR 192", "*山田*", ["CHRH31"]),
    ("ISO_IR 192", "김*", ["CHRKOREANMULTI"]),
    ("\\ISO 2022 IR 87", "Yamada^Tarou=山田^太郎=やまだ^たろう", ["CHRH31"]),
    ("\\ISO 2022 IR 87", "やまだ*", ["CHRJAPMULTI"]),
    ("\\ISO 2022 IR 149", "*길동", ["CHRI2"]),
    ("GB18030", "*小东*", ["CHRX2"]),
    ("ISO_IR 126", "Διον*", ["CHRGREEK"]),
    ("ISO_IR 144", "Люк*", ["CHRRUSS"]),
    ("ISO_IR 127", "*لنزار", ["CHRARAB"]),
    ("ISO_IR 138", "שרון*", ["CHRHBRW"]),
]

#: Orthanc's C-FIND keys: (DefaultEncoding, Patient's Name key, Patient IDs it matches).
ORTHANC_KEYS = [
    ("Latin1", "Äneas*", ["CHRGERM"]),
    ("Latin1", "*rôme", ["CHRFREN"]),
    ("Utf8", "*山田*", ["CHRH31"]),
    ("Utf8", "김*", ["CHRKOREANMULTI"]),
    ("Utf8", "Wang^XiaoDong=王^小東", ["CHRX1"]),
    ("JapaneseKanji", "*山田*", ["CHRH31"]),
    # Without "=" the key may match any one component group: H31's phonetic one too.
    ("JapaneseKanji", "やまだ*", ["CHRH31", "CHRJAPMULTI"]),
    ("Korean", "*길동", ["CHRI2"]),
    ("Chinese", "*小东*", ["CHRX2"]),
    ("SimplifiedChinese", "*小东*", ["CHRX2"]),
    ("Greek", "Διον*", ["CHRGREEK"]),
    ("Cyrillic", "Люк*", ["CHRRUSS"]),
    ("Arabic", "*لنزار", ["CHRARAB"]),
    ("Hebrew", "שרון*", ["CHRHBRW"]),
]


@pytest.fixture(scope="module")
def charset_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Dataset, str]]:
    """Patient ID -> (fresh copy of the sample, its data set, its Patient's Name)."""
    require("pydicom")
    from pydicom.data import get_charset_files

    folder = tmp_path_factory.mktemp("charsets")
    out = {}
    for name, patient_name in CHARSET_SAMPLES.items():
        found = get_charset_files(name)
        if not found:
            pytest.skip(f"pydicom charset file {name!r} is not available")
        patient_id = name[:-4].upper()
        path, ds = fresh_copy(found[0], folder, PatientID=patient_id)
        out[patient_id] = (path, ds, patient_name)
    return out


@pytest.fixture(scope="module")
def charset_orthanc(charset_files: dict[str, tuple[Path, Dataset, str]]) -> Iterator[Orthanc]:
    """An Orthanc holding every charset sample, stored by our Client."""
    with Orthanc(config={"DefaultEncoding": "Utf8"}) as orthanc:
        with Client("DNETCHARS").associate(HOST, orthanc.dicom_port, orthanc.aet) as assoc:
            statuses = [status for _, status, _ in assoc.store_many(p for p, _, _ in charset_files.values())]
        assert statuses == [0] * len(charset_files)
        yield orthanc


def test_client_stores_charset_samples_as_sent(charset_orthanc: Orthanc,
                                               charset_files: dict[str, tuple[Path, Dataset, str]]) -> None:
    """Orthanc keeps each sample's data set byte for byte (escape sequences
    included) and reads the names the standard gives them."""
    names = {p["MainDicomTags"]["PatientID"]: p["MainDicomTags"]["PatientName"]
             for p in charset_orthanc.get("/patients?expand")}
    for patient_id, (_, ds, patient_name) in charset_files.items():
        copy = stored_copy(charset_orthanc, str(ds.SOPInstanceUID))
        assert copy.transfer_syntax == ds.transfer_syntax
        assert body(copy, ds.transfer_syntax) == body(ds, ds.transfer_syntax), patient_id
        assert same_name(names[patient_id], patient_name), (patient_id, names[patient_id])


@pytest.mark.parametrize("charset, key, expected", CLIENT_KEYS,
                         ids=[c.replace("\\", "").replace(" ", "") + "-" + e[0] for c, _, e in CLIENT_KEYS])
def test_client_finds_non_ascii_names_in_orthanc(charset_orthanc: Orthanc,
                                                 charset_files: dict[str, tuple[Path, Dataset, str]],
                                                 charset: str, key: str, expected: list[str]) -> None:
    """Our query, encoded in each character set (ISO 2022 escapes for the
    Japanese and Korean ones), matches in Orthanc exactly the patients it
    names; the UTF-8 answers decode to the standard's names."""
    set_encoding(charset_orthanc, "Utf8")
    query = Dataset()
    query.SpecificCharacterSet = charset
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientName = key
    query.PatientID = ""
    with Client("DNETCHARS").associate(HOST, charset_orthanc.dicom_port, charset_orthanc.aet) as assoc:
        found = assoc.find(query, model="patient")
        matches = list(found)
    assert found.status == 0
    assert sorted(str(m.PatientID) for m in matches) == expected
    for m in matches:
        assert m.SpecificCharacterSet == "ISO_IR 192"
        assert same_name(m.PatientName, charset_files[str(m.PatientID)][2]), str(m.PatientName)


@pytest.mark.parametrize("encoding, patient_id, charset", [
    ("Latin1", "CHRFREN", "ISO_IR 100"),
    ("Latin2", "CHRGERM", "ISO_IR 101"),
    ("Greek", "CHRGREEK", "ISO_IR 126"),
    ("Cyrillic", "CHRRUSS", "ISO_IR 144"),
    ("Arabic", "CHRARAB", "ISO_IR 127"),
    ("Hebrew", "CHRHBRW", "ISO_IR 138"),
    ("Utf8", "CHRH31", "ISO_IR 192"),
    ("JapaneseKanji", "CHRH31", "ISO 2022 IR 87"),
    ("JapaneseKanji", "CHRJAPMULTI", "ISO 2022 IR 87"),
    ("Korean", "CHRI2", "ISO 2022 IR 149"),
    ("Chinese", "CHRX2", "GB18030"),
    ("SimplifiedChinese", "CHRX2", "ISO 2022 IR 58"),
])
def test_client_reads_orthanc_answers_in_its_default_encoding(charset_orthanc: Orthanc,
                                                              charset_files: dict[str, tuple[Path, Dataset, str]],
                                                              encoding: str, patient_id: str, charset: str) -> None:
    """Orthanc answers in its DefaultEncoding: we decode each to the name it
    holds, as pydicom decodes the same bytes."""
    set_encoding(charset_orthanc, encoding)
    with Client("DNETCHARS").associate(HOST, charset_orthanc.dicom_port, charset_orthanc.aet) as assoc:
        [match] = list(assoc.find({"QueryRetrieveLevel": "PATIENT", "PatientID": patient_id, "PatientName": None},
                                  model="patient"))
    assert match.SpecificCharacterSet == charset
    expected = charset_files[patient_id][2]
    assert same_name(pydicom_text(match, "PatientName"), expected)       # Orthanc's bytes are right
    assert same_name(match.PatientName, expected), str(match.PatientName)


class Utf8ForOrthanc(RecordingArchive):
    """Answers whose Specific Character Set has several values go out in UTF-8:
    Orthanc 1.10's C-FIND SCU refuses those (see the module docstring)."""

    def on_find(self, ctx: Any, query: Dataset) -> Iterator[Any]:
        for item in super().on_find(ctx, query):      # a Dataset, or (0xFF01, Dataset)
            identifier = item[1] if isinstance(item, tuple) else item
            if isinstance(identifier.get("SpecificCharacterSet"), list):
                identifier.SpecificCharacterSet = "ISO_IR 192"
            yield item


@pytest.fixture(scope="module")
def charset_server(charset_files: dict[str, tuple[Path, Dataset, str]],
                   charset_orthanc: Orthanc) -> Iterator[Utf8ForOrthanc]:
    """Our Server over an archive of the charset samples, known to Orthanc as CHARSETS."""
    archive = Archive()
    for path, ds, _ in charset_files.values():
        archive.add(ds, path)
    handler = Utf8ForOrthanc(archive)
    with Server("DNETCHARS", handler, read_timeout=10).start(HOST, 0) as server:
        charset_orthanc.add_modality("CHARSETS", "DNETCHARS", server.port)
        yield handler


@pytest.mark.parametrize("encoding, key, expected", ORTHANC_KEYS,
                         ids=[f"{enc}-{'+'.join(e)}" for enc, _, e in ORTHANC_KEYS])
def test_orthanc_queries_our_server_with_non_ascii_keys(charset_orthanc: Orthanc, charset_server: Utf8ForOrthanc,
                                                        charset_files: dict[str, tuple[Path, Dataset, str]],
                                                        encoding: str, key: str, expected: list[str]) -> None:
    """Orthanc sends the key in its DefaultEncoding: our handler decodes it as
    typed into Orthanc's REST API, matches the patients it names, and Orthanc
    reads our answers (in each sample's own character set) as the patients' names."""
    set_encoding(charset_orthanc, encoding)
    found = answers(charset_orthanc, "CHARSETS", "Patient", {"PatientName": key, "PatientID": ""})
    calling, query = charset_server.queries[-1]
    assert calling == charset_orthanc.aet
    assert str(query.PatientName) == key, (query.get("SpecificCharacterSet"), str(query.PatientName))
    assert sorted(a["PatientID"] for a in found) == expected
    for a in found:
        assert same_name(a["PatientName"], charset_files[a["PatientID"]][2]), a


# ========================================== Orthanc's C-STORE SCU settings
@pytest.mark.parametrize("accepted, allow_transcoding, expected", [
    # Implicit VR LE only: Orthanc decompresses the RLE and JPEG-LS images.
    ([IMPLICIT], True, [IMPLICIT, IMPLICIT, IMPLICIT]),
    # Both uncompressed syntaxes: the preferred one (Implicit) for what needs transcoding.
    ([EXPLICIT, IMPLICIT], True, [IMPLICIT, IMPLICIT, EXPLICIT]),
    # Everything accepted: nothing transcoded.
    ([IMPLICIT, EXPLICIT, RLE, JPEG_LS], True, [RLE, JPEG_LS, EXPLICIT]),
    # AllowTranscoding false: the RLE image cannot go, and the store fails.
    ([IMPLICIT], False, None),
], ids=["implicit-only", "preferred-implicit", "as-is", "no-transcoding"])
def test_orthanc_stores_compressed_images_in_what_our_server_accepts(
        make_orthanc: Callable[..., Orthanc], our_server: Callable[..., Server], tmp_path: Path,
        accepted: list[str], allow_transcoding: bool, expected: list[str] | None) -> None:
    """Orthanc (DicomScuPreferredTransferSyntax = Implicit VR LE) stores RLE,
    JPEG-LS and Explicit VR LE copies of one image into our Server accepting
    ``accepted``: each arrives in the syntax it had or the one Orthanc
    transcoded it to, with the original pixels; encapsulated ones byte for byte."""
    orthanc = make_orthanc(config={"DicomScuPreferredTransferSyntax": IMPLICIT})
    files = compressed_study(tmp_path, "DNET-STORE")
    ids = [orthanc.upload(path)["ID"] for path, _ in files]
    sink = Sink()
    srv = our_server("DNETSTORE", sink, contexts={MR: accepted, VERIFICATION: [IMPLICIT]})
    orthanc.put("/modalities/SINK", {"AET": "DNETSTORE", "Host": HOST, "Port": srv.port,
                                     "AllowTranscoding": allow_transcoding})
    if expected is None:
        with pytest.raises(OrthancRestError) as failed:
            orthanc.post("/modalities/SINK/store", {"Resources": ids, "Synchronous": True})
        assert "No valid presentation context" in failed.value.body
        compressed = {str(ds.SOPInstanceUID) for _, ds in files[:2]}
        assert not compressed & {str(ds.SOPInstanceUID) for _, ds, _, _ in sink.received}
        assert orthanc.echo("SINK")                       # our Server carries on
        return
    answer = orthanc.post("/modalities/SINK/store", {"Resources": ids, "Synchronous": True})
    assert answer["FailedInstancesCount"] == 0 and answer["InstancesCount"] == 3
    by_uid = {str(ds.SOPInstanceUID): (ts, ds) for ts, ds, _, _ in sink.received}
    reference = mr_reference()
    for (_, original), ts in zip(files, expected):
        got_ts, got = by_uid[str(original.SOPInstanceUID)]
        assert got_ts == ts
        if ts in (IMPLICIT, EXPLICIT):
            assert np.array_equal(got.pixel_array, reference)
            if ts == original.transfer_syntax:
                assert body(got, ts) == body(original, ts)     # as stored, byte for byte
        else:
            # Passed through: the same fragments (dcmtk writes the Pixel Data VR
            # as OB where the RLE sample says OW), the other elements as stored.
            assert got.tags() == original.tags()
            assert bytes(got.PixelData) == bytes(original.PixelData)
            assert all(got[t] == original[t] for t in original.tags() if t != PIXEL_DATA)


def test_orthanc_asynchronous_store_of_a_large_study(make_orthanc: Callable[..., Orthanc],
                                                     our_server: Callable[..., Server]) -> None:
    """An asynchronous ``/store`` job of a 400-instance study with
    MoveOriginatorAet/ID, from a modality with its own LocalAet: every instance
    arrives once, as sent, each C-STORE-RQ naming the move originator."""
    orthanc = make_orthanc()
    study = list(generate(patients=1, studies=1, series=4, instances=100, rows=64, cols=64,
                          seed=random.getrandbits(48)))
    with Client("DNETLOAD").associate(HOST, orthanc.dicom_port, orthanc.aet) as assoc:
        assert {status for _, status, _ in assoc.store_many(study)} == {0}
    sink = Sink()
    srv = our_server("DNETBULK", sink)
    orthanc.put("/modalities/BULK", {"AET": "DNETBULK", "Host": HOST, "Port": srv.port, "LocalAet": "ORTHANC-SCU"})
    [study_id] = orthanc.get("/studies")
    job = orthanc.post("/modalities/BULK/store", {"Resources": [study_id], "Asynchronous": True,
                                                  "MoveOriginatorAet": "THE-MOVER", "MoveOriginatorID": 4321})
    state = wait_for(lambda: (j := orthanc.get(f"/jobs/{job['ID']}"))["State"] in ("Success", "Failure") and j,
                     60, "the store job")
    assert state["State"] == "Success", state
    assert state["Content"]["InstancesCount"] == len(study) and state["Content"]["FailedInstancesCount"] == 0
    originals = {str(ds.SOPInstanceUID): ds for ds in study}
    assert sorted(str(ds.SOPInstanceUID) for _, ds, _, _ in sink.received) == sorted(originals)
    for ts, ds, command, calling in sink.received:
        assert calling == "ORTHANC-SCU"
        assert command.get("MoveOriginatorApplicationEntityTitle") == "THE-MOVER"
        assert command.get("MoveOriginatorMessageID") == 4321
        assert body(ds, ts) == body(originals[str(ds.SOPInstanceUID)], ts)


# ============================================= small PDUs on both sides
def test_our_server_fragments_for_orthanc_small_pdu(make_orthanc: Callable[..., Orthanc],
                                                    our_server: Callable[..., Server]) -> None:
    """Orthanc with MaximumPduLength 4096 queries and moves from our Server:
    our C-FIND answers (one over 6 KB) and the C-STORE sub-operations toward
    Orthanc go in P-DATA-TF PDUs of at most 4096 bytes, and arrive intact."""
    orthanc = make_orthanc(config={"MaximumPduLength": 4096})
    comments = "Überweisung wegen Kopfschmerz; " * 200          # 6,200 characters of LT
    study = list(generate(patients=1, studies=1, series=1, instances=4, rows=128, cols=128,
                          seed=random.getrandbits(48)))
    archive = Archive()
    for ds in study:
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.PatientComments = comments
        archive.add(ds)
    with PduTap(orthanc.dicom_port) as to_orthanc:
        handler = RecordingArchive(archive, {orthanc.aet: (HOST, to_orthanc.port)})
        srv = our_server("DNETPDU", handler, destinations=handler.destinations)
        with PduTap(srv.port) as to_us:
            orthanc.add_modality("PDU", "DNETPDU", to_us.port)
            found = answers(orthanc, "PDU", "Study", {"StudyInstanceUID": "", "PatientComments": ""})
            orthanc.move("PDU", "Study", [{"StudyInstanceUID": str(study[0].StudyInstanceUID)}])
            wait_idle(srv)
    assert handler.associations[0].negotiated.peer_max_pdu == 4096
    assert [a["PatientComments"] for a in found] == [comments.rstrip()]
    ours = to_us.pdata("out") + to_orthanc.pdata("in")
    assert max(ours) <= 4096
    assert len(to_orthanc.pdata("in")) >= 4 * (128 * 128 * 2 // 4096)    # each image in 8+ PDUs
    for ds in study:
        copy = stored_copy(orthanc, str(ds.SOPInstanceUID))
        assert body(copy, copy.transfer_syntax) == body(ds, copy.transfer_syntax)


# ======================================= our Client C-GET / C-MOVE from Orthanc
def test_client_gets_compressed_images_uncompressed(make_orthanc: Callable[..., Orthanc], tmp_path: Path) -> None:
    """Our Client (max_pdu 4096) proposes MR Image Storage uncompressed only:
    Orthanc decompresses the RLE and JPEG-LS images for the C-GET and keeps to
    our maximum PDU length. From an AE whose AllowTranscoding is false, the
    C-GET of the RLE image fails: we report Orthanc's status and counters and
    the association goes on."""
    orthanc = make_orthanc(modalities={"NOTX": {"AET": "NOTX", "Port": 104, "AllowTranscoding": False}})
    files = compressed_study(tmp_path, "DNET-GET")
    for path, _ in files:
        orthanc.upload(path)
    contexts = [(MR, [EXPLICIT, IMPLICIT]), GET_MODELS["study"], VERIFICATION]
    key = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": str(files[0][1].StudyInstanceUID)}
    reference = mr_reference()
    with PduTap(orthanc.dicom_port) as tap:
        with Client("DNETGET", max_pdu=4096).associate(HOST, tap.port, orthanc.aet, contexts=contexts,
                                                       for_get=True) as assoc:
            result = assoc.get(key)
            got = list(result)
    assert result.status == 0 and result.completed == 3 and result.failed == 0
    assert sorted(str(ds.SOPInstanceUID) for ds in got) == sorted(str(ds.SOPInstanceUID) for _, ds in files)
    for ds in got:
        assert ds.transfer_syntax in (EXPLICIT, IMPLICIT)
        assert np.array_equal(ds.pixel_array, reference)
    assert max(tap.pdata("out")) <= 4096 and len(tap.pdata("out")) >= 3 * (64 * 64 * 2 // 4096)

    rle = files[0][1]
    image = {"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": str(rle.StudyInstanceUID),
             "SeriesInstanceUID": str(rle.SeriesInstanceUID), "SOPInstanceUID": str(rle.SOPInstanceUID)}
    with Client("NOTX").associate(HOST, orthanc.dicom_port, orthanc.aet, contexts=contexts,
                                  for_get=True) as assoc:
        result = assoc.get(image)
        with pytest.raises(DimseStatusError) as failed:
            list(result)
        assert failed.value.status == 0xC000
        assert result.completed == 0 and result.failed == 1
        # Orthanc sends the Failed SOP Instance UID List after the command set, not in a data set.
        assert result.failed_instances == [str(rle.SOPInstanceUID)]
        assert assoc.echo() == 0


def test_client_moves_compressed_images_to_our_uncompressed_server(make_orthanc: Callable[..., Orthanc],
                                                                   our_server: Callable[..., Server],
                                                                   tmp_path: Path) -> None:
    """Orthanc decompresses for a C-MOVE to our Server accepting Implicit VR LE
    only; toward a modality with AllowTranscoding false the C-MOVE fails and
    we report Orthanc's failure status."""
    sink = Sink()
    dest = our_server("DEST", sink, contexts={MR: [IMPLICIT]})
    strict = our_server("DESTNOTX", sink, contexts={MR: [IMPLICIT]})
    orthanc = make_orthanc(modalities={
        "DEST": {"AET": "DEST", "Port": dest.port},
        "DESTNOTX": {"AET": "DESTNOTX", "Port": strict.port, "AllowTranscoding": False},
    })
    files = compressed_study(tmp_path, "DNET-MOVE")
    for path, _ in files:
        orthanc.upload(path)
    key = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": str(files[0][1].StudyInstanceUID)}
    with Client("DNETMOVE").associate(HOST, orthanc.dicom_port, orthanc.aet) as assoc:
        result = assoc.move(key, "DEST")
        progress = list(result)
        assert result.status == 0 and result.completed == 3 and result.failed == 0
        assert [p.completed for p in progress] == [1, 2]
        reference = mr_reference()
        assert len(sink.received) == 3
        for ts, ds, command, calling in sink.received:
            assert ts == IMPLICIT and calling == orthanc.aet
            assert command.get("MoveOriginatorApplicationEntityTitle") == "DNETMOVE"
            assert np.array_equal(ds.pixel_array, reference)
        sink.received.clear()
        with pytest.raises(DimseStatusError) as failed:
            assoc.move(key, "DESTNOTX").result()
        assert failed.value.status == 0xC000
        compressed = {str(ds.SOPInstanceUID) for _, ds in files[:2]}
        assert not compressed & {str(ds.SOPInstanceUID) for _, ds, _, _ in sink.received}
        assert assoc.echo() == 0


# ================================================= many matches, limits
def test_orthanc_finds_1500_studies_on_our_server(make_orthanc: Callable[..., Orthanc],
                                                  our_server: Callable[..., Server]) -> None:
    """Orthanc's C-FIND gets all 1,500 study matches of our Server, the Latin-1
    and UTF-8 patient names among them as the archive holds them (Orthanc
    keeps query answers in its DefaultEncoding: UTF-8 here, lest the kanji go)."""
    orthanc = make_orthanc(config={"DefaultEncoding": "Utf8"})
    archive = Archive.from_synthetic(patients=30, studies=50, series=1, instances=1, rows=4, cols=4,
                                     seed=random.getrandbits(48))
    srv = our_server("DNETMANY", SampleHandler(archive))
    orthanc.add_modality("MANY", "DNETMANY", srv.port)
    found = answers(orthanc, "MANY", "Study", {"StudyInstanceUID": "", "PatientName": "", "StudyDescription": ""})
    assert len(found) == 1500
    expected = {uid: entity.record for uid, entity in archive._index["STUDY"].items()}
    assert {a["StudyInstanceUID"] for a in found} == set(expected)
    for a in found:
        record = expected[a["StudyInstanceUID"]]
        assert same_name(a["PatientName"], str(record[0x00100010][1]))
        assert a["StudyDescription"] == str(record[0x00081030][1])
    # Our answers were in both character sets.
    assert {str(r[0x00080005][1]) for r in expected.values()} == {"ISO_IR 100", "ISO_IR 192"}


def test_orthanc_limits_end_our_find_with_cancel(make_orthanc: Callable[..., Orthanc]) -> None:
    """LimitFindResults 5 / LimitFindInstances 7: Orthanc stops after that
    many matches with Cancel (0xFE00); our C-FIND returns them, ends quietly
    and the association carries on."""
    orthanc = make_orthanc(config={"LimitFindResults": 5, "LimitFindInstances": 7})
    seed = random.getrandbits(48)
    studies = list(generate(patients=1, studies=8, series=1, instances=1, rows=8, cols=8, seed=seed))
    series = list(generate(patients=1, studies=1, series=1, instances=10, rows=8, cols=8, seed=seed + 1))
    with Client("DNETLIMIT").associate(HOST, orthanc.dicom_port, orthanc.aet) as assoc:
        assert {status for _, status, _ in assoc.store_many(studies + series)} == {0}
        found = assoc.find({"QueryRetrieveLevel": "STUDY", "PatientID": str(studies[0].PatientID),
                            "StudyInstanceUID": None})
        assert len(list(found)) == 5 and found.status == 0xFE00
        images = assoc.find({"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": str(series[0].StudyInstanceUID),
                             "SeriesInstanceUID": str(series[0].SeriesInstanceUID), "SOPInstanceUID": None})
        got = [str(m.SOPInstanceUID) for m in images]
        assert len(got) == 7 and images.status == 0xFE00
        assert set(got) <= {str(ds.SOPInstanceUID) for ds in series}
        assert assoc.echo() == 0


# ============================================ Orthanc's modality table
def test_orthanc_modality_table_refuses_our_client(make_orthanc: Callable[..., Orthanc]) -> None:
    """With every DicomAlwaysAllow* off (and DicomCheckCalledAet off), Orthanc
    rejects an AE title it does not know, and aborts a request the modality
    table does not allow that AE; what it allows works."""
    orthanc = make_orthanc(
        config={"DicomAlwaysAllowEcho": False, "DicomAlwaysAllowStore": False, "DicomAlwaysAllowFind": False,
                "DicomAlwaysAllowGet": False, "DicomAlwaysAllowMove": False, "DicomCheckCalledAet": False},
        modalities={
            "ECHOONLY": {"AET": "ECHOONLY", "Port": 104, "AllowEcho": True, "AllowStore": False,
                         "AllowFind": False, "AllowMove": False, "AllowGet": False},
            "FINDER": {"AET": "FINDER", "Port": 104, "AllowEcho": True, "AllowStore": True,
                       "AllowFind": True, "AllowMove": False, "AllowGet": False},
        })
    [image] = generate(patients=1, studies=1, series=1, instances=1, rows=8, cols=8, seed=random.getrandbits(48))
    with pytest.raises(AssociationRejected) as rejected:
        Client("STRANGER").associate(HOST, orthanc.dicom_port, orthanc.aet, contexts=[VERIFICATION])
    assert (rejected.value.result, rejected.value.source, rejected.value.reason) == (1, 1, 3)
    assert "calling-AE-title-not-recognized" in str(rejected.value)
    with Client("ECHOONLY").associate(HOST, orthanc.dicom_port, orthanc.aet) as assoc:
        assert assoc.echo() == 0
        with pytest.raises(AssociationAborted):
            assoc.store(image)
        assert not assoc.is_established
    # DicomCheckCalledAet false: any called AE title will do.
    with Client("FINDER").associate(HOST, orthanc.dicom_port, "ANY-ARCHIVE") as assoc:
        assert assoc.echo() == 0
        assert assoc.store(image) == 0
        [match] = list(assoc.find({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": str(image.StudyInstanceUID)}))
        assert match.StudyInstanceUID == image.StudyInstanceUID
        with pytest.raises(AssociationAborted):
            assoc.move({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": str(image.StudyInstanceUID)},
                       "FINDER").result()


# ========================================= Orthanc's C-FIND SCU options
def test_orthanc_modality_quirks_reach_our_server(make_orthanc: Callable[..., Orthanc],
                                                  our_server: Callable[..., Server]) -> None:
    """Per-modality Manufacturer and LocalAet: GenericNoWildcardInDates and
    GenericNoUniversalWildcard turn Orthanc's "*" into "" (dates only, or all
    keys) before the query reaches our handler; each association calls from
    the modality's LocalAet. "*" is no wild card for a DA key (PS3.4
    C.2.2.2.4), so the archive matches nothing with Generic's StudyDate "*"."""
    orthanc = make_orthanc()
    archive = Archive.from_synthetic(patients=2, studies=2, series=1, instances=1, rows=4, cols=4,
                                     seed=random.getrandbits(48))
    handler = RecordingArchive(archive)
    srv = our_server("DNETQUIRKS", handler)
    query = {"PatientName": "*", "StudyDate": "*", "PatientID": "*", "StudyInstanceUID": ""}
    seen = {}
    for manufacturer in ("Generic", "GenericNoWildcardInDates", "GenericNoUniversalWildcard"):
        orthanc.put(f"/modalities/{manufacturer}", {"AET": "DNETQUIRKS", "Host": HOST, "Port": srv.port,
                                                    "Manufacturer": manufacturer, "UseDicomTls": False,
                                                    "LocalAet": f"ORTHANC-{manufacturer[-5:].upper()}"})
        found = answers(orthanc, manufacturer, "Study", query)
        assert len(found) == (0 if manufacturer == "Generic" else 4), manufacturer
        calling, sent = handler.queries[-1]
        assert calling == f"ORTHANC-{manufacturer[-5:].upper()}"
        seen[manufacturer] = (str(sent.PatientName), str(sent.StudyDate), str(sent.PatientID))
    assert seen == {"Generic": ("*", "*", "*"), "GenericNoWildcardInDates": ("*", "", "*"),
                    "GenericNoUniversalWildcard": ("", "", "")}


def test_orthanc_scu_timeout_leaves_our_server_serving(make_orthanc: Callable[..., Orthanc],
                                                       our_server: Callable[..., Server]) -> None:
    """DicomScuTimeout 1 s: Orthanc gives up on a C-FIND our handler has not
    answered; once the handler returns, our Server drops that association
    without harm and serves Orthanc's next request."""
    orthanc = make_orthanc(config={"DicomScuTimeout": 1})
    release = threading.Event()
    finished = threading.Event()

    class Stuck:
        def on_find(self, ctx: Any, query: Dataset) -> Iterator[Dataset]:
            try:
                release.wait(20)
                ds = Dataset()
                ds.QueryRetrieveLevel = "STUDY"
                ds.StudyInstanceUID = "1.2.826.0.1.3680043.2.1125.1"
                yield ds
            finally:
                finished.set()

    srv = our_server("DNETSLOW", Stuck())
    orthanc.add_modality("SLOW", "DNETSLOW", srv.port)
    started = time.monotonic()
    with pytest.raises(OrthancRestError) as failed:
        orthanc.query("SLOW", "Study", {"StudyInstanceUID": ""})
    assert time.monotonic() - started < 10
    assert "timeout" in failed.value.body.lower()
    release.set()
    assert finished.wait(10)
    wait_idle(srv)
    assert orthanc.echo("SLOW")
    assert [a["StudyInstanceUID"] for a in orthanc.query("SLOW", "Study", {"StudyInstanceUID": ""})] == [
        "1.2.826.0.1.3680043.2.1125.1"]
