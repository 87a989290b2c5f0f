"""The compiled parts of the lazy Dataset (dicomnet/_codec/dataelem.pyx).

DataElement (a view on its Dataset), the level iterator behind ``for elem in ds``
and LevelMap, the tag -> entry map a Dataset read from bytes keeps in ``_raw``.
"""
from __future__ import annotations

import gc
import struct
import weakref

import numpy
import pytest

from dicomnet._codec.dataelem import DataElement, LevelMap, iter_level, level_map
from dicomnet._codec.elements import ElementIndex
from dicomnet.dicom.dataset import Dataset
from dicomnet.dicom.reader import read_dataset

LE = "1.2.840.10008.1.2.1"


def el(g: int, e: int, vr: str, value: bytes) -> bytes:
    if vr in ("SQ", "OB", "OW", "UN", "UT"):
        return struct.pack("<HH2s2xI", g, e, vr.encode(), len(value)) + value
    return struct.pack("<HH2sH", g, e, vr.encode(), len(value)) + value


def item(body: bytes) -> bytes:
    return struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body


DATA = (el(0x0008, 0x0060, "CS", b"CT")
        + el(0x0008, 0x1140, "SQ", item(el(0x0008, 0x1150, "UI", b"1.2\x00")) + item(b""))
        + el(0x0010, 0x0010, "PN", b"Doe^John")
        + el(0x0018, 0x0050, "DS", b"1.25")
        + el(0x0028, 0x0010, "US", struct.pack("<H", 512))
        + el(0x0028, 0x1050, "DS", b"40\\400 "))


def test_walking_yields_every_element_in_order_with_its_value():
    ds = read_dataset(DATA, transfer_syntax=LE)
    got = [(e.tag, e.VR, e.value) for e in ds]
    assert [t for t, _, _ in got] == [0x00080060, 0x00081140, 0x00100010, 0x00180050, 0x00280010, 0x00281050]
    assert [vr for _, vr, _ in got] == ["CS", "SQ", "PN", "DS", "US", "DS"]
    values = {t: v for t, _, v in got}
    assert values[0x00080060] == "CT" and values[0x00100010] == "Doe^John"
    assert values[0x00180050] == 1.25 and values[0x00280010] == 512 and values[0x00281050] == [40.0, 400.0]
    items = values[0x00081140]
    assert len(items) == 2 and items[0].ReferencedSOPClassUID == "1.2" and len(items[1]) == 0
    # A second walk gives the same elements (values cached, not decoded again).
    assert [(e.tag, e.VR) for e in ds] == [(t, vr) for t, vr, _ in got]
    assert ds[0x00081140].value is items


def test_the_first_walk_decodes_simple_values_in_bulk():
    ds = read_dataset(DATA, transfer_syntax=LE)
    assert ds._vals == {}
    walk = iter(ds)
    assert {0x00080060, 0x00100010, 0x00180050, 0x00280010, 0x00281050} <= ds._vals.keys()
    assert 0x00081140 not in ds._vals     # sequences wait until asked for
    assert next(walk).tag == 0x00080060


def test_element_value_writes_through_and_follows_the_dataset():
    ds = read_dataset(DATA, transfer_syntax=LE)
    elem = ds[0x00100010]
    elem.value = "Roe^Jane"
    assert ds.PatientName == "Roe^Jane" and elem.value == "Roe^Jane" and ds.is_modified()
    ds.PatientName = "Poe^Ed"
    assert elem.value == "Poe^Ed"           # a view, not a copy
    del ds[0x00100010]
    with pytest.raises(KeyError):
        elem.value


def test_deleting_during_a_walk_does_not_bring_the_element_back():
    ds = read_dataset(DATA, transfer_syntax=LE)
    walk = iter(ds)
    next(walk)
    del ds[0x00280010]
    rest = [e.tag for e in walk]
    assert 0x00280010 not in ds and 0x00280010 in rest   # listed (the walk began before), but gone
    assert [e.tag for e in ds] == [0x00080060, 0x00081140, 0x00100010, 0x00180050, 0x00281050]


def test_walking_after_assignment_lists_new_elements_in_order():
    ds = read_dataset(DATA, transfer_syntax=LE)
    list(ds)
    ds.PatientID = "P1"
    tags = [e.tag for e in ds]
    assert tags == sorted(tags) and 0x00100020 in tags and ds[0x00100020].VR == "LO"


def test_data_element_api():
    ds = Dataset()
    ds.Rows = 512
    elem = DataElement(0x00280010, "US", ds)
    assert elem.tag == 0x00280010 and elem.VR == "US" and elem.value == 512
    assert elem.keyword == "Rows" and elem.length is None
    assert repr(elem) == "(0028,0010) US Rows: 512"
    assert elem == ds[0x00280010] and not (elem != ds[0x00280010])
    assert elem != DataElement(0x00280010, "SS", ds)
    with pytest.raises(TypeError):
        hash(elem)
    assert DataElement(0x00091001, "LO", ds).keyword == ""
    read = read_dataset(DATA, transfer_syntax=LE)
    assert read[0x00100010].length == 8
    ds.add_new(0x00091010, "OB", numpy.arange(4, dtype=numpy.uint8))
    ds.add_new(0x00091011, "UN", memoryview(bytes(range(4))))
    other = Dataset()
    other.add_new(0x00091010, "OB", numpy.arange(4, dtype=numpy.uint8))
    other.add_new(0x00091011, "UN", bytes(range(4)))
    assert ds[0x00091010] == other[0x00091010] and ds[0x00091011] == other[0x00091011]
    other.add_new(0x00091010, "OB", numpy.arange(1, 5, dtype=numpy.uint8))
    assert ds[0x00091010] != other[0x00091010]


