"""Differential Query/Retrieve: the sample server, dcmqrscp and Orthanc on the same files.

One corpus of Part 10 files is loaded into three Q/R SCPs -- dicomnet's sample
server (:class:`~dicomnet.samples.server.SampleHandler` over an
:class:`~dicomnet.samples.archive.Archive` read from the files, in process,
with the CLI's presentation contexts), dcmtk's ``dcmqrscp`` (sent the files
with storescu) and Orthanc (sent them over REST) -- and our :class:`Client`
asks all three the same questions: a grid of ~180 C-FIND identifiers at every
level (wild cards in PN/LO/SH/CS keys, case, empty and missing values,
ranges of dates and times, lists of UIDs, Modalities in Study, multi-valued
keys, non-ASCII keys in ISO_IR 100 and ISO_IR 192), universal matching with
return keys (and the counts each SCP computes), sequence matching, hierarchy
violations, and C-MOVE / C-GET with lists of UIDs at the STUDY, SERIES and
IMAGE levels (the instances delivered and the sub-operation counters).

The corpus: :func:`~dicomnet.samples.synthetic.generate` studies (Latin-1 and
UTF-8 patients) plus hand-made studies with names with five ``^`` components,
upper and lower case twins, empty Accession Number / Study Description /
Patient's Name, a study with no Study Time, Accession Number, Study
Description or Study ID, dates at the edges of ranges, times with fractions
and partial times (``1010``, ``0930``), accented names in ISO_IR 100 and
ISO_IR 192, leading spaces in an SH, studies with two and three modalities,
and a Procedure Code Sequence.

Every answer is compared, as the set of matched entities (by unique key), with
an *oracle*: a small independent implementation of PS3.4 C.2.2.2 over the
corpus, parameterised by a :class:`Profile` -- the choices the standard
leaves to the SCP, and the documented quirks of each peer. The sample
server's profile is the standard plus dicomnet's documented choices.

Choices the standard leaves open (each SCP compared modulo its choice):

* PN case (C.2.2.2.1.1, C.2.2.2.4; C.5.1.1 "literal matching of person names
  with case sensitivity unspecified"): the sample server and Orthanc ignore
  case in PN keys (both fold non-ASCII letters too, neither ignores accents);
  dcmqrscp is case-sensitive. Other VRs are case-sensitive everywhere.
* Single value matching of TM (C.2.2.2.1.3: "implementation dependent"), and
  partial times as range bounds: the sample server reads a partial time as
  the span it denotes (PS3.5: the value is not precise beyond the components
  given), so ``1010`` matches 10:10:10 and ``-09`` includes 09:30; dcmqrscp
  reads it as the instant padded with zeros (``1010`` == ``101000``);
  Orthanc compares TM strings (below).
* A key with several values other than a UID list (``CT\\MR``, a Patient ID
  list): C.2.2.2 defines several values only for List of UID Matching. The
  sample server and Orthanc match any of them; dcmqrscp takes the value
  literally (no match).
* ``""`` (Empty Value Matching, defined in current editions of PS3.4
  C.2.2.2): the sample server matches empty and missing values; dcmqrscp
  3.6.7 and Orthanc 1.10 predate it and look for the two characters.
* Optional keys (C.2.2.1.3): dcmqrscp supports neither matching nor existence
  of Modalities in Study, SOP Classes in Study, the Number of ... Related
  counts, Series Description / Date / Time, Body Part Examined, SOP Class
  UID, Content Date, Rows, Image Type and Procedure Code Sequence (ignored,
  not returned); the others support them all.
* Retrieve AE Title aside, which keys come back besides those asked for:
  Orthanc adds Specific Character Set (its DefaultEncoding, Latin-1) to every
  answer, the others only when a value needs it.
* Identifiers that break the hierarchical rules of C.4.1.2.1 / C.4.2.2.1
  (no unique key above the level, a list above the level, PATIENT level in
  Study Root): the sample server refuses them (0xC000; 0xA900 for a level the
  model lacks), dcmqrscp refuses a C-FIND (0xC000) and ends a C-MOVE or C-GET
  with Success and no sub-operation, Orthanc runs them as relational queries
  and retrievals without that having been negotiated (C.4.1.3.2, C.4.2.3.2
  say it must be).
* Combined date-time matching (C.2.2.2.5.4) needs extended negotiation
  (C.5.1.1): none of the three accepts it, so Study Date and Study Time are
  matched independently by all.

Peer quirks (the standard says otherwise; the tests expect them as they are):

* Orthanc does not match a missing attribute with ``*`` (C.2.2.2.4 note 1:
  ``*`` is Universal Matching) -- a study without Accession Number drops out
  of ``AccessionNumber=*``;
* Orthanc matches ``?`` against one byte of UTF-8, whatever the character
  sets, and dcmqrscp does the same when the query or the file is in
  ISO_IR 192: ``T?TE*`` misses "TÊTE SANS IV" (C.2.2.2.4: any single
  character; for LO this is not implementation dependent);
* Orthanc compares TM values as strings, in ranges too: ``0930-0930`` misses
  ``093000`` (C.2.2.2.1.3 note 2: range matching is always by meaning);
* Orthanc keeps leading spaces of SH values significant: Accession Number
  "  ACC-006" is not matched by ``ACC-006`` (PS3.5 6.2: SH may be padded
  with leading spaces);
* Orthanc never matches a value in a Number of ... Related key although it
  returns them (C.2.2.1.3: an unsupported optional key is ignored, not failed);
* Orthanc refuses (0xC000) a wild card in a UID key or a TM key, fails a
  whole C-GET when one UID of a list is unknown and a C-MOVE whose UIDs are
  all unknown, and ignores the unique keys above the retrieve level (a series
  of another study, an instance of another series, a study of another
  patient are sent);
* dcmqrscp applies a non-unique key in a C-MOVE identifier as a filter
  (C.4.2.3.1: only the unique keys select what is moved).

dicomnet bugs this file found (fixed; their tests now pass):

* C-FIND responses of the sample server carried no Retrieve AE Title (nor
  File-Set ID/UID): C.4.1.1.3.2 requires one of them in every response;
* a wild card made of ``*`` only but longer than one (``**``) did not match
  a zero-length or missing value, although ``*`` matches any sequence of
  characters "including a zero length value" (C.2.2.2.4);
* a Required Key of zero length was not treated as unknown: C.2.2.1.2 says
  matching against it "shall be considered a successful match" (dcmqrscp and
  Orthanc do not do it either: the grid's expectations for them say so).
"""
from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from dicomnet import Client, DimseStatusError, Server
from dicomnet.association import Association
from dicomnet.cli.store_scp import storage_contexts
from dicomnet.dicom import Dataset, read_file, write_file
from dicomnet.pdu.items import SOPClassExtendedNegotiation
from dicomnet.samples.archive import Archive
from dicomnet.samples.server import QR_SOP_CLASSES, SampleHandler
from dicomnet.samples.synthetic import derived_uid, generate

from .peers import HOST, Dcmqrscp, Orthanc, require

EXPLICIT = "1.2.840.10008.1.2.1"
CT_IMAGE, MR_IMAGE = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
SUCCESS, UNABLE_TO_PROCESS, DOES_NOT_MATCH = 0x0000, 0xC000, 0xA900
UNKNOWN_UID = "1.2.826.0.1.3680043.9.7433.999"
DEST_AE = "DNETDEST"

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
UNIQUE = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
          "IMAGE": "SOPInstanceUID"}
