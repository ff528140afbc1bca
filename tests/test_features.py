"""Tests of the physics features of the encoder readout (gnn_truss.nn.features)."""
import numpy as np
import pytest
import torch

from gnn_truss import design_space as ds
from gnn_truss.fe import homogenize
from gnn_truss.generator import generate
from gnn_truss.nn.features import (FABRIC_COMPONENTS, NUM_PHYSICS_FEATURES, physics_features,
                                   stretching_fabric)
from gnn_truss.truss import Truss

ELEMENTARY = ("sc", "sc_2x2x2", "bcc", "bcc_2x2x2", "octet", "octet_2x2x2")


def _reference(truss: Truss) -> tuple[np.ndarray, float]:
    """Fabric and total length from the unique physical struts of the periodic cell
    (``Truss.periodic``, the FE model's own strut list), independent of the octant weights."""
    cell = truss.periodic()
    chords = cell.chords
    length = np.linalg.norm(chords, axis=1)
    n = chords / length[:, None]
    fabric = [(length * n[:, k] ** 2 * n[:, m] ** 2).sum() / length.sum()
              for k, m in FABRIC_COMPONENTS]
    return np.array(fabric), float(length.sum())


def _inputs(trusses, dtype=torch.float64):
    adj = torch.tensor(np.stack([ds.adjacency_to_triu(t.adjacency) for t in trusses]),
                       dtype=dtype)
    off = torch.tensor(np.stack([t.free_offsets for t in trusses]), dtype=dtype)
    return adj, off


@pytest.fixture(scope="module")
def lattices():
    """Elementary lattices and 40 generator lattices with offsets (seeded)."""
    return [Truss.elementary(n) for n in ELEMENTARY] + generate(40, np.random.default_rng(7))


def test_fabric_matches_the_physical_struts(lattices):
    """The octant weights 8 / 2^k count each physical strut once (mirror planes and cell
    faces): fabric and length equal those of the periodic cell's strut list to 1e-12."""
    adj, off = _inputs(lattices)
    fabric, total = stretching_fabric(adj, off)
    for k, t in enumerate(lattices):
        ref, length = _reference(t)
        np.testing.assert_allclose(fabric[k].numpy(), ref, atol=1e-12)
        assert total[k].item() == pytest.approx(length, rel=1e-12)


def test_closed_form_values_of_the_elementary_lattices():
    """Hand values: SC has all struts along the axes (F1111 = 1/3, no cross terms), BCC only
    body diagonals (every F_iijj = 1/9), octet face diagonals (F1111 = 1/6, F1122 = 1/12); the
    total lengths of the cell of side 2 are 6, 4 * 2 sqrt 3 and 24 sqrt 2."""
    names = ("sc", "bcc", "octet")
    fabric, total = stretching_fabric(*_inputs([Truss.elementary(n) for n in names]))
    expected = {"sc": ([1 / 3] * 3 + [0.0] * 3, 6.0),
                "bcc": ([1 / 9] * 6, 8 * np.sqrt(3)),
                "octet": ([1 / 6] * 3 + [1 / 12] * 3, 24 * np.sqrt(2))}
    for k, name in enumerate(names):
        np.testing.assert_allclose(fabric[k].numpy(), expected[name][0], atol=1e-12)
        assert total[k].item() == pytest.approx(expected[name][1], rel=1e-12)


def test_affine_stretching_equals_fe_for_simple_cubic():
    """rho E_s F is the axial term of the closed form: exact for SC's normal stiffness
    (C11 = rho / 3 = 0.05, FE) and within 5 % of the FE C11, C12 of BCC and octet."""
    for name, tol in (("sc", 1e-9), ("bcc", 0.05), ("octet", 0.05)):
        t = Truss.elementary(name)
        fabric, _ = stretching_fabric(*_inputs([t]))
        S = homogenize(t, density=0.15).S
        c11, c12 = 0.15 * fabric[0, 0].item(), 0.15 * fabric[0, 5].item()
        assert c11 == pytest.approx(S[0], rel=tol)
        if name != "sc":
            assert c12 == pytest.approx(S[1], rel=tol)


def test_square_and_triangle_inputs_agree_and_features_are_bounded(lattices):
    adj, off = _inputs(lattices)
    square = torch.tensor(np.stack([t.adjacency for t in lattices]), dtype=torch.float64)
    a, b = physics_features(adj, off), physics_features(square, off)
    assert a.shape == (len(lattices), NUM_PHYSICS_FEATURES)
    assert torch.allclose(a, b, atol=1e-12)
    assert torch.isfinite(a).all() and a[:, :12].min() >= 0 and a[:, :12].max() <= 2.0


def test_axis_permutation_permutes_the_fabric(lattices):
    """Relabelling x <-> y swaps F1111 <-> F2222 and F2233 <-> F1133 (exact physics)."""
    from gnn_truss.symmetry import permute_truss

    perm = (1, 0, 2)
    swapped = [permute_truss(t, perm) for t in lattices[6:16]]
    f0, l0 = stretching_fabric(*_inputs(lattices[6:16]))
    f1, l1 = stretching_fabric(*_inputs(swapped))
    assert torch.allclose(f1, f0[:, [1, 0, 2, 4, 3, 5]], atol=1e-12)
    assert torch.allclose(l1, l0, rtol=1e-12)


def test_empty_lattice_and_soft_gradients():
    """No struts: zero fabric (no NaN); soft entries are differentiable (double gradcheck)."""
    fabric, total = stretching_fabric(torch.zeros(1, ds.NUM_PAIRS, dtype=torch.float64),
                                      torch.zeros(1, ds.NUM_FREE_DOFS, dtype=torch.float64))
    assert torch.count_nonzero(fabric) == 0 and total.item() == 0.0
    g = torch.Generator().manual_seed(0)
    prob = torch.rand(2, ds.NUM_PAIRS, generator=g, dtype=torch.float64).requires_grad_(True)
    off = (0.6 * torch.rand(2, ds.NUM_FREE_DOFS, generator=g, dtype=torch.float64) - 0.3) \
        .requires_grad_(True)
    assert torch.autograd.gradcheck(physics_features, (prob, off), eps=1e-6, atol=1e-6)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="adjacency"):
        stretching_fabric(torch.zeros(2, 10), torch.zeros(2, 27))
    with pytest.raises(ValueError, match="offsets"):
        stretching_fabric(torch.zeros(2, ds.NUM_PAIRS), torch.zeros(3, 27))


def test_near_only_equals_all_pairs_on_valid_lattices(lattices):
    """The dense encoder reads the 158 near-neighbour pairs only: the same features for every
    valid lattice; a long beam (0 -> 26, not a near-neighbour pair) is seen by all pairs only."""
    adj, off = _inputs(lattices)
    assert torch.allclose(physics_features(adj, off, near_only=True),
                          physics_features(adj, off), atol=1e-12)
    long = _inputs([Truss.from_edges([(0, 26), (0, 13), (13, 26)])])
    f_all, l_all = stretching_fabric(*long)
    f_near, l_near = stretching_fabric(*long, near_only=True)
    assert l_all.item() == pytest.approx(2 * l_near.item())  # the diagonal, twice over
    assert torch.allclose(f_all, f_near, atol=1e-12)  # the same direction
