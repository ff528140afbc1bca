r"""The graph VAE with partially overlapping (attributed) latents and a property predictor.

Latent layout (Zheng et al. 2023, eq. for :math:`\mu`; ``SPEC.md`` section 7), sizes
``t / s / g`` (default 8 / 32 / 8)::

    mu      = [ mu_A[:t] | (mu_A[t:] + mu_x[:s]) / 2 | mu_x[s:] ]
    log sig = same with log sig_A, log sig_x

The adjacency decoder reads ``z[:, :t+s]`` (topology-specific + shared), the offset decoder
``z[:, t:]`` (shared + geometry-specific), and the property predictor reads ``mu``: the MLP
on ``mu`` itself (``predictor_input="latent"``, the paper's) or a GNN on the lattice decoded
from ``mu`` (``"decoded"``, :class:`~gnn_truss.nn.predictor.GraphPropertyPredictor`).
Reparameterisation: ``z = mu + eps * exp(log sig)`` with independent ``eps ~ N(0, I)`` per
dimension.

Losses (methods, PyG ``GAE`` style; every term is a per-lattice sum averaged over the batch):

* ``recon_loss``: binary cross-entropy of the 351 adjacency logits + ``offset_weight`` x the
  squared error of the 27 offsets;
* ``property_loss``: squared error of the normalised targets;
* ``kl_loss``: :math:`\frac12 \sum_j (\sigma_j^2 + \mu_j^2 - 1 - \log \sigma_j^2)`.
"""
from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .decoder import AdjacencyDecoder, OffsetDecoder
from .encoder import MLPEncoder, TrussGNNEncoder
from .predictor import (PREDICTOR_FEATURES, PREDICTOR_INPUTS, GraphPropertyPredictor,
                        PropertyPredictor)

__all__ = ["LatentSizes", "TrussVAE", "build_model", "check_model_config", "MODEL_KEYS",
           "MODEL_DEFAULTS",
           "RELAXATIONS", "refine_latent", "check_refine"]

LOGSIG_MIN, LOGSIG_MAX = -12.0, 4.0

#: Keys of the ``model`` section of a training config.
MODEL_KEYS = {"encoder", "topology", "shared", "geometry", "hidden", "layers", "readout",
              "mlp_hidden", "decoder_hidden", "offset_hidden", "predictor_hidden",
              "num_targets", "offset_weight", "edge_readout", "physics_readout",
              "predictor_input", "predictor_gnn_hidden", "predictor_gnn_layers",
              "predictor_gnn_readout", "predictor_features", "predictor_dropout"}

#: What :func:`build_model` uses for a ``model`` key the config leaves out.
MODEL_DEFAULTS = {"encoder": "gnn", "topology": 8, "shared": 32, "geometry": 8, "hidden": 64,
                  "layers": 4, "readout": 512, "edge_readout": False, "physics_readout": False,
                  "mlp_hidden": (512, 512), "decoder_hidden": (256, 512),
                  "offset_hidden": (256, 256), "predictor_hidden": (256, 256, 256),
                  "num_targets": 9, "offset_weight": 10.0, "predictor_input": "latent",
                  "predictor_gnn_hidden": 64, "predictor_gnn_layers": 4,
                  "predictor_gnn_readout": 512, "predictor_features": None,
                  "predictor_dropout": 0.0}

#: Lattice features kept by :meth:`TrussVAE.lattice_features` before its cache is cleared.
FEATURE_CACHE_SIZE = 100_000

#: Relaxations of the decoded adjacency of :meth:`TrussVAE.decode_lattice`.
RELAXATIONS = ("straight-through", "soft")


