"""Tests for :mod:`gnn_truss.fe.homogenization` (with :mod:`gnn_truss.fe.assembly`).

The effective stiffness is the ground truth of every label, so it is checked against

* an independent closed form for the six elementary (Bravais) lattices (``SPEC.md`` section 3),
  written here from the formula, not from the package;
* exact invariances of the periodic problem on seeded random lattices: pinned node, splitting a
  strut, shifting the cell window, moving a node by a lattice vector, supercells, rigid
  rotations of the whole truss (a triclinic cell for the reference path);
* the energy principle: ``1/2 eps.C.eps V`` equals the summed element energy of the solved
  fluctuation field, which is in equilibrium;
* the Voigt bound ``C <= rho C_s`` (in the energy sense), hence ``E_i <= rho E_s``,
  ``G_ij <= rho G_s``;
* the batched mirror-sector path against the reference path.

Units: ``E_s = 1`` unless stated; cell ``[-1, 1]^3`` (side 2, ``V = 8``).
"""
import numpy as np
import pytest

from gnn_truss import design_space as ds
from gnn_truss.cell import PeriodicTruss
from gnn_truss.fe import Status, homogenize, homogenize_batch, homogenize_periodic
from gnn_truss.fe.homogenization import PIVOT_TOL, _cholesky_checked, periodic_solution
from gnn_truss.generator import random_valid_subgraphs
from gnn_truss.truss import Truss

V = 8.0
NU = 0.3
NAMES = sorted(ds.ELEMENTARY_LATTICES)
VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (2, 0), (0, 1))  # 11 22 33 23 31 12
I3 = np.eye(3, dtype=np.int64)


# --------------------------------------------------------------------------- independent helpers

def bravais_struts(name):
    """``[M, 3]`` strut vectors of the elementary lattice in the cell of side 2 (one per physical
    strut; sign irrelevant). Points per cell x half the coordination:

    * SC, lattice constant a: ``(2/a)^3`` points, neighbours ``a e_i`` (3 per point);
    * BCC: ``2 (2/a)^3`` points, ``a/2 (+-1, +-1, +-1)`` (4 per point);
    * FCC (octet): ``4 (2/a)^3`` points, ``a/2 (+-1, +-1, 0)`` and permutations (6 per point).

    So sc: 3 struts of length 2, sc_2x2x2: 24 of length 1, bcc: 8 of length sqrt(3),
    bcc_2x2x2: 64 of length sqrt(3)/2, octet: 24 of length sqrt(2), octet_2x2x2: 192 of
    length sqrt(2)/2.
    """
    kind, a = {"sc": ("sc", 2.0), "sc_2x2x2": ("sc", 1.0), "bcc": ("bcc", 2.0),
               "bcc_2x2x2": ("bcc", 1.0), "octet": ("fcc", 2.0),
               "octet_2x2x2": ("fcc", 1.0)}[name]
    if kind == "sc":
        half, points = np.eye(3), 1
    elif kind == "bcc":
        half, points = np.array([[1, 1, 1], [1, 1, -1], [1, -1, 1], [-1, 1, 1]]) / 2.0, 2
    else:
        half = np.array([[1, 1, 0], [1, -1, 0], [1, 0, 1], [1, 0, -1], [0, 1, 1],
                         [0, 1, -1]]) / 2.0
        points = 4
    points *= round((2.0 / a) ** 3)
    return np.tile(a * half, (points, 1))


