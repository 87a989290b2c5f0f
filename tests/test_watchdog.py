"""dicomnet._watchdog: timing handler calls, giving up on them, dropping late results."""
from __future__ import annotations

import threading
import time

import pytest

from dicomnet._watchdog import GuardedHandler, HandlerAbandoned, HandlerWatchdog


class Expired:
    def __init__(self) -> None:
        self.guards: list = []
        self.event = threading.Event()

    def __call__(self, guard) -> None:
        self.guards.append((guard, time.monotonic()))
        self.event.set()


@pytest.fixture
def watchdog():
    expired = Expired()
    dog = HandlerWatchdog(0.2, expired)
    dog.start()
    yield dog, expired
    dog.stop()


def test_a_quick_call_passes_its_result_through(watchdog):
    dog, expired = watchdog
    guard = dog.register("peer")
    try:
        assert guard.call("on_echo", lambda x: x + 1, 41) == 42
        with pytest.raises(ValueError):
            guard.call("on_echo", _raise, ValueError("boom"))
    finally:
        dog.unregister(guard)
    time.sleep(0.3)
    assert expired.guards == []


def _raise(exc):
    raise exc


def test_a_hung_call_is_given_up_and_its_late_result_dropped(watchdog):
    dog, expired = watchdog
    release = threading.Event()
    outcome: list = []

    def association_thread():
        guard = dog.register("peer")
        try:
            outcome.append(guard.call("on_store", lambda: release.wait(5) and 0))
        except HandlerAbandoned as exc:
            outcome.append(("abandoned", str(exc)))
        finally:
            dog.unregister(guard)

    t0 = time.monotonic()
    thread = threading.Thread(target=association_thread)
    thread.start()
    assert expired.event.wait(3)
    guard, when = expired.guards[0]
    assert 0.15 < when - t0 < 0.5          # about handler_timeout, not at once and not much later
    assert guard.abandoned and guard.name == "on_store" and guard.thread is thread
    assert thread.is_alive() and outcome == []
    release.set()
    thread.join(3)
    assert outcome == [("abandoned", "on_store")]   # the handler returned 0, but nobody got it
    assert len(expired.guards) == 1


def test_an_exception_after_the_timeout_is_dropped_too(watchdog):
    dog, expired = watchdog
    release = threading.Event()
    outcome: list = []

    def late_failure():
        release.wait(5)
        raise RuntimeError("late")

    def association_thread():
        guard = dog.register("peer")
        try:
            guard.call("on_find", late_failure)
        except BaseException as exc:  # noqa: BLE001
            outcome.append(type(exc))

    thread = threading.Thread(target=association_thread)
    thread.start()
    assert expired.event.wait(3)
    release.set()
    thread.join(3)
    assert outcome == [HandlerAbandoned]


def test_each_step_of_a_returned_iterator_is_timed(watchdog):
    dog, expired = watchdog
    release = threading.Event()
    got: list = []

    def matches():
        for i in range(3):
            time.sleep(0.1)      # each step well within the timeout; all three together are not
            yield i
        release.wait(5)          # then one step hangs
        yield 99

    def association_thread():
        guard = dog.register("peer")
        try:
            for item in guard.call("on_find", matches):
                got.append(item)
        except HandlerAbandoned:
            got.append("abandoned")

    thread = threading.Thread(target=association_thread)
    thread.start()
    assert expired.event.wait(3)
    assert got == [0, 1, 2]
    release.set()
    thread.join(3)
    assert got == [0, 1, 2, "abandoned"]


def test_a_move_pair_keeps_its_shape_with_a_timed_iterator(watchdog):
    dog, _ = watchdog
    guard = dog.register("peer")
    try:
        address, instances = guard.call("on_move", lambda: (("127.0.0.1", 104), iter(["a", "b"])))
        assert address == ("127.0.0.1", 104)
        assert list(instances) == ["a", "b"] and type(instances).__name__ == "_GuardedIterator"
        as_list = guard.call("on_get", lambda: ["x"])
        assert as_list == ["x"]
    finally:
        dog.unregister(guard)


def test_guarded_handler_times_on_methods_and_passes_the_rest():
    expired = Expired()
    dog = HandlerWatchdog(0.2, expired)

    class App:
        archive = {"k": 1}

        def on_echo(self, ctx):
            return dog.current()

        def helper(self):
            return "plain"

    app = App()
    proxy = GuardedHandler(app, dog)
    assert proxy.__wrapped__ is app
    assert proxy.archive == {"k": 1} and proxy.helper() == "plain"
    assert getattr(proxy, "on_store", None) is None           # a missing method stays missing
    proxy.counter = 5
    assert app.counter == 5
    assert proxy.on_echo(None) is None                         # off an association thread: not timed
    assert proxy.on_echo is proxy.on_echo                      # the timed wrapper is made once ...
    app.on_echo = lambda ctx: "replaced"
    assert proxy.on_echo(None) == "replaced"                   # ... and remade when the method changes
    del app.on_echo
    guard = dog.register("peer")
    try:
        assert proxy.on_echo(None) is guard
        assert guard.deadline is None                          # the call is over
    finally:
        dog.unregister(guard)


def test_infinite_timeout_starts_no_thread_and_bad_timeouts_are_refused():
    dog = HandlerWatchdog(float("inf"), Expired())
    before = threading.active_count()
    dog.start()
    assert threading.active_count() == before
    dog.stop()
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError):
            HandlerWatchdog(bad, Expired())
