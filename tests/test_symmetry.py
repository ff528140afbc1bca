"""Tests of gnn_truss.symmetry: axis permutations and mirror reflections of lattices, labels
and graphs.

The physics checks homogenize / compress a lattice and its axis-permuted or reflected copy and
compare the results with the tensor transformation rule, derived independently here (full
fourth-order tensor rotated by the permutation matrix with einsum), and with the unchanged
labels a reflection must keep (it translates the periodic lattice by one octant).
"""
import itertools

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from gnn_truss import design_space as ds
from gnn_truss.dataset import TargetNormalizer
from gnn_truss.fe.homogenization import homogenize, stiffness_vector
from gnn_truss.graph import data_to_truss, truss_to_data
from gnn_truss.properties import stiffness_from_vector, vector_from_stiffness
from gnn_truss.symmetry import (
    AXIS_PERMUTATIONS,
    MIRRORS,
    Z_PRESERVING,
    RandomAxisPermutation,
    allowed_permutations,
    allowed_symmetries,
    node_map,
    permute_data,
    permute_stiffness,
    permute_truss,
)
from gnn_truss.truss import Truss

# Voigt index of the axis pair (i, j), and the axis pair of each Voigt index (shears yz, xz, xy)
_VOIGT = np.array([[0, 5, 4], [5, 1, 3], [4, 3, 2]])
_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def rotated_by_permutation(c9: np.ndarray, p) -> np.ndarray:
    """``C'_{abcd} = Q_ai Q_bj Q_ck Q_dl C_ijkl`` with ``x' = Q x``, ``Q[a, p[a]] = 1``, on the
    full fourth-order tensor built from the 6 x 6 Voigt stiffness."""
    V = stiffness_from_vector(c9)
    C = V[_VOIGT[:, :, None, None], _VOIGT[None, None, :, :]]
    Q = np.zeros((3, 3))
    Q[np.arange(3), list(p)] = 1.0
    Cr = np.einsum("ai,bj,ck,dl,ijkl->abcd", Q, Q, Q, Q, C)
    return vector_from_stiffness(np.array([[Cr[i, j, k, l] for k, l in _PAIRS]
                                           for i, j in _PAIRS]))


def perturbed(name: str, seed: int) -> Truss:
    """An elementary lattice with random offsets on its used nodes' free dofs (anisotropic)."""
    t = Truss.elementary(name)
    rng = np.random.default_rng(seed)
    off = ds.unpack_offsets(rng.uniform(-0.08, 0.08, ds.NUM_FREE_DOFS)) * t.used[:, None]
    return t.with_offsets(off).check_valid()


def octet_with_sc(seed: int) -> Truss:
    return perturbed("octet_2x2x2", seed).superpose(Truss.elementary("sc_2x2x2")).check_valid()


# ------------------------------------------------------------------ maps
@pytest.mark.parametrize("p", AXIS_PERMUTATIONS)
def test_node_map_sends_each_grid_point_to_its_permuted_copy(p):
    m = node_map(p)
    assert sorted(m) == list(range(27))  # a bijection of the 27 nodes
    np.testing.assert_array_equal(ds.NODE_GRID[m], ds.NODE_GRID[:, list(p)])
    np.testing.assert_array_equal(ds.NODE_TYPE[m], ds.NODE_TYPE)  # types are kept


def test_identity_and_composition():
    t = octet_with_sc(0)
    assert permute_truss(t, (0, 1, 2)) == t
    for p, q in itertools.product(AXIS_PERMUTATIONS, repeat=2):
        # x'_a = x_p[a], then x''_b = x'_q[b] = x_p[q[b]]
        pq = tuple(p[q[b]] for b in range(3))
        assert permute_truss(permute_truss(t, p), q) == permute_truss(t, pq)


@pytest.mark.parametrize("p", AXIS_PERMUTATIONS)
def test_stiffness_map_matches_the_tensor_rotation(p):
    c9 = np.random.default_rng(1).uniform(-1, 1, 9)
    np.testing.assert_allclose(permute_stiffness(c9, p), rotated_by_permutation(c9, p),
                               rtol=0, atol=1e-15)


def test_swapping_x_and_y_swaps_the_expected_components():
    c9 = np.arange(1.0, 10.0)  # C11 C12 C13 C22 C23 C33 C44 C55 C66
    np.testing.assert_array_equal(permute_stiffness(c9, (1, 0, 2)),
                                  [4, 2, 5, 1, 3, 6, 8, 7, 9])


@pytest.mark.parametrize("bad", [(0, 1), (0, 0, 1), (0, 1, 3), "xyz", None])
def test_bad_permutations_are_refused(bad):
    with pytest.raises(ValueError, match="permutation of"):
        permute_truss(Truss.elementary("octet"), bad)


