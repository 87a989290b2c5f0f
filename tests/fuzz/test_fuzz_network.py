"""Run the network fuzz harnesses (PDU decoder, state machine, DIMSE command
decoder) for a bounded time each over the committed seeds; skipped without atheris.

Each harness runs in a subprocess on a scratch copy of its seeds (libFuzzer's
new inputs never land in the repository); a crash makes libFuzzer exit non-zero
and leaves a ``crash-*`` artifact. The executions are written to
``build/reliability/fuzz.json`` for ``tools/reliability_report.py``.
Budget: FUZZ_SECONDS (default 10) per harness; with the data set smoke test all fuzz tests take under a minute.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SECONDS = int(os.environ.get("FUZZ_SECONDS", "10"))
HARNESSES = {"pdu": ("fuzz_pdu.py", "pdu"), "fsm": ("fuzz_fsm.py", "pdu"), "dimse": ("fuzz_dimse.py", "dimse")}


def test_seed_corpora_are_committed_and_small():
    for _, corpus in HARNESSES.values():
        folder = os.path.join(HERE, "corpus", corpus)
        names = os.listdir(folder)
        assert len(names) >= 8, corpus
        assert all(os.path.getsize(os.path.join(folder, n)) < 4096 for n in names)


def _record(name: str, runs: int, seconds: int) -> None:
    out = os.path.join(ROOT, "build", "reliability")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "fuzz.json")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        data = {}
    data[name] = {"executions": runs, "seconds": seconds, "crashes": 0}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed")
@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_fuzz_harness_runs_clean(tmp_path, name):
    script, corpus = HARNESSES[name]
    seeds = tmp_path / "corpus"
    shutil.copytree(os.path.join(HERE, "corpus", corpus), seeds)
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, script), f"-max_total_time={SECONDS}", "-seed=1",
         "-rss_limit_mb=1024", f"-artifact_prefix={tmp_path}/crash-", str(seeds)],
        capture_output=True, text=True, timeout=SECONDS + 90, cwd=tmp_path,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "INITED" in log, log[-2000:]
    assert not list(tmp_path.glob("crash-*"))
    done = re.search(r"Done (\d+) runs in (\d+) second", log)
    assert done, log[-2000:]
    runs = int(done.group(1))
    assert runs > 1000, runs   # it really executed inputs, not just the seeds
    _record(name, runs, int(done.group(2)))
