"""Pixel Data as numpy views and frames (dicomnet/dicom/pixels.py).

Native pixel data must come out as a view of the source buffer (the mmap for a
file); encapsulated data as the compressed bytes of each frame, found through
the Extended Offset Table, the Basic Offset Table, or one fragment per frame.
All data is built here by hand.
"""
from __future__ import annotations

import mmap
import struct

import numpy
import pytest

from dicomnet.dicom.dataset import Dataset
from dicomnet.dicom.pixels import PixelDataError
from dicomnet.dicom.reader import read_file
from dicomnet.dicom.writer import encode_dataset, write_file
from dicomnet.errors import DicomParseError

LE, BE, IMPLICIT, JPEG = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2", "1.2.840.10008.1.2.4.50"
UNDEF = 0xFFFFFFFF


def image(array: numpy.ndarray, *, frames: int = 1, samples: int = 1, planar: int | None = None,
          bits: int | None = None) -> Dataset:
    """A Dataset describing ``array`` (already in the on-wire sample order)."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.3.4"
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = "RGB" if samples == 3 else "MONOCHROME2"
    if planar is not None:
        ds.PlanarConfiguration = planar
    if frames > 1:
        ds.NumberOfFrames = frames
    rows, cols = array.shape[-3:-1] if samples > 1 and planar != 1 else array.shape[-2:]
    ds.Rows, ds.Columns = int(rows), int(cols)
    bits = bits or array.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if array.dtype.kind == "i" else 0
    ds.add_new(0x7FE00010, "OW" if bits > 8 else "OB", array.astype(array.dtype.newbyteorder("<")).tobytes())
    return ds


def file_bytes(ds: Dataset, ts: str = LE) -> bytes:
    from dicomnet.dicom.writer import encode_file_meta

    return bytes(128) + b"DICM" + bytes(encode_file_meta(ds, ts)) + bytes(encode_dataset(ds, ts))


def test_native_from_bytes_is_a_view_of_the_source():
    pixels = numpy.arange(12, dtype=numpy.uint16).reshape(3, 4) * 1000
    blob = file_bytes(image(pixels))
    ds = read_file(blob)
    arr = ds.pixel_array
    assert arr.shape == (1, 3, 4) and arr.dtype == numpy.dtype("<u2")
    assert (arr[0] == pixels).all()
    assert numpy.shares_memory(arr, numpy.frombuffer(blob, numpy.uint8))
    assert not arr.flags.writeable  # a view of immutable bytes


def test_native_from_bytearray_sees_changes():
    pixels = numpy.arange(4, dtype=numpy.uint16).reshape(2, 2)
    blob = bytearray(file_bytes(image(pixels)))
    arr = read_file(blob).pixel_array
    blob[-2:] = b"\x34\x12"
    assert arr[0, 1, 1] == 0x1234


def test_native_from_a_path_views_the_mmap(tmp_path):
    pixels = (numpy.arange(64 * 64, dtype=numpy.uint16) * 7).reshape(64, 64)
    path = tmp_path / "ct.dcm"
    write_file(path, image(pixels), LE)
    ds = read_file(path)
    arr = ds.pixel_array
    base = arr
    while isinstance(base, numpy.ndarray):
        base = base.base
    if isinstance(base, memoryview):  # numpy.frombuffer keeps the exporter behind a memoryview
        base = base.obj
    assert isinstance(base, mmap.mmap) and base is ds._index.source
    assert (arr[0] == pixels).all()


def test_multiframe_and_frames_iterator():
    pixels = numpy.arange(3 * 4 * 5, dtype=numpy.int16).reshape(3, 4, 5) - 30
    blob = file_bytes(image(pixels, frames=3))
    ds = read_file(blob)
    arr = ds.pixel_array
    assert arr.shape == (3, 4, 5) and arr.dtype == numpy.dtype("<i2")
    assert (arr == pixels).all() and arr.min() == -30
    frames = list(ds.frames())
    assert len(frames) == 3
    for got, want in zip(frames, pixels):
        assert (got == want).all()
        assert numpy.shares_memory(got, numpy.frombuffer(blob, numpy.uint8))


@pytest.mark.parametrize("dtype", [numpy.int8, numpy.int16, numpy.int32])
def test_signed(dtype):
    pixels = numpy.array([[-1, 2], [numpy.iinfo(dtype).min, numpy.iinfo(dtype).max]], dtype)
    arr = read_file(file_bytes(image(pixels))).pixel_array
    assert arr.dtype.kind == "i" and arr.dtype.itemsize == numpy.dtype(dtype).itemsize
    assert (arr[0] == pixels).all()


def test_rgb_planar_configuration_0_and_1():
    rgb = numpy.arange(2 * 3 * 4 * 3, dtype=numpy.uint8).reshape(2, 3, 4, 3)  # frames, rows, cols, samples
    interleaved = image(rgb, frames=2, samples=3, planar=0)
    blob0 = file_bytes(interleaved)
    arr0 = read_file(blob0).pixel_array
    assert arr0.shape == (2, 3, 4, 3) and (arr0 == rgb).all()
    assert numpy.shares_memory(arr0, numpy.frombuffer(blob0, numpy.uint8))
    planes = numpy.ascontiguousarray(rgb.transpose(0, 3, 1, 2))  # frames, samples, rows, cols
    by_plane = image(planes, frames=2, samples=3, planar=1)
    blob1 = file_bytes(by_plane)
    arr1 = read_file(blob1).pixel_array
    assert arr1.shape == (2, 3, 4, 3) and (arr1 == rgb).all()
    assert numpy.shares_memory(arr1, numpy.frombuffer(blob1, numpy.uint8))  # a transposed view, no copy


@pytest.mark.parametrize("ts", [BE, IMPLICIT])
def test_big_endian_and_implicit(ts):
    pixels = numpy.array([[0x0102, 0xA0B0], [1, 65535]], numpy.uint16)
    blob = file_bytes(image(pixels), ts)
    arr = read_file(blob).pixel_array
    assert (arr[0] == pixels).all()
    assert numpy.shares_memory(arr, numpy.frombuffer(blob, numpy.uint8))
    if ts == BE:
        assert arr.dtype == numpy.dtype(">u2")
        assert b"\x01\x02\xa0\xb0\x00\x01\xff\xff" in blob


def test_one_bit_pixels_unpacked():
    ds = Dataset()
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 2, 5, 1
    ds.BitsAllocated = 1
    ds.add_new(0x7FE00010, "OB", bytes([0b10100101, 0b00000011]))
    arr = read_file(bytes(encode_dataset(ds, LE))).pixel_array
    assert arr.tolist() == [[[1, 0, 1, 0, 0], [1, 0, 1, 1, 1]]]


def test_too_little_pixel_data_and_missing_geometry():
    ds = image(numpy.zeros((4, 4), numpy.uint16))
    ds.Rows = 5
    with pytest.raises(PixelDataError):
        read_file(file_bytes(ds)).pixel_array
    del ds.Rows
    with pytest.raises(PixelDataError):
        read_file(file_bytes(ds)).pixel_array
    with pytest.raises(PixelDataError):
        read_file(file_bytes(_no_pixels())).pixel_array


def _no_pixels() -> Dataset:
    ds = Dataset()
    ds.PatientID = "X"
    return ds


def test_pixel_array_set_from_python():
    pixels = numpy.arange(6, dtype=numpy.uint16).reshape(2, 3)
    ds = image(pixels)
    assert (ds.pixel_array[0] == pixels).all()


# ------------------------------------------------------------- encapsulated


def fragment(data: bytes) -> bytes:
    return struct.pack("<HHI", 0xFFFE, 0xE000, len(data)) + data


def encapsulated(frames: int, fragments: list[bytes], bot: bytes = b"", *, eot: list[int] | None = None,
                 eot_element: tuple[str, object] | None = None) -> bytes:
    """A JPEG Baseline Part 10 file with the given fragments (after the BOT item);
    ``eot_element``: the Extended Offset Table as (VR, value), as given."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.3.5"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.BitsAllocated = 8, 8, 1, 8
    ds.NumberOfFrames = frames
    if eot is not None:
        ds.add_new(0x7FE00001, "OV", numpy.array(eot, numpy.uint64))
        ds.add_new(0x7FE00002, "OV", numpy.array([0] * len(eot), numpy.uint64))
    if eot_element is not None:
        ds.add_new(0x7FE00001, *eot_element)
    head = bytes(encode_dataset(ds, LE))
    pixel = struct.pack("<HH2s2xI", 0x7FE0, 0x0010, b"OB", UNDEF) + fragment(bot)
    pixel += b"".join(fragment(f) for f in fragments) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    from dicomnet.dicom.writer import encode_file_meta

    return bytes(128) + b"DICM" + bytes(encode_file_meta(ds, JPEG)) + head + pixel