def closed_form_stiffness(name, rho, E=1.0, nu=NU):
    """SPEC closed form ``C_ijkl = (1/V) sum_b [k_a L^2 n_i n_j n_k n_l
    + k_b L^2 Sym{n_j (delta_ik - n_i n_k) n_l}]`` as a Voigt matrix.

    Affine chords, zero rotations (exact for a centrosymmetric cubic Bravais lattice: a uniform
    rotation does not couple to a symmetric strain under O_h). The lateral end displacement
    ``L P eps n`` (``P = I - n n``) of a strut stores ``1/2 k_b L^2 |P eps n|^2
    = 1/2 k_b L^2 eps_ij n_j P_ik n_l eps_kl``. ``T_ijkl = n_j P_ik n_l`` is already major
    symmetric (``T_klij = n_l P_ki n_j``) but not minor symmetric; ``Sym`` averages the minor
    pairs ``(T_ijkl + T_jikl + T_ijlk + T_jilk) / 4``, which keeps the energy and gives all
    symmetries. Radius from ``rho = pi r^2 sum L / V``.
    """
    d = bravais_struts(name)
    L = np.linalg.norm(d, axis=1)
    n = d / L[:, None]
    r2 = rho * V / (np.pi * L.sum())
    A, I = np.pi * r2, np.pi * r2**2 / 4
    G = E / (2 * (1 + nu))
    k = (7 + 6 * nu) / (6 * (1 + nu))
    phi = 12 * E * I * k / (A * G * L**2)
    ka, kb = E * A / L, 12 * E * I / (L**3 * (1 + phi))
    P = np.eye(3) - n[:, :, None] * n[:, None, :]
    T = np.einsum("bj,bik,bl->bijkl", n, P, n)
    S = (T + T.transpose(0, 2, 1, 3, 4) + T.transpose(0, 1, 2, 4, 3)
         + T.transpose(0, 2, 1, 4, 3)) / 4
    C4 = (np.einsum("b,bi,bj,bk,bl->ijkl", ka * L**2, n, n, n, n)
          + np.einsum("b,bijkl->ijkl", kb * L**2, S)) / V
    for perm in ((1, 0, 2, 3), (0, 1, 3, 2), (2, 3, 0, 1)):  # minor and major symmetries
        assert np.allclose(C4, C4.transpose(perm), rtol=0, atol=1e-15)
    return voigt(C4)


def voigt(C4):
    """Voigt matrix (engineering shears): ``C_IJ = C_ijkl``, e.g. C44 = C2323, C12 = C1122."""
    return np.array([[C4[i, j, k, l] for k, l in VOIGT_PAIRS] for i, j in VOIGT_PAIRS])


def tensor(C):
    """Inverse of :func:`voigt` for a stiffness."""
    idx = np.array([[0, 5, 4], [5, 1, 3], [4, 3, 2]])
    return C[idx[:, :, None, None], idx[None, None, :, :]]


def isotropic_stiffness(E, nu):
    lam, mu = E * nu / ((1 + nu) * (1 - 2 * nu)), E / (2 * (1 + nu))
    C = np.zeros((6, 6))
    C[:3, :3] = lam
    C[range(3), range(3)] = lam + 2 * mu
    C[range(3, 6), range(3, 6)] = mu
    return C


def eps_tensor(e):
    """3x3 strain tensor from the Voigt vector with engineering shears."""
    return np.array([[e[0], e[5] / 2, e[4] / 2], [e[5] / 2, e[1], e[3] / 2],
                     [e[4] / 2, e[3] / 2, e[2]]])


def rel_err(A, B):
    return np.abs(A - B).max() / np.abs(B).max()


def make_pt(nodes, struts, cell=None):
    nodes = np.asarray(nodes, dtype=np.float64)
    edges = np.array([s[:2] for s in struts], dtype=np.int64).reshape(-1, 2)
    shifts = np.array([s[2] for s in struts], dtype=np.int64).reshape(-1, 3)
    return PeriodicTruss(nodes, edges, shifts, 2.0 * np.eye(3) if cell is None else cell)


def wrap(x):
    """Points into the cell [-1, 1)^3 and the integer lattice shift removed (x = x' + 2 n)."""
    xw = x - 2.0 * np.floor((x + 1.0) / 2.0)
    return xw, np.rint((x - xw) / 2.0).astype(np.int64)


