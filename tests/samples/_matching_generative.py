"""Shared machinery of the generative C-FIND matching tests (``test_matching_generative_*.py``,
``test_matching_faults.py``).

Random small archives (Patient / Study / Series / Image trees) and Modality Worklist
entries, random Identifiers for them (choices drawn with hypothesis, or from a seeded
``random.Random``), the checks of the answers -- which entities match, and every
response Identifier: the keys it holds and their values, sequence items included --
against :mod:`tests.samples._matching_oracle`, and the loopback servers the network
tests query.
"""
from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck
from hypothesis import strategies as st

from dicomnet import Client, Server
from dicomnet.dicom import Dataset
from dicomnet.errors import DicomEncodeError
from dicomnet.samples.archive import Archive
from dicomnet.samples.matching import compile_query
from dicomnet.samples.synthetic import derived_uid
from tests.integration.peers import HOST
from tests.integration.test_qr_matching_differential import UNIQUE
from tests.samples._matching_oracle import (
    ALL_REQUIRED, COMPUTED, DICOMNET, ITEM_KEYS, KEYWORD, LEVEL_KEYS, LEVELS, REQUIRED, SETS, VR, WL_KEYS, Choices,
    Policy, Verdict, dt_span, entity_verdict, is_universal, policy, tm_span, wl_empty,
)

EXPLICIT = "1.2.840.10008.1.2.1"
WORKLIST = "1.2.840.10008.5.1.4.31"
SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.7")
UNKNOWN_UID = "2.25.1"
SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ------------------------------------------------------------------ value pools
NAMES = {"": ("Smith", "SMITH", "smith", "Doe", "Jane", "JANE", "John", "Q", "Jr", "Yamada", "Tarou", "O'Neil"),
         "ISO_IR 100": ("Müller", "MÜLLER", "müller", "Ødegård", "José", "JOSÉ", "Ñúñez"),
         "ISO_IR 192": ("Łukasz", "ŁUKASZ", "Ελένη", "ΕΛΈΝΗ", "Жук", "жук")}
GROUPS = ("山田^太郎", "中村^由紀", "山田", "やまだ^たろう", "なかむら")
WORDS = {"": ("CT", "HEAD", "Chest", "chest", "W/O", "50%", "a_b", "[x]", "(y)", "x.y", "A+B", "^", "*", "?", "**",
              "Pre-op", "x=y"),
         "ISO_IR 100": ("Épaule", "ÉPAULE", "tête", "Tête", "çà", "Ø"),
         "ISO_IR 192": ("頭部", "Łódź", "ŁÓDŹ", "Ελλάδα", "Жук")}
DATES = ("20191231", "20200101", "20200102", "20200115", "20200131", "20200201", "20201231", "20210101")
TIMES = ("00", "0000", "000000", "09", "0930", "093000", "093000.5", "10", "1010", "101010", "101010.5",
         "101010.50", "101010.123456", "115959.999999", "12", "1200", "120000", "235959", "235959.999999")
DATETIMES = ("2020", "202001", "20200101", "2020010112", "202001011200", "20200101120000", "20200101120000.5",
             "20191231235959.999999", "20200102093000", "2020010209", "2021")
MODALITIES = ("CT", "MR", "PT", "OT")
CS_WORDS = ("CT", "MR", "HEAD", "CHEST", "HEAD NECK", "ORIGINAL", "PRIMARY", "AXIAL", "A_B")
IMAGE_TYPES = (("ORIGINAL", "PRIMARY"), ("ORIGINAL", "PRIMARY", "AXIAL"), ("DERIVED", "SECONDARY"))
SH_WORDS = ("A1", "A10", "a1", "ACC 1", "A_1", "A%1", "A*1", "A?1", "1", "10", "101", "S1")
STATIONS = ("CT01", "CT_2", "MR 1", "ct01")
CODES = ("P1", "P2", "p1", "P?", "P%")


