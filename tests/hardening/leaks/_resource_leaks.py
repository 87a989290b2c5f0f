"""Shared pieces of the resource-leak soaks (``test_resource_leaks_*.py``):
what is counted, the servers and clients the soaks run, raw-socket helpers,
and a scripted peer that misbehaves on purpose.

The soaks run each way an association can end many times against an
in-process :class:`dicomnet.Server` and from an in-process
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

The fixtures (``leaks``, ``quiet``, ``instances``, ``servers``, ``stores``,
``peer``) are in this folder's conftest.py.
"""
from __future__ import annotations

import collections
import contextlib
import gc
import logging
import math
import os
import socket
import ssl
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dicomnet.client import Client
from dicomnet.dimse.commands import c_store_rq, encode_command
from dicomnet.server import Server

try:    # sockets waiting in Sta13 after our A-ABORT (PS3.8 AA-1/AA-8, then AR-5/AA-2)
    from dicomnet.transport import closer
except ImportError:     # pragma: no cover - an older dicomnet closes them at once
    closer = None

from ..conftest import CT, EXPLICIT, VERIFICATION, associate_rq_bytes, pdu, wait_for
from ..test_limits import _recv_exact as recv_exact

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
        """Take the baseline (after a warm-up) and stop automatic collection.

        Garbage is collected before the descriptors are listed: an earlier
        test's files or sockets held only by a reference cycle (a kept
        traceback, say) would otherwise be in the baseline and close at the
        next collection, and a new descriptor would then not raise the count."""
        self.quiesce()
        gc.collect()
        self._base = self._state()
        self._base["ids"] = set()
        self._base["objects"] = census(self._base["ids"])
        self._base["rss"] = rss()
        gc.disable()

    def problems(self) -> list[str]:
        assert self._base is not None, "baseline() first"
        base, now = self._base, self._state()
        out = []
        # Any descriptor the baseline did not have, even where one of the
        # baseline's has closed meanwhile and the count is the same.
        extra = {fd: target for fd, target in now["fds"].items() if base["fds"].get(fd) != target}
        if extra:
            out.append(f"{len(extra)} more fd(s): {extra}")
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


def make_server(logger: logging.Logger, handler: Any = None, **kw: Any) -> Server:
    # No watchdog thread unless a test asks for one (handler_timeout): see
    # test_an_idle_server_keeps_nothing_of_its_last_association.
    options = dict(artim_timeout=0.5, read_timeout=3.0, write_timeout=3.0, dimse_timeout=3.0,
                   max_associations=128, handler_timeout=math.inf, logger=logger)
    options.update(kw)
    return Server("LEAKS", handler, **options).start("127.0.0.1", 0)


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


# ============================================ shared by several test modules
MID_STORE = 200_000          # bytes of the data set sent before the end (of ~2 MiB announced)
REPS = 30

CT_CONTEXTS = [(CT, (EXPLICIT,)), (VERIFICATION, (EXPLICIT,))]


def uid(n: int) -> str:
    return f"1.2.826.0.1.3680043.9.7777.5.{n}"


#: PDUs that break PS3.8/PS3.7 on an established association (test_malformed_pdu_is_aborted;
#: test_faults_leave_no_memory_behind sends one of them).
MALFORMED: dict[str, bytes] = {
    "unknown-pdu-type": pdu(0x0A, bytes(4)),
    "pdv-overruns-pdu": pdu(4, struct.pack(">LBB", 5000, 1, 3) + bytes(10)),
    "garbage-command-set": pdata(1, True, True, b"\xff" * 40),
    "unknown-context-id": pdata(9, True, True, encode_command(c_store_rq(1, CT, uid(9)))),
    "second-associate-rq": associate_rq_bytes(called="LEAKS"),
    "pdata-over-max-pdu": struct.pack(">BBL", 4, 0, 0x7FFFFFFF) + bytes(64),
    "command-in-mid-data-set": pdata(1, True, True, encode_command(c_store_rq(2, CT, uid(8)))),
}


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


