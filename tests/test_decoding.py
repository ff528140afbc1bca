"""Tests of gnn_truss.decoding (the most probable adjacency passing the topology rules) and of
gnn_truss.truss.topology_violations."""
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from gnn_truss import design_space as ds
from gnn_truss.corpus import load_corpus, unpack_adjacency
from gnn_truss.decoding import (LENGTH_TOL, STATUS, constrained_adjacency, constrained_logits,
                                fit_lengths)
from gnn_truss.generator import random_subgraph
from gnn_truss.truss import TOPOLOGY_RULES, Truss, topology_violations

SHIPPED = Path(__file__).resolve().parents[1] / "datasets" / "default" / "raw" / "corpus.npz"


def _triu(t: Truss) -> np.ndarray:
    return ds.adjacency_to_triu(t.adjacency).astype(bool)


def _logits_for(bits: np.ndarray, rng, low=2.0, high=6.0) -> np.ndarray:
    """Confident logits whose threshold adjacency is ``bits``."""
    mag = rng.uniform(low, high, ds.NUM_PAIRS)
    return np.where(bits, mag, -mag)


def _log_prob(bits: np.ndarray, logits: np.ndarray) -> float:
    """log P(bits) under independent Bernoulli(sigmoid(logits)), computed directly."""
    lp = torch.nn.functional.logsigmoid(torch.as_tensor(np.where(bits, logits, -logits)))
    return float(lp.sum())


# --------------------------------------------------------------------------- topology rules

def test_topology_violations_agree_with_validate_on_random_subgraphs():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(300):
        t = random_subgraph(rng, p_edge=rng.uniform(0.02, 0.3))
        want = [r for r in t.validate() if r in TOPOLOGY_RULES]
        got = topology_violations(t.adjacency)
        assert got == want
        assert topology_violations(_triu(t)) == want  # the 351-vector form
        seen.update(got)
    assert seen == set(TOPOLOGY_RULES)  # every rule was exercised
    assert topology_violations(np.zeros(ds.NUM_PAIRS)) == list(TOPOLOGY_RULES)
    with pytest.raises(ValueError):
        topology_violations(np.ones((27, 26)))


def test_topology_violations_hand_cases():
    octet = Truss.elementary("octet_2x2x2")
    assert topology_violations(octet.adjacency) == []
    # one beam alone: its ends dangle and it cannot touch all six faces
    single = Truss.from_edges([(0, 1)])
    assert topology_violations(single.adjacency) == ["spans_cell", "no_dangling"]
    # sc_2x2x2 without one beam: that beam's ends are left with one beam each
    sc = Truss.elementary("sc_2x2x2")
    assert topology_violations(sc.adjacency) == []
    e = sc.edges[0]
    cut = sc.adjacency.copy()
    cut[e[0], e[1]] = cut[e[1], e[0]] = 0
    assert topology_violations(cut) == ["no_dangling"]


# --------------------------------------------------------------------------- search

def test_valid_threshold_adjacency_is_left_alone():
    rng = np.random.default_rng(1)
    t = Truss.elementary("octet_2x2x2")
    lg = _logits_for(_triu(t), rng)
    lg[rng.choice(ds.NUM_PAIRS, 5, replace=False)] *= 0.01  # some low-confidence entries
    assert topology_violations(lg > 0) == []
    out, status = constrained_logits(lg[None])
    assert status.tolist() == [0] and STATUS[0] == "valid"
    np.testing.assert_array_equal(out[0], lg)


def test_dropped_beam_that_leaves_a_dangling_node_is_restored():
    rng = np.random.default_rng(2)
    t = Truss.elementary("sc_2x2x2")  # every beam is needed (no dangling node without it)
    true = _triu(t)
    # find a beam whose removal breaks a topology rule
    for k in np.flatnonzero(true):
        broken = true.copy()
        broken[k] = False
        if topology_violations(broken):
            break
    else:
        pytest.fail("no critical beam found")
    lg = _logits_for(true, rng)
    lg[k] = -0.05  # the decoder narrowly misses that beam
    bits, status = constrained_adjacency(lg[None])
    assert status.tolist() == [1]
    np.testing.assert_array_equal(bits[0], true)
    out, _ = constrained_logits(torch.tensor(lg[None], dtype=torch.float32))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert out[0, k].item() == pytest.approx(0.05) and torch.equal(out[0] > 0,
                                                                  torch.tensor(true))


