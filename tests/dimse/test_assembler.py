"""MessageAssembler: fragmented messages, PS3.8 interleaving rules, sinks, limits."""
from __future__ import annotations

import io
import mmap
import weakref

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomnet.dimse import assembler as asm_mod
from dicomnet.dimse import commands as C
from dicomnet.dimse.assembler import Message, MessageAssembler
from dicomnet.dimse.commands import encode_command
from dicomnet.errors import PDUError

CT = "1.2.840.10008.5.1.4.1.1.2"
STORE = encode_command(C.c_store_rq(7, CT, "1.2.3.4"))
ECHO = encode_command(C.c_echo_rq(3))


def pieces(data: bytes, cuts: list[int]) -> list[memoryview]:
    """Split ``data`` at the given offsets into memoryviews (like PDVs of a receive buffer)."""
    points = sorted({c for c in cuts if 0 < c < len(data)})
    view = memoryview(data)
    bounds = [0, *points, len(data)]
    return [view[a:b] for a, b in zip(bounds, bounds[1:])]


def feed_all(asm: MessageAssembler, ctx: int, command: bytes, dataset: bytes | None,
             cmd_cuts: list[int] = [], ds_cuts: list[int] = []) -> list[Message]:
    out = []
    parts = pieces(command, cmd_cuts)
    for i, p in enumerate(parts):
        m = asm.feed(ctx, True, i == len(parts) - 1, p)
        if m is not None:
            out.append(m)
    if dataset is not None:
        parts = pieces(dataset, ds_cuts) if dataset else [memoryview(b"")]
        for i, p in enumerate(parts):
            m = asm.feed(ctx, False, i == len(parts) - 1, p)
            if m is not None:
                out.append(m)
    return out


def test_echo_in_one_pdv_completes_at_once() -> None:
    asm = MessageAssembler()
    msg = asm.feed(1, True, True, memoryview(ECHO))
    assert msg is not None and msg.context_id == 1
    assert msg.command == C.c_echo_rq(3) and msg.dataset is None and msg.sink is None
    assert not asm.in_progress


def test_command_in_fragments_waits_for_the_last() -> None:
    asm = MessageAssembler()
    assert asm.feed(5, True, False, ECHO[:10]) is None
    assert asm.in_progress
    assert asm.feed(5, True, False, ECHO[10:11]) is None
    msg = asm.feed(5, True, True, ECHO[11:])
    assert msg is not None and msg.command.message_id == 3


def test_store_with_dataset() -> None:
    asm = MessageAssembler()
    payload = bytes(range(256)) * 10
    assert asm.feed(3, True, True, STORE) is None
    assert asm.in_progress
    assert asm.feed(3, False, False, payload[:1000]) is None
    msg = asm.feed(3, False, True, payload[1000:])
    assert msg is not None and msg.dataset is not None
    assert bytes(msg.dataset) == payload and len(msg.dataset) == len(payload)
    assert msg.command["AffectedSOPInstanceUID"] == "1.2.3.4"


def test_fragment_views_are_copied_not_kept() -> None:
    asm = MessageAssembler()
    asm.feed(1, True, True, STORE)
    receive_buffer = bytearray(b"A" * 100)
    asm.feed(1, False, False, memoryview(receive_buffer)[:50])
    receive_buffer[:] = b"B" * 100                  # the Upper Layer reuses its buffer
    msg = asm.feed(1, False, True, memoryview(receive_buffer)[:50])
    assert msg is not None and bytes(msg.dataset) == b"A" * 50 + b"B" * 50


def test_consecutive_messages_own_their_buffers() -> None:
    asm = MessageAssembler()
    first = feed_all(asm, 1, STORE, b"x" * 70000, ds_cuts=[1, 40000])[0]
    second = feed_all(asm, 1, STORE, b"y" * 10, ds_cuts=[5])[0]
    echo = feed_all(asm, 3, ECHO, None)[0]
    assert bytes(first.dataset) == b"x" * 70000
    assert bytes(second.dataset) == b"y" * 10
    assert echo.dataset is None and echo.context_id == 3