def split_strut(pt, e):
    """Insert a node at the midpoint of strut ``e`` (wrapped into the cell) and replace the strut
    by its two halves: ``(i, m, n_m)`` and ``(m, j, s - n_m)``, where ``X_i + d/2 = X_m + 2 n_m``."""
    i, j = pt.edges[e]
    s = pt.shifts[e]
    mid, n_m = wrap(pt.nodes[i] + pt.chords[e] / 2)
    m = pt.num_nodes
    keep = np.arange(pt.num_struts) != e
    edges = np.concatenate([pt.edges[keep], [[i, m], [m, j]]])
    shifts = np.concatenate([pt.shifts[keep], [n_m, s - n_m]])
    return PeriodicTruss(np.concatenate([pt.nodes, mid[None]]), edges, shifts, pt.cell)


def shift_window(pt, t):
    """Translate every node by ``t`` and wrap back into the cell: ``X' = X + t - 2 n``; the
    strut shifts become ``s + n_j - n_i`` so that every chord is unchanged."""
    x, n = wrap(pt.nodes + t)
    shifts = pt.shifts + n[pt.edges[:, 1]] - n[pt.edges[:, 0]]
    return PeriodicTruss(x, pt.edges, shifts, pt.cell)


def move_node(pt, node, lattice_shift):
    """Move one master node by the lattice vector ``2 * lattice_shift``, adjusting its struts."""
    x = pt.nodes.copy()
    x[node] += 2.0 * np.asarray(lattice_shift)
    shifts = (pt.shifts - lattice_shift * (pt.edges[:, 1] == node)[:, None]
              + lattice_shift * (pt.edges[:, 0] == node)[:, None])
    return PeriodicTruss(x, pt.edges, shifts, pt.cell)


def supercell(pt, reps):
    """``reps = (a, b, c)`` tiling of a cubic-cell periodic truss. Copy ``c`` of node ``k`` sits at
    ``X_k + 2 c``; end ``j`` of copy ``c`` of strut ``(i, j, s)`` is copy ``(c + s) mod reps``
    shifted by ``floor((c + s) / reps)`` big cells."""
    reps = np.asarray(reps)
    copies = np.array(list(np.ndindex(*reps)))
    N = pt.num_nodes

    def index(c, k):
        return np.ravel_multi_index(tuple(c.T), reps) * N + k

    nodes = (pt.nodes[None] + 2.0 * copies[:, None]).reshape(-1, 3)  # copy-major = index()
    edges, shifts = [], []
    for c in copies:
        cj = c + pt.shifts
        big = np.floor_divide(cj, reps)
        cj = cj - big * reps
        ci = np.repeat(c[None], pt.num_struts, 0)
        edges.append(np.stack([index(ci, pt.edges[:, 0]), index(cj, pt.edges[:, 1])], 1))
        shifts.append(big)
    return PeriodicTruss(nodes, np.concatenate(edges), np.concatenate(shifts),
                         2.0 * np.diag(reps.astype(float)))


def periodic_of(truss, density=0.15):
    return truss.periodic(), truss.radius(density)


# --------------------------------------------------------------------------- shared data

@pytest.fixture(scope="module")
def random_lattices():
    """100 seeded random valid lattices with random node offsets."""
    return random_valid_subgraphs(100, seed=0, p_edge=0.3)


@pytest.fixture(scope="module")
def perturbed(random_lattices):
    """20 of them for the more expensive invariance checks."""
    return random_lattices[:20]


@pytest.fixture(scope="module")
def reference(random_lattices):
    """Reference-path results of the 100 random lattices."""
    return [homogenize(t) for t in random_lattices]


# --------------------------------------------------------------------------- closed forms

@pytest.mark.parametrize("rho", [0.15, 0.01])
@pytest.mark.parametrize("name", NAMES)
def test_closed_form_elementary(name, rho):
    """C11, C12, C44, E100 and the whole matrix against the independent closed form."""
    Cref = closed_form_stiffness(name, rho)
    res = homogenize(Truss.elementary(name), rho)
    assert res.status is Status.OK
    C = res.C
    for (a, b) in ((0, 0), (0, 1), (3, 3)):
        assert C[a, b] == pytest.approx(Cref[a, b], rel=1e-6, abs=1e-12 * Cref[0, 0])
    # cubic: all normal, off-diagonal and shear entries equal, no other coupling
    assert np.abs(C - Cref).max() <= 1e-9 * np.abs(Cref).max()
    c11, c12 = Cref[0, 0], Cref[0, 1]
    e100 = (c11 - c12) * (c11 + 2 * c12) / (c11 + c12)
    assert 1.0 / np.linalg.inv(C)[0, 0] == pytest.approx(e100, rel=1e-6)
    assert 1.0 / np.linalg.inv(C)[2, 2] == pytest.approx(e100, rel=1e-6)


