"""Tests of gnn_truss.evaluation: reconstruction / property / sampling metrics and the driver."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gnn_truss import design_space as ds
from gnn_truss.corpus import load_corpus, save_compact
from gnn_truss.dataset import TargetNormalizer, TrussDataset
from gnn_truss.evaluation import (
    STIFFNESS_NAMES,
    adjacency_metrics,
    decode_trusses,
    compare_reports,
    evaluate_checkpoint,
    nrmse_curves,
    position_r2,
    r2_per_component,
    sample_validity,
    target_check,
    format_target_check,
)
from gnn_truss.nn import LatentSizes, build_model
from gnn_truss.training import train
from gnn_truss.truss import Truss

SHIPPED = Path(__file__).resolve().parents[1] / "datasets" / "default" / "raw" / "corpus.npz"
TINY_MODEL = {"encoder": "gnn", "topology": 4, "shared": 8, "geometry": 4, "hidden": 16,
              "layers": 2, "readout": 64, "decoder_hidden": [32, 64], "offset_hidden": [32],
              "predictor_hidden": [32]}


def triu_with(edges_idx, value=1.0, other=0.0):
    v = np.full(ds.NUM_PAIRS, other)
    v[list(edges_idx)] = value
    return v


def pair_index(i, j):
    """Position of node pair (i, j), i < j, in the 351-vector."""
    return int(np.flatnonzero((ds.TRIU_I == i) & (ds.TRIU_J == j))[0])


# ------------------------------------------------------------------ adjacency
def test_adjacency_metrics_hand_computed():
    target = np.stack([triu_with([0, 1, 2]), triu_with([10]), triu_with([5, 6])])
    # lattice 0: edges 0, 1 found, 2 missed, 3 spurious -> 349 of 351 right
    # lattice 1: edge 10 found, 20 spurious            -> 350 right
    # lattice 2: exact                                 -> 351 right
    logits = np.stack([triu_with([0, 1, 3], 2.0, -2.0), triu_with([10, 20], 0.3, -0.1),
                       triu_with([5, 6], 5.0, -5.0)])
    m = adjacency_metrics(torch.tensor(logits), torch.tensor(target))
    assert m["accuracy_paper"] == pytest.approx(((2 * 349 + 27) + (2 * 350 + 27) + 729)
                                                / 729 / 3, abs=1e-12)
    assert m["accuracy_offdiag"] == pytest.approx((349 + 350 + 351) / 351 / 3, abs=1e-12)
    assert m["exact_match"] == pytest.approx(1 / 3)
    tp, fp, fn = 5, 2, 1
    p, r = tp / (tp + fp), tp / (tp + fn)
    assert m["edge_precision"] == pytest.approx(p)
    assert m["edge_recall"] == pytest.approx(r)
    assert m["edge_f1"] == pytest.approx(2 * p * r / (p + r)) == pytest.approx(10 / 13)
    assert m["num_lattices"] == 3


def test_accuracy_paper_equals_dense_matrix_accuracy_with_unit_diagonal():
    g = np.random.default_rng(0)
    target = (g.random((7, ds.NUM_PAIRS)) < 0.1).astype(float)
    logits = g.normal(size=(7, ds.NUM_PAIRS)) - 1.5
    dense_t = ds.triu_to_adjacency(target) + np.eye(27)
    dense_p = ds.triu_to_adjacency((logits > 0).astype(float)) + np.eye(27)
    expected = np.mean((dense_t == dense_p).reshape(7, -1).mean(axis=1))
    assert adjacency_metrics(logits, target)["accuracy_paper"] == pytest.approx(expected,
                                                                                abs=1e-12)


def test_adjacency_threshold_is_logit_zero_and_shapes_checked():
    target = triu_with([4])[None]
    at_half = adjacency_metrics(triu_with([4], 0.0, -1.0)[None], target)  # sigmoid = 0.5
    assert at_half["exact_match"] == 0.0 and at_half["edge_recall"] == 0.0
    above = adjacency_metrics(triu_with([4], 1e-6, -1.0)[None], target)
    assert above["exact_match"] == 1.0 and above["edge_f1"] == 1.0
    with pytest.raises(ValueError, match="351"):
        adjacency_metrics(np.zeros((2, 350)), np.zeros((2, 350)))


# ------------------------------------------------------------------ geometry and properties
def test_position_r2_hand_computed_over_used_nodes_only():
    # one beam between face node 4 (0.5, 0.5, 0; free x, y) and the body node 13 (free x, y, z)
    adj = triu_with([pair_index(4, 13)])[None]
    dof = {(n, a): k for k, (n, a) in enumerate(zip(ds.FREE_DOF_NODE, ds.FREE_DOF_AXIS))}
    true = np.zeros((1, 27))
    for (n, a), v in {(4, 0): 0.1, (4, 1): -0.1, (13, 0): 0.2, (13, 1): 0.0,
                      (13, 2): -0.2}.items():
        true[0, dof[n, a]] = v
    pred = true.copy()
    pred[0, dof[4, 0]] += 0.1
    unused = [k for k in range(27) if ds.FREE_DOF_NODE[k] not in (4, 13)]
    pred[0, unused] = 0.4  # garbage on unused nodes must not matter
    m = position_r2(torch.tensor(pred), torch.tensor(true), torch.tensor(adj))
    # x: true (0.6, 0.7), pred (0.7, 0.7): SS_res 0.01, SS_tot 0.005 -> -1
    assert m["r2_x"] == pytest.approx(-1.0, abs=1e-9)
    assert m["r2_y"] == pytest.approx(1.0) and m["r2_z"] == pytest.approx(1.0)
    # free dofs of used nodes: SS_res 0.01, SS_tot 0.1 -> 0.9
    assert m["r2_offsets"] == pytest.approx(0.9, abs=1e-9)
    assert m["num_used_nodes"] == 2
    perfect = position_r2(true, true, adj)
    assert perfect["r2_x"] == perfect["r2_offsets"] == 1.0


def test_r2_per_component_perfect_mean_and_known_value():
    true = np.array([[1.0, 0.0], [2.0, 5.0], [3.0, 1.0], [4.0, 2.0]])
    assert r2_per_component(true, true, ["a", "b"]) == {"a": 1.0, "b": 1.0}
    mean = np.broadcast_to(true.mean(axis=0), true.shape)
    assert r2_per_component(mean, true, ["a", "b"]) == pytest.approx({"a": 0.0, "b": 0.0})
    pred = true.copy()
    pred[3, 0] = 5.0  # SS_res 1, SS_tot 5
    assert r2_per_component(torch.tensor(pred), torch.tensor(true), ["a", "b"])["a"] == \
        pytest.approx(0.8)
    const = np.ones((4, 1))
    assert np.isnan(r2_per_component(const, const, ["c"])["c"])
    with pytest.raises(ValueError):
        r2_per_component(true, true, ["a"])


def test_nrmse_curves_by_hand():
    s = np.linspace(0.0, 1.2, 13)
    true = np.stack([s, 2 * s, np.ones(13)])  # ranges 1.2, 2.4 and 0 (skipped)
    pred = true.copy()
    pred[0] += 0.12                            # RMSE 0.12 -> 0.1
    pred[1, 5] += 0.72 * np.sqrt(13)           # RMSE 0.72 -> 0.3
    pred[2] += 7.0
    assert nrmse_curves(torch.tensor(pred), torch.tensor(true)) == pytest.approx(0.2)
    assert nrmse_curves(true[:2], true[:2]) == 0.0


# ------------------------------------------------------------------ sampling
def test_decode_trusses_thresholds_clips_and_zeroes_unused_offsets():
    logits = triu_with([pair_index(4, 13)], 3.0, -3.0)[None]
    off = np.full((1, 27), 0.75, dtype=np.float32)  # out of range everywhere
    (t,) = decode_trusses(torch.tensor(logits), torch.tensor(off))
    assert t.num_edges == 1 and tuple(t.edges[0]) == (4, 13)
    assert t.offsets.dtype == np.float64
    used = np.isin(ds.FREE_DOF_NODE, [4, 13])
    assert np.all(t.free_offsets[used] == 0.5) and np.all(t.free_offsets[~used] == 0.0)


class RuleVAE(nn.Module):
    """Decoder by hand: z0 > 0 -> octet (face node 4 moved by +-0.1 in x by the sign of z2);
    else z1 > 0 -> one beam (0, 1) (connected, not a lattice); else two disjoint beams."""

    sizes = LatentSizes(2, 2, 2)

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.node4_x = int(np.flatnonzero((ds.FREE_DOF_NODE == 4) & (ds.FREE_DOF_AXIS == 0))[0])

    def decode(self, z):
        octet = torch.tensor(triu_with([pair_index(*e) for e in ds.ELEMENTARY_LATTICES["octet"]]))
        beam = torch.tensor(triu_with([pair_index(0, 1)]))
        two = torch.tensor(triu_with([pair_index(0, 1), pair_index(25, 26)]))
        pick = torch.where((z[:, 1] > 0)[:, None], beam, two)
        adj = torch.where((z[:, 0] > 0)[:, None], octet, pick)
        octet_nodes = np.unique(ds.ELEMENTARY_LATTICES["octet"])
        off = torch.full((len(z), 27), 0.3)  # on nodes the octet does not use: ignored
        off[:, np.isin(ds.FREE_DOF_NODE, octet_nodes)] = 0.0
        off[:, self.node4_x] = 0.1 * torch.sign(z[:, 2])
        return 8 * adj - 4, off


def octet_hash(x):
    free = np.zeros(27)
    free[RuleVAE().node4_x] = x
    return Truss.from_edges(ds.ELEMENTARY_LATTICES["octet"], free).canonical_hash()


def test_sample_validity_counts_hand_built_decoder():
    n, seed = 60, 3
    z = torch.randn(n, 6, generator=torch.Generator().manual_seed(seed))
    octet = z[:, 0] > 0
    beam = ~octet & (z[:, 1] > 0)
    signs = set(torch.sign(z[octet, 2]).tolist())
    res = sample_validity(RuleVAE(), n=n, seed=seed, train_hashes={octet_hash(0.1)})
    assert res["validity_paper"] == pytest.approx(float((octet | beam).float().mean()))
    assert res["validity_strict"] == pytest.approx(float(octet.float().mean()))
    assert res["num_unique"] == len(signs) == 2
    assert res["uniqueness"] == pytest.approx(2 / int(octet.sum()))
    assert res["novelty"] == pytest.approx(0.5) and res["num_novel"] == 1
    assert res["violations"]["spans_cell"] == int(beam.sum())
    assert res["fe_status"] == {"ok": int(octet.sum())}
    nofe = sample_validity(RuleVAE(), n=n, seed=seed, fe_check=False)
    assert nofe["validity_strict"] == res["validity_strict"] and nofe["novelty"] is None
    all_new = sample_validity(RuleVAE(), n=n, seed=seed, train_hashes=set(), fe_check=False)
    assert all_new["novelty"] == 1.0
    other_seed = sample_validity(RuleVAE(), n=n, seed=seed + 1, fe_check=False)
    assert other_seed["validity_paper"] != res["validity_paper"]


class NearOctetVAE(nn.Module):
    """z0 > 0 -> the octet; else the octet with one (needed) beam narrowly below the
    threshold: a dangling node, unless decoded with the topology constraint."""

    sizes = LatentSizes(2, 2, 2)

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def decode(self, z):
        octet = torch.tensor(triu_with([pair_index(*e) for e in ds.ELEMENTARY_LATTICES["octet"]]))
        logits = (8 * octet - 4).repeat(len(z), 1)
        first = pair_index(*ds.ELEMENTARY_LATTICES["octet"][0])
        logits[z[:, 0] <= 0, first] = -0.2
        return logits, torch.zeros(len(z), 27)


def test_sample_validity_constrained_decoding_restores_the_missed_beam():
    n, seed = 40, 1
    z = torch.randn(n, 6, generator=torch.Generator().manual_seed(seed))
    share = float((z[:, 0] > 0).float().mean())
    assert 0 < share < 1
    plain = sample_validity(NearOctetVAE(), n=n, seed=seed, fe_check=False)
    con = sample_validity(NearOctetVAE(), n=n, seed=seed, fe_check=False, constrained=True)
    assert plain["validity_strict"] == pytest.approx(share) and not plain["constrained"]
    assert plain["violations"]["no_dangling"] == n - round(share * n)
    assert con["validity_strict"] == 1.0 and con["constrained"] and con["num_unique"] == 1


def test_sample_validity_untrained_model_shares_consistent():
    torch.manual_seed(0)
    model = build_model(TINY_MODEL)
    res = sample_validity(model, n=24, seed=0, train_hashes=set())
    again = sample_validity(model, n=24, seed=0, train_hashes=set())
    assert res == again  # seeded
    for k in ("validity_paper", "validity_strict"):
        assert 0.0 <= res[k] <= 1.0
    assert res["validity_strict"] <= res["validity_paper"]
    assert res["num_unique"] <= res["num_valid"] <= res["num_connected"] <= 24
    if res["num_valid"]:
        assert 0 < res["uniqueness"] <= 1 and res["novelty"] == 1.0
    else:
        assert res["uniqueness"] is None and res["novelty"] is None
    with pytest.raises(ValueError):
        sample_validity(model, n=0)


# ------------------------------------------------------------------ driver
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny checkpoint: 300 lattices of the shipped corpus, 1 epoch."""
    tmp = tmp_path_factory.mktemp("evalrun")
    (tmp / "data" / "raw").mkdir(parents=True)
    save_compact(load_corpus(SHIPPED, limit=300), tmp / "data" / "raw" / "corpus.npz")
    torch.set_num_threads(1)
    cfg = {"data": {"root": str(tmp / "data"), "limit": 300}, "model": TINY_MODEL,
           "train": {"epochs": 1, "batch_size": 64, "device": "cpu"}, "out": str(tmp / "run")}
    train(cfg, progress=False)
    return tmp


