"""Our Client (SCU) against dcmtk's dcmqrscp, the reference Query/Retrieve SCP.

dcmqrscp answers C-FIND from an index of the files it was sent and C-GET and
C-MOVE from those files. Each test preloads a small synthetic archive of known
patients, studies and series (fixed seeds; every test gets a store of its own)
and checks what comes back against the sources: identifier values, the
sub-operation counters and statuses, and the retrieved data sets byte for byte.

What dcmqrscp 3.6.7 does that the tests take into account:

* it returns only the keys its index holds (e.g. not SeriesDescription or
  NumberOfPatientRelatedStudies); other requested keys are left out;
* ``?`` matches one *byte* in the query's character set: in a UTF-8 query
  ``M?ller`` does not match "Müller" (findscu behaves the same), so ``?`` is
  used on ASCII names only;
* Study Root has no PATIENT level and Patient Root needs PatientID below it:
  dcmqrscp answers both 0xC000;
* it keeps the Explicit VR Little Endian that storescu sent it and sends that
  back when accepted, converting among the uncompressed syntaxes otherwise;
  dcmtk drops Data Set Trailing Padding and writes sequences with defined
  lengths when it re-encodes, so byte comparisons use files without either
  or account for them;
* it sends a Pending response after every C-GET/C-MOVE sub-operation and looks
  for a C-CANCEL between sub-operations.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dicomnet import Client, DimseStatusError, Server
from dicomnet.association import Association
from dicomnet.dicom import Dataset, read_file, write_file
from dicomnet.dicom.writer import encode_dataset
from dicomnet.dimse.retrieve import GET_MODELS, retrieve_contexts
from dicomnet.dimse.scu import query_dataset
from dicomnet.samples.synthetic import MULTIFRAME_SC_STORAGE as MULTIFRAME_SC, generate

from .peers import HOST, Dcmqrscp, Storescp, free_port

EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
SUCCESS, PENDING, CANCEL, WARNING = 0x0000, 0xFF00, 0xFE00, 0xB000
UNABLE_TO_PROCESS = 0xC000
MOVE_DESTINATION_UNKNOWN = 0xA801
SUB_OPERATIONS_FAILED = 0xA702   # Refused: out of resources, unable to perform sub-operations

Patient = tuple[str, str, str, str, list[tuple[str, str, str]]]
#: (PatientName, PatientID, PatientBirthDate, PatientSex, [(StudyDescription,
#: StudyDate, Modality), ...]); a study has 2 series of 2 images. All ISO_IR 100.
PATIENTS: list[Patient] = [
    ("Smith^John", "QR-SMITH", "19610402", "M", [("CT CHEST", "20190304", "CT"), ("CT HEAD", "20210715", "CT")]),
    ("Smythe^Jane", "QR-SMYTHE", "19750923", "F", [("MR BRAIN", "20200101", "MR")]),
    ("Müller^Anna", "QR-MUELLER", "19880117", "F", [("CT ABDOMEN", "20221231", "CT")]),
]


# ------------------------------------------------------------------ helpers
class Archive:
    """The files preloaded into dcmqrscp, and look-ups over their data sets."""

    def __init__(self, files: list[tuple[Path, Dataset]]) -> None:
        self.files = files

    @property
    def paths(self) -> list[Path]:
        return [p for p, _ in self.files]

    def select(self, **attrs: str) -> list[Dataset]:
        """The instances whose attributes equal ``attrs``."""
        return [ds for _, ds in self.files if all(str(ds.get(k)) == v for k, v in attrs.items())]

    def values(self, *keys: str, **attrs: str) -> set[tuple[str, ...]]:
        """The distinct ``keys`` values (as text) among :meth:`select`."""
        return {tuple(str(ds.get(k)) for k in keys) for ds in self.select(**attrs)}

    def by_uid(self) -> dict[str, Dataset]:
        return {str(ds.SOPInstanceUID): ds for _, ds in self.files}


def make_archive(folder: Path, patients: Sequence[Patient] = PATIENTS,
                 series: int = 2, instances: int = 2, rows: int = 64, cols: int = 64) -> Archive:
    """Synthetic images for ``patients``, written as Explicit VR LE files."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for p, (name, patient_id, birth_date, sex, studies) in enumerate(patients):
        for s, (description, date, modality) in enumerate(studies):
            for ds in generate(patients=1, studies=1, series=series, instances=instances, rows=rows, cols=cols,
                               modality=modality, seed=1000 + 10 * p + s):
                ds.PatientName = name
                ds.PatientID = patient_id
                ds.PatientBirthDate = birth_date
                ds.PatientSex = sex
                ds.StudyDescription = description
                ds.StudyDate = date
                path = folder / f"{ds.SOPInstanceUID}.dcm"
                write_file(path, ds, EXPLICIT)
                files.append((path, read_file(path)))
    return Archive(files)


