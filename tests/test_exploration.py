"""Tests of gnn_truss.exploration (light repair, latent paths, sampling) and its CLI commands.

Models are tiny and built in-process (no shipped checkpoint, no runs/): ``random_model`` has
random weights; ``fixed_model`` has a decoder whose last layers ignore ``z`` and always give
the octet lattice plus a dangling body-node beam (2, 13), with zero offsets, so every count of
:func:`sample` is known by hand.
"""
import importlib.util
import json
import math
import sys

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

from gnn_truss import cli
from gnn_truss import design_space as ds
from gnn_truss.cli import main
from gnn_truss.corpus import Corpus, pack_adjacency, save_compact
from gnn_truss.exploration import (
    GROUPS,
    PATH_PROPERTIES,
    axis_sensitivity,
    corpus_fingerprint,
    corpus_hashes,
    decode_latents,
    encode_lattice,
    encode_lattices,
    group_slice,
    interpolate,
    lerp,
    light_repair,
    load_model,
    reconstruct_lattices,
    sample,
    slerp,
    topology_hash,
    traverse,
)
from gnn_truss.io import load_lattice
from gnn_truss.nn import build_model
from gnn_truss.training import validate_config
from gnn_truss.truss import Truss

TINY = {"encoder": "gnn", "topology": 3, "shared": 4, "geometry": 2, "hidden": 8, "layers": 1,
        "readout": 16, "decoder_hidden": [16], "offset_hidden": [16], "predictor_hidden": [8]}
NAMED = sorted(ds.ELEMENTARY_LATTICES)
OCTET = Truss.elementary("octet")
DANGLING = (2, 13)  # body node 13 hangs off octet node 2


def pair_index(i, j):
    return int(np.flatnonzero((ds.TRIU_I == i) & (ds.TRIU_J == j))[0])


def make_random_model(seed=0):
    torch.manual_seed(seed)
    return build_model(TINY).eval()


def make_fixed_model(seed=0, dangling_logit=8.0):
    """Decoder output independent of z: octet + (2, 13) with logits +-8 (the dangling beam's
    ``dangling_logit``), offsets 0."""
    model = make_random_model(seed)
    bias = torch.full((ds.NUM_PAIRS,), -8.0)
    for i, j in [*OCTET.edges.tolist(), DANGLING]:
        bias[pair_index(i, j)] = 8.0
    bias[pair_index(*DANGLING)] = dangling_logit
    with torch.no_grad():
        last_adj = model.adj_decoder.net[-1]
        last_adj.weight.zero_()
        last_adj.bias.copy_(bias)
        last_off = model.offset_decoder.net[-1]
        last_off.weight.zero_()
        last_off.bias.zero_()
    return model


def save_checkpoint(model, path, data_root):
    """A checkpoint in the layout of ``training.train``'s ``best.pt``."""
    cfg = validate_config({"model": TINY, "data": {"root": str(data_root)}})
    torch.save({"model": model.state_dict(), "epoch": 0, "config": cfg,
                "normalizer": {"scale": 1e-4, "mean": [0.0] * 9, "std": [1.0] * 9},
                "fingerprint": "0" * 40}, path)
    return path


def small_corpus(names=("octet", "bcc", "sc", "sc_2x2x2", "octet_2x2x2")):
    ts = [Truss.elementary(n) for n in names]
    rng = np.random.default_rng(0)
    return Corpus(pack_adjacency(np.stack([t.adjacency for t in ts])),
                  np.zeros((len(ts), ds.NUM_FREE_DOFS), np.float32),
                  rng.uniform(1e-3, 1e-2, (len(ts), 9)), None, {})


@pytest.fixture(scope="module")
def random_model():
    return make_random_model()


@pytest.fixture(scope="module")
def fixed_model():
    return make_fixed_model()


# --------------------------------------------------------------------------- light repair

@pytest.mark.parametrize("name", NAMED)
def test_light_repair_leaves_valid_lattices_unchanged(name):
    t = Truss.elementary(name)
    fixed, rep = light_repair(t)
    assert fixed == t and not rep.changed
    assert rep.dangling_nodes == () and rep.component_nodes == () and rep.num_components == 1


def test_light_repair_prunes_a_dangling_chain_repeatedly():
    # SC (lattice constant 2) + 26-22 (face node 22, in the z = 1 plane) + 22-13 (body node):
    # 13 has one beam in the periodic cell; once it is gone, 22 has one beam left.
    sc = Truss.elementary("sc")
    t = Truss.from_edges([*sc.edges.tolist(), (22, 26), (13, 22)])
    assert "no_dangling" in t.validate()
    assert t.physical_degree()[13] == 1 and t.physical_degree()[22] == 3
    fixed, rep = light_repair(t)
    assert fixed == sc
    assert rep.dangling_nodes == (13, 22)
    assert rep.component_nodes == ()
    assert sorted(map(tuple, rep.removed_edges.tolist())) == [(13, 22), (22, 26)]
    assert fixed.is_valid


