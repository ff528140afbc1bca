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

Bifurcations. Newton converges to whichever equilibrium lies near its start, and past a
bifurcation that can be the unstable, unbuckled one. Two mechanisms keep the path on stable
equilibria:

1. A small seeded geometric imperfection: every interior mesh node of a strut is moved off
   the straight axis by ``imperfection x radius x sin(pi s / L)`` (``s`` the arc length) in a
   random direction normal to the strut (seeded, different for every strut), the shape of the
   first pinned-pinned Euler mode. The default amplitude (1 % of the radius) changes the
   small-strain stiffness by well under 0.1 %; it triggers strut buckling, but not modes of
   the whole cell (joint rotation and sway over several cells), which it does not excite.
2. Stability check and branch switching (``branch_switching=True``, the default). Every
   converged state is tested for positive definiteness of the tangent on the free dofs: a
   Cholesky factorisation of the interior strut blocks and of their Schur complement (by
   Haynsworth's inertia additivity ``K`` is positive definite iff both are). An unstable
   equilibrium is left along the eigenvector of the most negative eigenvalue (from the
   blocks or the Schur complement), scaled to one strut radius, and the energy is minimised
   at the same applied strain by Levenberg-Marquardt Newton steps with an Armijo line search
   on the energy until a stable equilibrium is reached (:func:`_descend`); the secant
   predictor is reset after the jump. The same descent is the fallback when Newton fails for
   small increments (limit points, snap-through). Neutral directions (zero eigenvalues of
   degenerate buckled states, e.g. the free bending plane of a circular strut) are accepted.
   The strains of the switches are reported in ``CompressionResult.branch_switches``; strains
   where no stable state was found (the unstable one is kept) in ``unstable_strains``.
   With the switching off, the solver follows the path Newton finds (to locate the
   bifurcation of a perfect lattice with ``track_stability``).

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
from .homogenization import _check_material

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
        branch_switches: strains at which the Newton solution was an unstable equilibrium
            and the solver moved to a stable one (``branch_switching``).
        unstable_strains: strains at which no stable equilibrium was found (the unstable
            one is reported there); empty for a fully stable path.
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
    branch_switches: list = field(default_factory=list)
    unstable_strains: list = field(default_factory=list)


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
                      seed: int = 0, validate: bool = True) -> CompressionModel:
    """Mesh a lattice for :func:`compress` (see the module docstring).

    ``validate=False`` meshes a lattice that breaks the design-space rules
    (:data:`~gnn_truss.truss.RULES`, e.g. a strut a little over the length limit) as it is.

    Raises:
        ValueError: for an invalid lattice (unless ``validate`` is False) or bad parameters.
    """
    if isinstance(elements_per_strut, bool) or not isinstance(elements_per_strut,
                                                              (int, np.integer)) \
            or elements_per_strut < 1:
        raise ValueError(f"elements_per_strut must be >= 1, got {elements_per_strut}")
    if not (np.isfinite(imperfection) and imperfection >= 0):
        raise ValueError(f"imperfection must be >= 0, got {imperfection}")
    _check_material(density, E, nu)
    if not isinstance(truss, Truss):
        raise ValueError(f"expected a Truss, got {type(truss).__name__}")
    bad = truss.validate() if validate else []
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
        #: index arrays of the condensed solver (:func:`_condensed_structure`), or the reason
        #: this mesh cannot be condensed; built on first use
        self._condensed: dict | str | None = None

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
        fG = np.matmul(f[:, None, :], self.G)[:, 0]
        fe = np.concatenate([f, fG], axis=1)  # [M, 14]
        r = np.bincount(self.dofs.ravel(), weights=fe.ravel(), minlength=self.ndof)
        # nominal stress along the loading axis: (1/V) sum f . dx/dF_aa
        Paa = float(np.sum(f[:, self.axis] * self.ends0[:, 0, self.axis]
                           + f[:, 6 + self.axis] * self.ends0[:, 1, self.axis])) / \
            self.model.volume
        if not tangent:
            return r, None, Paa
        KG = np.matmul(K, self.G)
        GKG = np.matmul(self.G.transpose(0, 2, 1), KG)
        Ke = np.concatenate([np.concatenate([K, KG], axis=2),
                             np.concatenate([KG.transpose(0, 2, 1), GKG], axis=2)], axis=1)
        return r, Ke, Paa

    def sparse_tangent(self, Ke) -> sp.csc_matrix:
        """Assembled ``[ndof, ndof]`` tangent from the ``[M, 14, 14]`` element tangents."""
        return sp.coo_matrix((Ke.ravel(), (self.rows, self.cols)),
                             shape=(self.ndof, self.ndof)).tocsc()

    def diagonal(self, Ke) -> np.ndarray:
        """``[ndof]`` diagonal of the assembled tangent."""
        return np.bincount(self.dofs.ravel(), minlength=self.ndof,
                           weights=np.diagonal(Ke, axis1=1, axis2=2).ravel())

    def pd_solver(self, Ke, shift: np.ndarray | None = None):
        """Cholesky solver of ``K + diag(shift)`` on the free dofs.

        Raises:
            NotPositiveDefinite: if that matrix is not positive definite.
        """
        if self.model.elements_per_strut > 1:
            try:
                return _CondensedSolver(self, Ke, shift, cholesky=True)
            except NotPositiveDefinite:
                raise
            except np.linalg.LinAlgError:
                pass
        return _DenseSolver(self, Ke, shift, cholesky=True)

    def mode_solver(self, Ke):
        """A solver of the unshifted tangent offering ``lowest_mode()``."""
        if self.model.elements_per_strut > 1:
            try:
                return _CondensedSolver(self, Ke)
            except np.linalg.LinAlgError:
                pass
        return _DenseSolver(self, Ke)

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


