"""Tests for :mod:`gnn_truss.fe.beam`, the 3D Timoshenko beam element.

Every expected value is derived by hand (comments) or by an independent construction:

* the SPEC unit energies with ``E = G = k = A = I = J = L = 1`` (``Phi = 12``);
* cantilever formulas (clamp end ``i``, load end ``j``): ``delta = P L^3 / (3 E I) + P k L / (G A)``
  (Timoshenko; shear correction ``kappa = 1 / k``), tip rotation ``P L^2 / (2 E I)`` and, for
  a tip moment, ``theta = M L / (E I)``, ``delta = M L^2 / (2 E I)``; axial ``P L / (E A)``,
  torsion ``T L / (G J)``;
* a coordinate-free flexibility construction of the whole 12x12 matrix (no local frame at all):
  ``K = B^T F^-1 B`` with ``F`` the cantilever flexibility of a circular beam along ``n`` and
  ``B`` the deformation of end ``j`` relative to the rigid motion of end ``i``.
"""
import numpy as np
import pytest

from gnn_truss.fe.beam import (Section, circular_section, cowper_factor, element_stiffness,
                               global_stiffness, local_frame, local_stiffness, transformation)

UNIT = Section(E=1.0, G=1.0, A=1.0, I=1.0, J=1.0, k=1.0)  # Phi = 12 E I k / (A G L^2) = 12
TOL = 1e-12


def random_rotation(rng):
    """Uniform random rotation (det +1) from the QR decomposition of a Gaussian matrix."""
    Q, R = np.linalg.qr(rng.normal(size=(3, 3)))
    Q = Q * np.sign(np.diag(R))
    if np.linalg.det(Q) < 0:
        Q[:, 0] = -Q[:, 0]
    return Q


def random_chords(rng, n=20):
    """Random chords plus the axis and near-axis special cases of :func:`local_frame`."""
    d = rng.normal(size=(n, 3)) * rng.uniform(0.2, 3.0, size=(n, 1))
    special = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0, 0, -2.0], [0.1, -0.2, 1.5],
                        [-0.3, 0.0, -0.7], [1e-3, 0.0, 1.0]])
    return np.concatenate([d, special])


def random_section(rng, m):
    """Arbitrary (non-circular-consistent) constants, one set per element."""
    return Section(E=rng.uniform(0.5, 2, m), G=rng.uniform(0.2, 1, m), A=rng.uniform(0.01, 0.1, m),
                   I=rng.uniform(1e-4, 1e-3, m), J=rng.uniform(1e-4, 2e-3, m),
                   k=rng.uniform(1.0, 1.3, m))


def energy(K, q):
    return 0.5 * q @ K @ q


def skew(v):
    """``[v]x`` with ``[v]x w = v x w``."""
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def flexibility_stiffness(d, E, G, A, I, J, k):
    """Independent 12x12 stiffness from the cantilever flexibility, in global axes.

    Clamp end ``i`` and load end ``j`` (beam axis ``n``, length ``L``) by a force ``P`` and a
    moment ``M``. For a circular section (any bending axis is principal):
    ``u = L/(EA) n n.P + (L^3/(3EI) + k L/(GA)) (I - nn) P + L^2/(2EI) M x n``,
    ``theta = L^2/(2EI) n x P + L/(GJ) n n.M + L/(EI) (I - nn) M``.
    The deformation of end ``j`` relative to the rigid motion of end ``i`` is
    ``du = u_j - u_i - theta_i x d``, ``dtheta = theta_j - theta_i``; the element energy is
    ``1/2 [du; dtheta] . F^-1 [du; dtheta]``.
    """
    L = np.linalg.norm(d)
    n = d / L
    nn = np.outer(n, n)
    P = np.eye(3) - nn
    F = np.zeros((6, 6))
    F[:3, :3] = L / (E * A) * nn + (L**3 / (3 * E * I) + k * L / (G * A)) * P
    F[3:, :3] = L**2 / (2 * E * I) * skew(n)
    F[:3, 3:] = F[3:, :3].T
    F[3:, 3:] = L / (G * J) * nn + L / (E * I) * P
    B = np.zeros((6, 12))
    B[:3, :3], B[:3, 3:6], B[:3, 6:9] = -np.eye(3), skew(d), np.eye(3)
    B[3:, 3:6], B[3:, 9:] = -np.eye(3), np.eye(3)
    return B.T @ np.linalg.solve(F, B)