def test_light_repair_drops_stray_component_and_keeps_the_largest():
    # octet (12 beams) + a separate V of two beams 0-13-8 (13 has degree 2: not dangling)
    stray = [(0, 13), (8, 13)]
    t = Truss.from_edges([*OCTET.edges.tolist(), *stray])
    assert "connected" in t.validate()
    fixed, rep = light_repair(t)
    assert fixed == OCTET
    assert rep.dangling_nodes == () and rep.num_components == 2
    assert sorted(rep.component_nodes) == [0, 8, 13]
    assert sorted(map(tuple, rep.removed_edges.tolist())) == sorted(stray)


def test_light_repair_zeroes_offsets_of_removed_nodes_and_handles_empty():
    t = Truss.from_edges([*OCTET.edges.tolist(), DANGLING])
    off = np.zeros((27, 3))
    off[13] = (0.1, -0.2, 0.05)
    fixed, rep = light_repair(t.with_offsets(off))
    assert fixed == OCTET and rep.dangling_nodes == (13,)
    assert np.all(fixed.offsets == 0)
    empty, rep = light_repair(Truss.from_edges(np.zeros((0, 2), int)))
    assert empty.num_edges == 0 and not rep.changed and rep.num_components == 0
    lone, rep = light_repair(Truss.from_edges([(0, 13)]))  # everything dangles
    assert lone.num_edges == 0 and rep.changed


def test_light_repair_drop_long_removes_long_beams_before_pruning():
    # SC + edge node 3 at (1, 0.5, 0) on two beams: 3-26 to (1, 1, 1) (length 1.118 >
    # sqrt(3)/2) and 3-8 to (1, 1, 0). With both it is no dangling node (periodic degree 3);
    # once the long beam is gone it hangs on 3-8 alone and is pruned next.
    sc = Truss.elementary("sc")
    t = Truss.from_edges([*sc.edges.tolist(), (3, 26), (3, 8)])
    assert t.physical_degree()[3] == 3
    kept, rep = light_repair(t)  # default: long beams are left alone
    assert kept == t and not rep.changed and len(rep.long_edges) == 0
    fixed, rep = light_repair(t, drop_long=True)
    assert fixed == sc and fixed.is_valid
    assert rep.long_edges.tolist() == [[3, 26]]
    assert rep.dangling_nodes == (3,)
    assert sorted(map(tuple, rep.removed_edges.tolist())) == [(3, 8), (3, 26)]
    assert rep.to_dict()["long_edges"] == [[3, 26]]


def test_light_repair_fit_lengths_moves_nodes_instead_of_dropping_beams():
    # BCC (body node 13 on beams to the 8 corners) with the body node pushed off the centre:
    # every corner beam but the nearest is too long, and the only admissible body position is
    # the centre
    bcc = Truss.elementary("bcc")
    off = np.zeros((27, 3))
    off[13] = (0.04, 0.03, -0.02)
    t = bcc.with_offsets(off)
    assert t.validate() == ["max_length"]
    kept, rep = light_repair(t)  # default: offsets untouched
    assert kept == t and not rep.changed and rep.fit == ""
    fixed, rep = light_repair(t, fit_lengths=True)
    assert fixed.is_valid and np.array_equal(fixed.adjacency, bcc.adjacency)
    np.testing.assert_allclose(fixed.offsets, 0.0, atol=1e-4)
    assert rep.changed and rep.fit in ("projected", "pulled") and len(rep.removed_edges) == 0
    assert rep.offset_shift == pytest.approx(np.linalg.norm(t.free_offsets - fixed.free_offsets))
    assert rep.to_dict()["fit"] == rep.fit
    # a valid lattice is left as it is
    same, rep = light_repair(bcc, fit_lengths=True)
    assert same == bcc and not rep.changed and rep.fit == "valid"
    with pytest.raises(ValueError, match="exclude each other"):
        light_repair(t, drop_long=True, fit_lengths=True)


def test_light_repair_fit_lengths_drops_only_hopeless_beams_then_prunes():
    # SC + edge node 3 on 3-26 (corners' coordinates differ by 1 in z: no offsets help) and
    # 3-8: the hopeless beam goes, node 3 then dangles and is pruned (as with drop_long)
    sc = Truss.elementary("sc")
    t = Truss.from_edges([*sc.edges.tolist(), (3, 26), (3, 8)])
    fixed, rep = light_repair(t, fit_lengths=True)
    assert fixed == sc and rep.long_edges.tolist() == [[3, 26]] and rep.dangling_nodes == (3,)
    assert rep.fit == "valid"


# --------------------------------------------------------------------------- lerp / slerp

def test_lerp_end_points_and_midpoint():
    z0, z1 = torch.tensor([1.0, -2.0, 3.0]), torch.tensor([3.0, 0.0, -1.0])
    z = lerp(z0, z1, torch.tensor([0.0, 0.5, 1.0]))
    torch.testing.assert_close(z, torch.stack([z0, (z0 + z1) / 2, z1]))
    assert lerp(z0, z1, 0.25).shape == (1, 3)


