"""The compiled framing: PDUReader, iter_pdvs, pdata_pdvs, fragment, pdata_pdu."""
from __future__ import annotations

import gc
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomnet._codec.pdu import PDUReader, fragment, iter_pdvs, pdata_pdu, pdata_pdvs
from dicomnet.errors import PDUError
from dicomnet.pdu.pdus import PDV

try:
    from tests.pdu import vectors as V
except ImportError:  # pytest run from outside the project root
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pdu"))
    import vectors as V  # type: ignore[no-redef]


def pdata(*pdvs: tuple[int, int, bytes]) -> bytes:
    """A P-DATA-TF PDU from (context id, control header, data) triples."""
    body = b"".join(struct.pack(">LBB", len(d) + 2, c, m) + d for c, m, d in pdvs)
    return struct.pack(">BBL", 4, 0, len(body)) + body


def drain(reader: PDUReader) -> list[tuple[int, bytes]]:
    out = []
    while (item := reader.next_pdu()) is not None:
        out.append((item[0], bytes(item[1])))
    return out


# ------------------------------------------------------------ PDUReader
def test_reader_yields_pdus_fed_byte_by_byte():
    stream = b"".join(V.ALL_PDUS.values())
    reader = PDUReader()
    got = []
    for i in range(len(stream)):
        view = reader.get_buffer(1)
        assert len(view) >= 1 and not view.readonly
        view[0] = stream[i]
        reader.buffer_updated(1)
        got.extend(drain(reader))
    assert got == [(raw[0], raw[6:]) for raw in V.ALL_PDUS.values()]
    assert reader.buffered == 0


def test_reader_incomplete_returns_none_and_keeps_bytes():
    reader = PDUReader()
    reader.feed(V.ASSOCIATE_RJ[:5])
    assert reader.next_pdu() is None
    reader.feed(V.ASSOCIATE_RJ[5:9])
    assert reader.next_pdu() is None and reader.buffered == 9
    reader.feed(V.ASSOCIATE_RJ[9:] + V.RELEASE_RQ)
    assert drain(reader) == [(3, V.ASSOCIATE_RJ[6:]), (5, V.RELEASE_RQ[6:])]


def test_body_is_a_read_only_view():
    reader = PDUReader()
    reader.feed(V.ABORT)
    pdu_type, body = reader.next_pdu()
    assert pdu_type == 7 and isinstance(body, memoryview) and body.readonly
    with pytest.raises(TypeError):
        body[0] = 1


@pytest.mark.parametrize("pdu_type", [0x00, 0x08, 0x10, 0x84, 0xFF])
def test_unknown_pdu_type_is_framed_by_its_length(pdu_type):
    """PS3.8 9.3.1: the receiver acts on an unrecognized PDU (Evt19); the
    reader frames it like any PDU, so the stream after it stays readable."""
    reader = PDUReader()
    reader.feed(bytes((pdu_type, 0, 0, 0, 0, 4)))  # header only, no body yet
    assert reader.next_pdu() is None
    reader.feed(b"abcd" + bytes((5, 0, 0, 0, 0, 4)) + bytes(4))
    pdu_type_, body = reader.next_pdu()
    assert (pdu_type_, bytes(body)) == (pdu_type, b"abcd")
    assert reader.next_pdu()[0] == 5


@pytest.mark.parametrize("pdu_type", [0x00, 0x08, 0xFF])
def test_unknown_pdu_type_over_the_limit_raises_on_header(pdu_type):
    reader = PDUReader(max_association_pdu=1000)
    reader.feed(bytes((pdu_type, 0, 0, 0, 0x03, 0xE9)))  # 1001 bytes announced, none here
    with pytest.raises(PDUError, match="unknown PDU type"):
        reader.next_pdu()
    with pytest.raises(PDUError):
        reader.get_buffer(100)  # nor will it buffer the body


