"""Elastic properties derived from an effective (homogenized) stiffness.

Pure functions on ``[..., 6, 6]`` stiffness matrices, for numpy arrays *and* torch tensors
(differentiable: the inverse-design loop back-propagates through them). Any leading batch
shape is allowed; every result keeps it.

Conventions (``SPEC.md`` sections 1 and 3):

* Voigt order ``11, 22, 33, 23, 31, 12`` with engineering shear strains
  (``gamma_23 = 2 eps_23``), so ``C44 = C2323`` and, for an orthotropic material,
  ``S44 = 1 / G23``.
* Orthotropic 9-vector ``s9 = (C11, C12, C13, C22, C23, C33, C44, C55, C66)``
  ``= (C1111, C1122, C1133, C2222, C2233, C3333, C2323, C3131, C1212)``.
* Compliance ``S = C^-1`` (Voigt, engineering shears). Young's moduli ``E_a = 1 / S_aa``,
  shear moduli ``G23 = 1 / S44``, ``G31 = 1 / S55``, ``G12 = 1 / S66``.
* Poisson's ratios ``nu_ab = -S_ab / S_aa`` (e.g. ``nu21 = -S12 / S22``,
  ``nu12 = -S21 / S11``). Under uniaxial stress ``sigma`` along ``a`` the strains are
  ``eps_a = S_aa sigma`` and ``eps_b = S_ba sigma``, so ``nu_ab = -eps_b / eps_a``: load along
  ``a``, lateral contraction along ``b``. Reciprocity: ``nu_ab / E_a = nu_ba / E_b``.
* Voigt and Reuss averages and the universal anisotropy index of Ranganathan and
  Ostoja-Starzewski, Phys. Rev. Lett. 101, 055504 (2008), doi:10.1103/PhysRevLett.101.055504.

Units: moduli carry the unit of ``C`` (here the base-material Young's modulus ``E_s = 1``);
Poisson's ratios, ``A_U`` and ``KV_GV`` are dimensionless.

Bad input raises ``ValueError``: wrong shape, NaN/inf, a non-symmetric ``C`` (beyond
:data:`SYMMETRY_RTOL`) or a singular ``C`` (condition number beyond what the dtype can invert,
see :data:`SINGULAR_RCOND_FACTOR`). The value checks read detached values only, so they never
touch the autograd graph.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

__all__ = [
    "SYMMETRY_RTOL", "ORTHOTROPY_RTOL", "SINGULAR_RCOND_FACTOR", "ENGINEERING_CONSTANT_NAMES",
    "stiffness_from_vector", "vector_from_stiffness", "compliance", "compliance_tensor",
    "engineering_constants", "voigt_bulk_modulus", "voigt_shear_modulus", "reuss_bulk_modulus",
    "reuss_shear_modulus", "universal_anisotropy", "bulk_to_shear_ratio", "all_properties",
    "property_names", "directional_youngs_modulus", "ElasticSurface", "elastic_surface",
]

#: Largest admitted ``max|C - C^T| / max|C|`` per matrix (at least ``100 eps(dtype)``).
SYMMETRY_RTOL = 1e-6
#: Largest admitted ``max|C_non-orthotropic| / max|C|`` in :func:`vector_from_stiffness`.
ORTHOTROPY_RTOL = 1e-6
#: ``C`` is singular when ``sigma_min(C) <= SINGULAR_RCOND_FACTOR * eps(dtype) * sigma_max(C)``
#: (condition number above ~4.5e13 in float64, ~8.4e4 in float32).
SINGULAR_RCOND_FACTOR = 100.0

#: Keys of :func:`engineering_constants`, in order.
ENGINEERING_CONSTANT_NAMES = ("E1", "E2", "E3", "G23", "G31", "G12",
                              "nu12", "nu13", "nu21", "nu23", "nu31", "nu32")
_AVERAGE_NAMES = ("K_V", "G_V", "K_R", "G_R", "A_U", "KV_GV")

# (row, col) of the nine orthotropic components in the order of the 9-vector.
_ORTHO_IJ = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2), (3, 3), (4, 4), (5, 5))
# Voigt index of the tensor index pair (i, j): 11->0, 22->1, 33->2, 23->3, 31->4, 12->5.
_VOIGT = np.array([[0, 5, 4], [5, 1, 3], [4, 3, 2]])


# --------------------------------------------------------------------------- backend helpers

def _is_torch(x) -> bool:
    return isinstance(x, torch.Tensor)


def _as_array(x, name: str):
    """Torch floating tensors pass through; anything else becomes a float64 numpy array."""
    if _is_torch(x):
        if not torch.is_floating_point(x):
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
        return x
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a real numeric array: {err}") from None


def _stack(xs, axis: int):
    return torch.stack(xs, dim=axis) if _is_torch(xs[0]) else np.stack(xs, axis=axis)


def _values(x) -> np.ndarray:
    """Detached float64 numpy copy of the values (for checks and plotting only)."""
    if _is_torch(x):
        return x.detach().cpu().to(torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _eps(x) -> float:
    return float(torch.finfo(x.dtype).eps) if _is_torch(x) else float(np.finfo(x.dtype).eps)


def _transpose(x):
    return x.transpose(-1, -2) if _is_torch(x) else np.swapaxes(x, -1, -2)


def _inv(x):
    return torch.linalg.inv(x) if _is_torch(x) else np.linalg.inv(x)


def _einsum(eq: str, *xs):
    return torch.einsum(eq, *xs) if _is_torch(xs[0]) else np.einsum(eq, *xs)


# --------------------------------------------------------------------------- input checks

def _first_bad(mask: np.ndarray) -> str:
    idx = tuple(int(i) for i in np.argwhere(mask)[0])
    return f"[{', '.join(map(str, idx))}]" if idx else ""


def _check_finite(x, name: str) -> None:
    bad = ~np.isfinite(_values(x))
    if bad.any():
        raise ValueError(f"{name} contains NaN or inf (first at index {_first_bad(bad) or '[]'})")


def _check_stiffness(C, name: str = "C"):
    """Shape ``[..., 6, 6]``, finite, symmetric, non-singular; returns the validated array."""
    C = _as_array(C, name)
    if C.ndim < 2 or tuple(C.shape[-2:]) != (6, 6):
        raise ValueError(f"{name} must have shape [..., 6, 6], got {tuple(C.shape)}")
    _check_finite(C, name)
    v = _values(C)
    if v.size == 0:
        return C
    rtol = max(SYMMETRY_RTOL, 100 * _eps(C))
    scale = np.abs(v).max(axis=(-2, -1))
    asym = np.abs(v - np.swapaxes(v, -1, -2)).max(axis=(-2, -1))
    bad = asym > rtol * scale
    if bad.any():
        where = _first_bad(bad)
        raise ValueError(f"{name}{where} is not symmetric: max|C - C^T| = "
                         f"{float(asym[bad].flat[0]):.3e} > {rtol:g} * max|C|")
    sv = np.linalg.svd(v, compute_uv=False)
    bad = sv[..., -1] <= SINGULAR_RCOND_FACTOR * _eps(C) * sv[..., 0]
    if bad.any():
        where = _first_bad(bad)
        s = sv[bad][0]
        cond = s[0] / s[-1] if s[-1] > 0 else np.inf
        raise ValueError(f"{name}{where} is singular (condition number {cond:.3e}); "
                         "the truss has a mechanism or the stiffness is degenerate")
    return C


def _check_directions(d, name: str = "directions"):
    d = _as_array(d, name)
    if d.ndim < 1 or d.shape[-1] != 3:
        raise ValueError(f"{name} must have shape [..., 3], got {tuple(d.shape)}")
    _check_finite(d, name)
    if (np.linalg.norm(_values(d), axis=-1) == 0).any():
        raise ValueError(f"{name} contains a zero vector")
    return d


# --------------------------------------------------------------------------- stiffness <-> S9

def stiffness_from_vector(s9):
    """Orthotropic Voigt stiffness from its nine independent components.

    Args:
        s9: ``[..., 9]`` = ``(C11, C12, C13, C22, C23, C33, C44, C55, C66)``.

    Returns:
        ``[..., 6, 6]`` symmetric ``C`` with zeros outside the orthotropic pattern; same
        backend (numpy or torch, differentiable) as ``s9``.
    """
    s9 = _as_array(s9, "s9")
    if s9.ndim < 1 or s9.shape[-1] != 9:
        raise ValueError(f"s9 must have shape [..., 9], got {tuple(s9.shape)}")
    _check_finite(s9, "s9")
    c11, c12, c13, c22, c23, c33, c44, c55, c66 = (s9[..., k] for k in range(9))
    z = c11 * 0
    rows = [[c11, c12, c13, z, z, z],
            [c12, c22, c23, z, z, z],
            [c13, c23, c33, z, z, z],
            [z, z, z, c44, z, z],
            [z, z, z, z, c55, z],
            [z, z, z, z, z, c66]]
    return _stack([_stack(r, -1) for r in rows], -2)


def vector_from_stiffness(C, rtol: float = ORTHOTROPY_RTOL):
    """Nine orthotropic components of a Voigt stiffness.

    Args:
        C: ``[..., 6, 6]`` stiffness (must be symmetric).
        rtol: largest admitted ``max|C_ij|`` outside the orthotropic pattern, relative to
            ``max|C|``; larger entries raise ``ValueError`` (the material is not orthotropic in
            the cell axes and the 9-vector would silently drop information).

    Returns:
        ``[..., 9]`` = ``(C11, C12, C13, C22, C23, C33, C44, C55, C66)``.
    """
    C = _as_array(C, "C")
    if C.ndim < 2 or tuple(C.shape[-2:]) != (6, 6):
        raise ValueError(f"C must have shape [..., 6, 6], got {tuple(C.shape)}")
    _check_finite(C, "C")
    v = _values(C)
    mask = np.ones((6, 6), dtype=bool)
    for i, j in _ORTHO_IJ:
        mask[i, j] = mask[j, i] = False
    off = np.abs(np.where(mask, v, 0.0)).max(axis=(-2, -1))
    bad = off > rtol * np.abs(v).max(axis=(-2, -1))
    if bad.any():
        raise ValueError(f"C{_first_bad(bad)} is not orthotropic in the cell axes: "
                         f"non-orthotropic entry {float(off[bad].flat[0]):.3e}")
    return _stack([C[..., i, j] for i, j in _ORTHO_IJ], -1)


# --------------------------------------------------------------------------- compliance

def _compliance_unchecked(C):
    S = _inv((C + _transpose(C)) / 2)
    return (S + _transpose(S)) / 2


def compliance(C):
    """Voigt compliance ``S = C^-1`` with engineering shear strains.

    The symmetric part of ``C`` is inverted and ``S`` is symmetrised, so reciprocity
    ``nu_ab / E_a = nu_ba / E_b`` holds to round-off.

    Args:
        C: ``[..., 6, 6]`` stiffness.

    Returns:
        ``[..., 6, 6]`` compliance, unit 1 / unit of ``C``; ``S44 = 1 / G23`` for an
        orthotropic material.
    """
    return _compliance_unchecked(_check_stiffness(C))


def _voigt_to_tensor(S):
    """``S_ijkl = S_IJ / (m_I m_J)``, ``m = 1`` for normal, 2 for shear Voigt indices."""
    m = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 2.0])
    scale = 1.0 / np.outer(m, m)
    rows, cols = _VOIGT[:, :, None, None], _VOIGT[None, None, :, :]
    if _is_torch(S):
        scale = torch.as_tensor(scale, dtype=S.dtype, device=S.device)
        rows = torch.as_tensor(rows, device=S.device)
        cols = torch.as_tensor(cols, device=S.device)
    return (S * scale)[..., rows, cols]


def compliance_tensor(C):
    """Fourth-order compliance tensor.

    ``S_ijkl = S_IJ * f``, ``f = 1`` if ``I, J <= 3``, ``1/2`` if one of them is a shear index,
    ``1/4`` if both are (engineering-shear Voigt convention: ``eps_I = S_IJ sigma_J`` with
    ``eps_4 = 2 eps_23`` ...).

    Args:
        C: ``[..., 6, 6]`` stiffness.

    Returns:
        ``[..., 3, 3, 3, 3]`` with all minor and major symmetries.
    """
    return _voigt_to_tensor(compliance(C))


# --------------------------------------------------------------------------- engineering constants

def _engineering_from_compliance(S) -> dict:
    out = {f"E{a + 1}": 1 / S[..., a, a] for a in range(3)}
    out.update(G23=1 / S[..., 3, 3], G31=1 / S[..., 4, 4], G12=1 / S[..., 5, 5])
    for a in range(3):
        for b in range(3):
            if a != b:
                out[f"nu{a + 1}{b + 1}"] = -S[..., a, b] / S[..., a, a]
    return {k: out[k] for k in ENGINEERING_CONSTANT_NAMES}


def engineering_constants(C) -> dict:
    """Young's moduli, shear moduli and Poisson's ratios in the cell axes.

    ``E_a = 1 / S_aa``; ``G23 = 1 / S44``, ``G31 = 1 / S55``, ``G12 = 1 / S66``;
    ``nu_ab = -S_ab / S_aa`` (load along ``a``, contraction along ``b``; ``nu21 = -S12 / S22``).

    Args:
        C: ``[..., 6, 6]`` stiffness.

    Returns:
        dict with keys :data:`ENGINEERING_CONSTANT_NAMES`, each ``[...]``.
    """
    return _engineering_from_compliance(compliance(C))


# --------------------------------------------------------------------------- Voigt / Reuss

def _trace_parts(M):
    """``(M11 + M22 + M33, M12 + M13 + M23, M44 + M55 + M66)``."""
    a = M[..., 0, 0] + M[..., 1, 1] + M[..., 2, 2]
    b = M[..., 0, 1] + M[..., 0, 2] + M[..., 1, 2]
    c = M[..., 3, 3] + M[..., 4, 4] + M[..., 5, 5]
    return a, b, c


def _voigt_bulk(C):
    a, b, _ = _trace_parts(C)
    return (a + 2 * b) / 9


def _voigt_shear(C):
    a, b, c = _trace_parts(C)
    return (a - b + 3 * c) / 15


def _reuss_bulk(S):
    a, b, _ = _trace_parts(S)
    return 1 / (a + 2 * b)


def _reuss_shear(S):
    a, b, c = _trace_parts(S)
    return 15 / (4 * a - 4 * b + 3 * c)


def _averages(C, S) -> dict:
    kv, gv, kr, gr = _voigt_bulk(C), _voigt_shear(C), _reuss_bulk(S), _reuss_shear(S)
    return {"K_V": kv, "G_V": gv, "K_R": kr, "G_R": gr,
            "A_U": 5 * gv / gr + kv / kr - 6, "KV_GV": kv / gv}


def voigt_bulk_modulus(C):
    """``K_V = (C11 + C22 + C33 + 2 (C12 + C13 + C23)) / 9``; ``[..., 6, 6] -> [...]``."""
    return _voigt_bulk(_check_stiffness(C))


def voigt_shear_modulus(C):
    """``G_V = (C11 + C22 + C33 - (C12 + C13 + C23) + 3 (C44 + C55 + C66)) / 15``;
    ``[..., 6, 6] -> [...]``."""
    return _voigt_shear(_check_stiffness(C))


def reuss_bulk_modulus(C):
    """``K_R = 1 / (S11 + S22 + S33 + 2 (S12 + S13 + S23))``; ``[..., 6, 6] -> [...]``."""
    return _reuss_bulk(compliance(C))


def reuss_shear_modulus(C):
    """``G_R = 15 / (4 (S11 + S22 + S33) - 4 (S12 + S13 + S23) + 3 (S44 + S55 + S66))``;
    ``[..., 6, 6] -> [...]``."""
    return _reuss_shear(compliance(C))


def universal_anisotropy(C):
    """Universal anisotropy index ``A_U = 5 G_V / G_R + K_V / K_R - 6`` (>= 0, 0 iff isotropic).

    Ranganathan & Ostoja-Starzewski, PRL 101, 055504 (2008). ``[..., 6, 6] -> [...]``.
    """
    C = _check_stiffness(C)
    return _averages(C, _compliance_unchecked(C))["A_U"]


def bulk_to_shear_ratio(C):
    """``K_V / G_V`` (Voigt bulk over Voigt shear modulus); ``[..., 6, 6] -> [...]``."""
    C = _check_stiffness(C)
    return _voigt_bulk(C) / _voigt_shear(C)


def property_names() -> tuple:
    """Keys of :func:`all_properties`, in order."""
    return ENGINEERING_CONSTANT_NAMES + _AVERAGE_NAMES


def all_properties(C) -> dict:
    """All scalar properties of :func:`property_names` from one inversion of ``C``.

    Args:
        C: ``[..., 6, 6]`` stiffness (numpy or torch).

    Returns:
        dict name -> ``[...]``: engineering constants (:func:`engineering_constants`),
        ``K_V, G_V, K_R, G_R`` (Voigt / Reuss bulk and shear moduli), ``A_U`` and
        ``KV_GV = K_V / G_V``.
    """
    C = _check_stiffness(C)
    S = _compliance_unchecked(C)
    out = _engineering_from_compliance(S)
    out.update(_averages(C, S))
    return {k: out[k] for k in property_names()}


# --------------------------------------------------------------------------- directional modulus

def directional_youngs_modulus(C, directions):
    """Young's modulus along arbitrary directions (the "elastic surface").

    ``1 / E(d) = S_ijkl d_i d_j d_k d_l`` with ``d`` normalised to unit length and ``S_ijkl``
    from :func:`compliance_tensor`.

    Args:
        C: ``[..., 6, 6]`` stiffness.
        directions: ``[..., 3]`` direction vectors (any non-zero length). The batch shapes of
            ``C`` and ``directions`` broadcast: e.g. ``C [6, 6]`` with ``directions [N, 3]``
            gives ``[N]``; ``C [B, 1, 6, 6]`` with ``directions [N, 3]`` gives ``[B, N]``.

    Returns:
        ``[broadcast batch]`` E(d), unit of ``C``.
    """
    C = _check_stiffness(C)
    d = _check_directions(directions)
    if _is_torch(C) != _is_torch(d):
        d = torch.as_tensor(d, dtype=C.dtype, device=C.device) if _is_torch(C) else _values(d)
    elif _is_torch(d):
        d = d.to(dtype=C.dtype, device=C.device)
    d = d / ((d * d).sum(-1)[..., None] ** 0.5)
    S4 = _voigt_to_tensor(_compliance_unchecked(C))
    return 1 / _einsum("...ijkl,...i,...j,...k,...l->...", S4, d, d, d, d)


class ElasticSurface(NamedTuple):
    """Sphere grid for plotting E(d): ``points = E[..., None] * directions``."""
    theta: np.ndarray        #: ``[n_theta]`` polar angle from the x3 axis, rad, in [0, pi]
    phi: np.ndarray          #: ``[n_phi]`` azimuth from the x1 axis, rad, in [0, 2 pi]
    directions: np.ndarray   #: ``[n_theta, n_phi, 3]`` unit vectors
    E: np.ndarray            #: ``[n_theta, n_phi]`` directional Young's modulus
    points: np.ndarray       #: ``[n_theta, n_phi, 3]`` surface points ``E(d) d``


def elastic_surface(C, n_theta: int = 61, n_phi: int = 121) -> ElasticSurface:
    """Directional Young's modulus on a (theta, phi) sphere grid, as numpy, for plotting.

    ``d = (sin theta cos phi, sin theta sin phi, cos theta)``, both angles sampled
    uniformly including the end points (closed surface for ``plot_surface``).

    Args:
        C: ``[6, 6]`` stiffness (numpy or torch; gradients are not kept).
        n_theta: polar samples (>= 2), default 61.
        n_phi: azimuthal samples (>= 3), default 121.
    """
    C = _values(_check_stiffness(C))
    if C.shape != (6, 6):
        raise ValueError(f"elastic_surface takes one stiffness [6, 6], got {C.shape}")
    if n_theta < 2 or n_phi < 3:
        raise ValueError(f"need n_theta >= 2 and n_phi >= 3, got {n_theta}, {n_phi}")
    theta = np.linspace(0.0, np.pi, n_theta)
    phi = np.linspace(0.0, 2 * np.pi, n_phi)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    d = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], axis=-1)
    E = directional_youngs_modulus(C, d)
    return ElasticSurface(theta, phi, d, E, E[..., None] * d)
