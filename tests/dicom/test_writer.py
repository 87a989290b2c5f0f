"""Encoding data sets and writing Part 10 files (dicomnet/dicom/writer.py).

Transcoding among the uncompressed syntaxes both ways, datasets built from
scratch, and pydicom reading what we wrote. (Byte-identical rewrites of
pydicom's own test files are covered by test_pydicom_conformance.py.)
"""
from __future__ import annotations

import itertools
import struct

import numpy
import pytest

from dicomnet.dicom.dataset import Dataset, Sequence
from dicomnet.dicom.reader import read_dataset, read_file
from dicomnet.dicom.writer import encode_dataset, encode_file_meta, write_file
from dicomnet._version import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dicomnet.errors import DicomParseError

LE, IMPLICIT, BE, DEFLATED = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"
UNCOMPRESSED = (LE, IMPLICIT, BE)
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def plain(value):
    """A value in a form that compares by content (arrays and bytes as lists)."""
    if isinstance(value, Sequence) or (isinstance(value, list) and value and isinstance(value[0], Dataset)):
        return [as_dict(item) for item in value]
    if isinstance(value, numpy.ndarray):
        return value.tolist()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return list(bytes(value))
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is not None and type(value).__name__ == "PersonName":
        return str(value)
    return value


def as_dict(ds: Dataset) -> dict:
    return {elem.tag: (elem.VR, plain(elem.value)) for elem in ds}


