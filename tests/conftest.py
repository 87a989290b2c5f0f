"""Suite-wide hooks.

In CI (``CI=true``) a run that selected peer tests but could start no real
peer at all fails: silently skipping every interop test must not look green.
``DICOMNET_REQUIRE_PEERS=orthanc,dcmtk,pynetdicom`` tightens that to "each of
these kinds ran at least once" (the GitHub workflow sets it).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

_peer_tests_selected = False
_failure: list[str] = []


@pytest.fixture(autouse=True)
def _dicomnet_logger_restored() -> Iterator[None]:
    """The ``dicomnet`` logger as each test found it: a command run in
    process (``dicomnet.cli.main``) gives it a stderr handler and a level for
    good, and background threads of later tests (a socket's closer, ending
    after its test) then wrote their DEBUG lines into the suite's output."""
    logger = logging.getLogger("dicomnet")
    level, handlers = logger.level, list(logger.handlers)
    yield
    logger.setLevel(level)
    for handler in logger.handlers[:]:
        if handler not in handlers:
            logger.removeHandler(handler)


def pytest_collection_finish(session: pytest.Session) -> None:
    global _peer_tests_selected
    _peer_tests_selected = any(item.get_closest_marker("peers") for item in session.items)


def _peer_record(config: pytest.Config) -> tuple[dict[str, int], dict[str, str]]:
    """The peers record of tests/integration (empty when it was not loaded).

    Looked up through the plugin manager, not an import, so it is the very
    dict the peers wrote to whatever pytest's import mode.
    """
    integration = Path(__file__).parent / "integration" / "conftest.py"
    plugin = config.pluginmanager.get_plugin(str(integration))
    return getattr(plugin, "PEERS_STARTED", {}), getattr(plugin, "PEERS_SKIPPED", {})


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI", "").lower() != "true" or not _peer_tests_selected:
        return
    if exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        return  # interrupted or errored: nothing more to say
    started, skipped = _peer_record(session.config)
    required = [k for k in os.environ.get("DICOMNET_REQUIRE_PEERS", "").split(",") if k]
    missing = [k for k in required if not started.get(k)]
    if started and not missing:
        return
    what = "no DICOM peer could run" if not started else f"peers never ran: {missing}"
    reasons = "; ".join(f"{k}: {r}" for k, r in skipped.items()) or "no reason recorded"
    _failure.append(f"CI=true and {what} ({reasons})")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # Runs after pytest_sessionfinish, so the message ends the report.
    for message in _failure:
        terminalreporter.write_sep("=", "FAILED: " + message, red=True)
