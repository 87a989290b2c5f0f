"""``dicomnet store HOST PORT PATH...``: C-STORE files and folders to a peer.

Planning reads only the File Meta group of each file (SOP Class, SOP
Instance, Transfer Syntax): the association proposes one presentation context
per SOP class for the uncompressed syntaxes (the file's own first) and one
per SOP class and encapsulated syntax found. A set that needs more than the
128 contexts an association can carry (PS3.8 9.3.2.2: odd IDs 1-255) is sent
over several associations, one after the other. The data sets themselves go
out from the memory-mapped files (see :mod:`dicomnet.dimse.scu`).
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from dicomnet.cli.common import (EXIT_ASSOCIATION, EXIT_FAILURE, EXIT_NETWORK, EXIT_OK, EXIT_USAGE, Output,
                                 busy_poll, fail, tls_context)
from dicomnet.cli.progress import Progress, format_rate
from dicomnet.errors import (
    AssociationAborted,
    AssociationError,
    AssociationRejected,
    DicomNetError,
    DicomParseError,
    DicomTimeoutError,
)

__all__ = ["add_parser", "run", "FilePlan", "plan_file", "collect_files", "plan_contexts", "guarded",
           "MAX_CONTEXTS"]

#: Presentation contexts one A-ASSOCIATE-RQ can carry (odd context IDs 1..255).
MAX_CONTEXTS = 128
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_IMPLICIT_LE = "1.2.840.10008.1.2"
_META_HEAD = 132 + 12      # preamble, "DICM", (0002,0000) UL element
_MAX_META = 1 << 20        # a File Meta group larger than this is not believed


def add_parser(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    """Register the ``store`` subcommand."""
    p = subparsers.add_parser(
        "store", parents=[parent], help="C-STORE DICOM files and folders to a peer",
        description="Send Part 10 files (folders are searched recursively) with C-STORE over one "
                    "association. Exit 0 when every instance was stored (success or warning).")
    p.add_argument("host", help="the peer's host name or address")
    p.add_argument("port", type=int, help="the peer's TCP port")
    p.add_argument("paths", nargs="+", metavar="PATH", help="DICOM files or folders")
    p.add_argument("--transfer-syntax", metavar="UID", default=None,
                   help="send every instance in this transfer syntax (uncompressed data sets are "
                        "transcoded; compressed ones must already be in it)")
    p.add_argument("--max-pdu", type=int, default=None, metavar="N",
                   help="largest P-DATA PDU we accept (0: no limit)")
    p.add_argument("--async-ops", type=int, default=1, metavar="N",
                   help="propose an asynchronous operations window: up to N C-STOREs outstanding when the "
                        "peer accepts it (default 1: one at a time, and no proposal -- some peers mishandle it)")
    p.set_defaults(run=run)


@dataclass
class FilePlan:
    """What planning learnt about one file (``error`` set when it cannot be sent)."""

    path: str
    size: int = 0
    sop_class: str | None = None
    sop_instance: str | None = None
    transfer_syntax: str | None = None
    error: str | None = None
    found_in_folder: bool = False


def collect_files(paths: Iterable[str]) -> tuple[list[tuple[str, bool]], list[FilePlan]]:
    """Every file under ``paths`` as ``(path, found in a folder)`` (folders
    recursively, sorted); missing paths as errors."""
    files: list[tuple[str, bool]] = []
    missing: list[FilePlan] = []
    for path in paths:
        if os.path.isdir(path):
            for folder, dirs, names in os.walk(path):
                dirs.sort()
                files.extend((os.path.join(folder, n), True) for n in sorted(names))
        elif os.path.isfile(path):
            files.append((path, False))
        else:
            missing.append(FilePlan(path, error="no such file or folder"))
    return files, missing


def _text(ds: Any, keyword: str) -> str | None:
    value = ds.get(keyword) if ds is not None else None
    text = str(value).strip("\0 ") if value is not None else ""
    return text or None


def plan_file(path: str) -> FilePlan:
    """Read the File Meta group of ``path`` only (a file without one is read up
    to its Pixel Data). Never raises: problems go into ``error``."""
    from dicomnet.dicom.reader import read_dataset, read_file

    plan = FilePlan(path)
    try:
        plan.size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(_META_HEAD)
            meta = None
            if len(head) == _META_HEAD and head[128:132] == b"DICM" and head[132:136] == b"\x02\x00\x00\x00" \
                    and head[136:138] == b"UL":
                group_length = int.from_bytes(head[140:144], "little")
                if group_length <= _MAX_META:
                    body = head[132:] + f.read(group_length)
                    if len(body) == 12 + group_length:
                        meta = read_dataset(body, transfer_syntax=_EXPLICIT_LE)
        if meta is not None:
            plan.sop_class = _text(meta, "MediaStorageSOPClassUID")
            plan.sop_instance = _text(meta, "MediaStorageSOPInstanceUID")
            plan.transfer_syntax = _text(meta, "TransferSyntaxUID")
        if not (plan.sop_class and plan.sop_instance and plan.transfer_syntax):
            # No (or an incomplete) File Meta group: read the data set's own UIDs.
            ds = read_file(path, stop_before_pixels=True)
            plan.sop_class = plan.sop_class or _text(ds, "SOPClassUID")
            plan.sop_instance = plan.sop_instance or _text(ds, "SOPInstanceUID")
            plan.transfer_syntax = plan.transfer_syntax or ds.transfer_syntax
        if not plan.sop_class or not plan.sop_instance:
            plan.error = "not a DICOM instance (no SOP Class/Instance UID)"
    except DicomParseError as exc:
        plan.error = f"not readable as DICOM: {exc}"
    except OSError as exc:
        plan.error = exc.strerror or str(exc)
    except (DicomNetError, ValueError) as exc:
        plan.error = f"not readable as DICOM: {exc}"
    return plan


def _encapsulated(uid: str) -> bool:
    from dicomnet.types.transfer_syntax import transfer_syntax

    try:
        return bool(transfer_syntax(uid).encapsulated)
    except KeyError:
        return True     # unknown: only sendable as it is


def context_key(plan: FilePlan, wanted: str | None) -> tuple[str, tuple[str, ...]]:
    """The presentation context (abstract syntax, transfer syntaxes) a file needs."""
    assert plan.sop_class is not None
    own = plan.transfer_syntax or _EXPLICIT_LE
    if wanted is not None:
        return plan.sop_class, (wanted,)
    if _encapsulated(own):
        return plan.sop_class, (own,)
    syntaxes = [own] + [ts for ts in (_EXPLICIT_LE, _IMPLICIT_LE) if ts != own]
    return plan.sop_class, tuple(syntaxes)


def plan_contexts(plans: list[FilePlan], wanted: str | None,
                  limit: int = MAX_CONTEXTS) -> list[tuple[list[tuple[str, tuple[str, ...]]], list[FilePlan]]]:
    """Split the files into batches whose contexts fit one association each."""
    batches: list[tuple[list[tuple[str, tuple[str, ...]]], list[FilePlan]]] = []
    index: dict[tuple[str, tuple[str, ...]], int] = {}
    for plan in plans:
        key = context_key(plan, wanted)
        if key not in index:
            if not batches or len(batches[-1][0]) >= limit:
                batches.append(([], []))
            index[key] = len(batches) - 1
            batches[-1][0].append(key)
        batches[index[key]][1].append(plan)
    return batches


def _carried(negotiated: Any, plan: FilePlan, wanted: str | None) -> bool:
    """Whether an accepted context can carry the file (the rule of
    :func:`dicomnet.dimse.scu.prepare_store`)."""
    own = plan.transfer_syntax or _EXPLICIT_LE
    for ctx in negotiated.contexts.values():
        if ctx.abstract_syntax != plan.sop_class or not ctx.as_scu:
            continue
        ts = ctx.transfer_syntax
        if wanted is not None:
            if ts == wanted and (ts == own or not (_encapsulated(own) or _encapsulated(ts))):
                return True
        elif ts == own or not (_encapsulated(own) or _encapsulated(ts)):
            return True
    return False


def guarded(out: Output, base: dict[str, Any], where: str, body: Callable[[], int]) -> int:
    """Run ``body`` and turn network and association errors into a message,
    a JSON record and the exit code of :mod:`dicomnet.cli.common`."""
    try:
        return body()
    except AssociationRejected as exc:
        return fail(out, base, f"association rejected by {where}: {exc}", exc, EXIT_ASSOCIATION)
    except AssociationAborted as exc:
        return fail(out, base, f"association with {where} aborted: {exc}", exc, EXIT_ASSOCIATION)
    except DicomTimeoutError as exc:
        return fail(out, base, f"{where}: {exc}", exc, EXIT_NETWORK)
    except AssociationError as exc:
        return fail(out, base, f"{where}: {exc}", exc, EXIT_ASSOCIATION)
    except OSError as exc:
        return fail(out, base, f"cannot connect to {where}: {exc.strerror or exc}", exc, EXIT_NETWORK)
    except DicomNetError as exc:
        return fail(out, base, f"{where}: {exc}", exc, EXIT_FAILURE)


def make_client(args: argparse.Namespace) -> Any:
    """A :class:`dicomnet.Client` with the command line's AE title and timeouts."""
    from dicomnet.client import Client

    kwargs: dict[str, Any] = {}
    if getattr(args, "max_pdu", None) is not None:
        kwargs["max_pdu"] = args.max_pdu
    return Client(args.aet, connect_timeout=args.connect_timeout, read_timeout=args.timeout,
                  write_timeout=args.timeout, dimse_timeout=args.timeout, artim_timeout=args.timeout,
                  tls=tls_context(args, server_side=False), busy_poll=busy_poll(args), **kwargs)


