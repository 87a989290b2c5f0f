#!/usr/bin/env python3
"""Generate ``dicomnet/dicom/_dictionary.py`` from ``tools/data/dicom.dic``.

``dicom.dic`` is the DCMTK data dictionary (PS3.6 / PS3.7 as data, one
tab-separated line per entry: tag, VR, keyword, VM, version). This script turns
it into two Python literals:

* ``ENTRIES``: ``{tag: (vr, vm, keyword, retired), ...}`` for every exact tag;
* ``RANGES``: the repeating-group / element-range rules, as tuples
  ``(group_lo, group_hi, group_parity, elem_lo, elem_hi, elem_parity,
  vr, vm, keyword, retired, kind)`` where parity is ``"even"``, ``"odd"`` or
  ``"any"`` and ``kind`` is the dictionary's version field in lower case
  (``"dicom"``, ``"private"``, ``"illegal"``, ``"generic"``).

``vr`` is a ``/``-joined string of the VR alternatives with the primary VR
first (the one Implicit VR Little Endian uses, PS3.5 Annex A.1), for example
``"OW/OB"`` for Pixel Data.

Usage: ``python tools/gen_dictionary.py [--output PATH] [--input PATH]``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INPUT = ROOT / "tools" / "data" / "dicom.dic"
DEFAULT_OUTPUT = ROOT / "dicomnet" / "dicom" / "_dictionary.py"

# The DCMTK pseudo-VRs and the VR alternatives they stand for (PS3.6 column
# "VR"), primary VR first. PS3.5 A.1 c: in Implicit VR Little Endian, Pixel
# Data, Overlay Data, Waveform Data and the LUT data elements are OW, so "OB or
# OW" elements get OW as their primary VR; "US or SS" elements default to US
# (Pixel Representation decides in a real data set).
PSEUDO_VRS: dict[str, tuple[str, ...]] = {
    "ox": ("OW", "OB"),  # OB or OW (overlay, waveform, audio, curve data)
    "px": ("OW", "OB"),  # OB or OW (Pixel Data)
    "xs": ("US", "SS"),  # US or SS
    "lt": ("US", "SS", "OW"),  # US or SS or OW (LUT data)
    "up": ("UL",),  # unsigned 32-bit offset ("pointer"), UL in PS3.6
    "na": ("NONE",),  # Item / delimitation items: no VR at all (PS3.5 7.5)
}

# PS3.6 gives a narrower set than DCMTK's pseudo-VR for these tags.
VR_OVERRIDES: dict[int, tuple[str, ...]] = {
    0x00283006: ("US", "OW"),  # LUT Data: "US or OW"
}

REAL_VRS = frozenset(
    "AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV "
    "TM UC UI UL UN UR US UT UV".split()
)

_TAG_RE = re.compile(r"^\(([0-9A-Fa-f\-ouOU]+),([0-9A-Fa-f\-ouOU]+)\)$")
_PART_RE = re.compile(r"^([0-9A-Fa-f]{4})(?:-(?:([ouOU])-)?([0-9A-Fa-f]{4}))?$")


# (group_lo, group_hi, group_parity, elem_lo, elem_hi, elem_parity, vrs, vm, keyword, retired, kind)
Rule = tuple[int, int, str, int, int, str, str, str, str, bool, str]


class DictionaryFormatError(ValueError):
    """A line of dicom.dic could not be understood."""


def _parse_part(text: str, lineno: int) -> tuple[int, int, str]:
    """Parse ``gggg``, ``gggg-gggg`` (even), ``gggg-o-gggg`` or ``gggg-u-gggg``."""
    m = _PART_RE.match(text)
    if m is None:
        raise DictionaryFormatError(f"line {lineno}: bad tag part {text!r}")
    lo = int(m.group(1), 16)
    if m.group(3) is None:
        return lo, lo, "any"
    hi = int(m.group(3), 16)
    restriction = (m.group(2) or "").lower()
    # dicom.dic header: a plain range means even numbers only.
    parity = {"": "even", "o": "odd", "u": "any"}[restriction]
    if hi < lo:
        raise DictionaryFormatError(f"line {lineno}: empty range {text!r}")
    return lo, hi, parity


def _vrs(vr: str, tag: int | None, lineno: int) -> tuple[str, ...]:
    if tag is not None and tag in VR_OVERRIDES:
        return VR_OVERRIDES[tag]
    if vr in PSEUDO_VRS:
        return PSEUDO_VRS[vr]
    if vr in REAL_VRS:
        return (vr,)
    raise DictionaryFormatError(f"line {lineno}: unknown VR {vr!r}")


def parse(text: str) -> tuple[dict[int, tuple[str, str, str, bool]], list[Rule]]:
    """Parse dicom.dic text into (exact entries, range rules)."""
    entries: dict[int, tuple[str, str, str, bool]] = {}
    ranges: list[Rule] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 5:
            raise DictionaryFormatError(f"line {lineno}: expected 5 fields, got {len(fields)}")
        tag_text, vr, keyword, vm, version = fields
        m = _TAG_RE.match(tag_text)
        if m is None:
            raise DictionaryFormatError(f"line {lineno}: bad tag {tag_text!r}")
        glo, ghi, gpar = _parse_part(m.group(1), lineno)
        elo, ehi, epar = _parse_part(m.group(2), lineno)
        version = version.strip()
        retired = version.lower().endswith("/retired")
        # DCMTK prefixes retired keywords with "RETIRED_"; PS3.6 does not.
        if keyword.startswith("RETIRED_"):
            keyword = keyword[len("RETIRED_"):]
        if not keyword.isidentifier():
            raise DictionaryFormatError(f"line {lineno}: bad keyword {keyword!r}")
        if glo == ghi and elo == ehi:
            tag = (glo << 16) | elo
            vrs = _vrs(vr, tag, lineno)
            if tag in entries:
                raise DictionaryFormatError(f"line {lineno}: duplicate tag {tag_text}")
            entries[tag] = ("/".join(vrs), vm, keyword, retired)
        else:
            vrs = _vrs(vr, None, lineno)
            kind = version.split("/")[0].lower()
            ranges.append(
                (glo, ghi, gpar, elo, ehi, epar, "/".join(vrs), vm, keyword, retired, kind)
            )
    return entries, ranges


HEADER = '''\
# generated by tools/gen_dictionary.py, do not edit.
# Source: tools/data/dicom.dic (DCMTK data dictionary, PS3.6/PS3.7 2026b;
# Copyright (C) 1994-2026, OFFIS e.V., BSD-style licence, see that file).
"""The DICOM data dictionary as data; use :mod:`dicomnet.dicom.dictionary`.

