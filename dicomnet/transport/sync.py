"""The blocking driver: one sans-IO :class:`~dicomnet.pdu.connection.Connection`
over one TCP socket, on the calling thread.

The socket is kept non-blocking; every wait is a ``poll``/``select`` bounded by
a deadline, so nothing here waits forever:

* reading: :meth:`SyncDriver.receive_event` waits for the next event at most
  ``timeout`` seconds (:class:`~dicomnet.errors.ReadTimeout`), and fires the
  Connection's own timer (ARTIM, or the requestor's wait for an A-ASSOCIATE
  answer) when :meth:`Connection.deadline` passes first;
* writing: :meth:`SyncDriver.flush` writes ``conn.data_to_send()`` with
  ``socket.sendmsg`` (scatter/gather: the small PDU headers and the caller's
  memoryviews go out without being joined) and raises
  :class:`~dicomnet.errors.WriteTimeout` when the peer takes nothing for
  ``write_timeout`` seconds.

Bytes are received straight into the Connection's buffer
(``recv_into(conn.get_buffer())``). When the Connection is back in Sta1 the
driver closes the socket itself; :meth:`SyncDriver.close` is idempotent.

An optional ``interrupt_fd`` (the read end of a socketpair that a server makes
readable when it shuts down) wakes a wait at once with :class:`Interrupted`.

Busy polling (``busy_poll`` seconds, default 50 us): before a read blocks, the
driver looks for input in a short loop that does not sleep
(:func:`dicomnet._codec.waits.spin_readable`: no GIL, the CPU yielded between
looks). A reply that comes within that time is then taken without the sleep
and wake-up that ``poll`` costs -- on a VM with the peers on two CPUs, about
25 us and a cold cache per wake-up, which made a C-ECHO round trip 93 us
instead of ~30. The spin is adaptive: after two waits in a row that it did not
shorten (replies that take longer: a peer writing a file, an idle
association) the driver blocks at once, and spins again once a wait is over
within the budget. So a spin costs at most twice the budget per slow phase,
and nothing on an idle association. ``busy_poll=0`` turns it off.
"""
from __future__ import annotations

import errno
import logging
import numbers
import select
import socket
import struct
import sys
import time
from collections.abc import Sequence
from typing import Any

from .._codec.waits import spin_readable
from ..errors import ARTIMTimeout, ConnectTimeout, ReadTimeout, WriteTimeout
from ..pdu import events as ev
from ..pdu.connection import Connection
from . import closer

__all__ = ["SyncDriver", "Interrupted", "open_connection", "path_rtt"]

_monotonic = time.monotonic
_IOV_MAX = 1024  # POSIX minimum for sendmsg's iovec count; batches never exceed it
_HAS_POLL = hasattr(select, "poll")
_HAS_SENDMSG = hasattr(socket.socket, "sendmsg")
_POLLIN = getattr(select, "POLLIN", 1) | getattr(select, "POLLPRI", 2)
_POLLOUT = getattr(select, "POLLOUT", 4)
_POLLERR = getattr(select, "POLLERR", 8) | getattr(select, "POLLHUP", 16) | getattr(select, "POLLNVAL", 32)
#: Default busy-poll budget (seconds) of a read wait; see the module docstring.
DEFAULT_BUSY_POLL = 50e-6
# Waits in a row that a spin did not shorten before the driver stops spinning.
_SPIN_MISSES = 2
#: The longest one wait given to the OS (seconds): poll() takes an int of
#: milliseconds and settimeout() a time_t, so a timeout of ``math.inf`` (no
#: limit) or one of years is waited out in slices of this; every wait loops
#: until its own deadline anyway.
MAX_OS_WAIT = 3600.0


def check_timeout(name: str, value: Any) -> float:
    """``value`` as a timeout in seconds: a positive real number, ``math.inf``
    meaning no limit. TypeError for anything else that is not a number (a
    string from a config file, say), ValueError for zero, a negative or NaN."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not seconds > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return seconds


class Interrupted(Exception):
    """The driver's ``interrupt_fd`` became readable (the owner is shutting down)."""


