"""Figures of lattices, elastic surfaces and property statistics (headless, no pyplot).

Every ``plot_*`` function builds a :class:`matplotlib.figure.Figure` with its own
:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg` (matplotlib's object-oriented API:
no backend selection, no global figure manager, works without a display), returns it, and,
given ``path``, writes it there (PNG at :data:`DPI` dots per inch unless the suffix names
another format; parent folders are created). matplotlib is imported inside the functions, so
``import gnn_truss.plotting`` costs nothing and changes no global state.

Geometry is drawn in cell units: the octant is ``[0, 1]^3``, the mirrored cell ``[-1, 1]^3``
(side 2, ``SPEC.md`` section 1). Stiffnesses are ``[6, 6]`` Voigt matrices in units of the
base-material Young's modulus ``E_s`` (``SPEC.md`` section 3).
"""
from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np

from . import design_space as ds
from .cell import PeriodicTruss
from .truss import Truss

__all__ = [
    "DPI",
    "NODE_TYPE_COLORS",
    "full_cell_segments",
    "merge_collinear_segments",
    "plot_elastic_surface",
    "plot_lattice",
    "plot_lattice_with_surface",
    "plot_property_histograms",
    "plot_property_projections", "plot_stress_strain", "plot_compression",
]

logger = logging.getLogger(__name__)

#: Resolution of saved figures, dots per inch.
DPI = 150
#: Marker colour of each node type (and of crossing nodes inserted where beams cross).
NODE_TYPE_COLORS = {"vertex": "#1f77b4", "edge": "#2ca02c", "face": "#ff7f0e",
                    "body": "#d62728", "crossing": "#222222"}

_STRUT_COLOR = "#3b5b92"
_WIRE_COLOR = "#9a9a9a"
_HIGHLIGHT_COLOR = "#d1603d"
_SEG_TOL = 1e-7  # clipping / deduplication tolerance, cell units (as cell.py's wrap keys)
# Strut line width in points = _LW_SCALE * radius / (side of the drawn box), clipped to
# _LW_RANGE: proportional to the radius, not to scale (true scale hides thin-strut lattices).
_LW_SCALE = 48.0
_LW_RANGE = (0.8, 8.0)
_RC = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 8,
       "ytick.labelsize": 8, "legend.fontsize": 8, "figure.titlesize": 13}


# --------------------------------------------------------------------------- pure geometry

def _as_periodic(truss) -> PeriodicTruss:
    if isinstance(truss, Truss):
        return truss.periodic()
    if isinstance(truss, PeriodicTruss):
        return truss
    raise ValueError(f"expected a Truss or PeriodicTruss, got {type(truss).__name__}")


def _clip_to_box(p0: np.ndarray, d: np.ndarray, tol: float = _SEG_TOL):
    """Liang-Barsky: parameters ``[t0, t1]`` of ``p0 + t d`` (``t`` in [0, 1]) inside the
    closed cube ``[-1, 1]^3``; ``t0 >= t1`` where the segment misses it or only touches it.
    ``p0, d: [K, 3] -> [K], [K]``.

    The tolerance ``tol`` applies only along axes the segment is parallel to (a strut lying in a
    cell face belongs to the cell); any other crossing is clipped at the exact face, so a strut
    leaving the cube at a grazing angle leaves no sliver inside a tolerance band."""
    t0 = np.zeros(len(p0))
    t1 = np.ones(len(p0))
    parallel = np.abs(d) <= 1e-9 * np.linalg.norm(d, axis=1, keepdims=True)
    for a in range(3):
        pa, da, par = p0[:, a], d[:, a], parallel[:, a]
        with np.errstate(divide="ignore", invalid="ignore"):
            ta = np.where(par, -np.inf, (-1.0 - pa) / da)
            tb = np.where(par, np.inf, (1.0 - pa) / da)
        t0 = np.maximum(t0, np.minimum(ta, tb))
        t1 = np.minimum(t1, np.maximum(ta, tb))
        t1 = np.where(par & (np.abs(pa) > 1.0 + tol), -np.inf, t1)
    return t0, t1


def _canonical(segments: np.ndarray) -> np.ndarray:
    """Orient each ``[2, 3]`` segment so that its lexicographically smaller end comes first."""
    a, b = segments[:, 0], segments[:, 1]
    ka = np.rint(a / _SEG_TOL).astype(np.int64)
    kb = np.rint(b / _SEG_TOL).astype(np.int64)
    diff = kb - ka
    first = np.argmax(diff != 0, axis=1)
    swap = diff[np.arange(len(diff)), first] < 0
    return np.where(swap[:, None, None], segments[:, ::-1], segments)


def _unique_segments(segments: np.ndarray) -> np.ndarray:
    if len(segments) == 0:
        return segments.reshape(0, 2, 3)
    seg = _canonical(segments)
    keys = np.rint(seg.reshape(-1, 6) / _SEG_TOL).astype(np.int64)
    _, idx = np.unique(keys, axis=0, return_index=True)
    return seg[np.sort(idx)]


def full_cell_segments(truss, merge: bool = False) -> np.ndarray:
    """The struts of the periodic cell as they appear inside the closed cube ``[-1, 1]^3``.

    Every physical strut ``X_i -> X_i + d`` of :meth:`Truss.periodic` is translated by all
    lattice vectors ``2 n`` (``n`` integer) and clipped to the closed cube; the non-degenerate
    pieces are kept once each. A strut crossing the periodic boundary therefore shows as its
    two pieces, and a strut lying in a boundary face (edge) of the cell shows on both (all
    four) copies of that face (edge): for a mirrored lattice this is exactly the octant
    mirrored through ``x = 0``, ``y = 0``, ``z = 0``, e.g. the simple cubic lattice of lattice
    constant 2 shows the 12 edges of the cube.

    Args:
        truss: a :class:`~gnn_truss.truss.Truss` or a :class:`~gnn_truss.cell.PeriodicTruss` of
            the cube of side 2 centred at the origin.
        merge: join collinear pieces that touch or overlap (see
            :func:`merge_collinear_segments`); default ``False`` keeps the FE struts, split at
            nodes and crossings.

    Returns:
        ``[K, 2, 3]`` float64 segment end points, cell units.
    """
    pt = _as_periodic(truss)
    if not np.allclose(pt.cell, 2.0 * np.eye(3)):
        raise ValueError("full_cell_segments needs the cubic cell of side 2 (cell = 2 I), got "
                         f"{np.asarray(pt.cell).tolist()}")
    if pt.num_struts == 0:
        return np.zeros((0, 2, 3))
    a = pt.nodes[pt.edges[:, 0]]
    d = pt.chords
    reach = int(np.ceil(np.abs(d).max() / 2.0)) + 1
    shifts = 2.0 * np.array(list(itertools.product(range(-reach, reach + 1), repeat=3)))
    p0 = (a[:, None, :] + shifts[None]).reshape(-1, 3)
    dd = np.repeat(d, len(shifts), axis=0)
    t0, t1 = _clip_to_box(p0, dd)
    hit = (t1 - t0) * np.linalg.norm(dd, axis=1) > 10 * _SEG_TOL  # not just touching
    p0, dd, t0, t1 = p0[hit], dd[hit], t0[hit], t1[hit]
    seg = np.clip(np.stack([p0 + t0[:, None] * dd, p0 + t1[:, None] * dd], axis=1), -1.0, 1.0)
    seg = _unique_segments(seg)
    return merge_collinear_segments(seg) if merge else seg


def merge_collinear_segments(segments: np.ndarray, tol: float = _SEG_TOL) -> np.ndarray:
    """Join segments that lie on one straight line and touch or overlap.

    Args:
        segments: ``[K, 2, 3]`` end points.
        tol: distance below which lines are the same and intervals touch.

    Returns:
        ``[K', 2, 3]`` merged segments (``K' <= K``), grouped by line.
    """
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2, 3)
    if len(segments) == 0:
        return segments
    seg = _canonical(segments)
    u = seg[:, 1] - seg[:, 0]
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    s0 = np.einsum("ki,ki->k", seg[:, 0], u)
    foot = seg[:, 0] - s0[:, None] * u  # point of the line closest to the origin
    q = max(tol, 1e-12) * 100
    keys = np.rint(np.concatenate([u, foot], axis=1) / q).astype(np.int64)
    _, line = np.unique(keys, axis=0, return_inverse=True)
    out = []
    for k in range(line.max() + 1):
        idx = np.flatnonzero(line.reshape(-1) == k)
        su, ff = u[idx[0]], foot[idx[0]]
        iv = np.sort(np.stack([s0[idx], s0[idx] + np.linalg.norm(seg[idx, 1] - seg[idx, 0],
                                                                    axis=1)], 1), axis=1)
        iv = iv[np.argsort(iv[:, 0])]
        lo, hi = iv[0]
        for a, b in iv[1:]:
            if a <= hi + tol:
                hi = max(hi, b)
            else:
                out.append((ff + lo * su, ff + hi * su))
                lo, hi = a, b
        out.append((ff + lo * su, ff + hi * su))
    return np.asarray(out, dtype=np.float64).reshape(-1, 2, 3)


