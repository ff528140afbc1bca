"""Tests of gnn_truss.generator: the paper-style random lattice generator."""
import numpy as np
import pytest

from gnn_truss import design_space as ds
from gnn_truss.generator import (GeneratorConfig, generate, perturb, random_subgraph,
                                 random_valid_subgraphs, repair, sample_lattice,
                                 sample_perturbed, shard_rng)
from gnn_truss.truss import Truss


def hashes(trusses):
    return [t.canonical_hash() for t in trusses]


@pytest.fixture(scope="module")
def sample():
    """20 generated lattices from a fixed stream (shared by the read-only tests)."""
    return generate(20, shard_rng(7, 0))


# ------------------------------------------------------------------ generate / sample_lattice
def test_generate_returns_valid_unique_lattices(sample):
    assert len(sample) == 20
    for t in sample:
        assert isinstance(t, Truss)
        assert t.validate() == []
        assert t.num_edges > 0
    assert len(set(hashes(sample))) == 20


def test_generate_is_reproducible_for_the_same_seed(sample):
    again = generate(20, shard_rng(7, 0))
    assert hashes(again) == hashes(sample)
    assert all(a == b for a, b in zip(again, sample))  # bit-identical, not only same hash


def test_shard_streams_are_independent():
    a = hashes(generate(15, shard_rng(3, 0)))
    b = hashes(generate(15, shard_rng(3, 1)))
    c = hashes(generate(15, shard_rng(4, 0)))
    assert not set(a) & set(b)
    assert not set(a) & set(c)
    # the same (seed, shard) pair is the same stream
    assert shard_rng(3, 1).random(5).tolist() == shard_rng(3, 1).random(5).tolist()


def test_generate_respects_and_updates_seen(sample):
    seen = set(hashes(sample[:10]))
    out = generate(10, shard_rng(7, 0), seen=seen)
    # the first 10 of the same stream are known, so they are skipped, not returned again
    assert not set(hashes(out)) & set(hashes(sample[:10]))
    assert hashes(out)[:10] == hashes(sample[10:20])
    assert len(seen) == 20


def test_generate_gives_up_after_max_draws():
    rng = np.random.default_rng(0)
    one = generate(1, rng, GeneratorConfig(seeds=("sc",), iterations=0, superpose_prob=0.0))
    # without perturbation every draw is the same SC lattice: a second unique one never comes
    assert one[0] == Truss.elementary("sc")
    with pytest.raises(RuntimeError, match="unique"):
        generate(2, rng, GeneratorConfig(seeds=("sc",), iterations=0, superpose_prob=0.0),
                 max_draws=20)


def test_offsets_within_range_and_zero_on_fixed_dofs():
    cfg = GeneratorConfig(offset_range=0.2)
    out = generate(15, np.random.default_rng(11), cfg)
    moved = 0
    for t in out:
        off = t.offsets
        assert np.all(off[~ds.FREE_DOF_MASK] == 0.0)
        assert np.all(np.abs(off) <= 0.2)
        assert np.all(off[~t.used] == 0.0)
        moved += np.count_nonzero(off[t.used])
    assert moved > 0  # the generator does move nodes


def test_default_offsets_use_the_full_range():
    out = generate(30, np.random.default_rng(5))
    off = np.concatenate([t.free_offsets for t in out])
    assert np.all(np.abs(off) <= 0.5)
    assert np.abs(off).max() > 0.3  # U(-0.5, 0.5) reaches beyond the 0.2 range above


def test_superposition_happens():
    # the same streams with and without superposition: superposed lattices have more beams
    n_single = [t.num_edges for t in
                generate(25, np.random.default_rng(2), GeneratorConfig(superpose_prob=0.0))]
    n_super = [t.num_edges for t in
               generate(25, np.random.default_rng(2), GeneratorConfig(superpose_prob=1.0))]
    assert np.mean(n_super) > 1.3 * np.mean(n_single)


