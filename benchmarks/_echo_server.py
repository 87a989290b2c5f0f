"""Helper process for bench_echo.py: an echo SCP (dicomnet or pynetdicom).

Usage: python _echo_server.py {dicomnet|pynetdicom} AE_TITLE
Prints "READY <port>" once listening on 127.0.0.1 (a free port) and serves until
its stdin closes (the benchmark holds the pipe) or it is terminated.
"""
from __future__ import annotations

import sys
import threading


def _wait_for_stdin_eof() -> None:
    try:
        while sys.stdin.buffer.read(1):
            pass
    except (OSError, ValueError):
        pass


def serve_dicomnet(ae_title: str) -> None:
    from dicomnet import Server

    server = Server(ae_title, max_associations=8).start("127.0.0.1", 0)
    print(f"READY {server.port}", flush=True)
    _wait_for_stdin_eof()
    server.shutdown()


def serve_pynetdicom(ae_title: str) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title)
    ae.add_supported_context(Verification)
    server = ae.start_server(("127.0.0.1", 0), block=False)
    print(f"READY {server.server_address[1]}", flush=True)
    _wait_for_stdin_eof()
    threading.Thread(target=server.shutdown, daemon=True).start()


if __name__ == "__main__":
    kind, ae = sys.argv[1], sys.argv[2]
    {"dicomnet": serve_dicomnet, "pynetdicom": serve_pynetdicom}[kind](ae)
