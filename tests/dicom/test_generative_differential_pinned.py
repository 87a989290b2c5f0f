"""The dicomnet faults the generative differential tests found, pinned as
fixed data sets, shrunk from what hypothesis drew: UN values of known binary
VRs in Explicit VR Big Endian, and sequences the element index does not mark
as sequences, edited or given a new character set. Each is read or transcoded
by the checks of _generative_checks.py; the same data sets in the cases that
were right all along guard the fixes.
"""
from __future__ import annotations

import struct
from typing import Any, Iterator

import pytest

# pydicom counts the bytes of escape sequences in a value's length; PS3.5 6.2 does not.
pytestmark = pytest.mark.filterwarnings("ignore:The value length:UserWarning")

pytest.importorskip("pydicom")
from tests.dicom._generative_checks import (check_dicomnet_reads, check_dicomnet_transcodes,  # noqa: E402
                                            pydicom_settings)
from tests.dicom._generative_model import BE, CHARSET, DEFLATED, IMPLICIT, LE, SOP_CLASS, SOP_INSTANCE, El  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _pydicom_settings() -> Iterator[None]:
    with pydicom_settings():
        yield


# Shrunk from the generative tests: the faults they found (_generative_checks.py's docstring).
# Binary values of known tags given as UN, little endian whatever the syntax
# (PS3.5 6.2.2: "shall not be byte-swapped"; Note 2: a reader that knows the VR
# "can assume that the Value Field ... is encoded in Little Endian byte ordering").
UN_BINARY = (
    El(SOP_CLASS, "UI", ("1.2.3",)), El(SOP_INSTANCE, "UI", ("1.2.3.4",)),
    El(0x00181310, "US", (1, 2, 3, 256), 3),            # Acquisition Matrix
    El(0x00186020, "SL", (-2,), 3),                      # Reference Pixel X0
    El(0x00189087, "FD", (1.5,), 3),                     # Diffusion b-value
    El(0x00209165, "AT", (0x00100010,), 3),              # Dimension Index Pointer
    El(0x00281201, "OW", struct.pack("<2H", 1, 0x0203), 3),   # Red Palette Color LUT Data
)
UN_IN_ITEM = (
    El(SOP_CLASS, "UI", ("1.2.3",)), El(SOP_INSTANCE, "UI", ("1.2.3.4",)),
    El(0x00081115, "SQ", ((El(0x00280010, "US", (512,), 3),),)),     # Rows in an item
)

# Sequences the element index does not mark as sequences: (50xx,2600), a
# sequence in a repeating group, read from Implicit VR, and a sequence given as
# UN. Edits to their items, or a new Specific Character Set, were lost when
# written in the same VR encoding and byte order: the old bytes were copied.
_LATIN = (El(SOP_CLASS, "UI", ("1.2.3",)), El(SOP_INSTANCE, "UI", ("1.2.3.4",)),
          El(CHARSET, "CS", ("ISO_IR 100",)))
_ITEM = (El(0x00100010, "PN", ("Gérard^Jean",)), El(0x00100021, "LO", ("ÉMETTEUR",)))
CURVE_SEQUENCE = _LATIN + (El(0x50002600, "SQ", (_ITEM,)),)     # Curve Referenced Overlay Sequence
UN_SEQUENCE = _LATIN + (El(0x00081115, "SQ", (_ITEM,), 3),)      # Referenced Series Sequence, as UN

PINNED = [
    # choice 8 sets Patient ID in the first item of (5000,2600), choice 0 in that of (0008,1115)
    # (_edit); both have pydicom write defined lengths (an undefined length marks a sequence).
    pytest.param(CURVE_SEQUENCE, lambda m: check_dicomnet_transcodes(m, IMPLICIT, IMPLICIT, 8, edit=True),
                 id="sequence-edit-implicit-curve"),
    pytest.param(CURVE_SEQUENCE, lambda m: check_dicomnet_transcodes(m, IMPLICIT, IMPLICIT, 0, ("ISO_IR 192",)),
                 id="sequence-recode-implicit-curve"),
    pytest.param(UN_SEQUENCE, lambda m: check_dicomnet_transcodes(m, LE, LE, 0, edit=True),
                 id="sequence-edit-un"),
    pytest.param(UN_SEQUENCE, lambda m: check_dicomnet_transcodes(m, LE, DEFLATED, 0, ("ISO_IR 192",)),
                 id="sequence-recode-un-deflated"),
    # The same into another VR encoding: right today (guards the fix).
    pytest.param(CURVE_SEQUENCE, lambda m: check_dicomnet_transcodes(m, IMPLICIT, LE, 8, ("ISO_IR 192",),
                                                                     edit=True),
                 id="sequence-curve-implicit-to-explicit"),
    pytest.param(UN_SEQUENCE, lambda m: check_dicomnet_transcodes(m, LE, BE, 0, ("ISO_IR 192",), edit=True),
                 id="sequence-un-to-big-endian"),

    pytest.param(UN_BINARY, lambda m: check_dicomnet_reads(m, BE, 0), id="un-big-endian-read"),
    pytest.param(UN_IN_ITEM, lambda m: check_dicomnet_reads(m, BE, 0), id="un-big-endian-read-in-item"),
    pytest.param(UN_BINARY, lambda m: check_dicomnet_transcodes(m, BE, LE, 0), id="un-big-endian-to-little"),
    pytest.param(UN_IN_ITEM, lambda m: check_dicomnet_transcodes(m, BE, IMPLICIT, 0), id="un-big-endian-to-implicit"),
    # The same data sets in little endian: read and transcoded right today (guards the fix).
    pytest.param(UN_BINARY, lambda m: check_dicomnet_reads(m, LE, 0) + check_dicomnet_transcodes(m, LE, BE, 0),
                 id="un-little-endian"),
    pytest.param(UN_IN_ITEM, lambda m: check_dicomnet_transcodes(m, DEFLATED, IMPLICIT, 0), id="un-deflated-in-item"),
]


@pytest.mark.parametrize("model, check", PINNED)
def test_pinned_regressions(model: tuple[El, ...], check: Any) -> None:
    problems = check(model)
    assert not problems, "\n".join(problems[:20])
