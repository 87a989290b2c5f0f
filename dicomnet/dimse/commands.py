"""DIMSE command sets (PS3.7 section 9.3, 10.3 and Annex E).

A command set is a group-0000 data set, always encoded in Implicit VR Little
Endian (PS3.7 6.3.1), whatever transfer syntax the presentation context uses.
Here it is a :class:`Command`: a ``dict`` of PS3.6 keyword -> value.

Values by VR (the dictionary's group 0000 entries):

* ``US`` / ``UL``: ``int`` (a multi-valued element: ``list[int]``);
* ``UI`` / ``AE`` / ``LO`` / ``SH`` / ``LT`` / ``CS`` / ``IS``: ``str``;
* ``AT`` (``OffendingElement``, ``AttributeIdentifierList``, VM 1-n): encoded
  from an ``int`` tag or a list of them, always decoded to ``list[int]``;
* an element of group 0000 that the dictionary does not know is kept by
  :func:`decode_command` under its tag as 8 upper-case hex digits
  (``"00000999"``) with its raw value as ``bytes``, and :func:`encode_command`
  writes such a key back verbatim;
* elements of other groups after the command set (dcmtk-based peers append a
  response's status detail, e.g. a Failed SOP Instance UID List) are left
  out of the mapping, with a log line (PS3.7 6.3.1 has no place for them),
  and kept as bytes in ``Command.tail``.

``CommandGroupLength`` is computed by :func:`encode_command` (any value given is
ignored) and checked, then dropped, by :func:`decode_command`, so
``decode_command(encode_command(c)) == c`` for every command built here.

The codec is on the hot path of every message (a C-ECHO round trip is two
encodes and two decodes): the compiled :class:`dicomnet._codec.dimse.CommandCodec`
encodes and decodes the plain shapes and hands everything else -- unknown
tags, multi-valued or AT elements, AE titles, malformed input -- to the Python
reference implementation here, so both give the same result and the same errors.
"""

from __future__ import annotations

import enum
import logging
import struct
from collections.abc import Iterable, Mapping
from typing import Any

from dicomnet._codec.dimse import CommandCodec
from dicomnet._codec.elements import ElementIndex
from dicomnet.dicom import dictionary
from dicomnet.errors import DicomParseError

__all__ = [
    "CommandField",
    "Priority",
    "NO_DATASET",
    "DATASET_PRESENT",
    "VERIFICATION_SOP_CLASS",
    "Command",
    "encode_command",
    "decode_command",
    "c_echo_rq",
    "c_echo_rsp",
    "c_store_rq",
    "c_store_rsp",
    "c_find_rq",
    "c_find_rsp",
    "c_move_rq",
    "c_move_rsp",
    "c_get_rq",
    "c_get_rsp",
    "c_cancel_rq",
]

_log = logging.getLogger("dicomnet")


class CommandField(enum.IntEnum):
    """Command Field (0000,0100) values, PS3.7 Table E.1-1 / E.2-1."""

    C_STORE_RQ = 0x0001
    C_STORE_RSP = 0x8001
    C_GET_RQ = 0x0010
    C_GET_RSP = 0x8010
    C_FIND_RQ = 0x0020
    C_FIND_RSP = 0x8020
    C_MOVE_RQ = 0x0021
    C_MOVE_RSP = 0x8021
    C_ECHO_RQ = 0x0030
    C_ECHO_RSP = 0x8030
    N_EVENT_REPORT_RQ = 0x0100
    N_EVENT_REPORT_RSP = 0x8100
    N_GET_RQ = 0x0110
    N_GET_RSP = 0x8110
    N_SET_RQ = 0x0120
    N_SET_RSP = 0x8120
    N_ACTION_RQ = 0x0130
    N_ACTION_RSP = 0x8130
    N_CREATE_RQ = 0x0140
    N_CREATE_RSP = 0x8140
    N_DELETE_RQ = 0x0150
    N_DELETE_RSP = 0x8150
    C_CANCEL_RQ = 0x0FFF


