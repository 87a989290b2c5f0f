"""Faults: killed and stalled peers, slowloris, failing handlers, a proxy that
cuts, delays and fragments the byte stream."""
from __future__ import annotations

import hashlib
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from dicomnet.client import Client
from dicomnet.dicom.writer import write_file
from dicomnet.errors import DicomNetError, DimseStatusError, ReadTimeout
from dicomnet.samples.synthetic import generate
from dicomnet.server import Server

from .conftest import (
    CT,
    EXPLICIT,
    PACKAGE_ROOT,
    VERIFICATION,
    associate_rq_bytes,
    converse,
    echo_ok,
    fd_count,
    pdu,
    record,
    wait_for,
)
from .proxy import FaultProxy, Plan

MR = "1.2.840.10008.5.1.4.1.1.4"
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"


class StreamingStore:
    """store_destination into ``folder`` (named by the SOP Instance UID); echo
    raises for calling AE 'RAISE' and blocks until released for 'HANG'."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.release = threading.Event()
        self.stored: list[str] = []
        self._lock = threading.Lock()

    def on_echo(self, ctx):
        if ctx.calling_ae == "RAISE":
            raise RuntimeError("handler exploded")
        if ctx.calling_ae == "HANG":
            self.release.wait(30)
        return 0

    def store_destination(self, ctx, command):
        uid = str(command.get("AffectedSOPInstanceUID"))
        return os.path.join(self.folder, uid + ".dcm")

    def on_store(self, ctx, dataset):
        if ctx.calling_ae == "RAISE":
            raise ValueError("store handler exploded")
        with self._lock:
            self.stored.append(ctx.sop_instance_uid)
        return 0


@pytest.fixture
def store_server(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    handler = StreamingStore(str(folder))
    srv = Server("HARDEN", handler, artim_timeout=0.5, read_timeout=2.0, write_timeout=2.0, dimse_timeout=2.0)
    srv.start("127.0.0.1", 0)
    try:
        yield srv, handler, folder
    finally:
        handler.release.set()
        srv.shutdown(5.0)


def make_instance(path, rows: int, cols: int, seed: int = 0) -> str:
    ds = next(generate(patients=1, studies=1, series=1, instances=1, rows=rows, cols=cols, seed=seed))
    write_file(str(path), ds, EXPLICIT)
    return str(ds.SOPInstanceUID)


def dataset_part(path) -> bytes:
    """The data set bytes of a Part 10 file (after the File Meta group)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[128:132] == b"DICM"
    # (0002,0000) UL, explicit VR LE: tag 4 + VR 2 + length 2 + value 4.
    group_length = struct.unpack_from("<L", data, 140)[0]
    return data[144 + group_length:]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def open_fds() -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.append(f"{fd}->{os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            pass
    return out


def threads_named(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


# ------------------------------------------------------------ killed client
SLOW_SENDER = r"""
import sys, time
from dicomnet.client import Client
from dicomnet.dimse.commands import c_store_rq, encode_command
from dicomnet._codec.pdu import fragment
port = int(sys.argv[1])
a = Client("KILLME").associate("127.0.0.1", port, "HARDEN", contexts=[("%s", ("%s",))])
ctx = a.context_for("%s")
conn = a._driver.conn
conn.send_pdata(ctx.context_id, True, encode_command(c_store_rq(1, "%s", "1.2.826.0.1.3680043.9.7777.1")))
a._driver.flush()
sock = a._driver.sock
sock.setblocking(True)
blob = b"".join(bytes(b) for b in fragment(ctx.context_id, False, bytes(8 << 20), a.negotiated.peer_max_pdu))
print("STARTED", flush=True)
for i in range(0, len(blob), 16384):
    sock.sendall(blob[i:i + 16384])
    time.sleep(0.01)
print("FINISHED", flush=True)
""" % (CT, EXPLICIT, CT, CT)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
def test_client_killed_mid_store_releases_everything(store_server, how):
    srv, handler, folder = store_server
    assert echo_ok(srv.port)  # warm up: the first association's lazy imports are not a leak
    wait_for(lambda: srv.active_associations == 0)
    fds_before, threads_before = fd_count(), len(threading.enumerate())
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SENDER, str(srv.port)], stdout=subprocess.PIPE,
                            text=True, cwd=PACKAGE_ROOT)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "STARTED"
        # The store is streaming into a temporary file when the client dies.
        assert wait_for(lambda: any(n.endswith(".part") for n in os.listdir(folder)), 5.0)
        assert srv.active_associations == 1
        killed = time.monotonic()
        proc.send_signal(getattr(signal, how))
        # SIGKILL: the kernel closes the socket, noticed at once. SIGSTOP: the
        # peer just goes silent and the read timeout ends the association.
        assert wait_for(lambda: srv.active_associations == 0, srv.read_timeout + 2.0)
        noticed = time.monotonic() - killed
    finally:
        proc.kill()
        proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()
    assert noticed < (1.0 if how == "SIGKILL" else srv.read_timeout + 1.0), noticed
    assert wait_for(lambda: len(threading.enumerate()) <= threads_before, 3.0), threading.enumerate()
    assert wait_for(lambda: fd_count() <= fds_before, 3.0), (fd_count(), fds_before, open_fds(), os.listdir(folder))
    assert os.listdir(folder) == [], os.listdir(folder)  # no partial file, final or temporary
    assert echo_ok(srv.port)
    record("faults", injected=1, killed_clients=1, server_noticed_s=[round(noticed, 3)])


