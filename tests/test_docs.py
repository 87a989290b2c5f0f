"""The code a user copies from the README and ``docs/api.md`` works as written.

* The README's quick start runs as it stands, in a folder holding a ``ct.dcm``
  (a synthetic CT image), with its ``print`` output checked.
* Every keyword argument that ``docs/api.md`` shows in a ``Client(...)``,
  ``client.associate(...)`` or ``Server(...)`` call exists on the real
  signature; a constructor's number, flag or None is its default;
  and every keyword of those signatures is shown (a new option is documented).
* Every option of every ``dicomnet`` subcommand is mentioned in ``docs/cli.md``.
"""
from __future__ import annotations

import ast
import contextlib
import inspect
import io
import os
import re
from pathlib import Path
from typing import Any

import pytest

import dicomnet
from dicomnet.samples.synthetic import generate

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
API = ROOT / "docs" / "api.md"

pytestmark = pytest.mark.skipif(not README.is_file() or not API.is_file(),
                                reason="the documents are not shipped with the wheel")


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def _quick_start() -> str:
    blocks = [b for b in _python_blocks(README) if "dicomnet.Server(" in b]
    assert len(blocks) == 1, "the README has one quick start that runs a Server"
    return blocks[0]


def test_readme_quick_start_runs(tmp_path: Path) -> None:
    ct = next(generate(patients=1, studies=1, series=1, instances=1, rows=32, cols=48))
    dicomnet.write_file(tmp_path / "ct.dcm", ct, "1.2.840.10008.1.2.1")
    code = compile(_quick_start(), str(README), "exec")
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with contextlib.redirect_stdout(out):
            exec(code, {"__name__": "readme"})   # noqa: S102 - our own document
    finally:
        os.chdir(cwd)
    lines = out.getvalue().splitlines()
    # print(ds.PatientName, ds.Rows, ds.Columns), then the handler's
    # print(ctx.calling_ae, dataset.SOPInstanceUID); the query matches nothing.
    assert lines == [f"{ct.PatientName} 32 48", f"ME {ct.SOPInstanceUID}"]
    anon = dicomnet.read_file(tmp_path / "anon.dcm")
    assert anon.PatientName == "Anonymous"
    assert anon.transfer_syntax == "1.2.840.10008.1.2"
    assert (anon.pixel_array == ct.pixel_array).all()


def _documented_calls(name: str) -> list[ast.Call]:
    """The calls ``name(...)`` (a plain name or an attribute) in api.md's code."""
    calls = []
    for block in _python_blocks(API):
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if called == name:
                    calls.append(node)
    return calls


def _keywords(fn: Any) -> dict[str, Any]:
    params = inspect.signature(fn).parameters
    return {p.name: p.default for p in params.values()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"}


@pytest.mark.parametrize(("name", "fn"), [
    ("Client", dicomnet.Client.__init__),
    ("Server", dicomnet.Server.__init__),
    ("associate", dicomnet.Client.associate),
])
def test_api_md_keywords_match_the_signatures(name: str, fn: Any) -> None:
    calls = _documented_calls(name)
    assert calls, f"docs/api.md shows no {name}(...) call"
    real = _keywords(fn)
    shown: set[str] = set()
    for call in calls:
        for kw in call.keywords:
            assert kw.arg in real, f"docs/api.md shows {name}({kw.arg}=...), which does not exist"
            shown.add(kw.arg)
            try:
                literal = ast.literal_eval(kw.value)
            except ValueError:
                continue   # an expression (e.g. a placeholder or a name)
            default = real[kw.arg]
            # The constructors' scalar values are their defaults; a mapping is
            # an example (destinations), and associate() shows uses, not defaults.
            if name != "associate" and isinstance(literal, (int, float, str, type(None))):
                assert literal == default, f"{name}({kw.arg}=...): documented {literal!r}, default {default!r}"
    if name != "associate":   # the snippets show every option of the constructors
        # the positional arguments (AE title, handler) are shown without keywords
        positional = {"ae_title", "handler"}
        missing = set(real) - shown - positional
        assert not missing, f"docs/api.md does not show {name}({', '.join(sorted(missing))})"


CLI = ROOT / "docs" / "cli.md"


def _subcommand_options() -> dict[str, list[tuple[str, ...]]]:
    import argparse

    from dicomnet.cli import build_parser

    parser = build_parser()
    options: dict[str, list[tuple[str, ...]]] = {}
    for action in parser._actions:   # noqa: SLF001 - argparse keeps them nowhere public
        if isinstance(action, argparse._SubParsersAction):   # noqa: SLF001
            for name, sub in action.choices.items():
                subs = [(name, sub)]
                for inner in sub._actions:   # noqa: SLF001 - "bench store"
                    if isinstance(inner, argparse._SubParsersAction):   # noqa: SLF001
                        subs += [(f"{name} {n}", p) for n, p in inner.choices.items()]
                for label, p in subs:
                    options[label] = [tuple(a.option_strings) for a in p._actions   # noqa: SLF001
                                      if a.option_strings and "--help" not in a.option_strings]
    return options


def test_cli_md_documents_every_option() -> None:
    text = CLI.read_text(encoding="utf-8")
    options = _subcommand_options()
    assert {"echo", "store", "find", "move", "get", "store-scp", "sample-server", "dump"} <= set(options)
    # An option counts as documented when one of its spellings (-k or --key) is.
    missing = sorted(f"{command} {'/'.join(spellings)}" for command, opts in options.items()
                     for spellings in opts
                     if not any(re.search(r"(?<![\w-])" + re.escape(s) + r"(?![\w-])", text)
                                for s in spellings))
    assert not missing, f"docs/cli.md does not mention: {', '.join(missing)}"
