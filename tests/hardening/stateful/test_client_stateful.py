"""dicomnet's client against a scripted SCP: a hypothesis state machine.

The mirror image of ``test_server_stateful.py``. The machine owns one
:class:`dicomnet.Client` (short timers: DIMSE 0.5 s, read 0.8 s, write 0.5 s,
ARTIM 0.5 s; max PDU 16 KiB) and a listening socket on 127.0.0.1. Every client
call (associate, echo, store, find, move, get, release, abort, leaving an
iterator early) runs on a worker thread, bounded; the machine's own thread
plays the SCP on the accepted raw socket -- PDUs and command sets built here
with ``struct``, data sets with pydicom, no dicomnet encoder -- following the
script its rule chose. The SCP accepts (with a Maximum Length of 16 KiB, 4 KiB,
100 bytes or none), rejects, aborts, closes, resets or stays silent on the
A-ASSOCIATE-RQ, or accepts what was not proposed; answers normally (Success /
Warning / Failure statuses; C-FIND and C-MOVE Pending responses, C-GET C-STORE
sub-operations on the same association interleaved with Pending responses,
finals with and without an Identifier / Failed SOP Instance UID List);
fragments its messages in many ways (PDVs cut at odd byte counts, one PDV per
PDU, several messages in one PDU, the byte stream cut into separate writes);
answers late (each message within ``dimse_timeout`` though the whole takes
longer, or beyond it); breaks PS3.7/PS3.8 on purpose (a response to a Message
ID never used or already answered, a duplicated final response, a response on
an unaccepted context, an unknown Command Field, an undecodable command set, a
data set PDV first, PDUs out of place or malformed, a C-STORE sub-operation on
a context the client is not SCP of); sends A-ABORT or A-RELEASE-RQ (also right
behind a response, and colliding with the client's own), closes or resets the
connection at any point, never answers a C-CANCEL, and stops reading while
the client sends a big data set.

After every step the machine checks:

* every client call returns or raises within a bound (no hang);
* what the SCP received is well formed (PS3.8 9.3.5 / Annex E: P-DATA-TF
  within the Maximum Length we advertised, one context per message, command
  before data set, reserved bits clear; PS3.7 9.3: Command Field, Affected SOP
  Class, Priority, Data Set Type, the context of the SOP class, fresh Message
  IDs; each C-STORE-RSP of a C-GET on the sub-operation's context with its
  Message ID Being Responded To; a C-CANCEL-RQ naming the operation on its
  context, PS3.7 9.3.2.3, also when the iterator is still referenced and the
  next request comes);
* results equal what the script sent: matches and C-GET instances byte for
  byte (also when streamed to files), sub-operation counters, statuses, the
  Failed SOP Instance UID List; a failure status raises DimseStatusError with
  its code (PS3.7 Annex C), a warning does not;
* a message that breaks PS3.7 (a Message ID Being Responded To of nothing, an
  unknown Command Field, an undecodable command set) or PS3.8 (Table 9-10,
  Sta6: an unrecognized, unexpected or invalid PDU -- AA-8 with the reason of
  9.3.8) ends the association with an A-ABORT from the client and an
  exception; a response to a request already answered is dropped with a
  warning (docs/api.md "Errors"); the peer's A-ABORT raises AssociationAborted
  with its source and reason and the client closes at once (AA-3); a timeout
  raises ReadTimeout / ARTIMTimeout / WriteTimeout in its time (with an
  A-ABORT where a PDU can still be sent); afterwards the association says it
  is closed and the next call raises at once;
* the peer's A-RELEASE-RQ is answered with an A-RELEASE-RP (Table 9-10 AR-2,
  AR-4), in a collision the requestor answers first (AR-8, AR-9), then closes
  at the acceptor's A-RELEASE-RP (AR-3);
* no exception escapes a thread, dicomnet logs no ERROR for a peer's fault.

At teardown no thread, file descriptor or ``.part`` file of dicomnet remains
(the Sta13 closer, :mod:`dicomnet.transport.closer`, included).

What dicomnet gets wrong is left out of the machine (KNOWN_FAULTS) and pinned,
shrunk, as a strict xfail. The one fault found, a C-ECHO answered by another
service's response, is fixed; its shrunk case stays as a regression test
(test_echo_takes_only_a_c_echo_rsp). Every script also runs once on its own (test_every_script_once), and the
machine's checks are shown to fail on a broken client or model
(test_the_harness_notices_...).
"""
from __future__ import annotations

import collections
import gc
import logging
import os
import random
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from pydicom.dataset import Dataset as PyDataset
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import UID

from dicomnet import Client
from dicomnet.errors import (ARTIMTimeout, AssociationAborted, AssociationError, AssociationRejected,
                             DimseStatusError, PDUError, ReadTimeout, WriteTimeout)
from dicomnet.transport import closer

from ._common import (AFF_CLASS, AFF_INST, APP_CONTEXT, CF, COMPLETED, CT, CUTS, DST, EXPLICIT, FAILED, FIND, GET,
                      IMPLICIT, INVALID, LATE, MID, MIDR, MOVE, MOVE_DEST, NO_DATASET, PRIORITY, PROMPT, REMAINING,
                      STATUS, UNEXPECTED, UNRECOGNIZED, VERIFICATION, WARNING, _fds, encode_command, encode_ds, item,
                      machine_settings, pdu, pdv, replay_steps, run_machine, text, us)

# ------------------------------------------------------------------ constants
SCP_AE, SCU_AE = "SCRIPTED", "MACHINE"
MR = "1.2.840.10008.5.1.4.1.1.4"
UID_ROOT = "1.2.826.0.1.3680043.9.7778"
STORE_UIDS = {"small": f"{UID_ROOT}.1.1", "medium": f"{UID_ROOT}.1.2", "big": f"{UID_ROOT}.1.3"}
# The client proposes these; MR only in the SCP role (the C-GET sub-operations come in on it).
CLIENT_CONTEXTS = [(VERIFICATION, [IMPLICIT]), (CT, [EXPLICIT]), (FIND, [EXPLICIT]), (MOVE, [EXPLICIT]),
                   (GET, [EXPLICIT]), (MR, [EXPLICIT])]

DIMSE, READ, WRITE, ARTIM = 0.5, 0.8, 0.5, 0.5   # the client's timers (seconds)
SLOW_BUDGET = 1.2        # seconds of deliberate waiting (late answers, timeouts) per example
CLIENT_MAX = 16384       # the largest P-DATA-TF the client accepts
EARLY = 0.1              # a timer may seem to fire this much early (LATE: and this much late)
LIMIT = PROMPT + READ    # any client call returns or raises within this


def is_failure(status: int) -> bool:
    """PS3.7 Annex C: 0xAxxx, 0xCxxx and the 01xx/02xx failures (not 0x0107, 0x0116)."""
    return (status >> 12 in (0xA, 0xC) or (status >> 8 in (1, 2) and status not in (0x0107, 0x0116)))


# ------------------------------------------------------------------ wire bytes
def abort_pdu(source: int = 0, reason: int = 0) -> bytes:
    return pdu(0x07, bytes([0, 0, source, reason]))


