"""Tests for gnn_truss.properties against closed forms, physical definitions and Elasticipy."""
import numpy as np
import pytest
import torch

from gnn_truss import properties as P

TOL = 1e-12


def isotropic_stiffness(E, nu):
    """Voigt stiffness from the Lamé constants lam = E nu / ((1+nu)(1-2nu)), mu = E / (2(1+nu))."""
    lam = E * nu / ((1 + nu) * (1 - 2 * nu))
    mu = E / (2 * (1 + nu))
    C = np.zeros((6, 6))
    C[:3, :3] = lam
    C[np.arange(3), np.arange(3)] = lam + 2 * mu
    C[np.arange(3, 6), np.arange(3, 6)] = mu
    return C


def cubic_stiffness(c11, c12, c44):
    return P.stiffness_from_vector([c11, c12, c12, c11, c12, c11, c44, c44, c44])


def random_orthotropic_s9(rng, batch=()):
    """Random SPD orthotropic 9-vectors: normal block A A^T + 0.1 I, shear moduli in [0.05, 1]."""
    A = rng.normal(size=batch + (3, 3))
    N = A @ np.swapaxes(A, -1, -2) + 0.1 * np.eye(3)
    shear = rng.uniform(0.05, 1.0, size=batch + (3,))
    return np.stack([N[..., 0, 0], N[..., 0, 1], N[..., 0, 2], N[..., 1, 1], N[..., 1, 2],
                     N[..., 2, 2], shear[..., 0], shear[..., 1], shear[..., 2]], axis=-1)


def random_unit_vectors(rng, n):
    d = rng.normal(size=(n, 3))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


# --------------------------------------------------------------------------- 9-vector

def test_stiffness_vector_round_trip_and_layout():
    s9 = np.arange(1.0, 10.0)
    C = P.stiffness_from_vector(s9)
    # Hand-placed entries of the Voigt layout 11,22,33,23,31,12.
    assert C[0, 0] == 1 and C[0, 1] == C[1, 0] == 2 and C[0, 2] == C[2, 0] == 3
    assert C[1, 1] == 4 and C[1, 2] == C[2, 1] == 5 and C[2, 2] == 6
    assert (C[3, 3], C[4, 4], C[5, 5]) == (7, 8, 9)
    assert np.count_nonzero(C) == 12
    np.testing.assert_array_equal(P.vector_from_stiffness(C), s9)
    batch = random_orthotropic_s9(np.random.default_rng(0), (2, 3))
    np.testing.assert_array_equal(P.vector_from_stiffness(P.stiffness_from_vector(batch)), batch)


def test_vector_from_stiffness_rejects_non_orthotropic():
    C = P.stiffness_from_vector(np.arange(1.0, 10.0))
    C[0, 3] = C[3, 0] = 0.1
    with pytest.raises(ValueError, match="orthotropic"):
        P.vector_from_stiffness(C)


# --------------------------------------------------------------------------- isotropic

def test_isotropic_material():
    E, nu = 1.0, 0.3
    props = P.all_properties(isotropic_stiffness(E, nu))
    G = E / (2 * (1 + nu))
    K = E / (3 * (1 - 2 * nu))
    for name in ("E1", "E2", "E3"):
        assert props[name] == pytest.approx(E, abs=TOL)
    for name in ("G23", "G31", "G12", "G_V", "G_R"):
        assert props[name] == pytest.approx(G, abs=TOL)
    for name in ("nu12", "nu13", "nu21", "nu23", "nu31", "nu32"):
        assert props[name] == pytest.approx(nu, abs=TOL)
    assert props["K_V"] == pytest.approx(K, abs=TOL)
    assert props["K_R"] == pytest.approx(K, abs=TOL)
    assert props["KV_GV"] == pytest.approx(K / G, abs=TOL)
    assert abs(props["A_U"]) < TOL
    d = random_unit_vectors(np.random.default_rng(1), 50) * 3.7  # length must not matter
    np.testing.assert_allclose(P.directional_youngs_modulus(isotropic_stiffness(E, nu), d), E,
                               rtol=0, atol=TOL)


def test_property_names_match_all_properties():
    names = P.property_names()
    assert names == ("E1", "E2", "E3", "G23", "G31", "G12", "nu12", "nu13", "nu21", "nu23",
                     "nu31", "nu32", "K_V", "G_V", "K_R", "G_R", "A_U", "KV_GV")
    assert tuple(P.all_properties(isotropic_stiffness(1.0, 0.3))) == names
    assert tuple(P.engineering_constants(isotropic_stiffness(1.0, 0.3))) == names[:12]


