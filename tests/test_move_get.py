"""C-MOVE and C-GET between our Client and our Servers on loopback (PS3.4 C.4.2, C.4.3)."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from dicomnet.client import Client
from dicomnet.dicom import Dataset, read_dataset, read_file, write_file
from dicomnet.dicom.writer import encode_dataset
from dicomnet.errors import DimseStatusError, QueryError
from dicomnet.samples.archive import Archive
from dicomnet.samples.synthetic import generate
from dicomnet.server import Server

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
VERIFY = "1.2.840.10008.1.1"


@pytest.fixture(scope="module")
def study() -> list[Dataset]:
    return list(generate(patients=1, studies=1, series=2, instances=6, rows=32, cols=48, seed=7))


@pytest.fixture(scope="module")
def mr_study() -> list[Dataset]:
    return list(generate(patients=1, studies=1, series=1, instances=3, rows=16, cols=16, modality="MR", seed=8))


def key(ds: Dataset) -> dict[str, str]:
    return {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": str(ds.StudyInstanceUID)}


class Source:
    """A Q/R SCP over an Archive (or a fixed list)."""

    def __init__(self, instances: list, fixed: bool = False, exc: BaseException | None = None,
                 address: tuple[str, int] | None | str = "table") -> None:
        self.archive = Archive()
        self.fixed = list(instances) if fixed else None
        for item in instances:
            self.archive.add(item if isinstance(item, Dataset) else read_file(item),
                             None if isinstance(item, Dataset) else item)
        self.exc = exc
        self.address = address
        self.contexts: list = []

    def _items(self, query: Dataset) -> list:
        if self.exc is not None:
            raise self.exc
        return self.fixed if self.fixed is not None else self.archive.instances_for(query, "study")

    def on_get(self, ctx, query):
        self.contexts.append(ctx)
        return self._items(query)

    def on_move(self, ctx, query, destination):
        self.contexts.append(ctx)
        items = self._items(query)
        return items if self.address == "table" else (self.address, items)


class Sink:
    def __init__(self, delay: float = 0.0) -> None:
        self.received: list[tuple[object, bytes, Dataset]] = []
        self.delay = delay
        self.lock = threading.Lock()

    def on_store(self, ctx, ds):
        with self.lock:
            self.received.append((ctx, bytes(encode_dataset(ds, ctx.transfer_syntax)), ds))
        if self.delay:
            time.sleep(self.delay)


def by_uid(datasets) -> dict[str, Dataset]:
    return {str(d.SOPInstanceUID): d for d in datasets}


@pytest.fixture()
def servers():
    started: list[Server] = []

    def start(*args, **kw) -> Server:
        server = Server(*args, **kw).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown()


# ------------------------------------------------------------------ C-GET
def test_get_yields_every_instance_with_equal_pixels_and_bytes(servers, study):
    src = servers("SRC", Source(study))
    with Client("ME").associate("127.0.0.1", src.port, "SRC", for_get=True) as assoc:
        result = assoc.get(key(study[0]))
        got = list(result)
        assert result.status == 0x0000 and result.received == len(study)
        assert result.completed == len(study) and result.failed == 0 and result.failed_instances == []
        assert result.progress is not None and result.progress.remaining == 1 and result.remaining == 0
        originals = by_uid(study)
        assert sorted(by_uid(got)) == sorted(originals)
        for ds in got:
            orig = originals[str(ds.SOPInstanceUID)]
            arr = ds.pixel_array
            assert np.array_equal(arr, orig.pixel_array)
            assert arr.base is not None            # a view of the received buffer, not a copy
            assert bytes(encode_dataset(ds, ds.transfer_syntax)) == bytes(encode_dataset(orig, ds.transfer_syntax))
        assert assoc.echo() == 0



def test_get_receives_each_instance_into_a_buffer_made_while_waiting(servers, study, monkeypatch):
    from dicomnet.dimse import retrieve

    made = []

    def tracking(size):
        buf = real(size)
        made.append(buf)
        return buf

    real = retrieve.new_buffer
    monkeypatch.setattr(retrieve, "new_buffer", tracking)
    src = servers("SRC", Source(study[:4], fixed=True))
    with Client("ME").associate("127.0.0.1", src.port, "SRC", for_get=True) as assoc:
        got = list(assoc.get(key(study[0])))
    assert len(got) == 4 and len(made) >= 2
    # Once the caller is seen keeping instances, they land in buffers made
    # after the previous response (same size here).
    for ds in got[2:]:
        assert any(np.shares_memory(ds.pixel_array, np.frombuffer(buf, np.uint8)) for buf in made)
    assert sorted(by_uid(got)) == sorted(by_uid(study[:4]))


def test_get_caller_dropping_each_instance_gets_no_buffer_made_ahead(servers, study, monkeypatch):
    from dicomnet.dimse import retrieve

    made = []
    real = retrieve.new_buffer
    monkeypatch.setattr(retrieve, "new_buffer", lambda size: made.append(size) or real(size))
    src = servers("SRC", Source(study[:4], fixed=True))
    uids, addresses = [], []
    with Client("ME").associate("127.0.0.1", src.port, "SRC", for_get=True) as assoc:
        for ds in assoc.get(key(study[0])):
            uids.append(str(ds.SOPInstanceUID))
            addresses.append(ds.pixel_array.__array_interface__["data"][0])
            del ds                      # nothing of it kept: the assembler reuses its buffer
    assert made == [] and sorted(uids) == sorted(by_uid(study[:4]))
    assert len(set(addresses)) < len(addresses)      # the same memory again


def _trace(monkeypatch, **labels: str) -> list[str]:
    """Record, in order, the calls of ``retrieve_scp`` functions: ``name=label``."""
    from dicomnet.dimse import retrieve_scp

    events: list[str] = []

    def traced(fn, label):
        def call(*args, **kw):
            events.append(label)
            return fn(*args, **kw)
        return call

    for name, label in labels.items():
        monkeypatch.setattr(retrieve_scp, name, traced(getattr(retrieve_scp, name), label))
    return events


def _trace_sub_operations(monkeypatch) -> list[str]:
    """The C-GET SCP's sends ("rq") and awaited responses ("rsp") in order."""
    return _trace(monkeypatch, _send_here="rq", _await_here="rsp")


