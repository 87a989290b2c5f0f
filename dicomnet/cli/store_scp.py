"""``dicomnet store-scp --port P --out DIR``: a storage SCP writing Part 10 files.

Each data set is streamed to disk as it arrives (the server's
``store_destination`` hook): written under a temporary hidden name in the
target folder and renamed once complete, so no half-written file ever stands
under a final name -- also when the association dies or the process is told
to stop (SIGINT/SIGTERM: stop accepting, let a running request finish, abort
the rest, remove temporary files).

File names come from the SOP Instance UID of the C-STORE-RQ, and only after it
passed :func:`dicomnet.types.uids.is_valid_uid` (digits and dots, at most 64
characters): ``../x``, ``/etc/passwd``, a NUL or an over-long value is
refused with a failure status and never touches the file system. AE titles
never name files. Layouts (``--layout``):

* ``flat`` (default): ``DIR/<SOPInstanceUID>.dcm``;
* ``study``: ``DIR/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``.
  The command set does not carry the study and series, so the file is
  streamed into ``DIR/.incoming/`` and moved into place once its data set has
  been read (the UIDs are validated the same way; an instance without valid
  ones is refused and removed).

``--ignore`` receives every data set and discards it (benchmarks).
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from collections.abc import Collection
from typing import Any

from dicomnet.cli.common import EXIT_FAILURE, EXIT_OK, Output, busy_poll, tls_context

__all__ = ["add_parser", "run", "StoreSCPHandler", "storage_contexts", "serve_until_signalled", "safe_uid"]

#: Status for an instance whose UIDs cannot name a file: 0xA900 is "Data Set does
#: not match SOP Class" in PS3.4 B.2.3; 0xC000 "cannot understand" fits better.
_STATUS_CANNOT_UNDERSTAND = 0xC000


def add_parser(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    """Register the ``store-scp`` subcommand."""
    p = subparsers.add_parser(
        "store-scp", parents=[parent], help="a storage SCP writing received instances to a folder",
        description="Accept C-STORE (and C-ECHO) and write each instance as a Part 10 file under --out. "
                    "--aet is the SCP's own AE title. Stops cleanly on SIGINT/SIGTERM.")
    add_listen_options(p)
    p.add_argument("--out", "-o", metavar="DIR", default=None, help="folder for the received files")
    p.add_argument("--layout", choices=("flat", "study"), default="flat",
                   help="flat: DIR/<SOP>.dcm; study: DIR/<Study>/<Series>/<SOP>.dcm (default: %(default)s)")
    p.add_argument("--ignore", action="store_true", help="receive and discard every data set (no --out)")
    p.set_defaults(run=run)


def add_listen_options(p: argparse.ArgumentParser) -> None:
    """``--port``, ``--bind``, ``--max-associations`` (shared with sample-server)."""
    p.add_argument("--port", "-p", type=int, required=True, help="TCP port to listen on (0: any free port)")
    p.add_argument("--bind", default=os.environ.get("DICOMNET_BIND", "127.0.0.1"), metavar="ADDR",
                   help="address to listen on (default: $DICOMNET_BIND or %(default)s)")
    p.add_argument("--max-associations", type=int, default=32, metavar="N",
                   help="associations served at once (default: %(default)s)")
    p.add_argument("--max-dataset-bytes", type=_byte_size, default=None, metavar="N[K|M|G]",
                   help="largest data set an association may hold in memory; a peer sending a bigger one "
                        "is aborted (files streamed to disk are not capped; default: 2G)")
    p.add_argument("--handler-timeout", type=float, default=None, metavar="S",
                   help="a handler call running longer aborts its association and frees its slot "
                        "(default: --timeout)")


def _byte_size(text: str) -> int:
    """``--max-dataset-bytes``: a byte count, optionally with K, M or G (powers of 1024)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = units.get(value[-1:], 1)
    if scale != 1:
        value = value[:-1]
    try:
        size = int(float(value) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 512M, 2G)") from None
    if size < 0:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    return size