#: Smallest eigenvalue of the tangent (relative to its largest diagonal entry) still taken as
#: a neutral direction rather than an instability when no lower energy lies along it.
NEUTRAL_EIG = 1e-8
#: Newton iterations of an increment before the energy descent takes over.
NEWTON_BEFORE_DESCENT = 10
#: Smallest Levenberg-Marquardt parameter of the energy descent (relative to diag(K)).
MU_FLOOR = 1e-6
#: Residual (relative to the Newton tolerance) below which a stagnating descent is converged.
STAGNATION_TOL = 1e3


class NotPositiveDefinite(np.linalg.LinAlgError):
    """The tangent is not positive definite (the state is not a stable equilibrium)."""


def _condensed_structure(cell: "_Cell") -> dict:
    """Index arrays of :class:`_CondensedSolver` for one cell, computed once and kept on it
    (they depend on the mesh only, not on the state).

    Keys: ``S`` struts, ``ni`` interior dofs per strut, ``nl = 14 + ni`` local dofs per strut,
    ``nb`` reduced dofs (lattice-node dofs and the two stretches), ``gl [S, nl]`` global dof of
    each local dof, ``red [S, 14]`` reduced dof of each boundary dof, ``flat`` the flat index
    into ``[S, nl, nl]`` of every entry of the ``[M, 14, 14]`` element tangents, ``flat_red``
    the flat index into ``[nb, nb]`` of every entry of the ``[S, 14, 14]`` strut blocks.

    Raises:
        np.linalg.LinAlgError: if the mesh does not have the strut structure.
    """
    st = cell._condensed
    if isinstance(st, str):  # the structure check failed before
        raise np.linalg.LinAlgError(st)
    if st is not None:
        return st
    model = cell.model
    m = model.elements_per_strut
    S = len(model.elements) // m
    n_lat = model.num_lattice_nodes
    el = model.elements.reshape(S, m, 2)
    first, last = el[:, 0, 0], el[:, -1, 1]
    if np.any(first == last) or np.any(first >= n_lat) or np.any(last >= n_lat):
        cell._condensed = "unexpected strut structure"
        raise np.linalg.LinAlgError(cell._condensed)
    ni = 6 * (m - 1)
    six = np.arange(6)
    # global dofs of each strut's local dofs: [i (6), j (6), F (2), interior (ni)]
    interior = n_lat + np.arange(S)[:, None] * (m - 1) + np.arange(m - 1)[None, :]
    gl = np.concatenate([6 * first[:, None] + six, 6 * last[:, None] + six,
                         np.full((S, 2), 6 * cell.N) + np.arange(2),
                         (6 * interior[:, :, None] + six).reshape(S, ni)], axis=1)
    nl = 14 + ni
    if cell.ndof * S >= 5e7:
        cell._condensed = "model too large for the condensed solver"
        raise np.linalg.LinAlgError(cell._condensed)
    lookup = np.full((S, cell.ndof), -1, dtype=np.int64)  # local index of every element dof
    lookup[np.arange(S)[:, None], gl] = np.arange(nl)
    strut = np.repeat(np.arange(S), m)
    loc = lookup[strut[:, None], cell.dofs]  # [M, 14]
    flat = ((strut[:, None, None] * nl + loc[:, :, None]) * nl + loc[:, None, :]).ravel()
    # reduced dofs: lattice-node dofs then the two stretches
    nb = 6 * n_lat + 2
    red = np.where(gl[:, :14] < 6 * cell.N, gl[:, :14], gl[:, :14] - 6 * cell.N + 6 * n_lat)
    flat_red = (red[:, :, None] * nb + red[:, None, :]).ravel()
    st = {"S": S, "ni": ni, "nl": nl, "nb": nb, "gl": gl, "red": red, "flat": flat,
          "flat_red": flat_red}
    cell._condensed = st
    return st


