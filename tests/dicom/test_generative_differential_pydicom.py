"""Generative differential tests of the data set codec against pydicom:
hypothesis draws data sets from the model (_generative_model.py); dicomnet
writes them in every transfer syntax and both libraries read them back, then
pydicom writes them and dicomnet reads, transcodes and edits them (checks 1
to 3 of _generative_checks.py). dcmtk: test_generative_differential_dcmtk.py;
the faults found, pinned: test_generative_differential_pinned.py.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

# pydicom counts the bytes of escape sequences in a value's length; PS3.5 6.2 does not.
pytestmark = pytest.mark.filterwarnings("ignore:The value length:UserWarning")

pytest.importorskip("pydicom")
from tests.dicom._generative_checks import (check_dicomnet_writes, check_pydicom_writes,  # noqa: E402
                                            pydicom_settings, scratch_folder)
from tests.dicom._generative_model import SETTINGS, El, cases, pydicom_cases  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _pydicom_settings() -> Iterator[None]:
    with pydicom_settings():
        yield


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with scratch_folder() as folder:
        yield folder


@settings(max_examples=150, **SETTINGS)
@given(model=cases, choice=st.integers(0, 255))
def test_dicomnet_writes_pydicom_and_dicomnet_read(model: tuple[El, ...], choice: int, scratch: Path) -> None:
    problems = check_dicomnet_writes(model, scratch, choice)
    assert not problems, "\n".join(problems[:20])


@settings(max_examples=150, **SETTINGS)
@given(model=pydicom_cases, choice=st.integers(0, 255))
def test_pydicom_writes_dicomnet_reads_and_transcodes(model: tuple[El, ...], choice: int, scratch: Path) -> None:
    problems = check_pydicom_writes(model, choice, scratch)
    assert not problems, "\n".join(problems[:20])
