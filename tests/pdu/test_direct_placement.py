"""Big data set PDVs received straight into the data set's buffer
(PDUReader.router, Connection.set_payload_router, MessageAssembler.direct_target)."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomnet._codec.pdu import PDUReader, fragment
from dicomnet.dimse import commands as C
from dicomnet.dimse.assembler import MessageAssembler
from dicomnet.dimse.commands import encode_command
from dicomnet.errors import PDUError
from dicomnet.pdu import events as ev

from .test_connection import CT, Pair, drain

PLACED = 0x184


def pdata(context_id: int, control: int, data: bytes) -> bytes:
    return struct.pack(">BBLLBB", 4, 0, len(data) + 6, len(data) + 2, context_id, control) + data


class Router:
    """Places every offered PDV in a bytearray of its own, or declines."""

    def __init__(self, accept: bool = True):
        self.accept = accept
        self.offers: list[tuple[int, bool, int]] = []
        self.buffers: list[bytearray] = []

    def __call__(self, context_id, is_last, nbytes):
        self.offers.append((context_id, is_last, nbytes))
        if not self.accept:
            return None
        self.buffers.append(bytearray(nbytes))
        return memoryview(self.buffers[-1])


def pump(reader: PDUReader, stream: bytes, chunk: int) -> list:
    """Feed ``stream`` through get_buffer/buffer_updated, at most ``chunk``
    bytes a read, as a socket would; return what next_pdu yields."""
    out, pos = [], 0
    while pos < len(stream):
        window = reader.get_buffer(-1)
        n = min(len(window), chunk, len(stream) - pos)
        window[:n] = stream[pos:pos + n]
        del window
        reader.buffer_updated(n)
        pos += n
        while (item := reader.next_pdu()) is not None:
            out.append(item)
    return out


# ------------------------------------------------------------------ reader
@pytest.mark.parametrize("chunk", [7, 4096, 1 << 20])
def test_reader_places_a_big_data_set_pdv_in_the_routers_buffer(chunk):
    payload = bytes(range(256)) * 400          # 100 KiB
    router = Router()
    reader = PDUReader(max_pdu_length=1 << 20)
    reader.router = router
    items = pump(reader, pdata(3, 0x02, payload), chunk)
    assert router.offers == [(3, True, len(payload))]
    assert len(items) == 1 and items[0][0] == PLACED
    context_id, is_last, placed = items[0][1]
    assert (context_id, is_last) == (3, True)
    assert bytes(placed) == payload
    assert bytes(router.buffers[0]) == payload   # the router's own memory holds it


def test_reader_hands_out_the_routers_memory_as_the_window():
    payload = b"z" * 50_000
    router = Router()
    reader = PDUReader(max_pdu_length=1 << 20)
    reader.router = router
    stream = pdata(1, 0x00, payload)
    reader.feed(stream[:12])
    window = reader.get_buffer(-1)
    assert reader.placing
    assert len(window) == len(payload)
    target = router.buffers[0]
    window[:5] = b"abcde"
    assert target[:5] == b"abcde"                # not a copy: the same bytes


def test_reader_keeps_small_command_and_multi_pdv_pdus():
    router = Router()
    reader = PDUReader(max_pdu_length=1 << 20)
    reader.router = router
    big = b"c" * 40_000
    two = struct.pack(">BBL", 4, 0, 2 * (len(big) + 6)) + b"".join(
        struct.pack(">LBB", len(big) + 2, 1, 0) + big for _ in range(2))
    stream = pdata(1, 0x03, big) + pdata(1, 0x00, b"s" * 1000) + two
    items = pump(reader, stream, 4096)
    assert router.offers == []
    assert [t for t, _ in items] == [4, 4, 4]


def test_reader_copies_what_was_already_read_and_declines_when_little_is_left():
    payload = bytes(range(256)) * 200            # 51,200 bytes
    router = Router()
    reader = PDUReader(max_pdu_length=1 << 20)
    reader.router = router
    stream = pdata(5, 0x00, payload)
    reader.feed(stream[:12 + 20_000])           # 31,200 still to come: placed, the 20,000 copied
    items = pump(reader, stream[12 + 20_000:], 1 << 20)
    assert items[0][0] == PLACED and bytes(items[0][1][2]) == payload
    router2 = Router()
    reader2 = PDUReader(max_pdu_length=1 << 20)
    reader2.router = router2
    reader2.feed(stream[:12 + 40_000])          # 11,200 to come: not worth it
    assert pump(reader2, stream[12 + 40_000:], 1 << 20)[0][0] == 4
    assert router2.offers == []


def test_a_declined_pdv_is_read_as_usual():
    payload = b"d" * 200_000
    router = Router(accept=False)
    reader = PDUReader(max_pdu_length=1 << 20)
    reader.router = router
    items = pump(reader, pdata(1, 0x00, payload) * 2, 1 << 20)
    assert [t for t, _ in items] == [4, 4]
    assert len(router.offers) == 2


def test_a_router_giving_the_wrong_size_is_an_error():
    reader = PDUReader(max_pdu_length=1 << 20)
    reader.router = lambda c, last, n: bytearray(n - 1)
    reader.feed(pdata(1, 0x00, b"x" * 70_000)[:12])
    with pytest.raises(ValueError, match="router"):
        reader.get_buffer(-1)


def test_after_a_placed_pdv_a_read_stops_at_the_next_headers():
    router = Router()
    reader = PDUReader(max_pdu_length=1 << 20)
    reader.router = router
    payloads = [bytes([i]) * 100_000 for i in range(4)]
    stream = b"".join(pdata(1, 0x02 if i == 3 else 0, p) for i, p in enumerate(payloads))
    items = pump(reader, stream, 1 << 22)
    assert [bytes(item[1][2]) for item in items] == payloads
    assert len(router.offers) == 4              # every one placed, none read into the block


def test_an_oversized_pdu_is_refused_before_any_routing():
    router = Router()
    reader = PDUReader(max_pdu_length=65536)
    reader.router = router
    reader.feed(pdata(1, 0x00, b"x" * 70_000)[:12])
    with pytest.raises(PDUError):
        reader.get_buffer(-1)
    assert router.offers == []


# -------------------------------------------------------------- connection
def to_acc(p: Pair, chunk: int = 1 << 20, after_read=None) -> None:
    """Move what the requestor queued into the acceptor as a socket driver
    would: get_buffer(-1), at most ``chunk`` bytes a read; ``after_read()``
    runs after each read and returns True to stop."""
    stream = b"".join(bytes(b) for b in p.req.data_to_send())
    pos = 0
    while pos < len(stream) and p.acc.state not in ("Sta1", "Sta4"):
        window = p.acc.get_buffer(-1)
        n = min(len(window), chunk, len(stream) - pos)
        window[:n] = stream[pos:pos + n]
        del window
        p.acc.buffer_updated(n)
        pos += n
        if after_read is not None and after_read():
            return


def acceptor_association(p: Pair):
    """An Association over the acceptor's Connection (its driver is never used)."""
    from dicomnet.association import Association

    class Driver:
        conn = p.acc
        peer_address = None

    return Association(Driver(), p.acc.negotiated, rq=p.rq, ac=None)  # type: ignore[arg-type]


