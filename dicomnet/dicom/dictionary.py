"""The DICOM data dictionary (PS3.6 section 6, PS3.7 Annex E): tag -> VR, VM, keyword.

The table itself is generated into :mod:`dicomnet.dicom._dictionary` by
``tools/gen_dictionary.py``. At import this module builds two plain dicts so
that the parser's hot path is a single ``dict.get``:

* ``tag -> DictEntry`` for every exact tag of the dictionary, plus every member
  of the standard's repeating groups (50xx curves, 60xx overlays, 7Fxx variable
  pixel data: even groups only, PS3.5 7.6) and element ranges, expanded;
* ``keyword -> tag`` (a repeating-group keyword maps to its first group, e.g.
  ``OverlayRows`` -> ``0x60000010``).

What is not in the first dict falls through to a short list of catch-all rules
taken from the same file: group length ``(gggg,0000)`` of any group, and the
Private Creator elements ``(gggg,0010-00FF)`` of odd groups (PS3.5 7.8.1).
Any other element of an odd (private) group is unknown: ``lookup`` gives None.
"""

from __future__ import annotations

from typing import NamedTuple

from dicomnet.dicom._dictionary import ENTRIES, RANGES

__all__ = [
    "DictEntry",
    "lookup",
    "vr_of",
    "keyword_of",
    "tag_for_keyword",
    "is_private",
    "is_private_creator",
    "private_creator_tag",
    "all_keywords",
]


class DictEntry(NamedTuple):
    """One data dictionary entry.

    ``vr`` is the primary VR: the only one for most elements, and for elements
    whose VR depends on context ("OB or OW", "US or SS") the one Implicit VR
    Little Endian uses (PS3.5 A.1). ``vrs`` lists every allowed VR, primary
    first. Item and delimitation tags (FFFE,E000/E00D/E0DD) have VR ``"NONE"``.
    """

    vr: str
    vm: str
    keyword: str
    retired: bool
    vrs: tuple[str, ...]


def _entry(vrs: str, vm: str, keyword: str, retired: bool) -> DictEntry:
    alternatives = tuple(vrs.split("/"))
    return DictEntry(alternatives[0], vm, keyword, retired, alternatives)


def _matches(value: int, lo: int, hi: int, parity: str) -> bool:
    if value < lo or value > hi:
        return False
    if parity == "even":
        return value & 1 == 0
    if parity == "odd":
        return value & 1 == 1
    return True


# Rules expanded into the exact-tag dict must stay small: the standard's
# repeating groups have at most 128 groups (or 128 elements) each.
_EXPAND_LIMIT = 4096


def _build() -> tuple[
    dict[int, DictEntry],
    dict[int, str],
    dict[str, int],
    tuple[tuple[int, int, str, int, int, str, DictEntry], ...],
]:
    tags: dict[int, DictEntry] = {}
    keywords: dict[str, int] = {}
    for tag, (vrs, vm, kw, retired) in ENTRIES.items():
        tags[tag] = _entry(vrs, vm, kw, retired)
        keywords[kw] = tag
    fallback: list[tuple[int, int, str, int, int, str, DictEntry]] = []
    for glo, ghi, gpar, elo, ehi, epar, vrs, vm, kw, retired, kind in RANGES:
        entry = _entry(vrs, vm, kw, retired)
        size = (ghi - glo + 1) * (ehi - elo + 1)
        if kind == "dicom" and size <= _EXPAND_LIMIT:
            groups = [g for g in range(glo, ghi + 1) if _matches(g, glo, ghi, gpar)]
            elems = [e for e in range(elo, ehi + 1) if _matches(e, elo, ehi, epar)]
            for g in groups:
                for e in elems:
                    # An exact entry of the file wins over a range member.
                    tags.setdefault((g << 16) | e, entry)
            keywords.setdefault(kw, (groups[0] << 16) | elems[0])
        else:
            fallback.append((glo, ghi, gpar, elo, ehi, epar, entry))
    vrs_by_tag = {tag: entry.vr for tag, entry in tags.items()}
    return tags, vrs_by_tag, keywords, tuple(fallback)


_TAGS, _VRS, _KEYWORDS, _FALLBACK = _build()
_tags_get = _TAGS.get
_vrs_get = _VRS.get
_keywords_get = _KEYWORDS.get


def _lookup_rules(tag: int) -> DictEntry | None:
    """Catch-all rules (group lengths, private creators), in file order."""
    if tag < 0 or tag > 0xFFFFFFFF:
        return None
    group = tag >> 16
    elem = tag & 0xFFFF
    for glo, ghi, gpar, elo, ehi, epar, entry in _FALLBACK:
        if _matches(group, glo, ghi, gpar) and _matches(elem, elo, ehi, epar):
            return entry
    return None


def lookup(tag: int) -> DictEntry | None:
    """Return the dictionary entry for ``tag`` (``0xGGGGEEEE``), or None if unknown.

    Repeating groups resolve (``0x60020010`` -> OverlayRows); ``(gggg,0000)``
    gives a UL group length entry; a private creator ``(odd gggg,0010-00FF)``
    gives LO ``PrivateCreator``; other private elements give None.
    """
    entry = _tags_get(tag)
    if entry is not None:
        return entry
    return _lookup_rules(tag)


def vr_of(tag: int) -> str | None:
    """Return the primary VR of ``tag``, or None if the dictionary does not know it."""
    vr = _vrs_get(tag)
    if vr is not None:
        return vr
    entry = _lookup_rules(tag)
    return None if entry is None else entry.vr


def keyword_of(tag: int) -> str | None:
    """Return the keyword of ``tag`` (e.g. ``"PatientName"``), or None if unknown."""
    entry = _tags_get(tag)
    if entry is None:
        entry = _lookup_rules(tag)
    return None if entry is None else entry.keyword


def tag_for_keyword(keyword: str) -> int | None:
    """Return the tag for a PS3.6 keyword (``"PatientName"`` -> ``0x00100010``), or None.

    A repeating-group keyword gives its first group's tag (``OverlayData`` ->
    ``0x60003000``). The catch-all entries (``PrivateCreator``,
    ``GenericGroupLength``, ...) have no single tag and give None.
    """
    return _keywords_get(keyword)


def is_private(tag: int) -> bool:
    """True for a tag of an odd (private) group (PS3.5 7.8)."""
    return bool((tag >> 16) & 1)


def is_private_creator(tag: int) -> bool:
    """True for a Private Creator element ``(odd gggg,0010-00FF)`` (PS3.5 7.8.1)."""
    return bool((tag >> 16) & 1) and 0x0010 <= (tag & 0xFFFF) <= 0x00FF


def private_creator_tag(tag: int) -> int | None:
    """Return the Private Creator tag reserving the block of private element ``tag``.

    ``(gggg,xxee)`` with ``xx`` in 10-FF is reserved by ``(gggg,00xx)``; None if
    ``tag`` is not a private data element of a reserved block.
    """
    if not (tag >> 16) & 1:
        return None
    block = (tag >> 8) & 0xFF
    if block < 0x10:
        return None
    return (tag & 0xFFFF0000) | block


def all_keywords() -> dict[str, int]:
    """Return a copy of the keyword -> tag map (for tools and tests)."""
    return dict(_KEYWORDS)
