"""The client machine: one Client against a scripted SCP (test_client_stateful.py).

:class:`ClientMachine` owns the client and a listening socket; every client
call runs on a worker thread (``_client_wire.Call``) while the machine's own
thread plays the SCP on the accepted connection, following the script its
rule chose, and checks what the client sent, returned and raised. Its
invariant and teardown check that no thread failed, dicomnet logged no error
for a peer's fault, and no thread, file descriptor or ``.part`` file was
left. The actions and rules of the SCP's faults and ends, and of the
client's release and abort, it inherits from ``_client_faults.ClientFaults``.
What it checks, in full, is said in test_client_stateful.py.
"""
from __future__ import annotations

import collections
import gc
import logging
import os
import random
import socket
import sys
import threading
import time
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from dicomnet import Client
from dicomnet.errors import ARTIMTimeout, AssociationAborted, AssociationError, AssociationRejected, DimseStatusError
from dicomnet.transport import closer

from ._common import (AFF_CLASS, AFF_INST, CF, CT, DST, EXPLICIT, FIND, GET, IMPLICIT, LATE, MID, MIDR, MOVE,
                      MOVE_DEST, PRIORITY, PROMPT, STATUS, VERIFICATION, _fds, encode_command, pdu, text, us)
from ._client_faults import ClientFaults
from ._client_wire import (ARTIM, CLIENT_CONTEXTS, CLIENT_MAX, DIMSE, EARLY, FRAGS, MR, READ, SCP_AE, SCU_AE,
                           SLOW_BUDGET, STORE_UIDS, UID_ROOT, WHOLE, WRITE, Call, Frag, Msg, ScpConn, abort_pdu,
                           associate_ac, dataset_part, failed_list, instance, is_failure, match_ds, parse_rq, partial,
                           pdus_of, response)


STATS: collections.Counter = collections.Counter()


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        (self.errors if record.levelno >= logging.ERROR else self.warnings).append(record.getMessage())


class ClientMachine(ClientFaults, RuleBasedStateMachine):
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

    # ---------------------------------- the rules (the faults' own: ClientFaults)
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

