"""dicomnet.client / dicomnet.association against our own Server on loopback."""
from __future__ import annotations

import os
import socket
import sys
import threading
import time

import pytest

from dicomnet.client import Client
from dicomnet.errors import (
    ARTIMTimeout,
    AssociationAborted,
    AssociationError,
    AssociationRejected,
    ConnectTimeout,
    DimseStatusError,
    ReadTimeout,
)
from dicomnet.pdu.negotiation import DEFAULT_MAX_PDU
from dicomnet.server import Server

VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


@pytest.fixture
def server():
    with Server("SCP", read_timeout=5, artim_timeout=2).start("127.0.0.1", 0) as srv:
        yield srv


def test_echo_on_loopback(server):
    client = Client("SCU")
    with client.associate("127.0.0.1", server.port, "SCP", contexts=[VERIFICATION]) as assoc:
        assert assoc.is_established
        assert assoc.echo() == 0x0000
        assert assoc.echo() == 0x0000
        n = assoc.negotiated
        assert n.peer_max_pdu == DEFAULT_MAX_PDU  # the server's default
        assert n.peer_implementation_version_name == "DICOMNET_010"
        assert [c.abstract_syntax for c in n.contexts.values()] == [VERIFICATION]
    assert assoc.is_closed and not assoc.is_established


def test_many_echoes_message_ids_wrap():
    with Server("SCP").start() as srv:
        with Client().associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION]) as assoc:
            assoc._message_id = 0xFFFD
            for _ in range(5):
                assert assoc.echo() == 0
            assert assoc._message_id == 3  # 0xFFFE, 0xFFFF, 1, 2, 3


def test_wrong_called_ae_is_rejected_with_reason(server):
    with pytest.raises(AssociationRejected) as info:
        Client("SCU").associate("127.0.0.1", server.port, "NOT-THE-SCP", contexts=[VERIFICATION])
    exc = info.value
    assert (exc.result, exc.source, exc.reason) == (1, 1, 7)
    assert "called-AE-title-not-recognized" in str(exc)


def test_no_verification_context_is_an_association_error(server):
    with Client().associate("127.0.0.1", server.port, "SCP", contexts=[(CT, [EXPLICIT])]) as assoc:
        with pytest.raises(AssociationError, match="Verification|1.2.840.10008.1.1"):
            assoc.echo()


def test_context_spec_forms_and_rejected_transfer_syntax():
    with Server("SCP", contexts={CT: (EXPLICIT,), VERIFICATION: (IMPLICIT,)}).start() as srv:
        with Client().associate("127.0.0.1", srv.port, "SCP",
                                contexts=[VERIFICATION, (CT, [IMPLICIT])]) as assoc:
            assert assoc.negotiated.contexts[1].transfer_syntax == IMPLICIT
            assert 3 in assoc.negotiated.rejected  # CT only with explicit on the server
    for contexts in ([VERIFICATION, (CT, EXPLICIT)], {VERIFICATION: [EXPLICIT], CT: EXPLICIT}):
        check_single_syntax(contexts)


def check_single_syntax(contexts):
    with Server("SCP", contexts=contexts).start() as srv:
        with Client().associate("127.0.0.1", srv.port, "SCP", contexts=[(CT, IMPLICIT)]) as assoc:
            assert assoc.negotiated.rejected == {1: 4}  # not a substring match of the UIDs
    with Server("SCP", contexts=contexts).start() as srv:
        with Client().associate("127.0.0.1", srv.port, "SCP", contexts=[(CT, EXPLICIT), VERIFICATION]) as assoc:
            assert assoc.negotiated.contexts[1].transfer_syntax == EXPLICIT
            assert assoc.negotiated.contexts[3].transfer_syntax == EXPLICIT


