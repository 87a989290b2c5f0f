"""Items and sub-items of A-ASSOCIATE-RQ/AC: hand-built vectors, validation, malformed input."""
from __future__ import annotations

import struct

import pytest

from dicomnet.errors import PDUError
from dicomnet.pdu import items as it
from dicomnet.pdu.items import (
    AsyncOperationsWindow,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
)

try:
    from tests.pdu import vectors as V
except ImportError:  # pytest run from outside the project root
    import vectors as V  # type: ignore[no-redef]

E = V.expected()
CT = "1.2.840.10008.5.1.4.1.1.2"


def value_of(item: bytes) -> memoryview:
    """The value of a single item (after its 4-byte header), checking the length field."""
    (length,) = struct.unpack(">H", item[2:4])
    assert length == len(item) - 4, "vector length field disagrees with its bytes"
    return memoryview(item)[4:]


# ------------------------------------------------------------ vectors
@pytest.mark.parametrize(
    "item, key, decoder",
    [
        (V.PRESENTATION_CONTEXT_RQ_ITEM, "presentation_context_rq", it._decode_presentation_context_rq),
        (V.PRESENTATION_CONTEXT_AC_ACCEPTED_ITEM, "presentation_context_ac_accepted", it._decode_presentation_context_ac),
        (V.PRESENTATION_CONTEXT_AC_REJECTED_ITEM, "presentation_context_ac_rejected", it._decode_presentation_context_ac),
        (V.USER_INFORMATION_RQ_ITEM, "user_information_rq", lambda v: it._decode_user_information(v, True)),
        (V.USER_INFORMATION_RQ_ALL_ITEM, "user_information_rq_all", lambda v: it._decode_user_information(v, True)),
        (V.USER_INFORMATION_AC_ITEM, "user_information_ac", lambda v: it._decode_user_information(v, False)),
    ],
)
def test_item_vectors_encode_and_decode(item, key, decoder):
    obj = E[key]
    assert obj._encode() == item
    assert decoder(value_of(item)) == obj


def test_all_sub_items_decoded_field_by_field():
    ui = it._decode_user_information(value_of(V.USER_INFORMATION_RQ_ALL_ITEM), True)
    assert ui.max_length == 32768
    assert ui.implementation_class_uid == "1.2.3.999.1"
    assert ui.implementation_version_name == "DICOMNET_01"
    assert ui.async_ops == AsyncOperationsWindow(5, 3)
    assert ui.role_selections == (RoleSelection(CT, True, False),)
    assert ui.extended_negotiations[0].info == b"\x01\x02\x03"
    assert ui.common_extended_negotiations[0].related_general_sop_classes == (CT + ".1",)
    assert ui.user_identity == UserIdentityRQ(2, True, b"alice", b"s3cret")


def test_sub_items_encoded_in_increasing_type_order():
    raw = E["user_information_rq_all"]._encode()
    types = [t for t, _, _ in it.iter_items(raw[4:], "test")]
    assert types == sorted(types) == [0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58]


def test_unknown_user_information_sub_item_is_skipped():
    unknown = b"\x5f\x00\x00\x03abc"
    value = bytes(value_of(V.USER_INFORMATION_RQ_ITEM)) + unknown
    assert it._decode_user_information(memoryview(value), True) == E["user_information_rq"]


def test_identity_sub_item_of_the_other_side_is_skipped():
    ac_identity = b"\x59\x00\x00\x06\x00\x04OKAY"
    value = bytes(value_of(V.USER_INFORMATION_RQ_ITEM)) + ac_identity
    assert it._decode_user_information(memoryview(value), True).user_identity is None
    rq_identity = b"\x58\x00\x00\x07\x01\x00\x00\x01a\x00\x00"
    value = bytes(value_of(V.USER_INFORMATION_AC_ITEM)[:23]) + rq_identity
    assert it._decode_user_information(memoryview(value), False).user_identity is None


def test_uid_padding_is_stripped_on_decode():
    padded = b"\x20\x00\x00\x1a\x01\x00\x00\x00" + b"\x30\x00\x00\x08" + b"1.2.3.4\x00" + b"\x40\x00\x00\x06" + b"1.2.3 "
    pc = it._decode_presentation_context_rq(value_of(padded))
    assert pc == PresentationContextRQ(1, "1.2.3.4", ("1.2.3",))