def test_cubic_elementary_lattices_are_invariant():
    for name in ("sc", "sc_2x2x2", "bcc", "bcc_2x2x2", "octet", "octet_2x2x2"):
        t = Truss.elementary(name)
        for p in AXIS_PERMUTATIONS:
            assert permute_truss(t, p) == t, (name, p)


@pytest.mark.parametrize("f", MIRRORS)
def test_node_map_with_a_reflection_sends_each_grid_point_to_its_mirror_image(f):
    p = (1, 2, 0)
    m = node_map(p, f)
    assert sorted(m) == list(range(27))
    g = ds.NODE_GRID[:, list(p)]
    np.testing.assert_array_equal(ds.NODE_GRID[m], np.where(np.array(f, bool), 1 - g, g))
    np.testing.assert_array_equal(ds.NODE_TYPE[m], ds.NODE_TYPE)


def test_a_reflection_negates_the_free_offsets_along_its_axis_and_is_an_involution():
    t = octet_with_sc(1)
    r = permute_truss(t, (0, 1, 2), (1, 0, 0))
    m = node_map((0, 1, 2), (1, 0, 0))
    np.testing.assert_array_equal(r.offsets[m], t.offsets * [-1, 1, 1])
    np.testing.assert_allclose(r.positions[m], t.positions * [-1, 1, 1] + [1, 0, 0], atol=1e-15)
    for f in MIRRORS:
        assert permute_truss(permute_truss(t, (0, 1, 2), f), (0, 1, 2), f) == t
    assert permute_truss(t, (0, 1, 2), (0, 0, 0)) == t
    assert r != t  # not trivially kept: the check above can fail


@pytest.mark.parametrize("bad", [(0, 1), (0, 2, 0), (0, 0, 0.5), "xyz", (1, 0, 0, 1)])
def test_bad_reflections_are_refused(bad):
    with pytest.raises(ValueError, match="reflection is 3 flags"):
        permute_truss(Truss.elementary("octet"), (0, 1, 2), bad)


def test_allowed_symmetries_count_the_cube_group():
    assert len(allowed_symmetries("stiffness")) == 48
    assert len(set(allowed_symmetries("stiffness"))) == 48
    assert len(allowed_symmetries("curve")) == 16
    assert all(p[2] == 2 for p, _ in allowed_symmetries("curve"))
    assert allowed_symmetries("stiffness", mirrors=False) == tuple(
        (p, (0, 0, 0)) for p in AXIS_PERMUTATIONS)
    assert allowed_symmetries("curve")[0] == ((0, 1, 2), (0, 0, 0))


# ------------------------------------------------------------------ physics (FE)
@pytest.mark.parametrize("make", [lambda: perturbed("octet_2x2x2", 3), lambda: octet_with_sc(4),
                                  lambda: perturbed("sc_2x2x2", 5).superpose(
                                      perturbed("octet", 6))])
def test_fe_stiffness_of_the_permuted_lattice_is_the_rotated_stiffness(make):
    t = make()
    c = stiffness_vector(homogenize(t).C)
    assert np.all(np.isfinite(c))
    assert abs(c[0] - c[3]) > 1e-3 * c[0]  # anisotropic: the check below can fail
    for p in AXIS_PERMUTATIONS:
        cp = stiffness_vector(homogenize(permute_truss(t, p)).C)
        np.testing.assert_allclose(cp, rotated_by_permutation(c, p), rtol=1e-9,
                                   atol=1e-12 * np.abs(c).max())


def test_fe_compression_curve_is_kept_by_the_xy_swap_only():
    from gnn_truss.fe.nonlinear import compress, compression_model
    t = perturbed("octet_2x2x2", 7)
    strains = [0.005, 0.02]

    def curve(truss, axis):
        res = compress(compression_model(truss, imperfection=0.0), axis=axis, strains=strains)
        return np.asarray(res.stress)

    base = curve(t, 2)
    swapped = curve(permute_truss(t, (1, 0, 2)), 2)
    np.testing.assert_allclose(swapped, base, rtol=1e-6)
    # moving z elsewhere: the old z axis is new axis a with p[a] = 2, compressing along a gives
    # the old curve, compressing along the new z does not (anisotropic lattice)
    p = (2, 0, 1)
    moved = permute_truss(t, p)
    np.testing.assert_allclose(curve(moved, p.index(2)), base, rtol=1e-6)
    assert not np.allclose(curve(moved, 2), base, rtol=1e-2)


@pytest.mark.parametrize("make", [lambda: octet_with_sc(4),
                                  lambda: perturbed("sc_2x2x2", 14).superpose(
                                      perturbed("octet", 15))])
