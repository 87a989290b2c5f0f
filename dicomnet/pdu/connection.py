"""The sans-IO association: one end of a DICOM Upper Layer association (PS3.8 9.2).

Shape (after h11): no sockets, threads or clocks in here.

* Bytes in: ``get_buffer(sizehint)`` / ``buffer_updated(nbytes)`` (the shape of
  asyncio's ``BufferedProtocol``), ``connection_lost()`` when the peer closes.
* Events out: ``next_event()`` returns :mod:`dicomnet.pdu.events` objects.
* Primitives in: ``request_association``, ``accept``, ``reject``,
  ``send_pdata``, ``request_release``, ``confirm_release``, ``abort``.
* Bytes out: ``data_to_send()`` returns the buffers to write, in order (small
  ``bytes`` headers and memoryview slices of the caller's data; write them with
  ``socket.sendmsg`` / ``transport.writelines`` and do not change the data
  until they are written).
* Time: the driver passes ``now`` (``time.monotonic()``) where a timer may start,
  asks :meth:`Connection.deadline`, and calls :meth:`Connection.timeout` when
  it has passed.

Every input becomes an event of PS3.8 Table 9-10 and goes through
:data:`dicomnet.pdu.fsm.TRANSITIONS`; the ``_AE_1`` .. ``_AA_8`` methods carry
out the actions. When the state machine returns to Sta1 the association is
over: :attr:`Connection.wants_close` turns True and the driver closes the socket
once :meth:`Connection.data_to_send` is flushed.
"""
from __future__ import annotations

import logging
import weakref
from collections import deque
from typing import Any, Literal

from .._codec.pdu import PDUReader, fragment, pdata_pdu, pdata_pdvs
from ..errors import LocalProtocolError, PDUError
from . import events as ev
from . import fsm
from .negotiation import DEFAULT_MAX_PDU, NegotiatedAssociation, negotiated_from, provider_check
from .pdus import (
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    PDV,
    decode_pdu,
    encode_pdu,
)

__all__ = ["Connection"]

Role = Literal["requestor", "acceptor"]

_PROVIDER = AAbort.SOURCE_SERVICE_PROVIDER
_USER = AAbort.SOURCE_SERVICE_USER
_P_DATA_TF = 0x04
_PDATA_PLACED = 0x184  # PDUReader.next_pdu: a P-DATA-TF whose one PDV the router placed
_new_object = object.__new__
_set_field = object.__setattr__
# A message part up to this size goes out as one copied buffer (see send_pdata).
_COPY_LIMIT = 1024
_NO_OUTPUT: list[bytes | memoryview] = []  # data_to_send() when nothing is queued; never mutated


