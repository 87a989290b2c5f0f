"""Generative differential test of the data set codec against dcmtk (check 4
of _generative_checks.py): on 20 drawn data sets, ``dcmdump +E`` finds
nothing wrong in any Part 10 file dicomnet writes, and what ``dcmconv`` makes
of each (explicit or undefined lengths, the same syntax or Explicit VR LE,
with or without Data Set Trailing Padding) dicomnet reads back equal.
Skipped when dcmtk is not installed.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dicomnet

# pydicom counts the bytes of escape sequences in a value's length; PS3.5 6.2 does not.
pytestmark = pytest.mark.filterwarnings("ignore:The value length:UserWarning")

pytest.importorskip("pydicom")
from tests.dicom._generative_checks import (_check, from_dicomnet, pydicom_settings, scratch_folder,  # noqa: E402
                                            to_dicomnet)
from tests.dicom._generative_model import IMPLICIT, SETTINGS, SYNTAXES, El, cases  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _pydicom_settings() -> Iterator[None]:
    with pydicom_settings():
        yield


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with scratch_folder() as folder:
        yield folder


@pytest.fixture(scope="module")
def dcmtk() -> Iterator[None]:
    """Skip unless dcmtk's dcmdump and dcmconv are installed; record that dcmtk ran."""
    from tests.integration.peers import record_started, require

    require("dcmdump", "dcmconv")
    yield
    record_started("dcmtk")


def _tool(name: str, *args: Any) -> subprocess.CompletedProcess:
    exe = shutil.which(name)
    assert exe is not None, name
    return subprocess.run([exe, *map(str, args)], capture_output=True, timeout=60, stdin=subprocess.DEVNULL)


def _without_padding(normal: dict[int, tuple[str, Any]]) -> dict[int, tuple[str, Any]]:
    """A normal form without the (FFFC,FFFC) Data Set Trailing Padding dcmconv adds."""
    return {tag: (vr, [_without_padding(item) for item in value] if vr == "SQ" else value)
            for tag, (vr, value) in normal.items() if tag != 0xFFFCFFFC}


def check_dcmtk(model: tuple[El, ...], folder: Path, options: int) -> list[str]:
    """Check 4: dcmdump finds nothing wrong; dcmconv's copy reads back equal."""
    ds = to_dicomnet(model)
    problems = []
    for n, ts in enumerate(SYNTAXES):
        path, copy = folder / f"in{n}.dcm", folder / f"out{n}.dcm"
        dicomnet.write_file(path, ds, ts)
        dump = _tool("dcmdump", "+E", path)
        lines = (dump.stdout + dump.stderr).decode("utf-8", "replace").splitlines()
        bad = [line for line in lines if line.startswith(("W:", "E:", "F:"))]
        if dump.returncode or bad:
            problems.append(f"{ts}: dcmdump exit {dump.returncode}: {bad[:5]}")
        args = ["-e" if (options >> n) & 1 else "+e", "+te" if (options >> (n + 4)) & 1 else "+t="]
        if (options + n) % 3 == 0:
            args += ["+p", "64", "8"]       # Data Set Trailing Padding, in items too (PS3.5 7.5.2 note, 7.5.3)
        conv = _tool("dcmconv", *args, path, copy)
        if conv.returncode:
            problems.append(f"{ts}: dcmconv {' '.join(args)} failed: {conv.stderr.decode()[-500:]}")
            continue
        problems += [f"{ts} dcmconv {' '.join(args)}: {p}" for p in _check(model, ts == IMPLICIT, {
            "dicomnet": lambda: (dicomnet.read_file(copy), lambda d: _without_padding(from_dicomnet(d)))})]
    return problems


@pytest.mark.peers
@settings(max_examples=20, **SETTINGS)
@given(model=cases, options=st.integers(0, 255))
def test_dcmtk_accepts_dicomnet_files(model: tuple[El, ...], options: int, scratch: Path, dcmtk: None) -> None:
    problems = check_dcmtk(model, scratch, options)
    assert not problems, "\n".join(problems[:20])
