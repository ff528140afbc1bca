"""Tests of gnn_truss.comparison: paired statistics, paired bootstrap and the driver."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gnn_truss import design_space as ds
from gnn_truss.comparison import (
    compare_checkpoints,
    metric_values,
    paired_bootstrap,
    paired_statistics,
    paired_table,
)
from gnn_truss.corpus import load_corpus, save_compact
from gnn_truss.evaluation import (
    STIFFNESS_NAMES,
    adjacency_metrics,
    evaluate_checkpoint,
    nrmse_curves,
    position_r2,
    r2_per_component,
)
from gnn_truss.training import train

SHIPPED = Path(__file__).resolve().parents[1] / "datasets" / "default" / "raw" / "corpus.npz"
NAMES = ("p0", "p1", "p2")


def fake_outputs(seed, n=200, flip=0.01, noise=0.05, target="stiffness"):
    """Outputs of a made-up model on ``n`` made-up lattices (same truth for every seed)."""
    truth = np.random.default_rng(123)
    adj = (truth.random((n, ds.NUM_PAIRS)) < 0.05).astype(float)
    offset = truth.uniform(-0.5, 0.5, (n, ds.NUM_FREE_DOFS))
    true = truth.normal(size=(n, 3)) if target == "stiffness" else \
        np.cumsum(truth.random((n, 3)), axis=1)
    g = np.random.default_rng(seed)
    bits = np.where(g.random(adj.shape) < flip, 1 - adj, adj)
    logits = np.where(bits > 0, 2.0, -2.0)
    return {"logits": logits, "adj": adj, "offsets": offset + noise * g.normal(size=offset.shape),
            "offset": offset, "pred": true + noise * g.normal(size=true.shape), "true": true}


def value(stats, key):
    kind, s, _ = stats[key]
    return float(metric_values(kind, s.sum(0)))


# ------------------------------------------------------------------ statistics
@pytest.mark.parametrize("target", ["stiffness", "curve"])
def test_unit_weight_values_equal_the_evaluation_functions(target):
    out = fake_outputs(1, target=target)
    st = paired_statistics(out, target, NAMES)
    adj = adjacency_metrics(out["logits"], out["adj"])
    geo = position_r2(out["offsets"], out["offset"], out["adj"])
    r2 = r2_per_component(out["pred"], out["true"], NAMES)
    assert value(st, "adjacency accuracy (paper)") == pytest.approx(adj["accuracy_paper"],
                                                                    abs=1e-12)
    assert value(st, "exact-lattice match") == pytest.approx(adj["exact_match"], abs=1e-12)
    assert value(st, "edge F1") == pytest.approx(adj["edge_f1"], abs=1e-12)
    for a in "xyz":
        assert value(st, f"node-position R^2 {a}") == pytest.approx(geo[f"r2_{a}"], abs=1e-10)
    assert value(st, "offset R^2 (used nodes)") == pytest.approx(geo["r2_offsets"], abs=1e-10)
    for n in NAMES:
        assert value(st, f"R^2 {n}") == pytest.approx(r2[n], abs=1e-10)
    if target == "curve":
        assert value(st, "curve NRMSE") == pytest.approx(nrmse_curves(out["pred"], out["true"]),
                                                         abs=1e-12)
        assert st["curve NRMSE"][2] is False
    else:
        assert "curve NRMSE" not in st


def test_metric_values_by_hand():
    assert metric_values("mean", [3.0, 4.0]) == pytest.approx(0.75)
    assert np.isnan(metric_values("mean", [0.0, 0.0]))
    # TP 8, FP 2, FN 4: P = 0.8, R = 2/3, F1 = 2PR/(P+R) = 16/22
    assert metric_values("f1", [8.0, 2.0, 4.0]) == pytest.approx(16 / 22)
    assert metric_values("f1", [0.0, 0.0, 0.0]) == 1.0  # no edges at all, none predicted
    # y = (1, 2, 3), yhat = (1, 2, 4): SST = 2, SSE = 1
    assert metric_values("r2", [3.0, 6.0, 14.0, 1.0]) == pytest.approx(0.5)
    assert np.isnan(metric_values("r2", [3.0, 6.0, 12.0, 0.0]))  # constant truth
    np.testing.assert_allclose(metric_values("mean", [[1.0, 2.0], [2.0, 2.0]]), [0.5, 1.0])
    with pytest.raises(ValueError, match="kind"):
        metric_values("median", [1.0, 2.0])
    with pytest.raises(ValueError):
        metric_values("f1", [1.0, 2.0])


def test_statistics_refuse_bad_shapes():
    out = fake_outputs(0)
    with pytest.raises(ValueError, match="logits"):
        paired_statistics({**out, "logits": out["logits"][:, :10]}, "stiffness", NAMES)
    with pytest.raises(ValueError, match="offsets"):
        paired_statistics({**out, "offsets": out["offsets"][:-1]}, "stiffness", NAMES)
    with pytest.raises(ValueError, match="pred"):
        paired_statistics(out, "stiffness", NAMES[:2])


# ------------------------------------------------------------------ bootstrap
def test_identical_models_differ_by_exactly_zero():
    st = paired_statistics(fake_outputs(5), "stiffness", NAMES)
    res = paired_bootstrap(st, st, names=("A", "B"), draws=200)
    for m in res.values():
        assert m["difference"] == 0 and m["ci_low"] == 0 and m["ci_high"] == 0
        assert m["verdict"] == "no significant difference"


def test_a_clearly_better_model_wins_every_metric_and_lower_nrmse_is_better():
    good = paired_statistics(fake_outputs(1, n=400, flip=0.0, noise=0.01, target="curve"),
                             "curve", NAMES)
    bad = paired_statistics(fake_outputs(2, n=400, flip=0.02, noise=0.2, target="curve"),
                            "curve", NAMES)
    res = paired_bootstrap(good, bad, names=("good", "bad"), draws=300)
    assert {m["verdict"] for m in res.values()} == {"good"}
    assert res["curve NRMSE"]["difference"] < 0 and res["exact-lattice match"]["a"] == 1.0
    swapped = paired_bootstrap(bad, good, names=("bad", "good"), draws=300)
    assert {m["verdict"] for m in swapped.values()} == {"good"}
    assert all(m["ci_high"] < 0 for k, m in swapped.items() if k != "curve NRMSE")


def test_bootstrap_interval_matches_the_normal_theory_width():
    """For a mean metric the paired difference has standard error std(d) / sqrt(n): the 95 %
    percentile interval is 2 x 1.96 x that wide, to bootstrap noise (10 % at 2000 draws)."""
    g = np.random.default_rng(0)
    n = 3000
    xa, xb = (g.random(n) < 0.6).astype(float), (g.random(n) < 0.55).astype(float)
    one = np.ones(n)
    res = paired_bootstrap({"m": ("mean", np.stack([xa, one], 1), True)},
                           {"m": ("mean", np.stack([xb, one], 1), True)}, draws=2000, seed=1)
    m = res["m"]
    se = np.std(xa - xb, ddof=1) / np.sqrt(n)
    assert m["ci_high"] - m["ci_low"] == pytest.approx(2 * 1.96 * se, rel=0.10)
    assert m["ci_low"] < m["difference"] < m["ci_high"]
    assert m["difference"] == pytest.approx(xa.mean() - xb.mean(), abs=1e-12)
    # the same seed gives the same interval
    again = paired_bootstrap({"m": ("mean", np.stack([xa, one], 1), True)},
                             {"m": ("mean", np.stack([xb, one], 1), True)}, draws=2000, seed=1)
    assert again["m"] == m


def test_bootstrap_refuses_mismatched_inputs():
    a = paired_statistics(fake_outputs(0, n=50), "stiffness", NAMES)
    b = paired_statistics(fake_outputs(0, n=40), "stiffness", NAMES)
    with pytest.raises(ValueError, match="same 50 lattices"):
        paired_bootstrap(a, b)
    with pytest.raises(ValueError, match="draws"):
        paired_bootstrap(a, a, draws=5)
    with pytest.raises(ValueError, match="level"):
        paired_bootstrap(a, a, level=1.5)
    with pytest.raises(ValueError, match="share no metric"):
        paired_bootstrap({"x": a["edge F1"]}, {"y": a["edge F1"]})


# ------------------------------------------------------------------ driver
TINY = {"topology": 4, "shared": 8, "geometry": 4, "hidden": 16, "layers": 2, "readout": 64,
        "decoder_hidden": [32, 64], "offset_hidden": [32], "predictor_hidden": [32]}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A tiny GNN and a tiny MLP on the same 300 lattices, 1 epoch each."""
    tmp = tmp_path_factory.mktemp("cmprun")
    (tmp / "data" / "raw").mkdir(parents=True)
    save_compact(load_corpus(SHIPPED, limit=300), tmp / "data" / "raw" / "corpus.npz")
    for enc in ("gnn", "mlp"):
        cfg = {"data": {"root": str(tmp / "data"), "limit": 300},
               "model": {**TINY, "encoder": enc},
               "train": {"epochs": 1, "batch_size": 64, "device": "cpu", "seed": 0},
               "out": str(tmp / enc)}
        train(cfg, progress=False)
    return tmp


