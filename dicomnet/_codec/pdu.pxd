# Interface of dicomnet._codec.pdu for other Cython modules (cimport).

cdef class _Chunk:
    # One malloc'd block of receive memory. Its memory is never realloc'd or
    # freed while the object lives; ``read_exports`` counts buffer exports made
    # for PDU bodies (memoryviews handed out by PDUReader.next_pdu).
    cdef unsigned char* data
    cdef Py_ssize_t size
    cdef Py_ssize_t read_exports
    cdef Py_ssize_t shape[1]
    cdef Py_ssize_t strides[1]


cdef class _WriteWindow:
    # A writable, uncounted export of a _Chunk (the view get_buffer returns).
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
    cdef object _window_view      # writable memoryview over all of _chunk (uncounted export)

    cdef int _check_header(self) except -1
    cdef int _make_room(self, Py_ssize_t want) except -1