def test_spec_reference_values_sc():
    """SPEC: SC at rho = 0.15: C11 = rho / 3 = 0.05, C12 = 0, C44 = 1.04702e-3 (both lattice
    constants: the two lattices are the same up to scale)."""
    for name in ("sc", "sc_2x2x2"):
        C = homogenize(Truss.elementary(name), 0.15).C
        assert C[0, 0] == pytest.approx(0.05, rel=1e-12)
        assert abs(C[0, 1]) <= 1e-12
        assert C[3, 3] == pytest.approx(1.04702e-3, rel=1e-5)


@pytest.mark.parametrize("nu", [0.0, 0.3, 0.45])
@pytest.mark.parametrize("name", NAMES)
def test_bulk_modulus_stretching_limit(name, nu):
    """Hydrostatic strain stretches every strut of a Bravais lattice without bending:
    K = (C11 + 2 C12) / 3 = rho E_s / 9, for any nu."""
    rho = 0.15
    C = homogenize(Truss.elementary(name), rho, nu=nu).C
    assert (C[0, 0] + 2 * C[0, 1]) / 3 == pytest.approx(rho / 9, rel=1e-9)


@pytest.mark.parametrize("base", ["sc", "bcc", "octet"])
def test_scale_invariance(base):
    """The 2x2x2 lattice is the lattice-constant-2 one scaled by 1/2; at equal relative density
    the homogenized stiffness is identical (r / L is the same, so is Phi)."""
    C1 = homogenize(Truss.elementary(base)).C
    C2 = homogenize(Truss.elementary(base + "_2x2x2")).C
    assert rel_err(C2, C1) <= 1e-10


def test_density_counts_each_physical_strut_once(random_lattices):
    """pi r^2 sum(L) / V over the periodic truss is the requested density (SPEC pitfall: a
    strut on a cell face or edge is one strut)."""
    for t in list(random_lattices[:30]) + [Truss.elementary(n) for n in NAMES]:
        pt, r = periodic_of(t, 0.15)
        assert np.pi * r**2 * pt.lengths.sum() / pt.volume == pytest.approx(0.15, rel=1e-12)
    pt = Truss.elementary("sc").periodic()
    assert pt.lengths.sum() == pytest.approx(6.0, rel=1e-12)  # 3 struts of length 2


# --------------------------------------------------------------------------- batched path

def assert_batch_matches(trusses, batch, single=None):
    single = single or [homogenize(t) for t in trusses]
    assert len(batch) == len(trusses)
    for b, s in enumerate(single):
        assert batch.status[b] == s.status.value
        if s.ok:
            assert np.abs(batch.C[b] - s.C).max() <= 1e-10 * np.abs(s.C).max()
            assert batch.radius[b] == pytest.approx(s.radius, rel=1e-12)
        else:
            assert np.all(np.isnan(batch.C[b]))


def test_batch_matches_reference_elementary():
    trusses = [Truss.elementary(n) for n in NAMES]
    for rho in (0.15, 0.01):
        assert_batch_matches(trusses, homogenize_batch(trusses, rho, workers=1),
                             [homogenize(t, rho) for t in trusses])


def test_batch_matches_reference_random(random_lattices, reference):
    # small groups: several padded factorisations of different sizes, results back in order
    batch = homogenize_batch(random_lattices, workers=1, group_size=16)
    assert_batch_matches(random_lattices, batch, reference)
    assert batch.ok.all()


