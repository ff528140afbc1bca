r"""Encoders: truss graph -> topology and geometry posteriors.

Both encoders end in the same two heads (Zheng et al. 2023, attributed embedding): a
*topology* head giving :math:`(\mu_A, \log\sigma_A) \in \mathbb{R}^{d_A}` and a *geometry*
head giving :math:`(\mu_x, \log\sigma_x) \in \mathbb{R}^{d_x}`; :class:`~gnn_truss.nn.vae.TrussVAE`
merges them into the partially overlapping latent.

* :class:`TrussGNNEncoder` - message passing over the beams of the truss graph (GINE layers,
  Hu et al. 2020: :math:`h_i' = \mathrm{MLP}((1+\epsilon) h_i + \sum_{j \in N(i)}
  \mathrm{ReLU}(h_j + W e_{ij}))`) on the node features and edge features (length, direction)
  of :func:`gnn_truss.graph.truss_to_data`; since every lattice has the same 27 candidate nodes
  in the same order, the readout concatenates the 27 node embeddings (node identity is kept).
* :class:`MLPEncoder` - the paper's baseline: an MLP on the flattened upper-triangle adjacency
  (351) and free-dof offsets (27).

Shapes: input a PyG batch of ``B`` lattices (``x [27B, 14]``, ``edge_index [2, E]``,
``edge_attr [E, 4]``, ``adj [B, 351]``, ``offset [B, 27]``); output four ``[B, d]`` tensors.
"""
from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import GINEConv

from ..design_space import NUM_FREE_DOFS, NUM_NODES, NUM_PAIRS
from ..graph import NUM_EDGE_FEATURES, NUM_NODE_FEATURES

__all__ = ["mlp", "TrussGNNEncoder", "MLPEncoder", "PosteriorHeads"]


def mlp(sizes: list[int], act=nn.SiLU, final_act: bool = False) -> nn.Sequential:
    """Fully connected stack ``sizes[0] -> ... -> sizes[-1]`` with ``act`` between layers."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_act:
            layers.append(act())
    return nn.Sequential(*layers)


class PosteriorHeads(nn.Module):
    """Topology and geometry heads: ``h [B, H] -> (mu_A, logsig_A, mu_x, logsig_x)``."""

    def __init__(self, hidden: int, d_topology: int, d_geometry: int):
        super().__init__()
        self.topology = nn.Linear(hidden, 2 * d_topology)
        self.geometry = nn.Linear(hidden, 2 * d_geometry)

    def forward(self, h: torch.Tensor):
        mu_a, logsig_a = self.topology(h).chunk(2, dim=-1)
        mu_x, logsig_x = self.geometry(h).chunk(2, dim=-1)
        return mu_a, logsig_a, mu_x, logsig_x


class TrussGNNEncoder(nn.Module):
    """Message-passing encoder over the truss graph.

    Args:
        d_topology, d_geometry: sizes of the two heads (``d_A``, ``d_x``).
        hidden: node embedding width (64).
        layers: GINE layers (4).
        readout: width of the graph embedding (512).
    """

    def __init__(self, d_topology: int, d_geometry: int, hidden: int = 64, layers: int = 4,
                 readout: int = 512):
        super().__init__()
        self.embed = mlp([NUM_NODE_FEATURES, hidden, hidden])
        self.convs = nn.ModuleList(
            GINEConv(mlp([hidden, hidden, hidden]), train_eps=True, edge_dim=NUM_EDGE_FEATURES)
            for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.readout = mlp([NUM_NODES * hidden, readout, readout], final_act=True)
        self.heads = PosteriorHeads(readout, d_topology, d_geometry)
        self.hidden = hidden

    def forward(self, batch):
        h = self.embed(batch.x)
        for conv, norm in zip(self.convs, self.norms):
            h = h + conv(norm(h), batch.edge_index, batch.edge_attr)
        z = h.view(batch.num_graphs, -1)  # the 27 nodes in canonical order
        return self.heads(self.readout(z))


class MLPEncoder(nn.Module):
    """The paper's baseline encoder on the flattened adjacency and offsets.

    Args:
        d_topology, d_geometry: head sizes.
        hidden: widths of the hidden layers (default ``(512, 512)``).
    """

    def __init__(self, d_topology: int, d_geometry: int, hidden=(512, 512)):
        super().__init__()
        self.body = mlp([NUM_PAIRS + NUM_FREE_DOFS, *hidden], final_act=True)
        self.heads = PosteriorHeads(hidden[-1], d_topology, d_geometry)

    def forward(self, batch):
        return self.heads(self.body(torch.cat([batch.adj, batch.offset], dim=-1)))
