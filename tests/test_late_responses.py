"""A response that comes after its request was answered in full.

pynetdicom 3's C-FIND SCP sends a final Warning and then a second final
response, Success, to the same request. PS3.7 gives the extra response no
meaning; our SCU drops it with a warning instead of aborting the association
when the next request reads it. A response to a Message ID we never used is
still a protocol error. The peer here is scripted on the sans-IO Connection,
so it can send what no real SCP of ours would.
"""
from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from dicomnet import Client
from dicomnet.association import VERIFICATION
from dicomnet.dicom import Dataset
from dicomnet.dicom.writer import encode_dataset
from dicomnet.dimse.assembler import Message, MessageAssembler
from dicomnet.dimse.commands import (
    CommandField,
    c_echo_rsp,
    c_find_rsp,
    c_move_rsp,
    c_store_rsp,
    encode_command,
)
from dicomnet.errors import AssociationAborted
from dicomnet.pdu import events as ev
from dicomnet.pdu.connection import Connection
from dicomnet.pdu.negotiation import AcceptorPolicy, negotiate

STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"

#: What the scripted SCP answers to one request: (command, data set bytes or None) pairs.
Script = Callable[[Message], list[tuple[dict, bytes | None]]]


def _match() -> bytes:
    ds = Dataset()
    ds.PatientID = "LATE"
    ds.StudyInstanceUID = "2.25.77"
    return encode_dataset(ds, EXPLICIT)


def answer_twice(message: Message) -> list[tuple[dict, bytes | None]]:
    """Each request answered as pynetdicom does after a warning: one response too many."""
    command = message.command
    field, mid = command.get("CommandField"), command.message_id or 0
    sop_class = command.get("AffectedSOPClassUID")
    if field == CommandField.C_ECHO_RQ:
        return [(c_echo_rsp(mid), None), (c_echo_rsp(mid), None)]
    if field == CommandField.C_STORE_RQ:
        rsp = c_store_rsp(mid, sop_class, command.get("AffectedSOPInstanceUID"), 0)
        return [(rsp, None), (rsp, None)]
    if field == CommandField.C_FIND_RQ:
        return [(c_find_rsp(mid, sop_class, 0xFF00), _match()),
                (c_find_rsp(mid, sop_class, 0xB000), None),
                (c_find_rsp(mid, sop_class, 0x0000), None)]
    if field == CommandField.C_MOVE_RQ:
        return [(c_move_rsp(mid, sop_class, 0x0000, 0, 0, 0, 0), None),
                (c_move_rsp(mid, sop_class, 0x0000, 0, 0, 0, 0), None)]
    return []


def answer_someone_else(message: Message) -> list[tuple[dict, bytes | None]]:
    """A C-ECHO-RSP to a Message ID the requestor never used."""
    return [(c_echo_rsp((message.command.message_id or 0) + 1000), None)]


@pytest.fixture
def scripted_scp() -> Iterator[Callable[[Script], int]]:
    """``start(script)`` -> the port of an SCP that accepts any association and
    answers each request as ``script`` says, until the peer goes."""
    listeners: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def start(script: Script) -> int:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listeners.append(listener)

        def run() -> None:
            sock, _ = listener.accept()
            with sock:
                sock.settimeout(10.0)
                conn = Connection("acceptor")
                conn.transport_connected(0.0)
                assembler = MessageAssembler()
                while True:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    conn.receive_data(data)
                    while (event := conn.next_event()) is not None:
                        if isinstance(event, ev.AssociateRequest):
                            conn.accept(negotiate(event.rq, AcceptorPolicy("SCP", require_called_ae=False)))
                        elif isinstance(event, ev.PDataReceived):
                            for pdv in event.pdvs:
                                message = assembler.feed(pdv.context_id, pdv.is_command, pdv.is_last,
                                                         bytes(pdv.data))
                                if message is None:
                                    continue
                                for command, dataset in script(message):
                                    conn.send_pdata(message.context_id, True, encode_command(command))
                                    if dataset is not None:
                                        conn.send_pdata(message.context_id, False, dataset)
                        elif isinstance(event, ev.ReleaseRequest):
                            conn.confirm_release(0.0)
                    try:
                        for buf in conn.data_to_send():
                            sock.sendall(buf)
                    except OSError:
                        return

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        return listener.getsockname()[1]

    yield start
    for listener in listeners:
        listener.close()
    for thread in threads:
        thread.join(5)


