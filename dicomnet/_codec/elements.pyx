# cython: freethreading_compatible = False
"""Element-level parsing of a DICOM data set (PS3.5 section 7) into a flat index.

Theory of operation
-------------------
``ElementIndex(source, start, end, implicit, little, ...)`` walks the bytes once
and records, for every data element, sequence item and encapsulated fragment,
its tag, VR (explicit syntaxes only), header offset, value offset and value
length. Nothing is decoded and no value is copied: the index holds a typed view
of ``source`` (bytes, bytearray, mmap or any buffer) and keeps ``source`` alive.

Every length read from the data is checked against the bytes that are really
there before it is used, so hostile input raises ``DicomParseError`` (with the
byte offset and tag) instead of reading out of bounds or allocating what a
length field merely claims. The index itself grows geometrically and can never
hold more entries than there are 8-byte headers in the input.
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyObject_GetBuffer, PyBuffer_Release
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from cpython.unicode cimport PyUnicode_DecodeASCII, PyUnicode_DecodeLatin1, PyUnicode_DecodeUTF8
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int16_t, int32_t, int64_t
from libc.string cimport memcpy

from dicomnet._codec.textvalue cimport decode_text, text_kind as _TEXT_KIND

import numpy

from dicomnet.errors import DicomParseError

cdef uint32_t UNDEFINED = 0xFFFFFFFF
cdef uint32_t ITEM = 0xFFFEE000
cdef uint32_t ITEM_DELIM = 0xFFFEE00D
cdef uint32_t SEQ_DELIM = 0xFFFEE0DD
cdef uint32_t PIXEL_DATA = 0x7FE00010

# VR codes: first letter in the high byte.
cdef inline uint16_t _vr(char a, char b) noexcept:
    return (<uint16_t>a << 8) | <uint8_t>b

cdef uint16_t VR_SQ = _vr(b'S', b'Q')
cdef uint16_t VR_UN = _vr(b'U', b'N')
cdef uint16_t VR_OB = _vr(b'O', b'B')
cdef uint16_t VR_OW = _vr(b'O', b'W')

# VRs whose explicit header is VR + 2 reserved bytes + 4-byte length (PS3.5 7.1.2).
LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"})

# Fixed-size binary VRs: the value length must be a multiple of this.
_ITEM_SIZE = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "AT": 4, "SV": 8, "UV": 8,
              "OW": 2, "OF": 4, "OD": 8, "OL": 4, "OV": 8}

# Per-VR-code lookup tables (indexed by the 16-bit code) so the parse loop
# never boxes a VR into a Python object: bit 7 = long header, bits 0-3 = item size.
cdef uint8_t _VR_TABLE[65536]
_VR_TABLE[:] = [0] * 65536
for _name in LONG_VRS:
    _VR_TABLE[_vr(_name.encode()[0], _name.encode()[1])] |= 0x80
for _name, _size in _ITEM_SIZE.items():
    _VR_TABLE[_vr(_name.encode()[0], _name.encode()[1])] |= _size

_NUMPY_CODE = {"US": "u2", "SS": "i2", "UL": "u4", "SL": "i4", "FL": "f4", "FD": "f8",
               "SV": "i8", "UV": "u8", "OB": "u1", "OW": "u2", "OF": "f4", "OD": "f8",
               "OL": "u4", "OV": "u8", "AT": "u2"}
_DTYPES_LE = {vr: numpy.dtype("<" + code) for vr, code in _NUMPY_CODE.items()}
_DTYPES_BE = {vr: numpy.dtype(">" + code) for vr, code in _NUMPY_CODE.items()}

# Interned two-letter VR strings, by code.
cdef dict _VR_STR = {}


cdef inline str vr_str(uint16_t code):
    if code == 0:
        return None
    s = _VR_STR.get(code)
    if s is None:
        s = chr(code >> 8) + chr(code & 0xFF)
        _VR_STR[code] = s
    return s


cdef inline uint16_t rd16(const unsigned char* p, bint little) noexcept nogil:
    if little:
        return <uint16_t>p[0] | (<uint16_t>p[1] << 8)
    return <uint16_t>p[1] | (<uint16_t>p[0] << 8)


cdef inline uint32_t rd32(const unsigned char* p, bint little) noexcept nogil:
    if little:
        return (<uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16)
                | (<uint32_t>p[3] << 24))
    return (<uint32_t>p[3] | (<uint32_t>p[2] << 8) | (<uint32_t>p[1] << 16)
            | (<uint32_t>p[0] << 24))


cdef inline uint64_t rd64(const unsigned char* p, bint little) noexcept nogil:
    cdef uint64_t lo, hi
    if little:
        lo = rd32(p, 1)
        hi = rd32(p + 4, 1)
    else:
        hi = rd32(p, 0)
        lo = rd32(p + 4, 0)
    return lo | (hi << 32)


cdef inline bint _is_vr_letter(unsigned char c) noexcept:
    return 65 <= c <= 90   # 'A'..'Z'


cdef uint16_t _AT = _vr(b'A', b'T')
cdef uint16_t _US = _vr(b'U', b'S'), _SS = _vr(b'S', b'S'), _UL = _vr(b'U', b'L'), _SL = _vr(b'S', b'L')
cdef uint16_t _FL = _vr(b'F', b'L'), _FD = _vr(b'F', b'D'), _SV = _vr(b'S', b'V'), _UV = _vr(b'U', b'V')
# What ElementIndex.simple_value answers for a value it leaves to the general decoder.
SKIP = object()


def _error(msg, offset, tag):
    return DicomParseError(msg, offset=offset, tag=tag)


cdef class ElementIndex:
    """The flat element index of one data set (see the module docstring).

    ``source`` is any object with the buffer protocol; ``start``/``end`` delimit
    the data set within it. ``sq_tags`` is a container of tags the dictionary
    says are sequences (needed for Implicit VR, where the VR is not on the wire).
    Parsing stops before the first top-level tag >= ``stop_tag``. With ``items``
    the range holds sequence items rather than data elements; with ``only_group``
    parsing stops at the first top-level element of another group (File Meta).
    """

    def __cinit__(self):
        self.entries = NULL
        self.n = 0
        self.capacity = 0

    def __init__(self, source, Py_ssize_t start=0, end=None, *, bint implicit=False,
                 bint little=True, int max_depth=64, stop_tag=None, sq_tags=frozenset(),
                 bint items=False, int only_group=-1):
        self.source = source
        self.buf = memoryview(source).cast("B")
        cdef Py_ssize_t size = self.buf.shape[0]
        cdef Py_ssize_t stop = size if end is None else end
        if start < 0 or stop > size or start > stop:
            raise ValueError(f"bad range [{start}, {end}) for a buffer of {size} bytes")
        self.implicit = implicit
        self.little = little
        self.start = start
        self.max_depth = max_depth
        self.stop_tag = UNDEFINED if stop_tag is None else <uint32_t>stop_tag
        self.only_group = only_group
        self.sq_tags = sq_tags
        self.stopped_early = False
        if items:
            # The range holds the items of a defined-length sequence (a UN value re-read as SQ).
            self.stop = self._parse_items(start, stop, False, 1, 0)
        else:
            self.stop = self._parse_level(start, stop, 0, False, True)

    def __dealloc__(self):
        if self.entries != NULL:
            PyMem_Free(self.entries)

    cdef int _append(self, uint32_t tag, uint16_t vr, uint16_t flags, Py_ssize_t header,
                     Py_ssize_t offset, Py_ssize_t length) except -1:
        cdef Entry* grown
        cdef int32_t cap
        if self.n == self.capacity:
            cap = 64 if self.capacity == 0 else self.capacity * 2
            grown = <Entry*>PyMem_Realloc(self.entries, cap * sizeof(Entry))
            if grown == NULL:
                raise MemoryError()
            self.entries = grown
            self.capacity = cap
        cdef Entry* e = &self.entries[self.n]
        e.tag = tag
        e.vr = vr
        e.flags = flags
        e.header = header
        e.offset = offset
        e.length = length
        e.end = self.n + 1
        self.n += 1
        return self.n - 1

    cdef Py_ssize_t _parse_level(self, Py_ssize_t pos, Py_ssize_t end, int depth,
                                 bint until_delimiter, bint top) except -1:
        """Parse data elements in [pos, end); return the position after them.

        With ``until_delimiter`` (an item of undefined length) the level ends at
        an Item Delimitation Item, which is consumed.
        """
        cdef const unsigned char* p = &self.buf[0] if self.buf.shape[0] else NULL
        cdef uint32_t tag, raw_len
        cdef uint16_t vr, flags
        cdef Py_ssize_t header, value, length
        cdef int32_t idx
        cdef bint implicit = self.implicit, little = self.little
        cdef Py_ssize_t size
        while pos < end:
            header = pos
            if end - pos < 8:
                raise _error(f"truncated element header ({end - pos} bytes left)", pos,
                             ((<uint32_t>rd16(p + pos, little) << 16) | rd16(p + pos + 2, little))
                             if end - pos >= 4 else None)
            tag = (<uint32_t>rd16(p + pos, little) << 16) | rd16(p + pos + 2, little)
            if tag == ITEM_DELIM:
                if until_delimiter:
                    return pos + 8
                raise _error("item delimiter outside an item of undefined length", pos, tag)
            if tag == ITEM or tag == SEQ_DELIM:
                raise _error("item or sequence delimiter where a data element was expected", pos, tag)
            if top and (tag >= self.stop_tag or (self.only_group >= 0 and (tag >> 16) != <uint32_t>self.only_group)):
                self.stopped_early = True
                return pos
            if implicit:
                vr = 0
                raw_len = rd32(p + pos + 4, little)
                value = pos + 8
            else:
                if not (_is_vr_letter(p[pos + 4]) and _is_vr_letter(p[pos + 5])):
                    raise _error(f"invalid VR bytes {bytes(self.buf[pos + 4:pos + 6])!r} in explicit VR data",
                                 pos + 4, tag)
                vr = (<uint16_t>p[pos + 4] << 8) | p[pos + 5]
                if _VR_TABLE[vr] & 0x80:
                    if end - pos < 12:
                        raise _error("truncated element header", pos, tag)
                    raw_len = rd32(p + pos + 8, little)
                    value = pos + 12
                else:
                    raw_len = rd16(p + pos + 6, little)
                    value = pos + 8
            if raw_len == UNDEFINED:
                if vr == VR_SQ or (implicit and tag != PIXEL_DATA):
                    idx = self._append(tag, vr, F_UNDEFINED | F_SEQUENCE, header, value, 0)
                    pos = self._parse_items(value, end, True, depth + 1, tag)
                elif vr == VR_UN:
                    # PS3.5 6.2.2: UN of undefined length holds an Implicit VR LE sequence.
                    idx = self._append(tag, vr, F_UNDEFINED | F_SEQUENCE | F_IMPLICIT_LE, header, value, 0)
                    self.implicit, self.little = True, True
                    try:
                        pos = self._parse_items(value, end, True, depth + 1, tag)
                    finally:
                        self.implicit, self.little = implicit, little
                elif tag == PIXEL_DATA and (vr == VR_OB or vr == VR_OW or vr == 0):
                    idx = self._append(tag, vr, F_UNDEFINED | F_ENCAPSULATED, header, value, 0)
                    pos = self._parse_fragments(value, end)
                else:
                    raise _error(f"undefined length not allowed for VR {vr_str(vr)}", header, tag)
                # The value runs up to (not including) the closing delimiter.
                self.entries[idx].length = pos - 8 - value
                self.entries[idx].end = self.n
                continue
            length = raw_len
            if length > end - value:
                raise _error(f"value length {length} runs past the end of the data ({end - value} bytes left)",
                             header, tag)
            if vr == VR_SQ or (implicit and tag in self.sq_tags):
                idx = self._append(tag, vr, F_SEQUENCE, header, value, length)
                self._parse_items(value, value + length, False, depth + 1, tag)
                self.entries[idx].end = self.n
            else:
                size = _VR_TABLE[vr] & 0x0F
                if size > 1 and length % size:
                    raise _error(f"value length {length} is not a multiple of {size} for VR {vr_str(vr)}",
                                 header, tag)
                self._append(tag, vr, 0, header, value, length)
            pos = value + length
        if until_delimiter:
            raise _error("item of undefined length has no Item Delimitation Item", pos, ITEM)
        return pos

    cdef Py_ssize_t _parse_items(self, Py_ssize_t pos, Py_ssize_t end, bint undefined,
                                 int depth, uint32_t seq_tag) except -1:
        """Parse the items of the sequence ``seq_tag`` (0: unknown); return the position after it."""
        cdef const unsigned char* p = &self.buf[0] if self.buf.shape[0] else NULL
        cdef uint32_t tag, raw_len
        cdef int32_t idx
        cdef Py_ssize_t value
        cdef bint little = self.little
        if depth > self.max_depth:
            raise _error(f"sequences nested deeper than {self.max_depth} levels", pos, seq_tag or None)
        while True:
            if not undefined and pos >= end:
                return pos
            if end - pos < 8:
                raise _error("truncated sequence: item header or Sequence Delimitation Item missing",
                             pos, seq_tag or None)
            tag = (<uint32_t>rd16(p + pos, little) << 16) | rd16(p + pos + 2, little)
            raw_len = rd32(p + pos + 4, little)
            if tag == SEQ_DELIM and undefined:
                return pos + 8
            if tag != ITEM:
                raise _error("expected an item (FFFE,E000) in a sequence", pos, tag)
            value = pos + 8
            if raw_len == UNDEFINED:
                idx = self._append(tag, 0, F_ITEM | F_UNDEFINED, pos, value, 0)
                pos = self._parse_level(value, end, depth, True, False)
                self.entries[idx].length = pos - 8 - value
            else:
                if raw_len > end - value:
                    raise _error(f"item length {raw_len} runs past the end of its sequence", pos, tag)
                idx = self._append(tag, 0, F_ITEM, pos, value, raw_len)
                pos = self._parse_level(value, value + raw_len, depth, False, False)
            self.entries[idx].end = self.n

    cdef Py_ssize_t _parse_fragments(self, Py_ssize_t pos, Py_ssize_t end) except -1:
        """Parse the fragment items of encapsulated Pixel Data (PS3.5 A.4)."""
        cdef const unsigned char* p = &self.buf[0] if self.buf.shape[0] else NULL
        cdef uint32_t tag, raw_len
        cdef bint little = self.little
        while True:
            if end - pos < 8:
                raise _error("truncated encapsulated Pixel Data: no Sequence Delimitation Item", pos, PIXEL_DATA)
            tag = (<uint32_t>rd16(p + pos, little) << 16) | rd16(p + pos + 2, little)
            raw_len = rd32(p + pos + 4, little)
            if tag == SEQ_DELIM:
                return pos + 8
            if tag != ITEM:
                raise _error("expected a fragment item in encapsulated Pixel Data", pos, tag)
            if raw_len == UNDEFINED or raw_len > end - pos - 8:
                raise _error(f"fragment length {raw_len} runs past the end of the data", pos, tag)
            self._append(tag, 0, F_FRAGMENT, pos, pos + 8, raw_len)
            pos += 8 + raw_len

    # ------------------------------------------------------------------ access

    def __len__(self):
        return self.n

    cdef int _check(self, Py_ssize_t i) except -1:
        if i < 0 or i >= self.n:
            raise IndexError(f"entry {i} out of range (index holds {self.n})")
        return 0

    def top_range(self):
        """(first, stop) of the top-level entries."""
        return 0, self.n

    def children(self, Py_ssize_t i):
        """(first, stop) of entry i's children (items of a sequence, elements of an item, fragments)."""
        self._check(i)
        return i + 1, self.entries[i].end

    def level(self, Py_ssize_t first, Py_ssize_t stop):
        """Map tag -> entry index for the siblings in [first, stop), hopping over subtrees."""
        cdef dict out = {}
        cdef Py_ssize_t i = first
        if first < 0 or stop > self.n:
            raise IndexError("level range out of the index")
        while i < stop:
            out[self.entries[i].tag] = i
            i = self.entries[i].end
        return out

    def siblings(self, Py_ssize_t first, Py_ssize_t stop):
        """Entry indices of the siblings in [first, stop), in order."""
        cdef list out = []
        cdef Py_ssize_t i = first
        if first < 0 or stop > self.n:
            raise IndexError("level range out of the index")
        while i < stop:
            out.append(i)
            i = self.entries[i].end
        return out

    def level_items(self, Py_ssize_t first, Py_ssize_t stop):
        """(tag, VR or None) of the siblings in [first, stop), in ascending tag order.

        A tag that occurs more than once (malformed data) is listed once, with the
        VR of its last occurrence: the entry :meth:`level` maps it to.
        """
        cdef list out = []
        cdef Py_ssize_t i = first
        cdef uint32_t last = 0
        cdef bint ordered = True
        if first < 0 or stop > self.n:
            raise IndexError("level range out of the index")
        while i < stop:
            if i != first and self.entries[i].tag <= last:
                ordered = False
            last = self.entries[i].tag
            out.append((self.entries[i].tag, vr_str(self.entries[i].vr)))
            i = self.entries[i].end
        if not ordered:
            out = sorted(dict(out).items())
        return out

    def entry(self, Py_ssize_t i):
        """(tag, vr or None, flags, header offset, value offset, value length, end)."""
        self._check(i)
        cdef Entry* e = &self.entries[i]
        return e.tag, vr_str(e.vr), e.flags, e.header, e.offset, e.length, e.end

    def tag(self, Py_ssize_t i):
        self._check(i)
        return self.entries[i].tag

    def vr(self, Py_ssize_t i):
        self._check(i)
        return vr_str(self.entries[i].vr)

    def flags(self, Py_ssize_t i):
        self._check(i)
        return self.entries[i].flags

    def span(self, Py_ssize_t i):
        """(header offset, offset just past the element including any delimiter)."""
        self._check(i)
        cdef Entry* e = &self.entries[i]
        cdef Py_ssize_t past = e.offset + e.length
        if e.flags & F_UNDEFINED:
            past += 8
        return e.header, past

    def raw(self, Py_ssize_t i):
        """The value bytes as a memoryview of the source (no copy)."""
        self._check(i)
        cdef Entry* e = &self.entries[i]
        return memoryview(self.source).cast("B")[e.offset:e.offset + e.length]

    def value_bytes(self, Py_ssize_t i):
        """The value bytes copied into ``bytes`` (for short text values)."""
        self._check(i)
        cdef Entry* e = &self.entries[i]
        return bytes(self.buf[e.offset:e.offset + e.length])

    def value_bytes_prefix(self, Py_ssize_t i, Py_ssize_t n):
        """The first ``n`` bytes of the value (fewer when the value is shorter)."""
        self._check(i)
        cdef Entry* e = &self.entries[i]
        return bytes(self.buf[e.offset:e.offset + min(n, e.length)])

    def text(self, Py_ssize_t i, int codec):
        """Decode a text value without trailing spaces/NULs: codec 0 ASCII, 1 Latin-1, 2 UTF-8.

        Returns None when the bytes do not decode with that codec, so the caller
        can take the general path (character set extensions, replacement).
        """
        self._check(i)
        cdef Entry* e = &self.entries[i]
        cdef Py_ssize_t n = e.length
        cdef const char* p
        if n == 0:
            return ""
        p = <const char*>&self.buf[e.offset]
        while n > 0 and (p[n - 1] == 32 or p[n - 1] == 0):
            n -= 1
        try:
            if codec == 0:
                return PyUnicode_DecodeASCII(p, n, NULL)
            if codec == 1:
                return PyUnicode_DecodeLatin1(p, n, NULL)
            return PyUnicode_DecodeUTF8(p, n, NULL)
        except UnicodeDecodeError:
            return None

    def items(self, Py_ssize_t i):
        """(first, stop, undefined length) of each item of the sequence at entry ``i``."""
        self._check(i)
        cdef list out = []
        cdef Py_ssize_t j = i + 1, stop = self.entries[i].end
        while j < stop:
            out.append((j + 1, self.entries[j].end, (self.entries[j].flags & F_UNDEFINED) != 0))
            j = self.entries[j].end
        return out

    cdef object simple_value(self, Entry* e, int codec, object person_name):
        """The value of one entry when the compiled core decodes it itself, else ``SKIP``.

        Decoded here: explicit-VR text elements in a character set the core
        decodes (``codec`` as in :meth:`text`; -1 leaves charset VRs alone) and
        single binary numbers. Anything else (sequences, bulk data, AT,
        implicit VR, text that needs the general decoder or does not parse)
        gives ``SKIP`` and is left to the per-element path, which gives the
        same values.
        """
        cdef uint16_t vr = e.vr
        cdef bint decoded
        if vr == 0 or e.flags != 0:
            return SKIP
        if _VR_TABLE[vr] & 0x0F:
            if vr == _AT or e.length != (_VR_TABLE[vr] & 0x0F) or (vr >> 8) == 79:  # 'O' bulk VRs
                return SKIP
            if e.offset < 0 or e.offset + e.length > self.buf.shape[0]:
                raise _error("value outside the buffer", e.offset, e.tag)
            return _scalar_code(&self.buf[e.offset], vr, self.little)
        if _TEXT_KIND(vr) == 0:
            return SKIP
        if e.offset < 0 or e.offset + e.length > self.buf.shape[0]:
            raise _error("value outside the buffer", e.offset, e.tag)
        value = decode_text(<const char*>&self.buf[e.offset] if e.length else NULL, e.length, vr,
                            codec, person_name, &decoded)
        return value if decoded else SKIP

    def numeric(self, Py_ssize_t i, str vr, bint as_array=False):
        """Decode a binary numeric value (US SS UL SL FL FD SV UV AT, or OB/OW/... as arrays).

        One value decodes to a Python int/float (AT: the tag as an int) unless
        ``as_array``; several (and the OB/OW/OF/OD/OL/OV VRs) to a read-only numpy
        array viewing the source. An empty value gives None (or an empty array).
        """
        self._check(i)
        cdef Entry* e = &self.entries[i]
        return decode_numeric(self.source, self.buf, e.offset, e.length, vr, self.little, as_array)


