"""Named curve targets of gnn_truss.objectives (the paper's Fig. 6b benchmarks)."""
import numpy as np
import pytest

from gnn_truss.objectives import (CURVE_STRAINS, curve_target, is_curve_target_name,
                                  parse_objective)


def corpus_curves(n=50, seed=0):
    rng = np.random.default_rng(seed)
    slope = rng.uniform(0.01, 0.05, n)
    plateau = rng.uniform(5e-4, 2e-3, n)
    return np.minimum(slope[:, None] * CURVE_STRAINS, plateau[:, None])  # [n, 13]


def test_strains_are_the_label_points():
    assert np.allclose(CURVE_STRAINS, [0.005, 0.025, 0.045, 0.065, 0.085, 0.105, 0.125, 0.145,
                                       0.165, 0.185, 0.205, 0.225, 0.245])


def test_stiffest_is_factor_times_the_largest_mean_curve():
    c = corpus_curves()
    i = max(range(len(c)), key=lambda k: sum(c[k]))  # by hand: largest area
    assert np.allclose(curve_target("stiffest*1.3", c), 1.3 * c[i], rtol=1e-12)
    assert np.allclose(curve_target("stiffest", c), 1.3 * c[i], rtol=1e-12)
    assert np.allclose(curve_target("Stiffest * 2", c), 2 * c[i], rtol=1e-12)
    # 30 % above every corpus curve on average
    assert curve_target("stiffest", c).mean() == pytest.approx(1.3 * c.mean(axis=1).max())


def test_softening_peaks_at_4_5_percent_and_ends_at_half():
    c = corpus_curves()
    t = curve_target("softening", c)
    peak = np.median(c.max(axis=1))
    assert np.argmax(t) == 2 and t[2] == pytest.approx(peak)
    assert t[0] == pytest.approx(peak * 0.005 / 0.045)
    assert t[-1] == pytest.approx(0.5 * peak)
    assert np.all(np.diff(t[2:]) < 0) and np.all(np.diff(t[:3]) > 0)
    obj = parse_objective("match-curve", t.tolist())  # a valid curve objective
    assert obj.value(t[None])[0] == pytest.approx(0.0, abs=1e-12)


def test_names_and_errors():
    assert is_curve_target_name("stiffest*1.3") and is_curve_target_name("softening")
    assert not is_curve_target_name("[1, 2, 3]") and not is_curve_target_name(None)
    assert not is_curve_target_name("target.csv")
    c = corpus_curves()
    with pytest.raises(ValueError, match="unknown curve target"):
        curve_target("hardening", c)
    with pytest.raises(ValueError, match="stiffest\\*F"):
        curve_target("stiffest*abc", c)
    with pytest.raises(ValueError, match="positive"):
        curve_target("stiffest*-1", c)
    with pytest.raises(ValueError, match="shape"):
        curve_target("softening", c[:, :5])
    with pytest.raises(ValueError, match="no finite"):
        curve_target("softening", np.full((3, 13), np.nan))
