"""The SCP side of C-MOVE and C-GET (PS3.4 C.4.2, C.4.3; PS3.7 9.1.3, 9.1.4).

:class:`dicomnet.Server` calls :func:`handle_move` / :func:`handle_get` for each
request. The handler (see :mod:`dicomnet.interfaces.handlers`) names the
instances; this module runs the C-STORE sub-operations and the responses.

Handler methods:

* ``on_move(ctx, query, destination_ae)`` returns either
  ``(address, instances)`` -- ``address`` a ``(host, port)`` pair, or None for
  a destination it does not know -- or just ``instances``, in which case the
  address is looked up in the Server's ``destinations`` table
  (``{AE title: (host, port)}``). The rule: a 2-tuple whose first item is None
  or a ``(str, int)`` pair is ``(address, instances)``; anything else is the
  instances. An unknown destination is answered 0xA801.
* ``on_get(ctx, query)`` returns the instances.

Instances are Datasets or paths of Part 10 files (sent from disk without
decoding, see :func:`dicomnet.dimse.scu.prepare_store`). The iterable is read
to the end first: the Number of Remaining Sub-operations must be known.

C-MOVE opens our own association to the destination (calling AE: the server's
AE title), proposing one context per SOP class and native transfer syntax of
the instances -- their own syntax first, then Explicit and Implicit VR Little
Endian -- and sends each instance with the Move Originator AE title and
Message ID set. C-GET sends the sub-operations on the requestor's association,
in the contexts where the requestor accepted the SCP role; an instance with no
such context is a failed sub-operation. When the requestor offered an
Asynchronous Operations Window (PS3.7 D.3.3.3; our Client does with
``for_get=True``), up to the negotiated number of C-STORE-RQs are sent before
the first response is awaited; otherwise one at a time.

Responses (PS3.4 Tables C.4-2, C.4-3): a Pending response with the four
counters after every sub-operation but the last (encoding one is a few
microseconds); the final one is Success (no failures or warnings), Warning
0xB000 (some failed or warned), Failure 0xA702 (every sub-operation failed),
or Cancel 0xFE00 after a C-CANCEL-RQ (checked before each sub-operation, with
the number still remaining). When any failed, the final response carries an
Identifier holding the Failed SOP Instance UID List (0008,0058).

A handler that raises: :class:`~dicomnet.errors.QueryError` -> its status
(0xA900 or 0xC000); ``MemoryError``/``OSError`` -> 0xA701; anything else ->
0xC000; ErrorComment is the exception text. No handler: 0x0122.
"""
from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dicomnet._codec.elements import ElementIndex, part10_meta
from dicomnet.dicom.dataset import Dataset
from dicomnet.dicom.writer import encode_dataset
from dicomnet.dimse.commands import CommandField, c_get_rsp, c_move_rsp, c_store_rq, encode_command
from dicomnet.dimse.scp import PeerDataError, _CancelWatch, error_comment, read_peer_dataset, service_context
from dicomnet.dimse.scu import (_READ_MAX, PreparedStore, _meta_text, _read_meta, _window_open, prepare_store,
                                reply_spin, window_bytes)
from dicomnet.errors import (
    AssociationAborted,
    AssociationError,
    DicomNetError,
    DicomTimeoutError,
    NoPresentationContext,
    QueryError,
)
from dicomnet.types import status as st
from dicomnet.types.transfer_syntax import transfer_syntax as _ts_info

if TYPE_CHECKING:
    from dicomnet.association import Association
    from dicomnet.dimse.assembler import Message
    from dicomnet.interfaces.handlers import AssociationInfo, ServiceContext
    from dicomnet.server import Server

__all__ = ["handle_move", "handle_get", "move_contexts", "instance_info", "InstancePath"]

_EXPLICIT = "1.2.840.10008.1.2.1"
_IMPLICIT = "1.2.840.10008.1.2"
_MAX_CONTEXTS = 128
_MAX_WINDOW = 16        # C-GET sub-operations out at once when the requestor allows any number
_HEAD = 8192            # bytes read to find a file's File Meta (instance_info)


