"""Sloppy vendor requestors against our Server, byte by byte: quirks of the
A-ASSOCIATE-RQ (User Information, padded UIDs, reserved fields, the protocol
version), AE titles, presentation contexts, command sets and data sets sent
in unusual ways, and associations ended badly. After each, the server must
still serve a normal Client's C-ECHO.

How the peers are played, and the quirks tested elsewhere: _vendor_quirks.py.
The client side: test_vendor_quirks_client.py.
"""
from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from dicomnet import Client, Server, read_file
from dicomnet.pdu.negotiation import IMPLEMENTATION_CLASS_UID

from tests._vendor_quirks import (A_ABORT, A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ASSOCIATE_RQ, A_RELEASE_RP, A_RELEASE_RQ,
                                  APP_CONTEXT, CT, EXPLICIT, IMPLICIT, MR, OUR_MAX_PDU, P_DATA_TF, PEER_IMPLEMENTATION,
                                  UID_ROOT, UNKNOWN_SYNTAX, VERIFICATION, Associate, Peer, associate_pdu, associate_rq,
                                  c_echo_rq, c_store_rq, data_set, item, p_data, parse_associate, parse_command,
                                  parse_pdvs, pdu, pdv, presentation_context_rq, us_field, user_information)


# =========================================================== server side
class Recorder:
    """Handler that keeps what it was given."""

    def __init__(self) -> None:
        self.associations: list = []
        self.echoes: list[str] = []
        self.stored: list[tuple[str, str]] = []   # (SOP Instance UID, Patient's Name)
        self._lock = threading.Lock()

    def on_association(self, info) -> None:
        with self._lock:
            self.associations.append(info)

    def on_echo(self, ctx) -> int:
        with self._lock:
            self.echoes.append(ctx.calling_ae)
        return 0

    def on_store(self, ctx, dataset) -> int:
        with self._lock:
            self.stored.append((ctx.sop_instance_uid, str(dataset.PatientName)))
        return 0


class StreamingRecorder(Recorder):
    """Data sets streamed to files (``store_destination``, no ``on_store``):
    the C-STORE lane of dicomnet._codec.lane, where a Server has one."""

    on_store = None  # type: ignore[assignment]

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = folder
        self._count = 0

    def store_destination(self, ctx, command) -> str:
        with self._lock:
            self._count += 1
            return os.path.join(self.folder, f"{self._count:04d}.dcm")

    def files(self) -> list[tuple[str, str]]:
        out = []
        for name in sorted(os.listdir(self.folder)):
            ds = read_file(os.path.join(self.folder, name))
            out.append((str(ds.SOPInstanceUID), str(ds.PatientName)))
        return out


SERVER_CONTEXTS = [VERIFICATION, (CT, [EXPLICIT, IMPLICIT]), (MR, [EXPLICIT])]


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    """``serve(handler=None, **kw)``: a Server "SCP" on a free port, always shut down."""
    servers: list[Server] = []

    def start(handler: object | None = None, **kw) -> Server:
        kw.setdefault("read_timeout", 5.0)
        kw.setdefault("write_timeout", 5.0)
        kw.setdefault("artim_timeout", 2.0)
        kw.setdefault("dimse_timeout", 5.0)
        kw.setdefault("max_pdu", OUR_MAX_PDU)
        kw.setdefault("contexts", SERVER_CONTEXTS)
        srv = Server("SCP", Recorder() if handler is None else handler, **kw).start("127.0.0.1", 0)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.shutdown(5.0)


@pytest.fixture(params=["in-memory", "streamed"])
def store_handler(request, tmp_path) -> Recorder:
    """A handler that keeps data sets in memory, or one that streams them to files."""
    if request.param == "in-memory":
        return Recorder()
    folder = tmp_path / "in"
    folder.mkdir()
    return StreamingRecorder(str(folder))


def stored(handler: Recorder) -> list[tuple[str, str]]:
    return handler.files() if isinstance(handler, StreamingRecorder) else handler.stored


def wait_for(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def assert_still_serving(srv: Server) -> None:
    """The quirky association is over and a normal Client's C-ECHO succeeds."""
    assert wait_for(lambda: srv.active_associations == 0), "the quirky association did not end"
    client = Client("PROBE", connect_timeout=3, read_timeout=3, write_timeout=3, artim_timeout=3, dimse_timeout=3)
    with client.associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION]) as assoc:
        assert assoc.echo() == 0x0000


