"""C-STORE and C-FIND between our Client and our Server on loopback (PS3.4 B, C; PS3.7 9.1.1, 9.1.2)."""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from dicomnet._codec.pdu import fragment
from dicomnet.client import Client
from dicomnet.dicom import Dataset, read_file
from dicomnet.dicom.writer import encode_dataset
from dicomnet.dimse.commands import c_store_rq, encode_command
from dicomnet.dimse.scu import FIND_MODELS
from dicomnet.errors import DimseStatusError, NoPresentationContext
from dicomnet.server import Server
from dicomnet.transport.sync import SyncDriver

pydicom_data = pytest.importorskip("pydicom.data")

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
BIG = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
SC = "1.2.840.10008.5.1.4.1.1.7"
STUDY_FIND = FIND_MODELS["study"]


def data(name: str) -> str:
    path = pydicom_data.get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} not available offline")
    return str(path)


def body_of(path: str) -> bytes:
    """The data set bytes of a Part 10 file (what follows the File Meta)."""
    ds = read_file(path)
    return bytes(encode_dataset(ds, ds.transfer_syntax))


class Recorder:
    """on_store keeps what arrived: (context, transfer syntax, re-encoded bytes)."""

    def __init__(self, status: int | None = None, exc: BaseException | None = None) -> None:
        self.received: list[tuple[object, str, bytes, Dataset]] = []
        self.status = status
        self.exc = exc

    def on_store(self, ctx, ds):
        self.received.append((ctx, ctx.transfer_syntax, bytes(encode_dataset(ds, ctx.transfer_syntax)), ds))
        if self.exc is not None:
            raise self.exc
        return self.status


def serve(handler, **kw):
    kw.setdefault("read_timeout", 5)
    kw.setdefault("artim_timeout", 2)
    return Server("SCP", handler, **kw).start("127.0.0.1", 0)


def associate(srv, contexts=None, **kw):
    return Client("SCU", dimse_timeout=10).associate("127.0.0.1", srv.port, "SCP", contexts=contexts, **kw)


# ------------------------------------------------------------------ C-STORE
@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_implicit.dcm", "rtplan.dcm"])
def test_store_path_in_its_own_syntax_arrives_byte_for_byte(name):
    path = data(name)
    rec = Recorder()
    own = read_file(path).transfer_syntax
    other = IMPLICIT if own == EXPLICIT else EXPLICIT
    sop = read_file(path).SOPClassUID
    with serve(rec) as srv, associate(srv, contexts=[(sop, [other]), (sop, [own])]) as assoc:
        assert assoc.store(path) == 0x0000
    [(ctx, ts, received, _)] = rec.received
    assert ts == read_file(path).transfer_syntax
    assert received == body_of(path)
    assert ctx.sop_instance_uid == read_file(path).SOPInstanceUID
    assert ctx.calling_ae == "SCU"


def test_store_dataset_transcoded_to_the_only_accepted_syntax():
    path = data("CT_small.dcm")
    ds = read_file(path)
    rec = Recorder()
    with serve(rec, contexts={CT: [IMPLICIT]}) as srv, associate(srv, contexts=[(CT, [EXPLICIT, IMPLICIT])]) as assoc:
        assert assoc.store(ds) == 0
        assert assoc.store(path) == 0          # a path that must be transcoded is decoded
    assert [r[1] for r in rec.received] == [IMPLICIT, IMPLICIT]
    expected = bytes(encode_dataset(ds, IMPLICIT))
    assert rec.received[0][2] == expected and rec.received[1][2] == expected
    assert rec.received[0][3].PatientName == ds.PatientName


def test_store_big_endian_file_transcoded_to_little_endian():
    path = data("MR_small_bigendian.dcm")
    source = read_file(path)
    assert source.transfer_syntax == BIG
    rec = Recorder()
    with serve(rec, contexts={MR: [EXPLICIT, IMPLICIT]}) as srv, associate(srv) as assoc:
        assert assoc.store(path) == 0
    [(_, ts, received, ds)] = rec.received
    assert ts == EXPLICIT
    assert received == bytes(encode_dataset(source, EXPLICIT))
    assert (ds.pixel_array == source.pixel_array).all()


