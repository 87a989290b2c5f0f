"""Limits, proven over real sockets against a running Server.

Every hostile input gets an A-ASSOCIATE-RJ or A-ABORT with the reason PS3.8
prescribes (or, for bytes that never frame a PDU, a close within ARTIM), the
connection is closed, nothing is allocated because a length field says so, and
the Server then still answers a C-ECHO from another client.
"""
from __future__ import annotations

import logging
import os
import random
import socket
import struct
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import (
    CT,
    EXPLICIT,
    VERIFICATION,
    Answer,
    associate_rq_bytes,
    converse,
    echo_ok,
    pdu,
    raw_rq_with_contexts,
    record,
    rss_bytes,
)

PROVIDER = 2
ABORT_UNRECOGNIZED_PDU = 1
ABORT_UNEXPECTED_PDU = 2
ABORT_INVALID_PARAMETER = 6
# Before the association is established (Sta2) PS3.8 Table 9-10 answers an
# unreadable PDU with AA-1: an A-ABORT whose source is the service-user and
# whose reason is 0 (PS3.8 9.3.8). Once established (Sta6) it is AA-8: source
# service-provider, reason from Table 9-26.
STA2_ABORT = (0, 0)
CORPUS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fuzz", "corpus", "pdu")


def established(port: int) -> socket.socket:
    """A raw socket with an association accepted by the server (Sta6 on its side)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5.0)
    sock.sendall(associate_rq_bytes(contexts=[(VERIFICATION, (EXPLICIT,))], max_pdu=16384))
    header = _recv_exact(sock, 6)
    assert header[0] == 2, f"expected A-ASSOCIATE-AC, got PDU type {header[0]}"
    _recv_exact(sock, struct.unpack(">L", header[2:])[0])
    return sock


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        got = sock.recv(n - len(data))
        if not got:
            raise ConnectionError("closed")
        data += got
    return data


def read_until_closed(sock: socket.socket, wait: float = 5.0) -> Answer:
    answer = Answer()
    start = time.monotonic()
    data = b""
    sock.settimeout(wait)
    try:
        while True:
            got = sock.recv(65536)
            if not got:
                answer.closed = True
                break
            data += got
    except socket.timeout:
        pass
    except ConnectionResetError:
        answer.closed = answer.reset = True
    answer.elapsed = time.monotonic() - start
    pos = 0
    while len(data) - pos >= 6:
        t, _, n = struct.unpack_from(">BBL", data, pos)
        answer.pdus.append((t, data[pos + 6:pos + 6 + n]))
        pos += 6 + n
    return answer


def test_pdata_over_our_max_length_is_aborted_not_buffered(server):
    sock = established(server.port)
    with sock:
        # Our advertised maximum is server.max_pdu; claim one byte more and send
        # only the header plus a little: the abort must come without the body.
        claim = server.max_pdu + 1
        sock.sendall(struct.pack(">BBL", 4, 0, claim) + b"\x00" * 100)
        answer = read_until_closed(sock, wait=5.0)
    assert answer.abort() == (PROVIDER, ABORT_INVALID_PARAMETER), answer
    assert answer.closed and answer.elapsed < 2.5, answer
    assert echo_ok(server.port)
    record("limits", cases=1)


def test_association_pdu_over_one_mib_is_aborted(server):
    body_claim = (1 << 20) + 1
    answer = converse(server.port, [struct.pack(">BBL", 1, 0, body_claim) + b"\x00" * 65536])
    assert answer.abort() == STA2_ABORT, answer
    assert answer.closed, answer
    assert echo_ok(server.port)
    record("limits", cases=1)


@pytest.mark.parametrize("pdu_type", [1, 4, 5, 7])
def test_four_gib_length_claim_allocates_nothing(server, pdu_type):
    tracemalloc.start()
    rss_before = rss_bytes()
    try:
        header = struct.pack(">BBL", pdu_type, 0, 0xFFFFFFFF)
        answer = converse(server.port, [header + b"\x01" * 1000])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth = rss_bytes() - rss_before
    # Python-level allocations and the process RSS both stay far below 4 GiB
    # (a few MiB of slack for threads, logging and tracemalloc itself).
    assert peak < 16 << 20, peak
    assert rss_growth < 64 << 20, rss_growth
    assert answer.abort() == STA2_ABORT, answer
    assert answer.closed, answer
    assert echo_ok(server.port)
    record("limits", cases=1, max_python_peak_bytes=peak)


def _overrun_cases() -> dict[str, bytes]:
    good = associate_rq_bytes()
    body = bytearray(good[6:])
    first_item = 68  # items start after the fixed fields (PS3.8 Table 9-11)
    cases: dict[str, bytes] = {}
    # Application context item length overruns the PDU.
    b = bytearray(body)
    struct.pack_into(">H", b, first_item + 2, 0xFFFF)
    cases["item-overruns-pdu"] = pdu(1, bytes(b))
    # Presentation context item of length 0 (underflow: the id byte is missing).
    app_len = struct.unpack_from(">H", body, first_item + 2)[0]
    pc = first_item + 4 + app_len
    assert body[pc] == 0x20
    b = bytearray(body)
    struct.pack_into(">H", b, pc + 2, 0)
    cases["context-item-underflow"] = pdu(1, bytes(b))
    # Abstract syntax sub-item longer than its presentation context item.
    b = bytearray(body)
    struct.pack_into(">H", b, pc + 4 + 4 + 2, 0x0400)
    cases["subitem-overruns-item"] = pdu(1, bytes(b))
    # PDU length shorter than the fixed fields.
    cases["pdu-shorter-than-fixed-fields"] = pdu(1, bytes(body[:40]))
    # PDU length claims fewer bytes than its items need: the items run past the end.
    cases["pdu-length-cuts-items"] = pdu(1, bytes(body[:first_item + 6]))
    return cases


@pytest.mark.parametrize("name", sorted(_overrun_cases()))
def test_item_lengths_that_overrun_or_underflow(server, name):
    answer = converse(server.port, _overrun_cases()[name])
    assert answer.abort() == STA2_ABORT, (name, answer)
    assert answer.closed
    assert echo_ok(server.port)
    record("limits", cases=1)


@pytest.mark.parametrize("ids,expected", [
    (list(range(1, 256, 2)) + [1], (1, 3, 2)),       # 129 contexts: local limit exceeded
    ([1, 3, 3], (1, 2, 1)),                          # duplicate id
    ([1, 2], (1, 2, 1)),                             # even id
    ([0], (1, 2, 1)),                                # id 0
])
def test_bad_presentation_context_sets_are_rejected(server, ids, expected):
    answer = converse(server.port, raw_rq_with_contexts(ids))
    assert answer.rj() == expected, answer
    assert answer.closed
    assert echo_ok(server.port)
    record("limits", cases=1)


def _client_hello() -> bytes:
    # The first bytes of a TLS 1.2 ClientHello record (content type 0x16).
    hello = b"\x01\x00\x00\x2d\x03\x03" + os.urandom(32) + b"\x00\x00\x02\x00\x2f\x01\x00"
    return b"\x16\x03\x01" + struct.pack(">H", len(hello)) + hello


@pytest.mark.parametrize("name", ["http", "tls-client-hello", "noise", "short-noise", "valid-type-huge-tail"])
def test_non_dicom_bytes_are_closed_within_artim(server, name):
    rng = random.Random(name)
    data = {
        "http": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "tls-client-hello": _client_hello(),
        "noise": bytes(rng.randrange(256) for _ in range(4096)),
        "short-noise": b"\x01\x00\x00",                  # never a whole PDU header
        "valid-type-huge-tail": struct.pack(">BBL", 1, 0, 5000) + b"x" * 10,  # never completes
    }[name]
    answer = converse(server.port, data, wait=server.artim_timeout + 3.0)
    assert answer.closed, answer
    assert answer.elapsed < server.artim_timeout + 1.5, answer
    assert not answer.rj()
    if name in ("http", "tls-client-hello"):
        assert answer.abort() == STA2_ABORT, answer
    assert echo_ok(server.port)
    record("limits", cases=1)


# ------------------------------------------------------------ the corpus
def malformed_corpus() -> dict[str, bytes]:
    """Hostile openings of an association (also the PDU fuzzer's seeds)."""
    good = associate_rq_bytes()
    body = good[6:]
    ct_rq = associate_rq_bytes(contexts=[(CT, (EXPLICIT,))])
    cases: dict[str, bytes] = dict(_overrun_cases())
    cases["protocol-version-0"] = pdu(1, b"\x00\x00" + body[2:])
    cases["wrong-application-context"] = good.replace(b"1.2.840.10008.3.1.1.1", b"1.2.840.10008.3.1.1.9")
    cases["called-ae-unknown"] = associate_rq_bytes(called="SOMEONE")
    cases["ac-to-acceptor"] = pdu(2, body)
    cases["rj-to-acceptor"] = pdu(3, b"\x00\x01\x01\x01")
    cases["pdata-before-association"] = pdu(4, struct.pack(">LBB", 4, 1, 3) + b"\x00\x00")
    cases["release-rq-before-association"] = pdu(5, b"\x00" * 4)
    cases["release-rp-before-association"] = pdu(6, b"\x00" * 4)
    cases["abort-before-association"] = pdu(7, b"\x00\x00\x00\x00")
    cases["unknown-pdu-type-0"] = pdu(0, b"\x00" * 4)
    cases["unknown-pdu-type-8"] = pdu(8, b"\x00" * 4)
    cases["unknown-pdu-type-ff"] = pdu(0xFF, b"\x00" * 4)
    cases["empty-rq"] = pdu(1, b"")
    # (An RQ without a User Information item is taken as an empty one: see
    # tests/test_vendor_quirks_server.py.)
    cases["rq-twice"] = good + good
    cases["rq-then-garbage"] = ct_rq + b"\xde\xad\xbe\xef" * 4
    cases["non-ascii-ae"] = pdu(1, body[:4] + b"\xff" * 16 + body[20:])
    cases["zero-length-header-only"] = b"\x01\x00\x00\x00"
    return cases


def _send_case(port: int, data: bytes) -> Answer:
    return converse(port, data, wait=6.0)


def test_malformed_corpus_over_real_sockets(server, caplog):
    cases = malformed_corpus()
    with ThreadPoolExecutor(8) as pool:
        answers = dict(zip(cases, pool.map(lambda d: _send_case(server.port, d), cases.values())))
    outcomes = {"A-ABORT": 0, "A-ASSOCIATE-RJ": 0, "closed": 0, "A-ASSOCIATE-AC": 0}
    for name, answer in answers.items():
        assert answer.closed, (name, answer)
        assert answer.elapsed < server.artim_timeout + 2.5, (name, answer)
        if answer.rj():
            outcomes["A-ASSOCIATE-RJ"] += 1
        elif answer.abort():
            outcomes["A-ABORT"] += 1
            assert answer.abort() in (STA2_ABORT, (PROVIDER, ABORT_INVALID_PARAMETER),
                                      (PROVIDER, ABORT_UNRECOGNIZED_PDU),
                                      (PROVIDER, ABORT_UNEXPECTED_PDU)), (name, answer)
        elif 2 in answer.types:
            outcomes["A-ASSOCIATE-AC"] += 1
        else:
            outcomes["closed"] += 1
    assert answers["protocol-version-0"].rj() == (1, 2, 2)
    assert answers["wrong-application-context"].rj() == (1, 1, 2)
    assert answers["called-ae-unknown"].rj() == (1, 1, 7)
    assert answers["ac-to-acceptor"].abort() == STA2_ABORT
    assert answers["unknown-pdu-type-8"].abort() == STA2_ABORT
    # Bytes arriving with the RQ, before the acceptor answers (Sta3), are AA-8:
    # an unreadable PDU (0xDE) is unrecognized, a second RQ is unexpected.
    assert answers["rq-then-garbage"].abort() == (PROVIDER, ABORT_UNRECOGNIZED_PDU)
    assert answers["rq-twice"].abort() == (PROVIDER, ABORT_UNEXPECTED_PDU)
    assert echo_ok(server.port)
    # Hostile input is logged as the peer's fault, never as an internal error.
    internal = [r.getMessage() for r in caplog.records
                if r.levelno >= logging.ERROR or "LocalProtocolError" in r.getMessage()]
    assert not internal, internal
    record("limits", corpus_cases=len(cases), corpus_outcomes=outcomes)


def test_corpus_is_committed_for_the_fuzzer():
    """The PDU fuzzer is seeded with these cases (``python -m tests.hardening.test_limits`` rewrites them)."""
    names = set(os.listdir(CORPUS_DIR))
    for name, data in malformed_corpus().items():
        with open(os.path.join(CORPUS_DIR, f"{name}.bin"), "rb") as f:
            assert f.read() == data, name
    assert len(names) >= len(malformed_corpus())


def write_corpus() -> None:
    os.makedirs(CORPUS_DIR, exist_ok=True)
    for name, data in malformed_corpus().items():
        with open(os.path.join(CORPUS_DIR, f"{name}.bin"), "wb") as f:
            f.write(data)


def test_server_survives_all_of_it_concurrently(server):
    """Hostile connections in flight while honest clients echo."""
    cases = list(malformed_corpus().values())
    with ThreadPoolExecutor(6) as pool:
        hostile = [pool.submit(_send_case, server.port, d) for d in cases[:12]]
        honest = [pool.submit(echo_ok, server.port) for _ in range(6)]
        assert all(f.result() for f in honest)
        assert all(f.result().closed for f in hostile)
    record("limits", cases=len(cases[:12]) + 6)


if __name__ == "__main__":
    write_corpus()


# ------------------------------------------------- per-association memory cap
class _InMemoryStore:
    """Keeps nothing on disk: every data set is held in memory (on_store only);
    ``stream`` adds store_destination, so data sets go to files instead."""

    def __init__(self, folder=None) -> None:
        self.folder = folder
        self.sizes: list[int] = []

    def on_store(self, ctx, dataset):
        pixels = dataset.get("PixelData")      # a numpy view (bytes for an unknown layout)
        self.sizes.append(int(getattr(pixels, "nbytes", None) or len(pixels)))
        return 0


class _StreamingStore(_InMemoryStore):
    def store_destination(self, ctx, command):
        return os.path.join(self.folder, str(command.get("AffectedSOPInstanceUID")) + ".dcm")


def _buffer_sizes(monkeypatch) -> list[int]:
    """Record every data set buffer size the assembler allocates or grows to."""
    from dicomnet.dimse import assembler

    sizes: list[int] = []
    new, grow = assembler._new_buffer, assembler._grow

    def recording_new(size):
        sizes.append(size)
        return new(size)

    def recording_grow(buf, size, used):
        sizes.append(size)
        return grow(buf, size, used)

    monkeypatch.setattr(assembler, "_new_buffer", recording_new)
    monkeypatch.setattr(assembler, "_grow", recording_grow)
    return sizes


def test_in_memory_data_set_over_max_dataset_bytes_is_aborted(tmp_path, monkeypatch, caplog):
    """Server(max_dataset_bytes=256 KiB): a 2 MiB C-STORE held in memory is
    aborted (A-ABORT) as the cap is crossed -- no buffer ever exceeds the cap --
    with a log line naming the limit; the server goes on serving, a data set
    under the cap is stored, and a streamed one (store_destination) is not capped."""
    from dicomnet.client import Client
    from dicomnet.errors import AssociationAborted, DicomNetError
    from dicomnet.server import Server

    from .test_faults import make_instance

    cap = 256 << 10
    big, small = tmp_path / "big.dcm", tmp_path / "small.dcm"
    make_instance(big, 1024, 1024, seed=11)      # 2 MiB of pixels
    make_instance(small, 128, 128, seed=12)      # 32 KiB
    sizes = _buffer_sizes(monkeypatch)
    handler = _InMemoryStore()
    # 16 KiB PDUs: the data set arrives in many fragments and the buffer grows towards the cap.
    srv = Server("HARDEN", handler, max_dataset_bytes=cap, max_pdu=16384, artim_timeout=1.0, read_timeout=5.0,
                 dimse_timeout=5.0).start("127.0.0.1", 0)
    try:
        client = Client("BIG", dimse_timeout=5.0, write_timeout=5.0)
        assoc = client.associate("127.0.0.1", srv.port, "HARDEN", contexts=[(CT, EXPLICIT)])
        t0 = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="dicomnet"), pytest.raises(DicomNetError) as info:
            assoc.store(str(big))
        assert time.monotonic() - t0 < 5.0
        assert isinstance(info.value, AssociationAborted), info.value
        assert assoc.is_closed
        assert handler.sizes == []                               # the handler never saw it
        assert sizes and max(sizes) <= cap, sizes                # nothing past the cap was allocated
        assert any("max_dataset_bytes" in r.getMessage() for r in caplog.records)
        assert echo_ok(srv.port)
        with Client("SMALL").associate("127.0.0.1", srv.port, "HARDEN", contexts=[(CT, EXPLICIT)]) as a2:
            assert a2.store(str(small)) == 0
        assert handler.sizes == [128 * 128 * 2]
    finally:
        srv.shutdown(5.0)
    # Streamed to disk: the cap does not apply.
    folder = tmp_path / "in"
    folder.mkdir()
    streaming = _StreamingStore(str(folder))
    with Server("HARDEN", streaming, max_dataset_bytes=cap, artim_timeout=1.0).start("127.0.0.1", 0) as srv2:
        with Client("BIG").associate("127.0.0.1", srv2.port, "HARDEN", contexts=[(CT, EXPLICIT)]) as a3:
            assert a3.store(str(big)) == 0
    assert streaming.sizes == [1024 * 1024 * 2]
    record("limits", cases=2, dataset_cap_aborts=1)