def test_empty_dataset_pdv() -> None:
    asm = MessageAssembler()
    msg = feed_all(asm, 1, STORE, b"")[0]
    assert msg.dataset is not None and len(msg.dataset) == 0


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=0, max_size=3000),
       st.lists(st.integers(0, len(STORE)), max_size=12),
       st.lists(st.integers(0, 3000), max_size=30),
       st.integers(1, 255))
def test_any_fragmentation_reassembles(payload: bytes, cmd_cuts: list[int],
                                       ds_cuts: list[int], ctx: int) -> None:
    asm = MessageAssembler()
    out = feed_all(asm, ctx, STORE, payload, cmd_cuts, ds_cuts)
    out += feed_all(asm, ctx, ECHO, None, cmd_cuts)
    assert len(out) == 2
    assert out[0].command == C.c_store_rq(7, CT, "1.2.3.4") and out[0].context_id == ctx
    assert bytes(out[0].dataset) == payload
    assert out[1].command == C.c_echo_rq(3) and out[1].dataset is None
    assert not asm.in_progress


# ------------------------------------------------------------ violations


def test_dataset_before_command_is_complete() -> None:
    asm = MessageAssembler()
    asm.feed(1, True, False, STORE[:20])
    with pytest.raises(PDUError, match="before the command set is complete"):
        asm.feed(1, False, True, b"data")
    assert not asm.in_progress                     # reset after the violation


def test_dataset_with_no_command_at_all() -> None:
    with pytest.raises(PDUError, match="before any command"):
        MessageAssembler().feed(1, False, True, b"data")


def test_other_context_mid_message() -> None:
    asm = MessageAssembler()
    asm.feed(1, True, False, STORE[:20])
    with pytest.raises(PDUError, match="context 3"):
        asm.feed(3, True, True, STORE[20:])
    asm.feed(1, True, True, STORE)
    with pytest.raises(PDUError, match="context"):
        asm.feed(3, False, True, b"data")


def test_command_fragment_after_the_last() -> None:
    asm = MessageAssembler()
    asm.feed(1, True, True, STORE)
    with pytest.raises(PDUError, match="after the last command fragment"):
        asm.feed(1, True, True, ECHO)


def test_dataset_for_a_command_without_one() -> None:
    asm = MessageAssembler()
    assert asm.feed(1, True, True, ECHO) is not None
    with pytest.raises(PDUError, match="no data set follows"):
        asm.feed(1, False, True, b"data")


def test_undecodable_command_is_a_pdu_error() -> None:
    asm = MessageAssembler()
    with pytest.raises(PDUError, match="undecodable") as info:
        asm.feed(1, True, True, ECHO[:-2])
    assert info.value.__cause__ is not None
    assert asm.feed(1, True, True, ECHO) is not None   # usable again


def test_command_size_limit() -> None:
    asm = MessageAssembler(max_command_bytes=100)
    with pytest.raises(PDUError, match="longer than 100"):
        asm.feed(1, True, True, STORE + b"\0" * 100)
    asm.feed(1, True, False, b"\0" * 60)
    with pytest.raises(PDUError, match="longer than 100"):
        asm.feed(1, True, False, b"\0" * 60)


def test_max_dataset_bytes() -> None:
    asm = MessageAssembler(max_dataset_bytes=1000)
    msg = feed_all(asm, 1, STORE, b"z" * 1000, ds_cuts=[300, 999])[0]
    assert len(msg.dataset) == 1000
    asm.feed(1, True, True, STORE)
    asm.feed(1, False, False, b"z" * 600)
    with pytest.raises(PDUError, match="max_dataset_bytes"):
        asm.feed(1, False, False, b"z" * 401)
    with pytest.raises(PDUError):
        feed_all(asm, 1, STORE, b"z" * 1001)