# --------------------------------------------------------------- slowloris
def _slowloris(port: int, before: bytes, seconds: float) -> tuple[bool, float]:
    """Send ``before`` at once, then one byte a second of a P-DATA PDU; (closed by the server, after s)."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
        if before:
            sock.sendall(before)
            sock.settimeout(3.0)
            header = sock.recv(6)
            sock.recv(struct.unpack(">L", header[2:])[0], socket.MSG_WAITALL)
        trickle = struct.pack(">BBL", 4, 0, 1000) + bytes(994)
        sock.settimeout(1.0)
        for byte in trickle:
            try:
                sock.send(bytes([byte]))
                got = sock.recv(4096)   # waits up to a second: one byte a second
            except socket.timeout:
                continue
            except OSError:
                return True, time.monotonic() - start
            if got == b"":
                return True, time.monotonic() - start
            if got[:1] != b"\x07":     # anything but an A-ABORT is wrong here
                return False, time.monotonic() - start
            if time.monotonic() - start > seconds:
                return False, time.monotonic() - start
    return False, time.monotonic() - start  # pragma: no cover


def test_slowloris_is_dropped_and_blocks_nobody(store_server):
    srv = store_server[0]
    rq = associate_rq_bytes(contexts=[(VERIFICATION, (EXPLICIT,))])
    with ThreadPoolExecutor(8) as pool:
        # Before the RQ (ARTIM) and on an established association (read timeout).
        lorises = [pool.submit(_slowloris, srv.port, b"", 10.0) for _ in range(2)]
        lorises += [pool.submit(_slowloris, srv.port, rq, 10.0) for _ in range(2)]
        time.sleep(0.2)
        latencies = []
        for _ in range(5):
            t0 = time.monotonic()
            assert echo_ok(srv.port)
            latencies.append(time.monotonic() - t0)
        results = [f.result() for f in lorises]
    assert max(latencies) < 1.5, latencies  # never waits for a loris (ARTIM 0.5 s, read 2 s)
    for (closed, after), limit in zip(results, [srv.artim_timeout] * 2 + [srv.read_timeout] * 2):
        assert closed and after < limit + 1.5, (results, limit)
    record("faults", injected=len(results), slowloris_dropped=len(results),
           echo_latency_during_slowloris_max_s=round(max(latencies), 3))


# ------------------------------------------------------------ slow reader
def test_peer_that_stops_reading_is_dropped_by_the_write_timeout(caplog):
    """A C-FIND requestor that never reads its responses: the server's writes
    stall, write_timeout ends the association, everybody else is served."""
    from dicomnet.dicom.dataset import Dataset
    from dicomnet.dicom.writer import encode_dataset
    from dicomnet.dimse.commands import c_find_rq

    stop = threading.Event()
    sent = [0]

    class Endless:
        def on_find(self, ctx, query):
            while not stop.is_set():
                ds = Dataset()
                ds.QueryRetrieveLevel = "STUDY"
                ds.PatientComments = "x" * 10000
                ds.StudyInstanceUID = f"1.2.826.0.1.3680043.9.7777.4.{sent[0]}"
                sent[0] += 1
                yield ds

    srv = Server("HARDEN", Endless(), artim_timeout=0.5, read_timeout=5.0, write_timeout=1.0, dimse_timeout=5.0)
    srv.start("127.0.0.1", 0)
    try:
        assoc = Client("STALLER").associate("127.0.0.1", srv.port, "HARDEN", contexts=[STUDY_FIND])
        assoc._driver.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        ctx = assoc.context_for(STUDY_FIND)
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = ""
        assoc._send_message(ctx.context_id, c_find_rq(1, STUDY_FIND),
                            bytes(encode_dataset(query, ctx.transfer_syntax)))
        t0 = time.monotonic()
        assert wait_for(lambda: srv.active_associations == 1 and sent[0] > 10, 3.0)
        assert echo_ok(srv.port)             # served while the staller's writes are stuck
        assert wait_for(lambda: srv.active_associations == 0, srv.write_timeout + 3.0), sent[0]
        dropped_after = time.monotonic() - t0
        assoc.abort()
        assert echo_ok(srv.port)
    finally:
        stop.set()
        srv.shutdown(5.0)
    assert dropped_after < srv.write_timeout + 3.0
    assert any("took no data" in r.getMessage() for r in caplog.records)  # the write timeout did it
    record("faults", injected=1, stalled_readers_dropped=1)


# ----------------------------------------------------------------- handlers
def test_raising_handler_gives_failure_status_and_the_association_goes_on(store_server, tmp_path):
    srv = store_server[0]
    path = tmp_path / "one.dcm"
    make_instance(path, 16, 16)
    client = Client("RAISE", dimse_timeout=5.0)
    with client.associate("127.0.0.1", srv.port, "HARDEN", contexts=[VERIFICATION, (CT, EXPLICIT)]) as assoc:
        with pytest.raises(DimseStatusError) as info:
            assoc.echo()
        assert info.value.status == 0x0110
        with pytest.raises(DimseStatusError) as info:
            assoc.store(str(path))
        assert (info.value.status & 0xF000) in (0xA000, 0xC000) or info.value.status == 0x0110
        with pytest.raises(DimseStatusError):
            assoc.echo()  # still answering on the same association
    assert echo_ok(srv.port)
    record("faults", injected=2, handler_failures_answered=2)


def test_hanging_handler_times_out_at_the_client_and_blocks_nobody(store_server):
    srv, handler = store_server[:2]
    client = Client("HANG", dimse_timeout=1.0)
    assoc = client.associate("127.0.0.1", srv.port, "HARDEN", contexts=[VERIFICATION])
    t0 = time.monotonic()
    with pytest.raises(ReadTimeout):
        assoc.echo()
    assert 0.9 < time.monotonic() - t0 < 2.5
    assert assoc.is_closed  # the requestor aborted after its DIMSE timeout
    # Meanwhile the server answers everybody else.
    assert all(echo_ok(srv.port) for _ in range(3))
    handler.release.set()
    assert wait_for(lambda: srv.active_associations == 0, 3.0)
    record("faults", injected=1, hung_handlers=1)


class Hanging:
    """on_store / on_find that hang (until released) for calling AE 'HANG'."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.returned: list[str] = []

    def on_store(self, ctx, dataset):
        if ctx.calling_ae == "HANG":
            self.release.wait(30)
        self.returned.append(ctx.calling_ae)
        return 0

    def on_find(self, ctx, query):
        yield {"PatientID": "FIRST"}
        if ctx.calling_ae == "HANG":
            self.release.wait(30)      # a lazy match that never comes
        self.returned.append(ctx.calling_ae)
        yield {"PatientID": "SECOND"}

    def on_move(self, ctx, query, destination_ae):
        if ctx.calling_ae == "HANG":
            self.release.wait(30)
        self.returned.append(ctx.calling_ae)
        return None, []                    # an unknown destination: 0xA801