class Picker:
    """Choices from hypothesis (``data.draw``) or from a seeded ``random.Random``."""

    def __init__(self, data: Any = None, seed: int = 0) -> None:
        self.data = data
        self.rng = random.Random(seed)

    def one(self, options: Sequence[Any]) -> Any:
        if self.data is not None:
            return self.data.draw(st.sampled_from(options))
        return self.rng.choice(options)

    def chance(self, n: int) -> bool:
        """One chance in ``n``."""
        return self.one(range(n)) == 0

    def some(self, options: Sequence[Any], most: int, least: int = 0) -> list[Any]:
        pool, out = list(options), []
        for _ in range(min(self.one(range(least, most + 1)), len(pool))):
            out.append(self.one(pool))
            pool.remove(out[-1])
        return out


@dataclass(frozen=True)
class Gen:
    """What the generators may produce (peers and known faults need less)."""

    charsets: tuple[str, ...] = ("", "ISO_IR 100", "ISO_IR 192")
    empty_required: bool = True       # Required Keys of zero length or absent
    whole_sequences: bool = True      # universal sequence keys (returned whole)
    multi: bool = True                # several values in a key
    empty_value: bool = True          # '""' keys
    patients: tuple[int, ...] = (1, 2, 3)
    keys: dict[str, tuple[str, ...]] = field(default_factory=lambda: LEVEL_KEYS)


def repertoire(pools: dict[str, tuple[str, ...]], charset: str) -> tuple[str, ...]:
    wanted = {"": ("",), "ISO_IR 100": ("", "ISO_IR 100"), "ISO_IR 192": ("", "ISO_IR 100", "ISO_IR 192")}
    return tuple(w for cs in wanted[charset] for w in pools[cs])


def text(pick: Picker, charset: str) -> str:
    return " ".join(pick.some(repertoire(WORDS, charset), 3, 1))


def person(pick: Picker, charset: str) -> str:
    name = "^".join(pick.some(repertoire(NAMES, charset), 3, 1))
    if charset == "ISO_IR 192" and pick.chance(2):
        name += "=" + "=".join(pick.some(GROUPS, 2, 1))
    return name


def put(pick: Picker, attrs: dict[str, Any], keyword: str, make: Callable[[], Any], gen: Gen) -> None:
    """Set ``keyword`` to a value, zero length or nothing (not for Required Keys unless ``gen`` says so)."""
    roll = pick.one(range(7))
    if roll < 2 and (gen.empty_required or keyword not in ALL_REQUIRED):
        if roll:
            attrs[keyword] = ()
        return
    value = make()
    attrs[keyword] = value if isinstance(value, (tuple, list)) else (str(value),)


def code_items(pick: Picker, charset: str, gen: Gen) -> list[dict[str, Any]]:
    items = []
    for _ in range(pick.one((0, 1, 1, 2))):
        item: dict[str, Any] = {}
        put(pick, item, "CodeValue", lambda: pick.one(CODES), gen)
        item["CodingSchemeDesignator"] = (pick.one(("99X", "DCM")),)
        put(pick, item, "CodeMeaning", lambda: text(pick, charset), gen)
        items.append(item)
    return items


# ------------------------------------------------------------------ archives
@dataclass(eq=False)
class Node:
    """A patient, study, series or instance: ``attrs`` keyword -> tuple of strings (or list of items)."""

    level: str
    attrs: dict[str, Any]
    charset: str
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)

    @property
    def uid(self) -> str:
        return self.attrs[UNIQUE[self.level]][0]

    def chain(self) -> dict[str, Node]:
        node: Node | None = self
        out = {}
        while node is not None:
            out[node.level] = node
            node = node.parent
        return out

    def view(self) -> dict[str, Any]:
        """The attributes of this entity as a query at its level sees them."""
        if self.level == "STUDY" and self.parent is not None:
            return {**self.parent.attrs, **self.attrs}
        return self.attrs

    def instances(self) -> list[Node]:
        return [self] if self.level == "IMAGE" else [i for c in self.children for i in c.instances()]


