r"""Linearised buckling of the periodic cell under uniaxial compression.

The cell is meshed as for the nonlinear analysis (:func:`~gnn_truss.fe.nonlinear.compression_model`,
``elements_per_strut`` corotational elements per strut, here without imperfection) and loaded as
there: the stretch along the loading axis prescribed, ``F_aa = 1 - eps``, the two lateral
stretches free with zero conjugate stress (``SPEC.md`` section 4). Near the unloaded state the
tangent on the free dofs (fluctuations, spins, lateral stretches) is linear in the applied
strain,

.. math::

    K_T(\varepsilon) \approx K_0 + \varepsilon K_1 ,

where :math:`K_0` is the small-strain stiffness and :math:`K_1` the initial-stress (geometric)
stiffness of the pre-buckling state per unit strain. :math:`K_1` is taken as the finite
difference of the corotational tangent between the unloaded state and the equilibrium at a
small strain ``delta``. The critical strains are the roots of
:math:`\det(K_0 + \varepsilon_c K_1) = 0`, the generalised eigenproblem
:math:`-K_1 \phi = \mu K_0 \phi`, :math:`\varepsilon_c = 1 / \mu` for the largest positive
:math:`\mu` (classical linear buckling analysis, e.g. Bathe, *Finite Element Procedures*,
section 6.8.2). The buckling modes are restricted to the periodicity of one cell, as in the
nonlinear analysis.

For the nonlinear compression curve the first critical strain marks where the straight
pre-buckling path stops being stable; ``modulus * strains[0]`` estimates the stress at the knee
of the curve. The analysis costs about 0.05 s a corpus lattice, a fiftieth of a compression
curve (``benchmarks/fe_buckling.py``): the stiffness is factorised once, in an order that
eliminates the interior nodes of the subdivided struts first (:func:`elimination_order`).
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse.linalg as spla

from ..threads import single_thread_worker
from ..truss import Truss
from .homogenization import Status, _check_material, homogenize
from .nonlinear import _Cell, _apply, compression_model

__all__ = ["Buckling", "linear_buckling", "buckling_batch", "buckling_descriptors",
           "lattice_descriptors", "DESCRIPTOR_NAMES", "critical_count", "elimination_order"]

log = logging.getLogger(__name__)

#: Free-dof count up to which the eigenproblem is solved densely (sparse Lanczos above).
DENSE_LIMIT = 400
#: Residual of the pre-buckling equilibrium, relative to ``E A`` of a strut (as :func:`compress`).
PRESTRESS_TOL = 1e-9
#: Newton iterations allowed for the pre-buckling equilibrium.
PRESTRESS_ITER = 30


@dataclass
class Buckling:
    """Result of :func:`linear_buckling`.

    Attributes:
        strains: ``[num_modes]`` critical compressive strains, ascending; ``inf`` for a mode
            that compression does not destabilise, or beyond the number of free dofs.
        modulus: Young's modulus along the loading axis, ``1 / S_aa`` of the linear
            homogenisation, in units of ``E_s``: the initial slope of the compression curve.
        axis: loading axis (0, 1, 2).
        strut_forces: ``[S]`` axial force of each strut of the periodic truss
            (:meth:`~gnn_truss.truss.Truss.periodic` edge order) in the pre-buckling state per
            unit compressive strain, tension positive, in units of ``E_s`` times length
            squared (``E A`` times the strut's mean axial strain over ``delta``): which struts
            carry the load.

    Above :data:`DENSE_LIMIT` free dofs the eigenproblem is solved by Lanczos iteration
    (ARPACK, seeded start vector, three modes more than asked), and the count of the critical
    strains found is checked against the inertia of the tangent just above the highest one
    (:func:`critical_count`): a repeated critical strain (symmetric modes) is returned as
    often as it occurs.
    """

    strains: np.ndarray
    modulus: float
    axis: int = 2
    strut_forces: np.ndarray | None = None

    @property
    def stresses(self) -> np.ndarray:
        """``[k]`` linear estimates of the critical stresses, ``modulus * strains``."""
        return self.modulus * self.strains


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _check_args(axis, num_modes, delta):
    if not _is_int(axis) or axis not in (0, 1, 2):
        raise ValueError(f"axis must be the integer 0, 1 or 2, got {axis!r}")
    if not _is_int(num_modes) or num_modes < 1:
        raise ValueError(f"num_modes must be a positive integer, got {num_modes!r}")
    if isinstance(delta, (bool, np.bool_)) or not isinstance(delta, (int, float, np.integer,
                                                                      np.floating)) \
            or not (np.isfinite(delta) and 0 < delta <= 1e-2):
        raise ValueError(f"delta must be a number in (0, 0.01], got {delta!r}")


def linear_buckling(truss: Truss, axis: int = 2, num_modes: int = 3, density: float = 0.15,
                    E: float = 1.0, nu: float = 0.3, elements_per_strut: int = 4,
                    delta: float = 1e-4, validate: bool = True) -> Buckling:
    """The lowest critical strains of a lattice's cell under uniaxial compression.

    Args:
        truss: the lattice.
        axis: loading axis (2 = z, as the curve labels).
        num_modes: how many critical strains to return.
        density: relative density (sets the strut radius, ``SPEC.md`` section 3).
        E, nu: base material.
        elements_per_strut: corotational elements per strut (mid-span buckling needs >= 2;
            4 as the compression curves).
        delta: strain of the pre-buckling state used for the initial-stress stiffness.
        validate: refuse a lattice that breaks the design-space rules
            (:data:`~gnn_truss.truss.RULES`); False analyses any connected, stable cell (a
            decoded lattice with a strut a little over the length limit, say).

    Returns:
        :class:`Buckling`.

    Raises:
        ValueError: for bad arguments, an invalid lattice, or one whose cell has a mechanism or
            no stiffness along ``axis`` (the linear homogenisation does not return OK), or a
            pre-buckling state that does not converge.
    """
    _check_args(axis, num_modes, delta)
    if not isinstance(truss, Truss):
        raise ValueError(f"expected a Truss, got {type(truss).__name__}")
    lin = homogenize(truss, density, E, nu, validate=validate)
    if lin.status != Status.OK:
        raise ValueError(f"no buckling analysis for this lattice: linear homogenisation says "
                         f"{lin.status.value}" + (f" ({lin.message})" if lin.message else ""))
    model = compression_model(truss, density, E, nu, elements_per_strut, imperfection=0.0,
                              validate=validate)
    cell = _Cell(model, axis)
    free = cell.free
    w = np.zeros((cell.N, 3))
    R = np.broadcast_to(np.eye(3), (cell.N, 3, 3)).copy()
    lat = np.ones(2)
    _, Ke0, _ = cell.residual_tangent(w, R, np.ones(3))
    K0 = cell.sparse_tangent(Ke0)[free][:, free].tocsc()
    order = elimination_order(K0)
    solve = _SymmetricFactor(K0, order).solve
    Fd = np.ones(3)
    Fd[axis] = 1.0 - delta
    # the pre-buckling equilibrium: Newton iterations with the unloaded stiffness (the first
    # step is the linear solution), converged as compress converges an increment
    tol = PRESTRESS_TOL * E * np.pi * model.radius**2
    for _ in range(PRESTRESS_ITER):
        r, _, _ = cell.residual_tangent(w, R, Fd, tangent=False)
        rn = np.linalg.norm(r[free])
        if not np.isfinite(rn) or rn <= tol:
            break
        w, R, lat, Fd = _apply(cell, w, R, lat, Fd, solve(-r[free]), 1.0)
    if not rn <= tol:
        raise ValueError(f"the pre-buckling state at strain {delta:g} did not converge in "
                         f"{PRESTRESS_ITER} iterations (residual {rn:.3g}, tolerance "
                         f"{tol:.3g}); try a smaller delta")
    _, ends = cell.positions(w, Fd)
    stretch = (np.linalg.norm(ends[:, 1] - ends[:, 0], axis=1)
               / np.linalg.norm(cell.ends0[:, 1] - cell.ends0[:, 0], axis=1) - 1.0)
    strut_forces = (E * np.pi * model.radius**2 / delta
                    * stretch.reshape(-1, model.elements_per_strut).mean(1))
    _, Ke1, _ = cell.residual_tangent(w, R, Fd)
    K1 = (cell.sparse_tangent(Ke1)[free][:, free] - K0) / delta
    K1 = (0.5 * (K1 + K1.T)).tocsc()
    n = K0.shape[0]
    k = min(num_modes, n - 1)
    if n <= DENSE_LIMIT:
        mu = scipy.linalg.eigh(-K1.toarray(), K0.toarray(), eigvals_only=True)[::-1][:k]
    else:
        mu = _lanczos_complete(K0, K1, k, order, solve)
    scale = np.max(np.abs(mu)) if len(mu) else 0.0
    strains = np.full(num_modes, np.inf)
    pos = mu > 1e-9 * max(scale, 1e-300)
    strains[:k][pos] = 1.0 / mu[pos]
    modulus = 1.0 / float(np.linalg.inv(lin.C)[axis, axis])
    return Buckling(strains=np.sort(strains), modulus=modulus, axis=axis,
                    strut_forces=strut_forces)


def elimination_order(K) -> np.ndarray:
    """A fill-reducing symmetric ordering of a cell's stiffness: the dofs by ascending number
    of nonzeros in their row (stable).

    The interior nodes of the subdivided struts (chains, 18 nonzeros a row) come first, the
    lattice nodes after them and the lateral stretches (coupled to every strut that crosses the
    cell boundary) last. Eliminating a chain only links its two ends, so the factor fills in
    little: on corpus lattices about a twelfth of SuperLU's default (COLAMD) ordering.

    Args:
        K: ``[n, n]`` sparse symmetric matrix.

    Returns:
        ``[n]`` permutation (int).
    """
    K = K.tocsc()
    return np.argsort(np.diff(K.indptr), kind="stable")


class _SymmetricFactor:
    """``K = L D L^T`` of a sparse symmetric matrix in a given symmetric order, by SuperLU
    without pivoting (stable for the positive definite stiffness; for an indefinite matrix a
    zero pivot raises ``RuntimeError``)."""

    def __init__(self, K, order):
        self.order = np.asarray(order)
        self.lu = spla.splu(K.tocsc()[self.order][:, self.order].tocsc(), permc_spec="NATURAL",
                            diag_pivot_thresh=0.0, options=dict(SymmetricMode=True))
        n = K.shape[0]
        if not (np.array_equal(self.lu.perm_r, np.arange(n))
                and np.array_equal(self.lu.perm_c, np.arange(n))):  # pragma: no cover
            raise RuntimeError("SuperLU pivoted a symmetric factorisation")

    def solve(self, b):
        """``K^-1 b`` for ``b`` of shape ``[n]``."""
        x = np.empty_like(b, dtype=float)
        x[self.order] = self.lu.solve(np.asarray(b, dtype=float)[self.order])
        return x

    def negative_pivots(self) -> int:
        """Negative entries of ``D``: by Sylvester's law of inertia, the number of negative
        eigenvalues of ``K``."""
        return int(np.count_nonzero(self.lu.U.diagonal() < 0))


def critical_count(K0, K1, strain: float, order=None) -> int:
    """The number of critical strains below ``strain``: the negative eigenvalues of the tangent
    ``K0 + strain K1`` (Sylvester's law of inertia: the Sturm-sequence check of buckling and
    vibration eigensolvers).

    Args:
        K0: ``[n, n]`` sparse positive definite stiffness.
        K1: ``[n, n]`` sparse symmetric initial-stress stiffness per unit strain.
        strain: compressive strain, not a critical strain itself (the tangent is singular
            there).
        order: symmetric elimination order (default :func:`elimination_order` of ``K0``).

    Returns:
        The count (int).
    """
    order = elimination_order(K0) if order is None else order
    return _SymmetricFactor((K0 + strain * K1).tocsc(), order).negative_pivots()


#: Relative margin above the highest critical strain that :func:`_lanczos_complete` checks.
STURM_MARGIN = 1e-6


def _multiplicities(K0, K1, strains, total, order):
    """Complete a list of critical strains whose distinct values are all known but some of
    whose copies are missing: the multiplicity of each distinct value is the number of
    critical strains in a band of relative width :data:`STURM_MARGIN` around it (two inertia
    counts). Returns the completed ascending strains, or ``None`` if the bands do not hold
    all ``total`` critical strains (a distinct value is missing too)."""
    values = []
    for e in np.sort(strains):
        if not values or e > values[-1] * (1 + STURM_MARGIN):
            values.append(e)
    counts = [critical_count(K0, K1, v * (1 + STURM_MARGIN), order)
              - critical_count(K0, K1, v * (1 - STURM_MARGIN), order) for v in values]
    if sum(counts) != total or min(counts) < 1:
        return None
    return np.repeat(values, counts)


def _lanczos_complete(K0, K1, k, order, solve):
    """The ``k`` largest eigenvalues ``mu`` of ``-K1 phi = mu K0 phi`` by Lanczos iteration
    (ARPACK, seeded start), checked for completeness by :func:`critical_count`.

    A single-vector Krylov method can miss copies of a repeated eigenvalue (symmetric modes of
    a symmetric cell: with two extra modes and ARPACK's default subspace, 0.57 % of the curve
    corpus' lattices lost one among their three lowest).
    Three modes more than asked are computed. If the tangent just above the ``k``-th critical
    strain has more negative eigenvalues than critical strains were found below it, the
    multiplicity of each value found is counted by inertia (:func:`_multiplicities`); if that
    does not account for all of them, the iteration is repeated asking for more modes, and
    if it still falls short the dense solver decides.
    """
    n = K0.shape[0]
    Minv = spla.LinearOperator(K0.shape, matvec=solve, dtype=float)
    v0 = np.random.default_rng(0).standard_normal(n)
    A = (-K1).tocsc()
    m = min(k + 3, n - 1)
    for _ in range(2):
        mu = spla.eigsh(A, k=m, M=K0, Minv=Minv, which="LA", return_eigenvectors=False,
                        tol=1e-8, v0=v0, ncv=min(n, 4 * m))
        mu = np.sort(mu)[::-1]
        pos = mu[mu > 0]
        if len(pos) == 0:
            return mu[:k]
        strain = (1.0 / pos[min(k, len(pos)) - 1]) * (1 + STURM_MARGIN)
        below = 1.0 / pos[pos >= 1.0 / strain]
        try:
            total = critical_count(K0, K1, strain, order)
            if total <= len(below):
                return mu[:k]
            log.debug("Lanczos missed %d copies of repeated critical strains",
                      total - len(below))
            filled = _multiplicities(K0, K1, below, total, order)
        except RuntimeError:  # a zero pivot: the check cannot decide, the dense solver does
            break
        if filled is not None:  # the non-positive ones after them, should fewer than k be
            return np.concatenate([np.sort(1.0 / filled)[::-1], mu[mu <= 0]])[:k]
        if m + total - len(below) >= n - 1:
            break
        m = m + total - len(below) + 2
    mu = scipy.linalg.eigh(A.toarray(), K0.toarray(), eigvals_only=True,
                           subset_by_index=[n - k, n - 1])
    return np.sort(mu)[::-1]


def _batch_item(args):
    adj, off, kwargs = args
    try:
        b = linear_buckling(Truss(adj, off), **kwargs)
        return b.strains, b.modulus, ""
    except (ValueError, np.linalg.LinAlgError, RuntimeError, spla.ArpackError) as exc:
        return None, np.nan, str(exc)


def buckling_batch(trusses, num_modes: int = 3, workers: int | None = 1,
                   progress: bool = False, warn: bool = True, **kwargs):
    """:func:`linear_buckling` of many lattices.

    Args:
        trusses: sequence of :class:`Truss` (or ``(adjacency [27, 27], offsets [27, 3])``
            pairs).
        num_modes: critical strains per lattice.
        workers: processes (default 1; ``None``: all cores).
        progress: show a progress bar.
        warn: log each failure as a warning (else at debug level).
        **kwargs: passed to :func:`linear_buckling`.

    Returns:
        ``(strains [B, num_modes], modulus [B], ok [B])``; rows that failed are NaN, ``ok``
        False, and the reason is logged.
    """
    _check_args(kwargs.get("axis", 2), num_modes, kwargs.get("delta", 1e-4))
    _check_material(kwargs.get("density", 0.15), kwargs.get("E", 1.0), kwargs.get("nu", 0.3))
    items = []
    for t in trusses:
        adj, off = (t.adjacency, t.offsets) if isinstance(t, Truss) else t
        items.append((np.asarray(adj), np.asarray(off), dict(kwargs, num_modes=num_modes)))
    B = len(items)
    strains = np.full((B, num_modes), np.nan)
    modulus = np.full(B, np.nan)
    ok = np.zeros(B, dtype=bool)
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    bar = None
    if progress:
        from ..progress import progress_bar
        bar = progress_bar(total=B, desc="buckling", unit="lattice")
    if workers > 1 and B > 1:
        with ProcessPoolExecutor(workers, initializer=single_thread_worker) as pool:
            results = pool.map(_batch_item, items, chunksize=max(1, min(16, B // (8 * workers))))
            results = list(_tick(results, bar))
    else:
        results = list(_tick(map(_batch_item, items), bar))
    if bar is not None:
        bar.close()
    for i, (s, m, msg) in enumerate(results):
        if s is None:
            log.log(logging.WARNING if warn else logging.DEBUG, "lattice %d: %s", i, msg)
            continue
        strains[i], modulus[i], ok[i] = s, m, True
    return strains, modulus, ok


def _tick(it, bar):
    for x in it:
        if bar is not None:
            bar.update(1)
        yield x


# --------------------------------------------------------------------------- predictor inputs

#: The five numbers :func:`buckling_descriptors` gives a lattice (natural logarithms; strains
#: and modulus in units of 1 and ``E_s``).
DESCRIPTOR_NAMES = ("log_eps1", "log_eps2", "log_eps3", "log_E", "log_E_eps1")


def buckling_descriptors(strains, modulus) -> np.ndarray:
    r"""The buckling of lattices as the inputs of a curve predictor
    (``model.predictor_features: buckling``): ``[log eps_1, log eps_2, log eps_3, log E,
    log(E eps_1)]``, the three lowest critical strains, the modulus along the loading axis and
    the stress at the first critical strain on the linear path.

    A critical strain above 1 (``inf``: a mode that compression does not destabilise) counts as
    1, the end of any compression curve. A NaN row (the analysis failed) stays NaN.

    Args:
        strains: ``[N, 3]`` critical strains of :func:`buckling_batch` (``num_modes=3``).
        modulus: ``[N]`` moduli along the loading axis (``E_s``).

    Returns:
        ``[N, 5]`` float64.

    Raises:
        ValueError: for other shapes, or a non-positive strain or modulus.
    """
    s = np.asarray(strains, dtype=np.float64)
    m = np.asarray(modulus, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != 3 or m.shape != (len(s),):
        raise ValueError(f"need strains [N, 3] and modulus [N], got {s.shape} and {m.shape}")
    with np.errstate(invalid="ignore"):
        if np.any(s <= 0) or np.any(m <= 0):
            raise ValueError("critical strains and moduli must be positive")
    s = np.minimum(s, 1.0)  # NaN stays NaN
    m = m[:, None]
    return np.concatenate([np.log(s), np.log(m), np.log(m * s[:, :1])], axis=1)


def lattice_descriptors(trusses, workers: int | None = 1, progress: bool = False,
                        **kwargs) -> np.ndarray:
    """:func:`buckling_descriptors` of lattices, from :func:`buckling_batch` (three modes,
    loading along z, without the design-space validity check, so that a decoded lattice which
    breaks the design rules but can carry load is still analysed).

    Args:
        trusses: sequence of :class:`Truss` (or ``(adjacency, offsets)`` pairs).
        workers, progress: as :func:`buckling_batch`.
        **kwargs: passed to :func:`linear_buckling` (mesh and material; the defaults are those
            the shipped ``datasets/nonlinear/buckling.npz`` was computed with).

    Returns:
        ``[N, 5]`` float64; NaN rows for the lattices the analysis cannot handle (a mechanism,
        a disconnected cell: their count is logged at info level, each reason at debug
        level).
    """
    kwargs.setdefault("validate", False)
    strains, modulus, ok = buckling_batch(trusses, num_modes=3, workers=workers,
                                          progress=progress, warn=False, **kwargs)
    if not ok.all():  # expected for decoded lattices: one line, the reasons at debug level
        log.info("%d of %d lattices could not be analysed (first: lattice %d); their "
                 "features are NaN", int((~ok).sum()), len(ok), int(np.flatnonzero(~ok)[0]))
    return buckling_descriptors(strains, modulus)