# --------------------------------------------------------------------------- cubic

@pytest.mark.parametrize("c11, c12, c44", [(3.0, 1.2, 0.5), (0.05, 0.01, 0.03), (2.0, -0.3, 1.7)])
def test_cubic_material(c11, c12, c44):
    C = cubic_stiffness(c11, c12, c44)
    den = (c11 - c12) * (c11 + 2 * c12)
    s11, s12, s44 = (c11 + c12) / den, -c12 / den, 1 / c44
    S = P.compliance(C)
    np.testing.assert_allclose([S[0, 0], S[0, 1], S[3, 3]], [s11, s12, s44], rtol=1e-12)

    e100 = (c11 - c12) * (c11 + 2 * c12) / (c11 + c12)
    # 1/E(d) = S11 - 2 (S11 - S12 - S44/2)(d1^2 d2^2 + d2^2 d3^2 + d3^2 d1^2) (Nye 1957), so
    # 1/E111 = (S11 + 2 S12 + S44) / 3 (engineering-shear S44 = 1/C44; isotropic S44 = 2(S11-S12)
    # gives E111 = E100 as it must).
    e111 = 3 / (s11 + 2 * s12 + s44)
    E = P.directional_youngs_modulus(C, np.array([[1.0, 0, 0], [0, 0, 2.0], [1, 1, 1], [-1, 1, -1]]))
    np.testing.assert_allclose(E, [e100, e100, e111, e111], rtol=1e-12)

    zener = 2 * c44 / (c11 - c12)
    a_u = 1.2 * (np.sqrt(zener) - 1 / np.sqrt(zener)) ** 2
    assert P.universal_anisotropy(C) == pytest.approx(a_u, rel=1e-12, abs=1e-14)
    # Cubic symmetry: Voigt and Reuss bulk moduli coincide, K = (C11 + 2 C12) / 3.
    assert P.voigt_bulk_modulus(C) == pytest.approx((c11 + 2 * c12) / 3, rel=1e-12)
    assert P.reuss_bulk_modulus(C) == pytest.approx((c11 + 2 * c12) / 3, rel=1e-12)


def test_simple_cubic_reference_values():
    """SPEC section 3: SC lattice, C11 = rho/3 = 0.05, C12 = 0, C44 = 1.04702e-3."""
    C = cubic_stiffness(0.05, 0.0, 1.04702e-3)
    p = P.all_properties(C)
    assert p["E1"] == pytest.approx(0.05, rel=1e-12)
    assert p["nu12"] == 0 and p["nu31"] == 0
    assert p["G23"] == pytest.approx(1.04702e-3, rel=1e-12)
    # Weak along the body diagonal: 1/E111 = (S11 + 2 S12 + S44) / 3 = (1/C11 + 1/C44) / 3.
    e111 = 3 / (1 / 0.05 + 1 / 1.04702e-3)
    assert P.directional_youngs_modulus(C, np.ones(3)) == pytest.approx(e111, rel=1e-12)


# --------------------------------------------------------------------------- orthotropic

def test_orthotropic_engineering_constants_rebuild_compliance():
    rng = np.random.default_rng(2)
    C = P.stiffness_from_vector(random_orthotropic_s9(rng))
    c = P.engineering_constants(C)
    E = [c["E1"], c["E2"], c["E3"]]
    nu = {(a, b): c[f"nu{a + 1}{b + 1}"] for a in range(3) for b in range(3) if a != b}
    S = np.zeros((6, 6))
    for a in range(3):
        S[a, a] = 1 / E[a]
        for b in range(3):
            if a != b:
                S[a, b] = -nu[a, b] / E[a]      # S_ab = -nu_ab / E_a
    S[3, 3], S[4, 4], S[5, 5] = 1 / c["G23"], 1 / c["G31"], 1 / c["G12"]
    S_ref = np.linalg.inv(C)
    np.testing.assert_allclose(S, S_ref, rtol=0, atol=1e-12 * np.abs(S_ref).max())
    for (a, b), v in nu.items():  # reciprocity nu_ab / E_a = nu_ba / E_b
        assert v / E[a] == pytest.approx(nu[b, a] / E[b], rel=1e-12)


