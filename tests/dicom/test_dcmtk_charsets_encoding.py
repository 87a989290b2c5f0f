"""Writing Specific Character Sets, with dcmtk's ``dcmconv +U8`` reading the result.

Data sets built in Python in each character set, nested items included, are written with
:func:`dicomnet.write_file` and must read back through dcmtk as the text that was set.
ISO 2022 output is also walked byte by byte: value 1's code elements must be in use again
before every delimiter and at the end of each value (PS3.5 6.1.2.5.3). Text the character
set cannot hold raises :class:`~dicomnet.errors.DicomEncodeError` and leaves no file
behind; empty values and values of spaces are written as such.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import dicomnet
from dicomnet.errors import DicomEncodeError
from tests.dicom._dcmtk_charsets import (
    CODECS, CONTENT_SQ, ISO2022_WRITE_SETS, LE, LG, LGC, LO, LT, PN, SCS, SH, SINGLE_SETS, _TAG_FOR_VR, UT,
    WORDS, Dcmtk, _expected, _iso2022_elements, _ours, _read_tree, _state_violations, _value_of, _values,
    _write_spec_with_dicomnet,
)


@pytest.mark.parametrize("term", SINGLE_SETS)
def test_single_and_stand_alone_sets_encode_for_dcmtk(dcmtk: Dcmtk, tmp_path: Path, term: str) -> None:
    spec, out = _write_spec_with_dicomnet(tmp_path, term, WORDS[term])
    tree = _read_tree(out)
    # single-byte and stand-alone sets: exactly the codec's bytes (odd lengths padded with a space)
    assert tree[PN][1].rstrip(b" ") == spec[PN][1].encode(CODECS[term])
    assert tree[UT][1].rstrip(b" ") == spec[UT][1].encode(CODECS[term]).rstrip(b" ")
    assert _values(dcmtk.utf8(tree)) == _expected(spec)


@pytest.mark.parametrize("term", list(ISO2022_WRITE_SETS))
def test_iso2022_sets_encode_for_dcmtk(dcmtk: Dcmtk, tmp_path: Path, term: str) -> None:
    spec, out = _write_spec_with_dicomnet(tmp_path, term, ISO2022_WRITE_SETS[term])
    tree = _read_tree(out)
    assert tree[SCS][1].rstrip(b" ") == term.encode()
    assert _ours(dicomnet.read_file(out)) == _expected(spec)
    dcmtk.require(dcmtk.equivalent(term))
    assert _values(dcmtk.utf8(tree)) == _expected(spec)

@pytest.mark.parametrize("term", list(ISO2022_WRITE_SETS))
def test_iso2022_encoding_returns_to_value_1_before_delimiters(tmp_path: Path, term: str) -> None:
    """PS3.5 6.1.2.5.3: before CR, LF, FF, TAB, the ``\\`` between values and PN's
    ``^`` and ``=``, value 1's character set is in use again (checked on the bytes)."""
    _, out = _write_spec_with_dicomnet(tmp_path, term, ISO2022_WRITE_SETS[term])
    elements = _iso2022_elements(_read_tree(out), term)
    assert len(elements) >= 8
    assert "\\" not in term or any(b"\x1b" in raw for _, _, raw in elements)
    for scs, vr, raw in elements:
        problems, _ = _state_violations(raw, scs, vr)
        assert not problems, (scs, vr, problems)


