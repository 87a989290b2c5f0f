"""Edge cases of dicomnet's file reading and writing cross-checked against
dcmtk 3.6.7 (part 3 of the dcmtk file cross-checks), and the faults these
cross-checks found.

Edge cases: odd lengths, NUL and space padding, ``\\`` in text, trailing
NULs in UIDs, DS/IS formatting limits, PN with three component groups,
ACR-NEMA dates, files without preamble, without File Meta, with a File Meta
but no ``DICM`` (the 40-frame image is among the dcmtk-made files). The
faults found (all fixed): 8-bit Pixel Data in Implicit VR, UV, out-of-range
and non-integral values, the largest doubles as DS, odd lengths when
transcoding, a change of character set.

dcmtk-made files: test_dcmtk_files_dcmtk_made.py; files written by dicomnet
from Python: test_dcmtk_files_dicomnet_made.py. The comparisons and the dcmtk
quirks they work around: _dcmtk_files.py.
"""
from __future__ import annotations

import math
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy
import pytest

import dicomnet
from dicomnet.dicom.dataset import Dataset
from dicomnet.dicom.valuerep import parse_da, parse_tm

from tests.dicom._dcmtk_files import (BE, DEFLATED, IMPLICIT, LE, SC_IMAGE, Maker, View, _dcmtk_messages, _fmt,
                                      compare_file, compare_views, dcmtk_view, tool)


# =================================================== 3. edge cases


def _el(tag: int, vr: str, value: bytes, syntax: str = LE) -> bytes:
    group, elem = tag >> 16, tag & 0xFFFF
    if syntax == IMPLICIT:
        return struct.pack("<HHI", group, elem, len(value)) + value
    order = ">" if syntax == BE else "<"
    if vr in ("OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"):
        return struct.pack(order + "HH2s2xI", group, elem, vr.encode(), len(value)) + value
    return struct.pack(order + "HH2sH", group, elem, vr.encode(), len(value)) + value


def _meta(ts: str, *, group_length: bool = True, sop: str = SC_IMAGE, instance: str = "1.2.3.4") -> bytes:
    def ui(text: str) -> bytes:
        return text.encode() + b"\0" * (len(text) % 2)

    body = (_el(0x00020001, "OB", b"\x00\x01") + _el(0x00020002, "UI", ui(sop))
            + _el(0x00020003, "UI", ui(instance)) + _el(0x00020010, "UI", ui(ts))
            + _el(0x00020012, "UI", ui("1.2.3.999")))
    return (_el(0x00020000, "UL", struct.pack("<I", len(body))) if group_length else b"") + body


# tag, VR, the bytes in the file, the value dicomnet must give (PS3.5 6.2: trailing
# spaces (NULs for UI) are padding; odd lengths are invalid (7.1.1) but readable).
EDGE = [
    (0x00080016, "UI", SC_IMAGE.encode() + b"\0", SC_IMAGE),
    (0x00080018, "UI", b"1.2.3.4\0\0", "1.2.3.4"),                   # odd, two NULs
    (0x00080020, "DA", b"2024.01.02", "2024.01.02"),                  # ACR-NEMA date
    (0x00080030, "TM", b"10:11:12.5 ", "10:11:12.5"),                 # ACR-NEMA time
    (0x00080060, "CS", b"OT ", "OT"),                                 # odd, space padded
    (0x00080070, "LO", b"ABC", "ABC"),                                # odd, unpadded
    (0x00080080, "LO", b"Inst\0", "Inst"),                            # NUL padded (non-standard)
    (0x00080081, "ST", b" lead and trail  ", " lead and trail"),      # ST keeps leading spaces
    (0x00080090, "PN", b"A^B=C^D=E^F", "A^B=C^D=E^F"),                # 3 component groups, odd
    (0x00081030, "LO", b"x\\y\\", ["x", "y", ""]),                    # backslash: 3 values
    (0x00100010, "PN", b"Doe^John^^^ ", "Doe^John^^^"),
    (0x00100020, "LO", b"ID1 ", "ID1"),
    (0x00100021, "LO", b" ISS ", " ISS"),        # leading space kept (dcm2xml drops it: _dcmtk_files.py, dcmtk quirks)
    (0x00180050, "DS", b" 1.0 ", 1.0),
    (0x00181030, "LO", b"\\", ["", ""]),                             # two empty values
    (0x00200013, "IS", b"+12 ", 12),
    (0x00201041, "DS", b"1.2345678901234567", 1.2345678901234567),   # 18 characters (> 16)
    (0x00204000, "LT", b"a\\b\r\nc ", "a\\b\r\nc"),                  # LT: one value
    (0x0072005E, "AE", b" AE1 \\AE2 ", ["AE1", "AE2"]),               # AE: leading spaces too
    (0x00720064, "IS", b"99999999999 ", 99999999999),                 # beyond PS3.5's range
    (0x00720065, "OB", b"\x01\x02\x03", [1, 2, 3]),                   # odd OB
    (0x0072006D, "UN", b"\x01", b"\x01"),                             # odd UN
    (0x00720071, "UR", b"http://x/ ", "http://x/"),
    (0x0072007F, "UI", b"1.2.3 ", "1.2.3"),                           # space-padded UI (non-standard)
]