def test_pdata_over_our_maximum_raises_before_the_body():
    reader = PDUReader(max_pdu_length=16384)
    reader.feed(struct.pack(">BBL", 4, 0, 16384) + b"\x00" * 16384)
    assert reader.next_pdu()[0] == 4  # exactly the maximum is fine
    reader.feed(struct.pack(">BBL", 4, 0, 16385))
    with pytest.raises(PDUError, match="exceeds our maximum length 16384"):
        reader.next_pdu()


def test_association_pdu_limit():
    reader = PDUReader(max_association_pdu=1000)
    reader.feed(struct.pack(">BBL", 1, 0, 1001))
    with pytest.raises(PDUError, match="exceeds the limit 1000"):
        reader.next_pdu()
    reader = PDUReader(max_association_pdu=1000)
    reader.feed(struct.pack(">BBL", 2, 0, 1000))
    assert reader.next_pdu() is None  # within the limit, waiting for the body
    unlimited = PDUReader(max_pdu_length=0, max_association_pdu=0)
    unlimited.feed(struct.pack(">BBL", 1, 0, 0xFFFFFFFF))
    assert unlimited.next_pdu() is None


def test_huge_claimed_length_allocates_nothing_up_front():
    reader = PDUReader(max_pdu_length=0)
    reader.feed(struct.pack(">BBL", 4, 0, 0xFFFFFFFF))
    view = reader.get_buffer(-1)
    assert len(view) < 1 << 20  # the window grows with data, not with the claim


def test_buffer_updated_beyond_window_is_refused():
    reader = PDUReader()
    view = reader.get_buffer(10)
    with pytest.raises(ValueError):
        reader.buffer_updated(len(view) + 1)
    with pytest.raises(ValueError):
        reader.buffer_updated(-1)
    reader.buffer_updated(0)
    with pytest.raises(ValueError):  # no window handed out since the last update
        reader.buffer_updated(1)


def test_limits_validated():
    with pytest.raises(ValueError):
        PDUReader(max_pdu_length=-1)
    reader = PDUReader()
    reader.max_pdu_length = 100
    assert reader.max_pdu_length == 100 and reader.max_association_pdu == 1 << 20


def test_held_bodies_survive_buffer_reuse():
    """The ownership rule: a body stays unchanged while it is referenced."""
    reader = PDUReader(max_pdu_length=0)
    held = []
    for i in range(300):  # ~300 * 4 KiB: forces many compactions/new blocks
        payload = bytes([i % 256]) * 4096
        reader.feed(pdata((1, 2, payload)))
        pdu_type, body = reader.next_pdu()
        if i % 3 == 0:
            held.append((i, body))
    for i, body in held:
        assert bytes(body[6:]) == bytes([i % 256]) * 4096


def test_released_bodies_let_the_reader_reuse_its_block():
    reader = PDUReader()
    first = reader.get_buffer(-1)
    base = len(first)
    del first
    for _ in range(200):
        reader.feed(pdata((1, 0, b"x" * 1000)))
        _, body = reader.next_pdu()
        body.release()
    gc.collect()
    # Compacting in place keeps the window from growing without bound.
    assert len(reader.get_buffer(-1)) <= base


@pytest.mark.parametrize("hold_window", [True, False], ids=["window-held", "window-dropped"])
def test_big_pdu_through_small_recv_calls(hold_window):
    # window-dropped exercises growth in place (realloc), window-held the
    # copy into a fresh block.
    payload = bytes(range(256)) * 4000  # ~1 MB
    raw = pdata((3, 2, payload))
    reader = PDUReader()
    pos = 0
    while pos < len(raw):
        view = reader.get_buffer(8192)
        n = min(len(view), 7000, len(raw) - pos)
        view[:n] = raw[pos : pos + n]
        reader.buffer_updated(n)
        if not hold_window:
            del view
        pos += n
        item = reader.next_pdu()
        if pos < len(raw):
            assert item is None
    assert item[0] == 4
    assert iter_pdvs(item[1])[0][3] == payload


