"""DIMSE command encode+decode throughput: dicomnet vs pynetdicom, same run.

One round = build the request from its fields, encode it to the bytes sent as
PDVs, then decode those PDVs back into a command (and the data set bytes for
C-STORE). dicomnet: builder -> ``encode_command`` -> ``MessageAssembler.feed``.
pynetdicom: ``C_ECHO`` / ``C_STORE`` primitive -> ``primitive_to_message`` ->
``encode_msg`` -> ``decode_msg`` -> ``message_to_primitive``.

Run: ``.venv/bin/python benchmarks/bench_commands.py [--seconds 1.0]``
"""
from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from typing import Any

from dicomnet.dimse import c_echo_rq, c_store_rq, encode_command
from dicomnet.dimse.assembler import MessageAssembler

CT = "1.2.840.10008.5.1.4.1.1.2"
INSTANCE = "1.2.826.0.1.3680043.8.498.12345678901234567890"
# A small Implicit VR LE data set: SOP Instance UID plus 1 KiB of OB padding.
DATASET = (b"\x08\x00\x18\x00" + len(INSTANCE + "\0").to_bytes(4, "little") + INSTANCE.encode() + b"\0"
           + b"\x09\x00\x10\x10" + (1024).to_bytes(4, "little") + bytes(1024))
MAX_PDU = 16384


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Best of three runs of ``seconds / 3`` each, in calls per second."""
    best = 0.0
    for _ in range(3):
        n, start = 0, time.perf_counter()
        deadline = start + seconds / 3
        while True:
            for _ in range(200):
                fn()
            n += 200
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, n / (now - start))
    return best


# ------------------------------------------------------------ dicomnet


def ours_echo() -> None:
    data = encode_command(c_echo_rq(1))
    message = MessageAssembler().feed(1, True, True, memoryview(data))
    assert message is not None and message.command["MessageID"] == 1


def ours_store() -> None:
    data = encode_command(c_store_rq(1, CT, INSTANCE))
    asm = MessageAssembler()
    asm.feed(1, True, True, memoryview(data))
    message = asm.feed(1, False, True, memoryview(DATASET))
    assert message is not None and message.dataset is not None
    assert len(message.dataset) == len(DATASET)


# ------------------------------------------------------------ pynetdicom


def make_theirs() -> tuple[Callable[[], None], Callable[[], None]]:
    from pynetdicom.dimse_messages import C_ECHO_RQ, C_STORE_RQ
    from pynetdicom.dimse_primitives import C_ECHO, C_STORE

    def roundtrip(message_cls: type, primitive: Any) -> Any:
        message = message_cls()
        message.primitive_to_message(primitive)
        received = message_cls()
        for pdata in message.encode_msg(1, MAX_PDU):
            received.decode_msg(pdata)
        return received.message_to_primitive()

    def theirs_echo() -> None:
        primitive = C_ECHO()
        primitive.MessageID = 1
        primitive.AffectedSOPClassUID = "1.2.840.10008.1.1"
        assert roundtrip(C_ECHO_RQ, primitive).MessageID == 1

    def theirs_store() -> None:
        primitive = C_STORE()
        primitive.MessageID = 1
        primitive.AffectedSOPClassUID = CT
        primitive.AffectedSOPInstanceUID = INSTANCE
        primitive.Priority = 0
        primitive.DataSet = io.BytesIO(DATASET)
        back = roundtrip(C_STORE_RQ, primitive)
        assert back.DataSet.getvalue() == DATASET

    return theirs_echo, theirs_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="time per measurement")
    args = parser.parse_args()
    try:
        theirs_echo, theirs_store = make_theirs()
    except ImportError:
        theirs_echo = theirs_store = None  # type: ignore[assignment]
    print(f"{'message':<12}{'dicomnet/s':>14}{'pynetdicom/s':>16}{'ratio':>9}")
    for name, ours, theirs in (("C-ECHO-RQ", ours_echo, theirs_echo),
                               ("C-STORE-RQ", ours_store, theirs_store)):
        a = rate(ours, args.seconds)
        if theirs is None:
            print(f"{name:<12}{a:>14,.0f}{'n/a':>16}{'':>9}")
            continue
        b = rate(theirs, args.seconds)
        print(f"{name:<12}{a:>14,.0f}{b:>16,.0f}{a / b:>8.1f}x")


if __name__ == "__main__":
    main()
