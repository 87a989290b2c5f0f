"""``dicomnet sample-server`` (a subprocess) driven by the ``dicomnet`` client
subcommands, plus the :class:`SampleHandler` in process (C-CANCEL)."""
from __future__ import annotations

import importlib.util
import json
import logging
import signal
import time
from pathlib import Path

import pytest

from dicomnet import Client, Server, read_file, write_file
from dicomnet.samples.archive import Archive
from dicomnet.samples.server import JsonLogFormatter, SampleHandler, load_destinations, parse_destination
from dicomnet.samples.synthetic import generate

_here = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("cli_run", _here / "_run.py")
_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_run)
run = _run.run
_spec2 = importlib.util.spec_from_file_location("cli_store_scp_tests", _here / "test_store_scp.py")
_scp_tests = importlib.util.module_from_spec(_spec2)
_spec2.loader.exec_module(_scp_tests)
Daemon = _scp_tests.Daemon

SYNTHETIC = ("--synthetic", "--patients", "2", "--studies", "1", "--series", "2", "--instances", "3", "--seed", "4")


def _archive() -> Archive:
    """The archive the sample server builds from SYNTHETIC."""
    return Archive.from_synthetic(patients=2, studies=1, series=2, instances=3, seed=4)


@pytest.fixture(scope="module")
def dest(tmp_path_factory):
    """A store-scp (AE DEST) the sample server can C-MOVE to."""
    folder = tmp_path_factory.mktemp("dest")
    with Daemon("store-scp", "--out", str(folder), "--aet", "DEST") as scp:
        scp.folder = folder
        yield scp


@pytest.fixture(scope="module")
def sample(dest, tmp_path_factory):
    with Daemon("sample-server", *SYNTHETIC, "--aet", "SAMPLE", "--log-format", "json",
                "--destination", f"DEST=127.0.0.1:{dest.port}") as srv:
        yield srv


def _find(sample, *args: str) -> list[dict]:
    r = run("find", "127.0.0.1", str(sample.port), "--aec", "SAMPLE", "--json", *args)
    assert r.returncode == 0, r.stderr + r.stdout
    return [json.loads(line) for line in r.stdout.splitlines()][:-1]


def _value(match: dict, tag: str):
    return match[tag]["Value"][0]


def test_echo_and_find_at_every_level_in_both_models(sample):
    archive = _archive()
    r = run("echo", "127.0.0.1", str(sample.port), "--aec", "SAMPLE")
    assert r.returncode == 0 and "Success" in r.stdout
    patients = _find(sample, "--model", "patient", "--level", "PATIENT")
    assert sorted(_value(m, "00100020") for m in patients) == sorted(archive._patients)
    pid = sorted(archive._patients)[0]
    studies = _find(sample, "--model", "patient", "--level", "STUDY", "-k", f"PatientID={pid}")
    assert [_value(m, "0020000D") for m in studies] == list(archive._patients[pid].children)
    studies = _find(sample)                                # study root, STUDY level
    assert sorted(_value(m, "0020000D") for m in studies) == sorted(archive._index["STUDY"])
    study = archive._index["STUDY"][_value(studies[0], "0020000D")]
    series = _find(sample, "--level", "SERIES", "-k", f"StudyInstanceUID={study.uid}")
    assert sorted(_value(m, "0020000E") for m in series) == sorted(study.children)
    one = next(iter(study.children.values()))
    images = _find(sample, "--level", "IMAGE", "-k", f"StudyInstanceUID={study.uid}",
                   "-k", f"SeriesInstanceUID={one.uid}")
    assert sorted(_value(m, "00080018") for m in images) == sorted(one.children)
    # Every answer names where to retrieve from: the AE title we were called by (C.4.1.1.3.2).
    assert {_value(m, "00080054") for m in patients + studies + series + images} == {"SAMPLE"}
    r = run("find", "127.0.0.1", str(sample.port), "--model", "patient", "--level", "SERIES")
    assert r.returncode == 1                               # no Patient ID / Study UID given


def test_store_then_find_the_new_instance(sample, tmp_path):
    ds = next(generate(patients=1, studies=1, series=1, instances=1, seed=1234))
    write_file(tmp_path / "new.dcm", ds)
    r = run("store", "127.0.0.1", str(sample.port), str(tmp_path / "new.dcm"), "--aec", "SAMPLE")
    assert r.returncode == 0, r.stderr
    found = _find(sample, "--level", "IMAGE", "-k", f"StudyInstanceUID={ds.StudyInstanceUID}",
                  "-k", f"SeriesInstanceUID={ds.SeriesInstanceUID}")
    assert [_value(m, "00080018") for m in found] == [ds.SOPInstanceUID]