def train_tiny_mlp(out, seed=0, **data):
    """A tiny MLP-encoder VAE of 1 epoch with the data config ``data``; its best.pt."""
    cfg = {"data": data, "model": {**TINY, "encoder": "mlp"},
           "train": {"epochs": 1, "batch_size": 64, "device": "cpu", "seed": seed},
           "out": str(out)}
    train(cfg, progress=False)
    return Path(out) / "best.pt"


def test_compare_checkpoints_agrees_with_both_evaluation_reports(two_runs):
    a, b = two_runs / "gnn" / "best.pt", two_runs / "mlp" / "best.pt"
    res = compare_checkpoints(a, b, two_runs / "cmp", draws=100)
    assert res["names"] == ["gnn", "mlp"] and res["num_lattices"] == 30
    ra = evaluate_checkpoint(a, two_runs / "ea", n_samples=0)
    rb = evaluate_checkpoint(b, two_runs / "eb", n_samples=0)
    m = res["metrics"]
    for rep, side in ((ra, "a"), (rb, "b")):
        assert m["exact-lattice match"][side] == pytest.approx(rep["adjacency"]["exact_match"])
        assert m["edge F1"][side] == pytest.approx(rep["adjacency"]["edge_f1"])
        assert m["node-position R^2 y"][side] == pytest.approx(rep["geometry"]["r2_y"],
                                                               rel=1e-9)
        for c in STIFFNESS_NAMES:
            assert m[f"R^2 {c}"][side] == pytest.approx(rep["property"]["r2"][c], rel=1e-6)
    on_disk = json.loads((two_runs / "cmp" / "paired.json").read_text())
    assert on_disk["metrics"].keys() == m.keys() and on_disk["draws"] == 100
    table = (two_runs / "cmp" / "paired.md").read_text()
    assert table == paired_table(res) and table.startswith("| metric | gnn | mlp | gnn - mlp |")
    assert len(table.splitlines()) == 2 + len(m)


