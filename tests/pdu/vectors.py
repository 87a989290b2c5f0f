"""Canned Upper Layer wire bytes, built by hand field by field from PS3.8 (and PS3.7 Annex D).

Shared by the PDU tests and the benchmarks. Every length below was counted by
hand; ``tests/pdu/test_pdus.py`` re-checks each length field against the bytes
that follow, and decodes/encodes each vector against the objects in
:func:`expected`.

UIDs used (lengths in brackets)::

    1.2.840.10008.3.1.1.1        DICOM application context name      [21 = 0x15]
    1.2.840.10008.1.1            Verification SOP Class              [17 = 0x11]
    1.2.840.10008.1.2            Implicit VR Little Endian           [17 = 0x11]
    1.2.840.10008.1.2.1          Explicit VR Little Endian           [19 = 0x13]
    1.2.840.10008.5.1.4.1.1.2    CT Image Storage                    [25 = 0x19]
    1.2.840.10008.5.1.4.1.1.2.1  Enhanced CT Image Storage           [27 = 0x1B]
    1.2.840.10008.4.2            Storage Service Class               [17 = 0x11]
    1.2.3.999.1                  implementation class UID (made up)  [11 = 0x0B]
"""
from __future__ import annotations

APP_CONTEXT = b"1.2.840.10008.3.1.1.1"
VERIFICATION = b"1.2.840.10008.1.1"
IMPLICIT_LE = b"1.2.840.10008.1.2"
EXPLICIT_LE = b"1.2.840.10008.1.2.1"
CT_IMAGE = b"1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = b"1.2.840.10008.5.1.4.1.1.2.1"
STORAGE_SERVICE = b"1.2.840.10008.4.2"
IMPL_UID = b"1.2.3.999.1"
IMPL_NAME = b"DICOMNET_01"

# --- Items (PS3.8 9.3.2.x) --------------------------------------------------

# Application Context Item, Table 9-12: type 10H, reserved, length, name.
APPLICATION_CONTEXT_ITEM = b"\x10" + b"\x00" + b"\x00\x15" + APP_CONTEXT  # 4 + 21 = 25 bytes

# Presentation Context Item (RQ), Table 9-13.
PRESENTATION_CONTEXT_RQ_ITEM = (
    b"\x20"  # item type 20H
    b"\x00"  # reserved
    b"\x00\x45"  # item length 69 = 4 + 21 + 21 + 23
    b"\x01"  # presentation context id 1
    b"\x00\x00\x00"  # reserved x3
    # Abstract Syntax Sub-Item, Table 9-14: 30H, reserved, length 17, name
    + b"\x30\x00\x00\x11" + VERIFICATION
    # Transfer Syntax Sub-Items, Table 9-15: 40H, reserved, length, name
    + b"\x40\x00\x00\x11" + IMPLICIT_LE
    + b"\x40\x00\x00\x13" + EXPLICIT_LE
)  # 73 bytes

# User Information Item, Table 9-16, with the usual three sub-items.
USER_INFORMATION_RQ_ITEM = (
    b"\x50"  # item type 50H
    b"\x00"  # reserved
    b"\x00\x26"  # item length 38 = 8 + 15 + 15
    # Maximum Length Sub-Item, PS3.8 Table D.1-1: 51H, reserved, length 4, max 16384
    b"\x51\x00\x00\x04" b"\x00\x00\x40\x00"
    # Implementation Class UID Sub-Item, PS3.7 Table D.3-1: 52H, reserved, length 11, UID
    + b"\x52\x00\x00\x0b" + IMPL_UID
    # Implementation Version Name Sub-Item, PS3.7 Table D.3-3: 55H, reserved, length 11, name
    + b"\x55\x00\x00\x0b" + IMPL_NAME
)  # 42 bytes