def test_evaluate_checkpoint_writes_report_and_figures(trained):
    out = trained / "eval"
    rep = evaluate_checkpoint(trained / "run" / "best.pt", out, n_samples=16)
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(rep))
    for f in ("parity.png", "reconstruction.png", "latent.png"):
        assert (out / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert rep["split"] == "test" and rep["num_lattices"] == 30  # 10 % of 300
    assert set(rep["property"]["r2"]) == set(STIFFNESS_NAMES)
    assert rep["summary"]["adjacency"]["paper_accuracy"] == rep["adjacency"]["accuracy_paper"]
    assert 0 <= rep["adjacency"]["exact_match"] <= rep["adjacency"]["accuracy_offdiag"] <= 1
    assert rep["samples"]["num_samples"] == 16
    assert rep["summary"]["validity"]["paper"] == rep["samples"]["validity_paper"]
    t = rep["targets"]
    assert set(t) == {"adjacency_accuracy", "exact_match", "position_r2", "stiffness_r2",
                      "validity_paper"}
    assert t["stiffness_r2"]["value"] == min(rep["property"]["r2"].values())
    assert t["exact_match"]["met"] == (rep["adjacency"]["exact_match"] >= 0.95)
    # property R^2 is in physical units (after the inverse normalisation)
    ck = torch.load(trained / "run" / "best.pt", weights_only=True)
    model = build_model(ck["config"]["model"])
    model.load_state_dict(ck["model"])
    model.eval()
    test = TrussDataset(trained / "data", split="test", limit=300)
    from torch_geometric.data import Batch
    b = Batch.from_data_list(list(test))
    with torch.no_grad():
        pred = TargetNormalizer.from_dict(ck["normalizer"]).inverse(model(b, sample=False)["pred"])
    p, t = pred.double().numpy()[:, 0], b.stiffness.double().numpy()[:, 0]
    expected = 1 - np.sum((t - p) ** 2) / np.sum((t - t.mean()) ** 2)
    assert rep["property"]["r2"]["C11"] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    split = rep["property_by_reconstruction"]
    assert split["exact"]["num_lattices"] + split["wrong"]["num_lattices"] == 30
    assert split["fraction_exact"] == pytest.approx(rep["adjacency"]["exact_match"])
    # the block is in physical units and on the right lattices: the group holding all of
    # them (this tiny model decodes none, or all, exactly) has the report's own R^2
    whole = [g for g in ("exact", "wrong") if split[g]["num_lattices"] == 30]
    if whole:
        assert split[whole[0]]["r2"] == pytest.approx(rep["property"]["r2"])
    else:
        from gnn_truss.evaluation import property_by_reconstruction
        logits = model(b, sample=False)["logits"].detach()
        again = property_by_reconstruction(logits, b.adj, pred, b.stiffness, STIFFNESS_NAMES,
                                           "stiffness")
        assert again["exact"]["r2"] == pytest.approx(split["exact"]["r2"], rel=1e-4)


def test_evaluate_colours_the_parity_plot_by_reconstruction(trained, tmp_path, monkeypatch):
    """The plot's colours and the report's split are the same mask, the one
    exactly_reconstructed gives for the run's logits (here replaced by a known pattern, since
    the tiny model decodes no lattice exactly)."""
    import gnn_truss.evaluation as evaluation
    import gnn_truss.plotting as plotting
    seen, logits_seen = [], []
    original = plotting.plot_parity
    monkeypatch.setattr(plotting, "plot_parity",
                        lambda *a, **kw: (seen.append(kw), original(*a, **kw))[1])
    pattern = np.arange(10) % 3 == 0  # 4 of 10 "exact"
    real = evaluation.exactly_reconstructed

    def fake(logits, adj):
        logits_seen.append(real(logits, adj))  # still checks the shapes
        return pattern.copy()
    monkeypatch.setattr(evaluation, "exactly_reconstructed", fake)
    rep = evaluate_checkpoint(trained / "run" / "best.pt", tmp_path, n_samples=0, limit=10)
    assert len(seen) == 1 and np.array_equal(seen[0]["highlight"], pattern)
    assert seen[0]["labels"] == ("reconstructed exactly", "not reconstructed exactly")
    split = rep["property_by_reconstruction"]
    assert split["exact"]["num_lattices"] == 4 and split["wrong"]["num_lattices"] == 6
    assert len(logits_seen) == 2 and logits_seen[0].shape == (10,)
    assert split["fraction_exact"] == pytest.approx(0.4)


def test_property_by_reconstruction_splits_on_exact_adjacency():
    """Lattices 0-3 decoded exactly, 4-6 with one wrong entry: each block's R^2 is that of
    its own lattices, computed here by hand; a block of one lattice is NaN."""
    from gnn_truss.evaluation import property_by_reconstruction
    rng = np.random.default_rng(0)
    adj = (rng.random((7, 351)) < 0.1).astype(float)
    logits = np.where(adj > 0, 2.0, -2.0)
    logits[4:, 7] *= -1  # one entry wrong in each of the last three
    true = rng.normal(size=(7, 2))
    pred = true + rng.normal(scale=0.1, size=(7, 2))
    pred[4:] += 1.0  # the wrongly decoded ones predicted worse
    out = property_by_reconstruction(logits, adj, pred, true, ("a", "b"), "stiffness")
    assert out["fraction_exact"] == pytest.approx(4 / 7)
    as_torch = property_by_reconstruction(torch.tensor(logits, dtype=torch.float32),
                                          torch.tensor(adj > 0), torch.tensor(pred),
                                          torch.tensor(true), ("a", "b"), "stiffness")
    assert as_torch == out
    for name, rows in (("exact", slice(0, 4)), ("wrong", slice(4, 7))):
        blk = out[name]
        assert blk["num_lattices"] == rows.stop - rows.start
        for k, key in enumerate("ab"):
            t, p = true[rows, k], pred[rows, k]
            want = 1 - np.sum((t - p) ** 2) / np.sum((t - t.mean()) ** 2)
            assert blk["r2"][key] == pytest.approx(want, rel=1e-12)
            assert blk["rmse"][key] == pytest.approx(np.sqrt(np.mean((t - p) ** 2)))
        assert blk["r2_min"] == min(blk["r2"].values()) and "nrmse" not in blk
    assert out["exact"]["r2_min"] > out["wrong"]["r2_min"]
    curves = property_by_reconstruction(logits[3:5], adj[3:5], np.abs(pred[3:5]) + 1,
                                        np.abs(true[3:5]) + 1, ("a", "b"), "curve")
    assert curves["exact"]["num_lattices"] == 1 and np.isnan(curves["exact"]["r2"]["a"])
    t, p = np.abs(true[3]) + 1, np.abs(pred[3]) + 1
    want = np.sqrt(np.mean((p - t) ** 2)) / (t.max() - t.min())
    assert curves["exact"]["nrmse"] == pytest.approx(want, rel=1e-12)
    none_exact = property_by_reconstruction(logits[4:], adj[4:], pred[4:], true[4:], "ab",
                                            "stiffness")
    assert none_exact["exact"]["num_lattices"] == 0 and none_exact["fraction_exact"] == 0
    assert np.isnan(none_exact["exact"]["r2_min"]) and np.isnan(none_exact["exact"]["rmse"]["a"])
    with pytest.raises(ValueError, match="logits and true_adj"):
        property_by_reconstruction(logits[:, :10], adj[:, :10], pred, true, "ab", "stiffness")
    with pytest.raises(ValueError, match="logits and true_adj"):
        property_by_reconstruction(logits[:, :10], adj, pred, true, ("a", "b"), "stiffness")
    with pytest.raises(ValueError, match="pred and true"):
        property_by_reconstruction(logits, adj, pred, true, ("a", "b", "c"), "stiffness")
    with pytest.raises(ValueError, match="target"):
        property_by_reconstruction(logits, adj, pred, true, ("a", "b"), "strength")
    with pytest.raises(ValueError, match="pred and true"):
        property_by_reconstruction(logits, adj, pred[:3], true[:3], ("a", "b"), "stiffness")


def _model_norm_test_batch(checkpoint, data_root):
    """``(model in eval mode, target normaliser, Batch of the test split)`` of a tiny run."""
    from torch_geometric.data import Batch
    ck = torch.load(checkpoint, weights_only=True)
    model = build_model(ck["config"]["model"])
    model.load_state_dict(ck["model"])
    b = Batch.from_data_list(list(TrussDataset(data_root, split="test", limit=300)))
    return model.eval(), TargetNormalizer.from_dict(ck["normalizer"]), b


def test_evaluate_checkpoint_symmetrised_property_metrics(trained, tmp_path):
    from gnn_truss.symmetry import symmetrised_prediction
    rep = evaluate_checkpoint(trained / "run" / "best.pt", tmp_path, n_samples=0,
                              symmetrise="axes")
    sym = rep["property_symmetrised"]
    assert sym["symmetrise"] == "axes" and sym["num_symmetries"] == 6
    assert (tmp_path / "parity_symmetrised.png").read_bytes()[:4] == b"\x89PNG"
    assert "parity_symmetrised.png" in rep["figures"]
    assert rep["summary"]["property_symmetrised"]["r2_mean"] == sym["r2_mean"]
    # the plain metrics are the ones of a run without it; the symmetrised ones by hand
    plain = evaluate_checkpoint(trained / "run" / "best.pt", tmp_path / "plain", n_samples=0)
    assert plain["property"] == rep["property"] and "property_symmetrised" not in plain
    model, norm, b = _model_norm_test_batch(trained / "run" / "best.pt", trained / "data")
    p = symmetrised_prediction(model, b, norm, "stiffness", "axes").numpy()[:, 3]
    t = b.stiffness.double().numpy()[:, 3]
    expected = 1 - np.sum((t - p) ** 2) / np.sum((t - t.mean()) ** 2)
    assert sym["r2"]["C22"] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert sym["r2"]["C22"] != pytest.approx(rep["property"]["r2"]["C22"], rel=1e-6)
    # the symmetrised reconstruction: exact match by hand from the averaged outputs
    from gnn_truss.symmetry import symmetrised_outputs
    out = symmetrised_outputs(model, b, norm, "stiffness", "axes")
    exact = np.mean(np.all((out["logits"].numpy() > 0) == (b.adj.numpy() > 0.5), axis=1))
    adj_sym = rep["adjacency_symmetrised"]
    assert adj_sym["symmetrise"] == "axes" and adj_sym["num_symmetries"] == 6
    assert adj_sym["exact_match"] == pytest.approx(exact, abs=1e-12)
    assert rep["summary"]["adjacency_symmetrised"]["strict_exact_match"] == adj_sym["exact_match"]
    assert rep["adjacency"] == plain["adjacency"] and "adjacency_symmetrised" not in plain
    # positions of the averaged offsets: R^2 of x by hand over the used nodes
    geo = rep["geometry_symmetrised"]
    used = np.asarray(ds.triu_to_adjacency((b.adj.numpy() > 0.5).astype(np.uint8)).any(-1))
    x_true = (ds.NODE_GRID + ds.unpack_offsets(b.offset.double().numpy()))[..., 0][used]
    x_pred = (ds.NODE_GRID + ds.unpack_offsets(out["offsets"].numpy()))[..., 0][used]
    r2_x = 1 - np.sum((x_true - x_pred) ** 2) / np.sum((x_true - x_true.mean()) ** 2)
    assert geo["r2_x"] == pytest.approx(r2_x, rel=1e-6)
    assert geo["r2_x"] != pytest.approx(rep["geometry"]["r2_x"], rel=1e-9)
    assert rep["summary"]["geometry_symmetrised"]["paper_position_r2"] == min(
        geo["r2_x"], geo["r2_y"], geo["r2_z"])
    with pytest.raises(ValueError, match="symmetrise"):
        evaluate_checkpoint(trained / "run" / "best.pt", tmp_path, symmetrise="all")


def test_evaluate_checkpoint_constrained_decoding(trained, tmp_path):
    from torch_geometric.data import Batch

    from gnn_truss.decoding import STATUS, constrained_adjacency
    from gnn_truss.symmetry import symmetrised_outputs
    rep = evaluate_checkpoint(trained / "run" / "best.pt", tmp_path, n_samples=12,
                              symmetrise="axes", constrained=True)
    # the same prior samples decoded both ways: a changed adjacency passes the topology
    # rules, an unchanged one scores the same, so neither validity can fall
    s, sc = rep["samples"], rep["samples_constrained"]
    assert sc["constrained"] and not s["constrained"] and sc["num_samples"] == 12
    assert sc["num_connected"] >= s["num_connected"] and sc["num_valid"] >= s["num_valid"]
    assert rep["summary"]["validity_constrained"]["strict"] == sc["validity_strict"]
    ck = torch.load(trained / "run" / "best.pt", weights_only=True)
    model = build_model(ck["config"]["model"])
    model.load_state_dict(ck["model"])
    model.eval()
    b = Batch.from_data_list(list(TrussDataset(trained / "data", split="test", limit=300)))
    true = b.adj.numpy() > 0.5
    with torch.no_grad():
        plain_logits = model(b, sample=False)["logits"]
        norm = TargetNormalizer.from_dict(ck["normalizer"])
        sym_logits = symmetrised_outputs(model, b, norm, "stiffness", "axes")["logits"]
    for key, logits in (("adjacency_constrained", plain_logits),
                        ("adjacency_symmetrised_constrained", sym_logits)):
        con = rep[key]
        bits, status = constrained_adjacency(logits)
        assert con["exact_match"] == pytest.approx(np.mean(np.all(bits == true, axis=1)),
                                                   abs=1e-12)
        correct = (bits == true).sum(axis=1)
        assert con["accuracy_paper"] == pytest.approx(np.mean((2 * correct + 27) / 729),
                                                      abs=1e-12)
        assert con["status"] == {n: int(np.sum(status == i)) for i, n in enumerate(STATUS)}
        assert sum(con["status"].values()) == 30
        assert (con["candidates"], con["max_flips"]) == (20, 3)
    # only adjacencies that break a rule change, and a true lattice never does: exact match
    # cannot fall
    assert rep["adjacency_constrained"]["exact_match"] >= rep["adjacency"]["exact_match"]
    assert (rep["adjacency_symmetrised_constrained"]["exact_match"]
            >= rep["adjacency_symmetrised"]["exact_match"])
    assert rep["adjacency_symmetrised_constrained"]["symmetrise"] == "axes"
    assert (rep["summary"]["adjacency_constrained"]["strict_exact_match"]
            == rep["adjacency_constrained"]["exact_match"])
    plain = evaluate_checkpoint(trained / "run" / "best.pt", tmp_path / "p", n_samples=0)
    assert "adjacency_constrained" not in plain and plain["adjacency"] == rep["adjacency"]
    assert "exact-lattice match, constrained" in compare_reports({"a": rep, "b": plain})


def test_constrained_metrics_count_repairs_and_score_the_repaired_adjacency():
    from gnn_truss.evaluation import _constrained_metrics
    true = ds.adjacency_to_triu(Truss.elementary("sc_2x2x2").adjacency).astype(float)
    lg = np.where(true > 0, 4.0, -4.0)
    lg = np.stack([lg, lg.copy(), lg.copy()])
    lg[1, np.flatnonzero(true)[0]] = -0.2  # a needed beam narrowly missed: repaired
    lg[2, np.flatnonzero(true == 0)[0]] = 0.3  # an extra beam: valid, so left wrong
    target = np.stack([true] * 3)
    res = _constrained_metrics(lg, target, {"tag": 1})
    assert res["status"] == {"valid": 2, "repaired": 1, "unrepaired": 0}
    assert res["exact_match"] == pytest.approx(2 / 3) and res["tag"] == 1
    assert adjacency_metrics(lg, target)["exact_match"] == pytest.approx(1 / 3)


def test_evaluate_checkpoint_limit_and_split(trained):
    rep = evaluate_checkpoint(trained / "run" / "best.pt", trained / "eval_val", n_samples=0,
                              split="val", limit=7)
    assert rep["num_lattices"] == 7 and rep["samples"] is None
    assert rep["summary"]["validity"] is None
    with pytest.raises(ValueError, match="split"):
        evaluate_checkpoint(trained / "run" / "best.pt", trained / "x", split="bogus")


def test_evaluate_checkpoint_refuses_other_data(trained, tmp_path):
    ck = torch.load(trained / "run" / "best.pt", weights_only=True)
    ck["fingerprint"] = "0" * 40
    torch.save(ck, tmp_path / "edited.pt")
    with pytest.raises(ValueError, match="fingerprint"):
        evaluate_checkpoint(tmp_path / "edited.pt", tmp_path / "e1", n_samples=0)
    with pytest.raises(ValueError, match="fingerprint"):  # same corpus, other subset
        evaluate_checkpoint(trained / "run" / "best.pt", tmp_path / "e2", n_samples=0,
                            data_overrides={"limit": 250})
    assert not (tmp_path / "e1" / "report.json").exists()


def test_evaluate_checkpoint_refuses_corrupt_or_foreign_file(trained, tmp_path):
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        evaluate_checkpoint(bad, tmp_path / "e", n_samples=0)
    torch.save({"model": {}}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a gnn_truss checkpoint"):
        evaluate_checkpoint(tmp_path / "foreign.pt", tmp_path / "e", n_samples=0)
    ck = torch.load(trained / "run" / "best.pt", weights_only=True)
    ck["config"]["model"]["hidden"] = 32
    torch.save(ck, tmp_path / "mismatch.pt")
    with pytest.raises(ValueError, match="weights do not match"):
        evaluate_checkpoint(tmp_path / "mismatch.pt", tmp_path / "e", n_samples=0)
    with pytest.raises(ValueError, match="not found"):
        evaluate_checkpoint(tmp_path / "missing.pt", tmp_path / "e", n_samples=0)


def test_plot_parity_log_axes_only_for_positive_components(tmp_path):
    from gnn_truss.plotting import plot_parity
    g = np.random.default_rng(0)
    true = np.column_stack([g.uniform(0.01, 0.1, 50), g.normal(size=50)])
    fig = plot_parity(true, true * 1.1, ["C11", "C12"], tmp_path / "p.png")
    a, b = fig.axes[:2]
    assert a.get_xscale() == a.get_yscale() == "log" and b.get_xscale() == "linear"
    assert "R^2" in a.get_title() and "0.9" in a.get_title()
    assert (tmp_path / "p.png").stat().st_size > 0
    with pytest.raises(ValueError):
        plot_parity(true, true, ["only one"])
    # labels do not crowd: over 2.6 decades only the powers of ten are labelled
    wide = np.column_stack([np.geomspace(5e-5, 2e-2, 50), np.geomspace(5e-5, 2e-2, 50)])
    fig = plot_parity(wide, wide, ["C44", "C55"])
    fig.canvas.draw()
    ticks = [v for v in fig.axes[0].get_xticks() if 5e-5 <= v <= 2e-2]
    assert np.allclose(ticks, [1e-4, 1e-3, 1e-2])
    mask = np.arange(50) < 35
    gap = true.copy()
    gap[3, 0] = np.nan  # dropped from panel 0: the colours must follow the finite rows
    fig = plot_parity(gap, true * 1.1, ["C11", "C12"], highlight=mask, labels=("ok", "bad"))
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["ok (35)", "bad (15)"]  # rows, not the panel's points
    fig.canvas.draw()  # the legend lies below the panels, over none of the points
    box = fig.legends[0].get_window_extent()
    assert all(box.y1 <= ax.get_window_extent().y0 for ax in fig.axes)
    blue, orange = fig.axes[0].collections[:2]
    assert len(blue.get_offsets()) == 34 and len(orange.get_offsets()) == 15
    assert blue.get_zorder() > orange.get_zorder()
    np.testing.assert_allclose(orange.get_offsets()[:, 0], true[35:, 0])
    assert "R^2" in fig.axes[1].get_title()
    assert plot_parity(true, true, ["C11", "C12"]).legends == []  # no mask, no legend
    with pytest.raises(ValueError, match="highlight"):
        plot_parity(true, true, ["C11", "C12"], highlight=mask[:10])
    with pytest.raises(ValueError, match="highlight"):
        plot_parity(true, true, ["C11", "C12"], highlight=mask.astype(int))


# ------------------------------------------------------------------ side by side
def _report(exact, r2_c11, nrmse=None, n=30):
    rep = {"split": "test", "target": "stiffness", "num_lattices": n,
           "adjacency": {"accuracy_paper": 0.99, "exact_match": exact, "edge_f1": 0.9},
           "property": {"r2": {"C11": r2_c11, "C12": 0.5}, "r2_mean": (r2_c11 + 0.5) / 2},
           "samples": {"validity_paper": 0.8}}
    if nrmse is not None:
        rep["property"]["nrmse"] = nrmse
    return rep


def test_compare_reports_table_and_winners():
    from gnn_truss.evaluation import compare_reports
    table = compare_reports({"GNN": _report(0.30, 0.9, nrmse=0.04),
                             "MLP": _report(0.20, 0.95, nrmse=0.05)})
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]]
            for r in table.splitlines()[2:]}
    assert rows["exact-lattice match"] == ["0.3000", "0.2000", "GNN"]
    assert rows["R^2 C11"] == ["0.9000", "0.9500", "MLP"]
    assert rows["curve NRMSE"][-1] == "GNN"  # lower is better
    assert rows["R^2 C12"][-1] == "tie" and rows["validity (paper)"][-1] == "tie"
    assert "node-position R^2 x" not in rows  # in no report: left out
    only_one = _report(0.20, 0.95)
    del only_one["samples"]
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]]
            for r in compare_reports({"GNN": _report(0.3, 0.9), "MLP": only_one}).splitlines()[2:]}
    assert rows["validity (paper)"] == ["0.8000", "n/a", "n/a"]  # in one report: no winner
    # symmetrised over different groups: not comparable, each cell says how it was obtained
    a, b = _report(0.3, 0.9), _report(0.2, 0.95)
    a["property_symmetrised"] = {"symmetrise": "axes", "r2_mean": 0.97}
    b["property_symmetrised"] = {"symmetrise": "axes_mirrors", "r2_mean": 0.90}
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]]
            for r in compare_reports({"GNN": a, "MLP": b}).splitlines()[2:]}
    assert rows["property R^2 mean, symmetrised"] == [
        "0.9700 (symmetrise axes)", "0.9000 (symmetrise axes_mirrors)",
        "n/a (different settings)"]
    b["property_symmetrised"]["symmetrise"] = "axes"
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]]
            for r in compare_reports({"GNN": a, "MLP": b}).splitlines()[2:]}
    assert rows["property R^2 mean, symmetrised"] == ["0.9700", "0.9000", "GNN"]
    with pytest.raises(ValueError, match="same test set"):
        compare_reports({"a": _report(0.3, 0.9), "b": _report(0.3, 0.9, n=31)})
    with pytest.raises(ValueError, match="at least one"):
        compare_reports({})


