"""Tests for :mod:`gnn_truss.truss` (with :mod:`gnn_truss.geometry` and :mod:`gnn_truss.cell`).

Lengths are in octant units: the octant is [0, 1]^3, the periodic cell [-1, 1]^3 (side 2, V = 8).
Every expected number below is derived by hand in the comment next to it.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from gnn_truss import design_space as ds
from gnn_truss.geometry import GEOM_TOL
from gnn_truss.truss import RULES, Truss, radius_for_density, relative_density

SC = list(ds.ELEMENTARY_LATTICES["sc"])
SC2 = list(ds.ELEMENTARY_LATTICES["sc_2x2x2"])
BCC = list(ds.ELEMENTARY_LATTICES["bcc"])
S2, S3 = np.sqrt(2.0), np.sqrt(3.0)


def make(edges, moves=None):
    """Truss from an edge list and ``{(node, axis): offset}``."""
    off = np.zeros((27, 3))
    for (n, a), v in (moves or {}).items():
        off[n, a] = v
    return Truss.from_edges(edges, off)


def wrap(points):
    """Points modulo the cell [-1, 1)^3, rounded to 1e-7 so that they can be compared as keys."""
    q = np.asarray(points, dtype=float)
    q = q - 2.0 * np.floor((q + 1.0) / 2.0)
    q = np.round(q, 7) + 0.0
    q[q >= 1.0 - 1e-7] -= 2.0
    return q + 0.0


def node_keys(pt):
    return {tuple(p) for p in wrap(pt.nodes)}


def strut_keys(pt, signs=(1, 1, 1)):
    """Physical strut identity: (midpoint mod cell, chord up to sign), optionally mirrored."""
    s = np.asarray(signs, dtype=float)
    chords = pt.chords * s
    mids = wrap((pt.nodes[pt.edges[:, 0]] + 0.5 * pt.chords) * s)
    keys = []
    for m, c in zip(mids, chords):
        first = np.flatnonzero(np.abs(c) > 1e-9)[0]
        c = c if c[first] > 0 else -c
        keys.append(tuple(m) + tuple(np.round(c, 7) + 0.0))
    return keys


def unsplit_length(t):
    """Sum over octant beams of (number of distinct physical images) x (beam length)."""
    planes = np.where(ds.FREE_DOF_MASK, -1, ds.NODE_GRID)
    pa, pb = planes[t.edges[:, 0]], planes[t.edges[:, 1]]
    mult = np.prod(np.where((pa == pb) & (pa >= 0), 1, 2), axis=1)
    return float(np.sum(mult * t.edge_lengths))


def check_periodic_invariants(t):
    """Invariants every valid truss's periodic reduction must satisfy."""
    m, pt = t.model, t.periodic()
    # octant multiplicities agree with the explicit reduction
    assert pt.num_nodes == m.node_mult.sum()
    assert pt.num_struts == m.seg_mult.sum()
    # every physical strut once: no two struts with the same midpoint and chord
    keys = strut_keys(pt)
    assert len(set(keys)) == len(keys)
    # mirror symmetry of the cell: the node and strut sets are closed under x, y, z -> -x, -y, -z
    for axis in range(3):
        s = np.ones(3)
        s[axis] = -1
        assert {tuple(p) for p in wrap(pt.nodes * s)} == node_keys(pt)
        assert set(strut_keys(pt, s)) == set(keys)
    # density bookkeeping: model length = periodic chords = unsplit beam images
    assert pt.lengths.sum() == pytest.approx(t.total_length(), rel=1e-12)
    assert t.total_length() == pytest.approx(unsplit_length(t), rel=1e-9)
    # master-node degree in the periodic truss = physical degree of the lattice node
    deg = np.bincount(pt.edges.ravel(), minlength=pt.num_nodes)
    index = {k: i for i, k in enumerate(tuple(p) for p in wrap(pt.nodes))}
    phys = t.physical_degree()
    for n in np.flatnonzero(t.used):
        assert deg[index[tuple(wrap(t.positions[n]))]] == phys[n]
    # canonical orientation of (i, j, n) ~ (j, i, -n): i <= j, and n lexicographically
    # positive for a strut from a node to its own image
    assert np.all(pt.edges[:, 0] <= pt.edges[:, 1])
    self_image = pt.shifts[pt.edges[:, 0] == pt.edges[:, 1]]
    assert all(tuple(n) > (0, 0, 0) for n in self_image.tolist())
    assert np.issubdtype(pt.shifts.dtype, np.integer)
    assert np.all(np.abs(pt.nodes) <= 1.0) and pt.volume == pytest.approx(8.0)


