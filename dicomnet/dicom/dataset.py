"""The lazy :class:`Dataset`.

A Dataset read from bytes is a window on an :class:`~dicomnet._codec.elements.ElementIndex`:
``_raw`` maps each tag to its entry in the index (a compiled ``LevelMap``, or a
dict for malformed levels whose tags do not ascend), and a value is decoded the
first time it is asked for (then cached in ``_vals``). Nested sequences are
Datasets over ranges of the same index, so reading a file never copies its
values. Elements set by the user live in ``_vals`` and are marked dirty; an
untouched Dataset encodes back to exactly the bytes it was read from.
"""
from __future__ import annotations

import logging
from typing import Any, Iterator

from dicomnet._codec.dataelem import DataElement
from dicomnet._codec.dataelem import dataset_iter as _dataset_iter
from dicomnet._codec.dataelem import new_dataset as _new_dataset
from dicomnet._codec.dataelem import new_items as _new_items
from dicomnet._codec.elements import decode_value as _decode_numeric
from dicomnet.dicom import dictionary as _dict
from dicomnet.dicom import pixels as _pixels
from dicomnet.dicom._dictionary import ENTRIES as _ENTRIES
from dicomnet.dicom._dictionary import RANGES as _RANGES
from dicomnet.dicom import values as _values
from dicomnet.dicom.charset import parse_charsets
from dicomnet.dicom.valuerep import PersonName
from dicomnet.dicom.valuerep import decode_value_text as _decode_value_text
from dicomnet.errors import DicomParseError

__all__ = ["Dataset", "DataElement", "Sequence", "tag_of"]

log = logging.getLogger("dicomnet")

_SPECIFIC_CHARACTER_SET = 0x00080005
_PIXEL_DATA = 0x7FE00010
_F_SEQUENCE, _F_ITEM, _F_ENCAPSULATED, _F_IMPLICIT_LE = 2, 4, 8, 32
_DEFAULT_CHARSETS = ("ISO_IR 6",)

_CHARSET_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})
# Character sets whose text the compiled core decodes in one call (0 ASCII, 1 Latin-1, 2 UTF-8).
_FAST_CODECS: dict[tuple[str, ...], int] = {("ISO_IR 6",): 0, ("ISO_IR 100",): 1, ("ISO_IR 192",): 2}

#: Tags the dictionary knows as sequences: Implicit VR data needs them to find items.
def _sq_tags() -> frozenset[int]:
    """Every tag the dictionary makes a sequence, repeating groups included
    (e.g. (50xx,2600) Curve Referenced Overlay Sequence)."""
    tags = {tag for tag, entry in _ENTRIES.items() if entry[0].split("/")[0] == "SQ"}

    def fits(n: int, parity: str) -> bool:
        return parity == "any" or (n % 2 == 0) == (parity == "even")

    for glo, ghi, gpar, elo, ehi, epar, vrs, *_ in _RANGES:
        if vrs.split("/")[0] == "SQ":
            tags.update((g << 16) | e for g in range(glo, ghi + 1) if fits(g, gpar)
                        for e in range(elo, ehi + 1) if fits(e, epar))
    return frozenset(tags)


SQ_TAGS = _sq_tags()


# Specific Character Set values seen before, when parse_charsets took them as they are
# (a value it corrects or warns about is parsed, and warned about, every time).
_CHARSETS_SEEN: dict[str, tuple[str, ...]] = {}


def _parse_charsets_cached(value: str) -> tuple[str, ...]:
    charsets = _CHARSETS_SEEN.get(value)
    if charsets is None:
        charsets = parse_charsets(value)
        if charsets == tuple(value.split("\\")) and len(_CHARSETS_SEEN) < 64:
            _CHARSETS_SEEN[value] = charsets
    return charsets


def tag_of(key: int | str | tuple[int, int]) -> int:
    """Turn a keyword, an int or a (group, element) pair into a tag int."""
    if isinstance(key, int):
        return key
    if isinstance(key, str):
        tag = _dict.tag_for_keyword(key)
        if tag is None:
            raise KeyError(f"unknown DICOM keyword {key!r}")
        return tag
    if isinstance(key, tuple) and len(key) == 2:
        return (key[0] << 16) | key[1]
    raise TypeError(f"not a DICOM tag or keyword: {key!r}")


