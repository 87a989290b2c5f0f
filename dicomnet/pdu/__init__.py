"""The DICOM Upper Layer (PS3.8): PDUs and items, and (elsewhere in this package)
association negotiation and the DUL state machine.

PDUs and items are frozen dataclasses; :func:`encode_pdu` / :func:`decode_pdu`
convert them to and from wire bytes. Receiving and P-DATA framing live in the
compiled :mod:`dicomnet._codec.pdu` (``PDUReader``, ``iter_pdvs``, ``fragment``),
re-exported here.
"""
from __future__ import annotations

from .._codec.pdu import PDUReader, fragment, iter_pdvs
from .items import (
    ABSTRACT_SYNTAX_NOT_SUPPORTED,
    ACCEPTANCE,
    NO_REASON,
    TRANSFER_SYNTAXES_NOT_SUPPORTED,
    USER_REJECTION,
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
from .pdus import (
    A_ABORT,
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    A_ASSOCIATE_RQ,
    A_RELEASE_RP,
    A_RELEASE_RQ,
    DICOM_APPLICATION_CONTEXT,
    P_DATA_TF,
    PDU,
    PDV,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    decode_pdu,
    encode_pdu,
    validate_ae_title,
)

__all__ = [
    "PDUReader",
    "fragment",
    "iter_pdvs",
    "ACCEPTANCE",
    "USER_REJECTION",
    "NO_REASON",
    "ABSTRACT_SYNTAX_NOT_SUPPORTED",
    "TRANSFER_SYNTAXES_NOT_SUPPORTED",
    "AsyncOperationsWindow",
    "PresentationContextAC",
    "PresentationContextRQ",
    "RoleSelection",
    "SOPClassCommonExtendedNegotiation",
    "SOPClassExtendedNegotiation",
    "UserIdentityAC",
    "UserIdentityRQ",
    "UserInformation",
    "A_ASSOCIATE_RQ",
    "A_ASSOCIATE_AC",
    "A_ASSOCIATE_RJ",
    "P_DATA_TF",
    "A_RELEASE_RQ",
    "A_RELEASE_RP",
    "A_ABORT",
    "DICOM_APPLICATION_CONTEXT",
    "PDU",
    "PDV",
    "AAbort",
    "AAssociateAC",
    "AAssociateRJ",
    "AAssociateRQ",
    "AReleaseRP",
    "AReleaseRQ",
    "PDataTF",
    "decode_pdu",
    "encode_pdu",
    "validate_ae_title",
]
