"""dicomnet.transport.sync: the blocking driver over real sockets (no peers needed)."""
from __future__ import annotations

import socket
import sys
import threading
import time

import pytest

from dicomnet.errors import ReadTimeout, WriteTimeout
from dicomnet.pdu import encode_pdu
from dicomnet.pdu import events as ev
from dicomnet.pdu.connection import Connection
from dicomnet.pdu.negotiation import AcceptorPolicy, build_associate_rq, negotiate
from dicomnet.transport import closer
from dicomnet.transport.sync import Interrupted, SyncDriver, open_connection, path_rtt, prepare_socket

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT = "1.2.840.10008.1.2"


def tcp_pair():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = open_connection("127.0.0.1", listener.getsockname()[1], 5)
    server, _ = listener.accept()
    listener.close()
    prepare_socket(server)
    return client, server


def associated_pair(req_max_pdu=16384, acc_max_pdu=16384, **driver_kw):
    """Two drivers over loopback TCP, association established."""
    a, b = tcp_pair()
    req = SyncDriver(a, Connection("requestor", max_pdu=req_max_pdu), **driver_kw)
    acc = SyncDriver(b, Connection("acceptor", max_pdu=acc_max_pdu), **driver_kw)
    acc.conn.transport_connected(time.monotonic())
    req.conn.request_association(
        build_associate_rq("SCU", "SCP", [(VERIFICATION, [IMPLICIT])], max_pdu=req_max_pdu), time.monotonic())
    req.flush()
    request = acc.receive_event(5)
    assert isinstance(request, ev.AssociateRequest)
    acc.conn.accept(negotiate(request.rq, AcceptorPolicy("SCP", max_pdu=acc_max_pdu)))
    acc.flush()
    assert isinstance(req.receive_event(5), ev.AssociateAccept)
    return req, acc


def test_tcp_nodelay_and_nonblocking():
    a, b = tcp_pair()
    with a, b:
        assert a.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert a.gettimeout() == 0.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_INFO's layout is Linux's")
def test_path_rtt_is_the_kernels_measure_of_a_short_path():
    req, acc = associated_pair()
    try:
        for driver in (req, acc):       # both ends: the one that connected and the one that accepted
            rtt = driver.path_rtt()
            assert rtt is not None and 0 < rtt < 0.1      # loopback: microseconds
            assert rtt == path_rtt(driver.sock)
    finally:
        req.close()
        acc.close()
    assert req.path_rtt() is None                       # closed


def test_path_rtt_is_none_where_the_system_does_not_say():
    a, b = socket.socketpair()          # not TCP
    with a, b:
        assert path_rtt(a) is None
    assert path_rtt(None) is None


def test_large_message_crosses_with_partial_sends():
    # 8 MB in PDUs of 4 KB: ~2000 buffers, more than one sendmsg batch, and far
    # more than the socket buffers hold, so sendmsg returns partial counts.
    req, acc = associated_pair(acc_max_pdu=4096, write_timeout=10)
    payload = bytes(range(256)) * (8 * 4096)
    received = bytearray()
    errors = []

    def reader():
        try:
            while True:
                event = acc.receive_event(10)
                assert isinstance(event, ev.PDataReceived)
                for pdv in event.pdvs:
                    received.extend(pdv.data)
                    if pdv.is_last:
                        return
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    req.conn.send_pdata(1, False, payload)
    req.flush()
    thread.join(20)
    assert not errors
    assert received == payload
    req.close(), acc.close()


def test_write_timeout_when_peer_does_not_read():
    req, acc = associated_pair(write_timeout=0.3)
    req.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    req.conn.send_pdata(1, False, b"\0" * (32 << 20))
    t0 = time.monotonic()
    with pytest.raises(WriteTimeout):
        req.flush()
    assert time.monotonic() - t0 < 3
    assert req.closed
    acc.close()


def test_read_timeout_and_peer_close():
    req, acc = associated_pair(read_timeout=0.2)
    t0 = time.monotonic()
    with pytest.raises(ReadTimeout):
        req.receive_event()
    assert 0.15 < time.monotonic() - t0 < 2
    acc.close()  # the peer vanishes: A-P-ABORT, then the connection is closed
    events = [req.receive_event(2), req.receive_event(2)]
    assert isinstance(events[0], ev.Abort) and events[0].local
    assert isinstance(events[1], ev.ConnectionClosed)
    assert req.closed


def test_artim_expiry_closes_an_acceptor_that_never_gets_a_request():
    a, b = tcp_pair()
    acc = SyncDriver(b, Connection("acceptor", artim_timeout=0.2))
    acc.conn.transport_connected(time.monotonic())
    event = acc.receive_event(5)
    assert isinstance(event, ev.ConnectionClosed) and acc.timer_expired and acc.closed
    a.settimeout(2)
    assert a.recv(10) == b""
    a.close()


def test_interrupt_fd_wakes_a_waiting_reader():
    r, w = socket.socketpair()
    a, b = tcp_pair()
    acc = SyncDriver(b, Connection("acceptor"), interrupt_fd=r.fileno())
    acc.conn.transport_connected(time.monotonic())
    threading.Timer(0.1, lambda: w.send(b"x")).start()
    t0 = time.monotonic()
    with pytest.raises(Interrupted):
        acc.receive_event(5)
    assert time.monotonic() - t0 < 2
    for s in (a, r, w):
        s.close()
    acc.close()