# ----------------------------------------------------------------------------- input checks
@pytest.mark.parametrize("adj, msg", [
    (np.zeros((26, 27)), r"shape \(27, 27\)"),
    (np.zeros((27, 27, 1)), "shape"),
    (np.triu(np.ones((27, 27)), 1), "symmetric"),
    (np.full((27, 27), 2.0), r"binary.*\[2"),
    (np.full((27, 27), 0.5), r"binary.*\[0\.5\]"),
    (np.full((27, 27), np.nan), "NaN"),
    (np.full((27, 27), np.inf), "NaN or inf"),
    (np.full((27, 27), "1"), "numeric"),
])
def test_bad_adjacency_raises(adj, msg):
    with pytest.raises(ValueError, match=msg):
        Truss(adj)


def _off(node, axis, value, shape=(27, 3)):
    off = np.zeros(shape)
    off[node, axis] = value
    return off


@pytest.mark.parametrize("offsets, msg", [
    (np.zeros((27, 2)), r"shape \(27, 3\)"),
    (np.zeros(26), "shape"),
    (np.zeros((1, 27, 3)), "shape"),
    (_off(0, 0, 0.1), r"fixed dof: node 0 \(vertex\) cannot move along x"),
    (_off(1, 1, 0.1), r"fixed dof: node 1 \(edge\) cannot move along y"),
    (_off(4, 2, -0.2), r"fixed dof: node 4 \(face\) cannot move along z"),
    (_off(13, 1, np.nan), r"NaN or inf \(node 13, axis y\)"),
    (_off(13, 2, np.inf), r"NaN or inf \(node 13, axis z\)"),
    (_off(13, 0, 0.7), r"out of range \[-0.5, 0.5\]: node 13 axis x = 0.7"),
    (_off(1, 0, -0.7), r"out of range.*node 1 axis x"),
])
def test_bad_offsets_raise(offsets, msg):
    with pytest.raises(ValueError, match=msg):
        Truss.from_edges(BCC, offsets)


def test_accepted_inputs():
    # paper convention (ones on the diagonal), bool dtype and nested lists are all accepted
    adj = ds.edges_to_adjacency(BCC).astype(bool)
    t = Truss(adj | np.eye(27, dtype=bool))
    np.testing.assert_array_equal(np.diag(t.adjacency), 0)
    assert t == Truss(adj.astype(int).tolist()) == Truss.elementary("bcc")
    # offsets as the [27] free-dof vector; the bound 0.5 itself is allowed
    free = np.zeros(27)
    free[12:15] = [0.5, -0.5, 0.25]  # body node 13 owns free dofs 12, 13, 14
    t = Truss.from_edges(BCC, free)
    np.testing.assert_array_equal(t.positions[13], [1.0, 0.0, 0.75])
    np.testing.assert_array_equal(t.free_offsets, free)
    # immutable value type
    with pytest.raises(ValueError):
        t.offsets[13, 0] = 0.0
    with pytest.raises(ValueError):
        t.adjacency[0, 1] = 1
    with pytest.raises(ValueError, match="unknown elementary lattice"):
        Truss.elementary("fcc")
    with pytest.raises(ValueError, match="outside"):
        Truss.from_edges([(0, 27)])


