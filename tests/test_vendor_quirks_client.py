"""Sloppy vendor acceptors against our Client, byte by byte: a scripted SCP on
a raw socket answers with quirks of the A-ASSOCIATE-AC (no implementation
identification, reserved fields set, contexts in another order or rejected
oddly, unknown sub-items, Maximum Length 0), DIMSE responses without a group
length or affected UIDs under every kind of status, and releases answered by
a close, an abort, a connection left open or a release collision.

How the peers are played, and the quirks tested elsewhere: _vendor_quirks.py.
The server side: test_vendor_quirks_server.py.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from dicomnet import AssociationAborted, Client, Dataset, DimseStatusError
from dicomnet.errors import NoPresentationContext

from tests._vendor_quirks import (A_ABORT, A_ASSOCIATE_AC, A_ASSOCIATE_RQ, A_RELEASE_RP, A_RELEASE_RQ, CT, EXPLICIT,
                                  IMPLICIT, MR, SOCKET_TIMEOUT, UID_ROOT, VERIFICATION, Associate, Peer, associate_pdu,
                                  c_echo_rsp, c_store_rsp, item, p_data, parse_associate, pdu, pdv,
                                  presentation_context_ac, us_field, user_information)


# =========================================================== client side
class ScriptedSCP:
    """A raw-socket acceptor on 127.0.0.1 that runs ``script(peer)`` for the
    one connection it takes, on a thread. ``join()`` re-raises what the
    script raised."""

    def __init__(self, script: Callable[[Peer], None]) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.settimeout(SOCKET_TIMEOUT)
        self.port: int = self.listener.getsockname()[1]
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(script,), daemon=True)
        self.thread.start()

    def _run(self, script: Callable[[Peer], None]) -> None:
        try:
            sock, _ = self.listener.accept()
            with Peer(sock) as peer:
                script(peer)
        except BaseException as exc:  # noqa: BLE001 - handed to the test by join()
            self.error = exc

    def join(self) -> None:
        self.thread.join(SOCKET_TIMEOUT + 2)
        assert not self.thread.is_alive(), "the scripted SCP is still running"
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.listener.close()
        self.thread.join(SOCKET_TIMEOUT + 2)


@pytest.fixture
def scripted_scp() -> Iterator[Callable[[Callable[[Peer], None]], ScriptedSCP]]:
    made: list[ScriptedSCP] = []

    def start(script: Callable[[Peer], None]) -> ScriptedSCP:
        scp = ScriptedSCP(script)
        made.append(scp)
        return scp

    yield start
    for scp in made:
        scp.close()


def client() -> Client:
    return Client("QUIRKSCU", connect_timeout=3, read_timeout=3, write_timeout=3, artim_timeout=3, dimse_timeout=3)


CLIENT_CONTEXTS = [(VERIFICATION, [IMPLICIT]), (CT, [EXPLICIT])]


def default_ac(rq: Associate, **kw) -> bytes:
    """Accept every proposed context with its first transfer syntax."""
    contexts = [presentation_context_ac(cid, 0, syntaxes[0].encode()) for cid, _, syntaxes in rq.proposed]
    kw.setdefault("called", rq.called)
    kw.setdefault("calling", rq.calling)
    return associate_pdu(A_ASSOCIATE_AC, contexts, kw.pop("user_info", user_information()), **kw)


def accept(peer: Peer, make_ac: Callable[[Associate], bytes] = default_ac) -> Associate:
    """Read the client's A-ASSOCIATE-RQ and answer ``make_ac(rq)``."""
    rq = parse_associate(peer.expect(A_ASSOCIATE_RQ))
    assert rq.proposed[:2] == [(1, VERIFICATION, [IMPLICIT]), (3, CT, [EXPLICIT])][:len(rq.proposed)]
    peer.send(make_ac(rq))
    return rq


Answer = Callable[[int, dict[int, bytes], "bytes | None"], list[bytes]]


