"""Tests for dicomnet.types.transfer_syntax."""

from __future__ import annotations

import dataclasses

import pytest

from dicomnet.types import uids
from dicomnet.types._uids import REGISTRY
from dicomnet.types.transfer_syntax import (
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_BE,
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    NOT_A_DATASET_ENCODING,
    UNCOMPRESSED,
    TransferSyntax,
    all_transfer_syntaxes,
    transfer_syntax,
)


def test_constants():
    assert IMPLICIT_VR_LE.uid == "1.2.840.10008.1.2"
    assert (IMPLICIT_VR_LE.implicit_vr, IMPLICIT_VR_LE.little_endian) == (True, True)
    assert (EXPLICIT_VR_LE.implicit_vr, EXPLICIT_VR_LE.little_endian) == (False, True)
    assert (EXPLICIT_VR_BE.implicit_vr, EXPLICIT_VR_BE.little_endian) == (False, False)
    assert EXPLICIT_VR_BE.retired
    assert DEFLATED_EXPLICIT_VR_LE.deflated and not DEFLATED_EXPLICIT_VR_LE.encapsulated
    for ts in UNCOMPRESSED:
        assert ts.is_native and not ts.encapsulated and not ts.deflated
    assert EXPLICIT_VR_LE.name == "Explicit VR Little Endian"


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        EXPLICIT_VR_LE.implicit_vr = True  # type: ignore[misc]


def test_every_registry_transfer_syntax_is_known():
    ts_rows = [r for r in REGISTRY if r[2] == "Transfer Syntax"]
    assert len(ts_rows) == len(all_transfer_syntaxes()) + len(NOT_A_DATASET_ENCODING)
    for uid, keyword, _type, retired, name in ts_rows:
        if uid in NOT_A_DATASET_ENCODING:
            with pytest.raises(KeyError):
                transfer_syntax(uid)
            continue
        ts = transfer_syntax(uid)
        assert isinstance(ts, TransferSyntax)
        assert ts.uid == uid and ts.name == name and ts.retired is retired
        assert ts.uid.keyword == keyword


@pytest.mark.parametrize(
    "keyword",
    ["JPEGBaseline8Bit", "JPEGLossless", "JPEG2000", "JPEGLSLossless", "RLELossless", "HTJ2K",
     "MPEG2MPML", "MPEG4HP41", "HEVCMP51", "EncapsulatedUncompressedExplicitVRLittleEndian"],
)
def test_encapsulated(keyword):
    ts = transfer_syntax(uids.by_keyword(keyword))
    assert ts.encapsulated and not ts.implicit_vr and ts.little_endian and not ts.deflated


@pytest.mark.parametrize(
    ("keyword", "deflated"),
    [("JPIPReferenced", False), ("JPIPReferencedDeflate", True),
     ("JPIPHTJ2KReferenced", False), ("JPIPHTJ2KReferencedDeflate", True),
     ("SMPTEST211020UncompressedProgressiveActiveVideo", False),
     ("SMPTEST211030PCMDigitalAudio", False)],
)
def test_not_encapsulated_special_cases(keyword, deflated):
    ts = transfer_syntax(uids.by_keyword(keyword))
    assert not ts.encapsulated and not ts.implicit_vr and ts.little_endian
    assert ts.deflated is deflated


def test_papyrus_is_implicit():
    ts = transfer_syntax("1.2.840.10008.1.20")
    assert ts.implicit_vr and ts.little_endian and not ts.encapsulated and ts.retired


def test_unknown_and_padded():
    with pytest.raises(KeyError):
        transfer_syntax("1.2.840.113619.5.2")  # a private one: not guessed
    with pytest.raises(KeyError):
        transfer_syntax("1.2.840.10008.1.2.6.2")
    assert transfer_syntax("1.2.840.10008.1.2\x00") is IMPLICIT_VR_LE
