"""Tests of gnn_truss.published: the exchange format of the published dataset."""
import json

import numpy as np
import pytest
import scipy.sparse as sp

from gnn_truss import design_space as ds
from gnn_truss.corpus import Corpus, pack_adjacency
from gnn_truss.generator import generate
from gnn_truss.published import (PUBLISHED_FILES, export_published, identify_node_order,
                                 import_published)
from gnn_truss.truss import Truss


def swap_xy_order() -> np.ndarray:
    """Row r of the x/y-swapped order holds the canonical node whose grid position is that of
    canonical node r with x and y exchanged."""
    lookup = {tuple(p): i for i, p in enumerate(ds.NODE_GRID.tolist())}
    return np.array([lookup[(p[1], p[0], p[2])] for p in ds.NODE_GRID.tolist()])


def make_corpus(n=5, seed=0, curve=True) -> Corpus:
    """Generated lattices (float32 offsets) plus SC 2x2x2, whose body node 13 is unused;
    random labels of both signs."""
    rng = np.random.default_rng(seed)
    trusses = generate(n - 1, rng) + [Truss.elementary("sc_2x2x2")]
    adj = pack_adjacency(np.stack([t.adjacency for t in trusses]))
    off = np.stack([t.free_offsets for t in trusses]).astype(np.float32)
    stiff = rng.normal(0.0, 0.02, (n, 9))
    curves = rng.uniform(-0.01, 0.02, (n, 13)) if curve else None
    return Corpus(adj, off, stiff, curves, {"origin": "test"})


def write_published(out, corpus: Corpus, order=None, upper=False, weights=1.0):
    """Write ``corpus`` in the published format by hand, rows of every block in ``order``
    (row r = canonical node order[r]); optionally only the upper triangle plus a diagonal of
    ones, as the paper's files may hold it."""
    out.mkdir(parents=True, exist_ok=True)
    order = np.arange(27) if order is None else np.asarray(order)
    n = len(corpus)
    adj = corpus.adjacency().astype(np.float64)[:, order][:, :, order] * weights
    if upper:
        adj = np.triu(adj) + np.eye(27)
    pos = (ds.NODE_GRID + corpus.offsets())[:, order]
    off = pos - ds.NODE_GRID[order]
    sp.save_npz(out / "adjacency-matrix.npz", sp.coo_matrix(adj.reshape(n * 27, 27)))
    sp.save_npz(out / "node-offset.npz", sp.csr_matrix(off.reshape(n * 27, 3)))
    sp.save_npz(out / "node-position.npz", sp.csr_matrix(pos.reshape(n * 27, 3)))
    np.savetxt(out / "stiffness-vec.csv", corpus.stiffness, delimiter=",", fmt="%.17g")
    if corpus.curve is not None:
        np.savetxt(out / "stress-strain.csv", corpus.curve, delimiter=",", fmt="%.17g")
    return out


def assert_same_lattices(a: Corpus, b: Corpus):
    assert len(a) == len(b)
    assert np.array_equal(a.adj, b.adj)
    assert np.array_equal(a.offset.astype(np.float64), b.offset.astype(np.float64))
    assert np.array_equal(a.stiffness, b.stiffness)


@pytest.fixture(scope="module")
def corpus():
    return make_corpus()


# ------------------------------------------------------------------ round trip
def test_export_import_round_trip(corpus, tmp_path):
    out = export_published(corpus, tmp_path / "pub")
    names = sorted(f.name for f in out.iterdir())
    assert names == sorted([*PUBLISHED_FILES, "stress-strain.csv", "manifest.json"])
    back = import_published(out)
    assert np.array_equal(back.adj, corpus.adj)
    assert np.array_equal(back.offset.astype(np.float32), corpus.offset)
    assert np.array_equal(back.offset, corpus.offset.astype(np.float64))  # exact, not close
    assert np.array_equal(back.stiffness, corpus.stiffness)
    assert np.array_equal(back.curve, corpus.curve)
    assert back.meta["origin"] == "test" and back.meta["count"] == len(corpus)
    assert back.meta["source_node_order"] == list(range(27))
    for i in range(len(corpus)):
        assert back.truss(i) == corpus.truss(i)


def test_exported_files_follow_the_published_layout(corpus, tmp_path):
    out = export_published(corpus, tmp_path)
    n = len(corpus)
    adj = sp.load_npz(out / "adjacency-matrix.npz").toarray()
    pos = sp.load_npz(out / "node-position.npz").toarray()
    off = sp.load_npz(out / "node-offset.npz").toarray()
    assert adj.shape == (n * 27, 27) and pos.shape == off.shape == (n * 27, 3)
    blocks = adj.reshape(n, 27, 27)
    assert np.all(blocks[:, np.arange(27), np.arange(27)] == 1)  # the paper's diagonal
    assert np.array_equal(blocks - np.eye(27), corpus.adjacency())
    assert np.array_equal(pos.reshape(n, 27, 3), ds.NODE_GRID + off.reshape(n, 27, 3))
    assert np.loadtxt(out / "stiffness-vec.csv", delimiter=",").shape == (n, 9)
    assert json.loads((out / "manifest.json").read_text())["count"] == n
    assert not list(out.glob("*.tmp*"))


def test_export_without_curves_writes_no_curve_file(corpus, tmp_path):
    c = Corpus(corpus.adj, corpus.offset, corpus.stiffness)
    back = import_published(export_published(c, tmp_path))
    assert not (tmp_path / "stress-strain.csv").exists()
    assert back.curve is None


# ------------------------------------------------------------------ node order
def test_swap_order_is_a_nontrivial_involution():
    order = swap_xy_order()
    assert sorted(order) == list(range(27))
    assert not np.array_equal(order, np.arange(27))
    assert np.array_equal(order[order], np.arange(27))
    assert order[1] == 5 and order[3] == 7 and order[13] == 13  # (.5,0,0) <-> (0,.5,0)