def server_limits(args: argparse.Namespace) -> dict[str, Any]:
    """The Server keyword arguments for the limit options of :func:`add_listen_options`."""
    limits: dict[str, Any] = {"max_associations": args.max_associations}
    if getattr(args, "max_dataset_bytes", None) is not None:
        limits["max_dataset_bytes"] = args.max_dataset_bytes
    if getattr(args, "handler_timeout", None) is not None:
        limits["handler_timeout"] = args.handler_timeout
    return limits


def safe_uid(value: Any) -> str | None:
    """``value`` as a UID fit to name a file, or None (PS3.5 9.1 syntax; the
    trailing NUL padding is removed first, nothing else)."""
    from dicomnet.types.uids import is_valid_uid

    if not isinstance(value, str):
        return None
    text = value.rstrip("\0").rstrip(" ")
    return text if is_valid_uid(text) else None


def storage_contexts(also: Collection[str] = ()) -> dict[str, tuple[str, ...]]:
    """Every storage SOP class with every transfer syntax we know (uncompressed
    first), and Verification; of the server's other default classes (the Q/R
    models...) only those in ``also``: a context is accepted only for a
    service that is served."""
    from dicomnet.association import VERIFICATION
    from dicomnet.pdu.negotiation import UNCOMPRESSED_TRANSFER_SYNTAXES, default_supported
    from dicomnet.types.sop_classes import is_storage_sop_class
    from dicomnet.types.transfer_syntax import all_transfer_syntaxes

    others = tuple(str(ts.uid) for ts in all_transfer_syntaxes()
                   if not ts.retired and str(ts.uid) not in UNCOMPRESSED_TRANSFER_SYNTAXES)
    everything = UNCOMPRESSED_TRANSFER_SYNTAXES + others
    return {uid: (everything if is_storage_sop_class(uid) else tuple(syntaxes))
            for uid, syntaxes in default_supported().items()
            if is_storage_sop_class(uid) or uid == VERIFICATION or uid in also}


class StoreSCPHandler:
    """The handler behind ``store-scp`` (see the module docstring)."""

    def __init__(self, out_dir: str | None, layout: str = "flat", ignore: bool = False,
                 logger: logging.Logger | None = None) -> None:
        if not ignore and not out_dir:
            raise ValueError("an output folder is needed (or --ignore)")
        if layout not in ("flat", "study"):
            raise ValueError(f"layout must be 'flat' or 'study', not {layout!r}")
        self.out_dir = os.path.abspath(out_dir) if out_dir else None
        self.layout = layout
        self.ignore = ignore
        self.logger = logger or logging.getLogger("dicomnet")
        self.received = 0
        self.refused = 0
        self._lock = threading.Lock()
        if self.out_dir is not None:
            os.makedirs(self.out_dir, exist_ok=True)

    def sweep_temporary_files(self) -> int:
        """After shutdown: remove any temporary file of ours still on disk (an
        aborted transfer's file is removed when its association is freed; this
        makes sure of it before the process exits). Returns how many."""
        if self.out_dir is None:
            return 0
        removed = 0
        for folder in (self.out_dir, os.path.join(self.out_dir, ".incoming")):
            try:
                names = os.listdir(folder)
            except OSError:
                continue
            for name in names:
                if _own_temporary(name):
                    try:
                        os.unlink(os.path.join(folder, name))
                        removed += 1
                    except OSError:
                        pass
        if removed:
            self.logger.warning("removed %d unfinished temporary file(s)", removed)
        return removed

    def on_echo(self, ctx: Any) -> int:
        """C-ECHO: Success."""
        return 0

    def store_destination(self, ctx: Any, command: Any) -> str | None:
        """The file to stream this C-STORE into (None with ``--ignore``: kept in
        memory and dropped). A UID unfit for a file name raises: the server
        answers a failure status and reads the data set to nowhere."""
        if self.ignore:
            return None
        uid = safe_uid(command.get("AffectedSOPInstanceUID"))
        if uid is None:
            with self._lock:
                self.refused += 1
            raise ValueError(f"refused: SOP Instance UID {command.get('AffectedSOPInstanceUID')!r} "
                             "is not a valid UID")
        assert self.out_dir is not None
        folder = self.out_dir if self.layout == "flat" else os.path.join(self.out_dir, ".incoming")
        return os.path.join(folder, uid + ".dcm")

    def on_store(self, ctx: Any, dataset: Any) -> int:
        """The file is complete (or, with ``--ignore``, the data set is in memory)."""
        if self.ignore or self.layout == "flat":
            with self._lock:
                self.received += 1
            self.logger.info("stored %s from %s", ctx.sop_instance_uid, ctx.calling_ae)
            return 0
        source = getattr(dataset, "filename", None)
        study = safe_uid(dataset.get("StudyInstanceUID"))
        series = safe_uid(dataset.get("SeriesInstanceUID"))
        sop = safe_uid(ctx.sop_instance_uid)
        if not (study and series and sop and source):
            if source:
                os.unlink(source)
            with self._lock:
                self.refused += 1
            self.logger.warning("refused %r: no valid Study/Series Instance UID", ctx.sop_instance_uid)
            return _STATUS_CANNOT_UNDERSTAND
        assert self.out_dir is not None
        folder = os.path.join(self.out_dir, study, series)
        os.makedirs(folder, exist_ok=True)
        os.replace(source, os.path.join(folder, sop + ".dcm"))
        with self._lock:
            self.received += 1
        self.logger.info("stored %s/%s/%s from %s", study, series, sop, ctx.calling_ae)
        return 0


