"""Differential C-MOVE / C-GET when sub-operations fail: the sample server against dcmqrscp.

The same files are loaded into dicomnet's sample Q/R server
(:class:`~dicomnet.samples.server.SampleHandler` over an
:class:`~dicomnet.samples.archive.Archive` read from the files, with the
CLI's presentation contexts) and into dcmtk's ``dcmqrscp`` (sent the files
with storescu, in the same order): study A of three CT and three MR images
(tiny 8x8 ones), and study B of three CT images whose middle file is deleted
from both stores after loading. Both SCPs know the same C-MOVE destinations,
all on 127.0.0.1: dicomnet :class:`Server` s recording what they are sent --
``DEST`` (answers each instance as the test says: Success, a Warning, a
failure status, an exception, a pause that lets the SCU's C-CANCEL arrive
mid-sub-operation), ``MRONLY`` (accepts no CT context), ``NOCX`` (accepts no
storage context at all), ``ABORTER`` (its handler watchdog aborts the
association during the third instance), ``REJECT`` (an AE title it does
not answer to: A-ASSOCIATE-RJ), ``DEAD`` (a closed port) -- plus an AE
neither SCP knows.

Each scenario is driven through the same SCUs against both SCPs: our
:class:`Client` (``assoc.move`` / ``assoc.get``: each Pending's counters,
the final status and counters, ``failed_instances``), a pynetdicom SCU (the
raw response command sets: which counters are *present* in each response,
and the Identifier) and dcmtk's ``movescu`` / ``getscu`` (their ``-d`` dumps
parsed the same way). Compared field by field: every Pending's Remaining /
Completed / Failed / Warning, the final status, which counters the final
response carries and their values, the Failed SOP Instance UID List
(0008,0058), and the instances the destination (C-MOVE) or the SCU (C-GET)
actually received. Both SCPs are held to an oracle computed from the
scenario by PS3.4 C.4.2.3.1 / C.4.3.3.1:

* a sub-operation is Completed (C-STORE Success), Warning (a C-STORE warning
  status: 0001, 0107, 0116, Bxxx -- PS3.7 Annex C; counted apart from the
  completed ones, PS3.7 Table 9.3-10 "completed successfully" vs "had a
  status of Warning") or Failed (any failure status, no presentation context
  for it -- C.4.2.3.1 "A sub-operation is considered Failed if the SCP is
  unable to negotiate an appropriate presentation context" -- or the
  association to the destination refused, aborted or unreachable);
* the final status is Success 0000 if none failed or warned, Failure A702
  ("Refused: Out of Resources - Unable to perform sub-operations", Table
  C.4-2; C.4.2.3.1 "Failure or Refused if all sub-operations were
  unsuccessful") if none completed or warned, Warning B000 otherwise (also
  when all only warned); Cancel FE00 after a C-CANCEL; A801 for an unknown
  destination;
* the final response carries Completed, Failed and Warning (C.4.2.3.1
  "This response shall indicate the number of ...") and Remaining only
  when Canceled (C.4.2.1.6 / C.4.3.1.5: Remaining "shall not" be in a
  Success, Warning or Failure response; in a Canceled one it is the number
  of sub-operations not initiated);
* the Identifier of the final response holds the Failed SOP Instance UID
  List exactly when a sub-operation failed (C.4.2.1.4.2 / C.4.3.1.3.2: "If
  no C-STORE sub-operation failed, Failed SOP Instance UID List is absent
  and therefore no Data Set shall be sent"); a Pending never has one.

Choices the standard leaves open (compared modulo them):

* Pending responses are optional (C.4.2.3.1, C.4.3.3.1 "Optionally, the SCP
  may generate responses ... with status equal to Pending"). dcmqrscp sends
  one after every sub-operation, the last one too (Remaining 0), but in a
  C-GET none for the sub-operation during which a C-CANCEL arrived; the
  sample server sends none after the last sub-operation, but one for the
  sub-operation after which it notices a C-CANCEL. Responses are compared
  after dropping a last Pending that only repeats the final response's
  counters; :func:`test_pending_responses_are_optional` pins both policies.
* The order of the sub-operations is not specified; both send in the order
  the files were loaded, which the Pending comparisons rely on (asserted).
* Error Comment is optional (PS3.7 C.4): the sample server explains A702 /
  A801 in one, dcmqrscp does not. Not compared.
* When the C-CANCEL is looked for. A C-CANCEL that arrives while a
  sub-operation is under way stops both SCPs after it (compared exactly).
  One sent *in reaction to Pending N* races with dcmqrscp, which looks for
  it right after writing that Pending: sub-operation N+1 is sometimes
  started, sometimes not. The sample server writes Pending N only once the
  C-STORE-RQ of N+1 is on its way (an overlap optimisation), so N+1 always
  runs; the Cancel response then reports it (Completed N+1). Both are
  allowed: "The SCP may receive a C-CANCEL ... at any time".
* An Asynchronous Operations Window (PS3.7 D.3.3.3; our Client offers one
  with ``for_get=True``): the sample server then has several C-GET
  C-STORE-RQs out before the first response; a C-CANCEL finds them already
  initiated, so they complete and Remaining is 0 in the Cancel response.
  dcmqrscp does not take the window and runs one at a time.

Peer quirks (worked around):

* dcmqrscp's C-CANCEL race above (the tests accept either count for it);
* getscu stops reading the C-GET when one of its own C-STOREs fails (it
  releases, then aborts, the association mid-operation), so it is used only
  where the failure is on the SCP's side; and it does not read the data set
  of the final C-GET response (it releases with the Identifier's P-DATA
  still unread: "Association Release Failed ... P-Data PDU arrived", then
  aborts), so from getscu only the presence of the Identifier is compared.

dicomnet bug this file found (fixed):

* an instance the SCP cannot read (its file gone) was counted as a Failed
  sub-operation but left out of the Failed SOP Instance UID List -- with it
  the only failure, the Warning response had no Identifier at all
  (C.4.2.1.4.2, C.4.3.1.3.2 require the list). dcmqrscp answers B000, 2
  completed, 1 failed, the list naming it; the sample server now does too
  (its archive hands over ``InstancePath``s, paths that name their UID).

pynetdicom, for its part, hands out an empty Identifier for a final Warning,
Failure or Cancel response that has no data set; the dcmtk dumps say whether
one was sent.
"""
from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from dicomnet import Client, DimseStatusError, Server
from dicomnet.cli.store_scp import storage_contexts
from dicomnet.dicom import Dataset, read_file, write_file
from dicomnet.dimse.retrieve import GET_MODELS, MOVE_MODELS
from dicomnet.samples.archive import Archive
from dicomnet.samples.server import QR_SOP_CLASSES, SampleHandler
from dicomnet.samples.synthetic import generate