def test_batch_array_input_and_workers(random_lattices, reference):
    """``(adjacency, offsets)`` arrays and two worker processes give the same result."""
    ts = random_lattices[:24]
    adj = np.stack([t.adjacency for t in ts])
    off = np.stack([t.offsets for t in ts])
    a = homogenize_batch((adj, off), workers=1)
    b = homogenize_batch(ts, workers=2, group_size=4)
    assert_batch_matches(ts, a, reference[:24])
    assert_batch_matches(ts, b, reference[:24])


def test_batch_empty():
    out = homogenize_batch([])
    assert len(out) == 0 and out.C.shape == (0, 6, 6)


# --------------------------------------------------------------------------- reference path

def test_reference_spd_and_orthotropic(perturbed, reference):
    """C symmetric positive definite; the reference path does not assume the mirror symmetry,
    so the vanishing normal-shear and shear-shear couplings are a real check."""
    for t, res in zip(perturbed, reference):
        pt, r = periodic_of(t)
        C, _, _ = periodic_solution(pt, r)  # raw, before symmetrization
        scale = np.abs(C).max()
        assert np.abs(C - C.T).max() <= 1e-12 * scale
        assert np.linalg.eigvalsh(C)[0] > 0
        assert np.abs(C[:3, 3:]).max() <= 1e-12 * scale
        assert max(abs(C[3, 4]), abs(C[3, 5]), abs(C[4, 5])) <= 1e-12 * scale
        assert rel_err(res.C, C) <= 1e-13


def test_energy_equals_element_sum(perturbed):
    """1/2 eps.C.eps V = sum_e 1/2 q_e.K_e.q_e at the solved fluctuation, with q_e the element
    end dofs (fluctuation + affine eps.d added at end j); the field is in equilibrium (the
    element forces assembled here balance at every unpinned dof)."""
    rng = np.random.default_rng(10)
    for t in perturbed:
        pt, r = periodic_of(t)
        C, _, parts = periodic_solution(pt, r)
        Ke, K_ww, K_we, keep = parts["Ke"], parts["K_ww"], parts["K_we"], parts["keep"]
        N = pt.num_nodes
        dofs = 6 * pt.edges[:, :, None] + np.arange(6)  # [M, 2, 6]
        for _ in range(3):
            eps = rng.normal(size=6)
            w = np.zeros(6 * N)
            w[keep] = -np.linalg.solve(K_ww[np.ix_(keep, keep)], K_we[keep] @ eps)
            q = w[dofs].reshape(-1, 12)
            q[:, 6:9] += pt.chords @ eps_tensor(eps).T
            f = np.einsum("mab,mb->ma", Ke, q)
            energy = 0.5 * np.einsum("ma,ma->", q, f)
            assert 0.5 * eps @ C @ eps * pt.volume == pytest.approx(energy, rel=1e-10)
            residual = np.zeros(6 * N)
            np.add.at(residual, dofs.reshape(-1, 12), f)
            assert np.abs(residual[keep]).max() <= 1e-10 * np.abs(f).max()
            # the pinned dofs carry the (zero) net force of a self-equilibrated cell
            assert np.abs(residual[~keep]).max() <= 1e-10 * np.abs(f).max()


def test_independent_of_pinned_node(perturbed):
    rng = np.random.default_rng(11)
    for t in perturbed[:10]:
        pt, r = periodic_of(t)
        C0 = homogenize_periodic(pt, r, pin=0).C
        for pin in rng.choice(pt.num_nodes, 3, replace=False):
            assert rel_err(homogenize_periodic(pt, r, pin=int(pin)).C, C0) <= 1e-10


def test_independent_of_strut_splitting(perturbed):
    """A collinear midpoint node changes nothing (exact element; same radius, same length)."""
    rng = np.random.default_rng(12)
    for t in perturbed:
        pt, r = periodic_of(t)
        C0 = homogenize_periodic(pt, r).C
        for e in rng.choice(pt.num_struts, 2, replace=False):
            sp = split_strut(pt, int(e))
            assert sp.num_nodes == pt.num_nodes + 1 and sp.num_struts == pt.num_struts + 1
            assert sp.lengths.sum() == pytest.approx(pt.lengths.sum(), rel=1e-14)
            assert rel_err(homogenize_periodic(sp, r).C, C0) <= 1e-9


