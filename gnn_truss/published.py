"""Exchange format of the published dataset (ETH Research Collection,
doi:10.3929/ethz-b-000618078; ``SPEC.md`` section 5), both ways.

Files of a corpus of ``N`` lattices:

=========================  =====================================================================
``adjacency-matrix.npz``   scipy sparse ``(N*27) x 27``, block ``n`` = adjacency of lattice ``n``
``node-offset.npz``        scipy sparse ``(N*27) x 3``, offsets (position - grid position)
``node-position.npz``      scipy sparse ``(N*27) x 3``, node positions in the octant
``stiffness-vec.csv``      ``N x 9``, no header: C11, C12, C13, C22, C23, C33, C44, C55, C66
``stress-strain.csv``      ``N x 13``, optional: sigma(0.5 %) .. sigma(24.5 %), compression > 0
``manifest.json``          optional: how the corpus was made
=========================  =====================================================================

The node order of the published files is not documented (the reference code uses two orders
differing by an x/y swap), so :func:`import_published` identifies it from
``node-position.npz``: a coordinate equal to 0 or 1 is a fixed coordinate of the grid node, any
other value is a free one (grid value 0.5). We export in this package's canonical order with
ones on the adjacency diagonal, as the paper writes it.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from . import design_space as ds
from .corpus import Corpus, pack_adjacency

__all__ = ["PUBLISHED_FILES", "export_published", "import_published", "identify_node_order"]

PUBLISHED_FILES = ("adjacency-matrix.npz", "node-offset.npz", "node-position.npz",
                   "stiffness-vec.csv")
_FIX_TOL = 1e-6


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp" + path.suffix)
    write(tmp)
    os.replace(tmp, path)


def export_published(corpus: Corpus, out) -> Path:
    """Write ``corpus`` in the published exchange format (canonical node order)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = len(corpus)
    adj = corpus.adjacency().astype(np.float64)
    adj[:, np.arange(27), np.arange(27)] = 1.0
    off = corpus.offsets()
    pos = ds.NODE_GRID + off
    _atomic(out / "adjacency-matrix.npz",
            lambda p: sp.save_npz(p, sp.csr_matrix(adj.reshape(n * 27, 27))))
    _atomic(out / "node-offset.npz",
            lambda p: sp.save_npz(p, sp.csr_matrix(off.reshape(n * 27, 3))))
    _atomic(out / "node-position.npz",
            lambda p: sp.save_npz(p, sp.csr_matrix(pos.reshape(n * 27, 3))))
    _atomic(out / "stiffness-vec.csv",
            lambda p: np.savetxt(p, corpus.stiffness, delimiter=",", fmt="%.17g"))
    if corpus.curve is not None:
        _atomic(out / "stress-strain.csv",
                lambda p: np.savetxt(p, corpus.curve, delimiter=",", fmt="%.17g"))
    meta = dict(corpus.meta or {})
    meta["node_order"] = "gnn_truss canonical (SPEC.md section 1)"
    meta["count"] = n
    (out / "manifest.json").write_text(json.dumps(meta, indent=1))
    return out


def _block_order(pos: np.ndarray) -> np.ndarray | None:
    """Canonical index of each of the 27 rows of one lattice block, or None if ambiguous."""
    fixed0 = np.abs(pos) < _FIX_TOL
    fixed1 = np.abs(pos - 1.0) < _FIX_TOL
    grid = np.where(fixed0, 0.0, np.where(fixed1, 1.0, 0.5))
    key = np.rint(grid * 2).astype(int) @ np.array([1, 3, 9])
    ref = np.rint(ds.NODE_GRID * 2).astype(int) @ np.array([1, 3, 9])
    lookup = {k: i for i, k in enumerate(ref)}
    idx = np.array([lookup[k] for k in key])
    return idx if len(np.unique(idx)) == 27 else None


def identify_node_order(positions: np.ndarray, max_blocks: int = 2000) -> np.ndarray:
    """The canonical node index of each row position in the published blocks.

    Args:
        positions: ``[N, 27, 3]`` node positions as stored.
        max_blocks: blocks inspected.

    Returns:
        ``[27]`` int: row ``r`` of every block is canonical node ``order[r]``.

    Raises:
        ValueError: if no block identifies the order or blocks disagree.
    """
    votes: Counter = Counter()
    for blk in positions[:max_blocks]:
        o = _block_order(blk)
        if o is not None:
            votes[tuple(o)] += 1
    if not votes:
        raise ValueError("cannot identify the node order from node-position.npz: no block has "
                         "all 27 nodes recognisable by their fixed coordinates")
    (order, count), *rest = votes.most_common()
    if rest and rest[0][1] > 0.01 * count:
        raise ValueError(f"node-position.npz blocks disagree on the node order "
                         f"({count} vs {rest[0][1]} blocks)")
    return np.array(order)