def _edge_file(syntax: str, *, preamble: bool = True, dicm: bool = True, meta: bool = True) -> bytes:
    data = b"".join(_el(tag, vr, raw, syntax) for tag, vr, raw, _ in EDGE)
    head = (bytes(128) if preamble else b"") + (b"DICM" if dicm else b"")
    return head + (_meta(syntax) if meta else b"") + data


def _plain(value: Any) -> Any:
    if isinstance(value, numpy.ndarray):
        return value.tolist()
    if isinstance(value, (bytes, memoryview)):
        return bytes(value)
    if isinstance(value, list):
        return [str(v) if isinstance(v, str) else v for v in value]
    return str(value) if isinstance(value, str) else value


@pytest.mark.parametrize("syntax", [LE, BE, IMPLICIT], ids=["LE", "BE", "implicit"])
def test_odd_lengths_padding_and_backslashes(syntax: str, tmp_path: Path) -> None:
    """Hand-built values dcmtk cannot write (odd lengths) or writes otherwise (NUL
    padding, ACR-NEMA dates): dicomnet's exact values, and dcmtk's agree."""
    path = tmp_path / "edge.dcm"
    path.write_bytes(_edge_file(syntax))
    ds = dicomnet.read_file(path)
    assert ds.transfer_syntax == syntax
    assert [e.tag for e in ds] == [tag for tag, *_ in EDGE]
    for tag, vr, raw, expected in EDGE:
        assert ds[tag].VR == vr, _fmt(tag)
        assert ds[tag].length == len(raw), _fmt(tag)
        assert _plain(ds[tag].value) == expected, _fmt(tag)
    assert parse_da(ds.StudyDate).isoformat() == "2024-01-02"
    assert parse_tm(ds.StudyTime).isoformat() == "10:11:12.500000"
    assert ds.ReferringPhysicianName.phonetic == "E^F"
    view = dcmtk_view(path)
    assert "odd" in view.log   # dcmtk warns about the odd lengths ...
    problems = compare_file(path, view)   # ... and reads the same values
    assert not problems, "\n".join(problems)
    # dcmtk's own text where it does not normalise (see _dcmtk_files.py's docstring):
    assert view.data[0x00081030].text == "x\\y\\"
    assert view.data[0x00080020].text == "2024.01.02"
    assert view.data[0x00080018].text == "1.2.3.4"
    assert view.data[0x0072007F].text == "1.2.3"


