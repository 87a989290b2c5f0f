"""Association negotiation checked with generated A-ASSOCIATE-RQs.

Each A-ASSOCIATE-RQ is written by this file, byte by byte, from PS3.8 Tables
9-11 to 9-16 and PS3.7 Tables D.3-1 to D.3-14 (no dicomnet encoder): 1-40
presentation contexts (up to 128) with odd IDs, abstract syntaxes from
dicomnet's SOP class registry and unknown UIDs (repeated across contexts),
1-5 transfer syntaxes each (uncompressed, compressed, unknown, repeated),
Maximum Length (0, small, odd, huge), Implementation Class UID and Version
Name, Asynchronous Operations Window, SCP/SCU Role Selection (for proposed
and unproposed abstract syntaxes, every role combination), SOP Class
(Common) Extended Negotiation, User Identity (types 1-5, with and without a
positive response requested), and application context name, protocol
version and AE title variants. It goes to a dicomnet ``Server`` on a real
socket; the A-ASSOCIATE-AC or -RJ is read by this file's own parser and
checked against the standard:

* the RJ only when the RQ gives a ground, with a (result, source, reason)
  PS3.8 Table 9-21 gives for it (authorization failure: rejected-permanent,
  service-provider ACSE, PS3.7 D.3.3.7); otherwise an AC;
* every RQ context answered by exactly one AC context item with its ID and a
  result of Table 9-18; an accepted one with one transfer syntax that was
  proposed for it (9.3.3.2); no abstract syntax sub-item in the AC;
* Maximum Length (D.1) and Implementation Class UID (D.3.3.2) present once;
* role answers only for SOP classes proposed in a context and in a role item,
  never 1 for a role proposed as 0 (D.3.3.4); an asynchronous operations
  window only if proposed, and within what was offered (D.3.3.3); extended
  negotiation answers only for offered classes, no common extended
  negotiation item in an AC (D.3.3.5, D.3.3.6); a user identity server
  response only when requested and accepted, empty for types 1 and 2
  (D.3.3.7, Table D.3-15);
* and what the server's configuration promises (supported contexts and
  transfer syntax preference, ``accept_scp_role``, ``extended_negotiation``,
  ``authenticate``, ``max_pdu``).

The same bytes go to pynetdicom 3.0.4's AE (in this process, configured with
the same contexts, roles, AE title checks and identity verdicts) and, for a
smaller sample, to dcmtk 3.6.7's storescp (dicomnet then configured as
storescp is by default); where the standard decides, the answers must agree:
accept or reject, the context results, the transfer syntax when only one
proposed syntax is supported, the rejection source and reason.

dicomnet fault found, fixed: the A-ASSOCIATE-AC's bytes 11-42 were the RQ's
AE titles stripped and re-padded, not the bytes received (PS3.8 Table 9-17);
see ``test_ac_reserved_fields_echo_the_rq``. dcmtk echoes them.

Peer faults worked around (pynetdicom 3.0.4):

* it rejects a protocol-version field with bit 0 *and* other bits set
  (e.g. 0003H) with (1, 2, 2), where PS3.8 Table 9-11 says a version-1
  receiver "shall only test that bit 0 is set": such RQs are not compared;
* it rejects a refused user identity as rejected-*transient* (2, 2, 1); PS3.7
  D.3.3.7 says an authorization failure is rejected-permanent with source
  service-provider (ACSE): only source and reason are compared then;
* after verifying a username (types 1, 2) for which a positive response was
  requested it sends no User Identity sub-item, where PS3.7 Table D.3-15
  defines the (zero-length) server response for exactly that case: the
  response is compared for types 3-5 only;
* it answers an RQ holding a user information sub-item of an unassigned type
  (5AH, 7FH, FFH) with an A-ABORT (its decoder has no entry for the type),
  where PS3.8 D.2 note 2 requires acceptors to ignore such sub-items and not
  reject the association for them: such RQs are not compared;
* like dicomnet it strips the AE titles it echoes in the AC (not compared).
"""
from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dicomnet import Server
from dicomnet.pdu.items import UserIdentityRQ
from dicomnet.pdu.negotiation import default_supported
from dicomnet.types.sop_classes import DEFAULT_ABSTRACT_SYNTAXES, all_sop_classes, is_storage_sop_class

HOST = "127.0.0.1"
AE = "DICOMNET"
TIMEOUT = 10.0
DICOM_APP = "1.2.840.10008.3.1.1.1"

VERIFICATION = "1.2.840.10008.1.1"
STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
CR = "1.2.840.10008.5.1.4.1.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
US_MF = "1.2.840.10008.5.1.4.1.1.3.1"
MR = "1.2.840.10008.5.1.4.1.1.4"
US = "1.2.840.10008.5.1.4.1.1.6.1"
SC = "1.2.840.10008.5.1.4.1.1.7"
MF_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"
XA = "1.2.840.10008.5.1.4.1.1.12.1"
NM = "1.2.840.10008.5.1.4.1.1.20"
PET = "1.2.840.10008.5.1.4.1.1.128"
RT_PLAN = "1.2.840.10008.5.1.4.1.1.481.5"
PATIENT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"
WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
STORAGE_SERVICE = "1.2.840.10008.4.2"
QR_SERVICE = "1.2.840.10008.4.3"
PRIVATE = "1.2.826.0.1.3680043.9.7777.1.5"            # a private class one server supports
UNKNOWN = ["1.2.826.0.1.3680043.9.7777.1.1", "1.2.826.0.1.3680043.9.7777.1.2.3", "2.25.1234567"]

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"
BIG = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.70"
JPEG_LS = "1.2.840.10008.1.2.4.80"
J2K = "1.2.840.10008.1.2.4.90"
RLE = "1.2.840.10008.1.2.5"
UNKNOWN_TS = ["1.2.826.0.1.3680043.9.7777.2.1", "1.2.826.0.1.3680043.9.7777.2.22"]

