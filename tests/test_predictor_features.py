"""Tests of the curve predictor that also reads the buckling of the lattice it reads
(``model.predictor_features: buckling``): the descriptors (gnn_truss.fe.buckling), the table
matched to a corpus by lattice hash (gnn_truss.corpus), the symmetry-invariant cache key, the
feature branch, the model's FE features of decoded lattices, training, evaluation and the
design loop.

Reference values: :func:`linear_buckling` itself (the descriptors are its numbers in logs),
rows of the shipped table recomputed by FE, and the unbranched predictor (the branch starts at
zero and drops out for a lattice the FE cannot analyse).

Default-run cost: about 40 s on one core.
"""
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from gnn_truss import design_space as ds
from gnn_truss.corpus import (corpus_descriptors, load_corpus, row_hashes, save_compact,
                              write_shard)
from gnn_truss.fe.buckling import (DESCRIPTOR_NAMES, buckling_descriptors, lattice_descriptors,
                                   linear_buckling)
from gnn_truss.generator import generate, shard_rng
from gnn_truss.graph import truss_to_data
from gnn_truss.nn import GraphPropertyPredictor, build_model
from gnn_truss.symmetry import (AXIS_PERMUTATIONS, allowed_symmetries, canonical_keys,
                                permute_truss)
from gnn_truss.truss import Truss

REPO = Path(__file__).resolve().parents[1]
NONLINEAR = REPO / "datasets" / "nonlinear" / "raw" / "corpus.npz"
TABLE = REPO / "datasets" / "nonlinear" / "buckling.npz"

SMALL = {"topology": 3, "shared": 5, "geometry": 2, "hidden": 16, "layers": 2, "readout": 32,
         "decoder_hidden": [16, 32], "offset_hidden": [16], "edge_readout": True,
         "physics_readout": True, "predictor_input": "decoded", "predictor_gnn_hidden": 16,
         "predictor_gnn_layers": 2, "predictor_gnn_readout": 32, "num_targets": 13}
FEATURED = {**SMALL, "predictor_features": "buckling"}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def lattices():
    """Three small generator lattices (seed 2)."""
    return generate(3, shard_rng(2, 0))


def _mechanism():
    adj = np.zeros((27, 27), dtype=bool)
    adj[0, 13] = adj[13, 0] = True  # a star of half BCC struts: no stiffness
    return Truss(adj, np.zeros((27, 3)))


# ------------------------------------------------------------------ descriptors
def test_descriptors_by_hand():
    s = np.array([[0.02, 0.03, np.inf], [0.5, 2.0, 3.0], [np.nan, np.nan, np.nan]])
    m = np.array([0.01, 0.2, np.nan])
    d = buckling_descriptors(s, m)
    assert d.shape == (3, len(DESCRIPTOR_NAMES))
    np.testing.assert_allclose(d[0], np.log([0.02, 0.03, 1.0, 0.01, 0.01 * 0.02]), rtol=1e-14)
    np.testing.assert_allclose(d[1], np.log([0.5, 1.0, 1.0, 0.2, 0.1]), rtol=1e-14)
    assert np.all(np.isnan(d[2]))
    for bad_s, bad_m in ((s[:, :2], m), (s, m[:2]), (-s, m), (s, -m)):
        with pytest.raises(ValueError):
            buckling_descriptors(bad_s, bad_m)


def test_lattice_descriptors_are_the_buckling_analysis(lattices, caplog):
    """Rows are :func:`linear_buckling` (three modes, z) in logs; a mechanism is a NaN row."""
    with caplog.at_level(logging.INFO):
        d = lattice_descriptors([lattices[0], _mechanism(), lattices[1]])
    assert np.all(np.isnan(d[1]))
    assert "1 of 3 lattices could not be analysed (first: lattice 1)" in caplog.text
    assert "WARNING" not in caplog.text  # expected for decoded lattices: no warning per lattice
    for row, t in ((0, lattices[0]), (2, lattices[1])):
        b = linear_buckling(t, num_modes=3)
        expect = buckling_descriptors(b.strains[None], np.array([b.modulus]))[0]
        np.testing.assert_allclose(d[row], expect, rtol=1e-9, atol=1e-12)


