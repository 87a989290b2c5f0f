"""The DICOM JSON Model (PS3.18 F.2): a Dataset as JSON-ready dicts.

``to_json_dict(ds)`` maps each tag, as eight upper-case hex digits, to an
object with ``"vr"`` and, unless the element is empty, ``"Value"`` (a list),
``"InlineBinary"`` (base64 of the little-endian bytes, F.2.7) for OB OD OF OL
OV OW UN, or -- for PN -- ``"Value"`` of objects with ``"Alphabetic"``,
``"Ideographic"``, ``"Phonetic"`` (F.2.2). Sequences nest items as objects.

Choices where F.2 leaves room (the same as pydicom's ``to_json_dict``):
IS and DS values are JSON numbers; an empty value inside a multi-valued
element is ``null``; AT values are "GGGGEEEE" strings; group length elements
(gggg,0000) are left out (F.2: they "should not" be included); no BulkDataURI.
"""
from __future__ import annotations

import base64
import math
from typing import Any

import numpy

from dicomnet.dicom.dataset import Dataset

__all__ = ["to_json_dict", "element_json"]

_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_NUMBER_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "SV", "UV"})
_LE_DTYPE = {"OB": "u1", "UN": "u1", "OW": "<u2", "OF": "<f4", "OD": "<f8", "OL": "<u4", "OV": "<u8"}


def to_json_dict(ds: Dataset) -> dict[str, Any]:
    """``ds`` in the DICOM JSON Model (PS3.18 F.2), ready for ``json.dumps``."""
    out: dict[str, Any] = {}
    for elem in ds:
        if elem.tag & 0xFFFF == 0:
            continue  # group length
        out[f"{elem.tag:08X}"] = element_json(elem.VR, elem.value)
    return out


def _values(value: Any) -> list[Any]:
    if value is None or (isinstance(value, str) and value == ""):
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, numpy.ndarray):
        return value.tolist()
    return [value]


def _number(v: Any) -> Any:
    if v is None or v == "":
        return None
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/Infinity; keep the text rather than break the document
    return v


def _person_name(v: Any) -> dict[str, str] | None:
    text = str(v)
    if not text:
        return None
    groups = text.split("=")
    out = {}
    for name, group in zip(("Alphabetic", "Ideographic", "Phonetic"), groups):
        if group:
            out[name] = group
    return out


def _binary(vr: str, value: Any) -> str:
    if isinstance(value, numpy.ndarray):
        data = numpy.ascontiguousarray(value, dtype=numpy.dtype(_LE_DTYPE.get(vr, value.dtype.str))).tobytes()
    else:
        data = bytes(value)
    return base64.b64encode(data).decode("ascii")


def element_json(vr: str, value: Any) -> dict[str, Any]:
    """One element's JSON object (``{"vr": ..., "Value" | "InlineBinary": ...}``)."""
    obj: dict[str, Any] = {"vr": vr}
    if vr == "SQ":
        if value:
            obj["Value"] = [to_json_dict(item) for item in value]
        return obj
    if vr in _BINARY_VRS:
        if value is not None and len(value):
            obj["InlineBinary"] = _binary(vr, value)
        return obj
    values = _values(value)
    if not values:
        return obj
    if vr == "PN":
        obj["Value"] = [_person_name(v) for v in values]
    elif vr == "AT":
        obj["Value"] = [f"{int(v):08X}" for v in values]
    elif vr in _NUMBER_VRS or vr in ("IS", "DS"):
        obj["Value"] = [_number(v) for v in values]
    else:
        obj["Value"] = [None if v is None or v == "" else str(v) for v in values]
    return obj