def test_poisson_ratio_is_lateral_contraction_under_uniaxial_stress():
    """nu_ab = -eps_b / eps_a for uniaxial stress along a (solved directly from C eps = sigma)."""
    C = P.stiffness_from_vector(random_orthotropic_s9(np.random.default_rng(3)))
    c = P.engineering_constants(C)
    for a in range(3):
        sigma = np.zeros(6)
        sigma[a] = 1.0
        eps = np.linalg.solve(C, sigma)
        assert c[f"E{a + 1}"] == pytest.approx(1 / eps[a], rel=1e-12)
        for b in range(3):
            if b != a:
                assert c[f"nu{a + 1}{b + 1}"] == pytest.approx(-eps[b] / eps[a], rel=1e-12)
    # Pure shear stress tau_23 = 1 gives engineering strain gamma_23 = 1 / G23.
    gamma = np.linalg.solve(C, np.eye(6)[3])
    assert c["G23"] == pytest.approx(1 / gamma[3], rel=1e-12)


def test_compliance_tensor_reproduces_voigt_strains():
    """S_ijkl sigma_kl must equal the tensor strain of eps_V = S_V sigma_V (eps_4 = 2 eps_23)."""
    rng = np.random.default_rng(4)
    C = P.stiffness_from_vector(random_orthotropic_s9(rng))
    C[0, 4] = C[4, 0] = 0.01   # break orthotropy so that the coupling factors 1/2 are exercised
    C[3, 5] = C[5, 3] = 0.02
    S4 = P.compliance_tensor(C)
    sig = rng.normal(size=(3, 3))
    sig = sig + sig.T
    eps = np.einsum("ijkl,kl->ij", S4, sig)
    sig_v = np.array([sig[0, 0], sig[1, 1], sig[2, 2], sig[1, 2], sig[2, 0], sig[0, 1]])
    eps_v = np.linalg.solve(C, sig_v)
    np.testing.assert_allclose([eps[0, 0], eps[1, 1], eps[2, 2], 2 * eps[1, 2], 2 * eps[2, 0],
                                2 * eps[0, 1]], eps_v, rtol=1e-12, atol=1e-14)
    # Minor and major symmetries.
    np.testing.assert_array_equal(S4, S4.transpose(1, 0, 2, 3))
    np.testing.assert_array_equal(S4, S4.transpose(0, 1, 3, 2))
    np.testing.assert_allclose(S4, S4.transpose(2, 3, 0, 1), rtol=0, atol=1e-15)


def test_directional_modulus_axes_mirrors_and_broadcasting():
    rng = np.random.default_rng(5)
    C = P.stiffness_from_vector(random_orthotropic_s9(rng))
    c = P.engineering_constants(C)
    np.testing.assert_allclose(P.directional_youngs_modulus(C, np.eye(3)),
                               [c["E1"], c["E2"], c["E3"]], rtol=1e-12)
    # Orthotropic symmetry: mirror images of a direction have the same modulus.
    d = random_unit_vectors(rng, 20)
    e = P.directional_youngs_modulus(C, d)
    for sign in ([-1, 1, 1], [1, -1, 1], [1, 1, -1]):
        np.testing.assert_allclose(P.directional_youngs_modulus(C, d * sign), e, rtol=1e-12)
    # E(d) > 0 in every direction for an SPD stiffness.
    assert (e > 0).all()
    # Broadcasting: [B, 1, 6, 6] x [N, 3] -> [B, N].
    Cb = P.stiffness_from_vector(random_orthotropic_s9(rng, (4,)))
    eb = P.directional_youngs_modulus(Cb[:, None], d)
    assert eb.shape == (4, 20)
    np.testing.assert_allclose(eb[2], P.directional_youngs_modulus(Cb[2], d), rtol=1e-14)


def test_elastic_surface_grid():
    C = cubic_stiffness(3.0, 1.2, 0.5)
    surf = P.elastic_surface(C, n_theta=7, n_phi=9)
    assert surf.directions.shape == (7, 9, 3) and surf.E.shape == (7, 9)
    np.testing.assert_allclose(np.linalg.norm(surf.directions, axis=-1), 1.0, atol=1e-15)
    np.testing.assert_allclose(surf.points, surf.E[..., None] * surf.directions)
    e100 = (3.0 - 1.2) * (3.0 + 2 * 1.2) / (3.0 + 1.2)
    np.testing.assert_allclose(surf.E[0], e100, rtol=1e-12)        # theta = 0: the x3 axis
    np.testing.assert_allclose(surf.E[3, 0], e100, rtol=1e-12)     # theta = pi/2, phi = 0: x1
    torch_surf = P.elastic_surface(torch.as_tensor(C, dtype=torch.float64), n_theta=7, n_phi=9)
    np.testing.assert_allclose(torch_surf.E, surf.E, rtol=1e-14)