# ------------------------------------------------------------ the instances
class InstancePath(str):
    """A Part 10 file's path that also names its SOP Instance UID (what an
    archive's index knows): if the file cannot be read when its sub-operation
    comes, the failure is still named in the Failed SOP Instance UID List
    (PS3.4 C.4.2.1.4.2, C.4.3.1.3.2). Anything that takes a path takes it."""

    sop_instance_uid: str | None

    def __new__(cls, path: str | os.PathLike[str], sop_instance_uid: str | None = None) -> InstancePath:
        self = super().__new__(cls, os.fspath(path))
        self.sop_instance_uid = sop_instance_uid
        return self


def instance_info(item: Any) -> tuple[str | None, str | None, str | None]:
    """(SOP Class UID, SOP Instance UID, transfer syntax) of a Dataset or a
    Part 10 file (only its File Meta is read); None where unknown (an
    :class:`InstancePath` that cannot be read still gives its UID)."""
    if isinstance(item, Dataset):
        meta = item.file_meta
        sop_class = item.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta else None)
        sop_instance = item.get("SOPInstanceUID") or (meta.get("MediaStorageSOPInstanceUID") if meta else None)
        return (str(sop_class) if sop_class else None, str(sop_instance) if sop_instance else None,
                item.transfer_syntax)
    head = _head_info(item)
    if head is not None:
        return head
    try:
        mapping, _, meta = _read_meta(item)
    except (OSError, ValueError, TypeError, DicomNetError):
        return None, getattr(item, "sop_instance_uid", None), None
    try:
        if meta is None:
            return None, getattr(item, "sop_instance_uid", None), None
        return (_meta_text(meta, 0x00020002), _meta_text(meta, 0x00020003), _meta_text(meta, 0x00020010))
    finally:
        meta = None
        try:
            mapping.close()
        except BufferError:  # pragma: no cover - the GC closes it
            pass


def _head_info(path: Any) -> tuple[str | None, str | None, str | None] | None:
    """The File Meta UIDs from the first 8 KiB of a Part 10 file (one read, no
    mapping); None when that is not enough (no preamble, a longer group 0002,
    unreadable) -- the caller then maps the file."""
    try:
        with open(path, "rb", buffering=0) as f:
            head = f.read(_HEAD)
    except (OSError, TypeError, ValueError):
        return None
    plain = part10_meta(head)       # the usual file, in C (the same answer as below)
    if plain is not None:
        return plain[1], plain[2], plain[3]
    if len(head) < 144 or head[128:132] != b"DICM" or head[132:134] != b"\x02\x00":
        return None
    explicit = 65 <= head[136] <= 90 and 65 <= head[137] <= 90
    try:
        index = ElementIndex(head, 132, implicit=not explicit, little=True, only_group=0x0002)
        if index.stop >= len(head):
            return None            # the group may go on past what was read
        meta = Dataset._from_index(index, 0, len(index), None, _EXPLICIT)
        return (_meta_text(meta, 0x00020002), _meta_text(meta, 0x00020003), _meta_text(meta, 0x00020010))
    except DicomNetError:
        return None


def _native(uid: str) -> bool:
    try:
        return not _ts_info(uid).encapsulated
    except KeyError:
        return False


def move_contexts(infos: Iterable[tuple[str | None, str | None, str | None]]) -> list[tuple[str, list[str]]]:
    """The presentation contexts to propose to a C-MOVE destination for
    instances of these (SOP class, -, transfer syntax): per SOP class one
    context for the uncompressed data (its own syntax first, then Explicit
    and Implicit VR LE) and one per encapsulated syntax (that syntax, then
    Explicit/Implicit, for a destination that takes the data decoded -- which
    we cannot do, so such instances then fail). At most 128: contexts past
    that are left out and their instances fail."""
    out: dict[tuple[str, str], list[str]] = {}
    for sop_class, _, ts in infos:
        if not sop_class:
            continue
        ts = ts or _EXPLICIT
        key = (sop_class, "native" if _native(ts) else ts)
        syntaxes = out.get(key)
        if syntaxes is None:
            if len(out) >= _MAX_CONTEXTS:
                continue
            syntaxes = out[key] = [_EXPLICIT, _IMPLICIT] if key[1] == "native" else [ts, _EXPLICIT, _IMPLICIT]
        if key[1] == "native" and ts not in syntaxes:
            syntaxes.insert(0, ts)       # e.g. big endian: offered first, as it is
    # Native syntaxes: the instances' own first (Explicit LE before Implicit if both occur).
    return [(sop_class, syntaxes) for (sop_class, _), syntaxes in out.items()]


