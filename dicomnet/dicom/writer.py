"""Encoding data sets (PS3.5 7) and writing Part 10 files (PS3.10 7.1).

Untouched elements are copied from the source buffer as they were read, so a
dataset read and written back in its own transfer syntax is byte-identical.
Elements are re-encoded only when they were set in Python or when the byte
order or VR encoding changes (transcoding among the uncompressed syntaxes).
"""
from __future__ import annotations

import os
import struct
import tempfile
import zlib
from collections.abc import Iterable
from typing import Any

from dicomnet._version import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dicomnet.dicom import values as _values
from dicomnet.dicom.dataset import Dataset
from dicomnet.dicom.reader import EXPLICIT_VR_LE, _ts_flags
from dicomnet.dicom.dictionary import keyword_of
from dicomnet.errors import DicomEncodeError, DicomParseError

__all__ = ["encode_dataset", "encode_file_meta", "write_file"]

_F_UNDEFINED, _F_SEQUENCE, _F_ENCAPSULATED = 1, 2, 8
_UNDEFINED = 0xFFFFFFFF
_SPECIFIC_CHARACTER_SET = 0x00080005
_CHARSET_VRS = _values._CHARSET_VRS   # the VRs whose text is in the Specific Character Set
_ITEM, _ITEM_DELIM, _SEQ_DELIM = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD


def _header(tag: int, vr: str, length: int, implicit: bool, little: bool) -> bytes:
    order = "<" if little else ">"
    if implicit:
        return struct.pack(order + "HHI", tag >> 16, tag & 0xFFFF, length)
    if vr in _values.LONG_VRS:
        return struct.pack(order + "HH2s2xI", tag >> 16, tag & 0xFFFF, vr.encode("ascii"), length)
    if length > 0xFFFF:
        raise DicomParseError(f"a {vr} value of {length} bytes does not fit a 16-bit length", tag=tag)
    return struct.pack(order + "HH2sH", tag >> 16, tag & 0xFFFF, vr.encode("ascii"), length)


def _delimiter(tag: int, little: bool) -> bytes:
    return struct.pack("<HHI" if little else ">HHI", tag >> 16, tag & 0xFFFF, 0)


def _sequence_unchanged(ds: Dataset, tag: int) -> bool:
    items = ds._items.get(tag)
    if items is None:
        return tag not in ds._vals
    current = ds._vals.get(tag)
    return (current is not None and len(current) == len(items)
            and all(a is b and not b.is_modified() for a, b in zip(current, items)))


def _needs_transcoding(raw: Any) -> bool:
    """True when text bytes may read differently in another character set:
    any byte past ASCII, or an ISO 2022 escape."""
    data = bytes(raw)
    return not data.isascii() or b"\x1b" in data


def _encode_into(ds: Dataset, out: bytearray, implicit: bool, little: bool,
                 tags: Iterable[int] | None = None, charsets: tuple[str, ...] | None = None) -> None:
    """Append the elements of ``ds`` (only ``tags``, in their order, when
    given): those read and not changed as their bytes, the others encoded
    from their values. Text is written in ``charsets`` -- the character set
    of the data set being written, passed down into its sequence items (PS3.3
    C.12.1.1.2) -- unless ``ds`` has a Specific Character Set of its own;
    None: ``ds``'s own (or, for an item, its parent's). Text read in another
    character set is transcoded."""
    index = ds._index
    if charsets is None or _SPECIFIC_CHARACTER_SET in ds:
        charsets = ds._current_charsets()
    same = same_text = False
    source: Any = None
    if index is not None:
        same = index.implicit == implicit and index.little == little
        # The source's text is in the character set it was read in; where that
        # differs, text elements (and the items of sequences) are re-encoded.
        same_text = ds._charsets() == charsets
        source = memoryview(index.source).cast("B")
    # A Group Length (gggg,0000) is rewritten to what its group now takes
    # (PS3.5 7.2): transcoding or a changed value would leave the old one wrong.
    group_at, group, content = -1, -1, 0
    for tag in ds.tags() if tags is None else tags:
        if group_at >= 0 and tag >> 16 != group:
            struct.pack_into("<I" if little else ">I", out, group_at, len(out) - content)
            group_at = -1
        at = len(out)
        idx = ds._raw.get(tag) if index is not None else None
        if idx is None or tag in ds._vrs:
            _encode_assigned(ds, tag, out, implicit, little, charsets)
        else:
            _encode_read(ds, tag, idx, out, implicit, little, charsets, same, same_text, source)
        if not tag & 0xFFFF and tags is None and len(out) - at == 12:   # one 4-byte value
            group_at, group, content = len(out) - 4, tag >> 16, len(out)
    if group_at >= 0:
        struct.pack_into("<I" if little else ">I", out, group_at, len(out) - content)


