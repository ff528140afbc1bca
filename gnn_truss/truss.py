"""The truss value type: an octant adjacency matrix plus node offsets.

A :class:`Truss` is immutable. It checks its input on construction (shapes, symmetry,
binarity, offsets on fixed dofs, NaN, range) and raises :class:`ValueError` naming the problem.
Whether it is a *valid lattice* is a separate question answered by :meth:`Truss.validate`,
which returns the name of every violated rule (see :data:`RULES`).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from . import design_space as ds
from .cell import PeriodicTruss, mirror_to_cell
from .geometry import (GEOM_TOL, OctantModel, nodes_on_segments, num_components, octant_model,
                       segment_crossings)

__all__ = ["Truss", "RULES", "TOPOLOGY_RULES", "topology_violations", "radius_for_density",
           "relative_density"]

#: Validation rules, in the order :meth:`Truss.validate` reports them.
RULES = {
    "connected": "the used nodes and beams form exactly one connected component",
    "spans_cell": "used nodes lie on all six faces of the octant (the truss tiles periodically)",
    "no_dangling": "every used node has at least two beams in the periodic cell",
    "max_length": "every beam is at most sqrt(3)/2 long (octant side 1)",
    "not_degenerate": f"no beam shorter than {GEOM_TOL}, no two used nodes closer than "
                      f"{GEOM_TOL}, no used node within {GEOM_TOL} of its own mirror image, "
                      f"no beam crossing within {GEOM_TOL} of a plane it does not lie in, no two "
                      f"beams merged along a segment at a crossing",
    "no_node_on_beam": f"no node (used or unused) within {GEOM_TOL} of a beam it is not an end of",
}

#: The rules of :data:`RULES` that depend on the adjacency alone.
TOPOLOGY_RULES = ("connected", "spans_cell", "no_dangling")

_OFFSET_ATOL = 1e-12
_PLANES = np.where(ds.FREE_DOF_MASK, -1, ds.NODE_GRID).astype(np.int8)  # [27, 3] plane codes


def _physical_degree(edges: np.ndarray) -> np.ndarray:
    """``[27]`` periodic-cell degree of each node for ``[E, 2]`` octant beams."""
    deg = np.zeros(ds.NUM_NODES)
    if len(edges) == 0:
        return deg
    pa, pb = _PLANES[edges[:, 0]], _PLANES[edges[:, 1]]
    seg_mult = np.prod(np.where((pa == pb) & (pa >= 0), 1, 2), axis=1)
    node_mult = np.prod(np.where(_PLANES >= 0, 1, 2), axis=1)
    np.add.at(deg, edges[:, 0], seg_mult / node_mult[edges[:, 0]])
    np.add.at(deg, edges[:, 1], seg_mult / node_mult[edges[:, 1]])
    return deg


def _topology_violations(edges: np.ndarray, used: np.ndarray) -> list[str]:
    """The violated rules among ``connected``, ``spans_cell`` and ``no_dangling`` (those that
    depend on the adjacency alone) for ``[E >= 1, 2]`` beams and the ``[27]`` used-node mask."""
    bad = []
    if num_components(ds.NUM_NODES, edges, np.flatnonzero(used)) != 1:
        bad.append("connected")
    fixed = np.where(ds.FREE_DOF_MASK[used], -1, ds.NODE_GRID[used])
    if not all(np.any(fixed[:, d] == v) for d in range(3) for v in (0.0, 1.0)):
        bad.append("spans_cell")
    if np.any(_physical_degree(edges)[used] < 2):
        bad.append("no_dangling")
    return bad


def topology_violations(adjacency) -> list[str]:
    """The rules of :data:`TOPOLOGY_RULES` that an adjacency breaks, in :data:`RULES` order.

    They depend on the adjacency alone (not on the offsets), so a decoded adjacency can be
    checked before its geometry is known. An adjacency without beams breaks all three.

    Args:
        adjacency: ``[27, 27]`` symmetric binary matrix or its ``[351]`` upper triangle.

    Raises:
        ValueError: for a malformed adjacency (as :class:`Truss`).
    """
    a = np.asarray(adjacency)
    if a.shape == (ds.NUM_PAIRS,):
        a = ds.triu_to_adjacency(a.astype(np.uint8))
    adj = _check_adjacency(a)
    edges = ds.adjacency_to_edges(adj)
    if len(edges) == 0:
        return list(TOPOLOGY_RULES)
    return _topology_violations(edges, adj.any(axis=1))


def relative_density(radius: float, total_length: float, volume: float = 8.0) -> float:
    """``rho = pi r^2 sum(L) / V`` (plain cylinders, no node-overlap correction)."""
    return float(np.pi * radius**2 * total_length / volume)


def radius_for_density(density: float, total_length: float, volume: float = 8.0) -> float:
    """Strut radius giving relative density ``density``: ``r = sqrt(rho V / (pi sum L))``."""
    if not total_length > 0:
        raise ValueError("total strut length must be positive to compute a radius")
    if not 0 < density < 1:
        raise ValueError(f"relative density must lie in (0, 1), got {density}")
    return float(np.sqrt(density * volume / (np.pi * total_length)))


def _check_adjacency(adj) -> np.ndarray:
    adj = np.asarray(adj)
    if adj.shape != (ds.NUM_NODES, ds.NUM_NODES):
        raise ValueError(f"adjacency must have shape (27, 27), got {adj.shape}")
    if adj.dtype == bool:
        adj = adj.astype(np.uint8)
    if not np.issubdtype(adj.dtype, np.number):
        raise ValueError(f"adjacency must be numeric, got dtype {adj.dtype}")
    if not np.all(np.isfinite(adj)):
        raise ValueError("adjacency contains NaN or inf")
    if not np.all((adj == 0) | (adj == 1)):
        bad = np.unique(adj[(adj != 0) & (adj != 1)])[:5]
        raise ValueError(f"adjacency must be binary (0/1), found values {bad.tolist()}")
    if not np.array_equal(adj, adj.T):
        i, j = np.argwhere(adj != adj.T)[0]
        raise ValueError(f"adjacency must be symmetric: A[{i},{j}] != A[{j},{i}]")
    out = adj.astype(np.uint8)
    np.fill_diagonal(out, 0)  # the paper's ones on the diagonal carry no information
    return out


def _check_offsets(offsets) -> np.ndarray:
    if offsets is None:
        return np.zeros((ds.NUM_NODES, 3))
    off = np.asarray(offsets, dtype=np.float64)
    if off.shape == (ds.NUM_FREE_DOFS,):
        off = ds.unpack_offsets(off)
    if off.shape != (ds.NUM_NODES, 3):
        raise ValueError(f"offsets must have shape (27, 3) or (27,) free dofs, got {off.shape}")
    if not np.all(np.isfinite(off)):
        i = np.argwhere(~np.isfinite(off))[0]
        raise ValueError(f"offsets contain NaN or inf (node {i[0]}, axis {'xyz'[i[1]]})")
    fixed = ~ds.FREE_DOF_MASK & (np.abs(off) > _OFFSET_ATOL)
    if fixed.any():
        n, d = np.argwhere(fixed)[0]
        raise ValueError(f"offset on a fixed dof: node {n} ({ds.NODE_TYPES[ds.NODE_TYPE[n]]}) "
                         f"cannot move along {'xyz'[d]} (offset {off[n, d]:g})")
    if np.any(np.abs(off) > 0.5 + _OFFSET_ATOL):
        n, d = np.argwhere(np.abs(off) > 0.5 + _OFFSET_ATOL)[0]
        raise ValueError(f"offset out of range [-0.5, 0.5]: node {n} axis {'xyz'[d]} = "
                         f"{off[n, d]:g}")
    off = np.where(ds.FREE_DOF_MASK, np.clip(off, -0.5, 0.5), 0.0)
    return off


@dataclass(frozen=True, eq=False)
class Truss:
    """An octant truss: ``[27, 27]`` adjacency and ``[27, 3]`` node offsets.

    Args:
        adjacency: symmetric binary ``[27, 27]`` matrix (a diagonal of ones, the paper's
            convention, is accepted and cleared).
        offsets: ``[27, 3]`` offsets (zero on fixed dofs) or the ``[27]`` free-dof vector, in
            ``[-0.5, 0.5]``; default zeros.

    Raises:
        ValueError: naming the problem, for wrong shapes, non-symmetric or non-binary adjacency,
            NaN/inf, offsets on fixed dofs or out of range.
    """

    adjacency: np.ndarray
    offsets: np.ndarray

    def __init__(self, adjacency, offsets=None):
        adj = _check_adjacency(adjacency)
        off = _check_offsets(offsets)
        adj.setflags(write=False)
        off.setflags(write=False)
        object.__setattr__(self, "adjacency", adj)
        object.__setattr__(self, "offsets", off)

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_edges(cls, edges, offsets=None) -> "Truss":
        """Truss from an ``[E, 2]`` list of octant node pairs."""
        return cls(ds.edges_to_adjacency(edges), offsets)

    @classmethod
    def elementary(cls, name: str) -> "Truss":
        """One of :data:`~gnn_truss.design_space.ELEMENTARY_LATTICES` (zero offsets)."""
        if name not in ds.ELEMENTARY_LATTICES:
            raise ValueError(f"unknown elementary lattice {name!r}; choose from "
                             f"{sorted(ds.ELEMENTARY_LATTICES)}")
        return cls.from_edges(ds.ELEMENTARY_LATTICES[name])

    def with_offsets(self, offsets) -> "Truss":
        return Truss(self.adjacency, offsets)

    # ---------------------------------------------------------------- basic views
    @property
    def positions(self) -> np.ndarray:
        """``[27, 3]`` node positions in the octant."""
        return ds.NODE_GRID + self.offsets

    @property
    def free_offsets(self) -> np.ndarray:
        """``[27]`` offsets on the free dofs."""
        return ds.pack_offsets(self.offsets)

    @cached_property
    def edges(self) -> np.ndarray:
        """``[E, 2]`` beams (i < j)."""
        return ds.adjacency_to_edges(self.adjacency)

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    @property
    def used(self) -> np.ndarray:
        """``[27]`` bool, nodes with at least one beam."""
        return self.adjacency.any(axis=1)

    @property
    def edge_lengths(self) -> np.ndarray:
        p = self.positions
        return np.linalg.norm(p[self.edges[:, 1]] - p[self.edges[:, 0]], axis=1)

    # ---------------------------------------------------------------- validation
    def validate(self) -> list[str]:
        """Names of every violated rule of :data:`RULES` (empty list: a valid lattice)."""
        used = self.used
        edges = self.edges
        p = self.positions
        if len(edges) == 0:
            return list(RULES)
        bad = _topology_violations(edges, used)
        lengths = self.edge_lengths
        if np.any(lengths > ds.R_MAX + 1e-9):
            bad.append("max_length")
        pu = p[used]
        dist = np.linalg.norm(pu[:, None] - pu[None], axis=2)
        np.fill_diagonal(dist, np.inf)
        free_pos = np.where(ds.FREE_DOF_MASK[used], pu, 0.5)
        near_plane = np.minimum(free_pos, 1.0 - free_pos) < GEOM_TOL / 2
        if (np.any(lengths < GEOM_TOL) or np.any(dist < GEOM_TOL) or near_plane.any()
                or self._degenerate_crossings()):
            bad.append("not_degenerate")
        if len(nodes_on_segments(p, p[edges[:, 0]], p[edges[:, 1]], edges)):
            bad.append("no_node_on_beam")
        return bad

    def _degenerate_crossings(self) -> bool:
        """True if a beam crossing makes the FE model degenerate:

        * a crossing node lies within ``GEOM_TOL`` of a mirror/periodic plane (the model snaps
          it onto the plane) that one of its beams does not lie in. An octant beam meets a
          bounding plane mid-span only if it lies in it, so such a beam runs within ``GEOM_TOL``
          of its own mirror image, and the images would be merged at the crossing;
        * two beams share a whole segment after splitting (beams within ``GEOM_TOL`` of each
          other from a common node to a crossing), so the periodic reduction would merge them.
        """
        m = self.model
        if m.num_crossings == 0:
            return False
        seg = np.sort(m.segments, axis=1)
        if len(np.unique(seg, axis=0)) < len(seg):
            return True
        e = self.edges
        pa, pb = _PLANES[e[:, 0]], _PLANES[e[:, 1]]
        seg_in_plane = ((pa == pb) & (pa >= 0))[m.parent]  # [M, 3]
        for c in np.flatnonzero(m.lattice_index < 0):
            at = np.any(m.segments == c, axis=1)
            if np.any((m.planes[c] >= 0) & ~seg_in_plane[at].all(axis=0)):
                return True
        return False

    @property
    def is_valid(self) -> bool:
        return not self.validate()

    def check_valid(self) -> "Truss":
        """Raise ``ValueError`` listing every violated rule; return ``self`` otherwise."""
        bad = self.validate()
        if bad:
            raise ValueError("invalid lattice: " + "; ".join(f"{r} ({RULES[r]})" for r in bad))
        return self

    def physical_degree(self) -> np.ndarray:
        """``[27]`` number of beams meeting at each node in the periodic cell (a beam and its
        mirror images count separately; a node on a mirror plane sees both halves)."""
        return _physical_degree(self.edges)

    # ---------------------------------------------------------------- physical model
    @cached_property
    def model(self) -> OctantModel:
        """Octant FE model with crossing nodes inserted (see
        :func:`gnn_truss.geometry.octant_model`)."""
        return octant_model(self.positions, self.edges, _PLANES)

    def crossings(self) -> np.ndarray:
        """``[K, 3]`` octant points where beams cross mid-span (merged within ``GEOM_TOL``)."""
        m = self.model
        return m.nodes[m.lattice_index < 0]

    def crossing_pairs(self) -> np.ndarray:
        """``[K, 2]`` pairs of beam indices (rows of :attr:`edges`) that cross mid-span."""
        p = self.positions
        return segment_crossings(p[self.edges[:, 0]], p[self.edges[:, 1]])[0]

    def periodic(self) -> PeriodicTruss:
        """The truss mirrored to ``[-1, 1]^3`` and reduced to unique physical nodes and struts of
        the periodic cell (crossing beams split at their crossing node)."""
        return mirror_to_cell(self.model)

    def total_length(self) -> float:
        """Total physical strut length in the periodic cell (each strut counted once)."""
        m = self.model
        return float(np.sum(m.seg_mult * m.seg_lengths))

    def radius(self, density: float = 0.15) -> float:
        """Strut radius for relative density ``density`` (``SPEC.md`` section 3)."""
        return radius_for_density(density, self.total_length())

    # ---------------------------------------------------------------- identity and algebra
    def canonical_hash(self, decimals: int = 6) -> str:
        """SHA-1 of the beams and the offsets of used nodes rounded to ``decimals`` (offsets of
        unused nodes carry no physics and are ignored)."""
        triu = ds.adjacency_to_triu(self.adjacency).astype(np.uint8)
        off = np.where(self.used[:, None], self.offsets, 0.0)
        q = np.rint(ds.pack_offsets(off) * 10**decimals).astype(np.int64)
        h = hashlib.sha1(np.packbits(triu).tobytes())
        h.update(q.tobytes())
        return h.hexdigest()

    def superpose(self, other: "Truss") -> "Truss":
        """Adjacency OR of two trusses. Offsets: those of ``self`` on its used nodes, those of
        ``other`` on nodes used only by ``other``, zero elsewhere."""
        adj = self.adjacency | other.adjacency
        off = np.where(self.used[:, None], self.offsets,
                       np.where(other.used[:, None], other.offsets, 0.0))
        return Truss(adj, off)

    def __eq__(self, other) -> bool:
        return (isinstance(other, Truss) and np.array_equal(self.adjacency, other.adjacency)
                and np.array_equal(self.offsets, other.offsets))

    def __hash__(self) -> int:
        return hash(self.canonical_hash())

    def summary(self, density: float = 0.15) -> dict:
        """Plain-dict summary: counts, validity, length, radius."""
        bad = self.validate()
        out = {
            "num_beams": self.num_edges,
            "num_used_nodes": int(self.used.sum()),
            "used_node_types": {t: int(np.sum(self.used & (ds.NODE_TYPE == k)))
                                for k, t in enumerate(ds.NODE_TYPES)},
            "valid": not bad,
            "violated_rules": bad,
        }
        if self.num_edges:
            pt = self.periodic()
            out.update(num_crossings=self.model.num_crossings,
                       periodic_nodes=pt.num_nodes, periodic_struts=pt.num_struts,
                       total_length=self.total_length(), radius=self.radius(density),
                       density=density)
        return out

    def __repr__(self) -> str:
        return f"Truss(beams={self.num_edges}, used_nodes={int(self.used.sum())})"
