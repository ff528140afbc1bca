r"""FE-verified inverse design of truss lattices by gradient descent in the latent space.

Zheng et al. (2023), "Gradient-based optimization in the latent space" and Fig. 2b / 5 / 6
(``SPEC.md`` section 7):

1. **Objective** (:mod:`gnn_truss.objectives`): maximise or minimise one property of
   :func:`gnn_truss.properties.all_properties` (``max-E22``, ``min-nu21``, ``max-KV_GV`` ...),
   match a target stiffness (a 9-vector or a set of engineering constants), or match a target
   13-point compression curve (NRMSE; needs a model trained on curves). Every objective is a
   *score*, lower is better, computed by the same function from predicted labels (torch,
   differentiable) and from FE labels (numpy).
2. **Starts**: the ``k`` corpus lattices with the best FE-labelled score (the largest values for
   ``max``, the closest to the target for ``match``), encoded to their latent means.
3. **Optimisation** (:func:`optimize_latents`): all ``k`` latents at once with Adam through
   ``decode -> re-encode -> predict`` (the re-encoding of the decoded lattice keeps the predictor
   on lattices the decoder can actually produce). The adjacency enters the differentiable
   re-encoder (:meth:`~gnn_truss.nn.TrussVAE.encode_dense`) either thresholded in the forward
   pass with the sigmoid gradient in the backward pass (``relax="straight-through"``, default:
   the predicted score is the model's prediction for the very lattice that is decoded) or as
   sigmoid probabilities (``"soft"``). Offsets of unused nodes are zeroed as in
   :func:`gnn_truss.evaluation.decode_trusses`. Each run keeps its best iterate by predicted
   score among the iterates whose predicted stiffness is positive definite, whose normalised
   prediction lies in a trust region around the corpus labels (:func:`trust_region`) and whose
   thresholded, repaired lattice still spans the cell (:func:`spans_after_repair`).
   A model whose predictor reads the decoded lattice (``model.predictor_input: decoded``)
   is a surrogate of the FE labels of that lattice: the loop is then ``decode -> predict``
   (:func:`predict_relaxed`), the prediction of the very lattice that FE will verify; a
   re-encoding would make it the prediction of the lattice decoded from the re-encoded mean,
   another lattice for a quarter of the corpus.
4. **Verification** (:func:`verify_candidates`): the best iterate of every run (and, with
   ``path_candidates``, evenly spaced iterates along each run; linear FE is cheap, so by
   default 50 per run for stiffness objectives) is decoded with threshold 0.5,
   repaired (:func:`repair_design`), validated and labelled by FE: linear homogenization
   (:func:`~gnn_truss.fe.homogenization.homogenize_batch`, relative density 0.15, E_s = 1,
   nu_s = 0.3) and, for curve objectives, nonlinear compression
   (:func:`~gnn_truss.fe.nonlinear.compress_truss`). Candidates are ranked by their FE score;
   the predictor is only a shortcut and never decides the ranking.

The improvement over the dataset is ``100 (score_dataset - score_design) / |value_dataset|``:
the relative gain of the property for ``max`` / ``min`` and the relative error reduction for
``match`` objectives.

Units: stiffness components and moduli in units of the base Young's modulus E_s, stresses in
E_s, Poisson's ratios, ``A_U``, ``KV_GV`` and errors dimensionless. Shapes: latents
``[k, d]``; stiffness labels ``[..., 9]`` (C11, C12, C13, C22, C23, C33, C44, C55, C66); curve
labels ``[..., 13]`` (nominal compressive stress at 0.5 %, 2.5 %, ..., 24.5 % strain).

The CLI glue (:func:`add_design_arguments`, :func:`design_main`) backs ``gnn-truss design``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import design_space as ds
from .objectives import (_CURVE_POINTS, _NUM_STIFFNESS, PROPERTY_ALIASES, Objective,
                         _properties_unchecked, canonical_property, curve_target,
                         is_curve_target_name, load_target, parse_objective, property_table)
from .paths import DEFAULT_CHECKPOINT, find_checkpoint
from .properties import stiffness_from_vector
from .threads import single_thread_worker
from .truss import Truss

__all__ = [
    "PROPERTY_ALIASES", "canonical_property", "Objective", "parse_objective", "load_target",
    "property_table", "curve_target", "select_starts", "encode_trusses", "FACE_NODES", "spans_after_repair",
    "predict_decoded", "predict_relaxed", "trust_region", "OptimizationTrace", "optimize_latents",
    "refine_candidates", "PARENT_SELECT", "CURVE_REFINE_ROUNDS", "select_parents",
    "repair_design", "decode_designs", "Verification", "verify_candidates", "Candidate",
    "imperfection_check",
    "DesignResult", "improvement_percent", "run_design", "path_axes", "axis_values",
    "write_design",
    "load_design_model", "ensemble_predictors",
    "default_corpus_path", "add_design_arguments", "design_main",
]

log = logging.getLogger(__name__)

#: How :func:`refine_candidates` picks its parents (``parent_select``).
PARENT_SELECT = ("topology", "lattice")
#: Default rounds of FE-guided refinement for curve objectives (:func:`run_design`). On ten
#: benchmark tasks they improved the shipped curve checkpoint's best design on four and,
#: adding candidates only, left none worse (docs/design.md, "Curve refinement").
CURVE_REFINE_ROUNDS = 3

# --------------------------------------------------------------------------- model helpers

def _device(model) -> torch.device:
    return next(model.parameters()).device


def _model_target(model) -> str:
    n = model.num_targets
    return "curve" if n == _CURVE_POINTS else "stiffness"


@torch.no_grad()
def encode_trusses(model, trusses, batch_size: int = 1024,
                   refine_steps: int = 0) -> torch.Tensor:
    """Latent means ``mu [B, d]`` of lattices via the dense encoder path (equal to
    :meth:`TrussVAE.encode` on their graphs); with ``refine_steps``, those means refined by
    that many steps on each lattice's reconstruction loss
    (:func:`gnn_truss.nn.vae.refine_latent`), so that they decode to the lattices more often."""
    from .nn.encoder import triu_from_dense
    from .nn.vae import refine_latent
    model.eval()
    out = []
    dev = _device(model)
    for s in range(0, len(trusses), batch_size):
        part = trusses[s:s + batch_size]
        adj = torch.tensor(np.stack([t.adjacency for t in part]), dtype=torch.float32, device=dev)
        off = torch.tensor(np.stack([t.free_offsets for t in part]), dtype=torch.float32,
                           device=dev)
        mu = model.encode_dense(adj, off)[0]
        if refine_steps:
            mu = refine_latent(model, mu, triu_from_dense(adj), off, steps=refine_steps)
        out.append(mu)
    return torch.cat(out) if out else torch.zeros(0, model.sizes.total, device=dev)


#: ``[6, 9]`` candidate nodes on the octant faces x=0, x=1, y=0, y=1, z=0, z=1 (fixed
#: coordinate 0 or 1); a lattice spans the cell if it uses a node on each (``Truss.validate``).
FACE_NODES = np.stack([np.flatnonzero(ds.NODE_GRID[:, d] == v) for d in range(3)
                       for v in (0.0, 1.0)])


_PLANES = np.where(ds.FREE_DOF_MASK, -1, ds.NODE_GRID).astype(np.int8)  # as truss.py
#: ``[27, 27]`` copies of a beam in the periodic cell over copies of its end node: a node's
#: periodic degree is ``sum_j A_ij * _DEGREE_WEIGHT[i, j]`` (``Truss.physical_degree``).
_DEGREE_WEIGHT = (np.prod(np.where((_PLANES[:, None] == _PLANES[None]) & (_PLANES[:, None] >= 0),
                                   1, 2), axis=-1)
                  / np.prod(np.where(_PLANES >= 0, 1, 2), axis=-1)[:, None])


@torch.no_grad()
def spans_after_repair(adj: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Whether :func:`repair_design` of thresholded lattices leaves a lattice that spans the
    cell, computed in torch for a whole batch (the cheap validity proxy of the design loop).

    Mirrors the repair: drop beams longer than ``sqrt(3)/2``; prune nodes with periodic degree
    below 2 until none is left; keep the component with the most beams (then the most nodes);
    then test that a used node lies on each of the six octant faces. The remaining rules of
    :meth:`Truss.validate` (degenerate geometry, nodes on beams) are left to the FE check.

    Shapes: ``adj [k, 27, 27]`` binary (any dtype), ``offsets [k, 27]`` -> ``[k]`` bool.
    """
    from .nn.encoder import dense_positions
    A = (adj > 0.5).to(torch.float64)
    A = A * (1 - torch.eye(ds.NUM_NODES, dtype=A.dtype, device=A.device))
    p = dense_positions(offsets.double())
    length = torch.linalg.norm(p[:, :, None] - p[:, None], dim=-1)
    A = A * (length <= ds.R_MAX + 1e-9)
    w = torch.tensor(_DEGREE_WEIGHT, dtype=A.dtype, device=A.device)
    for _ in range(ds.NUM_NODES):
        deg = (A * w).sum(-1)
        used = A.sum(-1) > 0
        dangling = used & (deg < 2 - 1e-9)
        if not bool(dangling.any()):
            break
        keep = (~dangling).to(A.dtype)
        A = A * keep[:, :, None] * keep[:, None, :]
    used = A.sum(-1) > 0
    R = ((A + torch.eye(ds.NUM_NODES, dtype=A.dtype, device=A.device)) > 0).to(A.dtype)
    for _ in range(5):  # reachability within 32 hops covers 27 nodes
        R = (torch.bmm(R, R) > 0).to(A.dtype)
    beams = torch.einsum("kij,kjl->ki", R, A) / 2  # beams in the component of node i
    nodes = (R * used[:, None, :]).sum(-1)
    key = torch.where(used, beams * 64 + nodes, torch.full_like(beams, -1.0))
    root = key.argmax(-1)
    kept = R[torch.arange(len(R), device=R.device), root].bool() & used
    faces = torch.tensor(FACE_NODES, device=A.device)
    return kept[:, faces].any(-1).all(-1) & used.any(-1)


def _relaxed_decode(model, z: torch.Tensor, relax: str):
    """``(A [k, 27, 27], offsets [k, 27] zeroed on unused nodes, used [k, 27])`` of the
    relaxed decoded lattices (:meth:`~gnn_truss.nn.TrussVAE.decode_lattice`; for a predictor
    that reads the decoded lattice, without the pairs that can never be beams, as it reads
    them)."""
    return model.decode_lattice(z, relax,
                                near_only=getattr(model, "predictor_input", "latent") == "decoded")


