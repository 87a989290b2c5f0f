"""The Upper Layer state machine on the wire: PS3.8 9.2 as a peer sees it.

tests/pdu/test_fsm.py holds dicomnet's table to PS3.8 Table 9-10 cell by cell;
tests/pdu/test_connection.py drives the sans-IO Connection in memory. Here a
scripted peer writes PDUs byte by byte (``struct``, no dicomnet encoder) on a
real TCP socket on 127.0.0.1 -- to dicomnet's ``Server`` (the association-
acceptor) and to dicomnet's ``Client`` (the requestor; its public API runs on a
thread) -- and checks what a peer can observe: the PDUs dicomnet sends back,
and whether and when it closes the transport connection.

The oracle is PS3.8: ``TABLE_9_10`` below is the standard's grid for the
events a peer causes and for ARTIM, transcribed as text, and ``check`` / ``check_sta13`` put on the wire
what the definitions of the actions (Tables 9-6 .. 9-9) say:

* AA-1: A-ABORT source 0 (service-user; reason "sent with a value 00H",
  Table 9-26), ARTIM started -- restarted if running -- and Sta13;
* AA-8: A-ABORT source 2 (service-provider) with a reason of Table 9-26: 2
  "unexpected-PDU" for a valid PDU the state does not take, 1
  "unrecognized-PDU" for an unknown PDU type; ARTIM started; Sta13;
* Sta13, "awaiting transport connection close": the connection closes when
  the peer closes it (AR-5) or ARTIM expires (AA-2) -- not before, not much
  after. PS3.8 9.1.4 (d): "an A-ABORT PDU has been sent and the ARTIM timer
  expires before the Transport Connection is closed". A PDU there is ignored
  (AA-6); an A-ASSOCIATE-RQ or an unrecognized/invalid PDU gets an A-ABORT
  (AA-7); neither touches ARTIM; an A-ABORT closes at once (AA-2);
* AA-2, AA-3 (an A-ABORT received), AE-4 and AR-3 close at once and send
  nothing: an A-ABORT is never answered;
* AE-5 starts ARTIM and only a whole A-ASSOCIATE-RQ (AE-6) stops it: a silent
  peer or a stalled partial PDU is closed when it expires (AA-2), unanswered;
  AE-8 (A-ASSOCIATE-RJ) and AR-4 (A-RELEASE-RP) start ARTIM (Sta13);
* release collision: AR-8 (requestor Sta9, acceptor Sta10); the requestor
  answers at once (AR-9, Sta11), the acceptor only after the requestor's
  A-RELEASE-RP (AR-10, Sta12, AR-4); the requestor closes on the acceptor's
  A-RELEASE-RP (AR-3).

Reached from a socket: the Server in Sta2, Sta3 (a PDU in the same segment as
the A-ASSOCIATE-RQ), Sta6, Sta8 (a PDU right behind the A-RELEASE-RQ) and
Sta13 (after its A-RELEASE-RP, its A-ASSOCIATE-RJ, its A-ABORT in Sta2). A
coalesced PDU counts as received in Sta3 / Sta8 / Sta9 / Sta12 because
dicomnet acts on every whole PDU of a read before it answers
(``Connection.buffer_updated``); dcmtk reads one PDU at a time and takes such
a PDU in the next state. The Client in Sta5, Sta6 (while a response is due),
Sta7 (``release()``), Sta8, Sta9, Sta11 and Sta13. The Server never asks to
release, so the acceptor's Sta7, Sta10 and Sta12 are driven through dicomnet's
``Association`` over its blocking driver in the acceptor role: what the
Server serves every association with.

Timing: both dicomnet ends run ARTIM = ``ARTIM`` s. "At ARTIM" is no earlier
than ``ARTIM - EARLY`` and no later than ``ARTIM + LATE`` after the PDU that
started the timer reached us; "at once" is within ``PROMPT``. The read and
DIMSE timeouts are much longer, so they cannot pass for ARTIM.

dicomnet faults this file found, all fixed (the exception each failed with):

* ``ClosedBeforeARTIM``: after an A-ABORT of its own (AA-8, AA-1) dicomnet did
  not wait in Sta13: the Client, the Server in Sta6 and an acceptor's
  ``release()`` closed at once, and ``Association.abort`` half-closed at once
  and closed 0.5 s later, whatever ARTIM was. Now a background closer
  (``dicomnet/transport/closer.py``) holds the socket until the peer closes or
  ARTIM expires, and the calls still return at once.
* ``NotClosedAtARTIM``: a PDU right behind a release request that makes the
  state machine abort (Client Sta8, Sta9; acceptor Sta12) left the
  ReleaseRequest / ReleaseConfirm event to be answered in Sta13, where
  ``confirm_release`` raised LocalProtocolError and nothing closed the
  connection at ARTIM.
* ``NoAbortInSta13``: in Sta13 a malformed PDU of a known type (an
  A-RELEASE-RQ of 2 bytes, an A-ABORT of 6) is Evt19 and owes an A-ABORT
  (AA-7); dicomnet did not decode PDUs in Sta13.

(Later, found by tests/hardening/stateful/test_server_stateful.py: the closer
now acts on what arrives in Sta13 as the table says, through a Connection of
its own, and an unknown PDU type no longer stops the stream being read.)

Reference peers, the same bytes with ARTIM 2 s (comparison runs; in this file
only ``test_reference_peers_agree``, on two cells where they agree). dcmtk 3.6.7
``storescp``: closes at once after its A-ABORT for an unexpected PDU in Sta2 or
Sta6 (no Sta13 wait, like dicomnet); answers an unknown PDU type or a P-DATA-TF
without PDV in Sta6 with A-ABORT source 0 (AA-8: source 2) and an unknown type
in Sta2 with no A-ABORT at all (AA-1 sends one); answers an A-RELEASE-RQ of
length 2 with A-RELEASE-RP (Table 9-24 fixes the length at 4: Evt19); after
its A-RELEASE-RP keeps the connection open past ARTIM, and closes at once in
Sta13 on an A-ASSOCIATE-RQ (AA-7 sends an A-ABORT) or a P-DATA-TF (AA-6
ignores it); it reads one PDU at a time, so a PDU behind the RQ is taken in
Sta6. pynetdicom 3.0.4: closes at once after its A-ABORT for an unexpected PDU
and after its A-RELEASE-RP (AR-4: Sta13), gives AA-8 reason 0, answers the
2-byte A-RELEASE-RQ with A-RELEASE-RP, sends nothing for an unknown PDU type in
Sta2 (AA-1) nor for a P-DATA-TF without PDV in Sta6 (AA-8); like dicomnet it
takes a PDU behind the RQ in Sta3 (AA-8).
"""
from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dicomnet import AssociationAborted, AssociationError, AssociationRejected, Client, Server
from dicomnet.association import Association
from dicomnet.pdu import events as ev
from dicomnet.pdu.connection import Connection
from dicomnet.pdu.negotiation import AcceptorPolicy, negotiate
from dicomnet.transport.sync import SyncDriver, prepare_socket

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT = "1.2.840.10008.1.2"
APP_CONTEXT = "1.2.840.10008.3.1.1.1"
PEER_IMPLEMENTATION = "1.2.826.0.1.3680043.9.7777.77"

