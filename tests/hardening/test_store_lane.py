"""The compiled C-STORE lane (dicomnet._codec.lane) against the general path.

Two servers with the same handler, one with the lane and one without it, get
the same byte streams -- well-formed ones in every shape a peer may cut a
C-STORE into, then the same streams damaged at random -- and must answer
byte for byte the same, leave the same files (and no temporary ones) and
hand ``on_store`` the same data sets: streamed to files (``Streamer``), or
held in memory (``Keeper``, which has no ``store_destination``).
"""
from __future__ import annotations

import os
import random
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dicomnet.dimse import scp as _scp
from dicomnet.dimse.commands import c_echo_rq, c_store_rq, decode_command, encode_command
from dicomnet.server import Server

from .conftest import CT, EXPLICIT, VERIFICATION, associate_rq_bytes, converse, pdu

LANE_CONTEXTS = [(CT, (EXPLICIT,)), (VERIFICATION, (EXPLICIT,))]
CT_CONTEXT, ECHO_CONTEXT = 1, 3          # the ids build_associate_rq gives them
RELEASE_RQ = pdu(5, b"\x00" * 4)


class Streamer:
    """Stream every instance to ``folder``; an Affected SOP Instance UID
    ending in '.9' is kept in memory instead (store_destination says None),
    one ending in '.7' is aimed at a folder (the rename into place fails)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.stored: list[str] = []

    def store_destination(self, ctx, command):
        uid = str(command.get("AffectedSOPInstanceUID"))
        if uid.endswith(".9"):
            return None
        if uid.endswith(".7"):
            return str(self.folder)
        return os.path.join(self.folder, uid + ".dcm")


class NotifiedStreamer(Streamer):
    """The same, and told of every instance stored (so handle_store answers)."""

    def on_store(self, ctx, dataset):
        self.stored.append(str(dataset.SOPInstanceUID) if "SOPInstanceUID" in dataset else "?")
        return 0


class Keeper:
    """No ``store_destination``: every data set is held in memory, and
    ``on_store`` keeps its UID and its bytes (the folder stays empty)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.stored: list[str] = []
        self.kept: list[bytes] = []

    def on_store(self, ctx, dataset):
        self.stored.append(str(dataset.SOPInstanceUID) if "SOPInstanceUID" in dataset else "?")
        self.kept.append(bytes(dataset.encode()))
        return 0


@contextmanager
def _pair(monkeypatch, tmp_path, handler_type, max_pdu: int) -> Iterator[list[Server]]:
    """(with lane, without lane): the same handler class, each its own folder."""
    made = []
    attach = _scp.attach
    without: set[int] = set()

    def attach_maybe(server, assoc, info):
        lane = attach(server, assoc, info)
        if id(server) in without:
            return None
        if lane is not None:
            server.lanes.append(lane)
        return lane

    monkeypatch.setattr(_scp, "attach", attach_maybe)
    for name in ("lane", "general"):
        folder = tmp_path / name
        folder.mkdir()
        srv = Server("HARDEN", handler_type(folder), artim_timeout=0.5, read_timeout=0.6, write_timeout=2.0,
                     dimse_timeout=2.0, max_pdu=max_pdu)
        srv.lanes = []
        srv.folder = folder
        if name == "general":
            without.add(id(srv))
        srv.start("127.0.0.1", 0)
        made.append(srv)
    try:
        yield made
    finally:
        for srv in made:
            srv.shutdown(5.0)


@pytest.fixture(params=[Streamer, NotifiedStreamer, Keeper])
def servers(request, tmp_path, monkeypatch):
    """(with lane, without lane), PDUs of at most 4 KiB: nothing is placed directly."""
    with _pair(monkeypatch, tmp_path, request.param, 4096) as made:
        yield made


def handler_type(srv: Server) -> type:
    return type(srv.handler.__wrapped__)


