"""Shared pieces of the dcmtk character set cross-checks (``test_dcmtk_charsets_*.py``).

The tests build Explicit VR Little Endian files byte by byte and parse them back (a
"tree" per data set), run dcmtk's ``dcmconv`` on them as the second reader and writer
(:class:`Dcmtk`; conftest.py's ``dcmtk`` fixture gives each test module one), and compare
the text with the values dicomnet documents. This module holds those pieces, the words and
file layouts used for each character set, and the ISO 2022 byte walk shared by the
encoding and transcoding tests. Importing it skips the importing test module when
``dcmconv`` (built with character set conversion) or pydicom is missing.

dcmtk 3.6.7 (Debian, built with GNU libiconv from glibc) -- what it cannot do
and where it is wrong; the tests work around the first kind and test what
the standard says for the second:

* It cannot convert ``ISO 2022 IR 87`` and ``ISO 2022 IR 159`` (glibc's iconv
  has no converter for JIS X 0208/0212 alone) nor ``ISO_IR 203``/``ISO 2022 IR
  203`` (Latin-9 is not in its table). Cases needing those are skipped after
  the dcmtk-free part of the test has run (a probe file per term decides).
* It refuses a single-valued ``ISO 2022 IR xxx`` (and ``ISO 2022 IR 6``):
  "not supported". PS3.3 C.12.1.1.2 allows one value from Table C.12-3 (the
  code extensions are then merely available). Those cases are compared with
  dcmtk reading the same bytes under ``ISO 2022 IR xxx\\ISO 2022 IR 6``,
  which designates the same initial G0 and G1 sets.
* ``dcmconv +U8`` / ``+C`` ignore the (0008,0005) of a sequence item: the
  item's text is converted from the *data set's* character set and the item
  keeps its old (0008,0005) (an ISO_IR 100 item in an ISO_IR 144 data set
  comes out as UTF-8 Cyrillic mojibake labelled ISO_IR 100). PS3.3
  C.12.1.1.2 says the item's own value applies within the item. The oracle
  here therefore converts every item that has its own (0008,0005) as a data
  set of its own (the item's elements at the top level, with that value).
* Under ``ISO_IR 13`` (no code extensions) it converts the whole element
  before splitting it, so the 05/12 byte that separates the values of a
  PN/LO/SH/UC comes out as YEN SIGN and the values are joined. PS3.5 6.1.2.3
  and 6.1.2.5.3 make the single byte 05/12 the value delimiter whatever its
  glyph (they name the YEN SIGN of ISO-IR 14 explicitly); dicomnet splits
  there, as ``test_iso_ir_13_backslash_byte_separates_values`` asserts. With
  code extensions (``\\ISO 2022 IR 13``) dcmtk splits first and is right.
* ``ESC ) I`` designates JIS X 0201-Katakana to G1 only, but dcmtk then reads
  the ASCII that follows as JIS X 0201-Roman too (05/12 -> YEN SIGN): see
  ``test_katakana_designation_leaves_g0_alone``.
* After GB 2312 text (``ESC $ ) A``) followed by ASCII in the same value,
  dcmtk stops interpreting escape sequences until the next delimiter: it
  keeps ``ESC $ ) C`` (even ``ESC ( B``) as text and reads the KS X 1001
  bytes after it as GB 2312 ("王 \x1b$)C何魂"), or fails (``ESC $ ) A``
  after ``CR LF \\``). dicomnet reads the standard's text
  (``test_escape_sequences_after_gb2312_and_ascii``); the other vectors and
  the words of the encoding tests avoid that pattern.
* It refuses undefined bytes (0xA1 in ISO_IR 127, invalid UTF-8), unknown
  escape sequences, 8-bit bytes with no G1 set designated, unknown and
  misspelt terms (``ISO_IR100``, ``ISO-IR 100``, lower case, ``ISO_IR 58``)
  and value 1 ``ISO_IR xxx`` with more values: the whole conversion fails.
  dicomnet never fails to read (U+FFFD, Latin-1 for the default repertoire,
  corrected spellings, a Python codec of that name: the documented choices in
  :mod:`dicomnet.dicom.charset`); those behaviours are asserted as documented.
* ``dcmconv +C`` cannot write ISO 2022 (multi-valued) character sets, so
  transcoding *to* them is checked through ``+U8`` of dicomnet's output and
  the byte walk.
* Bytes JIS X 0201 does not have (81-9F, E0-FC) under ISO_IR 13 are read as
  Shift_JIS kanji by dcmtk (glibc's SHIFT_JIS) and by dicomnet alike; the
  standard defines no reading, so that is checked as agreement only.

dicomnet faults found, both fixed:

* (fixed) JIS X 0201-Roman was treated as ASCII. The G0 set of ISO_IR 13 and of
  ``ISO 2022 IR 13`` (``ESC ( J``) is ISO-IR 14 (PS3.3 Tables C.12-2, C.12-3),
  where 05/12 is YEN SIGN and 07/14 OVERLINE (PS3.5 6.1.2.5.3 names the YEN
  SIGN of IR 14). dicomnet read an LT ``5C 31 30 30 20 7E B1`` as
  "\\100 ~ｱ" where dcmtk reads "¥100 ‾ｱ"
  (``test_iso_ir_13_roman_half_is_jis_x_0201``), and wrote "\\" and "~" --
  which that set lacks -- as those bytes instead of raising
  (``test_iso_ir_13_text_backslash_and_tilde_are_refused_or_kept``): Python's
  shift_jis codec maps 5C/7E to ASCII. (0x5C between the values of a
  PN/LO/SH/UC is still the delimiter.)
* (fixed) ISO 2022 encoding did not re-designate value 1's G1 set at the end
  of the value: ``_encode_iso2022`` restored only G0 after the last
  character, while it did restore G1 before delimiters. PS3.5 6.1.2.5.3: value 1's character set shall be active
  "before the end of a Data Element value". ``ISO 2022 IR 100\\ISO 2022 IR
  126`` with "é α" is written ``E9 20 1B 2D 46 E1`` and should end with
  ``1B 2D 41`` (``test_iso2022_encoding_returns_to_value_1_at_the_end``). Only
  value 1 sets with a G1 part are affected (``ISO 2022 IR 100``..., ``IR 13``);
  with value 1 empty, as in PS3.5 Annex I, there is nothing to re-designate.
"""
from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

