"""DIMSE messages from P-DATA values (PS3.7 9.1 and 6.3.1, PS3.8 9.3.5 and Annex E).

A DIMSE message is a command set, optionally followed by a data set, each sent
as one or more PDVs on one presentation context. The Message Control Header of
every PDV (PS3.8 E.2) says whether it carries command or data set bytes and
whether it is the last fragment of that part. :class:`MessageAssembler` takes
the PDVs of :class:`dicomnet.pdu.events.PDataReceived` one by one and returns
a :class:`Message` when one is complete.

Buffer ownership: the ``data`` handed to :meth:`MessageAssembler.feed` is a
view of the Upper Layer's receive buffer that is only valid during the call,
so its bytes are copied exactly once -- into a small command buffer, or into
the one growable buffer of the data set (doubled as it fills, never a list of
fragments joined at the end; from 256 KiB on an anonymous memory map faulted
in with one call), or straight into a streaming sink. A completed
:class:`Message` owns its data set buffer. The assembler remembers that
buffer (up to 8 MiB) and reuses it for the next data set only once nothing
else refers to it -- no Message, view, Dataset or array (its reference count
says so; every buffer consumer holds a reference to the exporter) -- so a
receiver that drops each data set after handling it (``handle_store`` does)
copies the next one into memory that is already mapped, instead of mapping,
zero-filling and faulting in a fresh buffer per message.

Sending needs no counterpart here: the Upper Layer fragments a whole part to
the peer's maximum PDU length, so a message goes out as::

    connection.send_pdata(context_id, True, encode_command(command))
    if dataset_bytes is not None:
        connection.send_pdata(context_id, False, dataset_bytes)
"""

from __future__ import annotations

import logging
import mmap
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from dicomnet.dimse.commands import Command, decode_command
from dicomnet.errors import DicomParseError, PDUError

__all__ = ["Message", "MessageAssembler", "Writable", "SinkFactory"]

_log = logging.getLogger("dicomnet")

# Command sets are a few hundred bytes; anything far larger is not a command.
DEFAULT_MAX_COMMAND_BYTES = 1 << 16
# The first allocation of a data set buffer when its size is not known.
_FIRST_CAPACITY = 1 << 16
# Data set buffers from this size on are anonymous memory maps pre-faulted in
# one call (Linux MAP_POPULATE) rather than bytearrays: a fresh bytearray is
# zero-filled and then faults in page by page as it is written, which costs
# more than the copy itself (measured: 512 KiB in 0.29 ms vs 0.20 ms).
_MAP_MIN = 1 << 18
# Largest PDV placed directly (direct_target). Its length is the peer's
# claim, and the buffer is sized for it before the bytes come: beyond this
# (possible only when we advertise no maximum PDU length) the PDV is read the
# usual way, where memory grows with the bytes that actually arrive.
_DIRECT_MAX = 8 << 20
# Largest completed buffer kept for reuse (per assembler, i.e. per association).
_SPARE_MAX = 8 << 20
# A data set that arrives in several fragments and finds no buffer to reuse
# (the caller kept the last one) starts in a buffer of the previous data
# set's size -- instances of a series are alike -- rather than twice its
# first fragment, grown by doubling and trimmed: one pre-faulted map instead
# of a map, two remaps, page faults one by one and a trim. Measured, storescu
# sending 500 CT to a Server whose on_store keeps every data set, 10
# interleaved rounds, twice: 1,245 -> 1,519 and 1,313 -> 1,522 inst/s, server
# CPU 0.63 -> 0.52 and 0.59 -> 0.51 ms per instance (a handler that drops
# the data set reuses its buffer instead). Only when the guess is at most
# this many times the first fragment (and _SPARE_MAX), so a wrong guess
# costs little.
_GUESS_MAX_RATIO = 8
_MAP_FLAGS = (mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE
              if hasattr(mmap, "MAP_POPULATE") and hasattr(mmap, "MAP_ANONYMOUS") else 0)


