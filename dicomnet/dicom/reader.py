"""Reading DICOM data: Part 10 files (PS3.10 7.1) and bare data sets.

A path is memory-mapped; bytes, bytearray and memoryview inputs are used in
place. Only the element index is built here; values are decoded on access.
"""
from __future__ import annotations

import logging
import mmap
import os
import zlib
from typing import Any, BinaryIO, Literal, Union

from dicomnet._codec.elements import ElementIndex
from dicomnet.dicom.dataset import SQ_TAGS, Dataset
from dicomnet.errors import DicomParseError

__all__ = ["read_file", "read_dataset", "DEFAULT_MAX_INFLATED_SIZE"]

log = logging.getLogger("dicomnet")

_O_BINARY = getattr(os, "O_BINARY", 0)   # Windows: no newline translation

PathOrBuffer = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]

_PIXEL_DATA = 0x7FE00010
_TRANSFER_SYNTAX_UID = 0x00020010
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
#: A Deflated data set may inflate to at most this many bytes (a deflate bomb is refused).
DEFAULT_MAX_INFLATED_SIZE = 2 << 30
#: ... and to at most this many times its compressed size.
DEFAULT_MAX_INFLATE_RATIO = 1000


def _open_source(source: PathOrBuffer) -> tuple[Any, str | None]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return source, None
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        # os.open rather than open(): no buffered file object is built only to be closed.
        fd = os.open(path, os.O_RDONLY | _O_BINARY)
        try:
            # The mapping holds its own reference to the file; closing fd is fine.
            return mmap.mmap(fd, 0, access=mmap.ACCESS_READ), path
        except ValueError:
            raise DicomParseError(f"{path} is empty", offset=0) from None
        except OSError:
            pass   # not a regular file
        finally:
            os.close(fd)
        with open(path, "rb") as f:   # not a regular file: open() says what is wrong with it
            if os.fstat(f.fileno()).st_size == 0:
                raise DicomParseError(f"{path} is empty", offset=0)
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), path
    if hasattr(source, "read"):
        return source.read(), getattr(source, "name", None)
    raise TypeError(f"cannot read DICOM data from {type(source).__name__}")


# (implicit, little, deflated) by transfer syntax UID, for the UIDs seen so far.
_TS_FLAGS: dict[str, tuple[bool, bool, bool]] = {}


def _ts_flags(uid: str) -> tuple[bool, bool, bool]:
    """(implicit, little, deflated) for a transfer syntax UID."""
    flags = _TS_FLAGS.get(uid) if isinstance(uid, str) else None
    if flags is not None:
        return flags
    from dicomnet.types.transfer_syntax import transfer_syntax

    try:
        ts = transfer_syntax(uid)
    except KeyError:
        log.warning("unknown transfer syntax %s: assuming Explicit VR Little Endian", uid)
        return False, True, False
    flags = ts.implicit_vr, ts.little_endian, ts.deflated
    if isinstance(uid, str) and len(_TS_FLAGS) < 256:
        _TS_FLAGS[uid] = flags
    return flags


def _looks_explicit(buf: memoryview, pos: int) -> bool:
    return len(buf) - pos >= 6 and 65 <= buf[pos + 4] <= 90 and 65 <= buf[pos + 5] <= 90


def _guess_syntax(buf: memoryview, pos: int) -> str:
    """Infer the transfer syntax of a data set without File Meta (PS3.10 does not say how)."""
    if len(buf) - pos < 8:
        raise DicomParseError("too short to be a DICOM data set", offset=pos)
    group_le = buf[pos] | (buf[pos + 1] << 8)
    group_be = (buf[pos] << 8) | buf[pos + 1]
    if _looks_explicit(buf, pos):
        return EXPLICIT_VR_BE if group_be < group_le else EXPLICIT_VR_LE
    return IMPLICIT_VR_LE


def _inflate(data: memoryview, offset: int, max_size: int, max_ratio: int) -> bytes:
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    limit = min(max_size, max(len(data), 1) * max_ratio)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise DicomParseError(f"bad Deflated data: {exc}", offset=offset) from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise DicomParseError(
            f"Deflated data set inflates past the limit ({limit} bytes): refused", offset=offset
        )
    return out


def read_dataset(source: Any, start: int = 0, end: int | None = None, *,
                 transfer_syntax: str = EXPLICIT_VR_LE, stop_before_pixels: bool = False,
                 max_depth: int = 64) -> Dataset:
    """Parse a bare data set (no preamble, no File Meta) in the given transfer syntax."""
    implicit, little, deflated = _ts_flags(transfer_syntax)
    if deflated:
        source = _inflate(memoryview(source)[start:end], start, DEFAULT_MAX_INFLATED_SIZE,
                          DEFAULT_MAX_INFLATE_RATIO)
        start, end = 0, None
    index = ElementIndex(source, start, end, implicit=implicit, little=little, max_depth=max_depth,
                         stop_tag=_PIXEL_DATA if stop_before_pixels else None, sq_tags=SQ_TAGS)
    return Dataset._from_index(index, 0, len(index), None, transfer_syntax)


