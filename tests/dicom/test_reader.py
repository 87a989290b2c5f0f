"""Reading Part 10 files and bare data sets (dicomnet/dicom/reader.py).

Every source kind (path -> mmap, bytes, bytearray, memoryview, file object),
with and without preamble and File Meta, the three uncompressed syntaxes and
Deflated, stop_before_pixels, and the refusals of hopeless input. Values of
pydicom's own files are compared in test_pydicom_conformance.py.
"""
from __future__ import annotations

import io
import mmap
import os
import struct
import zlib

import pytest

from dicomnet.dicom.reader import read_dataset, read_file
from dicomnet.errors import DicomParseError

LE, IMPLICIT, BE, DEFLATED = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"
LONG = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"}


def el(g: int, e: int, vr: str, value: bytes, little: bool = True) -> bytes:
    o = "<" if little else ">"
    if vr in LONG:
        return struct.pack(o + "HH2s2xI", g, e, vr.encode(), len(value)) + value
    return struct.pack(o + "HH2sH", g, e, vr.encode(), len(value)) + value


def iel(g: int, e: int, value: bytes) -> bytes:
    return struct.pack("<HHI", g, e, len(value)) + value


def meta(ts: str) -> bytes:
    uid = ts.encode() + (b"\x00" if len(ts) % 2 else b"")
    body = el(0x0002, 0x0001, "OB", b"\x00\x01") + el(0x0002, 0x0010, "UI", uid)
    return el(0x0002, 0x0000, "UL", struct.pack("<I", len(body))) + body


def body(little: bool = True) -> bytes:
    o = "<" if little else ">"
    return (el(0x0008, 0x0060, "CS", b"MR", little) + el(0x0010, 0x0010, "PN", b"Doe^Jane", little)
            + el(0x0028, 0x0010, "US", struct.pack(o + "H", 2), little)
            + el(0x0028, 0x0011, "US", struct.pack(o + "H", 2), little)
            + el(0x0028, 0x0100, "US", struct.pack(o + "H", 16), little)
            + el(0x7FE0, 0x0010, "OW", struct.pack(o + "4H", 1, 2, 3, 4), little))


IMPLICIT_BODY = (iel(0x0008, 0x0060, b"MR") + iel(0x0010, 0x0010, b"Doe^Jane")
                 + iel(0x0028, 0x0010, b"\x02\x00") + iel(0x0028, 0x0011, b"\x02\x00")
                 + iel(0x0028, 0x0100, b"\x10\x00") + iel(0x7FE0, 0x0010, struct.pack("<4H", 1, 2, 3, 4)))


def part10(ts: str, data: bytes) -> bytes:
    return bytes(128) + b"DICM" + meta(ts) + data


def check(ds) -> None:
    assert ds.Modality == "MR" and str(ds.PatientName) == "Doe^Jane"
    assert ds.Rows == 2 and ds.BitsAllocated == 16
    assert ds.pixel_array.tolist() == [[[1, 2], [3, 4]]]


@pytest.mark.parametrize("ts,data", [(LE, body()), (BE, body(False)), (IMPLICIT, IMPLICIT_BODY)])
def test_each_uncompressed_syntax(ts, data):
    ds = read_file(part10(ts, data))
    check(ds)
    assert ds.transfer_syntax == ts
    assert ds.file_meta.TransferSyntaxUID == ts
    assert ds.preamble == bytes(128)
    # The meta group is parsed on its own: the data set starts where it ends.
    assert ds._index.start == 132 + len(meta(ts))


def test_deflated():
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    ds = read_file(part10(DEFLATED, packer.compress(body()) + packer.flush()))
    check(ds)
    assert ds.transfer_syntax == DEFLATED


def test_deflated_written_by_pydicom():
    pydicom = pytest.importorskip("pydicom")
    path = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files", "image_dfl.dcm")
    if not os.path.exists(path):
        pytest.skip("pydicom's image_dfl.dcm is not installed")
    ours, theirs = read_file(path), pydicom.dcmread(path)
    assert ours.transfer_syntax == DEFLATED
    assert (ours.pixel_array[0] == theirs.pixel_array).all()
    assert str(ours.PatientName) == str(theirs.PatientName)