def test_slerp_end_points_norm_and_angle():
    g = torch.Generator().manual_seed(1)
    z0 = torch.randn(16, generator=g, dtype=torch.float64)
    z1 = torch.randn(16, generator=g, dtype=torch.float64)
    z1 = z1 * z0.norm() / z1.norm()  # same norm
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    z = slerp(z0, z1, t)
    torch.testing.assert_close(z[0], z0, rtol=0, atol=1e-12)
    torch.testing.assert_close(z[-1], z1, rtol=0, atol=1e-12)
    torch.testing.assert_close(z.norm(dim=1), torch.full((11,), float(z0.norm()),
                                                          dtype=torch.float64))
    theta = torch.arccos(torch.dot(z0, z1) / z0.norm() ** 2)
    angle = torch.arccos(torch.clamp(z @ z0 / (z.norm(dim=1) * z0.norm()), -1, 1))
    torch.testing.assert_close(angle, t * theta, rtol=0, atol=1e-6)
    # every point lies in the plane of z0 and z1
    basis, _ = torch.linalg.qr(torch.stack([z0, z1], 1))
    torch.testing.assert_close(basis @ (basis.T @ z.T), z.T)


def test_slerp_of_unequal_norms_keeps_end_points():
    z0, z1 = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0])
    z = slerp(z0, z1, torch.tensor([0.0, 0.5, 1.0]))
    torch.testing.assert_close(z[0], z0)
    torch.testing.assert_close(z[2], z1)
    # theta = 90 deg: weights sin(45 deg) / sin(90 deg) on both
    torch.testing.assert_close(z[1], torch.tensor([2.0, 1.0]) * math.sin(math.pi / 4))


@pytest.mark.parametrize("z1", [[2.0, 4.0, -2.0], [-1.0, -2.0, 1.0], [0.0, 0.0, 0.0]])
def test_slerp_falls_back_to_lerp_when_the_great_circle_is_undefined(z1):
    z0 = torch.tensor([1.0, 2.0, -1.0])
    t = torch.tensor([0.0, 0.3, 1.0])
    torch.testing.assert_close(slerp(z0, torch.tensor(z1), t), lerp(z0, torch.tensor(z1), t))


def test_path_functions_reject_bad_shapes():
    with pytest.raises(ValueError, match="two \\[d\\] vectors"):
        slerp(torch.zeros(3), torch.zeros(4), 0.5)
    with pytest.raises(ValueError, match="two \\[d\\] vectors"):
        lerp(torch.zeros(2, 3), torch.zeros(2, 3), 0.5)


# --------------------------------------------------------------------------- encode / decode

def test_group_slices_cover_the_latent_in_order(random_model):
    sizes = random_model.sizes
    sl = [group_slice(sizes, g) for g in GROUPS]
    assert [(s.start, s.stop) for s in sl] == [(0, 3), (3, 7), (7, 9)]
    with pytest.raises(ValueError, match="group must be one of"):
        group_slice(sizes, "colour")


def test_encode_batch_matches_single_and_decode_threshold(random_model):
    ts = [Truss.elementary(n) for n in NAMED]
    mu = encode_lattices(random_model, ts)
    assert mu.shape == (len(ts), random_model.sizes.total)
    for k, t in enumerate(ts):
        torch.testing.assert_close(encode_lattice(random_model, t), mu[k], rtol=1e-5,
                                   atol=1e-6)
    loose = decode_latents(random_model, mu, threshold=0.2)
    strict = decode_latents(random_model, mu, threshold=0.8)
    for a, b in zip(loose, strict):  # a higher threshold keeps a subset of the beams
        assert np.all(b.adjacency <= a.adjacency)
    with pytest.raises(ValueError, match="threshold"):
        decode_latents(random_model, mu, threshold=1.0)
    with pytest.raises(ValueError, match="z must be"):
        decode_latents(random_model, mu[:, :3])


def test_reconstruct_lattices_plain_and_symmetrised(random_model):
    from gnn_truss.symmetry import permute_truss
    rng = np.random.default_rng(5)
    ts = [Truss.elementary(n) for n in NAMED]
    ts = [t.with_offsets(ds.unpack_offsets(rng.uniform(-0.1, 0.1, 27)) * t.used[:, None])
          for t in ts]
    plain = reconstruct_lattices(random_model, ts)
    for a, b in zip(plain, decode_latents(random_model, encode_lattices(random_model, ts))):
        assert np.array_equal(a.adjacency, b.adjacency)
        np.testing.assert_allclose(a.offsets, b.offsets, atol=1e-6)
    sym = reconstruct_lattices(random_model, ts, symmetrise="axes_mirrors", batch_size=2)
    assert sum(not np.array_equal(a.adjacency, b.adjacency) or not np.allclose(
        a.offsets, b.offsets, atol=1e-4) for a, b in zip(sym, plain)) > 0
    # equivariant: the reconstruction of a mirrored, permuted lattice is the mirrored,
    # permuted reconstruction (an untrained model is not)
    g = ((2, 0, 1), (1, 1, 0))
    moved = reconstruct_lattices(random_model, [permute_truss(t, *g) for t in ts],
                                 symmetrise="axes_mirrors")
    for a, b in zip(moved, sym):
        want = permute_truss(b, *g)
        assert np.array_equal(a.adjacency, want.adjacency)
        np.testing.assert_allclose(a.offsets, want.offsets, atol=1e-6)
    with pytest.raises(ValueError, match="symmetrise"):
        reconstruct_lattices(random_model, ts, symmetrise="mirrors")
    # constrained decoding: the same lattice where the threshold one passes the topology
    # rules, otherwise the constrained_adjacency of the same logits
    from gnn_truss.decoding import constrained_adjacency
    from gnn_truss.graph import truss_to_data
    from gnn_truss.truss import topology_violations
    from torch_geometric.data import Batch
    con = reconstruct_lattices(random_model, ts, constrained=True)
    with torch.no_grad():
        logits = random_model(Batch.from_data_list([truss_to_data(t) for t in ts]),
                              sample=False)["logits"]
    bits, _ = constrained_adjacency(logits)
    for c, p, want in zip(con, plain, bits):
        assert np.array_equal(ds.adjacency_to_triu(c.adjacency).astype(bool), want)
        if not topology_violations(p.adjacency):
            assert np.array_equal(c.adjacency, p.adjacency)