def associate(port: int, rq: bytes) -> tuple[Peer, Associate]:
    """Connect, send ``rq`` and read the A-ASSOCIATE-AC (asserted)."""
    peer = Peer.connect(port)
    try:
        peer.send(rq)
        return peer, parse_associate(peer.expect(A_ASSOCIATE_AC))
    except BaseException:
        peer.close()
        raise


def refused(port: int, rq: bytes) -> tuple[int, bytes]:
    """Connect, send ``rq``: the PDU that comes back. Then we close, as a
    requestor does after an A-ASSOCIATE-RJ (PS3.8 AE-4); the acceptor waits
    for that (Sta13) rather than close first."""
    with Peer.connect(port) as peer:
        peer.send(rq)
        return peer.read_pdu()


def echo(peer: Peer, context_id: int = 1, message_id: int = 1) -> int:
    """A C-ECHO on a raw association: the response's status (its fields asserted)."""
    peer.send(p_data(pdv(context_id, 0x03, c_echo_rq(message_id))))
    answer = peer.read_message()
    assert not isinstance(answer, int), f"PDU type {answer:#04x} instead of a C-ECHO-RSP"
    cid, command, dataset, _ = answer
    assert (cid, dataset) == (context_id, None)
    assert us_field(command, 0x00000100) == 0x8030
    assert us_field(command, 0x00000120) == message_id
    return us_field(command, 0x00000900)


def release(peer: Peer) -> None:
    """A-RELEASE-RQ; the server answers A-RELEASE-RP and we close."""
    peer.send(pdu(A_RELEASE_RQ, bytes(4)))
    assert peer.expect(A_RELEASE_RP) == bytes(4)
    peer.close()


def our_user_information(ac: Associate) -> None:
    """The AC's User Information is ours whatever the RQ held (PS3.7 D.3.3.2, PS3.8 D.1)."""
    assert ac.max_length == OUR_MAX_PDU
    assert ac.user[0x52] == [IMPLEMENTATION_CLASS_UID.encode()]


# ------------------------------------------------------ A-ASSOCIATE-RQ quirks
@pytest.mark.parametrize("user_info, peer_max, peer_implementation", [
    # PS3.7 D.3.3.2 asks for the Implementation Class UID, but it only
    # identifies the peer: nothing depends on it (dcmtk, pynetdicom accept).
    (user_information(implementation=None), 16384, None),
    # PS3.8 D.1: Maximum Length 0 means "no maximum length specified".
    (user_information(max_length=0), 0, PEER_IMPLEMENTATION),
    # A User Information item with no sub-item at all: no limit stated, no
    # identification (dcmtk, pynetdicom accept).
    (item(0x50, b""), 0, None),
], ids=["no-implementation-class-uid", "maximum-length-0", "empty-user-information"])
def test_rq_with_minimal_user_information_is_accepted(serve, user_info, peer_max, peer_implementation):
    handler = Recorder()
    srv = serve(handler)
    peer, ac = associate(srv.port, associate_rq(user_info=user_info))
    assert ac.results == [(1, 0, IMPLICIT.encode())]
    our_user_information(ac)
    assert echo(peer) == 0x0000
    release(peer)
    [info] = handler.associations
    assert info.negotiated.peer_max_pdu == peer_max
    assert info.negotiated.peer_implementation_class_uid == peer_implementation
    assert_still_serving(srv)


def test_rq_without_user_information_item_is_accepted_like_an_empty_one(serve):
    srv = serve()
    rq = associate_pdu(A_ASSOCIATE_RQ, [presentation_context_rq(1, VERIFICATION, [IMPLICIT])], None)
    peer, ac = associate(srv.port, rq)
    assert ac.results == [(1, 0, IMPLICIT.encode())]
    our_user_information(ac)
    assert echo(peer) == 0x0000
    release(peer)
    assert_still_serving(srv)


