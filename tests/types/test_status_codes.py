"""Tests for dicomnet.types.status (named so it does not clash with a DIMSE test_status)."""

from __future__ import annotations

import pytest

from dicomnet.types import status as st


@pytest.mark.parametrize(
    ("code", "category"),
    [
        (0x0000, "success"),
        (0xFF00, "pending"),
        (0xFF01, "pending"),
        (0xFE00, "cancel"),
        (0x0001, "warning"),
        (0x0107, "warning"),
        (0x0116, "warning"),
        (0xAFFF, "failure"),
        (0xB000, "warning"),
        (0xB006, "warning"),
        (0xB007, "warning"),
        (0xBFFF, "warning"),
        (0xC000, "failure"),
        (0xCFFF, "failure"),
        (0xA000, "failure"),
        (0xA700, "failure"),
        (0xA701, "failure"),
        (0xA702, "failure"),
        (0xA801, "failure"),
        (0xA900, "failure"),
        (0x0110, "failure"),
        (0x0112, "failure"),
        (0x0122, "failure"),
        (0x0124, "failure"),
        (0x0211, "failure"),
        (0x0212, "failure"),
        (0x0213, "failure"),
        # undefined codes at the edges of the defined ranges: failure
        (0x0002, "failure"),
        (0x9FFF, "failure"),
        (0xD000, "failure"),
        (0xFDFF, "failure"),
        (0xFE01, "failure"),
        (0xFF02, "failure"),
        (0xFFFF, "failure"),
    ],
)
def test_categories(code, category):
    assert st.status_category(code) == category
    helpers = {"success": st.is_success, "pending": st.is_pending, "cancel": st.is_cancel,
               "warning": st.is_warning, "failure": st.is_failure}
    for name, helper in helpers.items():
        assert helper(code) is (name == category)
    assert st.is_final(code) is (category != "pending")


def test_is_known():
    for code in (0x0000, 0xFF00, 0xFE00, 0xB123, 0xA7FF, 0xC5FF, 0x0122):
        assert st.is_known(code)
    for code in (0x0002, 0xD000, 0xFF02, 0x0300):
        assert not st.is_known(code)


def test_bad_codes():
    for bad in (-1, 0x10000):
        with pytest.raises(ValueError):
            st.status_category(bad)
    with pytest.raises(TypeError):
        st.status_category("0")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        st.status_meaning(0, service="nope")


def test_meanings():
    assert st.status_meaning(st.SUCCESS) == "Success"
    assert "SOP Class not supported" in st.status_meaning(0x0122)
    assert "coercion" in st.status_meaning(0xB000, "storage")
    assert "sub-operations" in st.status_meaning(0xB000, "move")
    assert "destination unknown" in st.status_meaning(0xA801, "move")
    assert "out of resources" in st.status_meaning(0xA7FF, "storage")
    assert "does not match" in st.status_meaning(0xA9FF, "storage")
    assert "unable to process" in st.status_meaning(0xC123, "find").lower()
    assert "optional keys" in st.status_meaning(0xFF01, "find")
    assert "treated as failure" in st.status_meaning(0xD000)


def test_constants():
    assert (st.SUCCESS, st.PENDING, st.CANCEL) == (0x0000, 0xFF00, 0xFE00)
    assert st.PENDING_WARNING == 0xFF01
    assert st.OUT_OF_RESOURCES == 0xA700 and st.MOVE_DESTINATION_UNKNOWN == 0xA801
    assert st.SOP_CLASS_NOT_SUPPORTED == 0x0122 and st.NOT_AUTHORIZED == 0x0124
    assert st.ELEMENTS_DISCARDED == 0xB006 and st.DATASET_DOES_NOT_MATCH_SOP_CLASS_WARNING == 0xB007
    assert st.ATTRIBUTE_LIST_ERROR == 0x0107 and st.ATTRIBUTE_VALUE_OUT_OF_RANGE == 0x0116
    for name in st.__all__:
        assert hasattr(st, name), name