def test_evaluate_cli_with_baseline_writes_comparison(trained, tmp_path, capsys):
    from gnn_truss.cli import main
    base = trained / "eval_base"
    evaluate_checkpoint(trained / "run" / "best.pt", base, n_samples=0)
    out = tmp_path / "cmp"
    assert main(["evaluate", str(trained / "run" / "last.pt"), "--out", str(out), "--samples",
                 "0", "--baseline", str(base / "report.json"), "--constrained"]) == 0
    table = (out / "comparison.md").read_text()
    assert table.startswith("| metric | this | baseline | best |")
    cap = capsys.readouterr()
    assert "| exact-lattice match |" in table and table in cap.out
    assert "evaluate: 100%" in cap.err  # the progress bar over the split, on stderr
    assert "| exact-lattice match, constrained |" in table
    assert "adjacency_constrained" in json.loads((out / "report.json").read_text())
    (tmp_path / "bad.json").write_text("{}")
    assert main(["evaluate", str(trained / "run" / "last.pt"), "--baseline",
                 str(tmp_path / "bad.json")]) == 2
    assert "not a report.json" in capsys.readouterr().err
    assert main(["evaluate", str(trained / "run" / "last.pt"), "--out", str(tmp_path / "q"),
                 "--samples", "0", "--no-progress"]) == 0
    assert "evaluate:" not in capsys.readouterr().err
    # the predictor-only average needs a predictor of the decoded lattice: a clear refusal
    assert main(["evaluate", str(trained / "run" / "last.pt"), "--out", str(tmp_path / "g"),
                 "--samples", "0", "--no-progress", "--symmetrise-predictor", "axes"]) == 2
    assert "reads the latent" in capsys.readouterr().err