def test_shipped_table_matches_fe_on_decoded_style_input():
    """Three rows of the shipped table equal the analysis the model runs on decoded lattices
    (no validity check, offsets through float32 as the decoder gives them). Row 24 has a
    triple lowest critical strain (symmetric modes, found by the dense eigensolver too), which
    the table before the inertia check had given once only."""
    c = load_corpus(NONLINEAR, limit=40, quiet=True)
    table = corpus_descriptors(TABLE, c)
    assert table.shape == (40, 5) and np.all(np.isfinite(table))
    np.testing.assert_allclose(table[24, :3], table[24, 0], rtol=1e-9)
    rows = [3, 17, 24]
    d = lattice_descriptors([(ds.triu_to_adjacency(
        np.unpackbits(c.adj[i])[:ds.NUM_PAIRS]), ds.unpack_offsets(
        c.offset[i].astype(np.float64))) for i in rows])
    np.testing.assert_allclose(d, table[rows], rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------ table <-> corpus
def test_row_hashes_tell_lattices_apart_and_see_float32():
    c = load_corpus(NONLINEAR, limit=50, quiet=True)
    h = row_hashes(c.adj, c.offset)
    assert h.dtype == np.uint64 and len(np.unique(h)) == 50
    np.testing.assert_array_equal(row_hashes(c.adj, c.offset.astype(np.float64)), h)
    moved = c.offset.copy()
    moved[7, 3] += 1e-3
    h2 = row_hashes(c.adj, moved)
    assert h2[7] != h[7] and np.array_equal(np.delete(h2, 7), np.delete(h, 7))
    with pytest.raises(ValueError, match="adj"):
        row_hashes(c.adj[:3], c.offset)


def test_corpus_descriptors_match_rows_by_hash(tmp_path):
    """A table in another order and with extra rows gives each corpus lattice its own row;
    a table that lacks a lattice, has no hashes or is corrupt is refused."""
    c = load_corpus(NONLINEAR, limit=30, quiet=True)
    rng = np.random.default_rng(0)
    strains = np.sort(rng.uniform(0.01, 0.2, (40, 3)), axis=1)
    modulus = rng.uniform(1e-3, 1e-2, 40)
    other = load_corpus(NONLINEAR, limit=40, quiet=True)
    keys = row_hashes(other.adj, other.offset)
    order = rng.permutation(40)
    path = tmp_path / "b.npz"
    write_shard(path, {"strains": strains[order], "modulus": modulus[order],
                       "row_hash": keys[order]})
    got = corpus_descriptors(path, c)
    np.testing.assert_allclose(got, buckling_descriptors(strains[:30], modulus[:30]))
    keep = order != 12  # corpus lattice 12 left out
    write_shard(path, {"strains": strains[order][keep], "modulus": modulus[order][keep],
                       "row_hash": keys[order][keep]})
    with pytest.raises(ValueError, match="lacks 1 of the corpus' 30 lattices.*row 12"):
        corpus_descriptors(path, c)
    write_shard(path, {"strains": strains, "modulus": modulus})
    with pytest.raises(ValueError, match="row_hash"):
        corpus_descriptors(path, c)
    path.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read the buckling table"):
        corpus_descriptors(path, c)


def test_shipped_table_covers_the_shipped_curve_corpus():
    table = corpus_descriptors(TABLE, load_corpus(NONLINEAR, quiet=True))
    assert table.shape == (39996, 5)
    assert np.isfinite(table).all(1).mean() > 0.999


# ------------------------------------------------------------------ cache key
def test_canonical_keys_are_shared_by_the_copies_that_keep_z(lattices):
    t = lattices[0]
    def key(tr):
        return canonical_keys(tr.adjacency[ds.TRIU_I, ds.TRIU_J][None],
                              tr.free_offsets[None], "curve")[0]
    k0 = key(t)
    for perm, flip in allowed_symmetries("curve", True):
        assert key(permute_truss(t, perm, flip)) == k0
    moved = [key(permute_truss(t, p)) for p in AXIS_PERMUTATIONS if p[2] != 2]
    assert any(k != k0 for k in moved)  # z moved: another lattice for a z curve
    shifted = Truss(t.adjacency, t.offsets + 1e-3 * (t.offsets != 0))
    assert key(shifted) != k0
    with pytest.raises(ValueError, match="adj"):
        canonical_keys(np.zeros((1, 10)), np.zeros((1, 27)))


# ------------------------------------------------------------------ the predictor
def test_feature_branch_starts_at_zero_and_drops_out_for_nan(lattices):
    plain = GraphPropertyPredictor(13, hidden=16, layers=2, readout=32).eval()
    feat = GraphPropertyPredictor(13, hidden=16, layers=2, readout=32, num_features=5).eval()
    missing = feat.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("features.") for k in missing)
    batch = Batch.from_data_list([truss_to_data(t) for t in lattices])
    f = torch.randn(3, 5)
    with torch.no_grad():
        assert torch.equal(feat(batch, f), plain(batch))  # zero last layer
        torch.nn.init.normal_(feat.features.net[-1].weight)
        y = feat(batch, f)
        assert not torch.allclose(y, plain(batch))
        f_nan = f.clone()
        f_nan[1, 2] = float("nan")
        y_nan = feat(batch, f_nan)
        assert torch.equal(y_nan[1], plain(batch)[1])  # head alone
        assert torch.equal(y_nan[[0, 2]], y[[0, 2]])
        batch.feat = f
        assert torch.equal(feat(batch), y)  # reads batch.feat
        adj = torch.tensor(np.stack([t.adjacency for t in lattices]), dtype=torch.float32)
        off = torch.tensor(np.stack([t.free_offsets for t in lattices]), dtype=torch.float32)
        assert torch.allclose(feat.forward_dense(adj, off, f), y, atol=1e-5)
    with pytest.raises(ValueError, match="reads 5 features"):
        feat.forward_dense(adj, off)
    with pytest.raises(ValueError, match="reads no lattice features"):
        plain.forward_dense(adj, off, f)
    with pytest.raises(ValueError, match=r"features \[3, 5\]"):
        feat.forward_dense(adj, off, f[:, :4])


