"""The element index (dicomnet/_codec/elements.pyx) on good and hostile bytes.

Every bad input is built by hand, byte by byte, so each test names exactly the
defect it checks; the parser must answer with DicomParseError carrying the
offset and tag, never crash, read out of bounds or allocate what a length claims.
"""
from __future__ import annotations

import struct
import tracemalloc
import zlib

import pytest

from dicomnet._codec.elements import ElementIndex, decode_value
from dicomnet.dicom.reader import read_dataset, read_file
from dicomnet.errors import DicomParseError

LONG = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"}
UNDEFINED = 0xFFFFFFFF
SEQ_TAG = (0x0040, 0xA730)  # Content Sequence


def el(group: int, elem: int, vr: str, value: bytes, *, length: int | None = None, little: bool = True) -> bytes:
    """One Explicit VR element; ``length`` overrides the length field."""
    o = "<" if little else ">"
    n = len(value) if length is None else length
    if vr in LONG:
        return struct.pack(o + "HH2s2xI", group, elem, vr.encode(), n) + value
    return struct.pack(o + "HH2sH", group, elem, vr.encode(), n) + value


def iel(group: int, elem: int, value: bytes, *, length: int | None = None) -> bytes:
    """One Implicit VR LE element."""
    return struct.pack("<HHI", group, elem, len(value) if length is None else length) + value


def item(body: bytes, *, undefined: bool = False) -> bytes:
    if undefined:
        return struct.pack("<HHI", 0xFFFE, 0xE000, UNDEFINED) + body + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
    return struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body


def seq_undefined(items: bytes, tag: tuple[int, int] = SEQ_TAG) -> bytes:
    return (struct.pack("<HH2s2xI", tag[0], tag[1], b"SQ", UNDEFINED) + items
            + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))


def nested(depth: int) -> bytes:
    """``depth`` undefined-length sequences, each holding one undefined-length item."""
    body = el(0x0010, 0x0020, "LO", b"ID")
    for _ in range(depth):
        body = seq_undefined(item(body, undefined=True))
    return body


DATE = el(0x0008, 0x0020, "DA", b"20240102")  # 16 bytes


def parse_error(data: bytes, **kwargs) -> DicomParseError:
    with pytest.raises(DicomParseError) as info:
        ElementIndex(data, **kwargs)
    return info.value


# ---------------------------------------------------------------- good input


def test_index_entries_of_flat_and_nested_data():
    data = (DATE + seq_undefined(item(el(0x0010, 0x0020, "LO", b"AB"), undefined=True))
            + el(0x0028, 0x0010, "US", b"\x00\x02"))
    index = ElementIndex(data)
    assert index.stop == len(data) and not index.stopped_early
    top = index.siblings(0, len(index))
    assert [index.tag(i) for i in top] == [0x00080020, 0x0040A730, 0x00280010]
    tag, vr, flags, header, offset, length, end = index.entry(top[1])
    assert (tag, vr, header, offset) == (0x0040A730, "SQ", 16, 28)
    assert flags & 1 and flags & 2  # undefined length, a sequence
    first, stop = index.children(top[1])
    (it,) = index.siblings(first, stop)
    assert index.flags(it) & 4
    assert [index.tag(i) for i in index.siblings(*index.children(it))] == [0x00100020]
    assert index.span(top[1]) == (16, 16 + 12 + 8 + 10 + 8 + 8)
    assert index.numeric(top[2], "US") == 512
    assert bytes(index.raw(top[0])) == b"20240102"
    assert index.level(0, len(index)) == {0x00080020: 0, 0x0040A730: 1, 0x00280010: top[2]}


def test_big_endian_and_implicit_headers():
    be = (el(0x0028, 0x0010, "US", b"\x02\x00", little=False)
          + el(0x0028, 0x0011, "UL", b"\x00\x00\x01\x00", little=False))
    index = ElementIndex(be, little=False)
    assert [index.tag(i) for i in range(len(index))] == [0x00280010, 0x00280011]
    assert index.numeric(0, "US") == 512 and index.numeric(1, "UL") == 256
    imp = iel(0x0010, 0x0010, b"Doe^J ") + iel(0x0028, 0x0010, b"\x00\x02")
    index = ElementIndex(imp, implicit=True)
    assert index.vr(0) is None and index.entry(1)[4:6] == (22, 2)


def test_stop_tag_and_only_group():
    data = DATE + el(0x7FE0, 0x0010, "OW", b"\x00" * 4)
    index = ElementIndex(data, stop_tag=0x7FE00010)
    assert len(index) == 1 and index.stopped_early and index.stop == 16
    meta = el(0x0002, 0x0010, "UI", b"1.2\x00") + DATE
    index = ElementIndex(meta, only_group=2)
    assert len(index) == 1 and index.stop == 12


