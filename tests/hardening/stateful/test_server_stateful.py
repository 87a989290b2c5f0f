"""One Server, several byte-level peers at once: a hypothesis state machine.

The machine starts one in-process :class:`dicomnet.Server` (short timers:
ARTIM 0.6 s, read 1 s, write 1.5 s; max_dataset_bytes 256 KiB) whose handler
answers C-ECHO, stores C-STOREs in memory or streams them to a file (by the
parity of the SOP Instance UID: the compiled store lane and the general path),
yields C-FIND matches slowly (30 ms apart, checking ``ctx.cancelled``) and
serves C-GET and C-MOVE (to itself) from a tiny archive of three Part 10 files.
Up to four scripted peers -- raw sockets; PDUs and command sets built here with
``struct``, data sets with pydicom, no dicomnet encoder -- connect and
associate (validly, with small or no maximum PDU length, with an Asynchronous
Operations Window, or not validly), send C-ECHO, C-STORE, C-FIND, C-GET,
C-MOVE, C-CANCEL, unknown and malformed commands as P-DATA cut into PDVs, PDUs
and TCP writes in many ways (a request may trickle in over several steps;
several may go in one write or one PDU where the window allows), break
PS3.8/PS3.7 on purpose (command/data set and last-fragment bits, unaccepted
contexts, interleaved messages, data set before command, huge declared
lengths, truncated and stalled PDUs, unexpected PDUs, PDUs in Sta13), release
(also right behind a request), abort, half-close, reset, and stop reading for
a while; the rules interleave across the peers.

Each peer has a reader thread that timestamps what the server sends,
reassembles DIMSE messages (checking the server's own framing: PDU lengths
within the maximum we advertised, one context per message, command before
data set, reserved bits clear) and answers the C-STORE sub-operations of a
C-GET. After every step the machine checks, against a model of each peer:

* every well-formed request on a healthy association gets its response, in
  time, on its presentation context, with the status of PS3.4/PS3.7 (C-STORE
  as the handler said, the data set stored byte for byte; C-FIND one Pending
  per match then Success, Cancel after a C-CANCEL, 0xA900 from a QueryError;
  C-GET/C-MOVE sub-operation counters, 0xB000/0xA702 with the Failed SOP
  Instance UID List, sub-operations naming the Move Originator, 0xA801 for an
  unknown destination; 0x0211 for an unknown command; a failure status for a
  malformed request; no response to a C-CANCEL of nothing);
* a protocol violation ends its association with the A-ABORT (source/reason of
  PS3.8 9.3.8 and Table 9-10) or A-ASSOCIATE-RJ due, then the server closes at
  ARTIM (Sta13) -- answering, in Sta13, an A-ASSOCIATE-RQ or invalid PDU with
  an A-ABORT (AA-7), an A-ABORT by closing at once (AA-2), anything else not at
  all (AA-6); an A-ABORT or a close from the peer gets nothing back; an idle or
  stalled association is aborted (AA-1) at ``read_timeout``; a silent
  connection is closed at ARTIM; a peer that reads nothing for longer than
  ``write_timeout`` is let go;
* nothing of that touches the other peers: a fresh raw C-ECHO association is
  answered within PROBE_LIMIT after every step;
* no exception escapes a thread (``threading.excepthook``); the server logs no
  error and no LocalProtocolError; it never serves more associations than
  could still be open.

At teardown the server is shut down with the peers still connected (mid-
message, stalled, not reading): each gets an A-ABORT (0, 0) or a close, the
shutdown takes less than SHUTDOWN_LIMIT, every thread it started ends and no
temporary ``.part`` file is left.

What dicomnet gets wrong is left out of the machine (KNOWN_FAULTS) and pinned,
shrunk, as strict xfails at the end of the file; the three faults it found are
fixed, and their shrunk cases stay there as regression tests. The machine's own
checks are shown to fail on a broken server or model (test_the_harness_notices_...).
"""
from __future__ import annotations

import collections
import hashlib
import io
import logging
import os
import random
import select
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from pydicom.dataset import Dataset as PyDataset
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset as py_read_dataset
from pydicom.filewriter import dcmwrite, write_dataset

from dicomnet import Server
from dicomnet.errors import DicomNetError, QueryError

# ------------------------------------------------------------------ constants
SCP_AE = "STATEFUL"
VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"
MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
GET = "1.2.840.10008.5.1.4.1.2.2.3"
UNKNOWN_SOP = "1.2.826.0.1.3680043.9.7777.99"
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
APP_CONTEXT = "1.2.840.10008.3.1.1.1"
PEER_IMPLEMENTATION = "1.2.826.0.1.3680043.9.7777.88"
UID_ROOT = "1.2.826.0.1.3680043.9.7777"
# Presentation contexts every peer proposes: id -> (abstract syntax, transfer syntaxes).
CONTEXTS = {1: (VERIFICATION, (EXPLICIT, IMPLICIT)), 3: (CT, (EXPLICIT,)), 5: (FIND, (EXPLICIT,)),
            7: (MOVE, (EXPLICIT,)), 9: (GET, (EXPLICIT,)), 11: (UNKNOWN_SOP, (EXPLICIT,))}
CTX = {VERIFICATION: 1, CT: 3, FIND: 5, MOVE: 7, GET: 9}

ARTIM = 0.6            # the server's timers (seconds)
READ = 1.0
WRITE = 1.5
DIMSE = 3.0
SERVER_MAX_PDU = 65536
MAX_DATASET = 256 << 10  # the server's max_dataset_bytes
PDV_MAX = SERVER_MAX_PDU - 6
EARLY = 0.25           # a timer may seem to fire this much early (we timestamp after the server)
LATE = 1.5             # ... and this much late (a loaded 2-core machine)
PROMPT = 3.0           # an answer due "at once" comes within this
FRESH = 0.4            # no request to a peer this close to its read timeout
PROBE_LIMIT = 2.0      # a fresh C-ECHO association, end to end
SHUTDOWN_LIMIT = 3.0
FIND_DELAY = 0.03      # between two C-FIND matches
MAX_PEERS = 4
SLOTS = st.integers(0, MAX_PEERS - 1)
TAILS = st.sampled_from(["", "", "release", "abort", "cancel"])
WINDOWS = st.sampled_from([0, 0, 4])
PEER_PDUS = st.sampled_from([16384, 16384, 4096, 0])

# A-ABORT (source, reason) pairs, PS3.8 9.3.8 / Table 9-26.
USER = frozenset({(0, 0)})                                  # AA-1 (service-user, reason 0)
INVALID = frozenset({(2, r) for r in (0, 4, 5, 6)})         # AA-8 for a malformed PDU
UNRECOGNIZED = frozenset({(2, 1)})                          # AA-8, unknown PDU type
UNEXPECTED = frozenset({(2, 2)})                            # AA-8, a valid PDU out of place
DIMSE_FAULT = USER | INVALID                                # a valid PDU breaking PS3.7 / PS3.8 9.3.5
LEGAL_ABORTS = USER | INVALID | UNRECOGNIZED | UNEXPECTED
# Failure statuses for a request the SCP cannot understand (PS3.4 B.2.3, C.4.1.1.4, C.4.2.1.5, C.4.3.1.4).
FAILURES = frozenset({0xA900, *range(0xC000, 0xD000)})

# Command set elements (group 0000).
CF, MID, MIDR, DST, STATUS, COMMENT = 0x0100, 0x0110, 0x0120, 0x0800, 0x0900, 0x0902
AFF_CLASS, AFF_INST, PRIORITY, MOVE_DEST = 0x0002, 0x1000, 0x0700, 0x0600
REMAINING, COMPLETED, FAILED, WARNING, ORIG_AE = 0x1020, 0x1021, 0x1022, 0x1023, 0x1030
NO_DATASET = 0x0101
_UI = {0x0002, 0x0003, 0x1000, 0x1001}


# ------------------------------------------------------------------ wire bytes
def pdu(pdu_type: int, body: bytes) -> bytes:
    return struct.pack(">BBL", pdu_type, 0, len(body)) + body


def item(item_type: int, value: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(value)) + value


def pdv(context_id: int, is_command: bool, is_last: bool, data: bytes) -> bytes:
    """A PDV item (PS3.8 9.3.5.1) with its Message Control Header (E.2)."""
    return struct.pack(">LBB", len(data) + 2, context_id, int(is_command) | (2 if is_last else 0)) + data


def associate_rq(called: str = SCP_AE, calling: str = "PEER", *, version: int = 1, app: str = APP_CONTEXT,
                 max_pdu: int = 16384, contexts: dict | None = None, window: int = 0) -> bytes:
    """An A-ASSOCIATE-RQ (PS3.8 9.3.2); ``window``: offer an Asynchronous
    Operations Window of that many operations both ways (PS3.7 D.3.3.3)."""
    fixed = struct.pack(">HH16s16s32s", version, 0, called.encode().ljust(16), calling.encode().ljust(16), bytes(32))
    pcs = b"".join(item(0x20, bytes([cid, 0, 0, 0]) + item(0x30, abstract.encode())
                        + b"".join(item(0x40, ts.encode()) for ts in syntaxes))
                   for cid, (abstract, syntaxes) in (contexts or CONTEXTS).items())
    role = item(0x54, struct.pack(">H", len(CT)) + CT.encode() + bytes([1, 1]))   # SCU and SCP for CT
    async_ops = item(0x53, struct.pack(">HH", window, window)) if window else b""
    user = item(0x50, item(0x51, struct.pack(">L", max_pdu)) + item(0x52, PEER_IMPLEMENTATION.encode())
                + async_ops + role)
    return pdu(0x01, fixed + item(0x10, app.encode()) + pcs + user)


def parse_ac(body: bytes) -> tuple[dict[int, tuple[int, str]], int | None, dict[str, tuple[int, int]],
                                  tuple[int, int] | None]:
    """An A-ASSOCIATE-AC's contexts {id: (result, transfer syntax)}, Maximum
    Length, role replies and Asynchronous Operations Window (invoked, performed)."""
    contexts: dict[int, tuple[int, str]] = {}
    roles: dict[str, tuple[int, int]] = {}
    max_length = window = None
    pos = 68
    while pos < len(body):
        item_type, n = body[pos], struct.unpack_from(">H", body, pos + 2)[0]
        value = body[pos + 4:pos + 4 + n]
        pos += 4 + n
        if item_type == 0x21:
            ts = value[8:8 + struct.unpack_from(">H", value, 6)[0]] if len(value) >= 8 else b""
            contexts[value[0]] = (value[2], ts.rstrip(b"\0").decode())
        elif item_type == 0x50:
            sub = 0
            while sub < len(value):
                sub_type, m = value[sub], struct.unpack_from(">H", value, sub + 2)[0]
                sub_value = value[sub + 4:sub + 4 + m]
                sub += 4 + m
                if sub_type == 0x51:
                    max_length = struct.unpack(">L", sub_value)[0]
                elif sub_type == 0x53:
                    window = struct.unpack(">HH", sub_value)
                elif sub_type == 0x54:
                    k = struct.unpack_from(">H", sub_value)[0]
                    roles[sub_value[2:2 + k].rstrip(b"\0").decode()] = (sub_value[2 + k], sub_value[3 + k])
    return contexts, max_length, roles, window


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