def test_search_is_the_most_probable_valid_adjacency_by_brute_force():
    """Against an independent search: every adjacency reachable by flipping <= 2 of the 8
    least confident entries, scored by its Bernoulli log-probability."""
    rng = np.random.default_rng(3)
    corpus = load_corpus(SHIPPED, limit=80)
    checked = 0
    for true in unpack_adjacency(corpus.adj, square=False).astype(bool):
        lg = _logits_for(true, rng)
        # blur 3 beams and 5 other pairs around the threshold, so that several sets of
        # flips compete
        blur = np.r_[rng.choice(np.flatnonzero(true), 3, replace=False),
                     rng.choice(np.flatnonzero(~true), 5, replace=False)]
        lg[blur] = rng.uniform(-1.0, 1.0, 8)
        bits, status = constrained_adjacency(lg[None], candidates=8, max_flips=2)
        order = np.argsort(np.abs(lg))[:8]
        best, best_lp = None, -np.inf
        base = lg > 0
        for r in range(0, 3):
            for s in itertools.combinations(order, r):
                trial_bits = base.copy()
                trial_bits[list(s)] ^= True
                if not topology_violations(trial_bits):
                    lp = _log_prob(trial_bits, lg)
                    if lp > best_lp + 1e-12:
                        best, best_lp = trial_bits, lp
        if best is None:
            assert status[0] == 2
            np.testing.assert_array_equal(bits[0], base)
        else:
            assert status[0] == (0 if np.array_equal(best, base) else 1)
            assert _log_prob(bits[0], lg) == pytest.approx(best_lp, abs=1e-9)
            assert topology_violations(bits[0]) == []
        checked += status[0] == 1
    assert checked >= 10  # the repair path was exercised


def test_unrepairable_adjacency_is_kept_and_flagged():
    lg = np.full((2, ds.NUM_PAIRS), -5.0)  # no beam at all
    lg[1] = _logits_for(_triu(Truss.elementary("sc")), np.random.default_rng(4))
    bits, status = constrained_adjacency(lg, candidates=2, max_flips=1)
    assert [STATUS[s] for s in status] == ["unrepaired", "valid"]
    assert not bits[0].any()


def test_zero_logit_flipped_on_reads_as_a_beam():
    rng = np.random.default_rng(5)
    true = _triu(Truss.elementary("sc_2x2x2"))
    for k in np.flatnonzero(true):
        broken = true.copy()
        broken[k] = False
        if topology_violations(broken):
            break
    lg = _logits_for(true, rng)
    lg[k] = 0.0  # exactly on the threshold: decoded as no beam
    out, status = constrained_logits(lg[None])
    assert status[0] == 1 and out[0, k] > 0
    np.testing.assert_array_equal(out[0] > 0, true)


def test_bad_input_is_refused():
    lg = np.zeros((1, ds.NUM_PAIRS))
    with pytest.raises(ValueError, match="351"):
        constrained_adjacency(np.zeros((1, 350)))
    bad = lg.copy()
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        constrained_logits(bad)
    with pytest.raises(ValueError, match="candidates"):
        constrained_adjacency(lg, candidates=0)
    with pytest.raises(ValueError, match="max_flips"):
        constrained_adjacency(lg, candidates=3, max_flips=4)
    with pytest.raises(ValueError, match="sets of flips"):  # 351 choose <= 3: 7.2 million
        constrained_adjacency(lg, candidates=351, max_flips=3)


# --------------------------------------------------------------------------- beam lengths

BODY = 13  # the node at (0.5, 0.5, 0.5), free on all three axes
VERTICES = [0, 2, 6, 8, 18, 20, 24, 26]  # the octant's corners, no free dof


def _free(offsets3: np.ndarray) -> np.ndarray:
    return ds.pack_offsets(np.asarray(offsets3, float))


def _lengths(adj, free) -> np.ndarray:
    return Truss(adj, free).edge_lengths


def test_near_neighbour_pairs_are_those_some_offsets_make_short_enough():
    # independently: the shortest a pair can be over the offset box, axis by axis (a free end
    # moves its coordinate by up to 0.5 towards the other end)
    near = ds.adjacency_to_triu(ds.edges_to_adjacency(ds.NEAR_NEIGHBOUR_EDGES)).astype(bool)
    gi, gj = ds.NODE_GRID[ds.TRIU_I], ds.NODE_GRID[ds.TRIU_J]
    slack = 0.5 * (ds.FREE_DOF_MASK[ds.TRIU_I].astype(float) + ds.FREE_DOF_MASK[ds.TRIU_J])
    shortest = np.linalg.norm(np.maximum(np.abs(gi - gj) - slack, 0.0), axis=1)
    base = np.linalg.norm(gi - gj, axis=1)
    assert near.sum() == 158
    assert np.all(base[near] <= ds.R_MAX + 1e-12)  # the zero offsets satisfy them
    assert np.all(shortest[~near] >= 1.0 - 1e-12)  # no offsets help the others
    # every beam of the shipped corpus joins a near-neighbour pair
    bits = unpack_adjacency(np.load(SHIPPED)["adj"][:2000], square=False).astype(bool)
    assert not np.any(bits[:, ~near])


