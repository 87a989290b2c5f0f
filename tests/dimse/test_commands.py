"""DIMSE command sets: hand-made PS3.7 vectors, round trips, pydicom/pynetdicom as oracles."""
from __future__ import annotations

import struct
from io import BytesIO

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dicomnet.dimse import commands as C
from dicomnet.dimse.commands import (
    NO_DATASET,
    Command,
    CommandField,
    Priority,
    decode_command,
    encode_command,
)
from dicomnet.errors import DicomParseError

CT = "1.2.840.10008.5.1.4.1.1.2"


def el(group: int, elem: int, value: bytes) -> bytes:
    """Implicit VR LE element: group, element (uint16 LE each), length (uint32 LE), value."""
    return struct.pack("<HHI", group, elem, len(value)) + value


def us(v: int) -> bytes:
    return struct.pack("<H", v)


def with_group_length(body: bytes) -> bytes:
    return el(0, 0, struct.pack("<I", len(body))) + body


# PS3.7 Table 9.3-12 / E.1-1, written element by element.
ECHO_RQ = bytes.fromhex(
    "00000000" "04000000" "38000000"                       # (0000,0000) UL 4: 56
    "00000200" "12000000" "312e322e3834302e31303030382e312e3100"  # (0000,0002) UI 18: "1.2.840.10008.1.1\0"
    "00000001" "02000000" "3000"                           # (0000,0100) US: 0x0030
    "00001001" "02000000" "0100"                           # (0000,0110) US: 1
    "00000008" "02000000" "0101"                           # (0000,0800) US: 0x0101
)

ECHO_RSP = bytes.fromhex(
    "00000000" "04000000" "42000000"                       # 66 bytes follow
    "00000200" "12000000" "312e322e3834302e31303030382e312e3100"
    "00000001" "02000000" "3080"                           # 0x8030
    "00002001" "02000000" "0100"                           # (0000,0120) responding to 1
    "00000008" "02000000" "0101"
    "00000009" "02000000" "0000"                           # (0000,0900) Status 0
)

STORE_RQ = (
    el(0, 0x0000, struct.pack("<I", 124))
    + el(0, 0x0002, b"1.2.840.10008.5.1.4.1.1.2\0")        # 25 chars + NUL
    + el(0, 0x0100, b"\x01\x00")
    + el(0, 0x0110, b"\x07\x00")
    + el(0, 0x0700, b"\x02\x00")                             # LOW
    + el(0, 0x0800, b"\x01\x00")                             # data set present
    + el(0, 0x1000, b"1.2.3.4\0")                            # 7 chars + NUL
    + el(0, 0x1030, b"ABC" + b" " * 13)                      # AE padded to 16
    + el(0, 0x1031, b"\x03\x00")
)


def test_echo_rq_bytes() -> None:
    assert encode_command(C.c_echo_rq(1)) == ECHO_RQ
    assert decode_command(ECHO_RQ) == C.c_echo_rq(1)


def test_echo_rsp_bytes() -> None:
    assert encode_command(C.c_echo_rsp(1)) == ECHO_RSP
    rsp = decode_command(ECHO_RSP)
    assert rsp == C.c_echo_rsp(1)
    assert rsp.command_field is CommandField.C_ECHO_RSP
    assert rsp.message_id == 1 and rsp.status == 0 and not rsp.has_dataset and rsp.is_response


def test_store_rq_bytes() -> None:
    cmd = C.c_store_rq(7, CT, "1.2.3.4", Priority.LOW, move_originator_ae="ABC",
                       move_originator_message_id=3)
    assert len(STORE_RQ) == 12 + 124
    assert encode_command(cmd) == STORE_RQ
    back = decode_command(memoryview(STORE_RQ))
    assert back == cmd and back.has_dataset and back.message_id == 7
    assert back["MoveOriginatorApplicationEntityTitle"] == "ABC"


def test_encode_sorts_and_ignores_given_group_length() -> None:
    cmd = {"CommandDataSetType": NO_DATASET, "MessageID": 1, "CommandGroupLength": 999,
           "CommandField": 0x30, "AffectedSOPClassUID": "1.2.840.10008.1.1"}
    assert encode_command(cmd) == ECHO_RQ