def test_get_with_an_async_window_sends_ahead_and_keeps_every_count(servers, study, monkeypatch):
    events = _trace_sub_operations(monkeypatch)
    src = servers("SRC", Source(study, fixed=True))
    with Client("ME").associate("127.0.0.1", src.port, "SRC", for_get=True) as assoc:
        assert assoc.negotiated.max_invoked == 1          # we invoke the C-GET only
        result = assoc.get(key(study[0]))
        progress = []
        got = []
        for ds in result:
            got.append(ds)
            progress.append(result.progress)
        assert result.status == 0 and (result.completed, result.failed, result.remaining) == (len(study), 0, 0)
        assert result.progress is not None and result.progress.remaining == 1
        assert assoc.echo() == 0
    # 8 C-STORE-RQs out before the first response is awaited (PS3.7 D.3.3.3), then one per response.
    assert len(study) > 8 and events[:9] == ["rq"] * 8 + ["rsp"]
    assert events.count("rq") == events.count("rsp") == len(study)
    assert [str(d.SOPInstanceUID) for d in got] == [str(d.SOPInstanceUID) for d in study]


@pytest.mark.parametrize("rtt, expected", [
    # 768 KiB of pixels each: two are always allowed out, a third would pass
    # the byte budget -- so the window of 8 runs two ahead, as C-MOVE does ...
    (None, ["rq", "rq", "rsp", "rq", "rsp", "rq", "rsp", "rq", "rsp", "rsp"]),
    # ... unless the path is long (a 20 ms round trip, as the kernel would
    # measure it): then the budget is what the path holds, and all five go out.
    (0.020, ["rq"] * 5 + ["rsp"] * 5),
])
def test_get_window_byte_budget_follows_the_path(servers, monkeypatch, rtt, expected):
    from dicomnet.transport.sync import SyncDriver

    monkeypatch.setattr(SyncDriver, "path_rtt", lambda self: rtt)
    big = list(generate(patients=1, studies=1, series=1, instances=5, rows=512, cols=768, seed=9))
    events = _trace_sub_operations(monkeypatch)
    src = servers("SRC", Source(big, fixed=True))
    with Client("ME").associate("127.0.0.1", src.port, "SRC", for_get=True) as assoc:
        got = list(assoc.get(key(big[0])))
    assert [str(d.SOPInstanceUID) for d in got] == [str(d.SOPInstanceUID) for d in big]
    assert events == expected