@pytest.mark.parametrize("syntax", [LE, BE, IMPLICIT, DEFLATED], ids=["LE", "BE", "implicit", "deflated"])
def test_odd_lengths_rewritten(syntax: str, tmp_path: Path) -> None:
    """dicomnet keeps an untouched odd-length value's bytes in its own encoding
    (a byte-identical rewrite; Deflated too); transcoded, each value gets the
    padding a new header needs (PS3.5 7.1.1), as dcmconv pads it: dcmtk reads
    the same values, but for that padding."""
    path = tmp_path / "edge.dcm"
    path.write_bytes(_edge_file(LE))
    ds = dicomnet.read_file(path)
    out = tmp_path / "rewrite.dcm"
    dicomnet.write_file(out, ds, syntax)
    if syntax == LE:   # the data set's bytes unchanged (File Meta: dicomnet's own)
        assert out.read_bytes().endswith(path.read_bytes()[132 + len(_meta(LE)):])
    problems = compare_views(dcmtk_view(path), dcmtk_view(out), implicit=syntax == IMPLICIT,
                             padded=syntax in (BE, IMPLICIT))
    assert not problems, "\n".join(problems)
    back = dicomnet.read_file(out)
    for tag, vr, raw, expected in EDGE:
        got = _plain(back[tag].value)
        if syntax in (BE, IMPLICIT) and len(raw) % 2 and vr in ("OB", "UN"):
            got = got[:-1] if got[-1:] in ([0], b"\0") else got      # the pad byte an odd value gets
        assert got == expected, _fmt(tag)


def test_file_without_preamble(tmp_path: Path) -> None:
    """"DICM" and File Meta but no 128-byte preamble: not Part 10 (PS3.10 7.1), and dcmtk
    cannot read it; dicomnet reads it as the same data set."""
    full = tmp_path / "full.dcm"
    full.write_bytes(_edge_file(LE))
    path = tmp_path / "nopreamble.dcm"
    path.write_bytes(_edge_file(LE, preamble=False))
    assert tool("dcmftest", path, ok=False).stdout.decode().startswith("no:")
    assert tool("dcmdump", path, ok=False).returncode != 0
    ds = dicomnet.read_file(path)
    assert ds.preamble is None and ds.file_meta.TransferSyntaxUID == LE
    problems = compare_file(path, dcmtk_view(full))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("syntax", [LE, BE, IMPLICIT], ids=["LE", "BE", "implicit"])
def test_file_meta_without_preamble_or_dicm(syntax: str, tmp_path: Path) -> None:
    """A File Meta group straight at the start (no preamble, no "DICM"): both read it."""
    path = tmp_path / "bare-meta.dcm"
    path.write_bytes(_edge_file(syntax, preamble=False, dicm=False))
    ds = dicomnet.read_file(path)
    assert ds.preamble is None and ds.transfer_syntax == syntax
    view = dcmtk_view(path)
    assert view.xfer == syntax
    problems = compare_file(path, view)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("syntax", [LE, BE, IMPLICIT], ids=["LE", "BE", "implicit"])
def test_file_meta_without_group_length(syntax: str, tmp_path: Path) -> None:
    """(0002,0000) is Type 1 (PS3.10 7.1), but files without it exist: both read them."""
    path = tmp_path / "no-group-length.dcm"
    data = b"".join(_el(tag, vr, raw, syntax) for tag, vr, raw, _ in EDGE)
    path.write_bytes(bytes(128) + b"DICM" + _meta(syntax, group_length=False) + data)
    ds = dicomnet.read_file(path)
    assert 0x00020000 not in ds.file_meta and ds.transfer_syntax == syntax
    problems = compare_file(path, dcmtk_view(path))
    assert not problems, "\n".join(problems)
    # Written back: dicomnet adds the group length (and dcmtk reads it as Part 10).
    out = tmp_path / "rewrite.dcm"
    dicomnet.write_file(out, ds)
    meta = dcmtk_view(out).meta
    long_vrs = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"}
    rest = sum((12 if n.vr in long_vrs else 8) + n.length for t, n in meta.items() if t != 0x00020000)
    assert int(meta[0x00020000].text) == rest      # PS3.10 7.1: the bytes after it, to the end of the group
    assert meta[0x00020010].text == syntax and meta[0x00020012].text == "1.2.3.999"
    assert tool("dcmftest", out).stdout.decode().startswith("yes:")


@pytest.mark.parametrize("case,syntax", [("dump2dcm -F +te", LE), ("dump2dcm -F +ti", IMPLICIT),
                                         ("dump2dcm -F +tb", BE), ("dcmconv -F +tb", BE)])
