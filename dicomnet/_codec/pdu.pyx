# cython: language_level=3
"""PDU framing for the DICOM Upper Layer (PS3.8 9.3): the compiled hot path.

* :class:`PDUReader` -- a sans-IO receive buffer with asyncio BufferedProtocol's
  shape (``get_buffer`` / ``buffer_updated``) that cuts the byte stream into
  ``(pdu_type, body)`` pairs, checking each 6-byte PDU header before the body
  is buffered.
* :func:`iter_pdvs` -- splits a P-DATA-TF body into its PDV items.
* :func:`pdata_pdvs` -- the same as PDV objects, contexts checked (receive hot path).
* :func:`pdata_pdu` -- one small message as one complete P-DATA-TF ``bytes``.
* :func:`fragment` -- turns one message into P-DATA-TF PDUs as a list of
  buffers: small header ``bytes`` interleaved with memoryview slices of the
  payload (the payload is never copied).

Wire facts used here (PS3.8 9.3.1, 9.3.5, Annex E.2): every PDU starts with
type (1 byte), reserved (1 byte), length (4 bytes, big-endian, counting the
bytes that follow). A PDV item is length (4 bytes, big-endian, counting the
context id, the message control header and the data), presentation context id
(1 byte), message control header (1 byte: bit 0 set = command, bit 1 set =
last fragment; bits 2-7 are zero and not tested on receipt), data.
"""
from cpython.buffer cimport (PyBUF_ND, PyBUF_STRIDES, PyBUF_FORMAT, PyBUF_WRITABLE, PyBUF_SIMPLE,
                             PyObject_GetBuffer, PyBuffer_Release)
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from cpython.mem cimport PyMem_RawMalloc, PyMem_RawRealloc, PyMem_RawFree
from cpython.object cimport PyObject, PyTypeObject
from libc.string cimport memcpy, memmove

from dicomnet.errors import PDUError

# Smallest block the reader allocates, and the smallest window get_buffer
# hands out (so a tiny sizehint does not turn into one-byte recv calls).
cdef enum:
    INITIAL_SIZE = 65536
    MIN_WINDOW = 16384
    READ_AHEAD = 65536      # how far a read may run past the PDU being received
    MAX_WINDOW = 1 << 30    # cap on what a sizehint can make the reader allocate
    PDU_HEADER = 6
    PDV_HEADER = 6          # 4-byte item length + context id + control header
    PDATA_HEADERS = 12      # PDU_HEADER + PDV_HEADER: all a P-DATA-TF with one PDV has before its data
    DIRECT_MIN = 16384      # a data set PDV is placed directly when at least this much of it is still to come
    PDATA_DIRECT = 0x184    # next_pdu's type for a P-DATA-TF whose one PDV was placed by the router
                            # (above 0xFF: no PDU type on the wire can be mistaken for it)
cdef Py_ssize_t MAX_U32 = 0xFFFFFFFF
cdef char* _FORMAT_B = "B"   # buffer format of unsigned bytes (a static C string)


