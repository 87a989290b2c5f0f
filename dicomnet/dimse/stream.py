"""What the SCU side of C-FIND, C-MOVE and C-GET shares: a request answered by
pending responses, read as they arrive, cancelled when the reader stops early.

A subclass supplies ``_step()`` (read one message; return an item to yield, or
None) and sets ``_done`` once the final response has been read.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from dicomnet.dimse.commands import c_cancel_rq

if TYPE_CHECKING:  # pragma: no cover
    from dicomnet.association import Association
    from dicomnet.pdu.negotiation import NegotiatedContext

__all__ = ["ResponseStream"]


class ResponseStream:
    """The responses to one request (iterate once).

    Leaving a ``for`` loop early (or :meth:`cancel`) sends C-CANCEL-RQ
    (PS3.7 9.3.2.3) and reads up to the final response, so the association
    stays usable. ``status`` is the final status once known (None before).
    """

    _service = "find"

    def __init__(self, assoc: Association, context: NegotiatedContext, message_id: int,
                 timeout: float | None) -> None:
        self._assoc = assoc
        self.context = context
        self.message_id = message_id
        self.timeout = timeout
        self.status: int | None = None
        self.error_comment: str | None = None
        self.cancelled = False
        self._started = False
        self._done = False

    @property
    def done(self) -> bool:
        """True once the final response has been received."""
        return self._done

    def __iter__(self) -> Iterator[Any]:
        if self._started:
            raise RuntimeError(f"a {type(self).__name__} can be iterated only once")
        self._started = True
        return self._iterate()

    def _iterate(self) -> Iterator[Any]:
        # A generator: when the caller's loop ends early, CPython closes it at
        # once (the loop held the only reference) and ``finally`` cancels.
        try:
            while not self._done:
                item = self._step()
                if item is not None:
                    yield item
                    # Not held while the next message arrives: a caller that
                    # dropped the item lets its buffer be reused for the next.
                    item = None
        finally:
            if not self._done and self._assoc.is_established:
                try:
                    self.cancel()
                except Exception as exc:  # noqa: BLE001 - reported, the loop is over anyway
                    self._assoc._log.warning("cancelling C-%s %d failed: %s", self._service.upper(),
                                             self.message_id, exc)
            if not self._assoc.is_established and getattr(self._assoc, "_open_find", None) is self:
                self._assoc._open_find = None  # gone with the association (no cycle to wait for the GC)
            self._cleanup()

    def _step(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _cleanup(self) -> None:
        """Undo what the operation installed on the association (idempotent)."""

    def cancel(self) -> int | None:
        """Send C-CANCEL-RQ and read responses up to the final one (items still
        in flight are dropped). Returns the final status."""
        if self._done:
            return self.status
        if not self.cancelled:
            self.cancelled = True
            self._assoc._log.debug("C-CANCEL for C-%s %d", self._service.upper(), self.message_id)
            self._assoc._send_message(self.context.context_id, c_cancel_rq(self.message_id))
        while not self._done:
            self._step()
        return self.status
