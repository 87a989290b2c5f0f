"""The SCU side of C-STORE (PS3.4 B, PS3.7 9.1.1) and C-FIND (PS3.4 C, PS3.7 9.1.2).

:class:`~dicomnet.association.Association` exposes these as ``assoc.store(...)``
and ``assoc.find(...)``; the logic lives here so the association stays small.

C-STORE picks the presentation context and the bytes to send in
:func:`prepare_store`, which needs no socket and is tested on its own:

* a *path* is never decoded: only the File Meta group is indexed to learn
  the SOP Class/Instance and the transfer syntax, and the data set goes out
  as a ``memoryview`` of the file's bytes -- the Upper Layer slices it into
  PDVs and the driver hands the slices to ``sendmsg``. A file of more than
  1 MiB is an ``mmap`` (its pixel data never copied into Python memory); a
  smaller one is read with one ``read`` call, which costs less than mapping
  and unmapping it (measured on tmpfs: 8 KiB 5 vs 13 us, 512 KiB 40 vs 64 us);
* a :class:`~dicomnet.dicom.Dataset` goes out in its own transfer syntax when a
  context accepted it (an unmodified dataset encodes to a view of its source
  buffer, again without a copy), else it is transcoded among the native
  (uncompressed) syntaxes with :func:`~dicomnet.dicom.writer.encode_dataset`;
* anything else raises :class:`~dicomnet.errors.NoPresentationContext`.

C-FIND returns a :class:`FindResult`, an iterable of the matches as their
pending responses arrive. Leaving the ``for`` loop early (or calling
:meth:`FindResult.cancel`) sends C-CANCEL-RQ and reads up to the final
response, so the association can carry the next request.
"""
from __future__ import annotations

import logging
import mmap
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

from dicomnet._codec.elements import ElementIndex, dataset_uids, part10_meta
from dicomnet.dicom.dataset import SQ_TAGS, Dataset
from dicomnet.dicom.reader import _looks_explicit, _vr_matches_dictionary, read_dataset, read_file
from dicomnet.dicom.writer import encode_dataset
from dicomnet.dimse.commands import Command, CommandField, c_find_rq, c_store_rq, encode_command
from dicomnet.dimse.stream import ResponseStream
from dicomnet.errors import AssociationAborted, DicomParseError, DimseStatusError, NoPresentationContext
from dicomnet.types.status import is_failure, is_pending, is_warning, status_meaning
from dicomnet.types.transfer_syntax import transfer_syntax as _ts_info

if TYPE_CHECKING:
    from dicomnet.association import Association
    from dicomnet.pdu.negotiation import NegotiatedAssociation, NegotiatedContext

__all__ = ["FIND_MODELS", "PreparedStore", "prepare_store", "send_store", "send_stores", "FindResult", "start_find",
           "query_dataset"]

#: ``model=`` of :func:`start_find` -> the FIND SOP class (PS3.4 C.6.1, C.6.2, K.6.1).
FIND_MODELS: dict[str, str] = {
    "patient": "1.2.840.10008.5.1.4.1.2.1.1",   # Patient Root Q/R Information Model - FIND
    "study": "1.2.840.10008.5.1.4.1.2.2.1",     # Study Root Q/R Information Model - FIND
    "worklist": "1.2.840.10008.5.1.4.31",        # Modality Worklist Information Model - FIND
}

_MEDIA_SOP_CLASS = 0x00020002
_MEDIA_SOP_INSTANCE = 0x00020003
_TRANSFER_SYNTAX = 0x00020010
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
# Linux: MAP_POPULATE faults the whole file in with one call; the socket copy
# then runs without a page fault every 4 KiB (about twice as fast on tmpfs).
_MAP_ARGS: dict[str, int] = (
    {"flags": mmap.MAP_SHARED | mmap.MAP_POPULATE, "prot": mmap.PROT_READ}
    if hasattr(mmap, "MAP_POPULATE") else {"access": mmap.ACCESS_READ})
_READ_MAX = 1 << 20         # files up to this size are read, larger ones mapped
_MAX_WINDOW = 16            # C-STOREs outstanding at most (when the peer allows more, or any number)
_WINDOW_BYTES = 1 << 20     # ... and data set bytes outstanding beyond two, on a short path (see send_stores)
_PATH_RATE = 1.25e9         # bytes/s (10 Gbit/s): on a long path, what it holds in a round trip (window_bytes)
_REPLY_SPIN = 1e-3          # busy-poll budget while a C-STORE-RSP is due (see reply_spin)
_O_READ = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


