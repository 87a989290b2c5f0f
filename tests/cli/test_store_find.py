"""``dicomnet store`` and ``dicomnet find``: the real console script against a
dicomnet.Server serving the sample handler on loopback."""
from __future__ import annotations

import importlib.util
import io
import json
import socket
import threading
from pathlib import Path

import pytest

from dicomnet import Server, write_file
from dicomnet.cli.progress import Progress
from dicomnet.cli.store import FilePlan, plan_contexts, plan_file
from dicomnet.samples.archive import Archive
from dicomnet.samples.server import SampleHandler
from dicomnet.samples.synthetic import generate

_spec = importlib.util.spec_from_file_location("cli_run", Path(__file__).with_name("_run.py"))
_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_run)
run = _run.run

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


class Recording(SampleHandler):
    """The sample handler, also noting the transfer syntax each C-STORE came in."""

    def __init__(self, archive: Archive) -> None:
        super().__init__(archive)
        self.syntaxes: list[str] = []
        self.lock = threading.Lock()

    def on_store(self, ctx, dataset):
        with self.lock:
            self.syntaxes.append(ctx.transfer_syntax)
        return super().on_store(ctx, dataset)


@pytest.fixture()
def server():
    handler = Recording(Archive.from_synthetic(patients=2, studies=1, series=2, instances=3, seed=7))
    with Server("ANY-SCP", handler).start("127.0.0.1", 0) as srv:
        yield srv


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """A folder of 6 CT files (2 in a sub-folder) + a non-DICOM file, and 2 MR files elsewhere."""
    root = tmp_path_factory.mktemp("store")
    ct = root / "ct"
    (ct / "sub").mkdir(parents=True)
    for n, ds in enumerate(generate(patients=1, studies=1, series=2, instances=3, seed=99)):
        write_file(ct / ("sub" if n >= 4 else "") / f"ct{n}.dcm", ds)
    (ct / "notes.txt").write_text("not DICOM\n")
    mr = root / "mr"
    mr.mkdir()
    for n, ds in enumerate(generate(patients=1, studies=1, series=1, instances=2, modality="MR", seed=5)):
        write_file(mr / f"mr{n}.dcm", ds, IMPLICIT)
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------- store
def test_store_folder_recursively_and_files(server, files):
    before = len(server.handler.archive)
    r = run("store", "127.0.0.1", str(server.port), str(files / "ct"), str(files / "mr" / "mr0.dcm"))
    assert r.returncode == 0, r.stderr + r.stdout
    assert len(server.handler.archive) == before + 7
    assert "sent 7 of 7 instance(s)" in r.stdout and "0 failed" in r.stdout
    assert "1 non-DICOM file(s) skipped" in r.stdout and "MB/s" in r.stdout
    assert "\r" not in r.stderr                      # no progress bar without a terminal
    # The MR file was sent as it is (implicit VR LE), the CT files explicit.
    assert server.handler.syntaxes.count(IMPLICIT) == 1 and server.handler.syntaxes.count(EXPLICIT) == 6


def test_store_json_lines(server, files):
    r = run("store", "127.0.0.1", str(server.port), str(files / "mr"), "--json", "--aet", "SENDER")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    per_file, summary = lines[:-1], lines[-1]
    assert [Path(o["file"]).name for o in per_file] == ["mr0.dcm", "mr1.dcm"]
    assert all(o["ok"] and o["status"] == 0 and o["calling_ae"] == "SENDER" for o in per_file)
    assert all(o["sop_instance_uid"] in server.handler.archive for o in per_file)
    assert summary["summary"] is True and summary["sent"] == 2 and summary["failed"] == 0
    assert summary["bytes"] == sum((files / "mr" / f"mr{n}.dcm").stat().st_size for n in range(2))


def test_store_transfer_syntax_option_transcodes(server, files):
    r = run("store", "127.0.0.1", str(server.port), str(files / "ct" / "ct0.dcm"), "--transfer-syntax", IMPLICIT)
    assert r.returncode == 0, r.stderr
    assert server.handler.syntaxes == [IMPLICIT]