#: The attributes kept per level (a study also holds its patient's) and their VRs.
LEVEL_KEYS = {
    "PATIENT": ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"),
    "STUDY": ("StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyInstanceUID",
              "ReferringPhysicianName", "StudyDescription"),
    "SERIES": ("Modality", "SeriesNumber", "SeriesInstanceUID", "SeriesDescription", "SeriesDate",
               "SeriesTime", "BodyPartExamined"),
    "IMAGE": ("SOPInstanceUID", "InstanceNumber", "SOPClassUID", "ContentDate", "Rows", "ImageType"),
}
VR = {
    "PatientName": "PN", "PatientID": "LO", "PatientBirthDate": "DA", "PatientSex": "CS",
    "StudyDate": "DA", "StudyTime": "TM", "AccessionNumber": "SH", "StudyID": "SH",
    "StudyInstanceUID": "UI", "ReferringPhysicianName": "PN", "StudyDescription": "LO",
    "Modality": "CS", "SeriesNumber": "IS", "SeriesInstanceUID": "UI", "SeriesDescription": "LO",
    "SeriesDate": "DA", "SeriesTime": "TM", "BodyPartExamined": "CS", "SOPInstanceUID": "UI",
    "InstanceNumber": "IS", "SOPClassUID": "UI", "ContentDate": "DA", "Rows": "US", "ImageType": "CS",
    "ModalitiesInStudy": "CS", "SOPClassesInStudy": "UI", "NumberOfPatientRelatedStudies": "IS",
    "NumberOfPatientRelatedSeries": "IS", "NumberOfPatientRelatedInstances": "IS",
    "NumberOfStudyRelatedSeries": "IS", "NumberOfStudyRelatedInstances": "IS",
    "NumberOfSeriesRelatedInstances": "IS",
}
WILDCARD_VRS = {"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"}
#: Required Keys of each level (PS3.4 Tables C.6-1..C.6-5); PN and ID only at STUDY in Study Root.
REQUIRED = {"PATIENT": {"PatientName"}, "STUDY": {"StudyDate", "StudyTime", "AccessionNumber", "StudyID",
                                                    "PatientName", "PatientID"},
            "SERIES": {"Modality", "SeriesNumber"}, "IMAGE": {"InstanceNumber"}}


# ------------------------------------------------------------------ the corpus
@dataclass(frozen=True)
class HandMade:
    """One hand-made study: its patient, study values (None: attribute left out) and series modalities."""

    seed: int
    charset: str
    name: str
    patient_id: str
    date: str
    time: str | None
    description: str | None
    accession: str | None
    modalities: tuple[str, ...]
    drop: tuple[str, ...] = ()
    procedures: tuple[tuple[str, str], ...] = ()


HAND_MADE = [
    HandMade(101, "ISO_IR 100", "Smith^John", "HM-SMITH", "20200101", "000000", "CT CHEST", "ACC-001", ("CT", "MR")),
    HandMade(102, "ISO_IR 100", "SMITH^JOHN", "HM-SMITH-UP", "20201231", "235959.999", "ct chest", "acc-001", ("MR",)),
    HandMade(103, "ISO_IR 100", "Doe^Jane^Q^Dr^Jr", "HM-DOE-5", "20210101", "101010.123456", "MR BRAIN W/O",
             "ACC-002", ("MR", "MR")),
    HandMade(104, "ISO_IR 100", "Doe^Jane", "HM-DOE", "19991231", "1010", "", "", ("CT", "CT")),
    HandMade(105, "ISO_IR 100", "Cruz^María José", "HM-CRUZ", "20200615", "101010", "CT ABDOMEN ", "ACC-003",
             ("CT", "MR", "PT")),
    HandMade(106, "ISO_IR 192", "Wójcik^Zoë", "HM-WOJCIK", "20200616", "101010.5", "MR SPINE", "ACC-004", ("MR",)),
    HandMade(107, "ISO_IR 100", "Nobody^Known", "HM-MISSING", "20230303", None, None, None, ("CT",),
             drop=("PatientBirthDate", "PatientSex", "ReferringPhysicianName", "StudyID", "SeriesNumber")),
    HandMade(108, "ISO_IR 100", "Smith^John", "HM-SMITH", "20220202", "120000", "CT HEAD", "ACC-005", ("CT",)),
    HandMade(109, "ISO_IR 100", "Roe^Ann", "HM-ROE", "20190704", "0930", "TÊTE SANS IV", "  ACC-006", ("CT",),
             procedures=(("P1", "CT HEAD"), ("P2", "CT NECK"))),
    HandMade(110, "ISO_IR 100", "", "HM-NONAME", "20190705", "093000", "TETE", "ACC-007", ("CT",)),
]


def hand_made(spec: HandMade) -> Iterator[Dataset]:
    """Two small instances per series of ``spec``, patient and study values alike in all."""
    for e, modality in enumerate(spec.modalities):
        source = "MR" if modality == "MR" else "CT"
        for i, ds in enumerate(generate(patients=1, studies=1, series=1, instances=2, rows=8, cols=8,
                                        modality=source, seed=spec.seed * 10 + e)):
            ds.SpecificCharacterSet = spec.charset
            ds.PatientName = spec.name
            ds.PatientID = spec.patient_id
            ds.PatientBirthDate = "19700101"
            ds.PatientSex = "O"
            ds.ReferringPhysicianName = "Ref^Doc"
            ds.StudyInstanceUID = derived_uid(spec.seed, "diff-study")
            ds.StudyID = str(spec.seed)
            ds.SeriesInstanceUID = derived_uid(spec.seed, "diff-series", e)
            ds.SOPInstanceUID = derived_uid(spec.seed, "diff-instance", e, i)
            ds.SeriesNumber = e + 1
            ds.Modality = modality
            for keyword, value in (("StudyDate", spec.date), ("StudyTime", spec.time),
                                   ("StudyDescription", spec.description), ("AccessionNumber", spec.accession)):
                if value is None:
                    del ds[keyword]
                else:
                    ds.set(keyword, value)
            if spec.procedures:
                items = []
                for code, meaning in spec.procedures:
                    item = Dataset()
                    item.CodeValue = code
                    item.CodingSchemeDesignator = "99DNET"
                    item.CodeMeaning = meaning
                    items.append(item)
                ds.ProcedureCodeSequence = items
            for keyword in spec.drop:
                del ds[keyword]
            yield ds


def norm(value: Any) -> tuple[str, ...]:
    """A decoded value as a tuple of strings (trailing padding off; empty: ())."""
    if value is None or value == "":
        return ()
    items = value if isinstance(value, (list, tuple)) else [value]
    return tuple(str(v).rstrip(" ") for v in items)


@dataclass(eq=False)
class Entity:
    """A patient, study, series or instance of the corpus; ``attrs`` lacks what the files lack."""

    level: str
    label: str
    uid: str
    charset: str
    attrs: dict[str, tuple[str, ...]]
    children: list[Entity] = field(default_factory=list)

    def instances(self) -> list[Entity]:
        return [self] if self.level == "IMAGE" else [i for c in self.children for i in c.instances()]


