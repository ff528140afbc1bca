"""Geometry of an octant truss: beam crossings, node-on-beam tests, and the octant FE model.

Pure functions over arrays. Lengths are in units of the octant side (the cell side is 2).

All geometric decisions use one documented tolerance, :data:`GEOM_TOL` = 1e-3:

* a beam shorter than ``GEOM_TOL``, two nodes closer than ``GEOM_TOL``, or a node closer than
  ``GEOM_TOL / 2`` to the mirror plane it is free to move off (so that it lies within
  ``GEOM_TOL`` of its own mirror image) is *degenerate*;
* a node closer than ``GEOM_TOL`` to the interior of a beam it does not belong to lies *on* it;
* two beams whose centre lines come closer than ``GEOM_TOL`` at interior points of both (each
  farther than ``GEOM_TOL`` from its ends) *cross*; the crossing point (midpoint of the closest
  points; crossing points closer than ``GEOM_TOL`` are merged) becomes a node of the FE model
  that joins the beams.

A beam between two octant nodes stays inside the (convex) octant, so it can only meet the mirror
image of another beam inside a mirror plane, where that image coincides with the beam itself:
crossings are therefore found exactly by looking at the octant alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["GEOM_TOL", "OctantModel", "segment_crossings", "nodes_on_segments", "plane_codes",
           "octant_model", "num_components"]

GEOM_TOL = 1e-3


def segment_crossings(a: np.ndarray, b: np.ndarray, tol: float = GEOM_TOL):
    """Interior crossings among line segments.

    Args:
        a, b: ``[E, 3]`` segment end points.
        tol: distance below which two centre lines meet; each meeting point must also lie
            farther than ``tol`` from the ends of both segments.

    Returns:
        ``(pairs, points, s)``: ``[K, 2]`` indices ``(e, f)`` with ``e < f`` of the crossing
        segments, ``[K, 3]`` crossing points, ``[K, 2]`` the parameters along ``e`` and ``f``
        (0 at ``a``, 1 at ``b``).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n = len(a)
    if n < 2:
        return np.zeros((0, 2), np.int64), np.zeros((0, 3)), np.zeros((0, 2))
    i, j = np.triu_indices(n, k=1)
    d1 = b[i] - a[i]
    d2 = b[j] - a[j]
    r = a[i] - a[j]
    aa = np.einsum("kd,kd->k", d1, d1)
    ee = np.einsum("kd,kd->k", d2, d2)
    bb = np.einsum("kd,kd->k", d1, d2)
    c = np.einsum("kd,kd->k", d1, r)
    f = np.einsum("kd,kd->k", d2, r)
    den = aa * ee - bb * bb
    # Parallel segments never cross at a single interior point; collinear overlaps always put a
    # node on a beam and are reported by :func:`nodes_on_segments`.
    ok = den > 1e-12 * aa * ee
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(ok, (bb * f - c * ee) / den, -1.0)
        t = np.where(ok, (aa * f - bb * c) / den, -1.0)
    l1 = np.sqrt(aa)
    l2 = np.sqrt(ee)
    interior = (s * l1 > tol) & ((1 - s) * l1 > tol) & (t * l2 > tol) & ((1 - t) * l2 > tol)
    p1 = a[i] + s[:, None] * d1
    p2 = a[j] + t[:, None] * d2
    close = np.linalg.norm(p1 - p2, axis=1) < tol
    hit = ok & interior & close
    pairs = np.stack([i[hit], j[hit]], axis=1).astype(np.int64)
    points = 0.5 * (p1[hit] + p2[hit])
    return pairs, points, np.stack([s[hit], t[hit]], axis=1)


