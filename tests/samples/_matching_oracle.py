"""The oracle of the generative C-FIND matching tests (``test_matching_generative_*.py``,
``test_matching_faults.py``): PS3.4's key tables, and what the standard says about one
entity against one Identifier -- whether it matches, or that the answer is left open.

It is written from the standard's text:

* PS3.4 C.2.2.2.1 single value matching (exact, case-sensitive but for PN);
  C.2.2.2.2 lists of UIDs; C.2.2.2.3 universal matching; C.2.2.2.4 wild
  cards (``*`` any run, zero length included; ``?`` one character; a lone
  ``*`` is universal; AE CS LO LT PN SH ST UC UR UT only, literal elsewhere);
  C.2.2.2.5 range matching of DA, TM and DT (inclusive, open bounds; combined
  DA+TM ranges when negotiated: "a pair of Attributes that are a date and a
  time, both of which specify the same form of range matching"); C.2.2.2.6
  sequence matching (an item of keys, "for at least one of the Items", only
  the requested Attributes returned); Empty Value Matching (``""``);
* C.2.2.1.2: a Required Key of zero length is unknown and matches any value
  (Tables C.6-1 to C.6-5 name the Required Keys per level and model);
* C.4.1.1.3.2 / C.4.1.3.1: a response holds the requested keys (zero length
  when the entity has no value), the Query/Retrieve Level and the unique keys
  of the levels above, and can be encoded (Specific Character Set);
* Modality Worklist (K.6.1.2): the same rules on a plain key list, the
  Scheduled Procedure Step Sequence matched by C.2.2.2.6; a Required Matching
  Key of zero length "shall fail to match any Matching Key value"
  (K.2.2.1.1.1; a key of stars against it is left open, C.2.2.2.4).

Where the standard leaves the answer open the oracle says "either" (None):
PN case and accent folding (C.2.2.2.1 note), PN component groups, a key or an
attribute with several values (outside UID lists), partial times as key
bounds and as values, a date without a time under combined matching, a UTC
offset on one side only, a sequence key whose item keys are all universal
against an entity without items. For the sample server dicomnet's
*documented* choices (:mod:`dicomnet.samples.matching`'s docstring) settle
the first four (:data:`DICOMNET`); dcmqrscp is held only to what the standard
alone decides (:data:`NEUTRAL`). Values and keys carry no leading or trailing
spaces (padding rules differ per VR), LT keys one value (a backslash is text
there), and keys no negative UTC offset (``20200101120000-0500`` reads as a
value and as a range; dicomnet takes the range, up to the year 0500).

The oracle reuses :func:`_wildcard` of the grid test
``tests/integration/test_qr_matching_differential.py`` and is checked against
that test's :func:`key_matches` wherever both decide.
"""
from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Optional

from dicomnet.dicom.dataset import tag_of
from tests.integration.test_qr_matching_differential import WILDCARD_VRS
from tests.integration.test_qr_matching_differential import VR as GRID_VR
from tests.integration.test_qr_matching_differential import _wildcard

Verdict = Optional[bool]      # None: the standard leaves the answer open
# What a zero length (or absent) value does against a non-universal key: "unknown" matches (a
# Required Key, C.2.2.1.2), "fails" (a worklist Required Matching Key, K.2.2.1.1.1), "absent"
# (an optional key: only a key of "*"s matches it, C.2.2.2.4).
Policy = Callable[[str], str]


def optional(keyword: str) -> str:
    return "absent"


LEVELS = {"patient": ("PATIENT", "STUDY", "SERIES", "IMAGE"), "study": ("STUDY", "SERIES", "IMAGE")}

VR = {**GRID_VR, "ContentTime": "TM", "AcquisitionDateTime": "DT", "ImageComments": "LT", "PatientComments": "LT",
      "ProcedureCodeSequence": "SQ", "CodeValue": "SH", "CodingSchemeDesignator": "SH", "CodeMeaning": "LO",
      "RequestedProcedureID": "SH", "RequestedProcedureDescription": "LO",
      "ScheduledProcedureStepSequence": "SQ", "ScheduledStationAETitle": "AE",
      "ScheduledProcedureStepStartDate": "DA", "ScheduledProcedureStepStartTime": "TM",
      "ScheduledPerformingPhysicianName": "PN", "ScheduledProcedureStepDescription": "LO",
      "ScheduledProcedureStepID": "SH", "ScheduledProtocolCodeSequence": "SQ", "SpecificCharacterSet": "CS",
      "QueryRetrieveLevel": "CS", "RetrieveAETitle": "AE", "ClinicalTrialSubjectID": "LO",
      "ClinicalTrialTimePointID": "LO"}