def _wait(predicate, limit=5.0):
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_after_our_abort_the_socket_waits_for_the_peer_to_close():
    """Sta13 (PS3.8 Table 9-10, AA-1 then AR-5): close() returns at once, the
    socket stays open -- the peer reads the whole A-ABORT, never a reset --
    until the peer closes its end."""
    req, acc = associated_pair()
    before = closer.pending()
    req.conn.abort(now=time.monotonic())
    req.flush()
    t0 = time.monotonic()
    req.close()
    assert req.closed and req.conn.closed and time.monotonic() - t0 < 0.1
    assert closer.pending() == before + 1
    event = acc.receive_event(5)
    assert isinstance(event, ev.Abort) and not event.transport_lost     # the A-ABORT PDU arrived whole
    acc.close()
    _wait(lambda: closer.pending() == before)


def aborted_requestor(artim_timeout: float) -> socket.socket:
    """A requestor that sent its A-ASSOCIATE-RQ, aborted (Sta13) and closed:
    the peer's end of the connection (the closer holds ours)."""
    a, b = tcp_pair()
    req = SyncDriver(a, Connection("requestor", max_pdu=16384, artim_timeout=artim_timeout))
    req.conn.request_association(build_associate_rq("SCU", "SCP", [(VERIFICATION, [IMPLICIT])], max_pdu=16384),
                                 time.monotonic())
    req.conn.abort(now=time.monotonic())
    req.flush()
    req.close()
    b.settimeout(5)
    return b


def test_after_our_abort_the_closer_acts_on_what_the_peer_sends():
    """Sta13 (PS3.8 Table 9-10): an A-ASSOCIATE-RQ or an unknown PDU is answered
    with an A-ABORT (AA-7), a P-DATA-TF is ignored (AA-6), and the peer's
    A-ABORT closes the connection at once (AA-2), long before ARTIM."""
    b = aborted_requestor(30)
    received = b""
    while len(received) < 10 or received[-10] != 0x07:   # the RQ, then our A-ABORT
        received += b.recv(4096)
    rq = build_associate_rq("X", "Y", [(VERIFICATION, [IMPLICIT])], max_pdu=16384)
    b.sendall(encode_pdu(rq) + bytes((4, 0, 0, 0, 0, 8, 0, 0, 0, 4, 1, 3, 0, 0)) + bytes((9, 0, 0, 0, 0, 1, 0)))
    answers = b""
    while len(answers) < 20:
        answers += b.recv(4096)
    assert answers == bytes.fromhex("07000000000400000202") + bytes.fromhex("07000000000400000201")
    t0 = time.monotonic()
    b.sendall(bytes.fromhex("07000000000400000000"))
    assert b.recv(4096) == b"" and time.monotonic() - t0 < 2
    b.close()


def test_after_our_abort_artim_closes_a_silent_peer():
    """AA-2: the peer keeps the connection open; ARTIM expiry closes it."""
    b = aborted_requestor(0.3)
    t0 = time.monotonic()
    received = b""
    while chunk := b.recv(4096):        # the RQ, the A-ABORT, then end of file at ARTIM
        received += chunk
    assert 0.15 < time.monotonic() - t0 < 3
    assert received[0] == 0x01 and received[-10] == 0x07
    b.close()


def test_await_peer_close_false_closes_at_once():
    req, acc = associated_pair()
    req.conn.abort(now=time.monotonic())
    req.flush()
    req.await_peer_close = False
    before = closer.pending()
    req.close()
    assert closer.pending() == before
    acc.sock.settimeout(5)
    data = b""
    while chunk := acc.sock.recv(4096):
        data += chunk
    assert data[0] == 0x07
    acc.close()


def test_close_is_idempotent_and_tells_the_connection():
    req, acc = associated_pair()
    req.close()
    req.close()
    assert req.conn.closed
    assert isinstance(req.receive_event(1), ev.Abort)
    acc.close()


def test_the_closer_holds_a_bounded_number_of_sockets(monkeypatch):
    """Peers that never close cannot pile up descriptors: past MAX_PENDING the
    socket due first is closed at once."""
    monkeypatch.setattr(closer, "MAX_PENDING", closer.pending() + 2)
    pairs = [socket.socketpair() for _ in range(3)]
    for n, (ours, _) in enumerate(pairs):
        conn = Connection("requestor", max_pdu=16384, artim_timeout=30 + n)
        conn.request_association(build_associate_rq("SCU", "SCP", [(VERIFICATION, [IMPLICIT])], max_pdu=16384),
                                 time.monotonic())
        conn.abort(now=time.monotonic())       # Sta13, ARTIM due in 30 + n s
        closer.adopt(ours, conn.handover())
    assert closer.pending() == closer.MAX_PENDING
    pairs[0][1].settimeout(5)
    assert pairs[0][1].recv(1) == b""          # the first one due was closed
    for _, theirs in pairs:
        theirs.close()                          # the others close when their peers do
    _wait(lambda: closer.pending() == closer.MAX_PENDING - 2)
