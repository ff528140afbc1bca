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

Shapes: ``logits [B, 351]`` (upper triangle, :func:`gnn_truss.design_space.adjacency_to_triu`
order).
"""
from __future__ import annotations

import itertools
import math
from functools import lru_cache

import numpy as np
import torch

from . import design_space as ds
from .truss import topology_violations

__all__ = ["STATUS", "CANDIDATES", "MAX_FLIPS", "constrained_logits", "constrained_adjacency"]

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
