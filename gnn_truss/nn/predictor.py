r"""Property predictors :math:`\mathcal{F}_\omega(\mu)`: latent mean -> normalised targets
(the 9 stiffness components, or the 13-point compression curve).

Two kinds, chosen by ``model.predictor_input``:

* ``"latent"`` (the paper's): :class:`PropertyPredictor`, an MLP on :math:`\mu` itself.
* ``"decoded"``: :class:`GraphPropertyPredictor`, a GNN that reads the *lattice* decoded from
  :math:`\mu`, :math:`\mathcal{F}(\mu) = G(\mathrm{dec}(\mu))`
  (:meth:`~gnn_truss.nn.vae.TrussVAE.predict`; the adjacency thresholded at logit 0 with a
  straight-through gradient, so it stays differentiable in :math:`\mu` for inverse design).
  ``G`` is a surrogate of the finite-element homogenisation of a lattice; it does not see the
  latent, so the property information does not have to pass the 48-number bottleneck (on the
  shipped corpus a GNN on the lattice reaches a stiffness :math:`R^2` of 0.95-0.97 where the
  MLP on :math:`\mu` stops at 0.89-0.94: ``datasets/checkpoints/default/probes/``).

A curve predictor of the second kind can also read numbers computed for the lattice it reads
(``model.predictor_features: buckling``, ``num_features`` here): the linearised buckling of the
cell, :func:`gnn_truss.fe.buckling.buckling_descriptors`. A branch on the readout and the
standardised numbers adds its output to the linear head; its last layer starts at zero, so a
predictor warm-started from one without the branch starts from that one's function. The
curve's knee is set by the cell's buckling, which the curves alone teach the GNN poorly
(``datasets/checkpoints/nonlinear/probes/README.md``).

:class:`PredictorEnsemble` averages several trained predictors of the same kind, each with its
own target normalisation, in physical units (inverse design with ``gnn-truss design
--ensemble``: an optimiser that exploits one predictor's errors meets the others').
"""
from __future__ import annotations

import torch
from torch import nn

from .encoder import TrussGNNEncoder, mlp

__all__ = ["PropertyPredictor", "GraphPropertyPredictor", "FeatureBranch", "PredictorEnsemble",
           "PREDICTOR_INPUTS", "PREDICTOR_FEATURES"]

#: Values of ``model.predictor_input``.
PREDICTOR_INPUTS = ("latent", "decoded")
#: Values of ``model.predictor_features`` (beside ``None``) and the number of inputs each adds.
PREDICTOR_FEATURES = {"buckling": 5}


class PropertyPredictor(nn.Module):
    """``mu [B, d] -> y [B, num_targets]``.

    Args:
        d_in: latent size.
        num_targets: 9 (stiffness) or 13 (curve).
        hidden: hidden widths (default ``(256, 256, 256)``).
    """

    def __init__(self, d_in: int, num_targets: int, hidden=(256, 256, 256)):
        super().__init__()
        self.net = mlp([d_in, *hidden, num_targets])
        self.num_targets = int(num_targets)

    def forward(self, mu: torch.Tensor) -> torch.Tensor:
        return self.net(mu)


