"""Finding the shipped data from any working directory (gnn_truss.paths)."""
from pathlib import Path

import pytest

from gnn_truss import paths
from gnn_truss.paths import DEFAULT_CHECKPOINT, not_found_message, resolve_shipped

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def trees(tmp_path, monkeypatch):
    """A fake source tree holding ``data/a.txt`` and an empty working directory."""
    src, cwd = tmp_path / "src", tmp_path / "cwd"
    (src / "data").mkdir(parents=True)
    (src / "data" / "a.txt").write_text("shipped")
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(paths, "SOURCE_ROOT", src)
    return src, cwd


def test_source_root_is_the_clone_and_holds_the_default_checkpoint():
    assert paths.SOURCE_ROOT == REPO
    assert (paths.SOURCE_ROOT / DEFAULT_CHECKPOINT).is_file()


def test_a_relative_path_missing_here_is_found_in_the_source_tree(trees):
    src, _ = trees
    assert resolve_shipped("data/a.txt") == src / "data" / "a.txt"
    assert resolve_shipped(Path("data")) == src / "data"


def test_the_working_directory_comes_first(trees):
    _, cwd = trees
    (cwd / "data").mkdir()
    (cwd / "data" / "a.txt").write_text("mine")
    assert resolve_shipped("data/a.txt") == Path("data/a.txt")
    assert resolve_shipped("data/a.txt").read_text() == "mine"


def test_missing_everywhere_and_absolute_paths_are_returned_as_given(trees, tmp_path):
    assert resolve_shipped("data/b.txt") == Path("data/b.txt")
    absent = tmp_path / "src" / "data" / "b.txt"
    assert resolve_shipped(absent) == absent
    assert resolve_shipped("x", root=tmp_path / "src" / "data") == Path("x")
    assert resolve_shipped("a.txt", root=tmp_path / "src" / "data") == absent.with_name("a.txt")


def test_not_found_message_names_both_places(trees):
    src, cwd = trees
    msg = not_found_message("data/b.txt", "checkpoint")
    assert msg.startswith("checkpoint not found: data/b.txt")
    assert str(cwd) in msg and str(src / "data" / "b.txt") in msg
    assert not_found_message(src / "b.pt", "checkpoint") == f"checkpoint not found: {src / 'b.pt'}"


def test_find_checkpoint(trees, monkeypatch):
    from gnn_truss.paths import find_checkpoint
    src, cwd = trees
    (src / "data" / "m.pt").write_bytes(b"x")
    assert find_checkpoint("data/m.pt") == src / "data" / "m.pt"
    with pytest.raises(ValueError, match="is a folder, not a file"):
        find_checkpoint("data")
    with pytest.raises(ValueError, match="checkpoint not found: data/none.pt") as err:
        find_checkpoint("data/none.pt")
    assert "default checkpoint is not there yet" not in str(err.value)
    monkeypatch.setattr(paths, "DEFAULT_CHECKPOINT", "data/none.pt")
    with pytest.raises(ValueError, match="default checkpoint is not there yet"):
        find_checkpoint("data/none.pt")
