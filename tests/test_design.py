"""Tests of gnn_truss.design: objectives, the latent optimisation loop, FE verification,
ranking, the writer and the CLI glue. A tiny model and a small seeded corpus are built in
process (no shipped checkpoint, no runs/ or datasets/ contents)."""
import argparse
import csv
import json
import math

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from gnn_truss import design_space as ds
from gnn_truss.corpus import Corpus, pack_adjacency, save_compact
from gnn_truss.dataset import TargetNormalizer
from gnn_truss.exploration import topology_hash
from gnn_truss.design import (
    Candidate, Objective, add_design_arguments, canonical_property, decode_designs, design_main,
    encode_trusses, improvement_percent, load_target, optimize_latents, parse_objective,
    path_axes, predict_decoded, repair_design, run_design, select_starts,
    select_parents, spans_after_repair, trust_region, write_design)
from gnn_truss.fe.homogenization import homogenize, homogenize_batch
from gnn_truss.generator import generate, random_subgraph
from gnn_truss.graph import truss_to_data
from gnn_truss.io import load_lattice
from gnn_truss.nn import build_model
from gnn_truss.truss import Truss

SMALL = {"topology": 3, "shared": 5, "geometry": 2, "hidden": 16, "layers": 2, "readout": 32,
         "mlp_hidden": [32, 32], "decoder_hidden": [32, 64], "offset_hidden": [16],
         "predictor_hidden": [16]}
#: a cubic stiffness: C11 = a, C12 = b, C44 = c
A_, B_, C_ = 0.05, 0.01, 0.005
CUBIC = np.array([A_, B_, B_, A_, B_, A_, C_, C_, C_])


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def corpus():
    """120 generator lattices (seeded) with their linear FE stiffness."""
    trusses = generate(120, np.random.default_rng(0))
    res = homogenize_batch(trusses, workers=1)
    assert res.ok.all()
    adj = pack_adjacency(np.stack([t.adjacency for t in trusses]))
    off = np.stack([t.free_offsets for t in trusses])
    return Corpus(adj, off, res.S, None, {})


@pytest.fixture(scope="module")
def model_and_norm(corpus):
    torch.manual_seed(0)
    model = build_model(SMALL).eval()
    return model, TargetNormalizer.fit(corpus.stiffness)


# --------------------------------------------------------------------------- objectives

def test_canonical_property_and_aliases():
    assert canonical_property("E22") == "E2"
    assert canonical_property("e11") == "E1"
    assert canonical_property("E3") == "E3"
    assert canonical_property("nu21") == "nu21"
    assert canonical_property("K_V/G_V") == "KV_GV"
    assert canonical_property("AU") == "A_U"
    with pytest.raises(ValueError, match="unknown property"):
        canonical_property("E44")


def test_parse_objective_kinds():
    o = parse_objective("max-E22")
    assert (o.kind, o.prop, o.label) == ("max", "E2", "stiffness")
    assert parse_objective("min-nu21").prop == "nu21"
    assert parse_objective("max-KV_GV").prop == "KV_GV"
    assert parse_objective("match-stiffness", CUBIC.tolist()).kind == "match-stiffness"
    assert parse_objective("match-stiffness", {"E11": 0.05}).kind == "match-constants"
    c = parse_objective("match-curve", list(range(13)))
    assert (c.kind, c.label, c.label_size) == ("match-curve", "curve", 13)


@pytest.mark.parametrize("spec, target, match", [
    ("maximise-E2", None, "unknown objective"),
    ("E2", None, "objective must look like"),
    ("max-E9", None, "unknown property"),
    ("max-E2", [1.0], "takes no target"),
    ("match-foo", [1.0], "unknown objective"),
    ("match-stiffness", None, "needs a target"),
    ("match-stiffness", [0.05] * 8, "needs 9 components"),
    ("match-stiffness", [float("nan")] * 9, "NaN or inf"),
    ("match-stiffness", [0.01, 0.05, 0.05, 0.01, 0.05, 0.01, 0.01, 0.01, 0.01],
     "not positive definite"),
    ("match-stiffness", {"E7": 0.1}, "unknown property"),
    ("match-stiffness", {"E1": 0.0}, "must be positive"),
    ("match-stiffness", {}, "empty"),
    ("match-stiffness", "abc", "list of numbers"),
    ("match-curve", [1.0] * 12, "13 stresses"),
    ("match-curve", [1.0] * 13, "constant"),
    ("match-curve", [1.0] * 12 + [float("inf")], "NaN or inf"),
])
def test_parse_objective_rejects_bad_input(spec, target, match):
    with pytest.raises(ValueError, match=match):
        parse_objective(spec, target)


def test_objective_values_by_hand():
    E = (A_ - B_) * (A_ + 2 * B_) / (A_ + B_)  # cubic Young's modulus
    nu = B_ / (A_ + B_)
    kv, gv = (A_ + 2 * B_) / 3, (A_ - B_ + 3 * C_) / 5
    lab = CUBIC[None]
    assert np.isclose(parse_objective("max-E22").value(lab)[0], E, rtol=1e-12)
    assert np.isclose(parse_objective("max-E22").score(lab)[0], -E, rtol=1e-12)
    assert np.isclose(parse_objective("min-nu21").score(lab)[0], nu, rtol=1e-12)
    assert np.isclose(parse_objective("max-KV_GV").value(lab)[0], kv / gv, rtol=1e-12)
    # torch: same numbers, differentiable
    t = torch.tensor(lab, requires_grad=True)
    v = parse_objective("max-E2").value(t)
    assert torch.isclose(v, torch.tensor([E], dtype=torch.float64)).all()
    v.sum().backward()
    assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    # match-stiffness: RMS asinh distance
    ms = parse_objective("match-stiffness", CUBIC.tolist())
    assert ms.value(lab)[0] == 0
    ref = np.sqrt(np.mean((np.arcsinh(2 * CUBIC / 1e-4) - np.arcsinh(CUBIC / 1e-4)) ** 2))
    assert np.isclose(ms.value(2 * lab)[0], ref)
    # match-constants: relative error for E1, absolute for nu21
    mc = parse_objective("match-stiffness", {"E1": 0.05, "nu21": 0.2})
    ref = np.sqrt((((E - 0.05) / 0.05) ** 2 + (nu - 0.2) ** 2) / 2)
    assert np.isclose(mc.value(lab)[0], ref)
    # match-curve: NRMSE = RMSE / (max - min of the target)
    target = np.arange(13.0)
    mcur = parse_objective("match-curve", target.tolist())
    assert np.isclose(mcur.value((target + 1.2)[None])[0], 0.1)
    # NaN labels (failed FE) give NaN, not an error
    assert np.isnan(parse_objective("max-E1").value(np.full((1, 9), np.nan))[0])


def test_improvement_percent():
    assert np.isclose(improvement_percent(parse_objective("max-E1"), 1.25 * CUBIC, CUBIC), 25)
    # nu is scale-invariant: change the ratio b / a for a more negative nu
    obj = parse_objective("min-nu21")
    ref = np.array([1.0, -0.2, 0, 1.0, 0, 1.0, 0.3, 0.3, 0.3])
    design = np.array([1.0, -0.26, 0, 1.0, 0, 1.0, 0.3, 0.3, 0.3])
    nu_r, nu_d = obj.value(ref[None])[0], obj.value(design[None])[0]
    assert nu_d < nu_r < 0
    assert np.isclose(improvement_percent(obj, design, ref), 100 * (nu_r - nu_d) / abs(nu_r))
    cur = parse_objective("match-curve", np.arange(13.0).tolist())
    assert np.isclose(improvement_percent(cur, np.arange(13.0) + 0.6, np.arange(13.0) + 1.2),
                      50.0)


def test_load_target(tmp_path):
    assert load_target("[1, 2, 3]") == [1, 2, 3]
    assert load_target('{"E1": 0.05}') == {"E1": 0.05}
    (tmp_path / "t.json").write_text("[0.1, 0.2]")
    assert load_target(str(tmp_path / "t.json")) == [0.1, 0.2]
    (tmp_path / "t.csv").write_text("0.1, 0.2\n0.3")
    assert load_target(str(tmp_path / "t.csv")) == [0.1, 0.2, 0.3]
    np.save(tmp_path / "t.npy", np.arange(3.0))
    assert load_target(str(tmp_path / "t.npy")) == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="neither JSON"):
        load_target("[1, 2")
    with pytest.raises(ValueError, match="not found"):
        load_target(str(tmp_path / "missing.json"))


