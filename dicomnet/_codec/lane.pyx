# cython: language_level=3
"""The C-STORE receive lane: P-DATA of C-STOREs straight from the PDU reader
to the file or the data set's memory, without the per-PDU Python layers
(compiled hot path of :mod:`dicomnet.server`).

On an established association of a server (POSIX), the server loop asks
:meth:`StoreLane.run` first (through :meth:`Association._lane_next`, which
a C-GET on a client uses too, with a lane that answers nothing). It takes complete P-DATA-TF PDUs from the
Connection's :class:`~dicomnet._codec.pdu.PDUReader` itself -- no event
objects, no PDV objects, no Python call per read -- and:

* a PDU that is one whole command set (one PDV, command, last fragment) goes
  to the assembler's own ``feed`` (which decodes it and asks the sink factory
  for the file), so a new message starts exactly as on the general path;
* a PDU of data set PDVs for the message in progress, whose sink is a
  :class:`dicomnet.dimse.scp.StoreSink` with its file open, is written to
  that file here, with the GIL released. The message its last fragment
  completes is committed and answered here too when there is nothing but
  success to say (no ``on_store``, a healthy sink, a plain TCP socket: the
  file renamed into place, the C-STORE-RSP sent or batched as
  ``handle_store`` does); otherwise it is returned for the server to answer;
* a data set held in memory (no sink: a handler with ``on_store`` only, or
  ``store_destination`` saying None) has its big PDVs received straight into
  its buffer by the reader's router
  (:meth:`~dicomnet.dimse.assembler.MessageAssembler.direct_target`), the
  lane waiting for the rest of each without the GIL; each placed PDV, and
  each PDV too small to be placed, goes to the assembler's ``feed`` (one
  call per PDU, which only counts a placed PDV's bytes). The message the
  last one completes is returned for the server to answer (``on_store``).

When the lane needs bytes it first reads what a plain socket already holds,
without waiting (at a PDU boundary, or when at most 64 KiB of a PDU is
missing). For the rest of a PDU on a plain socket it then waits itself,
without the GIL, until the whole PDU is in -- as the driver's own wait
would: its busy poll, the PDU's deadline, the server's interrupt -- so a big
PDU costs one wait and about one read, not a Python call per read (measured:
2-3% on 500 CT). At a PDU boundary, and whenever that wait cannot finish (a
timeout, an interrupt, a closed transport, TLS), ``run`` returns True and
the driver waits and reports (:meth:`SyncDriver.fill`).

Everything else -- any other PDU type, a PDV shape or context that is not
the plain case, a sink that failed, queued events, DEBUG logging -- is left
where it is: ``run`` returns False and the general path
(:meth:`Connection.buffer_updated`, the assembler, the state machine) takes
the PDU, with the same checks and the same answers as ever.
Between calls the message in progress lives in the assembler and its sink,
as on the general path, so either path can take the next PDU, and an abort
discards the temporary file the same way.

What the lane checks itself is what lets it decline: the PDU header (type,
length within our maximum), each PDV item length and presentation context
(accepted on this association), the command/last bits, and that a data set
PDV belongs to the message in progress. A PDU that fails any of these is
declined, and the general path raises or aborts for it.
"""
from cpython.buffer cimport PyBUF_WRITABLE, PyObject_GetBuffer, PyBuffer_Release
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.errno cimport errno, EINTR, EAGAIN  # EWOULDBLOCK is EAGAIN on Linux and macOS
from libc.string cimport memcpy

from dicomnet._codec.dimse cimport store_rsp_bytes
from dicomnet._codec.pdu cimport PDUReader, _be32, _put_be32
from dicomnet._codec.waits cimport spin_ready

import logging
import os
import time

cdef object _fsencode = os.fsencode
cdef object _strerror = os.strerror
cdef object _monotonic = time.monotonic
cdef object _LIBRARY_LOG = logging.getLogger("dicomnet")     # the assembler's

cdef extern from "<stdio.h>" nogil:
    int rename(const char* old, const char* new)

cdef extern from "Python.h":
    bytes PyUnicode_EncodeFSDefault(object s)      # os.fsencode of a str