class Connection:
    """One end of an association, driven by its caller (see the module docstring).

    ``role`` is ``"requestor"`` (we send A-ASSOCIATE-RQ) or ``"acceptor"``.
    ``max_pdu`` is the largest P-DATA-TF PDU we receive (0: no limit); the
    A-ASSOCIATE-RQ/AC we send must not offer more. ``artim_timeout`` (seconds)
    is the ARTIM timer of PS3.8 9.1.5; a requestor also uses it as the limit for
    the A-ASSOCIATE answer (Sta5), after which it aborts. ``max_association_pdu``
    bounds every other PDU we accept.
    """

    def __init__(
        self,
        role: Role,
        *,
        max_pdu: int = DEFAULT_MAX_PDU,
        artim_timeout: float = 30.0,
        max_association_pdu: int = 1 << 20,
        logger: logging.Logger | None = None,
    ) -> None:
        if role not in ("requestor", "acceptor"):
            raise ValueError(f"role must be 'requestor' or 'acceptor', not {role!r}")
        if artim_timeout <= 0:
            raise ValueError("artim_timeout must be positive")
        self.role: Role = role
        self.max_pdu = max_pdu
        self.artim_timeout = float(artim_timeout)
        self._log = logger or logging.getLogger("dicomnet")
        self._reader = PDUReader(max_pdu_length=max_pdu, max_association_pdu=max_association_pdu)
        self._state = "Sta1"
        self._ended = False  # back in Sta1 after having left it: single use
        self._events: deque[ev.Event] = deque()
        self._out: list[bytes | memoryview] = []
        self._now = 0.0
        self._artim_deadline: float | None = None
        self._answer_deadline: float | None = None  # requestor in Sta5 (local policy)
        self._stream_broken = False
        self._discard = bytearray(4096)
        self._rq_bytes = b""
        self.rq: AAssociateRQ | None = None
        self.negotiated: NegotiatedAssociation | None = None
        self._router: Any = None
        self.pdata_events = 0  # P-DATA indications queued so far (see set_payload_router)
        self.pdata_taken = 0   # ... and handled by their reader, who counts them here

    # ---------------------------------------------------------------- state
    @property
    def state(self) -> str:
        """The current state, ``"Sta1"`` .. ``"Sta13"``."""
        return self._state

    @property
    def is_established(self) -> bool:
        """True in Sta6 (association established, ready for data transfer)."""
        return self._state == "Sta6"

    @property
    def may_send_data(self) -> bool:
        """True when a P-DATA request may be made: in Sta6, and in Sta8 -- the
        peer asked to release and waits for our answer, and the answers still
        due to requests it sent before may go out first (PS3.8 Table 9-10:
        Evt9 in Sta8 is AR-7)."""
        return self._state == "Sta6" or self._state == "Sta8"

    @property
    def closed(self) -> bool:
        """True once the association is over (back in Sta1 after being used)."""
        return self._ended

    @property
    def wants_close(self) -> bool:
        """True when the driver should close the transport (after flushing data_to_send)."""
        return self._ended

    @property
    def events_pending(self) -> bool:
        """True when :meth:`next_event` has an event (nothing needs reading for it)."""
        return bool(self._events)

    @property
    def wants_flush(self) -> bool:
        """True when :meth:`data_to_send` has buffers or the transport should close:
        a driver with nothing to do for either may skip its flush."""
        return bool(self._out) or self._ended

    # ----------------------------------------------------------- transport
    def transport_connected(self, now: float) -> None:
        """The TCP connection is open: Evt5 for an acceptor (starts ARTIM, Sta2),
        Evt2 for a requestor that called ``request_association(..., connected=False)``."""
        self._now = now
        self._fire("Evt5" if self.role == "acceptor" else "Evt2")

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """A writable view to receive into; then call :meth:`buffer_updated`."""
        if self._state in ("Sta1", "Sta4"):
            raise LocalProtocolError(f"no transport connection in {self._state}; nothing to receive")
        if self._stream_broken:
            # After an unframeable PDU the rest of the stream is read and dropped.
            return memoryview(self._discard)
        return self._reader.get_buffer(sizehint)

    def set_payload_router(self, router: Any) -> None:
        """Let the data of big data set PDVs go straight to where they belong.

        ``router(context_id, is_last, nbytes)`` is asked, in Sta6 only and only
        once every P-DATA indication so far has been handled (its reader counts
        each in :attr:`pdata_taken` once its PDVs are where they go, so the
        router's state is current), for the data of a P-DATA-TF that holds one data set
        PDV (see :class:`dicomnet._codec.pdu.PDUReader`). It returns a writable
        buffer of exactly ``nbytes`` (a view of the data set's own memory) or
        None. Accepted, the socket writes the PDV's data there, and the P-DATA
        indication carries that same buffer as the PDV's ``data``. None removes
        the router.
        """
        self._router = router
        if router is None:
            self._reader.router = None
            return
        # Through a weak reference: the reader is ours, so a bound method
        # would make a cycle, and the association's buffers would wait for the
        # cycle collector instead of going with it.
        conn_ref = weakref.ref(self)

        def route(context_id: int, is_last: bool, nbytes: int) -> Any:
            conn = conn_ref()
            return None if conn is None else conn._route(context_id, is_last, nbytes)

        self._reader.router = route

    def _route(self, context_id: int, is_last: bool, nbytes: int) -> Any:
        if self._state != "Sta6" or self.pdata_taken != self.pdata_events or self._stream_broken:
            return None
        if context_id not in self.negotiated.contexts:  # type: ignore[union-attr]  # set in Sta6
            return None  # read whole; then it is refused as any such PDV is
        return self._router(context_id, is_last, nbytes)

    def buffer_updated(self, nbytes: int, now: float | None = None) -> None:
        """``nbytes`` were written into the last :meth:`get_buffer` view: act on every
        complete PDU in them (events queue up for :meth:`next_event`)."""
        if now is not None:
            self._now = now
        if self._stream_broken:
            return
        reader = self._reader
        reader.buffer_updated(nbytes)
        while True:
            state = self._state
            if state == "Sta1" or state == "Sta4":
                return
            try:
                item = reader.next_pdu()
            except PDUError as exc:
                # The byte stream can no longer be framed (a length over our
                # limits): Evt19, and stop reading.
                self._stream_broken = True
                reason = (AAbort.REASON_UNRECOGNIZED_PDU if str(exc).startswith("unknown PDU type")
                          else AAbort.REASON_INVALID_PDU_PARAMETER_VALUE)
                self._log.warning("invalid PDU from peer (%s); aborting", exc)
                self._fire("Evt19", reason=reason)
                return
            if item is None:
                return
            pdu_type, body = item
            del item
            if pdu_type == _P_DATA_TF and state == "Sta6":
                self._on_pdata(body)
            elif pdu_type == _PDATA_PLACED:
                self._on_placed(*body)
            else:
                self._on_pdu(pdu_type, body)
            del body  # a body pins the reader's block: drop it before the next PDU

    def buffer_filled(self, nbytes: int, now: float | None = None) -> None:
        """``nbytes`` were written into the last :meth:`get_buffer` view: keep them
        in the reader for whoever takes the PDUs from it first (the C-STORE lane,
        :class:`dicomnet._codec.lane.StoreLane`); ``buffer_updated(0)`` acts on
        what is left."""
        if now is not None:
            self._now = now
        if self._stream_broken:
            return
        self._reader.buffer_updated(nbytes)

    @property
    def pdu_buffered(self) -> bool:
        """True when a whole PDU is received but not yet acted on (see :meth:`buffer_filled`)."""
        return self._reader.pdu_complete

    def receive_data(self, data: bytes | memoryview, now: float | None = None) -> None:
        """Convenience for tests and simple drivers: copy ``data`` in and process it."""
        view = memoryview(data).cast("B")
        pos = 0
        while pos < len(view):
            target = self.get_buffer(len(view) - pos)
            n = min(len(target), len(view) - pos)
            target[:n] = view[pos:pos + n]
            del target  # a window is not kept past its read (it may be a data set's memory)
            pos += n
            self.buffer_updated(n, now)
            if self._state in ("Sta1", "Sta4"):
                return

    def connection_lost(self) -> None:
        """The transport connection closed (Evt17)."""
        self._reader.drop_direct()
        self._fire("Evt17")

    # ------------------------------------------------------------------ time
    def deadline(self) -> float | None:
        """When :meth:`timeout` must be called (a ``time.monotonic()`` value), or None."""
        if self._state in ("Sta2", "Sta13"):
            return self._artim_deadline
        if self._state == "Sta5":
            return self._answer_deadline
        return None

    def timeout(self, now: float) -> bool:
        """Fire what is due at ``now``: Evt18 (ARTIM expired) in Sta2/Sta13; in Sta5
        a local A-ABORT (no A-ASSOCIATE answer in time). True if something fired."""
        self._now = now
        due = self.deadline()
        if due is None or now < due:
            return False
        if self._state == "Sta5":
            self._log.warning("no A-ASSOCIATE answer within %.1f s; aborting", self.artim_timeout)
            self._fire("Evt15")
            self._events.append(ev.Abort(_USER, 0, local=True))
        else:
            self._fire("Evt18")
        return True

    # ------------------------------------------------------------ primitives
    def request_association(self, rq: AAssociateRQ, now: float, *, connected: bool = True) -> None:
        """A-ASSOCIATE request (Evt1). With ``connected`` (the driver already opened
        the TCP connection) the transport confirmation (Evt2) follows at once and
        the A-ASSOCIATE-RQ is queued; else call :meth:`transport_connected` later."""
        if self.role != "requestor":
            raise LocalProtocolError("only the association-requestor sends A-ASSOCIATE-RQ")
        self._check_offer(rq.user_information.max_length, "A-ASSOCIATE-RQ")
        encoded = encode_pdu(rq)  # refuse an unsendable RQ before changing state
        self._now = now
        self._fire("Evt1", rq=rq, encoded=encoded)
        if connected:
            self._fire("Evt2")

    def accept(self, ac: AAssociateAC) -> NegotiatedAssociation:
        """A-ASSOCIATE response, accept (Evt7): queue the A-ASSOCIATE-AC."""
        if self.rq is None or self._state != "Sta3":
            self._refuse("Evt7")
        assert self.rq is not None
        self._check_offer(ac.user_information.max_length, "A-ASSOCIATE-AC")
        negotiated = negotiated_from(self.rq, ac, is_requestor=False)
        self._fire("Evt7", pdu=ac, negotiated=negotiated)
        return negotiated

    def reject(self, rj: AAssociateRJ, now: float | None = None) -> None:
        """A-ASSOCIATE response, reject (Evt8): queue the A-ASSOCIATE-RJ, start ARTIM."""
        self._tick(now)
        self._fire("Evt8", pdu=rj)

    def send_pdata(self, context_id: int, is_command: bool, data: Any) -> None:
        """P-DATA request (Evt9): one message (command or dataset) on ``context_id``,
        cut into P-DATA-TF PDUs that fit the peer's maximum length. ``data`` is
        any bytes-like object; it is referenced, not copied."""
        if self._state not in ("Sta6", "Sta8"):
            self._refuse("Evt9")
        assert self.negotiated is not None
        if context_id not in self.negotiated.contexts:
            raise ValueError(f"presentation context {context_id} was not accepted on this association")
        if self._state == "Sta6":
            # Evt9 in Sta6 is always DT-1 (no timer effect, Sta6 again): the
            # hot path of every DIMSE message, so without the table walk.
            peer_max = self.negotiated.peer_max_pdu
            if type(data) is bytes and len(data) <= _COPY_LIMIT and (not peer_max or len(data) + 6 <= peer_max):
                # A command set and the like: one PDU in one buffer (a copy of a
                # few dozen bytes costs less than a header plus a view).
                self._out.append(pdata_pdu(context_id, is_command, data))
            else:
                self._out.extend(fragment(context_id, is_command, data, peer_max))
            return
        self._fire("Evt9", context_id=context_id, is_command=is_command, data=data)

    def request_release(self) -> None:
        """A-RELEASE request (Evt11): queue the A-RELEASE-RQ."""
        self._fire("Evt11")

    def confirm_release(self, now: float | None = None) -> None:
        """A-RELEASE response (Evt14): queue the A-RELEASE-RP.

        Nothing once the association is over: an A-ABORT (or the end of the
        connection, or an invalid PDU that made us abort: Sta13) read together
        with the A-RELEASE-RQ ended it before its ReleaseRequest event was
        taken, and that event comes next."""
        if self._ended or self._state == "Sta13":
            return
        self._tick(now)
        self._fire("Evt14")

    def abort(self, reason: int = 0, now: float | None = None) -> None:
        """A-ABORT request (Evt15): send a service-user A-ABORT, then wait in Sta13
        for the peer to close (ARTIM bounds the wait).

        PS3.8 9.3.8 sends the reason field of a service-user A-ABORT as 00H, so a
        non-zero ``reason`` is only logged, never put on the wire.
        """
        if reason:
            self._log.info("aborting association (local reason %d; sent as 0 per PS3.8 9.3.8)", reason)
        self._tick(now)
        self._reader.drop_direct()
        self._fire("Evt15")

    def handover(self) -> Connection:
        """For the background closer (Sta13 after our A-ABORT): a Connection
        in Sta13 with this one's ARTIM deadline, limits and unread input, and
        nothing of the association (no router, no queued events, a reader of
        the smallest size). This one keeps nothing of the stream; its owner
        then reports the transport closed (:meth:`connection_lost`)."""
        if self._state != "Sta13":
            raise LocalProtocolError(f"only a connection in Sta13 is handed over, not one in {self._state}")
        self._reader.drop_direct()
        twin = Connection(self.role, max_pdu=self.max_pdu, artim_timeout=self.artim_timeout,
                          max_association_pdu=self._reader.max_association_pdu, logger=self._log)
        twin._reader = self._reader.detach()
        twin._state = "Sta13"
        twin._now = self._now
        twin._artim_deadline = self._artim_deadline
        twin._stream_broken = self._stream_broken
        return twin

    # ---------------------------------------------------------------- output
    def next_event(self) -> ev.Event | None:
        """The next event, or None when nothing more has happened yet."""
        return self._events.popleft() if self._events else None

    def data_to_send(self) -> list[bytes | memoryview]:
        """The buffers queued for the peer since the last call, in order."""
        out = self._out
        if not out:
            return _NO_OUTPUT
        self._out = []
        return out

    # -------------------------------------------------------------- machinery
    def _tick(self, now: float | None) -> None:
        if now is not None:
            self._now = now

    def _check_offer(self, max_length: int | None, what: str) -> None:
        offered = max_length or 0
        if self.max_pdu and (offered == 0 or offered > self.max_pdu):
            raise ValueError(f"{what} offers to receive PDUs of {offered or 'unlimited'} bytes but this "
                             f"Connection accepts at most {self.max_pdu} (max_pdu)")

    def _refuse(self, event: str) -> None:
        raise LocalProtocolError(
            f"{fsm.EVENTS[event]} is not allowed in {self._state} ({fsm.STATES[self._state]})"
        )

    def _on_pdu(self, pdu_type: int, body: memoryview) -> None:
        if pdu_type == _P_DATA_TF and self._state == "Sta6":
            self._on_pdata(body)
            return
        event = fsm.PDU_TYPE_EVENTS.get(pdu_type)
        if event is None:
            # Framed by its length like any PDU, so the stream goes on: Evt19
            # (AA-8, or AA-7 in Sta13), and what follows is acted on as usual.
            if self._state != "Sta13":
                self._log.warning("unknown PDU type 0x%02X (%d bytes) from peer; aborting", pdu_type, len(body))
            self._fire("Evt19", reason=AAbort.REASON_UNRECOGNIZED_PDU)
            return
        if self._state == "Sta13":
            # AA-6 ignores / AA-7 answers / AA-2 closes: the PDU's content does
            # not matter, but a malformed one is Evt19 (AA-7) all the same.
            try:
                decode_pdu(pdu_type, body)
            except PDUError as exc:
                self._log.debug("invalid %s in Sta13 (%s)", fsm.EVENTS[event].split(" (")[0], exc)
                self._fire("Evt19", reason=AAbort.REASON_INVALID_PDU_PARAMETER_VALUE)
                return
            self._fire(event, pdu=None)
            return
        try:
            pdu = decode_pdu(pdu_type, body)
            extra: dict[str, Any] = {}
            if isinstance(pdu, AAssociateAC) and self._state == "Sta5":
                assert self.rq is not None
                extra["negotiated"] = negotiated_from(self.rq, pdu, is_requestor=True)
            elif isinstance(pdu, PDataTF) and self._state in ("Sta6", "Sta7"):
                assert self.negotiated is not None
                for pdv in pdu.pdvs:
                    if pdv.context_id not in self.negotiated.contexts:
                        raise PDUError(f"PDV on presentation context {pdv.context_id}, which is not accepted")
        except PDUError as exc:
            self._log.warning("invalid %s from peer (%s); aborting", fsm.EVENTS[event].split(" (")[0], exc)
            self._fire("Evt19", reason=AAbort.REASON_INVALID_PDU_PARAMETER_VALUE)
            return
        self._fire(event, pdu=pdu, **extra)

    def _on_pdata(self, body: memoryview) -> None:
        """Evt10 in Sta6, the data-transfer hot path (one call per P-DATA-TF).

        Table 9-10 gives DT-2 there: no timer effect, Sta6 again, a P-DATA
        indication. So the table walk of :meth:`_fire` and the field checks
        of :class:`PDV` (whose values :func:`pdata_pdvs` has just produced:
        a byte, two flags, a byte view) are skipped; the outcome -- the event,
        or Evt19 for a malformed PDU or an unaccepted context -- is the same.
        """
        try:
            pdvs = pdata_pdvs(body, self.negotiated.contexts, PDV)  # type: ignore[union-attr]  # set in Sta6
        except PDUError as exc:
            self._log.warning("invalid %s from peer (%s); aborting", "P-DATA-TF PDU", exc)
            self._fire("Evt19", reason=AAbort.REASON_INVALID_PDU_PARAMETER_VALUE)
            return
        event = _new_object(ev.PDataReceived)
        _set_field(event, "pdvs", pdvs)
        self._events.append(event)
        self.pdata_events += 1

    def _on_placed(self, context_id: int, is_last: bool, data: memoryview) -> None:
        """A P-DATA-TF whose one data set PDV the router placed (its context
        was checked then): the same indication as for any P-DATA-TF.
        Made as _on_pdata makes its objects, without the field checks: the
        values are valid by construction (the reader's byte and flag, the
        router's byte view)."""
        pdv = _new_object(PDV)
        _set_field(pdv, "context_id", context_id)
        _set_field(pdv, "is_command", False)
        _set_field(pdv, "is_last", bool(is_last))
        _set_field(pdv, "data", data)
        if self._state == "Sta6":
            event = _new_object(ev.PDataReceived)
            _set_field(event, "pdvs", (pdv,))
            self._events.append(event)
            self.pdata_events += 1
        else:  # the state moved on while the data came in: the table decides
            self._fire("Evt10", pdu=PDataTF((pdv,)))

    def _fire(self, event: str, **payload: Any) -> None:
        """Look ``(event, state)`` up in Table 9-10 and carry out the action."""
        if self._ended:
            if event in fsm.LOCAL_PRIMITIVE_EVENTS:
                raise LocalProtocolError(f"{fsm.EVENTS[event]}: the association is over")
            return
        cell = fsm.lookup(event, self._state)
        if cell is None:
            if fsm.NOT_APPLICABLE[event] == "refuse":
                self._refuse(event)
            self._log.debug("%s in %s: not applicable, ignored", event, self._state)
            return
        name, _ = cell
        action = fsm.ACTIONS[name]
        if action.artim == "stop":
            self._artim_deadline = None
        elif action.artim == "start":
            self._artim_deadline = self._now + self.artim_timeout
        condition = getattr(self, "_" + name.replace("-", "_"))(event, **payload)
        previous = self._state
        self._state = fsm.resolve_next_state(name, condition=bool(condition))
        self._log.debug("%s in %s -> %s -> %s", event, previous, name, self._state)
        if self._state == "Sta1":
            self._ended = True
            self._artim_deadline = None
            self._events.append(ev.ConnectionClosed())

    def _send(self, pdu: Any) -> None:
        self._out.append(encode_pdu(pdu))

    @staticmethod
    def _abort_reason(event: str, payload: dict[str, Any]) -> int:
        # PS3.8 Table 9-26: a PDU the state does not expect is "unexpected-PDU";
        # Evt19 carries its own reason (unrecognized PDU / invalid parameter).
        return payload.get("reason", AAbort.REASON_UNEXPECTED_PDU) if event == "Evt19" \
            else AAbort.REASON_UNEXPECTED_PDU

    # ------------------------------------------- Table 9-6: establishment
    def _AE_1(self, event: str, *, rq: AAssociateRQ, encoded: bytes) -> None:
        # The driver owns the TCP connect; remember what to send once it is open.
        self.rq = rq
        self._rq_bytes = encoded

    def _AE_2(self, event: str) -> None:
        self._out.append(self._rq_bytes)
        self._answer_deadline = self._now + self.artim_timeout

    def _AE_3(self, event: str, *, pdu: AAssociateAC, negotiated: NegotiatedAssociation) -> None:
        self.negotiated = negotiated
        self._answer_deadline = None
        self._reader.max_pdu_length = negotiated.our_max_pdu
        self._events.append(ev.AssociateAccept(pdu, negotiated))

    def _AE_4(self, event: str, *, pdu: AAssociateRJ) -> None:
        self._events.append(ev.AssociateReject(pdu))

    def _AE_5(self, event: str) -> None:
        pass  # ARTIM started by the table's effects

    def _AE_6(self, event: str, *, pdu: AAssociateRQ) -> bool:
        self.rq = pdu
        rj = provider_check(pdu)
        if rj is not None:
            self._log.info("A-ASSOCIATE-RQ from %r refused by the service-provider: %s",
                           pdu.calling_ae, rj.description)
            self._send(rj)
            self._artim_deadline = self._now + self.artim_timeout
            return False
        self._events.append(ev.AssociateRequest(pdu))
        return True

    def _AE_7(self, event: str, *, pdu: AAssociateAC, negotiated: NegotiatedAssociation) -> None:
        self._send(pdu)
        self.negotiated = negotiated
        self._reader.max_pdu_length = negotiated.our_max_pdu

    def _AE_8(self, event: str, *, pdu: AAssociateRJ) -> None:
        self._send(pdu)

    # ------------------------------------------- Table 9-7: data transfer
    def _DT_1(self, event: str, *, context_id: int, is_command: bool, data: Any) -> None:
        assert self.negotiated is not None
        self._out.extend(fragment(context_id, is_command, data, self.negotiated.peer_max_pdu))

    def _DT_2(self, event: str, *, pdu: PDataTF) -> None:
        self._events.append(ev.PDataReceived(pdu.pdvs))
        self.pdata_events += 1

    # ------------------------------------------------ Table 9-8: release
    def _AR_1(self, event: str) -> None:
        self._send(AReleaseRQ())

    def _AR_2(self, event: str, *, pdu: AReleaseRQ) -> None:
        self._events.append(ev.ReleaseRequest())

    def _AR_3(self, event: str, *, pdu: AReleaseRP) -> None:
        self._events.append(ev.ReleaseConfirm())

    def _AR_4(self, event: str) -> None:
        self._send(AReleaseRP())

    def _AR_5(self, event: str) -> None:
        pass  # ARTIM stopped; the peer closed as it should

    _AR_6 = _DT_2
    _AR_7 = _DT_1

    def _AR_8(self, event: str, *, pdu: AReleaseRQ) -> bool:
        self._events.append(ev.ReleaseRequest(collision=True))
        return self.role == "requestor"

    def _AR_9(self, event: str) -> None:
        self._send(AReleaseRP())

    def _AR_10(self, event: str, *, pdu: AReleaseRP) -> None:
        self._events.append(ev.ReleaseConfirm())

    # -------------------------------------------------- Table 9-9: abort
    def _AA_1(self, event: str, **payload: Any) -> None:
        self._send(AAbort(_USER, 0))

    def _AA_2(self, event: str, **payload: Any) -> None:
        pass  # ARTIM stopped and transport closed by the table's effects

    def _AA_3(self, event: str, *, pdu: AAbort) -> None:
        self._events.append(ev.Abort(pdu.source, pdu.reason))

    def _AA_4(self, event: str) -> None:
        # A-P-ABORT: the transport went away under the association.
        self._events.append(ev.Abort(_PROVIDER, AAbort.REASON_NOT_SPECIFIED, local=True, transport_lost=True))

    def _AA_5(self, event: str) -> None:
        pass

    def _AA_6(self, event: str, **payload: Any) -> None:
        pass  # ignore the PDU

    def _AA_7(self, event: str, **payload: Any) -> None:
        self._send(AAbort(_PROVIDER, self._abort_reason(event, payload)))

    def _AA_8(self, event: str, **payload: Any) -> None:
        reason = self._abort_reason(event, payload)
        self._send(AAbort(_PROVIDER, reason))
        self._events.append(ev.Abort(_PROVIDER, reason, local=True))