def test_get_without_an_async_window_is_one_sub_operation_at_a_time(servers, study, monkeypatch):
    from dicomnet.dimse.retrieve import retrieve_contexts

    events = _trace_sub_operations(monkeypatch)
    src = servers("SRC", Source(study[:3], fixed=True))
    contexts, roles = retrieve_contexts([CT])
    with Client("ME").associate("127.0.0.1", src.port, "SRC", contexts=contexts, role_selections=roles) as assoc:
        got = list(assoc.get(key(study[0])))
    assert len(got) == 3 and events == ["rq", "rsp"] * 3

def test_get_files_sent_from_disk_arrive_byte_for_byte(servers, study, tmp_path):
    paths = []
    for ds in study[:4]:
        path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
        write_file(path, ds, IMPLICIT)
        paths.append(path)
    src = servers("SRC", Source([str(p) for p in paths], fixed=True))
    contexts = [STUDY_GET, (CT, [IMPLICIT])]
    with Client("ME").associate("127.0.0.1", src.port, "SRC", contexts=contexts, for_get=True) as assoc:
        got = list(assoc.get(key(study[0])))
    assert len(got) == 4
    for ds, path in zip(got, paths):
        on_disk = read_file(path)
        assert ds.transfer_syntax == IMPLICIT
        assert bytes(encode_dataset(ds, IMPLICIT)) == bytes(encode_dataset(on_disk, IMPLICIT))


def _files_of_falling_size(tmp_path: Path) -> list[Path]:
    """Instances whose files shrink one after the other (the SCP reads them
    into one reused buffer: a stale tail of the previous file must never go out)."""
    paths = []
    sizes = [(96, 80), (64, 64), (40, 24), (8, 8), (72, 56)]
    for n, ds in enumerate(generate(patients=1, studies=1, series=1, instances=len(sizes), rows=1, cols=1, seed=11)):
        rows, cols = sizes[n]
        ds.Rows, ds.Columns = rows, cols
        ds.set("PixelData", (np.arange(rows * cols, dtype=np.uint16) * (n + 3)).tobytes(), "OW")
        path = tmp_path / f"{n}.dcm"
        write_file(path, ds, EXPLICIT)
        paths.append(path)
    return paths


def _dataset_bytes(path: Path) -> bytes:
    """The data set part of a Part 10 file (after the File Meta group)."""
    ds = read_file(path)
    return bytes(encode_dataset(ds, EXPLICIT))


def test_get_and_move_of_files_of_changing_size_arrive_byte_for_byte(servers, tmp_path):
    paths = _files_of_falling_size(tmp_path)
    first = read_file(paths[0])
    sink = Sink()
    dest = servers("DEST", sink)
    src = servers("SRC", Source([str(p) for p in paths], fixed=True),
                  destinations={"DEST": ("127.0.0.1", dest.port)})
    contexts = [STUDY_GET, STUDY_MOVE, (CT, [EXPLICIT])]
    with Client("ME").associate("127.0.0.1", src.port, "SRC", contexts=contexts, for_get=True) as assoc:
        got = [bytes(encode_dataset(ds, EXPLICIT)) for ds in assoc.get(key(first))]
        moved = assoc.move(key(first), "DEST")
        list(moved)
        assert moved.status == 0 and moved.completed == len(paths)
    expected = [_dataset_bytes(p) for p in paths]
    assert got == expected
    assert sorted(raw for _, raw, _ in sink.received) == sorted(expected)


