"""Tables of the DICOM standard: UIDs, transfer syntaxes, SOP classes, VRs, statuses."""

from __future__ import annotations

from dicomnet.types import status, uids, vr
from dicomnet.types.sop_classes import (
    DEFAULT_ABSTRACT_SYNTAXES,
    DEFAULT_TRANSFER_SYNTAXES,
    SOPClass,
    all_sop_classes,
    is_default_abstract_syntax,
    is_query_retrieve_sop_class,
    is_registered_sop_class,
    is_storage_sop_class,
    sop_class,
    storage_sop_classes,
)
from dicomnet.types.status import (
    status_category,
    status_meaning,
)
from dicomnet.types.transfer_syntax import (
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_BE,
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    UNCOMPRESSED,
    TransferSyntax,
    all_transfer_syntaxes,
    transfer_syntax,
)
from dicomnet.types.uids import UID, by_keyword, is_valid_uid, name_of
from dicomnet.types.vr import LONG_LENGTH_VRS, VR_INFO, VRInfo

__all__ = [
    "status",
    "uids",
    "vr",
    "UID",
    "by_keyword",
    "name_of",
    "is_valid_uid",
    "TransferSyntax",
    "transfer_syntax",
    "all_transfer_syntaxes",
    "IMPLICIT_VR_LE",
    "EXPLICIT_VR_LE",
    "EXPLICIT_VR_BE",
    "DEFLATED_EXPLICIT_VR_LE",
    "UNCOMPRESSED",
    "SOPClass",
    "sop_class",
    "all_sop_classes",
    "storage_sop_classes",
    "is_storage_sop_class",
    "is_query_retrieve_sop_class",
    "is_registered_sop_class",
    "is_default_abstract_syntax",
    "DEFAULT_ABSTRACT_SYNTAXES",
    "DEFAULT_TRANSFER_SYNTAXES",
    "status_category",
    "status_meaning",
    "VRInfo",
    "VR_INFO",
    "LONG_LENGTH_VRS",
]