# --------------------------------------------------------------------------- SPEC unit energies

@pytest.mark.parametrize("plane", ["xy", "xz"])
def test_unit_energies_local(plane):
    """SPEC: with E=G=k=A=I=J=L=1 (Phi=12): 1/2 a = 6/13 and 1/2 c = (4+12)/(2*13) = 8/13."""
    K = local_stiffness(1.0, UNIT)[0]
    lateral, rotation = {"xy": (7, 11), "xz": (8, 10)}[plane]
    unit = np.eye(12)
    assert energy(K, unit[6]) == pytest.approx(0.5, abs=TOL)  # axial u_x at node j
    assert energy(K, unit[9]) == pytest.approx(0.5, abs=TOL)  # twist theta_x at node j
    assert energy(K, unit[lateral]) == pytest.approx(6 / 13, abs=TOL)
    assert energy(K, unit[rotation]) == pytest.approx(8 / 13, abs=TOL)
    # same at node i (the element has no preferred end)
    assert energy(K, unit[lateral - 6]) == pytest.approx(6 / 13, abs=TOL)
    assert energy(K, unit[rotation - 6]) == pytest.approx(8 / 13, abs=TOL)


def test_unit_energies_global_random_chords():
    """The four unit energies in global axes for random unit chords and perpendicular unit
    directions (both bending planes, any orientation of the perpendicular)."""
    rng = np.random.default_rng(0)
    for d in random_chords(rng):
        n = d / np.linalg.norm(d)
        K = global_stiffness(n, UNIT)[0]
        for _ in range(3):
            p = rng.normal(size=3)
            p -= (p @ n) * n
            p /= np.linalg.norm(p)
            z = np.zeros(3)
            assert energy(K, np.concatenate([z, z, n, z])) == pytest.approx(0.5, abs=TOL)
            assert energy(K, np.concatenate([z, z, z, n])) == pytest.approx(0.5, abs=TOL)
            assert energy(K, np.concatenate([z, z, p, z])) == pytest.approx(6 / 13, abs=TOL)
            assert energy(K, np.concatenate([z, z, z, p])) == pytest.approx(8 / 13, abs=TOL)


def test_local_entries_match_spec_formulas():
    """Entries of K_local for generic constants against the SPEC formulas, entry by entry."""
    E, G, A, I, J, k, L = 2.0, 0.7, 0.05, 3e-4, 5e-4, 1.1, 0.8
    K = local_stiffness(L, Section(E, G, A, I, J, k))[0]
    phi = 12 * E * I * k / (A * G * L**2)
    a, b = 12 * E * I / ((1 + phi) * L**3), 6 * E * I / ((1 + phi) * L**2)
    c, d = (4 + phi) * E * I / ((1 + phi) * L), (2 - phi) * E * I / ((1 + phi) * L)
    assert K[0, 0] == pytest.approx(E * A / L, rel=TOL) and K[0, 6] == pytest.approx(-E * A / L)
    assert K[3, 3] == pytest.approx(G * J / L, rel=TOL) and K[3, 9] == pytest.approx(-G * J / L)
    for v, t in ((1, 5), (2, 4)):
        assert K[v, v] == pytest.approx(a, rel=TOL) and K[v, v + 6] == pytest.approx(-a, rel=TOL)
        assert abs(K[v, t]) == pytest.approx(b, rel=TOL)
        assert K[t, t] == pytest.approx(c, rel=TOL) and K[t, t + 6] == pytest.approx(d, rel=TOL)
    # no coupling between axial/torsion and bending, nor between the two bending planes
    groups = [{0, 6}, {3, 9}, {1, 5, 7, 11}, {2, 4, 8, 10}]
    for g in groups:
        rest = [i for i in range(12) if i not in g]
        assert np.all(K[np.ix_(sorted(g), rest)] == 0)


# --------------------------------------------------------------------------- structure