cdef class _Chunk:
    """A block of receive memory; exports are read-only and counted.

    The memory lives exactly as long as this object, and Python keeps the
    object alive while any memoryview exported from it (or sliced from such a
    view) exists -- so a PDU body can never dangle.
    """

    def __cinit__(self, Py_ssize_t size):
        if size < 1:
            size = 1
        self.data = <unsigned char*>PyMem_RawMalloc(<size_t>size)
        if self.data == NULL:
            raise MemoryError(f"cannot allocate a {size}-byte receive buffer")
        self.size = size
        self.read_exports = 0
        self.write_exports = 0

    cdef int grow(self, Py_ssize_t size) except -1:
        """Resize in place (realloc). Only legal while nothing is exported."""
        cdef unsigned char* moved
        if self.read_exports or self.write_exports:
            raise BufferError("cannot resize a receive block while views of it exist")
        moved = <unsigned char*>PyMem_RawRealloc(self.data, <size_t>size)
        if moved == NULL:
            raise MemoryError(f"cannot grow the receive buffer to {size} bytes")
        self.data = moved
        self.size = size
        return 0

    def __dealloc__(self):
        PyMem_RawFree(self.data)
        self.data = NULL

    def __getbuffer__(self, Py_buffer* buf, int flags):
        if flags & PyBUF_WRITABLE:
            raise BufferError("PDU bodies are read-only")
        self.shape[0] = self.size
        self.strides[0] = 1
        buf.buf = self.data
        buf.obj = self
        buf.len = self.size
        buf.readonly = 1
        buf.itemsize = 1
        buf.format = _FORMAT_B if (flags & PyBUF_FORMAT) else NULL
        buf.ndim = 1
        buf.shape = self.shape if (flags & PyBUF_ND) else NULL
        buf.strides = self.strides if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL
        buf.suboffsets = NULL
        buf.internal = NULL
        self.read_exports += 1

    def __releasebuffer__(self, Py_buffer* buf):
        self.read_exports -= 1


cdef class _WriteWindow:
    """A writable export of a :class:`_Chunk` (what get_buffer hands out).

    It holds a reference to the chunk and counts its exports in
    ``chunk.write_exports``: the reader reallocates a block only when no view
    of it, read or write, is alive, so even a stale window never dangles.
    """

    def __cinit__(self, _Chunk chunk not None):
        self.chunk = chunk

    def __getbuffer__(self, Py_buffer* buf, int flags):
        self.shape[0] = self.chunk.size
        self.strides[0] = 1
        buf.buf = self.chunk.data
        buf.obj = self
        buf.len = self.chunk.size
        buf.readonly = 0
        buf.itemsize = 1
        buf.format = _FORMAT_B if (flags & PyBUF_FORMAT) else NULL
        buf.ndim = 1
        buf.shape = self.shape if (flags & PyBUF_ND) else NULL
        buf.strides = self.strides if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL
        buf.suboffsets = NULL
        buf.internal = NULL
        self.chunk.write_exports += 1

    def __releasebuffer__(self, Py_buffer* buf):
        self.chunk.write_exports -= 1


