"""Value representations of text elements: parsing, formatting, Python values.

PS3.5 Table 6.2-1 defines the VRs.  These helpers work on already decoded
``str`` (see :mod:`dicomnet.dicom.charset` for bytes -> str).

Values exposed by :func:`decode_value_text` (chosen to match pydicom 3):

* a single value is returned as is, several (backslash separated) as a list;
* IS -> ``int``, DS -> ``float``, PN -> :class:`PersonName`, everything else
  -> ``str`` (DA, TM, DT stay ``str``, as pydicom's default; use
  :func:`parse_da`, :func:`parse_tm`, :func:`parse_dt` for ``datetime``);
* LT, ST, UT, UR are never split on backslash;
* an empty element gives ``None`` for IS and DS, ``PersonName("")`` for PN and
  ``""`` otherwise (pydicom's ``empty_value_for_VR``).  An empty value inside a
  multi-valued IS/DS gives ``None`` (pydicom gives ``""`` there).
* padding: SH, LO, UC, PN values lose trailing spaces each (PN also its
  trailing empty component groups, ``"A^B=="`` -> ``"A^B"``); AE values lose
  leading and trailing spaces each; IS/DS values are parsed ignoring
  surrounding spaces; CS, AS, DA, TM, DT, UI keep inner values as they are
  (only the whole element's trailing padding is removed, as pydicom does).
"""
from __future__ import annotations

import datetime
import math
import re
from typing import Any

from dicomnet.errors import DicomParseError

__all__ = [
    "PersonName",
    "parse_is",
    "parse_ds",
    "format_is",
    "format_ds",
    "parse_da",
    "parse_tm",
    "parse_dt",
    "split_values",
    "decode_value_text",
    "MULTI_VALUED_TEXT_VRS",
]

#: VRs whose value is one string even when it contains a backslash.
SINGLE_VALUED_TEXT_VRS = frozenset({"LT", "ST", "UT", "UR"})
#: String VRs that may hold several backslash-separated values.
MULTI_VALUED_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "PN", "SH", "TM", "UC", "UI"}
)


class PersonName(str):
    """A decoded PN value; it *is* the full string (``"Yamada^Tarou=山田^太郎"``).

    The ``=``-separated component groups are :attr:`alphabetic`,
    :attr:`ideographic` and :attr:`phonetic`; the ``^``-separated name
    components of the alphabetic group are exposed by name (PS3.5 6.2.1).
    """

    __slots__ = ()

    def _group(self, index: int) -> str:
        groups = self.split("=")
        return groups[index] if index < len(groups) else ""

    def _name_part(self, index: int) -> str:
        parts = self._group(0).split("^")
        return parts[index] if index < len(parts) else ""

    @property
    def components(self) -> tuple[str, ...]:
        """The component groups present (trailing empty groups dropped)."""
        groups = self.split("=")
        while groups and not groups[-1]:
            groups.pop()
        return tuple(groups)

    @property
    def alphabetic(self) -> str:
        """The single-byte (alphabetic) component group."""
        return self._group(0)

    @property
    def ideographic(self) -> str:
        """The ideographic component group ("" if absent)."""
        return self._group(1)

    @property
    def phonetic(self) -> str:
        """The phonetic component group ("" if absent)."""
        return self._group(2)

    @property
    def family_name(self) -> str:
        return self._name_part(0)

    @property
    def given_name(self) -> str:
        return self._name_part(1)

    @property
    def middle_name(self) -> str:
        return self._name_part(2)

    @property
    def name_prefix(self) -> str:
        return self._name_part(3)

    @property
    def name_suffix(self) -> str:
        return self._name_part(4)

    def __repr__(self) -> str:
        return f"PersonName({str.__repr__(self)})"


# --- IS / DS ----------------------------------------------------------------

_IS_RE = re.compile(r"[+-]?[0-9]+")
# Each digit belongs to one place in the pattern: "[0-9]+\.?[0-9]*" let a run
# of digits split between its two parts every way, and a long value that
# did not match took quadratic time (16,000 characters: 9 s, holding the GIL).
_DS_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_IS_CHARS = 12     # an IS value's maximum length (PS3.5 Table 6.2-1)
_SHOWN = 64     # characters of a bad value an error message quotes