def test_numeric_decoding_views_the_source():
    raw = struct.pack("<3H", 1, 2, 65535)
    data = bytearray(el(0x0028, 0x1101, "US", raw))
    index = ElementIndex(data)
    arr = index.numeric(0, "US")
    assert arr.tolist() == [1, 2, 65535]
    data[8] = 7  # the array is a view: the change shows through
    assert arr[0] == 7
    assert decode_value(struct.pack(">d", 1.5), 0, 8, "FD", False) == 1.5
    assert decode_value(struct.pack("<HH", 0x0010, 0x0020), 0, 4, "AT", True) == 0x00100020
    with pytest.raises(DicomParseError):
        decode_value(b"\x00\x00\x00", 0, 3, "UL", True)
    with pytest.raises(DicomParseError):
        decode_value(b"\x00" * 4, 2, 4, "UL", True)


def test_access_out_of_range_is_an_index_error():
    index = ElementIndex(DATE)
    with pytest.raises(IndexError):
        index.entry(1)
    with pytest.raises(IndexError):
        index.raw(-1)
    with pytest.raises(ValueError):
        ElementIndex(DATE, 0, 100)


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize("left", [1, 3, 4, 6, 7])
def test_truncated_header(left):
    err = parse_error(DATE + el(0x0010, 0x0010, "PN", b"AB")[:left])
    assert err.offset == 16
    assert err.tag == (0x00100010 if left >= 4 else None)
    assert "truncated" in str(err) and "offset 16" in str(err)


def test_truncated_long_header():
    err = parse_error(DATE + el(0x7FE0, 0x0010, "OB", b"")[:10])
    assert (err.offset, err.tag) == (16, 0x7FE00010)


def test_truncated_value():
    err = parse_error(DATE + el(0x0010, 0x0010, "PN", b"Doe", length=10))
    assert (err.offset, err.tag) == (16, 0x00100010)
    assert "past the end" in str(err) and "(0010,0010)" in str(err)


def test_length_past_end_implicit_and_big_endian():
    err = parse_error(iel(0x0010, 0x0010, b"AB") + iel(0x0010, 0x0020, b"XY", length=8), implicit=True)
    assert (err.offset, err.tag) == (10, 0x00100020)
    err = parse_error(el(0x0028, 0x0010, "US", b"\x00", length=2, little=False), little=False)
    assert (err.offset, err.tag) == (0, 0x00280010)


@pytest.mark.parametrize("vr,size", [("US", 2), ("SS", 2), ("UL", 4), ("SL", 4), ("FL", 4),
                                     ("FD", 8), ("AT", 4), ("OW", 2), ("OF", 4), ("OD", 8)])
def test_odd_length_for_fixed_size_vr(vr, size):
    value = b"\x01" * (size + 1)
    err = parse_error(DATE + el(0x0009, 0x1010, vr, value))
    assert (err.offset, err.tag) == (16, 0x00091010)
    assert f"multiple of {size}" in str(err)


def test_undefined_length_not_allowed():
    # UT has a 32-bit length field: 0xFFFFFFFF is "undefined", which only SQ/UN/OB/OW Pixel Data may use.
    err = parse_error(DATE + struct.pack("<HH2s2xI", 0x0010, 0x4000, b"UT", UNDEFINED) + b"AB")
    assert (err.offset, err.tag) == (16, 0x00104000)
    assert "undefined length" in str(err)
    # LO has a 16-bit length: 0xFFFF then is just a length past the end.
    err = parse_error(DATE + struct.pack("<HH2sH", 0x0010, 0x0020, b"LO", 0xFFFF) + b"\xff\xff" + b"AB")
    assert (err.offset, err.tag) == (16, 0x00100020)
    # An explicit OB that is not Pixel Data cannot be undefined either.
    err = parse_error(struct.pack("<HH2s2xI", 0x0009, 0x1010, b"OB", UNDEFINED) + b"\x00" * 8)
    assert (err.offset, err.tag) == (0, 0x00091010)


def test_undefined_length_implicit_non_sequence_content():
    # Implicit VR: an undefined length is read as a sequence; the content must then be items.
    err = parse_error(iel(0x0010, 0x0020, b"", length=UNDEFINED) + b"ABCDEFGH", implicit=True)
    assert (err.offset, err.tag) == (8, 0x42414443)  # "ABCD" read as a little-endian tag where an item belongs


