r"""Encoders: truss graph -> topology and geometry posteriors.

Both encoders end in the same two heads (Zheng et al. 2023, attributed embedding): a
*topology* head giving :math:`(\mu_A, \log\sigma_A) \in \mathbb{R}^{d_A}` and a *geometry*
head giving :math:`(\mu_x, \log\sigma_x) \in \mathbb{R}^{d_x}`; :class:`~gnn_truss.nn.vae.TrussVAE`
merges them into the partially overlapping latent.

* :class:`TrussGNNEncoder` - message passing over the beams of the truss graph (GINE layers,
  Hu et al. 2020: :math:`h_i' = \mathrm{MLP}((1+\epsilon) h_i + \sum_{j \in N(i)}
  \mathrm{ReLU}(h_j + W e_{ij}))`) on the node features and edge features (length, direction)
  of :func:`gnn_truss.graph.truss_to_data`; since every lattice has the same 27 candidate nodes
  in the same order, the readout concatenates the 27 node embeddings (node identity is kept);
  with ``edge_readout`` it also reads the 351 adjacency entries themselves (a skip connection
  around the message passing, so the topology reaches the heads undiluted), and with
  ``physics_readout`` the stretching fabric of the physical struts
  (:func:`gnn_truss.nn.features.physics_features`, 13 columns, after everything else).
* :class:`MLPEncoder` - the paper's baseline: an MLP on the flattened upper-triangle adjacency
  (351) and free-dof offsets (27).

Shapes: input a PyG batch of ``B`` lattices (``x [27B, 14]``, ``edge_index [2, E]``,
``edge_attr [E, 4]``, ``adj [B, 351]``, ``offset [B, 27]``); output four ``[B, d]`` tensors.

Dense path. Both encoders also have ``forward_dense(adj, offsets)`` on a (possibly soft)
adjacency ``[B, 27, 27]`` or ``[B, 351]`` with entries in ``[0, 1]`` and free-dof offsets
``[B, 27]``. It is differentiable in both arguments, so a lattice decoded from a latent can be
re-encoded inside an autograd graph (inverse design, Zheng et al. 2023, Fig. 2b). For a binary
adjacency it equals ``forward`` on the graph of the same lattice (:func:`dense_node_features`
and :func:`dense_edge_features` rebuild the features of :mod:`gnn_truss.graph`, with the soft
"used" indicator :func:`soft_used`; the GINE layers pass messages along every candidate node
pair, weighted by the adjacency: by default the 316 directed near-neighbour pairs that can be
beams of a valid lattice, :func:`message_pairs`, or all 702 with ``all_pairs=True``).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch_geometric.nn import GINEConv

from .. import design_space as ds
from ..design_space import NUM_FREE_DOFS, NUM_NODES, NUM_PAIRS
from ..graph import FEATURE_SLICES, NUM_EDGE_FEATURES, NUM_NODE_FEATURES
from .features import NUM_PHYSICS_FEATURES, physics_features

__all__ = ["mlp", "readout_blocks", "TrussGNNEncoder", "MLPEncoder", "PosteriorHeads",
           "dense_adjacency_input", "triu_from_dense", "soft_used", "dense_positions", "dense_node_features",
           "message_pairs", "dense_edge_features", "dense_gine"]

_LENGTH_EPS2 = 1e-24  # squared pair distance below which a pair has zero length / direction


def mlp(sizes: list[int], act=nn.SiLU, final_act: bool = False) -> nn.Sequential:
    """Fully connected stack ``sizes[0] -> ... -> sizes[-1]`` with ``act`` between layers."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_act:
            layers.append(act())
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- dense helpers

def dense_adjacency_input(adj: torch.Tensor) -> torch.Tensor:
    """``[B, 351]`` upper triangles or ``[B, 27, 27]`` matrices -> symmetric ``[B, 27, 27]`` with
    zero diagonal (differentiable; a square input is symmetrised as ``(A + A^T) / 2``)."""
    if adj.ndim == 2 and adj.shape[-1] == NUM_PAIRS:
        flat = torch.tensor(ds.TRIU_I * NUM_NODES + ds.TRIU_J, device=adj.device)
        out = adj.new_zeros(adj.shape[0], NUM_NODES * NUM_NODES).index_add(1, flat, adj)
        out = out.view(-1, NUM_NODES, NUM_NODES)
        return out + out.transpose(1, 2)
    if adj.ndim == 3 and tuple(adj.shape[1:]) == (NUM_NODES, NUM_NODES):
        eye = torch.eye(NUM_NODES, dtype=torch.bool, device=adj.device)
        return (0.5 * (adj + adj.transpose(1, 2))).masked_fill(eye, 0.0)
    raise ValueError(f"adjacency must be [B, {NUM_PAIRS}] or [B, 27, 27], got "
                     f"{tuple(adj.shape)}")