# ------------------------------------------------------------------ C-STORE
def window_bytes(assoc: Any) -> int:
    """The data set bytes that may be out beyond two C-STOREs on ``assoc``:
    _WINDOW_BYTES, or more on a long path -- as much as a 10 Gbit/s path
    holds in the round trip the kernel measured (Linux; elsewhere
    _WINDOW_BYTES alone).

    The byte budget keeps data from queueing unread at a near receiver (see
    send_stores). Across a real distance the data in flight is on the way,
    not queued, and a window held to 1 MiB would cap the transfer at 1 MiB
    per round trip: 100 CT through a 10 ms delay line at 162 inst/s within
    1 MiB, 559 with the path's budget (the window of 8 out). From about 0.84 ms
    (1 MiB at 10 Gbit/s) the budget grows with the round trip; loopback
    measures 5-50 us, a LAN 0.1-0.5 ms."""
    measure = getattr(assoc._driver, "path_rtt", None)
    rtt = measure() if measure is not None else None
    if rtt is None:
        return _WINDOW_BYTES
    return max(_WINDOW_BYTES, int(rtt * _PATH_RATE))


def _window_open(count: int, window: int, out_bytes: int, nbytes: int, budget: int) -> bool:
    """Whether one more C-STORE of ``nbytes`` may go out while ``count``
    (``out_bytes`` of data sets) await their responses: within the
    Asynchronous Operations Window (``window`` >= 1), and beyond two also
    within ``budget`` bytes (:func:`window_bytes`; see send_stores). For
    store_many and for the C-MOVE and C-GET sub-operations of a Server alike."""
    return count < window and (count < 2 or out_bytes + nbytes <= budget)


@dataclass
class PreparedStore:
    """What :func:`send_store` puts on the wire: the context, the UIDs for the
    command and the data set bytes (already in the context's transfer syntax).

    ``dataset`` may be a memoryview of an ``mmap`` (``mapping``); call
    :meth:`close` once it has been sent. ``message_id`` and ``command`` (the
    encoded C-STORE-RQ) are set by :func:`send_stores`, which encodes the next
    request while the peer is still storing the previous one.
    """

    context: NegotiatedContext
    sop_class_uid: str
    sop_instance_uid: str
    dataset: Any
    source_transfer_syntax: str | None
    mapping: mmap.mmap | None = None
    message_id: int | None = None
    command: bytes | None = None

    @property
    def transcoded(self) -> bool:
        """True when the data set was re-encoded for the accepted transfer syntax."""
        return self.source_transfer_syntax != self.context.transfer_syntax

    def close(self) -> None:
        """Release the view and the file mapping (a no-op for in-memory data)."""
        if isinstance(self.dataset, memoryview):
            try:
                self.dataset.release()
            except BufferError:  # pragma: no cover - someone still holds a slice
                pass
        if self.mapping is not None:
            try:
                self.mapping.close()
            except BufferError:  # pragma: no cover - a slice is still exported; GC closes it
                pass
            self.mapping = None


def _native(uid: str | None) -> bool:
    """True for a transfer syntax we can transcode from/to (not encapsulated)."""
    if uid is None:
        return True
    try:
        return not _ts_info(uid).encapsulated
    except KeyError:
        return False


def _choose_context(negotiated: NegotiatedAssociation, sop_class: str, own: str | None,
                    wanted: str | None) -> NegotiatedContext:
    """The context to send in: ``wanted`` if given, else the data's own syntax
    ``own``, else the first accepted native syntax when ``own`` is native."""
    accepted = negotiated.scu_contexts.get(sop_class, ())
    if wanted is not None:
        for ctx in accepted:
            if ctx.transfer_syntax == wanted and (wanted == own or (_native(own) and _native(wanted))):
                return ctx
    else:
        for ctx in accepted:
            if own is not None and ctx.transfer_syntax == own:
                return ctx
        if _native(own):
            # Explicit VR LE first when there is a choice (keeps VRs as they are).
            for ctx in sorted(accepted, key=lambda c: c.transfer_syntax != _EXPLICIT_LE):
                if _native(ctx.transfer_syntax):
                    return ctx
    raise NoPresentationContext(sop_class, own, [c.transfer_syntax for c in accepted], wanted)


