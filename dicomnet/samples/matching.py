"""C-FIND key matching (PS3.4 C.2.2.2) and Query/Retrieve identifiers (PS3.4 C.4).

A query Identifier is compiled once into a :class:`CompiledQuery`; it then tests
*records* -- plain ``{tag: (vr, value)}`` dicts of decoded values, as
:class:`~dicomnet.samples.archive.Archive` keeps them -- and builds the response
Identifier of a match.

Matching (PS3.4 C.2.2.2), per key of the request:

* Universal (C.2.2.2.3): an empty value (or a lone ``*``, C.2.2.2.4 note)
  matches everything, present or not; the key is only returned.
* Empty Value (C.2.2.2.1 in current editions): ``""`` (two QUOTATION MARKs)
  matches entities whose attribute is empty or absent.
* Single Value (C.2.2.2.1): exact and case-sensitive, after removing the
  padding PS3.5 calls insignificant. PN: the standard lets an SCP match
  literally either case-sensitively or not; we are case-insensitive by default
  (``pn_case_sensitive=True`` to change that) -- which only adds matches: a
  value that matches as it is still does ("Stra?e" matches "Straße") -- and a
  key without ``=`` also matches any one component group of a multi-group name.
* List of UID (C.2.2.2.2): a UI key of several backslash-separated UIDs.
* Wild Card (C.2.2.2.4): ``*`` and ``?`` in AE CS LO LT PN SH ST UC UR UT keys;
  elsewhere they are literal characters.
* Range (C.2.2.2.5.1): ``a-b``, ``-b``, ``a-`` on DA, TM, DT, inclusive. Partial
  times are ranges themselves: a lower bound ``10`` is 10:00:00.000000, an
  upper bound ``11`` runs to 11:59:59.999999, and a single TM/DT value is
  matched as the range it denotes. A DT that names its offset from UTC is
  compared in UTC (a value without one, as it is). Combined DA+TM range
  matching (C.2.2.2.5.2) applies only when the SCU asked for it by Extended
  Negotiation (``combined_datetime=True``), and only to a date and a time key
  that are ranges of the same form; other pairs are matched key by key.
* Sequence (C.2.2.2.6): a key sequence of one item; its keys are matched item
  by item and the response carries the matching items with only the requested
  attributes. No item, or an empty one, is universal and returns the sequence.
* A key with several values other than a UID list (e.g. Modalities in Study
  ``CT\\MR``) matches when any of them matches; a multi-valued attribute
  matches when any of its values matches.

Optional keys an SCP does not support (C.2.2.1.3) are taken out of matching
by :meth:`CompiledQuery.ignoring` -- they match every entity and are still
returned -- and listed in ``CompiledQuery.ignored`` (Pending 0xFF01).

Errors are :class:`~dicomnet.errors.QueryError` with the status an SCP should
answer: 0xA900 for a missing or wrong Query/Retrieve Level, 0xC000 for a
missing unique key of a level above (hierarchical search, C.4.1.3.1).
"""
from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping
from typing import Any

from dicomnet.dicom.dataset import Dataset, Sequence
from dicomnet.errors import QueryError

__all__ = [
    "LEVELS",
    "UNIQUE_KEYS",
    "Record",
    "CompiledQuery",
    "compile_query",
    "model_levels",
    "query_level",
    "required_unique_keys",
    "STATUS_IDENTIFIER_DOES_NOT_MATCH",
    "STATUS_UNABLE_TO_PROCESS",
]

STATUS_IDENTIFIER_DOES_NOT_MATCH = 0xA900
STATUS_UNABLE_TO_PROCESS = 0xC000

#: A record: tag -> (VR, decoded value), as in a Dataset.
Record = Mapping[int, tuple[str, Any]]