def _encode_read(ds: Dataset, tag: int, idx: int, out: bytearray, implicit: bool, little: bool,
                 charsets: tuple[str, ...], same: bool, same_text: bool, source: Any) -> None:
    """An element read from the source: its bytes when they still hold, else re-encoded."""
    index = ds._index
    flags = index.flags(idx)
    if (not same_text and not flags & _F_SEQUENCE and tag != _SPECIFIC_CHARACTER_SET
            and ds._vr(tag) in _CHARSET_VRS and _needs_transcoding(index.raw(idx))):
        _encode_assigned(ds, tag, out, implicit, little, charsets)   # decoded, then re-encoded
        return
    if same:
        # (A sequence may arrive unmarked: as UN, or of defined length in Implicit VR
        # where the index did not know its tag. Its items may have changed all the
        # same.) With a VR on the wire other than UN, that VR is the element's: the
        # dictionary is looked up only for the others.
        if flags & _F_SEQUENCE:
            sequence = True
        else:
            wire = index.vr(idx)
            sequence = wire == "SQ" if wire is not None and wire != "UN" else ds._vr(tag) == "SQ"
        if not sequence or (same_text and _sequence_unchanged(ds, tag)):
            start, past = index.span(idx)
            out += source[start:past]
            return
    vr = ds._vr(tag)
    if vr == "SQ":
        _encode_sequence(ds, tag, ds._value(tag), bool(flags & _F_UNDEFINED), out, implicit, little,
                         charsets)
    elif flags & _F_ENCAPSULATED:
        if not little or implicit:
            raise DicomParseError("encapsulated Pixel Data needs Explicit VR Little Endian", tag=tag)
        start, past = index.span(idx)
        out += _header(tag, "OB", _UNDEFINED, implicit, little)
        out += source[index.entry(idx)[4]:past]
    elif flags & _F_SEQUENCE:
        # UN of undefined length that the dictionary does not know: its
        # content is Implicit VR LE items; keep it verbatim.
        if not little:
            raise DicomParseError("cannot write an undefined-length UN in big endian", tag=tag)
        start, past = index.span(idx)
        out += _header(tag, "UN", _UNDEFINED, implicit, little)
        out += source[index.entry(idx)[4]:past]
    else:
        raw = index.raw(idx)
        # PS3.5 6.2.2: a UN value field is little endian and never byte-swapped
        source_little = True if index.vr(idx) == "UN" else index.little
        if source_little != little and (vr in _values.NUMERIC_VRS or vr in _values.BULK_VRS):
            raw = _values.swap_bytes(raw, vr)
        if len(raw) % 2:
            # An odd length read from the source (PS3.5 7.1.1 forbids it): a new
            # header gets the padded value, as dcmtk writes it.
            raw = bytes(raw) + (b" " if vr in _values.TEXT_VRS and vr != "UI" else b"\x00")
        out += _header(tag, vr, len(raw), implicit, little)
        out += raw


def _encode_assigned(ds: Dataset, tag: int, out: bytearray, implicit: bool, little: bool,
                     charsets: tuple[str, ...]) -> None:
    """An element set in Python: encoded from its value."""
    vr = ds._vr(tag)
    value = ds._value(tag)
    if vr == "SQ":
        _encode_sequence(ds, tag, value, False, out, implicit, little, charsets)
        return
    try:
        data = _values.encode_value(vr, value, charsets, little)
    except ValueError as exc:      # DicomEncodeError too: say which element
        name = keyword_of(tag)
        where = f"({tag >> 16:04X},{tag & 0xFFFF:04X})" + (f" {name}" if name else "")
        raise DicomEncodeError(f"{where}: {exc}") from exc
    out += _header(tag, vr, len(data), implicit, little)
    out += data


