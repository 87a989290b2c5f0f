"""Type stub for the compiled C-STORE receive lane (dicomnet/_codec/lane.pyx)."""
from typing import Any

class StoreLane:
    #: P-DATA-TF PDUs the lane has taken.
    pdus: int
    #: C-STOREs the lane committed and answered itself.
    answered: int
    #: Reads the lane made itself (plain sockets).
    reads: int
    #: Waits for the rest of a PDU the lane made itself (plain sockets).
    waits: int
    #: How long one PDU may take to arrive (seconds; the driver's read_timeout unless set).
    read_timeout: float
    def __init__(self, conn: Any, assoc: Any, sink_type: type, message_type: type,
                 sock_fd: int = -1, defer_max: int = 16,
                 defer_seconds: float = 0.002, answers: bool = True) -> None: ...
    @property
    def deadline(self) -> float | None: ...
    def run(self) -> Any: ...