def test_rejected_context_transfer_syntax_not_tested():
    # Result 4 with a junk transfer syntax sub-item: not significant, not read.
    raw = b"\x21\x00\x00\x0b\x05\x00\x04\x00" + b"\x40\x00\x00\x03" + b"\xff\xfe\xfd"
    pc = it._decode_presentation_context_ac(value_of(raw))
    assert pc == PresentationContextAC(5, 4, None)
    assert not pc.accepted
    assert "transfer-syntaxes-not-supported" in pc.description
    # ... and even a missing sub-item is tolerated on rejection.
    assert it._decode_presentation_context_ac(memoryview(b"\x07\x00\x01\x00")).result == 1


# ------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "build",
    [
        lambda: PresentationContextRQ(256, CT, ("1.2",)),
        lambda: PresentationContextRQ(1, "1.2.a", ("1.2",)),
        lambda: PresentationContextRQ(1, "", ("1.2",)),
        lambda: PresentationContextRQ(1, "1." * 40, ("1.2",)),
        lambda: PresentationContextAC(1, 0, None),
        lambda: RoleSelection("x", True, True),
        lambda: AsyncOperationsWindow(70000, 1),
        lambda: AsyncOperationsWindow(-1, 1),
        lambda: UserInformation(max_length=2**32),
        lambda: UserInformation(implementation_version_name="SEVENTEEN_CHARS__"),
        lambda: UserInformation(implementation_version_name=""),
        lambda: UserInformation(implementation_version_name="BAD\nNAME"),
        lambda: UserIdentityRQ(0, False, b"x"),
        lambda: UserIdentityRQ(1, False, b"x" * 70000),
        lambda: SOPClassExtendedNegotiation(CT, b"x" * 70000),
    ],
)
def test_bad_fields_raise_pdu_error(build):
    with pytest.raises(PDUError):
        build()


@pytest.mark.parametrize(
    "build",
    [
        lambda: PresentationContextRQ("1", CT, ("1.2",)),
        lambda: PresentationContextRQ(1, CT, ["1.2"]),
        lambda: RoleSelection(CT, 1, 0),
        lambda: UserIdentityRQ(1, True, "alice"),
        lambda: UserInformation(role_selections=(AsyncOperationsWindow(1, 1),)),
        lambda: UserInformation(user_identity=b"token"),
    ],
)
def test_wrong_types_raise_type_error(build):
    with pytest.raises(TypeError):
        build()


def test_items_are_frozen_and_slotted():
    pc = E["presentation_context_rq"]
    with pytest.raises(AttributeError):
        pc.context_id = 3  # type: ignore[misc]
    assert not hasattr(pc, "__dict__")


def test_context_without_transfer_syntax_cannot_be_encoded():
    with pytest.raises(PDUError, match="no transfer syntax"):
        PresentationContextRQ(1, CT, ())._encode()


def test_undefined_result_cannot_be_encoded():
    with pytest.raises(PDUError, match="Table 9-18"):
        PresentationContextAC(1, 9, None)._encode()


def test_rejected_context_encodes_empty_transfer_syntax():
    raw = PresentationContextAC(3, PresentationContextAC.USER_REJECTION, "1.2.840.10008.1.2")._encode()
    assert raw == b"\x21\x00\x00\x08\x03\x00\x01\x00\x40\x00\x00\x00"


# ------------------------------------------------------------ secrets stay out of repr
def test_user_identity_repr_hides_passcode_and_tokens():
    text = repr(UserIdentityRQ(UserIdentityRQ.USERNAME_PASSCODE, True, b"alice", b"hunter2"))
    assert "alice" in text and "hunter2" not in text
    jwt = b"eyJhbGciOiJIUzI1NiJ9.payload.signature"
    for kind in (UserIdentityRQ.KERBEROS, UserIdentityRQ.SAML, UserIdentityRQ.JWT):
        text = repr(UserIdentityRQ(kind, False, jwt))
        assert b"eyJ".decode() not in text and "payload" not in text
        assert str(len(jwt)) in text
    assert "SECRET" not in repr(UserIdentityAC(b"SECRET-TICKET"))
    ui = UserInformation(user_identity=UserIdentityRQ(2, False, b"bob", b"hunter2"))
    assert "hunter2" not in repr(ui) and "hunter2" not in str(ui)