@pytest.mark.parametrize("store_to", [False, True], ids=["memory", "files"])
@pytest.mark.parametrize("debug", [False, True], ids=["lane", "general"])
def test_get_through_the_lane_or_the_general_path_lands_byte_for_byte(servers, tmp_path, caplog, store_to, debug):
    """A C-GET's responses are read through the compiled lane, or (with DEBUG
    logging, which the lane leaves to the general path) the Python layers:
    either way every instance -- held in memory, or streamed to its file --
    is the data set sent, byte for byte. PDUs of 64 KiB, instances of 0.8 KB
    to 300 KB: most of their PDVs are received straight into the data set's
    buffer, some are too small for that."""
    import logging

    if debug:
        caplog.set_level(logging.DEBUG, logger="dicomnet")
    paths = []
    for n, ds in enumerate(generate(patients=1, studies=1, series=1, instances=5, rows=1, cols=1, seed=12)):
        rows, cols = [(256, 256), (300, 200), (64, 64), (512, 300), (20, 20)][n]
        ds.Rows, ds.Columns = rows, cols
        ds.set("PixelData", (np.arange(rows * cols, dtype=np.uint16) * (n + 5)).tobytes(), "OW")
        paths.append(tmp_path / f"{n}.dcm")
        write_file(paths[-1], ds, EXPLICIT)
    src = servers("SRC", Source([str(p) for p in paths], fixed=True))
    contexts = [STUDY_GET, (CT, [EXPLICIT]), VERIFY]
    out = tmp_path / "out"
    with Client("ME", max_pdu=65536).associate("127.0.0.1", src.port, "SRC", contexts=contexts,
                                               for_get=True) as assoc:
        result = assoc.get(key(read_file(paths[0])), store_to=out if store_to else None)
        got = [bytes(encode_dataset(read_file(item) if store_to else item, EXPLICIT)) for item in result]
        assert result.status == 0 and result.completed == len(paths)
        assert assoc.echo() == 0
        lane = assoc._lane
    assert got == [_dataset_bytes(p) for p in paths]
    if os.name == "posix":
        # Without DEBUG, at least every PDU of the sub-operations: 5 command
        # sets and 12 data set PDUs (3 + 2 + 1 + 5 + 1), then the C-GET-RSPs.
        assert (lane.pdus == 0) if debug else (lane.pdus >= 17), lane.pdus
    if store_to:
        assert sorted(f.name for f in out.iterdir()) == sorted(f"{read_file(p).SOPInstanceUID}.dcm" for p in paths)


def test_get_store_to_streams_files(servers, study, tmp_path):
    src = servers("SRC", Source(study))
    out = tmp_path / "out"
    with Client("ME").associate("127.0.0.1", src.port, "SRC", for_get=True) as assoc:
        paths = list(assoc.get(key(study[0]), store_to=out))
        assert assoc.echo() == 0
    assert len(paths) == len(study) and all(Path(p).parent == out for p in paths)
    originals = by_uid(study)
    for p in paths:
        ds = read_file(p)
        assert ds.file_meta.get("SourceApplicationEntityTitle") == "SRC"
        assert np.array_equal(ds.pixel_array, originals[str(ds.SOPInstanceUID)].pixel_array)
    assert sorted(Path(p).name for p in paths) == sorted(f"{u}.dcm" for u in originals)


def test_get_missing_context_counts_failed_suboperations(servers, study, mr_study):
    src = servers("SRC", Source(study[:3] + mr_study, fixed=True))
    contexts = [VERIFY, STUDY_GET, CT]      # no MR storage context: MR sub-operations fail
    with Client("ME").associate("127.0.0.1", src.port, "SRC", contexts=contexts, for_get=True) as assoc:
        result = assoc.get(key(study[0]))
        got = list(result)
        assert result.status == 0xB000
        assert (result.completed, result.failed, result.warning) == (3, 3, 0)
        assert sorted(result.failed_instances) == sorted(by_uid(mr_study))
        assert sorted(by_uid(got)) == sorted(by_uid(study[:3]))
        assert assoc.echo() == 0


def test_get_all_failed_is_a702_and_raises(servers, mr_study):
    src = servers("SRC", Source(mr_study, fixed=True))
    with Client("ME").associate("127.0.0.1", src.port, "SRC", contexts=[VERIFY, STUDY_GET, CT], for_get=True) as assoc:
        result = assoc.get(key(mr_study[0]))
        with pytest.raises(DimseStatusError) as info:
            list(result)
        assert info.value.status == 0xA702 and result.failed == 3
        assert sorted(result.failed_instances) == sorted(by_uid(mr_study))
        assert assoc.echo() == 0


def test_get_without_scp_role_fails_every_suboperation(servers, study):
    src = servers("SRC", Source(study[:2], fixed=True))
    # Storage context proposed, but no role selection: we are only its SCU.
    with Client("ME").associate("127.0.0.1", src.port, "SRC", contexts=[STUDY_GET, CT]) as assoc:
        result = assoc.get(key(study[0]))
        with pytest.raises(DimseStatusError):
            result.result()
        assert result.status == 0xA702 and result.failed == 2


def test_get_cancel_midway_then_association_still_works(servers, study):
    src = servers("SRC", Source(study))
    with Client("ME").associate("127.0.0.1", src.port, "SRC", for_get=True) as assoc:
        result = assoc.get(key(study[0]))
        for n, _ in enumerate(result, 1):
            if n == 2:
                break
        assert result.done and result.cancelled
        assert result.status == 0xFE00
        assert result.remaining is not None and result.remaining > 0
        assert result.completed + result.remaining + result.failed == len(study)
        assert src.handler.contexts[-1].cancelled
        # The next operation on the same association works.
        again = list(assoc.get(key(study[0])))
        assert len(again) == len(study)