# ---------------------------------------------------------------- responses
class _Operation:
    """Counters, the failed UIDs and the responses of one C-MOVE/C-GET."""

    def __init__(self, assoc: Association, message: Message, kind: str) -> None:
        self.assoc = assoc
        self.context_id = message.context_id
        self.command = message.command
        self.message_id = message.command.message_id or 0
        self.sop_class = message.command.get("AffectedSOPClassUID")
        self.kind = kind
        self.rsp = c_move_rsp if kind == "move" else c_get_rsp
        self.remaining = 0
        self.completed = self.failed = self.warning = 0
        self.failed_uids: list[str] = []

    def pending(self, *, flush: bool = True) -> None:
        """A Pending response with the counters. ``flush=False`` only queues it:
        C-GET's leaves with the next C-STORE-RQ on the same association in one
        write (the requestor wakes once per sub-operation, not twice); C-MOVE's
        once the next C-STORE-RQ is on its way to the destination."""
        rsp = self.rsp(self.message_id, self.sop_class, st.PENDING, self.remaining, self.completed,
                       self.failed, self.warning)
        if flush:
            self.assoc._send_message(self.context_id, rsp)
            return
        conn = self.assoc._conn
        if not conn.may_send_data:
            self.assoc._raise_not_established()
        conn.send_pdata(self.context_id, True, encode_command(rsp))

    def flush(self) -> None:
        """Write a Pending response queued with ``pending(flush=False)``."""
        self.assoc._driver.flush()

    def fail(self, item: Any, uid: str | None = None) -> None:
        self.failed += 1
        uid = uid or instance_info(item)[1]
        if uid:
            self.failed_uids.append(uid)

    def final(self, status: int | None = None, comment: str | None = None, *, cancelled: bool = False) -> int:
        if status is None:
            if cancelled:
                status = st.CANCEL
            elif self.failed == 0 and self.warning == 0:
                status = st.SUCCESS
            elif self.completed == 0 and self.warning == 0:
                status = st.OUT_OF_RESOURCES_SUB_OPERATIONS   # every sub-operation failed
            else:
                status = st.SUB_OPERATIONS_COMPLETE_WITH_FAILURES
        data = None
        if self.failed_uids:
            ident = Dataset()
            ident.set("FailedSOPInstanceUIDList", list(self.failed_uids))
            ts = self.assoc.negotiated.contexts[self.context_id].transfer_syntax
            data = encode_dataset(ident, ts)
        # Remaining is sent in a final response only after a cancel (PS3.7 Tables 9.3-6, 9.3-8).
        rsp = self.rsp(self.message_id, self.sop_class, status,
                       self.remaining if cancelled else None, self.completed, self.failed, self.warning,
                       data is not None, error_comment=comment)
        self.assoc._send_message(self.context_id, rsp, data)
        return status

    def count(self, status: int, comment: str | None, item: Any, uid: str | None) -> None:
        if st.is_success(status):
            self.completed += 1
        elif st.is_warning(status):
            self.warning += 1
        else:
            self.fail(item, uid)


def _handler_failure(log: Any, exc: BaseException, what: str) -> tuple[int, str]:
    if isinstance(exc, PeerDataError):
        log.warning("%s: %s", what, exc)
        return exc.status, error_comment(exc)
    if isinstance(exc, QueryError):
        log.info("%s: %s", what, exc)
        return exc.status, error_comment(exc)
    log.exception("%s handler failed", what)
    if isinstance(exc, (MemoryError, OSError)):
        return st.OUT_OF_RESOURCES_NUMBER_OF_MATCHES, error_comment(exc)
    return st.UNABLE_TO_PROCESS, error_comment(exc)


def _query(ctx: ServiceContext, message: Message) -> Dataset:
    if message.dataset is None:
        raise QueryError(f"{ctx.command.command_field!r} without an Identifier", st.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS)
    return read_peer_dataset(message, ctx.transfer_syntax, "Identifier", st.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS)


