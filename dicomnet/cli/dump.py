"""``dicomnet dump FILE...``: print a DICOM file's elements (like dcmtk's dcmdump).

One line per element: tag, VR, value length (``u/l``: undefined), keyword and
value; sequence items are indented under their sequence; Pixel Data and other
bulk values are summarised. ``--json`` prints each file's data set in the DICOM
JSON Model (PS3.18 F.2) on one line instead.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

from dicomnet.cli.common import EXIT_FAILURE, EXIT_OK, Output

__all__ = ["add_parser", "run", "dump_lines"]

_F_UNDEFINED, _F_ENCAPSULATED = 1, 8   # element index flags (dicomnet._codec.elements)
_BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})


def add_parser(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    """Register the ``dump`` subcommand."""
    p = subparsers.add_parser("dump", parents=[parent], help="print the elements of DICOM files",
                              description="Print the File Meta and data set of DICOM files, one element "
                                          "a line; --json prints the DICOM JSON Model (PS3.18 F.2).")
    p.add_argument("files", nargs="+", metavar="FILE", help="DICOM file(s) to print")
    p.add_argument("--width", type=int, default=64, metavar="N",
                   help="cut values longer than N characters (0: never; default: %(default)s)")
    p.add_argument("--no-meta", action="store_true", help="leave out the File Meta Information")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``dump``; the exit code."""
    from dicomnet.cli.jsonmodel import to_json_dict
    from dicomnet.dicom.reader import read_file
    from dicomnet.errors import DicomNetError

    out = Output(args)
    code = EXIT_OK
    for path in args.files:
        try:
            ds = read_file(path)
            if out.json:
                out.record(to_json_dict(ds))
            else:
                lines = list(dump_lines(ds, width=args.width, meta=not args.no_meta))
                if len(args.files) > 1:
                    out.line(f"# {path}")
                for line in lines:
                    out.line(line)
        except BrokenPipeError:
            raise
        except (DicomNetError, OSError, ValueError) as exc:
            out.error(f"{path}: {exc}")
            code = EXIT_FAILURE
    return code


def dump_lines(ds: Any, *, width: int = 64, meta: bool = True) -> Iterator[str]:
    """The dump of ``ds`` (a Dataset read from a file), line by line."""
    from dicomnet.types.uids import name_of

    if meta and ds.file_meta is not None:
        yield "# File Meta Information"
        yield from _elements(ds.file_meta, "", width)
    syntax = ds.transfer_syntax
    named = _uid_name(name_of, syntax) if syntax else None
    yield f"# Data set: {named or syntax or 'transfer syntax unknown'}"
    yield from _elements(ds, "", width)


def _uid_name(name_of: Any, uid: str) -> str | None:
    try:
        return name_of(uid)
    except (KeyError, ValueError):
        return None


def _flags(ds: Any, tag: int) -> int:
    """The element index flags of an element read from bytes (0 for one set in Python)."""
    index, idx = ds.__dict__.get("_index"), ds.__dict__.get("_raw", {}).get(tag)
    if index is None or idx is None or tag in ds.__dict__.get("_vrs", {}):
        return 0
    return int(index.flags(idx))


def _elements(ds: Any, indent: str, width: int) -> Iterator[str]:
    for elem in ds:
        length = elem.length
        flags = _flags(ds, elem.tag)
        # Undefined length on the wire (flag 1) is shown as dcmdump does: "u/l".
        shown = "u/l" if flags & _F_UNDEFINED else ("-" if length is None else str(length))
        keyword = elem.keyword or ("PrivateTag" if (elem.tag >> 16) & 1 else "UnknownTag")
        head = f"{indent}({elem.tag >> 16:04X},{elem.tag & 0xFFFF:04X}) {elem.VR} {shown:>6} {keyword:<32}"
        if elem.VR == "SQ":
            items = elem.value or []
            yield f"{head} ({len(items)} item{'s' if len(items) != 1 else ''})"
            for n, item in enumerate(items, 1):
                yield f"{indent}  (FFFE,E000) item {n}"
                yield from _elements(item, indent + "    ", width)
            continue
        yield f"{head} {_value_text(ds, elem, width)}".rstrip()


def _value_text(ds: Any, elem: Any, width: int) -> str:
    vr = elem.VR
    if elem.tag == 0x7FE00010:
        return _pixel_summary(ds, elem, bool(_flags(ds, elem.tag) & _F_ENCAPSULATED))
    value = elem.value
    if vr in _BULK_VRS or isinstance(value, (bytes, bytearray, memoryview)):
        size = len(value) * getattr(value, "itemsize", 1) if value is not None else 0
        if hasattr(value, "nbytes"):
            size = int(value.nbytes)
        if vr not in ("OB", "UN") and hasattr(value, "tolist") and value.size <= 8:
            return "[" + "\\".join(str(v) for v in value.tolist()) + "]"
        if size <= 16 and value is not None:
            return "[" + bytes(memoryview(value).cast("B")).hex(" ") + "]" if size else "(no value)"
        return f"<{size} bytes>"
    if value is None or (isinstance(value, str) and value == ""):
        return "(no value)"
    if hasattr(value, "tolist"):
        value = value.tolist()
    if vr == "AT":
        tags = value if isinstance(value, list) else [value]
        text = "\\".join(f"({t >> 16:04X},{t & 0xFFFF:04X})" for t in tags)
    elif isinstance(value, list):
        text = "\\".join("" if v is None else str(v) for v in value)
    else:
        text = str(value)
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    if width and len(text) > width:
        text = text[:max(width - 3, 1)] + "..."
    return f"[{text}]"


def _pixel_summary(ds: Any, elem: Any, encapsulated: bool) -> str:
    value = elem.value
    rows, cols = ds.get("Rows"), ds.get("Columns")
    frames = ds.get("NumberOfFrames") or 1
    samples = ds.get("SamplesPerPixel") or 1
    bits = ds.get("BitsAllocated")
    photometric = ds.get("PhotometricInterpretation") or "?"
    try:
        frames = int(frames)
    except (TypeError, ValueError):
        frames = 1
    size = int(getattr(value, "nbytes", len(value) if value is not None else 0))
    shape = f"{frames} frame{'s' if frames != 1 else ''} of {rows}x{cols}"
    if samples != 1:
        shape += f"x{samples}"
    kind = "encapsulated" if encapsulated else "native"
    if rows is None or cols is None or bits is None:
        return f"<pixel data: {kind}, {size} bytes>"
    return f"<pixel data: {shape}, {bits}-bit {photometric}, {kind}, {size} bytes>"


def dumps_json(ds: Any) -> str:
    """The data set of ``ds`` as one line of DICOM JSON."""
    from dicomnet.cli.jsonmodel import to_json_dict

    return json.dumps(to_json_dict(ds), ensure_ascii=False, separators=(",", ":"))
