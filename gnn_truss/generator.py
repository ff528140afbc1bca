"""Random lattice generation in the octant design space.

The paper's generator (Zheng et al. 2023, Methods and Supplementary Note 1; ``SPEC.md`` 2):

1. start from an elementary lattice (:data:`~gnn_truss.design_space.SEED_LATTICES`);
2. apply ``iterations`` (10) random perturbations, each one of: insert a node (any type) joined
   to at least one of its nearest used neighbours within ``sqrt(3)/2``; remove a node with its
   beams; insert a beam between two used nodes within ``sqrt(3)/2``; remove a beam; move a node
   (offsets ``~ U(-0.5, 0.5)`` on its free dofs);
3. light repair (:func:`repair`: drop over-long beams, prune dangling nodes), then keep the
   result if it passes :meth:`~gnn_truss.truss.Truss.validate`, otherwise start over;
4. superpose two such lattices (adjacency OR, repetition allowed) and keep the result if valid.

Every draw comes from a ``numpy.random.Generator``; :func:`shard_rng` gives independent,
reproducible streams per shard/worker (``SeedSequence`` spawning), so two workers never repeat
each other's samples. Deduplication is by :meth:`~gnn_truss.truss.Truss.canonical_hash`.

:func:`random_subgraph` (random subsets of the 158 near-neighbour beams) is a simpler sampler
used by tests and benchmarks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import design_space as ds
from .truss import Truss

__all__ = ["GeneratorConfig", "perturb", "repair", "sample_perturbed", "sample_lattice", "generate",
           "shard_rng", "random_subgraph", "random_valid_subgraphs", "GENERATOR_VERSION"]

GENERATOR_VERSION = "1"

_OPS = ("add_node", "remove_node", "add_edge", "remove_edge", "move_node")


@dataclass(frozen=True)
class GeneratorConfig:
    """Parameters of the paper-style generator.

    Attributes:
        iterations: perturbation steps per lattice (paper: 10).
        op_weights: relative frequencies of ``add_node, remove_node, add_edge, remove_edge,
            move_node``.
        max_new_links: a new node joins 1..max_new_links of its nearest used neighbours.
        offset_range: offsets are drawn from ``U(-offset_range, offset_range)`` (paper: 0.5).
        superpose_prob: probability that a sample is the superposition of two perturbed
            lattices rather than one.
        max_tries: attempts per sample before giving up.
        seeds: names of the elementary lattices to start from.
    """

    iterations: int = 10
    op_weights: tuple[float, ...] = (1.0, 0.6, 1.0, 0.6, 1.2)
    max_new_links: int = 3
    offset_range: float = 0.5
    superpose_prob: float = 1.0
    max_tries: int = 200
    seeds: tuple[str, ...] = ds.SEED_LATTICES

    def __post_init__(self):
        if self.iterations < 0:
            raise ValueError("iterations must be >= 0")
        if len(self.op_weights) != len(_OPS) or min(self.op_weights) < 0 or \
                sum(self.op_weights) <= 0:
            raise ValueError(f"op_weights needs {len(_OPS)} non-negative weights for {_OPS}")
        if not 0 <= self.offset_range <= 0.5:
            raise ValueError("offset_range must lie in [0, 0.5]")
        if self.max_new_links < 1:
            raise ValueError("max_new_links must be >= 1")
        if not 0 <= self.superpose_prob <= 1:
            raise ValueError("superpose_prob must lie in [0, 1]")
        if self.max_tries < 1:
            raise ValueError("max_tries must be >= 1")
        unknown = set(self.seeds) - set(ds.ELEMENTARY_LATTICES)
        if unknown or not self.seeds:
            raise ValueError(f"unknown seed lattices {sorted(unknown)}")


def shard_rng(seed: int, shard: int) -> np.random.Generator:
    """Independent generator of shard ``shard`` of a run seeded with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(shard,)))


def _draw_offsets(rng, nodes, off, scale):
    for n in nodes:
        free = ds.FREE_DOF_MASK[n]
        off[n] = np.where(free, rng.uniform(-scale, scale, 3), 0.0)