class _CondensedSolver:
    """Newton solves with the interior nodes of each strut condensed out.

    Every interior mesh node belongs to one strut, so the tangent splits per strut into
    boundary dofs ``B`` (its two lattice nodes and the two lateral stretches, 14) and interior
    dofs ``I`` (``6 (m - 1)``). With ``X_K = K_II^-1 K_IB`` the reduced matrix
    ``sum_s (K_BB - K_BI X_K)`` acts on the lattice-node dofs only (small and dense); the
    interior increments follow by back-substitution ``d_I = -(K_II^-1 r_I + X_K d_B)``. This
    is the same Newton step as the full system.
    """

    def __init__(self, cell: "_Cell", Ke: np.ndarray, shift: np.ndarray | None = None,
                 cholesky: bool = False):
        st = _condensed_structure(cell)
        S, ni, nl, nb, gl, red = st["S"], st["ni"], st["nl"], st["nb"], st["gl"], st["red"]
        n_lat = cell.model.num_lattice_nodes
        Ks = np.bincount(st["flat"], weights=Ke.ravel(), minlength=S * nl * nl).reshape(S, nl, nl)
        KII, KIB, KBB = Ks[:, 14:, 14:], Ks[:, 14:, :14], Ks[:, :14, :14]
        if shift is not None:  # K + diag(shift) (interior dofs belong to one strut only)
            KII = KII + shift[gl[:, 14:]][:, :, None] * np.eye(ni)
        self.KII = KII
        if cholesky:
            _, info = torch.linalg.cholesky_ex(torch.from_numpy(KII))
            if bool((info != 0).any()):
                raise NotPositiveDefinite("interior strut block")
        self.Kinv = np.linalg.inv(KII)
        self.XK = self.Kinv @ KIB
        Sred = KBB - KIB.transpose(0, 2, 1) @ self.XK
        Kred = np.bincount(st["flat_red"], weights=Sred.ravel(),
                           minlength=nb * nb).reshape(nb, nb)
        if shift is not None:
            lat_dofs = 6 * n_lat
            Kred[np.arange(lat_dofs), np.arange(lat_dofs)] += shift[:lat_dofs]
            Kred[np.arange(lat_dofs, nb), np.arange(lat_dofs, nb)] += shift[6 * cell.N:]
        self.free_red = np.ones(nb, dtype=bool)
        self.free_red[:3] = False  # pinned translations of node 0
        self.Kred = Kred[np.ix_(self.free_red, self.free_red)]
        # dense factorisations in torch: they honour torch.set_num_threads (OpenBLAS threads
        # thrash on a loaded machine for matrices of this size)
        A = torch.from_numpy(np.ascontiguousarray(self.Kred))
        self.chol = None
        if cholesky:  # K is positive definite iff K_II and its Schur complement are
            L, info = torch.linalg.cholesky_ex(A)
            if int(info) != 0 or not bool(torch.isfinite(L).all()):
                raise NotPositiveDefinite("reduced tangent")
            self.chol = L
        else:
            LU, piv, info = torch.linalg.lu_factor_ex(A)
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
        Xb = np.matmul(self.Kinv, bI[:, :, None])[:, :, 0]
        corr = np.matmul(Xb[:, None, :], self.KIB)[:, 0]  # K_BI K_II^-1 b_I, [S, 14]
        bB = np.zeros(self.nb)
        lat_dofs = 6 * cell.model.num_lattice_nodes
        bB[:lat_dofs] = b[:lat_dofs]
        bB[lat_dofs:] = b[6 * cell.N:]
        bB -= np.bincount(self.red.ravel(), weights=corr.ravel(), minlength=self.nb)
        dB = np.zeros(self.nb)
        rhs = torch.from_numpy(bB[self.free_red])[:, None]
        if self.chol is not None:
            dB[self.free_red] = torch.cholesky_solve(rhs, self.chol)[:, 0].numpy()
        else:
            dB[self.free_red] = torch.linalg.lu_solve(*self.lu, rhs)[:, 0].numpy()
        dI = Xb - np.matmul(self.XK, dB[self.red][:, :, None])[:, :, 0]
        d = np.zeros(cell.ndof)
        d[:lat_dofs] = dB[:lat_dofs]
        d[6 * cell.N:] = dB[lat_dofs:]
        d[self.gl[:, 14:]] = dI
        return d[cell.free]

    def lowest_mode(self) -> tuple[float, np.ndarray]:
        """Most negative curvature direction of the (unshifted) tangent.

        By Haynsworth's inertia additivity ``K`` has as many negative eigenvalues as
        ``K_II`` and its Schur complement together. A negative eigenpair ``(lam, v_I)`` of an
        interior block gives the direction ``(0, v_I)``; one ``(lam, v_B)`` of the Schur
        complement gives ``(v_B, -X_K v_B)``; both have ``v^T K v = lam |v_*|^2 < 0``.

        Returns:
            ``(lam, v)``: the eigenvalue and the direction as a free-dof vector (unit norm).
        """
        cell = self.cell
        lam_i, vec_i = np.linalg.eigh(self.KII)  # [S, ni], [S, ni, ni]
        ev, V = torch.linalg.eigh(torch.from_numpy(0.5 * (self.Kred + self.Kred.T)))
        lam_b = float(ev[0])
        s = int(np.argmin(lam_i[:, 0]))
        d = np.zeros(cell.ndof)
        lat_dofs = 6 * cell.model.num_lattice_nodes
        if lam_i[s, 0] < lam_b:
            lam = float(lam_i[s, 0])
            d[self.gl[s, 14:]] = vec_i[s, :, 0]
        else:
            lam = lam_b
            dB = np.zeros(self.nb)
            dB[self.free_red] = V[:, 0].numpy()
            d[:lat_dofs] = dB[:lat_dofs]
            d[6 * cell.N:] = dB[lat_dofs:]
            d[self.gl[:, 14:]] = -np.einsum("sij,sj->si", self.XK, dB[self.red])
        v = d[cell.free]
        return lam, v / np.linalg.norm(v)


