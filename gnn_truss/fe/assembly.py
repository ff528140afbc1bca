"""Periodic assembly of beam trusses under a macroscopic strain.

Kinematics (``SPEC.md`` section 3): the displacement of a node is ``u = eps . X + w`` and its
rotation ``theta``, with ``w`` and ``theta`` periodic (a node and its periodic images share
them). Only chords enter the element energy, so the affine part of a strut from end ``i`` to end
``j`` is ``eps . d`` added to end ``j``. The macroscopic strain is the Voigt vector
``eps = (e11, e22, e33, g23, g31, g12)`` with engineering shears ``g = 2 e``.

Two assemblies live here:

* :func:`periodic_system` for any :class:`~gnn_truss.cell.PeriodicTruss` (the general,
  reference path): ``K_ww`` over all fluctuation dofs, ``K_we`` and ``K_ee``;
* :func:`octant_system` for mirror-symmetric lattices given by their octant model, assembled
  over the octant with each segment weighted by its number of physical images, together with
  :func:`sector_free_mask`, the dofs left free in each mirror-symmetry sector.
"""
from __future__ import annotations

import itertools

import numpy as np

__all__ = ["strain_operator", "affine_displacements", "periodic_system", "octant_system",
           "SECTORS", "SECTOR_LOADS", "SECTOR_PIN", "sector_free_mask"]


def strain_operator(d: np.ndarray) -> np.ndarray:
    """``[M, 3, 6]`` matrices ``G`` with ``G @ eps = eps_tensor . d`` (engineering shears).

    Args:
        d: ``[M, 3]`` vectors (chords or positions).
    """
    d = np.atleast_2d(d)
    G = np.zeros(d.shape[:-1] + (3, 6))
    x, y, z = d[..., 0], d[..., 1], d[..., 2]
    G[..., 0, 0], G[..., 1, 1], G[..., 2, 2] = x, y, z
    G[..., 1, 3], G[..., 2, 3] = z / 2, y / 2  # g23
    G[..., 0, 4], G[..., 2, 4] = z / 2, x / 2  # g31
    G[..., 0, 5], G[..., 1, 5] = y / 2, x / 2  # g12
    return G


def affine_displacements(positions: np.ndarray) -> np.ndarray:
    """``[N * 6, 6]`` nodal dof values (rotations zero) of the six unit macroscopic strains."""
    G = strain_operator(positions)  # [N, 3, 6]
    U = np.zeros((len(positions), 6, 6))
    U[:, :3, :] = G
    return U.reshape(-1, 6)


def _dof_index(edges: np.ndarray) -> np.ndarray:
    """``[M, 12]`` global dof numbers of the element dofs (6 per node)."""
    six = np.arange(6)
    return np.concatenate([6 * edges[:, :1] + six, 6 * edges[:, 1:] + six], axis=1)


def periodic_system(num_nodes: int, edges: np.ndarray, chords: np.ndarray, Ke: np.ndarray):
    """Assemble the periodic cell.

    Args:
        num_nodes: number of master nodes ``N``.
        edges: ``[M, 2]`` master node indices of the struts.
        chords: ``[M, 3]`` strut vectors (with periodic shifts applied).
        Ke: ``[M, 12, 12]`` global element stiffnesses.

    Returns:
        ``(K_ww [6N, 6N], K_we [6N, 6], K_ee [6, 6])``: the quadratic form of the cell energy
        ``1/2 [w; eps]^T [[K_ww, K_we], [K_ew, K_ee]] [w; eps]``.
    """
    n = 6 * num_nodes
    dofs = _dof_index(edges)
    K_ww = np.zeros((n, n))
    np.add.at(K_ww, (dofs[:, :, None], dofs[:, None, :]), Ke)
    G = strain_operator(chords)  # [M, 3, 6]: affine displacement of end j
    KeG = np.einsum("mab,mbe->mae", Ke[:, :, 6:9], G)  # [M, 12, 6]
    K_we = np.zeros((n, 6))
    np.add.at(K_we, dofs, KeG)
    K_ee = np.einsum("mbe,mbf->ef", G, KeG[:, 6:9, :])
    return K_ww, K_we, K_ee