FRAGS = [b"\xff\xd8AAAA", b"\xff\xd8BBBBBB", b"CCCC", b"\xff\xd8DD"]


def test_frames_one_fragment_per_frame_empty_bot():
    blob = encapsulated(4, FRAGS)
    ds = read_file(blob)
    frames = list(ds.frames())
    assert [bytes(f) for f in frames] == FRAGS
    assert all(isinstance(f, memoryview) for f in frames)  # views of the source
    assert frames[1].obj is not None and bytes(frames[1]) in blob
    with pytest.raises(PixelDataError):
        ds.pixel_array


def test_frames_with_basic_offset_table():
    # Frame 1 = fragments 0+1, frame 2 = fragments 2+3; offsets count from the first fragment item.
    bot = struct.pack("<2I", 0, (8 + len(FRAGS[0])) + (8 + len(FRAGS[1])))
    frames = list(read_file(encapsulated(2, FRAGS, bot)).frames())
    assert [bytes(f) for f in frames] == [FRAGS[0] + FRAGS[1], FRAGS[2] + FRAGS[3]]


def test_frames_with_extended_offset_table():
    eot = [0, 8 + len(FRAGS[0]), (8 + len(FRAGS[0])) + (8 + len(FRAGS[1])) + (8 + len(FRAGS[2]))]
    frames = list(read_file(encapsulated(3, FRAGS, eot=eot)).frames())
    assert [bytes(f) for f in frames] == [FRAGS[0], FRAGS[1] + FRAGS[2], FRAGS[3]]


