"""The compiled command-set codec (dicomnet/_codec/dimse.pyx) against the Python reference.

The codec must give exactly what ``_decode_command_py`` / ``_encode_command_py``
give -- same mapping, same bytes, same exception type and message -- and must
take the plain shapes itself (else it would be correct but pointless).
"""
from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomnet._codec.dimse import CommandCodec
from dicomnet.dimse import commands as C
from dicomnet.dimse.commands import Command, decode_command, encode_command
from dicomnet.errors import DicomParseError

CT = "1.2.840.10008.5.1.4.1.1.2"

PLAIN = [
    C.c_echo_rq(1),
    C.c_echo_rsp(65535, 0x0110),
    C.c_store_rq(7, CT, "1.2.3.4.5.6"),
    C.c_store_rsp(7, CT, "1.2.3.4.5.6", 0xB000, error_comment="odd"),
    C.c_find_rq(2, CT, C.Priority.HIGH),
    C.c_find_rsp(2, CT, 0xFF00),
    C.c_get_rsp(3, CT, 0xFF00, remaining=4, completed=5, failed=0, warning=1),
    C.c_cancel_rq(9),
    Command(CommandField=0x8030, MessageIDBeingRespondedTo=1, CommandDataSetType=0x0101, Status=0,
            AffectedSOPClassUID="", ErrorComment=""),
]
# Shapes the compiled path hands to Python: AE titles, AT lists, raw tags, None, bytes.
UNUSUAL = [
    C.c_move_rq(4, CT, "DEST_AE"),
    C.c_store_rq(5, CT, "1.2.3", move_originator_ae="MOVER", move_originator_message_id=4),
    C.c_store_rsp(7, CT, "1.2.3", 0xA900, offending_element=[0x00100010, 0x00100020]),
    Command(CommandField=0x0030, MessageID=1, CommandDataSetType=0x0101, **{"00000999": b"\x01\x02\x03"}),
    Command(CommandField=0x0030, MessageID=None, CommandDataSetType=0x0101),
    Command(CommandField=0x0030, MessageID=1, CommandDataSetType=0x0101, AffectedSOPClassUID=b"1.2"),
]


