"""The SCP side of C-STORE (PS3.4 B.2, PS3.7 9.1.1) and C-FIND (PS3.4 C.4.1, PS3.7 9.1.2).

:class:`dicomnet.Server` calls :func:`attach` once per association and
:func:`handle_store` / :func:`handle_find` for each request; the handler's
methods (see :mod:`dicomnet.interfaces.handlers`) do the application's part.

C-STORE, in memory: the data set arrives in the assembler's one buffer and the
handler gets ``read_dataset`` over a view of it -- lazily decoded, not copied.

C-STORE, streamed: when the handler has ``store_destination(ctx, command)`` and
it returns a path, the assembler's sink writes the Part 10 file as the PDVs
arrive: preamble, ``DICM``, a File Meta group built for the command's SOP
Class/Instance and the negotiated transfer syntax, then the data set bytes as
received. The file is written under a temporary name in the destination's
folder and renamed into place only once the whole data set is in, so nothing
half-written ever stands under the final name (an association that dies
mid-transfer leaves no file: the temporary one is removed when the sink is
dropped). The handler's ``on_store`` then gets the file, memory-mapped.

Statuses the SCP chooses itself (PS3.4 B.2.3, C.4.1.1.4; PS3.7 C.5):

* a handler that raises: ``MemoryError``/``OSError`` -> 0xA700 (Refused: out of
  resources), anything else -> 0xC000 (cannot understand / unable to process);
  ErrorComment is the exception text cut to 64 characters (LO). The
  association goes on.
* a handler without ``on_store`` (and without ``store_destination``), or
  without ``on_find``: 0x0122 "Refused: SOP Class not supported" -- a PS3.7
  9.1.1.1.9 / 9.1.2.1.6 status that says exactly that this SCP does not provide
  the service, even though the (default) negotiation accepted the context.
  (pynetdicom answers 0xC211 / 0xC311 in that case.)
* C-FIND: each match is a Pending response (0xFF00, or what the handler
  yields with it); a C-CANCEL-RQ for the request sets ``ctx.cancelled``, no
  further match is sent and the final status is Cancel (0xFE00). Pending
  responses go out in batches (one socket write for up to 64 of them; see
  ``_BATCH_MESSAGES``), and the socket is polled for the C-CANCEL once per
  batch. The first match is sent at once, and so is every match whose
  ``next()`` took the handler longer than 2 ms (with those queued before
  it); a match can still wait behind one slow ``next()`` that follows a
  fast burst.
"""
from __future__ import annotations

import functools
import itertools
import os
import select
import struct
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from dicomnet.dicom.dataset import Dataset
from dicomnet.dicom.reader import read_dataset, read_file
from dicomnet._codec.dimse import store_rsp_bytes as _store_rsp_bytes
from dicomnet._codec.lane import StoreLane
from dicomnet._version import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dicomnet.dicom.writer import encode_dataset
from dicomnet.dimse.assembler import Message
from dicomnet.dimse.commands import Command, CommandField, c_find_rsp, c_store_rsp, encode_command
from dicomnet.dimse.scu import send_encoded
from dicomnet.errors import DicomParseError, QueryError, ReadTimeout
from dicomnet.interfaces.handlers import ServiceContext
from dicomnet.pdu import events as ev
from dicomnet.types import status as st

if TYPE_CHECKING:
    from dicomnet.association import Association
    from dicomnet.interfaces.handlers import AssociationInfo
    from dicomnet.server import Server

__all__ = ["attach", "handle_store", "handle_find", "StoreSink", "error_comment", "file_meta_bytes"]

_MAX_ERROR_COMMENT = 64          # ErrorComment is LO (PS3.5 6.2)
_PREAMBLE = bytes(128) + b"DICM"
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_SERIAL = itertools.count(1)     # temporary names: unique within the process
_PID = [os.getpid()]             # ... and across processes (kept current in a forked child)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))
_POLLIN = getattr(select, "POLLIN", 1)
_GROUP_LENGTH = struct.Struct("<HH2sHI")


def error_comment(exc: BaseException) -> str:
    """An exception as an ErrorComment: ASCII, at most 64 characters."""
    text = f"{type(exc).__name__}: {exc}".encode("ascii", "replace").decode("ascii")
    return text[:_MAX_ERROR_COMMENT]