# ------------------------------------------------------------ malformed sub-items
MALFORMED_USER_INFO = {
    "truncated item header": b"\x51\x00\x00",
    "item overruns": b"\x51\x00\x00\x08\x00\x00\x40\x00",
    "max length too short": b"\x51\x00\x00\x02\x40\x00",
    "max length too long": b"\x51\x00\x00\x05\x00\x00\x40\x00\x00",
    "async window short": b"\x53\x00\x00\x02\x00\x01",
    "role UID overruns": b"\x54\x00\x00\x04\x00\x09\x31\x00",
    "role bytes missing": b"\x54\x00\x00\x05\x00\x03\x31\x2e\x32",
    "role value 2": b"\x54\x00\x00\x07\x00\x03\x31\x2e\x32\x02\x00",
    "ext neg UID overruns": b"\x56\x00\x00\x03\x00\x05\x31",
    "common ext neg truncated": b"\x57\x00\x00\x05\x00\x03\x31\x2e\x32",
    "common ext neg related overruns": (
        b"\x57\x00\x00\x0e\x00\x03\x31\x2e\x32\x00\x03\x31\x2e\x33\x00\x05\x00\x01"
    ),
    "common ext neg trailing bytes": (
        b"\x57\x00\x00\x0d\x00\x03\x31\x2e\x32\x00\x03\x31\x2e\x33\x00\x00\xff"
    ),
    "identity too short": b"\x58\x00\x00\x01\x01",
    "identity type 0": b"\x58\x00\x00\x06\x00\x00\x00\x00\x00\x00",
    "identity flag 2": b"\x58\x00\x00\x06\x01\x02\x00\x00\x00\x00",
    "identity primary overruns": b"\x58\x00\x00\x06\x01\x00\x00\x09\x00\x00",
    "identity secondary missing": b"\x58\x00\x00\x05\x01\x00\x00\x01a",
    "identity trailing bytes": b"\x58\x00\x00\x07\x01\x00\x00\x00\x00\x00\xff",
    "duplicate max length": b"\x51\x00\x00\x04\x00\x00\x40\x00" * 2,
}


@pytest.mark.parametrize("value", MALFORMED_USER_INFO.values(), ids=MALFORMED_USER_INFO.keys())
def test_malformed_user_information_raises(value):
    with pytest.raises(PDUError):
        it._decode_user_information(memoryview(value), True)


# Fields that only identify the peer's software (PS3.7 D.3.3.2) are left out
# when malformed, not fatal (dcmtk and pynetdicom take them too).
LENIENT_USER_INFO = {
    "zero-length implementation UID": b"\x52\x00\x00\x00",
    "non-ascii UID": b"\x52\x00\x00\x02\xc3\xa9",
    "letters in the UID": b"\x52\x00\x00\x05\x31\x2e\x32\x2e\x41",
    "version name non-ascii": b"\x55\x00\x00\x01\xff",
    "version name empty": b"\x55\x00\x00\x00",
    "version name too long": b"\x55\x00\x00\x11" + b"A" * 17,
}


@pytest.mark.parametrize("value", LENIENT_USER_INFO.values(), ids=LENIENT_USER_INFO.keys())
def test_malformed_implementation_identification_is_left_out(value):
    ui = it._decode_user_information(memoryview(b"\x51\x00\x00\x04\x00\x00\x40\x00" + value), True)
    assert ui.max_length == 0x4000
    assert ui.implementation_class_uid is None and ui.implementation_version_name is None


def test_a_second_implementation_identification_is_ignored():
    value = (b"\x52\x00\x00\x03\x31\x2e\x32" + b"\x52\x00\x00\x03\x31\x2e\x33"
             + b"\x55\x00\x00\x02AB" + b"\x55\x00\x00\x02CD")
    ui = it._decode_user_information(memoryview(value), True)
    assert (ui.implementation_class_uid, ui.implementation_version_name) == ("1.2", "AB")