def nodes_on_segments(points: np.ndarray, a: np.ndarray, b: np.ndarray, ends: np.ndarray,
                      tol: float = GEOM_TOL) -> np.ndarray:
    """Node-segment pairs where a node lies on the interior of a segment it is not an end of.

    Args:
        points: ``[N, 3]`` node positions.
        a, b: ``[E, 3]`` segment end points.
        ends: ``[E, 2]`` node indices of the segment ends (excluded from the test).
        tol: distance threshold; the foot point must be farther than ``tol`` from both ends.

    Returns:
        ``[K, 2]`` int64 pairs ``(node, segment)``.
    """
    points = np.asarray(points, dtype=np.float64)
    d = b - a  # [E, 3]
    ll = np.einsum("ed,ed->e", d, d)
    rel = points[:, None, :] - a[None, :, :]  # [N, E, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.einsum("ned,ed->ne", rel, d) / ll
    length = np.sqrt(ll)
    foot = a[None] + t[..., None] * d[None]
    dist = np.linalg.norm(points[:, None, :] - foot, axis=2)
    inside = (t * length > tol) & ((1 - t) * length > tol)
    hit = inside & (dist < tol)
    idx = np.arange(len(points))[:, None]
    hit &= (idx != ends[None, :, 0]) & (idx != ends[None, :, 1])
    nodes, segs = np.nonzero(hit)
    return np.stack([nodes, segs], axis=1).astype(np.int64)


def num_components(num_nodes: int, edges: np.ndarray, nodes: np.ndarray | None = None) -> int:
    """Number of connected components of a small graph (label propagation).

    Args:
        num_nodes: number of nodes.
        edges: ``[E, 2]`` node pairs.
        nodes: optional subset of nodes to count components over (default: all).
    """
    label = np.arange(num_nodes)
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    while len(edges):
        m = np.minimum(label[edges[:, 0]], label[edges[:, 1]])
        new = label.copy()
        np.minimum.at(new, edges[:, 0], m)
        np.minimum.at(new, edges[:, 1], m)
        new = new[new]  # pointer jumping
        if np.array_equal(new, label):
            break
        label = new
    sub = label if nodes is None else label[nodes]
    return len(np.unique(sub))


def plane_codes(points: np.ndarray, tol: float = GEOM_TOL) -> np.ndarray:
    """Which mirror/periodic plane each coordinate of a point lies on.

    Returns:
        ``[N, 3]`` int8: 0 if the coordinate is within ``tol`` of 0, 1 if within ``tol`` of 1,
        -1 otherwise.
    """
    points = np.asarray(points, dtype=np.float64)
    code = np.full(points.shape, -1, dtype=np.int8)
    code[np.abs(points) < tol] = 0
    code[np.abs(points - 1.0) < tol] = 1
    return code


@dataclass(frozen=True)
class OctantModel:
    """The finite-element model of one octant: the used lattice nodes plus crossing nodes, and
    the beams split at crossings.

    Attributes:
        nodes: ``[N, 3]`` node positions in ``[0, 1]^3``; the first ``num_lattice_nodes`` are
            the used lattice nodes (in increasing lattice index), the rest crossing nodes.
        lattice_index: ``[N]`` index among the 27 lattice nodes, -1 for crossing nodes.
        planes: ``[N, 3]`` int8 plane codes (see :func:`plane_codes`).
        segments: ``[M, 2]`` node indices (into ``nodes``) of the beam segments.
        parent: ``[M]`` index of the octant beam (row of the edge list) each segment comes from.
        node_mult: ``[N]`` number of distinct physical images of each node in the periodic cell.
        seg_mult: ``[M]`` number of distinct physical images of each segment.
    """

    nodes: np.ndarray
    lattice_index: np.ndarray
    planes: np.ndarray
    segments: np.ndarray
    parent: np.ndarray
    node_mult: np.ndarray
    seg_mult: np.ndarray

    @property
    def num_lattice_nodes(self) -> int:
        return int(np.count_nonzero(self.lattice_index >= 0))

    @property
    def num_crossings(self) -> int:
        return int(np.count_nonzero(self.lattice_index < 0))

    @property
    def seg_lengths(self) -> np.ndarray:
        """``[M]`` segment lengths."""
        return np.linalg.norm(self.nodes[self.segments[:, 1]] - self.nodes[self.segments[:, 0]],
                              axis=1)