BUILDERS = [
    C.c_echo_rq(1),
    C.c_echo_rsp(65535, 0x0122),
    C.c_store_rq(2, CT, "1.2.3.4.5"),
    C.c_store_rq(3, CT, "1.2.3", Priority.HIGH, "MOVER", 17),
    C.c_store_rsp(2, CT, "1.2.3.4.5"),
    C.c_store_rsp(2, CT, "1.2.3.4.5", 0xA700, error_comment="out of space",
                  offending_element=[0x00100010, 0x7FE00010]),
    C.c_find_rq(4, "1.2.840.10008.5.1.4.1.2.1.1"),
    C.c_find_rsp(4, "1.2.840.10008.5.1.4.1.2.1.1", 0xFF00),
    C.c_find_rsp(4, "1.2.840.10008.5.1.4.1.2.1.1", 0x0000),
    C.c_move_rq(5, "1.2.840.10008.5.1.4.1.2.2.2", "STORESCP", Priority.LOW),
    C.c_move_rsp(5, "1.2.840.10008.5.1.4.1.2.2.2", 0xFF00, 3, 1, 0, 0),
    C.c_move_rsp(5, None, 0xB000, 0, 3, 1, 0, has_dataset=True),
    C.c_get_rq(6, "1.2.840.10008.5.1.4.1.2.2.3"),
    C.c_get_rsp(6, "1.2.840.10008.5.1.4.1.2.2.3", 0x0000, completed=4, failed=0, warning=0),
    C.c_cancel_rq(4),
]


@pytest.mark.parametrize("cmd", BUILDERS, ids=repr)
def test_round_trip_every_builder(cmd: Command) -> None:
    data = encode_command(cmd)
    assert len(data) % 2 == 0
    back = decode_command(data)
    assert back == cmd
    assert type(back) is Command
    assert back.has_dataset == cmd.has_dataset


def test_builders_fill_the_annex_e_fields() -> None:
    assert C.c_echo_rq(9)["AffectedSOPClassUID"] == "1.2.840.10008.1.1"
    assert not C.c_echo_rq(9).has_dataset
    assert C.c_store_rq(1, CT, "1.2").has_dataset
    assert C.c_find_rq(1, CT).has_dataset and C.c_get_rq(1, CT).has_dataset
    assert C.c_move_rq(1, CT, "DEST")["MoveDestination"] == "DEST"
    assert C.c_find_rsp(1, CT, 0xFF01).has_dataset
    assert not C.c_find_rsp(1, CT, 0x0000).has_dataset
    assert C.c_find_rsp(1, CT, 0x0000, True).has_dataset
    rsp = C.c_move_rsp(8, CT, 0xFF00, remaining=2, completed=1)
    assert rsp["NumberOfRemainingSuboperations"] == 2 and "NumberOfFailedSuboperations" not in rsp
    assert rsp.message_id == 8 and rsp.command_field is CommandField.C_MOVE_RSP
    cancel = C.c_cancel_rq(8)
    assert cancel.command_field == 0x0FFF and cancel["MessageIDBeingRespondedTo"] == 8
    assert cancel.status is None


def test_repr_names_the_command() -> None:
    text = repr(C.c_echo_rsp(3))
    assert text.startswith("Command(C_ECHO_RSP") and "Status=0x0000" in text
    assert "0x1234" in repr(Command(CommandField=0x1234))


def test_unknown_keyword_and_bad_values_raise_value_error() -> None:
    with pytest.raises(ValueError, match="PatientName"):
        encode_command({"CommandField": 1, "PatientName": "X"})
    with pytest.raises(ValueError):
        encode_command({"CommandField": 0x10000})                   # does not fit US
    with pytest.raises(ValueError):
        encode_command({"CommandField": 1, "MoveDestination": "A" * 17})
    with pytest.raises(ValueError):
        encode_command({"CommandField": 1, "AffectedSOPClassUID": "1.2.é"})
    with pytest.raises(ValueError):
        encode_command({"CommandField": 1, "00080016": b"xx"})     # not group 0000


def test_unknown_group_0000_tag_is_kept_under_its_hex_string() -> None:
    body = el(0, 0x0100, us(0x30)) + el(0, 0x0999, b"ab")
    cmd = decode_command(with_group_length(body))
    assert cmd["00000999"] == b"ab"
    assert decode_command(encode_command(cmd)) == cmd


def test_multi_valued_and_at_values() -> None:
    cmd = Command(CommandField=1, OffendingElement=0x00100020)
    back = decode_command(encode_command(cmd))
    assert back["OffendingElement"] == [0x00100020]
    raw = encode_command(Command(CommandField=1, OffendingElement=[0x00100020, 0x00080018]))
    assert el(0, 0x0901, struct.pack("<4H", 0x0010, 0x0020, 0x0008, 0x0018)) in raw