@pytest.mark.parametrize("service", ["store", "find", "move"])
def test_hung_handler_is_abandoned_and_its_slot_released(tmp_path, caplog, service):
    """max_associations=1 and a handler that hangs: after handler_timeout the
    watchdog aborts that association and frees the slot; a new association is
    accepted and served; the late result is dropped."""
    handler = Hanging()
    srv = Server("HARDEN", handler, max_associations=1, handler_timeout=1.0, dimse_timeout=5.0,
                 artim_timeout=1.0, read_timeout=5.0, write_timeout=5.0)
    srv.start("127.0.0.1", 0)
    path = tmp_path / "one.dcm"
    make_instance(path, 16, 16)
    contexts = [VERIFICATION, (CT, EXPLICIT), (STUDY_FIND, EXPLICIT), (STUDY_MOVE, EXPLICIT)]
    query = {"QueryRetrieveLevel": "STUDY", "PatientID": None}
    try:
        client = Client("HANG", dimse_timeout=20.0)   # far longer: the server must act, not the client
        assoc = client.associate("127.0.0.1", srv.port, "HARDEN", contexts=contexts)
        # The slot is taken: a second association is refused (transient, local limit exceeded).
        with pytest.raises(DicomNetError):
            Client("OTHER", artim_timeout=3.0).associate("127.0.0.1", srv.port, "HARDEN", contexts=contexts)
        t0 = time.monotonic()
        got = []
        with caplog.at_level("WARNING", logger="dicomnet"), pytest.raises(DicomNetError) as info:
            if service == "store":
                assoc.store(str(path))
            elif service == "find":
                for ds in assoc.find(query):
                    got.append(ds.PatientID)
            else:
                list(assoc.move({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "1.2.3"}, "NOWHERE"))
        aborted_after = time.monotonic() - t0
        assert 0.9 < aborted_after < 4.0, aborted_after
        assert "abort" in type(info.value).__name__.lower() or "abort" in str(info.value).lower()
        assert got == (["FIRST"] if service == "find" else [])
        assert assoc.is_closed
        assert wait_for(lambda: srv.active_associations == 0, 3.0)
        assert srv.abandoned_threads == 1 and srv.handler_timeouts == 1
        assert any("handler_timeout" in r.getMessage() and "abandoned" in r.getMessage() for r in caplog.records)
        # The slot is free again: a new association is accepted and served in full.
        with Client("NEXT", dimse_timeout=5.0).associate("127.0.0.1", srv.port, "HARDEN",
                                                         contexts=contexts) as other:
            assert other.echo() == 0
            if service == "store":
                assert other.store(str(path)) == 0
            elif service == "find":
                assert [ds.PatientID for ds in other.find(query)] == ["FIRST", "SECOND"]
            else:
                with pytest.raises(DimseStatusError) as unknown:
                    list(other.move({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "1.2.3"}, "NOWHERE"))
                assert unknown.value.status == 0xA801
        # The stuck handler returns at last: its result goes nowhere, its thread ends.
        with caplog.at_level("WARNING", logger="dicomnet"):
            handler.release.set()
            assert wait_for(lambda: srv.abandoned_threads == 0, 5.0)
        assert "HANG" in handler.returned
        assert wait_for(lambda: any("result is dropped" in r.getMessage() for r in caplog.records), 3.0)
        assert echo_ok(srv.port)
        assert not [t for t in threading.enumerate() if t.name.startswith("dicomnet-abort-")]
    finally:
        handler.release.set()
        srv.shutdown(5.0)
    record("faults", injected=1, hung_handlers_abandoned=1, max_abandon_s=round(aborted_after, 2))