def test_independent_of_cell_window(perturbed):
    rng = np.random.default_rng(13)
    for t in perturbed:
        pt, r = periodic_of(t)
        C0 = homogenize_periodic(pt, r).C
        moved = shift_window(pt, rng.uniform(-1, 1, 3))
        assert np.abs(moved.chords - pt.chords).max() < 1e-12
        assert np.all((moved.nodes >= -1) & (moved.nodes < 1))
        assert not np.array_equal(moved.shifts, pt.shifts)  # a real re-indexing happened
        assert rel_err(homogenize_periodic(moved, r).C, C0) <= 1e-10


def test_independent_of_node_lattice_translation(perturbed):
    for t in perturbed[:10]:
        pt, r = periodic_of(t)
        C0 = homogenize_periodic(pt, r).C
        node = int(pt.edges[0, 0])
        moved = move_node(pt, node, I3[0])  # X += 2 e_x
        assert np.abs(moved.chords - pt.chords).max() < 1e-12
        assert rel_err(homogenize_periodic(moved, r).C, C0) <= 1e-10


@pytest.mark.parametrize("reps", [(2, 1, 1), (1, 1, 2)])
def test_supercell_invariance(perturbed, reps):
    """Tiling the cell (a non-cubic box for the reference path) does not change C."""
    for t in perturbed[:5]:
        pt, r = periodic_of(t)
        C0 = homogenize_periodic(pt, r).C
        big = supercell(pt, reps)
        assert big.volume == pytest.approx(8.0 * np.prod(reps))
        assert np.sort(big.lengths) == pytest.approx(np.sort(np.tile(pt.lengths, np.prod(reps))))
        assert rel_err(homogenize_periodic(big, r).C, C0) <= 1e-9


@pytest.mark.slow
def test_supercell_2x2x2(perturbed):
    for t in perturbed[:3]:
        pt, r = periodic_of(t)
        C0 = homogenize_periodic(pt, r).C
        assert rel_err(homogenize_periodic(supercell(pt, (2, 2, 2)), r).C, C0) <= 1e-9


def test_rotation_equivariance(perturbed):
    """Rotating the whole truss and its cell (a triclinic cell in general) rotates the
    stiffness tensor: C'_ijkl = R_ia R_jb R_kc R_ld C_abcd."""
    rng = np.random.default_rng(14)
    for t in perturbed[:5]:
        pt, r = periodic_of(t)
        C0 = homogenize_periodic(pt, r).C
        Q, Rq = np.linalg.qr(rng.normal(size=(3, 3)))
        R = Q * np.sign(np.diag(Rq))
        R = R if np.linalg.det(R) > 0 else -R
        rot = PeriodicTruss(pt.nodes @ R.T, pt.edges, pt.shifts, pt.cell @ R.T)
        expected = voigt(np.einsum("ia,jb,kc,ld,abcd->ijkl", R, R, R, R, tensor(C0)))
        assert rel_err(homogenize_periodic(rot, r).C, expected) <= 1e-9


def test_linear_in_youngs_modulus(perturbed):
    for t in list(perturbed[:5]) + [Truss.elementary("octet")]:
        C1 = homogenize(t).C
        assert rel_err(homogenize(t, E=3.0).C, 3.0 * C1) <= 1e-12
        b = homogenize_batch([t], E=3.0, workers=1)
        assert rel_err(b.C[0], 3.0 * C1) <= 1e-10


# --------------------------------------------------------------------------- bounds and sanity

