"""The octant design space of cube-decomposed truss lattices.

A lattice lives in the cubic cell ``[-1, 1]^3`` (side 2, volume 8) and is defined by its
restriction to one octant ``[0, 1]^3``, mirrored through the planes ``x = 0``, ``y = 0`` and
``z = 0`` (Zheng et al., Nat. Commun. 14, 7563 (2023); ``SPEC.md`` section 1).

The octant carries 27 candidate nodes on the grid ``{0, 0.5, 1}^3`` in the canonical order of
``SPEC.md``: z-layers ``0, 0.5, 1``; inside a layer the (x, y) order is
``(0,0) (.5,0) (1,0) (1,.5) (.5,.5) (0,.5) (0,1) (.5,1) (1,1)``.

A coordinate of a grid node that equals 0 or 1 puts the node on a mirror or periodic plane;
such a coordinate is *fixed*. A coordinate equal to 0.5 is a *free* offset dof: the node may
move along it, ``position = grid + offset`` with ``offset`` in ``[-0.5, 0.5]``. This gives
8 vertex nodes (no free dof), 12 edge nodes (1), 6 face nodes (2) and 1 body node (3): 27 free
offset dofs in all, ordered by node index, then axis ``x, y, z``.

Everything here is a module-level constant or a pure function on arrays; nothing is computed
from user data at import time beyond these 27-node tables.
"""
from __future__ import annotations

import itertools

import numpy as np

__all__ = [
    "NUM_NODES", "NUM_FREE_DOFS", "NUM_PAIRS", "R_MAX", "NODE_TYPES", "NODE_GRID", "NODE_TYPE",
    "FREE_DOF_MASK", "FREE_DOF_NODE", "FREE_DOF_AXIS", "TRIU_I", "TRIU_J", "NEAR_NEIGHBOUR_EDGES",
    "NEAR_NEIGHBOUR_ADJACENCY",
    "ELEMENTARY_LATTICES", "SEED_LATTICES", "node_type_names", "offsets_to_positions",
    "positions_to_offsets", "pack_offsets", "unpack_offsets", "adjacency_to_triu",
    "triu_to_adjacency", "edges_to_adjacency", "adjacency_to_edges", "type_one_hot",
]

NUM_NODES = 27
NUM_FREE_DOFS = 27
NUM_PAIRS = NUM_NODES * (NUM_NODES - 1) // 2  # 351 off-diagonal upper-triangle entries
R_MAX = float(np.sqrt(3.0) / 2.0)  # longest admissible beam (octant side = 1)

#: Node type names; ``NODE_TYPE`` holds an index into this tuple for each of the 27 nodes.
NODE_TYPES = ("vertex", "edge", "face", "body")

_LAYER_XY = [(0, 0), (0.5, 0), (1, 0), (1, 0.5), (0.5, 0.5), (0, 0.5), (0, 1), (0.5, 1), (1, 1)]

#: ``[27, 3]`` float64 grid positions of the candidate nodes in canonical order.
NODE_GRID = np.array([(x, y, z) for z in (0.0, 0.5, 1.0) for (x, y) in _LAYER_XY], dtype=np.float64)
NODE_GRID.setflags(write=False)

#: ``[27, 3]`` bool, True where the coordinate is a free offset dof (grid value 0.5).
FREE_DOF_MASK = NODE_GRID == 0.5
FREE_DOF_MASK.setflags(write=False)

#: ``[27]`` int, number of free dofs = type index (vertex 0, edge 1, face 2, body 3).
NODE_TYPE = FREE_DOF_MASK.sum(axis=1).astype(np.int64)
NODE_TYPE.setflags(write=False)

#: ``[27]`` node and axis of each free dof, in the canonical free-dof order.
FREE_DOF_NODE, FREE_DOF_AXIS = (a.astype(np.int64) for a in np.nonzero(FREE_DOF_MASK))
FREE_DOF_NODE.setflags(write=False)
FREE_DOF_AXIS.setflags(write=False)

#: ``[351]`` row / column indices of the off-diagonal upper triangle (row-major order).
TRIU_I, TRIU_J = (a.astype(np.int64) for a in np.triu_indices(NUM_NODES, k=1))
TRIU_I.setflags(write=False)
TRIU_J.setflags(write=False)


def _near_neighbour_edges() -> np.ndarray:
    d = np.linalg.norm(NODE_GRID[TRIU_I] - NODE_GRID[TRIU_J], axis=1)
    keep = d <= R_MAX + 1e-12
    return np.stack([TRIU_I[keep], TRIU_J[keep]], axis=1)


