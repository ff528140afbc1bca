"""Tests for :mod:`gnn_truss.design_space` against the node table of ``SPEC.md`` section 1."""
import numpy as np
import pytest

from gnn_truss import design_space as ds

# SPEC.md section 1, transcribed row by row: index -> (grid position, type, free dofs).
SPEC_TABLE = {
    0: ((0, 0, 0), "vertex", ""), 1: ((.5, 0, 0), "edge", "x"), 2: ((1, 0, 0), "vertex", ""),
    3: ((1, .5, 0), "edge", "y"), 4: ((.5, .5, 0), "face", "xy"), 5: ((0, .5, 0), "edge", "y"),
    6: ((0, 1, 0), "vertex", ""), 7: ((.5, 1, 0), "edge", "x"), 8: ((1, 1, 0), "vertex", ""),
    9: ((0, 0, .5), "edge", "z"), 10: ((.5, 0, .5), "face", "xz"), 11: ((1, 0, .5), "edge", "z"),
    12: ((1, .5, .5), "face", "yz"), 13: ((.5, .5, .5), "body", "xyz"),
    14: ((0, .5, .5), "face", "yz"), 15: ((0, 1, .5), "edge", "z"),
    16: ((.5, 1, .5), "face", "xz"), 17: ((1, 1, .5), "edge", "z"),
    18: ((0, 0, 1), "vertex", ""), 19: ((.5, 0, 1), "edge", "x"), 20: ((1, 0, 1), "vertex", ""),
    21: ((1, .5, 1), "edge", "y"), 22: ((.5, .5, 1), "face", "xy"), 23: ((0, .5, 1), "edge", "y"),
    24: ((0, 1, 1), "vertex", ""), 25: ((.5, 1, 1), "edge", "x"), 26: ((1, 1, 1), "vertex", ""),
}

# SPEC.md section 1 edge lists, copied verbatim.
SPEC_SC = [(8, 17), (17, 26), (20, 21), (21, 26), (24, 25), (25, 26)]
SPEC_SC_2 = [(0, 1), (1, 2), (0, 5), (5, 6), (0, 9), (9, 18), (2, 3), (3, 8), (2, 11), (11, 20),
             (6, 7), (7, 8), (6, 15), (15, 24), (8, 17), (17, 26), (18, 19), (19, 20), (18, 23),
             (23, 24), (20, 21), (21, 26), (24, 25), (25, 26)]
SPEC_BCC = [(0, 13), (13, 26)]
SPEC_OCTET = [(2, 4), (4, 6), (2, 10), (10, 18), (2, 12), (12, 26), (6, 14), (14, 18), (6, 16),
              (16, 26), (18, 22), (22, 26)]


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.mark.parametrize("idx", range(27))
def test_node_table_row(idx):
    pos, kind, free = SPEC_TABLE[idx]
    np.testing.assert_array_equal(ds.NODE_GRID[idx], pos)
    assert ds.node_type_names()[idx] == kind
    assert ds.NODE_TYPES[ds.NODE_TYPE[idx]] == kind
    np.testing.assert_array_equal(ds.FREE_DOF_MASK[idx], [a in free for a in "xyz"])


def test_canonical_layer_order():
    # SPEC: z-layers 0, .5, 1; inside a layer (0,0) (.5,0) (1,0) (1,.5) (.5,.5) (0,.5) (0,1)
    # (.5,1) (1,1)
    xy = [(0, 0), (.5, 0), (1, 0), (1, .5), (.5, .5), (0, .5), (0, 1), (.5, 1), (1, 1)]
    expected = [(x, y, z) for z in (0, .5, 1) for x, y in xy]
    np.testing.assert_array_equal(ds.NODE_GRID, expected)
    assert ds.NODE_GRID.shape == (27, 3) and len(np.unique(ds.NODE_GRID, axis=0)) == 27