def test_store_failures_are_reported_and_exit_1(files, tmp_path):
    handler = Recording(Archive())
    bogus = tmp_path / "bogus.dcm"
    bogus.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\x04\x001.2\0")
    # This server takes CT only: the MR files have no presentation context.
    with Server("ANY-SCP", handler, contexts=[CT]).start("127.0.0.1", 0) as srv:
        r = run("store", "127.0.0.1", str(srv.port), str(files / "ct" / "ct0.dcm"), str(files / "mr"),
                str(bogus), str(tmp_path / "missing.dcm"))
    assert r.returncode == 1
    assert len(handler.archive) == 1
    failed = [line for line in r.stdout.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 4
    assert any("mr0.dcm" in line and "accepted no presentation context for SOP class " + MR in line
               for line in failed)
    assert any("missing.dcm: no such file or folder" in line for line in failed)
    assert any("bogus.dcm" in line and "not" in line for line in failed)
    assert "sent 1 of 5 instance(s)" in r.stdout and "4 failed" in r.stdout


def test_store_failure_status_from_the_peer(files):
    class Refusing:
        def on_store(self, ctx, ds):
            return 0xA700

    with Server("ANY-SCP", Refusing()).start("127.0.0.1", 0) as srv:
        r = run("store", "127.0.0.1", str(srv.port), str(files / "mr"), "--json")
    assert r.returncode == 1
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [o["status"] for o in lines[:-1]] == [0xA700, 0xA700]
    assert lines[-1]["failed"] == 2 and lines[-1]["sent"] == 0
    assert "0xA700" in lines[-1]["failures"][0]["error"]


def test_store_connection_and_association_errors(server, files):
    port = _free_port()
    r = run("store", "127.0.0.1", str(port), str(files / "mr"), "--connect-timeout", "2")
    assert r.returncode == 4 and f"cannot connect to ANY-SCP at 127.0.0.1:{port}" in r.stderr
    r = run("store", "127.0.0.1", str(server.port), str(files / "mr"), "--aec", "WRONG")
    assert r.returncode == 3 and "association rejected" in r.stderr
    assert "sent 0 of 2" in r.stdout


def test_plan_file_reads_the_file_meta(files):
    plan = plan_file(str(files / "mr" / "mr1.dcm"))
    assert (plan.sop_class, plan.transfer_syntax, plan.error) == (MR, IMPLICIT, None)
    assert plan.sop_instance and plan.size > 8000
    assert plan_file(str(files / "ct" / "notes.txt")).error.startswith("not ")


def test_plan_contexts_splits_at_128():
    plans = [FilePlan(f"f{i}", sop_class=f"1.2.3.{i % 200}", sop_instance=f"9.{i}", transfer_syntax=EXPLICIT)
             for i in range(400)]
    plans.append(FilePlan("jpeg", sop_class="1.2.3.0", sop_instance="9.9", transfer_syntax="1.2.840.10008.1.2.4.50"))
    batches = plan_contexts(plans, None)
    assert [len(c) for c, _ in batches] == [128, 73]
    assert sum(len(b) for _, b in batches) == 401
    first_contexts, _ = batches[0]
    assert first_contexts[0] == ("1.2.3.0", (EXPLICIT, IMPLICIT))
    assert ("1.2.3.0", ("1.2.840.10008.1.2.4.50",)) in batches[1][0]   # the JPEG file's own context
    forced = plan_contexts(plans[:3], IMPLICIT)
    assert forced[0][0] == [(f"1.2.3.{i}", (IMPLICIT,)) for i in range(3)]


def test_progress_only_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    progress = Progress(2, 2_000_000, label="store", stream=stream)
    progress._bar = None                          # the plain line, whether tqdm is installed or not
    progress.update(1_000_000)
    progress.update(1_000_000)
    progress.close()
    text = stream.getvalue()
    assert "\r" in text and "store: 2/2, 2.0 MB" in text and "MB/s" in text
    quiet = io.StringIO()
    progress = Progress(2, stream=quiet)
    progress.update(10)
    progress.close()
    assert quiet.getvalue() == "" and progress.count == 1 and progress.nbytes == 10


# -------------------------------------------------------------------- find
def test_find_table_of_studies(server):
    r = run("find", "127.0.0.1", str(server.port))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["PatientName", "PatientID", "StudyDate", "AccessionNumber", "StudyDescription",
                                "StudyInstanceUID"]
    studies = {e.uid for e in server.handler.archive._index["STUDY"].values()}
    rows = lines[1:-1]
    assert len(rows) == 2 and {row.split()[-1] for row in rows} == studies
    assert lines[-1] == "2 match(es); final status Success (0x0000)"


def test_find_keys_levels_and_models(server):
    archive = server.handler.archive
    patient = next(iter(archive._patients.values()))
    study = next(iter(patient.children.values()))
    r = run("find", "127.0.0.1", str(server.port), "--model", "patient", "--level", "patient",
            "-k", f"PatientID={patient.uid}")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 3 and patient.uid in r.stdout
    r = run("find", "127.0.0.1", str(server.port), "--level", "SERIES", "-k", f"0020,000D={study.uid}",
            "-k", "SeriesDate", "--no-default-keys", "-k", "SeriesInstanceUID", "-k", "Modality=CT")
    assert r.returncode == 0, r.stderr
    header, *rows, last = r.stdout.splitlines()
    assert header.split() == ["StudyInstanceUID", "SeriesDate", "SeriesInstanceUID", "Modality"]
    assert {row.split()[-2] for row in rows} == set(study.children)
    assert last.startswith("2 match(es)")


def test_find_json_is_the_dicom_json_model(server):
    r = run("find", "127.0.0.1", str(server.port), "--json", "-k", "PatientName=*", "-k", "00100020")
    assert r.returncode == 0, r.stderr
    *matches, summary = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(matches) == 2
    ids = sorted(m["00100020"]["Value"][0] for m in matches)
    assert ids == sorted(server.handler.archive._patients)
    assert all(m["00080052"] == {"vr": "CS", "Value": ["STUDY"]} for m in matches)
    assert all("Alphabetic" in m["00100010"]["Value"][0] for m in matches)
    assert summary["summary"] is True and summary["matches"] == 2 and summary["status"] == 0


def test_find_failure_status_exits_1(server):
    # A Study Root SERIES query without the Study Instance UID is refused (0xC000).
    r = run("find", "127.0.0.1", str(server.port), "--level", "SERIES")
    assert r.returncode == 1
    assert "0 match(es); final status" in r.stderr and "(0xC000)" in r.stderr
    r = run("find", "127.0.0.1", str(server.port), "--level", "SERIES", "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["status"] == 0xC000


def test_find_usage_errors_and_quiet(server):
    r = run("find", "127.0.0.1", str(server.port), "-k", "NoSuchKeyword=1")
    assert r.returncode == 2 and "NoSuchKeyword" in r.stderr
    r = run("find", "127.0.0.1", str(server.port), "--model", "worklist", "--level", "STUDY")
    assert r.returncode == 2
    r = run("find", "127.0.0.1", str(server.port), "-q")
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""
    for sub in ("store", "find"):
        r = run(sub, "--help")
        assert r.returncode == 0 and "--aet" in r.stdout and "--json" in r.stdout and "--timeout" in r.stdout


def test_progress_uses_tqdm_when_installed():
    pytest.importorskip("tqdm")

    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    progress = Progress(3, 3_000_000, label="store", stream=stream)
    assert progress._bar is not None
    for _ in range(3):
        progress.update(1_000_000)
    progress._bar.refresh()                  # tqdm redraws at most every 0.1 s by itself
    text = stream.getvalue()
    progress.close()
    assert "store" in text and "3/3" in text and "MB/s" in text


def test_find_worklist_model():
    from dicomnet import Dataset

    seen = []

    class Worklist:
        def on_find(self, ctx, query):
            seen.append((ctx.abstract_syntax, query))
            item = Dataset()
            item.Modality = "CT"
            item.ScheduledStationAETitle = "CT1"
            answer = Dataset()
            answer.PatientName = "Doe^Jane"
            answer.PatientID = "W1"
            answer.AccessionNumber = "ACC1"
            answer.ScheduledProcedureStepSequence = [item]
            yield answer

    with Server("ANY-SCP", Worklist()).start("127.0.0.1", 0) as srv:
        r = run("find", "127.0.0.1", str(srv.port), "--model", "worklist", "-k", "PatientID=W*")
    assert r.returncode == 0, r.stderr
    header, row, last = r.stdout.splitlines()
    assert header.split() == ["PatientName", "PatientID", "AccessionNumber", "ScheduledProcedureStepSequence"]
    assert row.split() == ["Doe^Jane", "W1", "ACC1", "<1", "item(s)>"]
    sop_class, query = seen[0]
    assert sop_class == "1.2.840.10008.5.1.4.31"
    assert "QueryRetrieveLevel" not in query and query.PatientID == "W*"
    assert query.ScheduledProcedureStepSequence == []


def test_store_goes_on_after_a_file_that_fails_late(server, files, tmp_path):
    import struct

    from dicomnet.dimse.scp import file_meta_bytes

    # A valid File Meta group (planning accepts it) over a data set that breaks at once.
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(file_meta_bytes(CT, "1.2.826.0.1.3680043.2.1", EXPLICIT, None)
                       + b"\x08\x00\x16\x00UI" + struct.pack("<H", 0x7FF0) + b"1.2")
    good = sorted((files / "mr").glob("*.dcm"))
    before = len(server.handler.archive)
    r = run("store", "127.0.0.1", str(server.port), str(good[0]), str(broken), str(good[1]))
    assert r.returncode == 1
    assert "sent 2 of 3" in r.stdout and "1 failed" in r.stdout
    assert [line for line in r.stdout.splitlines() if line.startswith("failed: ")][0].startswith(
        f"failed: {broken}: ")
    assert len(server.handler.archive) == before + 2


def test_store_will_not_pretend_to_compress(server, files):
    jpeg = "1.2.840.10008.1.2.4.50"
    r = run("store", "127.0.0.1", str(server.port), str(files / "mr" / "mr0.dcm"), "--transfer-syntax", jpeg)
    assert r.returncode == 1
    assert f"cannot be sent in {jpeg}: it is in {IMPLICIT}, and only uncompressed data sets are transcoded" \
        in r.stdout


def test_store_async_ops_window(server, files):
    before = len(server.handler.archive)
    r = run("store", "127.0.0.1", str(server.port), str(files / "ct"), "--async-ops", "4", "--json")
    assert r.returncode == 0, r.stderr + r.stdout
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert lines[-1]["sent"] == 6 and lines[-1]["failed"] == 0
    assert len(server.handler.archive) == before + 6
    assert all(o["sop_instance_uid"] in server.handler.archive for o in lines[:-1])
    r = run("store", "127.0.0.1", str(server.port), str(files / "ct"), "--async-ops", "-1")
    assert r.returncode == 2 and "--async-ops" in r.stderr


def test_find_non_ascii_keys_go_as_utf8_and_unencodable_ones_fail_before_connecting(server):
    """A non-ASCII -k value with no Specific Character Set is sent as UTF-8,
    declared (ISO_IR 192), and matched; one the given character set cannot
    hold is a usage error (exit 2) before any connection -- even to a port
    nobody listens on, where it used to be reported as the peer's fault."""
    from dicomnet.cli.find import build_query, parse_keys

    query = build_query(parse_keys(["PatientName=Müller*"]), None, "study")
    assert query.SpecificCharacterSet == "ISO_IR 192" and str(query.PatientName) == "Müller*"
    r = run("find", "127.0.0.1", str(server.port), "--json", "-k", "PatientName=Müller*")
    assert r.returncode == 0, r.stderr
    r = run("find", "127.0.0.1", str(_free_port()), "-k", "SpecificCharacterSet=ISO_IR 100", "-k", "PatientID=ж")
    assert r.returncode == 2 and "cannot encode" in r.stderr and "Traceback" not in r.stderr