def test_voigt_bound(random_lattices, reference):
    """With the affine test field (w = 0, theta = 0) each strut stores at most the energy of the
    affinely strained solid cylinder (axial E (n.eps.n)^2 <= the 3D energy with free lateral
    strain; shear k_b <= GA/(kL) and k >= 1/4), so rho C_s - C is positive semi-definite:
    E_i = 1/S_ii <= rho E_s and G_ij <= rho G_s."""
    rho = 0.15
    Cs = isotropic_stiffness(1.0, NU)
    Gs = 1.0 / (2 * (1 + NU))
    stiffnesses = [homogenize(Truss.elementary(n), rho).C for n in NAMES] + [r.C for r in reference]
    for C in stiffnesses:
        assert np.linalg.eigvalsh(rho * Cs - C)[0] >= -1e-12
        S = np.linalg.inv(C)
        assert np.all(1.0 / np.diag(S)[:3] <= rho * (1 + 1e-12))  # E_s = 1
        assert np.all(1.0 / np.diag(S)[3:] <= rho * Gs * (1 + 1e-12))


def test_sc_reaches_stretching_bound():
    """SC loaded along a strut is the stretching-dominated extreme: E_100 = rho E_s / 3."""
    C = homogenize(Truss.elementary("sc"), 0.15).C
    assert 1.0 / np.linalg.inv(C)[0, 0] == pytest.approx(0.05, rel=1e-12)


def test_random_regression(random_lattices, reference):
    """All random valid lattices homogenize: finite C, positive moduli."""
    assert all(r.ok for r in reference)
    for t, r in zip(random_lattices, reference):
        assert np.all(np.isfinite(r.C))
        S = np.linalg.inv(r.C)
        assert np.all(np.diag(S) > 0)
        assert r.radius == pytest.approx(t.radius(0.15), rel=1e-12)
        assert r.density == 0.15


# --------------------------------------------------------------------------- statuses

def two_sc_lattices():
    """Two interpenetrating SC lattices (lattice constant 2), not joined."""
    return make_pt([[-1, -1, -1], [0, 0, 0]],
                   [(0, 0, I3[0]), (0, 0, I3[1]), (0, 0, I3[2]),
                    (1, 1, I3[0]), (1, 1, I3[1]), (1, 1, I3[2])])


def test_disconnected():
    pt = two_sc_lattices()
    res = homogenize_periodic(pt, 0.1)
    assert res.status is Status.DISCONNECTED and np.all(np.isnan(res.C)) and not res.ok
    with pytest.raises(ValueError):
        res.raise_for_status()
    # the mechanism detector on its own: the second lattice translates freely
    C, factor, _ = periodic_solution(pt, 0.1)
    assert C is None and factor is None
    # one of the two lattices alone is fine (SC, C11 = E A L / V = pi r^2 * 2 / 8)
    one = make_pt([[-1, -1, -1]], [(0, 0, I3[0]), (0, 0, I3[1]), (0, 0, I3[2])])
    res = homogenize_periodic(one, 0.1)
    assert res.ok and res.C[0, 0] == pytest.approx(np.pi * 0.01 * 2 / 8, rel=1e-12)


@pytest.mark.parametrize("case", ["rod", "cluster"])
def test_mechanism_reference(case):
    """A connected truss that does not span the cell in all directions has a zero-energy
    rotation: a periodic rod spins about its axis; a strut not joined to its periodic images
    rotates as a whole."""
    if case == "rod":
        pt = make_pt([[0, 0, 0]], [(0, 0, I3[0])])
    else:
        pt = make_pt([[0, 0, 0], [0.5, 0.2, 0.1]], [(0, 1, [0, 0, 0])])
    res = homogenize_periodic(pt, 0.1)
    assert res.status is Status.MECHANISM and np.all(np.isnan(res.C))


def test_singular_reference():
    """A square grid in the plane z = 0 carries no load along z: no mechanism in the
    fluctuations, but C33 = 0."""
    pt = make_pt([[0, 0, 0]], [(0, 0, I3[0]), (0, 0, I3[1])])
    C, _, _ = periodic_solution(pt, 0.1)
    assert C is not None and abs(C[2, 2]) <= 1e-14 * C[0, 0]
    res = homogenize_periodic(pt, 0.1)
    assert res.status is Status.SINGULAR and np.all(np.isnan(res.C))