def test_level_map_answers_like_a_dict():
    index = ElementIndex(DATA)
    m = level_map(index, 0, len(index))
    d = index.level(0, len(index))
    assert isinstance(m, LevelMap) and m == d and len(m) == len(d)
    assert list(m) == sorted(d) and m.keys() == d.keys() and m.items() == sorted(d.items())
    for tag in d:
        assert tag in m and m[tag] == d[tag] and m.get(tag) == d[tag]
    for absent in (0x00080061, -1, 2**40, "PatientName", 1.5, None):
        assert absent not in m and m.get(absent, "no") == "no"
    with pytest.raises(KeyError):
        m[0x00080061]
    assert m.pop(0x00100010) == d[0x00100010] and 0x00100010 not in m and len(m) == len(d) - 1
    assert m.pop(0x00100010, None) is None
    with pytest.raises(KeyError):
        m.pop(0x00100010)
    assert 0x00280010 in m and list(m) == sorted(set(d) - {0x00100010})


def test_a_level_out_of_order_gets_a_dict_and_walks_sorted():
    data = el(0x0010, 0x0010, "PN", b"A^B ") + el(0x0008, 0x0060, "CS", b"MR")
    index = ElementIndex(data)
    raw = level_map(index, 0, len(index))
    assert type(raw) is dict and iter_level(raw, None, {}) is None
    ds = read_dataset(data, transfer_syntax=LE)
    assert [(e.tag, e.value) for e in ds] == [(0x00080060, "MR"), (0x00100010, "A^B")]


def test_level_ranges_are_checked():
    index = ElementIndex(DATA)
    with pytest.raises(IndexError):
        level_map(index, 0, len(index) + 1)
    with pytest.raises(IndexError):
        level_map(index, -1, 2)


def test_a_walk_reuses_only_elements_nobody_holds():
    ds = read_dataset(DATA, transfer_syntax=LE)
    held = list(ds)
    assert len({id(e) for e in held}) == len(held) == 6
    assert [e.tag for e in held] == [0x00080060, 0x00081140, 0x00100010, 0x00180050, 0x00280010, 0x00281050]
    assert [e.VR for e in held] == ["CS", "SQ", "PN", "DS", "US", "DS"]
    seen = []
    for elem in ds:
        seen.append((elem.tag, elem.VR, elem.value))
    assert [t for t, _, _ in seen] == [e.tag for e in held] and seen[2][2] == "Doe^John"
    walk = iter(ds)
    first = next(walk)
    second = next(walk)
    third = next(walk)
    assert (first.tag, second.tag, third.tag) == (0x00080060, 0x00081140, 0x00100010)
    assert first is not third and first.VR == "CS"


def test_items_of_a_sequence():
    index = ElementIndex(DATA)
    sq = index.level(0, len(index))[0x00081140]
    items = index.items(sq)
    assert [u for _, _, u in items] == [False, False] and len(items) == 2
    first, stop, _ = items[0]
    assert [index.tag(i) for i in index.siblings(first, stop)] == [0x00081150]
    assert items[1][0] == items[1][1]       # the empty item
    with pytest.raises(IndexError):
        index.items(len(index))


def test_a_walked_dataset_is_freed():
    ds = read_dataset(DATA, transfer_syntax=LE)
    for elem in ds:
        if elem.VR == "SQ":
            for sub in elem.value:
                list(sub)
    ref = weakref.ref(ds)
    del ds, elem, sub
    gc.collect()
    assert ref() is None


def test_items_walked_decode_text_in_their_charset():
    name = "Müller^Jürgen"
    inner = el(0x0010, 0x0010, "PN", name.encode("latin-1") + b" ")
    own = el(0x0008, 0x0005, "CS", b"ISO_IR 192") + el(0x0010, 0x0010, "PN", name.encode("utf-8") + b" ")
    data = (el(0x0008, 0x0005, "CS", b"ISO_IR 100")
            + el(0x0008, 0x1140, "SQ", item(inner) + item(own)))
    ds = read_dataset(data, transfer_syntax=LE)
    got = []
    for elem in ds:
        if elem.VR == "SQ":
            for sub in elem.value:
                got += [(e.tag, e.value) for e in sub if e.tag == 0x00100010]
    assert got == [(0x00100010, name), (0x00100010, name)]
    inherit, keep = ds[0x00081140].value
    assert inherit._charsets() == ("ISO_IR 100",) and keep._charsets() == ("ISO_IR 192",)
    # Walking an item first (its parent's charset not resolved yet) finds the same.
    fresh = read_dataset(data, transfer_syntax=LE)
    first = fresh[0x00081140].value[0]
    assert [e.value for e in first] == [name]
