"""Resource leaks, client side: associations our in-process
:class:`dicomnet.Client` makes, ended in every way, leave nothing behind.

A peer (the scripted peer of _resource_leaks.py) that refuses, aborts,
closes, resets or says nothing in answer to the A-ASSOCIATE-RQ; that aborts,
resets or goes silent while we store (one by one or several at a time),
find, move or get; that does not answer the release properly; and our
leaving find/get/move/store_many loops early, exceptions in the ``with``
block, a missing file, a C-GET into a folder where no file can be made.

dicomnet fault these tests found, fixed: a C-GET streamed to ``store_to``
and cut short by the peer kept its temporary file and descriptor until the
garbage collector ran.

What is counted and how: _resource_leaks.py; the server side:
test_resource_leaks_server.py and test_resource_leaks_server_services.py.
"""
from __future__ import annotations

import pytest

from dicomnet.errors import DicomNetError

from ._resource_leaks import QR, QUERY, REPS, client, echo_promptly
from ..conftest import CT, EXPLICIT, VERIFICATION, free_port



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
