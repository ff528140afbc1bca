"""Reading and writing single lattices.

Lattice file (``.json``)::

    {"format": "gnn_truss.lattice", "version": 1,
     "edges": [[i, j], ...],            # octant node pairs, 0-based canonical indices
     "offsets": [27 floats],            # free-dof offsets in canonical free-dof order
     "name": "optional label", "meta": {...}}

``.npz`` files with ``adjacency [27, 27]`` and ``offsets [27, 3]`` (or ``[27]``) are read too.
Any of the elementary lattice names (``sc``, ``bcc``, ``octet``, ...) can stand in for a file
wherever the CLI takes a lattice.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from . import design_space as ds
from .truss import Truss

__all__ = ["save_lattice", "load_lattice", "resolve_lattice", "LATTICE_FORMAT"]

LATTICE_FORMAT = "gnn_truss.lattice"


def save_lattice(truss: Truss, path, name: str | None = None, meta: dict | None = None) -> Path:
    """Write ``truss`` as a lattice JSON file (atomically: temp file then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"format": LATTICE_FORMAT, "version": 1,
           "edges": truss.edges.tolist(), "offsets": truss.free_offsets.tolist()}
    if name:
        doc["name"] = name
    if meta:
        doc["meta"] = meta
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)
    return path


def load_lattice(path) -> Truss:
    """Read a lattice from ``.json`` or ``.npz``; raises ``ValueError`` naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"lattice file not found: {path}")
    if path.suffix == ".npz":
        try:
            z = np.load(path)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("a single array, not an npz archive")
            with z:
                arrays = {k: z[k] for k in ("adjacency", "offsets") if k in z.files}
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:  # a corrupt file
            raise ValueError(f"{path}: not a readable npz file ({exc})") from exc
        if "adjacency" not in arrays:
            raise ValueError(f"{path}: npz lattice needs an 'adjacency' array")
        try:
            return Truss(arrays["adjacency"], arrays.get("offsets"))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a valid lattice JSON file ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != LATTICE_FORMAT:
        raise ValueError(f"{path}: not a gnn_truss lattice file (missing "
                         f"\"format\": \"{LATTICE_FORMAT}\")")
    unknown = set(doc) - {"format", "version", "edges", "offsets", "name", "meta"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    if "edges" not in doc:
        raise ValueError(f"{path}: missing 'edges'")
    if doc.get("version", 1) != 1:
        raise ValueError(f"{path}: unsupported lattice file version {doc['version']!r} "
                         f"(this gnn_truss reads version 1)")
    try:  # float first: 0.5 is refused as a node index below instead of truncated to 0
        edges = np.asarray(doc["edges"], dtype=np.float64)
        offsets = np.asarray(doc.get("offsets", np.zeros(ds.NUM_FREE_DOFS)), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: malformed 'edges' or 'offsets' ({exc})") from exc
    try:
        return Truss(ds.edges_to_adjacency(edges), offsets)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def resolve_lattice(spec: str) -> tuple[Truss, str]:
    """A lattice from an elementary name or a file path; returns ``(truss, label)``."""
    if spec in ds.ELEMENTARY_LATTICES:
        return Truss.elementary(spec), spec
    path = Path(spec)
    if path.exists():
        return load_lattice(path), path.stem
    raise ValueError(f"{spec!r} is neither an elementary lattice "
                     f"({', '.join(ds.ELEMENTARY_LATTICES)}) nor an existing file")