def test_nesting_within_and_past_max_depth():
    index = ElementIndex(nested(64))
    assert len(index) == 64 * 2 + 1
    err = parse_error(nested(65))
    assert err.tag == 0x0040A730 and "nested deeper than 64" in str(err)
    assert err.offset == 64 * 20 + 12  # the first item of the 65th sequence (64 SQ+item headers before it)
    err = parse_error(nested(3), max_depth=2)
    assert err.tag == 0x0040A730 and err.offset == 2 * 20 + 12


def test_nesting_depth_counts_defined_length_sequences_too():
    body = el(0x0010, 0x0020, "LO", b"ID")
    for _ in range(5):
        body = el(0x0040, 0xA730, "SQ", item(body))
    ElementIndex(body, max_depth=5)
    assert parse_error(body, max_depth=4).tag == 0x0040A730


def test_huge_length_claim_allocates_nothing_like_it():
    claim = struct.pack("<HH2s2xI", 0x7FE0, 0x0010, b"OB", 0xFFFFFFF0) + b"\x00" * 64
    tracemalloc.start()
    try:
        err = parse_error(DATE + claim)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (err.offset, err.tag) == (16, 0x7FE00010)
    assert peak < 1 << 20  # far below the 4 GiB the length field claims
    ts = el(0x0002, 0x0010, "UI", b"1.2.840.10008.1.2.1\x00")
    read_file(bytes(128) + b"DICM" + ts + DATE)  # warm up: lazy imports are not the parser's allocations
    tracemalloc.start()
    try:
        with pytest.raises(DicomParseError):
            read_file(bytes(128) + b"DICM" + ts + DATE + claim)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_huge_item_and_fragment_claims():
    seq = struct.pack("<HH2s2xI", 0x0040, 0xA730, b"SQ", UNDEFINED) + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFF0)
    err = parse_error(seq + b"\x00" * 16)
    assert (err.offset, err.tag) == (12, 0xFFFEE000)
    pix = struct.pack("<HH2s2xI", 0x7FE0, 0x0010, b"OB", UNDEFINED) + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFF0)
    err = parse_error(pix + b"\x00" * 16)
    assert (err.offset, err.tag) == (12, 0xFFFEE000)


def test_missing_sequence_delimiter():
    data = struct.pack("<HH2s2xI", 0x0040, 0xA730, b"SQ", UNDEFINED) + item(DATE, undefined=True)
    err = parse_error(data)
    assert (err.offset, err.tag) == (len(data), 0x0040A730)


