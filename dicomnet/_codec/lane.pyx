# cython: language_level=3
"""The C-STORE receive lane: P-DATA of streamed C-STOREs straight from the PDU
reader to the file, without the per-PDU Python layers (compiled hot path of
:mod:`dicomnet.server`).

On an established association whose handler streams C-STORE data sets to
files (``store_destination``), the server loop asks :meth:`StoreLane.run`
first. It takes complete P-DATA-TF PDUs from the Connection's
:class:`~dicomnet._codec.pdu.PDUReader` itself -- no event objects, no PDV
objects, no assembler call per fragment -- and:

* a PDU that is one whole command set (one PDV, command, last fragment) goes
  to the assembler's own ``feed`` (which decodes it and asks the sink factory
  for the file), so a new message starts exactly as on the general path;
* a PDU of data set PDVs for the message in progress, whose sink is a
  :class:`dicomnet.dimse.scp.StoreSink` with its file open, is written to
  that file here, with the GIL released; the message that its last fragment
  completes is returned for the server to answer.

Everything else -- any other PDU type, a PDV shape or context that is not
the plain case, a data set held in memory, a sink that failed, queued
events, DEBUG logging -- is left where it is: ``run`` returns False and the
general path (:meth:`Connection.buffer_updated`, the assembler, the state
machine) takes the PDU, with the same checks and the same answers as ever.
Between calls the message in progress lives in the assembler and its sink,
as on the general path, so either path can take the next PDU, and an abort
discards the temporary file the same way.

What the lane checks itself is what lets it decline: the PDU header (type,
length within our maximum), each PDV item length and presentation context
(accepted on this association), the command/last bits, and that a data set
PDV belongs to the message in progress. A PDU that fails any of these is
declined, and the general path raises or aborts for it.
"""
from libc.errno cimport errno, EINTR

from dicomnet._codec.pdu cimport PDUReader

cdef extern from "<sys/uio.h>" nogil:
    struct iovec:
        void* iov_base
        size_t iov_len
    ssize_t writev(int fd, const iovec* iov, int iovcnt)

cdef enum:
    PDU_HEADER = 6
    PDV_HEADER = 6
    MAX_PDVS = 16       # more PDVs in one P-DATA-TF: the general path takes it
    DEBUG = 10          # logging.DEBUG


cdef inline Py_ssize_t _be32(const unsigned char* p) noexcept nogil:
    return (<Py_ssize_t>p[0] << 24) | (<Py_ssize_t>p[1] << 16) | (<Py_ssize_t>p[2] << 8) | <Py_ssize_t>p[3]