def test_voigt_reuss_bounds_and_anisotropy_positive():
    C = P.stiffness_from_vector(random_orthotropic_s9(np.random.default_rng(6), (10,)))
    p = P.all_properties(C)
    assert (p["K_V"] >= p["K_R"] * (1 - 1e-12)).all()
    assert (p["G_V"] >= p["G_R"] * (1 - 1e-12)).all()
    assert (p["A_U"] > 0).all()
    np.testing.assert_allclose(p["KV_GV"], P.bulk_to_shear_ratio(C), rtol=1e-14)
    np.testing.assert_allclose(p["K_V"], P.voigt_bulk_modulus(C), rtol=1e-14)
    np.testing.assert_allclose(p["G_V"], P.voigt_shear_modulus(C), rtol=1e-14)
    np.testing.assert_allclose(p["G_R"], P.reuss_shear_modulus(C), rtol=1e-14)


# --------------------------------------------------------------------------- independent library

@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_against_elasticipy():
    pytest.importorskip("elasticipy")
    from elasticipy.tensors.elasticity import StiffnessTensor

    rng = np.random.default_rng(7)
    s9 = random_orthotropic_s9(rng)
    C = P.stiffness_from_vector(s9)
    ref = StiffnessTensor(C)
    p = P.all_properties(C)
    voigt, reuss = ref.Voigt_average(), ref.Reuss_average()
    assert p["K_V"] == pytest.approx(voigt.bulk_modulus, rel=1e-10)
    assert p["G_V"] == pytest.approx(voigt.lame2, rel=1e-10)
    assert p["K_R"] == pytest.approx(reuss.bulk_modulus, rel=1e-10)
    assert p["G_R"] == pytest.approx(reuss.lame2, rel=1e-10)
    assert p["A_U"] == pytest.approx(ref.universal_anisotropy, rel=1e-10)
    d = random_unit_vectors(rng, 30)
    np.testing.assert_allclose(P.directional_youngs_modulus(C, d), ref.Young_modulus.eval(d),
                               rtol=1e-10)
    e = np.eye(3)
    for a in range(3):
        for b in range(3):
            if a != b:  # Elasticipy's Poisson_ratio(u=load axis, v=lateral axis)
                assert p[f"nu{a + 1}{b + 1}"] == pytest.approx(
                    float(np.ravel(ref.Poisson_ratio.eval(e[a], e[b]))[0]), rel=1e-10)


# --------------------------------------------------------------------------- torch

def test_numpy_and_torch_agree():
    s9 = random_orthotropic_s9(np.random.default_rng(8), (3, 4))
    C_np = P.stiffness_from_vector(s9)
    C_t = P.stiffness_from_vector(torch.as_tensor(s9))
    assert isinstance(C_t, torch.Tensor) and C_t.dtype == torch.float64
    np.testing.assert_array_equal(C_t.numpy(), C_np)
    p_np, p_t = P.all_properties(C_np), P.all_properties(C_t)
    for name in P.property_names():
        assert isinstance(p_t[name], torch.Tensor) and p_t[name].shape == (3, 4)
        np.testing.assert_allclose(p_t[name].numpy(), p_np[name], rtol=1e-12, err_msg=name)
    d = random_unit_vectors(np.random.default_rng(9), 5)
    e_np = P.directional_youngs_modulus(C_np[..., None, :, :], d)
    e_t = P.directional_youngs_modulus(C_t[..., None, :, :], torch.as_tensor(d))
    np.testing.assert_allclose(e_t.numpy(), e_np, rtol=1e-12)
    np.testing.assert_allclose(P.compliance_tensor(C_t).numpy(), P.compliance_tensor(C_np),
                               rtol=1e-12)


def test_torch_float32_keeps_dtype():
    s9 = torch.as_tensor(random_orthotropic_s9(np.random.default_rng(10)), dtype=torch.float32)
    p = P.all_properties(P.stiffness_from_vector(s9))
    assert p["E2"].dtype == torch.float32
    ref = P.all_properties(P.stiffness_from_vector(s9.double().numpy()))
    assert float(p["E2"]) == pytest.approx(ref["E2"], rel=1e-4)