def _failure_status(exc: BaseException, *, store: bool) -> int:
    status = getattr(exc, "status", None)
    if isinstance(status, int) and not isinstance(status, bool) and 0 < status <= 0xFFFF:
        # The handler named the failure itself (e.g. QueryError: 0xA900 identifier does not match).
        return status
    if isinstance(exc, (MemoryError, OSError)):
        return st.OUT_OF_RESOURCES
    return st.CANNOT_UNDERSTAND if store else st.UNABLE_TO_PROCESS


def _check_status(result: Any, name: str) -> int:
    if result is None:
        return st.SUCCESS
    if isinstance(result, bool) or not isinstance(result, int) or not 0 <= result <= 0xFFFF:
        raise TypeError(f"{name} returned {result!r}, not a status (int) or None")
    return int(result)


def service_context(server: Server, assoc: Association, info: AssociationInfo, context_id: int,
                    command: Command) -> ServiceContext:
    """The :class:`ServiceContext` a handler gets for ``command`` on ``context_id``."""
    return ServiceContext(info.calling_ae, info.called_ae, info.peer_address,
                          assoc.negotiated.contexts[context_id], command.message_id or 0, command,
                          info, server.logger)


# ------------------------------------------------------------ streaming sink
def _element(tag_element: int, vr: bytes, value: bytes) -> bytes:
    # Explicit VR Little Endian, group 0002, short-length VRs only (UI/SH/AE/UL).
    return struct.pack("<HH2sH", 0x0002, tag_element, vr, len(value)) + value


def _text(value: str, pad: bytes, limit: int, what: str) -> bytes:
    raw = value.encode("ascii")          # UnicodeEncodeError is a ValueError
    if len(raw) > limit:
        raise ValueError(f"{what} longer than {limit} characters: {value!r}")
    return raw + pad if len(raw) & 1 else raw


@functools.lru_cache(maxsize=64)
def _meta_parts(sop_class: str, transfer_syntax: str, source_ae: str | None) -> tuple[bytes, bytes]:
    """The File Meta elements before and after (0002,0003) -- the same for every
    instance of one SOP class and syntax from one peer, so built once."""
    before = b"".join((
        struct.pack("<HH2s2xI", 0x0002, 0x0001, b"OB", 2) + b"\x00\x01",
        _element(0x0002, b"UI", _text(sop_class, b"\0", 64, "SOP Class UID")),
    ))
    after = b"".join((
        _element(0x0010, b"UI", _text(transfer_syntax, b"\0", 64, "Transfer Syntax UID")),
        _element(0x0012, b"UI", _text(IMPLEMENTATION_CLASS_UID, b"\0", 64, "Implementation Class UID")),
        _element(0x0013, b"SH", _text(IMPLEMENTATION_VERSION_NAME, b" ", 16, "Implementation Version Name")),
        _element(0x0016, b"AE", _text(source_ae.strip(), b" ", 16, "AE title")) if source_ae else b"",
    ))
    return before, after


def file_meta_bytes(sop_class: str, sop_instance: str, transfer_syntax: str, source_ae: str | None) -> bytes:
    """Preamble, ``DICM`` and the File Meta group (PS3.10 7.1) for a data set
    that follows in ``transfer_syntax``. Built directly (it is done once per
    received instance); the same elements :func:`encode_file_meta` writes for
    a data set without File Meta, plus the Source AE title."""
    before, after = _meta_parts(sop_class, transfer_syntax, source_ae)
    instance = _element(0x0003, b"UI", _text(sop_instance, b"\0", 64, "SOP Instance UID"))
    length = len(before) + len(instance) + len(after)
    return b"".join((_PREAMBLE, _GROUP_LENGTH.pack(0x0002, 0x0000, b"UL", 4, length), before, instance, after))


# The compiled lane of streamed C-STOREs is POSIX only (its system calls).
_LANE = os.name == "posix"

# C-STORE responses held back while more requests wait (see handle_store).
_DEFER_MAX = 16
_DEFER_SECONDS = 0.002