def decode_command(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    pos = 0
    while pos < len(data):
        group, elem, n = struct.unpack_from("<HHL", data, pos)
        if group != 0 or pos + 8 + n > len(data):
            raise AssertionError(f"client sent a bad command element ({group:04X},{elem:04X}) at {pos}")
        out[elem] = data[pos + 8:pos + 8 + n]
        pos += 8 + n
    assert struct.unpack("<L", out[0])[0] == len(data) - 12, "client: CommandGroupLength is wrong"
    return out


def response(field: int, midr: int, status: int, sop_class: str | None, *, dataset: bool = False,
             counters: tuple[int, int, int, int] | None = None, **extra: int | str) -> bytes:
    fields: dict[int, int | str] = {CF: field, MIDR: midr, DST: 0x0001 if dataset else NO_DATASET, STATUS: status}
    if sop_class:
        fields[AFF_CLASS] = sop_class
    if counters is not None:
        fields.update(zip((REMAINING, COMPLETED, FAILED, WARNING), counters))
    fields.update({int(k[1:], 16): v for k, v in extra.items()})   # e.g. x1000="1.2.3"
    return encode_command(fields)


def match_ds(n: int, patient: str = "FIND") -> bytes:
    ds = PyDataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientID = f"{patient}{n}"
    ds.PatientName = "Doe^J" + "o" * (n % 3)          # odd and even lengths
    ds.StudyInstanceUID = f"{UID_ROOT}.60.{n + 1}"
    return encode_ds(ds)


def failed_list(uids: list[str]) -> bytes:
    ds = PyDataset()
    ds.FailedSOPInstanceUIDList = uids if len(uids) != 1 else uids[0]
    return encode_ds(ds)


def instance(uid: str, size: int) -> bytes:
    ds = PyDataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.PatientID, ds.Modality = MR, uid, "GET", "MR"
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = size // 100, 100, 8, 8, 7
    ds.SamplesPerPixel, ds.PixelRepresentation, ds.PhotometricInterpretation = 1, 0, "MONOCHROME2"
    ds.add_new(0x7FE00010, "OB", random.Random(uid).randbytes(size // 100 * 100))
    return encode_ds(ds)


def dataset_part(path: str) -> bytes:
    """The data set bytes of a Part 10 file (after the File Meta group)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[128:132] == b"DICM" and data[132:136] == b"\2\0\0\0", f"{path}: no File Meta group length"
    return data[144 + struct.unpack_from("<L", data, 140)[0]:]


# ------------------------------------------------------------- fragmentation
@dataclass(frozen=True)
class Frag:
    """How the SCP puts messages on the wire: command sets cut into PDVs of
    ``every`` bytes (0: whole) or at ``cmd_cuts`` (per mille), data sets at
    ``ds_cuts``; PDVs one per PDU ("separate"), packed per message
    ("message") or several messages in one PDU ("joined"); the byte stream cut
    into separate writes at ``tcp_cuts`` (per mille)."""
    cmd_cuts: tuple[int, ...] = ()
    ds_cuts: tuple[int, ...] = ()
    every: int = 0
    packing: str = "message"
    tcp_cuts: tuple[int, ...] = ()


WHOLE = Frag()
FRAGS = st.builds(Frag, cmd_cuts=CUTS, ds_cuts=CUTS, every=st.sampled_from([0, 0, 0, 7, 13]),
                  packing=st.sampled_from(["message", "separate", "joined"]), tcp_cuts=CUTS)


def _split(data: bytes, cuts: tuple[int, ...], limit: int, every: int = 0) -> list[bytes]:
    at = set(range(every, len(data), every)) if every else {len(data) * c // 1000 for c in cuts}
    points = sorted(at - {0, len(data)})
    out = []
    for part in (data[a:b] for a, b in zip([0, *points], [*points, len(data)])):
        while len(part) > limit:
            out.append(part[:limit])
            part = part[limit:]
        out.append(part)
    return out


def wire(messages: list[tuple[int, bytes, bytes | None]], frag: Frag, max_pdu: int = CLIENT_MAX) -> list[bytes]:
    """Messages (context, command set, data set or None) as TCP writes."""
    return _split(b"".join(pdus_of(messages, frag, max_pdu)), frag.tcp_cuts, 1 << 30)


def pdus_of(messages: list[tuple[int, bytes, bytes | None]], frag: Frag, max_pdu: int = CLIENT_MAX) -> list[bytes]:
    """Messages (context, command set, data set or None) as P-DATA-TF PDUs."""
    groups: list[list[bytes]] = []
    for ctx, command, dataset in messages:
        cmd = _split(command, frag.cmd_cuts, max_pdu - 6, frag.every)
        items = [pdv(ctx, True, i == len(cmd) - 1, part) for i, part in enumerate(cmd)]
        if dataset is not None:
            parts = _split(dataset, frag.ds_cuts, max_pdu - 6)
            items += [pdv(ctx, False, i == len(parts) - 1, part) for i, part in enumerate(parts)]
        for i, one in enumerate(items):
            joins = groups and (frag.packing == "joined" or (frag.packing == "message" and i > 0))
            if joins and sum(map(len, groups[-1])) + len(one) <= max_pdu:
                groups[-1].append(one)
            else:
                groups.append([one])
    return [pdu(0x04, b"".join(g)) for g in groups]


# ------------------------------------------------------------------ the SCP
@dataclass
class Rq:
    """What the client's A-ASSOCIATE-RQ said."""
    called: bytes
    calling: bytes
    contexts: dict[int, tuple[str, list[str]]]
    roles: dict[str, tuple[int, int]]
    max_pdu: int | None


def parse_rq(body: bytes) -> Rq:
    def items(data: bytes, pos: int = 0) -> list[tuple[int, bytes]]:
        out = []
        while pos < len(data):
            n = struct.unpack_from(">H", data, pos + 2)[0]
            out.append((data[pos], data[pos + 4:pos + 4 + n]))
            pos += 4 + n
        return out
    rq = Rq(body[4:20], body[20:36], {}, {}, None)
    for kind, value in items(body, 68):
        if kind == 0x20:
            subs = items(value, 4)
            rq.contexts[value[0]] = (next(v for k, v in subs if k == 0x30).rstrip(b"\0").decode(),
                                     [v.rstrip(b"\0").decode() for k, v in subs if k == 0x40])
        elif kind == 0x50:
            for sub, sv in items(value):
                if sub == 0x51:
                    rq.max_pdu = struct.unpack(">L", sv)[0]
                elif sub == 0x54:
                    k = struct.unpack_from(">H", sv)[0]
                    rq.roles[sv[2:2 + k].rstrip(b"\0").decode()] = (sv[2 + k], sv[3 + k])
    return rq


def associate_ac(rq: Rq, max_pdu: int) -> bytes:
    """Accept every proposed context with its first transfer syntax, and the SCP role asked for."""
    fixed = struct.pack(">HH16s16s32s", 1, 0, rq.called, rq.calling, bytes(32))
    pcs = b"".join(item(0x21, bytes([cid, 0, 0, 0]) + item(0x40, syntaxes[0].encode()))
                   for cid, (_, syntaxes) in rq.contexts.items())
    roles = b"".join(item(0x54, struct.pack(">H", len(uid)) + uid.encode() + bytes(role))
                     for uid, role in rq.roles.items())
    user = item(0x50, item(0x51, struct.pack(">L", max_pdu)) + item(0x52, f"{UID_ROOT}.1".encode()) + roles)
    return pdu(0x02, fixed + item(0x10, APP_CONTEXT.encode()) + pcs + user)


@dataclass
class Msg:
    ctx: int
    command: dict[int, bytes]
    dataset: bytes | None

    @property
    def field(self) -> int | None:
        return us(self.command, CF)

    @property
    def mid(self) -> int:
        return us(self.command, MID) or 0


class ScpConn:
    """The SCP's end of one connection: what the client sends, checked
    against PS3.8 9.3.5 / Annex E as it is reassembled."""

    def __init__(self, sock: socket.socket, our_max: int) -> None:
        self.sock = sock
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.our_max = our_max
        self.buf = bytearray()
        self.ready: collections.deque[Msg] = collections.deque()
        self.partial: dict[str, Any] = {}
        self.ctx: dict[str, int] = {}
        self.closed = False
        self.rq: Rq | None = None
        self.rq_bytes = b""

    def send(self, chunks: list[bytes] | bytes) -> None:
        for chunk in [chunks] if isinstance(chunks, bytes) else chunks:
            self.sock.settimeout(PROMPT)
            self.sock.sendall(chunk)

    def send_messages(self, messages: list[tuple[int, bytes, bytes | None]], frag: Frag = WHOLE) -> None:
        self.send(wire(messages, frag))

    def close(self, *, reset: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        if reset:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def next_pdu(self, limit: float = PROMPT) -> tuple[int, bytes] | None:
        """The client's next PDU (None: it closed the connection), within ``limit`` seconds."""
        deadline = time.monotonic() + limit
        while True:
            if len(self.buf) >= 6 and len(self.buf) >= 6 + struct.unpack_from(">L", self.buf, 2)[0]:
                n = struct.unpack_from(">L", self.buf, 2)[0]
                pdu_type, body = self.buf[0], bytes(self.buf[6:6 + n])
                del self.buf[:6 + n]
                return pdu_type, body
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"SCP: nothing more from the client within {limit:g} s")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            except ConnectionError:
                chunk = b""
            if not chunk:
                return None
            self.buf += chunk

    def next_message(self, limit: float = PROMPT) -> Msg:
        while not self.ready:
            got = self.next_pdu(limit)
            assert got is not None, "SCP: the client closed the connection where a DIMSE message was due"
            assert got[0] == 0x04, f"SCP: PDU {got[0]:02X}H {got[1][:8].hex()} where a DIMSE message was due"
            self.pdata(got[1])
        return self.ready.popleft()

    def pdata(self, body: bytes) -> None:
        """PS3.8 9.3.5, Annex E: the client's framing."""
        assert not self.our_max or len(body) <= self.our_max, \
            f"client: P-DATA-TF of {len(body)} bytes; we accept {self.our_max}"
        assert body, "client: P-DATA-TF without a PDV"
        pos, message = 0, self.partial
        while pos < len(body):
            n = struct.unpack_from(">L", body, pos)[0]
            assert n >= 2 and pos + 4 + n <= len(body), f"client: PDV item length {n} at {pos}"
            ctx, header, data = body[pos + 4], body[pos + 5], body[pos + 6:pos + 4 + n]
            pos += 4 + n
            assert not header & 0xFC, f"client: reserved bits in message control header {header:02X}"
            assert ctx in self.ctx.values(), f"client: PDV on context {ctx}, which was not accepted"
            assert message.setdefault("ctx", ctx) == ctx, "client: one message on two contexts"
            if header & 1:
                assert "command" not in message, "client: command fragment after the last one"
                message["cmd"] = message.get("cmd", b"") + data
                if not header & 2:
                    continue
                command = decode_command(message["cmd"])
                if us(command, DST) == NO_DATASET:
                    self.ready.append(Msg(ctx, command, None))
                    message.clear()
                else:
                    message["command"], message["ds"] = command, b""
            else:
                assert "command" in message, "client: data set fragment before the command set"
                message["ds"] += data
                if header & 2:
                    self.ready.append(Msg(ctx, message["command"], message["ds"]))
                    message.clear()

    def ending(self, limit: float = PROMPT) -> tuple:
        """What ends the client's side: ("abort", source, reason), ("release-rq",),
        ("release-rp",) or ("eof",); P-DATA before it is kept in ``ready``."""
        while True:
            got = self.next_pdu(limit)
            if got is None:
                return ("eof",)
            pdu_type, body = got
            if pdu_type == 0x04:
                self.pdata(body)
            elif pdu_type == 0x07:
                return ("abort", body[2], body[3])
            elif pdu_type in (0x05, 0x06):
                assert body == bytes(4), f"client: A-RELEASE PDU body {body.hex()}"
                return ("release-rq" if pdu_type == 0x05 else "release-rp",)
            else:
                raise AssertionError(f"client: PDU {pdu_type:02X}H on an established association")

    def eof(self, limit: float = PROMPT) -> None:
        """The client closes the connection (after P-DATA it may still send)."""
        end = self.ending(limit)
        assert end == ("eof",), f"client: {end} where it owed closing the connection"


class Call:
    """One client call on its own thread: it returns or raises within a bound, or it hangs."""

    def __init__(self, fn: Callable[[], Any], name: str = "client-call") -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.started = time.monotonic()
        self.ended = 0.0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(fn,), name=f"stateful-{name}", daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:  # noqa: BLE001 - judged by the rule
            self.error = exc
        finally:
            self.ended = time.monotonic()
            self.done.set()

    def wait(self, limit: float = LIMIT) -> Call:
        assert self.done.wait(limit), f"client call did not return within {limit:g} s (a hang)"
        self.thread.join(1.0)
        return self

    @property
    def elapsed(self) -> float:
        return self.ended - self.started

    def ok(self) -> Any:
        assert self.error is None, f"client call raised {type(self.error).__name__}: {self.error}"
        return self.result

    def failure(self) -> BaseException | None:
        """What the call raised -- for an iteration (see :func:`partial`), what the iteration raised."""
        if self.error is None and isinstance(self.result, tuple) and len(self.result) == 3:
            return self.result[1]
        return self.error

    def raised(self, *types: type[BaseException]) -> BaseException:
        assert isinstance(self.error, types), (f"client call: expected {[t.__name__ for t in types]}, "
                                               f"got {self.error!r} / result {self.result!r}")
        return self.error


def partial(iterate: Callable[[], Any]) -> Callable[[], tuple[list[Any], BaseException | None, Any]]:
    """A client function that collects what an iterator gave before it raised."""
    def run() -> tuple[list[Any], BaseException | None, Any]:
        got: list[Any] = []
        result = None
        try:
            result = iterate()
            for x in result:
                got.append(x)
        except Exception as exc:  # noqa: BLE001 - judged by the rule
            return got, exc, result
        return got, None, result
    return run


# ---------------------------------------------------------------- the model
# Cases dicomnet gets wrong: pinned below as strict xfails, left out of the machine.
KNOWN_FAULTS: dict[str, str] = {}   # none open
BAD_RESPONSES = ["wrong-midr", "unsolicited", "unaccepted-context", "unknown-command-field",
                 "undecodable-command", "data-set-before-command", "wrong-response-field"]
# A-ABORT (source, reason) pairs the client owes for a PDU out of place (PS3.8 9.3.8, Table 9-10 AA-8).
PDU_VIOLATIONS: dict[str, tuple[bytes, frozenset]] = {
    "unknown-pdu-type": (pdu(0x08, bytes(4)), UNRECOGNIZED),
    "associate-rj": (pdu(0x03, bytes([0, 1, 1, 1])), UNEXPECTED),
    "release-rp": (pdu(0x06, bytes(4)), UNEXPECTED),
    "abort-length-6": (pdu(0x07, bytes(6)), INVALID),
    "release-rq-length-2": (pdu(0x05, bytes(2)), INVALID),
    "p-data-over-max-length": (struct.pack(">BBL", 4, 0, CLIENT_MAX + 1) + bytes(100), INVALID),
    "p-data-4GiB": (struct.pack(">BBL", 4, 0, 0xFFFFFFFF) + bytes(100), INVALID),
    "pdv-overruns-pdu": (pdu(0x04, struct.pack(">LBB", 50, 1, 3) + bytes(4)), INVALID),
    "p-data-without-pdv": (pdu(0x04, b""), INVALID),
}
STATS: collections.Counter = collections.Counter()


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        (self.errors if record.levelno >= logging.ERROR else self.warnings).append(record.getMessage())


class ClientMachine(RuleBasedStateMachine):
    workdir = ""
    files: dict[str, tuple[str, bytes]] = {}   # name -> (Part 10 path, its data set bytes)
    serial = 0

    def __init__(self) -> None:
        super().__init__()
        cls = type(self)
        cls.serial += 1
        self.threads_before = set(threading.enumerate())
        self.fds_before = _fds()
        self.started = time.monotonic()
        self.trace: list[str] = []
        self.thread_errors: list[str] = []
        self.previous_hook = threading.excepthook

        def hook(args: Any) -> None:
            self.thread_errors.append(f"{getattr(args.thread, 'name', '?')}: {args.exc_type.__name__}: "
                                      f"{args.exc_value}")
            self.previous_hook(args)
        threading.excepthook = hook
        self.capture = _Capture()
        logging.getLogger("dicomnet").addHandler(self.capture)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)   # inherited: a stall fills fast
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.port = self.listener.getsockname()[1]
        self.client = Client(SCU_AE, connect_timeout=PROMPT, read_timeout=READ, write_timeout=WRITE,
                             dimse_timeout=DIMSE, artim_timeout=ARTIM, max_pdu=CLIENT_MAX)
        self.store_dir = os.path.join(self.workdir, f"get-{cls.serial}")
        os.makedirs(self.store_dir)
        self.assoc: Any = None
        self.conn: ScpConn | None = None
        self.answered: list[int] = []          # Message IDs answered in full on this association
        self.uids = 0
        self.budget = SLOW_BUDGET

    def slow(self, cost: float) -> bool:
        """Whether a step that waits ``cost`` seconds on purpose still fits this example's budget."""
        if cost > self.budget:
            return False
        self.budget -= cost
        return True

    # ------------------------------------------------------------ helpers
    def note(self, what: str) -> None:
        STATS[what] += 1
        self.trace.append(f"{time.monotonic() - self.started:7.3f} {what}")

    def _uid(self) -> str:
        self.uids += 1
        return f"{UID_ROOT}.80.{type(self).serial}.{self.uids}"

    def _ready(self) -> tuple[Any, ScpConn]:
        if self.assoc is None:
            self.do_associate("accept", random.Random(len(self.trace)).choice([16384, 4096, 0, 100]))
        assert self.assoc is not None and self.conn is not None
        return self.assoc, self.conn

    def do_associate(self, answer: str, our_max: int = 16384) -> None:
        self.note(f"associate:{answer}")
        call = Call(lambda: self.client.associate("127.0.0.1", self.port, SCP_AE, contexts=CLIENT_CONTEXTS,
                                                  role_selections=[(MR, False, True)]), "associate")
        self.listener.settimeout(PROMPT)
        sock, _ = self.listener.accept()
        conn = ScpConn(sock, our_max)
        got = conn.next_pdu()
        assert got is not None and got[0] == 0x01, f"client: {got} instead of an A-ASSOCIATE-RQ"
        rq = parse_rq(got[1])
        conn.rq, conn.rq_bytes = rq, pdu(0x01, got[1])
        assert rq.called.rstrip() == SCP_AE.encode() and rq.calling.rstrip() == SCU_AE.encode(), rq
        assert [c[0] for c in rq.contexts.values()] == [c[0] for c in CLIENT_CONTEXTS], rq.contexts
        assert all(cid % 2 for cid in rq.contexts), "PS3.8 9.3.2.2: context IDs are odd"
        assert rq.roles == {MR: (0, 1)} and rq.max_pdu == CLIENT_MAX, (rq.roles, rq.max_pdu)
        conn.ctx = {abstract: cid for cid, (abstract, _) in rq.contexts.items()}
        if answer == "accept":
            conn.send(associate_ac(rq, our_max))
            assoc = call.wait().ok()
            assert assoc.is_established and assoc.negotiated.peer_max_pdu == our_max
            assert assoc.context_for(MR, role="scp").context_id == conn.ctx[MR]
            self.assoc, self.conn, self.answered = assoc, conn, []
            return
        if answer == "reject":
            conn.send(pdu(0x03, bytes([0, 1, 1, 7])))      # rejected-permanent, service-user, called AE
            error = call.wait().raised(AssociationRejected)
            assert (error.result, error.source, error.reason) == (1, 1, 7), vars(error)  # type: ignore[attr-defined]
            conn.eof()                                      # AE-4: the requestor closes
        elif answer == "abort":
            conn.send(abort_pdu(2, 0))
            error = call.wait().raised(AssociationAborted)
            assert (error.source, error.reason) == (2, 0), vars(error)  # type: ignore[attr-defined]
            conn.eof()                                      # AA-3
        elif answer.startswith("ac-"):                      # an A-ASSOCIATE-AC that breaks PS3.8 9.3.3.2
            if answer == "ac-unproposed-syntax":
                rq.contexts[conn.ctx[CT]] = (CT, [IMPLICIT])
            else:
                rq.contexts[99] = (CT, [EXPLICIT])
            conn.send(associate_ac(rq, our_max))
            call.wait().raised(AssociationAborted)
            end = conn.ending()
            assert end[0] == "abort" and end[1] == 2, f"client: {end} where it owed an A-ABORT (AA-8)"
        elif answer in ("close", "reset"):
            conn.close(reset=answer == "reset")
            call.wait().raised(AssociationAborted)
        else:                                               # silent: the ARTIM timer (PS3.8 Sta5)
            call.wait(ARTIM + LATE + 1.0).raised(ARTIMTimeout)
            assert ARTIM - EARLY <= call.elapsed <= ARTIM + LATE, f"ARTIM fired after {call.elapsed:.2f} s"
            end = conn.ending()
            assert end in (("eof",), ("abort", 0, 0), ("abort", 2, 0)), end
        conn.close()

    def _request(self, msg: Msg, field: int, sop_class: str | None, *, dataset: bool,
                 priority: bool = True) -> None:
        """PS3.7 9.3: the request's fields, and the context of its SOP class."""
        assert msg.field == field, f"client: Command Field {msg.field:#06x}, expected {field:#06x}"
        if sop_class is not None:
            assert text(msg.command, AFF_CLASS) == sop_class, msg.command
            assert self.conn is not None and msg.ctx == self.conn.ctx[sop_class], \
                f"client: request on context {msg.ctx}, not that of {sop_class}"
        assert (msg.dataset is not None) == dataset, f"client: data set {msg.dataset is not None}, owed {dataset}"
        if priority:
            assert us(msg.command, PRIORITY) in (0, 1, 2), "client: no Priority (PS3.7 Table 9.3-1)"
        if field != 0x0FFF:
            # PS3.7 9.3.1.1 asks a Message ID unique among the operations outstanding; dicomnet's
            # recognition of late responses (Association._late_response) needs its recent ones distinct.
            assert 0 < msg.mid and msg.mid not in self.answered[-64:], f"client: Message ID {msg.mid} reused"

    def _answered(self, mid: int) -> None:
        self.answered.append(mid)

    @staticmethod
    def _raised_for(error: BaseException | None, final: int) -> None:
        """PS3.7 Annex C: a failure status raises DimseStatusError with its code; any other does not."""
        if is_failure(final):
            assert isinstance(error, DimseStatusError) and error.status == final, repr(error)
        else:
            assert error is None, repr(error)

    def _closed_after_fault(self) -> None:
        """After a fault: the association says it is over, the next call raises at once."""
        assoc, conn = self.assoc, self.conn
        assert assoc is not None and conn is not None
        assert not assoc.is_established and assoc.is_closed, repr(assoc)
        again = Call(assoc.echo, "echo-after-fault").wait(PROMPT)
        again.raised(AssociationError)
        assert again.elapsed < 0.5, f"a call on a closed association took {again.elapsed:.2f} s"
        conn.close()
        self.assoc = self.conn = None
        left = [n for n in os.listdir(self.store_dir) if n.endswith(".part")]
        assert not left, f"temporary files left after the association ended: {left}"

    def _expect_abort(self, conn: ScpConn, limit: float = PROMPT) -> None:
        """The client owes an A-ABORT (PS3.8 Table 9-10 AA-8 / an A-ABORT request of the user)."""
        end = conn.ending(limit)
        assert end[0] == "abort" and end[1] in (0, 2), f"client: {end} where it owed an A-ABORT"

    def _status_outcome(self, call: Call, status: int) -> None:
        """PS3.7 Annex C: a failure raises DimseStatusError with the code; anything else is returned."""
        call.wait()
        if is_failure(status):
            error = call.raised(DimseStatusError)
            assert isinstance(error, DimseStatusError)
            assert error.status == status, f"DimseStatusError {error.status:#06x}, sent {status:#06x}"
        else:
            assert call.ok() == status, f"status {call.result!r}, sent {status:#06x}"
        assert self.assoc.is_established, "a response ended the association"

    # ------------------------------------------------------------ services
    def do_echo(self, status: int = 0, frag: Frag = WHOLE, delay: float = 0.0) -> None:
        assoc, conn = self._ready()
        self.note("echo")
        call = Call(assoc.echo, "echo")
        msg = conn.next_message()
        self._request(msg, 0x0030, VERIFICATION, dataset=False, priority=False)
        time.sleep(delay)
        conn.send_messages([(msg.ctx, response(0x8030, msg.mid, status, VERIFICATION), None)], frag)
        self._status_outcome(call, status)
        self._answered(msg.mid)

    def do_store(self, name: str, status: int, frag: Frag = WHOLE, delay: float = 0.0) -> None:
        assoc, conn = self._ready()
        self.note("store")
        path, data = self.files[name]
        call = Call(lambda: assoc.store(path), "store")
        msg = conn.next_message()
        self._request(msg, 0x0001, CT, dataset=True)
        uid = text(msg.command, AFF_INST)
        assert uid == STORE_UIDS[name], f"client: Affected SOP Instance UID {uid}"
        assert msg.dataset == data, "client: the data set sent is not the file's"
        time.sleep(delay)
        conn.send_messages([(msg.ctx, response(0x8001, msg.mid, status, CT, x1000=uid), None)], frag)
        self._status_outcome(call, status)
        self._answered(msg.mid)

    def do_find(self, n: int, final: int, final_identifier: bool, frag: Frag, pending: int = 0xFF00,
                delay: float = 0.0) -> None:
        assoc, conn = self._ready()
        self.note("find")
        call = Call(partial(lambda: (bytes(m.encode(EXPLICIT)) for m in assoc.find(
            {"QueryRetrieveLevel": "STUDY", "PatientID": "FIND*", "StudyInstanceUID": None}))), "find")
        msg = conn.next_message()
        self._request(msg, 0x0020, FIND, dataset=True)
        matches = [match_ds(i) for i in range(n)]
        messages: list[tuple[int, bytes, bytes | None]] = [
            (msg.ctx, response(0x8020, msg.mid, pending, FIND, dataset=True), m) for m in matches]
        messages.append((msg.ctx, response(0x8020, msg.mid, final, FIND, dataset=final_identifier),
                         match_ds(99, "FINAL") if final_identifier else None))
        if delay:     # each response late, but within dimse_timeout of the previous one
            for one in messages:
                time.sleep(delay)
                conn.send_messages([one], frag)
        else:
            conn.send_messages(messages, frag)
        got, error, _ = call.wait().ok()
        assert got == matches, f"matches {len(got)} of {n} / differ from what was sent"
        self._raised_for(error, final)
        assert assoc.is_established
        self._answered(msg.mid)

    def do_move(self, n: int, final: int, with_list: bool, frag: Frag) -> None:
        assoc, conn = self._ready()
        self.note("move")

        holder: list[Any] = []

        def iterate() -> Any:
            result = assoc.move({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": f"{UID_ROOT}.60.1"}, "DEST")
            holder.append(result)
            return ((p.status, p.remaining, p.completed, p.failed, p.warning) for p in result)
        call = Call(partial(iterate), "move")
        msg = conn.next_message()
        self._request(msg, 0x0021, MOVE, dataset=True)
        assert text(msg.command, MOVE_DEST) == "DEST", msg.command
        failed = [self._uid() for _ in range(2 if final in (0xB000, 0xA702) else 0)]
        total = n + len(failed)
        pendings = [(0xFF00, total - i - 1, i + 1, 0, 0) for i in range(n)]
        messages: list[tuple[int, bytes, bytes | None]] = [
            (msg.ctx, response(0x8021, msg.mid, p[0], MOVE, counters=p[1:]), None) for p in pendings]
        counters = None if final == 0xA801 else (0, n, len(failed), 0)
        messages.append((msg.ctx, response(0x8021, msg.mid, final, MOVE, counters=counters, dataset=with_list),
                         failed_list(failed) if with_list else None))
        conn.send_messages(messages, frag)
        got, error, _ = call.wait().ok()
        assert got == pendings, f"progress {got}, sent {pendings}"
        result = holder[0]
        self._raised_for(error, final)
        assert result.status == final, f"status {result.status}, sent {final:#06x}"
        assert result.failed_instances == (failed if with_list else []), result.failed_instances
        if counters is not None:
            assert (result.completed, result.failed, result.warning) == counters[1:], repr(result)
        assert assoc.is_established
        self._answered(msg.mid)

    def do_get(self, n: int, final: int, store_to: bool, pendings: bool, size: int, frag: Frag,
               refused: bool = False, trickle: bool = False) -> None:
        """C-GET; ``refused``: first a sub-operation on a context where the client is not
        the SCP (answered with a failure there); ``trickle``: each PDU of the sub-operations
        within dimse_timeout of the last, all of them longer (the timeout is per PDU)."""
        assoc, conn = self._ready()
        self.note(f"get{':store_to' if store_to else ''}{':refused' if refused else ''}{':trickle' if trickle else ''}")
        folder = self.store_dir if store_to else None

        def collect() -> Any:
            return ((dataset_part(x) if store_to else bytes(x.encode(EXPLICIT)))
                    for x in assoc.get({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": f"{UID_ROOT}.60.1"},
                                       store_to=folder))
        call = Call(partial(collect), "get")
        msg = conn.next_message()
        self._request(msg, 0x0010, GET, dataset=True)
        if refused:
            uid = self._uid()
            conn.send_messages([(conn.ctx[CT], encode_command({CF: 0x0001, MID: 690, AFF_CLASS: CT, AFF_INST: uid,
                                                               PRIORITY: 0, DST: 1}), instance(uid, 300))], frag)
            rsp = conn.next_message()
            assert rsp.ctx == conn.ctx[CT] and rsp.field == 0x8001 and us(rsp.command, MIDR) == 690, rsp
            assert is_failure(us(rsp.command, STATUS) or 0), f"client stored on a context it is not SCP of: {rsp}"
        sent = self._sub_operations(conn, msg, n, size, frag, pendings, trickle=DIMSE * 0.5 if trickle else 0.0)
        failed = [self._uid()] if final in (0xB000, 0xA702) else []
        conn.send_messages([(msg.ctx, response(0x8010, msg.mid, final, GET, counters=(0, n, len(failed), 0),
                                               dataset=bool(failed)), failed_list(failed) if failed else None)])
        got, error, _ = call.wait().ok()
        assert got == sent, f"{len(got)} instances received of {n} sent / bytes differ"
        self._raised_for(error, final)
        assert assoc.is_established
        self._answered(msg.mid)

    def _sub_operations(self, conn: ScpConn, msg: Msg, n: int, size: int, frag: Frag, pendings: bool,
                        first: int = 0, trickle: float = 0.0) -> list[bytes]:
        """C-STORE sub-operations on the MR context (PS3.4 C.4.3.3); each C-STORE-RSP checked."""
        sent = []
        for i in range(first, first + n):
            uid = self._uid()
            data = instance(uid, size)
            sub = encode_command({CF: 0x0001, MID: 700 + i, AFF_CLASS: MR, AFF_INST: uid, PRIORITY: 0, DST: 1})
            if trickle:
                for one in pdus_of([(conn.ctx[MR], sub, data)], Frag(ds_cuts=(500,), packing="separate")):
                    time.sleep(trickle)
                    conn.send(one)
            else:
                conn.send_messages([(conn.ctx[MR], sub, data)], frag)
            self._sub_response(conn, conn.next_message(), 700 + i, uid)
            sent.append(data)
            if pendings:
                conn.send_messages([(msg.ctx, response(0x8010, msg.mid, 0xFF00, GET,
                                                       counters=(first + n - i - 1, i + 1, 0, 0)), None)])
        return sent

    def _sub_response(self, conn: ScpConn, rsp: Msg, mid: int, uid: str, status: int = 0) -> None:
        assert rsp.ctx == conn.ctx[MR], f"client: C-STORE-RSP on context {rsp.ctx}, the C-STORE-RQ on {conn.ctx[MR]}"
        assert rsp.field == 0x8001 and us(rsp.command, MIDR) == mid, f"client: {rsp.command} for C-STORE {mid}"
        assert us(rsp.command, STATUS) == status and rsp.dataset is None, rsp.command
        assert text(rsp.command, AFF_INST) == uid and text(rsp.command, AFF_CLASS) == MR, rsp.command

    # ----------------------------------------------------------- cancel
    def do_cancel(self, service: str, n: int, k: int, crossed: bool, frag: Frag) -> None:
        """Leave the iterator after ``k`` items: a C-CANCEL-RQ naming the operation
        (PS3.7 9.3.2.3), the responses drained to the final one, the association usable."""
        assoc, conn = self._ready()
        k = min(k, n)
        self.note(f"cancel:{service}{':crossed' if crossed else ''}")
        query = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": f"{UID_ROOT}.60.1"}

        def client() -> list[Any]:
            it: Any
            if service == "find":
                it = (bytes(m.encode(EXPLICIT)) for m in assoc.find(query))
            elif service == "move":
                it = ((p.completed,) for p in assoc.move(query, "DEST"))
            else:
                it = (bytes(x.encode(EXPLICIT)) for x in assoc.get(query))
            got = []
            for x in it:
                got.append(x)
                if len(got) == k:
                    break
            return got
        call = Call(client, f"cancel-{service}")
        msg = conn.next_message()
        field, sop = {"find": (0x0020, FIND), "move": (0x0021, MOVE), "get": (0x0010, GET)}[service]
        self._request(msg, field, sop, dataset=True)
        rsp_field = field | 0x8000
        sent: list[Any] = []
        if service == "get":
            sent = self._sub_operations(conn, msg, k, 300, frag, False)
            if crossed and k < n:     # the next sub-operation crosses the C-CANCEL: answered all the same
                uid = self._uid()
                conn.send_messages([(conn.ctx[MR], encode_command({CF: 0x0001, MID: 799, AFF_CLASS: MR, AFF_INST: uid,
                                                                   PRIORITY: 0, DST: 1}), instance(uid, 300))], frag)
        else:
            count = n if crossed else k
            items: list[Any] = ([match_ds(i) for i in range(count)] if service == "find"
                                else [(i + 1,) for i in range(count)])
            sent = items[:k]
            messages: list[tuple[int, bytes, bytes | None]] = [
                (msg.ctx, response(rsp_field, msg.mid, 0xFF00, sop, dataset=service == "find",
                                   counters=None if service == "find" else (n - i - 1, i + 1, 0, 0)),
                 items[i] if service == "find" else None) for i in range(count)]
            if crossed:               # the final response crosses the C-CANCEL
                messages.append((msg.ctx, response(rsp_field, msg.mid, 0, sop, counters=None if service == "find"
                                                   else (0, n, 0, 0)), None))
            conn.send_messages(messages, frag)
        cancel = conn.next_message()
        assert cancel.field == 0x0FFF, f"client: {cancel.command} where the C-CANCEL-RQ was due"
        self._request(cancel, 0x0FFF, None, dataset=False, priority=False)
        assert us(cancel.command, MIDR) == msg.mid, \
            f"client: C-CANCEL-RQ for message {us(cancel.command, MIDR)}, the operation is {msg.mid}"
        assert cancel.ctx == msg.ctx, "client: C-CANCEL-RQ on another context than its operation (PS3.7 9.3.2.3)"
        if service == "get" and crossed and k < n:
            self._sub_response(conn, conn.next_message(), 799, uid)
        if not (crossed and service != "get"):
            conn.send_messages([(msg.ctx, response(rsp_field, msg.mid, 0xFE00, sop,
                                                   counters=None if service == "find" else (n - k, k, 0, 0)), None)])
        assert call.wait().ok() == sent, "the items before the break differ from what was sent"
        assert assoc.is_established, "cancelling ended the association"
        self._answered(msg.mid)
        self.do_find(1, 0, False, WHOLE)     # "a C-FIND after cancel does not hang"

    def do_held_find(self, k: int) -> None:
        """A C-FIND iterator left unfinished but still referenced: the next request
        cancels it and drains it first (docs/api.md), then goes out."""
        assoc, conn = self._ready()
        self.note("cancel:find-held")

        def client() -> tuple[list[bytes], int, Any]:
            it = iter(assoc.find({"QueryRetrieveLevel": "STUDY", "PatientID": "X"}))
            got = [bytes(next(it).encode(EXPLICIT)) for _ in range(k)]
            return got, assoc.echo(), it          # the iterator still referenced
        call = Call(client, "held-find")
        msg = conn.next_message()
        self._request(msg, 0x0020, FIND, dataset=True)
        conn.send_messages([(msg.ctx, response(0x8020, msg.mid, 0xFF00, FIND, dataset=True), match_ds(i))
                            for i in range(k)])
        cancel = conn.next_message()
        assert cancel.field == 0x0FFF and us(cancel.command, MIDR) == msg.mid, \
            f"client: {cancel.command} where the C-CANCEL-RQ of message {msg.mid} was due"
        conn.send_messages([(msg.ctx, response(0x8020, msg.mid, 0xFF00, FIND, dataset=True), match_ds(k)),
                            (msg.ctx, response(0x8020, msg.mid, 0xFE00, FIND), None)])
        echo = conn.next_message()
        self._request(echo, 0x0030, VERIFICATION, dataset=False, priority=False)
        conn.send_messages([(echo.ctx, response(0x8030, echo.mid, 0, VERIFICATION), None)])
        got, status, _ = call.wait().ok()
        assert got == [match_ds(i) for i in range(k)] and status == 0, (got, status)
        self._answered(msg.mid)
        self._answered(echo.mid)

    # ------------------------------------------------------------ faults
    def do_late(self, service: str, frag: Frag) -> None:
        """The response does not begin within dimse_timeout: ReadTimeout, then an A-ABORT."""
        assoc, conn = self._ready()
        self.note(f"late:{service}")
        if service == "cancel":      # the C-CANCEL-RQ is never answered: the break returns, then A-ABORT
            call = Call(lambda: [bytes(m.encode(EXPLICIT)) for m, _ in zip(assoc.find({"PatientID": "X"}), range(1))],
                        "late-cancel")
        elif service == "echo":
            call = Call(assoc.echo, "late-echo")
        elif service == "find":
            call = Call(partial(lambda: (bytes(m.encode(EXPLICIT)) for m in assoc.find({"PatientID": "X"}))), "late")
        else:
            call = Call(partial(lambda: (dataset_part(x) for x in assoc.get({"QueryRetrieveLevel": "STUDY"},
                                                                              store_to=self.store_dir))), "late")
        msg = conn.next_message()
        if service in ("find", "cancel"):
            conn.send_messages([(msg.ctx, response(0x8020, msg.mid, 0xFF00, FIND, dataset=True), match_ds(i))
                                for i in range(1 if service == "find" else 2)], frag)
            if service == "cancel":
                assert conn.next_message().field == 0x0FFF, "client: no C-CANCEL-RQ"
        elif service == "get":     # half a sub-operation's data set, then nothing: the .part file goes
            uid = self._uid()
            sub = encode_command({CF: 0x0001, MID: 900, AFF_CLASS: MR, AFF_INST: uid, PRIORITY: 0, DST: 1})
            stream = b"".join(wire([(conn.ctx[MR], sub, instance(uid, 40000))], frag))
            conn.send(stream[:len(stream) // 2])
        t0 = time.monotonic()
        self._expect_abort(conn, DIMSE + LATE)
        waited = time.monotonic() - t0
        error = call.wait().failure()
        if service == "cancel":      # documented: the loop is over, the failed drain only logged
            assert call.ok() == [match_ds(0)], call.result
        else:
            assert isinstance(error, ReadTimeout), repr(error)
        assert DIMSE - EARLY <= waited <= DIMSE + LATE, f"aborted after {waited:.2f} s, dimse_timeout {DIMSE}"
        if service == "find":
            assert call.result[0] == [match_ds(0)], call.result
        # The late response comes after all (Sta13: AA-6, ignored), then the close.
        conn.send(pdu(0x04, pdv(msg.ctx, True, True, response(0x8030, msg.mid, 0, None))))
        self._closed_after_fault()

    def do_bad_response(self, kind: str) -> None:
        """A response that breaks PS3.7/PS3.8: an A-ABORT and an exception."""
        assoc, conn = self._ready()
        self.note(f"bad-response:{kind}")
        if kind == "unsolicited":    # a response to nothing while idle, met by the next request
            conn.send_messages([(conn.ctx[VERIFICATION], response(0x8030, 0xFFF0, 0, VERIFICATION), None)])
        call = Call(assoc.echo, "echo")
        msg = conn.next_message()
        self._request(msg, 0x0030, VERIFICATION, dataset=False, priority=False)
        ctx, mid = msg.ctx, msg.mid
        good = response(0x8030, mid, 0, VERIFICATION)
        if kind == "wrong-midr":
            conn.send_messages([(ctx, response(0x8030, mid + 100, 0, VERIFICATION), None)])
        elif kind == "unaccepted-context":
            conn.send(pdu(0x04, pdv(ctx + 100, True, True, good)))
        elif kind == "unknown-command-field":
            conn.send_messages([(ctx, response(0x8FF0, mid, 0, VERIFICATION), None)])
        elif kind == "wrong-response-field":     # a C-STORE-RSP to a C-ECHO-RQ
            conn.send_messages([(ctx, response(0x8001, mid, 0, VERIFICATION), None)])
        elif kind == "undecodable-command":
            conn.send(pdu(0x04, pdv(ctx, True, True, good[:12] + struct.pack("<HHL", 0, 0x0100, 0x7FFF) + good[20:])))
        elif kind == "data-set-before-command":
            conn.send(pdu(0x04, pdv(ctx, False, True, match_ds(0)) + pdv(ctx, True, True, good)))
        call.wait().raised(AssociationAborted, PDUError)
        self._expect_abort(conn)
        self._closed_after_fault()

    def do_stale_response(self, kind: str) -> None:
        """A response to a request already answered in full: dropped with a warning (docs/api.md)."""
        assoc, conn = self._ready()
        if not self.answered:
            self.do_echo()
        self.note(f"stale:{kind}")
        if kind == "stale-in-find":       # between the responses of a C-FIND, on another context
            stale_mid = self.answered[-1]
            call = Call(partial(lambda: (bytes(m.encode(EXPLICIT)) for m in assoc.find({"PatientID": "X"}))), "find")
            msg = conn.next_message()
            conn.send_messages([(msg.ctx, response(0x8020, msg.mid, 0xFF00, FIND, dataset=True), match_ds(0)),
                                (conn.ctx[VERIFICATION], response(0x8030, stale_mid, 0, VERIFICATION), None),
                                (msg.ctx, response(0x8020, msg.mid, 0, FIND), None)])
            assert call.wait().ok()[:2] == ([match_ds(0)], None)
            assert assoc.is_established
            self._answered(msg.mid)
            return
        if kind == "duplicate-final":     # a second final C-FIND-RSP, met by the next request
            self.do_find(1, 0, False, WHOLE)
            fmid = self.answered[-1]
            conn.send_messages([(conn.ctx[FIND], response(0x8020, fmid, 0, FIND), None)])
        call = Call(assoc.echo, "echo")
        msg = conn.next_message()
        stale = response(0x8030, self.answered[-1], 0, VERIFICATION)
        conn.send_messages([(msg.ctx, stale, None), (msg.ctx, response(0x8030, msg.mid, 0, VERIFICATION), None)]
                           if kind == "stale-midr" else [(msg.ctx, response(0x8030, msg.mid, 0, VERIFICATION), None)])
        assert call.wait().ok() == 0
        assert assoc.is_established
        self._answered(msg.mid)

    def do_scp_abort(self, where: str, source: int, reason: int) -> None:
        """The SCP's A-ABORT: AssociationAborted with its source and reason, the
        connection closed at once (AA-3), no .part file left."""
        assoc, conn = self._ready()
        self.note(f"scp-abort:{where}")
        call, prefix = self._start_for(where, conn, assoc)
        conn.send(prefix + abort_pdu(source, reason))
        if where == "mid-store":
            conn.close()
        error = call.wait().failure()
        assert isinstance(error, AssociationAborted), repr(error)
        if where not in ("idle", "mid-store"):   # reading when it came: the source and reason are reported
            assert (error.source, error.reason) == (source, reason), vars(error)
            conn.eof()
        self._closed_after_fault()

    def do_scp_close(self, where: str, reset: bool) -> None:
        assoc, conn = self._ready()
        self.note(f"scp-{'reset' if reset else 'close'}:{where}")
        call, prefix = self._start_for(where, conn, assoc)
        if prefix:
            conn.send(prefix)
            if reset and isinstance(call, _Deferred) and call.first is not None:
                call.first.done.wait(PROMPT)   # a reset may destroy data not yet read (TCP, not DICOM)
        conn.close(reset=reset)
        error = call.wait().failure()
        assert isinstance(error, AssociationAborted), repr(error)
        self._closed_after_fault()

    def _start_for(self, where: str, conn: ScpConn, assoc: Any) -> tuple[Call, bytes]:
        """A client call that is at ``where`` when the SCP ends things, and
        what the SCP sends in the same write just before (the last response)."""
        if where == "idle":
            return _Deferred(assoc), b""
        if where == "behind-response":     # PDUs are delivered in order: the C-ECHO-RSP first
            first = Call(assoc.echo, "echo")
            msg = conn.next_message()
            return _Deferred(assoc, first), pdu(0x04, pdv(msg.ctx, True, True,
                                                            response(0x8030, msg.mid, 0, VERIFICATION)))
        if where == "echo":
            call = Call(assoc.echo, "echo")
            conn.next_message()
            return call, b""
        if where == "mid-store":           # the client still writing a big data set (its A-ABORT may be lost)
            path, _ = self.files["big"]
            call = Call(lambda: assoc.store(path), "store")
            got = conn.next_pdu()
            assert got is not None and got[0] == 0x04
            return call, b""
        if where == "mid-find":
            call = Call(partial(lambda: (bytes(m.encode(EXPLICIT)) for m in assoc.find({"PatientID": "X"}))), "find")
            msg = conn.next_message()
            conn.send_messages([(msg.ctx, response(0x8020, msg.mid, 0xFF00, FIND, dataset=True), match_ds(0))])
            return call, b""
        # mid-get: a sub-operation's data set half received, streamed to a .part file
        call = Call(partial(lambda: (dataset_part(x) for x in assoc.get({"QueryRetrieveLevel": "STUDY"},
                                                                          store_to=self.store_dir))), "get")
        conn.next_message()
        uid = self._uid()
        sub = encode_command({CF: 0x0001, MID: 901, AFF_CLASS: MR, AFF_INST: uid, PRIORITY: 0, DST: 1})
        # Whole PDUs: the command set and two thirds of the data set.
        third = Frag(ds_cuts=(300, 600), packing="separate")
        conn.send(pdus_of([(conn.ctx[MR], sub, instance(uid, 40000))], third)[:3])
        deadline = time.monotonic() + PROMPT
        while not any(n.endswith(".part") for n in os.listdir(self.store_dir)) and time.monotonic() < deadline:
            time.sleep(0.005)
        return call, b""

    def do_scp_release(self, where: str) -> None:
        """The SCP's A-RELEASE-RQ (PS3.8 7.2: either side may release)."""
        assoc, conn = self._ready()
        self.note(f"scp-release:{where}")
        if where == "awaiting":       # instead of the C-ECHO-RSP: Sta6 Evt12 AR-2, then AR-4
            call = Call(assoc.echo, "echo")
            conn.next_message()
            conn.send(pdu(0x05, bytes(4)))
            assert conn.ending() == ("release-rp",)
            conn.close()
            call.wait().raised(AssociationError)
        elif where == "idle-echo":    # met by the next request
            conn.send(pdu(0x05, bytes(4)))
            call = Call(assoc.echo, "echo")
            assert conn.ending() == ("release-rp",)
            assert [m.field for m in conn.ready] in ([], [0x0030]), conn.ready
            conn.close()
            call.wait().raised(AssociationError)
        elif where == "behind-response":    # the A-RELEASE-RQ right behind the C-ECHO-RSP
            call = Call(assoc.echo, "echo")
            msg = conn.next_message()
            conn.send(pdu(0x04, pdv(msg.ctx, True, True, response(0x8030, msg.mid, 0, VERIFICATION)))
                      + pdu(0x05, bytes(4)))
            assert call.wait().ok() == 0, "the response before the A-RELEASE-RQ was lost"
            call = Call(assoc.release, "release")
            end = conn.ending()
            if end == ("release-rq",):      # not read yet: a collision after all
                assert conn.ending() == ("release-rp",), "client: the requestor answers first in a collision"
                conn.send(pdu(0x06, bytes(4)))
                conn.eof()
            else:                           # AR-4 in Sta8; then the acceptor closes (AR-3)
                assert end == ("release-rp",), f"client: {end} where the A-RELEASE-RP was due"
                conn.close()
            assert call.wait().ok() is None
        else:                         # a release collision: Sta7 Evt12 AR-8 (Sta9), AR-9 (Sta11), AR-3
            conn.send(pdu(0x05, bytes(4)))
            time.sleep(0.02)
            call = Call(assoc.release if where == "collision" else lambda: assoc.__exit__(None, None, None),
                        "release")
            assert conn.ending() == ("release-rq",), "client: no A-RELEASE-RQ"
            assert conn.ending() == ("release-rp",), "client: the requestor answers first in a collision (AR-9)"
            conn.send(pdu(0x06, bytes(4)))
            conn.eof()
            assert call.wait().ok() is None
        assert assoc.is_closed and not assoc.is_established
        conn.close()
        self.assoc = self.conn = None

    def do_release(self, answer: str) -> None:
        assoc, conn = self._ready()
        self.note(f"release:{answer}")
        call = Call(assoc.release, "release")
        assert conn.ending() == ("release-rq",), "client: no A-RELEASE-RQ"
        if answer == "rp":
            conn.send(pdu(0x06, bytes(4)))
            conn.eof()                              # AR-3: the requestor closes
            assert call.wait().ok() is None
        elif answer == "p-data-then-rp":            # Sta7 Evt10, AR-6: P-DATA still delivered, then the RP
            conn.send_messages([(conn.ctx[VERIFICATION], response(0x8030, 0xFFF1, 0, VERIFICATION), None)])
            conn.send(pdu(0x06, bytes(4)))
            conn.eof()
            assert call.wait().ok() is None
        elif answer == "abort":
            conn.send(abort_pdu(0, 0))
            conn.eof()
            call.wait().raised(AssociationAborted)
        elif answer == "close":                     # documented: a warning, not an error
            conn.close()
            assert call.wait().ok() is None
        else:                                       # silent: read_timeout, then A-ABORT
            self._expect_abort(conn, READ + LATE)
            call.wait().raised(ReadTimeout)
            assert READ - EARLY <= call.elapsed <= READ + LATE, f"gave up after {call.elapsed:.2f} s"
        assert assoc.is_closed and not assoc.is_established
        conn.close()
        self.assoc = self.conn = None

    def do_abort(self, stimulus: str = "") -> None:
        """The client's A-ABORT (0, 0), then Sta13 until we close or ARTIM expires;
        ``stimulus``: what the SCP sends meanwhile, answered as PS3.8 Table 9-10 says
        (AA-6: P-DATA-TF ignored; AA-7: an A-ASSOCIATE-RQ or unknown PDU gets an A-ABORT;
        AA-2: an A-ABORT closes the connection at once)."""
        assoc, conn = self._ready()
        self.note(f"abort{':' + stimulus if stimulus else ''}")
        Call(assoc.abort, "abort").wait(PROMPT).ok()
        assert conn.ending() == ("abort", 0, 0), "client: A-ABORT (0, 0) owed (PS3.8 9.3.8)"
        assert assoc.is_closed
        if stimulus == "a-abort":
            conn.send(abort_pdu(0, 0))
            t0 = time.monotonic()
            conn.eof(ARTIM + LATE)
            took = time.monotonic() - t0
            assert took < ARTIM - EARLY, f"AA-2: the client closed {took:.2f} s after our A-ABORT, not at once"
        elif stimulus in ("associate-rq", "unknown-pdu-type"):
            assert conn.rq_bytes
            conn.send(conn.rq_bytes if stimulus == "associate-rq" else pdu(0x08, bytes(4)))
            end = conn.ending(ARTIM + LATE)
            assert end[0] == "abort", f"client in Sta13: {end} where AA-7 owes an A-ABORT"
        elif stimulus == "p-data":
            conn.send(pdu(0x04, pdv(conn.ctx[VERIFICATION], True, True, response(0x8030, 1, 0, VERIFICATION))))
            conn.send(pdu(0x05, bytes(4)))
            end = conn.ending(ARTIM + LATE)    # nothing until ARTIM closes (AA-6), no A-RELEASE-RP
            assert end == ("eof",), f"client in Sta13: {end} where AA-6 owes nothing"
        conn.close()           # the closer (Sta13) then closes its end
        self.assoc = self.conn = None

    def do_pdu_violation(self, kind: str) -> None:
        """A PDU out of place or malformed (PS3.8 Table 9-10, Sta6: AA-8): an A-ABORT
        with the reason of 9.3.8, AssociationAborted."""
        assoc, conn = self._ready()
        self.note(f"pdu-violation:{kind}")
        assert conn.rq is not None
        data, allowed = PDU_VIOLATIONS.get(kind) or (
            {"associate-ac": associate_ac(conn.rq, conn.our_max), "associate-rq": conn.rq_bytes}[kind], UNEXPECTED)
        call = Call(assoc.echo, "echo")
        conn.next_message()
        conn.send(data)
        call.wait().raised(AssociationAborted)
        end = conn.ending()
        assert end[0] == "abort" and end[1:] in allowed, f"client: {end}, owed an A-ABORT of {sorted(allowed)}"
        self._closed_after_fault()

    def do_stall(self) -> None:
        """The SCP reads nothing while the client sends: WriteTimeout at write_timeout."""
        assoc, conn = self._ready()
        self.note("stall")
        path, _ = self.files["big"]
        call = Call(lambda: assoc.store(path), "store-stalled")
        call.wait(WRITE + LIMIT + 2.0)
        error = call.raised(WriteTimeout)
        assert WRITE - EARLY <= call.elapsed <= WRITE + LATE + 1.0, f"{error} after {call.elapsed:.2f} s"
        self._closed_after_fault()

    # ---------------------------------------------------------- the rules
    @rule(answer=st.sampled_from(["reject", "abort", "close", "reset", "silent", "ac-unproposed-syntax",
                                  "ac-unproposed-context"]))
    def associate_refused(self, answer: str) -> None:
        if self.assoc is None:
            self.do_associate("reject" if answer == "silent" and not self.slow(ARTIM) else answer)

    @rule(status=st.sampled_from([0, 0, 0x0110, 0x0211, 0xC000, 0x0001]), frag=FRAGS,
          delay=st.sampled_from([0.0, 0.0, 0.0, DIMSE / 2]))
    def echo(self, status: int, frag: Frag, delay: float) -> None:
        self.do_echo(status, frag, delay if self.slow(delay) else 0.0)

    @rule(name=st.sampled_from(["small", "medium"]), status=st.sampled_from([0, 0, 0xB000, 0xB007, 0xA700, 0xC000,
                                                                            0xA900, 0x0001]),
          frag=FRAGS, delay=st.sampled_from([0.0, 0.0, DIMSE / 2]))
    def store(self, name: str, status: int, frag: Frag, delay: float) -> None:
        self.do_store(name, status, frag, delay if self.slow(delay) else 0.0)

    @rule(n=st.integers(0, 5), final=st.sampled_from([0, 0, 0, 0xA700, 0xA900, 0xC000, 0xFE00]),
          final_identifier=st.booleans(), frag=FRAGS, pending=st.sampled_from([0xFF00, 0xFF01]),
          slow=st.sampled_from([False, False, False, True]))
    def find(self, n: int, final: int, final_identifier: bool, frag: Frag, pending: int, slow: bool) -> None:
        slow = slow and self.slow(3 * DIMSE * 0.5)
        self.do_find(min(n, 2) if slow else n, final, final_identifier, frag, pending, DIMSE * 0.5 if slow else 0.0)

    @rule(n=st.integers(0, 4), final=st.sampled_from([0, 0, 0xB000, 0xA702, 0xA801, 0xC000]),
          with_list=st.booleans(), frag=FRAGS)
    def move(self, n: int, final: int, with_list: bool, frag: Frag) -> None:
        self.do_move(n, final, with_list, frag)

    @rule(n=st.integers(0, 3), final=st.sampled_from([0, 0, 0xB000, 0xA702]), store_to=st.booleans(),
          pendings=st.booleans(), size=st.sampled_from([300, 40000]), frag=FRAGS, refused=st.booleans(),
          trickle=st.sampled_from([False, False, False, True]))
    def get(self, n: int, final: int, store_to: bool, pendings: bool, size: int, frag: Frag, refused: bool,
            trickle: bool) -> None:
        trickle = trickle and self.slow(3 * DIMSE * 0.5)
        self.do_get(min(n, 1) if trickle else n, final, store_to, pendings, size, frag, refused, trickle)

    @rule(service=st.sampled_from(["find", "move", "get", "find-held"]), n=st.integers(1, 4), k=st.integers(1, 3),
          crossed=st.booleans(), frag=FRAGS)
    def cancel(self, service: str, n: int, k: int, crossed: bool, frag: Frag) -> None:
        if service == "find-held":
            self.do_held_find(k)
        else:
            self.do_cancel(service, n, k, crossed, frag)

    @rule(service=st.sampled_from(["echo", "find", "get", "cancel"]), frag=FRAGS)
    def late(self, service: str, frag: Frag) -> None:
        if self.slow(DIMSE):
            self.do_late(service, frag)

    @rule(kind=st.sampled_from([k for k in BAD_RESPONSES if k not in KNOWN_FAULTS]))
    def bad_response(self, kind: str) -> None:
        self.do_bad_response(kind)

    @rule(kind=st.sampled_from(["stale-midr", "duplicate-final", "stale-in-find"]))
    def stale_response(self, kind: str) -> None:
        self.do_stale_response(kind)

    @rule(where=st.sampled_from(["idle", "echo", "mid-find", "mid-get", "mid-store", "behind-response"]),
          source_reason=st.sampled_from([(0, 0), (2, 0), (2, 2), (2, 6)]))
    def scp_abort(self, where: str, source_reason: tuple[int, int]) -> None:
        self.do_scp_abort(where, *source_reason)

    @rule(where=st.sampled_from(["idle", "echo", "mid-find", "mid-get", "mid-store", "behind-response"]),
          reset=st.booleans())
    def scp_close(self, where: str, reset: bool) -> None:
        self.do_scp_close(where, reset)

    @rule(where=st.sampled_from(["awaiting", "idle-echo", "collision", "collision-on-exit", "behind-response"]))
    def scp_release(self, where: str) -> None:
        self.do_scp_release(where)

    @rule(answer=st.sampled_from(["rp", "rp", "p-data-then-rp", "abort", "close", "silent", "client-abort",
                                  "client-abort:a-abort", "client-abort:associate-rq", "client-abort:unknown-pdu-type",
                                  "client-abort:p-data"]))
    def release(self, answer: str) -> None:
        if answer.startswith("client-abort"):
            stimulus = answer[13:]
            self.do_abort("" if stimulus == "p-data" and not self.slow(ARTIM) else stimulus)
        elif answer == "silent" and not self.slow(READ):
            self.do_release("rp")
        else:
            self.do_release(answer)

    @rule(kind=st.sampled_from([*PDU_VIOLATIONS, "associate-ac", "associate-rq"]))
    def pdu_violation(self, kind: str) -> None:
        self.do_pdu_violation(kind)

    @rule(go=st.sampled_from([False, False, False, True]))
    def stall(self, go: bool) -> None:
        if go and self.slow(WRITE + 0.2):
            self.do_stall()

    def check(self) -> None:
        assert not self.thread_errors, self.thread_errors
        assert not self.capture.errors, f"dicomnet logged ERROR for what the peer did: {self.capture.errors}"
        if self.assoc is not None:
            assert self.assoc.is_established, f"the model says established, the client says {self.assoc!r}"

    @invariant()
    def model_holds(self) -> None:
        self.check()

    # ---------------------------------------------------------- teardown
    def teardown(self) -> None:
        """Release what is still open; then nothing of dicomnet's may remain."""
        in_flight = sys.exc_info()[1] is not None   # a step failed: clean up, report nothing more
        problems: list[str] = []
        try:
            if not in_flight and self.assoc is not None and self.conn is not None:
                self.do_release("rp")
        finally:
            if self.conn is not None:
                self.conn.close()
            if self.assoc is not None and in_flight:
                self.assoc.abort()
            self.listener.close()
            gc.collect()     # an exception's traceback may still hold a mapped file (see do_stall)
            deadline = time.monotonic() + ARTIM + LATE
            while time.monotonic() < deadline:
                left = [t for t in threading.enumerate() if t not in self.threads_before and t.is_alive()]
                if closer.idle() and not left and len(_fds()) <= len(self.fds_before):
                    break
                time.sleep(0.01)
            left = [t for t in threading.enumerate() if t not in self.threads_before and t.is_alive()]
            if left:
                problems.append(f"threads still running: {[t.name for t in left]}")
            if len(_fds()) > len(self.fds_before):
                extra = sorted(set(_fds().items()) - set(self.fds_before.items()))
                problems.append(f"file descriptors still open: {extra}")
            parts = [n for n in os.listdir(self.store_dir) if n.endswith(".part")]
            if parts:
                problems.append(f"temporary files left: {parts}")
            threading.excepthook = self.previous_hook
            logging.getLogger("dicomnet").removeHandler(self.capture)
        if not in_flight:
            assert not problems, f"{problems}; trace: {self.trace[-8:]}"


class _Deferred(Call):
    """The SCP ends things first, the client's next echo comes afterwards
    (after ``first``, a call that must succeed: its response came before)."""

    def __init__(self, assoc: Any, first: Call | None = None) -> None:  # started by wait()
        self.assoc, self.first = assoc, first
        self.error = None
        self.result = None
        self.started = self.ended = 0.0
        self.done = threading.Event()

    def wait(self, limit: float = LIMIT) -> Call:
        if self.first is not None:
            assert self.first.wait(limit).ok() == 0, "the response before the end was lost"
        time.sleep(0.05)   # what the SCP did arrives first
        call = Call(self.assoc.echo, "echo-after").wait(limit)
        self.error, self.result, self.started, self.ended = call.error, call.result, call.started, call.ended
        return self


# --------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def machine_env(tmp_path_factory: Any) -> Any:
    root = str(tmp_path_factory.mktemp("stateful-client"))
    ClientMachine.workdir = root
    for name, size in (("small", 2000), ("medium", 100_000), ("big", 8 << 20)):
        ds = PyDataset()
        ds.SOPClassUID, ds.SOPInstanceUID, ds.PatientID, ds.Modality = CT, STORE_UIDS[name], "STORE", "CT"
        ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = size // 1000, 1000, 8, 8, 7
        ds.SamplesPerPixel, ds.PixelRepresentation, ds.PhotometricInterpretation = 1, 0, "MONOCHROME2"
        ds.add_new(0x7FE00010, "OB", random.Random(size).randbytes(size))
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = UID(EXPLICIT)
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = os.path.join(root, f"{name}.dcm")
        dcmwrite(path, ds, enforce_file_format=True)
        ClientMachine.files[name] = (path, dataset_part(path))
    return ClientMachine


SETTINGS = machine_settings(max_examples=36, stateful_step_count=30)


def test_client_against_a_scripted_scp(machine_env: Any) -> None:
    run_machine(machine_env, SETTINGS, STATS)


def replay(steps: Callable[[ClientMachine], None], fails_with: str | None = None) -> None:
    """Run ``steps(machine)`` on a fresh machine, with its checks, and tear it down.
    ``fails_with``: the checks must fail with a message containing it."""
    replay_steps(ClientMachine, steps, fails_with, check_after=True)


SCP_ENDS = ("idle", "echo", "mid-find", "mid-get", "mid-store", "behind-response")
# Every script once, whatever the machine's draws: hypothesis' derandomized choices leave some out of a
# run (the machine explores how they interleave; these make sure each is met).
EVERY_SCRIPT: dict[str, Callable[[ClientMachine], None]] = {}


def script(fn: Callable[[ClientMachine], None]) -> Callable[[ClientMachine], None]:
    EVERY_SCRIPT[fn.__name__.removeprefix("script_").replace("_", "-")] = fn
    return fn


@script
def script_associate(m: ClientMachine) -> None:
    for answer in ("reject", "abort", "close", "reset", "silent", "ac-unproposed-syntax", "ac-unproposed-context"):
        m.do_associate(answer)


@script
def script_max_pdu(m: ClientMachine) -> None:
    for max_pdu in (8, 100, 0):     # 8: two bytes of data per PDV
        m.do_associate("accept", max_pdu)
        m.do_store("small", 0)
        m.do_find(2, 0, True, WHOLE)
        m.do_release("rp")


@script
def script_services(m: ClientMachine) -> None:
    m.do_echo(0x0110)
    m.do_echo(1, WHOLE, DIMSE / 2)
    m.do_store("medium", 0xB000)
    m.do_store("small", 0xA900, Frag(every=13, packing="separate"))
    m.do_find(4, 0xFE00, True, Frag(cmd_cuts=(1, 999), ds_cuts=(333,), tcp_cuts=(5, 500)))
    m.do_find(2, 0xC000, False, WHOLE, 0xFF01, DIMSE / 2)
    m.do_move(3, 0xA702, True, Frag(packing="joined"))
    m.do_move(0, 0xA801, False, WHOLE)
    m.do_get(3, 0xB000, False, True, 300, Frag(packing="joined"), refused=True)
    m.do_get(1, 0, True, False, 40000, WHOLE, trickle=True)


@script
def script_cancel(m: ClientMachine) -> None:
    for service in ("find", "move", "get"):
        m.do_cancel(service, 3, 1, False, WHOLE)
        m.do_cancel(service, 3, 3, True, WHOLE)
    m.do_held_find(2)


@script
def script_late(m: ClientMachine) -> None:
    for service in ("echo", "find", "get", "cancel"):
        m.do_late(service, WHOLE)


@script
def script_bad_response(m: ClientMachine) -> None:
    for kind in BAD_RESPONSES:
        if kind not in KNOWN_FAULTS:
            m.do_bad_response(kind)
    for kind in [*PDU_VIOLATIONS, "associate-ac", "associate-rq"]:
        m.do_pdu_violation(kind)
    for kind in ("stale-midr", "duplicate-final", "stale-in-find"):
        m.do_stale_response(kind)


@script
def script_scp_ends(m: ClientMachine) -> None:
    for where in SCP_ENDS:
        m.do_scp_abort(where, 2, 6)
        m.do_scp_close(where, False)
        m.do_scp_close(where, True)


@script
def script_release(m: ClientMachine) -> None:
    for where in ("awaiting", "idle-echo", "collision", "collision-on-exit", "behind-response"):
        m.do_scp_release(where)
    for answer in ("rp", "p-data-then-rp", "abort", "close", "silent"):
        m.do_release(answer)
    for stimulus in ("", "a-abort", "associate-rq", "unknown-pdu-type", "p-data"):
        m.do_abort(stimulus)
    m.do_stall()


@pytest.mark.parametrize("group", sorted(EVERY_SCRIPT))
def test_every_script_once(machine_env: Any, group: str) -> None:
    replay(EVERY_SCRIPT[group])


# ------------------------------------------------------------ shrunk cases
@pytest.mark.parametrize("kind", ["unknown-command-field", "wrong-response-field"])
def test_echo_takes_only_a_c_echo_rsp(machine_env: Any, kind: str) -> None:
    """Shrunk from the machine: one C-ECHO answered by a message with the right Message ID
    Being Responded To but Command Field 8FF0H / 8001H: an A-ABORT and an exception are owed
    (PS3.7 9.3.5.2; it was taken as the C-ECHO-RSP, its Status as the answer)."""
    replay(lambda m: m.do_bad_response(kind))


# --------------------------------------------------------- the harness itself
def test_the_checks_pass_on_a_sequence_that_touches_every_service(machine_env: Any) -> None:
    """The sequences the self-checks below break, unbroken: they pass."""
    def steps(m: ClientMachine) -> None:
        m.do_echo()
        m.do_store("small", 0)
        m.do_find(3, 0, True, Frag(every=7, packing="joined"))
        m.do_cancel("find", 3, 1, False, WHOLE)
        m.do_move(2, 0xB000, True, WHOLE)
        m.do_get(2, 0, True, True, 40000, Frag(ds_cuts=(333,), packing="separate"))
        m.do_bad_response("wrong-midr")
        m.do_late("echo", WHOLE)
    replay(steps)


SABOTAGE = {   # what is broken -> what the check that notices it says
    "cancel-message-id": "C-CANCEL-RQ for message",
    "dropped-match": "matches 2 of 3",
    "no-abort": "where it owed an A-ABORT",
    "slow-timeout": "nothing more from the client",
    "hang": "did not return within",
    "error-log": "dicomnet logged ERROR",
    "leaked-socket": "file descriptors still open",
    "leaked-thread": "threads still running",
    "leaked-part-file": "temporary files left",
}


@pytest.mark.parametrize("sabotage", sorted(SABOTAGE))
def test_the_harness_notices_a_broken_expectation(machine_env: Any, sabotage: str, monkeypatch: Any) -> None:
    """Break the client or the model on purpose: the machine's checks must fail."""
    import dicomnet.association
    import dicomnet.dimse.scu
    import dicomnet.dimse.stream

    leaked: list[socket.socket] = []

    def steps(m: ClientMachine) -> None:
        if sabotage == "cancel-message-id":       # C-CANCEL-RQ naming the wrong operation
            real = dicomnet.dimse.stream.c_cancel_rq
            monkeypatch.setattr(dicomnet.dimse.stream, "c_cancel_rq", lambda mid: real(mid + 1))
            m.do_cancel("find", 3, 1, False, WHOLE)
        elif sabotage == "dropped-match":         # a client that loses the first match
            step = dicomnet.dimse.scu.FindResult._step

            def dropping(self: Any) -> Any:
                got = step(self)
                return None if self.matches == 1 and got is not None else got
            monkeypatch.setattr(dicomnet.dimse.scu.FindResult, "_step", dropping)
            m.do_find(3, 0, False, WHOLE)
        elif sabotage == "no-abort":              # a client that closes instead of A-ABORT
            monkeypatch.setattr(dicomnet.association.Association, "abort",
                                lambda self: self._driver.sock.close() if self._driver.sock else None)
            m.do_bad_response("wrong-midr")
        elif sabotage == "slow-timeout":          # a client whose dimse_timeout is longer than asked
            m._ready()[0].dimse_timeout = DIMSE + LATE + 0.5
            m.do_late("echo", WHOLE)
        elif sabotage == "hang":                  # a call that does not return in time
            receive = dicomnet.association.Association._receive_response

            def slow_receive(self: Any, *args: Any) -> Any:
                time.sleep(LIMIT + 0.3)
                return receive(self, *args)
            monkeypatch.setattr(dicomnet.association.Association, "_receive_response", slow_receive)
            m.do_echo()
        elif sabotage == "error-log":
            logging.getLogger("dicomnet").error("sabotage")
        elif sabotage == "leaked-socket":
            leaked.append(socket.socket())
        elif sabotage == "leaked-thread":
            threading.Thread(target=threading.Event().wait, args=(ARTIM + LATE + 1.0,), daemon=True).start()
        else:
            open(os.path.join(m.store_dir, ".x.part"), "wb").close()

    try:
        with pytest.raises(AssertionError):
            replay(steps, SABOTAGE[sabotage])
    finally:
        for sock in leaked:
            sock.close()