def test_compare_checkpoints_refuses_other_data_and_bad_arguments(two_runs, tmp_path):
    a = two_runs / "gnn" / "best.pt"
    ck = torch.load(two_runs / "mlp" / "best.pt", weights_only=True)
    ck["fingerprint"] = "0" * 40
    torch.save(ck, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="different data"):
        compare_checkpoints(a, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="split"):
        compare_checkpoints(a, a, split="bogus")
    with pytest.raises(ValueError, match="workers"):
        compare_checkpoints(a, a, workers=0)
    with pytest.raises(ValueError, match="names"):
        compare_checkpoints(a, two_runs / "mlp" / "best.pt", names=["x", "x"], limit=5)
    res = compare_checkpoints(a, a, limit=10, draws=50)  # same folder: named A and B
    assert res["names"] == ["A", "B"] and res["num_lattices"] == 10
    for m in res["metrics"].values():  # a model against itself: exactly no difference
        assert m["difference"] == m["ci_low"] == m["ci_high"] == 0
        assert m["verdict"] == "no significant difference"


def test_compare_checkpoints_symmetrised_matches_the_symmetrised_reports(two_runs, tmp_path):
    a, b = two_runs / "gnn" / "best.pt", two_runs / "mlp" / "best.pt"
    res = compare_checkpoints(a, b, draws=50, symmetrise="axes")
    assert res["symmetrise"] == "axes"
    plain = compare_checkpoints(a, b, draws=50)
    assert plain["symmetrise"] is None
    for side, ck in (("a", a), ("b", b)):
        rep = evaluate_checkpoint(ck, tmp_path / side, n_samples=0, symmetrise="axes")
        for c in STIFFNESS_NAMES:
            assert res["metrics"][f"R^2 {c}"][side] == pytest.approx(
                rep["property_symmetrised"]["r2"][c], rel=1e-6)
        # the reconstruction metrics are those of the symmetrised outputs too
        assert res["metrics"]["edge F1"][side] == pytest.approx(
            rep["adjacency_symmetrised"]["edge_f1"], rel=1e-9)
        assert res["metrics"]["exact-lattice match"][side] == pytest.approx(
            rep["adjacency_symmetrised"]["exact_match"], rel=1e-9)
    assert "symmetrised (axes)" in paired_table(res)
    assert "symmetrised" not in paired_table(plain)
    with pytest.raises(ValueError, match="symmetrise"):
        compare_checkpoints(a, b, symmetrise="mirrors")


def test_compare_with_the_predictor_symmetrised_matches_the_report(two_runs, tmp_path):
    """--symmetrise-predictor: the property metrics are those of evaluate's
    property_predictor_symmetrised block, the reconstruction the plain one pass's."""
    m = {k: v for k, v in TINY.items() if k != "predictor_hidden"}
    m.update(encoder="gnn", predictor_input="decoded", predictor_gnn_hidden=16,
             predictor_gnn_layers=2, predictor_gnn_readout=32)
    cfg = {"data": {"root": str(two_runs / "data"), "limit": 300}, "model": m,
           "train": {"epochs": 1, "batch_size": 64, "device": "cpu", "seed": 0,
                     "predictor_on": "graph", "init_from": str(two_runs / "gnn" / "best.pt"),
                     "freeze": ["encoder", "adj_decoder", "offset_decoder"]},
           "out": str(tmp_path / "dec")}
    train(cfg, progress=False)
    d, a = tmp_path / "dec" / "best.pt", two_runs / "gnn" / "best.pt"
    res = compare_checkpoints(d, d, draws=50, symmetrise_predictor="axes", names=["s", "t"])
    plain = compare_checkpoints(d, d, draws=50, names=["s", "t"])
    rep = evaluate_checkpoint(d, tmp_path / "e", n_samples=0, symmetrise_predictor="axes")
    assert res["symmetrise_predictor"] == "axes" and plain["symmetrise_predictor"] is None
    for c in STIFFNESS_NAMES:
        assert res["metrics"][f"R^2 {c}"]["a"] == pytest.approx(
            rep["property_predictor_symmetrised"]["r2"][c], rel=1e-6)
        assert res["metrics"][f"R^2 {c}"]["a"] != pytest.approx(
            plain["metrics"][f"R^2 {c}"]["a"], rel=1e-6)
    assert res["metrics"]["exact-lattice match"] == plain["metrics"]["exact-lattice match"]
    assert "predictor averaged" in paired_table(res)
    assert "predictor averaged" not in paired_table(plain)
    with pytest.raises(ValueError, match="reads the latent"):
        compare_checkpoints(d, a, symmetrise_predictor="axes")
    with pytest.raises(ValueError, match="does not combine"):
        compare_checkpoints(d, d, symmetrise_predictor="axes", symmetrise="axes")
    with pytest.raises(ValueError, match="symmetrise"):
        compare_checkpoints(d, d, symmetrise_predictor="all")


