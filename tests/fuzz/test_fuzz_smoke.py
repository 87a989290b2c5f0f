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
# An open bug the fuzzer finds within seconds (pinned by a strict xfail in
# tests/dicom/test_properties.py); any other crash fails this test.
KNOWN_BUG = ("Uncaught Python exception", "ValueError: embedded null character", "charset.py", "_fallback_codec")


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
    if proc.returncode != 0 and all(s in log for s in KNOWN_BUG):
        pytest.xfail("the fuzzer hit the known charset bug (see test_properties.py); fix it in charset.py")
    assert proc.returncode == 0, log[-4000:]
    assert "Done" in log and "INITED" in log, log[-2000:]  # libFuzzer actually ran the seeds
    assert not list(tmp_path.glob("crash-*"))
    assert len(os.listdir(corpus)) >= before
