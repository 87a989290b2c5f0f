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

The SCP's wire bytes and connection are in ``_client_wire.py``, the machine in
``_client_machine.py``, what both machines share in ``_common.py``.
"""
from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from pydicom.dataset import Dataset as PyDataset
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import UID

from ._client_machine import STATS, ClientMachine
from ._client_wire import (ARTIM, BAD_RESPONSES, DIMSE, KNOWN_FAULTS, LIMIT, PDU_VIOLATIONS, STORE_UIDS, WHOLE, Frag,
                           dataset_part)
from ._common import CT, EXPLICIT, LATE, machine_settings, replay_steps, run_machine


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