class Corpus:
    """The files and their Patient/Study/Series/Instance tree. Labels: the Patient ID, then
    ``.n`` per level in order of appearance (``HM-CRUZ.0.2.1``: 2nd instance of its 3rd series)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        datasets = [*generate(patients=2, studies=2, series=2, instances=2, rows=8, cols=8, seed=7),
                    *generate(patients=1, studies=1, series=2, instances=2, rows=8, cols=8, modality="MR",
                              seed=8),
                    *(ds for spec in HAND_MADE for ds in hand_made(spec))]
        self.paths: list[Path] = []
        self.patients: dict[str, Entity] = {}
        self.by_label: dict[str, Entity] = {}
        self.by_uid: dict[tuple[str, str], Entity] = {}
        for source in datasets:
            path = folder / f"{source.SOPInstanceUID}.dcm"
            write_file(path, source, EXPLICIT)
            self.paths.append(path)
            self._add(read_file(path, stop_before_pixels=True))
        for patient in self.patients.values():
            self._count(patient)

    def _add(self, ds: Dataset) -> None:
        charset = str(ds.get("SpecificCharacterSet") or "")
        parent: Entity | None = None
        kept: tuple[str, ...] = ()
        for level in LEVELS:
            kept = (*kept, *LEVEL_KEYS[level]) if level in ("PATIENT", "STUDY") else LEVEL_KEYS[level]
            uid = str(ds.get(UNIQUE[level]))
            entity = self.by_uid.get((level, uid))
            if entity is None:
                siblings = self.patients if parent is None else parent.children
                label = uid if parent is None else f"{parent.label}.{len(siblings)}"
                entity = Entity(level, label, uid, charset, {k: norm(ds.get(k)) for k in kept if k in ds})
                if parent is None:
                    self.patients[uid] = entity
                else:
                    parent.children.append(entity)
                self.by_label[label] = self.by_uid[(level, uid)] = entity
            parent = entity

    @staticmethod
    def _count(patient: Entity) -> None:
        series = [s for st in patient.children for s in st.children]
        patient.attrs.update(NumberOfPatientRelatedStudies=(str(len(patient.children)),),
                             NumberOfPatientRelatedSeries=(str(len(series)),),
                             NumberOfPatientRelatedInstances=(str(len(patient.instances())),))
        for study in patient.children:
            images = study.instances()
            study.attrs.update(
                ModalitiesInStudy=tuple(sorted({s.attrs["Modality"][0] for s in study.children})),
                SOPClassesInStudy=tuple(sorted({i.attrs["SOPClassUID"][0] for i in images})),
                NumberOfStudyRelatedSeries=(str(len(study.children)),),
                NumberOfStudyRelatedInstances=(str(len(images)),))
            for s in study.children:
                s.attrs["NumberOfSeriesRelatedInstances"] = (str(len(s.children)),)

    def entities(self, level: str) -> list[Entity]:
        found = list(self.patients.values())
        for _ in range(LEVELS.index(level)):
            found = [c for e in found for c in e.children]
        return found

    def label(self, level: str, uid: str) -> str:
        entity = self.by_uid.get((level, uid))
        return entity.label if entity else f"?{uid}"


# ------------------------------------------------------------------ the oracle
@dataclass(frozen=True)
class Profile:
    """How an SCP matches, where the standard leaves a choice or the SCP has a quirk."""

    pn_case_insensitive: bool
    empty_value_matching: bool      # '""' matches empty and missing values
    any_of_values: bool             # several values in a non-UID key: any may match
    missing_is_empty: bool          # a missing attribute is a zero-length value for wild cards
    times: str                      # "span" | "instant" | "text": partial TM values
    question_mark: str              # "character" | "utf8-byte" | "utf8-byte-if-any-utf8"
    leading_spaces_pad: bool        # leading spaces of SH/LO/PN... are padding
    unsupported: frozenset[str] = frozenset()
    unknown_required_matches: bool = False  # C.2.2.1.2 (of the three, only the sample server does it)


SAMPLE_PROFILE = Profile(True, True, True, True, "span", "character", True, unknown_required_matches=True)
DCMQRSCP_UNSUPPORTED = frozenset({
    "ModalitiesInStudy", "SOPClassesInStudy", "NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries",
    "NumberOfPatientRelatedInstances", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
    "NumberOfSeriesRelatedInstances", "SeriesDescription", "SeriesDate", "SeriesTime", "BodyPartExamined",
    "SOPClassUID", "ContentDate", "Rows", "ImageType", "ProcedureCodeSequence"})
DCMQRSCP_PROFILE = Profile(False, False, False, True, "instant", "utf8-byte-if-any-utf8", True,
                           DCMQRSCP_UNSUPPORTED)
ORTHANC_PROFILE = Profile(True, False, True, False, "text", "utf8-byte", False)


def _time(text: str, upper: bool) -> str:
    main, _, frac = text.strip().partition(".")
    if upper:
        return f"{(main + '235959'[len(main):])[:6]}.{(frac + '999999')[:6]}"
    return f"{(main + '000000')[:6]}.{(frac + '000000')[:6]}"


def _date_time_matches(profile: Profile, vr: str, key: str, value: str) -> bool:
    if not value:
        return False
    lo, dash, hi = key.partition("-")
    if vr == "DA" or profile.times == "text":
        if not dash:
            return value == key
        return (not lo or value >= lo) and (not hi or value <= hi)
    if not dash:
        hi = lo
    upper = profile.times == "span"
    return (not lo or _time(value, False) >= _time(lo, False)) and (not hi or _time(value, False) <= _time(hi, upper))


def _wildcard(pattern: str, text: str, utf8: bool) -> bool:
    """``*`` any run, ``?`` one character -- or one byte of UTF-8 when ``utf8``."""
    if utf8:
        regex = b"".join(b".*" if c == 42 else b"." if c == 63 else re.escape(bytes([c]))
                         for c in pattern.encode("utf-8"))
        return re.fullmatch(regex, text.encode("utf-8"), re.S) is not None
    return re.fullmatch("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern),
                        text, re.S) is not None


def _text_matches(profile: Profile, vr: str, key: str, value: str, charsets: tuple[str | None, str]) -> bool:
    if profile.leading_spaces_pad and vr not in ("ST", "LT", "UT"):
        key, value = key.lstrip(" "), value.lstrip(" ")
    key = key.rstrip(" ")
    if vr == "PN" and profile.pn_case_insensitive:
        key, value = key.upper(), value.upper()
    if "*" not in key and "?" not in key:
        return value == key
    utf8 = profile.question_mark == "utf8-byte" or (
        profile.question_mark == "utf8-byte-if-any-utf8" and "ISO_IR 192" in charsets)
    return _wildcard(key, value, utf8)


def key_matches(profile: Profile, level: str, keyword: str, key: str, entity: Entity,
                query_charset: str | None) -> bool:
    """Whether ``entity`` matches one non-universal key (PS3.4 C.2.2.2 as ``profile`` reads it)."""
    if keyword in profile.unsupported:
        return True                 # C.2.2.1.3: an unsupported optional key is ignored
    vr = VR[keyword]
    values = entity.attrs.get(keyword)
    if profile.unknown_required_matches and not values and keyword in REQUIRED[level]:
        return True
    if vr == "UI":
        return values is not None and len(values) == 1 and values[0] in key.split("\\")
    if key.strip(" ") == "*" and vr in WILDCARD_VRS and (values is not None or profile.missing_is_empty):
        return True                 # C.2.2.2.4 note 1: Universal Matching
    alternatives = key.split("\\")
    if len(alternatives) > 1 and not profile.any_of_values:
        return False                # taken literally: no value holds a backslash
    for one in alternatives:
        if one == '""':
            if profile.empty_value_matching and not values:
                return True
            continue
        if vr in ("DA", "TM"):
            if any(_date_time_matches(profile, vr, one, v) for v in values or ()):
                return True
        elif vr in ("IS", "US"):
            if any(int(v) == int(one) for v in values or ()):
                return True
        else:
            wild = "*" in one or "?" in one
            candidates = values if values else (("",) if wild and (values is not None or profile.missing_is_empty)
                                                else ())
            if any(_text_matches(profile, vr, one, v, (query_charset, entity.charset)) for v in candidates):
                return True
    return False


# ------------------------------------------------------------------ queries
@dataclass(frozen=True)
class Uids:
    """A unique key given by corpus labels (UNKNOWN: a UID nobody holds), sent as a UID list."""

    labels: tuple[str, ...]

    def resolve(self, corpus: Corpus) -> str:
        return "\\".join(UNKNOWN_UID if label == "UNKNOWN" else corpus.by_label[label].uid
                         for label in self.labels)

    def __str__(self) -> str:
        return "\\".join(self.labels)


def uids(*labels: str) -> Uids:
    return Uids(labels)


@dataclass(frozen=True)
class Case:
    """One C-FIND: level, keys (None: universal), model and the query's character set."""

    level: str
    keys: tuple[tuple[str, Any], ...]
    model: str = "study"
    charset: str | None = None

    def identifier(self, corpus: Corpus) -> dict[str, Any]:
        query: dict[str, Any] = {"QueryRetrieveLevel": self.level}
        if self.charset:
            query["SpecificCharacterSet"] = self.charset
        for keyword, value in self.keys:
            query[keyword] = value.resolve(corpus) if isinstance(value, Uids) else value
        return query

    @property
    def name(self) -> str:
        shown = " ".join(f"{k}={v}" for k, v in self.keys if v is not None)
        return f"{self.model}/{self.level} {shown}" + (f" [{self.charset}]" if self.charset else "")