def predict_relaxed(model, A: torch.Tensor, offsets: torch.Tensor,
                    features: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised prediction ``[k, D]`` for relaxed decoded lattices (``A [k, 27, 27]``,
    ``offsets [k, 27]`` of :meth:`~gnn_truss.nn.TrussVAE.decode_lattice`), differentiable in
    both: re-encode -> predict for a latent predictor (the paper's loop), the predictor on the
    lattice itself for one that reads decoded lattices (``model.predictor_input: decoded``).

    A predictor with lattice features (``model.predictor_features``) reads ``features
    [k, F]``; without them they are computed by FE for the thresholded lattices
    (:meth:`~gnn_truss.nn.TrussVAE.lattice_features`), constants for the gradient."""
    if getattr(model, "predictor_input", "latent") == "decoded":
        if getattr(model, "reads_features", False) and features is None:
            features = model.lattice_features(A, offsets)
        return model.predictor.forward_dense(A, offsets, features)
    return model.predict(model.encode_dense(A, offsets)[0])


def predict_decoded(model, normalizer, z: torch.Tensor, relax: str = "straight-through"):
    """Physical labels predicted for the lattices decoded from ``z`` (differentiable in ``z``).

    ``z -> (logits, offsets) -> adjacency`` (``relax``: ``"straight-through"`` = ``logit > 0``
    forward, sigmoid gradient backward; ``"soft"`` = sigmoid probabilities) ``-> offsets x
    soft used-node indicator -> encode_dense -> mu -> predict -> normalizer.inverse`` (for a
    predictor that reads decoded lattices: ``-> predictor -> normalizer.inverse``,
    :func:`predict_relaxed`). The dense GNN encoder passes no messages along node pairs that
    no offsets bring within ``sqrt(3)/2`` (they can never be beams; :func:`repair_design`
    drops them too), but with ``model.edge_readout`` its readout still reads them in the
    adjacency, as it counts their nodes as used; a predictor that reads decoded lattices
    drops them first.

    Args:
        model: :class:`~gnn_truss.nn.TrussVAE`.
        normalizer: the checkpoint's :class:`~gnn_truss.dataset.TargetNormalizer`.
        z: ``[k, d]`` latents.
        relax: ``"straight-through"`` or ``"soft"``.

    Returns:
        ``[k, 9]`` stiffness or ``[k, 13]`` curves in units of E_s.
    """
    A, offsets, _ = _relaxed_decode(model, z, relax)
    return normalizer.inverse(predict_relaxed(model, A, offsets))


# --------------------------------------------------------------------------- starts

def select_starts(objective: Objective, labels: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` corpus lattices with the lowest (best) FE score, best first.

    Args:
        objective: the objective.
        labels: ``[N, 9]`` or ``[N, 13]`` FE labels of the corpus.
        k: number of starts (at most ``N``).
    """
    scores = np.asarray(objective.score(np.asarray(labels, dtype=np.float64)))
    scores = np.where(np.isfinite(scores), scores, np.inf)
    k = min(int(k), len(scores))
    idx = np.argpartition(scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return idx[np.argsort(scores[idx], kind="stable")]


def trust_region(normalizer, labels: np.ndarray, margin: float = 2.0):
    """Per-component range of the normalised corpus labels widened by ``margin``.

    Args:
        normalizer: the checkpoint's :class:`~gnn_truss.dataset.TargetNormalizer`.
        labels: ``[N, D]`` corpus FE labels.
        margin: widening in units of the normalised labels (standard deviations of
            ``asinh(v / scale)`` over the training split); 2.0 lets E_i grow by about a factor
            2 beyond the corpus maximum.

    Returns:
        ``(lo, hi)``, each ``[D]`` float64.
    """
    if not (margin >= 0 and math.isfinite(margin)):
        raise ValueError(f"trust margin must be a finite number >= 0, got {margin}")
    y = np.asarray(normalizer.transform(np.asarray(labels, dtype=np.float64)))
    y = y[np.all(np.isfinite(y), axis=1)]
    return y.min(axis=0) - margin, y.max(axis=0) + margin


# --------------------------------------------------------------------------- optimisation

@dataclass
class OptimizationTrace:
    """Result of :func:`optimize_latents` (``k`` runs, ``T`` recorded steps).

    Attributes:
        best_z: ``[k, d]`` latent of each run's best iterate (by predicted score).
        best_score: ``[k]`` its predicted score (inf if no iterate had a valid prediction).
        best_step: ``[k]`` the step it was reached at (0 = the start).
        steps: ``[T]`` recorded step numbers (0 and the last step included).
        labels: ``[T, k, D]`` predicted physical labels at the recorded steps.
        scores: ``[T, k]`` predicted scores there (NaN where the prediction was invalid).
        z: ``[T, k, d]`` latents there.
        loss: ``[steps + 1]`` mean predicted score over the valid runs at every step.
        seconds: wall time.
    """

    best_z: torch.Tensor
    best_score: np.ndarray
    best_step: np.ndarray
    steps: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    z: np.ndarray
    loss: np.ndarray
    seconds: float = 0.0


def _valid_prediction(objective: Objective, labels: torch.Tensor,
                      score: torch.Tensor) -> torch.Tensor:
    """``[k]`` bool: finite score and, for stiffness, a positive-definite predicted C."""
    ok = torch.isfinite(score.detach())
    if objective.label == "stiffness":
        C = stiffness_from_vector(labels.detach().double())
        ok &= torch.linalg.eigvalsh(C)[:, 0] > 0
    return ok


def optimize_latents(model, normalizer, objective: Objective, z0: torch.Tensor,
                     steps: int = 1000, lr: float = 0.01, relax: str = "straight-through",
                     bounds=None, record_every: int = 10,
                     progress: bool = False, feature_every: int = 100) -> OptimizationTrace:
    """Adam on all ``k`` latents at once, minimising the summed predicted score.

    Each step evaluates :func:`predict_decoded` at the current ``z`` (step 0 is the start),
    keeps each run's best valid iterate (valid: finite score, positive-definite predicted
    stiffness, and a thresholded lattice that still spans the cell after the repair,
    :func:`spans_after_repair`: pushed towards extreme properties, the decoder likes to fall
    apart into pieces that do not tile periodically; and, with ``bounds``, normalised
    predictions inside the trust region), then updates ``z`` with the gradient of
    ``sum_k (score_k + |score_k(0)| * excess_k)`` (runs are independent: each latent only sees
    its own terms). ``excess_k = sum_d relu(y_kd - hi_d)^2 + relu(lo_d - y_kd)^2`` is the
    squared distance of the normalised prediction ``y`` from the trust region (zero inside;
    scaled by the start score so that it weighs like the objective): a predictor pushed far
    outside the labels it was trained on returns numbers without meaning (e.g. E2 > 1 at
    relative density 0.15), and the optimiser would chase them. The model weights are not
    changed.

    Args:
        model, normalizer: as :func:`predict_decoded`.
        objective: the :class:`Objective`.
        z0: ``[k, d]`` start latents.
        steps: Adam updates (1000).
        lr: Adam learning rate (0.01, in latent units, i.e. prior standard deviations).
        relax: adjacency relaxation of :func:`predict_decoded`.
        bounds: ``(lo, hi)``, each ``[D]``: trust region of the normalised predictions
            (:func:`trust_region`), or ``None``.
        record_every: record the path every this many steps (the last step always).
        progress: tqdm progress bar on stderr.
        feature_every: for a predictor with lattice features (``model.predictor_features``:
            the buckling of the lattice, by FE, about 0.05 s a lattice) the features of each
            run's decoded lattice are computed at step 0 and every this many steps (and at the
            last step) and held fixed in between (100: ten analyses per run in 1000 steps;
            the best iterates are predicted again with their own features when the
            candidates are collected, and every candidate is FE-verified anyway).

    Returns:
        :class:`OptimizationTrace`.
    """
    if steps < 0 or not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"need steps >= 0 and a finite lr > 0, got steps={steps}, lr={lr}")
    if _model_target(model) != objective.label:
        raise ValueError(f"objective {objective.spec!r} needs a model trained on "
                         f"{objective.label} labels; this model predicts {_model_target(model)}")
    if isinstance(feature_every, bool) or not isinstance(feature_every, int) or \
            feature_every < 1:
        raise ValueError(f"feature_every must be a positive integer, got {feature_every!r}")
    t0 = time.perf_counter()
    model.eval()
    z = z0.detach().clone().to(_device(model)).requires_grad_(True)
    reads = getattr(model, "reads_features", False)
    held = None
    opt = torch.optim.Adam([z], lr=lr)
    k = len(z)
    best_z = z.detach().clone()
    best_score = torch.full((k,), float("inf"), dtype=torch.float64)
    best_step = np.zeros(k, dtype=np.int64)
    rec_steps, rec_labels, rec_scores, rec_z, losses = [], [], [], [], []
    bar = None
    if progress:
        from .progress import progress_bar
        bar = progress_bar(total=steps, desc=f"design {objective.spec}", unit="step",
                           file=sys.stderr)
    lo, hi = (None, None) if bounds is None else \
        (torch.as_tensor(b, dtype=torch.float32, device=z.device) for b in bounds)
    scale = None
    for step in range(steps + 1):
        A, offsets, _ = _relaxed_decode(model, z, relax)
        if reads and (held is None or step % feature_every == 0 or step == steps):
            held = model.lattice_features(A, offsets)
        y = predict_relaxed(model, A, offsets, held)
        labels = normalizer.inverse(y)
        score = objective.score(labels)
        valid = _valid_prediction(objective, labels, score)
        valid &= spans_after_repair(A.detach(), offsets.detach())
        excess = torch.zeros_like(score)
        if lo is not None:
            excess = (torch.relu(y - hi) ** 2 + torch.relu(lo - y) ** 2).sum(-1).to(score.dtype)
            valid &= excess.detach() == 0
        if scale is None:
            scale = score.detach().abs().nan_to_num(0.0, 0.0, 0.0)
        s = score.detach().double().cpu()
        better = valid.cpu() & (s < best_score)
        if better.any():
            best_score[better] = s[better]
            best_z[better.to(z.device)] = z.detach()[better.to(z.device)]
            best_step[better.numpy()] = step
        losses.append(float(s[valid.cpu()].mean()) if valid.any() else float("nan"))
        if step % record_every == 0 or step == steps:
            rec_steps.append(step)
            rec_labels.append(labels.detach().double().cpu().numpy())
            rec_scores.append(np.where(valid.cpu().numpy(), s.numpy(), np.nan))
            rec_z.append(z.detach().cpu().numpy().copy())
        if step == steps:
            break
        loss = score + scale * excess
        finite = torch.isfinite(loss)
        (grad,) = torch.autograd.grad(loss[finite].sum(), [z]) if finite.any() else \
            (torch.zeros_like(z),)
        z.grad = grad
        opt.step()
        if bar is not None:
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(best=f"{float(best_score.min()):.4g}", refresh=False)
    if bar is not None:
        bar.close()
    return OptimizationTrace(best_z=best_z.detach().cpu(), best_score=best_score.numpy(),
                             best_step=best_step, steps=np.asarray(rec_steps),
                             labels=np.stack(rec_labels), scores=np.stack(rec_scores),
                             z=np.stack(rec_z), loss=np.asarray(losses),
                             seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------- decode and repair

def repair_design(truss: Truss) -> Truss:
    """Light repair of a decoded lattice for inverse design (documented, deterministic):
    :func:`gnn_truss.exploration.light_repair` with ``drop_long=True``, i.e. drop beams longer
    than ``sqrt(3)/2``, prune dangling nodes, keep the largest connected component.

    Beams are never added and nodes never moved, so the result may still fail
    :meth:`Truss.validate` (e.g. ``spans_cell``); the FE check reports that as ``invalid``.
    """
    from .exploration import light_repair
    return light_repair(truss, drop_long=True)[0]


@torch.no_grad()
def decode_designs(model, z, batch_size: int = 1024) -> list[Truss]:
    """Lattices decoded from ``z [B, d]``: adjacency ``logit > 0`` (threshold 0.5), offsets
    clipped to ``[-0.5, 0.5]`` and zeroed on unused nodes
    (:func:`gnn_truss.evaluation.decode_trusses`); no repair."""
    from .evaluation import decode_trusses
    model.eval()
    z = torch.as_tensor(np.asarray(z), dtype=torch.float32) if not isinstance(z, torch.Tensor) \
        else z.float()
    out: list[Truss] = []
    for s in range(0, len(z), batch_size):
        logits, offsets = model.decode(z[s:s + batch_size].to(_device(model)))
        out += decode_trusses(logits, offsets)
    return out


# --------------------------------------------------------------------------- verification

@dataclass
class Verification:
    """FE labels of candidate lattices.

    Attributes:
        labels: ``[n, 9]`` stiffness or ``[n, 13]`` curves (NaN where not ``ok``).
        C: ``[n, 6, 6]`` linear effective stiffness (NaN where the linear FE failed).
        status: ``[n]`` str: ``ok``, a :class:`~gnn_truss.fe.homogenization.Status` value
            (``invalid``, ``mechanism``, ...) or ``nonlinear-failed``.
        seconds: wall time.
    """

    labels: np.ndarray
    C: np.ndarray
    status: np.ndarray
    seconds: float = 0.0

    @property
    def ok(self) -> np.ndarray:
        return self.status == "ok"


def _compress_one(args):
    truss, density, seed = args
    try:
        torch.set_num_threads(1)
    except RuntimeError:  # pragma: no cover
        pass
    from .fe.nonlinear import compress_truss
    try:
        res = compress_truss(truss, density, seed=seed)
    except ValueError as exc:
        return None, str(exc)
    if not (res.ok and np.all(np.isfinite(res.label))):
        return None, res.message or "nonlinear solve failed"
    return np.asarray(res.label, dtype=np.float64), ""


def _compress_all(trusses, density: float, workers: int, seed: int,
                  progress: bool = False) -> list:
    """:func:`_compress_one` of every lattice, in order (``workers`` processes); ``progress``
    shows a bar over the lattices."""
    jobs = [(t, density, seed) for t in trusses]
    bar = None
    if progress and jobs:
        from .progress import progress_bar
        bar = progress_bar(total=len(jobs), desc="nonlinear FE", unit="lattice")
    try:
        if workers <= 1 or len(jobs) <= 1:
            out = []
            for j in jobs:
                out.append(_compress_one(j))
                if bar is not None:
                    bar.update()
            return out
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        out = []
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                 initializer=single_thread_worker) as ex:
            for r in ex.map(_compress_one, jobs, chunksize=max(1, len(jobs) // (8 * workers))):
                out.append(r)
                if bar is not None:
                    bar.update()
        return out
    finally:
        if bar is not None:
            bar.close()


def verify_candidates(trusses, label: str = "stiffness", density: float = 0.15,
                      workers: int | None = None, seed: int = 0,
                      progress: bool = False) -> Verification:
    """FE ground truth of candidate lattices.

    Linear homogenization (:func:`~gnn_truss.fe.homogenization.homogenize_batch`, with the
    design-space validation) for every lattice; for ``label="curve"`` also the nonlinear
    compression curve (:func:`~gnn_truss.fe.nonlinear.compress_truss`, seeded imperfection) of
    every lattice whose linear FE is ``ok``.

    Args:
        trusses: ``n`` :class:`Truss`.
        label: ``"stiffness"`` or ``"curve"``.
        density: relative density (0.15).
        workers: processes (default: as ``homogenize_batch``; for curves the CPU count).
        seed: imperfection seed of the nonlinear FE.
        progress: progress bar over the nonlinear FE runs (the slow part).
    """
    import os

    from .fe.homogenization import homogenize_batch, stiffness_vector
    t0 = time.perf_counter()
    trusses = list(trusses)
    n = len(trusses)
    if n == 0:
        width = _CURVE_POINTS if label == "curve" else _NUM_STIFFNESS
        return Verification(np.zeros((0, width)), np.zeros((0, 6, 6)), np.zeros(0, dtype=str))
    res = homogenize_batch(trusses, density=density, workers=workers)
    C = res.C
    status = np.asarray(res.status, dtype=object)
    if label == "stiffness":
        labels = stiffness_vector(C)
    else:
        labels = np.full((n, _CURVE_POINTS), np.nan)
        todo = np.flatnonzero(res.ok)
        nw = workers if workers is not None else (os.cpu_count() or 1)
        for i, (lab, msg) in zip(todo, _compress_all([trusses[i] for i in todo], density,
                                                     nw, seed, progress)):
            if lab is None:
                status[i] = "nonlinear-failed"
                log.info("candidate %d: nonlinear FE failed (%s)", i, msg)
            else:
                labels[i] = lab
    labels[status != "ok"] = np.nan
    return Verification(labels, C, status.astype(str), time.perf_counter() - t0)


# --------------------------------------------------------------------------- driver

@dataclass
class Candidate:
    """One FE-verified design candidate.

    Attributes:
        run: optimisation run (index into the starts).
        step: optimisation step of the decoded latent.
        source: ``"best"`` (the run's best iterate), ``"path"`` (a path snapshot) or
            ``"refine"`` (a child of the FE-guided refinement, :func:`refine_candidates`) or
            ``"polish"`` (:func:`gnn_truss.polish.polish_geometry` of a design; ``step``
            after the last refinement round).
        truss: the repaired lattice; repaired: whether the repair changed it.
        status: FE status; label: FE label ``[9]`` / ``[13]`` (NaN unless ``ok``).
        C: ``[6, 6]`` linear FE stiffness (NaN if it failed).
        fe_value, fe_score: objective value and score of the FE label (NaN / inf unless ok).
        predicted_value: objective value predicted for the decoded (unrepaired) lattice.
        improvement: % over the dataset best (NaN unless ok).
    """

    run: int
    step: int
    source: str
    truss: Truss
    repaired: bool
    status: str
    label: np.ndarray
    C: np.ndarray
    fe_value: float
    fe_score: float
    predicted_value: float
    improvement: float = float("nan")


@dataclass
class DesignResult:
    """Everything :func:`run_design` found.

    Attributes:
        objective: the :class:`Objective`.
        start_indices: ``[k]`` corpus indices of the starts (best first).
        start_labels: ``[k, D]`` their FE labels.
        dataset_best: corpus index of the best corpus lattice; dataset_best_truss: that
            lattice; dataset_best_label ``[D]``; dataset_best_value: its objective value (FE
            label).
        trace: the :class:`OptimizationTrace`.
        candidates: FE-verified :class:`Candidate` s, best FE score first, duplicates (same
            canonical hash) removed.
        num_candidates: candidates verified before deduplication.
        settings: the arguments of the run; timings: seconds per stage.
        imperfection: for curve objectives, :func:`imperfection_check` of the best designs and
            the dataset best: ``{"seeds": [s0, s1, ...], "dataset_best": [v0, v1, ...],
            "designs": [[v0, v1, ...], ...]}`` (objective values per imperfection seed, the
            designs in ranking order; ``s0`` is the seed of the ranking); empty if not run.
    """

    objective: Objective
    start_indices: np.ndarray
    start_labels: np.ndarray
    dataset_best: int
    dataset_best_truss: Truss
    dataset_best_label: np.ndarray
    dataset_best_value: float
    trace: OptimizationTrace
    candidates: list
    num_candidates: int
    settings: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    imperfection: dict = field(default_factory=dict)

    @property
    def best(self) -> Candidate | None:
        """The best FE-verified candidate (``None`` if none passed the FE)."""
        ok = [c for c in self.candidates if c.status == "ok"]
        return ok[0] if ok else None

    @property
    def improvement(self) -> float:
        b = self.best
        return float("nan") if b is None else b.improvement


def improvement_percent(objective: Objective, design_label, reference_label) -> float:
    """``100 (score_ref - score_design) / |value_ref|`` (positive = better than the
    reference): relative gain for ``max`` / ``min``, relative error reduction for ``match``."""
    d = np.asarray(design_label, dtype=np.float64)[None]
    r = np.asarray(reference_label, dtype=np.float64)[None]
    ref_value = float(objective.value(r)[0])
    if not np.all(np.isfinite(d)) or ref_value == 0:
        return float("nan")
    return float(100.0 * (objective.score(r)[0] - objective.score(d)[0]) / abs(ref_value))


def _candidate_latents(trace: OptimizationTrace, path_candidates: int):
    """``(z [n, d], run [n], step [n], source [n])``: best iterates then path snapshots."""
    k = len(trace.best_z)
    zs = [trace.best_z.numpy()]
    runs = [np.arange(k)]
    steps = [trace.best_step]
    src = [np.array(["best"] * k)]
    if path_candidates > 0 and len(trace.steps) > 1:
        pick = np.unique(np.linspace(1, len(trace.steps) - 1, path_candidates).round()
                         .astype(int))
        for t in pick:
            zs.append(trace.z[t])
            runs.append(np.arange(k))
            steps.append(np.full(k, trace.steps[t]))
            src.append(np.array(["path"] * k))
    return np.concatenate(zs), np.concatenate(runs), np.concatenate(steps), np.concatenate(src)


def _predicted_values(objective, trace, runs, steps) -> np.ndarray:
    """``[n]`` predicted objective value of each candidate at its (recorded) step; NaN for a
    step that was not recorded."""
    where = {int(s): t for t, s in enumerate(trace.steps)}
    t = np.array([where.get(int(s), -1) for s in steps], dtype=np.int64)
    out = np.full(len(runs), np.nan)
    rec = t >= 0
    if rec.any():
        with np.errstate(all="ignore"):
            out[rec] = objective.value(trace.labels[t[rec], np.asarray(runs)[rec]])
    return out


def _collect_candidates(model, normalizer, objective, trace, path_candidates: int,
                        relax: str) -> dict:
    """Decoded and repaired candidate lattices of a trace with their run, step, source,
    predicted objective value and canonical hash (dict of equally long lists / arrays)."""
    z, runs, steps, source = _candidate_latents(trace, path_candidates)
    decoded = decode_designs(model, torch.as_tensor(z))
    pred = _predicted_values(objective, trace, runs, steps)
    with torch.no_grad():  # best iterates: their step need not have been recorded
        best = predict_decoded(model, normalizer, trace.best_z.to(_device(model)), relax)
    pred[:len(trace.best_z)] = np.asarray(objective.value(best.double().cpu().numpy()))
    repaired = [repair_design(t) for t in decoded]
    return {"decoded": decoded, "repaired": repaired, "runs": runs, "steps": steps,
            "source": source, "predicted": pred,
            "hashes": [t.canonical_hash() for t in repaired]}


def _fe_scores(objective: Objective, values: np.ndarray) -> np.ndarray:
    """Scores (lower is better) of FE objective values; ``inf`` where a value is not
    finite (failed FE)."""
    scores = -values if objective.kind == "max" else values
    return np.where(np.isfinite(scores), scores, np.inf)


def _verify_and_rank(objective, pool: dict, reference_label, density, workers, seed,
                     progress: bool = False):
    """FE-verify each distinct repaired candidate once and rank them by FE score.

    Returns:
        ``(candidates, FE seconds, ranking seconds)``.
    """
    first: dict = {}
    for i, h in enumerate(pool["hashes"]):
        first.setdefault(h, i)
    uniq = sorted(first.values())
    ver = verify_candidates([pool["repaired"][i] for i in uniq], objective.label, density,
                            workers, seed, progress=progress)
    t0 = time.perf_counter()
    ok = ver.ok
    with np.errstate(all="ignore"):
        values = np.where(ok, np.asarray(objective.value(ver.labels), dtype=np.float64), np.nan)
    scores = _fe_scores(objective, values)
    ref_value = float(objective.value(np.asarray(reference_label)[None])[0])
    ref_score = _fe_scores(objective, np.array([ref_value]))[0]
    gain = 100.0 * (ref_score - scores) / abs(ref_value) if ref_value != 0 else \
        np.full(len(scores), np.nan)  # = improvement_percent, vectorised
    gain = np.where(ok, gain, np.nan)
    cands = []
    for j, i in enumerate(uniq):
        cands.append(Candidate(
            run=int(pool["runs"][i]), step=int(pool["steps"][i]), source=str(pool["source"][i]),
            truss=pool["repaired"][i], repaired=not pool["repaired"][i] == pool["decoded"][i],
            status=str(ver.status[j]), label=ver.labels[j], C=ver.C[j],
            fe_value=float(values[j]), fe_score=float(scores[j]),
            predicted_value=float(pool["predicted"][i]), improvement=float(gain[j])))
    cands.sort(key=lambda c: (c.fe_score, c.run, c.step))
    return cands, ver.seconds, time.perf_counter() - t0


_REFINE_NAMES = {"rounds": "refine rounds", "parents": "refine parents",
                 "children": "refine children", "verify": "verify_per_round"}


def _check_refine_settings(rounds, parents, children, verify, names=None) -> None:
    """``ValueError`` for refinement settings out of range (``rounds`` >= 0 or ``None``,
    ``parents`` and ``children`` >= 1, ``verify`` >= 1 or ``None``); ``names`` renames the
    settings in the message (the CLI's option names)."""
    n = {**_REFINE_NAMES, **(names or {})}
    if rounds is not None and rounds < 0:
        raise ValueError(f"{n['rounds']} must be >= 0, got {rounds}")
    for key, v in (("parents", parents), ("children", children), ("verify", verify)):
        if v is not None and v < 1:
            raise ValueError(f"{n[key]} must be positive, got {v}")


def refine_candidates(model, normalizer, objective: Objective, candidates: list,
                      reference_label, rounds: int = 10, parents: int = 10,
                      children: int = 50, sigma=(0.02, 0.5), relax: str = "straight-through",
                      density: float = 0.15, workers: int | None = None, seed: int = 0,
                      first_step: int = 0, verify_per_round: int | None = None,
                      extra_parents: list = (), progress: bool = False,
                      encode_refine: int = 0,
                      parent_select: str = "topology") -> tuple[list, int, float]:
    r"""FE-guided refinement in the latent space (an elitist evolution strategy).

    Each round takes the ``parents`` best FE-verified candidates so far (with
    ``parent_select="topology"``, the best lattice of each of the ``parents`` best distinct
    topologies; with ``"lattice"``, the best distinct lattices), encodes them to their latent
    means, draws ``children`` latents around each,
    :math:`z = \mu + s\,\epsilon` with :math:`\epsilon \sim N(0, I)` and a step size
    ``s`` log-uniform in ``sigma`` (several scales at once), decodes them (threshold 0.5),
    repairs them (:func:`repair_design`) and FE-verifies the lattices not seen before. The
    decoder keeps every child in the learned design space; the FE alone decides which ones
    become parents, so predictor errors cannot steer the search.

    Args:
        model, normalizer, objective: as :func:`run_design`.
        candidates: FE-verified :class:`Candidate` s (the seeds of the first round).
        reference_label: the dataset best's label ``[D]`` (for the improvement in %).
        rounds, parents, children: rounds, parents per round, children per parent.
        sigma: ``(low, high)`` latent step sizes (latent units; the prior has unit variance).
        relax, density, workers, seed: as :func:`run_design` (``seed`` seeds the draws).
        first_step: ``step`` recorded for the children of round ``r`` is
            ``first_step + r + 1`` (after the gradient steps).
        verify_per_round: FE-verify at most this many new lattices per round, those with the
            best *predicted* score (a screen for expensive nonlinear FE); ``None``: all.
        extra_parents: lattices with known FE labels that compete as parents but are not
            returned (:func:`run_design` passes the start lattices, FE-labelled in the corpus,
            so the search also explores around the dataset best).
        progress: a progress bar over the rounds (best FE objective value so far).
        encode_refine: refine each parent's latent mean by this many steps
            (:func:`encode_trusses`) before drawing its children. (default: 0)
        parent_select: ``"topology"`` (default): one parent per topology (strut set), so that
            near-copies of one lattice, which differ only in the last digits of their offsets,
            cannot take every parent slot and hold the search in one neighbourhood;
            ``"lattice"``: the best distinct lattices (the earlier behaviour).

    Returns:
        ``(all candidates incl. the new ones, best FE score first; lattices verified;
        FE seconds)``. Children carry their parent's ``run`` and ``source="refine"``.
    """
    from .nn.vae import check_refine
    encode_refine = check_refine(encode_refine, name="encode_refine")
    if parent_select not in PARENT_SELECT:
        raise ValueError(f"parent_select must be one of {PARENT_SELECT}, got "
                         f"{parent_select!r}")
    lo, hi = float(sigma[0]), float(sigma[1])
    if not (0 < lo <= hi and math.isfinite(hi)):
        raise ValueError(f"sigma must be 0 < low <= high, got {sigma}")
    _check_refine_settings(rounds, parents, children, verify_per_round)
    gen = torch.Generator().manual_seed(seed)
    key = lambda c: (c.fe_score, c.run, c.step)  # noqa: E731
    cands = sorted(candidates, key=key)
    extra = list(extra_parents)
    seen = {c.truss.canonical_hash() for c in cands + extra}
    verified, fe_seconds = 0, 0.0
    bar = None
    if progress and rounds:
        from .progress import progress_bar
        bar = progress_bar(total=rounds, desc=f"refine {objective.spec}", unit="round")
    try:
        for r in range(rounds):
            top = select_parents([c for c in sorted(cands + extra, key=key)
                                  if c.status == "ok" and math.isfinite(c.fe_score)],
                                 parents, parent_select)
            if not top:
                break
            new, sec = _refine_round(model, normalizer, objective, top, seen, reference_label,
                                     children, lo, hi, relax, density, workers, seed,
                                     first_step + r + 1, verify_per_round, gen,
                                     encode_refine)
            verified += len(new)
            fe_seconds += sec
            cands = sorted(cands + new, key=key)
            if bar is not None:
                bar.set_postfix(best=f"{cands[0].fe_value:.4g}" if cands else "-",
                                verified=verified, refresh=False)
                bar.update()
    finally:
        if bar is not None:
            bar.close()
    return cands, verified, fe_seconds


def select_parents(ranked: list, parents: int, select: str = "topology") -> list:
    """The first ``parents`` of the FE-verified candidates ``ranked`` (best first):
    all of them (``select="lattice"``) or only the first, best, lattice of each topology,
    i.e. each strut set whatever the offsets (``select="topology"``,
    :func:`gnn_truss.exploration.topology_hash`)."""
    if select == "lattice":
        return ranked[:parents]
    if select != "topology":
        raise ValueError(f"select must be one of {PARENT_SELECT}, got {select!r}")
    from .exploration import topology_hash
    out, seen = [], set()
    for c in ranked:
        k = topology_hash(c.truss)
        if k not in seen:
            seen.add(k)
            out.append(c)
            if len(out) == parents:
                break
    return out


def _refine_round(model, normalizer, objective, top, seen: set, reference_label, children,
                  lo, hi, relax, density, workers, seed, step, verify_per_round, gen,
                  encode_refine: int = 0):
    """One round of :func:`refine_candidates`: children of the parents ``top``, the new ones
    FE-verified (``seen`` is updated). Returns ``(new candidates, FE seconds)``."""
    mu = encode_trusses(model, [c.truss for c in top], refine_steps=encode_refine).cpu()
    n = len(top) * children
    scale = torch.exp(torch.empty(n, 1).uniform_(math.log(lo), math.log(hi), generator=gen))
    z = mu.repeat_interleave(children, 0) + scale * torch.randn(n, mu.shape[1], generator=gen)
    decoded = decode_designs(model, z)
    repaired = [repair_design(t) for t in decoded]
    hashes = [t.canonical_hash() for t in repaired]
    first: dict = {}  # the first child of each new lattice
    for i, h in enumerate(hashes):
        if h not in seen and repaired[i].num_edges:
            first.setdefault(h, i)
    keep = list(first.values())
    if not keep:
        return [], 0.0
    with torch.no_grad():
        pred = predict_decoded(model, normalizer, z[keep].to(_device(model)), relax)
    pred = pred.double().cpu().numpy()
    if verify_per_round is not None and len(keep) > verify_per_round:
        with np.errstate(all="ignore"):
            sc = np.nan_to_num(np.asarray(objective.score(pred), dtype=np.float64), nan=np.inf)
        best = np.sort(np.argsort(sc, kind="stable")[:verify_per_round])
        keep, pred = [keep[i] for i in best], pred[best]
    pool = {"decoded": [decoded[i] for i in keep], "repaired": [repaired[i] for i in keep],
            "runs": np.array([top[i // children].run for i in keep]),
            "steps": np.full(len(keep), step),
            "source": np.array(["refine"] * len(keep)),
            "predicted": np.asarray(objective.value(pred)),
            "hashes": [hashes[i] for i in keep]}
    new, sec, _ = _verify_and_rank(objective, pool, reference_label, density, workers, seed)
    seen.update(pool["hashes"])
    return new, sec


def start_noise_draw(shape, sigma: float, seed: int) -> torch.Tensor:
    """``sigma * N(0, I)`` of ``shape`` (float32) from its own generator seeded by ``seed``:
    the perturbation of the start latents in :func:`run_design`, independent of the global
    torch state."""
    gen = torch.Generator().manual_seed(int(seed))
    return sigma * torch.randn(tuple(shape), generator=gen, dtype=torch.float32)


def _start_candidates(objective: Objective, trusses, labels: np.ndarray) -> list:
    """The start lattices as :class:`Candidate` s (``source="start"``, step 0) with their
    corpus FE labels (``C`` is not needed and left NaN)."""
    labels = np.asarray(labels, dtype=np.float64)
    with np.errstate(all="ignore"):
        values = np.asarray(objective.value(labels), dtype=np.float64)
    scores = _fe_scores(objective, values)
    return [Candidate(run=i, step=0, source="start", truss=t, repaired=False, status="ok",
                      label=labels[i], C=np.full((6, 6), np.nan), fe_value=float(values[i]),
                      fe_score=float(scores[i]), predicted_value=float("nan"))
            for i, t in enumerate(trusses)]


def run_design(model, normalizer, corpus, objective: Objective, starts: int = 100,
               steps: int = 1000, lr: float = 0.01, relax: str = "straight-through",
               trust_margin: float | None = 2.0, path_candidates: int | None = None,
               record_every: int | None = None, refine_rounds: int | None = None,
               refine_parents: int = 10, refine_children: int = 50,
               refine_verify: int | None = None, refine_select: str = "topology",
               density: float = 0.15,
               workers: int | None = None, seed: int = 0, polish_generations: int | None = None,
               polish_top: int = 3, polish_children: int = 8, polish_topology_rate: float = 0.5,
               check_seeds: int | None = None, check_top: int = 5,
               progress: bool = False, encode_refine: int = 0,
               feature_every: int = 100, start_noise: float = 0.0) -> DesignResult:
    """Inverse design end to end (see the module docstring).

    Args:
        model: a trained :class:`~gnn_truss.nn.TrussVAE` (its predictor must match the
            objective's labels).
        normalizer: the checkpoint's :class:`~gnn_truss.dataset.TargetNormalizer`.
        corpus: :class:`~gnn_truss.corpus.Corpus` with FE labels (``curve`` for curve
            objectives): source of the starts and of the dataset best.
        objective: :class:`Objective` (:func:`parse_objective`).
        starts: number of runs ``k`` (100).
        steps: Adam steps per run (1000).
        lr: Adam learning rate (0.01).
        relax: ``"straight-through"`` or ``"soft"`` (see :func:`predict_decoded`).
        trust_margin: trust region of the predictions, in standard deviations of the
            normalised labels beyond the corpus range (:func:`trust_region`; 2.0); ``None``
            switches it off.
        path_candidates: path snapshots per run verified besides the best iterate (default:
            50 for stiffness objectives, whose linear FE is cheap; 0 for curves).
        record_every: path recording interval (default: ``steps / 100``, at least 1).
        refine_rounds: rounds of FE-guided latent refinement after the gradient stage
            (:func:`refine_candidates`; default 10 for stiffness objectives, 3 for curves,
            whose nonlinear FE costs about 2 s per lattice: ``refine_verify`` lattices a
            round, 1-8 min in all on one worker). The rounds only add FE-verified
            candidates, so they can only improve the best design.
        refine_parents, refine_children: parents per round (10) and children per parent (50).
        refine_select: ``"topology"`` (one parent per strut set) or ``"lattice"`` (the best
            distinct lattices, the behaviour before this option); see
            :func:`refine_candidates`.
        refine_verify: FE-verify at most this many new lattices per refinement round, the
            best predicted ones (default: all for stiffness, 20 for curves).
        density: relative density of the FE models (0.15).
        workers: FE processes.
        seed: torch seed (and the imperfection seed of the nonlinear FE).
        polish_generations: generations of the FE-driven polish
            (:func:`gnn_truss.polish.polish_geometry`) of the ``polish_top`` best distinct
            designs after the refinement (default 40 for stiffness objectives, which costs
            seconds, 0 for curves; for curves the polish averages the ``check_seeds + 1``
            imperfection seeds of the check). A polished lattice that beats its parent joins
            the candidates as ``source="polish"``.
        polish_top, polish_children: designs polished (3) and children per generation (8).
        polish_topology_rate: probability that a polish child is a one-strut topology move
            instead of an offset step (0.5; 0.0 keeps each design's topology).
        check_seeds: curve objectives only: re-run the nonlinear FE of the ``check_top`` best
            designs and of the dataset best with this many other imperfection seeds
            (``seed + 1 ...``; :func:`imperfection_check`) to show how much their curves
            depend on the imperfection (default 2; 0 skips). The ranking stays by ``seed``.
        check_top: designs checked (5).
        encode_refine: refine the latent means of the start lattices and of the refinement
            parents by this many steps on their own reconstruction loss
            (:func:`gnn_truss.nn.vae.refine_latent`), so that they decode to those lattices
            (one pass decodes about two thirds of the corpus exactly). (default: 0)
        feature_every: for a predictor with lattice features, the interval of their FE
            update in the gradient stage (:func:`optimize_latents`; 100). Their analyses
            use ``workers`` processes.
        start_noise: standard deviation (in latent units, i.e. prior standard deviations) of
            Gaussian noise added to the start latents, drawn from ``seed`` (0.0: the starts
            are the encoded means and the gradient stage does not depend on ``seed``). With
            noise, runs with different seeds take different Adam paths from the same starts,
            so several seeds give a sample of the search instead of a single draw.
        progress: progress bar.

    Raises:
        ValueError: mismatched model and objective, a corpus without the needed labels, or
            bad settings.
    """
    if starts < 1:
        raise ValueError(f"starts must be positive, got {starts}")
    from .nn.vae import check_refine
    encode_refine = check_refine(encode_refine, name="encode_refine")
    if _model_target(model) != objective.label:
        raise ValueError(f"objective {objective.spec!r} needs a model trained on "
                         f"{objective.label} labels; this checkpoint predicts "
                         f"{_model_target(model)} (train one with data.target: "
                         f"{objective.label})")
    labels = corpus.stiffness if objective.label == "stiffness" else corpus.curve
    if labels is None:
        raise ValueError(f"the corpus has no {objective.label} labels")
    if path_candidates is None:
        path_candidates = 50 if objective.label == "stiffness" else 0
    _check_refine_settings(refine_rounds, refine_parents, refine_children, refine_verify)
    if refine_select not in PARENT_SELECT:
        raise ValueError(f"refine_select must be one of {PARENT_SELECT}, got "
                         f"{refine_select!r}")
    if refine_rounds is None:
        refine_rounds = 10 if objective.label == "stiffness" else CURVE_REFINE_ROUNDS
    if refine_verify is None and objective.label == "curve":
        refine_verify = 20
    if check_seeds is None:
        check_seeds = 2 if objective.label == "curve" else 0
    if polish_generations is None:
        polish_generations = 40 if objective.label == "stiffness" else 0
    for name, v, low in (("polish_generations", polish_generations, 0),
                         ("polish_top", polish_top, 1), ("polish_children", polish_children, 1),
                         ("check_seeds", check_seeds, 0), ("check_top", check_top, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
    if not (0.0 <= polish_topology_rate <= 1.0):
        raise ValueError(f"polish_topology_rate must lie in [0, 1], got "
                         f"{polish_topology_rate!r}")
    if isinstance(start_noise, bool) or not isinstance(start_noise, (int, float)) or \
            not (math.isfinite(start_noise) and start_noise >= 0):
        raise ValueError(f"start_noise must be a finite number >= 0, got {start_noise!r}")
    record_every = record_every or max(1, steps // 100)
    torch.manual_seed(seed)
    timings = {}
    t0 = time.perf_counter()
    idx = select_starts(objective, labels, starts)
    start_trusses = [corpus.truss(int(i)) for i in idx]
    z0 = encode_trusses(model, start_trusses, refine_steps=encode_refine)
    if start_noise:
        z0 = z0 + start_noise_draw(z0.shape, start_noise, seed).to(z0)
    timings["starts"] = time.perf_counter() - t0
    bounds = None if trust_margin is None else trust_region(normalizer, labels, trust_margin)
    if getattr(model, "reads_features", False):
        from .evaluation import feature_workers
        model.feature_workers = feature_workers(workers)
    trace = optimize_latents(model, normalizer, objective, z0, steps=steps, lr=lr, relax=relax,
                             bounds=bounds, record_every=record_every, progress=progress,
                             feature_every=feature_every)
    timings["optimize"] = trace.seconds
    t0 = time.perf_counter()
    pool = _collect_candidates(model, normalizer, objective, trace, path_candidates, relax)
    timings["decode_repair"] = time.perf_counter() - t0
    cands, timings["fe"], timings["rank"] = _verify_and_rank(objective, pool, labels[idx[0]],
                                                             density, workers, seed, progress)
    num_candidates = len(pool["runs"])
    if refine_rounds:
        t0 = time.perf_counter()
        cands, n_refined, fe_sec = refine_candidates(
            model, normalizer, objective, cands, labels[idx[0]], refine_rounds, refine_parents,
            refine_children, relax=relax, density=density, workers=workers, seed=seed,
            first_step=steps, verify_per_round=refine_verify,
            extra_parents=_start_candidates(objective, start_trusses[:refine_parents],
                                            labels[idx[:refine_parents]]), progress=progress,
            encode_refine=encode_refine, parent_select=refine_select)
        num_candidates += n_refined
        timings["refine"] = time.perf_counter() - t0
    if polish_generations:
        t0 = time.perf_counter()
        cands, n_polished = _polish_candidates(
            objective, cands, labels[idx[0]], polish_generations, polish_top, polish_children,
            density, workers, seed, [seed + k for k in range(check_seeds + 1)],
            steps + refine_rounds + 1, progress, polish_topology_rate)
        num_candidates += n_polished
        timings["polish"] = time.perf_counter() - t0
    imperfection: dict = {}
    if check_seeds and objective.label == "curve":
        t0 = time.perf_counter()
        top = [c for c in cands if c.status == "ok"][:check_top]
        seeds = [seed + k for k in range(1, check_seeds + 1)]
        vals = imperfection_check(objective, [start_trusses[0]] + [c.truss for c in top],
                                  seeds, density, workers)
        ref = float(objective.value(labels[idx[0]][None])[0])
        imperfection = {"seeds": [seed] + seeds,
                        "dataset_best": [ref] + vals[0].tolist(),
                        "designs": [[c.fe_value] + v.tolist() for c, v in zip(top, vals[1:])]}
        timings["imperfection_check"] = time.perf_counter() - t0
    settings = {"starts": int(len(idx)), "steps": steps, "lr": lr, "relax": relax,
                "trust_margin": trust_margin, "encode_refine": encode_refine,
                "path_candidates": path_candidates, "record_every": record_every,
                "refine_rounds": refine_rounds, "refine_parents": refine_parents,
                "refine_select": refine_select,
                "refine_children": refine_children, "refine_verify": refine_verify,
                "polish_generations": polish_generations, "polish_top": polish_top,
                "polish_children": polish_children,
                "polish_topology_rate": polish_topology_rate,
                "density": density, "seed": seed, "check_seeds": check_seeds,
                "check_top": check_top, "start_noise": float(start_noise),
                "corpus_size": len(labels),
                **({"feature_every": feature_every}
                   if getattr(model, "reads_features", False) else {})}
    ref_value = float(objective.value(labels[idx[0]][None])[0])
    return DesignResult(objective, idx, labels[idx], int(idx[0]), start_trusses[0],
                        labels[idx[0]], ref_value, trace, cands, num_candidates, settings,
                        timings, imperfection)


def _polish_candidates(objective, cands: list, reference_label, generations, top, children,
                       density, workers, seed, fe_seeds, step, progress,
                       topology_rate=0.0) -> tuple[list, int]:
    """Polish the ``top`` best FE-verified candidates (:func:`gnn_truss.polish
    .polish_geometry`). Returns the candidates with each improved lattice added
    (``source="polish"``, FE value of the first seed), best FE score first, and the number
    added."""
    from .polish import polish_geometry
    ref_value = float(objective.value(np.asarray(reference_label)[None])[0])
    ref_score = _fe_scores(objective, np.array([ref_value]))[0]
    seen = {c.truss.canonical_hash() for c in cands}
    new = []
    for k, c in enumerate([c for c in cands if c.status == "ok"][:top]):
        try:
            res = polish_geometry(c.truss, objective, generations=generations,
                                  children=children, density=density, workers=workers,
                                  seed=seed + k, fe_seeds=fe_seeds,
                                  topology_rate=topology_rate, progress=progress)
        except ValueError as exc:  # the FE of the parent fails on another seed
            log.info("polish of candidate %d skipped: %s", k, exc)
            continue
        h = res.truss.canonical_hash()
        if h in seen:
            continue
        seen.add(h)
        value = float(res.seed_values[0])
        score = float(_fe_scores(objective, np.array([value]))[0])
        gain = 100.0 * (ref_score - score) / abs(ref_value) if ref_value != 0 else math.nan
        new.append(Candidate(run=c.run, step=step, source="polish", truss=res.truss,
                             repaired=False, status="ok", label=res.label, C=res.C,
                             fe_value=value, fe_score=score, predicted_value=math.nan,
                             improvement=gain))
    return sorted(cands + new, key=lambda c: (c.fe_score, c.run, c.step)), len(new)


def _imperfection_summary(check: dict) -> dict | None:
    """The ``imperfection_check`` entry of ``summary.json``: per lattice the values per seed,
    their mean and worst (``None`` if the FE failed for a seed), and the rank of the design
    with the best mean (``most_robust_rank``, 1-based)."""
    if not check:
        return None

    def stats(v):
        v = np.asarray(v, dtype=np.float64)
        fin = v[np.isfinite(v)]
        return {"values": [_num(x) for x in v],
                "mean": _num(fin.mean()) if len(fin) == len(v) else None,
                "worst": _num(fin.max()) if len(fin) == len(v) else None}

    designs = [dict(rank=r + 1, **stats(v)) for r, v in enumerate(check["designs"])]
    means = [d["mean"] if d["mean"] is not None else np.inf for d in designs]
    robust = int(np.argmin(means)) + 1 if np.isfinite(min(means, default=np.inf)) else None
    return {"seeds": list(check["seeds"]), "dataset_best": stats(check["dataset_best"]),
            "designs": designs, "most_robust_rank": robust}


def imperfection_check(objective: Objective, trusses, seeds, density: float = 0.15,
                       workers: int | None = None) -> np.ndarray:
    """Objective values of lattices under other imperfection seeds of the nonlinear FE.

    A compression curve past buckling can depend on the (tiny, seeded) imperfection that
    selects the buckling mode: a design ranked on one seed may owe part of its score to it.
    This re-runs :func:`verify_candidates` with each seed.

    Args:
        objective: a curve objective (``label == "curve"``).
        trusses: ``n`` lattices.
        seeds: imperfection seeds.
        density, workers: as :func:`verify_candidates`.

    Returns:
        ``[n, len(seeds)]`` objective values (NaN where the FE failed).
    """
    if objective.label != "curve":
        raise ValueError("the imperfection check applies to curve objectives only")
    trusses = list(trusses)
    out = np.full((len(trusses), len(seeds)), np.nan)
    for k, s in enumerate(seeds):
        ver = verify_candidates(trusses, "curve", density, workers, int(s))
        with np.errstate(all="ignore"):
            out[:, k] = np.where(ver.ok, np.asarray(objective.value(ver.labels), float), np.nan)
    return out


# --------------------------------------------------------------------------- figures

#: Default second axis for the path figure of a ``max`` / ``min`` objective on property P:
#: the figure shows (x, P).
_PATH_PARTNER = {"E1": "E2", "E2": "E1", "E3": "E1", "G23": "G31", "G31": "G12",
                 "G12": "G23", "K_V": "G_V", "G_V": "K_V", "K_R": "G_R", "G_R": "K_R",
                 "KV_GV": "G_V", "A_U": "K_V"}


def path_axes(objective: Objective) -> tuple[str, str]:
    """``(x, y)`` quantities of the property-space path figure.

    ``max`` / ``min`` of P: ``(partner, P)`` (``E2 -> (E1, E2)``, ``nu21 -> (nu12, nu21)``,
    ``KV_GV -> (G_V, KV_GV)``); ``match-constants``: the first two constants (or ``(E1, c)``);
    ``match-stiffness``: ``(E1, E2)``; ``match-curve``: the stresses at 0.5 % and 24.5 %
    (``sigma@0.5%``, ``sigma@24.5%``).
    """
    if objective.kind in ("max", "min"):
        p = objective.prop
        if p.startswith("nu"):
            return f"nu{p[3]}{p[2]}", p
        return _PATH_PARTNER.get(p, "E1"), p
    if objective.kind == "match-constants":
        names = [n for n, _ in objective.constants]
        return (names[0], names[1]) if len(names) > 1 else ("E1" if names[0] != "E1" else "E2",
                                                            names[0])
    if objective.kind == "match-curve":
        return "sigma@0.5%", "sigma@24.5%"
    return "E1", "E2"


def axis_values(name: str, labels) -> np.ndarray:
    """Values of a :func:`path_axes` quantity for labels ``[..., 9]`` / ``[..., 13]``."""
    lab = np.asarray(labels, dtype=np.float64)
    if name.startswith("sigma@"):
        k = {f"sigma@{0.5 + 2 * j:g}%": j for j in range(_CURVE_POINTS)}[name]
        return lab[..., k]
    shape = lab.shape[:-1]
    flat = lab.reshape(-1, lab.shape[-1])
    ok = np.all(np.isfinite(flat), axis=1)
    out = np.full(len(flat), np.nan)
    if ok.any():
        with np.errstate(all="ignore"):
            out[ok] = _properties_unchecked(flat[ok])[name]
    return out.reshape(shape)


def _log_axis(values: np.ndarray) -> bool:
    """Log scale where all finite values are positive and span more than a factor 50."""
    v = values[np.isfinite(values)]
    return bool(len(v) and v.min() > 0 and v.max() / v.min() > 50)


# --------------------------------------------------------------------------- writer

def _label_names(objective: Objective) -> tuple:
    from .evaluation import CURVE_NAMES, STIFFNESS_NAMES
    return CURVE_NAMES if objective.label == "curve" else STIFFNESS_NAMES


def _num(v):
    v = float(v)
    return v if math.isfinite(v) else None


def write_design(result: DesignResult, out, corpus_labels: np.ndarray | None = None,
                 designs: int = 10, figures: bool = True, cloud: int = 20000,
                 seed: int = 0, exports: int = 0, cell_size: float = 10.0) -> dict:
    """Write a :class:`DesignResult` to a folder.

    Files: ``designs/rank01.json ...`` (the best ``designs`` FE-verified lattices,
    :func:`gnn_truss.io.save_lattice`, with their FE values in ``meta``) and
    ``dataset_best.json``; ``table.csv`` (the dataset best, then every distinct candidate in
    ranking order: status, FE and predicted objective value, improvement %, FE labels);
    ``summary.json``; with ``figures`` ``path.png`` (:func:`plot_design_path` over up to
    ``cloud`` corpus lattices), ``progress.png`` (:func:`plot_design_progress`), ``best.png``
    (best design and its elastic surface), ``designs.png`` (the dataset best beside the best
    design of each of the 4 best distinct topologies, each with its elastic surface) and, for curve objectives, ``curves.png``. With
    ``exports`` the best ``exports`` designs are also written as manufacturing files:
    ``exports/rankNN.json`` (:func:`gnn_truss.export.to_json`: nodes, struts, radius, density,
    material) and ``exports/rankNN.stl`` (full cell of side ``cell_size``, watertight where
    ``manifold3d`` is installed).

    Args:
        result: from :func:`run_design`.
        out: output folder (created).
        corpus_labels: ``[N, D]`` corpus FE labels for the cloud of ``path.png``.
        designs: lattice files to write.
        figures: draw the figures.
        cloud: largest number of corpus points drawn (seeded subsample).
        seed: subsample seed.
        exports: designs exported as JSON + STL (0: none).
        cell_size: cell side of the exports (length unit of the STL, e.g. mm).

    Returns:
        The summary dict (as in ``summary.json``).
    """
    import csv

    from .io import save_lattice
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    obj = result.objective
    names = _label_names(obj)
    ok = [c for c in result.candidates if c.status == "ok"]
    for old in (out / "designs").glob("rank*.json"):  # no stale designs of an earlier run
        old.unlink()
    files = []
    for r, c in enumerate(ok[:designs], start=1):
        f = save_lattice(c.truss, out / "designs" / f"rank{r:02d}.json",
                         name=f"{obj.spec} rank {r}",
                         meta={"objective": obj.spec, "fe_value": _num(c.fe_value),
                               "predicted_value": _num(c.predicted_value),
                               "improvement_percent": _num(c.improvement), "run": c.run,
                               "step": c.step, "source": c.source,
                               "fe_label": [_num(v) for v in c.label]})
        files.append(f)
    save_lattice(result.dataset_best_truss, out / "dataset_best.json",
                 name=f"dataset best for {obj.spec}",
                 meta={"corpus_index": result.dataset_best,
                       "fe_value": _num(result.dataset_best_value),
                       "fe_label": [_num(v) for v in result.dataset_best_label]})
    with open(out / "table.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["rank", "kind", "run", "start_index", "step", "source", "status",
                    f"fe_{obj.value_name}", f"predicted_{obj.value_name}", "improvement_percent",
                    "file", *names])
        w.writerow(["", "dataset best", "", result.dataset_best, "", "", "ok",
                    result.dataset_best_value, "", 0.0, "dataset_best.json",
                    *result.dataset_best_label])
        for r, c in enumerate(result.candidates, start=1):
            f = f"designs/rank{r:02d}.json" if c.status == "ok" and r <= designs else ""
            w.writerow([r, "designed", c.run, int(result.start_indices[c.run]), c.step,
                        c.source, c.status, c.fe_value, c.predicted_value, c.improvement, f,
                        *c.label])
    best = result.best
    status_counts: dict = {}
    for c in result.candidates:
        status_counts[c.status] = status_counts.get(c.status, 0) + 1
    summary = {
        "objective": obj.spec, "kind": obj.kind, "property": obj.prop,
        "target": list(obj.target) if obj.target else (dict(obj.constants) if obj.constants
                                                       else None),
        "value_name": obj.value_name, "settings": result.settings,
        "dataset_best": {"corpus_index": result.dataset_best,
                         "value": _num(result.dataset_best_value),
                         "label": [_num(v) for v in result.dataset_best_label]},
        "best_design": None if best is None else {
            "value": _num(best.fe_value), "predicted_value": _num(best.predicted_value),
            "improvement_percent": _num(best.improvement), "run": best.run, "step": best.step,
            "source": best.source, "start_index": int(result.start_indices[best.run]),
            "file": "designs/rank01.json" if designs > 0 else None,
            "label": [_num(v) for v in best.label],
            "repaired": best.repaired},
        "candidates_verified": result.num_candidates,
        "distinct_candidates": len(result.candidates),
        "status_counts": status_counts,
        "better_than_dataset": int(sum(1 for c in ok if c.improvement > 0)),
        "timings_seconds": {k: round(v, 3) for k, v in result.timings.items()},
        "imperfection_check": _imperfection_summary(result.imperfection),
        "files": ["table.csv", "summary.json", "dataset_best.json"]
                 + [str(f.relative_to(out)) for f in files],
    }
    if exports:
        summary["exports"] = _write_exports(ok[:exports], out / "exports",
                                            result.settings.get("density", 0.15), cell_size)
        summary["files"] += [f"exports/{e[k]}" for e in summary["exports"]
                             for k in ("json", "stl")]
    if figures:
        summary["files"] += _write_figures(result, out, corpus_labels, cloud, seed)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _dataset_best_stiffness(result: DesignResult) -> np.ndarray:
    """``[6, 6]`` stiffness of the dataset best: from its label, or by linear FE for curve
    objectives (NaN if that fails)."""
    from .properties import stiffness_from_vector
    if result.objective.label == "stiffness":
        return np.asarray(stiffness_from_vector(np.asarray(result.dataset_best_label)))
    from .fe.homogenization import homogenize_batch
    res = homogenize_batch([result.dataset_best_truss],
                           density=result.settings.get("density", 0.15), workers=1)
    return np.asarray(res.C[0])


def _write_exports(candidates, folder: Path, density: float, cell_size: float) -> list:
    """JSON + STL of each candidate (best first); returns one record per design."""
    from .export import export_stl, write_json
    folder.mkdir(parents=True, exist_ok=True)
    for old in list(folder.glob("rank*.json")) + list(folder.glob("rank*.stl")):
        old.unlink()
    records = []
    for r, c in enumerate(candidates, start=1):
        stem = f"rank{r:02d}"
        write_json(c.truss, folder / f"{stem}.json", density=density, cell_size=cell_size,
                   name=f"rank {r}")
        info = export_stl(c.truss, folder / f"{stem}.stl", density=density,
                          cell_size=cell_size)
        records.append({"rank": r, "json": f"{stem}.json", "stl": f"{stem}.stl",
                        "triangles": int(info["triangles"]),
                        "watertight": bool(info["watertight"]),
                        "unioned": bool(info["unioned"])})
    return records


def _write_figures(result: DesignResult, out: Path, corpus_labels, cloud: int,
                   seed: int, max_paths: int = 15) -> list:
    from .plotting import (plot_design_curves, plot_design_path, plot_design_progress,
                           plot_lattice_with_surface, plot_strip)
    obj = result.objective
    xname, yname = path_axes(obj)
    files = []
    cloud_xy = np.zeros((0, 2))
    if corpus_labels is not None:
        lab = np.asarray(corpus_labels, dtype=np.float64)
        if len(lab) > cloud:
            lab = lab[np.random.default_rng(seed).choice(len(lab), cloud, replace=False)]
        cloud_xy = np.stack([axis_values(xname, lab), axis_values(yname, lab)], axis=1)
    tr = result.trace
    ok = [c for c in result.candidates if c.status == "ok"]
    # the paths of the runs that gave the best designs (all 100 are an unreadable tangle)
    runs = list(dict.fromkeys(c.run for c in ok))[:max_paths]
    paths = [np.stack([axis_values(xname, tr.labels[:, r]), axis_values(yname, tr.labels[:, r])],
                      axis=1) for r in runs]
    ver = np.array([[axis_values(xname, c.label[None])[0], axis_values(yname, c.label[None])[0]]
                    for c in ok]).reshape(-1, 2)
    best = result.best
    starts = np.stack([axis_values(xname, result.start_labels),
                       axis_values(yname, result.start_labels)], axis=1)
    ref = [axis_values(xname, result.dataset_best_label[None])[0],
           axis_values(yname, result.dataset_best_label[None])[0]]
    title = f"{obj.spec}: "
    title += ("no FE-valid design" if best is None else
              f"best {obj.value_name} {best.fe_value:.4g} (dataset {result.dataset_best_value:.4g},"
              f" {best.improvement:+.1f} %)")
    allv = np.concatenate([cloud_xy, ver, starts])  # FE values only: paths may hold outliers
    scale = ["log" if _log_axis(allv[:, i]) else "linear" for i in (0, 1)]
    plot_design_path(cloud_xy, paths, ver, None if best is None else ver[0], xname, yname,
                     path=out / "path.png", title=title, xscale=scale[0], yscale=scale[1],
                     start_xy=starts, reference_xy=ref, highlight=None if best is None else 0,
                     labels={"paths": f"optimisation paths ({len(runs)} runs of the best "
                                      f"designs)"})
    values = np.asarray(obj.value(tr.labels.reshape(-1, tr.labels.shape[-1])))
    grad = [c for c in ok if c.source not in ("refine", "polish")]
    ref_c = [c for c in ok if c.source in ("refine", "polish")]
    plot_design_progress(tr.steps, values.reshape(tr.labels.shape[:2]), [c.step for c in grad],
                         [c.fe_value for c in grad], obj.value_name,
                         refined=([c.step - result.settings["steps"] for c in ref_c],
                                  [c.fe_value for c in ref_c]),
                         reference=result.dataset_best_value, path=out / "progress.png",
                         title=title, highlight=None if best is None else best.run)
    files += ["path.png", "progress.png"]
    if best is not None and np.all(np.isfinite(best.C)):
        plot_lattice_with_surface(best.truss, best.C, path=out / "best.png",
                                  title=f"best design for {obj.spec}: {obj.value_name} = "
                                        f"{best.fe_value:.4g} (FE)")
        files.append("best.png")
    if ok:
        shown, seen = [], set()  # the best design of each of the 4 best distinct topologies
        for c in ok:
            key = c.truss.adjacency.astype(bool).tobytes()
            if key not in seen:
                seen.add(key)
                shown.append(c)
            if len(shown) == 4:
                break
        names = ["dataset best\n" + f"{obj.value_name} = {result.dataset_best_value:.4g}"]
        rank = {id(c): r for r, c in enumerate(ok, start=1)}
        names += [f"rank {rank[id(c)]}\n{obj.value_name} = {c.fe_value:.4g} "
                  f"({c.improvement:+.0f} %)" for c in shown]
        plot_strip([result.dataset_best_truss] + [c.truss for c in shown],
                   [_dataset_best_stiffness(result)] + [c.C for c in shown],
                   labels=names, path=out / "designs.png",
                   title=f"{obj.spec}: dataset best and the best FE-verified design "
                         f"of each topology")
        files.append("designs.png")
    if obj.kind == "match-curve":
        curves = {f"dataset best (NRMSE {result.dataset_best_value:.3f})":
                  result.dataset_best_label}
        if best is not None:
            curves[f"best design (NRMSE {best.fe_value:.3f})"] = best.label
        plot_design_curves(obj.target, curves, path=out / "curves.png", title=obj.spec)
        files.append("curves.png")
    return files


# --------------------------------------------------------------------------- CLI glue

def load_design_model(checkpoint, device: str = "cpu"):
    """``(model, normalizer, checkpoint dict)`` from a checkpoint of
    :func:`gnn_truss.training.train` (model in eval mode; see
    :func:`gnn_truss.exploration.load_model`).

    Raises:
        ValueError: missing or foreign checkpoint, or weights not matching its config.
    """
    from .dataset import TargetNormalizer
    from .exploration import load_model
    model, ck = load_model(find_checkpoint(checkpoint), device)
    return model, TargetNormalizer.from_dict(ck["normalizer"]), ck


def ensemble_predictors(model, normalizer, others):
    """Make ``model`` predict with the mean of its predictor and those of ``others``
    (:class:`~gnn_truss.nn.predictor.PredictorEnsemble`, in physical units, normalised by
    ``normalizer``), for inverse design whose optimiser cannot exploit the errors of one
    predictor alone. ``model`` is changed in place and returned.

    The members must share ``model``'s encoder and decoders bit for bit (so that a latent
    decodes to the same lattice for all of them), e.g. curve predictors trained on top of the
    same frozen VAE (``model.predictor_input: decoded``), and predict the same targets.

    Args:
        model: :class:`~gnn_truss.nn.TrussVAE` (of :func:`load_design_model`).
        normalizer: its :class:`~gnn_truss.dataset.TargetNormalizer`.
        others: ``(model, normalizer)`` pairs or ``(model, normalizer, name)`` triples.

    Raises:
        ValueError: a member with other encoder or decoder weights, another predictor input,
            other targets or other lattice features.
    """
    from .nn.predictor import PredictorEnsemble
    if not others:
        return model
    mine = {n: v for n, v in model.state_dict().items() if not n.startswith("predictor.")}
    members, norms = [model.predictor], [normalizer]
    for i, other in enumerate(others):
        m, norm = other[0], other[1]
        name = other[2] if len(other) > 2 else f"member {i + 1}"
        if getattr(m, "predictor_input", "latent") != getattr(model, "predictor_input",
                                                              "latent"):
            raise ValueError(f"{name}: its predictor reads the "
                             f"{getattr(m, 'predictor_input', 'latent')} input, the design "
                             f"model's the {getattr(model, 'predictor_input', 'latent')}")
        theirs = {n: v for n, v in m.state_dict().items() if not n.startswith("predictor.")}
        differ = sorted(n for n in set(mine) | set(theirs)
                        if n not in mine or n not in theirs or mine[n].shape != theirs[n].shape
                        or not torch.equal(mine[n], theirs[n].to(mine[n].device)))
        if differ:
            raise ValueError(f"{name}: an ensemble member must share the design model's "
                             f"encoder and decoders, but {len(differ)} tensors differ (e.g. "
                             f"{differ[0]})")
        members.append(m.predictor.to(_device(model)))
        norms.append(norm)
    model.predictor = PredictorEnsemble(members, norms)
    model.eval()
    return model


def default_corpus_path(ck) -> Path:
    from .dataset import resolve_data_root
    data = ck["config"]["data"]
    raw = resolve_data_root(data["root"], "corpus") / "raw"  # the one training reads
    for cand in (raw / "corpus.npz", raw / "corpus"):
        if cand.exists():
            return cand
    raise ValueError(f"no corpus found for the checkpoint's dataset ({raw / 'corpus.npz'}); "
                     f"pass --corpus PATH")


def _note_grown_corpus(ck: dict, corpus_path, n_corpus: int) -> None:
    """Say on stderr when the checkpoint's own corpus has grown past the lattices it was
    trained on (``num_lattices`` of the checkpoint, else ``data.limit``): the dataset best and
    the refinement parents then come from all ``n_corpus`` lattices, on purpose."""
    n = ck.get("num_lattices") or ck["config"]["data"].get("limit")
    if n is None or int(n) >= n_corpus:
        return
    n = int(n)
    print(f"note: {corpus_path} holds {n_corpus} lattices, {n_corpus - n} more than the {n} "
          f"this checkpoint was trained on; the dataset best is taken over all of them (to "
          f"compare with its own data: gnn-truss data pack --limit {n} {corpus_path} own.npz, then "
          f"--corpus own.npz)",
          file=sys.stderr)


def add_design_arguments(parser) -> None:
    """Arguments of ``gnn-truss design`` (see :func:`design_main`)."""
    parser.add_argument("--objective", required=True,
                        help="max-<prop> / min-<prop> (E1..E3 or E11..E33, G23, G31, G12, "
                             "nu12..nu32, K_V, G_V, K_R, G_R, A_U, KV_GV), match-stiffness, "
                             "match-curve")
    parser.add_argument("--target", default=None,
                        help="for match objectives: JSON (9 stiffness components, a dict of "
                             "constants, or 13 curve stresses), a .json/.csv/.npy file, or "
                             "a named curve target built from the corpus: stiffest*1.3 "
                             "(30 %% above its stiffest curve), softening")
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT,
                        help=f"trained model (default {DEFAULT_CHECKPOINT})")
    parser.add_argument("--ensemble", nargs="+", default=None, metavar="CHECKPOINT",
                        help="predict with the mean of the checkpoint's predictor and these "
                             "checkpoints' (in physical units); they must share its encoder "
                             "and decoders, e.g. curve predictors trained on the same VAE")
    parser.add_argument("--corpus", default=None,
                        help="FE-labelled corpus (default: ROOT/raw/corpus.npz of the "
                             "checkpoint's data.root)")
    parser.add_argument("--starts", type=int, default=100, help="optimisation runs (100)")
    parser.add_argument("--steps", type=int, default=1000, help="Adam steps per run (1000)")
    parser.add_argument("--lr", type=float, default=0.01, help="Adam learning rate (0.01)")
    parser.add_argument("--encode-refine", type=int, default=0, metavar="STEPS",
                        help="refine the latent means of the start lattices and of the "
                             "refinement parents by STEPS steps on their own reconstruction "
                             "loss, so that they decode to those lattices (0; 100 is a good "
                             "value, about a second)")
    parser.add_argument("--start-noise", type=float, default=0.0, metavar="SIGMA",
                        help="add Gaussian noise of standard deviation SIGMA (latent units) "
                             "to the start latents, drawn from --seed, so that runs with "
                             "different seeds take different paths (0: the gradient stage "
                             "does not depend on the seed)")
    parser.add_argument("--relax", choices=("straight-through", "soft"),
                        default="straight-through", help="adjacency relaxation in the loop")
    parser.add_argument("--trust-margin", type=float, default=2.0,
                        help="trust region of the predictions: normalised standard deviations "
                             "beyond the corpus range (2.0)")
    parser.add_argument("--no-trust-region", action="store_true",
                        help="let the predictions go anywhere")
    parser.add_argument("--path-candidates", type=int, default=None,
                        help="path snapshots per run verified by FE besides the best iterate "
                             "(default 50 for stiffness objectives, 0 for curves)")
    parser.add_argument("--refine-rounds", type=int, default=None,
                        help="rounds of FE-guided latent refinement after the gradient stage "
                             "(default 10 for stiffness objectives, 3 for curves)")
    parser.add_argument("--refine-parents", type=int, default=10,
                        help="best FE-verified designs refined per round (10)")
    parser.add_argument("--refine-select", choices=PARENT_SELECT, default="topology",
                        help="refinement parents: the best lattice of each of the best "
                             "distinct topologies ('topology', default) or the best "
                             "distinct lattices ('lattice', the behaviour before this "
                             "option)")
    parser.add_argument("--refine-children", type=int, default=50,
                        help="latent samples decoded and FE-verified per parent and round (50)")
    parser.add_argument("--refine-verify", type=int, default=None,
                        help="FE-verify at most this many new lattices per refinement round, "
                             "the best predicted ones (default: all for stiffness objectives, "
                             "20 for curves)")
    parser.add_argument("--polish-generations", type=int, default=None,
                        help="generations of the FE-driven polish of the best designs "
                             "(default 40 for stiffness objectives, 0 for curves)")
    parser.add_argument("--polish-top", type=int, default=3,
                        help="best distinct designs polished (3)")
    parser.add_argument("--polish-children", type=int, default=8,
                        help="FE-verified children per polish generation (8)")
    parser.add_argument("--polish-topology-rate", type=float, default=0.5,
                        help="probability that a polish child adds or removes one strut "
                             "instead of moving nodes (0.5; 0 keeps each design's topology)")
    parser.add_argument("--check-seeds", type=int, default=None,
                        help="curve objectives: re-run the nonlinear FE of the best designs and "
                             "the dataset best with this many other imperfection seeds "
                             "(default 2; 0 skips)")
    parser.add_argument("--check-top", type=int, default=5,
                        help="designs in the imperfection check (5)")
    parser.add_argument("--feature-every", type=int, default=100, metavar="STEPS",
                        help="a checkpoint whose predictor reads the buckling of the lattice "
                             "(model.predictor_features): recompute it by FE for each run's "
                             "decoded lattice every STEPS gradient steps (100)")
    parser.add_argument("--designs", type=int, default=10, help="lattice files written (10)")
    parser.add_argument("--exports", type=int, default=3,
                        help="best designs also exported as JSON + STL to OUT/exports (3)")
    parser.add_argument("--cell-size", type=float, default=10.0,
                        help="cell side of the STL exports, e.g. in mm (10)")
    parser.add_argument("--out", default=None,
                        help="output folder (default results/design-<objective>)")
    parser.add_argument("--seed", type=int, default=0, help="seed (0)")
    parser.add_argument("--workers", type=int, default=None, help="FE worker processes")
    parser.add_argument("--device", default="cpu", help="torch device (cpu)")
    parser.add_argument("--no-figures", action="store_true", help="skip the figures")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _check_args(args) -> None:
    for name in ("starts", "steps"):
        v = getattr(args, name)
        if v < (1 if name == "starts" else 0):
            raise ValueError(f"--{name} must be {'positive' if name == 'starts' else '>= 0'}, "
                             f"got {v}")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        raise ValueError(f"--lr must be a finite positive number, got {args.lr}")
    from .nn.vae import check_refine
    check_refine(args.encode_refine, name="--encode-refine")
    _check_refine_settings(args.refine_rounds, args.refine_parents, args.refine_children,
                           args.refine_verify, names={k: f"--refine-{k}" for k in _REFINE_NAMES})
    if args.path_candidates is not None and args.path_candidates < 0:
        raise ValueError(f"--path-candidates must be >= 0, got {args.path_candidates}")
    if not (args.trust_margin >= 0 and math.isfinite(args.trust_margin)):
        raise ValueError(f"--trust-margin must be a finite number >= 0, got {args.trust_margin}")
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be positive, got {args.workers}")
    if args.polish_generations is not None and args.polish_generations < 0:
        raise ValueError(f"--polish-generations must be >= 0, got {args.polish_generations}")
    for name in ("polish_top", "polish_children"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, "
                             f"got {getattr(args, name)}")
    if not 0.0 <= args.polish_topology_rate <= 1.0:
        raise ValueError(f"--polish-topology-rate must lie in [0, 1], "
                         f"got {args.polish_topology_rate}")
    if args.check_seeds is not None and args.check_seeds < 0:
        raise ValueError(f"--check-seeds must be >= 0, got {args.check_seeds}")
    if args.check_top < 1:
        raise ValueError(f"--check-top must be positive, got {args.check_top}")
    if args.feature_every < 1:
        raise ValueError(f"--feature-every must be positive, got {args.feature_every}")
    if not (args.start_noise >= 0 and math.isfinite(args.start_noise)):
        raise ValueError(f"--start-noise must be a finite number >= 0, got {args.start_noise}")
    for name in ("designs", "exports"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name} must be >= 0, got {getattr(args, name)}")
    if not (args.cell_size > 0 and math.isfinite(args.cell_size)):
        raise ValueError(f"--cell-size must be a finite positive number, got {args.cell_size}")


def design_main(args) -> int:
    """``gnn-truss design``: run :func:`run_design` and :func:`write_design`; prints the
    dataset best, the best FE-verified design and the improvement. Returns 0 (also when no
    candidate passes the FE; the summary says so). Bad input raises ``ValueError``."""
    from .corpus import load_corpus
    _check_args(args)
    named = is_curve_target_name(args.target)
    target = load_target(args.target) if args.target is not None and not named else None
    # a named curve target needs the corpus: checked against a placeholder curve first
    objective = parse_objective(args.objective, np.linspace(0, 1, _CURVE_POINTS).tolist()
                                if named else target)
    model, normalizer, ck = load_design_model(args.checkpoint, args.device)
    if _model_target(model) != objective.label:
        raise ValueError(f"objective {objective.spec!r} needs a model trained on "
                         f"{objective.label} labels, but {args.checkpoint} predicts "
                         f"{_model_target(model)}")
    if getattr(args, "ensemble", None):
        ensemble_predictors(model, normalizer, [
            (*load_design_model(p, args.device)[:2], p) for p in args.ensemble])
    corpus_path = Path(args.corpus) if args.corpus else default_corpus_path(ck)
    if not corpus_path.exists():
        raise ValueError(f"corpus not found: {corpus_path}")
    corpus = load_corpus(corpus_path, quiet=True)
    if not args.corpus:
        _note_grown_corpus(ck, corpus_path, len(corpus))
    if named:
        if corpus.curve is None:
            raise ValueError(f"--target {args.target!r} needs a corpus with compression "
                             f"curves; {corpus_path} has none")
        objective = parse_objective(args.objective, curve_target(args.target, corpus.curve))
        objective = dataclasses.replace(objective, spec=f"{objective.spec} "
                                                        f"{args.target.strip()}")
    result = run_design(model, normalizer, corpus, objective, starts=args.starts,
                        steps=args.steps, lr=args.lr, relax=args.relax,
                        encode_refine=args.encode_refine,
                        trust_margin=None if args.no_trust_region else args.trust_margin,
                        path_candidates=args.path_candidates,
                        refine_rounds=args.refine_rounds, refine_parents=args.refine_parents,
                        refine_select=args.refine_select,
                        refine_children=args.refine_children,
                        refine_verify=args.refine_verify, workers=args.workers,
                        seed=args.seed, polish_generations=args.polish_generations,
                        polish_top=args.polish_top, polish_children=args.polish_children,
                        polish_topology_rate=args.polish_topology_rate,
                        check_seeds=args.check_seeds,
                        check_top=args.check_top, progress=not args.no_progress,
                        feature_every=args.feature_every, start_noise=args.start_noise)
    if getattr(args, "ensemble", None):
        result.settings["ensemble"] = [str(args.checkpoint), *map(str, args.ensemble)]
    safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", objective.spec)
    out = Path(args.out) if args.out else Path("results") / f"design-{safe}"
    labels = corpus.stiffness if objective.label == "stiffness" else corpus.curve
    summary = write_design(result, out, labels, designs=args.designs,
                           figures=not args.no_figures, seed=args.seed, exports=args.exports,
                           cell_size=args.cell_size)
    vn = objective.value_name
    print(f"objective {objective.spec}: dataset best {vn} = {result.dataset_best_value:.6g} "
          f"(corpus lattice {result.dataset_best})")
    best = result.best
    if best is None:
        print(f"no candidate passed the FE check ({summary['status_counts']})")
    else:
        how = ("FE polish" if best.source == "polish"
               else f"predicted {best.predicted_value:.6g}")
        print(f"best FE-verified design: {vn} = {best.fe_value:.6g} ({how}), improvement "
              f"{best.improvement:+.1f} %")
        print(f"{summary['better_than_dataset']} of {len(result.candidates)} distinct "
              f"candidates beat the dataset best")
    check = summary.get("imperfection_check")
    if check:
        seeds = ", ".join(str(s) for s in check["seeds"])

        def fmt(d):
            v = " / ".join("failed" if x is None else f"{x:.4g}" for x in d["values"])
            return v + ("" if d["mean"] is None else f" (mean {d['mean']:.4g})")
        print(f"imperfection check, {vn} with imperfection seeds {seeds}:")
        print(f"  dataset best: {fmt(check['dataset_best'])}")
        for d in check["designs"]:
            print(f"  design rank {d['rank']}: {fmt(d)}")
        if check["most_robust_rank"] is not None:
            print(f"  best mean: design rank {check['most_robust_rank']}")
    print(f"results in {out}")
    return 0