def test_latent_figure_is_coloured_by_the_fe_bulk_modulus(tmp_path):
    from gnn_truss.evaluation import _plot_latent
    from gnn_truss.properties import stiffness_from_vector, voigt_bulk_modulus
    corpus = load_corpus(SHIPPED, limit=50)
    mu = np.random.default_rng(0).normal(size=(50, 6))
    fig = _plot_latent(mu, corpus.stiffness, "stiffness", tmp_path / "latent.png")
    kv = np.asarray(voigt_bulk_modulus(stiffness_from_vector(corpus.stiffness)))
    coloured = [c.get_array() for c in fig.axes[0].collections if c.get_array() is not None]
    assert len(coloured) == 1
    assert np.allclose(np.sort(np.asarray(coloured[0])), np.sort(np.log10(kv)), rtol=1e-10)
    assert (tmp_path / "latent.png").read_bytes()[:4] == b"\x89PNG"


def test_refined_latents_reconstruct_the_shipped_models_test_lattices():
    """The shipped model's decoder reproduces nearly every test lattice from a refined
    latent: on 300 test-split lattices (built straight from the corpus file), 100 refinement
    steps take the exact match from about 68 % (one pass, the encoder's mean) to at least
    95 % (99.3 % measured on 2,000), and no lattice reconstructed from the mean is lost."""
    from torch_geometric.data import Batch

    from gnn_truss.dataset import split_indices
    from gnn_truss.exploration import load_model
    from gnn_truss.graph import truss_to_data
    from gnn_truss.nn.vae import refine_latent
    ckpt = SHIPPED.parents[2] / "checkpoints" / "default" / "model.pt"
    model, ck = load_model(ckpt)
    corpus = load_corpus(SHIPPED)
    idx = split_indices(len(corpus), ck["config"]["data"]["split_seed"])["test"][:300]
    b = Batch.from_data_list([truss_to_data(corpus.truss(int(i))) for i in idx])
    torch.manual_seed(0)
    with torch.no_grad():
        out = model(b, sample=False)
    plain = ((out["logits"] > 0).float() == b.adj).all(-1)
    z = refine_latent(model, out["mu"], b.adj, b.offset, steps=100)
    with torch.no_grad():
        refined = ((model.decode(z)[0] > 0).float() == b.adj).all(-1)
    assert 0.55 < float(plain.float().mean()) < 0.8
    assert float(refined.float().mean()) >= 0.95
    assert bool(refined[plain].all())