# User Information Item with every sub-item this library knows (RQ side).
USER_INFORMATION_RQ_ALL_ITEM = (
    b"\x50\x00"
    b"\x00\xd7"  # item length 215 = 8 + 15 + 8 + 33 + 15 + 34 + 81 + 21
    # 51H Maximum Length: 32768
    b"\x51\x00\x00\x04" b"\x00\x00\x80\x00"
    # 52H Implementation Class UID
    + b"\x52\x00\x00\x0b" + IMPL_UID
    # 53H Asynchronous Operations Window, PS3.7 Table D.3-7: invoked 5, performed 3
    + b"\x53\x00\x00\x04" b"\x00\x05" b"\x00\x03"
    # 54H SCP/SCU Role Selection, PS3.7 Table D.3-9: length 29 = 2 + 25 + 1 + 1
    + b"\x54\x00\x00\x1d"
    + b"\x00\x19" + CT_IMAGE  # UID length, SOP class UID
    + b"\x01"  # SCU role: support
    + b"\x00"  # SCP role: non-support
    # 55H Implementation Version Name
    + b"\x55\x00\x00\x0b" + IMPL_NAME
    # 56H SOP Class Extended Negotiation, PS3.7 Table D.3-11: length 30 = 2 + 25 + 3
    + b"\x56\x00\x00\x1e"
    + b"\x00\x19" + CT_IMAGE
    + b"\x01\x02\x03"  # service-class-application-information
    # 57H SOP Class Common Extended Negotiation, PS3.7 Table D.3-12:
    # length 77 = (2 + 25) + (2 + 17) + (2 + 29)
    + b"\x57"
    + b"\x00"  # sub-item version 0
    + b"\x00\x4d"
    + b"\x00\x19" + CT_IMAGE  # SOP class UID
    + b"\x00\x11" + STORAGE_SERVICE  # service class UID
    + b"\x00\x1d"  # related general SOP class identification length 29
    + b"\x00\x1b" + ENHANCED_CT  # one related general SOP class UID (2 + 27)
    # 58H User Identity (RQ), PS3.7 Table D.3-14: length 17 = 1 + 1 + 2 + 5 + 2 + 6
    + b"\x58\x00\x00\x11"
    + b"\x02"  # user identity type 2: username and passcode
    + b"\x01"  # positive response requested
    + b"\x00\x05" + b"alice"  # primary field: username
    + b"\x00\x06" + b"s3cret"  # secondary field: passcode
)  # 219 bytes

# A-ASSOCIATE-RQ, Table 9-11.
ASSOCIATE_RQ = (
    b"\x01"  # PDU type 01H
    b"\x00"  # reserved
    b"\x00\x00\x00\xd0"  # PDU length 208 = 68 + 25 + 73 + 42
    b"\x00\x01"  # protocol version: bit 0 set
    b"\x00\x00"  # reserved
    b"ANY-SCP         "  # called AE title, 16 bytes, space padded
    b"ECHOSCU         "  # calling AE title
    + b"\x00" * 32  # reserved
    + APPLICATION_CONTEXT_ITEM
    + PRESENTATION_CONTEXT_RQ_ITEM
    + USER_INFORMATION_RQ_ITEM
)  # 214 bytes

# Presentation Context Items (AC), Table 9-18.
PRESENTATION_CONTEXT_AC_ACCEPTED_ITEM = (
    b"\x21\x00"
    b"\x00\x19"  # item length 25 = 4 + 21
    b"\x01"  # presentation context id 1
    b"\x00"  # reserved
    b"\x00"  # result/reason: acceptance
    b"\x00"  # reserved
    + b"\x40\x00\x00\x11" + IMPLICIT_LE  # the accepted transfer syntax
)  # 29 bytes
PRESENTATION_CONTEXT_AC_REJECTED_ITEM = (
    b"\x21\x00"
    b"\x00\x08"  # item length 8
    b"\x03"  # presentation context id 3
    b"\x00"
    b"\x03"  # result/reason: abstract-syntax-not-supported (provider rejection)
    b"\x00"
    b"\x40\x00\x00\x00"  # transfer syntax sub-item, not significant: empty
)  # 12 bytes

USER_INFORMATION_AC_ITEM = (
    b"\x50\x00"
    b"\x00\x21"  # item length 33 = 8 + 15 + 10
    b"\x51\x00\x00\x04" b"\x00\x00\x40\x00"
    + b"\x52\x00\x00\x0b" + IMPL_UID
    # 59H User Identity (AC), PS3.7 Table D.3-15: length 6 = 2 + 4
    + b"\x59\x00\x00\x06" + b"\x00\x04" + b"OKAY"
)  # 37 bytes

# A-ASSOCIATE-AC, Table 9-17: the AE titles sit in reserved fields (echoed).
ASSOCIATE_AC = (
    b"\x02\x00"
    b"\x00\x00\x00\xab"  # PDU length 171 = 68 + 25 + 29 + 12 + 37
    b"\x00\x01"  # protocol version
    b"\x00\x00"
    b"ANY-SCP         "
    b"ECHOSCU         "
    + b"\x00" * 32
    + APPLICATION_CONTEXT_ITEM
    + PRESENTATION_CONTEXT_AC_ACCEPTED_ITEM
    + PRESENTATION_CONTEXT_AC_REJECTED_ITEM
    + USER_INFORMATION_AC_ITEM
)  # 177 bytes

# A-ASSOCIATE-RJ, Table 9-21: reserved, result 1 (permanent), source 1 (service
# user), reason 7 (called-AE-title-not-recognized).
ASSOCIATE_RJ = b"\x03\x00" b"\x00\x00\x00\x04" b"\x00" b"\x01" b"\x01" b"\x07"