def established(max_pdu: int = 1 << 20) -> Pair:
    p = Pair(req_max_pdu=max_pdu, acc_max_pdu=max_pdu)
    p.associate()
    return p


def test_connection_routes_only_in_sta6_on_accepted_contexts_with_nothing_untaken():
    p = established()
    router = Router()
    p.acc.set_payload_router(router)
    ct = next(c for c, n in p.acc.negotiated.contexts.items() if n.abstract_syntax == CT)
    payload = b"p" * 200_000
    p.req.send_pdata(ct, False, payload)
    to_acc(p)
    (event,) = drain(p.acc)
    assert isinstance(event, ev.PDataReceived)
    (pdv,) = event.pdvs
    assert (pdv.context_id, pdv.is_command, pdv.is_last) == (ct, False, True)
    assert bytes(pdv.data) == payload and pdv.data.obj is not None
    assert router.offers == [(ct, True, len(payload))]
    # Not counted as handled yet: the next PDV is not offered.
    p.req.send_pdata(ct, False, payload)
    to_acc(p)
    assert router.offers == [(ct, True, len(payload))]
    assert bytes(drain(p.acc)[0].pdvs[0].data) == payload
    p.acc.pdata_taken = p.acc.pdata_events
    p.req.send_pdata(ct, False, payload)
    to_acc(p)
    assert len(router.offers) == 2