def test_fe_stiffness_of_a_reflected_lattice_is_unchanged(make):
    # the reflected octant tiles the same infinite lattice shifted by one octant: same C
    t = make()
    c = stiffness_vector(homogenize(t).C)
    assert abs(c[0] - c[3]) > 1e-3 * c[0]
    for f in MIRRORS[1:]:
        r = permute_truss(t, (0, 1, 2), f)
        assert r != t
        np.testing.assert_allclose(stiffness_vector(homogenize(r).C), c, rtol=1e-9,
                                   atol=1e-12 * np.abs(c).max(), err_msg=str(f))
    # a permutation with a reflection: the rotated stiffness
    p, f = (2, 0, 1), (1, 1, 0)
    np.testing.assert_allclose(stiffness_vector(homogenize(permute_truss(t, p, f)).C),
                               rotated_by_permutation(c, p), rtol=1e-9,
                               atol=1e-12 * np.abs(c).max())


def test_fe_compression_curve_is_kept_by_reflections():
    from gnn_truss.fe.nonlinear import compress, compression_model
    t = perturbed("octet_2x2x2", 7)
    strains = [0.005, 0.02]

    def curve(truss):
        res = compress(compression_model(truss, imperfection=0.0), axis=2, strains=strains)
        return np.asarray(res.stress)

    base = curve(t)
    assert np.abs(base).max() > 0
    for f in [(0, 0, 1), (1, 0, 0), (1, 1, 1)]:
        r = permute_truss(t, (1, 0, 2), f)
        assert r != t
        np.testing.assert_allclose(curve(r), base, rtol=1e-6, atol=1e-9 * np.abs(base).max(),
                                   err_msg=str(f))


# ------------------------------------------------------------------ graphs
def labelled_graph(t: Truss, norm: TargetNormalizer, curve=None):
    c = stiffness_vector(homogenize(t).C)
    d = truss_to_data(t, stiffness=c, curve=curve)
    d.y = norm.transform(torch.as_tensor(c, dtype=torch.float64)).float().view(1, -1)
    return d, c


@pytest.fixture(scope="module")
def norm():
    rng = np.random.default_rng(2)  # per-component mean / std that differ
    return TargetNormalizer.fit(np.abs(rng.normal(0.01, 0.01, (50, 9))) *
                                np.linspace(1, 3, 9))


@pytest.mark.parametrize("p", AXIS_PERMUTATIONS)
def test_permute_data_equals_the_graph_of_the_permuted_lattice(p, norm):
    t = octet_with_sc(8)
    d, c = labelled_graph(t, norm)
    got = permute_data(d, p, norm)
    ref = truss_to_data(permute_truss(t, p), stiffness=permute_stiffness(c, p))
    for key in ("x", "pos", "edge_index", "edge_attr", "adj", "offset", "offset64",
                "stiffness"):
        torch.testing.assert_close(got[key], ref[key], rtol=0, atol=1e-6, msg=key)
    y_ref = norm.transform(torch.as_tensor(permute_stiffness(c, p), dtype=torch.float64))
    torch.testing.assert_close(got.y.double().view(-1), y_ref, rtol=0, atol=3e-7)
    assert data_to_truss(got) == permute_truss(t, p)
    torch.testing.assert_close(d.x, truss_to_data(t).x)  # the input is left alone


def test_permute_data_on_a_batch_equals_graph_by_graph(norm):
    trusses = [octet_with_sc(s) for s in range(5)] + [perturbed("sc_2x2x2", 9)]
    graphs = [labelled_graph(t, norm)[0] for t in trusses]
    perms = list(AXIS_PERMUTATIONS)
    got = permute_data(Batch.from_data_list(graphs), perms, norm)
    ref = Batch.from_data_list([permute_data(g, p, norm) for g, p in zip(graphs, perms)])
    for key in ("x", "pos", "edge_index", "edge_attr", "adj", "offset", "stiffness", "y",
                "batch"):
        assert torch.equal(got[key], ref[key]), key


def test_identity_permutation_changes_nothing(norm):
    d, _ = labelled_graph(octet_with_sc(12), norm, curve=np.linspace(0.0, 1e-3, 13))
    same = permute_data(d, (0, 1, 2), norm)
    for key in d.keys():
        assert torch.equal(same[key], d[key]) if isinstance(d[key], torch.Tensor) \
            else same[key] == d[key], key