def test_compare_checkpoints_constrained_matches_the_constrained_reports(two_runs, tmp_path):
    a, b = two_runs / "gnn" / "best.pt", two_runs / "mlp" / "best.pt"
    res = compare_checkpoints(a, b, draws=50, constrained=True)
    assert res["constrained"] is True
    for side, ck in (("a", a), ("b", b)):
        rep = evaluate_checkpoint(ck, tmp_path / side, n_samples=0, constrained=True)
        for metric, key in (("exact-lattice match", "exact_match"), ("edge F1", "edge_f1")):
            assert res["metrics"][metric][side] == pytest.approx(
                rep["adjacency_constrained"][key], rel=1e-9)
        # the property is not affected by the decoding
        assert res["metrics"]["R^2 C11"][side] == pytest.approx(rep["property"]["r2"]["C11"],
                                                                rel=1e-6)
    assert "topology rules" in paired_table(res)


def test_compare_and_evaluate_read_the_constrained_logits(two_runs, tmp_path, monkeypatch):
    """The tiny models' decodings already pass the rules, so the search changes nothing; a
    stand-in decoding that negates every logit shows that both read its output."""
    import gnn_truss.decoding as decoding
    monkeypatch.setattr(decoding, "constrained_logits",
                        lambda lg, *a, **k: (-lg, np.zeros(len(lg), np.int8)))
    a, b = two_runs / "gnn" / "best.pt", two_runs / "mlp" / "best.pt"
    plain = compare_checkpoints(a, b, draws=20, limit=20)
    neg = compare_checkpoints(a, b, draws=20, limit=20, constrained=True)
    rep = evaluate_checkpoint(a, tmp_path, n_samples=0, limit=20, constrained=True)
    f1 = neg["metrics"]["edge F1"]["a"]
    assert f1 == pytest.approx(rep["adjacency_constrained"]["edge_f1"], rel=1e-9)
    assert f1 != pytest.approx(plain["metrics"]["edge F1"]["a"], rel=1e-3)


def test_compare_cli(two_runs, tmp_path, capsys):
    from gnn_truss.cli import main
    assert main(["compare", str(two_runs / "gnn" / "best.pt"), str(two_runs / "mlp" / "best.pt"),
                 "--names", "GNN", "MLP", "--draws", "50", "--out", str(tmp_path)]) == 0
    cap = capsys.readouterr()
    printed = cap.out
    assert cap.err.count("evaluate: 100%") == 2  # a progress bar per model
    assert "| metric | GNN | MLP | GNN - MLP | 95 % interval | verdict |" in printed
    assert (tmp_path / "paired.md").read_text() in printed
    assert main(["compare", str(two_runs / "gnn" / "best.pt"), str(two_runs / "mlp" / "best.pt"),
                 "--draws", "20", "--limit", "10", "--symmetrise", "axes",
                 "--constrained", "--no-progress"]) == 0
    cap = capsys.readouterr()
    printed = cap.out
    assert "evaluate:" not in cap.err
    assert "outputs symmetrised (axes), constrained decoding" in printed
    assert main(["compare", str(two_runs / "gnn" / "best.pt"), str(two_runs / "mlp" / "best.pt"),
                 "--draws", "20", "--limit", "10", "--refine-latent", "3",
                 "--refine-lr", "0.02"]) == 0
    printed = capsys.readouterr().out
    assert "latents refined (3 steps)" in printed and "step size 0.02" in printed
    assert main(["compare", str(two_runs / "gnn" / "best.pt"), str(two_runs / "mlp" / "best.pt"),
                 "--draws", "20", "--limit", "10", "--refine-latent", "3",
                 "--symmetrise", "axes"]) == 0
    printed = capsys.readouterr().out
    assert "outputs symmetrised (axes)" in printed and "latents refined (3 steps)" in printed
    assert main(["compare", str(two_runs / "gnn" / "best.pt"), str(tmp_path / "missing.pt")]) == 2
    assert "not found" in capsys.readouterr().err