def test_get_handler_raising_is_a_failure_with_comment(servers, study):
    src = servers("SRC", Source(study, exc=RuntimeError("archive offline")))
    with Client("ME").associate("127.0.0.1", src.port, "SRC", for_get=True) as assoc:
        with pytest.raises(DimseStatusError) as info:
            list(assoc.get(key(study[0])))
        assert info.value.status == 0xC000 and "archive offline" in info.value.comment
        assert assoc.echo() == 0


def test_get_query_error_keeps_its_status(servers, study):
    src = servers("SRC", Source(study, exc=QueryError("no level", 0xA900)))
    with Client("ME").associate("127.0.0.1", src.port, "SRC", for_get=True) as assoc:
        with pytest.raises(DimseStatusError) as info:
            assoc.get(key(study[0])).result()
        assert info.value.status == 0xA900


def test_no_handler_is_0122(servers, study):
    src = servers("SRC", object())
    with Client("ME").associate("127.0.0.1", src.port, "SRC", for_get=True) as assoc:
        with pytest.raises(DimseStatusError) as info:
            list(assoc.get(key(study[0])))
        assert info.value.status == 0x0122
        with pytest.raises(DimseStatusError) as info:
            list(assoc.move(key(study[0]), "DEST"))
        assert info.value.status == 0x0122


def test_get_empty_match_is_success(servers, study):
    src = servers("SRC", Source(study))
    with Client("ME").associate("127.0.0.1", src.port, "SRC", for_get=True) as assoc:
        result = assoc.get({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "1.2.3.4"})
        assert list(result) == [] and result.status == 0 and result.completed == 0


# ----------------------------------------------------------------- C-MOVE
def test_move_to_second_server_with_progress(servers, study):
    sink = Sink()
    dest = servers("DEST", sink)
    src = servers("SRC", Source(study), destinations={"DEST": ("127.0.0.1", dest.port)})
    with Client("ME").associate("127.0.0.1", src.port, "SRC") as assoc:
        result = assoc.move(key(study[0]), "DEST")
        progress = list(result)
        assert result.status == 0 and result.completed == len(study) and result.failed == 0
        assert result.failed_instances == []
        assert [p.remaining for p in progress] == list(range(len(study) - 1, 0, -1))
        assert all(p.status == 0xFF00 for p in progress)
        assert [p.completed for p in progress] == list(range(1, len(study)))
        assert assoc.echo() == 0
    originals = by_uid(study)
    assert sorted(by_uid(ds for _, _, ds in sink.received)) == sorted(originals)
    for ctx, raw, ds in sink.received:
        orig = originals[str(ds.SOPInstanceUID)]
        assert raw == bytes(encode_dataset(orig, ctx.transfer_syntax))
        assert np.array_equal(ds.pixel_array, orig.pixel_array)
        assert ctx.calling_ae == "SRC"
        assert ctx.command.get("MoveOriginatorApplicationEntityTitle") == "ME"
        assert ctx.command.get("MoveOriginatorMessageID") == result.message_id


def test_move_handler_gives_the_address(servers, study):
    sink = Sink()
    dest = servers("DEST", sink)
    src = servers("SRC", Source(study[:3], address=("127.0.0.1", dest.port)))
    with Client("ME").associate("127.0.0.1", src.port, "SRC") as assoc:
        result = assoc.move(key(study[0]), "DEST")
        assert result.result() == 0
    assert len(sink.received) == 3


@pytest.mark.parametrize("address", ["table", None])
def test_move_unknown_destination_is_a801(servers, study, address):
    src = servers("SRC", Source(study, address=address))
    with Client("ME").associate("127.0.0.1", src.port, "SRC") as assoc:
        result = assoc.move(key(study[0]), "NOWHERE")
        with pytest.raises(DimseStatusError) as info:
            list(result)
        assert info.value.status == 0xA801 and result.status == 0xA801
        assert assoc.echo() == 0


