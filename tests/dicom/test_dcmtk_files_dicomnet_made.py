"""dicomnet's writing cross-checked against dcmtk 3.6.7 (part 2 of the dcmtk
file cross-checks): dicomnet writes, dcmtk reads.

A data set built in Python (every VR, private blocks, nested and empty
sequences, an empty item, multi-frame pixels) is written in every
uncompressed syntax and Deflated; ``dcmftest`` must call it Part 10,
``dcmdump`` must print no warning or error, ``dcm2xml``/``dcm2json`` values
must be the ones set, ``dcmconv`` must round-trip it, ``dciodvfy``
(dicom3tools, when installed) must find no value that is invalid for its VR.

dcmtk-made files read and rewritten by dicomnet: test_dcmtk_files_dcmtk_made.py;
edge cases: test_dcmtk_files_edge_cases.py. The comparisons and the dcmtk
quirks they work around: _dcmtk_files.py.
"""
from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any

import numpy
import pytest

import dicomnet
from dicomnet.dicom.dataset import Dataset

from tests.dicom._dcmtk_files import (BE, IMPLICIT, LE, SC_IMAGE, WRITABLE, _dcmtk_messages, compare, compare_file,
                                      compare_json, compare_views, dcmtk_json, dcmtk_view, theirs_values, tool)


# =================================================== 2. dicomnet writes, dcmtk reads

PY_UID = "1.2.826.0.1.3680043.2.1125.9.10"


