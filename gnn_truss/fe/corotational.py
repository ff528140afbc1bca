"""Corotational 3D Timoshenko beam element for large rotations.

The element of Crisfield (1990) and Battini & Pacoste (2002): the rigid motion of each element
is carried by a corotated frame, and the deformation measured in that frame is fed to the
linear Timoshenko element of :mod:`.beam`. Sources:

* M. A. Crisfield, "A consistent co-rotational formulation for non-linear, three-dimensional,
  beam-elements", *Comput. Methods Appl. Mech. Engrg.* 81 (1990) 131-150;
* J.-M. Battini and C. Pacoste, "Co-rotational beam elements with warping effects in
  instability problems", *Comput. Methods Appl. Mech. Engrg.* 191 (2002) 1755-1789.

**State.** Each element end ``a = 1, 2`` has a current position ``x_a = X_a + u_a`` and a rotation
matrix ``R_a`` (total rotation of the nodal triad from the initial configuration). The initial
element frame ``E0 = [e1 e2 e3]`` (columns; ``e1`` along the beam, ``E0 = beam.local_frame^T``)
and length ``L0 = |X_2 - X_1|`` are fixed.

**Corotated frame** ``R_r = [r1 r2 r3]``::

    l  = |x_2 - x_1|,   r1 = (x_2 - x_1) / l,
    q  = (R_1 e2 + R_2 e2) / 2,   r3 = r1 x q / |r1 x q|,   r2 = r3 x r1.

**Local deformations** ``p = (u_l, theta_1, theta_2)`` (7 numbers)::

    u_l = l - L0,   theta_a = log(R_r^T R_a E0)   (rotation vector, components in R_r).

**Energy** ``W = 1/2 p . K_l p`` with ``K_l = beam.local_stiffness(L0)[ix][:, ix]``,
``ix = (6, 3, 4, 5, 9, 10, 11)`` (axial displacement of end j, rotations of ends i and j): the
exact linear Timoshenko element with end i translation and the transverse translations of end j
removed (they are zero in the corotated frame; the linear element is invariant under
infinitesimal rigid motions, so nothing is lost). The axial force is ``N = EA u_l / L0``.

**Increments, forces, tangent.** A node's state is perturbed as ``x <- x + du`` and
``R <- expm(skew(dphi)) R`` (spatial spin, :func:`update_rotation`). With ``a = (du_1, dphi_1,
du_2, dphi_2)`` (12 numbers, the dof order of :mod:`.beam`) the internal force and tangent are ::

    f = dW/da |_(a=0),    K = d^2 W / da^2 |_(a=0),

computed by automatic differentiation (torch, float64, batched over the elements).
``f`` holds the global end forces and the spatial end moments. ``K`` is symmetric by
construction; it is the second variation of the energy, so its loss of positive definiteness at
an equilibrium signals instability. The exact linearization of the spatial force,
``d f(x + du, expm(skew(dphi)) R) / da``, is ``K - 1/2 diag(0, skew(m_1), 0, skew(m_2))``
(``m_a`` the end moments; ``symmetric=False`` returns it). Summed over the elements at a node
the correction is ``-1/2 skew(sum m) = -1/2 skew(M_ext)``: it vanishes at equilibrium wherever
no external moment acts (e.g. the periodic cell), so the symmetric ``K`` keeps Newton's
quadratic convergence there.

**Validity.** The log map assumes local rotations below ``pi`` (deformational rotations of a
beam element, which are small to moderate); the rigid rotations are unrestricted. Both the log
map and Rodrigues' formula switch to Taylor series near zero angle so that the first and
second derivatives are exact there (the initial configuration has zero local rotations).

**Accuracy** (``tests/test_fe_corotational.py``). The tangent at the initial configuration is
:func:`.beam.global_stiffness` to round-off. Since ``K_l`` refers to ``L0`` and the chord
rotation is resisted by ``N`` times the current length, a strut under axial force ``N`` buckles,
as the mesh is refined, at ``N (1 - N / EA) = P_E / (1 + P_E k / (G A))`` (Euler load with
Engesser's shear correction, shortened by the prebuckling strain); the discrete loads converge
to it at the rate ``h^2`` (16 elements: 0.3 % for a pinned strut). Pure bending is exact: an end
moment rolls a cantilever onto a circle with the nodes exactly on it.

Shapes: ``M`` elements; positions ``[M, 2, 3]``, rotations ``[M, 2, 3, 3]``, forces ``[M, 12]``,
tangents ``[M, 12, 12]``. Units follow the inputs (length, force from ``E`` x length^2). Cost:
about 0.1 s for the forces and tangents of 1,000 elements on one CPU thread.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .beam import Section, local_frame, local_stiffness

__all__ = ["CorotationalBeams", "corotational_beams", "initial_state", "skew", "expm_so3",
           "log_so3", "update_rotation", "local_deformations", "element_energy",
           "element_forces_and_tangent", "element_forces"]

#: Rows and columns of the 12 x 12 local stiffness kept in ``K_l``: ``(u_l, theta_1, theta_2)``.
LOCAL_DOFS = (6, 3, 4, 5, 9, 10, 11)

# Taylor coefficients, in t = |phi|^2, of sin(|phi|)/|phi| and (1 - cos|phi|)/|phi|^2.
_SIN_SERIES = (1.0, -1.0 / 6, 1.0 / 120, -1.0 / 5040, 1.0 / 362880, -1.0 / 39916800)
_COS_SERIES = (0.5, -1.0 / 24, 1.0 / 720, -1.0 / 40320, 1.0 / 3628800, -1.0 / 479001600)
# Taylor coefficients, in x = 1 - cos(theta), of theta / (2 sin(theta)).
_LOG_SERIES = (0.5, 1.0 / 6, 1.0 / 15, 1.0 / 35, 4.0 / 315, 4.0 / 693)
_SMALL = 1e-2  # switch to the series below t = 1e-2 (expm) or x = 1e-2 (log), truncation < 1e-15


@dataclass(frozen=True)
class CorotationalBeams:
    """Initial data of ``M`` corotational beam elements (float64 numpy arrays).

    Attributes:
        X: ``[M, 2, 3]`` initial end positions.
        E0: ``[M, 3, 3]`` initial element frames, columns ``(e1, e2, e3)``, ``e1`` along the beam.
        L0: ``[M]`` initial lengths.
        K_l: ``[M, 7, 7]`` local deformational stiffness acting on ``(u_l, theta_1, theta_2)``.
    """

    X: np.ndarray
    E0: np.ndarray
    L0: np.ndarray
    K_l: np.ndarray

    def __len__(self) -> int:
        return len(self.L0)


def corotational_beams(X1, X2, sec: Section) -> CorotationalBeams:
    """Element data from the initial end positions.

    Args:
        X1, X2: ``[M, 3]`` initial positions of ends i and j.
        sec: section constants (scalars or ``[M]``), see :func:`.beam.circular_section`.

    Returns:
        :class:`CorotationalBeams`.
    """
    X1 = np.atleast_2d(np.asarray(X1, dtype=np.float64))
    X2 = np.atleast_2d(np.asarray(X2, dtype=np.float64))
    if X1.shape != X2.shape or X1.shape[-1] != 3:
        raise ValueError(f"X1 and X2 must both be [M, 3], got {X1.shape} and {X2.shape}")
    chord = X2 - X1
    E0 = local_frame(chord).transpose(0, 2, 1)  # raises on zero length
    L0 = np.linalg.norm(chord, axis=1)
    ix = np.array(LOCAL_DOFS)
    K_l = local_stiffness(L0, sec)[:, ix[:, None], ix[None, :]]
    return CorotationalBeams(X=np.stack([X1, X2], axis=1), E0=E0, L0=L0, K_l=K_l)


def initial_state(data: CorotationalBeams) -> tuple[np.ndarray, np.ndarray]:
    """Undeformed state: positions ``[M, 2, 3]`` and identity rotations ``[M, 2, 3, 3]``."""
    R = np.broadcast_to(np.eye(3), data.X.shape[:2] + (3, 3)).copy()
    return data.X.copy(), R


# ----------------------------------------------------------------------------- rotations

def _tensor(a) -> torch.Tensor:
    """float64 tensor of an array-like (numpy views with negative strides are copied)."""
    if isinstance(a, torch.Tensor):
        return a.to(torch.float64)
    return torch.as_tensor(np.ascontiguousarray(a, dtype=np.float64))


def skew(v: torch.Tensor) -> torch.Tensor:
    """``[..., 3, 3]`` skew matrices with ``skew(v) @ w = v x w``."""
    z = torch.zeros_like(v[..., 0])
    return torch.stack([
        torch.stack([z, -v[..., 2], v[..., 1]], -1),
        torch.stack([v[..., 2], z, -v[..., 0]], -1),
        torch.stack([-v[..., 1], v[..., 0], z], -1),
    ], -2)


def _poly(coeffs, t):
    out = torch.zeros_like(t) + coeffs[-1]
    for c in coeffs[-2::-1]:
        out = out * t + c
    return out


def expm_so3(phi: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula ``expm(skew(phi)) = I + A S + B S^2``, ``A = sin t/t``,
    ``B = (1 - cos t)/t^2``, ``t = |phi|``; smooth (all derivatives exact) at ``phi = 0``.

    Args:
        phi: ``[..., 3]`` rotation vectors (radians).

    Returns:
        ``[..., 3, 3]`` rotation matrices.
    """
    t2 = (phi * phi).sum(-1)
    small = t2 < _SMALL
    t2_safe = torch.where(small, torch.ones_like(t2), t2)  # keep the unused branch finite
    t = torch.sqrt(t2_safe)
    A = torch.where(small, _poly(_SIN_SERIES, t2), torch.sin(t) / t)
    B = torch.where(small, _poly(_COS_SERIES, t2), (1.0 - torch.cos(t)) / t2_safe)
    S = skew(phi)
    eye = torch.eye(3, dtype=phi.dtype, device=phi.device)
    return eye + A[..., None, None] * S + B[..., None, None] * (S @ S)