def test_no_struts_invalid():
    res = homogenize_periodic(make_pt(np.zeros((1, 3)), []), 0.1)
    assert res.status is Status.INVALID


def test_cholesky_checked():
    rng = np.random.default_rng(15)
    B = rng.normal(size=(6, 3))
    assert _cholesky_checked(B @ B.T) is None  # PSD, rank 3
    assert _cholesky_checked(np.diag([1.0, 1.0, 0.1 * PIVOT_TOL])) is None  # tiny pivot
    assert _cholesky_checked(np.diag([1.0, -1.0])) is None  # indefinite
    A = B.T @ B + np.eye(3)
    L = _cholesky_checked(A)
    assert L is not None and np.allclose(L @ L.T, A, rtol=0, atol=1e-13)
    assert _cholesky_checked(np.diag([1.0, 1e3 * PIVOT_TOL])) is not None


@pytest.mark.parametrize("edges,status", [
    ([(0, 1), (25, 26)], Status.DISCONNECTED),  # two pieces in the octant
    ([(0, 5), (5, 6)], Status.MECHANISM),  # a rod along y on the x = z = 0 axis: it spins
    ([(0, 13)], Status.MECHANISM),  # a star of 8 half BCC struts around the origin
    ([(0, 1), (1, 2), (0, 9), (9, 18)], Status.SINGULAR),  # grid in the plane y = 0
])
def test_status_both_paths_without_validation(edges, status):
    t = Truss.from_edges(edges)
    assert t.validate()  # all of these are invalid lattices
    single = homogenize(t, validate=False)
    batch = homogenize_batch([t], validate=False, workers=1)
    assert single.status is status and np.all(np.isnan(single.C))
    assert batch.status[0] == status.value and np.all(np.isnan(batch.C[0]))


def test_invalid_lattices_reported(random_lattices):
    empty = Truss(np.zeros((27, 27)))
    dangling = Truss.from_edges(list(ds.ELEMENTARY_LATTICES["sc"]) + [(0, 1)])
    assert "no_dangling" in dangling.validate()
    trusses = [empty, random_lattices[0], dangling]
    batch = homogenize_batch(trusses, workers=1)
    assert list(batch.status) == ["invalid", "ok", "invalid"]
    assert np.all(np.isnan(batch.C[[0, 2]])) and np.all(np.isfinite(batch.C[1]))
    for t in (empty, dangling):
        res = homogenize(t)
        assert res.status is Status.INVALID and np.all(np.isnan(res.C))
    assert homogenize_batch([empty], validate=False, workers=1).status[0] == "invalid"


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs", [
    dict(density=0.0), dict(density=1.0), dict(density=-0.1), dict(density=1.5),
    dict(density=np.nan), dict(E=0.0), dict(E=-1.0), dict(E=np.inf), dict(nu=-1.0),
    dict(nu=0.5), dict(nu=0.7), dict(nu=np.nan),
])
def test_bad_material_raises(kwargs):
    t = Truss.elementary("bcc")
    with pytest.raises(ValueError):
        homogenize(t, **kwargs)
    with pytest.raises(ValueError):
        homogenize_batch([t], workers=1, **kwargs)


@pytest.mark.parametrize("kwargs", [
    dict(radius=0.0), dict(radius=-0.1), dict(radius=np.nan), dict(E=-1.0), dict(nu=-1.0),
    dict(nu=0.5), dict(pin=-1), dict(pin=10**6),
])
def test_bad_periodic_arguments_raise(kwargs):
    """The reference entry points reject a non-positive radius, bad material and a pin that is
    not a node instead of reporting a spurious MECHANISM or crashing in LAPACK."""
    pt = Truss.elementary("bcc").periodic()
    args = dict(radius=0.1) | kwargs
    radius = args.pop("radius")
    with pytest.raises(ValueError):
        homogenize_periodic(pt, radius, **args)
    with pytest.raises(ValueError):
        periodic_solution(pt, radius, **args)