#: ``[158, 2]`` node pairs whose grid distance is at most ``sqrt(3)/2`` (axis neighbours 0.5,
#: half-cube face diagonals 0.707, half-cube body diagonals 0.866).
NEAR_NEIGHBOUR_EDGES = _near_neighbour_edges()
NEAR_NEIGHBOUR_EDGES.setflags(write=False)
#: ``[27, 27]`` bool, symmetric: ``True`` on the pairs of :data:`NEAR_NEIGHBOUR_EDGES`, the only
#: pairs that can be beams of a valid lattice (read-only).
NEAR_NEIGHBOUR_ADJACENCY = np.zeros((NUM_NODES, NUM_NODES), dtype=bool)
NEAR_NEIGHBOUR_ADJACENCY[NEAR_NEIGHBOUR_EDGES[:, 0], NEAR_NEIGHBOUR_EDGES[:, 1]] = True
NEAR_NEIGHBOUR_ADJACENCY |= NEAR_NEIGHBOUR_ADJACENCY.T
NEAR_NEIGHBOUR_ADJACENCY.setflags(write=False)

_CORNERS = [0, 2, 6, 8, 18, 20, 24, 26]
_FACES = [4, 10, 12, 14, 16, 22]


def _octet_2x2x2() -> list[tuple[int, int]]:
    # Octant = one FCC cell of side 1: each face centre joins the 4 corners of its face and the
    # 4 face centres of the adjacent faces (12 nearest neighbours per lattice point).
    edges = []
    for f in _FACES:
        for c in _CORNERS:
            if np.count_nonzero(NODE_GRID[f] == NODE_GRID[c]) == 1:  # c lies on f's face
                edges.append((min(f, c), max(f, c)))
    for f, g in itertools.combinations(_FACES, 2):
        if np.isclose(np.linalg.norm(NODE_GRID[f] - NODE_GRID[g]), np.sqrt(0.5)):
            edges.append((f, g))
    return sorted(edges)


#: Named elementary lattices as octant edge lists (``SPEC.md`` section 1). The paper seeds its
#: generator with "octet, BCC and SC as 1x1x1 and 2x2x2 tessellations" and counts five; which
#: one of the six it leaves out is not stated, so all six are provided. ``sc`` / ``bcc`` /
#: ``octet`` are the single-cell lattices of lattice constant 2 (the cell side), ``*_2x2x2``
#: their 2x2x2 tessellations of lattice constant 1.
ELEMENTARY_LATTICES: dict[str, tuple[tuple[int, int], ...]] = {
    "sc": ((8, 17), (17, 26), (20, 21), (21, 26), (24, 25), (25, 26)),
    "sc_2x2x2": ((0, 1), (1, 2), (0, 5), (5, 6), (0, 9), (9, 18), (2, 3), (3, 8), (2, 11),
                 (11, 20), (6, 7), (7, 8), (6, 15), (15, 24), (8, 17), (17, 26), (18, 19),
                 (19, 20), (18, 23), (23, 24), (20, 21), (21, 26), (24, 25), (25, 26)),
    "bcc": ((0, 13), (13, 26)),
    "bcc_2x2x2": tuple((min(c, 13), max(c, 13)) for c in _CORNERS),
    "octet": ((2, 4), (4, 6), (2, 10), (10, 18), (2, 12), (12, 26), (6, 14), (14, 18), (6, 16),
              (16, 26), (18, 22), (22, 26)),
    "octet_2x2x2": tuple(_octet_2x2x2()),
}

#: The lattices the generator starts from (all six named ones).
SEED_LATTICES = tuple(ELEMENTARY_LATTICES)


def node_type_names() -> list[str]:
    """Type name (``vertex``/``edge``/``face``/``body``) of each of the 27 nodes."""
    return [NODE_TYPES[t] for t in NODE_TYPE]


def type_one_hot() -> np.ndarray:
    """``[27, 4]`` float64 one-hot encoding of the node types."""
    return np.eye(len(NODE_TYPES))[NODE_TYPE]


def offsets_to_positions(offsets: np.ndarray) -> np.ndarray:
    """Node positions ``grid + offsets``.

    Args:
        offsets: ``[..., 27, 3]`` offsets (zero on fixed dofs).

    Returns:
        ``[..., 27, 3]`` positions in the octant ``[0, 1]^3``.
    """
    return NODE_GRID + np.asarray(offsets, dtype=np.float64)