def test_move_destination_refusing_some_classes(servers, study, mr_study):
    sink = Sink()
    dest = servers("DEST", sink, contexts=[CT])
    src = servers("SRC", Source(study[:2] + mr_study, fixed=True), destinations={"DEST": ("127.0.0.1", dest.port)})
    with Client("ME").associate("127.0.0.1", src.port, "SRC") as assoc:
        result = assoc.move(key(study[0]), "DEST")
        list(result)
        assert result.status == 0xB000 and (result.completed, result.failed) == (2, 3)
        assert sorted(result.failed_instances) == sorted(by_uid(mr_study))
    assert len(sink.received) == 2


def test_move_destination_down_fails_all(servers, study):
    dead = Server("DEAD").start()
    port = dead.port
    dead.shutdown()
    src = servers("SRC", Source(study[:3], fixed=True), destinations={"DEST": ("127.0.0.1", port)})
    with Client("ME").associate("127.0.0.1", src.port, "SRC") as assoc:
        result = assoc.move(key(study[0]), "DEST")
        with pytest.raises(DimseStatusError) as info:
            list(result)
        assert info.value.status == 0xA702 and result.failed == 3 and len(result.failed_instances) == 3
        assert assoc.echo() == 0


class Picky:
    """A C-STORE SCP that fails the second instance of ``study`` and warns on the third."""

    def __init__(self, study: list[Dataset]) -> None:
        self.fail, self.warn = str(study[1].SOPInstanceUID), str(study[2].SOPInstanceUID)

    def on_store(self, ctx, ds):
        uid = str(ds.SOPInstanceUID)
        return 0xA700 if uid == self.fail else (0xB000 if uid == self.warn else 0)


@pytest.mark.parametrize("count, window", [(4, 1), (5, 0)], ids=["one-at-a-time", "window"])
def test_move_destination_store_failures_are_counted(servers, study, count, window):
    # window 0: an Asynchronous Operations Window with no limit (every C-STORE out at once).
    dest = servers("DEST", Picky(study))
    src = servers("SRC", Source(study[:count], fixed=True), destinations={"DEST": ("127.0.0.1", dest.port)},
                  move_async_operations=window)
    with Client("ME").associate("127.0.0.1", src.port, "SRC") as assoc:
        result = assoc.move(key(study[0]), "DEST")
        list(result)
    assert result.status == 0xB000
    assert (result.completed, result.failed, result.warning) == (count - 2, 1, 1)
    assert result.failed_instances == [str(study[1].SOPInstanceUID)]


def test_move_cancel_midway(servers, study):
    sink = Sink(delay=0.05)
    dest = servers("DEST", sink)
    src = servers("SRC", Source(study), destinations={"DEST": ("127.0.0.1", dest.port)})
    with Client("ME").associate("127.0.0.1", src.port, "SRC") as assoc:
        result = assoc.move(key(study[0]), "DEST")
        first = next(iter(result))
        assert first.completed == 1
        assert result.cancel() == 0xFE00
        assert result.remaining and result.remaining > 0
        assert result.completed + result.remaining + result.failed == len(study)
        assert len(sink.received) < len(study)
        assert assoc.echo() == 0
        # A find/move right after works on the same association.
        assert assoc.move(key(study[0]), "DEST").result() == 0


def test_move_handler_raising(servers, study):
    src = servers("SRC", Source(study, exc=ValueError("bad query")), destinations={"DEST": ("127.0.0.1", 1)})
    with Client("ME").associate("127.0.0.1", src.port, "SRC") as assoc:
        with pytest.raises(DimseStatusError) as info:
            assoc.move(key(study[0]), "DEST").result()
        assert info.value.status == 0xC000 and "bad query" in info.value.comment
        assert assoc.echo() == 0


def test_move_patient_model_and_priority(servers, study):
    sink = Sink()
    dest = servers("DEST", sink)
    src = servers("SRC", Source(study[:2], fixed=True), destinations={"DEST": ("127.0.0.1", dest.port)})
    with Client("ME").associate("127.0.0.1", src.port, "SRC") as assoc:
        result = assoc.move({"QueryRetrieveLevel": "PATIENT", "PatientID": str(study[0].PatientID)}, "DEST",
                            model="patient")
        assert result.result() == 0
    assert src.handler.contexts[-1].abstract_syntax == "1.2.840.10008.5.1.4.1.2.1.2"
    assert len(sink.received) == 2


