"""Tests of the linearised buckling analysis of the periodic cell (:mod:`gnn_truss.fe.buckling`).

Reference values: the closed-form buckling strain of the simple cubic lattice (the column
formula of ``test_fe_nonlinear.py``), the initial slope of the linear homogenisation, and the
loss of positive definiteness on the perfect nonlinear path (:func:`compress` with
``track_stability``), an independent route to the same critical strain.

Default-run cost: about 5 s on one core; ``-m slow`` adds about 45 s.
"""
import logging

import numpy as np
import pytest

from gnn_truss.fe import homogenize
from gnn_truss.fe.beam import circular_section
from gnn_truss.fe.buckling import Buckling, buckling_batch, linear_buckling
from gnn_truss.fe.nonlinear import compress, compression_model
from gnn_truss.generator import generate, shard_rng
from gnn_truss.properties import engineering_constants
from gnn_truss.symmetry import permute_truss
from gnn_truss.truss import Truss


@pytest.fixture(scope="module")
def random_lattices():
    """The two small generator lattices of ``test_fe_nonlinear.py`` (seed 2)."""
    return generate(2, shard_rng(2, 0))


def _sc_nonlinear_strain(density):
    """Closed-form critical strain of the SC columns on the nonlinear path (see
    ``test_fe_nonlinear._sc_buckling_strain``): a periodic column of length 2 buckles in its
    clamped-clamped Euler mode, Timoshenko-corrected, ``N (1 - N / EA) = P_T``."""
    sec = circular_section(Truss.elementary("sc").radius(density))
    P_E = 4 * np.pi**2 * sec.E * sec.I / 2.0**2
    P_T = P_E / (1 + sec.k * P_E / (sec.G * sec.A))
    EA = sec.E * sec.A
    return 0.5 * (1 - np.sqrt(1 - 4 * P_T / EA))


def test_sc_slender_columns_match_the_closed_form():
    """At density 0.005 (eps_cr 0.52 %) the linearisation error, O(eps_cr), is small: with 8
    elements per strut the first critical strain lies within 1 % above the closed form
    (measured +0.69 %; 4 elements +1.7 %, the displacement discretisation is stiff). The x
    and y columns buckle at the same strain: the first two modes coincide."""
    ref = _sc_nonlinear_strain(0.005)
    b = linear_buckling(Truss.elementary("sc"), density=0.005, elements_per_strut=8)
    assert 0.0 < b.strains[0] / ref - 1.0 < 0.01
    assert b.strains[1] == pytest.approx(b.strains[0], rel=1e-6)
    assert b.strains[2] > 1.1 * b.strains[0]


def test_sc_linearisation_error_is_first_order_in_the_strain():
    """At the default density (eps_cr 12 %) the estimate overshoots the nonlinear bifurcation
    by less than eps_cr relative (measured +8.9 %, 4 elements), and at density 0.05 by less
    than half as much (+4.5 %)."""
    sc = Truss.elementary("sc")
    errs = []
    for density in (0.15, 0.05):
        ref = _sc_nonlinear_strain(density)
        errs.append(linear_buckling(sc, density=density).strains[0] / ref - 1.0)
        assert 0.0 < errs[-1] < ref
    assert errs[1] < 0.55 * errs[0]


def test_mesh_refinement_lowers_the_critical_strain(random_lattices):
    """Displacement elements are too stiff: 2 -> 4 -> 8 elements per strut lower the first
    critical strain monotonically, 4 -> 8 by less than 2 %."""
    t = random_lattices[1]
    e = [linear_buckling(t, elements_per_strut=m).strains[0] for m in (2, 4, 8)]
    assert e[0] > e[1] > e[2]
    assert e[1] / e[2] - 1.0 < 0.02


