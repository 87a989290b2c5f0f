# The element index: one flat C array describing every element, item and
# fragment of a dataset, in file order. Children (the items of a sequence, the
# elements of an item, the fragments of encapsulated Pixel Data) follow their
# parent directly; ``end`` is the index just past the parent's subtree, so a
# level is walked by hopping from ``i`` to ``entries[i].end``.
from libc.stdint cimport uint16_t, uint32_t, int32_t

cdef enum:
    F_UNDEFINED = 1        # the source encoded this with undefined length
    F_SEQUENCE = 2         # children are items (SQ, or implicit/UN undefined length)
    F_ITEM = 4             # an item (FFFE,E000) of a sequence; children are elements
    F_ENCAPSULATED = 8     # encapsulated Pixel Data; children are fragments
    F_FRAGMENT = 16        # one fragment item of encapsulated Pixel Data
    F_IMPLICIT_LE = 32     # children were parsed as Implicit VR LE (UN of undefined length)

cdef struct Entry:
    uint32_t tag
    uint16_t vr            # two ASCII letters, first letter in the high byte; 0 = implicit (ask the dictionary)
    uint16_t flags
    Py_ssize_t header      # offset of the element header in the buffer
    Py_ssize_t offset      # offset of the value
    Py_ssize_t length      # value length in bytes (for undefined length: up to the delimiter)
    int32_t end            # index just past this entry's subtree

cdef class ElementIndex:
    cdef Entry* entries
    cdef int32_t n
    cdef int32_t capacity
    cdef readonly object source          # the object owning the bytes (bytes, mmap, bytearray...)
    cdef const unsigned char[::1] buf
    cdef readonly bint implicit
    cdef readonly bint little
    cdef readonly Py_ssize_t start
    cdef readonly Py_ssize_t stop        # where top-level parsing ended
    cdef readonly bint stopped_early      # stop_tag was reached
    cdef readonly int max_depth          # sequence nesting allowed (re-parsed UN sequences inherit what is left)
    cdef uint32_t stop_tag
    cdef int only_group
    cdef object sq_tags

    cdef int _append(self, uint32_t tag, uint16_t vr, uint16_t flags, Py_ssize_t header,
                     Py_ssize_t offset, Py_ssize_t length) except -1
    cdef Py_ssize_t _parse_level(self, Py_ssize_t pos, Py_ssize_t end, int depth,
                                 bint until_delimiter, bint top) except -1
    cdef Py_ssize_t _parse_items(self, Py_ssize_t pos, Py_ssize_t end, bint undefined,
                                 int depth, uint32_t seq_tag) except -1
    cdef Py_ssize_t _parse_fragments(self, Py_ssize_t pos, Py_ssize_t end) except -1
    cdef int _check(self, Py_ssize_t i) except -1
    cdef object simple_value(self, Entry* e, int codec, object person_name)
