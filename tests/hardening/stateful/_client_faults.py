"""The client machine's faults (test_client_stateful.py): :class:`ClientFaults`.

What the scripted SCP does wrong or ends, and what the client owes for it:
a response that comes too late (ReadTimeout, then an A-ABORT), breaks
PS3.7/PS3.8 (an A-ABORT and an exception) or answers a request already
answered (dropped with a warning); the SCP's A-ABORT, close or reset at any
point, its A-RELEASE-RQ (also colliding with the client's own); the client's
release against each answer and its A-ABORT followed by Sta13 stimuli; PDUs
out of place (AA-8); an SCP that stops reading (WriteTimeout). The actions
and the rules that draw them; a mixin of :class:`ClientMachine`, whose
state (client, association, SCP connection, budget) it uses.
"""
from __future__ import annotations

import os
import struct
import threading
import time
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import rule

from dicomnet.errors import AssociationAborted, AssociationError, PDUError, ReadTimeout, WriteTimeout

from ._common import (AFF_CLASS, AFF_INST, CF, DST, EXPLICIT, FIND, LATE, MID, PRIORITY, PROMPT, UNEXPECTED,
                      VERIFICATION, encode_command, pdu, pdv)
from ._client_wire import (ARTIM, BAD_RESPONSES, DIMSE, EARLY, FRAGS, KNOWN_FAULTS, LIMIT, MR, PDU_VIOLATIONS, READ,
                           WHOLE, WRITE, Call, Frag, ScpConn, abort_pdu, associate_ac, dataset_part, instance,
                           match_ds, partial, pdus_of, response, wire)


class ClientFaults:
    """Actions and rules: the SCP's faults and ends, the client's release and abort."""

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

    # ------------------------------------------------- the rules of the faults
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