def test_growth_is_geometric_and_trimmed() -> None:
    asm = MessageAssembler()
    asm.feed(1, True, True, STORE)
    sizes = []
    for _ in range(200):
        asm.feed(1, False, False, b"q" * 4000)
        sizes.append(len(asm._data))
    msg = asm.feed(1, False, True, b"end")
    assert len(set(sizes)) <= 6                     # 64 KiB doubling to 1 MiB: few reallocations
    assert bytes(msg.dataset) == b"q" * 800000 + b"end"
    assert msg.dataset.obj is not None and len(msg.dataset.obj) == 800003   # spare capacity returned


def test_reserve_presizes() -> None:
    asm = MessageAssembler(max_dataset_bytes=10_000)
    asm.feed(1, True, True, STORE)
    asm.reserve(5000)
    assert len(asm._data) == 5000
    with pytest.raises(PDUError):
        asm.reserve(20_000)
    assert not asm.in_progress
    asm.feed(1, True, True, STORE)
    asm.reserve(5000)
    for _ in range(5):
        asm.feed(1, False, False, b"r" * 1000)
    assert len(asm._data) == 5000                   # no growth needed
    msg = asm.feed(1, False, True, b"!")
    assert bytes(msg.dataset) == b"r" * 5000 + b"!"



def test_reserve_takes_over_a_buffer_made_beforehand() -> None:
    asm = MessageAssembler()
    made = asm_mod.new_buffer(4000)
    asm.feed(1, True, True, STORE)
    asm.reserve(3000, made)
    assert asm._data is made                        # taken over, not copied
    asm.feed(1, False, False, b"a" * 2000)
    msg = asm.feed(1, False, True, b"b" * 500)
    assert bytes(msg.dataset) == b"a" * 2000 + b"b" * 500 and msg.dataset.obj is made
    asm.feed(1, True, True, STORE)
    asm.reserve(3000, bytearray(10))                # too small for the size given: a new one
    assert len(asm._data) == 3000

needs_populate = pytest.mark.skipif(not asm_mod._MAP_FLAGS, reason="no MAP_POPULATE on this platform")


@needs_populate
def test_large_dataset_lands_in_an_anonymous_map() -> None:
    asm = MessageAssembler()
    payload = bytes(range(256)) * 2048                 # 512 KiB, above _MAP_MIN
    asm.feed(1, True, True, STORE)
    asm.reserve(len(payload) + 5000)                   # too large a guess: trimmed at the end
    assert isinstance(asm._data, mmap.mmap)
    for view in pieces(payload, [1, 100_000, 300_000]):
        assert asm.feed(1, False, False, view) is None
    msg = asm.feed(1, False, True, b"")
    assert msg is not None and msg.dataset is not None
    assert isinstance(msg.dataset.obj, mmap.mmap) and len(msg.dataset.obj) == len(payload)
    assert bytes(msg.dataset) == payload and not msg.dataset.readonly


@needs_populate
def test_growth_from_bytearray_into_a_map_keeps_the_bytes() -> None:
    asm = MessageAssembler()
    asm.feed(1, True, True, STORE)
    chunk = bytes(range(200)) * 50                     # 10000 bytes per fragment
    for _ in range(60):                                # 64 KiB bytearray, then a map from 256 KiB
        asm.feed(1, False, False, chunk)
    assert isinstance(asm._data, mmap.mmap)
    msg = asm.feed(1, False, True, b"tail")
    assert bytes(msg.dataset) == chunk * 60 + b"tail"
    assert len(msg.dataset.obj) == 600004
    second = feed_all(asm, 1, STORE, b"z" * 10)[0]    # small ones stay bytearrays
    assert isinstance(second.dataset.obj, bytearray) and bytes(second.dataset) == b"z" * 10


@needs_populate
def test_reserved_map_for_an_empty_dataset() -> None:
    asm = MessageAssembler()
    asm.feed(1, True, True, STORE)
    asm.reserve(1 << 20)
    msg = asm.feed(1, False, True, b"")
    assert msg is not None and msg.dataset is not None and len(msg.dataset) == 0


# ------------------------------------------------------------ streaming


