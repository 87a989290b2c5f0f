# Interface of dicomnet._codec.pdu for other Cython modules (cimport).


# Big-endian 32-bit fields of PDU and PDV headers (PS3.8 9.3).
cdef inline Py_ssize_t _be32(const unsigned char* p) noexcept nogil:
    return (<Py_ssize_t>p[0] << 24) | (<Py_ssize_t>p[1] << 16) | (<Py_ssize_t>p[2] << 8) | <Py_ssize_t>p[3]


cdef inline void _put_be32(unsigned char* p, Py_ssize_t v) noexcept nogil:
    p[0] = (v >> 24) & 0xFF
    p[1] = (v >> 16) & 0xFF
    p[2] = (v >> 8) & 0xFF
    p[3] = v & 0xFF

cdef class _Chunk:
    # One malloc'd block of receive memory, freed with the object. It is
    # realloc'd (grow) only while nothing is exported: ``read_exports`` counts
    # exports for PDU bodies (PDUReader.next_pdu), ``write_exports`` those of
    # the windows handed out by PDUReader.get_buffer.
    cdef unsigned char* data
    cdef Py_ssize_t size
    cdef Py_ssize_t read_exports
    cdef Py_ssize_t write_exports
    cdef Py_ssize_t shape[1]
    cdef Py_ssize_t strides[1]

    cdef int grow(self, Py_ssize_t size) except -1


cdef class _WriteWindow:
    # A writable export of a _Chunk (the view get_buffer returns); counted.
    cdef _Chunk chunk
    cdef Py_ssize_t shape[1]
    cdef Py_ssize_t strides[1]


cdef class PDUReader:
    cdef _Chunk _chunk
    cdef Py_ssize_t _start        # first unconsumed byte in _chunk
    cdef Py_ssize_t _end          # one past the last received byte
    cdef Py_ssize_t _window_end   # end of the window last handed out by get_buffer
    cdef Py_ssize_t _max_pdu_length
    cdef Py_ssize_t _max_association_pdu
    # Direct placement of big data set PDVs (see PDUReader.router).
    cdef public object router
    cdef object _direct           # writable memoryview the payload goes to, or None
    cdef Py_ssize_t _direct_filled
    cdef Py_ssize_t _direct_size
    cdef int _direct_context
    cdef bint _direct_last
    cdef bint _after_direct       # the last PDU went direct: read ahead one header only
    cdef bint _declined           # the router declined the PDU being received
    cdef Py_ssize_t _skip         # bytes still to drop: the rest of a PDV whose placement was dropped

    cdef int _check_header(self) except -1
    cdef int _make_room(self, Py_ssize_t want) except -1
    cdef int _relocate(self) except -1
    cdef object _probe_direct(self)