def test_failure_status_raises_dimse_status_error():
    class Failing:
        def on_echo(self, ctx):
            raise RuntimeError("disk on fire")

    with Server("SCP", Failing()).start() as srv:
        with Client().associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION]) as assoc:
            with pytest.raises(DimseStatusError) as info:
                assoc.echo()
            assert info.value.status == 0x0110
            assert "disk on fire" in (info.value.comment or "")
            # the association is still usable
            with pytest.raises(DimseStatusError):
                assoc.echo()


def test_warning_status_is_returned_not_raised():
    class Warn:
        def on_echo(self, ctx):
            return 0x0001

    with Server("SCP", Warn()).start() as srv:
        with Client().associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION]) as assoc:
            assert assoc.echo() == 0x0001


def test_exception_in_with_block_aborts():
    seen = []

    class Recorder:
        def on_association(self, info):
            seen.append(info)

    with Server("SCP", Recorder()).start() as srv:
        with pytest.raises(KeyError):
            with Client().associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION]) as assoc:
                raise KeyError("boom")
        assert assoc.is_closed
        deadline = time.monotonic() + 5
        while srv.active_associations and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.active_associations == 0
        assert len(seen) == 1


def test_explicit_abort_then_use_raises(server):
    assoc = Client().associate("127.0.0.1", server.port, "SCP", contexts=[VERIFICATION])
    assoc.abort()
    assert assoc.is_closed
    with pytest.raises(AssociationAborted):
        assoc.echo()
    assoc.abort()  # idempotent
    assoc.release()  # no-op once closed


def _stalling_acceptor(answer_rq: bool):
    """A TCP server that answers the A-ASSOCIATE-RQ with an AC (or not at all), then stalls."""
    from dicomnet.pdu import events as ev
    from dicomnet.pdu.connection import Connection
    from dicomnet.pdu.negotiation import AcceptorPolicy, negotiate

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def run():
        conn_sock, _ = listener.accept()
        with conn_sock:
            conn = Connection("acceptor")
            conn.transport_connected(0.0)
            while not stop.is_set():
                conn_sock.settimeout(0.05)
                try:
                    data = conn_sock.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    return
                conn.receive_data(data)
                event = conn.next_event()
                if isinstance(event, ev.AssociateRequest) and answer_rq:
                    conn.accept(negotiate(event.rq, AcceptorPolicy("SCP")))
                    for buf in conn.data_to_send():
                        conn_sock.sendall(buf)
                # Everything else (the C-ECHO-RQ) is read and ignored.

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener, stop, thread