# PDU and item types (PS3.8 Tables 9-11 .. 9-26, PS3.7 Annex D.3.3).
RQ, AC, RJ, ABORT = 0x01, 0x02, 0x03, 0x07
APP_ITEM, PC_RQ, PC_AC, ABSTRACT, TRANSFER, USER = 0x10, 0x20, 0x21, 0x30, 0x40, 0x50
MAX_LENGTH, IMPL_UID, ASYNC, ROLE, IMPL_NAME, EXTENDED, COMMON, IDENTITY_RQ, IDENTITY_AC = range(0x51, 0x5A)
A_ABORT_PDU = bytes((ABORT, 0, 0, 0, 0, 4, 0, 0, 0, 0))

#: Valid A-ASSOCIATE-RJ (source, reason) pairs, PS3.8 Table 9-21.
RJ_REASONS = {(1, 1), (1, 2), (1, 3), (1, 7), (2, 1), (2, 2), (3, 1), (3, 2)}


# ============================================================ the A-ASSOCIATE-RQ
def item(kind: int, value: bytes, reserved: int = 0) -> bytes:
    """Item type, reserved byte, 2-byte big-endian length, value (PS3.8 9.3.1)."""
    return bytes((kind, reserved)) + struct.pack(">H", len(value)) + value


def field16(raw: bytes) -> bytes:
    """A value preceded by its 2-byte length (UIDs and fields inside sub-items)."""
    return struct.pack(">H", len(raw)) + raw


@dataclass(frozen=True)
class Context:
    id: int
    abstract: str
    syntaxes: tuple[str, ...]


@dataclass(frozen=True)
class Identity:
    kind: int
    positive: bool
    primary: bytes
    secondary: bytes = b""


@dataclass(frozen=True)
class Spec:
    """What one A-ASSOCIATE-RQ carries; :meth:`encode` writes its bytes."""

    contexts: tuple[Context, ...]
    called: str = AE
    calling: str = "GOODSCU"
    max_length: int = 16384
    implementation_uid: str = "1.2.826.0.1.3680043.9.7777.3"
    version_name: str | None = None
    window: tuple[int, int] | None = None
    roles: tuple[tuple[str, bool, bool], ...] = ()
    extended: tuple[tuple[str, bytes], ...] = ()
    common: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    identity: Identity | None = None
    app_context: str = DICOM_APP
    protocol_version: int = 1
    unknown_subitem: tuple[int, bytes] | None = None   # PS3.8 D.2 note 2: to be ignored

    def encode(self) -> bytes:
        # Table 9-11: version, reserved, called and calling AE (16 bytes, space padded), 32 reserved.
        body = struct.pack(">HH", self.protocol_version, 0) + self.called.encode().ljust(16)
        body += self.calling.encode().ljust(16) + bytes(32) + item(APP_ITEM, self.app_context.encode())
        for pc in self.contexts:  # Tables 9-13 .. 9-15; UIDs not padded (Annex F)
            sub = item(ABSTRACT, pc.abstract.encode()) + b"".join(item(TRANSFER, ts.encode()) for ts in pc.syntaxes)
            body += item(PC_RQ, bytes((pc.id, 0, 0, 0)) + sub)
        user = item(MAX_LENGTH, struct.pack(">L", self.max_length))        # D.1
        user += item(IMPL_UID, self.implementation_uid.encode())           # D.3.3.2
        if self.window is not None:                                         # D.3.3.3, Table D.3-7
            user += item(ASYNC, struct.pack(">HH", *self.window))
        for uid, scu, scp in self.roles:                                    # D.3.3.4, Table D.3-9
            user += item(ROLE, field16(uid.encode()) + bytes((scu, scp)))
        if self.version_name is not None:
            user += item(IMPL_NAME, self.version_name.encode())
        for uid, info in self.extended:                                     # D.3.3.5, Table D.3-11
            user += item(EXTENDED, field16(uid.encode()) + info)
        for uid, service, related in self.common:                           # D.3.3.6, Table D.3-12
            rel = b"".join(field16(r.encode()) for r in related)
            user += item(COMMON, field16(uid.encode()) + field16(service.encode()) + field16(rel))
        if self.identity is not None:                                       # D.3.3.7, Table D.3-14
            i = self.identity
            user += item(IDENTITY_RQ, bytes((i.kind, i.positive)) + field16(i.primary) + field16(i.secondary))
        if self.unknown_subitem is not None:
            user += item(*self.unknown_subitem)
        body += item(USER, user)
        return struct.pack(">BBL", RQ, 0, len(body)) + body

    @property
    def proposed(self) -> set[str]:
        return {pc.abstract for pc in self.contexts}

    @property
    def role_map(self) -> dict[str, tuple[bool, bool]]:
        return {uid: (scu, scp) for uid, scu, scp in self.roles}


# ============================================================ the answer
def split_items(data: bytes, where: str, problems: list[str]) -> list[tuple[int, int, bytes]]:
    """A run of items as (type, reserved byte, value); bad lengths are problems."""
    out, pos = [], 0
    while pos < len(data):
        if len(data) - pos < 4:
            problems.append(f"{where}: {len(data) - pos} stray bytes")
            break
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if pos + 4 + length > len(data):
            problems.append(f"{where}: item {data[pos]:02X}H overruns its container")
            break
        out.append((data[pos], data[pos + 1], data[pos + 4:pos + 4 + length]))
        pos += 4 + length
    return out


def read_field16(value: bytes, pos: int) -> tuple[bytes, int]:
    n = int.from_bytes(value[pos:pos + 2], "big")
    return value[pos + 2:pos + 2 + n], pos + 2 + n


def is_uid(raw: bytes) -> bool:
    return 0 < len(raw) <= 64 and all(c in b"0123456789." for c in raw)


