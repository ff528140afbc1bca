"""Tests of gnn_truss.dataset: the PyG InMemoryDataset over FE-labelled corpora."""
import json
import shutil
import zipfile

import numpy as np
import pytest
import torch
import torch_geometric.data
from torch_geometric.loader import DataLoader

from gnn_truss.corpus import Corpus, build_corpus, load_corpus, save_compact
from gnn_truss.dataset import PUBLISHED_URL, TargetNormalizer, TrussDataset, split_indices
from gnn_truss.graph import data_to_truss
from gnn_truss.published import PUBLISHED_FILES, export_published

N = 40
FIELDS = ("x", "pos", "edge_index", "edge_attr", "adj", "offset", "offset64", "stiffness", "y",
          "idx")


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    """A compact corpus of 40 FE-labelled lattices (float32 stiffness, as shipped)."""
    tmp = tmp_path_factory.mktemp("build")
    build_corpus(tmp / "build", n=N, seed=0, shard_size=21, workers=1, progress=False)
    return save_compact(load_corpus(tmp / "build", limit=N), tmp / "corpus.npz")


@pytest.fixture(scope="module")
def corpus(corpus_file):
    return load_corpus(corpus_file)


def make_root(path, corpus_file):
    (path / "raw").mkdir(parents=True)
    shutil.copy(corpus_file, path / "raw" / "corpus.npz")
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory, corpus_file):
    """Dataset root shared by tests that do not change the processing hooks."""
    return make_root(tmp_path_factory.mktemp("ds"), corpus_file)


def idx(dataset) -> np.ndarray:
    return np.array([int(d.idx) for d in dataset])


def assert_same_graphs(a, b):
    assert len(a) == len(b)
    for da, db in zip(a, b):
        for key in FIELDS:
            assert torch.equal(da[key], db[key]), key


# ------------------------------------------------------------------ splits
def test_split_sizes_follow_the_fractions_and_are_disjoint(root, corpus):
    sets = {s: TrussDataset(root, split=s) for s in ("train", "val", "test", "all")}
    assert [len(sets[s]) for s in ("train", "val", "test")] == [32, 4, 4]
    assert len(sets["all"]) == N == len(corpus)
    parts = [set(idx(sets[s])) for s in ("train", "val", "test")]
    assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
    assert set.union(*parts) == set(range(N))
    assert idx(sets["all"]).tolist() == list(range(N))
    assert sets["train"].meta["split_sizes"] == {"train": 32, "val": 4, "test": 4}


def test_splits_are_deterministic_per_seed(root, tmp_path, corpus_file):
    a = idx(TrussDataset(root, split="test", split_seed=3))
    # recomputed from scratch elsewhere: the same split
    b = idx(TrussDataset(make_root(tmp_path / "other", corpus_file), split="test", split_seed=3))
    assert np.array_equal(a, b)
    c = idx(TrussDataset(root, split="test", split_seed=4))
    assert not np.array_equal(a, c)
    assert np.array_equal(a, split_indices(N, 3)["test"])


def test_split_fractions_are_honoured(root):
    d = TrussDataset(root, split="train", split_fractions=(0.5, 0.25, 0.25))
    assert len(d) == 20
    assert len(TrussDataset(root, split="val", split_fractions=(0.5, 0.25, 0.25))) == 10


def test_empty_split(root):
    d = TrussDataset(root, split="test", split_fractions=(0.9, 0.1, 0.0))
    assert len(d) == 0
    assert len(TrussDataset(root, split="val", split_fractions=(0.9, 0.1, 0.0))) == 4


def test_limit(root):
    d = TrussDataset(root, split="all", limit=10)
    assert len(d) == 10 and idx(d).tolist() == list(range(10))
    assert d.meta["num_lattices"] == 10