def _load(path: str, read_max: int, into: bytearray | None = None) -> mmap.mmap | bytes | memoryview:
    """The bytes of ``path``: read when at most ``read_max`` bytes (into
    ``into`` when it is large enough: a view of it), else a read-only mapping."""
    fd = os.open(path, _O_READ)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            raise DicomParseError(f"{path} is empty", offset=0)
        if size > read_max:
            return mmap.mmap(fd, 0, **_MAP_ARGS)
        if into is not None and size <= len(into):
            # A buffer whose pages are already there: a fresh ``bytes`` of a
            # few hundred KiB is new memory to fault in on every file.
            view = memoryview(into)[:size]
            got = 0
            while got < size:
                n = os.readv(fd, [view[got:]])
                if n == 0:
                    break
                got += n
            return view[:got]
        data = os.read(fd, size)
        while len(data) < size:         # short reads (not on regular local files, but allowed)
            more = os.read(fd, size - len(data))
            if not more:
                break
            data += more
        return data
    finally:
        os.close(fd)


def _release(mapping: mmap.mmap | bytes | memoryview) -> None:
    if isinstance(mapping, mmap.mmap):
        try:
            mapping.close()
        except BufferError:  # pragma: no cover - still exported somewhere; GC closes it
            pass


@overload
def _read_meta(path: str) -> tuple[mmap.mmap, int, Dataset | None]: ...
@overload
def _read_meta(path: str, read_max: int,
               into: bytearray | None = None) -> tuple[mmap.mmap | bytes | memoryview, int, Dataset | None]: ...


def _read_meta(path: str, read_max: int = -1, into: bytearray | None = None) -> tuple[Any, int, Dataset | None]:
    """Load ``path`` (see :func:`_load`; by default always mapped) and index
    only its File Meta group: (its bytes, offset of the data set, File Meta or None)."""
    return _index_meta(_load(path, read_max, into))


def _index_meta(mapping: mmap.mmap | bytes | memoryview) -> tuple[Any, int, Dataset | None]:
    """(``mapping``, offset of the data set, File Meta or None) -- see :func:`_read_meta`."""
    try:
        buf = memoryview(mapping)
        try:
            pos = 0
            if len(buf) >= 132 and buf[128:132] == b"DICM":
                pos = 132
            elif len(buf) >= 4 and buf[:4] == b"DICM":
                pos = 4
            if len(buf) - pos < 8 or buf[pos] != 0x02 or buf[pos + 1] != 0x00:
                return mapping, pos, None
            explicit = 65 <= buf[pos + 4] <= 90 and 65 <= buf[pos + 5] <= 90
        finally:
            buf.release()
        index = ElementIndex(mapping, pos, implicit=not explicit, little=True, only_group=0x0002)
        meta = Dataset._from_index(index, 0, len(index), None, _EXPLICIT_LE)
        return mapping, index.stop, meta
    except BaseException:
        _release(mapping)
        raise


def _dataset_uids(mapping: mmap.mmap | bytes | memoryview, offset: int, uid: str) -> tuple[str | None, str | None]:
    """SOP Class and Instance UID (0008,0016/0018) from the start of the data set;
    only the elements before (0008,0019) are indexed. (None, None) when the
    data set is deflated or cannot be read that far."""
    try:
        info = _ts_info(uid)
    except KeyError:
        return None, None
    if info.deflated or len(mapping) <= offset:
        return None, None
    try:
        index = ElementIndex(mapping, offset, implicit=info.implicit_vr, little=info.little_endian,
                             stop_tag=0x00080019, sq_tags=SQ_TAGS)
        head = Dataset._from_index(index, 0, len(index), None, uid)
        return _meta_text(head, 0x00080016), _meta_text(head, 0x00080018)
    except DicomParseError:
        return None, None