def test_move_a_study_to_a_store_scp(sample, dest):
    study = sorted(_archive()._index["STUDY"].values(), key=lambda e: e.uid)[0]
    expected = {i for s in study.children.values() for i in s.children}
    r = run("move", "127.0.0.1", str(sample.port), "--aec", "SAMPLE", "--dest", "DEST",
            "-k", f"StudyInstanceUID={study.uid}", "--json")
    assert r.returncode == 0, r.stderr + r.stdout
    *pending, summary = [json.loads(line) for line in r.stdout.splitlines()]
    assert summary["ok"] and summary["completed"] == 6 and summary["failed"] == 0
    assert [p["completed"] for p in pending] == list(range(1, 6))
    names = {p.stem for p in Path(dest.folder).glob("*.dcm")}
    assert expected <= names
    r = run("move", "127.0.0.1", str(sample.port), "--dest", "NOBODY", "-k", f"StudyInstanceUID={study.uid}")
    assert r.returncode == 1 and "0xA801" in r.stderr


def test_get_a_series_into_a_folder(sample, tmp_path):
    study = sorted(_archive()._index["STUDY"].values(), key=lambda e: e.uid)[1]
    series = next(iter(study.children.values()))
    r = run("get", "127.0.0.1", str(sample.port), "--aec", "SAMPLE", "--level", "SERIES",
            "-k", f"StudyInstanceUID={study.uid}", "-k", f"SeriesInstanceUID={series.uid}", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr + r.stdout
    assert "C-GET: 3 instance(s) received" in r.stdout
    files = sorted(tmp_path.glob("*.dcm"))
    assert sorted(p.stem for p in files) == sorted(series.children)
    for path in files:
        ds = read_file(path)
        original = series.children[path.stem].source
        assert ds.SOPInstanceUID == path.stem
        assert bytes(ds["PixelData"].value) == bytes(original["PixelData"].value)
    r = run("get", "127.0.0.1", str(sample.port), "--level", "SERIES", "--out", str(tmp_path))
    assert r.returncode == 1                        # no unique keys: refused by the archive


def test_destinations_file_json_logs_and_signals(tmp_path, dest):
    (tmp_path / "dest.json").write_text(json.dumps({"DEST": f"127.0.0.1:{dest.port}", "OTHER": ["10.0.0.1", 104]}))
    assert load_destinations(str(tmp_path / "dest.json")) == {"DEST": ("127.0.0.1", dest.port),
                                                               "OTHER": ("10.0.0.1", 104)}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with Daemon("sample-server", *SYNTHETIC, "--destinations", str(tmp_path / "dest.json"),
                    "--log-format", "json") as srv:
            assert run("echo", "127.0.0.1", str(srv.port)).returncode == 0
            uid = sorted(_archive()._index["STUDY"])[0]
            r = run("move", "127.0.0.1", str(srv.port), "--dest", "DEST", "-k", f"StudyInstanceUID={uid}")
            assert r.returncode == 0, r.stderr
            started = time.monotonic()
            code, _, err = srv.stop(sig)
            assert code == 0 and time.monotonic() - started < 10
        records = [json.loads(line) for line in err.splitlines()]     # every stderr line is one JSON object
        events = [r.get("event") for r in records]
        assert "archive" in events and "echo" in events and "move" in events
        move = next(r for r in records if r.get("event") == "move")
        assert move["destination"] == "DEST" and move["instances"] == 6 and move["level"] == "info"
        assert {"time", "level", "logger", "message"} <= set(records[0])


def test_bad_destinations_are_usage_errors(tmp_path):
    r = run("sample-server", "--port", "0", "--synthetic", "--destination", "NOPORT=host")
    assert r.returncode == 2 and "AET=HOST:PORT" in r.stderr
    with pytest.raises(ValueError):
        parse_destination("X=h:99999")
    assert parse_destination("ORTHANC=orthanc:4242") == ("ORTHANC", ("orthanc", 4242))
    r = run("sample-server", "--port", "0")        # neither --synthetic nor --dicom
    assert r.returncode == 2
    r = run("sample-server", "--port", "0", "--dicom", str(tmp_path / "missing"))
    assert r.returncode == 1 and "no such file or folder" in r.stderr


def test_dicom_folder_archive(tmp_path):
    for n, ds in enumerate(generate(patients=1, studies=1, series=1, instances=2, seed=8)):
        write_file(tmp_path / f"{n}.dcm", ds)
    (tmp_path / "readme.txt").write_text("skip me")
    with Daemon("sample-server", "--dicom", str(tmp_path)) as srv:
        r = run("find", "127.0.0.1", str(srv.port), "--json")
        assert r.returncode == 0
        assert json.loads(r.stdout.splitlines()[-1])["matches"] == 1
        r = run("get", "127.0.0.1", str(srv.port), "-k", f"StudyInstanceUID={ds.StudyInstanceUID}",
                "--out", str(tmp_path / "got"))
        assert r.returncode == 0, r.stderr
        assert len(list((tmp_path / "got").glob("*.dcm"))) == 2


class _SlowArchive(Archive):
    def find(self, query, model="study", **kw):
        def slow():
            for ds in super(_SlowArchive, self).find(query, model, **kw):
                time.sleep(0.05)
                yield ds
        return slow()


def test_c_cancel_stops_a_find():
    archive = _SlowArchive()
    for ds in generate(patients=1, studies=1, series=1, instances=40, seed=2):
        archive.add(ds)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = logging.getLogger("test.sample.cancel")
    logger.addHandler(Keep())
    logger.setLevel(logging.INFO)
    handler = SampleHandler(archive, logger=logger)
    with Server("SAMPLE", handler).start("127.0.0.1", 0) as srv:
        with Client("CANCELLER").associate("127.0.0.1", srv.port, "SAMPLE") as assoc:
            study = next(iter(archive._index["STUDY"]))
            series = next(iter(archive._index["SERIES"]))
            result = assoc.find({"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": study,
                                 "SeriesInstanceUID": series, "SOPInstanceUID": None})
            for n, _ in enumerate(result, 1):
                if n == 2:
                    break
            assert result.status == 0xFE00 and result.cancelled
            assert assoc.echo() == 0                   # the association carries on
    finds = [r for r in records if r.fields["event"] == "find"]
    assert finds and finds[0].fields["cancelled"] is True and finds[0].fields["matches"] < 40
    line = json.loads(JsonLogFormatter().format(finds[0]))
    assert line["event"] == "find" and line["cancelled"] is True and line["calling_ae"] == "CANCELLER"


def test_get_refuses_a_hostile_sop_instance_uid_from_the_peer(tmp_path):
    good, bad = list(generate(patients=1, studies=1, series=1, instances=2, seed=77))
    bad.SOPInstanceUID = "../evil"

    class Hostile:
        def on_get(self, ctx, query):
            return [good, bad]

    with Server("ANY-SCP", Hostile()).start("127.0.0.1", 0) as srv:
        r = run("get", "127.0.0.1", str(srv.port), "-k", "StudyInstanceUID=1.2.3", "--out", str(tmp_path / "out"),
                "--json")
    assert r.returncode == 1
    summary = json.loads(r.stdout.splitlines()[-1])
    assert summary["received"] == 1 and summary["failed"] == 1 and summary["status"] == 0xB000
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [f"{good.SOPInstanceUID}.dcm"]


def test_move_with_an_async_operations_window(dest):
    # --move-async-ops: the C-STOREs to store-scp (which accepts the window) go out ahead of their responses.
    with Daemon("sample-server", *SYNTHETIC, "--aet", "SAMPLE", "--move-async-ops", "4",
                "--destination", f"DEST=127.0.0.1:{dest.port}") as srv:
        study = sorted(_archive()._index["STUDY"].values(), key=lambda e: e.uid)[1]
        expected = {i for s in study.children.values() for i in s.children}
        r = run("move", "127.0.0.1", str(srv.port), "--aec", "SAMPLE", "--dest", "DEST",
                "-k", f"StudyInstanceUID={study.uid}", "--json")
        assert r.returncode == 0, r.stderr + r.stdout
        summary = json.loads(r.stdout.splitlines()[-1])
        assert summary["ok"] and summary["completed"] == len(expected) and summary["failed"] == 0
        assert expected <= {p.stem for p in Path(dest.folder).glob("*.dcm")}
    r = run("sample-server", "--port", "0", "--synthetic", "--move-async-ops", "-1")
    assert r.returncode != 0 and "move_async_operations" in r.stderr


def test_only_the_served_query_models_are_accepted():
    """The sample server accepts storage, Verification and the Patient/Study
    Root models its archive answers; a worklist or Patient/Study Only context
    is refused at negotiation rather than accepted and failed on every query.
    store-scp, which answers no query, accepts no Q/R model."""
    from dicomnet.cli.store_scp import storage_contexts
    from dicomnet.pdu.items import ABSTRACT_SYNTAX_NOT_SUPPORTED
    from dicomnet.samples.server import QR_SOP_CLASSES

    ct, verification = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.1"
    study_find, worklist = "1.2.840.10008.5.1.4.1.2.2.1", "1.2.840.10008.5.1.4.31"
    ps_only = "1.2.840.10008.5.1.4.1.2.3.1"
    sample = storage_contexts(also=QR_SOP_CLASSES)
    assert {ct, verification, study_find} <= set(sample) and not {worklist, ps_only} & set(sample)
    assert not set(QR_SOP_CLASSES) & set(storage_contexts())
    with Server("SAMPLE", SampleHandler(Archive()), contexts=sample).start("127.0.0.1", 0) as srv:
        with Client("SCU").associate("127.0.0.1", srv.port, "SAMPLE",
                                     contexts=[verification, study_find, worklist, ps_only]) as assoc:
            accepted = {ctx.abstract_syntax for ctx in assoc.negotiated.contexts.values()}
            rejected = dict(assoc.negotiated.rejected)
    assert accepted == {verification, study_find}
    assert rejected == {5: ABSTRACT_SYNTAX_NOT_SUPPORTED, 7: ABSTRACT_SYNTAX_NOT_SUPPORTED}