KEYWORD = {tag_of(kw): kw for kw in VR}

# Required Keys (PS3.4 Tables C.6-1 .. C.6-5): C.2.2.1.2 applies to them.
_STUDY_R = frozenset({"StudyDate", "StudyTime", "AccessionNumber", "StudyID"})
REQUIRED = {("patient", "PATIENT"): frozenset({"PatientName"}), ("patient", "STUDY"): _STUDY_R,
            ("study", "STUDY"): _STUDY_R | {"PatientName", "PatientID"}}
for _model in LEVELS:
    REQUIRED[(_model, "SERIES")] = frozenset({"Modality", "SeriesNumber"})
    REQUIRED[(_model, "IMAGE")] = frozenset({"InstanceNumber"})
ALL_REQUIRED = frozenset().union(*REQUIRED.values())
# Worklist matching keys of type R (PS3.4 Table K.6-1): a zero length value is "either" here.
WL_REQUIRED = frozenset({"PatientName", "PatientID", "ScheduledStationAETitle", "ScheduledProcedureStepStartDate",
                         "ScheduledProcedureStepStartTime", "Modality", "ScheduledPerformingPhysicianName"})

PATIENT_KEYS = ("PatientName", "PatientBirthDate", "PatientSex", "PatientComments")
LEVEL_KEYS = {
    "PATIENT": PATIENT_KEYS + ("NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries",
                               "NumberOfPatientRelatedInstances"),
    "STUDY": ("StudyDate", "StudyTime", "AccessionNumber", "StudyID", "ReferringPhysicianName", "StudyDescription",
              "ProcedureCodeSequence", "ModalitiesInStudy", "SOPClassesInStudy", "NumberOfStudyRelatedSeries",
              "NumberOfStudyRelatedInstances"),
    "SERIES": ("Modality", "SeriesNumber", "SeriesDescription", "SeriesDate", "SeriesTime", "BodyPartExamined",
               "NumberOfSeriesRelatedInstances"),
    "IMAGE": ("InstanceNumber", "SOPClassUID", "ContentDate", "ContentTime", "ImageType", "AcquisitionDateTime",
              "ImageComments"),
}
COMPUTED = frozenset(LEVEL_KEYS["PATIENT"][4:] + LEVEL_KEYS["STUDY"][7:] + LEVEL_KEYS["SERIES"][6:])
SETS = frozenset({"ModalitiesInStudy", "SOPClassesInStudy"})     # lists whose order means nothing
CODE_KEYS = ("CodeValue", "CodingSchemeDesignator", "CodeMeaning")
WL_KEYS = ("PatientName", "PatientID", "AccessionNumber", "RequestedProcedureID", "ReferringPhysicianName",
           "PatientBirthDate", "PatientSex", "RequestedProcedureDescription")
SPS_KEYS = ("ScheduledStationAETitle", "ScheduledProcedureStepStartDate", "ScheduledProcedureStepStartTime",
            "Modality", "ScheduledPerformingPhysicianName", "ScheduledProcedureStepDescription",
            "ScheduledProcedureStepID", "ScheduledProtocolCodeSequence")
ITEM_KEYS = {"ProcedureCodeSequence": CODE_KEYS, "ScheduledProtocolCodeSequence": CODE_KEYS,
             "ScheduledProcedureStepSequence": SPS_KEYS}
# Date/time pairs matched together under combined date-time matching.
PAIRS = (("StudyDate", "StudyTime"), ("SeriesDate", "SeriesTime"), ("ContentDate", "ContentTime"),
         ("ScheduledProcedureStepStartDate", "ScheduledProcedureStepStartTime"))


# ------------------------------------------------------------------ verdicts
@dataclass(frozen=True)
class Choices:
    """How open points are settled: True/False a documented choice, None "either"."""

    pn_fold: Verdict      # PN literal matching insensitive to case (C.2.2.2.1 note)
    pn_groups: Verdict    # a PN key without "=" matches any one component group
    any_value: Verdict    # several key values, or attribute values: any one may match
    span: Verdict         # a partial TM/DT key denotes the span of its precision


DICOMNET = Choices(True, True, True, True)     # dicomnet.samples.matching's module docstring
NEUTRAL = Choices(None, None, None, None)


def conj(verdicts: Iterator[Verdict] | list[Verdict]) -> Verdict:
    verdicts = list(verdicts)
    return False if False in verdicts else None if None in verdicts else True


def disj(verdicts: Iterator[Verdict] | list[Verdict]) -> Verdict:
    verdicts = list(verdicts)
    return True if True in verdicts else None if None in verdicts else False