def test_malformed_user_identity_ac_raises():
    for value in (b"\x59\x00\x00\x01\x00", b"\x59\x00\x00\x04\x00\x05ab", b"\x59\x00\x00\x03\x00\x00z"):
        with pytest.raises(PDUError):
            it._decode_user_information(memoryview(value), False)


MALFORMED_PC_RQ = {
    "too short": b"\x01\x00\x00",
    "no abstract syntax": b"\x01\x00\x00\x00\x40\x00\x00\x03\x31\x2e\x32",
    "no transfer syntax": b"\x01\x00\x00\x00\x30\x00\x00\x03\x31\x2e\x32",
    "two abstract syntaxes": b"\x01\x00\x00\x00" + b"\x30\x00\x00\x03\x31\x2e\x32" * 2 + b"\x40\x00\x00\x01\x31",
    "unexpected sub-item": b"\x01\x00\x00\x00\x30\x00\x00\x01\x31\x41\x00\x00\x01\x31",
    "sub-item overruns": b"\x01\x00\x00\x00\x30\x00\x00\x09\x31",
}


@pytest.mark.parametrize("value", MALFORMED_PC_RQ.values(), ids=MALFORMED_PC_RQ.keys())
def test_malformed_presentation_context_rq_raises(value):
    with pytest.raises(PDUError):
        it._decode_presentation_context_rq(memoryview(value))


def test_a_malformed_uid_in_a_presentation_context_is_kept_for_negotiation_to_refuse():
    # Abstract syntax "1.2.A" (not a UID), transfer syntaxes "" and "1.2", and
    # an unknown sub-item E0H, which is skipped (PS3.8 9.3.1).
    value = (b"\x07\x00\x00\x00\x30\x00\x00\x05\x31\x2e\x32\x2e\x41" + b"\x40\x00\x00\x00"
             + b"\xe0\x00\x00\x02ab" + b"\x40\x00\x00\x03\x31\x2e\x32")
    pc = it._decode_presentation_context_rq(memoryview(value))
    assert (pc.context_id, pc.abstract_syntax, pc.transfer_syntaxes) == (7, "1.2.A", ("", "1.2"))
    with pytest.raises(PDUError, match="malformed UID"):
        pc._encode()                     # never sent on


def test_unknown_sub_items_in_presentation_contexts_are_skipped():
    rq = it._decode_presentation_context_rq(memoryview(
        b"\x01\x00\x00\x00\x30\x00\x00\x03\x31\x2e\x32\xe0\x00\x00\x01z\x40\x00\x00\x01\x31"))
    assert (rq.abstract_syntax, rq.transfer_syntaxes) == ("1.2", ("1",))
    ac = it._decode_presentation_context_ac(memoryview(
        b"\x01\x00\x00\x00\xe0\x00\x00\x01z\x40\x00\x00\x01\x31"))
    assert (ac.result, ac.transfer_syntax) == (0, "1")


MALFORMED_PC_AC = {
    "too short": b"\x01\x00",
    "accepted without transfer syntax": b"\x01\x00\x00\x00",
    "accepted with empty transfer syntax": b"\x01\x00\x00\x00\x40\x00\x00\x00",
    "two transfer syntaxes": b"\x01\x00\x00\x00" + b"\x40\x00\x00\x01\x31" * 2,
    "wrong sub-item": b"\x01\x00\x00\x00\x30\x00\x00\x01\x31",
}


@pytest.mark.parametrize("value", MALFORMED_PC_AC.values(), ids=MALFORMED_PC_AC.keys())
def test_malformed_presentation_context_ac_raises(value):
    with pytest.raises(PDUError):
        it._decode_presentation_context_ac(memoryview(value))


def test_item_too_long_for_its_length_field():
    roles = tuple(RoleSelection(CT, True, True) for _ in range(2200))  # 2200 * 33 bytes > 65535
    with pytest.raises(PDUError, match="65535"):
        UserInformation(role_selections=roles)._encode()


def test_common_extended_negotiation_round_trip_without_related():
    item = SOPClassCommonExtendedNegotiation(CT, "1.2.840.10008.4.2")
    raw = item._encode()
    assert raw[1] == 0  # sub-item version
    assert it._decode_sop_class_common_extended(value_of(raw)) == item