def triu_from_dense(adj: torch.Tensor) -> torch.Tensor:
    """``[B, 27, 27]`` -> ``[B, 351]`` off-diagonal upper triangle (row-major)."""
    return adj[:, torch.tensor(ds.TRIU_I, device=adj.device),
               torch.tensor(ds.TRIU_J, device=adj.device)]


def soft_used(adj: torch.Tensor) -> torch.Tensor:
    r"""Soft "node has a beam" indicator :math:`u_i = 1 - \prod_j (1 - A_{ij})`.

    Equals :attr:`Truss.used` for a binary adjacency. Shapes: ``[B, 27, 27] -> [B, 27]``.
    """
    return 1.0 - torch.prod(1.0 - adj, dim=-1)


def _full_offsets(offsets: torch.Tensor) -> torch.Tensor:
    """Free-dof offsets ``[B, 27]`` -> ``[B, 27, 3]`` (zeros on fixed dofs), differentiable."""
    if offsets.ndim != 2 or offsets.shape[-1] != NUM_FREE_DOFS:
        raise ValueError(f"offsets must be [B, {NUM_FREE_DOFS}], got {tuple(offsets.shape)}")
    flat = torch.tensor(ds.FREE_DOF_NODE * 3 + ds.FREE_DOF_AXIS, device=offsets.device)
    out = offsets.new_zeros(offsets.shape[0], NUM_NODES * 3).index_add(1, flat, offsets)
    return out.view(-1, NUM_NODES, 3)


def dense_positions(offsets: torch.Tensor) -> torch.Tensor:
    """Node positions ``grid + offsets`` (octant units): ``[B, 27]`` free-dof offsets ->
    ``[B, 27, 3]`` (as :func:`gnn_truss.design_space.offsets_to_positions`)."""
    full = _full_offsets(offsets)
    return full + torch.tensor(ds.NODE_GRID, dtype=full.dtype, device=full.device)


