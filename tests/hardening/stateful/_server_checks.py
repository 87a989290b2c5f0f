"""The server machine's checks (test_server_stateful.py): :class:`ServerChecks`.

After every step the invariant ``check`` takes what each peer's reader
thread saw -- PDUs, DIMSE messages, the connection's end, each timestamped --
and judges it against the peer's model (``_server_wire.Peer``): the
A-ASSOCIATE-AC, every response due (status, counters, data set, in time), the
A-ABORT / RJ / RP or close a protocol violation or a timer owes (PS3.8 9.3.8,
Table 9-10, Sta13) -- and fails what is overdue; then that no
thread or log reported a failure, that the server serves no more
associations than could be open, and that a fresh C-ECHO association (the
probe) is answered promptly. A mixin of :class:`ServerMachine`, whose state
(peers, server, handler, trace) it reads.
"""
from __future__ import annotations

import os
import socket
import struct
import threading
import time

from hypothesis.stateful import invariant

from ._common import (AFF_CLASS, AFF_INST, CF, COMMENT, COMPLETED, CT, FAILED, IMPLICIT, LATE, MIDR, ORIG_AE,
                      REMAINING, STATUS, VERIFICATION, WARNING, pdu, pdv, text, us)
from ._server_wire import (ARTIM, CONTEXTS, CTX, EARLY, FAILURES, LEGAL_ABORTS, PROBE_LIMIT, READ, SCP_AE,
                           SERVER_MAX_PDU, UNKNOWN_SOP, Op, Peer, associate_rq, dataset_part, decode_command,
                           decode_ds, echo_rq, parse_ac)