def test_compare_unseen_uses_the_lattices_neither_checkpoint_saw(two_runs, tmp_path, capsys):
    """A checkpoint trained on the first 250 lattices (another corpus, another split) against
    the GNN of the first 300: refused without ``unseen``; with it, compared on the lattices of
    the 300-lattice test split that are in neither training nor validation split, counted here
    from the index splits (the corpus holds each lattice once)."""
    from gnn_truss.cli import main
    from gnn_truss.dataset import split_indices
    a = two_runs / "gnn" / "best.pt"
    b = train_tiny_mlp(tmp_path / "m250", seed=1, root=str(two_runs / "data"), limit=250)
    with pytest.raises(ValueError, match="--unseen"):
        compare_checkpoints(a, b)
    s300, s250 = split_indices(300, 0), split_indices(250, 0)
    seen = set(s250["train"]) | set(s250["val"])
    expected = [i for i in s300["test"] if i not in seen]
    assert 2 <= len(expected) < len(s300["test"])  # the check has something to drop
    res = compare_checkpoints(a, b, draws=50, unseen=True)
    assert res["num_lattices"] == len(expected) and res["unseen"] is True
    assert res["fingerprint"] != res["fingerprint_b"]
    # the same checkpoint twice: the whole test split is unseen and the values are the plain
    # comparison's
    plain = compare_checkpoints(a, two_runs / "mlp" / "best.pt", draws=50)
    same = compare_checkpoints(a, two_runs / "mlp" / "best.pt", draws=50, unseen=True)
    assert same["num_lattices"] == plain["num_lattices"] == len(s300["test"])
    for k, m in plain["metrics"].items():
        assert same["metrics"][k]["a"] == pytest.approx(m["a"], rel=1e-12), k
        assert same["metrics"][k]["b"] == pytest.approx(m["b"], rel=1e-12), k
    # the 250-lattice model's values on the unseen lattices equal its values on the lattices
    # picked by index from the 300-lattice corpus (its own normaliser reads them)
    from gnn_truss.comparison import _model_outputs, paired_statistics
    from gnn_truss.dataset import TargetNormalizer, TrussDataset
    from gnn_truss.evaluation import STIFFNESS_NAMES
    from gnn_truss.exploration import load_model
    model, ck = load_model(b)
    full = TrussDataset(two_runs / "data", split="all", limit=300)
    picked = full[torch.tensor(expected)]
    st = paired_statistics(_model_outputs(model, picked, "stiffness",
                                          TargetNormalizer.from_dict(ck["normalizer"])),
                           "stiffness", STIFFNESS_NAMES)
    own = compare_checkpoints(b, b, draws=20, unseen=True)  # the first checkpoint picks the split
    assert own["num_lattices"] == len(s250["test"])
    exact_b = res["metrics"]["exact-lattice match"]["b"]
    assert exact_b == pytest.approx(value(st, "exact-lattice match"))
    assert res["metrics"]["R^2 C11"]["b"] == pytest.approx(value(st, "R^2 C11"), rel=1e-9)
    assert main(["compare", str(a), str(b), "--draws", "20", "--unseen"]) == 0
    printed = capsys.readouterr().out
    assert f"{len(expected)} lattices" in printed and "neither checkpoint saw" in printed
    assert main(["compare", str(a), str(b), "--draws", "20"]) == 2
    assert "--unseen" in capsys.readouterr().err


def test_compare_unseen_with_a_checkpoint_of_a_corpus_that_grew(two_runs, tmp_path, capsys):
    """B trained on a 250-lattice corpus that then grew to 300 (its first 250 unchanged): B's
    own data no longer has its fingerprint; data_overrides_b {"limit": 250} (CLI
    --corpus-limit-b) rebuilds it, and the comparison keeps the lattices neither saw."""
    from gnn_truss.cli import main
    from gnn_truss.dataset import split_indices
    root = tmp_path / "grown"
    (root / "raw").mkdir(parents=True)
    save_compact(load_corpus(SHIPPED, limit=250), root / "raw" / "corpus.npz")
    b = train_tiny_mlp(tmp_path / "b", root=str(root))
    assert torch.load(b, weights_only=True)["num_lattices"] == 250  # what it was trained on
    save_compact(load_corpus(SHIPPED, limit=300), root / "raw" / "corpus.npz")  # it grew
    a = two_runs / "gnn" / "best.pt"
    with pytest.raises(ValueError, match="trained on different data"):
        compare_checkpoints(a, b, unseen=True)
    with pytest.raises(ValueError, match="needs unseen=True"):
        compare_checkpoints(a, b, data_overrides_b={"limit": 250})
    res = compare_checkpoints(a, b, draws=20, unseen=True, data_overrides_b={"limit": 250})
    s300, s250 = split_indices(300, 0), split_indices(250, 0)
    seen = set(s250["train"]) | set(s250["val"])
    assert res["num_lattices"] == sum(i not in seen for i in s300["test"])
    assert main(["compare", str(a), str(b), "--draws", "20", "--unseen",
                 "--corpus-limit-b", "250"]) == 0
    assert f"{res['num_lattices']} lattices" in capsys.readouterr().out


