"""Shared pieces of the sloppy-vendor-peer tests
(``test_vendor_quirks_server.py`` and ``test_vendor_quirks_client.py``): the
Upper Layer PDUs, items and command sets written with ``struct`` (no dicomnet
encoder builds what the peer sends), their parsing, and ``Peer``, one end of a
raw TCP connection.

Old or careless DICOM implementations send things the standard forbids or
leaves loose. Each case in those files is one such quirk, played on a plain
socket against our Server or our Client, and checks what our side answers, by
the bytes of the PDUs it sends back:

* accepted where PS3.8 says a field "shall not be tested on receipt", or the
  meaning is unambiguous and dcmtk 3.6.7 (``storescp``) and pynetdicom 3.0.4
  accept it too (both were run against the same bytes when the cases were
  written);
* refused cleanly where it is forbidden or ambiguous: an A-ASSOCIATE-RJ with
  the right result/source/reason, a per-context rejection, a failure status,
  or an A-ABORT;
* and on the server side, the server keeps serving: a normal dicomnet
  ``Client`` C-ECHO succeeds afterwards.

Fifteen of these cases found faults when they were written; all are
fixed (AE titles the AE VR forbids are now rejected, not dropped; command
sets without a group length, unknown sub-items in presentation contexts, a
missing User Information item, a malformed UID in one context and malformed
implementation identification are taken, as dcmtk and pynetdicom take them).

Quirks already tested elsewhere are not repeated there:

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

import socket
import struct
from dataclasses import dataclass, field

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
