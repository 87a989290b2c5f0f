"""Sloppy vendor peers, played byte by byte against our Server and our Client.

Old or careless DICOM implementations send things the standard forbids or
leaves loose. Each case here is one such quirk, written with ``struct`` on a
plain socket (no dicomnet encoder builds what the peer sends), and checks
what our side answers, by the bytes of the PDUs it sends back:

* accepted where PS3.8 says a field "shall not be tested on receipt", or the
  meaning is unambiguous and dcmtk 3.6.7 (``storescp``) and pynetdicom 3.0.4
  accept it too (both were run against the same bytes when this file was
  written);
* refused cleanly where it is forbidden or ambiguous: an A-ASSOCIATE-RJ with
  the right result/source/reason, a per-context rejection, a failure status,
  or an A-ABORT;
* and on the server side, the server keeps serving: a normal dicomnet
  ``Client`` C-ECHO succeeds afterwards.

Fifteen of these cases found faults when the file was written; all are
fixed (AE titles the AE VR forbids are now rejected, not dropped; command
sets without a group length, unknown sub-items in presentation contexts, a
missing User Information item, a malformed UID in one context and malformed
implementation identification are taken, as dcmtk and pynetdicom take them).

Quirks already tested elsewhere are not repeated here:

* duplicate, even and zero presentation context IDs -> A-ASSOCIATE-RJ
  (1, 2, 1): tests/hardening/test_limits.py
  ``test_bad_presentation_context_sets_are_rejected``;
* unknown items at the PDU level and in User Information are skipped:
  tests/pdu/test_pdus.py ``test_unknown_variable_items_are_skipped``,
  tests/pdu/test_items.py ``test_unknown_user_information_sub_item_is_skipped``;
* a command set in two fragments in two P-DATA-TFs, data set PDVs split every
  way, the last data PDV and the next command in one PDU (general path and
  C-STORE lane): tests/hardening/test_store_lane.py
  ``test_well_formed_stores_answer_and_write_the_same``;
* one PDU trickled in tiny TCP segments with delays: tests/hardening/
  test_faults.py ``test_delay_and_fragmentation_deliver_identical_bytes`` and
  ``test_data_sets_received_in_memory_survive_fragmentation_and_delays``;
* a requestor closing TCP without release after its last response:
  tests/test_server.py ``test_peer_vanishing_leaves_no_thread_or_fd``;
* C-ECHOs and the A-RELEASE-RQ in one write: tests/hardening/test_faults.py
  ``test_requests_read_with_the_release_request_are_answered_first``;
* an acceptor that sends A-RELEASE-RQ itself: tests/test_client.py
  ``test_acceptor_releasing_is_reported_and_confirmed``;
* C-STORE-RSP 0xB000 returned, 0xA701/0xC123/0x0117 raised:
  tests/test_store_find.py ``test_store_warning_is_returned_and_logged``,
  ``test_store_failure_status_raises``;
* a second final response to one request: tests/test_late_responses.py.
"""
from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from dicomnet import AssociationAborted, Client, Dataset, DimseStatusError, Server, read_file
from dicomnet.errors import NoPresentationContext
from dicomnet.pdu.negotiation import IMPLEMENTATION_CLASS_UID

VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
APP_CONTEXT = "1.2.840.10008.3.1.1.1"
UNKNOWN_SYNTAX = "1.2.826.0.1.3680043.9.7777.999.1"
PEER_IMPLEMENTATION = "1.2.826.0.1.3680043.9.7777.42"
UID_ROOT = "1.2.826.0.1.3680043.9.7777.43."

# PDU types (PS3.8 Table 9-1 .. 9-26)
A_ASSOCIATE_RQ, A_ASSOCIATE_AC, A_ASSOCIATE_RJ = 0x01, 0x02, 0x03
P_DATA_TF, A_RELEASE_RQ, A_RELEASE_RP, A_ABORT = 0x04, 0x05, 0x06, 0x07

SOCKET_TIMEOUT = 5.0     # no test waits longer than this for one thing
OUR_MAX_PDU = 65536      # the Server's Maximum Length in these tests