def expected(corpus: Corpus, profile: Profile, case: Case) -> frozenset[str]:
    """The labels a hierarchical C-FIND should match (C.4.1.3.1.1) under ``profile``."""
    query = case.identifier(corpus)
    levels = LEVELS if case.model == "patient" else LEVELS[1:]
    found = corpus.entities(levels[0])
    for depth, level in enumerate(levels[:levels.index(case.level) + 1]):
        if depth:
            found = [c for e in found for c in e.children]
        if level != case.level:
            found = [e for e in found if e.uid == query[UNIQUE[level]]]
    above = {UNIQUE[level] for level in levels[:levels.index(case.level)]}
    keys = {k: v for k, v in query.items()
            if k not in above and k not in ("QueryRetrieveLevel", "SpecificCharacterSet") and v}
    return frozenset(e.label for e in found
                     if all(key_matches(profile, case.level, k, v, e, case.charset) for k, v in keys.items()))


def _study(*pairs: tuple[str, Any], charset: str | None = None) -> Case:
    return Case("STUDY", (("StudyInstanceUID", None), ("PatientID", None), *pairs), "study", charset)


def _grid() -> list[Any]:
    cases: list[tuple[Case, str | None]] = []   # (case, reason when the sample server is known wrong)
    for pn in ("Smith^John", "smith^john", "SMITH^JOHN", "Smith*", "smith*", "*^John", "*john", "Sm?th^John",
               "Doe^Jane", "Doe^Jane*", "Doe^Jane^*", "Doe^Jane^", "*^Jane^Q*", "doe^jane^q^dr^jr", "Doe",
               "Roe^Ann", "*", "?*", '""', "**"):
        cases.append((_study(("PatientName", pn)), None))
    for charset, names in (("ISO_IR 192", ("Cruz^María*", "Cruz^Mar?a José", "Wójcik^Zoë", "wójcik^zoë",
                                           "WÓJCIK^ZOË", "*Zo?", "M?ller*", "müller*", "*Ø*", "Wojcik^Zoe",
                                           "*ÓJ*")),
                           ("ISO_IR 100", ("Cruz^Mar?a José", "Wójcik^Zoë", "*Zo?", "M?ller*", "ødegård*"))):
        cases += [(_study(("PatientName", pn), charset=charset), None) for pn in names]
    for pid in ("HM-SMITH", "hm-smith", "HM-SMITH*", "*SMITH*", "HM-?OE", "DN007*", "*", "HM-",
                "HM-SMITH\\HM-DOE", "?M-ROE"):
        cases.append((_study(("PatientID", pid)), None))
    for text in ("CT CHEST", "ct chest", "CT*", "ct*", "*CHEST", "CT ABDOMEN", "*W/O", "MR BRAIN W/O", "?T*",
                 "*A*", "*", "**", "*?*", '""'):
        cases.append((_study(("StudyDescription", text)), None))
    cases += [(_study(("StudyDescription", t), charset="ISO_IR 192"), None) for t in ("T?TE*", "TÊTE*", "tête*")]
    cases.append((_study(("StudyDescription", "T?TE*"), charset="ISO_IR 100"), None))
    for acc in ("ACC-001", "acc-001", "ACC-00?", "*001", "*", "**", '""', "A07*", "ACC-006", "  ACC-006", "*6"):
        cases.append((_study(("AccessionNumber", acc)), None))
    cases += [(_study(("StudyID", v)), None) for v in ("10?", "101", "1*", "2")]
    cases += [(_study(("ReferringPhysicianName", v)), None) for v in ("Ref^Doc", "ref^*", "*^Marie")]
    cases.append((_study(("ReferringPhysicianName", "Röntgen*"), charset="ISO_IR 192"), None))
    for date in ("20200101", "20200101-20201231", "-20200101", "20201231-", "20200102-20201230",
                 "19991231-20000101", "20200615-20200616", "-", "20201231-20200101", "20200101-20200101",
                 "20230303", "-19991231"):
        cases.append((_study(("StudyDate", date)), None))
    for time in ("101010", "1010", "10", "101010.123456", "101010-101011", "-1010", "101010.2-", "235959.999",
                 "235959-", "1010-1010", "000000", "-000000", "101010.5-101010.9", "1200-", "0930", "093000",
                 "093000-093001", "0930-0930", "09-09", "-09", "101010.5", "101010.50"):
        cases.append((_study(("StudyTime", time)), None))
    for date, time in (("20200101-20201231", "1000-1200"), ("20200101-20201231", "1200-"),
                       ("20190101-20191231", "-0930"), ("20200615", "1010-")):
        cases.append((_study(("StudyDate", date), ("StudyTime", time)), None))
    for mods in ("CT", "MR", "PT", "CT\\MR", "MR\\PT", "C*", "*", "ct", "OT", "?T"):
        cases.append((_study(("ModalitiesInStudy", mods)), None))
    cases += [(_study(("PatientBirthDate", v)), None) for v in ("19700101", "-19700101")]
    cases += [(_study(("PatientSex", v)), None) for v in ("O", "F")]
    cases += [(_study(*pairs), None) for pairs in (
        (("PatientName", "Smith*"), ("StudyDescription", "CT*")),
        (("PatientID", "HM-SMITH"), ("StudyDate", "20220101-")),
        (("ModalitiesInStudy", "MR"), ("StudyDate", "-20201231")),
        (("AccessionNumber", "ACC*"), ("PatientName", "*a*")))]
    for keys in (uids("HM-CRUZ.0", "HM-DOE.0", "DN00700000.1"), uids("HM-SMITH.1", "UNKNOWN"),
                 uids("HM-WOJCIK.0"), uids("UNKNOWN")):
        cases.append((Case("STUDY", (("StudyInstanceUID", keys), ("PatientID", None))), None))
    # SERIES and IMAGE (Study Root), under one study / series.
    cruz = (("StudyInstanceUID", uids("HM-CRUZ.0")),)
    for keyword, value in (("Modality", "CT"), ("Modality", "MR"), ("Modality", "PT"), ("Modality", "?T"),
                           ("Modality", "MR\\PT"), ("Modality", "*"), ("Modality", "ct"), ("SeriesNumber", "2"),
                           ("SeriesDescription", "S*"), ("BodyPartExamined", "CHEST"),
                           ("SeriesInstanceUID", uids("HM-CRUZ.0.0", "HM-CRUZ.0.2")),
                           ("SeriesInstanceUID", uids("HM-CRUZ.0.1", "UNKNOWN")),
                           ("SeriesInstanceUID", uids("HM-CRUZ.0.0", "HM-SMITH.0.0"))):
        rest = () if keyword == "SeriesInstanceUID" else (("SeriesInstanceUID", None),)
        cases.append((Case("SERIES", (*cruz, *rest, (keyword, value))), None))
    cases.append((Case("SERIES", (("StudyInstanceUID", uids("HM-MISSING.0")), ("SeriesInstanceUID", None),
                                  ("SeriesNumber", "1"))), None))
    series = (*cruz, ("SeriesInstanceUID", uids("HM-CRUZ.0.1")))
    for keyword, value in (("SOPInstanceUID", uids("HM-CRUZ.0.1.0", "HM-CRUZ.0.1.1")),
                           ("SOPInstanceUID", uids("HM-CRUZ.0.1.0", "HM-CRUZ.0.2.0")),
                           ("SOPInstanceUID", uids("UNKNOWN")), ("InstanceNumber", "2"), ("SOPClassUID", MR_IMAGE),
                           ("SOPClassUID", CT_IMAGE)):
        rest = () if keyword == "SOPInstanceUID" else (("SOPInstanceUID", None),)
        cases.append((Case("IMAGE", (*series, *rest, (keyword, value))), None))
    # Patient Root.
    for keyword, value in (("PatientName", "Smith^John"), ("PatientName", "smith*"), ("PatientName", "Doe*"),
                           ("PatientName", "*"), ("PatientName", '""'), ("PatientName", "**"),
                           ("PatientID", "HM-SMITH"), ("PatientID", "HM-*"), ("PatientID", "HM-SMITH\\HM-DOE"),
                           ("PatientSex", "F"), ("PatientSex", "O"), ("PatientBirthDate", "-19700101"),
                           ("PatientBirthDate", "19700101"), ("PatientBirthDate", "19700102-")):
        rest = () if keyword == "PatientID" else (("PatientID", None),)
        bug = None
        cases.append((Case("PATIENT", (*rest, (keyword, value)), "patient"), bug))
    for keyword, value in (("StudyDescription", "CT*"), ("StudyDate", "-20201231"), ("AccessionNumber", "ACC-005")):
        cases.append((Case("STUDY", (("PatientID", "HM-SMITH"), ("StudyInstanceUID", None), (keyword, value)),
                           "patient"), None))
    cases.append((Case("IMAGE", (("PatientID", "HM-CRUZ"), *series, ("SOPInstanceUID", None),
                                 ("InstanceNumber", "1")), "patient"), None))
    return [pytest.param(case, bug, id=case.name,
                         marks=[pytest.mark.xfail(strict=True, raises=DicomnetBug, reason=bug)] if bug else [])
            for case, bug in cases]