def _item(**values: Any) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def python_dataset() -> Dataset:
    """Every VR, set from Python: the Selector Attribute Value elements (0072,005E-0083)
    hold one VR each; private blocks with a private sequence; nested, empty
    sequences and an empty item; a PN with three component groups; multi-frame pixels."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = SC_IMAGE
    ds.SOPInstanceUID = PY_UID
    ds.StudyDate = "20240229"
    ds.StudyTime = "235959.999999"
    ds.Modality = "OT"
    ds.ReferringPhysicianName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    ds.PatientName = "Müller^Jürgen"
    ds.PatientID = "ID 42"
    ds.PatientBirthDate = ""
    ds.SliceThickness = None
    ds.ReferencedImageSequence = []
    ds.set(0x00290010, "ACME 1.1", "LO")
    ds.set(0x00290011, "OTHER CREATOR", "LO")
    ds.set(0x00291001, "private text", "LO")
    ds.set(0x00291002, b"\x01\x02\x03\x04", "UN")
    ds.set(0x00291003, b"\x01\x02\x03", "OB")                       # odd: the writer pads
    ds.set(0x00291004, [7, 8], "US")
    inner = _item(PatientID="inner id")
    inner.set(0x00290010, "ACME 1.1", "LO")
    inner.set(0x00291001, "inner private", "LO")
    ds.set(0x00291010, [inner, Dataset()], "SQ")
    ds.set(0x00291101, "second block", "SH")
    ds.set(0x0072005E, ["AET1", "AET2"], "AE")
    ds.set(0x0072005F, "042Y", "AS")
    ds.set(0x00720060, [0x00100010, 0x7FE00010], "AT")
    ds.set(0x00720061, ["20240101", "19991231"], "DA")
    ds.set(0x00720062, ["A", "B"], "CS")
    ds.set(0x00720063, "20240101120000.5+0100", "DT")
    ds.set(0x00720064, [1, -2147483648, 2147483647], "IS")
    ds.set(0x00720065, b"\x01\x02\xff\x00", "OB")
    ds.set(0x00720066, ["a", "b c", "ü"], "LO")
    ds.set(0x00720067, numpy.array([1.5, -2.5, numpy.inf], numpy.float32), "OF")
    ds.set(0x00720068, "line1\\line2 ä\r\nline3", "LT")
    ds.set(0x00720069, numpy.array([1, 0xFFFF, 0x1234], numpy.uint16), "OW")
    ds.set(0x0072006A, ["Last^First", "Other^Name=オ^ネ"], "PN")
    ds.set(0x0072006B, ["1010", "235959.999999"], "TM")
    ds.set(0x0072006C, ["sh1", "sh2"], "SH")
    ds.set(0x0072006D, b"\x00\x01\x02\x03\x04", "UN")               # odd
    ds.set(0x0072006E, "st\\with backslash", "ST")
    ds.set(0x0072006F, ["uc1", "uc2 ü" * 30], "UC")
    ds.set(0x00720070, "ut\\text ü" * 10, "UT")
    ds.set(0x00720071, "http://example.com/a?b=c&d=%20", "UR")
    ds.set(0x00720072, [1.5, -300.0, 1e-20, 0.1 + 0.2, 123456789012345678.0, -1.2345678901234567e-300], "DS")
    ds.set(0x00720073, numpy.array([2.5, -1e300, 1e-300, numpy.nan]), "OD")
    ds.set(0x00720074, [3.141592653589793, 1e-300, -0.0], "FD")
    ds.set(0x00720075, numpy.array([1, 0xFFFFFFFF], numpy.uint32), "OL")
    ds.set(0x00720076, [1.5, -2.25], "FL")
    ds.set(0x00720078, [0xFFFFFFFF, 0], "UL")
    ds.set(0x0072007A, [65535, 0], "US")
    ds.set(0x0072007C, [-2147483648, 7], "SL")
    ds.set(0x0072007E, [-32768, 32767], "SS")
    ds.set(0x0072007F, ["1.2.3", "1.2.840.10008.1.2.4"], "UI")
    content = _item(ValueType="CONTAINER",
                    ContentSequence=[_item(ValueType="TEXT", TextValue="deep text ü")])
    ds.set(0x00720080, [content, Dataset()], "SQ")
    ds.set(0x00720081, numpy.array([2**64 - 1, 1], numpy.uint64), "OV")
    ds.set(0x00720082, [-2**63, 5], "SV")
    ds.set(0x00720083, numpy.array([2**64 - 1, 0], numpy.uint64), "UV")   # a list: see test_uv_from_python_ints
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = 3
    ds.Rows = 4
    ds.Columns = 5
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.PixelData = numpy.arange(-30, 30, dtype=numpy.int16).reshape(3, 4, 5)
    return ds


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """python_dataset() written by dicomnet in each syntax."""
    root = tmp_path_factory.mktemp("dicomnet")
    out = {}
    for ts in WRITABLE:
        path = root / f"{ts}.dcm"
        dicomnet.write_file(path, python_dataset(), ts)
        out[ts] = path
    return out


@pytest.mark.parametrize("ts", WRITABLE)
def test_dcmtk_accepts_dicomnet_files(written: dict[str, Path], ts: str) -> None:
    path = written[ts]
    assert tool("dcmftest", path).stdout.decode().strip() == f"yes: {path}"
    assert _dcmtk_messages(path) == []
    view = dcmtk_view(path)
    assert not view.log.strip(), view.log
    assert view.xfer == ts
    assert view.meta[0x00020010].text == ts
    assert view.meta[0x00020002].text == SC_IMAGE and view.meta[0x00020003].text == PY_UID
    assert theirs_values("OB", view.meta[0x00020001].text) == b"\x00\x01"


@pytest.mark.parametrize("ts", WRITABLE)
def test_dcmtk_reads_the_values_set_in_python(written: dict[str, Path], ts: str) -> None:
    """dcm2xml and dcm2json give back what was set (DS within its 16 characters); and
    dicomnet reading its own file agrees with dcmtk element for element."""
    path = written[ts]
    view = dcmtk_view(path)
    expected = python_dataset()
    if ts != IMPLICIT:
        problems = compare(expected, view.data, ds_tol=1e-8)
        assert not problems, "\n".join(problems[:30])
    problems = compare_file(path, view)
    assert not problems, "\n".join(problems[:30])
    problems = compare_json(dicomnet.read_file(path), dcmtk_json(path))
    if ts != IMPLICIT:
        problems += compare_json(expected, dcmtk_json(path), ds_tol=1e-8)
    assert not problems, "\n".join(problems[:30])
    # Values dcmtk's printing cannot show exactly: the bits, from dcm2json's InlineBinary.
    obj = dcmtk_json(path)
    od = numpy.frombuffer(base64.b64decode(obj["00720073"]["InlineBinary"]), "<f8")
    assert od[:3].tolist() == [2.5, -1e300, 1e-300] and math.isnan(od[3])
    pix = numpy.frombuffer(base64.b64decode(obj["7FE00010"]["InlineBinary"]), "<i2")
    assert pix.tolist() == list(range(-30, 30))


@pytest.mark.parametrize("ts", WRITABLE)
@pytest.mark.parametrize("conv", [[], ["+te"], ["+ti"], ["+tb"], ["-e"], ["+g"]],
                         ids=["same", "LE", "implicit", "BE", "undefined", "group-lengths"])
def test_dcmconv_round_trips_dicomnet_files(written: dict[str, Path], ts: str, conv: list[str],
                                            tmp_path: Path) -> None:
    """dcmconv reads dicomnet's file and writes one that reads the same in dcmtk and in dicomnet."""
    path = written[ts]
    out = tmp_path / "dcmconv.dcm"
    tool("dcmconv", *conv, path, out)
    before, after = dcmtk_view(path), dcmtk_view(out)
    target = {"+te": LE, "+ti": IMPLICIT, "+tb": BE}.get(conv[0] if conv else "", ts)
    problems = compare_views(before, after, implicit=target == IMPLICIT, source_implicit=ts == IMPLICIT,
                             length_form=conv != ["-e"], group_lengths=conv != ["+g"])
    assert not problems, "\n".join(problems[:30])
    problems = compare_file(out, after)
    assert not problems, "\n".join(problems[:30])


def test_dciodvfy_finds_no_invalid_value_in_dicomnet_files(written: dict[str, Path]) -> None:
    """dicom3tools' dciodvfy checks each value against its VR (lengths, characters,
    ranges); the IOD-level complaints (modules this test data set leaves out) are not ours."""
    for ts in (LE, IMPLICIT, BE):
        out = tool("dciodvfy", written[ts], ok=False)
        text = (out.stdout + out.stderr).decode("utf-8", "replace")
        bad = [line for line in text.splitlines()
               if ("Value invalid for this VR" in line or "Value dubious" in line
                   or "ength" in line and "Error" in line or "padding" in line.lower())
               # dciodvfy's IS range is -(2^31-1)..2^31-1; PS3.5 Table 6.2-1 allows -2^31.
               and not ("<-2147483648>" in line and "Range invalid" in line)]
        assert not bad, f"{ts}:\n" + "\n".join(bad)
