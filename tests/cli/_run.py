"""Run the installed ``dicomnet`` console script (or ``python -m dicomnet``) as a subprocess."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def command() -> list[str]:
    script = Path(sys.executable).parent / "dicomnet"
    if script.exists():
        return [str(script)]
    found = shutil.which("dicomnet")
    return [found] if found else [sys.executable, "-m", "dicomnet"]


def run(*args: str, module: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "dicomnet"] if module else command()
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout, env=env,
                          encoding="utf-8")