class DicomnetBug(AssertionError):
    """The sample server answered other than PS3.4 requires (a known dicomnet bug)."""


# ------------------------------------------------------------------ the SCPs
class Recorder:
    """A C-MOVE destination: the SOP Instance UIDs stored to it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[str] = []

    def on_store(self, ctx: Any, ds: Dataset) -> int:
        with self.lock:
            self.received.append(str(ds.SOPInstanceUID))
        return SUCCESS

    def take(self) -> list[str]:
        with self.lock:
            got, self.received = self.received, []
        return got


class Scp:
    """One Q/R SCP under test, with an association kept open for C-FIND and C-MOVE."""

    def __init__(self, name: str, port: int, aet: str, profile: Profile) -> None:
        self.name, self.port, self.aet, self.profile = name, port, aet, profile
        self._assoc: Association | None = None

    def connect(self, **kw: Any) -> Association:
        return Client("DNETDIFF", dimse_timeout=20).associate(HOST, self.port, self.aet, **kw)

    @property
    def assoc(self) -> Association:
        if self._assoc is None or not self._assoc.is_established:
            self._assoc = self.connect()
        return self._assoc

    def close(self) -> None:
        if self._assoc is not None and self._assoc.is_established:
            self._assoc.release()
        self._assoc = None


@dataclass
class Env:
    corpus: Corpus
    scps: dict[str, Scp]
    recorder: Recorder

    def find(self, scp: Scp, case: Case, assoc: Association | None = None) -> Any:
        """The labels matched, or ``("refused", status)``; checks the level echoed and no duplicates."""
        try:
            matches = list((assoc or scp.assoc).find(case.identifier(self.corpus), model=case.model))
        except DimseStatusError as exc:
            return ("refused", exc.status)
        labels = [self.corpus.label(case.level, str(m.get(UNIQUE[case.level]))) for m in matches]
        assert all(m.QueryRetrieveLevel == case.level for m in matches), scp.name
        assert len(labels) == len(set(labels)), (scp.name, labels)
        return frozenset(labels)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """The corpus in the three SCPs (each started once), and a C-MOVE destination they all know."""
    require("dcmqrscp", "storescu", "echoscu", "Orthanc")
    corpus = Corpus(tmp_path_factory.mktemp("qr-corpus"))
    with ExitStack() as stack:
        recorder = Recorder()
        dest = Server(DEST_AE, recorder, read_timeout=10).start(HOST, 0)
        stack.callback(dest.shutdown)
        dest_port = dest.port
        assert dest_port is not None
        archive = Archive()
        assert archive.add_path(corpus.paths[0].parent) == len(corpus.paths)
        handler = SampleHandler(archive, {DEST_AE: (HOST, dest_port)})
        sample = Server("SAMPLE", handler, contexts=storage_contexts(also=QR_SOP_CLASSES),
                        destinations=handler.destinations, require_called_ae=False, read_timeout=10).start(HOST, 0)
        stack.callback(sample.shutdown)
        assert sample.port is not None
        qr = stack.enter_context(Dcmqrscp(preload=corpus.paths, move_destinations={DEST_AE: dest_port}))
        orthanc = stack.enter_context(Orthanc(modalities={"dest": (DEST_AE, dest_port)}))
        for path in corpus.paths:
            assert orthanc.upload(path)["Status"] == "Success"
        scps = {"sample": Scp("sample", sample.port, "SAMPLE", SAMPLE_PROFILE),
                "dcmqrscp": Scp("dcmqrscp", qr.port, qr.aet, DCMQRSCP_PROFILE),
                "orthanc": Scp("orthanc", orthanc.dicom_port, orthanc.aet, ORTHANC_PROFILE)}
        for scp in scps.values():
            stack.callback(scp.close)
        yield Env(corpus, scps, recorder)


def show(result: Any) -> Any:
    return sorted(result) if isinstance(result, frozenset) else result


def compare(env: Env, got: dict[str, Any], want: dict[str, Any], bug: str | None = None) -> None:
    """Peers first (their expectations must hold), then the sample server (DicomnetBug when ``bug``)."""
    peers = [n for n in got if n != "sample"]
    assert {n: show(got[n]) for n in peers} == {n: show(want[n]) for n in peers}
    if bug is None:
        assert show(got["sample"]) == show(want["sample"])
    elif got["sample"] != want["sample"]:
        raise DicomnetBug(f"{bug}: sample server {show(got['sample'])}, PS3.4 {show(want['sample'])}")


# ------------------------------------------------------------------ C-FIND grid
@pytest.mark.parametrize(("case", "bug"), _grid())
def test_find_matches_like_the_oracle(env: Env, case: Case, bug: str | None) -> None:
    """Each SCP matches exactly the entities the oracle gives under its profile."""
    got = {name: env.find(scp, case) for name, scp in env.scps.items()}
    want = {name: expected(env.corpus, scp.profile, case) for name, scp in env.scps.items()}
    compare(env, got, want, bug)


def test_grid_differences_are_the_documented_ones(env: Env) -> None:
    """The oracle is not too lenient: on the grid, the profiles do disagree where the module
    docstring says, and the three SCPs agree on most queries."""
    cases = [p.values[0] for p in _grid()]
    differing = [c.name for c in cases
                 if len({expected(env.corpus, scp.profile, c) for scp in env.scps.values()}) > 1]
    # (About 60 differ by the documented choices; some 40 more by C.2.2.1.2,
    # which only the sample server follows.)
    assert 40 <= len(differing) <= 110, differing
    for name in ("study/STUDY PatientName=smith*", "study/STUDY StudyTime=0930-0930",
                 "study/STUDY AccessionNumber=*", "study/STUDY StudyDescription=\"\"",
                 "study/STUDY ModalitiesInStudy=MR\\PT", "study/STUDY StudyDescription=T?TE* [ISO_IR 192]"):
        assert name in differing


# ------------------------------------------------------------- return keys
UNIVERSAL = {
    "PATIENT": ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "NumberOfPatientRelatedStudies",
                "NumberOfPatientRelatedSeries", "NumberOfPatientRelatedInstances"),
    "STUDY": ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
              "AccessionNumber", "StudyID", "StudyDescription", "ReferringPhysicianName", "ModalitiesInStudy",
              "SOPClassesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"),
    "SERIES": ("Modality", "SeriesNumber", "SeriesDescription", "SeriesDate", "SeriesTime", "BodyPartExamined",
               "NumberOfSeriesRelatedInstances"),
    "IMAGE": ("InstanceNumber", "SOPClassUID", "ContentDate", "Rows", "ImageType"),
}
SETS = {"ModalitiesInStudy", "SOPClassesInStudy"}     # multi-valued, compared in any order


def _universal_cases(corpus: Corpus) -> list[tuple[Case, list[Entity]]]:
    out = [(Case("PATIENT", tuple((k, None) for k in UNIVERSAL["PATIENT"]), "patient"), corpus.entities("PATIENT")),
           (Case("STUDY", (("StudyInstanceUID", None), *((k, None) for k in UNIVERSAL["STUDY"]))),
            corpus.entities("STUDY"))]
    for study in corpus.entities("STUDY"):
        out.append((Case("SERIES", (("StudyInstanceUID", uids(study.label)), ("SeriesInstanceUID", None),
                                    *((k, None) for k in UNIVERSAL["SERIES"]))), study.children))
    for label in ("HM-CRUZ.0.2", "HM-WOJCIK.0.0", "DN00700001.1.0", "HM-MISSING.0.0"):
        keys = (("StudyInstanceUID", uids(label.rsplit(".", 1)[0])), ("SeriesInstanceUID", uids(label)),
                ("SOPInstanceUID", None), *((k, None) for k in UNIVERSAL["IMAGE"]))
        out.append((Case("IMAGE", keys), corpus.by_label[label].children))
    return out


def test_universal_matching_returns_every_entity_with_its_values(env: Env) -> None:
    """Empty keys at each level: every entity, each requested key present with the files' value
    (or the count/list the SCP computes) -- except the optional keys an SCP does not support,
    which must be absent (C.2.2.1.3)."""
    problems: list[Any] = []
    for case, entities in _universal_cases(env.corpus):
        want = {e.label: e for e in entities}
        for name, scp in env.scps.items():
            matches = list(scp.assoc.find(case.identifier(env.corpus), model=case.model))
            got = {env.corpus.label(case.level, str(m.get(UNIQUE[case.level]))): m for m in matches}
            if sorted(got) != sorted(want):
                problems.append((name, case.name, sorted(got)))
                continue
            for label, match in got.items():
                for keyword in UNIVERSAL[case.level]:
                    if keyword in scp.profile.unsupported:
                        if keyword in match:
                            problems.append((name, label, keyword, "returned though unsupported"))
                        continue
                    value = norm(match.get(keyword)) if keyword in match else None
                    expect = want[label].attrs.get(keyword, ())
                    if keyword in SETS and value is not None:
                        value = tuple(sorted(value))
                    if value != expect:
                        problems.append((name, label, keyword, value, expect))
    assert problems == []


def test_find_responses_name_the_retrieve_ae_of_the_peers(env: Env) -> None:
    """dcmqrscp and Orthanc put their AE title in Retrieve AE Title at every level (C.4.1.1.3.2)."""
    for name in ("dcmqrscp", "orthanc"):
        scp = env.scps[name]
        for case, _ in _universal_cases(env.corpus)[:3] + _universal_cases(env.corpus)[-1:]:
            titles = {m.get("RetrieveAETitle") for m in scp.assoc.find(case.identifier(env.corpus), model=case.model)}
            assert titles == {scp.aet}, (name, case.name)


def test_specific_character_set_of_the_answers(env: Env) -> None:
    """C.4.1.1.3.2: Specific Character Set when a value needs it. The sample server and dcmqrscp
    name the file's character set exactly when a returned value is not ASCII; Orthanc names its
    DefaultEncoding (ISO_IR 100) in every answer -- all decode to the same text (see the
    universal matching test)."""
    case, studies = _universal_cases(env.corpus)[1]
    by_label = {s.label: s for s in studies}
    for name, scp in env.scps.items():
        got, want = {}, {}
        for match in scp.assoc.find(case.identifier(env.corpus)):
            study = by_label[env.corpus.label("STUDY", str(match.StudyInstanceUID))]
            wide = any(not v.isascii() for k in UNIVERSAL["STUDY"] for v in study.attrs.get(k, ()))
            got[study.label] = match.get("SpecificCharacterSet")
            want[study.label] = "ISO_IR 100" if name == "orthanc" else study.charset if wide else None
        assert got == want, name
        assert {"ISO_IR 100", "ISO_IR 192"} <= set(got.values()) or name == "orthanc"


def test_sample_find_responses_name_a_retrieve_ae(env: Env) -> None:
    """PS3.4 C.4.1.1.3.2: each C-FIND response Identifier shall contain Retrieve AE Title, or
    Storage Media File-Set ID and UID (the sample server sent neither when this was written)."""
    scp = env.scps["sample"]
    for case, _ in _universal_cases(env.corpus)[:3] + _universal_cases(env.corpus)[-1:]:
        for match in scp.assoc.find(case.identifier(env.corpus), model=case.model):
            if "RetrieveAETitle" not in match and "StorageMediaFileSetUID" not in match:
                raise DicomnetBug(f"{case.name}: no Retrieve AE Title / File-Set UID in {sorted(match.keys())}")


@pytest.mark.parametrize("case", [
    _study(("AccessionNumber", "ACC-001")), _study(("StudyTime", "0000-1200")), _study(("StudyID", "101")),
    _study(("PatientName", "Smith^John")),
    Case("SERIES", (("StudyInstanceUID", uids("HM-MISSING.0")), ("SeriesInstanceUID", None), ("SeriesNumber", "7"))),
], ids=lambda c: c.name)
def test_required_keys_of_zero_length_match_as_unknown(env: Env, case: Case) -> None:
    """PS3.4 C.2.2.1.2: "If a C-FIND SCP manages an entity with a Required Key of zero length,
    the value is considered unknown and all matching against the zero length Required Key
    shall be considered a successful match." The corpus has an empty Accession Number and
    Patient's Name and a study without Study Time, Study ID and Series Number; dcmqrscp and
    Orthanc leave them out (their grid expectations say so), the sample server does not
    (it left them out too when this was written)."""
    got = env.find(env.scps["sample"], case)
    want = expected(env.corpus, SAMPLE_PROFILE, case)
    assert want != expected(env.corpus, replace(SAMPLE_PROFILE, unknown_required_matches=False), case)
    if got != want:
        raise DicomnetBug(f"sample server {show(got)}, PS3.4 {show(want)}")


# ------------------------------------------------------- beyond the grid
def test_count_keys_as_matching_keys(env: Env) -> None:
    """Number of Study Related Instances/Series with a value: the sample server matches on the
    count, dcmqrscp ignores the unsupported key, Orthanc returns nothing (quirk)."""
    studies = env.corpus.entities("STUDY")
    for keyword, value in (("NumberOfStudyRelatedInstances", "4"), ("NumberOfStudyRelatedSeries", "3")):
        case = _study((keyword, value))
        got = {name: env.find(scp, case) for name, scp in env.scps.items()}
        assert got == {"sample": frozenset(s.label for s in studies if s.attrs[keyword] == (value,)),
                       "dcmqrscp": frozenset(s.label for s in studies), "orthanc": frozenset()}, keyword
        assert got["sample"]


def test_sequence_matching(env: Env) -> None:
    """A Procedure Code Sequence key (C.2.2.2.6): the sample server matches item by item and
    returns only the matching items with the requested attributes; dcmqrscp does not support
    the key; Orthanc returns the sequence whole without matching on it (allowed, C.2.2.1.3)."""
    def query(item_keys: dict[str, Any] | None) -> Dataset:
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        ds.StudyInstanceUID = None
        ds.PatientID = None
        if item_keys is None:
            ds.ProcedureCodeSequence = []
        else:
            item = Dataset()
            for keyword, value in item_keys.items():
                item.set(keyword, value)
            ds.ProcedureCodeSequence = [item]
        return ds

    every = frozenset(s.label for s in env.corpus.entities("STUDY"))

    def answers(scp: Scp, ds: Dataset) -> dict[str, Any]:
        out = {}
        for match in scp.assoc.find(ds):
            items = match.get("ProcedureCodeSequence")
            out[env.corpus.label("STUDY", str(match.StudyInstanceUID))] = None if items is None else [
                (i.get("CodeValue"), i.get("CodingSchemeDesignator"), i.get("CodeMeaning"), len(i)) for i in items]
        return out

    one = query({"CodeValue": "P2", "CodeMeaning": None})
    got = {name: answers(scp, one) for name, scp in env.scps.items()}
    assert got["sample"] == {"HM-ROE.0": [("P2", None, "CT NECK", 2)]}
    assert set(got["dcmqrscp"]) == every and set(got["dcmqrscp"].values()) == {None}
    both = [("P1", "99DNET", "CT HEAD", 3), ("P2", "99DNET", "CT NECK", 3)]
    assert set(got["orthanc"]) == every and got["orthanc"]["HM-ROE.0"] == both
    none = query({"CodeValue": "P9"})
    assert set(answers(env.scps["sample"], none)) == set()
    assert set(answers(env.scps["orthanc"], none)) == every
    universal = query(None)
    for name in ("sample", "orthanc"):
        got_all = answers(env.scps[name], universal)
        assert set(got_all) == every and got_all["HM-ROE.0"] == both, name


#: Identifiers outside the hierarchical rules -> (sample, dcmqrscp, orthanc) answers.
INVALID = [
    (Case("SERIES", (("SeriesInstanceUID", None), ("Modality", "PT"))),
     (("refused", UNABLE_TO_PROCESS), ("refused", UNABLE_TO_PROCESS), {"HM-CRUZ.0.2"})),
    (Case("SERIES", (("StudyInstanceUID", uids("HM-CRUZ.0", "HM-SMITH.0")), ("SeriesInstanceUID", None))),
     (("refused", UNABLE_TO_PROCESS), "union", "union")),
    (Case("STUDY", (("StudyInstanceUID", None),), "patient"),
     (("refused", UNABLE_TO_PROCESS), ("refused", UNABLE_TO_PROCESS), "all-studies")),
    (Case("PATIENT", (("PatientID", None),), "study"),
     (("refused", DOES_NOT_MATCH), ("refused", UNABLE_TO_PROCESS), "all-patients")),
    (Case("IMAGE", (("StudyInstanceUID", uids("HM-CRUZ.0")), ("SOPInstanceUID", None))),
     (("refused", UNABLE_TO_PROCESS), ("refused", UNABLE_TO_PROCESS), {"HM-CRUZ.0.0.0", "HM-CRUZ.0.0.1",
                                                                        "HM-CRUZ.0.1.0", "HM-CRUZ.0.1.1",
                                                                        "HM-CRUZ.0.2.0", "HM-CRUZ.0.2.1"})),
    (Case("SERIES", (("PatientID", "HM-DOE"), ("StudyInstanceUID", uids("HM-CRUZ.0")), ("SeriesInstanceUID", None)),
          "patient"),
     (set(), set(), set())),
    (Case("STUDY", (("StudyInstanceUID", "1.2*"),)),
     (set(), set(), ("refused", UNABLE_TO_PROCESS))),
    # (no wild cards in TM: "*" matches no time -- but the study without a Study
    # Time, a Required Key, matches any value of it in the sample server, C.2.2.1.2)
    (Case("STUDY", (("StudyInstanceUID", None), ("StudyTime", "*"))),
     ({"HM-MISSING.0"}, set(), ("refused", UNABLE_TO_PROCESS))),
]


@pytest.mark.parametrize(("case", "answers"), INVALID, ids=[c.name for c, _ in INVALID])
def test_identifiers_outside_the_hierarchy(env: Env, case: Case, answers: tuple[Any, Any, Any]) -> None:
    """C.4.1.2.1: a unique key, single-valued, for every level above; UI and TM take no wild cards.
    The sample server refuses what it cannot process as asked (C.4.1.3.1), dcmqrscp too, Orthanc
    answers as a relational query (not negotiated) -- see the module docstring."""
    corpus = env.corpus
    named = {"union": frozenset(s.label for label in ("HM-CRUZ.0", "HM-SMITH.0")
                                for s in corpus.by_label[label].children),
             "all-studies": frozenset(s.label for s in corpus.entities("STUDY")),
             "all-patients": frozenset(corpus.patients)}
    want = {name: named[a] if isinstance(a, str) else frozenset(a) if isinstance(a, set) else a
            for name, a in zip(("sample", "dcmqrscp", "orthanc"), answers)}
    got = {name: env.find(scp, case) for name, scp in env.scps.items()}
    assert {n: show(v) for n, v in got.items()} == {n: show(v) for n, v in want.items()}


def test_combined_date_time_matching_is_not_negotiated(env: Env) -> None:
    """Offered relational queries and combined date-time matching (C.5.1.1), no SCP accepts;
    so each matches Study Date and Study Time independently (C.2.2.2.5.4): the studies of
    2020-06-15/16 at 10:10 fall in the combined range 2020-01-01 12:00 .. 2020-12-31 but not
    in "12:00 or later on a day of 2020"."""
    offer = [SOPClassExtendedNegotiation(STUDY_ROOT_FIND, b"\x01\x01")]
    case = _study(("StudyDate", "20200101-20201231"), ("StudyTime", "1200-"))
    for name, scp in env.scps.items():
        with scp.connect(extended_negotiations=offer) as assoc:
            assert assoc.negotiated.extended_negotiations == (), name
            assert env.find(scp, case, assoc) == {"HM-SMITH-UP.0"}, name


# ------------------------------------------------------------ C-MOVE / C-GET
RETRIEVES = [
    ("STUDY", {"StudyInstanceUID": ("HM-CRUZ.0", "HM-DOE.0")}, "study", {}),
    ("STUDY", {"StudyInstanceUID": ("HM-WOJCIK.0", "UNKNOWN")}, "study",
     {"get": {"orthanc": ("refused", UNABLE_TO_PROCESS)}}),
    ("SERIES", {"StudyInstanceUID": ("HM-CRUZ.0",), "SeriesInstanceUID": ("HM-CRUZ.0.0", "HM-CRUZ.0.2")}, "study",
     {}),
    ("SERIES", {"StudyInstanceUID": ("HM-CRUZ.0",), "SeriesInstanceUID": ("HM-CRUZ.0.1", "UNKNOWN")}, "study",
     {"get": {"orthanc": ("refused", UNABLE_TO_PROCESS)}}),
    ("SERIES", {"StudyInstanceUID": ("HM-CRUZ.0",), "SeriesInstanceUID": ("HM-CRUZ.0.1", "HM-SMITH.0.0")}, "study",
     {"orthanc": ("HM-CRUZ.0.1", "HM-SMITH.0.0")}),
    ("IMAGE", {"StudyInstanceUID": ("HM-CRUZ.0",), "SeriesInstanceUID": ("HM-CRUZ.0.1",),
               "SOPInstanceUID": ("HM-CRUZ.0.1.0", "HM-CRUZ.0.1.1")}, "study", {}),
    ("IMAGE", {"StudyInstanceUID": ("HM-CRUZ.0",), "SeriesInstanceUID": ("HM-CRUZ.0.1",),
               "SOPInstanceUID": ("HM-CRUZ.0.1.1", "HM-CRUZ.0.2.0")}, "study",
     {"orthanc": ("HM-CRUZ.0.1.1", "HM-CRUZ.0.2.0")}),
    ("IMAGE", {"StudyInstanceUID": ("HM-CRUZ.0",), "SeriesInstanceUID": ("HM-CRUZ.0.1",),
               "SOPInstanceUID": ("HM-CRUZ.0.1.0", "UNKNOWN")}, "study",
     {"get": {"orthanc": ("refused", UNABLE_TO_PROCESS)}}),
    ("IMAGE", {"StudyInstanceUID": ("HM-CRUZ.0",), "SeriesInstanceUID": ("HM-CRUZ.0.1",),
               "SOPInstanceUID": ("UNKNOWN",)}, "study", {"orthanc": ("refused", UNABLE_TO_PROCESS)}),
    ("PATIENT", {"PatientID": "HM-SMITH"}, "patient", {}),
    ("SERIES", {"PatientID": "HM-CRUZ", "StudyInstanceUID": ("HM-CRUZ.0",),
                "SeriesInstanceUID": ("HM-CRUZ.0.0", "HM-CRUZ.0.1")}, "patient", {}),
    # Outside the baseline hierarchy (C.4.2.2.1): no Study Instance UID, no Series Instance UID,
    # a Patient ID the study does not belong to.
    ("SERIES", {"SeriesInstanceUID": ("HM-CRUZ.0.2",)}, "study",
     {"sample": ("refused", UNABLE_TO_PROCESS), "dcmqrscp": (), "orthanc": ("HM-CRUZ.0.2",)}),
    ("IMAGE", {"StudyInstanceUID": ("HM-CRUZ.0",), "SOPInstanceUID": ("HM-CRUZ.0.1.0",)}, "study",
     {"sample": ("refused", UNABLE_TO_PROCESS), "dcmqrscp": (), "orthanc": ("HM-CRUZ.0.1.0",)}),
    ("STUDY", {"PatientID": "HM-DOE", "StudyInstanceUID": ("HM-CRUZ.0",)}, "patient", {"orthanc": ("HM-CRUZ.0",)}),
]


def _retrieve_identifier(corpus: Corpus, level: str, keys: dict[str, Any]) -> dict[str, str]:
    out = {"QueryRetrieveLevel": level}
    for keyword, value in keys.items():
        out[keyword] = value if isinstance(value, str) else Uids(value).resolve(corpus)
    return out


def _hierarchical(corpus: Corpus, level: str, keys: dict[str, Any], model: str) -> frozenset[str]:
    """The instances under the entities the unique keys name (C.4.2.3.1, baseline)."""
    query = _retrieve_identifier(corpus, level, keys)
    levels = LEVELS if model == "patient" else LEVELS[1:]
    found = corpus.entities(levels[0])
    for depth, name in enumerate(levels[:levels.index(level) + 1]):
        if depth:
            found = [c for e in found for c in e.children]
        found = [e for e in found if e.uid in query[UNIQUE[name]].split("\\")]
    return frozenset(i.label for e in found for i in e.instances())


def _retrieve_want(corpus: Corpus, spec: tuple[Any, ...], service: str) -> dict[str, Any]:
    level, keys, model, quirks = spec
    want: dict[str, Any] = {}
    for name in ("sample", "dcmqrscp", "orthanc"):
        quirk = quirks.get(service, {}).get(name, quirks.get(name))
        if quirk and quirk[0] == "refused":
            want[name] = quirk
            continue
        labels = (_hierarchical(corpus, level, keys, model) if quirk is None
                  else frozenset(i.label for label in quirk for i in corpus.by_label[label].instances()))
        want[name] = (SUCCESS, len(labels), 0, 0, labels)
    return want


def _retrieve_id(spec: tuple[Any, ...]) -> str:
    level, keys, model, _ = spec
    return f"{model}/{level} " + " ".join(
        f"{k}={v if isinstance(v, str) else chr(92).join(v)}" for k, v in keys.items())


@pytest.mark.parametrize("spec", RETRIEVES, ids=[_retrieve_id(s) for s in RETRIEVES])
def test_move_delivers_the_same_instances(env: Env, spec: tuple[Any, ...]) -> None:
    """C-MOVE to our recording Server: final status, sub-operation counters and the set of
    instances delivered, per SCP (Orthanc's quirks as documented)."""
    level, keys, model, _ = spec
    identifier = _retrieve_identifier(env.corpus, level, keys)
    got: dict[str, Any] = {}
    for name, scp in env.scps.items():
        env.recorder.take()
        result = scp.assoc.move(identifier, DEST_AE, model=model)
        try:
            list(result)
        except DimseStatusError as exc:
            got[name] = ("refused", exc.status)
            continue
        received = [env.corpus.label("IMAGE", uid) for uid in env.recorder.take()]
        assert len(received) == len(set(received)), (name, received)
        got[name] = (result.status, result.completed, result.failed, result.warning, frozenset(received))
    want = _retrieve_want(env.corpus, spec, "move")
    assert got == want


@pytest.mark.parametrize("spec", RETRIEVES, ids=[_retrieve_id(s) for s in RETRIEVES])
def test_get_delivers_the_same_instances(env: Env, spec: tuple[Any, ...]) -> None:
    """C-GET on an association of its own per SCP: the same comparison as for C-MOVE."""
    level, keys, model, _ = spec
    identifier = _retrieve_identifier(env.corpus, level, keys)
    got: dict[str, Any] = {}
    for name, scp in env.scps.items():
        with scp.connect(for_get=True) as assoc:
            result = assoc.get(identifier, model=model)
            try:
                received = [env.corpus.label("IMAGE", str(ds.SOPInstanceUID)) for ds in result]
            except DimseStatusError as exc:
                got[name] = ("refused", exc.status)
                continue
        assert len(received) == len(set(received)), (name, received)
        got[name] = (result.status, result.completed, result.failed, result.warning, frozenset(received))
    want = _retrieve_want(env.corpus, spec, "get")
    assert got == want


def test_move_applies_only_the_unique_keys(env: Env) -> None:
    """A Modality key in a C-MOVE identifier (C.2.2.1.3: optional keys shall not be sent): the
    sample server and Orthanc move by the unique keys alone (C.4.2.3.1), dcmqrscp filters on it."""
    identifier = _retrieve_identifier(env.corpus, "SERIES", {"StudyInstanceUID": ("HM-CRUZ.0",),
                                                              "SeriesInstanceUID": ("HM-CRUZ.0.1",)})
    identifier["Modality"] = "XX"
    got = {}
    for name, scp in env.scps.items():
        env.recorder.take()
        result = scp.assoc.move(identifier, DEST_AE)
        assert result.result() == SUCCESS, name
        got[name] = sorted(env.corpus.label("IMAGE", uid) for uid in env.recorder.take())
    series = ["HM-CRUZ.0.1.0", "HM-CRUZ.0.1.1"]
    assert got == {"sample": series, "dcmqrscp": [], "orthanc": series}