# =========================================================== raw encoding
def item(item_type: int, value: bytes, reserved: int = 0) -> bytes:
    """An item or sub-item: type, reserved byte, 16-bit length, value."""
    return struct.pack(">BBH", item_type, reserved, len(value)) + value


def pdu(pdu_type: int, body: bytes, reserved: int = 0) -> bytes:
    return struct.pack(">BBL", pdu_type, reserved, len(body)) + body


def presentation_context_rq(context_id: int, abstract: str, syntaxes: list[str], *, pad: bytes = b"",
                            reserved: bytes = b"\0\0\0", sub_reserved: int = 0, extra: bytes = b"") -> bytes:
    """Item 20H (PS3.8 Table 9-13); ``pad`` is appended to every UID, ``extra`` after the sub-items."""
    body = bytes([context_id]) + reserved + item(0x30, abstract.encode() + pad, sub_reserved)
    body += b"".join(item(0x40, ts.encode() + pad, sub_reserved) for ts in syntaxes)
    return item(0x20, body + extra, sub_reserved)


def presentation_context_ac(context_id: int, result: int, syntax: bytes | None, *,
                            reserved: bytes = b"\0\0", extra: bytes = b"") -> bytes:
    """Item 21H (PS3.8 Table 9-18); ``syntax`` None leaves the transfer syntax sub-item out."""
    body = bytes([context_id, reserved[0], result, reserved[1]])
    if syntax is not None:
        body += item(0x40, syntax)
    return item(0x21, body + extra)


def user_information(*, max_length: int | None = 16384, implementation: bytes | None = PEER_IMPLEMENTATION.encode(),
                     version: bytes | None = b"QUIRKS_1", extra: bytes = b"", reserved: int = 0) -> bytes:
    """Item 50H; None leaves that sub-item out."""
    parts = b""
    if max_length is not None:
        parts += item(0x51, struct.pack(">L", max_length), reserved)
    if implementation is not None:
        parts += item(0x52, implementation, reserved)
    if version is not None:
        parts += item(0x55, version, reserved)
    return item(0x50, parts + extra, reserved)


def ae_field(title: bytes) -> bytes:
    return title if len(title) == 16 else title.ljust(16, b" ")


def associate_pdu(pdu_type: int, contexts: list[bytes], user_info: bytes | None, *, called: bytes = b"SCP",
                  calling: bytes = b"QUIRKY", app_context: bytes = APP_CONTEXT.encode(), version: int = 1,
                  reserved: bytes = b"\0\0", reserved32: bytes = bytes(32), pdu_reserved: int = 0,
                  item_reserved: int = 0) -> bytes:
    """A-ASSOCIATE-RQ or -AC (PS3.8 Tables 9-11, 9-17); ``user_info`` None leaves the item out."""
    fixed = struct.pack(">H2s16s16s32s", version, reserved, ae_field(called), ae_field(calling), reserved32)
    body = fixed + item(0x10, app_context, item_reserved) + b"".join(contexts) + (user_info or b"")
    return pdu(pdu_type, body, pdu_reserved)


def associate_rq(contexts: list[bytes] | None = None, user_info: bytes | None = None, **kw) -> bytes:
    if contexts is None:
        contexts = [presentation_context_rq(1, VERIFICATION, [IMPLICIT])]
    return associate_pdu(A_ASSOCIATE_RQ, contexts, user_information() if user_info is None else user_info, **kw)


# --------------------------------------------- command sets (PS3.7 6.3, Annex E)
def element(tag: int, value: bytes) -> bytes:
    """One Implicit VR Little Endian element of group 0000."""
    return struct.pack("<HHL", tag >> 16, tag & 0xFFFF, len(value)) + value


def us(value: int) -> bytes:
    return struct.pack("<H", value)


def ui(text: str) -> bytes:
    raw = text.encode()
    return raw + b"\0" if len(raw) % 2 else raw


def command_set(fields: dict[int, bytes], *, group_length: bool = True) -> bytes:
    body = b"".join(element(tag, value) for tag, value in sorted(fields.items()))
    if group_length:
        body = element(0x00000000, struct.pack("<L", len(body))) + body
    return body


