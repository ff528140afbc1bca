"""Tests of gnn_truss.graph: Truss <-> PyG Data conversion."""
import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader
from torch_geometric.utils import coalesce, is_undirected

from gnn_truss import design_space as ds
from gnn_truss.graph import (EDGE_FEATURES, FEATURE_SLICES, NODE_FEATURES, NUM_NODE_FEATURES,
                             batch_to_trusses, data_to_truss, truss_to_data)
from gnn_truss.truss import Truss

FIELDS = ("x", "pos", "edge_index", "edge_attr", "adj", "offset", "offset64", "stiffness",
          "curve")


def random_truss(rng: np.random.Generator) -> Truss:
    nn = ds.NEAR_NEIGHBOUR_EDGES
    keep = rng.random(len(nn)) < rng.uniform(0.05, 0.5)
    return Truss.from_edges(nn[keep], rng.uniform(-0.5, 0.5, ds.NUM_FREE_DOFS))


@pytest.fixture
def trusses():
    rng = np.random.default_rng(1234)
    return [random_truss(rng) for _ in range(10)]


def assert_same_data(a: Data, b: Data):
    for key in FIELDS:
        ta, tb = a[key], b[key]
        assert ta.dtype == tb.dtype, key
        assert torch.equal(ta, tb) or (ta.is_floating_point() and
                                       torch.equal(ta.isnan(), tb.isnan()) and
                                       torch.equal(ta.nan_to_num(), tb.nan_to_num())), key
    assert a.num_nodes == b.num_nodes


# ------------------------------------------------------------------ layout
def test_feature_layout_constants():
    assert NUM_NODE_FEATURES == len(NODE_FEATURES) == 14
    cols = sorted(c for s in FEATURE_SLICES.values() for c in range(s.start, s.stop))
    assert cols == list(range(14))  # slices tile the columns without overlap
    assert NODE_FEATURES[FEATURE_SLICES["used"]] == ("used",)
    assert EDGE_FEATURES[0] == "length"


def test_shapes_and_dtypes(trusses):
    t = trusses[0]
    d = truss_to_data(t)
    e = t.num_edges
    assert d.num_nodes == 27
    assert d.x.shape == (27, 14) and d.x.dtype == torch.float32
    assert d.pos.shape == (27, 3) and d.pos.dtype == torch.float32
    assert d.edge_index.shape == (2, 2 * e) and d.edge_index.dtype == torch.int64
    assert d.edge_attr.shape == (2 * e, 4) and d.edge_attr.dtype == torch.float32
    assert d.adj.shape == (1, 351) and d.adj.dtype == torch.float32
    assert d.offset.shape == (1, 27) and d.offset.dtype == torch.float32
    assert d.offset64.shape == (1, 27) and d.offset64.dtype == torch.float64
    assert d.stiffness.shape == (1, 9) and torch.isnan(d.stiffness).all()
    assert d.curve.shape == (1, 13) and torch.isnan(d.curve).all()


def test_node_features_hand_checked():
    # BCC with the body node moved by (0.1, -0.2, 0.3) and the (unused) face node 4 moved too
    off = np.zeros((27, 3))
    off[13] = (0.1, -0.2, 0.3)
    off[4] = (0.25, -0.25, 0.0)  # face node z=0: free x, y
    t = Truss.from_edges(ds.ELEMENTARY_LATTICES["bcc"], off)
    x = truss_to_data(t).x
    s = FEATURE_SLICES
    assert torch.equal(x[13, s["grid"]], torch.tensor([0.5, 0.5, 0.5]))
    assert torch.equal(x[13, s["type"]], torch.tensor([0.0, 0.0, 0.0, 1.0]))  # body
    assert torch.equal(x[0, s["type"]], torch.tensor([1.0, 0.0, 0.0, 0.0]))  # vertex
    assert torch.equal(x[1, s["type"]], torch.tensor([0.0, 1.0, 0.0, 0.0]))  # edge
    assert torch.equal(x[4, s["type"]], torch.tensor([0.0, 0.0, 1.0, 0.0]))  # face
    assert torch.allclose(x[13, s["offset"]], torch.tensor([0.1, -0.2, 0.3]))
    assert torch.equal(x[4, s["offset"]], torch.tensor([0.25, -0.25, 0.0]))
    assert torch.equal(x[4, s["free"]], torch.tensor([1.0, 1.0, 0.0]))
    assert torch.equal(x[0, s["free"]], torch.zeros(3))
    used = x[:, s["used"]].squeeze(1)
    assert used.nonzero().flatten().tolist() == [0, 13, 26]
    # node 4 moved but unused
    assert truss_to_data(t).pos[4].tolist() == [0.75, 0.25, 0.0]


