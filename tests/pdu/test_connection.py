"""dicomnet.pdu.connection: two sans-IO ends wired together in memory, no sockets."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomnet._codec.pdu import fragment
from dicomnet.errors import LocalProtocolError
from dicomnet.pdu import events as ev
from dicomnet.pdu import fsm
from dicomnet.pdu.connection import Connection
from dicomnet.pdu.negotiation import AcceptorPolicy, build_associate_rq, negotiate
from dicomnet.pdu.pdus import AAbort, AAssociateAC, AAssociateRJ, AReleaseRP, AReleaseRQ, encode_pdu

VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
POLICY = AcceptorPolicy("SCP", supported={VERIFICATION: (IMPLICIT,), CT: (EXPLICIT, IMPLICIT)})


def drain(conn: Connection) -> list:
    out = []
    while (event := conn.next_event()) is not None:
        out.append(event)
    return out


def flush(src: Connection, dst: Connection, now: float = 0.0) -> list[bytes]:
    """Move src's queued buffers into dst (through get_buffer/buffer_updated); return the PDUs."""
    data = b"".join(bytes(b) for b in src.data_to_send())
    view = memoryview(data)
    pos = 0
    while pos < len(data) and dst.state not in ("Sta1", "Sta4"):
        target = dst.get_buffer(len(data) - pos)
        n = min(len(target), len(data) - pos)
        target[:n] = view[pos:pos + n]
        dst.buffer_updated(n, now)
        pos += n
    return split_pdus(data)


def split_pdus(data: bytes) -> list[bytes]:
    pdus, pos = [], 0
    while pos + 6 <= len(data):
        end = pos + 6 + int.from_bytes(data[pos + 2:pos + 6], "big")
        pdus.append(data[pos:end])
        pos = end
    return pdus


class Pair:
    """A requestor and an acceptor Connection talking through memory."""

    def __init__(self, req_max_pdu: int = 16384, acc_max_pdu: int = 16384, policy: AcceptorPolicy = POLICY):
        self.req = Connection("requestor", max_pdu=req_max_pdu)
        self.acc = Connection("acceptor", max_pdu=acc_max_pdu)
        self.policy = AcceptorPolicy(**{**policy.__dict__, "max_pdu": acc_max_pdu})
        self.rq = build_associate_rq("SCU", "SCP", [(VERIFICATION, [IMPLICIT]), (CT, [EXPLICIT, IMPLICIT])],
                                     max_pdu=req_max_pdu)

    def to_acc(self, now: float = 0.0) -> list[bytes]:
        return flush(self.req, self.acc, now)

    def to_req(self, now: float = 0.0) -> list[bytes]:
        return flush(self.acc, self.req, now)

    def associate(self) -> None:
        self.acc.transport_connected(0.0)
        self.req.request_association(self.rq, 0.0)
        self.to_acc()
        (request,) = drain(self.acc)
        answer = negotiate(request.rq, self.policy)
        assert isinstance(answer, AAssociateAC)
        self.acc.accept(answer)
        self.to_req()
        (accepted,) = drain(self.req)
        assert isinstance(accepted, ev.AssociateAccept)
        assert self.req.is_established and self.acc.is_established


# ---------------------------------------------------------------- scenarios
def test_successful_association():
    p = Pair()
    p.acc.transport_connected(10.0)
    assert p.acc.state == "Sta2" and p.acc.deadline() == 40.0
    p.req.request_association(p.rq, 10.0)
    assert p.req.state == "Sta5"
    (rq_pdu,) = p.to_acc()
    assert rq_pdu[0] == 0x01
    assert p.acc.state == "Sta3" and p.acc.deadline() is None  # AE-6 stopped ARTIM
    (request,) = drain(p.acc)
    assert isinstance(request, ev.AssociateRequest) and request.rq == p.rq
    nego_acc = p.acc.accept(negotiate(request.rq, p.policy))
    (ac_pdu,) = p.to_req()
    assert ac_pdu[0] == 0x02
    (accepted,) = drain(p.req)
    assert isinstance(accepted, ev.AssociateAccept)
    assert accepted.negotiated.contexts[3].transfer_syntax == EXPLICIT
    assert p.req.negotiated is accepted.negotiated
    assert nego_acc.contexts[3].as_scp and accepted.negotiated.contexts[3].as_scu
    assert p.req.state == p.acc.state == "Sta6"
    assert not p.req.wants_close and not p.acc.wants_close