def make_tree(pick: Picker, gen: Gen) -> list[Node]:
    patients = []
    for p in range(pick.one(gen.patients)):
        cs = pick.one(gen.charsets)
        suffix = pick.one(("", "%", "_x", ".1") + (("é",) if cs else ()))
        patient = Node("PATIENT", {"PatientID": (f"P{p}{suffix}",)}, cs)
        for kw, make in (("PatientName", lambda: person(pick, cs)), ("PatientBirthDate", lambda: pick.one(DATES)),
                         ("PatientSex", lambda: pick.one(("M", "F", "O"))),
                         ("PatientComments", lambda: text(pick, cs))):
            put(pick, patient.attrs, kw, make, gen)
        patients.append(patient)
        for s in range(pick.one((1, 2))):
            study = Node("STUDY", {"StudyInstanceUID": (derived_uid(p, "gen", s),)}, cs, patient)
            for kw, make in (("StudyDate", lambda: pick.one(DATES)), ("StudyTime", lambda: pick.one(TIMES)),
                             ("AccessionNumber", lambda: pick.one(SH_WORDS)),
                             ("StudyID", lambda: pick.one(SH_WORDS)),
                             ("ReferringPhysicianName", lambda: person(pick, cs)),
                             ("StudyDescription", lambda: text(pick, cs)),
                             ("ProcedureCodeSequence", lambda: code_items(pick, cs, gen))):
                put(pick, study.attrs, kw, make, gen)
            patient.children.append(study)
            for e in range(pick.one((1, 2))):
                series = Node("SERIES", {"SeriesInstanceUID": (derived_uid(p, "gen", s, e),)}, cs, study)
                for kw, make in (("Modality", lambda: pick.one(MODALITIES)),
                                 ("SeriesNumber", lambda: pick.one((1, 2, 3))),
                                 ("SeriesDescription", lambda: text(pick, cs)),
                                 ("SeriesDate", lambda: pick.one(DATES)), ("SeriesTime", lambda: pick.one(TIMES)),
                                 ("BodyPartExamined", lambda: pick.one(CS_WORDS))):
                    put(pick, series.attrs, kw, make, gen)
                study.children.append(series)
                for i in range(pick.one((1, 2))):
                    image = Node("IMAGE", {"SOPInstanceUID": (derived_uid(p, "gen", s, e, i),),
                                           "SOPClassUID": (pick.one(SOP_CLASSES),)}, cs, series)
                    for kw, make in (("InstanceNumber", lambda: pick.one((1, 2, 3))),
                                     ("ContentDate", lambda: pick.one(DATES)),
                                     ("ContentTime", lambda: pick.one(TIMES)),
                                     ("ImageType", lambda: pick.one(IMAGE_TYPES)),
                                     ("AcquisitionDateTime", lambda: pick.one(DATETIMES)),
                                     ("ImageComments", lambda: text(pick, cs))):
                        put(pick, image.attrs, kw, make, gen)
                    series.children.append(image)
    for patient in patients:    # the counts and lists of PS3.4 C.6.1.1.2-4, C.6.2.1.2-3
        series_all = [e for s in patient.children for e in s.children]
        patient.attrs.update(NumberOfPatientRelatedStudies=(str(len(patient.children)),),
                             NumberOfPatientRelatedSeries=(str(len(series_all)),),
                             NumberOfPatientRelatedInstances=(str(len(patient.instances())),))
        for study in patient.children:
            study.attrs.update(
                NumberOfStudyRelatedSeries=(str(len(study.children)),),
                NumberOfStudyRelatedInstances=(str(len(study.instances())),),
                ModalitiesInStudy=tuple(sorted({e.attrs["Modality"][0] for e in study.children
                                                if e.attrs.get("Modality")})),
                SOPClassesInStudy=tuple(sorted({i.attrs["SOPClassUID"][0] for i in study.instances()})))
            for e in study.children:
                e.attrs["NumberOfSeriesRelatedInstances"] = (str(len(e.children)),)
    return patients


def entities(tree: list[Node], level: str) -> list[Node]:
    found = tree
    for _ in range(LEVELS["patient"].index(level)):
        found = [c for e in found for c in e.children]
    return found


def dicom_value(keyword: str, value: Any) -> Any:
    if VR[keyword] == "SQ":
        return [item_dataset(item) for item in value]
    if not value:
        return None if VR[keyword] == "IS" else ""
    values = [int(v) for v in value] if VR[keyword] == "IS" else list(value)
    return values[0] if len(values) == 1 else values


