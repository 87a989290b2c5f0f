# Text values decoded straight from their bytes (see textvalue.pyx); cimported by elements.pyx.
from libc.stdint cimport uint16_t

# Text VR kinds, by 16-bit VR code (first letter in the high byte).
cdef enum:
    K_TEXT = 1          # a text VR the bulk decoder handles
    K_CHARSET = 2       # affected by Specific Character Set
    K_SINGLE = 4        # single-valued (no backslash split)
    K_IS = 8
    K_DS = 16
    K_PN = 32
    K_RSTRIP = 64       # each value loses trailing spaces/NULs
    K_STRIP = 128       # each value loses leading and trailing spaces/NULs

cdef int text_kind(uint16_t vr) noexcept
cdef object decode_text(const char* p, Py_ssize_t n, uint16_t vr, int codec, object person_name,
                        bint* decoded)