_SPECIFIC_CHARACTER_SET = 0x00080005
_QUERY_RETRIEVE_LEVEL = 0x00080052
PATIENT_ID, STUDY_UID, SERIES_UID, SOP_INSTANCE_UID = 0x00100020, 0x0020000D, 0x0020000E, 0x00080018

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
#: The unique key of each level (PS3.4 C.6.1.1, C.6.2.1).
UNIQUE_KEYS = {"PATIENT": PATIENT_ID, "STUDY": STUDY_UID, "SERIES": SERIES_UID, "IMAGE": SOP_INSTANCE_UID}

_PATIENT_ROOT = ("PATIENT", "STUDY", "SERIES", "IMAGE")
_STUDY_ROOT = ("STUDY", "SERIES", "IMAGE")
# Patient Root and Study Root Q/R SOP classes (PS3.4 C.6.1.1.1, C.6.2.1.1): FIND, MOVE, GET.
_MODELS: dict[str, tuple[str, ...]] = {
    "patient": _PATIENT_ROOT, "study": _STUDY_ROOT,
    "1.2.840.10008.5.1.4.1.2.1.1": _PATIENT_ROOT, "1.2.840.10008.5.1.4.1.2.1.2": _PATIENT_ROOT,
    "1.2.840.10008.5.1.4.1.2.1.3": _PATIENT_ROOT,
    "1.2.840.10008.5.1.4.1.2.2.1": _STUDY_ROOT, "1.2.840.10008.5.1.4.1.2.2.2": _STUDY_ROOT,
    "1.2.840.10008.5.1.4.1.2.2.3": _STUDY_ROOT,
}

_WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
_RANGE_VRS = frozenset({"DA", "TM", "DT"})
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_NUMBER_VRS = frozenset({"IS", "DS", "US", "SS", "UL", "SL", "FL", "FD", "SV", "UV"})
# Date/time pairs for combined matching (C.2.2.2.5.2): date tag -> time tag.
_DATE_TIME_PAIRS = {0x00080020: 0x00080030, 0x00080021: 0x00080031, 0x00080022: 0x00080032,
                    0x00080023: 0x00080033, 0x00080012: 0x00080013, 0x00100030: 0x00100032,
                    0x00400244: 0x00400245, 0x00400002: 0x00400003}

_MISSING = object()


def model_levels(model: str) -> tuple[str, ...]:
    """The levels of a Q/R information model: "patient" or "study" (Patient Root /
    Study Root), or one of their FIND/MOVE/GET SOP Class UIDs."""
    levels = _MODELS.get(model.lower() if isinstance(model, str) else model)
    if levels is None:
        raise QueryError(f"unknown Query/Retrieve information model {model!r}", STATUS_IDENTIFIER_DOES_NOT_MATCH)
    return levels


def query_level(query: Dataset, model: str) -> str:
    """The Query/Retrieve Level of ``query``, checked against ``model`` (0xA900 if bad)."""
    levels = model_levels(model)
    if _QUERY_RETRIEVE_LEVEL not in query:
        raise QueryError("the Identifier has no Query/Retrieve Level (0008,0052)",
                         STATUS_IDENTIFIER_DOES_NOT_MATCH)
    raw = query[_QUERY_RETRIEVE_LEVEL].value
    level = (raw if isinstance(raw, str) else "").strip().upper()
    if level not in levels:
        root = "Patient Root" if levels[0] == "PATIENT" else "Study Root"
        raise QueryError(f"Query/Retrieve Level {raw!r} is not one of {', '.join(levels)} ({root})",
                         STATUS_IDENTIFIER_DOES_NOT_MATCH)
    return level


def required_unique_keys(model: str, level: str, *, retrieve: bool = False) -> tuple[int, ...]:
    """The unique keys a hierarchical request at ``level`` must carry: those of
    every level above (C.4.1.3.1 for C-FIND); for C-MOVE/C-GET (C.4.2.2.1,
    C.4.3.2.1, ``retrieve=True``) the level's own unique key as well."""
    levels = model_levels(model)
    above = levels[:levels.index(level) + (1 if retrieve else 0)]
    return tuple(UNIQUE_KEYS[name] for name in above)


