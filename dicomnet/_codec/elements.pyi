"""Type stub for the compiled element index (dicomnet/_codec/elements.pyx).

``flags`` values (C enum in elements.pxd): 1 undefined length, 2 sequence,
4 item, 8 encapsulated Pixel Data, 16 fragment, 32 children parsed as Implicit
VR LE (a UN of undefined length). Offsets count from the start of ``source``.
"""
from collections.abc import Callable, Container
from typing import Any, TypeAlias

from typing_extensions import Buffer  # collections.abc.Buffer on Python >= 3.12

#: VRs with the 12-byte explicit header (2 reserved bytes + 32-bit length), PS3.5 7.1.2.
LONG_VRS: frozenset[str]

#: One decoded binary value: an int/float, a tag int (AT), a list of tags, a numpy view,
#: or None; which one depends on the VR and the length at run time, hence Any.
_NumericValue: TypeAlias = Any

#: What ``ElementIndex.simple_value`` (compiled only) answers for a value it leaves to the general decoder.
SKIP: object

class ElementIndex:
    """The flat index of one data set over a buffer; raises DicomParseError on bad input."""

    @property
    def source(self) -> Any: ...
    @property
    def implicit(self) -> bool: ...
    @property
    def little(self) -> bool: ...
    @property
    def start(self) -> int: ...
    @property
    def stop(self) -> int: ...
    @property
    def stopped_early(self) -> bool: ...
    @property
    def max_depth(self) -> int: ...
    def __init__(
        self,
        source: Buffer,
        start: int = 0,
        end: int | None = None,
        *,
        implicit: bool = False,
        little: bool = True,
        max_depth: int = 64,
        stop_tag: int | None = None,
        sq_tags: Container[int] = ...,
        items: bool = False,
        only_group: int = -1,
    ) -> None: ...
    def __len__(self) -> int: ...
    def top_range(self) -> tuple[int, int]: ...
    def children(self, i: int) -> tuple[int, int]: ...
    def level(self, first: int, stop: int) -> dict[int, int]: ...
    def siblings(self, first: int, stop: int) -> list[int]: ...
    def level_items(self, first: int, stop: int) -> list[tuple[int, str | None]]:
        """(tag, VR or None) of the siblings in [first, stop), in ascending tag order."""
    def entry(self, i: int) -> tuple[int, str | None, int, int, int, int, int]:
        """(tag, vr or None, flags, header offset, value offset, value length, end)."""
    def tag(self, i: int) -> int: ...
    def vr(self, i: int) -> str | None: ...
    def flags(self, i: int) -> int: ...
    def span(self, i: int) -> tuple[int, int]: ...
    def raw(self, i: int) -> memoryview: ...
    def value_bytes(self, i: int) -> bytes: ...
    def value_bytes_prefix(self, i: int, n: int) -> bytes: ...
    def text(self, i: int, codec: int) -> str | None:
        """codec 0 ASCII, 1 Latin-1, 2 UTF-8; None when the bytes do not decode."""
    def items(self, i: int) -> list[tuple[int, int, bool]]:
        """(first, stop, undefined length) of each item of the sequence at entry ``i``."""
    def numeric(self, i: int, vr: str, as_array: bool = False) -> _NumericValue: ...

def decode_value(
    source: Buffer, offset: int, length: int, vr: str, little: bool, as_array: bool = False
) -> _NumericValue: ...


def part10_meta(source: Buffer) -> tuple[int, str | None, str | None, str | None] | None:
    """(data set offset, MediaStorageSOPClassUID, MediaStorageSOPInstanceUID, TransferSyntaxUID)
    of a plain Part 10 file, else None (see the module)."""

def dataset_uids(source: Buffer, offset: int, implicit: bool, little: bool,
                 sq_tags: Container[int] = ...) -> tuple[str | None, str | None] | None:
    """(SOPClassUID, SOPInstanceUID) from a plain data set head, else None (see the module)."""
