"""Text decoding and encoding under (0008,0005) Specific Character Set.

Standard references:

* PS3.3 C.12.1.1.2 lists the Defined Terms: single-byte sets without code
  extensions (``ISO_IR 100`` ...), the same sets with ISO 2022 code extensions
  (``ISO 2022 IR 100`` ...), multi-byte sets with code extensions
  (``ISO 2022 IR 87/159/149/58``) and stand-alone multi-byte sets
  (``ISO_IR 192`` UTF-8, ``GB18030``, ``GBK``), plus their escape sequences
  (Tables C.12-3 and C.12-4).
* PS3.5 6.1.2.5 describes the code extension technique: an escape sequence
  designates a set into G0 (7-bit half) or G1 (8-bit half); the set named by
  value 1 (or the default repertoire) becomes active again before CR, LF, FF,
  TAB, before the end of the value, before ``^`` and ``=`` in PN and before
  the ``\\`` that separates values.
* Only SH, LO, ST, LT, UC, UT and PN are affected (PS3.5 6.1.2.3); every other
  string VR uses the default repertoire.

Decoding never raises: undecodable bytes become U+FFFD (or, for the default
repertoire, are read as Latin-1, which is what pydicom does) and a warning is
logged once per kind of problem.  Encoding raises
:class:`dicomnet.errors.DicomEncodeError` for text the character sets cannot
represent.

JIS X 0201-Roman: the G0 set of ``ISO_IR 13`` and of ``ISO 2022 IR 13``
(``ESC ( J``) is ISO-IR 14, where 05/12 is YEN SIGN and 07/14 OVERLINE (PS3.3
Tables C.12-2, C.12-3). They are read as "¥" and "‾", as dcmtk reads them
(pydicom reads ``\\`` and ``~``), except that 05/12 still separates the values
of a multi-valued VR. Text holding ``\\`` (in ST, LT, UT) or ``~``, which the
set lacks, is refused unless ISO 2022 IR 6 is among the sets to switch to, and
so is "¥" in a multi-valued VR, where it would read back as a separator.
"""
from __future__ import annotations

import codecs
import logging
import re
from dataclasses import dataclass
from functools import lru_cache

from dicomnet.errors import DicomEncodeError

__all__ = [
    "DEFAULT_CHARSET",
    "CHARSET_VRS",
    "parse_charsets",
    "decode_text",
    "encode_text",
    "python_codec",
]

logger = logging.getLogger("dicomnet")

DEFAULT_CHARSET = "ISO_IR 6"

#: VRs whose values are encoded with Specific Character Set (PS3.5 6.1.2.3).
CHARSET_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})

# Single-valued VRs: a backslash is text, not a value separator.
_SINGLE_VALUED = frozenset({"ST", "LT", "UT", "UR"})

_ESC = 0x1B
_ESC_B = b"\x1b"

# JIS X 0201-Roman (ISO-IR 14) differs from ASCII at 05/12 and 07/14.
_ROMAN_BYTES = {"\u00a5": b"\\", "\u203e": b"~"}  # YEN SIGN, OVERLINE


@dataclass(frozen=True)
class _CodeSet:
    """One graphic character set an escape sequence can designate."""

    name: str
    escape: bytes  # full escape sequence including ESC
    codec: str  # Python codec that decodes bytes of this set
    g0: bool  # True: designated to G0 (7-bit), False: G1 (high bit set)
    multibyte_g0: bool = False  # 7-bit multi-byte (JIS X 0208/0212)


_ASCII = _CodeSet("ASCII", b"\x1b(B", "ascii", True)
_ROMAN = _CodeSet("JIS X 0201 Romaji", b"\x1b(J", "shift_jis", True)
_JIS0208 = _CodeSet("JIS X 0208", b"\x1b$B", "iso2022_jp", True, True)
_JIS0212 = _CodeSet("JIS X 0212", b"\x1b$(D", "iso2022_jp_2", True, True)
_KATAKANA = _CodeSet("JIS X 0201 Katakana", b"\x1b)I", "shift_jis", False)
_KSX1001 = _CodeSet("KS X 1001", b"\x1b$)C", "euc_kr", False)
_GB2312 = _CodeSet("GB 2312", b"\x1b$)A", "gb2312", False)


def _g1(name: str, final: str, codec: str) -> _CodeSet:
    # 96-character sets are designated to G1 with ESC 02/13 F (PS3.3 Table C.12-3)
    return _CodeSet(name, b"\x1b-" + final.encode(), codec, False)