from .peers import HOST, Dcmqrscp, free_port, getscu, movescu, require

EXPLICIT = "1.2.840.10008.1.2.1"
VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
SUCCESS, PENDING, CANCEL, WARNING = 0x0000, 0xFF00, 0xFE00, 0xB000
SUB_OPERATIONS_FAILED = 0xA702      # Refused: Out of Resources - Unable to perform sub-operations
DESTINATION_UNKNOWN = 0xA801
CLIENT_AE = "DNETRF"
#: What became of one sub-operation.
OK, WARN, FAIL = "completed", "warning", "failed"


# ------------------------------------------------------------------ responses
class Rsp(NamedTuple):
    """One C-MOVE/C-GET response as sent: None where a counter is absent;
    ``failed_uids`` None without an Identifier, else its list (sorted)."""

    status: int
    remaining: int | None
    completed: int | None
    failed: int | None
    warning: int | None
    failed_uids: tuple[str, ...] | None = None


def normalize(rsps: list[Rsp] | tuple[Rsp, ...]) -> tuple[Rsp, ...]:
    """Drop a last Pending that only repeats the final response's counters
    (Pendings are optional: see the module docstring)."""
    rsps = tuple(rsps)
    if len(rsps) >= 2:
        last, final = rsps[-2], rsps[-1]
        if (last.status == PENDING and (last.completed, last.failed, last.warning)
                == (final.completed, final.failed, final.warning)
                and last.remaining == (final.remaining or 0)):
            rsps = rsps[:-2] + (final,)
    return rsps


def client_view(rsps: tuple[Rsp, ...]) -> tuple[tuple[tuple[int, ...], ...], tuple[Any, ...]]:
    """What our Client reports for these responses: the Pendings' counters and
    (status, remaining, completed, failed, warning, failed UIDs) -- it cannot
    tell an absent Remaining from 0 in a final response."""
    *pending, final = rsps
    return (tuple((p.status, p.remaining, p.completed, p.failed, p.warning) for p in pending),
            (final.status, final.remaining or 0, final.completed, final.failed, final.warning,
             final.failed_uids or ()))


def oracle(order: list[str], outcome: dict[str, str]) -> tuple[Rsp, ...]:
    """The responses PS3.4 C.4.2.3.1 describes when each instance of ``order``
    has the ``outcome`` (default completed), with a Pending after each one."""
    n = len(order)
    completed = failed = warning = 0
    failed_uids: list[str] = []
    out = []
    for i, uid in enumerate(order, 1):
        result = outcome.get(uid, OK)
        if result == OK:
            completed += 1
        elif result == WARN:
            warning += 1
        else:
            failed += 1
            failed_uids.append(uid)
        out.append(Rsp(PENDING, n - i, completed, failed, warning))
    out.append(final_rsp(completed, failed, warning, failed_uids))
    return tuple(out)


def final_rsp(completed: int, failed: int, warning: int, failed_uids: list[str]) -> Rsp:
    if failed == warning == 0:
        status = SUCCESS
    elif completed == warning == 0:
        status = SUB_OPERATIONS_FAILED
    else:
        status = WARNING
    return Rsp(status, None, completed, failed, warning, tuple(sorted(failed_uids)) if failed_uids else None)


def refused(order: list[str]) -> tuple[Rsp, ...]:
    """No sub-operation could start (the destination refused or is not there):
    every one failed, no Pending."""
    return (Rsp(SUB_OPERATIONS_FAILED, None, 0, len(order), 0, tuple(sorted(order))),)