def code_item(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def sample_dataset() -> Dataset:
    """Every kind of value the uncompressed syntaxes must carry, with dictionary VRs
    (so Implicit VR reads them back with the same VR), and sequences 3 deep."""
    ds = Dataset()
    ds.SOPClassUID = CT_IMAGE
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.2.1125.1.1"
    ds.PatientName = "Doe^John"
    ds.PatientID = "ID-42"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SliceThickness = 1.25
    ds.ImagePositionPatient = [-125.0, -120.5, 30.0]
    ds.InstanceNumber = 7
    ds.Rows = 2
    ds.Columns = 3
    ds.AcquisitionMatrix = [0, 256, 256, 0]                      # US, 4 values
    ds.add_new(0x00280009, "AT", [0x00181063, 0x00181065])       # Frame Increment Pointer, 2 tags
    ds.DiffusionGradientOrientation = [0.5, -0.25, 1e-300]       # FD, 3 values
    ds.RecommendedDisplayFrameRateInFloat = 29.5                 # FL
    ds.ReferencePixelX0 = -40000                                 # SL
    ds.RedPaletteColorLookupTableData = numpy.array([0, 1, 0xFFFF, 0x1234], numpy.uint16)  # OW
    ds.EncapsulatedDocument = b"%PDF-1.4\x00\xff"                # OB (even length: no pad byte)
    ds.SpectroscopyData = numpy.array([1.5, -2.0], numpy.float32)  # OF
    leaf = Dataset()
    leaf.ConceptNameCodeSequence = [code_item("121071", "Finding")]
    leaf.ValueType = "CODE"
    middle = Dataset()
    middle.ValueType = "CONTAINER"
    middle.ContentSequence = Sequence([leaf, Dataset()])         # an empty item too
    ds.ContentSequence = [middle]
    ds.ReferencedImageSequence = []                              # an empty sequence
    return ds


def test_sample_values_survive_every_uncompressed_syntax_and_deflate():
    ds = sample_dataset()
    expected = as_dict(ds)
    for ts in UNCOMPRESSED + (DEFLATED,):
        back = read_dataset(bytes(encode_dataset(ds, ts)), transfer_syntax=ts)
        assert as_dict(back) == expected, ts
    deep = back.ContentSequence[0].ContentSequence[0].ConceptNameCodeSequence[0]
    assert deep.CodeMeaning == "Finding"


@pytest.mark.parametrize("src,dst", list(itertools.product(UNCOMPRESSED, repeat=2)))
def test_transcoding_both_ways(src, dst):
    ds = sample_dataset()
    read_back = read_dataset(bytes(encode_dataset(ds, src)), transfer_syntax=src)
    transcoded = bytes(encode_dataset(read_back, dst))
    # The dataset read in src encodes to dst exactly like the original would.
    assert transcoded == bytes(encode_dataset(ds, dst))
    again = read_dataset(transcoded, transfer_syntax=dst)
    assert as_dict(again) == as_dict(ds)
    # ... and back to where it came from, byte for byte.
    assert bytes(encode_dataset(again, src)) == bytes(encode_dataset(ds, src))


def test_big_endian_bytes_on_the_wire():
    ds = Dataset()
    ds.Rows = 0x0102
    ds.add_new(0x00280009, "AT", 0x00181063)
    ds.RedPaletteColorLookupTableData = numpy.array([0x0A0B], numpy.uint16)
    data = bytes(encode_dataset(ds, BE))
    assert data == (b"\x00\x28\x00\x09AT\x00\x04\x00\x18\x10\x63"
                    b"\x00\x28\x00\x10US\x00\x02\x01\x02"
                    b"\x00\x28\x12\x01OW\x00\x00\x00\x00\x00\x02\x0a\x0b")
    implicit = bytes(encode_dataset(ds, IMPLICIT))
    assert implicit[:12] == b"\x28\x00\x09\x00\x04\x00\x00\x00\x18\x00\x63\x10"


UNDEF = 0xFFFFFFFF


def _hand_built_undefined(little: bool) -> bytes:
    """Explicit VR: an undefined-length sequence holding a defined and an undefined item,
    the second holding a defined-length sequence."""
    o = "<" if little else ">"

    def elem(g, e, vr, value):
        return struct.pack(o + "HH2sH", g, e, vr, len(value)) + value

    def hdr(g, e, n):
        return struct.pack(o + "HHI", g, e, n)

    code = elem(0x0008, 0x0100, b"SH", b"T-1 ")
    inner_item = hdr(0xFFFE, 0xE000, len(code)) + code
    inner = struct.pack(o + "HH2s2xI", 0x0008, 0x2218, b"SQ", len(inner_item)) + inner_item
    item1 = elem(0x0008, 0x0104, b"LO", b"one ")
    return (elem(0x0008, 0x0060, b"CS", b"CT")
            + elem(0x0028, 0x0010, b"US", struct.pack(o + "H", 4))
            + struct.pack(o + "HH2s2xI", 0x0040, 0xA730, b"SQ", UNDEF)
            + hdr(0xFFFE, 0xE000, len(item1)) + item1
            + hdr(0xFFFE, 0xE000, UNDEF) + inner + hdr(0xFFFE, 0xE00D, 0)
            + hdr(0xFFFE, 0xE0DD, 0))


@pytest.mark.parametrize("little,ts", [(True, LE), (False, BE)])
def test_undefined_and_defined_lengths_read_and_keep_their_form(little, ts):
    data = _hand_built_undefined(little)
    ds = read_dataset(data, transfer_syntax=ts)
    seq = ds.ContentSequence
    assert seq[0].CodeMeaning == "one" and seq[1].AnatomicRegionSequence[0].CodeValue == "T-1"
    assert ds.Rows == 4 and ds.Modality == "CT"
    assert bytes(encode_dataset(ds, ts)) == data  # untouched: the very bytes
    for dst in UNCOMPRESSED:
        out = bytes(encode_dataset(ds, dst))
        back = read_dataset(out, transfer_syntax=dst)
        assert as_dict(back) == as_dict(ds)
        # The undefined-length sequence stays undefined length in the new syntax.
        assert back._index.flags(back._raw[0x0040A730]) & 1
        assert bytes(encode_dataset(back, ts)) == data


def test_modified_nested_item_is_reencoded():
    data = _hand_built_undefined(True)
    ds = read_dataset(data, transfer_syntax=LE)
    ds.ContentSequence[1].AnatomicRegionSequence[0].CodeValue = "T-22"
    out = bytes(encode_dataset(ds, LE))
    assert out != data
    back = read_dataset(out, transfer_syntax=LE)
    assert back.ContentSequence[1].AnatomicRegionSequence[0].CodeValue == "T-22"
    assert back.ContentSequence[0].CodeMeaning == "one"


def test_unmodified_encode_is_a_view_of_the_source():
    data = bytearray(bytes(encode_dataset(sample_dataset(), LE)))
    ds = read_dataset(data, transfer_syntax=LE)
    out = encode_dataset(ds, LE)
    assert isinstance(out, memoryview) and bytes(out) == bytes(data)
    data[-1] ^= 0xFF
    assert out[-1] == data[-1]  # no copy was made


def test_write_file_from_scratch_file_meta(tmp_path):
    ds = sample_dataset()
    path = tmp_path / "new.dcm"
    write_file(path, ds, LE)
    raw = path.read_bytes()
    assert raw[:128] == bytes(128) and raw[128:132] == b"DICM"
    # (0002,0000) UL 4: the group length counts the bytes of the rest of the group.
    assert raw[132:140] == b"\x02\x00\x00\x00UL\x04\x00"
    group_length = struct.unpack("<I", raw[140:144])[0]
    data_set_start = 144 + group_length
    assert raw[data_set_start:data_set_start + 2] != b"\x02\x00"
    back = read_file(path)
    meta = back.file_meta
    assert meta._index.stop == data_set_start
    assert bytes(meta.FileMetaInformationVersion) == b"\x00\x01"
    assert meta.MediaStorageSOPClassUID == CT_IMAGE
    assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert meta.TransferSyntaxUID == LE
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert meta.ImplementationVersionName == IMPLEMENTATION_VERSION_NAME
    assert back.transfer_syntax == LE
    assert as_dict(back) == as_dict(ds)
    assert not list(tmp_path.glob(".dicomnet-*"))  # the temporary file was renamed away


def test_file_meta_of_a_read_file_is_reused_or_rebuilt():
    ds = sample_dataset()
    blob = bytes(128) + b"DICM" + bytes(encode_file_meta(ds, LE)) + bytes(encode_dataset(ds, LE))
    back = read_file(blob)
    assert bytes(encode_file_meta(back, LE)) == blob[132:back.file_meta._index.stop]
    meta_be = read_file(bytes(128) + b"DICM" + bytes(encode_file_meta(back, BE)) + bytes(encode_dataset(back, BE)))
    assert meta_be.file_meta.TransferSyntaxUID == BE
    assert meta_be.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert as_dict(meta_be) == as_dict(ds)


def _compare_with_pydicom(ours: Dataset, theirs, little: bool, where: str = "") -> None:
    assert sorted(int(e.tag) for e in theirs) == ours.tags(), where
    for elem in theirs:
        tag = int(elem.tag)
        mine = ours[tag]
        assert mine.VR == elem.VR, f"{where}{elem.tag}"
        if elem.VR == "SQ":
            assert len(mine.value) == len(elem.value)
            for n, (a, b) in enumerate(zip(mine.value, elem.value)):
                _compare_with_pydicom(a, b, little, f"{where}{elem.tag}[{n}].")
            continue
        theirs_value = elem.value
        if elem.VR in ("OB", "OW", "OF", "OD", "OL", "OV"):
            width = {"OB": 1, "OW": 2, "OF": 4, "OD": 8, "OL": 4, "OV": 8}[elem.VR]
            kinds = {"OB": "u1", "OW": "u2", "OF": "f4", "OD": "f8", "OL": "u4", "OV": "u8"}
            # pydicom keeps bulk values as the raw bytes, in the file's byte order.
            dtype = numpy.dtype(kinds[elem.VR]).newbyteorder("<" if little else ">")
            theirs_value = numpy.frombuffer(theirs_value, dtype, len(theirs_value) // width)
        assert plain(mine.value) == plain(list(theirs_value) if isinstance(theirs_value, (list, tuple)) or
                                          type(theirs_value).__name__ == "MultiValue" else theirs_value), \
            f"{where}{elem.tag}"


@pytest.mark.parametrize("ts", UNCOMPRESSED + (DEFLATED,))
def test_pydicom_reads_what_we_write(tmp_path, ts):
    pydicom = pytest.importorskip("pydicom")
    ds = sample_dataset()
    path = tmp_path / "ours.dcm"
    write_file(path, ds, ts)
    theirs = pydicom.dcmread(path)
    assert theirs.file_meta.TransferSyntaxUID == ts
    assert theirs.file_meta.MediaStorageSOPClassUID == CT_IMAGE
    assert theirs.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert theirs.file_meta.FileMetaInformationVersion == b"\x00\x01"
    assert theirs.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert theirs.file_meta.FileMetaInformationGroupLength == read_file(path).file_meta._index.stop - 144
    ours = read_file(path)
    _compare_with_pydicom(ours, theirs, ts != BE)


def test_values_pydicom_would_write_the_same(tmp_path):
    """pydicom writes the same data set to the very same bytes (both follow PS3.5)."""
    pydicom = pytest.importorskip("pydicom")
    import io

    ds = sample_dataset()
    blob = bytes(128) + b"DICM" + bytes(encode_file_meta(ds, LE)) + bytes(encode_dataset(ds, LE))
    theirs = pydicom.dcmread(io.BytesIO(blob))
    buf = io.BytesIO()
    theirs.save_as(buf, enforce_file_format=False)
    written = buf.getvalue()
    ours = bytes(encode_dataset(ds, LE))
    assert written.endswith(ours)


def test_write_file_rejects_text_too_long_for_16_bit_length(tmp_path):
    ds = Dataset()
    ds.add_new(0x00091010, "LO", "x" * 70000)
    with pytest.raises(ValueError):
        write_file(tmp_path / "bad.dcm", ds, LE)
    assert not list(tmp_path.iterdir())


def test_rewriting_a_file_whose_meta_has_a_binary_transfer_syntax_uid(tmp_path):
    # A File Meta (0002,0010) sent as OW decodes to an array; `array or ""` raised ValueError.
    group = (struct.pack("<HH2s2xI", 0x0002, 0x0001, b"OB", 2) + b"\x00\x01"
             + struct.pack("<HH2s2xI", 0x0002, 0x0010, b"OW", 4) + b"\x01\x00\x02\x00")
    ds = read_file(bytes(128) + b"DICM" + group + bytes(encode_dataset(sample_dataset(), LE)))
    write_file(tmp_path / "fixed.dcm", ds, LE)
    back = read_file(tmp_path / "fixed.dcm")
    assert back.file_meta.TransferSyntaxUID == LE and back.file_meta[0x00020010].VR == "UI"
    assert back.file_meta.MediaStorageSOPInstanceUID == sample_dataset().SOPInstanceUID
    assert as_dict(back) == as_dict(sample_dataset())


def test_rewriting_a_file_meta_keeps_elements_we_would_not_encode_as_read(tmp_path):
    # Found by fuzzing: an element of the File Meta that reads fine but is
    # outside what we write (here an IS beyond 2**31) was re-encoded from its
    # decoded value when the group was rebuilt, and format_is raised a bare
    # ValueError out of write_file. Kept elements are now copied as read.
    odd = b"2671067103"
    group = (struct.pack("<HH2s2xI", 0x0002, 0x0001, b"OB", 2) + b"\x00\x01"
             + struct.pack("<HH2sH", 0x0002, 0x0010, b"UI", 20) + LE.encode() + b"\x00"
             + struct.pack("<HH2sH", 0x0002, 0x0102, b"IS", len(odd)) + odd)
    ds = read_file(bytes(128) + b"DICM" + group + bytes(encode_dataset(sample_dataset(), LE)))
    assert ds.file_meta[0x00020102].value == 2671067103
    write_file(tmp_path / "be.dcm", ds, BE)                 # another syntax: the group is rebuilt
    back = read_file(tmp_path / "be.dcm")
    assert back.file_meta.TransferSyntaxUID == BE
    assert back.file_meta[0x00020102].VR == "IS" and back.file_meta[0x00020102].value == 2671067103
    assert back.file_meta.MediaStorageSOPInstanceUID == sample_dataset().SOPInstanceUID
    assert as_dict(back) == as_dict(sample_dataset())


def test_odd_length_numeric_from_implicit_vr_cannot_be_byte_swapped():
    # Found by fuzzing: Implicit VR carries no VR, so an odd-length US is only caught when
    # decoded; transcoding it to big endian raised a bare ValueError from numpy.
    data = struct.pack("<HHI", 0x0008, 0x0060, 2) + b"CT" + struct.pack("<HHI", 0x0028, 0x0010, 3) + b"\x01\x02\x03"
    ds = read_dataset(data, transfer_syntax=IMPLICIT)
    with pytest.raises(DicomParseError):
        encode_dataset(ds, BE)


# ----------------------------------------------- character sets of sequence items
# An item without its own Specific Character Set is in the one of the data set
# it is in (PS3.3 C.12.1.1.2): where it is *written*, not where it was made.
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
SPS = "ScheduledProcedureStepSequence"


def _step(physician: str) -> Dataset:
    item = Dataset()
    item.Modality = "CT"
    item.ScheduledPerformingPhysicianName = physician
    return item


def _item_name(data, ts=EXPLICIT) -> bytes:
    """The raw bytes of the first step item's physician name in ``data``."""
    ds = read_dataset(bytes(data), transfer_syntax=ts)
    item = ds[SPS].value[0]
    return bytes(item._index.value_bytes(item._raw[0x00400006]))


def test_an_appended_item_is_written_in_the_data_sets_character_set():
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ScheduledProcedureStepSequence = []
    ds.ScheduledProcedureStepSequence.append(_step("Schäfer^Jürgen"))   # pydicom's way
    assert _item_name(encode_dataset(ds, EXPLICIT)) == "Schäfer^Jürgen".encode("latin-1")


def test_items_follow_a_changed_character_set_after_an_encoding():
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ScheduledProcedureStepSequence = [_step("Schäfer^Jürgen")]
    assert _item_name(encode_dataset(ds, EXPLICIT)) == "Schäfer^Jürgen".encode()
    ds.SpecificCharacterSet = "ISO_IR 100"
    assert _item_name(encode_dataset(ds, EXPLICIT)) == "Schäfer^Jürgen".encode("latin-1")


def _latin1_entry(ts=EXPLICIT) -> Dataset:
    src = Dataset()
    src.SpecificCharacterSet = "ISO_IR 100"
    src.PatientName = "Müller^Hans"
    src.ScheduledProcedureStepSequence = [_step("Schäfer^Jürgen")]
    return read_dataset(bytes(encode_dataset(src, ts)), transfer_syntax=ts)


@pytest.mark.parametrize("ts", [EXPLICIT, IMPLICIT])
def test_items_read_in_one_character_set_are_transcoded_into_another(ts):
    entry = _latin1_entry(ts)
    rsp = Dataset()
    rsp.SpecificCharacterSet = "ISO_IR 192"
    rsp.ScheduledProcedureStepSequence = entry.ScheduledProcedureStepSequence
    assert _item_name(encode_dataset(rsp, ts), ts) == "Schäfer^Jürgen".encode()
    # The entry the items came from is untouched: it still reads and writes as Latin-1.
    assert entry[SPS].value[0].ScheduledPerformingPhysicianName == "Schäfer^Jürgen"
    assert _item_name(encode_dataset(entry, ts), ts) == "Schäfer^Jürgen".encode("latin-1")


def test_a_read_data_set_given_another_character_set_is_transcoded():
    ds = _latin1_entry()
    ds.SpecificCharacterSet = "ISO_IR 192"      # before any value was decoded
    assert ds.PatientName == "Müller^Hans"        # the bytes are still read as Latin-1
    data = bytes(encode_dataset(ds, EXPLICIT))
    back = read_dataset(data, transfer_syntax=EXPLICIT)
    assert back.SpecificCharacterSet == "ISO_IR 192"
    assert back.PatientName == "Müller^Hans"
    assert "Müller^Hans".encode() in data and "Schäfer^Jürgen".encode() in data
    assert _item_name(data) == "Schäfer^Jürgen".encode()


def test_deleting_the_character_set_keeps_the_values_as_read():
    ds = _latin1_entry()
    del ds.SpecificCharacterSet
    assert ds.PatientName == "Müller^Hans"
    assert ds[SPS].value[0].ScheduledPerformingPhysicianName == "Schäfer^Jürgen"
    with pytest.raises(Exception, match="cannot encode"):   # no longer encodable: ASCII only
        encode_dataset(ds, EXPLICIT)


def test_iso_2022_text_is_transcoded_not_copied():
    src = Dataset()
    src.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    src.PatientName = "Yamada^Tarou=山田^太郎"
    src.ScheduledProcedureStepSequence = [_step("佐藤^花子")]
    jis = read_dataset(bytes(encode_dataset(src, EXPLICIT)), transfer_syntax=EXPLICIT)
    assert b"\x1b$B" in jis._index.value_bytes(jis._raw[0x00100010])
    out = Dataset()
    out.SpecificCharacterSet = "ISO_IR 192"
    out.ScheduledProcedureStepSequence = jis.ScheduledProcedureStepSequence
    out.PatientName = jis.PatientName
    data = bytes(encode_dataset(out, EXPLICIT))
    assert _item_name(data).rstrip(b" ") == "佐藤^花子".encode()
    assert read_dataset(data, transfer_syntax=EXPLICIT).PatientName == "Yamada^Tarou=山田^太郎"


def test_ascii_items_are_copied_as_read_across_character_sets():
    entry = _latin1_entry()
    item = entry[SPS].value[0]
    rsp = Dataset()
    rsp.SpecificCharacterSet = "ISO_IR 192"
    rsp.ScheduledProcedureStepSequence = [item]
    data = bytes(encode_dataset(rsp, EXPLICIT))
    back = read_dataset(data, transfer_syntax=EXPLICIT)[SPS].value[0]
    assert back.Modality == "CT" and back.ScheduledPerformingPhysicianName == "Schäfer^Jürgen"


# ------------------------------------------------------------- group lengths
def _group_lengths_hold(data: bytes, ts: str) -> dict[int, tuple[int, int]]:
    """group -> (Group Length value, bytes the rest of the group takes) in ``data``."""
    ds = read_dataset(data, transfer_syntax=ts)
    index = ds._index
    found: dict[int, tuple[int, int]] = {}
    for tag in ds.tags():
        if not tag & 0xFFFF:
            group = tag >> 16
            members = [t for t in ds.tags() if t >> 16 == group and t != tag]
            past = max(index.span(ds._raw[t])[1] for t in members)
            found[group] = (ds[tag].value, past - index.span(ds._raw[tag])[1])
    return found


@pytest.mark.parametrize("modify", [False, True])
@pytest.mark.parametrize("ts", [EXPLICIT, IMPLICIT, "1.2.840.10008.1.2.2"])
def test_group_lengths_are_set_for_what_is_written(ts, modify):
    src = Dataset()
    src.set(0x00080000, 0, "UL")                          # deliberately wrong
    src.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    src.ReferencedImageSequence = [Dataset()]
    src.ReferencedImageSequence[0].ReferencedSOPInstanceUID = "1.2.3"
    src.set(0x00100000, 4, "UL")
    src.PatientName = "Doe^Jane"
    src.PatientID = "12"
    src.set(0x7FE00000, 0, "UL")
    src.Rows = src.Columns = 2
    src.BitsAllocated = 16
    src.PixelData = numpy.arange(4, dtype="<u2").tobytes()
    data = bytes(encode_dataset(src, EXPLICIT))
    held = _group_lengths_hold(data, EXPLICIT)
    assert set(held) == {0x0008, 0x0010, 0x7FE0}
    assert all(value == length for value, length in held.values()), held
    read = read_dataset(data, transfer_syntax=EXPLICIT)       # now re-encoded from the bytes
    if modify:
        read.PatientName = "Somebody-Else^With^A^Longer^Name"
    out = bytes(encode_dataset(read, ts))
    held = _group_lengths_hold(out, ts)
    assert all(value == length for value, length in held.values()), held
    if ts == EXPLICIT and not modify:
        assert out == data                                   # unchanged: the same bytes


def test_an_unencodable_value_is_named_by_its_element():
    from dicomnet.errors import DicomEncodeError

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "山田"
    with pytest.raises(DicomEncodeError, match=r"^\(0010,0010\) PatientName: cannot encode"):
        encode_dataset(ds, EXPLICIT)
    ds = Dataset()
    ds.ReferencedImageSequence = [Dataset()]
    ds.ReferencedImageSequence[0].set(0x00280010, 70000, "US")
    with pytest.raises(DicomEncodeError, match=r"^\(0028,0010\) Rows: 70000 does not fit a US value"):
        encode_dataset(ds, EXPLICIT)
