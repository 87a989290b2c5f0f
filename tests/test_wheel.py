"""The built wheel is complete: compiled core importable, typing files shipped.

Builds a wheel from a clean copy of the source tree, installs it into a fresh
venv (with numpy from the configured index/cache), and imports every compiled
``dicomnet._codec`` extension from the *installed* package, never the tree.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

# Copied into the build: the tree minus environments, caches and build output.
_IGNORE = shutil.ignore_patterns(
    ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", "*.so", "*.pyd",
    ".pytest_cache", ".hypothesis", ".mypy_cache", "benchmarks", "tests",
)

_PROBE = r"""
import importlib, importlib.machinery, json, pathlib, sys
import dicomnet, dicomnet._codec as codec
codec_dir = pathlib.Path(codec.__file__).parent
found = {}
for path in sorted(codec_dir.iterdir()):
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        if path.name.endswith(suffix):
            name = path.name[: -len(suffix)]
            module = importlib.import_module("dicomnet._codec." + name)
            found[name] = module.__file__
            break  # the most specific suffix comes first
json.dump({"dicomnet": list(dicomnet.__path__), "prefix": sys.prefix, "ext": found}, sys.stdout)
"""


def _run(argv: list[str], cwd: Path, timeout: float) -> str:
    done = subprocess.run(
        argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout
    )
    out = done.stdout.decode(errors="replace")
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{out[-4000:]}"
    return out


def test_wheel_installs_and_ships_the_compiled_core(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=_IGNORE)
    pyx = sorted(p.stem for p in (src / "dicomnet" / "_codec").glob("*.pyx"))
    assert pyx, "no Cython modules under dicomnet/_codec"

    dist = tmp_path / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", ".", "-w", str(dist),
         "--no-build-isolation", "--no-deps", "-q"],
        cwd=src, timeout=600,
    )
    (wheel,) = dist.glob("dicomnet-*.whl")

    names = set(zipfile.ZipFile(wheel).namelist())
    assert "dicomnet/py.typed" in names
    for pattern in ("*.pyi", "*.pxd"):
        shipped = {n for n in names if Path(n).match(pattern)}
        in_tree = {p.relative_to(src).as_posix() for p in (src / "dicomnet").rglob(pattern)}
        assert shipped == in_tree, f"{pattern} files in the wheel differ from the tree"
    assert not [n for n in names if n.endswith((".c", ".pyx"))]

    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    py = env / ("Scripts" if os.name == "nt" else "bin") / "python"
    _run([str(py), "-m", "pip", "install", "-q", str(wheel)], cwd=tmp_path, timeout=300)
    report = json.loads(_run([str(py), "-c", _PROBE], cwd=tmp_path, timeout=60))

    prefix = Path(report["prefix"]).resolve()
    assert prefix == env.resolve()
    assert report["dicomnet"], "dicomnet imported from nowhere"
    for path in report["dicomnet"]:  # __path__: also right for a namespace package
        assert Path(path).resolve().is_relative_to(prefix), path
    assert sorted(report["ext"]) == pyx
    for name, path in report["ext"].items():
        assert Path(path).resolve().is_relative_to(prefix), name