def item_dataset(item: dict[str, Any]) -> Dataset:
    ds = Dataset()
    for keyword, value in item.items():
        ds.set(keyword, dicom_value(keyword, value))
    return ds


def instance_datasets(tree: list[Node]) -> Iterator[Dataset]:
    for image in entities(tree, "IMAGE"):
        ds = item_dataset({k: v for node in image.chain().values() for k, v in node.attrs.items()
                           if k not in COMPUTED})
        if image.charset:
            ds.set("SpecificCharacterSet", image.charset)
        yield ds


def build_archive(tree: list[Node]) -> Archive:
    archive = Archive()
    for ds in instance_datasets(tree):
        assert archive.add(ds)
    return archive


# ------------------------------------------------------------------ queries
def key_for(pick: Picker, keyword: str, values: Any, charset: str, gen: Gen) -> Any:
    """A random key for ``keyword``, mostly made from ``values`` (an entity's) so that it matches now and then."""
    vr = VR[keyword]
    if vr == "SQ":
        return sequence_key(pick, keyword, values or [], charset, gen)
    if gen.multi and vr not in ("UI", "LT", "ST", "UT") and pick.chance(9):     # (LT: a backslash is text)
        single = replace_gen(gen, multi=False, empty_value=False)
        keys = [k for k in (key_for(pick, keyword, values, charset, single) for _ in range(2)) if k != ""]
        return keys if len(keys) > 1 else keys[0] if keys else None
    if gen.empty_value and vr not in ("UI", "IS") and pick.chance(15):
        return '""'
    base = pick.one(values) if values else None
    if vr == "UI":
        pool = [base or UNKNOWN_UID, UNKNOWN_UID, *SOP_CLASSES, "1.2.840.10008.5.1.4.1.1.*"]   # (literal)
        return pick.one(pool) if pick.chance(2) else pick.some(pool, 3, 2)
    if vr == "IS":
        return str(int(base) + pick.one((0, 0, 1)) if base else pick.one((1, 2, 3)))
    if vr in ("DA", "TM", "DT"):
        pool = {"DA": DATES, "TM": TIMES, "DT": DATETIMES}[vr]
        a, b = base or pick.one(pool), pick.one(pool)
        if vr != "DA":
            first = tm_span if vr == "TM" else dt_span
            a, b = sorted((a, b), key=lambda x: first(x)[0])
        else:
            a, b = sorted((a, b))
        return pick.one((a, f"{a}-{b}", f"-{b}", f"{a}-", base or b, *(("2020*",) if vr == "DA" else ())))
    if base is None:
        base = {"PN": person, "LO": text, "LT": text}.get(vr, lambda p, c: p.one(SH_WORDS + CS_WORDS))(pick, charset)
    if vr == "PN" and "=" in base and pick.chance(2):
        base = pick.one(base.split("="))
    key = base
    op = pick.one(range(12))
    if op == 1:
        key = pick.one((base.swapcase(), base.upper(), base.lower()))
    elif op in (2, 3):
        spots = pick.some(range(len(base)), 2, 1)
        key = "".join("?" if i in spots else c for i, c in enumerate(base))
    elif op in (4, 5, 6):
        i, j = sorted((pick.one(range(len(base) + 1)), pick.one(range(len(base) + 1))))
        key = base[:i] + "*" + base[j:]
        if op == 6:
            key = "*" + key[1:] if key and key[0] != "*" else key
    elif op == 7:
        key = pick.one(("*", "?", "**", "*?*", "???", "*?", "?*?"))
    elif op == 8:
        key = {"PN": person, "LO": text, "LT": text}.get(vr, lambda p, c: p.one(SH_WORDS + CS_WORDS))(pick, charset)
    elif op == 9:
        key = base[:-1]
    elif op == 10:
        key = (base.swapcase() + "*") if pick.chance(2) else "*" + base[1:].swapcase()
    return key.strip(" ")


def replace_gen(gen: Gen, **changes: Any) -> Gen:
    return Gen(**{**gen.__dict__, **changes})