class GraphPropertyPredictor(TrussGNNEncoder):
    """A lattice -> normalised targets ``[B, num_targets]``: the body of
    :class:`~gnn_truss.nn.encoder.TrussGNNEncoder` (GINE message passing, the 27 node
    embeddings, optionally the adjacency and the physics features, a readout MLP) with a
    linear head.

    ``forward(batch)`` reads a PyG batch of truss graphs; ``forward_dense(adj, offsets)``
    (inherited: the heads, here the linear head, on :meth:`dense_embedding`) a dense, possibly
    soft lattice (``adj [B, 27, 27]`` or ``[B, 351]`` in ``[0, 1]``, free-dof
    ``offsets [B, 27]`` zeroed on unused nodes), differentiably; the two agree on binary
    valid lattices.

    Args:
        num_targets: 9 (stiffness) or 13 (curve).
        hidden, layers, readout, edge_readout, physics_readout: as
            :class:`~gnn_truss.nn.encoder.TrussGNNEncoder` (defaults 64, 4, 512, True, True;
            :func:`~gnn_truss.nn.vae.build_model` sets the first three from
            ``model.predictor_gnn_hidden``, ``_layers`` and ``_readout`` and always reads the
            adjacency and the physics features, whatever the encoder's ``edge_readout`` and
            ``physics_readout``).
        num_features: lattice features read by a :class:`FeatureBranch` (0: none).
        dropout: dropout probability on the readout ``[B, readout]`` before the head and the
            feature branch, in training only (``model.predictor_dropout``, default 0). It adds
            no parameters, so a predictor warm-started from one without it starts from that
            one's function.
    """

    def __init__(self, num_targets: int, hidden: int = 64, layers: int = 4, readout: int = 512,
                 edge_readout: bool = True, physics_readout: bool = True,
                 num_features: int = 0, dropout: float = 0.0):
        super().__init__(1, 1, hidden=hidden, layers=layers, readout=readout,
                         edge_readout=edge_readout, physics_readout=physics_readout)
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.dropout = nn.Dropout(float(dropout)) if dropout else None
        self.heads = nn.Linear(readout, num_targets)
        self.num_targets = int(num_targets)
        self.num_features = int(num_features)
        self.features = None
        if self.num_features:
            self.features = FeatureBranch(readout, self.num_features, num_targets)

    def forward(self, batch, features: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, num_targets]`` for a PyG batch; a predictor with ``num_features`` reads
        ``features`` or else the batch's ``feat [B, num_features]``."""
        if features is None and self.num_features:
            features = getattr(batch, "feat", None)
        return self._head(self.graph_embedding(batch), features)

    def forward_dense(self, adj: torch.Tensor, offsets: torch.Tensor,
                      features: torch.Tensor | None = None, all_pairs: bool = False
                      ) -> torch.Tensor:
        """``[B, num_targets]`` for dense lattices (``adj [B, 27, 27]`` or ``[B, 351]``,
        ``offsets [B, 27]``, as :meth:`dense_embedding`); ``features [B, num_features]`` (raw,
        not standardised; not differentiated) for a predictor that reads them."""
        return self._head(self.dense_embedding(adj, offsets, all_pairs), features)

    def _head(self, h: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        if self.dropout is not None:
            h = self.dropout(h)
        y = self.heads(h)
        if not self.num_features:
            if features is not None:
                raise ValueError("this predictor reads no lattice features "
                                 "(model.predictor_features is not set)")
            return y
        if features is None:
            raise ValueError(f"this predictor reads {self.num_features} features of each "
                             f"lattice (model.predictor_features); pass features=, e.g. "
                             f"gnn_truss.fe.buckling.lattice_descriptors(trusses)")
        return y + self.features(h, features)


class FeatureBranch(nn.Module):
    """``(h [B, width], f [B, num_features]) -> [B, num_targets]``, added to a predictor's
    linear head.

    ``f`` are raw features; they are standardised with the buffers ``mean`` and ``std``
    (:meth:`set_normalization`, from the training split; saved with the weights). A lattice with
    a non-finite feature (its analysis failed) gets no contribution: the prediction falls back
    on the linear head alone. The last layer starts at zero.

    Args:
        width: the readout width.
        num_features: features per lattice.
        num_targets: outputs.
        hidden: the width of the two hidden layers (256).
    """

    def __init__(self, width: int, num_features: int, num_targets: int, hidden: int = 256):
        super().__init__()
        self.net = mlp([width + num_features, hidden, hidden, num_targets])
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("std", torch.ones(num_features))

    def set_normalization(self, features) -> None:
        """Set ``mean`` and ``std`` from raw features ``[N, num_features]`` (rows with a
        non-finite entry are left out)."""
        f = torch.as_tensor(features, dtype=torch.float64)
        f = f[torch.isfinite(f).all(-1)]
        if len(f) < 2:
            raise ValueError("need at least two lattices with finite features to standardise "
                             "them")
        std = f.std(0)
        if not bool((std > 0).all()):
            raise ValueError("a feature is constant over the training lattices")
        self.mean.copy_(f.mean(0).to(self.mean))
        self.std.copy_(std.to(self.std))

    def forward(self, h: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        f = torch.as_tensor(features, device=h.device).to(h.dtype).detach()
        if f.shape != (h.shape[0], len(self.mean)):
            raise ValueError(f"need features [{h.shape[0]}, {len(self.mean)}], got "
                             f"{tuple(f.shape)}")
        ok = torch.isfinite(f).all(-1, keepdim=True)
        f = torch.where(ok, (f - self.mean) / self.std, torch.zeros_like(f))
        return self.net(torch.cat([h, f], dim=-1)) * ok.to(h.dtype)


class PredictorEnsemble(nn.Module):
    """Several predictors of one kind read as one: the mean of their physical predictions,
    returned normalised by the first member's normaliser.

    ``y = T_0(mean_m T_m^-1(P_m(x)))``, with ``P_m`` the members and ``T_m`` their
    :class:`~gnn_truss.dataset.TargetNormalizer` (asinh transforms, so the mean is taken in
    physical units, not in each member's normalised space). Differentiable in the input like
    the members; ``forward`` and ``forward_dense`` pass their arguments (a latent, a PyG batch,
    a dense lattice, lattice features) to every member unchanged.

    Args:
        members: predictors (:class:`PropertyPredictor` or :class:`GraphPropertyPredictor`),
            all with the same ``num_targets`` and ``num_features``; the first one's normaliser
            is the ensemble's.
        normalizers: one :class:`~gnn_truss.dataset.TargetNormalizer` per member.

    Raises:
        ValueError: fewer than one member, a normaliser count that does not match, or members
            that predict different targets or read different features.
    """

    def __init__(self, members, normalizers):
        super().__init__()
        members, normalizers = list(members), list(normalizers)
        if not members or len(members) != len(normalizers):
            raise ValueError(f"need one normaliser per member and at least one member, got "
                             f"{len(members)} members and {len(normalizers)} normalisers")
        kinds = {(type(m).__name__, int(m.num_targets), int(getattr(m, "num_features", 0)))
                 for m in members}
        if len(kinds) != 1:
            raise ValueError(f"ensemble members must be predictors of one kind with the same "
                             f"targets and lattice features, got {sorted(kinds)}")
        widths = {len(n.mean) for n in normalizers}
        if widths != {members[0].num_targets}:
            raise ValueError(f"normalisers of {sorted(widths)} components for predictors of "
                             f"{members[0].num_targets} targets")
        self.members = nn.ModuleList(members)
        self.normalizers = normalizers
        self.num_targets = int(members[0].num_targets)
        self.num_features = int(getattr(members[0], "num_features", 0))

    def _mean(self, ys) -> torch.Tensor:
        physical = torch.stack([n.inverse(y) for n, y in zip(self.normalizers, ys)])
        return self.normalizers[0].transform(physical.mean(0))

    def forward(self, *args, **kwargs) -> torch.Tensor:
        """``[B, num_targets]`` normalised as the first member's, for what the members read."""
        return self._mean([m(*args, **kwargs) for m in self.members])

    def forward_dense(self, *args, **kwargs) -> torch.Tensor:
        """``[B, num_targets]`` for dense lattices (graph predictors only)."""
        return self._mean([m.forward_dense(*args, **kwargs) for m in self.members])