cdef class PDUReader:
    """Sans-IO receive buffer that yields whole PDUs.

    Drive it like an asyncio ``BufferedProtocol``::

        view = reader.get_buffer(65536)      # writable memoryview
        n = sock.recv_into(view)
        reader.buffer_updated(n)
        while (pdu := reader.next_pdu()) is not None:
            pdu_type, body = pdu             # body: read-only memoryview

    Limits, checked on the 6-byte PDU header *before* the body is buffered
    (nothing is ever allocated because a length field says so; the buffer grows
    geometrically with bytes actually received):

    * a PDU of an unknown type is framed by its length like any other (PS3.8
      9.3.1: the receiver acts on it as an unrecognized PDU, Evt19) and returned;
    * a P-DATA-TF longer than ``max_pdu_length`` (the Maximum Length we
      advertised; 0 = unlimited) raises PDUError;
    * any other PDU longer than ``max_association_pdu`` (0 = unlimited) raises
      PDUError.

    After a PDUError the stream is unusable (the association must be aborted).

    Ownership rule: a body returned by :meth:`next_pdu` is a read-only view of
    the reader's memory and stays valid and unchanged for as long as it -- or
    anything derived from it (slices, ``numpy.frombuffer`` arrays, PDV views
    from :func:`iter_pdvs`) -- is alive. The reader counts those views: it
    compacts its buffer in place only when none is alive; otherwise it copies
    the not-yet-consumed bytes (at most one partial PDU) into a fresh block and
    leaves the old block to its holders. Release views you are done with
    (drop them, or ``view.release()``) to let the reader reuse its memory.
    The view returned by :meth:`get_buffer` is valid until the next call of
    :meth:`buffer_updated`, :meth:`get_buffer` or :meth:`feed`; drop it after
    ``buffer_updated`` too: a block is grown in place (``realloc``) only when
    no view of it at all -- body or window -- is alive. Memory safety never
    depends on callers: a block is freed only when its last view is gone.

    Direct placement: with a ``router`` set, a P-DATA-TF that holds exactly
    one data set PDV, with at least 16 KiB of its data still to come once its
    12 header bytes are here, is offered to it when :meth:`get_buffer` is
    next called (by then every earlier PDU has been taken with next_pdu):
    ``router(context_id, is_last, nbytes)`` returns a writable buffer of
    exactly ``nbytes`` (the PDV's data length) -- the data set's own memory --
    or None to decline. Accepted, the bytes already read are copied there, and
    :meth:`get_buffer` hands out the rest of that buffer, so the socket writes
    the data straight into it; once full, :meth:`next_pdu` returns
    ``(0x184, (context_id, is_last, buffer))`` instead of the PDU. After such a
    PDU a read stops 12 bytes into the next one, so its headers can be looked
    at before its data is read.
    """

    def __cinit__(self, Py_ssize_t max_pdu_length=0, Py_ssize_t max_association_pdu=1 << 20):
        if max_pdu_length < 0 or max_association_pdu < 0:
            raise ValueError("PDU length limits must be >= 0 (0 = unlimited)")
        self._max_pdu_length = max_pdu_length
        self._max_association_pdu = max_association_pdu
        self._chunk = _Chunk(INITIAL_SIZE)
        self._start = 0
        self._end = 0
        self._window_end = 0
        self.router = None
        self._direct = None
        self._direct_filled = 0
        self._direct_size = 0
        self._direct_context = 0
        self._direct_last = False
        self._after_direct = False
        self._declined = False
        self._skip = 0

    @property
    def max_pdu_length(self) -> int:
        """Largest P-DATA-TF length field accepted (our advertised maximum); 0 = unlimited."""
        return self._max_pdu_length

    @max_pdu_length.setter
    def max_pdu_length(self, Py_ssize_t value):
        if value < 0:
            raise ValueError("max_pdu_length must be >= 0 (0 = unlimited)")
        self._max_pdu_length = value

    @property
    def max_association_pdu(self) -> int:
        """Largest length accepted for any PDU but P-DATA-TF; 0 = unlimited."""
        return self._max_association_pdu

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a PDU (0 at a PDU boundary)."""
        return self._end - self._start

    @property
    def pdu_complete(self) -> bool:
        """True when a whole PDU is buffered (next_pdu would return it)."""
        if self._direct is not None:
            return self._direct_filled >= self._direct_size
        return (self._end - self._start >= PDU_HEADER
                and self._end - self._start - PDU_HEADER >= _be32(self._chunk.data + self._start + 2))

    @property
    def placing(self) -> bool:
        """True while a PDV's data is being received into the router's buffer."""
        return self._direct is not None

    def drop_direct(self):
        """Forget the router's buffer of a PDV being placed (the association is
        over); what would have completed it is never reported: the reader drops
        those bytes as they come, and frames the PDUs after them as usual."""
        if self._direct is not None:
            self._skip += self._direct_size - self._direct_filled
        self._direct = None

    def detach(self):
        """A new reader with the same limits and no router, holding what this
        one has received but not yet returned (and still to drop, see
        :meth:`drop_direct`), in a fresh block of the smallest size; this one is
        left empty. For a stream that outlives its association (Sta13) without
        keeping the association's memory."""
        if self._direct is not None:
            raise ValueError("a PDV is being placed: drop_direct() first")
        cdef PDUReader twin = PDUReader(self._max_pdu_length, self._max_association_pdu)
        twin._skip = self._skip
        if self._end > self._start:
            twin.feed(memoryview(self._chunk)[self._start:self._end])
        self._start = self._end = self._window_end = 0
        self._skip = 0
        return twin

    cdef int _check_header(self) except -1:
        """Validate the header of the PDU at _start, if its 6 bytes are here."""
        cdef const unsigned char* p
        cdef Py_ssize_t length
        cdef int pdu_type
        if self._end - self._start < PDU_HEADER:
            return 0
        p = self._chunk.data + self._start
        pdu_type = p[0]
        length = _be32(p + 2)
        if pdu_type == 4:
            if self._max_pdu_length and length > self._max_pdu_length:
                raise PDUError(
                    f"P-DATA-TF of {length} bytes exceeds our maximum length {self._max_pdu_length}"
                )
        elif self._max_association_pdu and length > self._max_association_pdu:
            if pdu_type < 1 or pdu_type > 7:
                raise PDUError(f"unknown PDU type 0x{pdu_type:02X} of {length} bytes exceeds the limit "
                               f"{self._max_association_pdu}")
            raise PDUError(
                f"PDU type 0x{pdu_type:02X} of {length} bytes exceeds the limit {self._max_association_pdu}"
            )
        return 0

    cdef int _make_room(self, Py_ssize_t want) except -1:
        """Ensure at least ``want`` writable bytes after _end."""
        cdef Py_ssize_t pending = self._end - self._start
        cdef Py_ssize_t need = pending + want
        cdef Py_ssize_t size = self._chunk.size
        cdef _Chunk fresh
        if self._chunk.read_exports == 0 and need <= size:
            # Nobody looks at this block: slide the partial PDU to the front.
            if pending:
                memmove(self._chunk.data, self._chunk.data + self._start, <size_t>pending)
            self._start = 0
            self._end = pending
            return 0
        if need > size:
            while size < need:
                size *= 2
            if self._chunk.read_exports == 0 and self._chunk.write_exports == 0:
                # Nobody looks at this block: slide, then grow it in place
                # (realloc of a large block remaps pages instead of copying).
                if pending:
                    memmove(self._chunk.data, self._chunk.data + self._start, <size_t>pending)
                self._start = 0
                self._end = pending
                self._chunk.grow(size)  # on MemoryError the state above is still consistent
                return 0
        elif need * 4 < size:
            # A big block is still referenced: do not clone its size for a small tail.
            size = max(INITIAL_SIZE, need * 2)
        fresh = _Chunk(size)
        if pending:
            memcpy(fresh.data, self._chunk.data + self._start, <size_t>pending)
        self._chunk = fresh
        self._start = 0
        self._end = pending
        return 0

    cdef int _relocate(self) except -1:
        """Put the pending bytes at the front of a block of the current size:
        this one when nobody looks at it, else a fresh one (bodies keep theirs)."""
        cdef Py_ssize_t pending = self._end - self._start
        cdef _Chunk fresh
        if self._chunk.read_exports == 0:
            memmove(self._chunk.data, self._chunk.data + self._start, <size_t>pending)
        else:
            fresh = _Chunk(self._chunk.size)
            memcpy(fresh.data, self._chunk.data + self._start, <size_t>pending)
            self._chunk = fresh
        self._start = 0
        self._end = pending
        return 0

    def get_buffer(self, Py_ssize_t sizehint=-1):
        """Return a writable memoryview to receive into (at least ``sizehint`` bytes).

        ``sizehint`` <= 0 means "any size" (asyncio passes -1). Raises PDUError if
        the header of the PDU being received is already known to be bad.
        """
        cdef Py_ssize_t want = sizehint if sizehint > MIN_WINDOW else MIN_WINDOW
        cdef Py_ssize_t ahead = READ_AHEAD
        if self._direct is not None:
            # The rest of the PDV being placed: straight into the router's buffer.
            self._window_end = self._end + self._direct_size - self._direct_filled
            return self._direct[self._direct_filled:]
        if want > MAX_WINDOW:
            want = MAX_WINDOW
        self._check_header()
        if self.router is not None and not self._declined and self._end - self._start >= PDATA_HEADERS:
            # Asked here, not when the bytes came: by now whoever reads the
            # PDUs has taken every earlier one, so the router's state is current.
            self._probe_direct()
            if self._direct is not None:
                self._window_end = self._end + self._direct_size - self._direct_filled
                return self._direct[self._direct_filled:]
        if self._start == self._end and self._chunk.read_exports == 0:
            self._start = self._end = 0
        cdef Py_ssize_t total
        if self._start and self._end - self._start >= PDU_HEADER:
            # The PDU being received cannot complete where it starts, but the
            # block would hold it from the front: move it there now, while only
            # its first bytes (at most READ_AHEAD, see below) are here, instead
            # of reading up to the end of the block and sliding most of a big
            # PDU later (which copied about every other 1 MiB PDU once more).
            # Only memory that exists is used: a length field never grows it.
            total = PDU_HEADER + <Py_ssize_t>_be32(self._chunk.data + self._start + 2)
            if self._start + total > self._chunk.size and total <= self._chunk.size:
                self._relocate()
        if self._chunk.size - self._end < want:
            self._make_room(want)
        # Stop the window at most READ_AHEAD bytes past the end of the PDU being
        # received (or past what is buffered, before its header is known). A read
        # then leaves at most READ_AHEAD bytes of the next PDU behind, and sliding
        # that partial PDU to the front of the block (_make_room) stays cheap; an
        # unbounded window let a pipelining peer's next 1 MiB PDU be read half-way
        # and moved on every PDU. The length field only bounds the window inside
        # memory that is already there: it never makes the reader allocate.
        if self._after_direct and self.router is not None:
            ahead = PDATA_HEADERS       # the next PDU's headers, then perhaps its data placed directly
            want = 0
        cdef Py_ssize_t limit = self._end + ahead
        cdef Py_ssize_t pending = self._end - self._start
        if pending >= PDU_HEADER:
            limit = self._start + PDU_HEADER + <Py_ssize_t>_be32(self._chunk.data + self._start + 2) + ahead
            if (self.router is not None and pending < PDATA_HEADERS and self._chunk.data[self._start] == 4
                    and limit - self._start >= DIRECT_MIN):
                # A big P-DATA-TF: read its PDV header alone first, so that
                # its data can be placed directly.
                limit = self._start + PDATA_HEADERS
                want = 0
        if limit < self._end + want:
            limit = self._end + want    # never less than the caller asked for
        if limit > self._chunk.size:
            limit = self._chunk.size
        self._window_end = limit
        return memoryview(_WriteWindow(self._chunk))[self._end:limit]

    def buffer_updated(self, Py_ssize_t nbytes):
        """Record that ``nbytes`` were written at the start of the last get_buffer view."""
        cdef Py_ssize_t take
        if nbytes < 0 or nbytes > self._window_end - self._end:
            raise ValueError(
                f"buffer_updated({nbytes}): the last get_buffer window holds {self._window_end - self._end} bytes"
            )
        if self._direct is not None:
            self._direct_filled += nbytes
            self._window_end = self._end
            return
        if self._skip:
            # The rest of a PDV whose placement was dropped: not part of any PDU here.
            take = nbytes if nbytes < self._skip else self._skip
            self._skip -= take
            if nbytes > take:
                memmove(self._chunk.data + self._end, self._chunk.data + self._end + take, <size_t>(nbytes - take))
            nbytes -= take
        self._end += nbytes
        self._window_end = self._end

    def feed(self, data):
        """Copy ``data`` (any bytes-like object) into the buffer; for tests and simple drivers."""
        cdef const unsigned char[:] src
        cdef Py_ssize_t n, pos = 0, take
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        src = view
        n = src.shape[0]
        while pos < n:
            self.get_buffer(n - pos)
            take = min(n - pos, self._window_end - self._end)
            memcpy(self._chunk.data + self._end, &src[pos], <size_t>take)
            self.buffer_updated(take)
            pos += take

    def next_pdu(self):
        """Return ``(pdu_type, body)`` for the next complete PDU, or None if incomplete.

        ``body`` is a read-only memoryview of the bytes after the 6-byte header
        (see the class docstring for how long it stays valid).
        """
        cdef Py_ssize_t length, begin
        cdef int pdu_type
        if self._direct is not None:
            if self._direct_filled < self._direct_size:
                return None
            placed, self._direct = self._direct, None
            self._after_direct = True
            return PDATA_DIRECT, (self._direct_context, self._direct_last, placed)
        if self._end - self._start < PDU_HEADER:
            return None
        self._check_header()
        length = _be32(self._chunk.data + self._start + 2)
        if self._end - self._start - PDU_HEADER < length:
            return None
        pdu_type = self._chunk.data[self._start]
        begin = self._start + PDU_HEADER
        self._start = begin + length
        self._after_direct = False
        self._declined = False
        # A fresh export per body, so the chunk knows when every body is gone.
        return pdu_type, memoryview(self._chunk)[begin:begin + length]

    cdef object _probe_direct(self):
        """With at least 12 bytes of a PDU here: if it is an incomplete
        P-DATA-TF of one data set PDV with enough still to come, offer the PDV
        to the router."""
        cdef const unsigned char* p = self._chunk.data + self._start
        cdef Py_ssize_t pdu_length = _be32(p + 2)
        if self._end - self._start - PDU_HEADER >= pdu_length:
            return None     # complete already: next_pdu returns it
        cdef Py_ssize_t pdv_length = _be32(p + 6)
        cdef Py_ssize_t have = self._end - self._start - PDATA_HEADERS
        cdef Py_ssize_t size
        cdef int context_id = p[10]
        cdef bint is_last = (p[11] & 2) != 0
        cdef unsigned char[:] dst
        if p[0] != 4 or pdv_length + 4 != pdu_length or pdv_length < 2 or (p[11] & 1):
            return None     # not one data set PDV: the PDU is read and checked whole
        size = pdv_length - 2
        if size - have < DIRECT_MIN:
            return None
        target = self.router(context_id, is_last, size)
        if target is None:
            self._declined = True       # asked once per PDU
            return None
        dst = target                # a writable buffer, or TypeError
        if dst.shape[0] != size:
            raise ValueError(f"the router gave {dst.shape[0]} bytes for a PDV of {size}")
        if have:
            memcpy(&dst[0], self._chunk.data + self._start + PDATA_HEADERS, <size_t>have)
        self._direct_context = context_id
        self._direct_last = is_last
        self._direct_size = size
        self._direct_filled = have
        self._direct = target if isinstance(target, memoryview) else memoryview(target)
        # Every byte buffered belonged to this PDU: the block is empty again.
        self._start = self._end
        if self._chunk.read_exports == 0:
            self._start = self._end = 0
        return None


