r"""Paired comparison of two models on the same test lattices, with bootstrap intervals.

:func:`gnn_truss.evaluation.compare_reports` puts two reports side by side; it cannot say
whether a difference in the fourth digit is real. Here both models run on the *same* lattices,
so their difference on each metric can be resampled jointly (paired bootstrap, Efron &
Tibshirani 1993, ch. 6 and 13): draw the lattices with replacement ``R`` times, recompute every
metric of both models on each draw, and report the percentile interval of ``A - B``.

Every metric of the report that is computed on the test split is written as a function of
per-lattice sums, so a draw is one weighted sum ``W @ S`` (``W [R, B]`` draw counts,
``S [B, K]`` per-lattice statistics):

================================  ===================================  =======================
metric                            per-lattice statistics               value from the sums
================================  ===================================  =======================
adjacency accuracy (paper)        :math:`(2c + 27)/729`, 1             mean
exact-lattice match               1[all 351 right], 1                  mean
edge F1 (micro)                   TP, FP, FN                           :math:`2TP/(2TP+FP+FN)`
node-position / offset /          count, :math:`\sum y`, :math:`\sum   :math:`1 - SSE / (\sum
property :math:`R^2` (pooled)     y^2`, :math:`\sum (\hat y - y)^2`    y^2 - (\sum y)^2 / n)`
curve NRMSE                       NRMSE of the curve, 1 (flat: 0, 0)   mean
================================  ===================================  =======================

With unit weights each value equals the one of :func:`~gnn_truss.evaluation.adjacency_metrics`,
:func:`~gnn_truss.evaluation.position_r2`, :func:`~gnn_truss.evaluation.r2_per_component` and
:func:`~gnn_truss.evaluation.nrmse_curves`. Sample validity is not paired (each model draws its
own prior samples) and is left to the reports.

Verdict per metric: the better model's name when the interval of the difference (95 % by
default) excludes 0, ``"no significant difference"`` otherwise.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from . import design_space as ds
from .evaluation import _np

__all__ = ["paired_statistics", "metric_values", "paired_bootstrap", "compare_checkpoints",
           "paired_table", "lattice_keys"]

log = logging.getLogger(__name__)

_KIND_COLUMNS = {"mean": 2, "f1": 3, "r2": 4}


def _r2_stats(pred: np.ndarray, true: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``[B, M]`` values and mask -> ``[B, 4]`` (count, sum y, sum y^2, sum (yhat - y)^2)."""
    m = mask.astype(np.float64)
    return np.stack([m.sum(1), (m * true).sum(1), (m * true ** 2).sum(1),
                     (m * (pred - true) ** 2).sum(1)], axis=1)