@dataclass
class Answer:
    """An A-ASSOCIATE-AC, -RJ or A-ABORT as this file reads it (PS3.8 9.3.3, 9.3.4, 9.3.8)."""

    raw: bytes
    kind: int | None = None
    rj: tuple[int, int, int] | None = None
    app_contexts: list[bytes] = field(default_factory=list)
    results: dict[int, int] = field(default_factory=dict)           # context id -> result
    syntaxes: dict[int, list[bytes]] = field(default_factory=dict)  # context id -> its 40H values
    ids: list[int] = field(default_factory=list)                    # every 21H item's id, in order
    user: list[tuple[int, bytes]] = field(default_factory=list)
    user_items: int = 0
    roles: list[tuple[str, int, int]] = field(default_factory=list)
    extended: list[tuple[str, bytes]] = field(default_factory=list)
    identity_responses: list[bytes] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def subitems(self, kind: int) -> list[bytes]:
        return [v for k, v in self.user if k == kind]

    def accepted_syntax(self, cid: int) -> str | None:
        found = self.syntaxes.get(cid, [])
        return found[0].decode("ascii", "replace") if self.results.get(cid) == 0 and len(found) == 1 else None


def parse(raw: bytes) -> Answer:
    ans = Answer(raw)
    if len(raw) < 6:
        ans.problems.append(f"connection closed after {len(raw)} bytes, no A-ASSOCIATE answer")
        return ans
    ans.kind, body = raw[0], raw[6:]
    if raw[1] or int.from_bytes(raw[2:6], "big") != len(body):
        ans.problems.append("PDU header: reserved byte not 00H or PDU-length not the PDU's")
    if ans.kind in (RJ, ABORT):
        if len(body) != 4 or body[0]:
            ans.problems.append(f"PDU {ans.kind:02X}H: length {len(body)} (Tables 9-21, 9-26 fix 4) "
                                "or reserved byte not 00H")
        elif ans.kind == RJ:
            ans.rj = (body[1], body[2], body[3])
        return ans
    if ans.kind != AC or len(body) < 68:
        if ans.kind == AC:
            ans.problems.append("A-ASSOCIATE-AC shorter than its fixed fields")
        return ans
    if not int.from_bytes(body[0:2], "big") & 1 or body[2:4] != b"\0\0":
        ans.problems.append("A-ASSOCIATE-AC protocol-version without bit 0 or bytes 9-10 not 0000H (Table 9-17)")
    for kind, reserved, value in split_items(body[68:], "A-ASSOCIATE-AC", ans.problems):
        if reserved:
            ans.problems.append(f"item {kind:02X}H: reserved byte {reserved} (sent as 00H, PS3.8 9.3.3)")
        if kind == APP_ITEM:
            ans.app_contexts.append(value)
        elif kind == PC_AC and len(value) >= 4:
            cid, subs = value[0], split_items(value[4:], f"context {value[0]}", ans.problems)
            if value[1] or value[3] or any(r for _, r, _ in subs):
                ans.problems.append(f"context {cid}: a reserved byte is not 00H (Tables 9-18, 9-19)")
            if ABSTRACT in [k for k, _, _ in subs]:
                ans.problems.append(f"context {cid}: abstract syntax sub-item in the AC (Table 9-18 has none)")
            ans.ids.append(cid)
            ans.results[cid] = value[2]
            ans.syntaxes[cid] = [v for k, _, v in subs if k == TRANSFER]
        elif kind == USER:
            ans.user_items += 1
            subs = split_items(value, "user information", ans.problems)
            if any(r for _, r, _ in subs):
                ans.problems.append("a user information sub-item's reserved byte is not 00H")
            ans.user += [(k, v) for k, _, v in subs]
        elif kind in (PC_AC, PC_RQ, ABSTRACT, TRANSFER):
            ans.problems.append(f"item {kind:02X}H malformed or out of place at the A-ASSOCIATE-AC level")
    for value in ans.subitems(ROLE):                   # Table D.3-10
        uid, pos = read_field16(value, 0)
        if len(value) != pos + 2:
            ans.problems.append(f"role selection sub-item of {len(value)} bytes is malformed")
        else:
            ans.roles.append((uid.decode("ascii", "replace"), value[pos], value[pos + 1]))
    for value in ans.subitems(EXTENDED):               # Table D.3-11
        uid, pos = read_field16(value, 0)
        ans.extended.append((uid.decode("ascii", "replace"), value[pos:]))
    for value in ans.subitems(IDENTITY_AC):            # Table D.3-15
        response, pos = read_field16(value, 0)
        if pos != len(value):
            ans.problems.append("user identity sub-item (59H) length does not add up")
        ans.identity_responses.append(response)
    return ans


def exchange(port: int, rq: bytes) -> bytes:
    """Send ``rq``, return the answering PDU (b'' if the connection closed); an
    A-ASSOCIATE-AC is followed by an A-ABORT from us, every read is bounded."""
    with socket.create_connection((HOST, port), timeout=TIMEOUT) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendall(rq)
        head = _recv(sock, 6)
        if len(head) < 6:
            return head
        length = int.from_bytes(head[2:6], "big")
        data = head + _recv(sock, min(length, 1 << 20))
        if head[0] == AC:
            sock.sendall(A_ABORT_PDU)
        return data