def test_data_set_without_file_meta(make: Maker, case: str, syntax: str) -> None:
    """No preamble, no File Meta (dump2dcm/dcmconv -F): dicomnet infers the syntax
    from the first element, as dcmtk does."""
    ds = dicomnet.read_file(make(case))
    assert ds.file_meta is None and ds.preamble is None
    assert ds.transfer_syntax == syntax == make.view(case).xfer
    assert ds.pixel_array.ravel().tolist()[-1] == 0xFFF


def test_ds_and_is_formatting_limits(tmp_path: Path) -> None:
    """Floats and ints set from Python: each DS value dicomnet writes is at most 16
    characters of [0-9+-Ee.] (PS3.5 Table 6.2-1), the shortest exact one when that
    fits, else as close as 16 characters get; dcmtk reads them so, dciodvfy calls
    none invalid (a deliberately bad value proves that it looks)."""
    floats = [0.1, 1 / 3, 2 / 3 * 1e-300, -1.2345678901234567e-300, 123456789012345678.0, 1e16,
              5e-324, 1.2345678901234567e308, -0.0, 12345678.901234567, 9.999999999999999e22, 1e-7,
              0.000123456789012345, -2.5, 100.0, 1234567890123456.0, 0.30000000000000004]
    ints = [0, -1, 2**31 - 1, -2**31 + 1]
    ds = Dataset()
    ds.SOPClassUID = SC_IMAGE
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.set(0x00720072, floats, "DS")
    ds.set(0x00720064, ints, "IS")
    ds.SliceThickness = "12345678901234567"     # a str is written as given: 17 characters
    path = tmp_path / "ds.dcm"
    dicomnet.write_file(path, ds)
    view = dcmtk_view(path)
    texts = view.data[0x00720072].text.split("\\")
    assert len(texts) == len(floats)
    for value, text in zip(floats, texts):
        assert len(text) <= 16 and set(text) <= set("0123456789+-Ee."), text
        shortest = repr(value).replace("e+", "e")
        if len(shortest) <= 16:
            assert float(text) == value, (value, text)
        else:
            assert math.isclose(float(text), value, rel_tol=1e-8), (value, text)
    assert [int(t) for t in view.data[0x00720064].text.split("\\")] == ints
    # An IS value longer than 12 characters is refused, not truncated.
    too_long = Dataset()
    too_long.set(0x00720064, [10**12], "IS")
    with pytest.raises(ValueError):
        dicomnet.write_file(tmp_path / "is.dcm", too_long)
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy is not installed (apt-get install dicom3tools): values not validated")
    out = tool("dciodvfy", path, ok=False)
    report = (out.stdout + out.stderr).decode("utf-8", "replace")
    invalid = [line for line in report.splitlines() if "Value invalid for this VR" in line]
    assert len(invalid) >= 1 and all("Slice Thickness" in line for line in invalid), "\n".join(invalid)


# ------------------------------------------- faults these tests found (fixed)
# 8-bit Pixel Data read in Implicit VR had VR OB (PS3.5 A.1: OW); UV lists went
# through float64; out-of-range integers and non-integral IS values were
# written wrapped or truncated; the largest doubles formatted as DS read back
# as infinity; transcoding kept odd value lengths.


def _write_and_view(ds: Dataset, tmp_path: Path) -> View:
    ds.SOPClassUID = SC_IMAGE
    ds.SOPInstanceUID = "1.2.3.4.5"
    path = tmp_path / "bug.dcm"
    dicomnet.write_file(path, ds)
    return dcmtk_view(path)


def test_uv_from_python_ints(tmp_path: Path) -> None:
    """UV holds 0 .. 2**64-1 (PS3.5 Table 6.2-1); dcmtk must read what was set."""
    ds = Dataset()
    ds.set(0x00720083, [2**64 - 1, 0, 2**63 + 1], "UV")
    assert _write_and_view(ds, tmp_path).data[0x00720083].text == f"{2**64 - 1}\\0\\{2**63 + 1}"