# P-DATA-TF, Table 9-22, with two PDV items (Table 9-23, Annex E.2).
P_DATA_TF = (
    b"\x04\x00"
    b"\x00\x00\x00\x13"  # PDU length 19 = (4 + 6) + (4 + 5)
    b"\x00\x00\x00\x06"  # PDV item length 6 = context id + control + 4 data bytes
    b"\x01"  # presentation context id 1
    b"\x03"  # message control header: command (bit 0), last fragment (bit 1)
    b"ABCD"
    b"\x00\x00\x00\x05"  # PDV item length 5
    b"\x01"
    b"\x00"  # data set, not the last fragment
    b"xyz"
)  # 25 bytes

# A-RELEASE-RQ / RP, Tables 9-24 and 9-25: 4 reserved bytes.
RELEASE_RQ = b"\x05\x00" b"\x00\x00\x00\x04" b"\x00\x00\x00\x00"
RELEASE_RP = b"\x06\x00" b"\x00\x00\x00\x04" b"\x00\x00\x00\x00"

# A-ABORT, Table 9-26: reserved, reserved, source 2 (service provider),
# reason 6 (invalid-PDU-parameter value).
ABORT = b"\x07\x00" b"\x00\x00\x00\x04" b"\x00\x00" b"\x02" b"\x06"

ALL_PDUS = {
    "A-ASSOCIATE-RQ": ASSOCIATE_RQ,
    "A-ASSOCIATE-AC": ASSOCIATE_AC,
    "A-ASSOCIATE-RJ": ASSOCIATE_RJ,
    "P-DATA-TF": P_DATA_TF,
    "A-RELEASE-RQ": RELEASE_RQ,
    "A-RELEASE-RP": RELEASE_RP,
    "A-ABORT": ABORT,
}


def expected() -> dict[str, object]:
    """The dicomnet objects each vector above encodes (imported lazily)."""
    from dicomnet.pdu import (
        PDV,
        AAbort,
        AAssociateAC,
        AAssociateRJ,
        AAssociateRQ,
        AReleaseRP,
        AReleaseRQ,
        AsyncOperationsWindow,
        PDataTF,
        PresentationContextAC,
        PresentationContextRQ,
        RoleSelection,
        SOPClassCommonExtendedNegotiation,
        SOPClassExtendedNegotiation,
        UserIdentityAC,
        UserIdentityRQ,
        UserInformation,
    )

    ts = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")
    pc_rq = PresentationContextRQ(1, "1.2.840.10008.1.1", ts)
    ui_rq = UserInformation(16384, "1.2.3.999.1", "DICOMNET_01")
    ui_all = UserInformation(
        max_length=32768,
        implementation_class_uid="1.2.3.999.1",
        implementation_version_name="DICOMNET_01",
        async_ops=AsyncOperationsWindow(5, 3),
        role_selections=(RoleSelection("1.2.840.10008.5.1.4.1.1.2", True, False),),
        extended_negotiations=(SOPClassExtendedNegotiation("1.2.840.10008.5.1.4.1.1.2", b"\x01\x02\x03"),),
        common_extended_negotiations=(
            SOPClassCommonExtendedNegotiation(
                "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.4.2", ("1.2.840.10008.5.1.4.1.1.2.1",)
            ),
        ),
        user_identity=UserIdentityRQ(UserIdentityRQ.USERNAME_PASSCODE, True, b"alice", b"s3cret"),
    )
    pc_ac_ok = PresentationContextAC(1, PresentationContextAC.ACCEPTANCE, "1.2.840.10008.1.2")
    pc_ac_no = PresentationContextAC(3, PresentationContextAC.ABSTRACT_SYNTAX_NOT_SUPPORTED, None)
    ui_ac = UserInformation(16384, "1.2.3.999.1", user_identity=UserIdentityAC(b"OKAY"))
    return {
        "presentation_context_rq": pc_rq,
        "user_information_rq": ui_rq,
        "user_information_rq_all": ui_all,
        "presentation_context_ac_accepted": pc_ac_ok,
        "presentation_context_ac_rejected": pc_ac_no,
        "user_information_ac": ui_ac,
        "A-ASSOCIATE-RQ": AAssociateRQ("ANY-SCP", "ECHOSCU", (pc_rq,), ui_rq),
        "A-ASSOCIATE-AC": AAssociateAC("ANY-SCP", "ECHOSCU", (pc_ac_ok, pc_ac_no), ui_ac),
        "A-ASSOCIATE-RJ": AAssociateRJ(1, 1, 7),
        "P-DATA-TF": PDataTF((PDV(1, True, True, memoryview(b"ABCD")), PDV(1, False, False, memoryview(b"xyz")))),
        "A-RELEASE-RQ": AReleaseRQ(),
        "A-RELEASE-RP": AReleaseRP(),
        "A-ABORT": AAbort(2, 6),
    }
