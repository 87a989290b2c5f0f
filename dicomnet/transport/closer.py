"""Sta13 after our own A-ABORT: the transport stays open until the peer closes it
or ARTIM expires (PS3.8 Table 9-10, AA-1/AA-8 then AR-5/AA-2).

Closing at once would also risk a TCP reset that destroys the A-ABORT just sent,
when input is still unread. Nobody should wait for this, though: not a client
whose ``abort()`` or failed request raises at once, nor a server thread that
could serve the next association. So the socket is adopted by one background
thread that reads and drops what the peer still sends, and closes it when the
peer closes its end (or the connection fails) or at the ARTIM deadline. The
thread exists only while it holds sockets, and it holds at most
``MAX_PENDING``: past that the one due first is closed at once, so peers that
never close cannot pile up descriptors.
"""
from __future__ import annotations

import selectors
import socket
import ssl
import threading
import time

__all__ = ["adopt", "pending", "MAX_PENDING"]

#: The most sockets held at once waiting for their peers.
MAX_PENDING = 256

_lock = threading.Lock()
_deadlines: dict[socket.socket, float] = {}
_selector: selectors.BaseSelector | None = None
_thread: threading.Thread | None = None
_wake_r: socket.socket | None = None
_wake_w: socket.socket | None = None


def adopt(sock: socket.socket, deadline: float) -> None:
    """Close ``sock`` once the peer has closed it, or at ``deadline``
    (``time.monotonic()``); whatever arrives meanwhile is dropped."""
    global _selector, _thread, _wake_r, _wake_w
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
        _deadlines[sock] = deadline
        if len(_deadlines) > MAX_PENDING:
            first = min(_deadlines, key=_deadlines.__getitem__)
            del _deadlines[first]
            _selector.unregister(first)
            first.close()
        try:
            _wake_w.send(b"\0")
        except OSError:  # the wake-up pipe is full: the thread is awake anyway
            pass


def pending() -> int:
    """How many sockets wait for their peer to close (for tests and diagnostics)."""
    with _lock:
        return len(_deadlines)


def _drain(sock: socket.socket) -> bool:
    """Read and drop what is there; True when the connection is over."""
    for _ in range(64):                          # bounded: others wait too
        try:
            if not sock.recv(65536):
                return True
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        except OSError:                          # reset, TLS error or close_notify: over
            return True
    return False


def _run(selector: selectors.BaseSelector, wake_r: socket.socket, wake_w: socket.socket) -> None:
    global _selector, _thread, _wake_r, _wake_w
    while True:
        with _lock:
            if not _deadlines:
                # Nothing left: end the thread (adopt starts another).
                _selector = _thread = _wake_r = _wake_w = None
                selector.close()
                wake_r.close()
                wake_w.close()
                return
            nearest = min(_deadlines.values())
        ready = selector.select(max(0.0, min(nearest - time.monotonic(), 3600.0)))
        done = []
        for key, _ in ready:
            sock = key.fileobj
            if sock is wake_r:
                try:
                    while wake_r.recv(4096):
                        pass
                except (BlockingIOError, InterruptedError):
                    pass
            elif _drain(sock):                    # type: ignore[arg-type]
                done.append(sock)
        now = time.monotonic()
        with _lock:
            done += [sock for sock, deadline in _deadlines.items() if deadline <= now and sock not in done]
            for sock in done:
                _deadlines.pop(sock, None)       # type: ignore[call-overload]
                try:
                    selector.unregister(sock)
                except (KeyError, ValueError):
                    pass
                sock.close()                      # type: ignore[union-attr]