def paired_statistics(out: dict, target: str, names) -> dict:
    """Per-lattice statistics of every paired metric of one model.

    Args:
        out: arrays of one model on ``B`` lattices: ``logits [B, 351]``, ``adj [B, 351]``
            (true), ``offsets [B, 27]`` (predicted free-dof offsets), ``offset [B, 27]`` (true),
            ``pred [B, D]`` and ``true [B, D]`` (property, in the units of the score).
        target: ``"stiffness"`` or ``"curve"`` (curves also get the NRMSE).
        names: ``D`` property names.

    Returns:
        ``{metric: (kind, S [B, k], higher_is_better)}`` in report order, ``kind`` one of
        ``"mean"`` (k = 2), ``"f1"`` (3), ``"r2"`` (4); see the module docstring.
    """
    lg, adj = _np(out["logits"]), _np(out["adj"])
    if lg.ndim != 2 or lg.shape[1] != ds.NUM_PAIRS or lg.shape != adj.shape:
        raise ValueError(f"logits and adj must both be [B, {ds.NUM_PAIRS}], got {lg.shape} "
                         f"and {adj.shape}")
    B = len(lg)
    ones = np.ones(B)
    pred_bits, true_bits = lg > 0, adj > 0.5
    correct = (pred_bits == true_bits).sum(1)
    stats = {
        "adjacency accuracy (paper)": (
            "mean", np.stack([(2 * correct + ds.NUM_NODES) / ds.NUM_NODES ** 2, ones], 1), True),
        "exact-lattice match": (
            "mean", np.stack([(correct == ds.NUM_PAIRS).astype(float), ones], 1), True),
        "edge F1": ("f1", np.stack([(pred_bits & true_bits).sum(1), (pred_bits & ~true_bits)
                                    .sum(1), (~pred_bits & true_bits).sum(1)], 1)
                    .astype(float), True),
    }
    po, to = _np(out["offsets"]), _np(out["offset"])
    if po.shape != (B, ds.NUM_FREE_DOFS) or to.shape != po.shape:
        raise ValueError(f"offsets and offset must both be [{B}, {ds.NUM_FREE_DOFS}], got "
                         f"{po.shape} and {to.shape}")
    used = ds.triu_to_adjacency(true_bits).any(axis=-1)  # [B, 27]
    pp = ds.offsets_to_positions(ds.unpack_offsets(po))  # [B, 27, 3]
    tp = ds.offsets_to_positions(ds.unpack_offsets(to))
    for k, a in enumerate("xyz"):
        stats[f"node-position R^2 {a}"] = ("r2", _r2_stats(pp[..., k], tp[..., k], used), True)
    stats["offset R^2 (used nodes)"] = ("r2", _r2_stats(po, to, used[:, ds.FREE_DOF_NODE]),
                                        True)
    p, t = _np(out["pred"]), _np(out["true"])
    names = list(names)
    if p.shape != (B, len(names)) or t.shape != p.shape:
        raise ValueError(f"pred and true must both be [{B}, {len(names)}], got {p.shape} and "
                         f"{t.shape}")
    if target == "curve":
        rng = t.max(1) - t.min(1)
        ok = rng > 0
        nrmse = np.where(ok, np.sqrt(np.mean((p - t) ** 2, 1)) / np.where(ok, rng, 1.0), 0.0)
        stats["curve NRMSE"] = ("mean", np.stack([nrmse, ok.astype(float)], 1), False)
    for k, n in enumerate(names):
        stats[f"R^2 {n}"] = ("r2", _r2_stats(p[:, k:k + 1], t[:, k:k + 1], np.ones((B, 1))),
                             True)
    return stats


def metric_values(kind: str, sums: np.ndarray) -> np.ndarray:
    """Metric from summed statistics: ``sums [..., k]`` -> ``[...]`` (NaN where undefined).

    ``"mean"``: ``s0 / s1``; ``"f1"``: ``2 TP / (2 TP + FP + FN)`` (1 with no true and no
    predicted edges); ``"r2"``: ``1 - SSE / (sum y^2 - (sum y)^2 / n)`` (NaN for a constant
    truth).
    """
    s = np.asarray(sums, dtype=np.float64)
    if kind not in _KIND_COLUMNS or s.shape[-1] != _KIND_COLUMNS[kind]:
        raise ValueError(f"unknown kind {kind!r} or wrong number of sums {s.shape[-1]}")
    with np.errstate(invalid="ignore", divide="ignore"):
        if kind == "mean":
            return np.where(s[..., 1] > 0, s[..., 0] / s[..., 1], np.nan)
        if kind == "f1":
            den = 2 * s[..., 0] + s[..., 1] + s[..., 2]
            return np.where(den > 0, 2 * s[..., 0] / np.where(den > 0, den, 1.0), 1.0)
        n, s1, s2, sse = (s[..., i] for i in range(4))
        sst = s2 - s1 ** 2 / np.where(n > 0, n, 1.0)
        # relative floor: cancellation in s2 - s1^2/n leaves ~1e-16 * s2 for a constant truth
        return np.where((n > 0) & (sst > 1e-12 * np.abs(s2)), 1 - sse / sst, np.nan)


def _draw_weights(rng: np.random.Generator, draws: int, n: int) -> np.ndarray:
    """``[draws, n]`` counts of each lattice in ``draws`` resamples of size ``n``."""
    idx = rng.integers(0, n, size=(draws, n)) + n * np.arange(draws)[:, None]
    return np.bincount(idx.ravel(), minlength=draws * n).reshape(draws, n).astype(np.float64)