def c_echo_rq(message_id: int, *, group_length: bool = True) -> bytes:
    return command_set({0x00000002: ui(VERIFICATION), 0x00000100: us(0x0030), 0x00000110: us(message_id),
                        0x00000800: us(0x0101)}, group_length=group_length)


def c_store_rq(message_id: int, instance: str, *, data_set_type: int = 0x0001, priority: int | None = 0x0000,
               group_length: bool = True, sop_class: str = CT) -> bytes:
    fields = {0x00000002: ui(sop_class), 0x00000100: us(0x0001), 0x00000110: us(message_id),
              0x00000800: us(data_set_type), 0x00001000: ui(instance)}
    if priority is not None:
        fields[0x00000700] = us(priority)
    return command_set(fields, group_length=group_length)


def c_echo_rsp(message_id: int, status: int = 0, *, group_length: bool = True) -> bytes:
    return command_set({0x00000002: ui(VERIFICATION), 0x00000100: us(0x8030), 0x00000120: us(message_id),
                        0x00000800: us(0x0101), 0x00000900: us(status)}, group_length=group_length)


def c_store_rsp(message_id: int, status: int = 0, *, sop_class: str | None = CT, instance: str | None = None,
                comment: str | None = None, group_length: bool = True) -> bytes:
    fields = {0x00000100: us(0x8001), 0x00000120: us(message_id), 0x00000800: us(0x0101),
              0x00000900: us(status)}
    if sop_class is not None:
        fields[0x00000002] = ui(sop_class)
    if instance is not None:
        fields[0x00001000] = ui(instance)
    if comment is not None:
        raw = comment.encode()
        fields[0x00000902] = raw + b" " if len(raw) % 2 else raw
    return command_set(fields, group_length=group_length)