# The system calls of the lane, behind names of our own: POSIX here; on
# Windows (where dicomnet.dimse.scp.attach makes no lane) stand-ins that
# fail, which keep the module building with MSVC.
cdef extern from *:
    """
    #if defined(_WIN32)
    #include <errno.h>
    #include <io.h>
    #ifndef ENOSYS
    #define ENOSYS 40
    #endif
    typedef struct { void* iov_base; size_t iov_len; } dn_iovec;
    static Py_ssize_t dn_writev(int fd, const dn_iovec* iov, int n) {
        (void)fd; (void)iov; (void)n; errno = ENOSYS; return -1;
    }
    static Py_ssize_t dn_recv_now(int fd, void* buf, size_t n) {
        (void)fd; (void)buf; (void)n; errno = ENOSYS; return -1;
    }
    static Py_ssize_t dn_send(int fd, const void* buf, size_t n) {
        (void)fd; (void)buf; (void)n; errno = ENOSYS; return -1;
    }
    static int dn_wait_in(int fd, int other, int timeout_ms) {
        (void)fd; (void)other; (void)timeout_ms; errno = ENOSYS; return -1;
    }
    static int dn_close(int fd) { return _close(fd); }
    static long long dn_now_ns(void) { return 0; }
    #else
    #include <errno.h>
    #include <poll.h>
    #include <sys/socket.h>
    #include <sys/uio.h>
    #include <time.h>
    #include <unistd.h>
    typedef struct iovec dn_iovec;
    static Py_ssize_t dn_writev(int fd, const dn_iovec* iov, int n) { return writev(fd, iov, n); }
    /* What the socket holds already, without waiting. */
    static Py_ssize_t dn_recv_now(int fd, void* buf, size_t n) { return recv(fd, buf, n, MSG_DONTWAIT); }
    static Py_ssize_t dn_send(int fd, const void* buf, size_t n) {
    #ifdef MSG_NOSIGNAL
        return send(fd, buf, n, MSG_NOSIGNAL);
    #else
        return send(fd, buf, n, 0);         /* Python ignores SIGPIPE */
    #endif
    }
    /* Wait at most timeout_ms (0: just look) for input on fd and/or other
       (-1: not there): 1 when fd is readable (or in error: a read will tell),
       2 when other is, 3 both, 0 neither; -1 and errno on failure. */
    static int dn_wait_in(int fd, int other, int timeout_ms) {
        struct pollfd fds[2];
        int n = 0, at_fd = -1, at_other = -1, result = 0;
        if (fd >= 0) { fds[n].fd = fd; fds[n].events = POLLIN; fds[n].revents = 0; at_fd = n++; }
        if (other >= 0) { fds[n].fd = other; fds[n].events = POLLIN; fds[n].revents = 0; at_other = n++; }
        if (poll(fds, (nfds_t)n, timeout_ms) < 0)
            return -1;
        if (at_fd >= 0 && fds[at_fd].revents) result |= 1;
        if (at_other >= 0 && fds[at_other].revents) result |= 2;
        return result;
    }
    static int dn_close(int fd) { return close(fd); }
    static long long dn_now_ns(void) {      /* spans only: see _deadline_ns */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    }
    #endif
    """
    ctypedef struct dn_iovec:
        void* iov_base
        size_t iov_len
    Py_ssize_t dn_writev(int fd, const dn_iovec* iov, int n) nogil
    Py_ssize_t dn_recv_now(int fd, void* buf, size_t n) nogil
    Py_ssize_t dn_send(int fd, const void* buf, size_t n) nogil
    int dn_wait_in(int fd, int other, int timeout_ms) nogil
    int dn_close(int fd) nogil
    long long dn_now_ns() nogil

cdef enum:
    PDU_HEADER = 6
    PDV_HEADER = 6
    MAX_PDVS = 16       # more PDVs in one P-DATA-TF: the general path takes it
    DEBUG = 10          # logging.DEBUG
    READ_AT_ONCE = 65536    # the rest of a PDU up to this size is read without waiting
    SPIN_MISSES = 2         # the driver's _SPIN_MISSES

cdef long long MAX_POLL_NS = 60 * 1000000000LL      # one poll() of the lane's waits at most
cdef double FAR_AWAY = 9.0e9                        # seconds: a deadline past it (read_timeout=inf) is never

