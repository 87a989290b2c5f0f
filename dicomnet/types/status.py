"""DIMSE status codes: PS3.7 Annex C, and the service-specific ones of PS3.4.

Status classes (PS3.7 C.1 and the PS3.4 service annexes):

============  ============================================================
success       0x0000
pending       0xFF00, 0xFF01
cancel        0xFE00
warning       0x0001, 0x0107, 0x0116, 0xB000-0xBFFF
failure       0xA000-0xAFFF, 0xC000-0xCFFF, and the specific 01xx / 02xx
              codes of PS3.7 C.4 / C.5 (0x0105, 0x0110, 0x0122, 0x0211, ...)
============  ============================================================

A code outside every defined range (e.g. 0x0002, 0xD000, 0xFF02) is reported
as ``"failure"``: a status the receiver does not understand cannot be taken as
success, and treating it as an error is the safe reading. :func:`is_known`
tells whether a code is defined at all.
"""

from __future__ import annotations

__all__ = [
    "SUCCESS",
    "PENDING",
    "PENDING_WARNING",
    "CANCEL",
    "ATTRIBUTE_LIST_ERROR",
    "ATTRIBUTE_VALUE_OUT_OF_RANGE",
    "WARNING_REQUESTED_OPTIONAL_ATTRIBUTES",
    "NO_SUCH_ATTRIBUTE",
    "INVALID_ATTRIBUTE_VALUE",
    "PROCESSING_FAILURE",
    "DUPLICATE_SOP_INSTANCE",
    "NO_SUCH_SOP_INSTANCE",
    "NO_SUCH_EVENT_TYPE",
    "NO_SUCH_ARGUMENT",
    "INVALID_ARGUMENT_VALUE",
    "INVALID_OBJECT_INSTANCE",
    "NO_SUCH_SOP_CLASS",
    "CLASS_INSTANCE_CONFLICT",
    "MISSING_ATTRIBUTE",
    "MISSING_ATTRIBUTE_VALUE",
    "SOP_CLASS_NOT_SUPPORTED",
    "NO_SUCH_ACTION",
    "NOT_AUTHORIZED",
    "DUPLICATE_INVOCATION",
    "UNRECOGNIZED_OPERATION",
    "MISTYPED_ARGUMENT",
    "RESOURCE_LIMITATION",
    "OUT_OF_RESOURCES",
    "OUT_OF_RESOURCES_NUMBER_OF_MATCHES",
    "OUT_OF_RESOURCES_SUB_OPERATIONS",
    "MOVE_DESTINATION_UNKNOWN",
    "DATASET_DOES_NOT_MATCH_SOP_CLASS",
    "IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS",
    "CANNOT_UNDERSTAND",
    "UNABLE_TO_PROCESS",
    "COERCION_OF_DATA_ELEMENTS",
    "SUB_OPERATIONS_COMPLETE_WITH_FAILURES",
    "ELEMENTS_DISCARDED",
    "DATASET_DOES_NOT_MATCH_SOP_CLASS_WARNING",
    "SUCCESS_CATEGORY",
    "PENDING_CATEGORY",
    "CANCEL_CATEGORY",
    "WARNING_CATEGORY",
    "FAILURE_CATEGORY",
    "SERVICES",
    "status_category",
    "status_meaning",
    "is_known",
    "is_success",
    "is_pending",
    "is_cancel",
    "is_warning",
    "is_failure",
    "is_final",
]

SUCCESS_CATEGORY = "success"
PENDING_CATEGORY = "pending"
CANCEL_CATEGORY = "cancel"
WARNING_CATEGORY = "warning"
FAILURE_CATEGORY = "failure"