def _is_address(value: Any) -> bool:
    return (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], int) and not isinstance(value[1], bool))


def _split_move(result: Any, destinations: Any, destination_ae: str) -> tuple[tuple[str, int] | None, Any]:
    """(address, instances) from what ``on_move`` returned (the module docstring's rule)."""
    if isinstance(result, tuple) and len(result) == 2 and (result[0] is None or _is_address(result[0])):
        return result[0], result[1]
    address = (destinations or {}).get(destination_ae)
    if address is not None and not _is_address(tuple(address)):
        raise TypeError(f"destinations[{destination_ae!r}] is {address!r}, not (host, port)")
    return (tuple(address) if address is not None else None), result  # type: ignore[return-value]


# ------------------------------------------------------------------- C-MOVE
def handle_move(server: Server, assoc: Association, info: AssociationInfo, message: Message) -> None:
    """Answer one C-MOVE-RQ: sub-operations on a new association to the destination."""
    log = server.logger
    op = _Operation(assoc, message, "move")
    ctx = service_context(server, assoc, info, message.context_id, message.command)
    destination = str(message.command.get("MoveDestination") or "").strip()
    on_move = getattr(server.handler, "on_move", None)
    if on_move is None:
        op.final(st.SOP_CLASS_NOT_SUPPORTED, "this SCP has no C-MOVE handler")
        return
    try:
        result = on_move(ctx, _query(ctx, message), destination)
        address, instances = _split_move(result, getattr(server, "destinations", None), destination)
        items = list(instances) if address is not None else []
    except Exception as exc:  # noqa: BLE001 - a handler fault becomes a failure status
        op.final(*_handler_failure(log, exc, f"C-MOVE {op.message_id}"))
        return
    if address is None:
        log.info("C-MOVE %d: move destination %r unknown", op.message_id, destination)
        op.final(st.MOVE_DESTINATION_UNKNOWN, f"unknown move destination {destination}"[:64])
        return
    op.remaining = len(items)
    if not items:
        op.final()
        return
    infos = [instance_info(item) for item in items]
    from dicomnet.client import Client

    move_tls = getattr(server, "move_tls_context", None)  # TLS to the destination (Server(move_tls=...))
    client = Client(server.ae_title, connect_timeout=min(server.read_timeout, 10.0),
                    read_timeout=server.read_timeout, write_timeout=server.write_timeout,
                    dimse_timeout=server.dimse_timeout, artim_timeout=server.artim_timeout, logger=log,
                    tls=move_tls(destination) if move_tls is not None else None,
                    busy_poll=getattr(server, "busy_poll", 0.0))
    started = time.monotonic()
    try:
        sub = client.associate(address[0], int(address[1]), destination, contexts=move_contexts(infos),
                               async_operations=getattr(server, "move_async_operations", 1))
    except (DicomNetError, OSError) as exc:
        log.warning("C-MOVE %d: cannot associate with %s at %s:%s: %s", op.message_id, destination,
                    address[0], address[1], exc)
        for item, (_, uid, _) in zip(items, infos):
            op.fail(item, uid)
        op.remaining = 0
        op.final(st.OUT_OF_RESOURCES_SUB_OPERATIONS, error_comment(exc))
        return
    watch = _CancelWatch(assoc, op.message_id)
    cancelled = False
    try:
        cancelled = _move_suboperations(op, sub, items, infos, watch, info.calling_ae,
                                        int(message.command.get("Priority") or 0), log)
        ctx.cancelled = ctx.cancelled or cancelled
    finally:
        if watch.gone:
            sub.abort()
        elif sub.is_established:
            try:
                sub.release()
            except DicomNetError as exc:
                log.warning("C-MOVE %d: releasing the association with %s: %s", op.message_id, destination, exc)
        else:
            sub.abort()
    if watch.gone:
        log.info("association gone during C-MOVE %d", op.message_id)
        return
    status = op.final(cancelled=cancelled)
    log.info("C-MOVE %d to %s: %d completed, %d failed, %d warning in %.2f s, final 0x%04X", op.message_id,
             destination, op.completed, op.failed, op.warning, time.monotonic() - started, status)