def standard_answer(context_id: int, command: dict[int, bytes], dataset: bytes | None) -> list[bytes]:
    field_ = us_field(command, 0x00000100)
    mid = us_field(command, 0x00000110)
    if field_ == 0x0030:
        return [p_data(pdv(context_id, 0x03, c_echo_rsp(mid)))]
    if field_ == 0x0001:
        instance = command[0x00001000].rstrip(b"\0").decode()
        return [p_data(pdv(context_id, 0x03, c_store_rsp(mid, 0, instance=instance)))]
    raise AssertionError(f"unexpected command {field_:#06x}")


@dataclass
class Seen:
    """What the scripted SCP saw of the client."""

    messages: list[tuple[int, dict[int, bytes], bytes | None, int]] = field(default_factory=list)
    end: str = ""


def serve_messages(peer: Peer, seen: Seen, answer: Answer = standard_answer,
                   on_release: Callable[[Peer], str] | None = None) -> None:
    """Answer each message until the client releases (``on_release`` decides
    what happens then; default A-RELEASE-RP and wait for the close) or goes."""
    while True:
        try:
            got = peer.read_message()
        except (EOFError, ConnectionResetError):
            seen.end = "closed"
            return
        if isinstance(got, int):
            if got == A_RELEASE_RQ:
                if on_release is not None:
                    seen.end = on_release(peer)
                    return
                peer.send(pdu(A_RELEASE_RP, bytes(4)))
                seen.end = "released" if peer.closed_by_other_end() else "not closed after release"
            else:
                seen.end = f"PDU {got:#04x}"
            return
        seen.messages.append(got)
        peer.send(*answer(*got[:3]))