def paired_bootstrap(stats_a: dict, stats_b: dict, names=("A", "B"), draws: int = 1000,
                     seed: int = 0, level: float = 0.95, chunk: int = 100) -> dict:
    """Paired bootstrap of every metric shared by two :func:`paired_statistics` results.

    Args:
        stats_a, stats_b: statistics of the two models on the same ``B`` lattices, in the same
            order.
        names: the two models' names (for the verdicts).
        draws: bootstrap resamples ``R`` (1000).
        seed: seed of the resampling.
        level: two-sided interval level (0.95).
        chunk: resamples per weighted sum (memory ``chunk * B`` floats).

    Returns:
        ``{metric: {"a", "b", "difference", "ci_low", "ci_high", "higher_is_better",
        "verdict"}}``: values on all lattices, ``difference = a - b`` and its percentile
        interval; ``verdict`` the better model's name if the interval excludes 0, else
        ``"no significant difference"`` (``"undefined"`` if a value is NaN).
    """
    if not isinstance(draws, int) or isinstance(draws, bool) or draws < 10:
        raise ValueError(f"draws must be an integer >= 10, got {draws!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    keys = [k for k in stats_a if k in stats_b]
    if not keys:
        raise ValueError("the two models share no metric")
    B = len(next(iter(stats_a.values()))[1])
    for k in keys:
        if len(stats_a[k][1]) != B or len(stats_b[k][1]) != B:
            raise ValueError(f"{k}: the two models were not run on the same {B} lattices")
        if stats_a[k][0] != stats_b[k][0]:
            raise ValueError(f"{k}: kinds differ ({stats_a[k][0]} vs {stats_b[k][0]})")
    if B < 2:
        raise ValueError(f"need at least 2 lattices, got {B}")
    cols, spans, pos = [], {}, 0
    for k in keys:
        cols += [stats_a[k][1], stats_b[k][1]]
        width = stats_a[k][1].shape[1]
        spans[k] = (pos, pos + width, pos + 2 * width)
        pos += 2 * width
    S = np.concatenate(cols, axis=1)  # [B, K]
    rng = np.random.default_rng(seed)
    sums = np.concatenate([_draw_weights(rng, min(chunk, draws - i), B) @ S
                           for i in range(0, draws, chunk)])  # [R, K]
    full = S.sum(0)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    res = {}
    for k in keys:
        kind, higher = stats_a[k][0], stats_a[k][2]
        i0, i1, i2 = spans[k]
        a, b = (float(metric_values(kind, full[i:j])) for i, j in ((i0, i1), (i1, i2)))
        d = metric_values(kind, sums[:, i0:i1]) - metric_values(kind, sums[:, i1:i2])
        d = d[np.isfinite(d)]
        lo, hi = (np.percentile(d, q) if len(d) else (np.nan, np.nan))
        if not (np.isfinite(a) and np.isfinite(b) and np.isfinite(lo)):
            verdict = "undefined"
        elif lo > 0 or hi < 0:
            verdict = names[0] if (lo > 0) == higher else names[1]
        else:
            verdict = "no significant difference"
        res[k] = {"a": a, "b": b, "difference": a - b, "ci_low": float(lo),
                  "ci_high": float(hi), "higher_is_better": bool(higher), "verdict": verdict}
    return res


def _fmt(v, sign: str = "") -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:{sign}.6f}"


def paired_table(result: dict) -> str:
    """Markdown table of a :func:`compare_checkpoints` result."""
    a, b = result["names"]
    pct = round(100 * result["level"])
    lines = [f"| metric | {a} | {b} | {a} - {b} | {pct} % interval | verdict |",
             "|---|---|---|---|---|---|"]
    for k, m in result["metrics"].items():
        va, vb = _fmt(m["a"]), _fmt(m["b"])
        d, lo, hi = (_fmt(m[x], "+") for x in ("difference", "ci_low", "ci_high"))
        lines.append(f"| {k} | {va} | {vb} | {d} | [{lo}, {hi}] | {m['verdict']} |")
    if result.get("symmetrise"):
        lines += ["", f"Outputs symmetrised ({result['symmetrise']}): the adjacency logits, "
                      f"offsets and property predictions averaged over each lattice's "
                      f"symmetric copies (gnn_truss.symmetry.symmetrised_outputs)."]
    if result.get("symmetrise_predictor"):
        lines += ["", f"Property predictions of the one pass with each predictor averaged "
                      f"over the symmetric copies of the decoded lattice "
                      f"({result['symmetrise_predictor']}; "
                      f"gnn_truss.symmetry.symmetrised_decoded_prediction)."]
    if result.get("refine_latent"):
        lines += ["", f"Outputs at latents refined from the means by "
                      f"{result['refine_latent']} Adam steps (step size "
                      f"{result.get('refine_lr', 0.01)}) on each lattice's reconstruction "
                      f"loss (gnn_truss.nn.vae.refine_latent)."]
    if result.get("unseen"):
        lines += ["", f"On the {result['num_lattices']} lattices of the {result['split']} split "
                      f"that are in neither checkpoint's training or validation data "
                      f"({result.get('excluded', 0)} left out as seen)."]
    if result.get("constrained"):
        lines += ["", "Adjacency decoded as the most probable one passing the topology rules "
                      "(gnn_truss.decoding.constrained_logits), not by the threshold."]
    return "\n".join(lines) + "\n"