@pytest.fixture
def lanes(monkeypatch):
    """Every association's lane (or None) as servers make them, in order."""
    made: list[object] = []
    attach = _scp.attach

    def keep(server, assoc, info):
        lane = attach(server, assoc, info)
        made.append(lane)
        return lane

    monkeypatch.setattr(_scp, "attach", keep)
    return made


def pdv(context_id: int, control: int, data: bytes) -> bytes:
    return struct.pack(">LBB", len(data) + 2, context_id, control) + data


def store_command(message_id: int, uid: str) -> bytes:
    return encode_command(c_store_rq(message_id, CT, uid))


def dataset_bytes(uid: str, size: int) -> bytes:
    """Explicit VR LE: SOP Class, SOP Instance, then OB padding to ``size`` bytes."""
    def element(group, elem, vr, value):
        if len(value) & 1:
            value += b"\0"
        return struct.pack("<HH2sH", group, elem, vr, len(value)) + value
    head = element(0x0008, 0x0016, b"UI", CT.encode()) + element(0x0008, 0x0018, b"UI", uid.encode())
    pad = max(size - len(head) - 12, 0)
    return head + struct.pack("<HH2sHL", 0x0009, 0x0010, b"OB", 0, pad) + bytes(range(256)) * (pad // 256) + \
        bytes(pad % 256)


def stream() -> list[bytes]:
    """PDUs of C-STOREs cut every way a peer may cut them, plus a C-ECHO and an
    in-memory instance between them, then an A-RELEASE-RQ."""
    out = []
    mid = 0

    def command(uid):
        nonlocal mid
        mid += 1
        return pdv(CT_CONTEXT, 3, store_command(mid, uid))

    # 1. command PDU, one data PDU
    uid = "1.2.3.1"
    out += [pdu(4, command(uid)), pdu(4, pdv(CT_CONTEXT, 2, dataset_bytes(uid, 2000)))]
    # 2. data in three PDUs
    uid = "1.2.3.2"
    data = dataset_bytes(uid, 9000)
    out += [pdu(4, command(uid)), pdu(4, pdv(CT_CONTEXT, 0, data[:4000])),
            pdu(4, pdv(CT_CONTEXT, 0, data[4000:8000])), pdu(4, pdv(CT_CONTEXT, 2, data[8000:]))]
    # 3. two data PDVs in one PDU, the last in the next
    uid = "1.2.3.3"
    data = dataset_bytes(uid, 3001)
    out += [pdu(4, command(uid)), pdu(4, pdv(CT_CONTEXT, 0, data[:1000]) + pdv(CT_CONTEXT, 0, data[1000:2000])),
            pdu(4, pdv(CT_CONTEXT, 2, data[2000:]))]
    # 4. an empty data set
    uid = "1.2.3.4"
    out += [pdu(4, command(uid)), pdu(4, pdv(CT_CONTEXT, 2, b""))]
    # 5. the last data PDV and the next command set in one PDU, then its data
    uid, nxt = "1.2.3.5", "1.2.3.6"
    out += [pdu(4, command(uid)), pdu(4, pdv(CT_CONTEXT, 2, dataset_bytes(uid, 500)) + command(nxt)),
            pdu(4, pdv(CT_CONTEXT, 2, dataset_bytes(nxt, 700)))]
    # 6. a C-ECHO between stores
    mid += 1
    out += [pdu(4, pdv(ECHO_CONTEXT, 3, encode_command(c_echo_rq(mid))))]
    # 7. an instance the handler keeps in memory (store_destination -> None)
    uid = "1.2.3.9"
    out += [pdu(4, command(uid)), pdu(4, pdv(CT_CONTEXT, 0, dataset_bytes(uid, 3000)[:1500])),
            pdu(4, pdv(CT_CONTEXT, 2, dataset_bytes(uid, 3000)[1500:]))]
    # 9. a destination the file cannot be renamed to (a folder)
    uid = "1.2.3.7"
    out += [pdu(4, command(uid)), pdu(4, pdv(CT_CONTEXT, 2, dataset_bytes(uid, 300)))]
    # 8. a command set in two fragments
    uid = "1.2.3.8"
    cmd = store_command(mid + 1, uid)
    mid += 1
    out += [pdu(4, pdv(CT_CONTEXT, 1, cmd[:20])), pdu(4, pdv(CT_CONTEXT, 3, cmd[20:])),
            pdu(4, pdv(CT_CONTEXT, 2, dataset_bytes(uid, 100)))]
    return out


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def both(servers, chunks: list[bytes], wait: float = 3.0, pause: float = 0.0):
    """The A-ASSOCIATE-RQ, then (once it is answered) ``chunks``, then (once
    they are answered) an A-RELEASE-RQ, to both servers."""
    rq = associate_rq_bytes(contexts=LANE_CONTEXTS, max_pdu=4096)
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda srv: converse(srv.port, [rq, *chunks, RELEASE_RQ], wait=wait,
                                                     pause=pause or 0.15), servers))
    for srv in servers:                 # the association's thread finishes after the close
        deadline = time.monotonic() + 3.0
        while srv.active_associations and time.monotonic() < deadline:
            time.sleep(0.01)
    return answers


