"""Fixtures of the generative C-FIND matching tests (``test_matching_generative_*.py``,
``test_matching_faults.py``).

``scps`` starts a :class:`SampleHandler` server and a worklist server on loopback,
once per test module, each with an association kept open.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING

import pytest

from dicomnet.cli.store_scp import storage_contexts
from dicomnet.samples.archive import Archive
from dicomnet.samples.server import QR_SOP_CLASSES, SampleHandler

if TYPE_CHECKING:
    from tests.samples._matching_generative import Scp


@pytest.fixture(scope="module")
def scps() -> Iterator[tuple[Scp, Scp]]:
    # Imported here, not at the top: the other tests of this folder need neither
    # hypothesis nor the grid test that _matching_generative brings in.
    from tests.samples._matching_generative import WORKLIST, Scp, WorklistHandler

    with ExitStack() as stack:
        sample = Scp(stack, SampleHandler(Archive()), storage_contexts(also=QR_SOP_CLASSES))
        worklist = Scp(stack, WorklistHandler(), [WORKLIST])
        yield sample, worklist