def test_a_second_final_response_is_dropped_and_the_association_goes_on(scripted_scp, caplog):
    port = scripted_scp(answer_twice)
    contexts = [VERIFICATION, (STUDY_FIND, [EXPLICIT]), (STUDY_MOVE, [EXPLICIT]), (CT, [EXPLICIT])]
    caplog.set_level(logging.WARNING, logger="dicomnet")
    with Client("LATE", dimse_timeout=5).associate("127.0.0.1", port, "SCP", contexts=contexts) as assoc:
        assert assoc.echo() == 0
        assert assoc.echo() == 0          # reads the first echo's second response first
        result = assoc.find({"PatientID": "LATE", "StudyInstanceUID": None})
        matches = list(result)
        assert [m.PatientID for m in matches] == ["LATE"]
        assert result.status == 0xB000   # the first final response counts
        # The find's extra Success comes before the move's first response.
        move = assoc.move({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "2.25.77"}, "ELSEWHERE")
        assert move.result() == 0
        ds = Dataset()
        ds.SOPClassUID = CT
        ds.SOPInstanceUID = "2.25.78"
        assert assoc.store(ds) == 0
        statuses = [status for _, status, _ in assoc.store_many([ds, ds, ds])]
        assert statuses == [0, 0, 0]
        assert assoc.echo() == 0
    dropped = [r.getMessage() for r in caplog.records if "already answered" in r.getMessage()]
    # One per request but the last echo, whose extra response nobody read.
    assert len(dropped) == 8, dropped
    assert dropped[2] == "dropping a C_FIND_RSP to message 3, which was already answered (status 0x0000)"


def test_a_response_to_a_message_we_never_sent_still_aborts(scripted_scp):
    port = scripted_scp(answer_someone_else)
    assoc = Client("LATE", dimse_timeout=5).associate("127.0.0.1", port, "SCP", contexts=[VERIFICATION])
    with pytest.raises(AssociationAborted, match="expected the response to message 1"):
        assoc.echo()
    assert assoc.is_closed


def test_our_move_scp_drops_a_second_c_store_rsp_from_the_destination(scripted_scp, caplog):
    """The same on the SCP side: C-MOVE sub-operations whose destination
    answers each C-STORE twice all complete."""
    from dicomnet import Server

    destination = scripted_scp(answer_twice)
    instances = []
    for i in range(3):
        ds = Dataset()
        ds.SOPClassUID = CT
        ds.SOPInstanceUID = f"2.25.79.{i}"
        instances.append(ds)

    class Source:
        def on_move(self, ctx, query, destination_ae):
            return ("127.0.0.1", destination), instances

    caplog.set_level(logging.WARNING, logger="dicomnet")
    with Server("MOVESCP", Source()).start("127.0.0.1", 0) as server:
        with Client("LATE", dimse_timeout=5).associate("127.0.0.1", server.port, "MOVESCP",
                                                       contexts=[(STUDY_MOVE, [EXPLICIT])]) as assoc:
            move = assoc.move({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "2.25.79"}, "SCRIPTED")
            assert move.result() == 0
            assert (move.completed, move.failed, move.warning) == (3, 0, 0)
    dropped = [r.getMessage() for r in caplog.records if "already answered" in r.getMessage()]
    assert len(dropped) >= 2 and all("C_STORE_RSP" in m for m in dropped), dropped


def test_our_get_scp_drops_a_second_c_store_rsp_from_the_requestor(caplog):
    """And on a C-GET: a requestor that answers each C-STORE sub-operation
    twice gets every instance, and the association stays up."""
    from dicomnet import Server

    instances = []
    for i in range(3):
        ds = Dataset()
        ds.SOPClassUID = CT
        ds.SOPInstanceUID = f"2.25.80.{i}"
        instances.append(ds)

    class Source:
        def on_get(self, ctx, query):
            return instances

    caplog.set_level(logging.WARNING, logger="dicomnet")
    with Server("GETSCP", Source()).start("127.0.0.1", 0) as server:
        with Client("LATE", dimse_timeout=5).associate("127.0.0.1", server.port, "GETSCP", for_get=True) as assoc:
            send = assoc._send_message

            def answer_twice(context_id, command, dataset=None):
                send(context_id, command, dataset)
                if command.get("CommandField") == CommandField.C_STORE_RSP:
                    send(context_id, command, dataset)

            assoc._send_message = answer_twice
            result = assoc.get({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "2.25.80"})
            assert [str(ds.SOPInstanceUID) for ds in result] == [f"2.25.80.{i}" for i in range(3)]
            assert result.status == 0 and (result.completed, result.failed) == (3, 0)
            assoc._send_message = send
            assert assoc.echo() == 0
    dropped = [r.getMessage() for r in caplog.records if "already answered" in r.getMessage()]
    assert len(dropped) >= 2 and all("C_STORE_RSP" in m for m in dropped), dropped