def _merge_points(points: np.ndarray, tol: float) -> np.ndarray:
    """Cluster labels of points closer than ``tol`` (single linkage)."""
    n = len(points)
    label = np.arange(n)
    if n < 2:
        return label
    dist = np.linalg.norm(points[:, None] - points[None], axis=2)
    i, j = np.nonzero(np.triu(dist < tol, k=1))
    for p, q in zip(i, j):  # few crossings per lattice: a plain union-find is enough
        rp, rq = label[p], label[q]
        while label[rp] != rp:
            rp = label[rp]
        while label[rq] != rq:
            rq = label[rq]
        if rp != rq:
            label[max(rp, rq)] = min(rp, rq)
    for k in range(n):
        r = k
        while label[r] != r:
            r = label[r]
        label[k] = r
    _, compact = np.unique(label, return_inverse=True)
    return compact


def octant_model(positions: np.ndarray, edges: np.ndarray, planes: np.ndarray,
                 tol: float = GEOM_TOL) -> OctantModel:
    """Build the octant FE model: keep used nodes, insert a node at every beam crossing and split
    the crossing beams there.

    Args:
        positions: ``[27, 3]`` lattice node positions.
        edges: ``[E, 2]`` octant beams (lattice node indices).
        planes: ``[27, 3]`` plane codes of the lattice nodes (from their fixed coordinates).
        tol: geometric tolerance (:data:`GEOM_TOL`).
    """
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    used = np.unique(edges)
    local = -np.ones(len(positions), dtype=np.int64)
    local[used] = np.arange(len(used))
    a = positions[edges[:, 0]]
    b = positions[edges[:, 1]]
    pairs, points, params = segment_crossings(a, b, tol)

    nodes = [positions[used]]
    node_planes = [planes[used].astype(np.int8)]
    lattice_index = [used]
    # per beam: list of (parameter, model node)
    cuts: list[list[tuple[float, int]]] = [[] for _ in range(len(edges))]
    if len(points):
        label = _merge_points(points, tol)
        k = label.max() + 1
        centres = np.zeros((k, 3))
        np.add.at(centres, label, points)
        centres /= np.bincount(label, minlength=k)[:, None]
        cp = plane_codes(centres, tol)
        centres = np.where(cp == 0, 0.0, np.where(cp == 1, 1.0, centres))  # snap onto planes
        base = len(used)
        seen = set()
        for (e, f), (s, t), lab in zip(pairs, params, label):
            for beam, par in ((e, s), (f, t)):
                if (beam, lab) not in seen:
                    seen.add((beam, lab))
                    cuts[beam].append((float(par), base + int(lab)))
        nodes.append(centres)
        node_planes.append(cp)
        lattice_index.append(-np.ones(k, dtype=np.int64))

    segments, parent = [], []
    for e, (i, j) in enumerate(edges):
        chain = [local[i]] + [m for _, m in sorted(cuts[e])] + [local[j]]
        for p, q in zip(chain[:-1], chain[1:]):
            segments.append((p, q))
            parent.append(e)
    nodes = np.concatenate(nodes, axis=0)
    node_planes = np.concatenate(node_planes, axis=0)
    segments = np.asarray(segments, dtype=np.int64).reshape(-1, 2)
    on = node_planes >= 0
    node_mult = np.prod(np.where(on, 1, 2), axis=1)
    pa, pb = node_planes[segments[:, 0]], node_planes[segments[:, 1]]
    in_plane = (pa == pb) & (pa >= 0)
    seg_mult = np.prod(np.where(in_plane, 1, 2), axis=1)
    return OctantModel(nodes=nodes, lattice_index=np.concatenate(lattice_index),
                       planes=node_planes, segments=segments,
                       parent=np.asarray(parent, dtype=np.int64), node_mult=node_mult,
                       seg_mult=seg_mult)