# The Required Keys of each level (PS3.4 C.6.1.1 Patient Root, C.6.2.1 Study
# Root): an entity whose Required Key is of zero length matches any value
# of it -- "the value is considered unknown and all matching against the
# zero length Required Key shall be considered a successful match" (C.2.2.1.2).
_STUDY_REQUIRED = (0x00080020, 0x00080030, 0x00080050, 0x00200010)   # date, time, accession, study ID
_REQUIRED_KEYS: dict[tuple[str, str], frozenset[int]] = {
    ("PATIENT", "PATIENT"): frozenset({0x00100010}),                  # Patient's Name
    ("PATIENT", "STUDY"): frozenset(_STUDY_REQUIRED),
    ("STUDY", "STUDY"): frozenset((*_STUDY_REQUIRED, 0x00100010, 0x00100020)),   # + name, Patient ID
    ("PATIENT", "SERIES"): frozenset({0x00080060, 0x00200011}),       # Modality, Series Number
    ("STUDY", "SERIES"): frozenset({0x00080060, 0x00200011}),
    ("PATIENT", "IMAGE"): frozenset({0x00200013}),                    # Instance Number
    ("STUDY", "IMAGE"): frozenset({0x00200013}),
}


def required_keys(model: str, level: str) -> frozenset[int]:
    """The Required Keys of ``level`` in ``model`` (C.6.1.1, C.6.2.1)."""
    return _REQUIRED_KEYS.get((model_levels(model)[0], level), frozenset())


def _as_strings(value: Any) -> list[str]:
    """A decoded value as its list of string values (empty: [])."""
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return ["" if v is None else _fmt_number(v) if not isinstance(v, str) else v for v in value]
    if hasattr(value, "tolist") and not isinstance(value, str):
        listed = value.tolist()
        return [_fmt_number(v) for v in (listed if isinstance(listed, list) else [listed])]
    if isinstance(value, str):
        return [value]
    return [_fmt_number(value)]


