"""One tree of exceptions under :class:`DicomNetError`.

Everything dicomnet raises on purpose derives from :class:`DicomNetError`, so
``except dicomnet.DicomNetError`` catches every protocol, parse and timeout
failure while letting programming errors (``TypeError`` and friends) through.
"""
from __future__ import annotations

__all__ = [
    "DicomNetError",
    "DicomParseError",
    "PDUError",
    "AssociationError",
    "AssociationRejected",
    "AssociationAborted",
    "DicomTimeoutError",
    "ConnectTimeout",
    "ReadTimeout",
    "WriteTimeout",
    "ARTIMTimeout",
    "DimseStatusError",
    "DicomEncodeError",
    "LocalProtocolError",
    "NoPresentationContext",
    "QueryError",
]


class DicomNetError(Exception):
    """Base class of every error dicomnet raises deliberately."""


class DicomParseError(DicomNetError, ValueError):
    """Malformed DICOM data: names the byte offset and, when known, the tag.

    ``offset`` is counted from the start of the buffer handed to the parser
    (for a file: from the first byte of the file).
    """

    def __init__(self, message: str, offset: int | None = None, tag: int | None = None):
        self.offset = offset
        self.tag = tag
        where = []
        if tag is not None:
            where.append(f"tag ({tag >> 16:04X},{tag & 0xFFFF:04X})")
        if offset is not None:
            where.append(f"offset {offset}")
        super().__init__(f"{message} [{', '.join(where)}]" if where else message)


class PDUError(DicomNetError, ValueError):
    """A PDU or item that breaks PS3.8 (bad type, bad length, truncated)."""


class AssociationError(DicomNetError):
    """The association could not be used (rejected, aborted, released)."""


class AssociationRejected(AssociationError):
    """The acceptor answered A-ASSOCIATE-RJ; result/source/reason as numbers and words."""

    def __init__(self, result: int, source: int, reason: int, description: str = ""):
        self.result = result
        self.source = source
        self.reason = reason
        self.description = description
        super().__init__(
            description or f"association rejected (result {result}, source {source}, reason {reason})"
        )


class AssociationAborted(AssociationError):
    """The association ended with A-ABORT (or the connection dropped)."""

    def __init__(self, source: int | None = None, reason: int | None = None, description: str = ""):
        self.source = source
        self.reason = reason
        self.description = description
        super().__init__(description or f"association aborted (source {source}, reason {reason})")


class DicomTimeoutError(DicomNetError, TimeoutError):
    """A deadline passed; the subclasses say which one."""


class ConnectTimeout(DicomTimeoutError):
    """The TCP connection was not established in time."""


class ReadTimeout(DicomTimeoutError):
    """Nothing (or not enough) arrived from the peer in time."""


class WriteTimeout(DicomTimeoutError):
    """The peer did not take our data in time."""


class ARTIMTimeout(DicomTimeoutError):
    """The Association Request/Reject/Release timer (PS3.8 9.1.5) expired."""


class DimseStatusError(DicomNetError):
    """A DIMSE response carried a failure status."""

    def __init__(self, status: int, meaning: str = "", comment: str | None = None):
        self.status = status
        self.meaning = meaning
        self.comment = comment
        text = f"DIMSE status 0x{status:04X}"
        if meaning:
            text += f" ({meaning})"
        if comment:
            text += f": {comment}"
        super().__init__(text)


class DicomEncodeError(DicomNetError, ValueError):
    """A value that cannot be encoded as its VR or character set requires."""


class LocalProtocolError(AssociationError):
    """The local user asked for something the association's state does not allow
    (a primitive whose PS3.8 Table 9-10 cell is blank in the current state)."""


class NoPresentationContext(AssociationError):
    """No accepted presentation context can carry a data set: its SOP class was
    not accepted, or not with a transfer syntax the data set is in or can be
    transcoded to. ``sop_class``, ``transfer_syntax`` (the data set's own, None
    if unknown), ``accepted`` (the syntaxes accepted for that SOP class) and
    ``requested`` (a syntax the caller asked for, or None)."""

    def __init__(self, sop_class: str, transfer_syntax: str | None, accepted: list[str],
                 requested: str | None = None):
        self.sop_class = sop_class
        self.transfer_syntax = transfer_syntax
        self.accepted = list(accepted)
        self.requested = requested
        if not accepted:
            text = f"no presentation context was accepted for SOP class {sop_class}"
        else:
            text = (f"SOP class {sop_class}: the data set is in {transfer_syntax or 'an unknown syntax'}"
                    + (f", {requested} was requested" if requested else "")
                    + f", but only {', '.join(accepted)} were accepted and it cannot be transcoded to them")
        super().__init__(text)


class QueryError(DicomNetError, ValueError):
    """A Query/Retrieve Identifier the SCP cannot use (PS3.4 C.4.1.1.4, C.4.2.1.5):
    ``status`` is the failure status to answer with -- 0xA900 (Identifier does
    not match SOP Class: bad or missing Query/Retrieve Level) or 0xC000 (unable
    to process: e.g. a unique key of a level above is missing)."""

    def __init__(self, message: str, status: int = 0xC000):
        self.status = status
        super().__init__(message)