def connect(qr: Dcmqrscp, **kw: Any) -> Association:
    """Our association to dcmqrscp; a short DIMSE timeout turns a hang into a failure."""
    return Client("DNETQR", dimse_timeout=10).associate(HOST, qr.port, qr.aet, **kw)


def matches(assoc: Association, query: dict[str, Any], *keys: str, model: str = "study") -> set[tuple[str, ...]]:
    """C-FIND ``query``; the ``keys`` values of each match, after checking the
    level echoed back, the Retrieve AE Title and the final status."""
    result = assoc.find(query, model=model)
    found = []
    for match in result:
        assert match.QueryRetrieveLevel == query["QueryRetrieveLevel"]
        assert match.RetrieveAETitle == "DCMQRSCP"
        found.append(tuple(str(match.get(k)) for k in keys))
    assert result.status == SUCCESS and result.done
    assert len(found) == len(set(found)) == result.matches, found   # no duplicate answers
    return set(found)


def same_bytes(received: Dataset, original: Dataset, ts: str | None = None) -> bool:
    """The data sets encode to the same bytes in ``ts`` (default: the received one's)."""
    ts = ts or received.transfer_syntax
    return bytes(encode_dataset(received, ts)) == bytes(encode_dataset(original, ts))


def assert_same_instance(received: Dataset, original: Dataset, ts: str | None = None) -> None:
    for key in ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "PatientID"):
        assert received.get(key) == original.get(key), key
    assert np.array_equal(received.pixel_array, original.pixel_array)
    assert same_bytes(received, original, ts)