class StoreSink:
    """Writes one incoming C-STORE data set as a Part 10 file (see the module
    docstring). Write errors are remembered (``error``), not raised: the rest
    of the data set is read and dropped, and the response says 0xA700.

    Each fragment goes to the file with one ``os.write`` straight from the
    receive buffer (no user-space buffering: that would be one more copy); the
    File Meta header goes out with the first one (``os.writev``), so a data
    set that arrives in one PDV costs open, one write, close and rename.

    A sink dropped before :meth:`commit` (its association died mid-transfer)
    closes and removes its temporary file (``__del__``: no reference cycle
    holds a sink, so that happens as the association goes).
    """

    _fd = -1                            # (class defaults: what __del__ finds when __init__ failed early)
    _tmp = ""

    def __init__(self, ctx: ServiceContext, destination: str | os.PathLike[str] | None,
                 error: BaseException | None = None) -> None:
        self.ctx = ctx
        self.path = os.fspath(destination) if destination is not None else None
        self.error = error
        self.size = 0
        self._fd = -1
        self._tmp = ""                  # the temporary file while it exists
        self._head = b""                # File Meta not written yet
        if self.path is not None and error is None:
            try:
                self._open()
            except (OSError, ValueError) as exc:
                self._fail(exc)

    def _open(self) -> None:
        path = self.path
        assert path is not None
        command = self.ctx.command
        # File Meta for what the command says arrives, in the negotiated
        # transfer syntax: the data set bytes follow exactly as received.
        head = file_meta_bytes(str(command.get("AffectedSOPClassUID") or self.ctx.abstract_syntax),
                               str(command.get("AffectedSOPInstanceUID") or ""),
                               self.ctx.transfer_syntax, self.ctx.calling_ae)
        folder, name = os.path.split(path)
        tmp = f".{name}.{_PID[0]}.{next(_SERIAL)}.part"
        if os.altsep:                   # Windows: drives and two separators
            tmp = os.path.join(folder, tmp)
        elif folder:                    # os.path.join spelled out: most of this method's cost on POSIX
            tmp = (folder if folder.endswith("/") else folder + "/") + tmp
        try:
            fd = os.open(tmp, _OPEN_FLAGS, 0o666)
        except FileNotFoundError:
            if not folder:
                raise
            os.makedirs(folder, exist_ok=True)
            fd = os.open(tmp, _OPEN_FLAGS, 0o666)
        self._fd, self._tmp = fd, tmp
        self._head = head

    def _write(self, data: Any) -> None:
        fd = self._fd
        view = memoryview(data)
        head, self._head = self._head, b""
        if head:
            done = os.writev(fd, (head, view))
            if done >= len(head):
                view = view[done - len(head):]
            else:                       # a short write: finish in order
                self._write(memoryview(head)[done:])
        while len(view):
            view = view[os.write(fd, view):]

    def _drop(self) -> None:
        """Close and remove the temporary file, if there is one."""
        fd, tmp = self._fd, self._tmp
        self._fd, self._tmp = -1, ""
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
        if tmp:
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def __del__(self) -> None:
        if self._tmp:
            self._drop()

    def _fail(self, exc: BaseException) -> None:
        self.error = exc
        self._drop()

    def write(self, data: Any) -> None:
        """One fragment of the data set (a view valid only during the call)."""
        if self._fd < 0:
            return
        try:
            self._write(data)
            self.size += len(data)
        except (OSError, ValueError) as exc:
            self._fail(exc)

    def commit(self) -> str:
        """Close and rename the complete file into place; its final path.

        Not fsync'ed: the rename makes it appear whole to every reader; a
        power cut may still lose it, as with dcmtk's storescp."""
        if self.error is not None:
            raise self.error
        fd, tmp, path = self._fd, self._tmp, self.path
        assert fd >= 0 and path is not None
        try:
            if self._head:              # an empty data set: the File Meta alone
                self._write(b"")
            self._fd = -1
            os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            self._fail(exc)
            raise
        self._tmp = ""
        return path

    def discard(self) -> None:
        """Drop the temporary file (the message will not be answered)."""
        self._drop()


