"""The SCU side of C-MOVE and C-GET (PS3.4 C.4.2, C.4.3; PS3.7 9.1.3, 9.1.4).

:class:`~dicomnet.association.Association` exposes these as ``assoc.move(...)``
and ``assoc.get(...)``.

* :func:`start_move` sends a C-MOVE-RQ and returns a :class:`MoveResult`: an
  iterable of :class:`RetrieveProgress` (one per Pending response, with the
  sub-operation counters), then ``status``, the counters and
  ``failed_instances`` -- the Failed SOP Instance UID List (0008,0058) of the
  final response's Identifier.
* :func:`start_get` sends a C-GET-RQ and returns a :class:`GetResult`: an
  iterable of the instances the SCP sends back as C-STORE sub-operations on
  the *same* association. Each C-STORE-RQ is answered (Success) as soon as its
  data set is in, before the instance is handed out, so the SCP goes on with
  the next one while the caller works. An instance is a
  :class:`~dicomnet.dicom.Dataset` decoded lazily over the received buffer
  (its pixel data a zero-copy numpy view), or, with ``store_to``, the path of
  the Part 10 file the data set was streamed to as it arrived.

C-GET needs storage contexts in which *we* are the SCP: propose them with
SCP/SCU Role Selection items (PS3.7 D.3.3.4) -- :func:`get_role_selections`,
or ``Client.associate(..., for_get=True)`` which adds them for every storage
class proposed.

Both results: a failure status raises :class:`DimseStatusError` when the final
response is read (from the iteration, or :meth:`result`); a warning (0xB000,
some sub-operations failed) is logged and kept in ``status``. Leaving the loop
early or :meth:`cancel` sends C-CANCEL-RQ (PS3.7 9.3.2.3) and reads up to the
final response (Cancel, 0xFE00), so the association carries the next request.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dicomnet.dicom.dataset import Dataset
from dicomnet.dicom.reader import IMPLICIT_VR_LE, read_dataset
from dicomnet.dicom.writer import encode_dataset
from dicomnet.dimse.assembler import new_buffer
from dicomnet.dimse.commands import Command, CommandField, c_get_rq, c_move_rq, c_store_rsp
from dicomnet.dimse.stream import ResponseStream
from dicomnet.errors import AssociationAborted, DicomParseError, DimseStatusError
from dicomnet.pdu.items import AsyncOperationsWindow, RoleSelection
from dicomnet.types import status as st
from dicomnet.types.sop_classes import DEFAULT_ABSTRACT_SYNTAXES, is_storage_sop_class
from dicomnet.types.uids import is_valid_uid

if TYPE_CHECKING:
    from dicomnet.association import Association
    from dicomnet.pdu.negotiation import NegotiatedContext

__all__ = ["MOVE_MODELS", "GET_MODELS", "GET_WINDOW", "RetrieveProgress", "MoveResult", "GetResult",
           "start_move", "start_get", "get_role_selections", "get_async_window", "retrieve_contexts"]

#: ``model=`` -> the C-MOVE SOP class (PS3.4 C.6.1.2, C.6.2.2).
MOVE_MODELS: dict[str, str] = {
    "patient": "1.2.840.10008.5.1.4.1.2.1.2",
    "study": "1.2.840.10008.5.1.4.1.2.2.2",
}
#: ``model=`` -> the C-GET SOP class (PS3.4 C.6.1.3, C.6.2.3).
GET_MODELS: dict[str, str] = {
    "patient": "1.2.840.10008.5.1.4.1.2.1.3",
    "study": "1.2.840.10008.5.1.4.1.2.2.3",
}

_MAX_CONTEXTS = 128
_UNCOMPRESSED = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
_ROOTS = {"patient": "1.2.840.10008.5.1.4.1.2.1", "study": "1.2.840.10008.5.1.4.1.2.2"}


def _sop_class(model: str, table: Mapping[str, str], what: str) -> str:
    uid = table.get(model.lower()) if isinstance(model, str) else None
    if uid is not None:
        return uid
    if isinstance(model, str) and model[:1].isdigit():
        return model
    raise ValueError(f"model must be one of {sorted(table)} or a {what} SOP Class UID, not {model!r}")


# ------------------------------------------------------------- negotiation
def get_role_selections(contexts: Iterable[Any] | None = None) -> list[RoleSelection]:
    """SCP/SCU Role Selection items for C-GET: for each storage SOP class among
    ``contexts`` (abstract syntax UIDs or ``(uid, syntaxes)``; None: the default
    proposal) the requestor offers the SCP role only (SCU-role 0, SCP-role 1),
    as dcmtk's getscu does -- on such a context the SCP sends us C-STOREs and
    we cannot send ours. PS3.7 D.3.3.4."""
    if contexts is None:
        contexts = DEFAULT_ABSTRACT_SYNTAXES
    seen: dict[str, RoleSelection] = {}
    for spec in contexts:
        uid = str(spec if isinstance(spec, str) else spec[0])
        if uid not in seen and is_storage_sop_class(uid):
            seen[uid] = RoleSelection(uid, False, True)
    return list(seen.values())


#: C-STORE sub-operations a C-GET SCU offers to perform asynchronously: the
#: SCP may send this many before it waits for the first response.
GET_WINDOW = 8


def get_async_window(window: int = GET_WINDOW) -> AsyncOperationsWindow:
    """The Asynchronous Operations Window a C-GET SCU proposes (PS3.7 D.3.3.3):
    it invokes one operation at a time (the C-GET) and performs up to
    ``window`` sub-operations asynchronously -- the SCP may send that many
    C-STORE-RQs before it waits for the first C-STORE-RSP. Responses still go
    out in order, one per request, as each data set is in. An SCP that does
    not answer the window sends them one at a time, as without it."""
    return AsyncOperationsWindow(1, window)


def retrieve_contexts(storage_classes: Iterable[str] | None = None, *,
                      transfer_syntaxes: Sequence[str] = _UNCOMPRESSED,
                      models: Iterable[str] = ("patient", "study"),
                      ) -> tuple[list[tuple[str, tuple[str, ...]]], list[RoleSelection]]:
    """``(contexts, role_selections)`` for an association that will C-GET:
    Verification, the C-FIND/C-MOVE/C-GET classes of ``models``, and each of
    ``storage_classes`` (default: the storage classes of the default proposal)
    offered with ``transfer_syntaxes`` and the SCP role. Pass them to
    ``Client.associate(contexts=..., role_selections=...)``. ValueError past
    128 contexts."""
    qr: list[str] = ["1.2.840.10008.1.1"]
    for model in models:
        root = _ROOTS.get(model)
        if root is None:
            raise ValueError(f"models are 'patient' and/or 'study', not {model!r}")
        qr += [f"{root}.{n}" for n in (1, 2, 3)]   # FIND, MOVE, GET
    if storage_classes is None:
        storage_classes = [u for u in DEFAULT_ABSTRACT_SYNTAXES if is_storage_sop_class(u)]
    syntaxes = tuple(transfer_syntaxes)
    contexts: list[tuple[str, tuple[str, ...]]] = [(uid, _UNCOMPRESSED) for uid in qr]
    for uid in dict.fromkeys(str(u) for u in storage_classes):
        contexts.append((uid, syntaxes))
    if len(contexts) > _MAX_CONTEXTS:
        raise ValueError(f"{len(contexts)} presentation contexts, at most {_MAX_CONTEXTS} fit in one "
                         "association (PS3.8 9.3.2.2): propose fewer storage classes")
    roles = [RoleSelection(uid, False, True) for uid, _ in contexts[len(qr):]]
    return contexts, roles


# ------------------------------------------------------------------ results
@dataclass(frozen=True, slots=True)
class RetrieveProgress:
    """The counters of one C-MOVE/C-GET response (None where the SCP left one out)."""

    status: int
    remaining: int | None
    completed: int | None
    failed: int | None
    warning: int | None


class _Retrieve(ResponseStream):
    """What C-MOVE and C-GET results share: the response loop, cancel, counters."""

    _service = "move"
    _rsp_field = CommandField.C_MOVE_RSP
    # Whether the responses are read through the compiled lane (C-GET: the
    # data sets of its C-STORE sub-operations; Association._lane_next).
    _through_lane = False

    def __init__(self, assoc: Association, context: NegotiatedContext, message_id: int,
                 timeout: float | None) -> None:
        super().__init__(assoc, context, message_id, timeout)
        self.remaining: int | None = None
        self.completed: int | None = None
        self.failed: int | None = None
        self.warning: int | None = None
        self.failed_instances: list[str] = []

    def result(self) -> int:
        """Read every remaining response; the final status (failure raises)."""
        if not self._started:
            for _ in self:
                pass
        else:
            while not self._done:
                self._step()
        assert self.status is not None
        return self.status

    # -- one message
    def _step(self) -> Any:
        message = self._assoc._receive_message(self.timeout, lane=self._through_lane)
        command = message.command
        if (command.get("CommandField") == self._rsp_field
                and command.get("MessageIDBeingRespondedTo") == self.message_id):
            return self._response(command, message.dataset)
        return self._other(message)

    def _other(self, message: Any) -> Any:
        if self._assoc._late_response(message.command, (self.message_id,)):
            return None
        self._assoc.abort()
        self._done = True
        raise AssociationAborted(description=f"expected a C-{self._service.upper()}-RSP to message "
                                             f"{self.message_id}, got {message.command!r}")

    def _response(self, command: Command, dataset: Any) -> Any:
        status = command.status
        if status is None:
            status = 0xC000
        self.remaining = command.get("NumberOfRemainingSuboperations", self.remaining)
        self.completed = command.get("NumberOfCompletedSuboperations", self.completed)
        self.failed = command.get("NumberOfFailedSuboperations", self.failed)
        self.warning = command.get("NumberOfWarningSuboperations", self.warning)
        progress = RetrieveProgress(status, self.remaining, self.completed, self.failed, self.warning)
        if st.is_pending(status):
            return self._pending(progress)
        if ("NumberOfRemainingSuboperations" not in command and not st.is_cancel(status)
                and self.completed is not None):
            self.remaining = 0         # a final response other than Cancel leaves nothing remaining
        syntax = self.context.transfer_syntax
        tail = getattr(command, "tail", None)
        if dataset is None and tail is not None:
            # dcmtk-based SCPs (Orthanc) put the final response's Failed SOP
            # Instance UID List after the command set instead of in a data set.
            dataset, syntax = tail, IMPLICIT_VR_LE      # as the command set is
        self._finish(status, command.get("ErrorComment"), dataset, syntax)
        if st.is_failure(status) and not self.cancelled:
            raise DimseStatusError(status, st.status_meaning(status, self._service), self._failure_text())
        if st.is_warning(status):
            self._assoc._log.warning("C-%s %d: final status 0x%04X (%s), %s failed",
                                     self._service.upper(), self.message_id, status,
                                     st.status_meaning(status, self._service), self.failed)
        return None

    def _pending(self, progress: RetrieveProgress) -> Any:
        return None

    def _failure_text(self) -> str | None:
        text = self.error_comment
        if self.failed_instances:
            extra = f"{len(self.failed_instances)} failed instance(s)"
            text = f"{text}; {extra}" if text else extra
        return text

    def _finish(self, status: int, comment: str | None, dataset: Any, syntax: str) -> None:
        self.status = status
        self.error_comment = comment
        self._done = True
        if dataset is not None:
            # The final response's Identifier: the Failed SOP Instance UID List (PS3.4 C.4.2.1.4).
            try:
                ident = read_dataset(dataset, transfer_syntax=syntax)
                value = ident.get("FailedSOPInstanceUIDList")
                if value:
                    self.failed_instances = [str(v) for v in ([value] if isinstance(value, str) else value)]
            except (DicomParseError, ValueError) as exc:
                self._assoc._log.warning("unreadable Identifier in the final C-%s-RSP: %s",
                                         self._service.upper(), exc)
        if getattr(self._assoc, "_open_find", None) is self:
            self._assoc._open_find = None  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        state = f"status 0x{self.status:04X}" if self.status is not None else "in progress"
        return (f"<{type(self).__name__} message {self.message_id}, completed {self.completed}, "
                f"failed {self.failed}, warning {self.warning}, {state}>")


class MoveResult(_Retrieve):
    """One C-MOVE: iterate for a :class:`RetrieveProgress` per Pending response.

    After the iteration: ``status``, ``completed``/``failed``/``warning``
    (/``remaining`` after a cancel) and ``failed_instances``.
    """

    def _pending(self, progress: RetrieveProgress) -> RetrieveProgress:
        return progress


#: ``store_to`` of :func:`start_get`: a directory, or ``callable(command) -> path``.
StoreTo = str | os.PathLike[str] | Callable[[Command], "str | os.PathLike[str]"]


class GetResult(_Retrieve):
    """One C-GET: iterate for the instances as they arrive (Datasets, or paths
    with ``store_to``). ``received`` counts them; ``progress`` is the last
    Pending response's counters; the rest as :class:`MoveResult`."""

    _service = "get"
    _rsp_field = CommandField.C_GET_RSP
    _through_lane = True

    def __init__(self, assoc: Association, context: NegotiatedContext, message_id: int,
                 timeout: float | None, store_to: StoreTo | None = None) -> None:
        super().__init__(assoc, context, message_id, timeout)
        self.received = 0
        self.progress: RetrieveProgress | None = None
        self._store_to = store_to
        self._last_size = 0
        self._previous_sink: Any = None
        self._installed: Any = None
        self._spare: Any = None         # the next instance's receive buffer, made ahead
        self._keeps = False             # whether the caller kept the instance before

    def _pending(self, progress: RetrieveProgress) -> None:
        self.progress = progress
        return None

    def _other(self, message: Any) -> Any:
        command = message.command
        if command.get("CommandField") != CommandField.C_STORE_RQ:
            return super()._other(message)
        return self._store(message)

    def _store(self, message: Any) -> Any:
        """Answer one C-STORE sub-operation; the instance to hand out (None if
        it is dropped: cancelled, or not readable)."""
        assoc = self._assoc
        command = message.command
        ctx = assoc.negotiated.contexts.get(message.context_id)
        status, comment, item = st.SUCCESS, None, None
        try:
            if ctx is None or not ctx.as_scp:
                status, comment = st.SOP_CLASS_NOT_SUPPORTED, "no context with the SCP role for this class"
            elif message.sink is not None:
                item = message.sink.commit()
            elif message.dataset is None:
                status, comment = st.CANNOT_UNDERSTAND, "C-STORE-RQ without a data set"
            else:
                self._last_size = len(message.dataset)
                item = read_dataset(message.dataset, transfer_syntax=ctx.transfer_syntax)
        except Exception as exc:  # noqa: BLE001 - answered as a failure status, the C-GET goes on
            # (an unreadable data set, a file that cannot be written, a store_to callable that raised)
            assoc._log.warning("C-GET sub-operation %s: %s", command.get("AffectedSOPInstanceUID"), exc)
            from dicomnet.dimse.scp import error_comment

            status, comment, item = (st.OUT_OF_RESOURCES if isinstance(exc, OSError) else st.CANNOT_UNDERSTAND,
                                     error_comment(exc), None)
        assoc._send_message(message.context_id,
                            c_store_rsp(command.message_id or 0, command.get("AffectedSOPClassUID"),
                                        command.get("AffectedSOPInstanceUID"), status, error_comment=comment))
        if self._keeps and self._store_to is None and self._last_size and self._spare is None:
            # The SCP now reads our response and sends the next instance: make
            # its buffer meanwhile (fresh memory costs a page fault per 4 KiB
            # otherwise paid while the data arrive), sized like this one. Only
            # for a caller that keeps the instances: for one that drops each,
            # the assembler reuses the previous buffer instead.
            self._spare = new_buffer(self._last_size)
        if item is None or self.cancelled:
            return None
        self.received += 1
        return item

    def _finish(self, status: int, comment: str | None, dataset: Any, syntax: str) -> None:
        super()._finish(status, comment, dataset, syntax)
        self._cleanup()

    def _cleanup(self) -> None:
        self._spare = None
        assembler = self._assoc._assembler
        if self._installed is not None and assembler._sink_factory is self._installed:
            assembler.set_sink(self._previous_sink)
        self._installed = None

    def _install_sink(self) -> None:
        """Watch each C-STORE-RQ as its command set completes: with ``store_to``
        stream the data set into its file as it arrives; else pre-size the
        receive buffer to the previous data set's size (instances of a series
        are alike; it saves the buffer's doublings -- a copy each -- and it
        still grows or is trimmed when the guess is wrong)."""
        from dicomnet.dimse.scp import StoreSink
        from dicomnet.interfaces.handlers import AssociationInfo, ServiceContext

        assoc = self._assoc
        target = self._store_to
        assembler = assoc._assembler
        self._previous_sink = assembler._sink_factory
        neg = assoc.negotiated
        info = AssociationInfo(neg.calling_ae, neg.called_ae, assoc.peer_address, neg, assoc.rq, assoc.ac)

        def factory(command: Command) -> StoreSink | None:
            if command.get("CommandField") != CommandField.C_STORE_RQ:
                return None
            if target is None:
                if self._last_size:
                    # Is the previous instance's buffer (the assembler's spare)
                    # still referenced beyond the assembler, here and the call?
                    held = assembler._spare
                    self._keeps = held is not None and sys.getrefcount(held) > 3
                    del held
                    spare, self._spare = self._spare, None
                    assembler.reserve(self._last_size, spare)
                return None
            context_id = assembler._context_id
            if context_id is None or context_id not in neg.contexts:
                return None
            # The file's Source AE is the peer: the SCP that sends us the instance.
            sctx = ServiceContext(neg.called_ae, neg.calling_ae, assoc.peer_address, neg.contexts[context_id],
                                  command.message_id or 0, command, info, assoc._log)
            try:
                if callable(target):
                    path = target(command)
                else:
                    # The UID comes from the peer: only a valid UID (digits and dots,
                    # PS3.5 9.1) becomes a file name, so nothing lands outside ``target``.
                    uid = str(command.get("AffectedSOPInstanceUID") or "")
                    if not is_valid_uid(uid):
                        uid = f"instance-{self.message_id}-{command.message_id}"
                    path = os.path.join(os.fspath(target), uid + ".dcm")  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - answered as a failure status
                return StoreSink(sctx, None, exc)
            return StoreSink(sctx, path)

        assembler.set_sink(factory)
        self._installed = factory


