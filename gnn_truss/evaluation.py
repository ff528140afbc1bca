r"""Evaluation of a trained graph VAE: reconstruction, property prediction and sampling.

Metrics of ``SPEC.md`` section 6, each reported with the paper's definition and a strict one
side by side:

=====================  ===============================  ======================================
quantity               paper                            strict
=====================  ===============================  ======================================
adjacency              element-wise accuracy over the   exact match (all 351 pairs right),
                       27 x 27 matrix, ones on the      edge precision / recall / F1
                       diagonal (:math:`(2c + 27)/729`)
geometry               :math:`R^2` of node positions    :math:`R^2` of the free-dof offsets
                       per x, y, z over used nodes      of used nodes
properties             :math:`R^2` per stiffness        also in normalised space; curve NRMSE
                       component (physical units)
samples                one connected component          :meth:`Truss.validate` and a finite,
                                                        positive-definite FE stiffness;
                                                        uniqueness, novelty
=====================  ===============================  ======================================

With ``constrained`` the adjacency metrics are also reported for the most probable adjacency
that passes the topology rules (:mod:`gnn_truss.decoding`), a decoding of the same logits.
With ``refine_latent`` every metric of the reconstruction and the property is also reported
at latents refined from the means on each lattice's own reconstruction loss
(:func:`gnn_truss.nn.vae.refine_latent`): an iterative encoder for known lattices, beside the
one-pass figures, which stay the model's.

Coefficient of determination: :math:`R^2 = 1 - \sum (y - \hat y)^2 / \sum (y - \bar y)^2`.
Curve error (Zheng et al. 2023): :math:`\mathrm{NRMSE} = \mathrm{RMSE} / (\max y - \min y)` of
each true curve, averaged over lattices.

Everything here is a pure function of tensors except :func:`sample_validity` (runs a model) and
:func:`evaluate_checkpoint` (the driver: loads a checkpoint and its data split, writes
``report.json`` and figures).
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import torch

from . import design_space as ds
from .geometry import num_components
from .truss import Truss

__all__ = ["STIFFNESS_NAMES", "CURVE_NAMES", "adjacency_metrics", "position_r2",
           "r2_per_component", "nrmse_curves", "exactly_reconstructed",
           "property_by_reconstruction",
           "decode_trusses", "sample_validity",
           "evaluate_checkpoint", "checkpoint_datasets", "compare_reports",
           "COMPARED_METRICS", "TARGETS", "target_check", "format_target_check"]

log = logging.getLogger(__name__)

#: Names of the 9 stiffness components (``graph.NUM_STIFFNESS``), units of ``E_s``.
STIFFNESS_NAMES = ("C11", "C12", "C13", "C22", "C23", "C33", "C44", "C55", "C66")
#: Names of the 13 curve points (nominal stress at 0.5 %, 2.5 %, ..., 24.5 % strain).
CURVE_NAMES = tuple(f"sigma@{0.5 + 2 * k:g}%" for k in range(13))


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _ratio(num: float, den: float, empty: float) -> float:
    return float(num / den) if den > 0 else float(empty)


# --------------------------------------------------------------------------- reconstruction

def adjacency_metrics(logits, target) -> dict:
    r"""Adjacency reconstruction metrics, threshold 0.5 on the sigmoid (``logit > 0``).

    Args:
        logits: ``[B, 351]`` upper-triangle logits.
        target: ``[B, 351]`` binary true upper triangle.

    Returns:
        ``accuracy_paper``: mean over lattices of :math:`(2 c + 27) / 729`, ``c`` the number of
        correct upper-triangle entries (the full symmetric 27 x 27 matrix with the paper's ones on
        the diagonal, which always count as correct); ``accuracy_offdiag``: mean of
        :math:`c / 351`; ``exact_match``: share of lattices with all 351 entries right;
        ``edge_precision``, ``edge_recall``, ``edge_f1``: micro-averaged over all true and
        predicted edges (0 when undefined, 1 if there are neither true nor predicted edges);
        ``num_lattices``.
    """
    lg, tg = _np(logits), _np(target)
    if lg.ndim != 2 or lg.shape[1] != ds.NUM_PAIRS or lg.shape != tg.shape:
        raise ValueError(f"logits and target must both be [B, {ds.NUM_PAIRS}], got "
                         f"{lg.shape} and {tg.shape}")
    pred, true = lg > 0, tg > 0.5
    correct = (pred == true).sum(axis=1)
    n_full = ds.NUM_NODES * ds.NUM_NODES
    tp = float(np.sum(pred & true))
    fp = float(np.sum(pred & ~true))
    fn = float(np.sum(~pred & true))
    none = tp + fp + fn == 0
    precision = _ratio(tp, tp + fp, 1.0 if none else 0.0)
    recall = _ratio(tp, tp + fn, 1.0 if none else 0.0)
    f1 = _ratio(2 * precision * recall, precision + recall, 1.0 if none else 0.0)
    return {
        "accuracy_paper": float(np.mean((2 * correct + ds.NUM_NODES) / n_full)),
        "accuracy_offdiag": float(np.mean(correct / ds.NUM_PAIRS)),
        "exact_match": float(np.mean(correct == ds.NUM_PAIRS)),
        "edge_precision": precision, "edge_recall": recall, "edge_f1": f1,
        "num_lattices": len(lg),
    }


def _r2(pred: np.ndarray, true: np.ndarray) -> float:
    """Pooled :math:`R^2` of two equal-size arrays (NaN if the truth is constant or empty)."""
    pred, true = pred.reshape(-1), true.reshape(-1)
    if true.size == 0:
        return float("nan")
    ss_tot = float(np.sum((true - true.mean()) ** 2))
    if ss_tot == 0:
        return float("nan")
    return 1.0 - float(np.sum((true - pred) ** 2)) / ss_tot


def _used_nodes(adj_triu: np.ndarray) -> np.ndarray:
    """``[B, 27]`` bool: nodes with at least one beam."""
    return ds.triu_to_adjacency(adj_triu > 0.5).any(axis=-1)


def position_r2(pred_offsets, true_offsets, true_adj) -> dict:
    """:math:`R^2` of node positions over the used nodes of the true lattices.

    Positions are ``design_space.NODE_GRID + unpack_offsets(offsets)`` (octant units), pooled
    over all used nodes of all lattices, one value per axis. Fixed coordinates (grid 0 or 1) are
    reproduced exactly and included, as in the paper; ``r2_offsets`` is the stricter
    :math:`R^2` over only the free dofs of used nodes.

    Args:
        pred_offsets, true_offsets: ``[B, 27]`` free-dof offsets.
        true_adj: ``[B, 351]`` true binary upper triangles (defines the used nodes).

    Returns:
        ``{"r2_x", "r2_y", "r2_z", "r2_offsets", "num_used_nodes"}``.
    """
    po, to, adj = _np(pred_offsets), _np(true_offsets), _np(true_adj)
    if po.shape != to.shape or po.ndim != 2 or po.shape[1] != ds.NUM_FREE_DOFS:
        raise ValueError(f"offsets must both be [B, {ds.NUM_FREE_DOFS}], got {po.shape} and "
                         f"{to.shape}")
    if adj.shape != (len(po), ds.NUM_PAIRS):
        raise ValueError(f"true_adj must be [{len(po)}, {ds.NUM_PAIRS}], got {adj.shape}")
    used = _used_nodes(adj)  # [B, 27]
    pp = ds.offsets_to_positions(ds.unpack_offsets(po))[used]  # [U, 3]
    tp = ds.offsets_to_positions(ds.unpack_offsets(to))[used]
    free_used = used[:, ds.FREE_DOF_NODE]  # [B, 27]
    out = {f"r2_{a}": _r2(pp[:, k], tp[:, k]) for k, a in enumerate("xyz")}
    out["r2_offsets"] = _r2(po[free_used], to[free_used])
    out["num_used_nodes"] = int(used.sum())
    return out


# --------------------------------------------------------------------------- properties

def r2_per_component(pred, true, names) -> dict:
    """:math:`R^2` per column: ``{name: 1 - SS_res / SS_tot}`` (NaN for a constant column).

    Args:
        pred, true: ``[B, D]`` (in the units the caller wants the score in).
        names: ``D`` column names.
    """
    p, t = _np(pred), _np(true)
    names = list(names)
    if p.shape != t.shape or p.ndim != 2 or p.shape[1] != len(names):
        raise ValueError(f"pred and true must both be [B, {len(names)}], got {p.shape} and "
                         f"{t.shape}")
    return {n: _r2(p[:, k], t[:, k]) for k, n in enumerate(names)}


def nrmse_curves(pred, true) -> float:
    r"""Mean over lattices of :math:`\mathrm{RMSE}_i / (\max_k y_{ik} - \min_k y_{ik})`.

    Args:
        pred, true: ``[B, 13]`` curves (same units). Lattices whose true curve is flat (zero
            range) are skipped; NaN if none is left.
    """
    p, t = _np(pred), _np(true)
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"pred and true must both be [B, K], got {p.shape} and {t.shape}")
    rmse = np.sqrt(np.mean((p - t) ** 2, axis=1))
    rng = t.max(axis=1) - t.min(axis=1)
    ok = rng > 0
    return float(np.mean(rmse[ok] / rng[ok])) if ok.any() else float("nan")


# --------------------------------------------------------------------------- sampling

def exactly_reconstructed(logits, true_adj) -> np.ndarray:
    """``[B]`` bool: the lattices whose 351 adjacency entries are all decoded right (logit > 0
    where the true entry is 1), the lattices counted by ``exact_match``.

    Args:
        logits: ``[B, 351]`` adjacency logits.
        true_adj: ``[B, 351]`` 0/1 true adjacency.
    """
    lo, adj = _np(logits), _np(true_adj)
    if lo.shape != adj.shape or lo.ndim != 2 or lo.shape[1] != ds.NUM_PAIRS:
        raise ValueError(f"logits and true_adj must both be [B, {ds.NUM_PAIRS}], got "
                         f"{lo.shape} and {adj.shape}")
    return ((lo > 0) == (adj > 0.5)).all(axis=1)


def property_by_reconstruction(logits, true_adj, pred, true, names, target: str) -> dict:
    """The property metrics split by whether the one pass reconstructs each lattice's
    adjacency exactly: how much of the property error the reconstruction causes, and how much
    the predictor makes on lattices it decodes right.

    Args:
        logits: ``[B, 351]`` adjacency logits (an entry is predicted present where > 0).
        true_adj: ``[B, 351]`` 0/1 true adjacency.
        pred, true: ``[B, D]`` properties in physical units.
        names: the ``D`` component names.
        target: ``"stiffness"`` or ``"curve"`` (curves add the NRMSE).

    Returns:
        ``{"fraction_exact": float, "exact": block, "wrong": block}``, each block
        ``{"num_lattices", "r2" (per component), "r2_mean", "r2_min", "rmse" (per
        component, physical units)}`` and for curves ``"nrmse"``; the R^2 of a block is over
        that block's lattices (its own mean and spread, so two blocks' R^2 also differ when
        their lattices spread differently; the RMSE does not depend on that), NaN for a block
        of fewer than 2 lattices (RMSE: of none).
    """
    if target not in ("stiffness", "curve"):
        raise ValueError(f"target must be 'stiffness' or 'curve', got {target!r}")
    exact = exactly_reconstructed(logits, true_adj)
    p, t = _np(pred), _np(true)
    names = list(names)
    if p.shape != t.shape or p.shape != (len(exact), len(names)):
        raise ValueError(f"pred and true must both be [{len(exact)}, {len(names)}], got "
                         f"{p.shape} and {t.shape}")
    out: dict = {"fraction_exact": float(exact.mean()) if len(exact) else float("nan")}
    for name, rows in (("exact", exact), ("wrong", ~exact)):
        n = int(rows.sum())
        if n >= 2:
            r2 = r2_per_component(p[rows], t[rows], names)
        else:
            r2 = {k: float("nan") for k in names}
        rmse = np.sqrt(np.mean((p[rows] - t[rows]) ** 2, axis=0)) if n else \
            np.full(len(names), np.nan)
        block = {"num_lattices": n, "r2": r2, "r2_mean": _nanmean(r2),
                 "r2_min": _nanmin(list(r2.values())),
                 "rmse": {k: float(v) for k, v in zip(names, rmse)}}
        if target == "curve":
            block["nrmse"] = nrmse_curves(p[rows], t[rows]) if n else float("nan")
        out[name] = block
    return out


def decode_trusses(logits, offsets, constrained: bool = False) -> list[Truss]:
    """Trusses from decoder outputs: adjacency ``logit > 0``; offsets cast to float64, clipped to
    ``[-0.5, 0.5]`` and zeroed on unused nodes.

    With ``constrained`` the adjacency is the most probable one that passes the topology rules
    (:func:`gnn_truss.decoding.constrained_adjacency`, default search) instead of the
    threshold one.

    Shapes: ``logits [B, 351]``, ``offsets [B, 27]`` -> ``B`` :class:`Truss`.
    """
    if constrained:
        from .decoding import constrained_adjacency
        bits = constrained_adjacency(logits)[0]
    else:
        bits = _np(logits) > 0
    off = np.clip(_np(offsets), -0.5, 0.5)
    adj = ds.triu_to_adjacency(bits.astype(np.uint8))  # [B, 27, 27]
    full = ds.unpack_offsets(off) * adj.any(axis=-1)[..., None]
    return [Truss(a, o) for a, o in zip(adj, full)]


def _connected(t: Truss) -> bool:
    return t.num_edges > 0 and num_components(ds.NUM_NODES, t.edges,
                                              np.flatnonzero(t.used)) == 1


@torch.no_grad()
def sample_validity(model, n: int = 1000, seed: int = 0, train_hashes=None,
                    fe_check: bool = True, batch_size: int = 1024,
                    constrained: bool = False) -> dict:
    """Validity, uniqueness and novelty of lattices decoded from :math:`z \\sim N(0, I)`.

    Args:
        model: a :class:`~gnn_truss.nn.TrussVAE` (put in eval mode).
        n: number of samples (1000, as the paper).
        seed: seed of the ``torch.Generator`` drawing ``z`` (on the CPU).
        train_hashes: canonical hashes (:meth:`Truss.canonical_hash`) of the training lattices,
            for novelty; ``None`` skips it.
        fe_check: strict validity also requires linear homogenization status ``ok``.
        batch_size: samples decoded at once.
        constrained: decode the adjacency as the most probable one passing the topology rules
            (:func:`gnn_truss.decoding.constrained_adjacency`) instead of by the threshold.

    Returns:
        ``validity_paper`` (share whose used nodes form one connected component, >= 1 beam),
        ``validity_strict`` (share passing :meth:`Truss.validate` and, if ``fe_check``, the FE
        check), ``uniqueness`` (distinct hashes among strictly valid / strictly valid),
        ``novelty`` (share of the distinct valid ones not in ``train_hashes``; ``None`` without
        it; both ``None`` when no sample is strictly valid), counts, ``violations`` (rule ->
        count among connected samples), ``fe_status`` (status -> count) and the mean number of
        beams.
    """
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    from .fe.homogenization import homogenize_batch
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(int(seed))
    z = torch.randn(n, model.sizes.total, generator=gen)
    trusses: list[Truss] = []
    for s in range(0, n, batch_size):
        logits, offsets = model.decode(z[s:s + batch_size].to(device))
        trusses += decode_trusses(logits, offsets, constrained=constrained)
    connected = [t for t in trusses if _connected(t)]
    violations: dict = {}
    valid = []
    for t in connected:
        bad = t.validate()
        for r in bad:
            violations[r] = violations.get(r, 0) + 1
        if not bad:
            valid.append(t)
    fe_status: dict = {}
    if fe_check and valid:
        res = homogenize_batch(valid, workers=1)
        for s in res.status:
            fe_status[str(s)] = fe_status.get(str(s), 0) + 1
        valid = [t for t, ok in zip(valid, res.ok) if ok]
    hashes = {t.canonical_hash() for t in valid}
    novel = None
    if train_hashes is not None:
        train_hashes = set(train_hashes)
        novel = len(hashes - train_hashes)
    return {
        "num_samples": n, "seed": int(seed), "fe_check": bool(fe_check),
        "constrained": bool(constrained), "validity_paper": len(connected) / n,
        "validity_strict": len(valid) / n,
        "uniqueness": len(hashes) / len(valid) if valid else None,
        "novelty": None if novel is None or not hashes else novel / len(hashes),
        "num_connected": len(connected), "num_valid": len(valid), "num_unique": len(hashes),
        "num_novel": novel, "violations": violations, "fe_status": fe_status,
        "mean_beams": float(np.mean([t.num_edges for t in trusses])),
    }


# --------------------------------------------------------------------------- driver

def _split_hashes(dataset) -> set:
    """Canonical hashes of every lattice of a :class:`~gnn_truss.dataset.TrussDataset`."""
    if len(dataset) == 0:
        return set()
    adj = dataset.adj.numpy()
    off = dataset.offset64.numpy()
    return {Truss(ds.triu_to_adjacency(a.astype(np.uint8)), o).canonical_hash()
            for a, o in zip(adj, off)}


@torch.no_grad()
def _run_split(model, dataset, target: str, batch_size: int = 256, symmetrise=None,
               normalizer=None, refine_steps: int | None = None,
               refine_lr: float = 0.01, progress: bool = False,
               symmetrise_predictor=None) -> dict:
    """The model's outputs on a dataset, in order; with ``symmetrise`` also ``"pred_sym"``
    (physical units), ``"logits_sym"`` and ``"offsets_sym"``, the outputs averaged over the
    symmetric copies (:func:`gnn_truss.symmetry.symmetrised_outputs`, needs ``normalizer``);
    with ``refine_steps`` also ``"logits_ref"``, ``"offsets_ref"`` and ``"pred_ref"``
    (normalised), the outputs at the latents refined from the means
    (:func:`gnn_truss.nn.vae.refine_latent`); with both, also ``"pred_symref"`` (physical
    units), ``"logits_symref"`` and ``"offsets_symref"``, the outputs at each copy's refined
    latent averaged over the copies. With ``symmetrise_predictor`` (a predictor of the
    decoded lattice) also ``"pred_gsym"`` (physical units): the predictor averaged over the
    symmetric copies of the one-pass decoded lattice
    (:func:`gnn_truss.symmetry.symmetrised_decoded_prediction`). ``progress``: a bar over the
    lattices on stderr."""
    from .loader import make_loader
    device = next(model.parameters()).device
    from .symmetry import symmetrised_decoded_prediction, symmetrised_outputs
    keys = ("mu", "logits", "offsets", "pred", "adj", "offset", "y", target)
    if symmetrise_predictor is not None:
        keys = keys + ("pred_gsym",)
    sym_keys = ("pred", "logits", "offsets") if symmetrise is not None else ()
    ref_keys = ("pred", "logits", "offsets") if refine_steps else ()
    symref_keys = sym_keys if refine_steps else ()
    acc: dict = {k: [] for k in keys + tuple(f"{k}_sym" for k in sym_keys)
                 + tuple(f"{k}_ref" for k in ref_keys)
                 + tuple(f"{k}_symref" for k in symref_keys)}
    feats = getattr(model, "reads_features", False)
    if feats:
        acc["feat_ok"] = []
    bar = None
    if progress:
        from .progress import progress_bar
        bar = progress_bar(total=len(dataset), desc="evaluate", unit="lattice")
    for b in make_loader(dataset, batch_size=batch_size):
        b = b.to(device)
        out = model(b, sample=False)
        f = None
        if feats:  # which decoded lattices the FE could analyse (cached: no second analysis)
            A, offsets, _ = model.decode_lattice(out["mu"], near_only=True)
            f = model.lattice_features(A, offsets)
            acc["feat_ok"].append(torch.isfinite(f).all(-1).cpu())
        if symmetrise_predictor is not None:  # one decode, the predictor on every copy
            acc["pred_gsym"].append(symmetrised_decoded_prediction(
                model, out["mu"], normalizer, target, symmetrise_predictor, f).cpu())
        for k in ("mu", "logits", "offsets", "pred"):
            acc[k].append(out[k].cpu())
        for k in ("adj", "offset", "y", target):
            acc[k].append(b[k].cpu())
        if symmetrise is not None:
            sym = symmetrised_outputs(model, b, normalizer, target, symmetrise)
            for k in sym_keys:
                acc[f"{k}_sym"].append(sym[k].cpu())
        if refine_steps:
            from .nn.vae import refine_latent
            z = refine_latent(model, out["mu"], b.adj, b.offset, refine_steps, refine_lr)
            with torch.no_grad():
                ref = dict(zip(("logits", "offsets"), model.decode(z)), pred=model.predict(z))
            for k in ref_keys:
                acc[f"{k}_ref"].append(ref[k].cpu())
        if symref_keys:
            sym = symmetrised_outputs(model, b, normalizer, target, symmetrise,
                                      refine_steps=refine_steps, refine_lr=refine_lr)
            for k in symref_keys:
                acc[f"{k}_symref"].append(sym[k].cpu())
        if bar is not None:
            bar.update(b.num_graphs)
    if bar is not None:
        bar.close()
    return {k: torch.cat(v).double() for k, v in acc.items()}


def _property_metrics(pred_phys, true_phys, pred_norm, true_norm, names, target: str) -> dict:
    """R^2 per component in physical and in normalised units, their means, and (curves) the
    NRMSE."""
    r2 = r2_per_component(pred_phys, true_phys, names)
    r2n = r2_per_component(pred_norm, true_norm, names)
    prop = {"r2": r2, "r2_mean": _nanmean(r2), "r2_normalized": r2n,
            "r2_normalized_mean": _nanmean(r2n)}
    if target == "curve":
        prop["nrmse"] = nrmse_curves(pred_phys, true_phys)
    return prop


def _constrained_metrics(logits, target, tag: dict) -> dict:
    """:func:`adjacency_metrics` of the constrained decoding of ``logits``
    (:func:`gnn_truss.decoding.constrained_logits`, default search), with the search sizes and
    how many lattices were valid, repaired or left unrepaired."""
    from .decoding import CANDIDATES, MAX_FLIPS, STATUS, constrained_logits
    lc, status = constrained_logits(logits)
    counts = np.bincount(status, minlength=len(STATUS))
    return {**tag, "candidates": CANDIDATES, "max_flips": MAX_FLIPS,
            "status": {n: int(c) for n, c in zip(STATUS, counts)},
            **adjacency_metrics(lc, target)}


def _validity_summary(samples: dict | None) -> dict | None:
    if samples is None:
        return None
    return {"paper": samples["validity_paper"], "strict": samples["validity_strict"],
            "uniqueness": samples["uniqueness"], "novelty": samples["novelty"]}


def _summary(adj: dict, geo: dict, prop: dict) -> dict:
    """The report's ``summary`` entries of one set of outputs: the paper's definition beside
    the strict one."""
    return {
        "adjacency": {"paper_accuracy": adj["accuracy_paper"],
                      "strict_exact_match": adj["exact_match"], "edge_f1": adj["edge_f1"]},
        "geometry": {"paper_position_r2": _nanmin([geo["r2_x"], geo["r2_y"], geo["r2_z"]]),
                     "strict_offset_r2": geo["r2_offsets"]},
        "property": {"r2_mean": prop["r2_mean"], "r2_min": _nanmin(list(prop["r2"].values())),
                     **({"nrmse": prop["nrmse"]} if "nrmse" in prop else {})},
    }


#: The paper's headline figures (``SPEC.md`` section 6) and the project's exact-match target,
#: as ``name: (label, threshold, higher is better)``; :func:`target_check` reads each from the
#: one-pass blocks of a report.
TARGETS = {
    "adjacency_accuracy": ("adjacency accuracy (paper's metric)", 0.999, True),
    "exact_match": ("exact-lattice match", 0.95, True),
    "position_r2": ("node-position R^2, lowest of x, y, z", 0.999, True),
    "stiffness_r2": ("stiffness R^2, lowest of the 9 components", 0.982, True),
    "curve_nrmse": ("curve NRMSE", 0.045, False),
    "validity_paper": ("prior-sample validity (paper's definition)", 0.823, True),
}


def target_check(report: dict) -> dict:
    """The one-pass figures of an evaluation report against :data:`TARGETS`.

    Args:
        report: a ``report.json`` of :func:`evaluate_checkpoint` (blocks ``adjacency``,
            ``geometry``, ``property``, ``samples``; ``target`` ``"stiffness"`` or
            ``"curve"``).

    Returns:
        ``{name: {"label", "value", "target", "higher_is_better", "met"}}`` for every target
        the report can answer: the stiffness R^2 for stiffness models, the NRMSE for curve
        models, the validity where prior samples were drawn. ``met`` is ``None`` where the
        value is missing or not finite.
    """
    adj, geo = report.get("adjacency") or {}, report.get("geometry") or {}
    prop, samples = report.get("property") or {}, report.get("samples") or {}

    def lowest(values):
        vals = [v for v in values if v is not None and math.isfinite(v)]
        return min(vals) if len(vals) == len(values) and vals else None

    values = {"adjacency_accuracy": adj.get("accuracy_paper"),
              "exact_match": adj.get("exact_match"),
              "position_r2": lowest([geo.get(f"r2_{a}") for a in "xyz"])}
    if (report.get("target") or "stiffness") == "stiffness":
        r2 = prop.get("r2") or {}
        values["stiffness_r2"] = lowest(list(r2.values())) if r2 else None
    else:
        values["curve_nrmse"] = prop.get("nrmse")
    if samples:
        values["validity_paper"] = samples.get("validity_paper")
    out = {}
    for name, value in values.items():
        label, threshold, higher = TARGETS[name]
        ok = value is not None and math.isfinite(value)
        out[name] = {"label": label, "value": value, "target": threshold,
                     "higher_is_better": higher,
                     "met": (value >= threshold if higher else value <= threshold) if ok
                     else None}
    return out


def format_target_check(check: dict) -> str:
    """A plain-text table of :func:`target_check`: one line per target."""
    lines = ["one pass against the paper's figures:"]
    for row in check.values():
        v = "n/a" if row["value"] is None else f"{row['value']:.4f}"
        verdict = {True: "met", False: "not met", None: "n/a"}[row["met"]]
        sign = ">=" if row["higher_is_better"] else "<="
        lines.append(f"  {row['label']:<45} {v:>8}  (target {sign} {row['target']:g}: "
                     f"{verdict})")
    return "\n".join(lines)


def _plot_latent(mu: np.ndarray, labels: np.ndarray, target: str, path: Path):
    """``latent.png``: the latent means of the split (PCA) coloured by the FE Voigt bulk
    modulus (stiffness models) or the stress at 24.5 % strain (curve models)."""
    from .plotting import plot_latent_projection
    if target == "stiffness":
        from .objectives import property_table
        values, name = property_table(labels)["K_V"], "Voigt bulk modulus K_V / E_s (FE)"
    else:
        values, name = labels[:, -1], "stress at 24.5 % strain / E_s (FE)"
    return plot_latent_projection(mu, values, path, value_label=name, log=True,
                                  title="latent means of the split (PCA)")


def _finite_or_none(obj):
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _nanmean(d: dict) -> float:
    v = np.array(list(d.values()), dtype=float)
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def _nanmin(values: list) -> float:
    v = np.array(values, dtype=float)
    return float(np.nanmin(v)) if np.isfinite(v).any() else float("nan")


def feature_workers(workers: int | None) -> int:
    """Processes for the FE analyses of a predictor with lattice features: ``workers``
    checked, ``None`` -> all cores."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ValueError(f"workers must be a positive integer or None, got {workers!r}")
    return workers or (os.cpu_count() or 1)


