"""Shared pieces of the hardening suite: raw-socket helpers, a summary recorder.

Every test may call :func:`record` with counts of what it tried; at the end of
the session the totals are written to ``build/reliability/summary.json``, which
``tools/reliability_report.py`` renders into ``docs/reliability.md``.

The suite runs on Linux only: it counts file descriptors, memory and threads
through ``/proc``, which macOS and Windows do not have (the wheels workflow
runs the rest of the tests there).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import dicomnet
from dicomnet.client import Client
from dicomnet.pdu import pdus
from dicomnet.pdu.negotiation import build_associate_rq
from dicomnet.server import Server

if not sys.platform.startswith("linux"):
    # The test files here and in the folders below (leaks/, stateful/): the
    # patterns are relative to this folder, and a conftest below that set its
    # own would replace them there.
    collect_ignore_glob = ["test_*.py", "*/test_*.py"]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: Where the dicomnet these tests import lives: the working directory of a
#: Python child process that must import the same one. Not ROOT: a wheel's
#: test run (cibuildwheel) imports the installed package, and in ROOT a child
#: would import the source tree, which has no compiled modules there.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(dicomnet.__file__)))
SUMMARY_DIR = os.path.join(ROOT, "build", "reliability")
VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"

_summary: dict[str, dict[str, Any]] = {}
_summary_lock = threading.Lock()


def record(category: str, **values: Any) -> None:
    """Add counts: numbers are summed (``max_*`` keys keep the largest), lists
    extended, anything else replaced."""
    with _summary_lock:
        bucket = _summary.setdefault(category, {})
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key in bucket:
                bucket[key] = max(bucket[key], value) if key.startswith("max_") else bucket[key] + value
            elif isinstance(value, list) and key in bucket:
                bucket[key].extend(value)
            else:
                bucket[key] = value


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _summary:
        return
    os.makedirs(SUMMARY_DIR, exist_ok=True)
    path = os.path.join(SUMMARY_DIR, "summary.json")
    try:
        with open(path, encoding="utf-8") as f:
            previous = json.load(f)
    except (OSError, ValueError):
        previous = {}
    previous.update(_summary)  # categories run this session replace their old numbers
    previous["_meta"] = {"written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         "exitstatus": int(exitstatus)}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(previous, f, indent=2, sort_keys=True)


# ------------------------------------------------------------- certificates
OPENSSL = shutil.which("openssl")


def _run(*args: str, cwd: str) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(d: str, name: str) -> None:
    _run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt",
         "-days", "2", "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def _leaf(d: str, name: str, ca: str, ext: str) -> None:
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write(ext)
    _run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
         "-subj", f"/CN={name}", cwd=d)
    _run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
         "-out", f"{name}.crt", "-days", "2", "-sha256", "-extfile", f"{name}.ext", cwd=d)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1/localhost, a client one, and a rogue
    client certificate from an unrelated CA (made once per session)."""
    d = str(tmp_path_factory.mktemp("pki"))
    _ca(d, "ca")
    _ca(d, "otherca")
    _leaf(d, "server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _leaf(d, "client", "ca", "extendedKeyUsage=clientAuth\n")
    _leaf(d, "rogue", "otherca", "extendedKeyUsage=clientAuth\n")
    # Both ends at once: a server that also opens connections (C-MOVE over TLS).
    _leaf(d, "node", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
    return {name: os.path.join(d, name) for name in ("ca", "otherca", "server", "client", "rogue", "node")}



# ------------------------------------------------------------------ servers
@pytest.fixture
def server() -> Iterator[Server]:
    """A Server with short timers (ARTIM 0.5 s, read 3 s) on a free port."""
    srv = Server("HARDEN", artim_timeout=0.5, read_timeout=3.0, write_timeout=3.0, dimse_timeout=3.0)
    srv.start("127.0.0.1", 0)
    try:
        yield srv
    finally:
        srv.shutdown(5.0)


def echo_ok(port: int, ae: str = "HARDEN", **client_kw: Any) -> bool:
    """A C-ECHO from a fresh client succeeds."""
    client = Client("PROBE", connect_timeout=3.0, read_timeout=5.0, artim_timeout=5.0, dimse_timeout=5.0,
                    **client_kw)
    with client.associate("127.0.0.1", port, ae, contexts=[VERIFICATION]) as assoc:
        return assoc.echo() == 0


# ---------------------------------------------------------------- raw bytes
def pdu(pdu_type: int, body: bytes) -> bytes:
    return struct.pack(">BBL", pdu_type, 0, len(body)) + body


def associate_rq_bytes(called: str = "HARDEN", calling: str = "RAW", contexts: Any = None,
                       **kw: Any) -> bytes:
    """A valid A-ASSOCIATE-RQ (Verification unless ``contexts``); max PDU 16384
    unless given, so the bytes do not follow the library's default."""
    kw.setdefault("max_pdu", 16384)
    rq = build_associate_rq(calling, called, contexts or [(VERIFICATION, (EXPLICIT, IMPLICIT))], **kw)
    return pdus.encode_pdu(rq)


def raw_rq_with_contexts(ids: list[int], called: str = "HARDEN") -> bytes:
    """An A-ASSOCIATE-RQ with the given context ids, bypassing the encoder's checks."""
    from dicomnet.pdu.items import PresentationContextRQ

    rq = build_associate_rq("RAW", called, [(VERIFICATION, (EXPLICIT,))], max_pdu=16384)
    pcs = tuple(PresentationContextRQ(i, VERIFICATION, (EXPLICIT,)) for i in ids)
    rq = dataclasses.replace(rq, presentation_contexts=pcs)
    return pdus._encode_association(pdus.A_ASSOCIATE_RQ, rq)


class Answer:
    """What a peer got back: the PDUs (type, body), whether the server closed, how long it took."""

    def __init__(self) -> None:
        self.pdus: list[tuple[int, bytes]] = []
        self.closed = False
        self.reset = False
        self.elapsed = 0.0

    @property
    def types(self) -> list[int]:
        return [t for t, _ in self.pdus]

    def rj(self) -> tuple[int, int, int] | None:
        for t, body in self.pdus:
            if t == 3:
                return body[1], body[2], body[3]
        return None

    def abort(self) -> tuple[int, int] | None:
        for t, body in self.pdus:
            if t == 7:
                return body[2], body[3]
        return None

    def __repr__(self) -> str:
        return f"<Answer types={self.types} closed={self.closed} reset={self.reset} {self.elapsed:.2f}s>"


def converse(port: int, chunks: list[bytes] | bytes, *, wait: float = 5.0, pause: float = 0.0,
             linger: bool = True) -> Answer:
    """Connect, send ``chunks`` (``pause`` s apart), then read until the server
    closes or ``wait`` s pass; parse what came back into PDUs."""
    if isinstance(chunks, bytes):
        chunks = [chunks]
    answer = Answer()
    start = time.monotonic()
    data = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=3.0) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for i, chunk in enumerate(chunks):
                if i and pause:
                    time.sleep(pause)
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            answer.reset = True
        deadline = start + wait
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            try:
                got = sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                answer.reset = answer.closed = True
                break
            if not got:
                answer.closed = True
                break
            data += got
    answer.elapsed = time.monotonic() - start
    pos = 0
    while len(data) - pos >= 6:
        t, _, n = struct.unpack_from(">BBL", data, pos)
        answer.pdus.append((t, bytes(data[pos + 6:pos + 6 + n])))
        pos += 6 + n
    return answer


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
