"""Fixtures of the dcmtk cross-checks (``test_dcmtk_files_*.py``,
``test_dcmtk_charsets_*.py``).

``make`` builds the dcmtk-made file of a case of :data:`_dcmtk_files.CASES`
(and dcmtk's view of it) once per test module. ``dcmtk`` runs ``dcmconv`` for
the character set tests, one per test module.
"""
from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import pytest

from tests.dicom._dcmtk_files import Maker

if TYPE_CHECKING:
    from tests.dicom._dcmtk_charsets import Dcmtk


@pytest.fixture(scope="module")
def make(tmp_path_factory: pytest.TempPathFactory) -> Maker:
    for program in ("dump2dcm", "dcm2xml"):
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed (apt-get install dcmtk)")
    return Maker(tmp_path_factory.mktemp("dcmtk"))


@pytest.fixture(scope="module")
def dcmtk(tmp_path_factory: pytest.TempPathFactory) -> Dcmtk:
    # Imported here, not at the top: importing _dcmtk_charsets skips the module
    # that does so when dcmconv is missing, and that must not be this conftest.
    from tests.dicom._dcmtk_charsets import Dcmtk
    return Dcmtk(tmp_path_factory.mktemp("dcmtk-charsets"))