def test_evaluate_a_decoded_predictor_scores_the_decoded_latent_mean(trained, tmp_path):
    """With model.predictor_input 'decoded' the property R^2 of the report is that of
    G(decode(mu)) (the lattice decoded from each test lattice's latent mean), not that of G on
    the test lattice's true graph."""
    m = {k: v for k, v in TINY_MODEL.items() if k != "predictor_hidden"}
    m.update(predictor_input="decoded", predictor_gnn_hidden=16, predictor_gnn_layers=2,
             predictor_gnn_readout=32)
    cfg = {"data": {"root": str(trained / "data"), "limit": 300}, "model": m,
           "train": {"epochs": 1, "batch_size": 64, "device": "cpu", "predictor_on": "graph",
                     "init_from": str(trained / "run" / "best.pt"),
                     "freeze": ["encoder", "adj_decoder", "offset_decoder"]},
           "out": str(tmp_path / "run")}
    train(cfg, progress=False)
    rep = evaluate_checkpoint(tmp_path / "run" / "best.pt", tmp_path / "eval", n_samples=0)
    model, norm, b = _model_norm_test_batch(tmp_path / "run" / "best.pt", trained / "data")
    t = b.stiffness.double().numpy()[:, 0]

    def r2(pred):
        p = norm.inverse(pred).double().numpy()[:, 0]
        return 1 - np.sum((t - p) ** 2) / np.sum((t - t.mean()) ** 2)

    with torch.no_grad():
        decoded = r2(model.predict(model.encode(b)[0]))
        on_graph = r2(model.predictor(b))
    assert rep["property"]["r2"]["C11"] == pytest.approx(decoded, rel=1e-4, abs=1e-6)
    assert decoded != pytest.approx(on_graph, rel=1e-4)
    # the predictor alone averaged over the copies of the one decoded lattice
    from gnn_truss.symmetry import symmetrised_decoded_prediction
    rep_g = evaluate_checkpoint(tmp_path / "run" / "best.pt", tmp_path / "eval_g", n_samples=0,
                                symmetrise_predictor="axes")
    block = rep_g["property_predictor_symmetrised"]
    assert block["symmetrise"] == "axes" and block["num_symmetries"] == 6
    with torch.no_grad():
        sym = symmetrised_decoded_prediction(model, model.encode(b)[0], norm, "stiffness")
    p = sym.numpy()[:, 0]
    assert block["r2"]["C11"] == pytest.approx(
        1 - np.sum((t - p) ** 2) / np.sum((t - t.mean()) ** 2), rel=1e-4, abs=1e-6)
    assert block["r2"]["C11"] != pytest.approx(decoded, rel=1e-4)
    split = block["by_reconstruction"]
    assert split["exact"]["num_lattices"] + split["wrong"]["num_lattices"] == len(t)
    assert rep_g["property"] == rep["property"]  # the plain one pass is left alone
    with pytest.raises(ValueError, match="reads the latent"):
        evaluate_checkpoint(trained / "run" / "best.pt", tmp_path / "eval_l", n_samples=0,
                            symmetrise_predictor="axes")
    with pytest.raises(ValueError, match="symmetrise"):
        evaluate_checkpoint(tmp_path / "run" / "best.pt", tmp_path / "eval_x", n_samples=0,
                            symmetrise_predictor="all")