def socket_like(reader: PDUReader, stream: bytes, on_window=None, keep_bodies: bool = False) -> list:
    """Deliver ``stream`` as a socket would, every read as large as the
    window allows; ``on_window(view, pdu_left, got)`` sees each window, with
    what is left of the PDU being received when its header is known (else
    None). Returns the first PDV of each PDU: bytes, or the live views with
    ``keep_bodies``."""
    got, pos = [], 0
    while pos < len(stream):
        view = reader.get_buffer(-1)
        before = reader.buffered
        if on_window is not None:
            pdu_left = None
            if before >= 6:  # the header of the PDU being received is known
                pdu_left = 6 + struct.unpack(">L", stream[pos - before + 2:pos - before + 6])[0] - before
            on_window(view, pdu_left, got)
        n = min(len(view), len(stream) - pos)
        view[:n] = stream[pos:pos + n]
        del view
        reader.buffer_updated(n)
        pos += n
        while (item := reader.next_pdu()) is not None:
            data = iter_pdvs(item[1])[0][3]
            got.append(data if keep_bodies else bytes(data))
            del item, data
            assert reader.buffered <= 65536   # what a read took of the next PDU
    return got


def test_window_stops_shortly_after_the_pdu_being_received():
    # Pipelined big PDUs: a read may run at most 64 KiB into the next PDU, so
    # the partial PDU slid to the front of the block stays small.
    payloads = [bytes([i]) * 600_000 for i in range(4)]

    def check(view, pdu_left, got):
        if pdu_left is not None:
            assert len(view) <= max(pdu_left + 65536, 16384)

    stream = b"".join(pdata((1, 0, p)) for p in payloads)
    assert socket_like(PDUReader(max_pdu_length=1 << 20), stream, check) == payloads


def test_a_pipelined_big_pdu_completes_where_its_first_read_put_it():
    # 1 MiB PDUs back to back: once the block has grown to hold one, every
    # window offered while a PDU is under way holds all the rest of it. The
    # reader moves a PDU to the front of its block while only its first bytes
    # are there, instead of sliding most of a megabyte on every other PDU.
    payloads = [bytes([i]) * (1 << 20) for i in range(5)]

    def check(view, pdu_left, got):
        if got and pdu_left is not None:
            assert len(view) >= pdu_left

    stream = b"".join(pdata((1, 0, p)) for p in payloads)
    assert socket_like(PDUReader(max_pdu_length=2 << 20), stream, check) == payloads


def test_a_held_body_does_not_stop_the_next_pdu_moving_to_a_fresh_block():
    payloads = [bytes([i]) * 700_000 for i in range(3)]
    stream = b"".join(pdata((1, 0, p)) for p in payloads)
    held = socket_like(PDUReader(max_pdu_length=1 << 20), stream, keep_bodies=True)   # every body stays alive
    assert [bytes(h) for h in held] == payloads


def test_window_never_allocates_for_a_claimed_length():
    # A 4 GiB length claim with no limit set: the window is bounded by memory
    # already there, not by the claim.
    reader = PDUReader(max_pdu_length=0)
    reader.feed(struct.pack(">BBL", 4, 0, 0xFFFFFFF0))
    assert len(reader.get_buffer(-1)) <= 1 << 20


def test_stale_window_stays_memory_safe():
    reader = PDUReader()
    stale = reader.get_buffer(-1)
    reader.buffer_updated(0)
    reader.feed(pdata((1, 0, b"k" * 200000)))  # grows past the first block
    stale[:] = b"\xee" * len(stale)  # writes into the old block, which is still alive
    assert iter_pdvs(reader.next_pdu()[1])[0][3] == b"k" * 200000


# Streams of plausible frames (right-ish types and lengths, random bodies)
# reach decode_pdu far more often than uniform random bytes.
frames = st.lists(
    st.tuples(st.integers(0, 8), st.binary(max_size=120), st.integers(-2, 2)).map(
        lambda t: struct.pack(">BBL", t[0], 0, max(0, len(t[1]) + t[2])) + t[1]
    ),
    max_size=5,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400) | frames, st.integers(1, 64))
