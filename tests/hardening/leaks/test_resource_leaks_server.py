"""Resource leaks, server side: associations an in-process
:class:`dicomnet.Server` serves, ended in every way, leave nothing behind.

Release after every service (C-ECHO, C-STORE into memory, streamed to a file
and through the compiled lane, C-FIND, C-GET, C-MOVE), thousands of messages
on one association, A-ABORT from the peer mid-data set, a TCP close or reset
at each point of the protocol, rejection, ARTIM, read, DIMSE and write
timeouts, handlers that raise, a malformed PDU, a data set over
max_dataset_bytes -- each run many times; once the associations are over,
the process holds what it held before. First, self-checks: each counter sees
its kind of leak.

What is counted and how: _resource_leaks.py. C-MOVE/C-GET failures, TLS,
the watchdog, shutdown, memory under faults and real peers:
test_resource_leaks_server_services.py; our Client:
test_resource_leaks_client.py.
"""
from __future__ import annotations

import gc
import socket
import struct
import threading
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from dicomnet.dimse.commands import c_find_rq, c_get_rq, c_store_rq, encode_command
from dicomnet.dicom.writer import encode_dataset
from dicomnet.errors import DicomNetError
from dicomnet.dimse.scu import query_dataset

from ._resource_leaks import (ABORT_PDU, CT_CONTEXTS, MALFORMED, MID_STORE, QR, QUERY, RELEASE_RQ, REPS, STUDY_FIND,
                              STUDY_GET, FileHandler, Handler, client, connect, drain, echo_promptly, first_byte,
                              pdata, raw_established, reset, rss, store_start, uid, until_abort)
from ..conftest import CT, EXPLICIT, VERIFICATION, associate_rq_bytes, wait_for
from ..test_limits import _recv_exact as recv_exact



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