cdef Py_ssize_t _pdv_length(const unsigned char* p, Py_ssize_t pos, Py_ssize_t n) except -1:
    """The length field of the PDV item at ``pos`` of a P-DATA-TF body of ``n``
    bytes, checked: its 4 bytes are there, it covers at least the 2-byte
    header (context id, control header) and it ends inside the body."""
    cdef Py_ssize_t length
    if n - pos < 4:
        raise PDUError(f"PDV item at offset {pos}: {n - pos} byte(s) left, its length field needs 4")
    length = _be32(p + pos)
    if length < 2:
        raise PDUError(f"PDV item at offset {pos} has length {length}, at least 2 is required")
    if length > n - pos - 4:
        raise PDUError(
            f"PDV item at offset {pos} claims {length} bytes, only {n - pos - 4} remain in the P-DATA-TF"
        )
    return length


def iter_pdvs(body):
    """Split a P-DATA-TF body into ``[(context_id, is_command, is_last, data), ...]``.

    ``data`` is a memoryview slice of ``body`` (no copy). Raises PDUError for a
    truncated item header, an item length below 2 or one that runs past the end.
    """
    cdef const unsigned char[:] b
    cdef const unsigned char* p
    cdef Py_ssize_t n, pos = 0, length
    cdef unsigned char control
    view = body if isinstance(body, memoryview) else memoryview(body)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    b = view
    n = b.shape[0]
    out = []
    if n == 0:
        return out
    p = &b[0]
    while pos < n:
        length = _pdv_length(p, pos, n)
        control = p[pos + 5]
        out.append((p[pos + 4], (control & 1) != 0, (control & 2) != 0, view[pos + 6:pos + 4 + length]))
        pos += 4 + length
    return out


