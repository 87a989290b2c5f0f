"""The client machine: one Client against a scripted SCP (test_client_stateful.py).

:class:`ClientMachine` owns the client and a listening socket; every client
call runs on a worker thread (``_client_wire.Call``) while the machine's own
thread plays the SCP on the accepted connection, following the script its
rule chose, and checks what the client sent, returned and raised. Its
invariant and teardown check that no thread failed, dicomnet logged no error
for a peer's fault, and no thread, file descriptor or ``.part`` file was
left. What it checks, in full, is said in test_client_stateful.py.
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
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from dicomnet import Client
from dicomnet.errors import (ARTIMTimeout, AssociationAborted, AssociationError, AssociationRejected,
                             DimseStatusError, PDUError, ReadTimeout, WriteTimeout)
from dicomnet.transport import closer

from ._common import (AFF_CLASS, AFF_INST, CF, CT, DST, EXPLICIT, FIND, GET, IMPLICIT, LATE, MID, MIDR, MOVE,
                      MOVE_DEST, PRIORITY, PROMPT, STATUS, UNEXPECTED, VERIFICATION, _fds, encode_command, pdu, pdv,
                      text, us)
from ._client_wire import (ARTIM, BAD_RESPONSES, CLIENT_CONTEXTS, CLIENT_MAX, DIMSE, EARLY, FRAGS, KNOWN_FAULTS, LIMIT,
                           MR, PDU_VIOLATIONS, READ, SCP_AE, SCU_AE, SLOW_BUDGET, STORE_UIDS, UID_ROOT, WHOLE, WRITE,
                           Call, Frag, Msg, ScpConn, abort_pdu, associate_ac, dataset_part, failed_list, instance,
                           is_failure, match_ds, parse_rq, partial, pdus_of, response, wire)

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