# ----------------------------------------------------------------------------- validation
# Each case breaks exactly one rule of a lattice that is otherwise valid.
ONE_RULE_CASES = {
    # SC (cell corner) plus a square loop 0-1-4-5 in the z=0 face around the origin: both
    # pieces are closed (every degree >= 2) and SC alone spans, but they share no node.
    "connected": (lambda: make(SC + [(0, 1), (1, 4), (4, 5), (0, 5)]), "connected"),
    # the square loop alone: connected, no dangling node (node 0: two in-plane beams with 2
    # images each = 4; node 4: 4 images of (1,4) over its 4 images = 1, plus 1 from (4,5)),
    # but it never reaches x=1, y=1 or z=1
    "spans_cell": (lambda: make([(0, 1), (1, 4), (4, 5), (0, 5)]), "spans_cell"),
    # SC plus (13,26): the body node has 8 images and the beam 8 images -> one beam per image
    "no_dangling": (lambda: make(SC + [(13, 26)]), "no_dangling"),
    # BCC with the body node moved to x=0.6: |(0.6, 0.5, 0.5)| = sqrt(0.86) = 0.927 > 0.866
    "max_length": (lambda: make(BCC, {(13, 0): 0.1}), "max_length"),
    # sc_2x2x2 + (4,13) + (13,26) with face node 4 at y = 0.5 - 0.4992 = 0.0008: used nodes 1 and
    # 4 are 0.0008 < GEOM_TOL apart (and 0.0008 > GEOM_TOL/2 from the plane y=0)
    "degenerate_close_nodes": (lambda: make(SC2 + [(4, 13), (13, 26)], {(4, 1): -0.4992}),
                               "not_degenerate"),
    # the same plus the beam (1,4) of length 0.0008 < GEOM_TOL
    "degenerate_short_beam": (lambda: make(SC2 + [(1, 4), (4, 13), (13, 26)], {(4, 1): -0.4992}),
                              "not_degenerate"),
    # edge node 1 moved by -0.5 onto the mirror plane x=0 (the position of unused vertex 0);
    # (1,13) + (13,26) then run along the body diagonal, 0.866 each
    "degenerate_edge_on_plane": (lambda: make(SC + [(1, 13), (13, 26)], {(1, 0): -0.5}),
                                 "not_degenerate"),
    # body node moved to x=0 (unused face node 14's position); beams (0,13), (13,24) of 0.707
    "degenerate_body_on_plane": (lambda: make(SC + [(0, 13), (13, 24)], {(13, 0): -0.5}),
                                 "not_degenerate"),
    # 1e-4 from the plane: within GEOM_TOL/2 of it, i.e. within GEOM_TOL of its mirror image
    "degenerate_body_near_plane": (lambda: make(SC + [(0, 13), (13, 24)], {(13, 0): -0.4999}),
                                   "not_degenerate"),
    # beam 1-11 from (0.5,0,0) to (1,0,0.5) has its midpoint at (0.75,0,0.25), where face node 10
    # sits after offsets x=+0.25, z=-0.25; here node 10 is unused
    "node_on_beam_unused": (lambda: make(SC2 + [(1, 11)], {(10, 0): 0.25, (10, 2): -0.25}),
                            "no_node_on_beam"),
    # same, node 10 used: (10,13) + (13,26) give it 2 images per image (8 / 4) and 13 two beams
    "node_on_beam_used": (lambda: make(SC2 + [(1, 11), (10, 13), (13, 26)],
                                       {(10, 0): 0.25, (10, 2): -0.25}), "no_node_on_beam"),
}


@pytest.mark.parametrize("case", sorted(ONE_RULE_CASES))
def test_lattice_breaking_exactly_one_rule(case):
    assert GEOM_TOL == 1e-3  # the offsets of the cases are sized for this tolerance
    build, rule = ONE_RULE_CASES[case]
    t = build()
    assert t.validate() == [rule]
    assert not t.is_valid
    with pytest.raises(ValueError, match=rule):
        t.check_valid()