def _recv(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


# ============================================================ server configurations
def server_response(primary: bytes) -> bytes:
    return b"ticket:" + primary[:16]


def authenticate(identity: UserIdentityRQ) -> bool | bytes:
    """Refuse primary fields starting with b"deny", else answer a server response."""
    return False if identity.primary_field.startswith(b"deny") else server_response(identity.primary_field)


def extended_reply(item: object) -> bytes | None:
    """Answer the first byte of the service-class-application-information (PS3.4 C.5.1.1)."""
    return getattr(item, "info")[:1] or None


def denied(identity: Identity | None) -> bool:
    return identity is not None and identity.primary.startswith(b"deny")


class GetSCP:
    """A handler with ``on_get``: the Server then accepts the SCP role for storage classes."""

    def on_get(self, ctx: object, query: object) -> list[object]:
        return []


CUSTOM = {
    CT: (JPEG_BASELINE, EXPLICIT, IMPLICIT),
    ENHANCED_CT: (J2K, JPEG_LS, EXPLICIT),
    MR: (IMPLICIT,),
    US_MF: (RLE, JPEG_LOSSLESS),
    SC: (EXPLICIT, DEFLATED, BIG),
    VERIFICATION: (IMPLICIT, EXPLICIT),
    STUDY_FIND: (EXPLICIT, IMPLICIT),
    STUDY_GET: (IMPLICIT,),
    STORAGE_COMMITMENT: (IMPLICIT,),
    PRIVATE: (UNKNOWN_TS[0], IMPLICIT),
}
CUSTOM_SCP = frozenset({CT, ENHANCED_CT, SC, PRIVATE})
STORESCP_CLASSES = (VERIFICATION, CT, ENHANCED_CT, MR, CR, SC, US, US_MF, NM, PET, RT_PLAN, XA, MF_WORD_SC)
#: What storescp accepts by default: local (little) endian explicit, big endian explicit, implicit.
STORESCP_SYNTAXES = (EXPLICIT, BIG, IMPLICIT)


@dataclass(frozen=True)
class Config:
    """One dicomnet Server configuration, and what it promises."""

    name: str
    contexts: Mapping[str, tuple[str, ...]] | None = None     # None: Server's default
    scp_role: Callable[[str], bool] = lambda uid: False
    get_handler: bool = False
    authenticate: bool = False
    require_identity: bool = False
    allowed_calling: tuple[str, ...] | None = None
    extended: bool = False
    max_pdu: int = 1 << 20
    requestor_order: bool = True

    @property
    def supported(self) -> Mapping[str, tuple[str, ...]]:
        return default_supported() if self.contexts is None else self.contexts

    def start(self) -> Server:
        kw: dict[str, object] = {"read_timeout": 5, "artim_timeout": 5, "max_pdu": self.max_pdu}
        if self.contexts is not None:
            kw["contexts"] = dict(self.contexts)
        if not self.get_handler:
            kw["accept_scp_role"] = self.scp_role
        if self.authenticate:
            kw["authenticate"] = authenticate
        if self.require_identity:
            kw["require_user_identity"] = True
        if self.allowed_calling is not None:
            kw["allowed_calling_aes"] = self.allowed_calling
        if self.extended:
            kw["extended_negotiation"] = extended_reply
        srv = Server(AE, GetSCP() if self.get_handler else None, **kw)  # type: ignore[arg-type]
        # The acceptor's transfer syntax preference (AcceptorPolicy.prefer_requestor_order).
        srv.policy.prefer_requestor_order = self.requestor_order
        return srv.start(HOST, 0)


CONFIGS = {c.name: c for c in (
    Config("default"),
    Config("getscp", get_handler=True, scp_role=is_storage_sop_class, authenticate=True, extended=True,
           max_pdu=16384),
    Config("custom", contexts=CUSTOM, scp_role=CUSTOM_SCP.__contains__, authenticate=True, extended=True,
           max_pdu=0, requestor_order=False),
    Config("strict", contexts={CT: (EXPLICIT,), VERIFICATION: (IMPLICIT,)}, authenticate=True,
           require_identity=True, allowed_calling=("GOODSCU", " OTHERSCU "), max_pdu=7),
    Config("storescp", contexts={uid: STORESCP_SYNTAXES for uid in STORESCP_CLASSES}),
)}
#: The configurations pynetdicom's AE can mirror (it has no "identity required").
PYNETDICOM_CONFIGS = ("default", "getscp", "custom")


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Server]]:
    started: dict[str, Server] = {}
    try:
        for name, cfg in CONFIGS.items():
            started[name] = cfg.start()
        yield started
    finally:
        for srv in started.values():
            srv.shutdown()


# ============================================================ the standard's rules
@dataclass(frozen=True)
class Ground:
    """A reason in the RQ to reject, and the RJ (result, source, reason) triples for it."""

    name: str
    triples: frozenset[tuple[int, int, int]]
    mandatory: bool = True      # an AC is wrong
    abort_ok: bool = False      # the RQ breaks a "shall": an A-ABORT is an answer too


def _both_results(source: int, reason: int) -> frozenset[tuple[int, int, int]]:
    return frozenset({(1, source, reason), (2, source, reason)})


def grounds(spec: Spec, cfg: Config) -> list[Ground]:
    out = []
    if not spec.protocol_version & 1:   # Table 9-11: a version-1 receiver tests bit 0 only
        out.append(Ground("protocol version", _both_results(2, 2)))
    if spec.app_context != DICOM_APP:   # 7.1.1.2: the acceptor may also answer with its own name
        out.append(Ground("application context", _both_results(1, 2), mandatory=False))
    # Table 9-11: an AE title of 16 spaces "shall not be used".
    if not spec.called.strip():
        out.append(Ground("called AE title all spaces", _both_results(1, 7), abort_ok=True))
    elif spec.called.strip() != AE:     # the Server checks the called AE title
        out.append(Ground("called AE title", _both_results(1, 7)))
    if not spec.calling.strip():
        out.append(Ground("calling AE title all spaces", _both_results(1, 3), mandatory=False, abort_ok=True))
    allowed = None if cfg.allowed_calling is None else {a.strip() for a in cfg.allowed_calling}
    if spec.calling.strip() and allowed is not None and spec.calling.strip() not in allowed:
        out.append(Ground("calling AE title", _both_results(1, 3)))
    if cfg.require_identity and spec.identity is None:
        out.append(Ground("no user identity", frozenset({(1, 2, 1), (1, 1, 1)})))
    if cfg.authenticate and denied(spec.identity):
        # PS3.7 D.3.3.7: an authorization failure is rejected-permanent, service-provider (ACSE).
        out.append(Ground("user identity refused", frozenset({(1, 2, 1)})))
    return out


