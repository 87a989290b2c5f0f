"""The lazy Dataset (dicomnet/dicom/dataset.py): access, assignment, sequences, laziness."""
from __future__ import annotations

import struct

import numpy
import pytest

from dicomnet.dicom.dataset import DataElement, Dataset, Sequence, tag_of
from dicomnet.dicom.reader import read_dataset
from dicomnet.dicom.writer import encode_dataset

LE, IMPLICIT = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"


def el(g: int, e: int, vr: str, value: bytes) -> bytes:
    if vr in ("SQ", "OB", "OW", "UN", "UT"):
        return struct.pack("<HH2s2xI", g, e, vr.encode(), len(value)) + value
    return struct.pack("<HH2sH", g, e, vr.encode(), len(value)) + value


def test_tag_of():
    assert tag_of("PatientName") == 0x00100010
    assert tag_of((0x0010, 0x0010)) == 0x00100010
    assert tag_of(0x00100010) == 0x00100010
    with pytest.raises(KeyError):
        tag_of("NoSuchKeyword")
    with pytest.raises(TypeError):
        tag_of(1.5)  # type: ignore[arg-type]


def test_four_ways_to_an_element():
    ds = Dataset()
    ds.PatientName = "Doe^John"
    assert str(ds.PatientName) == "Doe^John"
    for key in (0x00100010, "PatientName", (0x0010, 0x0010)):
        elem = ds[key]
        assert isinstance(elem, DataElement)
        assert elem.tag == 0x00100010 and elem.VR == "PN" and elem.keyword == "PatientName"
        assert str(elem.value) == "Doe^John"
    assert "PatientName" in ds and 0x00100010 in ds and (0x0010, 0x0010) in ds
    assert "PatientID" not in ds and "NotAKeyword" not in ds and 3.5 not in ds
    assert repr(ds[0x00100010]) == "(0010,0010) PN PatientName: 'Doe^John'"


def test_missing_elements():
    ds = Dataset()
    with pytest.raises(AttributeError):
        ds.PatientName
    with pytest.raises(KeyError):
        ds[0x00100010]
    with pytest.raises(AttributeError):
        ds.NotAKeyword
    assert ds.get("PatientName") is None and ds.get("PatientName", "x") == "x"
    assert ds.get("NotAKeyword", 5) == 5
    with pytest.raises(KeyError):
        del ds[0x00100020]


def test_set_delete_and_order():
    ds = Dataset()
    ds.PatientID = "2"
    ds[0x00080060] = "CT"
    ds.set("Rows", 512)
    ds.add_new(0x00091001, "LO", "private")
    assert ds.tags() == [0x00080060, 0x00091001, 0x00100020, 0x00280010]
    assert [e.tag for e in ds] == ds.tags() == ds.keys()
    assert len(ds) == 4
    assert ds[0x00091001].VR == "LO"
    ds[0x00091002] = ds[0x00091001]  # a DataElement carries its VR along
    assert ds[0x00091002].VR == "LO" and ds[0x00091002].value == "private"
    del ds.PatientID
    del ds[0x00091002]
    assert "PatientID" not in ds and len(ds) == 3
    with pytest.raises(KeyError):
        ds.set(0x00091003, "no VR known")  # private: the dictionary cannot say
    ds.Rows = 256
    assert ds.Rows == 256 and ds[0x00280010].VR == "US"
    ds[0x00280010].value = 128
    assert ds.Rows == 128
    ds.not_an_element = 1  # lower case: a plain attribute
    assert ds.not_an_element == 1 and "not_an_element" not in ds
    del ds.not_an_element
    with pytest.raises(AttributeError):
        del ds.never_set