def decode_command(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    pos = 0
    while pos < len(data):
        if len(data) - pos < 8:
            raise ValueError(f"command set ends inside an element header at {pos}")
        group, elem, n = struct.unpack_from("<HHL", data, pos)
        if group != 0 or pos + 8 + n > len(data):
            raise ValueError(f"bad command element ({group:04X},{elem:04X}) of {n} bytes at {pos}")
        out[elem] = data[pos + 8:pos + 8 + n]
        pos += 8 + n
    if 0 in out and struct.unpack("<L", out[0])[0] != len(data) - 12:
        raise ValueError("CommandGroupLength does not match the command set")
    return out


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


def decode_ds(data: bytes) -> PyDataset:
    return py_read_dataset(io.BytesIO(data), is_implicit_VR=False, is_little_endian=True)


def dataset_part(path: str) -> bytes:
    """The data set bytes of a Part 10 file (after the File Meta group)."""
    with open(path, "rb") as f:
        data = f.read()
    return data[144 + struct.unpack_from("<L", data, 140)[0]:]


def ct_dataset(uid: str, pixels: bytes, patient_id: str, study: str = f"{UID_ROOT}.70.9") -> PyDataset:
    ds = PyDataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.StudyInstanceUID = CT, uid, study
    ds.PatientID, ds.Modality = patient_id, "CT"
    ds.Rows, ds.Columns = len(pixels) // 100, 100
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.SamplesPerPixel = 8, 8, 7, 1
    ds.PixelRepresentation, ds.PhotometricInterpretation = 0, "MONOCHROME2"
    ds.add_new(0x7FE00010, "OB", pixels)
    return ds


def pixels_of(dataset: Any) -> bytes:
    import numpy as np

    value = dataset.get("PixelData")
    return value if isinstance(value, bytes) else np.asarray(value).tobytes()


# ------------------------------------------------------------- fragmentation
@dataclass(frozen=True)
class Frag:
    """How one message goes on the wire: where the command set and data set are
    cut into PDVs (per mille), how PDVs are packed into P-DATA-TF PDUs, and
    where the byte stream is cut into separate writes (per mille)."""
    cmd_cuts: tuple[int, ...] = ()
    ds_cuts: tuple[int, ...] = ()
    packing: str = "packed"            # "packed" | "separate" | "with-command"
    tcp_cuts: tuple[int, ...] = ()


WHOLE = Frag()
_cuts = st.lists(st.integers(1, 999), max_size=3).map(lambda c: tuple(sorted(c)))
FRAGS = st.builds(Frag, cmd_cuts=_cuts, ds_cuts=_cuts, packing=st.sampled_from(["packed", "separate", "with-command"]),
                  tcp_cuts=st.lists(st.integers(1, 999), max_size=5).map(lambda c: tuple(sorted(c))))


def _split(data: bytes, cuts: tuple[int, ...], limit: int = PDV_MAX) -> list[bytes]:
    points = sorted({len(data) * c // 1000 for c in cuts} - {0, len(data)})
    out = []
    for part in (data[a:b] for a, b in zip([0, *points], [*points, len(data)])):
        while len(part) > limit:
            out.append(part[:limit])
            part = part[limit:]
        out.append(part)
    return out


def message_pdus(ctx: int, command: bytes, dataset: bytes | None, frag: Frag) -> list[bytes]:
    """One DIMSE message as P-DATA-TF PDUs (each within the server's maximum length)."""
    cmd = _split(command, frag.cmd_cuts)
    items = [pdv(ctx, True, i == len(cmd) - 1, part) for i, part in enumerate(cmd)]
    first_data = len(items)
    if dataset is not None:
        parts = _split(dataset, frag.ds_cuts)
        items += [pdv(ctx, False, i == len(parts) - 1, part) for i, part in enumerate(parts)]
    groups: list[list[bytes]] = []
    for i, one in enumerate(items):
        joins = (frag.packing == "packed" or (frag.packing == "with-command" and i <= first_data)) and groups
        if joins and sum(map(len, groups[-1])) + len(one) <= SERVER_MAX_PDU:
            groups[-1].append(one)
        else:
            groups.append([one])
    return [pdu(0x04, b"".join(g)) for g in groups]


def tcp_chunks(stream: bytes, cuts: tuple[int, ...]) -> list[bytes]:
    return _split(stream, cuts, limit=1 << 30)


# -------------------------------------------------------------------- the SCP
class Archive:
    """Three Part 10 files in two studies (one file big enough to fill socket buffers)."""

    def __init__(self, folder: str) -> None:
        self.studies: dict[str, list[str]] = {"A": [], "B": [], "none": []}
        self.paths: dict[str, str] = {}
        self.data: dict[str, bytes] = {}       # SOP Instance UID -> data set bytes as in the file
        self.pixels: dict[str, str] = {}       # ... -> sha256 of the pixel data
        for n, (study, size) in enumerate([("A", 2000), ("A", 300_000), ("B", 1000)], 1):
            uid = f"{UID_ROOT}.71.{n}"
            pixels = random.Random(n).randbytes(size)
            ds = ct_dataset(uid, pixels, "ARCHIVE", self.study_uid(study))
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = EXPLICIT
            ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = CT, uid
            path = os.path.join(folder, f"{uid}.dcm")
            dcmwrite(path, ds, enforce_file_format=True)
            self.studies[study].append(uid)
            self.paths[uid], self.data[uid] = path, dataset_part(path)
            self.pixels[uid] = hashlib.sha256(pixels).hexdigest()

    @staticmethod
    def study_uid(study: str) -> str:
        return f"{UID_ROOT}.70.{ {'A': 1, 'B': 2}.get(study, 3) }"

    def instances(self, study_uid: str) -> list[str]:
        return [self.paths[u] for s, uids in self.studies.items() if self.study_uid(s) == study_uid for u in uids]


class Handler:
    """C-STORE to a file (even last UID component) or to memory (odd), C-FIND
    slowly, C-GET and C-MOVE from the archive. Thread-safe."""

    def __init__(self, folder: str, archive: Archive) -> None:
        self.folder, self.archive = folder, archive
        self.port = 0
        self.lock = threading.Lock()
        self.stored: dict[str, tuple[str, str]] = {}   # SOP Instance UID -> (pixel sha256, calling AE)
        self.moved: list[tuple[str, str, str, int]] = []   # C-MOVE sub-operations stored: (UID, sha256,
        #                                                     Move Originator AE title, Message ID)

    def store_destination(self, ctx: Any, command: Any) -> str | None:
        uid = str(command.get("AffectedSOPInstanceUID") or "")
        if not uid.startswith(UID_ROOT) or int(uid.rsplit(".", 1)[1]) % 2:
            return None
        return os.path.join(self.folder, uid + ".dcm")

    def on_store(self, ctx: Any, dataset: Any) -> int:
        try:
            digest = hashlib.sha256(pixels_of(dataset)).hexdigest()
        except DicomNetError:
            return 0xC000        # a data set we cannot read: "cannot understand" (PS3.4 B.2.3)
        originator = ctx.command.get("MoveOriginatorApplicationEntityTitle")
        with self.lock:
            self.stored[str(ctx.sop_instance_uid)] = (digest, ctx.calling_ae)
            if originator is not None:
                self.moved.append((str(ctx.sop_instance_uid), digest, str(originator).strip(),
                                   int(ctx.command.get("MoveOriginatorMessageID") or 0)))
        patient = str(dataset.get("PatientID") or "")
        return int(patient[7:], 16) if patient.startswith("STATUS-") else 0

    def on_find(self, ctx: Any, query: Any) -> Any:
        patient = _key(query, "PatientID")
        if patient == "FAIL":
            raise QueryError("refused by the test handler", 0xA900)
        for i in range(int(patient[4:]) if patient.startswith("FIND") else 0):
            time.sleep(FIND_DELAY)
            if ctx.cancelled:
                return
            yield {"QueryRetrieveLevel": "STUDY", "PatientID": patient, "StudyInstanceUID": f"{UID_ROOT}.60.{i + 1}"}

    def on_get(self, ctx: Any, query: Any) -> list[str]:
        return self.archive.instances(_key(query, "StudyInstanceUID"))

    def on_move(self, ctx: Any, query: Any, destination: str) -> Any:
        address = ("127.0.0.1", self.port) if destination == SCP_AE else None   # C-MOVE to itself
        return address, self.archive.instances(_key(query, "StudyInstanceUID"))


def _key(query: Any, keyword: str) -> str:
    """A key of the Identifier; one that cannot be read is the query's fault (0xA900)."""
    try:
        return str(query.get(keyword) or "")
    except DicomNetError as exc:
        raise QueryError(f"unreadable Identifier: {exc}", 0xA900) from exc


# ---------------------------------------------------------------- the model
@dataclass
class Verdict:
    """How the server must end a peer's association: "abort" (an A-ABORT of
    ``allowed`` within [not_before, by]), "reject" (A-ASSOCIATE-RJ), "release"
    (A-RELEASE-RP once every request is answered) or "close" (the connection
    closes within [not_before, by] and nothing but due responses comes)."""
    what: str
    why: str
    by: float
    allowed: frozenset = frozenset()
    not_before: float = 0.0
    stall: bool = False


@dataclass
class Op:
    kind: str                  # echo | store | find | get | move | unknown
    msgid: int
    ctx: int
    sop_class: str | None
    deadline: float
    optional: bool = False
    status: int = 0            # store: what the handler answers
    uid: str = ""              # store
    data: bytes = b""          # store: the data set sent
    digest: str = ""           # store: sha256 of its pixels
    streamed: bool = False
    patient: str = ""          # find
    n: int = 0                 # find: matches; get/move: instances
    uids: tuple[str, ...] = ()  # get/move
    failing: frozenset = frozenset()  # get: instances whose sub-operation we fail
    destination: str = ""
    originator: str = ""       # move: our calling AE title
    failure: bool = False      # a malformed request: a failure status (PS3.4 C.4 / B.2.3) is due
    cancelled: bool = False
    pendings: int = 0
    seen: set = field(default_factory=set)


class Peer:
    """A raw requestor: our end of one TCP connection, its reader thread and its model."""

    def __init__(self, name: str, port: int, *, rcvbuf: bool, close_on_end: bool) -> None:
        self.name = name
        self.close_on_end = close_on_end
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(5.0)          # every send is bounded; reads wait in select()
        self.sock.connect(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connected_at = self.idle_since = time.monotonic()
        self.phase = "open"                # open | requested | established | done
        self.verdict: Verdict | None = None
        self.ended_at: float | None = None  # the server's A-ABORT / RJ / RP came after this
        self.ended_late = 0.0               # ... and before this
        self.ended_how = ""
        self.sta13: tuple[str, float, float] | None = None   # what a PDU sent in Sta13 is owed: (action, by, sent)
        self.ac_by = 0.0
        self.max_pdu = 16384
        self.offered_window = 0
        self.window = 1                    # operations we may have outstanding (PS3.7 D.3.3.3)
        self.stalled = self.wr_closed = False
        self.partial = False               # part of a PDU sent: what follows would be read as its rest
        self.pending: list[tuple[bytes, bool, bool]] = []   # a request being trickled: (chunk, completes a
        #                                                      PDU, ends where a PDU ends)
        self.pdu_done_at = 0.0             # when the last whole PDU went out
        self.ops: dict[int, Op] = {}
        self.next_id = 0
        self.pause_until = 0.0
        self.done_at: float | None = None
        self.sub_status: dict[str, int] = {}       # C-GET sub-operations we answer with a failure
        self.events: collections.deque = collections.deque()
        self.send_lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._reader, name=f"stateful-peer-{name}", daemon=True)
        self.thread.start()

    def __repr__(self) -> str:
        return self.name

    # -- what the rules look at
    @property
    def required(self) -> list[Op]:
        """The operations whose responses are due (a request still being sent is not)."""
        return [op for op in self.ops.values() if not op.optional and not self.pending]

    def can_request(self, now: float) -> bool:
        return (self.phase == "established" and self.verdict is None and self.ended_at is None
                and not self.stalled and not self.wr_closed and not self.ops and now >= self.pause_until
                and now - self.idle_since < READ - FRESH)

    def can_open(self, now: float) -> bool:
        return (self.phase == "open" and self.verdict is None and not self.stalled and not self.wr_closed
                and now - self.connected_at < ARTIM - FRESH)

    def can_end(self) -> bool:
        """Ready for an A-ABORT, half-close or reset of ours."""
        return (self.phase in ("open", "established") and not self.wr_closed
                and (self.verdict is None or self.verdict.stall or self.ended_at is not None))

    def message_id(self) -> int:
        self.next_id += 1
        return self.next_id

    # -- I/O
    def send(self, chunks: list[bytes]) -> None:
        with self.send_lock:
            try:
                for chunk in chunks:
                    self.sock.sendall(chunk)
            except OSError as exc:   # judged by what the server sent (an A-ABORT, a close)
                self.events.append(("send-failed", (time.monotonic(),) * 2, repr(exc)))

    def close(self, *, reset: bool = False) -> None:
        self.stop.set()
        self.thread.join(2.0)
        if reset:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.sock.close()
        self.phase, self.done_at = "done", time.monotonic()

    def _reader(self) -> None:
        """Events carry ``(t0, t)``: what they bring arrived after t0 and before
        t (t0 is the last look that found nothing, before any pause)."""
        buf = bytearray()
        message: dict[str, Any] = {}
        looked = time.monotonic()
        try:
            while not self.stop.is_set():
                if time.monotonic() < self.pause_until:
                    time.sleep(0.01)
                    continue
                if not select.select([self.sock], [], [], 0.02)[0]:
                    looked = time.monotonic()
                    continue
                before = time.monotonic()
                try:
                    chunk = self.sock.recv(1 << 18)
                except (ConnectionError, OSError):
                    chunk = b""
                now, looked = (looked, time.monotonic()), before
                if not chunk:
                    self.events.append(("eof", now))
                    return
                buf += chunk
                while len(buf) >= 6:
                    n = struct.unpack_from(">L", buf, 2)[0]
                    if len(buf) < 6 + n:
                        break
                    pdu_type, body = buf[0], bytes(buf[6:6 + n])
                    del buf[:6 + n]
                    if pdu_type == 0x04:
                        self._pdata(now, body, message)
                    else:
                        self.events.append(("pdu", now, pdu_type, body))
        except Exception as exc:  # noqa: BLE001 - a harness fault, reported by the invariant
            self.events.append(("crash", (time.monotonic(),) * 2, repr(exc)))

    def _pdata(self, now: tuple[float, float], body: bytes, message: dict[str, Any]) -> None:
        if self.max_pdu and len(body) > self.max_pdu:
            self.events.append(("bad", now, f"P-DATA-TF of {len(body)} bytes; we accept {self.max_pdu}"))
        if not body:
            self.events.append(("bad", now, "P-DATA-TF without a PDV"))
        pos = 0
        while pos < len(body):
            n = struct.unpack_from(">L", body, pos)[0] if len(body) - pos >= 4 else 0
            if n < 2 or pos + 4 + n > len(body):
                self.events.append(("bad", now, f"PDV item length {n} at {pos} of {len(body)}"))
                return
            ctx, header, data = body[pos + 4], body[pos + 5], body[pos + 6:pos + 4 + n]
            pos += 4 + n
            if header & 0xFC:
                self.events.append(("bad", now, f"reserved bits set in message control header {header:02X}"))
            is_command, is_last = bool(header & 1), bool(header & 2)
            if message.setdefault("ctx", ctx) != ctx:
                self.events.append(("bad", now, f"PDV on context {ctx} inside a message on {message['ctx']}"))
            if is_command:
                if "command" in message:
                    self.events.append(("bad", now, "command fragment after the last one"))
                message["cmd"] = message.get("cmd", b"") + data
                if not is_last:
                    continue
                try:
                    command = decode_command(message["cmd"])
                except ValueError as exc:
                    self.events.append(("bad", now, f"undecodable command set: {exc}"))
                    message.clear()
                    continue
                if us(command, DST) == NO_DATASET:
                    self._message(now, ctx, command, None)
                    message.clear()
                else:
                    message["command"], message["ds"] = command, b""
            else:
                if "command" not in message:
                    self.events.append(("bad", now, "data set fragment before the command set"))
                    message.clear()
                    continue
                message["ds"] += data
                if is_last:
                    self._message(now, ctx, message["command"], message["ds"])
                    message.clear()

    def _message(self, now: tuple[float, float], ctx: int, command: dict[int, bytes], dataset: bytes | None) -> None:
        self.events.append(("msg", now, ctx, command, dataset))
        if us(command, CF) == 0x0001 and not self.wr_closed:   # a C-GET sub-operation: answer it
            uid = text(command, AFF_INST) or ""
            rsp = encode_command({CF: 0x8001, AFF_CLASS: CT, MIDR: us(command, MID) or 0, DST: NO_DATASET,
                                  STATUS: self.sub_status.get(uid, 0), AFF_INST: uid})
            self.send([pdu(0x04, pdv(ctx, True, True, rsp))])


# ------------------------------------------------------------------ requests
def echo_rq(mid: int) -> bytes:
    return encode_command({CF: 0x0030, AFF_CLASS: VERIFICATION, MID: mid, DST: NO_DATASET})


def store_rq(mid: int, uid: str) -> bytes:
    return encode_command({CF: 0x0001, AFF_CLASS: CT, MID: mid, PRIORITY: 0, DST: 0, AFF_INST: uid})


def query_rq(field_: int, sop_class: str, mid: int, **extra: str) -> bytes:
    fields: dict[int, int | str] = {CF: field_, AFF_CLASS: sop_class, MID: mid, PRIORITY: 0, DST: 0}
    if "destination" in extra:
        fields[MOVE_DEST] = extra["destination"]
    return encode_command(fields)


def identifier(**keys: str) -> bytes:
    ds = PyDataset()
    ds.QueryRetrieveLevel = "STUDY"
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return encode_ds(ds)


def cancel_rq(target: int) -> bytes:
    return encode_command({CF: 0x0FFF, MIDR: target, DST: NO_DATASET})


BAD_RQ: dict[str, tuple[bytes, str, frozenset]] = {
    # name -> (bytes, what the server owes: reject / abort / close, the allowed (source, reason))
    "called-ae-unknown": (associate_rq(called="NOBODY"), "reject", frozenset({(1, 7)})),
    "protocol-version-2": (associate_rq(version=2), "reject", frozenset({(2, 2)})),
    "application-context-unknown": (associate_rq(app="1.2.840.10008.3.1.1.9"), "reject", frozenset({(1, 2)})),
    "item-overruns-pdu": (associate_rq()[:74] + b"\xff\xff" + associate_rq()[76:], "abort", USER),
    "rq-header-4GiB": (struct.pack(">BBL", 1, 0, 0xFFFFFFFF) + bytes(64), "abort", USER),
    "p-data-before-rq": (pdu(0x04, pdv(1, True, True, echo_rq(1))), "abort", USER),
    "release-rq-before-rq": (pdu(0x05, bytes(4)), "abort", USER),
    "unknown-pdu-type": (pdu(0x08, bytes(4)), "abort", USER),
    "abort-before-rq": (pdu(0x07, bytes(4)), "close", frozenset()),
}

_AC = pdu(0x02, struct.pack(">HH16s16s32s", 1, 0, b"PEER".ljust(16), SCP_AE.encode().ljust(16), bytes(32))
          + item(0x10, APP_CONTEXT.encode()) + item(0x21, bytes([1, 0, 0, 0]) + item(0x40, EXPLICIT.encode()))
          + item(0x50, item(0x51, struct.pack(">L", 16384))))
PDU_VIOLATIONS: dict[str, tuple[bytes, frozenset]] = {
    "p-data-over-max-length": (struct.pack(">BBL", 4, 0, SERVER_MAX_PDU + 1) + bytes(100), INVALID),
    "p-data-4GiB": (struct.pack(">BBL", 4, 0, 0xFFFFFFFF) + bytes(100), INVALID),
    "pdv-overruns-pdu": (pdu(0x04, struct.pack(">LBB", 50, 1, 3) + bytes(4)), INVALID),
    "pdv-without-header": (pdu(0x04, struct.pack(">L", 1) + b"\x01"), INVALID),
    "p-data-without-pdv": (pdu(0x04, b""), INVALID),
    "pdv-on-rejected-context": (pdu(0x04, pdv(11, True, True, echo_rq(900))), INVALID | USER),
    "pdv-on-unproposed-context": (pdu(0x04, pdv(2, True, True, echo_rq(901))), INVALID | USER),
    "unknown-pdu-type": (pdu(0x08, bytes(4)), UNRECOGNIZED),
    "associate-rq": (associate_rq(), UNEXPECTED),
    "associate-ac": (_AC, UNEXPECTED),
    "associate-rj": (pdu(0x03, bytes([0, 1, 1, 1])), UNEXPECTED),
    "release-rp": (pdu(0x06, bytes(4)), UNEXPECTED),
    "release-rq-length-2": (pdu(0x05, bytes(2)), INVALID),
    "release-rq-4GiB": (struct.pack(">BBL", 5, 0, 0xFFFFFFF0) + bytes(4), INVALID),
    "abort-length-6": (pdu(0x07, bytes(6)), INVALID),
}

# Sent after the server's A-ABORT / RJ / RP (Sta13): name -> (bytes, Table 9-10's action).
STA13_STIMULI = {
    "p-data": (pdu(0x04, pdv(1, True, True, echo_rq(800))), "ignore"),      # AA-6
    "release-rq": (pdu(0x05, bytes(4)), "ignore"),
    "associate-ac": (_AC, "ignore"),
    "associate-rq": (associate_rq(), "abort"),                             # AA-7
    "unknown-pdu-type": (pdu(0x08, bytes(4)), "abort"),
    "release-rq-length-2": (pdu(0x05, bytes(2)), "abort"),
    "a-abort": (pdu(0x07, bytes(4)), "close"),                               # AA-2
}

DIMSE_VIOLATIONS = ["data-set-before-command", "command-bit-clear", "context-switch-in-command",
                    "interleaved-messages", "command-after-last-command", "data-set-before-last-command",
                    "data-set-after-echo", "undecodable-command", "command-over-64KiB",
                    "store-data-set-on-other-context", "store-command-bit-on-data-set"]
MALFORMED = ["store-truncated-data-set", "store-truncated-data-set-streamed", "store-without-data-set",
             "find-without-identifier", "find-truncated-identifier", "get-without-identifier",
             "get-truncated-identifier", "move-without-identifier", "move-truncated-identifier"]
# Cases dicomnet gets wrong: pinned below as strict xfails, left out of the machine so that it stays a
# detector of new faults.
KNOWN_FAULTS: dict[str, str] = {}   # none open: the three the machine found are fixed (see below)
STALLS = ["pdu-header", "pdu-body", "command-not-last", "store-without-data-set", "store-partial-data-set",
          "store-cut-in-data-set-pdu"]


# ----------------------------------------------------------- the machine
STATS: collections.Counter = collections.Counter()   # what the machine did, over a run


def counted(action: Any) -> Any:
    """Count the action in STATS and note it in the machine's trace (shown with a failure)."""
    def wrapper(self: Any, peer: Any = None, *args: Any, **kw: Any) -> Any:
        kind = kw.get("kind", args[0] if args and isinstance(args[0], str) else "")
        STATS[f"{action.__name__[3:]}{':' + kind if kind else ''}"] += 1
        self.trace.append(f"{time.monotonic() - self.started:7.3f} {action.__name__}({peer}"
                          f"{''.join(', ' + repr(a) for a in args)}{''.join(f', {k}={v!r}' for k, v in kw.items())})")
        return action(self, peer, *args, **kw) if peer is not None else action(self, *args, **kw)

    wrapper.__name__ = action.__name__
    return wrapper


class Failures:
    """Exceptions escaping any thread, and error records of the server's loggers."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.lock = threading.Lock()

    def add(self, what: str) -> None:
        with self.lock:
            self.items.append(what)


class _Capture(logging.Handler):
    def __init__(self, failures: Failures) -> None:
        super().__init__(logging.DEBUG)
        self.failures = failures

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.ERROR or record.exc_info or "LocalProtocolError" in message:
            self.failures.add(f"log {record.levelname} from {record.threadName}: {message}")


class ServerMachine(RuleBasedStateMachine):
    workdir = ""                       # set by the fixture
    archive: Archive | None = None
    sequence = 0

    def __init__(self) -> None:
        super().__init__()
        ServerMachine.sequence += 1
        self.folder = os.path.join(self.workdir, f"m{ServerMachine.sequence}")
        os.makedirs(self.folder)
        assert self.archive is not None
        self.handler = Handler(self.folder, self.archive)
        self.failures = Failures()
        self._hooks()
        self.threads_before = set(threading.enumerate())
        self.fds_before = _fds()
        self.server = Server(SCP_AE, self.handler, logger=self.logger, read_timeout=READ, write_timeout=WRITE,
                             artim_timeout=ARTIM, dimse_timeout=DIMSE, max_pdu=SERVER_MAX_PDU,
                             max_dataset_bytes=MAX_DATASET).start("127.0.0.1", 0)
        self.handler.port = self.server.port
        self.started = time.monotonic()
        self.trace: list[str] = []
        self.peers: list[Peer] = []
        self.slots: list[Peer | None] = [None] * MAX_PEERS
        self.moves_done: list[float] = []
        self.uid_serial = 0
        self.probe_ends: collections.deque = collections.deque(maxlen=64)
        self.shutting_down = False

    def _hooks(self) -> None:
        self.logger = logging.getLogger(f"stateful-server.{ServerMachine.sequence}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)       # not DEBUG: that would turn the compiled store lane off
        self.capture = _Capture(self.failures)
        self.logger.addHandler(self.capture)
        logging.getLogger("dicomnet").addHandler(self.capture)
        self.previous_hook = threading.excepthook

        def hook(args: Any) -> None:
            self.failures.add(f"exception in thread {getattr(args.thread, 'name', '?')}: "
                              f"{args.exc_type.__name__}: {args.exc_value}")
            self.previous_hook(args)

        threading.excepthook = hook

    # ----------------------------------------------------------- choosing
    def _live(self) -> list[Peer]:
        return [p for p in self.peers if p.phase != "done"]

    def _rotation(self, slot: int) -> list[Peer]:
        """The live peers, from ``slot`` on (the slot only decides where the search starts)."""
        return [p for p in self.slots[slot:] + self.slots[:slot] if p is not None and p.phase != "done"]

    def _free_slot(self, slot: int) -> int | None:
        for i in [*range(slot, MAX_PEERS), *range(slot)]:
            if self.slots[i] is None or self.slots[i].phase == "done":
                return i
        return None

    def _openable(self, slot: int) -> Peer | None:
        """A connected peer that has sent nothing yet (a new one if none)."""
        now = time.monotonic()
        for peer in self._rotation(slot):
            if peer.can_open(now):
                return peer
        free = self._free_slot(slot)
        if free is None:
            return None
        peer = self.slots[free] = self.do_connect()
        return peer

    def _cancellable(self, slot: int) -> Peer | None:
        for peer in self._rotation(slot):
            if (peer.ended_at is None and not peer.wr_closed and peer.verdict is None and not peer.pending
                    and any(op.kind in ("find", "get", "move") and not op.cancelled for op in peer.ops.values())):
                return peer
        return None

    def _ready(self, slot: int, window: int = 1) -> Peer | None:
        """A peer that can take a request now (with at least ``window``
        operations outstanding allowed): an idle one; else one whose
        A-ASSOCIATE-AC or responses are let come first; else a new one."""
        now = time.monotonic()
        for peer in self._rotation(slot):
            if peer.can_request(now) and peer.window >= window:
                return peer
        for peer in self._rotation(slot) if window == 1 else []:
            if (now < peer.pause_until or peer.verdict is not None or peer.pending
                    or peer.phase not in ("requested", "established")):
                continue
            limit = time.monotonic() + PROMPT + 1.0
            while (peer.phase == "requested" or peer.ops) and peer.verdict is None and time.monotonic() < limit:
                time.sleep(0.005)
                self.check_peers()
            if peer.can_request(time.monotonic()):
                return peer
        free = self._free_slot(slot)
        if free is None:
            return None
        peer = self.slots[free] = self.do_connect()
        self.do_associate(peer, window=0 if window == 1 else 4)
        limit = time.monotonic() + PROMPT
        while peer.phase == "requested" and time.monotonic() < limit:
            time.sleep(0.002)
            self.check_peers()
        return peer if peer.can_request(time.monotonic()) else None

    # ------------------------------------------------------------ actions
    @counted
    def do_connect(self, *, rcvbuf: bool = False, close_on_end: bool = True) -> Peer:
        peer = Peer(f"p{len(self.peers)}", self.server.port, rcvbuf=rcvbuf, close_on_end=close_on_end)
        self.peers.append(peer)
        port = peer.sock.getsockname()[1]
        self.trace.append(f"{time.monotonic() - self.started:7.3f} connected({peer}, port {port})")
        return peer

    @counted
    def do_associate(self, peer: Peer, *, max_pdu: int = 16384, window: int = 0) -> None:
        peer.max_pdu = max_pdu             # 0: no limit (PS3.8 D.1)
        peer.offered_window = window
        peer.phase, peer.ac_by = "requested", time.monotonic() + PROMPT
        peer.send([associate_rq(calling=f"PEER-{peer.name}", max_pdu=peer.max_pdu, window=window)])

    @counted
    def do_bad_associate(self, peer: Peer, kind: str) -> None:
        data, what, allowed = BAD_RQ[kind]
        peer.verdict = Verdict(what, kind, time.monotonic() + PROMPT, allowed)
        peer.send([data])

    def _request(self, peer: Peer, op: Op, command: bytes, dataset: bytes | None, frag: Frag,
                 trickle: bool = False, tail: str = "") -> None:
        """Send a request; ``trickle``: only its first write, the rest by
        ``continue_sending``; ``tail``: an A-RELEASE-RQ or A-ABORT in the same
        write, right behind it (the request is answered first / not at all)."""
        peer.ops[op.msgid] = op
        pdus = message_pdus(op.ctx, command, dataset, frag)
        if not trickle:
            chunks = tcp_chunks(b"".join(pdus), frag.tcp_cuts)
            if tail == "release":
                peer.verdict = Verdict("release", "A-RELEASE-RQ behind a request", op.deadline + 0.5)
                chunks[-1] += pdu(0x05, bytes(4))
            elif tail == "abort":
                self._quiet(peer, "A-ABORT behind a request")
                chunks[-1] += pdu(0x07, bytes(4))
            elif tail == "cancel":     # a C-CANCEL-RQ read with the request (nothing to cancel for C-ECHO, C-STORE)
                op.cancelled = True
                chunks[-1] += pdu(0x04, pdv(op.ctx, True, True, cancel_rq(op.msgid)))
            peer.send(chunks)
            peer.idle_since = time.monotonic()
            return
        ends, stream = set(), b""
        for one in pdus:
            stream += one
            ends.add(len(stream))
        chunks = tcp_chunks(stream, frag.tcp_cuts or (500,))
        offsets = [sum(map(len, chunks[:i + 1])) for i in range(len(chunks))]
        peer.pending = [(c, any(start < e <= end for e in ends), end in ends)
                        for c, start, end in zip(chunks, [0, *offsets], offsets)]
        peer.pdu_done_at = peer.idle_since     # the server has waited for this PDU since then
        op.deadline -= time.monotonic()        # relative until the last write (see do_continue)
        self.do_continue(peer, 1)

    @counted
    def do_continue(self, peer: Peer, n: int) -> None:
        """The next ``n`` writes of a trickled request -- unless the server's
        read timeout may have passed since the last whole PDU: then it is a stall."""
        if time.monotonic() - peer.pdu_done_at > READ - FRESH:
            self._stalled(peer, f"trickled request left for {time.monotonic() - peer.pdu_done_at:.2f} s")
            return
        for chunk, completes, on_boundary in peer.pending[:n]:
            peer.send([chunk])
            peer.partial = not on_boundary
            if completes:
                peer.pdu_done_at = time.monotonic()
        del peer.pending[:n]
        if not peer.pending:
            now = time.monotonic()
            for op in peer.ops.values():
                op.deadline = now + op.deadline
            peer.idle_since = now

    def _stalled(self, peer: Peer, why: str) -> None:
        base = peer.pdu_done_at if peer.pending else peer.idle_since
        peer.pending.clear()
        peer.stalled = True
        for op in peer.ops.values():
            op.optional = True
        peer.verdict = Verdict("abort", why, base + READ + LATE, USER, not_before=base + READ - EARLY, stall=True)

    @counted
    def do_echo(self, peer: Peer, frag: Frag = WHOLE, trickle: bool = False, tail: str = "") -> None:
        mid = peer.message_id()
        self._request(peer, Op("echo", mid, 1, VERIFICATION, time.monotonic() + PROMPT), echo_rq(mid), None, frag,
                      trickle, tail)

    def _store_op(self, peer: Peer, size: int, status: int, streamed: bool, **kw: Any) -> tuple[Op, bytes]:
        self.uid_serial += 1
        uid = f"{UID_ROOT}.50.{2 * self.uid_serial + (0 if streamed else 1)}"
        pixels = random.Random(uid).randbytes(size)
        data = encode_ds(ct_dataset(uid, pixels, f"STATUS-{status:04X}"))
        op = Op("store", peer.message_id(), 3, CT, time.monotonic() + PROMPT, status=status, uid=uid, data=data,
                digest=hashlib.sha256(pixels).hexdigest(), streamed=streamed, **kw)
        return op, store_rq(op.msgid, uid)

    @counted
    def do_store(self, peer: Peer, size: int = 200, status: int = 0, streamed: bool = False,
                 frag: Frag = WHOLE, trickle: bool = False, tail: str = "") -> None:
        op, command = self._store_op(peer, size, status, streamed)
        self._request(peer, op, command, op.data, frag, trickle, tail)

    @counted
    def do_store_over_cap(self, peer: Peer, streamed: bool) -> None:
        """300 kB: a data set held in memory crosses max_dataset_bytes (A-ABORT); a streamed one is stored."""
        op, command = self._store_op(peer, 300_000, 0, streamed, optional=not streamed)
        if not streamed:
            peer.verdict = Verdict("abort", "data set over max_dataset_bytes", time.monotonic() + PROMPT,
                                   DIMSE_FAULT)
        self._request(peer, op, command, op.data, WHOLE)

    @counted
    def do_find(self, peer: Peer, patient: str = "FIND2", frag: Frag = WHOLE, trickle: bool = False,
                tail: str = "") -> None:
        mid = peer.message_id()
        n = int(patient[4:]) if patient.startswith("FIND") else 0
        op = Op("find", mid, 5, FIND, time.monotonic() + PROMPT + n * FIND_DELAY, patient=patient, n=n)
        self._request(peer, op, query_rq(0x0020, FIND, mid),
                      identifier(PatientID=patient, StudyInstanceUID=""), frag, trickle, tail)

    @counted
    def do_get(self, peer: Peer, study: str = "A", fail: str = "none", frag: Frag = WHOLE) -> None:
        mid = peer.message_id()
        uids = tuple(self.archive.studies[study])  # type: ignore[union-attr]
        failing = frozenset(uids if fail == "all" else uids[1:] if fail == "big" else ())
        peer.sub_status = {uid: 0xA700 for uid in failing}
        op = Op("get", mid, 9, GET, time.monotonic() + PROMPT + 1.0, n=len(uids), uids=uids, failing=failing)
        self._request(peer, op, query_rq(0x0010, GET, mid), identifier(StudyInstanceUID=Archive.study_uid(study)),
                      frag)

    @counted
    def do_move(self, peer: Peer, study: str = "A", destination: str = SCP_AE, frag: Frag = WHOLE) -> None:
        mid = peer.message_id()
        uids = tuple(self.archive.studies[study])  # type: ignore[union-attr]
        op = Op("move", mid, 7, MOVE, time.monotonic() + PROMPT + 1.0, n=len(uids), uids=uids,
                destination=destination, originator=f"PEER-{peer.name}")
        self._request(peer, op, query_rq(0x0021, MOVE, mid, destination=destination),
                      identifier(StudyInstanceUID=Archive.study_uid(study)), frag)

    @counted
    def do_pipeline(self, peer: Peer, kinds: list[str], one_pdu: bool = False) -> None:
        """Several requests in one write, as the negotiated window allows (all
        their PDVs in one P-DATA-TF with ``one_pdu``): all answered."""
        stream = b""
        for kind in kinds[:peer.window]:
            if kind == "echo":
                mid = peer.message_id()
                op, command, data = Op("echo", mid, 1, VERIFICATION, time.monotonic() + PROMPT), echo_rq(mid), None
            else:
                op, command = self._store_op(peer, 20000 if kind == "big" else 300, 0, kind == "streamed")
                data = op.data
            peer.ops[op.msgid] = op
            stream += b"".join(message_pdus(op.ctx, command, data, WHOLE))
        if one_pdu:
            pdvs, pos = b"", 0
            while pos < len(stream):
                n = struct.unpack_from(">L", stream, pos + 2)[0]
                pdvs, pos = pdvs + stream[pos + 6:pos + 6 + n], pos + 6 + n
            stream = pdu(0x04, pdvs) if len(pdvs) <= SERVER_MAX_PDU else stream
        peer.send([stream])
        peer.idle_since = time.monotonic()

    @counted
    def do_malformed_request(self, peer: Peer, kind: str) -> None:
        """A request the SCP cannot understand: a failure status is due, the association goes on."""
        mid = peer.message_id()
        op, _ = self._store_op(peer, 2000, 0, kind.endswith("streamed"), failure=True)
        op.msgid, op.deadline = mid, time.monotonic() + PROMPT
        study = Archive.study_uid("A").encode()
        study += b"\0" * (len(study) & 1)
        ident = identifier(PatientID="FIND1", StudyInstanceUID=study.decode().rstrip("\0"))
        assert ident.endswith(struct.pack("<H", len(study)) + study)
        # The last element (Study Instance UID) claims 200 bytes more than there are.
        truncated = ident[:-len(study) - 2] + struct.pack("<H", len(study) + 200) + study
        fields = {"find": (0x0020, FIND, 5), "get": (0x0010, GET, 9), "move": (0x0021, MOVE, 7)}
        if kind.startswith("store"):
            no_data = kind == "store-without-data-set"
            command = encode_command({CF: 0x0001, AFF_CLASS: CT, MID: mid, PRIORITY: 0,
                                      DST: NO_DATASET if no_data else 0, AFF_INST: op.uid})
            # Pixel Data claims 1000 bytes more than the data set holds.
            data = None if no_data else op.data[:-2004] + struct.pack("<L", 3000) + op.data[-2000:]
            assert no_data or op.data[-2004:-2000] == struct.pack("<L", 2000)
            peer.ops[mid] = op
            peer.send([b"".join(message_pdus(3, command, data, WHOLE))])
        else:
            service, _, how = kind.partition("-")
            field_, sop_class, ctx = fields[service]
            fields_: dict[int, int | str] = {CF: field_, AFF_CLASS: sop_class, MID: mid, PRIORITY: 0,
                                             DST: NO_DATASET if how == "without-identifier" else 0}
            if service == "move":
                fields_[MOVE_DEST] = SCP_AE
            command = encode_command(fields_)
            peer.ops[mid] = Op(service, mid, ctx, sop_class, time.monotonic() + PROMPT, failure=True,
                               destination=SCP_AE)
            peer.send([b"".join(message_pdus(ctx, command, None if how == "without-identifier" else truncated,
                                             WHOLE))])
        peer.idle_since = time.monotonic()

    @counted
    def do_cancel(self, peer: Peer) -> None:
        ops = [op for op in peer.ops.values() if op.kind in ("find", "get", "move") and not op.cancelled]
        if ops:
            ops[0].cancelled = True
            target, ctx = ops[0].msgid, ops[0].ctx
        else:   # C-CANCEL of an operation that is over (or never was): no response
            target, ctx = peer.next_id + 100, 5
        peer.send([pdu(0x04, pdv(ctx, True, True, cancel_rq(target)))])
        if not peer.ops:
            peer.idle_since = time.monotonic()

    @counted
    def do_unknown_command(self, peer: Peer) -> None:
        mid = peer.message_id()
        command = encode_command({CF: 0x0FF0, AFF_CLASS: VERIFICATION, MID: mid, DST: NO_DATASET})
        self._request(peer, Op("unknown", mid, 1, None, time.monotonic() + PROMPT), command, None, WHOLE)

    @counted
    def do_dimse_violation(self, peer: Peer, kind: str) -> None:
        mid = peer.message_id()
        echo = echo_rq(mid)
        store_op, store = self._store_op(peer, 200, 0, mid % 2 == 0)
        data = store_op.data
        pdus = {
            "data-set-before-command": [pdu(4, pdv(3, False, True, data))],
            "command-bit-clear": [pdu(4, pdv(1, False, True, echo))],
            "context-switch-in-command": [pdu(4, pdv(1, True, False, echo[:20]) + pdv(5, True, True, echo[20:]))],
            "interleaved-messages": [pdu(4, pdv(1, True, False, echo[:20])),
                                     pdu(4, pdv(5, True, True, query_rq(0x0020, FIND, mid + 1000))),
                                     pdu(4, pdv(1, True, True, echo[20:]))],
            "command-after-last-command": [pdu(4, pdv(3, True, True, store)), pdu(4, pdv(3, True, True, echo))],
            "data-set-before-last-command": [pdu(4, pdv(3, True, False, store[:30]) + pdv(3, False, True, data))],
            "data-set-after-echo": [pdu(4, pdv(1, True, True, echo)), pdu(4, pdv(1, False, True, data))],
            "undecodable-command": [pdu(4, pdv(1, True, True, echo[:-3]))],
            "command-over-64KiB": [pdu(4, pdv(1, True, False, bytes(30000))) for _ in range(3)]
                                  + [pdu(4, pdv(1, True, True, echo))],
            "store-data-set-on-other-context": [pdu(4, pdv(3, True, True, store)),
                                                pdu(4, pdv(3, False, False, data[:100])),
                                                pdu(4, pdv(1, False, True, data[100:]))],
            "store-command-bit-on-data-set": [pdu(4, pdv(3, True, True, store)),
                                              pdu(4, pdv(3, False, False, data[:100])),
                                              pdu(4, pdv(3, True, True, data[100:]))],
        }[kind]
        if kind == "data-set-after-echo":
            peer.ops[mid] = Op("echo", mid, 1, VERIFICATION, time.monotonic() + PROMPT, optional=True)
        peer.verdict = Verdict("abort", kind, time.monotonic() + PROMPT, DIMSE_FAULT)
        peer.send(pdus)

    @counted
    def do_pdu_violation(self, peer: Peer, kind: str) -> None:
        data, allowed = PDU_VIOLATIONS[kind]
        peer.verdict = Verdict("abort", kind, time.monotonic() + PROMPT, allowed)
        peer.send([data])

    @counted
    def do_stall(self, peer: Peer, kind: str, cut: int = 500) -> None:
        """Part of a PDU or of a message, then silence: read_timeout (AA-1), or ARTIM before the RQ."""
        if peer.phase == "open":
            rq = associate_rq()
            peer.stalled = True
            peer.verdict = Verdict("close", "partial A-ASSOCIATE-RQ", peer.connected_at + ARTIM + LATE,
                                   not_before=peer.connected_at + ARTIM - EARLY, stall=True)
            peer.partial = True
            peer.send([rq[:max(1, len(rq) * cut // 1000)]])
            return
        mid = peer.message_id()
        echo = pdu(4, pdv(1, True, True, echo_rq(mid)))
        op, store = self._store_op(peer, 40000, 0, cut % 2 == 0)
        data_pdu = pdu(4, pdv(3, False, False, op.data[:30000]))
        whole, partial = {
            "pdu-header": ([], echo[:1 + cut * 4 // 1000]),
            "pdu-body": ([], echo[:6 + max(1, (len(echo) - 7) * cut // 1000)]),
            "command-not-last": ([pdu(4, pdv(1, True, False, echo_rq(mid)))], b""),
            "store-without-data-set": ([pdu(4, pdv(3, True, True, store))], b""),
            "store-partial-data-set": ([pdu(4, pdv(3, True, True, store)), data_pdu], b""),
            "store-cut-in-data-set-pdu": ([pdu(4, pdv(3, True, True, store))],
                                          data_pdu[:7 + (len(data_pdu) - 8) * cut // 1000]),
        }[kind]
        if whole:
            peer.send(whole)
            peer.idle_since = time.monotonic()
        if partial:
            peer.partial = True
            peer.send([partial])
        self._stalled(peer, f"stalled ({kind})")

    @counted
    def do_release(self, peer: Peer) -> None:
        extra = max((op.deadline for op in peer.ops.values()), default=0.0)
        peer.verdict = Verdict("release", "A-RELEASE-RQ", max(time.monotonic() + PROMPT, extra + 0.5))
        peer.send([pdu(0x05, bytes(4))])

    def _quiet(self, peer: Peer, why: str) -> None:
        peer.pending.clear()
        for op in peer.ops.values():
            op.optional = True
        peer.verdict = Verdict("close", why, time.monotonic() + PROMPT)

    @counted
    def do_abort(self, peer: Peer) -> None:
        self._quiet(peer, "our A-ABORT")
        peer.send([pdu(0x07, bytes([0, 0, 0, 0]))])

    @counted
    def do_half_close(self, peer: Peer) -> None:
        self._quiet(peer, "our half-close")
        with peer.send_lock:
            peer.wr_closed = True
            try:
                peer.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    @counted
    def do_reset(self, peer: Peer) -> None:
        peer.close(reset=True)

    @counted
    def do_pause(self, peer: Peer, seconds: float) -> None:
        peer.pause_until = time.monotonic() + seconds

    @counted
    def do_sta13_stimulus(self, peer: Peer, kind: str) -> None:
        """A PDU after the server ended the association (PS3.8 Table 9-10, Sta13):
        AA-6 ignores it, AA-7 answers an A-ABORT, AA-2 closes at once."""
        data, action = STA13_STIMULI[kind]
        now = time.monotonic()
        if action == "abort":
            peer.sta13 = ("abort", now + PROMPT, now)
        elif action == "close":     # before ARTIM would have closed it
            peer.sta13 = ("close", (peer.ended_at or now) + ARTIM - 0.1, now)
        peer.send([data])

    @counted
    def do_stop_reading(self, peer: Peer) -> None:
        """Read nothing for longer than write_timeout: whatever the server was
        sending, it gives up on this peer (write timeout, read timeout) and
        closes -- while serving everybody else."""
        self.do_pause(peer, WRITE + 1.0)
        for op in peer.ops.values():
            op.optional = True
        peer.pending.clear()
        peer.verdict = Verdict("any", "not reading", peer.pause_until + READ + ARTIM + LATE, LEGAL_ABORTS)

    # ------------------------------------------------------------- rules
    # Every rule draws a slot (not a peer chosen by state): the state of a
    # peer depends on timing, and hypothesis needs the same draws on replay.
    # A rule whose slot is not in a state for it does nothing.
    @rule(slot=SLOTS, rcvbuf=st.booleans(), close_on_end=st.booleans(), associate=st.booleans(),
          max_pdu=PEER_PDUS, window=WINDOWS)
    def connect(self, slot: int, rcvbuf: bool, close_on_end: bool, associate: bool, max_pdu: int,
                window: int) -> None:
        if self.slots[slot] is None or self.slots[slot].phase == "done":
            peer = self.slots[slot] = self.do_connect(rcvbuf=rcvbuf, close_on_end=close_on_end)
            if associate:
                self.do_associate(peer, max_pdu=max_pdu, window=window)

    @rule(slot=SLOTS, max_pdu=PEER_PDUS, window=WINDOWS)
    def associate(self, slot: int, max_pdu: int, window: int) -> None:
        if peer := self._openable(slot):
            self.do_associate(peer, max_pdu=max_pdu, window=window)

    @rule(slot=SLOTS, kind=st.sampled_from(sorted(BAD_RQ)))
    def bad_associate(self, slot: int, kind: str) -> None:
        if peer := self._openable(slot):
            self.do_bad_associate(peer, kind)

    @rule(slot=SLOTS, frag=FRAGS, trickle=st.booleans(), tail=TAILS)
    def echo(self, slot: int, frag: Frag, trickle: bool, tail: str) -> None:
        if peer := self._ready(slot):
            self.do_echo(peer, frag, trickle, tail)

    @rule(slot=SLOTS, size=st.sampled_from([200, 20000, 100000]), status=st.sampled_from([0, 0xB000, 0xA700]),
          streamed=st.booleans(), frag=FRAGS, trickle=st.booleans(), tail=TAILS)
    def store(self, slot: int, size: int, status: int, streamed: bool, frag: Frag, trickle: bool, tail: str) -> None:
        if peer := self._ready(slot):
            self.do_store(peer, size, status, streamed, frag, trickle, tail)

    @rule(slot=SLOTS, streamed=st.booleans())
    def store_over_cap(self, slot: int, streamed: bool) -> None:
        if peer := self._ready(slot):
            self.do_store_over_cap(peer, streamed)

    @rule(slot=SLOTS, patient=st.sampled_from(["FIND0", "FIND1", "FIND4", "FAIL"]), frag=FRAGS, trickle=st.booleans(),
          tail=TAILS)
    def find(self, slot: int, patient: str, frag: Frag, trickle: bool, tail: str) -> None:
        if peer := self._ready(slot):
            self.do_find(peer, patient, frag, trickle, tail)

    @rule(slot=SLOTS, study=st.sampled_from(["A", "B", "none"]), fail=st.sampled_from(["none", "big", "all"]),
          frag=FRAGS)
    def get(self, slot: int, study: str, fail: str, frag: Frag) -> None:
        if peer := self._ready(slot):
            self.do_get(peer, study, fail, frag)

    @rule(slot=SLOTS, study=st.sampled_from(["A", "B", "none"]), destination=st.sampled_from([SCP_AE, "NOWHERE"]),
          frag=FRAGS)
    def move(self, slot: int, study: str, destination: str, frag: Frag) -> None:
        if peer := self._ready(slot):
            self.do_move(peer, study, destination, frag)

    @rule(slot=SLOTS, n=st.integers(1, 3))
    def continue_sending(self, slot: int, n: int) -> None:
        if peer := next((p for p in self._rotation(slot) if p.pending and p.verdict is None), None):
            self.do_continue(peer, n)

    @rule(slot=SLOTS)
    def cancel(self, slot: int) -> None:
        """C-CANCEL of the operation under way, or (idle) of one that is over: no response to that."""
        if (peer := self._cancellable(slot)) or (peer := self._ready(slot)):
            self.do_cancel(peer)

    @rule(slot=SLOTS, kinds=st.lists(st.sampled_from(["echo", "memory", "streamed", "big"]), min_size=2, max_size=4),
          one_pdu=st.booleans())
    def pipeline(self, slot: int, kinds: list[str], one_pdu: bool) -> None:
        if peer := self._ready(slot, window=2):
            self.do_pipeline(peer, kinds, one_pdu)

    @rule(slot=SLOTS, kind=st.sampled_from([k for k in MALFORMED if k not in KNOWN_FAULTS]))
    def malformed_request(self, slot: int, kind: str) -> None:
        if peer := self._ready(slot):
            self.do_malformed_request(peer, kind)

    @rule(slot=SLOTS)
    def unknown_command(self, slot: int) -> None:
        if peer := self._ready(slot):
            self.do_unknown_command(peer)

    @rule(slot=SLOTS, kind=st.sampled_from(DIMSE_VIOLATIONS))
    def dimse_violation(self, slot: int, kind: str) -> None:
        if peer := self._ready(slot):
            self.do_dimse_violation(peer, kind)

    @rule(slot=SLOTS, kind=st.sampled_from(sorted(PDU_VIOLATIONS)))
    def pdu_violation(self, slot: int, kind: str) -> None:
        if peer := self._ready(slot):
            self.do_pdu_violation(peer, kind)

    @rule(slot=SLOTS, kind=st.sampled_from(STALLS), cut=st.integers(0, 999))
    def stall(self, slot: int, kind: str, cut: int) -> None:
        if (peer := self._openable(slot)) or (peer := self._ready(slot)):
            self.do_stall(peer, kind, cut)

    @rule(slot=SLOTS)
    def release(self, slot: int) -> None:
        """Idle, or with a C-FIND under way: its responses come first, then the A-RELEASE-RP."""
        peer = self._cancellable(slot)
        if peer is not None and all(op.kind == "find" for op in peer.ops.values()) or (peer := self._ready(slot)):
            self.do_release(peer)

    @rule(slot=SLOTS)
    def abort(self, slot: int) -> None:
        if peer := next((p for p in self._rotation(slot) if p.can_end() and not p.partial), None):
            self.do_abort(peer)

    @rule(slot=SLOTS)
    def half_close(self, slot: int) -> None:
        if peer := next((p for p in self._rotation(slot) if p.can_end()), None):
            self.do_half_close(peer)

    @rule(slot=SLOTS)
    def reset(self, slot: int) -> None:
        if peer := next(iter(self._rotation(slot)), None):
            self.do_reset(peer)

    @rule(slot=SLOTS, seconds=st.sampled_from([0.2, 0.5]))
    def pause_reading(self, slot: int, seconds: float) -> None:
        if peer := next((p for p in self._rotation(slot) if time.monotonic() >= p.pause_until), None):
            self.do_pause(peer, seconds)

    @rule(slot=SLOTS, how=st.sampled_from(["A-RELEASE-RP", "A-ASSOCIATE-RJ", "A-ABORT in Sta2",
                                           "A-ABORT for an unknown PDU type in Sta2", "A-ABORT in Sta6",
                                           "A-ABORT for a DIMSE fault"]),
          kind=st.sampled_from(sorted(STA13_STIMULI)))
    def sta13_stimulus(self, slot: int, how: str, kind: str) -> None:
        """Have the server end an association (``how``), then send ``kind`` in its Sta13."""
        peer = self._openable(slot) if how == "A-ASSOCIATE-RJ" or how.endswith("Sta2") else self._ready(slot)
        if peer is None:
            return
        peer.close_on_end = False
        if how == "A-RELEASE-RP":
            self.do_release(peer)
        elif how == "A-ASSOCIATE-RJ":
            self.do_bad_associate(peer, "called-ae-unknown")
        elif how == "A-ABORT in Sta2":
            self.do_bad_associate(peer, "release-rq-before-rq")
        elif how == "A-ABORT for an unknown PDU type in Sta2":
            self.do_bad_associate(peer, "unknown-pdu-type")
        elif how == "A-ABORT in Sta6":
            self.do_pdu_violation(peer, "associate-ac")
        else:
            self.do_dimse_violation(peer, "data-set-before-command")
        limit = time.monotonic() + PROMPT
        while peer.ended_at is None and peer.phase != "done" and time.monotonic() < limit:
            time.sleep(0.002)
            self.check_peers()
        if peer.phase != "done" and peer.ended_at is not None and time.monotonic() < peer.ended_at + ARTIM - 0.35:
            self.do_sta13_stimulus(peer, kind)

    @rule(slot=SLOTS)
    def stop_reading(self, slot: int) -> None:
        if peer := next((p for p in self._rotation(slot) if p.phase == "established" and p.verdict is None
                         and p.ended_at is None and time.monotonic() >= p.pause_until), None):
            self.do_stop_reading(peer)

    @rule(seconds=st.sampled_from([0.05, 0.3, 0.8]))
    def let_time_pass(self, seconds: float) -> None:
        time.sleep(seconds)

    # ---------------------------------------------------------- checking
    @invariant()
    def check(self) -> None:
        self.check_peers()
        assert not self.failures.items, self.failures.items
        self.check_association_count()
        self.probe()

    def check_peers(self) -> None:
        for peer in list(self.peers):
            while peer.events and peer.phase != "done":
                self._take(peer, peer.events.popleft())
            if peer.phase != "done":
                self._deadlines(peer, time.monotonic())
            else:
                peer.events.clear()    # what came after we closed our end

    def _fail(self, peer: Peer, message: str) -> None:
        mine = [line for line in self.trace if f"({peer}" in line or f"({peer}," in line][-12:]
        raise AssertionError(f"{peer}: {message} [at {time.monotonic() - self.started:.3f}; "
                             f"{peer} did: {'; '.join(mine)}]")

    def _take(self, peer: Peer, event: tuple) -> None:
        kind, t = event[0], event[1]     # t: (after, before)
        if self.shutting_down and kind in ("pdu", "eof"):
            # Server.shutdown(): A-ABORT (service-user: the application ends it) and close.
            if kind == "eof" or (event[2] == 0x07 and event[3] == bytes([0, 0, 0, 0])):
                peer.close()
                return
            if event[2] == 0x02 and peer.phase == "requested":
                peer.phase = "established"
                return
        if kind in ("crash", "bad"):
            self._fail(peer, f"{'harness reader crashed' if kind == 'crash' else 'server broke framing'}: {event[2]}")
        elif kind == "send-failed":
            pass   # the server closed first: what it sent before says whether it could
        elif kind == "msg":
            self._on_message(peer, t, *event[2:])
        elif kind == "pdu":
            self._on_pdu(peer, t, event[2], event[3])
        elif kind == "eof":
            self._on_eof(peer, t)

    def _idle_abort_ok(self, peer: Peer, t: tuple[float, float]) -> bool:
        """AA-1 at read_timeout: an established association with nothing due, idle long enough."""
        base = peer.pdu_done_at if peer.pending else peer.idle_since
        return peer.phase == "established" and not peer.required and t[1] - base >= READ - EARLY

    def _on_pdu(self, peer: Peer, t: tuple[float, float], pdu_type: int, body: bytes) -> None:
        v = peer.verdict
        if v is not None and v.what == "any":
            assert pdu_type == 0x07 and len(body) == 4 and (body[2], body[3]) in v.allowed, \
                f"{peer}: PDU {pdu_type:02X}H {body[:16].hex()} to a peer that stopped reading"
            peer.ended_at, peer.ended_late = t
            return
        if peer.ended_at is not None:
            # Sta13: only AA-7 sends anything -- an A-ABORT for an A-ASSOCIATE-RQ or an invalid PDU.
            due = peer.sta13
            if pdu_type == 0x07 and due is not None and due[0] == "abort" and len(body) == 4 \
                    and (body[2], body[3]) in LEGAL_ABORTS:
                peer.sta13 = None
                return
            self._fail(peer, f"PDU {pdu_type:02X}H in Sta13 (after the association ended, {peer.ended_how}): "
                             f"{body[:16].hex()}")
        if pdu_type == 0x02:
            if peer.phase != "requested" or v is not None:
                self._fail(peer, f"unexpected A-ASSOCIATE-AC (verdict {v})")
            assert t[0] <= peer.ac_by, f"{peer}: A-ASSOCIATE-AC {t[0] - peer.ac_by:.2f} s late"
            contexts, max_length, roles, window = parse_ac(body)
            for cid, (abstract, syntaxes) in CONTEXTS.items():
                result, ts = contexts.get(cid, (None, ""))
                if abstract == UNKNOWN_SOP:
                    assert result == 3, f"{peer}: context {cid} of an unknown SOP class: result {result}"
                else:
                    assert result == 0 and ts in syntaxes, f"{peer}: context {cid}: result {result}, {ts!r}"
            assert max_length == SERVER_MAX_PDU, f"{peer}: Maximum Length {max_length}"
            assert roles.get(CT, (0, 0))[1] == 1, f"{peer}: SCP role for CT not accepted: {roles}"
            if peer.offered_window:
                # PS3.7 D.3.3.3: the acceptor invokes at most what we perform, performs at most what we invoke.
                assert window is not None and 1 <= window[0] <= peer.offered_window \
                    and 1 <= window[1] <= peer.offered_window, f"{peer}: window {window}"
                peer.window = window[1]
            else:
                assert window is None, f"{peer}: an Asynchronous Operations Window nobody offered: {window}"
            peer.phase, peer.idle_since = "established", t[0]
            return
        if pdu_type == 0x03:
            ok = (v is not None and v.what == "reject" and len(body) == 4 and body[1] in (1, 2)
                  and (body[2], body[3]) in v.allowed and t[0] <= v.by)
            if not ok:
                self._fail(peer, f"A-ASSOCIATE-RJ {body.hex()} (expected {v})")
        elif pdu_type == 0x06:
            if v is None or v.what != "release" or peer.required or t[0] > v.by:
                self._fail(peer, f"A-RELEASE-RP (expected {v}; due {[op.kind for op in peer.required]})")
        elif pdu_type == 0x07:
            pair = (body[2], body[3]) if len(body) == 4 else None
            if pair not in LEGAL_ABORTS:
                self._fail(peer, f"A-ABORT {body.hex()} is not a PS3.8 9.3.8 source/reason")
            expected = (v is not None and v.what == "abort" and pair in v.allowed
                        and v.not_before <= t[1] and t[0] <= v.by)
            if not (expected or (pair == (0, 0) and self._idle_abort_ok(peer, t))):
                idle = t[1] - peer.idle_since
                self._fail(peer, f"A-ABORT {pair} after {idle:.2f} s idle (expected {v}; "
                                 f"due {[op.kind for op in peer.required]})")
        else:
            self._fail(peer, f"unexpected PDU type {pdu_type:02X}H: {body[:16].hex()}")
        peer.ended_at, peer.ended_late = t
        peer.ended_how = {0x03: "A-ASSOCIATE-RJ", 0x06: "A-RELEASE-RP"}.get(
            pdu_type, "A-ABORT in Sta6" if peer.phase == "established" else "A-ABORT in Sta2")
        peer.ops.clear()
        if peer.close_on_end:
            peer.close()

    def _on_eof(self, peer: Peer, t: tuple[float, float]) -> None:
        v = peer.verdict
        if v is not None and v.what == "any":
            ok, why = t[0] <= v.by, f"{t[0] - v.by:.2f} s after it was due ({v.why})"
        elif v is not None and v.what == "close" and not v.stall:
            ok = t[0] <= max(v.by, peer.pause_until + LATE)
            why = "after our A-ABORT / half-close"
        elif peer.sta13 is not None and peer.sta13[0] == "abort":     # AA-7 owed first
            ok, why = False, f"in Sta13 ({peer.ended_how}) without the A-ABORT owed (AA-7) for what we sent"
        elif peer.sta13 is not None and peer.sta13[0] == "close":     # AA-2: at once
            ok = t[0] <= peer.sta13[1]
            why = f"{t[0] - peer.sta13[2]:.2f} s after our A-ABORT in Sta13 ({peer.ended_how}), not at once"
        elif peer.ended_at is not None:     # Sta13: the server closes when ARTIM expires
            ok = (t[1] - peer.ended_at >= ARTIM - EARLY
                  and t[0] - peer.ended_late <= ARTIM + LATE + max(0.0, peer.pause_until - peer.ended_late))
            why = f"{t[1] - peer.ended_at:.2f} s after the server ended the association (ARTIM {ARTIM} s)"
        elif peer.phase == "open" and (v is None or v.what == "close" or v.stall):
            ok = t[1] - peer.connected_at >= ARTIM - EARLY
            why = f"{t[1] - peer.connected_at:.2f} s after connecting, no A-ASSOCIATE-RQ (ARTIM {ARTIM} s)"
        else:
            ok, why = False, f"without A-ABORT / RJ / RP (phase {peer.phase}, expected {v})"
        if not ok or (peer.required and (v is None or v.what != "close")):
            self._fail(peer, f"server closed the connection {why}; due {[op.kind for op in peer.required]}")
        peer.close()

    def _on_message(self, peer: Peer, t: tuple[float, float], ctx: int, cmd: dict[int, bytes],
                    ds: bytes | None) -> None:
        if peer.ended_at is not None:
            self._fail(peer, "P-DATA after the association ended")
        if peer.verdict is not None and peer.verdict.what == "any" and us(cmd, MIDR) not in peer.ops \
                and us(cmd, CF) != 0x0001:
            return   # e.g. the rest of a C-FIND's Pending responses
        field_ = us(cmd, CF)
        if field_ == 0x0001:   # a C-STORE sub-operation of our C-GET
            gets = [op for op in peer.ops.values() if op.kind == "get"]
            assert gets, f"{peer}: C-STORE-RQ without a C-GET under way"
            op, uid = gets[0], text(cmd, AFF_INST)
            assert ctx == CTX[CT] and text(cmd, AFF_CLASS) == CT, f"{peer}: sub-operation on context {ctx}"
            assert uid in op.uids and uid not in op.seen, f"{peer}: sub-operation for {uid} (C-GET of {op.uids})"
            assert ds == self.archive.data[uid], f"{peer}: C-GET delivered other bytes for {uid}"  # type: ignore
            assert ORIG_AE not in cmd, f"{peer}: Move Originator in a C-GET sub-operation"
            op.seen.add(uid)
            return
        mid = us(cmd, MIDR)
        op = peer.ops.get(mid)  # type: ignore[arg-type]
        if op is None:
            fields = sorted((hex(k), v.hex()) for k, v in cmd.items())
            self._fail(peer, f"response to {mid} that nothing awaits: {fields}")
        assert op is not None
        status = us(cmd, STATUS)
        where = f"{peer}: {op.kind} {op.msgid}"
        assert not peer.pending, f"{where}: answered before the whole request was sent"
        assert ctx == op.ctx, f"{where}: response on context {ctx}"
        assert status is not None, f"{where}: response without a Status"
        if op.kind == "unknown":
            assert field_ is not None and field_ & 0x8000 and status == 0x0211, f"{where}: {field_} 0x{status:04X}"
        else:
            expected_field = {"echo": 0x8030, "store": 0x8001, "find": 0x8020, "get": 0x8010, "move": 0x8021}[op.kind]
            assert field_ == expected_field, f"{where}: CommandField {field_}"
            assert text(cmd, AFF_CLASS) == op.sop_class, f"{where}: Affected SOP Class {text(cmd, AFF_CLASS)}"
        done = getattr(self, f"_{op.kind}_response")(op, where, cmd, status, ds)
        if done:
            del peer.ops[op.msgid]
            if not peer.ops:
                peer.idle_since = t[0]

    def _echo_response(self, op: Op, where: str, cmd: dict, status: int, ds: bytes | None) -> bool:
        assert status == 0 and ds is None, f"{where}: status 0x{status:04X}"
        return True

    def _unknown_response(self, op: Op, where: str, cmd: dict, status: int, ds: bytes | None) -> bool:
        return True   # 0x0211, checked in _on_message

    def _store_response(self, op: Op, where: str, cmd: dict, status: int, ds: bytes | None) -> bool:
        if op.failure:
            assert status in FAILURES and ds is None, f"{where}: a malformed C-STORE answered 0x{status:04X}"
            assert text(cmd, AFF_INST) == op.uid, f"{where}: Affected SOP Instance {text(cmd, AFF_INST)}"
            return True
        assert status == op.status and ds is None, f"{where}: status 0x{status:04X}, expected 0x{op.status:04X}"
        assert text(cmd, AFF_INST) == op.uid, f"{where}: Affected SOP Instance {text(cmd, AFF_INST)}"
        with self.handler.lock:
            record = self.handler.stored.get(op.uid)
        assert record is not None and record[0] == op.digest, f"{where}: handler got {record}"
        if op.streamed:
            path = os.path.join(self.folder, op.uid + ".dcm")
            assert os.path.exists(path) and dataset_part(path) == op.data, f"{where}: streamed file differs"
        return True

    def _find_response(self, op: Op, where: str, cmd: dict, status: int, ds: bytes | None) -> bool:
        if op.failure:
            assert status in FAILURES and ds is None, f"{where}: a malformed request answered 0x{status:04X}"
            return True
        if status in (0xFF00, 0xFF01):
            assert ds is not None, f"{where}: Pending without an Identifier"
            match = decode_ds(ds)
            assert match.PatientID == op.patient and "StudyInstanceUID" in match, f"{where}: match {match}"
            op.pendings += 1
            assert op.pendings <= op.n, f"{where}: {op.pendings} matches of {op.n}"
            return False
        assert ds is None, f"{where}: final response with an Identifier"
        if op.patient == "FAIL":
            assert status == 0xA900 and COMMENT in cmd, f"{where}: status 0x{status:04X}"
        elif op.cancelled:
            assert status == 0xFE00 or (status == 0 and op.pendings == op.n), \
                f"{where}: cancelled: 0x{status:04X} after {op.pendings} of {op.n}"
        else:
            assert status == 0 and op.pendings == op.n, f"{where}: 0x{status:04X} after {op.pendings} of {op.n}"
        return True

    def _get_response(self, op: Op, where: str, cmd: dict, status: int, ds: bytes | None) -> bool:
        if op.failure:
            return self._find_response(op, where, cmd, status, ds)
        completed, failed, warning = (us(cmd, COMPLETED) or 0, us(cmd, FAILED) or 0, us(cmd, WARNING) or 0)
        remaining = us(cmd, REMAINING)
        if status == 0xFF00:
            assert ds is None and remaining is not None, f"{where}: Pending {cmd}"
            assert remaining + completed + failed + warning == op.n, f"{where}: counters of a Pending response"
            op.pendings += 1
            return False
        listed = decode_ds(ds).get("FailedSOPInstanceUIDList", []) if ds is not None else []
        failed_uids = {listed} if isinstance(listed, str) else set(listed)   # pydicom: one value is a str
        if op.cancelled and status == 0xFE00:
            assert remaining is not None and remaining + completed + failed + warning == op.n, f"{where}: cancel"
            return True
        want_failed = set(op.failing) if op.kind == "get" else set()
        if not want_failed:
            expected = {0x0000}
        elif len(want_failed) < op.n:
            expected = {0xB000}
        else:
            expected = {0xB000, 0xA702}
        assert status in expected, f"{where}: final 0x{status:04X}, expected {sorted(map(hex, expected))}"
        assert (completed, failed, warning) == (op.n - len(want_failed), len(want_failed), 0), \
            f"{where}: counters {completed}/{failed}/{warning} of {op.n}"
        assert remaining is None, f"{where}: Number of Remaining Sub-operations in a final response"
        assert failed_uids == want_failed, f"{where}: Failed SOP Instance UID List {failed_uids}"
        if op.kind == "get":
            assert op.seen == set(op.uids), f"{where}: sub-operations for {op.seen} of {op.uids}"
        return True

    def _move_response(self, op: Op, where: str, cmd: dict, status: int, ds: bytes | None) -> bool:
        if op.failure:
            return self._find_response(op, where, cmd, status, ds)
        if op.destination != SCP_AE:
            assert status == 0xA801 and ds is None, f"{where}: unknown destination answered 0x{status:04X}"
            return True
        done = self._get_response(op, where, cmd, status, ds)
        if done:
            self.moves_done.append(time.monotonic())
            if status == 0:   # each instance stored by a sub-operation naming us (PS3.4 C.4.2.2)
                with self.handler.lock:
                    moved = set(self.handler.moved)
                for uid in op.uids:
                    assert (uid, self.archive.pixels[uid], op.originator, op.msgid) in moved, \
                        f"{where}: no C-STORE sub-operation of {uid} with Move Originator {op.originator}/{op.msgid}"
        return done

    def _deadlines(self, peer: Peer, now: float) -> None:
        def due(deadline: float) -> bool:
            return now > max(deadline, peer.pause_until + LATE)

        v = peer.verdict
        if peer.ended_at is not None:
            if peer.sta13 is not None and now > peer.sta13[1]:
                self._fail(peer, f"{peer.sta13[0]} owed in Sta13 ({peer.ended_how}) for what we sent "
                                 f"{now - peer.sta13[2]:.2f} s ago")
            if (v is None or v.what not in ("close", "any")) and due(peer.ended_at + ARTIM + LATE):
                self._fail(peer, f"still open {now - peer.ended_at:.2f} s after the association ended (ARTIM)")
            if v is not None and v.what in ("close", "any") and due(v.by):
                self._fail(peer, f"not closed after {v.why}")
            return
        if v is not None and due(v.by):
            self._fail(peer, f"no {v.what} for {v.why} in time")
        if peer.phase == "open" and v is None and due(peer.connected_at + ARTIM + LATE):
            self._fail(peer, "not closed at ARTIM without an A-ASSOCIATE-RQ")
        if peer.phase == "requested" and due(peer.ac_by):
            self._fail(peer, "no A-ASSOCIATE-AC")
        for op in peer.required:
            if due(op.deadline):
                self._fail(peer, f"no response to {op.kind} {op.msgid} (cancelled: {op.cancelled}, "
                                 f"pendings: {op.pendings}, sub-operations: {len(op.seen)})")
        base = peer.pdu_done_at if peer.pending else peer.idle_since
        if peer.phase == "established" and v is None and not peer.required and due(base + READ + LATE):
            self._fail(peer, f"idle for {now - base:.2f} s and not aborted (read_timeout {READ} s; "
                             f"{len(peer.pending)} write(s) of a request to go)")

    def check_association_count(self) -> None:
        now = time.monotonic()
        recent = [t for t in [*self.moves_done, *self.probe_ends] if now - t < LATE]   # threads still ending
        could_be_open = (sum(1 for p in self.peers if p.phase != "done" or now - (p.done_at or 0) < LATE)
                         + sum(1 for p in self.peers for op in p.ops.values() if op.kind == "move") + len(recent))
        active = self.server.active_associations
        assert active <= could_be_open, (
            f"server serves {active} associations; at most {could_be_open} are open: "
            f"{[t.name for t in threading.enumerate() if t.name.startswith('dicomnet-assoc-')]}; peers "
            f"{[(p.name, p.phase, p.sock.getsockname()[1] if p.phase != 'done' else None) for p in self.peers]}")

    def probe(self) -> None:
        """A fresh requestor: associate, C-ECHO, release -- answered promptly whatever the others do."""
        started = time.monotonic()
        try:
            self._probe(started + PROBE_LIMIT)
        except OSError as exc:
            raise AssertionError(f"probe: {type(exc).__name__}: {exc} after {time.monotonic() - started:.2f} s")
        ended = time.monotonic()
        self.probe_ends.append(ended)
        assert ended - started < PROBE_LIMIT, f"probe took {ended - started:.2f} s"

    def _probe(self, deadline: float) -> None:
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=PROBE_LIMIT) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(associate_rq(calling="PROBE", contexts={1: (VERIFICATION, (IMPLICIT,))}))
            assert _read_pdu(sock, deadline)[0] == 0x02, "probe: no A-ASSOCIATE-AC"
            sock.sendall(pdu(0x04, pdv(1, True, True, echo_rq(7))))
            pdu_type, body = _read_pdu(sock, deadline)
            assert pdu_type == 0x04, f"probe: PDU {pdu_type:02X}H instead of the C-ECHO-RSP"
            command = decode_command(body[6:])
            assert us(command, CF) == 0x8030 and us(command, MIDR) == 7 and us(command, STATUS) == 0, command
            sock.sendall(pdu(0x05, bytes(4)))
            assert _read_pdu(sock, deadline)[0] == 0x06, "probe: no A-RELEASE-RP"

    # ---------------------------------------------------------- teardown
    def teardown(self) -> None:
        """Shut the server down with the peers still connected (mid-message,
        stalled, not reading...): every one gets an A-ABORT (0, 0) or a close,
        the shutdown ends within SHUTDOWN_LIMIT and every thread it started ends."""
        in_flight = sys.exc_info()[1] is not None   # a step failed: clean up, report nothing more
        problems: list[str] = []
        shut = False
        try:
            if not in_flight:
                # Let what is due soon arrive (bounded), and check it.
                limit = time.monotonic() + PROMPT
                while time.monotonic() < limit and any(p.required or (p.verdict and not p.verdict.stall
                                                                       and p.ended_at is None)
                                                       or p.phase == "requested" for p in self._live()):
                    time.sleep(0.02)
                    self.check_peers()
                self.check_peers()
                self.shutting_down = True
            started = time.monotonic()
            shut = True
            self.server.shutdown(SHUTDOWN_LIMIT)
            took = time.monotonic() - started
            if took > SHUTDOWN_LIMIT:
                problems.append(f"shutdown took {took:.2f} s")
            if not in_flight:
                limit = max([time.monotonic(), *(p.pause_until for p in self._live())]) + LATE
                while self._live() and time.monotonic() < limit:
                    time.sleep(0.02)
                    self.check_peers()
                still = [(p.name, p.phase, p.verdict) for p in self._live()]
                if still:
                    problems.append(f"connections still open {time.monotonic() - started:.2f} s after shutdown: "
                                    f"{still}")
        finally:
            for peer in self._live():
                peer.close()
            if not shut:   # a failure before the shutdown above
                self.server.shutdown(SHUTDOWN_LIMIT)
            deadline = time.monotonic() + ARTIM + LATE
            while True:
                left = [t for t in threading.enumerate() if t not in self.threads_before and t.is_alive()
                        and not t.name.startswith("stateful-peer-")]
                if not left or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            if left:
                problems.append(f"threads still running after shutdown: {[t.name for t in left]}")
            while len(_fds()) > len(self.fds_before) and time.monotonic() < deadline:
                time.sleep(0.02)
            extra = sorted(set(_fds().items()) - set(self.fds_before.items()))
            if len(_fds()) > len(self.fds_before):
                problems.append(f"file descriptors still open after shutdown: {extra}")
            leftovers = [n for n in os.listdir(self.folder) if n.endswith(".part")]
            if leftovers:
                problems.append(f"temporary files left: {leftovers}")
            threading.excepthook = self.previous_hook
            self.logger.removeHandler(self.capture)
            logging.getLogger("dicomnet").removeHandler(self.capture)
        if not in_flight:
            assert not self.failures.items, self.failures.items
            assert not problems, problems


def _fds() -> dict[str, str]:
    """This process's open file descriptors (Linux: the hardening suite runs there only)."""
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    return out


def _read_pdu(sock: socket.socket, deadline: float) -> tuple[int, bytes]:
    data = b""
    while True:
        if len(data) >= 6 and len(data) >= 6 + struct.unpack_from(">L", data, 2)[0]:
            return data[0], data[6:6 + struct.unpack_from(">L", data, 2)[0]]
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data[:16].hex()}"
        data += chunk


# --------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def machine_env(tmp_path_factory: Any) -> Any:
    root = tmp_path_factory.mktemp("stateful-server")
    os.makedirs(root / "archive")
    ServerMachine.workdir = str(root)
    ServerMachine.archive = Archive(str(root / "archive"))
    return ServerMachine


# No shrinking: replays depend on timing (hypothesis would call most of them flaky) and could take
# minutes; a failure names the steps of the peer concerned (ServerMachine._fail) and the whole run.
SETTINGS = settings(max_examples=30, stateful_step_count=45, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=False,
                    phases=(Phase.explicit, Phase.reuse, Phase.generate))


def test_server_under_interleaved_scripted_peers(machine_env: Any) -> None:
    STATS.clear()
    try:
        run_state_machine_as_test(machine_env, settings=SETTINGS)
    finally:   # what the run did (shown with -s, or with a failure)
        print(f"{sum(STATS.values())} actions:", ", ".join(f"{k} {v}" for k, v in sorted(STATS.items())))


def settle(machine: ServerMachine, peer: Peer, until: Any, timeout: float = PROMPT + LATE) -> None:
    """Check the peers until ``until(peer)`` (bounded), then once more after a short quiet spell."""
    limit = time.monotonic() + timeout
    while not until(peer) and time.monotonic() < limit:
        time.sleep(0.005)
        machine.check()
    machine.check()


def replay(steps: Any, fails_with: str | None = None) -> None:
    """Run ``steps(machine)`` on a fresh machine, with its checks, and tear it down.
    ``fails_with``: the check must fail with a message containing it (any other
    failure is an error, not the expected one)."""
    machine = ServerMachine()
    try:
        try:
            steps(machine)
        finally:
            machine.teardown()
    except AssertionError as exc:
        if fails_with is not None and fails_with not in str(exc):
            raise RuntimeError(f"failed, but not with {fails_with!r}: {exc}") from exc
        raise


# ------------------------------------------------------------ shrunk cases
# Faults the machine found, now fixed: kept as regression tests.


@pytest.mark.parametrize("how", ["A-ABORT in Sta6", "A-ABORT for a DIMSE fault"])
@pytest.mark.parametrize("kind", ["associate-rq", "unknown-pdu-type", "release-rq-length-2", "a-abort"])
def test_sta13_after_the_servers_own_abort(machine_env: Any, how: str, kind: str) -> None:
    """Shrunk from the machine: p0 associates; an A-ASSOCIATE-AC (AA-8) or a data set PDV
    before any command (AA-1) makes the server abort; the PDU ``kind`` sent 0.05 s later is
    owed an A-ABORT (AA-7) or, for an A-ABORT, a close at once (AA-2) -- PS3.8 Table 9-10."""
    def steps(m: ServerMachine) -> None:
        peer = m._ready(0)
        assert peer is not None
        peer.close_on_end = False
        if how == "A-ABORT in Sta6":
            m.do_pdu_violation(peer, "associate-ac")
        else:
            m.do_dimse_violation(peer, "data-set-before-command")
        settle(m, peer, lambda p: p.ended_at is not None)
        time.sleep(0.05)
        m.do_sta13_stimulus(peer, kind)
        settle(m, peer, lambda p: p.phase == "done", ARTIM + LATE)
    replay(steps)


@pytest.mark.parametrize("kind", ["associate-rq", "a-abort"])
def test_the_stream_after_an_unknown_pdu_type(machine_env: Any, kind: str) -> None:
    """Shrunk from the machine: a PDU of type 08H before any A-ASSOCIATE-RQ (AA-1, Sta13),
    then ``kind`` at once: PS3.8 Table 9-10 owes AA-7 (A-ABORT) / AA-2 (close at once)."""
    def steps(m: ServerMachine) -> None:
        peer = m._openable(0)
        assert peer is not None
        peer.close_on_end = False
        m.do_bad_associate(peer, "unknown-pdu-type")
        settle(m, peer, lambda p: p.ended_at is not None)
        m.do_sta13_stimulus(peer, kind)
        settle(m, peer, lambda p: p.phase == "done", ARTIM + LATE)
    replay(steps)


@pytest.mark.parametrize("kind", MALFORMED)
def test_a_malformed_request_is_the_peers_fault(machine_env: Any, kind: str) -> None:
    """Shrunk from the machine: one malformed request on a fresh association. The failure
    status comes (0xC000 / 0xA900) and the association goes on, and the server logs no
    error for what a peer sent (it was logged at ERROR, with a traceback, as a handler
    failure, though no handler was called)."""
    def steps(m: ServerMachine) -> None:
        peer = m._ready(0)
        assert peer is not None
        m.do_malformed_request(peer, kind)
        settle(m, peer, lambda p: not p.ops)
        m.do_echo(peer)
        settle(m, peer, lambda p: not p.ops)
    replay(steps)


# --------------------------------------------------------- the harness itself
def test_the_checks_pass_on_a_sequence_that_touches_every_service(machine_env: Any) -> None:
    """The sequences the self-checks below break, unbroken: they pass."""
    def steps(m: ServerMachine) -> None:
        peer = m._ready(0)
        assert peer is not None
        for action in (lambda: m.do_echo(peer), lambda: m.do_store(peer, 20000, 0xB000, True),
                       lambda: m.do_find(peer, "FIND4"), lambda: m.do_get(peer, "A", "big"),
                       lambda: m.do_move(peer, "A"), lambda: m.do_pdu_violation(peer, "unknown-pdu-type")):
            action()
            settle(m, peer, lambda p: not p.ops and (p.verdict is None or p.ended_at is not None))
    replay(steps)


SABOTAGE = {   # what is broken -> what the check that notices it says
    "handler-status": "status 0x0000, expected 0xA700",
    "abort-reason": "A-ABORT (2, 1)",
    "thread-exception": "exception in thread dicomnet-assoc-sabotage",
    "slow-server": "probe",
    "idle-timeout": "not aborted (read_timeout",
    "extra-response": "nothing awaits",
    "leaked-socket": "file descriptors still open",
    "leaked-thread": "threads still running",
}


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("sabotage", sorted(SABOTAGE))
def test_the_harness_notices_a_broken_expectation(machine_env: Any, sabotage: str, monkeypatch: Any) -> None:
    """Break the server or the model on purpose: the machine's checks must fail."""
    leaked: list[socket.socket] = []

    def steps(m: ServerMachine) -> None:
        if sabotage == "handler-status":         # (looked up as each association starts)
            monkeypatch.setattr(m.handler, "on_store", lambda ctx, ds: 0)
        peer = m._ready(0)
        assert peer is not None
        if sabotage == "handler-status":         # the handler answers Success where the model wants 0xA700
            m.do_store(peer, 200, 0xA700)
        elif sabotage == "abort-reason":         # the model wants "unexpected PDU" for an unknown PDU type
            monkeypatch.setitem(PDU_VIOLATIONS, "unknown-pdu-type", (pdu(0x08, bytes(4)), UNEXPECTED))
            m.do_pdu_violation(peer, "unknown-pdu-type")
        elif sabotage == "thread-exception":     # an exception escaping some thread
            thread = threading.Thread(target=lambda: 1 / 0, name="dicomnet-assoc-sabotage")
            thread.start()
            thread.join(2.0)
        elif sabotage == "slow-server":          # every C-ECHO takes longer than the probe may
            monkeypatch.setattr(m.server.handler.__wrapped__, "on_echo", lambda ctx: time.sleep(PROBE_LIMIT + 0.2),
                                raising=False)
        elif sabotage == "idle-timeout":         # a server whose read timeout is far longer than the model's
            m.server.read_timeout = 30.0
            peer = m.do_connect()
            m.do_associate(peer)
        elif sabotage == "leaked-socket":        # a socket nobody closes
            leaked.append(socket.socket())
        elif sabotage == "leaked-thread":        # a thread that outlives the shutdown
            threading.Thread(target=threading.Event().wait, args=(ARTIM + LATE + 1.0,), daemon=True).start()
        else:                                    # a second response to one C-ECHO
            m.do_echo(peer)
            settle(m, peer, lambda p: not p.ops)
            peer.send([pdu(0x04, pdv(1, True, True, echo_rq(peer.next_id)))])
        if not sabotage.startswith("leaked"):
            settle(m, peer, lambda p: False, READ + LATE + 0.5)

    try:
        with pytest.raises(AssertionError):
            replay(steps, SABOTAGE[sabotage])
    finally:
        for sock in leaked:
            sock.close()