def test_shipped_decoded_checkpoint_is_the_default_vae_with_a_lattice_predictor():
    """datasets/checkpoints/decoded: every tensor of the encoder and decoders is the shipped
    default's (they were frozen), and on 500 test-split lattices (built straight from the
    corpus file) its prediction from the latent mean through the decoded lattice has an R^2
    of at least 0.93 on every stiffness component against the FE labels (0.958-0.976
    measured on the 20,000 of the split), above the default's latent predictor on the same
    lattices."""
    from torch_geometric.data import Batch

    from gnn_truss.dataset import split_indices
    from gnn_truss.evaluation import r2_per_component
    from gnn_truss.exploration import load_model
    from gnn_truss.graph import truss_to_data
    ckpts = SHIPPED.parents[2] / "checkpoints"
    decoded, ck = load_model(ckpts / "decoded" / "model.pt")
    default, ck_default = load_model(ckpts / "default" / "model.pt")
    assert decoded.predictor_input == "decoded" and default.predictor_input == "latent"
    theirs = default.state_dict()
    vae = {n: v for n, v in decoded.state_dict().items() if not n.startswith("predictor.")}
    assert len(vae) > 20 and all(torch.equal(v, theirs[n]) for n, v in vae.items())
    assert ck["fingerprint"] == ck_default["fingerprint"]
    corpus = load_corpus(SHIPPED)
    idx = split_indices(len(corpus), ck["config"]["data"]["split_seed"])["test"][:500]
    b = Batch.from_data_list([truss_to_data(corpus.truss(int(i))) for i in idx])
    true = torch.tensor(corpus.stiffness[idx], dtype=torch.float64)
    r2 = {}
    for name, (model, c) in {"decoded": (decoded, ck), "latent": (default, ck_default)}.items():
        with torch.no_grad():
            pred = TargetNormalizer.from_dict(c["normalizer"]).inverse(
                model(b, sample=False)["pred"].double())
        r2[name] = np.array(list(r2_per_component(pred, true, range(9)).values()))
    assert r2["decoded"].min() >= 0.93
    assert np.all(r2["decoded"] > r2["latent"])


