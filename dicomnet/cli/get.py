"""``dicomnet get HOST PORT -k Key=Value ... --out DIR``: C-GET.

The peer sends the instances back as C-STORE sub-operations on our own
association; each data set is streamed into ``DIR/<SOPInstanceUID>.dcm`` as it
arrives (temporary name first, renamed once complete). The SOP Instance UID
must pass :func:`dicomnet.types.uids.is_valid_uid` before it names a file: a
peer sending ``../x`` gets a failed sub-operation, not a file outside DIR.

The association proposes Verification, the Q/R classes and the storage SOP
classes of dicomnet's default proposal (uncompressed) with SCP/SCU Role
Selection. Exit codes as for ``move``.
"""
from __future__ import annotations

import argparse
import os
from typing import Any

from dicomnet.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Output
from dicomnet.cli.move import add_retrieve_options, counters, retrieve_query
from dicomnet.cli.progress import Progress, format_rate
from dicomnet.cli.store import guarded, make_client
from dicomnet.cli.store_scp import safe_uid

__all__ = ["add_parser", "run", "safe_target"]


def add_parser(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    """Register the ``get`` subcommand."""
    p = subparsers.add_parser(
        "get", parents=[parent], help="C-GET: retrieve instances into a folder",
        description="Send one C-GET and write each instance the peer sends back as DIR/<SOPInstanceUID>.dcm. "
                    "Exit 0 when every sub-operation succeeded.")
    add_retrieve_options(p)
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="folder for the received files")
    p.set_defaults(run=run)


def safe_target(folder: str) -> Any:
    """``store_to`` for :meth:`Association.get`: the file for one C-STORE-RQ,
    named by its validated SOP Instance UID (ValueError otherwise)."""
    def target(command: Any) -> str:
        uid = safe_uid(command.get("AffectedSOPInstanceUID"))
        if uid is None:
            raise ValueError(f"refused: SOP Instance UID {command.get('AffectedSOPInstanceUID')!r} "
                             "is not a valid UID")
        return os.path.join(folder, uid + ".dcm")
    return target


def run(args: argparse.Namespace) -> int:
    """Run ``get``; the exit code (see :mod:`dicomnet.cli.move`)."""
    from dicomnet.dimse.retrieve import retrieve_contexts
    from dicomnet.errors import DimseStatusError
    from dicomnet.types.status import is_failure, status_meaning

    out = Output(args)
    base: dict[str, Any] = {"command": "get", "host": args.host, "port": args.port, "calling_ae": args.aet,
                            "called_ae": args.aec}
    try:
        query = retrieve_query(args)
        client = make_client(args)
        folder = os.path.abspath(args.out)
        os.makedirs(folder, exist_ok=True)
    except (KeyError, ValueError, TypeError, OSError) as exc:
        out.error(str(exc).strip("'\""))
        return EXIT_USAGE
    where = f"{args.aec} at {args.host}:{args.port}"
    final: dict[str, Any] = {}
    progress = Progress(None, label="get", enabled=None if not (args.quiet or args.json) else False)

    def body() -> int:
        contexts, roles = retrieve_contexts(models=[args.model])
        with client.associate(args.host, args.port, args.aec, contexts=contexts,
                              role_selections=roles) as assoc:
            result = assoc.get(query, model=args.model, store_to=safe_target(folder))
            try:
                for path in result:
                    size = os.path.getsize(path)
                    progress.total = (result.remaining or 0) + progress.count + 1 if result.remaining is not None \
                        else None
                    progress.update(size)
                    out.record({**base, "event": "instance", "file": str(path), "bytes": size})
                final.update(status=result.status, comment=result.error_comment)
            except DimseStatusError as exc:
                final.update(status=exc.status, comment=result.error_comment)
            final.update(counters(result), failed_instances=result.failed_instances)
        return EXIT_OK

    try:
        code = guarded(out, base, where, body)
    finally:
        progress.close()
    if code != EXIT_OK:
        return code
    status = final["status"]
    words = status_meaning(status, "get")
    ok = not is_failure(status) and not final.get("failed")
    elapsed = progress.elapsed
    text = (f"C-GET: {progress.count} instance(s) received into {folder}, {progress.nbytes / 1e6:.1f} MB "
            f"({format_rate(progress.nbytes, elapsed)}); {final['failed'] or 0} failed, {final['warning'] or 0} "
            f"warning; final status {words} (0x{status:04X})" + (f": {final['comment']}" if final["comment"] else ""))
    if not out.json:
        if ok and not args.quiet:
            print(text, file=out.out)
        elif not ok:
            out.error(text)
    out.record({**base, "summary": True, "ok": ok, "status": status, "status_text": words,
                "error_comment": final["comment"], "received": progress.count, "bytes": progress.nbytes,
                **{k: final[k] for k in ("remaining", "completed", "failed", "warning", "failed_instances")}})
    return EXIT_OK if ok else EXIT_FAILURE
