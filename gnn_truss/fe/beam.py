"""Linear 3D Timoshenko beam element with a circular cross-section.

Exact end-load stiffness (Cook, Malkus, Plesha & Witt, *Concepts and Applications of Finite
Element Analysis*, 4th ed., sec. 2.4 and 12.2; Przemieniecki, *Theory of Matrix Structural
Analysis*, 1968): in the local frame (axis ``x`` along the beam) with node dofs
``(u_x, u_y, u_z, theta_x, theta_y, theta_z)`` and element dofs ``[node i | node j]``

* axial ``EA/L``, torsion ``GJ/L``,
* bending in each plane ``12EI/((1+Phi)L^3)``, ``6EI/((1+Phi)L^2)``,
  ``(4+Phi)EI/((1+Phi)L)``, ``(2-Phi)EI/((1+Phi)L)``,

with ``A = pi r^2``, ``I = pi r^4 / 4``, ``J = pi r^4 / 2``, ``G = E / (2 (1 + nu))``,
``Phi = 12 E I k / (A G L^2)`` and Cowper's form factor for a circle
``k = (7 + 6 nu) / (6 (1 + nu))``. For unit ``E = G = k = A = I = J = L = 1`` the strain
energies ``1/2 u.K.u`` are 0.5 (unit axial), 6/13 (unit lateral end displacement), 0.5 (unit
twist) and 8/13 (unit end rotation in bending).

All functions are vectorized over a leading element axis and work in float64.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Section", "circular_section", "cowper_factor", "local_stiffness", "local_frame",
           "transformation", "global_stiffness", "element_stiffness"]


@dataclass(frozen=True)
class Section:
    """Section and material constants, each a scalar or an ``[M]`` array.

    Attributes: ``E`` Young's modulus, ``G`` shear modulus, ``A`` area, ``I`` second moment of
    area (both bending axes), ``J`` polar moment, ``k`` shear form factor (``Phi`` uses
    ``A / k`` as shear area).
    """

    E: np.ndarray | float
    G: np.ndarray | float
    A: np.ndarray | float
    I: np.ndarray | float  # noqa: E741
    J: np.ndarray | float
    k: np.ndarray | float


def cowper_factor(nu):
    """Cowper's shear form factor of a circular section, ``k = (7 + 6 nu) / (6 (1 + nu))``."""
    return (7.0 + 6.0 * nu) / (6.0 * (1.0 + nu))


def circular_section(radius, E: float = 1.0, nu: float = 0.3) -> Section:
    """Section constants of a solid circular strut of ``radius`` (scalar or ``[M]``)."""
    r = np.asarray(radius, dtype=np.float64)
    return Section(E=E, G=E / (2.0 * (1.0 + nu)), A=np.pi * r**2, I=np.pi * r**4 / 4.0,
                   J=np.pi * r**4 / 2.0, k=cowper_factor(nu))


def local_stiffness(length, sec: Section) -> np.ndarray:
    """Timoshenko element stiffness in the local frame.

    Args:
        length: ``[M]`` element lengths.
        sec: section constants (scalars or ``[M]``).

    Returns:
        ``[M, 12, 12]`` symmetric stiffness.
    """
    L = np.atleast_1d(np.asarray(length, dtype=np.float64))
    E, G, A, I, J, k = (np.broadcast_to(np.asarray(v, dtype=np.float64), L.shape)
                        for v in (sec.E, sec.G, sec.A, sec.I, sec.J, sec.k))
    phi = 12.0 * E * I * k / (A * G * L**2)
    ka = E * A / L
    kt = G * J / L
    a = 12.0 * E * I / ((1.0 + phi) * L**3)
    b = 6.0 * E * I / ((1.0 + phi) * L**2)
    c = (4.0 + phi) * E * I / ((1.0 + phi) * L)
    d = (2.0 - phi) * E * I / ((1.0 + phi) * L)
    K = np.zeros(L.shape + (12, 12))
    # axial and torsion
    for p, val in ((0, ka), (3, kt)):
        K[:, p, p] = K[:, p + 6, p + 6] = val
        K[:, p, p + 6] = K[:, p + 6, p] = -val
    # bending in the x-y plane: (v_i, theta_z_i, v_j, theta_z_j) and in the x-z plane:
    # (w_i, theta_y_i, w_j, theta_y_j); the sign of the coupling flips between the planes.
    for (v1, t1, v2, t2), s in (((1, 5, 7, 11), 1.0), ((2, 4, 8, 10), -1.0)):
        block = np.stack([
            np.stack([a, s * b, -a, s * b], -1),
            np.stack([s * b, c, -s * b, d], -1),
            np.stack([-a, -s * b, a, -s * b], -1),
            np.stack([s * b, d, -s * b, c], -1),
        ], -2)
        idx = np.array([v1, t1, v2, t2])
        K[:, idx[:, None], idx[None, :]] = block
    return K


def local_frame(chord: np.ndarray) -> np.ndarray:
    """Right-handed orthonormal local frames, rows ``(e1, e2, e3)`` with ``e1`` along the beam.

    ``e2`` is the component of global ``z`` orthogonal to ``e1`` (global ``x`` for beams within
    ~25 degrees of ``z``). A circular section makes the stiffness independent of this choice.

    Args:
        chord: ``[M, 3]`` beam vectors (end j minus end i).

    Returns:
        ``[M, 3, 3]`` rotation matrices ``R`` with ``R @ v`` = local components of ``v``.
    """
    chord = np.atleast_2d(np.asarray(chord, dtype=np.float64))
    L = np.linalg.norm(chord, axis=1)
    if np.any(L <= 0) or not np.all(np.isfinite(L)):
        raise ValueError("beam of zero or non-finite length")
    e1 = chord / L[:, None]
    ref = np.where((np.abs(e1[:, 2]) < 0.9)[:, None], np.array([0.0, 0.0, 1.0]),
                   np.array([1.0, 0.0, 0.0]))
    e2 = ref - np.einsum("md,md->m", ref, e1)[:, None] * e1
    e2 /= np.linalg.norm(e2, axis=1)[:, None]
    e3 = np.cross(e1, e2)
    return np.stack([e1, e2, e3], axis=1)


def transformation(R: np.ndarray) -> np.ndarray:
    """``[M, 12, 12]`` block-diagonal ``diag(R, R, R, R)`` taking global to local dofs."""
    T = np.zeros(R.shape[:-2] + (12, 12))
    for b in range(4):
        T[..., 3 * b:3 * b + 3, 3 * b:3 * b + 3] = R
    return T


def global_stiffness(chord: np.ndarray, sec: Section) -> np.ndarray:
    """Element stiffness in global axes, ``K = T^T K_local T``.

    Args:
        chord: ``[M, 3]`` beam vectors.
        sec: section constants (scalars or ``[M]``).

    Returns:
        ``[M, 12, 12]``.
    """
    chord = np.atleast_2d(np.asarray(chord, dtype=np.float64))
    R = local_frame(chord)
    Kl = local_stiffness(np.linalg.norm(chord, axis=1), sec)
    T = transformation(R)
    return np.matmul(np.matmul(T.transpose(0, 2, 1), Kl), T)


def element_stiffness(chord: np.ndarray, radius, E: float = 1.0, nu: float = 0.3) -> np.ndarray:
    """Global ``[M, 12, 12]`` stiffness of circular Timoshenko struts of ``radius``."""
    return global_stiffness(chord, circular_section(radius, E, nu))
