"""Training of the graph VAE + property predictor.

Joint loss ``recon + property_weight * property + beta * KL`` (:meth:`TrussVAE.loss`) with the
cyclical KL annealing of Fu et al. (NAACL 2019): the run is split into ``kl_cycles`` cycles; in
each, ``beta`` rises linearly from 0 to ``beta_max`` over the first ``kl_ratio`` of the cycle
and then stays there. Adam with cosine learning-rate decay, gradient clipping, early stopping on
the validation reconstruction + property loss, a CSV metrics log, and checkpoints
(``last.pt`` every epoch, ``best.pt`` at each validation improvement) holding the weights,
optimizer and scheduler state, the config, the target normaliser and the dataset fingerprint.
Checkpoints load with ``torch.load(..., weights_only=True)``. A run resumes from ``last.pt``.
``train.init_from`` warm-starts from another checkpoint (tensors whose name and shape match, and
hidden layers or the latent grown larger without changing the function:
:func:`init_from_checkpoint`);
``train.freeze`` holds parts of the model (:data:`FREEZABLE`) fixed. ``train.augment: axes``
relabels the axes of every training lattice by a random permutation (6 for stiffness, the 2
that keep z for curves; :mod:`gnn_truss.symmetry`), the labels transformed exactly;
``axes_mirrors`` adds a random mirror reflection (48 symmetries for stiffness, 16 for curves).
``train.predictor_on: graph`` trains a predictor of ``model.predictor_input: decoded`` on the
true graphs (:data:`PREDICTOR_ON`). ``train.sample_latent: false`` decodes the latent mean in
training instead of a sample (the reconstruction the evaluation scores; with the decoders
frozen it trains the encoder to close its amortisation gap). ``train.refine_target_steps: K``
(> 0) adds ``refine_target_weight * ||mu - z*||^2`` with ``z*`` the batch's latent means refined
by K Adam steps of size 0.01 on their own reconstruction loss
(:func:`~gnn_truss.nn.vae.refine_latent`, detached): the encoder is pulled towards the points
that refinement finds (semi-amortised training). ``train_total`` in ``metrics.csv`` then
includes that term; the validation score does not.

Multi-process data-parallel training uses ``torch.distributed`` (DDP): launch with
``torchrun --nproc_per_node K -m gnn_truss.cli train --config ...``; the gloo backend runs on
CPUs, nccl on GPUs. Rank 0 writes logs and checkpoints.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

__all__ = ["DEFAULT_CONFIG", "FREEZABLE", "AUGMENTATIONS", "load_config", "validate_config",
           "kl_beta", "train", "WeightAverage", "PRECISIONS", "load_checkpoint", "build_datasets",
           "init_from_checkpoint", "graft_vae", "checkpoint_info"]

log = logging.getLogger(__name__)

DEFAULT_CONFIG: dict = {
    "data": {"root": "datasets/default", "source": "corpus", "target": "stiffness",
             "split_seed": 0, "split_by": "permutation", "limit": None, "features": None},
    "model": {"encoder": "gnn", "topology": 8, "shared": 32, "geometry": 8},
    "train": {"epochs": 200, "batch_size": 256, "lr": 1e-3, "lr_min": 1e-5,
              "weight_decay": 0.0, "beta_max": 1.0, "kl_cycles": 4, "kl_ratio": 0.5,
              "property_weight": 1.0, "grad_clip": 10.0, "patience": 40, "seed": 0,
              "device": "auto", "time_limit_minutes": None, "init_from": None,
              "freeze": [], "augment": None, "property_loss": "normalised",
              "num_workers": 0, "predictor_on": "latent", "sample_latent": True,
              "refine_target_steps": 0, "refine_target_weight": 1.0, "ema_decay": None,
              "precision": "fp32"},
    "out": "runs/default",
}


def _unknown_keys(path: str, keys, allowed) -> str:
    """The error text for unknown config keys, with the closest allowed key of each."""
    import difflib
    allowed = sorted(allowed)
    parts = []
    for k in sorted(map(str, keys)):
        near = difflib.get_close_matches(k, allowed, n=1)
        parts.append(f"'{path}{k}'" + (f" (did you mean '{path}{near[0]}'?)" if near else ""))
    return (f"unknown config key{'s' if len(parts) > 1 else ''} {', '.join(parts)}; "
            f"allowed in {path.rstrip('.') or 'the top level'}: {allowed}")


def _merge(base: dict, over: dict, path: str = "") -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if k not in base and not (path == "model."):
            raise ValueError(_unknown_keys(path, [k], base))
        if isinstance(base.get(k), dict) and not isinstance(v, dict) and path != "model.":
            raise ValueError(f"config section '{path}{k}' must be a mapping, got {v!r}")
        if isinstance(v, dict) and isinstance(base.get(k), dict) and path != "model.":
            out[k] = _merge(base[k], v, f"{path}{k}.")
        else:
            out[k] = v
    return out


#: values of ``train.augment``: ``None`` (off), ``"axes"`` (a random axis permutation of each
#: training lattice, labels transformed exactly: :class:`gnn_truss.symmetry.RandomAxisPermutation`)
#: or ``"axes_mirrors"`` (a random permutation and mirror reflection: all 48 symmetries of the
#: cube for stiffness, the 16 that keep the loading axis for curves)
AUGMENTATIONS = (None, "axes", "axes_mirrors")
#: ``train.property_loss``: squared error of the normalised targets (any target); of the
#: physical curve scaled by each true curve's range (curves only; the NRMSE of the metric); or
#: of the physical values scaled by each component's standard deviation over the training
#: split (any target; the sum over components of ``1 - R^2``, the metric of the stiffness).
PROPERTY_LOSSES = ("normalised", "curve_range", "physical")
#: ``train.predictor_on``: what the predictor reads in training. ``"latent"``: the latent mean
#: (:meth:`~gnn_truss.nn.TrussVAE.predict`, for either ``model.predictor_input``);
#: ``"graph"``: the true graph of each training lattice (only a predictor that reads lattices,
#: ``model.predictor_input: decoded``; it then learns the property of the lattice it reads, a
#: surrogate of the FE labels, and costs one sparse GNN pass). Validation predicts from the
#: latent mean, as the evaluation does, except for a predictor with lattice features
#: (``model.predictor_features``), which is validated on the true graphs with their features.
PREDICTOR_ON = ("latent", "graph")
#: ``train.precision``: the arithmetic of the training forward pass. ``"fp32"``: float32
#: throughout. ``"bf16"``: the network's matrix products run in bfloat16 under
#: :func:`torch.autocast` (the weights, optimiser state, losses and gradients' accumulation stay
#: float32; the outputs are cast back to float32 before the loss). About 1.6x the training
#: throughput of float32 for the default GNN (1.8x for the MLP baseline) on a CPU with
#: AVX-512 BF16 (``benchmarks/train.py --precision``); on a CPU without native bfloat16 it is
#: slower. Validation, evaluation and
#: every command that reads a checkpoint run in float32 either way.
PRECISIONS = ("fp32", "bf16")

#: parts of a :class:`~gnn_truss.nn.TrussVAE` that ``train.freeze`` can hold fixed
FREEZABLE = ("encoder", "adj_decoder", "offset_decoder", "predictor")


def validate_config(cfg: dict) -> dict:
    """Fill defaults and check keys and values; raises ``ValueError`` naming the problem."""
    if not isinstance(cfg, dict):
        raise ValueError("config must be a mapping")
    cfg = _merge(DEFAULT_CONFIG, cfg)
    from .nn.vae import MODEL_KEYS
    bad = set(cfg["model"]) - MODEL_KEYS
    if bad:
        raise ValueError(_unknown_keys("model.", bad, MODEL_KEYS))
    t = cfg["train"]
    _check_values(cfg)
    if not _is_number(t["kl_ratio"]) or not 0 < t["kl_ratio"] <= 1:
        raise ValueError(f"train.kl_ratio must lie in (0, 1], got {t['kl_ratio']!r}")
    if t["init_from"] is not None and not isinstance(t["init_from"], str):
        raise ValueError(f"train.init_from must be a checkpoint path, got {t['init_from']!r}")
    frz = t["freeze"]
    if not (isinstance(frz, (list, tuple)) and all(isinstance(f, str) for f in frz)) or \
            set(frz) - set(FREEZABLE):
        raise ValueError(f"train.freeze must be a list of parts of the model among "
                         f"{list(FREEZABLE)}, got {frz!r}")
    if t["augment"] not in AUGMENTATIONS:
        raise ValueError(f"train.augment must be one of {list(AUGMENTATIONS)}, got "
                         f"{t['augment']!r}")
    if t["property_loss"] not in PROPERTY_LOSSES:
        raise ValueError(f"train.property_loss must be one of {list(PROPERTY_LOSSES)}, got "
                         f"{t['property_loss']!r}")
    if t["property_loss"] == "curve_range" and cfg["data"]["target"] != "curve":
        raise ValueError("train.property_loss 'curve_range' needs data.target 'curve' (it scales "
                         "each curve's error by the curve's range)")
    if t["precision"] not in PRECISIONS:
        raise ValueError(f"train.precision must be one of {list(PRECISIONS)}, got "
                         f"{t['precision']!r}")
    if t["predictor_on"] not in PREDICTOR_ON:
        raise ValueError(f"train.predictor_on must be one of {list(PREDICTOR_ON)}, got "
                         f"{t['predictor_on']!r}")
    if t["predictor_on"] == "graph" and \
            cfg["model"].get("predictor_input", "latent") != "decoded":
        raise ValueError("train.predictor_on 'graph' trains a predictor that reads lattices on "
                         "the true graphs; it needs model.predictor_input 'decoded'")
    feat = cfg["model"].get("predictor_features")
    if bool(feat) != bool(cfg["data"]["features"]):
        raise ValueError("model.predictor_features and data.features go together: the "
                         "predictor's lattice features (model) are read from the table "
                         "data.features (e.g. buckling.npz of `gnn-truss data buckle`)")
    if feat and t["predictor_on"] != "graph":
        raise ValueError("model.predictor_features needs train.predictor_on 'graph': the "
                         "features of the decoded training lattices would cost a "
                         "finite-element analysis per lattice and step")
    if set(frz) == set(FREEZABLE):
        raise ValueError("train.freeze: freezing every part leaves nothing to train")
    if t["predictor_on"] == "graph" and "predictor" in frz:
        raise ValueError("train.predictor_on 'graph' trains the predictor on the true graphs, "
                         "but train.freeze holds it fixed")
    if cfg["data"]["target"] == "curve":
        cfg["model"].setdefault("num_targets", 13)
    return cfg


#: The one tensor :func:`init_from_checkpoint` widens block by block (its input columns come
#: in the blocks of :func:`gnn_truss.nn.encoder.readout_blocks`).
_WIDENABLE = "encoder.readout.0.weight"

#: The fully connected stacks whose hidden widths :func:`init_from_checkpoint` may grow
#: (``model.readout``, ``mlp_hidden``, ``decoder_hidden``, ``offset_hidden``,
#: ``predictor_hidden``); the heads read the readout's (or MLP body's) last hidden layer.
_GROWABLE = ("encoder.readout", "encoder.body", "adj_decoder.net", "offset_decoder.net",
             "predictor.net")
_HEADS = ("encoder.heads.topology", "encoder.heads.geometry")
_FINAL_HIDDEN = ("encoder.readout", "encoder.body")


def _growth_axes(name: str, state: dict, source: dict) -> tuple[bool, bool] | None:
    """``(rows, cols)``: may tensor ``name`` of the model's ``state`` gain output rows (its
    outputs are hidden units of a :data:`_GROWABLE` stack) and input columns (its inputs are
    such hidden units, not the stack's input)? ``None`` for other tensors, and for a stack
    with another number of layers in the checkpoint's ``source`` state (its layers would not
    correspond)."""
    prefix, _, leaf = name.rpartition(".")
    if leaf not in ("weight", "bias"):
        return None
    if prefix in _HEADS:
        return False, True
    stack, _, idx = prefix.rpartition(".")
    if stack not in _GROWABLE or not idx.isdigit():
        return None

    def depth(st):
        return max(int(k[len(stack) + 1:].split(".")[0]) for k in st
                   if k.startswith(stack + ".") and k.endswith(".weight"))
    if depth(state) != depth(source):
        return None
    # the readout and the MLP body end in an activation feeding the heads: all hidden
    hidden_out = stack in _FINAL_HIDDEN or int(idx) != depth(state)
    return hidden_out, int(idx) != 0


def _grow(value: torch.Tensor, target: torch.Tensor, rows: bool, cols: bool,
          col_blocks: tuple[dict, dict] | None = None) -> torch.Tensor | None:
    """Place the checkpoint's ``value`` (a linear layer's weight ``[o, i]`` or bias ``[o]``)
    into ``target`` (``[O, I]`` or ``[O]``, the model's freshly initialised tensor) so that the
    grown layer computes the old outputs exactly:

    * old entries copied into ``[:o, :i]``;
    * new input columns ``[:, i:]`` (inputs from new hidden units) set to zero, so the old
      outputs do not see the new units;
    * new output rows ``[o:]`` (new hidden units) keep their fresh initialisation.

    ``col_blocks = (src, dst)`` places the columns block by block instead
    (:func:`_widen_readout`). ``rows`` / ``cols`` say whether rows / columns may grow.
    ``None`` when the shapes do not fit (a shrink, or growth along an axis that may not grow).
    """
    if value.ndim != target.ndim or value.ndim not in (1, 2):
        return None
    if value.shape[0] > target.shape[0] or (value.shape[0] < target.shape[0] and not rows):
        return None
    out = target.detach().clone()
    o = value.shape[0]
    if value.ndim == 1:
        out[:o] = value.to(out.dtype)
        return out
    if col_blocks is not None:
        wide = _widen_readout(value, out[:o], *col_blocks)
        if wide is None:
            return None
        out[:o] = wide
        return out
    i = value.shape[1]
    if i > target.shape[1] or (i < target.shape[1] and not cols):
        return None
    out[:o, :i] = value.to(out.dtype)
    out[:, i:] = 0.0
    return out


def _widen_readout(value: torch.Tensor, target: torch.Tensor, src: dict, dst: dict
                   ) -> torch.Tensor | None:
    """The checkpoint's readout weight ``value [out, n_src]`` placed block by block into a
    zero tensor shaped like ``target [out, n_dst]``; ``src`` and ``dst`` are the
    :func:`~gnn_truss.nn.encoder.readout_blocks` of the two. ``None`` when the blocks do not
    fit (a block the target lacks, another node-embedding width or another output width)."""
    if (value.ndim != 2 or target.ndim != 2 or value.shape[0] != target.shape[0]
            or max(b.stop for b in src.values()) != value.shape[1]
            or max(b.stop for b in dst.values()) != target.shape[1]
            or not set(src) <= set(dst)
            or any(src[k].stop - src[k].start != dst[k].stop - dst[k].start for k in src)):
        return None
    wide = torch.zeros_like(target)
    for k, cols in src.items():
        wide[:, dst[k]] = value[:, cols].to(wide.dtype)
    return wide


#: Initial log sigma of the latent dims a warm start adds (:func:`init_from_checkpoint`): the
#: new dims start as precise (sigma = exp(-3) = 0.05) but data-dependent features of the
#: encoder's readout, which the decoders, reading them through zero weights, can learn to use.
#: The outputs do not change, but the KL term does: each new dim starts at about 2.5 nats
#: (233 -> 599 nats for the default checkpoint grown from 8 / 32 / 8 to 32 / 128 / 32).
GROWN_LOGSIG = -3.0

#: The layers that read the latent (their input columns) or write it (the heads' output rows),
#: with the latent parts in the order of their columns / rows (:class:`~gnn_truss.nn.vae.TrussVAE`).
_LATENT_COLUMNS = {"adj_decoder.net.0.weight": ("topology", "shared"),
                   "offset_decoder.net.0.weight": ("shared", "geometry"),
                   "predictor.net.0.weight": ("topology", "shared", "geometry")}
_LATENT_ROWS = {"encoder.heads.topology": ("topology", "shared"),
                "encoder.heads.geometry": ("shared", "geometry")}


def _latent_positions(parts: tuple[str, ...], old, new) -> torch.Tensor:
    """Positions in the ``new`` :class:`~gnn_truss.nn.vae.LatentSizes` layout of the
    concatenated ``parts`` of each index of the ``old`` layout (``[n_old]`` long): each part
    keeps its place at the start of its (larger) block."""
    pos, start = [], 0
    for part in parts:
        n_old, n_new = getattr(old, part), getattr(new, part)
        pos.extend(range(start, start + n_old))
        start += n_new
    return torch.tensor(pos, dtype=torch.long)


def _grow_latent(name: str, value: torch.Tensor, target: torch.Tensor, old, new,
                 state: dict, source: dict) -> torch.Tensor | None:
    """Place the checkpoint's ``value`` of a layer that reads or writes the latent into the
    model's ``target`` when the latent grew from ``old`` to ``new`` sizes, so that the grown
    model computes the old latent means, log sigmas, logits, offsets and predictions exactly:

    * heads (rows ``[mu | log sigma]`` of one head): each old row goes to its part's place in
      the larger blocks; a new mu row keeps its fresh initialisation (a new, data-dependent
      latent feature), a new log-sigma row reads nothing and starts at :data:`GROWN_LOGSIG`;
    * first layers of the decoders and of the latent predictor (columns): each old column goes
      to its place, the columns of the new dims start at zero.

    ``None`` for other tensors, or when the shapes do not fit."""
    prefix, _, leaf = name.rpartition(".")
    if prefix in _LATENT_ROWS:
        pos = _latent_positions(_LATENT_ROWS[prefix], old, new)
        d_old, d_new = len(pos), sum(getattr(new, p) for p in _LATENT_ROWS[prefix])
        rows = torch.cat([pos, pos + d_new])  # mu rows, then log-sigma rows
        if value.shape[0] != 2 * d_old or target.shape[0] != 2 * d_new:
            return None
        out = target.detach().clone()
        new_logsig = torch.ones(2 * d_new, dtype=torch.bool)
        new_logsig[:d_new] = False
        new_logsig[pos + d_new] = False
        if leaf == "bias":
            out[new_logsig] = GROWN_LOGSIG
            out[rows] = value.to(out.dtype)
            return out
        i = value.shape[1]
        if i > target.shape[1]:
            return None
        out[new_logsig] = 0.0
        out[rows, :i] = value.to(out.dtype)
        out[rows, i:] = 0.0  # new readout units do not reach the old latent
        return out
    if name in _LATENT_COLUMNS:
        pos = _latent_positions(_LATENT_COLUMNS[name], old, new)
        if value.ndim != 2 or value.shape[1] != len(pos) or target.ndim != 2:
            return None
        placed = value.new_zeros(value.shape[0], target.shape[1])
        placed[:, pos] = value
        axes = _growth_axes(name, state, source)
        rows = bool(axes and axes[0])
        return _grow(placed, target, rows, False)
    return None


def init_from_checkpoint(model: torch.nn.Module, path, model_cfg: dict | None = None
                         ) -> tuple[list, list]:
    """Warm start: copy every parameter / buffer of the checkpoint at ``path`` whose name and
    shape match ``model`` (e.g. the encoder and decoders of a stiffness model into a curve model,
    whose predictor output layer then starts afresh).

    The GNN readout's first weight matrix may gain input blocks (``model.edge_readout`` or
    ``model.physics_readout`` switched on, in any order of stages): each block of the source
    (node embeddings, adjacency, physics features) is copied into the same block of the new
    matrix and the new blocks are zeroed, so the warm model computes what the source did.

    Hidden widths may grow too (``model.readout``, ``mlp_hidden``, ``decoder_hidden``,
    ``offset_hidden``, ``predictor_hidden`` larger than the checkpoint's; net2net-style): each
    grown layer keeps the old weights, its new hidden units start from their fresh
    initialisation, and the next layer's weights from the new units start at zero, so the warm
    model again computes exactly what the source did while the new units can learn.
    The latent may grow too (``model.topology``, ``shared``, ``geometry`` each at least the
    checkpoint's): each part's old dims keep their place at the start of its block, the new
    dims start as fresh features of the readout with log sigma :data:`GROWN_LOGSIG`, and the
    decoders and the latent predictor read them through zero weights (:func:`_grow_latent`),
    so the warm model's reconstructions and predictions are again the source's. If a part
    shrinks, every layer that reads or writes it starts afresh (the layers of the unchanged
    parts, e.g. the offset decoder when only the topology part shrank, are copied).
    Any other shape mismatch (a narrower layer, a smaller latent, another node-embedding
    width, another width of the GNN predictor of ``model.predictor_input: decoded``) leaves
    the tensor freshly initialised, and with a weight left fresh its layer's bias too (a layer
    is copied whole or not at all; e.g. a 13-point curve head on a 9-component stiffness
    predictor starts afresh while the predictor's body is copied).

    Args:
        model: the freshly built model.
        path: a checkpoint of :func:`train`.
        model_cfg: ``model`` section the model was built from (checked against the
            checkpoint's encoder kind). The widened blocks are placed by the options the
            model's encoder was built with.

    Returns:
        ``(copied, skipped)`` parameter names.

    Raises:
        ValueError: unreadable checkpoint, another encoder kind, or nothing to copy.
    """
    ck = load_checkpoint(path)
    mine = dict(model_cfg or {})
    theirs = ck["config"]["model"]
    if mine and mine.get("encoder", "gnn") != theirs.get("encoder", "gnn"):
        raise ValueError(f"train.init_from: {path} has a {theirs.get('encoder', 'gnn')!r} "
                         f"encoder, this model a {mine.get('encoder', 'gnn')!r} one")
    state = model.state_dict()
    copied, skipped = [], []
    from .nn.vae import LatentSizes
    old = LatentSizes.from_config(theirs)
    new = getattr(model, "sizes", old)
    grow_latent = new != old and all(getattr(new, k) >= getattr(old, k)
                                     for k in ("topology", "shared", "geometry"))
    for name, value in ck["model"].items():
        if name not in state:
            skipped.append(name)
            continue
        parts = _LATENT_COLUMNS.get(name) or _LATENT_ROWS.get(name.rpartition(".")[0])
        if parts and grow_latent:
            grown = _grow_latent(name, value, state[name], old, new, state, ck["model"])
        elif parts and any(getattr(old, k) != getattr(new, k) for k in parts):
            grown = None  # a latent part it reads or writes shrank: its dims do not correspond
        elif name == _WIDENABLE:  # block by block, even at equal width
            from .nn.encoder import readout_blocks
            enc = model.encoder  # a GNN encoder: the blocks of the model as built
            blocks = (readout_blocks(theirs.get("hidden", 64), theirs.get("edge_readout", False),
                                     theirs.get("physics_readout", False)),
                      readout_blocks(enc.hidden, enc.edge_readout, enc.physics_readout))
            grown = _grow(value, state[name], True, False, col_blocks=blocks)
        elif state[name].shape == value.shape:
            grown = value.to(state[name].dtype)
        else:
            axes = _growth_axes(name, state, ck["model"])
            grown = None if axes is None else _grow(value, state[name], *axes)
        if grown is None:
            skipped.append(name)
        else:
            state[name] = grown
            copied.append(name)
    fresh = model.state_dict()
    for name in [n for n in skipped if n.endswith(".weight")]:
        bias = name[:-len("weight")] + "bias"
        if bias in copied:  # a layer is copied whole or not at all
            state[bias] = fresh[bias]
            copied.remove(bias)
            skipped.append(bias)
    if not copied:
        raise ValueError(f"train.init_from: no parameter of {path} fits this model")
    model.load_state_dict(state)
    return copied, skipped


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) \
        and math.isfinite(v)


def _check_values(cfg: dict) -> None:
    """Types and ranges of every value of a merged config (``ValueError`` naming the key)."""
    from .nn.vae import _is_int, check_model_config
    t, d = cfg["train"], cfg["data"]
    for key in ("epochs", "batch_size", "kl_cycles", "patience"):
        if not _is_int(t[key]) or t[key] < 1:
            raise ValueError(f"train.{key} must be a positive integer, got {t[key]!r}")
    if not _is_int(t["seed"]):
        raise ValueError(f"train.seed must be an integer, got {t['seed']!r}")
    if not _is_int(t["num_workers"]) or t["num_workers"] < 0:
        raise ValueError(f"train.num_workers must be a non-negative integer (data-loader "
                         f"worker processes; 0 collates in the training process), got "
                         f"{t['num_workers']!r}")
    for key in ("lr", "lr_min", "weight_decay", "grad_clip", "beta_max", "property_weight"):
        if not _is_number(t[key]) or t[key] < 0:
            raise ValueError(f"train.{key} must be a finite non-negative number, got {t[key]!r}")
    if not _is_int(t["refine_target_steps"]) or t["refine_target_steps"] < 0:
        raise ValueError(f"train.refine_target_steps must be an integer >= 0 (0: off), got "
                         f"{t['refine_target_steps']!r}")
    if not _is_number(t["refine_target_weight"]) or t["refine_target_weight"] < 0:
        raise ValueError(f"train.refine_target_weight must be a finite non-negative number, "
                         f"got {t['refine_target_weight']!r}")
    if t["refine_target_steps"] and isinstance(t["freeze"], (list, tuple)) and \
            "encoder" in t["freeze"]:
        raise ValueError("train.refine_target_steps pulls the encoder's mean towards refined "
                         "latents, but train.freeze holds the encoder fixed")
    ema = t["ema_decay"]
    if ema is not None and (not _is_number(ema) or not 0 < ema < 1):
        raise ValueError(f"train.ema_decay must be null (off) or a number in (0, 1), the "
                         f"weight of the running average at each step (e.g. 0.999), got "
                         f"{ema!r}")
    if not isinstance(t["sample_latent"], bool):
        raise ValueError(f"train.sample_latent must be true (decode a sample of the posterior "
                         f"in training) or false (decode its mean), got {t['sample_latent']!r}")
    tl = t["time_limit_minutes"]
    if tl is not None and (not _is_number(tl) or tl <= 0):
        raise ValueError(f"train.time_limit_minutes must be a positive number or null, got "
                         f"{tl!r}")
    dev = t["device"]
    ok = isinstance(dev, str)
    if ok and dev != "auto":
        try:
            torch.device(dev)
        except (RuntimeError, ValueError):
            ok = False
    if not ok:
        raise ValueError(f"train.device must be 'auto' or a torch device such as 'cpu' or "
                         f"'cuda:0', got {dev!r}")
    if d["limit"] is not None and (not _is_int(d["limit"]) or d["limit"] < 1):
        raise ValueError(f"data.limit must be a positive integer or null, got {d['limit']!r}")
    if not _is_int(d["split_seed"]):
        raise ValueError(f"data.split_seed must be an integer, got {d['split_seed']!r}")
    from .dataset import SOURCES, TARGETS, parse_split_by
    try:
        _, prefix = parse_split_by(d["split_by"])
    except ValueError:
        raise ValueError(f"data.split_by must be 'permutation' (a seeded permutation of the "
                         f"indices), 'content' (each lattice by a hash of its content, which "
                         f"keeps its split when the corpus grows) or 'prefix:N' (the first N "
                         f"lattices keep their permutation split, the rest by content), got "
                         f"{d['split_by']!r}") from None
    if prefix is not None and d["limit"] is not None and d["limit"] < prefix:
        raise ValueError(f"data.split_by {d['split_by']!r} keeps the split of the first "
                         f"{prefix} lattices, but data.limit is {d['limit']}")
    if d["source"] not in SOURCES:
        raise ValueError(f"data.source must be one of {list(SOURCES)}, got {d['source']!r}")
    if d["target"] not in TARGETS:
        raise ValueError(f"data.target must be one of {list(TARGETS)}, got {d['target']!r}")
    if d["features"] is not None and (not isinstance(d["features"], (str, os.PathLike))
                                      or not str(d["features"])):
        raise ValueError(f"data.features must be the path of a feature table or null, got "
                         f"{d['features']!r}")
    for key, v in (("data.root", d["root"]), ("out", cfg["out"])):
        if not isinstance(v, (str, os.PathLike)) or not str(v):
            raise ValueError(f"{key} must be a path, got {v!r}")
    check_model_config(cfg["model"])


def load_config(path) -> dict:
    """Read a YAML config and :func:`validate_config` it."""
    import yaml
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML ({exc})") from exc
    return validate_config(raw)


class WeightAverage:
    r"""Exponential moving average of a model's trainable weights (Polyak averaging).

    After each optimiser step, :meth:`update` moves every average towards its weight,
    :math:`\bar w \leftarrow d\,\bar w + (1 - d)\,w`, with
    :math:`d = \min(d_{max}, (1 + n) / (10 + n))` at the :math:`n`-th update, so that the first
    steps, far from the end of training, soon drop out of the average. The averaged weights sit
    near the middle of the region that noisy steps wander through, which tends to generalise
    better than the last iterate when the validation loss has levelled off
    (``train.ema_decay``). Frozen parameters (``requires_grad`` false) and buffers are not
    averaged: the model's own are used.

    Args:
        model: the :class:`torch.nn.Module` whose parameters are averaged (not a DDP wrapper).
        decay: :math:`d_{max}` in (0, 1); the average spans about ``1 / (1 - decay)`` steps.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"decay must lie in (0, 1), got {decay!r}")
        self.decay = float(decay)
        self.updates = 0
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters()
                       if p.requires_grad}

    def update(self, model: torch.nn.Module) -> None:
        """Move the averages one step towards the current weights of ``model``."""
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n in self.shadow:
                    self.shadow[n].lerp_(p.detach(), 1.0 - d)

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module):
        """Context in which ``model`` holds the averaged weights; its own come back after."""
        params = dict(model.named_parameters())
        saved = {}
        with torch.no_grad():
            for n, avg in self.shadow.items():
                saved[n] = params[n].detach().clone()
                params[n].copy_(avg)
        try:
            yield model
        finally:
            with torch.no_grad():
                for n, w in saved.items():
                    params[n].copy_(w)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates,
                "shadow": {n: v.clone() for n, v in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; raises ``ValueError`` when the averaged parameters are
        not those of this model."""
        if set(state["shadow"]) != set(self.shadow):
            raise ValueError(f"the weight average holds other parameters "
                             f"({len(state['shadow'])} against {len(self.shadow)} trainable "
                             f"ones): was another part of the model frozen?")
        for n, v in state["shadow"].items():
            self.shadow[n].copy_(v)
        self.updates = int(state["updates"])


def kl_beta(step: int, total_steps: int, cycles: int, ratio: float, beta_max: float) -> float:
    """Cyclical annealing: ``beta_max * min(1, tau / ratio)``, ``tau`` the position in the
    current cycle in ``[0, 1)``."""
    period = max(1.0, total_steps / cycles)
    tau = (step % period) / period
    return float(beta_max * min(1.0, tau / ratio))


def build_datasets(cfg: dict):
    """``(train, val, test)`` :class:`~gnn_truss.dataset.TrussDataset` splits of a config."""
    from .dataset import TrussDataset, resolve_data_root
    d = cfg["data"]
    kw = dict(source=d["source"], target=d["target"], split_seed=d["split_seed"],
              limit=d["limit"], split_by=d.get("split_by", "permutation"))
    root = resolve_data_root(d["root"], d["source"])  # the shipped corpus, also from elsewhere
    out = tuple(TrussDataset(root, split=s, **kw) for s in ("train", "val", "test"))
    if d.get("features"):
        from .dataset import attach_features
        attach_features(out, features_path(cfg))
    return out


def features_path(cfg: dict) -> Path:
    """The per-lattice feature table of ``data.features`` (relative to ``data.root`` unless
    absolute)."""
    d = cfg["data"]
    p = Path(d["features"])
    if p.is_absolute():
        return p
    from .dataset import resolve_data_root
    return resolve_data_root(d["root"], d["source"]) / p


def _dist():
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist
        if not dist.is_initialized():
            if torch.cuda.is_available():  # one GPU per process: torchrun's LOCAL_RANK
                torch.cuda.set_device(_local_rank())
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def _device(name: str) -> torch.device:
    """The training device of ``train.device``; under torchrun each process takes the GPU
    of its ``LOCAL_RANK`` for ``auto`` and a bare ``cuda``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return torch.device("cuda", _local_rank())
    return torch.device(name)


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; raises ``ValueError`` if it is corrupt or
    not a gnn_truss checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint not found: {path}")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        # torch's own text spans many lines and advises weights_only=False: keep its gist only
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()
                 and "weights_only" not in ln]
        gist = lines[-1] if lines else ""
        raise ValueError(f"{path}: not a readable checkpoint ({type(exc).__name__}"
                         f"{': ' + gist if gist else ''})") from exc
    if not isinstance(ck, dict):
        raise ValueError(f"{path}: not a gnn_truss checkpoint (holds a "
                         f"{type(ck).__name__}, not a dict)")
    missing = {"model", "config", "normalizer", "fingerprint"} - set(ck)
    if missing:
        raise ValueError(f"{path}: not a gnn_truss checkpoint (missing {sorted(missing)})")
    cfg = ck["config"]
    if not (isinstance(cfg, dict) and isinstance(cfg.get("model"), dict)
            and isinstance(cfg.get("data"), dict)):
        raise ValueError(f"{path}: not a gnn_truss checkpoint (its config has no 'model' and "
                         f"'data' sections)")
    return ck