def test_rejection_reaches_requestor_and_both_sides_close():
    p = Pair()
    p.acc.transport_connected(0.0)
    p.req.request_association(build_associate_rq("SCU", "WRONG", [(VERIFICATION, [IMPLICIT])], max_pdu=16384), 0.0)
    p.to_acc()
    (request,) = drain(p.acc)
    rj = negotiate(request.rq, p.policy)
    assert rj == AAssociateRJ(1, 1, 7)
    p.acc.reject(rj, now=5.0)
    assert p.acc.state == "Sta13" and p.acc.deadline() == 35.0  # AE-8 starts ARTIM
    (rj_pdu,) = p.to_req()
    assert rj_pdu == encode_pdu(rj)
    events = drain(p.req)
    assert events == [ev.AssociateReject(rj), ev.ConnectionClosed()]
    assert "called-AE-title-not-recognized" in events[0].rj.description
    assert p.req.state == "Sta1" and p.req.wants_close  # AE-4 closes
    p.acc.connection_lost()  # the requestor closed: AR-5
    assert p.acc.state == "Sta1" and p.acc.closed and drain(p.acc) == [ev.ConnectionClosed()]


def test_provider_rejects_bad_protocol_version_without_asking_the_user():
    p = Pair()
    p.acc.transport_connected(0.0)
    raw = bytearray(encode_pdu(p.rq))
    raw[6:8] = (2).to_bytes(2, "big")  # protocol version without bit 0
    p.acc.receive_data(bytes(raw), now=1.0)
    assert p.acc.state == "Sta13" and drain(p.acc) == []  # AE-6, not acceptable
    assert p.acc.deadline() == 31.0
    assert p.acc.data_to_send() == [encode_pdu(AAssociateRJ(1, 2, 2))]