class PeerDataError(Exception):
    """A data set or Identifier the peer sent that cannot be read: the peer's
    fault, not a handler's (which was never called). Answered with ``status``
    and logged as a warning, without a traceback."""

    def __init__(self, what: str, exc: Exception, status: int) -> None:
        super().__init__(f"unreadable {what}: {exc}")
        self.status = status


def read_peer_dataset(message: Message, transfer_syntax: str, what: str, status: int) -> Dataset:
    """The data set of ``message`` (a lazy view of its buffer); one that cannot
    be framed raises :class:`PeerDataError` with ``status``."""
    try:
        return read_dataset(message.dataset, transfer_syntax=transfer_syntax)
    except DicomParseError as exc:
        raise PeerDataError(what, exc, status) from exc


class _Logged(Exception):
    """A ``store_destination`` failure, logged already: the C-STORE answers it
    without logging it again."""

    def __init__(self, exc: Exception) -> None:
        super().__init__(str(exc))
        self.exc = exc


def attach(server: Server, assoc: Association, info: AssociationInfo) -> StoreLane | None:
    """Prepare a new association: the handler's ``on_echo``, ``on_store`` and
    ``store_destination`` are looked up here, once per association (through
    the watchdog's guard a lookup cost about 4 us of a C-STORE's answer
    time), and C-STORE data sets are streamed to files when the handler has
    ``store_destination``. Then the server loop gets the association's
    :class:`~dicomnet._codec.lane.StoreLane` (the compiled path of P-DATA:
    streamed data sets to their files, data sets held in memory to their
    buffers; POSIX only), else None."""
    assoc._on_echo = getattr(server.handler, "on_echo", None)
    assoc._on_store = getattr(server.handler, "on_store", None)
    destination = getattr(server.handler, "store_destination", None)
    if destination is not None:
        _stream_to_files(server, assoc, info, destination)
    if not _LANE:
        return None
    # The lane answers plain C-STOREs itself on a plain TCP socket; over TLS
    # (or any other transport) handle_store answers every one.
    return assoc._make_lane(answers=True, defer_max=_DEFER_MAX, defer_seconds=_DEFER_SECONDS)


def _stream_to_files(server: Server, assoc: Association, info: AssociationInfo,
                     destination: Callable[[ServiceContext, Command], Any]) -> None:
    """C-STORE data sets of ``assoc`` go to the files ``destination`` names."""
    # Weak references: the assembler holds this closure, so strong ones would
    # make a cycle and an aborted association's half-written temporary file
    # would wait for the cycle collector instead of going with the association.
    assoc_ref = weakref.ref(assoc)
    assembler_ref = weakref.ref(assoc._assembler)

    def factory(command: Command) -> StoreSink | None:
        if command.get("CommandField") != 0x0001:   # CommandField.C_STORE_RQ (the enum lookup costs more)
            return None
        owner, assembler = assoc_ref(), assembler_ref()
        if owner is None or assembler is None:
            return None
        # The assembler calls us once the command set is complete, before the
        # data set's first PDV; its current context is the message's.
        context_id = assembler._context_id
        if context_id is None or context_id not in owner.negotiated.contexts:  # pragma: no cover
            return None
        ctx = service_context(server, owner, info, context_id, command)
        try:
            path = destination(ctx, command)
        except ValueError as exc:
            # A deliberate refusal (e.g. a SOP Instance UID unfit to name a file): no traceback.
            server.logger.warning("store_destination refused the instance: %s", exc)
            return StoreSink(ctx, None, _Logged(exc))
        except Exception as exc:  # noqa: BLE001 - answered as a failure status
            server.logger.exception("store_destination handler failed")
            return StoreSink(ctx, None, _Logged(exc))
        if path is None:
            return None
        return StoreSink(ctx, path)

    assoc._assembler.set_sink(factory)