def test_store_encapsulated_jpeg_when_its_syntax_is_accepted():
    path = data("JPEG-lossy.dcm")
    own = read_file(path).transfer_syntax
    assert own == JPEG_EXTENDED
    rec = Recorder()
    with serve(rec, contexts={SC: [own, EXPLICIT]}) as srv, \
            associate(srv, contexts=[(SC, [own]), (SC, [EXPLICIT])]) as assoc:
        assert assoc.store(path) == 0
        assert assoc.store(read_file(path)) == 0
    assert [r[1] for r in rec.received] == [own, own]
    assert rec.received[0][2] == body_of(path) == rec.received[1][2]


def test_store_encapsulated_without_its_syntax_is_a_clear_error():
    path = data("JPEG-lossy.dcm")
    with serve(Recorder()) as srv, associate(srv) as assoc:
        with pytest.raises(NoPresentationContext) as info:
            assoc.store(path)
        assert SC in str(info.value) and JPEG_EXTENDED in str(info.value) and EXPLICIT in str(info.value)
        assert info.value.accepted == [EXPLICIT] and info.value.sop_class == SC
        with pytest.raises(NoPresentationContext, match=f"{BIG} was requested"):
            assoc.store(data("CT_small.dcm"), transfer_syntax=BIG)
        assert assoc.store(data("CT_small.dcm")) == 0   # still usable


def test_store_sop_class_not_accepted():
    with serve(Recorder()) as srv, associate(srv, contexts=[CT]) as assoc:
        with pytest.raises(NoPresentationContext, match=f"no presentation context was accepted for SOP class {MR}"):
            assoc.store(data("MR_small.dcm"))


def test_store_requested_transfer_syntax_is_used():
    path = data("CT_small.dcm")
    rec = Recorder()
    with serve(rec) as srv, associate(srv, contexts=[(CT, [EXPLICIT]), (CT, [IMPLICIT])]) as assoc:
        assert assoc.store(path, transfer_syntax=IMPLICIT) == 0
    assert rec.received[0][1] == IMPLICIT
    assert rec.received[0][2] == bytes(encode_dataset(read_file(path), IMPLICIT))


@pytest.mark.parametrize("status", [0xA701, 0xC123, 0x0117])
def test_store_failure_status_raises(status):
    with serve(Recorder(status=status)) as srv, associate(srv) as assoc:
        with pytest.raises(DimseStatusError) as info:
            assoc.store(data("CT_small.dcm"))
        assert info.value.status == status
        assert assoc.is_established


