"""The ``dicomnet`` command line against real peers.

* ``dicomnet echo/store/find/get/move`` against Orthanc (our store-scp as the
  C-MOVE destination);
* dcmtk ``storescu`` -> ``dicomnet store-scp``;
* dcmtk ``findscu`` and ``getscu`` against ``dicomnet sample-server``.
"""
from __future__ import annotations

import importlib.util
import json
import random
import re
from pathlib import Path

import pytest

from dicomnet import read_file, write_file
from dicomnet.samples.archive import Archive
from dicomnet.samples.synthetic import generate

from .peers import findscu, getscu, record_started, require, storescu

_cli_tests = Path(__file__).resolve().parents[1] / "cli"
_spec = importlib.util.spec_from_file_location("cli_run", _cli_tests / "_run.py")
_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_run)
run = _run.run
_spec2 = importlib.util.spec_from_file_location("cli_store_scp_tests", _cli_tests / "test_store_scp.py")
_scp_tests = importlib.util.module_from_spec(_spec2)
_spec2.loader.exec_module(_scp_tests)
Daemon = _scp_tests.Daemon


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One synthetic study (2 series x 3 instances) as files, with a random seed:
    the session's Orthanc may already hold other studies."""
    folder = tmp_path_factory.mktemp("study")
    seed = random.randrange(1 << 30)
    datasets = list(generate(patients=1, studies=1, series=2, instances=3, seed=seed))
    for n, ds in enumerate(datasets):
        write_file(folder / f"{n}.dcm", ds)
    return folder, datasets


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_dicomnet_echo_store_find_get_move_with_orthanc(orthanc, study, tmp_path):
    folder, datasets = study
    port, aec = str(orthanc.dicom_port), orthanc.aet
    r = run("echo", "127.0.0.1", port, "--aec", aec)
    assert r.returncode == 0 and "Success" in r.stdout
    r = run("store", "127.0.0.1", port, str(folder), "--aec", aec, "--json")
    assert r.returncode == 0, r.stderr + r.stdout
    assert _json_lines(r.stdout)[-1]["sent"] == 6
    held = {orthanc.instance_tags(i)["SOPInstanceUID"] for i in orthanc.instances()}
    assert {ds.SOPInstanceUID for ds in datasets} <= held

    study_uid = datasets[0].StudyInstanceUID
    r = run("find", "127.0.0.1", port, "--aec", aec, "--json", "-k", f"StudyInstanceUID={study_uid}",
            "-k", "NumberOfStudyRelatedInstances")
    assert r.returncode == 0, r.stderr
    *matches, summary = _json_lines(r.stdout)
    assert len(matches) == 1 and summary["ok"]
    assert matches[0]["00201208"]["Value"] == [6]
    assert matches[0]["00100020"]["Value"] == [datasets[0].PatientID]
    r = run("find", "127.0.0.1", port, "--aec", aec, "--level", "SERIES", "-k", f"StudyInstanceUID={study_uid}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1].startswith("2 match(es)")
    r = run("find", "127.0.0.1", port, "--aec", aec, "--model", "patient", "--level", "IMAGE",
            "-k", f"PatientID={datasets[0].PatientID}", "-k", f"StudyInstanceUID={study_uid}",
            "-k", f"SeriesInstanceUID={datasets[0].SeriesInstanceUID}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1].startswith("3 match(es)")

    # C-GET: Orthanc sends the study back on our association.
    r = run("get", "127.0.0.1", port, "--aec", aec, "-k", f"StudyInstanceUID={study_uid}",
            "--out", str(tmp_path / "got"))
    assert r.returncode == 0, r.stderr + r.stdout
    got = {p.stem for p in (tmp_path / "got").glob("*.dcm")}
    assert got == {ds.SOPInstanceUID for ds in datasets}
    for ds in datasets[:2]:
        back = read_file(tmp_path / "got" / f"{ds.SOPInstanceUID}.dcm")
        assert bytes(back["PixelData"].value) == bytes(ds["PixelData"].value)

    # C-MOVE: Orthanc sends one series to our store-scp.
    with Daemon("store-scp", "--out", str(tmp_path / "moved"), "--aet", "DNSCP") as scp:
        orthanc.add_modality("DNSCP", "DNSCP", scp.port)
        series = datasets[0].SeriesInstanceUID
        r = run("move", "127.0.0.1", port, "--aec", aec, "--dest", "DNSCP", "--level", "SERIES",
                "-k", f"StudyInstanceUID={study_uid}", "-k", f"SeriesInstanceUID={series}")
        code, _, _ = scp.stop()
    assert r.returncode == 0, r.stderr + r.stdout
    assert "3 completed, 0 failed" in r.stdout and code == 0
    assert {p.stem for p in (tmp_path / "moved").glob("*.dcm")} == {
        ds.SOPInstanceUID for ds in datasets if ds.SeriesInstanceUID == series}
    r = run("move", "127.0.0.1", port, "--aec", aec, "--dest", "UNKNOWN-AE", "-k", f"StudyInstanceUID={study_uid}")
    assert r.returncode == 1


def test_dcmtk_storescu_to_dicomnet_store_scp(study, tmp_path, testdata):
    require("storescu")
    folder, datasets = study
    files = sorted(folder.glob("*.dcm"))
    extra = testdata("CT_small.dcm")
    with Daemon("store-scp", "--out", str(tmp_path / "in"), "--aet", "DN-STORE") as scp:
        result = storescu(scp.port, "DN-STORE", [*files, extra])
        code, rest, err = scp.stop()
    assert result.ok, result.output
    assert code == 0, err
    assert _json_lines(rest)[-1]["received"] == 7
    for ds in datasets:
        back = read_file(tmp_path / "in" / f"{ds.SOPInstanceUID}.dcm")
        assert back.SOPInstanceUID == ds.SOPInstanceUID
        assert bytes(back["PixelData"].value) == bytes(ds["PixelData"].value)
        assert back.file_meta.SourceApplicationEntityTitle.strip() == "STORESCU"
    ct = read_file(extra)
    assert bytes(read_file(tmp_path / "in" / f"{ct.SOPInstanceUID}.dcm")["PixelData"].value) == \
        bytes(ct["PixelData"].value)


SYNTHETIC = ("--synthetic", "--patients", "2", "--studies", "1", "--series", "2", "--instances", "2", "--seed", "11")


def test_dcmtk_findscu_and_getscu_against_sample_server(tmp_path):
    require("findscu")
    archive = Archive.from_synthetic(patients=2, studies=1, series=2, instances=2, seed=11)
    with Daemon("sample-server", *SYNTHETIC, "--aet", "SAMPLE") as srv:
        result = findscu(srv.port, "SAMPLE", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientName"])
        assert result.ok, result.output
        found = set(re.findall(r"\(0020,000d\) UI \[([0-9.]+)\x00?\]", result.output))
        assert found == set(archive._index["STUDY"])
        pid = sorted(archive._patients)[0]
        result = findscu(srv.port, "SAMPLE", ["QueryRetrieveLevel=PATIENT", f"PatientID={pid}", "PatientName"],
                         model="-P")
        assert result.ok, result.output
        assert re.findall(r"\(0010,0020\) LO \[([^\]\x00 ]+)[\x00 ]?\]", result.output) == [pid]
        study = sorted(archive._index["STUDY"])[0]
        series = sorted(archive._index["STUDY"][study].children)[0]
        result = findscu(srv.port, "SAMPLE", ["QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={study}",
                                              f"SeriesInstanceUID={series}", "SOPInstanceUID"])
        assert result.ok, result.output
        assert set(re.findall(r"\(0008,0018\) UI \[([0-9.]+)\x00?\]", result.output)) == \
            set(archive._index["SERIES"][series].children)
        require("getscu")
        out = tmp_path / "got"
        out.mkdir()
        result = getscu(srv.port, "SAMPLE", ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study}"], out,
                        model="-S")
        assert result.ok, result.output
        code, _, _ = srv.stop()
    assert code == 0
    received = {read_file(p).SOPInstanceUID for p in out.iterdir()}
    assert received == {i for s in archive._index["STUDY"][study].children.values() for i in s.children}
    record_started("dcmtk")