@pytest.mark.parametrize("edges, moves", [
    (SC + [(0, 13), (13, 24)], {(13, 0): -0.499}),  # 1e-3 from the plane: allowed (> GEOM_TOL/2)
    (SC2 + [(1, 11)], {}),  # the node_on_beam cases with node 10 left on its grid point
    (SC2 + [(1, 11), (10, 13), (13, 26)], {}),
    (SC + [(1, 13), (13, 26)], {(1, 0): -0.4}),  # edge node 1 at x=0.1
    (BCC, {}),  # beams of exactly sqrt(3)/2 are allowed
])
def test_controls_of_one_rule_cases_are_valid(edges, moves):
    assert make(edges, moves).validate() == []


def test_empty_lattice_reports_every_rule():
    assert Truss(np.zeros((27, 27))).validate() == list(RULES)
    assert Truss(np.eye(27)).validate() == list(RULES)  # diagonal ones only: no beam
    with pytest.raises(ValueError, match="connected.*spans_cell.*no_node_on_beam"):
        Truss(np.zeros((27, 27))).check_valid()


def test_rules_reported_in_order():
    # one beam (0,13): one component; reaches only x=y=z=0; node 13 has one beam per image
    assert make([(0, 13)]).validate() == ["spans_cell", "no_dangling"]
    # plus a separate beam (2,24) from (1,0,0) to (0,1,1): the pieces share no node; now all six
    # faces are reached; |(-1,1,1)| = sqrt(3) > 0.866; its midpoint (0.5,0.5,0.5) is node 13
    t = make([(0, 13), (2, 24)])
    assert t.validate() == ["connected", "no_dangling", "max_length", "no_node_on_beam"]


def test_crossing_near_a_plane_is_degenerate():
    # Regression. (1,5) lies in the face z=0; (0,13) + (13,8) with the body node at z=0.0008
    # (offset -0.4992, farther than GEOM_TOL/2 from the plane) runs 0.0004 above (1,5) where
    # they cross at (0.25, 0.25, ~0). An octant beam can only meet z=0 mid-span if it lies in
    # it, so (0,13) is within GEOM_TOL of its own mirror image: the model snapped the crossing
    # onto z=0 and merged the two images (periodic length 36.73 instead of about 38.14).
    t = make(SC2 + [(1, 5), (0, 13), (8, 13)], {(13, 2): -0.4992})
    assert len(t.crossings()) == 1
    assert t.validate() == ["not_degenerate"]
    # control: 0.05 above the face there is no crossing and the lattice is valid
    t = make(SC2 + [(1, 5), (0, 13), (8, 13)], {(13, 2): -0.45})
    assert len(t.crossings()) == 0 and t.validate() == []


def test_beams_merged_at_a_crossing_are_degenerate():
    # Regression. Beams 13-20 and 13-11 leave the body node at (0.6,0.4,0.6) towards (1,0,1) and
    # (1,0,0.998): they stay within GEOM_TOL of each other up to where (10,21) crosses both at
    # (0.75,0.25,0.75); the two crossings merge and both beams then share the segment from node
    # 13 to the crossing, which the periodic reduction counted once (52 struts for 60 images).
    moves = {(13, 0): 0.1, (13, 1): -0.1, (13, 2): 0.1, (11, 2): 0.498}
    t = make(SC + [(10, 21), (13, 20), (11, 13)], moves)
    assert t.validate() == ["not_degenerate"]
    # control: with node 11 at z=0.8 only 13-20 is crossed (at (0.75,0.25,0.75)), valid
    moves[(11, 2)] = 0.3
    t = make(SC + [(10, 21), (13, 20), (11, 13)], moves)
    assert t.validate() == []
    np.testing.assert_allclose(t.crossings(), [[0.75, 0.25, 0.75]], atol=1e-12)
    check_periodic_invariants(t)


# ----------------------------------------------------------------------------- physical degree
def test_physical_degree_sc():
    # SC, lattice constant 2: node 8 at (1,1,0) has the octant beam to (1,1,0.5) and its z-mirror
    # -> 2; the edge nodes 17, 21, 25 have 2 images with one beam each side -> 2; corner 26 has
    # 3 beams x 2 images = 6 (the cubic coordination); node 0 is unused
    deg = Truss.elementary("sc").physical_degree()
    expected = np.zeros(27)
    expected[[8, 17, 20, 21, 24, 25]] = 2
    expected[26] = 6
    np.testing.assert_array_equal(deg, expected)


