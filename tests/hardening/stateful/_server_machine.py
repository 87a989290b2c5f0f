"""The server machine: one Server, up to four scripted peers (test_server_stateful.py).

:class:`ServerMachine` starts the server and drives the peers of
``_server_wire`` with its rules (every rule draws a slot, not a peer); after
every step the invariant it inherits from ``_server_checks.ServerChecks``
checks what the server sent against each peer's model, that a fresh C-ECHO
association is answered promptly and that no thread or log reported a
failure; its teardown shuts the server down with the peers still connected.
What it checks, in full, is said in test_server_stateful.py.
"""
from __future__ import annotations

import collections
import hashlib
import logging
import os
import random
import socket
import struct
import sys
import threading
import time
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from dicomnet import Server

from ._common import (AFF_CLASS, AFF_INST, CF, CT, DST, FIND, GET, LATE, MID, MOVE, MOVE_DEST, NO_DATASET, PRIORITY,
                      PROMPT, USER, VERIFICATION, _fds, encode_command, encode_ds, pdu, pdv)
from ._server_checks import ServerChecks
from ._server_wire import (ARTIM, BAD_RQ, DIMSE, DIMSE_FAULT, DIMSE_VIOLATIONS, EARLY, FIND_DELAY, FRAGS, FRESH,
                           KNOWN_FAULTS, LEGAL_ABORTS, MALFORMED, MAX_DATASET, MAX_PEERS, PDU_VIOLATIONS, PEER_PDUS,
                           READ, SCP_AE, SERVER_MAX_PDU, SHUTDOWN_LIMIT, SLOTS, STA13_STIMULI, STALLS, TAILS, UID_ROOT,
                           WHOLE, WINDOWS, WRITE, Archive, Frag, Handler, Op, Peer, Verdict, associate_rq, cancel_rq,
                           ct_dataset, echo_rq, identifier, message_pdus, query_rq, store_rq, tcp_chunks)


STATS: collections.Counter = collections.Counter()   # what the machine did, over a run


def counted(action: Any) -> Any:
    """Count the action in STATS and note it in the machine's trace (shown with a failure)."""
    def wrapper(self: Any, peer: Any = None, *args: Any, **kw: Any) -> Any:
        kind = kw.get("kind", args[0] if args and isinstance(args[0], str) else "")
        STATS[f"{action.__name__[3:]}{':' + kind if kind else ''}"] += 1
        self.trace.append(f"{time.monotonic() - self.started:7.3f} {action.__name__}({peer}"
                          f"{''.join(', ' + repr(a) for a in args)}{''.join(f', {k}={v!r}' for k, v in kw.items())})")
        return action(self, peer, *args, **kw) if peer is not None else action(self, *args, **kw)

    wrapper.__name__ = action.__name__
    return wrapper


