r"""Constrained decoding of adjacency logits: the most probable adjacency that is a lattice.

The adjacency decoder gives independent Bernoulli logits :math:`l_k` for the 351 node pairs;
threshold decoding (``logit > 0``, :func:`gnn_truss.evaluation.decode_trusses`) takes the most
probable adjacency. Every lattice of the corpus satisfies the topology rules
(:data:`gnn_truss.truss.TOPOLOGY_RULES`: one connected component, spanning the cell, no
dangling node), which depend on the adjacency alone. When the threshold adjacency breaks one,
constrained decoding looks for the most probable adjacency that satisfies them all.

Flipping entry :math:`k` away from its threshold value lowers the log-probability by exactly
:math:`|l_k|` (:math:`\log\sigma(-|l|) - \log\sigma(|l|) = -|l|`), so a set :math:`S` of flips
costs :math:`\sum_{k \in S} |l_k|`. The search takes the ``candidates`` least confident
entries, ranks every set of 1 to ``max_flips`` of them by cost and returns the first set
whose adjacency passes the rules: the most probable valid adjacency within that
neighbourhood. A lattice for which no set works keeps its threshold adjacency (status
``"unrepaired"``); one whose threshold adjacency is already valid is left unchanged, so the
decoding only changes adjacencies that cannot be a lattice of the corpus.

The result is returned as logits whose signs encode the chosen adjacency (a flipped entry's
logit is negated, keeping its magnitude), so every consumer of logits (metrics, decoding,
comparison) reads it unchanged. It uses the logits of one latent point only: a single-pass
decoding, not an ensemble.

The offsets have a rule of their own, ``max_length`` (every beam at most
:math:`\sqrt{3}/2`, :data:`~gnn_truss.truss.RULES`), and the lattices decoded from prior samples
break it far more often than any other rule. :func:`fit_lengths` moves the decoded offsets to
the nearest ones (Euclidean, over the 27 free dofs) under which every beam is short enough: the
projection onto a convex set, since a beam's length is a convex function of the offsets and the
offset box is convex. The set is never empty when every beam joins one of the 158 pairs at
most :math:`\sqrt{3}/2` apart on the grid (:data:`~gnn_truss.design_space.NEAR_NEIGHBOUR_EDGES`:
the zero offsets satisfy them); a beam on any other pair has two fixed coordinates 1 apart and
is too long for every choice of offsets.

Shapes: ``logits [B, 351]`` (upper triangle, :func:`gnn_truss.design_space.adjacency_to_triu`
order); ``adjacency [27, 27]``; free offsets ``[27]``
(:func:`gnn_truss.design_space.pack_offsets` order), in units of the octant side.
"""
from __future__ import annotations

import itertools
import math
from functools import lru_cache

import numpy as np
import torch

from . import design_space as ds
from .truss import topology_violations

__all__ = ["STATUS", "CANDIDATES", "MAX_FLIPS", "constrained_logits", "constrained_adjacency",
           "FIT_STATUS", "LENGTH_TOL", "fit_lengths"]

#: Status codes of :func:`constrained_logits`, by index: the threshold adjacency was valid,
#: a valid one was found by flipping, none was found (threshold adjacency kept).
STATUS = ("valid", "repaired", "unrepaired")
#: Default search: sets of up to ``MAX_FLIPS`` of the ``CANDIDATES`` least confident entries
#: (on 3,000 validation lattices of the seventeenth-stage model, 12 and 3 already gave the
#: exact match of 30 and 4; 20 and 3 left none unrepaired).
CANDIDATES = 20
MAX_FLIPS = 3
#: The most sets of flips one search may rank (memory: two ``[S, max_flips]`` arrays).
MAX_SETS = 1_000_000


@lru_cache(maxsize=8)
def _flip_sets(candidates: int, max_flips: int) -> tuple[np.ndarray, np.ndarray]:
    """Every set of 1..max_flips of ``candidates`` positions: ``[S, max_flips]`` indices
    padded with 0 and the ``[S, max_flips]`` bool mask of the real ones."""
    sets = [s for r in range(1, max_flips + 1)
            for s in itertools.combinations(range(candidates), r)]
    idx = np.zeros((len(sets), max_flips), np.int64)
    mask = np.zeros((len(sets), max_flips), bool)
    for i, s in enumerate(sets):
        idx[i, :len(s)] = s
        mask[i, :len(s)] = True
    return idx, mask