@pytest.mark.parametrize("name", ["E2", "nu21", "KV_GV", "A_U"])
def test_gradcheck(name):
    s9 = torch.as_tensor(random_orthotropic_s9(np.random.default_rng(11), (2,)))
    s9.requires_grad_(True)

    def f(x):
        return P.all_properties(P.stiffness_from_vector(x))[name]

    assert torch.autograd.gradcheck(f, (s9,), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_gradient_of_e2_matches_closed_form():
    """E2 = det(N) / (C11 C33 - C13^2) for the normal block N; check dE2/dC22 = 1 at C12=C23=0."""
    s9 = torch.tensor([2.0, 0.0, 0.4, 1.5, 0.0, 1.0, 0.3, 0.3, 0.3], dtype=torch.float64,
                      requires_grad=True)
    P.all_properties(P.stiffness_from_vector(s9))["E2"].backward()
    assert s9.grad[3].item() == pytest.approx(1.0, rel=1e-12)
    assert s9.grad[0].item() == pytest.approx(0.0, abs=1e-12)


def test_directional_modulus_gradcheck():
    s9 = torch.as_tensor(random_orthotropic_s9(np.random.default_rng(12))).requires_grad_(True)
    d = torch.as_tensor(random_unit_vectors(np.random.default_rng(13), 4))
    assert torch.autograd.gradcheck(
        lambda x: P.directional_youngs_modulus(P.stiffness_from_vector(x), d), (s9,))


# --------------------------------------------------------------------------- bad input

def _bad_inputs():
    good = P.stiffness_from_vector(random_orthotropic_s9(np.random.default_rng(14)))
    nan = good.copy()
    nan[2, 2] = np.nan
    inf = good.copy()
    inf[0, 1] = np.inf
    asym = good.copy()
    asym[0, 1] += 1e-3
    zero_shear = good.copy()
    zero_shear[4, 4] = 0.0
    rank2 = P.stiffness_from_vector([1.0, 1, 1, 1, 1, 1, 1, 1, 1])  # normal block of ones
    return [
        (good[:5], "shape"), (good[0], "shape"), (np.zeros((2, 6, 5)), "shape"),
        (nan, "NaN"), (inf, "inf"), (asym, "symmetric"), (zero_shear, "singular"),
        (rank2, "singular"), (np.zeros((6, 6)), "singular"),
        (torch.zeros(6, 6, dtype=torch.int64), "floating"),
    ]


@pytest.mark.parametrize("C, message", _bad_inputs())
@pytest.mark.parametrize("func", [P.compliance, P.all_properties, P.engineering_constants,
                                  P.universal_anisotropy, P.voigt_bulk_modulus])
def test_bad_stiffness_raises(C, message, func):
    with pytest.raises(ValueError, match=message):
        func(C)


def test_bad_stiffness_in_batch_is_located_and_checked_under_autograd():
    s9 = random_orthotropic_s9(np.random.default_rng(15), (3,))
    s9[1, 6] = 0.0   # C44 = 0 in batch item 1
    with pytest.raises(ValueError, match=r"C\[1\] is singular"):
        P.all_properties(P.stiffness_from_vector(s9))
    t = torch.as_tensor(s9).requires_grad_(True)
    with pytest.raises(ValueError, match="singular"):
        P.all_properties(P.stiffness_from_vector(t))
    asym = torch.eye(6, dtype=torch.float64)
    asym[0, 1] = 0.5
    with pytest.raises(ValueError, match="symmetric"):
        P.compliance(asym.requires_grad_(True))


def test_bad_vectors_and_directions_raise():
    with pytest.raises(ValueError, match="shape"):
        P.stiffness_from_vector(np.ones(8))
    with pytest.raises(ValueError, match="NaN"):
        P.stiffness_from_vector([1.0, 0, 0, 1, 0, 1, 1, 1, np.nan])
    C = cubic_stiffness(3.0, 1.2, 0.5)
    with pytest.raises(ValueError, match="zero vector"):
        P.directional_youngs_modulus(C, np.array([[1.0, 0, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match="shape"):
        P.directional_youngs_modulus(C, np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"\[6, 6\]"):
        P.elastic_surface(np.stack([C, C]))
    with pytest.raises(ValueError, match="n_theta"):
        P.elastic_surface(C, n_theta=1)
