"""One Server, several byte-level peers at once: a hypothesis state machine.

The machine starts one in-process :class:`dicomnet.Server` (short timers:
ARTIM 0.6 s, read 1 s, write 1.5 s; max_dataset_bytes 256 KiB) whose handler
answers C-ECHO, stores C-STOREs in memory or streams them to a file (by the
parity of the SOP Instance UID: the compiled store lane and the general path),
yields C-FIND matches slowly (30 ms apart, checking ``ctx.cancelled``) and
serves C-GET and C-MOVE (to itself) from a tiny archive of three Part 10 files.
Up to four scripted peers -- raw sockets; PDUs and command sets built here with
``struct``, data sets with pydicom, no dicomnet encoder -- connect and
associate (validly, with small or no maximum PDU length, with an Asynchronous
Operations Window, or not validly), send C-ECHO, C-STORE, C-FIND, C-GET,
C-MOVE, C-CANCEL, unknown and malformed commands as P-DATA cut into PDVs, PDUs
and TCP writes in many ways (a request may trickle in over several steps;
several may go in one write or one PDU where the window allows), break
PS3.8/PS3.7 on purpose (command/data set and last-fragment bits, unaccepted
contexts, interleaved messages, data set before command, huge declared
lengths, truncated and stalled PDUs, unexpected PDUs, PDUs in Sta13), release
(also right behind a request), abort, half-close, reset, and stop reading for
a while; the rules interleave across the peers.

Each peer has a reader thread that timestamps what the server sends,
reassembles DIMSE messages (checking the server's own framing: PDU lengths
within the maximum we advertised, one context per message, command before
data set, reserved bits clear) and answers the C-STORE sub-operations of a
C-GET. After every step the machine checks, against a model of each peer:

* every well-formed request on a healthy association gets its response, in
  time, on its presentation context, with the status of PS3.4/PS3.7 (C-STORE
  as the handler said, the data set stored byte for byte; C-FIND one Pending
  per match then Success, Cancel after a C-CANCEL, 0xA900 from a QueryError;
  C-GET/C-MOVE sub-operation counters, 0xB000/0xA702 with the Failed SOP
  Instance UID List, sub-operations naming the Move Originator, 0xA801 for an
  unknown destination; 0x0211 for an unknown command; a failure status for a
  malformed request; no response to a C-CANCEL of nothing);
* a protocol violation ends its association with the A-ABORT (source/reason of
  PS3.8 9.3.8 and Table 9-10) or A-ASSOCIATE-RJ due, then the server closes at
  ARTIM (Sta13) -- answering, in Sta13, an A-ASSOCIATE-RQ or invalid PDU with
  an A-ABORT (AA-7), an A-ABORT by closing at once (AA-2), anything else not at
  all (AA-6); an A-ABORT or a close from the peer gets nothing back; an idle or
  stalled association is aborted (AA-1) at ``read_timeout``; a silent
  connection is closed at ARTIM; a peer that reads nothing for longer than
  ``write_timeout`` is let go;
* nothing of that touches the other peers: a fresh raw C-ECHO association is
  answered within PROBE_LIMIT after every step;
* no exception escapes a thread (``threading.excepthook``); the server logs no
  error and no LocalProtocolError; it never serves more associations than
  could still be open.

At teardown the server is shut down with the peers still connected (mid-
message, stalled, not reading): each gets an A-ABORT (0, 0) or a close, the
shutdown takes less than SHUTDOWN_LIMIT, every thread it started ends and no
temporary ``.part`` file is left.

What dicomnet gets wrong is left out of the machine (KNOWN_FAULTS) and pinned,
shrunk, as strict xfails here; the three faults it found are fixed, and their
shrunk cases stay here as regression tests. The machine's own checks are shown
to fail on a broken server or model (test_the_harness_notices_...).

The peers' wire bytes and models are in ``_server_wire.py``, the machine in
``_server_machine.py``, what both machines share in ``_common.py``.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import pytest

from ._common import LATE, PROMPT, UNEXPECTED, machine_settings, pdu, pdv, replay_steps, run_machine
from ._server_machine import STATS, ServerMachine
from ._server_wire import ARTIM, MALFORMED, PDU_VIOLATIONS, PROBE_LIMIT, READ, Archive, Peer, echo_rq


# --------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def machine_env(tmp_path_factory: Any) -> Any:
    root = tmp_path_factory.mktemp("stateful-server")
    os.makedirs(root / "archive")
    ServerMachine.workdir = str(root)
    ServerMachine.archive = Archive(str(root / "archive"))
    return ServerMachine


SETTINGS = machine_settings(max_examples=30, stateful_step_count=45)


def test_server_under_interleaved_scripted_peers(machine_env: Any) -> None:
    run_machine(machine_env, SETTINGS, STATS)


def settle(machine: ServerMachine, peer: Peer, until: Any, timeout: float = PROMPT + LATE) -> None:
    """Check the peers until ``until(peer)`` (bounded), then once more after a short quiet spell."""
    limit = time.monotonic() + timeout
    while not until(peer) and time.monotonic() < limit:
        time.sleep(0.005)
        machine.check()
    machine.check()


def replay(steps: Any, fails_with: str | None = None) -> None:
    """Run ``steps(machine)`` on a fresh machine, with its checks, and tear it down.
    ``fails_with``: the check must fail with a message containing it (any other
    failure is an error, not the expected one)."""
    replay_steps(ServerMachine, steps, fails_with)


# ------------------------------------------------------------ shrunk cases
# Faults the machine found, now fixed: kept as regression tests.


@pytest.mark.parametrize("how", ["A-ABORT in Sta6", "A-ABORT for a DIMSE fault"])
@pytest.mark.parametrize("kind", ["associate-rq", "unknown-pdu-type", "release-rq-length-2", "a-abort"])
def test_sta13_after_the_servers_own_abort(machine_env: Any, how: str, kind: str) -> None:
    """Shrunk from the machine: p0 associates; an A-ASSOCIATE-AC (AA-8) or a data set PDV
    before any command (AA-1) makes the server abort; the PDU ``kind`` sent 0.05 s later is
    owed an A-ABORT (AA-7) or, for an A-ABORT, a close at once (AA-2) -- PS3.8 Table 9-10."""
    def steps(m: ServerMachine) -> None:
        peer = m._ready(0)
        assert peer is not None
        peer.close_on_end = False
        if how == "A-ABORT in Sta6":
            m.do_pdu_violation(peer, "associate-ac")
        else:
            m.do_dimse_violation(peer, "data-set-before-command")
        settle(m, peer, lambda p: p.ended_at is not None)
        time.sleep(0.05)
        m.do_sta13_stimulus(peer, kind)
        settle(m, peer, lambda p: p.phase == "done", ARTIM + LATE)
    replay(steps)


@pytest.mark.parametrize("kind", ["associate-rq", "a-abort"])
def test_the_stream_after_an_unknown_pdu_type(machine_env: Any, kind: str) -> None:
    """Shrunk from the machine: a PDU of type 08H before any A-ASSOCIATE-RQ (AA-1, Sta13),
    then ``kind`` at once: PS3.8 Table 9-10 owes AA-7 (A-ABORT) / AA-2 (close at once)."""
    def steps(m: ServerMachine) -> None:
        peer = m._openable(0)
        assert peer is not None
        peer.close_on_end = False
        m.do_bad_associate(peer, "unknown-pdu-type")
        settle(m, peer, lambda p: p.ended_at is not None)
        m.do_sta13_stimulus(peer, kind)
        settle(m, peer, lambda p: p.phase == "done", ARTIM + LATE)
    replay(steps)


@pytest.mark.parametrize("kind", MALFORMED)
def test_a_malformed_request_is_the_peers_fault(machine_env: Any, kind: str) -> None:
    """Shrunk from the machine: one malformed request on a fresh association. The failure
    status comes (0xC000 / 0xA900) and the association goes on, and the server logs no
    error for what a peer sent (it was logged at ERROR, with a traceback, as a handler
    failure, though no handler was called)."""
    def steps(m: ServerMachine) -> None:
        peer = m._ready(0)
        assert peer is not None
        m.do_malformed_request(peer, kind)
        settle(m, peer, lambda p: not p.ops)
        m.do_echo(peer)
        settle(m, peer, lambda p: not p.ops)
    replay(steps)


# --------------------------------------------------------- the harness itself
def test_the_checks_pass_on_a_sequence_that_touches_every_service(machine_env: Any) -> None:
    """The sequences the self-checks below break, unbroken: they pass."""
    def steps(m: ServerMachine) -> None:
        peer = m._ready(0)
        assert peer is not None
        for action in (lambda: m.do_echo(peer), lambda: m.do_store(peer, 20000, 0xB000, True),
                       lambda: m.do_find(peer, "FIND4"), lambda: m.do_get(peer, "A", "big"),
                       lambda: m.do_move(peer, "A"), lambda: m.do_pdu_violation(peer, "unknown-pdu-type")):
            action()
            settle(m, peer, lambda p: not p.ops and (p.verdict is None or p.ended_at is not None))
    replay(steps)


SABOTAGE = {   # what is broken -> what the check that notices it says
    "handler-status": "status 0x0000, expected 0xA700",
    "abort-reason": "A-ABORT (2, 1)",
    "thread-exception": "exception in thread dicomnet-assoc-sabotage",
    "slow-server": "probe",
    "idle-timeout": "not aborted (read_timeout",
    "extra-response": "nothing awaits",
    "leaked-socket": "file descriptors still open",
    "leaked-thread": "threads still running",
}


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("sabotage", sorted(SABOTAGE))
def test_the_harness_notices_a_broken_expectation(machine_env: Any, sabotage: str, monkeypatch: Any) -> None:
    """Break the server or the model on purpose: the machine's checks must fail."""
    leaked: list[socket.socket] = []

    def steps(m: ServerMachine) -> None:
        if sabotage == "handler-status":         # (looked up as each association starts)
            monkeypatch.setattr(m.handler, "on_store", lambda ctx, ds: 0)
        peer = m._ready(0)
        assert peer is not None
        if sabotage == "handler-status":         # the handler answers Success where the model wants 0xA700
            m.do_store(peer, 200, 0xA700)
        elif sabotage == "abort-reason":         # the model wants "unexpected PDU" for an unknown PDU type
            monkeypatch.setitem(PDU_VIOLATIONS, "unknown-pdu-type", (pdu(0x08, bytes(4)), UNEXPECTED))
            m.do_pdu_violation(peer, "unknown-pdu-type")
        elif sabotage == "thread-exception":     # an exception escaping some thread
            thread = threading.Thread(target=lambda: 1 / 0, name="dicomnet-assoc-sabotage")
            thread.start()
            thread.join(2.0)
        elif sabotage == "slow-server":          # every C-ECHO takes longer than the probe may
            monkeypatch.setattr(m.server.handler.__wrapped__, "on_echo", lambda ctx: time.sleep(PROBE_LIMIT + 0.2),
                                raising=False)
        elif sabotage == "idle-timeout":         # a server whose read timeout is far longer than the model's
            m.server.read_timeout = 30.0
            peer = m.do_connect()
            m.do_associate(peer)
        elif sabotage == "leaked-socket":        # a socket nobody closes
            leaked.append(socket.socket())
        elif sabotage == "leaked-thread":        # a thread that outlives the shutdown
            threading.Thread(target=threading.Event().wait, args=(ARTIM + LATE + 1.0,), daemon=True).start()
        else:                                    # a second response to one C-ECHO
            m.do_echo(peer)
            settle(m, peer, lambda p: not p.ops)
            peer.send([pdu(0x04, pdv(1, True, True, echo_rq(peer.next_id)))])
        if not sabotage.startswith("leaked"):
            settle(m, peer, lambda p: False, READ + LATE + 0.5)

    try:
        with pytest.raises(AssertionError):
            replay(steps, SABOTAGE[sabotage])
    finally:
        for sock in leaked:
            sock.close()