def read_file(source: PathOrBuffer, *, stop_before_pixels: bool = False, max_depth: int = 64,
              max_inflated_size: int = DEFAULT_MAX_INFLATED_SIZE,
              max_inflate_ratio: int = DEFAULT_MAX_INFLATE_RATIO) -> Dataset:
    """Read a DICOM file (with or without preamble and File Meta) into a lazy Dataset.

    The transfer syntax comes from (0002,0010) or, without File Meta, is
    inferred from the first element. ``ds.file_meta`` is the File Meta group
    (a Dataset) or None; ``ds.transfer_syntax`` the UID the data set was read in.
    """
    src, name = _open_source(source)
    buf = memoryview(src).cast("B") if not isinstance(src, bytes) else memoryview(src)
    preamble = None
    pos = 0
    if len(buf) >= 132 and buf[128:132] == b"DICM":
        preamble = bytes(buf[:128])
        pos = 132
    elif len(buf) >= 4 and buf[:4] == b"DICM":
        pos = 4
    file_meta = None
    ts_uid = None
    if len(buf) - pos >= 8 and buf[pos] == 0x02 and buf[pos + 1] == 0x00:
        meta_index = ElementIndex(src, pos, implicit=not _looks_explicit(buf, pos), little=True,
                                  max_depth=max_depth, only_group=0x0002)
        file_meta = Dataset._from_index(meta_index, 0, len(meta_index), None, EXPLICIT_VR_LE)
        pos = meta_index.stop
        ts_idx = file_meta._raw.get(_TRANSFER_SYNTAX_UID)
        if ts_idx is not None:
            # The common case straight from the index: one UI value in ASCII.
            text = meta_index.text(ts_idx, 0) if meta_index.vr(ts_idx) == "UI" else None
            if text is not None and "\\" not in text:
                ts_uid = text.strip("\0 ") or None
            else:
                ts_uid = _uid_text(file_meta._value(_TRANSFER_SYNTAX_UID))
        if ts_uid is None:
            log.warning("File Meta has no Transfer Syntax UID: inferring it")
    elif preamble is not None and len(buf) == pos:
        raise DicomParseError("file holds a preamble and nothing else", offset=pos)
    if ts_uid is None:
        ts_uid = _guess_syntax(buf, pos) if len(buf) > pos else EXPLICIT_VR_LE
    implicit, little, deflated = _ts_flags(ts_uid)
    if deflated:
        src = _inflate(buf[pos:], pos, max_inflated_size, max_inflate_ratio)
        buf, pos = memoryview(src), 0
    elif len(buf) - pos >= 8 and not (buf[pos] == 0xFE and buf[pos + 1] == 0xFF):
        # Files whose meta header names the wrong VR encoding exist; trust the bytes.
        explicit_bytes = _looks_explicit(buf, pos)
        if not implicit and not explicit_bytes:
            log.warning("data set declared explicit VR but reads as implicit VR")
            implicit = True
        elif implicit and explicit_bytes and _vr_matches_dictionary(buf, pos, little):
            log.warning("data set declared implicit VR but reads as explicit VR")
            implicit = False
        else:
            implicit = None  # type: ignore[assignment]  # as declared
        if implicit is not None and little and ts_uid in (IMPLICIT_VR_LE, EXPLICIT_VR_LE):
            # Label the data set with the syntax it is really in, so that writing
            # it back (or sending it) never pairs these bytes with the wrong UID.
            ts_uid = IMPLICIT_VR_LE if implicit else EXPLICIT_VR_LE
        implicit = _ts_flags(ts_uid)[0] if implicit is None else implicit
    index = ElementIndex(src, pos, implicit=implicit, little=little, max_depth=max_depth,
                         stop_tag=_PIXEL_DATA if stop_before_pixels else None, sq_tags=SQ_TAGS)
    ds = Dataset._from_index(index, 0, len(index), None, ts_uid)
    d = ds.__dict__
    d["file_meta"] = file_meta
    d["preamble"] = preamble
    d["filename"] = name
    return ds


def _uid_text(value: Any) -> str | None:
    """The Transfer Syntax UID as text; None when the element holds no usable text
    (malformed meta: a binary VR decodes to numbers or an array)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode("latin-1")
    if not isinstance(value, str):
        return None
    return value.strip("\0 ") or None


def _vr_matches_dictionary(buf: memoryview, pos: int, little: bool) -> bool:
    from dicomnet.dicom.dictionary import lookup

    order: Literal["little", "big"] = "little" if little else "big"
    tag = (int.from_bytes(buf[pos:pos + 2], order) << 16) | int.from_bytes(buf[pos + 2:pos + 4], order)
    entry = lookup(tag)
    vr = bytes(buf[pos + 4:pos + 6]).decode("ascii", "replace")
    return entry is not None and vr in entry.vrs
