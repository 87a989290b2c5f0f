"""Tests for dicomnet.types.vr (the PS3.5 6.2 table)."""

from __future__ import annotations

import numpy as np
import pytest

from dicomnet.types import vr


def test_long_length_vrs():
    assert vr.LONG_LENGTH_VRS == frozenset(
        "OB OD OF OL OV OW SQ UC UN UR UT SV UV".split())
    assert vr.header_length("OB") == 12 and vr.header_length("US") == 8
    assert vr.VR_INFO["UT"].header_length == 12
    assert vr.is_long_length("SQ") and not vr.is_long_length("LO")


def test_all_34_vrs():
    assert len(vr.ALL_VRS) == 34


@pytest.mark.parametrize(
    ("name", "size"),
    [("US", 2), ("SS", 2), ("UL", 4), ("SL", 4), ("FL", 4), ("FD", 8), ("AT", 4), ("SV", 8),
     ("UV", 8), ("OW", 2), ("OF", 4), ("OD", 8), ("OL", 4), ("OV", 8), ("OB", 1)],
)
def test_value_sizes_and_dtypes(name, size):
    info = vr.vr_info(name)
    assert info.value_size == size
    dt = np.dtype(vr.numpy_dtype(name))
    assert dt.itemsize == (2 if name == "AT" else size)
    if size > 1:
        assert dt.byteorder in ("<", "=") and np.dtype(vr.numpy_dtype(name, False)).byteorder == ">"


def test_signedness_and_kind():
    assert np.dtype(vr.numpy_dtype("SS")).kind == "i"
    assert np.dtype(vr.numpy_dtype("US")).kind == "u"
    assert np.dtype(vr.numpy_dtype("FD")).kind == "f"
    assert np.dtype(vr.numpy_dtype("SV")).kind == "i"
    assert vr.numpy_dtype("LO") is None and vr.numpy_dtype("SQ") is None


def test_padding():
    assert vr.VR_INFO["UI"].padding == b"\x00"
    assert vr.VR_INFO["OB"].padding == b"\x00"
    for name in ("AE", "CS", "LO", "PN", "SH", "DA", "TM", "DT", "DS", "IS", "LT", "ST", "UT",
                 "UC", "UR", "AS"):
        assert vr.VR_INFO[name].padding == b" ", name


def test_text_and_multivalue():
    assert vr.TEXT_VRS == frozenset(
        "AE AS CS DA DS DT IS LO LT PN SH ST TM UC UI UR UT".split())
    assert vr.MULTIVALUE_TEXT_VRS == vr.TEXT_VRS - {"LT", "ST", "UT", "UR"}
    assert not vr.TEXT_VRS & vr.BINARY_VRS


def test_max_lengths():
    expect = {"AE": 16, "AS": 4, "CS": 16, "DA": 8, "DS": 16, "DT": 26, "IS": 12, "LO": 64,
              "LT": 10240, "PN": 64, "SH": 16, "ST": 1024, "TM": 14, "UI": 64}
    for name, n in expect.items():
        assert vr.VR_INFO[name].max_length == n
    assert vr.VR_INFO["UT"].max_length is None


def test_unknown_vr():
    with pytest.raises(KeyError):
        vr.vr_info("XX")