ARTIM = 0.7      # ARTIM of both dicomnet ends, seconds
EARLY = 0.2      # a close "at ARTIM" may be seen this much early (the timer starts before we read)
TICK = 0.05      # ... or this much, counted from the stimulus we sent (the timer starts after it)
LATE = 1.0       # ... and this much late (a loaded 2-core machine)
PROMPT = 0.4     # "at once"
QUIET = 0.3      # how long we watch for a PDU that must not come
STIR = 0.25      # in Sta13 the stimulus comes this long after the PDU that started ARTIM
READ = 5.0       # read and DIMSE timeouts: far from ARTIM
MAX_PDU = 16384  # the Maximum Length both dicomnet ends advertise


class ClosedBeforeARTIM(AssertionError):
    """The transport closed in Sta13 before ARTIM expired."""


class NotClosedAtARTIM(AssertionError):
    """The transport stayed open in Sta13 past ARTIM."""


class NoAbortInSta13(AssertionError):
    """No A-ABORT for Evt6 / Evt19 in Sta13 (AA-7)."""


# =========================================================== the standard
# PS3.8 Table 9-10: the rows of the events a peer causes (a PDU, closing the
# connection) and of ARTIM expiring, in the states that have a transport
# connection ("-": blank). Copied from the standard, not from dicomnet.
TABLE_9_10 = """
        Sta2  Sta3  Sta5  Sta6  Sta7  Sta8  Sta9  Sta10 Sta11 Sta12 Sta13
Evt3    AA-1  AA-8  AE-3  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt4    AA-1  AA-8  AE-4  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt6    AE-6  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-7
Evt10   AA-1  AA-8  AA-8  DT-2  AR-6  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt12   AA-1  AA-8  AA-8  AR-2  AR-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt13   AA-1  AA-8  AA-8  AA-8  AR-3  AA-8  AA-8  AR-10 AR-3  AA-8  AA-6
Evt16   AA-2  AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-2
Evt17   AA-5  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AR-5
Evt18   AA-2  -     -     -     -     -     -     -     -     -     AA-2
Evt19   AA-1  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-7
"""
_ROWS = [line.split() for line in TABLE_9_10.strip().splitlines()]
CELLS = {(row[0], state): action for row in _ROWS[1:] for state, action in zip(_ROWS[0], row[1:])}
PROVIDER_REASONS = {0, 1, 2, 4, 5, 6}   # Table 9-26, source 2 (3 is reserved)


# ============================================================== raw PDUs
def pdu(pdu_type: int, body: bytes) -> bytes:
    return struct.pack(">BBL", pdu_type, 0, len(body)) + body


def item(item_type: int, value: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(value)) + value


def _associate(pdu_type: int, context: bytes, called: str = "WIRESCP", version: int = 1) -> bytes:
    """A-ASSOCIATE-RQ / -AC (Tables 9-11, 9-17)."""
    fixed = struct.pack(">HH16s16s32s", version, 0, called.encode().ljust(16), b"WIREPEER".ljust(16), bytes(32))
    user = item(0x50, item(0x51, struct.pack(">L", MAX_PDU)) + item(0x52, PEER_IMPLEMENTATION.encode()))
    return pdu(pdu_type, fixed + item(0x10, APP_CONTEXT.encode()) + context + user)


def associate_rq(called: str = "WIRESCP", version: int = 1) -> bytes:
    """Verification with Implicit VR Little Endian as presentation context 1."""
    context = item(0x20, bytes([1, 0, 0, 0]) + item(0x30, VERIFICATION.encode()) + item(0x40, IMPLICIT.encode()))
    return _associate(0x01, context, called, version)


def associate_ac() -> bytes:
    return _associate(0x02, item(0x21, bytes([1, 0, 0, 0]) + item(0x40, IMPLICIT.encode())))


