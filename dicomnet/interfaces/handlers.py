"""What an application implements to serve DICOM requests with :class:`dicomnet.Server`.

A handler is any object; the server looks each ``on_*`` method up by name and
uses only those that exist, so implement just the services you need:

* ``on_association(info: AssociationInfo) -> None`` -- called once an
  association has been accepted, with what was negotiated (and the
  A-ASSOCIATE-RQ's role selections, extended negotiation and user identity
  items). An exception here is logged; the association goes on.
* ``on_echo(ctx: ServiceContext) -> int | None`` -- C-ECHO. Return the status
  (None means 0x0000 Success). Without the method the server answers Success.

* ``on_store(ctx, dataset) -> int | None`` -- C-STORE. ``dataset`` is decoded
  lazily from the received bytes in ``ctx.transfer_syntax``. Return the status
  (None: 0x0000). Without it (and without ``store_destination``) the server
  answers 0x0122 "SOP Class not supported".
* ``store_destination(ctx, command) -> path | None`` -- optional, called when a
  C-STORE-RQ's command set has arrived: a path makes the server stream the
  data set straight into that Part 10 file (temporary name, renamed once
  complete); ``on_store`` then receives the file, memory-mapped.
* ``on_find(ctx, query) -> Iterable[Dataset]`` -- C-FIND. Each yielded Dataset
  (or ``(0xFF01, Dataset)``) is sent as a Pending response; check
  ``ctx.cancelled`` between yields (a C-CANCEL also stops the iteration); the
  final status is Success, or Cancel after a C-CANCEL. Without it: 0x0122.

See :mod:`dicomnet.dimse.scp` for the failure statuses a raising handler
produces (C-STORE 0xA700/0xC000, C-FIND 0xA700/0xC000).

* ``on_move(ctx, query, destination_ae) -> (address, instances) | instances``
  -- C-MOVE. ``address`` is ``(host, port)`` of the destination, or None when
  the AE title is unknown (answered 0xA801); returning only the instances
  looks the address up in the Server's ``destinations`` table. Instances are
  Datasets or Part 10 file paths; the server sends them as C-STORE
  sub-operations over its own association to the destination.
* ``on_get(ctx, query) -> instances`` -- C-GET: the instances go back as
  C-STORE sub-operations on the requestor's association.

See :mod:`dicomnet.dimse.retrieve_scp` for their statuses (0xB000 when some
sub-operations failed, 0xA702 when all did, 0xFE00 after C-CANCEL).

A handler method that raises becomes a failure response (0x0110 "processing
failure") whose ErrorComment carries the exception text. Handlers run on the
association's own thread: two associations may call the same handler at once.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import os
    from collections.abc import Iterable

    from ..dicom.dataset import Dataset
    from ..dimse.commands import Command
    from ..pdu.items import (
        RoleSelection,
        SOPClassCommonExtendedNegotiation,
        SOPClassExtendedNegotiation,
        UserIdentityRQ,
    )
    from ..pdu.negotiation import NegotiatedAssociation, NegotiatedContext
    from ..pdu.pdus import AAssociateAC, AAssociateRQ

__all__ = ["Handler", "ServiceContext", "AssociationInfo"]


@dataclass(frozen=True)
class AssociationInfo:
    """One accepted association as the server saw it.

    ``negotiated`` is the acceptor's view (our roles, both maximum PDU
    lengths, the requestor's implementation class UID and version name);
    ``rq``/``ac`` are the A-ASSOCIATE PDUs. The ``repr`` never shows a passcode.
    """

    calling_ae: str
    called_ae: str
    peer_address: tuple[str, int] | None
    negotiated: NegotiatedAssociation
    rq: AAssociateRQ
    ac: AAssociateAC

    @property
    def role_selections(self) -> tuple[RoleSelection, ...]:
        """The SCP/SCU Role Selection items the requestor proposed."""
        return self.rq.user_information.role_selections

    @property
    def extended_negotiations(self) -> tuple[SOPClassExtendedNegotiation, ...]:
        """The SOP Class Extended Negotiation items the requestor sent."""
        return self.rq.user_information.extended_negotiations

    @property
    def common_extended_negotiations(self) -> tuple[SOPClassCommonExtendedNegotiation, ...]:
        """The SOP Class Common Extended Negotiation items the requestor sent."""
        return self.rq.user_information.common_extended_negotiations

    @property
    def user_identity(self) -> UserIdentityRQ | None:
        """The requestor's User Identity item, if any (handle its passcode with care)."""
        identity = self.rq.user_information.user_identity
        from ..pdu.items import UserIdentityRQ as _RQ

        return identity if isinstance(identity, _RQ) else None


@dataclass
class ServiceContext:
    """Everything a handler method knows about the request it serves.

    ``context`` is the presentation context the request came on (its
    ``abstract_syntax`` and ``transfer_syntax``); ``command`` the request's
    command set. ``cancelled`` turns True when the peer sends C-CANCEL for this
    request (long-running C-FIND/C-MOVE/C-GET handlers should check it).
    """

    calling_ae: str
    called_ae: str
    peer_address: tuple[str, int] | None
    context: NegotiatedContext
    message_id: int
    command: Command
    association: AssociationInfo
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("dicomnet"))
    cancelled: bool = False

    @property
    def abstract_syntax(self) -> str:
        """The SOP class UID of the presentation context."""
        return self.context.abstract_syntax

    @property
    def transfer_syntax(self) -> str:
        """The transfer syntax negotiated for the presentation context."""
        return self.context.transfer_syntax

    @property
    def sop_class_uid(self) -> str:
        """The request's Affected SOP Class UID (else the context's abstract syntax)."""
        return str(self.command.get("AffectedSOPClassUID") or self.context.abstract_syntax)

    @property
    def sop_instance_uid(self) -> str | None:
        """The request's Affected SOP Instance UID (C-STORE), or None."""
        value = self.command.get("AffectedSOPInstanceUID")
        return str(value) if value else None


@runtime_checkable
class Handler(Protocol):
    """The methods a handler *may* implement (see the module docstring).

    Every method is optional: :class:`dicomnet.Server` calls only those the
    handler object has, so do not inherit this just to satisfy a type checker
    for methods you leave out -- it documents the signatures.
    """

    def on_association(self, info: AssociationInfo) -> None:
        """An association was accepted."""

    def on_echo(self, ctx: ServiceContext) -> int | None:
        """A C-ECHO request; return its status (None: 0x0000 Success)."""

    def on_store(self, ctx: ServiceContext, dataset: Dataset) -> int | None:
        """A C-STORE request; return its status (None: 0x0000 Success)."""

    def store_destination(self, ctx: ServiceContext, command: Command) -> str | os.PathLike[str] | None:
        """Where to stream the data set of this C-STORE-RQ (None: keep it in memory)."""

    def on_find(self, ctx: ServiceContext, query: Dataset) -> Iterable[Dataset]:
        """A C-FIND request: yield the matching Identifiers."""
        return ()

    def on_move(self, ctx: ServiceContext, query: Dataset, destination_ae: str) -> Any:
        """A C-MOVE request: ``((host, port) | None, instances)``, or just the
        instances (Datasets or paths) when the Server has ``destinations``."""
        return None, ()

    def on_get(self, ctx: ServiceContext, query: Dataset) -> Iterable[Any]:
        """A C-GET request: the instances (Datasets or paths) to send back."""
        return ()