_LATIN1 = _g1("Latin alphabet No. 1", "A", "latin_1")
_LATIN2 = _g1("Latin alphabet No. 2", "B", "iso8859_2")
_LATIN3 = _g1("Latin alphabet No. 3", "C", "iso8859_3")
_LATIN4 = _g1("Latin alphabet No. 4", "D", "iso8859_4")
_GREEK = _g1("Greek", "F", "iso8859_7")
_ARABIC = _g1("Arabic", "G", "iso8859_6")
_HEBREW = _g1("Hebrew", "H", "iso8859_8")
_CYRILLIC = _g1("Cyrillic", "L", "iso8859_5")
_LATIN5 = _g1("Latin alphabet No. 5", "M", "iso8859_9")
_THAI = _g1("Thai", "T", "tis_620")
_LATIN9 = _g1("Latin alphabet No. 9", "b", "iso8859_15")

_ALL_SETS = (
    _ASCII, _ROMAN, _JIS0208, _JIS0212, _KATAKANA, _KSX1001, _GB2312, _LATIN1,
    _LATIN2, _LATIN3, _LATIN4, _GREEK, _ARABIC, _HEBREW, _CYRILLIC, _LATIN5,
    _THAI, _LATIN9,
)
_BY_ESCAPE = {s.escape[1:]: s for s in _ALL_SETS}
_BY_ESCAPE[b"$@"] = _JIS0208  # JIS C 6226-1978, decoded as JIS X 0208

# Defined Term -> (G0 set, G1 set) it designates.  The ISO_IR forms map to the
# same sets so that a (non-conformant) multi-valued list of them still works.
_TERM_SETS: dict[str, tuple[_CodeSet | None, _CodeSet | None]] = {
    "ISO 2022 IR 6": (_ASCII, None),
    "ISO 2022 IR 13": (_ROMAN, _KATAKANA),
    "ISO 2022 IR 87": (_JIS0208, None),
    "ISO 2022 IR 159": (_JIS0212, None),
    "ISO 2022 IR 149": (None, _KSX1001),
    "ISO 2022 IR 58": (None, _GB2312),
}
for _num, _set in (
    ("100", _LATIN1), ("101", _LATIN2), ("109", _LATIN3), ("110", _LATIN4),
    ("126", _GREEK), ("127", _ARABIC), ("138", _HEBREW), ("144", _CYRILLIC),
    ("148", _LATIN5), ("166", _THAI), ("203", _LATIN9),
):
    _TERM_SETS["ISO 2022 IR " + _num] = (None, _set)
    _TERM_SETS["ISO_IR " + _num] = (None, _set)
_TERM_SETS["ISO_IR 6"] = (_ASCII, None)
_TERM_SETS["ISO_IR 13"] = (_ROMAN, _KATAKANA)

# Defined Term -> Python codec when used alone, without escape sequences.
_PLAIN_CODECS: dict[str, str] = {
    "ISO_IR 6": "ascii",
    "ISO_IR 13": "shift_jis",
    "ISO_IR 192": "utf_8",
    "GB18030": "gb18030",
    "GBK": "gbk",
}
for _term, (_s0, _s1) in _TERM_SETS.items():
    if _term.startswith("ISO_IR ") and _s1 is not None and _term not in _PLAIN_CODECS:
        _PLAIN_CODECS[_term] = _s1.codec

# Terms that forbid code extensions (PS3.5 6.1.2.5.4 d).
_STAND_ALONE = frozenset({"ISO_IR 192", "GB18030", "GBK"})

# Spellings seen in the wild (CP1234 names, separators) -> Defined Term.
_ALIASES = {"ISO 2022 GBK": "GBK", "ISO 2022 58": "ISO 2022 IR 58"}
_MISSPELT = re.compile(r"^ISO[ _-]?(2022)?[ _-]?IR[ _-]?(\d+)$", re.IGNORECASE)

_warned: set[tuple[str, str]] = set()
_RUNS = re.compile(rb"[\x00-\x7f]+|[\x80-\xff]+")


def _warn_once(kind: str, detail: str, message: str) -> None:
    """Log ``message`` at WARNING the first time (kind, detail) is seen, DEBUG after."""
    key = (kind, detail)
    if key in _warned:
        logger.debug(message)
        return
    _warned.add(key)
    logger.warning(message)