def test_split_by_content_is_a_pure_function_of_each_key():
    """Disjoint and covering; the fractions hold within binomial scatter; a key's split does not
    depend on the other keys (so a grown corpus keeps every old lattice's split); another seed
    gives another split; the same fraction checks as split_indices."""
    from gnn_truss.dataset import split_by_content
    keys = np.random.default_rng(0).integers(0, 2**63, size=20000, dtype=np.uint64)
    s = split_by_content(keys, seed=0)
    assert sorted(np.concatenate(list(s.values())).tolist()) == list(range(len(keys)))
    for name, f in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
        sd = np.sqrt(f * (1 - f) * len(keys))
        assert abs(len(s[name]) - f * len(keys)) < 4 * sd, name
    small = split_by_content(keys[:5000], seed=0)  # the first 5,000 before the corpus grew
    for name in ("train", "val", "test"):
        assert np.array_equal(small[name], s[name][s[name] < 5000]), name
    shuffled = np.random.default_rng(1).permutation(len(keys))
    moved = split_by_content(keys[shuffled], seed=0)  # order does not matter either
    assert np.array_equal(np.sort(shuffled[moved["test"]]), s["test"])
    other = split_by_content(keys, seed=1)
    overlap = len(np.intersect1d(other["test"], s["test"])) / len(s["test"])
    assert overlap < 0.2  # about 0.1 for independent splits
    assert len(split_by_content(keys, fractions=(1.0, 0.0, 0.0))["train"]) == len(keys)
    for bad in [(0.8, 0.1), (0.8, 0.3, 0.1)]:
        with pytest.raises(ValueError, match="fractions"):
            split_by_content(keys, fractions=bad)


def test_content_split_of_a_grown_corpus_keeps_every_lattice_in_its_split(tmp_path,
                                                                          corpus_file, corpus):
    """TrussDataset(split_by="content"): the first 25 lattices of the corpus (limit) and all 40
    put each of the 25 in the same split; its processed files sit beside the permutation
    split's; the meta records the mode."""
    from gnn_truss.corpus import row_hashes
    from gnn_truss.dataset import corpus_split, split_by_content
    root = make_root(tmp_path / "ds", corpus_file)
    where = {}
    for limit in (25, None):
        for s in ("train", "val", "test"):
            d = TrussDataset(root, split=s, split_by="content", limit=limit)
            assert d.meta["split_by"] == "content"
            for i in idx(d):
                where.setdefault(int(i), set()).add(s)
    assert len(where) == N and all(len(v) == 1 for v in where.values())
    expect = split_by_content(row_hashes(corpus.adj, corpus.offset), 0)
    assert np.array_equal(idx(TrussDataset(root, split="test", split_by="content")),
                          expect["test"])
    assert np.array_equal(corpus_split(corpus, split_by="content")["val"], expect["val"])
    perm = TrussDataset(root, split="test")  # the default is unchanged
    assert perm.meta["split_by"] == "permutation"
    assert np.array_equal(idx(perm), split_indices(N)["test"])
    with pytest.raises(ValueError, match="split_by"):
        TrussDataset(root, split_by="random")
    with pytest.raises(ValueError, match="split_by"):
        corpus_split(corpus, split_by="random")


