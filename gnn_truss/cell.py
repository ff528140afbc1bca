"""Periodic trusses: mirroring an octant model to the full cell and reducing it to the unique
physical nodes and struts of the periodic cell.

A :class:`PeriodicTruss` is the general description used by the reference FE path: master
nodes inside the cell and struts ``(i, j, n)`` whose chord is
``d = X_j + n @ cell - X_i`` (``n`` an integer lattice shift). Any periodic truss can be
described this way, not only mirror-symmetric ones.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .geometry import GEOM_TOL, OctantModel

__all__ = ["PeriodicTruss", "mirror_to_cell", "MIRROR_SIGNS"]

#: ``[8, 3]`` the eight sign patterns of the mirror images of the octant.
MIRROR_SIGNS = np.array(list(itertools.product((1, -1), repeat=3)), dtype=np.float64)


@dataclass(frozen=True)
class PeriodicTruss:
    """A periodic truss in a parallelepiped cell.

    Attributes:
        nodes: ``[N, 3]`` master node positions.
        edges: ``[M, 2]`` node indices of each strut.
        shifts: ``[M, 3]`` integer lattice shift of the second end:
            chord = ``nodes[j] + shifts @ cell - nodes[i]``.
        cell: ``[3, 3]`` lattice vectors as rows (default: cube of side 2).
    """

    nodes: np.ndarray
    edges: np.ndarray
    shifts: np.ndarray
    cell: np.ndarray

    @property
    def volume(self) -> float:
        return float(abs(np.linalg.det(self.cell)))

    @property
    def chords(self) -> np.ndarray:
        """``[M, 3]`` strut vectors from end ``i`` to end ``j``."""
        return self.nodes[self.edges[:, 1]] + self.shifts @ self.cell - self.nodes[self.edges[:, 0]]

    @property
    def lengths(self) -> np.ndarray:
        """``[M]`` strut lengths."""
        return np.linalg.norm(self.chords, axis=1)

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    @property
    def num_struts(self) -> int:
        return len(self.edges)


def _wrap_keys(points: np.ndarray, side: float = 2.0, q: float = 1e-7) -> np.ndarray:
    """Integer keys of points modulo the cubic cell ``[-1, 1)^3``, resolution ``q``."""
    n = int(round(side / q))
    k = np.rint((points + side / 2) / q).astype(np.int64)
    return np.mod(k, n)


def mirror_to_cell(model: OctantModel, tol: float = GEOM_TOL) -> PeriodicTruss:
    """Mirror an octant model through ``x = 0``, ``y = 0``, ``z = 0`` into ``[-1, 1]^3`` and keep
    each physical node and strut once (a strut in a boundary face or edge of the cell, or in a
    mirror plane, appears in several images but is one strut).

    Returns:
        The :class:`PeriodicTruss` of the cube of side 2, master nodes in ``[-1, 1)^3``.
    """
    del tol  # keys are exact to 1e-7; plane codes already snapped crossing nodes
    p = model.nodes
    imgs = MIRROR_SIGNS[:, None, :] * p[None]  # [8, N, 3]
    keys = _wrap_keys(imgs.reshape(-1, 3))
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(8, len(p))
    flat = imgs.reshape(-1, 3)[first]
    master = flat - 2.0 * np.floor((flat + 1.0) / 2.0 + 1e-9)  # into [-1, 1)
    master = np.where(np.abs(master - 1.0) < 1e-9, -1.0, master)

    ia = inverse[:, model.segments[:, 0]].reshape(-1)  # [8 * M]
    ib = inverse[:, model.segments[:, 1]].reshape(-1)
    a = imgs[:, model.segments[:, 0]].reshape(-1, 3)
    b = imgs[:, model.segments[:, 1]].reshape(-1, 3)
    shift = np.rint((b - a - (master[ib] - master[ia])) / 2.0).astype(np.int64)
    # canonical orientation (i, j, n) ~ (j, i, -n)
    swap = (ia > ib) | ((ia == ib) & _neg_lex(shift))
    i2 = np.where(swap, ib, ia)
    j2 = np.where(swap, ia, ib)
    s2 = np.where(swap[:, None], -shift, shift)
    rows = np.concatenate([i2[:, None], j2[:, None], s2], axis=1)
    urows = np.unique(rows, axis=0)
    return PeriodicTruss(nodes=master, edges=urows[:, :2].copy(), shifts=urows[:, 2:].copy(),
                         cell=2.0 * np.eye(3))


def _neg_lex(shift: np.ndarray) -> np.ndarray:
    """True where the first non-zero component of ``shift`` is negative."""
    out = np.zeros(len(shift), dtype=bool)
    decided = np.zeros(len(shift), dtype=bool)
    for d in range(3):
        nz = (shift[:, d] != 0) & ~decided
        out[nz] = shift[nz, d] < 0
        decided |= nz
    return out
