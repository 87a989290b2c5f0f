"""The items and sub-items carried in A-ASSOCIATE-RQ/AC (PS3.8 9.3.2, 9.3.3, PS3.7 Annex D).

Every class here is a frozen, slotted dataclass that checks its own fields when
it is built; a bad field raises :class:`dicomnet.errors.PDUError` (a
``ValueError``), a field of the wrong Python type raises ``TypeError``.

Each item knows how to write itself (``_encode() -> bytes``, header included) and
the module has one decoder per item (``_decode_*``), used by
:mod:`dicomnet.pdu.pdus`. Decoders receive the item *value* (the bytes after
the 4-byte item header) and check every inner length against what is there.

Wire layout shared by every item and sub-item (PS3.8 Table 9-12 etc.)::

    byte 0   item type
    byte 1   reserved (00H; sent as 0, never tested on receipt) -- for item 57H
             this byte is the sub-item version (PS3.7 D.3.3.6)
    byte 2-3 item length, big-endian, counting the bytes that follow
"""
from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from typing import Union

from ..errors import PDUError

__all__ = [
    "PresentationContextRQ",
    "PresentationContextAC",
    "RoleSelection",
    "SOPClassExtendedNegotiation",
    "SOPClassCommonExtendedNegotiation",
    "UserIdentityRQ",
    "UserIdentityAC",
    "AsyncOperationsWindow",
    "UserInformation",
    "ACCEPTANCE",
    "USER_REJECTION",
    "NO_REASON",
    "ABSTRACT_SYNTAX_NOT_SUPPORTED",
    "TRANSFER_SYNTAXES_NOT_SUPPORTED",
    "PRESENTATION_RESULT_DESCRIPTIONS",
]

logger = logging.getLogger("dicomnet")

# Item types (PS3.8 Table 9-11 .. 9-18, PS3.7 Annex D).
ITEM_APPLICATION_CONTEXT = 0x10
ITEM_PRESENTATION_CONTEXT_RQ = 0x20
ITEM_PRESENTATION_CONTEXT_AC = 0x21
ITEM_ABSTRACT_SYNTAX = 0x30
ITEM_TRANSFER_SYNTAX = 0x40
ITEM_USER_INFORMATION = 0x50
SUB_MAXIMUM_LENGTH = 0x51
SUB_IMPLEMENTATION_CLASS_UID = 0x52
SUB_ASYNC_OPERATIONS_WINDOW = 0x53
SUB_ROLE_SELECTION = 0x54
SUB_IMPLEMENTATION_VERSION_NAME = 0x55
SUB_SOP_CLASS_EXTENDED = 0x56
SUB_SOP_CLASS_COMMON_EXTENDED = 0x57
SUB_USER_IDENTITY_RQ = 0x58
SUB_USER_IDENTITY_AC = 0x59

# Presentation context result/reason (PS3.8 Table 9-18).
ACCEPTANCE = 0
USER_REJECTION = 1
NO_REASON = 2
ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
TRANSFER_SYNTAXES_NOT_SUPPORTED = 4
PRESENTATION_RESULT_DESCRIPTIONS = {
    ACCEPTANCE: "acceptance",
    USER_REJECTION: "user-rejection",
    NO_REASON: "no-reason (provider rejection)",
    ABSTRACT_SYNTAX_NOT_SUPPORTED: "abstract-syntax-not-supported (provider rejection)",
    TRANSFER_SYNTAXES_NOT_SUPPORTED: "transfer-syntaxes-not-supported (provider rejection)",
}

_UID_CHARS = frozenset("0123456789.")
_H = struct.Struct(">H")
_HH = struct.Struct(">HH")
_L = struct.Struct(">L")