def test_sample_lattice_is_the_superposition_of_two_perturbed_lattices():
    cfg = GeneratorConfig(superpose_prob=1.0)
    checked = 0
    for seed in range(4):
        t = sample_lattice(np.random.default_rng(seed), cfg)
        assert t.validate() == []
        # replay the stream: perturbed a, the superposition coin, perturbed b
        rng = np.random.default_rng(seed)
        a = sample_perturbed(rng, cfg)
        rng.random()
        b = sample_perturbed(rng, cfg)
        if not a.superpose(b).is_valid:
            continue  # sample_lattice retried; the replay is not worth following further
        assert t == a.superpose(b)
        assert np.array_equal(t.adjacency, a.adjacency | b.adjacency)
        assert t.num_edges >= max(a.num_edges, b.num_edges)
        checked += 1
    assert checked >= 2


def test_superpose_prob_zero_returns_a_single_perturbed_lattice():
    cfg = GeneratorConfig(superpose_prob=0.0)
    t = sample_lattice(np.random.default_rng(9), cfg)
    assert t.validate() == []
    assert t == sample_perturbed(np.random.default_rng(9), cfg)


def test_truss_superpose_semantics():
    a = Truss.elementary("bcc").with_offsets(ds.unpack_offsets(np.where(
        ds.FREE_DOF_NODE == 13, 0.1, 0.0)))
    b = Truss.elementary("octet").with_offsets(ds.unpack_offsets(np.where(
        np.isin(ds.FREE_DOF_NODE, [4, 10]), -0.2, 0.0)))
    t = a.superpose(b)
    assert np.array_equal(t.adjacency, a.adjacency | b.adjacency)
    assert t.num_edges == a.num_edges + b.num_edges  # BCC and octet share no beam
    assert np.allclose(t.offsets[13], [0.1, 0.1, 0.1])   # from a
    assert np.allclose(t.offsets[4], [-0.2, -0.2, 0.0])  # from b (unused in a)
    # a's offsets win on nodes both use
    c = Truss.from_edges([(0, 13), (13, 26), (13, 4)]).with_offsets(
        ds.unpack_offsets(np.where(ds.FREE_DOF_NODE == 13, -0.3, 0.0)))
    assert np.allclose(a.superpose(c).offsets[13], 0.1)
    assert np.allclose(c.superpose(a).offsets[13], -0.3)


# ------------------------------------------------------------------ perturb
def test_perturb_changes_the_lattice_and_zeroes_unused_offsets():
    rng = np.random.default_rng(0)
    # start with offsets on every free dof, also on nodes SC does not use
    start = Truss.elementary("sc").with_offsets(rng.uniform(-0.4, 0.4, ds.NUM_FREE_DOFS))
    assert np.any(start.offsets[~start.used] != 0)
    changed = 0
    for _ in range(10):
        p = perturb(start, rng)
        assert np.all(p.offsets[~p.used] == 0.0)
        assert np.all(p.offsets[~ds.FREE_DOF_MASK] == 0.0)
        changed += (p != start.with_offsets(start.offsets * start.used[:, None]))
    assert changed == 10


def test_perturb_without_iterations_only_clears_unused_offsets():
    rng = np.random.default_rng(1)
    start = Truss.elementary("bcc").with_offsets(rng.uniform(-0.4, 0.4, ds.NUM_FREE_DOFS))
    p = perturb(start, rng, GeneratorConfig(iterations=0))
    assert np.array_equal(p.adjacency, start.adjacency)
    assert np.array_equal(p.offsets[13], start.offsets[13])  # the only used movable node
    assert np.all(p.offsets[~p.used] == 0.0)


def test_perturb_is_reproducible_and_does_not_modify_its_input():
    start = Truss.elementary("octet")
    adj0 = start.adjacency.copy()
    a = perturb(start, np.random.default_rng(4))
    b = perturb(start, np.random.default_rng(4))
    assert a == b
    assert np.array_equal(start.adjacency, adj0)


def test_perturb_only_adds_short_beams():
    rng = np.random.default_rng(8)
    cfg = GeneratorConfig(op_weights=(1.0, 0.0, 1.0, 0.0, 0.0))  # only add nodes and beams
    for name in ds.SEED_LATTICES:
        start = Truss.elementary(name)
        p = perturb(start, rng, cfg)
        assert np.all(p.adjacency >= start.adjacency)  # nothing removed
        assert p.num_edges > start.num_edges
        new = (p.adjacency > start.adjacency)
        i, j = np.nonzero(np.triu(new))
        pos = p.positions
        assert np.all(np.linalg.norm(pos[i] - pos[j], axis=1) <= ds.R_MAX + 1e-12)