def test_sequences_and_their_items():
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    item = Dataset()
    item.PatientName = "Müller^Jürgen"
    ds.OtherPatientIDsSequence = [item]
    seq = ds.OtherPatientIDsSequence
    assert isinstance(seq, Sequence) and seq[0] is item
    assert item._parent is ds and item._current_charsets() == ("ISO_IR 100",)
    with pytest.raises(TypeError):
        ds.OtherPatientIDsSequence = ["not a dataset"]
    data = bytes(encode_dataset(ds, LE))
    assert "Müller".encode("latin-1") in data  # the item is encoded in the parent's character set
    back = read_dataset(data, transfer_syntax=LE)
    assert str(back.OtherPatientIDsSequence[0].PatientName) == "Müller^Jürgen"
    assert back.OtherPatientIDsSequence[0]._parent is back


def test_values_are_decoded_lazily_and_cached():
    data = el(0x0010, 0x0010, "PN", b"Doe^J ") + el(0x0028, 0x0010, "US", b"\x00\x02")
    ds = read_dataset(data, transfer_syntax=LE)
    assert ds._vals == {}
    assert ds.Rows == 512
    assert list(ds._vals) == [0x00280010]
    assert ds.Rows is ds._vals[0x00280010]
    assert ds[0x00100010].length == 6
    ds.PatientName = "X"
    assert ds[0x00100010].length is None


def test_is_modified_tracks_nested_changes():
    item = el(0x0008, 0x0100, "SH", b"T1")
    seq = el(0x0040, 0xA730, "SQ", struct.pack("<HHI", 0xFFFE, 0xE000, len(item)) + item)
    ds = read_dataset(el(0x0008, 0x0060, "CS", b"CT") + seq, transfer_syntax=LE)
    assert not ds.is_modified()
    ds.ContentSequence  # decoding is not modifying
    assert not ds.is_modified()
    ds.ContentSequence[0].CodeValue = "T2"
    assert ds.is_modified()
    ds2 = read_dataset(el(0x0008, 0x0060, "CS", b"CT") + seq, transfer_syntax=LE)
    ds2.ContentSequence.append(Dataset())
    assert ds2.is_modified()
    assert Dataset().is_modified()  # nothing to be unmodified against


def test_numeric_values_are_views():
    raw = struct.pack("<4H", 0, 256, 256, 0)
    data = bytearray(el(0x0018, 0x1310, "US", raw))
    ds = read_dataset(data, transfer_syntax=LE)
    matrix = ds.AcquisitionMatrix
    assert isinstance(matrix, numpy.ndarray) and matrix.tolist() == [0, 256, 256, 0]
    assert numpy.shares_memory(matrix, numpy.frombuffer(data, numpy.uint8))


def test_implicit_vr_from_dictionary_and_ambiguous_vrs():
    def iel(g, e, value):
        return struct.pack("<HHI", g, e, len(value)) + value

    data = (iel(0x0028, 0x0100, b"\x10\x00") + iel(0x0028, 0x0103, b"\x01\x00")
            + iel(0x0028, 0x0106, b"\xff\xff") + iel(0x0029, 0x1010, b"abcd"))
    ds = read_dataset(data, transfer_syntax=IMPLICIT)
    assert ds[0x00280100].VR == "US"
    assert ds[0x00280106].VR == "SS" and ds.SmallestImagePixelValue == -1  # signed per Pixel Representation
    assert ds[0x00291010].VR == "UN" and ds[0x00291010].value == b"abcd"


def test_equality_and_repr():
    a, b = Dataset(), Dataset()
    for ds in (a, b):
        ds.PatientID = "1"
        ds.ContentSequence = [Dataset()]
        ds.ContentSequence[0].CodeValue = "A"
    assert a == b
    b.ContentSequence[0].CodeValue = "B"
    assert a != b
    text = repr(a)
    assert "(0010,0020) LO PatientID: '1'" in text and "item 1:" in text and "CodeValue" in text
    assert "PatientID" in dir(a)
    with pytest.raises(TypeError):
        hash(a)


