"""The CI configuration says what it means, though it cannot run here.

There is no GitHub here, so the workflows in ``.github/workflows`` and the
``[tool.cibuildwheel]`` table never run before they are pushed. What can be
checked offline is checked: every workflow is valid against GitHub's
workflow schema (check-jsonschema's vendored copy), and cibuildwheel, asked
what each runner of ``wheels.yml`` would build, names exactly the wheels the
project promises -- CPython 3.10 to 3.13 on Linux x86_64 and aarch64, macOS
x86_64 and arm64, and Windows AMD64.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))

PYTHONS = ("cp310", "cp311", "cp312", "cp313")
PLATFORM_TAGS = ("manylinux_x86_64", "manylinux_aarch64", "macosx_x86_64", "macosx_arm64", "win_amd64")
PROMISED = {f"{py}-{tag}" for py in PYTHONS for tag in PLATFORM_TAGS}

#: The cibuildwheel platform of each runner image wheels.yml names.
RUNNER_PLATFORM = {"ubuntu": "linux", "macos": "macos", "windows": "windows"}


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)


def test_the_workflows_exist() -> None:
    assert {p.name for p in WORKFLOWS} >= {"test.yml", "wheels.yml"}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_is_valid_against_githubs_schema(workflow: Path) -> None:
    pytest.importorskip("check_jsonschema", reason="check-jsonschema is in the test extra")
    done = _run("check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(workflow))
    assert done.returncode == 0, done.stdout + done.stderr


def _wheel_matrix() -> list[dict[str, str]]:
    yaml = pytest.importorskip("ruamel.yaml", reason="ruamel.yaml comes with check-jsonschema")
    doc = yaml.YAML(typ="safe").load((ROOT / ".github" / "workflows" / "wheels.yml").read_text())
    return list(doc["jobs"]["wheels"]["strategy"]["matrix"]["include"])


def _identifiers(platform: str, archs: str) -> set[str]:
    # The runner's environment, not ours: no CIBW_* settings leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIBW_")}
    env["CIBW_ARCHS"] = archs
    done = _run("cibuildwheel", "--print-build-identifiers", "--platform", platform, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return set(done.stdout.split())


def test_each_wheels_runner_builds_its_share_of_the_promised_wheels() -> None:
    pytest.importorskip("cibuildwheel", reason="cibuildwheel is in the test extra")
    built: dict[str, set[str]] = {}
    for entry in _wheel_matrix():
        platform = RUNNER_PLATFORM[entry["os"].split("-")[0]]
        wheels = _identifiers(platform, entry["archs"])
        assert wheels, f"runner {entry} would build nothing"
        for other, theirs in built.items():
            assert not wheels & theirs, f"runners {entry['os']} and {other} would both build {wheels & theirs}"
        built[entry["os"]] = wheels
    everything = set().union(*built.values())
    assert everything == PROMISED, (f"missing: {sorted(PROMISED - everything)}; "
                                    f"unexpected: {sorted(everything - PROMISED)}")


def test_the_wheel_workflow_uses_the_cibuildwheel_the_tests_check() -> None:
    """wheels.yml pins a cibuildwheel range; the test extra asks for the same one,
    so the identifiers checked above are what that range prints."""
    text = (ROOT / ".github" / "workflows" / "wheels.yml").read_text()
    extras = (ROOT / "pyproject.toml").read_text()
    pin = '"cibuildwheel>=2.22,<3"'
    assert pin in text
    assert pin in extras