def _node_kind(points: np.ndarray, truss: Truss | None) -> np.ndarray:
    """``[K]`` node-type index of full-cell points (0-3 as ``NODE_TYPES``, 4 crossing, -1
    unknown), found by folding each point into the octant, ``|p|``, and matching it to a node of
    the octant model."""
    kind = -np.ones(len(points), dtype=np.int64)
    if truss is None or len(points) == 0 or truss.num_edges == 0:
        return kind
    m = truss.model
    dist = np.linalg.norm(np.abs(points)[:, None] - m.nodes[None], axis=2)
    j = dist.argmin(axis=1)
    hit = dist[np.arange(len(points)), j] < 1e-6
    li = m.lattice_index[j]
    kind[hit] = np.where(li[hit] >= 0, ds.NODE_TYPE[np.maximum(li[hit], 0)], 4)
    return kind


def _cube_edges(lo: float, hi: float) -> np.ndarray:
    """``[12, 2, 3]`` edges of the cube ``[lo, hi]^3``."""
    c = np.array(list(itertools.product((lo, hi), repeat=3)))
    pairs = [(i, j) for i, j in itertools.combinations(range(8), 2)
             if np.count_nonzero(c[i] != c[j]) == 1]
    return np.stack([c[[i, j]] for i, j in pairs])


# --------------------------------------------------------------------------- figure helpers

def _style():
    import matplotlib
    return matplotlib.rc_context(_RC)


def _new_figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _finish(fig, path):
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI)
        logger.debug("saved figure %s", path)
    return fig


def _linewidth(radius: float | None, side: float) -> float:
    if radius is None:
        return 1.5
    return float(np.clip(_LW_SCALE * radius / side, *_LW_RANGE))


def _setup_3d(ax, lo: float, hi: float, ticks) -> None:
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_zlim(lo, hi)
    ax.set_box_aspect((1, 1, 1))
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_zlabel("z")
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_zticks(ticks)
    ax.view_init(elev=20, azim=-58)
    ax.grid(False)
    ax.computed_zorder = False  # draw in zorder: wireframe, struts, nodes on top


def _draw_segments(ax, segments: np.ndarray, **kw):
    from mpl_toolkits.mplot3d.art3d import Line3DCollection
    coll = Line3DCollection(list(segments), **kw)
    ax.add_collection3d(coll)
    return coll


def _scatter_kinds(ax, points: np.ndarray, kind: np.ndarray, size: float) -> None:
    for k in range(-1, 5):
        sel = kind == k
        if not sel.any():
            continue
        name = ("crossing" if k == 4 else "node" if k < 0 else ds.NODE_TYPES[k])
        color = NODE_TYPE_COLORS.get(name, "#777777")
        marker = "X" if k == 4 else "o"
        p = points[sel]
        ax.scatter(p[:, 0], p[:, 1], p[:, 2], s=size * (1.6 if k == 4 else 1.0), c=color,
                   marker=marker, edgecolors="k", linewidths=0.4, depthshade=False, label=name,
                   zorder=5)


def _truss_radius(truss: Truss, density: float) -> float | None:
    return truss.radius(density) if truss.num_edges else None


def _draw_octant(ax, truss: Truss, density: float) -> None:
    r = _truss_radius(truss, density)
    _draw_segments(ax, _cube_edges(0.0, 1.0), colors=_WIRE_COLOR, linewidths=0.8,
                   linestyles="--", zorder=1)
    p = truss.positions
    if truss.num_edges:
        _draw_segments(ax, p[truss.edges], colors=_STRUT_COLOR, linewidths=_linewidth(r, 1.0),
                       alpha=0.8, zorder=2, gid="struts")
    used = np.flatnonzero(truss.used)
    pts = np.concatenate([p[used], truss.crossings() if truss.num_edges else np.zeros((0, 3))])
    kind = np.concatenate([ds.NODE_TYPE[used], np.full(len(pts) - len(used), 4)])
    _scatter_kinds(ax, pts, kind, size=36)
    _setup_3d(ax, 0.0, 1.0, [0, 0.5, 1])
    ncross = len(pts) - len(used)
    ax.set_title(f"octant: {truss.num_edges} beams, {len(used)} nodes"
                 + (f", {ncross} crossing{'s' * (ncross > 1)}" if ncross else ""))
    if len(pts):
        ax.legend(loc="upper left", markerscale=0.9, framealpha=0.8, handletextpad=0.3,
                  borderpad=0.4)


def _draw_full_cell(ax, truss, density: float) -> None:
    t = truss if isinstance(truss, Truss) else None
    pt = _as_periodic(truss)
    r = _truss_radius(t, density) if t is not None else None
    seg = full_cell_segments(pt)
    _draw_segments(ax, _cube_edges(-1.0, 1.0), colors=_WIRE_COLOR, linewidths=0.8,
                   linestyles="--", zorder=1)
    _draw_segments(ax, _cube_edges(0.0, 1.0), colors="#b0b0b0", linewidths=0.7,
                   linestyles=":", zorder=1)
    if len(seg):
        _draw_segments(ax, seg, colors=_STRUT_COLOR, linewidths=_linewidth(r, 2.0), alpha=0.8,
                       zorder=2, gid="struts")
        ends = _unique_points(seg.reshape(-1, 3))
        _scatter_kinds(ax, ends, _node_kind(ends, t), size=14)
    _setup_3d(ax, -1.0, 1.0, [-1, 0, 1])
    title = f"full cell: {pt.num_struts} struts, {pt.num_nodes} nodes"
    if r is not None:
        title += f"\nr = {r:.3f} at \u03c1 = {density:g}"
    ax.set_title(title)


def _unique_points(points: np.ndarray) -> np.ndarray:
    keys = np.rint(points / _SEG_TOL).astype(np.int64)
    _, idx = np.unique(keys, axis=0, return_index=True)
    return points[np.sort(idx)]


def _stiffness_numpy(C) -> np.ndarray:
    if hasattr(C, "detach"):
        C = C.detach().cpu().numpy()
    C = np.asarray(C, dtype=np.float64)
    if C.shape != (6, 6):
        raise ValueError(f"C must be one [6, 6] stiffness, got shape {C.shape}")
    return C