def _command(fields: dict[int, int]) -> bytes:
    """A command set of US elements plus Affected SOP Class UID, Implicit VR LE."""
    elements = {0x00000002: VERIFICATION.encode() + b"\0", **{t: struct.pack("<H", v) for t, v in fields.items()}}
    body = b"".join(struct.pack("<HHL", t >> 16, t & 0xFFFF, len(v)) + v for t, v in sorted(elements.items()))
    return struct.pack("<HHLL", 0, 0, 4, len(body)) + body


def p_data(command: bytes) -> bytes:
    """One P-DATA-TF, one command PDV on context 1, last fragment (PS3.8 E.2: 03H)."""
    return pdu(0x04, struct.pack(">LBB", len(command) + 2, 1, 0x03) + command)


ECHO_RQ = _command({0x00000100: 0x0030, 0x00000110: 1, 0x00000800: 0x0101})
ECHO_RSP = _command({0x00000100: 0x8030, 0x00000120: 1, 0x00000800: 0x0101, 0x00000900: 0})
RELEASE_RQ = pdu(0x05, bytes(4))
RELEASE_RP = pdu(0x06, bytes(4))

# name -> (event of Table 9-10, kind, bytes). ``kind`` picks the reason AA-8
# owes: "unexpected" (a valid PDU: 2), "unrecognized" (unknown type: 1),
# "invalid" (a known type, malformed or too long: any provider reason).
STIMULI: dict[str, tuple[str, str, bytes]] = {
    "A-ASSOCIATE-RQ": ("Evt6", "unexpected", associate_rq()),
    "A-ASSOCIATE-AC": ("Evt3", "unexpected", associate_ac()),
    "A-ASSOCIATE-RJ": ("Evt4", "unexpected", pdu(0x03, bytes([0, 1, 1, 1]))),
    "P-DATA-TF": ("Evt10", "unexpected", p_data(ECHO_RQ)),
    "A-RELEASE-RQ": ("Evt12", "unexpected", RELEASE_RQ),
    "A-RELEASE-RP": ("Evt13", "unexpected", RELEASE_RP),
    "A-ABORT": ("Evt16", "abort", pdu(0x07, bytes([0, 0, 2, 0]))),
    "type-00H": ("Evt19", "unrecognized", pdu(0x00, bytes(4))),
    "type-08H": ("Evt19", "unrecognized", pdu(0x08, bytes(4))),
    "type-FFH": ("Evt19", "unrecognized", pdu(0xFF, b"")),
    "A-RELEASE-RQ-length-2": ("Evt19", "invalid", pdu(0x05, bytes(2))),
    "A-ABORT-length-6": ("Evt19", "invalid", pdu(0x07, bytes(6))),
    "A-ASSOCIATE-RJ-length-0": ("Evt19", "invalid", pdu(0x03, b"")),
    "A-ASSOCIATE-RQ-truncated": ("Evt19", "invalid", pdu(0x01, associate_rq()[6:26])),
    "P-DATA-TF-without-PDV": ("Evt19", "invalid", pdu(0x04, b"")),
    "P-DATA-TF-PDV-overrun": ("Evt19", "invalid", pdu(0x04, struct.pack(">LBB", 50, 1, 3) + bytes(4))),
    # Longer than the Maximum Length we advertised (PS3.8 D.1): refused on the header.
    "P-DATA-TF-oversized": ("Evt19", "invalid", struct.pack(">BBL", 0x04, 0, MAX_PDU + 1) + bytes(64)),
    "A-ASSOCIATE-AC-4GiB": ("Evt19", "invalid", struct.pack(">BBL", 0x02, 0, 0xFFFFFFFF) + bytes(64)),
}
ALL = list(STIMULI)
#: The seven PDU types, an unknown one and a malformed one: every state gets these.
CORE = ["A-ASSOCIATE-RQ", "A-ASSOCIATE-AC", "A-ASSOCIATE-RJ", "P-DATA-TF", "A-RELEASE-RQ", "A-RELEASE-RP",
        "A-ABORT", "type-08H", "A-RELEASE-RQ-length-2"]


def but(names: list[str], *excluded: str) -> list[str]:
    return [name for name in names if name not in excluded]


