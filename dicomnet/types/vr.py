"""Value Representations: the table of PS3.5 section 6.2 (and 7.1.2 for headers).

For each VR: whether its Explicit VR header uses the long form (2 reserved
bytes and a 4-byte length, PS3.5 Table 7.1-1) or the short form (2-byte
length, Table 7.1-2); the byte used to pad a value to even length; the
maximum length of one value; the fixed size of one value for binary VRs; the
numpy dtype character (little-endian data: prefix ``"<"``, or use
:func:`numpy_dtype`); and whether it is text, and if so whether backslash
separates multiple values.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "VRInfo",
    "VR_INFO",
    "ALL_VRS",
    "LONG_LENGTH_VRS",
    "TEXT_VRS",
    "MULTIVALUE_TEXT_VRS",
    "BINARY_VRS",
    "vr_info",
    "is_long_length",
    "header_length",
    "numpy_dtype",
]


@dataclass(frozen=True, slots=True)
class VRInfo:
    """One VR of PS3.5 Table 6.2-1.

    ``max_length`` is the standard's limit for one value: in characters for
    the character-repertoire VRs (SH, LO, ST, LT, PN per component group), in
    bytes otherwise; None where only the 32-bit length field limits it.
    ``value_size`` is the fixed size of one value of a binary VR (AT: 4 bytes,
    two uint16: group then element), None for variable-length VRs.
    ``dtype`` is the numpy dtype character of one binary value component
    (AT: ``"H"``), None for text, SQ and UN.
    """

    vr: str
    name: str
    long_length: bool
    padding: bytes | None
    max_length: int | None
    value_size: int | None
    dtype: str | None
    is_text: bool
    multivalue: bool

    @property
    def header_length(self) -> int:
        """Explicit VR element header size in bytes: 12 for the long form, else 8."""
        return 12 if self.long_length else 8


_SPACE = b" "
_NUL = b"\x00"
_UNLIMITED = None

#  vr,  name, long, pad, max_length, value_size, dtype, text, backslash-multivalue
_ROWS: tuple[tuple[str, str, bool, bytes | None, int | None, int | None, str | None, bool, bool], ...] = (
    ("AE", "Application Entity", False, _SPACE, 16, None, None, True, True),
    ("AS", "Age String", False, _SPACE, 4, None, None, True, True),
    ("AT", "Attribute Tag", False, _NUL, 4, 4, "H", False, False),
    ("CS", "Code String", False, _SPACE, 16, None, None, True, True),
    ("DA", "Date", False, _SPACE, 8, None, None, True, True),
    ("DS", "Decimal String", False, _SPACE, 16, None, None, True, True),
    ("DT", "Date Time", False, _SPACE, 26, None, None, True, True),
    ("FD", "Floating Point Double", False, _NUL, 8, 8, "d", False, False),
    ("FL", "Floating Point Single", False, _NUL, 4, 4, "f", False, False),
    ("IS", "Integer String", False, _SPACE, 12, None, None, True, True),
    ("LO", "Long String", False, _SPACE, 64, None, None, True, True),
    ("LT", "Long Text", False, _SPACE, 10240, None, None, True, False),
    ("OB", "Other Byte", True, _NUL, _UNLIMITED, 1, "B", False, False),
    ("OD", "Other Double", True, _NUL, _UNLIMITED, 8, "d", False, False),
    ("OF", "Other Float", True, _NUL, _UNLIMITED, 4, "f", False, False),
    ("OL", "Other Long", True, _NUL, _UNLIMITED, 4, "I", False, False),
    ("OV", "Other 64-bit Very Long", True, _NUL, _UNLIMITED, 8, "Q", False, False),
    ("OW", "Other Word", True, _NUL, _UNLIMITED, 2, "H", False, False),
    ("PN", "Person Name", False, _SPACE, 64, None, None, True, True),
    ("SH", "Short String", False, _SPACE, 16, None, None, True, True),
    ("SL", "Signed Long", False, _NUL, 4, 4, "i", False, False),
    ("SQ", "Sequence of Items", True, None, _UNLIMITED, None, None, False, False),
    ("SS", "Signed Short", False, _NUL, 2, 2, "h", False, False),
    ("ST", "Short Text", False, _SPACE, 1024, None, None, True, False),
    ("SV", "Signed 64-bit Very Long", True, _NUL, 8, 8, "q", False, False),
    ("TM", "Time", False, _SPACE, 14, None, None, True, True),
    ("UC", "Unlimited Characters", True, _SPACE, _UNLIMITED, None, None, True, True),
    ("UI", "Unique Identifier (UID)", False, _NUL, 64, None, None, True, True),
    ("UL", "Unsigned Long", False, _NUL, 4, 4, "I", False, False),
    ("UN", "Unknown", True, _NUL, _UNLIMITED, None, None, False, False),
    ("UR", "Universal Resource Identifier or Locator", True, _SPACE, _UNLIMITED, None, None, True, False),
    ("US", "Unsigned Short", False, _NUL, 2, 2, "H", False, False),
    ("UT", "Unlimited Text", True, _SPACE, _UNLIMITED, None, None, True, False),
    ("UV", "Unsigned 64-bit Very Long", True, _NUL, 8, 8, "Q", False, False),
)

VR_INFO: dict[str, VRInfo] = {row[0]: VRInfo(*row) for row in _ROWS}
ALL_VRS: frozenset[str] = frozenset(VR_INFO)

LONG_LENGTH_VRS: frozenset[str] = frozenset(v for v, i in VR_INFO.items() if i.long_length)
"""VRs whose Explicit VR header is tag, VR, 2 reserved bytes, 4-byte length (PS3.5 7.1.2)."""

TEXT_VRS: frozenset[str] = frozenset(v for v, i in VR_INFO.items() if i.is_text)
MULTIVALUE_TEXT_VRS: frozenset[str] = frozenset(v for v, i in VR_INFO.items() if i.multivalue)
"""Text VRs whose values are separated by backslash (all text VRs but LT, ST, UT, UR)."""

BINARY_VRS: frozenset[str] = frozenset(v for v, i in VR_INFO.items() if i.value_size is not None)


def vr_info(vr: str) -> VRInfo:
    """Return the :class:`VRInfo` for a two-letter VR; KeyError if it is not one."""
    try:
        return VR_INFO[vr]
    except KeyError:
        raise KeyError(f"{vr!r} is not a DICOM VR") from None


def is_long_length(vr: str) -> bool:
    """True if ``vr`` uses the 12-byte Explicit VR header (reserved + 4-byte length)."""
    return vr in LONG_LENGTH_VRS


def header_length(vr: str) -> int:
    """Explicit VR element header size for ``vr``: 12 or 8 bytes."""
    return 12 if vr in LONG_LENGTH_VRS else 8


def numpy_dtype(vr: str, little_endian: bool = True) -> str | None:
    """The numpy dtype string of one value component (``"<u2"`` style), or None.

    None for VRs that are not binary numbers (text, SQ, UN).
    """
    char = vr_info(vr).dtype
    if char is None:
        return None
    if char == "B":
        return "u1"
    return ("<" if little_endian else ">") + char