def lattice_keys(dataset) -> list[bytes]:
    """One key per lattice of a dataset, equal for equal lattices in any corpus.

    The key is the lattice's upper-triangle adjacency (351 bits) and its 27 free offsets
    rounded to float32 (the precision of built and shipped corpora; ``-0.0`` read as ``0.0``),
    so a lattice is recognised in another corpus (a grown one, an imported one) whatever its
    index and stored precision there.

    Args:
        dataset: graphs of :func:`gnn_truss.graph.truss_to_data` (``adj`` ``(1, 351)``,
            ``offset64`` ``(1, 27)``), e.g. a :class:`~gnn_truss.dataset.TrussDataset` split.

    Returns:
        ``len(dataset)`` byte strings.
    """
    from .loader import make_loader
    keys: list[bytes] = []
    for b in make_loader(dataset, batch_size=4096):
        adj = np.packbits(_np(b.adj).astype(bool), axis=1)
        off = _np(b.offset64).astype(np.float32) + np.float32(0.0)  # -0.0 -> 0.0
        keys += [a.tobytes() + o.tobytes() for a, o in zip(adj, off)]
    return keys


def _unseen_subset(data, datasets_a: dict, datasets_b: dict):
    """``(subset, excluded)``: the graphs of ``data`` in neither model's training or
    validation split, and how many were left out."""
    import torch
    seen = set()
    for dsets in (datasets_a, datasets_b):
        for s in ("train", "val"):
            seen.update(lattice_keys(dsets[s]))
    keep = [i for i, k in enumerate(lattice_keys(data)) if k not in seen]
    if len(keep) < 2:
        raise ValueError(f"only {len(keep)} lattice(s) of the split are in neither "
                         f"checkpoint's training or validation data: nothing to compare")
    return data[torch.tensor(keep, dtype=torch.long)], len(data) - len(keep)


def _model_outputs(model, data, target: str, norm, symmetrise=None,
                   constrained: bool = False, refine_latent: int | None = None,
                   refine_lr: float = 0.01, progress: bool = False,
                   symmetrise_predictor=None) -> dict:
    from .evaluation import _run_split
    r = _run_split(model, data, target, symmetrise=symmetrise, normalizer=norm,
                   refine_steps=refine_latent, refine_lr=refine_lr, progress=progress,
                   symmetrise_predictor=symmetrise_predictor)
    if symmetrise_predictor is not None:  # the one pass, the predictor over the copies
        out = {"logits": r["logits"], "adj": r["adj"], "offsets": r["offsets"],
               "offset": r["offset"], "pred": r["pred_gsym"], "true": r[target]}
    elif refine_latent and symmetrise is not None:  # each copy refined, then averaged
        out = {"logits": r["logits_symref"], "adj": r["adj"], "offsets": r["offsets_symref"],
               "offset": r["offset"], "pred": r["pred_symref"], "true": r[target]}
    elif refine_latent:
        out = {"logits": r["logits_ref"], "adj": r["adj"], "offsets": r["offsets_ref"],
               "offset": r["offset"], "pred": norm.inverse(r["pred_ref"]), "true": r[target]}
    elif symmetrise is None:
        out = {"logits": r["logits"], "adj": r["adj"], "offsets": r["offsets"],
               "offset": r["offset"], "pred": norm.inverse(r["pred"]), "true": r[target]}
    else:
        out = {"logits": r["logits_sym"], "adj": r["adj"], "offsets": r["offsets_sym"],
               "offset": r["offset"], "pred": r["pred_sym"], "true": r[target]}
    if constrained:
        from .decoding import constrained_logits
        out["logits"] = constrained_logits(out["logits"])[0]
    return out


