"""Distribution statistics of a lattice corpus (topology, geometry and elastic properties).

:func:`corpus_statistics` summarises a :class:`~gnn_truss.corpus.Corpus`: used nodes and beams
per lattice, share of each node type among used nodes, share of lattices with beam crossings,
strut radius, and the range and quantiles of the engineering constants (E_i, G_ij, nu_ij),
A_U and K_V/G_V computed from the stiffness labels.
"""
from __future__ import annotations

import numpy as np

from . import design_space as ds
from .corpus import Corpus, unpack_adjacency
from .properties import all_properties, stiffness_from_vector

__all__ = ["corpus_properties", "corpus_statistics"]


def corpus_properties(corpus: Corpus) -> dict[str, np.ndarray]:
    """All elastic properties (:func:`gnn_truss.properties.all_properties`) of every lattice,
    ``{name: [N]}``."""
    C = stiffness_from_vector(np.asarray(corpus.stiffness, dtype=np.float64))
    return {k: np.asarray(v) for k, v in all_properties(C).items()}


def _summary(v: np.ndarray) -> dict:
    v = np.asarray(v, dtype=np.float64)
    q = np.quantile(v, [0.0, 0.01, 0.5, 0.99, 1.0])
    return {"min": q[0], "p01": q[1], "median": q[2], "p99": q[3], "max": q[4],
            "mean": float(v.mean())}


def corpus_statistics(corpus: Corpus, geometry_sample: int = 5000, seed: int = 0) -> dict:
    """Statistics of a corpus as a JSON-ready dict.

    Args:
        corpus: the corpus.
        geometry_sample: lattices (random subset) on which crossings and strut radii are
            computed (these need the octant FE model; counts and properties use all lattices).
        seed: seed of that subset.
    """
    from .truss import Truss

    n = len(corpus)
    if n == 0:
        raise ValueError("the corpus is empty: no lattices to compute statistics of")
    if isinstance(geometry_sample, bool) or not isinstance(geometry_sample, (int, np.integer)) \
            or geometry_sample < 1:
        raise ValueError(f"geometry_sample must be a positive integer, got {geometry_sample!r}")
    adj = unpack_adjacency(corpus.adj)
    used = adj.any(axis=2)
    beams = adj.sum(axis=(1, 2)) // 2
    type_counts = np.array([(used & (ds.NODE_TYPE == t)).sum() for t in range(4)], float)
    rng = np.random.default_rng(seed)
    pick = rng.choice(n, size=min(n, geometry_sample), replace=False)
    offs = corpus.offsets()
    crossings, radius = [], []
    for i in pick:
        t = Truss(adj[i], offs[i])
        crossings.append(t.model.num_crossings)
        radius.append(t.radius(corpus.meta.get("density", 0.15) if corpus.meta else 0.15))
    props = corpus_properties(corpus)
    out = {
        "num_lattices": n,
        "used_nodes": _summary(used.sum(axis=1)),
        "beams": _summary(beams),
        "node_type_share": {name: float(c / type_counts.sum())
                            for name, c in zip(ds.NODE_TYPES, type_counts)},
        "share_with_crossings": float(np.mean(np.asarray(crossings) > 0)),
        "crossings_per_lattice": _summary(crossings),
        "radius": _summary(radius),
        "geometry_sample": len(pick),
        "properties": {k: _summary(v) for k, v in props.items()},
    }
    return _plain(out)


def _plain(x):
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x