cdef inline void _put_pdata_header(unsigned char* h, Py_ssize_t n, int context_id,
                                   unsigned char control) noexcept nogil:
    """The 12 bytes before a P-DATA-TF's single PDV of ``n`` data bytes: PDU type
    0x04, reserved, PDU length; PDV item length, context id, control header."""
    h[0] = 0x04
    h[1] = 0
    _put_be32(h + 2, n + PDV_HEADER)
    _put_be32(h + 6, n + 2)
    h[10] = <unsigned char>context_id
    h[11] = control


def fragment(int context_id, bint is_command, data, Py_ssize_t max_pdu_length):
    """Cut one message into P-DATA-TF PDUs, one PDV per PDU, as a list of buffers.

    The list alternates 12-byte ``bytes`` headers (PDU header + PDV header) and
    memoryview slices of ``data``; write it with ``sendmsg``/``writelines``.
    ``max_pdu_length`` is the peer's Maximum Length (the largest PDU *length
    field* it receives; 0 = unlimited): every PDU's length field stays within
    it. A maximum of 1..6 leaves no room for data and raises PDUError. The last PDV has the last-fragment bit; empty data yields one empty PDV.
    """
    cdef Py_ssize_t total, pos = 0, take, per_pdu
    cdef unsigned char control = 1 if is_command else 0
    cdef bytes header
    cdef unsigned char* h
    if not 0 <= context_id <= 255:
        raise ValueError(f"context_id must be 0..255, got {context_id}")
    if max_pdu_length != 0 and not PDU_HEADER + 1 <= max_pdu_length <= MAX_U32:
        # Usually the peer's Maximum Length sub-item: PDUError (a ValueError).
        raise PDUError(f"max_pdu_length must be 0 or 7..{MAX_U32} to carry data, got {max_pdu_length}")
    view = data if isinstance(data, memoryview) else memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    total = len(view)
    # PDU length field = PDV header (6) + payload; PDV length field = 2 + payload.
    per_pdu = (max_pdu_length if max_pdu_length else MAX_U32) - PDV_HEADER
    out = []
    while True:
        take = total - pos
        if take > per_pdu:
            take = per_pdu
        header = PyBytes_FromStringAndSize(NULL, 12)
        h = <unsigned char*>PyBytes_AS_STRING(header)
        _put_pdata_header(h, take, context_id, control | (2 if pos + take == total else 0))
        out.append(header)
        if take:
            out.append(view[pos:pos + take])
        pos += take
        if pos >= total:
            return out