def _plain_head(mapping: mmap.mmap | bytes | memoryview) -> tuple[int, str, str, str] | None:
    """What :func:`prepare_store` reads of a file, for the plain case, in C
    (:func:`dicomnet._codec.elements.part10_meta` and ``dataset_uids``):
    (offset of the data set, SOP Class UID, SOP Instance UID, transfer
    syntax) -- the data set's own UIDs, else the File Meta's. None whenever
    anything is unusual (no preamble, a sequence or an unknown syntax before
    the UIDs, bytes that contradict the declared VR encoding, ...): then
    :func:`_read_head` reads it, and gives the same answer where both do."""
    meta = part10_meta(mapping)
    if meta is None:
        return None
    offset, sop_class, sop_instance, own = meta
    if not own:
        return None
    try:
        info = _ts_info(own)
    except KeyError:
        return None
    if not info.deflated:
        head = dataset_uids(mapping, offset, info.implicit_vr, info.little_endian, SQ_TAGS)
        if head is None:
            return None
        sop_class = head[0] or sop_class
        sop_instance = head[1] or sop_instance
    if not sop_class or not sop_instance:
        return None
    return offset, sop_class, sop_instance, own


def _read_head(mapping: mmap.mmap | bytes | memoryview) -> tuple[int, str | None, str | None, str | None] | None:
    """What :func:`prepare_store` reads of any file, the general way: (offset
    of the data set, SOP Class UID, SOP Instance UID, transfer syntax) -- the
    data set's own UIDs where its first elements give them, else the File
    Meta's; the syntax None when the File Meta names none, or names a VR
    encoding the data set's bytes contradict (then it must be decoded). None
    without a File Meta group; DicomParseError for an unreadable one."""
    mapping, offset, meta = _index_meta(mapping)
    if meta is None:
        return None
    sop_class = _meta_text(meta, _MEDIA_SOP_CLASS)
    sop_instance = _meta_text(meta, _MEDIA_SOP_INSTANCE)
    own = _meta_text(meta, _TRANSFER_SYNTAX)
    meta = None                     # its index holds a view of the bytes
    if own and not _encoding_as_declared(mapping, offset, own):
        own = None
    if own:
        # The command names the data set's own UIDs (as storescu does), read
        # from its first elements; the File Meta's are the fallback.
        head = _dataset_uids(mapping, offset, own)
        sop_class = head[0] or sop_class
        sop_instance = head[1] or sop_instance
    return offset, sop_class, sop_instance, own


def _relabel(ds: Dataset) -> None:
    """When :func:`read_file` had to read a data set in another VR encoding
    than its File Meta declares, label it with the syntax it is really in:
    ``encode_dataset`` returns the source bytes unchanged when asked for the
    labelled syntax, which would send them under the wrong one."""
    index = ds._index
    uid = ds.transfer_syntax
    if index is None or not uid:
        return
    try:
        info = _ts_info(uid)
    except KeyError:
        return
    if info.deflated or info.encapsulated or bool(index.implicit) == info.implicit_vr:
        return
    actual = _IMPLICIT_LE if index.implicit else (_EXPLICIT_LE if index.little else _EXPLICIT_BE)
    ds.__dict__["transfer_syntax"] = actual


def _encoding_as_declared(mapping: mmap.mmap | bytes | memoryview, offset: int, uid: str) -> bool:
    """False when the first element's bytes contradict the declared VR encoding
    (such files exist; :func:`read_file` then trusts the bytes, and so must we
    before sending them unchanged)."""
    try:
        info = _ts_info(uid)
    except KeyError:
        return False
    if info.deflated or len(mapping) - offset < 8:
        return True
    buf = memoryview(mapping)
    try:
        if buf[offset] == 0xFE and buf[offset + 1] == 0xFF:
            return True
        explicit_bytes = _looks_explicit(buf, offset)
        if not info.implicit_vr:
            return explicit_bytes
        return not (explicit_bytes and _vr_matches_dictionary(buf, offset, info.little_endian))
    finally:
        buf.release()


def _meta_text(meta: Dataset, tag: int) -> str | None:
    """A UID of ``meta`` as text, None when absent, empty or not one text
    value (a damaged file may give it a binary VR, or several values)."""
    if tag not in meta:
        return None
    value = meta._value(tag)
    if not isinstance(value, str):
        return None
    return value.strip("\0 ") or None