def test_text_values_are_stripped_and_padded() -> None:
    body = (el(0, 0x0002, b"1.2.3 ") + el(0, 0x0100, us(1)) + el(0, 0x0600, b" DEST  ")
            + el(0, 0x0902, b"disk full "))
    cmd = decode_command(with_group_length(body))
    assert cmd["AffectedSOPClassUID"] == "1.2.3"
    assert cmd["MoveDestination"] == "DEST"
    assert cmd["ErrorComment"] == "disk full"
    assert el(0, 0x0902, b"odd ") in encode_command({"CommandField": 1, "ErrorComment": "odd"})


# ------------------------------------------------------------ malformed input


def _bad(data: bytes, match: str | None) -> None:
    with pytest.raises(DicomParseError, match=match):
        decode_command(data)


def test_malformed_commands_raise_parse_errors() -> None:
    _bad(ECHO_RQ[:-1], None)                                          # truncated value
    _bad(ECHO_RQ[:-10] + b"\x00\x00", "truncated")                  # truncated header
    # No group length: taken (PS3.7 E.1 requires it, but the PDV's last-fragment
    # bit delimits the command set; dcmtk and pynetdicom take it too).
    assert decode_command(ECHO_RQ[12:]) == decode_command(ECHO_RQ)
    _bad(with_group_length(el(0, 0x0110, us(1))), "CommandField")   # no command field
    bad_len = bytearray(ECHO_RQ)
    bad_len[8] = 0x36
    _bad(bytes(bad_len), "CommandGroupLength says 54")
    _bad(el(8, 0x0016, b"12") + ECHO_RQ, "group 0000")                # nothing of group 0000 first
    _bad(with_group_length(el(0, 0x0110, us(1)) + el(0, 0x0100, us(1))), "ascending")
    _bad(with_group_length(el(0, 0x0100, us(1)) + el(0, 0x0100, us(1))), "ascending")
    _bad(with_group_length(el(0, 0x0100, b"\x01\x00\x02")), "multiple of 2")
    _bad(el(0, 0, b"\x00\x00") + el(0, 0x0100, us(1)), None)           # group length not a UL
    undefined = struct.pack("<HHI", 0, 0x0902, 0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    _bad(with_group_length(el(0, 0x0100, us(1)) + undefined), None)
    _bad(with_group_length(el(0, 0x0100, us(1)) + el(0, 0x0600, b"\xff\xfe")), "non-ASCII")
    _bad(b"", "CommandField")


def test_elements_after_the_command_set_are_left_out(caplog: pytest.LogCaptureFixture) -> None:
    """Orthanc (dcmtk) puts a final C-GET-RSP's status detail -- (0008,0000)
    and the Failed SOP Instance UID List -- after the group 0000 elements, with
    no data set. PS3.7 6.3.1 has no place for them; the command before them is
    whole, so they are left out (and logged) instead of failing the message.
    The group length may count them or not."""
    cmd = C.c_get_rsp(3, "1.2.840.10008.5.1.4.1.2.2.3", 0xC000, 0, 0, 1, 0)
    data = encode_command(cmd)
    uid = b"1.2.3.4\x00"
    tail = el(8, 0, struct.pack("<I", 8 + len(uid))) + el(8, 0x0058, uid)
    caplog.set_level("INFO", logger="dicomnet")
    assert decode_command(data + tail) == cmd
    assert decode_command(with_group_length(data[12:] + tail)) == cmd
    assert "outside group 0000, from (0008,0000) on" in caplog.text
    wrong = bytearray(data + tail)
    wrong[8] += 2
    _bad(bytes(wrong), "CommandGroupLength says")


@given(st.binary(max_size=200))
def test_garbage_never_crashes(data: bytes) -> None:
    try:
        decode_command(data)
    except DicomParseError:
        pass


@given(st.binary(min_size=1, max_size=8), st.integers(0, len(STORE_RQ) - 1))
def test_corrupted_store_is_rejected_or_decoded(noise: bytes, at: int) -> None:
    data = bytearray(STORE_RQ)
    data[at:at + len(noise)] = noise
    try:
        cmd = decode_command(bytes(data[: len(STORE_RQ)]))
    except DicomParseError:
        return
    assert isinstance(cmd["CommandField"], int)
    assert all(isinstance(k, str) for k in cmd)


_uid = st.from_regex(r"[1-9][0-9]{0,5}(\.[1-9][0-9]{0,5}){1,6}", fullmatch=True)
_us = st.integers(0, 0xFFFF)


@given(_us, _uid, _uid, st.sampled_from([Priority.LOW, Priority.MEDIUM, Priority.HIGH]),
       st.none() | st.from_regex(r"[A-Z0-9_]{1,16}", fullmatch=True), st.none() | _us)
def test_store_round_trip_property(mid: int, cls: str, inst: str, prio: int,
                                   ae: str | None, orig: int | None) -> None:
    cmd = C.c_store_rq(mid, cls, inst, prio, ae, orig)
    data = encode_command(cmd)
    assert struct.unpack_from("<I", data, 8)[0] == len(data) - 12
    assert decode_command(data) == cmd


# ------------------------------------------------------------ oracles


@pytest.mark.parametrize("cmd", BUILDERS, ids=repr)
def test_pydicom_reads_our_bytes(cmd: Command) -> None:
    pydicom_filereader = pytest.importorskip("pydicom.filereader")
    data = encode_command(cmd)
    ds = pydicom_filereader.read_dataset(BytesIO(data), True, True)
    assert ds.CommandGroupLength == len(data) - 12
    assert [e.tag for e in ds] == sorted(e.tag for e in ds)
    for keyword, value in cmd.items():
        theirs = ds[keyword].value
        if keyword == "OffendingElement":
            theirs = [int(t) for t in ([theirs] if isinstance(theirs, int) else theirs)]
        assert theirs == value, keyword


def _pynetdicom_bytes(kind: str, **fields: object) -> bytes:
    pytest.importorskip("pynetdicom")
    from pynetdicom import dimse_messages, dimse_primitives
    from pynetdicom.dsutils import encode

    primitive = getattr(dimse_primitives, kind.split("_")[0] + "_" + kind.split("_")[1])()
    for name, value in fields.items():
        setattr(primitive, name, value)
    message = getattr(dimse_messages, kind)()
    message.primitive_to_message(primitive)
    return encode(message.command_set, True, True)


def test_pynetdicom_echo_bytes_match_ours() -> None:
    theirs = _pynetdicom_bytes("C_ECHO_RQ", MessageID=1, AffectedSOPClassUID="1.2.840.10008.1.1")
    assert theirs == ECHO_RQ
    assert decode_command(theirs) == C.c_echo_rq(1)


def test_pynetdicom_store_bytes_decode_to_our_command() -> None:
    theirs = _pynetdicom_bytes("C_STORE_RQ", MessageID=7, AffectedSOPClassUID=CT,
                               AffectedSOPInstanceUID="1.2.3.4", Priority=2,
                               MoveOriginatorApplicationEntityTitle="ABC",
                               MoveOriginatorMessageID=3,
                               DataSet=BytesIO(b"\x08\x00\x18\x00\x08\x00\x00\x001.2.3.4\x00"))
    assert decode_command(theirs) == C.c_store_rq(7, CT, "1.2.3.4", Priority.LOW, "ABC", 3)
    # pynetdicom pads the AE title only to an even length ("ABC "), we to 16 bytes:
    # both are valid (PS3.5 6.2), so the bytes differ by exactly that padding.
    assert theirs.replace(b"\x04\x00\x00\x00ABC ", b"\x10\x00\x00\x00" + b"ABC".ljust(16)) \
        .replace(struct.pack("<I", 112), struct.pack("<I", 124), 1) == STORE_RQ


def test_pynetdicom_find_rsp_decodes() -> None:
    theirs = _pynetdicom_bytes("C_FIND_RSP", MessageIDBeingRespondedTo=4,
                               AffectedSOPClassUID="1.2.840.10008.5.1.4.1.2.1.1", Status=0xFF00,
                               Identifier=BytesIO(b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY "))
    cmd = decode_command(theirs)
    assert cmd.command_field is CommandField.C_FIND_RSP and cmd.status == 0xFF00
    assert cmd.has_dataset and cmd.message_id == 4


def test_repeated_command_bytes_decode_to_independent_copies():
    raw = encode_command(C.c_find_rsp(9, "1.2.840.10008.5.1.4.1.2.2.1", 0xFF00))
    first = decode_command(raw)
    first["Status"] = 0
    second = decode_command(memoryview(raw))
    assert second == decode_command(bytearray(raw)) and second["Status"] == 0xFF00
    assert second is not first and type(second) is Command
    other = decode_command(encode_command(C.c_find_rsp(9, "1.2.840.10008.5.1.4.1.2.2.1", 0xFF01)))
    assert other["Status"] == 0xFF01


def test_an_unknown_element_of_odd_length_is_kept_padded():
    """As it would be sent on (PS3.5 7.1.1): decoding what we encode gives it back
    (found by the command fuzzer once a missing group length was taken)."""
    body = struct.pack("<HHI", 0, 0x100, 2) + struct.pack("<H", 0x30) + struct.pack("<HHI", 0, 0x227, 3) + b"abc"
    for raw in (body, struct.pack("<HHII", 0, 0, 4, len(body)) + body):
        command = decode_command(raw)
        assert command["00000227"] == b"abc\0"
        assert decode_command(encode_command(command)) == command