# ============================================================== the wire
class Wire:
    """Our end of one TCP connection; every wait is bounded."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.buffer = b""
        self.eof = False
        self.sent_at: float | None = None   # when our last send began

    def send(self, data: bytes) -> None:
        self.sent_at = time.monotonic()
        self.sock.sendall(data)

    def recv_once(self, deadline: float) -> bool:
        """One read before ``deadline``: True if bytes came (EOF sets ``eof``)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0 or self.eof:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return False
        except ConnectionResetError:
            chunk = b""
        self.buffer += chunk
        self.eof = not chunk
        return bool(chunk)

    def read_pdu(self, timeout: float = READ) -> tuple[int, bytes] | None:
        """The next whole PDU; None if the connection closed or nothing came in time."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buffer) >= 6:
                end = 6 + struct.unpack(">L", self.buffer[2:6])[0]
                if len(self.buffer) >= end:
                    out, self.buffer = (self.buffer[0], self.buffer[6:end]), self.buffer[end:]
                    return out
            if not self.recv_once(deadline):
                return None

    def expect(self, pdu_type: int, timeout: float = READ) -> bytes:
        got = self.read_pdu(timeout)
        assert got is not None, f"expected PDU {pdu_type:02X}H, got {'EOF' if self.eof else 'nothing'}"
        assert got[0] == pdu_type, f"expected PDU {pdu_type:02X}H, got {got[0]:02X}H {got[1][:16].hex()}"
        return got[1]

    def nothing_for(self, seconds: float) -> None:
        """No byte arrives for ``seconds`` (the connection may close meanwhile)."""
        deadline = time.monotonic() + seconds
        while self.recv_once(deadline):
            pass
        assert self.buffer == b"", f"unexpected bytes {self.buffer[:16].hex()}"

    def close_within(self, seconds: float) -> bool:
        """Whether the other end closes within ``seconds`` (what it sends stays in ``buffer``)."""
        deadline = time.monotonic() + seconds
        while not self.eof and self.recv_once(deadline):
            pass
        return self.eof

    def close(self) -> None:
        self.sock.close()


def assert_abort(wire: Wire, source: int, reasons: set[int], timeout: float = READ) -> float:
    """An A-ABORT (Table 9-26) from ``source`` with one of ``reasons`` is next; returns when it came."""
    body = wire.expect(0x07, timeout)
    when = time.monotonic()
    assert len(body) == 4 and body[2] == source and body[3] in reasons, f"A-ABORT {body.hex()}"
    return when


def assert_closed_at_artim(wire: Wire, since: float, stimulus_sent: float | None = None) -> None:
    """Sta13 since ``since``: nothing more comes; the transport closes when ARTIM expires (AA-2).

    ``since`` is when the PDU that started ARTIM reached us: a late read makes
    it late, hence EARLY. When the timer started in answer to a stimulus of
    ours, ``stimulus_sent`` (when we sent it) is a bound the timer cannot
    start before, whatever the load: the close must be ARTIM after it."""
    closed = wire.close_within(since + ARTIM + LATE - time.monotonic())
    assert wire.buffer == b"", f"PDU in Sta13: {wire.buffer[:16].hex()}"
    now = time.monotonic()
    elapsed = now - since
    if not closed:
        raise NotClosedAtARTIM(f"still open {elapsed:.2f} s after ARTIM ({ARTIM} s) started")
    if stimulus_sent is not None:
        if now - stimulus_sent < ARTIM - TICK:
            raise ClosedBeforeARTIM(f"closed {now - stimulus_sent:.2f} s after the stimulus (ARTIM {ARTIM} s)")
    elif elapsed < ARTIM - EARLY:
        raise ClosedBeforeARTIM(f"closed {elapsed:.2f} s after ARTIM ({ARTIM} s) started")


def assert_closed_at_once(wire: Wire) -> None:
    """AA-2 / AA-3 / AE-4 / AR-3: nothing is sent, the transport closes at once."""
    closed = wire.close_within(PROMPT)
    assert wire.buffer == b"", f"sent {wire.buffer[:16].hex()} instead of closing"
    assert closed, f"not closed within {PROMPT} s"


def check(wire: Wire, state: str, stimulus: str) -> None:
    """The wire action of Table 9-10's cell for ``stimulus`` in ``state`` (AA-1, AA-8, AA-2, AA-3)."""
    event, kind, _ = STIMULI[stimulus]
    action = CELLS[(event, state)]
    sent = wire.sent_at         # the stimulus, sent just before: ARTIM starts after it
    if action == "AA-1":
        assert_closed_at_artim(wire, assert_abort(wire, 0, {0}), sent)
    elif action == "AA-8":
        reasons = {"unexpected": {2}, "unrecognized": {1}}.get(kind, PROVIDER_REASONS)
        assert_closed_at_artim(wire, assert_abort(wire, 2, reasons), sent)
    else:
        assert action in ("AA-2", "AA-3"), action
        assert_closed_at_once(wire)


def check_sta13(wire: Wire, started: float, stimulus: str | None) -> None:
    """In Sta13 since ``started``: ``stimulus`` STIR later gets AA-6 (nothing),
    AA-7 (an A-ABORT) -- ARTIM running on -- or AA-2 (closed at once)."""
    if stimulus is not None:
        time.sleep(max(0.0, started + STIR - time.monotonic()))
        event, _, data = STIMULI[stimulus]
        try:
            wire.send(data)
        except OSError as exc:
            raise ClosedBeforeARTIM(f"closed before the stimulus: {exc}") from None
        action = CELLS[(event, "Sta13")]
        if action == "AA-2":
            assert_closed_at_once(wire)
            return
        if action == "AA-7":
            got = wire.read_pdu(ARTIM)
            if got is None or got[0] != 0x07:
                raise NoAbortInSta13(f"got {'EOF' if wire.eof else got}")
            body = got[1]   # AA-7 names no source: either, with a Table 9-26 reason for source 2
            assert len(body) == 4 and (body[2] == 0 or (body[2] == 2 and body[3] in PROVIDER_REASONS)), body.hex()
    assert_closed_at_artim(wire, started)




def sta13(names: list[str]) -> list[Any]:
    """Sta13 parameters (None: no stimulus)."""
    return [None, *names]


# ============================================================ the Server
def make_server(**kw: Any) -> Server:
    options = dict(contexts=[VERIFICATION], artim_timeout=ARTIM, read_timeout=READ, write_timeout=READ,
                   dimse_timeout=READ, max_pdu=MAX_PDU, busy_poll=0)
    return Server("WIRESCP", None, **{**options, **kw}).start("127.0.0.1", 0)


@pytest.fixture
def connect() -> Iterator[Callable[..., Wire]]:
    """``connect(**server_options)``: a raw connection to a Server, all shut down after."""
    servers: dict[tuple, Server] = {}
    wires: list[Wire] = []

    def make(**kw: Any) -> Wire:
        key = tuple(sorted(kw.items()))
        if key not in servers:
            servers[key] = make_server(**kw)
        wire = Wire(socket.create_connection(("127.0.0.1", servers[key].port), timeout=READ))
        wires.append(wire)
        return wire

    yield make
    for wire in wires:
        wire.close()
    for srv in servers.values():
        srv.shutdown(5.0)


