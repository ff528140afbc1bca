"""Tests for :mod:`gnn_truss.plotting`.

Geometry of the full-cell drawing is checked exactly (cell units, cube [-1, 1]^3); figures are
checked as files: they exist, are not trivially small, decode, and have figsize * DPI pixels.
"""
import itertools
import subprocess
import sys

import numpy as np
import pytest
import torch

from gnn_truss import design_space as ds
from gnn_truss import plotting
from gnn_truss.cell import PeriodicTruss
from gnn_truss.generator import random_valid_subgraphs
from gnn_truss.plotting import (
    full_cell_segments,
    merge_collinear_segments,
    plot_elastic_surface,
    plot_lattice,
    plot_lattice_with_surface,
    plot_property_histograms,
)
from gnn_truss.properties import stiffness_from_vector
from gnn_truss.truss import Truss

NAMED = sorted(ds.ELEMENTARY_LATTICES)


def keys(segments, q=1e-6):
    """Orientation-free set of rounded segments ``[K, 2, 3]``."""
    out = set()
    for a, b in np.asarray(segments):
        ka, kb = tuple(np.rint(a / q).astype(int)), tuple(np.rint(b / q).astype(int))
        out.add(min(ka, kb) + max(ka, kb))
    return out


def cube_edges(lo=-1.0, hi=1.0):
    c = np.array(list(itertools.product((lo, hi), repeat=3)))
    return np.array([c[[i, j]] for i, j in itertools.combinations(range(8), 2)
                     if np.count_nonzero(c[i] != c[j]) == 1])


def mirrored_octant(truss):
    """Reference drawing: the octant FE segments mirrored through x=0, y=0, z=0."""
    m = truss.model
    seg = m.nodes[m.segments]  # [M, 2, 3]
    signs = np.array(list(itertools.product((1, -1), repeat=3)), dtype=float)
    return np.concatenate([seg * s for s in signs])


def boundary_weight(segments, tol=1e-9):
    """1/2 per axis along which a segment lies in a cell face (it is shared with the neighbour
    cell), so that sum(weight * length) counts each physical strut once."""
    on = np.all(np.abs(np.abs(segments) - 1.0) < tol, axis=1) & \
        (np.abs(segments[:, 0] - segments[:, 1]) < tol)  # [K, 3]
    return 0.5 ** on.sum(axis=1)


@pytest.fixture(scope="module")
def random_lattices():
    # seed 3: the first, second and sixth lattice have beam crossings
    return random_valid_subgraphs(6, seed=3)


@pytest.fixture(scope="module")
def C_ortho():
    # orthotropic, positive definite: (C11, C12, C13, C22, C23, C33, C44, C55, C66)
    return stiffness_from_vector(np.array([0.05, 0.01, 0.012, 0.03, 0.008, 0.04,
                                           0.004, 0.006, 0.002]))


def check_png(path, fig, min_bytes=10_000):
    import matplotlib.image as mpimg
    assert path.is_file()
    assert path.stat().st_size > min_bytes
    img = mpimg.imread(path)
    w, h = fig.get_size_inches()
    assert img.shape[:2] == (round(h * plotting.DPI), round(w * plotting.DPI))
    assert img[..., :3].std() > 0.01  # not a blank canvas


# --------------------------------------------------------------------------- import hygiene