def octant_system(num_nodes: int, segments: np.ndarray, positions: np.ndarray,
                  Ke: np.ndarray, weights: np.ndarray, blocks: int | None = None):
    """Assemble the octant of a mirror-symmetric cell: ``K = sum_e m_e K_e``.

    With fields in one mirror-symmetry sector the energy of the whole cell is the sum over
    octant segments of (number of physical images) x (segment energy), see
    :mod:`gnn_truss.fe.homogenization`.

    Args:
        num_nodes: octant model nodes ``N``.
        segments: ``[M, 2]`` node indices.
        positions: ``[N, 3]`` node positions.
        Ke: ``[M, 12, 12]`` global element stiffnesses.
        weights: ``[M]`` image counts ``m_e``.
        blocks: if given, the nodes are ``blocks`` stacked lattices of ``N / blocks`` nodes each
            (no segment joins two blocks) and a ``[blocks, 6N/blocks, 6N/blocks]`` stack is
            returned instead of ``(K, U)``.

    Returns:
        ``(K [6N, 6N], U [6N, 6])``: weighted stiffness and the affine dof fields of the six
        unit strains; or the stacked stiffness when ``blocks`` is given.
    """
    dofs = _dof_index(segments)
    vals = (Ke * weights[:, None, None]).ravel()
    if blocks is None:
        n = 6 * num_nodes
        flat = (dofs[:, :, None] * n + dofs[:, None, :]).ravel()
        K = np.bincount(flat, weights=vals, minlength=n * n)
        return K.reshape(n, n), affine_displacements(positions)
    n = 6 * num_nodes // blocks
    b, local = np.divmod(dofs, n)
    flat = ((b[:, :, None] * n + local[:, :, None]) * n + local[:, None, :]).ravel()
    return np.bincount(flat, weights=vals, minlength=blocks * n * n).reshape(blocks, n, n)


#: The eight mirror-symmetry sectors ``(s_x, s_y, s_z)``: a field in sector ``s`` satisfies
#: ``u(R_d X) = s_d R_d u(X)`` and ``theta(R_d X) = -s_d R_d theta(X)`` for each mirror ``R_d``.
SECTORS = tuple(itertools.product((1, -1), repeat=3))

#: Voigt strain components loading each sector: normal strains are even under all mirrors,
#: ``g23`` is odd under the y and z mirrors, etc. The other four sectors carry no load.
SECTOR_LOADS = {(1, 1, 1): (0, 1, 2), (1, -1, -1): (3,), (-1, 1, -1): (4,), (-1, -1, 1): (5,)}

#: Sectors that contain a rigid translation, and the component that must be pinned there.
SECTOR_PIN = {(-1, 1, 1): 0, (1, -1, 1): 1, (1, 1, -1): 2}


def sector_free_mask(planes: np.ndarray, sector: tuple[int, int, int]) -> np.ndarray:
    """Dofs left free by the symmetry of ``sector`` for nodes lying on mirror planes.

    A node on a plane normal to axis ``d`` (``x_d`` = 0, or 1, the periodic face, which the
    mirror maps onto its periodic image) must satisfy ``u = s_d R_d u`` and
    ``theta = -s_d R_d theta``: for ``s_d = +1`` the normal displacement and the two in-plane
    rotations vanish; for ``s_d = -1`` the two in-plane displacements and the normal rotation.

    Args:
        planes: ``[..., N, 3]`` plane codes (>= 0 on a plane).
        sector: signs ``(s_x, s_y, s_z)``.

    Returns:
        ``[..., 6N]`` bool.
    """
    planes = np.asarray(planes)
    free = np.ones(planes.shape[:-1] + (6,), dtype=bool)
    for d, s in enumerate(sector):
        on = planes[..., d] >= 0
        others = [o for o in range(3) if o != d]
        zero = [d] + [3 + o for o in others] if s == 1 else others + [3 + d]
        for z in zero:
            free[..., z] &= ~on
    return free.reshape(planes.shape[:-2] + (-1,))