def study_key(ds: Dataset) -> dict[str, str]:
    return {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": str(ds.StudyInstanceUID)}


class Sink:
    """A Server handler keeping each data set stored to it, with its context."""

    def __init__(self) -> None:
        self.received: list[tuple[str, Dataset, Any, str]] = []

    def on_store(self, ctx: Any, ds: Dataset) -> None:
        self.received.append((ctx.transfer_syntax, ds, ctx.command, ctx.calling_ae))


class TracedDcmqrscp(Dcmqrscp):
    """dcmqrscp logging at trace level, where it records the header of every PDU it reads."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(args=["--log-level", "trace"], **kw)

    def pdata_lengths(self) -> list[int]:
        """The length field of each P-DATA-TF PDU dcmqrscp has read so far."""
        text = self.log_path.read_text(errors="replace")
        return [int(n) for n in re.findall(r"Read PDU HEAD TCP: type: 04, length: (\d+)", text)]


@pytest.fixture
def archive(tmp_path: Path) -> Archive:
    return make_archive(tmp_path / "archive")


@pytest.fixture
def qrscp(make_dcmqrscp: Callable[..., Dcmqrscp], archive: Archive) -> Dcmqrscp:
    """dcmqrscp (max PDU 16384) holding ``archive``."""
    return make_dcmqrscp(preload=archive.paths)


# ---------------------------------------------------------------- C-FIND
def test_find_patient_level_universal_and_wildcard_matching(qrscp: Dcmqrscp, archive: Archive) -> None:
    """Patient Root, PATIENT level: empty keys are universal (every patient
    with its values), ``*`` and ``?`` select by name and ID."""
    with connect(qrscp) as assoc:
        keys = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex")
        query = {"QueryRetrieveLevel": "PATIENT", **{k: None for k in keys}}
        assert matches(assoc, query, *keys, model="patient") == archive.values(*keys)
        assert len(archive.values(*keys)) == len(PATIENTS)

        def ids(**key: str) -> set[tuple[str, ...]]:
            return matches(assoc, {"QueryRetrieveLevel": "PATIENT", "PatientID": None, **key}, "PatientID",
                           model="patient")

        found = {pattern: ids(PatientName=pattern) for pattern in
                 ("Sm*", "Sm?th^*", "Sm?th*", "*^Ja*", "Smythe^Jane", "Doe*")}
        found["QR-SM*"] = ids(PatientID="QR-SM*")
        found["QR-M?ELLER"] = ids(PatientID="QR-M?ELLER")
        assert found == {
            "Sm*": {("QR-SMITH",), ("QR-SMYTHE",)},
            "Sm?th^*": {("QR-SMITH",)},
            "Sm?th*": {("QR-SMITH",), ("QR-SMYTHE",)},
            "*^Ja*": {("QR-SMYTHE",)},
            "Smythe^Jane": {("QR-SMYTHE",)},
            "Doe*": set(),
            "QR-SM*": {("QR-SMITH",), ("QR-SMYTHE",)},
            "QR-M?ELLER": {("QR-MUELLER",)},
        }


def test_find_patient_level_in_utf8(qrscp: Dcmqrscp) -> None:
    """A query in UTF-8 (ISO_IR 192) with a non-ASCII value: dcmqrscp matches
    it against the Latin-1 file and answers in UTF-8, which we decode."""
    with connect(qrscp) as assoc:
        query = {"QueryRetrieveLevel": "PATIENT", "SpecificCharacterSet": "ISO_IR 192", "PatientName": "Mü*",
                 "PatientID": None}
        found = list(assoc.find(query, model="patient"))
        assert [(m.SpecificCharacterSet, str(m.PatientName), m.PatientID) for m in found] == [
            ("ISO_IR 192", "Müller^Anna", "QR-MUELLER")]
        # No character set in the query: the answer keeps the file's (Latin-1).
        query = {"QueryRetrieveLevel": "PATIENT", "PatientID": "QR-MUELLER", "PatientName": None}
        [match] = assoc.find(query, model="patient")
        assert match.SpecificCharacterSet == "ISO_IR 100" and str(match.PatientName) == "Müller^Anna"


def test_find_study_level_matching_study_root(qrscp: Dcmqrscp, archive: Archive) -> None:
    """Study Root, STUDY level across patients: universal, wildcard, date range
    and single-value matching, each answer's values compared with the files."""
    keys = ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "StudyDescription", "AccessionNumber",
            "StudyID")
    with connect(qrscp) as assoc:
        def find(**key: str | None) -> set[tuple[str, ...]]:
            query = {"QueryRetrieveLevel": "STUDY", **{k: None for k in keys}, **key}
            return matches(assoc, query, *keys)

        everything = archive.values(*keys)
        assert len(everything) == 4
        assert find() == everything
        assert find(StudyDescription="CT*") == {v for v in everything if v[4].startswith("CT")}
        assert find(StudyDescription="?R BRAIN") == archive.values(*keys, StudyDescription="MR BRAIN")
        assert find(StudyDate="20200101-20211231") == {v for v in everything if "20200101" <= v[3] <= "20211231"}
        assert find(StudyDate="-20191231") == archive.values(*keys, StudyDate="20190304")
        assert find(PatientID="QR-SMITH") == archive.values(*keys, PatientID="QR-SMITH")
        assert find(PatientName="Sm*", StudyDescription="*HEAD") == archive.values(*keys, StudyDescription="CT HEAD")
        assert find(StudyDate="20300101-") == set()


@pytest.mark.parametrize("model", ["patient", "study"])
def test_find_walks_study_series_image_levels(qrscp: Dcmqrscp, archive: Archive, model: str) -> None:
    """STUDY -> SERIES -> IMAGE for every study, in both models (Patient Root
    adds the PatientID the hierarchy needs): each level's answers are exactly
    the archive's entities with their values."""
    with connect(qrscp) as assoc:
        for patient_id in sorted({pid for (pid,) in archive.values("PatientID")}):
            above = {"PatientID": patient_id} if model == "patient" else {}
            study_keys = ("StudyInstanceUID", "StudyDate", "StudyDescription")
            studies = matches(assoc, {"QueryRetrieveLevel": "STUDY", "PatientID": patient_id,
                                      **{k: None for k in study_keys}}, *study_keys, model=model)
            assert studies == archive.values(*study_keys, PatientID=patient_id)
            for study_uid, *_ in studies:
                series_keys = ("SeriesInstanceUID", "Modality", "SeriesNumber")
                series = matches(assoc, {"QueryRetrieveLevel": "SERIES", **above, "StudyInstanceUID": study_uid,
                                         **{k: None for k in series_keys}}, *series_keys, model=model)
                assert series == archive.values(*series_keys, StudyInstanceUID=study_uid)
                assert len(series) == 2
                for series_uid, *_ in series:
                    image_keys = ("SOPInstanceUID", "InstanceNumber")
                    images = matches(assoc, {"QueryRetrieveLevel": "IMAGE", **above, "StudyInstanceUID": study_uid,
                                             "SeriesInstanceUID": series_uid, **{k: None for k in image_keys}},
                                     *image_keys, model=model)
                    assert images == archive.values(*image_keys, SeriesInstanceUID=series_uid)
                    assert len(images) == 2


