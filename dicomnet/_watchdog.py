"""The handler watchdog of :class:`dicomnet.Server`.

Each association runs its handler's methods on its own thread. A handler that
hangs (a database that never answers, a deadlock) would hold that thread and
its ``max_associations`` slot for ever. Python cannot kill a thread, so the
watchdog does the next best thing: when one handler call has run longer than
``handler_timeout`` it marks the association's :class:`HandlerGuard`
abandoned and asks the server to abort the association (A-ABORT to the peer,
socket closed) and release its slot. The stuck thread is left to run; when
its handler call finally returns (or raises), the guard raises
:class:`HandlerAbandoned` on that thread instead of handing the result back,
so the result is dropped and nothing touches the aborted association again.

Handler calls are timed through :class:`GuardedHandler`, a thin proxy the
server puts around the application's handler: every ``on_*`` method and
``store_destination`` is timed, and so is each step of an iterator one of them
returns (C-FIND matches, C-MOVE/C-GET instances produced lazily).

One watchdog thread serves a whole server; it sleeps until the earliest
deadline of a running handler call, and never longer than ``handler_timeout``
(with the default 30 s: one wake-up every 30 s when no handler runs).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from .transport.sync import MAX_OS_WAIT

__all__ = ["HandlerAbandoned", "HandlerGuard", "HandlerWatchdog", "GuardedHandler"]

_monotonic = time.monotonic


class HandlerAbandoned(BaseException):
    """Raised on an association's thread when its handler call returns after the
    watchdog gave up on it. A ``BaseException``: the ``except Exception`` that
    turns handler faults into failure statuses must not catch it -- there is no
    association left to answer on."""


class HandlerGuard:
    """The handler state of one association thread (see the module docstring).

    ``assoc`` is set once the association is established, ``driver`` before
    (the server's ``authenticate``/``extended_negotiation`` callbacks run then);
    the watchdog aborts whichever there is. ``aborter`` is the thread that does so, joined by the abandoned thread
    before it closes what is left."""

    __slots__ = ("watchdog", "thread", "peer", "assoc", "driver", "name", "started", "deadline", "depth",
                 "abandoned", "aborter")

    def __init__(self, watchdog: HandlerWatchdog, peer: str) -> None:
        self.watchdog = watchdog
        self.thread = threading.current_thread()
        self.peer = peer
        self.assoc: Any = None
        self.driver: Any = None      # before the association exists (negotiation callbacks)
        self.name = ""
        self.started = 0.0
        self.deadline: float | None = None
        self.depth = 0
        self.abandoned = False
        self.aborter: threading.Thread | None = None

    # enter/leave run around every handler call (every C-FIND match): they
    # take the watchdog's plain lock (a C-level context manager) and never wake
    # the watchdog -- it never sleeps past now + timeout, and a deadline set
    # now is now + timeout, so it wakes in time for every new call anyway.
    def enter(self, name: str) -> None:
        """A handler call starts."""
        watchdog = self.watchdog
        with watchdog._lock:
            if self.abandoned:
                raise HandlerAbandoned(name)
            self.depth += 1
            if self.depth == 1:
                self.name = name
                self.started = now = _monotonic()
                self.deadline = now + watchdog.timeout

    def leave(self) -> None:
        """The handler call returned or raised. Raises HandlerAbandoned if the
        watchdog gave up on it meanwhile (its result must be dropped)."""
        with self.watchdog._lock:
            self.depth -= 1
            if self.depth <= 0:
                self.depth = 0
                self.deadline = None
            if self.abandoned:
                raise HandlerAbandoned(self.name)

    def call(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` timed as handler call ``name``."""
        self.enter(name)
        try:
            result = fn(*args, **kwargs)
        finally:
            self.leave()     # raises HandlerAbandoned in place of a late result or exception
        if result is None or type(result) is int or type(result) is str:   # statuses, a store_destination path
            return result
        return _guard_result(result, self, name)


class HandlerWatchdog:
    """Times handler calls; calls ``on_expired(guard)`` (on the watchdog thread,
    once per guard) when one runs longer than ``timeout`` seconds."""

    def __init__(self, timeout: float, on_expired: Callable[[HandlerGuard], None], *,
                 logger: logging.Logger | None = None, name: str = "dicomnet-watchdog") -> None:
        if not timeout > 0:
            raise ValueError(f"handler_timeout must be positive, got {timeout!r}")
        self.timeout = float(timeout)
        self._on_expired = on_expired
        self._log = logger or logging.getLogger("dicomnet")
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._guards: dict[int, HandlerGuard] = {}     # thread ident -> guard
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._name = name

    # ------------------------------------------------------------ guards
    def register(self, peer: str) -> HandlerGuard:
        """A guard for the calling thread (an association's)."""
        guard = HandlerGuard(self, peer)
        with self._cond:
            self._guards[threading.get_ident()] = guard
        return guard

    def unregister(self, guard: HandlerGuard) -> None:
        with self._cond:
            ident = guard.thread.ident
            if ident is not None and self._guards.get(ident) is guard:
                del self._guards[ident]

    def current(self) -> HandlerGuard | None:
        """The calling thread's guard, if it has one."""
        return self._guards.get(threading.get_ident())

    # ------------------------------------------------------------ thread
    def start(self) -> None:
        if self._thread is None and self.timeout != float("inf"):
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        cond = self._cond
        with cond:
            while not self._stopped:
                now = _monotonic()
                due = self._expire(now)
                # Never longer than one timeout: a call that starts while we
                # sleep is due no earlier than that (see HandlerGuard.enter).
                # (At most MAX_OS_WAIT at a time: a wait past threading.TIMEOUT_MAX,
                # ~292 years but reachable with a large finite timeout, raises.)
                cond.wait(min(max((now + self.timeout if due is None else due) - now, 0.0), MAX_OS_WAIT))

    def _expire(self, now: float) -> float | None:
        """Abandon the guards past their deadline; the next deadline, if any.
        (A function of its own: a loop variable in _run would keep the last
        guard -- and through it a finished association and its buffers --
        alive while the watchdog sleeps.)"""
        due: float | None = None
        for guard in list(self._guards.values()):
            deadline = guard.deadline
            if deadline is None or guard.abandoned:
                continue
            if deadline <= now:
                guard.abandoned = True
                try:
                    self._on_expired(guard)
                except Exception:  # noqa: BLE001 - the watchdog must keep watching
                    self._log.exception("handler watchdog: aborting %s failed", guard.peer)
                # Abandoned guards leave the table: their threads are no longer ours.
                ident = guard.thread.ident
                if ident is not None and self._guards.get(ident) is guard:
                    del self._guards[ident]
            elif due is None or deadline < due:
                due = deadline
        return due


class _GuardedIterator:
    """An iterator a handler returned; each step is a timed handler call."""

    __slots__ = ("_it", "_guard", "_name")

    def __init__(self, it: Iterator[Any], guard: HandlerGuard, name: str) -> None:
        self._it = it
        self._guard = guard
        self._name = name

    def __iter__(self) -> _GuardedIterator:
        return self

    def __next__(self) -> Any:
        guard = self._guard
        guard.enter(self._name)
        try:
            return next(self._it)
        finally:
            guard.leave()          # HandlerAbandoned instead of a late match

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            self._guard.call(self._name + " (close)", close)


def _is_iterator(value: Any) -> bool:
    return hasattr(value, "__next__") and not isinstance(value, (str, bytes, tuple, list, dict))


def _guard_result(result: Any, guard: HandlerGuard, name: str) -> Any:
    """``result`` with a lazily produced part (an iterator) timed step by step.
    A ``(address, instances)`` pair (``on_move``) keeps its shape."""
    if _is_iterator(result):
        return _GuardedIterator(result, guard, name)
    if type(result) is tuple and len(result) == 2 and _is_iterator(result[1]):
        return (result[0], _GuardedIterator(result[1], guard, name))
    return result


#: Handler attributes that are timed (everything else is passed through).
def _timed(name: str) -> bool:
    return name.startswith("on_") or name == "store_destination"


class GuardedHandler:
    """The proxy :class:`dicomnet.Server` keeps as ``server.handler``: attribute
    access goes to the application's handler (``__wrapped__``); its ``on_*``
    methods and ``store_destination`` come back timed by the watchdog when
    called on an association thread."""

    __slots__ = ("__wrapped__", "_watchdog", "_timed")

    def __init__(self, handler: object, watchdog: HandlerWatchdog) -> None:
        object.__setattr__(self, "__wrapped__", handler)
        object.__setattr__(self, "_watchdog", watchdog)
        # name -> (the handler's attribute, its timed wrapper): made once per
        # method, remade if the handler's attribute changes.
        object.__setattr__(self, "_timed", {})

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.__wrapped__, name)
        if not _timed(name) or not callable(attr):
            return attr
        cached = self._timed.get(name)
        if cached is not None and cached[0] == attr:
            return cached[1]
        guards = self._watchdog._guards
        get_ident = threading.get_ident

        def timed(*args: Any, **kwargs: Any) -> Any:
            guard = guards.get(get_ident())
            if guard is None:          # not on an association thread (e.g. called by the application)
                return attr(*args, **kwargs)
            return guard.call(name, attr, *args, **kwargs)

        timed.__name__ = name
        timed.__wrapped__ = attr  # type: ignore[attr-defined]
        self._timed[name] = (attr, timed)
        return timed

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.__wrapped__, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self.__wrapped__, name)

    def __repr__(self) -> str:
        return f"<GuardedHandler {self.__wrapped__!r}>"
