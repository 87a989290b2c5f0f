"""Type stub for the compiled C-STORE receive lane (dicomnet/_codec/lane.pyx)."""
from typing import Any

class StoreLane:
    #: P-DATA-TF PDUs the lane has taken.
    pdus: int
    def __init__(self, conn: Any, assoc: Any, sink_type: type, message_type: type) -> None: ...
    def run(self) -> Any: ...
