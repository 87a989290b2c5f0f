"""Transcoding: a data set is read, its Specific Character Set changed, and written.

The text elements must come out byte for byte as ``dcmconv +C <set>`` (``+U8`` for UTF-8)
converts the source, where dcmtk can write the target set. dcmconv cannot write ISO 2022
sets, so transcoding to them is checked by reading dicomnet's output through ``dcmconv
+U8`` and by the ISO 2022 byte walk. Also covered: text the target set cannot hold, the
Japanese examples of PS3.5 Annex H, items with a set of their own that is changed, removed
or moved, and a set left as it was keeping the bytes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import dicomnet
from dicomnet.errors import DicomEncodeError
from tests.dicom._dcmtk_charsets import (
    CHARSET_VRS, CONTENT_SQ, ISO2022_WRITE_SETS, LE, LG, LGC, LO, LT, OTHER_NAMES, PN, _PYDICOM_CHARSET_FILES,
    SCS, SH, ST, UC, UT, WORDS, Dcmtk, _at, _expected, _file_spec, _iso2022_elements, _ours, _part10, _prune,
    _read_tree, _spec_tree, _state_violations, _values, _write_spec, _write_spec_with_dicomnet,
)


TRANSCODINGS = [
    # (source set, target set, words in both)
    ("ISO_IR 100", "ISO_IR 192", WORDS["ISO_IR 100"]),
    ("ISO_IR 144", "ISO_IR 192", WORDS["ISO_IR 144"]),
    ("ISO_IR 127", "ISO_IR 192", WORDS["ISO_IR 127"]),
    ("ISO_IR 166", "ISO_IR 192", WORDS["ISO_IR 166"]),
    ("ISO_IR 192", "ISO_IR 100", WORDS["ISO_IR 100"]),
    ("ISO_IR 192", "ISO_IR 126", WORDS["ISO_IR 126"]),
    ("ISO_IR 100", "ISO_IR 148", ["Müller", "Çay", "façade", "Öz", "Jürgen", "ü"]),
    ("ISO_IR 148", "ISO_IR 100", ["Müller", "Çay", "façade", "Öz", "Jürgen", "ü"]),
    ("GB18030", "ISO_IR 192", WORDS["GB18030"]),
    ("ISO_IR 192", "GB18030", WORDS["ISO_IR 192"]),
    ("GBK", "GB18030", WORDS["GBK"]),
    ("ISO_IR 192", "GBK", WORDS["GBK"]),
    ("ISO_IR 13", "ISO_IR 192", WORDS["ISO_IR 13"]),
]


@pytest.mark.parametrize(("source", "target", "words"), TRANSCODINGS,
                         ids=[f"{s}->{t}" for s, t, _ in TRANSCODINGS])
def test_transcoding_matches_dcmconv(dcmtk: Dcmtk, tmp_path: Path, source: str, target: str,
                                     words: list[str]) -> None:
    """Same bytes as ``dcmconv +C <target>`` for the data set and the items inheriting
    its set; an item with its own (0008,0005) keeps it, and its bytes."""
    dcmtk.require(source, target)
    spec = _file_spec(source, words)
    path = _write_spec(tmp_path, spec)
    ds = dicomnet.read_file(path)
    ds.SpecificCharacterSet = target
    out = tmp_path / "ours.dcm"
    dicomnet.write_file(out, ds, LE)
    ours = _read_tree(out)

    source_tree = _read_tree(path)
    pruned, cuts = _prune(source_tree)
    done, converted = dcmtk.convert(pruned, *(["+U8"] if target == "ISO_IR 192" else ["+C", target]))
    assert done.returncode == 0, done.stderr
    theirs = _read_tree(converted)
    assert ours[SCS][1].rstrip(b" ") == theirs[SCS][1].rstrip(b" ") == target.encode()
    own_items = {where: item for where, item in cuts}

    def compare(a: dict, b: dict, where: tuple) -> None:
        for tag, (vr, value) in a.items():
            if vr == "SQ":
                for i, item in enumerate(value):
                    key = where + ((tag, i),)
                    if key in own_items:
                        assert item == own_items[key]   # untouched: same (0008,0005), same bytes
                    else:
                        compare(item, b[tag][1][i], key)
            elif vr in CHARSET_VRS:
                assert value == b[tag][1], (hex(tag), value, b[tag][1])
    compare(ours, theirs, ())
    assert _values(dcmtk.utf8(ours)) == _expected(spec)


@pytest.mark.parametrize(("source", "target", "words"), [
    ("\\ISO 2022 IR 149", "ISO_IR 192", ISO2022_WRITE_SETS["\\ISO 2022 IR 149"]),
    ("\\ISO 2022 IR 149\\ISO 2022 IR 58", "ISO_IR 192", ISO2022_WRITE_SETS["\\ISO 2022 IR 149\\ISO 2022 IR 58"]),
    (LGC, "ISO_IR 192", ISO2022_WRITE_SETS[LGC]),
    ("\\ISO 2022 IR 58", "GB18030", ISO2022_WRITE_SETS["\\ISO 2022 IR 58"]),
    ("ISO 2022 IR 100\\ISO 2022 IR 149", "ISO_IR 192", ISO2022_WRITE_SETS["ISO 2022 IR 100\\ISO 2022 IR 149"]),
], ids=["KS->UTF-8", "KS+GB->UTF-8", "Latin+Greek+Cyrillic->UTF-8", "GB2312->GB18030", "Latin+KS->UTF-8"])
def test_transcoding_from_iso2022_matches_dcmconv(dcmtk: Dcmtk, tmp_path: Path, source: str, target: str,
                                                  words: list[str]) -> None:
    """Source bytes written by dicomnet in the ISO 2022 set (checked against dcmtk by
    test_iso2022_sets_encode_for_dcmtk), read back, set to ``target``, written: the
    text elements are byte for byte what ``dcmconv`` makes of the source."""
    dcmtk.require(source, target)
    spec, first = _write_spec_with_dicomnet(tmp_path, source, words)
    ds = dicomnet.read_file(first)
    ds.SpecificCharacterSet = target
    out = tmp_path / "transcoded.dcm"
    dicomnet.write_file(out, ds, LE)
    pruned, _ = _prune(_read_tree(first))
    done, converted = dcmtk.convert(pruned, *(["+U8"] if target == "ISO_IR 192" else ["+C", target]))
    assert done.returncode == 0, done.stderr
    ours, theirs = _read_tree(out), _read_tree(converted)
    for tag in (PN, OTHER_NAMES, LO, SH, ST, LT, UT, UC):
        assert ours[tag][1] == theirs[tag][1], hex(tag)
    assert ours[CONTENT_SQ][1][0] == theirs[CONTENT_SQ][1][0]       # the item inheriting the set
    assert _values(dcmtk.utf8(ours)) == _expected(spec)


@pytest.mark.parametrize(("source", "target"), [
    ("ISO_IR 192", "\\ISO 2022 IR 149"),
    ("ISO_IR 192", "\\ISO 2022 IR 149\\ISO 2022 IR 58"),
    ("GB18030", "\\ISO 2022 IR 58"),
    ("ISO_IR 192", LGC),
    ("ISO_IR 100", "ISO 2022 IR 100\\ISO 2022 IR 149"),
    ("ISO_IR 192", "\\ISO 2022 IR 87"),
])
def test_transcoding_to_iso2022(dcmtk: Dcmtk, tmp_path: Path, source: str, target: str) -> None:
    """dcmconv cannot write ISO 2022 sets: dicomnet's output must read (``+U8``) as the
    source text, and switch back to value 1 before every delimiter."""
    words = ISO2022_WRITE_SETS[target] if target in ISO2022_WRITE_SETS else ISO2022_WRITE_SETS[
        "ISO 2022 IR 100\\ISO 2022 IR 149"]
    if source == "ISO_IR 100":
        words = WORDS["ISO_IR 100"]
    spec = _file_spec(source, words)
    path = _write_spec(tmp_path, spec)
    ds = dicomnet.read_file(path)
    ds.SpecificCharacterSet = target
    out = tmp_path / "ours.dcm"
    dicomnet.write_file(out, ds, LE)
    tree = _read_tree(out)
    assert tree[SCS][1].rstrip(b" ") == target.encode()
    for scs, vr, raw in _iso2022_elements(tree, target):
        assert not _state_violations(raw, scs, vr)[0]
    assert _ours(dicomnet.read_file(out)) == _expected(spec)
    dcmtk.require(target)
    assert _values(dcmtk.utf8(tree)) == _expected(spec)


def test_transcoding_refuses_what_the_target_cannot_hold(dcmtk: Dcmtk, tmp_path: Path) -> None:
    """UTF-8 -> Latin-1 with a kanji: dicomnet raises, writes nothing; dcmtk's
    ``+C ISO_IR 100`` (without -Cd/-Ct) refuses too -- neither writes a "?"."""
    spec = {SCS: ("CS", "ISO_IR 192"), PN: ("PN", "Müller^Jürgen"),
            CONTENT_SQ: ("SQ", [{LO: ("LO", "Tokyo 東京")}])}
    path = _write_spec(tmp_path, spec)
    ds = dicomnet.read_file(path)
    ds.SpecificCharacterSet = "ISO_IR 100"
    out = tmp_path / "latin1.dcm"
    with pytest.raises(DicomEncodeError, match="東"):
        dicomnet.write_file(out, ds, LE)
    assert not out.exists()
    done, converted = dcmtk.convert(_spec_tree(spec), "+C", "ISO_IR 100")
    assert done.returncode != 0 and not converted.exists()
    # Latin-1 -> Cyrillic with "ü": the same
    ds = dicomnet.read_file(_write_spec(tmp_path, {SCS: ("CS", "ISO_IR 100"), PN: ("PN", "Müller")}, "l1.dcm"))
    ds.SpecificCharacterSet = "ISO_IR 144"
    with pytest.raises(DicomEncodeError, match="ü"):
        dicomnet.write_file(out, ds, LE)
    # the default repertoire cannot hold it either: deleting (0008,0005) is no escape
    ds = dicomnet.read_file(tmp_path / "l1.dcm")
    del ds.SpecificCharacterSet
    with pytest.raises(DicomEncodeError, match="ü"):
        dicomnet.write_file(out, ds, LE)
    assert not out.exists()


H31 = "Yamada^Tarou=山田^太郎=やまだ^たろう"
H32 = "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう"


@pytest.mark.parametrize(("name", "where", "text"), [
    ("chrH31.dcm", (PN,), H31),
    ("chrH32.dcm", (PN,), H32),
    ("chrJapMulti.dcm", (OTHER_NAMES,), ["やまだ^たろう", "やまだ^たろう"]),
    ("chrJapMultiExplicitIR6.dcm", (OTHER_NAMES,), ["やまだ^たろう", "やまだ^たろう"]),
    ("chrSQEncoding1.dcm", (0x00321064, 0, PN), H32),
])
def test_japanese_iso2022_to_utf8(dcmtk: Dcmtk, tmp_path: Path, name: str, where: tuple, text: Any) -> None:
    """ISO 2022 IR 87 (PS3.5 H.3.1, H.3.2) -> ISO_IR 192, nested item included: dcmtk
    cannot read the source, but reads dicomnet's UTF-8 output as the standard's text."""
    ds = dicomnet.read_file(_PYDICOM_CHARSET_FILES / name)
    before = _ours(ds)
    ds.SpecificCharacterSet = "ISO_IR 192"
    out = tmp_path / "utf8.dcm"
    dicomnet.write_file(out, ds, LE)
    tree = _read_tree(out)
    assert all(b"\x1b" not in raw for _, raw in _leaves(tree))
    theirs = _values(dcmtk.utf8(tree))
    assert _at(theirs, where) == text
    assert theirs == before


def _leaves(tree: dict) -> list[tuple[str, bytes]]:
    out = []
    for vr, value in tree.values():
        if vr == "SQ":
            for item in value:
                out += _leaves(item)
        elif vr in CHARSET_VRS:
            out.append((vr, value))
    return out


def test_item_with_its_own_set_changed_or_removed(dcmtk: Dcmtk, tmp_path: Path) -> None:
    """chrSQEncoding: a UTF-8 data set whose item is in ISO 2022 IR 13\\87. Setting the
    item's (0008,0005) to ISO_IR 192 transcodes the item; removing it makes the item
    inherit UTF-8 and transcodes it too. A Latin-1 item appended to a Greek data set is
    written in Greek where it can be, and refused where it cannot."""
    source = _PYDICOM_CHARSET_FILES / "chrSQEncoding.dcm"
    for change in ("set", "delete"):
        ds = dicomnet.read_file(source)
        item = ds.RequestedProcedureCodeSequence[0]
        if change == "set":
            item.SpecificCharacterSet = "ISO_IR 192"
        else:
            del item.SpecificCharacterSet
        out = tmp_path / f"{change}.dcm"
        dicomnet.write_file(out, ds, LE)
        tree = _read_tree(out)
        raw = tree[0x00321064][1][0][PN][1]
        assert raw.rstrip(b" ") == H32.encode("utf-8")
        assert _at(_values(dcmtk.utf8(tree)), (0x00321064, 0, PN)) == H32

    greek = _write_spec(tmp_path, {SCS: ("CS", "ISO_IR 126"), PN: ("PN", "Διονυσιος")}, "greek.dcm")
    latin = _write_spec(tmp_path, {SCS: ("CS", "ISO_IR 100"),
                                   CONTENT_SQ: ("SQ", [{LO: ("LO", "Jérôme"), SH: ("SH", "x")}])}, "latin.dcm")
    target = dicomnet.read_file(greek)
    moved = dicomnet.read_file(latin).ContentSequence[0]
    target.ContentSequence = [moved]
    with pytest.raises(DicomEncodeError, match="é"):        # Greek has no é
        dicomnet.write_file(tmp_path / "moved.dcm", target, LE)
    moved.OtherPatientIDs = "Athens"
    dicomnet.write_file(tmp_path / "moved.dcm", target, LE)
    tree = _read_tree(tmp_path / "moved.dcm")
    assert tree[CONTENT_SQ][1][0][LO][1] == b"Athens"
    moved.StationName = "ΑΘΗΝΑ"
    dicomnet.write_file(tmp_path / "moved.dcm", target, LE)
    tree = _read_tree(tmp_path / "moved.dcm")
    assert tree[CONTENT_SQ][1][0][SH][1] == "ΑΘΗΝΑ".encode("iso8859_7") + b" "
    assert _values(dcmtk.utf8(tree)) == {PN: "Διονυσιος", CONTENT_SQ: [{LO: "Athens", SH: "ΑΘΗΝΑ"}]}


def test_unchanged_set_keeps_the_bytes(tmp_path: Path) -> None:
    """Setting (0008,0005) to the value it has changes nothing, ISO 2022 escapes included
    (dicomnet is not to re-encode a non-conformant but readable value either)."""
    raw = b"\x1b-F\xe1^\xe1"                                  # no return before "^"
    tree = {SCS: ("CS", LG.encode()), PN: ("PN", raw), CONTENT_SQ: ("SQ", [{LO: ("LO", raw)}])}
    path = tmp_path / "same.dcm"
    path.write_bytes(_part10(tree))
    ds = dicomnet.read_file(path)
    ds.SpecificCharacterSet = LG
    out = tmp_path / "out.dcm"
    dicomnet.write_file(out, ds, LE)
    written = _read_tree(out)
    assert written[PN][1].rstrip(b" ") == raw
    assert written[CONTENT_SQ][1][0][LO][1].rstrip(b" ") == raw