def test_connection_does_not_route_an_unaccepted_context_and_aborts_as_before():
    p = established()
    router = Router()
    p.acc.set_payload_router(router)
    p.req._out.extend(fragment(7, False, b"u" * 100_000, 0))
    to_acc(p)
    assert router.offers == []
    assert p.acc.state == "Sta13"
    assert drain(p.acc) == [ev.Abort(2, 6, local=True)]


def test_connection_lost_mid_placement_forgets_the_target():
    p = established()
    router = Router()
    p.acc.set_payload_router(router)
    ct = next(iter(p.acc.negotiated.contexts))
    stream = pdata(ct, 0x00, b"q" * 100_000)
    p.acc.receive_data(stream[:12])
    p.acc.get_buffer(-1)
    assert p.acc._reader.placing
    p.acc.connection_lost()
    assert not p.acc._reader.placing


# --------------------------------------------------------------- assembler
def started(assembler: MessageAssembler, context_id: int = 1) -> None:
    command = encode_command(C.c_store_rq(1, CT, "1.2.3"))
    assert assembler.feed(context_id, True, True, command) is None


def test_assembler_target_is_its_buffer_and_feeding_it_back_copies_nothing():
    asm = MessageAssembler()
    started(asm)
    first = asm.direct_target(1, False, 70_000)
    first[:] = b"a" * 70_000
    assert asm.feed(1, False, False, first) is None
    with pytest.raises(ValueError):
        first[0]                                 # released: the buffer may grow now
    second = asm.direct_target(1, True, 30_000)
    second[:] = b"b" * 30_000
    message = asm.feed(1, False, True, second)
    assert bytes(message.dataset) == b"a" * 70_000 + b"b" * 30_000


def test_assembler_declines_what_it_must_check_itself():
    asm = MessageAssembler(max_dataset_bytes=100_000)
    assert asm.direct_target(1, True, 50_000) is None           # no command yet
    started(asm)
    assert asm.direct_target(3, True, 50_000) is None           # another context
    assert asm.direct_target(1, True, 200_000) is None          # beyond max_dataset_bytes
    view = asm.direct_target(1, False, 50_000)
    assert view is not None
    assert asm.direct_target(1, True, 50_000) is None           # the last one not fed back yet
    asm.set_sink(lambda command: None)
    sinking = MessageAssembler()
    written = []

    class Sink:
        def write(self, data):
            written.append(bytes(data))

    sinking.set_sink(lambda command: Sink())
    started(sinking)
    assert sinking.direct_target(1, True, 50_000) is None       # streamed to a file: written, not placed


def test_mixed_placed_and_copied_pdvs_keep_their_order():
    asm = MessageAssembler()
    started(asm)
    asm.feed(1, False, False, b"1" * 1000)
    view = asm.direct_target(1, False, 20_000)
    view[:] = b"2" * 20_000
    asm.feed(1, False, False, view)
    message = asm.feed(1, False, True, b"3" * 10)
    assert bytes(message.dataset) == b"1" * 1000 + b"2" * 20_000 + b"3" * 10


# --------------------------------------------------------------- end to end
@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(0, 300_000), min_size=1, max_size=4),
       max_pdu=st.sampled_from([16_384, 40_000, 131_072, 1 << 20]),
       chunk=st.integers(1_000, 400_000))
def test_messages_through_connection_and_assembler_are_intact(sizes, max_pdu, chunk):
    p = Pair(req_max_pdu=max_pdu, acc_max_pdu=max_pdu)
    p.associate()
    assoc = acceptor_association(p)
    ct = next(c for c, n in p.acc.negotiated.contexts.items() if n.abstract_syntax == CT)
    payloads = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    for i, payload in enumerate(payloads):
        p.req.send_pdata(ct, True, encode_command(C.c_store_rq(i + 1, CT, f"1.2.{i}")))
        p.req.send_pdata(ct, False, payload)
    got = []

    def take() -> bool:
        while (event := p.acc.next_event()) is not None:
            message = assoc._feed(event)
            del event
            if message is not None:
                got.append(bytes(message.dataset) if message.dataset is not None else b"")
        return False

    to_acc(p, chunk, take)
    assert got == payloads


