"""Conversion between a :class:`~gnn_truss.truss.Truss` and a PyG graph.

One lattice is one :class:`torch_geometric.data.Data` with exactly 27 nodes in the canonical
design-space order (``SPEC.md`` section 1), so node ``i`` of every graph is the same candidate
node and graph-level tensors line up across a batch.

Fields (``E`` = number of beams, each stored in both directions):

================  ==========  ============  ===============================================
field             shape       dtype         content
================  ==========  ============  ===============================================
``x``             ``[27,14]`` float32       node features, columns :data:`NODE_FEATURES`
``pos``           ``[27,3]``  float32       node positions ``grid + offset`` (octant units)
``edge_index``    ``[2,2E]``  int64         both directions, coalesced (sorted by row, col)
``edge_attr``     ``[2E,4]``  float32       length, unit direction source -> target
``adj``           ``[1,351]`` float32       off-diagonal upper triangle of the adjacency
                                            (row-major, ``design_space.TRIU_I/TRIU_J``)
``offset``        ``[1,27]``  float32       free-dof offsets (``design_space`` dof order)
``offset64``      ``[1,27]``  float64       the same offsets, exact
``stiffness``     ``[1,9]``   float32       (C11,C12,C13,C22,C23,C33,C44,C55,C66), units of
                                            E_s; NaN when unknown
``curve``         ``[1,13]``  float32       nominal compressive stress at 0.5 %, 2.5 %, ...,
                                            24.5 % strain, units of E_s; NaN when unknown
``num_nodes``     ``27``
================  ==========  ============  ===============================================

Precision. Models read the float32 fields. A :class:`Truss` stores float64 offsets, which float32
cannot hold exactly, so :func:`truss_to_data` also stores ``offset64``; :func:`data_to_truss`
reads ``offset64`` when present (after checking it agrees with ``offset`` to float32 precision,
so a stale copy is caught) and falls back to ``offset`` otherwise, e.g. for a graph built by a
decoder. The adjacency is binary and exact in float32. Round trips
``data_to_truss(truss_to_data(t)) == t`` are therefore exact.

Graph-level fields have a leading dimension of 1, so PyG batching concatenates them into
``[B, ...]`` (``adj`` ``[B, 351]``, ``stiffness`` ``[B, 9]``, ...); :func:`batch_to_trusses`
splits such a batch back into trusses.
"""
from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data
from torch_geometric.utils import coalesce

from . import design_space as ds
from .truss import Truss

__all__ = [
    "NODE_FEATURES", "NUM_NODE_FEATURES", "FEATURE_SLICES", "EDGE_FEATURES",
    "NUM_EDGE_FEATURES", "NUM_STIFFNESS", "NUM_CURVE", "truss_to_data", "data_to_truss",
    "batch_to_trusses", "collated_graphs",
]

#: Column slices of the node feature matrix ``x``, by group.
FEATURE_SLICES: dict[str, slice] = {
    "grid": slice(0, 3),        # grid position (x, y, z) in {0, 0.5, 1}
    "type": slice(3, 7),        # one-hot vertex / edge / face / body
    "offset": slice(7, 10),     # offset (x, y, z), zero on fixed dofs
    "free": slice(10, 13),      # 1 where the coordinate is a free dof
    "used": slice(13, 14),      # 1 where the node has at least one beam
}

#: Names of the 14 columns of ``x``.
NODE_FEATURES: tuple[str, ...] = (
    "grid_x", "grid_y", "grid_z", *(f"type_{t}" for t in ds.NODE_TYPES),
    "offset_x", "offset_y", "offset_z", "free_x", "free_y", "free_z", "used",
)
NUM_NODE_FEATURES = len(NODE_FEATURES)

#: Names of the 4 columns of ``edge_attr``.
EDGE_FEATURES: tuple[str, ...] = ("length", "dir_x", "dir_y", "dir_z")
NUM_EDGE_FEATURES = len(EDGE_FEATURES)

