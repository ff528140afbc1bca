"""Where the shipped data and checkpoints are found.

The repository ships its corpus and trained checkpoints under ``datasets/``, and every default
that points at them (``--checkpoint``, a checkpoint's ``data.root``) is a path relative to the
repository root. Run from the root, those paths work as they are; run from anywhere else with
the package installed from a clone (``pip install -e .``), :func:`resolve_shipped` finds them in
the clone. Nothing here reads or writes files at import time.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["SOURCE_ROOT", "DEFAULT_CHECKPOINT", "resolve_shipped", "not_found_message",
           "find_checkpoint"]

#: The directory above the package: the clone's root for an editable install (for an install
#: into ``site-packages``, that folder, which holds no ``datasets/``: nothing is found there).
SOURCE_ROOT = Path(__file__).resolve().parents[1]

#: The shipped default checkpoint, relative to the repository root.
DEFAULT_CHECKPOINT = "datasets/checkpoints/default/model.pt"


def resolve_shipped(path, root: Path | None = None) -> Path:
    """``path`` where it exists; a relative path missing from the working directory is also
    looked up under ``root`` (default :data:`SOURCE_ROOT`).

    Args:
        path: a file or directory path, absolute or relative to the working directory.
        root: where to look second (tests point it elsewhere).

    Returns:
        ``path`` itself when it exists, is absolute, or is missing from ``root`` too (so that
        the caller's own error names the path the user gave); otherwise ``root / path``.
    """
    path = Path(path)
    if path.exists() or path.is_absolute():
        return path
    alt = (SOURCE_ROOT if root is None else Path(root)) / path
    return alt if alt.exists() else path


def not_found_message(path, what: str) -> str:
    """``"<what> not found: <path>"``, naming the second place looked in for a relative path
    (:func:`resolve_shipped`)."""
    path = Path(path)
    if path.is_absolute():
        return f"{what} not found: {path}"
    alt = SOURCE_ROOT / path
    return (f"{what} not found: {path} (looked in the working directory {Path.cwd()} and at "
            f"{alt})")


def find_checkpoint(checkpoint) -> Path:
    """The checkpoint file ``checkpoint`` names (:func:`resolve_shipped`).

    Raises:
        ValueError: a folder, or no such file, naming the places looked in.
    """
    path = resolve_shipped(checkpoint)
    if path.is_dir():
        raise ValueError(f"checkpoint {path} is a folder, not a file; pass the .pt file, e.g. "
                         f"{path / 'best.pt'}")
    if not path.is_file():
        hint = (" (the default checkpoint is not there yet)" if str(checkpoint) ==
                DEFAULT_CHECKPOINT else "")
        raise ValueError(f"{not_found_message(checkpoint, 'checkpoint')}{hint}; pass "
                         f"--checkpoint PATH, e.g. OUT/best.pt of 'gnn-truss train'")
    return path