def pyn_rsp(status: Any, identifier: Any) -> Rsp:
    """An Rsp from pynetdicom's status Dataset and Identifier."""
    def get(keyword: str) -> int | None:
        value = status.get(keyword)
        return None if value is None else int(value)

    uids = None
    # pynetdicom hands out an empty Identifier for a final Warning/Failure/Cancel
    # response without a data set: only the dcmtk dumps tell the two apart.
    if identifier is not None and len(identifier):
        value = identifier.get("FailedSOPInstanceUIDList")
        value = [] if value is None else ([value] if isinstance(value, str) else list(value))
        uids = tuple(sorted(str(v) for v in value))
    return Rsp(int(status.Status), get("NumberOfRemainingSuboperations"), get("NumberOfCompletedSuboperations"),
               get("NumberOfFailedSuboperations"), get("NumberOfWarningSuboperations"), uids)


_FAILED_LIST = re.compile(r"\(0008,0058\) UI \[([^\]]*)\]")


def parse_dcmtk(output: str, message_type: str) -> tuple[Rsp, ...]:
    """The ``message_type`` ("C-MOVE RSP", "C-GET RSP") responses in a dcmtk
    SCU's ``-d`` output, with the Failed SOP Instance UID List it dumps."""
    found: list[dict[str, Any]] = []
    block: dict[str, str] | None = None
    for line in output.splitlines():
        text = line[3:] if line[1:3] == ": " else line
        if "INCOMING DIMSE MESSAGE" in text or "OUTGOING DIMSE MESSAGE" in text:
            block = {}
            continue
        if block is not None:
            if "END DIMSE MESSAGE" in text:
                if block.get("Message Type") == message_type:
                    found.append(dict(block, uids=None))
                block = None
                continue
            key, sep, value = text.partition(":")
            if sep:
                block[key.strip()] = value.strip()
            continue
        match = _FAILED_LIST.search(text)
        if match and found:
            found[-1]["uids"] = tuple(sorted(u for u in match.group(1).split("\\") if u))

    def count(value: str) -> int | None:
        return None if value == "none" else int(value)

    out = []
    for b in found:
        uids = b["uids"]
        if uids is None and b.get("Data Set") == "present":
            uids = ()
        out.append(Rsp(int(b["DIMSE Status"].split(":")[0], 16), count(b["Remaining Suboperations"]),
                       count(b["Completed Suboperations"]), count(b["Failed Suboperations"]),
                       count(b["Warning Suboperations"]), uids))
    return tuple(out)