def _normalise_term(term: str) -> str:
    term = term.strip()
    if term in _TERM_SETS or term in _PLAIN_CODECS:
        return term
    if term in _ALIASES:
        return _ALIASES[term]
    m = _MISSPELT.match(term)
    if m:
        fixed = ("ISO 2022 IR " if m.group(1) else "ISO_IR ") + str(int(m.group(2)))
        if fixed in _TERM_SETS or fixed in _PLAIN_CODECS:
            _warn_once("charset-spelling", term, f"Specific Character Set {term!r} read as {fixed!r}")
            return fixed
    return term


def parse_charsets(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Normalise the value of (0008,0005) Specific Character Set.

    ``None``, ``""`` or an empty first value mean the default repertoire and
    become ``"ISO_IR 6"``.  Obvious misspellings (``"ISO IR 100"``,
    ``"ISO-IR 100"``) are corrected with a warning.  Unknown terms are kept
    (and warned about); decoding then falls back to the Python codec of that
    name if there is one, else to Latin-1.  A stand-alone set (UTF-8, GB18030,
    GBK) used with others keeps only the allowed part, with a warning.
    """
    if value is None:
        return (DEFAULT_CHARSET,)
    if isinstance(value, str):
        items = value.split("\\")
    else:
        items = list(value)
    terms = [_normalise_term(str(t)) for t in items]
    if not terms:
        return (DEFAULT_CHARSET,)
    if not terms[0]:
        terms[0] = DEFAULT_CHARSET
    # Later empty values carry no meaning; drop them.
    terms = [terms[0]] + [t for t in terms[1:] if t]
    for t in terms:
        if t not in _TERM_SETS and t not in _PLAIN_CODECS:
            _warn_once("charset-unknown", t, f"unknown Specific Character Set {t!r}; using {_fallback_codec(t)!r}")
    if len(terms) > 1:
        if terms[0] in _STAND_ALONE:
            _warn_once("charset-standalone", "|".join(terms),
                       f"{terms[0]!r} does not allow code extensions; ignoring {terms[1:]}")
            return (terms[0],)
        kept = [terms[0]] + [t for t in terms[1:] if t not in _STAND_ALONE]
        if len(kept) != len(terms):
            _warn_once("charset-standalone", "|".join(terms),
                       "stand-alone character sets cannot be code extensions; ignoring them")
        terms = kept
    return tuple(terms)


_PROBE = "AZaz09^=\\ .-"


@lru_cache(maxsize=64)
def _fallback_codec(term: str) -> str:
    """A Python codec named like an unknown term (e.g. a misspelt "UTF-8"),
    if it is a text encoding that keeps ASCII as ASCII; else Latin-1. (A term
    from a file must not pick "uu", "zlib", "utf-16", "idna" or "unicode_escape".)"""
    try:
        info = codecs.lookup(term)
        if (getattr(info, "_is_text_encoding", False) and "escape" not in info.name and info.name != "idna"
                and _PROBE.encode(info.name) == _PROBE.encode("ascii")
                and _PROBE.encode("ascii").decode(info.name) == _PROBE):
            return info.name
    except (LookupError, ValueError, UnicodeError):  # ValueError: a NUL in the name
        pass
    return "latin_1"


def python_codec(term: str) -> str:
    """The Python codec for one Defined Term used without code extensions."""
    codec = _PLAIN_CODECS.get(term)
    if codec is not None:
        return codec
    sets = _TERM_SETS.get(term)
    if sets is not None:
        return (sets[1] or sets[0] or _ASCII).codec
    return _fallback_codec(term)


@dataclass(frozen=True)
class _Plan:
    """How to decode under one Specific Character Set value (cached per value)."""

    codec: str  # codec for text without escape sequences
    iso2022: bool  # escape sequences must be interpreted
    g0: _CodeSet  # initial G0 (value 1)
    g1: _CodeSet | None  # initial G1 (value 1)
    sets: tuple[_CodeSet, ...]  # every set the terms name, in order (for encoding)


@lru_cache(maxsize=64)
def _plan(charsets: tuple[str, ...]) -> _Plan:
    first = (charsets[0] if charsets else "") or DEFAULT_CHARSET
    iso2022 = (len(charsets) > 1 or first.startswith("ISO 2022")) and first not in _STAND_ALONE
    g0, g1 = _TERM_SETS.get(first, (None, None))
    if g0 is not None and g0.multibyte_g0:
        # A 7-bit multi-byte set (ISO 2022 IR 87, IR 159) is only for values
        # 2..n (PS3.3 C.12.1.1.2). As value 1 it is read as ISO 2022 IR 6
        # plus that set, which escape sequences then invoke: values start in
        # ASCII and return to it before each delimiter, as Orthanc writes them
        # and pydicom reads them. (Starting in the two-byte set turned the
        # ASCII and the delimiters of such values into kanji.)
        g0 = _ASCII
    sets: list[_CodeSet] = []
    for term in charsets:
        for s in _TERM_SETS.get(term, (None, None)):
            if s is not None and s not in sets:
                sets.append(s)
    return _Plan(python_codec(first), iso2022, g0 or _ASCII, g1, tuple(sets))


def _delimiters(vr: str) -> bytes:
    # PS3.5 6.1.2.5.3: the initial set is active again before these.
    if vr == "PN":
        return b"\r\n\x0c\t\\^="
    if vr in _SINGLE_VALUED:
        return b"\r\n\x0c\t"
    return b"\r\n\x0c\t\\"


def _strip(text: str, vr: str) -> str:
    """Remove the VR's non-significant trailing padding (as pydicom 3 does)."""
    if vr == "UR":
        return text.rstrip()
    return text.rstrip("\x00 ")


def _decode_plain(data: bytes, codec: str, what: str) -> str:
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        if codec == "ascii":
            # Default repertoire with 8-bit bytes: read them as Latin-1 (no data loss).
            _warn_once("decode", "ascii", f"non-ASCII bytes in {what} value; decoding as Latin-1")
            return data.decode("latin_1")
        _warn_once("decode", codec, f"undecodable bytes in {what} value for codec {codec!r}; replaced")
        return data.decode(codec, "replace")
    except LookupError:  # pragma: no cover - codecs are validated in _plan
        return data.decode("latin_1")


def decode_text(raw: bytes | bytearray | memoryview, charsets: tuple[str, ...], vr: str) -> str:
    """Decode one element value of a string VR to ``str``.

    ``raw`` is the whole value (all values, backslash separated); the result
    keeps the backslashes and has the VR's trailing padding (spaces, NULs;
    any whitespace for UR) removed.  ``charsets`` is the result of
    :func:`parse_charsets`; it only applies to SH, LO, ST, LT, UC, UT and PN.
    Never raises on bad bytes.
    """
    data = raw if type(raw) is bytes else bytes(raw)
    if vr not in CHARSET_VRS:
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            _warn_once("decode", "ascii-" + vr, f"non-ASCII bytes in {vr} value; replaced")
            text = data.decode("ascii", "replace")
        return _strip(text, vr)
    plan = _plan(charsets) if charsets else _plan((DEFAULT_CHARSET,))
    if not plan.iso2022 or _ESC_B not in data:
        # Fast path: one decode, one strip.
        try:
            text = data.decode(plan.codec).rstrip("\x00 ")
        except UnicodeDecodeError:
            text = _decode_plain(data, plan.codec, vr).rstrip("\x00 ")
        return _from_roman(text, vr) if plan.g0 is _ROMAN else text
    return _decode_iso2022(data, plan, _delimiters(vr), vr).rstrip("\x00 ")


def _from_roman(text: str, vr: str) -> str:
    """Text decoded as ASCII from JIS X 0201-Roman bytes: 07/14 is OVERLINE, and
    05/12 YEN SIGN where it does not separate values (ST, LT, UT)."""
    if vr in _SINGLE_VALUED:
        text = text.replace("\\", "\u00a5")
    return text.replace("~", "\u203e")


def _decode_segment(data: bytes, g0: _CodeSet, g1: _CodeSet | None, vr: str) -> str:
    text = _decode_plain(data, _segment_codec(g1), vr)
    return _from_roman(text, vr) if g0 is _ROMAN else text


def _segment_codec(g1: _CodeSet | None) -> str:
    # With an ASCII-like G0, bytes are decoded by the G1 set's codec (all of
    # them are ASCII supersets); without G1 the default repertoire applies.
    return g1.codec if g1 is not None else "ascii"


def _decode_iso2022(data: bytes, plan: _Plan, delims: bytes, vr: str) -> str:
    """Decode text containing ISO 2022 escape sequences (PS3.5 6.1.2.5)."""
    out: list[str] = []
    g0, g1 = plan.g0, plan.g1
    pieces = data.split(_ESC_B)
    for index, piece in enumerate(pieces):
        if index > 0:
            # piece starts right after an ESC: find the designated set.
            size = 3 if piece[:2] in (b"$(", b"$)") else 2
            code_set = _BY_ESCAPE.get(piece[:size])
            if code_set is None:
                _warn_once("escape", repr(piece[:size]),
                           f"unknown escape sequence ESC {piece[:size]!r} in {vr} value; ignored")
                piece = piece[size:] if len(piece) >= size else b""
            else:
                piece = piece[size:]
                if code_set.g0:
                    g0 = code_set
                else:
                    g1 = code_set
        if not piece:
            continue
        if g0.multibyte_g0:
            # 7-bit two-byte set in G0: every byte pair is a character, so a
            # 0x5C byte here is not a delimiter.  Python's ISO 2022 codecs want
            # the escape sequence in front.
            if piece.isascii():
                out.append(_decode_plain(g0.escape + piece, g0.codec, vr))
            else:
                # 8-bit bytes inside the run belong to G1 (e.g. katakana
                # between kanji without a G0 switch): decode runs apart.
                for run in _RUNS.findall(piece):
                    if run[0] < 0x80:
                        out.append(_decode_plain(g0.escape + run, g0.codec, vr))
                    else:
                        out.append(_decode_plain(run, _segment_codec(g1), vr))
            continue
        # ASCII-like G0: the first delimiter makes the initial sets active again.
        cut = _first_delimiter(piece, delims)
        if cut < 0:
            out.append(_decode_segment(piece, g0, g1, vr))
        else:
            out.append(_decode_segment(piece[:cut], g0, g1, vr))
            g0, g1 = plan.g0, plan.g1       # (never a multi-byte G0: see _plan)
            out.append(_decode_segment(piece[cut:], g0, g1, vr))
    return "".join(out)


def _first_delimiter(piece: bytes, delims: bytes) -> int:
    best = -1
    for d in delims:
        i = piece.find(d)
        if i >= 0 and (best < 0 or i < best):
            best = i
    return best


# --- encoding ---------------------------------------------------------------


def encode_text(value: str, charsets: tuple[str, ...], vr: str) -> bytes:
    """Encode ``value`` (all values, backslash separated) for an element of ``vr``.

    No padding is added.  For ISO 2022 character sets the escape sequences
    are inserted and the initial sets re-invoked before each delimiter and at
    the end, as PS3.5 6.1.2.5.3 requires.  Raises
    :class:`~dicomnet.errors.DicomEncodeError` when a character cannot be
    represented.
    """
    if vr not in CHARSET_VRS:
        return _encode_plain(value, "ascii", vr)
    plan = _plan(charsets) if charsets else _plan((DEFAULT_CHARSET,))
    if not plan.iso2022:
        if plan.g0 is _ROMAN:
            _check_roman(value, vr)
        encoded = _encode_plain(value, plan.codec, vr)
        if plan.codec == "shift_jis" and len(encoded) != len(value):
            # ISO_IR 13 is JIS X 0201 only: one byte per character, no kanji
            raise DicomEncodeError(f"{value!r} has characters outside JIS X 0201 (ISO_IR 13)")
        return encoded
    if value.isascii() and plan.g0 is _ASCII:
        return value.encode("ascii")
    return _encode_iso2022(value, plan, vr)


def _check_roman(value: str, vr: str) -> None:
    """Refuse what JIS X 0201-Roman cannot hold (ISO_IR 13 allows no switching)."""
    if "~" in value:
        raise DicomEncodeError(f"cannot encode '~' of a {vr} value in JIS X 0201-Roman (ISO_IR 13), "
                               "where 07/14 is OVERLINE")
    if vr in _SINGLE_VALUED:
        if "\\" in value:
            raise DicomEncodeError(f"cannot encode '\\' of a {vr} value in JIS X 0201-Roman (ISO_IR 13), "
                                   "where 05/12 is YEN SIGN")
    elif "\u00a5" in value:
        raise DicomEncodeError(f"cannot encode '\u00a5' of a {vr} value in JIS X 0201-Roman (ISO_IR 13): "
                               "05/12 separates its values")


def _encode_plain(value: str, codec: str, vr: str) -> bytes:
    try:
        return value.encode(codec)
    except UnicodeEncodeError as exc:
        raise DicomEncodeError(
            f"cannot encode {value[exc.start:exc.end]!r} of a {vr} value with {codec!r}"
        ) from None


def _encode_in_set(char: str, code_set: _CodeSet) -> bytes | None:
    """Bytes of ``char`` in ``code_set`` (without escape sequence), or None."""
    if code_set.multibyte_g0:
        try:
            encoded = char.encode(code_set.codec)
        except UnicodeEncodeError:
            return None
        # iso2022_jp(_2) yields ESC seq + 2 bytes + ESC ( B; accept only our set.
        if encoded.startswith(code_set.escape) and len(encoded) == len(code_set.escape) + 5:
            return encoded[len(code_set.escape):len(code_set.escape) + 2]
        return None
    try:
        encoded = char.encode(code_set.codec)
    except UnicodeEncodeError:
        return None
    if code_set.g0:
        return encoded if len(encoded) == 1 and encoded[0] < 0x80 else None
    # G1 sets hold only bytes with the high bit set.
    if encoded and all(b >= 0x80 for b in encoded):
        if code_set is _KATAKANA and (len(encoded) != 1 or not 0xA1 <= encoded[0] <= 0xDF):
            return None
        return encoded
    return None


def _roman_fits(char: str, vr: str) -> bool:
    # YEN SIGN is the byte that separates values: only in single-valued VRs
    return char != "\u00a5" or vr in _SINGLE_VALUED


def _encode_iso2022(value: str, plan: _Plan, vr: str) -> bytes:
    out = bytearray()
    delims = _delimiters(vr).decode("ascii")
    g0, g1 = plan.g0, plan.g1
    ascii_g0 = plan.g0 if not plan.g0.multibyte_g0 else _ASCII

    for char in value:
        if char in delims:
            # PS3.5 6.1.2.5.3: the initial sets are active before a delimiter.
            if g0 is not plan.g0:
                out += plan.g0.escape
                g0 = plan.g0
            if g1 is not plan.g1 and plan.g1 is not None:
                out += plan.g1.escape
            g1 = plan.g1
            out += char.encode("ascii")
            continue
        if ord(char) < 0x80:
            if char in "\\~" and (g0 is _ROMAN or (g0.multibyte_g0 and ascii_g0 is _ROMAN)):
                # JIS X 0201-Roman has YEN SIGN and OVERLINE there: switch to ASCII
                if _ASCII not in plan.sets:
                    raise DicomEncodeError(f"cannot encode {char!r} of a {vr} value: JIS X 0201-Roman "
                                           "lacks it and ISO 2022 IR 6 is not among the character sets")
                out += _ASCII.escape
                g0 = _ASCII
            elif g0.multibyte_g0:
                out += ascii_g0.escape
                g0 = ascii_g0
            out += char.encode("ascii")
            continue
        encoded = None
        if g1 is not None:
            encoded = _encode_in_set(char, g1)
            if encoded is not None and g0.multibyte_g0:
                out += ascii_g0.escape
                g0 = ascii_g0
        if encoded is None and g0.multibyte_g0:
            encoded = _encode_in_set(char, g0)
        if encoded is None and g0 is _ROMAN and char in _ROMAN_BYTES and _roman_fits(char, vr):
            encoded = _ROMAN_BYTES[char]
        if encoded is None:
            for code_set in plan.sets:
                if code_set.g0 and not code_set.multibyte_g0:
                    continue
                encoded = _encode_in_set(char, code_set)
                if encoded is not None:
                    out += code_set.escape
                    if code_set.g0:
                        g0 = code_set
                    else:
                        g1 = code_set
                        if g0.multibyte_g0:
                            # keep G1 bytes out of a JIS X 0208/0212 run: readers
                            # (pydicom, Python's iso2022 codecs) expect 7-bit runs
                            out += ascii_g0.escape
                            g0 = ascii_g0
                    break
        if encoded is None and char in _ROMAN_BYTES and _ROMAN in plan.sets:
            if not _roman_fits(char, vr):
                raise DicomEncodeError(f"cannot encode {char!r} of a {vr} value: in JIS X 0201-Roman "
                                       "05/12 would read back as a value separator")
            out += _ROMAN.escape
            g0 = _ROMAN
            encoded = _ROMAN_BYTES[char]
        if encoded is None:
            raise DicomEncodeError(f"cannot encode {char!r} of a {vr} value with {plan.sets and [s.name for s in plan.sets]}")
        out += encoded
    # PS3.5 6.1.2.5.3: value 1's sets are active again before the value ends.
    if g0 is not plan.g0:
        out += plan.g0.escape
    if g1 is not plan.g1 and plan.g1 is not None:
        out += plan.g1.escape
    return bytes(out)
