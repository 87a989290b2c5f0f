"""Type stub for the compiled command-set codec (dicomnet/_codec/dimse.pyx)."""
from collections.abc import Callable, Mapping
from typing import Any

from typing_extensions import Buffer  # collections.abc.Buffer on Python >= 3.12

class CommandCodec:
    """Encode/decode DIMSE command sets; unusual ones go to the Python functions given."""

    def __init__(
        self,
        command_type: Callable[[], dict[str, Any]],
        spec: Mapping[str, tuple[int, str]],
        slow_decode: Callable[[Any], Any],
        slow_encode: Callable[[Any], bytes],
    ) -> None: ...
    def decode(self, data: Buffer) -> Any: ...
    def encode(self, command: Mapping[str, Any]) -> bytes: ...

def store_rsp_bytes(message_id: int, sop_class: Any, sop_instance: Any, status: int) -> bytes | None:
    """The encoded C-STORE-RSP without ErrorComment, or None when the general encoder must do it."""