def test_feature_normalization_standardises_over_finite_rows():
    net = GraphPropertyPredictor(13, hidden=16, layers=2, readout=32, num_features=2)
    f = torch.tensor([[1.0, 10.0], [3.0, 30.0], [float("nan"), 0.0], [2.0, 20.0]])
    net.features.set_normalization(f)
    torch.testing.assert_close(net.features.mean, torch.tensor([2.0, 20.0]))
    torch.testing.assert_close(net.features.std, torch.tensor([1.0, 10.0]))
    assert "features.mean" in net.state_dict()  # saved with the weights
    with pytest.raises(ValueError, match="constant"):
        net.features.set_normalization(torch.ones(4, 2))
    with pytest.raises(ValueError, match="at least two"):
        net.features.set_normalization(f[2:3])


@pytest.mark.parametrize("extra, match", [
    ({"predictor_features": "euler"}, "predictor_features must be one of"),
    ({"predictor_features": "buckling", "num_targets": 9}, "num_targets 13"),
])
def test_build_model_rejects_bad_feature_settings(extra, match):
    with pytest.raises(ValueError, match=match):
        build_model({**SMALL, **extra})
    latent = {k: v for k, v in SMALL.items() if not k.startswith("predictor_")}
    with pytest.raises(ValueError, match="predictor_input 'decoded'"):
        build_model({**latent, "predictor_features": "buckling"})


def _pin(model, truss):
    """Decoders that output ``truss`` whatever the latent."""
    a, o = model.adj_decoder.net[-1], model.offset_decoder.net[-1]
    triu = torch.tensor(truss.adjacency[ds.TRIU_I, ds.TRIU_J], dtype=torch.float32)
    with torch.no_grad():
        a.weight.zero_()
        a.bias.copy_(6.0 * (2.0 * triu - 1.0))
        o.weight.zero_()
        o.bias.copy_(torch.atanh(2.0 * torch.tensor(truss.free_offsets, dtype=torch.float32)))