def _file_buffer(items: list[Any]) -> bytearray | None:
    """One buffer the files of a C-GET/C-MOVE are read into, one after the
    other: a fresh ``bytes`` per file is new memory faulted in page by page
    (on the machine measured, ~300 us for a 0.5 MB CT file -- as much as
    sending it). Safe because each sub-operation's data set is written to
    the socket (``_send_message`` returns when it is) and its PreparedStore
    closed before the next file is read."""
    return bytearray(_READ_MAX) if len(items) > 1 else None


def _prepare(sub: Association, item: Any, buffer: bytearray | None = None
             ) -> tuple[PreparedStore | None, BaseException | None]:
    try:
        return prepare_store(sub.negotiated, item, buffer=buffer), None
    except (DicomNetError, OSError, ValueError, TypeError) as exc:   # no context, unreadable file
        return None, exc


def _move_suboperations(op: _Operation, sub: Association, items: list[Any], infos: list[Any],
                        watch: _CancelWatch, originator: str, priority: int, log: Any) -> bool:
    """The C-STORE sub-operations of one C-MOVE on ``sub``; True if cancelled.

    Overlapped: while the destination stores instance n, the Pending response
    for n-1 goes to the requestor and instance n+1 is prepared (its file read,
    its File Meta indexed). One operation at a time unless the destination
    accepted an Asynchronous Operations Window (PS3.7 D.3.3.3; see
    ``Server(move_async_operations=)``): then up to that many C-STORE-RQs --
    beyond two, no more than :func:`~dicomnet.dimse.scu.window_bytes` of data sets -- are out before
    a response is awaited. Responses are matched by Message ID, in whatever
    order they come. A C-CANCEL stops the sending; what is out is still
    answered and counted."""
    window = sub.negotiated.max_invoked
    window = _MAX_WINDOW if window <= 0 else min(window, _MAX_WINDOW)
    budget = window_bytes(sub)
    buffer = _file_buffer(items)
    upcoming = _prepare(sub, items[0], buffer) if items else (None, None)
    out: dict[int, tuple[Any, str | None, int]] = {}     # Message ID -> (item, UID, data set bytes)
    out_bytes = 0
    sent = 0
    cancelled = False
    try:
        while True:
            while sent < len(items) and not cancelled and _window_open(len(out), window, out_bytes,
                                                                       _size(upcoming[0]), budget):
                if watch.check():
                    cancelled = True
                    break
                item, (_, uid, _) = items[sent], infos[sent]
                op.remaining -= 1
                prepared, error = upcoming
                upcoming = (None, None)
                sent += 1
                comment, store_id, nbytes = None, 0, 0
                if not sub.is_established:
                    comment = "the association with the destination is gone"
                elif prepared is None:
                    log.info("C-MOVE %d: %s not sent: %s", op.message_id, uid, error)
                    comment = error_comment(error) if error is not None else None
                else:
                    uid, nbytes = prepared.sop_instance_uid, _size(prepared)
                    try:
                        store_id = sub._next_message_id()
                        sub._send_message(prepared.context.context_id,
                                          c_store_rq(store_id, prepared.sop_class_uid, uid, priority, originator,
                                                     op.message_id), prepared.dataset)
                    except (AssociationError, DicomTimeoutError) as exc:
                        log.warning("C-MOVE %d: association with the destination lost: %s", op.message_id, exc)
                        comment, store_id = error_comment(exc), 0
                    finally:
                        prepared.close()
                op.flush()                           # the previous Pending, while the destination works
                if sent < len(items) and sub.is_established:
                    upcoming = _prepare(sub, items[sent], buffer)
                if store_id:
                    out[store_id] = (item, uid, nbytes)
                    out_bytes += nbytes
                else:
                    _move_counted(op, st.UNABLE_TO_PROCESS, comment, item, uid, log)
            if not out:
                return cancelled
            status, comment = st.UNABLE_TO_PROCESS, None
            try:
                with reply_spin(sub):
                    rsp = sub._receive_message().command
                    while sub._late_response(rsp, out):
                        rsp = sub._receive_message().command
                answered = rsp.get("MessageIDBeingRespondedTo")
                if rsp.get("CommandField") != CommandField.C_STORE_RSP or answered not in out:
                    sub.abort()
                    raise AssociationAborted(description=f"expected a C-STORE-RSP to one of {sorted(out)}, "
                                                         f"got {rsp!r}")
                status = st.UNABLE_TO_PROCESS if rsp.status is None else rsp.status
                comment = rsp.get("ErrorComment")
            except (AssociationError, DicomTimeoutError) as exc:
                # The destination went away (a timeout aborted it): what is out fails, and the rest.
                log.warning("C-MOVE %d: association with the destination lost: %s", op.message_id, exc)
                if sub.is_established:
                    sub.abort()
                for item, uid, _ in out.values():
                    _move_counted(op, st.UNABLE_TO_PROCESS, error_comment(exc), item, uid, log)
                out.clear()
                out_bytes = 0
                continue
            item, uid, nbytes = out.pop(answered)
            out_bytes -= nbytes
            _move_counted(op, status, comment, item, uid, log)
    finally:
        if upcoming[0] is not None:
            upcoming[0].close()