# --- PS3.7 C.1: general ---------------------------------------------------
SUCCESS = 0x0000
PENDING = 0xFF00
PENDING_WARNING = 0xFF01  # C-FIND: pending, optional keys not supported
CANCEL = 0xFE00
# --- PS3.7 C.3 / C.4 / C.5 -----------------------------------------------
WARNING_REQUESTED_OPTIONAL_ATTRIBUTES = 0x0001
ATTRIBUTE_LIST_ERROR = 0x0107
ATTRIBUTE_VALUE_OUT_OF_RANGE = 0x0116
NO_SUCH_ATTRIBUTE = 0x0105
INVALID_ATTRIBUTE_VALUE = 0x0106
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
NO_SUCH_SOP_INSTANCE = 0x0112
NO_SUCH_EVENT_TYPE = 0x0113
NO_SUCH_ARGUMENT = 0x0114
INVALID_ARGUMENT_VALUE = 0x0115
INVALID_OBJECT_INSTANCE = 0x0117
NO_SUCH_SOP_CLASS = 0x0118
CLASS_INSTANCE_CONFLICT = 0x0119
MISSING_ATTRIBUTE = 0x0120
MISSING_ATTRIBUTE_VALUE = 0x0121
SOP_CLASS_NOT_SUPPORTED = 0x0122
NO_SUCH_ACTION = 0x0123
NOT_AUTHORIZED = 0x0124
DUPLICATE_INVOCATION = 0x0210
UNRECOGNIZED_OPERATION = 0x0211
MISTYPED_ARGUMENT = 0x0212
RESOURCE_LIMITATION = 0x0213
# --- PS3.4 Storage (B.2.3) and Query/Retrieve (C.4) -----------------------
OUT_OF_RESOURCES = 0xA700
OUT_OF_RESOURCES_NUMBER_OF_MATCHES = 0xA701
OUT_OF_RESOURCES_SUB_OPERATIONS = 0xA702
MOVE_DESTINATION_UNKNOWN = 0xA801
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
UNABLE_TO_PROCESS = 0xC000
COERCION_OF_DATA_ELEMENTS = 0xB000
SUB_OPERATIONS_COMPLETE_WITH_FAILURES = 0xB000
ELEMENTS_DISCARDED = 0xB006
DATASET_DOES_NOT_MATCH_SOP_CLASS_WARNING = 0xB007

# Specific codes of PS3.7 C.1-C.5 (words from the standard's tables).
_GENERAL: dict[int, tuple[str, str]] = {
    0x0000: (SUCCESS_CATEGORY, "Success"),
    0xFF00: (PENDING_CATEGORY, "Pending"),
    0xFF01: (PENDING_CATEGORY, "Pending: warning, one or more optional keys were not supported"),
    0xFE00: (CANCEL_CATEGORY, "Cancel"),
    0x0001: (WARNING_CATEGORY, "Warning: requested optional attributes are not supported"),
    0x0107: (WARNING_CATEGORY, "Warning: attribute list error"),
    0x0116: (WARNING_CATEGORY, "Warning: attribute value out of range"),
    0x0105: (FAILURE_CATEGORY, "Failure: no such attribute"),
    0x0106: (FAILURE_CATEGORY, "Failure: invalid attribute value"),
    0x0110: (FAILURE_CATEGORY, "Failure: processing failure"),
    0x0111: (FAILURE_CATEGORY, "Failure: duplicate SOP Instance"),
    0x0112: (FAILURE_CATEGORY, "Failure: no such SOP Instance"),
    0x0113: (FAILURE_CATEGORY, "Failure: no such event type"),
    0x0114: (FAILURE_CATEGORY, "Failure: no such argument"),
    0x0115: (FAILURE_CATEGORY, "Failure: invalid argument value"),
    0x0117: (FAILURE_CATEGORY, "Failure: invalid object instance"),
    0x0118: (FAILURE_CATEGORY, "Failure: no such SOP Class"),
    0x0119: (FAILURE_CATEGORY, "Failure: class-instance conflict"),
    0x0120: (FAILURE_CATEGORY, "Failure: missing attribute"),
    0x0121: (FAILURE_CATEGORY, "Failure: missing attribute value"),
    0x0122: (FAILURE_CATEGORY, "Refused: SOP Class not supported"),
    0x0123: (FAILURE_CATEGORY, "Failure: no such action"),
    0x0124: (FAILURE_CATEGORY, "Refused: not authorized"),
    0x0210: (FAILURE_CATEGORY, "Failure: duplicate invocation"),
    0x0211: (FAILURE_CATEGORY, "Failure: unrecognized operation"),
    0x0212: (FAILURE_CATEGORY, "Failure: mistyped argument"),
    0x0213: (FAILURE_CATEGORY, "Failure: resource limitation"),
}