class _Run:
    """The state of one ``store`` run (so the error path can report progress)."""

    def __init__(self, args: argparse.Namespace, out: Output) -> None:
        self.args = args
        self.out = out
        self.sent = 0
        self.sent_bytes = 0
        self.failed: list[tuple[FilePlan, str]] = []
        self.base = {"command": "store", "host": args.host, "port": args.port, "calling_ae": args.aet,
                     "called_ae": args.aec}

    def failure(self, plan: FilePlan, reason: str, status: int | None = None) -> None:
        self.failed.append((plan, reason))
        self.out.line(f"failed: {plan.path}: {reason}")
        self.out.record({**self.base, "file": plan.path, "sop_instance_uid": plan.sop_instance, "ok": False,
                         "status": status, "error": reason})

    def success(self, plan: FilePlan, status: int) -> None:
        self.sent += 1
        self.sent_bytes += plan.size
        self.out.record({**self.base, "file": plan.path, "sop_instance_uid": plan.sop_instance, "ok": True,
                         "status": status, "bytes": plan.size})


def run(args: argparse.Namespace) -> int:
    """Run ``store``; the exit code (see :mod:`dicomnet.cli.common`)."""
    out = Output(args)
    if not 0 <= args.async_ops <= 0xFFFF:
        out.error("--async-ops must be 0..65535 (0: no limit)")
        return EXIT_USAGE
    state = _Run(args, out)
    files, missing = collect_files(args.paths)
    plans = []
    for path, in_folder in files:
        plan = plan_file(path)
        plan.found_in_folder = in_folder
        plans.append(plan)
    skipped = [p for p in plans if p.error and p.found_in_folder and p.error.startswith("not ")]
    for plan in skipped:
        # Like storescu --scan-directories: other files in a folder are not DICOM instances.
        logging.getLogger("dicomnet").warning("skipped %s: %s", plan.path, plan.error)
    skipped_ids = {id(p) for p in skipped}
    for plan in missing + [p for p in plans if p.error and id(p) not in skipped_ids]:
        state.failure(plan, plan.error or "unreadable")
    good = [p for p in plans if not p.error]
    where = f"{args.aec} at {args.host}:{args.port}"
    try:
        client = make_client(args)
    except ValueError as exc:
        out.error(str(exc))
        return EXIT_FAILURE
    progress = Progress(len(good), sum(p.size for p in good), label="store",
                        enabled=None if not (args.quiet or args.json) else False)
    start = time.perf_counter()
    code = EXIT_OK
    remaining = {id(p): p for p in good}     # not yet answered (insertion-ordered)
    try:
        def body() -> int:
            for contexts, batch in plan_contexts(good, args.transfer_syntax):
                _send_batch(client, args, state, progress, contexts, batch, remaining)
            return EXIT_OK
        code = guarded(out, state.base, where, body)
    finally:
        progress.close()
    for plan in remaining.values():   # never attempted: the association failed
        state.failed.append((plan, "not sent: the association failed"))
    elapsed = time.perf_counter() - start
    total = len(missing) + len(plans) - len(skipped)
    summary = (f"sent {state.sent} of {total} instance(s), {state.sent_bytes / 1e6:.1f} MB in {elapsed:.2f} s "
               f"({format_rate(state.sent_bytes, elapsed)}, {state.sent / elapsed if elapsed else 0:.1f} "
               f"instances/s); {len(state.failed)} failed"
               + (f"; {len(skipped)} non-DICOM file(s) skipped" if skipped else ""))
    if not out.json:
        if not args.quiet or state.failed:
            print(summary, file=out.out)
    out.record({**state.base, "summary": True, "ok": not state.failed and code == EXIT_OK, "total": total,
                "sent": state.sent, "failed": len(state.failed), "skipped": len(skipped), "bytes": state.sent_bytes,
                "seconds": round(elapsed, 3),
                "mb_per_s": round(state.sent_bytes / 1e6 / elapsed, 3) if elapsed else None,
                "failures": [{"file": p.path, "error": why} for p, why in state.failed]})
    if code != EXIT_OK:
        return code
    return EXIT_FAILURE if state.failed else EXIT_OK


