"""Resource leaks: associations that end in every way leave nothing behind.

A soak of each way an association can end -- release, A-ABORT either way, a
TCP close or reset at each point of the protocol, rejection, ARTIM, read,
DIMSE and write timeouts, handlers that raise or hang, a malformed PDU, a
cancelled or failed C-GET/C-MOVE, failed TLS handshakes -- run many times
against an in-process :class:`dicomnet.Server` and from an in-process
:class:`dicomnet.Client`. The invariant is the oracle: once the associations
are over, the process holds what it held before.

What is counted (:class:`Leaks`), after a warm-up round and against a baseline:

* file descriptors (``/proc/self/fd``; a leak is shown by its link target);
* threads (by name);
* memory maps of files under the session's temporary directory (``/proc/self/maps``);
* partial or stray files in the folders C-STOREs stream into;
* live objects of dicomnet's classes (plus sockets and threads), after
  ``gc.collect()``; and, in the soak of normal associations, traced Python
  memory (tracemalloc) and RSS within a small tolerance;
* the server's own bookkeeping: no association or rejecting thread still
  counted, no watchdog guard left registered. (A socket that waits for its
  peer after our A-ABORT -- Sta13, :mod:`dicomnet.transport.closer` -- counts
  until the peer closes or ARTIM expires; the peers here close.)

Automatic garbage collection is off while a scenario runs and settles: a
descriptor, file or map that only the cycle collector would release is
counted as leaked (CPython would free it at some unpredictable later time, on
an idle server maybe never); objects are counted after an explicit collection.

The peers that misbehave on purpose are raw sockets in the test, a
:class:`~tests.hardening.proxy.FaultProxy`, in-process dicomnet servers, and
a scripted peer in a subprocess (:data:`SCRIPTED_PEER`: its behaviour is
chosen by the called AE title), so that its sockets and threads are not
counted with ours.

dicomnet faults this file found, all fixed: the handler watchdog's loop
variable kept the last finished association (and its buffers) alive on an
idle server; a shutdown() that gave up waiting for a handler left the wake-up
socket pair open; a C-GET streamed to ``store_to`` and cut short by the peer
kept its temporary file and descriptor until the garbage collector ran.
"""
from __future__ import annotations

import collections
import contextlib
import gc
import logging
import math
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dicomnet.client import Client
from dicomnet.dimse.commands import c_find_rq, c_get_rq, c_store_rq, encode_command
from dicomnet.dicom.writer import encode_dataset
from dicomnet.errors import DicomNetError
from dicomnet.dimse.scu import query_dataset
from dicomnet.server import Server

try:    # sockets waiting in Sta13 after our A-ABORT (PS3.8 AA-1/AA-8, then AR-5/AA-2)
    from dicomnet.transport import closer
except ImportError:     # pragma: no cover - an older dicomnet closes them at once
    closer = None

from .conftest import (CT, EXPLICIT, OPENSSL, PACKAGE_ROOT, VERIFICATION, associate_rq_bytes, free_port, pdu,
                       wait_for)
from .proxy import FaultProxy, Plan
from .test_faults import make_instance
from .test_limits import _recv_exact as recv_exact

STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"
QR = [(STUDY_FIND, (EXPLICIT,)), (STUDY_MOVE, (EXPLICIT,)), (STUDY_GET, (EXPLICIT,))]
QUERY = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "1.2.826.0.1.3680043.9.7777.9"}
ABORT_PDU = pdu(7, b"\x00\x00\x00\x00")
RELEASE_RQ = pdu(5, b"\x00" * 4)


# ================================================================ measuring
def fd_table() -> dict[int, str]:
    """Open descriptors -> what they point to."""
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass                         # the one listdir itself used
    return out


def mapped_files(root: str) -> list[str]:
    """Lines of /proc/self/maps that map a file under ``root``."""
    with open("/proc/self/maps") as f:
        return [line.split(None, 5)[-1].strip() for line in f if root in line]


def census(ids: set[int] | None = None) -> collections.Counter[str]:
    """Live objects of dicomnet's classes, sockets and threads (after a
    collection); ``ids`` gets the id of every object."""
    gc.collect()
    counts: collections.Counter[str] = collections.Counter()
    for obj in gc.get_objects():
        if ids is not None:
            ids.add(id(obj))
        cls = type(obj)
        module = cls.__dict__.get("__module__", "")
        if not isinstance(module, str):         # a metaclass's own descriptor
            module = ""
        if module.startswith("dicomnet") or cls in (socket.socket, ssl.SSLSocket, threading.Thread):
            counts[f"{module}.{cls.__qualname__}"] += 1
    return counts


def holders(grown: collections.Counter[str], old: set[int], depth: int = 5) -> str:
    """Who keeps the first of the objects that grew alive: a chain of referrers
    (a frame is named by its function), for the failure message."""
    wanted = next((name for name in grown if name.endswith(".Association")), next(iter(grown), None))
    if wanted is None:
        return ""
    found = [o for o in gc.get_objects()
             if f"{type(o).__module__}.{type(o).__qualname__}" == wanted and id(o) not in old]
    if not found:
        return ""
    obj = found[-1]
    here = sys._getframe()
    skip = {id(found), id(here)}
    chain: list[str] = []
    path = [obj]
    skip.add(id(path))
    for _ in range(depth):
        refs = gc.get_referrers(obj)
        skip.add(id(refs))
        ref = next((r for r in refs if id(r) not in skip), None)
        del refs
        if ref is None:
            # Running threads' frames are not gc-tracked in CPython 3.11+: look at their locals.
            for thread_id, frame in sys._current_frames().items():
                while frame is not None:
                    names = []
                    if frame is not here:
                        for key, value in frame.f_locals.items():
                            for held in path:
                                if value is held:
                                    names.append(key)
                    if names:
                        chain.append(f"local {names[0]!r} of {frame.f_code.co_name}() (line {frame.f_lineno}) "
                                     f"on thread {threading._active.get(thread_id, thread_id)}")
                        break
                    frame = frame.f_back
            break
        skip.add(id(ref))
        if hasattr(ref, "f_code"):
            chain.append(f"the frame of {ref.f_code.co_name}() at line {ref.f_lineno} of "
                         f"{ref.f_code.co_filename.rsplit('/', 1)[-1]}")
            break
        chain.append(type(ref).__qualname__)
        obj = ref
        path.append(ref)
    return f"{repr(found[-1])[:120]} held by " + " <- ".join(chain)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Leaks:
    """Baseline and comparison of what the process holds (see the module docstring).

    ``watch(server)`` adds a server's bookkeeping; ``folders`` are checked to
    hold no file but those present at the baseline."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.servers: list[Server] = []
        self.folders: list[Path] = []
        self._base: dict[str, Any] | None = None
        self._gc_was_enabled = gc.isenabled()

    def watch(self, *servers: Server) -> None:
        self.servers.extend(servers)

    def _state(self) -> dict[str, Any]:
        files = {str(f): sorted(os.listdir(f)) for f in self.folders}
        busy = {s.ae_title: (s.active_associations, len(s._rejecting), s.abandoned_threads,
                             len(s._watchdog._guards)) for s in self.servers}
        return {"fds": fd_table(), "threads": sorted(t.name for t in threading.enumerate()),
                "maps": mapped_files(self.root), "files": files, "busy": busy}

    def quiesce(self, timeout: float = 10.0) -> None:
        """Wait until the watched servers have no association left, and no
        socket waits for its peer after an A-ABORT (warm-up leftovers)."""
        def idle() -> bool:
            return (all(v == (0, 0, 0, 0) for v in self._state()["busy"].values())
                    and (closer is None or closer.pending() == 0))

        assert wait_for(idle, timeout), self._state()["busy"]

    def baseline(self) -> None:
        """Take the baseline (after a warm-up) and stop automatic collection."""
        self.quiesce()
        self._base = self._state()
        self._base["ids"] = set()
        self._base["objects"] = census(self._base["ids"])
        self._base["rss"] = rss()
        gc.disable()

    def problems(self) -> list[str]:
        assert self._base is not None, "baseline() first"
        base, now = self._base, self._state()
        out = []
        if len(now["fds"]) > len(base["fds"]):
            extra = {fd: target for fd, target in now["fds"].items() if base["fds"].get(fd) != target}
            out.append(f"{len(now['fds']) - len(base['fds'])} more fd(s): {extra}")
        extra_threads = list((collections.Counter(now["threads"]) - collections.Counter(base["threads"])).elements())
        if extra_threads:
            out.append(f"threads still running: {extra_threads}")
        extra_maps = list((collections.Counter(now["maps"]) - collections.Counter(base["maps"])).elements())
        if extra_maps:
            out.append(f"files still mapped: {extra_maps}")
        for folder, names in now["files"].items():
            extra_files = sorted(set(names) - set(base["files"].get(folder, [])))
            if extra_files:
                out.append(f"files left in {folder}: {extra_files}")
        for ae, counts in now["busy"].items():
            if counts != (0, 0, 0, 0):
                out.append(f"server {ae}: (associations, rejecting, abandoned, guards) = {counts}")
        return out

    def check(self, timeout: float = 10.0, *, objects: bool = True, objects_timeout: float = 3.0) -> None:
        """Wait (at most ``timeout``) for everything to be back at the baseline
        -- and to stay there for a tenth of a second: a connection still in
        the listen backlog is served a moment later -- then for the objects,
        counted after a collection. Fails with what is left."""
        try:
            deadline = time.monotonic() + timeout
            clean_since = None
            while True:
                left = self.problems()
                now = time.monotonic()
                if not left:
                    clean_since = clean_since or now
                    if now - clean_since >= 0.1:
                        break
                else:
                    clean_since = None
                    if now > deadline:
                        gc.collect()
                        after = self.problems()
                        note = ("released by gc.collect(): held only by a reference cycle" if not after
                                else f"still there after gc.collect(): {after}")
                        pytest.fail(f"not back to the baseline: {left} ({note})")
                time.sleep(0.01)
            if not objects:
                return
            deadline = time.monotonic() + objects_timeout
            while True:
                grown = census() - self._base["objects"]
                if not grown:
                    break
                if time.monotonic() > deadline:
                    pytest.fail(f"objects left alive: {dict(grown)}; {holders(grown, self._base['ids'])}")
                time.sleep(0.1)
        finally:
            if self._gc_was_enabled:
                gc.enable()


@pytest.fixture
def leaks(tmp_path_factory) -> Iterator[Leaks]:
    # Maps are counted under the session's temporary root: the sent instances
    # (a module fixture) and each test's own folders are all there.
    tracker = Leaks(tmp_path_factory.getbasetemp())
    try:
        yield tracker
    finally:
        if tracker._gc_was_enabled:
            gc.enable()


class _Drop(logging.Handler):
    """Formats every record (exceptions included) and keeps none: log records
    that pytest keeps would hold tracebacks, and with them associations. The
    server's catch-all for a bug ("unexpected error serving ...") is noted."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.unexpected: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if record.getMessage().startswith("unexpected error"):
            self.unexpected.append(text)