def log_so3(Q: torch.Tensor) -> torch.Tensor:
    """Rotation vector of rotation matrices (principal log, angle below ``pi``).

    ``theta = atan2(|v|/2, (tr Q - 1)/2)``, ``log Q = theta / (2 sin theta) v`` with
    ``v = (Q32 - Q23, Q13 - Q31, Q21 - Q12)``; near zero angle ``theta / (2 sin theta)`` is a
    series in ``1 - cos theta``, so derivatives of all orders are exact at the identity.

    Args:
        Q: ``[..., 3, 3]`` rotation matrices.

    Returns:
        ``[..., 3]`` rotation vectors.
    """
    v = torch.stack([Q[..., 2, 1] - Q[..., 1, 2], Q[..., 0, 2] - Q[..., 2, 0],
                     Q[..., 1, 0] - Q[..., 0, 1]], -1)
    c = 0.5 * (Q[..., 0, 0] + Q[..., 1, 1] + Q[..., 2, 2] - 1.0)
    x = 1.0 - c
    small = x < _SMALL
    s2 = 0.25 * (v * v).sum(-1)
    s = torch.sqrt(torch.where(small, torch.ones_like(s2), s2))
    c_safe = torch.where(small, torch.zeros_like(c), c)
    f = torch.where(small, _poly(_LOG_SERIES, x), torch.atan2(s, c_safe) / (2.0 * s))
    return f[..., None] * v