def sequence_key(pick: Picker, keyword: str, items: list[dict[str, Any]], charset: str, gen: Gen) -> Any:
    if gen.whole_sequences and pick.chance(5):
        return pick.one(([], [{}]))
    source = pick.one(items) if items else {}
    spec: dict[str, Any] = {}
    for kw in pick.some(ITEM_KEYS[keyword], 3, 1):
        if pick.chance(3) and (VR[kw] != "SQ" or gen.whole_sequences):
            spec[kw] = None if VR[kw] != "SQ" else []
        else:
            spec[kw] = key_for(pick, kw, source.get(kw), charset, gen)
    return [spec]


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from strings(v)


def query_charset(pick: Picker, keys: list[tuple[str, Any]]) -> str:
    """A Specific Character Set that can encode the keys (C.2.2.2: it says how the keys are encoded)."""
    text = "".join(strings(keys))
    if any(ord(c) > 0xFF for c in text):
        return "ISO_IR 192"
    return pick.one(("", "", "ISO_IR 100") if text.isascii() else ("ISO_IR 100", "ISO_IR 192"))


@dataclass
class Query:
    model: str | None               # None: worklist
    level: str | None
    keys: list[tuple[str, Any]]
    above: dict[str, str]           # unique keys of the levels above: keyword -> value
    charset: str = ""

    def dataset(self) -> Dataset:
        ds = Dataset()
        if self.charset:
            ds.set("SpecificCharacterSet", self.charset)
        if self.level:
            ds.set("QueryRetrieveLevel", self.level)
        for keyword, value in [*self.above.items(), *self.keys]:
            ds.set(keyword, key_value(keyword, value))
        return ds


def key_value(keyword: str, value: Any) -> Any:
    if VR[keyword] == "SQ":
        return [key_item(item) for item in value]
    return (None if VR[keyword] == "IS" else "") if value is None else value


def key_item(spec: dict[str, Any]) -> Dataset:
    ds = Dataset()
    for keyword, value in spec.items():
        ds.set(keyword, key_value(keyword, value))
    return ds


def qr_query(pick: Picker, tree: list[Node], gen: Gen) -> Query:
    model = pick.one(("patient", "study"))
    level = pick.one(LEVELS[model])
    above_levels = LEVELS[model][:LEVELS[model].index(level)]
    above: dict[str, str] = {}
    pool = entities(tree, level)
    if above_levels:
        parent = pick.one(entities(tree, above_levels[-1]))
        chain = parent.chain()
        above = {UNIQUE[lv]: chain[lv].uid for lv in above_levels}
        if pick.chance(12):
            above[UNIQUE[above_levels[-1]]] = UNKNOWN_UID
        pool = parent.children
    keys: list[tuple[str, Any]] = []
    own, roll = UNIQUE[level], pick.one(range(6))
    if roll == 1:
        keys.append((own, pick.one(pool).uid if level != "PATIENT" else key_for(
            pick, own, pick.one(pool).attrs[own], "", replace_gen(gen, empty_value=False))))
    elif roll == 2:
        keys.append((own, [*(e.uid for e in pick.some(entities(tree, level), 2, 1)), UNKNOWN_UID]))
    else:
        keys.append((own, None))
    matchable = gen.keys[level] + (("PatientID", *gen.keys["PATIENT"][:4]) if (model, level) == ("study", "STUDY")
                                   else ())
    for keyword in pick.some(matchable, 4):
        source = pick.one(pool)
        keys.append((keyword, key_for(pick, keyword, source.view().get(keyword), source.charset, gen)))
    asked = {kw for kw, _ in keys}
    for keyword in pick.some([k for k in matchable if k not in asked], 3):
        keys.append((keyword, [] if VR[keyword] == "SQ" else None))
    if not gen.whole_sequences:
        keys = [(kw, k) for kw, k in keys if VR[kw] != "SQ" or (k and k[0])]
    return Query(model, level, keys, above, query_charset(pick, [*keys, *above.items()]))