def perturb(truss: Truss, rng: np.random.Generator,
            config: GeneratorConfig = GeneratorConfig()) -> Truss:
    """Apply ``config.iterations`` random perturbations to ``truss`` (result may be invalid)."""
    adj = truss.adjacency.copy()
    off = truss.offsets.copy()
    p = np.asarray(config.op_weights, dtype=float)
    p /= p.sum()
    for _ in range(config.iterations):
        op = _OPS[rng.choice(len(_OPS), p=p)]
        used = np.flatnonzero(adj.any(axis=1))
        pos = ds.NODE_GRID + off
        if op == "add_node":
            unused = np.setdiff1d(np.arange(ds.NUM_NODES), used)
            if len(unused) == 0 or len(used) == 0:
                continue
            n = rng.choice(unused)
            _draw_offsets(rng, [n], off, config.offset_range)
            pos = ds.NODE_GRID + off
            d = np.linalg.norm(pos[used] - pos[n], axis=1)
            near = used[np.argsort(d)][np.sort(d) <= ds.R_MAX]
            if len(near) == 0:
                off[n] = 0.0
                continue
            k = min(len(near), 1 + rng.integers(config.max_new_links))
            adj[n, near[:k]] = adj[near[:k], n] = 1
        elif op == "remove_node":
            if len(used) <= 2:
                continue
            n = rng.choice(used)
            adj[n, :] = adj[:, n] = 0
            off[n] = 0.0
        elif op == "add_edge":
            if len(used) < 2:
                continue
            d = np.linalg.norm(pos[used][:, None] - pos[used][None], axis=2)
            i, j = np.nonzero(np.triu(d <= ds.R_MAX, k=1) & (adj[np.ix_(used, used)] == 0))
            if len(i) == 0:
                continue
            k = rng.integers(len(i))
            a, b = used[i[k]], used[j[k]]
            adj[a, b] = adj[b, a] = 1
        elif op == "remove_edge":
            i, j = np.nonzero(np.triu(adj, k=1))
            if len(i) <= 1:
                continue
            k = rng.integers(len(i))
            adj[i[k], j[k]] = adj[j[k], i[k]] = 0
        else:  # move_node
            movable = used[ds.NODE_TYPE[used] > 0]
            if len(movable) == 0:
                continue
            _draw_offsets(rng, [rng.choice(movable)], off, config.offset_range)
    off[~adj.any(axis=1)] = 0.0  # offsets of unused nodes carry no information
    return Truss(adj, off)


def repair(truss: Truss) -> Truss:
    """Light repair: drop beams longer than ``sqrt(3)/2``, then repeatedly drop the beams of
    nodes with fewer than two beams in the periodic cell (dangling nodes). The result may
    still be invalid (e.g. disconnected or not spanning the cell)."""
    adj = truss.adjacency.copy()
    pos = truss.positions
    i, j = np.nonzero(np.triu(adj, k=1))
    long = np.linalg.norm(pos[j] - pos[i], axis=1) > ds.R_MAX + 1e-9
    adj[i[long], j[long]] = adj[j[long], i[long]] = 0
    while True:
        t = Truss(adj, truss.offsets * adj.any(axis=1)[:, None])
        dangling = t.used & (t.physical_degree() < 2)
        if not dangling.any():
            return t
        adj[dangling, :] = 0
        adj[:, dangling] = 0


def sample_perturbed(rng: np.random.Generator,
                     config: GeneratorConfig = GeneratorConfig()) -> Truss:
    """One valid perturbed elementary lattice (rejection sampling)."""
    for _ in range(config.max_tries):
        seed = Truss.elementary(config.seeds[rng.integers(len(config.seeds))])
        t = repair(perturb(seed, rng, config))
        if t.num_edges and t.is_valid:
            return t
    raise RuntimeError(f"no valid perturbed lattice in {config.max_tries} tries")


def sample_lattice(rng: np.random.Generator,
                   config: GeneratorConfig = GeneratorConfig()) -> Truss:
    """One valid lattice: the superposition of two perturbed lattices (probability
    ``superpose_prob``) or a single one."""
    for _ in range(config.max_tries):
        a = sample_perturbed(rng, config)
        if rng.random() >= config.superpose_prob:
            return a
        t = a.superpose(sample_perturbed(rng, config))
        if t.is_valid:
            return t
    raise RuntimeError(f"no valid superposed lattice in {config.max_tries} tries")


def generate(n: int, rng: np.random.Generator, config: GeneratorConfig = GeneratorConfig(),
             seen: set | None = None, max_draws: int | None = None) -> list[Truss]:
    """``n`` unique valid lattices (unique by canonical hash, also against ``seen``, which is
    updated in place)."""
    seen = set() if seen is None else seen
    out = []
    draws = 0
    limit = max_draws if max_draws is not None else 50 * n + 1000
    while len(out) < n:
        if draws >= limit:
            raise RuntimeError(f"only {len(out)} unique lattices in {draws} draws")
        draws += 1
        t = sample_lattice(rng, config)
        h = t.canonical_hash()
        if h not in seen:
            seen.add(h)
            out.append(t)
    return out


def random_subgraph(rng: np.random.Generator, p_edge: float = 0.15,
                    offset_scale: float = 0.5) -> Truss:
    """A random subset of :data:`~gnn_truss.design_space.NEAR_NEIGHBOUR_EDGES` (each kept with
    probability ``p_edge``) with offsets ``~ U(-offset_scale, offset_scale)`` on the free dofs
    of the used nodes; beams the offsets stretch beyond ``sqrt(3)/2`` are dropped. The result
    need not be valid."""
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