# ------------------------------------------------------------------ C-STORE
def handle_store(server: Server, assoc: Association, info: AssociationInfo, message: Message) -> None:
    """Answer one C-STORE-RQ (the data set is in ``message``)."""
    command = message.command
    log = server.logger
    started = time.monotonic()
    sink = message.sink if isinstance(message.sink, StoreSink) else None
    on_store = assoc._on_store
    ctx = sink.ctx if sink is not None else service_context(server, assoc, info, message.context_id, command)
    status, comment = st.SUCCESS, None
    try:
        if sink is not None:
            path = sink.commit()
            if on_store is not None:
                try:
                    ds = read_file(path)
                except DicomParseError as unreadable:
                    raise PeerDataError("data set", unreadable, st.CANNOT_UNDERSTAND) from unreadable
                status = _check_status(on_store(ctx, ds), "on_store")
        elif on_store is None:
            status = st.SOP_CLASS_NOT_SUPPORTED
            comment = "this SCP has no C-STORE handler"
        elif message.dataset is None:
            status, comment = st.CANNOT_UNDERSTAND, "C-STORE-RQ without a data set"
        else:
            # The handler's Dataset is a lazy view of the assembler's buffer.
            ds = read_peer_dataset(message, ctx.transfer_syntax, "data set", st.CANNOT_UNDERSTAND)
            status = _check_status(on_store(ctx, ds), "on_store")
            del ds
    except _Logged as logged:
        # store_destination refused or failed: logged when it happened.
        exc = logged.exc
        status, comment = _failure_status(exc, store=True), error_comment(exc)
    except PeerDataError as bad:
        log.warning("C-STORE of %s from %s: %s", command.get("AffectedSOPInstanceUID"), info.calling_ae, bad)
        status, comment = bad.status, error_comment(bad)
    except Exception as exc:  # noqa: BLE001 - a handler fault becomes a failure status
        log.exception("C-STORE of %s failed", command.get("AffectedSOPInstanceUID"))
        status, comment = _failure_status(exc, store=True), error_comment(exc)
    # Our hold on the data set ends here: unless the handler kept it, the
    # assembler reuses its buffer for the next one (see dimse.assembler).
    message.dataset = None
    message_id = command.message_id or 0
    sop_class, sop_instance = command.get("AffectedSOPClassUID"), command.get("AffectedSOPInstanceUID")
    encoded = None if comment is not None else _store_rsp_bytes(message_id, sop_class, sop_instance, status)
    if encoded is not None:
        conn = assoc._conn
        now = time.monotonic()
        if (conn.is_established and now - started < _DEFER_SECONDS
                and (assoc._ready or conn.events_pending or conn.pdu_buffered)):
            # More requests were read with this one (an Asynchronous
            # Operations Window) and it was quick: queue the response and
            # answer them together -- one send instead of one per response; a
            # small C-STORE costs about as much to answer as to store. Only
            # requests already read count: everything queued goes out before
            # the association reads from the socket again
            # (SyncDriver.receive_event), so the peer's pipeline never stalls
            # on us (holding responses while more arrive made the peer wait
            # for a whole window: measured slower). Bounded: at most
            # _DEFER_MAX responses or _DEFER_SECONDS since the first; a
            # handler that takes longer than that answers at once (what is
            # done is not held back behind slow work).
            conn.send_pdata(message.context_id, True, encoded)
            since = assoc._deferred_since
            if since is None:
                assoc._deferred_since = since = now
                assoc._deferred = 0
            assoc._deferred += 1
            if assoc._deferred < _DEFER_MAX and now - since < _DEFER_SECONDS:
                return
            assoc._driver.flush()
        else:
            send_encoded(assoc, message.context_id, encoded, None, what="C-STORE-RSP", response=True)
        assoc._deferred_since = None
        return
    assoc._send_message(message.context_id, c_store_rsp(message_id, sop_class, sop_instance, status,
                                                        error_comment=comment))