def established(connect: Callable[..., Wire], **kw: Any) -> Wire:
    """A raw requestor in Sta6 with the Server: RQ, AC, one C-ECHO answered."""
    wire = connect(**kw)
    wire.send(associate_rq())
    wire.expect(0x02)
    wire.send(p_data(ECHO_RQ))
    wire.expect(0x04)
    return wire


@pytest.mark.parametrize("stimulus", but(ALL, "A-ASSOCIATE-RQ"))
def test_server_sta2(connect, stimulus):
    """Before the A-ASSOCIATE-RQ: AA-1 (A-ABORT, service-user), or AA-2 for an A-ABORT."""
    wire = connect()
    wire.send(STIMULI[stimulus][2])
    check(wire, "Sta2", stimulus)


def test_server_sta2_aa1_restarts_artim(connect):
    """AA-1 "start (or restart if already started) ARTIM": a PDU half-way
    through the ARTIM of AE-5 moves the close to ARTIM after the A-ABORT."""
    wire = connect()
    time.sleep(ARTIM / 2)
    wire.send(RELEASE_RQ)
    assert_closed_at_artim(wire, assert_abort(wire, 0, {0}))


@pytest.mark.parametrize("sent", [b"", b"\x01\x00\x00", associate_rq()[:40]], ids=["nothing", "3-bytes", "40-bytes"])
def test_server_sta2_artim_expires(connect, sent):
    """AE-5 starts ARTIM; a silent peer, or a partial PDU that stalls, never
    makes AE-6: ARTIM expires, AA-2 closes, nothing is sent."""
    assert CELLS[("Evt18", "Sta2")] == "AA-2"
    wire = connect()
    start = time.monotonic()
    wire.send(sent)
    assert_closed_at_artim(wire, start)


def test_server_sta2_trickled_rq_does_not_stop_artim(connect):
    """Bytes of an A-ASSOCIATE-RQ trickling in do not stop ARTIM: only the
    whole PDU is Evt6. Closed at ARTIM, never answered."""
    wire = connect()
    start = time.monotonic()
    rq = associate_rq()
    step = (ARTIM + LATE) / 12
    for i in range(12):
        wire.send(rq[i:i + 1])
        if wire.recv_once(time.monotonic() + step) or wire.eof:
            break
    assert wire.buffer == b"", f"answered a partial RQ: {wire.buffer[:16].hex()}"
    elapsed = time.monotonic() - start
    assert wire.eof and ARTIM - EARLY <= elapsed <= ARTIM + LATE, (wire.eof, elapsed)


@pytest.mark.parametrize("stimulus", CORE)
def test_server_sta3(connect, stimulus):
    """A PDU in the A-ASSOCIATE-RQ's segment reaches the acceptor in Sta3: AA-8
    (AA-3 for an A-ABORT), and no A-ASSOCIATE-AC is sent."""
    wire = connect()
    wire.send(associate_rq() + STIMULI[stimulus][2])
    check(wire, "Sta3", stimulus)


@pytest.mark.parametrize("stimulus", but(ALL, "P-DATA-TF", "A-RELEASE-RQ"))
def test_server_sta6(connect, stimulus):
    """Established: all but P-DATA-TF (DT-2) and A-RELEASE-RQ (AR-2) is AA-8, an A-ABORT AA-3."""
    wire = established(connect)
    wire.send(STIMULI[stimulus][2])
    check(wire, "Sta6", stimulus)


@pytest.mark.parametrize("stimulus", CORE)
def test_server_sta8(connect, stimulus):
    """A PDU right behind the A-RELEASE-RQ reaches the acceptor in Sta8: AA-8
    (AA-3 for an A-ABORT); no A-RELEASE-RP is sent."""
    wire = established(connect)
    wire.send(RELEASE_RQ + STIMULI[stimulus][2])
    check(wire, "Sta8", stimulus)


def test_server_read_timeout_is_aa1(connect):
    """A PDU that stalls in Sta6 is no event of the table; the acceptor's
    read_timeout is an A-ABORT request: AA-1, then Sta13 until ARTIM."""
    wire = established(connect, read_timeout=1.0)
    wire.send(p_data(ECHO_RQ)[:9])
    assert_closed_at_artim(wire, assert_abort(wire, 0, {0}, 1.0 + LATE))


@pytest.mark.parametrize("stimulus", sta13(CORE + ["A-ABORT-length-6"]))
def test_server_sta13_after_release_rp(connect, stimulus):
    """AR-4: A-RELEASE-RP and ARTIM; then Table 9-10's Sta13 column."""
    wire = established(connect)
    wire.send(RELEASE_RQ)
    wire.expect(0x06)
    check_sta13(wire, time.monotonic(), stimulus)


@pytest.mark.parametrize("rq, rj", [
    (associate_rq(called="NOT-THE-SCP"), bytes([0, 1, 1, 7])),    # AE-8: called AE not recognized
    (associate_rq(version=2), bytes([0, 1, 2, 2])),                # AE-6: protocol version lacks bit 0
], ids=["AE-8", "AE-6"])
@pytest.mark.parametrize("stimulus", [None, "A-ASSOCIATE-RQ", "P-DATA-TF", "A-ABORT"])
def test_server_sta13_after_rejection(connect, rq, rj, stimulus):
    """A-ASSOCIATE-RJ and ARTIM (AE-8, or AE-6 not acceptable); then Sta13."""
    wire = connect()
    wire.send(rq)
    body = wire.expect(0x03)
    assert body[1] in (1, 2) and body[2:] == rj[2:], body.hex()   # Table 9-21: result, source, reason
    check_sta13(wire, time.monotonic(), stimulus)