def _load_sparse(path: Path, cols: int) -> np.ndarray:
    try:
        m = sp.load_npz(path)
    except Exception as exc:
        raise ValueError(f"{path}: not a scipy sparse .npz file ({exc})") from exc
    if m.shape[1] != cols or m.shape[0] % 27:
        raise ValueError(f"{path}: expected shape (N*27, {cols}), got {m.shape}")
    return np.asarray(m.toarray(), dtype=np.float64).reshape(-1, 27, cols)


def import_published(src) -> Corpus:
    """Read a corpus in the published exchange format (any node order, see module doc).

    Adjacency is binarised and symmetrised, its diagonal cleared; offsets are recomputed from
    the positions in the identified order and must vanish on fixed dofs.
    """
    src = Path(src)
    missing = [f for f in PUBLISHED_FILES if not (src / f).exists()]
    if missing:
        raise ValueError(f"{src}: missing published-format files {missing}")
    adj = _load_sparse(src / "adjacency-matrix.npz", 27)
    if len(adj) == 0:
        raise ValueError(f"{src / 'adjacency-matrix.npz'}: holds no lattices")
    pos = _load_sparse(src / "node-position.npz", 3)
    try:
        stiff = np.loadtxt(src / "stiffness-vec.csv", delimiter=",", ndmin=2)
    except ValueError as exc:
        raise ValueError(f"{src / 'stiffness-vec.csv'}: malformed ({exc})") from exc
    n = len(adj)
    if len(pos) != n or stiff.shape != (n, 9):
        raise ValueError(f"{src}: inconsistent sizes: {n} adjacency blocks, {len(pos)} position "
                         f"blocks, stiffness {stiff.shape} (want ({n}, 9))")
    order = identify_node_order(pos)
    inv = np.argsort(order)  # canonical node c is stored at row inv[c]
    pos = pos[:, inv]
    adj = adj[:, inv][:, :, inv] != 0
    adj = adj | np.swapaxes(adj, 1, 2)
    adj[:, np.arange(27), np.arange(27)] = False
    off = pos - ds.NODE_GRID
    bad = np.abs(np.where(ds.FREE_DOF_MASK, 0.0, off)).max(axis=(1, 2)) > _FIX_TOL
    if bad.any():
        raise ValueError(f"{src}: {int(bad.sum())} lattices have nodes off their fixed "
                         f"coordinates (first: lattice {int(np.argmax(bad))})")
    free = ds.pack_offsets(off)
    used = adj.any(axis=2)
    outside = (np.abs(free) > 0.5 + _FIX_TOL) & used[:, ds.FREE_DOF_NODE]
    if outside.any():
        b, k = np.argwhere(outside)[0]
        raise ValueError(f"{src}: {int(outside.any(axis=1).sum())} lattices have used nodes "
                         f"outside the octant [0, 1]^3 (first: lattice {b}, node "
                         f"{ds.FREE_DOF_NODE[k]}, offset {free[b, k]:g})")
    free = np.clip(free, -0.5, 0.5)
    free = free * used[:, ds.FREE_DOF_NODE]  # offsets of unused nodes carry no information
    curve = None
    if (src / "stress-strain.csv").exists():
        curve = np.loadtxt(src / "stress-strain.csv", delimiter=",", ndmin=2)
        if curve.shape != (n, 13):
            raise ValueError(f"{src / 'stress-strain.csv'}: expected ({n}, 13), got "
                             f"{curve.shape}")
    meta = {}
    if (src / "manifest.json").exists():
        try:
            meta = json.loads((src / "manifest.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{src / 'manifest.json'}: corrupt manifest ({exc})") from None
        if not isinstance(meta, dict):
            raise ValueError(f"{src / 'manifest.json'}: corrupt manifest (not a JSON object)")
    meta["imported_from"] = str(src)
    meta["source_node_order"] = order.tolist()
    c = Corpus(pack_adjacency(adj.astype(np.uint8)), free, stiff, curve, meta)
    c.validate_arrays()
    return c
