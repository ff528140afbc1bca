"""Tests of gnn_truss.decoding (the most probable adjacency passing the topology rules) and of
gnn_truss.truss.topology_violations."""
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from gnn_truss import design_space as ds
from gnn_truss.corpus import load_corpus, unpack_adjacency
from gnn_truss.decoding import STATUS, constrained_adjacency, constrained_logits
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