@pytest.mark.parametrize("stimulus", [None, "A-ASSOCIATE-RQ", "A-ASSOCIATE-AC", "type-08H", "A-ABORT"])
def test_server_sta13_after_aa1(connect, stimulus):
    """AA-1 in Sta2 (an A-RELEASE-RP before any RQ): A-ABORT, ARTIM; then Sta13."""
    wire = connect()
    wire.send(RELEASE_RP)
    check_sta13(wire, assert_abort(wire, 0, {0}), stimulus)


@pytest.mark.parametrize("state", ["Sta2", "Sta6", "Sta13"])
def test_server_transport_closed_by_peer(connect, state):
    """Evt17: AA-5 in Sta2, AA-4 in Sta6 (mid-PDU), AR-5 in Sta13 -- none
    sends anything; the acceptor closes its end at once (we half-close to see it)."""
    assert CELLS[("Evt17", state)] in ("AA-5", "AA-4", "AR-5")
    if state == "Sta2":
        wire = connect()
        wire.send(associate_rq()[:9])
    else:
        wire = established(connect)
        if state == "Sta6":
            wire.send(p_data(ECHO_RQ)[:9])
        else:
            wire.send(RELEASE_RQ)
            wire.expect(0x06)
    wire.sock.shutdown(socket.SHUT_WR)
    assert_closed_at_once(wire)


# ============================================================ the Client
class Call:
    """``fn()`` on a thread; :meth:`outcome` joins it (bounded)."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc

    def outcome(self) -> BaseException | None:
        self.thread.join(READ + 2 * ARTIM)
        assert not self.thread.is_alive(), "the dicomnet call is still running"
        return self.error


class Scripted:
    """dicomnet's side runs ``work(port, opened)`` on a thread; we accept its
    connection. Associations it appends to ``opened`` are aborted at the end
    (after our socket closed) in case dicomnet left them open."""

    def __init__(self) -> None:
        self.opened: list[Association] = []
        self.made: list[tuple[Wire, Call]] = []

    def __call__(self, work: Callable[[int, list[Association]], Any]) -> tuple[Wire, Call]:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(READ)
        port = listener.getsockname()[1]
        call = Call(lambda: work(port, self.opened))
        try:
            wire = Wire(listener.accept()[0])
        finally:
            listener.close()
        self.made.append((wire, call))
        return wire, call

    def close(self) -> None:
        for wire, call in self.made:
            wire.close()
            call.thread.join(READ + 2 * ARTIM)
        for assoc in self.opened:
            assoc.abort()


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    made = Scripted()
    yield made
    made.close()


def associate(port: int, opened: list[Association]) -> Association:
    client = Client("WIRESCU", connect_timeout=READ, read_timeout=READ, write_timeout=READ, dimse_timeout=READ,
                    artim_timeout=ARTIM, max_pdu=MAX_PDU, busy_poll=0)
    assoc = client.associate("127.0.0.1", port, "WIRESCP", contexts=[(VERIFICATION, [IMPLICIT])])
    opened.append(assoc)
    return assoc


@pytest.mark.parametrize("stimulus", but(ALL, "A-ASSOCIATE-AC"))
def test_client_sta5(scripted, stimulus):
    """Awaiting the A-ASSOCIATE answer: AE-4 for an A-ASSOCIATE-RJ (close at
    once), AA-3 for an A-ABORT, AA-8 for anything else."""
    wire, call = scripted(associate)
    wire.expect(0x01)
    wire.send(STIMULI[stimulus][2])
    if stimulus == "A-ASSOCIATE-RJ":
        assert CELLS[("Evt4", "Sta5")] == "AE-4"
        assert_closed_at_once(wire)
        assert isinstance(call.outcome(), AssociationRejected)
        return
    check(wire, "Sta5", stimulus)
    assert isinstance(call.outcome(), AssociationAborted)


def test_client_sta5_no_answer_is_aa1(scripted):
    """No answer within the requestor's limit (its artim_timeout): an A-ABORT
    request, Evt15 in Sta5, is AA-1 (service-user source); then Sta13."""
    wire, call = scripted(associate)
    wire.expect(0x01)
    assert_closed_at_artim(wire, assert_abort(wire, 0, {0}, ARTIM + LATE))
    call.outcome()


def client_sta6(scripted: Scripted) -> tuple[Wire, Call]:
    """The Client established, its C-ECHO-RQ read: it waits for the response."""
    wire, call = scripted(lambda port, opened: associate(port, opened).echo())
    wire.expect(0x01)
    wire.send(associate_ac())
    wire.expect(0x04)
    return wire, call


@pytest.mark.parametrize("state", ["Sta5", "Sta6"])
def test_client_transport_closed_by_peer(scripted, state):
    """Evt17 in Sta5 / Sta6 (mid-PDU) is AA-4: nothing is sent, the Client
    closes its end at once and reports an abort (A-P-ABORT)."""
    assert CELLS[("Evt17", state)] == "AA-4"
    if state == "Sta5":
        wire, call = scripted(associate)
        wire.expect(0x01)
    else:
        wire, call = client_sta6(scripted)
        wire.send(p_data(ECHO_RSP)[:9])
    wire.sock.shutdown(socket.SHUT_WR)
    assert_closed_at_once(wire)
    assert isinstance(call.outcome(), AssociationAborted)


@pytest.mark.parametrize("stimulus", but(ALL, "P-DATA-TF", "A-RELEASE-RQ"))
def test_client_sta6(scripted, stimulus):
    """Established, a response due: AA-8, or AA-3 for an A-ABORT."""
    wire, call = client_sta6(scripted)
    wire.send(STIMULI[stimulus][2])
    check(wire, "Sta6", stimulus)
    assert isinstance(call.outcome(), AssociationAborted)


@pytest.mark.parametrize("stimulus", sta13(CORE + ["A-ABORT-length-6"]))
def test_client_sta13_after_release_rp(scripted, stimulus):
    """The acceptor asks to release (AR-2, Sta8); the Client answers (AR-4:
    A-RELEASE-RP, ARTIM, Sta13); then Table 9-10's Sta13 column."""
    wire, call = client_sta6(scripted)
    wire.send(RELEASE_RQ)
    wire.expect(0x06)
    check_sta13(wire, time.monotonic(), stimulus)
    assert isinstance(call.outcome(), AssociationError)