def test_store_warning_is_returned_and_logged(caplog):
    with serve(Recorder(status=0xB000)) as srv, associate(srv) as assoc:
        with caplog.at_level("WARNING", logger="dicomnet"):
            assert assoc.store(data("CT_small.dcm")) == 0xB000
    assert any("0xB000" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("exc, status", [(RuntimeError("disk says no " + "x" * 80), 0xC000),
                                         (MemoryError("full"), 0xA700), (OSError(28, "No space"), 0xA700)])
def test_store_handler_raising_is_a_failure_status_not_an_abort(exc, status):
    with serve(Recorder(exc=exc)) as srv, associate(srv) as assoc:
        with pytest.raises(DimseStatusError) as info:
            assoc.store(data("CT_small.dcm"))
        assert info.value.status == status
        assert info.value.comment and len(info.value.comment) <= 64
        assert type(exc).__name__ in info.value.comment
        assert assoc.is_established


def test_store_without_handler_is_refused_sop_class_not_supported():
    with serve(None) as srv, associate(srv) as assoc:
        with pytest.raises(DimseStatusError) as info:
            assoc.store(data("CT_small.dcm"))
        assert info.value.status == 0x0122
        with pytest.raises(DimseStatusError) as info:
            list(assoc.find({"QueryRetrieveLevel": "STUDY"}))
        assert info.value.status == 0x0122


def test_send_stores_yields_each_status_in_order():
    from dicomnet.dimse.scu import send_stores

    class Picky(Recorder):
        def on_store(self, ctx, ds):
            super().on_store(ctx, ds)
            return 0xA701 if ds.Modality == "MR" else None

    paths = [data("CT_small.dcm"), data("MR_small.dcm"), data("rtplan.dcm"), read_file(data("CT_small.dcm"))]
    rec = Picky()
    with serve(rec) as srv, associate(srv) as assoc:
        results = list(send_stores(assoc, paths))
        assert [r[0] for r in results] == paths
        assert [r[1] for r in results] == [0, 0xA701, 0, 0]          # a failure is yielded, not raised
        assert len(rec.received) == 4
        assert rec.received[2][2] == bytes(encode_dataset(read_file(paths[2]), rec.received[2][1]))
        # An instance no context can carry: the one before it is still answered, then the error.
        jpeg = data("JPEG-lossy.dcm")
        seen = []
        with pytest.raises(NoPresentationContext):
            for source, status, _ in send_stores(assoc, [paths[0], jpeg, paths[2]]):
                seen.append((source, status))
        assert seen == [(paths[0], 0)]
        assert assoc.store(paths[0]) == 0                                 # still usable
        assert list(send_stores(assoc, [])) == []
        assert [st for _, st, _ in assoc.store_many(paths[:3])] == [0, 0xA701, 0]


# ---------------------------------------------------------- streaming to files
class Streamer(Recorder):
    def __init__(self, folder: Path, **kw) -> None:
        super().__init__(**kw)
        self.folder = folder

    def store_destination(self, ctx, command):
        return self.folder / f"{command['AffectedSOPInstanceUID']}.dcm"


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm"])
def test_store_streamed_to_a_part10_file(tmp_path, name):
    import pydicom

    path = data(name)
    source = read_file(path)
    rec = Streamer(tmp_path)
    with serve(rec, max_pdu=4096) as srv, associate(srv) as assoc:
        assert assoc.store(path) == 0
    [(ctx, ts, received, ds)] = rec.received
    final = tmp_path / f"{source.SOPInstanceUID}.dcm"
    assert sorted(os.listdir(tmp_path)) == [final.name]          # no temporary left behind
    assert ds.filename == str(final)
    assert received == bytes(encode_dataset(source, ts))
    written = read_file(final)
    assert written.file_meta.MediaStorageSOPInstanceUID == source.SOPInstanceUID
    assert written.file_meta.MediaStorageSOPClassUID == source.SOPClassUID
    assert written.file_meta.TransferSyntaxUID == ts
    assert written.file_meta.SourceApplicationEntityTitle == "SCU"
    py = pydicom.dcmread(final)
    assert py.SOPInstanceUID == source.SOPInstanceUID and py.PatientName == str(source.PatientName)


def test_streaming_destination_none_keeps_it_in_memory(tmp_path):
    class Some(Streamer):
        def store_destination(self, ctx, command):
            return None

    rec = Some(tmp_path)
    with serve(rec) as srv, associate(srv) as assoc:
        assert assoc.store(data("CT_small.dcm")) == 0
    assert rec.received[0][3].filename is None and os.listdir(tmp_path) == []


def test_streaming_write_failure_is_out_of_resources(tmp_path):
    (tmp_path / "a-file").write_bytes(b"")     # a folder that is a file: cannot be created, on any OS

    class Bad(Streamer):
        def store_destination(self, ctx, command):
            return str(tmp_path / "a-file" / "x.dcm")

    with serve(Bad(tmp_path)) as srv, associate(srv) as assoc:
        with pytest.raises(DimseStatusError) as info:
            assoc.store(data("CT_small.dcm"))
        assert info.value.status == 0xA700 and assoc.is_established


def test_aborted_transfer_leaves_no_file(tmp_path):
    path = data("CT_small.dcm")
    source = read_file(path)
    body = bytes(encode_dataset(source))
    started = threading.Event()

    class Watch(Streamer):
        def store_destination(self, ctx, command):
            started.set()
            return super().store_destination(ctx, command)

    with serve(Watch(tmp_path), max_pdu=4096) as srv:
        assoc = associate(srv)
        ctx = assoc.context_for(CT)
        conn = assoc._conn
        conn.send_pdata(ctx.context_id, True, encode_command(c_store_rq(1, CT, source.SOPInstanceUID)))
        pieces = fragment(ctx.context_id, False, body, 4096)
        conn._out.extend(pieces[:-4])          # all but the last two PDUs: never complete
        assoc._driver.flush()
        assert started.wait(5)
        time.sleep(0.2)
        assert any(n.endswith(".part") for n in os.listdir(tmp_path))
        assoc.abort()
        deadline = time.monotonic() + 5
        while os.listdir(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------- C-FIND
def match(i: int) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientID = f"P{i:03d}"
    ds.StudyInstanceUID = f"1.2.3.{i}"
    return ds


class Finder:
    def __init__(self, count: int | None = 5, fail_after: int | None = None) -> None:
        self.count = count
        self.fail_after = fail_after
        self.queries: list[tuple[object, Dataset]] = []
        self.cancelled_seen: list[bool] = []

    def on_find(self, ctx, query):
        self.queries.append((ctx, query))
        i = 0
        try:
            while self.count is None or i < self.count:
                if self.fail_after is not None and i == self.fail_after:
                    raise LookupError("index unavailable")
                if ctx.cancelled:
                    return
                yield match(i)
                i += 1
        finally:
            self.cancelled_seen.append(i)


def test_find_several_matches_in_order():
    finder = Finder(7)
    with serve(finder) as srv, associate(srv) as assoc:
        result = assoc.find({"QueryRetrieveLevel": "STUDY", "PatientID": None, "StudyDate": "20200101-"})
        got = [ds.PatientID for ds in result]
        assert result.status == 0x0000 and result.matches == 7
    assert got == [f"P{i:03d}" for i in range(7)]
    ctx, query = finder.queries[0]
    assert ctx.abstract_syntax == STUDY_FIND
    assert query.QueryRetrieveLevel == "STUDY" and query.StudyDate == "20200101-" and "PatientID" in query


def test_many_matches_go_out_in_batches_byte_for_byte(monkeypatch):
    from dicomnet.transport import sync

    writes = []
    original = sync.SyncDriver._write_all

    def counting(self, buffers):
        writes.append(len(buffers))
        return original(self, buffers)

    monkeypatch.setattr(sync.SyncDriver, "_write_all", counting)
    sent = [match(i) for i in range(300)]

    class Many:
        def on_find(self, ctx, query):
            for i, ds in enumerate(sent):
                if i == 2:
                    time.sleep(0.01)     # one slow match early on does not end the batching
                yield (0xFF01, ds) if i % 7 == 3 else ds

    with serve(Many()) as srv, associate(srv) as assoc:
        before = len(writes)
        result = assoc.find({"QueryRetrieveLevel": "STUDY"})
        got = [bytes(encode_dataset(ds, ds.transfer_syntax)) for ds in result]
        during = len(writes) - before
    assert result.status == 0 and result.matches == 300
    assert got == [bytes(encode_dataset(ds, EXPLICIT)) for ds in sent]
    # One write per batch of pending responses, not one per match.
    assert during < 30


def test_release_cancels_a_find_left_unfinished_first():
    """A find whose loop is still open when release() is called: C-CANCEL
    and the drain to its final response come first (as before echo()), so
    the release is not asked while matches are still coming."""
    first_out = threading.Event()

    class Endless:
        def on_find(self, ctx, query):
            for i in range(10_000):
                if i == 1:
                    first_out.set()
                time.sleep(0.002)
                yield match(i % 300)

    with serve(Endless()) as srv:
        assoc = associate(srv)
        result = assoc.find({"QueryRetrieveLevel": "STUDY"})
        it = iter(result)
        assert next(it).PatientID == "P000"
        assert first_out.wait(5)
        assoc.release()
        assert result.done and result.status == 0xFE00       # cancelled, drained
        assert assoc.is_closed


def test_a_slow_handler_gets_each_match_sent_at_once():
    received = [threading.Event() for _ in range(2)]

    class Slow:
        def on_find(self, ctx, query):
            yield match(0)                       # the first match always goes out at once
            if not received[0].wait(5):
                raise TimeoutError("match 0 was held back")
            time.sleep(0.01)                     # a slow next(): no batching from here on
            yield match(1)
            if not received[1].wait(5):
                raise TimeoutError("match 1 was held back")
            yield match(2)

    with serve(Slow()) as srv, associate(srv) as assoc:
        result = assoc.find({"QueryRetrieveLevel": "STUDY"})
        ids = []
        for ds in result:
            ids.append(ds.PatientID)
            if len(ids) <= 2:
                received[len(ids) - 1].set()
    assert ids == ["P000", "P001", "P002"] and result.status == 0


@pytest.mark.parametrize("model", ["patient", "study", "worklist"])
def test_find_models_map_to_their_sop_class(model):
    finder = Finder(1)
    with serve(finder) as srv, associate(srv) as assoc:
        assert len(list(assoc.find({"PatientID": "X"}, model=model))) == 1
    assert finder.queries[0][0].abstract_syntax == FIND_MODELS[model]


def test_find_matches_come_in_the_negotiated_syntax():
    finder = Finder(2)
    with serve(finder, contexts={STUDY_FIND: [IMPLICIT]}) as srv, associate(srv) as assoc:
        result = assoc.find(match(0))
        got = list(result)
        assert got[1].StudyInstanceUID == "1.2.3.1" and got[0].transfer_syntax == IMPLICIT
    assert finder.queries[0][0].transfer_syntax == IMPLICIT


def test_break_cancels_and_the_next_find_works():
    finder = Finder(None)          # endless: only a C-CANCEL stops it
    with serve(finder) as srv, associate(srv) as assoc:
        result = assoc.find({"QueryRetrieveLevel": "STUDY"})
        for n, _ in enumerate(result, 1):
            if n == 3:
                break
        assert result.done and result.cancelled and result.status == 0xFE00
        finder.count = 4
        again = assoc.find({"QueryRetrieveLevel": "STUDY"})
        assert len(list(again)) == 4 and again.status == 0
    assert len(finder.cancelled_seen) == 2 and finder.cancelled_seen[0] >= 2  # 3 matches were sent


def test_cancel_method_and_an_abandoned_find_is_drained_first():
    finder = Finder(None)
    with serve(finder) as srv, associate(srv) as assoc:
        first = assoc.find({"QueryRetrieveLevel": "STUDY"})
        it = iter(first)
        next(it)
        assert first.cancel() == 0xFE00
        second = assoc.find({"QueryRetrieveLevel": "STUDY"})
        next(iter(second))                   # abandoned but still referenced
        finder.count = 2
        third = assoc.find({"QueryRetrieveLevel": "STUDY"})  # cancels and drains `second` first
        assert second.status == 0xFE00
        assert len(list(third)) == 2 and third.status == 0


def test_find_handler_raising_is_a_failure_status():
    with serve(Finder(10, fail_after=2)) as srv, associate(srv) as assoc:
        result = assoc.find({"QueryRetrieveLevel": "STUDY"})
        seen = []
        with pytest.raises(DimseStatusError) as info:
            for ds in result:
                seen.append(ds.PatientID)
        assert seen == ["P000", "P001"]
        assert info.value.status == 0xC000 and "index unavailable" in info.value.comment
        assert result.status == 0xC000
        with pytest.raises(DimseStatusError):
            list(assoc.find({"QueryRetrieveLevel": "STUDY"}))       # the association carries on


def test_find_query_error_is_its_status_without_a_traceback(caplog):
    """A QueryError is the query's fault, named by the handler: its status goes
    back, and the log says so at INFO without a traceback (as C-MOVE/C-GET)."""
    from dicomnet.errors import QueryError

    class Picky:
        def on_find(self, ctx, query):
            raise QueryError("no such level here", 0xA900)

    caplog.set_level(logging.DEBUG, logger="dicomnet")
    with serve(Picky()) as srv, associate(srv) as assoc:
        with pytest.raises(DimseStatusError) as info:
            list(assoc.find({"QueryRetrieveLevel": "STUDY"}))
        assert info.value.status == 0xA900 and "no such level here" in info.value.comment
    records = [r for r in caplog.records if "no such level here" in r.getMessage() and r.levelno >= logging.INFO]
    assert records and all(r.levelno == logging.INFO and r.exc_info is None for r in records)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_find_tolerates_group_0002_in_the_identifier():
    finder = Finder(1)
    query = match(0)
    query.set(0x00020003, "1.2.3.4", "UI")
    with serve(finder) as srv, associate(srv) as assoc:
        assert len(list(assoc.find(query))) == 1
    assert finder.queries[0][1].get(0x00020003).value == "1.2.3.4"


def test_find_yielding_a_mapping_and_pending_warning():
    class H:
        def on_find(self, ctx, query):
            yield {"PatientID": "A"}
            yield (0xFF01, match(1))

    with serve(H()) as srv, associate(srv) as assoc:
        got = list(assoc.find({"PatientID": None}))
    assert [d.PatientID for d in got] == ["A", "P001"]


def test_store_many_keeps_the_negotiated_window_of_requests_outstanding(tmp_path, monkeypatch):
    import hashlib

    import dicomnet.dimse.scu as scu

    order: list[str] = []
    send, receive = scu._send_prepared, scu._next_store_response

    def sending(*args, **kw):
        order.append("send")
        return send(*args, **kw)

    def receiving(*args, **kw):
        order.append("rsp")
        return receive(*args, **kw)

    monkeypatch.setattr(scu, "_send_prepared", sending)
    monkeypatch.setattr(scu, "_next_store_response", receiving)
    names = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm"] * 2          # three instances, each sent twice
    paths = [data(n) for n in names]

    class Picky(Streamer):
        def on_store(self, ctx, ds):
            super().on_store(ctx, ds)
            return 0xB000 if ds.Modality == "MR" else None

    rec = Picky(tmp_path)
    with serve(rec) as srv:
        with associate(srv, async_operations=4) as assoc:
            assert assoc.negotiated.max_invoked == 4
            results = list(assoc.store_many(paths))
            assert order[:6] == ["send"] * 4 + ["rsp", "send"]             # four out before the first answer
            assert [r[1] for r in results] == [0, 0xB000, 0] * 2
            assert [r[0] for r in results] == paths                          # our SCP answers in order
            for path in set(paths):
                received = str(tmp_path / f"{read_file(path).SOPInstanceUID}.dcm")
                expected = bytes(encode_dataset(read_file(path), read_file(received).transfer_syntax))
                assert hashlib.sha256(body_of(received)).digest() == hashlib.sha256(expected).digest()
            # Leaving the loop early still reads the outstanding answers: the association goes on.
            order.clear()
            for _ in assoc.store_many(paths):
                break
            assert order == ["send"] * 4 + ["rsp"] * 4                       # the 3 outstanding are read too
            assert assoc.store(paths[0]) == 0
            # An instance no context can carry: the ones already sent are answered first.
            seen = []
            with pytest.raises(NoPresentationContext):
                for source, status, _ in assoc.store_many([paths[0], paths[2], data("JPEG-lossy.dcm"), paths[0]]):
                    seen.append(source)
            assert seen == [paths[0], paths[2]]
            assert assoc.echo() == 0
        with associate(srv) as assoc:                                        # not asked: one at a time
            assert assoc.negotiated.max_invoked == 1
            order.clear()
            list(assoc.store_many(paths[:3]))
            assert order == ["send", "rsp"] * 3


@pytest.mark.parametrize("rtt, expected", [
    # A path of unknown length: beyond two, every test file is "large" now
    # (a budget of 1,000 bytes), so two stay in flight ...
    (None, ["send", "send", "rsp", "send", "rsp", "send", "rsp", "rsp"]),
    # ... but across a 20 ms round trip the data in flight is on the way, not
    # queued at the peer: the budget is what the path holds, the whole window goes out.
    (0.020, ["send"] * 4 + ["rsp"] * 4),
])
def test_store_many_byte_budget_follows_the_path(monkeypatch, rtt, expected):
    import dicomnet.dimse.scu as scu

    order: list[str] = []
    send, receive = scu._send_prepared, scu._next_store_response
    monkeypatch.setattr(scu, "_send_prepared", lambda *a, **k: (order.append("send"), send(*a, **k))[1])
    monkeypatch.setattr(scu, "_next_store_response", lambda *a, **k: (order.append("rsp"), receive(*a, **k))[1])
    monkeypatch.setattr(scu, "_WINDOW_BYTES", 1000)
    monkeypatch.setattr(SyncDriver, "path_rtt", lambda self: rtt)
    paths = [data("CT_small.dcm")] * 4
    with serve(Recorder()) as srv, associate(srv, async_operations=8) as assoc:
        assert scu.window_bytes(assoc) == (1000 if rtt is None else 25_000_000)
        assert [st for _, st, _ in assoc.store_many(paths)] == [0] * 4
    assert order == expected


# ------------------------------------------- C-STORE responses sent together
def _pipelined_stores(assoc, count: int, sop_class: str = CT) -> list[tuple[int, float]]:
    """Send ``count`` small C-STORE-RQs (a 32x32 CT) in one write (as a peer
    using the Asynchronous Operations Window may), then read the responses:
    (status, seconds after the write) in the order they came."""
    from dicomnet.dimse.commands import CommandField

    from dicomnet.samples.synthetic import generate

    ds = next(generate(patients=1, studies=1, series=1, instances=1, rows=32, cols=32, seed=3))
    context = next(c for c in assoc.negotiated.contexts.values() if c.abstract_syntax == sop_class)
    body = bytes(encode_dataset(ds, context.transfer_syntax))     # ~3 KB: many arrive in one read
    for i in range(count):
        command = c_store_rq(i + 1, sop_class, f"1.2.826.0.1.3680043.8.498.{i + 1}")
        assoc._conn.send_pdata(context.context_id, True, encode_command(command))
        assoc._conn.send_pdata(context.context_id, False, body)
    sent = time.monotonic()
    assoc._driver.flush()
    got = []
    for i in range(count):
        rsp = assoc._receive_message(10).command
        assert rsp.get("CommandField") == CommandField.C_STORE_RSP
        assert rsp.get("MessageIDBeingRespondedTo") == i + 1
        got.append((rsp.get("Status"), time.monotonic() - sent))
    return got


def test_responses_to_requests_that_came_together_go_out_together(monkeypatch):
    from dicomnet.transport import sync

    writes: list[int] = []
    write_all = sync.SyncDriver._write_all

    def counting(self, buffers):
        if self.conn.role == "acceptor":
            writes.append(len(buffers))
        return write_all(self, buffers)

    monkeypatch.setattr(sync.SyncDriver, "_write_all", counting)
    contexts = [(CT, [EXPLICIT]), "1.2.840.10008.1.1"]
    with serve(Recorder()) as srv, associate(srv, contexts=contexts, async_operations=16) as assoc:
        writes.clear()
        got = _pipelined_stores(assoc, 12)
        assert [status for status, _ in got] == [0] * 12
        assert sum(writes) == 12, writes             # every response once, in order (checked above)
        assert len(writes) < 12                      # but not one write each
        assert assoc.echo() == 0


def test_a_slow_handler_answers_each_store_at_once():
    class Slow(Recorder):
        def on_store(self, ctx, ds):
            time.sleep(0.15)
            return super().on_store(ctx, ds)

    with serve(Slow()) as srv, associate(srv, contexts=[(CT, [EXPLICIT])], async_operations=16) as assoc:
        got = _pipelined_stores(assoc, 3)
    assert [status for status, _ in got] == [0] * 3
    # The first answer leaves when its store is done, not when the queue is empty.
    assert got[0][1] < 0.27, got