class Priority:
    """Priority (0000,0700) values, PS3.7 Annex E."""

    LOW = 0x0002
    MEDIUM = 0x0000
    HIGH = 0x0001


#: CommandDataSetType (0000,0800) meaning "no data set follows" (PS3.7 E.1).
NO_DATASET = 0x0101
#: The value we send when a data set follows (PS3.7: any value other than 0101H).
DATASET_PRESENT = 0x0001
#: Verification SOP Class, the AffectedSOPClassUID of C-ECHO (PS3.4 A.4).
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"

_PENDING = (0xFF00, 0xFF01)

# ---------------------------------------------------------------- the table

# keyword -> (tag, VR) for every group 0000 entry of the dictionary; built once.
_SPEC: dict[str, tuple[int, str]] = {}
for _kw, _tag in dictionary.all_keywords().items():
    if _tag >> 16 == 0:
        _entry = dictionary.lookup(_tag)
        assert _entry is not None
        _SPEC[_kw] = (_tag, _entry.vr)
_KEYWORD_BY_TAG: dict[int, tuple[str, str]] = {t: (k, vr) for k, (t, vr) in _SPEC.items()}
del _kw, _tag

_TEXT_VRS = frozenset({"UI", "AE", "LO", "SH", "LT", "CS", "IS", "ST"})
_US1 = struct.Struct("<IIH")      # tag word, length 2, value
_UL1 = struct.Struct("<III")      # tag word, length 4, value
_HDR = struct.Struct("<II")       # tag word, length
_GROUP_LENGTH = struct.Struct("<III")


def _tag_word(tag: int) -> int:
    # Implicit VR LE writes group then element, each as uint16 LE: as one
    # uint32 LE that is (element << 16) | group.
    return ((tag & 0xFFFF) << 16) | (tag >> 16)


# keyword -> (tag, VR, tag word); the encoder's only lookup.
_ENC: dict[str, tuple[int, str, int]] = {k: (t, vr, _tag_word(t)) for k, (t, vr) in _SPEC.items()}


def _hex_key(tag: int) -> str:
    return f"{tag:08X}"


# ---------------------------------------------------------------- Command


class Command(dict):  # type: ignore[type-arg]
    """A DIMSE command set: keyword -> value (see the module docstring).

    ``tail`` (set only when there was one; read it with ``getattr(command,
    "tail", None)``): the bytes of elements outside group 0000 that a peer
    sent after the command set, Implicit VR LE. Not part of the mapping
    (equality, encoding). No ``__init__``: a command is made per message."""

    __slots__ = ("tail",)
    tail: bytes

    @property
    def command_field(self) -> CommandField | int | None:
        """CommandField as a :class:`CommandField` (a plain int if unknown; None if absent)."""
        value = self.get("CommandField")
        if value is None:
            return None
        try:
            return CommandField(value)
        except ValueError:
            return int(value)

    @property
    def message_id(self) -> int | None:
        """MessageID (requests), else MessageIDBeingRespondedTo (responses, C-CANCEL)."""
        value = self.get("MessageID")
        if value is None:
            value = self.get("MessageIDBeingRespondedTo")
        return value

    @property
    def status(self) -> int | None:
        """Status (0000,0900) of a response, None for a request."""
        return self.get("Status")

    @property
    def has_dataset(self) -> bool:
        """True when a data set follows (CommandDataSetType present and not 0101H)."""
        return self.get("CommandDataSetType", NO_DATASET) != NO_DATASET

    @property
    def is_response(self) -> bool:
        """True for a response command (bit 15 of the Command Field set)."""
        return bool((self.get("CommandField") or 0) & 0x8000)

    def __repr__(self) -> str:
        field = self.command_field
        name = field.name if isinstance(field, CommandField) else (
            "?" if field is None else f"0x{field:04X}")
        parts = []
        for key, value in self.items():
            if key == "CommandField":
                continue
            if key in ("Status", "CommandDataSetType") and isinstance(value, int):
                parts.append(f"{key}=0x{value:04X}")
            else:
                parts.append(f"{key}={value!r}")
        return f"Command({name}{', ' if parts else ''}{', '.join(parts)})"


