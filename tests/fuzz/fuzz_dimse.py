"""Coverage-guided fuzzing of the DIMSE command decoder with atheris.

The input is split in two: a command set for
:func:`dicomnet.dimse.commands.decode_command` (a command that decodes and can
be encoded again must decode to the same command), and a sequence of PDVs
(context id, command/last bits, data) for
:class:`dicomnet.dimse.assembler.MessageAssembler` with a 64 KiB data set
limit. Allowed failures: DicomParseError from the decoder, PDUError from the
assembler, ValueError from re-encoding a decoded value that has no encoding
(e.g. replaced non-ASCII text). Anything else is a bug.

    python tests/fuzz/fuzz_dimse.py -runs=20000 tests/fuzz/corpus/dimse/

``python tests/fuzz/fuzz_dimse.py --write-seeds`` writes the seeds: encoded
command sets of every DIMSE-C request and response.
"""
from __future__ import annotations

import logging
import os
import sys

import atheris
import numpy  # noqa: F401 - imported before instrumenting: only dicomnet's own code is instrumented

with atheris.instrument_imports():
    from dicomnet.dimse import commands as cmds
    from dicomnet.dimse.assembler import MessageAssembler
    from dicomnet.errors import DicomParseError, PDUError

CT = "1.2.840.10008.5.1.4.1.1.2"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"   # Study Root Q/R FIND, MOVE, GET
MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
GET = "1.2.840.10008.5.1.4.1.2.2.3"


def check_command(raw: bytes) -> None:
    try:
        command = cmds.decode_command(raw)
    except DicomParseError:
        return
    try:
        again = cmds.encode_command(command)
    except ValueError:
        return
    assert cmds.decode_command(again) == command, (raw, command)


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    check_command(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 512)))
    assembler = MessageAssembler(max_dataset_bytes=1 << 16)
    for _ in range(fdp.ConsumeIntInRange(0, 12)):
        if fdp.remaining_bytes() == 0:
            break
        context_id = fdp.PickValueInList([1, 1, 1, 3])
        is_command, is_last = fdp.ConsumeBool(), fdp.ConsumeBool()
        chunk = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300))
        try:
            message = assembler.feed(context_id, is_command, is_last, chunk)
        except PDUError:
            continue
        if message is not None:
            assert isinstance(message.command, cmds.Command)
            assert message.context_id in (1, 3)


def seeds() -> dict[str, bytes]:
    uid = "1.2.826.0.1.3680043.8.498.1"
    made = {
        "echo-rq": cmds.c_echo_rq(7), "echo-rsp": cmds.c_echo_rsp(7, 0),
        "store-rq": cmds.c_store_rq(1, CT, uid, 0, "MOVER", 9), "store-rsp": cmds.c_store_rsp(1, CT, uid, 0xA700,
                                                                                             error_comment="full"),
        "find-rq": cmds.c_find_rq(2, FIND), "find-rsp": cmds.c_find_rsp(2, FIND, 0xFF00, True),
        "move-rq": cmds.c_move_rq(3, MOVE, "DEST"),
        "get-rq": cmds.c_get_rq(4, GET),
        "cancel-rq": cmds.c_cancel_rq(2),
    }
    return {name: bytes(cmds.encode_command(c)) for name, c in made.items()}


def write_seeds() -> None:
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "dimse")
    os.makedirs(folder, exist_ok=True)
    for name, raw in seeds().items():
        # Seed layout for FuzzedDataProvider is opaque; the raw command set
        # itself is the most useful start (the decoder half reads it first).
        with open(os.path.join(folder, f"{name}.bin"), "wb") as f:
            f.write(raw)


def main() -> None:
    if sys.argv[1:] == ["--write-seeds"]:
        write_seeds()
        return
    logging.getLogger("dicomnet").setLevel(logging.CRITICAL)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