@pytest.mark.parametrize("name", ["octet", "random0", "random1"])
def test_modulus_is_the_slope_of_the_pre_buckling_path(random_lattices, name):
    """``modulus`` is E3 = 1 / S33 of the linear homogenisation (rel 1e-12), and the nonlinear
    cell's secant stress at 1e-5 strain (perfect mesh) matches it (rel 1e-4, the geometric
    nonlinearity being O(strain)): the buckling model and the linear labels are one cell."""
    t = Truss.elementary("octet") if name == "octet" else random_lattices[int(name[-1])]
    E3 = float(engineering_constants(homogenize(t).C)["E3"])
    b = linear_buckling(t)
    assert b.modulus == pytest.approx(E3, rel=1e-12)
    res = compress(compression_model(t, imperfection=0.0), strains=[1e-5], max_step=1e-5)
    assert res.stress[-1] / 1e-5 == pytest.approx(b.modulus, rel=1e-4)


def test_units_and_symmetry(random_lattices):
    """Critical strains do not depend on E_s and the modulus scales with it; the x-y swap of a
    lattice (same z loading) gives the same strains (rel 1e-6)."""
    t = random_lattices[0]
    b = linear_buckling(t)
    b10 = linear_buckling(t, E=10.0)
    np.testing.assert_allclose(b10.strains, b.strains, rtol=1e-6)
    assert b10.modulus == pytest.approx(10 * b.modulus, rel=1e-9)
    swapped = linear_buckling(permute_truss(t, (1, 0, 2)))
    np.testing.assert_allclose(swapped.strains, b.strains, rtol=1e-6)


def test_bad_input_raises(random_lattices):
    t = random_lattices[0]
    for kwargs, match in (({"axis": 3}, "axis"), ({"axis": True}, "axis"),
                          ({"axis": 2.0}, "axis"), ({"num_modes": 0}, "num_modes"),
                          ({"num_modes": True}, "num_modes"), ({"delta": 0.0}, "delta"),
                          ({"delta": float("nan")}, "delta"), ({"delta": None}, "delta"),
                          ({"delta": "x"}, "delta"),
                          ({"elements_per_strut": 0}, "elements_per_strut")):
        with pytest.raises(ValueError, match=match):
            linear_buckling(t, **kwargs)
    with pytest.raises(ValueError, match="Truss"):
        linear_buckling(np.zeros((27, 27)))
    adj = np.zeros((27, 27), dtype=bool)
    adj[0, 13] = adj[13, 0] = True  # a star of half BCC struts: a mechanism
    with pytest.raises(ValueError, match="linear homogenisation says"):
        linear_buckling(Truss(adj, np.zeros((27, 3))))


def test_batch_matches_single_calls_and_flags_failures(random_lattices, caplog):
    """Rows equal :func:`linear_buckling`; a lattice that cannot be analysed gives a NaN row,
    ``ok`` False and a logged reason, and the other rows are kept; two workers give the same."""
    bad = np.zeros((27, 27), dtype=bool)
    bad[0, 13] = bad[13, 0] = True
    items = [random_lattices[0], (bad, np.zeros((27, 3))), random_lattices[1]]
    with caplog.at_level(logging.WARNING):
        s, m, ok = buckling_batch(items, num_modes=2)
    assert ok.tolist() == [True, False, True]
    assert np.all(np.isnan(s[1])) and np.isnan(m[1])
    assert "lattice 1" in caplog.text
    for i in (0, 2):
        b = linear_buckling(random_lattices[i // 2], num_modes=2)
        np.testing.assert_allclose(s[i], b.strains, rtol=1e-9)
        assert m[i] == pytest.approx(b.modulus, rel=1e-12)
    s2, m2, ok2 = buckling_batch(items, num_modes=2, workers=2)
    np.testing.assert_array_equal(ok2, ok)
    np.testing.assert_allclose(s2[ok], s[ok], rtol=1e-9)
    for kwargs in ({"axis": 5}, {"num_modes": 0}, {"density": -1.0}, {"workers": 0}):
        with pytest.raises(ValueError):  # bad arguments are refused, not turned into NaN rows
            buckling_batch(items[:1], **kwargs)


def test_result_type():
    b = linear_buckling(Truss.elementary("sc"), num_modes=1)
    assert isinstance(b, Buckling) and b.strains.shape == (1,) and b.axis == 2


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1])
def test_matches_the_bifurcation_of_the_nonlinear_path(random_lattices, index):
    """The perfect nonlinear path (no imperfection, no branch switching) loses positive
    definiteness within 4 % below the linearised estimate (measured 2.7 % and 1.7 % at
    eps_cr 4.0 % and 2.7 %: the pre-buckling nonlinearity, first order in eps_cr)."""
    t = random_lattices[index]
    e = linear_buckling(t).strains[0]
    strains = [0.5 * e, 0.9 * e, 0.94 * e, 0.97 * e, 0.99 * e, 1.01 * e, 1.05 * e]
    res = compress(compression_model(t, imperfection=0.0), strains=np.round(strains, 8),
                   max_step=0.5 * e, track_stability=True, branch_switching=False)
    assert res.ok and len(res.critical_strains) >= 1
    assert 0.0 < 1.0 - res.critical_strains[0] / e < 0.04


