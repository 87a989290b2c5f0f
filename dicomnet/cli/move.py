"""``dicomnet move HOST PORT --dest AET -k Key=Value ...``: C-MOVE.

The peer sends what the Identifier names to the AE title ``--dest`` (which it
must know by address). The Identifier holds the Query/Retrieve Level and the
unique keys (``-k StudyInstanceUID=...``; hierarchical retrieval needs the
unique keys of the levels above too). Each Pending response's counters are a
line (``-v``) or a JSON object; the summary gives the final counters.

Exit codes: 0 when the final status is Success (or a warning with no failed
sub-operation), 1 when it is a failure -- or a warning because some
sub-operations failed (0xB000) -- 3/4 for association/network errors.
"""
from __future__ import annotations

import argparse
from typing import Any

from dicomnet.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Output
from dicomnet.cli.find import LEVELS, build_query, parse_keys
from dicomnet.cli.store import guarded, make_client

__all__ = ["add_parser", "run", "add_retrieve_options", "retrieve_query"]


def add_retrieve_options(p: argparse.ArgumentParser) -> None:
    """HOST, PORT, -k, --level and --model (shared by move and get)."""
    p.add_argument("host", help="the peer's host name or address")
    p.add_argument("port", type=int, help="the peer's TCP port")
    p.add_argument("-k", "--key", action="append", default=[], metavar="KEY=VALUE",
                   help="a unique key, e.g. StudyInstanceUID=1.2.3 (keyword or gggg,eeee; repeatable)")
    p.add_argument("--level", choices=LEVELS, default="STUDY", type=str.upper,
                   help="Query/Retrieve Level (default: %(default)s)")
    p.add_argument("--model", choices=("patient", "study"), default="study",
                   help="information model (default: %(default)s)")


def add_parser(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    """Register the ``move`` subcommand."""
    p = subparsers.add_parser(
        "move", parents=[parent], help="C-MOVE: have a peer send instances to an AE",
        description="Send one C-MOVE: the peer C-STOREs the instances the keys name to --dest. "
                    "Exit 0 when every sub-operation succeeded.")
    add_retrieve_options(p)
    p.add_argument("--dest", required=True, metavar="AET", help="the move destination's AE title")
    p.set_defaults(run=run)


def retrieve_query(args: argparse.Namespace) -> Any:
    """The Identifier of a C-MOVE/C-GET: the level and the ``-k`` keys only."""
    return build_query(parse_keys(args.key), args.level, args.model, default_keys=False)


def counters(result: Any) -> dict[str, Any]:
    """The sub-operation counters of a Move/GetResult (or RetrieveProgress)."""
    return {"remaining": result.remaining, "completed": result.completed, "failed": result.failed,
            "warning": result.warning}


def run(args: argparse.Namespace) -> int:
    """Run ``move``; the exit code (see the module docstring)."""
    from dicomnet.dimse.retrieve import MOVE_MODELS
    from dicomnet.errors import DimseStatusError
    from dicomnet.types.status import is_failure, status_meaning

    out = Output(args)
    base: dict[str, Any] = {"command": "move", "host": args.host, "port": args.port, "calling_ae": args.aet,
                            "called_ae": args.aec, "destination_ae": args.dest}
    try:
        query = retrieve_query(args)
        client = make_client(args)
    except (KeyError, ValueError, TypeError) as exc:
        out.error(str(exc).strip("'\""))
        return EXIT_USAGE
    where = f"{args.aec} at {args.host}:{args.port}"
    final: dict[str, Any] = {}

    def body() -> int:
        with client.associate(args.host, args.port, args.aec, contexts=[MOVE_MODELS[args.model]]) as assoc:
            result = assoc.move(query, args.dest, model=args.model)
            try:
                for progress in result:
                    if args.verbose and not out.json:
                        out.line(f"pending: {progress.completed} completed, {progress.failed} failed, "
                                 f"{progress.warning} warning, {progress.remaining} remaining")
                    out.record({**base, "event": "pending", "status": progress.status,
                                **counters(progress)})
                final.update(status=result.status, comment=result.error_comment)
            except DimseStatusError as exc:
                final.update(status=exc.status, comment=result.error_comment)
            final.update(counters(result), failed_instances=result.failed_instances)
        return EXIT_OK

    code = guarded(out, base, where, body)
    if code != EXIT_OK:
        return code
    status = final["status"]
    words = status_meaning(status, "move")
    ok = not is_failure(status) and not final.get("failed")
    text = (f"C-MOVE to {args.dest}: {final['completed'] or 0} completed, {final['failed'] or 0} failed, "
            f"{final['warning'] or 0} warning; final status {words} (0x{status:04X})"
            + (f": {final['comment']}" if final["comment"] else ""))
    if not out.json:
        if ok and not args.quiet:
            print(text, file=out.out)
        elif not ok:
            out.error(text)
        for uid in final["failed_instances"] if not ok else ():
            print(f"failed instance: {uid}", file=out.err)
    out.record({**base, "summary": True, "ok": ok, "status": status, "status_text": words,
                "error_comment": final["comment"], **{k: final[k] for k in ("remaining", "completed", "failed",
                                                                             "warning", "failed_instances")}})
    return EXIT_OK if ok else EXIT_FAILURE
