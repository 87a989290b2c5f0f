"""A loopback TCP proxy that cuts, delays and fragments traffic at chosen byte offsets.

>>> with FaultProxy(("127.0.0.1", server_port), up=Plan(cut_at=5000)) as proxy:  # doctest: +SKIP
...     client.associate("127.0.0.1", proxy.port, ...)

``up`` shapes the client -> server direction, ``down`` the server -> client
one. A :class:`Plan` can

* ``cut_at``: forward exactly that many bytes, then reset both connections
  (SO_LINGER 0: the peers see ECONNRESET, as after a cable pull or a crash);
* ``delays``: ``{offset: seconds}`` -- stall once the stream reaches ``offset``;
* ``chunk``: forward at most this many bytes per ``send`` (a ``(lo, hi)`` pair
  picks a random size each time) with ``gap`` seconds between sends, so the
  receiver sees every possible split of headers and values.

Every connection through the proxy is handled by two pump threads; everything
is closed by :meth:`close` (also on ``__exit__``).
"""
from __future__ import annotations

import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType


@dataclass
class Plan:
    cut_at: int | None = None
    delays: dict[int, float] = field(default_factory=dict)
    chunk: int | tuple[int, int] | None = None
    gap: float = 0.0
    seed: int = 0


def _reset(sock: socket.socket) -> None:
    """Abortive close: RST, not FIN. SHUT_RD first wakes a pump thread blocked
    in recv() on this socket (a plain close() would wait for it)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class FaultProxy:
    def __init__(self, target: tuple[str, int], *, up: Plan | None = None, down: Plan | None = None) -> None:
        self.target = target
        self.up = up or Plan()
        self.down = down or Plan()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        #: Bytes forwarded per direction, summed over connections.
        self.forwarded = {"up": 0, "down": 0}
        self.cuts = 0
        self._cut: dict[int, bool] = {}
        self._accept = threading.Thread(target=self._accept_loop, name="fault-proxy-accept", daemon=True)
        self._accept.start()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _reset(sock)
        for thread in [self._accept, *self._threads]:
            thread.join(5.0)

    def _accept_loop(self) -> None:
        self._listener.settimeout(0.1)
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5.0)
            except OSError:
                _reset(client)
                continue
            for s in (client, upstream):
                s.settimeout(None)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = (client, upstream)
            with self._lock:
                self._sockets.extend(pair)
            for name, src, dst, plan in (("up", client, upstream, self.up), ("down", upstream, client, self.down)):
                t = threading.Thread(target=self._pump, args=(name, src, dst, plan, pair),
                                     name=f"fault-proxy-{name}", daemon=True)
                self._threads.append(t)
                t.start()

    def _pump(self, name: str, src: socket.socket, dst: socket.socket, plan: Plan,
              pair: tuple[socket.socket, socket.socket]) -> None:
        rng = random.Random(plan.seed)
        offset = 0
        pending_delays = sorted(plan.delays.items())
        try:
            while not self._closed.is_set():
                try:
                    data = src.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    if self._cut.get(id(pair)):
                        return  # woken by our own cut: no FIN after the RST
                    try:
                        dst.shutdown(socket.SHUT_WR)  # pass the orderly close on
                    except OSError:
                        pass
                    return
                view = memoryview(data)
                while len(view):
                    take = len(view)
                    if plan.chunk is not None:
                        size = plan.chunk if isinstance(plan.chunk, int) else rng.randint(*plan.chunk)
                        take = min(take, size)
                    if pending_delays:
                        take = min(take, max(1, pending_delays[0][0] - offset))
                    if plan.cut_at is not None:
                        take = min(take, plan.cut_at - offset)
                        if take <= 0:
                            with self._lock:
                                self.cuts += 1
                                self._cut[id(pair)] = True
                            for s in pair:
                                _reset(s)
                            return
                    dst.sendall(view[:take])
                    offset += take
                    with self._lock:
                        self.forwarded[name] += take
                    view = view[take:]
                    while pending_delays and offset >= pending_delays[0][0]:
                        time.sleep(pending_delays.pop(0)[1])
                    if plan.gap and len(view):
                        time.sleep(plan.gap)
                    if plan.cut_at is not None and offset >= plan.cut_at:
                        with self._lock:
                            self.cuts += 1
                            self._cut[id(pair)] = True
                        for s in pair:
                            _reset(s)
                        return
        except OSError:
            for s in pair:
                _reset(s)