# ---------------------------------------------------------------- encoding


def _text(keyword: str, vr: str, value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
    else:
        try:
            raw = str(value).encode("ascii")
        except UnicodeEncodeError:
            raise ValueError(f"{keyword}: command set text must be ASCII, got {value!r}") from None
    if vr == "UI":
        if len(raw) > 64:
            raise ValueError(f"{keyword}: UID longer than 64 characters: {value!r}")
        return raw + b"\0" if len(raw) & 1 else raw      # PS3.5 6.2: UI pads with NUL
    if vr == "AE":
        raw = raw.strip(b" ")
        if not raw or len(raw) > 16:
            raise ValueError(f"{keyword}: AE title must be 1-16 characters, got {value!r}")
        return raw.ljust(16, b" ")
    return raw + b" " if len(raw) & 1 else raw           # other text VRs pad with a space


def _ints(value: Any) -> list[int]:
    if isinstance(value, int):
        return [value]
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        return [int(v) for v in value]
    raise ValueError(f"expected an int or a list of ints, got {value!r}")


def _encode_element(keyword: str, vr: str, word: int, value: Any) -> bytes:
    """Encode one element other than the single-valued US/UL fast path."""
    if value is None:
        return _HDR.pack(word, 0)
    try:
        if vr in _TEXT_VRS:
            raw = _text(keyword, vr, value)
        elif vr == "US":
            numbers = _ints(value)
            raw = struct.pack(f"<{len(numbers)}H", *numbers)
        elif vr == "UL":
            numbers = _ints(value)
            raw = struct.pack(f"<{len(numbers)}I", *numbers)
        elif vr == "AT":
            v = _ints(value)
            raw = struct.pack(f"<{2 * len(v)}H", *(h for t in v for h in (t >> 16, t & 0xFFFF)))
        else:
            raise ValueError(f"{keyword}: VR {vr} is not supported in a command set")
    except struct.error as exc:
        raise ValueError(f"{keyword}: value {value!r} does not fit VR {vr}: {exc}") from None
    return _HDR.pack(word, len(raw)) + raw


def encode_command(command: Mapping[str, Any]) -> bytes:
    """Encode a command set as Implicit VR Little Endian bytes (PS3.7 6.3.1).

    Elements are written in ascending tag order, preceded by a computed
    CommandGroupLength (0000,0000). An unknown keyword or a value that does not
    fit its VR raises ``ValueError``.
    """
    return _CODEC.encode(command)


def _encode_command_py(command: Mapping[str, Any]) -> bytes:
    """The reference encoder (see :func:`encode_command`); the compiled codec
    hands it every command it does not encode itself."""
    items = []
    for key, value in command.items():
        spec = _ENC.get(key)
        if spec is None:
            spec = _raw_spec(key)
        if spec[0] == 0:
            continue                     # CommandGroupLength: recomputed below
        items.append((spec, key, value))
    items.sort()
    parts = [b""]
    total = 0
    us1, ul1 = _US1.pack, _UL1.pack
    for (tag, vr, word), key, value in items:
        try:
            if vr == "US" and isinstance(value, int):
                chunk = us1(word, 2, value)
            elif vr == "UL" and isinstance(value, int):
                chunk = ul1(word, 4, value)
            elif vr == "RAW":
                raw = bytes(value)
                if len(raw) & 1:
                    raw += b"\0"
                chunk = _HDR.pack(word, len(raw)) + raw
            else:
                chunk = _encode_element(key, vr, word, value)
        except struct.error as exc:
            raise ValueError(f"{key}: value {value!r} does not fit VR {vr}: {exc}") from None
        parts.append(chunk)
        total += len(chunk)
    parts[0] = _GROUP_LENGTH.pack(0, 4, total)
    return b"".join(parts)


def _raw_spec(key: str) -> tuple[int, str, int]:
    """A key of 8 hex digits naming a group-0000 tag unknown to the dictionary."""
    if len(key) == 8:
        try:
            tag = int(key, 16)
        except ValueError:
            tag = -1
        if 0 <= tag <= 0xFFFF and tag not in _KEYWORD_BY_TAG:
            return (tag, "RAW", _tag_word(tag))
    raise ValueError(f"{key!r} is not a command set keyword (group 0000 of PS3.6/PS3.7 E)")


# ---------------------------------------------------------------- decoding


def decode_command(data: bytes | bytearray | memoryview) -> Command:
    """Decode Implicit VR Little Endian command set bytes into a :class:`Command`.

    Raises :class:`~dicomnet.errors.DicomParseError` for malformed data: a bad
    element header or length, an element outside group 0000, tags out of
    ascending order, a wrong CommandGroupLength (a missing one is taken), a
    missing CommandField, or a value that does not fit its VR.
    """
    return _CODEC.decode(data)  # type: ignore[no-any-return]


def _decode_command_py(data: bytes | bytearray | memoryview) -> Command:
    """The reference decoder (see :func:`decode_command`); the compiled codec
    hands it every command set it does not decode itself, malformed ones included."""
    index = ElementIndex(data, implicit=True, little=True)
    n = len(index)
    command = Command()
    previous = -1
    group_length: int | None = None
    tail_at: int | None = None           # where elements of other groups begin
    for i in range(n):
        tag, _vr, flags, header, offset, length, _end = index.entry(i)
        if tag >> 16:
            if i == 0:
                raise DicomParseError("element outside group 0000 in a command set", header, tag)
            # PS3.7 6.3.1 allows group 0000 only, but dcmtk-based peers (Orthanc)
            # append a response's "status detail" -- e.g. (0008,0058) Failed SOP
            # Instance UID List in a final C-GET-RSP without a data set. The
            # command itself is whole before it: the rest is left out.
            tail_at = header
            break
        if flags:
            raise DicomParseError("undefined length in a command set", header, tag)
        if tag <= previous:
            raise DicomParseError("command set elements out of ascending tag order", header, tag)
        previous = tag
        spec = _KEYWORD_BY_TAG.get(tag)
        if spec is None:
            raw = index.value_bytes(i)
            # Kept as it would be sent on: an odd length (PS3.5 7.1.1) padded.
            command[_hex_key(tag)] = raw + b"\0" if len(raw) % 2 else raw
            continue
        keyword, vr = spec
        if vr in _TEXT_VRS:
            raw = index.value_bytes(i)
            if vr in ("UI", "AE"):
                try:
                    text = raw.decode("ascii")
                except UnicodeDecodeError:
                    raise DicomParseError(f"{keyword}: non-ASCII {vr} value", offset, tag) from None
                # PS3.5 6.2: UI holds at most 64 characters, AE 16. A longer value
                # could not even be echoed in the response (found by hardening tests).
                if len(text.strip("\0 ")) > (64 if vr == "UI" else 16):
                    raise DicomParseError(f"{keyword}: {vr} value of {len(raw)} bytes is too long", offset, tag)
            else:
                text = raw.decode("ascii", errors="replace")
            # PS3.5 6.2: leading spaces are significant in LT and ST only
            command[keyword] = text.rstrip("\0 ") if vr in ("LT", "ST") else text.strip("\0 ")
            continue
        if vr not in ("US", "UL", "AT"):
            raise DicomParseError(f"{keyword}: VR {vr} not supported in a command set", offset, tag)
        value = index.numeric(i, vr, vr == "AT")
        if vr == "AT":
            value = list(value)
        elif value is not None and not isinstance(value, int):
            value = [int(v) for v in value]          # several values: a list
        if tag == 0:
            if i != 0 or not isinstance(value, int):
                raise DicomParseError("CommandGroupLength must come first and hold one UL", header, tag)
            group_length = value
            continue
        command[keyword] = value
    after = (index.stop if tail_at is None else tail_at) - 12
    if group_length is None:
        # Required (PS3.7 E.1), but the last-fragment bit of its PDV already
        # says where the command set ends: taken, as dcmtk and pynetdicom do.
        _log.debug("command set without CommandGroupLength (0000,0000)")
    # (With a tail, a group length that counts it too is taken as well.)
    elif group_length != after and not (tail_at is not None and group_length == index.stop - 12):
        raise DicomParseError(
            f"CommandGroupLength says {group_length} bytes, {after} follow it", 8, 0)
    if not isinstance(command.get("CommandField"), int):
        raise DicomParseError("command set has no CommandField (0000,0100)", 0, 0x00000100)
    if tail_at is not None:
        command.tail = bytes(memoryview(data)[tail_at:index.stop])
        _log.info("command set followed by elements outside group 0000, from (%04X,%04X) on; "
                  "left out (PS3.7 6.3.1)", *struct.unpack_from("<HH", command.tail))
    return command


# The compiled codec takes the plain shapes (see dicomnet/_codec/dimse.pyx) and
# hands everything else to the two reference functions above.
_CODEC = CommandCodec(Command, _SPEC, _decode_command_py, _encode_command_py)


# ---------------------------------------------------------------- builders


def _dataset_type(has_dataset: bool) -> int:
    return DATASET_PRESENT if has_dataset else NO_DATASET


def _response(field: CommandField, responding_to: int, sop_class_uid: str | None, status: int,
              has_dataset: bool, error_comment: str | None) -> Command:
    cmd = Command(CommandField=field, MessageIDBeingRespondedTo=responding_to,
                  CommandDataSetType=_dataset_type(has_dataset), Status=status)
    if sop_class_uid is not None:
        cmd["AffectedSOPClassUID"] = sop_class_uid
    if error_comment is not None:
        cmd["ErrorComment"] = error_comment
    return cmd


def _counters(cmd: Command, remaining: int | None, completed: int | None, failed: int | None,
              warning: int | None) -> Command:
    for keyword, value in (("NumberOfRemainingSuboperations", remaining),
                           ("NumberOfCompletedSuboperations", completed),
                           ("NumberOfFailedSuboperations", failed),
                           ("NumberOfWarningSuboperations", warning)):
        if value is not None:
            cmd[keyword] = value
    return cmd


# Enum members bound once: a lookup on the Enum class costs more than building
# a small command (C-ECHO builds one per message on each side).
_C_ECHO_RQ = CommandField.C_ECHO_RQ
_C_ECHO_RSP = CommandField.C_ECHO_RSP


def c_echo_rq(message_id: int) -> Command:
    """C-ECHO-RQ (PS3.7 Table 9.3-12)."""
    return Command(CommandField=_C_ECHO_RQ, MessageID=message_id,
                   AffectedSOPClassUID=VERIFICATION_SOP_CLASS, CommandDataSetType=NO_DATASET)


def c_echo_rsp(message_id_being_responded_to: int, status: int = 0x0000) -> Command:
    """C-ECHO-RSP (PS3.7 Table 9.3-13)."""
    # The key order of _response(): CommandField, MessageIDBeingRespondedTo,
    # CommandDataSetType, Status, AffectedSOPClassUID.
    return Command(CommandField=_C_ECHO_RSP, MessageIDBeingRespondedTo=message_id_being_responded_to,
                   CommandDataSetType=NO_DATASET, Status=status, AffectedSOPClassUID=VERIFICATION_SOP_CLASS)


def c_store_rq(message_id: int, sop_class_uid: str, sop_instance_uid: str,
               priority: int = Priority.MEDIUM, move_originator_ae: str | None = None,
               move_originator_message_id: int | None = None) -> Command:
    """C-STORE-RQ (PS3.7 Table 9.3-1); the data set to store follows it."""
    cmd = Command(CommandField=CommandField.C_STORE_RQ, MessageID=message_id,
                  AffectedSOPClassUID=sop_class_uid, AffectedSOPInstanceUID=sop_instance_uid,
                  Priority=priority, CommandDataSetType=DATASET_PRESENT)
    if move_originator_ae is not None:
        cmd["MoveOriginatorApplicationEntityTitle"] = move_originator_ae
    if move_originator_message_id is not None:
        cmd["MoveOriginatorMessageID"] = move_originator_message_id
    return cmd


def c_store_rsp(message_id_being_responded_to: int, sop_class_uid: str | None = None,
                sop_instance_uid: str | None = None, status: int = 0x0000, *,
                error_comment: str | None = None,
                offending_element: int | list[int] | None = None) -> Command:
    """C-STORE-RSP (PS3.7 Table 9.3-2); no data set."""
    cmd = _response(CommandField.C_STORE_RSP, message_id_being_responded_to, sop_class_uid,
                    status, False, error_comment)
    if sop_instance_uid is not None:
        cmd["AffectedSOPInstanceUID"] = sop_instance_uid
    if offending_element is not None:
        cmd["OffendingElement"] = _ints(offending_element)
    return cmd


def c_find_rq(message_id: int, sop_class_uid: str, priority: int = Priority.MEDIUM) -> Command:
    """C-FIND-RQ (PS3.7 Table 9.3-3); the Identifier follows it."""
    return Command(CommandField=CommandField.C_FIND_RQ, MessageID=message_id,
                   AffectedSOPClassUID=sop_class_uid, Priority=priority,
                   CommandDataSetType=DATASET_PRESENT)


def c_find_rsp(responding_to: int, sop_class_uid: str | None, status: int,
               has_dataset: bool | None = None, *, error_comment: str | None = None) -> Command:
    """C-FIND-RSP (PS3.7 Table 9.3-4).

    ``has_dataset`` defaults to True for the Pending statuses (FF00H, FF01H),
    which carry an Identifier, and False otherwise.
    """
    if has_dataset is None:
        has_dataset = status in _PENDING
    return _response(CommandField.C_FIND_RSP, responding_to, sop_class_uid, status,
                     has_dataset, error_comment)


def c_move_rq(message_id: int, sop_class_uid: str, destination_ae: str,
              priority: int = Priority.MEDIUM) -> Command:
    """C-MOVE-RQ (PS3.7 Table 9.3-7); the Identifier follows it."""
    return Command(CommandField=CommandField.C_MOVE_RQ, MessageID=message_id,
                   AffectedSOPClassUID=sop_class_uid, Priority=priority,
                   MoveDestination=destination_ae, CommandDataSetType=DATASET_PRESENT)


def c_move_rsp(responding_to: int, sop_class_uid: str | None, status: int,
               remaining: int | None = None, completed: int | None = None,
               failed: int | None = None, warning: int | None = None,
               has_dataset: bool = False, *, error_comment: str | None = None) -> Command:
    """C-MOVE-RSP (PS3.7 Table 9.3-8) with the sub-operation counters given."""
    cmd = _response(CommandField.C_MOVE_RSP, responding_to, sop_class_uid, status,
                    has_dataset, error_comment)
    return _counters(cmd, remaining, completed, failed, warning)


def c_get_rq(message_id: int, sop_class_uid: str, priority: int = Priority.MEDIUM) -> Command:
    """C-GET-RQ (PS3.7 Table 9.3-5); the Identifier follows it."""
    return Command(CommandField=CommandField.C_GET_RQ, MessageID=message_id,
                   AffectedSOPClassUID=sop_class_uid, Priority=priority,
                   CommandDataSetType=DATASET_PRESENT)


def c_get_rsp(responding_to: int, sop_class_uid: str | None, status: int,
              remaining: int | None = None, completed: int | None = None,
              failed: int | None = None, warning: int | None = None,
              has_dataset: bool = False, *, error_comment: str | None = None) -> Command:
    """C-GET-RSP (PS3.7 Table 9.3-6) with the sub-operation counters given."""
    cmd = _response(CommandField.C_GET_RSP, responding_to, sop_class_uid, status,
                    has_dataset, error_comment)
    return _counters(cmd, remaining, completed, failed, warning)


def c_cancel_rq(message_id_being_responded_to: int) -> Command:
    """C-CANCEL-RQ (PS3.7 Table 9.3-15): cancels the C-FIND/C-GET/C-MOVE it names."""
    return Command(CommandField=CommandField.C_CANCEL_RQ,
                   MessageIDBeingRespondedTo=message_id_being_responded_to,
                   CommandDataSetType=NO_DATASET)
