"""Pixel Data as numpy views (PS3.3 C.7.6.3, PS3.5 8 and A.4).

For native (uncompressed) data the array is ``numpy.frombuffer`` over the
dataset's own source buffer — for a memory-mapped file, over the mapping — so
``numpy.shares_memory(ds.pixel_array, source)`` holds and no pixel byte is
copied. The exceptions copy because they must: 1-bit data (unpacked to
uint8) and 8-bit samples stored as OW in big endian (their bytes are swapped
in pairs on the wire).

The view holds the Pixel Cells as stored: with Bits Stored below Bits
Allocated, bits outside the sample (PS3.5 8.1.1; legacy files kept overlays
there) are not masked, and signed samples are not sign-extended, because
finding out would read every pixel. :func:`pixel_values` gives the samples
(a view still when every cell is clean, else a corrected copy), as pydicom's
``pixel_array`` does.
"""
from __future__ import annotations

import logging
import reprlib
from typing import TYPE_CHECKING, Any, Iterator

import numpy

from dicomnet.errors import DicomNetError, DicomParseError

if TYPE_CHECKING:
    from dicomnet.dicom.dataset import Dataset

__all__ = ["pixel_array", "pixel_values", "iter_frames", "PixelDataError"]

log = logging.getLogger("dicomnet")

PIXEL_DATA = 0x7FE00010
FLOAT_PIXEL_DATA = 0x7FE00008
DOUBLE_PIXEL_DATA = 0x7FE00009
EXTENDED_OFFSET_TABLE = 0x7FE00001
EXTENDED_OFFSET_TABLE_LENGTHS = 0x7FE00002
_F_ENCAPSULATED = 8


class PixelDataError(DicomNetError, ValueError):
    """The pixel description and the Pixel Data do not fit together, or the data is compressed."""


# The pixel description attributes read here (PS3.3 C.7.6.3), by keyword.
_TAGS = {
    "SamplesPerPixel": 0x00280002,
    "PlanarConfiguration": 0x00280006,
    "NumberOfFrames": 0x00280008,
    "Rows": 0x00280010,
    "Columns": 0x00280011,
    "BitsAllocated": 0x00280100,
    "BitsStored": 0x00280101,
    "HighBit": 0x00280102,
    "PixelRepresentation": 0x00280103,
}
_MISSING = object()


def _int(ds: Dataset, keyword: str, default: int | None = None) -> int:
    tag = _TAGS[keyword]
    value = ds._vals.get(tag, _MISSING)
    if value is _MISSING:
        value = ds._value(tag) if tag in ds._raw else None
    if type(value) is int and value >= 0:
        return value
    if isinstance(value, (list, tuple, numpy.ndarray)):
        # Malformed data may hold several values where the pixel module allows one.
        if len(value) != 1:
            raise PixelDataError(f"{keyword} holds {len(value)} values, one expected")
        value = value[0]
    if value is None or (isinstance(value, str) and value == ""):
        if default is None:
            raise PixelDataError(f"{keyword} is missing: cannot shape the pixel data")
        return default
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        if keyword == "NumberOfFrames" and default is not None:
            log.warning("Number of Frames %s is not an integer: assuming %d", reprlib.repr(value), default)
            return default
        raise PixelDataError(f"{keyword} {reprlib.repr(value)} is not an integer") from None
    if number < 0:
        raise PixelDataError(f"{keyword} {number} is negative")
    return number


def _pixel_tag(ds: Dataset) -> int:
    raw, vals = ds._raw, ds._vals
    for tag in (PIXEL_DATA, FLOAT_PIXEL_DATA, DOUBLE_PIXEL_DATA):
        if tag in raw or tag in vals:
            return tag
    raise PixelDataError("the dataset has no Pixel Data")


def _geometry(ds: Dataset) -> tuple[int, int, int, int, int]:
    rows = _int(ds, "Rows")
    cols = _int(ds, "Columns")
    samples = _int(ds, "SamplesPerPixel", 1)
    frames = _int(ds, "NumberOfFrames", 1) or 1
    planar = _int(ds, "PlanarConfiguration", 0) if samples > 1 else 0
    return frames, rows, cols, samples, planar


_DTYPES: dict[str, numpy.dtype] = {}
_PLAIN_DTYPES: dict[tuple[bool, int, int], numpy.dtype] = {}