def test_a_window_kept_past_its_read_costs_reuse_not_correctness():
    asm = MessageAssembler()
    started(asm)
    view = asm.direct_target(1, False, 300_000)   # a mapped buffer with room to spare
    stale = view[10:]                             # like a receive window a driver did not drop
    view[:] = b"k" * 300_000
    asm.feed(1, False, False, view)
    tail = asm.direct_target(1, True, 10)
    tail[:] = b"t" * 10
    message = asm.feed(1, False, True, tail)      # cannot trim under the live view: not an error
    assert bytes(message.dataset) == b"k" * 300_000 + b"t" * 10
    assert asm._spare is None                     # and not reused while the view lives
    del stale


def test_the_router_makes_no_reference_cycle():
    # The association's buffers go with it, not with the next cycle collection.
    import gc
    import weakref

    p = established()
    router = Router()
    p.acc.set_payload_router(router)
    ref = weakref.ref(p.acc)
    enabled = gc.isenabled()
    gc.disable()
    try:
        del p
        assert ref() is None
    finally:
        if enabled:
            gc.enable()


# PDV streams as a peer sends them -- each message a command set, then data
# set fragments -- with now and then one PDV spoilt (a flag flipped, an
# unaccepted context, a data set PDV too many or too few): what a confused or
# hostile peer might send.
def _pdv_stream(draw_messages, mutation):
    shape = []
    for sizes in draw_messages:
        shape.append(["cmd", True, "ct", 0])
        for k, size in enumerate(sizes):
            shape.append(["data", k == len(sizes) - 1, "ct", size])
    if mutation is not None and shape:
        index, how = mutation
        pdv = shape[index % len(shape)]
        if how == "flip-last":
            pdv[1] = not pdv[1]
        elif how == "other-context":
            pdv[2] = "other"
        elif how == "flip-kind":
            pdv[0] = "data" if pdv[0] == "cmd" else "cmd"
        elif how == "drop":
            del shape[index % len(shape)]
    return [tuple(pdv) for pdv in shape]


pdv_streams = st.builds(
    _pdv_stream,
    st.lists(st.lists(st.integers(0, 150_000), min_size=0, max_size=3), min_size=1, max_size=4),
    st.none() | st.tuples(st.integers(0, 20), st.sampled_from(["flip-last", "other-context", "flip-kind", "drop"])))


def _outcome(shape, chunk: int, route: bool) -> list:
    """What the acceptor makes of ``shape``: messages (command field, data set
    bytes) and the first error, in order."""
    p = Pair(req_max_pdu=1 << 20, acc_max_pdu=1 << 20)
    p.associate()
    assoc = acceptor_association(p)
    if not route:
        p.acc.set_payload_router(None)
    contexts = {n.abstract_syntax: c for c, n in p.acc.negotiated.contexts.items()}
    for i, (kind, last, where, size) in enumerate(shape):
        context_id = contexts.get(CT) if where == "ct" else 7
        if kind == "cmd":
            data = encode_command(C.c_store_rq(i + 1, CT, f"1.2.{i}"))
        else:
            data = bytes([i + 1]) * size
        p.req._out.append(struct.pack(">BBLLBB", 4, 0, len(data) + 6, len(data) + 2, context_id,
                                      (1 if kind == "cmd" else 0) | (2 if last else 0)) + data)
    outcome: list = []

    def take() -> bool:
        while (event := p.acc.next_event()) is not None:
            if not isinstance(event, ev.PDataReceived):
                outcome.append(type(event).__name__)
                continue
            try:
                message = assoc._feed(event)
            except PDUError as exc:
                outcome.append(f"PDUError: {exc}")
                return True
            del event
            if message is not None:
                outcome.append((message.command.get("CommandField"),
                                None if message.dataset is None else bytes(message.dataset)))
        return p.acc.state != "Sta6"

    to_acc(p, chunk, take)
    return outcome