def test_random_bytes_into_reader_only_raise_pdu_error(data, step):
    from dicomnet.pdu import decode_pdu

    reader = PDUReader(max_pdu_length=256, max_association_pdu=256)
    try:
        for i in range(0, len(data), step):
            reader.feed(data[i : i + step])
            while (item := reader.next_pdu()) is not None:
                assert 0 <= item[0] <= 0xFF and len(item[1]) <= 256
                try:
                    decode_pdu(*item)
                except PDUError:
                    pass
    except PDUError:
        pass


# ------------------------------------------------------------ iter_pdvs
def test_iter_pdvs_vector():
    body = V.P_DATA_TF[6:]
    assert [(c, cmd, last, bytes(d)) for c, cmd, last, d in iter_pdvs(body)] == [
        (1, True, True, b"ABCD"),
        (1, False, False, b"xyz"),
    ]


def test_iter_pdvs_views_share_memory():
    body = bytearray(pdata((5, 1, b"hello"))[6:])
    (ctx, is_command, is_last, data), = iter_pdvs(body)
    assert (ctx, is_command, is_last) == (5, True, False)
    body[-1] = ord("!")
    assert bytes(data) == b"hell!"


def test_iter_pdvs_empty_data_and_reserved_bits():
    (pdv,) = iter_pdvs(struct.pack(">LBB", 2, 7, 0xFE))  # bits 2-7 set: not tested
    assert pdv[:3] == (7, False, True) and len(pdv[3]) == 0
    assert iter_pdvs(b"") == []


@pytest.mark.parametrize(
    "body, message",
    [
        (b"\x00\x00\x00", "length field needs 4"),
        (b"\x00\x00\x00\x01\x01", "length 1"),
        (b"\x00\x00\x00\x00", "length 0"),
        (b"\x00\x00\x00\x05\x01\x00ab", "claims 5 bytes, only 4 remain"),
        (b"\xff\xff\xff\xff\x01\x00", "claims 4294967295"),
        (b"\x00\x00\x00\x02\x01\x00\x00\x00", "length field needs 4"),
    ],
)
def test_iter_pdvs_malformed(body, message):
    with pytest.raises(PDUError, match=message):
        iter_pdvs(body)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_iter_pdvs_random_only_raises_pdu_error(body):
    try:
        pdvs = iter_pdvs(body)
    except PDUError:
        return
    assert sum(4 + 2 + len(p[3]) for p in pdvs) == len(body)


# ------------------------------------------------------------ fragment
def test_fragment_layout_by_hand():
    bufs = fragment(3, True, b"abcdefghij", 10)  # 10 - 6 = 4 data bytes per PDU
    assert bufs[0] == b"\x04\x00\x00\x00\x00\x0a" + b"\x00\x00\x00\x06\x03\x01"
    assert bytes(bufs[1]) == b"abcd"
    assert bufs[2] == b"\x04\x00\x00\x00\x00\x0a" + b"\x00\x00\x00\x06\x03\x01"
    assert bytes(bufs[3]) == b"efgh"
    assert bufs[4] == b"\x04\x00\x00\x00\x00\x08" + b"\x00\x00\x00\x04\x03\x03"  # last: bit 1
    assert bytes(bufs[5]) == b"ij"
    assert len(bufs) == 6


def test_fragment_does_not_copy_the_payload():
    data = bytearray(b"z" * 100)
    bufs = fragment(1, False, data, 50)
    views = [b for b in bufs if isinstance(b, memoryview)]
    assert views and all(v.obj is data for v in views)


def test_fragment_empty_data_yields_one_last_pdv():
    assert fragment(1, False, b"", 0) == [b"\x04\x00\x00\x00\x00\x06\x00\x00\x00\x02\x01\x02"]
    assert fragment(9, True, b"", 100) == [b"\x04\x00\x00\x00\x00\x06\x00\x00\x00\x02\x09\x03"]


def test_fragment_unlimited_is_one_pdu():
    bufs = fragment(1, False, b"q" * 100000, 0)
    assert len(bufs) == 2 and struct.unpack(">L", bufs[0][2:6])[0] == 100006


