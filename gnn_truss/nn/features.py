r"""Physics features of a (possibly soft) lattice for the encoder's readout.

The *stretching fabric* of a periodic truss is the length-weighted average of
:math:`n \otimes n \otimes n \otimes n` over its physical struts (unit directions :math:`n`,
lengths :math:`L`):

.. math::
    F_{ijkl} = \frac{\sum_b L_b\, n_i n_j n_k n_l}{\sum_b L_b}.

With the strut radius set by the relative density, :math:`\rho = \pi r^2 \sum_b L_b / V`, the
axial term of the closed form of ``SPEC.md`` section 3 (an affine deformation of every strut,
stretching only) is :math:`C^{\mathrm{aff}}_{ijkl} = \rho E_s F_{ijkl}`: exact for the simple
cubic lattice (:math:`C_{11} = \rho/3`), a few percent off for BCC and octet; over the shipped
corpus the FE :math:`C_{11}` is 0.8 of it in the median. The encoder cannot form this sum from
the 27 octant nodes without knowing which mirror images are one physical strut, so it gets it
as an input (``model.physics_readout``).

Physical struts from the octant: each octant strut has 8 mirror images; an image coincides with
the strut itself (mirror plane) or with its periodic copy (cell face) once for every axis on
which both ends lie on the plane 0 or both on the plane 1, so an octant strut counts
:math:`8 / 2^k` times (``SPEC.md`` section 3: each physical strut once). The orthotropic
components only hold even powers of each :math:`n_i`, which the mirror images share.

Shapes: ``adj`` ``[B, 351]`` upper triangles or ``[B, 27, 27]`` with entries in ``[0, 1]``
(soft entries weight the struts), free-dof ``offsets`` ``[B, 27]`` (octant units). Everything
is differentiable in both (positions on the planes are detected without gradient).
"""
from __future__ import annotations

import numpy as np
import torch

from .. import design_space as ds

__all__ = ["FABRIC_COMPONENTS", "NUM_PHYSICS_FEATURES", "stretching_fabric",
           "physics_features"]

#: Voigt pairs of the six distinct fabric components (11, 22, 33, 23, 31, 12 of F_iijj); the
#: orthotropic 9-vector of :math:`\rho F` is (F1111, F1122, F1133, F2222, F2233, F3333,
#: F2233, F1133, F1122).
FABRIC_COMPONENTS = ((0, 0), (1, 1), (2, 2), (1, 2), (2, 0), (0, 1))
#: Columns of :func:`physics_features`: 6 fabric components twice (linear, logarithmic) and the
#: log of the total physical strut length.
NUM_PHYSICS_FEATURES = 13

_PLANE_TOL = 1e-6   # a node within this of 0 or 1 lies on the plane (octant units)


def _node_pairs(near_only: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(i, j, k)``: the node pairs ``i < j`` read and their positions ``k`` in the 351-entry
    upper triangle (all 351, or the 158 near-neighbour pairs)."""
    if not near_only:
        return ds.TRIU_I, ds.TRIU_J, np.arange(ds.NUM_PAIRS)
    where = np.full((ds.NUM_NODES, ds.NUM_NODES), -1)
    where[ds.TRIU_I, ds.TRIU_J] = np.arange(ds.NUM_PAIRS)
    i, j = np.asarray(ds.NEAR_NEIGHBOUR_EDGES).T
    return i, j, where[i, j]


def _pairs(adj: torch.Tensor, i: torch.Tensor, j: torch.Tensor, k: torch.Tensor
           ) -> torch.Tensor:
    """``[B, P]`` entries of ``adj`` on the node pairs ``(i, j)`` (upper-triangle positions
    ``k``)."""
    if adj.ndim == 2 and adj.shape[-1] == ds.NUM_PAIRS:
        return adj[:, k]
    if adj.ndim == 3 and tuple(adj.shape[1:]) == (ds.NUM_NODES, ds.NUM_NODES):
        return 0.5 * (adj[:, i, j] + adj[:, j, i])
    raise ValueError(f"adjacency must be [B, {ds.NUM_PAIRS}] or [B, 27, 27], got "
                     f"{tuple(adj.shape)}")


def stretching_fabric(adj: torch.Tensor, offsets: torch.Tensor, near_only: bool = False
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Stretching fabric and total physical strut length of each lattice.

    Args:
        adj: ``[B, 351]`` or ``[B, 27, 27]`` adjacency (entries in ``[0, 1]``).
        offsets: ``[B, 27]`` free-dof offsets.
        near_only: read only the 158 near-neighbour pairs (the only ones that can be beams of
            a valid lattice, :data:`~gnn_truss.design_space.NEAR_NEIGHBOUR_EDGES`; 2x faster,
            the dense encoder's default) instead of all 351.

    Returns:
        ``fabric [B, 6]``: :math:`F_{iijj}` for the pairs of :data:`FABRIC_COMPONENTS`
        (dimensionless, in ``[0, 1]``; zero for a lattice without struts), and
        ``length [B]``: the total length of the physical struts of the cell of side 2
        (octant units).
    """
    from .encoder import dense_edge_features, dense_positions  # the encoder's own geometry

    i, j, k = (torch.tensor(v, device=adj.device) for v in _node_pairs(near_only))
    a = _pairs(adj, i, j, k)
    if offsets.ndim != 2 or offsets.shape[-1] != ds.NUM_FREE_DOFS or \
            offsets.shape[0] != a.shape[0]:
        raise ValueError(f"offsets must be [{a.shape[0]}, {ds.NUM_FREE_DOFS}], got "
                         f"{tuple(offsets.shape)}")
    offsets = offsets.to(a.dtype)
    e = dense_edge_features(offsets, i, j)  # [B, P, 4]: length, unit direction i -> j
    length, n = e[..., 0], e[..., 1:]
    with torch.no_grad():
        p = dense_positions(offsets)
        pi, pj = p[:, i], p[:, j]
        on0 = (pi.abs() < _PLANE_TOL) & (pj.abs() < _PLANE_TOL)
        on1 = ((pi - 1).abs() < _PLANE_TOL) & ((pj - 1).abs() < _PLANE_TOL)
        images = 8.0 / 2.0 ** (on0 | on1).sum(-1).to(a.dtype)  # [B, P]
    wl = a * images * length
    total = wl.sum(-1)
    n2 = n * n
    full = torch.einsum("bp,bpk,bpm->bkm", wl, n2, n2)  # [B, 3, 3]: F_kkmm
    c1, c2 = (torch.tensor(c, device=a.device) for c in zip(*FABRIC_COMPONENTS))
    fabric = full[:, c1, c2]
    fabric = fabric / torch.where(total > 0, total, torch.ones_like(total))[..., None]
    return fabric, total


def physics_features(adj: torch.Tensor, offsets: torch.Tensor, near_only: bool = False
                     ) -> torch.Tensor:
    """Readout features ``[B, 13]``: ``3 F`` (about ``[0, 1]``), ``asinh(F / 1e-3) / 4``
    (logarithmic above 1e-3, about ``[0, 2]``) for the six fabric components of
    :func:`stretching_fabric`, and ``log(total length) / 4`` (length floored at 1e-3).
    ``near_only``: as in :func:`stretching_fabric`."""
    fabric, total = stretching_fabric(adj, offsets, near_only)
    return torch.cat([3.0 * fabric, torch.asinh(fabric / 1e-3) / 4.0,
                      torch.log(total.clamp_min(1e-3))[..., None] / 4.0], dim=-1)