# --------------------------------------------------------------------------- interpolation

@pytest.mark.parametrize("method", ["slerp", "linear"])
def test_interpolation_end_points_are_the_reconstructions(random_model, method):
    a, b = Truss.elementary("octet"), Truss.elementary("sc_2x2x2")
    p = interpolate(random_model, a, b, steps=5, method=method, fe=False)
    mu = encode_lattices(random_model, [a, b]).numpy()
    np.testing.assert_array_equal(p.z[0], mu[0])
    np.testing.assert_array_equal(p.z[-1], mu[1])
    np.testing.assert_allclose(p.t, np.linspace(0, 1, 5))
    # the reconstructions of a and b (z[0], z[-1] are their latent means, checked above),
    # decoded in a batch of the path's size: a batch of another size may round a logit near
    # 0 of this untrained model the other way on some CPUs
    rec = decode_latents(random_model, torch.from_numpy(np.stack([mu[0], *p.z[1:-1], mu[1]])))
    assert p.raw[0] == rec[0] and p.raw[-1] == rec[-1]
    assert len(p) == 5 and len(p.trusses) == 5 and p.C.shape == (5, 6, 6)
    assert p.meta["method"] == method and p.meta["kind"] == "interpolation"
    expected = lerp(torch.from_numpy(mu[0]), torch.from_numpy(mu[1]), torch.linspace(0, 1, 5)) \
        if method == "linear" else slerp(torch.from_numpy(mu[0]), torch.from_numpy(mu[1]),
                                         torch.linspace(0, 1, 5))
    np.testing.assert_allclose(p.z, expected.numpy(), atol=1e-6)