# -------------------------------------------------------------------- proxy
def _store_through(port: int, path: str, *, timeout: float = 5.0) -> int:
    client = Client("PROXIED", connect_timeout=3.0, read_timeout=timeout, write_timeout=timeout,
                    artim_timeout=timeout, dimse_timeout=timeout)
    with client.associate("127.0.0.1", port, "HARDEN", contexts=[(CT, EXPLICIT)]) as assoc:
        return assoc.store(path)


@pytest.fixture(scope="module")
def instances(tmp_path_factory):
    base = tmp_path_factory.mktemp("src")
    small, big = base / "small.dcm", base / "big.dcm"
    uid_small = make_instance(small, 64, 64, seed=1)        # ~8 KiB of pixels
    uid_big = make_instance(big, 512, 768, seed=2)          # ~768 KiB of pixels
    return {"small": (str(small), uid_small), "big": (str(big), uid_big)}


PATTERNS = {
    "bytewise-small": ("small", Plan(chunk=(1, 7), seed=1), Plan(chunk=(1, 3), seed=2)),
    "random-chunks-big": ("big", Plan(chunk=(1, 4096), seed=3), Plan(chunk=(1, 5), seed=4)),
    "delays-at-offsets": ("big", Plan(delays={3: 0.3, 250: 0.2, 100_000: 0.3}), Plan(delays={7: 0.2})),
    "split-every-header": ("small", Plan(chunk=6, gap=0.0), Plan(chunk=1)),
}


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_delay_and_fragmentation_deliver_identical_bytes(store_server, instances, name):
    srv, handler, folder = store_server
    which, up, down = PATTERNS[name]
    path, uid = instances[which]
    with FaultProxy(("127.0.0.1", srv.port), up=up, down=down) as proxy:
        assert _store_through(proxy.port, path) == 0
    received = folder / f"{uid}.dcm"
    assert sha(dataset_part(received)) == sha(dataset_part(path))
    record("proxy", patterns=1, bytes_delivered=os.path.getsize(path))