# How a wait of the lane's own ended (_await_bytes).
cdef enum:
    GOT_ALL = 0
    PEER_CLOSED = 1
    FAILED = 2
    TIMED_OUT = 3
    INTERRUPTED = 4


cdef int _await_bytes(int fd, int other, char* buf, Py_ssize_t room, Py_ssize_t need,
                      long long deadline_ns, long long* budget_ns, int* misses,
                      Py_ssize_t* got, int* reads, int* err) noexcept nogil:
    """Read from ``fd`` into ``buf`` (``room`` bytes) until at least ``need``
    bytes came, waiting as SyncDriver._wait does: a busy poll of at most
    ``budget_ns`` while spinning pays (``misses``: the driver's count of
    waits in a row a spin did not shorten), else poll() until
    ``deadline_ns``; ``other`` (the interrupt fd, or -1) readable ends the
    wait. Returns GOT_ALL or why it stopped; ``got`` says how much came."""
    cdef Py_ssize_t n
    cdef long long now, left, started
    cdef int ready
    while True:
        n = dn_recv_now(fd, buf + got[0], <size_t>(room - got[0]))
        reads[0] += 1
        if n > 0:
            got[0] += n
            if got[0] >= need:
                return GOT_ALL
            continue
        if n == 0:
            return PEER_CLOSED
        if errno == EINTR:
            continue
        if errno != EAGAIN:
            err[0] = errno
            return FAILED
        now = dn_now_ns()
        if now >= deadline_ns:
            return TIMED_OUT
        left = deadline_ns - now
        if budget_ns[0] > 0 and misses[0] < SPIN_MISSES:
            ready = spin_ready(fd, other, budget_ns[0] if budget_ns[0] < left else left)
            if ready > 0:
                misses[0] = 0
                if ready & 2:
                    return INTERRUPTED
                continue
            if ready < 0:
                budget_ns[0] = 0        # not offered here
            else:
                misses[0] += 1
        if left > MAX_POLL_NS:
            left = MAX_POLL_NS          # (a long read_timeout: the deadline is looked at again)
        started = dn_now_ns()
        # poll() takes milliseconds; round up so a tiny remainder is not a busy loop.
        ready = dn_wait_in(fd, other, <int>(left // 1000000 + 1))
        if ready < 0:
            if errno == EINTR:
                continue
            err[0] = errno
            return FAILED
        if dn_now_ns() - started <= budget_ns[0]:
            misses[0] = 0
        if ready & 2:
            return INTERRUPTED


cdef long long _deadline_ns(double seconds):
    """``seconds`` from now on dn_now_ns's clock. Only a span crosses from
    Python's clock to C's: time.monotonic() and CLOCK_MONOTONIC are not the
    same clock everywhere (macOS: mach_absolute_time, which stops while the
    machine sleeps, and a CLOCK_MONOTONIC that does not)."""
    if not seconds < FAR_AWAY:
        return 9000000000000000000LL        # never
    if seconds < 0:
        seconds = 0
    return dn_now_ns() + <long long>(seconds * 1e9)


cdef class StoreLane:
    """The lane of one association (see the module docstring).

    ``conn`` is its :class:`~dicomnet.pdu.connection.Connection` (in Sta6),
    ``assoc`` its :class:`~dicomnet.association.Association`; ``sink_type``
    the streaming sink class whose files the lane writes to
    (:class:`dicomnet.dimse.scp.StoreSink`) and ``message_type`` the
    assembler's :class:`~dicomnet.dimse.assembler.Message`. ``answers``:
    whether plain streamed C-STOREs may be answered here (a server's lane);
    a client's lane (C-GET, :meth:`Association._receive_message`) returns
    every message, for the C-GET to answer and hand out.
    """

    cdef PDUReader reader
    cdef object conn
    cdef object assoc
    cdef object assembler
    cdef object contexts
    cdef object log
    cdef object sink_type
    cdef object message_type
    cdef object driver
    cdef int sock_fd            # the plain TCP socket the lane reads and answers on; -1: the driver's only (TLS...)
    cdef int interrupt_fd       # the driver's (a server shutting down makes it readable), or -1
    cdef int defer_max          # response batching bounds: handle_store's (dicomnet.dimse.scp)
    cdef double defer_seconds
    cdef public double read_timeout
    """How long one PDU may take to arrive (seconds): the driver's
    ``read_timeout`` unless the owner sets another (a client's DIMSE timeout)."""
    cdef bint answers           # may answer plain streamed C-STOREs itself (a server's lane)
    cdef double _deadline       # when the PDU waited for must be in (0: no wait begun)
    cdef readonly Py_ssize_t pdus
    """P-DATA-TF PDUs the lane has taken (for tests and diagnostics)."""
    cdef readonly Py_ssize_t answered
    """C-STOREs the lane committed and answered itself."""
    cdef readonly Py_ssize_t reads
    """Reads the lane made itself (plain sockets)."""
    cdef readonly Py_ssize_t waits
    """Waits for the rest of a PDU the lane made itself (plain sockets)."""

    def __init__(self, conn, assoc, sink_type, message_type, int sock_fd=-1,
                 int defer_max=16, double defer_seconds=0.002, bint answers=True):
        self.reader = conn._reader
        self.conn = conn
        self.assoc = assoc
        self.assembler = assoc._assembler
        self.contexts = conn.negotiated.contexts
        self.log = assoc._log
        self.sink_type = sink_type
        self.message_type = message_type
        self.driver = assoc._driver
        self.sock_fd = sock_fd
        interrupt = self.driver._interrupt_fd
        self.interrupt_fd = -1 if interrupt is None else interrupt
        self.defer_max = defer_max
        self.defer_seconds = defer_seconds
        self.read_timeout = self.driver.read_timeout
        self.answers = answers
        self._deadline = 0
        self.pdus = 0
        self.answered = 0
        self.reads = 0
        self.waits = 0

    @property
    def deadline(self):
        """When the PDU the lane waits for must be in (``time.monotonic()``
        time): what :meth:`SyncDriver.fill` gets after :meth:`run` returned
        True. Each PDU has ``read_timeout`` from the first wait for it,
        however many reads it takes (as on the general path: one
        ``Association._next(per_pdu=True)`` PDU)."""
        return self._deadline if self._deadline else None

    def run(self):
        """Take what the lane can of the PDUs received so far.

        Returns a completed message (to be answered), True when the lane
        needs more bytes (:meth:`SyncDriver.fill`, until :attr:`deadline`),
        or False when the next PDU -- or an event already queued -- is for
        the general path. Raises what the assembler raises for a command set
        it takes (PDUError: abort, as on the general path).
        """
        result = self._run()
        if result is True:
            if not self._deadline:
                self._deadline = _monotonic() + self.read_timeout
        else:
            self._deadline = 0
        return result

    cdef object _run(self):
        cdef PDUReader r = self.reader
        cdef const unsigned char* p
        cdef const unsigned char* body
        cdef Py_ssize_t avail, plen
        cdef int count, i, context_id
        cdef bint in_memory
        cdef Py_ssize_t offsets[MAX_PDVS]
        cdef Py_ssize_t lengths[MAX_PDVS]
        cdef unsigned char controls[MAX_PDVS]
        cdef int context_ids[MAX_PDVS]
        conn = self.conn
        assembler = self.assembler
        if self.log.isEnabledFor(DEBUG) or _LIBRARY_LOG.isEnabledFor(DEBUG):
            return False        # the general path logs every message
        if not self._plain():
            return False
        while True:
            if conn._state != "Sta6" or conn._events or conn._stream_broken or self.assoc._ready:
                return False
            if r._direct is not None:
                # A data set PDV being received straight into the data set's
                # memory (the router, MessageAssembler.direct_target).
                if r._direct_filled < r._direct_size:
                    if self._await(r._direct_size - r._direct_filled):
                        continue
                    return True
                message = self._placed()
                if message is not None:
                    return message
                continue
            avail = r._end - r._start
            if avail < PDU_HEADER:
                if self._recv():
                    if not self._plain():
                        return False
                    continue
                return True
            p = r._chunk.data + r._start
            if p[0] != 4:
                return False
            plen = _be32(p + 2)
            if r._max_pdu_length and plen > r._max_pdu_length:
                return False
            if avail - PDU_HEADER < plen:
                # Most of a big PDU still to come: wait for all of it (a read
                # at once would take only what came since the last).
                if plen - (avail - PDU_HEADER) <= READ_AT_ONCE and self._recv():
                    if not self._plain():
                        return False
                    continue
                if self._await(plen - (avail - PDU_HEADER)):
                    if not self._plain():
                        return False
                    continue
                return True
            body = p + PDU_HEADER
            count = self._items(body, plen, context_ids, controls, offsets, lengths)
            if count <= 0:
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
            # Data set fragments of the message in progress: to its file, or
            # to its buffer in memory.
            sink = assembler._sink
            if assembler._command is None or assembler._direct is not None:
                return False
            in_memory = sink is None
            if not in_memory and type(sink) is not self.sink_type:
                return False
            context_id = assembler._context_id
            for i in range(count):
                if context_ids[i] != context_id or (controls[i] & 1) or ((controls[i] & 2) and i != count - 1):
                    return False
            if in_memory:
                # Copied into the data set's buffer by the assembler, as on the
                # general path (PDVs too small to be placed directly: the last
                # of a data set, a small Identifier; several in one PDU).
                begin = r._start + PDU_HEADER
                view = memoryview(r._chunk)[begin:begin + plen]
                self._consume(plen)
                message = None
                for i in range(count):
                    message = assembler.feed(context_id, False, (controls[i] & 2) != 0,
                                             view[offsets[i]:offsets[i] + lengths[i]])
                del view
                if message is not None:
                    return message
                continue
            for i in range(count):
                self._write(sink, body + offsets[i], lengths[i])
            assembler._size += plen - PDV_HEADER * count
            self._consume(plen)
            if controls[count - 1] & 2:
                command = assembler._command
                assembler._reset()
                if self._answer(context_id, command, sink):
                    continue
                message = self.message_type(context_id, command)
                message.sink = sink
                return message

    cdef bint _recv(self) except -1:
        """What the socket holds already, read without waiting into the
        reader (a plain socket only): True when bytes came. Nothing yet, or a
        transport that is gone (the driver closes it, as after its own read,
        and the Connection learns of it), gives False: the caller returns
        True, and the driver waits or reports."""
        cdef Py_buffer buf
        cdef Py_ssize_t n
        cdef int err
        if self.sock_fd < 0 or self.driver.sock is None:
            return False
        # A peer that never pauses must not keep a shutting-down server
        # waiting: the driver's wait notices the interrupt and raises.
        if self.interrupt_fd >= 0 and dn_wait_in(-1, self.interrupt_fd, 0) > 0:
            return False
        window = self.reader.get_buffer(-1)
        PyObject_GetBuffer(window, &buf, PyBUF_WRITABLE)
        try:
            while True:
                with nogil:
                    n = dn_recv_now(self.sock_fd, buf.buf, <size_t>buf.len)
                if n >= 0 or errno != EINTR:
                    break
            err = errno
        finally:
            PyBuffer_Release(&buf)
        del window      # the reader grows its block in place only when no view of it is alive
        self.reads += 1
        if n > 0:
            self.conn.buffer_filled(n, _monotonic())
            return True
        if n == 0:
            self.driver._log.debug("peer closed the TCP connection")
            self.driver.close()         # tells the Connection (Evt17)
        elif err != EAGAIN:
            self.driver._transport_failed(OSError(err, _strerror(err)))
        return False

    cdef bint _await(self, Py_ssize_t missing) except -1:
        """Wait for the ``missing`` bytes of the PDU being received, without
        the GIL, and put what comes into the reader (a plain socket only):
        True once they are all here. What SyncDriver.fill would do -- answers
        queued for the peer go out first, the wait spins and blocks as the
        driver's does (its busy-poll budget and state), and it ends at the
        PDU's deadline or the server's interrupt -- without a Python call
        per read. False when it did not get them all: the caller returns
        True, and the driver's own wait reports the timeout, the interrupt or
        the closed transport (the lane closes a failed one, as the driver
        does after its own read)."""
        cdef Py_buffer buf
        cdef Py_ssize_t got = 0, need
        cdef long long budget_ns, deadline_ns
        cdef int misses, outcome, reads = 0, err = 0
        cdef int fd = self.sock_fd
        cdef int other = self.interrupt_fd
        driver = self.driver
        if fd < 0 or driver.sock is None:
            return False
        conn = self.conn
        if conn.wants_flush:
            driver.flush()              # batched answers go out before any wait
            if driver.sock is None or conn._events:
                return False
        if not self._deadline:
            self._deadline = _monotonic() + self.read_timeout
        deadline_ns = _deadline_ns(self._deadline - _monotonic())
        budget = driver.busy_poll
        budget_ns = 0 if not budget > 0 else (<long long>(budget * 1e9) if budget < 60.0 else MAX_POLL_NS)
        misses = driver._spin_misses
        self.waits += 1
        window = self.reader.get_buffer(missing)
        PyObject_GetBuffer(window, &buf, PyBUF_WRITABLE)
        try:
            need = missing if missing < buf.len else buf.len
            with nogil:
                outcome = _await_bytes(fd, other, <char*>buf.buf, buf.len, need, deadline_ns, &budget_ns,
                                       &misses, &got, &reads, &err)
        finally:
            PyBuffer_Release(&buf)
        del window      # the reader grows its block in place only when no view of it is alive
        driver._spin_misses = misses
        if budget_ns == 0 and budget > 0:
            driver.busy_poll = 0.0
        self.reads += reads
        if got:
            conn.buffer_filled(got, _monotonic())
        if outcome == PEER_CLOSED:
            driver._log.debug("peer closed the TCP connection")
            driver.close()              # tells the Connection (Evt17)
        elif outcome == FAILED:
            driver._transport_failed(OSError(err, _strerror(err)))
        return outcome == GOT_ALL

    cdef bint _plain(self) except -1:
        """Whether every whole PDU buffered is a P-DATA-TF of well-formed PDV
        items on accepted contexts, and the header of a partial one says
        P-DATA-TF within our maximum. Otherwise the general path takes all of
        them: a Connection acts on every PDU of a read at once (so a bad PDU
        aborts before the answers to the good ones read with it), and so must
        what the peer sees when the lane is in use."""
        cdef PDUReader r = self.reader
        cdef const unsigned char* data = r._chunk.data
        cdef Py_ssize_t pos = r._start, plen
        while r._end - pos >= PDU_HEADER:
            if data[pos] != 4:
                return False
            plen = _be32(data + pos + 2)
            if r._max_pdu_length and plen > r._max_pdu_length:
                return False
            if r._end - pos - PDU_HEADER < plen:
                return True
            if self._items(data + pos + PDU_HEADER, plen, NULL, NULL, NULL, NULL) <= 0:
                return False
            pos += PDU_HEADER + plen
        return True

    cdef int _items(self, const unsigned char* body, Py_ssize_t plen, int* context_ids,
                    unsigned char* controls, Py_ssize_t* offsets, Py_ssize_t* lengths) except -2:
        """The PDV items of a P-DATA-TF body of ``plen`` bytes, checked as
        pdata_pdvs checks them (item lengths, accepted contexts): their count,
        or 0 when the body is not that (or holds over MAX_PDVS items). Their
        fields go to the arrays, when given."""
        cdef Py_ssize_t pos = 0, ilen
        cdef int count = 0, context_id
        while pos < plen:
            if count == MAX_PDVS or plen - pos < 4:
                return 0
            ilen = _be32(body + pos)
            if ilen < 2 or ilen > plen - pos - 4:
                return 0
            context_id = body[pos + 4]
            if context_id not in self.contexts:
                return 0
            if context_ids != NULL:
                context_ids[count] = context_id
                controls[count] = body[pos + 5]
                offsets[count] = pos + PDV_HEADER
                lengths[count] = ilen - 2
            count += 1
            pos += 4 + ilen
        return count

    cdef bint _answer(self, int context_id, object command, object sink) except -1:
        """A streamed C-STORE whose data set is in: commit it and answer here
        -- what handle_store does -- when there is nothing but success to say
        (no ``on_store``, the sink healthy, a plain socket to answer on).
        False leaves the message to handle_store; a commit that fails first
        fails the sink, so handle_store answers that failure as ever."""
        cdef PDUReader r = self.reader
        cdef bytes encoded, out
        cdef bytes tmp_b, path_b
        cdef unsigned char* h
        cdef Py_ssize_t n, sent
        cdef int fd, err
        cdef double started, now
        if (not self.answers or self.sock_fd < 0 or self.assoc._on_store is not None or sink.error is not None
                or sink._fd < 0):
            return False
        if len(sink._head):
            return False            # an empty data set: the File Meta still to write
        conn = self.conn
        encoded = store_rsp_bytes(command.message_id or 0, command.get("AffectedSOPClassUID"),
                                 command.get("AffectedSOPInstanceUID"), 0)
        if encoded is None:
            return False
        n = len(encoded)
        peer_max = conn.negotiated.peer_max_pdu
        if peer_max and n + 6 > peer_max:
            return False
        started = _monotonic()
        # StoreSink.commit: close, then rename into place.
        fd = sink._fd
        sink._fd = -1
        if dn_close(fd) != 0:
            err = errno
            sink._fail(OSError(err, _strerror(err)))
            return False
        tmp, path = sink._tmp, sink.path
        tmp_b = PyUnicode_EncodeFSDefault(tmp) if type(tmp) is str else _fsencode(tmp)
        path_b = PyUnicode_EncodeFSDefault(path) if type(path) is str else _fsencode(path)
        if rename(<const char*>tmp_b, <const char*>path_b) != 0:
            err = errno
            sink._fail(OSError(err, _strerror(err), tmp, None, path))
            return False
        sink._tmp = ""
        self.answered += 1
        # The C-STORE-RSP, as one P-DATA-TF (pdata_pdu).
        out = PyBytes_FromStringAndSize(NULL, 12 + n)
        h = <unsigned char*>PyBytes_AS_STRING(out)
        h[0] = 4
        h[1] = 0
        _put_be32(h + 2, n + 6)
        _put_be32(h + 6, n + 2)
        h[10] = <unsigned char>context_id
        h[11] = 3
        memcpy(h + 12, PyBytes_AS_STRING(encoded), <size_t>n)
        assoc = self.assoc
        now = _monotonic()
        if now - started < self.defer_seconds and (assoc._ready or conn._events or r.pdu_complete):
            # More requests are here already: answer them together (handle_store).
            conn._out.append(out)
            since = assoc._deferred_since
            if since is None:
                assoc._deferred_since = since = now
                assoc._deferred = 0
            assoc._deferred += 1
            if assoc._deferred < self.defer_max and now - since < self.defer_seconds:
                return True
            self.driver.flush()
        elif conn._out:
            conn._out.append(out)
            self.driver.flush()
        else:
            with nogil:
                sent = dn_send(self.sock_fd, <const char*>h, <size_t>(12 + n))
            if sent < 0:
                err = errno
                if err == EAGAIN or err == EINTR:
                    sent = 0
                else:
                    self.driver._transport_failed(OSError(err, _strerror(err)))
                    assoc._deferred_since = None
                    return True
            if sent < 12 + n:
                conn._out.append(out[sent:])
                self.driver.flush()
        assoc._deferred_since = None
        return True

    cdef object _placed(self):
        """The PDV the router placed is all here: the PDU is taken (what
        next_pdu and the Connection do for it) and the PDV fed to the
        assembler, which only counts its bytes. The message it completes, or
        None."""
        cdef PDUReader r = self.reader
        placed = r._direct
        r._direct = None
        r._after_direct = True      # the next read stops after the next PDU's headers
        self._deadline = 0
        self.conn.pdata_events += 1
        self.conn.pdata_taken += 1
        self.pdus += 1
        return self.assembler.feed(r._direct_context, False, r._direct_last, placed)

    cdef void _consume(self, Py_ssize_t plen):
        """The PDU at the reader's start is taken (what next_pdu does, and the
        Connection's count of P-DATA indications given and handled); the wait
        for the next one starts its own read_timeout."""
        cdef PDUReader r = self.reader
        r._start += PDU_HEADER + plen
        self._deadline = 0      # the next PDU has its own read_timeout
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
        cdef dn_iovec iov[2]
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
                done = dn_writev(fd, iov, k)
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