def test_curves_follow_only_the_permutations_that_keep_z(norm):
    t = octet_with_sc(10)
    d, _ = labelled_graph(t, norm, curve=np.linspace(0.0, 1e-3, 13))
    with pytest.raises(ValueError, match="moves z"):
        permute_data(d, (0, 2, 1), norm, target="curve")
    kept = permute_data(d, (1, 0, 2), norm, target="curve")
    torch.testing.assert_close(kept.curve, d.curve)
    torch.testing.assert_close(kept.y, d.y)  # a curve target y is unchanged
    # a stiffness target on graphs that also carry curves: the curve of a graph whose z moved
    # becomes unknown, the others are kept
    b = permute_data(Batch.from_data_list([d, d]), [(0, 2, 1), (1, 0, 2)], norm)
    assert bool(torch.isnan(b.curve[0]).all()) and torch.equal(b.curve[1], d.curve[0])
    assert allowed_permutations("curve") == Z_PRESERVING


def test_permute_data_refuses_bad_input(norm):
    d, _ = labelled_graph(octet_with_sc(10), norm)
    with pytest.raises(ValueError, match="normalizer"):
        permute_data(d, (1, 0, 2))
    with pytest.raises(ValueError, match="27 nodes"):
        permute_data(d.subgraph(torch.arange(20)), (1, 0, 2), norm)
    with pytest.raises(ValueError, match="27 nodes"):  # 20 + 34 nodes: a multiple of 27
        permute_data(Batch.from_data_list([d.subgraph(torch.arange(20)),
                                           Batch.from_data_list([d, d]).subgraph(
                                               torch.arange(34))]), (1, 0, 2), norm)
    with pytest.raises(ValueError, match="2 permutations for 1 graphs"):
        permute_data(d, [(1, 0, 2)] * 2, norm)
    with pytest.raises(ValueError, match="permutation of"):
        permute_data(d, [(1, 0, 2), (1, 0)], norm)
    torch.testing.assert_close(permute_data(d, np.array([1, 0, 2]), norm).adj,
                               permute_data(d, (1, 0, 2), norm).adj)


def test_batch_round_trip_to_trusses(norm):
    from gnn_truss.graph import batch_to_trusses
    trusses = [octet_with_sc(s) for s in range(3)]
    batch = Batch.from_data_list([labelled_graph(t, norm)[0] for t in trusses])
    perms = [(2, 0, 1), (0, 2, 1), (1, 2, 0)]
    assert batch_to_trusses(permute_data(batch, perms, norm)) == \
        [permute_truss(t, p) for t, p in zip(trusses, perms)]


def test_random_axis_permutation_is_seeded_and_draws_every_allowed_permutation(norm):
    t = octet_with_sc(11)
    d, _ = labelled_graph(t, norm)
    batch = Batch.from_data_list([d] * 120)
    aug = RandomAxisPermutation(norm)
    torch.manual_seed(0)
    a = aug(batch)
    torch.manual_seed(0)
    b = aug(batch)
    assert torch.equal(a.offset, b.offset) and torch.equal(a.y, b.y)
    seen = {tuple(row.tolist()) for row in a.offset}
    assert len(seen) == 6  # six distinct orientations of a lattice with random offsets
    curve_aug = RandomAxisPermutation(norm, target="curve")
    c = curve_aug(batch)
    assert len({tuple(row.tolist()) for row in c.offset}) == 2
    with pytest.raises(ValueError, match="target"):
        RandomAxisPermutation(norm, target="density")


@pytest.mark.parametrize("f", MIRRORS[1:])
def test_permute_data_with_a_reflection_equals_the_graph_of_the_reflected_lattice(f, norm):
    t = octet_with_sc(16)
    d, c = labelled_graph(t, norm, curve=np.linspace(0.0, 1e-3, 13))
    for p in ((0, 1, 2), (1, 0, 2), (2, 1, 0)):
        got = permute_data(d, p, norm, flip=f)
        ref = truss_to_data(permute_truss(t, p, f), stiffness=permute_stiffness(c, p))
        for key in ("x", "pos", "edge_index", "edge_attr", "adj", "offset", "offset64",
                    "stiffness"):
            torch.testing.assert_close(got[key], ref[key], rtol=0, atol=1e-6, msg=key)
        assert data_to_truss(got) == permute_truss(t, p, f)
        y_ref = norm.transform(torch.as_tensor(permute_stiffness(c, p), dtype=torch.float64))
        torch.testing.assert_close(got.y.double().view(-1), y_ref, rtol=0, atol=3e-7)
    kept = permute_data(d, (1, 0, 2), norm, target="curve", flip=f)  # curves: unchanged
    torch.testing.assert_close(kept.curve, d.curve)