@pytest.mark.parametrize("body", [(0.1, 0.1, 0.1), (0.2, 0.05, -0.1), (0.45, -0.3, 0.4)])
def test_one_beam_to_a_fixed_corner_is_pulled_onto_the_sphere(body):
    # beam from the corner (0, 0, 0) to the body node: the nearest admissible body position is
    # the radial projection onto the sphere of radius sqrt(3)/2 about the corner
    adj = ds.edges_to_adjacency([(0, BODY)])
    off = np.zeros((27, 3))
    off[BODY] = body
    p = ds.NODE_GRID[BODY] + off[BODY]
    assert np.linalg.norm(p) > ds.R_MAX
    x, status = fit_lengths(adj, off)
    assert status == "projected"
    want = np.zeros((27, 3))
    want[BODY] = ds.R_MAX * p / np.linalg.norm(p) - ds.NODE_GRID[BODY]
    np.testing.assert_allclose(x, _free(want), atol=1e-7)


def test_both_ends_free_on_one_axis_share_the_shortening():
    # edge node 1 (0.5, 0, 0), free in x, to the body node, free in x, y, z. Lagrange: the
    # beam vector's axis a scales by 1 / (1 + lam * n_a), n_a the number of free ends on a
    # (2 on x, 1 on y and z), lam fixed by the length; the change of the x-difference is
    # split equally between the two ends, the y/z changes go to the body node.
    from scipy.optimize import brentq
    adj = ds.edges_to_adjacency([(1, BODY)])
    off = np.zeros((27, 3))
    off[1, 0] = -0.3
    off[BODY] = (0.25, 0.2, 0.15)
    d0 = (ds.NODE_GRID[BODY] + off[BODY]) - (ds.NODE_GRID[1] + off[1])
    n = np.array([2.0, 1.0, 1.0])
    lam = brentq(lambda t: np.sum((d0 / (1 + t * n)) ** 2) - ds.R_MAX ** 2, 0.0, 100.0,
                 xtol=1e-15)
    delta = d0 / (1 + lam * n) - d0
    want = off.copy()
    want[1, 0] -= delta[0] / 2
    want[BODY] += [delta[0] / 2, delta[1], delta[2]]
    x, status = fit_lengths(adj, off)
    assert status == "projected"
    np.testing.assert_allclose(x, _free(want), atol=1e-7)
    assert _lengths(adj, x).max() <= ds.R_MAX + LENGTH_TOL


def test_body_node_held_by_all_eight_corners_goes_to_the_centre():
    # the BCC cell: the only admissible body position is the centre (a one-point set, where
    # SLSQP can stop a hair outside; the pull towards zero offsets settles it)
    adj = ds.edges_to_adjacency([(v, BODY) for v in VERTICES])
    off = np.zeros((27, 3))
    off[BODY] = (0.03, -0.02, 0.01)
    x, status = fit_lengths(adj, off)
    assert status in ("projected", "pulled")
    np.testing.assert_allclose(x, 0.0, atol=1e-4)
    assert _lengths(adj, x).max() <= ds.R_MAX + LENGTH_TOL
    assert Truss(adj, x).is_valid  # the BCC lattice itself


def test_fit_lengths_leaves_short_and_hopeless_lattices_alone():
    oct_ = Truss.elementary("octet")
    x, status = fit_lengths(oct_.adjacency, oct_.offsets)
    assert status == "valid" and np.array_equal(x, oct_.free_offsets)
    adj = ds.edges_to_adjacency([(0, 2), (0, BODY)])  # (0, 2): corners 1 apart
    off = np.zeros((27, 3))
    off[BODY] = (0.3, 0.3, 0.3)
    x, status = fit_lengths(adj, off)
    assert status == "inadmissible" and np.array_equal(x, _free(off))
    with pytest.raises(ValueError, match="NaN"):
        fit_lengths(adj, np.full(27, np.nan))


def test_fit_is_the_nearest_admissible_point_on_perturbed_corpus_lattices():
    # perturb shipped lattices until beams are too long; the true offsets (and the zero ones)
    # are admissible, so the projection is no farther from the perturbed point than they are,
    # and (projection onto a convex set) no farther from the true offsets than the perturbed
    # point was
    rng = np.random.default_rng(1)
    c = load_corpus(SHIPPED, limit=400, quiet=True)
    done = 0
    for k in range(len(c)):
        t = c.truss(k)
        x_true = t.free_offsets
        x0 = np.clip(x_true + rng.normal(0, 0.12, 27), -0.49, 0.49)
        if np.all(_lengths(t.adjacency, x0) <= ds.R_MAX + 1e-9):
            continue
        x, status = fit_lengths(t.adjacency, x0)
        assert status in ("projected", "pulled")
        assert _lengths(t.adjacency, x).max() <= ds.R_MAX + LENGTH_TOL
        assert np.all(np.abs(x) <= 0.5)
        d = np.linalg.norm(x - x0)
        assert d <= np.linalg.norm(x_true - x0) + 1e-6
        assert d <= np.linalg.norm(x0) + 1e-6
        assert np.linalg.norm(x - x_true) <= np.linalg.norm(x0 - x_true) + 1e-6
        done += 1
    assert done > 300