def test_type_counts_and_free_dofs():
    # 8 vertices (0 dofs) + 12 edges (1) + 6 faces (2) + 1 body (3) = 0 + 12 + 12 + 3 = 27 dofs
    assert np.bincount(ds.NODE_TYPE).tolist() == [8, 12, 6, 1]
    assert ds.NUM_NODES == 27 and ds.NUM_FREE_DOFS == 27
    assert ds.FREE_DOF_MASK.sum() == 27
    np.testing.assert_array_equal(ds.FREE_DOF_MASK.sum(axis=1), ds.NODE_TYPE)
    oh = ds.type_one_hot()
    assert oh.shape == (27, 4)
    np.testing.assert_array_equal(oh.sum(axis=1), 1.0)
    np.testing.assert_array_equal(oh.argmax(axis=1), ds.NODE_TYPE)


def test_free_dof_order_is_node_then_axis():
    expected = [(i, "xyz".index(a)) for i in range(27) for a in SPEC_TABLE[i][2]]
    got = list(zip(ds.FREE_DOF_NODE.tolist(), ds.FREE_DOF_AXIS.tolist()))
    assert got == expected
    assert got[:4] == [(1, 0), (3, 1), (4, 0), (4, 1)]  # edge 1 x, edge 3 y, face 4 x and y
    assert got[12:15] == [(13, 0), (13, 1), (13, 2)]  # the body node's three dofs


def test_tables_are_read_only():
    with pytest.raises(ValueError):
        ds.NODE_GRID[0, 0] = 1.0
    with pytest.raises(ValueError):
        ds.NEAR_NEIGHBOUR_EDGES[0, 0] = 5


def test_pack_unpack_round_trip(rng):
    free = rng.uniform(-0.5, 0.5, size=(4, 27))
    full = ds.unpack_offsets(free)
    assert full.shape == (4, 27, 3)
    np.testing.assert_array_equal(full[:, ~ds.FREE_DOF_MASK], 0.0)  # fixed dofs stay zero
    np.testing.assert_array_equal(ds.pack_offsets(full), free)
    # place k at dof k: body node 13 owns dofs 12, 13, 14 (see test above)
    full = ds.unpack_offsets(np.arange(27.0))
    np.testing.assert_array_equal(full[13], [12, 13, 14])
    np.testing.assert_array_equal(full[1], [0, 0, 0])  # dof 0 (value 0) on node 1 x
    np.testing.assert_array_equal(full[25], [26, 0, 0])  # last dof: edge node 25 along x


def test_offsets_positions_round_trip(rng):
    off = ds.unpack_offsets(rng.uniform(-0.5, 0.5, size=27))
    pos = ds.offsets_to_positions(off)
    np.testing.assert_allclose(pos, ds.NODE_GRID + off)
    np.testing.assert_allclose(ds.positions_to_offsets(pos), off, atol=1e-15)
    # offsets in [-0.5, 0.5] keep every node inside the octant [0, 1]^3
    assert pos.min() >= 0.0 and pos.max() <= 1.0
    np.testing.assert_array_equal(ds.offsets_to_positions(np.zeros((27, 3))), ds.NODE_GRID)


def test_triu_adjacency_round_trip(rng):
    assert ds.NUM_PAIRS == 351 == 27 * 26 // 2
    triu = (rng.random((3, 351)) < 0.3).astype(np.uint8)
    adj = ds.triu_to_adjacency(triu)
    assert adj.shape == (3, 27, 27)
    np.testing.assert_array_equal(adj, np.swapaxes(adj, -1, -2))
    np.testing.assert_array_equal(np.diagonal(adj, axis1=1, axis2=2), 0)
    np.testing.assert_array_equal(ds.adjacency_to_triu(adj), triu)
    assert adj.sum() == 2 * triu.sum()
    # row-major upper triangle: entry 0 is (0, 1), entry 26 is (1, 2), the last one (25, 26)
    assert (ds.TRIU_I[0], ds.TRIU_J[0]) == (0, 1)
    assert (ds.TRIU_I[26], ds.TRIU_J[26]) == (1, 2)
    assert (ds.TRIU_I[-1], ds.TRIU_J[-1]) == (25, 26)


def test_edges_adjacency_round_trip():
    adj = ds.edges_to_adjacency([(13, 0), (13, 26), (0, 13)])  # any orientation, duplicates
    assert adj.dtype == np.uint8 and adj.sum() == 4
    assert adj[0, 13] == adj[13, 0] == adj[13, 26] == adj[26, 13] == 1
    np.testing.assert_array_equal(ds.adjacency_to_edges(adj), [(0, 13), (13, 26)])
    assert ds.adjacency_to_edges(np.zeros((27, 27))).shape == (0, 2)
    assert ds.edges_to_adjacency([]).sum() == 0