def test_stalling_server_gives_read_timeout():
    listener, stop, thread = _stalling_acceptor(answer_rq=True)
    try:
        client = Client(dimse_timeout=0.3)
        assoc = client.associate("127.0.0.1", listener.getsockname()[1], "SCP", contexts=[VERIFICATION])
        t0 = time.monotonic()
        with pytest.raises(ReadTimeout):
            assoc.echo()
        assert 0.25 < time.monotonic() - t0 < 2.0
        assert assoc.is_closed  # a DIMSE timeout aborts the association
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _slow_echo_acceptor(pause: float):
    """A TCP server that accepts the association and answers a C-ECHO-RQ with
    a C-ECHO-RSP whose command set comes in three PDUs, ``pause`` s apart."""
    import struct

    from dicomnet.dimse.commands import c_echo_rsp, decode_command, encode_command
    from dicomnet.pdu import events as ev
    from dicomnet.pdu.connection import Connection
    from dicomnet.pdu.negotiation import AcceptorPolicy, negotiate

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def run():
        conn_sock, _ = listener.accept()
        with conn_sock:
            conn = Connection("acceptor")
            conn.transport_connected(0.0)
            conn_sock.settimeout(5.0)
            while True:
                data = conn_sock.recv(65536)
                if not data:
                    return
                conn.receive_data(data)
                event = conn.next_event()
                if isinstance(event, ev.AssociateRequest):
                    conn.accept(negotiate(event.rq, AcceptorPolicy("SCP")))
                    for buf in conn.data_to_send():
                        conn_sock.sendall(buf)
                elif isinstance(event, ev.PDataReceived):
                    pdv = event.pdvs[0]
                    rsp = encode_command(c_echo_rsp(decode_command(pdv.data).message_id, 0))
                    cuts = [0, len(rsp) // 3, 2 * len(rsp) // 3, len(rsp)]
                    for i in range(3):
                        part = rsp[cuts[i]:cuts[i + 1]]
                        control = 3 if i == 2 else 1
                        item = struct.pack(">LBB", len(part) + 2, pdv.context_id, control) + part
                        try:
                            conn_sock.sendall(struct.pack(">BBL", 4, 0, len(item)) + item)
                        except OSError:         # the client gave up (and aborted) first
                            return
                        time.sleep(pause if i < 2 else 0)
                    return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener, thread


@pytest.mark.parametrize("pause, answered", [(0.6, True), (1.6, False)])
def test_dimse_timeout_bounds_each_pdu_of_a_response(pause, answered):
    """A response that keeps coming is waited for past dimse_timeout (a big
    data set over a slow link); one whose next PDU does not come in time is a
    ReadTimeout."""
    listener, thread = _slow_echo_acceptor(pause)
    try:
        assoc = Client(dimse_timeout=1.0).associate("127.0.0.1", listener.getsockname()[1], "SCP",
                                                     contexts=[VERIFICATION])
        t0 = time.monotonic()
        if answered:
            assert assoc.echo() == 0
            assert time.monotonic() - t0 > 1.0           # longer than one dimse_timeout in all
            assoc.abort()
        else:
            with pytest.raises(ReadTimeout):
                assoc.echo()
            assert time.monotonic() - t0 < 2.5        # (the abort waits a moment for the peer to close)
            assert assoc.is_closed
    finally:
        thread.join(5)
        listener.close()


def test_infinite_timeouts_mean_no_limit(tmp_path):
    """math.inf for every timeout (no limit, as dcmtk's storescp waits by
    default) is accepted, and every wait still works: no OverflowError from
    poll() or settimeout()."""
    import math

    from dicomnet.dicom.dataset import Dataset

    folder = tmp_path / "in"

    class Handler:
        def store_destination(self, ctx, command):
            return str(folder / (command["AffectedSOPInstanceUID"] + ".dcm"))

    timeouts = dict(read_timeout=math.inf, write_timeout=math.inf, artim_timeout=math.inf,
                    dimse_timeout=math.inf)
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.PatientName = "INF^TIMEOUTS"
    with Server("SCP", Handler(), **timeouts).start("127.0.0.1", 0) as srv:
        client = Client("SCU", connect_timeout=math.inf, **timeouts)
        with client.associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION, (CT, [EXPLICIT])]) as assoc:
            assert assoc.echo() == 0
            for i in range(3):
                ds.SOPInstanceUID = f"1.2.826.0.1.3680043.9.7.{i}"
                assert assoc.store(ds) == 0
                time.sleep(0.05)           # the server waits for the next PDU in between
    assert sorted(p.name for p in folder.iterdir()) == [f"1.2.826.0.1.3680043.9.7.{i}.dcm" for i in range(3)]


def test_no_associate_answer_gives_artim_timeout():
    listener, stop, thread = _stalling_acceptor(answer_rq=False)
    try:
        t0 = time.monotonic()
        with pytest.raises(ARTIMTimeout):
            Client(artim_timeout=0.3).associate("127.0.0.1", listener.getsockname()[1], "SCP")
        assert time.monotonic() - t0 < 2.0
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_connect_refused():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(ConnectionRefusedError):
        Client().associate("127.0.0.1", port)