def test_import_does_not_load_pyplot_or_matplotlib():
    code = ("import sys, gnn_truss.plotting; "
            "print('matplotlib.pyplot' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_plotting_never_loads_pyplot(tmp_path):
    code = ("import sys, numpy as np; from gnn_truss.truss import Truss; "
            "from gnn_truss.plotting import plot_lattice, plot_elastic_surface; "
            f"plot_lattice(Truss.elementary('bcc'), r'{tmp_path / 'a.png'}'); "
            "plot_elastic_surface(np.diag([3, 3, 3, 1, 1, 1]) * 1e-2 + np.pad(np.ones((3, 3)) "
            f"* 1e-2, ((0, 3), (0, 3))), r'{tmp_path / 'b.png'}'); "
            "print('matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert (tmp_path / "a.png").is_file() and (tmp_path / "b.png").is_file()


# --------------------------------------------------------------------------- full-cell geometry

def test_sc_full_cell_is_the_twelve_cube_edges():
    sc = Truss.elementary("sc")
    seg = full_cell_segments(sc)
    # 3 physical struts of length 2 (split at the octant nodes into 0.5-pieces), each on a cell
    # edge shared by 4 cells: 12 edges x 4 pieces = 48 drawn pieces of length 0.5
    assert seg.shape == (48, 2, 3)
    np.testing.assert_allclose(np.linalg.norm(seg[:, 1] - seg[:, 0], axis=1), 0.5, atol=1e-12)
    merged = full_cell_segments(sc, merge=True)
    assert merged.shape == (12, 2, 3)
    assert keys(merged) == keys(cube_edges())


@pytest.mark.parametrize("name, lines", [("sc_2x2x2", 27), ("bcc", 4)])
def test_merged_lines_of_named_lattices(name, lines):
    # sc_2x2x2: 3 directions x 3 x 3 lines through the grid {-1, 0, 1}^2; bcc: 4 body diagonals
    merged = full_cell_segments(Truss.elementary(name), merge=True)
    assert len(merged) == lines
    L = np.linalg.norm(merged[:, 1] - merged[:, 0], axis=1)
    np.testing.assert_allclose(L, 2.0 if name == "sc_2x2x2" else 2.0 * np.sqrt(3.0), atol=1e-9)


@pytest.mark.parametrize("name", NAMED)
def test_full_cell_equals_mirrored_octant_named(name):
    t = Truss.elementary(name)
    seg = full_cell_segments(t)
    assert len(keys(seg)) == len(seg)  # no duplicates
    assert keys(seg) == keys(mirrored_octant(t))


def test_full_cell_equals_mirrored_octant_random(random_lattices):
    assert sum(len(t.crossings()) for t in random_lattices) > 0  # crossings are exercised
    for t in random_lattices:
        assert keys(full_cell_segments(t)) == keys(mirrored_octant(t))


@pytest.mark.parametrize("name", NAMED)
def test_weighted_drawn_length_is_total_strut_length(name):
    seg = full_cell_segments(Truss.elementary(name))
    L = np.linalg.norm(seg[:, 1] - seg[:, 0], axis=1)
    assert np.all(np.abs(seg) <= 1.0)
    assert np.all(L > 1e-6)
    total = Truss.elementary(name).total_length()
    np.testing.assert_allclose(np.sum(boundary_weight(seg) * L), total, rtol=1e-12)


def test_weighted_drawn_length_random(random_lattices):
    for t in random_lattices:
        seg = full_cell_segments(t)
        L = np.linalg.norm(seg[:, 1] - seg[:, 0], axis=1)
        np.testing.assert_allclose(np.sum(boundary_weight(seg) * L), t.total_length(),
                                   rtol=1e-9)


def test_bcc_struts_inside_the_cell_sum_to_total_length():
    # 16 half body diagonals of length sqrt(3)/2, none in a cell face: 8 sqrt(3)
    seg = full_cell_segments(Truss.elementary("bcc"))
    assert len(seg) == 16
    np.testing.assert_allclose(np.linalg.norm(seg[:, 1] - seg[:, 0], axis=1).sum(),
                               8 * np.sqrt(3.0), rtol=1e-12)


def test_strut_across_the_periodic_boundary_is_drawn_as_two_pieces():
    # nodes at x = +-0.5 on the x axis; strut 0 -> 1 inside, strut 0 -> 1 + (2, 0, 0) wraps
    pt = PeriodicTruss(nodes=np.array([[0.5, 0.0, 0.0], [-0.5, 0.0, 0.0]]),
                       edges=np.array([[0, 1], [0, 1]]),
                       shifts=np.array([[0, 0, 0], [1, 0, 0]]), cell=2.0 * np.eye(3))
    seg = full_cell_segments(pt)
    expected = [[[-0.5, 0, 0], [0.5, 0, 0]], [[0.5, 0, 0], [1, 0, 0]], [[-1, 0, 0], [-0.5, 0, 0]]]
    assert keys(seg) == keys(np.array(expected, dtype=float))
    merged = merge_collinear_segments(seg)
    assert keys(merged) == keys(np.array([[[-1.0, 0, 0], [1.0, 0, 0]]]))


def test_full_cell_segments_bad_input():
    with pytest.raises(ValueError, match="Truss or PeriodicTruss"):
        full_cell_segments(np.zeros((3, 2, 3)))
    pt = PeriodicTruss(nodes=np.zeros((1, 3)), edges=np.array([[0, 0]]),
                       shifts=np.array([[1, 0, 0]]), cell=np.eye(3))
    with pytest.raises(ValueError, match="side 2"):
        full_cell_segments(pt)
    assert full_cell_segments(Truss(np.zeros((27, 27)))).shape == (0, 2, 3)


def test_merge_collinear_segments():
    seg = np.array([[[0, 0, 0], [1, 0, 0]],
                    [[2, 0, 0], [1, 0, 0]],      # touches the first (reversed orientation)
                    [[1.5, 0, 0], [1.8, 0, 0]],  # inside the union
                    [[3, 0, 0], [4, 0, 0]],      # same line, gap
                    [[0, 1, 0], [1, 1, 0]],      # parallel line
                    [[0, 0, 0], [0, 0, 1]]], dtype=float)
    merged = merge_collinear_segments(seg)
    assert keys(merged) == keys(np.array([[[0, 0, 0], [2, 0, 0]], [[3, 0, 0], [4, 0, 0]],
                                          [[0, 1, 0], [1, 1, 0]], [[0, 0, 0], [0, 0, 1]]],
                                         dtype=float))


# --------------------------------------------------------------------------- figures

@pytest.mark.parametrize("name", ["sc", "bcc", "octet"])
def test_plot_lattice_png(tmp_path, name):
    path = tmp_path / "deep" / "dir" / f"{name}.png"  # parents are created
    fig = plot_lattice(Truss.elementary(name), path, title=name)
    check_png(path, fig)
    assert len(fig.axes) == 2


def test_plot_lattice_right_panel_draws_the_full_cell_segments():
    sc = Truss.elementary("sc")
    fig = plot_lattice(sc)
    fig.canvas.draw()
    left, right = fig.axes
    struts = [c for c in right.collections if c.get_gid() == "struts"]
    assert len(struts) == 1
    assert len(struts[0].get_segments()) == len(full_cell_segments(sc)) == 48
    octant = [c for c in left.collections if c.get_gid() == "struts"]
    assert len(octant[0].get_segments()) == sc.num_edges
    assert "12 struts" in right.get_title()


def test_plot_lattice_with_crossings_and_periodic_input(tmp_path, random_lattices):
    t = random_lattices[0]
    fig = plot_lattice(t, tmp_path / "x.png")
    check_png(tmp_path / "x.png", fig)
    assert "crossing" in fig.axes[0].get_title()
    fig = plot_lattice(t.periodic(), tmp_path / "p.png")
    check_png(tmp_path / "p.png", fig)


def test_plot_lattice_returns_figure_without_path():
    from matplotlib.figure import Figure
    fig = plot_lattice(Truss.elementary("bcc"))
    assert isinstance(fig, Figure)
    with pytest.raises(ValueError, match="density"):
        plot_lattice(Truss.elementary("bcc"), density=1.5)


def test_plot_elastic_surface_png(tmp_path, C_ortho):
    path = tmp_path / "surface.png"
    fig = plot_elastic_surface(C_ortho, path, title="orthotropic")
    check_png(path, fig)
    # 3D surface, its colour bar, three polar cuts, the value table
    assert len(fig.axes) == 6
    assert sum(ax.name == "polar" for ax in fig.axes) == 3


def test_plot_elastic_surface_torch_and_isotropic(tmp_path):
    lam, mu = 0.01, 0.005
    C = np.zeros((6, 6))
    C[:3, :3] = lam
    C[np.arange(3), np.arange(3)] += 2 * mu
    C[np.arange(3, 6), np.arange(3, 6)] = mu
    fig = plot_elastic_surface(torch.tensor(C, requires_grad=True), tmp_path / "iso.png")
    check_png(tmp_path / "iso.png", fig)
    with pytest.raises(ValueError, match="6, 6"):
        plot_elastic_surface(np.zeros((2, 6, 6)))


def test_plot_lattice_with_surface_png(tmp_path, C_ortho):
    path = tmp_path / "both.png"
    fig = plot_lattice_with_surface(Truss.elementary("octet"), C_ortho, path, title="octet")
    check_png(path, fig)
    assert fig.axes[0].name == "3d" and fig.axes[1].name == "3d"


def test_plot_property_histograms_png(tmp_path):
    rng = np.random.default_rng(0)
    props = {"E1": rng.lognormal(size=200), "nu21": torch.tensor(rng.normal(size=200)),
             "A_U": np.r_[rng.gamma(2.0, size=199), np.nan],
             "seed": rng.choice(["sc", "bcc", "octet"], 200)}
    path = tmp_path / "hist.png"
    fig = plot_property_histograms(props, path, color_by="seed")
    check_png(path, fig)
    assert [ax.get_title() for ax in fig.axes[:3]] == ["E1", "nu21", "A_U"]
    assert "1 non-finite" in fig.axes[2].texts[0].get_text()
    fig = plot_property_histograms({"a": rng.normal(size=100)}, tmp_path / "one.png",
                                   color_by=rng.random(100))  # continuous: quartiles
    check_png(tmp_path / "one.png", fig, min_bytes=5_000)
    fig = plot_property_histograms({k: rng.random(10) for k in "abcde"}, tmp_path / "grid.png")
    check_png(tmp_path / "grid.png", fig)
    assert len(fig.axes) == 8  # 2 x 4 grid, 3 blank


def test_plot_property_histograms_bad_input():
    with pytest.raises(ValueError, match="empty"):
        plot_property_histograms({})
    with pytest.raises(ValueError, match="1-D"):
        plot_property_histograms({"a": np.zeros((3, 2))})
    with pytest.raises(ValueError, match="not a key"):
        plot_property_histograms({"a": np.zeros(3)}, color_by="b")
    with pytest.raises(ValueError, match="same number"):
        plot_property_histograms({"a": np.zeros(3), "b": np.zeros(4)}, color_by=np.zeros(3))
    with pytest.raises(ValueError, match="one label per sample"):
        plot_property_histograms({"a": np.zeros(3)}, color_by=np.zeros(4))


# --------------------------------------------------------------------------- latent exploration

def test_plot_strip_png_with_missing_stiffness(tmp_path, C_ortho):
    from gnn_truss.plotting import plot_strip
    ts = [Truss.elementary(n) for n in ("octet", "bcc", "sc")]
    ts.append(Truss.from_edges(np.zeros((0, 2), int)))  # empty lattice
    C2 = np.asarray(C_ortho) * 2.0
    path = tmp_path / "strip.png"
    fig = plot_strip(ts, [C_ortho, None, C2, np.full((6, 6), np.nan)],
                     ["a", "b", "c", "d"], path, title="strip",
                     notes=["", "invalid:\nno_dangling", "", "no beams"])
    check_png(path, fig)
    # 4 lattices + 4 surface panels + the colour bar
    assert len(fig.axes) == 9
    assert [ax.get_title() for ax in fig.axes[0:8:2]] == ["a", "b", "c", "d"]
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "invalid:\nno_dangling" in texts and "no beams" in texts
    # one colour scale for all surfaces: from the smallest to the largest E(d) drawn
    from gnn_truss.plotting import _STRIP_SURFACE_GRID
    from gnn_truss.properties import elastic_surface
    lo = elastic_surface(C_ortho, *_STRIP_SURFACE_GRID).E.min()
    hi = elastic_surface(C2, *_STRIP_SURFACE_GRID).E.max()
    assert fig.axes[-1].get_ylim() == pytest.approx((lo, hi))
    with pytest.raises(ValueError, match="stiffnesses"):
        plot_strip(ts, [None])
    with pytest.raises(ValueError, match="at least one"):
        plot_strip([], [])
    fig = plot_strip(ts[:2], [None, None])  # nothing to colour: no colour bar
    assert len(fig.axes) == 4


def test_plot_lattice_grid_png(tmp_path, random_lattices):
    from gnn_truss.plotting import plot_lattice_grid
    path = tmp_path / "grid.png"
    fig = plot_lattice_grid(random_lattices[:5], [f"#{k}" for k in range(5)], path, ncols=3,
                            title="samples")
    check_png(path, fig)
    assert len(fig.axes) == 5 and fig.axes[4].get_title() == "#4"
    with pytest.raises(ValueError, match="labels"):
        plot_lattice_grid(random_lattices[:2], ["x"])


def test_plot_path_properties_png_marks_missing_values(tmp_path):
    from gnn_truss.plotting import plot_path_properties
    t = np.linspace(0, 1, 5)
    props = {"E1": [0.01, 0.02, np.nan, 0.03, 0.02], "nu21": torch.tensor([0.3, 0.1, 0, -.1, 0]),
             "A_U": np.ones(5)}
    path = tmp_path / "props.png"
    fig = plot_path_properties(t, props, path, status=["ok", "ok", "invalid", "ok", "ok"])
    check_png(path, fig)
    assert [ax.get_title() for ax in fig.axes] == ["E1", "nu21", "A_U"]
    crosses = fig.axes[0].lines[1]
    assert list(crosses.get_xdata()) == [0.5]
    assert "invalid" in fig._supxlabel.get_text()
    with pytest.raises(ValueError, match="path points"):
        plot_path_properties(t, {"E1": np.ones(4)})
    with pytest.raises(ValueError, match="empty"):
        plot_path_properties(t, {})


def test_plot_design_path_png(tmp_path):
    from gnn_truss.plotting import plot_design_path
    rng = np.random.default_rng(0)
    cloud = rng.lognormal(-4, 0.5, (500, 2))
    paths = [np.cumsum(rng.normal(0.001, 0.002, (20, 2)), axis=0) + 0.02 for _ in range(4)]
    verified = np.stack([p[-1] for p in paths])
    path = tmp_path / "design.png"
    fig = plot_design_path(cloud, paths, verified, verified[0], "E$_{22}$ / E$_s$",
                           "\u03bd$_{21}$", path, title="max E22", xscale="log")
    check_png(path, fig)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_title() == "max E22"
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["dataset (500)", "FE-verified designs (4)", "best design",
                      "optimisation paths"]  # paths are drawn once the view is known
    assert len(ax.lines) == 2 * len(paths)  # a line and a start dot per path
    fig = plot_design_path(cloud, [], np.zeros((0, 2)), None, "x", "y")  # nothing designed
    assert fig.axes[0].get_legend_handles_labels()[1] == ["dataset (500)"]
    with pytest.raises(ValueError, match="cloud_xy must be"):
        plot_design_path(np.zeros((5, 3)), [], [], None, "x", "y")
    with pytest.raises(ValueError, match="best_xy"):
        plot_design_path(cloud, [], [], [1, 2, 3], "x", "y")
    with pytest.raises(ValueError, match="scales"):
        plot_design_path(cloud, [], [], None, "x", "y", yscale="symlog")


def test_pca_project_recovers_the_dominant_direction():
    from gnn_truss.plotting import pca_project
    rng = np.random.default_rng(0)
    u = np.array([3.0, -4.0, 0.0, 0.0]) / 5.0
    v = np.array([0.0, 0.0, 1.0, 0.0])
    mu = (rng.normal(0, 5, (400, 1)) * u + rng.normal(0, 1, (400, 1)) * v
          + 0.01 * rng.normal(size=(400, 4)) + 7.0)
    xy, ratio, comps = pca_project(torch.tensor(mu), 2)
    assert xy.shape == (400, 2) and comps.shape == (2, 4)
    np.testing.assert_allclose(comps @ comps.T, np.eye(2), atol=1e-12)
    assert abs(comps[0] @ u) == pytest.approx(1.0, abs=2e-3)  # sampling noise tilts it
    assert abs(comps[1] @ v) == pytest.approx(1.0, abs=2e-3)
    assert comps[0][np.abs(comps[0]).argmax()] > 0  # sign convention
    assert ratio[0] > 0.9 and ratio.sum() == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(xy, (mu - mu.mean(0)) @ comps.T, atol=1e-10)
    with pytest.raises(ValueError, match="k must"):
        pca_project(mu, 5)
    with pytest.raises(ValueError, match="N >= 2"):
        pca_project(mu[:1], 1)


def test_plot_latent_projection_png(tmp_path):
    from gnn_truss.plotting import plot_latent_projection
    rng = np.random.default_rng(1)
    mu = rng.normal(size=(300, 8))
    values = np.exp(mu[:, 0])
    values[:5] = np.nan
    path = tmp_path / "latent.png"
    fig = plot_latent_projection(mu, values, path, value_label="E1 / E$_s$", log=True)
    check_png(path, fig)
    assert fig.axes[0].get_xlabel().startswith("PC 1 (")
    assert fig.axes[1].get_ylabel() == "log10 E1 / E$_s$"  # the colour bar
    with pytest.raises(ValueError, match="method"):
        plot_latent_projection(mu, values, method="tsne")
    with pytest.raises(ValueError, match="entries"):
        plot_latent_projection(mu, values[:10])


def test_strip_surfaces_hold_the_axis_moduli():
    # a needle-like orthotropic C (stiff along y only): E(d) peaks sharply on the y axis, so a
    # grid that misses the axes under-reports it (the strip once showed half of E2)
    from gnn_truss.plotting import _STRIP_SURFACE_GRID
    from gnn_truss.properties import elastic_surface, engineering_constants, stiffness_from_vector
    C = np.asarray(stiffness_from_vector(np.array([2e-3, 1e-4, 1e-4, 0.1, 1e-4, 2e-3, 5e-4,
                                                    1e-4, 5e-4])))
    e = engineering_constants(C)
    surf = elastic_surface(C, *_STRIP_SURFACE_GRID)
    assert surf.E.max() == pytest.approx(max(e["E1"], e["E2"], e["E3"]), rel=1e-9)