def checkpoint_datasets(ck: dict, checkpoint_path, data_overrides: dict | None = None):
    """The train / val / test datasets a checkpoint was trained on, checked by fingerprint.

    Args:
        ck: the loaded checkpoint dict (``config``, ``fingerprint``).
        checkpoint_path: its path (for messages).
        data_overrides: replace keys of the checkpoint's ``data`` config (e.g. ``{"root":
            ...}`` after moving the data); the fingerprint check then guards against other
            data.

    Returns:
        ``(config, {"train": ..., "val": ..., "test": ...})``.

    Raises:
        ValueError: a bad override, or a dataset fingerprint different from the checkpoint's.
    """
    from .training import build_datasets, validate_config
    cfg = copy.deepcopy(ck["config"])
    if data_overrides:
        cfg = validate_config({**cfg, "data": {**cfg["data"], **data_overrides}})
    datasets = dict(zip(("train", "val", "test"), build_datasets(cfg)))
    if ck["fingerprint"] != datasets["train"].fingerprint:
        raise ValueError(f"{checkpoint_path} was trained on different data: fingerprint "
                         f"{ck['fingerprint'][:12]} != dataset {datasets['train'].root} "
                         f"(limit {cfg['data']['limit']}) {datasets['train'].fingerprint[:12]}"
                         f"; {_grown_corpus_hint(ck, cfg)}")
    return cfg, datasets