def check_association(spec: Spec, cfg: Config, ans: Answer) -> list[str]:
    """AC or RJ as the grounds require; an RJ's fields valid for one of them."""
    problems = list(ans.problems)
    found = grounds(spec, cfg)
    mandatory = [g.name for g in found if g.mandatory]
    if ans.kind == RJ and ans.rj is not None:
        result, source, reason = ans.rj
        if result not in (1, 2) or (source, reason) not in RJ_REASONS:
            problems.append(f"A-ASSOCIATE-RJ {ans.rj} is not in PS3.8 Table 9-21")
        if not found:
            problems.append(f"rejected {ans.rj} though nothing in the RQ calls for it")
        elif not any(ans.rj in g.triples for g in found):
            problems.append(f"rejected {ans.rj}; for {[g.name for g in found]} expected one of "
                            f"{sorted(set().union(*(g.triples for g in found)))}")
    elif ans.kind == AC:
        if mandatory:
            problems.append(f"accepted despite {mandatory}")
        problems += check_ac(spec, ans)
    elif ans.kind == ABORT and not any(g.abort_ok for g in found):
        problems.append(f"A-ABORT {ans.raw[6:].hex()} though the RQ is well formed")
    elif ans.kind not in (AC, RJ, ABORT, None):
        problems.append(f"answered with PDU type {ans.kind:02X}H, not an A-ASSOCIATE-AC/RJ")
    return problems


def _within(answer: int, offered: int) -> bool:
    """``answer`` <= ``offered`` where 0 means unlimited (PS3.7 D.3.3.3)."""
    return offered == 0 or answer != 0 and answer <= offered


def check_ac(spec: Spec, ans: Answer) -> list[str]:
    """What PS3.8 9.3.3 and PS3.7 D.3.3 require of any A-ASSOCIATE-AC to ``spec``."""
    problems: list[str] = []
    if ans.app_contexts != [DICOM_APP.encode()]:  # the one name PS3.7 Annex A defines
        problems.append(f"application context items: {ans.app_contexts}")
    proposed = {pc.id: pc for pc in spec.contexts}
    if sorted(ans.ids) != sorted(proposed):
        problems.append(f"AC context ids {sorted(ans.ids)} != RQ ids {sorted(proposed)} (each exactly once)")
    for cid, result in ans.results.items():
        if result not in range(5):
            problems.append(f"context {cid}: result {result} not in Table 9-18")
        if len(ans.syntaxes[cid]) != 1:
            problems.append(f"context {cid}: {len(ans.syntaxes[cid])} transfer syntax sub-items, Table 9-18 has one")
        if result == 0 and cid in proposed:
            ts = ans.accepted_syntax(cid)
            if ts not in proposed[cid].syntaxes:
                problems.append(f"context {cid} accepted with {ts!r}, proposed {proposed[cid].syntaxes}")
    if ans.user_items != 1:
        problems.append(f"{ans.user_items} user information items, Table 9-17 has one")
    counts = {k: len(ans.subitems(k)) for k in range(MAX_LENGTH, IDENTITY_AC + 1)}
    if counts[MAX_LENGTH] != 1 or any(len(v) != 4 for v in ans.subitems(MAX_LENGTH)):
        problems.append("Maximum Length sub-item not present exactly once with 4 bytes (PS3.8 D.1)")
    if counts[IMPL_UID] != 1 or not all(is_uid(v) for v in ans.subitems(IMPL_UID)):
        problems.append("Implementation Class UID not present exactly once (PS3.7 D.3.3.2)")
    if counts[IMPL_NAME] > 1 or not all(0 < len(v) <= 16 for v in ans.subitems(IMPL_NAME)):
        problems.append("Implementation Version Name not 1..16 characters, at most once")
    if counts[COMMON] or counts[IDENTITY_RQ]:
        problems.append("A-ASSOCIATE-AC holds an RQ-only sub-item (57H or 58H; PS3.7 D.3.3.6, D.3.3.7)")
    # D.3.3.3: omitted if not proposed; each limit within what the requestor offered.
    for value in ans.subitems(ASYNC):
        if spec.window is None:
            problems.append("asynchronous operations window answered but not proposed (D.3.3.3)")
        elif len(value) != 4:
            problems.append("asynchronous operations window sub-item is not 4 bytes")
        else:
            invoked, performed = struct.unpack(">HH", value)
            rq_invoked, rq_performed = spec.window
            if not (_within(invoked, rq_performed) and _within(performed, rq_invoked)):
                problems.append(f"window ({invoked}, {performed}) exceeds the offer {spec.window} (D.3.3.3)")
    if counts[ASYNC] > 1:
        problems.append("more than one asynchronous operations window")
    # D.3.3.4: one answer per proposed class, never 1 for a role proposed as 0.
    rq_roles = spec.role_map
    answered = [r[0] for r in ans.roles]
    if len(answered) != len(set(answered)):
        problems.append(f"role selection answered twice for a class: {answered}")
    for uid, scu, scp in ans.roles:
        if uid not in rq_roles or uid not in spec.proposed:
            problems.append(f"role selection answered for {uid}, not proposed in a role item and a context")
            continue
        if scu > 1 or scp > 1 or scu > rq_roles[uid][0] or scp > rq_roles[uid][1]:
            problems.append(f"role answer ({scu}, {scp}) for {uid} grants more than {rq_roles[uid]} (D.3.3.4)")
    offered = {uid for uid, _ in spec.extended}
    extended = [uid for uid, _ in ans.extended]
    if not set(extended) <= offered or len(extended) != len(set(extended)):
        problems.append(f"SOP class extended negotiation answers {extended}, offered {sorted(offered)}")
    responses = ans.identity_responses
    if len(responses) > 1:
        problems.append("more than one user identity sub-item")
    if responses and (spec.identity is None or not spec.identity.positive):
        problems.append("user identity server response without a request for one (D.3.3.7)")
    if responses and spec.identity is not None and spec.identity.kind in (1, 2) and responses[0]:
        problems.append("non-empty server response for a username identity (Table D.3-15)")
    return problems


def candidates(pc: Context, ours: tuple[str, ...], requestor_first: bool) -> list[str]:
    if requestor_first:
        return [ts for ts in dict.fromkeys(pc.syntaxes) if ts in ours]
    return [ts for ts in ours if ts in pc.syntaxes]


