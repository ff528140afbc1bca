"""The closed-form forces and tangent of the corotational element against the automatic
differentiation reference (:mod:`gnn_truss.fe.corotational`)."""
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from gnn_truss.fe import beam, corotational
from gnn_truss.fe.corotational import (corotational_beams, element_forces,
                                       element_forces_and_tangent,
                                       element_forces_and_tangent_fast, element_forces_fast,
                                       initial_state)

TOL = 1e-9  # relative to the largest entry of each element's force or tangent


def _beams(M, seed, radius=0.05):
    rng = np.random.default_rng(seed)
    X1 = rng.normal(size=(M, 3))
    X2 = X1 + rng.normal(size=(M, 3))
    # radii vary per element; one stubby family (shear-dominated) and one slender
    sec = beam.circular_section(radius * rng.uniform(0.2, 3.0, size=M))
    return corotational_beams(X1, X2, sec), rng


def _state(data, rng, local_angle, scale=0.05, rigid_angle=None):
    """Rigid motion (random rotation, angles up to pi, or ``rigid_angle`` about random axes) of a
    deformed element: end displacements ``scale * L0`` and nodal rotations of angle up to
    ``local_angle`` about random axes relative to the rigidly moved initial triads."""
    M = len(data)
    if rigid_angle is None:
        Q = Rotation.random(M, random_state=int(rng.integers(1 << 30))).as_matrix()
    else:
        axis = rng.normal(size=(M, 3))
        axis /= np.linalg.norm(axis, axis=1, keepdims=True)
        Q = Rotation.from_rotvec(rigid_angle * axis).as_matrix()
    x = data.X + scale * data.L0[:, None, None] * rng.normal(size=(M, 2, 3))
    x = np.einsum("mij,maj->mai", Q, x) + rng.normal(size=(M, 1, 3))
    axis = rng.normal(size=(M, 2, 3))
    axis /= np.linalg.norm(axis, axis=2, keepdims=True)
    psi = axis * rng.uniform(0.0, local_angle, size=(M, 2, 1))
    R = np.einsum("mij,majk->maik", Q, Rotation.from_rotvec(psi.reshape(-1, 3)).as_matrix()
                  .reshape(M, 2, 3, 3))
    return x, R


def _assert_close(x, R, data, tol=TOL):
    f0, K0 = element_forces_and_tangent(x, R, data, method="autograd")
    f1, K1 = element_forces_and_tangent_fast(x, R, data)
    sK = np.abs(K0).max(axis=(1, 2))
    sf = np.maximum(np.abs(f0).max(axis=1), 1e-300)
    err_f = (np.abs(f1 - f0).max(axis=1) / sf).max()
    err_K = (np.abs(K1 - K0).max(axis=(1, 2)) / sK).max()
    assert err_f < tol, err_f
    assert err_K < tol, err_K
    np.testing.assert_array_equal(K1, K1.transpose(0, 2, 1))
    return f0, K0, f1, K1


@pytest.mark.parametrize("local_angle, scale", [(0.5, 0.05), (0.2, 0.1), (0.05, 0.01)])
def test_fast_matches_autograd_large_rigid_rotations(local_angle, scale):
    data, rng = _beams(300, seed=11)
    x, R = _state(data, rng, local_angle, scale)
    _assert_close(x, R, data)


@pytest.mark.parametrize("rigid_angle", [np.pi / 2, 3.0, np.pi - 1e-6])
def test_fast_matches_autograd_near_half_turn(rigid_angle):
    data, rng = _beams(100, seed=12)
    x, R = _state(data, rng, 0.5, rigid_angle=rigid_angle)
    _assert_close(x, R, data)


def test_fast_matches_autograd_at_initial_state_and_rigid_motions():
    """Zero local rotations: the series branch of the log map (and a zero force)."""
    data, rng = _beams(50, seed=13)
    x, R = initial_state(data)
    f0, K0 = element_forces_and_tangent(x, R, data, method="autograd")
    f1, K1 = element_forces_and_tangent_fast(x, R, data)
    scale = np.abs(K0).max(axis=(1, 2))
    assert np.abs(f1).max() < 1e-15 * scale.max()
    assert (np.abs(K1 - K0).max(axis=(1, 2)) / scale).max() < TOL
    xr, Rr = _state(data, rng, 0.0, scale=0.0)  # pure rigid motion
    f0, K0 = element_forces_and_tangent(xr, Rr, data, method="autograd")
    f1, K1 = element_forces_and_tangent_fast(xr, Rr, data)
    assert np.abs(f1).max() < 1e-12 * scale.max()
    assert (np.abs(K1 - K0).max(axis=(1, 2)) / scale).max() < TOL


