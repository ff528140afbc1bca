"""The README's Python example runs (docs must not rot)."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    monkeypatch.chdir(README.parent)  # the examples use repository-relative paths
    for code in blocks:
        exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert "28 48" in out  # octet periodic nodes / struts printed by the example


def _bash_blocks() -> list:
    return re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)


def test_first_command_installs_and_runs_the_main_job():
    first = _bash_blocks()[0].strip()
    assert "\n" not in first  # one command
    install, job = [p.strip() for p in first.split("&&")]
    assert install.startswith("pip install") and "-e" in install
    assert job.startswith("gnn-truss design --objective ")
    # the main job runs on what the repository ships
    from gnn_truss.design import DEFAULT_CHECKPOINT, default_corpus_path, load_design_model
    root = README.parent
    assert (root / DEFAULT_CHECKPOINT).is_file()
    _, _, ck = load_design_model(root / DEFAULT_CHECKPOINT)
    assert (root / default_corpus_path(ck)).exists()
    assert (root / "docs" / "images" / "design-max-E22.png").is_file()  # the README's picture


def test_ci_runs_exactly_the_readme_test_command():
    test_cmd = _bash_blocks()[1].strip()
    assert test_cmd == "python -m pytest -q"
    ci = (README.parent / ".ci" / "run").read_text().splitlines()
    assert test_cmd in [line.strip() for line in ci]