def pdata_pdu(int context_id, bint is_command, data):
    """One P-DATA-TF PDU holding all of ``data`` as one last-fragment PDV, as one
    ``bytes`` object (PDU header, PDV header and a copy of ``data``).

    For small messages -- a command set is a few dozen bytes -- one copy into one
    buffer is cheaper than a header and a view; the caller checks that the PDU
    fits the peer's maximum length. Large data goes through :func:`fragment`,
    which never copies.
    """
    cdef Py_buffer src
    cdef bytes out
    cdef unsigned char* h
    cdef Py_ssize_t n
    if not 0 <= context_id <= 255:
        raise ValueError(f"context_id must be 0..255, got {context_id}")
    PyObject_GetBuffer(data, &src, PyBUF_SIMPLE)
    try:
        n = src.len
        if n > MAX_U32 - PDV_HEADER:
            raise PDUError(f"{n} bytes do not fit in one P-DATA-TF PDU")
        out = PyBytes_FromStringAndSize(NULL, 12 + n)
        h = <unsigned char*>PyBytes_AS_STRING(out)
        _put_pdata_header(h, n, context_id, (1 if is_command else 0) | 2)
        if n:
            memcpy(h + 12, src.buf, <size_t>n)
    finally:
        PyBuffer_Release(&src)
    return out