@pytest.fixture
def quiet() -> Iterator[logging.Logger]:
    """The logger of every Server and Client here: a logger outside the
    logging tree, so that pytest does not capture (and keep) its records and
    the tracebacks, frames and associations in them. Every record is
    formatted; none may be an unexpected error."""
    log = logging.Logger("dicomnet.test-leaks", logging.INFO)
    handler = _Drop()
    log.addHandler(handler)
    yield log
    assert not handler.unexpected, handler.unexpected[0]


def echo_promptly(port: int, ae: str, logger: logging.Logger, limit: float = 1.5, **kw: Any) -> None:
    """The server still serves: a C-ECHO from a fresh association within ``limit`` s."""
    t0 = time.monotonic()
    client = Client("PROBE", connect_timeout=3.0, artim_timeout=3.0, dimse_timeout=3.0, logger=logger, **kw)
    with client.associate("127.0.0.1", port, ae, contexts=[VERIFICATION]) as assoc:
        assert assoc.echo() == 0
    assert time.monotonic() - t0 < limit, time.monotonic() - t0


# ================================================================= fixtures
class Handler:
    """A server handler for every service: C-STOREs kept in memory; C-FIND
    yields ``matches``; C-MOVE/C-GET send ``paths``. A calling AE title
    starting with RAISE makes every method raise."""

    def __init__(self, paths: list[str], matches: int = 20) -> None:
        self.paths = paths
        self.matches = matches

    @staticmethod
    def _maybe_raise(ctx: Any) -> None:
        if ctx.calling_ae.startswith("RAISE"):
            raise RuntimeError("handler failure on purpose")

    def on_store(self, ctx, dataset):
        self._maybe_raise(ctx)
        return 0

    def on_find(self, ctx, query):
        for i in range(self.matches):
            if i == 3:
                self._maybe_raise(ctx)
            yield {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": f"1.2.826.0.1.3680043.9.7777.8.{i}",
                   "PatientComments": "x" * 200}

    def on_move(self, ctx, query, destination_ae):
        self._maybe_raise(ctx)
        return list(self.paths)

    def on_get(self, ctx, query):
        self._maybe_raise(ctx)
        return list(self.paths)


class FileHandler(Handler):
    """C-STOREs streamed into ``folder`` (see :func:`destination`), then on_store."""

    def __init__(self, paths: list[str], folder: Path) -> None:
        super().__init__(paths)
        self.folder = folder

    def store_destination(self, ctx, command):
        return destination(self.folder, ctx, command)


def destination(folder: Path, ctx: Any, command: Any) -> str:
    """Where a streamed C-STORE goes; calling AE titles RAISEDEST, BADPATH (the
    final name is a directory: the rename fails) and NOPATH (the file cannot
    be created) fail it."""
    if ctx.calling_ae.startswith("RAISEDEST"):
        raise RuntimeError("store_destination failure on purpose")
    if ctx.calling_ae.startswith("BADPATH"):
        return os.path.join(folder, "occupied")
    if ctx.calling_ae.startswith("NOPATH"):
        return "/proc/self/no-such-place/x.dcm"
    return os.path.join(folder, str(command.get("AffectedSOPInstanceUID")) + ".dcm")


class LaneHandler:
    """store_destination alone: the compiled lane stores and answers by itself."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def store_destination(self, ctx, command):
        return destination(self.folder, ctx, command)


@pytest.fixture(scope="module")
def instances(tmp_path_factory) -> dict[str, str]:
    """A small (8 KiB, read into memory when sent) and a big (2 MiB: sent
    from a memory map) CT instance."""
    base = tmp_path_factory.mktemp("leak-src")
    small, big = base / "small.dcm", base / "big.dcm"
    make_instance(small, 64, 64, seed=21)
    make_instance(big, 1024, 1024, seed=22)
    return {"small": str(small), "big": str(big)}


def make_server(logger: logging.Logger, handler: Any = None, **kw: Any) -> Server:
    # No watchdog thread unless a test asks for one (handler_timeout): see
    # test_an_idle_server_keeps_nothing_of_its_last_association.
    options = dict(artim_timeout=0.5, read_timeout=3.0, write_timeout=3.0, dimse_timeout=3.0,
                   max_associations=128, handler_timeout=math.inf, logger=logger)
    options.update(kw)
    return Server("LEAKS", handler, **options).start("127.0.0.1", 0)


@pytest.fixture
def servers(quiet) -> Iterator[Callable[..., Server]]:
    """Servers made by the test; every one is shut down at its end."""
    made: list[Server] = []

    def make(handler: Any = None, **kw: Any) -> Server:
        srv = make_server(quiet, handler, **kw)
        made.append(srv)
        if srv.tls is None:
            ping(srv.port)               # the accept loop is running (its selector made)
        return srv

    try:
        yield make
    finally:
        for srv in made:
            srv.shutdown(5.0)


def client(logger: logging.Logger, ae: str = "SOAK", **kw: Any) -> Client:
    options = dict(connect_timeout=3.0, artim_timeout=3.0, read_timeout=3.0, write_timeout=3.0,
                   dimse_timeout=3.0)
    options.update(kw)
    return Client(ae, logger=logger, **options)


def raw_established(port: int, contexts: Any = None, called: str = "LEAKS", calling: str = "RAW",
                    roles: Any = ()) -> socket.socket:
    """A raw socket whose association the server accepted (Sta6 there)."""
    sock = connect(port)
    sock.sendall(associate_rq_bytes(called=called, calling=calling, role_selections=roles,
                                    contexts=contexts or [(VERIFICATION, (EXPLICIT,))]))
    header = recv_exact(sock, 6)
    assert header[0] == 2, header
    recv_exact(sock, struct.unpack(">L", header[2:])[0])
    return sock


def connect(port: int) -> socket.socket:
    """A raw TCP connection, TCP_NODELAY (no 40 ms Nagle/delayed-ACK stalls)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5.0)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def ping(port: int) -> None:
    """Associate and release with raw bytes: the server is up and serving."""
    with raw_established(port, calling="PROBE") as sock:
        sock.sendall(RELEASE_RQ)
        assert first_byte(sock) == b"\x06"


def reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def drain(sock: socket.socket, wait: float = 5.0) -> bytes:
    """Read until the peer closes (or ``wait`` s); what it sent."""
    sock.settimeout(wait)
    data = b""
    with contextlib.suppress(OSError):
        while True:
            got = sock.recv(65536)
            if not got:
                break
            data += got
    return data


def until_abort(sock: socket.socket, wait: float = 5.0) -> bool:
    """Read until an A-ABORT PDU has come (True) or the peer closed (False).
    Not until the close: the server lingers for our close after its A-ABORT."""
    sock.settimeout(wait)
    data = b""
    with contextlib.suppress(OSError):
        while True:
            while len(data) >= 6:
                if data[0] == 7:
                    return True
                data = data[6 + struct.unpack(">L", data[2:6])[0]:]
            got = sock.recv(65536)
            if not got:
                return False
            data += got
    return False