def test_missing_item_delimiter():
    data = (struct.pack("<HH2s2xI", 0x0040, 0xA730, b"SQ", UNDEFINED)
            + struct.pack("<HHI", 0xFFFE, 0xE000, UNDEFINED) + DATE)
    err = parse_error(data)
    assert (err.offset, err.tag) == (len(data), 0xFFFEE000)
    # A sequence delimiter where the item delimiter belongs:
    err = parse_error(data + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    assert (err.offset, err.tag) == (len(data), 0xFFFEE0DD)


def test_missing_fragment_sequence_delimiter():
    data = (struct.pack("<HH2s2xI", 0x7FE0, 0x0010, b"OB", UNDEFINED) + item(b"") + item(b"abcd"))
    err = parse_error(data)
    assert (err.offset, err.tag) == (len(data), 0x7FE00010)


def test_stray_delimiters_and_non_items():
    err = parse_error(DATE + struct.pack("<HHI", 0xFFFE, 0xE00D, 0))
    assert (err.offset, err.tag) == (16, 0xFFFEE00D)
    err = parse_error(el(0x0040, 0xA730, "SQ", DATE))  # a data element where an item belongs
    assert (err.offset, err.tag) == (12, 0x00080020)


def test_invalid_vr_bytes():
    err = parse_error(DATE + b"\x10\x00\x10\x00pn\x02\x00AB")
    assert (err.offset, err.tag) == (20, 0x00100010)


def test_garbage_in_meta_group():
    ts = el(0x0002, 0x0010, "UI", b"1.2.840.10008.1.2.1\x00")
    good = bytes(128) + b"DICM" + ts + DATE
    assert read_file(good).file_meta is not None
    # A meta element whose length runs past the end of the file:
    with pytest.raises(DicomParseError) as info:
        read_file(bytes(128) + b"DICM" + el(0x0002, 0x0001, "OB", b"\x00\x01", length=0x7FFF0000))
    assert (info.value.offset, info.value.tag) == (132, 0x00020001)
    # Garbage VR bytes in the middle of the group (the group reads as explicit from its first element):
    with pytest.raises(DicomParseError) as info:
        read_file(bytes(128) + b"DICM" + ts + b"\x02\x00\x12\x00\x01\x02\x03\x04" + DATE)
    assert info.value.tag == 0x00020012 and info.value.offset == 132 + len(ts) + 4
    # A truncated meta element header:
    with pytest.raises(DicomParseError) as info:
        read_file(bytes(128) + b"DICM" + ts + b"\x02\x00\x12\x00UI")
    assert (info.value.offset, info.value.tag) == (132 + len(ts), 0x00020012)


def _deflated_file(body: bytes) -> bytes:
    ts = el(0x0002, 0x0010, "UI", b"1.2.840.10008.1.2.1.99")
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return bytes(128) + b"DICM" + ts + packer.compress(body) + packer.flush()


def test_deflated_reads_and_bomb_is_refused():
    body = DATE + el(0x0010, 0x0010, "PN", b"Doe^John")
    assert str(read_file(_deflated_file(body)).PatientName) == "Doe^John"
    # 64 MiB of zeros in an OB element compress to ~64 KiB: past a 1 MiB limit.
    bomb = _deflated_file(DATE + struct.pack("<HH2s2xI", 0x0009, 0x1010, b"OB", 64 << 20) + bytes(64 << 20))
    assert len(bomb) < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(DicomParseError) as info:
            read_file(bomb, max_inflated_size=1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "limit" in str(info.value) and info.value.offset == 132 + 30
    assert peak < 8 << 20
    # ... and past the default ratio limit (1000x) too.
    with pytest.raises(DicomParseError):
        read_file(bomb)


def test_deflated_garbage():
    ts = el(0x0002, 0x0010, "UI", b"1.2.840.10008.1.2.1.99")
    with pytest.raises(DicomParseError):
        read_file(bytes(128) + b"DICM" + ts + b"\xff\xfe\xfd\xfc" * 8)


def test_read_dataset_reports_file_offsets():
    err = None
    with pytest.raises(DicomParseError) as info:
        read_dataset(b"\x00" * 10 + DATE + el(0x0010, 0x0010, "PN", b"AB", length=4), 10)
    err = info.value
    assert (err.offset, err.tag) == (26, 0x00100010)


def test_un_of_undefined_length_is_parsed_as_implicit_le_items():
    # PS3.5 6.2.2: a UN with undefined length holds an Implicit VR LE sequence,
    # even inside a big endian data set.
    inner = iel(0x0010, 0x0020, b"ID01")
    un = (struct.pack(">HH2s2xI", 0x0009, 0x1001, b"UN", UNDEFINED)
          + struct.pack("<HHI", 0xFFFE, 0xE000, len(inner)) + inner + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    data = un + el(0x0028, 0x0010, "US", b"\x00\x02", little=False)
    index = ElementIndex(data, little=False)
    top = index.siblings(0, len(index))
    assert [index.tag(i) for i in top] == [0x00091001, 0x00280010]
    assert index.flags(top[0]) & 32 and index.flags(top[0]) & 2
    (it,) = index.siblings(*index.children(top[0]))
    (leaf,) = index.siblings(*index.children(it))
    assert index.tag(leaf) == 0x00100020 and bytes(index.raw(leaf)) == b"ID01"
    assert index.numeric(top[1], "US") == 2  # back to big endian after the UN


def test_implicit_defined_length_sequence_needs_sq_tags():
    item_body = iel(0x0008, 0x0100, b"T1")
    seq = iel(0x0040, 0xA730, struct.pack("<HHI", 0xFFFE, 0xE000, len(item_body)) + item_body)
    as_sq = ElementIndex(seq, implicit=True, sq_tags={0x0040A730})
    assert as_sq.flags(0) & 2 and len(as_sq) == 3
    opaque = ElementIndex(seq, implicit=True)
    assert len(opaque) == 1 and opaque.flags(0) == 0
    items = ElementIndex(seq, 8, implicit=True, items=True)  # the value re-read as items
    assert [items.tag(i) for i in range(len(items))] == [0xFFFEE000, 0x00080100]


def test_level_items_lists_each_tag_once_in_order():
    data = (el(0x0010, 0x0020, "LO", b"AB") + el(0x0008, 0x0060, "CS", b"CT")
            + el(0x0010, 0x0020, "SH", b"CD"))
    index = ElementIndex(data)
    assert index.level_items(0, len(index)) == [(0x00080060, "CS"), (0x00100020, "SH")]
    assert index.level(0, len(index)) == {0x00100020: 2, 0x00080060: 1}
    ordered = ElementIndex(DATE + el(0x0010, 0x0020, "LO", b"AB"))
    assert ordered.level_items(0, 2) == [(0x00080020, "DA"), (0x00100020, "LO")]