@pytest.mark.parametrize(("scs", "vr", "text", "expected"), [
    pytest.param("\\ISO 2022 IR 87", "LO", "Yamada 山田", b"Yamada \x1b$B;3ED\x1b(B", id="JIS-X-0208-G0"),
    pytest.param("\\ISO 2022 IR 87", "PN", "Yamada^Tarou=山田^太郎",
                 b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B", id="H31-PN"),
    pytest.param("ISO 2022 IR 13\\ISO 2022 IR 87", "LT", "ﾔﾏﾀﾞ 山田", b"\xd4\xcf\xc0\xde \x1b$B;3ED\x1b(J",
                 id="back-to-JIS-Roman"),
    pytest.param("\\ISO 2022 IR 149", "LO", "Hong 홍", b"Hong \x1b$)C\xc8\xab", id="no-G1-in-value-1"),
    pytest.param("\\ISO 2022 IR 100", "LO", "Smith é", b"Smith \x1b-A\xe9", id="no-G1-in-value-1-latin"),
    pytest.param(LG, "LO", "é α", b"\xe9 \x1b-F\xe1\x1b-A", id="Latin1-Greek-LO"),
    pytest.param(LG, "PN", "é^α", b"\xe9^\x1b-F\xe1\x1b-A", id="Latin1-Greek-PN"),
    pytest.param(LGC, "LT", "Müller Жорж", b"M\xfcller \x1b-L\xb6\xde\xe0\xd6\x1b-A", id="Latin1-Cyrillic-LT"),
    pytest.param("ISO 2022 IR 100\\ISO 2022 IR 149", "SH", "é홍", b"\xe9\x1b$)C\xc8\xab\x1b-A",
                 id="Latin1-Korean-SH"),
    pytest.param("ISO 2022 IR 13\\ISO 2022 IR 149", "PN", "ﾔﾏ^홍", b"\xd4\xcf^\x1b$)C\xc8\xab\x1b)I",
                 id="Katakana-Korean-PN"),
])
def test_iso2022_encoding_returns_to_value_1_at_the_end(dcmtk: Dcmtk, tmp_path: Path, scs: str, vr: str, text: str,
                                                       expected: bytes) -> None:
    """PS3.5 6.1.2.5.3: value 1's character set is active again "before the end of a
    Data Element value" -- G0 and, where value 1 designates one, G1. (When value 1 has
    no G1 set, as in PS3.5 Annex I, nothing needs re-designating there.)"""
    ds = dicomnet.Dataset()
    ds.SpecificCharacterSet = scs
    ds.set(_TAG_FOR_VR[vr], text, vr)
    out = tmp_path / "end.dcm"
    dicomnet.write_file(out, ds, LE)
    raw = _read_tree(out)[_TAG_FOR_VR[vr]][1]
    problems, (g0, g1, g0_initial, g1_initial) = _state_violations(raw, scs, vr)
    assert not problems
    assert raw.rstrip(b" ") == expected
    assert g0 == g0_initial and (g1_initial is None or g1 == g1_initial), (g0, g1)
    if dcmtk.unsupported(scs) is None:
        assert _values(dcmtk.utf8(_read_tree(out)))[_TAG_FOR_VR[vr]] == _value_of(vr, text)


@pytest.mark.parametrize(("scs", "vr", "text", "bad"), [
    ("ISO_IR 100", "LO", "Tokyo 山", "山"),
    ("ISO_IR 100", "PN", "Müller^€", "€"),
    ("ISO_IR 144", "LT", "Иван café", "é"),
    ("ISO_IR 127", "SH", "α", "α"),
    ("ISO_IR 126", "UC", "Ωμέγα\\Ж", "Ж"),
    ("ISO_IR 138", "ST", "ü", "ü"),
    ("ISO_IR 166", "UT", "ไทย é", "é"),
    ("ISO_IR 13", "LO", "ﾔﾏ山", "山"),
    ("GBK", "LO", "王😀", "😀"),
    ("ISO_IR 192", "LO", "a\ud800", "\ud800"),    # a lone surrogate has no UTF-8 form
    (None, "PN", "Jérôme", "é"),                     # no (0008,0005): the default repertoire
    ("ISO_IR 6", "LT", "naïve", "ï"),
    ("\\ISO 2022 IR 149", "PN", "Hong=홍é", "é"),
    ("\\ISO 2022 IR 58", "LO", "张😀", "😀"),
    (LG, "LO", "éα\\Ж", "Ж"),
    ("\\ISO 2022 IR 87", "PN", "山田=한", "한"),
])
def test_unencodable_text_raises_and_writes_nothing(tmp_path: Path, scs: str | None, vr: str, text: str,
                                                    bad: str) -> None:
    for where in ("top", "item"):
        ds = dicomnet.Dataset()
        if scs is not None:
            ds.SpecificCharacterSet = scs
        target = ds
        if where == "item":
            target = dicomnet.Dataset()
            ds.set(CONTENT_SQ, [target], "SQ")
        target.set(_TAG_FOR_VR[vr], text, vr)
        out = tmp_path / f"{where}.dcm"
        with pytest.raises(DicomEncodeError) as info:
            dicomnet.write_file(out, ds, LE)
        assert repr(bad)[1:-1] in str(info.value)      # the message names the character
        assert not out.exists()
    assert list(tmp_path.iterdir()) == []       # no temporary file left behind either


def test_empty_and_space_values_are_written_as_such(dcmtk: Dcmtk, tmp_path: Path) -> None:
    ds = dicomnet.Dataset()
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 149"]
    ds.PatientName = ""
    ds.OtherPatientIDs = ["", "홍", ""]
    ds.PatientComments = "   "
    ds.StationName = "홍 "
    out = tmp_path / "empty.dcm"
    dicomnet.write_file(out, ds, LE)
    tree = _read_tree(out)
    assert tree[PN][1] == b""
    assert tree[LO][1] == b"\\\x1b$)C\xc8\xab\\"
    assert tree[LT][1].strip(b" ") == b""
    assert tree[SH][1] == b"\x1b$)C\xc8\xab  "               # the value's space, then padding
    assert _values(dcmtk.utf8(tree)) == {PN: "", LO: ["", "홍", ""], LT: "", SH: "홍"}
    assert _ours(dicomnet.read_file(out)) == {PN: "", LO: ["", "홍", ""], LT: "", SH: "홍"}