def test_get_store_to_callable_failure_is_a_failed_suboperation(servers, study, tmp_path):
    src = servers("SRC", Source(study[:4], fixed=True))
    bad = str(study[2].SOPInstanceUID)

    def name(command):
        uid = command["AffectedSOPInstanceUID"]
        if uid == bad:
            raise RuntimeError("no room for this one")
        return tmp_path / f"x-{uid}.dcm"

    with Client("ME").associate("127.0.0.1", src.port, "SRC", for_get=True) as assoc:
        result = assoc.get(key(study[0]), store_to=name)
        paths = list(result)
        assert result.status == 0xB000 and result.failed_instances == [bad]
        assert (result.completed, result.failed) == (3, 1)
        assert sorted(Path(p).name for p in paths) == sorted(f"x-{d.SOPInstanceUID}.dcm" for d in study[:4]
                                                            if str(d.SOPInstanceUID) != bad)
        # Without store_to on the same association, instances come back in memory again.
        assert all(isinstance(d, Dataset) for d in assoc.get(key(study[0])))


def test_move_loop_left_early_cancels_and_next_request_runs(servers, study):
    sink = Sink(delay=0.05)
    dest = servers("DEST", sink)
    src = servers("SRC", Source(study), destinations={"DEST": ("127.0.0.1", dest.port)})
    with Client("ME").associate("127.0.0.1", src.port, "SRC", for_get=True) as assoc:
        result = assoc.move(key(study[0]), "DEST")
        for progress in result:
            break
        assert result.done and result.status == 0xFE00 and result.remaining > 0
        # A C-GET that is left unfinished is cancelled by the next request.
        pending = assoc.get(key(study[0]))
        it = iter(pending)
        next(it)
        assert assoc.echo() == 0             # cancels and drains the open C-GET first
        assert pending.done and pending.status in (0xFE00, 0x0000)
        assert assoc.move(key(study[0]), "DEST").result() == 0


def test_get_store_to_never_writes_outside_the_folder(servers, study, tmp_path):
    evil = read_dataset(bytes(encode_dataset(study[0], EXPLICIT)), transfer_syntax=EXPLICIT)
    evil.SOPInstanceUID = "../../escaped"
    src = servers("SRC", Source([evil], fixed=True))
    out = tmp_path / "deep" / "out"
    with Client("ME").associate("127.0.0.1", src.port, "SRC", for_get=True) as assoc:
        result = assoc.get(key(study[0]), store_to=out)
        [path] = list(result)
        assert assoc._assembler._sink_factory is None       # the sink is gone with the operation
    assert Path(path).parent == out and Path(path).name.startswith("instance-")
    assert not (tmp_path / "escaped.dcm").exists()
    assert read_file(path).SOPInstanceUID == "../../escaped"


SC = "1.2.840.10008.5.1.4.1.1.7"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
RLE = "1.2.840.10008.1.2.5"


def _testfile(name: str) -> str:
    data = pytest.importorskip("pydicom.data")
    path = data.get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} not available offline")
    return str(path)


def test_move_compressed_files_in_their_own_syntax(servers):
    jpeg, rle = _testfile("JPEG-lossy.dcm"), _testfile("SC_rgb_rle.dcm")
    sink = Sink()
    dest = servers("DEST", sink, contexts={SC: [EXPLICIT, JPEG_EXTENDED, RLE]})
    plain = servers("PLAIN", Sink())                      # uncompressed only: both fail
    src = servers("SRC", Source([jpeg, rle], fixed=True),
                  destinations={"DEST": ("127.0.0.1", dest.port), "PLAIN": ("127.0.0.1", plain.port)})
    with Client("ME").associate("127.0.0.1", src.port, "SRC") as assoc:
        assert assoc.move(key(read_file(jpeg)), "DEST").result() == 0
        result = assoc.move(key(read_file(jpeg)), "PLAIN")
        with pytest.raises(DimseStatusError):
            result.result()
        assert result.status == 0xA702 and result.failed == 2
    got = {ctx.transfer_syntax: raw for ctx, raw, _ in sink.received}
    assert sorted(got) == sorted([JPEG_EXTENDED, RLE])
    for path, ts in ((jpeg, JPEG_EXTENDED), (rle, RLE)):
        assert got[ts] == bytes(encode_dataset(read_file(path), ts))


