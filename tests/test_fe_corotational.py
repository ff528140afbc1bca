"""Tests of the corotational Timoshenko beam element (:mod:`gnn_truss.fe.corotational`)."""
import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.spatial.transform import Rotation

from gnn_truss.fe import beam
from gnn_truss.fe.corotational import (corotational_beams, element_energy,
                                       element_forces_and_tangent, expm_so3, initial_state,
                                       log_so3, skew, update_rotation)


def _random_beams(M, seed, radius=0.05):
    rng = np.random.default_rng(seed)
    X1 = rng.normal(size=(M, 3))
    X2 = X1 + rng.normal(size=(M, 3))
    sec = beam.circular_section(radius)
    return corotational_beams(X1, X2, sec), sec, rng


def _deformed_state(data, rng, rigid=True, scale=0.05, spin=0.2):
    """Random large rigid motion plus a moderate deformation of every element."""
    x, R = initial_state(data)
    M = len(data)
    if rigid:
        Q = Rotation.random(M, random_state=int(rng.integers(1 << 30))).as_matrix()
        x = np.einsum("mij,maj->mai", Q, x) + rng.normal(size=(M, 1, 3))
        R = np.einsum("mij,majk->maik", Q, R)
    x = x + scale * data.L0[:, None, None] * rng.normal(size=x.shape)
    R = update_rotation(R, spin * rng.normal(size=(M, 2, 3)))
    return x, R


def _rigidly_moved(x, R, Q, c):
    return np.einsum("mij,maj->mai", Q, x) + c, np.einsum("mij,majk->maik", Q, R)


def _rotate_forces(f, Q):
    return np.einsum("mij,mbj->mbi", Q, f.reshape(len(f), 4, 3)).reshape(len(f), 12)


# ----------------------------------------------------------------------------- rotations

