"""``dicomnet echo HOST PORT``: C-ECHO (Verification, PS3.4 A) against a peer."""
from __future__ import annotations

import argparse
import time
from typing import Any

from dicomnet.cli.common import (EXIT_ASSOCIATION, EXIT_FAILURE, EXIT_NETWORK, EXIT_OK, Output, busy_poll, fail,
                                 tls_context)
from dicomnet.errors import (
    AssociationAborted,
    AssociationRejected,
    DicomNetError,
    DicomTimeoutError,
    DimseStatusError,
)

__all__ = ["add_parser", "run"]

_VERIFICATION = "1.2.840.10008.1.1"


def add_parser(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    """Register the ``echo`` subcommand."""
    p = subparsers.add_parser("echo", parents=[parent], help="C-ECHO a DICOM peer",
                              description="Open an association, send C-ECHO (Verification), release. "
                                          "Exit 0 when every C-ECHO succeeds.")
    p.add_argument("host", help="the peer's host name or address")
    p.add_argument("port", type=int, help="the peer's TCP port")
    p.add_argument("-n", "--count", type=int, default=1, metavar="N",
                   help="send N C-ECHOs on the association (default: %(default)s)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``echo``; the exit code (see :mod:`dicomnet.cli.common`)."""
    from dicomnet.client import Client
    from dicomnet.types.status import status_meaning

    out = Output(args)
    base: dict[str, Any] = {"command": "echo", "host": args.host, "port": args.port,
                            "calling_ae": args.aet, "called_ae": args.aec}
    if args.count < 1:
        out.error("--count must be at least 1")
        return EXIT_FAILURE
    where = f"{args.aec} at {args.host}:{args.port}"
    try:
        client = Client(args.aet, connect_timeout=args.connect_timeout, read_timeout=args.timeout,
                        write_timeout=args.timeout, dimse_timeout=args.timeout, artim_timeout=args.timeout,
                        tls=tls_context(args, server_side=False), busy_poll=busy_poll(args))
    except (ValueError, OSError) as exc:
        out.error(str(exc))
        out.record({**base, "ok": False, "error": str(exc), "error_type": type(exc).__name__})
        return EXIT_FAILURE
    failures = 0
    try:
        start = time.perf_counter()
        with client.associate(args.host, args.port, args.aec, contexts=[_VERIFICATION]) as assoc:
            assoc_ms = (time.perf_counter() - start) * 1000
            for n in range(1, args.count + 1):
                t0 = time.perf_counter()
                try:
                    status = assoc.echo()
                    comment = None
                except DimseStatusError as exc:
                    status, comment = exc.status, exc.comment
                    failures += 1
                ms = (time.perf_counter() - t0) * 1000
                words = status_meaning(status)
                out.line(f"C-ECHO {n} to {where}: {words} (0x{status:04X}) in {ms:.1f} ms"
                         + (f": {comment}" if comment else ""))
                out.record({**base, "ok": status == 0, "status": status, "status_text": words,
                            "error_comment": comment, "sequence": n, "elapsed_ms": round(ms, 3),
                            "association_ms": round(assoc_ms, 3)})
    except AssociationRejected as exc:
        return fail(out, base, f"association rejected by {where}: {exc}", exc, EXIT_ASSOCIATION)
    except AssociationAborted as exc:
        return fail(out, base, f"association with {where} aborted: {exc}", exc, EXIT_ASSOCIATION)
    except DicomTimeoutError as exc:
        return fail(out, base, f"{where}: {exc}", exc, EXIT_NETWORK)
    except OSError as exc:
        return fail(out, base, f"cannot connect to {args.host}:{args.port}: {exc.strerror or exc}", exc,
                     EXIT_NETWORK)
    except DicomNetError as exc:
        return fail(out, base, f"{where}: {exc}", exc, EXIT_FAILURE)
    return EXIT_FAILURE if failures else EXIT_OK
