"""Linear periodic homogenization of beam trusses: the effective 6x6 stiffness.

Minimising the cell energy over the periodic fluctuations at fixed macroscopic strain gives
(``SPEC.md`` section 3)

.. math::

    \\mathbb{C} = \\frac{1}{V}\\left(K_{ee} - K_{ew} K_{ww}^{-1} K_{we}\\right),

with the three rigid translations pinned. Two independent implementations are provided:

* :func:`homogenize_periodic` (used by :func:`homogenize`): the reference path for any periodic
  truss, assembled over every physical node and strut of the cell;
* :func:`homogenize_batch`: the fast path for lattices of the octant design space. Their mirror
  symmetry splits the periodic problem exactly into eight symmetry sectors
  (:data:`~gnn_truss.fe.assembly.SECTORS`) whose fields are fixed by their octant values, so
  each sector is an octant-sized problem with some plane dofs removed. The normal strains load
  sector (+,+,+), the shears g23, g31, g12 the sectors (+,-,-), (-,+,-), (-,-,+); couplings
  between sectors vanish, so the lattice is orthotropic by construction. The four unloaded
  sectors are factorised too, to detect mechanisms anywhere. Batches are padded and solved with
  batched Cholesky factorisations in torch (float64), split over worker processes.

Both report a :class:`Status` instead of numbers when the lattice has a mechanism, a
disconnected load path, a singular effective stiffness, or fails validation.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from enum import Enum

import multiprocessing as mp

import numpy as np
import scipy.linalg

from ..cell import PeriodicTruss
from ..geometry import num_components
from ..threads import single_thread_worker
from ..truss import Truss, radius_for_density
from .assembly import (SECTOR_LOADS, SECTOR_PIN, SECTORS, affine_displacements, octant_system,
                       periodic_system,
                       sector_free_mask)
from .beam import element_stiffness

__all__ = ["Status", "Homogenization", "BatchHomogenization", "homogenize", "homogenize_periodic",
           "homogenize_batch", "periodic_solution", "stiffness_vector", "PIVOT_TOL", "SINGULAR_TOL"]

log = logging.getLogger(__name__)

#: A Cholesky pivot below ``PIVOT_TOL`` x the largest diagonal entry marks a zero-energy mode.
PIVOT_TOL = 1e-11
#: An effective stiffness with ``min eig / max eig`` below this is reported singular.
SINGULAR_TOL = 1e-10

_VOIGT9 = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2), (3, 3), (4, 4), (5, 5))


class Status(str, Enum):
    """Outcome of a homogenization."""

    OK = "ok"
    INVALID = "invalid"  # fails a validation rule of the design space (see Truss.validate)
    MECHANISM = "mechanism"  # a zero-energy fluctuation beyond the rigid translations
    DISCONNECTED = "disconnected"  # the periodic truss falls apart into several pieces
    SINGULAR = "singular"  # the effective stiffness has a (numerically) zero eigenvalue


def stiffness_vector(C: np.ndarray) -> np.ndarray:
    """``[..., 9]`` orthotropic components (C11, C12, C13, C22, C23, C33, C44, C55, C66)."""
    C = np.asarray(C)
    return np.stack([C[..., i, j] for i, j in _VOIGT9], axis=-1)


@dataclass
class Homogenization:
    """Result of homogenizing one lattice.

    Attributes:
        C: ``[6, 6]`` effective Voigt stiffness (engineering shears), units of ``E_s``; all NaN
            unless ``status`` is OK.
        status: :class:`Status`.
        radius: strut radius used (octant side = 1).
        density: relative density.
        message: why the status is not OK.
    """

    C: np.ndarray
    status: Status
    radius: float = float("nan")
    density: float = float("nan")
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def S(self) -> np.ndarray:
        """``[9]`` orthotropic stiffness vector (see :func:`stiffness_vector`)."""
        return stiffness_vector(self.C)

    def raise_for_status(self) -> "Homogenization":
        if not self.ok:
            raise ValueError(f"homogenization failed: {self.status.value}: {self.message}")
        return self


@dataclass
class BatchHomogenization:
    """Results of :func:`homogenize_batch`: ``C [B, 6, 6]`` (NaN where not OK), ``status [B]``
    (``Status`` values as strings), ``radius [B]``."""

    C: np.ndarray
    status: np.ndarray
    radius: np.ndarray
    messages: list = field(default_factory=list)

    @property
    def ok(self) -> np.ndarray:
        return self.status == Status.OK.value

    @property
    def S(self) -> np.ndarray:
        return stiffness_vector(self.C)

    def __len__(self) -> int:
        return len(self.status)


def _nan_C() -> np.ndarray:
    return np.full((6, 6), np.nan)


def _check_material(density: float, E: float, nu: float) -> None:
    for name, value in (("relative density", density), ("Young's modulus", E),
                        ("Poisson's ratio", nu)):
        try:
            if isinstance(value, (bool, str, bytes)):
                raise TypeError
            float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if not (np.isfinite(density) and 0 < density < 1):
        raise ValueError(f"relative density must lie in (0, 1), got {density}")
    if not (np.isfinite(E) and E > 0):
        raise ValueError(f"Young's modulus must be positive, got {E}")
    if not (np.isfinite(nu) and -1 < nu < 0.5):
        raise ValueError(f"Poisson's ratio must lie in (-1, 0.5), got {nu}")


def _check_periodic_args(pt: PeriodicTruss, radius: float, E: float, nu: float,
                         pin: int) -> None:
    _check_material(0.5, E, nu)  # a dummy admissible density: checks E and nu only
    if not (np.isfinite(radius) and radius > 0):
        raise ValueError(f"strut radius must be positive, got {radius}")
    if not 0 <= pin < max(pt.num_nodes, 1):
        raise ValueError(f"pin must index a node (0 .. {pt.num_nodes - 1}), got {pin}")


def _cholesky_checked(K: np.ndarray):
    """Cholesky factor of ``K`` or ``None`` if it is not numerically positive definite."""
    try:
        L = scipy.linalg.cholesky(K, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        return None
    if np.min(np.diag(L)) ** 2 < PIVOT_TOL * np.max(np.diag(K)):
        return None
    return L


def _effective(C: np.ndarray):
    C = 0.5 * (C + C.T)
    ev = np.linalg.eigvalsh(C)
    if not ev[0] > SINGULAR_TOL * ev[-1]:
        return None, f"effective stiffness eigenvalues span {ev[0]:.3g} .. {ev[-1]:.3g}"
    return C, ""


def _count_components(pt: PeriodicTruss) -> int:
    return num_components(pt.num_nodes, pt.edges)


def periodic_solution(pt: PeriodicTruss, radius: float, E: float = 1.0, nu: float = 0.3,
                      pin: int = 0):
    """Assemble and condense the periodic cell.

    Returns:
        ``(C, factor, parts)``: ``C`` the ``[6, 6]`` stiffness or ``None`` for a mechanism,
        the Cholesky factor and a dict with ``K_ww, K_we, K_ee, Ke, keep``.

    Raises:
        ValueError: for a radius or ``E`` that is not positive, ``nu`` outside (-1, 0.5), or
            ``pin`` not a node index.
    """
    _check_periodic_args(pt, radius, E, nu, pin)
    Ke = element_stiffness(pt.chords, radius, E, nu)
    K_ww, K_we, K_ee = periodic_system(pt.num_nodes, pt.edges, pt.chords, Ke)
    keep = np.ones(len(K_ww), dtype=bool)
    keep[6 * pin:6 * pin + 3] = False  # remove the rigid translations
    L = _cholesky_checked(K_ww[np.ix_(keep, keep)])
    parts = dict(K_ww=K_ww, K_we=K_we, K_ee=K_ee, Ke=Ke, keep=keep)
    if L is None:
        return None, None, parts
    X = scipy.linalg.cho_solve((L, True), K_we[keep], check_finite=False)
    C = (K_ee - K_we[keep].T @ X) / pt.volume
    return C, L, parts


def homogenize_periodic(pt: PeriodicTruss, radius: float, E: float = 1.0, nu: float = 0.3,
                        pin: int = 0) -> Homogenization:
    """Effective stiffness of a general periodic truss (reference path).

    Args:
        pt: the periodic truss (any cell, any node set; not restricted to mirror symmetry).
        radius: strut radius.
        E, nu: base material.
        pin: node whose translations are fixed (the result does not depend on it).

    Raises:
        ValueError: for a radius or ``E`` that is not positive, ``nu`` outside (-1, 0.5), or
            ``pin`` not a node index.
    """
    _check_periodic_args(pt, radius, E, nu, pin)
    if pt.num_struts == 0:
        return Homogenization(_nan_C(), Status.INVALID, radius, message="no struts")
    if _count_components(pt) > 1:
        return Homogenization(_nan_C(), Status.DISCONNECTED, radius,
                              message=f"{_count_components(pt)} disconnected pieces")
    C, _, parts = periodic_solution(pt, radius, E, nu, pin)
    if C is None:
        return Homogenization(_nan_C(), Status.MECHANISM, radius,
                              message="zero-energy fluctuation mode besides rigid translations")
    C, msg = _effective(C)
    if C is None:
        return Homogenization(_nan_C(), Status.SINGULAR, radius, message=msg)
    return Homogenization(C, Status.OK, radius)


def homogenize(truss: Truss, density: float = 0.15, E: float = 1.0, nu: float = 0.3,
               validate: bool = True) -> Homogenization:
    """Effective stiffness of one lattice of the design space (reference path).

    The octant truss is mirrored to the full cell, crossing beams are joined at their crossing
    node, each physical strut is counted once, and all struts get the radius that gives
    ``density`` (``rho = pi r^2 sum L / 8``).

    Args:
        truss: the lattice.
        density: relative density (default 0.15).
        E, nu: base material Young's modulus and Poisson's ratio (default 1, 0.3).
        validate: report lattices violating :data:`~gnn_truss.truss.RULES` as INVALID.

    Returns:
        :class:`Homogenization` with ``C`` in units of ``E`` (Voigt, engineering shears).
    """
    _check_material(density, E, nu)
    if not isinstance(truss, Truss):
        raise ValueError(f"expected a Truss, got {type(truss).__name__}")
    if truss.num_edges == 0:
        return Homogenization(_nan_C(), Status.INVALID, density=density, message="no beams")
    if validate:
        bad = truss.validate()
        if bad:
            return Homogenization(_nan_C(), Status.INVALID, density=density,
                                  message="violates " + ", ".join(bad))
    r = truss.radius(density)
    res = homogenize_periodic(truss.periodic(), r, E, nu)
    res.density = density
    return res


# --------------------------------------------------------------------------- batched path
def _prepare(adjacency: np.ndarray, offsets: np.ndarray, density: float, E: float, nu: float,
             validate: bool):
    """Octant model and weighted element stiffnesses of one lattice (or a failure status)."""
    truss = Truss(adjacency, offsets)
    if truss.num_edges == 0:
        return Status.INVALID, "no beams"
    if validate:
        bad = truss.validate()
        if bad:
            return Status.INVALID, "violates " + ", ".join(bad)
    m = truss.model
    n = len(m.nodes)
    if num_components(n, m.segments) > 1 or np.any((m.planes >= 0).sum(0) == 0):
        return Status.DISCONNECTED, "octant model is not one piece touching all mirror planes"
    chords = m.nodes[m.segments[:, 1]] - m.nodes[m.segments[:, 0]]
    lengths = np.linalg.norm(chords, axis=1)
    r = radius_for_density(density, float(np.sum(m.seg_mult * lengths)))
    return n, m.segments, m.nodes, m.planes, m.seg_mult, r


def _solve_group(items, E: float, nu: float, volume: float = 8.0):
    """Batched sector solve for prepared lattices of similar size; returns ``C, ok``.

    For each sector the free dofs of every lattice are gathered into a padded ``[B, k, k]``
    stack (padding = identity rows), factorised with one batched Cholesky, and the loaded
    sectors condensed: ``C_ab = (U_a.K.U_b - (K U_a)_f.K_ff^-1.(K U_b)_f) / V``.
    """
    import torch

    B = len(items)
    nmax = max(it[0] for it in items)
    N = 6 * nmax
    pos = np.zeros((B, nmax, 3))
    planes = np.full((B, nmax, 3), -1, dtype=np.int8)
    exists = np.zeros((B, nmax), dtype=bool)
    for b, (n, _, p, pl, _, _) in enumerate(items):
        pos[b, :n], planes[b, :n], exists[b, :n] = p, pl, True
    # all elements of the group at once, segments renumbered into the stacked node list
    owner = np.concatenate([np.full(len(it[1]), b) for b, it in enumerate(items)])
    seg = np.concatenate([it[1] for it in items]) + nmax * owner[:, None]
    mult = np.concatenate([it[4] for it in items])
    radius = np.array([it[5] for it in items])[owner]
    flatpos = pos.reshape(-1, 3)
    Ke = element_stiffness(flatpos[seg[:, 1]] - flatpos[seg[:, 0]], radius, E, nu)
    K = octant_system(B * nmax, seg, flatpos, Ke, mult, blocks=B)
    U = affine_displacements(flatpos).reshape(B, N, 6)
    KU_all = K @ U  # [B, N, 6]
    UKU_all = np.swapaxes(U, 1, 2) @ KU_all  # [B, 6, 6]
    node_exists = np.repeat(exists, 6, axis=1)
    scale = np.einsum("bii->bi", K).max(axis=1)
    bidx = np.arange(B)[:, None]
    C = np.zeros((B, 6, 6))
    ok = np.ones(B, dtype=bool)
    for sector in SECTORS:
        free = sector_free_mask(planes, sector) & node_exists
        if sector in SECTOR_PIN:
            free[:, SECTOR_PIN[sector]] = False  # pin a translation of node 0
        counts = free.sum(axis=1)
        k = int(counts.max())
        idx = np.argsort(~free, axis=1, kind="stable")[:, :k]  # free dofs first
        valid = np.arange(k)[None, :] < counts[:, None]  # [B, k]
        Ks = K[bidx[:, :, None], idx[:, :, None], idx[:, None, :]]
        Ks *= valid[:, :, None] & valid[:, None, :]
        Ks[:, np.arange(k), np.arange(k)] += np.where(valid, 0.0, 1.0) * scale[:, None]
        L, info = torch.linalg.cholesky_ex(torch.from_numpy(Ks))
        piv = torch.diagonal(L, dim1=-2, dim2=-1).numpy() ** 2
        piv = np.where(valid, piv, np.inf)
        good = (info.numpy() == 0) & (piv.min(axis=1, initial=np.inf) >= PIVOT_TOL * scale)
        ok &= good
        loads = SECTOR_LOADS.get(sector)
        if loads is None:
            continue
        loads = list(loads)
        R = KU_all[bidx, idx][:, :, loads] * valid[:, :, None]  # [B, k, l]
        Lg = torch.where(torch.from_numpy(good)[:, None, None], L,
                         torch.eye(k, dtype=L.dtype))
        Y = torch.cholesky_solve(torch.from_numpy(R), Lg).numpy()
        blk = (UKU_all[:, loads][:, :, loads] - np.swapaxes(R, 1, 2) @ Y) / volume
        C[np.ix_(np.arange(B), loads, loads)] = blk
    return C, ok


def _batch_worker(args):
    adjs, offs, density, E, nu, validate, group_size = args
    try:
        import torch
        torch.set_num_threads(1)
    except Exception:  # pragma: no cover
        pass
    return _homogenize_serial(adjs, offs, density, E, nu, validate, group_size)


def _homogenize_serial(adjs, offs, density, E, nu, validate, group_size, progress=None):
    B = len(adjs)
    C = np.full((B, 6, 6), np.nan)
    status = np.array([Status.OK.value] * B, dtype=object)
    radius = np.full(B, np.nan)
    msgs = [""] * B
    prepared = {}
    for b in range(B):
        out = _prepare(adjs[b], offs[b], density, E, nu, validate)
        if isinstance(out[0], Status):
            status[b], msgs[b] = out[0].value, out[1]
        else:
            prepared[b] = out
            radius[b] = out[5]
    order = sorted(prepared, key=lambda b: prepared[b][0])
    for start in range(0, len(order), group_size):
        idx = order[start:start + group_size]
        Cg, okg = _solve_group([prepared[b] for b in idx], E, nu)
        for b, Cb, good in zip(idx, Cg, okg):
            if not good:
                status[b], msgs[b] = Status.MECHANISM.value, "zero-energy fluctuation mode"
                continue
            Cb, msg = _effective(Cb)
            if Cb is None:
                status[b], msgs[b] = Status.SINGULAR.value, msg
            else:
                C[b] = Cb
        if progress is not None:
            progress(len(idx))
    return C, status, radius, msgs


def homogenize_batch(trusses, density: float = 0.15, E: float = 1.0, nu: float = 0.3,
                     validate: bool = True, workers: int | None = None, group_size: int = 128,
                     progress: bool = False) -> BatchHomogenization:
    """Homogenize many lattices of the design space at once (mirror-symmetry sector path).

    Args:
        trusses: sequence of :class:`~gnn_truss.truss.Truss`, or a pair of arrays
            ``(adjacency [B, 27, 27], offsets [B, 27, 3])``.
        density, E, nu: as in :func:`homogenize`.
        validate: report lattices violating the design-space rules as INVALID.
        workers: processes to use (default: all cores, at most one per 256 lattices; 1 runs in
            this process).
        group_size: lattices per padded batched factorisation.
        progress: show a tqdm progress bar.

    Returns:
        :class:`BatchHomogenization`; agrees with :func:`homogenize` to round-off.
    """
    _check_material(density, E, nu)
    if isinstance(trusses, tuple) and len(trusses) == 2 and isinstance(trusses[0], np.ndarray):
        adjs, offs = np.asarray(trusses[0]), np.asarray(trusses[1], dtype=np.float64)
        if adjs.ndim != 3 or adjs.shape[1:] != (27, 27):
            raise ValueError(f"adjacency must have shape (B, 27, 27), got {adjs.shape}")
        if offs.shape not in ((len(adjs), 27, 3), (len(adjs), 27)):
            raise ValueError(f"offsets must have shape ({len(adjs)}, 27, 3) or "
                             f"({len(adjs)}, 27) to match the adjacency, got {offs.shape}")
    else:
        trusses = list(trusses)
        bad = [k for k, t in enumerate(trusses) if not isinstance(t, Truss)]
        if bad:
            raise ValueError(f"expected a sequence of Truss, item {bad[0]} is a "
                             f"{type(trusses[bad[0]]).__name__}")
        adjs = np.stack([t.adjacency for t in trusses]) if trusses else np.zeros((0, 27, 27))
        offs = np.stack([t.offsets for t in trusses]) if trusses else np.zeros((0, 27, 3))
    B = len(adjs)
    if B == 0:
        return BatchHomogenization(np.zeros((0, 6, 6)), np.zeros(0, dtype=object), np.zeros(0))
    if workers is None:
        workers = max(1, min(os.cpu_count() or 1, B // 256))
    bar = None
    if progress:
        from ..progress import progress_bar
        bar = progress_bar(total=B, desc="homogenize", unit="lattice")
    if workers <= 1:
        out = _homogenize_serial(adjs, offs, density, E, nu, validate, group_size,
                                 progress=bar.update if bar else None)
    else:
        chunk = max(group_size, int(np.ceil(B / (4 * workers))))
        jobs = [(adjs[s:s + chunk], offs[s:s + chunk], density, E, nu, validate, group_size)
                for s in range(0, B, chunk)]
        parts = []
        # fork (as torch's DataLoader does on Linux): workers start in milliseconds and set
        # their own torch thread count to one; elsewhere spawn.
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                 initializer=single_thread_worker) as ex:
            for res in ex.map(_batch_worker, jobs):
                parts.append(res)
                if bar:
                    bar.update(len(res[1]))
        out = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
               np.concatenate([p[2] for p in parts]), sum((p[3] for p in parts), []))
    if bar:
        bar.close()
    C, status, radius, msgs = out
    return BatchHomogenization(C=C, status=status.astype(str), radius=radius, messages=msgs)