def _same_value(a, b) -> bool:
    """Config values equal, a YAML list equal to a tuple default."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


def _config_changes(cfg: dict, base: dict, path: str = "") -> dict:
    """``{"section.key": value}`` of ``cfg`` entries that differ from ``base`` (keys missing
    from ``base`` count as changes)."""
    out = {}
    for k, v in cfg.items():
        b = base.get(k)
        if isinstance(v, dict) and isinstance(b, dict):
            out.update(_config_changes(v, b, f"{path}{k}."))
        elif k not in base or not _same_value(v, b):
            out[f"{path}{k}"] = v
    return out


def _report_of(report: dict, ck: dict, path: Path) -> bool:
    """Whether an evaluation report describes this checkpoint: the same data fingerprint,
    epoch and grafted VAE, and evaluated from a file of the same name (a fine-tuning stage or
    a graft can share the first three)."""
    return (report.get("fingerprint") == ck["fingerprint"]
            and report.get("epoch") == ck.get("epoch")
            and report.get("grafted_vae") == ck.get("grafted_vae")
            and Path(str(report.get("checkpoint", ""))).name == path.name)


def checkpoint_info(path) -> dict:
    """What a checkpoint holds, without building its model.

    Args:
        path: a checkpoint of :func:`train` (or :func:`graft_vae`).

    Returns:
        ``{"path", "size_mb", "epoch", "num_lattices", "fingerprint", "grafted_vae",
        "encoder", "latent": {"topology", "shared", "geometry"}, "predictor_input",
        "target", "data", "parameters": {part: count, "total": count},
        "config_changes": {"section.key": value}, "report": {...} | None}``.
        ``parameters`` counts the state dict's tensors by their top-level part (``encoder``,
        ``adj_decoder``, ``offset_decoder``, ``predictor``, ...); ``config_changes`` lists
        the config entries that differ from :data:`DEFAULT_CONFIG` (for the ``model``
        section: from the defaults of :func:`gnn_truss.nn.build_model`); ``report`` is the
        evaluation report of the checkpoint found beside it (``<stem>_report.json``,
        ``report.json`` or ``evaluation/report.json``; see :func:`_report_of`), with its
        ``path`` and :func:`gnn_truss.evaluation.target_check`.

    Raises:
        ValueError: missing, corrupt or foreign file (:func:`load_checkpoint`).
    """
    path = Path(path)
    ck = load_checkpoint(path)
    cfg = validate_config(copy.deepcopy(ck["config"]))
    m = cfg["model"]
    params: dict[str, int] = {}
    for name, t in ck["model"].items():
        part = name.split(".", 1)[0]
        params[part] = params.get(part, 0) + int(t.numel())
    params["total"] = sum(params.values())
    from .nn.vae import MODEL_DEFAULTS
    base = {**DEFAULT_CONFIG, "model": {**MODEL_DEFAULTS, **DEFAULT_CONFIG["model"]}}
    report = None
    for cand in (path.with_name(f"{path.stem}_report.json"), path.with_name("report.json"),
                 path.with_name("evaluation") / "report.json"):  # evaluate's default --out
        if not cand.is_file():
            continue
        try:
            rep = json.loads(cand.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rep, dict) and "adjacency" in rep and _report_of(rep, ck, path):
            from .evaluation import target_check
            report = {"path": str(cand), "split": rep.get("split"),
                      "num_lattices": rep.get("num_lattices"), "targets": target_check(rep)}
            break
    return {
        "path": str(path), "size_mb": path.stat().st_size / 2**20, "epoch": ck.get("epoch"),
        "num_lattices": ck.get("num_lattices"), "fingerprint": ck["fingerprint"],
        "grafted_vae": ck.get("grafted_vae"), "encoder": m["encoder"],
        "latent": {k: m[k] for k in ("topology", "shared", "geometry")},
        "predictor_input": m.get("predictor_input", "latent"),
        "target": cfg["data"]["target"], "data": cfg["data"], "parameters": params,
        "config_changes": _config_changes(cfg, base), "report": report,
    }


#: state-dict prefixes of the VAE (what :func:`graft_vae` replaces)
VAE_PARTS = ("encoder.", "adj_decoder.", "offset_decoder.")
#: The ``model`` config keys of the VAE (encoder, latent, decoders): :func:`graft_vae` takes
#: them from the VAE's checkpoint, the predictor's keys from the predictor's.
VAE_KEYS = ("encoder", "topology", "shared", "geometry", "hidden", "layers", "readout",
            "mlp_hidden", "decoder_hidden", "offset_hidden", "offset_weight", "edge_readout",
            "physics_readout")


def graft_vae(predictor_checkpoint, vae_checkpoint) -> dict:
    """A checkpoint with the lattice predictor of one checkpoint on the VAE of another.

    A predictor of ``model.predictor_input: decoded`` (a GNN G on the decoded lattice,
    :class:`~gnn_truss.nn.predictor.GraphPropertyPredictor`) reads lattices, not latents, so it
    stays valid when the VAE under it is retrained: ``F(mu) = G(decode(mu))`` with the new
    encoder and decoders.

    The result's ``model`` config is the predictor checkpoint's with the :data:`VAE_KEYS`
    (encoder, latent sizes, widths) of the VAE checkpoint's, so the VAE may have another
    architecture. The data checks of the result (the evaluation's test split,
    ``compare --unseen``, the novelty of samples) use the predictor's data: its config, split
    and fingerprint. If the VAE was trained on other data (a curve predictor on the stiffness corpus' VAE is the usual
    case) a warning says so; the VAE's own training lattices may then lie in that test split.

    Args:
        predictor_checkpoint: path of a checkpoint whose predictor reads the decoded lattice.
        vae_checkpoint: path of a checkpoint (any predictor) whose encoder and decoders are
            taken; its VAE may have another architecture (encoder, latent sizes, widths:
            the result's config takes the :data:`VAE_KEYS` of this checkpoint's config).

    Returns:
        The checkpoint dict (``torch.save`` it): the encoder and both decoders of
        ``vae_checkpoint``; the predictor's weights, ``config``, ``normalizer``,
        ``fingerprint`` and ``epoch`` of ``predictor_checkpoint`` (no optimiser, scheduler or
        early-stopping state: it is not a run to resume); and ``"grafted_vae"``, the list of
        grafts so far (each the VAE's path, fingerprint and epoch; a grafted checkpoint grafted
        again keeps the earlier entries).

    Raises:
        ValueError: the predictor reads the latent (its weights are tied to the old latent
            space), a checkpoint lacks tensors of its config or holds other shapes, or either
            file is not a checkpoint.
    """
    from .nn import build_model
    pred = load_checkpoint(predictor_checkpoint)
    vae = load_checkpoint(vae_checkpoint)
    if pred["config"]["model"].get("predictor_input", "latent") != "decoded":
        raise ValueError(f"{predictor_checkpoint}: its predictor reads the latent mean "
                         f"(model.predictor_input 'latent'), so it is tied to that VAE's latent "
                         f"space; only a predictor of the decoded lattice can be grafted")
    # the VAE's architecture (encoder, latent sizes, widths) with the predictor's keys
    cfg_p, cfg_v = pred["config"]["model"], vae["config"]["model"]
    merged = {k: v for k, v in cfg_p.items() if k not in VAE_KEYS}
    merged.update({k: v for k, v in cfg_v.items() if k in VAE_KEYS})
    from .nn.vae import LatentSizes
    if LatentSizes.from_config(cfg_p) != LatentSizes.from_config(cfg_v):
        log.info("graft: the VAE of %s has latent sizes %s (the predictor's checkpoint %s); "
                 "the predictor reads the decoded lattice, so it is unchanged", vae_checkpoint,
                 LatentSizes.from_config(cfg_v), LatentSizes.from_config(cfg_p))
    shapes = {n: tuple(v.shape) for n, v in build_model(merged).state_dict().items()}
    mine = [n for n in shapes if n.startswith(VAE_PARTS)]
    for path, ck, keep in ((vae_checkpoint, vae, True), (predictor_checkpoint, pred, False)):
        names = [n for n in shapes if n.startswith(VAE_PARTS) == keep]
        lost = sorted(n for n in names if n not in ck["model"])
        if lost:
            raise ValueError(f"{path}: corrupt checkpoint, its weights lack {len(lost)} "
                             f"{'VAE' if keep else 'predictor'} tensor(s) of its own config, "
                             f"e.g. {lost[0]}")
        bad = sorted(n for n in names if tuple(ck["model"][n].shape) != shapes[n])
        if bad:
            raise ValueError(f"{path}: corrupt checkpoint, tensor(s) {bad[:4]} have shapes "
                             f"{[tuple(ck['model'][n].shape) for n in bad[:4]]}, its config "
                             f"builds {[shapes[n] for n in bad[:4]]}")
    model = {n: v for n, v in pred["model"].items() if not n.startswith(VAE_PARTS)}
    for n in mine:
        model[n] = vae["model"][n].clone()
    if vae["fingerprint"] != pred["fingerprint"]:
        log.warning("graft: the VAE of %s was trained on other data (fingerprint %s) than the "
                    "predictor of %s (%s); the result's data checks use the predictor's data",
                    vae_checkpoint, vae["fingerprint"], predictor_checkpoint,
                    pred["fingerprint"])
    out = {k: v for k, v in pred.items() if k not in ("optimizer", "scheduler", "rng",
                                                    "loader_rng", "cuda_rng", "best",
                                                    "bad_epochs")}
    out["model"] = model
    out["config"] = {**pred["config"], "model": merged}
    out["grafted_vae"] = list(pred.get("grafted_vae", [])) + [
        {"path": str(vae_checkpoint), "fingerprint": vae["fingerprint"],
         "epoch": int(vae.get("epoch", -1))}]
    return out


def curve_range_loss(pred: torch.Tensor, curve: torch.Tensor, normalizer) -> torch.Tensor:
    r"""Range-scaled squared error of predicted compression curves, batch mean.

    :math:`\sum_j ((\hat s_j - s_j) / (\max s - \min s))^2` per lattice, i.e. 13 times the
    square of the curve NRMSE of ``SPEC.md`` (RMSE over the range of the true curve), so that
    training weights the points as the metric does: the normalised targets (asinh, close to
    log stress) weight a 1e-4 error at 0.5 % strain as much as a 1e-3 error at the peak.

    Args:
        pred: ``[B, 13]`` normalised predictions (clamped to +-8 standard deviations before
            inversion, so an untrained head cannot overflow ``sinh``).
        curve: ``[B, 13]`` true stresses, units of :math:`E_s`.
        normalizer: the :class:`~gnn_truss.dataset.TargetNormalizer` of the targets.
    """
    s = normalizer.inverse(pred.clamp(-8.0, 8.0))
    rng = (curve.max(-1, keepdim=True).values - curve.min(-1, keepdim=True).values).clamp_min(
        1e-12)
    return (((s - curve) / rng) ** 2).sum(-1).mean()


def physical_loss(pred: torch.Tensor, true: torch.Tensor, normalizer,
                  scale: torch.Tensor) -> torch.Tensor:
    r"""Squared error of the physical values, each component scaled, batch mean.

    :math:`\sum_j ((\hat v_j - v_j) / s_j)^2` per lattice. With :math:`s_j` the standard
    deviation of component :math:`j` over the training split, its mean over that split is
    :math:`\sum_j (1 - R^2_j)`: training weights the lattices as the :math:`R^2` of the
    evaluation does (on physical values), where the normalised targets (asinh, close to a
    logarithm) weight relative errors.

    Args:
        pred: ``[B, D]`` normalised predictions (clamped to +-8 standard deviations before
            inversion, so an untrained head cannot overflow ``sinh``).
        true: ``[B, D]`` true values, units of :math:`E_s`.
        normalizer: the :class:`~gnn_truss.dataset.TargetNormalizer` of the targets.
        scale: ``[D]`` positive scales, units of :math:`E_s`.
    """
    v = normalizer.inverse(pred.clamp(-8.0, 8.0))
    return (((v - true) / scale) ** 2).sum(-1).mean()


def physical_scale(dataset, target: str) -> torch.Tensor:
    """``[D]`` float32 standard deviation of each target component over ``dataset`` (a
    :class:`~gnn_truss.dataset.TrussDataset` split), units of E_s.

    With ``train.augment`` the training lattices also appear with permuted axes (C11 as C22,
    ...); the scales stay those of the split as stored, i.e. of the evaluation's R^2.

    Raises:
        ValueError: a NaN/inf label, or a component without spread (zero deviation).
    """
    from .loader import make_loader
    rows = [getattr(b, target).double() for b in make_loader(dataset, batch_size=8192)]
    values = torch.cat(rows)
    if not torch.isfinite(values).all():
        raise ValueError(f"train.property_loss 'physical' needs every training lattice's "
                         f"{target} label; some are NaN or inf")
    sd = values.std(0, unbiased=False)
    if not (sd > 0).all():
        j = int(torch.nonzero(~(sd > 0))[0, 0])
        raise ValueError(f"train.property_loss 'physical': {target} component {j} has no "
                         f"spread over the {len(values)} training lattice(s), so its errors "
                         f"cannot be scaled; use train.property_loss 'normalised'")
    return sd.float()


def _property_term(out, batch, normalizer, kind, target="stiffness", scale=None):
    """The property loss of ``train.property_loss`` (None: the model's own)."""
    if kind == "curve_range":
        return curve_range_loss(out["pred"], batch.curve.to(out["pred"].dtype), normalizer)
    if kind == "physical":
        true = getattr(batch, target).to(out["pred"].dtype)
        return physical_loss(out["pred"], true, normalizer, scale)
    return None


def _refine_target_term(model, mu: torch.Tensor, batch, steps: int) -> torch.Tensor:
    """Scalar ``||mu - z*||^2`` summed over the latent dimensions, batch mean (squared latent
    units), differentiable in ``mu`` only.

    Args:
        model: the :class:`~gnn_truss.nn.TrussVAE` (its weights are not changed).
        mu: ``[B, t + s + g]`` latent means of the batch.
        batch: the batch (``adj [B, 351]``, ``offset [B, 27]``).
        steps: refinement steps: ``z*`` is ``mu`` refined by that many Adam steps of size 0.01
            on each lattice's own reconstruction loss
            (:func:`~gnn_truss.nn.vae.refine_latent`), detached.
    """
    from .nn.vae import refine_latent
    try:
        target = refine_latent(model, mu.detach(), batch.adj, batch.offset, steps)
    except ValueError as exc:
        raise ValueError(f"train.refine_target_steps: refining the batch's latent means "
                         f"failed ({exc}); the training has diverged") from exc
    return ((mu - target) ** 2).sum(-1).mean()


def _evaluate_loss(model, loader, device, beta, pw, normalizer=None, kind="normalised",
                   target="stiffness", scale=None) -> dict:
    model.eval()
    tot: dict = {}
    n = 0
    correct = 0.0
    # a predictor with lattice features is validated on the true graphs (their features are
    # in the table; those of the decoded lattices would cost an FE analysis each)
    source = "graph" if getattr(model, "reads_features", False) else "latent"
    with torch.no_grad():
        for b in loader:
            b = b.to(device)
            out = model(b, sample=False, predict_from=source)
            parts = model.loss(out, b, beta, pw,
                               _property_term(out, b, normalizer, kind, target, scale))
            for k, v in parts.items():
                tot[k] = tot.get(k, 0.0) + float(v) * b.num_graphs
            correct += float(((out["logits"] > 0).float() == b.adj).all(-1).sum())
            n += b.num_graphs
    res = {k: v / max(n, 1) for k, v in tot.items()}
    res["exact"] = correct / max(n, 1)
    res["score"] = res["adj"] + model.offset_weight * res["offset"] + pw * res["property"]
    return res


def train(cfg: dict, resume: bool = True, progress: bool = True) -> dict:
    """Train according to ``cfg`` (see :data:`DEFAULT_CONFIG`); returns a summary dict.

    Under ``torchrun`` (``WORLD_SIZE > 1``) the process group is created here and torn down
    before returning (all ranks meet at a barrier first), so no rank exits while another one is
    still talking to it."""
    owned = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not _dist_initialized()
    ok = False
    try:
        summary = _train(cfg, resume, progress)
        ok = True
        return summary
    finally:
        if owned and _dist_initialized():
            import torch.distributed as dist
            try:
                if ok:  # after an error the other ranks may be elsewhere: do not wait for them
                    dist.barrier()
            finally:
                dist.destroy_process_group()


def _dist_initialized() -> bool:
    import torch.distributed as dist
    return dist.is_available() and dist.is_initialized()


def _train(cfg: dict, resume: bool, progress: bool) -> dict:
    from .loader import make_loader
    from .nn import build_model
    cfg = validate_config(cfg)
    t = cfg["train"]
    if t["freeze"] and not t["init_from"]:  # here: --init-from may set it after loading
        raise ValueError(f"train.freeze holds {sorted(t['freeze'])} fixed at their random "
                         f"initial weights: set train.init_from (or --init-from) to the "
                         f"checkpoint they should come from")
    rank, world = _dist()
    out = Path(cfg["out"])
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(t["seed"] + rank)
    np.random.seed(t["seed"] + rank)
    device = _device(t["device"])
    train_ds, val_ds, _ = build_datasets(cfg)
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise ValueError("empty train or validation split")
    sampler = None
    if world > 1:
        from torch.utils.data.distributed import DistributedSampler
        sampler = DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True,
                                     seed=t["seed"])
    gen = torch.Generator().manual_seed(t["seed"])
    # With num_workers 0 the batches are sliced from the split's collated storage
    # (gnn_truss.loader.CollatedLoader: PyG's batches, bit for bit, without its per-graph
    # collation). Worker processes only collate: the batches, their order and the
    # augmentation (drawn in this process) are those of num_workers 0, so a run's numbers do
    # not depend on it. (Persistent workers would draw the loader's seed once, not every
    # epoch, and so change the shuffle order from the second epoch on.)
    # On a CUDA GPU the sliced loader keeps the split's storage there and cuts the batches
    # there (no copy per step; the augmentation then runs there too). Not on MPS: the
    # reflections of the augmentation compute in float64, which MPS lacks.
    loader_opts = {"num_workers": t["num_workers"], "pin_memory": device.type == "cuda",
                   "device": device if device.type == "cuda" else None}
    train_dl = make_loader(train_ds, batch_size=t["batch_size"], shuffle=sampler is None,
                           sampler=sampler, generator=gen if sampler is None else None,
                           drop_last=True, **loader_opts)
    val_dl = make_loader(val_ds, batch_size=1024, **loader_opts)
    augment = None
    if t["augment"] in ("axes", "axes_mirrors"):
        from .symmetry import RandomAxisPermutation
        augment = RandomAxisPermutation(train_ds.normalizer, cfg["data"]["target"],
                                        mirrors=t["augment"] == "axes_mirrors")
    target = cfg["data"]["target"]
    scale = None
    if t["property_loss"] == "physical":
        scale = physical_scale(train_ds, target).to(device)
    model = build_model(cfg["model"]).to(device)
    for part in t["freeze"]:  # e.g. train only the predictor on a few curves
        getattr(model, part).requires_grad_(False)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=t["lr"],
                           weight_decay=t["weight_decay"])
    steps_per_epoch = max(1, len(train_dl))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t["epochs"] * steps_per_epoch,
                                                       eta_min=t["lr_min"])
    start_epoch, best, bad_epochs, step = 0, float("inf"), 0, 0
    last = out / "last.pt"
    ema_state = None
    if resume and last.exists():
        # on the CPU: Adam's step counts must stay there (on a GPU, non-fused Adam reads each
        # one back every step); load_state_dict copies the rest to the parameters' device
        ck = load_checkpoint(last, map_location="cpu")
        if ck["config"]["model"] != cfg["model"] or \
                {"features": None, "split_by": "permutation",
                 **ck["config"]["data"]} != cfg["data"]:
            raise ValueError(f"{last} was trained with a different model/data config; use "
                             f"another out directory or --no-resume")
        if ck["fingerprint"] != train_ds.fingerprint:
            raise ValueError(f"{last} was trained on different data (fingerprint mismatch)")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        start_epoch, best, bad_epochs = ck["epoch"] + 1, ck["best"], ck["bad_epochs"]
        step = start_epoch * steps_per_epoch
        # generator states are CPU byte tensors, whatever map_location moved them to
        torch.set_rng_state(ck["rng"].cpu())
        if device.type == "cuda" and "cuda_rng" in ck:  # the sampling noise drawn on the GPU
            torch.cuda.set_rng_state(ck["cuda_rng"].cpu(), device)
        if sampler is None and "loader_rng" in ck:  # the shuffle order carries on
            gen.set_state(ck["loader_rng"].cpu())
        elif sampler is None:  # a checkpoint written before the loader's state was saved
            log.warning("%s holds no shuffle-order state: the epoch order restarts from the "
                        "seed (the run is not the same as an uninterrupted one)", last)
        if world > 1:  # only rank 0's generator state is saved: one stream per rank again
            torch.manual_seed(t["seed"] + rank + world * start_epoch)
        old_loss = ck["config"]["train"].get("property_loss", "normalised")
        if old_loss != t["property_loss"]:
            raise ValueError(f"{last} was trained with train.property_loss {old_loss!r}, not "
                             f"{t['property_loss']!r}: its best validation score is on another "
                             f"scale; use another out directory or --no-resume")
        ema_state = ck.get("ema")
        if t["ema_decay"] and ema_state is None:
            log.warning("%s holds no weight average: train.ema_decay averages from the weights "
                        "of epoch %d on", last, ck["epoch"])
        for key, default in (("augment", None), ("sample_latent", True),
                             ("refine_target_steps", 0), ("refine_target_weight", 1.0),
                             ("ema_decay", None), ("precision", "fp32")):
            if ck["config"]["train"].get(key, default) != t[key]:
                log.warning("resuming %s with train.%s %r (it was trained with %r): the run is "
                            "not the same as an uninterrupted one", last, key, t[key],
                            ck["config"]["train"].get(key, default))
        log.info("resumed from %s at epoch %d", last, start_epoch)
    elif t["init_from"]:
        copied, skipped = init_from_checkpoint(model, t["init_from"], cfg["model"])
        log.info("initialised %d tensors from %s (%d left at their initial values: %s)",
                 len(copied), t["init_from"], len(skipped), ", ".join(skipped[:6]))
    if getattr(model.predictor, "num_features", 0) and not (resume and last.exists()):
        # standardise the lattice features over the training split (saved with the weights)
        model.predictor.features.set_normalization(
            train_ds.transform.table[train_ds._data.idx.cpu()])
    ema = None
    if t["ema_decay"]:  # validated and saved as best.pt with the averaged weights
        ema = WeightAverage(model, t["ema_decay"])
        if ema_state is not None:
            ema.load_state_dict(ema_state)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)
    total_steps = t["epochs"] * steps_per_epoch
    log_path = out / "metrics.csv"
    fields = ["epoch", "lr", "beta", "train_total", "train_adj", "train_offset",
              "train_property", "train_kl", "val_adj", "val_offset", "val_property", "val_kl",
              "val_exact", "val_score", "seconds"]
    if rank == 0 and not log_path.exists():
        with open(log_path, "w", newline="") as fh:
            csv.writer(fh).writerow(fields)
    elif rank == 0:
        _truncate_log(log_path, start_epoch)
    deadline = None if not t["time_limit_minutes"] else time.time() + 60 * t["time_limit_minutes"]
    bar = None
    if progress and rank == 0:
        from .progress import progress_bar
        bar = progress_bar(total=t["epochs"], initial=start_epoch, desc="train", unit="epoch")
    epoch = start_epoch - 1  # last finished epoch, if the loop below has nothing left to do
    stopped = "completed"
    for epoch in range(start_epoch, t["epochs"]):
        t0 = time.time()
        if sampler is not None:
            sampler.set_epoch(epoch)
        model.train()
        sums: dict = {}
        nb = 0
        beta = 0.0
        for b in train_dl:
            if augment is not None:
                b = augment(b)
            b = b.to(device, non_blocking=True)
            beta = kl_beta(step, total_steps, t["kl_cycles"], t["kl_ratio"], t["beta_max"])
            with torch.autocast(device.type, dtype=torch.bfloat16,
                                enabled=t["precision"] == "bf16"):
                outp = net(b, sample=t["sample_latent"], predict_from=t["predictor_on"])
            if t["precision"] == "bf16":
                outp = _as_float32(outp)
            parts = model.loss(outp, b, beta, t["property_weight"],
                               _property_term(outp, b, train_ds.normalizer, t["property_loss"],
                                              target, scale))
            if t["refine_target_steps"]:
                parts["refine"] = _refine_target_term(model, outp["mu"], b,
                                                      t["refine_target_steps"])
                parts["total"] = parts["total"] + t["refine_target_weight"] * parts["refine"]
            opt.zero_grad(set_to_none=True)
            parts["total"].backward()
            if t["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), t["grad_clip"])
            opt.step()
            sched.step()
            if ema is not None:
                ema.update(model)
            step += 1
            nb += 1
            for k, v in parts.items():  # summed on the device: no sync per step
                sums[k] = sums.get(k, 0.0) + v.detach().float()
        tr = {k: float(v) / max(nb, 1) for k, v in sums.items()}
        if rank == 0:
            with ema.applied(model) if ema is not None else contextlib.nullcontext():
                va = _evaluate_loss(model, val_dl, device, t["beta_max"], t["property_weight"],
                                    train_ds.normalizer, t["property_loss"], target, scale)
                # the weights validated (averaged or not) are the ones best.pt keeps
                validated = {k: v.clone() for k, v in model.state_dict().items()}
            improved = va["score"] < best
            if improved:
                best, bad_epochs = va["score"], 0
            else:
                bad_epochs += 1
            row = [epoch, sched.get_last_lr()[0], beta, tr["total"], tr["adj"], tr["offset"],
                   tr["property"], tr["kl"], va["adj"], va["offset"], va["property"], va["kl"],
                   va["exact"], va["score"], round(time.time() - t0, 2)]
            with open(log_path, "a", newline="") as fh:
                csv.writer(fh).writerow(row)
            ck = {"model": model.state_dict(), "optimizer": opt.state_dict(),
                  "scheduler": sched.state_dict(), "epoch": epoch, "best": best,
                  "bad_epochs": bad_epochs, "config": cfg,
                  "normalizer": train_ds.normalizer.to_dict(),
                  "fingerprint": train_ds.fingerprint,
                  "num_lattices": int(train_ds.meta["num_lattices"]),
                  "rng": torch.get_rng_state(),
                  "loader_rng": gen.get_state()}
            if device.type == "cuda":
                ck["cuda_rng"] = torch.cuda.get_rng_state(device)
            if ema is not None:
                ck["ema"] = ema.state_dict()
            _atomic_save(ck, last)
            if improved:
                _atomic_save({"model": validated, **{k: ck[k] for k in (
                    "epoch", "config", "normalizer", "fingerprint", "num_lattices")}},
                             out / "best.pt")
            if bar:
                bar.set_postfix(val_exact=f"{va['exact']:.3f}", val_prop=f"{va['property']:.3f}",
                                beta=f"{beta:.2f}", refresh=False)  # drawn by update()
                bar.update(1)
        stop = 0  # 1: early stop, 2: time limit
        if bad_epochs >= t["patience"]:
            stop = 1
        elif deadline and time.time() > deadline:
            stop = 2
        if world > 1:  # only rank 0 validates: all ranks follow its decision (or DDP hangs)
            stop = _broadcast_int(stop, device)
        if stop == 1:
            stopped = f"early stop after {t['patience']} epochs without improvement"
            break
        if stop == 2:
            stopped = "time limit reached (resume to continue)"
            break
    if bar:
        bar.close()
    summary = {"epochs_done": epoch + 1, "best_val_score": best, "stopped": stopped,
               "out": str(out)}
    if rank == 0:
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _as_float32(out: dict) -> dict:
    """``out`` with its half-precision tensors (the outputs of a bfloat16 forward pass) in
    float32, so that the losses are computed in float32; other tensors as they are."""
    return {k: v.float() if torch.is_tensor(v) and v.dtype in (torch.bfloat16, torch.float16)
            else v for k, v in out.items()}


def _truncate_log(path: Path, start_epoch: int) -> None:
    """Drop the rows of epochs ``>= start_epoch`` from ``metrics.csv`` (a run killed between
    writing an epoch's row and saving its checkpoint redoes that epoch); atomic rewrite."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return
    keep = [rows[0]] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) < start_epoch]
    if len(keep) == len(rows):
        return
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        csv.writer(fh).writerows(keep)
    os.replace(tmp, path)


def _broadcast_int(value: int, device) -> int:
    """``value`` of rank 0, on every rank."""
    import torch.distributed as dist
    flag = torch.tensor([value], dtype=torch.int64, device=device)
    dist.broadcast(flag, src=0)
    return int(flag.item())


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