def qr_expected(tree: list[Node], query: Query, ch: Choices, combined: bool = False) -> dict[str, Verdict]:
    """Unique key -> verdict for every entity at the query's level (hierarchical, C.4.1.3.1)."""
    assert query.model is not None and query.level is not None
    required = REQUIRED[(query.model, query.level)]
    out: dict[str, Verdict] = {}
    for node in entities(tree, query.level):
        chain = node.chain()
        if any(chain[lv].uid != query.above.get(UNIQUE[lv]) for lv in LEVELS[query.model]
               if UNIQUE[lv] in query.above):
            out[node.uid] = False
            continue
        out[node.uid] = entity_verdict(query.keys, node.view(), policy(required), ch,
                                       combined)
    return out


# ------------------------------------------------------------------ checking answers
ANY = "<either>"


def norm(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    values = value if isinstance(value, (list, tuple)) else [value]
    return tuple(str(v).rstrip(" ").rstrip("\0") for v in values)


def got_items(items: Any, spec: Any, problems: list[str], where: str) -> list[dict[str, Any]]:
    """Response items as dicts (only the keys of ``spec``; all when it is universal)."""
    whole = not spec or not spec[0]
    out = []
    for item in items or []:
        keywords = {KEYWORD.get(t, hex(t)) for t in item.tags()}
        if not whole and not keywords <= set(spec[0]):
            problems.append(f"{where}: item holds unrequested {sorted(keywords - set(spec[0]))} (C.2.2.2.6)")
        names = keywords if whole else spec[0]
        out.append({kw: got_items(item.get(kw), None if whole else spec[0][kw], problems, where)
                    if VR.get(kw) == "SQ" else norm(item.get(kw)) for kw in names
                    if not whole or kw in keywords})
    return out


def want_items(spec: Any, items: list[dict[str, Any]], ch: Choices, empty: Policy) -> Any:
    """The items a response must carry for a sequence key (ANY when the standard leaves it open)."""
    if not spec or not spec[0]:
        return [{kw: (want_items([], v, ch, empty) if VR[kw] == "SQ" else v) for kw, v in i.items()} for i in items]
    active = [(kw, k) for kw, k in spec[0].items() if not is_universal(kw, k)]
    out = []
    for item in items:
        verdict = entity_verdict(active, item, empty, ch, item_empty=empty) if active else True
        if verdict is None:
            return ANY
        if verdict:
            out.append({kw: want_items(k, item.get(kw) or [], ch, empty) if VR[kw] == "SQ"
                        else tuple(item.get(kw) or ()) for kw, k in spec[0].items()})
    return out


def same(got: Any, want: Any) -> bool:
    if want is ANY:
        return True
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(same(got[k], want[k]) for k in want)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and any(
            all(same(g, w) for g, w in zip(order, want)) for order in itertools.permutations(got))
    return got == want


def whole_sequence_with_wide_text(keys: list[tuple[str, Any]], attrs: dict[str, Any]) -> bool:
    """A sequence returned whole that holds non-ASCII text (the known charset fault)."""
    for keyword, key in keys:
        if VR[keyword] == "SQ" and attrs.get(keyword):
            if (not key or not key[0]) and not repr(attrs[keyword]).isascii():
                return True
            if key and key[0] and any(whole_sequence_with_wide_text(list(key[0].items()), item)
                                      for item in attrs[keyword]):
                return True
    return False


def check_identifier(ds: Dataset, node_attrs: dict[str, Any], query: Query, chain: dict[str, Node] | None,
                     ch: Choices, empty: Policy, network: bool) -> list[str]:
    problems: list[str] = []
    uid_kw = UNIQUE[query.level] if query.level else "StudyInstanceUID"
    where = f"{uid_kw}={norm(ds.get(uid_kw))}"
    expected = {kw for kw, _ in query.keys} | set(query.above)
    if query.level:
        expected.add("QueryRetrieveLevel")
    got = {KEYWORD.get(t, hex(t)) for t in ds.tags()}
    allowed = {"SpecificCharacterSet"} | ({"RetrieveAETitle"} if network and query.level else set())
    if expected - got or got - expected - allowed:
        problems.append(f"{where}: keys missing {sorted(expected - got)}, extra {sorted(got - expected - allowed)}")
    for keyword, key in query.keys:
        if VR[keyword] == "SQ":
            answer = got_items(ds.get(keyword), key, problems, where)
            want = want_items(key, node_attrs.get(keyword) or [], ch, empty)
            if not same(answer, want):
                problems.append(f"{where}: {keyword} items {answer}, PS3.4 C.2.2.2.6 {want}")
            continue
        answer, want = norm(ds.get(keyword)), tuple(node_attrs.get(keyword) or ())
        if keyword in SETS:
            answer, want = tuple(sorted(answer)), tuple(sorted(want))
        if answer != want:
            problems.append(f"{where}: {keyword} returned {answer}, the entity holds {want}")
    if query.level:
        assert chain is not None
        if norm(ds.get("QueryRetrieveLevel")) != (query.level,):
            problems.append(f"{where}: Query/Retrieve Level {ds.get('QueryRetrieveLevel')!r}")
        for level, node in chain.items():
            if UNIQUE[level] in query.above and norm(ds.get(UNIQUE[level])) != (node.uid,):
                problems.append(f"{where}: {UNIQUE[level]} {ds.get(UNIQUE[level])!r}, expected {node.uid}")
    if not network and not whole_sequence_with_wide_text(query.keys, node_attrs):
        try:
            ds.encode(EXPLICIT)
        except DicomEncodeError as exc:
            problems.append(f"{where}: the response cannot be encoded: {exc}")
    return problems


def check_qr(answers: list[Dataset], tree: list[Node], query: Query, ch: Choices, network: bool = False,
             combined: bool = False) -> list[str]:
    assert query.level is not None and query.model is not None
    want = qr_expected(tree, query, ch, combined)
    by_uid = {n.uid: n for n in entities(tree, query.level)}
    got: dict[str, Dataset] = {}
    problems = []
    for ds in answers:
        uid = norm(ds.get(UNIQUE[query.level]))
        if len(uid) != 1 or uid[0] not in by_uid or uid[0] in got:
            problems.append(f"unexpected or repeated answer {uid}")
            continue
        got[uid[0]] = ds
    for uid, verdict in want.items():
        if verdict is not None and verdict != (uid in got):
            problems.append(f"{query.level} {uid}: {'matched' if uid in got else 'not matched'}, PS3.4 says "
                            f"{'match' if verdict else 'no match'}")
    required = REQUIRED[(query.model, query.level)]
    for uid, ds in got.items():
        node = by_uid[uid]
        problems += check_identifier(ds, node.view(), query, node.chain(), ch,
                                     policy(required), network)
    return problems


def show(query: Query) -> str:
    return f"{query.model}/{query.level} above={query.above} keys={query.keys} charset={query.charset!r}"


# ------------------------------------------------------------------ worklist
def make_worklist(pick: Picker, gen: Gen) -> list[Node]:
    entries = []
    for n in range(pick.one((1, 2, 3, 4))):
        cs = pick.one(gen.charsets)
        attrs: dict[str, Any] = {"StudyInstanceUID": (derived_uid(n, "worklist"),)}
        for kw, make in (("PatientName", lambda: person(pick, cs)), ("PatientID", lambda: pick.one(SH_WORDS)),
                         ("AccessionNumber", lambda: pick.one(SH_WORDS)),
                         ("RequestedProcedureID", lambda: pick.one(SH_WORDS)),
                         ("ReferringPhysicianName", lambda: person(pick, cs)),
                         ("PatientBirthDate", lambda: pick.one(DATES)), ("PatientSex", lambda: pick.one("MFO")),
                         ("RequestedProcedureDescription", lambda: text(pick, cs))):
            put(pick, attrs, kw, make, gen)
        steps = []
        for _ in range(pick.one((1, 1, 2))):
            step: dict[str, Any] = {}
            for kw, make in (("ScheduledStationAETitle", lambda: pick.one(STATIONS)),
                             ("ScheduledProcedureStepStartDate", lambda: pick.one(DATES)),
                             ("ScheduledProcedureStepStartTime", lambda: pick.one(TIMES)),
                             ("Modality", lambda: pick.one(MODALITIES)),
                             ("ScheduledPerformingPhysicianName", lambda: person(pick, cs)),
                             ("ScheduledProcedureStepDescription", lambda: text(pick, cs)),
                             ("ScheduledProcedureStepID", lambda: pick.one(SH_WORDS)),
                             ("ScheduledProtocolCodeSequence", lambda: code_items(pick, cs, gen))):
                put(pick, step, kw, make, gen)
            steps.append(step)
        attrs["ScheduledProcedureStepSequence"] = steps
        entries.append(Node("WORKLIST", attrs, cs))
    return entries


def worklist_query(pick: Picker, entries: list[Node], gen: Gen) -> Query:
    source = pick.one(entries)
    uids = [e.attrs["StudyInstanceUID"][0] for e in pick.some(entries, 2, 1)]
    keys: list[tuple[str, Any]] = [("StudyInstanceUID", uids if pick.chance(4) else None)]
    for kw in pick.some(WL_KEYS, 3):
        keys.append((kw, None if pick.chance(3) else key_for(pick, kw, source.attrs.get(kw), source.charset, gen)))
    keys.append(("ScheduledProcedureStepSequence",
                 sequence_key(pick, "ScheduledProcedureStepSequence", source.attrs["ScheduledProcedureStepSequence"],
                              source.charset, gen)))
    return Query(None, None, keys, {}, query_charset(pick, keys))


def record(entry: Node) -> dict[int, tuple[str, Any]]:
    """A matching record ({tag: (VR, value)}, as compile_query takes them) of a worklist entry."""
    ds = item_dataset(entry.attrs)
    if entry.charset:
        ds.set("SpecificCharacterSet", entry.charset)
    return {e.tag: (e.VR, e.value) for e in ds}


def check_worklist(answers: list[Dataset], entries: list[Node], query: Query, network: bool = False) -> list[str]:
    by_uid = {e.attrs["StudyInstanceUID"][0]: e for e in entries}
    got = {norm(ds.get("StudyInstanceUID"))[0]: ds for ds in answers}
    problems = [] if len(got) == len(answers) else [f"repeated answers: {len(answers)} for {len(got)} entries"]
    for uid, entry in by_uid.items():
        verdict = entity_verdict(query.keys, entry.attrs, wl_empty, DICOMNET, item_empty=wl_empty)
        if verdict is not None and verdict != (uid in got):
            problems.append(f"worklist entry {uid}: {'matched' if uid in got else 'not matched'}, "
                            f"PS3.4 K.6.1.2 / C.2.2.2 says {'match' if verdict else 'no match'}")
    for uid, ds in got.items():
        problems += check_identifier(ds, by_uid[uid].attrs, query, None, DICOMNET, wl_empty, network)
    return problems


# ------------------------------------------------------------------ over the network
class Scp:
    """A server on loopback with one association kept open (re-opened if it was lost)."""

    def __init__(self, stack: ExitStack, handler: Any, contexts: Any) -> None:
        self.handler = handler
        self.server = Server("GENSCP", handler, contexts=contexts, require_called_ae=False, read_timeout=10,
                             dimse_timeout=10).start(HOST, 0)
        stack.callback(self.server.shutdown)
        stack.callback(self.close)
        self._assoc: Any = None

    def find(self, query: Query) -> list[Dataset]:
        if self._assoc is None or not self._assoc.is_established:
            self._assoc = Client("GENSCU", dimse_timeout=10).associate(HOST, self.server.port, "GENSCP")
        return list(self._assoc.find(query.dataset(), model=query.model or "worklist"))

    def close(self) -> None:
        if self._assoc is not None and self._assoc.is_established:
            self._assoc.release()


class WorklistHandler:
    """A worklist SCP over dicomnet's matching module (the sample server serves no worklist)."""

    records: list[dict[int, tuple[str, Any]]] = []

    def on_find(self, ctx: Any, query: Dataset) -> list[Dataset]:
        compiled = compile_query(query)
        return [compiled.identifier(r) for r in self.records if compiled.matches(r)]
