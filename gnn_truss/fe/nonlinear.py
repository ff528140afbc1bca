"""Nonlinear homogenization: uniaxial compression of the periodic cell with large rotations.

Model (``SPEC.md`` section 4). The periodic truss of a lattice (:meth:`Truss.periodic`,
crossing beams joined) is meshed with ``elements_per_strut`` corotational Timoshenko elements
per strut (:mod:`.corotational`), all struts with the radius of the target relative density.
Node ``n`` has a periodic fluctuation ``w_n`` and a rotation ``R_n``; its position is
``x_n = F X_n + w_n`` with the macroscopic deformation gradient ``F = diag(F_11, F_22, F_33)``
(compression along z; x or y selectable). Uniaxial compression prescribes the stretch along the
loading axis, ``F_aa = 1 - eps``; the two lateral stretches are unknowns whose conjugate nominal
stresses vanish (the lateral average stresses are zero); shear components of ``F`` are held at
zero. The three rigid translations are removed by pinning the fluctuation of node 0. The cell
energy ``W`` is minimised at each load level; the nominal stress is
``P_aa = (1 / V_0) dW / dF_aa`` and the reported compressive stress is ``sigma = -P_aa``
(positive in compression), in units of ``E_s``.

Solution. Load stepping from 0 to ``max_strain`` (25 %) with steps of at most ``max_step``
(0.5 %) that land exactly on the label strains; each step starts from the previous increment
extrapolated (secant predictor) and is solved by Newton-Raphson on the fluctuations, the spins
of the nodal rotations (``R <- expm(skew(dphi)) R``) and the lateral stretches, with the
symmetric consistent tangent of the element energy. A backtracking line search accepts the
largest step fraction that reduces the residual; a step that does not converge is cut back
(halved, down to ``min_step``) and retried.

Bifurcations. A perfect lattice may follow the unstable symmetric path past a bifurcation. We
seed a small geometric imperfection: every interior mesh node of a strut is moved off the
straight axis by ``imperfection x radius x sin(pi s / L)`` (``s`` the arc length) in a random
direction normal to the strut (seeded, different for every strut), the shape of the first
pinned-pinned Euler mode. The default amplitude (1 % of the radius) changes the small-strain
stiffness by well under 0.1 % and makes the path follow the buckled branch.

Labels: the 13-point vector ``sigma(0.5 %), sigma(2.5 %), ..., sigma(24.5 %)``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
import scipy.sparse.linalg as spla

from ..cell import PeriodicTruss
from ..truss import Truss
from .beam import circular_section
from .corotational import (corotational_beams, element_energy, element_forces,
                           element_forces_and_tangent)

__all__ = ["LABEL_STRAINS", "CompressionModel", "CompressionResult", "compression_model",
           "compress", "compress_truss", "compression_labels_batch"]

log = logging.getLogger(__name__)

#: Strains of the 13-point label: 0.5 %, 2.5 %, ..., 24.5 %.
LABEL_STRAINS = np.round(0.005 + 0.02 * np.arange(13), 6)


@dataclass(frozen=True)
class CompressionModel:
    """Mesh of the periodic cell for nonlinear analysis.

    Attributes:
        X: ``[N, 3]`` initial node positions (lattice nodes first, then mesh nodes).
        elements: ``[M, 2]`` node indices.
        shifts: ``[M, 3]`` integer lattice shift of the second end.
        cell: ``[3, 3]`` lattice vectors (rows).
        radius: strut radius; ``E``, ``nu``: base material.
        num_lattice_nodes: nodes of the periodic truss (the rest are interior mesh nodes).
    """

    X: np.ndarray
    elements: np.ndarray
    shifts: np.ndarray
    cell: np.ndarray
    radius: float
    E: float
    nu: float
    num_lattice_nodes: int
    elements_per_strut: int = 1

    @property
    def volume(self) -> float:
        return float(abs(np.linalg.det(self.cell)))

    @property
    def ends(self) -> np.ndarray:
        """``[M, 2, 3]`` initial element end positions (shift applied to the second end)."""
        return np.stack([self.X[self.elements[:, 0]],
                         self.X[self.elements[:, 1]] + self.shifts @ self.cell], axis=1)


@dataclass
class CompressionResult:
    """Result of :func:`compress`.

    Attributes:
        strain: ``[S]`` applied compressive strains ``eps`` (``F_aa = 1 - eps``).
        stress: ``[S]`` nominal compressive stress (positive in compression), units of E_s.
        lateral: ``[S, 2]`` lateral nominal strains ``F_bb - 1`` of the two free axes.
        label: ``[13]`` stresses at :data:`LABEL_STRAINS` (NaN beyond the last converged step).
        ok: whether the whole load path converged.
        message: why not.
        snapshots: ``{strain: {"nodes": [N, 3], "ends": [M, 2, 3], "F": [3]}}`` deformed node
            and element end positions and the diagonal of ``F`` at the requested strains.
        axis: loading axis (0, 1, 2).
        newton_iterations: total residual/tangent evaluations; seconds: wall time.
        min_eig: ``[S]`` smallest eigenvalue of the free tangent at each converged state divided
            by its largest diagonal entry (NaN unless ``track_stability``); a sign change marks
            a loss of positive definiteness (bifurcation or limit point).
        critical_strains: strains where ``min_eig`` changes sign (linear interpolation).
    """

    strain: np.ndarray
    stress: np.ndarray
    lateral: np.ndarray
    label: np.ndarray
    ok: bool
    message: str = ""
    snapshots: dict = field(default_factory=dict)
    axis: int = 2
    newton_iterations: int = 0
    seconds: float = 0.0
    min_eig: np.ndarray | None = None
    critical_strains: list = field(default_factory=list)


def _subdivide(pt: PeriodicTruss, m: int, radius: float, imperfection: float,
               rng: np.random.Generator):
    X = [pt.nodes]
    elements, shifts = [], []
    n = pt.num_nodes
    chords = pt.chords
    for (i, j), s, d in zip(pt.edges, pt.shifts, chords):
        L = np.linalg.norm(d)
        t = d / L
        a = rng.normal(size=3)
        a -= a.dot(t) * t
        a /= np.linalg.norm(a)
        prev = i
        for k in range(1, m):
            p = pt.nodes[i] + d * k / m + imperfection * radius * np.sin(np.pi * k / m) * a
            X.append(p[None])
            elements.append((prev, n))
            shifts.append((0, 0, 0))
            prev = n
            n += 1
        elements.append((prev, j))
        shifts.append(tuple(s))
    return (np.concatenate(X), np.asarray(elements, dtype=np.int64),
            np.asarray(shifts, dtype=np.int64).reshape(-1, 3))


def compression_model(truss: Truss, density: float = 0.15, E: float = 1.0, nu: float = 0.3,
                      elements_per_strut: int = 4, imperfection: float = 0.01,
                      seed: int = 0) -> CompressionModel:
    """Mesh a lattice for :func:`compress` (see the module docstring).

    Raises:
        ValueError: for an invalid lattice or bad parameters.
    """
    if elements_per_strut < 1:
        raise ValueError(f"elements_per_strut must be >= 1, got {elements_per_strut}")
    if imperfection < 0:
        raise ValueError(f"imperfection must be >= 0, got {imperfection}")
    bad = truss.validate()
    if bad:
        raise ValueError("invalid lattice: " + ", ".join(bad))
    pt = truss.periodic()
    r = truss.radius(density)
    X, el, sh = _subdivide(pt, elements_per_strut, r, imperfection, np.random.default_rng(seed))
    return CompressionModel(X=X, elements=el, shifts=sh, cell=pt.cell, radius=r, E=E, nu=nu,
                            num_lattice_nodes=pt.num_nodes, elements_per_strut=elements_per_strut)


class _Cell:
    """Assembly of the periodic cell for one loading axis (internal)."""

    def __init__(self, model: CompressionModel, axis: int):
        self.model = model
        self.axis = axis
        self.lat = [b for b in range(3) if b != axis]
        self.N = len(model.X)
        self.M = len(model.elements)
        self.ndof = 6 * self.N + 2
        ends0 = model.ends  # [M, 2, 3]
        self.ends0 = ends0
        self.beams = corotational_beams(ends0[:, 0], ends0[:, 1],
                                        circular_section(model.radius, model.E, model.nu))
        six = np.arange(6)
        el = model.elements
        self.dofs = np.concatenate([6 * el[:, :1] + six, 6 * el[:, 1:] + six,
                                    np.full((self.M, 2), 6 * self.N) + np.arange(2)], axis=1)
        # G [M, 12, 2]: d(element end position)/d(lateral stretch)
        G = np.zeros((self.M, 12, 2))
        for a in range(2):
            for k, b in enumerate(self.lat):
                G[:, 6 * a + b, k] = ends0[:, a, b]
        self.G = G
        self.free = np.ones(self.ndof, dtype=bool)
        self.free[:3] = False  # pin the translations of node 0
        rows = np.repeat(self.dofs, 14, axis=1)
        cols = np.tile(self.dofs, (1, 14))
        self.rows, self.cols = rows.ravel(), cols.ravel()

    def positions(self, w, Fd):
        """``[N, 3]`` node positions and ``[M, 2, 3]`` element end positions."""
        X = self.model.X
        x_nodes = X * Fd + w
        ends = self.ends0 * Fd + w[self.model.elements]
        return x_nodes, ends

    def element_state(self, w, R, Fd):
        _, ends = self.positions(w, Fd)
        return ends, R[self.model.elements]

    def energy(self, w, R, Fd) -> float:
        ends, Re = self.element_state(w, R, Fd)
        return float(element_energy(ends, Re, self.beams).sum())

    def residual_tangent(self, w, R, Fd, tangent: bool = True):
        ends, Re = self.element_state(w, R, Fd)
        if tangent:
            f, K = element_forces_and_tangent(ends, Re, self.beams)
        else:
            f, K = element_forces(ends, Re, self.beams), None
        fG = np.einsum("mi,mik->mk", f, self.G)
        fe = np.concatenate([f, fG], axis=1)  # [M, 14]
        r = np.bincount(self.dofs.ravel(), weights=fe.ravel(), minlength=self.ndof)
        # nominal stress along the loading axis: (1/V) sum f . dx/dF_aa
        Paa = float(np.sum(f[:, self.axis] * self.ends0[:, 0, self.axis]
                           + f[:, 6 + self.axis] * self.ends0[:, 1, self.axis])) / \
            self.model.volume
        if not tangent:
            return r, None, Paa
        KG = np.einsum("mij,mjk->mik", K, self.G)
        GKG = np.einsum("mji,mjk->mik", self.G, KG)
        Ke = np.concatenate([np.concatenate([K, KG], axis=2),
                             np.concatenate([KG.transpose(0, 2, 1), GKG], axis=2)], axis=1)
        return r, Ke, Paa

    def sparse_tangent(self, Ke) -> sp.csc_matrix:
        """Assembled ``[ndof, ndof]`` tangent from the ``[M, 14, 14]`` element tangents."""
        return sp.coo_matrix((Ke.ravel(), (self.rows, self.cols)),
                             shape=(self.ndof, self.ndof)).tocsc()

    def factorize(self, Ke):
        """A solver for ``K_ff d = b`` on the free dofs (static condensation of the interior
        strut nodes when the mesh has them, sparse LU otherwise); None if singular."""
        m = self.model.elements_per_strut
        if m > 1:
            try:
                return _CondensedSolver(self, Ke)
            except np.linalg.LinAlgError:
                pass
        K = self.sparse_tangent(Ke)[self.free][:, self.free].tocsc()
        try:
            lu = spla.splu(K)
        except RuntimeError:
            return None
        return lu


class _CondensedSolver:
    """Newton solves with the interior nodes of each strut condensed out.

    Every interior mesh node belongs to one strut, so the tangent splits per strut into
    boundary dofs ``B`` (its two lattice nodes and the two lateral stretches, 14) and interior
    dofs ``I`` (``6 (m - 1)``). With ``X_K = K_II^-1 K_IB`` the reduced matrix
    ``sum_s (K_BB - K_BI X_K)`` acts on the lattice-node dofs only (small and dense); the
    interior increments follow by back-substitution ``d_I = -(K_II^-1 r_I + X_K d_B)``. This
    is the same Newton step as the full system.
    """

    def __init__(self, cell: "_Cell", Ke: np.ndarray):
        model = cell.model
        m = model.elements_per_strut
        S = len(model.elements) // m
        n_lat = model.num_lattice_nodes
        el = model.elements.reshape(S, m, 2)
        first, last = el[:, 0, 0], el[:, -1, 1]
        if np.any(first == last) or np.any(first >= n_lat) or np.any(last >= n_lat):
            raise np.linalg.LinAlgError("unexpected strut structure")
        ni = 6 * (m - 1)
        six = np.arange(6)
        # global dofs of each strut's local dofs: [i (6), j (6), F (2), interior (ni)]
        interior = n_lat + np.arange(S)[:, None] * (m - 1) + np.arange(m - 1)[None, :]
        gl = np.concatenate([6 * first[:, None] + six, 6 * last[:, None] + six,
                             np.full((S, 2), 6 * cell.N) + np.arange(2),
                             (6 * interior[:, :, None] + six).reshape(S, ni)], axis=1)
        nl = 14 + ni
        # local index of every element dof
        lookup = np.full((S, cell.ndof), -1, dtype=np.int64) if cell.ndof * S < 5e7 else None
        if lookup is None:
            raise np.linalg.LinAlgError("model too large for the condensed solver")
        lookup[np.arange(S)[:, None], gl] = np.arange(nl)
        strut = np.repeat(np.arange(S), m)
        loc = lookup[strut[:, None], cell.dofs]  # [M, 14]
        flat = ((strut[:, None, None] * nl + loc[:, :, None]) * nl + loc[:, None, :]).ravel()
        Ks = np.bincount(flat, weights=Ke.ravel(), minlength=S * nl * nl).reshape(S, nl, nl)
        KII, KIB, KBB = Ks[:, 14:, 14:], Ks[:, 14:, :14], Ks[:, :14, :14]
        self.Kinv = np.linalg.inv(KII)
        self.XK = self.Kinv @ KIB
        Sred = KBB - KIB.transpose(0, 2, 1) @ self.XK
        # reduced dofs: lattice-node dofs then the two stretches
        nb = 6 * n_lat + 2
        red = np.where(gl[:, :14] < 6 * cell.N, gl[:, :14], gl[:, :14] - 6 * cell.N + 6 * n_lat)
        flat = ((red[:, :, None]) * nb + red[:, None, :]).ravel()
        Kred = np.bincount(flat, weights=Sred.ravel(), minlength=nb * nb).reshape(nb, nb)
        self.free_red = np.ones(nb, dtype=bool)
        self.free_red[:3] = False  # pinned translations of node 0
        # dense LU in torch: it honours torch.set_num_threads (OpenBLAS threads thrash on a
        # loaded machine for matrices of this size)
        LU, piv, info = torch.linalg.lu_factor_ex(
            torch.from_numpy(np.ascontiguousarray(Kred[np.ix_(self.free_red, self.free_red)])))
        if int(info) != 0 or not bool(torch.isfinite(LU).all()):
            raise np.linalg.LinAlgError("singular reduced tangent")
        self.lu = (LU, piv)
        self.cell, self.gl, self.red, self.nb, self.KIB = cell, gl, red, nb, KIB

    def solve(self, b_free: np.ndarray) -> np.ndarray:
        """Solve ``K_ff d = b`` (free-dof vectors, as ``splu(...).solve``)."""
        cell = self.cell
        b = np.zeros(cell.ndof)
        b[cell.free] = b_free
        bI = b[self.gl[:, 14:]]  # [S, ni]
        Xb = np.einsum("sij,sj->si", self.Kinv, bI)
        corr = np.einsum("sji,sj->si", self.KIB, Xb)  # K_BI K_II^-1 b_I, [S, 14]
        bB = np.zeros(self.nb)
        lat_dofs = 6 * cell.model.num_lattice_nodes
        bB[:lat_dofs] = b[:lat_dofs]
        bB[lat_dofs:] = b[6 * cell.N:]
        bB -= np.bincount(self.red.ravel(), weights=corr.ravel(), minlength=self.nb)
        dB = np.zeros(self.nb)
        rhs = torch.from_numpy(bB[self.free_red])[:, None]
        dB[self.free_red] = torch.linalg.lu_solve(*self.lu, rhs)[:, 0].numpy()
        dI = Xb - np.einsum("sij,sj->si", self.XK, dB[self.red])
        d = np.zeros(cell.ndof)
        d[:lat_dofs] = dB[:lat_dofs]
        d[6 * cell.N:] = dB[lat_dofs:]
        d[self.gl[:, 14:]] = dI
        return d[cell.free]


def _rotate(R, dphi):
    """``expm(skew(dphi)) @ R`` for ``[N, 3]`` spins and ``[N, 3, 3]`` rotations (numpy)."""
    th = np.linalg.norm(dphi, axis=1)
    small = th < 1e-8
    ths = np.where(small, 1.0, th)
    k = dphi / ths[:, None]
    Kx = np.zeros((len(dphi), 3, 3))
    Kx[:, 0, 1], Kx[:, 0, 2], Kx[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    Kx[:, 1, 0], Kx[:, 2, 0], Kx[:, 2, 1] = k[:, 2], -k[:, 1], k[:, 0]
    s = np.where(small, 1.0, np.sin(th) / ths)[:, None, None] * ths[:, None, None]
    c = np.where(small, 0.5 * th**2, 1 - np.cos(th))[:, None, None]
    Q = np.eye(3) + s * Kx + c * (Kx @ Kx)
    Q = np.where(small[:, None, None],
                 np.eye(3) + _skew(dphi) + 0.5 * _skew(dphi) @ _skew(dphi), Q)
    return Q @ R


def _skew(v):
    S = np.zeros(v.shape[:-1] + (3, 3))
    S[..., 0, 1], S[..., 0, 2], S[..., 1, 2] = -v[..., 2], v[..., 1], -v[..., 0]
    S[..., 1, 0], S[..., 2, 0], S[..., 2, 1] = v[..., 2], -v[..., 1], v[..., 0]
    return S


def compress(model: CompressionModel, axis: int = 2, max_strain: float = 0.25,
             max_step: float = 0.005, min_step: float = 1e-5, tol: float = 1e-9,
             max_iter: int = 25, snapshot_strains=(), strains=None,
             track_stability: bool = False) -> CompressionResult:
    """Uniaxial compression of the periodic cell (see the module docstring).

    Args:
        model: mesh from :func:`compression_model`.
        axis: loading axis (2 = z).
        max_strain: final compressive strain (0.25).
        max_step: largest strain increment (0.005); the label strains are always hit.
        min_step: smallest increment after cut-backs before giving up.
        tol: convergence tolerance on the residual, relative to ``E A`` of a strut.
        max_iter: Newton iterations per increment.
        snapshot_strains: strains at which to store the deformed node positions.
        strains: explicit increasing list of target strains (overrides the schedule).
        track_stability: compute the smallest tangent eigenvalue at every converged state
            (dense, for models up to 3000 dofs) to detect losses of positive definiteness.

    Returns:
        :class:`CompressionResult`.
    """
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    if not 0 < max_strain < 1 or not 0 < max_step <= max_strain:
        raise ValueError("need 0 < max_step <= max_strain < 1")
    t0 = time.perf_counter()
    cell = _Cell(model, axis)
    if strains is None:
        grid = np.arange(1, int(np.floor(max_strain / max_step + 1e-9)) + 1) * max_step
        strains = np.union1d(np.round(grid, 10),
                             LABEL_STRAINS[LABEL_STRAINS <= max_strain + 1e-12])
        strains = np.union1d(strains, [max_strain])
    strains = np.asarray(strains, dtype=float)
    snaps = sorted(float(s) for s in snapshot_strains)
    strains = np.union1d(strains, [s for s in snaps if 0 < s <= strains[-1]])
    fscale = model.E * np.pi * model.radius**2
    w = np.zeros((cell.N, 3))
    R = np.broadcast_to(np.eye(3), (cell.N, 3, 3)).copy()
    lat = np.ones(2)
    out_e, out_s, out_l = [0.0], [0.0], [np.zeros(2)]
    out_m = [np.nan]
    snapshots = {}
    if 0.0 in snaps:
        x0, e0 = cell.positions(w, np.ones(3))
        snapshots[0.0] = {"nodes": x0, "ends": e0, "F": np.ones(3)}
    dprev = None  # last increment (for the secant predictor)
    eps = 0.0
    iters = 0
    targets = list(strains)
    step = max_step
    ok, msg = True, ""
    while targets:
        target = targets[0] if eps + step >= targets[0] - 1e-12 else eps + step
        deps = target - eps
        w1, R1, lat1 = w.copy(), R.copy(), lat.copy()
        if dprev is not None and dprev[0] > 0:  # secant predictor, scaled to this increment
            s = deps / dprev[0]
            w1 += s * dprev[1]
            lat1 += s * dprev[2]
        Fd = np.ones(3)
        Fd[axis] = 1.0 - target
        conv = False
        Fd[cell.lat] = lat1
        r, K, Paa = cell.residual_tangent(w1, R1, Fd)
        iters += 1
        lu = None
        for _ in range(max_iter):
            rn = np.linalg.norm(r[cell.free])
            if rn <= tol * fscale:
                conv = True
                break
            if lu is None:  # (re)factorise the tangent
                lu = cell.factorize(K)
                if lu is None:
                    break
            d = lu.solve(-r[cell.free])
            if not np.all(np.isfinite(d)):
                break
            full = np.zeros(cell.ndof)
            full[cell.free] = d
            dw = full[:6 * cell.N].reshape(cell.N, 6)
            # backtracking line search on the residual norm (residual-only evaluations)
            accepted = False
            for alpha in (1.0, 0.5, 0.25, 0.125, 0.0625):
                wt = w1 + alpha * dw[:, :3]
                Rt = _rotate(R1, alpha * dw[:, 3:])
                lt = lat1 + alpha * full[6 * cell.N:]
                Ft = Fd.copy()
                Ft[cell.lat] = lt
                rt, _, Pt = cell.residual_tangent(wt, Rt, Ft, tangent=False)
                iters += 1
                rtn = np.linalg.norm(rt[cell.free])
                if rtn < rn or (alpha == 0.0625 and rtn < 10 * rn):
                    accepted = True
                    w1, R1, lat1, r, Paa, Fd = wt, Rt, lt, rt, Pt, Ft
                    break
            if not accepted:
                break
            # modified Newton: keep the factorised tangent while it contracts fast enough
            if not (alpha == 1.0 and rtn < 0.25 * rn):
                r, K, Paa = cell.residual_tangent(w1, R1, Fd)
                iters += 1
                lu = None
        if conv and track_stability:
            r, K, Paa = cell.residual_tangent(w1, R1, Fd)
        if not conv:
            step = deps / 2
            if step < min_step:
                ok, msg = False, f"no convergence at strain {target:.4g} (step {deps:.2g})"
                break
            continue
        dprev = (deps, w1 - w, lat1 - lat)
        w, R, lat, eps = w1, R1, lat1, target
        out_m.append(_min_eig(cell.sparse_tangent(K)[cell.free][:, cell.free])
                     if track_stability else np.nan)
        out_e.append(eps)
        out_s.append(-Paa)
        out_l.append(lat - 1.0)
        for s in snaps:
            if abs(s - eps) < 1e-12:
                xs, es = cell.positions(w, Fd)
                snapshots[s] = {"nodes": xs, "ends": es, "F": Fd.copy()}
        if abs(targets[0] - eps) < 1e-12:
            targets.pop(0)
            step = min(max_step, 2 * step)
    strain, stress = np.asarray(out_e), np.asarray(out_s)
    label = np.full(13, np.nan)
    for k, s in enumerate(LABEL_STRAINS):
        hit = np.flatnonzero(np.abs(strain - s) < 1e-9)
        if len(hit):
            label[k] = stress[hit[0]]
    me = np.asarray(out_m)
    crit = []
    for k in range(1, len(me) - 1):
        if me[k] > 0 and me[k + 1] <= 0:
            crit.append(float(strain[k] + (strain[k + 1] - strain[k]) * me[k] /
                              (me[k] - me[k + 1])))
    return CompressionResult(strain=strain, stress=stress, lateral=np.asarray(out_l),
                             label=label, ok=ok, message=msg, snapshots=snapshots, axis=axis,
                             newton_iterations=iters, seconds=time.perf_counter() - t0,
                             min_eig=me, critical_strains=crit)


def _min_eig(K) -> float:
    """Smallest eigenvalue of a (sparse) symmetric matrix over its largest diagonal entry."""
    if K.shape[0] > 3000:
        return float("nan")
    A = K.toarray()
    ev = torch.linalg.eigvalsh(torch.from_numpy(0.5 * (A + A.T)))  # honours torch threads
    return float(ev[0]) / float(np.max(np.abs(np.diag(A))))


def compress_truss(truss: Truss, density: float = 0.15, E: float = 1.0, nu: float = 0.3,
                   elements_per_strut: int = 4, imperfection: float = 0.01, seed: int = 0,
                   **kwargs) -> CompressionResult:
    """:func:`compression_model` followed by :func:`compress`."""
    model = compression_model(truss, density, E, nu, elements_per_strut, imperfection, seed)
    return compress(model, **kwargs)


def compression_labels_batch(trusses, density: float = 0.15, **kwargs):
    """13-point labels of many lattices (one after the other; run shards in parallel).

    Returns:
        ``(labels [B, 13], ok [B])``.
    """
    labels = np.full((len(trusses), 13), np.nan)
    ok = np.zeros(len(trusses), dtype=bool)
    for b, t in enumerate(trusses):
        try:
            res = compress_truss(t, density, **kwargs)
        except ValueError as exc:
            log.warning("lattice %d: %s", b, exc)
            continue
        labels[b] = res.label
        ok[b] = res.ok and bool(np.all(np.isfinite(res.label)))
    return labels, ok
