"""The seven Upper Layer PDUs (PS3.8 9.3) and their wire codec.

``encode_pdu(pdu) -> bytes`` writes every PDU except P-DATA-TF (data goes out
through :func:`dicomnet._codec.pdu.fragment`, which never copies the payload).
``decode_pdu(pdu_type, body) -> PDU`` reads the *body* of a PDU -- the bytes
after the 6-byte PDU header, as handed out by
:class:`dicomnet._codec.pdu.PDUReader` -- and checks every length against what
is there; anything malformed raises :class:`dicomnet.errors.PDUError`.

Receiving rules taken from PS3.8 9.3.1: reserved fields are not tested; items of
an unrecognised type are skipped (at the RQ/AC variable-field level and inside
User Information). What is *recognised but wrong* (a bad length, a truncated
field, a missing mandatory item, a known item in the wrong place -- the
"unexpected-PDU parameter" of Table 9-26) is an error.
"""
from __future__ import annotations

import logging
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Union

from .._codec.pdu import iter_pdvs
from ..errors import PDUError
from . import items as _it
from .items import PresentationContextAC, PresentationContextRQ, UserIdentityAC, UserIdentityRQ, UserInformation

__all__ = [
    "A_ASSOCIATE_RQ",
    "A_ASSOCIATE_AC",
    "A_ASSOCIATE_RJ",
    "P_DATA_TF",
    "A_RELEASE_RQ",
    "A_RELEASE_RP",
    "A_ABORT",
    "DICOM_APPLICATION_CONTEXT",
    "AAssociateRQ",
    "AAssociateAC",
    "AAssociateRJ",
    "PDV",
    "PDataTF",
    "AReleaseRQ",
    "AReleaseRP",
    "AAbort",
    "PDU",
    "encode_pdu",
    "decode_pdu",
    "validate_ae_title",
    "RJ_RESULT_REJECTED_PERMANENT",
    "RJ_RESULT_REJECTED_TRANSIENT",
    "RJ_SOURCE_SERVICE_USER",
    "RJ_SOURCE_SERVICE_PROVIDER_ACSE",
    "RJ_SOURCE_SERVICE_PROVIDER_PRESENTATION",
    "RJ_REASON_NO_REASON_GIVEN",
    "RJ_REASON_APPLICATION_CONTEXT_NOT_SUPPORTED",
    "RJ_REASON_CALLING_AE_NOT_RECOGNIZED",
    "RJ_REASON_CALLED_AE_NOT_RECOGNIZED",
    "RJ_REASON_PROTOCOL_VERSION_NOT_SUPPORTED",
    "RJ_REASON_TEMPORARY_CONGESTION",
    "RJ_REASON_LOCAL_LIMIT_EXCEEDED",
    "ABORT_SOURCE_SERVICE_USER",
    "ABORT_SOURCE_SERVICE_PROVIDER",
    "ABORT_REASON_NOT_SPECIFIED",
    "ABORT_REASON_UNRECOGNIZED_PDU",
    "ABORT_REASON_UNEXPECTED_PDU",
    "ABORT_REASON_UNRECOGNIZED_PDU_PARAMETER",
    "ABORT_REASON_UNEXPECTED_PDU_PARAMETER",
    "ABORT_REASON_INVALID_PDU_PARAMETER_VALUE",
]

logger = logging.getLogger("dicomnet")

# PDU types (PS3.8 Table 9-1 .. 9-26).
A_ASSOCIATE_RQ = 0x01
A_ASSOCIATE_AC = 0x02
A_ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
A_RELEASE_RQ = 0x05
A_RELEASE_RP = 0x06
A_ABORT = 0x07

DICOM_APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
MAX_PRESENTATION_CONTEXTS = 128  # odd ids 1..255 (PS3.8 9.3.2.2)

_HEADER = struct.Struct(">BBL")
_FIXED = struct.Struct(">HH16s16s32s")  # protocol version, reserved, called, calling, reserved


def validate_ae_title(title: object, name: str = "AE title") -> str:
    """Check an AE title for sending (PS3.5 AE VR): 1..16 characters, ASCII, no
    backslash or control characters, not all spaces. Returns it without the
    insignificant leading/trailing spaces; raises PDUError otherwise."""
    if not isinstance(title, str):
        raise TypeError(f"{name} must be a str, not {type(title).__name__}")
    stripped = title.strip(" ")
    if not 0 < len(stripped) <= 16 or len(title) > 16:
        raise PDUError(f"{name} must be 1..16 characters (not all spaces): {title!r}")
    if not title.isascii() or not title.isprintable() or "\\" in title:
        raise PDUError(f"{name} may hold printable ASCII only, no backslash: {title!r}")
    return stripped