NUM_STIFFNESS = 9   # (C11, C12, C13, C22, C23, C33, C44, C55, C66)
NUM_CURVE = 13      # sigma(0.5 %), sigma(2.5 %), ..., sigma(24.5 %)


def _graph_vector(value, size: int, name: str) -> torch.Tensor:
    """``[1, size]`` float32 from ``None`` (all NaN) or anything with ``size`` entries."""
    if value is None:
        return torch.full((1, size), float("nan"))
    arr = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value,
                     dtype=np.float64)
    if arr.shape not in ((size,), (1, size)):
        raise ValueError(f"{name} must have shape ({size},) or (1, {size}), got {arr.shape}")
    if np.any(np.isinf(arr)):
        raise ValueError(f"{name} contains inf (use NaN for unknown values)")
    return torch.from_numpy(arr.reshape(1, size)).float()


def _node_features(offsets: np.ndarray, used: np.ndarray) -> np.ndarray:
    """``[..., 27, 14]`` node features from ``[..., 27, 3]`` offsets and ``[..., 27]`` used
    flags (columns :data:`NODE_FEATURES`)."""
    x = np.zeros(offsets.shape[:-1] + (NUM_NODE_FEATURES,))
    x[..., FEATURE_SLICES["grid"]] = ds.NODE_GRID
    x[..., FEATURE_SLICES["type"]] = ds.type_one_hot()
    x[..., FEATURE_SLICES["offset"]] = offsets
    x[..., FEATURE_SLICES["free"]] = ds.FREE_DOF_MASK
    x[..., FEATURE_SLICES["used"]] = used[..., None]
    return x


def _edge_features(d: np.ndarray) -> np.ndarray:
    """``[E, 4]`` (length, unit direction) of ``[E, 3]`` beam vectors (zero direction for a
    zero length)."""
    length = np.linalg.norm(d, axis=1, keepdims=True)
    unit = np.divide(d, length, out=np.zeros_like(d), where=length > 0)
    return np.hstack([length, unit])


def _edge_tensors(truss: Truss) -> tuple[torch.Tensor, torch.Tensor]:
    e = truss.edges
    src = np.concatenate([e[:, 0], e[:, 1]])
    dst = np.concatenate([e[:, 1], e[:, 0]])
    d = truss.positions[dst] - truss.positions[src]
    edge_index = torch.from_numpy(np.stack([src, dst])).long()
    edge_attr = torch.from_numpy(_edge_features(d)).float()
    return coalesce(edge_index, edge_attr, num_nodes=ds.NUM_NODES)


def truss_to_data(truss: Truss, stiffness=None, curve=None) -> Data:
    r"""Graph of one truss, with optional labels.

    Edge features of a beam from node :math:`i` to node :math:`j`:
    :math:`(\lVert p_j - p_i \rVert, (p_j - p_i) / \lVert p_j - p_i \rVert)` (a zero-length
    beam gets a zero direction).

    Args:
        truss: the lattice.
        stiffness: 9 stiffness components (C11, C12, C13, C22, C23, C33, C44, C55, C66) in units
            of the base Young's modulus E_s, shape ``[9]`` or ``[1, 9]``. (default: ``None``,
            stored as NaN)
        curve: 13 nominal compressive stresses at 0.5 %, 2.5 %, ..., 24.5 % strain in units of
            E_s, shape ``[13]`` or ``[1, 13]``. (default: ``None``, stored as NaN)

    Shapes:
        - **output:** ``Data`` with ``x`` :math:`(27, 14)`, ``pos`` :math:`(27, 3)`,
          ``edge_index`` :math:`(2, 2E)`, ``edge_attr`` :math:`(2E, 4)`, ``adj``
          :math:`(1, 351)`, ``offset`` / ``offset64`` :math:`(1, 27)`, ``stiffness``
          :math:`(1, 9)`, ``curve`` :math:`(1, 13)`; see the module docstring.

    Raises:
        ValueError: if ``truss`` is not a :class:`Truss` or a label has the wrong size or
            contains inf.
    """
    if not isinstance(truss, Truss):
        raise ValueError(f"expected a Truss, got {type(truss).__name__}")
    edge_index, edge_attr = _edge_tensors(truss)
    free = truss.free_offsets.reshape(1, ds.NUM_FREE_DOFS)
    return Data(
        x=torch.from_numpy(_node_features(truss.offsets, truss.used)).float(),
        pos=torch.from_numpy(truss.positions).float(),
        edge_index=edge_index,
        edge_attr=edge_attr,
        adj=torch.from_numpy(ds.adjacency_to_triu(truss.adjacency)[None]).float(),
        offset=torch.from_numpy(free).float(),
        offset64=torch.from_numpy(free.copy()).double(),
        stiffness=_graph_vector(stiffness, NUM_STIFFNESS, "stiffness"),
        curve=_graph_vector(curve, NUM_CURVE, "curve"),
        num_nodes=ds.NUM_NODES,
    )