def _dtype(ds: Dataset, tag: int, little: bool) -> numpy.dtype:
    order = "<" if little else ">"
    if tag == FLOAT_PIXEL_DATA:
        return numpy.dtype(order + "f4")
    if tag == DOUBLE_PIXEL_DATA:
        return numpy.dtype(order + "f8")
    bits = _int(ds, "BitsAllocated")
    signed = _int(ds, "PixelRepresentation", 0) == 1
    if bits not in (1, 8, 16, 32, 64):
        raise PixelDataError(f"Bits Allocated {bits} is not supported")
    if bits == 1:
        return numpy.dtype("u1")
    code = f"{order}{'i' if signed else 'u'}{bits // 8}"
    dtype = _DTYPES.get(code)
    if dtype is None:
        dtype = _DTYPES[code] = numpy.dtype(code)
    return dtype


def _plain_pixel_array(ds: Dataset) -> numpy.ndarray | None:
    """The common case in few steps: native Pixel Data still in the source buffer and a
    pixel description of plain, already decoded values. None: take the general path."""
    idx = ds._raw.get(PIXEL_DATA)
    if idx is None or PIXEL_DATA in ds._vrs:
        return None
    vals, raw = ds._vals, ds._raw
    facts = []
    for tag, default in _PLAIN_FACTS:
        value = vals.get(tag, _MISSING)
        if value is _MISSING:
            if tag in raw:
                return None                       # not decoded yet: the general path does it
            value = default
        if type(value) is not int or value < 0:
            return None
        facts.append(value)
    samples, frames, rows, cols, bits, signed = facts
    if samples != 1 or bits not in (8, 16, 32, 64) or signed > 1:
        return None
    index = ds._index
    _, wire_vr, flags, _, offset, length, _ = index.entry(idx)
    little = index.little
    if flags & _F_ENCAPSULATED or (not little and bits == 8 and wire_vr == "OW"):
        return None
    dtype = _PLAIN_DTYPES.get((little, signed, bits))
    if dtype is None:
        dtype = _PLAIN_DTYPES[(little, signed, bits)] = numpy.dtype(
            f"{'<' if little else '>'}{'i' if signed else 'u'}{bits // 8}")
    frames = frames or 1
    count = frames * rows * cols
    if length < count * dtype.itemsize:
        return None                               # the general path says what is wrong
    return numpy.frombuffer(index.source, dtype, count, offset).reshape(frames, rows, cols)


# (tag, value when absent) of the pixel description read by _plain_pixel_array, in its order:
# Samples per Pixel, Number of Frames, Rows, Columns, Bits Allocated, Pixel Representation.
_PLAIN_FACTS = ((0x00280002, 1), (0x00280008, 1), (0x00280010, None), (0x00280011, None),
                (0x00280100, None), (0x00280103, 0))


