"""Drivers that move bytes between sockets and the sans-IO core (:mod:`dicomnet.pdu`).

:mod:`dicomnet.transport.sync` drives one association on one thread over a
blocking-style (poll-bounded) socket.
"""
from .sync import Interrupted, SyncDriver, open_connection

__all__ = ["SyncDriver", "Interrupted", "open_connection"]
