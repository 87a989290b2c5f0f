# cython: freethreading_compatible = False
"""Decoding text values (PS3.5 6.2) straight from their bytes, for the bulk decoder.

:func:`decode_text` turns the bytes of one explicit-VR text element into the
same Python value that :func:`dicomnet.dicom.valuerep.decode_value_text` gives
for its decoded text (str or list of str, PersonName, int for IS, float for DS,
None for an empty IS/DS), for the character sets the core decodes itself:
ASCII, Latin-1 and UTF-8. Values in the plain forms that real data uses are
split, stripped and converted here in C (IS and DS without building a str
first); anything unusual goes through a slower path kept beside it that
applies the same rules on the decoded str. When neither can be sure of giving
the general decoder's answer (bytes that do not decode, IS/DS text that does
not parse, a non-finite DS), ``decode_text`` reports that it did not decode
and the caller leaves the value to the general decoder.

Only bytes in ``[p, p + n)`` are read; callers pass a range they have checked.
"""
from cpython.unicode cimport PyUnicode_DecodeASCII, PyUnicode_DecodeLatin1, PyUnicode_DecodeUTF8
from cpython.object cimport PyObject
from libc.math cimport isfinite
from libc.stdint cimport uint16_t, int64_t
from libc.string cimport memchr, memcpy


cdef extern from "Python.h":
    double PyOS_string_to_double(const char* s, char** endptr, PyObject* overflow_exception) except? -1.0


cdef int _TEXT_KIND[65536]
_TEXT_KIND[:] = [0] * 65536
for _name, _kind in {
    "AE": K_TEXT | K_STRIP, "AS": K_TEXT, "CS": K_TEXT, "DA": K_TEXT, "DT": K_TEXT, "TM": K_TEXT,
    "UI": K_TEXT, "IS": K_TEXT | K_IS, "DS": K_TEXT | K_DS,
    "SH": K_TEXT | K_CHARSET | K_RSTRIP, "LO": K_TEXT | K_CHARSET | K_RSTRIP,
    "UC": K_TEXT | K_CHARSET | K_RSTRIP, "PN": K_TEXT | K_CHARSET | K_PN,
    "LT": K_TEXT | K_CHARSET | K_SINGLE, "ST": K_TEXT | K_CHARSET | K_SINGLE,
    "UT": K_TEXT | K_CHARSET | K_SINGLE,
}.items():
    _TEXT_KIND[(ord(_name[0]) << 8) | ord(_name[1])] = _kind

# Sentinels: the value is not one the core decodes (SKIP), or the C fast path
# cannot tell and the str path decides (SLOW).
cdef object SKIP = object()
cdef object SLOW = object()

# Longest IS/DS value text read in C (PS3.5 6.2 allows 16 bytes); longer ones take the str path.
cdef enum:
    _DS_MAX = 64


cdef int text_kind(uint16_t vr) noexcept:
    return _TEXT_KIND[vr]


cdef inline object _decode(const char* p, Py_ssize_t n, int codec):
    """Bytes -> str in ``codec`` (0 ASCII, 1 Latin-1, 2 UTF-8); raises UnicodeDecodeError."""
    if n == 0:
        return ""
    if codec == 0:
        return PyUnicode_DecodeASCII(p, n, NULL)
    if codec == 1:
        return PyUnicode_DecodeLatin1(p, n, NULL)
    return PyUnicode_DecodeUTF8(p, n, NULL)


cdef inline bint _digit(char c) noexcept:
    return 48 <= c <= 57


cdef object _number(const char* p, Py_ssize_t n, int kind):
    """One IS or DS value in its plain form, None when blank, else SLOW (or SKIP: not finite).

    Plain forms, between optional spaces: IS ``[+-]digits`` (at most 18 digits);
    DS ``[+-](digits[.digits]|.digits)[(e|E)[+-]digits]``. The DS number is read
    by PyOS_string_to_double, the function ``float()`` uses, so the value is the same.
    """
    cdef Py_ssize_t i = 0, start
    cdef int64_t v = 0
    cdef bint neg = False, mantissa = False
    cdef char text[_DS_MAX + 1]
    cdef char* end
    cdef double d
    while n > 0 and p[0] == 32:
        p += 1
        n -= 1
    while n > 0 and p[n - 1] == 32:
        n -= 1
    if n == 0:
        return None
    if p[0] == 43 or p[0] == 45:   # '+' '-'
        neg = p[0] == 45
        i = 1
    if kind & K_IS:
        if i == n or n - i > 18:
            return SLOW
        while i < n:
            if not _digit(p[i]):
                return SLOW
            v = v * 10 + (p[i] - 48)
            i += 1
        return -v if neg else v
    if n > _DS_MAX:
        return SLOW
    start = i
    while i < n and _digit(p[i]):
        i += 1
    mantissa = i > start
    if i < n and p[i] == 46:       # '.'
        i += 1
        start = i
        while i < n and _digit(p[i]):
            i += 1
        mantissa = mantissa or i > start
    if not mantissa:
        return SLOW
    if i < n and (p[i] == 101 or p[i] == 69):   # 'e' 'E'
        i += 1
        if i < n and (p[i] == 43 or p[i] == 45):
            i += 1
        start = i
        while i < n and _digit(p[i]):
            i += 1
        if i == start:
            return SLOW
    if i != n:
        return SLOW
    memcpy(text, p, n)
    text[n] = 0
    try:
        d = PyOS_string_to_double(text, &end, NULL)
    except ValueError:
        return SLOW
    if end != text + n:
        return SLOW
    if not isfinite(d):
        return SKIP
    return d


