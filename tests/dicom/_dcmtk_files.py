"""Shared pieces of the dcmtk cross-checks of dicomnet's file reading and
writing (``test_dcmtk_files_*.py``): running dcmtk (skipping when it is not
installed), ``dcm2xml +Wb`` output parsed into :class:`View`, the value
comparisons against dcm2xml and dcm2json, and the dcmtk-made files every
case of :data:`CASES` names (built once per test module by the ``make``
fixture of conftest.py: ``dump2dcm`` from the dump texts here, ``dcmconv``,
``xml2dcm``, ``dcmodify``, ``img2dcm`` and the codecs).

dcmtk quirks (verified with 3.6.7; the comparisons work around them):

* dcmtk never writes an odd value length: ``dump2dcm`` pads odd OB/UN values
  with a NUL byte. Files with odd lengths are built by hand (in
  test_dcmtk_files_edge_cases.py). When dcmtk *reads* an odd length
  (``+ao``, the default) it warns and adds a pad byte in memory: ``dcm2xml``
  then reports ``len`` one larger than the file holds.
* ``dcm2xml`` prints text values normalised its own way, differently by VR
  and by whether the length was odd: leading spaces dropped from LO but kept
  in ST, one trailing space kept after an odd-length value... Text is
  therefore compared with the padding (leading and trailing spaces and NULs;
  trailing only for LT/ST/UT/UR) stripped on both sides; the exact values
  dicomnet gives are asserted separately in part 3 (the edge cases).
* ``dump2dcm`` drops the trailing spaces of a UT value; ``dcmdump``/``dcm2xml``
  print FD/OD values imprecisely for extreme exponents (the double 1e-300 is
  printed as 9.9999999999999929e-301, although the bytes are exact): doubles
  are compared within 1e-15 relative here and their bits through
  ``dcm2json``'s InlineBinary (OD) or against the known input (FD).
  ``xml2dcm`` reads that printed text back as 0.0, and dcm2xml's
  -1.0000000000000001e+300 as -9.999999999999999e+299 (the xml2dcm file holds
  those; dicomnet and dcmtk agree on the file).
* In Implicit VR a private element of defined length is UN for dcmtk (it
  does not guess); dicomnet recognises a value that parses as items as a
  sequence (SQ). The comparison then checks that the SQ's bytes are dcmtk's UN
  bytes.
* ``dcmconv -u`` (no "new" VRs) writes UN, UT, UC, UR, OD, OL, OV, SV and UV
  elements as OB; ``dcmconv +p`` puts (FFFC,FFFC) Data Set Trailing Padding
  into items too.
* ``dcm2xml`` leaves ``len`` off undefined-length sequences and items, and
  leaves values longer than 4 kB out unless given ``+M``. ``dcmdump -q``
  silences the very warnings a validity check wants: the checks here run
  ``dcmdump +E`` with the default log level and look at both output streams.
* ``dcm2json`` converts text to UTF-8 and reports (0008,0005) as ISO_IR 192
  (PS3.18 F.2: JSON is UTF-8), gives binary values as little endian
  InlineBinary whatever the transfer syntax, and refuses encapsulated Pixel
  Data.
* dcmtk does not read a file that has "DICM" and a File Meta group but no
  preamble (PS3.10 7.1 requires the preamble); dicomnet does.
* ``dcmodify -i`` cannot insert a private element (dcmtk does not know its VR):
  the dcmodify case inserts, modifies and erases standard ones.
* dciodvfy (dicom3tools) checks IS against -(2^31-1)..2^31-1; PS3.5 Table
  6.2-1 allows -2^31. It does not check OV, SV, UV.
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy
import pytest

import dicomnet
from dicomnet.dicom.dataset import Dataset

LE, IMPLICIT, BE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
WRITABLE = (LE, IMPLICIT, BE, DEFLATED)
RLE = "1.2.840.10008.1.2.5"
SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"
PIXEL_DATA = 0x7FE00010
_F_UNDEFINED, _F_ENCAPSULATED = 1, 8

# ---------------------------------------------------------------- dcmtk tools


def tool(name: str, *args: Any, cwd: Path | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    """Run a dcmtk (or dicom3tools) program; skip the test when it is not installed."""
    exe = shutil.which(name)
    if exe is None:
        pytest.skip(f"{name} is not installed (apt-get install dcmtk / dicom3tools)")
    proc = subprocess.run([exe, *map(str, args)], capture_output=True, timeout=60, cwd=cwd,
                          stdin=subprocess.DEVNULL)
    if ok and proc.returncode != 0:
        raise AssertionError(f"{name} {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout.decode(errors='replace')[-2000:]}"
                             f"{proc.stderr.decode(errors='replace')[-2000:]}")
    return proc


@dataclass
class Node:
    """One element as dcm2xml reports it."""

    tag: int
    vr: str
    length: int | None                  # None: undefined length
    text: str = ""                      # the value as dcm2xml prints it
    items: list[Item] | None = None     # a sequence's items
    fragments: list[bytes] | None = None   # encapsulated Pixel Data: the items, offset table first


@dataclass
class Item:
    length: int | None
    nodes: dict[int, Node] = field(default_factory=dict)


@dataclass
class View:
    meta: dict[int, Node]
    data: dict[int, Node]
    xfer: str
    log: str


def _len(el: ET.Element) -> int | None:
    value = el.get("len")
    return None if value is None else int(value)


def _nodes(parent: ET.Element) -> dict[int, Node]:
    out: dict[int, Node] = {}
    for el in parent:
        tag = int(el.get("tag", "0").replace(",", ""), 16)
        if el.tag == "element":
            assert el.get("loaded") != "no", "dcm2xml left a value out"
            node = Node(tag, el.get("vr", ""), _len(el), el.text or "")
        elif el.tag == "sequence" and not any(it.tag == "pixel-item" for it in el):
            node = Node(tag, el.get("vr", ""), _len(el),
                        items=[Item(_len(it), _nodes(it)) for it in el if it.tag == "item"])
        elif el.tag == "sequence":   # encapsulated Pixel Data
            frags = [bytes.fromhex((it.text or "").replace("\\", "")) for it in el if it.tag == "pixel-item"]
            for it, frag in zip(el, frags):
                assert _len(it) == len(frag), "dcm2xml hid a fragment's bytes"
            node = Node(tag, el.get("vr", ""), _len(el), fragments=frags)
        else:
            raise AssertionError(f"unexpected dcm2xml element <{el.tag}>")
        assert tag not in out, f"dcm2xml reports ({tag >> 16:04X},{tag & 0xFFFF:04X}) twice"
        out[tag] = node
    return out


def dcmtk_view(path: Path, *args: str) -> View:
    """What dcmtk reads in ``path``: ``dcm2xml +Wb`` parsed."""
    proc = tool("dcm2xml", "+Wb", "+M", *args, path)
    root = ET.fromstring(proc.stdout)
    meta = root.find("meta-header")
    data = root.find("data-set")
    if data is None:
        data = root
    return View(_nodes(meta) if meta is not None else {}, _nodes(data), data.get("xfer", ""),
                proc.stderr.decode(errors="replace"))


def dcmtk_json(path: Path) -> dict:
    return json.loads(tool("dcm2json", "-fc", path).stdout)


def _dcmtk_messages(path: Path) -> list[str]:
    """Warnings and errors dcmtk prints while reading ``path`` completely."""
    proc = tool("dcmdump", "+E", "+L", path, ok=False)
    lines = (proc.stdout + proc.stderr).decode("utf-8", "replace").splitlines()
    bad = [line for line in lines if line.startswith(("W:", "E:", "F:")) or "error" in line.lower()]
    if proc.returncode:
        bad.append(f"dcmdump exit status {proc.returncode}")
    return bad


# ---------------------------------------------------------- value comparison

SPLIT_TEXT = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "PN", "SH", "TM", "UC", "UI"})
WHOLE_TEXT = frozenset({"LT", "ST", "UT", "UR"})
INT_VRS = frozenset({"US", "SS", "UL", "SL", "SV", "UV", "OL", "OV"})
FLOAT_VRS = frozenset({"FL", "FD", "OF", "OD"})
BYTE_VRS = frozenset({"OB", "UN"})


def _norm_piece(vr: str, piece: Any) -> Any:
    if piece is None:
        return None
    if vr == "IS":
        return int(piece) if not isinstance(piece, str) else (int(piece) if piece.strip(" \0") else None)
    if vr == "DS":
        return float(piece) if not isinstance(piece, str) else (float(piece) if piece.strip(" \0") else None)
    text = str(piece).strip(" \0")
    if vr == "PN":   # trailing empty components and component groups are not significant (PS3.5 6.2.1)
        text = "=".join(group.rstrip("^") for group in text.split("=")).rstrip("=")
    return text


def theirs_values(vr: str, text: str) -> Any:
    """dcm2xml's printed value, as a list comparable with :func:`ours_values`."""
    if vr in WHOLE_TEXT:
        text = text.rstrip(" \0")
        return [text] if text else []
    if text == "":
        return [] if vr not in BYTE_VRS else b""
    if vr in SPLIT_TEXT:
        return [_norm_piece(vr, p) for p in text.split("\\")]
    if vr in INT_VRS:
        return [int(p) for p in text.split("\\")]
    if vr in FLOAT_VRS:
        return [float(p) for p in text.split("\\")]
    if vr == "AT":
        return [int(p.strip("()").replace(",", ""), 16) for p in text.split("\\")]
    if vr in BYTE_VRS:
        return bytes.fromhex(text.replace("\\", ""))
    if vr == "OW":
        return [int(p, 16) for p in text.split("\\")]
    raise AssertionError(f"no rule for VR {vr}")