def either(chosen: Verdict, verdicts: list[Verdict]) -> Verdict:
    """Several values: ``any`` when chosen, else determinate only when no value matches."""
    if len(verdicts) == 1:
        return verdicts[0]
    return disj(verdicts) if chosen else (False if disj(verdicts) is False else None)


def universal(vr: str, key: Any) -> bool:
    keys = key if isinstance(key, list) else [key]
    return all(k is None or str(k) == "" for k in keys) or (
        isinstance(key, str) and key == "*" and vr in WILDCARD_VRS)


def is_universal(keyword: str, key: Any) -> bool:
    """A key that selects nothing: universal, or a sequence key without item keys."""
    return (not key or not key[0]) if VR[keyword] == "SQ" else universal(VR[keyword], key)


def tm_span(text: str) -> tuple[int, int]:
    """A TM value as the microseconds it denotes, first and last (PS3.5 partial precision)."""
    main, _, frac = text.partition(".")
    start = ((int(main[:2]) * 60 + int(main[2:4] or 0)) * 60 + int(main[4:6] or 0)) * 10**6
    if frac:
        start += int(frac.ljust(6, "0"))
        return start, start + 10 ** (6 - len(frac)) - 1
    return start, start + {2: 3600, 4: 60, 6: 1}[len(main)] * 10**6 - 1


def dt_span(text: str) -> tuple[datetime.datetime, datetime.datetime, bool]:
    """A DT value as the first and last instants it denotes, in UTC when it has an offset."""
    m = re.fullmatch(r"(\d{4,14})(?:\.(\d{1,6}))?([+-]\d{4})?", text)
    assert m, text
    digits, frac, offset = m.groups()
    parts = [int(digits[i:j] or d) for i, j, d in ((0, 4, 0), (4, 6, 1), (6, 8, 1), (8, 10, 0), (10, 12, 0),
                                                   (12, 14, 0))]
    start = datetime.datetime(*parts, microsecond=int(frac.ljust(6, "0")) if frac else 0)
    if frac:
        end = start + datetime.timedelta(microseconds=10 ** (6 - len(frac)) - 1)
    elif len(digits) <= 6:
        year, month = (parts[0] + 1, 1) if len(digits) == 4 or parts[1] == 12 else (parts[0], parts[1] + 1)
        end = datetime.datetime(year, month, 1) - datetime.timedelta(microseconds=1)
    else:
        unit = {8: datetime.timedelta(days=1), 10: datetime.timedelta(hours=1), 12: datetime.timedelta(minutes=1),
                14: datetime.timedelta(seconds=1)}[len(digits)]
        end = start + unit - datetime.timedelta(microseconds=1)
    if offset:
        shift = datetime.timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5]))
        shift = shift if offset[0] == "+" else -shift
        start, end = start - shift, end - shift
    return start, end, offset is not None


def within(value: tuple[Any, Any], lo: Any, hi_first: Any, hi_last: Any) -> Verdict:
    """The span ``value`` against a range from ``lo`` to an upper bound read as its first
    instant or as its whole span (None: open): True inside either way, False outside."""
    if (lo is not None and value[1] < lo) or (hi_last is not None and value[0] > hi_last):
        return False
    return True if (lo is None or value[0] >= lo) and (hi_first is None or value[1] <= hi_first) else None


def range_verdict(vr: str, key: str, value: str, ch: Choices) -> Verdict:
    """DA, TM or DT: single value or range (C.2.2.2.1, C.2.2.2.5)."""
    if vr == "DA":
        lo, dash, hi = key.partition("-")
        return value == key if not dash else (not lo or value >= lo) and (not hi or value <= hi)
    span = tm_span if vr == "TM" else dt_span
    v = span(value)
    lo, dash, hi = key.partition("-")     # (keys never carry a negative UTC offset: ambiguous with the dash)
    if vr == "DT" and any(b and span(b)[2] != v[2] for b in (lo, hi)):
        return None                 # an offset on one side only: undefined without a local offset
    if not dash:                    # single value: the span it denotes, or the literal value
        if value == key:
            return True
        k = span(key)
        return within(v, k[0], k[1], k[1]) if ch.span else (False if within(v, k[0], k[1], k[1]) is False else None)
    lo_at = span(lo)[0] if lo else None
    hi_span = span(hi) if hi else None
    hi_first = None if hi_span is None else hi_span[1] if ch.span else hi_span[0]
    return within(v[:2], lo_at, hi_first, None if hi_span is None else hi_span[1])


def _fold(s: str) -> str:
    """Simple (one character to one character) case folding."""
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in s)