def _fmt_number(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return repr(v)
    return str(v)


# ---------------------------------------------------------------- date/time
_DT_RANGE = re.compile(r"(?P<a>\d[\d.]*(?:[+-]\d{4})?)?-(?P<b>\d[\d.]*(?:[+-]\d{4})?)?")


def _norm_da(text: str) -> str:
    return text.strip().replace(".", "")


def _norm_tm(text: str, upper: bool) -> str:
    """A TM as 'HHMMSS.ffffff'; a partial upper bound extends to the end of its precision."""
    main, _, frac = text.strip().replace(":", "").partition(".")
    if upper:
        return f"{(main + '235959'[len(main):])[:6]}.{(frac + '999999')[:6]}"
    return f"{(main + '000000')[:6]}.{(frac + '000000')[:6]}"


def _norm_dt(text: str, upper: bool) -> str:
    """A DT as 'YYYYMMDDHHMMSS.ffffff', padded like _norm_tm, in UTC when it
    names its offset from UTC (C.2.2.2.5: "shall be taken into account"; a
    value without one is compared as it is)."""
    m = re.match(r"(\d+)(?:\.(\d+))?([+-]\d{4})?", text.strip())
    if not m:
        return ""
    digits, frac, offset = m.group(1), m.group(2) or "", m.group(3)
    date, time = digits[:8], digits[8:]
    if 4 <= len(date) < 8:
        date += ("1231" if upper else "0101")[len(date) - 4:]
    norm = date + _norm_tm(time + ("." + frac if frac else ""), upper)
    if offset and len(norm) == 21:
        try:
            local = datetime.datetime.strptime(norm[:14], "%Y%m%d%H%M%S")
        except ValueError:
            return norm
        minutes = int(offset[1:3]) * 60 + int(offset[3:5])
        try:
            utc = local - datetime.timedelta(minutes=minutes if offset[0] == "+" else -minutes)
        except OverflowError:
            return norm
        return utc.strftime("%Y%m%d%H%M%S").rjust(14, "0") + norm[14:]
    return norm


def _range_test(vr: str, key: str) -> Callable[[str], bool] | None:
    """A test for one DA/TM/DT key value (a range, or a single value as a range)."""
    if vr == "DA":
        if "-" not in key:
            want = _norm_da(key)
            return lambda v: _norm_da(v) == want
        lo, _, hi = key.partition("-")
        lo, hi = _norm_da(lo), _norm_da(hi)
        return lambda v: bool(v.strip()) and (not lo or _norm_da(v) >= lo) and (not hi or _norm_da(v) <= hi)
    if vr == "TM":
        lo, dash, hi = key.partition("-")
        if not dash:
            hi = lo
        nlo = _norm_tm(lo, False) if lo.strip() else ""
        nhi = _norm_tm(hi, True) if hi.strip() else ""
        return lambda v: bool(v.strip()) and (not nlo or _norm_tm(v, False) >= nlo) and (
            not nhi or _norm_tm(v, False) <= nhi)
    m = _DT_RANGE.fullmatch(key.strip())
    lo, hi = (m.group("a") or "", m.group("b") or "") if m else (key, key)
    nlo = _norm_dt(lo, False) if lo else ""
    nhi = _norm_dt(hi, True) if hi else ""
    return lambda v: bool(v.strip()) and (not nlo or _norm_dt(v, False) >= nlo) and (
        not nhi or _norm_dt(v, False) <= nhi)


# ---------------------------------------------------------------- text tests
def _strip(vr: str, text: str) -> str:
    if vr in ("ST", "LT", "UT"):
        return text.rstrip(" ")
    return text.strip(" ")


def _wildcard(key: str, fold: bool) -> Callable[[str], bool]:
    """Whether a whole value matches ``key``, where ``*`` is any run of
    characters and ``?`` any one character (C.2.2.2.4); ``fold``: compared
    case-insensitively.

    Not a regular expression: ``.*`` for every ``*`` backtracks
    exponentially in the number of stars (a 23-character key took 13 s
    against one 40-character value, holding the GIL, so one C-FIND froze the
    whole server). Here the key is cut at its stars into fixed-length
    pieces; the first must start the value, the last end it, and each one
    between is placed at its leftmost fit after the one before -- leftmost
    is always right, since a star takes up whatever is left between pieces.
    At most (value length x key length) steps.

    Folded, a value also matches as it is: case folding may change a
    string's length ("ß" -> "ss"), and "?" stands for one character of the
    value, so folding may only add matches (C.2.2.2.1), never take one."""
    if fold:
        exact, folded = _wildcard(key, False), _wildcard(key.casefold(), False)
        return lambda value: exact(value) or folded(value.casefold())
    pieces = key.split("*")
    finders = [_piece_finder(piece) for piece in pieces]
    head, tail = pieces[0], pieces[-1]
    head_at, tail_at = finders[0], finders[-1]
    middle = [(len(piece), find) for piece, find in zip(pieces[1:-1], finders[1:-1]) if piece]

    def test(value: str) -> bool:
        if len(pieces) == 1:            # no star: "?" only
            return len(value) == len(key) and head_at(value, 0, len(key)) == 0
        end = len(value) - len(tail)
        if end < len(head) or head_at(value, 0, len(head)) != 0 or tail_at(value, end, len(value)) != end:
            return False
        pos = len(head)
        for size, find in middle:
            at = find(value, pos, end)
            if at < 0:
                return False
            pos = at + size
        return True

    return test


def _piece_finder(piece: str) -> Callable[[str, int, int], int]:
    """``find(value, start, end)``: where ``piece`` first occurs within
    ``value[start:end]`` (-1: nowhere), ``?`` in it standing for any character."""
    if "?" not in piece:
        return lambda value, start, end: value.find(piece, start, end)
    # Fixed length, no repetition: the search is linear in the value.
    search = re.compile("".join("." if c == "?" else re.escape(c) for c in piece), re.DOTALL).search

    def find(value: str, start: int, end: int) -> int:
        m = search(value, start, end)
        return m.start() if m else -1

    return find


def _text_test(vr: str, key: str, pn_insensitive: bool) -> Callable[[str], bool]:
    key = _strip(vr, key)
    fold = vr == "PN" and pn_insensitive
    if vr in _WILDCARD_VRS and ("*" in key or "?" in key):
        match = _wildcard(key, fold)
        if vr == "PN" and "=" not in key:
            return lambda v: match(v.strip()) or any(match(g) for g in v.strip().split("=")[1:])
        return lambda v: match(_strip(vr, v))
    if fold:
        want = key.casefold()
        if "=" not in key:
            return lambda v: v.strip().casefold() == want or any(
                g.casefold() == want for g in v.strip().split("="))
        return lambda v: v.strip().casefold() == want
    if vr == "PN" and "=" not in key:
        return lambda v: v.strip() == key or key in v.strip().split("=")
    return lambda v: _strip(vr, v) == key


def _uid_list_test(wanted: frozenset[str]) -> Callable[[str], bool]:
    return lambda v: v.strip("\0 ") in wanted


def _number_test(key: str) -> Callable[[str], bool]:
    try:
        want = float(key)
    except ValueError:
        text = key.strip()
        return lambda v: v.strip() == text

    def test(v: str) -> bool:
        try:
            return float(v) == want
        except ValueError:
            return False
    return test


# ------------------------------------------------------------ compiled query
class _Key:
    """One non-universal key: matches when any of its tests accepts any record
    value; a record without a value (zero length or absent) matches when
    ``on_empty`` (an unknown Required Key, or a wild card such as ``**`` that
    matches a zero-length value, C.2.2.2.4)."""

    __slots__ = ("tag", "vr", "tests", "empty_only", "sub", "on_empty")

    def __init__(self, tag: int, vr: str, tests: list[Callable[[str], bool]], empty_only: bool = False,
                 sub: CompiledQuery | None = None, on_empty: bool = False) -> None:
        self.tag = tag
        self.vr = vr
        self.tests = tests
        self.empty_only = empty_only
        self.sub = sub
        self.on_empty = on_empty

    @property
    def tags(self) -> tuple[int, ...]:
        """The attributes this key is matched against."""
        return (self.tag,)

    def matches(self, record: Record) -> bool:
        found = record.get(self.tag)
        value = None if found is None else found[1]
        if self.empty_only:
            return not _as_strings(value) if not isinstance(value, list) or value else True
        if self.sub is not None:
            return isinstance(value, list) and any(self.sub.matches(_record_of(item)) for item in value)
        values = _as_strings(value)
        if not values:
            return self.on_empty
        for v in values:
            for test in self.tests:
                if test(v):
                    return True
        return False


def _record_of(ds: Dataset) -> dict[int, tuple[str, Any]]:
    """A Dataset's top level as a record (decodes every element)."""
    return {e.tag: (e.VR, e.value) for e in ds}


class CompiledQuery:
    """A query Identifier ready to test records and build response Identifiers.

    ``level`` is None for a nested (sequence item) query. ``keys`` are the
    non-universal keys; ``requested`` every key to return, with its VR and, for
    sequences, the compiled item query (None: return the sequence whole).
    ``ignored`` holds the tags of the keys :meth:`ignoring` took out of
    matching, in the Identifier's order (none after :func:`compile_query`).
    """

    def __init__(self, keys: list[_Key], requested: list[tuple[int, str, CompiledQuery | None]],
                 level: str | None, model: str | None, unique_above: tuple[int, ...],
                 ignored: tuple[int, ...] = ()) -> None:
        self.keys = keys
        self.requested = requested
        self.level = level
        self.model = model
        self.unique_above = unique_above
        self.ignored = ignored

    def ignoring(self, unsupported: Callable[[int], bool]) -> CompiledQuery:
        """This query without the keys an SCP does not support for matching:
        those on attributes for which ``unsupported(tag)`` is true (a date and
        time matched together: when both are).

        PS3.4 C.2.2.1.3: an Optional Key the SCP does not support is ignored
        for matching -- it matches every entity -- and is still returned, so
        the response Identifiers keep it (zero length when the record has no
        value). Their tags are added to ``ignored``, from which an SCP answers
        Pending 0xFF01 ("one or more Optional Keys were not supported")
        rather than 0xFF00. Returns ``self`` when no key is dropped.
        """
        dropped = [key for key in self.keys if all(unsupported(tag) for tag in key.tags)]
        if not dropped:
            return self
        ignored = {tag: None for key in dropped for tag in key.tags}
        order = {tag: n for n, (tag, _, _) in enumerate(self.requested)}
        return CompiledQuery([key for key in self.keys if key not in dropped], self.requested, self.level,
                             self.model, self.unique_above,
                             (*self.ignored, *sorted(ignored, key=lambda tag: order.get(tag, len(order)))))

    def matches(self, record: Record) -> bool:
        """True when every key matches ``record``."""
        for key in self.keys:
            if not key.matches(record):
                return False
        return True

    def identifier(self, record: Record) -> Dataset:
        """The response Identifier for a matching record (PS3.4 C.4.1.1.3.2):
        exactly the requested keys (zero length when the record lacks them),
        Query/Retrieve Level, the unique keys of the levels above, and Specific
        Character Set when a value needs more than the default repertoire."""
        ds = Dataset()
        needs_charset = False
        for tag, vr, sub in self.requested:
            found = record.get(tag)
            value = None if found is None else found[1]
            if vr == "SQ":
                items = value if isinstance(value, list) else []
                if sub is not None:
                    items = [sub.identifier(r) for r in (_record_of(i) for i in items) if sub.matches(r)]
                    for item in items:        # the character set is named once, at the top level
                        if _SPECIFIC_CHARACTER_SET in item:
                            del item[_SPECIFIC_CHARACTER_SET]
                            needs_charset = True
                elif not needs_charset and not _items_ascii(items):
                    needs_charset = True      # returned whole: its items' text counts too
                ds.set(tag, Sequence(items), "SQ")
                continue
            if found is not None and vr == "UN":
                vr = found[0]     # a key sent without its VR (e.g. private, implicit): the record knows it
            if value is not None and not needs_charset and vr in _CHARSET_VRS and not _ascii(value):
                needs_charset = True
            ds.set(tag, value if value is not None else ("" if vr not in _NUMBER_VRS else None), vr)
        for tag in self.unique_above:
            if tag not in ds:
                found = record.get(tag)
                ds.set(tag, found[1] if found is not None else "", "LO" if tag == PATIENT_ID else "UI")
        if self.level is not None:
            ds.set(_QUERY_RETRIEVE_LEVEL, self.level, "CS")
        if needs_charset:
            found = record.get(_SPECIFIC_CHARACTER_SET)
            ds.set(_SPECIFIC_CHARACTER_SET, found[1] if found is not None and found[1] else "ISO_IR 192", "CS")
        return ds


_CHARSET_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})


