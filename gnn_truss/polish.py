r"""FE-driven polish of a designed lattice: its geometry and, optionally, single struts.

The latent-space search (:mod:`gnn_truss.design`) finds a good topology and geometry, but
its resolution is limited by the decoder and, for curves, by the predictor. The polish
starts from one FE-verified design and moves the free offsets of its used nodes directly
(and, with ``topology_rate > 0``, adds or removes single struts), with the finite-element
objective as the only judge: an elitist
:math:`(1+\lambda)` evolution strategy,

.. math::

    x_{\text{child}} = \operatorname{clip}\bigl(x + \sigma\,\epsilon,\ -b,\ b\bigr),
    \quad \epsilon \sim N(0, I) \text{ on the free dofs of used nodes},

where :math:`x` is the parent's ``[27]`` free-offset vector (design-space units, the cell
edge being 1) and :math:`b` the offset bound. A generation draws ``children`` lattices,
FE-verifies them all (:func:`gnn_truss.design.verify_candidates`: the design-space
validation, linear homogenization and, for curves, the nonlinear compression) and keeps the
best if it beats the parent. The step adapts by the success rule: :math:`\sigma` grows by
``expand`` after a successful generation and shrinks by ``shrink`` otherwise, within
``[sigma_min, sigma_max]``; the search stops after ``generations`` or when :math:`\sigma`
falls below ``sigma_min``.

Every value reported is an FE value; an invalid child (a crossing, a degenerate strut, a
mechanism, a failed nonlinear solve) simply loses.

With ``topology_rate > 0`` a child is, with that probability, a topology move instead of an
offset step: one strut of the parent removed, or one new strut added between two nodes at
most :data:`~gnn_truss.design_space.R_MAX` apart (the kind at even odds, then moves of that
kind tried in random order until one passes the design-space validation; offsets unchanged,
except that a node left without struts is reset to zero offsets). The offset steps act on
the free dofs of the nodes each parent uses; the step follows the outcome of the offset
steps alone and is held at ``sigma_min`` instead of ending the search, since strut moves do
not need it. This lets the search reach neighbouring topologies that the decoder does not
produce, at the price of FE evaluations spent on moves that mostly lose.

Curves past buckling depend on the seeded imperfection of the nonlinear FE, and tiny changes
of the geometry can switch the buckling mode, so on a single imperfection seed the search
would also select lucky modes. For curve objectives the value is therefore the mean over
``fe_seeds`` (default three seeds), which the search can only lower by a response that holds
for each of them.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from . import design_space as ds
from .truss import Truss

__all__ = ["PolishResult", "polish_geometry", "OFFSET_BOUND"]

#: Largest |offset| the polish proposes (the design space allows up to 0.5; the margin keeps
#: a moved node off the octant's faces, where it would coincide with a fixed grid position).
OFFSET_BOUND = 0.45


@dataclass
class PolishResult:
    """The outcome of :func:`polish_geometry`.

    Attributes:
        truss: the best lattice found (the start if nothing beat it).
        label: its FE label ``[D]`` (first FE seed); C: its ``[6, 6]`` linear FE stiffness.
        value, score: its FE objective value and score (lower score is better); for curves
            the mean over the FE seeds.
        seed_values: ``[S]`` its objective value per FE seed (curves; ``[1]`` for stiffness).
        start_value: the FE objective value of the start lattice (as ``value``).
        start_seed_values: ``[S]`` the start's value per FE seed.
        history: ``[G + 1]`` best FE value after each generation (entry 0: the start).
        sigmas: ``[G]`` step size of each generation run.
        evaluated: lattices FE-verified (children; the start is not counted).
        invalid: children that failed validation or FE.
        seconds: wall time.
    """

    truss: Truss
    label: np.ndarray
    C: np.ndarray
    value: float
    score: float
    seed_values: np.ndarray
    start_value: float
    start_seed_values: np.ndarray
    history: np.ndarray
    sigmas: np.ndarray
    evaluated: int
    invalid: int
    seconds: float


def _values(objective, labels: np.ndarray) -> np.ndarray:
    """FE objective values of labels ``[n, D]`` (NaN where a label is)."""
    with np.errstate(all="ignore"):
        return np.asarray(objective.value(labels), dtype=np.float64)


def _topology_move(truss: Truss, rng: np.random.Generator, tries: int = 50) -> Truss | None:
    """One strut removed or added (module docstring).

    The kind of move is drawn first (even odds); up to ``tries`` moves of that kind are tried
    in random order until one gives a valid lattice, then, failing that, up to ``tries`` of
    the other kind. A node left without struts gets zero offsets (the convention for unused
    nodes). Returns ``None`` if no valid move was found."""
    adj = truss.adjacency
    present = adj[ds.TRIU_I, ds.TRIU_J].astype(bool)
    p = truss.positions
    short = np.linalg.norm(p[ds.TRIU_I] - p[ds.TRIU_J], axis=1) <= ds.R_MAX + 1e-9
    pools = [np.flatnonzero(present), np.flatnonzero(~present & short)]  # remove, add
    first = int(rng.random() < 0.5)
    for pool in (pools[first], pools[1 - first]):
        for k in rng.permutation(pool)[:tries]:
            new = np.array(adj)
            i, j = ds.TRIU_I[k], ds.TRIU_J[k]
            new[i, j] = new[j, i] = 0 if present[k] else 1  # an empty lattice is invalid
            child = Truss(new, np.where(new.any(axis=1)[:, None], truss.offsets, 0.0))
            if child.is_valid:
                return child
    return None


def polish_geometry(truss: Truss, objective, generations: int = 20, children: int = 8,
                    sigma0: float = 0.02, sigma_min: float = 1e-3, sigma_max: float = 0.1,
                    expand: float = 1.5, shrink: float = 0.7, density: float = 0.15,
                    workers: int | None = None, seed: int = 0, fe_seeds=(0, 1, 2),
                    topology_rate: float = 0.0, progress: bool = False) -> PolishResult:
    """Polish the node offsets (and, with ``topology_rate > 0``, single struts) of ``truss``
    against an FE objective (module docstring).

    Args:
        truss: the start lattice (its topology is kept when ``topology_rate == 0``).
        objective: a :class:`gnn_truss.objectives.Objective`.
        generations: ES generations (>= 0).
        children: lattices per generation (>= 1).
        sigma0, sigma_min, sigma_max: initial, smallest and largest step (offset units).
        expand, shrink: step factors after a successful / failed generation.
        density: relative density of the FE.
        workers: FE processes (as :func:`gnn_truss.design.verify_candidates`).
        seed: seed of the ES draws.
        fe_seeds: imperfection seeds of the nonlinear FE; a curve objective is averaged over
            them (stiffness objectives use the linear FE once).
        topology_rate: probability that a child is a one-strut topology move instead of an
            offset step (0: the topology is kept).
        progress: progress bar over the generations.

    Returns:
        :class:`PolishResult`.

    Raises:
        ValueError: bad settings, or a start lattice whose FE fails (nothing to polish).
    """
    from .design import verify_candidates

    if isinstance(generations, bool) or not isinstance(generations, int) or generations < 0:
        raise ValueError(f"generations must be an integer >= 0, got {generations!r}")
    if isinstance(children, bool) or not isinstance(children, int) or children < 1:
        raise ValueError(f"children must be a positive integer, got {children!r}")
    if not (0 < sigma_min <= sigma0 <= sigma_max and math.isfinite(sigma_max)):
        raise ValueError(f"need 0 < sigma_min <= sigma0 <= sigma_max, got "
                         f"{sigma_min}, {sigma0}, {sigma_max}")
    if not (expand >= 1 and 0 < shrink < 1):
        raise ValueError(f"need expand >= 1 and 0 < shrink < 1, got {expand}, {shrink}")
    if not (0.0 <= topology_rate <= 1.0):
        raise ValueError(f"topology_rate must lie in [0, 1], got {topology_rate!r}")
    seeds = [int(k) for k in fe_seeds]
    if not seeds:
        raise ValueError("fe_seeds must name at least one seed")
    if objective.label != "curve":
        seeds = seeds[:1]
    t0 = time.perf_counter()

    def evaluate(trusses):
        """labels [n, D] and C [n, 6, 6] of the first seed, values [n, S], scores [n]."""
        vals, first = [], None
        for k in seeds:
            ver = verify_candidates(trusses, objective.label, density, workers=workers, seed=k)
            vals.append(np.where(ver.ok, _values(objective, ver.labels), np.nan))
            if first is None:
                first = ver
        vals = np.stack(vals, axis=1)
        mean = vals.mean(axis=1)  # NaN if any seed failed
        score = -mean if objective.kind == "max" else mean
        return first.labels, first.C, vals, np.where(np.isfinite(score), score, np.inf)

    labels, Cs, vals, scores = evaluate([truss])
    if not np.isfinite(scores[0]):
        raise ValueError("the start lattice has no finite FE objective value (invalid lattice "
                         "or failed FE): nothing to polish")
    best = (truss, labels[0], Cs[0], vals[0], float(scores[0]))
    start_seed_values = vals[0]
    rng = np.random.default_rng(seed)
    sigma = float(sigma0)
    history, sigmas = [float(start_seed_values.mean())], []
    evaluated = invalid = 0
    bar = None
    if progress and generations:
        from .progress import progress_bar
        bar = progress_bar(total=generations, desc=f"polish {objective.spec}", unit="gen")
    try:
        for _ in range(generations):
            free = best[0].used[ds.FREE_DOF_NODE]  # [27] free dofs of used nodes
            if (not free.any() and topology_rate == 0) or sigma < sigma_min:
                break
            x = best[0].free_offsets
            kids, is_step = [], []
            for _k in range(children):
                if topology_rate > 0 and (not free.any() or rng.random() < topology_rate):
                    kid = _topology_move(best[0], rng)
                    if kid is not None:
                        kids.append(kid)
                        is_step.append(False)
                        continue
                    if not free.any():
                        continue  # nothing can move
                step = np.where(free, sigma * rng.standard_normal(x.shape), 0.0)
                kids.append(best[0].with_offsets(np.clip(x + step, -OFFSET_BOUND,
                                                         OFFSET_BOUND)))
                is_step.append(True)
            if not kids:
                break
            sigmas.append(sigma)
            labels, Cs, vals, ks = evaluate(kids)
            evaluated += len(kids)
            invalid += int(np.sum(~np.isfinite(ks)))
            j = int(np.argmin(ks))
            is_step = np.asarray(is_step)
            if is_step.any():  # the step follows the outcome of the offset steps only
                if np.any(ks[is_step] < best[4]):
                    sigma = min(sigma * expand, sigma_max)
                else:
                    sigma *= shrink
                if topology_rate > 0:  # strut moves go on: hold the step at its minimum
                    sigma = max(sigma, sigma_min)
            if ks[j] < best[4]:
                best = (kids[j], labels[j], Cs[j], vals[j], float(ks[j]))
            history.append(float(best[3].mean()))
            if bar is not None:
                bar.set_postfix(best=f"{history[-1]:.4g}", sigma=f"{sigma:.2g}", refresh=False)
                bar.update()
    finally:
        if bar is not None:
            bar.close()
    return PolishResult(best[0], best[1], best[2], float(best[3].mean()), best[4], best[3],
                        history[0], start_seed_values, np.asarray(history), np.asarray(sigmas),
                        evaluated, invalid, time.perf_counter() - t0)