def test_expm_log_roundtrip_and_smoothness():
    rng = np.random.default_rng(0)
    axis = rng.normal(size=(200, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    phi = torch.as_tensor(axis * rng.uniform(0, 3.1, size=(200, 1)))  # angles below pi
    phi = torch.cat([phi, 1e-9 * phi[:5], torch.zeros(1, 3)])
    R = expm_so3(phi)
    ref = Rotation.from_rotvec(phi.numpy()).as_matrix()
    np.testing.assert_allclose(R.numpy(), ref, atol=1e-14)
    np.testing.assert_allclose(log_so3(R).numpy(), phi.numpy(), atol=1e-12)
    # Derivatives at the identity: d log(expm(S(phi)))/dphi = I, second derivative 0.
    z = torch.zeros(3, dtype=torch.float64)
    J = torch.func.jacfwd(lambda p: log_so3(expm_so3(p)))(z)
    H = torch.func.jacfwd(torch.func.jacrev(lambda p: log_so3(expm_so3(p))[0]))(z)
    np.testing.assert_allclose(J.numpy(), np.eye(3), atol=1e-15)
    np.testing.assert_allclose(H.numpy(), 0.0, atol=1e-15)
    # Small angles and both sides of the series switches (|phi|^2 = 1e-2 in expm, 1 - cos = 1e-2
    # in log) against scipy.
    angles = np.concatenate([np.logspace(-8, 0, 30), 0.1 + 1e-9 * np.array([-1, 1]),
                             np.arccos(0.99) + 1e-9 * np.array([-1, 1])])
    phi = torch.as_tensor(angles[:, None] * axis[: len(angles)])
    ref = Rotation.from_rotvec(phi.numpy()).as_matrix()
    np.testing.assert_allclose(expm_so3(phi).numpy(), ref, rtol=0, atol=1e-15)
    np.testing.assert_allclose(log_so3(torch.as_tensor(ref)).numpy(), phi.numpy(),
                               rtol=1e-14, atol=1e-16)


def test_update_rotation_numpy_and_torch():
    R = Rotation.random(4, random_state=3).as_matrix()
    dphi = np.random.default_rng(3).normal(size=(4, 3))
    out = update_rotation(R, dphi)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, Rotation.from_rotvec(dphi).as_matrix() @ R, atol=1e-14)
    assert isinstance(update_rotation(torch.as_tensor(R), dphi), torch.Tensor)


# ----------------------------------------------------------------------------- small strains

def test_initial_tangent_equals_linear_stiffness():
    data, sec, _ = _random_beams(20, seed=0)
    x, R = initial_state(data)
    f, K = element_forces_and_tangent(x, R, data)
    K_lin = beam.global_stiffness(data.X[:, 1] - data.X[:, 0], sec)
    assert np.abs(f).max() < 1e-15
    scale = np.abs(K_lin).max(axis=(1, 2))[:, None, None]
    assert np.max(np.abs(K - K_lin) / scale) < 1e-10


def test_small_displacement_forces_are_linear():
    data, sec, rng = _random_beams(20, seed=1)
    x, R = initial_state(data)
    K_lin = beam.global_stiffness(data.X[:, 1] - data.X[:, 0], sec)
    q = rng.normal(size=(len(data), 12))
    errors = []
    for eps in (1e-4, 1e-5):
        qe = (eps * data.L0[:, None] * q).reshape(-1, 2, 6)
        f, _ = element_forces_and_tangent(x + qe[..., :3], update_rotation(R, qe[..., 3:]), data)
        f_lin = np.einsum("mij,mj->mi", K_lin, qe.reshape(-1, 12))
        errors.append(np.abs(f - f_lin).max() / np.abs(f_lin).max())
    assert errors[0] < 1e-3
    assert errors[1] < errors[0] / 5  # the difference is second order in the displacement


# ----------------------------------------------------------------------------- objectivity

@pytest.mark.parametrize("quarter_turn", [True, False])
def test_rigid_motion_is_stress_free(quarter_turn):
    data, _, rng = _random_beams(30, seed=2)
    x, R = initial_state(data)
    M = len(data)
    if quarter_turn:  # 90 degrees about each global axis in turn
        Q = Rotation.from_rotvec(np.pi / 2 * np.eye(3)[np.arange(M) % 3]).as_matrix()
    else:
        Q = Rotation.random(M, random_state=4).as_matrix()
    xr, Rr = _rigidly_moved(x, R, Q, rng.normal(size=(M, 1, 3)) * 10)
    f, K = element_forces_and_tangent(xr, Rr, data)
    K0 = element_forces_and_tangent(x, R, data)[1]
    assert np.abs(element_energy(xr, Rr, data)).max() < 1e-20
    assert np.abs(f).max() < 1e-12 * np.abs(K0).max()
    # The tangent is the rotated linear stiffness.
    T = np.zeros((M, 12, 12))
    for b in range(4):
        T[:, 3 * b:3 * b + 3, 3 * b:3 * b + 3] = Q
    np.testing.assert_allclose(K, T @ K0 @ T.transpose(0, 2, 1), atol=1e-10 * np.abs(K0).max())


def test_element_does_not_depend_on_end_order():
    data, sec, rng = _random_beams(10, seed=8)
    x, R = _deformed_state(data, rng, spin=0.5)
    rev = corotational_beams(data.X[:, 1], data.X[:, 0], sec)
    f, K = element_forces_and_tangent(x, R, data)
    fr, Kr = element_forces_and_tangent(x[:, ::-1], R[:, ::-1], rev)
    swap = np.r_[6:12, 0:6]
    np.testing.assert_allclose(element_energy(x[:, ::-1], R[:, ::-1], rev),
                               element_energy(x, R, data), rtol=1e-12)
    np.testing.assert_allclose(fr, f[:, swap], atol=1e-12 * np.abs(f).max())
    np.testing.assert_allclose(Kr, K[:, swap][:, :, swap], atol=1e-12 * np.abs(K).max())


def test_deformed_state_is_objective():
    data, _, rng = _random_beams(30, seed=5)
    x, R = _deformed_state(data, rng)
    W = element_energy(x, R, data)
    f, K = element_forces_and_tangent(x, R, data)
    assert W.min() > 0
    Q = Rotation.random(len(data), random_state=6).as_matrix()
    xr, Rr = _rigidly_moved(x, R, Q, rng.normal(size=(len(data), 1, 3)))
    fr, Kr = element_forces_and_tangent(xr, Rr, data)
    np.testing.assert_allclose(element_energy(xr, Rr, data), W, rtol=1e-12)
    np.testing.assert_allclose(fr, _rotate_forces(f, Q), atol=1e-11 * np.abs(f).max())
    T = np.zeros((len(data), 12, 12))
    for b in range(4):
        T[:, 3 * b:3 * b + 3, 3 * b:3 * b + 3] = Q
    np.testing.assert_allclose(Kr, T @ K @ T.transpose(0, 2, 1), atol=1e-11 * np.abs(K).max())
    # Equilibrium of the element: the end forces balance, and so do the moments about x_1.
    fb = f.reshape(-1, 4, 3)
    assert np.abs(fb[:, 0] + fb[:, 2]).max() < 1e-12 * np.abs(f).max()
    moment = fb[:, 1] + fb[:, 3] + np.cross(x[:, 1] - x[:, 0], fb[:, 2])
    assert np.abs(moment).max() < 1e-12 * np.abs(f).max()


# ----------------------------------------------------------------------------- tangent

def test_tangent_is_symmetric_and_consistent():
    data, _, rng = _random_beams(6, seed=7, radius=0.1)
    x, R = _deformed_state(data, rng, spin=0.4)
    M = len(data)
    f, K = element_forces_and_tangent(x, R, data)
    _, K_exact = element_forces_and_tangent(x, R, data, symmetric=False)
    np.testing.assert_array_equal(K, K.transpose(0, 2, 1))

    def state(a):
        a = a.reshape(M, 2, 6)
        return x + a[..., :3], update_rotation(R, a[..., 3:])

    # Second variation: d^2/ds^2 of W along the increment path equals a.K.a (central second
    # differences of the energy along random directions).
    W0 = element_energy(x, R, data)
    for _ in range(3):
        a = rng.normal(size=(M, 12))
        h = 1e-4
        d2W = (element_energy(*state(h * a), data) - 2 * W0
               + element_energy(*state(-h * a), data)) / h**2
        np.testing.assert_allclose(d2W, np.einsum("mi,mij,mj->m", a, K, a), rtol=1e-6)
        h = 1e-6
        dW = (element_energy(*state(h * a), data) - element_energy(*state(-h * a), data)) / (2 * h)
        np.testing.assert_allclose(dW, np.einsum("mi,mi->m", f, a), rtol=1e-6)

    # Linearization of the force: central differences of f match K - 1/2 skew(m) (exact
    # linearization), and the symmetric K differs from it only by that moment term.
    h = 1e-6
    J = np.zeros((M, 12, 12))
    for k in range(12):
        a = np.zeros((M, 12))
        a[:, k] = h
        J[:, :, k] = (element_forces_and_tangent(*state(a), data)[0]
                      - element_forces_and_tangent(*state(-a), data)[0]) / (2 * h)
    scale = np.abs(K).max()
    assert np.abs(J - K_exact).max() < 1e-6 * scale
    m = torch.as_tensor(f.reshape(M, 2, 6)[..., 3:])
    corr = np.zeros((M, 12, 12))
    for e in (0, 1):
        corr[:, 6 * e + 3:6 * e + 6, 6 * e + 3:6 * e + 6] = -0.5 * skew(m[:, e]).numpy()
    np.testing.assert_allclose(K_exact - K, corr, atol=1e-12 * scale)
    assert np.abs(corr).max() > 1e-3 * scale  # the test state carries real end moments


# ----------------------------------------------------------------------------- structures

def _strut(n, length, sec):
    """``n`` elements along x from the origin: element data and nodes ``[n + 1, 3]``."""
    X = np.zeros((n + 1, 3))
    X[:, 0] = np.linspace(0.0, length, n + 1)
    return corotational_beams(X[:-1], X[1:], sec), X


def _assemble(x, R, data):
    """Force ``[6(n+1)]`` and tangent of a chain of elements ``(k, k + 1)``."""
    f, K = element_forces_and_tangent(np.stack([x[:-1], x[1:]], 1),
                                      np.stack([R[:-1], R[1:]], 1), data)
    n = len(data)
    fg, Kg = np.zeros(6 * (n + 1)), np.zeros((6 * (n + 1), 6 * (n + 1)))
    for e in range(n):
        s = slice(6 * e, 6 * e + 12)
        fg[s] += f[e]
        Kg[s, s] += K[e]
    return fg, Kg


def _critical_load(n, length, sec, ends):
    """Compressive end load at which the straight equilibrium loses stability: the root of the
    smallest eigenvalue of the tangent at the (exact) axially compressed state."""
    data, X = _strut(n, length, sec)
    R = np.broadcast_to(np.eye(3), (n + 1, 3, 3))
    fixed = np.zeros((n + 1, 6), dtype=bool)
    if ends == "pinned":  # translations at both ends (but the loaded axial one), twist at node 0
        fixed[0, :4] = fixed[n, 1:3] = True
    else:  # clamped: everything but the loaded axial translation
        fixed[0, :] = fixed[n, 1:] = True
    free = ~fixed.ravel()
    EA = sec.E * sec.A

    def smallest_eigenvalue(P):
        f, K = _assemble(X * (1.0 - P / EA), R, data)  # uniform shortening N = P
        residual = f.copy()
        residual[6 * n] += P
        assert np.abs(residual[free]).max() < 1e-10 * P + 1e-14 * EA  # equilibrium
        return np.linalg.eigvalsh(K[np.ix_(free, free)])[0]

    P_E = (1.0 if ends == "pinned" else 4.0) * np.pi**2 * sec.E * sec.I / length**2
    return brentq(smallest_eigenvalue, 0.3 * P_E, 1.5 * P_E, xtol=1e-10 * P_E), P_E


def _engesser(P_E, sec):
    """Shear-corrected Euler load ``P_E / (1 + P_E k / (G A))``."""
    return P_E / (1.0 + P_E * sec.k / (sec.G * sec.A))


def _with_shortening(P_T, sec):
    """Limit of the discrete model: the compressed strut of length ``L (1 - N/EA)`` buckles at
    ``N (1 - N/EA) = P_T`` (the chord-rotation work is ``N`` times the current length)."""
    EA = sec.E * sec.A
    return 0.5 * EA * (1.0 - np.sqrt(1.0 - 4.0 * P_T / EA))


@pytest.mark.parametrize("ends, n", [("pinned", 16), ("clamped", 32)])
def test_euler_buckling_slender_strut(ends, n):
    sec = beam.circular_section(0.02)
    P, P_E = _critical_load(n, 1.0, sec, ends)
    P_T = _engesser(P_E, sec)
    assert abs(P / P_T - 1.0) < 1e-2
    assert abs(P / _with_shortening(P_T, sec) - 1.0) < 5e-3


def test_buckling_shear_correction_stubby_strut():
    """r = 0.1, L = 0.5: the shear correction is 23 %; the prebuckling shortening (8 %) shifts
    the load further, by the factor of :func:`_with_shortening`."""
    sec = beam.circular_section(0.1)
    P, P_E = _critical_load(16, 0.5, sec, "pinned")
    P_T = _engesser(P_E, sec)
    assert P_T < 0.8 * P_E
    assert abs(P / _with_shortening(P_T, sec) - 1.0) < 5e-3
    assert abs(P - P_T) < abs(P - P_E)
    # Axially rigid variant (A and k scaled together: same shear area and Phi): no shortening,
    # the Engesser load itself, approached at the rate h^2.
    rigid = beam.Section(E=sec.E, G=sec.G, A=1e8 * sec.A, I=sec.I, J=sec.J, k=1e8 * sec.k)
    errors = [abs(_critical_load(n, 0.5, rigid, "pinned")[0] / P_T - 1.0) for n in (8, 16)]
    assert errors[1] < 1e-2
    assert 1.8 < np.log2(errors[0] / errors[1]) < 2.2
    P_c, P_Ec = _critical_load(16, 0.5, rigid, "clamped")
    assert abs(P_c / _engesser(P_Ec, sec) - 1.0) < 1e-2


def test_cantilever_rolls_into_a_circle():
    """End moment ``M = 2 pi EI / L`` bends a cantilever into a full circle. Pure bending puts
    the corotational nodes exactly on the circle: with ``alpha = M L_e / EI`` per element, node
    ``k`` sits at ``rho (sin k alpha, 1 - cos k alpha)``, ``rho = L_e / (2 sin(alpha / 2))``."""
    n, length = 16, 1.0
    sec = beam.circular_section(0.02)
    data, X = _strut(n, length, sec)
    EI = sec.E * sec.I
    free = np.ones((n + 1, 6), dtype=bool)
    free[0] = False
    free = free.ravel()
    x, R = X.copy(), np.broadcast_to(np.eye(3), (n + 1, 3, 3)).copy()
    tip_angle = 0.0
    M_full = 2.0 * np.pi * EI / length
    for step in range(1, 9):
        M = M_full * step / 8
        f_ext = np.zeros(6 * (n + 1))
        f_ext[6 * n + 5] = M
        for it in range(30):
            f, K = _assemble(x, R, data)
            r = (f - f_ext)[free]
            if np.abs(r).max() < 1e-10 * M_full:
                break
            da = np.zeros(6 * (n + 1))
            da[free] = np.linalg.solve(K[np.ix_(free, free)], -r)
            da = da.reshape(n + 1, 6)
            x, R = x + da[:, :3], update_rotation(R, da[:, 3:])
            tip_angle += da[n, 5]
        else:
            pytest.fail(f"Newton did not converge at load step {step}")
        assert it <= 12
        alpha = M * data.L0[0] / EI
        rho = data.L0[0] / (2.0 * np.sin(alpha / 2.0))
        k = np.arange(n + 1)
        exact = np.stack([rho * np.sin(k * alpha), rho * (1.0 - np.cos(k * alpha)),
                          np.zeros(n + 1)], 1)
        np.testing.assert_allclose(x, exact, atol=1e-9 * length)
        np.testing.assert_allclose(tip_angle, M * length / EI, rtol=1e-10)
    np.testing.assert_allclose(x[n], x[0], atol=1e-9 * length)  # the tip is back at the root
    np.testing.assert_allclose(R[n], np.eye(3), atol=1e-9)
    np.testing.assert_allclose(tip_angle, 2.0 * np.pi, rtol=1e-10)