def test_edge_attr_hand_checked():
    # BCC: beams (0,13) and (13,26) along the body diagonal, length sqrt(3)/2
    d = truss_to_data(Truss.elementary("bcc"))
    assert d.edge_index.tolist() == [[0, 13, 13, 26], [13, 0, 26, 13]]
    r = np.sqrt(3) / 2
    u = 1 / np.sqrt(3)
    expected = torch.tensor([[r, u, u, u], [r, -u, -u, -u], [r, u, u, u], [r, -u, -u, -u]],
                            dtype=torch.float32)
    assert torch.allclose(d.edge_attr, expected, atol=1e-7)
    assert d.adj.sum() == 2 and d.adj[0, list(zip(ds.TRIU_I, ds.TRIU_J)).index((0, 13))] == 1


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("name", sorted(ds.ELEMENTARY_LATTICES))
def test_round_trip_elementary(name):
    t = Truss.elementary(name)
    d = truss_to_data(t)
    assert data_to_truss(d) == t
    assert d.edge_index.shape[1] == 2 * len(ds.ELEMENTARY_LATTICES[name])
    assert_same_data(truss_to_data(data_to_truss(d)), d)


def test_round_trip_random_exact(trusses):
    for t in trusses:
        d = truss_to_data(t)
        back = data_to_truss(d)
        assert back == t
        # float32 alone would not be exact: the float64 copy is what makes it so
        assert not np.array_equal(d.offset.double().numpy()[0], t.free_offsets)
        assert np.array_equal(d.offset64.numpy()[0], t.free_offsets)
        assert_same_data(truss_to_data(back), d)


def test_round_trip_keeps_labels(trusses):
    rng = np.random.default_rng(7)
    s, c = rng.normal(size=9), rng.normal(size=13)
    d = truss_to_data(trusses[0], stiffness=s, curve=torch.tensor(c).reshape(1, 13))
    assert torch.equal(d.stiffness, torch.tensor(s, dtype=torch.float32)[None])
    assert torch.equal(d.curve, torch.tensor(c, dtype=torch.float32)[None])
    d2 = truss_to_data(data_to_truss(d), stiffness=d.stiffness, curve=d.curve)
    assert_same_data(d2, d)


def test_float32_fallback_without_offset64(trusses):
    t = trusses[1]
    d = truss_to_data(t)
    del d.offset64
    back = data_to_truss(d)
    assert np.array_equal(back.adjacency, t.adjacency)
    assert np.array_equal(back.free_offsets, d.offset.double().numpy()[0])
    assert np.allclose(back.offsets, t.offsets, atol=1e-7, rtol=0)


# ------------------------------------------------------------------ edges
def test_edges_coalesced_undirected(trusses):
    for t in trusses:
        d = truss_to_data(t)
        assert d.edge_index.shape[1] == 2 * t.num_edges
        assert is_undirected(d.edge_index, num_nodes=27)
        ei, ea = coalesce(d.edge_index, d.edge_attr, num_nodes=27)
        assert torch.equal(ei, d.edge_index) and torch.equal(ea, d.edge_attr)
        assert (d.edge_index[0] != d.edge_index[1]).all()
        # forward half, in coalesced (row-major) order, is exactly the truss beam list
        fwd = d.edge_index[:, d.edge_index[0] < d.edge_index[1]].T.numpy()
        assert np.array_equal(fwd, t.edges)


def test_edge_attr_lengths_and_directions(trusses):
    for t in trusses:
        d = truss_to_data(t)
        src, dst = d.edge_index.numpy()
        length, unit = d.edge_attr[:, 0].double().numpy(), d.edge_attr[:, 1:].double().numpy()
        lookup = {tuple(e): L for e, L in zip(t.edges, t.edge_lengths)}
        expected = np.array([lookup[(min(a, b), max(a, b))] for a, b in zip(src, dst)])
        assert np.allclose(length, expected, rtol=1e-6, atol=0)
        assert np.allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-6)
        p = t.positions
        assert np.allclose(unit * length[:, None], p[dst] - p[src], atol=1e-6)
        rev = {(a, b): k for k, (a, b) in enumerate(zip(src, dst))}
        k_rev = np.array([rev[(b, a)] for a, b in zip(src, dst)])
        assert np.array_equal(unit[k_rev], -unit)
        assert np.array_equal(length[k_rev], length)