import dicomnet

if not shutil.which("dcmconv"):
    pytest.skip("dcmtk (dcmconv) is not installed", allow_module_level=True)
_VERSION = subprocess.run(["dcmconv", "--version"], capture_output=True, text=True).stdout
if "char-conv" not in _VERSION and "iconv" not in _VERSION.lower() and "icu" not in _VERSION.lower():
    pytest.skip("dcmconv was built without character set conversion", allow_module_level=True)

pydicom = pytest.importorskip("pydicom")
_PYDICOM_CHARSET_FILES = Path(pydicom.__file__).parent / "data" / "charset_files"

LE = "1.2.840.10008.1.2.1"
SCS = 0x00080005
CHARSET_VRS = frozenset({"PN", "LO", "SH", "ST", "LT", "UT", "UC"})
SINGLE_VALUED = frozenset({"ST", "LT", "UT"})
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"})

# Elements used for the text values (their dictionary VR is the one given).
PN, OTHER_NAMES, LO, SH, ST, LT, UT, UC = (
    0x00100010, 0x00101001, 0x00101000, 0x00081010, 0x00080081, 0x00104000, 0x0040A160, 0x00080119)
CONTENT_SQ = 0x0040A730

# --- building and parsing Explicit VR Little Endian files ----------------------------------
# A "tree" is what a data set holds on the wire: {tag: (vr, bytes)} and {tag: ("SQ", [tree])}.