def _new_buffer(size: int) -> bytearray | mmap.mmap:
    """A writable buffer of ``size`` bytes for a data set (see _MAP_MIN)."""
    if _MAP_FLAGS and size >= _MAP_MIN:
        try:
            return mmap.mmap(-1, size, flags=_MAP_FLAGS)
        except OSError:  # pragma: no cover - out of address space / map count: use the heap
            pass
    return bytearray(size)


#: A fresh data set buffer of ``size`` bytes, as the assembler makes them (for
#: :meth:`MessageAssembler.reserve`).
new_buffer = _new_buffer


def _grow(buf: bytearray | mmap.mmap, size: int, used: int) -> bytearray | mmap.mmap:
    """``buf`` enlarged to ``size`` bytes, its first ``used`` bytes kept. Never
    called while a view of ``buf`` is exported (the assembler exports only
    completed data sets)."""
    if isinstance(buf, mmap.mmap):
        buf.resize(size)                # mremap: the pages move, nothing is copied
        return buf
    if _MAP_FLAGS and size >= _MAP_MIN:
        bigger = _new_buffer(size)
        if isinstance(bigger, mmap.mmap):
            bigger[:used] = memoryview(buf)[:used]
            return bigger
    # Grow in place: bytes(k) is zeroed memory, and a large bytearray is
    # resized by realloc, which need not copy what is already there.
    buf += bytes(size - len(buf))
    return buf


class Writable(Protocol):
    """A binary file-like object a data set can be streamed to."""

    def write(self, data: Any, /) -> Any: ...


SinkFactory = Callable[[Command], "Writable | None"]


@dataclass(slots=True)
class Message:
    """One complete DIMSE message.

    ``dataset`` is a memoryview of the data set bytes (encoded in the
    presentation context's transfer syntax), or None when the command says no
    data set follows or when the data set was streamed to ``sink``.
    """

    context_id: int
    command: Command
    dataset: memoryview | None = None
    sink: Writable | None = None