def test_sink_receives_the_dataset() -> None:
    asm = MessageAssembler(max_dataset_bytes=10)    # the limit is for memory, not sinks
    seen = []
    files: list[io.BytesIO] = []

    def factory(command: C.Command) -> io.BytesIO | None:
        seen.append(command)
        if command["AffectedSOPInstanceUID"] == "1.2.3.4":
            files.append(io.BytesIO())
            return files[-1]
        return None

    asm.set_sink(factory)
    msg = feed_all(asm, 1, STORE, b"s" * 5000, ds_cuts=[7, 4000])[0]
    assert msg.dataset is None and msg.sink is files[0]
    assert files[0].getvalue() == b"s" * 5000
    assert seen == [C.c_store_rq(7, CT, "1.2.3.4")]
    # The factory declines: the data set stays in memory (and the limit applies).
    other = encode_command(C.c_store_rq(8, CT, "9.9"))
    msg = feed_all(asm, 1, other, b"m" * 10)[0]
    assert msg.sink is None and bytes(msg.dataset) == b"m" * 10
    # No data set: the factory is not asked.
    feed_all(asm, 1, ECHO, None)
    assert len(seen) == 2
    asm.set_sink(None)
    assert feed_all(asm, 1, STORE, b"n")[0].dataset is not None


# ------------------------------------------------------------ with the Upper Layer


def test_messages_through_a_connection_pair() -> None:
    """send_pdata(command) + send_pdata(dataset) on one side, feed() on the other."""
    from dicomnet.pdu import events as ev
    from dicomnet.pdu.connection import Connection
    from dicomnet.pdu.negotiation import AcceptorPolicy, build_associate_rq, negotiate

    verification, implicit = "1.2.840.10008.1.1", "1.2.840.10008.1.2"
    req = Connection("requestor", max_pdu=16384)
    acc = Connection("acceptor", max_pdu=4096)             # forces many PDVs for the data set

    def flush(src: Connection, dst: Connection) -> list[object]:
        data = b"".join(bytes(b) for b in src.data_to_send())
        dst.receive_data(data, now=0.0)
        events = []
        while (event := dst.next_event()) is not None:
            events.append(event)
        return events

    acc.transport_connected(0.0)
    req.request_association(build_associate_rq(
        "SCU", "SCP", [(verification, [implicit]), (CT, [implicit])], max_pdu=16384), 0.0)
    (request,) = flush(req, acc)
    policy = AcceptorPolicy("SCP", supported={verification: (implicit,), CT: (implicit,)},
                            max_pdu=4096)
    acc.accept(negotiate(request.rq, policy))
    flush(acc, req)
    assert req.is_established and acc.is_established

    payload = bytes(range(256)) * 100                      # 25,600 bytes: 7 PDUs at 4 KiB
    req.send_pdata(3, True, encode_command(C.c_store_rq(9, CT, "1.2.3.9")))
    req.send_pdata(3, False, payload)
    req.send_pdata(1, True, encode_command(C.c_echo_rq(10)))
    asm = MessageAssembler()
    messages = []
    events = flush(req, acc)
    assert all(isinstance(e, ev.PDataReceived) for e in events) and len(events) >= 7
    for event in events:
        for pdv in event.pdvs:
            message = asm.feed(pdv.context_id, pdv.is_command, pdv.is_last, pdv.data)
            if message is not None:
                messages.append(message)
    store, echo = messages
    assert store.context_id == 3 and store.command == C.c_store_rq(9, CT, "1.2.3.9")
    assert bytes(store.dataset) == payload
    assert echo.context_id == 1 and echo.command.message_id == 10 and echo.dataset is None


def test_a_dropped_data_set_buffer_is_reused_for_the_next() -> None:
    asm = MessageAssembler()
    first = feed_all(asm, 1, STORE, b"a" * 300_000, ds_cuts=[100_000, 200_000])[0]
    buffer = weakref.ref(first.dataset.obj)            # (a strong reference would prevent the reuse)
    assert bytes(first.dataset) == b"a" * 300_000
    first.dataset = None                               # the receiver is done with it
    second = feed_all(asm, 1, STORE, b"b" * 250_000, ds_cuts=[1000])[0]
    assert second.dataset.obj is buffer()              # no fresh map: the same memory again
    assert bytes(second.dataset) == b"b" * 250_000 and len(second.dataset.obj) == 250_000   # trimmed