def _check(logits) -> tuple[np.ndarray, bool]:
    is_tensor = isinstance(logits, torch.Tensor)
    lg = logits.detach().cpu().double().numpy() if is_tensor else np.asarray(logits, float)
    if lg.ndim != 2 or lg.shape[1] != ds.NUM_PAIRS:
        raise ValueError(f"logits must be [B, {ds.NUM_PAIRS}], got shape {lg.shape}")
    if not np.all(np.isfinite(lg)):
        raise ValueError("logits contain NaN or inf")
    return lg, is_tensor


def constrained_adjacency(logits, candidates: int = CANDIDATES, max_flips: int = MAX_FLIPS
                          ) -> tuple[np.ndarray, np.ndarray]:
    """The most probable adjacency passing the topology rules, per lattice (module docstring).

    Args:
        logits: ``[B, 351]`` adjacency logits (tensor or array).
        candidates: how many of the least confident entries may be flipped (1..351).
        max_flips: the most entries flipped at once (1..candidates).

    Returns:
        ``(bits [B, 351] bool, status [B] int8)``, ``status`` indexing :data:`STATUS`.

    Raises:
        ValueError: for a wrong shape, non-finite logits or out-of-range search sizes (more
            than :data:`MAX_SETS` sets of flips).
    """
    lg, _ = _check(logits)
    if not 1 <= int(candidates) <= ds.NUM_PAIRS:
        raise ValueError(f"candidates must be in 1..{ds.NUM_PAIRS}, got {candidates}")
    if not 1 <= int(max_flips) <= int(candidates):
        raise ValueError(f"max_flips must be in 1..candidates ({candidates}), got {max_flips}")
    num_sets = sum(math.comb(int(candidates), r) for r in range(1, int(max_flips) + 1))
    if num_sets > MAX_SETS:
        raise ValueError(f"candidates={candidates} with max_flips={max_flips} gives {num_sets} "
                         f"sets of flips to rank; at most {MAX_SETS} are allowed")
    idx, mask = _flip_sets(int(candidates), int(max_flips))
    bits = lg > 0
    status = np.zeros(len(lg), np.int8)
    for b in range(len(lg)):
        if not topology_violations(bits[b]):
            continue
        order = np.argsort(np.abs(lg[b]), kind="stable")[:candidates]
        cost = np.where(mask, np.abs(lg[b])[order][idx], 0.0).sum(axis=1)
        status[b] = 2
        for s in np.argsort(cost, kind="stable"):
            trial = bits[b].copy()
            flip = order[idx[s][mask[s]]]
            trial[flip] = ~trial[flip]
            if not topology_violations(trial):
                bits[b] = trial
                status[b] = 1
                break
    return bits, status


def constrained_logits(logits, candidates: int = CANDIDATES, max_flips: int = MAX_FLIPS):
    """:func:`constrained_adjacency` as logits: each flipped entry's logit negated.

    Args:
        logits: ``[B, 351]`` adjacency logits (tensor or array).
        candidates, max_flips: as :func:`constrained_adjacency`.

    Returns:
        ``(logits [B, 351], status [B] int8)``; the logits have the input's type (a tensor on
        the input's device and dtype, or a float array) and satisfy
        ``(out > 0) == bits`` of :func:`constrained_adjacency`.
    """
    bits, status = constrained_adjacency(logits, candidates, max_flips)
    lg, is_tensor = _check(logits)
    flipped = np.where(bits, np.maximum(-lg, np.finfo(float).tiny), -lg)  # a 0 logit -> True
    out = np.where(bits == (lg > 0), lg, flipped)
    if is_tensor:
        return torch.as_tensor(out, dtype=logits.dtype, device=logits.device), status
    return out, status


# --------------------------------------------------------------------------- beam lengths

#: Status of :func:`fit_lengths`: no beam too long (offsets unchanged); projected (the
#: nearest offsets found by SLSQP); pulled (the SLSQP point left a beam too long by more than
#: :data:`LENGTH_TOL` and was moved towards the zero offsets until none is); inadmissible (a
#: beam joins a pair outside :data:`~gnn_truss.design_space.NEAR_NEIGHBOUR_EDGES`: no offsets
#: help, offsets unchanged).
FIT_STATUS = ("valid", "projected", "pulled", "inadmissible")
#: How far above ``sqrt(3)/2`` a fitted beam may end (the ``max_length`` rule allows 1e-9).
LENGTH_TOL = 1e-10
_FIT_STARTS = 3  # SLSQP runs at most, each from the admissible point the last one led to

