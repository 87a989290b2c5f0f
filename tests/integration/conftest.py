"""Fixtures that start real DICOM peers; every test in this package is ``peers``.

Shared, session-scoped: ``orthanc`` (no modalities registered; register yours
with ``orthanc.add_modality`` and don't assume an empty store -- call
``orthanc.clear()`` if you need one). Per test: ``make_orthanc``,
``make_storescp``, ``make_dcmqrscp``, ``make_pynetdicom_scp`` factories taking
the constructor arguments of the classes in :mod:`.peers`, plus ``storescp``
and ``pynetdicom_scp`` with defaults, and ``our_server(ae, handler, **kw)``
for dicomnet servers; ``testdata(name)`` is the path of a file
from pydicom's wheel (offline). Everything started is stopped at the end.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from dicomnet import Server

from .peers import (  # noqa: F401  (the records are read by tests/conftest.py)
    PEERS_SKIPPED,
    PEERS_STARTED,
    Dcmqrscp,
    Orthanc,
    PynetdicomSCP,
    Storescp,
    require,
)


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.peers)


@pytest.fixture(scope="session")
def orthanc() -> Iterator[Orthanc]:
    """One Orthanc shared by the whole session."""
    with Orthanc() as peer:
        yield peer


def _factory(cls: type) -> Iterator[Callable[..., Any]]:
    with ExitStack() as stack:
        yield lambda *args, **kw: stack.enter_context(cls(*args, **kw))


@pytest.fixture
def make_orthanc() -> Iterator[Callable[..., Orthanc]]:
    """Start a dedicated Orthanc (e.g. with a modality table) for one test."""
    yield from _factory(Orthanc)


@pytest.fixture
def make_storescp() -> Iterator[Callable[..., Storescp]]:
    yield from _factory(Storescp)


@pytest.fixture
def make_dcmqrscp() -> Iterator[Callable[..., Dcmqrscp]]:
    yield from _factory(Dcmqrscp)


@pytest.fixture
def make_pynetdicom_scp() -> Iterator[Callable[..., PynetdicomSCP]]:
    yield from _factory(PynetdicomSCP)


@pytest.fixture
def our_server() -> Iterator[Callable[..., Server]]:
    """``our_server(ae, handler, **kw)``: a dicomnet :class:`Server` on
    127.0.0.1 (any free port; ``read_timeout`` 10 s unless given), shut down
    at the end of the test."""
    servers: list[Server] = []

    def start(ae: str, handler: Any, **kw: Any) -> Server:
        kw.setdefault("read_timeout", 10)
        srv = Server(ae, handler, **kw).start("127.0.0.1", 0)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.shutdown()


@pytest.fixture
def storescp(make_storescp: Callable[..., Storescp]) -> Storescp:
    """A fresh dcmtk storescp (AE ``STORESCP``) with an empty output dir."""
    return make_storescp()


@pytest.fixture
def pynetdicom_scp(make_pynetdicom_scp: Callable[..., PynetdicomSCP]) -> PynetdicomSCP:
    """A pynetdicom echo+storage SCP (AE ``PYNETDICOM``) in its own process."""
    return make_pynetdicom_scp()


@pytest.fixture(scope="session")
def testdata() -> Callable[[str], str]:
    """``testdata(name)`` -> path of a file shipped in pydicom's wheel (offline)."""
    require("pydicom")
    from pydicom.data import get_testdata_file

    def find(name: str) -> str:
        path = get_testdata_file(name, download=False)
        if path is None:
            pytest.skip(f"pydicom test file {name!r} is not available offline")
        return str(path)

    return find