def test_physical_degree_bcc():
    # BCC: beams (0,13), (13,26) each have 8 images; nodes 0 and 26 have 1 image -> 8 each; the
    # body node has 8 images, each the midpoint of one corner-to-corner strut -> 2
    deg = Truss.elementary("bcc").physical_degree()
    assert (deg[0], deg[13], deg[26]) == (8, 2, 8)
    assert deg.sum() == 18


@pytest.mark.parametrize("name, node, expected", [
    ("sc_2x2x2", 0, 6),  # 3 cube-edge beams, each with its mirror -> simple cubic, 6
    ("sc_2x2x2", 1, 2),  # edge midpoint: one beam each side
    ("bcc_2x2x2", 0, 8), ("bcc_2x2x2", 13, 8),  # both BCC sites have 8 neighbours
    ("octet", 2, 12),  # FCC site (1,0,0): 3 beams in the faces x=1, y=0, z=0, 4 images each
    ("octet", 4, 2),  # face node = midpoint of one FCC bond
    ("octet_2x2x2", 0, 12),  # 3 face neighbours, 4 images each
    ("octet_2x2x2", 4, 12),  # 4 corners x (4 images / 4 node images) + 4 faces x (8 / 4)
])
def test_physical_degree_elementary(name, node, expected):
    assert Truss.elementary(name).physical_degree()[node] == expected


def test_physical_degree_densest_lattice():
    # all 158 near-neighbour beams: in the periodic 0.5-grid every node sees its 26 neighbours
    t = Truss.from_edges(ds.NEAR_NEIGHBOUR_EDGES)
    np.testing.assert_array_equal(t.physical_degree(), 26)


# ----------------------------------------------------------------------------- elementary lattices
# (unique periodic nodes, struts, strut length, total length), by hand in the cell [-1,1]^3:
ELEMENTARY = {
    # corner (1,1,1) + 3 edge midpoints x 2 images + 3 corners (1,1,0)-type = 1+6+3 = 10 nodes;
    # 3 struts of length 2 (one per axis), split in 4 -> 12 of 0.5, total 6
    "sc": (10, 12, 0.5, 6.0),
    # 8 vertices + 12 edge nodes x 2 images = 32; 8 cubes of side 1 x 3 struts = 24 of 1 -> 48
    "sc_2x2x2": (32, 48, 0.5, 24.0),
    # centre + corner + 8 body-node images = 10; 8 diagonals of sqrt(3), halved -> 16 of sqrt(3)/2
    "bcc": (10, 16, S3 / 2, 8 * S3),
    # 8 vertices + 8 body images = 16; 16 sites x 8 bonds / 2 = 64 bonds of sqrt(3)/2
    "bcc_2x2x2": (16, 64, S3 / 2, 32 * S3),
    # 4 FCC sites + 24 bond midpoints (6 face nodes x 4 images) = 28; 4 x 12 / 2 = 24 bonds of
    # sqrt(2), halved at the face nodes -> 48 of sqrt(2)/2
    "octet": (28, 48, S2 / 2, 24 * S2),
    # 8 cells x 4 sites = 32; 32 x 12 / 2 = 192 bonds of sqrt(2)/2
    "octet_2x2x2": (32, 192, S2 / 2, 96 * S2),
}