def test_symmetric_and_six_rigid_modes():
    """K = K^T; rank 6; u = t + w x X, theta = w (global axes) has zero energy; the other 6
    eigenvalues are positive."""
    rng = np.random.default_rng(1)
    chords = random_chords(rng)
    sec = random_section(rng, len(chords))
    Ks = global_stiffness(chords, sec)
    for d, K in zip(chords, Ks):
        scale = np.abs(K).max()
        assert np.abs(K - K.T).max() <= TOL * scale
        ev = np.linalg.eigvalsh(K)
        assert np.all(np.abs(ev[:6]) <= 1e-11 * ev[-1])
        assert ev[6] > 1e-6 * ev[-1]
        assert np.linalg.matrix_rank(K, tol=1e-10 * ev[-1]) == 6
        Xi = rng.normal(size=3)
        Xj = Xi + d
        for _ in range(3):
            t, w = rng.normal(size=3), rng.normal(size=3)
            q = np.concatenate([t + np.cross(w, Xi), w, t + np.cross(w, Xj), w])
            assert np.linalg.norm(K @ q) <= 1e-12 * scale * np.linalg.norm(q)


def test_rotation_invariance():
    """K(R d) = Q K(d) Q^T with Q = blockdiag(R, R, R, R), for random proper rotations."""
    rng = np.random.default_rng(2)
    chords = random_chords(rng)
    sec = circular_section(0.07, E=1.3, nu=0.27)
    K = global_stiffness(chords, sec)
    for _ in range(10):
        R = random_rotation(rng)
        Q = transformation(R[None])[0]
        KR = global_stiffness(chords @ R.T, sec)
        expected = Q @ K @ Q.T
        assert np.abs(KR - expected).max() <= 1e-12 * np.abs(K).max()


def test_independent_of_local_e2_choice():
    """A circular section: spinning the local frame about the beam axis leaves K unchanged."""
    rng = np.random.default_rng(3)
    chords = random_chords(rng)
    sec = circular_section(0.05)
    K = global_stiffness(chords, sec)
    R = local_frame(chords)
    Kl = local_stiffness(np.linalg.norm(chords, axis=1), sec)
    for alpha in rng.uniform(0, 2 * np.pi, 5):
        c, s = np.cos(alpha), np.sin(alpha)
        spin = np.array([[1, 0, 0], [0, c, s], [0, -s, c]])
        T = transformation(spin @ R)  # rows (e1, c e2 + s e3, -s e2 + c e3): still right-handed
        K2 = T.transpose(0, 2, 1) @ Kl @ T
        assert np.abs(K2 - K).max() <= 1e-12 * np.abs(K).max()


def test_local_frame_orthonormal_right_handed():
    rng = np.random.default_rng(4)
    chords = random_chords(rng)
    R = local_frame(chords)
    assert np.abs(R @ R.transpose(0, 2, 1) - np.eye(3)).max() < 1e-14
    assert np.allclose(np.linalg.det(R), 1.0, atol=1e-14)
    assert np.allclose(R[:, 0], chords / np.linalg.norm(chords, axis=1, keepdims=True), atol=1e-15)


@pytest.mark.parametrize("bad", [[0.0, 0.0, 0.0], [np.nan, 1.0, 0.0], [np.inf, 0.0, 0.0]])
def test_degenerate_chord_raises(bad):
    with pytest.raises(ValueError):
        global_stiffness(np.array([bad]), UNIT)


def test_vectorized_sections_match_scalar_calls():
    rng = np.random.default_rng(5)
    chords = random_chords(rng, 8)
    radii = rng.uniform(0.01, 0.2, len(chords))
    K = element_stiffness(chords, radii, E=2.0, nu=0.2)
    for d, r, Kb in zip(chords, radii, K):
        assert np.array_equal(element_stiffness(d[None], r, E=2.0, nu=0.2)[0], Kb)


def test_circular_section_constants():
    """A = pi r^2, I = pi r^4 / 4, J = 2 I, G = E / (2 (1 + nu)), Cowper k(0.3) = 8.8 / 7.8."""
    sec = circular_section(0.1, E=2.0, nu=0.3)
    assert sec.A == pytest.approx(np.pi * 0.01, rel=TOL)
    assert sec.I == pytest.approx(np.pi * 1e-4 / 4, rel=TOL)
    assert sec.J == pytest.approx(np.pi * 1e-4 / 2, rel=TOL)
    assert sec.G == pytest.approx(2.0 / 2.6, rel=TOL)
    assert cowper_factor(0.3) == pytest.approx(8.8 / 7.8, rel=TOL)
    assert cowper_factor(0.0) == pytest.approx(7 / 6, rel=TOL)


# --------------------------------------------------------------------------- independent derivations

def cantilever_tip(K, load):
    """Clamp node i of a 12x12 K and solve ``K_jj q_j = load`` for the 6 tip dofs."""
    return np.linalg.solve(K[6:, 6:], load)