@pytest.mark.parametrize("edges, msg", [([(0, 27)], "outside"), ([(-1, 3)], "outside"),
                                        ([(4, 4)], "self-loop")])
def test_edges_to_adjacency_rejects_bad_edges(edges, msg):
    with pytest.raises(ValueError, match=msg):
        ds.edges_to_adjacency(edges)


def test_near_neighbour_edges_by_length():
    e = ds.NEAR_NEIGHBOUR_EDGES
    assert e.shape == (158, 2)
    assert np.all(e[:, 0] < e[:, 1]) and len(np.unique(e, axis=0)) == 158
    d = np.linalg.norm(ds.NODE_GRID[e[:, 1]] - ds.NODE_GRID[e[:, 0]], axis=1)
    # axis neighbours: 3 axes x 9 lines of 3 nodes x 2 pairs = 54
    assert np.sum(np.isclose(d, 0.5)) == 54
    # half-square diagonals: 3 orientations x 3 planes x 4 squares x 2 diagonals = 72
    assert np.sum(np.isclose(d, np.sqrt(0.5))) == 72
    # half-cube body diagonals: 8 sub-cubes x 4 diagonals = 32
    assert np.sum(np.isclose(d, np.sqrt(0.75))) == 32
    assert ds.R_MAX == pytest.approx(np.sqrt(3) / 2, abs=1e-15)
    # brute force: every pair of grid nodes no farther apart than sqrt(3)/2 is listed
    dd = np.linalg.norm(ds.NODE_GRID[:, None] - ds.NODE_GRID[None], axis=2)
    i, j = np.nonzero(np.triu(dd <= ds.R_MAX + 1e-9, k=1))
    assert set(zip(i.tolist(), j.tolist())) == set(map(tuple, e.tolist()))


def test_elementary_lattices_match_spec():
    lat = {k: sorted(v) for k, v in ds.ELEMENTARY_LATTICES.items()}
    assert lat["sc"] == sorted(SPEC_SC)
    assert lat["sc_2x2x2"] == sorted(SPEC_SC_2)
    assert lat["bcc"] == sorted(SPEC_BCC)
    assert lat["octet"] == sorted(SPEC_OCTET)
    # bcc 2x2x2: the body node joined to the 8 octant corners
    assert lat["bcc_2x2x2"] == sorted((min(c, 13), max(c, 13))
                                      for c in (0, 2, 6, 8, 18, 20, 24, 26))
    # octet 2x2x2 = FCC of side 1 in the octant: 6 face centres x 4 corners of their face = 24
    # face-corner beams + 12 face-centre pairs on adjacent faces = 36; all of length sqrt(1/2)
    o2 = np.array(lat["octet_2x2x2"])
    assert len(o2) == 36
    np.testing.assert_allclose(np.linalg.norm(ds.NODE_GRID[o2[:, 1]] - ds.NODE_GRID[o2[:, 0]],
                                              axis=1), np.sqrt(0.5))
    assert (4, 6) in lat["octet_2x2x2"] and (4, 10) in lat["octet_2x2x2"]
    assert (4, 22) not in lat["octet_2x2x2"]  # opposite faces are 1 apart
    near = set(map(tuple, ds.NEAR_NEIGHBOUR_EDGES.tolist()))
    for name, edges in lat.items():
        assert all(i < j for i, j in edges), name
        assert set(edges) <= near, name
    assert set(ds.SEED_LATTICES) == {"sc", "sc_2x2x2", "bcc", "bcc_2x2x2", "octet",
                                     "octet_2x2x2"}


def test_near_neighbour_adjacency_is_the_edge_list_as_a_matrix():
    A = ds.NEAR_NEIGHBOUR_ADJACENCY
    assert A.dtype == bool and not A.flags.writeable
    np.testing.assert_array_equal(A, ds.edges_to_adjacency(ds.NEAR_NEIGHBOUR_EDGES) == 1)
    assert A.sum() == 2 * 158 and not A.diagonal().any()