@pytest.mark.parametrize("name", sorted(ELEMENTARY))
def test_elementary_lattice_reduction(name):
    n_nodes, n_struts, length, total = ELEMENTARY[name]
    t = Truss.elementary(name)
    assert t.validate() == []
    assert t.model.num_crossings == 0
    pt = t.periodic()
    assert (pt.num_nodes, pt.num_struts) == (n_nodes, n_struts)
    assert (t.model.node_mult.sum(), t.model.seg_mult.sum()) == (n_nodes, n_struts)
    # every periodic chord equals the octant segment length: a wrong shift would give >= 1.5
    np.testing.assert_allclose(pt.lengths, length, rtol=1e-12)
    np.testing.assert_allclose(t.model.seg_lengths, length, rtol=1e-12)
    assert t.total_length() == pytest.approx(total, rel=1e-12)
    # rho = pi r^2 sum(L) / 8 = 0.15
    r = t.radius(0.15)
    assert r == pytest.approx(np.sqrt(0.15 * 8 / (np.pi * total)), rel=1e-12)
    assert relative_density(r, t.total_length()) == pytest.approx(0.15, rel=1e-12)
    check_periodic_invariants(t)


def test_sc_radius_and_chords():
    t = Truss.elementary("sc")
    # r = sqrt(0.15 * 8 / (pi * 6)) = sqrt(0.063662) = 0.25231
    assert t.radius() == pytest.approx(0.2523, abs=5e-5)
    # every SC chord is axis-aligned: one component +-0.5, two zero
    c = np.abs(t.periodic().chords)
    np.testing.assert_allclose(np.sort(c, axis=1), np.tile([0, 0, 0.5], (12, 1)), atol=1e-12)
    assert np.all(np.bincount(np.argmax(c, axis=1)) == 4)  # 4 per axis


def test_radius_helpers():
    assert radius_for_density(0.15, 6.0) == pytest.approx(np.sqrt(1.2 / (6 * np.pi)))
    with pytest.raises(ValueError, match="length"):
        radius_for_density(0.15, 0.0)
    with pytest.raises(ValueError, match="density"):
        radius_for_density(1.5, 6.0)
    with pytest.raises(ValueError):
        Truss(np.zeros((27, 27))).radius()


def test_random_valid_lattices_reduce_consistently():
    rng = np.random.default_rng(7)
    names = sorted(ds.ELEMENTARY_LATTICES)
    valid = []
    for _ in range(400):
        a, b = rng.choice(names, 2)
        extra = ds.NEAR_NEIGHBOUR_EDGES[rng.choice(158, rng.integers(0, 6), replace=False)]
        edges = list(ds.ELEMENTARY_LATTICES[a]) + list(ds.ELEMENTARY_LATTICES[b]) + extra.tolist()
        t = Truss.from_edges(edges, rng.uniform(-0.15, 0.15, 27))
        if t.is_valid:
            valid.append(t)
        if len(valid) == 25:
            break
    assert len(valid) >= 20
    assert any(t.model.num_crossings for t in valid)
    for t in valid:
        check_periodic_invariants(t)


# ----------------------------------------------------------------------------- crossings
def test_two_quarter_face_diagonals_cross():
    # (0,4): (0,0,0)-(0.5,0.5,0) is y = x; (1,5): (0.5,0,0)-(0,0.5,0) is y = 0.5 - x; they meet at
    # x = y = 0.25 in the face z = 0, at mid-span of both
    t = Truss.from_edges([(0, 4), (1, 5)])
    np.testing.assert_allclose(t.crossings(), [[0.25, 0.25, 0.0]], atol=1e-15)
    np.testing.assert_array_equal(t.crossing_pairs(), [[0, 1]])  # rows of t.edges
    np.testing.assert_array_equal(t.edges, [[0, 4], [1, 5]])
    assert t.model.planes[-1].tolist() == [-1, -1, 0]  # on the mirror plane z = 0