def _own_temporary(name: str) -> bool:
    """A temporary file the server's streaming sink made in this process:
    ``.<final name>.<pid>.<serial>.part`` (see :class:`dicomnet.dimse.scp.StoreSink`)."""
    parts = name.split(".")
    return (name.startswith(".") and len(parts) >= 4 and parts[-1] == "part" and parts[-3] == str(os.getpid())
            and parts[-2].isdigit())


def serve_until_signalled(server: Any, host: str, port: int, out: Output, base: dict[str, Any],
                          shutdown_timeout: float = 10.0) -> int:
    """Start ``server`` on ``host:port``, announce it, serve until SIGINT or
    SIGTERM, then shut down cleanly. Returns the exit code."""
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            server.start(host, port)
        except OSError as exc:
            out.error(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
            out.record({**base, "event": "error", "ok": False, "error": str(exc)})
            return EXIT_FAILURE
        out.line(f"{base['command']}: {server.ae_title} listening on {server.host}:{server.port}")
        out.record({**base, "event": "listening", "ae_title": server.ae_title, "host": server.host,
                    "port": server.port})
        for stream in (out.out, out.err):
            stream.flush()
        while not stop.wait(0.2):
            pass
        started = time.perf_counter()
        server.shutdown(shutdown_timeout)
        out.line(f"{base['command']}: stopped in {time.perf_counter() - started:.2f} s")
        out.record({**base, "event": "stopped"})
        return EXIT_OK
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(args: argparse.Namespace) -> int:
    """Run ``store-scp`` until SIGINT/SIGTERM."""
    from dicomnet.server import Server

    out = Output(args)
    base: dict[str, Any] = {"command": "store-scp"}
    try:
        handler = StoreSCPHandler(args.out, args.layout, args.ignore)
        server = Server(args.aet, handler, contexts=storage_contexts(), read_timeout=args.timeout,
                        write_timeout=args.timeout, artim_timeout=args.timeout, dimse_timeout=args.timeout,
                        require_called_ae=False, tls=tls_context(args, server_side=True),
                        busy_poll=busy_poll(args), **server_limits(args))
    except (ValueError, OSError) as exc:
        out.error(str(exc))
        return EXIT_FAILURE
    code = serve_until_signalled(server, args.bind, args.port, out, base)
    handler.sweep_temporary_files()
    out.line(f"store-scp: {handler.received} instance(s) received, {handler.refused} refused")
    out.record({**base, "summary": True, "received": handler.received, "refused": handler.refused})
    return code