def _ascii(value: Any) -> bool:
    if isinstance(value, str):
        return value.isascii()
    if isinstance(value, (list, tuple)):
        return all(not isinstance(v, str) or v.isascii() for v in value)
    return True


def _items_ascii(items: list[Any]) -> bool:
    """No text in these sequence items (nested ones too) needs more than ASCII."""
    for item in items:
        for elem in item:
            if elem.VR == "SQ":
                if not _items_ascii(list(elem.value or ())):
                    return False
            elif elem.VR in _CHARSET_VRS and not _ascii(elem.value):
                return False
    return True


def _is_universal(vr: str, strings: list[str]) -> bool:
    return not strings or all(s.strip(" ") == "" for s in strings) or (
        len(strings) == 1 and strings[0].strip() == "*" and vr in _WILDCARD_VRS)


def _compile_items(tag: int, vr: str, value: Any, pn_insensitive: bool, combined: bool,
                   keys: list[_Key], requested: list[tuple[int, str, CompiledQuery | None]]) -> None:
    items = value if isinstance(value, list) else []
    if len(items) > 1:
        raise QueryError(f"sequence key ({tag >> 16:04X},{tag & 0xFFFF:04X}) has {len(items)} items; "
                         "Sequence Matching takes one (PS3.4 C.2.2.2.6)", STATUS_UNABLE_TO_PROCESS)
    if not items or len(items[0]) == 0:
        requested.append((tag, vr, None))
        return
    sub = _compile(items[0], None, None, (), pn_insensitive, combined)
    requested.append((tag, vr, sub))
    if sub.keys:
        keys.append(_Key(tag, vr, [], sub=sub))