def _grown_corpus_hint(ck: dict, cfg: dict) -> str:
    """What to do about a fingerprint mismatch: the prefix of the checkpoint's corpus that
    holds its data, when one is found (:func:`gnn_truss.exploration.fingerprint_prefix`)."""
    how = ("gnn-truss evaluate --corpus-limit {n}; gnn-truss compare --corpus-limit-b {n} when "
           "it is the second checkpoint; config: data.limit: {n}")
    generic = (f"if its corpus has grown since, read its first N lattices, N the number it "
               f"was trained on ({how.format(n='N')})")
    data = cfg["data"]
    if data.get("source", "corpus") != "corpus":
        return generic
    try:
        from .corpus import load_corpus
        from .exploration import fingerprint_prefix
        from .dataset import resolve_data_root
        raw = resolve_data_root(data["root"], "corpus") / "raw"
        path = raw / "corpus.npz" if (raw / "corpus.npz").exists() else raw / "corpus"
        corpus = load_corpus(path, quiet=True)
        n = fingerprint_prefix(corpus, ck["fingerprint"], data.get("target", "stiffness"),
                               first=ck.get("num_lattices"))
    except Exception:  # the hint must never hide the error it explains
        return generic
    if n is None:
        return generic
    if n == len(corpus):
        return (f"its data are all {n} lattices of that corpus: read them without a limit "
                f"(drop --corpus-limit / data.limit)")
    return (f"its data are the first {n} lattices of that corpus, which has grown since: "
            f"read those ({how.format(n=n)})")