def test_cli_buckle(capsys):
    """``gnn-truss buckle`` prints the strains of :func:`linear_buckling`; bad input exits 2."""
    import json

    from gnn_truss import cli
    assert cli.main(["buckle", "sc", "--json", "--modes", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    b = linear_buckling(Truss.elementary("sc"), num_modes=2)
    np.testing.assert_allclose(out["critical_strains"], b.strains, rtol=1e-12)
    assert out["modulus"] == pytest.approx(0.05, rel=1e-6)  # E3 of SC = rho_columns E_s / 3
    assert cli.main(["buckle", "sc", "--modes", "0"]) == 2
    assert "--modes" in capsys.readouterr().err


def test_validate_false_analyses_a_lattice_over_the_length_limit():
    """SC plus one face-diagonal-and-a-half strut (nodes 1 -> 8, longer than sqrt(3)/2) breaks
    only the ``max_length`` rule: refused by default, analysed with ``validate=False``; the
    modulus is E3 of the linear homogenisation run without validation (rel 1e-3)."""
    sc = Truss.elementary("sc")
    a = sc.adjacency.copy()
    a[1, 8] = a[8, 1] = 1
    t = Truss(a, sc.offsets)
    assert t.validate() == ["max_length"]
    with pytest.raises(ValueError, match="max_length"):
        linear_buckling(t)
    b = linear_buckling(t, validate=False)
    assert np.all(np.isfinite(b.strains)) and np.all(b.strains > 0)
    E3 = float(engineering_constants(homogenize(t, validate=False).C)["E3"])
    assert b.modulus == pytest.approx(E3, rel=1e-3)


def test_other_axes_and_both_eigensolvers(random_lattices, monkeypatch):
    """Loading along x equals loading the lattice with x and z swapped along z (rel 1e-9); the
    dense and the sparse (Lanczos) eigensolver give the same strains (rel 1e-7)."""
    import gnn_truss.fe.buckling as buckling
    t = random_lattices[1]
    bx = linear_buckling(t, axis=0)
    bz = linear_buckling(permute_truss(t, (2, 1, 0)), axis=2)
    np.testing.assert_allclose(bx.strains, bz.strains, rtol=1e-9)
    assert bx.modulus == pytest.approx(bz.modulus, rel=1e-12) and bx.axis == 0
    ref = linear_buckling(t, num_modes=4)
    for limit in (0, 10**6):  # all sparse, all dense
        monkeypatch.setattr(buckling, "DENSE_LIMIT", limit)
        np.testing.assert_allclose(linear_buckling(t, num_modes=4).strains, ref.strains,
                                   rtol=1e-7)


def test_pre_buckling_state_converges_or_says_so(random_lattices, monkeypatch):
    """A larger ``delta`` (1e-3) needs more Newton steps and gives the same first critical
    strain to O(delta) (rel 1e-2); with the iterations capped at one the analysis refuses with
    a message that names the residual, instead of using an unconverged state."""
    import gnn_truss.fe.buckling as buckling
    t = Truss.elementary("octet")
    e = linear_buckling(t).strains[0]
    assert linear_buckling(t, delta=1e-3).strains[0] == pytest.approx(e, rel=1e-2)
    monkeypatch.setattr(buckling, "PRESTRESS_ITER", 1)
    with pytest.raises(ValueError, match="did not converge.*residual"):
        linear_buckling(t, delta=1e-3)


def test_cli_reports_a_lattice_it_cannot_analyse(tmp_path, capsys):
    """A mechanism exits 1 with ``error: LABEL: ...`` (as ``homogenize``); ``--modes`` is
    bounded."""
    from gnn_truss import cli
    from gnn_truss.io import save_lattice
    adj = np.zeros((27, 27), dtype=bool)
    adj[0, 13] = adj[13, 0] = True
    path = save_lattice(Truss(adj, np.zeros((27, 3))), tmp_path / "star.json")
    assert cli.main(["buckle", str(path)]) == 1
    assert "error:" in capsys.readouterr().err
    assert cli.main(["buckle", "sc", "--modes", "1000"]) == 2


def _random_pencil(n=60, seed=0):
    """A sparse positive definite ``K0`` shaped like a cell's stiffness (chains plus a few
    dense rows and columns) and a sparse symmetric indefinite ``K1``."""
    import scipy.sparse as sp
    rng = np.random.default_rng(seed)
    i = np.arange(n - 1)
    B = sp.coo_matrix((rng.uniform(0.5, 1.5, n - 1), (i, i + 1)), shape=(n, n)).tocsr()
    dense_rows = rng.choice(n, 3, replace=False)
    D = sp.lil_matrix((n, n))
    for r in dense_rows:
        D[r, :] = rng.normal(0, 0.1, n)
    G = (B + D).toarray()
    K0 = sp.csc_matrix(G @ G.T + np.eye(n))
    H = sp.random(n, n, density=0.05, random_state=seed).toarray()
    K1 = sp.csc_matrix(-(H + H.T) - 0.2 * np.eye(n))
    return K0, K1


def test_factor_order_solves_and_critical_count_is_the_inertia():
    """:func:`elimination_order` puts the sparsest rows first; the factor in that order solves
    ``K0 x = b`` (rel 1e-10 against the dense solve), and :func:`critical_count` equals the
    number of negative eigenvalues of the dense ``K0 + s K1`` at every tested strain (the
    eigenvalues computed by LAPACK, independent of the factor)."""
    from gnn_truss.fe.buckling import _SymmetricFactor, critical_count, elimination_order
    K0, K1 = _random_pencil()
    order = elimination_order(K0)
    nnz = np.diff(K0.indptr)[order]
    assert np.all(np.diff(nnz) >= 0)
    b = np.random.default_rng(1).normal(size=K0.shape[0])
    x = _SymmetricFactor(K0, order).solve(b)
    np.testing.assert_allclose(x, np.linalg.solve(K0.toarray(), b), rtol=1e-10, atol=1e-12)
    mu = _dense_pencil_eigvals(-K1.toarray(), K0.toarray())
    crit = np.sort(1.0 / mu[mu > 0])
    assert len(crit) >= 4
    for s in (0.5 * crit[0], 0.5 * (crit[0] + crit[1]), 0.5 * (crit[2] + crit[3]),
              1.5 * crit[-1]):
        dense = int(np.sum(np.linalg.eigvalsh((K0 + s * K1).toarray()) < 0))
        assert critical_count(K0, K1, s) == dense == int(np.sum(crit < s))


def _dense_pencil_eigvals(A, B):
    import scipy.linalg
    return scipy.linalg.eigh(A, B, eigvals_only=True)


@pytest.mark.parametrize("name,pattern", [
    ("bcc_2x2x2", [1, 1, 1, 1, 1.347655, 1.347655]),
    ("octet_2x2x2", [1, 1, 1.08302, 1.08302, 1.08302, 1.08302]),
])
def test_repeated_critical_strains_are_all_found(name, pattern):
    """The 2x2x2 tilings buckle in symmetric families of modes: bcc_2x2x2 four times at its
    lowest critical strain, octet_2x2x2 twice and then four times (ratios to the lowest from
    the dense eigensolver, to 1e-6). The Lanczos path must return every copy."""
    b = linear_buckling(Truss.elementary(name), num_modes=6)
    np.testing.assert_allclose(b.strains / b.strains[0], pattern, rtol=2e-6)


def _lossy_eigsh(monkeypatch, drop):
    """Replace ARPACK by one whose first answer lacks ``drop`` of its top eigenvalues (padded
    with tiny ones), as a Lanczos run that missed them; returns the list of ``k`` asked."""
    import gnn_truss.fe.buckling as buckling
    real = buckling.spla.eigsh
    calls = []

    def lossy(*args, **kwargs):
        mu = np.sort(real(*args, **kwargs))[::-1]
        calls.append(kwargs["k"])
        if len(calls) == 1:
            mu = np.append(mu[drop], np.full(len(mu) - len(mu[drop]), 1e-12))
        return mu

    monkeypatch.setattr(buckling.spla, "eigsh", lossy)
    return calls


def test_a_copy_missed_by_lanczos_is_restored_by_inertia_counts(monkeypatch):
    """If the Lanczos iteration returns only three of the four equal lowest eigenvalues of
    bcc_2x2x2, the inertia of the tangent just above them shows four critical strains, and
    counting them in a narrow band around each value found restores the fourth copy without
    another iteration. Without the check the copy stays missing."""
    import gnn_truss.fe.buckling as buckling
    calls = _lossy_eigsh(monkeypatch, slice(1, None))  # one copy of the top value dropped
    s = linear_buckling(Truss.elementary("bcc_2x2x2"), num_modes=4).strains
    assert calls == [7]
    np.testing.assert_allclose(s, s[0], rtol=1e-9)
    monkeypatch.setattr(buckling, "critical_count", lambda *a, **k: 0)  # the check off
    calls.clear()
    s = linear_buckling(Truss.elementary("bcc_2x2x2"), num_modes=4).strains
    assert len(calls) == 1 and s[3] > 1.3 * s[0]  # the missed copy: the next family instead


def test_a_value_missed_by_lanczos_makes_it_iterate_again(monkeypatch):
    """If all four copies of bcc_2x2x2's lowest critical strain are missing, the bands around
    the values found cannot hold the count, so the iteration is repeated with more modes and
    the right strains come back."""
    calls = _lossy_eigsh(monkeypatch, slice(4, None))
    ref = 1.0 / 1.347655  # the next family's ratio to the lowest (dense solver)
    s = linear_buckling(Truss.elementary("bcc_2x2x2"), num_modes=6).strains
    assert len(calls) == 2 and calls[1] > calls[0]
    np.testing.assert_allclose(s / s[0], [1, 1, 1, 1, 1 / ref, 1 / ref], rtol=2e-6)


def test_strut_forces_of_the_pre_buckling_state(random_lattices):
    """Simple cubic under z compression: each z strut carries ``-E A`` per unit strain (its
    length shrinks with the applied stretch, the lateral stretches stay 1 since no strut
    couples them) and the x and y struts nothing. Any lattice: the axial strain energy of the
    struts, ``sum N^2 L / (2 E A)``, is a part of the cell's strain energy ``E3 V / 2`` per unit
    strain squared (equal for SC, where nothing bends)."""
    t = Truss.elementary("sc")
    b = linear_buckling(t)
    pt = t.periodic()
    EA = np.pi * t.radius(0.15) ** 2
    along_z = np.abs(pt.chords[:, 2]) > 0
    np.testing.assert_allclose(b.strut_forces[along_z] / EA, -1.0, rtol=1e-6)
    assert np.all(np.abs(b.strut_forces[~along_z]) < 1e-9 * EA)
    for lat in [t, *random_lattices]:
        b = linear_buckling(lat)
        pt = lat.periodic()
        EA = np.pi * lat.radius(0.15) ** 2
        L = np.linalg.norm(pt.chords, axis=1)
        share = np.sum(b.strut_forces**2 * L / (2 * EA)) / (0.5 * b.modulus * pt.volume)
        assert 0.0 < share <= 1.0 + 1e-6
    assert share < 0.99  # a random lattice bends too