@pytest.mark.parametrize("stimulus", ["P-DATA-TF", "type-08H", "A-ABORT"])
def test_client_sta8(scripted, stimulus):
    """A PDU right behind the acceptor's A-RELEASE-RQ reaches the Client in
    Sta8: AA-8 (AA-3 for an A-ABORT); no A-RELEASE-RP is sent."""
    wire, call = client_sta6(scripted)
    wire.send(RELEASE_RQ + STIMULI[stimulus][2])
    check(wire, "Sta8", stimulus)
    call.outcome()


def release(port: int, opened: list[Association]) -> None:
    associate(port, opened).release()


def client_sta7(scripted: Scripted) -> tuple[Wire, Call]:
    """The Client has sent its A-RELEASE-RQ (AR-1) and awaits the A-RELEASE-RP."""
    wire, call = scripted(release)
    wire.expect(0x01)
    wire.send(associate_ac())
    wire.expect(0x05)
    return wire, call


@pytest.mark.parametrize("stimulus", but(ALL, "P-DATA-TF", "A-RELEASE-RQ", "A-RELEASE-RP"))
def test_client_sta7(scripted, stimulus):
    """Awaiting the A-RELEASE-RP: AA-8, or AA-3 for an A-ABORT."""
    wire, call = client_sta7(scripted)
    wire.send(STIMULI[stimulus][2])
    check(wire, "Sta7", stimulus)
    assert isinstance(call.outcome(), AssociationAborted)


def test_client_sta7_pdata_then_release_rp(scripted):
    """AR-6: a P-DATA-TF in Sta7 is indicated, nothing sent, the Client waits
    on; the A-RELEASE-RP then closes the connection at once (AR-3)."""
    assert CELLS[("Evt10", "Sta7")] == "AR-6" and CELLS[("Evt13", "Sta7")] == "AR-3"
    wire, call = client_sta7(scripted)
    wire.send(p_data(ECHO_RSP))
    wire.nothing_for(QUIET)
    assert not wire.eof, "closed on a P-DATA-TF in Sta7"
    wire.send(RELEASE_RP)
    assert_closed_at_once(wire)
    assert call.outcome() is None


# ------------------------------------------------ release collision, requestor
def requestor_collision(scripted: Scripted) -> tuple[Wire, Call]:
    """The Client's A-RELEASE-RQ read; the acceptor's sent: AR-8, Sta9; the
    Client's A-RELEASE-RP (AR-9) must follow at once: Sta11."""
    wire, call = client_sta7(scripted)
    wire.send(RELEASE_RQ)
    assert CELLS[("Evt12", "Sta7")] == "AR-8"
    assert wire.expect(0x06, PROMPT) == bytes(4)
    return wire, call


def test_client_release_collision_completes(scripted):
    """Sta11 waits for the acceptor's A-RELEASE-RP (no close, nothing sent);
    it comes: AR-3 closes at once and release() returns."""
    wire, call = requestor_collision(scripted)
    wire.nothing_for(QUIET)
    assert not wire.eof, "the requestor closed in Sta11"
    wire.send(RELEASE_RP)
    assert_closed_at_once(wire)
    assert call.outcome() is None


@pytest.mark.parametrize("stimulus", ["A-ASSOCIATE-RQ", "P-DATA-TF", "A-RELEASE-RQ", "type-08H",
                                             "A-RELEASE-RQ-length-2", "A-ABORT"])
def test_client_sta11(scripted, stimulus):
    """Sta11 takes only the A-RELEASE-RP (AR-3): AA-8, or AA-3 for an A-ABORT."""
    wire, call = requestor_collision(scripted)
    wire.send(STIMULI[stimulus][2])
    check(wire, "Sta11", stimulus)
    call.outcome()


@pytest.mark.parametrize("stimulus", ["A-RELEASE-RP", "P-DATA-TF", "A-ABORT"])
def test_client_sta9(scripted, stimulus):
    """A PDU right behind the acceptor's colliding A-RELEASE-RQ reaches the
    requestor in Sta9: AA-8 -- even an A-RELEASE-RP, which the acceptor may
    send only after the requestor's (AR-10) -- or AA-3 for an A-ABORT."""
    wire, call = client_sta7(scripted)
    wire.send(RELEASE_RQ + STIMULI[stimulus][2])
    check(wire, "Sta9", stimulus)
    call.outcome()


