"""Property tests (hypothesis) for the data set codec.

1. Random datasets (random dictionary tags with their VRs, random values,
   nested sequences) encode -> decode to the same values in every uncompressed
   syntax and through every transcoding between them.
2. Random bytes and mutated real files (pydicom's test files with byte flips
   and truncations) raise nothing but DicomParseError (PixelDataError when
   shaping pixels) while reading and walking every value.
"""
from __future__ import annotations

import glob
import os

import numpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dicomnet.dicom._dictionary import ENTRIES
from dicomnet.dicom.dataset import Dataset
from dicomnet.dicom.pixels import PixelDataError
from dicomnet.dicom.reader import read_dataset, read_file
from dicomnet.dicom.writer import encode_dataset, encode_file_meta
from dicomnet.errors import DicomNetError, DicomParseError

LE, IMPLICIT, BE, DEFLATED = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"
UNCOMPRESSED = (LE, IMPLICIT, BE)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------ value strategies

_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
_TEXT = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "\\")


def _word(alphabet: str, max_size: int) -> st.SearchStrategy[str]:
    # No leading/trailing spaces: DICOM strips padding, so they would not round-trip.
    return st.text(alphabet, min_size=1, max_size=max_size)


def _multi(one: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(one, st.lists(one, min_size=2, max_size=4))


_uid = st.lists(st.integers(0, 99999), min_size=2, max_size=6).map(lambda p: ".".join(map(str, [1, 2] + p)))
_date = st.dates().map(lambda d: d.strftime("%Y%m%d"))
_f32 = st.floats(-1e6, 1e6, width=32, allow_nan=False)
_f64 = st.floats(allow_nan=False, allow_infinity=False)

VALUES: dict[str, st.SearchStrategy] = {
    "CS": _multi(_word(_UPPER, 16)),
    "SH": _word(_TEXT, 16),
    "LO": _multi(_word(_TEXT, 64)),
    "LT": _word(_TEXT + " ", 200).map(str.rstrip).filter(bool),
    "PN": st.tuples(_word("ABCXYZabcxyz", 10), _word("ABCXYZabcxyz", 10)).map("^".join),
    "UI": _uid,
    "DA": _date,
    "IS": _multi(st.integers(-(2**31) + 1, 2**31 - 1)),
    "DS": _multi(st.integers(-(10**6), 10**6).map(lambda i: i / 8)),
    "US": _multi(st.integers(0, 0xFFFF)),
    "SS": _multi(st.integers(-0x8000, 0x7FFF)),
    "UL": _multi(st.integers(0, 0xFFFFFFFF)),
    "SL": _multi(st.integers(-(2**31), 2**31 - 1)),
    "FL": _multi(_f32),
    "FD": _multi(_f64),
    "AT": _multi(st.integers(0, 0xFFFFFFFF).filter(lambda t: t >> 16 != 0xFFFE)),
    "OB": st.binary(max_size=64).map(lambda b: b + b"\x00" if len(b) % 2 else b),
    "OW": st.lists(st.integers(0, 0xFFFF), max_size=16).map(lambda v: numpy.array(v, numpy.uint16)),
    "OF": st.lists(_f32, max_size=8).map(lambda v: numpy.array(v, numpy.float32)),
}


def _pool() -> dict[str, list[int]]:
    """Dictionary tags whose only VR is one we generate (so Implicit VR reads the same VR back)."""
    pool: dict[str, list[int]] = {vr: [] for vr in VALUES}
    pool["SQ"] = []
    for tag, entry in sorted(ENTRIES.items()):
        vr = entry[0]
        group = tag >> 16
        if vr not in pool or group in (0x0002, 0x0008 if tag == 0x00080005 else -1) or group & 1:
            continue
        if tag & 0xFFFF == 0 or group >= 0x7FE0 or tag in (0x00280100, 0x00280103):
            continue  # group lengths, pixel data, and the attributes that steer other VRs
        pool[vr].append(tag)
    return {vr: tags[:: max(1, len(tags) // 60)] for vr, tags in pool.items() if tags}


POOL = _pool()
_element = st.sampled_from(sorted(set(VALUES) & set(POOL))).flatmap(
    lambda vr: st.tuples(st.sampled_from(POOL[vr]), st.just(vr), VALUES[vr]))


def _dataset(children: st.SearchStrategy) -> st.SearchStrategy[list]:
    sequence = st.tuples(st.sampled_from(POOL["SQ"]), st.just("SQ"), st.lists(children, max_size=2))
    return st.lists(st.one_of(_element, sequence), max_size=8)


# An element list: leaves, or sequences of element lists, three levels deep at most.
datasets = st.recursive(st.lists(_element, max_size=6), _dataset, max_leaves=12)


def build(elements: list) -> Dataset:
    ds = Dataset()
    for tag, vr, value in elements:
        if vr == "SQ":
            ds.add_new(tag, "SQ", [build(item) for item in value])
        else:
            ds.add_new(tag, vr, value)
    return ds


def plain(value, vr: str):
    if vr == "SQ":
        return [as_dict(item) for item in value]
    if isinstance(value, numpy.ndarray):
        value = value.tolist()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return list(bytes(value))
    if isinstance(value, (list, tuple)):
        return [plain(v, vr) for v in value] if len(value) != 1 else plain(value[0], vr)
    if vr == "FL" and value is not None:
        return float(numpy.float32(value))
    if vr == "PN" and value is not None:
        return str(value)
    return value


def as_dict(ds: Dataset) -> dict:
    return {e.tag: (e.VR, plain(e.value, e.VR)) for e in ds}


@SETTINGS
@given(datasets)
def test_random_datasets_round_trip_in_every_syntax(elements):
    ds = build(elements)
    expected = as_dict(ds)
    for ts in UNCOMPRESSED:
        data = bytes(encode_dataset(ds, ts))
        back = read_dataset(data, transfer_syntax=ts)
        assert as_dict(back) == expected, ts
        assert bytes(encode_dataset(back, ts)) == data  # untouched: re-encodes to its own bytes
        for other in UNCOMPRESSED:
            moved = bytes(encode_dataset(back, other))
            assert moved == bytes(encode_dataset(ds, other)), (ts, other)


@settings(max_examples=40, deadline=None)
@given(datasets)
def test_random_datasets_round_trip_deflated(elements):
    ds = build(elements)
    back = read_dataset(bytes(encode_dataset(ds, DEFLATED)), transfer_syntax=DEFLATED)
    assert as_dict(back) == as_dict(ds)


# ------------------------------------------------------------- hostile input


def walk(ds: Dataset) -> int:
    """Decode every value, nested ones included; shape the pixels. Returns the element count."""
    count = 0
    for elem in ds:
        value = elem.value
        repr(elem)
        count += 1
        if elem.VR == "SQ":
            for item in value:
                count += walk(item)
    if 0x7FE00010 in ds and ds._parent is None:
        try:
            ds.pixel_array
        except PixelDataError:
            pass
        try:
            for _ in ds.frames():
                pass
        except PixelDataError:
            pass
    return count


def read_and_walk(data: bytes) -> None:
    try:
        ds = read_file(data)
        walk(ds)
        if ds.file_meta is not None:
            walk(ds.file_meta)
    except DicomParseError:
        return  # PixelDataError is a DicomNetError too, but must only come from pixels (caught in walk)
    for ts in UNCOMPRESSED:  # what was read can be transcoded, or refused with a DicomNetError
        try:
            encode_dataset(ds, ts)
            encode_file_meta(ds, ts)
        except DicomNetError:
            pass


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_raise_only_parse_errors(data):
    read_and_walk(data)
    read_and_walk(bytes(128) + b"DICM" + data)
    for ts in UNCOMPRESSED:
        try:
            walk(read_dataset(data, transfer_syntax=ts))
        except DicomParseError:
            pass


def _pydicom_files() -> list[bytes]:
    try:
        import pydicom
    except ImportError:
        return []
    folder = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
    paths = sorted(p for p in glob.glob(os.path.join(folder, "*.dcm")) if os.path.getsize(p) < 200_000)
    return [open(p, "rb").read() for p in paths]


FILES = _pydicom_files()


@pytest.mark.skipif(not FILES, reason="pydicom's test files are not installed")
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_real_files_raise_only_parse_errors(data):
    blob = bytearray(data.draw(st.sampled_from(FILES)))
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    flips = data.draw(st.lists(st.tuples(st.integers(0, max(0, len(blob) - 1)), st.integers(0, 255)), max_size=8))
    for pos, byte in flips:
        if blob:
            blob[pos] = byte
    read_and_walk(bytes(blob))


@pytest.mark.skipif(not FILES, reason="pydicom's test files are not installed")
def test_every_truncation_of_a_small_file():
    # The smallest Part 10 file with sequence items: every cut lands in a header, a value or an item.
    candidates = (f for f in FILES if b"DICM" in f[:132] and f.count(b"\xfe\xff\x00\xe0") > 10 and len(f) > 2000)
    blob = min(candidates, key=len)
    for cut in range(0, len(blob), max(1, len(blob) // 600)):
        read_and_walk(blob[:cut])


def test_specific_character_set_with_a_nul_byte():
    """Found by fuzzing: codecs.lookup raised ValueError for a charset name holding NUL."""
    import struct

    data = (struct.pack("<HH2sH", 0x0008, 0x0005, b"CS", 8) + b"ISO_IR\x001"
            + struct.pack("<HH2sH", 0x0010, 0x0010, b"PN", 2) + b"AB")
    ds = read_dataset(data, transfer_syntax=LE)
    assert str(ds.PatientName) == "AB"  # an unknown character set falls back with a warning
