"""``dicomnet dump``: the console script on pydicom's test files, human and --json."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402

from dicomnet.cli.dump import dump_lines  # noqa: E402
from dicomnet.dicom import read_file, write_file  # noqa: E402
from dicomnet.samples import generate  # noqa: E402

_spec = importlib.util.spec_from_file_location("cli_run", Path(__file__).with_name("_run.py"))
_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_run)
run = _run.run


def test_dump_ct_small_lines():
    path = get_testdata_file("CT_small.dcm")
    r = run("dump", path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "# File Meta Information"
    assert "# Data set: Explicit VR Little Endian" in lines
    pyds = pydicom.dcmread(path)
    by_tag = {line.split()[0]: line for line in lines if line.startswith("(")}
    # tag, VR, length, keyword, value -- checked against pydicom for a few elements.
    for keyword in ("PatientName", "PatientID", "Modality", "SOPInstanceUID", "Rows", "StudyDate"):
        elem = pyds[keyword]
        line = by_tag[f"({elem.tag.group:04X},{elem.tag.element:04X})"]
        assert line.split()[1] == elem.VR
        assert keyword in line
        assert f"[{elem.value}]" in line
    assert by_tag["(0010,0010)"].split()[2] == str(len(str(pyds.PatientName)) + len(str(pyds.PatientName)) % 2)
    assert by_tag["(0008,0050)"].endswith("(no value)")
    assert by_tag["(0008,0008)"].endswith("[ORIGINAL\\PRIMARY\\AXIAL]")
    pixel = by_tag["(7FE0,0010)"]
    assert "<pixel data: 1 frame of 128x128, 16-bit MONOCHROME2, native, 32768 bytes>" in pixel


def test_dump_indents_sequence_items():
    lines = list(dump_lines(read_file(get_testdata_file("rtplan.dcm"))))
    start = next(i for i, line in enumerate(lines) if "FractionGroupSequence" in line)
    assert lines[start].startswith("(300A,0070) SQ") and lines[start].endswith("(1 item)")
    assert lines[start + 1] == "  (FFFE,E000) item 1"
    assert lines[start + 2].startswith("    (300A,0071) IS")
    nested = next(line for line in lines if "ReferencedBeamSequence" in line)
    assert nested.startswith("    (300C,0004) SQ")
    assert any(line.startswith("        (300A,0084) DS") for line in lines)


def test_dump_encapsulated_pixel_data_and_undefined_length():
    lines = list(dump_lines(read_file(get_testdata_file("JPEG2000.dcm")), meta=False))
    assert not lines[0].startswith("# File Meta")
    pixel = next(line for line in lines if line.startswith("(7FE0,0010)"))
    assert pixel.split()[1:3] == ["OB", "u/l"] and "encapsulated" in pixel


def test_dump_cuts_long_values_unless_told_not_to(tmp_path):
    ds = next(generate(rows=4, cols=4))
    ds.StudyComments = "x" * 200
    path = tmp_path / "long.dcm"
    write_file(path, ds)
    short = next(line for line in dump_lines(read_file(path)) if "StudyComments" in line)
    assert short.endswith("...]") and len(short) < 140
    full = next(line for line in dump_lines(read_file(path), width=0) if "StudyComments" in line)
    assert full.endswith("x" * 200 + "]")


def test_dump_of_something_that_is_not_dicom(tmp_path):
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\x10\x00\x10\x00" + b"\xff" * 40)
    r = run("dump", str(bad), get_testdata_file("CT_small.dcm"))
    assert r.returncode == 1
    assert "bad.dcm" in r.stderr and "error" in r.stderr
    assert "# " + get_testdata_file("CT_small.dcm") in r.stdout     # the good file is still printed
    r = run("dump", str(tmp_path / "missing.dcm"))
    assert r.returncode == 1 and "missing.dcm" in r.stderr


# Differences from pydicom's Dataset.to_json_dict() (documented in docs/cli.md and
# dicomnet.cli.jsonmodel): group lengths are left out, an empty sequence has no
# "Value", and an empty value inside a multi-valued element is null.
def _as_dicomnet_writes(obj):
    out = {}
    for key, value in obj.items():
        if key.endswith("0000"):
            continue
        value = dict(value)
        if value.get("vr") == "SQ":
            if value.get("Value") == []:
                del value["Value"]
            elif "Value" in value:
                value["Value"] = [_as_dicomnet_writes(item) for item in value["Value"]]
        elif isinstance(value.get("Value"), list) and len(value["Value"]) > 1:
            value["Value"] = [None if v == "" else v for v in value["Value"]]
        out[key] = value
    return out


JSON_FILES = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtdose.dcm", "JPEG2000.dcm", "image_dfl.dcm",
              "ExplVR_BigEnd.dcm", "reportsi.dcm", "test-SR.dcm", "examples_overlay.dcm", "waveform_ecg.dcm",
              "UN_sequence.dcm", "SC_rgb_rle_2frame.dcm", "no_meta_group_length.dcm"]


def test_json_model_matches_pydicom():
    paths = [get_testdata_file(name) for name in JSON_FILES]
    r = run("dump", "--json", *paths)              # one JSON object per file, one per line
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == len(paths)
    for path, line in zip(paths, lines):
        theirs = _as_dicomnet_writes(json.loads(json.dumps(pydicom.dcmread(path).to_json_dict())))
        assert json.loads(line) == theirs, path


def test_json_person_names_and_charsets(tmp_path):
    # A patient whose name has an ideographic group (ISO_IR 192).
    ds = next(d for d in generate(patients=12, studies=1, series=1, instances=1, rows=2, cols=2)
              if "=" in str(d.PatientName))
    path = tmp_path / "pn.dcm"
    write_file(path, ds)
    r = run("dump", "--json", str(path))
    obj = json.loads(r.stdout)
    name = obj["00100010"]
    groups = str(ds.PatientName).split("=")
    assert name["vr"] == "PN" and name["Value"][0]["Alphabetic"] == groups[0]
    assert name["Value"][0]["Ideographic"] == groups[1] and not groups[1].isascii()
    assert obj["00080005"] == {"vr": "CS", "Value": ["ISO_IR 192"]}
    assert obj == _as_dicomnet_writes(json.loads(json.dumps(pydicom.dcmread(path).to_json_dict())))


def test_main_in_process(capsys):
    from dicomnet.cli import main

    assert main(["dump", "--no-meta", get_testdata_file("CT_small.dcm")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Data set: Explicit VR Little Endian")
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