def test_select_starts_orders_by_score(corpus):
    obj = parse_objective("max-E2")
    idx = select_starts(obj, corpus.stiffness, 10)
    ref = np.argsort(obj.score(corpus.stiffness), kind="stable")[:10]
    assert np.array_equal(idx, ref)
    assert len(select_starts(obj, corpus.stiffness, 10_000)) == len(corpus)


def test_path_axes():
    assert path_axes(parse_objective("max-E22")) == ("E1", "E2")
    assert path_axes(parse_objective("min-nu21")) == ("nu12", "nu21")
    assert path_axes(parse_objective("max-KV_GV")) == ("G_V", "KV_GV")


# --------------------------------------------------------------------------- loop

def _decoded_near_trusses(model, z):
    """The thresholded lattices decoded from ``z`` without the node pairs that can never be
    beams (offsets of the nodes this leaves unused zeroed); at least one has a beam."""
    near = ds.edges_to_adjacency(ds.NEAR_NEIGHBOUR_EDGES)
    trusses = [Truss(t.adjacency & near, t.offsets * (t.adjacency & near).any(1)[:, None])
               for t in decode_designs(model, z)]
    assert any(t.num_edges for t in trusses)
    return trusses


def test_predict_decoded_is_the_prediction_for_the_decoded_lattice(model_and_norm):
    """Straight-through: the loop's prediction equals encode -> predict of the thresholded
    lattice (without the pairs that can never be beams, which the dense encoder ignores and
    the repair drops) through the ordinary (sparse) encoder."""
    model, norm = model_and_norm
    z = torch.randn(6, model.sizes.total)
    with torch.no_grad():
        pred = predict_decoded(model, norm, z)
        trusses = _decoded_near_trusses(model, z)
        mu, _ = model.encode(Batch.from_data_list([truss_to_data(t) for t in trusses]))
        ref = norm.inverse(model.predict(mu))
    assert torch.allclose(pred, ref, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("relax", ["straight-through", "soft"])
def test_optimization_reduces_the_predicted_score(corpus, model_and_norm, relax):
    model, norm = model_and_norm
    obj = parse_objective("max-E2")
    idx = select_starts(obj, corpus.stiffness, 6)
    z0 = encode_trusses(model, [corpus.truss(int(i)) for i in idx])
    tr = optimize_latents(model, norm, obj, z0, steps=40, lr=0.05, relax=relax, record_every=5)
    assert tr.best_z.shape == z0.shape
    assert list(tr.steps) == list(range(0, 41, 5))
    assert tr.labels.shape == (9, 6, 9) and tr.scores.shape == (9, 6)
    start = tr.scores[0]
    ok = np.isfinite(start)
    assert np.all(tr.best_score[ok] <= start[ok])
    assert np.nanmin(tr.best_score) < np.nanmin(start)  # it found something better
    assert np.nanmean(tr.scores[-1]) < np.nanmean(start)


def test_trust_region(corpus, model_and_norm):
    _, norm = model_and_norm
    lo, hi = trust_region(norm, corpus.stiffness, 1.5)
    y = norm.transform(corpus.stiffness)
    assert np.allclose(lo, y.min(0) - 1.5) and np.allclose(hi, y.max(0) + 1.5)
    with pytest.raises(ValueError, match="trust margin"):
        trust_region(norm, corpus.stiffness, -1.0)


def test_iterates_outside_the_trust_region_are_never_kept(corpus, model_and_norm):
    model, norm = model_and_norm
    z0 = torch.randn(4, model.sizes.total)
    far = (np.full(9, 50.0), np.full(9, 51.0))  # no prediction gets there
    tr = optimize_latents(model, norm, parse_objective("max-E2"), z0, steps=5, bounds=far)
    assert np.all(np.isinf(tr.best_score)) and np.all(tr.best_step == 0)
    assert np.all(np.isnan(tr.scores))
    wide = (np.full(9, -50.0), np.full(9, 50.0))
    tr = optimize_latents(model, norm, parse_objective("max-E2"), z0, steps=5, bounds=wide)
    ref = optimize_latents(model, norm, parse_objective("max-E2"), z0, steps=5)
    assert np.array_equal(tr.best_score, ref.best_score)


def test_optimization_does_not_touch_the_model(corpus, model_and_norm):
    model, norm = model_and_norm
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimize_latents(model, norm, parse_objective("min-nu21"), torch.randn(3, model.sizes.total),
                     steps=5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_curve_objective_needs_a_curve_model(model_and_norm):
    model, norm = model_and_norm
    obj = parse_objective("match-curve", np.linspace(0, 1e-3, 13).tolist())
    with pytest.raises(ValueError, match="curve labels"):
        optimize_latents(model, norm, obj, torch.zeros(2, model.sizes.total), steps=1)


# --------------------------------------------------------------------------- repair

def test_repair_design_drops_dangling_beams_and_stray_components():
    sc = Truss.elementary("sc")
    triangle = [(0, 1), (0, 9), (1, 9)]  # a closed stray component
    dangling = [(13, 26)]  # the body node hangs on one beam
    messy = Truss.from_edges(list(ds.ELEMENTARY_LATTICES["sc"]) + triangle + dangling)
    assert messy.validate()
    fixed = repair_design(messy)
    assert fixed == sc and fixed.is_valid
    assert repair_design(sc) == sc


def test_spans_after_repair_agrees_with_repair_design():
    rng = np.random.default_rng(0)
    trusses = [random_subgraph(rng, p_edge=rng.uniform(0.03, 0.2)) for _ in range(150)]
    adj = torch.tensor(np.stack([t.adjacency for t in trusses]), dtype=torch.float32)
    off = torch.tensor(np.stack([t.free_offsets for t in trusses]))
    proxy = spans_after_repair(adj, off).numpy()
    ref = []
    for t in trusses:
        r = repair_design(t)
        ref.append(r.num_edges > 0 and "spans_cell" not in r.validate())
    assert 10 < proxy.sum() < 140  # both outcomes occur
    assert np.array_equal(proxy, np.array(ref))


# --------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def design_run(corpus, model_and_norm, tmp_path_factory):
    model, norm = model_and_norm
    obj = parse_objective("max-E22")
    result = run_design(model, norm, corpus, obj, starts=5, steps=12, lr=0.05,
                        path_candidates=3, refine_rounds=2, refine_parents=2,
                        refine_children=6, workers=1, polish_topology_rate=0.0)
    out = tmp_path_factory.mktemp("design")
    summary = write_design(result, out, corpus.stiffness, designs=4, figures=True, exports=2,
                           cell_size=5.0)
    return result, out, summary


def test_exports_are_the_ranked_designs(design_run):
    from gnn_truss.export import has_mesh_boolean, mesh_check, read_stl, truss_from_json
    result, out, summary = design_run
    ok = [c for c in result.candidates if c.status == "ok"][:2]
    assert [e["rank"] for e in summary["exports"]] == list(range(1, len(ok) + 1))
    for e, c in zip(summary["exports"], ok):
        doc = json.loads((out / "exports" / e["json"]).read_text())
        assert doc["cell_size"] == 5.0
        t = truss_from_json(doc)
        assert t.canonical_hash() == c.truss.canonical_hash()
        assert np.allclose(homogenize(t).S, c.label, rtol=1e-8, atol=1e-12)  # same lattice
        v, f, _ = read_stl(out / "exports" / e["stl"])
        assert len(f) == e["triangles"] > 0
        pad = 0.05 * 5.0  # struts on the cell faces stick out by about their radius
        assert -pad <= v.min() and v.max() <= 5.0 + pad and np.ptp(v) > 4.0  # a cell of side 5
        if has_mesh_boolean():
            assert e["watertight"] and mesh_check(v, f)["watertight"]
    if ok:
        assert (out / "designs.png").stat().st_size > 0


def test_every_candidate_is_fe_verified_and_ranked(design_run):
    result, _, _ = design_run
    refined = sum(c.source == "refine" for c in result.candidates)
    polished = [c for c in result.candidates if c.source == "polish"]
    assert refined > 0  # the refinement found lattices the gradient stage did not
    assert 0 < len(polished) <= 3  # the polish (default for stiffness) improved a design
    assert result.num_candidates == 5 * (1 + 3) + refined + len(polished)
    assert {c.step for c in result.candidates if c.source == "refine"} <= {13, 14}
    for p in polished:  # same topology as a design of its run, and better than all of them
        parents = [c for c in result.candidates if c.source != "polish" and c.run == p.run
                   and np.array_equal(c.truss.adjacency, p.truss.adjacency)]
        assert parents and p.fe_score < min(c.fe_score for c in parents)
        assert p.step == 12 + 2 + 1 and math.isnan(p.predicted_value)
    assert sum(c.status == "ok" for c in result.candidates) >= 3
    assert len(result.candidates) <= result.num_candidates
    hashes = [c.truss.canonical_hash() for c in result.candidates]
    assert len(set(hashes)) == len(hashes)  # deduplicated
    scores = [c.fe_score for c in result.candidates]
    assert scores == sorted(scores)  # ranked by the FE objective
    for c in result.candidates:
        if c.status == "ok":
            ref = homogenize(c.truss)
            assert ref.ok
            assert np.allclose(c.label, ref.S, rtol=1e-8, atol=1e-12)
            assert np.isclose(c.fe_value, parse_objective("max-E2").value(ref.S[None])[0])
            assert np.isclose(c.improvement, 100 * (c.fe_value - result.dataset_best_value)
                              / abs(result.dataset_best_value))
        else:
            assert c.fe_score == math.inf and np.isnan(c.fe_value)
    assert result.best is None or result.best is result.candidates[0]


def _seed_candidates(corpus, n=4):
    """FE-verified candidates made from the first ``n`` corpus lattices."""
    from gnn_truss.design import _verify_and_rank
    obj = parse_objective("max-E22")
    trusses = [corpus.truss(i) for i in range(n)]
    pool = {"decoded": trusses, "repaired": trusses, "runs": np.arange(n),
            "steps": np.zeros(n, int), "source": np.array(["best"] * n),
            "predicted": np.zeros(n), "hashes": [t.canonical_hash() for t in trusses]}
    cands, _, _ = _verify_and_rank(obj, pool, corpus.stiffness[0], 0.15, 1, 0)
    return obj, cands


def test_refine_candidates_is_elitist_verified_and_seeded(corpus, model_and_norm):
    from gnn_truss.design import refine_candidates
    model, norm = model_and_norm
    obj, seeds = _seed_candidates(corpus)
    out, n, _ = refine_candidates(model, norm, obj, seeds, corpus.stiffness[0], rounds=3,
                                  parents=2, children=8, workers=1, seed=1)
    assert n == len(out) - len(seeds) > 0
    hashes = [c.truss.canonical_hash() for c in out]
    assert len(set(hashes)) == len(hashes)  # never the same lattice twice
    assert {c.truss.canonical_hash() for c in seeds} <= set(hashes)  # nothing lost
    scores = [c.fe_score for c in out]
    assert scores == sorted(scores) and scores[0] <= min(c.fe_score for c in seeds)
    for c in out:
        if c.source == "refine" and c.status == "ok":
            assert np.allclose(c.label, homogenize(c.truss).S, rtol=1e-8, atol=1e-12)
            assert c.step in (1, 2, 3) and c.run in (0, 1, 2, 3)
    again, _, _ = refine_candidates(model, norm, obj, seeds, corpus.stiffness[0], rounds=3,
                                    parents=2, children=8, workers=1, seed=1)
    assert [c.truss.canonical_hash() for c in again] == hashes  # seeded


def test_refine_candidates_tiny_steps_give_the_decodes_of_the_parents(corpus, model_and_norm):
    # with steps of 1e-12 (below float32 resolution) every child is its parent's latent mean:
    # one round verifies exactly the distinct repaired decodes of the parents that are not
    # seeds yet (decoded as refine decodes them, 4 children per parent in one batch: a
    # batch of another size may round a logit near 0 the other way on some CPUs)
    from gnn_truss.design import refine_candidates
    model, norm = model_and_norm
    obj, seeds = _seed_candidates(corpus, n=6)
    ranked = sorted((c for c in seeds if c.status == "ok"), key=lambda c: (c.fe_score, c.run,
                                                                          c.step))
    parents = select_parents(ranked, 3)  # the default: one parent per topology
    mu = encode_trusses(model, [c.truss for c in parents]).cpu()
    own = [repair_design(t) for t in decode_designs(model, mu.repeat_interleave(4, 0))]
    expected = {t.canonical_hash() for t in own if t.num_edges} - \
        {c.truss.canonical_hash() for c in seeds}
    out, n, _ = refine_candidates(model, norm, obj, seeds, corpus.stiffness[0], rounds=1,
                                  parents=3, children=4, sigma=(1e-12, 1e-12), workers=1)
    new = {c.truss.canonical_hash() for c in out if c.source == "refine"}
    assert n == len(new) == len(expected) and new == expected


def test_refine_candidates_screens_by_prediction(corpus, model_and_norm):
    from gnn_truss.design import refine_candidates
    model, norm = model_and_norm
    obj, seeds = _seed_candidates(corpus)
    out, n, _ = refine_candidates(model, norm, obj, seeds, corpus.stiffness[0], rounds=2,
                                  parents=2, children=10, workers=1, seed=3,
                                  verify_per_round=3)
    assert 0 < n <= 6
    rounds = [c.step for c in out if c.source == "refine"]
    assert all(rounds.count(r) <= 3 for r in (1, 2))
    # the screened ones are the best predicted of their round: none of the unscreened
    # children of round 1 is predicted better than the worst one kept
    full, _, _ = refine_candidates(model, norm, obj, seeds, corpus.stiffness[0], rounds=1,
                                   parents=2, children=10, workers=1, seed=3)
    kept = [c.predicted_value for c in out if c.source == "refine" and c.step == 1]
    every = sorted((c.predicted_value for c in full if c.source == "refine"), reverse=True)
    assert sorted(kept, reverse=True) == every[:len(kept)]  # max-E22: the largest predictions


def test_refine_candidates_extra_parents_seed_the_search_but_are_not_returned(
        corpus, model_and_norm):
    from gnn_truss.design import _start_candidates, refine_candidates
    model, norm = model_and_norm
    obj = parse_objective("max-E22")
    idx = select_starts(obj, corpus.stiffness, 3)
    starts = _start_candidates(obj, [corpus.truss(int(i)) for i in idx], corpus.stiffness[idx])
    assert [c.fe_value for c in starts] == pytest.approx(obj.value(corpus.stiffness[idx]))
    assert starts[0].fe_score == min(c.fe_score for c in starts)  # the dataset best
    out, n, _ = refine_candidates(model, norm, obj, [], corpus.stiffness[idx[0]], rounds=2,
                                  parents=3, children=6, workers=1, extra_parents=starts)
    assert n == len(out) > 0 and all(c.source == "refine" for c in out)
    start_hashes = {c.truss.canonical_hash() for c in starts}
    assert not start_hashes & {c.truss.canonical_hash() for c in out}
    assert {c.run for c in out if c.step == 1} <= {0, 1, 2}  # children of the starts


@pytest.mark.parametrize("kwargs, match", [
    ({"verify_per_round": 0}, "verify_per_round"),
    ({"rounds": -1}, "rounds"), ({"parents": 0}, "parents"), ({"children": 0}, "children"),
    ({"sigma": (0.5, 0.1)}, "sigma"), ({"sigma": (0.0, 0.1)}, "sigma"),
    ({"encode_refine": -1}, "encode_refine"), ({"encode_refine": 1.5}, "encode_refine"),
])
def test_refine_candidates_rejects_bad_settings(corpus, model_and_norm, kwargs, match):
    from gnn_truss.design import refine_candidates
    model, norm = model_and_norm
    with pytest.raises(ValueError, match=match):
        refine_candidates(model, norm, parse_objective("max-E22"), [], corpus.stiffness[0],
                          **kwargs)


def test_run_design_refuses_bad_refine_settings_before_optimising(corpus, model_and_norm,
                                                                    monkeypatch):
    import gnn_truss.design as design
    model, norm = model_and_norm

    def never(*args, **kwargs):
        raise AssertionError("the gradient stage ran")

    monkeypatch.setattr(design, "optimize_latents", never)
    for kwargs, match in (({"refine_parents": 0}, "refine parents"),
                          ({"refine_verify": 0}, "verify_per_round"),
                          ({"refine_rounds": -2}, "refine rounds"),
                          ({"polish_generations": -1}, "polish_generations"),
                          ({"polish_top": 0}, "polish_top"),
                          ({"polish_children": 0}, "polish_children"),
                          ({"check_seeds": -1}, "check_seeds"),
                          ({"check_top": 0}, "check_top"),
                          ({"polish_generations": 2.5}, "polish_generations"),
                          ({"polish_topology_rate": 1.5}, "polish_topology_rate"),
                          ({"polish_topology_rate": -0.5}, "polish_topology_rate"),
                          ({"refine_select": "edges"}, "refine_select"),
                          ({"encode_refine": -1}, "encode_refine"),
                          ({"encode_refine": 2.0}, "encode_refine")):
        with pytest.raises(ValueError, match=match):
            run_design(model, norm, corpus, parse_objective("max-E22"), starts=2, steps=3,
                       **kwargs)


def test_encode_refine_starts_from_the_refined_means(corpus, model_and_norm, monkeypatch):
    """encode_trusses(refine_steps=k) is refine_latent of the dense means, and run_design's
    gradient stage starts from those latents (recorded in the settings)."""
    import gnn_truss.design as design
    from gnn_truss.nn.vae import refine_latent
    model, norm = model_and_norm
    trusses = [corpus.truss(i) for i in range(5)]
    mu = encode_trusses(model, trusses)
    adj = torch.tensor(np.stack([ds.adjacency_to_triu(t.adjacency) for t in trusses]),
                       dtype=torch.float32)
    off = torch.tensor(np.stack([t.free_offsets for t in trusses]), dtype=torch.float32)
    refined = encode_trusses(model, trusses, refine_steps=7)
    assert torch.allclose(refined, refine_latent(model, mu, adj, off, steps=7), atol=1e-6)
    assert not torch.allclose(refined, mu)
    seen = {}
    real = design.optimize_latents

    def spy(model_, norm_, objective, z0, **kw):
        seen["z0"] = z0.clone()
        return real(model_, norm_, objective, z0, **kw)
    monkeypatch.setattr(design, "optimize_latents", spy)
    obj = parse_objective("max-E22")
    res = run_design(model, norm, corpus, obj, starts=3, steps=2, refine_rounds=0,
                     polish_generations=0, workers=1, encode_refine=7)
    starts = [corpus.truss(int(i)) for i in select_starts(obj, corpus.stiffness, 3)]
    assert torch.allclose(seen["z0"], encode_trusses(model, starts, refine_steps=7), atol=1e-6)
    assert res.settings["encode_refine"] == 7


def test_start_noise_draw_is_seeded_scaled_and_leaves_the_global_generator_alone():
    from gnn_truss.design import start_noise_draw
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = start_noise_draw((4000, 48), 0.02, seed=1)
    assert torch.equal(torch.rand(3), expected_next)  # global torch state untouched
    assert a.shape == (4000, 48) and a.dtype == torch.float32
    assert torch.equal(a, start_noise_draw((4000, 48), 0.02, seed=1))
    assert not torch.allclose(a, start_noise_draw((4000, 48), 0.02, seed=2))
    # 192,000 draws: the sample std lies within 1 % of sigma (its relative sd is 0.16 %)
    assert float(a.std()) == pytest.approx(0.02, rel=0.01)
    assert abs(float(a.mean())) < 5 * 0.02 / np.sqrt(a.numel())
    assert torch.allclose(start_noise_draw((5, 3), 0.5, seed=7),
                          5 * start_noise_draw((5, 3), 0.1, seed=7))


def test_start_noise_perturbs_the_starts_by_the_seeded_draw(corpus, model_and_norm,
                                                            monkeypatch):
    """With start_noise the gradient stage starts from the encoded means plus the seeded
    draw, so two seeds give two searches; without it the starts are the means whatever the
    seed. The setting is recorded; bad values are refused before any work."""
    import gnn_truss.design as design
    from gnn_truss.design import start_noise_draw
    model, norm = model_and_norm
    seen = []
    real = design.optimize_latents

    def spy(model_, norm_, objective, z0, **kw):
        seen.append(z0.clone())
        return real(model_, norm_, objective, z0, **kw)
    monkeypatch.setattr(design, "optimize_latents", spy)
    obj = parse_objective("max-E22")
    kw = dict(starts=4, steps=3, refine_rounds=0, polish_generations=0, workers=1)
    mu = encode_trusses(model, [corpus.truss(int(i))
                                for i in select_starts(obj, corpus.stiffness, 4)])
    plain = [run_design(model, norm, corpus, obj, seed=s, **kw) for s in (1, 2)]
    noisy = [run_design(model, norm, corpus, obj, seed=s, start_noise=0.3, **kw)
             for s in (1, 2)]
    assert torch.equal(seen[0], mu) and torch.equal(seen[1], mu)
    for z0, s in zip(seen[2:], (1, 2)):
        assert torch.allclose(z0, mu + start_noise_draw(mu.shape, 0.3, s), atol=1e-6)
    assert not torch.allclose(seen[2], seen[3])
    assert [r.settings["start_noise"] for r in plain + noisy] == [0.0, 0.0, 0.3, 0.3]
    assert np.allclose(plain[0].trace.z, plain[1].trace.z)
    assert not np.allclose(noisy[0].trace.z[0], noisy[1].trace.z[0])
    for bad in (-0.1, float("nan"), float("inf"), True, "0.1"):
        with pytest.raises(ValueError, match="start_noise"):
            run_design(model, norm, corpus, obj, start_noise=bad, **kw)
    assert len(seen) == 4  # refused before the gradient stage


def test_cli_start_noise_option(cli_files):
    d = cli_files
    base = ["--checkpoint", str(d / "model.pt"), "--objective", "max-E22", "--starts", "2",
            "--steps", "2", "--workers", "1", "--refine-rounds", "0",
            "--polish-generations", "0", "--no-progress", "--no-figures"]
    assert _args("--objective", "max-E22").start_noise == 0.0
    for bad in ("-0.5", "nan"):
        with pytest.raises(ValueError, match="--start-noise"):
            design_main(_args(*base, "--start-noise", bad, "--out", str(d / "bad")))
    assert not (d / "bad").exists()
    assert design_main(_args(*base, "--start-noise", "0.05", "--seed", "3",
                             "--out", str(d / "noise"))) == 0
    settings = json.loads((d / "noise" / "summary.json").read_text())["settings"]
    assert settings["start_noise"] == 0.05 and settings["seed"] == 3


def test_polish_with_topology_moves_in_a_design_run(corpus, model_and_norm):
    model, norm = model_and_norm
    obj = parse_objective("max-E22")
    kw = dict(starts=4, steps=8, lr=0.05, path_candidates=2, refine_rounds=0,
              polish_generations=3, polish_top=2, polish_children=4, workers=1)
    fixed = run_design(model, norm, corpus, obj, polish_topology_rate=0.0, **kw)
    moved = run_design(model, norm, corpus, obj, polish_topology_rate=1.0, **kw)
    assert moved.settings["polish_topology_rate"] == 1.0
    assert fixed.settings["polish_topology_rate"] == 0.0
    assert run_design(model, norm, corpus, obj, **dict(kw, polish_generations=0)).settings[
        "polish_topology_rate"] == 0.5  # the default
    polished = [c for c in moved.candidates if c.source == "polish"]
    assert polished  # some one-strut move beat a design
    designs = [c for c in moved.candidates if c.source != "polish"]
    for p in polished:
        # every polish child was a strut move: the offsets (on the nodes it uses) are those
        # of a design of the run but the topology is not, and the FE value is exact
        same_run = [c for c in designs if c.run == p.run]
        used = p.truss.used
        assert any(np.array_equal(c.truss.offsets[used], p.truss.offsets[used])
                   for c in same_run)
        assert not p.truss.offsets[~used].any()
        assert not any(np.array_equal(c.truss.adjacency, p.truss.adjacency) for c in same_run)
        assert p.truss.is_valid
        assert np.isclose(p.fe_value, obj.value(homogenize(p.truss).S[None])[0], rtol=1e-8)
    # the gradient stage and its verification do not depend on the polish setting
    assert ([c.truss.canonical_hash() for c in fixed.candidates if c.source != "polish"]
            == [c.truss.canonical_hash() for c in designs])


def test_dataset_best_is_the_corpus_maximum(design_run, corpus):
    result, _, _ = design_run
    e2 = parse_objective("max-E2").value(corpus.stiffness)
    assert result.dataset_best == int(np.argmax(e2))
    assert np.isclose(result.dataset_best_value, e2.max())
    assert result.start_indices[0] == result.dataset_best


def test_written_files_match_independent_fe(design_run):
    result, out, summary = design_run
    ok = [c for c in result.candidates if c.status == "ok"]
    files = sorted((out / "designs").glob("rank*.json"))
    assert len(files) == min(4, len(ok))
    for f, c in zip(files, ok):
        t = load_lattice(f)
        ref = homogenize(t)
        assert ref.ok
        meta = json.loads(f.read_text())["meta"]
        assert np.isclose(meta["fe_value"], parse_objective("max-E2").value(ref.S[None])[0],
                          rtol=1e-8)
        assert np.allclose(meta["fe_label"], ref.S, rtol=1e-8, atol=1e-12)
    rows = list(csv.DictReader(open(out / "table.csv")))
    assert rows[0]["kind"] == "dataset best"
    assert float(rows[0]["fe_E2"]) == pytest.approx(result.dataset_best_value)
    designed = [r for r in rows[1:] if r["status"] == "ok"]
    for r in designed:
        v, ref = float(r["fe_E2"]), result.dataset_best_value
        assert float(r["improvement_percent"]) == pytest.approx(100 * (v - ref) / abs(ref))
    assert [float(r["fe_E2"]) for r in designed] == sorted(
        [float(r["fe_E2"]) for r in designed], reverse=True)
    assert summary["distinct_candidates"] == len(result.candidates)
    assert (out / "path.png").stat().st_size > 0 and (out / "summary.json").exists()
    if result.best is not None:
        assert (out / "best.png").exists()
        assert summary["best_design"]["value"] == pytest.approx(result.best.fe_value)


def test_plot_design_path(tmp_path):
    from gnn_truss.plotting import plot_design_path
    rng = np.random.default_rng(0)
    fig = plot_design_path(rng.uniform(0.01, 0.1, (200, 2)), [rng.uniform(0.01, 0.1, (5, 2))],
                           rng.uniform(0.01, 0.1, (3, 2)), [0.05, 0.12], "E1", "E2",
                           path=tmp_path / "p.png", title="t")
    assert (tmp_path / "p.png").stat().st_size > 0
    assert fig.axes[0].get_xlabel() == "E1"


# --------------------------------------------------------------------------- CLI glue

@pytest.fixture(scope="module")
def cli_files(corpus, model_and_norm, tmp_path_factory):
    model, norm = model_and_norm
    d = tmp_path_factory.mktemp("cli")
    save_compact(corpus, d / "data" / "raw" / "corpus.npz")
    ck = {"model": model.state_dict(), "normalizer": norm.to_dict(), "fingerprint": "test",
          "config": {"data": {"root": str(d / "data"), "source": "corpus",
                              "target": "stiffness", "split_seed": 0, "limit": None},
                     "model": SMALL}}
    torch.save(ck, d / "model.pt")
    return d


def _args(*argv):
    p = argparse.ArgumentParser()
    add_design_arguments(p)
    return p.parse_args(list(argv))


def test_design_main_writes_results(cli_files, capsys):
    d = cli_files
    rc = design_main(_args("--checkpoint", str(d / "model.pt"), "--objective", "min-nu21",
                           "--starts", "3", "--steps", "4", "--out", str(d / "out"),
                           "--workers", "1", "--refine-select", "lattice", "--no-progress",
                           "--no-figures"))
    assert rc == 0
    text = capsys.readouterr().out
    assert "dataset best nu21" in text and str(d / "out") in text
    summary = json.loads((d / "out" / "summary.json").read_text())
    assert summary["objective"] == "min-nu21" and summary["settings"]["starts"] == 3
    assert summary["settings"]["refine_select"] == "lattice"
    assert "nan" not in text  # a polished best has no prediction: said so, not "nan"
    if summary["best_design"]["source"] == "polish":
        assert "(FE polish)" in text
    assert (d / "out" / "table.csv").exists() and (d / "out" / "dataset_best.json").exists()


def test_design_main_notes_a_corpus_grown_past_the_checkpoints_data(cli_files, corpus,
                                                                    capsys, monkeypatch):
    """A checkpoint that records fewer lattices than its corpus now holds gets a note on
    stderr naming both numbers and the command to rebuild its own prefix; one trained on the
    whole corpus, or run with --corpus, gets none. (The design itself is stopped right after
    the corpus is read: the note is all this test checks.)"""
    import gnn_truss.design as design_mod

    class Stop(Exception):
        pass

    def stop(*a, **k):
        raise Stop

    monkeypatch.setattr(design_mod, "run_design", stop)
    d = cli_files
    ck = torch.load(d / "model.pt", weights_only=True)
    argv = ["--objective", "min-nu21", "--no-progress", "--no-figures"]
    own = str(d / "data" / "raw" / "corpus.npz")
    for n, extra, noted in ((len(corpus) - 3, [], True), (len(corpus), [], False),
                            (len(corpus) - 3, ["--corpus", own], False)):
        torch.save({**ck, "num_lattices": n}, d / f"n{n}.pt")
        with pytest.raises(Stop):
            design_main(_args("--checkpoint", str(d / f"n{n}.pt"), *argv, *extra))
        err = capsys.readouterr().err
        assert (f"{len(corpus)} lattices, 3 more than the {n}" in err) == noted
        assert (f"data pack --limit {n}" in err) == noted
    # a checkpoint from before num_lattices was saved: its data.limit is used
    cfg = {**ck["config"], "data": {**ck["config"]["data"], "limit": len(corpus) - 1}}
    torch.save({**ck, "config": cfg}, d / "limit.pt")
    with pytest.raises(Stop):
        design_main(_args("--checkpoint", str(d / "limit.pt"), *argv))
    assert f"1 more than the {len(corpus) - 1}" in capsys.readouterr().err


@pytest.mark.parametrize("argv, match", [
    (["--objective", "max-E2", "--checkpoint", "nope.pt"], "checkpoint not found"),
    (["--objective", "max-E99"], "unknown property"),
    (["--objective", "match-curve", "--target", "[1,2,3,4,5,6,7,8,9,10,11,12,13]"],
     "curve labels"),
    (["--objective", "match-stiffness", "--target", "[1, 2]"], "9 components"),
    (["--objective", "match-stiffness", "--target", "[NaN, 1, 1, 1, 1, 1, 1, 1, 1]"], "NaN"),
    (["--objective", "max-E2", "--starts", "0"], "--starts"),
    (["--objective", "max-E2", "--lr", "-1"], "--lr"),
    (["--objective", "max-E2", "--corpus", "missing.npz"], "corpus not found"),
    (["--objective", "max-E2", "--target", "softening"], "takes no target"),
    (["--objective", "match-curve", "--target", "softening"], "curve labels"),
    (["--objective", "max-E2", "--exports", "-1"], "--exports"),
    (["--objective", "max-E2", "--refine-rounds", "-1"], "--refine-rounds"),
    (["--objective", "max-E2", "--refine-children", "0"], "--refine-children"),
    (["--objective", "max-E2", "--refine-parents", "0"], "--refine-parents"),
    (["--objective", "max-E2", "--refine-verify", "0"], "--refine-verify"),
    (["--objective", "max-E2", "--cell-size", "0"], "--cell-size"),
    (["--objective", "max-E2", "--check-seeds", "-1"], "--check-seeds"),
    (["--objective", "max-E2", "--check-top", "0"], "--check-top"),
    (["--objective", "max-E2", "--polish-generations", "-1"], "--polish-generations"),
    (["--objective", "max-E2", "--polish-top", "0"], "--polish-top"),
    (["--objective", "max-E2", "--polish-children", "0"], "--polish-children"),
    (["--objective", "max-E2", "--polish-topology-rate", "2"], "--polish-topology-rate"),
    (["--objective", "max-E2", "--encode-refine", "-1"], "--encode-refine"),
])
def test_design_main_bad_input(cli_files, argv, match):
    d = cli_files
    if "--checkpoint" not in argv:
        argv = argv + ["--checkpoint", str(d / "model.pt")]
    with pytest.raises(ValueError, match=match):
        design_main(_args(*argv, "--out", str(d / "bad"), "--no-progress"))


def test_objective_is_hashable_and_frozen():
    o = parse_objective("match-stiffness", {"E1": 0.05})
    assert isinstance(hash(o), int)
    with pytest.raises(AttributeError):
        o.kind = "max"  # type: ignore[misc]
    assert isinstance(o, Objective)


@pytest.mark.slow
def test_match_curve_end_to_end(corpus, tmp_path):
    """A curve model (13 outputs) on a corpus with (synthetic) curve labels: the finals are
    verified by the nonlinear FE and ranked by their FE NRMSE."""
    from gnn_truss.fe.nonlinear import LABEL_STRAINS, compress_truss
    torch.manual_seed(0)
    model = build_model({**SMALL, "num_targets": 13}).eval()
    curves = corpus.stiffness[:, 5:6] * LABEL_STRAINS[None]  # linear: C33 * strain
    cor = Corpus(corpus.adj, corpus.offset, corpus.stiffness, curves, {})
    norm = TargetNormalizer.fit(curves)
    target = 1.3 * curves[np.argmax(curves[:, -1])]
    obj = parse_objective("match-curve", target.tolist())
    res = run_design(model, norm, cor, obj, starts=2, steps=5, workers=1, refine_rounds=0)
    assert res.num_candidates == 2  # best iterates only (no path snapshots for curves)
    for c in res.candidates:
        if c.status == "ok":
            ref = compress_truss(c.truss)
            assert np.allclose(c.label, ref.label, rtol=1e-8)
            assert np.isclose(c.fe_value, obj.value(ref.label[None])[0])
    summary = write_design(res, tmp_path, curves, figures=True)
    assert summary["value_name"] == "NRMSE"
    check = summary["imperfection_check"]  # by default: two more imperfection seeds
    ok = [c for c in res.candidates if c.status == "ok"]
    assert check["seeds"] == [0, 1, 2] and len(check["designs"]) == len(ok)
    for c, d in zip(ok, check["designs"]):
        assert d["values"][0] == c.fe_value
        ref = compress_truss(c.truss, seed=2)
        assert np.isclose(d["values"][2], obj.value(ref.label[None])[0], rtol=1e-8)
    assert check["dataset_best"]["values"][0] == res.dataset_best_value
    assert (tmp_path / "curves.png").exists()


def test_plot_design_path_view_ignores_runaway_predictions(tmp_path):
    from gnn_truss.plotting import plot_design_path
    rng = np.random.default_rng(0)
    cloud = rng.uniform(-1.0, 0.5, (300, 2))
    path = np.array([[0.0, -0.5], [0.1, -0.9], [1.5e7, -1.5e8], [0.2, -1.2]])  # one runaway
    fig = plot_design_path(cloud, [path], np.array([[0.2, -1.1]]), [0.2, -1.1], "nu12", "nu21",
                           path=tmp_path / "p.png")
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    assert -1.5 < lo < -1.2 and 0.5 < hi < 0.7  # FE values and the near path point, padded
    assert ax.get_xlim()[1] < 1.0  # the runaway point left the view


def test_plot_design_path_breaks_lines_outside_the_view(tmp_path):
    from gnn_truss.plotting import plot_design_path
    cloud = np.random.default_rng(0).uniform(-1.0, 0.5, (300, 2))
    path = np.array([[0.0, -0.5], [0.1, -0.9], [1.5e7, -1.5e8], [0.2, -1.2]])
    fig = plot_design_path(cloud, [path], np.array([[0.2, -1.1]]), [0.2, -1.1], "nu12", "nu21")
    line = [ln for ln in fig.axes[0].lines if len(ln.get_xdata()) == 4][0]
    y = np.asarray(line.get_ydata(), dtype=float)
    assert np.isnan(y[2]) and np.allclose(y[[0, 1, 3]], [-0.5, -0.9, -1.2])


def test_plot_design_progress_refinement_panel_and_fe_view(tmp_path):
    from gnn_truss.plotting import plot_design_progress
    steps = np.arange(0, 50, 10)
    values = np.array([[-0.5, -0.6], [-0.7, -0.6], [-1.0e8, -0.8], [-0.9, -0.9], [-1.0, -1.0]])
    fig = plot_design_progress(steps, values, [0, 40], [-0.6, -0.95], "nu21", reference=-0.9,
                               refined=([1, 1, 2], [-1.1, -1.2, -1.4]),
                               path=tmp_path / "p.png")
    assert len(fig.axes) == 2 and (tmp_path / "p.png").stat().st_size > 0
    lo, hi = fig.axes[0].get_ylim()
    assert -1.6 < lo < -1.4 and -0.6 < hi < 0.0  # FE values incl. refinement, padded
    assert fig.axes[1].get_ylim() == (lo, hi)  # shared y
    assert len(plot_design_progress(steps, values, [0], [-0.6], "nu21").axes) == 1


def test_design_main_named_curve_target(corpus, tmp_path, capsys):
    """``--target softening`` is built from the corpus' curves and names the objective; the
    finals are verified by nonlinear FE (2 starts keep it quick)."""
    from gnn_truss.fe.nonlinear import LABEL_STRAINS
    from gnn_truss.objectives import curve_target
    torch.manual_seed(0)
    model = build_model({**SMALL, "num_targets": 13}).eval()
    curves = corpus.stiffness[:, 5:6] * LABEL_STRAINS[None] / (1 + 20 * LABEL_STRAINS[None])
    save_compact(Corpus(corpus.adj, corpus.offset, corpus.stiffness, curves, {}),
                 tmp_path / "data" / "raw" / "corpus.npz")
    ck = {"model": model.state_dict(), "normalizer": TargetNormalizer.fit(curves).to_dict(),
          "fingerprint": "test",
          "config": {"data": {"root": str(tmp_path / "data"), "source": "corpus",
                              "target": "curve", "split_seed": 0, "limit": None},
                     "model": {**SMALL, "num_targets": 13}}}
    torch.save(ck, tmp_path / "curve.pt")
    rc = design_main(_args("--checkpoint", str(tmp_path / "curve.pt"), "--objective",
                           "match-curve", "--target", "softening", "--starts", "2", "--steps",
                           "2", "--out", str(tmp_path / "out"), "--workers", "1",
                           "--refine-rounds", "0", "--no-progress", "--no-figures",
                           "--exports", "0"))
    assert rc == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["objective"] == "match-curve softening"
    assert np.allclose(summary["target"], curve_target("softening", curves), rtol=1e-12)
    assert "dataset best NRMSE" in capsys.readouterr().out


def test_refine_candidates_progress_bar_reports_rounds_and_changes_nothing(
        corpus, model_and_norm, capsys):
    from gnn_truss.design import refine_candidates
    model, norm = model_and_norm
    obj, seeds = _seed_candidates(corpus)
    kw = {"rounds": 2, "parents": 2, "children": 6, "workers": 1, "seed": 4}
    quiet, n, _ = refine_candidates(model, norm, obj, seeds, corpus.stiffness[0], **kw)
    capsys.readouterr()
    shown, m, _ = refine_candidates(model, norm, obj, seeds, corpus.stiffness[0],
                                    progress=True, **kw)
    err = capsys.readouterr().err
    assert "refine max-E22" in err and "2/2" in err and f"verified={m}" in err
    assert m == n and [c.truss.canonical_hash() for c in shown] == \
        [c.truss.canonical_hash() for c in quiet]


def test_curve_design_refines_by_default_and_never_ends_worse(corpus, monkeypatch):
    """Curve objectives run CURVE_REFINE_ROUNDS rounds of FE-guided refinement by default,
    each verifying at most 20 new lattices; the refined lattices join the ranking, so the
    best design is at least as good as the gradient stage's (nonlinear FE faked)."""
    from gnn_truss import design
    from gnn_truss.fe.nonlinear import LABEL_STRAINS
    monkeypatch.setattr(design, "_compress_one", _fake_compress)
    torch.manual_seed(0)
    model = build_model({**SMALL, "num_targets": 13}).eval()
    curves = corpus.stiffness[:, 5:6] * LABEL_STRAINS[None]
    cor = Corpus(corpus.adj, corpus.offset, corpus.stiffness, curves, {})
    norm = TargetNormalizer.fit(curves)
    obj = parse_objective("match-curve", (LABEL_STRAINS * 30.0).tolist())
    kw = dict(starts=3, steps=3, workers=1, check_seeds=0)
    res = design.run_design(model, norm, cor, obj, **kw)
    assert design.CURVE_REFINE_ROUNDS == 3
    assert res.settings["refine_rounds"] == 3 and res.settings["refine_verify"] == 20
    refined = [c for c in res.candidates if c.source == "refine"]
    assert refined and {c.step for c in refined} <= {4, 5, 6}
    per_round = [sum(c.step == s for c in refined) for s in (4, 5, 6)]
    assert per_round == [20, 20, 20]  # more new lattices each round than the cap verifies
    assert res.num_candidates == 3 + len(refined)
    plain = design.run_design(model, norm, cor, obj, refine_rounds=0, **kw)
    assert plain.settings["refine_rounds"] == 0 and plain.num_candidates == 3
    # the gradient stage is untouched by the rounds; a refined lattice beats its best here
    assert [c.fe_score for c in res.candidates if c.source != "refine"] == \
        [c.fe_score for c in plain.candidates]
    assert res.best.source == "refine" and res.best.fe_score < plain.best.fe_score
    scores = [c.fe_score for c in res.candidates if c.status == "ok"]
    assert scores == sorted(scores)  # one ranking, refined and gradient-stage together


def _fake_compress(job):
    """Stands in for the nonlinear FE: the job's lattice size as a 'label'."""
    truss, density, seed = job
    return np.full(13, float(truss.num_edges) + density + seed), ""


@pytest.mark.parametrize("workers", [1, 2])
def test_compress_all_keeps_order_and_shows_progress(corpus, monkeypatch, capsys, workers):
    from gnn_truss import design
    monkeypatch.setattr(design, "_compress_one", _fake_compress)
    trusses = [corpus.truss(i) for i in range(5)]
    out = design._compress_all(trusses, 0.15, workers, 2, progress=True)
    assert [lab[0] for lab, _ in out] == [t.num_edges + 2.15 for t in trusses]
    err = capsys.readouterr().err
    assert "nonlinear FE" in err and "5/5" in err
    assert design._compress_all([], 0.15, workers, 0, progress=True) == []


def test_imperfection_check_matches_the_nonlinear_fe_per_seed():
    from gnn_truss.design import imperfection_check
    from gnn_truss.fe.nonlinear import compress_truss
    rng = np.random.default_rng(0)
    base = Truss.elementary("octet")
    free = base.used[ds.FREE_DOF_NODE]
    t = base.with_offsets(np.where(free, 0.05 * rng.standard_normal(27), 0.0))
    ref = compress_truss(t, seed=0).label
    obj = parse_objective("match-curve", (0.9 * ref).tolist())
    vals = imperfection_check(obj, [t], [0, 3], workers=1)
    assert vals.shape == (1, 2) and vals[0, 0] != vals[0, 1]  # the seed reaches the FE
    for k, s in enumerate((0, 3)):
        expect = obj.value(compress_truss(t, seed=s).label[None])[0]
        assert np.isclose(vals[0, k], expect, rtol=1e-10)
    assert np.isclose(vals[0, 0], 0.1 * np.sqrt(np.mean(ref ** 2)) / np.ptp(0.9 * ref),
                      rtol=1e-8)  # NRMSE of the 0.9-scaled target, by hand
    with pytest.raises(ValueError, match="curve objectives only"):
        imperfection_check(parse_objective("max-E22"), [t], [1])


def test_imperfection_summary_statistics_and_most_robust_rank():
    from gnn_truss.design import _imperfection_summary
    assert _imperfection_summary({}) is None
    s = _imperfection_summary({"seeds": [0, 1, 2], "dataset_best": [0.1, 0.12, 0.08],
                               "designs": [[0.05, 0.2, 0.11], [0.06, 0.07, 0.08],
                                           [0.04, np.nan, 0.05]]})
    assert s["seeds"] == [0, 1, 2]
    assert np.isclose(s["dataset_best"]["mean"], 0.1) and s["dataset_best"]["worst"] == 0.12
    assert np.isclose(s["designs"][0]["mean"], 0.12) and s["designs"][0]["worst"] == 0.2
    assert s["designs"][2]["mean"] is None and s["designs"][2]["values"][1] is None
    assert s["most_robust_rank"] == 2  # a failed seed never makes a design the most robust


def _candidate(truss, score, status="ok"):
    return Candidate(run=0, step=0, source="path", truss=truss, repaired=False, status=status,
                     label=np.full(9, np.nan), C=np.full((6, 6), np.nan), fe_value=-score,
                     fe_score=score, predicted_value=math.nan)


def _moved(truss, shift):
    return truss.with_offsets(np.full(ds.NUM_FREE_DOFS, shift))


def test_select_parents_one_per_topology():
    a, b = Truss.elementary("bcc"), Truss.elementary("octet")
    assert topology_hash(a) != topology_hash(b)
    # best first: three near-copies of one topology, then two lattices of the other
    ranked = [_candidate(a, 1.0), _candidate(_moved(a, 1e-5), 1.1),
              _candidate(_moved(a, 2e-5), 1.2), _candidate(_moved(b, 0.01), 1.3),
              _candidate(b, 1.4)]
    assert select_parents(ranked, 3, "lattice") == ranked[:3]
    assert select_parents(ranked, 3, "topology") == [ranked[0], ranked[3]]
    assert select_parents(ranked, 3) == [ranked[0], ranked[3]]  # the default
    assert select_parents(ranked, 1) == [ranked[0]]
    with pytest.raises(ValueError, match="select"):
        select_parents(ranked, 3, "edges")


def test_refine_candidates_parent_select(corpus, model_and_norm, monkeypatch):
    import gnn_truss.design as design_mod
    from gnn_truss.design import _verify_and_rank, refine_candidates
    model, norm = model_and_norm
    obj = parse_objective("max-E22")
    # seeds: two corpus lattices, each with two near-copies (offsets moved by 1e-4)
    base = [corpus.truss(i) for i in range(2)]
    assert topology_hash(base[0]) != topology_hash(base[1])
    trusses = [t.with_offsets(np.clip(t.free_offsets - d, -0.45, 0.45))
               for t in base for d in (0.0, 1e-4, 2e-4)]
    n = len(trusses)
    pool = {"decoded": trusses, "repaired": trusses, "runs": np.arange(n),
            "steps": np.zeros(n, int), "source": np.array(["best"] * n),
            "predicted": np.zeros(n), "hashes": [t.canonical_hash() for t in trusses]}
    seeds, _, _ = _verify_and_rank(obj, pool, corpus.stiffness[0], 0.15, 1, 0)
    ranked = [c for c in seeds if c.status == "ok"]
    assert len(ranked) == n
    real, tops = design_mod._refine_round, []

    def recording(model, normalizer, objective, top, *args):
        tops.append(list(top))
        return real(model, normalizer, objective, top, *args)

    monkeypatch.setattr(design_mod, "_refine_round", recording)
    for select in ("topology", "lattice"):
        tops.clear()
        refine_candidates(model, norm, obj, seeds, corpus.stiffness[0], rounds=2, parents=3,
                          children=4, workers=1, seed=2, parent_select=select)
        assert len(tops) == 2 and len(tops[0]) in (2, 3)
        first = {topology_hash(c.truss) for c in tops[0]}
        if select == "topology":  # one parent per topology, in every round
            assert len(tops[0]) == 2 and tops[0][0] is ranked[0]
            assert all(len({topology_hash(c.truss) for c in top}) == len(top) for top in tops)
        else:  # the three best lattices: near-copies share a topology
            assert tops[0] == ranked[:3] and len(first) < 3
    with pytest.raises(ValueError, match="parent_select"):
        refine_candidates(model, norm, obj, seeds, corpus.stiffness[0], rounds=1,
                          parent_select="edges")


def test_run_design_hands_refine_select_to_the_refinement(corpus, model_and_norm,
                                                         monkeypatch):
    import gnn_truss.design as design_mod
    real, used = design_mod.refine_candidates, []

    def recording(*args, **kwargs):
        used.append(kwargs["parent_select"])
        return real(*args, **kwargs)

    monkeypatch.setattr(design_mod, "refine_candidates", recording)
    model, norm = model_and_norm
    kw = dict(starts=3, steps=4, lr=0.05, path_candidates=2, refine_rounds=1,
              refine_parents=2, refine_children=3, polish_generations=0, workers=1)
    obj = parse_objective("max-E22")
    assert run_design(model, norm, corpus, obj, **kw).settings["refine_select"] == "topology"
    res = run_design(model, norm, corpus, obj, refine_select="lattice", **kw)
    assert res.settings["refine_select"] == "lattice"
    assert used == ["topology", "lattice"]
    parser = argparse.ArgumentParser()
    add_design_arguments(parser)
    assert parser.parse_args(["--objective", "max-E22"]).refine_select == "topology"
    assert parser.parse_args(["--objective", "max-E22", "--refine-select",
                              "lattice"]).refine_select == "lattice"


# --------------------------------------------------------------------------- decoded predictor
DECODED = {**{k: v for k, v in SMALL.items() if k != "predictor_hidden"},
           "predictor_input": "decoded", "predictor_gnn_hidden": 16, "predictor_gnn_layers": 2,
           "predictor_gnn_readout": 32, "edge_readout": True, "physics_readout": True}


def test_design_with_a_predictor_that_reads_the_decoded_lattice(corpus, model_and_norm):
    """model.predictor_input 'decoded': the loop's prediction is G on the lattice decoded from
    z itself (by hand through the sparse graph of that lattice, no re-encoding), the
    optimisation lowers the predicted score, and a short design run verifies every candidate
    by FE."""
    _, norm = model_and_norm
    torch.manual_seed(0)
    model = build_model(DECODED).eval()
    z = torch.randn(6, model.sizes.total)
    with torch.no_grad():
        pred = predict_decoded(model, norm, z)
        trusses = _decoded_near_trusses(model, z)
        ref = norm.inverse(model.predictor(Batch.from_data_list([truss_to_data(t)
                                                                  for t in trusses])))
        via_mu = norm.inverse(model.predict(z))  # the same: predict decodes z
    assert torch.allclose(pred, ref, rtol=1e-4, atol=1e-9)
    assert torch.allclose(pred, via_mu, rtol=1e-6, atol=1e-12)
    obj = parse_objective("max-E2")
    idx = select_starts(obj, corpus.stiffness, 6)
    z0 = encode_trusses(model, [corpus.truss(int(i)) for i in idx])
    tr = optimize_latents(model, norm, obj, z0, steps=30, lr=0.05, record_every=10)
    ok = np.isfinite(tr.scores[0])
    assert np.all(tr.best_score[ok] <= tr.scores[0][ok])
    assert np.nanmin(tr.best_score) < np.nanmin(tr.scores[0])
    result = run_design(model, norm, corpus, parse_objective("max-E22"), starts=3, steps=6,
                        lr=0.05, path_candidates=2, refine_rounds=0, workers=1,
                        polish_topology_rate=0.0)
    assert any(c.status == "ok" and np.isfinite(c.fe_score) for c in result.candidates)
    assert all(c.status in ("ok", "invalid", "mechanism", "disconnected", "singular")
               for c in result.candidates)


# --------------------------------------------------------------------------- predictor ensembles

def _sibling(model, seed):
    """A copy of ``model`` with the same encoder and decoders and a predictor re-drawn with
    ``seed``: a second predictor trained on the same VAE."""
    import copy
    other = copy.deepcopy(model)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in other.predictor.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return other.eval()


def test_ensemble_predicts_the_physical_mean_of_its_members(corpus, model_and_norm):
    """predict_decoded of an ensemble is the mean of the members' own predict_decoded, each
    through its own normaliser (physical units), for the decoded-lattice and the latent
    predictor; the gradient flows to z through every member."""
    from gnn_truss.design import ensemble_predictors
    _, norm = model_and_norm
    norm2 = TargetNormalizer.fit(corpus.stiffness * 3.0 + 1e-3)
    for config in (DECODED, SMALL):
        torch.manual_seed(0)
        first = build_model(config).eval()
        second, third = _sibling(first, 1), _sibling(first, 2)
        z = torch.randn(5, first.sizes.total)
        with torch.no_grad():
            want = (predict_decoded(first, norm, z) + predict_decoded(second, norm2, z)
                    + predict_decoded(third, norm, z)) / 3
            alone = predict_decoded(second, norm2, z)
        ens = ensemble_predictors(first, norm, [(second, norm2), (third, norm, "third")])
        assert ens is first and len(ens.predictor.members) == 3
        zg = z.clone().requires_grad_(True)
        got = predict_decoded(ens, norm, zg)
        assert torch.allclose(got.detach(), want, rtol=1e-4, atol=1e-10)
        assert not torch.allclose(want, alone, rtol=1e-2)  # the members do differ
        got.sum().backward()
        assert zg.grad is not None and torch.isfinite(zg.grad).all() and zg.grad.abs().sum() > 0


def test_ensemble_steers_the_design_loop(corpus, model_and_norm):
    """In a design run the optimiser reads the ensemble: the recorded predictions of the
    start latents are the mean of the two members' (not the design model's own), the VAE is
    untouched, and the candidates are still ranked by their FE labels."""
    import copy
    from gnn_truss.design import ensemble_predictors
    _, norm = model_and_norm
    torch.manual_seed(0)
    base = build_model(DECODED).eval()
    alone, sibling = copy.deepcopy(base), _sibling(base, 3)
    vae = {n: v.clone() for n, v in base.state_dict().items() if not n.startswith("predictor.")}
    model = ensemble_predictors(base, norm, [(sibling, norm)])
    assert all(torch.equal(v, vae[n]) for n, v in model.state_dict().items() if n in vae)
    result = run_design(model, norm, corpus, parse_objective("max-E22"), starts=3, steps=6,
                        lr=0.05, path_candidates=2, refine_rounds=0, workers=1,
                        polish_generations=0)
    z0 = torch.as_tensor(result.trace.z[0])
    with torch.no_grad():
        own, other = predict_decoded(alone, norm, z0), predict_decoded(sibling, norm, z0)
    recorded = torch.as_tensor(result.trace.labels[0], dtype=own.dtype)
    assert torch.allclose(recorded, (own + other) / 2, rtol=1e-4, atol=1e-10)
    assert not torch.allclose(recorded, own, rtol=1e-2)
    ok = [c for c in result.candidates if c.status == "ok"]
    assert ok and [c.fe_score for c in ok] == sorted(c.fe_score for c in ok)
    for c in ok[:3]:
        assert np.allclose(c.label, homogenize(c.truss).S, rtol=1e-8, atol=1e-12)


def test_ensemble_refuses_members_that_do_not_fit(corpus, model_and_norm):
    from gnn_truss.design import ensemble_predictors
    from gnn_truss.nn.predictor import PredictorEnsemble
    _, norm = model_and_norm
    torch.manual_seed(0)
    base = build_model(DECODED).eval()
    foreign = build_model(DECODED).eval()  # another draw of the encoder and decoders
    with pytest.raises(ValueError, match="other.pt: an ensemble member must share .* encoder"):
        ensemble_predictors(base, norm, [(foreign, norm, "other.pt")])
    torch.manual_seed(0)
    latent = build_model(SMALL).eval()
    with pytest.raises(ValueError, match="reads the latent input"):
        ensemble_predictors(base, norm, [(latent, norm)])
    curve = build_model({**DECODED, "num_targets": 13}).eval()
    with pytest.raises(ValueError, match="one kind with the same targets"):
        PredictorEnsemble([base.predictor, curve.predictor], [norm, norm])
    with pytest.raises(ValueError, match="one normaliser per member"):
        PredictorEnsemble([base.predictor], [norm, norm])
    with pytest.raises(ValueError, match="normalisers of \\[9\\] components"):
        PredictorEnsemble([curve.predictor], [norm])
    assert ensemble_predictors(base, norm, []) is base and not \
        isinstance(base.predictor, PredictorEnsemble)


def test_design_main_ensemble_option(cli_files, model_and_norm, tmp_path):
    """--ensemble loads the other checkpoints, records the members in the summary, and
    refuses a checkpoint with other encoder weights by name."""
    model, norm = model_and_norm
    d = cli_files
    ck = torch.load(d / "model.pt", weights_only=True)
    torch.save({**ck, "model": _sibling(model, 5).state_dict()}, tmp_path / "sib.pt")
    torch.manual_seed(7)
    torch.save({**ck, "model": build_model(SMALL).state_dict()}, tmp_path / "foreign.pt")
    rc = design_main(_args("--checkpoint", str(d / "model.pt"), "--ensemble",
                           str(tmp_path / "sib.pt"), "--objective", "max-E22", "--starts", "2",
                           "--steps", "3", "--out", str(tmp_path / "out"), "--workers", "1",
                           "--refine-rounds", "0", "--polish-generations", "0",
                           "--no-progress", "--no-figures", "--exports", "0"))
    assert rc == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["settings"]["ensemble"] == [str(d / "model.pt"), str(tmp_path / "sib.pt")]
    with pytest.raises(ValueError, match="foreign.pt: an ensemble member must share"):
        design_main(_args("--checkpoint", str(d / "model.pt"), "--ensemble",
                          str(tmp_path / "foreign.pt"), "--objective", "max-E22",
                          "--out", str(tmp_path / "bad"), "--no-progress"))