def pixel_array(ds: Dataset) -> numpy.ndarray:
    """The pixels shaped (frames, rows, columns) or (frames, rows, columns, samples)."""
    plain = _plain_pixel_array(ds)
    if plain is not None:
        return plain
    tag = _pixel_tag(ds)
    frames, rows, cols, samples, planar = _geometry(ds)
    count = frames * rows * cols * samples
    idx = ds._raw.get(tag) if tag not in ds._vrs else None
    if idx is None:
        # Set in Python: bytes in the native layout, or any array-like.
        value = ds._value(tag)
        dtype = _dtype(ds, tag, True)
        if isinstance(value, (bytes, bytearray, memoryview)) and tag == PIXEL_DATA and _int(ds, "BitsAllocated") == 1:
            packed = numpy.frombuffer(value, numpy.uint8)
            if packed.size < (count + 7) // 8:
                raise PixelDataError(f"Pixel Data holds {packed.size} bytes, {(count + 7) // 8} needed for 1-bit pixels")
            flat = numpy.unpackbits(packed, bitorder="little")[:count]
        elif isinstance(value, (bytes, bytearray, memoryview)):
            flat = numpy.frombuffer(value, dtype, len(value) // dtype.itemsize)
        else:
            flat = numpy.asarray(value).reshape(-1)
    else:
        index = ds._index
        if index.flags(idx) & _F_ENCAPSULATED:
            raise PixelDataError(
                "Pixel Data is compressed (encapsulated); decompression is not built in: "
                "use ds.frames() for the compressed frames"
            )
        _, wire_vr, _, _, offset, length, _ = index.entry(idx)
        wire_vr = wire_vr or ds._vr(tag)
        little = index.little
        source = index.source
        dtype = _dtype(ds, tag, little)
        bits = _int(ds, "BitsAllocated", 8) if tag == PIXEL_DATA else dtype.itemsize * 8
        if bits == 1:
            needed = (count + 7) // 8
            if length < needed:
                raise PixelDataError(f"Pixel Data holds {length} bytes, {needed} needed for 1-bit pixels")
            packed = numpy.frombuffer(source, numpy.uint8, needed, offset)
            flat = numpy.unpackbits(packed, bitorder="little")[:count]
        elif not little and dtype.itemsize == 1 and wire_vr == "OW":
            words = numpy.frombuffer(source, ">u2", length // 2, offset)
            flat = words.astype("<u2").view(numpy.uint8)[:count]
            if flat.size < count:
                raise PixelDataError(f"Pixel Data holds {length} bytes, {count} needed")
            flat = flat.view(dtype)
        else:
            needed = count * dtype.itemsize
            if length < needed:
                raise PixelDataError(
                    f"Pixel Data holds {length} bytes but {frames} frame(s) of {rows}x{cols}x{samples} "
                    f"at {dtype.itemsize * 8} bits need {needed}"
                )
            flat = numpy.frombuffer(source, dtype, count, offset)
    if flat.size < count:
        raise PixelDataError(f"Pixel Data holds {flat.size} values, {count} needed")
    if flat.size > count:
        flat = flat[:count]
    if samples == 1:
        return flat.reshape(frames, rows, cols)
    if planar == 1:
        return flat.reshape(frames, samples, rows, cols).transpose(0, 2, 3, 1)
    return flat.reshape(frames, rows, cols, samples)


def pixel_values(ds: Dataset) -> numpy.ndarray:
    """The Pixel Sample Values (PS3.5 8.1.1): :func:`pixel_array` with the bits
    outside Bits Stored cleared, signed samples sign-extended from their High
    Bit, and samples placed above bit 0 (High Bit > Bits Stored - 1, legacy
    data) shifted down. The view itself when no cell needs that, else a copy
    in the same dtype."""
    arr = pixel_array(ds)
    if _pixel_tag(ds) != PIXEL_DATA or arr.dtype.kind not in "ui":
        return arr
    bits = _int(ds, "BitsAllocated")
    if bits == 1:
        return arr
    stored = _int(ds, "BitsStored", bits)
    if stored == bits:
        return arr
    if not 0 < stored < bits:
        raise PixelDataError(f"Bits Stored {stored} does not fit Bits Allocated {bits}")
    high = _int(ds, "HighBit", stored - 1)
    if not stored - 1 <= high < bits:
        raise PixelDataError(f"High Bit {high} does not fit Bits Stored {stored} and Bits Allocated {bits}")
    signed = arr.dtype.kind == "i"
    if high == stored - 1 and arr.size:
        # Cells already clean (zero, or the sign, above the sample): the view.
        if signed:
            if int(arr.min()) >= -(1 << (stored - 1)) and int(arr.max()) < 1 << (stored - 1):
                return arr
        elif int(arr.max()) < 1 << stored:
            return arr
    elif not arr.size:
        return arr
    cells = arr.view(arr.dtype.str.replace("i", "u"))
    if signed:
        # the sign bit at High Bit moves to the top, then an arithmetic shift brings it back
        top = (cells << (bits - 1 - high)).view(arr.dtype.newbyteorder("="))
        values = top >> (bits - stored)
    else:
        values = (cells >> (high - stored + 1)) & ((1 << stored) - 1)
    return values.astype(arr.dtype, copy=False)


def _fragments(ds: Dataset, idx: int) -> tuple[list[int], list[memoryview]]:
    index = ds._index
    first, stop = index.children(idx)
    entries = [index.entry(i) for i in index.siblings(first, stop)]
    return [e[3] for e in entries], [index.raw(i) for i in index.siblings(first, stop)]


def _join(parts: list[memoryview]) -> memoryview | bytes:
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _extended_offsets(value: Any) -> list[int]:
    """The entries of an Extended Offset Table (7FE0,0001), OV: 64-bit
    offsets. Read under another binary VR (a damaged or unusual file), its
    bytes are taken as they are, little endian like the fragments it points
    at; DicomParseError when they cannot be 64-bit offsets."""
    if value is None:
        return []
    if isinstance(value, numpy.ndarray) and value.dtype.kind in "ui" and value.dtype.itemsize == 8:
        return [int(v) for v in value.ravel()]
    try:
        raw = value.tobytes() if isinstance(value, numpy.ndarray) else memoryview(value).tobytes()
    except TypeError:
        raise DicomParseError("the Extended Offset Table is not binary data", tag=EXTENDED_OFFSET_TABLE) from None
    if len(raw) % 8:
        raise DicomParseError(f"the Extended Offset Table's length ({len(raw)}) is not a multiple of 8",
                              tag=EXTENDED_OFFSET_TABLE)
    return [int(v) for v in numpy.frombuffer(raw, "<u8")]


def iter_frames(ds: Dataset) -> Iterator[Any]:
    """Yield one item per frame.

    Native data: a numpy view of each frame. Encapsulated data: the frame's
    compressed bytes — a memoryview of the source when the frame is one
    fragment, joined bytes when it spans several — located with the Extended
    Offset Table, else the Basic Offset Table, else one frame per fragment,
    else (JPEG family) the fragments that end a codestream.
    """
    tag = _pixel_tag(ds)
    idx = ds._raw.get(tag) if tag not in ds._vrs else None
    if idx is None or not ds._index.flags(idx) & _F_ENCAPSULATED:
        yield from pixel_array(ds)
        return
    frames = _int(ds, "NumberOfFrames", 1) or 1
    headers, frags = _fragments(ds, idx)
    if not frags:
        raise DicomParseError("encapsulated Pixel Data without a Basic Offset Table item", tag=tag)
    bot, headers, frags = frags[0], headers[1:], frags[1:]
    if not frags:
        return
    base = headers[0]
    relative = [h - base for h in headers]
    offsets: list[int] | None = None
    if EXTENDED_OFFSET_TABLE in ds:
        offsets = _extended_offsets(ds._value(EXTENDED_OFFSET_TABLE)) or None   # empty: as if absent
    if offsets is None and len(bot) >= 4:
        if len(bot) % 4:
            raise DicomParseError("Basic Offset Table length is not a multiple of 4", tag=tag)
        offsets = [int(v) for v in numpy.frombuffer(bot, "<u4")]
    if offsets is not None:
        starts = {off: n for n, off in enumerate(relative)}
        try:
            first_fragment = [starts[off] for off in offsets]
        except KeyError:
            raise DicomParseError("an offset table entry does not point at a fragment", tag=tag) from None
        bounds = first_fragment + [len(frags)]
        for a, b in zip(bounds, bounds[1:]):
            if b <= a:
                raise DicomParseError("offset table entries are not increasing", tag=tag)
            yield _join(frags[a:b])
        return
    if frames == 1:
        yield _join(frags)
    elif len(frags) == frames:
        yield from frags
    else:
        ends = _frame_ends(ds, frags, frames)
        if ends is None:
            raise PixelDataError(
                f"{len(frags)} fragments for {frames} frames and no offset table: cannot tell the frames apart"
            )
        for a, b in zip([0] + ends, ends):
            yield _join(frags[a:b])


def _frame_ends(ds: Dataset, frags: list[memoryview], frames: int) -> list[int] | None:
    """Without an offset table, frames may still span fragments (PS3.5 A.4). In
    JPEG, JPEG-LS and JPEG 2000 codestreams FF D9 (EOI, EOC) occurs only at the
    end, so a fragment ending in it (or in it and the item's pad byte) ends a
    frame. The fragment index after each frame, or None unless that gives
    exactly ``frames`` frames ending with the last fragment."""
    syntax = str(ds.transfer_syntax or "")
    if syntax:
        family, _, number = syntax.rpartition(".")
        if family != "1.2.840.10008.1.2.4" or not number.isdigit() or not (
                50 <= int(number) <= 93 or 201 <= int(number) <= 203):
            return None
    elif bytes(frags[0][:2]) not in (b"\xff\xd8", b"\xff\x4f"):   # SOI, SOC
        return None
    ends = [n + 1 for n, frag in enumerate(frags)
            if bytes(frag[-2:]) == b"\xff\xd9" or bytes(frag[-3:]) == b"\xff\xd9\x00"]
    if len(ends) != frames or ends[-1] != len(frags):
        return None
    return ends