def _size(prepared: PreparedStore | None) -> int:
    return 0 if prepared is None else memoryview(prepared.dataset).nbytes


def _move_counted(op: _Operation, status: int, comment: str | None, item: Any, uid: str | None, log: Any) -> None:
    """One C-MOVE sub-operation done: counted, and a Pending response queued
    (it leaves with the next write to the requestor)."""
    if not st.is_success(status):
        log.info("C-MOVE %d: sub-operation for %s: status 0x%04X%s", op.message_id, uid, status,
                 f" ({comment})" if comment else "")
    op.count(status, comment, item, uid)
    if op.remaining:
        op.pending(flush=False)


# -------------------------------------------------------------------- C-GET
def _send_here(assoc: Association, prepared: PreparedStore, priority: int) -> int:
    """Send one C-STORE-RQ sub-operation on the requestor's own association
    (with the Pending response queued before it); its Message ID."""
    try:
        store_id = assoc._next_message_id()
        rq = c_store_rq(store_id, prepared.sop_class_uid, prepared.sop_instance_uid, priority)
        assoc._send_message(prepared.context.context_id, rq, prepared.dataset)
    finally:
        prepared.close()
    return store_id


def _await_here(assoc: Association, op: _Operation, store_id: int, ctx: ServiceContext) -> tuple[int, str | None]:
    """The C-STORE-RSP to ``store_id``: (status, comment). A C-CANCEL-RQ that
    arrives before it is noted in ``ctx.cancelled``."""
    while True:
        with reply_spin(assoc):
            reply = assoc._receive_message()
        command = reply.command
        field = command.get("CommandField")
        responding = command.get("MessageIDBeingRespondedTo")
        if field == CommandField.C_STORE_RSP and responding == store_id:
            status = command.status
            return (st.UNABLE_TO_PROCESS if status is None else status), command.get("ErrorComment")
        if field == CommandField.C_CANCEL_RQ and responding == op.message_id:
            ctx.cancelled = True
            continue
        if assoc._late_response(command, (store_id,)):
            continue
        assoc.abort()
        raise AssociationAborted(description=f"expected the C-STORE-RSP to {store_id} during C-GET "
                                             f"{op.message_id}, got {command!r}")


def _sub_failure(log: Any, op: _Operation, error: BaseException) -> tuple[int, str | None]:
    """A C-GET sub-operation that failed (no SCP-role context, a bad file)."""
    if isinstance(error, NoPresentationContext):
        log.info("C-GET %d: sub-operation not sent: %s", op.message_id, error)
    else:
        log.warning("C-GET %d: sub-operation failed: %s", op.message_id, error)
    return st.UNABLE_TO_PROCESS, error_comment(error)


def _count(op: _Operation, result: tuple[int, str | None], item: Any, uid: str | None, *, more: bool) -> None:
    """One C-GET sub-operation done: count it and, unless it was the last,
    queue a Pending response (written with the next C-STORE-RQ if ``more``
    will follow, else at once)."""
    op.remaining -= 1
    op.count(result[0], result[1], item, uid)
    if op.remaining:
        op.pending(flush=not more)