def first_byte(sock: socket.socket) -> bytes:
    """The first byte the peer sends (the PDU type), b"" if it closes or resets."""
    try:
        return sock.recv(1)
    except ConnectionResetError:
        return b""


def pdata(context_id: int, command: bool, last: bool, data: bytes) -> bytes:
    return pdu(4, struct.pack(">LBB", len(data) + 2, context_id, (1 if command else 0) | (2 if last else 0)) + data)


def store_start(sock: socket.socket, uid: str, data_bytes: int) -> None:
    """A C-STORE-RQ on context 1 (CT) and ``data_bytes`` of its data set, not the last fragment."""
    sock.sendall(pdata(1, True, True, encode_command(c_store_rq(1, CT, uid))))
    for i in range(0, data_bytes, 16000):
        sock.sendall(pdata(1, False, False, bytes(min(16000, data_bytes - i))))


# ============================================================ scripted peer
#: A DICOM peer in a subprocess that misbehaves as its called AE title says:
#: at the A-ASSOCIATE-RQ (RJ, ABORT-AT-RQ, RST-AT-RQ, CLOSE-AT-RQ, SILENT-AT-RQ);
#: once K bytes of P-DATA are in (ABORT-<K>, RST-<K>); never answering
#: (SILENT); at the A-RELEASE-RQ (REL-ABORT, REL-CLOSE, REL-RST, REL-SILENT);
#: after one pending response (FIND-ABORT, MOVE-ABORT), or half a C-STORE
#: sub-operation (GET-ABORT). Anything else is answered as a plain SCP would.
SCRIPTED_PEER = r'''
import socket, struct, sys, threading
from dicomnet.pdu import pdus
from dicomnet.pdu.negotiation import AcceptorPolicy, negotiate
from dicomnet.dimse.commands import (decode_command, encode_command, c_echo_rsp, c_store_rsp, c_find_rsp,
                                     c_move_rsp, c_store_rq)
from dicomnet.dicom.writer import encode_dataset
from dicomnet.dimse.scu import query_dataset

POLICY = AcceptorPolicy("PEER", require_called_ae=False, accept_scp_role=lambda uid: True, max_pdu=65536)
ABORT = struct.pack(">BBLBBBB", 7, 0, 4, 0, 0, 0, 0)
RP = struct.pack(">BBL", 6, 0, 4) + bytes(4)
CT = "1.2.840.10008.5.1.4.1.1.2"

def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        got = sock.recv(n - len(data))
        if not got:
            return None
        data += got
    return data

def recv_pdu(sock):
    head = recv_exact(sock, 6)
    if head is None:
        return None, None
    body = recv_exact(sock, struct.unpack(">L", head[2:])[0])
    return (head[0], body) if body is not None else (None, None)

def rst(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()

def linger(sock):
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(5)
        while sock.recv(65536):
            pass
    except OSError:
        pass
    sock.close()

def pdv(ctx, command, last, data):
    return struct.pack(">BBL", 4, 0, len(data) + 6) + struct.pack(">LBB", len(data) + 2, ctx,
                                                                    (1 if command else 0) | (2 if last else 0)) + data

def send_message(sock, ctx, command, data=None):
    out = pdv(ctx, True, True, encode_command(command))
    if data is not None:
        out += pdv(ctx, False, True, bytes(data))
    sock.sendall(out)

def serve(sock):
    t, body = recv_pdu(sock)
    if t != 1:
        sock.close()
        return
    rq = pdus.decode_pdu(1, body)
    mode = rq.called_ae.strip()
    if mode == "RST-AT-RQ":
        return rst(sock)
    if mode == "CLOSE-AT-RQ":
        return sock.close()
    if mode == "ABORT-AT-RQ":
        sock.sendall(ABORT)
        return linger(sock)
    if mode == "SILENT-AT-RQ":
        return linger(sock)
    if mode == "RJ":
        sock.sendall(struct.pack(">BBLBBBB", 3, 0, 4, 0, 1, 1, 7))
        return linger(sock)
    ac = negotiate(rq, POLICY)
    sock.sendall(pdus.encode_pdu(ac))
    syntax = {pc.context_id: pc.transfer_syntax for pc in ac.presentation_contexts if pc.result == 0}
    abstract = {pc.context_id: pc.abstract_syntax for pc in rq.presentation_contexts}
    limit = None
    if mode.split("-")[0] in ("ABORT", "RST") and mode.split("-")[-1].isdigit():
        limit = int(mode.split("-")[-1])
    received = 0
    command, data = b"", b""
    while True:
        t, body = recv_pdu(sock)
        if t is None or t == 7:
            return sock.close()
        if t == 5:
            if mode == "REL-ABORT":
                sock.sendall(ABORT)
                return linger(sock)
            if mode == "REL-CLOSE":
                return sock.close()
            if mode == "REL-RST":
                return rst(sock)
            if mode in ("REL-SILENT", "SILENT"):
                continue
            sock.sendall(RP)
            return linger(sock)
        if t != 4:
            continue
        received += len(body)
        if limit is not None and received >= limit:
            if mode.startswith("ABORT"):
                sock.sendall(ABORT)
                return linger(sock)
            return rst(sock)
        if mode == "SILENT":
            continue
        pos, done = 0, None
        while pos < len(body):
            n = struct.unpack_from(">L", body, pos)[0]
            ctx, flags = body[pos + 4], body[pos + 5]
            if flags & 1:
                command += body[pos + 6:pos + 4 + n]
            else:
                data += body[pos + 6:pos + 4 + n]
            pos += 4 + n
            if flags & 2:
                rqc = decode_command(command)
                if not (flags & 1) or rqc.get("CommandDataSetType") == 0x0101:
                    done = (ctx, rqc)
        if done is None:
            continue
        ctx, rqc = done
        command, data = b"", b""
        field, mid = rqc.get("CommandField"), rqc.get("MessageID")
        sop = rqc.get("AffectedSOPClassUID")
        if field == 0x0030:
            send_message(sock, ctx, c_echo_rsp(mid))
        elif field == 0x0001:
            send_message(sock, ctx, c_store_rsp(mid, sop, rqc.get("AffectedSOPInstanceUID")))
        elif field == 0x0020:
            ident = encode_dataset(query_dataset({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "1.2.3"}),
                                   syntax[ctx])
            send_message(sock, ctx, c_find_rsp(mid, sop, 0xFF00), ident)
            if mode == "FIND-ABORT":
                sock.sendall(ABORT)
                return linger(sock)
            send_message(sock, ctx, c_find_rsp(mid, sop, 0))
        elif field == 0x0021:
            send_message(sock, ctx, c_move_rsp(mid, sop, 0xFF00, 3, 1, 0, 0))
            if mode == "MOVE-ABORT":
                sock.sendall(ABORT)
                return linger(sock)
            send_message(sock, ctx, c_move_rsp(mid, sop, 0, None, 3, 0, 0))
        elif field == 0x0010 and mode == "GET-ABORT":
            ct = [i for i, uid in abstract.items() if uid == CT and i in syntax][0]
            sock.sendall(pdv(ct, True, True, encode_command(c_store_rq(7, CT, "1.2.826.0.1.3680043.9.7777.7"))))
            for _ in range(8):
                sock.sendall(pdv(ct, False, False, bytes(16000)))
            sock.sendall(ABORT)
            return linger(sock)

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(128)
print(listener.getsockname()[1], flush=True)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=lambda c=conn: (serve(c)), daemon=True).start()
'''


@pytest.fixture(scope="module")
def peer() -> Iterator[int]:
    """The scripted peer's port (the process is killed at the end of the module)."""
    proc = subprocess.Popen([sys.executable, "-c", SCRIPTED_PEER], stdout=subprocess.PIPE, text=True,
                            cwd=PACKAGE_ROOT)
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


# ================================================================ self-check
def test_the_counters_see_a_leaked_socket_thread_map_file_and_object(leaks, tmp_path):
    """Each counter detects its kind of leak -- and clears once it is gone."""
    import mmap

    from dicomnet.pdu.connection import Connection

    folder = tmp_path / "drop"
    folder.mkdir()
    leaks.folders.append(folder)
    leaks.baseline()
    stop = threading.Event()
    sock = socket.socket()
    thread = threading.Thread(target=stop.wait, name="leaked-thread", daemon=True)
    thread.start()
    path = tmp_path / "mapped.bin"
    path.write_bytes(bytes(8192))
    with open(path, "rb") as f:
        mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    (folder / ".x.part").write_bytes(b"partial")
    conn = Connection("acceptor")
    left = leaks.problems()
    assert any("more fd" in p and "socket:" in p for p in left), left
    assert any("leaked-thread" in p for p in left), left
    assert any("mapped.bin" in p for p in left), left
    assert any(".x.part" in p for p in left), left
    with pytest.raises(pytest.fail.Exception, match="not back to the baseline"):
        leaks.check(timeout=0.1)
    sock.close()
    stop.set()
    thread.join()
    mapping.close()
    (folder / ".x.part").unlink()
    del conn
    # An object alone (nothing else held): counted after the collection.
    leaks.baseline()
    conn = Connection("requestor")
    with pytest.raises(pytest.fail.Exception, match="Connection"):
        leaks.check(timeout=0.1, objects_timeout=0.1)
    del conn
    leaks.baseline()
    leaks.check(timeout=0.1)