def compare_checkpoints(checkpoint_a, checkpoint_b, out_dir=None, names=None,
                        split: str = "test", limit: int | None = None, draws: int = 1000,
                        seed: int = 0, level: float = 0.95,
                        data_overrides: dict | None = None,
                        symmetrise: str | None = None, constrained: bool = False,
                        refine_latent: int | None = None, refine_lr: float = 0.01,
                        unseen: bool = False, data_overrides_b: dict | None = None,
                        workers: int | None = None, progress: bool = False,
                        symmetrise_predictor: str | None = None) -> dict:
    """Paired comparison of two checkpoints on the same split (module docstring).

    Both checkpoints must have been trained on the same data (equal dataset fingerprints) for
    the same target, unless ``unseen``; the split is built from the first one's config.

    Args:
        checkpoint_a, checkpoint_b: checkpoints of :func:`gnn_truss.training.train`.
        out_dir: if given, writes ``paired.json`` and ``paired.md`` there.
        names: two display names (default: the checkpoints' folder names, or ``A``/``B``).
        split, limit, data_overrides: as :func:`gnn_truss.evaluation.evaluate_checkpoint`
            (``data_overrides`` applies to the first checkpoint's data; with ``unseen`` the
            second one's splits are then read from its own config, changed by
            ``data_overrides_b``, e.g. ``{"limit": 8300}`` for a checkpoint trained on the
            first 8,300 lattices of a corpus that has grown since).
        draws, seed, level: of :func:`paired_bootstrap`.
        symmetrise: compare the symmetrised outputs of both models (adjacency logits, offsets
            and property predictions averaged over each lattice's symmetric copies,
            :func:`gnn_truss.symmetry.symmetrised_outputs`, ``"axes"`` or
            ``"axes_mirrors"``) instead of the plain ones.
        constrained: decode both models' adjacency logits (plain or symmetrised) with the
            constrained decoding (:func:`gnn_truss.decoding.constrained_logits`) instead of
            the threshold.
        refine_latent: compare both models' outputs at latents refined from the means by
            this many Adam steps (step size ``refine_lr``) on each lattice's reconstruction
            loss (:func:`gnn_truss.nn.vae.refine_latent`); with ``symmetrise`` too, each
            symmetric copy's latent is refined and the outputs are averaged over the copies.
            (default: ``None``; 0 is off too)
        unseen: compare on the lattices of the first checkpoint's ``split`` that are in
            neither checkpoint's training or validation split, recognised by content
            (:func:`lattice_keys`); the checkpoints may then have been trained on different
            corpora (a grown corpus, another split), as long as both predict the same target.
            Each model reads the lattices through its own target normaliser. ``limit`` applies
            before the selection.
        workers: processes of the FE analyses that give a predictor with lattice features
            (``model.predictor_features``) those of each decoded lattice (``None``: all
            cores).
        progress: a progress bar over the split's lattices for each model, on stderr.
        symmetrise_predictor: for two checkpoints whose predictors read the decoded lattice,
            compare the one pass with each predictor averaged over the symmetric copies of
            the decoded lattice (``"axes"`` or ``"axes_mirrors"``,
            :func:`gnn_truss.symmetry.symmetrised_decoded_prediction`); the reconstruction
            metrics stay the plain one pass's. Not with ``symmetrise`` or ``refine_latent``.

    Returns:
        ``{"names", "checkpoints", "split", "num_lattices", "target", "fingerprint", "unseen",
        "draws", "seed", "level", "symmetrise", "constrained", "refine_latent",
        "symmetrise_predictor", "metrics":
        paired_bootstrap(...)}``, with ``"refine_lr"`` when refining and, with ``unseen``,
        ``"fingerprint_b"`` and ``"excluded"`` (the split's lattices left out as seen).

    Raises:
        ValueError: unreadable checkpoints, different data or targets, unknown split.
    """
    from .dataset import TargetNormalizer
    from .evaluation import (CURVE_NAMES, STIFFNESS_NAMES, _finite_or_none, checkpoint_datasets,
                             feature_workers)
    from .exploration import load_model

    splits = ("train", "val", "test")
    if split not in splits:
        raise ValueError(f"split must be one of {splits}, got {split!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or limit < 2):
        raise ValueError(f"limit must be an integer >= 2 or None, got {limit!r}")
    from .symmetry import check_symmetrise
    check_symmetrise(symmetrise, allow_none=True)
    check_symmetrise(symmetrise_predictor, allow_none=True)
    from .nn.vae import check_refine
    refine_latent = check_refine(refine_latent, refine_lr) or None
    if symmetrise_predictor is not None and (symmetrise is not None or refine_latent):
        raise ValueError("symmetrise_predictor averages the predictor over the copies of the "
                         "one-pass decoded lattice; it does not combine with symmetrise or "
                         "refine_latent")
    if data_overrides_b and not unseen:
        raise ValueError("data_overrides_b needs unseen=True (otherwise both checkpoints are "
                         "run on the first one's data)")
    workers = feature_workers(workers)
    model_a, ck_a = load_model(checkpoint_a)
    model_b, ck_b = load_model(checkpoint_b)
    model_a.feature_workers = model_b.feature_workers = workers
    if symmetrise_predictor is not None:
        from .symmetry import require_decoded_predictor
        for path, m in ((checkpoint_a, model_a), (checkpoint_b, model_b)):
            require_decoded_predictor(m, f"symmetrise_predictor, {path}")
    if ck_a["fingerprint"] != ck_b["fingerprint"] and not unseen:
        raise ValueError(f"{checkpoint_a} and {checkpoint_b} were trained on different data "
                         f"(fingerprints {ck_a['fingerprint'][:12]} and "
                         f"{ck_b['fingerprint'][:12]}); compare them on the lattices neither "
                         f"saw with unseen=True (gnn-truss compare --unseen)")
    split_keys = {"split_seed": None, "split_fractions": None, "split_by": "permutation"}
    split_a = [ck_a["config"]["data"].get(k, v) for k, v in split_keys.items()]
    split_b = [ck_b["config"]["data"].get(k, v) for k, v in split_keys.items()]
    if split_a != split_b and not unseen:
        raise ValueError(f"{checkpoint_a} and {checkpoint_b} split the data differently "
                         f"(split_seed, split_fractions, split_by: {split_a} and {split_b}), "
                         f"so one model's test lattices are the other's training lattices; "
                         f"compare them on the lattices neither saw with unseen=True "
                         f"(gnn-truss compare --unseen)")
    target = ck_a["config"]["data"]["target"]
    if ck_b["config"]["data"]["target"] != target:
        raise ValueError(f"the checkpoints predict different targets ({target} and "
                         f"{ck_b['config']['data']['target']})")
    if names is None:
        names = [Path(str(c)).parent.name or "model" for c in (checkpoint_a, checkpoint_b)]
        if names[0] == names[1]:
            names = ["A", "B"]
    names = [str(n) for n in names]
    if len(names) != 2 or names[0] == names[1]:
        raise ValueError(f"names must be two different names, got {names!r}")
    _, datasets = checkpoint_datasets(ck_a, checkpoint_a, data_overrides)
    data = datasets[split]
    if limit is not None:
        data = data[:limit]
    if unseen:
        datasets_b = datasets  # the same data config: the same splits
        if (ck_b["config"]["data"] != ck_a["config"]["data"] or data_overrides
                or data_overrides_b):
            _, datasets_b = checkpoint_datasets(ck_b, checkpoint_b, data_overrides_b)
        data, excluded = _unseen_subset(data, datasets, datasets_b)
        log.info("%d lattices of the %s split are in neither checkpoint's training or "
                 "validation data (%d left out)", len(data), split, excluded)
    label_names = STIFFNESS_NAMES if target == "stiffness" else CURVE_NAMES
    stats = []
    for model, ck in ((model_a, ck_a), (model_b, ck_b)):
        norm = TargetNormalizer.from_dict(ck["normalizer"])
        stats.append(paired_statistics(
            _model_outputs(model, data, target, norm, symmetrise, constrained,
                           refine_latent, refine_lr, progress, symmetrise_predictor),
            target, label_names))
    metrics = paired_bootstrap(stats[0], stats[1], names=names, draws=draws, seed=seed,
                               level=level)
    result = {"names": names, "checkpoints": [str(checkpoint_a), str(checkpoint_b)],
              "split": split, "num_lattices": len(data), "target": target,
              "fingerprint": ck_a["fingerprint"], "unseen": bool(unseen),
              **({"fingerprint_b": ck_b["fingerprint"], "excluded": excluded}
                 if unseen else {}),
              "draws": draws, "seed": seed,
              "level": level, "symmetrise": symmetrise, "constrained": bool(constrained),
              "refine_latent": refine_latent,
              **({} if refine_latent is None else {"refine_lr": refine_lr}),
              "symmetrise_predictor": symmetrise_predictor,
              "metrics": metrics}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "paired.json").write_text(json.dumps(_finite_or_none(result), indent=1))
        (out / "paired.md").write_text(paired_table(result))
        log.info("paired comparison written to %s", out)
    return result
