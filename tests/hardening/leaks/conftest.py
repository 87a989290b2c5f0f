"""Fixtures of the resource-leak soaks (the test_resource_leaks_*.py files
here): the leak counter, the quiet logger every Server and Client uses, the
instances sent, the servers a test makes, the watched storage servers, and
the scripted peer. Being in this folder's conftest, they do not meet the
fixtures of the same names (``instances``, ``servers``) that other hardening
modules define for themselves."""
from __future__ import annotations

import gc
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dicomnet.server import Server

from ..conftest import PACKAGE_ROOT
from ..test_faults import make_instance
from ._resource_leaks import SCRIPTED_PEER, FileHandler, Handler, LaneHandler, Leaks, _Drop, make_server, ping


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


@pytest.fixture(scope="module")
def instances(tmp_path_factory) -> dict[str, str]:
    """A small (8 KiB, read into memory when sent) and a big (2 MiB: sent
    from a memory map) CT instance."""
    base = tmp_path_factory.mktemp("leak-src")
    small, big = base / "small.dcm", base / "big.dcm"
    make_instance(small, 64, 64, seed=21)
    make_instance(big, 1024, 1024, seed=22)
    return {"small": str(small), "big": str(big)}


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