def test_refined_end_points_are_refine_latent_of_the_means(random_model):
    """With refine_steps the interpolation's ends and the traversal's centre are the means
    refined by gnn_truss.nn.vae.refine_latent on the lattices' own graphs."""
    from torch_geometric.data import Batch

    from gnn_truss.graph import truss_to_data
    from gnn_truss.nn.vae import refine_latent
    a, b = Truss.elementary("octet"), Truss.elementary("sc_2x2x2")
    batch = Batch.from_data_list([truss_to_data(a), truss_to_data(b)])
    mu = encode_lattices(random_model, [a, b])
    want = refine_latent(random_model, mu, batch.adj, batch.offset, steps=20)
    got = encode_lattices(random_model, [a, b], refine_steps=20)
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, mu)
    p = interpolate(random_model, a, b, steps=3, fe=False, refine_steps=20)
    np.testing.assert_allclose(p.z[0], want[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(p.z[-1], want[1].numpy(), atol=1e-6)
    assert p.meta["refine_steps"] == 20
    t = traverse(random_model, a, "shared", dim=0, steps=3, fe=False, refine_steps=20)
    np.testing.assert_allclose(t.z[1], want[0].numpy(), atol=1e-6)


def test_interpolation_reports_invalid_lattices_with_status(fixed_model):
    raw = make_fixed_model()  # the decoded lattice has a dangling beam: invalid unless repaired
    p = interpolate(raw, OCTET, Truss.elementary("bcc"), steps=3, repair=False)
    assert p.status == ["invalid"] * 3
    assert all(v == ["no_dangling"] for v in p.violations)
    assert all("no_dangling" in m for m in p.messages)
    assert np.all(np.isnan(p.C)) and np.all(np.isnan(p.properties["E1"]))
    fixed = interpolate(fixed_model, OCTET, Truss.elementary("bcc"), steps=3)
    assert fixed.status == ["ok"] * 3 and fixed.repaired.all()
    assert all(t == OCTET for t in fixed.trusses)
    assert set(fixed.properties) == set(PATH_PROPERTIES)
    # octet, rho = 0.15: K = rho E_s / 9 (SPEC.md section 3), cubic symmetry
    np.testing.assert_allclose(fixed.properties["K_V"], 0.15 / 9, rtol=1e-8)
    np.testing.assert_allclose(fixed.properties["E1"], fixed.properties["E3"], rtol=1e-9)
    rec = fixed.records()
    assert rec[1]["status"] == "ok" and rec[1]["num_beams"] == 12 and rec[1]["num_beams_raw"] == 13
    json.dumps(rec)  # JSON-ready


def test_interpolation_bad_arguments(random_model):
    with pytest.raises(ValueError, match="steps must be an integer >= 2"):
        interpolate(random_model, OCTET, OCTET, steps=1)
    with pytest.raises(ValueError, match="method must be"):
        interpolate(random_model, OCTET, OCTET, method="cubic")


# --------------------------------------------------------------------------- traversal

@pytest.mark.parametrize("group, dim", [("topology", 2), ("shared", 0), ("geometry", 1)])
def test_traverse_changes_only_the_chosen_coordinate(random_model, group, dim):
    p = traverse(random_model, OCTET, group, dim=dim, span=2.0, steps=5, fe=False)
    mu = encode_lattice(random_model, OCTET).numpy()
    k = group_slice(random_model.sizes, group).start + dim
    assert p.meta["latent_index"] == k and p.meta["dim"] == dim and p.meta["group"] == group
    np.testing.assert_allclose(p.t, np.linspace(-2, 2, 5))
    other = np.delete(np.arange(len(mu)), k)
    np.testing.assert_array_equal(p.z[:, other], np.broadcast_to(mu[other], (5, len(other))))
    np.testing.assert_allclose(p.z[:, k], mu[k] + np.linspace(-2, 2, 5), atol=1e-6)
    assert len(p.meta["sensitivity"]) == group_slice(random_model.sizes, group).stop - \
        group_slice(random_model.sizes, group).start


def test_traverse_default_dim_is_the_most_sensitive_axis(random_model):
    mu = encode_lattice(random_model, OCTET)
    for g in GROUPS:
        sens = axis_sensitivity(random_model, mu, g, span=3.0, steps=7)
        p = traverse(random_model, OCTET, g, fe=False)
        assert p.meta["dim"] == int(torch.argmax(sens))
        assert np.all(sens.numpy() >= 0)
    # the topology-specific axes do not reach the offset decoder, the geometry-specific ones
    # not the adjacency decoder: compare the two decoder outputs along one axis of each
    z = mu.repeat(2, 1)
    z[1, 0] += 1.0  # a topology-specific coordinate
    _, off = random_model.decode(z)
    torch.testing.assert_close(off[0], off[1])
    z = mu.repeat(2, 1)
    z[1, -1] += 1.0  # a geometry-specific coordinate
    logits, _ = random_model.decode(z)
    torch.testing.assert_close(logits[0], logits[1])


def test_traverse_bad_arguments(random_model):
    with pytest.raises(ValueError, match="group must be one of"):
        traverse(random_model, OCTET, "colour")
    with pytest.raises(ValueError, match=r"dim must be an integer in 0\.\.2"):
        traverse(random_model, OCTET, "topology", dim=3)
    with pytest.raises(ValueError, match="dim must be"):
        traverse(random_model, OCTET, "shared", dim=-1)
    with pytest.raises(ValueError, match="steps must be"):
        traverse(random_model, OCTET, "shared", steps=1)
    with pytest.raises(ValueError, match="span must be"):
        traverse(random_model, OCTET, "shared", span=0.0)


# --------------------------------------------------------------------------- sampling

def test_sample_counts_by_hand(fixed_model):
    n = 6
    res = sample(fixed_model, n=n, seed=3)
    r = res.report
    # raw: octet + dangling beam: one component, but 'no_dangling' fails
    assert r["raw"]["num_connected"] == n and r["raw"]["validity_paper"] == 1.0
    assert r["raw"]["num_valid"] == 0 and r["raw"]["violations"] == {"no_dangling": n}
    # repaired: the octet, FE-valid
    assert r["repaired"]["num_valid"] == n and r["repaired"]["validity_strict"] == 1.0
    assert r["repair_counts"] == {"num_changed": n, "dangling_nodes_removed": n,
                                  "component_nodes_removed": 0, "beams_removed": n,
                                  "num_multi_component": 0, "long_beams_removed": 0,
                                  "offsets_fitted": 0, "offsets_pulled": 0,
                                  "mean_offset_shift": 0.0}
    assert r["num_unique"] == 1 and r["uniqueness"] == pytest.approx(1 / n)
    assert r["novelty"] is None and r["novelty_topology"] is None
    assert r["status"] == {"ok": n}
    assert res.valid.all() and res.connected.all() and res.z.shape == (n, 9)
    np.testing.assert_allclose(res.C[0], res.C[-1])
    # novelty against a training set holding the octet / not holding it
    seen = sample(fixed_model, n=n, seed=3, train_hashes={OCTET.canonical_hash()},
                  train_topologies={topology_hash(OCTET)}).report
    assert seen["num_novel"] == 0 and seen["novelty"] == 0.0 and seen["novelty_topology"] == 0.0
    new = sample(fixed_model, n=n, seed=3, train_hashes=set(), train_topologies=set()).report
    assert new["novelty"] == 1.0 and new["novelty_topology"] == 1.0
    plain = sample(fixed_model, n=n, seed=3, repair=False).report
    assert plain["repaired"] is None and plain["num_valid"] == 0 and plain["uniqueness"] is None


def test_sample_constrained_drops_the_unsure_dangling_beam():
    n = 4
    model = make_fixed_model(dangling_logit=0.5)
    r = sample(model, n=n, seed=3, constrained=True).report
    # the most probable adjacency passing the topology rules: the octet, already at decoding
    assert r["constrained"] and r["raw"]["num_valid"] == n
    assert r["repair_counts"]["num_changed"] == 0 and r["status"] == {"ok": n}
    plain = sample(model, n=n, seed=3).report
    assert not plain["constrained"] and plain["raw"]["violations"] == {"no_dangling": n}
    # every entry equally sure: the cheapest fix is one flip, here adding a second beam at
    # node 13 ((0, 13) is among the candidates), not removing the dangling one
    sure = sample(make_fixed_model(), n=n, seed=3, constrained=True)
    assert sure.report["raw"]["num_valid"] == n
    t = sure.raw[0]
    assert t.num_edges == OCTET.num_edges + 2 and t.adjacency[0, 13] and t.adjacency[2, 13]


def test_sample_fit_lengths_repairs_over_long_beams_and_can_be_turned_off(random_model):
    n = 40
    fit = sample(random_model, n=n, seed=0).report
    keep = sample(random_model, n=n, seed=0, fit_lengths=False).report
    assert fit["fit_lengths"] and not keep["fit_lengths"]
    assert fit["raw"] == keep["raw"]  # the same decodes
    assert keep["repair_counts"]["offsets_fitted"] == 0
    assert "max_length" in keep["repaired"]["violations"]  # the random decoder's lattices
    assert "max_length" not in fit["repaired"]["violations"]
    assert fit["repair_counts"]["offsets_fitted"] == keep["repaired"]["violations"]["max_length"]
    assert fit["repaired"]["num_valid"] >= keep["repaired"]["num_valid"]
    assert not sample(random_model, n=4, seed=0, repair=False).report["fit_lengths"]


def test_sample_report_is_consistent_for_a_random_model(random_model):
    n = 40
    res = sample(random_model, n=n, seed=0)
    r = res.report
    for block in (r["raw"], r["repaired"]):
        assert 0 <= block["num_valid"] <= block["num_rules_ok"] <= n
        assert block["validity_paper"] == block["num_connected"] / n
        assert block["validity_strict"] == block["num_valid"] / n
    assert r["raw"]["num_connected"] == int(res.connected.sum())
    assert r["repaired"]["num_valid"] == r["num_valid"] == int(res.valid.sum())
    # repair never breaks a valid lattice
    assert r["repaired"]["num_valid"] >= r["raw"]["num_valid"]
    assert r["num_unique"] <= r["num_valid"] and sum(r["status"].values()) == n
    for k in np.flatnonzero(res.valid):
        assert res.status[k] == "ok" and np.all(np.isfinite(res.C[k]))
    # seeded: the same z and lattices again
    again = sample(random_model, n=n, seed=0)
    np.testing.assert_array_equal(again.z, res.z)
    assert again.report == r
    assert not np.array_equal(sample(random_model, n=n, seed=1).z, res.z)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        sample(random_model, n=0)


def test_corpus_hashes_match_the_truss_hashes():
    c = small_corpus()
    canon, topo = corpus_hashes(c, split=None)
    assert canon == {c.truss(i).canonical_hash() for i in range(len(c))}
    assert topo == {topology_hash(c.truss(i)) for i in range(len(c))}
    train, _ = corpus_hashes(c, split_seed=0)
    assert train < canon and len(train) == 4  # 0.8 of 5
    from gnn_truss.dataset import corpus_split
    for seed in (0, 1, 2):  # the content split's training lattices (data.split_by: content)
        rows = corpus_split(c, seed, split_by="content")["train"]
        assert corpus_hashes(c, split_seed=seed, split_by="content")[0] == \
            {c.truss(int(i)).canonical_hash() for i in rows}
    first = corpus_split(c.subset(slice(0, 3)), 0, split_by="content")["test"]
    assert corpus_hashes(c, limit=3, split="test", split_by="content")[0] == \
        {c.truss(int(i)).canonical_hash() for i in first}
    assert len(corpus_fingerprint(c)) == 40
    with pytest.raises(ValueError, match="no 'curve' labels"):
        corpus_fingerprint(c, target="curve")


# --------------------------------------------------------------------------- checkpoints / CLI

@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("explore")
    ck = save_checkpoint(make_fixed_model(), d / "fixed.pt", d / "no_data")
    rnd = save_checkpoint(make_random_model(), d / "random.pt", d / "no_data")
    corpus = save_compact(small_corpus(), d / "corpus.npz")
    return {"dir": d, "ck": str(ck), "random": str(rnd), "corpus": str(corpus)}


def test_load_model_round_trip(workdir):
    model, ck = load_model(workdir["random"])
    ref = make_random_model()
    torch.testing.assert_close(encode_lattice(model, OCTET), encode_lattice(ref, OCTET))
    assert not model.training and ck["config"]["model"]["topology"] == 3


def check_png(path, min_side=300):
    img = mpimg.imread(path)
    assert img.ndim == 3 and min(img.shape[:2]) >= min_side
    assert img[..., :3].std() > 0.01


def test_cli_sample_writes_report_lattices_and_figure(workdir, capsys):
    out = workdir["dir"] / "sample"
    assert main(["sample", "--checkpoint", workdir["ck"], "--n", "8", "--seed", "2", "--out",
                 str(out), "--corpus", workdir["corpus"], "--save", "3"]) == 0
    text = capsys.readouterr().out
    assert "8 samples (seed 2)" in text and "uniqueness" in text
    rep = json.loads((out / "report.json").read_text())
    assert rep["num_samples"] == 8 and rep["seed"] == 2 and rep["constrained"] is False
    assert rep["summary"]["validity_strict_repaired"] == 1.0
    assert rep["novelty_reference"]["corpus"] == workdir["corpus"]
    assert rep["novelty_reference"]["matches_checkpoint"] is False
    assert rep["novelty"] in (0.0, 1.0)  # the octet is or is not in the 4-lattice train split
    # every sample is the same octet: one distinct lattice file
    assert rep["lattice_files"] == ["lattices/sample_0000.json"]
    assert load_lattice(out / rep["lattice_files"][0]) == OCTET
    npz = np.load(out / "samples.npz")
    assert npz["z"].shape == (8, 9) and npz["valid"].all()
    check_png(out / "samples.png", 200)


def test_cli_sample_without_training_corpus_skips_novelty(workdir, capsys):
    out = workdir["dir"] / "sample_nocorpus"
    assert main(["sample", "--checkpoint", workdir["random"], "--n", "5", "--out", str(out),
                 "--no-fe", "--constrained"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["constrained"] is True and rep["fit_lengths"] is True
    assert rep["novelty"] is None and "novelty not computed" in rep["novelty_reference"]["note"]
    assert rep["fe_check"] is False
    assert main(["sample", "--checkpoint", workdir["random"], "--n", "5", "--out",
                 str(out / "keep"), "--no-fe", "--constrained", "--keep-long"]) == 0
    keep = json.loads((out / "keep" / "report.json").read_text())
    assert keep["fit_lengths"] is False and keep["raw"] == rep["raw"]
    assert keep["repair_counts"]["offsets_fitted"] == 0
    capsys.readouterr()


def test_cli_interpolate_writes_lattices_table_and_strip(workdir, capsys):
    out = workdir["dir"] / "interp"
    assert main(["interpolate", "octet", "corpus:1", "--checkpoint", workdir["ck"],
                 "--corpus", workdir["corpus"], "--steps", "3", "--method", "linear",
                 "--out", str(out / "refined"), "--refine-latent", "5"]) == 0
    meta = json.loads((out / "refined" / "properties.json").read_text())["meta"]
    assert meta["refine_steps"] == 5 and meta["fit_lengths"] is True
    assert main(["interpolate", "octet", "corpus:1", "--checkpoint", workdir["ck"],
                 "--corpus", workdir["corpus"], "--steps", "3", "--out", str(out / "keep"),
                 "--keep-long"]) == 0
    assert json.loads((out / "keep" / "properties.json").read_text())["meta"][
        "fit_lengths"] is False
    capsys.readouterr()
    assert main(["interpolate", "octet", "corpus:1", "--checkpoint", workdir["ck"],
                 "--corpus", workdir["corpus"], "--out", str(out / "bad"),
                 "--refine-latent", "-1"]) == 2
    assert "--refine-latent must be an integer >= 0" in capsys.readouterr().err
    assert not (out / "bad").exists()
    assert main(["interpolate", "octet", "corpus:1", "--checkpoint", workdir["ck"],
                 "--corpus", workdir["corpus"], "--steps", "3", "--method", "linear",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "octet \u2192 corpus1 (linear, 3 steps): 3 of 3" in text
    doc = json.loads((out / "properties.json").read_text())
    assert doc["meta"]["method"] == "linear" and len(doc["records"]) == 3
    assert [r["t"] for r in doc["records"]] == [0.0, 0.5, 1.0]
    assert doc["records"][0]["E1"] > 0
    rows = (out / "properties.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("step,t,status")
    for k in range(3):
        assert load_lattice(out / "lattices" / f"step_{k:02d}.json") == OCTET
    assert load_lattice(out / "inputs" / "b.json") == Truss.elementary("bcc")
    check_png(out / "strip.png")
    check_png(out / "properties.png")


def test_cli_traverse_one_group_and_all(workdir, capsys):
    out = workdir["dir"] / "trav"
    assert main(["traverse", "octet", "--checkpoint", workdir["ck"], "--group", "geometry",
                 "--dim", "1", "--span", "2", "--steps", "3", "--out", str(out)]) == 0
    doc = json.loads((out / "properties.json").read_text())
    assert doc["meta"]["group"] == "geometry" and doc["meta"]["dim"] == 1
    assert doc["meta"]["latent_index"] == 8
    assert [r["t"] for r in doc["records"]] == [-2.0, 0.0, 2.0]
    check_png(out / "strip.png")
    out_all = workdir["dir"] / "trav_all"
    assert main(["traverse", "bcc", "--checkpoint", workdir["random"], "--steps", "2",
                 "--out", str(out_all)]) == 0
    for g in GROUPS:
        assert (out_all / g / "strip.png").is_file()
        assert (out_all / g / "properties.csv").is_file()
    assert "most sensitive axis" in capsys.readouterr().out


@pytest.mark.parametrize("cmd", ["sample", "interpolate", "traverse"])
def test_exploration_commands_have_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: gnn-truss {cmd}" in out and "--checkpoint" in out


def test_cli_missing_default_checkpoint(monkeypatch, tmp_path, capsys):
    from gnn_truss import paths
    missing = str(tmp_path / "nowhere" / "model.pt")
    monkeypatch.setattr(cli, "DEFAULT_CHECKPOINT", missing)     # the option's default
    monkeypatch.setattr(paths, "DEFAULT_CHECKPOINT", missing)   # what the message compares
    assert main(["traverse", "octet", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "default checkpoint is not there yet" in err and "pass --checkpoint" in err


def test_cli_finds_a_relative_checkpoint_in_the_source_tree(workdir, tmp_path, monkeypatch,
                                                            capsys):
    # run from another directory, as after 'pip install -e .' in a clone: the relative
    # checkpoint path (like the default one) is looked up in the package's source tree
    from gnn_truss import paths
    monkeypatch.setattr(paths, "SOURCE_ROOT", workdir["dir"])
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["interpolate", "octet", "bcc", "--checkpoint", "fixed.pt", "--steps", "2",
                 "--out", "ip"]) == 0
    assert (tmp_path / "elsewhere" / "ip" / "properties.csv").is_file()
    capsys.readouterr()
    assert main(["sample", "--checkpoint", "gone.pt", "--out", "s"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint not found: gone.pt" in err and str(workdir["dir"] / "gone.pt") in err
    assert not (tmp_path / "elsewhere" / "s").exists()


def test_cli_bad_inputs_exit_2(workdir, tmp_path, capsys):
    out = str(tmp_path / "o")
    assert main(["sample", "--checkpoint", str(tmp_path / "none.pt"), "--out", out]) == 2
    err = capsys.readouterr().err
    assert "checkpoint not found" in err and "--checkpoint" in err
    with pytest.raises(SystemExit) as e:
        main(["traverse", "octet", "--checkpoint", workdir["ck"], "--group", "colour",
              "--out", out])
    assert e.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main(["traverse", "octet", "--checkpoint", workdir["ck"], "--group", "topology",
                 "--dim", "3", "--out", out]) == 2
    assert "dim must be an integer in 0..2" in capsys.readouterr().err
    assert main(["interpolate", "octet", "bcc", "--checkpoint", workdir["ck"], "--steps", "1",
                 "--out", out]) == 2
    assert "steps must be an integer >= 2" in capsys.readouterr().err
    assert main(["interpolate", "octet", "corpus:99", "--checkpoint", workdir["ck"],
                 "--corpus", workdir["corpus"], "--out", out]) == 2
    assert "index out of range" in capsys.readouterr().err
    assert main(["interpolate", "octet", "corpus:1", "--checkpoint", workdir["ck"],
                 "--out", out]) == 2
    assert "pass --corpus" in capsys.readouterr().err
    assert main(["interpolate", "octet", "nothing_like_it", "--checkpoint", workdir["ck"],
                 "--out", out]) == 2
    assert "neither an elementary lattice" in capsys.readouterr().err
    assert main(["sample", "--checkpoint", workdir["ck"], "--n", "0", "--out", out]) == 2
    assert "--n must be positive" in capsys.readouterr().err
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    assert main(["sample", "--checkpoint", str(garbage), "--out", out]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err


# --------------------------------------------------------------------------- external commands

@pytest.mark.parametrize("cmd", ["design", "export"])
def test_external_commands_help_or_clear_error(cmd, capsys):
    if importlib.util.find_spec(cli._EXTERNAL[cmd][0]) is None:  # not written yet
        assert main([cmd, "--help"]) == 2
        assert "not available" in capsys.readouterr().err
        return
    with pytest.raises(SystemExit) as e:  # the module's own parser prints the help
        main([cmd, "--help"])
    assert e.value.code == 0
    assert f"usage: gnn-truss {cmd}" in capsys.readouterr().out


def test_external_command_missing_module(monkeypatch, capsys):
    monkeypatch.setitem(cli._EXTERNAL, "ghost", ("gnn_truss.no_such_module", "add", "run",
                                                "a command that is not installed"))
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "not available" in capsys.readouterr().out
    assert main(["ghost", "--anything"]) == 2
    assert "'gnn-truss ghost' is not available" in capsys.readouterr().err


def test_external_command_passes_arguments(monkeypatch, tmp_path, capsys):
    (tmp_path / "fake_ext_mod.py").write_text(
        "def add_fake_arguments(p):\n"
        "    p.add_argument('lattice')\n"
        "    p.add_argument('--k', type=int, default=1)\n"
        "def fake_main(args):\n"
        "    print('ran', args.lattice, args.k, args.verbose)\n"
        "    if args.k < 0:\n"
        "        raise ValueError('k must be >= 0')\n"
        "    return 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli._EXTERNAL, "fake", ("fake_ext_mod", "add_fake_arguments",
                                               "fake_main", "a fake command"))
    assert main(["-v", "fake", "octet", "--k", "3"]) == 0
    assert "ran octet 3 True" in capsys.readouterr().out
    assert main(["fake", "octet", "--k", "-1"]) == 2
    assert "k must be >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["fake", "--help"])
    assert e.value.code == 0 and "usage: gnn-truss fake" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:  # unknown options of normal commands still fail
        main(["show", "octet", "--bogus"])
    assert e.value.code == 2
    sys.modules.pop("fake_ext_mod", None)