# --------------------------------------------------------------------- helpers
def _check_int(value: object, name: str, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise PDUError(f"{name} must be in {lo}..{hi}, got {value}")


def _check_bool(value: object, name: str) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")


def _check_bytes(value: object, name: str, max_len: int = 0xFFFF) -> None:
    if not isinstance(value, bytes):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    if len(value) > max_len:
        raise PDUError(f"{name} is {len(value)} bytes, at most {max_len} fit in its length field")


def _check_uid(value: object, name: str) -> None:
    """A UID per PS3.5 9.1: 1..64 characters, digits and dots only."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not 0 < len(value) <= 64:
        raise PDUError(f"{name} must be 1..64 characters, got {len(value)}: {value!r}")
    if not _UID_CHARS.issuperset(value):
        raise PDUError(f"{name} is not a UID (digits and dots only): {value!r}")


def _check_tuple(value: object, name: str, kind: type | tuple[type, ...]) -> None:
    if not isinstance(value, tuple):
        raise TypeError(f"{name} must be a tuple, not {type(value).__name__}")
    for v in value:
        if not isinstance(v, kind):
            raise TypeError(f"{name} holds a {type(v).__name__}, expected {kind}")


def _decode_uid(raw: bytes | memoryview, name: str) -> str:
    """Decode a UID field; trailing NUL/space padding is stripped (PS3.8 Annex F)."""
    try:
        text = bytes(raw).decode("ascii")
    except UnicodeDecodeError:
        raise PDUError(f"{name} is not ASCII: {bytes(raw)[:64]!r}") from None
    uid = text.rstrip("\0 ")
    _check_uid(uid, name)
    return uid


def _item(item_type: int, value: bytes, reserved: int = 0) -> bytes:
    """Item header (type, reserved, 16-bit length) + value."""
    if len(value) > 0xFFFF:
        raise PDUError(f"item {item_type:02X}H value is {len(value)} bytes, at most 65535 fit")
    return bytes((item_type, reserved)) + _H.pack(len(value)) + value


def _uid_item(item_type: int, uid: str) -> bytes:
    # PS3.8 Annex F: UIDs in the Upper Layer are not padded to even length.
    return _item(item_type, uid.encode("ascii"))


def _uid_field(uid: str) -> bytes:
    """A UID preceded by its own 2-byte length (used inside sub-items 54H, 56H, 57H)."""
    raw = uid.encode("ascii")
    return _H.pack(len(raw)) + raw


def iter_items(data: bytes | memoryview, where: str) -> list[tuple[int, int, memoryview]]:
    """Split a run of items into ``(type, reserved_byte, value)``; every length is checked.

    ``where`` names the enclosing field for error messages.
    """
    view = memoryview(data)
    out: list[tuple[int, int, memoryview]] = []
    pos, end = 0, len(view)
    while pos < end:
        if end - pos < 4:
            raise PDUError(f"{where}: {end - pos} stray byte(s) at offset {pos}, an item header needs 4")
        item_type, reserved = view[pos], view[pos + 1]
        (length,) = _H.unpack_from(view, pos + 2)
        if pos + 4 + length > end:
            raise PDUError(
                f"{where}: item {item_type:02X}H at offset {pos} claims {length} bytes, "
                f"only {end - pos - 4} remain"
            )
        out.append((item_type, reserved, view[pos + 4 : pos + 4 + length]))
        pos += 4 + length
    return out


def _read_u16_field(value: memoryview, pos: int, name: str) -> tuple[memoryview, int]:
    """Read a 2-byte-length-prefixed field at ``pos``; return (field, next position)."""
    if pos + 2 > len(value):
        raise PDUError(f"{name}: length field truncated at offset {pos} (item is {len(value)} bytes)")
    (n,) = _H.unpack_from(value, pos)
    if pos + 2 + n > len(value):
        raise PDUError(f"{name}: claims {n} bytes at offset {pos + 2}, only {len(value) - pos - 2} remain")
    return value[pos + 2 : pos + 2 + n], pos + 2 + n


# ------------------------------------------------------- presentation contexts
@dataclass(frozen=True, slots=True)
class PresentationContextRQ:
    """Presentation Context Item in an A-ASSOCIATE-RQ (item 20H, PS3.8 9.3.2.2).

    ``context_id`` is a byte. PS3.8 requires odd ids 1..255, unique in the PDU;
    the class accepts any byte so that a received PDU with even or duplicate ids
    still decodes. :meth:`AAssociateRQ.context_id_problems` lists the offending
    ids and :func:`encode_pdu` refuses to send them.
    """

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_int(self.context_id, "context_id", 0, 255)
        _check_uid(self.abstract_syntax, "abstract_syntax")
        _check_tuple(self.transfer_syntaxes, "transfer_syntaxes", str)
        for ts in self.transfer_syntaxes:
            _check_uid(ts, "transfer syntax")

    def _encode(self) -> bytes:
        if not self.transfer_syntaxes:
            raise PDUError(f"presentation context {self.context_id} offers no transfer syntax")
        if not (_is_uid(self.abstract_syntax) and all(_is_uid(ts) for ts in self.transfer_syntaxes)):
            # Only a decoded one can hold them (see _decode_presentation_context_rq).
            raise PDUError(f"presentation context {self.context_id} holds a malformed UID")
        # Table 9-13: id, reserved, reserved (result in AC), reserved; then sub-items.
        body = bytes((self.context_id, 0, 0, 0)) + _uid_item(ITEM_ABSTRACT_SYNTAX, self.abstract_syntax)
        body += b"".join(_uid_item(ITEM_TRANSFER_SYNTAX, ts) for ts in self.transfer_syntaxes)
        return _item(ITEM_PRESENTATION_CONTEXT_RQ, body)


def _lenient_uid(raw: bytes | memoryview) -> str:
    """A UID field as text, valid or not (non-ASCII bytes replaced): for
    fields whose bad value refuses one thing, not the association."""
    return bytes(raw).decode("ascii", "replace").rstrip("\0 ")


def _is_uid(text: str) -> bool:
    return 0 < len(text) <= 64 and _UID_CHARS.issuperset(text)


def _decode_presentation_context_rq(value: memoryview) -> PresentationContextRQ:
    if len(value) < 4:
        raise PDUError(f"presentation context item (20H) is {len(value)} bytes, needs at least 4")
    context_id = value[0]
    abstract: str | None = None
    transfer: list[str] = []
    for sub_type, _, sub in iter_items(value[4:], f"presentation context {context_id}"):
        if sub_type == ITEM_ABSTRACT_SYNTAX:
            if abstract is not None:
                raise PDUError(f"presentation context {context_id} has two abstract syntax sub-items")
            abstract = _lenient_uid(sub)
        elif sub_type == ITEM_TRANSFER_SYNTAX:
            transfer.append(_lenient_uid(sub))
        else:
            # PS3.8 9.3.1: items of unrecognised types are ignored and skipped
            # (a recognised one out of place too, as dcmtk and pynetdicom do).
            logger.debug("presentation context %d: skipping sub-item %02XH (%d bytes)",
                         context_id, sub_type, len(sub))
    if abstract is None:
        raise PDUError(f"presentation context {context_id} has no abstract syntax sub-item")
    if not transfer:
        raise PDUError(f"presentation context {context_id} has no transfer syntax sub-item")
    if _is_uid(abstract) and all(_is_uid(ts) for ts in transfer):
        return PresentationContextRQ(context_id, abstract, tuple(transfer))
    # A malformed UID refuses its context, not the association (as dcmtk and
    # pynetdicom do): no abstract or transfer syntax we know can match it, so
    # negotiation answers abstract-syntax- or transfer-syntaxes-not-supported.
    logger.warning("presentation context %d proposes a malformed UID: %r with %r",
                   context_id, abstract, transfer)
    pc = object.__new__(PresentationContextRQ)
    for name, field_value in (("context_id", context_id), ("abstract_syntax", abstract),
                              ("transfer_syntaxes", tuple(transfer))):
        object.__setattr__(pc, name, field_value)
    return pc


@dataclass(frozen=True, slots=True)
class PresentationContextAC:
    """Presentation Context Item in an A-ASSOCIATE-AC (item 21H, PS3.8 9.3.3.2).

    ``result`` is one of :data:`ACCEPTANCE`, :data:`USER_REJECTION`,
    :data:`NO_REASON`, :data:`ABSTRACT_SYNTAX_NOT_SUPPORTED`,
    :data:`TRANSFER_SYNTAXES_NOT_SUPPORTED`. ``transfer_syntax`` is required when
    accepted and ``None`` otherwise (the standard says the sub-item is not
    significant on rejection; we send an empty one and never read it).
    """

    ACCEPTANCE = ACCEPTANCE
    USER_REJECTION = USER_REJECTION
    NO_REASON = NO_REASON
    ABSTRACT_SYNTAX_NOT_SUPPORTED = ABSTRACT_SYNTAX_NOT_SUPPORTED
    TRANSFER_SYNTAXES_NOT_SUPPORTED = TRANSFER_SYNTAXES_NOT_SUPPORTED

    context_id: int
    result: int
    transfer_syntax: str | None

    def __post_init__(self) -> None:
        _check_int(self.context_id, "context_id", 0, 255)
        _check_int(self.result, "result", 0, 255)
        if self.result == ACCEPTANCE:
            if self.transfer_syntax is None:
                raise PDUError(f"accepted presentation context {self.context_id} needs a transfer syntax")
            _check_uid(self.transfer_syntax, "transfer_syntax")
        elif self.transfer_syntax is not None:
            _check_uid(self.transfer_syntax, "transfer_syntax")

    @property
    def accepted(self) -> bool:
        """True when the context was accepted."""
        return self.result == ACCEPTANCE

    @property
    def description(self) -> str:
        """The result in the standard's words (PS3.8 Table 9-18)."""
        return PRESENTATION_RESULT_DESCRIPTIONS.get(self.result, f"unknown result {self.result}")

    def _encode(self) -> bytes:
        if self.result not in PRESENTATION_RESULT_DESCRIPTIONS:
            raise PDUError(f"presentation context result {self.result} is not defined by PS3.8 Table 9-18")
        # Table 9-18: id, reserved, result/reason, reserved; then one transfer syntax sub-item.
        body = bytes((self.context_id, 0, self.result, 0))
        if self.result == ACCEPTANCE and self.transfer_syntax is not None:
            body += _uid_item(ITEM_TRANSFER_SYNTAX, self.transfer_syntax)
        else:
            body += _item(ITEM_TRANSFER_SYNTAX, b"")
        return _item(ITEM_PRESENTATION_CONTEXT_AC, body)


def _decode_presentation_context_ac(value: memoryview) -> PresentationContextAC:
    if len(value) < 4:
        raise PDUError(f"presentation context item (21H) is {len(value)} bytes, needs at least 4")
    context_id, result = value[0], value[2]
    transfer: str | None = None
    seen = False
    for sub_type, _, sub in iter_items(value[4:], f"presentation context {context_id}"):
        if sub_type != ITEM_TRANSFER_SYNTAX:
            # PS3.8 9.3.1: items of unrecognised types are ignored and skipped.
            logger.debug("presentation context %d: skipping sub-item %02XH (%d bytes)",
                         context_id, sub_type, len(sub))
            continue
        if seen:
            raise PDUError(f"presentation context {context_id} has two transfer syntax sub-items")
        seen = True
        # Not significant, and not tested, unless the context was accepted.
        if result == ACCEPTANCE:
            transfer = _decode_uid(sub, "transfer syntax")
    if result == ACCEPTANCE and transfer is None:
        raise PDUError(f"accepted presentation context {context_id} has no transfer syntax sub-item")
    return PresentationContextAC(context_id, result, transfer)


# ------------------------------------------------- user information sub-items
@dataclass(frozen=True, slots=True)
class RoleSelection:
    """SCP/SCU Role Selection sub-item (54H, PS3.7 D.3.3.4).

    In an RQ the booleans say which roles the requestor proposes; in an AC they
    say which roles the acceptor accepts.
    """

    sop_class_uid: str
    scu_role: bool
    scp_role: bool

    def __post_init__(self) -> None:
        _check_uid(self.sop_class_uid, "sop_class_uid")
        _check_bool(self.scu_role, "scu_role")
        _check_bool(self.scp_role, "scp_role")

    def _encode(self) -> bytes:
        body = _uid_field(self.sop_class_uid) + bytes((int(self.scu_role), int(self.scp_role)))
        return _item(SUB_ROLE_SELECTION, body)


def _decode_role_selection(value: memoryview) -> RoleSelection:
    uid, pos = _read_u16_field(value, 0, "role selection sub-item")
    if len(value) - pos != 2:
        raise PDUError(f"role selection sub-item: expected 2 role bytes after the UID, found {len(value) - pos}")
    scu, scp = value[pos], value[pos + 1]
    if scu > 1 or scp > 1:
        raise PDUError(f"role selection sub-item: role values must be 0 or 1, got {scu} and {scp}")
    return RoleSelection(_decode_uid(uid, "role selection SOP class"), bool(scu), bool(scp))


@dataclass(frozen=True, slots=True)
class SOPClassExtendedNegotiation:
    """SOP Class Extended Negotiation sub-item (56H, PS3.7 D.3.3.5).

    ``info`` is the service-class-application-information, opaque here.
    """

    sop_class_uid: str
    info: bytes

    def __post_init__(self) -> None:
        _check_uid(self.sop_class_uid, "sop_class_uid")
        _check_bytes(self.info, "info", 0xFFFF - 66)

    def _encode(self) -> bytes:
        return _item(SUB_SOP_CLASS_EXTENDED, _uid_field(self.sop_class_uid) + self.info)


def _decode_sop_class_extended(value: memoryview) -> SOPClassExtendedNegotiation:
    uid, pos = _read_u16_field(value, 0, "SOP class extended negotiation sub-item")
    return SOPClassExtendedNegotiation(_decode_uid(uid, "extended negotiation SOP class"), bytes(value[pos:]))


@dataclass(frozen=True, slots=True)
class SOPClassCommonExtendedNegotiation:
    """SOP Class Common Extended Negotiation sub-item (57H, PS3.7 D.3.3.6); RQ only."""

    sop_class_uid: str
    service_class_uid: str
    related_general_sop_classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_uid(self.sop_class_uid, "sop_class_uid")
        _check_uid(self.service_class_uid, "service_class_uid")
        _check_tuple(self.related_general_sop_classes, "related_general_sop_classes", str)
        for uid in self.related_general_sop_classes:
            _check_uid(uid, "related general SOP class")

    def _encode(self) -> bytes:
        related = b"".join(_uid_field(u) for u in self.related_general_sop_classes)
        body = _uid_field(self.sop_class_uid) + _uid_field(self.service_class_uid)
        body += _H.pack(len(related)) + related
        # Byte 1 of this sub-item is the sub-item version, 0 (PS3.7 Table D.3-12).
        return _item(SUB_SOP_CLASS_COMMON_EXTENDED, body, reserved=0)


def _decode_sop_class_common_extended(value: memoryview) -> SOPClassCommonExtendedNegotiation:
    name = "SOP class common extended negotiation sub-item"
    sop, pos = _read_u16_field(value, 0, name)
    service, pos = _read_u16_field(value, pos, name)
    related_field, pos = _read_u16_field(value, pos, name)
    if pos != len(value):
        raise PDUError(f"{name}: {len(value) - pos} bytes after the related SOP class field")
    related: list[str] = []
    rpos = 0
    while rpos < len(related_field):
        uid, rpos = _read_u16_field(related_field, rpos, name + " (related SOP class)")
        related.append(_decode_uid(uid, "related general SOP class"))
    return SOPClassCommonExtendedNegotiation(
        _decode_uid(sop, "common extended negotiation SOP class"),
        _decode_uid(service, "service class"),
        tuple(related),
    )


_IDENTITY_NAMES = {1: "USERNAME", 2: "USERNAME_PASSCODE", 3: "KERBEROS", 4: "SAML", 5: "JWT"}


@dataclass(frozen=True, slots=True, repr=False)
class UserIdentityRQ:
    """User Identity Negotiation sub-item, RQ form (58H, PS3.7 D.3.3.7.1).

    ``primary_field`` is the username (types 1, 2) or the Kerberos ticket, SAML
    assertion or JSON web token (types 3, 4, 5); ``secondary_field`` is the
    passcode (type 2). ``repr()`` never shows the passcode or a token.
    """

    USERNAME = 1
    USERNAME_PASSCODE = 2
    KERBEROS = 3
    SAML = 4
    JWT = 5

    identity_type: int
    positive_response_requested: bool
    primary_field: bytes
    secondary_field: bytes = b""

    def __post_init__(self) -> None:
        _check_int(self.identity_type, "identity_type", 1, 255)
        _check_bool(self.positive_response_requested, "positive_response_requested")
        _check_bytes(self.primary_field, "primary_field", 0xFFFF - 6)
        _check_bytes(self.secondary_field, "secondary_field", 0xFFFF - 6 - len(self.primary_field))

    def __repr__(self) -> str:
        kind = _IDENTITY_NAMES.get(self.identity_type, "unknown")
        if self.identity_type in (self.USERNAME, self.USERNAME_PASSCODE):
            primary = repr(self.primary_field)
        else:
            primary = f"<{len(self.primary_field)} bytes hidden>"
        return (
            f"UserIdentityRQ(identity_type={self.identity_type} ({kind}), "
            f"positive_response_requested={self.positive_response_requested}, "
            f"primary_field={primary}, secondary_field=<{len(self.secondary_field)} bytes hidden>)"
        )

    def _encode(self) -> bytes:
        body = bytes((self.identity_type, int(self.positive_response_requested)))
        body += _H.pack(len(self.primary_field)) + self.primary_field
        body += _H.pack(len(self.secondary_field)) + self.secondary_field
        return _item(SUB_USER_IDENTITY_RQ, body)


def _decode_user_identity_rq(value: memoryview) -> UserIdentityRQ:
    name = "user identity sub-item (58H)"
    if len(value) < 2:
        raise PDUError(f"{name} is {len(value)} bytes, needs at least 6")
    identity_type, positive = value[0], value[1]
    if identity_type == 0:
        raise PDUError(f"{name}: user identity type 0 is not defined")
    if positive > 1:
        raise PDUError(f"{name}: positive-response-requested must be 0 or 1, got {positive}")
    primary, pos = _read_u16_field(value, 2, name)
    secondary, pos = _read_u16_field(value, pos, name)
    if pos != len(value):
        raise PDUError(f"{name}: {len(value) - pos} bytes after the secondary field")
    return UserIdentityRQ(identity_type, bool(positive), bytes(primary), bytes(secondary))


@dataclass(frozen=True, slots=True, repr=False)
class UserIdentityAC:
    """User Identity Negotiation sub-item, AC form (59H, PS3.7 D.3.3.7.2).

    ``server_response`` may be a Kerberos server ticket or a SAML/JWT token, so
    ``repr()`` shows only its length.
    """

    server_response: bytes

    def __post_init__(self) -> None:
        _check_bytes(self.server_response, "server_response", 0xFFFF - 2)

    def __repr__(self) -> str:
        return f"UserIdentityAC(server_response=<{len(self.server_response)} bytes hidden>)"

    def _encode(self) -> bytes:
        return _item(SUB_USER_IDENTITY_AC, _H.pack(len(self.server_response)) + self.server_response)


def _decode_user_identity_ac(value: memoryview) -> UserIdentityAC:
    response, pos = _read_u16_field(value, 0, "user identity sub-item (59H)")
    if pos != len(value):
        raise PDUError(f"user identity sub-item (59H): {len(value) - pos} bytes after the server response")
    return UserIdentityAC(bytes(response))


@dataclass(frozen=True, slots=True)
class AsyncOperationsWindow:
    """Asynchronous Operations Window sub-item (53H, PS3.7 D.3.3.3); 0 means unlimited."""

    max_invoked: int
    max_performed: int

    def __post_init__(self) -> None:
        _check_int(self.max_invoked, "max_invoked", 0, 0xFFFF)
        _check_int(self.max_performed, "max_performed", 0, 0xFFFF)

    def _encode(self) -> bytes:
        return _item(SUB_ASYNC_OPERATIONS_WINDOW, _HH.pack(self.max_invoked, self.max_performed))


def _decode_async_ops(value: memoryview) -> AsyncOperationsWindow:
    if len(value) != 4:
        raise PDUError(f"asynchronous operations window sub-item must be 4 bytes, got {len(value)}")
    return AsyncOperationsWindow(*_HH.unpack_from(value, 0))


UserIdentity = Union[UserIdentityRQ, UserIdentityAC]


@dataclass(frozen=True, slots=True)
class UserInformation:
    """User Information Item (50H, PS3.8 9.3.2.3 / 9.3.3.3) and its sub-items.

    ``max_length`` is the Maximum Length sub-item (51H, PS3.8 D.1): the largest
    P-DATA-TF variable field the sender will *receive*; 0 means no limit.
    ``implementation_version_name`` is 1..16 characters. ``user_identity`` is a
    :class:`UserIdentityRQ` in an A-ASSOCIATE-RQ and a :class:`UserIdentityAC` in
    an A-ASSOCIATE-AC. Unknown sub-item types are skipped on decode.
    """

    max_length: int | None = None
    implementation_class_uid: str | None = None
    implementation_version_name: str | None = None
    async_ops: AsyncOperationsWindow | None = None
    role_selections: tuple[RoleSelection, ...] = ()
    extended_negotiations: tuple[SOPClassExtendedNegotiation, ...] = ()
    common_extended_negotiations: tuple[SOPClassCommonExtendedNegotiation, ...] = ()
    user_identity: UserIdentity | None = None

    def __post_init__(self) -> None:
        if self.max_length is not None:
            _check_int(self.max_length, "max_length", 0, 0xFFFFFFFF)
        if self.implementation_class_uid is not None:
            _check_uid(self.implementation_class_uid, "implementation_class_uid")
        name = self.implementation_version_name
        if name is not None:
            if not isinstance(name, str):
                raise TypeError(f"implementation_version_name must be a str, not {type(name).__name__}")
            if not 0 < len(name) <= 16 or not name.isascii() or not name.isprintable() or "\\" in name:
                raise PDUError(f"implementation_version_name must be 1..16 printable ASCII characters: {name!r}")
        if self.async_ops is not None and not isinstance(self.async_ops, AsyncOperationsWindow):
            raise TypeError("async_ops must be an AsyncOperationsWindow")
        _check_tuple(self.role_selections, "role_selections", RoleSelection)
        _check_tuple(self.extended_negotiations, "extended_negotiations", SOPClassExtendedNegotiation)
        _check_tuple(
            self.common_extended_negotiations, "common_extended_negotiations", SOPClassCommonExtendedNegotiation
        )
        if self.user_identity is not None and not isinstance(self.user_identity, (UserIdentityRQ, UserIdentityAC)):
            raise TypeError("user_identity must be a UserIdentityRQ, a UserIdentityAC or None")

    def _encode(self) -> bytes:
        # Sub-items in increasing order of type (PS3.8 9.3.1).
        parts: list[bytes] = []
        if self.max_length is not None:
            parts.append(_item(SUB_MAXIMUM_LENGTH, _L.pack(self.max_length)))
        if self.implementation_class_uid is not None:
            parts.append(_uid_item(SUB_IMPLEMENTATION_CLASS_UID, self.implementation_class_uid))
        if self.async_ops is not None:
            parts.append(self.async_ops._encode())
        parts.extend(r._encode() for r in self.role_selections)
        if self.implementation_version_name is not None:
            parts.append(_item(SUB_IMPLEMENTATION_VERSION_NAME, self.implementation_version_name.encode("ascii")))
        parts.extend(e._encode() for e in self.extended_negotiations)
        parts.extend(c._encode() for c in self.common_extended_negotiations)
        if self.user_identity is not None:
            parts.append(self.user_identity._encode())
        return _item(ITEM_USER_INFORMATION, b"".join(parts))


def _decode_user_information(value: memoryview, is_request: bool) -> UserInformation:
    """Decode the value of a User Information item.

    ``is_request`` selects which user identity sub-item is meaningful (58H in an
    RQ, 59H in an AC); the other one, like any unknown sub-item, is skipped.
    """
    fields: dict[str, object] = {}
    roles: list[RoleSelection] = []
    extended: list[SOPClassExtendedNegotiation] = []
    common: list[SOPClassCommonExtendedNegotiation] = []

    def once(key: str, sub_type: int, decoded: object) -> None:
        if key in fields:
            raise PDUError(f"user information holds two {sub_type:02X}H sub-items")
        fields[key] = decoded

    named: set[int] = set()     # implementation UID / version name sub-items seen, valid or not
    for sub_type, _, sub in iter_items(value, "user information item"):
        if sub_type == SUB_MAXIMUM_LENGTH:
            if len(sub) != 4:
                raise PDUError(f"maximum length sub-item must be 4 bytes, got {len(sub)}")
            once("max_length", sub_type, _L.unpack_from(sub, 0)[0])
        elif sub_type == SUB_IMPLEMENTATION_CLASS_UID:
            # It only names the peer's software (PS3.7 D.3.3.2): a second one,
            # or one that is not a UID, is logged and left out, not fatal.
            uid = _lenient_uid(sub)
            if sub_type in named:
                logger.info("user information holds a second implementation class UID %r: ignored", uid)
            elif _is_uid(uid):
                fields["implementation_class_uid"] = uid
            else:
                logger.info("the peer's implementation class UID %r is not a UID: ignored", uid)
            named.add(sub_type)
        elif sub_type == SUB_ASYNC_OPERATIONS_WINDOW:
            once("async_ops", sub_type, _decode_async_ops(sub))
        elif sub_type == SUB_ROLE_SELECTION:
            roles.append(_decode_role_selection(sub))
        elif sub_type == SUB_IMPLEMENTATION_VERSION_NAME:
            # Also only a name: one that is empty, too long or not printable
            # ASCII is logged and left out.
            name = bytes(sub).decode("ascii", "replace").rstrip("\0 ")
            if sub_type in named:
                logger.info("user information holds a second implementation version name %r: ignored", name)
            elif 0 < len(name) <= 16 and name.isascii() and name.isprintable() and "\\" not in name:
                fields["implementation_version_name"] = name
            else:
                logger.info("the peer's implementation version name %r is not 1..16 printable ASCII "
                            "characters: ignored", name)
            named.add(sub_type)
        elif sub_type == SUB_SOP_CLASS_EXTENDED:
            extended.append(_decode_sop_class_extended(sub))
        elif sub_type == SUB_SOP_CLASS_COMMON_EXTENDED:
            common.append(_decode_sop_class_common_extended(sub))
        elif sub_type == SUB_USER_IDENTITY_RQ and is_request:
            once("user_identity", sub_type, _decode_user_identity_rq(sub))
        elif sub_type == SUB_USER_IDENTITY_AC and not is_request:
            once("user_identity", sub_type, _decode_user_identity_ac(sub))
        else:
            # PS3.8 9.3.2.3 / 9.3.3.3: unrecognised sub-items are ignored.
            logger.debug("skipping user information sub-item %02XH (%d bytes)", sub_type, len(sub))
    return UserInformation(
        role_selections=tuple(roles),
        extended_negotiations=tuple(extended),
        common_extended_negotiations=tuple(common),
        **fields,  # type: ignore[arg-type]
    )