def a_data_set(instance: str, size: int = 0) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = instance
    ds.PatientName = "QUIRK^SCP"
    if size:
        ds.set(0x00091010, bytes(range(256)) * (size // 256), vr="OB")
    return ds


# ------------------------------------------------------- A-ASSOCIATE-AC quirks
def ac_without_implementation_uid(rq: Associate) -> bytes:
    return default_ac(rq, user_info=user_information(implementation=None, version=None))


def ac_with_reserved_fields(rq: Associate) -> bytes:
    contexts = [presentation_context_ac(1, 0, IMPLICIT.encode(), reserved=b"\xff\xee"),
                presentation_context_ac(3, 0, EXPLICIT.encode(), reserved=b"\x01\x02")]
    return associate_pdu(A_ASSOCIATE_AC, contexts, user_information(reserved=0x99), called=rq.called,
                         calling=rq.calling, reserved=b"\xab\xcd", reserved32=b"\x5a" * 32, pdu_reserved=0x42,
                         item_reserved=0x24)


def ac_in_another_order(rq: Associate) -> bytes:
    contexts = [presentation_context_ac(3, 0, EXPLICIT.encode()), presentation_context_ac(1, 0, IMPLICIT.encode())]
    return associate_pdu(A_ASSOCIATE_AC, contexts, user_information(), called=rq.called, calling=rq.calling)


def ac_with_other_ae_titles(rq: Associate) -> bytes:
    # PS3.8 Table 9-17: the AE fields of the AC are reserved fields, to be sent
    # as received in the A-ASSOCIATE-RQ but not tested on receipt.
    return default_ac(rq, called=b"some-other-name", calling=bytes(16))


@pytest.mark.parametrize("make_ac, check", [
    (ac_without_implementation_uid,
     lambda n: n.peer_implementation_class_uid is None and n.peer_implementation_version_name is None),
    (ac_with_reserved_fields, lambda n: n.peer_max_pdu == 16384),
    (ac_in_another_order, lambda n: [(c.context_id, c.transfer_syntax) for c in n.contexts.values()]
     == [(3, EXPLICIT), (1, IMPLICIT)]),
    (ac_with_other_ae_titles, lambda n: (n.called_ae, n.calling_ae) == ("QUIRKSCP", "QUIRKSCU")),
], ids=["no-implementation-class-uid", "reserved-fields-set", "contexts-in-another-order", "other-ae-titles"])
def test_ac_quirks_are_accepted(scripted_scp, make_ac, check):
    seen = Seen()

    def script(peer: Peer) -> None:
        accept(peer, make_ac)
        serve_messages(peer, seen)

    scp = scripted_scp(script)
    uid = UID_ROOT + "20"
    with client().associate("127.0.0.1", scp.port, "QUIRKSCP", contexts=CLIENT_CONTEXTS) as assoc:
        assert check(assoc.negotiated)
        assert assoc.echo() == 0x0000
        assert assoc.store(a_data_set(uid)) == 0x0000
    scp.join()
    assert [(m[0], us_field(m[1], 0x00000100)) for m in seen.messages] == [(1, 0x0030), (3, 0x0001)]
    assert seen.end == "released"


def test_ac_with_maximum_length_0_gets_a_data_set_in_one_p_data_tf(scripted_scp):
    """PS3.8 D.1: 0 is "no maximum length": a 200 KiB data set goes out whole,
    in one P-DATA-TF (a Maximum Length of 16 KiB would have cut it into 13)."""
    seen = Seen()

    def script(peer: Peer) -> None:
        accept(peer, lambda rq: default_ac(rq, user_info=user_information(max_length=0)))
        serve_messages(peer, seen)

    scp = scripted_scp(script)
    ds = a_data_set(UID_ROOT + "21", size=200 * 1024)
    with client().associate("127.0.0.1", scp.port, "QUIRKSCP", contexts=CLIENT_CONTEXTS) as assoc:
        assert assoc.negotiated.peer_max_pdu == 0
        assert assoc.store(ds) == 0x0000
    scp.join()
    [(context_id, _, data, data_pdus)] = seen.messages
    assert context_id == 3 and len(data) > 200 * 1024
    assert data_pdus == 1


def test_ac_rejections_with_and_without_a_transfer_syntax_and_a_missing_answer(scripted_scp):
    """A rejected context's transfer syntax sub-item "shall not be significant
    and its value shall not be tested" (PS3.8 Table 9-18): one carries a real
    UID, one junk bytes, one none at all. A proposed context the AC does not
    answer is taken as not accepted (dicomnet sends nothing on it); the
    accepted one works."""
    seen = Seen()
    contexts_proposed = [(VERIFICATION, [IMPLICIT]), (CT, [EXPLICIT]), (MR, [EXPLICIT]),
                         ("1.2.840.10008.5.1.4.1.1.7", [EXPLICIT]), ("1.2.840.10008.5.1.4.1.1.1", [EXPLICIT])]

    def make_ac(rq: Associate) -> bytes:
        assert [cid for cid, _, _ in rq.proposed] == [1, 3, 5, 7, 9]
        contexts = [presentation_context_ac(1, 0, IMPLICIT.encode()),
                    presentation_context_ac(3, 4, EXPLICIT.encode()),
                    presentation_context_ac(5, 3, b"\xff\x00junk"),
                    presentation_context_ac(7, 1, None)]            # 9: not answered at all
        return associate_pdu(A_ASSOCIATE_AC, contexts, user_information())

    def script(peer: Peer) -> None:
        accept(peer, make_ac)
        serve_messages(peer, seen)

    scp = scripted_scp(script)
    with client().associate("127.0.0.1", scp.port, "QUIRKSCP", contexts=contexts_proposed) as assoc:
        assert list(assoc.negotiated.contexts) == [1]
        assert assoc.negotiated.rejected == {3: 4, 5: 3, 7: 1}
        assert assoc.echo() == 0x0000
        with pytest.raises(NoPresentationContext):
            assoc.store(a_data_set(UID_ROOT + "22"))
        assert assoc.echo() == 0x0000
    scp.join()
    assert [m[0] for m in seen.messages] == [1, 1]
    assert seen.end == "released"


def test_unrecognised_sub_item_in_an_ac_presentation_context_is_skipped(scripted_scp):
    seen = Seen()

    def make_ac(rq: Associate) -> bytes:
        contexts = [presentation_context_ac(1, 0, IMPLICIT.encode(), extra=item(0xE0, b"vendor")),
                    presentation_context_ac(3, 0, EXPLICIT.encode())]
        return associate_pdu(A_ASSOCIATE_AC, contexts, user_information())

    def script(peer: Peer) -> None:
        accept(peer, make_ac)
        serve_messages(peer, seen)

    scp = scripted_scp(script)
    with client().associate("127.0.0.1", scp.port, "QUIRKSCP", contexts=CLIENT_CONTEXTS) as assoc:
        assert assoc.echo() == 0x0000
    scp.join()


# ------------------------------------------------------------ DIMSE responses
@pytest.mark.parametrize("service", ["C-ECHO", "C-STORE"])
def test_response_without_group_length_is_taken(scripted_scp, service):
    def answer(context_id: int, command: dict[int, bytes], dataset: bytes | None) -> list[bytes]:
        mid = us_field(command, 0x00000110)
        if us_field(command, 0x00000100) == 0x0030:
            return [p_data(pdv(context_id, 0x03, c_echo_rsp(mid, group_length=False)))]
        instance = command[0x00001000].rstrip(b"\0").decode()
        return [p_data(pdv(context_id, 0x03, c_store_rsp(mid, instance=instance, group_length=False)))]

    def script(peer: Peer) -> None:
        accept(peer)
        serve_messages(peer, Seen(), answer)

    scp = scripted_scp(script)
    with client().associate("127.0.0.1", scp.port, "QUIRKSCP", contexts=CLIENT_CONTEXTS) as assoc:
        if service == "C-ECHO":
            assert assoc.echo() == 0x0000
        else:
            assert assoc.store(a_data_set(UID_ROOT + "23")) == 0x0000
    scp.join()


@pytest.mark.parametrize("status, comment, raised", [
    (0x0000, None, False),
    # PS3.4 B.2.3 storage warnings: returned (and logged), not raised.
    (0xB000, "coerced", False),
    (0xB006, "elements discarded", False),
    (0xB007, None, False),
    # 0107H (attribute list error) is a Warning status of PS3.7 Annex C (N-SET/N-CREATE);
    # some SCPs answer a C-STORE with it.
    (0x0107, None, False),
    # A7xx / A9xx / Cxxx are storage failures (PS3.4 B.2.3), any low byte.
    (0xA7F3, "disk full", True),
    (0xA9FF, None, True),
    # A code defined nowhere: taken as a failure (the safe reading), not as success.
    (0xD001, None, True),
], ids=["0000H", "B000H", "B006H", "B007H", "0107H", "A7F3H", "A9FFH", "D001H"])
def test_store_rsp_without_affected_uids_and_its_status(scripted_scp, caplog, status, comment, raised):
    """Some SCPs leave the Affected SOP Class/Instance UIDs out of the
    C-STORE-RSP (PS3.7 9.3.1.2 makes both a service-user option, U, in the
    response; pynetdicom accepts that). The status decides: warnings are
    returned (and logged), failures raise DimseStatusError with the code and
    the Error Comment, and the association goes on either way."""
    def answer(context_id: int, command: dict[int, bytes], dataset: bytes | None) -> list[bytes]:
        mid = us_field(command, 0x00000110)
        if us_field(command, 0x00000100) == 0x0030:
            return [p_data(pdv(context_id, 0x03, c_echo_rsp(mid)))]
        return [p_data(pdv(context_id, 0x03, c_store_rsp(mid, status, sop_class=None, comment=comment)))]

    seen = Seen()

    def script(peer: Peer) -> None:
        accept(peer)
        serve_messages(peer, seen, answer)

    scp = scripted_scp(script)
    caplog.set_level(logging.WARNING, logger="dicomnet")
    with client().associate("127.0.0.1", scp.port, "QUIRKSCP", contexts=CLIENT_CONTEXTS) as assoc:
        if raised:
            with pytest.raises(DimseStatusError) as info:
                assoc.store(a_data_set(UID_ROOT + "24"))
            assert info.value.status == status
            assert info.value.comment == comment
        else:
            assert assoc.store(a_data_set(UID_ROOT + "24")) == status
        assert assoc.echo() == 0x0000
    scp.join()
    assert seen.end == "released"
    warned = [r.getMessage() for r in caplog.records if "C-STORE of" in r.getMessage()]
    assert bool(warned) == (status != 0x0000 and not raised), warned


# ----------------------------------------------------------- release quirks
def test_scp_closing_instead_of_a_release_rp(scripted_scp, caplog):
    """The SCP answers A-RELEASE-RQ by closing the connection. PS3.8 Table
    9-10 makes the transport closing in Sta7 an A-P-ABORT (AA-4), but every
    request was answered and the association is over either way: release()
    returns at once with a warning (as pynetdicom's does), so a ``with``
    block whose work all succeeded does not raise on its way out."""
    seen = Seen()

    def script(peer: Peer) -> None:
        accept(peer)
        serve_messages(peer, seen, on_release=lambda p: "closed on release")

    scp = scripted_scp(script)
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="dicomnet"):
        with client().associate("127.0.0.1", scp.port, "QUIRKSCP", contexts=CLIENT_CONTEXTS) as assoc:
            assert assoc.echo() == 0x0000
            t0 = time.monotonic()
    assert time.monotonic() - t0 < 1.5
    assert assoc.is_closed
    assert "closed the connection instead of sending A-RELEASE-RP" in caplog.text
    assoc.release()                    # nothing left to do: no error
    scp.join()
    assert seen.end == "closed on release"


def test_scp_answering_release_with_an_abort(scripted_scp):
    """A-ABORT in answer to A-RELEASE-RQ (Table 9-10: Evt16 in Sta7 is AA-3):
    AssociationAborted with the source and reason the PDU carries."""
    def on_release(peer: Peer) -> str:
        peer.send(pdu(A_ABORT, bytes([0, 0, 2, 1])))     # service-provider, unrecognized-PDU
        return "aborted" if peer.closed_by_other_end() else "not closed after abort"

    seen = Seen()

    def script(peer: Peer) -> None:
        accept(peer)
        serve_messages(peer, seen, on_release=on_release)

    scp = scripted_scp(script)
    assoc = client().associate("127.0.0.1", scp.port, "QUIRKSCP", contexts=CLIENT_CONTEXTS)
    assert assoc.echo() == 0x0000
    t0 = time.monotonic()
    with pytest.raises(AssociationAborted) as info:
        assoc.release()
    assert (info.value.source, info.value.reason) == (2, 1)
    assert time.monotonic() - t0 < 1.5
    assert assoc.is_closed
    scp.join()
    assert seen.end == "aborted"


def test_scp_that_never_closes_after_its_release_rp(scripted_scp):
    """After A-RELEASE-RP it is the requestor that closes (AR-3); an SCP that
    keeps the connection open must not make release() wait."""
    closed = threading.Event()

    def on_release(peer: Peer) -> str:
        peer.send(pdu(A_RELEASE_RP, bytes(4)))
        if peer.closed_by_other_end():
            closed.set()
        return "released"

    def script(peer: Peer) -> None:
        accept(peer)
        serve_messages(peer, Seen(), on_release=on_release)

    scp = scripted_scp(script)
    assoc = client().associate("127.0.0.1", scp.port, "QUIRKSCP", contexts=CLIENT_CONTEXTS)
    assert assoc.echo() == 0x0000
    t0 = time.monotonic()
    assoc.release()
    assert time.monotonic() - t0 < 1.0
    assert assoc.is_closed
    assert closed.wait(3.0)
    scp.join()


def test_release_collision_with_the_scp(scripted_scp):
    """Both ends ask to release at once (PS3.8 9.2 release collision): the SCP
    answers our A-RELEASE-RQ with its own. As requestor we answer it
    (Sta9 -> AR-9: A-RELEASE-RP), then take the SCP's A-RELEASE-RP (Sta11 ->
    AR-3) and close; release() returns normally."""
    order: list[str] = []

    def on_release(peer: Peer) -> str:
        order.append("RQ from client")
        peer.send(pdu(A_RELEASE_RQ, bytes(4)))
        assert peer.expect(A_RELEASE_RP) == bytes(4)
        order.append("RP from client")
        peer.send(pdu(A_RELEASE_RP, bytes(4)))
        return "released" if peer.closed_by_other_end() else "not closed"

    seen = Seen()

    def script(peer: Peer) -> None:
        accept(peer)
        serve_messages(peer, seen, on_release=on_release)

    scp = scripted_scp(script)
    with client().associate("127.0.0.1", scp.port, "QUIRKSCP", contexts=CLIENT_CONTEXTS) as assoc:
        assert assoc.echo() == 0x0000
    assert assoc.is_closed
    scp.join()
    assert order == ["RQ from client", "RP from client"]
    assert seen.end == "released"