@pytest.mark.parametrize("bad", [1, 6, -1, 1 << 32])
def test_fragment_refuses_unusable_max_length(bad):
    with pytest.raises(PDUError):
        fragment(1, False, b"abc", bad)


def test_fragment_refuses_bad_context_id():
    with pytest.raises(ValueError):
        fragment(256, False, b"abc", 0)


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=3000),
    max_length=st.sampled_from([0, 7, 8, 9, 13, 64, 100, 1000, 4096]) | st.integers(7, 5000),
    context_id=st.integers(0, 255).filter(lambda i: i % 2),
    is_command=st.booleans(),
    step=st.integers(1, 700),
)
def test_fragment_reader_iter_pdvs_reassemble(data, max_length, context_id, is_command, step):
    stream = b"".join(bytes(b) for b in fragment(context_id, is_command, data, max_length))
    reader = PDUReader(max_pdu_length=max_length)
    pdvs = []
    for i in range(0, len(stream), step):
        reader.feed(stream[i : i + step])
        while (item := reader.next_pdu()) is not None:
            assert item[0] == 4
            if max_length:
                assert len(item[1]) <= max_length
            found = iter_pdvs(item[1])
            assert len(found) == 1  # one PDV per PDU
            pdvs.extend(found)
    assert reader.buffered == 0
    assert b"".join(bytes(p[3]) for p in pdvs) == data
    assert all(p[0] == context_id and p[1] == is_command for p in pdvs)
    assert [p[2] for p in pdvs] == [False] * (len(pdvs) - 1) + [True]


# ------------------------------------------------------------ pdata_pdu
def test_pdata_pdu_layout_by_hand():
    assert pdata_pdu(5, True, b"abc") == (b"\x04\x00\x00\x00\x00\x09"      # P-DATA-TF, length 6 + 3
                                          + b"\x00\x00\x00\x05\x05\x03"    # PDV length 2 + 3, ctx 5, cmd+last
                                          + b"abc")
    assert pdata_pdu(1, False, b"") == b"\x04\x00\x00\x00\x00\x06\x00\x00\x00\x02\x01\x02"


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=2000), context_id=st.integers(0, 255), is_command=st.booleans())
def test_pdata_pdu_is_fragment_unlimited_joined(data, context_id, is_command):
    joined = b"".join(bytes(b) for b in fragment(context_id, is_command, data, 0))
    assert pdata_pdu(context_id, is_command, data) == joined
    assert pdata_pdu(context_id, is_command, memoryview(bytearray(data))) == joined


@pytest.mark.parametrize("bad", [-1, 256])
def test_pdata_pdu_refuses_bad_context_id(bad):
    with pytest.raises(ValueError):
        pdata_pdu(bad, True, b"x")


# ------------------------------------------------------------ pdata_pdvs
def test_pdata_pdvs_are_the_pdvs_iter_pdvs_finds():
    body = pdata((1, 3, b"cmd"), (3, 0, b"data"), (1, 2, b""))[6:]
    pdvs = pdata_pdvs(memoryview(body), {1, 3}, PDV)
    assert type(pdvs) is tuple and all(type(p) is PDV for p in pdvs)
    assert pdvs == tuple(PDV(*item) for item in iter_pdvs(body))
    assert [bytes(p.data) for p in pdvs] == [b"cmd", b"data", b""]
    assert all(p.data.obj is not None and p.data.readonly for p in pdvs)


def test_pdata_pdvs_refuses_what_the_upper_layer_must_abort_for():
    with pytest.raises(PDUError, match="holds no PDV"):
        pdata_pdvs(b"", {1}, PDV)
    with pytest.raises(PDUError, match="context 7, which is not accepted"):
        pdata_pdvs(pdata((1, 3, b"a"), (7, 3, b"b"))[6:], {1}, PDV)
    with pytest.raises(PDUError, match="at least 2"):
        pdata_pdvs(b"\x00\x00\x00\x01\x01", {1}, PDV)