def _fmt(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _as_int(value: Any) -> int:
    """An attribute that steers decoding (Bits Allocated, Pixel Representation), read
    defensively: malformed data (raw bytes of a UN element, several values, text) gives 0."""
    if isinstance(value, int):
        return value
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return 0


class Sequence(list):
    """The value of an SQ element: a list of :class:`Dataset` items."""

    __slots__ = ()


class Dataset:
    """A DICOM data set: elements by tag, keyword attribute, or key.

    ``ds.PatientName``, ``ds[0x00100010]``, ``ds["PatientName"]`` and
    ``ds[(0x0010, 0x0010)]`` all work; ``ds[...]`` returns a :class:`DataElement`
    and attribute access returns the value. Iteration yields elements in tag order.
    """

    def __init__(self) -> None:
        d = self.__dict__
        d["_index"] = None      # ElementIndex or None
        d["_raw"] = {}          # tag -> entry index, for values still in the buffer
        d["_vals"] = {}         # tag -> decoded or assigned value
        d["_vrs"] = {}          # tag -> VR, for assigned elements
        d["_dirty"] = False     # anything assigned or deleted here
        d["_parent"] = None     # the Dataset holding the sequence this item is in
        d["_items"] = {}        # tag -> the Sequence first decoded from the index
        d["file_meta"] = None
        d["preamble"] = None
        d["filename"] = None
        d["transfer_syntax"] = None

    # ----------------------------------------------------------- construction

    @classmethod
    def _from_index(cls, index: Any, first: int, stop: int, parent: Dataset | None,
                    transfer_syntax: Any = None) -> Dataset:
        # Compiled: the attributes of __init__, over [first, stop) of the index, with
        # "_raw" a LevelMap of that level and "_range" = (first, stop).
        return _new_dataset(cls, index, first, stop, parent, transfer_syntax)

    # ------------------------------------------------------------ access

    def _vr(self, tag: int) -> str:
        vr = self._vrs.get(tag)
        if vr is not None:
            return vr
        idx = self._raw.get(tag)
        if idx is not None:
            vr = self._index.vr(idx)
            if vr is None or vr == "UN":
                vr = self._implicit_vr(tag, idx, vr)
            return vr
        raise KeyError(tag)

    def _implicit_vr(self, tag: int, idx: int, wire_vr: str | None) -> str:
        """The VR of an element whose VR is not on the wire (or is UN)."""
        flags = self._index.flags(idx)
        if wire_vr is None and flags & _F_SEQUENCE:
            return "SQ"
        entry = _dict.lookup(tag)
        if entry is None:
            if flags & _F_ENCAPSULATED:
                return "OB"
            if self._index.value_bytes_prefix(idx, 4) == b"\xfe\xff\x00\xe0" and self._parses_as_items(idx):
                # A private sequence sent as UN (or implicit): the value is Implicit VR LE items.
                return "SQ"
            return "UN"
        vrs = entry.vrs
        if len(vrs) == 1:
            vr = vrs[0]
        elif flags & _F_ENCAPSULATED:
            vr = "OB"
        elif tag == _PIXEL_DATA or tag == 0x54001010 or tag & 0xFF00FFFF == 0x60003000:
            # Pixel, Waveform and Overlay Data without a VR on the wire are OW
            # (PS3.5 A.1 and 8.1.2), whatever Bits Allocated says.
            vr = "OW"
        elif "OW" in vrs:
            vr = "OW" if self._bits_allocated() > 8 else "OB"
        elif "SS" in vrs:
            vr = "SS" if self._pixel_representation() == 1 else "US"
        else:
            vr = vrs[0]
        return vr

    def _parses_as_items(self, idx: int) -> bool:
        try:
            self._reparse_un_sequence(idx)
        except DicomParseError:
            return False
        return True

    def _bits_allocated(self) -> int:
        ds: Dataset | None = self
        while ds is not None:
            if 0x00280100 in ds:
                return _as_int(ds._value(0x00280100))
            ds = ds._parent
        return 16

    def _pixel_representation(self) -> int:
        ds: Dataset | None = self
        while ds is not None:
            if 0x00280103 in ds:
                return _as_int(ds._value(0x00280103))
            ds = ds._parent
        return 0

    def _charsets(self) -> tuple[str, ...]:
        """The character sets the elements read from the source bytes are in:
        this level's (0008,0005) as read, else the enclosing data set's as
        read (PS3.3 C.12.1.1.2), else the default repertoire. Assigning or
        deleting (0008,0005) afterwards does not change it (the bytes stay
        what they are); the writer encodes in the data set's *current*
        character set (:meth:`_current_charsets`), transcoding text between
        the two where they differ."""
        d = self.__dict__
        cached = d.get("_cs")
        if cached is not None:
            return cached
        ds: Dataset | None = self
        charsets: tuple[str, ...] = _DEFAULT_CHARSETS
        while ds is not None:
            dd = ds.__dict__
            if ds is not self and dd.get("_cs") is not None:
                charsets = dd["_cs"]                # resolved already: reuse it
                break
            if _SPECIFIC_CHARACTER_SET in dd["_raw"]:
                charsets = ds._parse_charset_value()
                break
            ds = dd["_parent"]      # the data set this item was read in
        d["_cs"] = charsets
        d["_codec"] = _FAST_CODECS.get(charsets, -1)
        return charsets

    def _parse_charset_value(self) -> tuple[str, ...]:
        value = self._charset_value()
        if isinstance(value, str):
            return _parse_charsets_cached(value)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return parse_charsets(value)
        if value is not None:
            # Malformed data gave (0008,0005) a binary or SQ VR: keep the default
            # (stringifying a sequence's items would look their charset up again).
            log.warning("Specific Character Set is not text; using the default repertoire")
        return _DEFAULT_CHARSETS    # None (an empty value): the default repertoire

    def _current_charsets(self) -> tuple[str, ...]:
        """The character sets this data set's text is to be written in: its
        (0008,0005) as it is now, else the enclosing data set's, else the
        default repertoire. (An item inside a sequence being written takes
        the character set of the data set being written instead: see
        :mod:`dicomnet.dicom.writer`.)"""
        ds: Dataset | None = self
        while ds is not None:
            if _SPECIFIC_CHARACTER_SET in ds:
                return ds._parse_charset_value()
            ds = ds.__dict__["_parent"]
        return _DEFAULT_CHARSETS

    def _pin_charsets(self, tag: int) -> None:
        """Before (0008,0005) read from the source is replaced or deleted:
        resolve the character set the source bytes are in, so they are still
        decoded (and transcoded on writing) from it."""
        if tag == _SPECIFIC_CHARACTER_SET and self._index is not None:
            self._charsets()

    def _charset_value(self) -> Any:
        """The value of (0008,0005); one CS value in ASCII (the usual) straight from the index."""
        d = self.__dict__
        vals = d["_vals"]
        if _SPECIFIC_CHARACTER_SET not in vals:
            idx = d["_raw"].get(_SPECIFIC_CHARACTER_SET)
            index = d["_index"]
            if idx is not None and index.vr(idx) == "CS":
                text = index.text(idx, 0)
                if text is not None and "\\" not in text:
                    vals[_SPECIFIC_CHARACTER_SET] = text
        return self._value(_SPECIFIC_CHARACTER_SET)

    def _text_codec(self) -> int:
        """The compiled fast-path codec for this dataset's character set (-1: none)."""
        codec = self.__dict__.get("_codec")
        if codec is None:
            self._charsets()
            codec = self.__dict__["_codec"]
        return codec

    def _value(self, tag: int) -> Any:
        vals = self._vals
        if tag in vals:
            return vals[tag]
        idx = self._raw.get(tag)
        if idx is None:
            raise KeyError(tag)
        value = self._decode(tag, idx)
        vals[tag] = value
        return value

    def _decode(self, tag: int, idx: int) -> Any:
        index = self._index
        vr = index.vr(idx)
        if vr is None or vr == "UN":
            vr = self._implicit_vr(tag, idx, vr)
        if vr == "SQ":
            return self._sequence(tag, idx)
        if vr in _values.TEXT_VRS:
            if vr not in _CHARSET_VRS or tag == _SPECIFIC_CHARACTER_SET:
                # (0008,0005) itself is ASCII, whatever VR malformed data gives it:
                # looking up its own character set would recurse forever.
                text = index.text(idx, 0) if vr != "UR" else None
            else:
                codec = self._text_codec()
                text = index.text(idx, codec) if codec >= 0 else None
            if text is not None:
                try:
                    return _decode_value_text(vr, text)
                except DicomParseError:
                    pass
            charsets = self._charsets() if tag != _SPECIFIC_CHARACTER_SET else ()
            raw = index.value_bytes(idx)
            try:
                return _values.decode_text_value(raw, vr, charsets)
            except DicomParseError as exc:
                # A malformed IS/DS (e.g. "1A") is kept as text rather than losing the element.
                log.warning("%s: %s; keeping the text", _fmt(tag), exc)
                return _values.decode_text_value(raw, "LO", charsets)
        if vr in _values.NUMERIC_VRS or vr in _values.BULK_VRS:
            if index.flags(idx) & _F_ENCAPSULATED:
                return index.raw(idx)
            if index.vr(idx) == "UN" and not index.little:
                # PS3.5 6.2.2 note 2: a UN value is little endian whatever the syntax
                raw = index.raw(idx)
                return _decode_numeric(raw, 0, len(raw), vr, True)
            return index.numeric(idx, vr)
        return index.value_bytes(idx)

    def _sequence(self, tag: int, idx: int) -> Sequence:
        """Decode the SQ element at entry ``idx``: one Dataset per item, over the same index."""
        index = self._index
        if index.flags(idx) & _F_SEQUENCE:
            seq = Sequence(_new_items(Dataset, index, idx, self, self.transfer_syntax))
        else:
            seq = self._reparse_un_sequence(idx)
        self._items[tag] = tuple(seq)
        return seq

    def _reparse_un_sequence(self, idx: int) -> Sequence:
        """A defined-length element whose dictionary VR is SQ but arrived as UN or implicit."""
        from dicomnet._codec.elements import ElementIndex

        index = self._index
        _, _, _, _, offset, length, _ = index.entry(idx)
        # Each re-parse is a new index: it may nest only as deep as the root's limit leaves.
        depth, root = 0, self
        while root._parent is not None:
            depth, root = depth + 1, root._parent
        max_depth = root._index.max_depth if root._index is not None else index.max_depth
        limit = max_depth - depth
        if limit < 1:
            raise DicomParseError(f"sequences nested deeper than {max_depth} levels",
                                  offset=offset, tag=index.tag(idx))
        sub = ElementIndex(index.source, offset, offset + length, implicit=True, little=True,
                           sq_tags=SQ_TAGS, items=True, max_depth=limit)
        return Sequence(Dataset._from_index(sub, a, b, self, self.transfer_syntax)
                        for a, b in (sub.children(i) for i in sub.siblings(0, len(sub))))

    def _raw_length(self, tag: int) -> int | None:
        idx = self._raw.get(tag)
        if idx is None or tag in self._vrs:
            return None
        return self._index.entry(idx)[5]

    def __getattr__(self, name: str) -> Any:
        if name[:1].isupper():
            tag = _dict.tag_for_keyword(name)
            if tag is not None:
                try:
                    return self._value(tag)
                except KeyError:
                    pass
        raise AttributeError(f"{type(self).__name__!s} has no attribute or element {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name[:1].isupper():
            tag = _dict.tag_for_keyword(name)
            if tag is not None:
                self.set(tag, value)
                return
        self.__dict__[name] = value

    def __delattr__(self, name: str) -> None:
        tag = _dict.tag_for_keyword(name) if name[:1].isupper() else None
        if tag is not None and tag in self:
            del self[tag]
        elif name in self.__dict__:
            del self.__dict__[name]
        else:
            raise AttributeError(name)

    def __getitem__(self, key: int | str | tuple[int, int]) -> DataElement:
        tag = tag_of(key)
        if tag not in self._vals and tag not in self._raw:
            raise KeyError(f"{_fmt(tag)} not in the dataset")
        return DataElement(tag, self._vr(tag), self)

    def __setitem__(self, key: int | str | tuple[int, int], value: Any) -> None:
        tag = tag_of(key)
        if isinstance(value, DataElement):
            self.set(tag, value.value, value.VR)
        else:
            self.set(tag, value)

    def __delitem__(self, key: int | str | tuple[int, int]) -> None:
        tag = tag_of(key)
        self._pin_charsets(tag)
        found = self._vals.pop(tag, _MISSING) is not _MISSING
        found = (self._raw.pop(tag, None) is not None) or found
        self._vrs.pop(tag, None)
        if not found:
            raise KeyError(f"{_fmt(tag)} not in the dataset")
        self.__dict__["_dirty"] = True

    def __contains__(self, key: object) -> bool:
        try:
            tag = tag_of(key)  # type: ignore[arg-type]
        except (KeyError, TypeError):
            return False
        return tag in self._raw or tag in self._vals

    def __len__(self) -> int:
        raw = self._raw
        return len(raw) + sum(1 for tag in self._vals if tag not in raw)

    def tags(self) -> list[int]:
        """The tags present, in ascending order."""
        raw = self._raw
        extra = [tag for tag in self._vals if tag not in raw]
        return sorted([*raw, *extra]) if extra else sorted(raw)

    def __iter__(self) -> Iterator[DataElement]:
        # Compiled (dataelem.dataset_iter): an untouched Dataset is walked straight off
        # the index, decoding its simple values in one pass the first time; else as below.
        return _dataset_iter(self, PersonName)

    def _sorted_elements(self) -> Iterator[DataElement]:
        """The elements in tag order, looked up one by one (a modified or Python-made Dataset)."""
        return (DataElement(tag, self._vr(tag), self) for tag in self.tags())

    def keys(self) -> list[int]:
        return self.tags()

    def values(self) -> list[DataElement]:
        return list(self)

    def items(self) -> list[tuple[int, DataElement]]:
        return [(e.tag, e) for e in self]

    def get(self, key: int | str | tuple[int, int], default: Any = None) -> Any:
        """The value for a keyword, or the DataElement for a tag, like pydicom; else ``default``."""
        try:
            tag = tag_of(key)
        except KeyError:
            return default
        if tag not in self:
            return default
        return self._value(tag) if isinstance(key, str) else self[tag]

    def set(self, key: int | str | tuple[int, int], value: Any, vr: str | None = None) -> None:
        """Set an element's value; the VR comes from the dictionary unless given."""
        tag = tag_of(key)
        if vr is None:
            vr = self._vrs.get(tag) or (self._vr(tag) if tag in self._raw else None)
            if vr is None:
                entry = _dict.lookup(tag)
                if entry is None:
                    raise KeyError(f"{_fmt(tag)} is not in the dictionary: give its VR")
                vr = entry.vrs[0]
        if vr == "SQ":
            value = Sequence(value or ())
            for item in value:
                if not isinstance(item, Dataset):
                    raise TypeError("sequence items must be Datasets")
                # An item read from bytes keeps the data set it was read in as
                # its parent: its bytes are in that one's character set (and
                # its implicit VRs follow that one's Bits Allocated). The
                # writer encodes it in the character set of wherever it is
                # written.
                if item.__dict__["_index"] is None:
                    item.__dict__["_parent"] = self
        self._pin_charsets(tag)
        self._raw.pop(tag, None)
        self._vals[tag] = value
        self._vrs[tag] = vr
        self.__dict__["_dirty"] = True

    def add_new(self, tag: int | str, vr: str, value: Any) -> None:
        """Add an element with an explicit VR (pydicom's spelling)."""
        self.set(tag, value, vr)

    def is_modified(self) -> bool:
        """True when anything here or in a decoded nested item differs from the source bytes."""
        if self._dirty or self._index is None:
            return True
        for tag, items in self._items.items():
            current = self._vals.get(tag)
            if current is None or len(current) != len(items):
                return True
            for a, b in zip(current, items):
                if a is not b or b.is_modified():
                    return True
        return False

    # ------------------------------------------------------------ helpers

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Dataset):
            return NotImplemented
        if self.tags() != other.tags():
            return False
        return all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "\n".join(self._lines(""))

    def _lines(self, indent: str) -> Iterator[str]:
        for elem in self:
            if elem.VR == "SQ":
                yield f"{indent}{_fmt(elem.tag)} SQ {elem.keyword or 'Unknown'}: {len(elem.value)} item(s)"
                for n, item in enumerate(elem.value, 1):
                    yield f"{indent}  item {n}:"
                    yield from item._lines(indent + "    ")
            else:
                yield indent + repr(elem)

    def __dir__(self) -> list[str]:
        names = set(super().__dir__())
        names.update(k for k in (_dict.keyword_of(t) for t in self.tags()) if k)
        return sorted(names)

    # Implemented in other modules, attached here to keep this file readable.
    def encode(self, transfer_syntax: Any = None) -> bytes | bytearray | memoryview:
        """Encode as a data set (no File Meta) in ``transfer_syntax`` (default: the source's)."""
        from dicomnet.dicom.writer import encode_dataset

        return encode_dataset(self, transfer_syntax)

    @property
    def pixel_array(self) -> Any:
        """Pixel Data as a numpy array shaped (frames, rows, columns[, samples]), viewing the source."""
        return _pixels.pixel_array(self)

    @property
    def pixel_values(self) -> Any:
        """The Pixel Sample Values: ``pixel_array`` with bits outside Bits Stored
        cleared or sign-extended (PS3.5 8.1.1); a view when no cell needs it, else a copy."""
        return _pixels.pixel_values(self)

    def frames(self) -> Iterator[Any]:
        """One item per frame: a numpy view (native data) or a memoryview of the compressed frame."""
        return _pixels.iter_frames(self)

    def to_pydicom(self) -> Any:
        """A ``pydicom.Dataset`` with the same elements (needs pydicom)."""
        from dicomnet.dicom.interop import to_pydicom

        return to_pydicom(self)

    @classmethod
    def from_pydicom(cls, pyds: Any) -> Dataset:
        """A Dataset from a ``pydicom.Dataset`` (needs pydicom)."""
        from dicomnet.dicom.interop import from_pydicom

        return from_pydicom(pyds)


_MISSING = object()