def test_well_formed_stores_answer_and_write_the_same(servers):
    lane, general = servers
    chunks = stream()
    a, b = both(servers, [b"".join(chunks)])
    assert a.pdus == b.pdus
    assert a.types == [2] + [4] * 10 + [6], a.types    # AC, 9 C-STORE-RSP + 1 C-ECHO-RSP, RP
    statuses = [decode_command(body[6:]).get("Status") for t, body in a.pdus if t == 4]
    assert files(lane.folder) == files(general.folder)
    if handler_type(lane) is Keeper:
        assert statuses == [0] * 10
        # (1.2.3.4 is the empty data set: no SOP Instance UID in it)
        assert lane.handler.stored == [f"1.2.3.{i}" if i != 4 else "?" for i in (1, 2, 3, 4, 5, 6, 9, 7, 8)]
        assert lane.handler.kept == general.handler.kept
    else:
        assert statuses.count(0xA700) == 1              # the rename onto a folder
        assert sorted(files(lane.folder)) == [f"1.2.3.{i}.dcm" for i in (1, 2, 3, 4, 5, 6, 8)]
    assert lane.handler.stored == general.handler.stored
    assert lane.lanes and lane.lanes[0].pdus >= 10      # the lane took most of them
    # Without on_store the lane answers the plain ones itself: not the empty
    # data set, the in-memory one, the failed rename, nor what the general
    # path took after the PDU that ends one message and starts the next.
    if handler_type(lane) is Streamer:
        assert lane.lanes[0].answered >= 4
    else:
        assert lane.lanes[0].answered == 0
    # Each PDU sent on its own (the peer waits for nothing): the same again.
    a, b = both(servers, chunks, pause=0.01)
    assert a.pdus == b.pdus and a.types[-1] == 6
    # The A-RELEASE-RQ read with the requests: every answer still goes out
    # first (Sta8 allows it), then the A-RELEASE-RP.
    rq = associate_rq_bytes(contexts=LANE_CONTEXTS, max_pdu=4096)
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda srv: converse(srv.port, [rq, b"".join(chunks) + RELEASE_RQ], wait=3.0, pause=0.15),
                        servers)
    assert a.pdus == b.pdus
    assert a.types == [2] + [4] * 10 + [6], a.types