def _compile(query: Dataset, level: str | None, model: str | None, unique_above: tuple[int, ...],
             pn_insensitive: bool, combined: bool) -> CompiledQuery:
    keys: list[_Key] = []
    requested: list[tuple[int, str, CompiledQuery | None]] = []
    values: dict[int, tuple[str, Any]] = {}
    for elem in query:
        tag = elem.tag
        if tag in (_SPECIFIC_CHARACTER_SET, _QUERY_RETRIEVE_LEVEL) or tag >> 16 in (0x0000, 0x0002):
            continue  # never matched (C.2.2.2), or not part of an Identifier
        values[tag] = (elem.VR, elem.value)
    paired: set[int] = set()
    required = required_keys(model, level) if model is not None and level is not None else frozenset()
    if combined:
        for date_tag, time_tag in _DATE_TIME_PAIRS.items():
            if date_tag in values and time_tag in values:
                test = _combined_test(values[date_tag][1], values[time_tag][1])
                if test is not None:
                    combined_key = test(date_tag, time_tag)
                    combined_key.on_empty = date_tag in required
                    keys.append(combined_key)
                    paired.update((date_tag, time_tag))
    for tag, (vr, value) in values.items():
        if vr == "SQ":
            _compile_items(tag, vr, value, pn_insensitive, combined, keys, requested)
            continue
        requested.append((tag, vr, None))
        if tag in paired or vr in _BINARY_VRS or isinstance(value, (bytes, bytearray, memoryview)):
            continue      # binary values are returned, never matched
        strings = _as_strings(value)
        if _is_universal(vr, strings):
            continue
        if len(strings) == 1 and strings[0].strip() == '""':
            keys.append(_Key(tag, vr, [], empty_only=True))
            continue
        if vr in _RANGE_VRS:
            tests = [t for t in (_range_test(vr, s) for s in strings) if t is not None]
        elif vr in _NUMBER_VRS:
            tests = [_number_test(s) for s in strings]
        elif vr == "UI":
            tests = [_uid_list_test(frozenset(s.strip("\0 ") for s in strings))]  # C.2.2.2.2
        else:
            tests = [_text_test(vr, s, pn_insensitive) for s in strings]
        # (A range test is never tried on "": an open range would take it.)
        on_empty = tag in required or (vr not in _RANGE_VRS and any(test("") for test in tests))
        keys.append(_Key(tag, vr, tests, on_empty=on_empty))
    # Cheap, selective keys first: UIDs and IDs before wildcards and ranges.
    keys.sort(key=lambda k: 0 if k.vr == "UI" else 1 if k.tag == PATIENT_ID else 2)
    return CompiledQuery(keys, requested, level, model, unique_above)