cdef class StoreLane:
    """The lane of one association (see the module docstring).

    ``conn`` is its :class:`~dicomnet.pdu.connection.Connection` (in Sta6),
    ``assoc`` its :class:`~dicomnet.association.Association`; ``sink_type``
    the streaming sink class whose files the lane writes to
    (:class:`dicomnet.dimse.scp.StoreSink`) and ``message_type`` the
    assembler's :class:`~dicomnet.dimse.assembler.Message`.
    """

    cdef PDUReader reader
    cdef object conn
    cdef object assoc
    cdef object assembler
    cdef object contexts
    cdef object log
    cdef object sink_type
    cdef object message_type
    cdef readonly Py_ssize_t pdus
    """P-DATA-TF PDUs the lane has taken (for tests and diagnostics)."""

    def __init__(self, conn, assoc, sink_type, message_type):
        self.reader = conn._reader
        self.conn = conn
        self.assoc = assoc
        self.assembler = assoc._assembler
        self.contexts = conn.negotiated.contexts
        self.log = assoc._log
        self.sink_type = sink_type
        self.message_type = message_type
        self.pdus = 0

    def run(self):
        """Take what the lane can of the PDUs received so far.

        Returns a completed message (to be answered), True when the lane
        needs more bytes (:meth:`SyncDriver.fill`), or False when the next
        PDU -- or an event already queued -- is for the general path.
        Raises what the assembler raises for a command set it takes
        (PDUError: abort, as on the general path).
        """
        cdef PDUReader r = self.reader
        cdef const unsigned char* p
        cdef const unsigned char* body
        cdef Py_ssize_t avail, plen, pos, ilen
        cdef int count, i, context_id
        cdef Py_ssize_t offsets[MAX_PDVS]
        cdef Py_ssize_t lengths[MAX_PDVS]
        cdef unsigned char controls[MAX_PDVS]
        cdef int context_ids[MAX_PDVS]
        conn = self.conn
        assembler = self.assembler
        if self.log.isEnabledFor(DEBUG):
            return False        # the general path logs every message
        if not self._plain():
            return False
        while True:
            if (conn._state != "Sta6" or conn._events or conn._stream_broken or self.assoc._ready
                    or r._direct is not None):
                return False
            avail = r._end - r._start
            if avail < PDU_HEADER:
                return True
            p = r._chunk.data + r._start
            if p[0] != 4:
                return False
            plen = _be32(p + 2)
            if r._max_pdu_length and plen > r._max_pdu_length:
                return False
            if avail - PDU_HEADER < plen:
                return True
            # The PDV items, checked as pdata_pdvs checks them.
            body = p + PDU_HEADER
            count = 0
            pos = 0
            while pos < plen:
                if count == MAX_PDVS or plen - pos < 4:
                    return False
                ilen = _be32(body + pos)
                if ilen < 2 or ilen > plen - pos - 4:
                    return False
                context_id = body[pos + 4]
                if context_id not in self.contexts:
                    return False
                context_ids[count] = context_id
                controls[count] = body[pos + 5]
                offsets[count] = pos + PDV_HEADER
                lengths[count] = ilen - 2
                count += 1
                pos += 4 + ilen
            if count == 0:
                return False
            if assembler._context_id is None:
                # A new message: exactly one whole command set.
                if count != 1 or (controls[0] & 3) != 3 or lengths[0] > assembler.max_command_bytes:
                    return False
                begin = r._start + PDU_HEADER + offsets[0]
                view = memoryview(r._chunk)[begin:begin + lengths[0]]
                self._consume(plen)
                message = assembler.feed(context_ids[0], True, True, view)
                del view
                if message is not None:
                    return message
                continue
            # Data set fragments of the message in progress, to its file.
            sink = assembler._sink
            if type(sink) is not self.sink_type or assembler._command is None or assembler._direct is not None:
                return False
            context_id = assembler._context_id
            for i in range(count):
                if context_ids[i] != context_id or (controls[i] & 1) or ((controls[i] & 2) and i != count - 1):
                    return False
            for i in range(count):
                self._write(sink, body + offsets[i], lengths[i])
            assembler._size += plen - PDV_HEADER * count
            self._consume(plen)
            if controls[count - 1] & 2:
                message = self.message_type(context_id, assembler._command)
                message.sink = sink
                assembler._reset()
                return message

    cdef bint _plain(self) except -1:
        """Whether every whole PDU buffered is a P-DATA-TF of well-formed PDV
        items on accepted contexts, and the header of a partial one says
        P-DATA-TF within our maximum. Otherwise the general path takes all of
        them: a Connection acts on every PDU of a read at once (so a bad PDU
        aborts before the answers to the good ones read with it), and so must
        what the peer sees when the lane is in use."""
        cdef PDUReader r = self.reader
        cdef const unsigned char* data = r._chunk.data
        cdef const unsigned char* body
        cdef Py_ssize_t pos = r._start, plen, off, ilen
        cdef int count
        while r._end - pos >= PDU_HEADER:
            if data[pos] != 4:
                return False
            plen = _be32(data + pos + 2)
            if r._max_pdu_length and plen > r._max_pdu_length:
                return False
            if r._end - pos - PDU_HEADER < plen:
                return True
            body = data + pos + PDU_HEADER
            off = 0
            count = 0
            while off < plen:
                if count == MAX_PDVS or plen - off < 4:
                    return False
                ilen = _be32(body + off)
                if ilen < 2 or ilen > plen - off - 4 or body[off + 4] not in self.contexts:
                    return False
                count += 1
                off += 4 + ilen
            if count == 0:
                return False
            pos += PDU_HEADER + plen
        return True

    cdef void _consume(self, Py_ssize_t plen):
        """The PDU at the reader's start is taken (what next_pdu does, and the
        Connection's count of P-DATA indications given and handled)."""
        cdef PDUReader r = self.reader
        r._start += PDU_HEADER + plen
        r._after_direct = False
        r._declined = False
        self.conn.pdata_events += 1
        self.conn.pdata_taken += 1
        self.pdus += 1

    cdef int _write(self, object sink, const unsigned char* data, Py_ssize_t n) except -1:
        """One data set fragment to the sink's file: StoreSink.write, in C
        (the File Meta header first, with the first fragment; a short write
        is finished; an error fails the sink, whose file is then dropped)."""
        cdef int fd = sink._fd
        cdef iovec iov[2]
        cdef int k = 0
        cdef Py_ssize_t done
        cdef bytes head
        if fd < 0:
            return 0            # failed earlier: the rest of the data set is dropped
        head = sink._head
        if len(head):
            sink._head = b""
            iov[0].iov_base = <void*><const char*>head
            iov[0].iov_len = len(head)
            k = 1
        iov[k].iov_base = <void*>data
        iov[k].iov_len = n
        k += 1
        while k:
            with nogil:
                done = writev(fd, iov, k)
            if done < 0:
                if errno == EINTR:
                    continue
                err = errno
                sink._fail(OSError(err, _strerror(err)))
                return 0
            # Drop what went out from the front of the vector.
            while k and done >= <Py_ssize_t>iov[0].iov_len:
                done -= iov[0].iov_len
                iov[0] = iov[1]
                k -= 1
            if k:
                iov[0].iov_base = <void*>(<const char*>iov[0].iov_base + done)
                iov[0].iov_len -= done
        sink.size += n
        return 0


cdef object _strerror(int err):
    import os
    return os.strerror(err)