def test_shipped_latent_checkpoint_reconstructs_past_the_default():
    """datasets/checkpoints/latent: the default VAE with a 32 / 128 / 32 latent, trained on the
    same corpus and split (its fingerprint). On 500 test-split lattices built straight from the
    corpus file, the adjacency decoded from each latent mean (logit > 0) equals the lattice's
    for at least 93 % of them (96.15 % measured on the 20,000 of the split), at least 15
    points above the default 8 / 32 / 8 checkpoint on the same lattices (70.9 % measured), and
    the latent predictor's stiffness R^2 is above the default's on every component."""
    from torch_geometric.data import Batch

    from gnn_truss.dataset import split_indices
    from gnn_truss.evaluation import r2_per_component
    from gnn_truss.exploration import load_model
    from gnn_truss.graph import truss_to_data
    ckpts = SHIPPED.parents[2] / "checkpoints"
    latent, ck = load_model(ckpts / "latent" / "model.pt")
    default, ck_default = load_model(ckpts / "default" / "model.pt")
    assert (latent.sizes.topology, latent.sizes.shared, latent.sizes.geometry) == (32, 128, 32)
    assert ck["fingerprint"] == ck_default["fingerprint"]
    assert ck["config"]["data"]["split_seed"] == ck_default["config"]["data"]["split_seed"]
    corpus = load_corpus(SHIPPED)
    idx = split_indices(len(corpus), ck["config"]["data"]["split_seed"])["test"][:500]
    b = Batch.from_data_list([truss_to_data(corpus.truss(int(i))) for i in idx])
    true = torch.tensor(corpus.stiffness[idx], dtype=torch.float64)
    exact, r2 = {}, {}
    for name, (model, c) in {"latent": (latent, ck), "default": (default, ck_default)}.items():
        with torch.no_grad():
            out = model(b, sample=False)
        exact[name] = float(((out["logits"] > 0) == (b.adj > 0.5)).all(-1).float().mean())
        pred = TargetNormalizer.from_dict(c["normalizer"]).inverse(out["pred"].double())
        r2[name] = np.array(list(r2_per_component(pred, true, range(9)).values()))
    assert exact["latent"] >= 0.93, exact
    assert exact["latent"] >= exact["default"] + 0.15, exact
    assert np.all(r2["latent"] > r2["default"]), r2


def test_shipped_curve_checkpoint_is_the_default_vae_with_a_lattice_curve_predictor():
    """datasets/checkpoints/nonlinear: the encoder and decoders are the shipped default's
    (frozen), it was trained on the whole shipped curve corpus (its fingerprint) with the
    prefix split that keeps the previous release's test lattices in the test split, and on 120
    test-split lattices spread over the split (built straight from the corpus file) its curve
    predicted from the latent mean through the decoded lattice and that lattice's buckling (FE,
    about 20 s) has a mean NRMSE below 7.5 % against the FE curves (6.00 % on these 120,
    6.50 % on the 3,924 of the split), far below predicting every lattice's curve as the
    training mean curve (26.4 %)."""
    from torch_geometric.data import Batch

    from gnn_truss.dataset import corpus_split, split_indices
    from gnn_truss.exploration import corpus_fingerprint, load_model
    from gnn_truss.graph import truss_to_data
    ckpts = SHIPPED.parents[2] / "checkpoints"
    curve_model, ck = load_model(ckpts / "nonlinear" / "model.pt")
    default, _ = load_model(ckpts / "default" / "model.pt")
    assert curve_model.predictor_input == "decoded" and curve_model.num_targets == 13
    assert curve_model.reads_features
    theirs = default.state_dict()
    vae = {n: v for n, v in curve_model.state_dict().items() if not n.startswith("predictor.")}
    assert len(vae) > 20 and all(torch.equal(v, theirs[n]) for n, v in vae.items())
    corpus = load_corpus(SHIPPED.parents[2] / "nonlinear" / "raw" / "corpus.npz")
    data = ck["config"]["data"]
    assert len(corpus) == 39996 and data["limit"] is None
    assert data["root"] == "datasets/nonlinear" and data["split_by"] == "prefix:15799"
    assert ck["fingerprint"] == corpus_fingerprint(corpus, "curve")
    split = corpus_split(corpus, data["split_seed"], split_by=data["split_by"])
    old = split_indices(15799, data["split_seed"])  # the previous release's split
    for s in ("train", "val", "test"):
        assert np.array_equal(np.sort(split[s][split[s] < 15799]), np.sort(old[s])), s
    idx = split["test"][::24][:120]
    assert len(idx) == 120 and idx.max() >= 15799 and idx.min() < 15799
    b = Batch.from_data_list([truss_to_data(corpus.truss(int(i))) for i in idx])
    true = corpus.curve[idx].astype(np.float64)
    with torch.no_grad():
        pred = TargetNormalizer.from_dict(ck["normalizer"]).inverse(
            curve_model(b, sample=False)["pred"].double()).numpy()
    rng = true.max(1) - true.min(1)
    nrmse = float(np.mean(np.sqrt(np.mean((pred - true) ** 2, 1)) / rng))
    assert nrmse < 0.075
    mean_curve = corpus.curve[split["train"]].mean(0)
    baseline = float(np.mean(np.sqrt(np.mean((mean_curve - true) ** 2, 1)) / rng))
    assert nrmse < 0.5 * baseline