cdef object _numbers(const char* p, Py_ssize_t n, int kind):
    """An IS/DS value (several when backslash-separated) by :func:`_number`; SLOW/SKIP as there."""
    cdef const char* cut
    cdef list out
    cdef object value
    if n == 0:
        return None
    cut = <const char*>memchr(p, 92, n)   # '\\'
    if cut == NULL:
        return _number(p, n, kind)
    out = []
    while True:
        value = _number(p, cut - p, kind)
        if value is SLOW or value is SKIP:
            return value
        out.append(value)
        n -= cut - p + 1
        p = cut + 1
        cut = <const char*>memchr(p, 92, n)
        if cut == NULL:
            value = _number(p, n, kind)
            if value is SLOW or value is SKIP:
                return value
            out.append(value)
            return out


cdef object _strings(const char* p, Py_ssize_t n, int kind, int codec):
    """A text value other than IS/DS/PN: str, or a list of str when backslash-separated."""
    cdef const char* cut
    cdef const char* q
    cdef Py_ssize_t m
    cdef list out
    if kind & K_SINGLE:
        return _decode(p, n, codec)
    cut = <const char*>memchr(p, 92, n) if n else NULL
    if cut == NULL:
        if kind & K_STRIP:
            while n > 0 and (p[0] == 32 or p[0] == 0):
                p += 1
                n -= 1
        return _decode(p, n, codec)
    out = []
    while True:
        q, m = p, (cut - p if cut != NULL else n)
        if kind & (K_RSTRIP | K_STRIP):
            while m > 0 and (q[m - 1] == 32 or q[m - 1] == 0):
                m -= 1
        if kind & K_STRIP:
            while m > 0 and (q[0] == 32 or q[0] == 0):
                q += 1
                m -= 1
        out.append(_decode(q, m, codec))
        if cut == NULL:
            return out
        n -= cut - p + 1
        p = cut + 1
        cut = <const char*>memchr(p, 92, n) if n else NULL


cdef bint _is_int_text(str s):
    cdef Py_ssize_t i, n = len(s)
    cdef Py_UCS4 c
    cdef bint digits = False
    for i in range(n):
        c = s[i]
        if 48 <= c <= 57:
            digits = True
        elif not ((c == 43 or c == 45) and not digits) and c != 32:
            return False
    return digits


cdef bint _is_float_text(str s):
    cdef Py_UCS4 c
    cdef bint digits = False
    for c in s:
        if 48 <= c <= 57:
            digits = True
        elif c not in "+-.eE ":
            return False
    return digits


cdef object _convert_one(str text, int kind, object person_name):
    """One value of a decoded text (the str path); SKIP when it does not convert."""
    cdef object value
    if kind & K_IS:
        if not text.strip(" \x00"):
            return None
        if not _is_int_text(text.strip(" \x00")):
            return SKIP
        try:
            return int(text)
        except ValueError:
            return SKIP
    if kind & K_DS:
        if not text.strip(" \x00"):
            return None
        if not _is_float_text(text.strip(" \x00")):
            return SKIP
        try:
            value = float(text)
        except ValueError:
            return SKIP
        return value if isfinite(value) else SKIP
    if kind & K_PN:
        return person_name(text.rstrip("\x00 ").rstrip("="))
    if kind & K_RSTRIP:
        return text.rstrip("\x00 ")
    if kind & K_STRIP:
        return text.strip("\x00 ")
    return text


cdef object _by_str(const char* p, Py_ssize_t n, int kind, int codec, object person_name):
    """The str path: decode the whole value, then split and convert each part."""
    cdef str text = _decode(p, n, codec)
    if kind & K_SINGLE:
        return text
    if not text:
        if kind & (K_IS | K_DS):
            return None
        if kind & K_PN:
            return person_name("")
        return ""
    if "\\" not in text:
        return _convert_one(text, kind, person_name)
    out = []
    for part in text.split("\\"):
        value = _convert_one(part, kind, person_name)
        if value is SKIP:
            return SKIP
        out.append(value)
    return out


cdef object decode_text(const char* p, Py_ssize_t n, uint16_t vr, int codec, object person_name,
                        bint* decoded):
    """The value of the text element whose bytes are ``[p, p + n)`` (see the module docstring).

    ``codec``: 0 ASCII, 1 Latin-1, 2 UTF-8, -1 none (VRs that Specific Character
    Set affects are then not decoded). Sets ``decoded[0]`` to whether the
    returned value is the element's value.
    """
    cdef int kind = _TEXT_KIND[vr]
    cdef object value
    decoded[0] = False
    if kind == 0:
        return None
    if kind & K_CHARSET:
        if codec < 0:
            return None
    else:
        codec = 0
    while n > 0 and (p[n - 1] == 32 or p[n - 1] == 0):
        n -= 1
    try:
        if kind & (K_IS | K_DS):
            value = _numbers(p, n, kind)
            if value is SLOW:
                value = _by_str(p, n, kind, codec, person_name)
        elif kind & K_PN:
            value = _by_str(p, n, kind, codec, person_name)
        else:
            value = _strings(p, n, kind, codec)
    except UnicodeDecodeError:
        return None
    if value is SKIP:
        return None
    decoded[0] = True
    return value