def _send_batch(client: Any, args: argparse.Namespace, state: _Run, progress: Progress,
                contexts: list[tuple[str, tuple[str, ...]]], batch: list[FilePlan],
                remaining: dict[int, FilePlan]) -> None:
    """One association: send every file of ``batch`` (failures are recorded)."""
    from dicomnet.types.status import is_failure, status_meaning

    wanted = args.transfer_syntax
    with client.associate(args.host, args.port, args.aec, contexts=contexts,
                          async_operations=args.async_ops) as assoc:
        todo: list[FilePlan] = []
        for plan in batch:
            if _carried(assoc.negotiated, plan, wanted):
                todo.append(plan)
            else:
                del remaining[id(plan)]
                own = plan.transfer_syntax or _EXPLICIT_LE
                if wanted is not None and wanted != own and (_encapsulated(wanted) or _encapsulated(own)):
                    reason = (f"cannot be sent in {wanted}: it is in {own}, and only uncompressed data sets "
                              "are transcoded")
                else:
                    reason = (f"the peer accepted no presentation context for SOP class {plan.sop_class} "
                              f"in {wanted or own}")
                state.failure(plan, reason)
                progress.update(0, failed=True)
        position = 0
        while position < len(todo):
            sources = [p.path for p in todo[position:]]
            try:
                for _source, status, comment in assoc.store_many(sources, transfer_syntax=wanted):
                    plan = todo[position]          # answered in the order sent
                    position += 1
                    del remaining[id(plan)]
                    if is_failure(status):
                        reason = f"status 0x{status:04X} ({status_meaning(status, 'storage')})" + (
                            f": {comment}" if comment else "")
                        state.failure(plan, reason, status)
                        progress.update(plan.size, failed=True)
                    else:
                        state.success(plan, status)
                        progress.update(plan.size)
            except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
                # The file went away (or became unreadable) after planning.
                plan = todo[position]
                position += 1
                del remaining[id(plan)]
                state.failure(plan, exc.strerror or str(exc))
                progress.update(0, failed=True)
            except (AssociationError, DicomTimeoutError, OSError):
                raise
            except (DicomNetError, ValueError, TypeError) as exc:
                # This file could not be prepared (the one after the last answered):
                # record it and go on with the rest on the same association.
                plan = todo[position]
                position += 1
                del remaining[id(plan)]
                state.failure(plan, str(exc))
                progress.update(0, failed=True)