def test_prefix_split_keeps_the_permutation_split_of_the_smaller_corpus(tmp_path,
                                                                         corpus_file, corpus):
    """split_by="prefix:25" on the 40-lattice corpus: lattices 0-24 sit exactly where the
    permutation split of the 25-lattice corpus (limit=25) put them, lattices 25-39 where the
    content split puts them; its files sit beside the others'; a prefix larger than the corpus
    and malformed values are refused by name."""
    from gnn_truss.corpus import row_hashes
    from gnn_truss.dataset import (corpus_split, parse_split_by, split_by_content,
                                   split_keeping_prefix)
    root = make_root(tmp_path / "ds", corpus_file)
    keys = row_hashes(corpus.adj, corpus.offset)
    content = split_by_content(keys, 0)
    for s in ("train", "val", "test"):
        small = idx(TrussDataset(root, split=s, limit=25))  # permutation split of 25
        grown = TrussDataset(root, split=s, split_by="prefix:25")
        assert grown.meta["split_by"] == "prefix:25"
        got = idx(grown)
        assert np.array_equal(got[got < 25], small), s
        assert np.array_equal(got[got >= 25], content[s][content[s] >= 25]), s
        assert np.array_equal(corpus_split(corpus, split_by="prefix:25")[s], got)
    assert len(TrussDataset(root, split="all", split_by="prefix:25")) == N
    # its processed files do not replace the permutation split's of the same corpus and limit
    perm = TrussDataset(root, split="test")
    assert np.array_equal(idx(perm), split_indices(N)["test"])
    assert np.array_equal(idx(TrussDataset(root, split="test", split_by="prefix:25")),
                          corpus_split(corpus, split_by="prefix:25")["test"])
    # the whole corpus as the prefix is the permutation split
    for s, v in split_keeping_prefix(keys, N, 3).items():
        assert np.array_equal(v, split_indices(N, 3)[s]), s
    assert parse_split_by("prefix:15799") == ("prefix", 15799)
    assert parse_split_by("content") == ("content", None)
    for bad in ("prefix:", "prefix:0", "prefix:-3", "prefix:1.5", "prefix:025", "prefix:\u00b2",
                "prefix", 7, None):
        with pytest.raises(ValueError, match="prefix:N"):
            parse_split_by(bad)
    with pytest.raises(ValueError, match="only 40"):
        TrussDataset(root, split="test", split_by=f"prefix:{N + 1}")
    with pytest.raises(ValueError, match="only 20"):
        TrussDataset(root, split="test", split_by="prefix:25", limit=20)


def test_split_indices():
    s = split_indices(10, seed=1, fractions=(0.6, 0.2, 0.2))
    assert [len(s[k]) for k in ("train", "val", "test")] == [6, 2, 2]
    assert sorted(np.concatenate(list(s.values())).tolist()) == list(range(10))
    for bad in [(0.8, 0.1), (0.8, 0.3, 0.1), (1.2, -0.1, -0.1)]:
        with pytest.raises(ValueError, match="fractions"):
            split_indices(10, fractions=bad)


# ------------------------------------------------------------------ items and targets
def test_items_carry_the_corpus_lattices_and_labels(root, corpus):
    d = TrussDataset(root, split="val")
    for g in d:
        i = int(g.idx)
        assert g.x.shape == (27, 14) and g.y.shape == (1, 9) and g.adj.shape == (1, 351)
        assert data_to_truss(g) == corpus.truss(i)
        assert torch.equal(g.stiffness, torch.tensor(corpus.stiffness[i:i + 1],
                                                     dtype=torch.float32))