def update_rotation(R, dphi):
    """Spatial rotation update ``R <- expm(skew(dphi)) @ R``.

    Args:
        R: ``[..., 3, 3]`` rotations (numpy or torch).
        dphi: ``[..., 3]`` spatial rotation increments (radians).

    Returns:
        ``[..., 3, 3]``, numpy if ``R`` is numpy.
    """
    as_numpy = not isinstance(R, torch.Tensor)
    out = expm_so3(_tensor(dphi)) @ _tensor(R)
    return out.numpy() if as_numpy else out


# ----------------------------------------------------------------------------- element

def local_deformations(x: torch.Tensor, R: torch.Tensor, E0: torch.Tensor,
                       L0: torch.Tensor) -> torch.Tensor:
    """Local deformations ``p = (u_l, theta_1, theta_2)`` of the corotational element.

    Args:
        x: ``[..., 2, 3]`` current end positions.
        R: ``[..., 2, 3, 3]`` current end rotations.
        E0: ``[..., 3, 3]`` initial frames (columns).
        L0: ``[...]`` initial lengths.

    Returns:
        ``[..., 7]``.
    """
    d = x[..., 1, :] - x[..., 0, :]
    length = torch.sqrt((d * d).sum(-1))
    r1 = d / length[..., None]
    triads = R @ E0[..., None, :, :]  # [..., 2, 3, 3]: current nodal triads
    q = 0.5 * (triads[..., 0, :, 1] + triads[..., 1, :, 1])
    r3 = torch.linalg.cross(r1, q)
    r3 = r3 / torch.sqrt((r3 * r3).sum(-1))[..., None]
    r2 = torch.linalg.cross(r3, r1)
    Rr = torch.stack([r1, r2, r3], -1)
    theta = log_so3(Rr.transpose(-1, -2)[..., None, :, :] @ triads)  # [..., 2, 3]
    return torch.cat([(length - L0)[..., None], theta.flatten(-2)], -1)


def _to_torch(data: CorotationalBeams):
    return tuple(_tensor(a) for a in (data.E0, data.L0, data.K_l))