# Service-specific meanings of PS3.4 (B.2.3 storage, C.4.1-C.4.3 Q/R, K worklist).
_STORAGE = {
    0xB000: "Warning: coercion of data elements",
    0xB006: "Warning: elements discarded",
    0xB007: "Warning: data set does not match SOP Class",
}
_FIND = {
    0xA700: "Refused: out of resources",
    0xA900: "Failed: identifier does not match SOP Class",
    0xFF00: "Pending: matches are continuing, current match supplied",
    0xFF01: "Pending: matches are continuing, one or more optional keys were not supported",
}
_MOVE = {
    0xA701: "Refused: out of resources, unable to calculate number of matches",
    0xA702: "Refused: out of resources, unable to perform sub-operations",
    0xA801: "Refused: move destination unknown",
    0xA900: "Failed: identifier does not match SOP Class",
    0xB000: "Warning: sub-operations complete, one or more failures or warnings",
    0xFF00: "Pending: sub-operations are continuing",
}
_GET = {k: v for k, v in _MOVE.items() if k != 0xA801}

SERVICES: dict[str, dict[int, str]] = {
    "storage": _STORAGE,
    "find": _FIND,
    "worklist": _FIND,
    "move": _MOVE,
    "get": _GET,
}


def _check(code: int) -> int:
    if not isinstance(code, int) or isinstance(code, bool):
        raise TypeError(f"a DIMSE status is an int, not {type(code).__name__}")
    if code < 0 or code > 0xFFFF:
        raise ValueError(f"a DIMSE status is 16 bits (0x0000-0xFFFF), got {code:#x}")
    return code


def _range_category(code: int) -> str | None:
    high = code >> 12
    if high == 0xA or high == 0xC:
        return FAILURE_CATEGORY
    if high == 0xB:
        return WARNING_CATEGORY
    return None


def status_category(code: int) -> str:
    """Return ``"success"``, ``"pending"``, ``"cancel"``, ``"warning"`` or ``"failure"``.

    Undefined codes are ``"failure"`` (see the module docstring). Raises
    ``ValueError`` for a number that is not 16 bits.
    """
    known = _GENERAL.get(_check(code))
    if known is not None:
        return known[0]
    return _range_category(code) or FAILURE_CATEGORY


def is_known(code: int) -> bool:
    """True if PS3.7 / PS3.4 define ``code`` (exactly or by one of its ranges)."""
    return _check(code) in _GENERAL or _range_category(code) is not None


def status_meaning(code: int, service: str | None = None) -> str:
    """Return the standard's words for ``code``.

    ``service`` (``"storage"``, ``"find"``, ``"worklist"``, ``"move"``, ``"get"``)
    selects the PS3.4 meaning where the same code means different things in
    different services (0xB000 is "coercion of data elements" for storage and
    "sub-operations complete, one or more failures" for C-MOVE/C-GET).
    """
    _check(code)
    if service is not None:
        try:
            table = SERVICES[service]
        except KeyError:
            raise ValueError(f"unknown service {service!r}; one of {sorted(SERVICES)}") from None
        if code in table:
            return table[code]
    known = _GENERAL.get(code)
    if known is not None:
        return known[1]
    high = code >> 8
    if service == "storage" or service is None:
        if high == 0xA7:
            return "Refused: out of resources"
        if high == 0xA9:
            return "Error: data set does not match SOP Class"
    if code >> 12 == 0xC:
        if service in ("find", "worklist", "move", "get"):
            return "Failed: unable to process"
        return "Error: cannot understand / unable to process"
    if code >> 12 == 0xA:
        return "Failure"
    if code >> 12 == 0xB:
        return "Warning"
    return f"Unknown status 0x{code:04X} (treated as failure)"


def is_success(code: int) -> bool:
    """True for 0x0000."""
    return status_category(code) == SUCCESS_CATEGORY


def is_pending(code: int) -> bool:
    """True for 0xFF00 and 0xFF01."""
    return status_category(code) == PENDING_CATEGORY


def is_cancel(code: int) -> bool:
    """True for 0xFE00."""
    return status_category(code) == CANCEL_CATEGORY


def is_warning(code: int) -> bool:
    """True for 0x0001, 0x0107, 0x0116 and 0xBxxx."""
    return status_category(code) == WARNING_CATEGORY


def is_failure(code: int) -> bool:
    """True for failures (0xAxxx, 0xCxxx, 01xx/02xx errors) and undefined codes."""
    return status_category(code) == FAILURE_CATEGORY


def is_final(code: int) -> bool:
    """True if a response with this status ends the operation (anything but pending)."""
    return status_category(code) != PENDING_CATEGORY