def test_crossing_splits_beams_in_periodic_truss():
    # sc_2x2x2 + (0,4) + (4,8) (the face diagonal through the face node) + (1,5)
    t = Truss.from_edges(SC2 + [(0, 4), (4, 8), (1, 5)])
    assert t.validate() == []
    np.testing.assert_allclose(t.crossings(), [[0.25, 0.25, 0.0]], atol=1e-15)
    pt = t.periodic()
    # nodes: 32 (sc_2x2x2) + face node 4 (4 images) + crossing in z=0 (4 images) = 40
    assert pt.num_nodes == 40
    # struts: 48 + 3 in-face beams x 4 images = 60 unsplit; (0,4) and (1,5) gain one segment
    # each, 4 images -> 68
    assert pt.num_struts == 68
    assert t.model.segments.shape == (24 + 3 + 2, 2)
    # total length is unchanged by splitting: 24 + 3 x 4 x sqrt(2)/2 = 24 + 6 sqrt(2)
    assert t.total_length() == pytest.approx(24 + 6 * S2, rel=1e-12)
    assert pt.lengths.sum() == pytest.approx(24 + 6 * S2, rel=1e-12)
    # the 8 struts at the crossing images are quarter diagonals of length sqrt(2)/4
    assert np.sum(np.isclose(pt.lengths, S2 / 4)) == 16
    check_periodic_invariants(t)


def test_densest_lattice_crossings():
    t = Truss.from_edges(ds.NEAR_NEIGHBOUR_EDGES)
    assert t.validate() == []
    got = {tuple(np.round(p, 9) + 0.0) for p in t.crossings()}
    # 8 half-cube centres, coordinates in {0.25, 0.75}^3 (4 body diagonals each)
    cubes = {(x, y, z) for x in (.25, .75) for y in (.25, .75) for z in (.25, .75)}
    # 36 half-square centres: one coordinate in {0, 0.5, 1} and two in {0.25, 0.75}
    squares = set()
    for axis in range(3):
        for v in (0.0, 0.5, 1.0):
            for a in (.25, .75):
                for b in (.25, .75):
                    p = [a, b]
                    p.insert(axis, v)
                    squares.add(tuple(p))
    assert len(cubes) == 8 and len(squares) == 36
    assert got == cubes | squares
    assert t.model.num_crossings == 44
    # crossing pairs: 8 cubes x C(4,2) + 36 squares x 1 = 84
    assert len(t.crossing_pairs()) == 84
    check_periodic_invariants(t)


def test_four_body_diagonals_merge_into_one_node():
    # the 4 body diagonals of the sub-cube [0,0.5]^3: (0,13), (1,14), (4,9), (5,10); all meet at
    # (0.25,0.25,0.25); (13,26) gives the body node its second beam
    diagonals = [(0, 13), (1, 14), (4, 9), (5, 10)]
    t = Truss.from_edges(SC2 + diagonals + [(13, 26)])
    assert t.validate() == []
    np.testing.assert_allclose(t.crossings(), [[0.25, 0.25, 0.25]], atol=1e-15)
    assert len(t.crossing_pairs()) == 6  # C(4, 2) pairs, merged into one node
    m = t.model
    c = np.flatnonzero(m.lattice_index < 0)[0]
    at = np.any(m.segments == c, axis=1)
    assert at.sum() == 8  # 4 beams split in 2 -> 8 segments end at the node
    np.testing.assert_allclose(m.seg_lengths[at], S3 / 4)  # halves of diagonals of sqrt(3)/2
    assert sorted(map(tuple, t.edges[np.unique(m.parent[at])].tolist())) == diagonals
    pt = t.periodic()
    # nodes: 32 + face nodes 4, 10, 14 (4 images each) + body node (8) + crossing (8) = 60
    assert pt.num_nodes == 60
    # struts: 48 + 5 interior beams x 8 images = 88 unsplit; + 4 splits x 8 images = 120
    assert pt.num_struts == 120
    deg = np.bincount(pt.edges.ravel(), minlength=pt.num_nodes)
    crossing = [i for i, p in enumerate(wrap(pt.nodes)) if np.allclose(np.abs(p), 0.25)]
    assert len(crossing) == 8 and np.all(deg[crossing] == 8)
    check_periodic_invariants(t)


# ----------------------------------------------------------------------------- identity
def _sample_truss():
    return make(SC2 + [(0, 4), (4, 8), (1, 5)], {(4, 0): 0.05, (4, 1): 0.05, (13, 2): 0.3})