class Failures:
    """Exceptions escaping any thread, and error records of the server's loggers."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.lock = threading.Lock()

    def add(self, what: str) -> None:
        with self.lock:
            self.items.append(what)


class _Capture(logging.Handler):
    def __init__(self, failures: Failures) -> None:
        super().__init__(logging.DEBUG)
        self.failures = failures

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.ERROR or record.exc_info or "LocalProtocolError" in message:
            self.failures.add(f"log {record.levelname} from {record.threadName}: {message}")


class ServerMachine(ServerChecks, RuleBasedStateMachine):
    workdir = ""                       # set by the fixture
    archive: Archive | None = None
    sequence = 0

    def __init__(self) -> None:
        super().__init__()
        ServerMachine.sequence += 1
        self.folder = os.path.join(self.workdir, f"m{ServerMachine.sequence}")
        os.makedirs(self.folder)
        assert self.archive is not None
        self.handler = Handler(self.folder, self.archive)
        self.failures = Failures()
        self._hooks()
        self.threads_before = set(threading.enumerate())
        self.fds_before = _fds()
        self.server = Server(SCP_AE, self.handler, logger=self.logger, read_timeout=READ, write_timeout=WRITE,
                             artim_timeout=ARTIM, dimse_timeout=DIMSE, max_pdu=SERVER_MAX_PDU,
                             max_dataset_bytes=MAX_DATASET).start("127.0.0.1", 0)
        self.handler.port = self.server.port
        self.started = time.monotonic()
        self.trace: list[str] = []
        self.peers: list[Peer] = []
        self.slots: list[Peer | None] = [None] * MAX_PEERS
        self.moves_done: list[float] = []
        self.uid_serial = 0
        self.probe_ends: collections.deque = collections.deque(maxlen=64)
        self.shutting_down = False

    def _hooks(self) -> None:
        self.logger = logging.getLogger(f"stateful-server.{ServerMachine.sequence}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)       # not DEBUG: that would turn the compiled store lane off
        self.capture = _Capture(self.failures)
        self.logger.addHandler(self.capture)
        logging.getLogger("dicomnet").addHandler(self.capture)
        self.previous_hook = threading.excepthook

        def hook(args: Any) -> None:
            self.failures.add(f"exception in thread {getattr(args.thread, 'name', '?')}: "
                              f"{args.exc_type.__name__}: {args.exc_value}")
            self.previous_hook(args)

        threading.excepthook = hook

    # ----------------------------------------------------------- choosing
    def _live(self) -> list[Peer]:
        return [p for p in self.peers if p.phase != "done"]

    def _rotation(self, slot: int) -> list[Peer]:
        """The live peers, from ``slot`` on (the slot only decides where the search starts)."""
        return [p for p in self.slots[slot:] + self.slots[:slot] if p is not None and p.phase != "done"]

    def _free_slot(self, slot: int) -> int | None:
        for i in [*range(slot, MAX_PEERS), *range(slot)]:
            if self.slots[i] is None or self.slots[i].phase == "done":
                return i
        return None

    def _openable(self, slot: int) -> Peer | None:
        """A connected peer that has sent nothing yet (a new one if none)."""
        now = time.monotonic()
        for peer in self._rotation(slot):
            if peer.can_open(now):
                return peer
        free = self._free_slot(slot)
        if free is None:
            return None
        peer = self.slots[free] = self.do_connect()
        return peer

    def _cancellable(self, slot: int) -> Peer | None:
        for peer in self._rotation(slot):
            if (peer.ended_at is None and not peer.wr_closed and peer.verdict is None and not peer.pending
                    and any(op.kind in ("find", "get", "move") and not op.cancelled for op in peer.ops.values())):
                return peer
        return None

    def _ready(self, slot: int, window: int = 1) -> Peer | None:
        """A peer that can take a request now (with at least ``window``
        operations outstanding allowed): an idle one; else one whose
        A-ASSOCIATE-AC or responses are let come first; else a new one."""
        now = time.monotonic()
        for peer in self._rotation(slot):
            if peer.can_request(now) and peer.window >= window:
                return peer
        for peer in self._rotation(slot) if window == 1 else []:
            if (now < peer.pause_until or peer.verdict is not None or peer.pending
                    or peer.phase not in ("requested", "established")):
                continue
            limit = time.monotonic() + PROMPT + 1.0
            while (peer.phase == "requested" or peer.ops) and peer.verdict is None and time.monotonic() < limit:
                time.sleep(0.005)
                self.check_peers()
            if peer.can_request(time.monotonic()):
                return peer
        free = self._free_slot(slot)
        if free is None:
            return None
        peer = self.slots[free] = self.do_connect()
        self.do_associate(peer, window=0 if window == 1 else 4)
        limit = time.monotonic() + PROMPT
        while peer.phase == "requested" and time.monotonic() < limit:
            time.sleep(0.002)
            self.check_peers()
        return peer if peer.can_request(time.monotonic()) else None

    # ------------------------------------------------------------ actions
    @counted
    def do_connect(self, *, rcvbuf: bool = False, close_on_end: bool = True) -> Peer:
        peer = Peer(f"p{len(self.peers)}", self.server.port, rcvbuf=rcvbuf, close_on_end=close_on_end)
        self.peers.append(peer)
        port = peer.sock.getsockname()[1]
        self.trace.append(f"{time.monotonic() - self.started:7.3f} connected({peer}, port {port})")
        return peer

    @counted
    def do_associate(self, peer: Peer, *, max_pdu: int = 16384, window: int = 0) -> None:
        peer.max_pdu = max_pdu             # 0: no limit (PS3.8 D.1)
        peer.offered_window = window
        peer.phase, peer.ac_by = "requested", time.monotonic() + PROMPT
        peer.send([associate_rq(calling=f"PEER-{peer.name}", max_pdu=peer.max_pdu, window=window)])

    @counted
    def do_bad_associate(self, peer: Peer, kind: str) -> None:
        data, what, allowed = BAD_RQ[kind]
        peer.verdict = Verdict(what, kind, time.monotonic() + PROMPT, allowed)
        peer.send([data])

    def _request(self, peer: Peer, op: Op, command: bytes, dataset: bytes | None, frag: Frag,
                 trickle: bool = False, tail: str = "") -> None:
        """Send a request; ``trickle``: only its first write, the rest by
        ``continue_sending``; ``tail``: an A-RELEASE-RQ or A-ABORT in the same
        write, right behind it (the request is answered first / not at all)."""
        peer.ops[op.msgid] = op
        pdus = message_pdus(op.ctx, command, dataset, frag)
        if not trickle:
            chunks = tcp_chunks(b"".join(pdus), frag.tcp_cuts)
            if tail == "release":
                peer.verdict = Verdict("release", "A-RELEASE-RQ behind a request", op.deadline + 0.5)
                chunks[-1] += pdu(0x05, bytes(4))
            elif tail == "abort":
                self._quiet(peer, "A-ABORT behind a request")
                chunks[-1] += pdu(0x07, bytes(4))
            elif tail == "cancel":     # a C-CANCEL-RQ read with the request (nothing to cancel for C-ECHO, C-STORE)
                op.cancelled = True
                chunks[-1] += pdu(0x04, pdv(op.ctx, True, True, cancel_rq(op.msgid)))
            peer.send(chunks)
            peer.idle_since = time.monotonic()
            return
        ends, stream = set(), b""
        for one in pdus:
            stream += one
            ends.add(len(stream))
        chunks = tcp_chunks(stream, frag.tcp_cuts or (500,))
        offsets = [sum(map(len, chunks[:i + 1])) for i in range(len(chunks))]
        peer.pending = [(c, any(start < e <= end for e in ends), end in ends)
                        for c, start, end in zip(chunks, [0, *offsets], offsets)]
        peer.pdu_done_at = peer.idle_since     # the server has waited for this PDU since then
        op.deadline -= time.monotonic()        # relative until the last write (see do_continue)
        self.do_continue(peer, 1)

    @counted
    def do_continue(self, peer: Peer, n: int) -> None:
        """The next ``n`` writes of a trickled request -- unless the server's
        read timeout may have passed since the last whole PDU: then it is a stall."""
        if time.monotonic() - peer.pdu_done_at > READ - FRESH:
            self._stalled(peer, f"trickled request left for {time.monotonic() - peer.pdu_done_at:.2f} s")
            return
        for chunk, completes, on_boundary in peer.pending[:n]:
            peer.send([chunk])
            peer.partial = not on_boundary
            if completes:
                peer.pdu_done_at = time.monotonic()
        del peer.pending[:n]
        if not peer.pending:
            now = time.monotonic()
            for op in peer.ops.values():
                op.deadline = now + op.deadline
            peer.idle_since = now

    def _stalled(self, peer: Peer, why: str) -> None:
        base = peer.pdu_done_at if peer.pending else peer.idle_since
        peer.pending.clear()
        peer.stalled = True
        for op in peer.ops.values():
            op.optional = True
        peer.verdict = Verdict("abort", why, base + READ + LATE, USER, not_before=base + READ - EARLY, stall=True)

    @counted
    def do_echo(self, peer: Peer, frag: Frag = WHOLE, trickle: bool = False, tail: str = "") -> None:
        mid = peer.message_id()
        self._request(peer, Op("echo", mid, 1, VERIFICATION, time.monotonic() + PROMPT), echo_rq(mid), None, frag,
                      trickle, tail)

    def _store_op(self, peer: Peer, size: int, status: int, streamed: bool, **kw: Any) -> tuple[Op, bytes]:
        self.uid_serial += 1
        uid = f"{UID_ROOT}.50.{2 * self.uid_serial + (0 if streamed else 1)}"
        pixels = random.Random(uid).randbytes(size)
        data = encode_ds(ct_dataset(uid, pixels, f"STATUS-{status:04X}"))
        op = Op("store", peer.message_id(), 3, CT, time.monotonic() + PROMPT, status=status, uid=uid, data=data,
                digest=hashlib.sha256(pixels).hexdigest(), streamed=streamed, **kw)
        return op, store_rq(op.msgid, uid)

    @counted
    def do_store(self, peer: Peer, size: int = 200, status: int = 0, streamed: bool = False,
                 frag: Frag = WHOLE, trickle: bool = False, tail: str = "") -> None:
        op, command = self._store_op(peer, size, status, streamed)
        self._request(peer, op, command, op.data, frag, trickle, tail)

    @counted
    def do_store_over_cap(self, peer: Peer, streamed: bool) -> None:
        """300 kB: a data set held in memory crosses max_dataset_bytes (A-ABORT); a streamed one is stored."""
        op, command = self._store_op(peer, 300_000, 0, streamed, optional=not streamed)
        if not streamed:
            peer.verdict = Verdict("abort", "data set over max_dataset_bytes", time.monotonic() + PROMPT,
                                   DIMSE_FAULT)
        self._request(peer, op, command, op.data, WHOLE)

    @counted
    def do_find(self, peer: Peer, patient: str = "FIND2", frag: Frag = WHOLE, trickle: bool = False,
                tail: str = "") -> None:
        mid = peer.message_id()
        n = int(patient[4:]) if patient.startswith("FIND") else 0
        op = Op("find", mid, 5, FIND, time.monotonic() + PROMPT + n * FIND_DELAY, patient=patient, n=n)
        self._request(peer, op, query_rq(0x0020, FIND, mid),
                      identifier(PatientID=patient, StudyInstanceUID=""), frag, trickle, tail)

    @counted
    def do_get(self, peer: Peer, study: str = "A", fail: str = "none", frag: Frag = WHOLE) -> None:
        mid = peer.message_id()
        uids = tuple(self.archive.studies[study])  # type: ignore[union-attr]
        failing = frozenset(uids if fail == "all" else uids[1:] if fail == "big" else ())
        peer.sub_status = {uid: 0xA700 for uid in failing}
        op = Op("get", mid, 9, GET, time.monotonic() + PROMPT + 1.0, n=len(uids), uids=uids, failing=failing)
        self._request(peer, op, query_rq(0x0010, GET, mid), identifier(StudyInstanceUID=Archive.study_uid(study)),
                      frag)

    @counted
    def do_move(self, peer: Peer, study: str = "A", destination: str = SCP_AE, frag: Frag = WHOLE) -> None:
        mid = peer.message_id()
        uids = tuple(self.archive.studies[study])  # type: ignore[union-attr]
        op = Op("move", mid, 7, MOVE, time.monotonic() + PROMPT + 1.0, n=len(uids), uids=uids,
                destination=destination, originator=f"PEER-{peer.name}")
        self._request(peer, op, query_rq(0x0021, MOVE, mid, destination=destination),
                      identifier(StudyInstanceUID=Archive.study_uid(study)), frag)

    @counted
    def do_pipeline(self, peer: Peer, kinds: list[str], one_pdu: bool = False) -> None:
        """Several requests in one write, as the negotiated window allows (all
        their PDVs in one P-DATA-TF with ``one_pdu``): all answered."""
        stream = b""
        for kind in kinds[:peer.window]:
            if kind == "echo":
                mid = peer.message_id()
                op, command, data = Op("echo", mid, 1, VERIFICATION, time.monotonic() + PROMPT), echo_rq(mid), None
            else:
                op, command = self._store_op(peer, 20000 if kind == "big" else 300, 0, kind == "streamed")
                data = op.data
            peer.ops[op.msgid] = op
            stream += b"".join(message_pdus(op.ctx, command, data, WHOLE))
        if one_pdu:
            pdvs, pos = b"", 0
            while pos < len(stream):
                n = struct.unpack_from(">L", stream, pos + 2)[0]
                pdvs, pos = pdvs + stream[pos + 6:pos + 6 + n], pos + 6 + n
            stream = pdu(0x04, pdvs) if len(pdvs) <= SERVER_MAX_PDU else stream
        peer.send([stream])
        peer.idle_since = time.monotonic()

    @counted
    def do_malformed_request(self, peer: Peer, kind: str) -> None:
        """A request the SCP cannot understand: a failure status is due, the association goes on."""
        mid = peer.message_id()
        op, _ = self._store_op(peer, 2000, 0, kind.endswith("streamed"), failure=True)
        op.msgid, op.deadline = mid, time.monotonic() + PROMPT
        study = Archive.study_uid("A").encode()
        study += b"\0" * (len(study) & 1)
        ident = identifier(PatientID="FIND1", StudyInstanceUID=study.decode().rstrip("\0"))
        assert ident.endswith(struct.pack("<H", len(study)) + study)
        # The last element (Study Instance UID) claims 200 bytes more than there are.
        truncated = ident[:-len(study) - 2] + struct.pack("<H", len(study) + 200) + study
        fields = {"find": (0x0020, FIND, 5), "get": (0x0010, GET, 9), "move": (0x0021, MOVE, 7)}
        if kind.startswith("store"):
            no_data = kind == "store-without-data-set"
            command = encode_command({CF: 0x0001, AFF_CLASS: CT, MID: mid, PRIORITY: 0,
                                      DST: NO_DATASET if no_data else 0, AFF_INST: op.uid})
            # Pixel Data claims 1000 bytes more than the data set holds.
            data = None if no_data else op.data[:-2004] + struct.pack("<L", 3000) + op.data[-2000:]
            assert no_data or op.data[-2004:-2000] == struct.pack("<L", 2000)
            peer.ops[mid] = op
            peer.send([b"".join(message_pdus(3, command, data, WHOLE))])
        else:
            service, _, how = kind.partition("-")
            field_, sop_class, ctx = fields[service]
            fields_: dict[int, int | str] = {CF: field_, AFF_CLASS: sop_class, MID: mid, PRIORITY: 0,
                                             DST: NO_DATASET if how == "without-identifier" else 0}
            if service == "move":
                fields_[MOVE_DEST] = SCP_AE
            command = encode_command(fields_)
            peer.ops[mid] = Op(service, mid, ctx, sop_class, time.monotonic() + PROMPT, failure=True,
                               destination=SCP_AE)
            peer.send([b"".join(message_pdus(ctx, command, None if how == "without-identifier" else truncated,
                                             WHOLE))])
        peer.idle_since = time.monotonic()

    @counted
    def do_cancel(self, peer: Peer) -> None:
        ops = [op for op in peer.ops.values() if op.kind in ("find", "get", "move") and not op.cancelled]
        if ops:
            ops[0].cancelled = True
            target, ctx = ops[0].msgid, ops[0].ctx
        else:   # C-CANCEL of an operation that is over (or never was): no response
            target, ctx = peer.next_id + 100, 5
        peer.send([pdu(0x04, pdv(ctx, True, True, cancel_rq(target)))])
        if not peer.ops:
            peer.idle_since = time.monotonic()

    @counted
    def do_unknown_command(self, peer: Peer) -> None:
        mid = peer.message_id()
        command = encode_command({CF: 0x0FF0, AFF_CLASS: VERIFICATION, MID: mid, DST: NO_DATASET})
        self._request(peer, Op("unknown", mid, 1, None, time.monotonic() + PROMPT), command, None, WHOLE)

    @counted
    def do_dimse_violation(self, peer: Peer, kind: str) -> None:
        mid = peer.message_id()
        echo = echo_rq(mid)
        store_op, store = self._store_op(peer, 200, 0, mid % 2 == 0)
        data = store_op.data
        pdus = {
            "data-set-before-command": [pdu(4, pdv(3, False, True, data))],
            "command-bit-clear": [pdu(4, pdv(1, False, True, echo))],
            "context-switch-in-command": [pdu(4, pdv(1, True, False, echo[:20]) + pdv(5, True, True, echo[20:]))],
            "interleaved-messages": [pdu(4, pdv(1, True, False, echo[:20])),
                                     pdu(4, pdv(5, True, True, query_rq(0x0020, FIND, mid + 1000))),
                                     pdu(4, pdv(1, True, True, echo[20:]))],
            "command-after-last-command": [pdu(4, pdv(3, True, True, store)), pdu(4, pdv(3, True, True, echo))],
            "data-set-before-last-command": [pdu(4, pdv(3, True, False, store[:30]) + pdv(3, False, True, data))],
            "data-set-after-echo": [pdu(4, pdv(1, True, True, echo)), pdu(4, pdv(1, False, True, data))],
            "undecodable-command": [pdu(4, pdv(1, True, True, echo[:-3]))],
            "command-over-64KiB": [pdu(4, pdv(1, True, False, bytes(30000))) for _ in range(3)]
                                  + [pdu(4, pdv(1, True, True, echo))],
            "store-data-set-on-other-context": [pdu(4, pdv(3, True, True, store)),
                                                pdu(4, pdv(3, False, False, data[:100])),
                                                pdu(4, pdv(1, False, True, data[100:]))],
            "store-command-bit-on-data-set": [pdu(4, pdv(3, True, True, store)),
                                              pdu(4, pdv(3, False, False, data[:100])),
                                              pdu(4, pdv(3, True, True, data[100:]))],
        }[kind]
        if kind == "data-set-after-echo":
            peer.ops[mid] = Op("echo", mid, 1, VERIFICATION, time.monotonic() + PROMPT, optional=True)
        peer.verdict = Verdict("abort", kind, time.monotonic() + PROMPT, DIMSE_FAULT)
        peer.send(pdus)

    @counted
    def do_pdu_violation(self, peer: Peer, kind: str) -> None:
        data, allowed = PDU_VIOLATIONS[kind]
        peer.verdict = Verdict("abort", kind, time.monotonic() + PROMPT, allowed)
        peer.send([data])

    @counted
    def do_stall(self, peer: Peer, kind: str, cut: int = 500) -> None:
        """Part of a PDU or of a message, then silence: read_timeout (AA-1), or ARTIM before the RQ."""
        if peer.phase == "open":
            rq = associate_rq()
            peer.stalled = True
            peer.verdict = Verdict("close", "partial A-ASSOCIATE-RQ", peer.connected_at + ARTIM + LATE,
                                   not_before=peer.connected_at + ARTIM - EARLY, stall=True)
            peer.partial = True
            peer.send([rq[:max(1, len(rq) * cut // 1000)]])
            return
        mid = peer.message_id()
        echo = pdu(4, pdv(1, True, True, echo_rq(mid)))
        op, store = self._store_op(peer, 40000, 0, cut % 2 == 0)
        data_pdu = pdu(4, pdv(3, False, False, op.data[:30000]))
        whole, partial = {
            "pdu-header": ([], echo[:1 + cut * 4 // 1000]),
            "pdu-body": ([], echo[:6 + max(1, (len(echo) - 7) * cut // 1000)]),
            "command-not-last": ([pdu(4, pdv(1, True, False, echo_rq(mid)))], b""),
            "store-without-data-set": ([pdu(4, pdv(3, True, True, store))], b""),
            "store-partial-data-set": ([pdu(4, pdv(3, True, True, store)), data_pdu], b""),
            "store-cut-in-data-set-pdu": ([pdu(4, pdv(3, True, True, store))],
                                          data_pdu[:7 + (len(data_pdu) - 8) * cut // 1000]),
        }[kind]
        if whole:
            peer.send(whole)
            peer.idle_since = time.monotonic()
        if partial:
            peer.partial = True
            peer.send([partial])
        self._stalled(peer, f"stalled ({kind})")

    @counted
    def do_release(self, peer: Peer) -> None:
        extra = max((op.deadline for op in peer.ops.values()), default=0.0)
        peer.verdict = Verdict("release", "A-RELEASE-RQ", max(time.monotonic() + PROMPT, extra + 0.5))
        peer.send([pdu(0x05, bytes(4))])

    def _quiet(self, peer: Peer, why: str) -> None:
        peer.pending.clear()
        for op in peer.ops.values():
            op.optional = True
        peer.verdict = Verdict("close", why, time.monotonic() + PROMPT)

    @counted
    def do_abort(self, peer: Peer) -> None:
        self._quiet(peer, "our A-ABORT")
        peer.send([pdu(0x07, bytes([0, 0, 0, 0]))])

    @counted
    def do_half_close(self, peer: Peer) -> None:
        self._quiet(peer, "our half-close")
        with peer.send_lock:
            peer.wr_closed = True
            try:
                peer.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    @counted
    def do_reset(self, peer: Peer) -> None:
        peer.close(reset=True)

    @counted
    def do_pause(self, peer: Peer, seconds: float) -> None:
        peer.pause_until = time.monotonic() + seconds

    @counted
    def do_sta13_stimulus(self, peer: Peer, kind: str) -> None:
        """A PDU after the server ended the association (PS3.8 Table 9-10, Sta13):
        AA-6 ignores it, AA-7 answers an A-ABORT, AA-2 closes at once."""
        data, action = STA13_STIMULI[kind]
        now = time.monotonic()
        if action == "abort":
            peer.sta13 = ("abort", now + PROMPT, now)
        elif action == "close":     # before ARTIM would have closed it
            peer.sta13 = ("close", (peer.ended_at or now) + ARTIM - 0.1, now)
        peer.send([data])

    @counted
    def do_stop_reading(self, peer: Peer) -> None:
        """Read nothing for longer than write_timeout: whatever the server was
        sending, it gives up on this peer (write timeout, read timeout) and
        closes -- while serving everybody else."""
        self.do_pause(peer, WRITE + 1.0)
        for op in peer.ops.values():
            op.optional = True
        peer.pending.clear()
        peer.verdict = Verdict("any", "not reading", peer.pause_until + READ + ARTIM + LATE, LEGAL_ABORTS)

    # ------------------------------------------------------------- rules
    # Every rule draws a slot (not a peer chosen by state): the state of a
    # peer depends on timing, and hypothesis needs the same draws on replay.
    # A rule whose slot is not in a state for it does nothing.
    @rule(slot=SLOTS, rcvbuf=st.booleans(), close_on_end=st.booleans(), associate=st.booleans(),
          max_pdu=PEER_PDUS, window=WINDOWS)
    def connect(self, slot: int, rcvbuf: bool, close_on_end: bool, associate: bool, max_pdu: int,
                window: int) -> None:
        if self.slots[slot] is None or self.slots[slot].phase == "done":
            peer = self.slots[slot] = self.do_connect(rcvbuf=rcvbuf, close_on_end=close_on_end)
            if associate:
                self.do_associate(peer, max_pdu=max_pdu, window=window)

    @rule(slot=SLOTS, max_pdu=PEER_PDUS, window=WINDOWS)
    def associate(self, slot: int, max_pdu: int, window: int) -> None:
        if peer := self._openable(slot):
            self.do_associate(peer, max_pdu=max_pdu, window=window)

    @rule(slot=SLOTS, kind=st.sampled_from(sorted(BAD_RQ)))
    def bad_associate(self, slot: int, kind: str) -> None:
        if peer := self._openable(slot):
            self.do_bad_associate(peer, kind)

    @rule(slot=SLOTS, frag=FRAGS, trickle=st.booleans(), tail=TAILS)
    def echo(self, slot: int, frag: Frag, trickle: bool, tail: str) -> None:
        if peer := self._ready(slot):
            self.do_echo(peer, frag, trickle, tail)

    @rule(slot=SLOTS, size=st.sampled_from([200, 20000, 100000]), status=st.sampled_from([0, 0xB000, 0xA700]),
          streamed=st.booleans(), frag=FRAGS, trickle=st.booleans(), tail=TAILS)
    def store(self, slot: int, size: int, status: int, streamed: bool, frag: Frag, trickle: bool, tail: str) -> None:
        if peer := self._ready(slot):
            self.do_store(peer, size, status, streamed, frag, trickle, tail)

    @rule(slot=SLOTS, streamed=st.booleans())
    def store_over_cap(self, slot: int, streamed: bool) -> None:
        if peer := self._ready(slot):
            self.do_store_over_cap(peer, streamed)

    @rule(slot=SLOTS, patient=st.sampled_from(["FIND0", "FIND1", "FIND4", "FAIL"]), frag=FRAGS, trickle=st.booleans(),
          tail=TAILS)
    def find(self, slot: int, patient: str, frag: Frag, trickle: bool, tail: str) -> None:
        if peer := self._ready(slot):
            self.do_find(peer, patient, frag, trickle, tail)

    @rule(slot=SLOTS, study=st.sampled_from(["A", "B", "none"]), fail=st.sampled_from(["none", "big", "all"]),
          frag=FRAGS)
    def get(self, slot: int, study: str, fail: str, frag: Frag) -> None:
        if peer := self._ready(slot):
            self.do_get(peer, study, fail, frag)

    @rule(slot=SLOTS, study=st.sampled_from(["A", "B", "none"]), destination=st.sampled_from([SCP_AE, "NOWHERE"]),
          frag=FRAGS)
    def move(self, slot: int, study: str, destination: str, frag: Frag) -> None:
        if peer := self._ready(slot):
            self.do_move(peer, study, destination, frag)

    @rule(slot=SLOTS, n=st.integers(1, 3))
    def continue_sending(self, slot: int, n: int) -> None:
        if peer := next((p for p in self._rotation(slot) if p.pending and p.verdict is None), None):
            self.do_continue(peer, n)

    @rule(slot=SLOTS)
    def cancel(self, slot: int) -> None:
        """C-CANCEL of the operation under way, or (idle) of one that is over: no response to that."""
        if (peer := self._cancellable(slot)) or (peer := self._ready(slot)):
            self.do_cancel(peer)

    @rule(slot=SLOTS, kinds=st.lists(st.sampled_from(["echo", "memory", "streamed", "big"]), min_size=2, max_size=4),
          one_pdu=st.booleans())
    def pipeline(self, slot: int, kinds: list[str], one_pdu: bool) -> None:
        if peer := self._ready(slot, window=2):
            self.do_pipeline(peer, kinds, one_pdu)

    @rule(slot=SLOTS, kind=st.sampled_from([k for k in MALFORMED if k not in KNOWN_FAULTS]))
    def malformed_request(self, slot: int, kind: str) -> None:
        if peer := self._ready(slot):
            self.do_malformed_request(peer, kind)

    @rule(slot=SLOTS)
    def unknown_command(self, slot: int) -> None:
        if peer := self._ready(slot):
            self.do_unknown_command(peer)

    @rule(slot=SLOTS, kind=st.sampled_from(DIMSE_VIOLATIONS))
    def dimse_violation(self, slot: int, kind: str) -> None:
        if peer := self._ready(slot):
            self.do_dimse_violation(peer, kind)

    @rule(slot=SLOTS, kind=st.sampled_from(sorted(PDU_VIOLATIONS)))
    def pdu_violation(self, slot: int, kind: str) -> None:
        if peer := self._ready(slot):
            self.do_pdu_violation(peer, kind)

    @rule(slot=SLOTS, kind=st.sampled_from(STALLS), cut=st.integers(0, 999))
    def stall(self, slot: int, kind: str, cut: int) -> None:
        if (peer := self._openable(slot)) or (peer := self._ready(slot)):
            self.do_stall(peer, kind, cut)

    @rule(slot=SLOTS)
    def release(self, slot: int) -> None:
        """Idle, or with a C-FIND under way: its responses come first, then the A-RELEASE-RP."""
        peer = self._cancellable(slot)
        if peer is not None and all(op.kind == "find" for op in peer.ops.values()) or (peer := self._ready(slot)):
            self.do_release(peer)

    @rule(slot=SLOTS)
    def abort(self, slot: int) -> None:
        if peer := next((p for p in self._rotation(slot) if p.can_end() and not p.partial), None):
            self.do_abort(peer)

    @rule(slot=SLOTS)
    def half_close(self, slot: int) -> None:
        if peer := next((p for p in self._rotation(slot) if p.can_end()), None):
            self.do_half_close(peer)

    @rule(slot=SLOTS)
    def reset(self, slot: int) -> None:
        if peer := next(iter(self._rotation(slot)), None):
            self.do_reset(peer)

    @rule(slot=SLOTS, seconds=st.sampled_from([0.2, 0.5]))
    def pause_reading(self, slot: int, seconds: float) -> None:
        if peer := next((p for p in self._rotation(slot) if time.monotonic() >= p.pause_until), None):
            self.do_pause(peer, seconds)

    @rule(slot=SLOTS, how=st.sampled_from(["A-RELEASE-RP", "A-ASSOCIATE-RJ", "A-ABORT in Sta2",
                                           "A-ABORT for an unknown PDU type in Sta2", "A-ABORT in Sta6",
                                           "A-ABORT for a DIMSE fault"]),
          kind=st.sampled_from(sorted(STA13_STIMULI)))
    def sta13_stimulus(self, slot: int, how: str, kind: str) -> None:
        """Have the server end an association (``how``), then send ``kind`` in its Sta13."""
        peer = self._openable(slot) if how == "A-ASSOCIATE-RJ" or how.endswith("Sta2") else self._ready(slot)
        if peer is None:
            return
        peer.close_on_end = False
        if how == "A-RELEASE-RP":
            self.do_release(peer)
        elif how == "A-ASSOCIATE-RJ":
            self.do_bad_associate(peer, "called-ae-unknown")
        elif how == "A-ABORT in Sta2":
            self.do_bad_associate(peer, "release-rq-before-rq")
        elif how == "A-ABORT for an unknown PDU type in Sta2":
            self.do_bad_associate(peer, "unknown-pdu-type")
        elif how == "A-ABORT in Sta6":
            self.do_pdu_violation(peer, "associate-ac")
        else:
            self.do_dimse_violation(peer, "data-set-before-command")
        limit = time.monotonic() + PROMPT
        while peer.ended_at is None and peer.phase != "done" and time.monotonic() < limit:
            time.sleep(0.002)
            self.check_peers()
        if peer.phase != "done" and peer.ended_at is not None and time.monotonic() < peer.ended_at + ARTIM - 0.35:
            self.do_sta13_stimulus(peer, kind)

    @rule(slot=SLOTS)
    def stop_reading(self, slot: int) -> None:
        if peer := next((p for p in self._rotation(slot) if p.phase == "established" and p.verdict is None
                         and p.ended_at is None and time.monotonic() >= p.pause_until), None):
            self.do_stop_reading(peer)

    @rule(seconds=st.sampled_from([0.05, 0.3, 0.8]))
    def let_time_pass(self, seconds: float) -> None:
        time.sleep(seconds)

    # ---------------------------------------------------------- teardown
    def teardown(self) -> None:
        """Shut the server down with the peers still connected (mid-message,
        stalled, not reading...): every one gets an A-ABORT (0, 0) or a close,
        the shutdown ends within SHUTDOWN_LIMIT and every thread it started ends."""
        in_flight = sys.exc_info()[1] is not None   # a step failed: clean up, report nothing more
        problems: list[str] = []
        shut = False
        try:
            if not in_flight:
                # Let what is due soon arrive (bounded), and check it.
                limit = time.monotonic() + PROMPT
                while time.monotonic() < limit and any(p.required or (p.verdict and not p.verdict.stall
                                                                       and p.ended_at is None)
                                                       or p.phase == "requested" for p in self._live()):
                    time.sleep(0.02)
                    self.check_peers()
                self.check_peers()
                self.shutting_down = True
            started = time.monotonic()
            shut = True
            self.server.shutdown(SHUTDOWN_LIMIT)
            took = time.monotonic() - started
            if took > SHUTDOWN_LIMIT:
                problems.append(f"shutdown took {took:.2f} s")
            if not in_flight:
                limit = max([time.monotonic(), *(p.pause_until for p in self._live())]) + LATE
                while self._live() and time.monotonic() < limit:
                    time.sleep(0.02)
                    self.check_peers()
                still = [(p.name, p.phase, p.verdict) for p in self._live()]
                if still:
                    problems.append(f"connections still open {time.monotonic() - started:.2f} s after shutdown: "
                                    f"{still}")
        finally:
            for peer in self._live():
                peer.close()
            if not shut:   # a failure before the shutdown above
                self.server.shutdown(SHUTDOWN_LIMIT)
            deadline = time.monotonic() + ARTIM + LATE
            while True:
                left = [t for t in threading.enumerate() if t not in self.threads_before and t.is_alive()
                        and not t.name.startswith("stateful-peer-")]
                if not left or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            if left:
                problems.append(f"threads still running after shutdown: {[t.name for t in left]}")
            while len(_fds()) > len(self.fds_before) and time.monotonic() < deadline:
                time.sleep(0.02)
            extra = sorted(set(_fds().items()) - set(self.fds_before.items()))
            if len(_fds()) > len(self.fds_before):
                problems.append(f"file descriptors still open after shutdown: {extra}")
            leftovers = [n for n in os.listdir(self.folder) if n.endswith(".part")]
            if leftovers:
                problems.append(f"temporary files left: {leftovers}")
            threading.excepthook = self.previous_hook
            self.logger.removeHandler(self.capture)
            logging.getLogger("dicomnet").removeHandler(self.capture)
        if not in_flight:
            assert not self.failures.items, self.failures.items
            assert not problems, problems
