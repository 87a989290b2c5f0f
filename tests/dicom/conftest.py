"""Fixtures of the dcmtk file cross-checks (``test_dcmtk_files_*.py``).

``make`` builds the dcmtk-made file of a case of :data:`_dcmtk_files.CASES`
(and dcmtk's view of it) once per test module.
"""
from __future__ import annotations

import shutil

import pytest

from tests.dicom._dcmtk_files import Maker


@pytest.fixture(scope="module")
def make(tmp_path_factory: pytest.TempPathFactory) -> Maker:
    for program in ("dump2dcm", "dcm2xml"):
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed (apt-get install dcmtk)")
    return Maker(tmp_path_factory.mktemp("dcmtk"))