class InMemoryStore:
    """on_store only: every data set is received into memory (big PDVs
    straight into the data set's buffer); the pixel bytes are hashed."""

    def __init__(self) -> None:
        self.got: dict[str, str] = {}

    def on_store(self, ctx, dataset):
        self.got[str(dataset.SOPInstanceUID)] = sha(bytes(dataset.PixelData))
        return 0


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_data_sets_received_in_memory_survive_fragmentation_and_delays(instances, name):
    from dicomnet.dicom.reader import read_file

    handler = InMemoryStore()
    which, up, down = PATTERNS[name]
    path, uid = instances[which]
    with Server("HARDEN", handler, artim_timeout=0.5, read_timeout=2.0, dimse_timeout=2.0).start(
            "127.0.0.1", 0) as srv:
        with FaultProxy(("127.0.0.1", srv.port), up=up, down=down) as proxy:
            assert _store_through(proxy.port, path) == 0
    assert handler.got == {uid: sha(bytes(read_file(path).PixelData))}
    record("proxy", patterns=1, bytes_delivered=os.path.getsize(path))


def _cut_offsets(path: str) -> list[tuple[str, int]]:
    rq = len(associate_rq_bytes(calling="PROXIED", contexts=[(CT, (EXPLICIT,))]))
    size = os.path.getsize(path)
    return [("up", 3), ("up", 10), ("up", rq - 1), ("up", rq + 8), ("up", rq + 100),
            ("up", rq + size // 2), ("up", rq + size - 200),
            ("down", 3), ("down", 50), ("down", 200), ("down", 260)]


def test_every_cut_ends_cleanly_on_both_sides(store_server, instances):
    srv, handler, folder = store_server
    path, uid = instances["big"]
    outcomes: dict[str, int] = {}
    for direction, offset in _cut_offsets(path):
        plan = Plan(cut_at=offset)
        proxy = FaultProxy(("127.0.0.1", srv.port), **{direction: plan})
        t0 = time.monotonic()
        try:
            with pytest.raises((DicomNetError, OSError)) as info:
                _store_through(proxy.port, path, timeout=3.0)
        finally:
            proxy.close()
        elapsed = time.monotonic() - t0
        # A cut is a TCP reset: both sides notice at once, not after a timeout.
        assert elapsed < 2.0, (direction, offset, elapsed)  # the timeouts are 3 s
        assert proxy.cuts == 1, (direction, offset)
        assert wait_for(lambda: srv.active_associations == 0, 1.0), (direction, offset)
        leftovers = os.listdir(folder)
        assert not [n for n in leftovers if n.endswith(".part")], leftovers
        for n in leftovers:  # a cut after the data set arrived may leave a whole file, never a partial
            assert sha(dataset_part(folder / n)) == sha(dataset_part(path)), (direction, offset)
            os.unlink(folder / n)
        kind = type(info.value).__name__
        outcomes[kind] = outcomes.get(kind, 0) + 1
    assert echo_ok(srv.port)
    record("proxy", cuts=len(_cut_offsets(path)), cut_outcomes=outcomes)


def test_hung_authenticate_callback_is_abandoned_too(caplog):
    """authenticate() (the application's code, run before the association is
    established) that hangs: after handler_timeout the requestor gets an
    A-ABORT, the slot (max_associations=1) is freed, others are served."""
    from dicomnet.errors import AssociationAborted
    from dicomnet.pdu.items import UserIdentityRQ

    release = threading.Event()

    def authenticate(identity):
        if identity.primary_field == b"HANG":
            release.wait(30)
        return True

    srv = Server("HARDEN", authenticate=authenticate, max_associations=1, handler_timeout=0.5,
                 artim_timeout=5.0).start("127.0.0.1", 0)
    try:
        client = Client("HANG", artim_timeout=10.0)
        t0 = time.monotonic()
        with caplog.at_level("WARNING", logger="dicomnet"), pytest.raises(AssociationAborted):
            client.associate("127.0.0.1", srv.port, "HARDEN", contexts=[VERIFICATION],
                             user_identity=UserIdentityRQ(1, False, b"HANG", b""))
        assert 0.4 < time.monotonic() - t0 < 3.0
        assert srv.abandoned_threads == 1
        assert any("authenticate" in r.getMessage() and "abandoned" in r.getMessage() for r in caplog.records)
        ok = Client("OK").associate("127.0.0.1", srv.port, "HARDEN", contexts=[VERIFICATION],
                                    user_identity=UserIdentityRQ(1, False, b"alice", b""))
        with ok:
            assert ok.echo() == 0
        release.set()
        assert wait_for(lambda: srv.abandoned_threads == 0, 5.0)
    finally:
        release.set()
        srv.shutdown(5.0)
    record("faults", injected=1, hung_handlers_abandoned=1)


def test_watchdog_times_each_call_not_the_whole_operation(tmp_path):
    """handler_timeout=0.5: a C-FIND whose matches come 0.2 s apart (1 s in all)
    and a C-MOVE into a destination that takes 0.2 s per C-STORE (sub-operations
    are not handler calls) both complete; nothing is abandoned."""
    class Slow:
        def __init__(self, paths):
            self.paths = paths

        def on_find(self, ctx, query):
            for i in range(5):
                time.sleep(0.2)
                yield {"PatientID": f"P{i}"}

        def on_move(self, ctx, query, destination_ae):
            return list(self.paths)

    class SlowStore:
        def on_store(self, ctx, dataset):
            time.sleep(0.2)
            return 0

    paths = []
    for i in range(4):
        path = tmp_path / f"m{i}.dcm"
        make_instance(path, 16, 16, seed=40 + i)
        paths.append(str(path))
    dest = Server("DEST", SlowStore(), handler_timeout=0.5).start("127.0.0.1", 0)
    srv = Server("HARDEN", Slow(paths), handler_timeout=0.5, destinations={"DEST": ("127.0.0.1", dest.port)})
    srv.start("127.0.0.1", 0)
    try:
        client = Client("PATIENT", dimse_timeout=5.0)
        with client.associate("127.0.0.1", srv.port, "HARDEN",
                              contexts=[(STUDY_FIND, EXPLICIT), (STUDY_MOVE, EXPLICIT)]) as assoc:
            t0 = time.monotonic()
            found = [ds.PatientID for ds in assoc.find({"QueryRetrieveLevel": "STUDY", "PatientID": None})]
            assert found == [f"P{i}" for i in range(5)] and time.monotonic() - t0 > 0.9
            result = assoc.move({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "1.2.3"}, "DEST")
            list(result)
            assert result.status == 0 and result.completed == 4
        assert srv.handler_timeouts == 0 and dest.handler_timeouts == 0
    finally:
        srv.shutdown(5.0)
        dest.shutdown(5.0)


def test_shutdown_does_not_wait_for_abandoned_threads(caplog):
    release = threading.Event()

    class Stuck:
        def on_echo(self, ctx):
            release.wait(30)
            return 0

    srv = Server("HARDEN", Stuck(), handler_timeout=0.3).start("127.0.0.1", 0)
    try:
        assoc = Client("HANG", dimse_timeout=10.0).associate("127.0.0.1", srv.port, "HARDEN",
                                                              contexts=[VERIFICATION])
        with pytest.raises(DicomNetError):
            assoc.echo()
        assert srv.abandoned_threads == 1
        t0 = time.monotonic()
        with caplog.at_level("WARNING", logger="dicomnet"):
            srv.shutdown(5.0)
        assert time.monotonic() - t0 < 2.0          # not the 5 s join of a thread that cannot stop
        assert any("still running at shutdown" in r.getMessage() for r in caplog.records)
    finally:
        release.set()
        srv.shutdown(5.0)
    assert wait_for(lambda: not threads_named("dicomnet-assoc-"), 5.0)


def test_requests_read_with_the_release_request_are_answered_first(server):
    """A peer that sends C-ECHOs and its A-RELEASE-RQ in one write gets every
    answer, then the A-RELEASE-RP (PS3.8 Table 9-10: P-DATA in Sta8 is AR-7);
    the answers used to be dropped with the association."""
    from dicomnet.dimse.commands import c_echo_rq, decode_command, encode_command

    def echo_pdu(message_id: int) -> bytes:
        command = encode_command(c_echo_rq(message_id))
        return pdu(4, struct.pack(">LBB", len(command) + 2, 1, 3) + command)

    rq = associate_rq_bytes(contexts=[(VERIFICATION, (EXPLICIT,))])
    answer = converse(server.port, [rq, echo_pdu(1) + echo_pdu(2) + echo_pdu(3) + pdu(5, b"\x00" * 4)],
                      wait=3.0, pause=0.15)
    assert answer.types == [2, 4, 4, 4, 6], answer
    answered = [decode_command(body[6:]) for t, body in answer.pdus if t == 4]
    assert [c.get("MessageIDBeingRespondedTo") for c in answered] == [1, 2, 3]
    assert all(c.get("Status") == 0 for c in answered)