class _CombinedKey(_Key):
    """Date and time keys matched together as one date-time range (C.2.2.2.5.2)."""

    __slots__ = ("time_tag", "lo", "hi")

    def __init__(self, date_tag: int, time_tag: int, lo: str, hi: str) -> None:
        super().__init__(date_tag, "DA", [])
        self.time_tag = time_tag
        self.lo = lo
        self.hi = hi

    @property
    def tags(self) -> tuple[int, ...]:
        return (self.tag, self.time_tag)

    def matches(self, record: Record) -> bool:
        d = record.get(self.tag)
        t = record.get(self.time_tag)
        date = _as_strings(d[1] if d else None)
        time = _as_strings(t[1] if t else None)
        if not date:
            return self.on_empty
        value = _norm_da(date[0]) + _norm_tm(time[0] if time else "", False)
        return (not self.lo or value >= self.lo) and (not self.hi or value <= self.hi)


def _combined_test(date_value: Any, time_value: Any) -> Callable[[int, int], _Key] | None:
    date = _as_strings(date_value)
    time = _as_strings(time_value)
    if len(date) != 1 or not date[0].strip():
        return None
    dlo, ddash, dhi = date[0].partition("-")
    tlo, tdash, thi = (time[0].partition("-") if len(time) == 1 else ("", "", ""))
    # C.2.2.2.5: joined only when both are range matching of the same form
    # ("a-b", "a-" or "-b"); any other pair is matched key by key.
    if not (ddash and tdash) or (bool(dlo.strip()), bool(dhi.strip())) != (bool(tlo.strip()), bool(thi.strip())):
        return None
    lo = (_norm_da(dlo) + _norm_tm(tlo, False)) if dlo.strip() else ""
    hi = (_norm_da(dhi) + (_norm_tm(thi, True) if thi.strip() else "235959.999999")) if dhi.strip() else ""

    return lambda date_tag, time_tag: _CombinedKey(date_tag, time_tag, lo, hi)


