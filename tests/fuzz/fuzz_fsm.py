"""Coverage-guided fuzzing of the Upper Layer state machine with atheris.

Each input drives one sans-IO :class:`dicomnet.pdu.connection.Connection`
(requestor or acceptor) through a random sequence of events: canned and
random PDU bytes from the peer (cut at random points), local primitives
(accept, reject, P-DATA, release, abort), timer expiry and transport loss,
and in Sta13 the hand-over to the background closer's own Connection
(``Connection.handover``), which then takes the rest of the input.

Allowed outcomes: a primitive the current state refuses raises
LocalProtocolError (or ValueError for a bad argument). Anything else -- an
exception from inside the machine, a state outside Sta1..Sta13, output after
the association ended, a non-buffer in ``data_to_send()`` -- is a bug.

    python tests/fuzz/fuzz_fsm.py -runs=20000 tests/fuzz/corpus/pdu/
"""
from __future__ import annotations

import logging
import os
import sys

import atheris
import numpy  # noqa: F401 - imported before instrumenting: only dicomnet's own code is instrumented

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

with atheris.instrument_imports():
    from dicomnet._codec.pdu import fragment
    from dicomnet.dimse.commands import c_echo_rq, encode_command
    from dicomnet.errors import LocalProtocolError
    from dicomnet.pdu import events as ev
    from dicomnet.pdu.connection import Connection
    from dicomnet.pdu.negotiation import AcceptorPolicy, build_associate_rq, negotiate
    from dicomnet.pdu.pdus import AAssociateRJ, encode_pdu

from tests.pdu import vectors  # noqa: E402

VERIFICATION = "1.2.840.10008.1.1"
STATES = {f"Sta{i}" for i in range(1, 14)}
RQ = build_associate_rq("FUZZ-SCU", "FUZZ-SCP", [(VERIFICATION, ("1.2.840.10008.1.2",))], max_pdu=16384)
POLICY = AcceptorPolicy("FUZZ-SCP", require_called_ae=False)
AC = negotiate(RQ, POLICY)
ECHO = bytes(encode_command(c_echo_rq(1)))
CANNED = [
    encode_pdu(RQ),
    encode_pdu(AC),
    b"".join(bytes(b) for b in fragment(1, True, ECHO, 16384)),
    b"".join(bytes(b) for b in fragment(1, True, ECHO, 20)),      # several PDUs
    *vectors.ALL_PDUS.values(),
]
REJECT = AAssociateRJ(1, 1, 1)


def step(conn: Connection, fdp: atheris.FuzzedDataProvider, now: float) -> Connection:
    """One event; returns the Connection that goes on (another after a hand-over)."""
    op = fdp.ConsumeIntInRange(0, 12)
    try:
        if op == 0 or op == 1:
            data = CANNED[fdp.ConsumeIntInRange(0, len(CANNED) - 1)] if op == 0 \
                else fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
            cut = fdp.ConsumeIntInRange(0, len(data))
            for piece in (data[:cut], data[cut:]):
                if piece and conn.state not in ("Sta1", "Sta4"):
                    conn.receive_data(piece, now)
        elif op == 2:
            if conn.rq is not None and conn.state == "Sta3":
                answer = negotiate(conn.rq, POLICY)
                if isinstance(answer, AAssociateRJ):
                    conn.reject(answer, now)
                else:
                    conn.accept(answer)
            else:
                conn.accept(AC)
        elif op == 3:
            conn.reject(REJECT, now)
        elif op == 4:
            context_id = fdp.ConsumeIntInRange(0, 255) if fdp.ConsumeBool() else 1
            conn.send_pdata(context_id, fdp.ConsumeBool(), fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300)))
        elif op == 5:
            conn.request_release()
        elif op == 6:
            conn.confirm_release(now)
        elif op == 7:
            conn.abort(fdp.ConsumeIntInRange(0, 6), now)
        elif op == 8:
            conn.timeout(now + fdp.ConsumeIntInRange(0, 100))
        elif op == 9:
            if conn.state not in ("Sta1", "Sta4") or not conn.closed:
                conn.connection_lost()
        elif op == 10:
            conn.request_association(RQ, now, connected=fdp.ConsumeBool())
        elif op == 11:
            conn.transport_connected(now)
        elif conn.state == "Sta13":
            deadline = conn.deadline()
            twin = conn.handover()
            conn.connection_lost()          # what SyncDriver.close does next
            assert twin.state == "Sta13" and twin.deadline() == deadline and not twin.events_pending
            assert conn.closed
            return twin
    except LocalProtocolError:
        pass            # the state refuses this primitive: the documented answer
    except ValueError:
        pass            # e.g. a P-DATA on a context that was not accepted
    return conn


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    role = "requestor" if fdp.ConsumeBool() else "acceptor"
    conn = Connection(role, max_pdu=16384, artim_timeout=5.0)
    now = 0.0
    ended_at: int | None = None
    for i in range(fdp.ConsumeIntInRange(1, 40)):
        if fdp.remaining_bytes() == 0:
            break
        now += 0.5
        previous, conn = conn, step(conn, fdp, now)
        if conn is not previous:
            ended_at = None             # the twin's output is its own (AA-7 answers)
            while previous.next_event() is not None:
                pass
        assert conn.state in STATES, conn.state
        out = conn.data_to_send()
        assert all(isinstance(b, (bytes, memoryview)) for b in out)
        if ended_at is not None:
            assert not out, "output after the association ended"
        while (event := conn.next_event()) is not None:
            assert isinstance(event, ev.Event.__args__ if hasattr(ev.Event, "__args__") else object)
        if conn.closed and ended_at is None:
            ended_at = i
            assert conn.wants_close and conn.deadline() is None


def main() -> None:
    logging.getLogger("dicomnet").setLevel(logging.CRITICAL)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