def _encode_sequence(ds: Dataset, tag: int, items: Any, undefined: bool, out: bytearray,
                     implicit: bool, little: bool, charsets: tuple[str, ...]) -> None:
    order = "<I" if little else ">I"
    out += _header(tag, "SQ", _UNDEFINED if undefined else 0, implicit, little)
    length_at = len(out) - 4
    start = len(out)
    for item in items or ():
        item_undefined = undefined and item.__dict__.get("_undefined", True)
        out += struct.pack("<HHI" if little else ">HHI", 0xFFFE, 0xE000, _UNDEFINED if item_undefined else 0)
        item_length_at = len(out) - 4
        item_start = len(out)
        _encode_into(item, out, implicit, little, charsets=charsets)
        if item_undefined:
            out += _delimiter(_ITEM_DELIM, little)
        else:
            struct.pack_into(order, out, item_length_at, len(out) - item_start)
    if undefined:
        out += _delimiter(_SEQ_DELIM, little)
    else:
        struct.pack_into(order, out, length_at, len(out) - start)


def encode_dataset(ds: Dataset, transfer_syntax: str | None = None) -> bytes | bytearray | memoryview:
    """The data set's bytes in ``transfer_syntax`` (default: the one it was read in).

    An unmodified dataset in its own syntax returns a memoryview of the source
    bytes (no copy). Deflated syntaxes are compressed after encoding.
    """
    uid = str(transfer_syntax or ds.transfer_syntax or EXPLICIT_VR_LE)
    implicit, little, deflated = _ts_flags(uid)
    index = ds._index
    if (index is not None and ds._parent is None and uid == ds.transfer_syntax
            and len(index) and ds.tags() and not ds.is_modified()
            and ds._raw.keys() == index.level(0, len(index)).keys()):
        body: bytes | bytearray | memoryview = memoryview(index.source).cast("B")[index.start:index.stop]
    else:
        out = bytearray()
        _encode_into(ds, out, implicit, little)
        body = out
    if deflated:
        packer = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = packer.compress(body) + packer.flush()
        return data + b"\x00" if len(data) % 2 else data
    return body


def _uid(value: Any) -> str:
    """A UID value as text; "" when missing or not text (malformed data read with a binary VR)."""
    return value.strip("\0 ") if isinstance(value, str) else ""


def encode_file_meta(ds: Dataset, transfer_syntax: str) -> bytes | memoryview:
    """The File Meta Information group (PS3.10 7.1) for ``ds`` written in ``transfer_syntax``.

    The dataset's own File Meta is reused byte for byte when it is unmodified and
    names the same transfer syntax; otherwise a group is built from it (or from
    scratch) with the SOP Class/Instance UIDs, the transfer syntax and our
    implementation identity, and a correct group length.
    """
    meta = ds.file_meta
    if meta is not None and not meta.is_modified():
        current = _uid(meta.get("TransferSyntaxUID"))
        if current == transfer_syntax and 0x00020000 in meta:
            index = meta._index
            return memoryview(index.source).cast("B")[index.start:index.stop]
    # What is set here; every other element of the old group is kept as it
    # was read: its bytes, never re-encoded from the decoded value, which need
    # not give the same bytes back (a DS "1.50" comes back as "1.5").
    new = Dataset()
    new.set(0x00020001, b"\x00\x01", "OB")
    if meta is None or 0x00020002 not in meta:
        new.set(0x00020002, _uid(ds.get("SOPClassUID")), "UI")
    if meta is None or 0x00020003 not in meta:
        new.set(0x00020003, _uid(ds.get("SOPInstanceUID")), "UI")
    new.set(0x00020010, transfer_syntax, "UI")
    if meta is None or 0x00020012 not in meta:
        new.set(0x00020012, IMPLEMENTATION_CLASS_UID, "UI")
        new.set(0x00020013, IMPLEMENTATION_VERSION_NAME, "SH")
    kept = [] if meta is None else [tag for tag in meta.tags() if tag != 0x00020000 and tag not in new]
    out = bytearray()
    for tag in sorted(kept + list(new.tags())):
        _encode_into(new if tag in new else meta, out, implicit=False, little=True, tags=(tag,))
    return _header(0x00020000, "UL", 4, False, True) + struct.pack("<I", len(out)) + bytes(out)


def write_file(path: str | os.PathLike[str], ds: Dataset, transfer_syntax: str | None = None) -> None:
    """Write ``ds`` as a Part 10 file: preamble, ``DICM``, File Meta, data set.

    The file is written under a temporary name in the same folder, flushed to
    disk and renamed into place, so a reader never sees a half-written file.
    """
    uid = str(transfer_syntax or ds.transfer_syntax or EXPLICIT_VR_LE)
    body = encode_dataset(ds, uid)
    meta = encode_file_meta(ds, uid)
    preamble = ds.preamble if ds.preamble is not None and len(ds.preamble) == 128 else bytes(128)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".dicomnet-", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(preamble)
            f.write(b"DICM")
            f.write(meta)
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
