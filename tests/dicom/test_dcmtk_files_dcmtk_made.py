"""dicomnet's reading of dcmtk-made files cross-checked against dcmtk 3.6.7
(part 1 of the dcmtk file cross-checks), and dicomnet's rewrite of them.

1. dcmtk writes, dicomnet reads: files made by ``dump2dcm`` (from dump texts
   written here), ``dcmconv`` (group lengths, sequence length encodings,
   padding, transfer syntaxes, UTF-8 conversion, no new VRs, no File Meta),
   ``xml2dcm``, ``dcmodify``, ``img2dcm`` (JPEG -> encapsulated) and the
   codecs ``dcmcjpeg``/``dcmcrle``/``dcmcjpls`` (multi-frame, with and without
   a Basic Offset Table, one or several fragments per frame). Every element's
   tag, VR, value length and value is compared, recursively, with what
   ``dcm2xml +Wb`` (the DCMTK XML format with binary values in hex) says;
   binary values also with ``dcm2json``'s InlineBinary. Pixels: ``pixel_array``
   against the pixel words dcmtk prints and against ``dcmdjpeg``/``dcmdrle``/
   ``dcmdjpls`` output; each encapsulated frame from ``frames()`` is wrapped
   into a single-frame file and decompressed by dcmtk (RLE frames are also
   decoded here) and must give that frame's pixels.
2. Every dcmtk-made file of part 1 is rewritten by dicomnet, unchanged and
   transcoded, and dcmtk must read back the same values; group lengths of a
   rewrite are what dcmtk computes.

Files written by dicomnet from Python: test_dcmtk_files_dicomnet_made.py;
edge cases: test_dcmtk_files_edge_cases.py. The files, the comparisons and
the dcmtk quirks they work around: _dcmtk_files.py.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy
import pytest

import dicomnet
from dicomnet.dicom.dataset import Dataset
from dicomnet.dicom.pixels import PixelDataError
from dicomnet.dicom.writer import encode_dataset, encode_file_meta

from tests.dicom._dcmtk_files import (BE, CASES, DEFLATED, ENCAPSULATED, IMAGES, IMPLICIT, LE, NATIVE_CASES,
                                      PIXEL_DATA, RLE, Maker, compare_file, compare_json, compare_views, dcmtk_json,
                                      dcmtk_view, pixels, theirs_values, tool)


# =================================================== 1. dcmtk writes, dicomnet reads


@pytest.mark.parametrize("case", list(CASES))
def test_dicomnet_reads_what_dcmtk_reads(make: Maker, case: str) -> None:
    """Every element: tag, VR, value length (or undefined length), value; File Meta too."""
    path = make(case)
    problems = compare_file(path, make.view(case))
    assert not problems, "\n".join(problems[:30])


@pytest.mark.parametrize("case", NATIVE_CASES)
def test_values_match_dcm2json(make: Maker, case: str) -> None:
    """dcm2json as a second oracle: numbers exact, binary values as bytes (InlineBinary)."""
    path = make(case)
    problems = compare_json(dicomnet.read_file(path), dcmtk_json(path))
    assert not problems, "\n".join(problems[:30])


@pytest.mark.parametrize("case", ["dump2dcm +te", "dump2dcm +tb", "dump2dcm +ti -e", "dump2dcm +td", "xml2dcm"])
def test_known_values_of_the_rich_dump(make: Maker, case: str) -> None:
    """The values written in RICH_DUMP, exactly as dicomnet gives them (not through dcmtk's printing)."""
    ds = dicomnet.read_file(make(case))
    assert ds.ReferringPhysicianName == "Yamada^Tarou^^Dr.^III=山田^太郎=やまだ^たろう"
    assert ds.ReferringPhysicianName.ideographic == "山田^太郎"
    assert ds.ReferringPhysicianName.phonetic == "やまだ^たろう"
    assert ds.ReferringPhysicianName.name_suffix == "III"
    assert ds.PatientName == "Müller^Jürgen"
    assert ds.PatientBirthDate == "" and ds.SliceThickness is None
    assert ds[0x00720060].value == [0x00100010, 0x7FE00010]
    assert ds[0x00720064].value == [1, -2, 2147483647]
    assert ds[0x00720066].value == ["a", "b c"]
    assert ds[0x0072006E].value == "st\\with backslash"
    assert ds[0x00720070].value == "ut\\text ü"
    assert ds[0x00720072].value == [1.5, -300.0, 0.0001]
    od = ds[0x00720073].value.tolist()
    assert od[0] == 2.5
    # xml2dcm reads dcm2xml's -1.0000000000000001e+300 back as -9.999999999999999e+299.
    assert od[1] == (-9.999999999999999e+299 if case == "xml2dcm" else -1e300)
    fd = ds[0x00720074].value.tolist()
    assert fd[0] == 3.141592653589793
    assert fd[1] == (0.0 if case == "xml2dcm" else 1e-300)   # xml2dcm: see _dcmtk_files.py's docstring
    assert ds[0x00720081].value.tolist() == [2**64 - 1, 1]
    assert ds[0x00720082].value.tolist() == [-2**63, 5]
    assert ds[0x00720083].value.tolist() == [2**64 - 1, 0]
    assert ds[0x00720067].value.tolist() == [1.5, -2.5, 3.0]
    assert ds[0x00720069].value.tolist() == [1, 0xFFFF, 0x1234]
    assert bytes(ds[0x0072006D].value) == bytes(range(6))
    seq = ds[0x00720080].value
    assert [len(item) for item in seq] == [2, 0]
    assert seq[0].ContentSequence[0].TextValue == "deep text"
    assert ds.ReferencedImageSequence == []
    private = ds[0x00291010].value
    assert len(private) == 2 and len(private[1]) == 0
    if case != "dump2dcm +ti -e":
        assert private[0][0x00291001].value == "inner private"
        assert ds[0x00291004].value.tolist() == [7, 8]
    else:   # Implicit VR: no private dictionary, the bytes
        assert private[0][0x00291001].value == b"inner private "
        assert ds[0x00291004].value == b"\x07\x00\x08\x00"
    assert ds.pixel_array.tolist() == [[[1, 2, 3], [4, 5, 6]], [[7, 8, 9], [10, 11, 0xFFF]]]


PIXEL_CASES = [c for c in NATIVE_CASES if c.split()[0] in IMAGES] + ["dcmdjpeg", "dcmdrle", "dcmdjpls"]


@pytest.mark.parametrize("case", PIXEL_CASES)
def test_native_pixel_array_matches_dcmtk(make: Maker, case: str) -> None:
    """pixel_array and frames() of native data: dcmtk's pixel words, in the shape the
    pixel module gives, and the pixels the file was made from."""
    path = make(case)
    ds = dicomnet.read_file(path)
    node = make.view(case).data[PIXEL_DATA]
    stored = theirs_values(node.vr, node.text)
    arr = ds.pixel_array
    if node.vr == "OW" and arr.dtype.itemsize == 1:   # 8-bit data in OW words (Implicit VR)
        stored = numpy.array(stored, "<u2").tobytes()
    words = list(stored) if isinstance(stored, bytes) else stored
    frames, rows, cols = ds.NumberOfFrames or 1, ds.Rows, ds.Columns
    samples = ds.get("SamplesPerPixel") or 1
    assert arr.shape == ((frames, rows, cols) if samples == 1 else (frames, rows, cols, samples))
    assert arr.ravel().tolist() == words[:arr.size]
    assert [f.tolist() for f in ds.frames()] == arr.tolist()
    source = case.split()[0]
    if source in IMAGES:   # and the pixels the file was made from
        uid, r, c, n, bits, s = IMAGES[source]
        assert arr.reshape(n, r, c, s).tolist() == pixels(n, r, c, s, bits, seed=len(source)).tolist()


def rle_decode(frame: bytes, rows: int, cols: int, samples: int, bits: int) -> numpy.ndarray:
    """Decode one RLE Lossless frame (PS3.5 Annex G): a header of 16 UL, then
    PackBits segments, most significant byte first, one per byte of each sample."""
    count, *offsets = struct.unpack_from("<16I", frame)
    per_sample = bits // 8
    assert count == samples * per_sample
    ends = offsets[1:count] + [len(frame)]
    planes = []
    for start, end in zip(offsets[:count], ends):
        out = bytearray()
        pos = start
        while pos < end and len(out) < rows * cols:
            n = frame[pos] - 256 if frame[pos] > 127 else frame[pos]
            pos += 1
            if n >= 0:
                out += frame[pos:pos + n + 1]
                pos += n + 1
            elif n != -128:
                out += frame[pos:pos + 1] * (1 - n)
                pos += 1
        assert len(out) == rows * cols
        planes.append(numpy.frombuffer(bytes(out), numpy.uint8).astype(numpy.uint32))
    values = []
    for s in range(samples):
        value = numpy.zeros(rows * cols, numpy.uint32)
        for b in range(per_sample):
            value = (value << 8) | planes[s * per_sample + b]
        values.append(value)
    return numpy.stack(values, axis=-1).reshape(rows, cols, samples)


def _expected_frames(frags: list[bytes], frames: int) -> list[bytes] | None:
    """Frames from dcmtk's fragments: by the Basic Offset Table; without one, one
    fragment a frame (None when that cannot be told)."""
    bot, rest = frags[0], frags[1:]
    if not bot:
        if len(rest) == frames or frames == 1:
            return rest if len(rest) == frames else [b"".join(rest)]
        return None
    offsets = list(struct.unpack(f"<{len(bot) // 4}I", bot))
    starts, pos = {}, 0
    for n, frag in enumerate(rest):
        starts[pos] = n
        pos += 8 + len(frag)
    bounds = [starts[o] for o in offsets] + [len(rest)]
    return [b"".join(rest[a:b]) for a, b in zip(bounds, bounds[1:])]


def single_frame_file(ds: Dataset, frame: bytes, path: Path) -> Path:
    """``ds`` with ``frame`` as its only (encapsulated) frame: no offset table, one fragment."""
    copy = dicomnet.read_file(ds.filename)
    del copy[PIXEL_DATA]
    if "NumberOfFrames" in copy:
        copy.NumberOfFrames = 1
    ts = ds.transfer_syntax
    frame = frame + b"\0" * (len(frame) % 2)
    pixel = (struct.pack("<HH2s2xI", 0x7FE0, 0x0010, b"OB", 0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE000, 0)
             + struct.pack("<HHI", 0xFFFE, 0xE000, len(frame)) + frame + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    path.write_bytes(bytes(128) + b"DICM" + bytes(encode_file_meta(copy, ts)) + bytes(encode_dataset(copy, ts)) + pixel)
    return path


@pytest.mark.parametrize("case", list(ENCAPSULATED))
def test_encapsulated_frames_decompress_like_dcmtk(make: Maker, case: str, tmp_path: Path) -> None:
    """frames() gives each frame's compressed bytes: as dcmtk's fragments (grouped by the
    offset table), and each one, decompressed alone by dcmtk, gives that frame's pixels."""
    path = make(case)
    decompressor, lossless_source = ENCAPSULATED[case]
    ds = dicomnet.read_file(path)
    assert ds["PixelData"].VR == "OB"
    with pytest.raises(PixelDataError):
        ds.pixel_array
    nframes = ds.get("NumberOfFrames") or 1
    frags = make.view(case).data[PIXEL_DATA].fragments
    expected = _expected_frames(frags, nframes)
    if expected is None:
        # Several fragments a frame and no offset table: dicomnet does not look into
        # the compressed stream to find where frames start (dcmtk's decoders do).
        with pytest.raises(PixelDataError, match="cannot tell the frames apart"):
            list(ds.frames())
        return
    frames = [bytes(f) for f in ds.frames()]
    assert frames == expected
    whole = tmp_path / "whole.dcm"
    tool(decompressor, path, whole)
    reference = dicomnet.read_file(whole).pixel_array
    if lossless_source is not None:
        assert reference.tolist() == dicomnet.read_file(make(lossless_source)).pixel_array.tolist()
    rows, cols, samples = ds.Rows, ds.Columns, ds.SamplesPerPixel
    for n in sorted({0, 1, len(frames) - 1} & set(range(len(frames)))):
        one = single_frame_file(ds, frames[n], tmp_path / f"frame{n}.dcm")
        out = tmp_path / f"frame{n}-native.dcm"
        tool(decompressor, one, out)
        assert dicomnet.read_file(out).pixel_array[0].tolist() == reference[n].tolist(), f"frame {n}"
        if ds.transfer_syntax == RLE:
            decoded = rle_decode(frames[n], rows, cols, samples, ds.BitsAllocated)
            assert decoded.reshape(reference[n].shape).tolist() == reference[n].tolist(), f"frame {n}"


def test_implicit_vr_8_bit_pixel_data_is_ow(make: Maker) -> None:
    """PS3.5 A.1 c): in Implicit VR Little Endian, (7FE0,0010) Pixel Data has the VR OW
    whatever Bits Allocated (OB is for Explicit VR, A.2). dcmtk reports OW."""
    path = make("mf8 +ti")
    assert make.view("mf8 +ti").data[PIXEL_DATA].vr == "OW"
    assert dicomnet.read_file(path)["PixelData"].VR == "OW"


# =================================================== 2. dicomnet rewrites dcmtk's files

REWRITE_TARGETS = ["unchanged", LE, IMPLICIT, BE, DEFLATED]


def _rewrite_params() -> list:
    params = []
    for case in CASES:
        for target in REWRITE_TARGETS if case not in ENCAPSULATED else ["unchanged"]:
            name = {LE: "LE", IMPLICIT: "implicit", BE: "BE", DEFLATED: "deflated"}.get(target, target)
            params.append(pytest.param(case, target, id=f"{case}-{name}"))
    return params


@pytest.mark.parametrize("case,target", _rewrite_params())
def test_dcmtk_reads_dicomnet_rewrite_the_same(make: Maker, case: str, target: str, tmp_path: Path) -> None:
    """A dcmtk-made file read and written by dicomnet (as it is, or transcoded) reads
    in dcmtk with the same elements and values."""
    path = make(case)
    ds = dicomnet.read_file(path)
    out = tmp_path / "rewrite.dcm"
    dicomnet.write_file(out, ds, None if target == "unchanged" else target)
    original = make.view(case)
    rewrite = dcmtk_view(out)
    source_implicit = ds.transfer_syntax == IMPLICIT
    problems = compare_views(original, rewrite, implicit=target == IMPLICIT, source_implicit=source_implicit)
    assert not problems, "\n".join(problems[:30])
    expected_ts = ds.transfer_syntax if target == "unchanged" else target
    assert rewrite.xfer == expected_ts
    meta = rewrite.meta
    assert meta[0x00020010].text == expected_ts
    assert meta[0x00020002].text == original.data[0x00080016].text
    assert meta[0x00020003].text == original.data[0x00080018].text
    if target == "unchanged" and ds.file_meta is not None and 0x00020000 in ds.file_meta:
        # Untouched: the very bytes (preamble, File Meta and data set); a Deflated
        # data set is compressed anew, so there the inflated bytes.
        if expected_ts != DEFLATED:
            assert out.read_bytes() == path.read_bytes()
        else:
            start = 132 + 12 + ds.file_meta.FileMetaInformationGroupLength
            assert out.read_bytes()[:start] == path.read_bytes()[:start]
            assert zlib.decompress(out.read_bytes()[start:], -15) == zlib.decompress(path.read_bytes()[start:], -15)


@pytest.mark.parametrize("case,undefined", [("dump2dcm +te +g", False), ("dump2dcm +ti +g -e", True),
                                            ("dcmconv +g", False)])
@pytest.mark.parametrize("target", ["unchanged", LE, IMPLICIT, BE, DEFLATED])
def test_group_lengths_of_a_rewrite_are_what_dcmtk_computes(make: Maker, case: str, undefined: bool,
                                                            target: str, tmp_path: Path) -> None:
    """(gggg,0000) after dicomnet's rewrite equals what dcmconv computes for the same bytes
    (PS3.5 7.2: the length of the rest of the group)."""
    ds = dicomnet.read_file(make(case))
    out = tmp_path / "rewrite.dcm"
    dicomnet.write_file(out, ds, None if target == "unchanged" else target)
    again = tmp_path / "recalculated.dcm"
    tool("dcmconv", "+g=", "-e" if undefined else "+e", out, again)
    ours, theirs = dcmtk_view(out), dcmtk_view(again)
    lengths = {t: n.text for t, n in ours.data.items() if not t & 0xFFFF}
    assert len(lengths) >= 5
    assert lengths == {t: n.text for t, n in theirs.data.items() if not t & 0xFFFF}
    assert ours.meta[0x00020000].text == theirs.meta[0x00020000].text