@pytest.mark.parametrize("seed", [*range(24), 110])     # 110: see the next test
def test_damaged_streams_get_the_same_answer_from_both_paths(servers, seed):
    """One PDU damaged (bits flipped, bytes cut or inserted). The PDUs go out
    one at a time, so each is read on its own by either server: both then act
    on them in the same order (a Connection acts on every PDU of a read at
    once, so a bad PDU read together with good ones aborts before their
    answers -- which the lane, reading PDUs in order, would still give)."""
    rng = random.Random(seed)
    chunks = stream()
    k = rng.randrange(len(chunks))
    body = bytearray(chunks[k])
    for _ in range(rng.randint(1, 3)):
        pos = rng.randrange(len(body))
        kind = rng.random()
        if kind < 0.6:
            body[pos] ^= 1 << rng.randrange(8)
        elif kind < 0.8:
            del body[pos:pos + rng.randint(1, 40)]
        else:
            body[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 12)))
    chunks[k] = bytes(body)
    a, b = both(servers, chunks, wait=2.0, pause=0.02)
    assert a.pdus == b.pdus, (seed, k, a, b)
    assert a.closed == b.closed
    lane, general = servers
    assert files(lane.folder) == files(general.folder), seed
    assert not [p for p in lane.folder.iterdir() if p.name.endswith(".part")]
    assert lane.handler.stored == general.handler.stored, seed
    if handler_type(lane) is Keeper:
        assert lane.handler.kept == general.handler.kept, seed


def big_stream(rng: random.Random) -> list[bytes]:
    """PDUs of C-STOREs of 100-300 KB data sets in fragments of 1 B to 96 KB
    (most big enough to be received straight into the data set's memory,
    some not), two fragments in one PDU now and then, and a C-ECHO."""
    out = []
    for mid in range(1, 6):
        uid = f"1.2.3.50.{mid}"
        data = dataset_bytes(uid, rng.randrange(100_000, 300_000))
        out.append(pdu(4, pdv(CT_CONTEXT, 3, store_command(mid, uid))))
        pos = 0
        while pos < len(data):
            end = min(len(data), pos + rng.choice([1, 700, 15_000, 40_000, 65_536, 98_000]))
            control = 2 if end == len(data) else 0
            if control == 0 and rng.random() < 0.2:       # two PDVs in one PDU
                nxt = min(len(data), end + rng.randrange(1, 5000))
                out.append(pdu(4, pdv(CT_CONTEXT, 0, data[pos:end])
                               + pdv(CT_CONTEXT, 2 if nxt == len(data) else 0, data[end:nxt])))
                pos = nxt
                continue
            out.append(pdu(4, pdv(CT_CONTEXT, control, data[pos:end])))
            pos = end
    out.append(pdu(4, pdv(ECHO_CONTEXT, 3, encode_command(c_echo_rq(9)))))
    return out


@pytest.mark.parametrize("seed", range(8))
def test_big_pdus_held_in_memory_give_on_store_the_same_on_both_paths(tmp_path, monkeypatch, seed):
    """Data sets held in memory, in PDUs big enough to be received straight
    into the data set's buffer (the lane waits for them itself), the stream
    cut at random places: both paths answer the same and hand on_store the
    same bytes -- what was sent. Seeds from 4 on damage the headers of one
    data PDU (its PDU or PDV length, its context, its control byte): both
    then abort, or answer, alike."""
    rng = random.Random(seed)
    chunks = big_stream(rng)
    damaged = seed >= 4
    if damaged:
        k = rng.randrange(1, len(chunks) - 1)
        body = bytearray(chunks[k])
        pos = rng.choice([2, 3, 4, 5, 8, 9, 10, 11])
        body[pos] ^= 1 << rng.randrange(8)
        chunks[k] = bytes(body)
    whole = b"".join(chunks)
    cuts = sorted(rng.sample(range(1, len(whole)), 12))
    pieces = [whole[a:b] for a, b in zip([0, *cuts], [*cuts, len(whole)])]
    with _pair(monkeypatch, tmp_path, Keeper, 256 * 1024) as servers:
        a, b = both(servers, pieces, pause=0.01)
        lane, general = servers
        assert a.pdus == b.pdus, (seed, a.types, b.types)
        assert a.closed == b.closed
        assert lane.handler.stored == general.handler.stored
        assert lane.handler.kept == general.handler.kept
        assert lane.lanes and lane.lanes[0].pdus >= 5
    if not damaged:
        assert a.types == [2] + [4] * 6 + [6], a.types
        assert lane.handler.kept == [dataset_bytes(uid, len(raw)) for uid, raw in
                                     zip(lane.handler.stored, lane.handler.kept)]
        assert lane.lanes[0].waits >= 1