def test_positions_match_truss(trusses):
    for t in trusses:
        d = truss_to_data(t)
        assert torch.equal(d.pos, torch.from_numpy(t.positions).float())
        assert torch.equal(d.x[:, FEATURE_SLICES["used"]].squeeze(1).bool(),
                           torch.from_numpy(t.used))


def test_empty_truss():
    t = Truss(np.zeros((27, 27)))
    d = truss_to_data(t)
    assert d.edge_index.shape == (2, 0) and d.edge_attr.shape == (0, 4)
    assert data_to_truss(d) == t


# ------------------------------------------------------------------ batching
def test_batching_shapes_and_split(trusses):
    rng = np.random.default_rng(3)
    labels = rng.normal(size=(len(trusses), 9))
    data = [truss_to_data(t, stiffness=s) for t, s in zip(trusses, labels)]
    loader = DataLoader(data, batch_size=4, shuffle=False)
    out = []
    for k, b in enumerate(loader):
        n = b.num_graphs
        assert n == (4 if k < 2 else 2)
        assert b.x.shape == (n * 27, 14)
        assert b.pos.shape == (n * 27, 3)
        assert b.adj.shape == (n, 351)
        assert b.offset.shape == (n, 27) and b.offset64.shape == (n, 27)
        assert b.stiffness.shape == (n, 9) and b.curve.shape == (n, 13)
        assert torch.equal(b.batch, torch.arange(n).repeat_interleave(27))
        assert torch.equal(b.ptr, torch.arange(n + 1) * 27)
        assert b.edge_index.max() < n * 27
        assert torch.equal(b.stiffness, torch.tensor(labels[4 * k:4 * k + n],
                                                     dtype=torch.float32))
        # edges of graph g are shifted by 27 g
        g = b.batch[b.edge_index[0]]
        assert torch.equal(g, b.batch[b.edge_index[1]])
        out.extend(batch_to_trusses(b))
    assert out == trusses


def test_batch_to_trusses_single_data(trusses):
    assert batch_to_trusses(truss_to_data(trusses[0])) == [trusses[0]]
    b = Batch.from_data_list([truss_to_data(t) for t in trusses[:3]])
    assert batch_to_trusses(b) == trusses[:3]


# ------------------------------------------------------------------ bad input
def test_missing_adj_raises(trusses):
    d = truss_to_data(trusses[0])
    del d.adj
    with pytest.raises(ValueError, match="adj"):
        data_to_truss(d)


def test_missing_offsets_raises(trusses):
    d = truss_to_data(trusses[0])
    del d.offset
    del d.offset64
    with pytest.raises(ValueError, match="offset"):
        data_to_truss(d)


def test_wrong_adj_length_raises(trusses):
    d = truss_to_data(trusses[0])
    d.adj = d.adj[:, :350]
    with pytest.raises(ValueError, match="adj.*351"):
        data_to_truss(d)


def test_wrong_offset_length_raises(trusses):
    d = truss_to_data(trusses[0])
    d.offset64 = torch.zeros(1, 26, dtype=torch.float64)
    with pytest.raises(ValueError, match="offset64.*27"):
        data_to_truss(d)


def test_wrong_feature_shape_raises(trusses):
    d = truss_to_data(trusses[0])
    d.x = d.x[:, :13]
    with pytest.raises(ValueError, match="'x'.*14"):
        data_to_truss(d)


def test_stale_offset64_raises(trusses):
    d = truss_to_data(trusses[0])
    d.offset = torch.zeros(1, 27)
    with pytest.raises(ValueError, match="disagrees"):
        data_to_truss(d)


def test_non_binary_adj_raises(trusses):
    d = truss_to_data(trusses[0])
    d.adj = d.adj * 0.7
    with pytest.raises(ValueError, match="binary"):
        data_to_truss(d)


def test_batch_given_to_data_to_truss_raises(trusses):
    b = Batch.from_data_list([truss_to_data(t) for t in trusses[:2]])
    with pytest.raises(ValueError, match="batch_to_trusses"):
        data_to_truss(b)


@pytest.mark.parametrize("kwargs, match", [
    ({"stiffness": np.zeros(8)}, "stiffness"),
    ({"stiffness": np.zeros((2, 9))}, "stiffness"),
    ({"curve": np.zeros(12)}, "curve"),
    ({"curve": np.full(13, np.inf)}, "inf"),
])
def test_bad_labels_raise(trusses, kwargs, match):
    with pytest.raises(ValueError, match=match):
        truss_to_data(trusses[0], **kwargs)


def test_not_a_truss_raises():
    with pytest.raises(ValueError, match="Truss"):
        truss_to_data(np.zeros((27, 27)))