def _shown(text: str) -> str:
    """``text`` quoted for an error message, cut short when long (a damaged
    element may hold megabytes, and the message is logged)."""
    if len(text) <= _SHOWN:
        return repr(text)
    return f"{text[:_SHOWN]!r}... ({len(text)} characters)"


def parse_is(text: str) -> int:
    """Parse an Integer String value.

    Surrounding spaces (and NULs) are ignored, a leading ``+`` is accepted, and
    like pydicom a decimal/exponent form is accepted when it is integral
    (``"1.0"``, ``"1e2"``).  Anything else raises
    :class:`~dicomnet.errors.DicomParseError`.  The PS3.5 range is not
    enforced on reading.
    """
    s = text.strip(" \x00")
    if _IS_RE.fullmatch(s):
        return int(s)
    if _DS_RE.fullmatch(s):
        value = float(s)
        if math.isfinite(value) and value == int(value):
            return int(value)
        raise DicomParseError(f"IS value {_shown(text)} is not an integer")
    raise DicomParseError(f"invalid IS value {_shown(text)}")


def parse_ds(text: str) -> float:
    """Parse a Decimal String value (fixed or floating point, PS3.5 Table 6.2-1).

    Surrounding spaces are ignored; ``nan``/``inf`` and other non-DS text
    raise :class:`~dicomnet.errors.DicomParseError`.
    """
    s = text.strip(" \x00")
    if not _DS_RE.fullmatch(s):
        raise DicomParseError(f"invalid DS value {_shown(text)}")
    return float(s)


def format_is(value: int) -> str:
    """Format an ``int`` as IS; raises ``ValueError`` when it takes more than
    the 12 characters an IS holds.

    PS3.5 also bounds IS to -2**31 .. 2**31-1, but files break that (an
    Instance Number of 2671067103, say) and are read as they are; such a
    value copied into another data set -- a C-FIND response built from a
    stored instance -- must be writable too. So is it with pydicom and
    dcmtk, which keep the text.
    """
    number = int(value)
    if not isinstance(value, int) and number != value:
        raise ValueError(f"{value!r} is not an integer: an IS value cannot hold it")
    text = str(number)
    if len(text) > _IS_CHARS:
        raise ValueError(f"{number} does not fit in the {_IS_CHARS} characters of an IS value")
    return text


