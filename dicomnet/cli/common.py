"""What every ``dicomnet`` subcommand shares: options, logging, output, exit codes."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, TextIO

__all__ = ["EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_ASSOCIATION", "EXIT_NETWORK",
           "common_parser", "setup_logging", "Output", "fail", "tls_context", "move_tls_context",
           "StderrHandler", "busy_poll"]

#: Exit codes of the ``dicomnet`` command.
EXIT_OK = 0            # the operation succeeded
EXIT_FAILURE = 1       # a failure status, or bad data (e.g. a file that is not DICOM)
EXIT_USAGE = 2         # bad command line (argparse's own code)
EXIT_ASSOCIATION = 3   # the association was rejected or aborted
EXIT_NETWORK = 4       # no connection: refused, unreachable, timed out


def common_parser() -> argparse.ArgumentParser:
    """The options every subcommand takes (an argparse parent parser)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("common options")
    group.add_argument("--aet", default="DICOMNET", metavar="AE",
                       help="our (calling) AE title (default: %(default)s)")
    group.add_argument("--aec", default="ANY-SCP", metavar="AE",
                       help="the peer's (called) AE title (default: %(default)s)")
    group.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                       help="seconds to open the TCP connection (default: %(default)s)")
    group.add_argument("--timeout", type=float, default=30.0, metavar="S",
                       help="seconds to wait for the peer: association, responses, release "
                            "(default: %(default)s)")
    group.add_argument("--busy-poll", type=float, default=50.0, metavar="US",
                       help="microseconds a wait for the peer first looks for its answer without sleeping; "
                            "adaptive, spares fast replies the wake-up latency; 0: off (default: %(default)s)")
    group.add_argument("-v", "--verbose", action="count", default=0,
                       help="log more (-v: progress, -vv: protocol detail)")
    group.add_argument("-q", "--quiet", action="store_true",
                       help="print nothing on success; only errors")
    group.add_argument("--json", action="store_true",
                       help="machine-readable output: one JSON object per line")
    tls = parent.add_argument_group("TLS (DICOM secure transport, PS3.15 B)")
    tls.add_argument("--tls-cert", metavar="FILE",
                     help="our certificate (PEM; a server needs one, a client presents it if given)")
    tls.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert (PEM)")
    tls.add_argument("--tls-ca", metavar="FILE",
                     help="CA certificates (PEM) that verify the peer: a client checks the server with them "
                          "(default: the system's CAs); a server then requires client certificates")
    return parent


def busy_poll(args: argparse.Namespace) -> float:
    """``--busy-poll`` in seconds, for ``Client(busy_poll=)`` / ``Server(busy_poll=)``."""
    us = getattr(args, "busy_poll", 50.0)
    if not us >= 0:
        raise ValueError(f"--busy-poll must be >= 0 microseconds, got {us:g}")
    return us * 1e-6


def tls_context(args: argparse.Namespace, *, server_side: bool) -> Any:
    """The ``ssl.SSLContext`` the TLS options ask for, or None when none was given.

    A server needs ``--tls-cert`` (and ``--tls-key``); given ``--tls-ca`` it
    requires and verifies client certificates. A client verifies the server
    against ``--tls-ca`` (or the system's CAs) including its host name or IP
    address, and presents ``--tls-cert`` when given. Bad files raise
    ``ValueError`` naming the problem.
    """
    cert, key, ca = (getattr(args, name, None) for name in ("tls_cert", "tls_key", "tls_ca"))
    if not (cert or key or ca):
        return None
    if key and not cert:
        raise ValueError("--tls-key needs --tls-cert")
    from dicomnet.transport.tls import make_context

    try:
        return make_context(server_side=server_side, cert=cert, key=key, ca=ca,
                            require_client_cert=server_side and bool(ca))
    except OSError as exc:  # a missing file, or ssl.SSLError for one that is not PEM
        raise ValueError(f"TLS set-up failed: {exc}") from None


def move_tls_context(args: argparse.Namespace) -> Any:
    """With ``--move-tls``: the client-side ``ssl.SSLContext`` for C-MOVE
    sub-associations (destinations verified against ``--tls-ca`` or the
    system's CAs, ``--tls-cert``/``--tls-key`` presented); else None."""
    if not getattr(args, "move_tls", False):
        return None
    from dicomnet.transport.tls import make_context

    try:
        return make_context(server_side=False, cert=args.tls_cert, key=args.tls_key, ca=args.tls_ca)
    except OSError as exc:
        raise ValueError(f"TLS set-up for C-MOVE failed: {exc}") from None


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler bound to whatever ``sys.stderr`` is when a record is
    emitted, not when the handler was made (a captured or replaced stderr may
    be closed by then; server threads log long after set-up)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging(verbose: int, quiet: bool) -> None:
    """Log records of the ``dicomnet`` logger go to stderr at the chosen level."""
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logger = logging.getLogger("dicomnet")
    logger.setLevel(level)
    if not any(getattr(h, "_dicomnet_cli", False) for h in logger.handlers):
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._dicomnet_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


class Output:
    """Where a command writes: human lines, or one JSON object per line (``--json``)."""

    def __init__(self, args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None):
        self.json = bool(getattr(args, "json", False))
        self.quiet = bool(getattr(args, "quiet", False))
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def line(self, text: str) -> None:
        """A human-readable line (suppressed by -q and by --json)."""
        if not self.quiet and not self.json:
            print(text, file=self.out)

    def record(self, obj: dict[str, Any]) -> None:
        """One JSON object on its own line (only with --json)."""
        if self.json:
            print(json.dumps(obj, ensure_ascii=False, separators=(",", ":")), file=self.out)

    def error(self, text: str) -> None:
        """An error for a human: always printed, on stderr."""
        print(f"dicomnet: error: {text}", file=self.err)


def fail(out: Output, base: dict[str, Any], text: str, exc: BaseException, code: int) -> int:
    """Report a fatal error (human line or JSON record); returns ``code``."""
    if not out.json:
        out.error(text)
    record: dict[str, Any] = {**base, "ok": False, "error": text, "error_type": type(exc).__name__}
    for name in ("result", "source", "reason"):
        if hasattr(exc, name):
            record[name] = getattr(exc, name)
    out.record(record)
    return code