def _draw_surface(fig, ax, C: np.ndarray):
    """3D elastic surface of ``C`` on ``ax`` with a colour bar; returns the
    :class:`~gnn_truss.properties.ElasticSurface` drawn."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LightSource, Normalize
    from matplotlib.ticker import MaxNLocator

    from .properties import elastic_surface
    surf = elastic_surface(C, n_theta=91, n_phi=181)
    E = surf.E
    lo, hi = float(E.min()), float(E.max())
    pad = 1e-3 * hi if hi - lo < 1e-6 * hi else 0.0  # isotropic: a flat colour, no 0/0
    norm = Normalize(lo - pad, hi + pad)
    cmap = colormaps["viridis"]
    X, Y, Z = np.moveaxis(surf.points, -1, 0)
    ax.plot_surface(X, Y, Z, facecolors=cmap(norm(E)), rstride=1, cstride=1, linewidth=0,
                    antialiased=False, shade=True, lightsource=LightSource(azdeg=300, altdeg=35))
    lim = 1.08 * float(np.abs(surf.points).max())
    for set_lim, axis in ((ax.set_xlim, ax.xaxis), (ax.set_ylim, ax.yaxis),
                          (ax.set_zlim, ax.zaxis)):
        set_lim(-lim, lim)
        axis.set_major_locator(MaxNLocator(5, symmetric=True))
    ax.set_box_aspect((1, 1, 1))
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_zlabel("z")
    ax.tick_params(labelsize=7)
    ax.view_init(elev=20, azim=-58)
    ax.set_title(f"Young's modulus surface E(d)\nmin {lo:.3g}, max {hi:.3g}, "
                 f"max/min {hi / lo:.3g}")
    fig.colorbar(ScalarMappable(norm, cmap), ax=ax, shrink=0.65, pad=0.08,
                 label="E(d) / E$_s$")
    return surf


_CUTS = (("x-y plane", (0, 1), ("x", "y", "\u2212x", "\u2212y")),
         ("x-z plane", (0, 2), ("x", "z", "\u2212x", "\u2212z")),
         ("y-z plane", (1, 2), ("y", "z", "\u2212y", "\u2212z")))


def _polar_cuts(C: np.ndarray, n: int = 361):
    """Angles ``[n]`` and E along ``cos(a) e_p + sin(a) e_q`` for the three coordinate planes
    ``(p, q)``: list of ``[n]`` arrays."""
    from .properties import directional_youngs_modulus
    a = np.linspace(0.0, 2 * np.pi, n)
    out = []
    for _, (p, q), _ in _CUTS:
        d = np.zeros((n, 3))
        d[:, p] = np.cos(a)
        d[:, q] = np.sin(a)
        out.append(np.asarray(directional_youngs_modulus(C, d)))
    return a, out


# --------------------------------------------------------------------------- public figures

def plot_lattice(truss, path=None, title: str | None = None, density: float = 0.15):
    """Octant and mirrored full cell of a lattice, side by side.

    Left: the octant ``[0, 1]^3`` with its beams, the used nodes coloured by type
    (:data:`NODE_TYPE_COLORS`: vertex, edge, face, body) and the crossing nodes (``X``) where
    beams cross mid-span, inside the dashed octant wireframe. Right: the periodic cell
    ``[-1, 1]^3`` drawn from :meth:`Truss.periodic` via :func:`full_cell_segments` (the octant
    dotted). Line widths are proportional to the strut radius ``r`` for relative density
    ``density`` (``rho = pi r^2 sum L / 8``), not to scale.

    Args:
        truss: the lattice (:class:`~gnn_truss.truss.Truss`; a
            :class:`~gnn_truss.cell.PeriodicTruss` draws the right panel only, left blank).
        path: where to save the figure (PNG, :data:`DPI` dpi), or ``None``.
        title: figure title (default: none).
        density: relative density for the strut radius (default 0.15).

    Returns:
        The :class:`matplotlib.figure.Figure` (12 x 5.6 in).
    """
    if not 0 < density < 1:
        raise ValueError(f"density must lie in (0, 1), got {density}")
    _as_periodic(truss)  # type check before any drawing
    with _style():
        fig = _new_figure((12.0, 5.6))
        ax0 = fig.add_subplot(1, 2, 1, projection="3d")
        ax1 = fig.add_subplot(1, 2, 2, projection="3d")
        if isinstance(truss, Truss):
            _draw_octant(ax0, truss, density)
        else:
            ax0.set_axis_off()
        _draw_full_cell(ax1, truss, density)
        if title:
            fig.suptitle(title)
        return _finish(fig, path)


def plot_elastic_surface(C, path=None, title: str | None = None):
    """Directional Young's modulus ``E(d)``, ``1/E(d) = S_ijkl d_i d_j d_k d_l``.

    Left: the surface ``{E(d) d : |d| = 1}`` coloured by ``E`` with a colour bar. Right: its
    cuts by the coordinate planes x-y, x-z, y-z as polar plots on a common radial scale, and the
    axial moduli ``E1, E2, E3`` with the extreme values.

    Args:
        C: ``[6, 6]`` Voigt stiffness (numpy or torch), unit ``E_s``.
        path: where to save the figure (PNG, :data:`DPI` dpi), or ``None``.
        title: figure title (default: none).

    Returns:
        The :class:`matplotlib.figure.Figure` (13 x 6 in).
    """
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator

    from .properties import directional_youngs_modulus
    C = _stiffness_numpy(C)
    with _style():
        fig = _new_figure((13.0, 6.0))
        gs = fig.add_gridspec(2, 3, width_ratios=(2.0, 1.0, 1.0))
        ax3 = fig.add_subplot(gs[:, 0], projection="3d")
        surf = _draw_surface(fig, ax3, C)
        a, cuts = _polar_cuts(C)
        rmax = 1.1 * max(float(c.max()) for c in cuts)
        for (name, _, labels), E, cell in zip(_CUTS, cuts, (gs[0, 1], gs[0, 2], gs[1, 1])):
            ax = fig.add_subplot(cell, projection="polar")
            ax.plot(a, E, color=_STRUT_COLOR, lw=1.6)
            ax.fill(a, E, color=_STRUT_COLOR, alpha=0.15)
            ax.set_rlim(0, rmax)
            ax.yaxis.set_major_locator(MaxNLocator(3))
            ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
            ax.set_rlabel_position(22.5)
            ax.tick_params(axis="y", labelsize=7)
            ax.set_thetagrids([0, 90, 180, 270], labels)
            ax.set_title(name, pad=10)
        ax = fig.add_subplot(gs[1, 2])
        ax.set_axis_off()
        e_axes = directional_youngs_modulus(C, np.eye(3))
        rows = [(f"E$_{k + 1}$", e) for k, e in enumerate(e_axes)]
        rows += [("E$_{min}$", surf.E.min()), ("E$_{max}$", surf.E.max())]
        for k, (name, value) in enumerate(rows):
            y = 0.88 - 0.12 * k
            ax.text(0.30, y, name + " =", ha="right", va="top", transform=ax.transAxes)
            ax.text(0.33, y, f"{value:.4g}", ha="left", va="top", transform=ax.transAxes)
        ax.text(0.05, 0.88 - 0.12 * len(rows), "unit E$_s$; min/max over the sampled sphere",
                ha="left", va="top", transform=ax.transAxes, fontsize=8, color="#555555")
        if title:
            fig.suptitle(title)
        return _finish(fig, path)


def plot_lattice_with_surface(truss, C, path=None, title: str | None = None,
                              density: float = 0.15):
    """Full periodic cell of a lattice (as in :func:`plot_lattice`, right) beside its elastic
    surface (as in :func:`plot_elastic_surface`, left).

    Args:
        truss: :class:`~gnn_truss.truss.Truss` or :class:`~gnn_truss.cell.PeriodicTruss`.
        C: ``[6, 6]`` Voigt stiffness of that lattice, unit ``E_s``.
        path: where to save the figure (PNG, :data:`DPI` dpi), or ``None``.
        title: figure title (default: none).
        density: relative density for the strut radius (default 0.15).

    Returns:
        The :class:`matplotlib.figure.Figure` (12 x 5.6 in).
    """
    if not 0 < density < 1:
        raise ValueError(f"density must lie in (0, 1), got {density}")
    C = _stiffness_numpy(C)
    _as_periodic(truss)
    with _style():
        fig = _new_figure((12.0, 5.6))
        ax0 = fig.add_subplot(1, 2, 1, projection="3d")
        ax1 = fig.add_subplot(1, 2, 2, projection="3d")
        _draw_full_cell(ax0, truss, density)
        _draw_surface(fig, ax1, C)
        if title:
            fig.suptitle(title)
        return _finish(fig, path)


def _groups(color_by, n: int):
    """Group labels ``[n]`` and their display names: up to 12 distinct values as categories,
    otherwise numeric quartiles."""
    lab = np.asarray(color_by)
    if lab.ndim != 1 or len(lab) != n:
        raise ValueError(f"color_by must have one label per sample ({n}), got shape {lab.shape}")
    values = np.unique(lab)
    if len(values) <= 12:
        return lab, [(v, str(v)) for v in values]
    if not np.issubdtype(lab.dtype, np.number):
        raise ValueError(f"color_by has {len(values)} distinct non-numeric labels (at most 12)")
    edges = np.nanquantile(lab.astype(np.float64), [0, 0.25, 0.5, 0.75, 1.0])
    q = np.clip(np.searchsorted(edges, lab, side="right") - 1, 0, 3)
    return q, [(k, f"[{edges[k]:.3g}, {edges[k + 1]:.3g}]") for k in range(4)]


def plot_property_histograms(props: dict, path=None, color_by=None, bins: int = 40,
                             ncols: int | None = None, title: str | None = None):
    """Grid of histograms, one per property, for dataset statistics.

    Args:
        props: ``{name: [N] values}`` (numpy, torch or lists; different ``N`` allowed unless
            ``color_by`` is given). Non-finite values are dropped and counted in the panel.
        path: where to save the figure (PNG, :data:`DPI` dpi), or ``None``.
        color_by: ``None``, the name of an entry of ``props`` or an ``[N]`` array of labels:
            one overlaid histogram per label (up to 12 distinct labels; more numeric labels are
            split into quartiles). A ``props`` entry used for colouring is not plotted.
        bins: bins per histogram (default 40).
        ncols: panels per row (default ``min(4, number of properties)``).
        title: figure title (default: none).

    Returns:
        The :class:`matplotlib.figure.Figure` (3.6 x 2.9 in per panel).
    """
    if not props:
        raise ValueError("props is empty")
    props = dict(props)
    group_title = None
    if isinstance(color_by, str):
        if color_by not in props:
            raise ValueError(f"color_by {color_by!r} is not a key of props")
        group_title = color_by
        color_by = props.pop(color_by)
    if hasattr(color_by, "detach"):
        color_by = color_by.detach().cpu().numpy()
    data = {}
    for k, v in props.items():
        v = v.detach().cpu().numpy() if hasattr(v, "detach") else v
        try:
            v = np.asarray(v, dtype=np.float64).reshape(-1) if np.ndim(v) <= 1 else np.asarray(v)
        except (TypeError, ValueError) as err:
            raise ValueError(f"property {k!r} is not numeric: {err}") from None
        if v.ndim != 1:
            raise ValueError(f"property {k!r} must be 1-D, got shape {v.shape}")
        data[str(k)] = v
    if not data:
        raise ValueError("no property left to plot besides color_by")
    groups = None
    if color_by is not None:
        lens = {len(v) for v in data.values()}
        if len(lens) != 1:
            raise ValueError("with color_by all properties need the same number of samples")
        groups = _groups(color_by, lens.pop())
    n = len(data)
    ncols = min(4, n) if ncols is None else int(ncols)
    if ncols < 1:
        raise ValueError(f"ncols must be positive, got {ncols}")
    nrows = -(-n // ncols)
    with _style():
        fig = _new_figure((3.6 * ncols, 2.9 * nrows))
        axes = fig.subplots(nrows, ncols, squeeze=False)
        for ax, (name, v) in zip(axes.flat, data.items()):
            ok = np.isfinite(v)
            x = v[ok]
            note = f"n = {ok.sum()}" + (f" ({(~ok).sum()} non-finite)" if (~ok).any() else "")
            if len(x):
                edges = np.histogram_bin_edges(x, bins=bins)
                if groups is None:
                    ax.hist(x, bins=edges, color=_STRUT_COLOR, alpha=0.85)
                else:
                    lab, names = groups
                    for g, gname in names:
                        ax.hist(x[lab[ok] == g], bins=edges, histtype="step", lw=1.4,
                                label=gname)
                note += f"\nmean {x.mean():.3g}, sd {x.std():.3g}"
            ax.text(0.97, 0.95, note, transform=ax.transAxes, ha="right", va="top", fontsize=7,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.7})
            ax.set_title(name)
            ax.set_ylabel("count")
            ax.tick_params(labelsize=8)
        for ax in axes.flat[n:]:
            ax.set_axis_off()
        if groups is not None:
            handles, labels = axes.flat[0].get_legend_handles_labels()
            fig.legend(handles, labels, loc="outside right upper", title=group_title)
        if title:
            fig.suptitle(title)
        return _finish(fig, path)


def plot_property_projections(props: dict, path=None, color: str = "K_V", sample: int = 3000,
                              seed: int = 0, title: str | None = None):
    """Young's and shear moduli of a corpus in the three principal directions, like Fig. 1d of
    Zheng et al. (2023): a 3D scatter of ``(E1, E2, E3)`` and its projections on the three
    coordinate planes (top row), the same for ``(G23, G31, G12)`` (bottom row), log axes,
    coloured by ``color`` (default the Voigt bulk modulus ``K_V``).

    Args:
        props: ``{name: [N]}`` with at least ``E1, E2, E3, G23, G31, G12`` and ``color``
            (e.g. :func:`gnn_truss.statistics.corpus_properties`), units of E_s.
        path: PNG path or ``None``.
        sample: random points drawn (default 3000, as in the paper's figure).
        seed: seed of that draw.

    Returns:
        The Figure (2 x 4 panels).
    """
    need = ["E1", "E2", "E3", "G23", "G31", "G12", color]
    missing = [k for k in need if k not in props]
    if missing:
        raise ValueError(f"props lacks {missing}")
    arr = {k: np.asarray(props[k], dtype=np.float64).reshape(-1) for k in need}
    n = len(arr["E1"])
    ok = np.all([np.isfinite(arr[k]) & ((arr[k] > 0) | (k == color)) for k in need], axis=0)
    idx = np.flatnonzero(ok)
    if len(idx) == 0:
        raise ValueError("no lattice with finite positive moduli to plot")
    rng = np.random.default_rng(seed)
    idx = rng.choice(idx, size=min(sample, len(idx)), replace=False)
    c = arr[color][idx]
    rows = [("E", ["E1", "E2", "E3"]), ("G", ["G23", "G31", "G12"])]
    with _style():
        fig = _new_figure((18.0, 8.2))
        gs = fig.add_gridspec(2, 5, width_ratios=[1.5, 0.12, 1, 1, 1])
        sc = None
        for r, (sym, keys) in enumerate(rows):
            v = np.log10(np.stack([arr[k][idx] for k in keys], axis=1))
            ax = fig.add_subplot(gs[r, 0], projection="3d")
            sc = ax.scatter(v[:, 0], v[:, 1], v[:, 2], c=c, s=3, cmap="viridis", alpha=0.7)
            ax.set_xlabel(f"log10 {keys[0]}")
            ax.set_ylabel(f"log10 {keys[1]}")
            ax.set_zlabel(f"log10 {keys[2]}")
            ax.set_title(f"{sym} / E_s in the principal directions")
            for p, (a, b) in enumerate([(0, 1), (0, 2), (1, 2)]):
                ax2 = fig.add_subplot(gs[r, p + 2])
                ax2.scatter(v[:, a], v[:, b], c=c, s=3, cmap="viridis", alpha=0.7)
                lo = min(v[:, a].min(), v[:, b].min())
                hi = max(v[:, a].max(), v[:, b].max())
                ax2.plot([lo, hi], [lo, hi], color="0.6", lw=0.8, ls="--")
                ax2.set_xlabel(f"log10 {keys[a]}")
                ax2.set_ylabel(f"log10 {keys[b]}")
                ax2.set_aspect("equal", adjustable="datalim")
        cb = fig.colorbar(sc, ax=fig.axes, shrink=0.6, pad=0.02)
        cb.set_label(f"{color} / E_s")
        fig.suptitle(title or f"{len(idx)} of {n} lattices, coloured by {color}")
        return _finish(fig, path)


def _draw_curves(ax, results, names) -> None:
    from .fe.nonlinear import LABEL_STRAINS
    for res, name in zip(results, names):
        line, = ax.plot(100 * np.asarray(res.strain), np.asarray(res.stress), lw=1.6,
                        label=name)
        lab = np.asarray(res.label)
        ok = np.isfinite(lab)
        ax.plot(100 * LABEL_STRAINS[ok], lab[ok], "o", ms=4, color=line.get_color())
    ax.set_xlabel("compressive strain  \u03b5 (%)")
    ax.set_ylabel("nominal compressive stress  \u03c3 / E$_s$")
    ax.set_xlim(0, None)
    ax.set_ylim(0, None)
    ax.grid(alpha=0.3)
    if any(names):
        ax.legend(loc="best")


def plot_stress_strain(results, path=None, names=None, title: str | None = None):
    """Nominal stress-strain curves of :func:`gnn_truss.fe.nonlinear.compress` results (lines)
    with their 13-point labels (dots).

    Args:
        results: one :class:`~gnn_truss.fe.nonlinear.CompressionResult` or a list of them.
        path: PNG path or ``None``.
        names: legend entries.
    """
    results = results if isinstance(results, (list, tuple)) else [results]
    names = list(names) if names is not None else [""] * len(results)
    with _style():
        fig = _new_figure((6.4, 4.6))
        ax = fig.add_subplot(1, 1, 1)
        _draw_curves(ax, results, names)
        ax.set_title(title or "uniaxial compression")
        return _finish(fig, path)


def plot_compression(result, path=None, strain: float | None = None, title: str | None = None):
    """Stress-strain curve (left) and the deformed periodic cell (right) at ``strain`` (default:
    the largest stored snapshot), struts coloured by displacement magnitude.

    Args:
        result: a :class:`~gnn_truss.fe.nonlinear.CompressionResult` with snapshots (pass
            ``snapshot_strains`` to ``compress``).
        path: PNG path or ``None``.
        strain: snapshot strain to draw.
    """
    from matplotlib import cm, colors
    if not result.snapshots:
        raise ValueError("result has no snapshots; call compress(..., snapshot_strains=[...])")
    keys = sorted(result.snapshots)
    s = keys[-1] if strain is None else min(keys, key=lambda k: abs(k - strain))
    snap = result.snapshots[s]
    ends = np.asarray(snap["ends"])
    Fd = np.asarray(snap.get("F", np.ones(3)))
    ref = np.asarray(result.snapshots[0.0]["ends"]) if 0.0 in result.snapshots else None
    if ref is not None and ref.shape == ends.shape:
        # draw every element inside the (deformed) cell: shift it by the lattice vector that
        # brings its reference midpoint into [-1, 1)^3
        n = np.floor((ref.mean(axis=1) + 1.0) / 2.0)
        ends = ends - (2.0 * n * Fd)[:, None, :]
        fluct = np.linalg.norm(ends - (ref - 2.0 * n[:, None, :]) * Fd, axis=2).mean(axis=1)
    else:
        fluct = None
    with _style():
        fig = _new_figure((12.0, 5.4))
        ax = fig.add_subplot(1, 2, 1)
        _draw_curves(ax, [result], [""])
        ax.axvline(100 * s, color="0.5", ls=":", lw=1)
        ax.set_title("nominal stress-strain curve (dots: 13-point label)")
        ax3 = fig.add_subplot(1, 2, 2, projection="3d")
        _setup_3d(ax3, -1.05, 1.05, [-1, 0, 1])
        kw = {"linewidths": 1.6}
        if fluct is not None:
            norm = colors.Normalize(vmin=0.0, vmax=max(float(fluct.max()), 1e-12))
            kw["colors"] = cm.viridis(norm(fluct))
            sm = cm.ScalarMappable(norm=norm, cmap="viridis")
            fig.colorbar(sm, ax=ax3, shrink=0.6, pad=0.08,
                         label="fluctuation |w| (cell units)")
        else:
            kw["colors"] = _STRUT_COLOR
        _draw_segments(ax3, ends, **kw)
        ax3.set_title(f"deformed cell at \u03b5 = {100 * s:.1f} %")
        if title:
            fig.suptitle(title)
        return _finish(fig, path)


# --------------------------------------------------------------------------- model evaluation

__all__ += ["plot_parity", "plot_reconstruction"]


def _parity_r2(true: np.ndarray, pred: np.ndarray) -> float:
    ss_tot = float(np.sum((true - true.mean()) ** 2)) if true.size else 0.0
    return 1.0 - float(np.sum((true - pred) ** 2)) / ss_tot if ss_tot > 0 else float("nan")


def _no_minor_labels(ax) -> None:
    """Log axes labelled in plain numbers at 1, 2, 5 x 10^k over up to 1.6 decades, 1, 3 x 10^k
    up to 2 decades and 10^k beyond (the default minor labels of a range of one or two decades
    overlap, and so do 1 and 3 x 10^-4 over more than two)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    for axis, lim in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        decades = np.log10(max(lim) / min(lim)) if min(lim) > 0 else np.inf
        subs = (1.0, 2.0, 5.0) if decades <= 1.6 else (1.0,) if decades > 2 else (1.0, 3.0)
        axis.set_major_locator(LogLocator(base=10, subs=subs))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())