def test_fingerprint_prefix_finds_the_shard_end_that_holds_a_checkpoints_data():
    """fingerprint_prefix checks the ends of the recorded shards (in shard order, whatever the
    order of the meta keys), shifted down by up to the lattices packing dropped as repeats,
    and the whole corpus; a prefix that ends inside a shard, missing labels, or a corpus
    without a shard record give None."""
    from gnn_truss.exploration import corpus_fingerprint, fingerprint_prefix
    c = load_corpus(SHIPPED, limit=12)
    c.meta = {"shards": {"1": {"labelled": 4}, "0": {"labelled": 3}, "2": {"labelled": 5}}}
    for n in (3, 7, 12):
        assert fingerprint_prefix(c, corpus_fingerprint(c, "stiffness", n)) == n
    assert fingerprint_prefix(c, corpus_fingerprint(c, "stiffness", 5)) is None
    assert fingerprint_prefix(c, corpus_fingerprint(c, "stiffness", 7), "curve") is None
    # the time budget: with none left after the first candidate (the whole corpus), the
    # shard end 3 is never reached
    assert fingerprint_prefix(c, corpus_fingerprint(c, "stiffness", 3), budget_s=0.0) is None
    # one repeat dropped on packing (13 labelled, 12 kept): the ends may sit one lower
    c.meta = {"shards": {"0": {"labelled": 3}, "1": {"labelled": 5}, "2": {"labelled": 5}}}
    assert fingerprint_prefix(c, corpus_fingerprint(c, "stiffness", 7)) == 7
    assert fingerprint_prefix(c, corpus_fingerprint(c, "stiffness", 5)) is None
    c.meta = {}
    assert fingerprint_prefix(c, corpus_fingerprint(c, "stiffness", 7)) is None
    c.meta = {"shards": {"0": {"generated": 3}}}
    assert fingerprint_prefix(c, corpus_fingerprint(c, "stiffness", 3)) is None
    # a checkpoint's recorded num_lattices is tried first, shard record or not, and only
    # returned when that prefix has the fingerprint
    assert fingerprint_prefix(c, corpus_fingerprint(c, "stiffness", 5), first=5) == 5
    assert fingerprint_prefix(c, corpus_fingerprint(c, "stiffness", 5), first=6) is None
    assert fingerprint_prefix(c, corpus_fingerprint(c, "stiffness", 5), first=40) is None