def pdata_pdvs(body, contexts, pdv_type):
    """The PDVs of a P-DATA-TF body (PS3.8 9.3.5) as a tuple of ``pdv_type``
    objects, for the receive hot path.

    Checks what :func:`iter_pdvs` checks, plus that the body holds at least one
    PDV and that every presentation context id is in ``contexts`` (PDUError
    otherwise). The objects are made with ``pdv_type.__new__`` and their four
    fields (``context_id``, ``is_command``, ``is_last``, ``data``) set through
    the class's slot descriptors: the values are valid by construction (a
    byte, two flags, a byte view of ``body``), so the class's own checks have
    nothing left to check.
    """
    cdef Py_buffer buf
    cdef const unsigned char* p
    cdef Py_ssize_t n
    cdef list out = []
    cdef tuple fields
    view = body if isinstance(body, memoryview) else memoryview(body)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    fields = _pdv_fields(pdv_type)
    # A plain buffer request: cheaper than a typed memoryview, and ``view`` is
    # one-dimensional bytes (cast above), so it is contiguous unless it was
    # sliced with a step -- which PyBUF_SIMPLE refuses with BufferError.
    PyObject_GetBuffer(view, &buf, PyBUF_SIMPLE)
    try:
        n = buf.len
        if n == 0:
            raise PDUError("P-DATA-TF holds no PDV (PS3.8 9.3.5 requires one or more)")
        p = <const unsigned char*>buf.buf
        _split_pdvs(p, n, view, contexts, pdv_type, fields, out)
    finally:
        PyBuffer_Release(&buf)
    return tuple(out)