# ------------------------------------------------------------------- C-FIND
class _CancelWatch:
    """Notices a C-CANCEL-RQ for one request without blocking (checked between
    matches). Other messages and events that arrive meanwhile are queued on the
    association for the server loop, in order."""

    def __init__(self, assoc: Association, message_id: int) -> None:
        self.assoc = assoc
        self.message_id = message_id
        self.gone = False
        sock = assoc._driver.sock
        self._poll: Any = None
        if sock is not None and hasattr(select, "poll"):
            self._poll = select.poll()
            self._poll.register(sock.fileno(), _POLLIN)

    def _readable(self) -> bool:
        sock = self.assoc._driver.sock
        if sock is None:
            return False
        # TLS: bytes OpenSSL already took from the socket and decrypted wait
        # inside the SSLSocket, where poll() cannot see them (a C-CANCEL-RQ
        # that came in the same TLS record as the request, say).
        pending = getattr(sock, "pending", None)
        if pending is not None and pending():
            return True
        if self._poll is not None:
            return bool(self._poll.poll(0))
        return bool(select.select([sock], [], [], 0)[0])

    def check(self) -> bool:
        """True once a C-CANCEL for our request arrived (or the association is gone)."""
        assoc = self.assoc
        driver = assoc._driver
        conn = driver.conn
        if self._readable():
            try:
                event: ev.Event | None = driver.receive_event(0.01)
            except ReadTimeout:      # part of a PDU so far: it stays buffered
                event = None
        else:
            event = conn.next_event()
        cancelled = False
        while event is not None:
            if type(event) is ev.PDataReceived:
                message = assoc._feed(event)
                if message is not None:
                    assoc._ready.append(message)
            else:
                assoc._ready.append(event)  # type: ignore[arg-type]  # the server loop sees it next
                if isinstance(event, (ev.Abort, ev.ConnectionClosed)):
                    self.gone = True
            event = conn.next_event()
        for item in list(assoc._ready):
            command = getattr(item, "command", None)
            if (command is not None and command.get("CommandField") == CommandField.C_CANCEL_RQ
                    and command.get("MessageIDBeingRespondedTo") == self.message_id):
                assoc._ready.remove(item)
                cancelled = True
        return cancelled or self.gone


def _match(item: Any) -> tuple[int, Dataset]:
    """A yielded match: a Dataset, a mapping (keyword -> value) or (status, either)."""
    status = st.PENDING
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], int):
        status, item = item
        if not st.is_pending(status):
            raise ValueError(f"on_find yielded status 0x{status:04X}; matches are Pending (0xFF00/0xFF01)")
    if isinstance(item, Dataset):
        return status, item
    if isinstance(item, Mapping):
        from dicomnet.dimse.scu import query_dataset

        return status, query_dataset(item)
    raise TypeError(f"on_find yielded {type(item).__name__}, not a Dataset")


# Pending responses are written in batches: one socket write carries up to
# _BATCH_MESSAGES responses or _BATCH_BYTES of identifiers, instead of a
# sendmsg per match. A match whose ``next()`` took longer than _SLOW_MATCH
# seconds (a slow handler, a database round trip) is written at once with
# those queued before it, so a slow handler's matches go out one by one.
_BATCH_MESSAGES = 64
_BATCH_BYTES = 64 * 1024
_SLOW_MATCH = 0.002