def plot_parity(true, pred, names, path=None, title: str | None = None, ncols: int = 3,
                highlight=None, labels: tuple[str, str] = ("exact", "other")):
    """Parity plots, predicted vs true, one panel per component (3 x 3 for the 9 stiffness
    components), with :math:`R^2 = 1 - SS_{res}/SS_{tot}` in each title.

    Args:
        true, pred: ``[N, D]`` values (numpy or torch), e.g. stiffness in units of ``E_s``.
        names: ``D`` component names.
        path: where to save the figure, or ``None``.
        title: figure title (default: none).
        ncols: panels per row (3).
        highlight: optional ``[N]`` booleans splitting the points in two colours, drawn with
            a legend ``labels`` (``(for True, for False)``, each with its number of rows), the
            True points over the others; e.g. whether the one pass
            reconstructed the lattice exactly (``gnn-truss evaluate`` passes it). The
            :math:`R^2` in the titles stays that of all points.
        labels: legend entries of ``highlight``.

    A panel uses log-log axes when every true and predicted value in it is positive, linear
    axes otherwise; the dashed line is ``pred = true``.

    Returns:
        The :class:`matplotlib.figure.Figure` (3.3 x 3.1 in per panel).
    """
    t = np.asarray(true.detach().cpu() if hasattr(true, "detach") else true, dtype=np.float64)
    p = np.asarray(pred.detach().cpu() if hasattr(pred, "detach") else pred, dtype=np.float64)
    names = [str(n) for n in names]
    if t.shape != p.shape or t.ndim != 2 or t.shape[1] != len(names):
        raise ValueError(f"true and pred must both be [N, {len(names)}], got {t.shape} and "
                         f"{p.shape}")
    if highlight is not None:
        highlight = np.asarray(highlight)
        if highlight.shape != (len(t),) or highlight.dtype != bool:
            raise ValueError(f"highlight must be [{len(t)}] booleans, got {highlight.dtype} "
                             f"{highlight.shape}")
    n = len(names)
    ncols = max(1, min(int(ncols), n))
    nrows = -(-n // ncols)
    with _style():
        fig = _new_figure((3.3 * ncols, 3.1 * nrows))
        axes = fig.subplots(nrows, ncols, squeeze=False)
        for k, (ax, name) in enumerate(zip(axes.flat, names)):
            ok = np.isfinite(t[:, k]) & np.isfinite(p[:, k])
            x, y = t[ok, k], p[ok, k]
            if highlight is None:
                ax.scatter(x, y, s=5, alpha=0.5, color=_STRUT_COLOR, edgecolors="none")
            else:  # the True group drawn over the other: its outliers stand out
                h = highlight[ok]
                for m, lab, count, col, z in (
                        (h, labels[0], highlight.sum(), _STRUT_COLOR, 3),
                        (~h, labels[1], (~highlight).sum(), _HIGHLIGHT_COLOR, 2)):
                    ax.scatter(x[m], y[m], s=5, alpha=0.5, color=col, edgecolors="none",
                               label=f"{lab} ({int(count)})", zorder=z)
            if len(x):
                lo, hi = min(x.min(), y.min()), max(x.max(), y.max())
                ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
                if lo > 0:
                    ax.set_xscale("log")
                    ax.set_yscale("log")
                    _no_minor_labels(ax)  # the default minor labels pile up
            ax.set_title(f"{name}   $R^2$ = {_parity_r2(x, y):.4f}")
            ax.set_xlabel("true")
            ax.set_ylabel("predicted")
        for ax in axes.flat[n:]:
            ax.set_axis_off()
        if highlight is not None:  # one legend for all panels, below them, off the data
            handles, entries = axes.flat[0].get_legend_handles_labels()
            fig.legend(handles, entries, loc="outside lower center", ncols=2,
                       markerscale=3, frameon=False)
        if title:
            fig.suptitle(title)
        return _finish(fig, path)


def plot_reconstruction(logits, true_adj, pred_offsets, true_offsets, path=None,
                        title: str | None = None):
    """Reconstruction summary of a graph VAE on a data split, three panels:

    * histogram of the number of wrong adjacency entries (of 351) per lattice, with the exact
      match rate;
    * predicted vs true number of beams per lattice (threshold ``logit > 0``);
    * predicted vs true position of every free coordinate of every used node (octant units).

    Args:
        logits, true_adj: ``[N, 351]`` adjacency logits and true binary upper triangles.
        pred_offsets, true_offsets: ``[N, 27]`` free-dof offsets.
        path: where to save the figure, or ``None``.
        title: figure title (default: none).

    Returns:
        The :class:`matplotlib.figure.Figure`.
    """
    def arr(v):
        return np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, dtype=np.float64)

    lg, adj, po, to = arr(logits), arr(true_adj), arr(pred_offsets), arr(true_offsets)
    if lg.shape != adj.shape or lg.ndim != 2 or lg.shape[1] != ds.NUM_PAIRS:
        raise ValueError(f"logits and true_adj must both be [N, {ds.NUM_PAIRS}], got "
                         f"{lg.shape} and {adj.shape}")
    if po.shape != to.shape or po.shape != (len(lg), ds.NUM_FREE_DOFS):
        raise ValueError(f"offsets must both be [{len(lg)}, {ds.NUM_FREE_DOFS}], got "
                         f"{po.shape} and {to.shape}")
    pred, true = lg > 0, adj > 0.5
    wrong = (pred != true).sum(axis=1)
    used = ds.triu_to_adjacency(true).any(axis=-1)[:, ds.FREE_DOF_NODE]  # [N, 27]
    pos_t = (to + ds.NODE_GRID[ds.FREE_DOF_NODE, ds.FREE_DOF_AXIS])[used]
    pos_p = (po + ds.NODE_GRID[ds.FREE_DOF_NODE, ds.FREE_DOF_AXIS])[used]
    axis = np.broadcast_to(ds.FREE_DOF_AXIS, used.shape)[used]
    with _style():
        fig = _new_figure((12.0, 3.8))
        a0, a1, a2 = fig.subplots(1, 3)
        a0.hist(wrong, bins=np.arange(wrong.max() + 2) - 0.5, color=_STRUT_COLOR)
        a0.set_xlabel("wrong adjacency entries per lattice (of 351)")
        a0.set_ylabel("lattices")
        a0.set_title(f"exact match {np.mean(wrong == 0):.1%}")
        nt, npred = true.sum(axis=1), pred.sum(axis=1)
        a1.scatter(nt, npred, s=6, alpha=0.5, color=_STRUT_COLOR, edgecolors="none")
        m = max(nt.max(), npred.max(), 1)
        a1.plot([0, m], [0, m], "k--", lw=0.8)
        a1.set_xlabel("true beams")
        a1.set_ylabel("predicted beams")
        a1.set_title("beams per lattice")
        for k, name in enumerate("xyz"):
            sel = axis == k
            a2.scatter(pos_t[sel], pos_p[sel], s=4, alpha=0.5, edgecolors="none",
                       label=f"{name} (R$^2$ {_parity_r2(pos_t[sel], pos_p[sel]):.3f})")
        a2.plot([0, 1], [0, 1], "k--", lw=0.8)
        a2.set_xlabel("true position of free coordinates")
        a2.set_ylabel("predicted")
        a2.set_title("free node coordinates (used nodes)")
        a2.legend(loc="upper left", markerscale=3)
        if title:
            fig.suptitle(title)
        return _finish(fig, path)


