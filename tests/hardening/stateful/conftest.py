"""Linux only, as the rest of tests/hardening: the machines count file
descriptors through ``/proc``. The ``collect_ignore_glob`` of
``../conftest.py`` matches only the test files beside it, not those here."""
from __future__ import annotations

import sys

if not sys.platform.startswith("linux"):
    collect_ignore_glob = ["test_*.py"]