def handle_find(server: Server, assoc: Association, info: AssociationInfo, message: Message) -> None:
    """Answer one C-FIND-RQ: a Pending response per match, then the final one.

    The pending command set is the same for every match of one status, so it
    is encoded once; responses are sent in batches (see ``_BATCH_MESSAGES``),
    each P-DATA-TF still within the peer's maximum PDU length. A C-CANCEL-RQ
    is looked for once per batch (one ``poll`` per batch, not per match)."""
    command = message.command
    log = server.logger
    message_id = command.message_id or 0
    sop_class = command.get("AffectedSOPClassUID")
    context_id = message.context_id
    ctx = service_context(server, assoc, info, context_id, command)
    on_find = getattr(server.handler, "on_find", None)
    if on_find is None:
        assoc._send_message(context_id, c_find_rsp(message_id, sop_class, st.SOP_CLASS_NOT_SUPPORTED,
                                                   error_comment="this SCP has no C-FIND handler"))
        return
    final, comment = st.SUCCESS, None
    watch = _CancelWatch(assoc, message_id)
    matches: Iterator[Any] | None = None
    sent = 0
    batch = _FindBatch(assoc, context_id, message_id, sop_class, ctx.transfer_syntax)
    try:
        if message.dataset is None:
            raise QueryError("C-FIND-RQ without an Identifier", st.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS)
        query = read_peer_dataset(message, ctx.transfer_syntax, "Identifier", st.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS)
        results = on_find(ctx, query)
        matches = iter(results if results is not None else ())
        clock = time.perf_counter
        limit = 1                      # the first match goes out at once
        while True:
            if batch.count >= limit or batch.size >= _BATCH_BYTES:
                sent += batch.flush()
                limit = _BATCH_MESSAGES
                if watch.check():
                    ctx.cancelled = True
            if ctx.cancelled:
                break
            started = clock()
            try:
                item = next(matches)
            except StopIteration:
                break
            if clock() - started > _SLOW_MATCH:
                limit = 0              # a slow match: it and those before it go out now
            status, ds = _match(item)
            batch.add(status, encode_dataset(ds, ctx.transfer_syntax))
        # Matches produced before a cancel are still sent (PS3.4 C.4.1.3.2:
        # responses already under way may arrive before the Cancel).
        sent += batch.flush()
        if ctx.cancelled:
            final = st.CANCEL
    except _SendFailed as failed:
        _close(matches)
        assert failed.__cause__ is not None
        raise failed.__cause__
    except Exception as exc:  # noqa: BLE001 - a handler fault becomes a failure status
        if isinstance(exc, PeerDataError):
            log.warning("C-FIND %d from %s: %s", message_id, info.calling_ae, exc)
        elif isinstance(exc, QueryError):
            # The query's fault, named by the handler: no traceback (as C-MOVE and C-GET).
            log.info("C-FIND %d: %s", message_id, exc)
        else:
            log.exception("C-FIND handler failed")
        try:
            sent += batch.flush()          # the matches before the fault go out first
        except _SendFailed as failed:
            _close(matches)
            assert failed.__cause__ is not None
            raise failed.__cause__
        final, comment = _failure_status(exc, store=False), error_comment(exc)
    _close(matches)
    if watch.gone:
        log.info("association gone during C-FIND %d after %d match(es)", message_id, sent)
        return
    log.debug("C-FIND %d: %d match(es), final 0x%04X", message_id, sent, final)
    assoc._send_message(context_id, c_find_rsp(message_id, sop_class, final, error_comment=comment))


class _FindBatch:
    """Pending C-FIND responses queued on the Connection, written together.

    The identifiers are referenced, not copied, until :meth:`flush` writes
    them (they are fresh ``bytes``/``bytearray`` objects, or views of a data
    set the handler keeps alive)."""

    __slots__ = ("assoc", "context_id", "message_id", "sop_class", "commands", "count", "size", "_keep")

    def __init__(self, assoc: Association, context_id: int, message_id: int, sop_class: str | None,
                 transfer_syntax: str) -> None:
        self.assoc = assoc
        self.context_id = context_id
        self.message_id = message_id
        self.sop_class = sop_class
        self.commands: dict[int, bytes] = {}
        self.count = 0
        self.size = 0
        self._keep: list[Any] = []

    def add(self, status: int, data: Any) -> None:
        encoded = self.commands.get(status)
        if encoded is None:
            encoded = self.commands[status] = encode_command(c_find_rsp(self.message_id, self.sop_class, status))
        conn = self.assoc._conn
        if not conn.may_send_data:
            raise _SendFailed() from self._not_established()
        conn.send_pdata(self.context_id, True, encoded)
        conn.send_pdata(self.context_id, False, data)
        self._keep.append(data)
        self.count += 1
        self.size += len(data)

    def _not_established(self) -> BaseException:
        try:
            self.assoc._raise_not_established()
        except BaseException as exc:  # noqa: BLE001 - handed on as the cause
            return exc
        return RuntimeError("the association is not established")  # pragma: no cover

    def flush(self) -> int:
        """Write what is queued; the number of responses written."""
        count = self.count
        if not count:
            return 0
        try:
            self.assoc._driver.flush()
        except BaseException as exc:
            raise _SendFailed() from exc
        finally:
            self._keep.clear()
            self.count = self.size = 0
        return count


class _SendFailed(Exception):
    """Internal: sending a response failed (re-raised as its cause)."""


def _close(matches: Any) -> None:
    close = getattr(matches, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # noqa: BLE001 - the handler's cleanup failing changes nothing here
            pass
