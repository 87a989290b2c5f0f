"""Sta13 after our own A-ABORT: the transport stays open until the peer closes it
or ARTIM expires (PS3.8 Table 9-10, AA-1/AA-8 then AR-5/AA-2).

Closing at once would also risk a TCP reset that destroys the A-ABORT just sent,
when input is still unread. Nobody should wait for this, though: not a client
whose ``abort()`` or failed request raises at once, nor a server thread that
could serve the next association. So the socket is adopted by one background
thread, with a Connection in Sta13 (:meth:`Connection.handover
<dicomnet.pdu.connection.Connection.handover>`) that acts on what the peer
still sends as the table says: a P-DATA-TF, A-RELEASE-RQ/RP or A-ASSOCIATE-AC/RJ
is ignored (AA-6), an A-ASSOCIATE-RQ or an unknown or malformed PDU is answered
with an A-ABORT (AA-7), and the peer's A-ABORT (AA-2), its close (AR-5) or
ARTIM's expiry (AA-2) closes the socket. The thread exists only while it holds
sockets, and it holds at most ``MAX_PENDING``: past that the one due first is
closed at once, so peers that never close cannot pile up descriptors. What the
table has us send goes out without blocking; a peer that does not read it
(``MAX_OUTPUT`` bytes behind) is closed on.
"""
from __future__ import annotations

import selectors
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..pdu.connection import Connection

__all__ = ["adopt", "pending", "idle", "MAX_PENDING", "MAX_OUTPUT"]

#: The most sockets held at once waiting for their peers.
MAX_PENDING = 256
#: The most bytes of our answers (A-ABORTs) a peer may leave unread before we close.
MAX_OUTPUT = 65536


class _Held:
    __slots__ = ("conn", "deadline", "out")

    def __init__(self, conn: Connection, deadline: float) -> None:
        self.conn = conn
        self.deadline = deadline
        self.out = bytearray()


_lock = threading.Lock()
_held: dict[socket.socket, _Held] = {}
_selector: selectors.BaseSelector | None = None
_thread: threading.Thread | None = None
_wake_r: socket.socket | None = None
_wake_w: socket.socket | None = None


def adopt(sock: socket.socket, conn: Connection) -> None:
    """Act on what the peer sends on ``sock`` as ``conn`` (a Connection in
    Sta13, from :meth:`Connection.handover`) says, and close ``sock`` when it
    says so: at the peer's A-ABORT or close, or at its ARTIM deadline."""
    global _selector, _thread, _wake_r, _wake_w
    deadline = conn.deadline()
    if conn.state != "Sta13" or deadline is None:
        sock.close()
        raise ValueError(f"only a connection waiting in Sta13 is adopted, not one in {conn.state}")
    try:
        sock.setblocking(False)
    except OSError:
        sock.close()
        return
    with _lock:
        if _thread is None:
            _selector = selectors.DefaultSelector()
            _wake_r, _wake_w = socket.socketpair()
            _wake_r.setblocking(False)
            _selector.register(_wake_r, selectors.EVENT_READ)
            _thread = threading.Thread(target=_run, args=(_selector, _wake_r, _wake_w),
                                       name="dicomnet-sta13", daemon=True)
            _thread.start()
        assert _selector is not None and _wake_w is not None
        try:
            _selector.register(sock, selectors.EVENT_READ)
        except (ValueError, KeyError, OSError):  # a closed or unusable socket: nothing to wait for
            sock.close()
            return
        _held[sock] = _Held(conn, deadline)
        if len(_held) > MAX_PENDING:
            first = min(_held, key=lambda s: _held[s].deadline)
            del _held[first]
            _selector.unregister(first)
            first.close()
        try:
            _wake_w.send(b"\0")
        except OSError:  # the wake-up pipe is full: the thread is awake anyway
            pass


def pending() -> int:
    """How many sockets wait for their peer to close (for tests and diagnostics)."""
    with _lock:
        return len(_held)


def idle() -> bool:
    """True when no closer thread runs: every socket it held is closed, and so
    are its own descriptors (for tests that count threads or descriptors)."""
    with _lock:
        thread = _thread
    return thread is None


def _read(sock: socket.socket, held: _Held) -> bool:
    """Act on what is there; True when the socket is to be closed."""
    conn = held.conn
    for _ in range(64):                          # bounded: others wait too
        try:
            view = conn.get_buffer(65536)
            n = sock.recv_into(view)
            del view
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            break
        except OSError:                          # reset, TLS error or close_notify: over
            return True
        if not n:
            conn.connection_lost()               # AR-5
            return True
        conn.buffer_updated(n, time.monotonic())
        while conn.next_event() is not None:     # (nobody listens any more)
            pass
        held.out += b"".join(conn.data_to_send())
        if conn.wants_close:                     # AA-2: the peer's A-ABORT
            return True
    return _write(sock, held)


def _write(sock: socket.socket, held: _Held) -> bool:
    """Send what the table had us answer, without blocking; True when the
    peer leaves too much of it unread (or the connection failed)."""
    if held.out:
        try:
            sent = sock.send(held.out)
            del held.out[:sent]
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except OSError:
            return True
    return len(held.out) > MAX_OUTPUT


def _run(selector: selectors.BaseSelector, wake_r: socket.socket, wake_w: socket.socket) -> None:
    global _selector, _thread, _wake_r, _wake_w
    while True:
        with _lock:
            if not _held:
                # Nothing left: end the thread (adopt starts another).
                _selector = _thread = _wake_r = _wake_w = None
                selector.close()
                wake_r.close()
                wake_w.close()
                return
            nearest = min(held.deadline for held in _held.values())
        ready = selector.select(max(0.0, min(nearest - time.monotonic(), 3600.0)))
        done = []
        for key, mask in ready:
            sock = key.fileobj
            if sock is wake_r:
                try:
                    while wake_r.recv(4096):
                        pass
                except (BlockingIOError, InterruptedError):
                    pass
                continue
            with _lock:
                held = _held.get(sock)           # type: ignore[call-overload]
            if held is None:                     # closed by adopt() meanwhile (MAX_PENDING)
                continue
            if _read(sock, held) if mask & selectors.EVENT_READ else _write(sock, held):  # type: ignore[arg-type]
                done.append(sock)
            else:
                events = selectors.EVENT_READ | (selectors.EVENT_WRITE if held.out else 0)
                if events != key.events:
                    with _lock:
                        if sock in _held:
                            selector.modify(sock, events)
        now = time.monotonic()
        with _lock:
            done += [sock for sock, held in _held.items() if held.deadline <= now and sock not in done]
            for sock in done:
                if _held.pop(sock, None) is None:   # type: ignore[call-overload]
                    continue
                try:
                    selector.unregister(sock)
                except (KeyError, ValueError):
                    pass
                sock.close()                      # type: ignore[union-attr]