def test_find_refusals_raise_the_status_and_keep_the_association(qrscp: Dcmqrscp) -> None:
    """Identifiers dcmqrscp cannot process (no PATIENT level in Study Root,
    Patient Root without PatientID, an unknown level) raise DimseStatusError
    with its status; the association carries on."""
    with connect(qrscp) as assoc:
        for query, model in [
            ({"QueryRetrieveLevel": "PATIENT", "PatientName": None}, "study"),
            ({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": None}, "patient"),
            ({"QueryRetrieveLevel": "VOLUME", "StudyInstanceUID": None}, "study"),
        ]:
            result = assoc.find(query, model=model)
            with pytest.raises(DimseStatusError) as info:
                list(result)
            assert info.value.status == UNABLE_TO_PROCESS and result.status == UNABLE_TO_PROCESS, query
            assert result.done and result.matches == 0
        assert assoc.echo() == SUCCESS
        assert len(matches(assoc, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": None},
                           "StudyInstanceUID")) == 4


# ------------------------------------------------- max PDU and fragmenting
@pytest.mark.parametrize("max_pdu", [4096, 16384, 131072])
def test_requests_fragmented_to_dcmqrscp_max_pdu(tmp_path: Path, max_pdu: int) -> None:
    """dcmqrscp offers a small maximum PDU (dcmtk's range is 4096..131072): our
    C-STOREs of 128 KiB data sets and a C-FIND identifier of ~27 KB (a list of
    UIDs) must arrive in P-DATA-TF PDUs no longer than it, and reassemble to
    what we sent -- checked in dcmqrscp's own log and by getting the files back."""
    archive = make_archive(tmp_path / "big", PATIENTS[1:2], series=1, instances=3, rows=256, cols=256)
    with TracedDcmqrscp(max_pdu=max_pdu) as qr:
        with connect(qr) as assoc:
            assert assoc.negotiated.peer_max_pdu == max_pdu
            assert [status for _, status, _ in assoc.store_many(archive.paths)] == [SUCCESS] * 3
            studies = sorted({str(ds.StudyInstanceUID) for _, ds in archive.files})
            uid_list = [f"2.25.{n}{'7' * 38}" for n in range(100, 700)] + studies
            identifier = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "\\".join(uid_list),
                          "PatientID": None}
            identifier_bytes = len(encode_dataset(query_dataset(identifier), EXPLICIT))
            assert identifier_bytes > 27_000
            found = matches(assoc, identifier, "StudyInstanceUID", "PatientID")
            assert found == {(uid, "QR-SMYTHE") for uid in studies}
        lengths = qr.pdata_lengths()
        sent = identifier_bytes + sum(len(encode_dataset(ds, EXPLICIT)) for _, ds in archive.files)
        assert lengths and max(lengths) <= max_pdu, (max_pdu, max(lengths))
        assert sum(lengths) > sent          # the log saw all of it (and the PDV headers)
        with connect(qr, for_get=True) as assoc:
            got = list(assoc.get(study_key(archive.files[0][1])))
        originals = archive.by_uid()
        assert sorted(str(ds.SOPInstanceUID) for ds in got) == sorted(originals)
        for ds in got:
            assert_same_instance(ds, originals[str(ds.SOPInstanceUID)])


# ------------------------------------------------------------------ C-GET
@pytest.mark.parametrize("max_pdu", [None, 4096, 0], ids=["default", "4096", "unlimited"])
def test_get_study(qrscp: Dcmqrscp, archive: Archive, max_pdu: int | None) -> None:
    """C-GET of a study with our maximum PDU at its default, small (dcmqrscp
    cuts each data set into many PDVs) and unlimited: every instance arrives
    once, in the syntax dcmqrscp stored it in, byte for byte, with the counters
    of each Pending response and the final status."""
    first = archive.files[0][1]
    originals = {str(ds.SOPInstanceUID): ds for ds in archive.select(StudyInstanceUID=str(first.StudyInstanceUID))}
    assert len(originals) == 4
    with connect(qrscp, for_get=True, max_pdu=max_pdu) as assoc:
        result = assoc.get(study_key(first))
        got = list(result)
        assert result.status == SUCCESS and result.done and not result.cancelled
        assert (result.completed, result.failed, result.warning, result.remaining) == (4, 0, 0, 0)
        assert result.received == 4 and result.failed_instances == []
        assert result.progress is not None and result.progress.status == PENDING
        assert result.progress.completed == 4
        assert sorted(str(ds.SOPInstanceUID) for ds in got) == sorted(originals)
        for ds in got:
            assert ds.transfer_syntax == EXPLICIT
            assert_same_instance(ds, originals[str(ds.SOPInstanceUID)])
        assert assoc.echo() == SUCCESS


@pytest.mark.parametrize("max_pdu", [None, 4096], ids=["default", "4096"])
def test_get_patient_root_to_files_with_large_max_pdu(make_dcmqrscp: Callable[..., Dcmqrscp], archive: Archive,
                                                      tmp_path: Path, max_pdu: int | None) -> None:
    """dcmqrscp at dcmtk's largest maximum PDU (131072); Patient Root C-GET of a
    patient's two studies, streamed to files (each PDV written as it comes,
    with ours at its default or small): one Part 10 file per instance, named by
    its UID, with a File Meta that matches and the data set unchanged."""
    qr = make_dcmqrscp(preload=archive.paths, max_pdu=131072)
    out = tmp_path / "out"
    originals = {str(ds.SOPInstanceUID): ds for ds in archive.select(PatientID="QR-SMITH")}
    assert len(originals) == 8
    with connect(qr, for_get=True, max_pdu=max_pdu) as assoc:
        result = assoc.get({"QueryRetrieveLevel": "PATIENT", "PatientID": "QR-SMITH"}, model="patient",
                           store_to=out)
        paths = [Path(p) for p in result]
        assert result.status == SUCCESS and result.completed == 8 and result.failed == 0
    assert sorted(paths) == sorted(out.iterdir())
    assert sorted(p.name for p in paths) == sorted(f"{uid}.dcm" for uid in originals)
    for path in paths:
        ds = read_file(path)
        meta = ds.file_meta
        assert meta is not None
        assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID == path.stem
        assert meta.MediaStorageSOPClassUID == CT and meta.TransferSyntaxUID == EXPLICIT
        assert_same_instance(ds, originals[path.stem])


def test_get_converts_to_the_only_syntax_offered(qrscp: Dcmqrscp, archive: Archive) -> None:
    """Only Implicit VR LE offered for CT: dcmqrscp converts its Explicit VR
    files, and the bytes are what our own encoder makes of the sources."""
    first = archive.files[0][1]
    originals = {str(ds.SOPInstanceUID): ds for ds in archive.select(StudyInstanceUID=str(first.StudyInstanceUID))}
    contexts = [VERIFICATION, GET_MODELS["study"], (CT, [IMPLICIT])]
    with connect(qrscp, for_get=True, contexts=contexts) as assoc:
        result = assoc.get(study_key(first))
        got = list(result)
        assert result.status == SUCCESS and result.completed == len(originals)
    assert sorted(str(ds.SOPInstanceUID) for ds in got) == sorted(originals)
    for ds in got:
        assert ds.transfer_syntax == IMPLICIT
        assert_same_instance(ds, originals[str(ds.SOPInstanceUID)], IMPLICIT)


def test_get_pydicom_files(make_dcmqrscp: Callable[..., Dcmqrscp], testdata: Callable[[str], str]) -> None:
    """Real-world files at IMAGE level: Explicit LE with trailing padding, Big
    Endian and Implicit VR multi-frame. dcmqrscp stores and returns them in
    Explicit VR LE; its conversion must equal ours, and the pixels the source's."""
    names = ["CT_small.dcm", "MR_small_bigendian.dcm", "rtdose.dcm"]
    sources = [read_file(testdata(n)) for n in names]
    qr = make_dcmqrscp(preload=[testdata(n) for n in names])
    with connect(qr, for_get=True) as assoc:
        for name, src in zip(names, sources):
            key = {"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": str(src.StudyInstanceUID),
                   "SeriesInstanceUID": str(src.SeriesInstanceUID), "SOPInstanceUID": str(src.SOPInstanceUID)}
            result = assoc.get(key)
            [ds] = list(result)
            assert result.status == SUCCESS and result.completed == 1, name
            assert ds.transfer_syntax == EXPLICIT and ds.SOPInstanceUID == src.SOPInstanceUID, name
            assert np.array_equal(ds.pixel_array, src.pixel_array), name
            if 0xFFFCFFFC in src:
                # dcmtk drops Data Set Trailing Padding (PS3.10 7.2 allows it).
                assert 0xFFFCFFFC not in ds
                del src[0xFFFCFFFC]
            assert same_bytes(ds, src, EXPLICIT), name


def test_get_with_retrieve_contexts_for_a_class_outside_the_default_proposal(
        make_dcmqrscp: Callable[..., Dcmqrscp], tmp_path: Path) -> None:
    """Multi-frame Grayscale Word SC is not in the default proposal (by design,
    see dicomnet.types.sop_classes); ``retrieve_contexts`` and its role
    selections let dcmqrscp send it, frames intact."""
    folder = tmp_path / "mf"
    folder.mkdir()
    originals = {}
    for ds in generate(patients=1, studies=1, series=1, instances=2, rows=16, cols=16, frames=3, seed=77):
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        write_file(path, ds, EXPLICIT)
        originals[str(ds.SOPInstanceUID)] = read_file(path)
    first = next(iter(originals.values()))
    assert first.SOPClassUID == MULTIFRAME_SC
    qr = make_dcmqrscp(preload=sorted(folder.iterdir()))
    contexts, roles = retrieve_contexts([MULTIFRAME_SC], models=["study"])
    with connect(qr, contexts=contexts, role_selections=roles) as assoc:
        result = assoc.get(study_key(first))
        got = list(result)
        assert result.status == SUCCESS and result.completed == 2
    assert sorted(str(ds.SOPInstanceUID) for ds in got) == sorted(originals)
    for ds in got:
        assert ds.pixel_array.shape == (3, 16, 16)
        assert_same_instance(ds, originals[str(ds.SOPInstanceUID)])


def test_get_with_a_failing_sub_operation_ends_with_a_warning(qrscp: Dcmqrscp, archive: Archive,
                                                              tmp_path: Path) -> None:
    """A file we cannot write (``store_to`` raises OSError for one instance) is
    answered Out of Resources; dcmqrscp goes on and ends with 0xB000 listing
    that instance, which we keep in ``status`` (a warning, not raised)."""
    first = archive.files[0][1]
    uids = sorted(str(ds.SOPInstanceUID) for ds in archive.select(StudyInstanceUID=str(first.StudyInstanceUID)))
    bad = uids[1]
    out = tmp_path / "out"
    out.mkdir()

    def target(command: Any) -> Path:
        uid = str(command["AffectedSOPInstanceUID"])
        if uid == bad:
            raise OSError("no space left (test)")
        return out / f"{uid}.dcm"

    with connect(qrscp, for_get=True) as assoc:
        result = assoc.get(study_key(first), store_to=target)
        paths = [Path(p) for p in result]
        assert result.status == WARNING
        assert (result.completed, result.failed, result.warning, result.received) == (3, 1, 0, 3)
        assert result.failed_instances == [bad]
        assert assoc.echo() == SUCCESS
    assert sorted(p.stem for p in paths) == sorted(p.stem for p in out.iterdir()) == [u for u in uids if u != bad]


def test_get_without_a_storage_context_fails_every_sub_operation(qrscp: Dcmqrscp, archive: Archive) -> None:
    """No CT context to receive on: dcmqrscp fails each sub-operation and
    answers 0xA702 with the Failed SOP Instance UID List; we raise
    DimseStatusError with that status, and the association carries on."""
    first = archive.files[0][1]
    uids = sorted(str(ds.SOPInstanceUID) for ds in archive.select(StudyInstanceUID=str(first.StudyInstanceUID)))
    with connect(qrscp, for_get=True, contexts=[VERIFICATION, GET_MODELS["study"], MR]) as assoc:
        result = assoc.get(study_key(first))
        with pytest.raises(DimseStatusError) as info:
            list(result)
        assert info.value.status == SUB_OPERATIONS_FAILED == result.status
        assert (result.completed, result.failed, result.received) == (0, len(uids), 0)
        assert sorted(result.failed_instances) == uids
        assert assoc.echo() == SUCCESS


# ----------------------------------------------------------------- C-MOVE
@pytest.mark.parametrize("model", ["study", "patient"])
def test_move_study_to_our_server(make_dcmqrscp: Callable[..., Dcmqrscp], archive: Archive,
                                  our_server: Callable[[str, Any], Server], model: str) -> None:
    """C-MOVE of a study (MR) to our Server, registered in dcmqrscp's host table:
    one Pending response per sub-operation with consistent counters, final
    success, and every instance received unchanged, naming us as the move
    originator."""
    sink = Sink()
    dest = our_server("DNETDEST", sink)
    qr = make_dcmqrscp(preload=archive.paths, move_destinations={"DNETDEST": dest.port})
    first = archive.select(PatientID="QR-SMYTHE")[0]
    assert first.SOPClassUID == MR
    originals = {str(ds.SOPInstanceUID): ds for ds in archive.select(StudyInstanceUID=str(first.StudyInstanceUID))}
    n = len(originals)
    key = study_key(first) | ({"PatientID": str(first.PatientID)} if model == "patient" else {})
    with connect(qr) as assoc:
        result = assoc.move(key, "DNETDEST", model=model)
        progress = list(result)
        assert [p.status for p in progress] == [PENDING] * n
        assert [(p.completed, p.remaining, p.failed, p.warning) for p in progress] == [
            (i, n - i, 0, 0) for i in range(1, n + 1)]
        assert result.status == SUCCESS and result.done
        assert (result.completed, result.failed, result.warning, result.remaining) == (n, 0, 0, 0)
        assert result.failed_instances == []
        assert assoc.echo() == SUCCESS
    assert sorted(str(ds.SOPInstanceUID) for _, ds, _, _ in sink.received) == sorted(originals)
    for ts, ds, command, calling_ae in sink.received:
        assert calling_ae == "DCMQRSCP"
        assert command.get("MoveOriginatorApplicationEntityTitle") == "DNETQR"
        assert command.get("MoveOriginatorMessageID") == result.message_id
        assert_same_instance(ds, originals[str(ds.SOPInstanceUID)], ts)


def test_move_series_to_storescp(make_dcmqrscp: Callable[..., Dcmqrscp], make_storescp: Callable[..., Storescp],
                                 archive: Archive) -> None:
    """C-MOVE of one SERIES to dcmtk's storescp: the counters, and the files it
    wrote hold our data sets unchanged."""
    scp = make_storescp(aet="STORESCP")
    qr = make_dcmqrscp(preload=archive.paths, move_destinations={"STORESCP": scp.port})
    first = archive.files[0][1]
    originals = {str(ds.SOPInstanceUID): ds for ds in archive.select(SeriesInstanceUID=str(first.SeriesInstanceUID))}
    key = {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": str(first.StudyInstanceUID),
           "SeriesInstanceUID": str(first.SeriesInstanceUID)}
    with connect(qr) as assoc:
        result = assoc.move(key, "STORESCP")
        assert result.result() == SUCCESS
        assert (result.completed, result.failed, result.remaining) == (len(originals), 0, 0)
    received = [read_file(p) for p in scp.wait_for_files(len(originals))]
    assert sorted(str(ds.SOPInstanceUID) for ds in received) == sorted(originals)
    for ds in received:
        assert_same_instance(ds, originals[str(ds.SOPInstanceUID)])


def test_move_with_refused_sub_operations_ends_with_a_warning(make_dcmqrscp: Callable[..., Dcmqrscp],
                                                              archive: Archive,
                                                              our_server: Callable[[str, Any], Server]) -> None:
    """Our Server refuses the odd-numbered instances (0xA700): the Pending
    counters count them as failed, the final status is 0xB000 with exactly
    those in the Failed SOP Instance UID List, kept in ``status``, not raised."""

    class Picky(Sink):
        def on_store(self, ctx: Any, ds: Dataset) -> int:
            super().on_store(ctx, ds)
            return 0xA700 if int(ds.InstanceNumber) % 2 else SUCCESS

    sink = Picky()
    dest = our_server("PICKY", sink)
    qr = make_dcmqrscp(preload=archive.paths, move_destinations={"PICKY": dest.port})
    first = archive.files[0][1]
    instances = archive.select(StudyInstanceUID=str(first.StudyInstanceUID))
    refused = sorted(str(ds.SOPInstanceUID) for ds in instances if int(ds.InstanceNumber) % 2)
    assert 0 < len(refused) < len(instances)
    with connect(qr) as assoc:
        result = assoc.move(study_key(first), "PICKY")
        progress = list(result)
        assert [p.completed + p.failed for p in progress] == list(range(1, len(instances) + 1))
        assert result.status == WARNING
        assert (result.completed, result.failed, result.remaining) == (len(instances) - len(refused), len(refused), 0)
        assert sorted(result.failed_instances) == refused
    assert len(sink.received) == len(instances)


def test_move_to_an_unknown_destination_raises(qrscp: Dcmqrscp, archive: Archive) -> None:
    """A destination AE not in dcmqrscp's host table: 0xA801 (Move Destination
    Unknown) raised as DimseStatusError at once -- no hang -- and the
    association carries on."""
    first = archive.files[0][1]
    with connect(qrscp) as assoc:
        started = time.monotonic()
        result = assoc.move(study_key(first), "NOWHERE")
        with pytest.raises(DimseStatusError) as info:
            list(result)
        assert time.monotonic() - started < 5
        assert info.value.status == MOVE_DESTINATION_UNKNOWN == result.status
        assert "destination unknown" in str(info.value).lower()
        assert result.done and not result.completed
        assert assoc.echo() == SUCCESS
        with pytest.raises(DimseStatusError) as info:   # result() raises too
            assoc.move(study_key(first), "NOWHERE").result()
        assert info.value.status == MOVE_DESTINATION_UNKNOWN
        assert len(matches(assoc, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": None},
                           "StudyInstanceUID")) == 4


def test_move_to_an_unreachable_destination_fails_every_sub_operation(make_dcmqrscp: Callable[..., Dcmqrscp],
                                                                      archive: Archive) -> None:
    """A known destination where nothing listens: dcmqrscp cannot open the
    sub-association and answers 0xA702 listing every instance as failed."""
    qr = make_dcmqrscp(preload=archive.paths, move_destinations={"DEAD": free_port()})
    first = archive.files[0][1]
    uids = sorted(str(ds.SOPInstanceUID) for ds in archive.select(StudyInstanceUID=str(first.StudyInstanceUID)))
    with connect(qr) as assoc:
        result = assoc.move(study_key(first), "DEAD")
        with pytest.raises(DimseStatusError) as info:
            list(result)
        assert info.value.status == SUB_OPERATIONS_FAILED == result.status
        assert (result.completed, result.failed) == (0, len(uids))
        assert sorted(result.failed_instances) == uids
        assert assoc.echo() == SUCCESS


# --------------------------------------------------------------- C-CANCEL
@pytest.fixture
def long_series(make_dcmqrscp: Callable[..., Dcmqrscp], tmp_path: Path) -> tuple[Dcmqrscp, Archive]:
    """dcmqrscp with one series of 40 small images (many answers to cancel)."""
    archive = make_archive(tmp_path / "long", PATIENTS[1:2], series=1, instances=40, rows=8, cols=8)
    return make_dcmqrscp(preload=archive.paths), archive


def test_cancel_get_midway(long_series: tuple[Dcmqrscp, Archive]) -> None:
    """Leaving a C-GET loop after the first instance: C-CANCEL goes out, the
    rest is drained (dcmqrscp waits for each C-STORE-RSP, so at most one more
    sub-operation completes), status Cancel, and the association carries on."""
    qr, archive = long_series
    first = archive.files[0][1]
    with connect(qr, for_get=True) as assoc:
        result = assoc.get(study_key(first))
        for _ in result:
            break
        assert result.done and result.cancelled
        assert result.status == CANCEL and result.received == 1
        assert result.completed in (1, 2) and result.remaining == 40 - result.completed
        assert assoc.echo() == SUCCESS
        again = assoc.get(study_key(first))
        assert len(list(again)) == 40 and again.status == SUCCESS and again.completed == 40


def test_cancel_find_midway_and_after_the_last_match(long_series: tuple[Dcmqrscp, Archive]) -> None:
    """Leaving a C-FIND loop early (C-CANCEL, drained) and after its only match
    (the C-CANCEL arrives after dcmqrscp finished; it must ignore it): both
    end without hanging and the association carries on."""
    qr, archive = long_series
    first = archive.files[0][1]
    images = {"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": str(first.StudyInstanceUID),
              "SeriesInstanceUID": str(first.SeriesInstanceUID), "SOPInstanceUID": None}
    with connect(qr) as assoc:
        result = assoc.find(images)
        for _ in result:
            break
        assert result.done and result.cancelled
        # dcmqrscp looks for the C-CANCEL between answers; if all 40 were out
        # before it arrived, the final status is Success instead.
        assert result.status == CANCEL and result.matches < 40 or result.status == SUCCESS and result.matches == 40
        assert assoc.echo() == SUCCESS
        assert len(matches(assoc, images, "SOPInstanceUID")) == 40

        single = {**images, "SOPInstanceUID": str(first.SOPInstanceUID)}
        result = assoc.find(single)
        for match in result:
            assert match.SOPInstanceUID == first.SOPInstanceUID
            break
        assert result.done and result.cancelled and result.status in (SUCCESS, CANCEL) and result.matches == 1
        assert assoc.echo() == SUCCESS
        assert matches(assoc, single, "SOPInstanceUID") == {(str(first.SOPInstanceUID),)}