def open_connection(host: str, port: int, timeout: float) -> socket.socket:
    """Open a TCP connection to ``(host, port)`` within ``timeout`` seconds.

    Returns a non-blocking socket with TCP_NODELAY set. A connection that is not
    established in time raises :class:`ConnectTimeout`; a refused connection
    raises the ``OSError`` (``ConnectionRefusedError``) from the socket.
    """
    try:
        sock = socket.create_connection((host, port), timeout=min(timeout, MAX_OS_WAIT))
    except socket.timeout as exc:
        raise ConnectTimeout(f"no TCP connection to {host}:{port} within {timeout:g} s") from exc
    prepare_socket(sock)
    return sock


#: Linux's TCP_INFO and, in its ``struct tcp_info`` (include/uapi/linux/tcp.h),
#: the offsets of ``tcpi_rtt`` (smoothed) and ``tcpi_min_rtt`` (Linux >= 4.6):
#: unsigned 32-bit microseconds. (Other systems with a TCP_INFO lay it out
#: differently after the first fields.)
_TCP_INFO: int | None = getattr(socket, "TCP_INFO", None) if sys.platform.startswith("linux") else None
_TCPI_RTT, _TCPI_MIN_RTT = 68, 148


def path_rtt(sock: Any) -> float | None:
    """The round-trip time of the TCP path under ``sock`` in seconds, as the
    kernel measured it: the least it has seen (``tcpi_min_rtt``, so the delay
    of a queue that builds up does not count), else the smoothed one. None
    where the system does not say (not Linux, not a TCP socket)."""
    if _TCP_INFO is None or sock is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCPI_MIN_RTT + 4)
    except (OSError, ValueError, AttributeError):
        return None
    for offset in (_TCPI_MIN_RTT, _TCPI_RTT):
        if len(info) >= offset + 4:
            (micros,) = struct.unpack_from("=I", info, offset)
            if micros:
                return micros / 1e6
    return None