def _beam_vectors(edges: np.ndarray):
    """Closures giving ``[E, 3]`` beam vectors ``p_i - p_j`` of free offsets ``x [27]`` and the
    ``[E, 27]`` Jacobian of their squared lengths."""
    i, j = edges[:, 0], edges[:, 1]
    beam = np.arange(len(edges))

    def vec(x):
        p = ds.NODE_GRID + ds.unpack_offsets(x)
        return p[i] - p[j]

    def jac_sq(x):
        d = vec(x)
        g = np.zeros((len(edges), ds.NUM_NODES, 3))  # d|p_i - p_j|^2 / d p, per node
        g[beam, i] = 2 * d
        g[beam, j] = -2 * d
        return g[:, ds.FREE_DOF_NODE, ds.FREE_DOF_AXIS]
    return vec, jac_sq


def fit_lengths(adjacency, offsets, max_iter: int = 200) -> tuple[np.ndarray, str]:
    r"""The free offsets nearest to ``offsets`` under which every beam is at most ``sqrt(3)/2``.

    Minimises :math:`\|x - x_0\|^2` over the 27 free offsets subject to
    :math:`\|p_i(x) - p_j(x)\| \le \sqrt{3}/2` for every beam and
    :math:`-0.5 \le x \le 0.5` (a convex problem; module docstring), by SLSQP with the exact
    gradients. Where the problem is degenerate (e.g. a body node held by beams to opposite
    vertices, whose only admissible position is the centre) SLSQP can end a hair outside; the
    point is then moved along the segment towards the zero offsets (which satisfy every
    admissible beam) just far enough that no beam exceeds ``sqrt(3)/2`` by more than
    :data:`LENGTH_TOL` (status ``"pulled"``). Where SLSQP stops early (a failed line search),
    it is run again from that admissible point, up to three runs in all, and the nearest
    admissible point found is returned. Only lengths are fitted: topology, unused nodes'
    offsets and the other rules are not looked at.

    Args:
        adjacency: ``[27, 27]`` symmetric binary adjacency.
        offsets: ``[27]`` free offsets or ``[27, 3]`` offsets, in ``[-0.5, 0.5]``.
        max_iter: SLSQP iteration limit.

    Returns:
        ``(offsets [27] float64, status)`` with ``status`` in :data:`FIT_STATUS`; for
        ``"valid"`` and ``"inadmissible"`` the offsets are the input's, unchanged.

    Raises:
        ValueError: for a malformed adjacency or offsets (via :class:`~gnn_truss.truss.Truss`).
    """
    from scipy.optimize import minimize

    from .truss import Truss
    t = Truss(adjacency, offsets)
    x0 = t.free_offsets.astype(np.float64)
    edges = t.edges
    if len(edges) == 0 or np.all(t.edge_lengths <= ds.R_MAX + 1e-9):
        return x0, "valid"
    if np.any(t.adjacency.astype(bool) & ~ds.NEAR_NEIGHBOUR_ADJACENCY):
        return x0, "inadmissible"
    vec, jac_sq = _beam_vectors(edges)
    r2 = ds.R_MAX ** 2

    def excess(x):
        return float(np.max(np.linalg.norm(vec(x), axis=1))) - ds.R_MAX

    best, start = None, x0
    for _ in range(_FIT_STARTS):
        res = minimize(lambda x: float(np.sum((x - x0) ** 2)), start, jac=lambda x: 2 * (x - x0),
                       method="SLSQP", bounds=[(-0.5, 0.5)] * ds.NUM_FREE_DOFS,
                       constraints=[{"type": "ineq",
                                     "fun": lambda x: r2 - np.sum(vec(x) ** 2, 1),
                                     "jac": lambda x: -jac_sq(x)}],
                       options={"ftol": 1e-14, "maxiter": int(max_iter)})
        x, status = np.clip(res.x, -0.5, 0.5), "projected"
        if excess(x) > LENGTH_TOL:
            lo, hi = 0.0, 1.0  # excess(lo x) <= tol (the zero offsets), excess(hi x) > tol
            for _ in range(60):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if excess(mid * x) <= LENGTH_TOL else (lo, mid)
            x, status = lo * x, "pulled"
        if best is None or np.sum((x - x0) ** 2) < np.sum((best[0] - x0) ** 2):
            best = (x, status)
        if res.success and status == "projected":
            break
        start = x  # SLSQP stopped early: go on from the admissible point it led to
    return best