class MessageAssembler:
    """Collects PDVs into :class:`Message` objects (sans-IO; see the module docstring).

    Protocol violations raise :class:`~dicomnet.errors.PDUError`, after which the
    association should be aborted (the assembler is reset). A command set that
    cannot be decoded raises PDUError too, with the
    :class:`~dicomnet.errors.DicomParseError` as its cause.

    ``max_dataset_bytes`` bounds a data set held in memory; a data set streamed
    to a sink is not bounded here (the sink decides what it accepts).
    """

    def __init__(self, max_dataset_bytes: int | None = None, *,
                 max_command_bytes: int = DEFAULT_MAX_COMMAND_BYTES) -> None:
        if max_dataset_bytes is not None and max_dataset_bytes < 0:
            raise ValueError("max_dataset_bytes must be >= 0 or None")
        self.max_dataset_bytes = max_dataset_bytes
        self.max_command_bytes = max_command_bytes
        self._sink_factory: SinkFactory | None = None
        # The last completed data set's buffer, reused once nobody else holds it.
        self._spare: bytearray | mmap.mmap | None = None
        self._last_size = 0     # the last data set held in memory: the next one's size guess
        self._reset()
        # Context and command of the last message that completed without a
        # data set, to name the fault if data set PDVs follow it anyway.
        self._last_without_dataset: tuple[int, Command] | None = None

    # ------------------------------------------------------------ state

    def _reset(self) -> None:
        self._direct: memoryview | None = None  # handed out by direct_target, not yet fed back
        self._context_id: int | None = None     # None: between messages
        self._command_buf = bytearray()
        self._command: Command | None = None    # set once the command set is complete
        self._data: bytearray | mmap.mmap | None = None
        self._size = 0                          # data set bytes received
        self._sink: Writable | None = None

    def reset(self) -> None:
        """Drop a partly received message (e.g. after an abort); the streaming
        sink of that message, if any, is discarded (its temporary file goes)."""
        discard = getattr(self._sink, "discard", None)
        self._reset()
        self._last_without_dataset = None
        if discard is not None:
            discard()

    @property
    def in_progress(self) -> bool:
        """True while a message has started but not completed."""
        return self._context_id is not None

    def set_sink(self, factory: SinkFactory | None) -> None:
        """Stream data sets instead of buffering them.

        Once a command set that announces a data set is complete, ``factory`` is
        called with the :class:`Command`; when it returns a writable file the data
        set fragments are written to it as they arrive and the :class:`Message`
        carries ``sink`` instead of ``dataset``. Returning None keeps that data
        set in memory. ``None`` removes the factory.
        """
        self._sink_factory = factory

    def reserve(self, nbytes: int, buffer: bytearray | mmap.mmap | None = None) -> None:
        """Pre-size the data set buffer of the message in progress.

        For a caller that knows how large the data set will be; the buffer still
        grows if more arrives. Beyond ``max_dataset_bytes`` it is a PDUError (and
        the message in progress is dropped, as for any violation). ``buffer``:
        one made beforehand with :func:`new_buffer` (e.g. while waiting for the
        message), taken over instead of a new one -- the caller keeps no
        reference to it.
        """
        if self._command is None or self._sink is not None:
            return
        try:
            self._check_limit(nbytes)
        except PDUError:
            self._reset()
            raise
        if self._data is None:
            if buffer is not None and len(buffer) >= nbytes:
                self._data = buffer
            else:
                self._data = self._take_spare()
        if self._data is None:
            self._data = _new_buffer(nbytes)
        elif nbytes > len(self._data):
            self._data = _grow(self._data, nbytes, self._size)

    def direct_target(self, context_id: int, is_last: bool, nbytes: int) -> memoryview | None:
        """Where the next ``nbytes`` data set bytes of the message in progress
        go: a writable view of the data set buffer at its current end (grown
        to fit), for the Upper Layer to receive them into
        (:meth:`dicomnet.pdu.connection.Connection.set_payload_router`). The
        PDV then comes to :meth:`feed` with that view as its data, which
        costs no copy. None -- the PDV comes the usual way, and is checked
        there -- unless a data set is due on ``context_id`` and held in memory
        within ``max_dataset_bytes``, and the PDV is at most 8 MiB (its length
        is only the peer's claim until the bytes come).
        """
        if (self._command is None or self._context_id != context_id or self._sink is not None
                or self._direct is not None or nbytes > _DIRECT_MAX):
            return None
        end = self._size + nbytes
        limit = self.max_dataset_bytes
        if limit is not None and end > limit:
            return None
        try:
            buf = self._room(end, is_last)
        except BufferError:     # a view of the buffer is still alive: it cannot grow now
            return None
        view = self._direct = memoryview(buf)[self._size:end]
        return view

    # ------------------------------------------------------------ input

    def feed(self, context_id: int, is_command: bool, is_last: bool,
             data: bytes | bytearray | memoryview) -> Message | None:
        """Take one PDV; return the :class:`Message` it completes, else None."""
        try:
            if is_command:
                return self._feed_command(context_id, is_last, data)
            return self._feed_dataset(context_id, is_last, data)
        except PDUError:
            self._reset()
            raise

    def _start_or_check_context(self, context_id: int) -> None:
        if self._context_id is None:
            self._context_id = context_id
            self._last_without_dataset = None
        elif context_id != self._context_id:
            # PS3.8 9.3.5 / PS3.7 9.1: a message's PDVs all use one presentation
            # context, and messages are not interleaved.
            raise PDUError(
                f"PDV on presentation context {context_id} in the middle of a message "
                f"on context {self._context_id}")

    def _feed_command(self, context_id: int, is_last: bool,
                      data: bytes | bytearray | memoryview) -> Message | None:
        self._start_or_check_context(context_id)
        if self._command is not None:
            raise PDUError("command fragment after the last command fragment of the message")
        if not self._command_buf and is_last:
            source: bytes | bytearray | memoryview = data     # one PDV: decode in place
        else:
            if len(self._command_buf) + len(data) > self.max_command_bytes:
                raise PDUError(f"command set longer than {self.max_command_bytes} bytes")
            self._command_buf += data
            if not is_last:
                return None
            source = self._command_buf
        if len(source) > self.max_command_bytes:
            raise PDUError(f"command set longer than {self.max_command_bytes} bytes")
        try:
            command = decode_command(source)
        except DicomParseError as exc:
            raise PDUError(f"undecodable command set: {exc}") from exc
        self._command_buf = bytearray()
        if not command.has_dataset:
            message = Message(context_id, command)
            self._reset()
            self._last_without_dataset = (context_id, command)
            return message
        self._command = command
        if self._sink_factory is not None:
            self._sink = self._sink_factory(command)
        return None

    def _feed_dataset(self, context_id: int, is_last: bool,
                      data: bytes | bytearray | memoryview) -> Message | None:
        if self._context_id is None:
            last = self._last_without_dataset
            if last is not None and last[0] == context_id:
                raise PDUError(f"data set PDV after {last[1]!r}, whose CommandDataSetType "
                               "says no data set follows")
            raise PDUError("data set PDV before any command set")
        self._start_or_check_context(context_id)
        if self._command is None:
            raise PDUError("data set PDV before the command set is complete")
        n = len(data)
        if data is self._direct and data is not None:
            # Received in place (direct_target): only the count moves. The
            # view is released so the buffer can be trimmed or grown.
            self._direct = None
            data.release()
            self._size += n
        elif self._sink is not None:
            self._sink.write(data)
            self._size += n
        else:
            self._append(data, n, is_last)
        if not is_last:
            return None
        message = Message(context_id, self._command)
        if self._sink is not None:
            message.sink = self._sink
        else:
            buf = self._data if self._data is not None and self._size else bytearray()
            dataset = None
            if len(buf) > self._size:
                # Give back the spare capacity (mremap / realloc: no copy).
                try:
                    if isinstance(buf, mmap.mmap):
                        buf.resize(self._size)
                    else:
                        del buf[self._size:]
                except BufferError:
                    # A view of it is still alive (a receive window kept past
                    # its read): keep the capacity, and the buffer is not reused.
                    dataset = memoryview(buf)[:self._size]
            message.dataset = memoryview(buf) if dataset is None else dataset
            self._last_size = self._size
            if dataset is None and 0 < len(buf) <= _SPARE_MAX:
                self._spare = buf
        _log.debug("DIMSE message complete: %r, %d data set bytes", message.command, self._size)
        self._reset()
        return message

    def _take_spare(self) -> bytearray | mmap.mmap | None:
        """The previous data set's buffer if nothing but the assembler refers
        to it any more (then no view of it exists either), else None."""
        spare, self._spare = self._spare, None
        # Two references: `spare` and getrefcount's own argument.
        if spare is None or sys.getrefcount(spare) > 2:
            return None
        return spare

    def _check_limit(self, size: int) -> None:
        limit = self.max_dataset_bytes
        if limit is not None and size > limit:
            raise PDUError(f"data set larger than max_dataset_bytes ({limit})")

    def _append(self, data: bytes | bytearray | memoryview, n: int, is_last: bool) -> None:
        end = self._size + n
        self._check_limit(end)
        buf = self._room(end, is_last)
        buf[self._size:end] = data
        self._size = end

    def _room(self, end: int, is_last: bool) -> bytearray | mmap.mmap:
        """The data set buffer, with room for ``end`` bytes."""
        buf = self._data
        if buf is None:
            buf = self._data = self._take_spare()
        if buf is None:
            # The first fragment: exact when it is also the last, else room to
            # grow -- or the previous data set's size (see _GUESS_MAX_RATIO).
            n = end - self._size
            size = end if is_last else max(_FIRST_CAPACITY, 2 * n)
            last = self._last_size
            if not is_last and size < last <= min(_SPARE_MAX, _GUESS_MAX_RATIO * n):
                size = last
                if self.max_dataset_bytes is not None:
                    size = min(size, max(end, self.max_dataset_bytes))
            buf = self._data = _new_buffer(size)
        elif end > len(buf):
            capacity = max(end, 2 * len(buf))
            if self.max_dataset_bytes is not None:
                capacity = min(capacity, max(end, self.max_dataset_bytes))
            buf = self._data = _grow(buf, capacity, self._size)
        return buf
