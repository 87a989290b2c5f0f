"""Process managers for the real DICOM peers the interop tests talk to.

Every peer here is a plain OS process bound to a free port on loopback, started
in its own temporary directory and process group, and stopped (group killed,
directory removed) when its context manager exits -- even when the test fails.
See /work/shared/PEERS.md for the facts these helpers rely on.

Peers: :class:`Orthanc` (with a urllib REST client), dcmtk's :class:`Storescp`
and :class:`Dcmqrscp`, :class:`PynetdicomSCP` (a separate process); dcmtk SCUs
:func:`echoscu` ... :func:`getscu` return :class:`ToolResult`; :func:`free_port`
checks all interfaces (Orthanc 1.10 binds 0.0.0.0); :func:`require` skips.

:data:`PEERS_STARTED` and :data:`PEERS_SKIPPED` record, per session, which kinds
of peer ran and why others could not; ``tests/conftest.py`` turns "no peer ran
at all" into a failed CI run.
"""
from __future__ import annotations

import base64
import contextlib
import importlib.util
import itertools
import json
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, TypeVar, cast

import pytest

HOST = "127.0.0.1"
START_TIMEOUT = 30.0

#: kind of peer ("orthanc", "dcmtk", "pynetdicom") -> how many times it ran.
PEERS_STARTED: dict[str, int] = {}
#: kind of peer -> the reason it was skipped (last one wins).
PEERS_SKIPPED: dict[str, str] = {}

_KIND = {"Orthanc": "orthanc", "pynetdicom": "pynetdicom", "pydicom": "pydicom"}
_HINTS = {
    "Orthanc": "apt-get install orthanc",
    "pynetdicom": "pip install pynetdicom",
    "pydicom": "pip install pydicom",
}
_DCMTK_HINT = "apt-get install dcmtk"


class PeerError(RuntimeError):
    """A peer process could not be started or misbehaved (harness failure)."""


def _kind(tool: str) -> str:
    return _KIND.get(tool, "dcmtk")


def record_started(kind: str) -> None:
    """Note that a peer of ``kind`` really ran in this session."""
    PEERS_STARTED[kind] = PEERS_STARTED.get(kind, 0) + 1


def which(tool: str) -> str | None:
    """Path of a binary; also looks in the sbin dirs (Debian puts Orthanc in
    /usr/sbin, which is not on a normal user's PATH)."""
    return shutil.which(tool) or shutil.which(tool, path="/usr/local/sbin:/usr/sbin:/sbin")


def require(*tools: str) -> None:
    """Skip the calling test unless every binary (on PATH) or package exists."""
    for tool in tools:
        if which(tool) or (
            tool.isidentifier() and importlib.util.find_spec(tool) is not None
        ):
            continue
        hint = _HINTS.get(tool, _DCMTK_HINT)
        reason = f"peer {tool!r} is not available (install it: {hint})"
        PEERS_SKIPPED[_kind(tool)] = reason
        pytest.skip(reason)


# -- ports and processes -----------------------------------------------------

_handed_out: set[int] = set()


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 and on all interfaces.

    The kernel picks the port (bind to port 0); a port is never handed out
    twice in one session, so two peers started back to back cannot collide.
    If another process grabs it before the peer binds, the peer exits with
    "already in use" and ``__enter__`` retries on new ports.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port: int = s.getsockname()[1]
        if port in _handed_out:
            continue
        try:  # Orthanc binds 0.0.0.0: the port must be free there too.
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("0.0.0.0", port))
        except OSError:
            continue
        _handed_out.add(port)
        return port
    raise PeerError("no free TCP port found")