def _flat(value: Any, path: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{path}/{key}" if path else str(key)))
        return out
    return {path: value}


def assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    """``got == want`` for nested dicts, naming each SCP/SCU that differs."""
    flat_got, flat_want = _flat(got), _flat(want)
    diffs = [f"{key}:\n    got  {flat_got.get(key)!r}\n    want {flat_want.get(key)!r}"
             for key in sorted(set(flat_got) | set(flat_want)) if flat_got.get(key) != flat_want.get(key)]
    assert not diffs, "\n".join(diffs)


# ---------------------------------------------------------------- destinations
@dataclass
class Pause:
    """A destination action: wait ``seconds`` (after calling ``then``), then Success."""

    seconds: float
    then: Callable[[], None] | None = None


class Destination:
    """A C-MOVE destination: records the SOP Instance UIDs stored to it, in
    order, and answers each as :meth:`arm` said (status, exception or Pause)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[str] = []
        self.rule: dict[str, Any] = {}

    def arm(self, rule: dict[str, Any] | None = None) -> None:
        with self.lock:
            self.rule = dict(rule or {})
            self.received = []

    def take(self) -> list[str]:
        with self.lock:
            got, self.received = self.received, []
        return got

    def on_store(self, ctx: Any, ds: Dataset) -> int:
        uid = str(ds.SOPInstanceUID)
        with self.lock:
            self.received.append(uid)
            action = self.rule.get(uid, SUCCESS)
        if isinstance(action, BaseException):
            raise action
        if isinstance(action, Pause):
            if action.then is not None:
                action.then()
            time.sleep(action.seconds)
            return SUCCESS
        return int(action)


@dataclass
class Scp:
    name: str
    port: int
    aet: str


@dataclass
class Env:
    order: list[str]                 # study A: 3 CT then 3 MR, the sub-operation order
    study: str
    gap_order: list[str]             # study B: 3 CT; ...
    gap_study: str
    missing: str                     # ... the middle one's file deleted from both stores
    scps: list[Scp]
    dests: dict[str, Destination]
    tmp: Path

    def key(self, study: str | None = None) -> dict[str, str]:
        return {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study or self.study}

    def arm(self, rule: dict[str, Any] | None = None) -> None:
        for dest in self.dests.values():
            dest.arm()
        self.dests["DEST"].arm(rule)
        self.dests["ABORTER"].arm(rule)

    def received(self) -> list[str]:
        return [uid for dest in self.dests.values() for uid in dest.take()]


_STUDY_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
               "StudyTime", "StudyID", "AccessionNumber", "StudyDescription", "ReferringPhysicianName")


def _corpus(folder: Path) -> tuple[list[Path], list[Dataset], list[Dataset]]:
    ct = list(generate(patients=1, studies=1, series=1, instances=3, rows=8, cols=8, modality="CT", seed=4101))
    mr = list(generate(patients=1, studies=1, series=1, instances=3, rows=8, cols=8, modality="MR", seed=4102))
    for ds in mr:                   # the MR series joins the CT study
        for keyword in _STUDY_KEYS:
            value = ct[0].get(keyword)
            if value is not None:
                setattr(ds, keyword, value)
        ds.SeriesNumber = 2
    gap = list(generate(patients=1, studies=1, series=1, instances=3, rows=8, cols=8, modality="CT", seed=4103))
    paths = []
    for i, ds in enumerate(ct + mr + gap):
        path = folder / f"{i:02d}-{ds.SOPInstanceUID}.dcm"
        write_file(path, ds, EXPLICIT)
        paths.append(path)
    return paths, ct + mr, gap


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """Both SCPs (each started once) holding the corpus, and the destinations."""
    require("dcmqrscp", "storescu", "echoscu")
    tmp = tmp_path_factory.mktemp("retrieve-failures")
    folder = tmp / "corpus"
    folder.mkdir()
    paths, study_a, study_b = _corpus(folder)
    with ExitStack() as stack:
        dests = {name: Destination() for name in ("DEST", "MRONLY", "NOCX", "ABORTER", "REJECT")}
        servers = {
            "DEST": Server("DEST", dests["DEST"], read_timeout=10),
            "MRONLY": Server("MRONLY", dests["MRONLY"], read_timeout=10,
                             contexts={VERIFICATION: [EXPLICIT], MR: [EXPLICIT, "1.2.840.10008.1.2"]}),
            "NOCX": Server("NOCX", dests["NOCX"], read_timeout=10, contexts=[VERIFICATION]),
            # The watchdog aborts the association when on_store takes longer than this.
            "ABORTER": Server("ABORTER", dests["ABORTER"], read_timeout=10, handler_timeout=0.5),
            # Answers to another AE title: the SCP's A-ASSOCIATE-RQ to "REJECT" is rejected.
            "REJECT": Server("OTHERAE", dests["REJECT"], read_timeout=10),
        }
        ports = {}
        for name, server in servers.items():
            server.start(HOST, 0)
            stack.callback(server.shutdown)
            assert server.port is not None
            ports[name] = server.port
        ports["DEAD"] = free_port()          # nothing listens there
        archive = Archive()
        for path in paths:                    # one by one: the archive keeps this order
            assert archive.add_path(path) == 1
        handler = SampleHandler(archive, {ae: (HOST, port) for ae, port in ports.items()},
                                logger=logging.getLogger("dicomnet.sample.retrieve-failures"))
        sample = Server("SAMPLE", handler, contexts=storage_contexts(also=QR_SOP_CLASSES),
                        destinations=handler.destinations, require_called_ae=False, read_timeout=10)
        sample.start(HOST, 0)
        stack.callback(sample.shutdown)
        assert sample.port is not None
        qr = stack.enter_context(Dcmqrscp(preload=paths, move_destinations=ports))
        # Study B's middle instance: its file goes from both stores.
        missing = str(study_b[1].SOPInstanceUID)
        gone = [p for p in paths if missing in p.name]
        assert len(gone) == 1
        gone[0].unlink()
        stored = [p for p in (qr.dir / "store").iterdir()   # type: ignore[operator]
                  if p.suffix == ".dcm" and str(read_file(p, stop_before_pixels=True).SOPInstanceUID) == missing]
        assert len(stored) == 1, "dcmqrscp's copy of the instance to delete"
        stored[0].unlink()
        yield Env(order=[str(ds.SOPInstanceUID) for ds in study_a], study=str(study_a[0].StudyInstanceUID),
                  gap_order=[str(ds.SOPInstanceUID) for ds in study_b], gap_study=str(study_b[0].StudyInstanceUID),
                  missing=missing, scps=[Scp("sample", sample.port, "SAMPLE"), Scp("dcmqrscp", qr.port, qr.aet)],
                  dests=dests, tmp=tmp)


# ---------------------------------------------------------------- the SCUs
def connect(scp: Scp, **kw: Any) -> Any:
    return Client(CLIENT_AE, dimse_timeout=20).associate(HOST, scp.port, scp.aet, **kw)


def client_move(scp: Scp, key: dict[str, str], dest: str) -> tuple[Any, ...]:
    """Our Client's C-MOVE: (Pendings, final) as :func:`client_view` shapes them."""
    with connect(scp) as assoc:
        result = assoc.move(key, dest)
        pending = []
        try:
            for p in result:
                pending.append((p.status, p.remaining, p.completed, p.failed, p.warning))
        except DimseStatusError as exc:
            assert exc.status == result.status
        assert result.done
        final = (result.status, result.remaining, result.completed, result.failed, result.warning,
                 tuple(sorted(result.failed_instances)))
        assert assoc.echo() == SUCCESS          # the association carries on
    return tuple(pending), final


def pyn_query(key: dict[str, str]) -> Any:
    from pydicom.dataset import Dataset as PyDataset

    query = PyDataset()
    for keyword, value in key.items():
        setattr(query, keyword, value)
    return query


def pyn_move(scp: Scp, key: dict[str, str], dest: str,
             on_open: Callable[[Any, int], None] | None = None) -> tuple[Rsp, ...]:
    """A pynetdicom C-MOVE: every response as sent. ``on_open(assoc, context_id)``
    runs once the association is up (to arm a C-CANCEL)."""
    require("pynetdicom")
    from pynetdicom import AE

    model = MOVE_MODELS["study"]
    ae = AE(ae_title="PYNSCU")
    ae.add_requested_context(model)
    assoc = ae.associate(HOST, scp.port, ae_title=scp.aet)
    assert assoc.is_established
    try:
        context_id = next(cx.context_id for cx in assoc.accepted_contexts if cx.abstract_syntax == model)
        if on_open is not None:
            on_open(assoc, context_id)
        return tuple(pyn_rsp(status, ident)
                     for status, ident in assoc.send_c_move(pyn_query(key), dest, model, msg_id=7))
    finally:
        assoc.release()


def dcmtk_move(scp: Scp, key: dict[str, str], dest: str, *args: str) -> tuple[Rsp, ...]:
    require("movescu")
    res = movescu(scp.port, scp.aet, dest, [f"{k}={v}" for k, v in key.items()], "-d", *args)
    rsps = parse_dcmtk(res.output, "C-MOVE RSP")
    assert rsps and rsps[-1].status != PENDING, res.output
    return rsps


# ---------------------------------------------------------------- C-MOVE
@dataclass
class MoveCase:
    name: str
    dest: str
    rule: dict[int, Any]                  # index in Env.order -> what the destination answers
    outcome: dict[int, str]               # index -> completed / warning / failed
    received: list[int] | None = None     # indexes the destination gets (None: all)
    refused: bool = False                 # no sub-operation could start

    def expected(self, env: Env) -> tuple[tuple[Rsp, ...], list[str]]:
        order = env.order
        received = [order[i] for i in (range(len(order)) if self.received is None else self.received)]
        if self.refused:
            return refused(order), []
        return oracle(order, {order[i]: o for i, o in self.outcome.items()}), received


ALL = range(6)
MOVE_CASES = [
    MoveCase("refused-A700-A900", "DEST", {1: 0xA700, 4: 0xA900}, {1: FAIL, 4: FAIL}),
    MoveCase("handler-raises", "DEST", {2: RuntimeError("destination handler fails (test)")}, {2: FAIL}),
    MoveCase("warning-B000-B007", "DEST", {1: 0xB000, 4: 0xB007}, {1: WARN, 4: WARN}),
    # PS3.7 Annex C: 0001, 0107 and 0116 are warnings too; 0110 (Processing failure) a failure.
    MoveCase("warning-0001-0107-0116-B006-failure-0110", "DEST",
             {0: 0x0001, 1: 0x0107, 2: 0x0116, 3: 0xB006, 4: 0x0110},
             {0: WARN, 1: WARN, 2: WARN, 3: WARN, 4: FAIL}),
    MoveCase("all-refused", "DEST", {i: 0xA700 for i in ALL}, {i: FAIL for i in ALL}),
    MoveCase("all-warning", "DEST", {i: 0xB000 for i in ALL}, {i: WARN for i in ALL}),
    MoveCase("no-CT-context", "MRONLY", {}, {0: FAIL, 1: FAIL, 2: FAIL}, received=[3, 4, 5]),
    MoveCase("no-storage-context", "NOCX", {}, {i: FAIL for i in ALL}, received=[]),
    # The third instance outlasts the destination's handler_timeout: it aborts the
    # association; that sub-operation and those after it fail.
    MoveCase("aborts-midway", "ABORTER", {2: Pause(1.5)}, {2: FAIL, 3: FAIL, 4: FAIL, 5: FAIL},
             received=[0, 1, 2]),
    MoveCase("rejects-association", "REJECT", {}, {}, refused=True),
    MoveCase("unreachable", "DEAD", {}, {}, refused=True),
]


def _rule(env: Env, rule: dict[int, Any]) -> dict[str, Any]:
    return {env.order[i]: action for i, action in rule.items()}


@pytest.mark.parametrize("case", MOVE_CASES, ids=[c.name for c in MOVE_CASES])
def test_move_with_failing_sub_operations(env: Env, case: MoveCase) -> None:
    """Each SCU against each SCP: the responses (modulo the optional Pendings)
    and what the destination received, against the PS3.4 oracle."""
    want_rsps, want_received = case.expected(env)
    key = env.key()
    got: dict[str, Any] = {}
    want: dict[str, Any] = {}
    for scp in env.scps:
        views: dict[str, Any] = {}
        env.arm(_rule(env, case.rule))
        pending, final = client_move(scp, key, case.dest)
        views["client"] = (normalize_client(pending, final), env.received())
        env.arm(_rule(env, case.rule))
        views["pynetdicom"] = (normalize(pyn_move(scp, key, case.dest)), env.received())
        env.arm(_rule(env, case.rule))
        views["movescu"] = (normalize(dcmtk_move(scp, key, case.dest)), env.received())
        got[scp.name] = views
        want[scp.name] = {"client": (client_view(normalize(want_rsps)), want_received),
                          "pynetdicom": (normalize(want_rsps), want_received),
                          "movescu": (normalize(want_rsps), want_received)}
    assert_same(got, want)


def normalize_client(pending: tuple[tuple[int, ...], ...], final: tuple[Any, ...]) -> tuple[Any, ...]:
    """:func:`normalize` for our Client's view."""
    if pending:
        last = pending[-1]
        if last[0] == PENDING and last[2:] == final[2:5] and last[1] == final[1]:
            pending = pending[:-1]
    return pending, final


def test_move_to_an_unknown_destination(env: Env) -> None:
    """A801 at once, no sub-operation: Completed/Failed/Warning present (0), no
    Remaining, no Identifier -- from both, through every SCU."""
    want = (Rsp(DESTINATION_UNKNOWN, None, 0, 0, 0, None),)
    got = {}
    for scp in env.scps:
        env.arm()
        got[scp.name] = (client_move(scp, env.key(), "NOWHERE"), pyn_move(scp, env.key(), "NOWHERE"),
                         dcmtk_move(scp, env.key(), "NOWHERE"), env.received())
    assert got == {scp.name: (((), (DESTINATION_UNKNOWN, 0, 0, 0, 0, ())), want, want, [])
                   for scp in env.scps}


def test_pending_responses_are_optional(env: Env) -> None:
    """The one place the raw responses differ in every C-MOVE: dcmqrscp sends a
    Pending after each sub-operation, the last one too (Remaining 0); the
    sample server none after the last. Both are PS3.4 C.4.2.3.1 ("may")."""
    env.arm()
    full = oracle(env.order, {})
    assert full[-1] == Rsp(SUCCESS, None, 6, 0, 0, None)      # no Remaining, no Identifier
    got = {scp.name: pyn_move(scp, env.key(), "DEST") for scp in env.scps}
    assert env.received() == env.order * 2                      # both in load order
    assert got == {"sample": full[:-2] + full[-1:], "dcmqrscp": full}


# ------------------------------------------------------------- C-MOVE cancel
N = 2    # cancel after this many sub-operations


def test_move_cancel_during_a_sub_operation(env: Env) -> None:
    """The C-CANCEL arrives while sub-operation N is at the destination (the
    destination sends it, then takes 0.5 s to answer): both finish N and
    answer Cancel with Remaining = the ones not started, through our Client
    (``cancel()``) and pynetdicom."""
    nth = env.order[N - 1]
    want_final = Rsp(CANCEL, len(env.order) - N, N, 0, 0, None)
    got, want = {}, {}
    for scp in env.scps:
        # Our Client: cancel() once the destination holds instance N.
        gate = threading.Event()
        env.arm({nth: Pause(0.5, gate.set)})
        with connect(scp) as assoc:
            result = assoc.move(env.key(), "DEST")
            assert gate.wait(10)
            assert result.cancel() == CANCEL
            client = (result.status, result.remaining, result.completed, result.failed, result.warning,
                      tuple(result.failed_instances), result.done)
            assert assoc.echo() == SUCCESS
        client_received = env.received()

        # pynetdicom: the destination's thread sends the C-CANCEL on the SCU's association.
        def arm_cancel(assoc: Any, context_id: int) -> None:
            env.arm({nth: Pause(0.5, lambda: assoc.send_c_cancel(7, context_id))})

        rsps = pyn_move(scp, env.key(), "DEST", on_open=arm_cancel)
        got[scp.name] = (client, client_received, normalize(rsps), env.received())
        want[scp.name] = ((CANCEL, len(env.order) - N, N, 0, 0, (), True), env.order[:N],
                          oracle(env.order, {})[:N - 1] + (want_final,), env.order[:N])
    assert got == want


def test_move_cancel_in_reaction_to_a_pending(env: Env) -> None:
    """The SCU cancels when it reads Pending N (our Client leaving the loop,
    ``movescu --cancel N``); sub-operation N+1 takes 0.5 s at the destination.
    The sample server has always started N+1 by then and finishes it; dcmqrscp
    races (see the module docstring). Either way the Cancel response is
    consistent: Completed + Remaining = all, and the destination got exactly
    the completed ones."""
    total = len(env.order)
    rule = {env.order[N]: Pause(0.5)}
    got: dict[str, Any] = {}
    for scp in env.scps:
        env.arm(rule)
        with connect(scp) as assoc:
            result = assoc.move(env.key(), "DEST")
            for progress in result:
                assert progress.status == PENDING
                if progress.completed == N:
                    break
            assert result.done and result.cancelled
            client = (result.status, result.remaining, result.completed, result.failed, result.warning,
                      tuple(result.failed_instances))
            assert assoc.echo() == SUCCESS
        client_received = env.received()
        env.arm(rule)
        rsps = dcmtk_move(scp, env.key(), "DEST", "--cancel", str(N))
        got[scp.name] = (client, client_received, rsps[-1], env.received())
    for name, (client, client_received, final, received) in got.items():
        for done, seen in ((client[2], client_received), (final.completed, received)):
            assert seen == env.order[:done], name
    allowed = {"sample": [N + 1], "dcmqrscp": [N, N + 1]}
    for name, (client, _, final, _) in got.items():
        assert [c for c in allowed[name] if client == (CANCEL, total - c, c, 0, 0, ())], (name, client)
        assert [c for c in allowed[name] if final == Rsp(CANCEL, total - c, c, 0, 0, None)], (name, final)


# ---------------------------------------------------------------- C-GET
def get_contexts(*storage: str) -> list[str]:
    return [VERIFICATION, GET_MODELS["study"], *storage]


def client_get(scp: Scp, key: dict[str, str], *, contexts: list[str] | None = None,
               roles: list[tuple[str, bool, bool]] | None = None, store_to: Any = None,
               stop_after: int | None = None, for_get: bool = False) -> tuple[Any, ...]:
    """Our Client's C-GET: (the final response as :func:`client_view` shapes it,
    the UIDs handed out) -- the Pendings are compared through pynetdicom.
    ``stop_after``: leave the loop after that many instances (0.5 s later)."""
    kw: dict[str, Any] = {"for_get": True} if for_get else {"contexts": contexts, "role_selections": roles}
    with connect(scp, **kw) as assoc:
        result = assoc.get(key, store_to=store_to)
        got: list[str] = []
        try:
            for item in result:
                got.append(Path(item).name[:-4] if isinstance(item, (str, Path)) else str(item.SOPInstanceUID))
                if stop_after is not None and len(got) == stop_after:
                    time.sleep(0.5)        # the SCP has the next C-STORE-RQ out by now
                    break
        except DimseStatusError as exc:
            assert exc.status == result.status
        assert result.done and result.received == len(got)
        final = (result.status, result.remaining, result.completed, result.failed, result.warning,
                 tuple(sorted(result.failed_instances)))
        assert assoc.echo() == SUCCESS
    return final, got


def pyn_get(scp: Scp, key: dict[str, str], *, storage: tuple[str, ...] = (CT, MR),
            roles: dict[str, tuple[bool, bool]] | None = None, answers: dict[str, int] | None = None,
            cancel_after: int | None = None) -> tuple[tuple[Rsp, ...], list[str]]:
    """A pynetdicom C-GET proposing ``storage`` with the ``roles`` (SOP class ->
    (scu, scp); default SCP role for each): (responses, UIDs of the C-STOREs it
    got). ``answers``: status per SOP Instance UID; ``cancel_after``: send the
    C-CANCEL in the handler of that C-STORE, before answering it."""
    require("pynetdicom")
    from pynetdicom import AE, build_role, evt

    model = GET_MODELS["study"]
    roles = {uid: (False, True) for uid in storage} if roles is None else roles
    answers = answers or {}
    ae = AE(ae_title="PYNSCU")
    ae.add_requested_context(model)
    for uid in storage:
        ae.add_requested_context(uid)
    got: list[str] = []
    state: dict[str, Any] = {}

    def on_store(event: Any) -> int:
        uid = str(event.request.AffectedSOPInstanceUID)
        got.append(uid)
        if cancel_after is not None and len(got) == cancel_after:
            event.assoc.send_c_cancel(7, state["context_id"])
        return answers.get(uid, SUCCESS)

    ext = [build_role(uid, scu_role=scu, scp_role=scp) for uid, (scu, scp) in roles.items()]
    assoc = ae.associate(HOST, scp.port, ae_title=scp.aet, ext_neg=ext, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    try:
        state["context_id"] = next(cx.context_id for cx in assoc.accepted_contexts if cx.abstract_syntax == model)
        rsps = tuple(pyn_rsp(status, ident) for status, ident in assoc.send_c_get(pyn_query(key), model, msg_id=7))
    finally:
        assoc.release()
    return normalize(rsps), got


@dataclass
class GetCase:
    name: str
    client: dict[str, Any]                 # client_get keywords
    pyn: dict[str, Any]                    # pyn_get keywords
    outcome: dict[int, str]                # index -> outcome, for both SCUs ...
    sent: list[int]                        # ... and the instances the SCP sends
    pyn_outcome: dict[int, str] | None = None   # when pynetdicom's differs


def _failing_store_to(env: Env, refused: list[str]) -> Callable[[Any], Path]:
    out = env.tmp / "get-out"
    out.mkdir(exist_ok=True)

    def target(command: Any) -> Path:
        uid = str(command["AffectedSOPInstanceUID"])
        if uid in refused:
            raise OSError("no space left on device (test)")
        return out / f"{uid}.dcm"

    return target


GET_CASES = [
    GetCase("MR-not-proposed", {"contexts": get_contexts(CT), "roles": [(CT, False, True)]},
            {"storage": (CT,)}, {3: FAIL, 4: FAIL, 5: FAIL}, [0, 1, 2]),
    GetCase("MR-without-role-selection", {"contexts": get_contexts(CT, MR), "roles": [(CT, False, True)]},
            {"roles": {CT: (False, True)}}, {3: FAIL, 4: FAIL, 5: FAIL}, [0, 1, 2]),
    GetCase("MR-with-the-SCU-role-only", {"contexts": get_contexts(CT, MR),
                                          "roles": [(CT, False, True), (MR, True, False)]},
            {"roles": {CT: (False, True), MR: (True, False)}}, {3: FAIL, 4: FAIL, 5: FAIL}, [0, 1, 2]),
    GetCase("no-storage-context", {"contexts": get_contexts(), "roles": []}, {"storage": (), "roles": {}},
            {i: FAIL for i in ALL}, []),
    # Our Client answers Out of Resources (A700) where store_to fails; pynetdicom's
    # handler answers A700 / B007 (a warning) / C000.
    GetCase("refused-by-the-SCU", {"refuse": [1, 4]}, {"answers": {1: 0xA700, 3: 0xB007, 5: 0xC000}},
            {1: FAIL, 4: FAIL}, list(ALL), pyn_outcome={1: FAIL, 3: WARN, 5: FAIL}),
]


@pytest.mark.parametrize("case", GET_CASES, ids=[c.name for c in GET_CASES])
def test_get_with_failing_sub_operations(env: Env, case: GetCase) -> None:
    """Our Client and pynetdicom against each SCP: the responses (modulo the
    optional Pendings) and what the SCU received, against the PS3.4 oracle."""
    order = env.order
    sent = [order[i] for i in case.sent]
    client_kw = dict(case.client)
    refuse = [order[i] for i in client_kw.pop("refuse", [])]
    if refuse:
        client_kw.update(contexts=get_contexts(CT, MR), roles=[(CT, False, True), (MR, False, True)],
                         store_to=_failing_store_to(env, refuse))
    pyn_kw = dict(case.pyn)
    if "answers" in pyn_kw:
        pyn_kw["answers"] = {order[i]: status for i, status in pyn_kw["answers"].items()}
    client_rsps = oracle(order, {order[i]: o for i, o in case.outcome.items()})
    pyn_rsps = oracle(order, {order[i]: o for i, o in (case.pyn_outcome or case.outcome).items()})
    got, want = {}, {}
    for scp in env.scps:
        got[scp.name] = (client_get(scp, env.key(), **client_kw), pyn_get(scp, env.key(), **pyn_kw))
        want[scp.name] = ((client_view(normalize(client_rsps))[1], [u for u in sent if u not in refuse]),
                          (normalize(pyn_rsps), sent))
    assert got == want


def test_get_cancel_in_the_store_handler(env: Env) -> None:
    """pynetdicom sends the C-CANCEL before answering the N-th C-STORE: both
    SCPs finish that one and answer Cancel with Remaining = the rest."""
    got = {scp.name: pyn_get(scp, env.key(), cancel_after=N) for scp in env.scps}
    want_final = Rsp(CANCEL, len(env.order) - N, N, 0, 0, None)
    assert got == {scp.name: (oracle(env.order, {})[:N - 1] + (want_final,), env.order[:N])
                   for scp in env.scps}


def test_get_cancel_by_leaving_the_loop(env: Env) -> None:
    """Our Client leaves the loop 0.5 s after the N-th instance: the SCP has sent
    the next C-STORE-RQ, which is answered (not handed out); then the Cancel
    counts N+1 completed. With ``for_get=True`` (an Asynchronous Operations
    Window) the sample server had every C-STORE-RQ out before the C-CANCEL:
    all complete and Remaining is 0; dcmqrscp takes no window."""
    total = len(env.order)
    contexts, roles = get_contexts(CT, MR), [(CT, False, True), (MR, False, True)]
    one_at_a_time = (CANCEL, total - N - 1, N + 1, 0, 0, ())
    got = {scp.name: (client_get(scp, env.key(), contexts=contexts, roles=roles, stop_after=N),
                      client_get(scp, env.key(), for_get=True, stop_after=N)) for scp in env.scps}
    assert got == {
        "sample": ((one_at_a_time, env.order[:N]), ((CANCEL, 0, total, 0, 0, ()), env.order[:N])),
        "dcmqrscp": ((one_at_a_time, env.order[:N]), (one_at_a_time, env.order[:N])),
    }


# ------------------------------------------------- an instance the SCP cannot read
@pytest.mark.parametrize("name", ["sample", "dcmqrscp"])
def test_move_with_an_unreadable_instance(env: Env, name: str) -> None:
    """Study B's middle file is gone from the SCP's store: that sub-operation
    fails, the others complete; the Warning response lists the missing one."""
    scp = next(s for s in env.scps if s.name == name)
    order = env.gap_order
    want = oracle(order, {env.missing: FAIL})
    received = [u for u in order if u != env.missing]
    key = env.key(env.gap_study)
    env.arm()
    client = normalize_client(*client_move(scp, key, "DEST")), env.received()
    env.arm()
    pyn = normalize(pyn_move(scp, key, "DEST")), env.received()
    env.arm()
    dcmtk = normalize(dcmtk_move(scp, key, "DEST")), env.received()
    assert want[-1] == Rsp(WARNING, None, 2, 1, 0, (env.missing,))
    assert (client, pyn, dcmtk) == ((client_view(normalize(want)), received), (normalize(want), received),
                                    (normalize(want), received))


@pytest.mark.parametrize("name", ["sample", "dcmqrscp"])
def test_get_with_an_unreadable_instance(env: Env, name: str) -> None:
    """The same for C-GET, through our Client, pynetdicom and getscu."""
    scp = next(s for s in env.scps if s.name == name)
    order = env.gap_order
    want = normalize(oracle(order, {env.missing: FAIL}))
    received = [u for u in order if u != env.missing]
    key = env.key(env.gap_study)
    client = client_get(scp, key, contexts=get_contexts(CT), roles=[(CT, False, True)])
    pyn = pyn_get(scp, key, storage=(CT,))
    out = env.tmp / f"getscu-{name}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    require("getscu")
    res = getscu(scp.port, scp.aet, [f"{k}={v}" for k, v in key.items()], out, "-d", model="-S")
    dcmtk = (normalize(parse_dcmtk(res.output, "C-GET RSP")),
             sorted(p.name.split(".", 1)[1] for p in out.iterdir()))
    # getscu does not read the final response's data set (see the module docstring):
    # from it, only that one was sent.
    seen_by_getscu = want[:-1] + (want[-1]._replace(failed_uids=()),)
    assert (client, pyn, dcmtk) == ((client_view(want)[1], received), (want, received),
                                    (seen_by_getscu, sorted(received)))