def ours_values(vr: str, value: Any) -> Any:
    """dicomnet's value, as a list comparable with :func:`theirs_values`."""
    if vr in BYTE_VRS:
        if value is None:
            return b""
        return value.tobytes() if isinstance(value, numpy.ndarray) else bytes(value)
    if vr == "OW" and isinstance(value, (bytes, bytearray, memoryview)):
        value = numpy.frombuffer(bytes(value), "<u2")
    if vr == "OW" and isinstance(value, numpy.ndarray) and value.dtype.kind == "i":
        value = value.view(value.dtype.str.replace("i", "u"))   # dcmtk prints OW words unsigned
    if value is None or (isinstance(value, str) and value == ""):
        return []
    if isinstance(value, numpy.ndarray):
        return value.ravel().tolist()
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if vr in WHOLE_TEXT:
        text = str(values[0]).rstrip(" \0")
        return [text] if text else []
    if vr in SPLIT_TEXT:
        return [_norm_piece(vr, v) for v in values]
    return [float(v) if vr in FLOAT_VRS else int(v) for v in values]


def same_values(vr: str, ours: Any, theirs: Any, ds_tol: float = 0.0) -> bool:
    """Equal values; DS within ``ds_tol`` (relative): 0 when both sides parse the same
    text, about 1e-8 for a Python float against the at most 16 characters of its DS."""
    if isinstance(ours, bytes) or isinstance(theirs, bytes):
        # dcmtk pads an odd-length value with a NUL in memory (see the module docstring).
        return ours == theirs or (len(ours) % 2 == 1 and ours + b"\0" == theirs)
    if len(ours) != len(theirs):
        return False
    for a, b in zip(ours, theirs):
        if vr in ("FL", "OF"):
            if numpy.float32(a) != numpy.float32(b) and not (math.isnan(a) and math.isnan(b)):
                return False
        elif vr in ("FD", "OD"):
            if not (math.isclose(a, b, rel_tol=1e-15, abs_tol=0.0) or (math.isnan(a) and math.isnan(b))):
                return False
        elif vr == "DS" and a is not None and b is not None:
            if not math.isclose(a, b, rel_tol=ds_tol, abs_tol=0.0):
                return False
        elif a != b:
            return False
    return True


