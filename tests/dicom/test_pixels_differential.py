"""Pixel Data access (dicomnet/dicom/pixels.py) cross-checked against pydicom 3 on generated data.

Native images are generated with hypothesis: Rows/Columns 1..64 (odd sizes
included), Number of Frames absent, 1 or several, Samples per Pixel 1 or 3
with Planar Configuration 0/1, MONOCHROME1/2, PALETTE COLOR, RGB, YBR_FULL,
Bits Allocated 1/8/16/32, signed and unsigned, Bits Stored <= Bits Allocated,
Float (7FE0,0008) and Double Float (7FE0,0009) Pixel Data of any bit pattern
(PS3.5 8: NaN and infinities included), in Implicit VR LE, Explicit VR LE,
Explicit VR BE (8-bit data as OB and as OW) and Deflated, with odd-length 1-
and 8-bit data padded by a (deliberately non-zero) byte that "shall not be
considered significant" (PS3.5 8.1.1). Each file is built with pydicom from
pixel bytes the test encodes itself (never through a pixel_array setter) and
read back by both libraries. dicomnet must give pydicom's values and the
values the test encoded.

The oracle and the allowed differences:

* pydicom is asked through ``pydicom.pixels.pixel_array(ds, raw=True)`` (and
  ``index=i`` for one frame). ``raw=True`` because ``ds.pixel_array`` converts
  YBR_FULL to RGB (PS3.3 C.7.6.3.1.2) while dicomnet never converts colour;
  neither applies a palette or inverts MONOCHROME1, so those compare as stored.
* Shape: dicomnet always has a frames axis, (frames, rows, cols[, samples]),
  as docs/api.md says; pydicom drops it for one frame. Both give Planar
  Configuration 1 data as (..., rows, cols, samples). The dtype must be equal,
  byte order included (both keep big endian data big endian).
* Zero copy: where pixels.py promises a view (every native case but 1-bit data
  and 8-bit OW data in Explicit VR Big Endian), the array and every frame of
  ``ds.frames()`` must share memory with the bytes read, and so must
  ``ds.pixel_values`` when every cell is clean.

Bits Stored < Bits Allocated (PS3.5 8.1.1, PS3.3 C.7.6.3.1): a Pixel Cell of
Bits Allocated bits holds one Pixel Sample Value of Bits Stored bits whose
most significant bit is High Bit; "the sign bit shall be the High Bit" of a
two's complement sample; bits outside the sample are not part of it (they once
carried overlays, and their values cannot be assumed). So the sample is the
Bits Stored field, sign-extended when Pixel Representation is 1 — which is
what pydicom returns for High Bit = Bits Stored - 1 (the only value the
current Image Pixel Description Macro allows). dicomnet's ``pixel_array`` is the
zero-copy view of the cells as stored (finding dirty cells would read every
pixel of, say, a 256 MB multi-frame); ``pixel_values`` gives the samples. Files
whose unused bits are clean (zero, or the sign extension) must agree in both;
files with other bits there are the
`test_unused_high_bits_are_not_part_of_the_sample` case.

Oracle faults worked around:

* pydicom ignores High Bit: it always takes the low Bits Stored bits
  (``_correct_unused_bits`` shifts by Bits Allocated - Bits Stored), which is
  wrong for legacy data with High Bit > Bits Stored - 1 (PS3.5 8.1.1: with
  16 allocated, 12 stored and High Bit 15 "the 4 least significant bits of
  each word" do not contain Pixel Data). For those files the expected samples
  are computed from PS3.5 8.1.1 instead of asked from pydicom
  (`test_high_bit_above_bits_stored_minus_one`).
* pydicom 3.0's ``pixel_array(..., index=n)`` misreads 1-bit frames that are
  not byte-aligned: PS3.5 8.1.1 concatenates frames without padding, so frame n
  starts at bit n * Rows * Columns, but pydicom reads ceil(Rows * Columns / 8)
  bytes from byte floor(n * Rows * Columns / 8) — one byte short whenever the
  frame straddles one byte more — and fails to reshape (e.g. 1x3 pixels, 3
  frames: frame 2 is bits 6..8). For 1-bit data each frame of ``ds.frames()``
  is compared with the frame of pydicom's whole array instead.
* pydicom finds frame boundaries in encapsulated data without an offset table
  by looking for FF D9 anywhere in the last 10 bytes of each fragment, which
  can end a frame early when a fragment merely ends near those bytes. It is
  the oracle for that case only with frames built so that it is exact (no 0xFF
  inside a frame, FF D9 whole in its last fragment), and checked to be.

Encapsulated Pixel Data (PS3.5 A.4): frames of random bytes are encapsulated
with pydicom (``itemize_frame`` for a random number of fragments per frame,
``encapsulate``, ``encapsulate_extended``) with a Basic Offset Table, an
Extended Offset Table (one fragment per frame, PS3.3 C.7.6.3.1.8), or an empty
Basic Offset Table (A.4: "the Basic Offset Table Item Value ... is not required
to be present"). dicomnet's ``ds.frames()`` must yield the frames of
``pydicom.encaps.generate_frames`` and ``get_frame``. With an empty table, one
frame or one fragment per frame, the encapsulation itself fixes the frames.
With an empty table, several frames and more fragments than frames it does
not: only the codestream does (a JPEG/JPEG-LS frame ends with EOI, a JPEG 2000
one with EOC, both FF D9). A.4 is explicit that a reader must cope: "a frame
may ... span multiple fragments ... an implementation that fails to support
such fragmentation does not conform to the Standard".

dicomnet faults this file found, all fixed: no way to get the samples when
cells hold bits outside Bits Stored (``pixel_values`` now), 1-bit Pixel Data
set from Python not unpacked, and JPEG-family frames spanning fragments without
an offset table refused instead of split at their EOI/EOC.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy
import pytest
from hypothesis import HealthCheck, Phase, assume, example, given, settings
from hypothesis import strategies as st

pydicom = pytest.importorskip("pydicom")

from pydicom import encaps  # noqa: E402
from pydicom.dataset import Dataset as PyDataset, FileMetaDataset  # noqa: E402
from pydicom.pixels import pixel_array as pydicom_pixel_array  # noqa: E402

import dicomnet  # noqa: E402
from dicomnet.dicom.pixels import PixelDataError  # noqa: E402

IMPLICIT, EXPLICIT, BIG = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
JPEG_BASELINE, J2K_LOSSLESS = "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.90"
SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7"
TAGS = {"PixelData": 0x7FE00010, "FloatPixelData": 0x7FE00008, "DoubleFloatPixelData": 0x7FE00009}


def _settings(examples: int, *, shrink: bool = True):
    phases = (Phase.explicit, Phase.generate) + ((Phase.shrink,) if shrink else ())
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None, phases=phases,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ------------------------------------------------------------------ native images


@dataclass
class Image:
    ts: str
    keyword: str                  # PixelData, FloatPixelData or DoubleFloatPixelData
    rows: int
    cols: int
    number_of_frames: int | None  # the attribute; None: absent
    samples: int
    planar: int
    photometric: str
    bits_allocated: int
    bits_stored: int | None
    high_bit: int | None
    signed: int | None
    vr: str
    expected: numpy.ndarray       # the samples, shaped (frames, rows, cols[, samples])
    wire: bytes                   # the Pixel Data value as it goes in the file (even length)

    @property
    def frames(self) -> int:
        return self.number_of_frames or 1

    @property
    def big_endian(self) -> bool:
        return self.ts == BIG

    @property
    def view_promised(self) -> bool:
        """pixels.py's module docstring promises a view of the source."""
        if self.bits_allocated == 1 or (self.big_endian and self.bits_allocated == 8 and self.vr == "OW"):
            return False
        if self.ts == DEFLATED:
            return False        # a view of the inflated buffer, which is not the bytes read
        return True