def test_timoshenko_cantilever_local():
    """Tip load P along local y and z, tip moment, axial force and torque on a cantilever."""
    E, nu, r, L, P = 1.0, 0.3, 0.08, 0.6, 1e-3
    sec = circular_section(r, E, nu)
    K = local_stiffness(L, sec)[0]
    EI, GA, EA, GJ = E * sec.I, sec.G * sec.A, E * sec.A, sec.G * sec.J
    k = sec.k  # shear correction kappa = 1 / k
    delta = P * L**3 / (3 * EI) + P * L / (GA / k)
    q = cantilever_tip(K, [0, P, 0, 0, 0, 0])  # force +y: theta_z = + dv/dx > 0
    assert q[1] == pytest.approx(delta, rel=1e-12)
    assert q[5] == pytest.approx(P * L**2 / (2 * EI), rel=1e-12)
    q = cantilever_tip(K, [0, 0, P, 0, 0, 0])  # force +z: theta_y = - dw/dx < 0
    assert q[2] == pytest.approx(delta, rel=1e-12)
    assert q[4] == pytest.approx(-P * L**2 / (2 * EI), rel=1e-12)
    q = cantilever_tip(K, [0, 0, 0, 0, 0, P])  # moment about z
    assert q[5] == pytest.approx(P * L / EI, rel=1e-12)
    assert q[1] == pytest.approx(P * L**2 / (2 * EI), rel=1e-12)
    q = cantilever_tip(K, [P, 0, 0, P, 0, 0])  # axial force and torque
    assert q[0] == pytest.approx(P * L / EA, rel=1e-12)
    assert q[3] == pytest.approx(P * L / GJ, rel=1e-12)
    assert np.abs(q[[1, 2, 4, 5]]).max() == 0


def test_euler_bernoulli_limit():
    """Slender beam (Phi -> 0): condensing the clamped element with a free tip rotation gives
    the Euler-Bernoulli tip stiffness 3 E I / L^3; the deviation is O(Phi)."""
    E, nu, L = 1.0, 0.3, 1.0
    for r in (1e-2, 1e-3):
        sec = circular_section(r, E, nu)
        phi = 12 * E * sec.I * sec.k / (sec.A * sec.G * L**2)
        K = local_stiffness(L, sec)[0]
        for v, t in ((7, 11), (8, 10)):
            Kjj = K[np.ix_([v, t], [v, t])]
            k_tip = Kjj[0, 0] - Kjj[0, 1] ** 2 / Kjj[1, 1]  # condense the free tip rotation
            eb = 3 * E * sec.I / L**3
            assert k_tip == pytest.approx(eb, rel=2 * phi)
            assert abs(k_tip / eb - 1) > 0.1 * phi  # Timoshenko is softer, not identical
            assert k_tip < eb


def test_matches_flexibility_construction():
    """The whole global 12x12 matrix equals B^T F^-1 B built without any local frame, for
    random chords and arbitrary section constants."""
    rng = np.random.default_rng(6)
    chords = random_chords(rng)
    m = len(chords)
    sec = random_section(rng, m)
    K = global_stiffness(chords, sec)
    for e in range(m):
        ref = flexibility_stiffness(chords[e], sec.E[e], sec.G[e], sec.A[e], sec.I[e], sec.J[e],
                                    sec.k[e])
        assert np.abs(K[e] - ref).max() <= 1e-9 * np.abs(ref).max()


def test_collinear_split_is_exact():
    """Two collinear half-length elements, middle node condensed, equal the full element: the
    exact end-load stiffness has the right length dependence of Phi (4x for L/2)."""
    rng = np.random.default_rng(7)
    for d in random_chords(rng, 5):
        r = rng.uniform(0.05, 0.3) * np.linalg.norm(d)  # stubby to slender: Phi from ~0.01 to ~1
        K = element_stiffness(d[None], r)[0]
        Kh = element_stiffness(d[None] / 2, r)[0]
        Kc = np.zeros((18, 18))  # dofs: node i, middle node, node j
        Kc[:12, :12] += Kh
        Kc[6:, 6:] += Kh
        ends, mid = np.r_[0:6, 12:18], np.arange(6, 12)
        cond = Kc[np.ix_(ends, ends)] - Kc[np.ix_(ends, mid)] @ np.linalg.solve(
            Kc[np.ix_(mid, mid)], Kc[np.ix_(mid, ends)])
        assert np.abs(cond - K).max() <= 1e-9 * np.abs(K).max()