def check_promises(spec: Spec, cfg: Config, ans: Answer) -> list[str]:
    """What the Server's configuration promises for an accepted association."""
    problems: list[str] = []
    supported = cfg.supported
    results = ans.results
    want_roles: dict[str, tuple[int, int]] = {}
    accepted: set[str] = set()
    for pc in spec.contexts:
        result = results.get(pc.id)
        ours = supported.get(pc.abstract)
        if ours is None:
            if result not in (1, 2, 3):
                problems.append(f"context {pc.id} ({pc.abstract}, unsupported): result {result}")
            continue
        order = candidates(pc, ours, cfg.requestor_order)
        if not order:
            if result not in (1, 2, 4):
                problems.append(f"context {pc.id} ({pc.abstract}, {pc.syntaxes} none supported): result {result}")
            continue
        role = spec.role_map.get(pc.abstract)
        scu, scp = (True, False) if role is None else (role[0], role[1] and cfg.scp_role(pc.abstract))
        if not (scu or scp):
            if result == 0:
                problems.append(f"context {pc.id} accepted with no role left for the requestor")
            continue
        if result != 0:
            problems.append(f"context {pc.id} ({pc.abstract}, {pc.syntaxes}) rejected ({result}); "
                            f"supported with {ours}")
            continue
        accepted.add(pc.abstract)
        if role is not None:
            want_roles[pc.abstract] = (int(scu), int(scp))
        # Only we send when the requestor is SCP only: our order decides (AcceptorPolicy).
        want = candidates(pc, ours, False)[0] if scp and not scu else order[0]
        if ans.accepted_syntax(pc.id) != want:
            problems.append(f"context {pc.id} ({pc.abstract}): {ans.accepted_syntax(pc.id)} chosen from "
                            f"{pc.syntaxes}; the configured preference {ours} gives {want}")
    got_roles = {uid: (scu, scp) for uid, scu, scp in ans.roles}
    if got_roles != want_roles:
        problems.append(f"role answers {got_roles}, expected {want_roles}")
    lengths = ans.subitems(MAX_LENGTH)
    if lengths and int.from_bytes(lengths[0], "big") != cfg.max_pdu:
        problems.append(f"Maximum Length {int.from_bytes(lengths[0], 'big')} != max_pdu {cfg.max_pdu}")
    want_ext = {uid: info[:1] for uid, info in spec.extended if cfg.extended and uid in accepted and info}
    if dict(ans.extended) != want_ext:
        problems.append(f"extended negotiation answers {dict(ans.extended)}, expected {want_ext}")
    identity = spec.identity
    if cfg.authenticate and identity is not None and identity.positive:
        want = [b"" if identity.kind in (1, 2) else server_response(identity.primary)]
    else:
        want = []
    if ans.identity_responses != want:
        problems.append(f"user identity responses {ans.identity_responses}, expected {want}")
    return problems


def check_dicomnet(spec: Spec, cfg: Config, ans: Answer) -> list[str]:
    problems = check_association(spec, cfg, ans)
    if ans.kind == AC:
        problems += check_promises(spec, cfg, ans)
    return problems


# ============================================================ strategies
REGISTRY = sorted(str(c.uid) for c in all_sop_classes())
COMMON_ABSTRACTS = sorted({*CUSTOM, *STORESCP_CLASSES, *(str(u) for u in DEFAULT_ABSTRACT_SYNTAXES[:12]),
                           PATIENT_FIND, STUDY_MOVE, WORKLIST_FIND})
abstracts = st.one_of(st.sampled_from(COMMON_ABSTRACTS), st.sampled_from(REGISTRY), st.sampled_from(UNKNOWN))
syntaxes = st.sampled_from([IMPLICIT, EXPLICIT, BIG, DEFLATED, IMPLICIT, EXPLICIT, JPEG_BASELINE, JPEG_LOSSLESS,
                            JPEG_LS, J2K, RLE, *UNKNOWN_TS])
windows = st.sampled_from([0, 1, 2, 16, 65535]) | st.integers(0, 65535)
ODD_IDS = list(range(1, 256, 2))
VERSION_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-. abcxyz"


@st.composite
def identities(draw: st.DrawFn) -> Identity:
    kind = draw(st.integers(1, 5))
    primary = draw(st.sampled_from([b"alice", b"bob", b"carol", b"deny-mallory"])
                   | st.binary(min_size=1, max_size=24))
    secondary = draw(st.binary(min_size=1, max_size=16)) if kind == 2 else b""
    return Identity(kind, draw(st.booleans()), primary, secondary)


@st.composite
def specs(draw: st.DrawFn, abstract: st.SearchStrategy[str] = abstracts, variants: bool = True,
          many: bool = True) -> Spec:
    n = draw(st.integers(1, 40))
    if many and draw(st.integers(0, 15)) == 0:
        n = draw(st.sampled_from([64, 127, 128]))
    ids = draw(st.permutations(ODD_IDS))[:n]
    contexts = tuple(Context(cid, draw(abstract), tuple(draw(st.lists(syntaxes, min_size=1, max_size=5))))
                     for cid in ids)
    # Classes for role and extended negotiation items: mostly proposed ones.
    uids = st.sampled_from(sorted({pc.abstract for pc in contexts})) | st.sampled_from([US, NM, UNKNOWN[0]])
    kw: dict[str, object] = {}
    if variants:
        kw["called"] = draw(st.sampled_from([AE] * 8 + [" " + AE, "   " + AE, "WRONGAE", ""]))
        kw["calling"] = draw(st.sampled_from(["GOODSCU"] * 6 + ["OTHERSCU", "  GOODSCU", "EVILSCU",
                                                                "SIXTEENCHARSAE16", ""]))
        kw["app_context"] = draw(st.sampled_from([DICOM_APP] * 10 + ["1.2.840.10008.3.1.1.2", "1.2.3.4",
                                                                     DICOM_APP + "\0"]))
        kw["protocol_version"] = draw(st.sampled_from([1] * 12 + [3, 0x8001, 0xFFFF, 0, 2]))
    return Spec(
        contexts=contexts,
        max_length=draw(st.sampled_from([0, 7, 8, 16384, 16383, 0xFFFFFFFF]) | st.integers(7, 0xFFFFFFFF)),
        implementation_uid=draw(st.sampled_from(["1.2.826.0.1.3680043.9.7777.3", "2.25.9", "1.2.3.4.5.6.7"])),
        version_name=draw(st.none() | st.text(VERSION_CHARS, min_size=1, max_size=16)),
        window=draw(st.none() | st.tuples(windows, windows)),
        roles=tuple(draw(st.lists(st.tuples(uids, st.booleans(), st.booleans()), max_size=6,
                                  unique_by=lambda r: r[0]))),
        extended=tuple(draw(st.lists(st.tuples(uids, st.binary(min_size=1, max_size=6) | st.just(b"")), max_size=4,
                                     unique_by=lambda e: e[0]))),
        common=tuple(draw(st.lists(st.tuples(uids, st.sampled_from([STORAGE_SERVICE, QR_SERVICE]),
                                             st.lists(uids, max_size=2).map(tuple)),
                                   max_size=3, unique_by=lambda c: c[0]))),
        identity=draw(st.none() | identities()),
        unknown_subitem=draw(st.none() | st.tuples(st.sampled_from([0x5A, 0x7F, 0xFF]), st.binary(max_size=8))),
        **kw,  # type: ignore[arg-type]
    )