class ServerChecks:
    """The invariant and the judging of what the server sent (see the module docstring)."""

    # ---------------------------------------------------------- checking
    @invariant()
    def check(self) -> None:
        self.check_peers()
        assert not self.failures.items, self.failures.items
        self.check_association_count()
        self.probe()

    def check_peers(self) -> None:
        for peer in list(self.peers):
            while peer.events and peer.phase != "done":
                self._take(peer, peer.events.popleft())
            if peer.phase != "done":
                self._deadlines(peer, time.monotonic())
            else:
                peer.events.clear()    # what came after we closed our end

    def _fail(self, peer: Peer, message: str) -> None:
        mine = [line for line in self.trace if f"({peer}" in line or f"({peer}," in line][-12:]
        raise AssertionError(f"{peer}: {message} [at {time.monotonic() - self.started:.3f}; "
                             f"{peer} did: {'; '.join(mine)}]")

    def _take(self, peer: Peer, event: tuple) -> None:
        kind, t = event[0], event[1]     # t: (after, before)
        if self.shutting_down and kind in ("pdu", "eof"):
            # Server.shutdown(): A-ABORT (service-user: the application ends it) and close.
            if kind == "eof" or (event[2] == 0x07 and event[3] == bytes([0, 0, 0, 0])):
                peer.close()
                return
            if event[2] == 0x02 and peer.phase == "requested":
                peer.phase = "established"
                return
        if kind in ("crash", "bad"):
            self._fail(peer, f"{'harness reader crashed' if kind == 'crash' else 'server broke framing'}: {event[2]}")
        elif kind == "send-failed":
            pass   # the server closed first: what it sent before says whether it could
        elif kind == "msg":
            self._on_message(peer, t, *event[2:])
        elif kind == "pdu":
            self._on_pdu(peer, t, event[2], event[3])
        elif kind == "eof":
            self._on_eof(peer, t)

    def _idle_abort_ok(self, peer: Peer, t: tuple[float, float]) -> bool:
        """AA-1 at read_timeout: an established association with nothing due, idle long enough."""
        base = peer.pdu_done_at if peer.pending else peer.idle_since
        return peer.phase == "established" and not peer.required and t[1] - base >= READ - EARLY

    def _on_pdu(self, peer: Peer, t: tuple[float, float], pdu_type: int, body: bytes) -> None:
        v = peer.verdict
        if v is not None and v.what == "any":
            assert pdu_type == 0x07 and len(body) == 4 and (body[2], body[3]) in v.allowed, \
                f"{peer}: PDU {pdu_type:02X}H {body[:16].hex()} to a peer that stopped reading"
            peer.ended_at, peer.ended_late = t
            return
        if peer.ended_at is not None:
            # Sta13: only AA-7 sends anything -- an A-ABORT for an A-ASSOCIATE-RQ or an invalid PDU.
            due = peer.sta13
            if pdu_type == 0x07 and due is not None and due[0] == "abort" and len(body) == 4 \
                    and (body[2], body[3]) in LEGAL_ABORTS:
                peer.sta13 = None
                return
            self._fail(peer, f"PDU {pdu_type:02X}H in Sta13 (after the association ended, {peer.ended_how}): "
                             f"{body[:16].hex()}")
        if pdu_type == 0x02:
            if peer.phase != "requested" or v is not None:
                self._fail(peer, f"unexpected A-ASSOCIATE-AC (verdict {v})")
            assert t[0] <= peer.ac_by, f"{peer}: A-ASSOCIATE-AC {t[0] - peer.ac_by:.2f} s late"
            contexts, max_length, roles, window = parse_ac(body)
            for cid, (abstract, syntaxes) in CONTEXTS.items():
                result, ts = contexts.get(cid, (None, ""))
                if abstract == UNKNOWN_SOP:
                    assert result == 3, f"{peer}: context {cid} of an unknown SOP class: result {result}"
                else:
                    assert result == 0 and ts in syntaxes, f"{peer}: context {cid}: result {result}, {ts!r}"
            assert max_length == SERVER_MAX_PDU, f"{peer}: Maximum Length {max_length}"
            assert roles.get(CT, (0, 0))[1] == 1, f"{peer}: SCP role for CT not accepted: {roles}"
            if peer.offered_window:
                # PS3.7 D.3.3.3: the acceptor invokes at most what we perform, performs at most what we invoke.
                assert window is not None and 1 <= window[0] <= peer.offered_window \
                    and 1 <= window[1] <= peer.offered_window, f"{peer}: window {window}"
                peer.window = window[1]
            else:
                assert window is None, f"{peer}: an Asynchronous Operations Window nobody offered: {window}"
            peer.phase, peer.idle_since = "established", t[0]
            return
        if pdu_type == 0x03:
            ok = (v is not None and v.what == "reject" and len(body) == 4 and body[1] in (1, 2)
                  and (body[2], body[3]) in v.allowed and t[0] <= v.by)
            if not ok:
                self._fail(peer, f"A-ASSOCIATE-RJ {body.hex()} (expected {v})")
        elif pdu_type == 0x06:
            if v is None or v.what != "release" or peer.required or t[0] > v.by:
                self._fail(peer, f"A-RELEASE-RP (expected {v}; due {[op.kind for op in peer.required]})")
        elif pdu_type == 0x07:
            pair = (body[2], body[3]) if len(body) == 4 else None
            if pair not in LEGAL_ABORTS:
                self._fail(peer, f"A-ABORT {body.hex()} is not a PS3.8 9.3.8 source/reason")
            expected = (v is not None and v.what == "abort" and pair in v.allowed
                        and v.not_before <= t[1] and t[0] <= v.by)
            if not (expected or (pair == (0, 0) and self._idle_abort_ok(peer, t))):
                idle = t[1] - peer.idle_since
                self._fail(peer, f"A-ABORT {pair} after {idle:.2f} s idle (expected {v}; "
                                 f"due {[op.kind for op in peer.required]})")
        else:
            self._fail(peer, f"unexpected PDU type {pdu_type:02X}H: {body[:16].hex()}")
        peer.ended_at, peer.ended_late = t
        peer.ended_how = {0x03: "A-ASSOCIATE-RJ", 0x06: "A-RELEASE-RP"}.get(
            pdu_type, "A-ABORT in Sta6" if peer.phase == "established" else "A-ABORT in Sta2")
        peer.ops.clear()
        if peer.close_on_end:
            peer.close()

    def _on_eof(self, peer: Peer, t: tuple[float, float]) -> None:
        v = peer.verdict
        if v is not None and v.what == "any":
            ok, why = t[0] <= v.by, f"{t[0] - v.by:.2f} s after it was due ({v.why})"
        elif v is not None and v.what == "close" and not v.stall:
            ok = t[0] <= max(v.by, peer.pause_until + LATE)
            why = "after our A-ABORT / half-close"
        elif peer.sta13 is not None and peer.sta13[0] == "abort":     # AA-7 owed first
            ok, why = False, f"in Sta13 ({peer.ended_how}) without the A-ABORT owed (AA-7) for what we sent"
        elif peer.sta13 is not None and peer.sta13[0] == "close":     # AA-2: at once
            ok = t[0] <= peer.sta13[1]
            why = f"{t[0] - peer.sta13[2]:.2f} s after our A-ABORT in Sta13 ({peer.ended_how}), not at once"
        elif peer.ended_at is not None:     # Sta13: the server closes when ARTIM expires
            ok = (t[1] - peer.ended_at >= ARTIM - EARLY
                  and t[0] - peer.ended_late <= ARTIM + LATE + max(0.0, peer.pause_until - peer.ended_late))
            why = f"{t[1] - peer.ended_at:.2f} s after the server ended the association (ARTIM {ARTIM} s)"
        elif peer.phase == "open" and (v is None or v.what == "close" or v.stall):
            ok = t[1] - peer.connected_at >= ARTIM - EARLY
            why = f"{t[1] - peer.connected_at:.2f} s after connecting, no A-ASSOCIATE-RQ (ARTIM {ARTIM} s)"
        else:
            ok, why = False, f"without A-ABORT / RJ / RP (phase {peer.phase}, expected {v})"
        if not ok or (peer.required and (v is None or v.what != "close")):
            self._fail(peer, f"server closed the connection {why}; due {[op.kind for op in peer.required]}")
        peer.close()

    def _on_message(self, peer: Peer, t: tuple[float, float], ctx: int, cmd: dict[int, bytes],
                    ds: bytes | None) -> None:
        if peer.ended_at is not None:
            self._fail(peer, "P-DATA after the association ended")
        if peer.verdict is not None and peer.verdict.what == "any" and us(cmd, MIDR) not in peer.ops \
                and us(cmd, CF) != 0x0001:
            return   # e.g. the rest of a C-FIND's Pending responses
        field_ = us(cmd, CF)
        if field_ == 0x0001:   # a C-STORE sub-operation of our C-GET
            gets = [op for op in peer.ops.values() if op.kind == "get"]
            assert gets, f"{peer}: C-STORE-RQ without a C-GET under way"
            op, uid = gets[0], text(cmd, AFF_INST)
            assert ctx == CTX[CT] and text(cmd, AFF_CLASS) == CT, f"{peer}: sub-operation on context {ctx}"
            assert uid in op.uids and uid not in op.seen, f"{peer}: sub-operation for {uid} (C-GET of {op.uids})"
            assert ds == self.archive.data[uid], f"{peer}: C-GET delivered other bytes for {uid}"  # type: ignore
            assert ORIG_AE not in cmd, f"{peer}: Move Originator in a C-GET sub-operation"
            op.seen.add(uid)
            return
        mid = us(cmd, MIDR)
        op = peer.ops.get(mid)  # type: ignore[arg-type]
        if op is None:
            fields = sorted((hex(k), v.hex()) for k, v in cmd.items())
            self._fail(peer, f"response to {mid} that nothing awaits: {fields}")
        assert op is not None
        status = us(cmd, STATUS)
        where = f"{peer}: {op.kind} {op.msgid}"
        assert not peer.pending, f"{where}: answered before the whole request was sent"
        assert ctx == op.ctx, f"{where}: response on context {ctx}"
        assert status is not None, f"{where}: response without a Status"
        if op.kind == "unknown":
            assert field_ is not None and field_ & 0x8000 and status == 0x0211, f"{where}: {field_} 0x{status:04X}"
        else:
            expected_field = {"echo": 0x8030, "store": 0x8001, "find": 0x8020, "get": 0x8010, "move": 0x8021}[op.kind]
            assert field_ == expected_field, f"{where}: CommandField {field_}"
            assert text(cmd, AFF_CLASS) == op.sop_class, f"{where}: Affected SOP Class {text(cmd, AFF_CLASS)}"
        done = getattr(self, f"_{op.kind}_response")(op, where, cmd, status, ds)
        if done:
            del peer.ops[op.msgid]
            if not peer.ops:
                peer.idle_since = t[0]

    def _echo_response(self, op: Op, where: str, cmd: dict, status: int, ds: bytes | None) -> bool:
        assert status == 0 and ds is None, f"{where}: status 0x{status:04X}"
        return True

    def _unknown_response(self, op: Op, where: str, cmd: dict, status: int, ds: bytes | None) -> bool:
        return True   # 0x0211, checked in _on_message

    def _store_response(self, op: Op, where: str, cmd: dict, status: int, ds: bytes | None) -> bool:
        if op.failure:
            assert status in FAILURES and ds is None, f"{where}: a malformed C-STORE answered 0x{status:04X}"
            assert text(cmd, AFF_INST) == op.uid, f"{where}: Affected SOP Instance {text(cmd, AFF_INST)}"
            return True
        assert status == op.status and ds is None, f"{where}: status 0x{status:04X}, expected 0x{op.status:04X}"
        assert text(cmd, AFF_INST) == op.uid, f"{where}: Affected SOP Instance {text(cmd, AFF_INST)}"
        with self.handler.lock:
            record = self.handler.stored.get(op.uid)
        assert record is not None and record[0] == op.digest, f"{where}: handler got {record}"
        if op.streamed:
            path = os.path.join(self.folder, op.uid + ".dcm")
            assert os.path.exists(path) and dataset_part(path) == op.data, f"{where}: streamed file differs"
        return True

    def _find_response(self, op: Op, where: str, cmd: dict, status: int, ds: bytes | None) -> bool:
        if op.failure:
            assert status in FAILURES and ds is None, f"{where}: a malformed request answered 0x{status:04X}"
            return True
        if status in (0xFF00, 0xFF01):
            assert ds is not None, f"{where}: Pending without an Identifier"
            match = decode_ds(ds)
            assert match.PatientID == op.patient and "StudyInstanceUID" in match, f"{where}: match {match}"
            op.pendings += 1
            assert op.pendings <= op.n, f"{where}: {op.pendings} matches of {op.n}"
            return False
        assert ds is None, f"{where}: final response with an Identifier"
        if op.patient == "FAIL":
            assert status == 0xA900 and COMMENT in cmd, f"{where}: status 0x{status:04X}"
        elif op.cancelled:
            assert status == 0xFE00 or (status == 0 and op.pendings == op.n), \
                f"{where}: cancelled: 0x{status:04X} after {op.pendings} of {op.n}"
        else:
            assert status == 0 and op.pendings == op.n, f"{where}: 0x{status:04X} after {op.pendings} of {op.n}"
        return True

    def _get_response(self, op: Op, where: str, cmd: dict, status: int, ds: bytes | None) -> bool:
        if op.failure:
            return self._find_response(op, where, cmd, status, ds)
        completed, failed, warning = (us(cmd, COMPLETED) or 0, us(cmd, FAILED) or 0, us(cmd, WARNING) or 0)
        remaining = us(cmd, REMAINING)
        if status == 0xFF00:
            assert ds is None and remaining is not None, f"{where}: Pending {cmd}"
            assert remaining + completed + failed + warning == op.n, f"{where}: counters of a Pending response"
            op.pendings += 1
            return False
        listed = decode_ds(ds).get("FailedSOPInstanceUIDList", []) if ds is not None else []
        failed_uids = {listed} if isinstance(listed, str) else set(listed)   # pydicom: one value is a str
        if op.cancelled and status == 0xFE00:
            assert remaining is not None and remaining + completed + failed + warning == op.n, f"{where}: cancel"
            return True
        want_failed = set(op.failing) if op.kind == "get" else set()
        if not want_failed:
            expected = {0x0000}
        elif len(want_failed) < op.n:
            expected = {0xB000}
        else:
            expected = {0xB000, 0xA702}
        assert status in expected, f"{where}: final 0x{status:04X}, expected {sorted(map(hex, expected))}"
        assert (completed, failed, warning) == (op.n - len(want_failed), len(want_failed), 0), \
            f"{where}: counters {completed}/{failed}/{warning} of {op.n}"
        assert remaining is None, f"{where}: Number of Remaining Sub-operations in a final response"
        assert failed_uids == want_failed, f"{where}: Failed SOP Instance UID List {failed_uids}"
        if op.kind == "get":
            assert op.seen == set(op.uids), f"{where}: sub-operations for {op.seen} of {op.uids}"
        return True

    def _move_response(self, op: Op, where: str, cmd: dict, status: int, ds: bytes | None) -> bool:
        if op.failure:
            return self._find_response(op, where, cmd, status, ds)
        if op.destination != SCP_AE:
            assert status == 0xA801 and ds is None, f"{where}: unknown destination answered 0x{status:04X}"
            return True
        done = self._get_response(op, where, cmd, status, ds)
        if done:
            self.moves_done.append(time.monotonic())
            if status == 0:   # each instance stored by a sub-operation naming us (PS3.4 C.4.2.2)
                with self.handler.lock:
                    moved = set(self.handler.moved)
                for uid in op.uids:
                    assert (uid, self.archive.pixels[uid], op.originator, op.msgid) in moved, \
                        f"{where}: no C-STORE sub-operation of {uid} with Move Originator {op.originator}/{op.msgid}"
        return done

    def _deadlines(self, peer: Peer, now: float) -> None:
        def due(deadline: float) -> bool:
            return now > max(deadline, peer.pause_until + LATE)

        v = peer.verdict
        if peer.ended_at is not None:
            if peer.sta13 is not None and now > peer.sta13[1]:
                self._fail(peer, f"{peer.sta13[0]} owed in Sta13 ({peer.ended_how}) for what we sent "
                                 f"{now - peer.sta13[2]:.2f} s ago")
            if (v is None or v.what not in ("close", "any")) and due(peer.ended_at + ARTIM + LATE):
                self._fail(peer, f"still open {now - peer.ended_at:.2f} s after the association ended (ARTIM)")
            if v is not None and v.what in ("close", "any") and due(v.by):
                self._fail(peer, f"not closed after {v.why}")
            return
        if v is not None and due(v.by):
            self._fail(peer, f"no {v.what} for {v.why} in time")
        if peer.phase == "open" and v is None and due(peer.connected_at + ARTIM + LATE):
            self._fail(peer, "not closed at ARTIM without an A-ASSOCIATE-RQ")
        if peer.phase == "requested" and due(peer.ac_by):
            self._fail(peer, "no A-ASSOCIATE-AC")
        for op in peer.required:
            if due(op.deadline):
                self._fail(peer, f"no response to {op.kind} {op.msgid} (cancelled: {op.cancelled}, "
                                 f"pendings: {op.pendings}, sub-operations: {len(op.seen)})")
        base = peer.pdu_done_at if peer.pending else peer.idle_since
        if peer.phase == "established" and v is None and not peer.required and due(base + READ + LATE):
            self._fail(peer, f"idle for {now - base:.2f} s and not aborted (read_timeout {READ} s; "
                             f"{len(peer.pending)} write(s) of a request to go)")

    def check_association_count(self) -> None:
        now = time.monotonic()
        recent = [t for t in [*self.moves_done, *self.probe_ends] if now - t < LATE]   # threads still ending
        could_be_open = (sum(1 for p in self.peers if p.phase != "done" or now - (p.done_at or 0) < LATE)
                         + sum(1 for p in self.peers for op in p.ops.values() if op.kind == "move") + len(recent))
        active = self.server.active_associations
        assert active <= could_be_open, (
            f"server serves {active} associations; at most {could_be_open} are open: "
            f"{[t.name for t in threading.enumerate() if t.name.startswith('dicomnet-assoc-')]}; peers "
            f"{[(p.name, p.phase, p.sock.getsockname()[1] if p.phase != 'done' else None) for p in self.peers]}")

    def probe(self) -> None:
        """A fresh requestor: associate, C-ECHO, release -- answered promptly whatever the others do."""
        started = time.monotonic()
        try:
            self._probe(started + PROBE_LIMIT)
        except OSError as exc:
            raise AssertionError(f"probe: {type(exc).__name__}: {exc} after {time.monotonic() - started:.2f} s")
        ended = time.monotonic()
        self.probe_ends.append(ended)
        assert ended - started < PROBE_LIMIT, f"probe took {ended - started:.2f} s"

    def _probe(self, deadline: float) -> None:
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=PROBE_LIMIT) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(associate_rq(calling="PROBE", contexts={1: (VERIFICATION, (IMPLICIT,))}))
            assert _read_pdu(sock, deadline)[0] == 0x02, "probe: no A-ASSOCIATE-AC"
            sock.sendall(pdu(0x04, pdv(1, True, True, echo_rq(7))))
            pdu_type, body = _read_pdu(sock, deadline)
            assert pdu_type == 0x04, f"probe: PDU {pdu_type:02X}H instead of the C-ECHO-RSP"
            command = decode_command(body[6:])
            assert us(command, CF) == 0x8030 and us(command, MIDR) == 7 and us(command, STATUS) == 0, command
            sock.sendall(pdu(0x05, bytes(4)))
            assert _read_pdu(sock, deadline)[0] == 0x06, "probe: no A-RELEASE-RP"


def _read_pdu(sock: socket.socket, deadline: float) -> tuple[int, bytes]:
    data = b""
    while True:
        if len(data) >= 6 and len(data) >= 6 + struct.unpack_from(">L", data, 2)[0]:
            return data[0], data[6:6 + struct.unpack_from(">L", data, 2)[0]]
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data[:16].hex()}"
        data += chunk