def positions_to_offsets(positions: np.ndarray) -> np.ndarray:
    """Inverse of :func:`offsets_to_positions`: ``[..., 27, 3] -> [..., 27, 3]``."""
    return np.asarray(positions, dtype=np.float64) - NODE_GRID


def pack_offsets(offsets: np.ndarray) -> np.ndarray:
    """Free-dof vector of a full offset array: ``[..., 27, 3] -> [..., 27]``."""
    offsets = np.asarray(offsets)
    if offsets.shape[-2:] != (NUM_NODES, 3):
        raise ValueError(f"offsets must have shape [..., 27, 3], got {offsets.shape}")
    return offsets[..., FREE_DOF_NODE, FREE_DOF_AXIS]


def unpack_offsets(free: np.ndarray) -> np.ndarray:
    """Full offset array from the free-dof vector: ``[..., 27] -> [..., 27, 3]`` (zeros on fixed
    dofs)."""
    free = np.asarray(free, dtype=np.float64)
    if free.shape[-1:] != (NUM_FREE_DOFS,):
        raise ValueError(f"free-dof offsets must have shape [..., {NUM_FREE_DOFS}], got "
                         f"{free.shape}")
    out = np.zeros(free.shape[:-1] + (NUM_NODES, 3), dtype=np.float64)
    out[..., FREE_DOF_NODE, FREE_DOF_AXIS] = free
    return out


def adjacency_to_triu(adj: np.ndarray) -> np.ndarray:
    """Off-diagonal upper triangle of ``[..., 27, 27]`` adjacency matrices -> ``[..., 351]``."""
    adj = np.asarray(adj)
    if adj.shape[-2:] != (NUM_NODES, NUM_NODES):
        raise ValueError(f"adjacency must have shape [..., 27, 27], got {adj.shape}")
    return adj[..., TRIU_I, TRIU_J]


def triu_to_adjacency(triu: np.ndarray) -> np.ndarray:
    """Symmetric ``[..., 27, 27]`` adjacency (zero diagonal) from ``[..., 351]`` upper triangles."""
    triu = np.asarray(triu)
    if triu.shape[-1:] != (NUM_PAIRS,):
        raise ValueError(f"upper-triangle adjacency must have shape [..., {NUM_PAIRS}], got "
                         f"{triu.shape}")
    adj = np.zeros(triu.shape[:-1] + (NUM_NODES, NUM_NODES), dtype=triu.dtype)
    adj[..., TRIU_I, TRIU_J] = triu
    adj[..., TRIU_J, TRIU_I] = triu
    return adj


def edges_to_adjacency(edges) -> np.ndarray:
    """``[27, 27]`` uint8 symmetric adjacency with zero diagonal from an ``[E, 2]`` edge list.

    Raises:
        ValueError: for an edge list that is not ``[E, 2]``, holds non-integer values, refers to
            nodes outside ``0..26`` or contains a self-loop.
    """
    try:
        arr = np.asarray(edges)
    except ValueError as exc:  # ragged nested lists
        raise ValueError(f"edge list must be an [E, 2] array of node indices ({exc})") from None
    if arr.size == 0:
        arr = arr.reshape(0, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"edge list must have shape [E, 2], got {arr.shape}")
    if arr.dtype.kind not in "iub":
        try:
            values = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"edge list must hold integer node indices, got dtype "
                             f"{arr.dtype}") from None
        frac = ~np.isfinite(values) | (values != np.round(values))
        if frac.any():
            raise ValueError(f"edge list must hold integer node indices, found "
                             f"{float(values[frac][0])!r}")
    edges = arr.astype(np.int64)
    if edges.size and (edges.min() < 0 or edges.max() >= NUM_NODES):
        raise ValueError(f"edge list refers to nodes outside 0..{NUM_NODES - 1}")
    if np.any(edges[:, 0] == edges[:, 1]):
        raise ValueError("edge list contains a self-loop")
    adj = np.zeros((NUM_NODES, NUM_NODES), dtype=np.uint8)
    adj[edges[:, 0], edges[:, 1]] = 1
    adj[edges[:, 1], edges[:, 0]] = 1
    return adj


def adjacency_to_edges(adj: np.ndarray) -> np.ndarray:
    """``[E, 2]`` int64 edge list (i < j, row-major order) of a ``[27, 27]`` adjacency."""
    triu = adjacency_to_triu(adj) != 0
    return np.stack([TRIU_I[triu], TRIU_J[triu]], axis=1)