@pytest.mark.parametrize("size", [0, 1, 16377, 16378, 16379, 100_000])
def test_data_fragmented_to_peer_max_pdu(size):
    p = Pair(req_max_pdu=16384, acc_max_pdu=4096)
    p.associate()
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    p.req.send_pdata(3, False, payload)
    buffers = p.req.data_to_send()
    # Zero copy: the payload slices are views of our object.
    assert all(b.obj is payload for b in buffers if isinstance(b, memoryview))
    p.req._out = buffers  # put them back for the flush
    pdus = p.to_acc()
    assert all(len(pdu) - 6 <= 4096 for pdu in pdus)
    assert len(pdus) == max(1, -(-size // (4096 - 6)))
    events = drain(p.acc)
    pdvs = [pdv for e in events for pdv in e.pdvs]
    assert all(isinstance(e, ev.PDataReceived) for e in events)
    assert b"".join(bytes(pdv.data) for pdv in pdvs) == payload
    assert [pdv.is_last for pdv in pdvs] == [False] * (len(pdvs) - 1) + [True]
    assert all(pdv.context_id == 3 and not pdv.is_command for pdv in pdvs)
    # And back, with the requestor's larger limit.
    p.acc.send_pdata(1, True, b"\x00" * 20000)
    assert len(p.to_req()) == 2


def test_small_command_goes_out_as_one_pdu_buffer():
    p = Pair(req_max_pdu=16384, acc_max_pdu=64)
    p.associate()
    p.acc.send_pdata(1, True, b"c" * 40)         # fits the requestor's 16384: one bytes buffer
    (buffer,) = p.acc.data_to_send()
    assert type(buffer) is bytes and buffer == b"\x04\x00\x00\x00\x00\x2e\x00\x00\x00\x2a\x01\x03" + b"c" * 40
    p.req.send_pdata(1, True, b"c" * 100)        # more than the acceptor's 64: fragmented as before
    p.req._out = p.req.data_to_send()
    pdus = p.to_acc()
    assert len(pdus) == 2 and all(len(pdu) - 6 <= 64 for pdu in pdus)
    pdvs = [pdv for e in drain(p.acc) for pdv in e.pdvs]
    assert b"".join(bytes(pdv.data) for pdv in pdvs) == b"c" * 100
    assert [pdv.is_last for pdv in pdvs] == [False, True] and all(pdv.is_command for pdv in pdvs)


def test_wants_flush_tracks_queued_output_and_the_end():
    p = Pair()
    assert not p.acc.wants_flush
    p.associate()
    assert not p.req.wants_flush and not p.acc.wants_flush
    p.req.send_pdata(1, True, b"x" * 10)
    assert p.req.wants_flush
    p.to_acc()
    assert not p.req.wants_flush
    p.req.abort()                    # A-ABORT queued (Sta13): output to flush, not yet closed
    assert p.req.wants_flush and not p.req.wants_close
    p.to_acc()
    p.req.connection_lost()          # back in Sta1: the driver must close
    assert p.req.wants_flush and p.req.wants_close


def test_send_pdata_checks_context_and_state():
    p = Pair()
    with pytest.raises(LocalProtocolError):
        p.req.send_pdata(1, True, b"x")
    p.associate()
    with pytest.raises(ValueError, match="not accepted"):
        p.req.send_pdata(5, True, b"x")


def test_pdv_on_unaccepted_context_aborts():
    p = Pair()
    p.associate()
    p.req._out.extend(fragment(7, True, b"abc", 0))
    p.to_acc()
    assert p.acc.state == "Sta13"
    assert drain(p.acc) == [ev.Abort(2, 6, local=True)]


def test_release_requested_by_requestor():
    p = Pair()
    p.associate()
    p.req.request_release()
    assert p.req.state == "Sta7"
    p.to_acc()
    assert drain(p.acc) == [ev.ReleaseRequest()] and p.acc.state == "Sta8"
    p.acc.send_pdata(1, True, b"late")  # AR-7: data may still go out in Sta8
    p.acc.confirm_release(now=3.0)
    assert p.acc.state == "Sta13" and p.acc.deadline() == 33.0
    pdus = p.to_req()
    assert [pdu[0] for pdu in pdus] == [0x04, 0x06]
    events = drain(p.req)
    assert isinstance(events[0], ev.PDataReceived)  # AR-6 in Sta7
    assert events[1:] == [ev.ReleaseConfirm(), ev.ConnectionClosed()]
    assert p.req.wants_close
    p.acc.connection_lost()
    assert p.acc.state == "Sta1" and drain(p.acc) == [ev.ConnectionClosed()]


def test_release_request_and_abort_in_one_read():
    """A peer that sends A-RELEASE-RQ and at once A-ABORT (getscu after a
    failed C-GET): both are read together, the abort ends the association, and
    answering the ReleaseRequest taken first is a no-op, not an error."""
    p = Pair()
    p.associate()
    p.acc.receive_data(encode_pdu(AReleaseRQ()) + encode_pdu(AAbort(0, 0)), now=1.0)
    assert p.acc.next_event() == ev.ReleaseRequest()
    assert p.acc.closed
    p.acc.confirm_release(now=1.0)
    assert not p.acc.data_to_send()
    assert isinstance(p.acc.next_event(), ev.Abort)


def test_release_requested_by_acceptor():
    p = Pair()
    p.associate()
    p.acc.request_release()
    p.to_req()
    assert drain(p.req) == [ev.ReleaseRequest()]
    p.req.confirm_release(now=1.0)
    p.to_acc()
    assert drain(p.acc) == [ev.ReleaseConfirm(), ev.ConnectionClosed()]
    assert p.acc.wants_close and p.req.state == "Sta13"
    assert p.req.timeout(31.0) and p.req.state == "Sta1"  # ARTIM: AA-2 closes


def test_release_collision():
    p = Pair()
    p.associate()
    p.req.request_release()
    p.acc.request_release()
    p.to_acc()
    p.to_req()
    assert p.req.state == "Sta9" and p.acc.state == "Sta10"  # AR-8 both sides
    assert drain(p.req) == [ev.ReleaseRequest(collision=True)]
    assert drain(p.acc) == [ev.ReleaseRequest(collision=True)]
    with pytest.raises(LocalProtocolError):
        p.acc.confirm_release()  # Sta10 must wait for the RP first
    p.req.confirm_release()  # AR-9
    assert p.req.state == "Sta11"
    p.to_acc()
    assert p.acc.state == "Sta12" and drain(p.acc) == [ev.ReleaseConfirm()]  # AR-10
    p.acc.confirm_release(now=2.0)  # AR-4
    assert p.acc.state == "Sta13"
    p.to_req()
    assert drain(p.req) == [ev.ReleaseConfirm(), ev.ConnectionClosed()]  # AR-3
    assert p.req.wants_close
    p.acc.connection_lost()
    assert p.acc.state == "Sta1"


@pytest.mark.parametrize("side", ["req", "acc"])
def test_abort_both_ways(side):
    p = Pair()
    p.associate()
    me, peer = (p.req, p.acc) if side == "req" else (p.acc, p.req)
    me.abort(5, now=1.0)  # a local reason is not put on the wire (PS3.8 9.3.8)
    assert me.state == "Sta13" and me.deadline() == 31.0  # AA-1
    assert drain(me) == []
    flush(me, peer)
    assert drain(peer) == [ev.Abort(0, 0), ev.ConnectionClosed()]  # AA-3
    assert peer.wants_close
    me.connection_lost()
    assert me.state == "Sta1"
    with pytest.raises(LocalProtocolError):
        me.abort()


def test_artim_expiry_in_sta2():
    acc = Connection("acceptor", artim_timeout=5.0)
    acc.transport_connected(100.0)
    assert acc.deadline() == 105.0
    assert not acc.timeout(104.9) and acc.state == "Sta2"
    assert acc.timeout(105.0)
    assert acc.state == "Sta1" and acc.wants_close and acc.deadline() is None
    assert acc.data_to_send() == []  # AA-2: close only
    assert drain(acc) == [ev.ConnectionClosed()]


def test_artim_expiry_in_sta13():
    p = Pair()
    p.associate()
    p.acc.abort(now=50.0)
    assert p.acc.deadline() == 80.0
    assert not p.acc.timeout(60.0)
    assert p.acc.timeout(80.5) and p.acc.state == "Sta1" and p.acc.wants_close


def test_requestor_gives_up_without_an_answer():
    req = Connection("requestor", artim_timeout=10.0)
    req.request_association(build_associate_rq("A", "B", [(VERIFICATION, [IMPLICIT])]), 0.0)
    req.data_to_send()
    assert req.deadline() == 10.0
    assert req.timeout(10.0)
    assert req.state == "Sta13" and req.data_to_send() == [encode_pdu(AAbort(0, 0))]
    assert drain(req) == [ev.Abort(0, 0, local=True)]


def test_garbage_bytes_abort():
    p = Pair()
    p.associate()
    p.acc.receive_data(b"\x42\x00\x00\x00\x00\x04abcd", now=7.0)
    assert p.acc.state == "Sta13" and p.acc.deadline() == 37.0
    assert p.acc.data_to_send() == [encode_pdu(AAbort(2, 1))]  # unrecognized-PDU
    (abort, ) = drain(p.acc)
    assert abort == ev.Abort(2, 1, local=True) and "unrecognized-PDU" in abort.description
    # Framed by its length, the unknown PDU left the stream readable; in Sta13 an
    # unframeable one (a length over the limit) is Evt19 once more: AA-7.
    p.acc.receive_data(b"more garbage")
    assert p.acc.data_to_send() == [encode_pdu(AAbort(2, 1))] and p.acc.state == "Sta13"
    p.acc.receive_data(b"\x42\x00\x00\x00\x00\x04abcd")  # the stream is no longer read
    assert p.acc.data_to_send() == [] and p.acc.state == "Sta13"


def test_an_unknown_pdu_type_leaves_the_stream_framed():
    """PS3.8 Table 9-10: an unrecognized PDU is Evt19 (AA-8, then AA-7 in
    Sta13), and the PDUs after it are still acted on: the peer's A-ABORT (AA-2)."""
    p = Pair()
    p.associate()
    p.acc.receive_data(b"\x08\x00\x00\x00\x00\x02xy" + b"\x08\x00\x00\x00\x00\x00", now=7.0)
    assert p.acc.data_to_send() == [encode_pdu(AAbort(2, 1))] * 2 and p.acc.state == "Sta13"
    p.acc.receive_data(encode_pdu(AAbort(0, 0)))
    assert p.acc.closed and p.acc.data_to_send() == []


def test_garbage_before_association_in_sta2_is_aa1():
    acc = Connection("acceptor")
    acc.transport_connected(0.0)
    acc.receive_data(b"GET / HTTP/1.1\r\n\r\n")
    assert acc.state == "Sta13"
    assert acc.data_to_send() == [encode_pdu(AAbort(0, 0))]  # AA-1: service-user source


def test_oversize_pdu_aborts():
    p = Pair(acc_max_pdu=1024)
    p.associate()
    header = b"\x04\x00" + (1025).to_bytes(4, "big")
    p.acc.receive_data(header)
    assert p.acc.state == "Sta13"
    assert p.acc.data_to_send() == [encode_pdu(AAbort(2, 6))]  # invalid-PDU-parameter value
    assert drain(p.acc) == [ev.Abort(2, 6, local=True)]


def test_malformed_pdu_body_aborts():
    p = Pair()
    p.associate()
    p.acc.receive_data(b"\x05\x00\x00\x00\x00\x02\x00\x00")  # A-RELEASE-RQ must have 4 bytes
    assert p.acc.state == "Sta13"
    assert drain(p.acc) == [ev.Abort(2, 6, local=True)]


def test_transport_lost_mid_association():
    p = Pair()
    p.associate()
    p.req.connection_lost()
    assert drain(p.req) == [ev.Abort(2, 0, local=True, transport_lost=True), ev.ConnectionClosed()]  # AA-4
    assert p.req.state == "Sta1"


def test_offer_must_fit_max_pdu():
    req = Connection("requestor", max_pdu=1000)
    with pytest.raises(ValueError, match="max_pdu"):
        req.request_association(build_associate_rq("A", "B", [(VERIFICATION, [IMPLICIT])], max_pdu=0), 0.0)
    assert req.state == "Sta1"


# ------------------------------------------------- every (event, state) pair
def _build(state: str, role: str) -> Pair:
    """A Pair whose ``role`` end is in ``state``, reached through real exchanges,
    with nothing left queued on that end."""
    p = _reach(state, role)
    me = p.req if role == "req" else p.acc
    drain(me)
    me.data_to_send()
    return p


def _reach(state: str, role: str) -> Pair:
    p = Pair()
    me = p.req if role == "req" else p.acc
    if state == "Sta1":
        return p
    if state == "Sta4":
        p.req.request_association(p.rq, 0.0, connected=False)
        return p
    p.acc.transport_connected(0.0)
    if state == "Sta2":
        return p
    p.req.request_association(p.rq, 0.0)
    if state == "Sta5":
        return p
    p.to_acc()
    drain(p.acc)
    if state == "Sta3":
        return p
    if state == "Sta13":
        me.abort(now=0.0)
        return p
    p.acc.accept(negotiate(p.rq, p.policy))
    p.to_req()
    drain(p.req)
    if state == "Sta6":
        return p
    other = p.acc if me is p.req else p.req
    if state == "Sta7":
        me.request_release()
    elif state == "Sta8":
        other.request_release()
        flush(other, me)
    else:  # collision states
        me.request_release()
        other.request_release()
        flush(other, me)
        if state in ("Sta11", "Sta12"):
            if state == "Sta11":
                me.confirm_release()
            else:
                flush(me, other)  # our RQ reaches the requestor (Sta9)
                drain(other)
                other.confirm_release()  # requestor AR-9: RP to us
                flush(other, me)
    return p


# Which end can be in which state (a requestor never waits for an RQ, ...).
STATE_ROLES = {
    "Sta1": "req", "Sta2": "acc", "Sta3": "acc", "Sta4": "req", "Sta5": "req", "Sta6": "req",
    "Sta7": "acc", "Sta8": "req", "Sta9": "req", "Sta10": "acc", "Sta11": "req", "Sta12": "acc",
    "Sta13": "acc",
}

_PDU_BYTES = {
    "Evt4": encode_pdu(AAssociateRJ(1, 1, 1)),
    "Evt12": encode_pdu(AReleaseRQ()),
    "Evt13": encode_pdu(AReleaseRP()),
    "Evt16": encode_pdu(AAbort(2, 0)),
    "Evt19": b"\x09\x00\x00\x00\x00\x00",
}
_SEND_TYPES = {"A-ASSOCIATE-RQ": 1, "A-ASSOCIATE-AC": 2, "A-ASSOCIATE-RJ": 3, "P-DATA-TF": 4,
               "A-RELEASE-RQ": 5, "A-RELEASE-RP": 6, "A-ABORT": 7}


def _apply(p: Pair, me: Connection, event: str, inject: bool = False) -> None:
    """Make ``event`` happen to ``me`` through the public API (or the wire)."""
    if inject:
        me._fire(event)
    elif event in fsm.PDU_EVENTS:
        if event == "Evt3":
            data = encode_pdu(negotiate(p.rq, p.policy))
        elif event == "Evt6":
            data = encode_pdu(p.rq)
        elif event == "Evt10":
            data = b"".join(bytes(b) for b in fragment(1, True, b"abc", 0))
        else:
            data = _PDU_BYTES[event]
        me.receive_data(data, now=0.0)
    elif event == "Evt1":
        me.request_association(p.rq, 0.0, connected=False)
    elif event in ("Evt2", "Evt5"):
        me.transport_connected(0.0)
    elif event == "Evt7":
        me.accept(negotiate(p.rq, p.policy))
    elif event == "Evt8":
        me.reject(AAssociateRJ(1, 1, 1))
    elif event == "Evt9":
        me.send_pdata(1, True, b"abc")
    elif event == "Evt11":
        me.request_release()
    elif event == "Evt14":
        me.confirm_release()
    elif event == "Evt15":
        me.abort()
    elif event == "Evt17":
        me.connection_lost()
    elif event == "Evt18":
        me.timeout(1e9)


@pytest.mark.parametrize("state", list(fsm.STATES))
@pytest.mark.parametrize("event", list(fsm.EVENTS))
def test_every_pair_follows_the_table(event, state):
    role = STATE_ROLES[state]
    inject = False
    both = ("Sta1", "Sta6", "Sta7", "Sta8", "Sta13")  # states either end can be in
    if (event == "Evt2" and role == "acc") or (event == "Evt5" and role == "req") or event == "Evt1":
        if state in both:
            role = "req" if event in ("Evt1", "Evt2") else "acc"
        elif event != "Evt1":
            # transport_connected() means Evt5 to an acceptor and Evt2 to a
            # requestor, so e.g. Evt2 in Sta2 has no public trigger: inject it.
            inject = True
    if event == "Evt18" and state == "Sta5":
        inject = True  # timeout() in Sta5 is the local answer timer, not ARTIM
    p = _build(state, role)
    me = p.req if role == "req" else p.acc
    assert me.state == state
    cell = fsm.TRANSITIONS.get((event, state))
    if cell is None:
        # Evt14 in Sta13: the answer to an A-RELEASE-RQ that a PDU read with it
        # made us abort (AA-8) is dropped, as once the association has ended.
        if fsm.NOT_APPLICABLE[event] == "refuse" and (event, state) != ("Evt14", "Sta13"):
            with pytest.raises(LocalProtocolError):
                _apply(p, me, event, inject)
        else:
            _apply(p, me, event, inject)
        assert me.state == state and me.data_to_send() == [] and drain(me) == []
        return
    action_name, _ = cell
    action = fsm.ACTIONS[action_name]
    _apply(p, me, event, inject)
    condition = role == "req" if action_name == "AR-8" else True
    assert me.state == fsm.resolve_next_state(action_name, condition=condition)
    sent = split_pdus(b"".join(bytes(b) for b in me.data_to_send()))
    if action.send:
        assert sent and sent[0][0] == _SEND_TYPES[action.send], (action_name, sent)
        if action_name in ("AA-7", "AA-8"):
            assert sent[0][8] == 2  # service-provider source
            assert sent[0][9] == (1 if event == "Evt19" else 2)  # unrecognized / unexpected PDU
        if action_name == "AA-1":
            assert sent[0][8:10] == b"\x00\x00"
    elif event != "Evt1":  # AE-1 leaves the RQ for Evt2
        assert sent == []
    events = drain(me)
    kinds = {type(e) for e in events}
    if me.state == "Sta1":
        assert events[-1] == ev.ConnectionClosed() and me.wants_close
    expected_kind = {
        "AE-3": ev.AssociateAccept, "AE-4": ev.AssociateReject, "AE-6": ev.AssociateRequest,
        "DT-2": ev.PDataReceived, "AR-6": ev.PDataReceived, "AR-2": ev.ReleaseRequest,
        "AR-8": ev.ReleaseRequest, "AR-3": ev.ReleaseConfirm, "AR-10": ev.ReleaseConfirm,
        "AA-3": ev.Abort, "AA-4": ev.Abort, "AA-8": ev.Abort,
    }.get(action_name)
    if expected_kind is not None:
        assert expected_kind in kinds
    else:
        assert kinds <= {ev.ConnectionClosed}
    if action.artim == "start":
        assert me.deadline() is not None
    if action.artim == "stop" and action_name != "AE-6":
        assert me.deadline() is None


def test_inconsistent_ac_aborts_the_requestor():
    p = Pair()
    p.acc.transport_connected(0.0)
    p.req.request_association(p.rq, 0.0)
    p.req.data_to_send()
    from dicomnet.pdu.items import PresentationContextAC, UserInformation

    bad = AAssociateAC("SCP", "SCU", (PresentationContextAC(1, 0, "1.2.840.10008.1.2.4.50"),),
                       UserInformation(max_length=0, implementation_class_uid="1.2.3"))
    p.req.receive_data(encode_pdu(bad))
    assert p.req.state == "Sta13"
    assert drain(p.req) == [ev.Abort(2, 6, local=True)]
    assert p.req.data_to_send() == [encode_pdu(AAbort(2, 6))]


def test_injected_logger_sees_transitions(caplog):
    import logging

    log = logging.getLogger("test.dicomnet.connection")
    acc = Connection("acceptor", logger=log)
    with caplog.at_level(logging.DEBUG, logger="test.dicomnet.connection"):
        acc.transport_connected(0.0)
    assert any("Evt5 in Sta1 -> AE-5 -> Sta2" in r.getMessage() for r in caplog.records)



@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_random_bytes_never_crash(data, established):
    p = Pair()
    if established:
        p.associate()
    else:
        p.acc.transport_connected(0.0)
    p.acc.receive_data(data)
    assert p.acc.state in fsm.STATES
    for buf in p.acc.data_to_send():
        assert bytes(buf)[0] in (1, 2, 3, 4, 5, 6, 7)
    drain(p.acc)


# ------------------------------------------- P-DATA-TF in Sta6 (the hot path)
def _pdata(*pdvs: tuple[int, int, bytes]) -> bytes:
    body = b"".join((len(data) + 2).to_bytes(4, "big") + bytes([ctx, control]) + data
                    for ctx, control, data in pdvs)
    return b"\x04\x00" + len(body).to_bytes(4, "big") + body


def test_pdata_in_sta6_gives_the_pdvs_as_decode_pdu_reads_them():
    from dicomnet.pdu.pdus import PDV, decode_pdu

    p = Pair()
    p.associate()
    raw = _pdata((1, 0x03, b"cmd!"), (3, 0x00, b"part"), (3, 0x02, b""))
    p.acc.receive_data(raw)
    (event,) = drain(p.acc)
    assert event == ev.PDataReceived(decode_pdu(4, raw[6:]).pdvs)
    assert [type(pdv) for pdv in event.pdvs] == [PDV] * 3
    assert [(d.context_id, d.is_command, d.is_last, bytes(d.data)) for d in event.pdvs] == [
        (1, True, True, b"cmd!"), (3, False, False, b"part"), (3, False, True, b"")]
    assert p.acc.state == "Sta6"


@pytest.mark.parametrize("raw", [
    _pdata((1, 0x03, b"ok"), (9, 0x02, b"x")),          # context 9 was never proposed
    b"\x04\x00\x00\x00\x00\x00",                         # no PDV at all
    b"\x04\x00\x00\x00\x00\x05" + b"\x00\x00\x00\x09\x01",   # PDV longer than the PDU
], ids=["unaccepted-context", "empty", "pdv-overrun"])
def test_bad_pdata_in_sta6_aborts_with_invalid_parameter(raw):
    p = Pair()
    p.associate()
    p.acc.receive_data(raw)
    events = drain(p.acc)
    assert isinstance(events[0], ev.Abort) and events[0].local
    assert events[0].reason == AAbort.REASON_INVALID_PDU_PARAMETER_VALUE
    (sent,) = p.acc.data_to_send()
    assert sent == encode_pdu(AAbort(AAbort.SOURCE_SERVICE_PROVIDER, AAbort.REASON_INVALID_PDU_PARAMETER_VALUE))