def test_a_message_lost_with_the_association_leaves_no_temporary_file(servers, caplog):
    """A PDU that completes one streamed data set and then holds an
    undecodable command set: the association is aborted, the complete data
    set is never answered, and its temporary file is gone by the time the
    association is -- even while the log records that name the fault (which
    hold the exception, and so the frames that held the message) are kept."""
    uid = "1.2.3.5"
    broken = b"\x08\x00\x10\x00\xff\xff\xff\x7f"     # (0008,0010), a length past the end
    chunks = [pdu(4, pdv(CT_CONTEXT, 3, store_command(1, uid))),
              pdu(4, pdv(CT_CONTEXT, 2, dataset_bytes(uid, 500)) + pdv(CT_CONTEXT, 3, broken))]
    a, b = both(servers, chunks, pause=0.02)
    assert a.pdus == b.pdus and a.types == [2, 7], a
    for srv in servers:
        assert list(srv.folder.iterdir()) == []
    assert any("undecodable command set" in r.getMessage() for r in caplog.records)


def test_write_failure_is_answered_as_on_the_general_path(servers, monkeypatch):
    """A write error mid-data-set (here: the file's descriptor turned read-only)
    fails the store with 0xA700, the temporary file goes, the association goes on."""
    original = _scp.StoreSink._open

    def open_read_only(self):
        original(self)
        ro = os.open(os.devnull, os.O_RDONLY)
        os.dup2(ro, self._fd)
        os.close(ro)

    monkeypatch.setattr(_scp.StoreSink, "_open", open_read_only)
    chunks = stream()
    a, b = both(servers, [b"".join(chunks)])
    assert a.pdus == b.pdus
    statuses = [decode_command(body[6:]).get("Status") for t, body in a.pdus if t == 4]
    # Every streamed one; a Keeper streams none.
    assert statuses.count(0xA700) == (0 if handler_type(servers[0]) is Keeper else 8), statuses
    for srv in servers:
        assert list(srv.folder.iterdir()) == []


def test_trickled_data_set_times_out_like_any_message(servers):
    """A peer that sends a C-STORE's data a few bytes at a time, each within
    read_timeout of the last, still loses the association after read_timeout."""
    lane = servers[0]
    uid = "1.2.3.7"
    data = pdu(4, pdv(CT_CONTEXT, 2, dataset_bytes(uid, 400)))
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", lane.port), timeout=3.0) as sock:
        sock.sendall(associate_rq_bytes(contexts=LANE_CONTEXTS, max_pdu=4096))
        sock.recv(65536)
        sock.sendall(pdu(4, pdv(CT_CONTEXT, 3, store_command(1, uid))))
        closed = False
        for i in range(0, len(data), 8):
            try:
                sock.sendall(data[i:i + 8])
            except OSError:
                closed = True
                break
            time.sleep(0.2)
            if time.monotonic() - start > 5.0:
                break
        else:
            pytest.fail("the whole data set went through")
    assert closed or time.monotonic() - start < 5.0
    assert time.monotonic() - start < lane.read_timeout + 2.0
    deadline = time.monotonic() + 3.0
    while lane.active_associations and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list(lane.folder.iterdir()) == []


