"""An established association, seen from either end, over the blocking driver.

:class:`Association` is what :meth:`dicomnet.Client.associate` returns (and what
the :class:`dicomnet.Server` drives for each peer). It owns one
:class:`~dicomnet.transport.sync.SyncDriver` and the
:class:`~dicomnet.dimse.assembler.MessageAssembler` that turns received PDVs
into DIMSE messages.

The DIMSE services build on two internal methods:

* :meth:`Association._send_message` -- one command (and optionally its data
  set) on one presentation context, written before it returns;
* :meth:`Association._receive_message` -- the next complete message, within a
  timeout; anything else the peer does (release, abort, closing the
  connection) raises.

Errors: an A-ABORT or a lost connection is
:class:`~dicomnet.errors.AssociationAborted`; waiting longer than the DIMSE
timeout aborts the association and raises :class:`~dicomnet.errors.ReadTimeout`;
a failure status in a response is :class:`~dicomnet.errors.DimseStatusError`.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from collections import deque
from collections.abc import Container
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .dimse.assembler import Message, MessageAssembler
from .dimse.commands import NO_DATASET, Command, CommandField, c_echo_rq, encode_command
from .errors import (
    AssociationAborted,
    AssociationError,
    DicomTimeoutError,
    DimseStatusError,
    PDUError,
    ReadTimeout,
)
from .pdu import events as ev
from .transport.sync import Interrupted, SyncDriver
from .types.status import is_failure, status_meaning

if TYPE_CHECKING:
    from .pdu.negotiation import NegotiatedAssociation, NegotiatedContext
    from .pdu.pdus import AAssociateAC, AAssociateRQ

__all__ = ["Association", "VERIFICATION"]

VERIFICATION = "1.2.840.10008.1.1"

_DEBUG = logging.DEBUG
# How many of our latest Message IDs count as "ours" for a late response.
_ISSUED_KEPT = 64


class Association:
    """An established association (Sta6) and the DIMSE messages on it.

    A context manager: leaving the ``with`` block normally releases the
    association, leaving it with an exception aborts it.

    Attributes: ``negotiated`` (the accepted presentation contexts, the peer's
    maximum PDU length, implementation class UID / version name and user
    identity server response), ``rq``/``ac`` (the A-ASSOCIATE PDUs exchanged),
    ``peer_address``.
    """

    def __init__(
        self,
        driver: SyncDriver,
        negotiated: NegotiatedAssociation,
        *,
        rq: AAssociateRQ,
        ac: AAssociateAC,
        dimse_timeout: float = 30.0,
        logger: logging.Logger | None = None,
    ) -> None:
        self._driver = driver
        self._conn = driver.conn
        self.negotiated = negotiated
        self.rq = rq
        self.ac = ac
        self.dimse_timeout = float(dimse_timeout)
        self.peer_address = driver.peer_address
        self._log = logger or logging.getLogger("dicomnet")
        self._assembler = MessageAssembler()
        # Big data set PDVs are received straight into the data set's buffer.
        self._conn.set_payload_router(self._assembler.direct_target)
        self._ready: deque[Message] = deque()
        # C-STORE responses queued but not yet flushed (dimse.scp.handle_store).
        self._deferred_since: float | None = None
        self._deferred = 0
        # The server handler's on_echo and on_store, looked up once per
        # association (dimse.scp.attach).
        self._on_echo: Any = None
        self._on_store: Any = None
        self._message_id = 0
        # Our latest requests' Message IDs, to recognise a response that comes
        # after its request was answered in full (_late_response).
        self._issued: deque[int] = deque(maxlen=_ISSUED_KEPT)
        self._pending_collision = False
        self._echo_context: NegotiatedContext | None = None
        self._open_find: Any = None  # a C-FIND whose responses are still arriving (dimse.scu)
        self._lane: Any = None  # the compiled lane (_lane_next): made on first use; False: none here

    # -------------------------------------------------------------- status
    @property
    def is_established(self) -> bool:
        """True while DIMSE messages may be exchanged."""
        return self._conn.is_established and not self._driver.closed

    @property
    def is_closed(self) -> bool:
        """True once the association is over and its socket closed."""
        return self._driver.closed

    def __repr__(self) -> str:
        state = "established" if self.is_established else ("closed" if self.is_closed else self._conn.state)
        return (f"<Association {self.negotiated.calling_ae!r} -> {self.negotiated.called_ae!r} "
                f"{state}, {len(self.negotiated.contexts)} context(s)>")

    def __enter__(self) -> Association:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.is_closed:
            return
        if exc_type is None and self._conn.state in ("Sta6", "Sta8"):  # Sta8: the peer asked to release
            self.release()
        else:
            self.abort()

    # ------------------------------------------------------------ services
    def echo(self, *, timeout: float | None = None) -> int:
        """C-ECHO (PS3.7 9.1.5): the response status (0x0000 on success).

        Raises :class:`DimseStatusError` for a failure status, ``AssociationError``
        when no Verification context was accepted.
        """
        if self._open_find is not None:
            # A C-FIND/C-MOVE/C-GET whose loop was left unfinished: cancel and drain it first.
            self._open_find.cancel()
        ctx = self._echo_context
        if ctx is None:
            ctx = self._echo_context = self.context_for(VERIFICATION)
        message_id = self._message_id = self._message_id % 0xFFFF + 1  # as _next_message_id()
        self._issued.append(message_id)
        self._send_message(ctx.context_id, c_echo_rq(message_id))
        rsp = self._receive_response(message_id, timeout)
        if rsp.get("CommandField") != CommandField.C_ECHO_RSP:
            # Another service's response (or an unknown one) to our C-ECHO-RQ (PS3.7 9.3.5.2).
            self.abort()
            raise AssociationAborted(description=f"expected a C-ECHO-RSP, got {rsp!r}")
        status: int | None = rsp.get("Status")
        if status is None:
            raise DimseStatusError(0xC000, "C-ECHO-RSP without a Status", None)
        if status and is_failure(status):
            raise DimseStatusError(status, status_meaning(status), rsp.get("ErrorComment"))
        return status

    def context_for(self, abstract_syntax: str, transfer_syntax: str | None = None, *,
                    role: str = "scu") -> NegotiatedContext:
        """The accepted context for ``abstract_syntax`` in which we act as ``role``;
        raises ``AssociationError`` if there is none."""
        ctx = self.negotiated.context_for(abstract_syntax, transfer_syntax, role=role)
        if ctx is None:
            raise AssociationError(f"no accepted presentation context for {abstract_syntax}"
                                   + (f" with {transfer_syntax}" if transfer_syntax else "")
                                   + f" in the {role.upper()} role")
        return ctx

    def store(self, dataset_or_path: Any, *, transfer_syntax: str | None = None,
              timeout: float | None = None) -> int:
        """C-STORE (PS3.7 9.1.1): send a Dataset or a Part 10 file; the status.

        A path is sent from disk without decoding (a view of the memory-mapped
        file); a data set goes out in its own transfer syntax when that was
        accepted, else transcoded among the uncompressed syntaxes. Raises
        :class:`~dicomnet.errors.NoPresentationContext` when no accepted context
        fits, :class:`DimseStatusError` for a failure status (warnings are
        logged and returned). See :mod:`dicomnet.dimse.scu`.
        """
        from .dimse.scu import send_store

        return send_store(self, dataset_or_path, transfer_syntax=transfer_syntax, timeout=timeout)

    def find(self, query: Any, *, model: str = "study", timeout: float | None = None) -> Any:
        """C-FIND (PS3.7 9.1.2): a :class:`~dicomnet.dimse.scu.FindResult` of the
        matching Datasets, as they arrive; ``.status`` once exhausted.

        ``query`` is a Dataset or a mapping of keyword -> value (None asks for
        the attribute); ``model`` is "patient", "study" or "worklist" (or a FIND
        SOP Class UID). Leaving the loop early sends C-CANCEL and drains the
        remaining responses.
        """
        from .dimse.scu import start_find

        return start_find(self, query, model=model, timeout=timeout)

    def move(self, query: Any, destination_ae: str, *, model: str = "study",
             timeout: float | None = None) -> Any:
        """C-MOVE (PS3.7 9.1.4): a :class:`~dicomnet.dimse.retrieve.MoveResult`
        yielding the sub-operation counters of each Pending response; then
        ``.status``, the counters and ``.failed_instances``.

        ``query`` is a Dataset or a mapping with the Query/Retrieve Level and
        the unique keys; ``model`` "patient" or "study" (or a MOVE SOP Class
        UID). A failure status raises :class:`DimseStatusError` after the
        iteration (or from ``.result()``); leaving the loop early sends
        C-CANCEL. See :mod:`dicomnet.dimse.retrieve`.
        """
        from .dimse.retrieve import start_move

        return start_move(self, query, destination_ae, model=model, timeout=timeout)

    def get(self, query: Any, *, model: str = "study", timeout: float | None = None,
            store_to: Any = None) -> Any:
        """C-GET (PS3.7 9.1.3): a :class:`~dicomnet.dimse.retrieve.GetResult`
        yielding each instance the peer sends back on this association (a
        lazily decoded Dataset; with ``store_to`` -- a directory or
        ``callable(command) -> path`` -- the path of the file it was streamed
        to). The association must have been proposed with storage contexts in
        the SCP role: ``client.associate(..., for_get=True)``. Failures and
        cancelling as for :meth:`move`.
        """
        from .dimse.retrieve import start_get

        return start_get(self, query, model=model, timeout=timeout, store_to=store_to)

    def store_many(self, sources: Any, *, transfer_syntax: str | None = None,
                   timeout: float | None = None) -> Any:
        """C-STORE each Dataset or path of ``sources``, one operation at a time,
        preparing the next while the peer stores the last. Yields
        ``(source, status, error_comment)``; failure statuses are yielded, not
        raised. See :func:`dicomnet.dimse.scu.send_stores`."""
        from .dimse.scu import send_stores

        return send_stores(self, sources, transfer_syntax=transfer_syntax, timeout=timeout)

    # ------------------------------------------------------------- release
    def release(self, timeout: float | None = None) -> None:
        """A-RELEASE (PS3.8 7.2): ask the peer to release and wait for its answer.

        Waits at most ``timeout`` (default: the driver's read timeout); if the
        peer does not answer the association is aborted and ReadTimeout raised.
        A peer that closes the connection instead of answering has ended the
        association all the same: logged as a warning, not raised. An A-ABORT
        in answer raises :class:`AssociationAborted`. Messages still arriving
        meanwhile are dropped (logged).
        """
        if self.is_closed:
            return
        peer = self.negotiated.called_ae if self.negotiated.is_requestor else self.negotiated.calling_ae
        if self._conn.state == "Sta8":
            # The peer asked first (its A-RELEASE-RQ is read but not yet answered).
            self._log.info("confirming the release %s asked for", peer)
            self._conn.confirm_release(time.monotonic())
            self._driver.flush()
            self._wait_closed()
            return
        if self._open_find is not None:
            # A C-FIND/C-MOVE/C-GET whose loop was left unfinished: cancel and
            # drain it first (as echo() does), so the release is not asked
            # while its responses are still coming.
            try:
                self._open_find.cancel()
            except Exception as exc:  # noqa: BLE001 - the release goes on (or the association is gone)
                self._log.warning("cancelling the unfinished operation before the release failed: %s", exc)
            if self.is_closed:
                return
        self._log.info("releasing association with %s", peer)
        self._conn.request_release()
        self._driver.flush()
        limit = time.monotonic() + (self._driver.read_timeout if timeout is None else timeout)
        confirmed = False
        while True:
            remaining = limit - time.monotonic()
            try:
                event = self._driver.receive_event(max(remaining, 0.0))
            except ReadTimeout:
                self._log.warning("no A-RELEASE-RP in time; aborting")
                self.abort()
                raise
            if isinstance(event, ev.ReleaseConfirm):
                confirmed = True
            elif isinstance(event, ev.ReleaseRequest):
                # Release collision (PS3.8 9.2, Sta9/Sta10): both ends asked.
                if self.negotiated.is_requestor:
                    self._conn.confirm_release(time.monotonic())
                    self._driver.flush()
                else:
                    self._pending_collision = True
            elif isinstance(event, ev.PDataReceived):
                self._log.debug("dropping P-DATA received while releasing")
            elif isinstance(event, ev.Abort):
                self._close_transport()
                if event.transport_lost:
                    # Strictly an A-P-ABORT (PS3.8 Table 9-10, AA-4), but every
                    # request was answered and closing is where a release ends:
                    # some SCPs close instead of answering. Not an error.
                    self._log.warning("%s closed the connection instead of sending A-RELEASE-RP", peer)
                    return
                raise AssociationAborted(event.source, event.reason, event.description)
            elif isinstance(event, ev.ConnectionClosed):
                self._close_transport()
                if not confirmed:
                    raise AssociationAborted(description="connection closed before A-RELEASE-RP")
                self._log.info("association released")
                return
            if confirmed and self._pending_collision:
                # Acceptor side of a collision answers after its own confirmation.
                self._pending_collision = False
                self._conn.confirm_release(time.monotonic())
                self._driver.flush()

    def abort(self) -> None:
        """A-ABORT (PS3.8 7.3): send an A-ABORT and end the association.

        Never raises for a connection that is already gone, and returns at
        once: the socket is closed in the background when the peer closes its
        end or ARTIM expires (Sta13), so the A-ABORT is not lost to a TCP reset.
        """
        if self.is_closed:
            return
        self._log.info("aborting association")
        try:
            if self._conn.state not in ("Sta1", "Sta13"):  # Sta13: the association is already gone
                self._conn.abort(now=time.monotonic())
            self._driver.flush()
        except (DicomTimeoutError, OSError, AssociationError, Interrupted) as exc:
            self._log.debug("while aborting: %s", exc)
        finally:
            self._close_transport()

    # ---------------------------------------------------- message plumbing
    def _next_message_id(self) -> int:
        """A fresh Message ID (1..65535, wrapping) for a request on this association."""
        self._message_id = message_id = self._message_id % 0xFFFF + 1
        self._issued.append(message_id)
        return message_id

    def _late_response(self, command: Command, awaited: Container[int]) -> bool:
        """Whether ``command``, read while the responses to ``awaited`` were
        expected, is a response to an earlier request of ours that was already
        answered in full -- logged and to be dropped. Some peers send one
        response too many: pynetdicom 3 follows a final C-FIND-RSP Warning with
        a second final one, Success. PS3.7 gives that extra response no
        meaning, and aborting the association for it would fail the next
        request. A response to a Message ID we never used (or not lately) is
        still a protocol error for the caller to report."""
        answered = command.get("MessageIDBeingRespondedTo")
        if (not (command.get("CommandField") or 0) & 0x8000 or answered is None or answered in awaited
                or answered not in self._issued):
            return False
        field = command.command_field
        status = command.get("Status")
        self._log.warning("dropping a %s to message %d, which was already answered%s",
                          field.name if isinstance(field, CommandField) else "response", answered,
                          "" if status is None else f" (status 0x{status:04X})")
        return True

    def _send_message(self, context_id: int, command: Command | dict[str, Any], dataset: Any = None) -> None:
        """Send one DIMSE message: ``command`` (a command-set mapping, encoded
        here) and, if given, ``dataset`` (any bytes-like object, already encoded
        in the context's transfer syntax; it is referenced, not copied, until
        written). Returns once everything is written.

        The command's CommandDataSetType must agree with ``dataset``.
        """
        has_dataset = dataset is not None
        # Command.has_dataset, without the property call (this runs for every message).
        if isinstance(command, Command) and (command.get("CommandDataSetType", NO_DATASET) != NO_DATASET) \
                != has_dataset:
            raise ValueError("CommandDataSetType says " + ("a" if command.has_dataset else "no")
                             + " data set follows, but " + ("one" if has_dataset else "none") + " was given")
        if self._log.isEnabledFor(_DEBUG):
            self._log.debug("-> %r on context %d%s", command, context_id,
                            f" + data set of {len(memoryview(dataset).cast('B'))} bytes" if has_dataset else "")
        conn = self._conn
        # A response may still go out once the peer asked to release (Sta8):
        # it answers a request the peer sent before; a new request may not.
        if not (conn.is_established or (conn.may_send_data and (command.get("CommandField") or 0) & 0x8000)):
            self._raise_not_established()
        conn.send_pdata(context_id, True, encode_command(command))
        if has_dataset:
            conn.send_pdata(context_id, False, dataset)
        self._driver.flush()

    def _receive_message(self, timeout: float | None = None, *, lane: bool = False) -> Message:
        """The next complete DIMSE message, waiting at most ``timeout`` seconds
        (default: ``dimse_timeout``) for it to begin and for each further PDU
        of it (a big data set over a slow link takes as long as it needs, as
        long as it keeps coming -- as dcmtk times each read).

        ``lane``: take the P-DATA through the compiled lane where there is one
        (:meth:`_lane_next`; for a stream of big data sets, C-GET's).

        Raises :class:`AssociationAborted` (A-ABORT or lost connection),
        :class:`AssociationError` (the peer released the association), and
        :class:`ReadTimeout` -- after aborting the association -- if the peer
        sends nothing of the message in time. A PDV sequence or command set
        that breaks PS3.7/PS3.8 aborts the association and raises
        :class:`PDUError`.
        """
        wait = self.dimse_timeout if timeout is None else timeout
        try:
            item = self._lane_next(wait) if lane else self._next(wait, per_pdu=True)
        except ReadTimeout:
            self._log.warning("no DIMSE message (or no more of one) within %.1f s; aborting the association", wait)
            self.abort()
            raise ReadTimeout(f"no DIMSE message (or no more of one) from the peer within {wait:g} s") from None
        except PDUError:
            self.abort()
            raise
        if isinstance(item, Message):
            return item
        self._on_other_event(item)
        raise AssertionError("unreachable")  # pragma: no cover

    def _lane_next(self, timeout: float) -> Message | ev.Event:
        """:meth:`_next` (``per_pdu``) through the compiled lane
        (:class:`dicomnet._codec.lane.StoreLane`, made on first use; POSIX):
        whole P-DATA-TF PDUs go to the assembler, and the big data set PDVs
        straight into their buffers, without the Python layers per read and
        per PDU. What the lane leaves -- any other PDU or event -- takes the
        general path, with the same checks and answers. A lane made here
        answers nothing itself; a server's (:func:`dicomnet.dimse.scp.attach`,
        set as ``_lane`` by the server loop) may answer plain streamed
        C-STOREs."""
        if self._ready:
            return self._ready.popleft()
        lane = self._lane
        if lane is None:
            lane = self._lane = self._make_lane()
        if lane is False:
            return self._next(timeout, per_pdu=True)
        lane.read_timeout = timeout
        driver, conn = self._driver, self._conn
        while True:
            item = lane.run()
            if item is True:
                driver.fill(lane.deadline)
                continue
            if item is False:
                # The Connection acts on what the lane left; what the state
                # machine answers goes out at once (as receive_event does).
                conn.buffer_updated(0)
                if conn.wants_flush:
                    driver.flush()
                return self._next(timeout, per_pdu=True)
            return item  # type: ignore[no-any-return]

    def _make_lane(self, **options: Any) -> Any:
        """This association's lane, or False where there is none (not POSIX).
        It reads the socket itself only when that is plain TCP (over TLS the
        driver reads for it). ``options``: StoreLane's (a client's lane
        answers nothing: ``answers=False`` unless given)."""
        if os.name != "posix":
            return False
        from dicomnet._codec.lane import StoreLane
        from dicomnet.dimse.scp import StoreSink

        options.setdefault("answers", False)
        driver = self._driver
        plain = type(driver) is SyncDriver and driver.sock is not None and type(driver.sock) is socket.socket
        return StoreLane(self._conn, self, StoreSink, Message, driver._fd if plain else -1, **options)

    def _next(self, timeout: float, *, per_pdu: bool = False) -> Message | ev.Event:
        """The next complete message, or the first event that is not P-DATA
        (release request, abort, connection closed). Raises ReadTimeout after
        ``timeout`` seconds -- for the whole message, or with ``per_pdu`` for
        each PDU of it (a big data set over a slow link may take longer than
        one timeout) -- and PDUError for a malformed message; the association
        is left as it is (the caller decides whether to abort)."""
        if self._ready:
            return self._ready.popleft()
        limit = time.monotonic() + timeout
        receive = self._driver.receive_event
        while True:
            event = receive(max(limit - time.monotonic(), 0.0))
            if type(event) is not ev.PDataReceived:
                return event
            message = self._feed(event)
            # Drop the event before the next receive: its PDV views pin the
            # PDU reader's block, which could then not be reused in place.
            del event
            if message is not None:
                return message
            if per_pdu:
                limit = time.monotonic() + timeout

    def _feed(self, event: ev.PDataReceived) -> Message | None:
        """Hand each PDV to the assembler; return the first completed message
        (later ones, if a PDU completes several, wait in a queue)."""
        feed = self._assembler.feed
        pdvs = event.pdvs
        self._conn.pdata_taken += 1  # once fed (or failed), the router may place the next PDV
        if len(pdvs) == 1:  # the usual P-DATA-TF: one PDV
            pdv = pdvs[0]
            message = feed(pdv.context_id, pdv.is_command, pdv.is_last, pdv.data)
            if message is not None and self._log.isEnabledFor(_DEBUG):
                self._log_received(message)
            return message
        first: Message | None = None
        try:
            for pdv in pdvs:
                message = feed(pdv.context_id, pdv.is_command, pdv.is_last, pdv.data)
                if message is not None:
                    if self._log.isEnabledFor(_DEBUG):
                        self._log_received(message)
                    if first is None:
                        first = message
                    else:
                        self._ready.append(message)
        except PDUError:
            # The association is aborted for a later PDV of this PDU: the
            # messages it completed before are never answered. Their streamed
            # files go now -- not whenever the last reference to the sink
            # does (a log record holding the exception can keep it for long).
            for lost in ([first] if first is not None else []) + list(self._ready):
                discard = getattr(lost.sink, "discard", None)
                if discard is not None:
                    discard()
            self._ready.clear()
            raise
        return first

    def _log_received(self, message: Message) -> None:
        self._log.debug("<- %r on context %d%s", message.command, message.context_id,
                        "" if message.dataset is None else " + data set")

    def _on_other_event(self, event: ev.Event) -> None:
        """Anything but P-DATA while a message is awaited: always raises."""
        if isinstance(event, ev.Abort):
            self._log.info("association %s", event.description)
            self._close_transport()
            raise AssociationAborted(event.source, event.reason, event.description)
        if isinstance(event, ev.ConnectionClosed):
            self._close_transport()
            raise AssociationAborted(description="the connection closed while a DIMSE message was awaited")
        if isinstance(event, ev.ReleaseRequest):
            if self._conn.state == "Sta13":
                # A PDU read with the A-RELEASE-RQ made us abort (AA-8): the
                # Abort event that follows says why.
                self._on_other_event(self._driver.receive_event())
            self._log.info("peer released the association")
            self._conn.confirm_release(time.monotonic())
            self._driver.flush()
            self._wait_closed()
            raise AssociationError("the peer released the association while a DIMSE message was awaited")
        raise AssociationError(f"unexpected {type(event).__name__} on an established association")

    def _close_transport(self) -> None:
        """Close the connection (see SyncDriver.close for Sta13) and drop a
        message half received: a data set streamed to a file leaves no
        temporary file or descriptor behind, even while something still
        holds this Association."""
        self._driver.close()
        if self._assembler.in_progress:
            self._assembler.reset()

    def _wait_closed(self) -> None:
        """After our A-RELEASE-RP (Sta13): wait for the peer to close the
        connection; ARTIM bounds the wait. The socket is closed either way."""
        driver = self._driver
        try:
            while not driver.closed:
                if isinstance(driver.receive_event(), ev.ConnectionClosed):
                    break
        except DicomTimeoutError:
            pass
        finally:
            self._close_transport()

    def _receive_response(self, message_id: int, timeout: float | None = None) -> Command:
        """The response to our request ``message_id`` (its command set); other
        messages arriving meanwhile are an error for a single-operation service."""
        message = self._receive_message(timeout)
        command = message.command
        while self._late_response(command, (message_id,)):
            command = self._receive_message(timeout).command
        if not (command.get("CommandField") or 0) & 0x8000 or command.get("MessageIDBeingRespondedTo") != message_id:
            self.abort()
            raise AssociationAborted(description=f"expected the response to message {message_id}, "
                                                 f"got {command!r}")
        return command

    def _raise_not_established(self) -> None:
        # What the peer did meanwhile (an A-RELEASE-RQ or A-ABORT read together
        # with an earlier PDU) is still queued: report that, not just the state.
        while (event := self._conn.next_event()) is not None:
            if isinstance(event, ev.PDataReceived):
                self._log.debug("dropping P-DATA that arrived before the association ended")
                continue
            self._on_other_event(event)
        if self._conn.closed or self._driver.closed:
            raise AssociationAborted(description="the association is closed")
        raise AssociationError(f"the association is not established (state {self._conn.state})")