def handle_get(server: Server, assoc: Association, info: AssociationInfo, message: Message) -> None:
    """Answer one C-GET-RQ: C-STORE sub-operations on this same association."""
    log = server.logger
    op = _Operation(assoc, message, "get")
    ctx = service_context(server, assoc, info, message.context_id, message.command)
    on_get = getattr(server.handler, "on_get", None)
    if on_get is None:
        op.final(st.SOP_CLASS_NOT_SUPPORTED, "this SCP has no C-GET handler")
        return
    try:
        result = on_get(ctx, _query(ctx, message))
        items = list(result if result is not None else ())
    except Exception as exc:  # noqa: BLE001 - a handler fault becomes a failure status
        op.final(*_handler_failure(log, exc, f"C-GET {op.message_id}"))
        return
    op.remaining = len(items)
    watch = _CancelWatch(assoc, op.message_id)
    priority = int(message.command.get("Priority") or 0)
    started = time.monotonic()
    # Without an Asynchronous Operations Window one sub-operation at a time,
    # but overlapped: while the requestor receives instance n, instance n+1 is
    # prepared (its file mapped, its File Meta read). With a window (PS3.7
    # D.3.3.3, the requestor offered to perform several) up to that many
    # C-STORE-RQs are out before we wait for the first response -- beyond
    # two, no more than window_bytes() of data sets, as for C-MOVE and
    # store_many (see send_stores). More only queues up unread at the
    # requestor. Measured (500 CT kept as numpy arrays, interleaved, 12
    # rounds): 2,209 inst/s with all 8 out, 2,481 within 2 MiB and 2,486
    # within 1 MiB (requestor CPU 0.49 -> 0.43 ms per instance); the same
    # either way when the caller drops each instance.
    window = assoc.negotiated.max_invoked or _MAX_WINDOW
    budget = window_bytes(assoc)
    outstanding: deque[tuple[int, Any, str, int]] = deque()  # (message id, item, UID, bytes), in send order
    out_bytes = 0
    buffer = _file_buffer(items)
    upcoming = _prepare(assoc, items[0], buffer) if items else (None, None)
    sent = 0
    try:
        while True:
            while sent < len(items) and not ctx.cancelled and _window_open(len(outstanding), window, out_bytes,
                                                                           _size(upcoming[0]), budget):
                if watch.check():
                    ctx.cancelled = True
                    break
                item = items[sent]
                prepared, error = upcoming
                upcoming = (None, None)
                sent += 1
                try:
                    if prepared is None:
                        raise error if error is not None else ValueError("nothing to send")
                    uid = prepared.sop_instance_uid
                    nbytes = _size(prepared)
                    outstanding.append((_send_here(assoc, prepared, priority), item, uid, nbytes))
                    out_bytes += nbytes
                except NoPresentationContext as exc:     # (an AssociationError) no SCP-role context
                    _count(op, _sub_failure(log, op, exc), item, None, more=sent < len(items))
                except (AssociationError, DicomTimeoutError):
                    raise                      # the requestor's association is gone: nothing to answer
                except (DicomNetError, OSError, ValueError, TypeError) as exc:  # a bad file
                    _count(op, _sub_failure(log, op, exc), item, None, more=sent < len(items))
                if sent < len(items):
                    upcoming = _prepare(assoc, items[sent], buffer)
            if not outstanding or watch.gone:
                break
            store_id, item, uid, nbytes = outstanding.popleft()
            out_bytes -= nbytes
            try:
                outcome = _await_here(assoc, op, store_id, ctx)
            except (AssociationError, DicomTimeoutError):
                raise
            except (DicomNetError, OSError, ValueError, TypeError) as exc:
                outcome = _sub_failure(log, op, exc)
            # The pending response goes with the next C-STORE-RQ, or at once
            # when there is none to send.
            _count(op, outcome, item, uid, more=sent < len(items) and not ctx.cancelled)
    finally:
        if upcoming[0] is not None:
            upcoming[0].close()
    if watch.gone:
        log.info("association gone during C-GET %d", op.message_id)
        return
    status = op.final(cancelled=ctx.cancelled)
    log.info("C-GET %d: %d completed, %d failed, %d warning in %.2f s, final 0x%04X", op.message_id,
             op.completed, op.failed, op.warning, time.monotonic() - started, status)