def prepare_socket(sock: socket.socket) -> None:
    """TCP_NODELAY on (a DIMSE exchange is many small PDUs), non-blocking mode."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # pragma: no cover - not a TCP socket (e.g. a socketpair in tests)
        pass
    sock.setblocking(False)


class SyncDriver:
    """Moves bytes between ``sock`` and ``conn`` on the calling thread.

    Not thread-safe: one thread drives one association. ``read_timeout`` is the
    default for :meth:`receive_event`; ``write_timeout`` bounds each stall of
    :meth:`flush` (the deadline restarts whenever the peer takes bytes).
    """

    def __init__(
        self,
        sock: socket.socket,
        conn: Connection,
        *,
        read_timeout: float = 30.0,
        write_timeout: float = 30.0,
        logger: logging.Logger | None = None,
        interrupt_fd: int | None = None,
        busy_poll: float = DEFAULT_BUSY_POLL,
    ) -> None:
        if read_timeout <= 0 or write_timeout <= 0:
            raise ValueError("read_timeout and write_timeout must be positive")
        if not busy_poll >= 0:
            raise ValueError("busy_poll must be >= 0 seconds")
        self.sock: socket.socket | None = sock
        self.conn = conn
        self.read_timeout = float(read_timeout)
        self.write_timeout = float(write_timeout)
        self._log = logger or logging.getLogger("dicomnet")
        self._interrupt_fd = interrupt_fd
        self._fd = sock.fileno()
        #: Busy-poll budget of a read wait, seconds (0: off). See the module docstring.
        self.busy_poll = float(busy_poll) if _HAS_POLL else 0.0
        #: False: close() closes at once even in Sta13 (a server shutting down).
        self.await_peer_close = True
        self._spin_misses = 0           # waits in a row the spin did not shorten
        #: True once the Connection's own timer fired (ARTIM / A-ASSOCIATE answer).
        self.timer_expired = False
        try:
            self.peer_address: tuple[str, int] | None = sock.getpeername()[:2]
        except OSError:
            self.peer_address = None
        if _HAS_POLL:
            self._poll_in = select.poll()
            self._poll_in.register(self._fd, _POLLIN)
            if interrupt_fd is not None:
                self._poll_in.register(interrupt_fd, _POLLIN)
            self._poll_out = select.poll()
            self._poll_out.register(self._fd, _POLLOUT)
            if interrupt_fd is not None:
                self._poll_out.register(interrupt_fd, _POLLIN)

    # ------------------------------------------------------------ lifetime
    @property
    def closed(self) -> bool:
        """True once the socket is closed."""
        return self.sock is None

    def path_rtt(self) -> float | None:
        """The round-trip time of the connection's TCP path (:func:`path_rtt`),
        or None when unknown or closed."""
        return path_rtt(self.sock)

    def close(self) -> None:
        """Close the socket (idempotent). The Connection is told if it still
        thought the transport was open, so its state stays consistent.

        In Sta13 (after an A-ABORT, A-RELEASE-RP or A-ASSOCIATE-RJ of ours) the
        socket is not closed before the peer closes it or ARTIM expires (PS3.8
        Table 9-10); the background
        :mod:`~dicomnet.transport.closer` waits for that, so this returns at
        once all the same. ``await_peer_close = False`` closes at once."""
        sock, self.sock = self.sock, None
        if sock is None:
            return
        try:
            conn = self.conn
            deadline = conn.deadline() if conn.state == "Sta13" else None
            if deadline is not None and self.await_peer_close and deadline > _monotonic():
                closer.adopt(sock, conn.handover())
            else:
                sock.close()
        finally:
            if not self.conn.closed and self.conn.state not in ("Sta1", "Sta4"):
                self.conn.connection_lost()

    # ------------------------------------------------------------- writing
    def flush(self) -> None:
        """Write everything the Connection has queued; close the socket if the
        Connection is done. Raises :class:`WriteTimeout` if the peer stalls."""
        conn = self.conn
        buffers = conn.data_to_send()
        if buffers:
            if self.sock is None:
                self._log.debug("dropping %d buffer(s): the transport is closed", len(buffers))
            else:
                self._write_all(buffers)
        if conn.wants_close and self.sock is not None:
            self.close()

    def _write_all(self, buffers: Sequence[bytes | memoryview]) -> None:
        sock = self.sock
        assert sock is not None
        if len(buffers) == 1 and type(buffers[0]) is bytes:
            # One small PDU (a command, a release, an abort): a plain send.
            single = buffers[0]
            try:
                sent = sock.send(single)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._transport_failed(exc)
                return
            if sent != len(single):
                self._write_rest(sock, buffers, sent)
            return
        if not _HAS_SENDMSG:
            for buf in buffers:
                self._write_one(sock, buf)
            return
        if len(buffers) <= _IOV_MAX:
            # The common case: the socket takes everything in one call.
            try:
                sent = sock.sendmsg(buffers)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._transport_failed(exc)
                return
            total = 0
            for buf in buffers:
                total += buf.nbytes if type(buf) is memoryview else len(buf)
            if sent == total:
                return
        else:
            sent = 0
        self._write_rest(sock, buffers, sent)

    def _write_rest(self, sock: socket.socket, buffers: Sequence[bytes | memoryview], sent: int) -> None:
        """Write ``buffers`` of which the first ``sent`` bytes are already out.

        Scatter/gather, at most _IOV_MAX buffers per sendmsg; a partial write
        replaces the first unfinished buffer by a memoryview of its rest (a view,
        never a copy of the payload)."""
        pending: list[bytes | memoryview] = [b for b in buffers if _nbytes(b)]
        index = 0
        deadline = _monotonic() + self.write_timeout
        while True:
            while sent:
                size = _nbytes(pending[index])
                if sent >= size:
                    sent -= size
                    index += 1
                else:
                    pending[index] = memoryview(pending[index]).cast("B")[sent:]
                    sent = 0
            if index >= len(pending):
                return
            try:
                sent = sock.sendmsg(pending[index:index + _IOV_MAX])
            except (BlockingIOError, InterruptedError):
                deadline = self._wait_writable(deadline)
                continue
            except OSError as exc:
                self._transport_failed(exc)
                return
            deadline = _monotonic() + self.write_timeout

    def _write_one(self, sock: socket.socket, buf: bytes | memoryview) -> None:
        view: bytes | memoryview = buf
        remaining = _nbytes(view)
        deadline = _monotonic() + self.write_timeout
        while remaining:
            try:
                sent = sock.send(view)
            except (BlockingIOError, InterruptedError):
                deadline = self._wait_writable(deadline)
                continue
            except OSError as exc:
                self._transport_failed(exc)
                return
            deadline = _monotonic() + self.write_timeout
            remaining -= sent
            if remaining:
                view = memoryview(view).cast("B")[sent:]

    def _wait_writable(self, deadline: float) -> float:
        remaining = deadline - _monotonic()
        if remaining <= 0:
            self._log.warning("peer took no data for %.1f s; closing the connection", self.write_timeout)
            self.close()
            raise WriteTimeout(f"the peer took no data for {self.write_timeout:g} s")
        self._wait(remaining, writing=True)
        return deadline

    # ------------------------------------------------------------- reading
    def receive_event(self, timeout: float | None = None) -> ev.Event:
        """The Connection's next event, reading from the socket as needed.

        Waits at most ``timeout`` seconds (default ``read_timeout``) and raises
        :class:`ReadTimeout` when nothing arrives; if the Connection's timer
        (:meth:`Connection.deadline`) falls due first it fires, which yields an
        event (:attr:`timer_expired` is then True). Anything the Connection
        queues for the peer meanwhile (an A-ABORT, say) is written at once.
        """
        conn = self.conn
        event = conn.next_event()
        if event is not None:
            return event
        limit = _monotonic() + (self.read_timeout if timeout is None else timeout)
        while True:
            if conn.wants_flush:
                self.flush()  # whatever the state machine answered meanwhile (AA-7, AR-4, ...)
                event = conn.next_event()
                if event is not None:
                    return event
            if self.sock is None:
                # Closed under us without the Connection noticing: report it once.
                if not conn.closed:
                    conn.connection_lost()
                    continue
                return ev.ConnectionClosed()
            left = self._time_left(limit, timeout)
            if left is None:
                continue                # the timer fired: its event, if any, is next
            if not self._wait(left, writing=False):
                continue
            self._receive_some()
            event = conn.next_event()
            if event is not None:
                if conn.wants_flush:
                    self.flush()  # what the state machine answered, before the caller sees the event
                return event

    def fill(self, deadline: float | None = None) -> None:
        """Wait for bytes as :meth:`receive_event` does and put them into the
        Connection's PDU reader *without acting on them*
        (:meth:`Connection.buffer_filled`): for a reader that takes the PDUs
        itself first (:class:`dicomnet._codec.lane.StoreLane`).

        ``deadline`` (``time.monotonic()`` time; default ``read_timeout`` from
        now) bounds the wait: past it, :class:`ReadTimeout`. A caller that
        waits for one message over several reads passes the same deadline to
        each, so that a peer trickling bytes cannot hold the association past
        ``read_timeout`` (as :meth:`receive_event` bounds one call). The
        Connection's timer fires when due. Returns after one read, or at once
        when the Connection has events queued or the transport is closed --
        :meth:`receive_event` reports those."""
        conn = self.conn
        limit = _monotonic() + self.read_timeout if deadline is None else deadline
        while True:
            if conn.wants_flush:
                self.flush()
            if self.sock is None:
                if not conn.closed:
                    conn.connection_lost()
                return
            if conn.events_pending:
                return
            left = self._time_left(limit, self.read_timeout)
            if left is None:
                return
            if self._wait(left, writing=False):
                self._receive_some(act=False)
                return

    def _time_left(self, limit: float, timeout: float | None) -> float | None:
        """Seconds a read may wait: until ``limit`` or the Connection's timer,
        whichever is first. None once the timer is due -- it is fired here
        (:attr:`timer_expired`). Past ``limit``, :class:`ReadTimeout` (the wait
        was for ``timeout`` seconds, default ``read_timeout``)."""
        conn = self.conn
        now = _monotonic()
        due = conn.deadline()
        wake = limit if due is None or due > limit else due
        if now < wake:
            return wake - now
        if due is not None and now >= due:
            self.timer_expired = True
            conn.timeout(now)
            if conn.deadline() == due:  # pragma: no cover - a timer that does not move on
                raise ARTIMTimeout("the association timer expired and the state machine did not act")
            return None
        raise ReadTimeout(f"nothing arrived from the peer for {self.read_timeout if timeout is None else timeout:g} s")

    def _receive_some(self, act: bool = True) -> None:
        """One ``recv_into`` straight into the Connection's buffer (``act``:
        the Connection acts on the complete PDUs at once, else they wait in
        its reader; see :meth:`fill`)."""
        sock = self.sock
        assert sock is not None
        window = self.conn.get_buffer(-1)
        try:
            n = sock.recv_into(window)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            failure: OSError | None = exc
            n = 0
        else:
            failure = None
        del window  # the reader may grow its block in place only when no view of it is alive
        if failure is not None:
            self._transport_failed(failure)
            return
        if n == 0:
            self._log.debug("peer closed the TCP connection")
            self._connection_over()
            return
        if act:
            self.conn.buffer_updated(n, _monotonic())
        else:
            self.conn.buffer_filled(n, _monotonic())

    def _transport_failed(self, exc: OSError) -> None:
        self._log.info("transport failed: %s", exc if exc.strerror else errno.errorcode.get(exc.errno or 0, exc))
        self._connection_over()

    def _connection_over(self) -> None:
        """The peer closed the connection, or it failed: Evt17 first (in Sta13,
        AR-5), so that close() closes the socket at once rather than wait for a
        close that has happened."""
        conn = self.conn
        if not conn.closed and conn.state not in ("Sta1", "Sta4"):
            conn.connection_lost()
        self.close()

    def _interrupted(self, writing: bool) -> None:
        # Mid-write the stream may end inside a PDU: nothing more can be sent
        # on it, so close now rather than let the caller append an A-ABORT.
        if writing:
            self.close()
        raise Interrupted()

    def _wait(self, seconds: float, *, writing: bool) -> bool:
        """Wait until the socket is ready (True) or ``seconds`` pass (False;
        at most :data:`MAX_OS_WAIT`). Raises :class:`Interrupted` if the
        interrupt fd became readable."""
        if seconds > MAX_OS_WAIT:
            seconds = MAX_OS_WAIT
        if _HAS_POLL:
            budget = self.busy_poll
            if budget and not writing:
                if self._spin_misses < _SPIN_MISSES:
                    ready_mask = spin_readable(self._fd, -1 if self._interrupt_fd is None else self._interrupt_fd,
                                               budget if budget < seconds else seconds)
                    if ready_mask > 0:
                        self._spin_misses = 0
                        if ready_mask & 2:
                            self._interrupted(writing)
                        return True
                    if ready_mask < 0:      # not offered on this platform
                        self.busy_poll = 0.0
                    else:
                        self._spin_misses += 1
                else:
                    # Not spinning: spin again once a wait is over within the budget.
                    start = _monotonic()
                    ready = self._poll_in.poll(seconds * 1000.0 + 1.0)
                    if _monotonic() - start <= budget:
                        self._spin_misses = 0
                    for fd, _ in ready:
                        if fd == self._interrupt_fd:
                            self._interrupted(writing)
                    return bool(ready)
            poller = self._poll_out if writing else self._poll_in
            # poll() takes milliseconds; round up so a tiny remainder is not a busy loop.
            ready = poller.poll(seconds * 1000.0 + 1.0)
            for fd, _ in ready:
                if fd == self._interrupt_fd:
                    self._interrupted(writing)
            return bool(ready)
        rlist = [] if writing else [self._fd]
        wlist = [self._fd] if writing else []
        if self._interrupt_fd is not None:
            rlist.append(self._interrupt_fd)
        r, w, x = select.select(rlist, wlist, [self._fd], seconds)
        if self._interrupt_fd is not None and self._interrupt_fd in r:
            self._interrupted(writing)
        return bool(r or w or x)


def _nbytes(buf: bytes | memoryview) -> int:
    return buf.nbytes if isinstance(buf, memoryview) else len(buf)