def test_a_data_set_slower_than_read_timeout_is_stored_while_each_pdu_is_in_time(servers):
    """read_timeout bounds the wait for each PDU, not for a whole data set: a
    peer on a slow link whose data set arrives over several read_timeouts,
    one PDU well within read_timeout of the last, is served -- streamed to a
    file or held in memory, with or without the lane (as dcmtk and
    pynetdicom time each read, not each message)."""
    streamed, kept = "1.2.3.21", "1.2.3.9"      # '.9': held in memory (Streamer)
    chunks = []
    for mid, uid in ((1, streamed), (2, kept)):
        data = dataset_bytes(uid, 6000)
        chunks.append(pdu(4, pdv(CT_CONTEXT, 3, store_command(mid, uid))))
        chunks += [pdu(4, pdv(CT_CONTEXT, 2 if end >= len(data) else 0, data[end - 1000:end]))
                   for end in range(1000, len(data) + 1, 1000)]
    lane_server = servers[0]
    pause = lane_server.read_timeout / 4     # 14 PDUs: about three read_timeouts in all
    a, b = both(servers, chunks, wait=pause * len(chunks) + 3.0, pause=pause)
    assert a.pdus == b.pdus
    assert a.types == [2, 4, 4, 6], a.types       # no A-ABORT: both answered, then released
    statuses = [decode_command(body[6:]).get("Status") for t, body in a.pdus if t == 4]
    assert statuses[0] == 0
    assert files(lane_server.folder) == files(servers[1].folder)
    if handler_type(lane_server) is Keeper:
        assert statuses == [0, 0]
        assert lane_server.handler.kept == servers[1].handler.kept
        assert lane_server.handler.kept[1] == dataset_bytes(kept, 6000)
    else:
        assert list(files(lane_server.folder)) == [streamed + ".dcm"]


def test_without_the_lane_streamed_stores_take_the_general_path(tmp_path, monkeypatch, lanes):
    """Where the lane is not built for (Windows: _LANE is False), attach
    makes none and streamed C-STOREs still land in their files."""
    from dicomnet.client import Client
    from dicomnet.dicom.reader import read_dataset

    monkeypatch.setattr(_scp, "_LANE", False)
    folder = tmp_path / "in"
    folder.mkdir()
    srv = Server("HARDEN", Streamer(folder)).start("127.0.0.1", 0)
    try:
        with Client("NOLANE").associate("127.0.0.1", srv.port, "HARDEN", contexts=[(CT, [EXPLICIT])]) as assoc:
            assert assoc.store(read_dataset(dataset_bytes("1.2.3.40.1", 5000), transfer_syntax=EXPLICIT)) == 0
    finally:
        srv.shutdown(5.0)
    assert lanes == [None]
    assert (folder / "1.2.3.40.1.dcm").read_bytes().endswith(dataset_bytes("1.2.3.40.1", 5000))


@pytest.mark.parametrize("window", [1, 8])
def test_stores_for_longer_than_read_timeout_go_on(tmp_path, window):
    """read_timeout bounds each message, not the association: stores the lane
    answers itself, one after another for three read_timeouts, all succeed
    (the lane once timed the first message's wait across all of them)."""
    from dicomnet.client import Client
    from dicomnet.dicom.reader import read_dataset

    folder = tmp_path / "in"
    folder.mkdir()
    srv = Server("HARDEN", Streamer(folder), read_timeout=0.8).start("127.0.0.1", 0)
    try:
        stored = 0
        start = time.monotonic()
        with Client("LONG").associate("127.0.0.1", srv.port, "HARDEN", contexts=[(CT, [EXPLICIT])],
                                      async_operations=window) as assoc:
            while time.monotonic() - start < 2.0:
                batch = [read_dataset(dataset_bytes(f"1.2.3.12.{stored + i}.1", 300), transfer_syntax=EXPLICIT)
                         for i in range(window)]
                for _, status, _ in assoc.store_many(batch):
                    assert status == 0
                stored += window
        assert len(list(folder.glob("*.dcm"))) == stored
    finally:
        srv.shutdown(5.0)