def _layout(values: numpy.ndarray, samples: int, planar: int) -> numpy.ndarray:
    """(frames, rows, cols, samples) samples in the order they are encoded (PS3.3 C.7.6.3.1.3)."""
    if samples == 1:
        return values[..., 0]
    return values.transpose(0, 3, 1, 2) if planar == 1 else values


def _pad(data: bytes, rng: numpy.random.Generator) -> bytes:
    """Pad to even length with a byte that "shall not be considered significant" (PS3.5 8.1.1)."""
    return data + bytes([int(rng.integers(1, 256))]) if len(data) % 2 else data


def _swap_words(data: bytes) -> bytes:
    """OW in big endian: each 16-bit word has its bytes swapped (PS3.5 7.3)."""
    return numpy.frombuffer(data, "<u2").astype(">u2").tobytes()


def _integer_cells(values: numpy.ndarray, bits_allocated: int, bits_stored: int, high_bit: int,
                   rng: numpy.random.Generator, junk: bool) -> numpy.ndarray:
    """Pixel Cells (as uint64) holding ``values`` in bits [high_bit - bits_stored + 1, high_bit]
    (PS3.5 8.1.1). ``junk``: every other bit random. Else (High Bit = Bits Stored - 1) the bits
    above High Bit are zero, or the sign extension of a negative sample: what a careful writer
    stores."""
    sample = values.astype(numpy.int64).astype(numpy.uint64)      # two's complement, 64 bits
    if not junk:
        return sample & numpy.uint64((1 << bits_allocated) - 1)
    shift = high_bit - bits_stored + 1
    cells = (sample & numpy.uint64((1 << bits_stored) - 1)) << numpy.uint64(shift)
    below = rng.integers(0, 1 << shift, size=values.shape, dtype=numpy.uint64)
    above = rng.integers(0, 1 << (bits_allocated - high_bit - 1), size=values.shape, dtype=numpy.uint64)
    return cells | below | (above << numpy.uint64(high_bit + 1))