def _graph_matrix(value, n: int, size: int, name: str) -> torch.Tensor:
    """``[n, size]`` float32 labels from ``None`` (all NaN) or an ``[n, size]`` array."""
    if value is None:
        return torch.full((n, size), float("nan"))
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (n, size):
        raise ValueError(f"{name} must have shape ({n}, {size}), got {arr.shape}")
    if np.any(np.isinf(arr)):
        raise ValueError(f"{name} of lattice {int(np.argwhere(np.isinf(arr))[0, 0])} contains "
                         f"inf (use NaN for unknown values)")
    return torch.from_numpy(arr).float()


def _checked_batch(adjacency, offsets) -> tuple[np.ndarray, np.ndarray]:
    """The :class:`Truss` checks and clean-up on ``[N, 27, 27]`` / ``[N, 27, 3]`` arrays at once.

    A lattice that fails a check is handed to :class:`Truss`, whose message is raised with
    the lattice's index in front, so the batch path refuses exactly what the per-lattice path
    refuses, with the same words.
    """
    from .truss import _OFFSET_ATOL
    adj = np.asarray(adjacency)
    if adj.ndim != 3 or adj.shape[1:] != (ds.NUM_NODES, ds.NUM_NODES):
        raise ValueError(f"adjacency must have shape [N, 27, 27], got {adj.shape}")
    n = len(adj)
    if offsets is None:
        offsets = np.zeros((n, ds.NUM_NODES, 3))
    off = np.asarray(offsets, dtype=np.float64)
    if off.shape == (n, ds.NUM_FREE_DOFS):
        off = ds.unpack_offsets(off)
    if off.shape != (n, ds.NUM_NODES, 3):
        raise ValueError(f"offsets must have shape [{n}, 27, 3] or [{n}, 27] free dofs, got "
                         f"{off.shape}")
    if adj.dtype == bool:
        adj = adj.astype(np.uint8)
    if not np.issubdtype(adj.dtype, np.number):
        raise ValueError(f"adjacency must be numeric, got dtype {adj.dtype}")
    with np.errstate(invalid="ignore"):
        bad = (~((adj == 0) | (adj == 1))).any(axis=(1, 2))
        bad |= (adj != adj.transpose(0, 2, 1)).any(axis=(1, 2))
        bad |= ~np.isfinite(off).all(axis=(1, 2))
        bad |= ((~ds.FREE_DOF_MASK) & (np.abs(off) > _OFFSET_ATOL)).any(axis=(1, 2))
        bad |= (np.abs(off) > 0.5 + _OFFSET_ATOL).any(axis=(1, 2))
    if bad.any():
        b = int(np.argmax(bad))
        try:
            Truss(adj[b], off[b])
        except ValueError as exc:
            raise ValueError(f"lattice {b}: {exc}") from None
        raise AssertionError(f"lattice {b} failed a batch check that Truss accepts")
    adj = adj.astype(np.uint8)  # a copy
    adj[:, np.arange(ds.NUM_NODES), np.arange(ds.NUM_NODES)] = 0
    off = np.where(ds.FREE_DOF_MASK, np.clip(off, -0.5, 0.5), 0.0)
    return adj, off