def parse_command(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    pos = 0
    while pos < len(data):
        group, elem, length = struct.unpack_from("<HHL", data, pos)
        out[(group << 16) | elem] = data[pos + 8:pos + 8 + length]
        pos += 8 + length
    return out


def us_field(command: dict[int, bytes], tag: int) -> int:
    return struct.unpack("<H", command[tag])[0]


def pdv(context_id: int, control: int, data: bytes) -> bytes:
    """A Presentation Data Value item; ``control`` is the Message Control Header (PS3.8 E.2)."""
    return struct.pack(">LBB", len(data) + 2, context_id, control) + data


def p_data(*pdvs: bytes, reserved: int = 0) -> bytes:
    return pdu(P_DATA_TF, b"".join(pdvs), reserved)


def data_set(instance: str, patient: str = "QUIRK^VENDOR", sop_class: str = CT) -> bytes:
    """A small Explicit VR Little Endian data set: SOP Class, SOP Instance, Patient's Name."""
    def explicit(tag: int, vr: bytes, value: bytes) -> bytes:
        if len(value) % 2:
            value += b"\0" if vr == b"UI" else b" "
        return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value
    return (explicit(0x00080016, b"UI", sop_class.encode()) + explicit(0x00080018, b"UI", instance.encode())
            + explicit(0x00100010, b"PN", patient.encode()))


# =========================================================== raw parsing
@dataclass
class Associate:
    """An A-ASSOCIATE-RQ/-AC as read off the wire. ``contexts``: (id, result
    byte, sub-items as (type, value) pairs); ``user``: sub-item type -> values."""

    version: int
    called: bytes
    calling: bytes
    app_context: bytes
    contexts: list[tuple[int, int, list[tuple[int, bytes]]]] = field(default_factory=list)
    user: dict[int, list[bytes]] = field(default_factory=dict)

    @property
    def results(self) -> list[tuple[int, int, bytes | None]]:
        """For an AC: (context id, result, transfer syntax sub-item value or None)."""
        out = []
        for cid, result, subs in self.contexts:
            ts = [v for t, v in subs if t == 0x40]
            out.append((cid, result, ts[0] if ts else None))
        return out

    @property
    def proposed(self) -> list[tuple[int, str, list[str]]]:
        """For an RQ: (context id, abstract syntax, transfer syntaxes)."""
        return [(cid, next(v.decode() for t, v in subs if t == 0x30),
                 [v.decode() for t, v in subs if t == 0x40]) for cid, _, subs in self.contexts]

    @property
    def max_length(self) -> int:
        return struct.unpack(">L", self.user[0x51][0])[0]


def sub_items(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    pos = 0
    while pos < len(data):
        item_type, _, length = struct.unpack_from(">BBH", data, pos)
        out.append((item_type, data[pos + 4:pos + 4 + length]))
        pos += 4 + length
    assert pos == len(data), "item lengths do not add up"
    return out


def parse_associate(body: bytes) -> Associate:
    version, _, called, calling, _ = struct.unpack_from(">HH16s16s32s", body, 0)
    parsed = Associate(version, called, calling, b"")
    for item_type, value in sub_items(body[68:]):
        if item_type == 0x10:
            parsed.app_context = value
        elif item_type in (0x20, 0x21):
            parsed.contexts.append((value[0], value[2], sub_items(value[4:])))
        elif item_type == 0x50:
            for sub_type, sub in sub_items(value):
                parsed.user.setdefault(sub_type, []).append(sub)
    return parsed


def parse_pdvs(body: bytes) -> list[tuple[int, int, bytes]]:
    out = []
    pos = 0
    while pos < len(body):
        length, context_id, control = struct.unpack_from(">LBB", body, pos)
        out.append((context_id, control, body[pos + 6:pos + 4 + length]))
        pos += 4 + length
    return out


class Peer:
    """One end of a raw TCP connection, every wait bounded by SOCKET_TIMEOUT."""

    def __init__(self, sock: socket.socket) -> None:
        sock.settimeout(SOCKET_TIMEOUT)
        self.sock = sock
        self._buffer = b""

    @classmethod
    def connect(cls, port: int) -> Peer:
        return cls(socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT))

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, *chunks: bytes) -> None:
        for chunk in chunks:
            self.sock.sendall(chunk)

    def _fill(self, n: int) -> None:
        while len(self._buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"the other end closed the connection ({len(self._buffer)} byte(s) of a PDU read)")
            self._buffer += chunk

    def read_pdu(self) -> tuple[int, bytes]:
        self._fill(6)
        pdu_type, _, length = struct.unpack(">BBL", self._buffer[:6])
        self._fill(6 + length)
        body, self._buffer = self._buffer[6:6 + length], self._buffer[6 + length:]
        return pdu_type, body

    def expect(self, pdu_type: int) -> bytes:
        got, body = self.read_pdu()
        assert got == pdu_type, f"expected PDU type {pdu_type:#04x}, got {got:#04x} {body[:16].hex()}"
        return body

    def closed_by_other_end(self) -> bool:
        """True once the other end closes, with nothing more sent first;
        False if it sends something or keeps the connection open."""
        try:
            return self.sock.recv(1) == b"" and not self._buffer
        except ConnectionResetError:
            return not self._buffer
        except TimeoutError:
            return False

    def read_message(self) -> tuple[int, dict[int, bytes], bytes | None, int] | int:
        """The next DIMSE message: (context id, command, data set or None,
        number of P-DATA-TFs the data set came in), or the type of a PDU
        other than P-DATA-TF that came instead."""
        command = b""
        data: bytes | None = None
        data_pdus = 0
        context_id = 0
        while True:
            pdu_type, body = self.read_pdu()
            if pdu_type != P_DATA_TF:
                return pdu_type
            if data is not None:
                data_pdus += 1
            for context_id, control, value in parse_pdvs(body):
                if control & 1:
                    command += value
                    if control & 2:
                        parsed = parse_command(command)
                        if us_field(parsed, 0x00000800) == 0x0101:
                            return context_id, parsed, None, 0
                        data = b""
                else:
                    assert data is not None, "data set PDV before the command set"
                    data += value
                    if control & 2:
                        return context_id, parse_command(command), data, data_pdus


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