def pn_verdict(key: str, value: str, ch: Choices) -> Verdict:
    wild = "*" in key or "?" in key

    def same(k: str, v: str) -> bool:
        return _wildcard(k, v, False) if wild else k == v

    def one(v: str) -> Verdict:
        if same(key, v):
            return True
        if same(_fold(key), _fold(v)):
            return ch.pn_fold
        return None if ch.pn_fold is not False and same(key.casefold(), v.casefold()) else False

    if "=" in key or "=" not in value:
        return one(value)
    whole, any_group = one(value), disj([one(value), *(one(g) for g in value.split("="))])
    if ch.pn_groups and not wild:
        return any_group
    return whole if whole == any_group else None


def value_verdict(vr: str, key: str, value: str, ch: Choices) -> Verdict:
    if vr in ("DA", "TM", "DT"):
        return range_verdict(vr, key, value, ch)
    if vr in ("IS", "US"):
        return key.strip().lstrip("-").isdigit() and int(key) == int(value)
    if vr == "PN":
        return pn_verdict(key, value, ch)
    if vr in WILDCARD_VRS and ("*" in key or "?" in key):
        return _wildcard(key, value, False)
    return key == value


def key_verdict(keyword: str, key: Any, values: Any, on_empty: str, ch: Choices,
                item_empty: Policy = optional) -> Verdict:
    """Whether an entity with ``values`` (None: absent) matches one key."""
    vr = VR[keyword]
    if vr == "SQ":
        return sequence_verdict(key, values or [], ch, item_empty)
    if universal(vr, key):
        return True
    keys = [str(k) for k in key] if isinstance(key, list) else [str(key)]
    values = values or ()
    if vr == "UI":                  # List of UID Matching (C.2.2.2.2)
        return either(ch.any_value, [v in keys for v in values]) if values else on_empty == "unknown"

    def alternative(k: str) -> Verdict:
        if k == '""':
            return not values       # Empty Value Matching
        if not values:
            stars = vr in WILDCARD_VRS and set(k) == {"*"}      # "*" matches a zero length value
            # (K.2.2.1.1.1: "the unknown value shall fail to match any Matching Key value")
            return True if on_empty == "unknown" else (None if stars else False) if on_empty == "fails" else stars
        return either(ch.any_value, [value_verdict(vr, k, v, ch) for v in values])

    return either(ch.any_value, [alternative(k) for k in keys])


def sequence_verdict(key: list[dict[str, Any]], items: list[dict[str, Any]], ch: Choices,
                     item_empty: Policy) -> Verdict:
    """C.2.2.2.6: one item of keys, matched item by item; no key item is universal."""
    if not key or not key[0]:
        return True
    active = [(kw, k) for kw, k in key[0].items() if not is_universal(kw, k)]
    if not active:
        return True if items else None      # "for at least one of the Items": none to match
    return disj(entity_verdict(active, item, item_empty, ch, item_empty=item_empty) for item in items)


def entity_verdict(keys: list[tuple[str, Any]], attrs: dict[str, Any], on_empty: Policy,
                   ch: Choices, combined: bool = False,
                   item_empty: Policy = optional) -> Verdict:
    pending = dict(keys)
    verdicts = []
    if combined:
        for date, time in PAIRS:
            if date in pending and time in pending and same_form(pending[date], pending[time]):
                verdicts.append(combined_verdict(pending.pop(date), pending.pop(time), attrs.get(date),
                                                 attrs.get(time), on_empty(date), ch))
    for keyword, key in pending.items():
        verdicts.append(key_verdict(keyword, key, attrs.get(keyword), on_empty(keyword), ch, item_empty))
    return conj(verdicts)


def same_form(date: Any, time: Any) -> bool:
    if not (isinstance(date, str) and isinstance(time, str) and "-" in date and "-" in time):
        return False
    d, t = date.partition("-"), time.partition("-")
    return (bool(d[0]), bool(d[2])) == (bool(t[0]), bool(t[2]))


def combined_verdict(date: str, time: str, dates: Any, times: Any, on_empty: str, ch: Choices) -> Verdict:
    """C.2.2.2.5 combined date-time range: the concatenations matched as one DT range."""
    if not dates:
        return on_empty == "unknown"
    if not times:
        return None                 # a date without a time in a date-time range: not defined
    dlo, _, dhi = date.partition("-")
    tlo, _, thi = time.partition("-")
    return range_verdict("DT", f"{dlo + tlo}-{dhi + thi}", dates[0] + times[0], ch)


def policy(required: frozenset[str]) -> Policy:
    return lambda keyword: "unknown" if keyword in required else "absent"


def wl_empty(keyword: str) -> str:
    return "fails" if keyword in WL_REQUIRED else "absent"