cdef int _split_pdvs(const unsigned char* p, Py_ssize_t n, object view, object contexts, object pdv_type,
                     tuple fields, list out) except -1:
    cdef Py_ssize_t pos = 0, length
    cdef unsigned char control
    cdef PyTypeObject* tp = <PyTypeObject*>pdv_type
    while pos < n:
        length = _pdv_length(p, pos, n)
        context_id = p[pos + 4]
        if context_id not in contexts:
            raise PDUError(f"PDV on presentation context {context_id}, which is not accepted")
        control = p[pos + 5]
        pdv = tp.tp_new(pdv_type, <PyObject*>_EMPTY, NULL)
        _set(fields[0], pdv, context_id)
        _set(fields[1], pdv, (control & 1) != 0)
        _set(fields[2], pdv, (control & 2) != 0)
        _set(fields[3], pdv, view[pos + 6:pos + 4 + length])
        out.append(pdv)
        pos += 4 + length
    return 0


cdef tuple _EMPTY = ()
cdef dict _FIELDS = {}


cdef tuple _pdv_fields(object pdv_type):
    """The descriptors of the four fields of ``pdv_type`` (slots of a frozen
    dataclass), cached per class; each must be a data descriptor."""
    cdef tuple fields = _FIELDS.get(pdv_type)
    if fields is None:
        fields = tuple(pdv_type.__dict__[name] for name in ("context_id", "is_command", "is_last", "data"))
        for field in fields:
            kind = type(field)
            if (<PyTypeObject*>kind).tp_descr_set == NULL:
                raise TypeError(f"{pdv_type.__name__} fields must be slots")
        _FIELDS[pdv_type] = fields
    return fields


cdef inline int _set(object descriptor, object obj, object value) except -1:
    # What object.__setattr__ does for a slot, without the name lookup (and
    # without the frozen class's __setattr__, which refuses any assignment).
    cdef object kind = type(descriptor)
    return (<PyTypeObject*>kind).tp_descr_set(descriptor, obj, value)
