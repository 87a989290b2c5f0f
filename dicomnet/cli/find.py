"""``dicomnet find HOST PORT -k Key=Value ...``: C-FIND against a peer.

Keys are DICOM keywords or tags (``PatientName``, ``0010,0010``,
``00100010``); ``-k Key`` without ``=`` asks for the attribute (universal
match). Without ``--no-default-keys`` a few useful return keys of the query
level are added (never the unique keys of the levels above it, which a
hierarchical C-FIND must give a single value). Matches print as a table of
plain text columns, or with ``--json`` as one DICOM JSON Model object per line.
"""
from __future__ import annotations

import argparse
from typing import Any

from dicomnet.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Output
from dicomnet.cli.store import guarded, make_client

__all__ = ["add_parser", "run", "parse_keys", "build_query", "DEFAULT_KEYS"]

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")

#: Return keys added at each level (``--no-default-keys`` leaves them out).
DEFAULT_KEYS: dict[str, tuple[str, ...]] = {
    "PATIENT": ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"),
    "STUDY": ("PatientName", "PatientID", "StudyDate", "AccessionNumber", "StudyDescription",
              "StudyInstanceUID"),
    "SERIES": ("Modality", "SeriesNumber", "SeriesDescription", "SeriesInstanceUID"),
    "IMAGE": ("InstanceNumber", "SOPClassUID", "SOPInstanceUID"),
    "WORKLIST": ("PatientName", "PatientID", "AccessionNumber", "ScheduledProcedureStepSequence"),
}
_NUMERIC = {"US": int, "SS": int, "UL": int, "SL": int, "UV": int, "SV": int, "FL": float, "FD": float}
_HIDDEN = (0x00080005, 0x00080052)   # Specific Character Set, Query/Retrieve Level: not columns