def test_the_map_counter_sees_an_instance_mapped_for_sending(leaks, instances):
    """A file over 1 MiB is sent from a memory map (dicomnet.dimse.scu): the
    counter sees it while it is mapped, and not after."""
    from dicomnet.dimse.scu import _READ_MAX, _load

    leaks.baseline()
    mapping = _load(instances["big"], _READ_MAX)
    # (Python's mmap keeps a duplicate of the file's descriptor, too.)
    assert any(p.startswith("files still mapped") and "big.dcm" in p for p in leaks.problems()), leaks.problems()
    mapping.close()
    leaks.check(timeout=0.1)


def test_a_socket_held_only_by_a_reference_cycle_is_a_leak(leaks):
    """With automatic collection off, a socket in a cycle stays open: reported
    as held by a cycle (the check's own gc.collect() then closes it)."""
    leaks.baseline()
    holder: dict[str, Any] = {"sock": socket.socket()}
    holder["self"] = holder
    del holder
    with pytest.raises(pytest.fail.Exception, match="reference cycle"):
        leaks.check(timeout=0.1)


# ====================================================== server: normal ends
SOAK = 80


def test_normal_associations_leave_nothing_and_no_memory(leaks, servers, quiet, instances, tmp_path):
    """Echo, C-STORE (into memory and streamed to a file), C-FIND, C-GET and
    C-MOVE (with its own sub-association), then A-RELEASE: 4 x SOAK
    associations leave no fd, thread, map, object -- and traced Python memory
    and RSS back within a small tolerance."""
    folder = tmp_path / "in"
    folder.mkdir()
    files = servers(FileHandler([], folder))
    mem = servers(Handler([instances["small"]]), destinations={"LEAKS": ("127.0.0.1", files.port)})
    leaks.watch(mem, files)
    leaks.folders.append(folder)
    contexts = [VERIFICATION, (CT, (EXPLICIT,)), *QR]

    def once() -> None:
        with client(quiet).associate("127.0.0.1", mem.port, "LEAKS", contexts=contexts) as assoc:
            assert assoc.echo() == 0
            assert assoc.store(instances["small"]) == 0
            assert len(list(assoc.find(QUERY))) == 20
            move = assoc.move(QUERY, "LEAKS")
            list(move)
            assert move.status == 0 and move.completed == 1
        with client(quiet).associate("127.0.0.1", mem.port, "LEAKS", contexts=contexts, for_get=True) as assoc:
            assert len(list(assoc.get(QUERY))) == 1
        with client(quiet).associate("127.0.0.1", files.port, "LEAKS", contexts=contexts) as assoc:
            assert assoc.store(instances["small"]) == 0

    once()
    once()
    tracemalloc.start()
    try:
        leaks.baseline()
        traced = tracemalloc.get_traced_memory()[0]
        for _ in range(SOAK):
            once()
        leaks.check()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - traced
    finally:
        tracemalloc.stop()
    rss_grown = rss() - leaks._base["rss"]
    # Tolerance: 256 KiB of Python memory over SOAK x 4 associations (a leak of
    # one 1 KiB object per association would show); RSS within 16 MiB (malloc arenas).
    assert grown < 256 << 10, f"traced memory grew by {grown} bytes over {SOAK} rounds"
    assert rss_grown < 16 << 20, rss_grown
    echo_promptly(mem.port, "LEAKS", quiet)


def test_one_long_association_does_not_grow(servers, leaks, quiet, instances, tmp_path):
    """Thousands of messages on one association (C-ECHO, C-STORE into memory
    and into files, C-FIND, C-GET): traced Python memory stays within 256 KiB
    over 200 rounds after the first 50 -- on both ends; and once released,
    nothing is left."""
    folder = tmp_path / "in"
    folder.mkdir()
    srv = servers(FileHandler([instances["small"]], folder))
    mem = servers(Handler([instances["small"]]))
    leaks.watch(srv, mem)
    leaks.folders.append(folder)
    contexts = [VERIFICATION, *QR, (CT, (EXPLICIT,))]
    with client(quiet).associate("127.0.0.1", srv.port, "LEAKS", contexts=contexts) as files:
        files.store(instances["small"])  # (the stored file, and imports, before the baseline)
    leaks.baseline()

    def soak() -> int:
        with client(quiet).associate("127.0.0.1", srv.port, "LEAKS", contexts=contexts) as files, \
                client(quiet).associate("127.0.0.1", mem.port, "LEAKS", contexts=contexts) as memory, \
                client(quiet).associate("127.0.0.1", mem.port, "LEAKS", contexts=contexts, for_get=True) as getting:

            def rounds(n: int) -> None:
                for _ in range(n):
                    assert files.echo() == 0 and memory.echo() == 0
                    assert files.store(instances["small"]) == 0 and memory.store(instances["small"]) == 0
                    assert len(list(memory.find(QUERY))) == 20
                    assert len(list(getting.get(QUERY))) == 1

            rounds(50)
            tracemalloc.start()
            try:
                gc.collect()
                traced = tracemalloc.get_traced_memory()[0]
                rounds(200)
                gc.collect()
                return tracemalloc.get_traced_memory()[0] - traced
            finally:
                tracemalloc.stop()

    grown = soak()
    leaks.check()
    assert grown < 256 << 10, f"traced memory grew by {grown} bytes over 200 rounds on one association"


# ===================================================== server: cut short
MID_STORE = 200_000          # bytes of the data set sent before the end (of ~2 MiB announced)
REPS = 30

CT_CONTEXTS = [(CT, (EXPLICIT,)), (VERIFICATION, (EXPLICIT,))]


