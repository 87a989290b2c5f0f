"""Value decoding and encoding by VR (PS3.5 section 6.2).

Decoding works on raw value bytes found by the element index; encoding turns a
Python value back into bytes for a chosen byte order. Binary numeric values are
decoded by the compiled core (:mod:`dicomnet._codec.elements`); text goes
through :mod:`dicomnet.dicom.charset` and :mod:`dicomnet.dicom.valuerep`.

How values look in Python:
- text VRs: ``str`` (``list[str]`` when several values), PN as ``PersonName``,
  IS as ``int``, DS as ``float``; empty IS/DS give ``None``;
- US SS UL SL FL FD SV UV: one value -> ``int``/``float``; several -> a read-only
  numpy array viewing the source buffer; AT -> ``int`` tag (list when several);
- OB OW OF OD OL OV: a numpy array viewing the source buffer;
- UN: ``bytes``; SQ: a ``Sequence`` (list) of ``Dataset``.
"""
from __future__ import annotations

import struct
from typing import Any

import numpy

from dicomnet.dicom import charset as _charset
from dicomnet.dicom import valuerep as _valuerep
from dicomnet.errors import DicomParseError

__all__ = [
    "TEXT_VRS",
    "NUMERIC_VRS",
    "BULK_VRS",
    "LONG_VRS",
    "decode_text_value",
    "encode_value",
    "swap_bytes",
]

TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
NUMERIC_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "SV", "UV", "AT"})
BULK_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV"})
LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"})
_CHARSET_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})

_ITEM_SIZE = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "AT": 2, "SV": 8, "UV": 8,
              "OW": 2, "OF": 4, "OD": 8, "OL": 4, "OV": 8, "OB": 1}
_DTYPE = {"US": "u2", "SS": "i2", "UL": "u4", "SL": "i4", "FL": "f4", "FD": "f8", "SV": "i8",
          "UV": "u8", "OB": "u1", "OW": "u2", "OF": "f4", "OD": "f8", "OL": "u4", "OV": "u8"}


def decode_text_value(raw: bytes, vr: str, charsets: tuple[str, ...]) -> Any:
    """Decode the bytes of one text element into its Python value."""
    text = _charset.decode_text(raw, charsets if vr in _CHARSET_VRS else (), vr)
    return _valuerep.decode_value_text(vr, text)


def swap_bytes(raw: memoryview | bytes, vr: str) -> bytes:
    """Return ``raw`` with every value of a binary VR byte-swapped (LE <-> BE)."""
    size = _ITEM_SIZE.get(vr, 1)
    if size == 1 or len(raw) == 0:
        return bytes(raw)
    if len(raw) % size:
        # Implicit VR data is not length-checked when indexed (the VR is not on the wire).
        raise DicomParseError(f"a {vr} value of {len(raw)} bytes is not a whole number of "
                              f"{size}-byte values: cannot change its byte order")
    return numpy.frombuffer(raw, dtype=f"u{size}").byteswap().tobytes()


def _text_bytes(vr: str, value: Any, charsets: tuple[str, ...]) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (list, tuple)):
        parts = [_text_one(vr, v) for v in value]
        text = "\\".join(parts)
    else:
        text = _text_one(vr, value)
    return _charset.encode_text(text, charsets if vr in _CHARSET_VRS else (), vr)


def _text_one(vr: str, v: Any) -> str:
    if v is None:
        return ""
    if vr == "IS" and not isinstance(v, str):
        return _valuerep.format_is(v)
    if vr == "DS" and not isinstance(v, str):
        return _valuerep.format_ds(v)
    return str(v)


def _as_array(vr: str, value: Any) -> Any:
    """Python numbers as an array, without a detour through float64 (which
    would round 64-bit integers: 2**64-1 is not a float64)."""
    kind = numpy.dtype(_DTYPE[vr]).kind
    if kind in "iu":
        values = value if isinstance(value, (list, tuple)) else [value]
        if all(isinstance(v, (int, numpy.integer)) and not isinstance(v, bool) for v in values):
            ints = [int(v) for v in values]
            # object dtype: exact, and checked against the VR's range below
            arr = numpy.array(ints, dtype=object)
            return arr if isinstance(value, (list, tuple)) else arr.reshape(())
    return numpy.asarray(value)


def _check_range(vr: str, arr: Any, dtype: Any) -> bool:
    """Refuse integers a VR cannot hold (numpy would wrap them silently:
    US 70000 written as 4464). True when ``arr`` holds negative values for an
    OB/OW/OL/OV (taken as two's complement: those VRs have no sign)."""
    if dtype.kind not in "iu" or arr.size == 0:
        return False
    if arr.dtype.kind in "iu" and numpy.can_cast(arr.dtype, dtype, casting="safe"):
        return False    # (a pixel array already of the VR's width: nothing to check)
    info = numpy.iinfo(dtype)
    low_limit = -(info.max + 1) // 2 if vr in BULK_VRS and dtype.kind == "u" else info.min
    if arr.dtype.kind in "iuO":
        low, high = arr.min(), arr.max()
        if low < low_limit or high > info.max:
            bad = low if low < low_limit else high
            raise ValueError(f"{bad} does not fit a {vr} value ({low_limit}..{info.max})")
        return bool(low < 0 and dtype.kind == "u")
    if arr.dtype.kind == "f":
        if not (numpy.isfinite(arr).all() and (arr >= low_limit).all() and (arr <= info.max).all()
                and (arr == numpy.round(arr)).all()):
            raise ValueError(f"{arr.ravel().tolist()[:8]} are not {vr} values (integers {low_limit}..{info.max})")
        return bool((arr < 0).any() and dtype.kind == "u")
    return False


def encode_value(vr: str, value: Any, charsets: tuple[str, ...], little: bool) -> bytes:
    """Encode a Python value as the bytes of one element (padded to even length).

    SQ values are encoded by the dataset writer, not here.
    """
    if vr in TEXT_VRS:
        data = _text_bytes(vr, value, charsets)
        if len(data) % 2:
            data += b"\x00" if vr == "UI" else b" "
        return data
    if value is None:
        return b""
    order = "<" if little else ">"
    if vr == "AT":
        tags = [value] if isinstance(value, int) else list(value)
        return b"".join(struct.pack(order + "HH", t >> 16, t & 0xFFFF) for t in tags)
    if vr in _DTYPE:
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            if not little and _ITEM_SIZE.get(vr, 1) > 1:
                # Raw bytes are taken to be little endian (how Python code builds them).
                data = swap_bytes(data, vr)
        else:
            given = isinstance(value, numpy.ndarray)
            arr = value if given else _as_array(vr, value)
            if given and vr in BULK_VRS and arr.dtype.itemsize != _ITEM_SIZE[vr]:
                # e.g. a uint16 pixel array stored as OW: keep the array's own width.
                dtype = numpy.dtype(order + arr.dtype.str[1:])
            else:
                dtype = numpy.dtype(order + _DTYPE[vr])
                if _check_range(vr, arr, dtype):
                    # OB/OW/OL/OV hold words of no sign: signed values as two's complement.
                    modulus = 1 << (8 * dtype.itemsize)
                    arr = numpy.array([int(v) % modulus for v in arr.ravel().tolist()], dtype=dtype)
            data = numpy.ascontiguousarray(arr, dtype=dtype).tobytes()
        if len(data) % 2:
            data += b"\x00"
        return data
    if vr == "UN":
        data = bytes(value)
        return data + b"\x00" if len(data) % 2 else data
    raise DicomParseError(f"cannot encode a value of VR {vr!r}")