def test_get_returns_element_for_tags_and_value_for_keywords():
    ds = Dataset()
    ds.PatientID = "7"
    assert ds.get("PatientID") == "7"
    assert isinstance(ds.get(0x00100020), DataElement)
    assert ds.get(0x00100030) is None
    assert [t for t, _ in ds.items()] == [0x00100020] and ds.values()[0].value == "7"


def test_malformed_bits_allocated_does_not_break_vr_lookup():
    # Found by fuzzing: a Bits Allocated sent as UN in big endian decoded to bytes, and
    # looking up the VR of a UN Pixel Data then raised a bare ValueError from int(bytes).
    # A UN value is little endian whatever the syntax (PS3.5 6.2.2), so here 4096.
    def be(g, e, vr, value):
        return struct.pack(">HH2s2xI", g, e, vr, len(value)) + value

    data = be(0x0028, 0x0100, b"UN", b"\x00\x10") + be(0x7FE0, 0x0010, b"UN", b"\x00\x01\x00\x02")
    ds = read_dataset(data, transfer_syntax="1.2.840.10008.1.2.2")
    assert ds[0x00280100].value == 4096
    assert ds[0x7FE00010].VR in ("OB", "OW")


@pytest.mark.parametrize("vr,value", [(b"PN", b"]\xff\xff\xffI\xfb"), (b"PN", b"ISO_IR 100"), (b"SQ", None),
                                      (b"US", b"\x01\x00\x02\x00")])
def test_specific_character_set_with_a_malformed_vr(vr, value):
    # Found by fuzzing: (0008,0005) as PN (a character-set VR) or SQ recursed forever
    # (its decoding looked up the character set, i.e. itself).
    name = el(0x0010, 0x0010, "PN", b"AB")
    if vr == b"SQ":
        charset = el(0x0008, 0x0005, "SQ", struct.pack("<HHI", 0xFFFE, 0xE000, len(name)) + name)
    else:
        charset = struct.pack("<HH2sH", 0x0008, 0x0005, vr, len(value)) + value
    ds = read_dataset(charset + name, transfer_syntax=LE)
    assert len([e.value for e in ds]) == 2
    assert str(ds.PatientName) == "AB"
    if vr == b"SQ":
        assert str(ds.SpecificCharacterSet[0].PatientName) == "AB"


def test_nesting_through_reparsed_private_sequences_obeys_max_depth():
    # Found by review: each implicit/UN private sequence is re-parsed lazily into its own
    # index, so a chain of them escaped max_depth and then encode/repr hit RecursionError.
    def iel(g, e, value):
        return struct.pack("<HHI", g, e, len(value)) + value

    body = iel(0x0010, 0x0020, b"ID")
    for _ in range(3000):
        body = iel(0x0009, 0x1001, struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body)
    ds = read_dataset(body, transfer_syntax=IMPLICIT)
    depth, item = 0, ds
    while item[0x00091001].VR == "SQ":
        item = item[0x00091001].value[0]
        depth += 1
    assert depth == 64  # max_depth levels of sequences; what is nested deeper stays an opaque UN value
    assert isinstance(item[0x00091001].value, bytes)
    assert len(bytes(encode_dataset(ds, LE))) > len(body)  # no RecursionError
    assert "(0009,1001)" in repr(ds)


def test_a_tag_repeated_in_the_data_is_one_element_whose_vr_matches_its_value():
    # Found by fuzzing: (0020,0000) as an empty SQ then again as OF; iterating gave two
    # elements, the first with VR SQ but the OF's array as value.
    data = (el(0x0020, 0x0000, "SQ", b"") + el(0x0020, 0x0000, "OB", b"\x01\x02")
            + el(0x0028, 0x0010, "US", b"\x02\x00"))
    ds = read_dataset(data, transfer_syntax=LE)
    elems = list(ds)
    assert [e.tag for e in elems] == [0x00200000, 0x00280010] and len(ds) == 2
    assert elems[0].VR == "OB" and elems[0].value.tolist() == [1, 2]  # the last occurrence, as ds[tag]
    assert ds[0x00200000].VR == "OB"