ENTRIES: {tag: (vrs, vm, keyword, retired)}, vrs "/"-joined, primary first.
RANGES: (group_lo, group_hi, group_parity, elem_lo, elem_hi, elem_parity,
         vrs, vm, keyword, retired, kind) for repeating groups/element ranges.
"""
'''


def render(text: str) -> str:
    """Return the generated module's source for dicom.dic ``text``."""
    entries, ranges = parse(text)
    out = [HEADER, "ENTRIES: dict[int, tuple[str, str, str, bool]] = {"]
    for tag in sorted(entries):
        vr, vm, kw, retired = entries[tag]
        out.append(f"0x{tag:08X}:({vr!r},{vm!r},{kw!r},{retired}),")
    out.append("}\n")
    out.append("RANGES: tuple[tuple[int, int, str, int, int, str, str, str, str, bool, str], ...] = (")
    for rule in ranges:
        glo, ghi, gpar, elo, ehi, epar, vr, vm, kw, retired, kind = rule
        out.append(
            f"(0x{glo:04X},0x{ghi:04X},{gpar!r},0x{elo:04X},0x{ehi:04X},{epar!r},"
            f"{vr!r},{vm!r},{kw!r},{retired},{kind!r}),"
        )
    out.append(")\n")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    source = render(args.input.read_text(encoding="utf-8"))
    args.output.write_text(source, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