def dense_node_features(adj: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Node features of :mod:`gnn_truss.graph` (grid, type one-hot, offset, free mask, used)
    with the soft :func:`soft_used` indicator: ``adj [B, 27, 27]``, ``offsets [B, 27]`` ->
    ``[B, 27, 14]``."""
    B = adj.shape[0]
    static = torch.zeros(NUM_NODES, NUM_NODE_FEATURES, dtype=adj.dtype, device=adj.device)
    static[:, FEATURE_SLICES["grid"]] = torch.tensor(ds.NODE_GRID, dtype=adj.dtype)
    static[:, FEATURE_SLICES["type"]] = torch.tensor(ds.type_one_hot(), dtype=adj.dtype)
    static[:, FEATURE_SLICES["free"]] = torch.tensor(ds.FREE_DOF_MASK, dtype=adj.dtype)
    full = _full_offsets(offsets.to(adj.dtype))
    used = soft_used(adj)[..., None]
    o, u = FEATURE_SLICES["offset"], FEATURE_SLICES["used"]
    return torch.cat([static[None, :, :o.start].expand(B, -1, -1), full,
                      static[None, :, o.stop:u.start].expand(B, -1, -1), used], dim=-1)


def message_pairs(all_pairs: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Directed node pairs ``(src, dst)`` the dense encoder passes messages along.

    By default the 316 directions of the 158 near-neighbour pairs
    (:data:`~gnn_truss.design_space.NEAR_NEIGHBOUR_EDGES`): no offsets in ``[-0.5, 0.5]`` bring
    any other pair within ``sqrt(3)/2``, so no other pair can be a beam of a valid lattice.
    ``all_pairs``: all 702 ordered pairs ``i != j``.

    Returns:
        ``src [P]``, ``dst [P]`` int64, sorted by ``(dst, src)``.
    """
    if all_pairs:
        i, j = np.nonzero(~np.eye(NUM_NODES, dtype=bool))
        und = np.stack([i[i < j], j[i < j]], axis=1)
    else:
        und = np.asarray(ds.NEAR_NEIGHBOUR_EDGES)
    src = np.concatenate([und[:, 0], und[:, 1]])
    dst = np.concatenate([und[:, 1], und[:, 0]])
    order = np.lexsort((src, dst))
    return src[order].astype(np.int64), dst[order].astype(np.int64)


def dense_edge_features(offsets: torch.Tensor, src: torch.Tensor,
                        dst: torch.Tensor) -> torch.Tensor:
    r"""Edge features of the messages ``src -> dst``: ``(|p_dst - p_src|, (p_dst - p_src) /
    |p_dst - p_src|)`` as :mod:`gnn_truss.graph` stores them (zero direction at zero length).

    Shapes: ``offsets [B, 27]``, ``src, dst [P]`` -> ``[B, P, 4]``. Differentiable (no NaN
    gradient at coincident nodes).
    """
    p = dense_positions(offsets)
    d = torch.index_select(p, 1, dst) - torch.index_select(p, 1, src)
    d2 = (d * d).sum(-1, keepdim=True)
    nonzero = d2 > _LENGTH_EPS2
    length = torch.sqrt(torch.where(nonzero, d2, torch.ones_like(d2))) * nonzero
    unit = d / torch.where(nonzero, length, torch.ones_like(length)) * nonzero
    return torch.cat([length, unit], dim=-1)


def dense_gine(conv: GINEConv, h: torch.Tensor, weight: torch.Tensor, edge_lin: torch.Tensor,
               src: torch.Tensor) -> torch.Tensor:
    r"""A :class:`~torch_geometric.nn.GINEConv` layer with soft edges:

    .. math::
        h_i' = \mathrm{MLP}\Big((1 + \epsilon) h_i + \sum_j A_{ij}\,
        \mathrm{ReLU}(h_j + W e_{ji} + b)\Big)

    summed over the candidate message pairs ``p = (j -> i)`` (``src -> dst``), with the layer's
    own ``nn``, ``eps`` and ``lin``; for a binary ``A`` it is the sparse layer exactly.

    Shapes: ``h [B, 27, H]``; ``weight [B, 27, P]`` with ``weight[b, i, p] = A_ij`` if pair
    ``p`` ends at ``i`` and 0 otherwise (one batched matrix product aggregates the messages);
    ``edge_lin [B, P, H]`` (``W e_p + b``); ``src [P]`` -> ``[B, 27, H]``.
    """
    msg = (torch.index_select(h, 1, src) + edge_lin).relu_()  # in place: one [B, P, H] pass
    return conv.nn(torch.bmm(weight, msg) + (1 + conv.eps) * h)


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


def readout_blocks(hidden: int, edge_readout: bool = False, physics_readout: bool = False
                   ) -> dict[str, slice]:
    """Column blocks of the GNN readout's input, in order: ``"nodes"`` (the ``27 * hidden``
    node embeddings), then ``"adjacency"`` (351) with ``edge_readout``, then ``"physics"`` (13)
    with ``physics_readout``. Maps block name -> column slice."""
    sizes = [("nodes", NUM_NODES * int(hidden)),
             ("adjacency", NUM_PAIRS if edge_readout else 0),
             ("physics", NUM_PHYSICS_FEATURES if physics_readout else 0)]
    blocks, start = {}, 0
    for name, size in sizes:
        if size:
            blocks[name] = slice(start, start + size)
            start += size
    return blocks


class TrussGNNEncoder(nn.Module):
    """Message-passing encoder over the truss graph.

    Args:
        d_topology, d_geometry: sizes of the two heads (``d_A``, ``d_x``).
        hidden: node embedding width (64).
        layers: GINE layers (4).
        readout: width of the graph embedding (512).
        edge_readout: also feed the upper-triangle adjacency ``[B, 351]`` to the readout,
            after the ``27 * hidden`` node embeddings (default ``False``).
        physics_readout: also feed the ``[B, 13]`` physics features of
            :func:`~gnn_truss.nn.features.physics_features` (stretching fabric and total length
            of the physical struts) to the readout, as its last columns (default ``False``).
    """

    def __init__(self, d_topology: int, d_geometry: int, hidden: int = 64, layers: int = 4,
                 readout: int = 512, edge_readout: bool = False, physics_readout: bool = False):
        super().__init__()
        self.edge_readout = bool(edge_readout)
        self.physics_readout = bool(physics_readout)
        self.embed = mlp([NUM_NODE_FEATURES, hidden, hidden])
        self.convs = nn.ModuleList(
            GINEConv(mlp([hidden, hidden, hidden]), train_eps=True, edge_dim=NUM_EDGE_FEATURES)
            for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        width = max(b.stop for b in readout_blocks(hidden, edge_readout,
                                                   physics_readout).values())
        self.readout = mlp([width, readout, readout], final_act=True)
        self.heads = PosteriorHeads(readout, d_topology, d_geometry)
        self.hidden = hidden

    def forward(self, batch):
        return self.heads(self.graph_embedding(batch))

    def graph_embedding(self, batch) -> torch.Tensor:
        """``[B, readout]`` embedding of each graph of a PyG batch (the heads' input)."""
        h = self.embed(batch.x)
        for conv, norm in zip(self.convs, self.norms):
            h = h + conv(norm(h), batch.edge_index, batch.edge_attr)
        z = h.view(batch.num_graphs, -1)  # the 27 nodes in canonical order
        if self.edge_readout:
            z = torch.cat([z, batch.adj.to(z.dtype)], dim=-1)
        if self.physics_readout:
            z = torch.cat([z, physics_features(batch.adj.to(z.dtype), batch.offset)], dim=-1)
        return self.readout(z)

    def forward_dense(self, adj: torch.Tensor, offsets: torch.Tensor, all_pairs: bool = False):
        """The encoder on a dense, possibly soft lattice (see the module docstring).

        Args:
            adj: ``[B, 27, 27]`` or ``[B, 351]`` edge probabilities in ``[0, 1]``.
            offsets: ``[B, 27]`` free-dof offsets (zero them on unused nodes to match the
                graphs of :func:`gnn_truss.graph.truss_to_data` of decoded lattices).
            all_pairs: pass messages along all 702 ordered node pairs; by default only along
                the 316 that can be beams of a valid lattice (:func:`message_pairs`; 2.3x
                faster), so entries of ``adj`` on other pairs are ignored.

        Returns:
            ``(mu_A, logsig_A, mu_x, logsig_x)`` as :meth:`forward`; equal to it for a binary
            ``adj`` whose beams are all near-neighbour pairs (every valid lattice), or for any
            binary ``adj`` with ``all_pairs``.
        """
        return self.heads(self.dense_embedding(adj, offsets, all_pairs))

    def dense_embedding(self, adj: torch.Tensor, offsets: torch.Tensor,
                        all_pairs: bool = False) -> torch.Tensor:
        """``[B, readout]`` embedding of dense lattices (the heads' input; arguments as
        :meth:`forward_dense`); equal to :meth:`graph_embedding` in the same cases."""
        A = dense_adjacency_input(adj)
        offsets = offsets.to(A.dtype)
        src, dst = (torch.as_tensor(a, device=A.device) for a in message_pairs(all_pairs))
        into = torch.zeros(NUM_NODES, len(src), dtype=A.dtype, device=A.device)
        into[dst, torch.arange(len(src), device=A.device)] = 1.0  # [27, P]: pair p ends at i
        weight = into[None] * A[:, dst, src][:, None, :]  # [B, 27, P]
        h = self.embed(dense_node_features(A, offsets))
        e = dense_edge_features(offsets, src, dst)
        for conv, norm in zip(self.convs, self.norms):
            # W e + b per layer: [B, P, H] (contiguous; one fused [B, P, layers * H] product
            # split into strided views was slower on CPU)
            lin = torch.nn.functional.linear(e, conv.lin.weight, conv.lin.bias)
            h = h + dense_gine(conv, norm(h), weight, lin, src)
        z = h.reshape(h.shape[0], -1)
        if self.edge_readout:
            z = torch.cat([z, triu_from_dense(A)], dim=-1)
        if self.physics_readout:  # the same pairs as the messages
            z = torch.cat([z, physics_features(A, offsets, near_only=not all_pairs)], dim=-1)
        return self.readout(z)


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

    def forward_dense(self, adj: torch.Tensor, offsets: torch.Tensor, all_pairs: bool = True):
        """As :meth:`forward` on ``adj`` (``[B, 27, 27]`` or ``[B, 351]``, entries in
        ``[0, 1]``) and free-dof ``offsets [B, 27]``; differentiable in both. ``all_pairs`` is
        accepted for symmetry with the GNN and ignored (the MLP reads all 351 pairs)."""
        triu = adj if adj.ndim == 2 else triu_from_dense(dense_adjacency_input(adj))
        if triu.shape[-1] != NUM_PAIRS:
            raise ValueError(f"adjacency must be [B, {NUM_PAIRS}] or [B, 27, 27], got "
                             f"{tuple(adj.shape)}")
        return self.heads(self.body(torch.cat([triu, offsets.to(triu.dtype)], dim=-1)))