def test_canonical_hash_equal_for_equal_trusses():
    t = _sample_truss()
    copy = Truss(t.adjacency.astype(int).tolist(), t.offsets.tolist())
    assert copy == t and copy is not t
    assert copy.canonical_hash() == t.canonical_hash()
    assert Truss.from_edges(t.edges[::-1].tolist(), t.free_offsets.tolist()).canonical_hash() \
        == t.canonical_hash()
    assert hash(copy) == hash(t) and len({t, copy}) == 1


def test_canonical_hash_changes_with_beams_and_used_offsets():
    t = _sample_truss()
    h = t.canonical_hash()
    assert len(h) == 40 and int(h, 16) >= 0  # SHA-1 hex digest
    # one beam more or less
    assert Truss.from_edges(t.edges.tolist() + [[13, 26]], t.offsets).canonical_hash() != h
    assert Truss.from_edges(t.edges[1:], t.offsets).canonical_hash() != h
    # a used node (4) moved by 1e-3 along x
    off = t.offsets.copy()
    off[4, 0] += 1e-3
    assert t.with_offsets(off).canonical_hash() != h
    # an unused node (13) moved: same physics, same hash (but a different value)
    off = t.offsets.copy()
    off[13] = [0.1, -0.2, 0.4]
    assert not t.used[13]
    moved = t.with_offsets(off)
    assert moved.canonical_hash() == h and moved != t
    # rounding to 6 decimals: a 1e-9 change of a used offset does not change the hash
    off = t.offsets.copy()
    off[4, 1] += 1e-9
    assert t.with_offsets(off).canonical_hash() == h


def test_canonical_hash_is_stable_across_processes():
    t = _sample_truss()
    code = ("import numpy as np; from gnn_truss.truss import Truss; "
            f"t = Truss({t.adjacency.astype(int).tolist()}, {t.offsets.tolist()}); "
            "print(t.canonical_hash())")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True, timeout=120)
    assert out.stdout.strip() == t.canonical_hash()


# ----------------------------------------------------------------------------- superpose
def test_superpose_adjacency_is_union():
    sc, bcc = Truss.elementary("sc"), Truss.elementary("bcc")
    s = sc.superpose(bcc)
    np.testing.assert_array_equal(s.adjacency, sc.adjacency | bcc.adjacency)
    assert sorted(map(tuple, s.edges.tolist())) == sorted(SC + BCC)
    assert s.num_edges == 8
    np.testing.assert_array_equal(s.adjacency, bcc.superpose(sc).adjacency)
    assert s.validate() == []


def test_superpose_offsets_rule():
    # self uses {8,17,20,21,24,25,26}; other uses {0,13,17,26}
    a = make(SC, {(17, 2): 0.1, (13, 0): 0.3, (4, 0): 0.2})  # 13 and 4 unused in a
    b = make(BCC + [(17, 26)], {(17, 2): -0.2, (13, 1): -0.1, (4, 1): 0.4})  # 4 unused in b
    s = a.superpose(b)
    assert s.offsets[17, 2] == 0.1  # used by both: self wins
    np.testing.assert_array_equal(s.offsets[13], [0.0, -0.1, 0.0])  # used by other only
    np.testing.assert_array_equal(s.offsets[4], 0.0)  # used by neither: zero
    assert np.count_nonzero(s.offsets) == 2


def test_superpose_with_itself():
    t = _sample_truss()
    assert t.superpose(t).canonical_hash() == t.canonical_hash()
    # offsets of unused nodes are dropped (documented), everything else is unchanged
    clean = t.with_offsets(np.where(t.used[:, None], t.offsets, 0.0))
    assert t.superpose(t) == clean
    assert clean.superpose(clean) == clean


def test_summary():
    s = Truss.elementary("octet").summary()
    assert s["valid"] and s["violated_rules"] == []
    assert (s["num_beams"], s["num_used_nodes"]) == (12, 10)
    assert s["used_node_types"] == {"vertex": 4, "edge": 0, "face": 6, "body": 0}
    assert (s["periodic_nodes"], s["periodic_struts"], s["num_crossings"]) == (28, 48, 0)
    assert s["total_length"] == pytest.approx(24 * S2)