def test_sources_path_bytes_bytearray_memoryview_fileobj(tmp_path):
    blob = part10(LE, body())
    path = tmp_path / "a.dcm"
    path.write_bytes(blob)
    from_path = read_file(path)
    check(from_path)
    assert isinstance(from_path._index.source, mmap.mmap)
    assert from_path.filename == str(path)
    check(read_file(str(path)))
    check(read_file(blob))
    check(read_file(bytearray(blob)))
    check(read_file(memoryview(blob)))
    with open(path, "rb") as f:
        ds = read_file(f)
    check(ds)
    assert ds.filename == str(path)
    check(read_file(io.BytesIO(blob)))


def test_without_preamble_and_without_meta():
    check(read_file(b"DICM" + meta(LE) + body()))           # no preamble
    check(read_file(meta(LE) + body()))                     # File Meta only
    for data, ts in ((body(), LE), (body(False), BE), (IMPLICIT_BODY, IMPLICIT)):
        ds = read_file(data)                                # a bare data set: syntax inferred
        check(ds)
        assert ds.file_meta is None and ds.preamble is None and ds.transfer_syntax == ts


def test_meta_without_transfer_syntax_is_inferred():
    group = el(0x0002, 0x0001, "OB", b"\x00\x01")
    ds = read_file(bytes(128) + b"DICM" + group + body(False))
    check(ds)
    assert ds.transfer_syntax == BE


def test_meta_that_names_the_wrong_vr_encoding():
    check(read_file(part10(LE, IMPLICIT_BODY)))    # says explicit, bytes are implicit
    check(read_file(part10(IMPLICIT, body())))     # says implicit, bytes are explicit


def test_stop_before_pixels():
    ds = read_file(part10(LE, body()), stop_before_pixels=True)
    assert 0x7FE00010 not in ds and ds.Rows == 2
    assert ds._index.stopped_early
    # Stop applies before a Pixel Data too broken to parse.
    broken = body()[:-8] + b"\xff" * 4
    assert read_file(part10(LE, broken), stop_before_pixels=True).Modality == "MR"
    with pytest.raises(DicomParseError):
        read_file(part10(LE, broken))


def test_read_dataset_at_an_offset_in_any_syntax():
    prefix = b"\xaa" * 6
    for ts, data in ((LE, body()), (BE, body(False)), (IMPLICIT, IMPLICIT_BODY)):
        ds = read_dataset(prefix + data + b"\xbb" * 4, len(prefix), len(prefix) + len(data), transfer_syntax=ts)
        check(ds)
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    check(read_dataset(packer.compress(body()) + packer.flush(), transfer_syntax=DEFLATED))


def test_max_depth_is_passed_through():
    seq = el(0x0010, 0x0010, "PN", b"AB")
    for _ in range(4):
        item = struct.pack("<HHI", 0xFFFE, 0xE000, len(seq)) + seq
        seq = el(0x0040, 0xA730, "SQ", item)
    assert read_file(part10(LE, seq), max_depth=4).ContentSequence
    with pytest.raises(DicomParseError):
        read_file(part10(LE, seq), max_depth=3)
    with pytest.raises(DicomParseError):
        read_dataset(seq, transfer_syntax=LE, max_depth=3)


def test_hopeless_input(tmp_path):
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    with pytest.raises(DicomParseError):
        read_file(empty)
    with pytest.raises(DicomParseError):
        read_file(bytes(128) + b"DICM")
    with pytest.raises(DicomParseError):
        read_file(b"\x08\x00")
    with pytest.raises(TypeError):
        read_file(12345)  # type: ignore[arg-type]


def test_mmap_outlives_the_closed_file(tmp_path):
    path = tmp_path / "a.dcm"
    path.write_bytes(part10(LE, body()))
    ds = read_file(path)
    os.unlink(path)  # the mapping keeps the data reachable
    check(ds)


def test_transfer_syntax_uid_with_a_binary_vr_is_ignored():
    # Found by fuzzing: (0002,0010) arriving as OW decoded to an array and `array or ""`
    # raised a bare ValueError. The syntax is inferred from the data set instead.
    group = el(0x0002, 0x0001, "OB", b"\x00\x01") + el(0x0002, 0x0010, "OW", b"\x01\x00\x02\x00")
    ds = read_file(bytes(128) + b"DICM" + group + body(False))
    check(ds)
    assert ds.transfer_syntax == BE