@pytest.mark.parametrize("name", ["default", "decoded", "nonlinear", "latent"])
def test_shipped_report_is_the_evaluation_of_the_shipped_checkpoint(name):
    """Each shipped report.json was written by `gnn-truss evaluate` for the checkpoint beside it:
    the same training epoch and dataset fingerprint, and as many lattices as that checkpoint's
    test split holds (so a checkpoint replaced without re-running its evaluation is caught)."""
    from gnn_truss.dataset import corpus_split
    from gnn_truss.training import load_checkpoint
    d = SHIPPED.parents[2] / "checkpoints" / name
    rep = json.loads((d / "report.json").read_text())
    ck = load_checkpoint(d / "model.pt")
    assert rep["checkpoint"] == f"datasets/checkpoints/{name}/model.pt"
    assert rep["epoch"] == ck["epoch"] and rep["fingerprint"] == ck["fingerprint"]
    data = ck["config"]["data"]
    corpus = load_corpus(SHIPPED.parents[3] / data["root"] / "raw" / "corpus.npz", quiet=True)
    assert data.get("limit") is None  # each reads its whole corpus
    split = corpus_split(corpus, data["split_seed"],
                         split_by=data.get("split_by") or "permutation")
    assert rep["split"] == "test" and rep["num_lattices"] == len(split["test"])


@pytest.mark.parametrize("name", ["model", "mlp_baseline"])
def test_shipped_samples_reports_are_the_sampling_of_the_shipped_checkpoints(name):
    """`samples_report.json` / `mlp_samples_report.json` (`gnn-truss sample --n 1000 --seed 0`)
    describe the checkpoint beside them: their decodes before repair are the evaluation
    report's 1,000 samples (the same seed), and re-running the sampling (novelty aside)
    gives the same validity, repair counts and FE statuses."""
    from gnn_truss.exploration import load_model, sample
    from gnn_truss.training import load_checkpoint
    d = SHIPPED.parents[2] / "checkpoints" / "default"
    prefix = "" if name == "model" else "mlp_"
    rep = json.loads((d / f"{prefix}samples_report.json").read_text())
    ev = json.loads((d / ("report.json" if name == "model" else
                          "mlp_baseline_report.json")).read_text())["samples"]
    ck = load_checkpoint(d / f"{name}.pt")
    assert rep["checkpoint"] == f"datasets/checkpoints/default/{name}.pt"
    assert rep["epoch"] == ck["epoch"] and rep["fit_lengths"] and rep["repair"]
    assert rep["num_samples"] == ev["num_samples"] == 1000 and rep["seed"] == ev["seed"] == 0
    assert rep["raw"]["num_connected"] == ev["num_connected"]
    assert rep["raw"]["num_valid"] == ev["num_valid"]
    assert rep["novelty_reference"]["matches_checkpoint"] is True
    if name != "model":
        return
    model = load_model(d / f"{name}.pt")
    model = model[0] if isinstance(model, tuple) else model
    again = sample(model, n=1000, seed=0).report
    for key in ("raw", "repaired", "status", "num_valid", "num_unique", "uniqueness"):
        assert again[key] == rep[key], key
    counts = dict(again["repair_counts"])
    # whether a degenerate fit ends "projected" or "pulled" (moved by < 1e-5) depends on the
    # last bits of SLSQP's arithmetic, which the BLAS thread count changes (the report was
    # written by the CLI with --threads 1): that count and the mean shift are compared loosely
    assert abs(counts.pop("offsets_pulled") - rep["repair_counts"]["offsets_pulled"]) <= 5
    assert counts.pop("mean_offset_shift") == pytest.approx(
        rep["repair_counts"]["mean_offset_shift"], rel=1e-4)
    assert all(rep["repair_counts"][k] == v for k, v in counts.items())


def _target_report(**kw):
    rep = {"target": "stiffness",
           "adjacency": {"accuracy_paper": 0.9991, "exact_match": 0.94},
           "geometry": {"r2_x": 0.9995, "r2_y": 0.9989, "r2_z": 0.9999},
           "property": {"r2": {n: 0.99 for n in STIFFNESS_NAMES}},
           "samples": {"validity_paper": 0.823}}
    rep.update(kw)
    return rep


def test_target_check_by_hand():
    rep = _target_report()
    rep["property"]["r2"]["C55"] = 0.9819
    t = target_check(rep)
    assert {k: v["met"] for k, v in t.items()} == {
        "adjacency_accuracy": True, "exact_match": False, "position_r2": False,
        "stiffness_r2": False, "validity_paper": True}   # 0.823 meets ">= 0.823"
    assert t["position_r2"]["value"] == 0.9989 and t["stiffness_r2"]["value"] == 0.9819
    assert t["exact_match"]["target"] == 0.95 and t["exact_match"]["higher_is_better"]
    text = format_target_check(t)
    assert "exact-lattice match" in text and "0.9400  (target >= 0.95: not met)" in text
    assert "0.8230  (target >= 0.823: met)" in text


def test_target_check_curves_missing_and_nan_values():
    assert "curve_nrmse" not in target_check(_target_report(target=None))  # a stiffness report
    curve = target_check(_target_report(target="curve", property={"nrmse": 0.045}, samples=None))
    assert "stiffness_r2" not in curve and "validity_paper" not in curve
    assert curve["curve_nrmse"]["met"] is True and not curve["curve_nrmse"]["higher_is_better"]
    assert target_check(_target_report(target="curve", property={"nrmse": 0.0451}))[
        "curve_nrmse"]["met"] is False
    rep = _target_report(geometry={"r2_x": 0.9995, "r2_y": None, "r2_z": 0.9999})
    rep["property"]["r2"]["C11"] = float("nan")
    t = target_check(rep)
    assert t["position_r2"] == {**t["position_r2"], "value": None, "met": None}
    assert t["stiffness_r2"]["value"] is None and t["stiffness_r2"]["met"] is None
    assert "n/a  (target >= 0.999: n/a)" in format_target_check(t)