def test_permute_data_with_reflections_on_a_batch_equals_graph_by_graph(norm):
    trusses = [octet_with_sc(s) for s in range(6)]
    graphs = [labelled_graph(t, norm)[0] for t in trusses]
    perms = list(AXIS_PERMUTATIONS)
    flips = list(MIRRORS[2:])
    got = permute_data(Batch.from_data_list(graphs), perms, norm, flip=flips)
    ref = Batch.from_data_list([permute_data(g, p, norm, flip=f)
                                for g, p, f in zip(graphs, perms, flips)])
    for key in ("x", "pos", "edge_index", "edge_attr", "adj", "offset", "offset64",
                "stiffness", "y", "batch"):
        assert torch.equal(got[key], ref[key]), key
    with pytest.raises(ValueError, match="2 reflections for 6 graphs"):
        permute_data(Batch.from_data_list(graphs), perms, norm, flip=flips[:2])


def test_random_symmetry_with_mirrors_is_seeded_and_draws_every_allowed_symmetry(norm):
    t = octet_with_sc(17)
    d, _ = labelled_graph(t, norm, curve=np.linspace(0.0, 1e-3, 13))
    d.y = torch.as_tensor(np.linspace(0.0, 1e-3, 13), dtype=torch.float32).view(1, -1)
    batch = Batch.from_data_list([d] * 400)
    aug = RandomAxisPermutation(norm, target="curve", mirrors=True)
    assert "16 symmetries" in repr(aug)
    torch.manual_seed(0)
    a = aug(batch)
    torch.manual_seed(0)
    b = aug(batch)
    assert torch.equal(a.offset, b.offset) and torch.equal(a.adj, b.adj)
    expect = {tuple(truss_to_data(permute_truss(t, p, f)).offset.view(-1).tolist())
              for p, f in allowed_symmetries("curve")}
    seen = {tuple(row.tolist()) for row in a.offset}
    assert len(expect) == 16 and seen == expect
    torch.testing.assert_close(a.curve, batch.curve)  # curves kept by all 16
    torch.testing.assert_close(a.y, batch.y)


# ------------------------------------------------------------------ symmetrised prediction
def _tiny_model(num_targets: int):
    from gnn_truss.nn import build_model
    torch.manual_seed(0)
    m = build_model({"encoder": "gnn", "topology": 4, "shared": 8, "geometry": 4, "hidden": 16,
                     "layers": 2, "readout": 32, "num_targets": num_targets})
    return m.eval()


def _inverse(p):
    return tuple(int(a) for a in np.argsort(p))


def test_symmetrised_prediction_is_the_group_average_by_hand(norm):
    from gnn_truss.symmetry import symmetrised_prediction
    model = _tiny_model(9)
    trusses = [octet_with_sc(20), perturbed("sc_2x2x2", 21)]
    batch = Batch.from_data_list([labelled_graph(t, norm)[0] for t in trusses])
    for mode, n in (("axes", 6), ("axes_mirrors", 48)):
        got = symmetrised_prediction(model, batch, norm, "stiffness", mode)
        # by hand: graph of each transformed lattice from scratch, its prediction put back on
        # the original axes by the inverse permutation (independent of stiffness_map's inverse)
        ops = allowed_symmetries("stiffness", mode == "axes_mirrors")
        assert len(ops) == n
        acc = np.zeros((2, 9))
        for p, f in ops:
            gb = Batch.from_data_list([truss_to_data(permute_truss(t, p, f)) for t in trusses])
            with torch.no_grad():
                pred = norm.inverse(model(gb, sample=False)["pred"].double()).numpy()
            acc += permute_stiffness(pred, _inverse(p))
        np.testing.assert_allclose(got.numpy(), acc / n, rtol=1e-5, atol=1e-9)
        plain = norm.inverse(model(batch, sample=False)["pred"].double()).detach().numpy()
        assert not np.allclose(got.numpy(), plain, rtol=1e-3)  # an untrained model is not
        # invariant, the average is: transforming the input transforms the output exactly
        for p, f in (((1, 2, 0), (1, 0, 1)), ((2, 1, 0), (0, 0, 0))):
            if mode == "axes" and any(f):
                continue
            moved = symmetrised_prediction(model, permute_data(batch, p, norm, flip=f), norm,
                                           "stiffness", mode)
            np.testing.assert_allclose(moved.numpy(), permute_stiffness(got.numpy(), p),
                                       rtol=1e-5, atol=1e-9)