def test_model_features_of_decoded_lattices_are_fe_and_cached(lattices, monkeypatch):
    """``predict(mu)`` runs the FE on the decoded lattice once (then the cache answers, also for
    its symmetric copies) and equals the predictor given that lattice's descriptors."""
    from gnn_truss.fe import buckling
    model = build_model(FEATURED).eval()
    torch.nn.init.normal_(model.predictor.features.net[-1].weight, std=0.1)
    t = lattices[0]
    _pin(model, t)
    calls = []
    real = buckling.lattice_descriptors
    monkeypatch.setattr(buckling, "lattice_descriptors",
                        lambda tr, **kw: calls.append(len(tr)) or real(tr, **kw))
    mu = torch.randn(2, model.sizes.total)
    with torch.no_grad():
        y = model.predict(mu)
        assert calls == [1]  # two latents, one lattice
        A, off, _ = model.decode_lattice(mu, near_only=True)
        expect = lattice_descriptors([t])
        torch.testing.assert_close(model.lattice_features(A, off)[0].numpy(), expect[0])
        y2 = model.predictor.forward_dense(A, off, torch.tensor(np.repeat(expect, 2, 0)))
    torch.testing.assert_close(y, y2)
    p = permute_truss(t, (1, 0, 2), (1, 0, 0))  # a copy that keeps z
    f = model.lattice_features(torch.tensor(p.adjacency[None]),
                               torch.tensor(p.free_offsets[None]))
    assert calls == [1]
    np.testing.assert_allclose(f[0].numpy(), expect[0])
    with pytest.raises(ValueError, match="reads no lattice features"):
        build_model(SMALL).lattice_features(A, off)


def test_a_floating_strut_is_repaired_away_before_the_analysis():
    """A decoded lattice with a strut that touches nothing else is disconnected, which the FE
    refuses; its features are those of the lattice without that strut (which carries no
    load)."""
    import itertools
    from gnn_truss.exploration import light_repair
    model = build_model(FEATURED)
    for t in generate(6, shard_rng(2, 0)):
        free = np.flatnonzero(~t.adjacency.any(1))
        for i, j in itertools.combinations(free, 2):
            a = t.adjacency.copy()
            a[i, j] = a[j, i] = True
            if np.isnan(lattice_descriptors([(a, t.offsets)])).all():
                break
        else:
            continue
        break
    else:
        pytest.fail("no lattice with a floating strut found")
    assert light_repair(Truss(a, t.offsets))[0] == t
    f = model.lattice_features(torch.tensor(a[None]), torch.tensor(t.free_offsets[None]))
    np.testing.assert_allclose(f[0].numpy(), lattice_descriptors([t])[0], rtol=1e-9)


def test_a_decoded_mechanism_is_read_by_the_head_alone():
    model = build_model(FEATURED).eval()
    torch.nn.init.normal_(model.predictor.features.net[-1].weight, std=0.1)
    _pin(model, _mechanism())
    mu = torch.zeros(1, model.sizes.total)
    with torch.no_grad():
        A, off, _ = model.decode_lattice(mu, near_only=True)
        assert torch.isnan(model.lattice_features(A, off)).all()
        head = model.predictor.heads(model.predictor.dense_embedding(A, off))
        torch.testing.assert_close(model.predict(mu), head)


# ------------------------------------------------------------------ training and evaluation
@pytest.fixture(scope="module")
def curve_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("nl")
    (root / "raw").mkdir()
    save_compact(load_corpus(NONLINEAR, limit=120), root / "raw" / "corpus.npz")
    return root


def _cfg(root, out, **train_kw):
    return {"data": {"root": str(root), "target": "curve", "limit": 120,
                     "features": str(TABLE)},
            "model": dict(FEATURED),
            "train": {"epochs": 2, "batch_size": 32, "device": "cpu", "predictor_on": "graph",
                      "property_loss": "curve_range", "augment": "axes_mirrors", **train_kw},
            "out": str(out)}


