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
"""
from __future__ import annotations

import torch
from torch import nn

from .encoder import TrussGNNEncoder, mlp

__all__ = ["PropertyPredictor", "GraphPropertyPredictor", "PREDICTOR_INPUTS"]

#: Values of ``model.predictor_input``.
PREDICTOR_INPUTS = ("latent", "decoded")


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
    """

    def __init__(self, num_targets: int, hidden: int = 64, layers: int = 4, readout: int = 512,
                 edge_readout: bool = True, physics_readout: bool = True):
        super().__init__(1, 1, hidden=hidden, layers=layers, readout=readout,
                         edge_readout=edge_readout, physics_readout=physics_readout)
        self.heads = nn.Linear(readout, num_targets)
        self.num_targets = int(num_targets)