def test_nul_padded_uids_are_accepted_and_answered_unpadded(serve):
    """Vendor equipment often pads UIDs to even length with a NUL, as in a data
    set (PS3.5 9.1), where in the Upper Layer the item length alone delimits
    the UID (PS3.8 Annex F). The meaning is plain: accepted (dcmtk and
    pynetdicom too), and our AC carries the bare UIDs."""
    handler = Recorder()
    srv = serve(handler)
    contexts = [presentation_context_rq(1, VERIFICATION, [IMPLICIT], pad=b"\0"),
                presentation_context_rq(3, CT, [EXPLICIT], pad=b"\0")]
    user_info = user_information(implementation=b"1.2.826.0.1.3680043.9.7777.4\0")
    peer, ac = associate(srv.port, associate_rq(contexts, user_info, app_context=APP_CONTEXT.encode() + b"\0"))
    assert ac.app_context == APP_CONTEXT.encode()
    assert ac.results == [(1, 0, IMPLICIT.encode()), (3, 0, EXPLICIT.encode())]
    assert echo(peer) == 0x0000
    release(peer)
    [info] = handler.associations
    assert [(c.abstract_syntax, c.transfer_syntax) for c in info.negotiated.contexts.values()] == [
        (VERIFICATION, IMPLICIT), (CT, EXPLICIT)]
    assert info.negotiated.peer_implementation_class_uid == "1.2.826.0.1.3680043.9.7777.4"
    assert_still_serving(srv)


def test_reserved_fields_are_not_tested(serve):
    """PS3.8 9.3.2-9.3.7: every reserved field "shall be sent with a value 00H
    but not tested to this value when received" -- here all of them are set,
    in the PDU headers, the fixed fields, every item and sub-item header, the
    presentation context, the A-RELEASE-RQ body; and bits 2-7 of the Message
    Control Header, which "are always set to 0 by the sender and never
    checked by the receiver" (PS3.8 E.2)."""
    srv = serve()
    contexts = [presentation_context_rq(1, VERIFICATION, [IMPLICIT], reserved=b"\xff\xee\xdd", sub_reserved=0xAA)]
    rq = associate_rq(contexts, user_information(reserved=0xBB), reserved=b"\xff\xff", reserved32=b"\xa5" * 32,
                      pdu_reserved=0xCC, item_reserved=0xDD)
    peer, ac = associate(srv.port, rq)
    assert ac.results == [(1, 0, IMPLICIT.encode())]
    peer.send(p_data(pdv(1, 0xFF, c_echo_rq(7)), reserved=0xEE))     # 0xFF: command, last, junk bits
    answer = peer.read_message()
    assert not isinstance(answer, int)
    assert us_field(answer[1], 0x00000900) == 0x0000
    assert us_field(answer[1], 0x00000120) == 7
    peer.send(pdu(A_RELEASE_RQ, b"\xff" * 4, reserved=0x77))
    assert peer.expect(A_RELEASE_RP) == bytes(4)                    # what we send is still 00H
    peer.close()
    assert_still_serving(srv)


@pytest.mark.parametrize("version, accepted", [(0x0003, True), (0xFFFF, True), (0x8001, True), (0x0000, False)],
                         ids=["0003H", "FFFFH", "8001H", "0000H"])
def test_only_bit_0_of_the_protocol_version_is_tested(serve, version, accepted):
    """PS3.8 9.3.2: a receiver implementing only version 1 "shall only test that
    bit 0 is set" (dcmtk tests bit 0 too; pynetdicom refuses 0xFFFF). Without
    it: rejected-permanent, service-provider (ACSE), protocol-version-not-supported."""
    srv = serve()
    rq = associate_rq(version=version)
    if accepted:
        peer, ac = associate(srv.port, rq)
        assert ac.version == 0x0001                    # we answer with the version we speak
        assert echo(peer) == 0x0000
        release(peer)
    else:
        assert refused(srv.port, rq) == (A_ASSOCIATE_RJ, bytes([0, 1, 2, 2]))
    assert_still_serving(srv)


