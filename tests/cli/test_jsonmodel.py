"""dicomnet.cli.jsonmodel: the DICOM JSON Model (PS3.18 F.2) by hand-checked cases."""
from __future__ import annotations

import base64
import json

import numpy

from dicomnet.cli.jsonmodel import element_json, to_json_dict
from dicomnet.dicom import read_dataset
from dicomnet.dicom.dataset import Dataset


def test_keys_vr_and_values():
    ds = Dataset()
    ds.PatientID = "ABC"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Rows = 512
    ds.SliceThickness = 2.5
    ds.InstanceNumber = 7
    ds.AccessionNumber = ""
    out = to_json_dict(read_dataset(bytes(ds.encode())))
    assert out["00100020"] == {"vr": "LO", "Value": ["ABC"]}
    assert out["00080008"] == {"vr": "CS", "Value": ["ORIGINAL", "PRIMARY"]}
    assert out["00280010"] == {"vr": "US", "Value": [512]}
    assert out["00180050"] == {"vr": "DS", "Value": [2.5]}         # IS/DS as JSON numbers
    assert out["00200013"] == {"vr": "IS", "Value": [7]}
    assert out["00080050"] == {"vr": "SH"}                           # empty: no "Value" (F.2.5)
    assert list(out) == sorted(out)
    json.dumps(out)


def test_person_name_groups():
    assert element_json("PN", "Yamada^Tarou=山田^太郎=やまだ^たろう") == {"vr": "PN", "Value": [
        {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}]}
    assert element_json("PN", "=山田^太郎") == {"vr": "PN", "Value": [{"Ideographic": "山田^太郎"}]}
    assert element_json("PN", ["A^B", "C^D"])["Value"] == [{"Alphabetic": "A^B"}, {"Alphabetic": "C^D"}]


def test_binary_is_inline_base64_little_endian():
    words = numpy.array([1, 0x0203], dtype=">u2")       # big-endian view of two words
    assert element_json("OW", words) == {"vr": "OW", "InlineBinary": base64.b64encode(b"\x01\x00\x03\x02").decode()}
    assert element_json("OB", b"\x00\xff") == {"vr": "OB", "InlineBinary": "AP8="}
    assert element_json("UN", b"") == {"vr": "UN"}


def test_at_sequences_and_null_components():
    assert element_json("AT", [0x00100010, 0x7FE00010]) == {"vr": "AT", "Value": ["00100010", "7FE00010"]}
    item = Dataset()
    item.CodeValue = "T-1"
    assert element_json("SQ", [item]) == {"vr": "SQ", "Value": [{"00080100": {"vr": "SH", "Value": ["T-1"]}}]}
    assert element_json("SQ", []) == {"vr": "SQ"}
    assert element_json("DS", [1.0, None, 3.5]) == {"vr": "DS", "Value": [1.0, None, 3.5]}
    assert element_json("CS", ["A", "", "B"]) == {"vr": "CS", "Value": ["A", None, "B"]}


def test_group_lengths_are_left_out():
    ds = Dataset()
    ds.set(0x00080000, 10, "UL")
    ds.Modality = "CT"
    assert list(to_json_dict(ds)) == ["00080060"]
