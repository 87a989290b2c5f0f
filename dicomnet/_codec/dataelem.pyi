"""Type stub for the compiled DataElement (dicomnet/_codec/dataelem.pyx)."""
from typing import Any

from dicomnet._codec.elements import ElementIndex

class DataElement:
    """One element of a Dataset: tag, VR and (lazily decoded) value, a view on the Dataset."""

    tag: int
    VR: str
    def __init__(self, tag: int, VR: str, ds: Any) -> None: ...
    @property
    def value(self) -> Any: ...
    @value.setter
    def value(self, value: Any) -> None: ...
    @property
    def keyword(self) -> str: ...
    @property
    def length(self) -> int | None:
        """Value length on the wire, as read (None for elements set in Python)."""
    def __eq__(self, other: object) -> bool: ...
    def __ne__(self, other: object) -> bool: ...
    __hash__: None  # type: ignore[assignment]

class LevelIterator:
    """Yields the DataElements of one level of an untouched Dataset, one at a time."""

    def __iter__(self) -> LevelIterator: ...
    def __next__(self) -> DataElement: ...

def iter_level(
    index: ElementIndex, first: int, stop: int, ds: Any, vals: dict[int, Any]
) -> LevelIterator | None: ...