# ------------------------------------------------------------------- start
def _identifier(query: Any, ts: str) -> Any:
    from dicomnet.dimse.scu import query_dataset

    return encode_dataset(query_dataset(query), ts)


def _finish_open(assoc: Association) -> None:
    pending = getattr(assoc, "_open_find", None)
    if pending is not None:
        pending.cancel()


def start_move(assoc: Association, query: Dataset | Mapping[str, Any], destination_ae: str, *,
               model: str = "study", timeout: float | None = None, priority: int = 0) -> MoveResult:
    """Send a C-MOVE-RQ asking the peer to C-STORE what ``query`` names to
    ``destination_ae``; the :class:`MoveResult` to iterate."""
    from dicomnet.pdu.pdus import validate_ae_title

    destination = validate_ae_title(destination_ae, "destination_ae")
    _finish_open(assoc)
    sop_class = _sop_class(model, MOVE_MODELS, "MOVE")
    ctx = assoc.context_for(sop_class)
    data = _identifier(query, ctx.transfer_syntax)
    message_id = assoc._next_message_id()
    assoc._send_message(ctx.context_id, c_move_rq(message_id, sop_class, destination, priority), data)
    result = MoveResult(assoc, ctx, message_id, timeout)
    assoc._open_find = result  # type: ignore[attr-defined]
    return result


def start_get(assoc: Association, query: Dataset | Mapping[str, Any], *, model: str = "study",
              timeout: float | None = None, priority: int = 0, store_to: StoreTo | None = None) -> GetResult:
    """Send a C-GET-RQ; the :class:`GetResult` whose iteration yields the
    instances (``store_to``: a directory, where each arrives as
    ``<SOP Instance UID>.dcm``, or ``callable(command) -> path``; the
    iteration then yields the paths)."""
    _finish_open(assoc)
    sop_class = _sop_class(model, GET_MODELS, "GET")
    ctx = assoc.context_for(sop_class)
    if not any(c.as_scp for c in assoc.negotiated.contexts.values()):
        assoc._log.warning("C-GET on an association without any context where we are SCP: "
                           "every sub-operation will fail (propose with for_get=True)")
    data = _identifier(query, ctx.transfer_syntax)
    result = GetResult(assoc, ctx, 0, timeout, store_to)
    result._install_sink()
    message_id = assoc._next_message_id()
    result.message_id = message_id
    try:
        assoc._send_message(ctx.context_id, c_get_rq(message_id, sop_class, priority), data)
    except BaseException:
        result._cleanup()
        raise
    assoc._open_find = result  # type: ignore[attr-defined]
    return result