class Counting:
    """A reference function that counts how often the codec falls back to it."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, arg: Any) -> Any:
        self.calls += 1
        return self.fn(arg)


def counting_codec() -> tuple[CommandCodec, Counting, Counting]:
    dec, enc = Counting(C._decode_command_py), Counting(C._encode_command_py)
    return CommandCodec(Command, C._SPEC, dec, enc), dec, enc


def outcome(fn: Any, arg: Any) -> tuple[str, Any]:
    try:
        value = fn(arg)
    except Exception as exc:  # noqa: BLE001 - the comparison is the point
        return type(exc).__name__, str(exc)
    if isinstance(value, dict):
        return type(value).__name__, list(value.items())
    return type(value).__name__, value


@pytest.mark.parametrize("command", PLAIN, ids=lambda c: repr(c)[:40])
def test_plain_commands_take_the_compiled_path_and_match(command: Command) -> None:
    codec, dec, enc = counting_codec()
    data = codec.encode(command)
    assert data == C._encode_command_py(command)
    back = codec.decode(memoryview(data))
    assert type(back) is Command
    assert list(back.items()) == list(C._decode_command_py(data).items())
    assert back == command
    assert (dec.calls, enc.calls) == (0, 0)


@pytest.mark.parametrize("command", UNUSUAL, ids=lambda c: repr(c)[:40])
def test_unusual_commands_go_to_python_with_the_same_result(command: Command) -> None:
    codec, _, enc = counting_codec()
    assert outcome(codec.encode, command) == outcome(C._encode_command_py, command)
    assert enc.calls == 1
    data = C._encode_command_py(command)
    assert outcome(codec.decode, data) == outcome(C._decode_command_py, data)


def test_echo_bytes_are_the_standard_layout() -> None:
    # PS3.7 Table 9.3-12 in Implicit VR LE: group length 56, then 4 elements.
    data = encode_command(C.c_echo_rq(0x1234))
    assert data[:12] == struct.pack("<HHII", 0, 0, 4, len(data) - 12)
    assert data[12:20] == struct.pack("<HHI", 0, 2, 18)          # AffectedSOPClassUID, padded
    assert data[20:38] == b"1.2.840.10008.1.1\0"
    assert data[38:48] == struct.pack("<HHIH", 0, 0x100, 2, 0x0030)
    assert data[48:58] == struct.pack("<HHIH", 0, 0x110, 2, 0x1234)
    assert data[58:68] == struct.pack("<HHIH", 0, 0x800, 2, 0x0101)


@pytest.mark.parametrize("bad", [
    Command(CommandField=0x10030, MessageID=1),                # does not fit US
    Command(CommandField=-1, MessageID=1),
    Command(CommandField=0x30, MessageID=1, AffectedSOPClassUID="1." * 40),   # UID > 64
    Command(CommandField=0x30, MessageID=1, ErrorComment="Grüße"),            # not ASCII
    Command(CommandField=0x30, NotAKeyword=1),
    Command(CommandField="0x30"),
])
def test_bad_commands_raise_as_python_does(bad: Command) -> None:
    kind, message = outcome(encode_command, bad)
    assert kind == "ValueError"
    assert (kind, message) == outcome(C._encode_command_py, bad)


def test_a_plain_dict_and_a_non_dict_mapping_encode_alike() -> None:
    from types import MappingProxyType

    command = dict(C.c_echo_rq(3))
    assert encode_command(command) == encode_command(MappingProxyType(command)) == C._encode_command_py(command)


@pytest.mark.parametrize("mutate", [
    lambda b: b[:-1],                                   # truncated value
    lambda b: b[:-3],                                   # truncated header
    lambda b: b[:8] + struct.pack("<I", 99) + b[12:],   # wrong group length
    lambda b: b[:12] + b[38:48] + b[12:38] + b[48:],    # out of order
    lambda b: b[:20] + b"\xff" + b[21:],                # non-ASCII UID
    lambda b: b[:12] + b"\x10\x00" + b[14:],            # group 0010
    lambda b: b[:16] + b"\xff\xff\xff\xff" + b[20:],    # undefined length
])
def test_malformed_sets_raise_the_reference_error(mutate: Any) -> None:
    data = mutate(encode_command(C.c_echo_rq(5)))
    kind, message = outcome(decode_command, data)
    assert kind == "DicomParseError"
    assert (kind, message) == outcome(C._decode_command_py, data)
    with pytest.raises(DicomParseError):
        decode_command(memoryview(data))


def test_a_set_without_group_length_decodes_as_the_reference_does() -> None:
    # Taken (PS3.7 E.1 requires it, but the PDV's last-fragment bit delimits the set).
    whole = encode_command(C.c_echo_rq(5))
    assert decode_command(whole[12:]) == C._decode_command_py(whole[12:]) == decode_command(whole)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PLAIN + UNUSUAL), st.data())
def test_mutated_bytes_decode_exactly_as_the_reference(command: Command, data: st.DataObject) -> None:
    raw = bytearray(C._encode_command_py(command))
    for _ in range(data.draw(st.integers(0, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    blob = bytes(raw[:cut])
    assert outcome(decode_command, blob) == outcome(C._decode_command_py, blob)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(
    st.sampled_from(["CommandField", "MessageID", "MessageIDBeingRespondedTo", "Status", "Priority",
                     "CommandDataSetType", "AffectedSOPClassUID", "ErrorComment", "AffectedSOPInstanceUID",
                     "NumberOfRemainingSuboperations", "MoveDestination", "CommandGroupLength"]),
    st.one_of(st.integers(-2, 0x1_0000_0001), st.text(max_size=70), st.none()), min_size=1))
def test_random_commands_encode_exactly_as_the_reference(fields: dict[str, Any]) -> None:
    command = Command(fields)
    assert outcome(encode_command, command) == outcome(C._encode_command_py, command)