def port_accepts(port: int, host: str = HOST) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _answers_echo(port: int, aet: str) -> bool:
    """Readiness of a dcmtk SCP: it accepts TCP *and* answers a C-ECHO (so a
    stranger that grabbed our port is not mistaken for the peer)."""
    if not port_accepts(port):
        return False
    argv = [which("echoscu") or "echoscu", "-to", "2", "-ta", "2", "-td", "2",
            "-aec", aet, HOST, str(port)]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=peer_env(), timeout=10)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def peer_env() -> dict[str, str]:
    """Environment for peer processes: Nagle off (Orthanc and dcmtk read it)."""
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    return env


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _die_with_parent() -> None:
    """In a child: get SIGKILL when the test process dies, however it dies
    (Linux prctl PR_SET_PDEATHSIG), so a killed run leaves no peer behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # 1 == PR_SET_PDEATHSIG


def _stop_group(proc: subprocess.Popen[bytes] | None) -> None:
    """Kill a peer and everything it forked (it leads its own session)."""
    # Only while the leader is unreaped: its pid (= the group id) is ours then.
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - a zombie we cannot reap
        pass


_P = TypeVar("_P", bound="_Process")


class _Process:
    """Base for a peer that is a child process with a temp dir and a log."""

    kind = "dcmtk"
    name = "peer"

    def __init__(self) -> None:
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(os.devnull)

    def _mkdir(self) -> Path:
        self.dir = Path(tempfile.mkdtemp(prefix=f"dicomnet-{self.name}-"))
        self.log_path = self.dir / f"{self.name}.log"
        return self.dir

    def _spawn(self, argv: Sequence[str]) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=peer_env(),
                cwd=self.dir,
                start_new_session=True,  # so stop() can kill the whole group
                preexec_fn=_die_with_parent,
            )

    def _wait_until(self, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise PeerError(
                    f"{self.name} exited with {self.proc.returncode}; log tail:\n"
                    + self.log_tail()
                )
            if ready():
                return
            if time.monotonic() > deadline:
                raise PeerError(
                    f"{self.name} not ready after {timeout:.0f} s; log tail:\n"
                    + self.log_tail()
                )
            time.sleep(0.02)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the peer's log (for failure messages)."""
        return _tail(self.log_path, lines)

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Kill the peer and remove its directory; safe to call twice."""
        _stop_group(self.proc)
        self.proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self: _P) -> _P:
        for attempt in range(3):
            try:
                self.start()
                break
            except BaseException as e:
                self.stop()
                # Someone took our free port before the peer bound it: new ports.
                if not isinstance(e, PeerError) or "already in use" not in str(e) or attempt == 2:
                    raise
        record_started(self.kind)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# -- Orthanc -------------------------------------------------------------------


class OrthancRestError(PeerError):
    """Orthanc's REST API answered with an HTTP error."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} -> HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


def _modality(spec: Mapping[str, Any] | tuple[str, int]) -> dict[str, Any]:
    if isinstance(spec, tuple):
        aet, port = spec
        return {"AET": aet, "Host": HOST, "Port": int(port)}
    return {"Host": HOST, **spec}