def _compact(text: str) -> str:
    """Drop redundant characters from a Python float format: '1.50e+07' -> '1.5e7'."""
    mantissa, sep, exponent = text.partition("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    if not sep:
        return mantissa
    exp = int(exponent)
    return mantissa if exp == 0 else f"{mantissa}e{exp}"


def format_ds(value: float) -> str:
    """Format a float as DS: at most 16 characters, valid per PS3.5.

    Returns the shortest string that reads back as exactly ``value`` when one
    fits in 16 characters, otherwise the most precise representation that does.
    Raises ``ValueError`` for NaN and infinities (DS cannot express them).
    """
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{value} cannot be represented as DS")
    best = _compact(repr(value))
    if len(best) <= 16:
        return best
    for digits in range(16, 0, -1):
        candidates = (_compact(f"{value:.{digits}g}"), _compact(f"{value:.{digits - 1}e}"))
        text = min(candidates, key=len)
        # Rounding up may pass the largest double: 1.7976931349e308 reads back as inf.
        if len(text) <= 16 and math.isfinite(float(text)):
            return text
    raise ValueError(f"{value} cannot be represented as DS")  # pragma: no cover


# --- DA / TM / DT -----------------------------------------------------------

_DA_RE = re.compile(r"([0-9]{4})\.?([0-9]{2})\.?([0-9]{2})")
_TM_RE = re.compile(r"([0-9]{2})(?::?([0-9]{2})(?::?([0-9]{2})(?:\.([0-9]{1,6}))?)?)?")
_DT_RE = re.compile(
    r"([0-9]{4})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})"
    r"(?:([0-9]{2})(?:\.([0-9]{1,6}))?)?)?)?)?)?([+-][0-9]{4})?"
)


def parse_da(text: str) -> datetime.date:
    """Parse DA ``YYYYMMDD`` (also the ACR-NEMA ``YYYY.MM.DD``) to a date."""
    m = _DA_RE.fullmatch(text.strip(" \x00"))
    if not m:
        raise DicomParseError(f"invalid DA value {_shown(text)}")
    try:
        return datetime.date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError as exc:
        raise DicomParseError(f"invalid DA value {_shown(text)}: {exc}") from None


def _time_parts(hh: str, mm: str | None, ss: str | None, frac: str | None, text: str) -> tuple[int, int, int, int]:
    hour, minute = int(hh), int(mm or 0)
    second = int(ss or 0)
    micro = int(frac.ljust(6, "0")) if frac else 0
    if second == 60:  # leap second: Python's time cannot hold it
        second = 59
    if hour > 23 or minute > 59 or second > 59:
        raise DicomParseError(f"time out of range in {_shown(text)}")
    return hour, minute, second, micro


def parse_tm(text: str) -> datetime.time:
    """Parse TM ``HH[MM[SS[.FFFFFF]]]`` (and the old ``HH:MM:SS`` form).

    A leap second (60) is read as 59.
    """
    m = _TM_RE.fullmatch(text.strip(" \x00"))
    if not m:
        raise DicomParseError(f"invalid TM value {_shown(text)}")
    return datetime.time(*_time_parts(m[1], m[2], m[3], m[4], text))


def parse_dt(text: str) -> datetime.datetime:
    """Parse DT ``YYYY[MM[DD[HH[MM[SS[.FFFFFF]]]]]][&ZZXX]``.

    Missing month/day default to 1, missing time parts to 0.  A UTC offset
    ``+HHMM``/``-HHMM`` gives an aware datetime.
    """
    m = _DT_RE.fullmatch(text.strip(" \x00"))
    if not m:
        raise DicomParseError(f"invalid DT value {_shown(text)}")
    tz = None
    if m[8]:
        sign = -1 if m[8][0] == "-" else 1
        hours, minutes = int(m[8][1:3]), int(m[8][3:5])
        if hours > 14 or minutes > 59:
            raise DicomParseError(f"invalid UTC offset in DT value {_shown(text)}")
        tz = datetime.timezone(sign * datetime.timedelta(hours=hours, minutes=minutes))
    try:
        if m[4] is not None:
            hour, minute, second, micro = _time_parts(m[4], m[5], m[6], m[7], text)
        else:
            hour = minute = second = micro = 0
        return datetime.datetime(
            int(m[1]), int(m[2] or 1), int(m[3] or 1), hour, minute, second, micro, tzinfo=tz
        )
    except ValueError as exc:
        raise DicomParseError(f"invalid DT value {_shown(text)}: {exc}") from None


# --- dispatch ---------------------------------------------------------------


def split_values(text: str) -> list[str]:
    """Split a multi-valued string on the backslash value delimiter."""
    return text.split("\\")


def _is_or_none(text: str) -> int | None:
    return parse_is(text) if text.strip(" \x00") else None


def _ds_or_none(text: str) -> float | None:
    return parse_ds(text) if text.strip(" \x00") else None


def _rstrip(text: str) -> str:
    return text.rstrip("\x00 ")


def _strip(text: str) -> str:
    return text.strip("\x00 ")


def _same(text: str) -> str:
    return text


_CONVERTERS: dict[str, Any] = {
    "IS": _is_or_none,
    "DS": _ds_or_none,
    "PN": lambda t: PersonName(_rstrip(t).rstrip("=")),
    "SH": _rstrip,
    "LO": _rstrip,
    "UC": _rstrip,
    "AE": _strip,
}


def decode_value_text(vr: str, text: str) -> Any:
    """The Python value of one decoded text element (see the module docstring).

    ``text`` is the whole element as returned by
    :func:`dicomnet.dicom.charset.decode_text` (trailing padding removed).
    Raises :class:`~dicomnet.errors.DicomParseError` for invalid IS/DS.
    """
    if vr in SINGLE_VALUED_TEXT_VRS:
        return text
    if not text:
        if vr == "IS" or vr == "DS":
            return None
        if vr == "PN":
            return PersonName("")
        return ""
    convert = _CONVERTERS.get(vr, _same)
    if "\\" not in text:
        return convert(text)
    return [convert(v) for v in text.split("\\")]