@pytest.fixture
def stores(servers, leaks, instances, tmp_path) -> dict[str, Server]:
    """Servers (watched) keeping data sets in memory, streaming them to files
    (with on_store), and streaming them through the compiled lane alone."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "occupied").mkdir()
    made = {"mem": servers(Handler([instances["big"]] * 3)),
            "file": servers(FileHandler([instances["big"]] * 3, folder)),
            "lane": servers(LaneHandler(folder))}
    leaks.watch(*made.values())
    leaks.folders.append(folder)
    return made


def uid(n: int) -> str:
    return f"1.2.826.0.1.3680043.9.7777.5.{n}"


@pytest.mark.parametrize("where", ["mem", "file", "lane"])
def test_peer_abort_mid_data_set(stores, leaks, quiet, where):
    """A-ABORT from the peer between two fragments of a C-STORE data set
    (a streamed one leaves no partial file: docs/api.md, store_destination)."""
    srv = stores[where]

    def once(n: int) -> None:
        with raw_established(srv.port, CT_CONTEXTS) as sock:
            store_start(sock, uid(n), MID_STORE)
            sock.sendall(ABORT_PDU)
            drain(sock)

    once(0)
    leaks.baseline()
    for n in range(REPS):
        once(n)
    leaks.check()
    echo_promptly(srv.port, "LEAKS", quiet)


def _find_rq(sock: socket.socket, context_id: int = 1) -> None:
    ident = encode_dataset(query_dataset(QUERY), EXPLICIT)
    sock.sendall(pdata(context_id, True, True, encode_command(c_find_rq(1, STUDY_FIND)))
                 + pdata(context_id, False, True, bytes(ident)))


def _get_rq(sock: socket.socket, context_id: int = 1) -> None:
    ident = encode_dataset(query_dataset(QUERY), EXPLICIT)
    sock.sendall(pdata(context_id, True, True, encode_command(c_get_rq(1, STUDY_GET)))
                 + pdata(context_id, False, True, bytes(ident)))


GET_RQ_CONTEXTS = [(STUDY_GET, (EXPLICIT,)), (CT, (EXPLICIT,))]
GET_ROLES = [(CT, False, True)]

#: point -> (server, A-ASSOCIATE-RQ contexts or None for no association, what to send before the close)
CLOSE_POINTS: dict[str, tuple[str, Any, Callable[[socket.socket], None]]] = {
    "after-connect": ("mem", None, lambda sock: None),
    "mid-rq": ("mem", None, lambda sock: sock.sendall(associate_rq_bytes(called="LEAKS")[:40])),
    "after-rq": ("mem", None, lambda sock: sock.sendall(associate_rq_bytes(called="LEAKS"))),
    "established": ("mem", CT_CONTEXTS, lambda sock: None),
    "mid-command": ("mem", CT_CONTEXTS, lambda sock: sock.sendall(
        pdata(1, True, True, encode_command(c_store_rq(1, CT, uid(1))))[:30])),
    "mid-data-set-mem": ("mem", CT_CONTEXTS, lambda sock: store_start(sock, uid(2), MID_STORE)),
    "mid-data-set-file": ("file", CT_CONTEXTS, lambda sock: store_start(sock, uid(3), MID_STORE)),
    "mid-data-set-lane": ("lane", CT_CONTEXTS, lambda sock: store_start(sock, uid(3), MID_STORE)),
    "mid-pdu-file": ("file", CT_CONTEXTS, lambda sock: (store_start(sock, uid(4), MID_STORE),
                                                        sock.sendall(pdata(1, False, False, bytes(9000))[:5000]))),
    "mid-pdu-lane": ("lane", CT_CONTEXTS, lambda sock: (store_start(sock, uid(4), MID_STORE),
                                                        sock.sendall(pdata(1, False, False, bytes(9000))[:5000]))),
    "after-release-rq": ("mem", CT_CONTEXTS, lambda sock: sock.sendall(RELEASE_RQ)),
    "during-find": ("mem", [(STUDY_FIND, (EXPLICIT,))], _find_rq),
    "during-get": ("file", GET_RQ_CONTEXTS, _get_rq),
}


@pytest.mark.parametrize("point", sorted(CLOSE_POINTS))
def test_tcp_close_without_release_or_abort(stores, leaks, quiet, point):
    """The peer closes TCP (FIN, then RST) without A-RELEASE or A-ABORT at
    each point of the protocol."""
    which, contexts, before = CLOSE_POINTS[point]
    srv = stores[which]

    def once(rst: bool) -> None:
        if contexts is None:
            sock = connect(srv.port)
        else:
            sock = raw_established(srv.port, contexts, **({"roles": GET_ROLES} if contexts is GET_RQ_CONTEXTS
                                                          else {}))
        before(sock)
        if point.startswith("during-"):
            sock.recv(1024)              # the server is answering when we go
        reset(sock) if rst else sock.close()

    once(False)
    once(True)
    leaks.baseline()
    for n in range(REPS):
        once(rst=bool(n % 2))
    leaks.check()
    echo_promptly(srv.port, "LEAKS", quiet)


# ======================================================= server: refusals
def test_rejected_associations(servers, leaks, quiet):
    """A-ASSOCIATE-RJ (bad called AE, calling AE not allowed, over
    max_associations -- also past the rejecting threads' limit, where the
    connection is just closed) and an association with no acceptable
    presentation context (accepted, every context refused)."""
    srv = servers(Handler([]), allowed_calling_aes=["SOAK", "PROBE", "HOLD"], max_associations=2)
    leaks.watch(srv)

    def once() -> None:
        leaks.quiesce()                  # both slots free
        for called, calling in (("NOT-LEAKS", "SOAK"), ("LEAKS", "STRANGER")):
            with pytest.raises(DicomNetError):
                client(quiet, calling).associate("127.0.0.1", srv.port, called, contexts=[VERIFICATION])
        leaks.quiesce()                  # (a rejected association holds its slot until its peer closes)
        with client(quiet).associate("127.0.0.1", srv.port, "LEAKS", contexts=["1.2.3.4.5.6"]) as assoc:
            assert not assoc.negotiated.contexts
            with pytest.raises(DicomNetError):
                assoc.echo()
        leaks.quiesce()
        held = [client(quiet, "HOLD").associate("127.0.0.1", srv.port, "LEAKS", contexts=[VERIFICATION])
                for _ in range(2)]
        try:
            refused = [connect(srv.port) for _ in range(24)]
            for sock in refused:         # 16 wait for their RJ, the rest are closed at once
                sock.sendall(associate_rq_bytes(called="LEAKS", calling="SOAK"))
            answers = [first_byte(sock) for sock in refused]
            for sock in refused:
                sock.close()
            assert answers.count(b"\x03") >= 16 and set(answers) <= {b"\x03", b""}, answers
        finally:
            for assoc in held:
                assoc.release()

    once()
    leaks.baseline()
    for _ in range(8):
        once()
    leaks.check()
    echo_promptly(srv.port, "LEAKS", quiet)


# ======================================================= server: timeouts
def test_artim_expiry(servers, leaks, quiet):
    """Peers that connect and send nothing, or half an A-ASSOCIATE-RQ: closed
    when ARTIM expires (artim_timeout 0.3 s), many at once."""
    srv = servers(Handler([]), artim_timeout=0.3)
    leaks.watch(srv)
    rq = associate_rq_bytes(called="LEAKS")

    def batch(n: int) -> None:
        socks = [connect(srv.port) for _ in range(n)]
        for i, sock in enumerate(socks):
            if i % 2:
                sock.sendall(rq[:50])
        t0 = time.monotonic()
        for sock in socks:
            drain(sock, 5.0)
            sock.close()
        assert time.monotonic() - t0 < 3.0

    batch(2)
    leaks.baseline()
    for _ in range(3):
        batch(40)
    leaks.check()
    echo_promptly(srv.port, "LEAKS", quiet)


def test_read_timeout_on_idle_and_stalled_associations(servers, leaks, quiet, tmp_path):
    """Established associations that go silent -- idle, in the middle of a
    PDU, in the middle of a streamed data set -- aborted after read_timeout."""
    folder = tmp_path / "in"
    folder.mkdir()
    srv = servers(FileHandler([], folder), read_timeout=0.3)
    leaks.watch(srv)
    leaks.folders.append(folder)

    def batch(n: int) -> None:
        socks = []
        for i in range(n):
            sock = raw_established(srv.port, CT_CONTEXTS)
            if i % 3 == 1:
                sock.sendall(pdata(1, True, True, encode_command(c_store_rq(1, CT, uid(i))))[:20])
            elif i % 3 == 2:
                store_start(sock, uid(i), 50_000)
            socks.append(sock)
        for sock in socks:
            assert until_abort(sock)
            sock.close()

    batch(3)
    leaks.baseline()
    for _ in range(3):
        batch(30)
    leaks.check()
    echo_promptly(srv.port, "LEAKS", quiet)


def test_dimse_timeout_while_the_server_waits_for_a_c_store_rsp(servers, leaks, quiet, instances, peer):
    """The server awaits a C-STORE-RSP that never comes: on a C-GET (the
    requestor does not answer its sub-operation) and on a C-MOVE (a silent
    destination); dimse_timeout 0.3 s aborts the waiting association, and the
    files being sent are unmapped."""
    srv = servers(Handler([instances["big"], instances["small"]]), dimse_timeout=0.3,
                  destinations={"SILENT": ("127.0.0.1", peer)})
    leaks.watch(srv)

    def once() -> None:
        with raw_established(srv.port, GET_RQ_CONTEXTS, roles=GET_ROLES) as sock:
            _get_rq(sock)
            assert until_abort(sock)
        with client(quiet).associate("127.0.0.1", srv.port, "LEAKS", contexts=QR) as assoc:
            with pytest.raises(DicomNetError):
                assoc.move(QUERY, "SILENT").result()

    once()
    leaks.baseline()
    for _ in range(6):
        once()
    leaks.check()
    echo_promptly(srv.port, "LEAKS", quiet)


def test_write_timeout_on_a_peer_that_stops_reading(servers, leaks, quiet):
    """C-FIND responses to a requestor that reads nothing: write_timeout
    (0.3 s) ends the association."""
    handler = Handler([], matches=100_000)
    srv = servers(handler, write_timeout=0.3)
    leaks.watch(srv)

    def batch(n: int) -> None:
        socks = []
        for _ in range(n):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", srv.port))
            sock.sendall(associate_rq_bytes(called="LEAKS", contexts=[(STUDY_FIND, (EXPLICIT,))]))
            header = recv_exact(sock, 6)
            recv_exact(sock, struct.unpack(">L", header[2:])[0])
            _find_rq(sock)
            socks.append(sock)
        assert wait_for(lambda: srv.active_associations == 0, 10.0)
        for sock in socks:
            reset(sock)

    batch(1)
    leaks.baseline()
    for _ in range(2):
        batch(6)
    leaks.check()
    echo_promptly(srv.port, "LEAKS", quiet)


# ======================================================= server: handlers
def test_handlers_that_raise(stores, leaks, quiet, instances):
    """Every handler method raising (answered as failure statuses, the
    association goes on); store_destination raising, or naming a file that
    cannot be created or renamed into place (with and without on_store);
    then release."""
    contexts = [VERIFICATION, (CT, (EXPLICIT,)), *QR]

    def once() -> None:
        with client(quiet, "RAISE").associate("127.0.0.1", stores["mem"].port, "LEAKS", contexts=contexts) as a:
            for call in (lambda: a.store(instances["small"]), lambda: list(a.find(QUERY)),
                         lambda: a.move(QUERY, "ANYWHERE").result()):
                with pytest.raises(DicomNetError):
                    call()
            assert a.echo() == 0
        with client(quiet, "RAISE").associate("127.0.0.1", stores["mem"].port, "LEAKS", contexts=contexts,
                                              for_get=True) as a:
            with pytest.raises(DicomNetError):
                list(a.get(QUERY))
        for where, ae in (("file", "RAISE"), ("file", "RAISEDEST"), ("file", "BADPATH"), ("file", "NOPATH"),
                          ("lane", "RAISEDEST"), ("lane", "BADPATH"), ("lane", "NOPATH")):
            with client(quiet, ae).associate("127.0.0.1", stores[where].port, "LEAKS", contexts=contexts) as a:
                with pytest.raises(DicomNetError):
                    a.store(instances["big"])
                assert a.echo() == 0

    once()
    leaks.baseline()
    for _ in range(REPS):
        once()
    leaks.check()
    echo_promptly(stores["mem"].port, "LEAKS", quiet)


# ======================================================= server: bad bytes
MALFORMED: dict[str, bytes] = {
    "unknown-pdu-type": pdu(0x0A, bytes(4)),
    "pdv-overruns-pdu": pdu(4, struct.pack(">LBB", 5000, 1, 3) + bytes(10)),
    "garbage-command-set": pdata(1, True, True, b"\xff" * 40),
    "unknown-context-id": pdata(9, True, True, encode_command(c_store_rq(1, CT, uid(9)))),
    "second-associate-rq": associate_rq_bytes(called="LEAKS"),
    "pdata-over-max-pdu": struct.pack(">BBL", 4, 0, 0x7FFFFFFF) + bytes(64),
    "command-in-mid-data-set": pdata(1, True, True, encode_command(c_store_rq(2, CT, uid(8)))),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_pdu_is_aborted(stores, leaks, quiet, case):
    """A PDU that breaks PS3.8/PS3.7 on an established association -- here in
    the middle of a C-STORE data set, kept in memory, streamed to a file, or
    through the compiled lane -- is answered with an A-ABORT and the
    connection closed."""
    def once(n: int) -> None:
        for srv in stores.values():
            with raw_established(srv.port, CT_CONTEXTS) as sock:
                store_start(sock, uid(100 + n), 40_000)
                sock.sendall(MALFORMED[case])
                assert until_abort(sock)

    once(0)
    leaks.baseline()
    for n in range(REPS // 3):
        once(n)
    leaks.check()
    for srv in stores.values():
        echo_promptly(srv.port, "LEAKS", quiet)


def test_data_set_over_max_dataset_bytes_is_aborted(servers, leaks, quiet, instances):
    """A C-STORE held in memory that grows past max_dataset_bytes (64 KiB):
    the server aborts the association as the cap is crossed."""
    srv = servers(Handler([]), max_dataset_bytes=64 << 10, max_pdu=16384)
    leaks.watch(srv)

    def once() -> None:
        with pytest.raises(DicomNetError):
            with client(quiet).associate("127.0.0.1", srv.port, "LEAKS", contexts=CT_CONTEXTS) as assoc:
                assoc.store(instances["big"])

    once()
    leaks.baseline()
    for _ in range(REPS // 2):
        once()
    leaks.check()
    echo_promptly(srv.port, "LEAKS", quiet)


# ================================================== server: C-MOVE, C-GET
#: C-MOVE destination -> how it fails (the address is set in the test)
DESTINATIONS = ["REFUSER", "NO-CONTEXT", "UNREACHABLE", "ABORT-AT-RQ", "SILENT-AT-RQ", "ABORT-65536",
                "RST-65536", "ABORT-2500000+window", "RST-2200000+window", "REL-SILENT"]


@pytest.mark.parametrize("destination", DESTINATIONS)
def test_c_move_whose_destination_fails(servers, leaks, quiet, instances, peer, destination):
    """C-MOVE of memory-mapped files to a destination that rejects the
    association, accepts no context, cannot be reached, aborts or resets at
    the RQ or mid-file (also with several C-STOREs outstanding: an
    Asynchronous Operations Window), never answers the RQ, or never answers
    the release: the sub-association and the files are closed, the requestor
    answered."""
    destination, window = destination.partition("+")[::2]
    refuser = servers(Handler([]))                              # AE LEAKS: "REFUSER" is rejected
    verification_only = servers(Handler([]), contexts=[VERIFICATION])
    address = {"REFUSER": refuser.port, "NO-CONTEXT": verification_only.port, "UNREACHABLE": free_port()}
    srv = servers(Handler([instances["big"], instances["small"], instances["big"]] * (2 if window else 1)),
                  destinations={destination: ("127.0.0.1", address.get(destination, peer))},
                  artim_timeout=0.3, read_timeout=0.5, dimse_timeout=0.5, move_async_operations=8 if window else 1)
    if destination == "NO-CONTEXT":
        srv.destinations[destination] = ("127.0.0.1", verification_only.port)
        verification_only.policy.require_called_ae = False
    leaks.watch(srv, refuser, verification_only)

    def once() -> None:
        with client(quiet).associate("127.0.0.1", srv.port, "LEAKS", contexts=QR) as assoc:
            result = assoc.move(QUERY, destination)
            try:
                result.result()
            except DicomNetError:
                pass
            assert result.status is not None and (result.failed or destination == "REL-SILENT"), result

    once()
    leaks.baseline()
    for _ in range(3 if "SILENT" in destination else 10):
        once()
    leaks.check()
    echo_promptly(srv.port, "LEAKS", quiet)


@pytest.mark.parametrize("how", ["cancel", "cancel-store-to", "exception", "abort", "reset"])
def test_c_get_cut_short(stores, leaks, quiet, instances, tmp_path, how):
    """A C-GET of memory-mapped files left early: the loop broken (C-CANCEL;
    the association goes on), an exception in the ``with`` block, an A-ABORT,
    a TCP reset from a proxy mid-file."""
    srv = stores["file"]
    out = tmp_path / "got"
    out.mkdir()
    leaks.folders.append(out)
    contexts = [VERIFICATION, *QR, (CT, (EXPLICIT,))]

    def once() -> None:
        port, proxy = srv.port, None
        if how == "reset":
            proxy = FaultProxy(("127.0.0.1", srv.port), down=Plan(cut_at=3_000_000))
            port = proxy.port
        try:
            with client(quiet).associate("127.0.0.1", port, "LEAKS", contexts=contexts, for_get=True) as assoc:
                for item in assoc.get(QUERY, store_to=out if how == "cancel-store-to" else None):
                    if how.startswith("cancel"):
                        break
                    if how == "exception":
                        raise KeyError("leaving the block")
                    if how == "abort":
                        assoc.abort()
                if how.startswith("cancel"):
                    assert assoc.echo() == 0
        except (KeyError, DicomNetError, OSError):
            pass
        finally:
            if proxy is not None:
                proxy.close()
        for name in os.listdir(out):     # whole files are fine (and removed); partial ones are not
            assert not name.endswith(".part"), name
            os.unlink(out / name)

    once()
    leaks.baseline()
    for _ in range(10):
        once()
    leaks.check()
    echo_promptly(srv.port, "LEAKS", quiet)


# =========================================================== server: TLS
@pytest.mark.skipif(OPENSSL is None, reason="the openssl command is needed to make certificates")
def test_tls_handshakes_that_fail(servers, leaks, quiet, pki, instances):
    """Over TLS (client certificates required): a plain DICOM peer, a peer
    that says nothing (ARTIM bounds the handshake), one that hangs up or
    resets mid-handshake, a client that does not trust the server, one
    without a certificate, one with a certificate from another CA -- and,
    from our Client, a TLS handshake with a plain server; then a good TLS
    association aborted, and one reset in the middle of a memory-mapped file."""
    from dicomnet.transport.tls import make_context

    def ctx(ca: str, cert: str | None = None) -> ssl.SSLContext:
        return make_context(server_side=False, ca=pki[ca] + ".crt", cert=cert and pki[cert] + ".crt",
                            key=cert and pki[cert] + ".key")

    server_ctx = make_context(server_side=True, cert=pki["server"] + ".crt", key=pki["server"] + ".key",
                              ca=pki["ca"] + ".crt", require_client_cert=True)
    srv = servers(Handler([]), tls=server_ctx, artim_timeout=0.3)
    plain = servers(Handler([]))
    leaks.watch(srv, plain)
    bio_out = ssl.MemoryBIO()           # a real ClientHello, to stop half-way through
    tls_obj = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), bio_out)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls_obj.do_handshake()
    client_hello = bio_out.read()
    refusing = [ctx("otherca", "client"), ctx("ca"), ctx("ca", "rogue")]

    def once() -> None:
        for data, end in ((associate_rq_bytes(called="LEAKS"), "drain"), (b"", "drain"),
                          (client_hello[:40], "close"), (client_hello, "reset")):
            sock = connect(srv.port)
            sock.sendall(data)
            if end == "drain":
                drain(sock)
                sock.close()
            elif end == "close":
                sock.close()
            else:
                reset(sock)
        for bad in refusing:
            with pytest.raises((DicomNetError, OSError)):
                with client(quiet, tls=bad).associate("127.0.0.1", srv.port, "LEAKS",
                                                      contexts=[VERIFICATION]) as assoc:
                    assoc.echo()
        with pytest.raises((DicomNetError, OSError)):
            client(quiet, tls=ctx("ca", "client")).associate("127.0.0.1", plain.port, "LEAKS",
                                                              contexts=[VERIFICATION])
        assoc = client(quiet, tls=ctx("ca", "client")).associate("127.0.0.1", srv.port, "LEAKS",
                                                                  contexts=[VERIFICATION])
        assert assoc.echo() == 0
        assoc.abort()
        with FaultProxy(("127.0.0.1", srv.port), up=Plan(cut_at=700_000)) as proxy:   # reset mid-file
            with pytest.raises((DicomNetError, OSError)):
                with client(quiet, tls=ctx("ca", "client")).associate(
                        "127.0.0.1", proxy.port, "LEAKS", contexts=CT_CONTEXTS) as assoc:
                    assoc.store(instances["big"])

    once()
    leaks.baseline()
    for _ in range(5):
        once()
    leaks.check()
    echo_promptly(srv.port, "LEAKS", quiet, tls=ctx("ca", "client"))


# ====================================================== server: watchdog
class Hanging(Handler):
    """on_echo blocks (until ``release``) for a calling AE title HANG."""

    def __init__(self) -> None:
        super().__init__([])
        self.release = threading.Event()

    def on_echo(self, ctx):
        if ctx.calling_ae == "HANG":
            self.release.wait(30)
        return 0

    def on_find(self, ctx, query):
        yield {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "1.2.3"}
        if ctx.calling_ae == "HANG":
            self.release.wait(30)        # a lazy match that takes for ever
        yield {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "1.2.4"}


def test_hung_handlers_abandoned_by_the_watchdog(servers, leaks, quiet):
    """handler_timeout (0.2 s) gives up on hung handler calls (C-ECHO, and a
    C-FIND between two matches): each such association is aborted, and once
    the handlers return their threads end and the aborting threads are gone.
    (Objects are not counted here: the watchdog keeps its last guard, see
    test_an_idle_server_keeps_nothing_of_its_last_association.)"""
    handler = Hanging()
    srv = servers(handler, handler_timeout=0.2)
    leaks.watch(srv)

    def batch(n: int) -> None:
        assocs = [client(quiet, "HANG").associate("127.0.0.1", srv.port, "LEAKS", contexts=[VERIFICATION, *QR])
                  for _ in range(n)]
        for i, assoc in enumerate(assocs):
            with pytest.raises(DicomNetError):
                assoc.echo() if i % 2 else list(assoc.find(QUERY))
        assert srv.abandoned_threads == n
        echo_promptly(srv.port, "LEAKS", quiet)     # while they hang
        handler.release.set()
        assert wait_for(lambda: srv.abandoned_threads == 0, 5.0)
        handler.release.clear()

    batch(1)
    leaks.baseline()
    for _ in range(2):
        batch(5)
    leaks.check(objects=False)


def test_an_idle_server_keeps_nothing_of_its_last_association(servers, leaks, quiet, instances):
    """Once its associations are over, a server whose handler watchdog runs
    holds none of their objects (the last one held a 2 MiB data set buffer)."""
    warm = servers(Handler([]))
    with client(quiet).associate("127.0.0.1", warm.port, "LEAKS", contexts=CT_CONTEXTS) as assoc:
        assoc.store(instances["big"])   # (imports and caches made before the baseline)
    srv = servers(Handler([]), handler_timeout=0.2)   # the watchdog looks at its guards every 0.2 s
    leaks.watch(warm, srv)
    leaks.baseline()
    with client(quiet).associate("127.0.0.1", srv.port, "LEAKS", contexts=CT_CONTEXTS) as assoc:
        assert assoc.store(instances["big"]) == 0
        time.sleep(0.5)                  # long enough to be seen by the watchdog
    time.sleep(0.5)
    leaks.check(objects=False)
    # dicomnet's objects only: the accept loop's last (closed) socket object stays, harmlessly.
    grown = collections.Counter({name: n for name, n in (census() - leaks._base["objects"]).items()
                                 if name.startswith("dicomnet.")})
    assert not grown, f"objects left alive: {dict(grown)}; {holders(grown, leaks._base['ids'])}"


# ====================================================== server: shutdown
def test_server_shutdown_with_associations_open(leaks, quiet, instances, tmp_path):
    """Start a server, open associations of every kind (established, half-way
    through a streamed data set, not yet associated), shut it down: back to
    what the process held before the server existed."""
    folder = tmp_path / "in"
    folder.mkdir()
    leaks.folders.append(folder)

    def once() -> None:
        srv = make_server(quiet, FileHandler([], folder), handler_timeout=5.0)
        try:
            held = client(quiet).associate("127.0.0.1", srv.port, "LEAKS", contexts=CT_CONTEXTS)
            streaming = raw_established(srv.port, CT_CONTEXTS)
            store_start(streaming, uid(7), MID_STORE)
            silent = connect(srv.port)
            assert wait_for(lambda: srv.active_associations == 3, 5.0)
        finally:
            srv.shutdown(5.0)
        with pytest.raises(DicomNetError):
            held.echo()
        assert until_abort(streaming)
        for sock in (streaming, silent):
            sock.close()

    once()
    leaks.baseline()
    for _ in range(8):
        once()
    leaks.check()


def test_a_shutdown_that_outwaits_a_handler_still_releases_everything(leaks, quiet):
    """shutdown(timeout) shorter than a running handler call: once the handler
    returns and its thread ends, the server holds nothing (the application
    still holds the Server object)."""
    class Slow(Handler):
        def on_echo(self, ctx):
            time.sleep(0.5)
            return 0

    warm = make_server(quiet, Slow([]))
    warm.shutdown(5.0)
    leaks.baseline()
    srv = make_server(quiet, Slow([]))
    assoc = client(quiet).associate("127.0.0.1", srv.port, "LEAKS", contexts=[VERIFICATION])
    def echo_once() -> None:
        with contextlib.suppress(DicomNetError):
            assoc.echo()

    echo = threading.Thread(target=echo_once, name="echoing")
    echo.start()
    assert wait_for(lambda: srv.active_associations == 1)
    time.sleep(0.1)                      # the handler is running
    srv.shutdown(0.1)                    # gives up waiting for it
    echo.join(5.0)
    assoc.abort()
    # descriptors, threads and maps: the test still holds the Server (and its objects)
    leaks.check(timeout=1.0, objects=False)
    srv.shutdown(5.0)


# =========================================================== memory
def test_faults_leave_no_memory_behind(stores, leaks, quiet, instances, peer):
    """A mix of the faults above, on both sides, 40 times: traced Python
    memory back within 256 KiB (a leak of 1 KiB per fault would show)."""
    contexts = [VERIFICATION, *QR, (CT, (EXPLICIT,))]

    def once(n: int) -> None:
        with raw_established(stores["mem"].port, CT_CONTEXTS) as sock:
            store_start(sock, uid(n), MID_STORE)
            sock.sendall(ABORT_PDU)
            drain(sock)
        with raw_established(stores["file"].port, CT_CONTEXTS) as sock:
            store_start(sock, uid(n), MID_STORE)
            sock.sendall(MALFORMED["pdv-overruns-pdu"])
            assert until_abort(sock)
        with raw_established(stores["mem"].port, CT_CONTEXTS) as sock:
            store_start(sock, uid(n), MID_STORE)
            reset(sock)
        with client(quiet).associate("127.0.0.1", stores["file"].port, "LEAKS", contexts=contexts,
                                     for_get=True) as assoc:
            for _ in assoc.get(QUERY):
                break
        for mode, work in (("ABORT-65536", lambda a: a.store(instances["big"])),
                           ("FIND-ABORT", lambda a: list(a.find(QUERY)))):
            with pytest.raises(DicomNetError):
                with client(quiet).associate("127.0.0.1", peer, mode, contexts=contexts) as assoc:
                    work(assoc)

    once(0)
    once(1)
    tracemalloc.start()
    try:
        leaks.baseline()
        traced = tracemalloc.get_traced_memory()[0]
        for n in range(40):
            once(n)
        leaks.check()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - traced
    finally:
        tracemalloc.stop()
    assert grown < 256 << 10, f"traced memory grew by {grown} bytes over 40 rounds of faults"


def test_the_memory_measure_sees_a_leak_of_a_few_kib_per_round():
    """What the two memory soaks measure would show 40 rounds that each keep 8 KiB."""
    kept = []
    tracemalloc.start()
    try:
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0]
        for _ in range(40):
            kept.append(bytearray(8192))
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - traced
    finally:
        tracemalloc.stop()
    assert grown >= 256 << 10, grown


# ================================================================ client
def test_client_that_cannot_associate(leaks, quiet, peer):
    """Connection refused; A-ASSOCIATE-RJ; an A-ABORT, a close or a reset in
    answer to the RQ; no answer at all (ARTIM)."""
    closed_port = free_port()

    def once(silent: bool) -> None:
        with pytest.raises(OSError):
            client(quiet).associate("127.0.0.1", closed_port, "ANY")
        for called in ("RJ", "ABORT-AT-RQ", "CLOSE-AT-RQ", "RST-AT-RQ") + (("SILENT-AT-RQ",) if silent else ()):
            with pytest.raises(DicomNetError):
                client(quiet, artim_timeout=0.2).associate("127.0.0.1", peer, called, contexts=[VERIFICATION])

    once(True)
    leaks.baseline()
    for n in range(REPS):
        once(silent=n % 5 == 0)
    leaks.check()


def _store(assoc, instances, out):
    assoc.store(instances["big"])


def _store_many(assoc, instances, out):
    list(assoc.store_many([instances["big"], instances["small"], instances["big"]]))


def _store_many_window(assoc, instances, out):
    list(assoc.store_many([instances["big"], instances["small"]] * 3))


def _find(assoc, instances, out):
    list(assoc.find(QUERY))


def _move(assoc, instances, out):
    list(assoc.move(QUERY, "ELSEWHERE"))


def _get(assoc, instances, out):
    list(assoc.get(QUERY))


def _get_store_to(assoc, instances, out):
    list(assoc.get(QUERY, store_to=out))


def _echo(assoc, instances, out):
    assoc.echo()


CLIENT_FAULTS = [
    ("ABORT-65536", _store), ("RST-65536", _store), ("SILENT", _store), ("ABORT-300000", _store_many),
    ("RST-2200000", _store_many), ("ABORT-2500000", _store_many_window), ("RST-300000", _store_many_window),
    ("FIND-ABORT", _find), ("MOVE-ABORT", _move), ("GET-ABORT", _get),
    ("GET-ABORT", _get_store_to),
    ("SILENT", _echo),
]


@pytest.mark.parametrize("mode,service", CLIENT_FAULTS,
                         ids=[f"{v[0]}-{v[1].__name__[1:]}" for v in (getattr(p, "values", p) for p in CLIENT_FAULTS)])
def test_client_when_the_peer_aborts_resets_or_goes_silent(leaks, quiet, peer, instances, tmp_path, mode, service):
    """Our Client, while it stores memory-mapped files one by one or several
    at a time, finds, moves or gets (into memory or streamed to files), sees
    the peer send A-ABORT, reset the connection or stop answering (DIMSE
    timeout 0.3 s): the association ends, its socket, the file maps and any
    partial file are gone."""
    out = tmp_path / "got"
    out.mkdir()
    leaks.folders.append(out)
    contexts = [VERIFICATION, (CT, (EXPLICIT,)), *QR]

    def once() -> None:
        with pytest.raises((DicomNetError, OSError)):
            with client(quiet, dimse_timeout=0.3).associate(
                    "127.0.0.1", peer, mode, contexts=contexts, for_get=service in (_get, _get_store_to),
                    async_operations=8 if service is _store_many_window else 1) as assoc:
                service(assoc, instances, out)

    once()
    leaks.baseline()
    for _ in range(4 if mode == "SILENT" else 10):
        once()
    leaks.check(timeout=1.5)


@pytest.mark.parametrize("mode", ["REL-SILENT", "REL-ABORT", "REL-CLOSE", "REL-RST"])
def test_client_release_not_answered(leaks, quiet, peer, mode):
    """A release the peer never answers (timeout 0.2 s), answers with an
    A-ABORT, with a close or with a reset."""
    def once() -> None:
        assoc = client(quiet).associate("127.0.0.1", peer, mode, contexts=[VERIFICATION])
        assert assoc.echo() == 0
        try:
            assoc.release(timeout=0.2)
        except DicomNetError:
            pass
        assert assoc.is_closed

    once()
    leaks.baseline()
    for _ in range(6 if mode == "REL-SILENT" else REPS):
        once()
    leaks.check()


@pytest.mark.parametrize("how", ["find-break", "get-break", "move-break", "store-many-break", "raise-in-find",
                                 "raise-in-get", "raise-in-move", "raise-after-store", "store-many-bad-file",
                                 "get-bad-store-to"])
def test_client_leaving_early(stores, leaks, quiet, instances, tmp_path, how):
    """Breaking out of find/get/move loops (C-CANCEL; the association is used
    again and released) and out of store_many with several C-STOREs
    outstanding, exceptions inside the ``with`` block (A-ABORT), store_many
    of memory-mapped files where a later file is missing, and a C-GET into a
    folder where no file can be made."""
    srv = stores["file"]
    srv.destinations["LEAKS"] = ("127.0.0.1", stores["mem"].port)
    contexts = [VERIFICATION, *QR, (CT, (EXPLICIT,))]

    def once() -> None:
        try:
            with client(quiet).associate("127.0.0.1", srv.port, "LEAKS", contexts=contexts,
                                         for_get="get" in how, async_operations=8) as assoc:
                if "find" in how:
                    for _ in assoc.find(QUERY):
                        if how.startswith("raise"):
                            raise KeyError(how)
                        break
                elif how == "get-bad-store-to":
                    with pytest.raises(DicomNetError):
                        list(assoc.get(QUERY, store_to="/proc/self/no-such-place"))
                elif "get" in how:
                    for _ in assoc.get(QUERY):
                        if how.startswith("raise"):
                            raise KeyError(how)
                        break
                elif "move" in how:
                    for _ in assoc.move(QUERY, "LEAKS"):
                        if how.startswith("raise"):
                            raise KeyError(how)
                        break
                elif how == "store-many-break":
                    for _ in assoc.store_many([instances["big"], instances["small"]] * 4):
                        break
                elif how == "raise-after-store":
                    assoc.store(instances["big"])
                    raise KeyError(how)
                else:
                    with pytest.raises(FileNotFoundError):
                        list(assoc.store_many([instances["big"], instances["big"], str(tmp_path / "missing")]))
                assert assoc.echo() == 0
        except KeyError:
            pass

    once()
    leaks.baseline()
    for _ in range(15):
        once()
    leaks.check()
    echo_promptly(srv.port, "LEAKS", quiet)


# ============================================================ real peers
PYNETDICOM_SCU = r'''
import sys
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification
port, path, rounds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ae = AE(ae_title="PYNETDICOM")
ae.add_requested_context(Verification)
ae.add_requested_context(CTImageStorage)
ds = dcmread(path)
for i in range(rounds):
    assoc = ae.associate("127.0.0.1", port, ae_title="LEAKS")
    assert assoc.is_established
    assoc.send_c_echo()
    assoc.send_c_store(ds)
    assoc.abort() if i % 2 else assoc.release()
print("done", flush=True)
'''


@pytest.mark.peers
def test_real_peers_that_abort_or_die(stores, leaks, quiet, instances, tmp_path):
    """dcmtk's storescu and echoscu ending with --abort, storescu killed in the
    middle of a file (SIGKILL), and pynetdicom releasing and aborting, against
    both servers."""
    storescu, echoscu = shutil.which("storescu"), shutil.which("echoscu")
    if not (storescu and echoscu):
        pytest.skip("dcmtk's storescu/echoscu not installed (apt-get install dcmtk)")
    pynetdicom = subprocess.run([sys.executable, "-c", "import pynetdicom, pydicom"], capture_output=True).returncode == 0
    folder = leaks.folders[0]

    def dcmtk(*args: str) -> None:
        subprocess.run(list(args), capture_output=True, timeout=60, check=False)

    def once() -> None:
        for srv in stores.values():
            port = str(srv.port)
            dcmtk(echoscu, "--abort", "-aec", "LEAKS", "127.0.0.1", port)
            dcmtk(storescu, "--abort", "-aec", "LEAKS", "127.0.0.1", port, instances["big"], instances["small"])
        # Killed while streaming a 2 MiB instance into a file (slowed down by a proxy).
        with FaultProxy(("127.0.0.1", stores["file"].port), up=Plan(chunk=16384, gap=0.002)) as proxy:
            proc = subprocess.Popen([storescu, "-aec", "LEAKS", "127.0.0.1", str(proxy.port), instances["big"]],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                assert wait_for(lambda: any(n.endswith(".part") for n in os.listdir(folder)), 5.0)
            finally:
                proc.kill()
                proc.wait(10)

    once()
    leaks.baseline()
    for _ in range(3):
        once()
    if pynetdicom:
        done = subprocess.run([sys.executable, "-c", PYNETDICOM_SCU, str(stores["file"].port), instances["big"], "6"],
                              capture_output=True, text=True, timeout=120, cwd=PACKAGE_ROOT)
        assert "done" in done.stdout, done.stderr[-2000:]
    leaks.check()
    for srv in stores.values():
        echo_promptly(srv.port, "LEAKS", quiet)
