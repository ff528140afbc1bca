"""The docs never rot: every Python block of the README and of ``docs/*.md`` runs, and every
``gnn-truss`` command line of their shell blocks parses with the real argument parsers (the
commands themselves, such as training on 100,000 lattices, are too long for a test)."""
import argparse
import importlib
import re
import shlex
from pathlib import Path

import pytest

from gnn_truss import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(), flags=re.S)


def _command_lines(path: Path) -> list[str]:
    lines = []
    for block in _blocks(path, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith("gnn-truss") or "-m gnn_truss.cli" in part:
                    lines.append(part)
    return lines


def _parse(argv: list[str]) -> None:
    """Parse like :func:`gnn_truss.cli.main` without running; SystemExit on a bad line."""
    parser = cli.build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "passthrough", False):
        module, add_name, _, _ = cli._EXTERNAL[args.command]
        p = argparse.ArgumentParser(prog=f"gnn-truss {args.command}")
        getattr(importlib.import_module(module), add_name)(p)
        p.parse_args(extra)
    elif extra:
        raise SystemExit(f"unrecognized arguments: {extra}")


def test_docs_exist():
    names = {p.name for p in DOCS}
    assert {"README.md", "data.md", "training.md"} <= names


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_python_blocks_run(path, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)  # the examples use repository-relative paths
    for code in _blocks(path, "python"):
        exec(compile(code, str(path), "exec"), {"__name__": "__docs__"})


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_command_lines_parse(path):
    lines = _command_lines(path)
    for line in lines:
        argv = shlex.split(line)
        argv = argv[argv.index("gnn_truss.cli") + 1:] if "gnn_truss.cli" in argv else argv[1:]
        try:
            _parse(argv)
        except SystemExit as exc:
            if exc.code == 0:  # --help
                continue
            pytest.fail(f"{path.name}: `{line}` does not parse ({exc})")


def test_every_subcommand_is_documented():
    """Every CLI subcommand appears in at least one shell example of the docs."""
    text = "\n".join(" ".join(_command_lines(p)) for p in DOCS)
    sub = next(a for a in cli.build_parser()._actions
               if isinstance(a, argparse._SubParsersAction))
    missing = [name for name in sub.choices if f"gnn-truss {name}" not in text
               and f"gnn_truss.cli {name}" not in text]
    assert not missing, f"subcommands without a documented example: {missing}"


def test_a_bad_line_is_caught():
    with pytest.raises(SystemExit):
        _parse(["homogenize", "octet", "--no-such-option"])
    with pytest.raises(SystemExit):
        _parse(["export", "octet", "--format", "obj"])
