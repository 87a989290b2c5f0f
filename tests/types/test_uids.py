"""Tests for dicomnet.types.uids."""

from __future__ import annotations

import pytest

from dicomnet.types import uids
from dicomnet.types._uids import REGISTRY
from dicomnet.types.uids import UID, by_keyword, is_valid_uid, name_of


def test_module_attributes_for_every_keyword():
    with_keyword = [row for row in REGISTRY if row[1]]
    assert len(with_keyword) >= 480
    for uid, keyword, uid_type, retired, name in with_keyword:
        value = getattr(uids, keyword)
        assert isinstance(value, UID) and value == uid
        assert by_keyword(keyword) == uid
        assert value.keyword == keyword
        assert value.type == uid_type
        assert value.is_retired is retired
        assert value.name == name
        assert name_of(uid) == name


def test_well_known_values():
    assert uids.Verification == "1.2.840.10008.1.1"
    assert uids.CTImageStorage == "1.2.840.10008.5.1.4.1.1.2"
    assert uids.CTImageStorage.name == "CT Image Storage"
    assert uids.ExplicitVRLittleEndian == "1.2.840.10008.1.2.1"
    assert uids.ExplicitVRLittleEndian.is_transfer_syntax
    assert not uids.CTImageStorage.is_transfer_syntax
    assert uids.CTImageStorage.is_sop_class
    assert uids.ExplicitVRBigEndian.is_retired
    assert not uids.ImplicitVRLittleEndian.is_retired


def test_unregistered_uid():
    u = UID("1.2.3.4")
    assert u.name == "1.2.3.4" and u.keyword == "" and u.type == ""
    assert not u.is_registered and not u.is_transfer_syntax and not u.is_retired
    assert name_of("1.2.3.4") == "1.2.3.4"
    with pytest.raises(KeyError):
        by_keyword("NotAKeyword")
    with pytest.raises(AttributeError):
        uids.NotAKeyword  # noqa: B018


def test_uid_is_a_plain_str_for_hashing():
    assert {uids.Verification: 1}["1.2.840.10008.1.1"] == 1
    assert "Verification" in repr(uids.Verification)


def test_unnamed_retired_entries_are_kept():
    u = UID("1.2.840.10008.5.1.4.1.1.40")
    assert u.is_registered and u.is_retired and u.keyword == ""
    assert u.name == "1.2.840.10008.5.1.4.1.1.40"
    assert len(uids.registry()) == len(REGISTRY)


@pytest.mark.parametrize(
    "value",
    ["0", "1.2", "1.2.840.10008.1.2.1", "1.0.3", "9" * 64, "1." + "2" * 62, "0.0"],
)
def test_valid_uids(value):
    assert is_valid_uid(value)
    assert UID(value).is_valid


@pytest.mark.parametrize(
    "value",
    [
        "",
        ".",
        "1.",
        ".1",
        "1..2",
        "01.2",
        "1.02",
        "1.2.00",
        "1.2a",
        "1 .2",
        "1.2\x00",
        "1.2 ",
        "-1.2",
        "9" * 65,
        "1." + "2" * 63,
        "١.٢",  # non-ASCII digits
        None,
        12,
    ],
)
def test_invalid_uids(value):
    assert not is_valid_uid(value)


def test_every_registered_uid_is_valid():
    for uid, *_ in REGISTRY:
        assert is_valid_uid(uid), uid


from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _reference_valid(s: str) -> bool:
    if not s or len(s) > 64:
        return False
    for part in s.split("."):
        if not part or not all(c in "0123456789" for c in part):
            return False
        if len(part) > 1 and part[0] == "0":
            return False
    return True


@given(st.text(alphabet="0123456789.a \x00", max_size=70))
def test_is_valid_uid_matches_reference(s):
    assert is_valid_uid(s) is _reference_valid(s)
