"""An in-memory Query/Retrieve archive: the data behind the sample server.

:class:`Archive` holds instances (Datasets, or Part 10 files it read) in a
Patient / Study / Series / Instance tree with an index by each level's unique
key, answers C-FIND with :meth:`Archive.find` and gives the instances a C-MOVE
or C-GET has to send with :meth:`Archive.instances_for`.

Each entity keeps a *record*: the decoded attributes of its first instance that
belong to its level and the levels above, plus the counts and lists the
standard defines for query responses (Number of Study Related Instances,
Modalities in Study, ...). A patient's record holds the attributes of the
Patient IE, a study's those of the Patient and Study IEs (the modules are
listed below, with their PS3.3 tables); a series' record every attribute of
its first instance except the instance's own identity; an image's record every
attribute of the instance but Pixel Data and other bulk values.

Optional keys (PS3.4 C.2.2.1.3): a query at the PATIENT or STUDY level may
name an attribute that level's records do not hold. When it is an attribute
of that level or one above (at STUDY, the patient's counts) or one the
archive cannot place at any level (a private attribute, or one its data
dictionary does not know), its key is *ignored* for matching -- it matches
every entity -- and returned zero length; :attr:`Matches.ignored` names
such keys, and the sample server answers Pending 0xFF01 for them. A key on a
standard attribute of a lower level (Modality at STUDY, say) is no key of the
level in a hierarchical search (C.4.1.1.3.1) and is not ignored: it is
matched, as before, against a record without a value for it, so only a key
that matches a zero-length value (``**``, ``""``) selects anything. SERIES
and IMAGE records hold every attribute, so nothing is ignored there.

Thread safety: one lock guards every change and every index walk; matching
runs under it into a list and the response Identifiers are built after it is
released, so a slow peer never holds the archive.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

from dicomnet.dicom.dataset import Dataset
from dicomnet.dicom.dictionary import is_private, lookup
from dicomnet.dicom.reader import read_file
from dicomnet.dimse.retrieve_scp import InstancePath
from dicomnet.errors import DicomNetError, DicomParseError, QueryError
from dicomnet.samples.matching import (
    LEVELS,
    PATIENT_ID,
    SOP_INSTANCE_UID,
    STATUS_UNABLE_TO_PROCESS,
    UNIQUE_KEYS,
    CompiledQuery,
    compile_query,
    model_levels,
)

__all__ = ["Archive", "Entity", "Matches"]

log = logging.getLogger("dicomnet")

_SPECIFIC_CHARACTER_SET = 0x00080005
_SOP_CLASS_UID = 0x00080016
_MODALITY = 0x00080060
_INSTANCE_NUMBER = 0x00200013
_BULK_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})
_MAX_RECORD_VALUE = 4096  # bigger binary values are not kept in records

# ---------------------------------------------------------- what each level keeps
# The Patient and Study IEs of the composite IODs (PS3.3 A.1.2.1-2; e.g. Table
# A.3-1, CT Image): their modules' top-level attributes (items come with their
# sequences). PATIENT records keep the Patient IE; STUDY records the Patient
# and Study IEs (Study Root merges the two levels, PS3.4 C.6.2.1.2).
#
# Group 0010 is kept whole: the Patient Module's attributes there (name, ID,
# issuer, birth date, sex, other IDs, ethnic group, species, breed, comments,
# ...), and the Patient Study Module's (age, size, weight, medical alerts,
# allergies, pregnancy and smoking status, occupation, additional history,
# sex neutered, ...), which the archive has always kept with the patient too
# (the first instance's values). Anatomical Orientation Type (0010,2210) of the
# General Series Module comes along with them.

#: Patient Module (PS3.3 C.7.1.1, Table C.7-1) outside group 0010.
_PATIENT_MODULE = frozenset({
    0x00081120,                             # Referenced Patient Sequence
    0x00120062, 0x00120063, 0x00120064,     # Patient Identity Removed, De-identification Method (+ Code Sequence)
})
#: Clinical Trial Subject Module (PS3.3 C.7.1.3, Table C.7-2b).
_CLINICAL_TRIAL_SUBJECT = frozenset({
    0x00120010,                                         # Clinical Trial Sponsor Name
    0x00120020, 0x00120022, 0x00120023, 0x00120021,     # Protocol ID, its issuer, Other Protocol IDs Seq, name
    0x00120030, 0x00120032, 0x00120031,                 # Site ID, its issuer, Site Name
    0x00120040, 0x00120041, 0x00120042, 0x00120043,     # Subject ID, its issuer; Subject Reading ID, its issuer
    0x00120081, 0x00120082,                             # Protocol Ethics Committee Name, Approval Number
    # Ethics Committee Approval Effectiveness Start/End Date: the approval's
    # dates, kept with it (Table C.34.4-1, Clinical Trial Context, has all three).
    0x00120086, 0x00120087,
})
#: Kept by PATIENT records (and STUDY records) besides group 0010.
_PATIENT_TAGS = _PATIENT_MODULE | _CLINICAL_TRIAL_SUBJECT | {_SPECIFIC_CHARACTER_SET}

#: General Study Module (PS3.3 C.7.2.1, Table C.7-3).
_GENERAL_STUDY = frozenset({
    0x0020000D, 0x00080020, 0x00080030,     # Study Instance UID, Study Date, Study Time
    0x00080090, 0x00080096,                 # Referring Physician's Name (+ Identification Sequence)
    0x0008009C, 0x0008009D,                 # Consulting Physician's Name (+ Identification Sequence)
    0x00200010, 0x00080050, 0x00080051,     # Study ID, Accession Number, Issuer of Accession Number Sequence
    0x00081030, 0x00081048, 0x00081049,     # Study Description, Physician(s) of Record (+ Identification Sequence)
    0x00081060, 0x00081062,                 # Name of Physician(s) Reading Study (+ Identification Sequence)
    0x00321033, 0x00321034,                 # Requesting Service (+ Code Sequence)
    0x00081110, 0x00081032,                 # Referenced Study Sequence, Procedure Code Sequence
    0x00401012,                             # Reason For Performed Procedure Code Sequence
})
#: Patient Study Module (PS3.3 C.7.2.2, Table C.7-4a) outside group 0010.
_PATIENT_STUDY = frozenset({
    0x00081080, 0x00081084,                 # Admitting Diagnoses Description (+ Code Sequence)
    0x00321066, 0x00321067,                 # Reason for Visit (+ Code Sequence)
    0x00380010, 0x00380014,                 # Admission ID, Issuer of Admission ID Sequence
    0x00380060, 0x00380064, 0x00380062,     # Service Episode ID, its Issuer Sequence, Service Episode Description
    0x00380500,                             # Patient State
})
#: Clinical Trial Study Module (PS3.3 C.7.2.3, Table C.7-4b).
_CLINICAL_TRIAL_STUDY = frozenset({
    0x00120050, 0x00120055, 0x00120051,     # Clinical Trial Time Point ID, its issuer, its description
    0x00120054,                             # Clinical Trial Time Point Type Code Sequence
    0x00120052, 0x00120053,                 # Longitudinal Temporal Offset from Event, Event Type
    0x00120083,                             # Consent for Clinical Trial Use Sequence
})
#: Also kept at STUDY: Other Study Numbers (0020,1070, retired; a Study level
#: key in PS3.4 Table C.6-5 of earlier editions), Timezone Offset From UTC
#: (0008,0201; SOP Common Module, PS3.3 C.12.1), which says what the study's
#: dates and times are relative to, and Image Comments (0020,4000; General
#: Image Module), which this list has long held: a key on it matches as before.
_STUDY_QUERY_KEYS = frozenset({0x00201070, 0x00080201, 0x00204000})
#: Kept by STUDY records besides the patient's attributes.
_STUDY_TAGS = _GENERAL_STUDY | _PATIENT_STUDY | _CLINICAL_TRIAL_STUDY | _STUDY_QUERY_KEYS

# Counts and lists computed per entity (PS3.4 C.6.1.1.2-4, C.6.2.1.2-3).
_N_PATIENT_STUDIES, _N_PATIENT_SERIES, _N_PATIENT_INSTANCES = 0x00201200, 0x00201202, 0x00201204
_N_STUDY_SERIES, _N_STUDY_INSTANCES, _N_SERIES_INSTANCES = 0x00201206, 0x00201208, 0x00201209
_MODALITIES_IN_STUDY, _SOP_CLASSES_IN_STUDY = 0x00080061, 0x00080062
_COMPUTED = {
    "PATIENT": frozenset({_N_PATIENT_STUDIES, _N_PATIENT_SERIES, _N_PATIENT_INSTANCES}),
    "STUDY": frozenset({_N_STUDY_SERIES, _N_STUDY_INSTANCES, _MODALITIES_IN_STUDY, _SOP_CLASSES_IN_STUDY}),
}


def _copied(level: str, tag: int) -> bool:
    """Whether a PATIENT or STUDY record takes ``tag`` from its first instance."""
    return tag >> 16 == 0x0010 or tag in _PATIENT_TAGS or (level == "STUDY" and tag in _STUDY_TAGS)


def _keeps(level: str, tag: int) -> bool:
    """Whether a PATIENT or STUDY record holds ``tag`` (when it has a value)."""
    return _copied(level, tag) or tag in _COMPUTED[level]


def _ignores(level: str) -> Callable[[int], bool] | None:
    """The keys a query at ``level`` ignores for matching (see the module
    docstring), as a test on their tags; None at SERIES and IMAGE."""
    if level not in _COMPUTED:
        return None
    above = LEVELS[:LEVELS.index(level)]

    def ignored(tag: int) -> bool:
        if _keeps(level, tag):
            return False
        if is_private(tag) or lookup(tag) is None:
            return True                     # no level the archive can place it at
        return any(_keeps(up, tag) for up in above)     # of a level above, not kept here

    return ignored


class Entity:
    """One patient, study, series or instance: its record and its children.

    ``record`` is ``{tag: (vr, value)}``; ``children`` maps each child's
    unique key to its Entity; an instance has ``source`` (a path or a Dataset).
    """

    __slots__ = ("level", "uid", "record", "children", "parent", "source", "count")

    def __init__(self, level: str, uid: str, record: dict[int, tuple[str, Any]], parent: Entity | None,
                 source: Any = None) -> None:
        self.level = level
        self.uid = uid
        self.record = record
        self.children: dict[str, Entity] = {}
        self.parent = parent
        self.source = source
        self.count = 0  # instances below this entity

    def __repr__(self) -> str:
        return f"<Entity {self.level} {self.uid} ({len(self.children)} children)>"


def _record(ds: Dataset) -> dict[int, tuple[str, Any]]:
    record: dict[int, tuple[str, Any]] = {}
    for elem in ds:
        vr = elem.VR
        if vr in _BULK_VRS:
            length = elem.length
            if elem.tag == 0x7FE00010 or length is None or length > _MAX_RECORD_VALUE:
                continue
        record[elem.tag] = (vr, elem.value)
    return record


def _up(entity: Entity) -> Entity:
    """The parent of a patient, study or series (always set below the root)."""
    parent = entity.parent
    assert parent is not None
    return parent


def _text(record: dict[int, tuple[str, Any]], tag: int) -> str:
    found = record.get(tag)
    value = found[1] if found is not None else None
    if isinstance(value, list):
        value = value[0] if value else None
    return "" if value is None else str(value).strip("\0 ")


class Archive:
    """Instances indexed by Patient ID, Study, Series and SOP Instance UID.

    ``pn_case_sensitive`` and ``combined_datetime`` are the matching options of
    :func:`~dicomnet.samples.matching.compile_query`.
    """

    def __init__(self, *, pn_case_sensitive: bool = False, logger: logging.Logger | None = None) -> None:
        self._lock = threading.RLock()
        self._patients: dict[str, Entity] = {}
        self._index: dict[str, dict[str, Entity]] = {level: {} for level in LEVELS}
        self._root = Entity("ROOT", "", {}, None)
        self._root.children = self._patients
        self.pn_case_sensitive = pn_case_sensitive
        self.duplicates = 0
        self.logger = logger or log

    # -------------------------------------------------------------- filling
    @classmethod
    def from_synthetic(cls, **kwargs: Any) -> Archive:
        """An archive of :func:`dicomnet.samples.synthetic.generate` (``**kwargs``) data."""
        from dicomnet.samples.synthetic import generate

        archive = cls()
        for ds in generate(**kwargs):
            archive.add(ds)
        return archive

    def __len__(self) -> int:
        return len(self._index["IMAGE"])

    def __contains__(self, sop_instance_uid: object) -> bool:
        return sop_instance_uid in self._index["IMAGE"]

    def counts(self) -> dict[str, int]:
        """How many patients, studies, series and instances are held."""
        with self._lock:
            return {level: len(entities) for level, entities in self._index.items()}

    def add(self, ds: Dataset, path: str | os.PathLike[str] | None = None) -> bool:
        """Add one instance (``path``: its file, sent from disk on retrieval).

        Returns False for a duplicate SOP Instance UID: the first copy is kept
        (as Orthanc does by default) and a warning is logged. Raises
        :class:`DicomParseError` when Study/Series/SOP Instance UID is missing.
        """
        record = _record(ds)
        uids = {}
        for level in ("STUDY", "SERIES", "IMAGE"):
            uid = _text(record, UNIQUE_KEYS[level])
            if not uid:
                name = {"STUDY": "Study Instance UID", "SERIES": "Series Instance UID",
                        "IMAGE": "SOP Instance UID"}[level]
                raise DicomParseError(f"cannot archive an instance without a {name}")
            uids[level] = uid
        patient_id = _text(record, PATIENT_ID)
        source: Any = os.fspath(path) if path is not None else ds
        with self._lock:
            if uids["IMAGE"] in self._index["IMAGE"]:
                self.duplicates += 1
                self.logger.warning("duplicate SOP Instance UID %s%s: keeping the first copy", uids["IMAGE"],
                                    f" ({source})" if path is not None else "")
                return False
            patient = self._patients.get(patient_id)
            if patient is None:
                patient = self._new(self._root, "PATIENT", patient_id, {
                    t: v for t, v in record.items() if _copied("PATIENT", t)})
            study = self._index["STUDY"].get(uids["STUDY"])
            if study is None:
                study = self._new(patient, "STUDY", uids["STUDY"], {
                    t: v for t, v in record.items() if _copied("STUDY", t)})
                study.record[_MODALITIES_IN_STUDY] = ("CS", [])
                study.record[_SOP_CLASSES_IN_STUDY] = ("UI", [])
            elif study.parent is not patient:
                self.logger.warning("study %s arrived with Patient ID %r but is filed under %r",
                                    uids["STUDY"], patient_id, _up(study).uid)
                patient = _up(study)
            series = self._index["SERIES"].get(uids["SERIES"])
            if series is None:
                series = self._new(study, "SERIES", uids["SERIES"], {
                    t: v for t, v in record.items() if t not in (SOP_INSTANCE_UID, _INSTANCE_NUMBER)})
                self._add_to_list(study, _MODALITIES_IN_STUDY, "CS", _text(record, _MODALITY))
            elif series.parent is not study:
                self.logger.warning("series %s arrived under study %s but is filed under %s",
                                    uids["SERIES"], uids["STUDY"], _up(series).uid)
                study = _up(series)
                patient = _up(study)
            self._add_to_list(study, _SOP_CLASSES_IN_STUDY, "UI", _text(record, _SOP_CLASS_UID))
            self._new(series, "IMAGE", uids["IMAGE"], record, source)
            for entity, tag in ((series, _N_SERIES_INSTANCES), (study, _N_STUDY_INSTANCES),
                                (patient, _N_PATIENT_INSTANCES)):
                entity.count += 1
                entity.record[tag] = ("IS", entity.count)
            study.record[_N_STUDY_SERIES] = ("IS", len(study.children))
            patient.record[_N_PATIENT_STUDIES] = ("IS", len(patient.children))
            patient.record[_N_PATIENT_SERIES] = ("IS", sum(len(s.children) for s in patient.children.values()))
        return True

    def _new(self, parent: Entity, level: str, uid: str, record: dict[int, tuple[str, Any]],
             source: Any = None) -> Entity:
        entity = Entity(level, uid, record, parent, source)
        parent.children[uid] = entity
        self._index[level][uid] = entity
        return entity

    @staticmethod
    def _add_to_list(entity: Entity, tag: int, vr: str, value: str) -> None:
        current = entity.record[tag][1]
        if value and value not in current:
            entity.record[tag] = (vr, sorted([*current, value]))

    def add_path(self, path: str | os.PathLike[str]) -> int:
        """Add a Part 10 file, or every DICOM file under a folder (recursively).

        Files that are not DICOM (or lack the UIDs an archive needs) are skipped
        with a logged warning. Returns how many instances were added.
        """
        path = os.fspath(path)
        if os.path.isdir(path):
            files: Iterable[str] = (os.path.join(folder, name) for folder, _, names in sorted(os.walk(path))
                                    for name in sorted(names))
        else:
            files = [path]
        added = 0
        for name in files:
            try:
                ds = read_file(name, stop_before_pixels=True)
                if "SOPInstanceUID" not in ds and ds.file_meta is None:
                    raise DicomParseError("no File Meta and no SOP Instance UID: not a DICOM instance")
                added += self.add(ds, name)
            except (DicomNetError, OSError, ValueError) as exc:
                self.logger.warning("skipping %s: %s", name, exc)
        return added

    # -------------------------------------------------------------- queries
    def _candidates(self, query: Dataset, model: str, level: str) -> list[Entity]:
        """Entities at ``level`` under the unique-key values the query gives
        (a single value or a UID list narrows; anything else keeps every child)."""
        levels = model_levels(model)
        top = levels[0]
        current: list[Entity] = (list(self._patients.values()) if top == "PATIENT"
                                 else list(self._index["STUDY"].values()))
        for depth, name in enumerate(levels[:levels.index(level) + 1]):
            if depth > 0:
                current = [child for entity in current for child in entity.children.values()]
            wanted = _exact_values(query, UNIQUE_KEYS[name])
            if wanted is not None:
                current = [e for e in current if e.uid in wanted]
        return current

    def _match(self, query: Dataset, model: str, *, retrieve: bool, relational: bool,
               combined_datetime: bool) -> tuple[CompiledQuery, list[Entity]]:
        compiled = compile_query(query, model, pn_case_sensitive=self.pn_case_sensitive,
                                 combined_datetime=combined_datetime, relational=relational,
                                 retrieve=retrieve)
        level = compiled.level
        assert level is not None
        if not retrieve:
            ignored = _ignores(level)
            if ignored is not None:
                compiled = compiled.ignoring(ignored)
        with self._lock:
            candidates = self._candidates(query, model, level)
            if retrieve:
                return compiled, candidates       # retrieval matches on unique keys only
            return compiled, [e for e in candidates if compiled.matches(e.record)]

    def find(self, query: Dataset, model: str = "study", *, relational: bool = False,
             combined_datetime: bool = False) -> Matches:
        """C-FIND: the response Identifiers matching ``query`` (PS3.4 C.4.1).

        ``model`` is "patient" or "study" (or a Q/R SOP Class UID). Raises
        :class:`~dicomnet.errors.QueryError` (with ``.status``) before yielding
        anything when the level or a unique key above it is wrong. The
        :class:`Matches` returned iterates over the Identifiers; its
        ``ignored`` names the optional keys the query was not matched on
        (see the module docstring).
        """
        compiled, matches = self._match(query, model, retrieve=False, relational=relational,
                                        combined_datetime=combined_datetime)
        return Matches((compiled.identifier(entity.record) for entity in matches), compiled.ignored)

    def instances_for(self, query: Dataset, model: str = "study", *, relational: bool = False) -> list[Any]:
        """C-MOVE/C-GET: every instance under the entities the Identifier names.

        Hierarchical retrieval (PS3.4 C.4.2.2.1, C.4.3.2.1): the unique keys of
        the levels above the Query/Retrieve Level with a single value each, and
        the level's own unique key (one value or a list of UIDs); other keys
        are not used. ``relational`` (negotiated) drops the need for the keys
        above. Returns the file path of each instance read from disk, else its
        Dataset, in archive order.
        """
        _, entities = self._match(query, model, retrieve=True, relational=relational,
                                  combined_datetime=False)
        out: list[Any] = []
        with self._lock:
            stack = list(reversed(entities))
            while stack:
                entity = stack.pop()
                if entity.level == "IMAGE":
                    source = entity.source
                    # A path names its instance too: a file gone since it was
                    # indexed is still listed among the failed ones.
                    out.append(source if isinstance(source, Dataset) else InstancePath(source, entity.uid))
                else:
                    stack.extend(reversed(list(entity.children.values())))
        return out

    def get(self, sop_instance_uid: str) -> Any:
        """The path or Dataset of one instance; KeyError if unknown."""
        with self._lock:
            return self._index["IMAGE"][sop_instance_uid].source

    def entity(self, level: str, uid: str) -> Entity:
        """The Entity at ``level`` ("PATIENT", "STUDY", "SERIES", "IMAGE") with this unique key."""
        if level not in self._index:
            raise QueryError(f"unknown level {level!r}", STATUS_UNABLE_TO_PROCESS)
        with self._lock:
            return self._index[level][uid]


class Matches(Iterator[Dataset]):
    """The response Identifiers of one :meth:`Archive.find`, as an iterator.

    ``ignored`` holds the tags of the optional keys the query was not matched
    on (PS3.4 C.2.2.1.3), in the Identifier's order: an SCP answers each match
    with Pending 0xFF01 instead of 0xFF00 when there are any.
    """

    __slots__ = ("_identifiers", "ignored")

    def __init__(self, identifiers: Generator[Dataset, None, None], ignored: tuple[int, ...] = ()) -> None:
        self._identifiers = identifiers
        self.ignored = ignored

    def __iter__(self) -> Matches:
        return self

    def __next__(self) -> Dataset:
        return next(self._identifiers)

    def close(self) -> None:
        """Stop early (as a generator's ``close``)."""
        self._identifiers.close()


def _exact_values(query: Dataset, tag: int) -> frozenset[str] | None:
    """The set of exact values a unique key asks for, or None (universal or wild card)."""
    if tag not in query:
        return None
    value = query[tag].value
    values = value if isinstance(value, list) else [value]
    out = set()
    for v in values:
        text = "" if v is None else str(v).strip("\0 ")
        if not text or "*" in text or "?" in text or text == '""':
            return None
        out.add(text)
    return frozenset(out)

