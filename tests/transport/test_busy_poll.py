"""Busy polling before a blocking read (dicomnet._codec.waits, SyncDriver.busy_poll)."""
from __future__ import annotations

import os
import socket
import sys
import threading
import time

import pytest

from dicomnet import Client, Server
from dicomnet._codec.waits import spin_readable
from dicomnet.pdu import events as ev
from dicomnet.transport import sync
from dicomnet.transport.sync import DEFAULT_BUSY_POLL, Interrupted, SyncDriver

from .test_sync import associated_pair

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="busy polling is not offered on Windows")


@posix_only
def test_spin_sees_input_that_is_already_there():
    a, b = socket.socketpair()
    with a, b:
        a.send(b"x")
        assert spin_readable(b.fileno(), -1, 1.0) == 1


@posix_only
def test_spin_gives_up_after_its_budget():
    a, b = socket.socketpair()
    with a, b:
        start = time.perf_counter()
        assert spin_readable(b.fileno(), -1, 0.002) == 0
        # At most the budget (it may stop sooner: a yield that took the CPU
        # away, which a VM's own scheduling does now and then).
        assert time.perf_counter() - start < 0.5


@posix_only
def test_spin_sees_input_that_arrives_while_it_looks():
    a, b = socket.socketpair()
    with a, b:
        timer = threading.Timer(0.01, a.send, (b"x",))
        start = time.perf_counter()
        timer.start()
        # The GIL is free: the timer thread runs. A spin may also give up
        # early (a yield that handed the CPU away, even to the timer thread,
        # says the CPU is in demand), so look until the byte is seen.
        while (got := spin_readable(b.fileno(), -1, 5.0)) == 0:
            assert time.perf_counter() - start < 5.0
        assert got == 1
        timer.join()


@posix_only
def test_spin_reports_the_other_fd():
    a, b = socket.socketpair()
    r, w = os.pipe()
    try:
        os.write(w, b"!")
        assert spin_readable(b.fileno(), r, 1.0) == 2
        a.send(b"x")
        assert spin_readable(b.fileno(), r, 1.0) == 3
    finally:
        a.close(), b.close(), os.close(r), os.close(w)


class SpinRecorder:
    """Stands in for spin_readable: records budgets, answers as told."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.budgets: list[float] = []

    def __call__(self, fd, other, seconds):
        self.budgets.append(seconds)
        return self.answers.pop(0) if self.answers else 0


def test_defaults_and_validation():
    assert DEFAULT_BUSY_POLL == pytest.approx(50e-6)
    assert Client("A").busy_poll == DEFAULT_BUSY_POLL
    assert Server("B").busy_poll == DEFAULT_BUSY_POLL
    for bad in (-1e-6, float("nan")):
        with pytest.raises(ValueError, match="busy_poll"):
            Client("A", busy_poll=bad)
        with pytest.raises(ValueError, match="busy_poll"):
            Server("B", busy_poll=bad)
    a, b = socket.socketpair()
    with a, b:
        from dicomnet.pdu.connection import Connection
        with pytest.raises(ValueError, match="busy_poll"):
            SyncDriver(a, Connection("requestor"), busy_poll=-1)


@posix_only
def test_driver_stops_spinning_after_two_misses_and_resumes_after_a_quick_wait(monkeypatch):
    req, acc = associated_pair(busy_poll=0.001)
    try:
        recorder = SpinRecorder([0, 0])
        monkeypatch.setattr(sync, "spin_readable", recorder)
        # Two waits the spin does not shorten (nothing arrives): two spins.
        assert acc._wait(0.01, writing=False) is False
        assert acc._wait(0.01, writing=False) is False
        assert recorder.budgets == [0.001, 0.001]
        # Now the driver blocks at once -- a slow wait keeps it that way ...
        assert acc._wait(0.01, writing=False) is False
        assert len(recorder.budgets) == 2
        # ... until a wait is over within the budget.
        req.conn.send_pdata(1, True, b"\0" * 8)
        req.flush()
        time.sleep(0.05)
        assert acc._wait(1.0, writing=False) is True
        assert len(recorder.budgets) == 2
        recorder.answers = [1]
        assert acc._wait(1.0, writing=False) is True
        assert recorder.budgets == [0.001, 0.001, 0.001]
    finally:
        req.close(), acc.close()


@posix_only
def test_a_spin_never_outlasts_the_wait_it_is_part_of(monkeypatch):
    req, acc = associated_pair(busy_poll=1.0)
    try:
        recorder = SpinRecorder([0])
        monkeypatch.setattr(sync, "spin_readable", recorder)
        acc._wait(0.002, writing=False)
        assert recorder.budgets == [0.002]
    finally:
        req.close(), acc.close()


def test_busy_poll_zero_never_spins(monkeypatch):
    recorder = SpinRecorder([])
    monkeypatch.setattr(sync, "spin_readable", recorder)
    req, acc = associated_pair(busy_poll=0)
    try:
        req.conn.send_pdata(1, True, b"\0" * 8)
        req.flush()
        assert isinstance(acc.receive_event(5), ev.PDataReceived)
        assert recorder.budgets == []
    finally:
        req.close(), acc.close()


@posix_only
def test_interrupt_fd_seen_by_the_spin_interrupts(monkeypatch):
    r, w = os.pipe()
    try:
        req, acc = associated_pair(busy_poll=1.0)
        acc._interrupt_fd = r
        os.write(w, b"!")
        start = time.perf_counter()
        with pytest.raises(Interrupted):
            acc._wait(5.0, writing=False)
        assert time.perf_counter() - start < 0.5
        req.close(), acc.close()
    finally:
        os.close(r), os.close(w)


@posix_only
def test_client_and_server_spin_for_replies(monkeypatch):
    calls = []
    real = sync.spin_readable

    def counting(fd, other, seconds):
        calls.append(seconds)
        return real(fd, other, seconds)

    monkeypatch.setattr(sync, "spin_readable", counting)
    server = Server("SCP", busy_poll=0.002).start("127.0.0.1", 0)
    try:
        with Client("SCU", busy_poll=0.003).associate("127.0.0.1", server.port, "SCP") as assoc:
            for _ in range(20):
                assert assoc.echo() == 0
    finally:
        server.shutdown()
    assert 0.003 in calls and 0.002 in calls


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_spin_gives_way_when_another_task_wants_the_cpu():
    # A busy process on our CPU: the first yield hands it the CPU, so the
    # spin looks once more and stops instead of spinning out its budget.
    import subprocess

    cpu = sorted(os.sched_getaffinity(0))[0]
    before = os.sched_getaffinity(0)
    busy = subprocess.Popen([sys.executable, "-c", "import os\nos.sched_setaffinity(0, {%d})\nwhile True: pass" % cpu])
    a, b = socket.socketpair()
    try:
        os.sched_setaffinity(0, {cpu})
        time.sleep(0.2)                      # the busy loop is running on that CPU
        start = time.perf_counter()
        assert spin_readable(b.fileno(), -1, 2.0) == 0
        assert time.perf_counter() - start < 0.5
    finally:
        os.sched_setaffinity(0, before)
        busy.kill()
        busy.wait()
        a.close(), b.close()