@st.composite
def native_images(draw, *, transfer_syntaxes=(IMPLICIT, EXPLICIT, BIG), bits=(1, 8, 16, 32, "float", "double"),
                  samples=(1, 3), stored="clean"):
    """``bits``: Bits Allocated of Pixel Data, or "float"/"double" for (7FE0,0008)/(7FE0,0009).
    ``stored``: "clean" (High Bit = Bits Stored - 1, unused bits zero or the sign extension),
    "junk" (High Bit = Bits Stored - 1, unused bits random, at least one cell dirty) or "high"
    (High Bit > Bits Stored - 1, the other bits random)."""
    ts = draw(st.sampled_from(transfer_syntaxes))
    bits_allocated = draw(st.sampled_from(bits))
    kind = bits_allocated if isinstance(bits_allocated, str) else "int"
    rows, cols = draw(st.integers(1, 64)), draw(st.integers(1, 64))
    number_of_frames = draw(st.sampled_from([None, 1, 2, 3, 5]))
    frames = number_of_frames or 1
    rng = numpy.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    big = ts == BIG
    order = ">" if big else "<"
    if kind != "int":
        bits_allocated = 32 if kind == "float" else 64
        keyword = "FloatPixelData" if kind == "float" else "DoubleFloatPixelData"
        size = frames * rows * cols
        values = numpy.frombuffer(rng.bytes(size * bits_allocated // 8), f"<f{bits_allocated // 8}")
        values = values.reshape(frames, rows, cols).copy()   # every bit pattern: NaNs, infinities, subnormals
        specials = [numpy.nan, numpy.inf, -numpy.inf, -0.0, 5e-324 if kind == "double" else 1e-45]
        values.flat[: min(values.size, len(specials))] = specials[: values.size]
        wire = values.astype(order + values.dtype.str[1:]).tobytes()
        return Image(ts, keyword, rows, cols, number_of_frames, 1, 0, "MONOCHROME2", bits_allocated,
                     None, None, None, "OF" if kind == "float" else "OD", values, wire)

    if bits_allocated == 1:
        samples, planar, signed, bits_stored, high_bit = 1, 0, 0, 1, 0
    else:
        samples = draw(st.sampled_from(samples))
        planar = draw(st.sampled_from([0, 1])) if samples == 3 else 0
        signed = draw(st.sampled_from([0, 1]))
        top = bits_allocated if stored == "clean" else bits_allocated - 1
        bits_stored = draw(st.integers(1, top))
        if stored == "high":
            high_bit = draw(st.integers(bits_stored, bits_allocated - 1))
        else:
            high_bit = bits_stored - 1
    if samples == 3:
        photometric = draw(st.sampled_from(["RGB", "YBR_FULL"]))
    else:
        choices = ["MONOCHROME1", "MONOCHROME2"]
        if signed == 0 and bits_allocated in (8, 16):
            choices.append("PALETTE COLOR")
        photometric = draw(st.sampled_from(choices))
    shape = (frames, rows, cols, samples)
    if signed:
        lo, hi = -(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1
    else:
        lo, hi = 0, (1 << bits_stored) - 1
    values = rng.integers(lo, hi, size=shape, dtype=numpy.int64, endpoint=True)
    values.flat[0] = lo if lo else hi                  # the extremes, and never only zeros
    if values.size > 1:
        values.flat[-1] = hi
    encoded = _layout(values, samples, planar).reshape(-1)
    if bits_allocated == 1:
        packed = bytearray(numpy.packbits(encoded.astype(numpy.uint8), bitorder="little").tobytes())
        spare = (-encoded.size) % 8                   # bits after the last pixel: not significant
        if spare:
            packed[-1] |= int(rng.integers(0, 256)) & ~((1 << (8 - spare)) - 1) & 0xFF
        wire = _pad(bytes(packed), rng)
        vr = "OB" if big else draw(st.sampled_from(["OB", "OW"]))
    else:
        cells = _integer_cells(encoded, bits_allocated, bits_stored, high_bit, rng, stored != "clean")
        if stored == "junk":
            clean = _integer_cells(encoded, bits_allocated, bits_stored, high_bit, rng, False)
            if numpy.array_equal(cells, clean):
                cells[0] ^= numpy.uint64(1 << bits_stored)   # at least one cell's unused bits not clean
        data = cells.astype(f"{order}u{bits_allocated // 8}").tobytes()
        if bits_allocated == 8:
            vr = draw(st.sampled_from(["OB", "OW"]))
            data = _pad(data, rng)
            if big and vr == "OW":
                data = _swap_words(data)
        else:
            vr = "OW"
        wire = data
    expected = values if samples == 3 else values[..., 0]
    expected = expected.astype(f"{'i' if signed else 'u'}{max(bits_allocated, 8) // 8}")
    return Image(ts, "PixelData", rows, cols, number_of_frames, samples, planar, photometric, bits_allocated,
                 bits_stored, high_bit, signed, vr, expected, wire)


def _cells_image(bits_allocated: int, bits_stored: int, high_bit: int, signed: int, samples: list[int],
                 cells: list[int]) -> Image:
    """A 2x2 MONOCHROME2 image in Explicit VR LE whose Pixel Cells are given by hand."""
    expected = numpy.array(samples, f"{'i' if signed else 'u'}{bits_allocated // 8}").reshape(1, 2, 2)
    wire = numpy.array(cells, f"<u{bits_allocated // 8}").tobytes()
    return Image(EXPLICIT, "PixelData", 2, 2, None, 1, 0, "MONOCHROME2", bits_allocated, bits_stored, high_bit,
                 signed, "OW", expected, wire)


def _pydicom_dataset(image: Image) -> PyDataset:
    ds = PyDataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = image.ts
    ds.file_meta.MediaStorageSOPClassUID = SOP_CLASS
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    return _describe(ds, image)


def _file(image: Image) -> bytes:
    buf = io.BytesIO()
    _pydicom_dataset(image).save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _dicomnet_dataset(image: Image) -> dicomnet.Dataset:
    """The image built in Python, element by element: Pixel Data bytes in the native layout."""
    return _describe(dicomnet.Dataset(), image)


def _describe(ds: Any, image: Image) -> Any:
    """The image's attributes and Pixel Data on a pydicom or a dicomnet Dataset."""
    ds.SOPClassUID = SOP_CLASS
    ds.SOPInstanceUID = "1.2.3.4"
    ds.SamplesPerPixel = image.samples
    ds.PhotometricInterpretation = image.photometric
    if image.samples > 1:
        ds.PlanarConfiguration = image.planar
    if image.number_of_frames is not None:
        ds.NumberOfFrames = image.number_of_frames
    ds.Rows, ds.Columns = image.rows, image.cols
    ds.BitsAllocated = image.bits_allocated
    if image.keyword == "PixelData":
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = image.bits_stored, image.high_bit, image.signed
    ds.add_new(TAGS[image.keyword], image.vr, image.wire)
    return ds


def _shape(image: Image) -> tuple[int, ...]:
    return (image.frames, image.rows, image.cols) + ((image.samples,) if image.samples > 1 else ())


def _bits(arr: numpy.ndarray) -> numpy.ndarray:
    """Values comparable bit for bit (floats by their bit patterns: NaN payloads, -0.0)."""
    native = numpy.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("="))
    return native.view(f"u{arr.dtype.itemsize}") if arr.dtype.kind == "f" else native


def _same(ours: numpy.ndarray, theirs: numpy.ndarray) -> bool:
    return ours.shape == theirs.shape and numpy.array_equal(_bits(ours), _bits(theirs))


def _views(arr: numpy.ndarray, blob: bytes) -> bool:
    return numpy.shares_memory(arr, numpy.frombuffer(blob, numpy.uint8))


def _check_against_pydicom(image: Image, blob: bytes, ours: dicomnet.Dataset) -> None:
    theirs = pydicom.dcmread(io.BytesIO(blob))
    want = pydicom_pixel_array(theirs, raw=True)
    arr = ours.pixel_array
    assert arr.shape == _shape(image)
    assert want.shape == (_shape(image)[1:] if image.frames == 1 else _shape(image))
    assert arr.dtype == want.dtype, (arr.dtype, want.dtype)
    assert _same(arr, want.reshape(arr.shape)), "dicomnet's pixel_array differs from pydicom's"
    assert _same(arr, image.expected.reshape(arr.shape)), "dicomnet's pixel_array differs from the encoded samples"
    if image.view_promised:
        assert _views(arr, blob), "pixel_array is not a view of the bytes read"
    values = ours.pixel_values                  # clean cells: the samples are the cells
    assert values.dtype == arr.dtype and _same(values, want.reshape(arr.shape))
    if image.view_promised:
        assert _views(values, blob), "pixel_values of clean cells is not a view of the bytes read"
    frames = list(ours.frames())
    assert len(frames) == image.frames
    for n, frame in enumerate(frames):
        if image.bits_allocated == 1:   # pydicom's index= misreads 1-bit frames (module docstring)
            want_frame = want.reshape(arr.shape)[n]
        else:
            want_frame = pydicom_pixel_array(theirs, index=n, raw=True)
        assert _same(frame, want_frame), f"frame {n} differs from pydicom's"
        if image.view_promised:
            assert _views(frame, blob), f"frame {n} is not a view of the bytes read"


NATIVE_CASES = [(bits, samples) for bits in (1, 8, 16, 32) for samples in ((1,) if bits == 1 else (1, 3))]
NATIVE_CASES += [("float", 1), ("double", 1)]


@pytest.mark.parametrize("ts", [IMPLICIT, EXPLICIT, BIG], ids=["implicit", "explicit", "big"])
@pytest.mark.parametrize(("bits", "samples"), NATIVE_CASES, ids=[f"{b}-{s}" for b, s in NATIVE_CASES])
def test_native_pixels_match_pydicom(ts: str, bits: int | str, samples: int) -> None:
    """Generated native images: values, shape, dtype, frames and views (walk: after a full decode
    of the data set, which takes pixels.py's plain path where it applies)."""

    @_settings(40)
    @given(image=native_images(transfer_syntaxes=(ts,), bits=(bits,), samples=(samples,)), walk=st.booleans())
    def check(image: Image, walk: bool) -> None:
        blob = _file(image)
        ours = dicomnet.read_file(blob)
        if walk:
            list(ours)
        _check_against_pydicom(image, blob, ours)

    check()


@_settings(40)
@given(image=native_images(transfer_syntaxes=(DEFLATED,)), walk=st.booleans())
def test_deflated_pixels_match_pydicom(image: Image, walk: bool) -> None:
    """Deflated Explicit VR Little Endian (PS3.5 A.5): the same pixels once inflated."""
    blob = _file(image)
    ours = dicomnet.read_file(blob)
    if walk:
        list(ours)
    _check_against_pydicom(image, blob, ours)


@_settings(80)
@given(image=native_images(transfer_syntaxes=(EXPLICIT,), bits=(8, 16, 32, "float", "double")))
def test_pixels_set_in_python_match_pydicom(image: Image) -> None:
    """Pixel Data assigned as bytes to a Dataset built in Python (not read from a buffer) decodes
    as pydicom decodes the same elements of an in-memory pydicom Dataset."""
    ours = _dicomnet_dataset(image)
    want = pydicom_pixel_array(_pydicom_dataset(image), raw=True)
    arr = ours.pixel_array
    assert arr.shape == _shape(image)
    assert _same(arr, want.reshape(arr.shape))
    assert _same(arr, image.expected.reshape(arr.shape))
    frames = list(ours.frames())
    assert len(frames) == image.frames
    assert all(_same(frame, want.reshape(arr.shape)[n]) for n, frame in enumerate(frames))


@_settings(5, shrink=False)
@given(image=native_images(transfer_syntaxes=(EXPLICIT,), bits=(1,)))
def test_one_bit_pixels_set_in_python_match_pydicom(image: Image) -> None:
    ours = _dicomnet_dataset(image)
    want = pydicom_pixel_array(_pydicom_dataset(image), raw=True)
    arr = ours.pixel_array
    assert arr.shape == _shape(image)
    assert _same(arr, want.reshape(arr.shape))


@_settings(10, shrink=False)
@given(image=native_images(bits=(8, 16, 32), stored="junk"), walk=st.booleans())
@example(image=_cells_image(16, 12, 11, 1, [-1, -2048, 2047, 0], [0x0FFF, 0x0800, 0x07FF, 0x0000]), walk=False)
@example(image=_cells_image(16, 12, 11, 0, [4095, 1, 0, 2048], [0xFFFF, 0x1001, 0xF000, 0x0800]), walk=True)
def test_unused_high_bits_are_not_part_of_the_sample(image: Image, walk: bool) -> None:
    """Bits Stored < Bits Allocated, High Bit = Bits Stored - 1, the bits above High Bit not clean
    (random, or zero under a negative two's complement sample). ``pixel_values`` gives the
    samples; ``pixel_array`` stays the view of the cells as stored."""
    blob = _file(image)
    ours = dicomnet.read_file(blob)
    if walk:
        list(ours)
    want = pydicom_pixel_array(pydicom.dcmread(io.BytesIO(blob)), raw=True)
    values = ours.pixel_values
    assert values.shape == _shape(image)
    assert values.dtype == want.dtype, (values.dtype, want.dtype)
    assert _same(values, want.reshape(values.shape)), "dicomnet's pixel_values differs from pydicom's pixel_array"
    assert _same(values, image.expected.reshape(values.shape)), "pixel_values differs from the encoded samples"
    if image.view_promised:
        assert _views(ours.pixel_array, blob), "pixel_array (the cells as stored) is not a view of the bytes read"


@_settings(10, shrink=False)
@given(image=native_images(bits=(8, 16, 32), stored="high"))
@example(image=_cells_image(16, 12, 15, 0, [1, 4095, 2048, 0], [0x0010, 0xFFF0, 0x8000, 0x0000]))
@example(image=_cells_image(16, 12, 15, 1, [-1, -2048, 2047, 1], [0xFFF0, 0x8000, 0x7FF0, 0x0010]))
def test_high_bit_above_bits_stored_minus_one(image: Image) -> None:
    """Legacy layout (PS3.5 8.1.1's own example: 16 allocated, 12 stored, High Bit 15). The current
    PS3.3 C.7.6.3.1 requires High Bit = Bits Stored - 1, so refusing the file with PixelDataError
    is acceptable; returning anything but the PS3.5 8.1.1 samples is not. pydicom ignores High
    Bit, so the expected samples are the test's own (module docstring)."""
    ours = dicomnet.read_file(_file(image))
    arr = ours.pixel_values
    assert arr.dtype == ours.pixel_array.dtype
    assert _same(arr, image.expected.reshape(arr.shape)), "samples not taken from bits [HB - BS + 1, HB]"


# ------------------------------------------------------------------ encapsulated


@dataclass
class Encapsulated:
    frames: list[bytes]
    fragments: list[int]          # fragments per frame
    table: str                    # "bot", "eot" or "none"
    number_of_frames: int | None


def _encapsulated_file(enc: Encapsulated, ts: str = J2K_LOSSLESS) -> tuple[bytes, bytes, tuple | None]:
    """(the Part 10 file, the Pixel Data value, the Extended Offset Table (offsets, lengths) or None)."""
    extended = None
    if enc.table == "eot":
        value, offsets, lengths = encaps.encapsulate_extended(enc.frames)
        extended = (offsets, lengths)
    elif enc.table == "bot" and len(set(enc.fragments)) == 1:
        value = encaps.encapsulate(enc.frames, fragments_per_frame=enc.fragments[0], has_bot=True)
    else:
        items = [b"".join(encaps.itemize_frame(f, n)) for f, n in zip(enc.frames, enc.fragments)]
        starts = numpy.cumsum([0] + [len(i) for i in items[:-1]])
        bot = numpy.asarray(starts, "<u4").tobytes() if enc.table == "bot" else b""
        value = encaps.itemize_fragment(bot) + b"".join(items)
    ds = PyDataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    ds.file_meta.MediaStorageSOPClassUID = SOP_CLASS
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.5"
    ds.SOPClassUID = SOP_CLASS
    ds.SOPInstanceUID = "1.2.3.5"
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if enc.number_of_frames is not None:
        ds.NumberOfFrames = enc.number_of_frames
    if extended is not None:
        ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = extended
    ds.PixelData = value
    ds["PixelData"].VR = "OB"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue(), value, extended


def _frame_bytes(draw, rng: numpy.random.Generator, fragments: int, jpeg: bool) -> bytes:
    length = draw(st.integers(2 * fragments + (4 if jpeg else 0), 96))
    if not jpeg:
        return rng.integers(0, 256, size=length, dtype=numpy.uint8).tobytes()
    body = rng.integers(0, 255, size=length - 4, dtype=numpy.uint8).tobytes()   # no 0xFF inside
    return b"\xff\xd8" + body + b"\xff\xd9"


@st.composite
def unambiguous_encapsulations(draw):
    """Frame boundaries fixed by the encapsulation itself (PS3.5 A.4, PS3.3 C.7.6.3.1.8)."""
    table = draw(st.sampled_from(["bot", "eot", "none"]))
    rng = numpy.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if table == "eot":
        count = draw(st.integers(1, 12))
        fragments = [1] * count                          # an EOT needs one fragment per frame
    elif table == "bot":
        count = draw(st.integers(1, 12))
        shape = draw(st.sampled_from(["random", "uniform", "one each"]))
        if shape == "one each":
            fragments = [1] * count
        elif shape == "uniform":
            fragments = [draw(st.integers(1, 6))] * count
        else:
            fragments = [draw(st.integers(1, 6)) for _ in range(count)]
    else:
        if draw(st.booleans()):                          # one frame in many fragments
            count, fragments = 1, [draw(st.integers(1, 16))]
        else:                                            # many frames, one fragment each
            count = draw(st.integers(2, 12))
            fragments = [1] * count
    frames = [_frame_bytes(draw, rng, n, False) for n in fragments]
    number_of_frames = count if count > 1 else draw(st.sampled_from([None, 1]))
    return Encapsulated(frames, fragments, table, number_of_frames)


def _pydicom_frames(value: bytes, enc: Encapsulated, extended) -> list[bytes]:
    count = enc.number_of_frames or 1
    return list(encaps.generate_frames(value, number_of_frames=count, extended_offsets=extended))


@_settings(200)
@given(enc=unambiguous_encapsulations())
def test_encapsulated_frames_match_pydicom(enc: Encapsulated) -> None:
    blob, value, extended = _encapsulated_file(enc)
    ours = dicomnet.read_file(blob)
    # The element's value is the whole encapsulated sequence, fragments and all, as pydicom reads it.
    assert bytes(ours["PixelData"].value) == pydicom.dcmread(io.BytesIO(blob)).PixelData == value
    got = list(ours.frames())
    want = _pydicom_frames(value, enc, extended)
    assert [bytes(f) for f in got] == want
    count = enc.number_of_frames or 1
    for n in range(len(want)):
        assert encaps.get_frame(value, n, number_of_frames=count, extended_offsets=extended) == bytes(got[n])
    # ... and the frames are the ones encapsulated (each padded to even length by A.4 items).
    assert want == [f + b"\0" * (len(f) % 2) for f in enc.frames]
    for n, frame in enumerate(got):
        if enc.fragments[n] == 1:                         # pixels.iter_frames: a view of the source
            assert isinstance(frame, memoryview) and _views(numpy.frombuffer(frame, numpy.uint8), blob)
    with pytest.raises(PixelDataError):
        ours.pixel_array                                  # compressed: no decoder built in


@st.composite
def ambiguous_encapsulations(draw):
    """Several JPEG frames, more fragments than frames, an empty Basic Offset Table."""
    rng = numpy.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    count = draw(st.integers(2, 8))
    fragments = [draw(st.integers(1, 4)) for _ in range(count)]
    if sum(fragments) == count:
        fragments[draw(st.integers(0, count - 1))] = 2
    frames = [_frame_bytes(draw, rng, n, True) for n in fragments]
    return Encapsulated(frames, fragments, "none", count)


@_settings(60, shrink=False)
@given(enc=ambiguous_encapsulations())
def test_encapsulated_frames_without_offset_table(enc: Encapsulated) -> None:
    """Several JPEG frames, some over several fragments, no offset table: the frames end where
    their codestream ends (EOI, FF D9, then at most the item's pad byte)."""
    blob, value, _ = _encapsulated_file(enc, JPEG_BASELINE)
    padded = [f + b"\0" * (len(f) % 2) for f in enc.frames]
    last_fragments = [list(encaps.fragment_frame(f, n))[-1] for f, n in zip(enc.frames, enc.fragments)]
    assume(all(b"\xff\xd9" in frag[-10:] for frag in last_fragments))   # pydicom's heuristic can see them
    assert _pydicom_frames(value, enc, None) == padded                    # the oracle is exact here
    assert [bytes(f) for f in dicomnet.read_file(blob).frames()] == padded