def prepare_store(negotiated: NegotiatedAssociation, source: Dataset | str | os.PathLike[str], *,
                  transfer_syntax: str | None = None, buffer: bytearray | None = None) -> PreparedStore:
    """Choose the context and the bytes for one C-STORE (see the module docstring).

    ``buffer``: a bytearray a small file may be read into (the data set is
    then a view of it): the caller must leave it alone until the
    PreparedStore is closed. :func:`send_stores` reuses one for every file.

    Raises :class:`NoPresentationContext` when no accepted context can carry
    the data set, :class:`DicomParseError` for an unreadable file and
    ``ValueError`` when the SOP Class or Instance UID is missing.
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        loaded = _load(path, _READ_MAX, buffer)
        keep = False
        try:
            # The usual file is read in one pass in C (_plain_head), anything
            # else the general way (_read_head): the same answer either way.
            head = _plain_head(loaded) or _read_head(loaded)
            offset, sop_class, sop_instance, own = head if head is not None else (0, None, None, None)
            if sop_class and sop_instance and own:
                ctx = _choose_context(negotiated, sop_class, own, transfer_syntax)
                if ctx.transfer_syntax == own:
                    # Zero copy: the data set is everything after the File Meta,
                    # sent as a view of the bytes (the mapping is closed by PreparedStore.close).
                    keep = True
                    return PreparedStore(ctx, sop_class, sop_instance, memoryview(loaded)[offset:],
                                         own, loaded if isinstance(loaded, mmap.mmap) else None)
        finally:
            if not keep:
                _release(loaded)
        # No usable File Meta, or the data set must be transcoded: decode it.
        source = read_file(path)
        _relabel(source)
    if not isinstance(source, Dataset):
        raise TypeError(f"store() takes a Dataset or a path, not {type(source).__name__}")
    ds = source
    meta = ds.file_meta
    sop_class = str(ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta else "") or "")
    sop_instance = str(ds.get("SOPInstanceUID") or (meta.get("MediaStorageSOPInstanceUID") if meta else "") or "")
    if not sop_class or not sop_instance:
        raise ValueError("the data set has no SOP Class UID / SOP Instance UID to store it under")
    own = ds.transfer_syntax
    ctx = _choose_context(negotiated, sop_class, own, transfer_syntax)
    data = encode_dataset(ds, ctx.transfer_syntax)
    return PreparedStore(ctx, sop_class, sop_instance, data, own)


def send_store(assoc: Association, source: Dataset | str | os.PathLike[str], *,
               transfer_syntax: str | None = None, timeout: float | None = None,
               priority: int = 0, move_originator_ae: str | None = None,
               move_originator_message_id: int | None = None) -> int:
    """One C-STORE on ``assoc``: the response status.

    A failure status raises :class:`DimseStatusError`; a warning is logged and
    returned.
    """
    _finish_open_operation(assoc)
    prepared = prepare_store(assoc.negotiated, source, transfer_syntax=transfer_syntax)
    message_id = _send_prepared(assoc, prepared, priority, move_originator_ae, move_originator_message_id)
    status, comment = _store_response(assoc, message_id, timeout, prepared.sop_instance_uid)
    if is_failure(status):
        raise DimseStatusError(status, status_meaning(status, "storage"), comment)
    return status


def send_stores(assoc: Association, sources: Iterable[Dataset | str | os.PathLike[str]], *,
                transfer_syntax: str | None = None, timeout: float | None = None,
                priority: int = 0) -> Iterator[tuple[Any, int, str | None]]:
    """C-STORE each of ``sources`` in turn; yields ``(source, status, error comment)``.

    Without an Asynchronous Operations Window (PS3.7 D.3.3.3) operations stay
    one at a time, but the next source is prepared -- its file read and its
    C-STORE-RQ encoded -- while the peer is still storing the previous one.
    When the association negotiated a window (``Client.associate(...,
    async_operations=N)`` with a peer that accepts it), up to that many
    requests are outstanding: the next data sets go out while the peer is
    still storing the first, and the results are yielded as the responses
    arrive. A failure status is yielded, not raised (the rest are still
    sent); an instance that no accepted context can carry raises
    :class:`NoPresentationContext` once the responses to the requests already
    sent are in. Leaving the loop early still reads those responses, so the
    association stays usable.
    """
    _finish_open_operation(assoc)
    window = assoc.negotiated.max_invoked
    window = _MAX_WINDOW if window <= 0 else min(window, _MAX_WINDOW)
    # (Consulted beyond two requests only: a window of one or two asks the socket nothing.)
    budget = window_bytes(assoc) if window > 2 else _WINDOW_BYTES
    it = iter(sources)
    pending: tuple[Any, PreparedStore] | None = None
    in_flight: dict[int, tuple[Any, str]] = {}     # message ID -> (source, SOP Instance UID)
    sizes: dict[int, int] = {}                      # message ID -> data set bytes, while in flight
    error: BaseException | None = None

    # Files up to _READ_MAX are read into this one buffer: one request is
    # prepared at a time, and the previous one has been written to the socket
    # (the kernel holds its copy) before the next is read.
    buffer = bytearray()

    def prepare(source: Any) -> PreparedStore:
        # Everything but the write: the file read, the context, the Message ID
        # and the encoded command set, so that once the previous response is
        # in the next request only has to be handed to the socket.
        if not buffer and isinstance(source, (str, os.PathLike)):
            buffer.extend(bytes(_READ_MAX))
        prepared = prepare_store(assoc.negotiated, source, transfer_syntax=transfer_syntax, buffer=buffer)
        try:
            message_id = assoc._next_message_id()
            prepared.command = encode_command(c_store_rq(message_id, prepared.sop_class_uid,
                                                         prepared.sop_instance_uid, priority))
            prepared.message_id = message_id
        except BaseException:
            prepared.close()
            raise
        return prepared

    try:
        for first in it:
            pending = (first, prepare(first))
            break
        while pending is not None or in_flight:
            # Within the window; beyond two requests also within the byte budget
            # (window_bytes: 1 MiB unless the path is long): two CT-sized
            # instances (0.5 MB) in flight, small ones up to the whole window.
            # More only queue up unread at the peer (on a short path):
            # its receive buffer fills, each of its reads then sends the
            # window update that pushes our queued segments in its own context
            # (loopback), and it copies data gone cold. Measured on 2 CPUs
            # (kernel 6.18, loopback, 500 CT to files, 10 interleaved rounds):
            # 2,936 inst/s with two in flight, 2,094 with three, 1,734 with
            # four; CPU per instance 0.33/0.35 ms (SCU/SCP) against 0.45/0.46
            # with three. (An earlier machine had three 3% ahead of two.)
            while pending is not None and _window_open(len(in_flight), window, sum(sizes.values()),
                                                       _nbytes(pending[1].dataset), budget):
                source, prepared = pending
                pending = None
                uid, size = prepared.sop_instance_uid, _nbytes(prepared.dataset)
                message_id = _send_prepared(assoc, prepared, priority, None, None)
                in_flight[message_id] = (source, uid)
                sizes[message_id] = size
                try:
                    for following in it:      # overlaps with the peer's work on what was sent
                        pending = (following, prepare(following))
                        break
                except Exception as exc:  # noqa: BLE001 - raised once the responses are in
                    error = exc
            message_id, status, comment = _next_store_response(assoc, in_flight, timeout)
            source, _ = in_flight.pop(message_id)
            sizes.pop(message_id, None)
            yield source, status, comment
            if error is not None and not in_flight:
                raise error
    finally:
        if pending is not None:
            pending[1].close()
        if in_flight and assoc.is_established:
            # Left early: read what the peer still answers, so that the
            # association can carry the next request.
            try:
                while in_flight:
                    in_flight.pop(_next_store_response(assoc, in_flight, timeout)[0])
            except Exception:  # noqa: BLE001 - the receive path aborted the association already
                assoc._log.debug("C-STORE responses left unread: the association is gone")


def _send_prepared(assoc: Association, prepared: PreparedStore, priority: int,
                   move_originator_ae: str | None, move_originator_message_id: int | None) -> int:
    """Send one prepared C-STORE-RQ and its data set; returns its message ID."""
    try:
        if prepared.transcoded:
            assoc._log.debug("C-STORE %s: transcoding %s -> %s", prepared.sop_instance_uid,
                             prepared.source_transfer_syntax, prepared.context.transfer_syntax)
        if prepared.command is not None and prepared.message_id is not None:
            message_id = prepared.message_id
            send_encoded(assoc, prepared.context.context_id, prepared.command, prepared.dataset,
                         what="C-STORE-RQ")
            return message_id
        message_id = assoc._next_message_id()
        rq = c_store_rq(message_id, prepared.sop_class_uid, prepared.sop_instance_uid, priority,
                        move_originator_ae, move_originator_message_id)
        assoc._send_message(prepared.context.context_id, rq, prepared.dataset)
    finally:
        prepared.close()
    return message_id


def send_encoded(assoc: Association, context_id: int, command: bytes, dataset: Any, *, what: str,
                 response: bool = False) -> None:
    """``assoc._send_message`` for a command set that is already encoded (the
    C-STORE hot path builds its command bytes ahead of time). ``dataset``
    (bytes-like or None) must agree with the command's CommandDataSetType.
    A ``response`` may still go out once the peer asked to release (Sta8)."""
    conn = assoc._conn
    if not (conn.is_established or (response and conn.may_send_data)):
        assoc._raise_not_established()
    if assoc._log.isEnabledFor(logging.DEBUG):
        assoc._log.debug("-> %s on context %d%s", what, context_id,
                         "" if dataset is None else f" + data set of {len(memoryview(dataset).cast('B'))} bytes")
    conn.send_pdata(context_id, True, command)
    if dataset is not None:
        conn.send_pdata(context_id, False, dataset)
    assoc._driver.flush()


@contextmanager
def reply_spin(assoc: Association) -> Iterator[None]:
    """While a C-STORE-RSP is awaited: the wait busy-polls up to
    ``_REPLY_SPIN`` (when the association busy-polls at all, see
    :class:`dicomnet.transport.sync.SyncDriver`) instead of its usual budget.

    A storage SCP answers within about the time it takes to store the data
    set: for a CT image a few hundred microseconds, past the usual 50 us,
    so the reader slept and the peer's send had to wake it -- CPU the peer
    spends for us on every response (about 15 us of a 300 us CT store on this
    machine) and a wake-up's latency on ours. The spin still stops for good
    after two waits it does not shorten, and at once when the CPU is wanted
    elsewhere.
    """
    driver = assoc._driver
    budget = driver.busy_poll
    if not 0 < budget < _REPLY_SPIN:
        yield
        return
    driver.busy_poll = _REPLY_SPIN
    try:
        yield
    finally:
        driver.busy_poll = budget


def _nbytes(data: Any) -> int:
    return data.nbytes if isinstance(data, memoryview) else len(memoryview(data).cast("B"))


def _next_store_response(assoc: Association, in_flight: Mapping[int, tuple[Any, str]],
                         timeout: float | None) -> tuple[int, int, str | None]:
    """Read the next C-STORE-RSP, which must answer one of the ``in_flight``
    message IDs (in any order): (that ID, status, ErrorComment)."""
    if len(in_flight) == 1:
        message_id, (_, uid) = next(iter(in_flight.items()))
        return (message_id, *_store_response(assoc, message_id, timeout, uid))
    with reply_spin(assoc):
        command = assoc._receive_message(timeout).command
        while assoc._late_response(command, in_flight):
            command = assoc._receive_message(timeout).command
    answered: int = command.get("MessageIDBeingRespondedTo", -1)
    if command.get("CommandField") != CommandField.C_STORE_RSP or answered not in in_flight:
        assoc.abort()
        raise AssociationAborted(description=f"expected a C-STORE-RSP to one of messages "
                                             f"{sorted(in_flight)}, got {command!r}")
    return (answered, *_store_status(assoc, command, in_flight[answered][1]))


def _store_response(assoc: Association, message_id: int, timeout: float | None,
                    sop_instance_uid: str) -> tuple[int, str | None]:
    """Read the C-STORE-RSP to ``message_id``: (status, ErrorComment); warnings logged."""
    with reply_spin(assoc):
        rsp = assoc._receive_response(message_id, timeout)
    if rsp.get("CommandField") != CommandField.C_STORE_RSP:
        assoc.abort()
        raise AssociationAborted(description=f"expected a C-STORE-RSP, got {rsp!r}")
    return _store_status(assoc, rsp, sop_instance_uid)


def _store_status(assoc: Association, rsp: Command, sop_instance_uid: str) -> tuple[int, str | None]:
    status = rsp.status
    comment = rsp.get("ErrorComment")
    if status is None:
        return 0xC000, "C-STORE-RSP without a Status"
    if is_warning(status):
        assoc._log.warning("C-STORE of %s: status 0x%04X (%s)%s", sop_instance_uid, status,
                           status_meaning(status, "storage"), f": {comment}" if comment else "")
    return status, comment


# ------------------------------------------------------------------- C-FIND
def query_dataset(query: Dataset | Mapping[str, Any]) -> Dataset:
    """A query Identifier from a Dataset (returned as is) or a mapping of
    keyword (or tag) -> value; None or "" asks for the attribute (universal match)."""
    if isinstance(query, Dataset):
        return query
    if not isinstance(query, Mapping):
        raise TypeError(f"a query is a Dataset or a mapping of keyword -> value, not {type(query).__name__}")
    ds = Dataset()
    for key, value in query.items():
        ds.set(key, value)
    return ds


def _find_sop_class(model: str) -> str:
    uid = FIND_MODELS.get(model.lower()) if isinstance(model, str) else None
    if uid is not None:
        return uid
    if isinstance(model, str) and model[:1].isdigit():
        return model                       # a FIND SOP class UID given directly
    raise ValueError(f"model must be one of {sorted(FIND_MODELS)} or a FIND SOP Class UID, not {model!r}")


def _finish_open_operation(assoc: Association) -> None:
    """A C-FIND left unfinished on ``assoc`` (its loop was left while the
    iterator was still referenced) is cancelled and drained first."""
    pending = getattr(assoc, "_open_find", None)
    if pending is not None:
        if assoc.is_established:
            pending.cancel()
        else:
            assoc._open_find = None  # type: ignore[attr-defined]  # gone with the association


class FindResult(ResponseStream):
    """The matches of one C-FIND, as they arrive (iterate once).

    ``status`` is the final status once the responses are exhausted (None
    before). A failure status raises :class:`DimseStatusError` from the
    iteration; Cancel (0xFE00) after :meth:`cancel` ends it quietly.
    Leaving a ``for`` loop early cancels the query (C-CANCEL-RQ) and reads the
    remaining responses, so the association stays usable.
    """

    _service = "find"

    def __init__(self, assoc: Association, context: NegotiatedContext, message_id: int,
                 timeout: float | None) -> None:
        super().__init__(assoc, context, message_id, timeout)
        self.matches = 0

    def __iter__(self) -> Iterator[Dataset]:
        return super().__iter__()

    def _step(self) -> Dataset | None:
        """Read one C-FIND-RSP: the match of a pending one, None for the final one."""
        assoc = self._assoc
        message = assoc._receive_message(self.timeout)
        command = message.command
        if (command.get("CommandField") != CommandField.C_FIND_RSP
                or command.get("MessageIDBeingRespondedTo") != self.message_id):
            if assoc._late_response(command, (self.message_id,)):
                return None
            assoc.abort()
            self._done = True
            raise AssociationAborted(description=f"expected a C-FIND-RSP to message {self.message_id}, "
                                                 f"got {command!r}")
        status = command.status
        if status is None:
            status = 0xC000
        if is_pending(status):
            if message.dataset is None:
                assoc._log.warning("pending C-FIND-RSP without an Identifier; skipped")
                return None
            self.matches += 1
            return read_dataset(message.dataset, transfer_syntax=self.context.transfer_syntax)
        self._finish(status, command.get("ErrorComment"))
        if is_failure(status) and not self.cancelled:
            raise DimseStatusError(status, status_meaning(status, "find"), self.error_comment)
        if is_warning(status):
            assoc._log.warning("C-FIND final status 0x%04X (%s)", status, status_meaning(status, "find"))
        return None

    def _finish(self, status: int, comment: str | None) -> None:
        self.status = status
        self.error_comment = comment
        self._done = True
        if getattr(self._assoc, "_open_find", None) is self:
            self._assoc._open_find = None  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        state = f"status 0x{self.status:04X}" if self.status is not None else "in progress"
        return f"<FindResult message {self.message_id}, {self.matches} match(es), {state}>"


def start_find(assoc: Association, query: Dataset | Mapping[str, Any], *, model: str = "study",
               timeout: float | None = None, priority: int = 0) -> FindResult:
    """Send a C-FIND-RQ on ``assoc`` and return the :class:`FindResult` to iterate."""
    _finish_open_operation(assoc)
    sop_class = _find_sop_class(model)
    identifier = query_dataset(query)
    ctx = assoc.context_for(sop_class)
    data = encode_dataset(identifier, ctx.transfer_syntax)
    message_id = assoc._next_message_id()
    assoc._send_message(ctx.context_id, c_find_rq(message_id, sop_class, priority), data)
    result = FindResult(assoc, ctx, message_id, timeout)
    assoc._open_find = result  # type: ignore[attr-defined]
    return result