def test_max_dataset_bytes_default_and_none():
    from dicomnet.server import DEFAULT_MAX_DATASET_BYTES, Server

    assert Server("HARDEN").max_dataset_bytes == DEFAULT_MAX_DATASET_BYTES == 2 << 30
    assert Server("HARDEN", max_dataset_bytes=None).max_dataset_bytes is None


def test_store_scp_max_dataset_bytes_flag(tmp_path):
    """``dicomnet store-scp --ignore --max-dataset-bytes 256K`` (a subprocess):
    the over-sized in-memory data set is aborted, a small one is stored, and
    a bad size is a usage error."""
    import json
    import subprocess
    import sys

    from dicomnet.client import Client
    from dicomnet.errors import AssociationAborted

    from .test_faults import make_instance

    big, small = tmp_path / "big.dcm", tmp_path / "small.dcm"
    make_instance(big, 1024, 1024, seed=13)
    make_instance(small, 64, 64, seed=14)
    cmd = [sys.executable, "-m", "dicomnet", "store-scp", "--ignore", "--max-dataset-bytes", "256K",
           "--handler-timeout", "5", "--port", "0", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first.get("event") == "listening", first
        port = int(first["port"])
        client = Client("BIG", dimse_timeout=10.0)
        assoc = client.associate("127.0.0.1", port, "ANY-SCP", contexts=[(CT, EXPLICIT)])
        with pytest.raises(AssociationAborted):
            assoc.store(str(big))
        with Client("SMALL").associate("127.0.0.1", port, "ANY-SCP", contexts=[(CT, EXPLICIT)]) as a2:
            assert a2.store(str(small)) == 0
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert "max_dataset_bytes (262144)" in err
    bad = subprocess.run([*cmd[:6], "lots", "--port", "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "not a size" in bad.stderr
    record("limits", cases=2)