def test_symmetrised_curve_prediction_is_invariant_and_refuses_bad_modes(norm):
    from gnn_truss.symmetry import symmetrised_prediction
    model = _tiny_model(13)
    curve_norm = TargetNormalizer.fit(np.abs(np.random.default_rng(3).normal(1e-3, 3e-4,
                                                                            (40, 13))))
    t = perturbed("octet_2x2x2", 22)
    d = truss_to_data(t, curve=np.linspace(0.0, 1e-3, 13))
    d.y = torch.zeros(1, 13)
    got = symmetrised_prediction(model, d, curve_norm, "curve", "axes_mirrors")
    assert got.shape == (1, 13)
    for p, f in (((1, 0, 2), (0, 0, 0)), ((0, 1, 2), (1, 1, 1)), ((1, 0, 2), (0, 1, 0))):
        moved = symmetrised_prediction(model, permute_data(d, p, curve_norm, "curve", flip=f),
                                       curve_norm, "curve", "axes_mirrors")
        torch.testing.assert_close(moved, got, rtol=1e-5, atol=1e-12)
    with pytest.raises(ValueError, match="symmetrise must be one of"):
        symmetrised_prediction(model, d, curve_norm, "curve", "mirrors")


# ------------------------------------------------------------------ symmetrised reconstruction
def _grid_map(p, f) -> np.ndarray:
    """``[27]`` new node of each old node, from the grid coordinates (not ``node_map``)."""
    g = ds.NODE_GRID[:, list(p)]
    g = np.where(np.asarray(f, dtype=bool), 1.0 - g, g)
    return np.array([int(np.flatnonzero(np.all(np.isclose(ds.NODE_GRID, r), axis=1))[0])
                     for r in g])


def _square(logits: np.ndarray) -> np.ndarray:
    """``[B, 351]`` pair values -> symmetric ``[B, 27, 27]`` (zero diagonal)."""
    out = np.zeros((len(logits), ds.NUM_NODES, ds.NUM_NODES))
    out[:, ds.TRIU_I, ds.TRIU_J] = logits
    return out + out.transpose(0, 2, 1)


def test_symmetrised_reconstruction_is_the_group_average_by_hand(norm):
    from gnn_truss.symmetry import symmetrised_outputs, symmetrised_prediction
    model = _tiny_model(9)
    trusses = [octet_with_sc(23), perturbed("sc_2x2x2", 24)]
    batch = Batch.from_data_list([labelled_graph(t, norm)[0] for t in trusses])
    for mode in ("axes", "axes_mirrors"):
        got = symmetrised_outputs(model, batch, norm, "stiffness", mode)
        assert got["logits"].shape == (2, 351) and got["offsets"].shape == (2, 27)
        torch.testing.assert_close(got["pred"],
                                   symmetrised_prediction(model, batch, norm, "stiffness", mode))
        ops = allowed_symmetries("stiffness", mode == "axes_mirrors")
        adj_sum = np.zeros((2, 27, 27))
        off_sum = np.zeros((2, 27, 3))
        for p, f in ops:
            gb = Batch.from_data_list([truss_to_data(permute_truss(t, p, f)) for t in trusses])
            with torch.no_grad():
                out = model(gb, sample=False)
            m = _grid_map(p, f)
            new_adj = _square(out["logits"].double().numpy())
            adj_sum += new_adj[:, m][:, :, m]  # old pair (i, j) sits at (m[i], m[j])
            new_off = ds.unpack_offsets(out["offsets"].double().numpy())  # [B, 27, 3]
            inv = np.argsort(p)  # old axis b is new axis inv[b], reflected if f[inv[b]]
            off_sum += new_off[:, m][:, :, inv] * np.where(np.asarray(f)[inv] == 1, -1.0, 1.0)
        np.testing.assert_allclose(_square(got["logits"].numpy()), adj_sum / len(ops),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ds.unpack_offsets(got["offsets"].numpy()),
                                   off_sum / len(ops) * ds.FREE_DOF_MASK, rtol=1e-5, atol=1e-7)
        plain = model(batch, sample=False)["logits"].detach().double().numpy()
        # an untrained model is not equivariant, so the average differs from one pass
        assert not np.allclose(got["logits"].numpy(), plain, rtol=1e-3)


def test_symmetrised_reconstruction_is_equivariant(norm):
    """The reconstruction of a transformed lattice is the transformed reconstruction."""
    from gnn_truss.symmetry import symmetrised_outputs
    model = _tiny_model(9)
    t = octet_with_sc(25)
    d = labelled_graph(t, norm)[0]
    got = symmetrised_outputs(model, d, norm, "stiffness", "axes_mirrors")
    rec = Truss(ds.triu_to_adjacency((got["logits"].numpy()[0] > 0).astype(np.uint8)),
                ds.unpack_offsets(got["offsets"].numpy()[0]))
    for p, f in (((1, 2, 0), (1, 0, 1)), ((2, 1, 0), (0, 1, 0)), ((0, 1, 2), (1, 1, 1))):
        moved = symmetrised_outputs(model, permute_data(d, p, norm, flip=f), norm, "stiffness",
                                    "axes_mirrors")
        m = _grid_map(p, f)
        np.testing.assert_allclose(_square(moved["logits"].numpy())[0][np.ix_(m, m)],
                                   _square(got["logits"].numpy())[0], rtol=1e-5, atol=1e-6)
        want = permute_truss(rec, p, f)
        np.testing.assert_allclose(ds.unpack_offsets(moved["offsets"].numpy()[0]),
                                   want.offsets, rtol=1e-5, atol=1e-7)


