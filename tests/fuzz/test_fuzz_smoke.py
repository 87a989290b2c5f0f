"""Run the atheris harness briefly over the committed seeds (skipped without atheris).

The harness runs in a subprocess on a scratch copy of the corpus, so libFuzzer's
new inputs never land in the repository; a crash (any exception but
DicomParseError/PixelDataError) makes libFuzzer exit non-zero.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(HERE, "fuzz_dataset.py")
SEEDS = os.path.join(HERE, "corpus", "dataset")


def test_seed_corpus_is_small_and_readable():
    from dicomnet.dicom.reader import read_file

    names = sorted(os.listdir(SEEDS))
    assert len(names) >= 8
    for name in names:
        path = os.path.join(SEEDS, name)
        assert os.path.getsize(path) < 20_000, name
        assert len(read_file(path)) > 0, name


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed")
def test_fuzz_harness_smoke(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(SEEDS, corpus)
    before = len(os.listdir(corpus))
    proc = subprocess.run(
        [sys.executable, HARNESS, "-runs=20000", "-max_total_time=8", "-seed=1",
         f"-artifact_prefix={tmp_path}/crash-", str(corpus)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "Done" in log and "INITED" in log, log[-2000:]  # libFuzzer actually ran the seeds
    assert not list(tmp_path.glob("crash-*"))
    assert len(os.listdir(corpus)) >= before