def test_normalizer_inverse_recovers_the_stiffness(root, corpus):
    d = TrussDataset(root, split="train")
    y = torch.cat([g.y for g in d])
    s = torch.cat([g.stiffness for g in d])
    assert y.dtype == torch.float32
    back = d.normalizer.inverse(y)
    assert back.dtype == torch.float32
    torch.testing.assert_close(back, s, rtol=1e-5, atol=1e-9)
    # fitted on the training split: standardised there
    assert torch.allclose(y.double().mean(0), torch.zeros(9, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(y.double().std(0, unbiased=False), torch.ones(9, dtype=torch.float64),
                          atol=1e-4)
    ref = TargetNormalizer.fit(corpus.stiffness[split_indices(N)["train"]])
    assert np.allclose(d.normalizer.mean, ref.mean) and np.allclose(d.normalizer.std, ref.std)
    # every split shares the training normalizer
    assert TrussDataset(root, split="test").normalizer == d.normalizer


def test_target_normalizer_round_trip():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(50, 9)) * 10.0 ** rng.uniform(-8, -1, (50, 9))  # both signs, 7 decades
    norm = TargetNormalizer.fit(v)
    z = norm.transform(v)
    assert np.allclose(z.mean(0), 0) and np.allclose(z.std(0), 1)
    np.testing.assert_allclose(norm.inverse(z), v, rtol=1e-10, atol=0)
    t = torch.from_numpy(v)
    np.testing.assert_allclose(norm.inverse(norm.transform(t)).numpy(), v, rtol=1e-10, atol=0)
    assert torch.allclose(norm.transform(t), torch.from_numpy(z))
    t32 = t.float()
    # float32: relative 1e-5 in the log range, absolute ~1e-6 * scale in the linear one
    torch.testing.assert_close(norm.inverse(norm.transform(t32)), t32, rtol=1e-5,
                               atol=1e-6 * norm.scale)
    # asinh: odd in the value, so a sign flip of v flips the unshifted, unscaled value
    assert np.allclose(norm.transform(-v) * norm.std + norm.mean,
                       -(norm.transform(v) * norm.std + norm.mean))
    assert TargetNormalizer.from_dict(json.loads(json.dumps(norm.to_dict()))) == norm


def test_target_normalizer_constant_column_and_bad_dict():
    v = np.ones((5, 2))
    v[:, 1] = np.arange(5)
    norm = TargetNormalizer.fit(v)
    assert norm.std[0] == 1.0
    assert np.allclose(norm.inverse(norm.transform(v)), v)
    with pytest.raises(ValueError, match="normalizer"):
        TargetNormalizer.from_dict({"mean": [0.0]})


def test_batching(root):
    loader = DataLoader(TrussDataset(root, split="train"), batch_size=8, shuffle=False)
    batch = next(iter(loader))
    assert batch.num_graphs == 8
    assert batch.y.shape == (8, 9) and batch.stiffness.shape == (8, 9)
    assert batch.adj.shape == (8, 351) and batch.x.shape == (8 * 27, 14)
    assert batch.idx.shape == (8,)


def test_curve_target(tmp_path, corpus):
    rng = np.random.default_rng(1)
    curve = np.cumsum(rng.uniform(0, 1e-3, (len(corpus), 13)), axis=1)
    c = Corpus(corpus.adj, corpus.offset, corpus.stiffness, curve, corpus.meta)
    (tmp_path / "raw").mkdir()
    save_compact(c, tmp_path / "raw" / "corpus.npz", stiffness_dtype=np.float64)
    d = TrussDataset(tmp_path, split="all", target="curve")
    g = d[5]
    assert g.y.shape == (1, 13)
    np.testing.assert_allclose(d.normalizer.inverse(g.y.double()).numpy()[0], curve[5],
                               rtol=1e-5)
    assert torch.equal(g.curve, torch.tensor(curve[5:6], dtype=torch.float32))


def test_curve_target_without_curves(tmp_path, corpus_file):
    with pytest.raises(ValueError, match="curve"):
        TrussDataset(make_root(tmp_path, corpus_file), target="curve")


@pytest.mark.parametrize("kwargs, match", [
    ({"split": "training"}, "split"),
    ({"source": "eth"}, "source"),
    ({"target": "stress"}, "target"),
    ({"split_fractions": (0.5, 0.5, 0.5)}, "fractions"),
])
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrussDataset(tmp_path, **kwargs)


# ------------------------------------------------------------------ hooks
def test_pre_filter_and_pre_transform(tmp_path, corpus_file, corpus):
    beams = np.array([corpus.truss(i).num_edges for i in range(N)])
    cut = int(np.median(beams))

    def pre_filter(g):
        return g.edge_index.size(1) // 2 > cut

    def pre_transform(g):
        g.num_beams = torch.tensor([g.edge_index.size(1) // 2])
        return g

    root = make_root(tmp_path, corpus_file)
    d = TrussDataset(root, split="all", pre_filter=pre_filter, pre_transform=pre_transform)
    assert 0 < len(d) == int(np.sum(beams > cut)) < N
    assert sorted(idx(d).tolist()) == np.flatnonzero(beams > cut).tolist()
    assert all(int(g.num_beams) == beams[int(g.idx)] for g in d)
    splits = [TrussDataset(root, split=s, pre_filter=pre_filter, pre_transform=pre_transform)
              for s in ("train", "val", "test")]
    assert sum(len(s) for s in splits) == len(d)
    assert d.meta["split_sizes"] == {s: len(x) for s, x in zip(("train", "val", "test"), splits)}


def _storage(dataset):
    """The collated tensors and slices an InMemoryDataset holds."""
    return dataset._data.to_dict(), dataset.slices


@pytest.mark.parametrize("target", ["stiffness", "curve"])
def test_batch_processing_equals_the_per_lattice_path(tmp_path, corpus, target):
    """The default processing builds all graphs at once (graph.collated_graphs); a
    pre_transform that returns the graph unchanged forces the one-graph-at-a-time path. Every
    split file holds the very same tensors and slices (dtype, shape and bits)."""
    rng = np.random.default_rng(3)
    curve = np.cumsum(rng.uniform(0, 1e-3, (len(corpus), 13)), axis=1)
    c = Corpus(corpus.adj, corpus.offset, corpus.stiffness, curve, corpus.meta)
    for name in ("fast", "loop"):
        (tmp_path / name / "raw").mkdir(parents=True)
        save_compact(c, tmp_path / name / "raw" / "corpus.npz", stiffness_dtype=np.float64)
    for split in ("train", "val", "test", "all"):
        fast = TrussDataset(tmp_path / "fast", split=split, target=target)
        loop = TrussDataset(tmp_path / "loop", split=split, target=target,
                            pre_transform=lambda g: g)
        (da, sa), (db, sb) = _storage(fast), _storage(loop)
        assert da.keys() == db.keys() and sa.keys() == sb.keys()
        for k, v in da.items():
            if isinstance(v, torch.Tensor):
                assert v.dtype == db[k].dtype and v.shape == db[k].shape, k
                assert torch.equal(v, db[k]), (split, k)
            else:
                assert v == db[k], k
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k
        assert_same_graphs(fast, loop)
        assert fast.meta == loop.meta


def test_collated_graphs_refuses_bad_lattices_by_index(corpus):
    from gnn_truss.graph import collated_graphs
    adj, off = corpus.adjacency()[:5].copy(), corpus.offsets()[:5].copy()
    collated_graphs(adj, off)  # the good ones pass
    bad = off.copy()
    bad[3, 13, 0] = np.nan
    with pytest.raises(ValueError, match=r"lattice 3: offsets contain NaN or inf \(node 13"):
        collated_graphs(adj, bad)
    bad = off.copy()
    bad[2, 13, 1] = 0.7
    with pytest.raises(ValueError, match="lattice 2: offset out of range"):
        collated_graphs(adj, bad)
    bad = off.copy()
    bad[1, 0, 0] = 0.1  # node 0 is a vertex: it cannot move
    with pytest.raises(ValueError, match="lattice 1: offset on a fixed dof: node 0"):
        collated_graphs(adj, bad)
    bad = adj.copy()
    bad[4, 0, 13] = 1 - bad[4, 13, 0]
    with pytest.raises(ValueError, match=r"lattice 4: adjacency must be symmetric"):
        collated_graphs(bad, off)
    bad = adj.copy()
    bad[0, 2, 5] = bad[0, 5, 2] = 2
    with pytest.raises(ValueError, match="lattice 0: adjacency must be binary"):
        collated_graphs(bad, off)
    with pytest.raises(ValueError, match=r"offsets must have shape \[5, 27, 3\]"):
        collated_graphs(adj, off[:4])
    with pytest.raises(ValueError, match=r"adjacency must have shape \[N, 27, 27\]"):
        collated_graphs(np.zeros(()), off)
    # free-dof offsets and no offsets, as Truss takes them
    from gnn_truss import design_space as ds
    a, _ = collated_graphs(adj, ds.pack_offsets(off))
    b, _ = collated_graphs(adj, off)
    assert torch.equal(a.pos, b.pos) and torch.equal(a.offset64, b.offset64)
    z, _ = collated_graphs(adj, None)
    assert torch.equal(z.pos, torch.from_numpy(np.tile(ds.NODE_GRID, (5, 1))).float())
    with pytest.raises(ValueError, match="stiffness must have shape"):
        collated_graphs(adj, off, stiffness=np.zeros((5, 8)))
    stiff = np.ones((5, 9))
    stiff[2, 0] = np.inf
    with pytest.raises(ValueError, match="stiffness of lattice 2 contains inf"):
        collated_graphs(adj, off, stiffness=stiff)
    # the paper's ones on the diagonal are accepted and cleared, as Truss does
    diag = adj.copy()
    diag[:, range(27), range(27)] = 1
    a, _ = collated_graphs(diag, off)
    b, _ = collated_graphs(adj, off)
    assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.x, b.x)


def test_transform_is_applied_on_access(root):
    def transform(g):
        g = g.clone()
        g.y = g.y * 0
        return g

    d = TrussDataset(root, split="val", transform=transform)
    assert torch.all(d[0].y == 0)
    assert not torch.all(TrussDataset(root, split="val")[0].y == 0)


# ------------------------------------------------------------------ sources and download
def test_build_directory_as_raw_data(tmp_path, root, corpus):
    (tmp_path / "raw").mkdir()
    build_corpus(tmp_path / "raw" / "corpus", n=5, seed=0, shard_size=5, workers=1,
                 progress=False)
    d = TrussDataset(tmp_path, split="all")
    assert len(d) >= 5
    assert data_to_truss(d[0]) == load_corpus(tmp_path / "raw" / "corpus").truss(0)


def test_published_source_gives_the_same_graphs(tmp_path, root, corpus):
    export_published(corpus, tmp_path / "pub" / "raw")
    for split in ("all", "test"):
        pub = TrussDataset(tmp_path / "pub", split=split, source="published")
        assert_same_graphs(pub, TrussDataset(root, split=split))
        assert pub.normalizer == TrussDataset(root, split=split).normalizer


def test_missing_corpus_says_where_to_put_it(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        TrussDataset(tmp_path, source="corpus")
    msg = str(err.value)
    assert str(tmp_path / "raw" / "corpus.npz") in msg and "save_compact" in msg


def test_missing_corpus_leaves_no_directories_behind(tmp_path):
    root = tmp_path / "nowhere" / "default"
    with pytest.raises(FileNotFoundError, match="no corpus in"):
        TrussDataset(root, source="corpus")
    assert not (tmp_path / "nowhere").exists()


def test_published_download_without_network(tmp_path, monkeypatch):
    def offline(url, folder, *args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch_geometric.data, "download_url", offline)
    with pytest.raises(FileNotFoundError) as err:
        TrussDataset(tmp_path, source="published")
    msg = str(err.value)
    assert PUBLISHED_URL in msg and str(tmp_path / "raw") in msg
    assert all(name in msg for name in PUBLISHED_FILES)
    assert "network unreachable" in msg


def test_published_download_from_a_local_archive(tmp_path, monkeypatch, corpus, root):
    export_published(corpus, tmp_path / "files")
    archive = tmp_path / "published.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in (*PUBLISHED_FILES, "manifest.json"):
            z.write(tmp_path / "files" / name, arcname=name)
    calls = []

    def fake_download(url, folder, *args, **kwargs):
        calls.append(url)
        return shutil.copy(archive, f"{folder}/published.zip")

    monkeypatch.setattr(torch_geometric.data, "download_url", fake_download)
    d = TrussDataset(tmp_path / "ds", split="all", source="published")
    assert calls == [PUBLISHED_URL]
    assert all((tmp_path / "ds" / "raw" / name).exists() for name in PUBLISHED_FILES)
    assert_same_graphs(d, TrussDataset(root, split="all"))


def test_download_of_an_archive_without_the_files(tmp_path, monkeypatch):
    def fake_download(url, folder, *args, **kwargs):
        path = f"{folder}/landing-page.html"
        open(path, "w").write("<html></html>")
        return path

    monkeypatch.setattr(torch_geometric.data, "download_url", fake_download)
    with pytest.raises(FileNotFoundError, match="lacks"):
        TrussDataset(tmp_path, source="published")