def collated_graphs(adjacency, offsets, stiffness=None, curve=None) -> tuple[Data, dict]:
    """The graphs of ``N`` lattices built at once, collated as PyG's ``InMemoryDataset`` stores
    them.

    Equal, tensor for tensor, to ``InMemoryDataset.collate([truss_to_data(Truss(adjacency[i],
    offsets[i]), stiffness[i], curve[i]) for i in range(N)])`` (tested bit for bit), without
    the Python loop: building a 200,000-lattice dataset this way takes seconds, not minutes.
    Input checks are those of :class:`Truss`, the first bad lattice named by its index.

    Args:
        adjacency: ``[N, 27, 27]`` symmetric binary adjacency matrices (diagonal ignored).
        offsets: ``[N, 27, 3]`` offsets (zero on fixed dofs) or ``[N, 27]`` free-dof offsets,
            in ``[-0.5, 0.5]``; ``None``: zeros.
        stiffness: ``[N, 9]`` labels in units of E_s, or ``None`` (NaN).
        curve: ``[N, 13]`` labels in units of E_s, or ``None`` (NaN).

    Returns:
        ``(data, slices)``: one ``Data`` holding the concatenated fields of the module
        docstring (``x`` ``[27N, 14]``, ``edge_index`` ``[2, 2E_total]`` with node indices
        local to each graph, as ``InMemoryDataset`` keeps them, ...) and the ``[N + 1]`` offsets
        of each field's graphs.

    Raises:
        ValueError: wrong shapes, a malformed adjacency or offsets (naming the lattice), inf
            labels.
    """
    adj, off = _checked_batch(adjacency, offsets)
    n = len(adj)
    stiff = _graph_matrix(stiffness, n, NUM_STIFFNESS, "stiffness")
    crv = _graph_matrix(curve, n, NUM_CURVE, "curve")
    pos = ds.NODE_GRID + off                                     # [N, 27, 3]
    x = _node_features(off, adj.any(axis=2))                     # [N, 27, 14]
    # both directions of every beam, sorted by (graph, source, target): the coalesced order
    g, src, dst = np.nonzero(adj)
    counts = np.bincount(g, minlength=n)
    edge_slices = torch.from_numpy(np.concatenate([[0], np.cumsum(counts)])).long()
    node_slices = torch.arange(0, ds.NUM_NODES * (n + 1), ds.NUM_NODES)
    row_slices = torch.arange(n + 1)
    free = ds.pack_offsets(off)
    data = Data(
        x=torch.from_numpy(x.reshape(-1, NUM_NODE_FEATURES)).float(),
        edge_index=torch.from_numpy(np.stack([src, dst])).long(),
        edge_attr=torch.from_numpy(_edge_features(pos[g, dst] - pos[g, src])).float(),
        pos=torch.from_numpy(pos.reshape(-1, 3)).float(),
        adj=torch.from_numpy(ds.adjacency_to_triu(adj)).float(),
        offset=torch.from_numpy(free).float(),
        offset64=torch.from_numpy(free.copy()).double(),
        stiffness=stiff,
        curve=crv,
        num_nodes=ds.NUM_NODES * n,
    )
    data._num_nodes = [ds.NUM_NODES] * n
    slices = {"x": node_slices, "edge_index": edge_slices, "edge_attr": edge_slices.clone(),
              "pos": node_slices.clone(), "adj": row_slices, "offset": row_slices.clone(),
              "offset64": row_slices.clone(), "stiffness": row_slices.clone(),
              "curve": row_slices.clone()}
    return data, slices


def _graph_rows(data, key: str, width: int, required: bool) -> np.ndarray | None:
    """``[B, width]`` float64 array of a graph-level field (``[width]`` is read as one row)."""
    value = getattr(data, key, None)
    if value is None:
        if required:
            raise ValueError(f"graph has no '{key}' field (expected shape [B, {width}])")
        return None
    if not isinstance(value, torch.Tensor):
        value = torch.as_tensor(np.asarray(value))
    arr = value.detach().cpu().double().numpy()
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != width:
        raise ValueError(f"'{key}' must have shape [B, {width}] (or [{width}]), got "
                         f"{tuple(value.shape)}")
    return arr


