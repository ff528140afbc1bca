"""Random lattice generation in the octant design space.

:func:`random_subgraph` draws random subgraphs of the 158 near-neighbour candidate beams with
random offsets (a simple generator used by tests and benchmarks).
"""
from __future__ import annotations

import numpy as np

from . import design_space as ds
from .truss import Truss

__all__ = ["random_subgraph", "random_valid_subgraphs"]


def random_subgraph(rng: np.random.Generator, p_edge: float = 0.15,
                    offset_scale: float = 0.5) -> Truss:
    """A random subset of :data:`~gnn_truss.design_space.NEAR_NEIGHBOUR_EDGES` (each kept with
    probability ``p_edge``) with offsets ``~ U(-offset_scale, offset_scale)`` on the free dofs
    of the used nodes. The result need not be valid."""
    keep = rng.random(len(ds.NEAR_NEIGHBOUR_EDGES)) < p_edge
    edges = ds.NEAR_NEIGHBOUR_EDGES[keep]
    off = ds.unpack_offsets(rng.uniform(-offset_scale, offset_scale, ds.NUM_FREE_DOFS))
    pos = ds.NODE_GRID + off
    edges = edges[np.linalg.norm(pos[edges[:, 1]] - pos[edges[:, 0]], axis=1) <= ds.R_MAX]
    t = Truss.from_edges(edges)
    return t.with_offsets(off * t.used[:, None])


def random_valid_subgraphs(n: int, seed: int = 0, p_edge: float = 0.15,
                           offset_scale: float = 0.5, max_tries: int = 1_000_000) -> list[Truss]:
    """``n`` valid lattices from :func:`random_subgraph` (rejection sampling, seeded)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(max_tries):
        t = random_subgraph(rng, p_edge, offset_scale)
        if t.is_valid:
            out.append(t)
            if len(out) == n:
                return out
    raise RuntimeError(f"only {len(out)} valid lattices in {max_tries} draws")