def test_evaluate_names_the_corpus_limit_of_a_grown_corpus(tmp_path, capsys):
    """When the grown corpus records its shards, the fingerprint error names the prefix that
    holds the checkpoint's data, so the user can pass it as it stands, also for a checkpoint
    that does not record num_lattices (written before training saved it)."""
    from gnn_truss.cli import main
    root = tmp_path / "grown"
    (root / "raw").mkdir(parents=True)
    save_compact(load_corpus(SHIPPED, limit=250), root / "raw" / "corpus.npz")
    b = train_tiny_mlp(tmp_path / "b", root=str(root))
    old = torch.load(b, weights_only=True)
    del old["num_lattices"]  # the hint must come from the shard ends
    torch.save(old, b)
    grown = load_corpus(SHIPPED, limit=300)
    grown.meta = {"shards": {"0": {"labelled": 200}, "1": {"labelled": 50},
                             "2": {"labelled": 50}}}
    save_compact(grown, root / "raw" / "corpus.npz")  # it grew by one shard
    args = ["evaluate", str(b), "--samples", "0", "--no-progress", "--out", str(tmp_path / "e")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "trained on different data" in err and "first 250 lattices" in err
    assert "--corpus-limit 250" in err
    # the opposite slip: a limit on a checkpoint trained on the whole corpus
    c = train_tiny_mlp(tmp_path / "c", root=str(root))
    assert main(["evaluate", str(c), "--samples", "0", "--no-progress", "--corpus-limit", "250",
                 "--out", str(tmp_path / "e2")]) == 2
    assert "all 300 lattices" in capsys.readouterr().err


def test_evaluate_a_checkpoint_of_a_corpus_that_grew(tmp_path, capsys):
    """A checkpoint trained on a 250-lattice corpus that then grew to 300: evaluate refuses
    its grown data (fingerprint) and, with --corpus-limit 250, evaluates its own test split."""
    from gnn_truss.cli import main
    from gnn_truss.dataset import split_indices
    root = tmp_path / "grown"
    (root / "raw").mkdir(parents=True)
    save_compact(load_corpus(SHIPPED, limit=250), root / "raw" / "corpus.npz")
    b = train_tiny_mlp(tmp_path / "b", root=str(root))
    assert torch.load(b, weights_only=True)["num_lattices"] == 250  # what it was trained on
    grown = load_corpus(SHIPPED, limit=300)
    grown.meta = {}  # no shard record: the hint comes from the checkpoint's num_lattices
    save_compact(grown, root / "raw" / "corpus.npz")  # it grew
    args = ["evaluate", str(b), "--samples", "0", "--no-progress", "--out", str(tmp_path / "e")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "trained on different data" in err and "--corpus-limit 250" in err
    assert main(args + ["--corpus-limit", "250"]) == 0
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert report["num_lattices"] == len(split_indices(250, 0)["test"])
    out = capsys.readouterr().out  # the one-pass figures against the paper's, printed too
    assert "one pass against the paper's figures:" in out
    exact = report["targets"]["exact_match"]
    assert "exact-lattice match" in out and f"{exact['value']:.4f}  (target >= 0.95" in out


def test_compare_other_split_seed_needs_unseen_and_uses_both_splits(two_runs, tmp_path):
    """The same corpus split with another seed has the same fingerprint, but one model's test
    lattices are the other's training lattices: the plain comparison refuses, the unseen one
    removes the second model's own training and validation lattices (counted from the index
    splits)."""
    from gnn_truss.dataset import split_indices
    a = two_runs / "gnn" / "best.pt"
    b = train_tiny_mlp(tmp_path / "seed1", root=str(two_runs / "data"), limit=300, split_seed=1)
    assert torch.load(a, weights_only=True)["fingerprint"] == \
        torch.load(b, weights_only=True)["fingerprint"]
    with pytest.raises(ValueError, match="split the data differently"):
        compare_checkpoints(a, b)
    s0, s1 = split_indices(300, 0), split_indices(300, 1)
    seen = set(s1["train"]) | set(s1["val"])
    expected = [i for i in s0["test"] if i not in seen]
    res = compare_checkpoints(a, b, draws=20, unseen=True)
    assert res["num_lattices"] == len(expected)
    assert res["excluded"] == len(s0["test"]) - len(expected) > 0
    assert f"({res['excluded']} left out as seen)" in paired_table(res)


def test_compare_other_split_mode_needs_unseen(two_runs, tmp_path):
    """A content split (data.split_by) of the same corpus is another split: refused without
    --unseen; with it, the second model's training and validation lattices are left out; a
    checkpoint written before data.split_by existed counts as a permutation split."""
    from gnn_truss.corpus import load_corpus
    from gnn_truss.dataset import corpus_split, split_indices
    a = two_runs / "gnn" / "best.pt"
    b = train_tiny_mlp(tmp_path / "content", root=str(two_runs / "data"), limit=300,
                       split_by="content")
    with pytest.raises(ValueError, match="split_by"):
        compare_checkpoints(a, b)
    corpus = load_corpus(two_runs / "data" / "raw" / "corpus.npz", limit=300)
    s1 = corpus_split(corpus, split_by="content")
    seen = set(s1["train"]) | set(s1["val"])
    expected = [i for i in split_indices(300, 0)["test"] if i not in seen]
    res = compare_checkpoints(a, b, draws=20, unseen=True)
    assert res["num_lattices"] == len(expected)
    old = torch.load(a, weights_only=True)
    old["config"]["data"].pop("split_by", None)
    torch.save(old, tmp_path / "old.pt")
    assert compare_checkpoints(tmp_path / "old.pt", a, draws=20)["num_lattices"] == 30


def test_prefix_split_successor_is_clean_against_its_warm_start(two_runs, tmp_path):
    """A model trained on the permutation split of the first 200 lattices and one trained on
    all 300 with split_by "prefix:200": the second one's test split holds none of the first
    one's training or validation lattices, so --unseen leaves none out, and it keeps the first
    one's 20 test lattices."""
    from gnn_truss.corpus import load_corpus
    from gnn_truss.dataset import corpus_split, split_indices
    root = str(two_runs / "data")
    old = train_tiny_mlp(tmp_path / "old", root=root, limit=200)
    new = train_tiny_mlp(tmp_path / "new", root=root, limit=300, split_by="prefix:200")
    with pytest.raises(ValueError, match="--unseen"):
        compare_checkpoints(new, old)  # other data and split: only with unseen
    res = compare_checkpoints(new, old, draws=20, unseen=True,
                              data_overrides_b={"limit": 200})
    test = corpus_split(load_corpus(two_runs / "data" / "raw" / "corpus.npz", limit=300),
                        split_by="prefix:200")["test"]
    assert res["excluded"] == 0 and res["num_lattices"] == len(test)
    assert set(split_indices(200, 0)["test"]) <= set(test.tolist())


def test_lattice_keys_ignore_stored_precision_and_signed_zeros(two_runs):
    """A lattice read with float64 offsets (as the published import stores them) or with a
    -0.0 offset has the key of its float32 copy."""
    from gnn_truss.comparison import lattice_keys
    from gnn_truss.dataset import TrussDataset
    data = TrussDataset(two_runs / "data", split="test", limit=300)
    keys = lattice_keys(data)
    assert len(set(keys)) == len(keys)  # distinct lattices, distinct keys
    g = data[0].clone()
    g.offset64 = g.offset64 + 1e-12 * (g.offset64 != 0)  # float64 noise below float32's step
    g.offset64 = torch.where(g.offset64 == 0, -0.0 * torch.ones_like(g.offset64), g.offset64)
    assert torch.signbit(g.offset64).any()
    assert lattice_keys([g]) == keys[:1]
    g.offset64 = g.offset64 + 1e-3 * (g.offset64 != 0)  # a different lattice
    assert lattice_keys([g]) != keys[:1]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["paired.json", "paired_constrained.json",
                                  "paired_refined.json"])
def test_shipped_paired_comparison_is_reproduced(monkeypatch, name):
    """`datasets/checkpoints/default/paired.json` (GNN against the MLP baseline, whole test
    split), its constrained-decoding twin and the one at refined latents come out again from
    the two shipped checkpoints."""
    root = Path(__file__).resolve().parents[1]
    d = root / "datasets" / "checkpoints" / "default"
    shipped = json.loads((d / name).read_text())
    assert shipped["constrained"] is (name == "paired_constrained.json")
    monkeypatch.chdir(root)  # the checkpoints' configs name the corpus relative to the repo
    res = compare_checkpoints(d / "model.pt", d / "mlp_baseline.pt", names=shipped["names"],
                              draws=shipped["draws"], seed=shipped["seed"],
                              constrained=shipped["constrained"],
                              refine_latent=shipped.get("refine_latent"),
                              refine_lr=shipped.get("refine_lr", 0.01))
    assert res["num_lattices"] == shipped["num_lattices"] == 20000
    for k, m in shipped["metrics"].items():
        got = res["metrics"][k]
        # another CPU may round a logit within ~1e-6 of 0 the other way: one lattice moves
        # the exact-match rate by 5e-5; everything else moves by far less
        tol = 1e-4 if k == "exact-lattice match" else 1e-5
        if shipped.get("refine_latent"):  # 100 Adam steps carry rounding further
            tol *= 5
        for key in ("a", "b", "difference", "ci_low", "ci_high"):
            assert got[key] == pytest.approx(m[key], abs=tol), (k, key)
        assert got["verdict"] == m["verdict"], k


def test_compare_and_evaluate_refined_latents_agree_with_refine_latent(two_runs, tmp_path):
    """The refined blocks of the report and the refined paired comparison are the metrics of
    the decodings of refine_latent's latents, computed here directly."""
    from torch_geometric.data import Batch

    from gnn_truss.dataset import TrussDataset
    from gnn_truss.exploration import load_model
    from gnn_truss.nn.vae import refine_latent
    a, b = two_runs / "gnn" / "best.pt", two_runs / "mlp" / "best.pt"
    res = compare_checkpoints(a, b, draws=50, limit=20, refine_latent=15)
    rep = evaluate_checkpoint(a, tmp_path, n_samples=0, limit=20, refine_latent=15)
    assert rep["adjacency_refined"]["refine_steps"] == 15 and res["refine_latent"] == 15
    model, _ = load_model(a)
    batch = Batch.from_data_list(list(TrussDataset(two_runs / "data", split="test",
                                                   limit=300))[:20])
    with torch.no_grad():
        mu = model(batch, sample=False)["mu"]
    z = refine_latent(model, mu, batch.adj, batch.offset, steps=15)
    with torch.no_grad():
        logits = model.decode(z)[0]
    exact = float(((logits > 0).float() == batch.adj).all(-1).float().mean())
    assert rep["adjacency_refined"]["exact_match"] == pytest.approx(exact, abs=1e-12)
    assert res["metrics"]["exact-lattice match"]["a"] == pytest.approx(exact, abs=1e-12)
    assert res["metrics"]["edge F1"]["a"] == pytest.approx(
        rep["adjacency_refined"]["edge_f1"], rel=1e-9)
    assert rep["geometry_refined"]["r2_offsets"] == pytest.approx(
        res["metrics"]["offset R^2 (used nodes)"]["a"], rel=1e-6)
    assert "refined" in paired_table(res)
    assert rep["summary"]["adjacency_refined"]["strict_exact_match"] == \
        rep["adjacency_refined"]["exact_match"]
    # both: each symmetric copy refined, then averaged; the report's block is the same
    res = compare_checkpoints(a, b, draws=50, limit=20, refine_latent=15, symmetrise="axes")
    rep = evaluate_checkpoint(a, tmp_path, n_samples=0, limit=20, refine_latent=15,
                              symmetrise="axes")
    block = rep["adjacency_symmetrised_refined"]
    assert block["refine_steps"] == 15 and block["symmetrise"] == "axes"
    assert res["metrics"]["exact-lattice match"]["a"] == pytest.approx(block["exact_match"],
                                                                        abs=1e-12)
    for name, r2 in rep["property_symmetrised_refined"]["r2"].items():
        assert res["metrics"][f"R^2 {name}"]["a"] == pytest.approx(r2, rel=1e-6, abs=1e-9)
    assert rep["summary"]["property_symmetrised_refined"]["r2_mean"] == \
        rep["property_symmetrised_refined"]["r2_mean"]
    assert rep["property_symmetrised_refined"]["r2_mean"] != rep["property_refined"]["r2_mean"]
    for bad in (-2, 1.5, True):
        with pytest.raises(ValueError, match="refine_latent"):
            compare_checkpoints(a, b, limit=5, refine_latent=bad)
        with pytest.raises(ValueError, match="refine_latent"):
            evaluate_checkpoint(a, tmp_path, n_samples=0, limit=5, refine_latent=bad)
    for lr in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="step size of refine_latent"):
            evaluate_checkpoint(a, tmp_path, n_samples=0, limit=5, refine_latent=3,
                                refine_lr=lr)
    # 0 steps is off: the plain outputs, no refined blocks
    off = evaluate_checkpoint(a, tmp_path / "off", n_samples=0, limit=20, refine_latent=0)
    assert "adjacency_refined" not in off and "adjacency_refined" not in off["summary"]
    plain = compare_checkpoints(a, b, draws=50, limit=20)
    zero = compare_checkpoints(a, b, draws=50, limit=20, refine_latent=0)
    assert zero["refine_latent"] is None and zero["metrics"] == plain["metrics"]
