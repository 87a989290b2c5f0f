"""``dicomnet sample-server``: the sample Query/Retrieve SCP on an archive.

The archive is synthetic (``--synthetic``, see
:func:`dicomnet.samples.synthetic.generate`) or read from Part 10 files and
folders (``--dicom PATH...``). The server answers C-ECHO, C-FIND (Patient and
Study Root, four levels), C-STORE (new instances join the archive), C-MOVE to
the destinations given with ``--destination AET=HOST:PORT`` or
``--destinations FILE.json``, C-GET and C-CANCEL; see
:mod:`dicomnet.samples.server`. Logs go to stderr, as plain text or one JSON
object per record (``--log-format json``). SIGINT/SIGTERM stop it cleanly.
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from typing import Any

from dicomnet.cli.common import (EXIT_FAILURE, EXIT_USAGE, Output, StderrHandler, busy_poll, move_tls_context,
                                 tls_context)
from dicomnet.cli.store_scp import add_listen_options, serve_until_signalled, server_limits, storage_contexts

__all__ = ["add_parser", "run", "build_archive"]


def add_parser(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    """Register the ``sample-server`` subcommand."""
    p = subparsers.add_parser(
        "sample-server", parents=[parent], help="the sample Q/R SCP (echo, find, store, move, get)",
        description="Serve a synthetic or on-disk archive: C-ECHO, C-FIND, C-STORE, C-MOVE, C-GET, "
                    "C-CANCEL. --aet is the server's AE title. Stops cleanly on SIGINT/SIGTERM.")
    add_listen_options(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--synthetic", action="store_true", help="generate a synthetic archive")
    source.add_argument("--dicom", nargs="+", metavar="PATH", help="Part 10 files or folders (recursive)")
    syn = p.add_argument_group("synthetic archive (with --synthetic)")
    for name, default in (("patients", 2), ("studies", 1), ("series", 2), ("instances", 4), ("rows", 64),
                          ("cols", 64), ("frames", 1), ("seed", 0)):
        syn.add_argument(f"--{name}", type=int, default=default, metavar="N",
                         help=f"(default: {default})" + (" per patient" if name == "studies" else
                                                         " per study" if name == "series" else
                                                         " per series" if name == "instances" else ""))
    syn.add_argument("--modality", choices=("CT", "MR"), default="CT", type=str.upper,
                     help="(default: %(default)s)")
    p.add_argument("--destination", action="append", default=[], metavar="AET=HOST:PORT",
                   help="a C-MOVE destination (repeatable)")
    p.add_argument("--destinations", metavar="FILE.json", default=None,
                   help='C-MOVE destinations from a JSON file: {"AET": "host:port", ...}')
    p.add_argument("--move-tls", action="store_true",
                   help="C-MOVE sub-associations over TLS too: destinations verified with --tls-ca "
                        "(default: the system's CAs), --tls-cert/--tls-key presented to them")
    p.add_argument("--move-async-ops", type=int, default=1, metavar="N",
                   help="propose an asynchronous operations window to C-MOVE destinations: up to N C-STOREs "
                        "outstanding when the destination accepts it (default 1: one at a time, no proposal)")
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="log records on stderr as plain text or one JSON object each (default: %(default)s)")
    p.set_defaults(run=run)


def build_archive(args: argparse.Namespace, logger: logging.Logger) -> Any:
    """The archive the command line asks for."""
    from dicomnet.samples.archive import Archive

    if args.synthetic:
        return Archive.from_synthetic(patients=args.patients, studies=args.studies, series=args.series,
                                      instances=args.instances, rows=args.rows, cols=args.cols,
                                      frames=args.frames, modality=args.modality, seed=args.seed)
    archive = Archive(logger=logger)
    for path in args.dicom:
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such file or folder: {path}")
        archive.add_path(path)
    return archive


def _setup_logging(args: argparse.Namespace) -> logging.Logger:
    """Every ``dicomnet`` record (library and sample handler) to stderr, in the chosen format."""
    from dicomnet.samples.server import JsonLogFormatter

    root = logging.getLogger("dicomnet")
    level = logging.ERROR if args.quiet else (logging.INFO, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    root.setLevel(level)
    for handler in list(root.handlers):
        if getattr(handler, "_dicomnet_cli", False):
            root.removeHandler(handler)
    handler = StderrHandler()
    handler.setFormatter(JsonLogFormatter() if args.log_format == "json"
                         else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler._dicomnet_cli = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    return logging.getLogger("dicomnet.sample")


def run(args: argparse.Namespace) -> int:
    """Run ``sample-server`` until SIGINT/SIGTERM."""
    from dicomnet.samples.server import QR_SOP_CLASSES, SampleHandler, load_destinations, parse_destination
    from dicomnet.server import Server

    out = Output(args)
    log = _setup_logging(args)
    base: dict[str, Any] = {"command": "sample-server"}
    try:
        destinations = load_destinations(args.destinations) if args.destinations else {}
        for text in args.destination:
            ae, address = parse_destination(text)
            destinations[ae] = address
    except (OSError, ValueError) as exc:
        out.error(f"destinations: {exc}")
        return EXIT_USAGE
    started = time.perf_counter()
    try:
        archive = build_archive(args, log)
    except (ValueError, OSError) as exc:
        out.error(str(exc))
        return EXIT_FAILURE
    counts = archive.counts()
    log.info("archive ready in %.2f s: %d patient(s), %d study(ies), %d series, %d instance(s)",
             time.perf_counter() - started, counts["PATIENT"], counts["STUDY"], counts["SERIES"],
             counts["IMAGE"], extra={"fields": {"event": "archive", **{k.lower(): v for k, v in counts.items()}}})
    for ae, (host, port) in sorted(destinations.items()):
        log.info("C-MOVE destination %s = %s:%d", ae, host, port,
                 extra={"fields": {"event": "destination", "ae_title": ae, "host": host, "port": port}})
    handler = SampleHandler(archive, destinations, log)
    try:
        # Storage, Verification and the Q/R models the archive answers: a
        # worklist or Patient/Study Only context is refused, not accepted and
        # then failed on every query.
        server = Server(args.aet, handler, contexts=storage_contexts(also=QR_SOP_CLASSES),
                        destinations=destinations, read_timeout=args.timeout, write_timeout=args.timeout,
                        artim_timeout=args.timeout, dimse_timeout=args.timeout, require_called_ae=False,
                        logger=logging.getLogger("dicomnet"),
                        tls=tls_context(args, server_side=True), move_tls=move_tls_context(args),
                        move_async_operations=args.move_async_ops, busy_poll=busy_poll(args),
                        **server_limits(args))
    except ValueError as exc:
        out.error(str(exc))
        return EXIT_FAILURE
    return serve_until_signalled(server, args.bind, args.port, out, base)