class _DenseSolver:
    """Dense fallback of :class:`_CondensedSolver` (meshes without interior nodes, struts
    joining a node to its own periodic image)."""

    def __init__(self, cell: "_Cell", Ke: np.ndarray, shift: np.ndarray | None = None,
                 cholesky: bool = False):
        K = cell.sparse_tangent(Ke)[cell.free][:, cell.free].toarray()
        K = 0.5 * (K + K.T)
        self.K = K
        if shift is not None:
            K = K + np.diag(shift[cell.free])
        A = torch.from_numpy(K)
        self.chol = None
        if cholesky:
            L, info = torch.linalg.cholesky_ex(A)
            if int(info) != 0:
                raise NotPositiveDefinite("tangent")
            self.chol = L
        else:
            LU, piv, info = torch.linalg.lu_factor_ex(A)
            if int(info) != 0:
                raise np.linalg.LinAlgError("singular tangent")
            self.lu = (LU, piv)

    def solve(self, b_free: np.ndarray) -> np.ndarray:
        rhs = torch.from_numpy(np.ascontiguousarray(b_free))[:, None]
        if self.chol is not None:
            return torch.cholesky_solve(rhs, self.chol)[:, 0].numpy()
        return torch.linalg.lu_solve(*self.lu, rhs)[:, 0].numpy()

    def lowest_mode(self) -> tuple[float, np.ndarray]:
        ev, V = torch.linalg.eigh(torch.from_numpy(self.K))
        return float(ev[0]), V[:, 0].numpy().copy()


