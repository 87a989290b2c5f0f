"""The bulk text decoder (dicomnet/_codec/textvalue.pyx) against the per-element decoder.

Iterating a Dataset decodes simple text values in C, straight from their bytes;
reading one element through ``ds[tag]`` decodes it through
``valuerep.decode_value_text``. Both must give the same value, of the same type,
for any bytes: the bulk decoder may only decline (leaving the value to the
per-element path), never answer differently.
"""
from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomnet.dicom.reader import read_dataset
from dicomnet.dicom.valuerep import PersonName

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
LONG = {"UC", "UT", "UR"}
# One tag per text VR (its VR on the wire is what counts in explicit VR data).
TAGS = {
    "AE": 0x00080054, "AS": 0x00101010, "CS": 0x00080060, "DA": 0x00080020, "DS": 0x00180050,
    "DT": 0x0008002A, "IS": 0x00200013, "LO": 0x00100020, "LT": 0x00104000, "PN": 0x00100010,
    "SH": 0x00080050, "ST": 0x00080081, "TM": 0x00080030, "UC": 0x00080119, "UI": 0x00080016,
    "UT": 0x0040A160,
}
CHARSETS = {None: None, "latin1": b"ISO_IR 100", "utf8": b"ISO_IR 192"}


def element(tag: int, vr: str, value: bytes) -> bytes:
    if vr in LONG:
        return struct.pack("<HH2s2xI", tag >> 16, tag & 0xFFFF, vr.encode(), len(value)) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), len(value)) + value


def dataset_bytes(vr: str, value: bytes, charset: bytes | None) -> bytes:
    head = element(0x00080005, "CS", charset) if charset is not None else b""
    return head + element(TAGS[vr], vr, value)


def same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def both_ways(vr: str, value: bytes, charset: bytes | None) -> tuple[Any, Any, bool]:
    """(per-element value, bulk value, whether the bulk decoder answered)."""
    data = dataset_bytes(vr, value, charset)
    single = read_dataset(data, transfer_syntax=EXPLICIT_VR_LE)
    expected = single._value(TAGS[vr])
    walked = read_dataset(data, transfer_syntax=EXPLICIT_VR_LE)
    list(walked)   # iterating runs the bulk decoder into walked._vals
    answered = TAGS[vr] in walked._vals
    return expected, walked._vals.get(TAGS[vr]), answered


NUMBER_CHARS = st.lists(st.sampled_from(list(b"0123456789+-.eE \\\x00") + [ord("1")] * 6), max_size=40)
# Numbers as real data writes them: signed ints and floats, padded, backslash-separated.
ONE_NUMBER = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=64).map(lambda f: f"{f:.6g}"),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.just(""),
)
PLAIN_NUMBERS = st.lists(st.tuples(st.sampled_from(["", " ", "  "]), ONE_NUMBER, st.sampled_from(["", " "])),
                         min_size=1, max_size=4).map(
    lambda parts: list("\\".join(a + n + b for a, n, b in parts).encode()))
NUMBER_BYTES = st.one_of(NUMBER_CHARS, PLAIN_NUMBERS)
TEXT_BYTES = st.lists(st.sampled_from(list(b"AZaz09 ^=\\.\x00-") + [0xE9, 0xC3, 0xA9, 0xFF, 0x1B]),
                      max_size=30)


@settings(max_examples=400, deadline=None)
@given(vr=st.sampled_from(["IS", "DS"]), raw=NUMBER_BYTES)
def test_numbers_decode_as_the_element_path_does(vr: str, raw: list[int]) -> None:
    expected, bulk, answered = both_ways(vr, bytes(raw), None)
    if answered:
        assert same(bulk, expected), (bytes(raw), bulk, expected)


@settings(max_examples=400, deadline=None)
@given(vr=st.sampled_from(sorted(TAGS)), raw=TEXT_BYTES, charset=st.sampled_from(sorted(CHARSETS, key=str)))
def test_text_decodes_as_the_element_path_does(vr: str, raw: list[int], charset: str | None) -> None:
    expected, bulk, answered = both_ways(vr, bytes(raw), CHARSETS[charset])
    if answered:
        assert same(bulk, expected), (vr, bytes(raw), charset, bulk, expected)


@pytest.mark.parametrize(("vr", "raw", "value"), [
    ("IS", b"  -42 ", -42),
    ("IS", b"+7\\8\\ 9", [7, 8, 9]),
    ("IS", b"", None),
    ("IS", b"1\\\\2", [1, None, 2]),
    ("DS", b"1.25\\-180 \\.5E+1", [1.25, -180.0, 5.0]),
    ("DS", b"0.984 ", 0.984),
    ("DS", b"1234567890123456789", 1234567890123456789.0),
    ("CS", b"ORIGINAL\\PRIMARY\\AXIAL ", ["ORIGINAL", "PRIMARY", "AXIAL"]),
    ("AE", b"  STORESCP  ", "STORESCP"),
    ("AE", b" A \\ B ", ["A", "B"]),
    ("LO", b"x \\ y ", ["x", " y"]),
    ("UI", b"1.2.840.10008.1.2\x00", "1.2.840.10008.1.2"),
    ("LT", b"a\\b  ", "a\\b"),
])
def test_plain_values_are_decoded_in_bulk(vr: str, raw: bytes, value: Any) -> None:
    expected, bulk, answered = both_ways(vr, raw, None)
    assert answered
    assert same(bulk, value) and same(expected, value)


@pytest.mark.parametrize(("vr", "raw"), [
    ("IS", b"12345678901234567890123"),   # past int64: the str path
    ("IS", b"1 2"),                        # int() refuses it: left to the element path
    ("DS", b"1e999"),                      # not finite: left to the element path
    ("DS", b"1e"),
    ("DS", b"nan"),
])
def test_awkward_numbers_agree_or_are_left_alone(vr: str, raw: bytes) -> None:
    expected, bulk, answered = both_ways(vr, raw, None)
    if answered:
        assert same(bulk, expected)
    if raw == b"12345678901234567890123":
        assert answered and bulk == 12345678901234567890123


def test_person_names_and_charsets() -> None:
    expected, bulk, answered = both_ways("PN", "Müller^Jürgen".encode("latin-1"), b"ISO_IR 100")
    assert answered and isinstance(bulk, PersonName) and bulk == expected == "Müller^Jürgen"
    # Latin-1 bytes are not UTF-8: the bulk decoder leaves them to the general decoder.
    _, _, answered = both_ways("LO", "Müller".encode("latin-1"), b"ISO_IR 192")
    assert not answered