def test_a_buffer_still_referenced_is_never_reused() -> None:
    asm = MessageAssembler()
    first = feed_all(asm, 1, STORE, b"a" * 70_000, ds_cuts=[30_000])[0]
    kept = first.dataset[10:20]                        # a slice outlives the message's own view
    first.dataset = None
    second = feed_all(asm, 1, STORE, b"b" * 70_000, ds_cuts=[30_000])[0]
    assert second.dataset.obj is not kept.obj
    assert bytes(kept) == b"a" * 10                    # untouched by the second message
    del kept
    second.dataset = None
    third = feed_all(asm, 1, STORE, b"c" * 5, ds_cuts=[])[0]
    assert bytes(third.dataset) == b"c" * 5
    held = bytes(third.dataset)
    fourth = feed_all(asm, 1, STORE, b"d" * 5, ds_cuts=[])[0]   # third's view is alive: a new buffer
    assert bytes(third.dataset) == held and bytes(fourth.dataset) == b"d" * 5


def test_huge_buffers_are_not_kept_for_reuse() -> None:
    asm = MessageAssembler()
    msg = feed_all(asm, 1, STORE, bytes(asm_mod._SPARE_MAX + 1), ds_cuts=[1 << 20])[0]
    assert asm._spare is None and len(msg.dataset) == asm_mod._SPARE_MAX + 1


def _fragments_of_the_next(asm: MessageAssembler, data: bytes, cut: int) -> tuple[Message, list[int]]:
    """Feed a C-STORE whose data set comes in ``cut``-byte fragments; the
    message and the buffer's capacity after each fragment but the last."""
    asm.feed(1, True, True, STORE)
    capacities = []
    for start in range(0, len(data), cut):
        msg = asm.feed(1, False, start + cut >= len(data), data[start:start + cut])
        if asm._data is not None:
            capacities.append(len(asm._data))
    assert msg is not None
    return msg, capacities


def test_a_kept_data_sets_successor_starts_at_its_size() -> None:
    asm = MessageAssembler()
    first = feed_all(asm, 1, STORE, b"a" * 300_000, ds_cuts=[60_000, 120_000, 180_000, 240_000])[0]
    kept = first.dataset                               # held by the caller: nothing to reuse
    second, capacities = _fragments_of_the_next(asm, b"b" * 300_000, 60_000)
    assert capacities == [300_000] * 4                 # one buffer of the guessed size, never grown
    assert bytes(second.dataset) == b"b" * 300_000 and bytes(kept) == b"a" * 300_000


def test_a_wrong_guess_still_gives_the_exact_data_set() -> None:
    asm = MessageAssembler()
    kept = [feed_all(asm, 1, STORE, b"a" * 300_000, ds_cuts=[60_000])[0].dataset]
    smaller, capacities = _fragments_of_the_next(asm, b"s" * 100_000, 60_000)
    assert capacities[0] == 300_000
    assert bytes(smaller.dataset) == b"s" * 100_000 and len(smaller.dataset.obj) == 100_000   # trimmed
    kept.append(smaller.dataset)
    larger, _ = _fragments_of_the_next(asm, b"L" * 700_000, 60_000)   # guessed 100,000: grows as before
    assert bytes(larger.dataset) == b"L" * 700_000
    assert [bytes(k[:1]) for k in kept] == [b"a", b"s"]


def test_no_guess_far_beyond_the_first_fragment() -> None:
    asm = MessageAssembler()
    kept = feed_all(asm, 1, STORE, b"a" * 300_000, ds_cuts=[60_000])[0].dataset
    _, capacities = _fragments_of_the_next(asm, b"b" * 30_000, 10_000)   # 300,000 > 8 x 10,000
    assert capacities[0] == asm_mod._FIRST_CAPACITY
    assert bytes(kept[:1]) == b"a"