def _apply(cell: "_Cell", w, R, lat, Fd, d_free: np.ndarray, alpha: float):
    """State after the free-dof increment ``alpha * d`` (spins update the rotations)."""
    full = np.zeros(cell.ndof)
    full[cell.free] = d_free
    dw = full[:6 * cell.N].reshape(cell.N, 6)
    lt = lat + alpha * full[6 * cell.N:]
    Ft = Fd.copy()
    Ft[cell.lat] = lt
    return w + alpha * dw[:, :3], _rotate(R, alpha * dw[:, 3:]), lt, Ft


def _descend(cell: "_Cell", w, R, lat, Fd, tol_force: float, max_iter: int = 100):
    """Move from an unstable equilibrium to a stable one at the same applied strain.

    The cell energy is minimised over the fluctuations, rotations and lateral stretches by
    Levenberg-Marquardt Newton steps ``(K + mu diag(K)) d = -r``: ``mu`` (at least
    ``MU_FLOOR``, which bounds the steps along the neutral directions of degenerate buckled
    states) is raised until the shifted tangent is positive definite and the step passes an
    Armijo backtracking test on the energy (below round-off of the energy, a decrease of the
    residual instead), and lowered after every accepted step. At an equilibrium (residual
    below ``tol_force``) whose unshifted tangent is not positive definite the state is moved
    along the most negative curvature direction (scaled so that the largest node translation
    is one strut radius; sign and length by the lowest energy). Converged at an equilibrium
    whose tangent is positive definite, or has only eigenvalues above
    ``-NEUTRAL_EIG x max diag(K)`` with no lower energy along the lowest mode.

    Returns:
        ``(w, R, lat, Fd, ok)``.
    """
    E = cell.energy(w, R, Fd)
    mu = MU_FLOOR
    radius = cell.model.radius
    trans = np.zeros(cell.ndof, dtype=bool)
    trans[:6 * cell.N] = np.tile([True, True, True, False, False, False], cell.N)
    trans = trans[cell.free]
    r, K, _ = cell.residual_tangent(w, R, Fd)
    slow = 0  # consecutive accepted steps that reduced the residual by less than 10 %
    rn_prev = np.inf
    for _ in range(max_iter):
        rf = r[cell.free]
        rn = float(np.linalg.norm(rf))
        slow = slow + 1 if rn > 0.9 * rn_prev else 0
        rn_prev = rn
        D = np.abs(cell.diagonal(K))
        D = np.maximum(D, 1e-12 * D.max())
        # stagnation at a small residual counts as converged: along the neutral directions of
        # a degenerate buckled state the symmetric tangent is no exact Jacobian of the residual
        # in the spin variables, and Newton crawls there
        if rn <= tol_force or (slow >= 5 and rn <= STAGNATION_TOL * tol_force):
            try:
                cell.pd_solver(K)
                return w, R, lat, Fd, True
            except NotPositiveDefinite:
                pass
            # an equilibrium, but not a minimum: leave it along the lowest mode
            lam, v = cell.mode_solver(K).lowest_mode()
            v = v * radius / max(np.abs(v[trans]).max(), 1e-300)
            best = None
            for tau in (1.0, -1.0, 0.3, -0.3, 0.1, -0.1, 0.03, -0.03):
                st = _apply(cell, w, R, lat, Fd, v, tau)
                Et = cell.energy(st[0], st[1], st[3])
                if Et < E - 1e-12 * abs(E) and (best is None or Et < best[0]):
                    best = (Et, st)
            if best is None:
                # no lower energy along the mode: a neutral direction (a zero eigenvalue of a
                # degenerate buckled state, negative by round-off) is accepted, not more
                return w, R, lat, Fd, bool(lam > -NEUTRAL_EIG * D.max())
            E, (w, R, lat, Fd) = best
            mu, slow, rn_prev = MU_FLOOR, 0, np.inf
            r, K, _ = cell.residual_tangent(w, R, Fd)
            continue
        try:
            solver = cell.pd_solver(K, mu * D)
        except NotPositiveDefinite:
            mu *= 10.0
            if mu > 1e8:
                return w, R, lat, Fd, False
            continue
        d = solver.solve(-rf)
        slope = float(rf @ d)
        accepted = False
        for alpha in (1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125):
            st = _apply(cell, w, R, lat, Fd, d, alpha)
            Et = cell.energy(st[0], st[1], st[3])
            noise = 1e-12 * abs(E) + 1e-300
            if -alpha * slope > noise:  # Armijo on the energy
                accepted = Et <= E + 1e-4 * alpha * slope
            elif Et <= E + noise:  # energy change at round-off level: judge by the residual
                rt = cell.residual_tangent(st[0], st[1], st[3], tangent=False)[0]
                accepted = np.linalg.norm(rt[cell.free]) < rn
            if accepted:
                E, (w, R, lat, Fd) = Et, st
                break
        if accepted:
            mu = max(mu / 10.0, MU_FLOOR)
            r, K, _ = cell.residual_tangent(w, R, Fd)
        else:
            rn_prev = np.inf  # not a step: do not count it as slow
            mu *= 10.0
            if mu > 1e8:
                return w, R, lat, Fd, False
    return w, R, lat, Fd, False


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
             track_stability: bool = False, branch_switching: bool = True) -> CompressionResult:
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
        branch_switching: test every converged state for stability (Cholesky of the
            condensed tangent) and move from an unstable equilibrium to a stable one along
            the critical mode (see the module docstring). Off: follow whatever path Newton
            finds (used to locate bifurcations of perfect lattices).

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
    if strains.ndim != 1 or len(strains) == 0 or not np.all(np.isfinite(strains)) \
            or np.any(np.diff(strains) <= 0) or not 0 < strains[0] <= strains[-1] < 1:
        raise ValueError(f"strains must be an increasing list of strains in (0, 1), got "
                         f"{strains.tolist()}")
    snaps = sorted(float(s) for s in snapshot_strains)
    outside = [s for s in snaps if not 0 <= s <= strains[-1]]
    if outside:
        raise ValueError(f"snapshot strains must lie in [0, {strains[-1]:g}] (the final "
                         f"strain), got {outside}")
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
    switches, unstable = [], []
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
        for _ in range(NEWTON_BEFORE_DESCENT if branch_switching else max_iter):
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
        switched = descended = False
        if not conv and branch_switching and np.all(np.isfinite(w1)):
            # Newton is slow here (soft or neutral modes of a buckled state make its steps
            # wander): minimise the energy from the current iterate instead
            ws, Rs, ls, Fs, conv = _descend(cell, w1, R1, lat1, Fd, tol * fscale,
                                            max_iter=max_iter)
            if conv:
                w1, R1, lat1, Fd = ws, Rs, ls, Fs
                r, K, Paa = cell.residual_tangent(w1, R1, Fd)
                descended = True
        if not conv and branch_switching and deps <= max_step / 8 + 1e-15:
            # Newton fails even for a small increment: typically a limit point or a snap to
            # another branch. Minimise the energy at the new strain from the last state.
            Fs = Fd.copy()
            Fs[cell.lat] = lat
            ws, Rs, ls, Fs, conv = _descend(cell, w, R, lat, Fs, tol * fscale, max_iter=300)
            if conv:
                w1, R1, lat1, Fd = ws, Rs, ls, Fs
                r, K, Paa = cell.residual_tangent(w1, R1, Fd)
                switches.append(float(target))
                switched = True
        if conv and branch_switching and not (switched or descended):
            r, K, Paa = cell.residual_tangent(w1, R1, Fd)
            try:
                cell.pd_solver(K)
            except NotPositiveDefinite:
                ws, Rs, ls, Fs, stable = _descend(cell, w1, R1, lat1, Fd, tol * fscale)
                if stable:
                    w1, R1, lat1, Fd = ws, Rs, ls, Fs
                    r, K, Paa = cell.residual_tangent(w1, R1, Fd)
                    switches.append(float(target))
                    switched = True
                else:
                    unstable.append(float(target))
        elif conv and track_stability:
            r, K, Paa = cell.residual_tangent(w1, R1, Fd)
        if not conv:
            step = deps / 2
            if step < min_step:
                ok, msg = False, f"no convergence at strain {target:.4g} (step {deps:.2g})"
                break
            continue
        # after a branch switch the jump onto the new branch is no predictor for the next step
        dprev = None if switched else (deps, w1 - w, lat1 - lat)
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
                             min_eig=me, critical_strains=crit, branch_switches=switches,
                             unstable_strains=unstable)


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