@pytest.mark.parametrize("angle", [1e-7, 1e-3, np.arccos(0.99) - 1e-9, np.arccos(0.99) + 1e-9,
                                   0.3])
def test_fast_matches_autograd_across_the_series_switch(angle):
    """Local rotations of a given angle, on both sides of the switch of the log map to its
    series (``1 - cos(theta) = 1e-2``); no chord rotation, so the angle is the local one."""
    data, rng = _beams(40, seed=14)
    M = len(data)
    x, R = initial_state(data)
    axis = rng.normal(size=(M, 2, 3))
    axis /= np.linalg.norm(axis, axis=2, keepdims=True)
    R = Rotation.from_rotvec((angle * axis).reshape(-1, 3)).as_matrix().reshape(M, 2, 3, 3)
    x = x * 1.001  # some axial force too
    _assert_close(x, R, data)


def test_fast_torch_io_unsymmetric_forces_only_and_chunks(monkeypatch):
    data, rng = _beams(23, seed=15)
    x, R = _state(data, rng, 0.4)
    f0, K0 = element_forces_and_tangent(x, R, data, symmetric=False, method="autograd")
    f1, K1 = element_forces_and_tangent(torch.as_tensor(x), torch.as_tensor(R), data,
                                        symmetric=False)
    assert isinstance(f1, torch.Tensor) and isinstance(K1, torch.Tensor)
    assert f1.dtype == K1.dtype == torch.float64
    assert np.abs(K1.numpy() - K0).max() < TOL * np.abs(K0).max()
    assert np.abs(f1.numpy() - f0).max() < TOL * np.abs(f0).max()
    # forces alone, numpy and torch
    np.testing.assert_allclose(element_forces(x, R, data), f0, rtol=0,
                               atol=TOL * np.abs(f0).max())
    ft = element_forces(torch.as_tensor(x), torch.as_tensor(R), data)
    assert isinstance(ft, torch.Tensor)
    np.testing.assert_allclose(ft.numpy(), element_forces_fast(x, R, data), rtol=0, atol=0)
    # the blocking of the elements does not change the results
    f_all, K_all = element_forces_and_tangent_fast(x, R, data)
    monkeypatch.setattr(corotational, "_CHUNK", 5)
    f_ch, K_ch = element_forces_and_tangent_fast(x, R, data)
    np.testing.assert_array_equal(f_ch, f_all)
    np.testing.assert_allclose(K_ch, K_all, rtol=0, atol=1e-15 * np.abs(K_all).max())
    np.testing.assert_array_equal(element_forces_fast(x, R, data), element_forces_fast(x, R, data))


def test_default_method_and_validation():
    assert corotational.DEFAULT_METHOD == "analytic"
    data, rng = _beams(3, seed=16)
    x, R = _state(data, rng, 0.3)
    f, K = element_forces_and_tangent(x, R, data)
    f_fast, K_fast = element_forces_and_tangent_fast(x, R, data)
    np.testing.assert_array_equal(f, f_fast)
    np.testing.assert_array_equal(K, K_fast)
    with pytest.raises(ValueError):
        element_forces_and_tangent(x, R, data, method="finite-differences")
    with pytest.raises(ValueError):
        element_forces_and_tangent(x[:2], R, data)
    empty = corotational_beams(np.zeros((0, 3)), np.zeros((0, 3)), beam.circular_section(0.1))
    f, K = element_forces_and_tangent(np.zeros((0, 2, 3)), np.zeros((0, 2, 3, 3)), empty)
    assert f.shape == (0, 12) and K.shape == (0, 12, 12)
    assert element_forces(np.zeros((0, 2, 3)), np.zeros((0, 2, 3, 3)), empty).shape == (0, 12)