# ------------------------------------------------ the acceptor releasing
@pytest.fixture
def acceptor() -> Iterator[Callable[[], tuple[Wire, Call]]]:
    """``acceptor()``: dicomnet's Association in the acceptor role
    (Connection("acceptor") over the blocking driver, as the Server runs it),
    established with us; it has sent its A-RELEASE-RQ (AR-1, Sta7) and we have
    read it. The driver is closed at the end if dicomnet left it open."""
    made: list[tuple[Wire, Call, list[SyncDriver]]] = []

    def start() -> tuple[Wire, Call]:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(READ)
        drivers: list[SyncDriver] = []

        def work() -> None:
            try:
                sock = listener.accept()[0]
            finally:
                listener.close()
            prepare_socket(sock)
            conn = Connection("acceptor", max_pdu=MAX_PDU, artim_timeout=ARTIM)
            driver = SyncDriver(sock, conn, read_timeout=READ, write_timeout=READ, busy_poll=0)
            drivers.append(driver)
            conn.transport_connected(time.monotonic())
            request = driver.receive_event(READ)
            assert isinstance(request, ev.AssociateRequest), request
            ac = negotiate(request.rq, AcceptorPolicy("WIRESCP", supported={VERIFICATION: (IMPLICIT,)},
                                                      max_pdu=MAX_PDU))
            assoc = Association(driver, conn.accept(ac), rq=request.rq, ac=ac, dimse_timeout=READ)
            assoc.release(timeout=READ)

        call = Call(work)
        wire = Wire(socket.create_connection(listener.getsockname(), timeout=READ))
        made.append((wire, call, drivers))
        wire.send(associate_rq())
        wire.expect(0x02)
        wire.expect(0x05)
        return wire, call

    yield start
    for wire, call, drivers in made:
        wire.close()
        call.thread.join(READ + 2 * ARTIM)
        for driver in drivers:
            driver.close()


@pytest.mark.parametrize("stimulus", ["A-ASSOCIATE-AC", "type-08H", "A-ABORT"])
def test_acceptor_sta7(acceptor, stimulus):
    """The acceptor awaiting its A-RELEASE-RP (Sta7): AA-8, or AA-3 for an A-ABORT."""
    wire, call = acceptor()
    wire.send(STIMULI[stimulus][2])
    check(wire, "Sta7", stimulus)
    call.outcome()


@pytest.mark.parametrize("requestor_closes", [True, False], ids=["requestor-closes", "artim"])
def test_acceptor_release_collision_completes(acceptor, requestor_closes):
    """Our colliding A-RELEASE-RQ: AR-8, Sta10. The acceptor must wait for the
    requestor's A-RELEASE-RP (nothing sent, no close); then AR-10 and AR-4:
    its A-RELEASE-RP and ARTIM (Sta13). We close (AR-3; AR-5 for it) -- or
    not, and it closes when ARTIM expires (AA-2)."""
    assert CELLS[("Evt13", "Sta10")] == "AR-10"
    wire, call = acceptor()
    wire.send(RELEASE_RQ)
    wire.nothing_for(QUIET)
    assert not wire.eof, "the acceptor closed in Sta10"
    wire.send(RELEASE_RP)
    assert wire.expect(0x06, PROMPT) == bytes(4)
    if requestor_closes:
        wire.close()
    else:
        assert_closed_at_artim(wire, time.monotonic())
    assert call.outcome() is None


@pytest.mark.parametrize("stimulus", ["A-ASSOCIATE-AC", "P-DATA-TF", "A-RELEASE-RQ", "type-08H", "A-ABORT"])
def test_acceptor_sta10(acceptor, stimulus):
    """Sta10 takes only the A-RELEASE-RP (AR-10): AA-8, or AA-3 for an A-ABORT."""
    wire, call = acceptor()
    wire.send(RELEASE_RQ)
    wire.send(STIMULI[stimulus][2])
    check(wire, "Sta10", stimulus)
    call.outcome()


@pytest.mark.parametrize("stimulus", ["P-DATA-TF", "type-08H", "A-ABORT"])
def test_acceptor_sta12(acceptor, stimulus):
    """A PDU right behind the requestor's A-RELEASE-RP reaches the acceptor in
    Sta12 (awaiting its local release response): AA-8, no A-RELEASE-RP."""
    wire, call = acceptor()
    wire.send(RELEASE_RQ)
    wire.nothing_for(QUIET)
    wire.send(RELEASE_RP + STIMULI[stimulus][2])
    check(wire, "Sta12", stimulus)
    call.outcome()


# =================================================== the reference peers
@pytest.mark.peers
@pytest.mark.parametrize("peer", ["storescp", "pynetdicom"])
def test_reference_peers_agree(peer):
    """dcmtk's storescp and pynetdicom read these two cells as this file does:
    ARTIM closes a silent connection in Sta2 with nothing sent (AE-5, AA-2),
    and an A-ASSOCIATE-AC in Sta6 gets an A-ABORT with source 2 (AA-8)."""
    artim = 1
    with contextlib.ExitStack() as stack:
        if peer == "storescp":
            from tests.integration.peers import Storescp, require

            require("storescp", "echoscu")
            port = stack.enter_context(Storescp(aet="WIRESCP", args=["-ta", str(artim), "-ts", "5"])).port
        else:
            pynetdicom = pytest.importorskip("pynetdicom")
            ae = pynetdicom.AE("WIRESCP")
            ae.acse_timeout, ae.network_timeout, ae.dimse_timeout = artim, READ, READ
            ae.add_supported_context(VERIFICATION, IMPLICIT)
            server = ae.start_server(("127.0.0.1", 0), block=False)
            stack.callback(server.shutdown)
            port = server.server_address[1]
        wire = Wire(socket.create_connection(("127.0.0.1", port), timeout=READ))
        stack.callback(wire.close)
        start = time.monotonic()
        assert wire.close_within(artim + LATE) and wire.buffer == b""
        assert artim - EARLY <= time.monotonic() - start
        wire = Wire(socket.create_connection(("127.0.0.1", port), timeout=READ))
        stack.callback(wire.close)
        wire.send(associate_rq())
        wire.expect(0x02)
        wire.send(associate_ac())
        body = wire.expect(0x07)
        assert body[2] == 2 and body[3] in PROVIDER_REASONS, body.hex()
