# cython: language_level=3
"""DIMSE command sets (group 0000, Implicit VR Little Endian; PS3.7 6.3.1, Annex E):
the compiled encoder and decoder behind :mod:`dicomnet.dimse.commands`.

Every DIMSE message starts with a command set, so a C-ECHO round trip is two
encodes and two decodes; done in Python they cost more than everything else
in the exchange. :class:`CommandCodec` does the common shapes in C:

* decode: elements of group 0000 with defined lengths in ascending tag order,
  CommandGroupLength first and right, a CommandField present; single-valued
  US/UL values, ASCII text values (UI, AE and the other text VRs);
* encode: a ``dict`` whose keys are all dictionary keywords, with ``int``
  values for single-valued US/UL and ASCII ``str`` values for UI and the
  other text VRs (not AE: its strip/pad rules stay in Python).

Anything else -- an unknown tag, a multi-valued or AT element, an empty or
non-ASCII value, an AE title, and every malformed input -- is handed to the
Python implementation given to the constructor, which decides (and raises)
exactly as without this module. So the fast path never decides anything the
slow path would decide differently; it only answers sooner when the answer is
plain. Bounds: every read is checked against the buffer length first.
"""
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from cpython.dict cimport PyDict_Next, PyDict_SetItem
from cpython.long cimport PyLong_Check, PyLong_AsLongLong
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_CheckExact, PyUnicode_DecodeASCII
from libc.string cimport memcpy

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL
    bint PyUnicode_IS_ASCII(object s)

# Value kinds (from the dictionary's VR of each group 0000 element).
cdef enum:
    K_OTHER = 0     # AT and anything else: always the Python path
    K_US = 1
    K_UL = 2
    K_UI = 3        # NUL-padded text, at most 64 characters
    K_AE = 4        # decoded here (at most 16 characters), encoded in Python
    K_TEXT = 5      # LO SH CS IS: space-padded text (LT and ST, whose leading spaces
                    # count, only in retired elements: the Python path)
    MAX_ELEMENTS = 64   # a command set has far fewer; more goes the Python way

cdef dict _KINDS = {"US": K_US, "UL": K_UL, "UI": K_UI, "AE": K_AE,
                    "LO": K_TEXT, "SH": K_TEXT, "CS": K_TEXT, "IS": K_TEXT}


cdef struct _Out:
    unsigned int element      # the element number; the group is 0000
    int kind
    unsigned long long number # US / UL value
    const char* text          # UI / text value (borrowed from a str in the command)
    Py_ssize_t size           # text length before padding


cdef inline unsigned int _le16(const unsigned char* p) noexcept nogil:
    return p[0] | (<unsigned int>p[1] << 8)


cdef inline unsigned int _le32(const unsigned char* p) noexcept nogil:
    return p[0] | (<unsigned int>p[1] << 8) | (<unsigned int>p[2] << 16) | (<unsigned int>p[3] << 24)