def _fmt(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _undefined(ds: Dataset, tag: int) -> bool | None:
    """Whether the element was read with an undefined length (None: set in Python)."""
    if ds._index is None or tag not in ds._raw or tag in ds._vrs:
        return None
    return bool(ds._index.flags(ds._raw[tag]) & _F_UNDEFINED)


def _item_lengths(ds: Dataset, tag: int) -> list[int | None] | None:
    """Each item's length as read (None: undefined), or None when the sequence was not read."""
    if _undefined(ds, tag) is None or not ds._index.flags(ds._raw[tag]) & 2:
        return None
    index = ds._index
    return [None if undefined else index.entry(first - 1)[5] for first, _, undefined in index.items(ds._raw[tag])]


def raw_bytes(ds: Dataset, tag: int) -> bytes:
    return bytes(ds._index.raw(ds._raw[tag]))


def fragments(ds: Dataset) -> list[bytes]:
    index = ds._index
    first, stop = index.children(ds._raw[PIXEL_DATA])
    return [bytes(index.raw(i)) for i in index.siblings(first, stop)]


def compare(ours: Dataset, theirs: dict[int, Node], where: str = "", problems: list[str] | None = None,
            lengths: bool = True, ds_tol: float = 0.0) -> list[str]:
    """Every difference between dicomnet's data set and dcmtk's, recursively."""
    problems = [] if problems is None else problems
    ours_tags = set(ours.tags())
    for tag in sorted(ours_tags ^ set(theirs)):
        problems.append(f"{where}{_fmt(tag)} only in {'dicomnet' if tag in ours_tags else 'dcmtk'}")
    for tag in sorted(ours_tags & set(theirs)):
        node, label = theirs[tag], f"{where}{_fmt(tag)}"
        elem = ours[tag]
        vr = elem.VR
        if node.items is not None:
            if vr != "SQ":
                problems.append(f"{label}: dicomnet {vr}, dcmtk SQ")
                continue
            items = elem.value
            if len(items) != len(node.items):
                problems.append(f"{label}: {len(items)} items, dcmtk {len(node.items)}")
                continue
            undefined = _undefined(ours, tag)
            if lengths and undefined is not None and undefined != (node.length is None):
                problems.append(f"{label}: undefined length {undefined}, dcmtk len {node.length}")
            item_lengths = _item_lengths(ours, tag)
            for n, (item, theirs_item) in enumerate(zip(items, node.items)):
                if lengths and item_lengths is not None and item_lengths[n] != theirs_item.length:
                    problems.append(f"{label}[{n}]: item length {item_lengths[n]}, dcmtk {theirs_item.length}")
                compare(item, theirs_item.nodes, f"{label}[{n}].", problems, lengths, ds_tol)
            continue
        if node.fragments is not None:
            if _undefined(ours, tag) is None or not ours._index.flags(ours._raw[tag]) & _F_ENCAPSULATED:
                problems.append(f"{label}: not encapsulated for dicomnet")
            elif fragments(ours) != node.fragments:
                problems.append(f"{label}: fragments {[len(f) for f in fragments(ours)]}, "
                                f"dcmtk {[len(f) for f in node.fragments]}")
            if vr != node.vr:
                problems.append(f"{label}: dicomnet {vr}, dcmtk {node.vr}")
            continue
        if vr == "SQ" and node.vr == "UN":
            # Implicit VR private sequence: dicomnet found the items, dcmtk did not look.
            if raw_bytes(ours, tag) != theirs_values("UN", node.text):
                problems.append(f"{label}: the SQ's bytes differ from dcmtk's UN bytes")
            continue
        if vr != node.vr and tag == PIXEL_DATA and (vr, node.vr) == ("OB", "OW") and ours._index.implicit:
            # PS3.5 A.1 c): in Implicit VR Little Endian Pixel Data is OW whatever Bits
            # Allocated; dicomnet says OB for 8-bit data (see test_implicit_vr_8_bit_pixel_data_is_ow).
            if raw_bytes(ours, tag) != numpy.array(theirs_values("OW", node.text), "<u2").tobytes():
                problems.append(f"{label}: the OB bytes differ from dcmtk's OW words")
            continue
        if vr != node.vr:
            problems.append(f"{label}: dicomnet {vr}, dcmtk {node.vr}")
            continue
        length = elem.length
        if lengths and length is not None and length + length % 2 != node.length:
            problems.append(f"{label}: length {length}, dcmtk {node.length}")
        try:
            a, b = ours_values(vr, elem.value), theirs_values(vr, node.text)
        except Exception as exc:   # noqa: BLE001 - reported as a difference
            problems.append(f"{label} {vr}: cannot compare ({exc!r})")
            continue
        if not same_values(vr, a, b, ds_tol):
            problems.append(f"{label} {vr}: dicomnet {a!r:.120} != dcmtk {b!r:.120}")
    return problems


def compare_file(path: Path, view: View | None = None, lengths: bool = True) -> list[str]:
    view = view or dcmtk_view(path)
    ds = dicomnet.read_file(path)
    problems = compare(ds, view.data, "", None, lengths)
    if view.meta:
        if ds.file_meta is None:
            problems.append("dicomnet found no File Meta")
        else:
            compare(ds.file_meta, view.meta, "meta", problems, lengths)
    if view.xfer and ds.transfer_syntax != view.xfer:
        problems.append(f"transfer syntax {ds.transfer_syntax}, dcmtk {view.xfer}")
    return problems


def compare_views(a: View, b: View, *, implicit: bool = False, source_implicit: bool = False,
                  length_form: bool = True, group_lengths: bool = True, padded: bool = False) -> list[str]:
    """Differences between two dcmtk views (an original file and dicomnet's rewrite).

    Group lengths and the lengths of sequences and items follow the encoding
    and are not compared. Written in Implicit VR (``implicit``), an element
    whose VR dcmtk's dictionary does not know (or knows otherwise than the
    source said) loses its VR: then only its value length must agree. Read
    from Implicit VR (``source_implicit``), a private sequence that dcmtk
    sees as UN may be written by dicomnet as the SQ it found, and 8-bit Pixel
    Data (OW for dcmtk) as OB: then the bytes must agree. Without
    ``length_form`` whether sequences and items have undefined lengths is not
    compared; without ``group_lengths`` Group Length elements are left out.
    With ``padded`` text may differ by trailing padding (an odd length made even)."""
    problems: list[str] = []

    def walk(x: dict[int, Node], y: dict[int, Node], where: str) -> None:
        if not group_lengths:
            x = {t: n for t, n in x.items() if t & 0xFFFF}
            y = {t: n for t, n in y.items() if t & 0xFFFF}
        for tag in sorted(set(x) ^ set(y)):
            problems.append(f"{where}{_fmt(tag)} only in the {'original' if tag in x else 'rewrite'}")
        for tag in sorted(set(x) & set(y)):
            p, q, label = x[tag], y[tag], f"{where}{_fmt(tag)}"
            if (p.items is None) != (q.items is None) and (implicit or source_implicit) and "UN" in (p.vr, q.vr):
                continue   # a private sequence of defined length reads as UN in Implicit VR
            if p.items is not None and q.items is not None:
                if len(p.items) != len(q.items):
                    problems.append(f"{label}: {len(p.items)} items, rewrite {len(q.items)}")
                    continue
                if length_form and (p.length is None) != (q.length is None):
                    problems.append(f"{label}: undefined length {p.length is None} -> {q.length is None}")
                for n, (i, j) in enumerate(zip(p.items, q.items)):
                    if length_form and (i.length is None) != (j.length is None):
                        problems.append(f"{label}[{n}]: undefined length {i.length is None} -> {j.length is None}")
                    walk(i.nodes, j.nodes, f"{label}[{n}].")
                continue
            if p.vr != q.vr:
                if implicit and ("UN" in (p.vr, q.vr) or "OB" in (p.vr, q.vr)) and p.length == q.length:
                    continue
                if (source_implicit and tag == PIXEL_DATA and (p.vr, q.vr) == ("OW", "OB")
                        and numpy.array(theirs_values("OW", p.text), "<u2").tobytes() == theirs_values("OB", q.text)):
                    continue
                problems.append(f"{label}: VR {p.vr} -> {q.vr}")
                continue
            if p.fragments != q.fragments:
                problems.append(f"{label}: fragments differ")
            if not tag & 0xFFFF and p.vr == "UL":
                continue
            if padded and p.text is not None and q.text is not None:
                if p.text.rstrip(" \0") != q.text.rstrip(" \0") or q.length - p.length not in (0, 1, 2, 3):
                    problems.append(f"{label} {p.vr}: {p.text!r:.80} (len {p.length}) -> {q.text!r:.80} "
                                    f"(len {q.length})")
                continue
            if p.text != q.text or p.length != q.length:
                problems.append(f"{label} {p.vr}: {p.text!r:.80} (len {p.length}) -> {q.text!r:.80} (len {q.length})")

    walk(a.data, b.data, "")
    return problems


def compare_json(ours: Dataset, obj: dict, where: str = "", problems: list[str] | None = None,
                 ds_tol: float = 0.0) -> list[str]:
    """Every difference between dicomnet's values and dcm2json's (PS3.18 F.2 JSON model).

    Binary values are InlineBinary, base64 of the little endian bytes (dcmtk
    swaps big endian data); dcm2json leaves out File Meta and group lengths."""
    from dicomnet.dicom.values import encode_value

    problems = [] if problems is None else problems
    # dcm2json writes UTF-8 (PS3.18 F.2) and says so in (0008,0005): ISO_IR 192.
    ours_tags = {t for t in ours.tags() if t & 0xFFFF and t >> 16 != 0x0002 and t != 0x00080005}
    theirs = {int(k, 16): v for k, v in obj.items() if k != "00080005"}
    for tag in sorted(ours_tags ^ set(theirs)):
        problems.append(f"{where}{_fmt(tag)} only in {'dicomnet' if tag in ours_tags else 'dcm2json'}")
    for tag in sorted(ours_tags & set(theirs)):
        entry, label = theirs[tag], f"{where}{_fmt(tag)}"
        vr, value = ours[tag].VR, ours[tag].value
        if entry["vr"] != vr and not (tag == PIXEL_DATA and (vr, entry["vr"]) == ("OB", "OW")
                                      and ours._index is not None and ours._index.implicit):
            if entry["vr"] == "UN" and tag >> 16 & 1 and "InlineBinary" in entry:
                # A private element in Implicit VR: dcmtk has its bytes only.
                if vr == "SQ":
                    continue   # (the items are compared by compare())
                wire = encode_value(vr, value, ours._current_charsets(), True)
                if base64.b64decode(entry["InlineBinary"]) != wire:
                    problems.append(f"{label}: dcm2json UN bytes are not the encoding of {value!r:.60}")
                continue
            problems.append(f"{label}: dicomnet {vr}, dcm2json {entry['vr']}")
            continue
        if vr == "SQ":
            items = entry.get("Value", [])
            if len(items) != len(value):
                problems.append(f"{label}: {len(value)} items, dcm2json {len(items)}")
                continue
            for n, (item, theirs_item) in enumerate(zip(value, items)):
                compare_json(item, theirs_item, f"{label}[{n}].", problems, ds_tol)
            continue
        if "InlineBinary" in entry:
            data = base64.b64decode(entry["InlineBinary"])
            if isinstance(value, numpy.ndarray):
                mine = value.astype(value.dtype.newbyteorder("<")).tobytes()
            else:
                mine = b"" if value is None else bytes(value)
            if not (mine == data or (len(mine) % 2 and mine + b"\0" == data)):
                problems.append(f"{label} {vr}: bytes {hashlib.sha1(mine).hexdigest()[:8]} ({len(mine)}) != "
                                f"dcm2json {hashlib.sha1(data).hexdigest()[:8]} ({len(data)})")
            continue
        theirs_list = entry.get("Value", [])
        if vr == "PN":
            theirs_list = ["=".join(p.get(k, "") for k in ("Alphabetic", "Ideographic", "Phonetic"))
                           if p is not None else "" for p in theirs_list]
        elif vr == "AT":
            theirs_list = [int(v, 16) for v in theirs_list]
        elif vr in INT_VRS or vr == "IS":
            theirs_list = [None if v is None else int(v) for v in theirs_list]
        elif vr in ("FL", "FD", "DS"):
            theirs_list = [None if v is None else float(v) for v in theirs_list]
        theirs_list = [_norm_piece(vr, v) if vr in SPLIT_TEXT else v for v in theirs_list]
        if vr in WHOLE_TEXT:
            theirs_list = [v.rstrip(" \0") for v in theirs_list if v.rstrip(" \0")]
        mine_list = ours_values(vr, value)
        if vr in SPLIT_TEXT and all(v in (None, "") for v in theirs_list) and not any(mine_list):
            continue
        if not same_values(vr, mine_list, theirs_list, ds_tol):
            problems.append(f"{label} {vr}: dicomnet {mine_list!r:.100} != dcm2json {theirs_list!r:.100}")
    return problems


# ------------------------------------------------------------- dump texts

RICH_DUMP = r"""
(0008,0005) CS [ISO_IR 192]
(0008,0008) CS [ORIGINAL\PRIMARY\AXIAL]
(0008,0016) UI =SecondaryCaptureImageStorage
(0008,0018) UI [1.2.826.0.1.3680043.2.1125.9.1]
(0008,0020) DA [20240229]
(0008,0030) TM [101010.123]
(0008,0060) CS [OT]
(0008,0090) PN [Yamada^Tarou^^Dr.^III=山田^太郎=やまだ^たろう]
(0008,1140) SQ (Sequence with explicit length #=0)
(fffe,e0dd) na (SequenceDelimitationItem for re-encod.)
(0010,0010) PN [Müller^Jürgen]
(0010,0020) LO [PID-7]
(0010,0030) DA []
(0018,0050) DS []
(0029,0010) LO [ACME 1.1]
(0029,0011) LO [OTHER CREATOR]
(0029,1001) LO [private text]
(0029,1002) UN 01\02\03\04
(0029,1003) OB 01\02\03\04\05\06
(0029,1004) US 7\8
(0029,1005) FD 2.5
(0029,1010) SQ (Sequence with explicit length #=2)
  (fffe,e000) na (Item with explicit length #=3)
    (0010,0020) LO [inner id]
    (0029,0010) LO [ACME 1.1]
    (0029,1001) LO [inner private]
  (fffe,e00d) na (ItemDelimitationItem for re-encoding)
  (fffe,e000) na (Item with explicit length #=0)
  (fffe,e00d) na (ItemDelimitationItem for re-encoding)
(fffe,e0dd) na (SequenceDelimitationItem for re-encod.)
(0029,1101) SH [second block]
(0028,0002) US 1
(0028,0004) CS [MONOCHROME2]
(0028,0008) IS [2]
(0028,0009) AT (0018,1063)
(0028,0010) US 2
(0028,0011) US 3
(0028,0100) US 16
(0028,0101) US 12
(0028,0102) US 11
(0028,0103) US 0
(0072,005e) AE [AET1\AET2]
(0072,005f) AS [042Y]
(0072,0060) AT (0010,0010)\(7fe0,0010)
(0072,0061) DA [20240101\19991231]
(0072,0062) CS [A\B]
(0072,0063) DT [20240101120000.5+0100]
(0072,0064) IS [1\-2\2147483647]
(0072,0065) OB 01\02\ff\00
(0072,0066) LO [a\b c]
(0072,0067) OF 1.5\-2.5\3
(0072,0068) LT [line1\line2 ä]
(0072,0069) OW 0001\ffff\1234
(0072,006a) PN [Last^First\Other^Name]
(0072,006b) TM [1010\235959.999999]
(0072,006c) SH [sh1\sh2]
(0072,006d) UN 00\01\02\03\04\05
(0072,006e) ST [st\with backslash]
(0072,006f) UC [uc1\uc2 ü]
(0072,0070) UT [ut\text ü]
(0072,0071) UR [http://example.com/a?b=c]
(0072,0072) DS [1.50\-3e2\0.0001]
(0072,0073) OD 2.5\-1e300
(0072,0074) FD 3.141592653589793\1e-300
(0072,0075) OL 1\4294967295
(0072,0076) FL 1.5\-2.25
(0072,0078) UL 4294967295\0
(0072,007a) US 65535\0
(0072,007c) SL -2147483648\7
(0072,007e) SS -32768\32767
(0072,007f) UI [1.2.3\1.2.4]
(0072,0080) SQ (Sequence with undefined length #=2)
  (fffe,e000) na (Item with undefined length #=2)
    (0040,a040) CS [CONTAINER]
    (0040,a730) SQ (Sequence with explicit length #=1)
      (fffe,e000) na (Item with explicit length #=1)
        (0040,a160) UT [deep text]
      (fffe,e00d) na (ItemDelimitationItem for re-encoding)
    (fffe,e0dd) na (SequenceDelimitationItem for re-encod.)
  (fffe,e00d) na (ItemDelimitationItem)
  (fffe,e000) na (Item with explicit length #=0)
  (fffe,e00d) na (ItemDelimitationItem for re-encoding)
(fffe,e0dd) na (SequenceDelimitationItem)
(0072,0081) OV 18446744073709551615\1
(0072,0082) SV -9223372036854775808\5
(0072,0083) UV 18446744073709551615\0
(7fe0,0010) OW 0001\0002\0003\0004\0005\0006\0007\0008\0009\000a\000b\0fff
"""

# ISO 8859-1: the dump file itself is Latin-1 (dump2dcm copies the bytes).
LATIN1_DUMP = r"""
(0008,0005) CS [ISO_IR 100]
(0008,0016) UI =SecondaryCaptureImageStorage
(0008,0018) UI [1.2.826.0.1.3680043.2.1125.9.4]
(0008,1030) LO [Études de la tête\Straße]
(0010,0010) PN [Müller^Jürgen]
(0010,4000) LT [Ça va? ½ °C]
(0029,0010) LO [ÄCME]
(0029,1001) LO [privé]
(0040,a730) SQ (Sequence with undefined length #=1)
  (fffe,e000) na (Item with undefined length #=1)
    (0040,a160) UT [crème brûlée]
  (fffe,e00d) na (ItemDelimitationItem)
(fffe,e0dd) na (SequenceDelimitationItem)
"""


def image_dump(uid: str, rows: int, cols: int, frames: int, bits: int, samples: int, raw: str) -> str:
    photometric = "RGB" if samples == 3 else "MONOCHROME2"
    vr = "OW" if bits > 8 else "OB"
    planar = "(0028,0006) US 0\n" if samples > 1 else ""
    return (f"(0008,0016) UI =SecondaryCaptureImageStorage\n(0008,0018) UI [{uid}]\n"
            f"(0008,0060) CS [OT]\n(0028,0002) US {samples}\n(0028,0004) CS [{photometric}]\n{planar}"
            f"(0028,0008) IS [{frames}]\n(0028,0010) US {rows}\n(0028,0011) US {cols}\n"
            f"(0028,0100) US {bits}\n(0028,0101) US {12 if bits == 16 else 8}\n"
            f"(0028,0102) US {11 if bits == 16 else 7}\n(0028,0103) US 0\n(7fe0,0010) {vr} ={raw}\n")


def pixels(frames: int, rows: int, cols: int, samples: int, bits: int, seed: int) -> numpy.ndarray:
    """Smooth gradients with some noise: compressible, but not trivially."""
    rng = numpy.random.default_rng(seed)
    f, y, x, s = numpy.meshgrid(numpy.arange(frames), numpy.arange(rows), numpy.arange(cols),
                                numpy.arange(samples), indexing="ij")
    top = 0xFFF if bits == 16 else 0xFF
    values = (x * 37 + y * 11 + f * 500 + s * 70 + rng.integers(0, 40, x.shape)) % (top + 1)
    return values.astype(numpy.uint16 if bits == 16 else numpy.uint8).reshape(frames, rows, cols, samples)


IMAGES = {
    # name: (uid, rows, cols, frames, bits, samples)
    "mf16": ("1.2.826.0.1.3680043.2.1125.9.2", 32, 32, 4, 16, 1),
    "mf8": ("1.2.826.0.1.3680043.2.1125.9.5", 5, 7, 3, 8, 1),     # 35 bytes a frame: odd
    "rgb": ("1.2.826.0.1.3680043.2.1125.9.3", 16, 24, 2, 8, 3),
    "big": ("1.2.826.0.1.3680043.2.1125.9.6", 64, 64, 40, 16, 1),
}


# ------------------------------------------------------------- the files

class Maker:
    """Builds each case's file once per module, under pytest's temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache: dict[str, Path] = {}
        self.views: dict[str, View] = {}
        self.counter = 0

    def __call__(self, name: str) -> Path:
        if name not in self.cache:
            self.cache[name] = CASES[name](self)
        return self.cache[name]

    def view(self, name: str) -> View:
        """dcmtk's view of the case's file (made once)."""
        if name not in self.views:
            self.views[name] = dcmtk_view(self(name))
        return self.views[name]

    def out(self, stem: str) -> Path:
        self.counter += 1
        return self.root / f"{self.counter:03d}-{stem.replace(' ', '_').replace('+', 'p')}.dcm"

    def dump2dcm(self, text: str, *opts: str, encoding: str = "utf-8") -> Path:
        self.counter += 1
        src = self.root / f"{self.counter:03d}.dump"
        src.write_bytes(text.encode(encoding))
        out = self.out("dump2dcm" + "".join(opts))
        tool("dump2dcm", *opts, src, out, cwd=self.root)
        return out

    def image(self, name: str, *opts: str) -> Path:
        uid, rows, cols, frames, bits, samples = IMAGES[name]
        raw = self.root / f"{name}.raw"
        if not raw.exists():
            data = pixels(frames, rows, cols, samples, bits, seed=len(name))
            raw.write_bytes(data.astype(data.dtype.newbyteorder("<")).tobytes())
        return self.dump2dcm(image_dump(uid, rows, cols, frames, bits, samples, raw.name), *opts)

    def convert(self, program: str, source: str, *opts: str) -> Path:
        out = self.out(f"{program}{''.join(opts)}")
        tool(program, *opts, self(source), out, cwd=self.root)
        return out


def _dump(text: str, *opts: str, encoding: str = "utf-8") -> Callable[[Maker], Path]:
    return lambda m: m.dump2dcm(text, *opts, encoding=encoding)


def _image(name: str, *opts: str) -> Callable[[Maker], Path]:
    return lambda m: m.image(name, *opts)


def _conv(program: str, source: str, *opts: str) -> Callable[[Maker], Path]:
    return lambda m: m.convert(program, source, *opts)


def _xml2dcm(m: Maker) -> Path:
    xml = m.root / "rich.xml"
    xml.write_bytes(tool("dcm2xml", "+Wb", "+M", m("dump2dcm +te")).stdout)
    out = m.out("xml2dcm")
    tool("xml2dcm", xml, out)
    return out


def _dcmodify(m: Maker) -> Path:
    out = m.out("dcmodify")
    shutil.copyfile(m("dump2dcm +te -e"), out)
    tool("dcmodify", "-nb", "-i", "(0010,0020)=NEW ID", "-m", "(0008,0060)=MR",
         "-i", "(0040,0275)[0].(0040,0007)=step one", "-m", "(0072,0080)[0].(0040,a040)=TEXT",
         "-e", "(0072,0065)", "-i", "(0020,0013)=12", out)
    return out


def _img2dcm(m: Maker) -> Path:
    jpeg = m.root / "rgb.jpg"
    tool("dcmj2pnm", "+oj", "+F", "1", m("rgb +te"), jpeg)
    out = m.out("img2dcm")
    tool("img2dcm", "-i", "JPEG", jpeg, out)
    return out


CASES: dict[str, Callable[[Maker], Path]] = {
    "dump2dcm +te": _dump(RICH_DUMP, "+te"),
    "dump2dcm +ti": _dump(RICH_DUMP, "+ti"),
    "dump2dcm +tb": _dump(RICH_DUMP, "+tb"),
    "dump2dcm +td": _dump(RICH_DUMP, "+td"),
    "dump2dcm +te -e": _dump(RICH_DUMP, "+te", "-e"),
    "dump2dcm +ti -e": _dump(RICH_DUMP, "+ti", "-e"),
    "dump2dcm +tb -e": _dump(RICH_DUMP, "+tb", "-e"),
    "dump2dcm +td -e": _dump(RICH_DUMP, "+td", "-e"),
    "dump2dcm +te +g": _dump(RICH_DUMP, "+te", "+g"),
    "dump2dcm +ti +g -e": _dump(RICH_DUMP, "+ti", "+g", "-e"),
    "dump2dcm +te +p": _dump(RICH_DUMP, "+te", "+p", "256", "32"),
    "dump2dcm -F +te": _dump(RICH_DUMP, "-F", "+te"),
    "dump2dcm -F +ti": _dump(RICH_DUMP, "-F", "+ti"),
    "dump2dcm -F +tb": _dump(RICH_DUMP, "-F", "+tb"),
    "latin1 +te": _dump(LATIN1_DUMP, "+te", encoding="latin-1"),
    "latin1 +ti -e": _dump(LATIN1_DUMP, "+ti", "-e", encoding="latin-1"),
    "latin1 +tb": _dump(LATIN1_DUMP, "+tb", encoding="latin-1"),
    "dcmconv +ti": _conv("dcmconv", "dump2dcm +te", "+ti"),
    "dcmconv +tb": _conv("dcmconv", "dump2dcm +te", "+tb"),
    "dcmconv +td +cl 9": _conv("dcmconv", "dump2dcm +te", "+td", "+cl", "9"),
    "dcmconv +td +cl 0": _conv("dcmconv", "dump2dcm +te -e", "+td", "+cl", "0"),
    "dcmconv +te from BE": _conv("dcmconv", "dump2dcm +tb -e", "+te"),
    "dcmconv +te from implicit": _conv("dcmconv", "dump2dcm +ti -e", "+te"),
    "dcmconv +g": _conv("dcmconv", "dump2dcm +tb", "+g"),
    "dcmconv -g": _conv("dcmconv", "dump2dcm +te +g", "-g"),
    "dcmconv -e": _conv("dcmconv", "dump2dcm +tb", "-e"),
    "dcmconv +e": _conv("dcmconv", "dump2dcm +ti -e", "+e"),
    "dcmconv +p": _conv("dcmconv", "dump2dcm +te -e", "+p", "512", "64"),
    "dcmconv -u": _conv("dcmconv", "dump2dcm +te", "-u"),
    "dcmconv +U8": _conv("dcmconv", "latin1 +te", "+U8"),
    "dcmconv -F +tb": _conv("dcmconv", "dump2dcm +te", "-F", "+tb"),
    "xml2dcm": _xml2dcm,
    "dcmodify": _dcmodify,
    "mf16 +te": _image("mf16", "+te"),
    "mf16 +tb": _image("mf16", "+tb"),
    "mf8 +tb": _image("mf8", "+tb"),
    "mf8 +ti": _image("mf8", "+ti"),
    "rgb +te": _image("rgb", "+te"),
    "big +te": _image("big", "+te"),
    "img2dcm": _img2dcm,
    "dcmcjpeg": _conv("dcmcjpeg", "mf16 +te"),
    "dcmcjpeg -ot": _conv("dcmcjpeg", "mf16 +te", "-ot"),
    "dcmcjpeg +fs 1": _conv("dcmcjpeg", "mf16 +te", "+fs", "1"),
    "dcmcjpeg +fs 1 -ot": _conv("dcmcjpeg", "mf16 +te", "+fs", "1", "-ot"),
    "dcmcjpeg +eb rgb": _conv("dcmcjpeg", "rgb +te", "+eb"),
    "dcmcrle": _conv("dcmcrle", "mf16 +te"),
    "dcmcrle -ot": _conv("dcmcrle", "mf16 +te", "-ot"),
    "dcmcrle rgb": _conv("dcmcrle", "rgb +te"),
    "dcmcrle mf8": _conv("dcmcrle", "mf8 +tb"),
    "dcmcrle big": _conv("dcmcrle", "big +te"),
    "dcmcjpls": _conv("dcmcjpls", "mf16 +te"),
    "dcmcjpls -ot +fs 1": _conv("dcmcjpls", "mf16 +te", "-ot", "+fs", "1"),
    "dcmdjpeg": _conv("dcmdjpeg", "dcmcjpeg"),
    "dcmdrle": _conv("dcmdrle", "dcmcrle"),
    "dcmdjpls": _conv("dcmdjpls", "dcmcjpls"),
}

ENCAPSULATED = {
    # case: (the dcmtk decompressor, the native case it was compressed from (lossless) or None)
    "img2dcm": ("dcmdjpeg", None),
    "dcmcjpeg": ("dcmdjpeg", "mf16 +te"),
    "dcmcjpeg -ot": ("dcmdjpeg", "mf16 +te"),
    "dcmcjpeg +fs 1": ("dcmdjpeg", "mf16 +te"),
    "dcmcjpeg +fs 1 -ot": ("dcmdjpeg", "mf16 +te"),
    "dcmcjpeg +eb rgb": ("dcmdjpeg", None),
    "dcmcrle": ("dcmdrle", "mf16 +te"),
    "dcmcrle -ot": ("dcmdrle", "mf16 +te"),
    "dcmcrle rgb": ("dcmdrle", "rgb +te"),
    "dcmcrle mf8": ("dcmdrle", "mf8 +tb"),
    "dcmcrle big": ("dcmdrle", "big +te"),
    "dcmcjpls": ("dcmdjpls", "mf16 +te"),
    "dcmcjpls -ot +fs 1": ("dcmdjpls", "mf16 +te"),
}
NATIVE_CASES = [c for c in CASES if c not in ENCAPSULATED]