@pytest.mark.parametrize("change, match", [
    (lambda c: c["data"].pop("features"), "go together"),
    (lambda c: c["model"].pop("predictor_features"), "go together"),
    (lambda c: c["train"].update(predictor_on="latent"), "predictor_on 'graph'"),
    (lambda c: c["data"].update(features=3), "data.features must be the path"),
])
def test_feature_config_is_checked(curve_root, tmp_path, change, match):
    from gnn_truss.training import validate_config
    cfg = _cfg(curve_root, tmp_path / "run")
    change(cfg)
    with pytest.raises(ValueError, match=match):
        validate_config(cfg)


def test_training_reads_the_table_and_evaluation_the_fe(curve_root, tmp_path):
    """The batches carry each lattice's row of the table (also after the symmetry
    augmentation), the branch is standardised over the training split, validation reads G on
    the true graphs, a run resumes, and the evaluation reads G with the FE features of the
    decoded lattices."""
    from torch_geometric.loader import DataLoader

    from gnn_truss.evaluation import evaluate_checkpoint
    from gnn_truss.symmetry import RandomAxisPermutation
    from gnn_truss.training import build_datasets, load_checkpoint, train, validate_config
    cfg = validate_config(_cfg(curve_root, tmp_path / "run"))
    tr, va, te = build_datasets(cfg)
    table = corpus_descriptors(TABLE, load_corpus(curve_root / "raw" / "corpus.npz"))
    b = next(iter(DataLoader(tr, batch_size=16)))
    torch.testing.assert_close(b.feat, torch.tensor(table[b.idx.numpy()], dtype=torch.float32))
    aug = RandomAxisPermutation(tr.normalizer, "curve", mirrors=True)(b)
    assert torch.equal(aug.feat, b.feat)  # the 16 symmetries keep z: the buckling too
    summary = train(cfg, progress=False)
    assert summary["epochs_done"] == 2
    ck = load_checkpoint(tmp_path / "run" / "best.pt")
    train_rows = table[tr._data.idx.numpy()]
    np.testing.assert_allclose(ck["model"]["predictor.features.mean"].numpy(),
                               train_rows.mean(0), rtol=1e-5)
    train(validate_config(_cfg(curve_root, tmp_path / "run", epochs=3)), progress=False)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 2  # resumed
    rep = evaluate_checkpoint(tmp_path / "run" / "best.pt", tmp_path / "ev", n_samples=0,
                              limit=6, workers=1)
    assert rep["predictor_features"]["kind"] == "buckling"
    assert 0 < rep["predictor_features"]["analysed_one_pass"] <= 1
    assert np.isfinite(rep["property"]["nrmse"])
    with pytest.raises(ValueError, match="workers"):
        evaluate_checkpoint(tmp_path / "run" / "best.pt", tmp_path / "ev", n_samples=0,
                            limit=2, workers=0)


def test_design_loop_holds_the_features_between_updates(lattices, monkeypatch):
    """``optimize_latents`` analyses the runs' decoded lattices at steps 0, every
    ``feature_every`` and the last step, and nowhere else."""
    from gnn_truss.dataset import TargetNormalizer
    from gnn_truss.design import optimize_latents
    from gnn_truss.objectives import parse_objective
    model = build_model(FEATURED).eval()
    _pin(model, lattices[0])
    seen = []
    monkeypatch.setattr(type(model), "lattice_features",
                        lambda self, A, off, progress=False: seen.append(1) or
                        torch.zeros(len(A), 5, dtype=torch.float64))
    norm = TargetNormalizer.fit(np.abs(np.random.default_rng(0).normal(size=(20, 13))) * 1e-3)
    obj = parse_objective("match-curve", np.linspace(0, 1e-3, 13).tolist())
    optimize_latents(model, norm, obj, torch.zeros(2, model.sizes.total), steps=10,
                     feature_every=4)
    assert len(seen) == 4  # steps 0, 4, 8 and 10
    with pytest.raises(ValueError, match="feature_every"):
        optimize_latents(model, norm, obj, torch.zeros(1, model.sizes.total), steps=2,
                         feature_every=0)
