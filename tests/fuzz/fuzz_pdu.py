"""Coverage-guided fuzzing of the Upper Layer PDU decoder with atheris.

Each input is a byte stream as a peer would send it: it is framed by
:class:`dicomnet._codec.pdu.PDUReader` (fed in fuzzer-chosen pieces), every
framed PDU is decoded (:func:`dicomnet.pdu.pdus.decode_pdu`; P-DATA-TF bodies
split into PDVs), and whatever decodes is encoded again: the re-encoding must
be stable (``encode(decode(encode(x))) == encode(x)``). Anything but
:class:`PDUError` is a bug and stops the run with the input saved.

Short run (what tests/fuzz/test_fuzz_network.py does)::

    python tests/fuzz/fuzz_pdu.py -runs=20000 tests/fuzz/corpus/pdu/

Longer: a scratch corpus directory FIRST (libFuzzer writes new inputs there)::

    mkdir -p /tmp/pdu-corpus
    python tests/fuzz/fuzz_pdu.py -max_total_time=3600 /tmp/pdu-corpus tests/fuzz/corpus/pdu/

The seeds are the hostile openings of tests/hardening/test_limits.py
(``python -m tests.hardening.test_limits`` rewrites them) plus valid PDUs
written by ``python tests/fuzz/fuzz_pdu.py --write-seeds``.
"""
from __future__ import annotations

import logging
import os
import sys

import atheris
import numpy  # noqa: F401 - imported before instrumenting: only dicomnet's own code is instrumented

with atheris.instrument_imports():
    from dicomnet._codec.pdu import PDUReader, iter_pdvs
    from dicomnet.errors import PDUError
    from dicomnet.pdu.pdus import PDataTF, decode_pdu, encode_pdu

MAX_PDU = 1 << 16


def check_pdu(pdu_type: int, body: memoryview) -> None:
    try:
        pdu = decode_pdu(pdu_type, body)
    except PDUError:
        return
    if isinstance(pdu, PDataTF):
        pdvs = iter_pdvs(body)
        assert len(pdvs) == len(pdu.pdvs)
        return
    try:
        wire = encode_pdu(pdu)
    except PDUError:
        return  # decodable but not sendable as is (e.g. even context ids): the acceptor answers it
    again = encode_pdu(decode_pdu(wire[0], memoryview(wire)[6:]))
    assert again == wire, (pdu_type, wire, again)


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    # The last byte also picks how the stream is cut into recv() pieces, so
    # every split of headers and items is tried (the seeds stay plain streams).
    step = 1 + (data[-1] % 64) * 37
    stream = memoryview(data)
    reader = PDUReader(max_pdu_length=MAX_PDU, max_association_pdu=MAX_PDU)
    try:
        for pos in range(0, len(stream), step):
            reader.feed(stream[pos:pos + step])
            while (item := reader.next_pdu()) is not None:
                check_pdu(*item)
    except PDUError:
        pass


def write_seeds() -> None:
    """Valid PDUs (hand-checked vectors of tests/pdu/vectors.py) as seeds."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from tests.pdu import vectors

    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "pdu")
    os.makedirs(folder, exist_ok=True)
    for name, wire in vectors.ALL_PDUS.items():
        with open(os.path.join(folder, f"valid-{name.lower().replace('_', '-')}.bin"), "wb") as f:
            f.write(wire)


def main() -> None:
    if sys.argv[1:] == ["--write-seeds"]:
        write_seeds()
        return
    logging.getLogger("dicomnet").setLevel(logging.CRITICAL)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