# ------------------------------------------------------------------ AE titles
@pytest.mark.parametrize("called, calling, require, expected_calling", [
    # PS3.5 6.2 (AE): leading and trailing spaces are not significant.
    (b"  SCP", b"  QUIRKY", True, "QUIRKY"),
    (b"     SCP        ", b"QUIRKY          ", True, "QUIRKY"),
    # NUL instead of space padding (C strings): the meaning is plain.
    (b"SCP" + bytes(13), b"QUIRKY" + bytes(10), True, "QUIRKY"),
    # A lower-case calling AE is kept as sent; the calling AE is not checked by default.
    (b"SCP", b"modality1", True, "modality1"),
    # Called AE not checked: any called AE title is taken.
    (b"scp", b"QUIRKY", False, "QUIRKY"),
    (b"SOMEBODY-ELSE", b"QUIRKY", False, "QUIRKY"),
], ids=["leading-spaces", "centred", "nul-padded", "lower-case-calling", "lower-case-called-unchecked",
        "other-called-unchecked"])
def test_ae_title_quirks_that_are_accepted(serve, called, calling, require, expected_calling):
    handler = Recorder()
    srv = serve(handler, require_called_ae=require)
    peer, ac = associate(srv.port, associate_rq(called=called, calling=calling))
    assert ac.results == [(1, 0, IMPLICIT.encode())]
    # PS3.8 Table 9-17: the AC echoes the RQ's AE titles (insignificant padding aside).
    assert ac.called.strip(b" \0") == called.strip(b" \0")
    assert ac.calling.strip(b" \0") == calling.strip(b" \0")
    assert echo(peer) == 0x0000
    release(peer)
    assert handler.echoes == [expected_calling]
    assert_still_serving(srv)


@pytest.mark.parametrize("called", [b"scp", b"SCP2", b" " * 16], ids=["lower-case", "other", "all-spaces"])
def test_called_ae_title_not_ours_is_rejected_with_reason_7(serve, called):
    """require_called_ae=True: the called AE title must be ours (PS3.8 7.1.1.4
    leaves the check to the acceptor). AE titles are compared as sent -- PS3.5
    defines no case folding, and pynetdicom's require_called_aet compares them
    exactly too -- so "scp" is not "SCP"; 16 spaces is no AE title at all (PS3.5 6.2: "a value consisting
    solely of spaces shall not be used"). A-ASSOCIATE-RJ rejected-permanent,
    service-user, called-AE-title-not-recognized (PS3.8 Table 9-21)."""
    handler = Recorder()
    srv = serve(handler, require_called_ae=True)
    assert refused(srv.port, associate_rq(called=called)) == (A_ASSOCIATE_RJ, bytes([0, 1, 1, 7]))
    assert handler.associations == []
    assert_still_serving(srv)


@pytest.mark.parametrize("called, calling, require, reason", [
    (b"SCP", b" " * 16, True, 3),
    (b"SCP", bytes(16), True, 3),
    (b"SCP", b"MOD\\1", True, 3),
    (b" " * 16, b"QUIRKY", False, 7),
], ids=["calling-all-spaces", "calling-all-nul", "calling-backslash", "called-all-spaces-unchecked"])
def test_an_invalid_ae_title_is_rejected_not_dropped(serve, called, calling, require, reason):
    """PS3.5 6.2 forbids an AE value of only spaces and the backslash, so the
    RQ cannot be answered with an AC that echoes it. Recommended: A-ASSOCIATE-RJ
    rejected-permanent, service-user, calling-AE-title-not-recognized (3) or
    called-AE-title-not-recognized (7). (pynetdicom answers A-ABORT; dcmtk
    says nothing.)"""
    srv = serve(require_called_ae=require)
    assert refused(srv.port, associate_rq(called=called, calling=calling)) == (
        A_ASSOCIATE_RJ, bytes([0, 1, 1, reason]))
    assert_still_serving(srv)


# ------------------------------------------------------- presentation contexts
def test_contexts_out_of_order_are_answered_each_by_its_own_id(serve):
    """PS3.8 9.3.2.2 asks only for odd, unique IDs; the order is free. Each
    context is answered under its ID and used under it."""
    handler = Recorder()
    srv = serve(handler)
    contexts = [presentation_context_rq(5, VERIFICATION, [IMPLICIT]), presentation_context_rq(1, CT, [EXPLICIT]),
                presentation_context_rq(3, MR, [IMPLICIT])]
    peer, ac = associate(srv.port, associate_rq(contexts))
    assert ac.results == [(5, 0, IMPLICIT.encode()), (1, 0, EXPLICIT.encode()), (3, 4, b"")]
    assert echo(peer, context_id=5) == 0x0000
    uid = UID_ROOT + "1"
    peer.send(p_data(pdv(1, 0x03, c_store_rq(2, uid))), p_data(pdv(1, 0x02, data_set(uid))))
    answer = peer.read_message()
    assert not isinstance(answer, int) and answer[0] == 1
    assert us_field(answer[1], 0x00000900) == 0x0000
    release(peer)
    assert handler.stored == [(uid, "QUIRK^VENDOR")]
    assert_still_serving(srv)