def test_symmetrised_refined_outputs_are_the_average_of_refined_copies(norm):
    """With ``refine_steps`` each copy's latent is refined on that copy and the outputs at the
    refined latents are averaged: checked against refine_latent run by hand on each
    transformed lattice built from scratch; the average is invariant (the prediction) and
    equivariant (the reconstruction), which one refined pass is not."""
    from gnn_truss.nn.vae import refine_latent
    from gnn_truss.symmetry import symmetrised_outputs
    model = _tiny_model(9)
    trusses = [octet_with_sc(26), perturbed("sc_2x2x2", 27)]
    batch = Batch.from_data_list([labelled_graph(t, norm)[0] for t in trusses])
    got = symmetrised_outputs(model, batch, norm, "stiffness", "axes", refine_steps=7,
                              refine_lr=0.05)
    plain = symmetrised_outputs(model, batch, norm, "stiffness", "axes")
    assert not np.allclose(got["pred"].numpy(), plain["pred"].numpy(), rtol=1e-4)
    zero = symmetrised_outputs(model, batch, norm, "stiffness", "axes", refine_steps=0)
    torch.testing.assert_close(zero["pred"], plain["pred"])  # 0 steps: the means
    ops = allowed_symmetries("stiffness", False)
    acc, adj_sum = np.zeros((2, 9)), np.zeros((2, 27, 27))
    for p, f in ops:
        gb = Batch.from_data_list([truss_to_data(permute_truss(t, p, f)) for t in trusses])
        with torch.no_grad():
            mu = model(gb, sample=False)["mu"]
        z = refine_latent(model, mu, gb.adj, gb.offset, steps=7, lr=0.05)
        with torch.no_grad():
            pred = norm.inverse(model.predict(z).double()).numpy()
            logits = model.decode(z)[0].double().numpy()
        acc += permute_stiffness(pred, _inverse(p))
        m = _grid_map(p, f)
        adj_sum += _square(logits)[:, m][:, :, m]
    np.testing.assert_allclose(got["pred"].numpy(), acc / len(ops), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(_square(got["logits"].numpy()), adj_sum / len(ops),
                               rtol=1e-5, atol=1e-5)
    p = (2, 0, 1)
    moved = symmetrised_outputs(model, permute_data(batch, p, norm), norm, "stiffness", "axes",
                                refine_steps=7, refine_lr=0.05)
    np.testing.assert_allclose(moved["pred"].numpy(), permute_stiffness(got["pred"].numpy(), p),
                               rtol=1e-5, atol=1e-9)
    m = _grid_map(p, (0, 0, 0))
    np.testing.assert_allclose(_square(moved["logits"].numpy())[:, m][:, :, m],
                               _square(got["logits"].numpy()), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ the predictor alone
def _dense(trusses):
    adj = torch.tensor(np.stack([t.adjacency for t in trusses]), dtype=torch.float32)
    off = torch.tensor(np.stack([t.free_offsets for t in trusses]), dtype=torch.float32)
    return adj, off


@pytest.mark.parametrize("p, f", [((0, 1, 2), (0, 0, 0)), ((1, 2, 0), (0, 0, 0)),
                                  ((2, 1, 0), (1, 0, 1)), ((0, 2, 1), (0, 1, 0))])
def test_permute_dense_equals_the_permuted_lattice(p, f):
    from gnn_truss.symmetry import permute_dense
    trusses = [octet_with_sc(30), perturbed("sc_2x2x2", 31), perturbed("octet_2x2x2", 32)]
    adj, off = _dense(trusses)
    got_adj, got_off = permute_dense(adj, off, p, f)
    ref_adj, ref_off = _dense([permute_truss(t, p, f) for t in trusses])
    assert torch.equal(got_adj, ref_adj)
    torch.testing.assert_close(got_off, ref_off, rtol=0, atol=1e-7)
    # the 351 upper triangles map the same way, and so do the graphs' own fields
    ti, tj = torch.as_tensor(ds.TRIU_I.copy()), torch.as_tensor(ds.TRIU_J.copy())
    triu, _ = permute_dense(adj[:, ti, tj], off, p, f)
    assert torch.equal(triu, ref_adj[:, ti, tj])
    g = permute_data(Batch.from_data_list([truss_to_data(t) for t in trusses]), p, flip=f)
    assert torch.equal(triu, g.adj.view(len(trusses), -1))
    with pytest.raises(ValueError, match="adj must be"):
        permute_dense(adj[:, :5], off, p, f)
    with pytest.raises(ValueError, match="offsets must be"):
        permute_dense(adj, off[:, :5], p, f)


def test_symmetrised_dense_prediction_is_the_group_average_and_invariant(norm):
    from gnn_truss.nn import GraphPropertyPredictor
    from gnn_truss.symmetry import permute_dense, symmetrised_dense_prediction
    torch.manual_seed(0)
    net = GraphPropertyPredictor(9, hidden=16, layers=2, readout=32, edge_readout=True,
                                 physics_readout=True).eval()
    trusses = [octet_with_sc(40), perturbed("sc_2x2x2", 41)]
    adj, off = _dense(trusses)
    for mode, n in (("axes", 6), ("axes_mirrors", 48)):
        with torch.no_grad():
            got = symmetrised_dense_prediction(net, adj, off, norm, "stiffness", mode)
        assert got.shape == (2, 9) and got.dtype == torch.float64
        # by hand, on the sparse graphs of the transformed lattices built from scratch
        acc = np.zeros((2, 9))
        for p, f in allowed_symmetries("stiffness", mode == "axes_mirrors"):
            gb = Batch.from_data_list([truss_to_data(permute_truss(t, p, f)) for t in trusses])
            with torch.no_grad():
                pred = norm.inverse(net(gb).double()).numpy()
            acc += permute_stiffness(pred, _inverse(p))
        np.testing.assert_allclose(got.numpy(), acc / n, rtol=1e-5, atol=1e-9)
        with torch.no_grad():
            plain = norm.inverse(net.forward_dense(adj, off).double()).numpy()
        assert not np.allclose(got.numpy(), plain, rtol=1e-3)  # G alone is not invariant
        for p, f in (((1, 2, 0), (1, 0, 1)), ((2, 1, 0), (0, 0, 0))):
            if mode == "axes" and any(f):
                continue
            with torch.no_grad():
                moved = symmetrised_dense_prediction(net, *permute_dense(adj, off, p, f), norm,
                                                     "stiffness", mode)
            np.testing.assert_allclose(moved.numpy(), permute_stiffness(got.numpy(), p),
                                       rtol=1e-5, atol=1e-9)
    # curves: the 16 copies that keep z, the prediction itself invariant
    curve_norm = TargetNormalizer.fit(np.linspace(1e-4, 1e-3, 13)[None] * np.arange(1, 6)[:, None])
    cnet = GraphPropertyPredictor(13, hidden=16, layers=2, readout=32).eval()
    with torch.no_grad():
        c = symmetrised_dense_prediction(cnet, adj, off, curve_norm, "curve", "axes_mirrors")
        c2 = symmetrised_dense_prediction(cnet, *permute_dense(adj, off, (1, 0, 2), (1, 1, 0)),
                                          curve_norm, "curve", "axes_mirrors")
    torch.testing.assert_close(c, c2, rtol=1e-5, atol=1e-12)
    with pytest.raises(ValueError, match="symmetrise"):
        symmetrised_dense_prediction(net, adj, off, norm, "stiffness", "mirrors")
    with pytest.raises(ValueError, match="normalizer"):
        symmetrised_dense_prediction(net, adj, off, None, "stiffness", "axes")


def test_symmetrised_decoded_prediction_reads_the_one_decoded_lattice(norm):
    from gnn_truss.nn import build_model
    from gnn_truss.symmetry import (symmetrised_decoded_prediction,
                                    symmetrised_dense_prediction)
    torch.manual_seed(0)
    model = build_model({"encoder": "gnn", "topology": 4, "shared": 8, "geometry": 4,
                         "hidden": 16, "layers": 2, "readout": 32, "num_targets": 9,
                         "predictor_input": "decoded", "predictor_gnn_hidden": 16,
                         "predictor_gnn_layers": 2, "predictor_gnn_readout": 32}).eval()
    mu = torch.randn(5, 4 + 8 + 4)
    with torch.no_grad():
        got = symmetrised_decoded_prediction(model, mu, norm, "stiffness", "axes")
        adj, off, _ = model.decode_lattice(mu, near_only=True)
        ref = symmetrised_dense_prediction(model.predictor, adj, off, norm, "stiffness", "axes")
        plain = norm.inverse(model.predict(mu).double())
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    assert got.shape == (5, 9) and not torch.allclose(got, plain, rtol=1e-3)
    with pytest.raises(ValueError, match="predictor_input 'decoded'"):
        symmetrised_decoded_prediction(_tiny_model(9), mu, norm)
