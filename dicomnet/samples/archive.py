"""An in-memory Query/Retrieve archive: the data behind the sample server.

:class:`Archive` holds instances (Datasets, or Part 10 files it read) in a
Patient / Study / Series / Instance tree with an index by each level's unique
key, answers C-FIND with :meth:`Archive.find` and gives the instances a C-MOVE
or C-GET has to send with :meth:`Archive.instances_for`.

Each entity keeps a *record*: the decoded attributes of its first instance that
belong to its level and the levels above, plus the counts and lists the
standard defines for query responses (Number of Study Related Instances,
Modalities in Study, ...). A study's record holds the patient and study
attributes (PS3.4 C.6.1.1.2-3 and C.6.2.1.2); a series' record every attribute
of its first instance except the instance's own identity; an image's record
every attribute of the instance but Pixel Data and other bulk values.

Thread safety: one lock guards every change and every index walk; matching
runs under it into a list and the response Identifiers are built after it is
released, so a slow peer never holds the archive.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from dicomnet.dicom.dataset import Dataset
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

__all__ = ["Archive", "Entity"]

log = logging.getLogger("dicomnet")

_SPECIFIC_CHARACTER_SET = 0x00080005
_SOP_CLASS_UID = 0x00080016
_MODALITY = 0x00080060
_INSTANCE_NUMBER = 0x00200013
_BULK_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})
_MAX_RECORD_VALUE = 4096  # bigger binary values are not kept in records

#: Study-level attributes besides group 0010 (PS3.4 Tables C.6-5, C.6-9).
_STUDY_TAGS = frozenset({
    0x00080020, 0x00080030, 0x00080050, 0x00080051, 0x00080090, 0x00080096, 0x00081030, 0x00081032,
    0x00081048, 0x00081049, 0x00081060, 0x00081062, 0x00081080, 0x00081084, 0x0020000D, 0x00200010,
    0x00201070, 0x00204000, 0x00321033, 0x00321034, 0x00380010, 0x00380014, 0x00080201,
})
# Counts and lists computed per entity (PS3.4 C.6.1.1.2-4, C.6.2.1.2-3).
_N_PATIENT_STUDIES, _N_PATIENT_SERIES, _N_PATIENT_INSTANCES = 0x00201200, 0x00201202, 0x00201204
_N_STUDY_SERIES, _N_STUDY_INSTANCES, _N_SERIES_INSTANCES = 0x00201206, 0x00201208, 0x00201209
_MODALITIES_IN_STUDY, _SOP_CLASSES_IN_STUDY = 0x00080061, 0x00080062


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
                    t: v for t, v in record.items() if t >> 16 == 0x0010 or t == _SPECIFIC_CHARACTER_SET})
            study = self._index["STUDY"].get(uids["STUDY"])
            if study is None:
                study = self._new(patient, "STUDY", uids["STUDY"], {
                    t: v for t, v in record.items()
                    if t >> 16 == 0x0010 or t in _STUDY_TAGS or t == _SPECIFIC_CHARACTER_SET})
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
        assert compiled.level is not None
        with self._lock:
            candidates = self._candidates(query, model, compiled.level)
            if retrieve:
                return compiled, candidates       # retrieval matches on unique keys only
            return compiled, [e for e in candidates if compiled.matches(e.record)]

    def find(self, query: Dataset, model: str = "study", *, relational: bool = False,
             combined_datetime: bool = False) -> Iterator[Dataset]:
        """C-FIND: the response Identifiers matching ``query`` (PS3.4 C.4.1).

        ``model`` is "patient" or "study" (or a Q/R SOP Class UID). Raises
        :class:`~dicomnet.errors.QueryError` (with ``.status``) before yielding
        anything when the level or a unique key above it is wrong.
        """
        compiled, matches = self._match(query, model, retrieve=False, relational=relational,
                                        combined_datetime=combined_datetime)
        return (compiled.identifier(entity.record) for entity in matches)

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