def test_transfer_syntax_quirks_are_answered_per_context(serve):
    """One transfer syntax proposed twice; an unknown one before a known one
    (the known one is taken); a context with only an unknown syntax, and an
    unknown abstract syntax, are refused by themselves (PS3.8 Table 9-18:
    4 transfer-syntaxes-not-supported, 3 abstract-syntax-not-supported) while
    the association goes on. dcmtk and pynetdicom answer the same."""
    srv = serve()
    contexts = [presentation_context_rq(1, VERIFICATION, [IMPLICIT, IMPLICIT]),
                presentation_context_rq(3, CT, [UNKNOWN_SYNTAX, EXPLICIT]),
                presentation_context_rq(5, MR, [UNKNOWN_SYNTAX]),
                presentation_context_rq(7, "1.2.826.0.1.3680043.9.7777.999.2", [IMPLICIT])]
    peer, ac = associate(srv.port, associate_rq(contexts))
    assert ac.results == [(1, 0, IMPLICIT.encode()), (3, 0, EXPLICIT.encode()), (5, 4, b""), (7, 3, b"")]
    assert echo(peer) == 0x0000
    release(peer)
    assert_still_serving(srv)


def test_unrecognised_sub_item_in_a_presentation_context_is_skipped(serve):
    srv = serve()
    contexts = [presentation_context_rq(1, VERIFICATION, [IMPLICIT], extra=item(0xE0, b"vendor"))]
    peer, ac = associate(srv.port, associate_rq(contexts))
    assert ac.results == [(1, 0, IMPLICIT.encode())]
    assert echo(peer) == 0x0000
    release(peer)
    assert_still_serving(srv)


def test_a_malformed_abstract_syntax_refuses_only_its_context(serve):
    srv = serve()
    contexts = [presentation_context_rq(1, VERIFICATION, [IMPLICIT]),
                presentation_context_rq(3, "1.2.840.10008.5.1.4.1.1.2.GE", [IMPLICIT])]
    peer, ac = associate(srv.port, associate_rq(contexts))
    assert ac.results == [(1, 0, IMPLICIT.encode()), (3, 3, b"")]
    assert echo(peer) == 0x0000
    release(peer)
    assert_still_serving(srv)


@pytest.mark.parametrize("user_info, version_name", [
    (user_information(version=b"QUIRKS_1\0"), "QUIRKS_1"),
    (user_information(version=b"QUIRKS_1  "), "QUIRKS_1"),
    (user_information(version=b""), None),
    (user_information(implementation=b""), "QUIRKS_1"),
    (user_information(implementation=b"1.2.840.113619.6.ABC"), "QUIRKS_1"),
], ids=["version-name-nul-padded", "version-name-space-padded", "version-name-empty", "implementation-uid-empty",
        "implementation-uid-not-a-uid"])
def test_informative_user_information_quirks_are_accepted(serve, user_info, version_name):
    """The Implementation Class UID and Version Name only say who the peer is
    (PS3.7 D.3.3.2): a sloppy value there must not cost the association.
    Padding is dropped; an empty name is no name."""
    handler = Recorder()
    srv = serve(handler)
    peer, ac = associate(srv.port, associate_rq(user_info=user_info))
    assert ac.results == [(1, 0, IMPLICIT.encode())]
    assert echo(peer) == 0x0000
    release(peer)
    [info] = handler.associations
    assert info.negotiated.peer_implementation_version_name == version_name
    assert_still_serving(srv)


# ----------------------------------------------------------- command sets
STORE_CONTEXTS = [presentation_context_rq(1, VERIFICATION, [IMPLICIT]), presentation_context_rq(3, CT, [EXPLICIT])]