cdef inline void _put16(unsigned char* p, unsigned int v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF


cdef inline void _put32(unsigned char* p, unsigned long long v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = (v >> 16) & 0xFF
    p[3] = (v >> 24) & 0xFF


cdef class CommandCodec:
    """Encode/decode command sets, falling back to Python for the unusual ones.

    ``command_type`` builds the mapping ``decode`` returns (a ``dict``
    subclass); ``spec`` maps each group 0000 keyword to ``(tag, VR)``;
    ``slow_decode(data)`` / ``slow_encode(command)`` are the reference
    implementations used for everything the fast path does not take.
    """

    cdef object command_type
    cdef dict by_element      # element number -> (keyword, kind)
    cdef dict by_keyword      # keyword -> (element number, kind)
    cdef object slow_decode
    cdef object slow_encode
    cdef object command_field_key

    def __init__(self, command_type, spec, slow_decode, slow_encode):
        self.command_type = command_type
        self.by_element = {}
        self.by_keyword = {}
        for keyword, (tag, vr) in spec.items():
            if not 0 <= tag <= 0xFFFF:
                raise ValueError(f"{keyword}: tag {tag:08X} is not in group 0000")
            kind = _KINDS.get(vr, K_OTHER)
            self.by_element[tag] = (keyword, kind)
            self.by_keyword[keyword] = (tag, kind)
        self.slow_decode = slow_decode
        self.slow_encode = slow_encode
        self.command_field_key = "CommandField"

    # ------------------------------------------------------------ decoding
    def decode(self, data):
        """The command set in ``data`` (any bytes-like object) as a mapping."""
        cdef Py_buffer view
        if PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0:  # pragma: no cover - raises instead
            return self.slow_decode(data)
        try:
            result = self._decode(<const unsigned char*>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)
        if result is None:
            return self.slow_decode(data)
        return result

    cdef object _decode(self, const unsigned char* p, Py_ssize_t n):
        """The decoded command, or None to let the Python decoder decide."""
        cdef Py_ssize_t pos = 0, start, stop, value
        cdef unsigned int element, length
        cdef long previous = -1
        cdef long long group_length = -1
        cdef bint has_field = False
        cdef int kind
        cdef object entry
        command = self.command_type()
        while pos < n:
            if n - pos < 8:
                return None
            if _le16(p + pos) != 0:
                return None                      # outside group 0000 (or a delimiter)
            element = _le16(p + pos + 2)
            length = _le32(p + pos + 4)
            value = pos + 8
            if length > <unsigned long long>(n - value):
                return None                      # runs past the end, or undefined length
            if <long>element <= previous:
                return None
            previous = element
            entry = self.by_element.get(element)
            if entry is None:
                return None
            kind = entry[1]
            if element == 0:
                if pos != 0 or length != 4:
                    return None
                group_length = _le32(p + value)
            elif kind == K_US:
                if length != 2:
                    return None
                PyDict_SetItem(command, entry[0], _le16(p + value))
                if element == 0x0100:
                    has_field = True
            elif kind == K_UL:
                if length != 4:
                    return None
                PyDict_SetItem(command, entry[0], _le32(p + value))
            elif kind == K_UI or kind == K_AE or kind == K_TEXT:
                # PS3.5 6.2: leading/trailing NULs and spaces are padding.
                start = value
                stop = value + length
                while start < stop:
                    if p[start] >= 0x80:
                        return None              # not ASCII: the Python decoder says what
                    start += 1
                start = value
                while start < stop and (p[start] == 0 or p[start] == 32):
                    start += 1
                while stop > start and (p[stop - 1] == 0 or p[stop - 1] == 32):
                    stop -= 1
                if (kind == K_UI and stop - start > 64) or (kind == K_AE and stop - start > 16):
                    return None
                PyDict_SetItem(command, entry[0],
                               PyUnicode_DecodeASCII(<char*>(p + start), stop - start, NULL))
            else:
                return None
            pos = value + length
        if group_length < 0 or group_length != n - 12 or not has_field:
            return None
        return command

    # ------------------------------------------------------------ encoding
    def encode(self, command):
        """``command`` (a mapping of keyword -> value) as Implicit VR LE bytes,
        CommandGroupLength first and the elements in ascending tag order."""
        cdef _Out out[MAX_ELEMENTS]
        cdef Py_ssize_t count
        if type(command) is not self.command_type and type(command) is not dict:
            return self.slow_encode(command)            # another Mapping: its own items()
        count = self._collect(command, out)
        if count < 0:
            return self.slow_encode(command)
        return self._write(out, count)

    cdef Py_ssize_t _collect(self, object command, _Out* out) except -2:
        """Fill ``out`` sorted by element; -1 when the Python encoder must decide."""
        cdef Py_ssize_t pos = 0, count = 0, i, size
        cdef PyObject* key
        cdef PyObject* item
        cdef object entry, value
        cdef unsigned int element
        cdef int kind
        cdef long long number
        cdef _Out current
        while PyDict_Next(command, &pos, &key, &item):
            entry = self.by_keyword.get(<object>key)
            if entry is None:
                return -1                       # a raw hex key, or not a keyword (Python raises)
            element = entry[0]
            if element == 0:
                continue                        # CommandGroupLength: computed below
            if count == MAX_ELEMENTS:
                return -1
            kind = entry[1]
            value = <object>item
            current.element = element
            current.kind = kind
            current.number = 0
            current.text = NULL
            current.size = 0
            if kind == K_US or kind == K_UL:
                if not PyLong_Check(value):
                    return -1
                try:
                    number = PyLong_AsLongLong(value)
                except OverflowError:
                    return -1
                if number < 0 or number > (0xFFFF if kind == K_US else 0xFFFFFFFF):
                    return -1
                current.number = <unsigned long long>number
            elif kind == K_UI or kind == K_TEXT:
                if not PyUnicode_CheckExact(value) or not PyUnicode_IS_ASCII(value):
                    return -1
                current.text = PyUnicode_AsUTF8AndSize(value, &size)
                if kind == K_UI and size > 64:
                    return -1
                current.size = size
            else:
                return -1                       # AE, AT, anything else
            # Insertion sort: a handful of elements, usually already in order.
            i = count
            while i > 0 and out[i - 1].element > element:
                out[i] = out[i - 1]
                i -= 1
            out[i] = current
            count += 1
        return count

    cdef bytes _write(self, _Out* out, Py_ssize_t count):
        cdef Py_ssize_t i, total = 0, size
        cdef unsigned char* w
        for i in range(count):
            if out[i].kind == K_US:
                total += 10
            elif out[i].kind == K_UL:
                total += 12
            else:
                total += 8 + out[i].size + (out[i].size & 1)
        if total > 0xFFFFFFFF:  # pragma: no cover - MAX_ELEMENTS short texts cannot get there
            raise ValueError("command set too long")
        result = PyBytes_FromStringAndSize(NULL, 12 + total)
        w = <unsigned char*>PyBytes_AS_STRING(result)
        # (0000,0000) CommandGroupLength, UL, 4 bytes: the length of what follows.
        _put32(w, 0)
        _put32(w + 4, 4)
        _put32(w + 8, total)
        w += 12
        for i in range(count):
            _put16(w, 0)
            _put16(w + 2, out[i].element)
            if out[i].kind == K_US:
                _put32(w + 4, 2)
                _put16(w + 8, <unsigned int>out[i].number)
                w += 10
            elif out[i].kind == K_UL:
                _put32(w + 4, 4)
                _put32(w + 8, out[i].number)
                w += 12
            else:
                size = out[i].size
                _put32(w + 4, size + (size & 1))
                if size:
                    memcpy(w + 8, out[i].text, size)
                if size & 1:
                    # PS3.5 6.2: UI pads with NUL, the other text VRs with a space.
                    w[8 + size] = 0 if out[i].kind == K_UI else 32
                    size += 1
                w += 8 + size
        return result


cdef inline unsigned char* _put_ui(unsigned char* w, unsigned int element, const char* text,
                                   Py_ssize_t size) noexcept:
    # A UI element of group 0000: tag, length (padded to even), the text, a NUL pad.
    _put16(w, 0)
    _put16(w + 2, element)
    _put32(w + 4, size + (size & 1))
    if size:
        memcpy(w + 8, text, size)
    if size & 1:
        w[8 + size] = 0
        size += 1
    return w + 8 + size


cdef inline unsigned char* _put_us(unsigned char* w, unsigned int element, unsigned int value) noexcept:
    _put16(w, 0)
    _put16(w + 2, element)
    _put32(w + 4, 2)
    _put16(w + 8, value)
    return w + 10


cpdef object store_rsp_bytes(object message_id, object sop_class, object sop_instance, object status):
    """The encoded C-STORE-RSP without ErrorComment -- byte for byte what
    ``encode_command(c_store_rsp(message_id, sop_class, sop_instance,
    status))`` gives -- built directly (once per received instance, on both
    the general path and the C-STORE lane). None when the values need the
    general encoder (which then raises for what it cannot encode): a UID that
    is not an ASCII ``str`` of at most 64 characters, or an ID or status
    outside 0..0xFFFF."""
    cdef Py_ssize_t class_size, instance_size, total
    cdef const char* class_text
    cdef const char* instance_text
    cdef long long mid, code
    cdef unsigned char* w
    if not (PyUnicode_CheckExact(sop_class) and PyUnicode_IS_ASCII(sop_class)
            and PyUnicode_CheckExact(sop_instance) and PyUnicode_IS_ASCII(sop_instance)
            and PyLong_Check(message_id) and PyLong_Check(status)):
        return None
    try:
        mid = PyLong_AsLongLong(message_id)
        code = PyLong_AsLongLong(status)
    except OverflowError:
        return None
    if not (0 <= mid <= 0xFFFF and 0 <= code <= 0xFFFF):
        return None
    class_text = PyUnicode_AsUTF8AndSize(sop_class, &class_size)
    instance_text = PyUnicode_AsUTF8AndSize(sop_instance, &instance_size)
    if class_size > 64 or instance_size > 64:
        return None
    # CommandGroupLength covers: two UI elements and four US elements.
    total = (8 + class_size + (class_size & 1)) + 4 * 10 + (8 + instance_size + (instance_size & 1))
    result = PyBytes_FromStringAndSize(NULL, 12 + total)
    w = <unsigned char*>PyBytes_AS_STRING(result)
    _put32(w, 0)
    _put32(w + 4, 4)
    _put32(w + 8, total)
    w = _put_ui(w + 12, 0x0002, class_text, class_size)    # AffectedSOPClassUID
    w = _put_us(w, 0x0100, 0x8001)                          # CommandField: C-STORE-RSP
    w = _put_us(w, 0x0120, <unsigned int>mid)               # MessageIDBeingRespondedTo
    w = _put_us(w, 0x0800, 0x0101)                          # CommandDataSetType: none
    w = _put_us(w, 0x0900, <unsigned int>code)              # Status
    _put_ui(w, 0x1000, instance_text, instance_size)        # AffectedSOPInstanceUID
    return result