@pytest.mark.parametrize("vr,value", [("US", 70000), ("US", -1), ("SS", 40000), ("UL", 2**32), ("SV", [2**63])])
def test_out_of_range_binary_value_is_refused(vr: str, value: Any, tmp_path: Path) -> None:
    """A value outside its VR's range (PS3.5 Table 6.2-1) cannot be encoded: it must raise,
    not reach the file as another number (dcmtk then reads the wrapped value)."""
    ds = Dataset()
    ds.set({"US": 0x0072007A, "SS": 0x0072007E, "UL": 0x00720078, "SV": 0x00720082}[vr], value, vr)
    with pytest.raises((ValueError, OverflowError)):
        _write_and_view(ds, tmp_path)


def test_is_from_a_non_integral_float_is_refused(tmp_path: Path) -> None:
    """IS is an integer (PS3.5 Table 6.2-1): 1.5 cannot be written as IS."""
    ds = Dataset()
    ds.InstanceNumber = 1.5
    with pytest.raises(ValueError):
        view = _write_and_view(ds, tmp_path)
        pytest.fail(f"written; dcmtk reads InstanceNumber {view.data[0x00200013].text!r}")


def test_ds_of_the_largest_double_reads_back_finite(tmp_path: Path) -> None:
    ds = Dataset()
    ds.set(0x00720072, [1.7976931348623157e308, -1.7976931348623157e308], "DS")
    texts = _write_and_view(ds, tmp_path).data[0x00720072].text.split("\\")
    assert all(len(t) <= 16 and math.isfinite(float(t)) for t in texts), texts
    assert [float(t) for t in texts] == pytest.approx([1.7976931348623157e308, -1.7976931348623157e308], rel=1e-8)


@pytest.mark.parametrize("syntax", [BE, IMPLICIT], ids=["BE", "implicit"])
def test_transcoding_pads_odd_length_values(syntax: str, tmp_path: Path) -> None:
    """An odd length read (accepted, like dcmtk's +ao) is not written into a new encoding:
    dcmconv pads such values to even length when it converts, and so does dicomnet
    (test_odd_lengths_rewritten). The byte-identical rewrite in the source's own syntax
    keeps the bytes on purpose and is not at issue here."""
    path = tmp_path / "edge.dcm"
    path.write_bytes(_edge_file(LE))
    out = tmp_path / "transcoded.dcm"
    dicomnet.write_file(out, dicomnet.read_file(path), syntax)
    converted = tmp_path / "dcmconv.dcm"
    tool("dcmconv", {BE: "+tb", IMPLICIT: "+ti"}[syntax], path, converted)
    assert [m for m in _dcmtk_messages(converted) if "odd" in m] == []     # what dcmtk writes
    assert [m for m in _dcmtk_messages(out) if "odd" in m] == []


@pytest.mark.parametrize("source", ["latin1 +te", "latin1 +ti -e", "latin1 +tb"])
def test_charset_change_transcodes_like_dcmconv_utf8(make: Maker, source: str, tmp_path: Path) -> None:
    """A Latin-1 file whose Specific Character Set dicomnet changes to ISO_IR 192 is written
    in UTF-8, nested items included: what dcmtk reads is what ``dcmconv +U8`` makes."""
    ds = dicomnet.read_file(make(source))
    ds.SpecificCharacterSet = "ISO_IR 192"
    out = tmp_path / "utf8.dcm"
    dicomnet.write_file(out, ds, LE)
    converted = tmp_path / "dcmconv-utf8.dcm"
    tool("dcmconv", "+U8", "+te", "-e" if "-e" in source else "+e", make(source), converted)
    ours, theirs = dcmtk_view(out), dcmtk_view(converted)
    assert ours.data[0x00080005].text == "ISO_IR 192"
    problems = compare_views(theirs, ours, source_implicit="+ti" in source)
    assert not problems, "\n".join(problems)
    assert ours.data[0x00100010].text == "Müller^Jürgen"
    assert ours.data[0x0040A730].items[0].nodes[0x0040A160].text == "crème brûlée"