def store_association(srv: Server) -> Peer:
    peer, ac = associate(srv.port, associate_rq(STORE_CONTEXTS))
    assert ac.results == [(1, 0, IMPLICIT.encode()), (3, 0, EXPLICIT.encode())]
    return peer


def store_status(peer: Peer, message_id: int, instance: str) -> int:
    """Read the C-STORE-RSP: its status (its other fields asserted)."""
    answer = peer.read_message()
    assert not isinstance(answer, int), f"PDU type {answer:#04x} instead of a C-STORE-RSP"
    cid, command, dataset, _ = answer
    assert (cid, dataset) == (3, None)
    assert us_field(command, 0x00000100) == 0x8001
    assert us_field(command, 0x00000120) == message_id
    assert command[0x00001000].rstrip(b"\0") == instance.encode()
    return us_field(command, 0x00000900)


@pytest.mark.parametrize("data_set_type", [0x0000, 0x0001, 0x0102, 0xFEFE], ids=["0000H", "0001H", "0102H", "FEFEH"])
def test_any_data_set_type_but_0101h_means_a_data_set_follows(serve, store_handler, data_set_type):
    """PS3.7 Annex E (CommandDataSetType): 0101H means no data set; "any other
    value indicates a Data Set is included". Vendors send 0000H, 0001H,
    0102H or FEFEH; each is stored, in memory or streamed to a file."""
    srv = serve(store_handler)
    peer = store_association(srv)
    uid = UID_ROOT + f"2.{data_set_type}"
    peer.send(p_data(pdv(3, 0x03, c_store_rq(5, uid, data_set_type=data_set_type))),
              p_data(pdv(3, 0x02, data_set(uid))))
    assert store_status(peer, 5, uid) == 0x0000
    release(peer)
    assert wait_for(lambda: srv.active_associations == 0)
    assert stored(store_handler) == [(uid, "QUIRK^VENDOR")]
    assert_still_serving(srv)


@pytest.mark.parametrize("priority", [None, 0x0007], ids=["no-priority", "priority-7"])
def test_c_store_rq_with_a_missing_or_unknown_priority_is_stored(serve, store_handler, priority):
    """Priority (0000,0700) is mandatory in a C-STORE-RQ (PS3.7 9.3.1.1) and
    0000H/0001H/0002H only, but it changes nothing about what is stored: the
    request is whole and unambiguous without it. Stored, as pynetdicom
    does for a missing Priority and dcmtk for an unknown value (dcmtk aborts
    a missing one, pynetdicom an unknown one)."""
    srv = serve(store_handler)
    peer = store_association(srv)
    uid = UID_ROOT + "3"
    peer.send(p_data(pdv(3, 0x03, c_store_rq(9, uid, priority=priority))), p_data(pdv(3, 0x02, data_set(uid))))
    assert store_status(peer, 9, uid) == 0x0000
    release(peer)
    assert wait_for(lambda: srv.active_associations == 0)
    assert stored(store_handler) == [(uid, "QUIRK^VENDOR")]
    assert_still_serving(srv)


def test_command_in_several_pdvs_of_one_p_data_tf(serve, store_handler):
    """PS3.8 9.3.5: a P-DATA-TF holds "one or more" PDVs, and a command set
    may be cut anywhere (E.1). Here the C-STORE-RQ comes in three PDVs of one
    PDU (dcmtk aborts this one; pynetdicom takes it)."""
    srv = serve(store_handler)
    peer = store_association(srv)
    uid = UID_ROOT + "4"
    command = c_store_rq(11, uid)
    peer.send(p_data(pdv(3, 0x01, command[:13]), pdv(3, 0x01, command[13:40]), pdv(3, 0x03, command[40:])),
              p_data(pdv(3, 0x02, data_set(uid))))
    assert store_status(peer, 11, uid) == 0x0000
    release(peer)
    assert wait_for(lambda: srv.active_associations == 0)
    assert stored(store_handler) == [(uid, "QUIRK^VENDOR")]
    assert_still_serving(srv)


