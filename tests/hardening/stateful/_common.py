"""What the server and the client machine share (test_server_stateful.py, test_client_stateful.py).

The DICOM both write by hand, with no dicomnet encoder: UIDs, command set
element tags, PDU / item / PDV framing, command sets (Implicit VR Little
Endian), data sets (with pydicom) and where a message is cut; the A-ABORT
(source, reason) sets of PS3.8 9.3.8 both check against and the slack both
allow a timer. And the scaffolding that runs a machine: this process's open
file descriptors, the hypothesis settings, a run that says what the machine
did, and the replay of one scripted sequence with the machine's checks and
teardown.
"""
from __future__ import annotations

import collections
import os
import struct
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test
from pydicom.dataset import Dataset as PyDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

# ------------------------------------------------------------------ constants
VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"
MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
GET = "1.2.840.10008.5.1.4.1.2.2.3"
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
APP_CONTEXT = "1.2.840.10008.3.1.1.1"

LATE = 1.5             # a timer may seem to fire this much late (a loaded 2-core machine)
PROMPT = 3.0           # an answer due "at once" comes within this

# A-ABORT (source, reason) pairs, PS3.8 9.3.8 / Table 9-26.
USER = frozenset({(0, 0)})                                  # AA-1 (service-user, reason 0)
INVALID = frozenset({(2, r) for r in (0, 4, 5, 6)})         # AA-8 for a malformed PDU
UNRECOGNIZED = frozenset({(2, 1)})                          # AA-8, unknown PDU type
UNEXPECTED = frozenset({(2, 2)})                            # AA-8, a valid PDU out of place

# Command set elements (group 0000).
CF, MID, MIDR, DST, STATUS, COMMENT = 0x0100, 0x0110, 0x0120, 0x0800, 0x0900, 0x0902
AFF_CLASS, AFF_INST, PRIORITY, MOVE_DEST = 0x0002, 0x1000, 0x0700, 0x0600
REMAINING, COMPLETED, FAILED, WARNING, ORIG_AE = 0x1020, 0x1021, 0x1022, 0x1023, 0x1030
NO_DATASET = 0x0101
_UI = {0x0002, 0x0003, 0x1000, 0x1001}

# Where a message is cut (per mille, see split_per_mille): up to three points.
CUTS = st.lists(st.integers(1, 999), max_size=3).map(lambda c: tuple(sorted(c)))


# ------------------------------------------------------------------ wire bytes
def pdu(pdu_type: int, body: bytes) -> bytes:
    return struct.pack(">BBL", pdu_type, 0, len(body)) + body


def item(item_type: int, value: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(value)) + value


def pdv(context_id: int, is_command: bool, is_last: bool, data: bytes) -> bytes:
    """A PDV item (PS3.8 9.3.5.1) with its Message Control Header (E.2)."""
    return struct.pack(">LBB", len(data) + 2, context_id, int(is_command) | (2 if is_last else 0)) + data


def encode_command(fields: dict[int, int | str]) -> bytes:
    """A command set, Implicit VR Little Endian, with its group length (PS3.7 6.3.1)."""
    body = b""
    for elem in sorted(fields):
        value = fields[elem]
        if isinstance(value, str):
            raw = value.encode("ascii")
            raw += (b"\0" if elem in _UI else b" ") * (len(raw) & 1)
        else:
            raw = struct.pack("<H", value)
        body += struct.pack("<HHL", 0, elem, len(raw)) + raw
    return struct.pack("<HHLL", 0, 0, 4, len(body)) + body


def us(cmd: dict[int, bytes], elem: int) -> int | None:
    value = cmd.get(elem)
    return None if value is None else struct.unpack("<H", value)[0]


def text(cmd: dict[int, bytes], elem: int) -> str | None:
    value = cmd.get(elem)
    return None if value is None else value.rstrip(b"\0 ").decode("ascii")


def encode_ds(ds: PyDataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    return fp.getvalue()


def split_per_mille(data: bytes, cuts: tuple[int, ...], limit: int, every: int = 0) -> list[bytes]:
    """``data`` cut at ``cuts`` (per mille of its length; or every ``every`` bytes),
    each piece cut again into pieces of at most ``limit`` bytes."""
    at = set(range(every, len(data), every)) if every else {len(data) * c // 1000 for c in cuts}
    points = sorted(at - {0, len(data)})
    out = []
    for part in (data[a:b] for a, b in zip([0, *points], [*points, len(data)])):
        while len(part) > limit:
            out.append(part[:limit])
            part = part[limit:]
        out.append(part)
    return out


# ---------------------------------------------------------------- scaffolding
def _fds() -> dict[str, str]:
    """This process's open file descriptors (Linux: the hardening suite runs there only)."""
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    return out


def machine_settings(max_examples: int, stateful_step_count: int) -> settings:
    """A machine's run: derandomized (the same examples each time), no example database,
    no deadline, no health checks, no shrinking."""
    # No shrinking: replays depend on timing (hypothesis would call most of them flaky) and could take
    # minutes; a failure names the steps of the peer concerned (ServerMachine._fail) and the whole run.
    return settings(max_examples=max_examples, stateful_step_count=stateful_step_count, deadline=None,
                    derandomize=True, database=None, suppress_health_check=list(HealthCheck), print_blob=False,
                    phases=(Phase.explicit, Phase.reuse, Phase.generate))


def run_machine(machine: Any, run_settings: settings, stats: collections.Counter) -> None:
    """Run the machine as a test; then print what it did (``stats``, counted by its actions)."""
    stats.clear()
    try:
        run_state_machine_as_test(machine, settings=run_settings)
    finally:   # what the run did (shown with -s, or with a failure)
        print(f"{sum(stats.values())} actions:", ", ".join(f"{k} {v}" for k, v in sorted(stats.items())))


def replay_steps(machine: Callable[[], Any], steps: Callable[[Any], None], fails_with: str | None = None, *,
           check_after: bool = False) -> None:
    """Run ``steps(machine)`` on a fresh machine, with its checks, and tear it down.
    ``check_after``: run the machine's ``check()`` once more after the steps.
    ``fails_with``: the check must fail with a message containing it (any other
    failure is an error, not the expected one)."""
    m = machine()
    try:
        try:
            steps(m)
            if check_after:
                m.check()
        finally:
            m.teardown()
    except AssertionError as exc:
        if fails_with is not None and fails_with not in str(exc):
            raise RuntimeError(f"failed, but not with {fails_with!r}: {exc}") from exc
        raise
