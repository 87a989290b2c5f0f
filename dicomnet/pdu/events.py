"""What :meth:`dicomnet.pdu.connection.Connection.next_event` hands the driver.

One small, immutable event per thing that happened on the association: a PDU
from the peer that the state machine turned into an indication/confirmation
primitive (PS3.8 7), or the end of the transport connection.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from .negotiation import NegotiatedAssociation
    from .pdus import PDV, AAssociateAC, AAssociateRJ, AAssociateRQ

__all__ = [
    "AssociateRequest",
    "AssociateAccept",
    "AssociateReject",
    "PDataReceived",
    "ReleaseRequest",
    "ReleaseConfirm",
    "Abort",
    "ConnectionClosed",
    "Event",
]


@dataclass(frozen=True, slots=True)
class AssociateRequest:
    """A-ASSOCIATE indication (acceptor): answer with ``accept()`` or ``reject()``."""

    rq: AAssociateRQ


@dataclass(frozen=True, slots=True)
class AssociateAccept:
    """A-ASSOCIATE confirmation, accepted (requestor); the association is up."""

    ac: AAssociateAC
    negotiated: NegotiatedAssociation


@dataclass(frozen=True, slots=True)
class AssociateReject:
    """A-ASSOCIATE confirmation, rejected (requestor); the connection closes."""

    rj: AAssociateRJ


@dataclass(frozen=True, slots=True)
class PDataReceived:
    """P-DATA indication: the PDVs of one P-DATA-TF PDU, in order.

    Each PDV's ``data`` is a memoryview into the receive buffer; it stays valid
    as documented by :class:`dicomnet._codec.pdu.PDUReader`.
    """

    pdvs: tuple[PDV, ...]


@dataclass(frozen=True, slots=True)
class ReleaseRequest:
    """A-RELEASE indication: the peer asks to release.

    Answer with ``confirm_release()``. With ``collision`` set both ends asked at
    once (PS3.8 9.2, Sta9/Sta10): the requestor side answers at once; the acceptor
    side first waits for its own :class:`ReleaseConfirm`, then answers.
    """

    collision: bool = False


@dataclass(frozen=True, slots=True)
class ReleaseConfirm:
    """A-RELEASE confirmation: the peer answered our release request."""


@dataclass(frozen=True, slots=True)
class Abort:
    """A-ABORT / A-P-ABORT indication (PS3.8 7.3, 7.4, Table 9-26 values).

    ``source`` 0 is the peer's service-user, 2 the service-provider (either
    end's Upper Layer); ``reason`` matters only for source 2. ``local`` is True
    when this end's Upper Layer aborted (an unexpected or invalid PDU, a lost
    transport, an expired timer) rather than the peer; ``transport_lost``
    when the cause was the connection closing under the association (AA-4).
    """

    source: int
    reason: int
    local: bool = False
    transport_lost: bool = False

    @property
    def description(self) -> str:
        """The abort in words, e.g. ``"aborted by the DICOM UL service-provider: unexpected-PDU"``."""
        from .pdus import AAbort

        text = AAbort(self.source, self.reason).description
        return text + (" (this end)" if self.local else "")


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The state machine is back in Sta1: the transport connection is (to be) closed."""


Event = Union[
    AssociateRequest,
    AssociateAccept,
    AssociateReject,
    PDataReceived,
    ReleaseRequest,
    ReleaseConfirm,
    Abort,
    ConnectionClosed,
]
