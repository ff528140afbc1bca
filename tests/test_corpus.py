"""Tests of gnn_truss.corpus: compact encoding, sharded resumable builds, loading."""
import json
import os
import shutil

import numpy as np
import pytest
import torch

from gnn_truss import design_space as ds
from gnn_truss.corpus import (ADJ_BYTES, MANIFEST, Corpus, build_corpus, load_corpus,
                              pack_adjacency, read_shard, save_compact, unpack_adjacency,
                              write_shard)
from gnn_truss.fe import homogenize

BUILD = dict(n=30, seed=0, shard_size=12, progress=False)


def shard_path(root, k):
    return root / "shards" / f"shard-{k:05d}.npz"


def shard_state(root):
    """{file name: (mtime_ns, size)} of the finished shard files."""
    return {f.name: (f.stat().st_mtime_ns, f.stat().st_size)
            for f in sorted((root / "shards").glob("shard-*.npz"))}


def assert_same_corpus(a: Corpus, b: Corpus):
    assert len(a) == len(b)
    for key in ("adj", "offset", "stiffness"):
        x, y = getattr(a, key), getattr(b, key)
        assert x.dtype == y.dtype, key
        assert np.array_equal(x, y), key


def random_symmetric(rng, n, p=0.2):
    triu = (rng.random((n, ds.NUM_PAIRS)) < p).astype(np.uint8)
    return ds.triu_to_adjacency(triu)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A tiny corpus (30 lattices, shards of 12) built once with one worker."""
    root = tmp_path_factory.mktemp("corpus") / "a"
    manifest = build_corpus(root, workers=1, **BUILD)
    return root, manifest, load_corpus(root)


@pytest.fixture
def copy_of_built(built, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(built[0], root)  # copy2: keeps mtimes
    return root


# ------------------------------------------------------------------ compact encoding
def test_pack_unpack_round_trip():
    rng = np.random.default_rng(0)
    adj = random_symmetric(rng, 50)
    bits = pack_adjacency(adj)
    assert bits.shape == (50, ADJ_BYTES) and ADJ_BYTES == 44 and bits.dtype == np.uint8
    back = unpack_adjacency(bits)
    assert back.shape == (50, 27, 27)
    assert np.array_equal(back, adj)
    assert np.array_equal(unpack_adjacency(bits, square=False), ds.adjacency_to_triu(adj))
    # the [n, 351] form packs the same way, and a single matrix round-trips too
    assert np.array_equal(pack_adjacency(ds.adjacency_to_triu(adj)), bits)
    assert np.array_equal(unpack_adjacency(pack_adjacency(adj[3])), adj[3])
    # bits differ for matrices that differ in a single entry
    other = adj[0].copy()
    other[0, 26] = other[26, 0] = 1 - other[0, 26]
    assert not np.array_equal(pack_adjacency(other), bits[0])


def test_pack_ignores_the_diagonal():
    adj = random_symmetric(np.random.default_rng(1), 4)
    with_diag = adj.copy()
    with_diag[:, np.arange(27), np.arange(27)] = 1
    assert np.array_equal(pack_adjacency(with_diag), pack_adjacency(adj))


def test_corpus_accessors(built):
    c = built[2]
    assert c.adjacency().shape == (len(c), 27, 27)
    assert c.offsets().shape == (len(c), 27, 3) and c.offsets().dtype == np.float64
    t = c.truss(4)
    assert np.array_equal(t.adjacency, c.adjacency()[4])
    assert np.array_equal(t.offsets, c.offsets()[4])
    s = c.subset([4, 0])
    assert len(s) == 2 and s.truss(0) == t and np.array_equal(s.stiffness[1], c.stiffness[0])


# ------------------------------------------------------------------ build
def test_build_produces_unique_valid_lattices(built):
    root, manifest, c = built
    assert len(c) >= 30
    hashes = {c.truss(i).canonical_hash() for i in range(len(c))}
    assert len(hashes) == len(c)
    assert all(c.truss(i).validate() == [] for i in range(len(c)))
    assert c.adj.dtype == np.uint8 and c.offset.dtype == np.float32
    assert c.stiffness.dtype == np.float64 and c.curve is None
    assert np.all(np.isfinite(c.stiffness))
    assert np.all(c.stiffness[:, [0, 3, 5, 6, 7, 8]] > 0)  # C11, C22, C33, C44, C55, C66


def test_manifest_counts_match_the_shards(built):
    root, manifest, c = built
    assert manifest == json.loads((root / MANIFEST).read_text())
    files = sorted((root / "shards").glob("shard-*.npz"))
    assert [f.name for f in files] == [f"shard-{k:05d}.npz" for k in range(len(files))]
    assert set(manifest["shards"]) == {str(k) for k in range(len(files))}
    rows = 0
    for k, f in enumerate(files):
        d = read_shard(f)
        counts = json.loads(str(d["counts"]))
        assert counts == manifest["shards"][str(k)]
        assert counts["labelled"] == len(d["adj"]) == len(d["offset"]) == len(d["stiffness"])
        assert counts["generated"] == BUILD["shard_size"]
        assert counts["generated"] == counts["labelled"] + sum(
            v for key, v in counts.items() if key.startswith("dropped_"))
        rows += len(d["adj"])
    assert manifest["counts"]["labelled"] == rows
    assert manifest["counts"]["unique"] == len(c)
    assert manifest["n_requested"] == 30
    assert manifest["seed"] == 0 and manifest["density"] == 0.15
    assert manifest["material"] == {"E_s": 1.0, "nu_s": 0.3}


def test_labels_are_the_fe_stiffness_of_the_stored_offsets(built):
    c = built[2]
    for i in (0, 7, len(c) - 1):
        t = c.truss(i)
        # the stored float32 offsets are exactly what was labelled
        assert np.array_equal(t.free_offsets, c.offset[i].astype(np.float64))
        np.testing.assert_allclose(c.stiffness[i], homogenize(t).S, rtol=1e-12, atol=1e-15)


def test_rerun_of_a_finished_build_does_nothing(copy_of_built, built):
    before = shard_state(copy_of_built)
    manifest = build_corpus(copy_of_built, workers=1, **BUILD)
    assert shard_state(copy_of_built) == before
    assert manifest["counts"] == built[1]["counts"]
    assert_same_corpus(load_corpus(copy_of_built), built[2])


def test_resume_rebuilds_only_a_deleted_shard(copy_of_built, built):
    before = shard_state(copy_of_built)
    os.remove(shard_path(copy_of_built, 1))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        manifest = build_corpus(copy_of_built, workers=1, **BUILD)
        after_build = torch.get_num_threads()
    finally:
        torch.set_num_threads(threads)
    assert after_build == 2  # the in-process build leaves the caller's thread setting alone
    after = shard_state(copy_of_built)
    assert set(after) == set(before)  # shard 1 again, no new shard 3 instead
    for name in before:
        if name != "shard-00001.npz":
            assert after[name] == before[name]
    assert manifest["counts"] == built[1]["counts"]
    assert_same_corpus(load_corpus(copy_of_built), built[2])


def test_resume_cleans_interrupted_writes_and_corrupt_shards(copy_of_built, built):
    root = copy_of_built
    tmp = root / "shards" / "shard-00001.npz.tmp.npz"
    tmp.write_bytes(b"half a zip file")
    shard_path(root, 1).write_bytes(os.urandom(300))  # garbage where shard 1 was
    with pytest.raises(ValueError, match="corrupt shard"):
        read_shard(shard_path(root, 1))
    good = {k: (shard_path(root, k).stat().st_mtime_ns, shard_path(root, k).read_bytes())
            for k in (0, 2)}
    build_corpus(root, workers=1, **BUILD)
    assert not tmp.exists()
    for k, (mtime, data) in good.items():
        assert shard_path(root, k).stat().st_mtime_ns == mtime
        assert shard_path(root, k).read_bytes() == data
    read_shard(shard_path(root, 1))  # readable again
    assert_same_corpus(load_corpus(root), built[2])


def test_shard_on_disk_but_missing_from_the_manifest_is_kept(copy_of_built, built):
    root = copy_of_built
    m = json.loads((root / MANIFEST).read_text())
    del m["shards"]["2"]  # interrupted between the shard rename and the manifest write
    (root / MANIFEST).write_text(json.dumps(m))
    before = shard_state(root)
    manifest = build_corpus(root, workers=1, **BUILD)
    assert shard_state(root) == before
    assert manifest["shards"]["2"] == built[1]["shards"]["2"]


@pytest.mark.parametrize("change", [{"seed": 1}, {"density": 0.2}, {"shard_size": 10},
                                    {"config": {"iterations": 5}}])
def test_resume_with_other_parameters_is_refused(copy_of_built, change):
    before = shard_state(copy_of_built)
    key = next(iter(change))
    with pytest.raises(ValueError, match=key if key != "config" else "generator"):
        build_corpus(copy_of_built, workers=1, **{**BUILD, **change})
    assert shard_state(copy_of_built) == before


def test_build_is_reproducible_whatever_the_number_of_workers(built, tmp_path):
    root = tmp_path / "b"
    build_corpus(root, workers=2, **BUILD)
    assert_same_corpus(load_corpus(root), built[2])
    for k in range(3):
        a, b = read_shard(shard_path(built[0], k)), read_shard(shard_path(root, k))
        for key in ("adj", "offset", "stiffness"):
            assert np.array_equal(a[key], b[key])


def test_other_seed_gives_another_corpus(built, tmp_path):
    root = tmp_path / "c"
    build_corpus(root, workers=1, **{**BUILD, "n": 5, "shard_size": 5, "seed": 1})
    other = load_corpus(root)
    mine = {built[2].truss(i).canonical_hash() for i in range(len(built[2]))}
    assert not {other.truss(i).canonical_hash() for i in range(len(other))} & mine


# ------------------------------------------------------------------ loading
def _rows(rng, n):
    adj = pack_adjacency(random_symmetric(rng, n))
    off = rng.uniform(-0.5, 0.5, (n, 27)).astype(np.float32)
    stiff = rng.uniform(0.0, 0.1, (n, 9))
    return {"adj": adj, "offset": off, "stiffness": stiff}


def test_load_corpus_drops_duplicates_across_shards(tmp_path):
    rng = np.random.default_rng(3)
    a = _rows(rng, 5)
    b = _rows(rng, 4)
    b = {k: np.concatenate([v[:2], a[k][[3]], v[2:]]) for k, v in b.items()}  # row 2 = a[3]
    b["stiffness"][2] += 1.0  # labels of a duplicate do not make it a new lattice
    (tmp_path / MANIFEST).write_text("{}")
    write_shard(shard_path(tmp_path, 0), a)
    write_shard(shard_path(tmp_path, 1), b)
    c = load_corpus(tmp_path)
    assert len(c) == 9
    keep_b = [0, 1, 3, 4]
    assert np.array_equal(c.adj, np.concatenate([a["adj"], b["adj"][keep_b]]))
    assert np.array_equal(c.offset, np.concatenate([a["offset"], b["offset"][keep_b]]))
    assert np.array_equal(c.stiffness, np.concatenate([a["stiffness"], b["stiffness"][keep_b]]))
    assert np.array_equal(load_corpus(tmp_path, limit=6).adj, c.adj[:6])
    # the manifest describes the whole build: a cut corpus records its limit, a whole one not
    assert load_corpus(tmp_path, limit=6).meta["limit"] == 6
    assert "limit" not in load_corpus(tmp_path, limit=9).meta and "limit" not in c.meta
    # a lattice with the same beams but other offsets is not a duplicate
    b2 = {k: v.copy() for k, v in b.items()}
    b2["offset"][2, 0] = np.float32(0.123)
    write_shard(shard_path(tmp_path, 1), b2)
    assert len(load_corpus(tmp_path)) == 10


def test_load_corpus_rejects_non_corpora(tmp_path):
    with pytest.raises(ValueError, match="not a corpus"):
        load_corpus(tmp_path)
    (tmp_path / MANIFEST).write_text("{}")
    with pytest.raises(ValueError, match="no shards"):
        load_corpus(tmp_path)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="corrupt"):
        load_corpus(tmp_path / "junk.npz")


def test_read_and_write_shard(tmp_path):
    rows = _rows(np.random.default_rng(4), 3)
    p = write_shard(tmp_path / "x" / "s.npz", rows)
    assert p.exists() and not list(p.parent.glob("*.tmp*"))
    d = read_shard(p)
    assert all(np.array_equal(d[k], rows[k]) for k in rows)
    write_shard(tmp_path / "bad.npz", {"adj": rows["adj"]})
    with pytest.raises(ValueError, match="lacks"):
        read_shard(tmp_path / "bad.npz")


def _corpus(n=6, curve=False, seed=5):
    rng = np.random.default_rng(seed)
    r = _rows(rng, n)
    return Corpus(r["adj"], r["offset"], r["stiffness"],
                  rng.uniform(0, 0.01, (n, 13)) if curve else None, {"note": "test"})


@pytest.mark.parametrize("field, value, match", [
    ("stiffness", np.nan, "NaN"),
    ("stiffness", np.inf, "NaN"),
    ("offset", np.nan, "offsets"),
    ("offset", 0.7, "outside"),
    ("curve", np.nan, "curve"),
])
def test_validate_arrays_rejects_bad_values(field, value, match):
    c = _corpus(curve=True)
    c.validate_arrays()
    arr = getattr(c, field).astype(np.float64)
    arr[2, 1] = value
    setattr(c, field, arr)
    with pytest.raises(ValueError, match=match):
        c.validate_arrays()


@pytest.mark.parametrize("field, shape", [
    ("adj", (6, 43)), ("offset", (6, 26)), ("offset", (5, 27)), ("stiffness", (6, 8)),
    ("curve", (6, 12)),
])
def test_validate_arrays_rejects_wrong_shapes(field, shape):
    c = _corpus(curve=True)
    setattr(c, field, np.zeros(shape, dtype=getattr(c, field).dtype))
    with pytest.raises(ValueError, match=field):
        c.validate_arrays()


def test_validate_arrays_rejects_wrong_adjacency_dtype():
    c = _corpus()
    c.adj = c.adj.astype(np.int64)
    with pytest.raises(ValueError, match="uint8"):
        c.validate_arrays()


def test_save_compact_round_trip(built, tmp_path):
    c = built[2]
    p = save_compact(c, tmp_path / "corpus.npz")
    back = load_corpus(p)
    assert np.array_equal(back.adj, c.adj)
    assert back.offset.dtype == np.float32 and np.array_equal(back.offset, c.offset)
    assert back.stiffness.dtype == np.float64
    assert_same_corpus(back, c)  # the shipped format keeps float64 labels exactly
    assert back.meta["seed"] == c.meta["seed"]
    small = load_corpus(save_compact(c, tmp_path / "f32.npz", stiffness_dtype=np.float32))
    assert np.array_equal(small.stiffness, c.stiffness.astype(np.float32).astype(np.float64))
    assert np.array_equal(load_corpus(p, limit=4).adj, c.adj[:4])
    # as for a build directory, a cut corpus records its limit, a whole one not
    assert load_corpus(p, limit=4).meta["limit"] == 4
    assert "limit" not in load_corpus(p, limit=len(c)).meta
    assert load_corpus(p, limit=4).meta["seed"] == c.meta["seed"]


def test_unpack_compact_resumes_a_build_as_if_it_had_never_been_packed(built, tmp_path):
    """A build packed after its first 2 shards, unpacked and resumed to n=30 gives the very
    corpus of the uninterrupted build (the fixture's), shard for shard."""
    from gnn_truss.corpus import unpack_compact
    part = tmp_path / "part"
    build_corpus(part, workers=1, **{**BUILD, "n": 20})  # shards of 12: stops after 2
    assert len(list((part / "shards").glob("shard-*.npz"))) == 2
    packed = save_compact(load_corpus(part), tmp_path / "part.npz")
    out = tmp_path / "unpacked"
    m = unpack_compact(packed, out)
    assert sorted(m["shards"], key=int) == ["0", "1"]
    for k in range(2):
        a, b = read_shard(shard_path(part, k)), read_shard(shard_path(out, k))
        for key in ("adj", "offset", "stiffness"):
            assert np.array_equal(a[key], b[key])
    build_corpus(out, workers=1, **BUILD)  # the fixture's n: resumes at shard 2
    assert_same_corpus(load_corpus(out), built[2])
    with pytest.raises(ValueError, match="already holds a corpus"):
        unpack_compact(packed, out)  # never writes over shards


def test_unpack_compact_refuses_files_it_cannot_split(tmp_path):
    from gnn_truss.corpus import unpack_compact
    c = _corpus(curve=True)  # meta without a build manifest
    with pytest.raises(ValueError, match="no build manifest"):
        unpack_compact(save_compact(c, tmp_path / "c.npz"), tmp_path / "o")
    c.meta = {"shards": {"0": {"labelled": len(c) - 1}}}  # a duplicate dropped on packing
    with pytest.raises(ValueError, match="add up to"):
        unpack_compact(save_compact(c, tmp_path / "d.npz"), tmp_path / "o2")
    assert not (tmp_path / "o2" / "shards").exists()


def test_save_compact_round_trip_with_curves(tmp_path):
    c = _corpus(curve=True)
    back = load_corpus(save_compact(c, tmp_path / "c.npz", stiffness_dtype=np.float64))
    assert np.array_equal(back.curve, c.curve) and back.meta == {"note": "test"}
    assert np.array_equal(back.adj, c.adj) and np.array_equal(back.offset, c.offset)


def test_shipped_curve_corpus_extends_the_previous_release():
    """datasets/nonlinear/raw/corpus.npz grew at its end only: its first 15,799 lattices are
    the corpus of the previous release (their curve fingerprint is the one the previous curve
    checkpoint, git 4f6e96b, recorded), its first 29,698 the corpus of sessions 40-43 (the
    fingerprint G3, git 06fdd57, recorded), and all 39,996 are unique lattices with finite,
    positive curves and the build parameters in the metadata."""
    from pathlib import Path

    from gnn_truss.exploration import corpus_fingerprint
    root = Path(__file__).resolve().parents[1] / "datasets" / "nonlinear"
    corpus = load_corpus(root / "raw" / "corpus.npz")
    assert len(corpus) == 39996
    assert corpus_fingerprint(corpus, "curve", limit=15799) == \
        "2a5b8238623a19747df70788283fddca5562724b"
    assert corpus_fingerprint(corpus, "curve", limit=29698) == \
        "eda385816e0d4b020d1b582ff57a7f60d9a4316f"
    assert corpus_fingerprint(corpus, "curve") != corpus_fingerprint(corpus, "curve", 15799)
    assert np.isfinite(corpus.curve).all() and (corpus.curve > 0).all()
    rows = {bytes(a) + bytes(o) for a, o in zip(corpus.adj, corpus.offset)}
    assert len(rows) == len(corpus)  # unique lattices
    for key in ("seed", "shard_size", "density", "material", "generator", "nonlinear",
                "generator_version"):
        assert key in corpus.meta, key
    assert corpus.meta["seed"] == 1 and corpus.meta["nonlinear"]


def test_shipped_buckling_features_are_the_fe_of_the_build():
    """datasets/nonlinear/buckling.npz holds gnn_truss.fe.buckling.linear_buckling (3 modes) of
    the lattices of the shipped curve corpus, row for row: recomputed for four rows (the
    softest lattice, whose pre-buckling state converges slowest, and the last lattice, past the
    previous release's 15,799, among them); the modulus column is E3 of the stored linear
    stiffness labels (rel 1e-9)."""
    from pathlib import Path

    from gnn_truss.fe.buckling import linear_buckling
    from gnn_truss.properties import engineering_constants, stiffness_from_vector
    root = Path(__file__).resolve().parents[1] / "datasets" / "nonlinear"
    build = load_corpus(root / "raw" / "corpus.npz")
    z = np.load(root / "buckling.npz")
    assert z["strains"].shape == (len(build), 3) and z["modulus"].shape == (len(build),)
    assert np.all(z["strains"] > 0) and np.all(np.diff(z["strains"], axis=1) >= 0)
    softest = int(np.argmin(z["modulus"]))
    for i in (0, 7000, softest, len(build) - 1):
        b = linear_buckling(build.truss(i))
        assert z["strains"][i, 0] == pytest.approx(b.strains[0], rel=1e-6), i
        assert z["modulus"][i] == pytest.approx(b.modulus, rel=1e-9), i
    E3 = engineering_constants(stiffness_from_vector(build.stiffness))["E3"]
    np.testing.assert_allclose(z["modulus"], E3, rtol=1e-9)


def test_buckling_features_are_sharded_and_resume(tmp_path, monkeypatch, caplog):
    """``buckling_features`` gives the rows of the shipped ``buckling.npz`` (rel 1e-9); a rerun
    recomputes only a deleted and a damaged shard; a work directory holding another corpus'
    shard is refused and the shard is left as it was; when the corpus has grown, its partial
    last shard is completed."""
    import logging
    from pathlib import Path

    import gnn_truss.fe.buckling as fb
    from gnn_truss.corpus import buckling_features
    root = Path(__file__).resolve().parents[1] / "datasets" / "nonlinear"
    shipped = np.load(root / "buckling.npz")
    corpus = root / "raw" / "corpus.npz"
    work = tmp_path / "work"
    res = buckling_features(corpus, work, shard_size=2, limit=5)
    assert res["ok"].all() and res["strains"].shape == (5, 3)
    np.testing.assert_allclose(res["strains"][:, 0], shipped["strains"][:5, 0], rtol=1e-9)
    np.testing.assert_allclose(res["modulus"], shipped["modulus"][:5], rtol=1e-9)
    shards = sorted(work.glob("buckling-*.npz"))
    assert len(shards) == 3
    computed = []
    original = fb.buckling_batch
    monkeypatch.setattr(fb, "buckling_batch",
                        lambda ts, **kw: (computed.append(len(ts)), original(ts, **kw))[1])
    shards[0].unlink()
    shards[2].write_bytes(b"not a zip file")
    with caplog.at_level(logging.WARNING):
        again = buckling_features(corpus, work, shard_size=2, limit=5)
    assert sorted(computed) == [1, 2]  # shard 0 (2 lattices) and the damaged shard 2 (1)
    assert "recomputing" in caplog.text
    np.testing.assert_array_equal(again["strains"], res["strains"])
    before = [p.read_bytes() for p in shards]
    with pytest.raises(ValueError, match="other lattices"):
        buckling_features(corpus, work, shard_size=3, limit=5)  # other rows in shard 0
    assert [p.read_bytes() for p in shards] == before
    # the corpus grows past its partial last shard (rows 4..5 of shard 2 hold row 4 only):
    # that shard is completed, the others are kept
    computed.clear()
    with caplog.at_level(logging.WARNING):
        grown = buckling_features(corpus, work, shard_size=2, limit=6)
    assert computed == [2] and "the corpus grew" in caplog.text
    assert [p.read_bytes() for p in shards[:2]] == before[:2]
    np.testing.assert_array_equal(grown["strains"][:5], res["strains"])
    np.testing.assert_allclose(grown["modulus"][5], shipped["modulus"][5], rtol=1e-9)
    with pytest.raises(ValueError, match="shard_size"):
        buckling_features(corpus, work, shard_size=0)
    with pytest.raises(ValueError, match="num_modes"):  # refused even when no shard is computed
        buckling_features(corpus, work, shard_size=2, limit=5, num_modes=0)


def test_buckling_features_reuse_an_earlier_table(tmp_path, monkeypatch):
    """With ``reuse``, a shard takes the rows of its lattices that an earlier table holds
    (matched by hash, in any order) and analyses only the rest; a row that failed there is
    analysed again; a table with another number of modes, or no table, is refused."""
    from pathlib import Path

    import gnn_truss.fe.buckling as fb
    from gnn_truss.corpus import buckling_features, row_hashes, write_shard
    root = Path(__file__).resolve().parents[1] / "datasets" / "nonlinear"
    shipped = dict(np.load(root / "buckling.npz"))
    corpus = load_corpus(root / "raw" / "corpus.npz", limit=5)
    order = np.array([2, 0, 1])  # rows 0..2 of the shipped table, shuffled
    table = write_shard(tmp_path / "old.npz", {k: v[order] for k, v in shipped.items()})
    computed = []
    original = fb.buckling_batch
    monkeypatch.setattr(fb, "buckling_batch",
                        lambda ts, **kw: (computed.append(len(ts)), original(ts, **kw))[1])
    res = buckling_features(corpus, tmp_path / "w1", shard_size=2, reuse=table)
    assert computed == [1, 1] and res["reused"] == 3  # rows 3 and 4 only, in shards 1 and 2
    assert res["ok"].all()
    np.testing.assert_array_equal(res["strains"][:3], shipped["strains"][:3])
    np.testing.assert_array_equal(res["modulus"][:3], shipped["modulus"][:3])
    np.testing.assert_allclose(res["strains"][3:, 0], shipped["strains"][3:5, 0], rtol=1e-9)
    np.testing.assert_array_equal(res["row_hash"], row_hashes(corpus.adj, corpus.offset))
    # a row that failed in the earlier table is analysed again
    failed = {k: v[order].copy() for k, v in shipped.items()}
    failed["ok"][2] = False  # row 1 of the corpus
    failed["strains"][2] = np.nan
    computed.clear()
    again = buckling_features(corpus, tmp_path / "w2", shard_size=2,
                              reuse=write_shard(tmp_path / "failed.npz", failed))
    assert computed == [1, 1, 1] and again["reused"] == 2
    np.testing.assert_allclose(again["strains"], res["strains"], rtol=1e-9)
    with pytest.raises(ValueError, match=r"need strains \[M, 2\]"):
        buckling_features(corpus, tmp_path / "w3", num_modes=2, reuse=table)
    with pytest.raises(ValueError, match="cannot read the buckling table"):
        buckling_features(corpus, tmp_path / "w3", reuse=tmp_path / "missing.npz")
    signed = {k: v[order] for k, v in shipped.items()}
    signed["row_hash"] = signed["row_hash"].astype(np.int64)  # would silently match nothing
    with pytest.raises(ValueError, match="uint64"):
        buckling_features(corpus, tmp_path / "w3", reuse=write_shard(tmp_path / "s.npz", signed))
    # a lattice listed twice, analysed and then failed (a table of two runs): the analysed
    # row is read, by reuse and by corpus_descriptors alike
    from gnn_truss.corpus import corpus_descriptors
    twice = {k: np.concatenate([shipped[k][1:2], failed[k]]) for k in shipped}
    twice_path = write_shard(tmp_path / "twice.npz", twice)
    computed.clear()
    fourth = buckling_features(corpus, tmp_path / "w5", shard_size=2, reuse=twice_path)
    assert computed == [1, 1] and fourth["reused"] == 3
    np.testing.assert_array_equal(fourth["strains"][1], shipped["strains"][1])
    desc = corpus_descriptors(twice_path, load_corpus(root / "raw" / "corpus.npz", limit=3))
    assert np.isfinite(desc).all()
    # a table written without `ok`: its finite rows count as analysed
    no_ok = {k: v[order] for k, v in shipped.items() if k != "ok"}
    computed.clear()
    third = buckling_features(corpus, tmp_path / "w4", shard_size=2,
                              reuse=write_shard(tmp_path / "no_ok.npz", no_ok))
    assert computed == [1, 1] and third["reused"] == 3
    np.testing.assert_array_equal(third["modulus"], res["modulus"])


def test_cli_data_buckle(tmp_path, capsys):
    from pathlib import Path

    from gnn_truss import cli
    corpus = Path(__file__).resolve().parents[1] / "datasets" / "nonlinear" / "raw" / "corpus.npz"
    out = tmp_path / "b.npz"
    assert cli.main(["data", "buckle", str(corpus), str(out), "--limit", "3", "--shard-size",
                     "2", "--no-progress"]) == 0
    z = np.load(out)
    assert z["strains"].shape == (3, 3) and z["ok"].all()
    assert (tmp_path / "b_shards" / "buckling-00001.npz").exists()
    assert "wrote the buckling of 3 lattices" in capsys.readouterr().out
    # extended in place to 4 lattices in the same work folder: shard 0 is kept, the partial
    # shard 1 is completed with its row 2 taken from the table and row 3 analysed
    assert cli.main(["data", "buckle", str(corpus), str(out), "--limit", "4", "--shard-size",
                     "2", "--reuse", str(out), "--no-progress"]) == 0
    assert "1 rows taken from" in capsys.readouterr().out
    z4 = np.load(out)
    assert z4["strains"].shape == (4, 3) and np.array_equal(z4["strains"][:3], z["strains"])
    # a fresh work folder takes all 4 rows from the table
    assert cli.main(["data", "buckle", str(corpus), str(tmp_path / "c.npz"), "--limit", "4",
                     "--reuse", str(out), "--no-progress"]) == 0
    assert "4 rows taken from" in capsys.readouterr().out
    assert np.array_equal(np.load(tmp_path / "c.npz")["strains"], z4["strains"])
    assert cli.main(["data", "buckle", str(corpus), str(tmp_path / "b.txt")]) == 2