def add_parser(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    """Register the ``find`` subcommand."""
    p = subparsers.add_parser(
        "find", parents=[parent], help="C-FIND: query a peer",
        description="Send one C-FIND and print the matches as a table (or --json: DICOM JSON Model, "
                    "one object per line). Exit 0 when the final status is Success.")
    p.add_argument("host", help="the peer's host name or address")
    p.add_argument("port", type=int, help="the peer's TCP port")
    p.add_argument("-k", "--key", action="append", default=[], metavar="KEY[=VALUE]",
                   help="a matching key (KEY=VALUE) or return key (KEY); keyword or gggg,eeee; repeatable")
    p.add_argument("--level", choices=LEVELS, default=None, type=str.upper,
                   help="Query/Retrieve Level (default: STUDY; not used for the worklist model)")
    p.add_argument("--model", choices=("patient", "study", "worklist"), default="study",
                   help="information model (default: %(default)s)")
    p.add_argument("--no-default-keys", action="store_true",
                   help="send only the keys given with -k")
    p.set_defaults(run=run)


def _tag(key: str) -> int:
    from dicomnet.dicom.dataset import tag_of

    text = key.strip().strip("()")
    compact = text.replace(",", "")
    if len(compact) == 8 and all(c in "0123456789abcdefABCDEF" for c in compact) and (
            "," in text or not text.isalpha()):
        return int(compact, 16)
    return tag_of(text)


def parse_keys(keys: list[str]) -> list[tuple[int, str | None]]:
    """``KEY[=VALUE]`` strings as ``(tag, value or None)``; KeyError for an unknown keyword."""
    out = []
    for item in keys:
        key, sep, value = item.partition("=")
        out.append((_tag(key), value if sep else None))
    return out


def _value(vr: str, text: str | None) -> Any:
    if text is None or text == "":
        return [] if vr == "SQ" else None
    if vr == "SQ":
        raise ValueError("a sequence key takes no value here (give it as KEY to ask for it)")
    convert = _NUMERIC.get(vr)
    parts = text.split("\\")
    values = [convert(p) for p in parts] if convert else parts
    return values[0] if len(values) == 1 else values


def build_query(keys: list[tuple[int, str | None]], level: str | None, model: str,
                default_keys: bool = True) -> Any:
    """The Identifier: the level, the default return keys, then the given keys."""
    from dicomnet.dicom.dataset import Dataset
    from dicomnet.dicom.dictionary import lookup

    ds = Dataset()
    if model == "worklist":
        wanted_level = "WORKLIST"
    else:
        wanted_level = level or "STUDY"
        ds.set("QueryRetrieveLevel", wanted_level)
    if default_keys:
        for keyword in DEFAULT_KEYS[wanted_level]:
            ds.set(keyword, [] if keyword.endswith("Sequence") else None)
    for tag, text in keys:
        entry = lookup(tag)
        if entry is None:
            raise KeyError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) is not in the dictionary")
        ds.set(tag, _value(entry.vrs[0], text))
    # Command-line text is Unicode: a non-ASCII value, without a Specific
    # Character Set given, goes as UTF-8 (ISO_IR 192), declared in the query.
    if "SpecificCharacterSet" not in ds and any(not text.isascii() for _, text in keys if text):
        ds.set("SpecificCharacterSet", "ISO_IR 192")
    # Encoded here, so that a value that cannot be sent is a usage error
    # before any connection (not reported as if the peer had caused it).
    from dicomnet.dicom.writer import encode_dataset

    encode_dataset(ds, "1.2.840.10008.1.2.1")
    return ds


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        if value and all(hasattr(v, "keys") for v in value):
            return f"<{len(value)} item(s)>"
        return "\\".join(_cell(v) for v in value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


def _table(columns: list[tuple[int, str]], rows: list[list[str]]) -> list[str]:
    headers = [name for _, name in columns]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return lines


def run(args: argparse.Namespace) -> int:
    """Run ``find``; the exit code (see :mod:`dicomnet.cli.common`)."""
    from dicomnet.cli.jsonmodel import to_json_dict
    from dicomnet.dicom.dictionary import keyword_of
    from dicomnet.errors import DimseStatusError
    from dicomnet.types.status import is_failure, status_meaning

    out = Output(args)
    base: dict[str, Any] = {"command": "find", "host": args.host, "port": args.port, "calling_ae": args.aet,
                            "called_ae": args.aec}
    if args.model == "worklist" and args.level:
        out.error("--level is not used with --model worklist")
        return EXIT_USAGE
    try:
        keys = parse_keys(args.key)
        query = build_query(keys, args.level, args.model, not args.no_default_keys)
        client = make_client(args)
    except (KeyError, ValueError, TypeError) as exc:
        out.error(str(exc).strip("'\""))
        return EXIT_USAGE
    # Columns: the default return keys in their order, then the -k keys as given.
    from dicomnet.dicom.dataset import tag_of

    defaults = [] if args.no_default_keys else [
        tag_of(k) for k in DEFAULT_KEYS["WORKLIST" if args.model == "worklist" else (args.level or "STUDY")]]
    order = list(dict.fromkeys(defaults + [tag for tag, _ in keys]))
    columns = [(tag, keyword_of(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})")
               for tag in order if tag not in _HIDDEN]
    where = f"{args.aec} at {args.host}:{args.port}"
    rows: list[list[str]] = []
    final: dict[str, Any] = {}

    def body() -> int:
        from dicomnet.dimse.scu import FIND_MODELS

        with client.associate(args.host, args.port, args.aec, contexts=[FIND_MODELS[args.model]]) as assoc:
            result = assoc.find(query, model=args.model)
            try:
                for match in result:
                    rows.append([_cell(match[tag].value if tag in match else None) for tag, _ in columns])
                    if out.json:
                        out.record(to_json_dict(match))
                status, comment = result.status, None
            except DimseStatusError as exc:
                status, comment = exc.status, exc.comment
        final.update(status=status, comment=comment)
        return EXIT_OK

    code = guarded(out, base, where, body)
    if code != EXIT_OK:
        return code
    status = final["status"]
    words = status_meaning(status, "find")
    ok = not is_failure(status)
    if not out.json:
        if rows and not args.quiet:
            for line in _table(columns, rows):
                print(line, file=out.out)
        if not args.quiet or not ok:
            stream = out.out if ok else out.err
            print(f"{len(rows)} match(es); final status {words} (0x{status:04X})"
                  + (f": {final['comment']}" if final["comment"] else ""), file=stream)
    # The summary line is not a DICOM JSON object: it carries "command" and "summary".
    out.record({**base, "summary": True, "ok": ok, "matches": len(rows), "status": status,
                "status_text": words, "error_comment": final["comment"]})
    return EXIT_OK if ok else EXIT_FAILURE