def _energy(p: torch.Tensor, K_l: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.einsum("...i,...ij,...j->...", p, K_l, p)


def element_energy(x_cur, R_cur, data: CorotationalBeams):
    """Strain energy ``W = 1/2 p . K_l p`` of each element.

    Args:
        x_cur: ``[M, 2, 3]`` current end positions.
        R_cur: ``[M, 2, 3, 3]`` current end rotations.
        data: element data.

    Returns:
        ``[M]`` energies (numpy if ``x_cur`` is numpy).
    """
    as_numpy = not isinstance(x_cur, torch.Tensor)
    E0, L0, K_l = _to_torch(data)
    x, R = _tensor(x_cur), _tensor(R_cur)
    W = _energy(local_deformations(x, R, E0, L0), K_l)
    return W.detach().numpy() if as_numpy else W


def _incremented_energy(a, x, R, E0, L0, K_l):
    """``[M]`` energies after the increments ``a = (du_1, dphi_1, du_2, dphi_2)`` ``[M, 12]``."""
    a = a.reshape(-1, 2, 6)
    return _energy(local_deformations(x + a[..., :3], expm_so3(a[..., 3:]) @ R, E0, L0), K_l)


def element_forces_and_tangent(x_cur, R_cur, data: CorotationalBeams, symmetric: bool = True):
    """Internal end forces and consistent tangent of the corotational elements.

    ``f = dW/da``, ``K = d^2W/da^2`` at ``a = 0``, with ``a = (du_1, dphi_1, du_2, dphi_2)`` the
    increments ``x <- x + du``, ``R <- expm(skew(dphi)) R`` (see the module docstring).

    Args:
        x_cur: ``[M, 2, 3]`` current end positions.
        R_cur: ``[M, 2, 3, 3]`` current end rotations.
        data: element data from :func:`corotational_beams`.
        symmetric: return the symmetric second variation ``K`` (default) or, if ``False``, the
            exact linearization ``K - 1/2 diag(0, skew(m_1), 0, skew(m_2))`` of ``f``.

    Returns:
        ``(f [M, 12], K [M, 12, 12])``: global end forces and spatial end moments, and the
        tangent; numpy if ``x_cur`` is numpy, else torch float64 (detached).
    """
    as_numpy = not isinstance(x_cur, torch.Tensor)
    E0, L0, K_l = _to_torch(data)
    x, R = _tensor(x_cur).detach(), _tensor(R_cur).detach()
    if x.shape != (len(L0), 2, 3) or R.shape != (len(L0), 2, 3, 3):
        raise ValueError(f"expected x [{len(L0)}, 2, 3] and R [{len(L0)}, 2, 3, 3], "
                         f"got {tuple(x.shape)} and {tuple(R.shape)}")
    if len(L0) == 0:
        f, K = torch.zeros(0, 12, dtype=torch.float64), torch.zeros(0, 12, 12, dtype=torch.float64)
        return (f.numpy(), K.numpy()) if as_numpy else (f, K)
    # The elements are independent: the gradient of the summed energy holds every element's
    # force, and 12 batched backward passes (one per dof) give the 12 x 12 blocks of the Hessian.
    with torch.enable_grad():
        a = torch.zeros(len(L0), 12, dtype=torch.float64, requires_grad=True)
        W = _incremented_energy(a, x, R, E0, L0, K_l).sum()
        (f,) = torch.autograd.grad(W, a, create_graph=True)
        seeds = torch.eye(12, dtype=torch.float64)[:, None, :].expand(12, len(L0), 12)
        (K,) = torch.autograd.grad(f, a, seeds, is_grads_batched=True)
    f, K = f.detach(), K.detach().permute(1, 0, 2)
    K = 0.5 * (K + K.transpose(-1, -2))  # symmetric to round-off already; make it exact
    if not symmetric:
        for end in (0, 1):
            r = slice(6 * end + 3, 6 * end + 6)
            K[:, r, r] -= 0.5 * skew(f[:, r])
    return (f.numpy(), K.numpy()) if as_numpy else (f, K)


def element_forces(x_cur, R_cur, data: CorotationalBeams):
    """Internal end forces ``f = dW/da`` at ``a = 0`` only (one backward pass; see
    :func:`element_forces_and_tangent`).

    Returns:
        ``[M, 12]`` (numpy if ``x_cur`` is numpy).
    """
    as_numpy = not isinstance(x_cur, torch.Tensor)
    E0, L0, K_l = _to_torch(data)
    x, R = _tensor(x_cur).detach(), _tensor(R_cur).detach()
    if len(L0) == 0:
        f = torch.zeros(0, 12, dtype=torch.float64)
        return f.numpy() if as_numpy else f
    with torch.enable_grad():
        a = torch.zeros(len(L0), 12, dtype=torch.float64, requires_grad=True)
        W = _incremented_energy(a, x, R, E0, L0, K_l).sum()
        (f,) = torch.autograd.grad(W, a)
    f = f.detach()
    return f.numpy() if as_numpy else f