def _decode_ae(raw: bytes, name: str) -> str:
    try:
        return raw.decode("ascii").strip(" \0")
    except UnicodeDecodeError:
        raise PDUError(f"{name} is not ASCII: {raw!r}") from None


def _check_version(value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("protocol_version must be an int")
    if not 0 <= value <= 0xFFFF:
        raise PDUError(f"protocol_version must fit 16 bits, got {value}")


def _check_ae_type(value: object, name: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")


# ---------------------------------------------------------- association PDUs

def _check_associate(pdu: Any, context_type: type, wrong_identity: type, identity_rule: str) -> None:
    """The field checks A-ASSOCIATE-RQ and -AC share (they differ in item types)."""
    _check_ae_type(pdu.called_ae, "called_ae")
    _check_ae_type(pdu.calling_ae, "calling_ae")
    _it._check_tuple(pdu.presentation_contexts, "presentation_contexts", context_type)
    if not isinstance(pdu.user_information, UserInformation):
        raise TypeError("user_information must be a UserInformation")
    if isinstance(pdu.user_information.user_identity, wrong_identity):
        raise PDUError(f"{identity_rule}, not a {wrong_identity.__name__}")
    _it._check_uid(pdu.application_context, "application_context")
    _check_version(pdu.protocol_version)

@dataclass(frozen=True, slots=True)
class AAssociateRQ:
    """A-ASSOCIATE-RQ (PS3.8 9.3.2).

    Decoding is permissive where the *acceptor* must answer rather than abort:
    AE titles are kept as received (stripped) and checked only when encoding;
    ``protocol_version`` is kept (bit 0 set means version 1; an acceptor that
    does not support it answers A-ASSOCIATE-RJ with
    :data:`AAssociateRJ.REASON_PROTOCOL_VERSION_NOT_SUPPORTED`); more than 128
    presentation contexts, even or duplicate context ids are kept and listed by
    :meth:`context_id_problems`, so the acceptor can reject those contexts (or
    the association). :func:`encode_pdu` refuses to send any of these faults.
    """

    called_ae: str
    calling_ae: str
    presentation_contexts: tuple[PresentationContextRQ, ...]
    user_information: UserInformation
    application_context: str = DICOM_APPLICATION_CONTEXT
    protocol_version: int = 1
    #: Bytes 11-74 as received (called and calling AE titles as sent, and 32
    #: reserved bytes), which the A-ASSOCIATE-AC echoes (Table 9-17). Not
    #: written by :func:`encode_pdu`, which writes the titles above.
    echo: bytes = field(default=b"", compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_associate(self, PresentationContextRQ, UserIdentityAC, "an A-ASSOCIATE-RQ carries a UserIdentityRQ")

    def context_id_problems(self) -> list[str]:
        """What is wrong with the presentation context ids, in words (empty if nothing).

        PS3.8 9.3.2.2: ids are odd integers 1..255, unique within the PDU, so at
        most 128 contexts. An acceptor answers each offending context with a
        rejection (or rejects the association); :func:`encode_pdu` refuses to
        send a PDU for which this list is not empty.
        """
        problems: list[str] = []
        ids = [pc.context_id for pc in self.presentation_contexts]
        if len(ids) > MAX_PRESENTATION_CONTEXTS:
            problems.append(f"{len(ids)} presentation contexts, at most {MAX_PRESENTATION_CONTEXTS} allowed")
        if not ids:
            problems.append("no presentation context")
        for cid in sorted({i for i in ids if i % 2 == 0}):
            problems.append(f"context id {cid} is even")
        for cid, n in sorted(Counter(ids).items()):
            if n > 1:
                problems.append(f"context id {cid} used {n} times")
        return problems


@dataclass(frozen=True, slots=True)
class AAssociateAC:
    """A-ASSOCIATE-AC (PS3.8 9.3.3).

    ``called_ae``/``calling_ae`` are written into the reserved fields (bytes
    11-42) as the standard recommends (echo of the RQ) and are decoded but, per
    PS3.8 9.3.3, must not be tested by the receiver.
    """

    called_ae: str
    calling_ae: str
    presentation_contexts: tuple[PresentationContextAC, ...]
    user_information: UserInformation
    application_context: str = DICOM_APPLICATION_CONTEXT
    protocol_version: int = 1
    #: Bytes 11-74 to send, "identical to the value received in the same field
    #: of the A-ASSOCIATE-RQ" (PS3.8 Table 9-17): the RQ's ``echo``. Empty: the
    #: titles above, padded, and zeros.
    echo: bytes = field(default=b"", compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_associate(self, PresentationContextAC, UserIdentityRQ, "an A-ASSOCIATE-AC carries a UserIdentityAC")


@dataclass(frozen=True, slots=True)
class AAssociateRJ:
    """A-ASSOCIATE-RJ (PS3.8 9.3.4, Table 9-21); ``description`` puts it in words."""

    RESULT_REJECTED_PERMANENT = 1
    RESULT_REJECTED_TRANSIENT = 2
    SOURCE_SERVICE_USER = 1
    SOURCE_SERVICE_PROVIDER_ACSE = 2
    SOURCE_SERVICE_PROVIDER_PRESENTATION = 3
    # source 1 (service user)
    REASON_NO_REASON_GIVEN = 1
    REASON_APPLICATION_CONTEXT_NOT_SUPPORTED = 2
    REASON_CALLING_AE_NOT_RECOGNIZED = 3
    REASON_CALLED_AE_NOT_RECOGNIZED = 7
    # source 2 (service provider, ACSE): 1 no-reason-given, 2 protocol version
    REASON_PROTOCOL_VERSION_NOT_SUPPORTED = 2
    # source 3 (service provider, presentation)
    REASON_TEMPORARY_CONGESTION = 1
    REASON_LOCAL_LIMIT_EXCEEDED = 2

    result: int
    source: int
    reason: int

    def __post_init__(self) -> None:
        _it._check_int(self.result, "result", 0, 255)
        _it._check_int(self.source, "source", 0, 255)
        _it._check_int(self.reason, "reason", 0, 255)

    @property
    def description(self) -> str:
        """E.g. ``"rejected-permanent by the DICOM UL service-user: called-AE-title-not-recognized"``."""
        result = _RJ_RESULTS.get(self.result, f"unknown result {self.result}")
        source = _RJ_SOURCES.get(self.source, f"unknown source {self.source}")
        reason = _RJ_REASONS.get((self.source, self.reason), f"reason {self.reason} (reserved)")
        return f"{result} by the {source}: {reason}"


_RJ_RESULTS = {1: "rejected-permanent", 2: "rejected-transient"}
_RJ_SOURCES = {
    1: "DICOM UL service-user",
    2: "DICOM UL service-provider (ACSE related function)",
    3: "DICOM UL service-provider (Presentation related function)",
}
_RJ_REASONS = {
    (1, 1): "no-reason-given",
    (1, 2): "application-context-name-not-supported",
    (1, 3): "calling-AE-title-not-recognized",
    (1, 7): "called-AE-title-not-recognized",
    (2, 1): "no-reason-given",
    (2, 2): "protocol-version-not-supported",
    (3, 1): "temporary-congestion",
    (3, 2): "local-limit-exceeded",
}

# Module-level aliases with the RJ_ prefix, for ``from dicomnet.pdu import ...``.
RJ_RESULT_REJECTED_PERMANENT = AAssociateRJ.RESULT_REJECTED_PERMANENT
RJ_RESULT_REJECTED_TRANSIENT = AAssociateRJ.RESULT_REJECTED_TRANSIENT
RJ_SOURCE_SERVICE_USER = AAssociateRJ.SOURCE_SERVICE_USER
RJ_SOURCE_SERVICE_PROVIDER_ACSE = AAssociateRJ.SOURCE_SERVICE_PROVIDER_ACSE
RJ_SOURCE_SERVICE_PROVIDER_PRESENTATION = AAssociateRJ.SOURCE_SERVICE_PROVIDER_PRESENTATION
RJ_REASON_NO_REASON_GIVEN = AAssociateRJ.REASON_NO_REASON_GIVEN
RJ_REASON_APPLICATION_CONTEXT_NOT_SUPPORTED = AAssociateRJ.REASON_APPLICATION_CONTEXT_NOT_SUPPORTED
RJ_REASON_CALLING_AE_NOT_RECOGNIZED = AAssociateRJ.REASON_CALLING_AE_NOT_RECOGNIZED
RJ_REASON_CALLED_AE_NOT_RECOGNIZED = AAssociateRJ.REASON_CALLED_AE_NOT_RECOGNIZED
RJ_REASON_PROTOCOL_VERSION_NOT_SUPPORTED = AAssociateRJ.REASON_PROTOCOL_VERSION_NOT_SUPPORTED
RJ_REASON_TEMPORARY_CONGESTION = AAssociateRJ.REASON_TEMPORARY_CONGESTION
RJ_REASON_LOCAL_LIMIT_EXCEEDED = AAssociateRJ.REASON_LOCAL_LIMIT_EXCEEDED


# ---------------------------------------------------------------- data PDUs
@dataclass(frozen=True, slots=True)
class PDV:
    """One Presentation Data Value (PS3.8 9.3.5.1, Annex E.2).

    ``data`` is a byte memoryview; a decoded PDV's ``data`` points into the
    received PDU body (see :class:`dicomnet._codec.pdu.PDUReader` for how long
    that memory stays untouched). Any buffer passed in is wrapped, not copied.
    """

    context_id: int
    is_command: bool
    is_last: bool
    data: memoryview

    def __post_init__(self) -> None:
        _it._check_int(self.context_id, "context_id", 0, 255)
        _it._check_bool(self.is_command, "is_command")
        _it._check_bool(self.is_last, "is_last")
        if not isinstance(self.data, memoryview):
            object.__setattr__(self, "data", memoryview(self.data))
        if self.data.format != "B" or self.data.ndim != 1:
            object.__setattr__(self, "data", self.data.cast("B"))


@dataclass(frozen=True, slots=True)
class PDataTF:
    """P-DATA-TF (PS3.8 9.3.5): one or more PDVs."""

    pdvs: tuple[PDV, ...]

    def __post_init__(self) -> None:
        _it._check_tuple(self.pdvs, "pdvs", PDV)


@dataclass(frozen=True, slots=True)
class AReleaseRQ:
    """A-RELEASE-RQ (PS3.8 9.3.6)."""


@dataclass(frozen=True, slots=True)
class AReleaseRP:
    """A-RELEASE-RP (PS3.8 9.3.7)."""


@dataclass(frozen=True, slots=True)
class AAbort:
    """A-ABORT (PS3.8 9.3.8, Table 9-26); ``reason`` is significant only when
    ``source`` is :data:`SOURCE_SERVICE_PROVIDER`."""

    SOURCE_SERVICE_USER = 0
    SOURCE_SERVICE_PROVIDER = 2
    REASON_NOT_SPECIFIED = 0
    REASON_UNRECOGNIZED_PDU = 1
    REASON_UNEXPECTED_PDU = 2
    REASON_UNRECOGNIZED_PDU_PARAMETER = 4
    REASON_UNEXPECTED_PDU_PARAMETER = 5
    REASON_INVALID_PDU_PARAMETER_VALUE = 6

    source: int = 0
    reason: int = 0

    def __post_init__(self) -> None:
        _it._check_int(self.source, "source", 0, 255)
        _it._check_int(self.reason, "reason", 0, 255)

    @property
    def description(self) -> str:
        """E.g. ``"aborted by the DICOM UL service-provider: unexpected-PDU"``."""
        if self.source == self.SOURCE_SERVICE_USER:
            return "aborted by the DICOM UL service-user"
        if self.source == self.SOURCE_SERVICE_PROVIDER:
            reason = _ABORT_REASONS.get(self.reason, f"reason {self.reason} (reserved)")
            return f"aborted by the DICOM UL service-provider: {reason}"
        return f"aborted (source {self.source} is reserved, reason {self.reason})"


_ABORT_REASONS = {
    0: "reason-not-specified",
    1: "unrecognized-PDU",
    2: "unexpected-PDU",
    4: "unrecognized-PDU parameter",
    5: "unexpected-PDU parameter",
    6: "invalid-PDU-parameter value",
}

ABORT_SOURCE_SERVICE_USER = AAbort.SOURCE_SERVICE_USER
ABORT_SOURCE_SERVICE_PROVIDER = AAbort.SOURCE_SERVICE_PROVIDER
ABORT_REASON_NOT_SPECIFIED = AAbort.REASON_NOT_SPECIFIED
ABORT_REASON_UNRECOGNIZED_PDU = AAbort.REASON_UNRECOGNIZED_PDU
ABORT_REASON_UNEXPECTED_PDU = AAbort.REASON_UNEXPECTED_PDU
ABORT_REASON_UNRECOGNIZED_PDU_PARAMETER = AAbort.REASON_UNRECOGNIZED_PDU_PARAMETER
ABORT_REASON_UNEXPECTED_PDU_PARAMETER = AAbort.REASON_UNEXPECTED_PDU_PARAMETER
ABORT_REASON_INVALID_PDU_PARAMETER_VALUE = AAbort.REASON_INVALID_PDU_PARAMETER_VALUE

PDU = Union[AAssociateRQ, AAssociateAC, AAssociateRJ, PDataTF, AReleaseRQ, AReleaseRP, AAbort]


# ------------------------------------------------------------------ encoding
def _with_header(pdu_type: int, body: bytes) -> bytes:
    if len(body) > 0xFFFFFFFF:
        raise PDUError(f"PDU body of {len(body)} bytes does not fit a 32-bit length")
    return _HEADER.pack(pdu_type, 0, len(body)) + body


def _encode_association(pdu_type: int, pdu: AAssociateRQ | AAssociateAC) -> bytes:
    called = validate_ae_title(pdu.called_ae, "called AE title")
    calling = validate_ae_title(pdu.calling_ae, "calling AE title")
    # Table 9-11 / 9-17: version, reserved, called AE, calling AE (16 bytes each,
    # space padded; reserved-but-echoed in an AC), 32 reserved bytes.
    if isinstance(pdu, AAssociateAC) and len(pdu.echo) == 64:
        fixed = pdu.protocol_version.to_bytes(2, "big") + bytes(2) + pdu.echo
    else:
        fixed = _FIXED.pack(
            pdu.protocol_version, 0, called.encode("ascii").ljust(16), calling.encode("ascii").ljust(16), b""
        )
    parts = [fixed, _it._uid_item(_it.ITEM_APPLICATION_CONTEXT, pdu.application_context)]
    parts.extend(pc._encode() for pc in pdu.presentation_contexts)
    parts.append(pdu.user_information._encode())
    return _with_header(pdu_type, b"".join(parts))


def encode_pdu(pdu: PDU) -> bytes:
    """Return the wire bytes (header included) of any PDU but :class:`PDataTF`.

    Raises PDUError when the PDU cannot be sent as is (bad AE title, bad
    presentation context ids, an item too long for its length field).
    """
    if isinstance(pdu, AAssociateRQ):
        problems = pdu.context_id_problems()
        if problems:
            raise PDUError("cannot send A-ASSOCIATE-RQ: " + "; ".join(problems))
        return _encode_association(A_ASSOCIATE_RQ, pdu)
    if isinstance(pdu, AAssociateAC):
        return _encode_association(A_ASSOCIATE_AC, pdu)
    if isinstance(pdu, AAssociateRJ):
        return _with_header(A_ASSOCIATE_RJ, bytes((0, pdu.result, pdu.source, pdu.reason)))
    if isinstance(pdu, AReleaseRQ):
        return _with_header(A_RELEASE_RQ, bytes(4))
    if isinstance(pdu, AReleaseRP):
        return _with_header(A_RELEASE_RP, bytes(4))
    if isinstance(pdu, AAbort):
        return _with_header(A_ABORT, bytes((0, 0, pdu.source, pdu.reason)))
    if isinstance(pdu, PDataTF):
        raise TypeError("P-DATA-TF is sent with dicomnet._codec.pdu.fragment(), not encode_pdu()")
    raise TypeError(f"not a PDU: {type(pdu).__name__}")


# ------------------------------------------------------------------ decoding
# Every item type PS3.8/PS3.7 define for the association PDUs; any other type is
# unrecognised and skipped, one of these in the wrong place is an error.
_KNOWN_ITEM_TYPES = frozenset(
    (
        _it.ITEM_APPLICATION_CONTEXT,
        _it.ITEM_PRESENTATION_CONTEXT_RQ,
        _it.ITEM_PRESENTATION_CONTEXT_AC,
        _it.ITEM_ABSTRACT_SYNTAX,
        _it.ITEM_TRANSFER_SYNTAX,
        _it.ITEM_USER_INFORMATION,
    )
    + tuple(range(_it.SUB_MAXIMUM_LENGTH, _it.SUB_USER_IDENTITY_AC + 1))
)


def _decode_association(pdu_type: int, body: memoryview) -> AAssociateRQ | AAssociateAC:
    is_rq = pdu_type == A_ASSOCIATE_RQ
    name = "A-ASSOCIATE-RQ" if is_rq else "A-ASSOCIATE-AC"
    if len(body) < _FIXED.size:
        raise PDUError(f"{name} body is {len(body)} bytes, the fixed fields alone need {_FIXED.size}")
    version, _, called_raw, calling_raw, _ = _FIXED.unpack_from(body, 0)
    app_context: str | None = None
    contexts: list = []
    user_info: UserInformation | None = None
    pc_type = _it.ITEM_PRESENTATION_CONTEXT_RQ if is_rq else _it.ITEM_PRESENTATION_CONTEXT_AC
    for item_type, _, value in _it.iter_items(body[_FIXED.size :], name):
        if item_type == _it.ITEM_APPLICATION_CONTEXT:
            if app_context is not None:
                raise PDUError(f"{name} holds two application context items")
            app_context = _it._decode_uid(value, "application context name")
        elif item_type == pc_type:
            if is_rq:
                contexts.append(_it._decode_presentation_context_rq(value))
            else:
                contexts.append(_it._decode_presentation_context_ac(value))
        elif item_type == _it.ITEM_USER_INFORMATION:
            if user_info is not None:
                raise PDUError(f"{name} holds two user information items")
            user_info = _it._decode_user_information(value, is_rq)
        elif item_type in _KNOWN_ITEM_TYPES:
            # A recognised item in the wrong place ("unexpected-PDU parameter").
            raise PDUError(f"{name}: unexpected item {item_type:02X}H at the PDU level")
        else:
            # PS3.8 9.3.1: items of unrecognised types are ignored and skipped.
            logger.debug("%s: skipping item %02XH (%d bytes)", name, item_type, len(value))
    if app_context is None:
        raise PDUError(f"{name} has no application context item")
    if user_info is None:
        # Required (PS3.8 9.3.2), but an empty one lacks the same mandatory
        # Maximum Length and is taken: so is none (as dcmtk and pynetdicom do).
        logger.info("%s has no user information item: taken as an empty one", name)
        user_info = UserInformation()
    cls = AAssociateRQ if is_rq else AAssociateAC
    return cls(
        _decode_ae(called_raw, "called AE title"),
        _decode_ae(calling_raw, "calling AE title"),
        tuple(contexts),
        user_info,
        app_context,
        version,
        bytes(body[4:68]) if is_rq else b"",
    )


def _fixed4(name: str, body: memoryview) -> bytes:
    if len(body) != 4:
        raise PDUError(f"{name} body must be 4 bytes, got {len(body)}")
    return bytes(body)


def decode_pdu(pdu_type: int, body: memoryview | bytes) -> PDU:
    """Decode one PDU from its type and body (the bytes after the 6-byte header).

    P-DATA-TF decodes to :class:`PDataTF` whose PDV ``data`` are memoryviews
    into ``body`` (no copy). Raises PDUError for an unknown type or any
    malformed field.
    """
    view = memoryview(body)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    if pdu_type in (A_ASSOCIATE_RQ, A_ASSOCIATE_AC):
        return _decode_association(pdu_type, view)
    if pdu_type == P_DATA_TF:
        pdvs = iter_pdvs(view)
        if not pdvs:
            raise PDUError("P-DATA-TF holds no PDV (PS3.8 9.3.5 requires one or more)")
        return PDataTF(tuple(PDV(*p) for p in pdvs))
    if pdu_type == A_ASSOCIATE_RJ:
        raw = _fixed4("A-ASSOCIATE-RJ", view)
        return AAssociateRJ(raw[1], raw[2], raw[3])
    if pdu_type == A_RELEASE_RQ:
        _fixed4("A-RELEASE-RQ", view)
        return AReleaseRQ()
    if pdu_type == A_RELEASE_RP:
        _fixed4("A-RELEASE-RP", view)
        return AReleaseRP()
    if pdu_type == A_ABORT:
        raw = _fixed4("A-ABORT", view)
        return AAbort(raw[2], raw[3])
    raise PDUError(f"unknown PDU type 0x{pdu_type:02X}" if isinstance(pdu_type, int) else "PDU type must be an int")