def _element(tag: int, vr: str, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00" if vr in ("UI", "OB", "UN") else b" "
    head = struct.pack("<HH2s", tag >> 16, tag & 0xFFFF, vr.encode("ascii"))
    if vr in _LONG_VRS:
        return head + struct.pack("<2xI", len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def _encode_tree(tree: dict) -> bytes:
    out = bytearray()
    for tag in sorted(tree):
        vr, value = tree[tag]
        if vr == "SQ":
            body = b"".join(struct.pack("<HHI", 0xFFFE, 0xE000, len(item)) + item
                            for item in map(_encode_tree, value))
            out += struct.pack("<HH2s2xI", tag >> 16, tag & 0xFFFF, b"SQ", len(body)) + body
        else:
            out += _element(tag, vr, value)
    return bytes(out)


def _part10(tree: dict) -> bytes:
    meta = (_element(0x00020001, "OB", b"\x00\x01") + _element(0x00020002, "UI", b"1.2.840.10008.5.1.4.1.1.7")
            + _element(0x00020003, "UI", b"1.2.826.0.1.3680043.2.1143.7") + _element(0x00020010, "UI", LE.encode()))
    return (bytes(128) + b"DICM" + _element(0x00020000, "UL", struct.pack("<I", len(meta))) + meta
            + _encode_tree(tree))


def _parse(buf: bytes, pos: int, end: int) -> tuple[dict, int]:
    out: dict = {}
    while pos < end:
        group, elem = struct.unpack_from("<HH", buf, pos)
        tag = group << 16 | elem
        if tag == 0xFFFEE00D:                       # item delimiter
            return out, pos + 8
        vr = buf[pos + 4:pos + 6].decode("ascii")
        if vr in _LONG_VRS:
            (length,), pos = struct.unpack_from("<I", buf, pos + 8), pos + 12
        else:
            (length,), pos = struct.unpack_from("<H", buf, pos + 6), pos + 8
        if vr != "SQ":
            out[tag] = (vr, bytes(buf[pos:pos + length]))
            pos += length
            continue
        items = []
        stop = end if length == 0xFFFFFFFF else pos + length
        while pos < stop:
            item_tag, item_length = struct.unpack_from("<II", buf, pos)
            pos += 8
            if item_tag == 0xE0DDFFFE:              # sequence delimiter
                break
            if item_length == 0xFFFFFFFF:
                item, pos = _parse(buf, pos, end)
            else:
                item, _ = _parse(buf, pos, pos + item_length)
                pos += item_length
            items.append(item)
        out[tag] = ("SQ", items)
    return out, pos


def _read_tree(path: Path) -> dict:
    data = path.read_bytes()
    assert data[128:132] == b"DICM"
    (meta_length,) = struct.unpack_from("<I", data, 140)
    start = 144 + meta_length
    return _parse(data, start, len(data))[0]


# --- dcmtk ----------------------------------------------------------------------------------


def _prune(tree: dict, path: tuple = ()) -> tuple[dict, list]:
    """``tree`` with every item that has its own (0008,0005) emptied, and those items
    with where they were (dcmtk ignores an item's own character set: see the docstring)."""
    out: dict = {}
    cuts: list = []
    for tag, (vr, value) in tree.items():
        if vr != "SQ":
            out[tag] = (vr, value)
            continue
        items = []
        for i, item in enumerate(value):
            where = path + ((tag, i),)
            if SCS in item:
                items.append({})
                cuts.append((where, item))
            else:
                sub, more = _prune(item, where)
                items.append(sub)
                cuts += more
        out[tag] = ("SQ", items)
    return out, cuts


def _texts(tree: dict) -> dict:
    """The UTF-8 text of the character-set VRs of a dcmconv +U8 result, items included."""
    out = {}
    for tag, (vr, value) in tree.items():
        if vr == "SQ":
            out[tag] = ("SQ", [_texts(item) for item in value])
        elif vr in CHARSET_VRS:
            out[tag] = (vr, value.decode("utf-8"))
    return out


class Dcmtk:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0
        self._support: dict[str, str | None] = {}

    def path(self, stem: str) -> Path:
        self.count += 1
        return self.root / f"{self.count:04d}-{stem}.dcm"

    def run(self, *args: Any) -> subprocess.CompletedProcess:
        return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60)

    def unsupported(self, scs: str) -> str | None:
        """Why dcmconv cannot convert from ``scs`` (a probe with an ASCII value), or None."""
        if scs not in self._support:
            src, out = self.path("probe"), self.path("probe-u8")
            src.write_bytes(_part10({SCS: ("CS", scs.encode()), PN: ("PN", b"Probe^Name")}))
            done = self.run("dcmconv", "+U8", src, out)
            reason = None
            if done.returncode:
                last = (done.stderr.strip().splitlines() or ["?"])[-1]
                reason = f"dcmtk cannot convert from {scs!r}: {last}"
            self._support[scs] = reason
        return self._support[scs]

    def equivalent(self, scs: str) -> str:
        """``scs``, or for a single ``ISO 2022 IR xxx`` that dcmtk refuses the two values
        that designate the same initial sets (see the docstring)."""
        if "\\" in scs or not scs.startswith("ISO 2022 IR ") or self.unsupported(scs) is None:
            return scs
        return scs + ("\\ISO 2022 IR 100" if scs == "ISO 2022 IR 6" else "\\ISO 2022 IR 6")

    def require(self, *sets: str) -> None:
        for scs in sets:
            reason = self.unsupported(scs)
            if reason:
                pytest.skip(reason)

    def convert(self, tree: dict, *options: str) -> tuple[subprocess.CompletedProcess, Path]:
        src, out = self.path("in"), self.path("out")
        src.write_bytes(_part10(tree))
        return self.run("dcmconv", *options, "+te", src, out), out

    def utf8(self, tree: dict, inherited: str | None = None) -> dict:
        """What ``dcmconv +U8`` reads in ``tree``: {tag: (vr, text)} / {tag: ("SQ", [...])}.
        Items with their own (0008,0005) are converted as data sets of their own."""
        own = tree.get(SCS)
        scs = own[1].decode("ascii").rstrip(" \x00") if own else inherited
        if scs:
            scs = self.equivalent(scs)
            self.require(scs)
        pruned, cuts = _prune(tree)
        if scs is not None:
            pruned[SCS] = ("CS", scs.encode("ascii"))
        done, out = self.convert(pruned, "+U8")
        assert done.returncode == 0, done.stderr
        result = _texts(_read_tree(out))
        for where, item in cuts:
            node = result
            for tag, i in where[:-1]:
                node = node[tag][1][i]
            tag, i = where[-1]
            node[tag][1][i] = self.utf8(item, scs)
        return result


# --- values as dicomnet gives them -------------------------------------------------------


def _value_of(vr: str, text: str) -> Any:
    """The Python value dicomnet documents for an element whose text is ``text``
    (:mod:`dicomnet.dicom.valuerep`): padding dropped, values split, trailing
    spaces of each value and trailing empty PN component groups dropped."""
    text = text.rstrip("\x00 ")
    if vr in SINGLE_VALUED:
        return text
    if not text:
        return ""
    values = [v.rstrip("\x00 ") for v in text.split("\\")]
    if vr == "PN":
        values = [v.rstrip("=") for v in values]
    return values[0] if len(values) == 1 else values


def _values(texts: dict) -> dict:
    out = {}
    for tag, (vr, value) in texts.items():
        out[tag] = [_values(item) for item in value] if vr == "SQ" else _value_of(vr, value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return str(value)


def _ours(ds: Any) -> dict:
    """dicomnet's values of the character-set VRs of ``ds``, items included."""
    out = {}
    for elem in ds:
        if elem.VR == "SQ":
            out[elem.tag] = [_ours(item) for item in elem.value]
        elif elem.VR in CHARSET_VRS:
            out[elem.tag] = _plain(elem.value)
    return out


# --- test data: text in each character set --------------------------------------------------

# Defined Term -> Python codec, for building test files (a table of this test's own).
CODECS = {
    "ISO_IR 6": "ascii", "ISO_IR 100": "latin_1", "ISO_IR 101": "iso8859_2", "ISO_IR 109": "iso8859_3",
    "ISO_IR 110": "iso8859_4", "ISO_IR 144": "iso8859_5", "ISO_IR 127": "iso8859_6", "ISO_IR 126": "iso8859_7",
    "ISO_IR 138": "iso8859_8", "ISO_IR 148": "iso8859_9", "ISO_IR 203": "iso8859_15", "ISO_IR 13": "shift_jis",
    "ISO_IR 166": "tis_620", "ISO_IR 192": "utf_8", "GB18030": "gb18030", "GBK": "gbk",
}
# Six words per set (ISO_IR 13: half-width katakana only; GBK/GB18030: characters whose
# second byte is 05/12, which is not a delimiter there: PS3.5 6.1.2.3).
WORDS = {
    "ISO_IR 100": ["Jérôme", "Müller", "Ærøskøbing", "façade", "Señor", "¿Qué?"],
    "ISO_IR 101": ["Łódź", "Świętochłowice", "Žluťoučký", "kůň", "Győr", "Ű"],
    "ISO_IR 109": ["Ħamrun", "Ġużè", "Ċirkewwa", "ŝipo", "ĝis", "Ĉu"],
    "ISO_IR 110": ["Ŗīga", "Ķekava", "Ņemunas", "ĸ", "Ūdens", "Ųž"],
    "ISO_IR 144": ["Люксембург", "Иван", "Петрович", "Ёж", "Щука", "Ъ"],
    "ISO_IR 127": ["قباني", "لنزار", "محمد", "علي", "؟", "؛"],
    "ISO_IR 126": ["Διονυσιος", "Αθηνά", "Ωμέγα", "ΐ", "ά", "Ψ"],
    "ISO_IR 138": ["שרון", "דבורה", "ישראל", "תל", "אביב", "ם"],
    "ISO_IR 148": ["Şişli", "İstanbul", "Ğ", "ğıl", "Çay", "Öz"],
    "ISO_IR 203": ["€uro", "Œuvre", "Šárka", "Žofie", "Ÿ", "œ"],
    "ISO_IR 13": ["ﾔﾏﾀﾞ", "ﾀﾛｳ", "ｱｲｳ", "ｶﾀｶﾅ", "ｰ", "｡"],
    "ISO_IR 166": ["ภาษาไทย", "สวัสดี", "กรุงเทพ", "ไทย", "฿", "๑๒๓"],
    "ISO_IR 192": ["Wang", "小東", "Müller", "Ελλάδα", "😀", "한국어"],
    "GB18030": ["王", "小东", "乗俓", "𠀀", "€", "Müller"],
    "GBK": ["王", "小东", "乗", "俓僜", "张", "中文"],
}
SINGLE_SETS = list(WORDS)


def _templates(w: list[str], multi: bool = True, text_backslash: bool = True) -> dict[int, tuple[str, str]]:
    """Values for every character-set VR made of the words ``w``: several values
    (``multi``), a backslash as text in ST/LT/UT (``text_backslash``)."""
    sep = "\\" if multi else " "
    text = "\\" if text_backslash else "/"
    return {
        PN: ("PN", f"{w[0]}^{w[1]}^^Dr^Jr={w[2]}^{w[3]}={w[4]}^{w[5]}"),
        OTHER_NAMES: ("PN", f"{w[1]}^{w[0]}{sep}{w[3]}={w[2]}{sep}={w[4]}"),
        LO: ("LO", f"{w[0]} {w[1]}{sep}{w[2]}{sep}{sep}{w[3]}"),
        SH: ("SH", f"{w[4]}{sep}{w[5]}"),
        ST: ("ST", f"{w[0]}\r\n{w[1]}\t{w[2]}{text}{w[3]}"),
        LT: ("LT", f"{w[5]}\x0c{w[4]}\r\n{w[3]}{text}  end"),
        UT: ("UT", "\r\n".join(f"{w[i % 6]} {i}" for i in range(120)) + text),
        UC: ("UC", f"{w[3]}{sep}{w[4]}{sep}{w[5]}"),
    }


def _layout(term: str) -> tuple[bool, bool]:
    """(multi, text_backslash) for ``_templates``. ISO_IR 13: dcmtk does not split
    values at 05/12; any set with JIS X 0201: 05/12 as text is YEN SIGN (see the
    docstring and the ISO_IR 13 tests)."""
    return term != "ISO_IR 13", not any(t.strip().endswith(" 13") for t in term.split("\\"))


def _spec_tree(spec: dict, inherited: str | None = None) -> dict:
    """Wire tree of a spec: {tag: (vr, text[, raw bytes])}, {SCS: ("CS", value)},
    {tag: ("SQ", [spec])}; text without raw bytes is encoded with CODECS."""
    scs = spec[SCS][1] if SCS in spec else inherited
    tree = {}
    for tag, entry in spec.items():
        vr = entry[0]
        if vr == "SQ":
            tree[tag] = ("SQ", [_spec_tree(item, scs) for item in entry[1]])
        elif len(entry) == 3:
            tree[tag] = (vr, entry[2])
        elif vr in CHARSET_VRS:
            tree[tag] = (vr, entry[1].encode(CODECS[scs or "ISO_IR 6"]))
        else:
            tree[tag] = (vr, entry[1].encode("ascii"))
    return tree


def _expected(spec: dict) -> dict:
    out = {}
    for tag, entry in spec.items():
        if entry[0] == "SQ":
            out[tag] = [_expected(item) for item in entry[1]]
        elif entry[0] in CHARSET_VRS:
            out[tag] = _value_of(entry[0], entry[1])
    return out


def _dataset(spec: dict) -> Any:
    """A dicomnet Dataset holding the spec's text (multi-valued LO/UC/SH set as lists)."""
    ds = dicomnet.Dataset()
    for tag in sorted(spec):
        entry = spec[tag]
        vr = entry[0]
        if vr == "SQ":
            ds.set(tag, [_dataset(item) for item in entry[1]], "SQ")
        elif tag == SCS:
            ds.SpecificCharacterSet = entry[1]
        elif vr in ("LO", "UC", "SH") and "\\" in entry[1]:
            ds.set(tag, entry[1].split("\\"), vr)
        else:
            ds.set(tag, entry[1], vr)
    return ds


def _other_sets(term: str) -> tuple[str, str]:
    """Character sets for an item with its own (0008,0005), and one nested deeper."""
    own = "GB18030" if term == "ISO_IR 192" else "ISO_IR 192"
    deeper = "ISO_IR 144" if term == "ISO_IR 126" else "ISO_IR 126"
    return own, deeper


def _file_spec(term: str, words: list[str] | None = None) -> dict:
    """Top-level values in ``term``, plus ContentSequence items: one inheriting it, one
    with its own set (holding an item inheriting that one), one inheriting it that
    holds an item with a third set."""
    words = words or WORDS[term]
    own, deeper = _other_sets(term)
    top = _templates(words, *_layout(term))
    mine = _templates(WORDS[own])
    third = _templates(WORDS[deeper])
    spec: dict = {SCS: ("CS", term), **top}
    spec[CONTENT_SQ] = ("SQ", [
        {k: top[k] for k in (PN, LO, LT, UT)},
        {SCS: ("CS", own), PN: mine[PN], UT: mine[UT], SH: mine[SH],
         CONTENT_SQ: ("SQ", [{LO: mine[LO], UC: mine[UC]}])},
        {ST: top[ST], CONTENT_SQ: ("SQ", [{SCS: ("CS", deeper), PN: third[PN], ST: third[ST]}])},
    ])
    return spec


def _write_spec(tmp_path: Path, spec: dict, name: str = "in.dcm") -> Path:
    path = tmp_path / name
    path.write_bytes(_part10(_spec_tree(spec)))
    return path


# --- ISO 2022 ------------------------------------------------------------------------------

LGC = "ISO 2022 IR 100\\ISO 2022 IR 126\\ISO 2022 IR 144"
LG = "ISO 2022 IR 100\\ISO 2022 IR 126"
ALL_G1 = ["100", "101", "109", "110", "144", "127", "126", "138", "148", "166"]
ALL_G1_SCS = "\\" + "\\".join("ISO 2022 IR " + n for n in ALL_G1)
ALL_G1_FINAL = {"100": "A", "101": "B", "109": "C", "110": "D", "144": "L", "127": "G", "126": "F", "138": "H",
                "148": "M", "166": "T"}

_TAG_FOR_VR = {"PN": PN, "LO": LO, "SH": SH, "ST": ST, "LT": LT, "UT": UT, "UC": UC}


def _at(values: dict, where: tuple) -> Any:
    node: Any = values
    for key in where:
        node = node[key]
    return node


ISO2022_WRITE_SETS = {
    # Specific Character Set -> words, mixing the scripts of its sets
    "\\ISO 2022 IR 149": ["Hong", "홍길동", "洪吉洞", "서울", "Kim", "김민수"],
    "\\ISO 2022 IR 58": ["Zhang", "张", "小东", "北京", "上海", "王"],
    "\\ISO 2022 IR 149\\ISO 2022 IR 58": ["서울北京", "Kim", "张홍", "上海", "부산", "国"],
    LGC: ["Müller", "Αλέξης", "Жорж", "éαж", "ß", "Ωé"],
    "\\ISO 2022 IR 100": ["Jérôme", "Smith", "Ærø", "x", "ü", "é"],
    "ISO 2022 IR 6\\ISO 2022 IR 100": ["Señor", "Ann", "façade", "ô", "y", "Ü"],
    ALL_G1_SCS: ["Jérôme", "Łódź", "Ħamrun", "Люксембург", "قباني", "Διονυσιος שרון Şişli ภาษาไทย Ŗīga"],
    "\\ISO 2022 IR 13": ["ﾔﾏﾀﾞ", "ﾀﾛｳ", "Yamada", "ｱｲｳ", "Taro", "ｶﾅ"],
    "ISO 2022 IR 13\\ISO 2022 IR 149": ["ﾔﾏﾀﾞ", "홍", "Yamada", "ﾀﾛｳ길동", "Taro", "ｶﾅ서울"],
    "ISO 2022 IR 100\\ISO 2022 IR 149": ["Müller", "홍길동", "é한ü", "국", "ß", "서울"],
    "ISO 2022 IR 100": ["Jérôme", "Müller", "Ærø", "façade", "Señor", "¿Qué?"],
    "ISO 2022 IR 144": ["Люксембург", "Иван", "Петрович", "Ёж", "Щука", "Ъ"],
    "\\ISO 2022 IR 87": ["Yamada", "山田", "太郎", "やまだ", "たろう", "Taro"],
    "ISO 2022 IR 13\\ISO 2022 IR 87": ["ﾔﾏﾀﾞ", "山田", "太郎", "やまだ", "ﾀﾛｳ", "Taro"],
    "\\ISO 2022 IR 87\\ISO 2022 IR 159": ["Yamada", "山田", "丂", "やまだ", "丂山", "Taro"],
}


def _write_spec_with_dicomnet(tmp_path: Path, term: str, words: list[str]) -> tuple[dict, Path]:
    spec = _file_spec(term, words)
    out = tmp_path / "ours.dcm"
    dicomnet.write_file(out, _dataset(spec), LE)
    return spec, out


# ISO 2022 state machine (PS3.3 Tables C.12-3/C.12-4): escape -> (G0 or G1, set, bytes per char)
_DESIGNATIONS = {
    b"\x1b(B": ("G0", "ASCII", 1), b"\x1b(J": ("G0", "JIS X 0201-Roman", 1),
    b"\x1b$B": ("G0", "JIS X 0208", 2), b"\x1b$(D": ("G0", "JIS X 0212", 2),
    b"\x1b)I": ("G1", "JIS X 0201-Katakana", 1), b"\x1b$)C": ("G1", "KS X 1001", 2),
    b"\x1b$)A": ("G1", "GB 2312", 2),
    **{b"\x1b-" + f.encode(): ("G1", "ISO 8859 " + f, 1) for f in "ABCDFGHLMTb"},
}
_INITIAL = {  # value 1 -> (G0, G1)
    "": ("ASCII", None), "ISO 2022 IR 6": ("ASCII", None), "ISO 2022 IR 13": ("JIS X 0201-Roman", "JIS X 0201-Katakana"),
    **{f"ISO 2022 IR {n}": ("ASCII", "ISO 8859 " + f) for n, f in {**ALL_G1_FINAL, "203": "b"}.items()},
}


def _state_violations(raw: bytes, scs: str, vr: str) -> tuple[list[str], tuple]:
    """Walk ``raw`` (an ISO 2022 value); list the delimiters at which value 1's code
    elements are not in use again; also return the state at the end of the value."""
    g0_initial, g1_initial = _INITIAL[scs.split("\\")[0]]
    g0, g1, g0_width, g1_width = g0_initial, g1_initial, 1, 1
    delimiters = {0x0A, 0x0C, 0x0D, 0x09}
    if vr not in SINGLE_VALUED:
        delimiters.add(0x5C)
    if vr == "PN":
        delimiters |= {0x5E, 0x3D}
    problems = []
    i = 0
    while i < len(raw):
        byte = raw[i]
        if byte == 0x1B:
            for escape, (half, name, width) in _DESIGNATIONS.items():
                if raw.startswith(escape, i):
                    if half == "G0":
                        g0, g0_width = name, width
                    else:
                        g1, g1_width = name, width
                    i += len(escape)
                    break
            else:
                problems.append(f"unknown escape at {i}: {raw[i:i + 4]!r}")
                i += 1
            continue
        if byte >= 0x80:
            i += g1_width
            continue
        if g0_width == 2 and 0x21 <= byte <= 0x7E:
            i += 2
            continue
        if byte in delimiters or byte < 0x20:
            if g0 != g0_initial or (g1_initial is not None and g1 != g1_initial):
                problems.append(f"{bytes([byte])!r} at {i} with G0={g0}, G1={g1} in {raw!r}")
        i += 1
    return problems, (g0, g1, g0_initial, g1_initial)


def _iso2022_elements(tree: dict, scs: str) -> list[tuple[str, str, bytes]]:
    scs = tree[SCS][1].decode().rstrip(" ") if SCS in tree else scs
    found = []
    for tag, (vr, value) in tree.items():
        if vr == "SQ":
            for item in value:
                found += _iso2022_elements(item, scs)
        elif vr in CHARSET_VRS and (scs.startswith("ISO 2022") or "\\" in scs):
            found.append((scs, vr, value))
    return found