# ------------------------------------------------------------------ repair
def test_repair_removes_long_beams_and_dangling_chains():
    base = Truss.elementary("sc_2x2x2")
    assert base.is_valid
    edges = [*ds.ELEMENTARY_LATTICES["sc_2x2x2"],
             (0, 26),            # body diagonal of the octant: length sqrt(3) > sqrt(3)/2
             (1, 4), (4, 13)]    # dangling chain: body node 13 has one beam, then face node 4
    off = ds.unpack_offsets(np.where(np.isin(ds.FREE_DOF_NODE, [4, 13]), 0.1, 0.0))
    t = Truss.from_edges(edges, off)
    assert set(t.validate()) >= {"max_length", "no_dangling"}
    r = repair(t)
    assert r.validate() == []
    assert np.array_equal(r.adjacency, base.adjacency)
    assert np.all(r.offsets == 0.0)  # offsets of the pruned nodes 4 and 13 are cleared


def test_repair_keeps_a_valid_lattice_and_short_beams():
    t = Truss.from_edges([*ds.ELEMENTARY_LATTICES["sc_2x2x2"],
                          *ds.ELEMENTARY_LATTICES["bcc_2x2x2"]])
    assert t.is_valid
    assert repair(t) == t
    # a beam exactly sqrt(3)/2 long (half-cube body diagonal) is admissible
    assert np.isclose(t.edge_lengths.max(), ds.R_MAX)


def test_repair_measures_lengths_with_offsets():
    base = Truss.elementary("sc_2x2x2")
    t = Truss.from_edges([*ds.ELEMENTARY_LATTICES["sc_2x2x2"], (0, 13), (13, 26)])
    assert repair(t) == t  # both half-cube body diagonals are admissible on the grid
    off = np.zeros((27, 3))
    off[13, 0] = 0.45  # node 13 -> (0.95, 0.5, 0.5): beam 0-13 becomes 1.18 long
    r = repair(t.with_offsets(off))
    # 0-13 goes for its length, then 13-26 because node 13 is left dangling
    assert r == base


# ------------------------------------------------------------------ config and helpers
@pytest.mark.parametrize("kwargs", [
    {"iterations": -1},
    {"op_weights": (1.0, 1.0)},
    {"op_weights": (1.0, -1.0, 1.0, 1.0, 1.0)},
    {"op_weights": (0.0, 0.0, 0.0, 0.0, 0.0)},
    {"offset_range": 0.6},
    {"offset_range": -0.1},
    {"seeds": ("sc", "diamond")},
    {"seeds": ()},
    {"max_new_links": 0},
    {"superpose_prob": 1.5},
    {"superpose_prob": -0.1},
    {"max_tries": 0},
])
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        GeneratorConfig(**kwargs)


def test_config_defaults_follow_the_paper():
    cfg = GeneratorConfig()
    assert cfg.iterations == 10
    assert cfg.offset_range == 0.5
    assert set(cfg.seeds) == set(ds.ELEMENTARY_LATTICES)


def test_single_seed_and_config_are_honoured():
    cfg = GeneratorConfig(seeds=("bcc",), iterations=0, superpose_prob=0.0)
    t = sample_perturbed(np.random.default_rng(0), cfg)
    assert t == Truss.elementary("bcc")


def test_random_subgraph_helpers():
    rng = np.random.default_rng(0)
    t = random_subgraph(rng, p_edge=0.3, offset_scale=0.25)
    assert np.all(t.edge_lengths <= ds.R_MAX + 1e-12)
    assert np.all(np.abs(t.offsets) <= 0.25)
    assert np.all(t.offsets[~t.used] == 0.0)
    out = random_valid_subgraphs(3, seed=1, p_edge=0.3)
    assert len(out) == 3 and all(x.is_valid for x in out)
    assert hashes(out) == hashes(random_valid_subgraphs(3, seed=1, p_edge=0.3))