def compile_query(query: Dataset, model: str | None = None, *, pn_case_sensitive: bool = False,
                  combined_datetime: bool = False, relational: bool = False,
                  retrieve: bool = False) -> CompiledQuery:
    """Compile a request Identifier.

    With ``model`` ("patient", "study" or a Q/R SOP Class UID) the Query/Retrieve
    Level is checked and, unless ``relational`` (negotiated relational
    queries), the unique keys of the levels above must be present with a single
    value (C.4.1.3.1; for C-MOVE/C-GET, ``retrieve=True``, the level's own key
    too, C.4.2.2.1). Without ``model`` the query is a plain key list.
    """
    level = None
    unique_above: tuple[int, ...] = ()
    if model is not None:
        level = query_level(query, model)
        unique_above = required_unique_keys(model, level)
        if not relational or retrieve:
            for tag in required_unique_keys(model, level, retrieve=retrieve):
                own = retrieve and tag == UNIQUE_KEYS[level]
                if relational and not own:
                    continue      # relational: the keys above may be left out
                value = query[tag].value if tag in query else None
                strings = _as_strings(value)
                name = {PATIENT_ID: "Patient ID", STUDY_UID: "Study Instance UID",
                        SERIES_UID: "Series Instance UID", SOP_INSTANCE_UID: "SOP Instance UID"}[tag]
                if not strings or not any(s.strip() for s in strings):
                    raise QueryError(f"a {level}-level {'retrieve' if retrieve else 'query'} needs a "
                                     f"{name} (unique key, PS3.4 C.4.{'2' if retrieve else '1'})",
                                     STATUS_UNABLE_TO_PROCESS)
                if len(strings) > 1 and not own:
                    raise QueryError(f"{name} must be a single value at the levels above {level}",
                                     STATUS_UNABLE_TO_PROCESS)
                if any(c in s for s in strings for c in "*?"):
                    raise QueryError(f"{name} must not hold wild cards here", STATUS_UNABLE_TO_PROCESS)
    return _compile(query, level, model, unique_above, not pn_case_sensitive, combined_datetime)