@dataclass(frozen=True)
class LatentSizes:
    """Topology-specific, shared and geometry-specific latent sizes."""

    topology: int = 8
    shared: int = 32
    geometry: int = 8

    def __post_init__(self):
        if min(self.topology, self.shared, self.geometry) < 0 or self.total == 0:
            raise ValueError(f"invalid latent sizes {self}")

    @classmethod
    def from_config(cls, cfg: dict) -> "LatentSizes":
        """The sizes a ``model`` config section builds (:data:`MODEL_DEFAULTS` where left out)."""
        return cls(*(int(cfg.get(k, MODEL_DEFAULTS[k])) for k in ("topology", "shared",
                                                                  "geometry")))

    @property
    def total(self) -> int:
        return self.topology + self.shared + self.geometry

    @property
    def d_topology(self) -> int:  # size of the topology head
        return self.topology + self.shared

    @property
    def d_geometry(self) -> int:  # size of the geometry head
        return self.shared + self.geometry


class TrussVAE(nn.Module):
    """Graph VAE + property predictor.

    Args:
        encoder: module ``batch -> (mu_A, logsig_A, mu_x, logsig_x)``.
        adj_decoder: ``z[:, :t+s] -> [B, 351]`` logits.
        offset_decoder: ``z[:, t:] -> [B, 27]`` offsets.
        predictor: ``mu -> [B, num_targets]`` (``predictor_input="latent"``), or a
            :class:`~gnn_truss.nn.predictor.GraphPropertyPredictor` (``"decoded"``).
        sizes: :class:`LatentSizes`.
        offset_weight: weight of the offset squared error in the reconstruction loss.
        predictor_input: ``"latent"`` (the predictor reads ``mu``) or ``"decoded"`` (it reads
            the lattice decoded from ``mu``: :meth:`predict`).
    """

    def __init__(self, encoder: nn.Module, adj_decoder: nn.Module, offset_decoder: nn.Module,
                 predictor: nn.Module, sizes: LatentSizes, offset_weight: float = 10.0,
                 predictor_input: str = "latent"):
        super().__init__()
        if predictor_input not in PREDICTOR_INPUTS:
            raise ValueError(f"predictor_input must be one of {PREDICTOR_INPUTS}, got "
                             f"{predictor_input!r}")
        if predictor_input == "decoded" and not hasattr(predictor, "forward_dense"):
            raise ValueError("predictor_input 'decoded' needs a predictor that reads lattices "
                             "(GraphPropertyPredictor, with forward_dense)")
        self.predictor_input = predictor_input
        self.encoder = encoder
        self.adj_decoder = adj_decoder
        self.offset_decoder = offset_decoder
        self.predictor = predictor
        self.sizes = sizes
        self.offset_weight = offset_weight
        #: processes of the finite-element analyses of :meth:`lattice_features`
        self.feature_workers = 1
        self._feature_cache: dict = {}

    # ------------------------------------------------------------------ latent
    def merge(self, a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``[topo-specific | mean of the shared parts | geometry-specific]``."""
        t, s = self.sizes.topology, self.sizes.shared
        return torch.cat([a[:, :t], 0.5 * (a[:, t:] + x[:, :s]), x[:, s:]], dim=-1)

    def encode(self, batch):
        """``(mu, logsig)``, each ``[B, t + s + g]``."""
        mu_a, ls_a, mu_x, ls_x = self.encoder(batch)
        # bounded log sigma keeps exp(2 log sigma) finite early in training
        return self.merge(mu_a, mu_x), self.merge(ls_a, ls_x).clamp(LOGSIG_MIN, LOGSIG_MAX)

    def encode_dense(self, adj: torch.Tensor, offsets: torch.Tensor, **kwargs):
        """``(mu, logsig)`` of a dense, possibly soft lattice (differentiable re-encoding).

        Args:
            adj: ``[B, 27, 27]`` or ``[B, 351]`` edge probabilities in ``[0, 1]``.
            offsets: ``[B, 27]`` free-dof offsets.
            kwargs: passed to the encoder's ``forward_dense`` (``all_pairs`` of the GNN).

        Returns:
            ``(mu, logsig)``, each ``[B, t + s + g]``; equal to :meth:`encode` on the graphs of
            the same lattices when ``adj`` is binary (see ``encoder.forward_dense``).
        """
        mu_a, ls_a, mu_x, ls_x = self.encoder.forward_dense(adj, offsets, **kwargs)
        return self.merge(mu_a, mu_x), self.merge(ls_a, ls_x).clamp(LOGSIG_MIN, LOGSIG_MAX)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logsig: torch.Tensor) -> torch.Tensor:
        """``z = mu + eps * exp(logsig)``, independent ``eps`` per dimension."""
        return mu + torch.randn_like(mu) * torch.exp(logsig)

    def decode(self, z: torch.Tensor):
        """``(adjacency logits [B, 351], offsets [B, 27])``."""
        t = self.sizes.topology
        return (self.adj_decoder(z[:, :t + self.sizes.shared]),
                self.offset_decoder(z[:, t:]))

    def decode_lattice(self, z: torch.Tensor, relax: str = "straight-through",
                       near_only: bool = False):
        """The lattices decoded from ``z`` as dense, differentiable tensors.

        ``relax``: ``"straight-through"`` (the adjacency is exactly ``logit > 0`` in the
        forward pass, the sigmoid's gradient in the backward pass) or ``"soft"`` (sigmoid
        probabilities). ``near_only``: drop the node pairs that no offsets bring within
        ``sqrt(3)/2`` (:data:`~gnn_truss.design_space.NEAR_NEIGHBOUR_EDGES`: they can never be
        beams, and the repair of a design drops them) before the used nodes are found.

        Returns:
            ``(A [B, 27, 27], offsets [B, 27], used [B, 27])``: the symmetric adjacency, the
            free-dof offsets multiplied by the (soft) used-node indicator of their node (so they
            are zero on unused nodes, as in :func:`gnn_truss.graph.truss_to_data`), and that
            indicator.
        """
        from .. import design_space as ds
        from .decoder import dense_adjacency
        from .encoder import soft_used
        if relax not in RELAXATIONS:
            raise ValueError(f"relax must be one of {RELAXATIONS}, got {relax!r}")
        logits, offsets = self.decode(z)
        prob = torch.sigmoid(logits)
        if relax == "straight-through":
            adj = (logits > 0).to(prob.dtype) + (prob - prob.detach())
        else:
            adj = prob
        A = dense_adjacency(adj)
        if near_only:
            A = A * torch.tensor(_near_pairs(), dtype=A.dtype, device=A.device)
        used = soft_used(A)
        node = torch.tensor(ds.FREE_DOF_NODE, device=A.device)
        return A, offsets * used[:, node], used

    @property
    def num_targets(self) -> int:
        """Number of predicted components (9 stiffness, 13 curve points)."""
        return self.predictor.num_targets

    @property
    def reads_features(self) -> bool:
        """Whether the predictor reads features of the lattice it predicts for
        (``model.predictor_features``)."""
        return getattr(self.predictor, "num_features", 0) > 0

    def lattice_features(self, adj: torch.Tensor, offsets: torch.Tensor,
                         progress: bool = False) -> torch.Tensor:
        """The predictor's features of dense lattices, by finite elements
        (:func:`gnn_truss.fe.buckling.lattice_descriptors`, ``feature_workers`` processes).

        A lattice the analysis cannot handle (typically a decoded lattice with a floating piece)
        is analysed again after the light repair of decoded lattices
        (:func:`gnn_truss.exploration.light_repair`: dangling struts and the pieces outside
        the largest connected one removed; they carry no load). Results are cached under a key
        shared by the lattice's symmetric copies (:func:`gnn_truss.symmetry.canonical_keys`,
        offsets to 1e-6), so the copies of a symmetrised prediction and the repeated lattices
        of a design run are analysed once.

        Args:
            adj: ``[B, 27, 27]`` or ``[B, 351]`` adjacency (thresholded at 0.5).
            offsets: ``[B, 27]`` free-dof offsets.
            progress: a progress bar over the analyses.

        Returns:
            ``[B, num_features]`` float64 on ``offsets``' device (not differentiable); NaN rows
            for lattices the analysis cannot handle even after the repair (read by the
            predictor's head alone).
        """
        from .. import design_space as ds
        from ..fe.buckling import lattice_descriptors
        from ..symmetry import canonical_keys
        if not self.reads_features:
            raise ValueError("this model's predictor reads no lattice features")
        a = adj.detach().cpu().numpy() > 0.5
        if a.ndim == 3:
            a = a[:, ds.TRIU_I, ds.TRIU_J]
        x = offsets.detach().cpu().double().numpy()
        keys = canonical_keys(a, x, "curve")
        todo = sorted({k: i for i, k in enumerate(keys) if k not in self._feature_cache}.values())
        if todo:
            trusses = [(ds.triu_to_adjacency(a[i]), ds.unpack_offsets(x[i])) for i in todo]
            values = lattice_descriptors(trusses, workers=self.feature_workers,
                                         progress=progress)
            values = self._retry_repaired(trusses, values)
            if len(self._feature_cache) + len(todo) > FEATURE_CACHE_SIZE:
                self._feature_cache.clear()
            self._feature_cache.update({keys[i]: v for i, v in zip(todo, values)})
        out = np.stack([self._feature_cache[k] for k in keys]) if keys else \
            np.zeros((0, self.predictor.num_features))
        return torch.as_tensor(out, dtype=torch.float64, device=offsets.device)

    def _retry_repaired(self, trusses: list, values: np.ndarray) -> np.ndarray:
        """Analyse the lattices whose analysis failed again after the light repair
        (:func:`gnn_truss.exploration.light_repair`: dangling struts and the pieces outside the
        largest connected one removed; they carry no load)."""
        from ..exploration import light_repair
        from ..fe.buckling import lattice_descriptors
        from ..truss import Truss
        bad = np.flatnonzero(~np.isfinite(values).all(-1))
        retry, where = [], []
        for j in bad:
            try:
                t = Truss(np.asarray(trusses[j][0], dtype=bool), trusses[j][1])
                r = light_repair(t)[0]
            except ValueError:  # not even a lattice the repair can read
                continue
            if r.num_edges and not r == t:
                retry.append(r)
                where.append(j)
        if retry:
            values = values.copy()
            values[where] = lattice_descriptors(retry, workers=self.feature_workers)
        return values

    def predict(self, mu: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised properties ``[B, num_targets]`` of latents ``mu [B, d]``: the MLP on
        ``mu``, or with ``predictor_input="decoded"`` the GNN on the lattice decoded from
        ``mu`` (:meth:`decode_lattice`, straight-through, pairs that can never be beams
        dropped; differentiable in ``mu``).

        A predictor that reads lattice features (``model.predictor_features``) takes
        ``features [B, num_features]`` of the decoded lattices; without them they are computed
        here by finite elements (:meth:`lattice_features`, about 0.05 s a lattice), constants
        for the gradient."""
        if self.predictor_input == "latent":
            if features is not None:
                raise ValueError("a latent predictor reads no lattice features")
            return self.predictor(mu)
        A, offsets, _ = self.decode_lattice(mu, near_only=True)
        if self.reads_features and features is None:
            features = self.lattice_features(A, offsets)
        return self.predictor.forward_dense(A, offsets, features)

    def forward(self, batch, sample: bool = True, predict_from: str = "latent") -> dict:
        """Encode, sample (``sample``; else ``z = mu``), decode and predict.

        ``predict_from``: ``"latent"`` gives ``pred = predict(mu)``; ``"graph"`` (only with
        ``predictor_input="decoded"``) runs the predictor on the input graphs themselves, so
        that it learns the property of the lattice it reads (teacher forcing:
        ``train.predictor_on``). Returns a dict of ``mu, logsig, z [B, d]``, ``logits
        [B, 351]``, ``offsets [B, 27]`` and ``pred [B, num_targets]``."""
        mu, logsig = self.encode(batch)
        z = self.reparameterize(mu, logsig) if sample else mu
        logits, offsets = self.decode(z)
        if predict_from == "graph":
            if self.predictor_input != "decoded":
                raise ValueError("predict_from 'graph' needs predictor_input 'decoded' (the "
                                 "latent MLP cannot read a graph)")
            pred = self.predictor(batch)
        elif predict_from == "latent":
            pred = self.predict(mu)
        else:
            raise ValueError(f"predict_from must be 'latent' or 'graph', got {predict_from!r}")
        return {"mu": mu, "logsig": logsig, "z": z, "logits": logits, "offsets": offsets,
                "pred": pred}

    # ------------------------------------------------------------------ losses
    def recon_loss(self, out: dict, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(adjacency BCE, offset squared error)``, per lattice, batch mean."""
        bce = F.binary_cross_entropy_with_logits(out["logits"], batch.adj, reduction="none")
        se = (out["offsets"] - batch.offset) ** 2
        return bce.sum(-1).mean(), se.sum(-1).mean()

    def property_loss(self, out: dict, batch) -> torch.Tensor:
        return ((out["pred"] - batch.y) ** 2).sum(-1).mean()

    @staticmethod
    def kl_loss(mu: torch.Tensor, logsig: torch.Tensor) -> torch.Tensor:
        """KL(N(mu, sigma^2) || N(0, I)) per lattice, batch mean."""
        return 0.5 * (torch.exp(2 * logsig) + mu**2 - 1 - 2 * logsig).sum(-1).mean()

    def loss(self, out: dict, batch, beta: float, property_weight: float = 1.0,
             prop: torch.Tensor | None = None) -> dict:
        """All terms and the total ``adj + offset_weight * off + property + beta * KL``
        (``prop``: a property term computed elsewhere, replacing :meth:`property_loss`)."""
        adj, off = self.recon_loss(out, batch)
        prop = self.property_loss(out, batch) if prop is None else prop
        kl = self.kl_loss(out["mu"], out["logsig"])
        total = adj + self.offset_weight * off + property_weight * prop + beta * kl
        return {"total": total, "adj": adj, "offset": off, "property": prop, "kl": kl}


@functools.lru_cache(maxsize=1)
def _near_pairs() -> np.ndarray:
    """``[27, 27]`` 0/1: the node pairs that can be beams of a valid lattice (read-only)."""
    from .. import design_space as ds
    near = ds.NEAR_NEIGHBOUR_ADJACENCY.astype(np.float32)
    near.setflags(write=False)
    return near


def check_refine(steps, lr=0.01, name: str = "refine_latent") -> int:
    """Check latent-refinement settings before any work: ``steps`` an integer >= 0 (``None``
    and 0: no refinement) and ``lr`` a positive finite number. Returns the steps as an
    ``int``; raises ``ValueError`` naming ``name`` (the caller's option)."""
    steps = 0 if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"{name} must be an integer >= 0 (refinement steps; 0: off), got "
                         f"{steps!r}")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not (math.isfinite(lr)
                                                                        and lr > 0):
        raise ValueError(f"the step size of {name} must be a positive finite number, got "
                         f"{lr!r}")
    return int(steps)


def refine_latent(model: "TrussVAE", z0: torch.Tensor, adj: torch.Tensor,
                  offsets: torch.Tensor, steps: int = 100, lr: float = 0.01) -> torch.Tensor:
    r"""Latent refinement (semi-amortised inference): ``steps`` Adam steps on the latent,
    from ``z0`` (the encoder's mean), that lower the reconstruction loss of the given lattice.

    The encoder predicts the latent in one pass; its error (the amortisation gap) is what keeps
    the decoding of a lattice's mean from being the lattice itself. This closes the gap by
    minimising, for each lattice separately, the model's own reconstruction loss

    .. math:: \mathrm{BCE}(\mathrm{dec}_A(z), A) + w_o \lVert \mathrm{dec}_x(z) - x \rVert^2

    over ``z`` with the weights fixed (:meth:`TrussVAE.recon_loss`, ``w_o`` the model's
    ``offset_weight``; no prior term). Each lattice's latent only enters its own loss and Adam
    scales each coordinate separately, so the result does not depend on the batch. It needs
    the lattice: it is an encoder for known lattices (reconstruction, interpolation, design
    starts), not a change of the decoder or of the sampling.

    Args:
        model: a :class:`TrussVAE` (its parameters are not changed; gradients flow to ``z``
            only).
        z0: ``[B, t + s + g]`` starting latents.
        adj: ``[B, 351]`` target adjacency (upper triangle, 0/1).
        offsets: ``[B, 27]`` target free-dof offsets.
        steps: Adam steps (100; 0 returns ``z0``).
        lr: Adam step size (0.01).

    Returns:
        ``[B, t + s + g]`` refined latents (detached).

    Raises:
        ValueError: ``steps`` negative or not an integer, ``lr`` not positive and finite,
            mismatched shapes, or non-finite inputs.
    """
    if not _is_int(steps) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not (math.isfinite(lr)
                                                                        and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    for name, v in (("z0", z0), ("adj", adj), ("offsets", offsets)):
        if not torch.is_tensor(v) or not torch.isfinite(v).all():
            raise ValueError(f"{name} must be a finite tensor (NaN or inf found)")
    if z0.ndim != 2 or z0.shape[1] != model.sizes.total:
        raise ValueError(f"z0 must have shape [B, {model.sizes.total}], got {tuple(z0.shape)}")
    with torch.no_grad():
        shapes = tuple(tuple(o.shape) for o in model.decode(z0))
    if (tuple(adj.shape), tuple(offsets.shape)) != shapes:
        raise ValueError(f"adj and offsets must have the decoder's shapes {shapes[0]} and "
                         f"{shapes[1]}, got {tuple(adj.shape)} and {tuple(offsets.shape)}")
    z = z0.detach().clone()
    if steps == 0:
        return z
    adj, offsets = adj.to(z.dtype), offsets.to(z.dtype)
    was_training = model.training
    model.eval()
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        z.requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr)
        with torch.enable_grad():
            for _ in range(steps):
                logits, off = model.decode(z)
                bce = F.binary_cross_entropy_with_logits(logits, adj, reduction="none")
                loss = bce.sum() + model.offset_weight * ((off - offsets) ** 2).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
        model.train(was_training)
    return z.detach()


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def check_model_config(cfg: dict) -> None:
    """Types and ranges of the ``model`` section; ``ValueError`` naming the key."""
    for key in ("topology", "shared", "geometry"):
        if key in cfg and not _is_int(cfg[key]):  # the range is LatentSizes' check
            raise ValueError(f"model.{key} must be an integer latent size, got {cfg[key]!r}")
    for key in ("hidden", "layers", "readout", "num_targets"):
        if key in cfg and not (_is_int(cfg[key]) and cfg[key] >= 1):
            raise ValueError(f"model.{key} must be a positive integer, got {cfg[key]!r}")
    for key in ("mlp_hidden", "decoder_hidden", "offset_hidden", "predictor_hidden"):
        if key in cfg and not (isinstance(cfg[key], (list, tuple)) and
                               all(_is_int(v) and v >= 1 for v in cfg[key])):
            raise ValueError(f"model.{key} must be a list of positive integers (layer "
                             f"widths), got {cfg[key]!r}")
    for key in ("predictor_gnn_hidden", "predictor_gnn_layers", "predictor_gnn_readout"):
        if key in cfg and not (_is_int(cfg[key]) and cfg[key] >= 1):
            raise ValueError(f"model.{key} must be a positive integer, got {cfg[key]!r}")
    p = cfg.get("predictor_dropout", 0.0)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"model.predictor_dropout must be a probability in [0, 1), got {p!r}")
    inp = cfg.get("predictor_input", "latent")
    if inp not in PREDICTOR_INPUTS:
        raise ValueError(f"model.predictor_input must be one of {list(PREDICTOR_INPUTS)}, got "
                         f"{inp!r}")
    gnn_keys = sorted(k for k in cfg if k.startswith("predictor_gnn_")
                      or k == "predictor_dropout")
    if inp == "latent" and gnn_keys:
        raise ValueError(f"model.{gnn_keys[0]} sets up the GNN predictor of "
                         f"model.predictor_input 'decoded'; this config predicts from the "
                         f"latent")
    if inp == "decoded" and "predictor_hidden" in cfg:
        raise ValueError("model.predictor_hidden sizes the latent MLP predictor; with "
                         "model.predictor_input 'decoded' use predictor_gnn_hidden, "
                         "predictor_gnn_layers and predictor_gnn_readout")
    for key in ("edge_readout", "physics_readout"):
        if not isinstance(cfg.get(key, False), bool):
            raise ValueError(f"model.{key} must be true or false, got {cfg[key]!r}")
    feat = cfg.get("predictor_features")
    if feat is not None:
        if feat not in PREDICTOR_FEATURES:
            raise ValueError(f"model.predictor_features must be one of "
                             f"{sorted(PREDICTOR_FEATURES)} or null, got {feat!r}")
        if inp != "decoded" or cfg.get("num_targets", 9) != 13:
            raise ValueError(f"model.predictor_features {feat!r} feeds the buckling of the "
                             f"lattice to a curve predictor: it needs model.predictor_input "
                             f"'decoded' and model.num_targets 13")
    w = cfg.get("offset_weight", 1.0)
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not (w >= 0 and
                                                                      math.isfinite(w)):
        raise ValueError(f"model.offset_weight must be a finite non-negative number, got {w!r}")


def build_model(cfg: dict) -> TrussVAE:
    """A :class:`TrussVAE` from the ``model`` section of a config (see ``configs/``)."""
    if not isinstance(cfg, dict):
        raise ValueError(f"model config must be a mapping, got {cfg!r}")
    unknown = set(cfg) - MODEL_KEYS
    if unknown:
        raise ValueError(f"unknown model config keys {sorted(unknown)}; allowed: "
                         f"{sorted(MODEL_KEYS)}")
    check_model_config(cfg)
    c = {**MODEL_DEFAULTS, **cfg}
    sizes = LatentSizes.from_config(c)
    kind = c["encoder"]
    if kind == "gnn":
        enc = TrussGNNEncoder(sizes.d_topology, sizes.d_geometry, hidden=c["hidden"],
                              layers=c["layers"], readout=c["readout"],
                              edge_readout=c["edge_readout"],
                              physics_readout=c["physics_readout"])
    elif kind == "mlp":
        if c["physics_readout"]:
            raise ValueError("model.physics_readout needs the GNN encoder (model.encoder: gnn); "
                             "the MLP baseline reads the flattened adjacency and offsets only")
        enc = MLPEncoder(sizes.d_topology, sizes.d_geometry, hidden=tuple(c["mlp_hidden"]))
    else:
        raise ValueError(f"model.encoder must be 'gnn' or 'mlp', got {kind!r}")
    inp = c["predictor_input"]
    if inp == "decoded":
        predictor = GraphPropertyPredictor(c["num_targets"], hidden=c["predictor_gnn_hidden"],
                                           layers=c["predictor_gnn_layers"],
                                           readout=c["predictor_gnn_readout"],
                                           num_features=PREDICTOR_FEATURES.get(
                                               c["predictor_features"], 0),
                                           dropout=c["predictor_dropout"])
    else:
        predictor = PropertyPredictor(sizes.total, c["num_targets"],
                                      tuple(c["predictor_hidden"]))
    return TrussVAE(
        enc,
        AdjacencyDecoder(sizes.d_topology, tuple(c["decoder_hidden"])),
        OffsetDecoder(sizes.d_geometry, tuple(c["offset_hidden"])),
        predictor, sizes, offset_weight=c["offset_weight"], predictor_input=inp)