def test_an_extended_offset_table_under_another_vr():
    # Found by fuzzing: an EOT read as OF (float32 values) made iter_frames
    # raise numpy's ValueError. Its bytes are 64-bit offsets when their length
    # allows; otherwise the table is refused with DicomParseError; empty, it
    # is as if absent.
    eot = [0, 8 + len(FRAGS[0]), (8 + len(FRAGS[0])) + (8 + len(FRAGS[1])) + (8 + len(FRAGS[2]))]
    as_floats = numpy.array(eot, "<u8").view("<f4")
    for element in (("OF", as_floats), ("OB", numpy.array(eot, "<u8").tobytes())):
        frames = list(read_file(encapsulated(3, FRAGS, eot_element=element)).frames())
        assert [bytes(f) for f in frames] == [FRAGS[0], FRAGS[1] + FRAGS[2], FRAGS[3]], element[0]
    for element in (("OF", numpy.zeros(3, "<f4")), ("OB", bytes(12)), ("LO", "12")):
        with pytest.raises(DicomParseError, match="Extended Offset Table"):
            list(read_file(encapsulated(3, FRAGS, eot_element=element)).frames())
    frames = list(read_file(encapsulated(4, FRAGS, eot_element=("OV", b""))).frames())
    assert [bytes(f) for f in frames] == FRAGS


def test_single_frame_over_several_fragments():
    frames = list(read_file(encapsulated(1, FRAGS)).frames())
    assert [bytes(f) for f in frames] == [b"".join(FRAGS)]


def test_bad_offset_tables():
    with pytest.raises(DicomParseError):  # an offset pointing inside a fragment
        list(read_file(encapsulated(2, FRAGS, struct.pack("<2I", 0, 5))).frames())
    with pytest.raises(DicomParseError):  # BOT length not a multiple of 4
        list(read_file(encapsulated(2, FRAGS, b"\x00" * 6)).frames())
    with pytest.raises(DicomParseError):  # decreasing offsets
        list(read_file(encapsulated(2, FRAGS, struct.pack("<2I", 14, 0))).frames())
    with pytest.raises(PixelDataError):   # 4 fragments, 3 frames, no table: ambiguous
        list(read_file(encapsulated(3, FRAGS)).frames())


def test_malformed_geometry_is_a_pixel_data_error():
    # Found by fuzzing: Rows holding several values (a numpy array) raised a bare ValueError.
    ds = image(numpy.zeros((2, 2), numpy.uint16))
    ds.add_new(0x00280010, "US", [2, 2])
    with pytest.raises(PixelDataError):
        read_file(file_bytes(ds)).pixel_array
    ds = image(numpy.zeros((2, 2), numpy.uint16))
    ds.NumberOfFrames = "-5"
    with pytest.raises(PixelDataError):
        read_file(file_bytes(ds)).pixel_array


@pytest.mark.parametrize("ts", [LE, BE, IMPLICIT])
@pytest.mark.parametrize(("dtype", "frames", "walk"), [
    ("u1", 1, True), ("u2", 3, True), ("i2", 1, True), ("i4", 2, True), ("u2", 1, False), ("i2", 2, False),
])
def test_the_plain_path_gives_what_the_general_path_gives(monkeypatch, ts, dtype, frames, walk):
    from dicomnet.dicom import pixels

    rng = numpy.random.default_rng(5)
    info = numpy.iinfo(dtype)
    pixels_in = rng.integers(info.min, info.max, size=(frames, 4, 6), endpoint=True).astype(dtype)
    blob = file_bytes(image(pixels_in if frames > 1 else pixels_in[0], frames=frames), ts)
    fast, slow = read_file(blob), read_file(blob)
    if walk:   # values decoded by a walk first (the plain path needs them decoded)
        list(fast)
        list(slow)
    # (a walk decodes in bulk only what has its VR on the wire: not Implicit VR data)
    assert (pixels._plain_pixel_array(fast) is not None) == (walk and ts != IMPLICIT)
    got = fast.pixel_array
    monkeypatch.setattr(pixels, "_plain_pixel_array", lambda ds: None)
    expected = slow.pixel_array
    assert got.dtype == expected.dtype and got.shape == expected.shape == (frames, 4, 6)
    assert numpy.array_equal(got, expected)
    if ts != BE or pixels_in.itemsize < 4:   # (the helper swaps OW words, not 32-bit values)
        assert numpy.array_equal(got, pixels_in)