SETTINGS = dict(deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: 128 contexts: every odd ID, each class of the custom configuration and unknown ones, mixed syntaxes.
FULL = Spec(
    contexts=tuple(Context(cid, [*CUSTOM, *UNKNOWN][i % 13], ((IMPLICIT,), (JPEG_BASELINE, EXPLICIT),
                                                            (UNKNOWN_TS[1],), (RLE, RLE, BIG))[i % 4])
                   for i, cid in enumerate(range(1, 256, 2))),
    roles=((CT, True, True), (SC, False, True), (MR, False, False), (NM, True, True)),
    window=(0, 3), identity=Identity(4, True, b"<saml/>"), extended=((STUDY_FIND, b"\x01\x01"),),
)


# ============================================================ the tests
@settings(max_examples=400, **SETTINGS)  # type: ignore[arg-type]
@given(name=st.sampled_from(sorted(CONFIGS)), spec=specs())
@example(name="custom", spec=FULL)
@example(name="getscp", spec=FULL)
def test_dicomnet_answers_follow_the_standard(servers: dict[str, Server], name: str, spec: Spec) -> None:
    ans = parse(exchange(servers[name].port, spec.encode()))
    problems = check_dicomnet(spec, CONFIGS[name], ans)
    assert not problems, "\n".join(problems[:20])


def _one_class_per_role(combos: list[tuple[str, bool, bool]], unproposed: list[str]) -> Spec:
    contexts = tuple(Context(2 * i + 1, uid, (IMPLICIT, EXPLICIT)) for i, (uid, _, _) in enumerate(combos))
    roles = tuple(combos) + tuple((uid, True, True) for uid in unproposed)
    return Spec(contexts=contexts, roles=roles)


@pytest.mark.parametrize("name", ["getscp", "custom"])
def test_every_role_combination(servers: dict[str, Server], name: str) -> None:
    """Each (SCU, SCP) proposal for a class whose SCP role the server accepts and
    for one whose it does not, plus role items for classes in no context."""
    combos = [(CT, False, False), (SC, False, True), (ENHANCED_CT, True, False), (US_MF, True, True),
              (STUDY_FIND, False, False), (STUDY_GET, False, True), (MR, True, False), (VERIFICATION, True, True)]
    spec = _one_class_per_role(combos, [NM, UNKNOWN[1]])
    cfg = CONFIGS[name]
    assert any(cfg.scp_role(u) for u, _, _ in combos) and not all(cfg.scp_role(u) for u, _, _ in combos)
    ans = parse(exchange(servers[name].port, spec.encode()))
    assert ans.kind == AC
    problems = check_dicomnet(spec, cfg, ans)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("kind", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("positive", [True, False])
@pytest.mark.parametrize("primary", [b"alice", b"deny-eve"])
def test_user_identity_types(servers: dict[str, Server], kind: int, positive: bool, primary: bytes) -> None:
    identity = Identity(kind, positive, primary, b"secret" if kind == 2 else b"")
    spec = Spec(contexts=(Context(1, CT, (EXPLICIT,)),), identity=identity)
    for name in ("custom", "strict"):
        ans = parse(exchange(servers[name].port, spec.encode()))
        assert ans.kind == (RJ if denied(identity) else AC), name
        problems = check_dicomnet(spec, CONFIGS[name], ans)
        assert not problems, "\n".join(problems)


@pytest.mark.parametrize("called, calling", [
    (AE, "SCU"),
    (AE + "       ", "SIXTEENCHARSAE16"),
    ("  " + AE, "SCU"),
    (AE, "   SCU"),
])
def test_ac_reserved_fields_echo_the_rq(servers: dict[str, Server], called: str, calling: str) -> None:
    """PS3.8 Table 9-17: bytes 11-26, 27-42 and 43-74 of the A-ASSOCIATE-AC are
    "sent with a value identical to the value received in the same field of the
    A-ASSOCIATE-RQ PDU". Leading spaces are insignificant in an AE title (Table
    9-11), so an RQ may carry them; dcmtk's storescp echoes them, byte for byte."""
    rq = Spec(contexts=(Context(1, VERIFICATION, (IMPLICIT,)),), called=called, calling=calling).encode()
    raw = exchange(servers["default"].port, rq)
    assert raw[0] == AC
    assert raw[10:74] == rq[10:74]


# ------------------------------------------------------------ the oracles
def determined(pc: Context, spec: Spec, supported: Mapping[str, tuple[str, ...]]) -> bool | None:
    """Accept (True) or reject (False) for an acceptor supporting ``supported``,
    or None where the standard leaves it open (the requestor turned down the
    SCU role: reject, or accept with the default roles, PS3.7 D.3.3.4)."""
    ours = supported.get(pc.abstract)
    if ours is None or not any(ts in ours for ts in pc.syntaxes):
        return False
    role = spec.role_map.get(pc.abstract)
    return True if role is None or role[0] else None


def compare(spec: Spec, cfg: Config, ours: Answer, theirs: Answer, peer: str) -> list[str]:
    """Where the standard decides, the peer's answer and ours must agree."""
    if peer == "pynetdicom" and (spec.protocol_version != 1 or spec.unknown_subitem is not None):
        return []  # pynetdicom faults: more than bit 0 tested; unknown sub-items (module docstring)
    found = grounds(spec, cfg)
    if any(g.abort_ok or not g.mandatory for g in found):
        return []  # the standard leaves the answer open: another application context name
        # (PS3.8 7.1.1.2), an RQ breaking a "shall" (abort or reject)
    problems = [f"{peer}: {p}" for p in theirs.problems + (check_ac(spec, theirs) if theirs.kind == AC else [])]
    if ours.kind != theirs.kind:
        return problems + [f"dicomnet answered {ours.kind}, {peer} {theirs.kind} ({[g.name for g in found]})"]
    if ours.kind == RJ and len(found) == 1 and ours.rj and theirs.rj:
        skip_result = peer == "pynetdicom" and found[0].name == "user identity refused"
        if ours.rj[1:] != theirs.rj[1:] or not skip_result and ours.rj[0] != theirs.rj[0]:
            problems.append(f"{found[0].name}: dicomnet {ours.rj}, {peer} {theirs.rj}")
    if ours.kind != AC:
        return problems
    for pc in spec.contexts:
        decided = determined(pc, spec, cfg.supported)
        a, b = ours.results.get(pc.id), theirs.results.get(pc.id)
        if decided is None or a is None or b is None:
            continue
        if (a == 0) != (b == 0):
            problems.append(f"context {pc.id} ({pc.abstract}, {pc.syntaxes}): dicomnet {a}, {peer} {b}")
        elif a == 0 and len(candidates(pc, cfg.supported[pc.abstract], True)) == 1 \
                and ours.accepted_syntax(pc.id) != theirs.accepted_syntax(pc.id):
            problems.append(f"context {pc.id}: dicomnet chose {ours.accepted_syntax(pc.id)}, "
                            f"{peer} {theirs.accepted_syntax(pc.id)} (only one proposed syntax is supported)")
    identity = spec.identity
    if (cfg.authenticate and identity is not None and identity.positive
            and not (peer == "pynetdicom" and identity.kind in (1, 2))):
        if ours.identity_responses != theirs.identity_responses:
            problems.append(f"user identity response: dicomnet {ours.identity_responses}, "
                            f"{peer} {theirs.identity_responses}")
    return problems


@pytest.fixture(scope="module")
def pynetdicom_servers() -> Iterator[dict[str, int]]:
    """pynetdicom AEs mirroring :data:`PYNETDICOM_CONFIGS`, in this process."""
    from tests.integration.peers import record_started, require

    require("pynetdicom")
    from pynetdicom import AE as PyAE
    from pynetdicom import evt

    def on_user_id(event: object) -> tuple[bool, bytes]:
        primary = getattr(event, "primary_field")
        return not primary.startswith(b"deny"), server_response(primary)

    running, aes = {}, []
    try:
        for name in PYNETDICOM_CONFIGS:
            cfg = CONFIGS[name]
            ae = PyAE(AE)
            ae.require_called_aet = True
            ae.maximum_pdu_size = cfg.max_pdu
            ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 5
            # Its association threads outlive our A-ABORTs a little: a low limit
            # would answer (2, 3, 2) local-limit-exceeded to a quick series of RQs.
            ae.maximum_associations = 1000
            for uid, ts in cfg.supported.items():
                ae.add_supported_context(uid, list(ts), scu_role=True, scp_role=bool(cfg.scp_role(uid)))
            handlers = [(evt.EVT_USER_ID, on_user_id)] if cfg.authenticate else []
            aes.append(ae)
            running[name] = ae.start_server((HOST, 0), block=False, evt_handlers=handlers)
        record_started("pynetdicom")
        yield {name: srv.server_address[1] for name, srv in running.items()}
    finally:
        for srv in running.values():
            srv.shutdown()
        # Its association threads wait out their own timeouts after our A-ABORT: end them now.
        for ae in aes:
            for assoc in list(ae.active_associations):
                assoc.abort()
                assoc.join(TIMEOUT)


@pytest.mark.peers
@settings(max_examples=150, **SETTINGS)  # type: ignore[arg-type]
@given(name=st.sampled_from(PYNETDICOM_CONFIGS), spec=specs())
@example(name="custom", spec=FULL)
def test_pynetdicom_agrees_where_the_standard_decides(servers: dict[str, Server],
                                                      pynetdicom_servers: dict[str, int],
                                                      name: str, spec: Spec) -> None:
    rq = spec.encode()
    ours = parse(exchange(servers[name].port, rq))
    theirs = parse(exchange(pynetdicom_servers[name], rq))
    problems = compare(spec, CONFIGS[name], ours, theirs, "pynetdicom")
    assert not problems, "\n".join(problems[:20])


@pytest.fixture(scope="module")
def storescp_port() -> Iterator[int]:
    from tests.integration.peers import Storescp, require

    require("storescp", "echoscu")
    with Storescp(aet=AE, args=["-ta", "5", "-td", "5"]) as peer:
        yield peer.port


STORESCP_ABSTRACTS = st.sampled_from([*STORESCP_CLASSES, STUDY_FIND, WORKLIST_FIND, STORAGE_COMMITMENT, *UNKNOWN])


@pytest.mark.peers
@settings(max_examples=50, **SETTINGS)  # type: ignore[arg-type]
@given(spec=specs(STORESCP_ABSTRACTS, variants=False, many=False),
       version=st.sampled_from([1, 1, 3, 0x8001]), called=st.sampled_from([AE, " " + AE]))
def test_dcmtk_storescp_agrees_where_the_standard_decides(servers: dict[str, Server], storescp_port: int,
                                                          spec: Spec, version: int, called: str) -> None:
    spec = replace(spec, protocol_version=version, called=called)
    rq = spec.encode()
    ours = parse(exchange(servers["storescp"].port, rq))
    theirs = parse(exchange(storescp_port, rq))
    problems = compare(spec, CONFIGS["storescp"], ours, theirs, "storescp")
    assert not problems, "\n".join(problems[:20])