# --------------------------------------------------------------------------- latent exploration

__all__ += ["plot_strip", "plot_lattice_grid", "plot_path_properties", "plot_design_path",
            "plot_design_progress", "plot_design_curves",
            "pca_project", "plot_latent_projection"]

_STRIP_SURFACE_GRID = (45, 89)  # (n_theta, n_phi): odd, and (n_phi - 1) % 4 == 0, so the
# grid holds the x, y and z axes (where E(d) of a needle-like surface peaks)


def _draw_cell_compact(ax, truss, density: float, scale: float = 0.7) -> None:
    """Full periodic cell of ``truss`` without axes or node markers (for small panels)."""
    t = truss if isinstance(truss, Truss) else None
    r = _truss_radius(t, density) if t is not None and t.num_edges else None
    _draw_segments(ax, _cube_edges(-1.0, 1.0), colors=_WIRE_COLOR, linewidths=0.6,
                   linestyles="--", zorder=1)
    seg = full_cell_segments(truss) if (t is None or t.num_edges) else np.zeros((0, 2, 3))
    if len(seg):
        _draw_segments(ax, seg, colors=_STRUT_COLOR, linewidths=scale * _linewidth(r, 2.0),
                       alpha=0.85, zorder=2, gid="struts")
    _setup_3d(ax, -1.0, 1.0, [-1, 0, 1])
    ax.set_axis_off()