def test_swapped_order_imports_to_the_same_lattices(corpus, tmp_path):
    order = swap_xy_order()
    canonical = import_published(write_published(tmp_path / "c", corpus))
    swapped = import_published(write_published(tmp_path / "s", corpus, order, upper=True))
    assert swapped.meta["source_node_order"] == order.tolist()
    assert_same_lattices(swapped, canonical)
    assert_same_lattices(swapped, corpus)
    assert np.array_equal(swapped.curve, corpus.curve)


def test_identify_node_order_returns_the_permutation(corpus):
    pos = ds.NODE_GRID + corpus.offsets()
    assert np.array_equal(identify_node_order(pos), np.arange(27))
    order = swap_xy_order()
    assert np.array_equal(identify_node_order(pos[:, order]), order)
    # any permutation is found, not only the two known ones
    perm = np.random.default_rng(0).permutation(27)
    assert np.array_equal(identify_node_order(pos[:, perm]), perm)


def test_import_binarises_and_symmetrises_the_adjacency(corpus, tmp_path):
    weighted = import_published(write_published(tmp_path, corpus, upper=True, weights=2.5))
    assert np.array_equal(weighted.adj, corpus.adj)


def test_import_clears_offsets_of_unused_nodes(corpus, tmp_path):
    out = write_published(tmp_path, corpus)
    pos = sp.load_npz(out / "node-position.npz").toarray().reshape(-1, 27, 3)
    last = corpus.truss(len(corpus) - 1)  # SC 2x2x2: body node 13 unused
    assert not last.used[13]
    pos[-1, 13] = [0.7, 0.3, 0.6]
    sp.save_npz(out / "node-position.npz", sp.csr_matrix(pos.reshape(-1, 3)))
    back = import_published(out)
    assert np.all(back.offsets()[-1] == 0.0)
    assert_same_lattices(back, corpus)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("name", PUBLISHED_FILES)
def test_missing_file_is_named(corpus, tmp_path, name):
    out = write_published(tmp_path, corpus)
    (out / name).unlink()
    with pytest.raises(ValueError, match=name):
        import_published(out)


def test_wrong_adjacency_shape(corpus, tmp_path):
    out = write_published(tmp_path, corpus)
    sp.save_npz(out / "adjacency-matrix.npz", sp.csr_matrix(np.ones((len(corpus) * 27, 26))))
    with pytest.raises(ValueError, match=r"adjacency-matrix.npz: expected shape \(N\*27, 27\)"):
        import_published(out)
    sp.save_npz(out / "adjacency-matrix.npz", sp.csr_matrix(np.ones((40, 27))))
    with pytest.raises(ValueError, match="adjacency-matrix.npz: expected shape"):
        import_published(out)


def test_not_a_sparse_file(corpus, tmp_path):
    out = write_published(tmp_path, corpus)
    (out / "node-position.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="node-position.npz: not a scipy sparse"):
        import_published(out)


def test_block_counts_must_agree(corpus, tmp_path):
    out = write_published(tmp_path, corpus)
    np.savetxt(out / "stiffness-vec.csv", corpus.stiffness[:, :8], delimiter=",")
    with pytest.raises(ValueError, match="stiffness"):
        import_published(out)
    np.savetxt(out / "stiffness-vec.csv", corpus.stiffness[:-1], delimiter=",")
    with pytest.raises(ValueError, match="inconsistent sizes"):
        import_published(out)
    write_published(tmp_path, corpus)
    pos = sp.load_npz(out / "node-position.npz").toarray()
    sp.save_npz(out / "node-position.npz", sp.csr_matrix(pos[:-27]))
    with pytest.raises(ValueError, match="position"):
        import_published(out)


def test_malformed_stiffness_csv(corpus, tmp_path):
    out = write_published(tmp_path, corpus)
    (out / "stiffness-vec.csv").write_text("C11,C12\n1,2\n")
    with pytest.raises(ValueError, match="stiffness-vec.csv"):
        import_published(out)


def test_wrong_curve_shape(corpus, tmp_path):
    out = write_published(tmp_path, corpus)
    np.savetxt(out / "stress-strain.csv", corpus.curve[:, :12], delimiter=",")
    with pytest.raises(ValueError, match="stress-strain.csv"):
        import_published(out)


def test_fixed_coordinate_off_its_plane(corpus, tmp_path):
    out = write_published(tmp_path, corpus)
    pos = sp.load_npz(out / "node-position.npz").toarray().reshape(-1, 27, 3)
    pos[1, 26, 2] = 0.9  # vertex (1, 1, 1) of lattice 1 leaves the plane z = 1
    sp.save_npz(out / "node-position.npz", sp.csr_matrix(pos.reshape(-1, 3)))
    with pytest.raises(ValueError, match="off their fixed coordinates.*lattice 1"):
        import_published(out)


def test_blocks_disagreeing_on_the_order(tmp_path):
    c = make_corpus(n=6, seed=1, curve=False)
    pos = ds.NODE_GRID + c.offsets()
    mixed = pos.copy()
    mixed[3:] = pos[3:, swap_xy_order()]
    with pytest.raises(ValueError, match="disagree"):
        identify_node_order(mixed)
    out = write_published(tmp_path, c)
    sp.save_npz(out / "node-position.npz", sp.csr_matrix(mixed.reshape(-1, 3)))
    with pytest.raises(ValueError, match="disagree"):
        import_published(out)


def test_unidentifiable_order():
    with pytest.raises(ValueError, match="cannot identify the node order"):
        identify_node_order(np.zeros((3, 27, 3)))