def test_get_compressed_with_the_requested_syntaxes(servers):
    from dicomnet.dimse.retrieve import retrieve_contexts

    jpeg = _testfile("JPEG-lossy.dcm")
    src = servers("SRC", Source([jpeg], fixed=True), contexts={STUDY_GET: [EXPLICIT], SC: [JPEG_EXTENDED, EXPLICIT]})
    contexts, roles = retrieve_contexts([SC], transfer_syntaxes=[JPEG_EXTENDED, EXPLICIT], models=["study"])
    with Client("ME").associate("127.0.0.1", src.port, "SRC", contexts=contexts, role_selections=roles) as assoc:
        [ds] = list(assoc.get(key(read_file(jpeg))))
    assert ds.transfer_syntax == JPEG_EXTENDED
    assert bytes(encode_dataset(ds, JPEG_EXTENDED)) == bytes(encode_dataset(read_file(jpeg), JPEG_EXTENDED))


# ------------------------------------------- C-MOVE with an async window
def _trace_move(monkeypatch) -> list[str]:
    """The C-MOVE SCP's C-STORE-RQs ("rq") and counted results ("done") in order."""
    return _trace(monkeypatch, c_store_rq="rq", _move_counted="done")


def test_move_with_an_async_window_sends_ahead_and_counts_every_result(servers, study, monkeypatch):
    events = _trace_move(monkeypatch)
    sink = Sink()
    dest = servers("DEST", sink)
    src = servers("SRC", Source(study), destinations={"DEST": ("127.0.0.1", dest.port)}, move_async_operations=4)
    with Client("ME").associate("127.0.0.1", src.port, "SRC") as assoc:
        result = assoc.move(key(study[0]), "DEST")
        progress = list(result)
        assert result.status == 0 and (result.completed, result.failed, result.remaining) == (len(study), 0, 0)
        assert progress and progress[-1].completed < len(study)
        assert assoc.echo() == 0
    # Four C-STORE-RQs out before the first result, then one more per result.
    assert len(study) > 4 and events[:5] == ["rq"] * 4 + ["done"]
    assert events.count("rq") == events.count("done") == len(study)
    originals = by_uid(study)
    assert sorted(by_uid(ds for _, _, ds in sink.received)) == sorted(originals)
    for ctx, raw, ds in sink.received:
        assert raw == bytes(encode_dataset(originals[str(ds.SOPInstanceUID)], ctx.transfer_syntax))


@pytest.mark.parametrize("rtt, expected", [
    (None, ["rq", "rq", "done", "rq", "done", "rq", "done", "rq", "done", "done"]),   # two ahead (1 MiB)
    (0.020, ["rq"] * 5 + ["done"] * 5),                                            # what a 20 ms path holds
])
def test_move_window_byte_budget_follows_the_path(servers, monkeypatch, rtt, expected):
    from dicomnet.transport.sync import SyncDriver

    monkeypatch.setattr(SyncDriver, "path_rtt", lambda self: rtt)
    big = list(generate(patients=1, studies=1, series=1, instances=5, rows=512, cols=768, seed=9))  # 768 KiB each
    events = _trace_move(monkeypatch)
    dest = servers("DEST", Sink())
    src = servers("SRC", Source(big), destinations={"DEST": ("127.0.0.1", dest.port)}, move_async_operations=8)
    with Client("ME").associate("127.0.0.1", src.port, "SRC") as assoc:
        assert assoc.move(key(big[0]), "DEST").result() == 0
    assert events == expected


def test_move_without_the_option_is_one_at_a_time(servers, study, monkeypatch):
    events = _trace_move(monkeypatch)
    dest = servers("DEST", Sink())
    src = servers("SRC", Source(study[:3]), destinations={"DEST": ("127.0.0.1", dest.port)})
    with Client("ME").associate("127.0.0.1", src.port, "SRC") as assoc:
        assert assoc.move(key(study[0]), "DEST").result() == 0
    assert events == ["rq", "done"] * 3


def test_move_with_a_window_cancel_answers_what_is_out(servers, study):
    sink = Sink(delay=0.05)
    dest = servers("DEST", sink)
    src = servers("SRC", Source(study), destinations={"DEST": ("127.0.0.1", dest.port)}, move_async_operations=3)
    with Client("ME").associate("127.0.0.1", src.port, "SRC") as assoc:
        result = assoc.move(key(study[0]), "DEST")
        next(iter(result))
        assert result.cancel() == 0xFE00
        assert result.remaining and result.remaining > 0
        assert result.completed + result.remaining + result.failed == len(study)
        assert result.completed == len(sink.received) < len(study)
        assert assoc.echo() == 0


def test_move_async_operations_is_checked():
    with pytest.raises(ValueError, match="move_async_operations"):
        Server("SRC", move_async_operations=-1)