@settings(max_examples=60, deadline=None)
@given(shape=pdv_streams, chunk=st.integers(12, 300_000))
def test_placement_changes_nothing_a_peer_can_see(shape, chunk):
    # Differential: the same stream with and without direct placement gives
    # the same messages and the same error at the same point.
    assert _outcome(shape, chunk, route=True) == _outcome(shape, chunk, route=False)


def test_a_huge_claimed_pdv_is_not_placed_so_nothing_is_allocated_for_the_claim():
    # With no maximum PDU length advertised, a peer may claim a PDV of any
    # size: placement would size the data set buffer for the claim before a
    # byte of it came. Beyond 8 MiB it is read the usual way instead.
    p = Pair(req_max_pdu=0, acc_max_pdu=0)
    p.associate()
    assoc = acceptor_association(p)
    ct = next(c for c, n in p.acc.negotiated.contexts.items() if n.abstract_syntax == CT)
    p.req.send_pdata(ct, True, encode_command(C.c_store_rq(1, CT, "1.2.3")))
    p.acc.receive_data(b"".join(bytes(b) for b in p.req.data_to_send()))
    assert assoc._feed(p.acc.next_event()) is None          # the command: a data set is due
    p.acc.receive_data(struct.pack(">BBLLBB", 4, 0, (1 << 30) + 6, (1 << 30) + 2, ct, 0x02) + b"x" * 100)
    p.acc.get_buffer(-1)
    assert not p.acc._reader.placing
    assert assoc._assembler._data is None                   # nothing sized for the 1 GiB claim
    # The same PDV of 4 MiB is placed.
    q = Pair(req_max_pdu=0, acc_max_pdu=0)
    q.associate()
    assoc = acceptor_association(q)
    q.req.send_pdata(ct, True, encode_command(C.c_store_rq(1, CT, "1.2.3")))
    q.acc.receive_data(b"".join(bytes(b) for b in q.req.data_to_send()))
    assert assoc._feed(q.acc.next_event()) is None
    q.acc.receive_data(struct.pack(">BBLLBB", 4, 0, (4 << 20) + 6, (4 << 20) + 2, ct, 0x02) + b"x" * 100)
    q.acc.get_buffer(-1)
    assert q.acc._reader.placing


@pytest.mark.parametrize("chunk", [5, 4096, 1 << 20])
def test_a_dropped_placement_leaves_the_stream_framed(chunk):
    """drop_direct (the association ended mid-PDV, Sta13): the rest of that
    PDV is dropped as it comes, and the PDUs after it are framed as usual."""
    payload = b"p" * 100_000
    stream = pdata(3, 0x02, payload)
    router = Router()
    reader = PDUReader(max_pdu_length=1 << 20)
    reader.router = router
    assert pump(reader, stream[:30_000], chunk) == []
    reader.get_buffer(-1)                  # (where the router is asked, before the next read)
    assert reader.placing
    reader.drop_direct()
    assert not reader.placing
    reader.router = None
    release = bytes((5, 0, 0, 0, 0, 4)) + bytes(4)
    items = pump(reader, stream[30_000:] + release + bytes((8, 0, 0, 0, 0, 2)) + b"xy", chunk)
    assert [(t, bytes(b)) for t, b in items] == [(5, bytes(4)), (8, b"xy")]


def test_detach_moves_the_unread_bytes_to_a_small_reader():
    """Connection.handover's reader: what was received but not returned, the
    same limits, no router; the old reader is left empty."""
    reader = PDUReader(max_pdu_length=4 << 20, max_association_pdu=4096)
    reader.router = Router()
    pump(reader, pdata(1, 0x00, b"q" * 3_000_000), 1 << 20)      # grows the block
    reader.feed(bytes((5, 0, 0, 0, 0, 4)) + b"\0\0")               # half a PDU
    twin = reader.detach()
    assert (twin.buffered, reader.buffered, twin.router) == (8, 0, None)
    assert (twin.max_pdu_length, twin.max_association_pdu) == (4 << 20, 4096)
    twin.feed(b"\0\0")
    assert twin.next_pdu()[0] == 5
    assert reader.next_pdu() is None