def _message(ax, text: str) -> None:
    """Centre ``text`` in an empty (axis-less) panel, 2D or 3D."""
    ax.set_axis_off()
    put = getattr(ax, "text2D", ax.text)
    put(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=9,
        color="#8b0000", wrap=True)


def plot_strip(trusses, stiffnesses, labels=None, path=None, title: str | None = None,
               density: float = 0.15, notes=None):
    """A strip of lattices (top row, full periodic cell) with their elastic surfaces (bottom
    row), like Figs. 3 and 4 of Zheng et al. (2023).

    All surfaces share one colour scale and one length scale, so their sizes compare
    directly; the colour bar on the right gives ``E(d) / E_s``.

    Args:
        trusses: ``K`` :class:`~gnn_truss.truss.Truss` (or
            :class:`~gnn_truss.cell.PeriodicTruss`).
        stiffnesses: ``K`` entries, each a ``[6, 6]`` Voigt stiffness (units of ``E_s``) or
            ``None`` (or all-NaN) where there is none; the panel then says so.
        labels: ``K`` column titles (default ``0 .. K-1``).
        path: PNG path or ``None``.
        title: figure title.
        density: relative density for the strut line widths (0.15).
        notes: ``K`` texts shown instead of a surface where the stiffness is missing (e.g. the
            FE status; default ``"no FE result"``).

    Returns:
        The :class:`matplotlib.figure.Figure` (2.3 x 5.0 in per column).
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LightSource, Normalize

    from .properties import elastic_surface
    trusses = list(trusses)
    stiffnesses = list(stiffnesses)
    K = len(trusses)
    if K == 0:
        raise ValueError("plot_strip needs at least one lattice")
    if len(stiffnesses) != K:
        raise ValueError(f"got {K} lattices but {len(stiffnesses)} stiffnesses")
    labels = [str(k) for k in range(K)] if labels is None else [str(s) for s in labels]
    notes = ["no FE result"] * K if notes is None else [str(s) for s in notes]
    if len(labels) != K or len(notes) != K:
        raise ValueError(f"labels and notes need {K} entries each")
    surfs = []
    for C in stiffnesses:
        if C is None or not np.all(np.isfinite(np.asarray(C, dtype=np.float64))):
            surfs.append(None)
        else:
            surfs.append(elastic_surface(_stiffness_numpy(C), *_STRIP_SURFACE_GRID))
    have = [s for s in surfs if s is not None]
    if have:
        lo = min(float(s.E.min()) for s in have)
        hi = max(float(s.E.max()) for s in have)
        pad = 1e-3 * hi if hi - lo < 1e-6 * hi else 0.0
        norm = Normalize(lo - pad, hi + pad)
        lim = 1.05 * max(float(np.abs(s.points).max()) for s in have)
    cmap = colormaps["viridis"]
    with _style():
        fig = _new_figure((2.3 * K + (1.0 if have else 0.0), 5.0))
        gs = fig.add_gridspec(2, K + 1, width_ratios=[1.0] * K + [0.12 if have else 0.01])
        for k, (truss, surf) in enumerate(zip(trusses, surfs)):
            ax = fig.add_subplot(gs[0, k], projection="3d")
            if isinstance(truss, Truss) and truss.num_edges == 0:
                _message(ax, "no beams")
            else:
                _draw_cell_compact(ax, truss, density)
            ax.set_title(labels[k], fontsize=9)
            ax2 = fig.add_subplot(gs[1, k], projection="3d")
            if surf is None:
                _message(ax2, notes[k])
                continue
            X, Y, Z = np.moveaxis(surf.points, -1, 0)
            ax2.plot_surface(X, Y, Z, facecolors=cmap(norm(surf.E)), rstride=1, cstride=1,
                             linewidth=0, antialiased=False, shade=True,
                             lightsource=LightSource(azdeg=300, altdeg=35))
            ax2.set_xlim(-lim, lim)
            ax2.set_ylim(-lim, lim)
            ax2.set_zlim(-lim, lim)
            ax2.set_box_aspect((1, 1, 1), zoom=1.2)
            ax2.view_init(elev=20, azim=-58)
            ax2.set_axis_off()
            ax2.set_title(f"E: {surf.E.min():.3g} .. {surf.E.max():.3g}", fontsize=8, y=-0.02)
        if have:
            cax = fig.add_subplot(gs[1, K])
            fig.colorbar(ScalarMappable(norm, cmap), cax=cax, label="E(d) / E$_s$")
        if title:
            fig.suptitle(title)
        return _finish(fig, path)


def plot_lattice_grid(trusses, labels=None, path=None, ncols: int = 4,
                      title: str | None = None, density: float = 0.15):
    """Full periodic cells of several lattices in a grid (e.g. decoded latent samples).

    Args:
        trusses: ``K >= 1`` lattices.
        labels: ``K`` panel titles (default ``0 .. K-1``).
        path: PNG path or ``None``.
        ncols: panels per row (4).
        title: figure title.
        density: relative density for the strut line widths.

    Returns:
        The Figure (2.6 x 2.6 in per panel).
    """
    trusses = list(trusses)
    K = len(trusses)
    if K == 0:
        raise ValueError("plot_lattice_grid needs at least one lattice")
    if ncols < 1:
        raise ValueError(f"ncols must be positive, got {ncols}")
    labels = [str(k) for k in range(K)] if labels is None else [str(s) for s in labels]
    if len(labels) != K:
        raise ValueError(f"got {K} lattices but {len(labels)} labels")
    ncols = min(int(ncols), K)
    nrows = -(-K // ncols)
    with _style():
        fig = _new_figure((2.6 * ncols, 2.6 * nrows + (0.4 if title else 0.0)))
        for k, t in enumerate(trusses):
            ax = fig.add_subplot(nrows, ncols, k + 1, projection="3d")
            if isinstance(t, Truss) and t.num_edges == 0:
                _message(ax, "no beams")
            else:
                _draw_cell_compact(ax, t, density)
            ax.set_title(labels[k], fontsize=9)
        if title:
            fig.suptitle(title)
        return _finish(fig, path)


def plot_path_properties(ts, props: dict, path=None, xlabel: str = "path parameter t",
                         title: str | None = None, ncols: int = 3, status=None):
    """Property values along a latent path, one panel per property.

    Non-finite values (no FE result) leave gaps; their positions are marked with red crosses
    on the lower edge of every panel.

    Args:
        ts: ``[T]`` path parameters.
        props: ``{name: [T] values}`` (e.g. ``LatentPath.properties``; units of ``E_s`` for
            moduli).
        path: PNG path or ``None``.
        xlabel: label of the path parameter.
        title: figure title.
        ncols: panels per row (3).
        status: optional ``[T]`` status strings; non-``"ok"`` ones are named in the legend.

    Returns:
        The Figure (3.4 x 2.6 in per panel).
    """
    ts = np.asarray(ts, dtype=np.float64).reshape(-1)
    if not props:
        raise ValueError("props is empty")
    data = {}
    for k, v in props.items():
        v = np.asarray(v, dtype=np.float64).reshape(-1)
        if v.shape != ts.shape:
            raise ValueError(f"property {k!r} has {v.size} values for {ts.size} path points")
        data[str(k)] = v
    n = len(data)
    ncols = max(1, min(int(ncols), n))
    nrows = -(-n // ncols)
    with _style():
        fig = _new_figure((3.4 * ncols, 2.6 * nrows + (0.4 if title else 0.0)))
        axes = fig.subplots(nrows, ncols, squeeze=False)
        for i, (ax, (name, v)) in enumerate(zip(axes.flat, data.items())):
            ok = np.isfinite(v)
            ax.plot(ts, v, "-o", color=_STRUT_COLOR, ms=4, lw=1.4)
            if (~ok).any():
                ax.plot(ts[~ok], np.zeros((~ok).sum()), "x", color="#c0392b", ms=7, mew=2,
                        transform=ax.get_xaxis_transform(), clip_on=False,
                        label="no FE result")
            ax.set_title(name)
            if i + ncols >= n:  # lowest panel of its column
                ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
        for ax in axes.flat[n:]:
            ax.set_axis_off()
        if status is not None:
            bad = sorted({str(s) for s in status if str(s) != "ok"})
            if bad:
                fig.supxlabel("\u00d7: no FE result (" + ", ".join(bad) + ")", fontsize=8,
                              color="#c0392b")
        if title:
            fig.suptitle(title)
        return _finish(fig, path)


def _xy(a, name: str, allow_empty: bool = True) -> np.ndarray:
    a = np.asarray(a.detach().cpu() if hasattr(a, "detach") else a, dtype=np.float64)
    if a.size == 0 and allow_empty:
        return a.reshape(0, 2)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"{name} must be [N, 2], got shape {a.shape}")
    return a


def plot_design_path(cloud_xy, paths, verified_xy, best_xy, xlabel: str, ylabel: str,
                     path=None, title: str | None = None, xscale: str = "linear",
                     yscale: str = "linear", labels: dict | None = None, start_xy=None,
                     reference_xy=None, highlight: int | None = None):
    """Inverse design in a 2D property space, like Figs. 5 and 6 of Zheng et al. (2023): the
    dataset as a light grey cloud, each optimisation path as a thin line (start marked by a
    small dot), the FE-verified final designs as markers and the best one as a star.

    Args:
        cloud_xy: ``[N, 2]`` dataset property pairs.
        paths: list of ``[T_i, 2]`` arrays (property values along each optimisation; may be
            empty).
        verified_xy: ``[k, 2]`` FE-verified properties of the final candidates (``k`` may be 0).
        best_xy: ``[2]`` of the best verified design, or ``None``.
        xlabel, ylabel: axis labels (property names and units).
        path: PNG path or ``None``.
        title: figure title.
        xscale, yscale: ``"linear"`` or ``"log"`` (non-positive points are left out on log
            axes by matplotlib).
        labels: legend texts overriding ``{"cloud": "dataset", "paths": "optimisation paths",
            "verified": "FE-verified designs", "best": "best design"}``.
        start_xy: ``[k, 2]`` properties of the start lattices (open squares), optional.
        reference_xy: ``[2]`` the dataset best (green diamond), optional.
        highlight: index of a path drawn bold (the run of the best design), optional.

    Non-finite points (lattices without an FE value) are left out. The view covers the FE
    values (cloud, starts, designs) and the path points within half their span; paths running
    further out (predictions for near-singular iterates) leave the view, and their lines break
    there rather than cross it. More than 300 designs are drawn as small markers.

    Returns:
        The Figure (6.4 x 5.2 in).
    """
    def finite(a):
        return a[np.all(np.isfinite(a), axis=1)]

    cloud = finite(_xy(cloud_xy, "cloud_xy"))
    verified = finite(_xy(verified_xy, "verified_xy"))
    paths = [finite(_xy(p, f"paths[{i}]")) for i, p in enumerate(paths or [])]
    starts = None if start_xy is None else finite(_xy(start_xy, "start_xy"))
    best = None
    if best_xy is not None:
        best = np.asarray(best_xy, dtype=np.float64).reshape(-1)
        if best.shape != (2,):
            raise ValueError(f"best_xy must have 2 values, got shape {best.shape}")
    for s in (xscale, yscale):
        if s not in ("linear", "log"):
            raise ValueError(f"scales must be 'linear' or 'log', got {s!r}")
    text = {"cloud": "dataset", "paths": "optimisation paths",
            "verified": "FE-verified designs", "best": "best design", **(labels or {})}
    with _style():
        fig = _new_figure((6.4, 5.2))
        ax = fig.add_subplot(1, 1, 1)
        if len(cloud):
            ax.scatter(cloud[:, 0], cloud[:, 1], s=4, color="#c8c8c8", alpha=0.6,
                       edgecolors="none", label=f"{text['cloud']} ({len(cloud)})", zorder=1,
                       rasterized=True)
        if starts is not None and len(starts):
            ax.scatter(starts[:, 0], starts[:, 1], s=16, marker="s", facecolor="none",
                       edgecolor="#555555", linewidths=0.7, zorder=2, label="starts")
        if reference_xy is not None:
            r = np.asarray(reference_xy, dtype=np.float64).reshape(-1)
            ax.scatter([r[0]], [r[1]], s=80, marker="D", color="#2ca02c", edgecolors="k",
                       zorder=4, label="dataset best")
        if len(verified):
            many = len(verified) > 300
            ax.scatter(verified[:, 0], verified[:, 1], s=8 if many else 30, marker="D",
                       color="#f39c12", edgecolors="k", linewidths=0.2 if many else 0.5,
                       zorder=3, rasterized=many,
                       label=f"{text['verified']} ({len(verified)})")
        if best is not None:
            ax.scatter([best[0]], [best[1]], s=260, marker="*", color="#e31a1c",
                       edgecolors="k", linewidths=0.8, zorder=4, label=text["best"])
        ax.set_xscale(xscale)
        ax.set_yscale(yscale)
        anchors = [cloud, verified] + ([starts] if starts is not None else []) + \
            [np.asarray(v, dtype=np.float64).reshape(1, 2) for v in (reference_xy, best)
             if v is not None]
        _view_limits(ax, finite(np.concatenate(anchors)), paths, (xscale, yscale))
        lim = (ax.get_xlim(), ax.get_ylim())
        drawn = False
        for i, p in enumerate(paths):
            if len(p) == 0:
                continue
            q = _break_outside(p, lim)
            ax.plot(q[:, 0], q[:, 1], "-", lw=0.7, alpha=0.6, color="#4a78b5", zorder=2,
                    label=None if drawn else text["paths"])
            ax.plot(p[0, 0], p[0, 1], "o", ms=2.5, color="#4a78b5", zorder=2)
            drawn = True
        if highlight is not None and 0 <= highlight < len(paths) and len(paths[highlight]):
            q = _break_outside(paths[highlight], lim)
            ax.plot(q[:, 0], q[:, 1], "-", lw=1.8, color="#08306b", zorder=3,
                    label="path of the best design")
        ax.set_xlim(*lim[0])
        ax.set_ylim(*lim[1])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", framealpha=0.85)
        if title:
            ax.set_title(title)
        return _finish(fig, path)


def _break_outside(p: np.ndarray, lim) -> np.ndarray:
    """``[T, 2]`` path with the points outside the view ``((x0, x1), (y0, y1))`` set to NaN:
    the line breaks there instead of streaking across the view towards a runaway point."""
    (x0, x1), (y0, y1) = (sorted(l) for l in lim)
    inside = (p[:, 0] >= x0) & (p[:, 0] <= x1) & (p[:, 1] >= y0) & (p[:, 1] <= y1)
    return np.where(inside[:, None], p, np.nan)


def _axis_range(anchors: np.ndarray, points: np.ndarray, scale: str):
    """``(lo, hi)`` of one axis: the range of ``anchors`` (FE values) widened by the
    ``points`` (predictions) lying within half its span, padded by 5 %; ``None`` without
    anchors. Predicted labels of near-singular iterates (e.g. Poisson's ratios of 1e8) would
    otherwise squeeze everything into one dot."""
    a, q = np.asarray(anchors, dtype=np.float64), np.asarray(points, dtype=np.float64)
    a, q = a[np.isfinite(a)], q[np.isfinite(q)]
    if scale == "log":
        a, q = a[a > 0], q[q > 0]
        a, q = np.log10(a), np.log10(q)
    if len(a) == 0:
        return None
    lo, hi = a.min(), a.max()
    span = hi - lo if hi > lo else max(abs(hi), 1.0) * 0.1
    near = q[(q >= lo - 0.5 * span) & (q <= hi + 0.5 * span)]
    if len(near):
        lo, hi = min(lo, near.min()), max(hi, near.max())
    pad = 0.05 * (hi - lo if hi > lo else span)
    lo, hi = lo - pad, hi + pad
    return (10 ** lo, 10 ** hi) if scale == "log" else (lo, hi)


def _view_limits(ax, anchors: np.ndarray, paths: list, scales) -> None:
    """Axis limits of a 2D view from :func:`_axis_range` of the FE values (cloud, designs,
    starts) and the path points."""
    pts = np.concatenate([p for p in paths if len(p)]) if any(len(p) for p in paths) \
        else np.zeros((0, 2))
    for k, (scale, setter) in enumerate(zip(scales, (ax.set_xlim, ax.set_ylim))):
        r = _axis_range(anchors[:, k], pts[:, k], scale) if len(anchors) else None
        if r is not None:
            setter(r)


def plot_design_progress(steps, values, verified_steps, verified_values, ylabel: str,
                         reference: float | None = None, path=None, title: str | None = None,
                         highlight: int | None = None, refined=None):
    """Objective value against the optimisation step (Zheng et al. 2023, Fig. 5, left).

    Args:
        steps: ``[T]`` recorded steps.
        values: ``[T, k]`` predicted values of the ``k`` runs (thin lines).
        verified_steps, verified_values: ``[n]`` steps and FE values of the verified
            candidates (dots).
        ylabel: axis label.
        reference: the dataset best (dashed line), optional.
        path: PNG path or ``None``.
        highlight: run drawn bold (the run of the best design), optional.
        refined: ``(rounds [m], values [m])`` FE values of the lattices of the FE-guided
            refinement by round (1, 2, ...), drawn in a narrow panel on the right, optional.

    The y view covers the FE values; predictions running far outside (near-singular
    iterates) leave it.

    Returns:
        The :class:`matplotlib.figure.Figure` (6.4 x 4.4 in; 8.4 x 4.4 with ``refined``).
    """
    steps = np.asarray(steps)
    values = np.asarray(values, dtype=np.float64).reshape(len(steps), -1)
    has_ref = refined is not None and len(refined[0]) > 0
    fig = _new_figure((8.4 if has_ref else 6.4, 4.4))
    if has_ref:
        ax, ax_r = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [3, 1]})
    else:
        ax, ax_r = fig.add_subplot(1, 1, 1), None
    ax.plot(steps, values, "-", lw=0.4, alpha=0.25, color="#1f77b4")
    ax.plot([], [], "-", color="#1f77b4", label="predicted (all runs)")
    if highlight is not None and 0 <= highlight < values.shape[1]:
        ax.plot(steps, values[:, highlight], "-", lw=1.6, color="#08306b",
                label="predicted (run of the best design)")
    ax.scatter(verified_steps, verified_values, s=12, facecolor="none", edgecolor="#d62728",
               lw=0.8, zorder=5, label="FE-verified candidates")
    for a in (ax, ax_r):
        if a is not None and reference is not None and np.isfinite(reference):
            a.axhline(reference, ls="--", color="#2ca02c", label="dataset best (FE)")
    if has_ref:
        rounds = np.asarray(refined[0], dtype=np.float64)
        jitter = np.random.default_rng(0).uniform(-0.25, 0.25, len(rounds))
        ax_r.scatter(rounds + jitter, refined[1], s=8, color="#ff7f0e", alpha=0.5, lw=0,
                     zorder=4, rasterized=len(rounds) > 300)
        ax_r.set_xlabel("refinement round")
        ax_r.grid(alpha=0.3)
    # y view from the FE values (as the path figure): runaway predictions leave the view
    fe_y = np.concatenate([np.asarray(verified_values, dtype=np.float64).reshape(-1),
                           np.asarray(refined[1] if has_ref else [],
                                      dtype=np.float64).reshape(-1),
                           [reference if reference is not None else np.nan]])
    y_range = _axis_range(fe_y, values.reshape(-1), "linear")
    if y_range is not None:
        ax.set_ylim(*y_range)
    ax.set_xlabel("optimisation step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def plot_design_curves(target, curves: dict, path=None, title: str | None = None):
    """Target and FE compression curves (Zheng et al. 2023, Fig. 6b).

    Args:
        target: ``[13]`` target stresses (units E_s).
        curves: ``{legend: [13] stresses}`` (e.g. dataset best, best design).
        path: PNG path or ``None``.
    """
    from .fe.nonlinear import LABEL_STRAINS
    fig = _new_figure((6.0, 4.4))
    ax = fig.add_subplot(1, 1, 1)
    eps = 100 * np.asarray(LABEL_STRAINS)
    ax.plot(eps, np.asarray(target), "k--", lw=1.8, label="target")
    for name, c in curves.items():
        ax.plot(eps, np.asarray(c), "o-", ms=4, lw=1.4, label=name)
    ax.set_xlabel("compressive strain  \u03b5 (%)")
    ax.set_ylabel("nominal compressive stress  \u03c3 / E$_s$")
    ax.set_xlim(0, None)
    ax.set_ylim(0, None)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def pca_project(mu, k: int = 2):
    r"""Principal components of latent vectors by SVD of the centred data.

    :math:`M - \bar M = U \Sigma V^T`; the projection is :math:`(M - \bar M) V_{:, :k}` and the
    explained variance ratio :math:`\sigma_i^2 / \sum_j \sigma_j^2`. Component signs are fixed
    so that the largest-magnitude loading of each component is positive (deterministic).

    Args:
        mu: ``[N, d]`` latent vectors (numpy or torch), ``N >= 2``.
        k: number of components (``1 <= k <= d``).

    Returns:
        ``(coords [N, k], explained ratio [k], components [k, d])``.
    """
    m = np.asarray(mu.detach().cpu() if hasattr(mu, "detach") else mu, dtype=np.float64)
    if m.ndim != 2 or len(m) < 2:
        raise ValueError(f"mu must be [N, d] with N >= 2, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError("mu contains NaN or inf")
    if not 1 <= k <= m.shape[1]:
        raise ValueError(f"k must lie in 1..{m.shape[1]}, got {k}")
    c = m - m.mean(axis=0)
    _, s, vt = np.linalg.svd(c, full_matrices=False)
    comps = vt[:k]
    sign = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
    comps = comps * np.where(sign == 0, 1.0, sign)[:, None]
    var = s**2
    ratio = var[:k] / var.sum() if var.sum() > 0 else np.zeros(k)
    return c @ comps.T, ratio, comps


def plot_latent_projection(mu, values, path=None, method: str = "pca",
                           value_label: str = "property", title: str | None = None,
                           log: bool = False):
    """Latent vectors projected to 2D, coloured by a property (paper, Supplementary Note 3.1).

    Args:
        mu: ``[N, d]`` latent means.
        values: ``[N]`` property per lattice (non-finite ones drawn grey).
        path: PNG path or ``None``.
        method: ``"pca"`` (the two leading principal components, :func:`pca_project`).
        value_label: colour bar label.
        title: figure title.
        log: colour by ``log10`` of the (positive) values.

    Returns:
        The Figure (6.4 x 5.2 in).
    """
    if method != "pca":
        raise ValueError(f"method must be 'pca', got {method!r}")
    v = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values,
                   dtype=np.float64).reshape(-1)
    xy, ratio, _ = pca_project(mu, 2)
    if len(v) != len(xy):
        raise ValueError(f"values has {len(v)} entries for {len(xy)} latent vectors")
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)
        value_label = f"log10 {value_label}"
    ok = np.isfinite(v)
    with _style():
        fig = _new_figure((6.4, 5.2))
        ax = fig.add_subplot(1, 1, 1)
        if (~ok).any():
            ax.scatter(xy[~ok, 0], xy[~ok, 1], s=5, color="#bbbbbb", edgecolors="none",
                       label=f"no value ({(~ok).sum()})")
            ax.legend(loc="best")
        sc = ax.scatter(xy[ok, 0], xy[ok, 1], c=v[ok], s=6, cmap="viridis", edgecolors="none",
                        alpha=0.8)
        fig.colorbar(sc, ax=ax, label=value_label)
        ax.set_xlabel(f"PC 1 ({100 * ratio[0]:.1f} % of variance)")
        ax.set_ylabel(f"PC 2 ({100 * ratio[1]:.1f} % of variance)")
        ax.set_aspect("equal", adjustable="datalim")
        ax.grid(alpha=0.3)
        ax.set_title(title or f"latent space ({len(xy)} lattices, PCA)")
        return _finish(fig, path)