@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux dropping SYNs to a full accept queue")
def test_connect_timeout():
    # A listener whose accept queue is full: Linux drops further SYNs, so the
    # next connection is never established.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    held = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            held.append(s)
        time.sleep(0.05)
        t0 = time.monotonic()
        with pytest.raises(ConnectTimeout):
            Client(connect_timeout=0.3).associate("127.0.0.1", port)
        assert time.monotonic() - t0 < 2
    finally:
        for s in held:
            s.close()
        listener.close()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_peer_closing_mid_association_raises_aborted_and_leaks_nothing():
    listener, stop, thread = _stalling_acceptor(answer_rq=True)
    try:
        threads, fds = threading.active_count(), len(os.listdir("/proc/self/fd"))
        assoc = Client(dimse_timeout=5).associate("127.0.0.1", listener.getsockname()[1], "SCP",
                                                  contexts=[VERIFICATION])
        assert len(os.listdir("/proc/self/fd")) == fds + 2  # ours + the fake server's end
        stop.set()  # the fake server returns and closes its socket
        thread.join(5)
        with pytest.raises(AssociationAborted):
            assoc.echo()
        assert assoc.is_closed
        assert threading.active_count() == threads - 1  # the fake server's thread is gone too
        assert len(os.listdir("/proc/self/fd")) == fds
    finally:
        listener.close()


def test_client_validates_arguments():
    with pytest.raises(ValueError):
        Client(read_timeout=0)
    with pytest.raises(Exception):
        Client("THIS-AE-TITLE-IS-WAY-TOO-LONG")
    for bad in (-1, 1, 6, 1 << 32):
        with pytest.raises(ValueError, match="max_pdu"):
            Client(max_pdu=bad)
    with pytest.raises(TypeError, match="read_timeout must be a number of seconds"):
        Client(read_timeout="5")                        # e.g. straight from a config file
    with pytest.raises(ValueError, match="dimse_timeout"):
        Client(dimse_timeout=float("nan"))
    with pytest.raises(ValueError, match="max_pdu"):
        Client().associate("127.0.0.1", 1, max_pdu=3)     # before any connection is tried


def test_acceptor_releasing_is_reported_and_confirmed():
    """The acceptor may ask to release too (PS3.8 7.2): the client confirms and raises."""
    from dicomnet.pdu import events as ev
    from dicomnet.pdu.connection import Connection
    from dicomnet.pdu.negotiation import AcceptorPolicy, negotiate
    from dicomnet.transport.sync import SyncDriver, prepare_socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    outcome = []

    def acceptor():
        sock, _ = listener.accept()
        prepare_socket(sock)
        driver = SyncDriver(sock, Connection("acceptor"))
        driver.conn.transport_connected(time.monotonic())
        request = driver.receive_event(5)
        driver.conn.accept(negotiate(request.rq, AcceptorPolicy("SCP")))
        driver.conn.request_release()
        driver.flush()
        outcome.append(type(driver.receive_event(5)))  # the client's A-RELEASE-RP
        outcome.append(type(driver.receive_event(5)))
        driver.close()

    thread = threading.Thread(target=acceptor)
    thread.start()
    try:
        assoc = Client().associate("127.0.0.1", listener.getsockname()[1], "SCP", contexts=[VERIFICATION])
        with pytest.raises(AssociationError, match="released"):
            assoc.echo()
        thread.join(5)
        assert outcome == [ev.ReleaseConfirm, ev.ConnectionClosed]
        assert assoc.is_closed
        # Same again, but the client calls release() (leaving a with block).
        outcome.clear()
        thread = threading.Thread(target=acceptor)
        thread.start()
        with Client().associate("127.0.0.1", listener.getsockname()[1], "SCP", contexts=[VERIFICATION]) as assoc:
            # The A-RELEASE-RQ is read (Sta8) but not answered yet when the block ends.
            assert isinstance(assoc._driver.receive_event(5), ev.ReleaseRequest)
            assert assoc._conn.state == "Sta8"
        thread.join(5)
        assert outcome == [ev.ReleaseConfirm, ev.ConnectionClosed]
        assert assoc.is_closed
    finally:
        listener.close()