def evaluate_checkpoint(checkpoint_path, out_dir, n_samples: int = 1000, split: str = "test",
                        limit: int | None = None, data_overrides: dict | None = None,
                        fe_check: bool = True, seed: int = 0,
                        symmetrise: str | None = None, constrained: bool = False,
                        refine_latent: int | None = None, refine_lr: float = 0.01,
                        workers: int | None = None, progress: bool = False,
                        symmetrise_predictor: str | None = None) -> dict:
    """Evaluate a checkpoint of :func:`gnn_truss.training.train` on a data split.

    Rebuilds the model from the config saved in the checkpoint, loads that config's dataset
    split, checks the dataset fingerprint, runs the model on the latent means (no sampling) and
    computes every metric of the module docstring, plus :func:`sample_validity` of
    ``n_samples`` prior samples (novelty against the training split). Writes
    ``out_dir/report.json``, ``out_dir/parity.png`` (predicted vs true property per component;
    the lattices the one pass reconstructs exactly in blue over the others in orange; the
    symmetrised parity plot, one colour),
    ``out_dir/reconstruction.png`` and ``out_dir/latent.png`` (latent means, PCA, coloured by a
    property).

    Args:
        checkpoint_path: ``best.pt`` or ``last.pt``.
        out_dir: output folder (created).
        n_samples: prior samples for validity (0 skips sampling).
        split: ``"test"``, ``"val"`` or ``"train"``.
        limit: evaluate only the first ``limit`` lattices of the split (quick checks; the
            dataset itself is the checkpoint's, so the fingerprint still matches).
        data_overrides: replace keys of the checkpoint's ``data`` config (e.g. ``{"root": ...}``
            after moving the data, or ``{"limit": ...}``); the fingerprint check then guards
            against evaluating on other data.
        fe_check: FE check in strict sample validity.
        seed: seed of the prior samples.
        symmetrise: also report the metrics of the outputs averaged over the symmetric copies
            of each lattice (:func:`gnn_truss.symmetry.symmetrised_outputs`: ``"axes"`` or
            ``"axes_mirrors"``) under ``"adjacency_symmetrised"``,
            ``"geometry_symmetrised"`` and ``"property_symmetrised"``, beside the plain ones,
            and plot the property in ``parity_symmetrised.png``. (default: ``None``, plain
            only)
        constrained: also report the adjacency metrics of the constrained decoding (the most
            probable adjacency passing the topology rules,
            :func:`gnn_truss.decoding.constrained_logits`) under ``"adjacency_constrained"``
            and, with ``symmetrise``, ``"adjacency_symmetrised_constrained"``, and the
            validity of the same prior samples decoded that way under
            ``"samples_constrained"``. (default: ``False``)
        refine_latent: also report the metrics at latents refined from the means by this
            many Adam steps (step size ``refine_lr``) on each lattice's own reconstruction
            loss (:func:`gnn_truss.nn.vae.refine_latent`) under ``"adjacency_refined"``,
            ``"geometry_refined"`` and ``"property_refined"`` (the predictor read at the
            refined latent). With ``symmetrise`` too, also under
            ``"adjacency_symmetrised_refined"``, ``"geometry_symmetrised_refined"`` and
            ``"property_symmetrised_refined"``: each symmetric copy's latent refined on that
            copy, the outputs averaged over the copies (|G| refinements per lattice: six times
            the refinement's time with ``"axes"``). An encoder for known lattices, not one
            forward pass: the plain metrics stay the model's. (default: ``None``; 0 is off
            too)
        workers: processes of the finite-element analyses that give a predictor with
            lattice features (``model.predictor_features``) the features of each decoded
            lattice (:meth:`~gnn_truss.nn.TrussVAE.lattice_features`; ``None``: all cores).
            The report's ``"predictor_features"`` block gives the fraction of the one-pass
            decoded lattices the analysis could handle (the others are read by the
            predictor's head alone).
        progress: a progress bar over the split's lattices on stderr.
        symmetrise_predictor: for a checkpoint whose predictor reads the decoded lattice
            (``model.predictor_input: decoded``), also report under
            ``"property_predictor_symmetrised"`` the one pass with the predictor averaged over
            the symmetric copies of the decoded lattice (``"axes"`` or ``"axes_mirrors"``;
            :func:`gnn_truss.symmetry.symmetrised_decoded_prediction`: one encoder and decoder
            pass, |G| predictor passes), with its split by reconstruction
            (``"by_reconstruction"``). (default: ``None``)

    Returns:
        The report dict (as written to ``report.json``; non-finite numbers become ``None``).
        Besides the blocks above it holds ``"property_by_reconstruction"``: the one-pass
        property metrics on the lattices whose adjacency the one pass reconstructs exactly
        and on the others (:func:`property_by_reconstruction`).

    Raises:
        ValueError: unreadable or foreign checkpoint, weights not matching the saved model
            config, unknown split or data keys, or a dataset fingerprint different from the
            checkpoint's.
    """
    from .dataset import TargetNormalizer
    from .exploration import load_model
    from .plotting import plot_parity, plot_reconstruction

    splits = ("train", "val", "test")
    if split not in splits:
        raise ValueError(f"split must be one of {splits}, got {split!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 0:
        raise ValueError(f"n_samples must be an integer >= 0, got {n_samples!r}")
    from .nn.vae import check_refine
    from .symmetry import allowed_symmetries, check_symmetrise
    check_symmetrise(symmetrise, allow_none=True)
    check_symmetrise(symmetrise_predictor, allow_none=True)
    refine_latent = check_refine(refine_latent, refine_lr) or None
    workers = feature_workers(workers)
    model, ck = load_model(checkpoint_path)
    if symmetrise_predictor is not None:
        from .symmetry import require_decoded_predictor
        require_decoded_predictor(model, f"symmetrise_predictor, {checkpoint_path}")
    model.feature_workers = workers
    cfg, datasets = checkpoint_datasets(ck, checkpoint_path, data_overrides)
    target = cfg["data"]["target"]
    names = STIFFNESS_NAMES if target == "stiffness" else CURVE_NAMES
    norm = TargetNormalizer.from_dict(ck["normalizer"])
    data = datasets[split]
    if limit is not None:
        data = data[:limit]
    if len(data) == 0:
        raise ValueError(f"split {split!r} is empty")
    r = _run_split(model, data, target, symmetrise=symmetrise, normalizer=norm,
                   refine_steps=refine_latent, refine_lr=refine_lr, progress=progress,
                   symmetrise_predictor=symmetrise_predictor)
    pred_phys = norm.inverse(r["pred"])
    true_phys = r[target]
    adj = adjacency_metrics(r["logits"], r["adj"])
    geo = position_r2(r["offsets"], r["offset"], r["adj"])
    prop = _property_metrics(pred_phys, true_phys, r["pred"], r["y"], names, target)
    prop_split = property_by_reconstruction(r["logits"], r["adj"], pred_phys, true_phys, names,
                                            target)
    prop_sym = adj_sym = geo_sym = None
    if symmetrise is not None:
        tag = {"symmetrise": symmetrise,
               "num_symmetries": len(allowed_symmetries(target, symmetrise == "axes_mirrors"))}
        prop_sym = {**tag, **_property_metrics(r["pred_sym"], true_phys,
                                               norm.transform(r["pred_sym"]), r["y"], names,
                                               target)}
        adj_sym = {**tag, **adjacency_metrics(r["logits_sym"], r["adj"])}
        geo_sym = {**tag, **position_r2(r["offsets_sym"], r["offset"], r["adj"])}
    extra: dict = {}
    ref_blocks: dict = {}
    if refine_latent:
        rtag = {"refine_steps": refine_latent, "refine_lr": refine_lr}
        ref_blocks = {
            "adjacency_refined": {**rtag, **adjacency_metrics(r["logits_ref"], r["adj"])},
            "geometry_refined": {**rtag, **position_r2(r["offsets_ref"], r["offset"],
                                                       r["adj"])},
            "property_refined": {**rtag, **_property_metrics(
                norm.inverse(r["pred_ref"]), true_phys, r["pred_ref"], r["y"], names, target)}}
        if symmetrise is not None:  # each symmetric copy refined, then averaged
            srtag = {**tag, **rtag}
            ref_blocks.update({
                "adjacency_symmetrised_refined": {
                    **srtag, **adjacency_metrics(r["logits_symref"], r["adj"])},
                "geometry_symmetrised_refined": {
                    **srtag, **position_r2(r["offsets_symref"], r["offset"], r["adj"])},
                "property_symmetrised_refined": {**srtag, **_property_metrics(
                    r["pred_symref"], true_phys, norm.transform(r["pred_symref"]), r["y"],
                    names, target)}})
    if constrained:
        extra["adjacency_constrained"] = _constrained_metrics(r["logits"], r["adj"], {})
        if symmetrise is not None:
            extra["adjacency_symmetrised_constrained"] = _constrained_metrics(
                r["logits_sym"], r["adj"], tag)
    samples = None
    if n_samples:
        hashes = _split_hashes(datasets["train"])
        samples = sample_validity(model, n=n_samples, seed=seed, train_hashes=hashes,
                                  fe_check=fe_check)
        if constrained:  # the same latent samples
            extra["samples_constrained"] = sample_validity(
                model, n=n_samples, seed=seed, train_hashes=hashes, fe_check=fe_check,
                constrained=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_parity(true_phys.numpy(), pred_phys.numpy(), names, out / "parity.png",
                highlight=exactly_reconstructed(r["logits"], r["adj"]),
                labels=("reconstructed exactly", "not reconstructed exactly"))
    figures = ["parity.png", "reconstruction.png", "latent.png"]
    if prop_sym is not None:
        plot_parity(true_phys.numpy(), r["pred_sym"].numpy(), names,
                    out / "parity_symmetrised.png")
        figures.append("parity_symmetrised.png")
    plot_reconstruction(r["logits"].numpy(), r["adj"].numpy(), r["offsets"].numpy(),
                        r["offset"].numpy(), out / "reconstruction.png")
    _plot_latent(r["mu"].numpy(), true_phys.numpy(), target, out / "latent.png")
    report = {
        "checkpoint": str(checkpoint_path), "epoch": ck.get("epoch"), "split": split,
        **({"grafted_vae": ck["grafted_vae"]} if ck.get("grafted_vae") else {}),
        "num_lattices": len(data), "target": target, "fingerprint": ck["fingerprint"],
        **({} if "feat_ok" not in r else {"predictor_features": {
            "kind": ck["config"]["model"].get("predictor_features"),
            "analysed_one_pass": float(r["feat_ok"].mean())}}),
        "summary": {  # paper definition | strict definition, side by side
            **_summary(adj, geo, prop),
            **({} if prop_sym is None else {
                f"{k}_symmetrised": {"symmetrise": symmetrise, **v}
                for k, v in _summary(adj_sym, geo_sym, prop_sym).items()}),
            **{k: {**({"symmetrise": symmetrise} if "symmetrised" in k else {}),
                   **_summary(v, geo, prop)["adjacency"]}
               for k, v in extra.items() if k.startswith("adjacency")},
            "validity": _validity_summary(samples),
            **({} if "samples_constrained" not in extra else {
                "validity_constrained": _validity_summary(extra["samples_constrained"])}),
            **({} if not ref_blocks else {
                f"{k}_refined": {**rtag, **v}
                for k, v in _summary(ref_blocks["adjacency_refined"],
                                     ref_blocks["geometry_refined"],
                                     ref_blocks["property_refined"]).items()}),
            **({} if "property_symmetrised_refined" not in ref_blocks else {
                f"{k}_symmetrised_refined": {**srtag, **v}
                for k, v in _summary(ref_blocks["adjacency_symmetrised_refined"],
                                     ref_blocks["geometry_symmetrised_refined"],
                                     ref_blocks["property_symmetrised_refined"]).items()}),
        },
        "adjacency": adj, "geometry": geo, "property": prop,
        "property_by_reconstruction": prop_split,
        **({} if symmetrise_predictor is None else {"property_predictor_symmetrised": {
            "symmetrise": symmetrise_predictor,
            "num_symmetries": len(allowed_symmetries(target,
                                                     symmetrise_predictor == "axes_mirrors")),
            **_property_metrics(r["pred_gsym"], true_phys, norm.transform(r["pred_gsym"]),
                                r["y"], names, target),
            "by_reconstruction": property_by_reconstruction(
                r["logits"], r["adj"], r["pred_gsym"], true_phys, names, target)}}),
        **({} if prop_sym is None else {"adjacency_symmetrised": adj_sym,
                                        "geometry_symmetrised": geo_sym,
                                        "property_symmetrised": prop_sym}),
        **extra, **ref_blocks,
        "samples": samples, "figures": figures,
    }
    report = _finite_or_none(report)
    report["targets"] = target_check(report)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    log.info("evaluation of %s written to %s", checkpoint_path, out)
    return report


# --------------------------------------------------------------------------- side by side

def _adjacency_rows(block: str, tag: str = "") -> tuple:
    """The accuracy, exact-match and F1 rows of one adjacency block of the report."""
    return tuple((f"{label}{tag}", (block, key), True)
                 for label, key in (("adjacency accuracy (paper)", "accuracy_paper"),
                                    ("exact-lattice match", "exact_match"),
                                    ("edge F1", "edge_f1")))


#: ``(label, path in report.json, higher is better)`` rows of :func:`compare_reports`.
COMPARED_METRICS = (
    *_adjacency_rows("adjacency"),
    ("node-position R^2 x", ("geometry", "r2_x"), True),
    ("node-position R^2 y", ("geometry", "r2_y"), True),
    ("node-position R^2 z", ("geometry", "r2_z"), True),
    ("offset R^2 (used nodes)", ("geometry", "r2_offsets"), True),
    ("property R^2 mean", ("property", "r2_mean"), True),
    ("curve NRMSE", ("property", "nrmse"), False),
    *_adjacency_rows("adjacency_symmetrised", ", symmetrised"),
    ("offset R^2 (used nodes), symmetrised", ("geometry_symmetrised", "r2_offsets"), True),
    ("property R^2 mean, symmetrised", ("property_symmetrised", "r2_mean"), True),
    ("curve NRMSE, symmetrised", ("property_symmetrised", "nrmse"), False),
    *_adjacency_rows("adjacency_constrained", ", constrained"),
    *_adjacency_rows("adjacency_symmetrised_constrained", ", symmetrised + constrained"),
    *_adjacency_rows("adjacency_refined", ", refined latent"),
    ("offset R^2 (used nodes), refined latent", ("geometry_refined", "r2_offsets"), True),
    ("property R^2 mean, refined latent", ("property_refined", "r2_mean"), True),
    ("curve NRMSE, refined latent", ("property_refined", "nrmse"), False),
    *_adjacency_rows("adjacency_symmetrised_refined", ", symmetrised + refined"),
    ("property R^2 mean, symmetrised + refined", ("property_symmetrised_refined", "r2_mean"),
     True),
    ("curve NRMSE, symmetrised + refined", ("property_symmetrised_refined", "nrmse"), False),
    ("validity (paper)", ("samples", "validity_paper"), True),
    ("validity (strict)", ("samples", "validity_strict"), True),
    ("validity (paper), constrained", ("samples_constrained", "validity_paper"), True),
    ("validity (strict), constrained", ("samples_constrained", "validity_strict"), True),
    ("uniqueness", ("samples", "uniqueness"), True),
    ("novelty", ("samples", "novelty"), True),
)


def _lookup(report: dict, path: tuple):
    v = report
    for k in path:
        if not isinstance(v, dict) or k not in v:
            return None
        v = v[k]
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


#: keys of a report block that say how its outputs were obtained (same keys, same setting)
_SETTING_KEYS = ("symmetrise", "refine_steps", "refine_lr")


def _settings(report: dict, block: str) -> tuple:
    b = report.get(block)
    return tuple((b or {}).get(k) for k in _SETTING_KEYS) if isinstance(b, dict) else ()


def _setting_label(settings: tuple) -> str:
    return ", ".join(f"{k} {v}" for k, v in zip(_SETTING_KEYS, settings) if v is not None)


def compare_reports(reports: dict) -> str:
    """A Markdown table of :func:`evaluate_checkpoint` reports side by side, one column per
    model, every metric of :data:`COMPARED_METRICS` plus the ``R^2`` of each property
    component, and a last column naming the best model per row (``"tie"`` within 1e-4,
    ``"n/a"`` where only one of several reports has the metric). Where the reports obtained a
    row's outputs with different settings (e.g. one symmetrised over ``"axes"``, the other
    over ``"axes_mirrors"``, or refined with other steps), each cell names its setting and
    no winner is named.

    Args:
        reports: ``{name: report dict}`` (e.g. ``{"GNN": ..., "MLP": ...}``), at least one.

    Returns:
        The table (str); metrics missing from every report are left out.

    Raises:
        ValueError: no reports, or reports on different splits / targets / test sets.
    """
    if not reports:
        raise ValueError("compare_reports needs at least one report")
    names = list(reports)
    keys = {(r.get("split"), r.get("target"), r.get("num_lattices")) for r in reports.values()}
    if len(keys) > 1:
        raise ValueError(f"reports are not on the same test set (split, target, lattices): "
                         f"{sorted(map(str, keys))}")
    rows = list(COMPARED_METRICS)
    comps = [c for r in reports.values() for c in (r.get("property", {}).get("r2") or {})]
    for c in dict.fromkeys(comps):
        rows.append((f"R^2 {c}", ("property", "r2", c), True))
    lines = ["| metric | " + " | ".join(names) + " | best |",
             "|---|" + "---|" * (len(names) + 1)]
    for label, path, higher in rows:
        vals = [_lookup(reports[n], path) for n in names]
        if all(v is None for v in vals):
            continue
        known = [(v, n) for v, n in zip(vals, names) if v is not None]
        top = max(v for v, _ in known) if higher else min(v for v, _ in known)
        winners = [n for v, n in known if abs(v - top) <= 1e-4]
        if len(known) < 2 <= len(names):  # nothing to compare it with
            best = "n/a"
        else:
            best = "tie" if len(winners) == len(names) and len(names) > 1 else ", ".join(winners)
        cells = ["n/a" if v is None else f"{v:.4f}" for v in vals]
        settings = [_settings(reports[n], path[0]) for n in names]
        if len({st for st, v in zip(settings, vals) if v is not None}) > 1:
            cells = [c if v is None else f"{c} ({_setting_label(st) or 'plain'})"
                     for c, v, st in zip(cells, vals, settings)]
            best = "n/a (different settings)"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {best} |")
    return "\n".join(lines) + "\n"