cdef object _scalar(const unsigned char* p, str vr, bint little):
    return _scalar_code(p, _vr(ord(vr[0]), ord(vr[1])) if len(vr) == 2 else 0, little)


cdef object _scalar_code(const unsigned char* p, uint16_t vr, bint little):
    """One binary number of VR code ``vr`` at ``p`` (its size checked by the caller)."""
    cdef uint32_t u32
    cdef uint64_t u64
    cdef float f
    cdef double d
    if vr == _US:
        return rd16(p, little)
    if vr == _SS:
        return <int16_t>rd16(p, little)
    if vr == _UL:
        return rd32(p, little)
    if vr == _SL:
        return <int32_t>rd32(p, little)
    if vr == _FL:
        u32 = rd32(p, little)
        memcpy(&f, &u32, 4)
        return f
    if vr == _FD:
        u64 = rd64(p, little)
        memcpy(&d, &u64, 8)
        return d
    if vr == _SV:
        return <int64_t>rd64(p, little)
    if vr == _UV:
        return rd64(p, little)
    if vr == _AT:
        return (<uint32_t>rd16(p, little) << 16) | rd16(p + 2, little)
    return None


cdef object decode_numeric(object source, const unsigned char[::1] buf, Py_ssize_t offset,
                           Py_ssize_t length, str vr, bint little, bint as_array):
    cdef Py_ssize_t size = _ITEM_SIZE.get(vr, 1)
    if length % size:
        raise _error(f"value length {length} is not a multiple of {size} for VR {vr}", offset, None)
    if offset < 0 or offset + length > buf.shape[0]:
        raise _error("value outside the buffer", offset, None)
    if vr not in _NUMPY_CODE:
        raise ValueError(f"VR {vr} is not a binary numeric VR")
    is_bulk = vr[0] == "O"
    if length == size and not as_array and not is_bulk:
        return _scalar(&buf[offset], vr, little)
    if length == 0 and not as_array and not is_bulk:
        return None
    dtype = (_DTYPES_LE if little else _DTYPES_BE)[vr]
    arr = numpy.frombuffer(source, dtype=dtype, count=length // dtype.itemsize, offset=offset)
    if vr == "AT":
        pairs = arr.reshape(-1, 2).astype(numpy.uint32)
        return [int(g) << 16 | int(el) for g, el in pairs]
    return arr


def decode_value(source, Py_ssize_t offset, Py_ssize_t length, str vr, bint little, bint as_array=False):
    """Decode a binary numeric value found at ``source[offset:offset+length]`` (see ElementIndex.numeric)."""
    return decode_numeric(source, memoryview(source).cast("B"), offset, length, vr, little, as_array)


# ------------------------------------------------------- Part 10 file heads
# What a C-STORE SCU needs of a file it sends as it is (dicomnet.dimse.scu):
# where the data set starts, its transfer syntax and its SOP Class/Instance
# UIDs. These answer the plain case in one pass over a few dozen bytes and
# return None for anything else -- the general path (ElementIndex + Dataset),
# which then gives the answer or the error, is never second-guessed.

cdef uint16_t VR_UI = _vr(b'U', b'I')
cdef object _NOT_PLAIN = object()


cdef object _plain_uid(const unsigned char* p, Py_ssize_t n):
    """A UI value without its padding (None when empty), or _NOT_PLAIN unless
    it is one value of printable ASCII (no backslash, no inner space or NUL)."""
    cdef Py_ssize_t a = 0, b = n, i
    while a < b and (p[a] == 0 or p[a] == 32):
        a += 1
    while b > a and (p[b - 1] == 0 or p[b - 1] == 32):
        b -= 1
    for i in range(a, b):
        if p[i] <= 32 or p[i] >= 127 or p[i] == 92:
            return _NOT_PLAIN
    if a == b:
        return None
    return PyUnicode_DecodeASCII(<const char*>p + a, b - a, NULL)


cdef object _scan_head(const unsigned char* p, Py_ssize_t n, Py_ssize_t pos, bint implicit, bint little,
                       uint32_t group, uint32_t stop, object sq_tags, uint32_t tag_a, uint32_t tag_b,
                       uint32_t tag_c):
    """Walk the top-level elements from ``pos`` while their group is ``group``
    (any group when ``group`` is 0xFFFFFFFF) and their tag is below ``stop``:
    (where the walk ended, values of tag_a, tag_b, tag_c). None for anything
    but plain elements: a sequence or undefined length, a tag out of order,
    a length that runs past the data or does not suit its VR, a wanted value
    that is not a plain UI, an element cut short."""
    cdef uint32_t tag, last = 0, raw
    cdef uint16_t vr
    cdef Py_ssize_t value, size
    cdef bint first = True
    cdef object a = None, b = None, c = None, text
    while pos < n:
        if n - pos < 8:
            return None
        tag = (<uint32_t>rd16(p + pos, little) << 16) | rd16(p + pos + 2, little)
        if (tag >> 16) == 0xFFFE:       # an item or delimiter where an element belongs
            return None
        if tag >= stop or (group != UNDEFINED and (tag >> 16) != group):
            break
        if not first and tag <= last:
            return None
        if implicit:
            vr = VR_UI if (tag == tag_a or tag == tag_b or tag == tag_c) else 0
            raw = rd32(p + pos + 4, little)
            value = pos + 8
            if raw != UNDEFINED and tag in sq_tags:
                return None
        else:
            if not (_is_vr_letter(p[pos + 4]) and _is_vr_letter(p[pos + 5])):
                return None
            vr = (<uint16_t>p[pos + 4] << 8) | p[pos + 5]
            if _VR_TABLE[vr] & 0x80:
                if n - pos < 12:
                    return None
                raw = rd32(p + pos + 8, little)
                value = pos + 12
            else:
                raw = rd16(p + pos + 6, little)
                value = pos + 8
        if raw == UNDEFINED or vr == VR_SQ or <Py_ssize_t>raw > n - value:
            return None
        size = _VR_TABLE[vr] & 0x0F
        if size > 1 and raw % size:
            return None
        if tag == tag_a or tag == tag_b or tag == tag_c:
            if vr != VR_UI:
                return None
            text = _plain_uid(p + value, raw)
            if text is _NOT_PLAIN:
                return None
            if tag == tag_a:
                a = text
            elif tag == tag_b:
                b = text
            else:
                c = text
        pos = value + raw
        last = tag
        first = False
    if first:
        return None
    return pos, a, b, c


def part10_meta(source):
    """``(offset of the data set, MediaStorageSOPClassUID,
    MediaStorageSOPInstanceUID, TransferSyntaxUID)`` read from the File Meta
    group of a Part 10 file's bytes (any buffer) -- each UID None when
    absent or empty -- or None unless the file is plain: the 128-byte preamble
    and ``DICM``, an Explicit VR Little Endian group 0002 of defined lengths
    in ascending order, those UIDs single values of printable ASCII, and a
    data set of at least 8 bytes after the group."""
    cdef Py_buffer view
    cdef const unsigned char* p
    PyObject_GetBuffer(source, &view, PyBUF_SIMPLE)
    try:
        p = <const unsigned char*>view.buf
        if view.len < 140 or p[128] != 68 or p[129] != 73 or p[130] != 67 or p[131] != 77:  # "DICM"
            return None
        found = _scan_head(p, view.len, 132, False, True, 0x0002, UNDEFINED, frozenset(),
                           0x00020002, 0x00020003, 0x00020010)
        if found is None or view.len - <Py_ssize_t>found[0] < 8:
            return None
        return found
    finally:
        PyBuffer_Release(&view)


def dataset_uids(source, Py_ssize_t offset, bint implicit, bint little, sq_tags=frozenset()):
    """``(SOPClassUID, SOPInstanceUID)`` -- each None when absent or empty --
    from the elements before (0008,0019) of the data set at ``offset`` in
    ``source``, which is in the VR encoding given; or None unless they are
    plain (see part10_meta; in Implicit VR a tag in ``sq_tags`` counts as a
    sequence) and the first element's bytes look like that encoding (an
    Explicit VR header has two capital letters where Implicit VR has its
    length)."""
    cdef Py_buffer view
    cdef const unsigned char* p
    cdef bint looks_explicit
    PyObject_GetBuffer(source, &view, PyBUF_SIMPLE)
    try:
        p = <const unsigned char*>view.buf
        if offset < 0 or view.len - offset < 8:
            return None
        looks_explicit = _is_vr_letter(p[offset + 4]) and _is_vr_letter(p[offset + 5])
        if looks_explicit == implicit:
            return None
        found = _scan_head(p, view.len, offset, implicit, little, UNDEFINED, 0x00080019, sq_tags,
                           0x00080016, 0x00080018, UNDEFINED)
        return None if found is None else (found[1], found[2])
    finally:
        PyBuffer_Release(&view)