def test_shutdown_during_a_flood_of_stores_aborts_it_promptly(tmp_path):
    """A client storing as fast as it can, through the lane, loses the
    association within a moment of the server's shutdown."""
    from dicomnet.client import Client
    from dicomnet.errors import DicomNetError

    src = tmp_path / "one.dcm"
    raw = dataset_bytes("1.2.3.11", 200)
    from dicomnet.dicom.reader import read_dataset
    from dicomnet.dicom.writer import write_file
    write_file(str(src), read_dataset(raw, transfer_syntax=EXPLICIT), EXPLICIT)
    folder = tmp_path / "in"
    folder.mkdir()
    srv = Server("HARDEN", Streamer(folder), read_timeout=5.0).start("127.0.0.1", 0)
    outcome: list[object] = []

    def flood():
        try:
            with Client("FLOOD").associate("127.0.0.1", srv.port, "HARDEN", contexts=[(CT, [EXPLICIT])],
                                           async_operations=8) as assoc:
                for _ in assoc.store_many([str(src)] * 200000):
                    pass
            outcome.append("finished")
        except DicomNetError as exc:
            outcome.append(exc)

    import threading
    thread = threading.Thread(target=flood)
    thread.start()
    try:
        deadline = time.monotonic() + 5.0
        while len(list(folder.iterdir())) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        t0 = time.monotonic()
        srv.shutdown(5.0)
        assert time.monotonic() - t0 < 2.0
    finally:
        srv.shutdown(5.0)
        thread.join(10.0)
    assert outcome and outcome[0] != "finished", outcome


@pytest.mark.parametrize("uid", ["1.2.3.31.1", "1.2.3.31.9"])    # streamed; held in memory
def test_the_lane_waits_itself_for_the_rest_of_a_big_pdu(tmp_path, lanes, uid):
    """A 200 KB data PDU whose header and first bytes come 0.2 s before the
    rest: the lane waits for the rest itself. A streamed data set lands whole
    in its file; one held in memory (the reader places it straight into the
    data set's buffer while the lane waits) reaches on_store whole."""
    folder = tmp_path / "in"
    folder.mkdir()
    raw = dataset_bytes(uid, 200_000)
    data = pdu(4, pdv(CT_CONTEXT, 2, raw))
    kept: list[bytes] = []

    class Checker(NotifiedStreamer):
        def on_store(self, ctx, dataset):
            kept.append(bytes(dataset[0x00090010].value))
            return super().on_store(ctx, dataset)

    handler = Checker(folder)
    srv = Server("HARDEN", handler, max_pdu=256 * 1024, read_timeout=2.0).start("127.0.0.1", 0)
    try:
        rq = associate_rq_bytes(contexts=LANE_CONTEXTS, max_pdu=4096)
        answer = converse(srv.port, [rq, pdu(4, pdv(CT_CONTEXT, 3, store_command(1, uid))) + data[:10_000],
                                     data[10_000:], RELEASE_RQ], wait=3.0, pause=0.2)
    finally:
        srv.shutdown(5.0)
    assert answer.types == [2, 4, 6], answer
    assert decode_command(answer.pdus[1][1][6:]).get("Status") == 0
    assert lanes[0].waits >= 1
    assert handler.stored == [uid]
    assert len(kept) == 1 and raw.endswith(kept[0]) and len(kept[0]) > 199_000
    if uid.endswith(".9"):
        assert list(folder.iterdir()) == []
    else:
        assert (folder / f"{uid}.dcm").read_bytes().endswith(raw)


