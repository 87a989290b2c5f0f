"""The Orthanc demo of docker-compose.yml, as plain processes on loopback.

The sample server runs with the command line of ``docker-compose.yml`` (read
from the file; only the Orthanc address and the port differ), a dedicated
Orthanc knows it as modality SAMPLE, and Orthanc's REST API asks it -- by
C-FIND, then C-MOVE with Orthanc itself as the destination -- for a synthetic
study. Afterwards Orthanc holds every instance of that study, byte-identical
pixel data included.
"""
from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

from dicomnet.samples.archive import Archive

from .peers import record_started, require

_root = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("cli_store_scp_tests", _root / "tests" / "cli" / "test_store_scp.py")
_scp_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_scp_tests)
Daemon = _scp_tests.Daemon


def compose_command() -> list[str]:
    """The ``dicomnet sample-server ...`` arguments of docker-compose.yml."""
    text = (_root / "docker-compose.yml").read_text()
    found = re.search(r"exec dicomnet (sample-server [^\"\n]*)", text)
    assert found, "docker-compose.yml runs no 'dicomnet sample-server'"
    return shlex.split(found.group(1))


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def _local(args: list[str], orthanc_port: int) -> list[str]:
    """The compose command with Orthanc's address on loopback (the port is
    appended by Daemon as ``--port 0``; the last one wins)."""
    out = list(args)
    at = out.index("--destination")
    ae, _, _ = out[at + 1].partition("=")
    out[at + 1] = f"{ae}=127.0.0.1:{orthanc_port}"
    return out


def test_compose_command_is_the_documented_one():
    args = compose_command()
    assert args[0] == "sample-server" and "--synthetic" in args
    assert _option(args, "--aet") == "SAMPLE" and _option(args, "--destination").startswith("ORTHANC=orthanc:")
    assert _option(args, "--log-format") == "json"


def test_orthanc_moves_a_synthetic_study_from_the_sample_server(make_orthanc):
    require("Orthanc")
    args = compose_command()
    orthanc = make_orthanc()
    record_started("orthanc")
    with Daemon(*_local(args, orthanc.dicom_port)) as sample:
        orthanc.add_modality("SAMPLE", _option(args, "--aet"), sample.port)
        assert orthanc.echo("SAMPLE")
        archive = Archive.from_synthetic(patients=int(_option(args, "--patients")),
                                         studies=int(_option(args, "--studies")),
                                         series=int(_option(args, "--series")),
                                         instances=int(_option(args, "--instances")),
                                         seed=int(_option(args, "--seed")))
        # Orthanc's C-FIND sees every study of the sample server.
        answers = orthanc.query("SAMPLE", "Study", {"StudyInstanceUID": "", "PatientName": ""})
        found = {a["StudyInstanceUID"] for a in answers}
        assert found == set(archive._index["STUDY"])
        study = sorted(found)[0]
        expected = {i for s in archive._index["STUDY"][study].children.values() for i in s.children}
        orthanc.move("SAMPLE", "Study", [{"StudyInstanceUID": study}], target_aet="ORTHANC")
        code, _, log = sample.stop()
        assert code == 0, log
    held = {}
    for oid in orthanc.instances():
        tags = orthanc.instance_tags(oid)
        held[tags["SOPInstanceUID"]] = oid
    assert set(held) == expected                     # every instance of the study, nothing else
    assert '"event": "move"' in log and '"destination": "ORTHANC"' in log
    sop = sorted(expected)[0]
    raw = orthanc.instance_file(held[sop])
    original = next(s.children[sop].source for s in archive._index["STUDY"][study].children.values()
                    if sop in s.children)
    assert bytes(original["PixelData"].value) in raw