class Orthanc(_Process):
    """Orthanc 1.10 as a throw-away PACS on free ports.

    ``modalities`` maps a name to ``(aet, port)`` or to an Orthanc modality
    dict (``{"AET":.., "Port":..}``; Host defaults to 127.0.0.1).
    """

    kind = "orthanc"
    name = "orthanc"

    def __init__(
        self,
        aet: str = "ORTHANC",
        modalities: Mapping[str, Mapping[str, Any] | tuple[str, int]] | None = None,
        config: Mapping[str, Any] | None = None,
        user: str = "ci",
        password: str = "ci-secret",
        timeout: float = START_TIMEOUT,
    ) -> None:
        super().__init__()
        self.aet = aet
        self.modalities = {k: _modality(v) for k, v in (modalities or {}).items()}
        self.extra_config = dict(config or {})
        self.user, self.password = user, password
        self.timeout = timeout
        self.dicom_port = 0
        self.http_port = 0
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._auth = f"Basic {token}"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    def start(self) -> None:
        require("Orthanc")
        d = self._mkdir()
        self.dicom_port, self.http_port = free_port(), free_port()
        cfg = {
            "Name": "dicomnet-test",
            "StorageDirectory": str(d / "db"),
            "IndexDirectory": str(d / "db"),
            "Plugins": [],
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "OrthancExplorerEnabled": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.user: self.password},
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True,
            "DicomAlwaysAllowMove": True,
            "UnknownSopClassAccepted": True,
            "DicomAssociationCloseDelay": 0,
            "SaveJobs": False,
            "SynchronousCMove": True,
            "DicomModalities": self.modalities,
            **self.extra_config,
        }
        (d / "orthanc.json").write_text(json.dumps(cfg, indent=1))
        binary = which("Orthanc") or "Orthanc"
        self._spawn(
            [binary, "--no-jobs", f"--logfile={self.log_path}", str(d / "orthanc.json")]
        )
        self._wait_until(self._ready, self.timeout)

    def _ready(self) -> bool:
        if not port_accepts(self.dicom_port):
            return False
        try:
            self.get("/system", timeout=2)
        except (OSError, PeerError):
            return False
        return True

    # -- REST (urllib only) --------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str = "application/json",
        timeout: float = 60.0,
    ) -> Any:
        """Call the REST API; JSON in (``body``) or raw bytes in, JSON out."""
        data = raw if raw is not None else (
            None if body is None else json.dumps(body).encode()
        )
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", self._auth)
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            raise OrthancRestError(method, path, e.code, text) from None
        if not payload:
            return None
        try:
            return json.loads(payload)
        except ValueError:
            return payload

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("PUT", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)

    # -- conveniences ----------------------------------------------------------

    def upload(self, source: str | os.PathLike[str] | bytes) -> dict[str, Any]:
        """``POST /instances`` a DICOM file; returns Orthanc's answer (ID, Status)."""
        raw = source if isinstance(source, bytes) else Path(source).read_bytes()
        answer = self.post("/instances", raw=raw, content_type="application/dicom")
        return cast("dict[str, Any]", answer)

    def instances(self) -> list[str]:
        """Orthanc IDs of every stored instance."""
        return cast("list[str]", self.get("/instances"))

    def instance_tags(self, orthanc_id: str) -> dict[str, Any]:
        """``GET /instances/ID/simplified-tags``."""
        return cast("dict[str, Any]", self.get(f"/instances/{orthanc_id}/simplified-tags"))

    def instance_file(self, orthanc_id: str) -> bytes:
        """The stored DICOM file, byte for byte."""
        return cast(bytes, self.get(f"/instances/{orthanc_id}/file"))

    def clear(self) -> None:
        """Delete every patient (and so every instance) from the store."""
        for pid in self.get("/patients"):
            self.delete(f"/patients/{pid}")

    def add_modality(self, name: str, aet: str, port: int, host: str = HOST) -> None:
        """``PUT /modalities/NAME``: register a peer Orthanc may talk to."""
        self.put(f"/modalities/{name}", {"AET": aet, "Host": host, "Port": port})

    def echo(self, modality: str, timeout: float = 30.0) -> bool:
        """C-ECHO from Orthanc to ``modality``; True on success."""
        try:
            self.post(f"/modalities/{modality}/echo", {}, timeout=timeout)
        except OrthancRestError:
            return False
        return True

    def store(self, modality: str, resources: Iterable[str]) -> dict[str, Any]:
        """C-STORE Orthanc resources (any level) to ``modality``, synchronously."""
        body = {"Resources": list(resources), "Synchronous": True}
        return cast("dict[str, Any]", self.post(f"/modalities/{modality}/store", body))

    def query(
        self, modality: str, level: str, query: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        """C-FIND from Orthanc to ``modality``; the answers as simplified tags."""
        q = self.post(
            f"/modalities/{modality}/query", {"Level": level, "Query": dict(query)}
        )
        qid = q["ID"]
        return [
            self.get(f"/queries/{qid}/answers/{i}/content?simplify")
            for i in self.get(f"/queries/{qid}/answers")
        ]

    def move(
        self,
        modality: str,
        level: str,
        resources: Sequence[Mapping[str, str]],
        target_aet: str | None = None,
    ) -> Any:
        """C-MOVE through ``modality`` toward ``target_aet`` (default: Orthanc)."""
        return self.post(
            f"/modalities/{modality}/move",
            {
                "Level": level,
                "Resources": [dict(r) for r in resources],
                "TargetAet": target_aet or self.aet,
                "Synchronous": True,
            },
        )


# -- dcmtk SCPs ----------------------------------------------------------------


class Storescp(_Process):
    """dcmtk ``storescp`` writing what it receives to ``self.out_dir``."""

    name = "storescp"

    def __init__(
        self,
        aet: str = "STORESCP",
        ignore: bool = False,
        args: Sequence[str] = (),
        timeout: float = START_TIMEOUT,
    ) -> None:
        super().__init__()
        self.aet, self.ignore, self.args = aet, ignore, list(args)
        self.timeout = timeout
        self.port = 0
        self.out_dir = Path(os.devnull)

    def start(self) -> None:
        require("storescp", "echoscu")
        d = self._mkdir()
        self.out_dir = d / "received"
        self.out_dir.mkdir()
        self.port = free_port()
        argv = ["storescp", "-aet", self.aet, "-od", str(self.out_dir)]
        if self.ignore:
            argv.append("--ignore")
        self._spawn([*argv, *self.args, str(self.port)])
        self._wait_until(lambda: _answers_echo(self.port, self.aet), self.timeout)

    def files(self) -> list[Path]:
        """Files received so far, sorted by name."""
        return sorted(p for p in self.out_dir.iterdir() if p.is_file())

    def wait_for_files(self, count: int, timeout: float = 10.0) -> list[Path]:
        """Wait until at least ``count`` files arrived; returns them."""
        deadline = time.monotonic() + timeout
        while len(found := self.files()) < count:
            if time.monotonic() > deadline:
                raise PeerError(
                    f"storescp got {len(found)} of {count} files; log:\n" + self.log_tail()
                )
            time.sleep(0.02)
        return found


class Dcmqrscp(_Process):
    """dcmtk ``dcmqrscp``: a Q/R SCP (echo, store, find, get, move) on a file store.

    ``move_destinations`` maps an AE title to the port a C-MOVE sends to (on
    127.0.0.1). ``preload`` files are sent to it with ``storescu`` at start.
    ``args`` are added to its command line (e.g. ``["--log-level", "trace"]``).
    """

    name = "dcmqrscp"

    def __init__(
        self,
        aet: str = "DCMQRSCP",
        move_destinations: Mapping[str, int] | None = None,
        preload: Sequence[str | os.PathLike[str]] = (),
        max_pdu: int = 16384,
        timeout: float = START_TIMEOUT,
        args: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.aet = aet
        self.args = list(args)
        self.move_destinations = dict(move_destinations or {})
        self.preload = [str(p) for p in preload]
        self.max_pdu = max_pdu
        self.timeout = timeout
        self.port = 0

    def start(self) -> None:
        require("dcmqrscp", "storescu", "echoscu")
        d = self._mkdir()
        store = d / "store"
        store.mkdir()
        self.port = free_port()
        hosts = "\n".join(
            f"dest{i} = ({aet}, {HOST}, {port})"
            for i, (aet, port) in enumerate(self.move_destinations.items())
        )
        (d / "dcmqrscp.cfg").write_text(
            f"NetworkTCPPort  = {self.port}\n"
            f"MaxPDUSize      = {self.max_pdu}\n"
            "MaxAssociations = 16\n\n"
            f"HostTable BEGIN\n{hosts}\nHostTable END\n\n"
            "VendorTable BEGIN\nVendorTable END\n\n"
            "AETable BEGIN\n"
            f"{self.aet} {store} RW (500, 1024mb) ANY\n"
            "AETable END\n"
        )
        # Fork mode (the default): in --single-process mode dcmqrscp 3.6.7 exits
        # after its first association. stop() kills the whole process group.
        self._spawn(["dcmqrscp", "-c", str(d / "dcmqrscp.cfg"), *self.args])
        self._wait_until(lambda: _answers_echo(self.port, self.aet), self.timeout)
        if self.preload:
            res = storescu(self.port, self.aet, self.preload)
            if res.returncode != 0 or res.errors:
                raise PeerError(f"preloading dcmqrscp failed:\n{res.output}")


# -- dcmtk SCUs ------------------------------------------------------------------


class ToolResult(NamedTuple):
    """What a dcmtk command-line tool did: exit code and stdout+stderr."""

    returncode: int
    output: str

    @property
    def errors(self) -> list[str]:
        """Error/fatal log lines (findscu and getscu exit 0 on failures)."""
        return [
            ln for ln in self.output.splitlines() if ln.startswith(("E:", "F:"))
        ]

    @property
    def ok(self) -> bool:
        """Exit code 0 and no error line."""
        return self.returncode == 0 and not self.errors


def run_tool(
    tool: str, *args: str, timeout: float = 60.0, cwd: str | os.PathLike[str] | None = None
) -> ToolResult:
    """Run a dcmtk tool with ``TCP_NODELAY=1``; skip the test if it is missing.

    A tool that overruns ``timeout`` is killed and raises :class:`PeerError`.
    """
    require(tool)
    try:
        done = subprocess.run(
            [which(tool) or tool, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=peer_env(),
            cwd=cwd,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        out = (e.output or b"").decode(errors="replace")
        raise PeerError(f"{tool} timed out after {timeout} s:\n{out}") from None
    record_started(_kind(tool))
    return ToolResult(done.returncode, done.stdout.decode(errors="replace"))


def _keys(keys: Iterable[str]) -> list[str]:
    return [a for k in keys for a in ("-k", k)]


# Each returns ToolResult(returncode, output); ``args`` go before the address
# (e.g. ``-xw`` J2K or ``-pdu N`` for storescu), ``keys`` become ``-k`` options.


def echoscu(port: int, called: str, *args: str, calling: str = "ECHOSCU",
            timeout: float = 30.0) -> ToolResult:
    """``echoscu -aet calling -aec called 127.0.0.1 port``."""
    return run_tool("echoscu", "-aet", calling, "-aec", called, *args, HOST, str(port),
                    timeout=timeout)


def storescu(port: int, called: str, files: Iterable[str | os.PathLike[str]], *args: str,
             calling: str = "STORESCU", timeout: float = 60.0) -> ToolResult:
    """``storescu`` the ``files``."""
    return run_tool("storescu", "-aet", calling, "-aec", called, *args, HOST, str(port),
                    *(str(f) for f in files), timeout=timeout)


def findscu(port: int, called: str, keys: Iterable[str], *args: str, model: str = "-S",
            calling: str = "FINDSCU", timeout: float = 60.0) -> ToolResult:
    """``findscu`` (model ``-P`` patient / ``-S`` study root); check ``.ok``."""
    return run_tool("findscu", "-aet", calling, "-aec", called, model, *_keys(keys), *args,
                    HOST, str(port), timeout=timeout)


def movescu(port: int, called: str, dest: str, keys: Iterable[str], *args: str,
            model: str = "-S", calling: str = "MOVESCU", timeout: float = 60.0) -> ToolResult:
    """``movescu -aem dest`` (identifiers need the unique keys above the level)."""
    return run_tool("movescu", "-aet", calling, "-aec", called, "-aem", dest, model,
                    *_keys(keys), *args, HOST, str(port), timeout=timeout)


def getscu(port: int, called: str, keys: Iterable[str], out_dir: str | os.PathLike[str],
           *args: str, model: str = "-P", calling: str = "GETSCU",
           timeout: float = 60.0) -> ToolResult:
    """``getscu -od out_dir``; check ``.ok`` (getscu exits 0 on failure)."""
    return run_tool("getscu", "-aet", calling, "-aec", called, model, *_keys(keys),
                    "-od", str(out_dir), *args, HOST, str(port), timeout=timeout)


# -- pynetdicom in a separate process ---------------------------------------------

Handler = Callable[..., Any]
#: A handler alone, or ``(handler, args)``: pynetdicom then calls ``handler(event, *args)``.
HandlerSpec = Handler | tuple[Handler, Sequence[Any]]
_scp_ids = itertools.count(1)
_EVENT_KINDS = ("echo", "store", "find", "get", "move", "user_id")


def _split_handler(spec: HandlerSpec) -> tuple[Handler, list[Any]]:
    if isinstance(spec, tuple):
        fn, args = spec
        return fn, list(args)
    return spec, []


def _serve_pynetdicom(
    port: int,
    aet: str,
    store_dir: str | None,
    handlers: dict[str, HandlerSpec],
    log_path: str,
    ready: Any,
) -> None:  # pragma: no cover - runs in the child process
    """Child-process body of :class:`PynetdicomSCP`."""
    import logging

    _die_with_parent()
    logging.basicConfig(filename=log_path, level=logging.INFO)
    try:
        from pynetdicom import (
            ALL_TRANSFER_SYNTAXES,
            AE,
            AllStoragePresentationContexts,
            QueryRetrievePresentationContexts,
            evt,
        )
        from pynetdicom.sop_class import Verification

        ae = AE(ae_title=aet)
        ae.maximum_associations = 16
        ae.add_supported_context(Verification)
        serve_get = "get" in handlers
        for cx in AllStoragePresentationContexts:
            # A C-GET SCP sends its C-STOREs back as SCU on the same association:
            # accept whatever SCP/SCU role the requestor proposes.
            ae.add_supported_context(
                cx.abstract_syntax,
                ALL_TRANSFER_SYNTAXES,
                scu_role=True if serve_get else None,
                scp_role=True if serve_get else None,
            )
        suffixes = tuple(k.title() for k in ("find", "get", "move") if k in handlers)
        for cx in QueryRetrievePresentationContexts:
            if suffixes and cx.abstract_syntax.keyword.endswith(suffixes):
                ae.add_supported_context(cx.abstract_syntax)

        def on_echo(event: Any) -> int:
            return 0x0000

        def on_store(event: Any) -> int:
            if store_dir is not None:
                sop = event.request.AffectedSOPInstanceUID
                Path(store_dir, f"{sop}.dcm").write_bytes(event.encoded_dataset())
            return 0x0000

        events = {"echo": evt.EVT_C_ECHO, "store": evt.EVT_C_STORE, "find": evt.EVT_C_FIND,
                  "get": evt.EVT_C_GET, "move": evt.EVT_C_MOVE, "user_id": evt.EVT_USER_ID}
        bound: dict[str, HandlerSpec] = {"echo": on_echo, "store": on_store, **handlers}
        evt_handlers: list[Any] = []
        for kind, spec in bound.items():
            fn, args = _split_handler(spec)
            evt_handlers.append((events[kind], fn, args) if args else (events[kind], fn))
        server = ae.start_server((HOST, port), block=False, evt_handlers=evt_handlers)
    except BaseException:
        ready.put(traceback.format_exc())
        raise
    ready.put("")
    # The server runs in its own thread (kept alive by the AE) until the
    # parent kills this process.
    del server
    while True:
        time.sleep(3600)


def _import_roots(functions: Iterable[Callable[..., Any]]) -> list[str]:
    """sys.path entries from which each function's module imports by name."""
    roots: list[str] = []
    for fn in functions:
        module = sys.modules.get(getattr(fn, "__module__", "") or "")
        path = getattr(module, "__file__", None)
        if module is None or path is None:
            continue
        depth = module.__name__.count(".") + 1  # a/b/pkg/mod.py -> a/b for pkg.mod
        if Path(path).name == "__init__.py":
            depth += 1
        root = str(Path(path).resolve().parents[depth - 1])
        if root not in roots:
            roots.append(root)
    return roots


class PynetdicomSCP(_Process):
    """A pynetdicom AE (C-ECHO + C-STORE, optional Q/R) in a separate process.

    ``handlers`` maps ``"echo"``/``"store"``/``"find"``/``"get"``/``"move"``/
    ``"user_id"`` to pynetdicom event handlers, or to ``(handler, args)``
    (called as ``handler(event, *args)``); they run in the child process, so
    they and their args must be picklable (module-level functions, in a test
    module or elsewhere). The default C-STORE handler writes each received
    dataset as ``<SOPInstanceUID>.dcm`` into ``self.store_dir``.
    """

    kind = "pynetdicom"
    name = "pynetdicom"

    def __init__(
        self,
        aet: str = "PYNETDICOM",
        handlers: Mapping[str, HandlerSpec] | None = None,
        timeout: float = START_TIMEOUT,
    ) -> None:
        unknown = set(handlers or {}) - set(_EVENT_KINDS)
        if unknown:
            raise ValueError(f"unknown handler kinds: {sorted(unknown)}")
        super().__init__()
        self.aet = aet
        self.handlers = dict(handlers or {})
        self.timeout = timeout
        self.port = 0
        self.store_dir = Path(os.devnull)
        self._proc: Any = None

    def start(self) -> None:
        require("pynetdicom")
        # spawn, not fork: the parent may run threads (asyncio, pytest plugins).
        ctx = multiprocessing.get_context("spawn")
        self.store_dir = self._mkdir() / "received"
        self.store_dir.mkdir()
        self.port = free_port()
        ready = ctx.Queue()
        self._proc = ctx.Process(
            target=_serve_pynetdicom,
            args=(self.port, self.aet, str(self.store_dir), self.handlers,
                  str(self.log_path), ready),
            name=f"pynetdicom-scp-{next(_scp_ids)}",
            daemon=True,
        )
        # The child unpickles the target and handlers by module name before any
        # of our code runs there; under pytest's importlib mode their modules
        # are not on sys.path, so lend the child the roots it needs.
        saved = list(sys.path)
        functions = [_split_handler(spec)[0] for spec in self.handlers.values()]
        sys.path[:0] = _import_roots([_serve_pynetdicom, *functions])
        try:
            self._proc.start()
        finally:
            sys.path[:] = saved
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                error = ready.get(timeout=0.05)
                break
            except queue.Empty:
                pass
            if not self._proc.is_alive():
                raise PeerError(
                    f"pynetdicom SCP exited with {self._proc.exitcode} (see stderr)"
                )
            if time.monotonic() > deadline:
                raise PeerError(
                    f"pynetdicom SCP not ready after {self.timeout} s; log:\n"
                    + self.log_tail()
                )
        if error:
            raise PeerError(f"pynetdicom SCP failed to start:\n{error}")

    def files(self) -> list[Path]:
        """Datasets received so far by the default C-STORE handler."""
        return sorted(self.store_dir.iterdir())

    def stop(self) -> None:
        """Kill the child and remove the dir; safe to call twice."""
        if self._proc is not None:
            # A graceful pynetdicom shutdown polls for ~0.5 s; the store dir is
            # thrown away anyway, so kill (tests wait for their results first).
            self._proc.kill()
            self._proc.join(timeout=5)
            self._proc = None
        super().stop()


@contextlib.contextmanager
def dicomnet_cli_server(args: Sequence[str], log: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``python -m dicomnet <args> --bind 127.0.0.1 --port 0 --json`` (a
    ``store-scp`` or ``sample-server``); yields (process, port) once its
    "listening" record is out. Its output goes to ``log`` (a pipe left unread
    could block it); SIGTERM at the end, SIGKILL if it does not exit."""
    argv = [sys.executable, "-m", "dicomnet", *args, "--bind", HOST, "--port", "0", "--json"]
    with open(log, "w") as sink:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONIOENCODING="utf-8"), preexec_fn=_die_with_parent)
    try:
        deadline = time.monotonic() + 30
        port = 0
        while not port:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise PeerError(f"dicomnet {args[0]} did not start:\n{log.read_text()}")
            for line in log.read_text().splitlines():
                if line.startswith("{") and json.loads(line).get("event") == "listening":
                    port = int(json.loads(line)["port"])
            time.sleep(0.02)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