@pytest.mark.parametrize("window", [1, 4])
def test_big_pdus_through_the_lane_land_byte_for_byte(tmp_path, lanes, window):
    """Data sets of about 1 MB from our client in PDUs of 256 KiB, as fast as
    it sends them: every file holds exactly the data set sent."""
    from dicomnet.client import Client
    from dicomnet.dicom.reader import read_dataset

    sent = {f"1.2.3.30.{i}.1": dataset_bytes(f"1.2.3.30.{i}.1", 900_000 + 77_777 * i) for i in range(5)}
    folder = tmp_path / "in"
    folder.mkdir()
    srv = Server("HARDEN", Streamer(folder), max_pdu=256 * 1024).start("127.0.0.1", 0)
    try:
        with Client("BIGPDU").associate("127.0.0.1", srv.port, "HARDEN", contexts=[(CT, [EXPLICIT])],
                                        async_operations=window) as assoc:
            datasets = [read_dataset(raw, transfer_syntax=EXPLICIT) for raw in sent.values()]
            assert [status for _, status, _ in assoc.store_many(datasets)] == [0] * len(sent)
    finally:
        srv.shutdown(5.0)
    lane = lanes[0]
    assert lane is not None and lane.answered == len(sent)
    assert lane.pdus >= len(sent) * 5          # a command PDU and at least four data PDUs each
    for uid, raw in sent.items():
        data = (folder / f"{uid}.dcm").read_bytes()
        assert data[128:132] == b"DICM" and data.endswith(raw) and len(data) < len(raw) + 400
    assert not [p for p in folder.iterdir() if not p.name.endswith(".dcm")]


def test_over_tls_the_lane_reads_and_handle_store_answers(pki, tmp_path, lanes):
    """Over TLS the lane takes the P-DATA the driver decrypted (SyncDriver.fill)
    and leaves the answers to handle_store; the files are the sent data sets."""
    from dicomnet.client import Client
    from dicomnet.dicom.reader import read_dataset
    from dicomnet.dicom.writer import write_file
    from dicomnet.transport.tls import make_context

    paths = []
    for i in range(6):
        path = tmp_path / f"src{i}.dcm"
        raw = dataset_bytes(f"1.2.3.{20 + i}", 3000 + 5000 * i)
        write_file(str(path), read_dataset(raw, transfer_syntax=EXPLICIT), EXPLICIT)
        paths.append(path)
    folder = tmp_path / "in"
    folder.mkdir()
    server_tls = make_context(server_side=True, cert=pki["server"] + ".crt", key=pki["server"] + ".key",
                              ca=pki["ca"] + ".crt")
    srv = Server("HARDEN", Streamer(folder), tls=server_tls, max_pdu=4096).start("127.0.0.1", 0)
    try:
        client = Client("TLSSCU", tls=make_context(server_side=False, ca=pki["ca"] + ".crt"))
        with client.associate("127.0.0.1", srv.port, "HARDEN", contexts=[(CT, [EXPLICIT])],
                              async_operations=4) as assoc:
            assert [status for _, status, _ in assoc.store_many([str(p) for p in paths])] == [0] * 6
    finally:
        srv.shutdown(5.0)
    assert lanes and lanes[0] is not None and lanes[0].pdus >= 12 and lanes[0].answered == 0
    def dataset_part(data: bytes) -> bytes:
        assert data[128:132] == b"DICM"
        return data[144 + struct.unpack_from("<L", data, 140)[0]:]   # after (0002,0000) UL and its group

    for i, path in enumerate(paths):
        stored = (folder / f"1.2.3.{20 + i}.dcm").read_bytes()
        assert dataset_part(stored) == dataset_part(path.read_bytes())


def test_debug_logging_takes_the_general_path_and_logs_every_message(servers, caplog):
    """With DEBUG on, every message is logged as it arrives: the lane stands aside."""
    import logging

    caplog.set_level(logging.DEBUG, logger="dicomnet")
    lane, general = servers
    a, b = both(servers, [b"".join(stream())])
    assert a.pdus == b.pdus and a.types[-1] == 6
    assert lane.lanes and lane.lanes[0].pdus == 0
    assert sum("DIMSE message complete" in r.getMessage() for r in caplog.records) == 2 * 9   # data sets