def test_command_and_first_data_set_pdv_in_one_p_data_tf(serve, store_handler):
    """The command set's last PDV and the data set's first in one P-DATA-TF,
    the rest of the data set in the next two (one of them an empty last
    fragment)."""
    srv = serve(store_handler)
    peer = store_association(srv)
    uid = UID_ROOT + "5"
    data = data_set(uid)
    peer.send(p_data(pdv(3, 0x03, c_store_rq(13, uid)), pdv(3, 0x00, data[:20])),
              p_data(pdv(3, 0x00, data[20:])), p_data(pdv(3, 0x02, b"")))
    assert store_status(peer, 13, uid) == 0x0000
    release(peer)
    assert wait_for(lambda: srv.active_associations == 0)
    assert stored(store_handler) == [(uid, "QUIRK^VENDOR")]
    assert_still_serving(srv)


@pytest.mark.parametrize("service", ["C-ECHO", "C-STORE"])
def test_command_set_without_group_length_is_answered(serve, service):
    """PS3.7 Annex E lists CommandGroupLength for every command (the sender
    must send it), but the receiver gains nothing from it: PS3.8 E.2 marks
    the end of a command set. Recommended: answer the request."""
    handler = Recorder()
    srv = serve(handler)
    peer = store_association(srv)
    if service == "C-ECHO":
        peer.send(p_data(pdv(1, 0x03, c_echo_rq(3, group_length=False))))
        answer = peer.read_message()
        assert not isinstance(answer, int), f"PDU type {answer:#04x} instead of a C-ECHO-RSP"
        assert us_field(answer[1], 0x00000900) == 0x0000
    else:
        uid = UID_ROOT + "6"
        peer.send(p_data(pdv(3, 0x03, c_store_rq(3, uid, group_length=False))),
                  p_data(pdv(3, 0x02, data_set(uid))))
        assert store_status(peer, 3, uid) == 0x0000
        assert handler.stored == [(uid, "QUIRK^VENDOR")]
    release(peer)
    assert_still_serving(srv)


# -------------------------------------------------------- ending badly
@pytest.mark.parametrize("how", ["close", "reset"])
def test_release_request_then_close_without_reading_the_reply(serve, caplog, how):
    """The requestor sends A-RELEASE-RQ and closes at once (or resets the
    connection): our A-RELEASE-RP meets a closed socket. The association ends
    at once (not after ARTIM or the read timeout), without an error logged."""
    handler = Recorder()
    srv = serve(handler)
    peer, _ = associate(srv.port, associate_rq())
    assert echo(peer) == 0x0000
    caplog.set_level(logging.WARNING, logger="dicomnet")
    peer.send(pdu(A_RELEASE_RQ, bytes(4)))
    if how == "reset":
        peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
    t0 = time.monotonic()
    peer.close()
    assert wait_for(lambda: srv.active_associations == 0, 1.5), "the server waited for ARTIM or a timeout"
    assert time.monotonic() - t0 < 1.5
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert_still_serving(srv)


def test_abort_right_after_the_last_c_store_rq(serve, store_handler):
    """The C-STORE-RQ, its data set and an A-ABORT in one write. The data set
    was whole before the abort: it is stored (PS3.8 leaves that open; it is
    what arrived intact). Nothing but the C-STORE-RSP -- if it went out before
    the A-ABORT was read -- may come back: no A-ABORT answers an A-ABORT
    (Table 9-10, AA-3), and nothing after it."""
    srv = serve(store_handler)
    peer = store_association(srv)
    uid = UID_ROOT + "7"
    peer.send(p_data(pdv(3, 0x03, c_store_rq(15, uid))) + p_data(pdv(3, 0x02, data_set(uid)))
              + pdu(A_ABORT, bytes(4)))
    back = []
    while True:
        try:
            back.append(peer.read_pdu())
        except (EOFError, ConnectionResetError):
            break
    peer.close()
    assert [t for t, _ in back] in ([], [P_DATA_TF]), back
    if back:
        [(context_id, control, command)] = parse_pdvs(back[0][1])
        assert (context_id, control) == (3, 0x03)
        assert us_field(parse_command(command), 0x00000900) == 0x0000
    assert wait_for(lambda: srv.active_associations == 0)
    assert stored(store_handler) == [(uid, "QUIRK^VENDOR")]
    assert_still_serving(srv)
