"""Tests for dicomnet.dicom.dictionary and the generated table behind it."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from dicomnet.dicom import dictionary as d
from dicomnet.dicom._dictionary import ENTRIES, RANGES

ROOT = Path(__file__).resolve().parents[2]


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exact_entries():
    e = d.lookup(0x00100010)
    assert e == ("PN", "1", "PatientName", False, ("PN",))
    assert (e.vr, e.vm, e.keyword, e.retired, e.vrs) == ("PN", "1", "PatientName", False, ("PN",))
    assert d.lookup(0x00080018).vr == "UI"
    assert d.lookup(0x00000900).keyword == "Status"
    assert d.lookup(0x00020010).keyword == "TransferSyntaxUID"
    assert d.lookup(0x00081140).vr == "SQ"


def test_retired_keyword_has_no_dcmtk_prefix():
    e = d.lookup(0x00000001)
    assert e.keyword == "CommandLengthToEnd" and e.retired
    assert not any(kw.startswith("RETIRED_") for _, _, kw, _ in ENTRIES.values())


def test_multi_vr_entries():
    pixel = d.lookup(0x7FE00010)
    assert pixel.keyword == "PixelData"
    assert set(pixel.vrs) == {"OB", "OW"}
    assert pixel.vr == "OW"  # PS3.5 A.1: Pixel Data is OW in Implicit VR LE
    assert pixel.vrs[0] == pixel.vr
    smallest = d.lookup(0x00280106)
    assert smallest.vrs == ("US", "SS") and smallest.vr == "US"
    assert d.lookup(0x00283006).vrs == ("US", "OW")  # LUT Data per PS3.6
    assert set(d.lookup(0x00281200).vrs) == {"US", "SS", "OW"}
    assert d.lookup(0x00041200).vr == "UL"  # DCMTK "up"
    assert d.lookup(0xFFFEE000).vr == "NONE"


def test_every_vr_is_real():
    real = set("AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV "
               "TM UC UI UL UN UR US UT UV NONE".split())
    for tag, (vrs, *_rest) in ENTRIES.items():
        assert set(vrs.split("/")) <= real, hex(tag)
    for rule in RANGES:
        assert set(rule[6].split("/")) <= real


def test_repeating_groups_even_only():
    assert d.lookup(0x60000010).keyword == "OverlayRows"
    assert d.lookup(0x60020010).keyword == "OverlayRows"
    assert d.lookup(0x60FE3000).keyword == "OverlayData"
    assert d.lookup(0x60FE3000).vrs == ("OW", "OB")
    # Odd 60xx groups are private groups, not overlays.
    assert d.lookup(0x60010010).keyword == "PrivateCreator"
    assert d.lookup(0x60013000) is None
    assert d.lookup(0x61000010) is None
    assert d.lookup(0x501E0005).keyword == "CurveDimensions"
    assert d.lookup(0x501E0005).retired
    assert d.lookup(0x7F020010).keyword == "VariablePixelData"


def test_element_range():
    assert d.lookup(0x00203100).keyword == "SourceImageIDs"
    assert d.lookup(0x002031FE).keyword == "SourceImageIDs"
    assert d.lookup(0x00203101) is None  # dicom.dic: plain ranges are even-only


def test_group_length_and_private():
    assert d.lookup(0x00080000) == ("UL", "1", "GenericGroupLength", False, ("UL",))
    assert d.lookup(0x00000000).keyword == "CommandGroupLength"  # exact entry wins
    assert d.lookup(0x00090000).keyword == "PrivateGroupLength"
    creator = d.lookup(0x00090010)
    assert (creator.vr, creator.keyword) == ("LO", "PrivateCreator")
    assert d.lookup(0x001900FF).keyword == "PrivateCreator"
    assert d.lookup(0xFFFF0010).keyword == "PrivateCreator"
    assert d.lookup(0x0019000F) is None
    assert d.lookup(0x00191000) is None
    assert d.lookup(0x00291010) is None
    assert d.lookup(0x00030010).keyword == "IllegalPrivateCreator"


def test_unknown_and_out_of_range():
    assert d.lookup(0x00080003) is None
    assert d.lookup(-1) is None
    assert d.lookup(1 << 32) is None
    assert d.vr_of(0x00080003) is None
    assert d.keyword_of(0x00080003) is None


def test_vr_of_and_keyword_of():
    assert d.vr_of(0x00100010) == "PN"
    assert d.vr_of(0x60040010) == "US"
    assert d.vr_of(0x00110010) == "LO"
    assert d.vr_of(0x00110000) == "UL"
    assert d.vr_of(0x7FE00010) == "OW"
    assert d.keyword_of(0x00100020) == "PatientID"
    assert d.keyword_of(0x60020022) == "OverlayDescription"


def test_keyword_round_trip_every_entry():
    kws = d.all_keywords()
    for tag, (_vrs, _vm, kw, _retired) in ENTRIES.items():
        assert d.tag_for_keyword(kw) == tag
        assert d.keyword_of(tag) == kw
    for glo, _ghi, _gp, elo, _ehi, _ep, _vrs, _vm, kw, _r, kind in RANGES:
        if kind == "dicom":
            tag = d.tag_for_keyword(kw)
            assert tag == (glo << 16) | elo
            assert d.keyword_of(tag) == kw
        else:
            assert kw not in kws
    assert d.tag_for_keyword("OverlayData") == 0x60003000
    assert d.tag_for_keyword("NoSuchKeyword") is None
    assert d.tag_for_keyword("PrivateCreator") is None


def test_private_helpers():
    assert d.is_private(0x00091010) and not d.is_private(0x00100010)
    assert d.is_private_creator(0x00090010) and not d.is_private_creator(0x00091010)
    assert not d.is_private_creator(0x00080010)
    assert d.private_creator_tag(0x00191012) == 0x00190010
    assert d.private_creator_tag(0x0019FF01) == 0x001900FF
    assert d.private_creator_tag(0x00190010) is None
    assert d.private_creator_tag(0x00101010) is None


def test_table_size_matches_source():
    src = (ROOT / "tools" / "data" / "dicom.dic").read_text(encoding="utf-8")
    lines = [ln for ln in src.splitlines() if ln and not ln.startswith("#")]
    assert len(ENTRIES) + len(RANGES) == len(lines)
    assert "OFFIS" in src.splitlines()[1]  # licence header kept


def test_generator_reproduces_committed_file(tmp_path):
    gen = _load_tool("gen_dictionary")
    out = tmp_path / "_dictionary.py"
    assert gen.main(["--output", str(out)]) == 0
    committed = (ROOT / "dicomnet" / "dicom" / "_dictionary.py").read_text(encoding="utf-8")
    assert out.read_text(encoding="utf-8") == committed
    assert committed.startswith("# generated by tools/gen_dictionary.py, do not edit")


def test_generator_parses_ranges_and_rejects_bad_lines():
    gen = _load_tool("gen_dictionary")
    entries, ranges = gen.parse(
        "(0009-o-00FF,1000-u-10FF)\tox\tFoo\t1\tDICOM\n(0010,0010)\tPN\tRETIRED_Bar\t1\tDICOM/retired\n"
    )
    assert entries == {0x00100010: ("PN", "1", "Bar", True)}
    assert ranges == [(0x9, 0xFF, "odd", 0x1000, 0x10FF, "any", "OW/OB", "1", "Foo", False, "dicom")]
    with pytest.raises(gen.DictionaryFormatError):
        gen.parse("(0010,0010)\tQQ\tBar\t1\tDICOM\n")
    with pytest.raises(gen.DictionaryFormatError):
        gen.parse("(0010,0010)\tPN\tBar\t1\n")
    with pytest.raises(gen.DictionaryFormatError):
        gen.parse("(0010,0010)\tPN\tA\t1\tDICOM\n(0010,0010)\tPN\tB\t1\tDICOM\n")


def test_keywords_are_identifiers():
    for kw in d.all_keywords():
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", kw), kw


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=2000, deadline=None)
@given(st.integers(min_value=0, max_value=0xFFFFFFFF))
def test_lookup_total_and_consistent(tag):
    entry = d.lookup(tag)
    assert d.vr_of(tag) == (None if entry is None else entry.vr)
    assert d.keyword_of(tag) == (None if entry is None else entry.keyword)
    group, elem = tag >> 16, tag & 0xFFFF
    if elem == 0:
        assert entry is not None and entry.vr == "UL"  # every group has a group length
    if group & 1 and group > 8:
        if 0x10 <= elem <= 0xFF:
            assert entry.keyword == "PrivateCreator"
        elif elem:
            assert entry is None


def test_agrees_with_pydicom_dictionary():
    """An independent check of the VR mapping: pydicom's table (an older edition)."""
    datadict = pytest.importorskip("pydicom.datadict")
    compared = keyword_mismatches = 0
    for tag, (vr, _vm, _name, _retired, keyword) in datadict.DicomDictionary.items():
        entry = d.lookup(tag)
        if entry is None:
            assert not keyword, hex(tag)  # only PS3.6 rows without a keyword are absent
            continue
        compared += 1
        assert set(entry.vrs) == set(vr.replace(" or ", ",").split(",")), hex(tag)
        keyword_mismatches += bool(keyword) and entry.keyword != keyword
    assert compared > 5000
    assert keyword_mismatches <= 10  # keywords renamed in later editions