def _check_nodes(data, num_graphs: int) -> None:
    x = getattr(data, "x", None)
    if x is not None and tuple(x.shape) != (num_graphs * ds.NUM_NODES, NUM_NODE_FEATURES):
        raise ValueError(f"'x' must have shape [{num_graphs * ds.NUM_NODES}, "
                         f"{NUM_NODE_FEATURES}] for {num_graphs} graph(s) of 27 nodes, got "
                         f"{tuple(x.shape)}")


def _read_trusses(data) -> list[Truss]:
    adj = _graph_rows(data, "adj", ds.NUM_PAIRS, required=True)
    off32 = _graph_rows(data, "offset", ds.NUM_FREE_DOFS, required=False)
    off64 = _graph_rows(data, "offset64", ds.NUM_FREE_DOFS, required=False)
    if off32 is None and off64 is None:
        raise ValueError(f"graph has neither 'offset' nor 'offset64' (expected shape "
                         f"[B, {ds.NUM_FREE_DOFS}])")
    rows = [len(a) for a in (adj, off32, off64) if a is not None]
    if len(set(rows)) != 1:
        raise ValueError(f"'adj', 'offset' and 'offset64' disagree on the number of graphs: "
                         f"{rows}")
    if off32 is not None and off64 is not None:
        stale = off64.astype(np.float32) != off32.astype(np.float32)
        if np.any(stale):
            b, k = np.argwhere(stale)[0]
            raise ValueError(f"'offset64' disagrees with 'offset' (graph {b}, free dof {k}: "
                             f"{off64[b, k]:g} vs {off32[b, k]:g}); drop the stale one")
    _check_nodes(data, rows[0])
    off = off64 if off64 is not None else off32
    return [Truss(ds.triu_to_adjacency(a), o) for a, o in zip(adj, off)]


def data_to_truss(data: Data) -> Truss:
    """The truss of one graph, read from its ``adj`` and ``offset64`` (or ``offset``) fields.

    Args:
        data: a graph as made by :func:`truss_to_data` (other fields are ignored apart from a
            shape check of ``x``).

    Shapes:
        - **input:** ``adj`` :math:`(1, 351)` or :math:`(351,)`, binary; ``offset64`` or
          ``offset`` :math:`(1, 27)` or :math:`(27,)`.
        - **output:** :class:`Truss`.

    Raises:
        ValueError: if ``adj`` is missing, a field has the wrong shape, ``offset64`` and
            ``offset`` disagree, the graph holds more than one lattice, or the values do not
            make a :class:`Truss` (non-binary adjacency, offsets out of range).
    """
    trusses = _read_trusses(data)
    if len(trusses) != 1:
        raise ValueError(f"expected one graph, got {len(trusses)}; use batch_to_trusses")
    return trusses[0]


def batch_to_trusses(batch) -> list[Truss]:
    """Split a PyG :class:`~torch_geometric.data.Batch` of truss graphs into trusses.

    Args:
        batch: a batch of graphs made by :func:`truss_to_data` (a single ``Data`` gives a list of
            one).

    Shapes:
        - **input:** ``adj`` :math:`(B, 351)`, ``offset64`` or ``offset`` :math:`(B, 27)`.
        - **output:** list of ``B`` :class:`Truss`, in batch order.

    Raises:
        ValueError: as :func:`data_to_truss`, or if the number of rows disagrees with
            ``batch.num_graphs``.
    """
    trusses = _read_trusses(batch)
    num_graphs = getattr(batch, "num_graphs", None) if hasattr(batch, "ptr") else None
    if num_graphs is not None and num_graphs != len(trusses):
        raise ValueError(f"batch has {num_graphs} graphs but 'adj' has {len(trusses)} rows")
    return trusses
