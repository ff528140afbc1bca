"""Exports of a lattice for analysis and manufacturing: JSON, CSV and STL.

The periodic cell of a :class:`~gnn_truss.truss.Truss` is the octant mirrored to the cube
``[-1, 1]^3`` (side 2, ``SPEC.md`` section 1). Exports describe the *full cell* (every strut
that appears inside the closed cube, a strut lying in a boundary face drawn on both copies of
the face, see :func:`gnn_truss.plotting.full_cell_segments`) or an ``n x n x n``
tessellation of it, in physical units:

* the cell of side 2 is scaled to side ``cell_size`` (default 1.0: lengths in units of the cell
  side) and the tessellation occupies the box ``[0, n * cell_size]^3``;
* all struts have the radius that gives the periodic lattice the relative density ``density``
  (``rho = pi r^2 sum(L) / V``, each physical strut counted once, ``SPEC.md`` section 3),
  scaled by ``cell_size / 2``; the density is scale free.

Formats:

* JSON (:func:`to_json`, :func:`write_json`): nodes, struts, radius, density, material, cell
  size, tessellation and the octant lattice (edges and free offsets in the format of
  :mod:`gnn_truss.io`) for round trips (:func:`truss_from_json`).
* CSV (:func:`write_csv`): ``nodes.csv`` (``id,x,y,z``) and ``struts.csv``
  (``id,i,j,length,radius``), one header row each, ids 0-based.
* STL (:func:`export_stl`): a cylinder per strut and a sphere per node (:func:`strut_mesh`,
  pure numpy, every primitive a closed, outward-oriented solid). With the optional dependency
  ``manifold3d`` (``pip install gnn_truss[mesh]``) the primitives are joined by a boolean
  union into one watertight 2-manifold; without it the file holds the overlapping closed
  primitives (most slicers union overlapping shells, but mesh checkers report them as
  self-intersecting).
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = [
    "EXPORT_FORMAT",
    "FORMATS",
    "add_export_arguments",
    "export_main",
    "export_stl",
    "full_cell_struts",
    "has_mesh_boolean",
    "mesh_check",
    "read_stl",
    "strut_mesh",
    "to_json",
    "truss_from_json",
    "write_csv",
    "write_json",
    "write_stl",
]

logger = logging.getLogger(__name__)

#: ``"format"`` tag of the export JSON document.
EXPORT_FORMAT = "gnn_truss.export"
#: File formats of :func:`export_main`.
FORMATS = ("json", "csv", "stl")

_MERGE_TOL = 1e-6  # node merging tolerance, in units of the half cell side (cell = [-1, 1]^3)
_COLLINEAR_TOL = 1e-7  # |sin| of the angle below which two struts are collinear


# --------------------------------------------------------------------------- graph of the cell

def _merge_points(points: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Merge points closer than ``tol`` (transitively). ``[K, 3] -> [P, 3], [K]`` (the
    representative of each cluster is its mean; clusters sorted lexicographically)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    pairs = cKDTree(points).query_pairs(tol, output_type="ndarray")
    k = len(points)
    g = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(k, k))
    ncomp, label = connected_components(g, directed=False)
    sums = np.zeros((ncomp, 3))
    np.add.at(sums, label, points)
    centres = sums / np.bincount(label, minlength=ncomp)[:, None]
    order = np.lexsort(np.round(centres / tol).T[::-1])
    rank = np.empty(ncomp, dtype=np.int64)
    rank[order] = np.arange(ncomp)
    return centres[order], rank[label]


def _drop_collinear_nodes(nodes: np.ndarray, struts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Join the two struts at every node where exactly two collinear struts meet (a straight
    strut split by a mirror plane, the cell boundary or an unused crossing) and drop the node.
    ``[P, 3], [S, 2] -> [P', 3], [S', 2]``."""
    nbrs: list[set[int]] = [set() for _ in range(len(nodes))]
    for i, j in struts:
        nbrs[i].add(j)
        nbrs[j].add(i)
    dropped = np.zeros(len(nodes), dtype=bool)
    for v in range(len(nodes)):
        if len(nbrs[v]) != 2:
            continue
        a, b = nbrs[v]
        ua, ub = nodes[a] - nodes[v], nodes[b] - nodes[v]
        ua /= np.linalg.norm(ua)
        ub /= np.linalg.norm(ub)
        if np.linalg.norm(np.cross(ua, ub)) > _COLLINEAR_TOL or ua @ ub > 0 or b in nbrs[a]:
            continue
        nbrs[a].discard(v)
        nbrs[b].discard(v)
        nbrs[a].add(b)
        nbrs[b].add(a)
        nbrs[v].clear()
        dropped[v] = True
    keep = np.flatnonzero(~dropped)
    new = -np.ones(len(nodes), dtype=np.int64)
    new[keep] = np.arange(len(keep))
    pairs = [(new[i], new[j]) for i in range(len(nodes)) for j in nbrs[i] if i < j]
    return nodes[keep], np.asarray(sorted(pairs), dtype=np.int64).reshape(-1, 2)


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"tessellation n must be an integer >= 1, got {n!r}")
    return int(n)


def _check_positive(name: str, value) -> float:
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return value


def full_cell_struts(truss, n: int = 1, cell_size: float = 1.0,
                     merge: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and struts of the full cell or of an ``n x n x n`` tessellation.

    The struts of :func:`gnn_truss.plotting.full_cell_segments` (the cell ``[-1, 1]^3``) are
    translated to the ``n^3`` cells, scaled by ``cell_size / 2`` and moved to
    ``[0, n * cell_size]^3``; end points closer than ``1e-6`` half cell sides are merged (the
    nodes on faces shared by neighbouring cells), duplicate struts (those lying in shared
    faces) are kept once, and with ``merge`` a node where exactly two collinear struts meet is
    dropped and its struts joined (e.g. the simple cubic cell has 8 nodes and 12 struts, not the
    finite-element discretisation split at the mirror planes).

    Args:
        truss: a :class:`~gnn_truss.truss.Truss` or a cubic
            :class:`~gnn_truss.cell.PeriodicTruss` of side 2.
        n: cells along each axis (``>= 1``).
        cell_size: side of one cell in the output length unit (default 1.0).
        merge: join collinear strut pieces at nodes of degree two.

    Returns:
        ``nodes [P, 3]`` float64 positions (length unit of ``cell_size``, sorted
        lexicographically) and ``struts [S, 2]`` int64 node pairs ``i < j`` (sorted).
    """
    from .plotting import full_cell_segments

    n = _check_n(n)
    cell_size = _check_positive("cell_size", cell_size)
    seg = full_cell_segments(truss)  # [K, 2, 3] in [-1, 1]^3
    if len(seg) == 0:
        raise ValueError("the lattice has no struts")
    grid = np.array(np.meshgrid(*[np.arange(n)] * 3, indexing="ij")).reshape(3, -1).T
    pts = (seg[None] + 1.0 + 2.0 * grid[:, None, None, :]).reshape(-1, 3)  # [n^3 K 2, 3]
    nodes, idx = _merge_points(pts, _MERGE_TOL)
    struts = np.sort(idx.reshape(-1, 2), axis=1)
    struts = np.unique(struts[struts[:, 0] != struts[:, 1]], axis=0)
    if merge:
        nodes, struts = _drop_collinear_nodes(nodes, struts)
    return nodes * (cell_size / 2.0), struts


# --------------------------------------------------------------------------- JSON and CSV

def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("gnn_truss")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _prepare(truss, density: float, validate: bool):
    from .truss import Truss

    if not isinstance(truss, Truss):
        raise TypeError(f"expected a Truss, got {type(truss).__name__}")
    if not 0 < float(density) < 1:
        raise ValueError(f"relative density must lie in (0, 1), got {density}")
    if truss.num_edges == 0:
        raise ValueError("the lattice has no struts")
    if validate:
        truss.check_valid()
    return truss.radius(float(density))  # half-cell units (cell side 2)


def to_json(truss, density: float = 0.15, E: float = 1.0, nu: float = 0.3, n: int = 1,
            cell_size: float = 1.0, name: str | None = None, validate: bool = True) -> dict:
    """Plain-dict export of a lattice (JSON-serialisable).

    Args:
        truss: the :class:`~gnn_truss.truss.Truss`.
        density: relative density of the periodic lattice, in (0, 1); sets the strut radius.
        E, nu: Young's modulus and Poisson's ratio of the base material (recorded only; ``E``
            in any stress unit, default 1 = normalised as in ``SPEC.md``).
        n: ``n x n x n`` tessellation (``>= 1``).
        cell_size: side of one cell in the length unit of the file.
        name: optional label.
        validate: raise ``ValueError`` naming every violated rule of an invalid lattice.

    Returns:
        ``{"format", "version", "gnn_truss_version", "name", "cell_size", "tessellation"
        [3], "bounding_box" [2, 3], "density", "radius", "material" {"E", "nu"},
        "num_nodes", "num_struts", "total_length", "nodes" [P, 3], "struts" [S, 2],
        "octant" {lattice document of gnn_truss.io}}``; lengths in the unit of
        ``cell_size``, ``struts`` 0-based indices into ``nodes``.
    """
    from .io import LATTICE_FORMAT

    n = _check_n(n)
    cell_size = _check_positive("cell_size", cell_size)
    E = _check_positive("Young's modulus E", E)
    if not -1.0 < float(nu) < 0.5:
        raise ValueError(f"Poisson's ratio nu must lie in (-1, 0.5), got {nu}")
    r = _prepare(truss, density, validate) * cell_size / 2.0
    nodes, struts = full_cell_struts(truss, n=n, cell_size=cell_size)
    length = np.linalg.norm(nodes[struts[:, 1]] - nodes[struts[:, 0]], axis=1)
    return {
        "format": EXPORT_FORMAT, "version": 1, "gnn_truss_version": _package_version(),
        "name": name or "", "cell_size": cell_size, "tessellation": [n, n, n],
        "bounding_box": [[0.0, 0.0, 0.0], [n * cell_size] * 3],
        "density": float(density), "radius": float(r),
        "material": {"E": float(E), "nu": float(nu)},
        "num_nodes": len(nodes), "num_struts": len(struts), "total_length": float(length.sum()),
        "nodes": np.round(nodes, 12).tolist(), "struts": struts.tolist(),
        "octant": {"format": LATTICE_FORMAT, "version": 1, "edges": truss.edges.tolist(),
                   "offsets": truss.free_offsets.tolist()},
    }


def _atomic_write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, newline="")
    os.replace(tmp, path)
    return path


def write_json(truss, path, **kwargs) -> Path:
    """Write :func:`to_json` (``kwargs`` passed on) to ``path``; returns the path."""
    return _atomic_write_text(Path(path), json.dumps(to_json(truss, **kwargs), indent=1))


def truss_from_json(doc):
    """The octant :class:`~gnn_truss.truss.Truss` of an export document (a dict from
    :func:`to_json` or the path of a file from :func:`write_json`)."""
    from . import design_space as ds
    from .truss import Truss

    where = "document"
    if not isinstance(doc, dict):
        where = str(doc)
        try:
            doc = json.loads(Path(doc).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{where}: not a JSON file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT or "octant" not in doc:
        raise ValueError(f"{where}: not a {EXPORT_FORMAT} document with an 'octant' lattice")
    octant = doc["octant"]
    if not isinstance(octant, dict) or not {"edges", "offsets"} <= set(octant):
        raise ValueError(f"{where}: the 'octant' lattice needs 'edges' and 'offsets'")
    try:
        edges = np.asarray(octant["edges"], dtype=np.float64)
        offsets = np.asarray(octant["offsets"], dtype=np.float64)
        return Truss(ds.edges_to_adjacency(edges), offsets)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: malformed 'octant' lattice ({exc})") from None


def write_csv(truss, path, density: float = 0.15, n: int = 1, cell_size: float = 1.0,
              validate: bool = True) -> tuple[Path, Path]:
    """Write the nodes and struts as two spreadsheet-friendly CSV files.

    ``nodes.csv``: ``id,x,y,z``; ``struts.csv``: ``id,i,j,length,radius`` (``i``, ``j`` ids
    of ``nodes.csv``; lengths in the unit of ``cell_size``). If ``path`` ends in ``.csv`` the
    files are ``<stem>_nodes.csv`` and ``<stem>_struts.csv`` beside it, otherwise ``path`` is a
    folder (created) holding ``nodes.csv`` and ``struts.csv``.

    Returns:
        ``(nodes_path, struts_path)``.
    """
    n = _check_n(n)
    cell_size = _check_positive("cell_size", cell_size)
    r = _prepare(truss, density, validate) * cell_size / 2.0
    nodes, struts = full_cell_struts(truss, n=n, cell_size=cell_size)
    length = np.linalg.norm(nodes[struts[:, 1]] - nodes[struts[:, 0]], axis=1)
    path = Path(path)
    if path.suffix.lower() == ".csv":
        pn, ps = (path.with_name(f"{path.stem}_{k}.csv") for k in ("nodes", "struts"))
    else:
        pn, ps = path / "nodes.csv", path / "struts.csv"
    for target, header, rows in (
            (pn, ("id", "x", "y", "z"),
             ([k, *(f"{v:.12g}" for v in p)] for k, p in enumerate(nodes))),
            (ps, ("id", "i", "j", "length", "radius"),
             ([k, int(i), int(j), f"{L:.12g}", f"{r:.12g}"]
              for k, ((i, j), L) in enumerate(zip(struts, length))))):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)
        os.replace(tmp, target)
    return pn, ps


# --------------------------------------------------------------------------- meshes

def _cylinder_template(segments: int) -> np.ndarray:
    """``[4 m - 4, 3]`` faces of a closed cylinder with vertices ``0..m-1`` (bottom ring) and
    ``m..2m-1`` (top ring): ``2 m`` side triangles and a fan from the first ring vertex on
    each cap (no vertex at the node, so cylinders meeting at a node share no vertex); outward
    normals for rings counter-clockwise about the axis."""
    m = segments
    k = np.arange(m)
    k1 = (k + 1) % m
    c = np.arange(1, m - 1)
    return np.concatenate([
        np.stack([k, k1, m + k1], 1), np.stack([k, m + k1, m + k], 1),
        np.stack([np.zeros(m - 2, dtype=np.int64), c + 1, c], 1),
        np.stack([np.full(m - 2, m), m + c, m + c + 1], 1),
    ]).astype(np.int64)


def _cylinders(a: np.ndarray, b: np.ndarray, radius: float, segments: int) -> np.ndarray:
    """``[S, 2 m, 3]`` ring vertices of the closed cylinders from ``a [S, 3]`` to ``b [S, 3]``
    (on the circles of radius ``radius`` about the axis)."""
    u = b - a
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    helper = np.eye(3)[np.argmin(np.abs(u), axis=1)]
    e1 = np.cross(u, helper)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(u, e1)  # e1 x e2 = u: rings run counter-clockwise about u
    t = 2.0 * np.pi * np.arange(segments) / segments
    ring = radius * (np.cos(t)[None, :, None] * e1[:, None]
                     + np.sin(t)[None, :, None] * e2[:, None])  # [S, m, 3]
    return np.concatenate([a[:, None] + ring, b[:, None] + ring], axis=1)


def _midpoint(verts: list, mid: dict, i: int, j: int) -> int:
    """Index of the unit vector halfway between ``verts[i]`` and ``verts[j]`` (appended once
    per edge, remembered in ``mid``)."""
    key = (min(i, j), max(i, j))
    if key not in mid:
        p = verts[i] + verts[j]
        verts.append(p / np.linalg.norm(p))
        mid[key] = len(verts) - 1
    return mid[key]


@lru_cache(maxsize=8)
def _icosphere(subdiv: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Unit icosphere: vertices ``[V, 3]`` on the unit sphere, outward faces ``[F, 3]``
    (``F = 20 * 4**subdiv``) and its inradius (smallest distance of a face plane to the
    centre)."""
    phi = (1.0 + np.sqrt(5.0)) / 2.0
    v = []
    for s1 in (-1.0, 1.0):
        for s2 in (-1.0, 1.0):
            v += [(0.0, s1, s2 * phi), (s1, s2 * phi, 0.0), (s2 * phi, 0.0, s1)]
    v = np.asarray(v)
    d = np.linalg.norm(v[:, None] - v[None], axis=2)
    adj = np.isclose(d, 2.0)
    faces = [(i, j, k) for i in range(12) for j in range(i + 1, 12) for k in range(j + 1, 12)
             if adj[i, j] and adj[j, k] and adj[i, k]]
    verts = list(v / np.linalg.norm(v, axis=1, keepdims=True))
    for _ in range(subdiv):
        mid: dict[tuple[int, int], int] = {}
        new = []
        for i, j, k in faces:
            ij, jk, ki = (_midpoint(verts, mid, p, q) for p, q in ((i, j), (j, k), (k, i)))
            new += [(i, ij, ki), (j, jk, ij), (k, ki, jk), (ij, jk, ki)]
        faces = new
    verts = np.asarray(verts)
    faces = np.asarray(faces, dtype=np.int64)
    tri = verts[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    inward = np.einsum("fi,fi->f", normal, tri.mean(axis=1)) < 0
    faces[inward] = faces[inward][:, ::-1]
    normal[inward] *= -1
    inradius = float(np.min(np.einsum("fi,fi->f", normal, tri[:, 0])
                            / np.linalg.norm(normal, axis=1)))
    for arr in (verts, faces):
        arr.setflags(write=False)
    return verts, faces, inradius


def _inset(radius: float, node_scale: float) -> float:
    """How far a cylinder end sits inside its node sphere: ``r sqrt(s^2 - 1) / 2``, half the
    depth at which the end ring (radius ``r``) meets the ball of radius ``s r``."""
    return radius * float(np.sqrt(max(node_scale**2 - 1.0, 0.0))) / 2.0


def _primitives(nodes, struts, radius, segments, sphere_subdiv, node_scale):
    """Cylinder vertices ``[S, 2m, 3]`` + template faces, sphere vertices ``[P, V, 3]`` +
    template faces (see :func:`strut_mesh`)."""
    nodes = np.asarray(nodes, dtype=np.float64).reshape(-1, 3)
    struts = np.asarray(struts, dtype=np.int64).reshape(-1, 2)
    radius = _check_positive("radius", radius)
    if int(segments) != segments or segments < 3:
        raise ValueError(f"segments must be an integer >= 3, got {segments}")
    if int(sphere_subdiv) != sphere_subdiv or not 0 <= sphere_subdiv <= 5:
        raise ValueError(f"sphere_subdiv must be an integer in [0, 5], got {sphere_subdiv}")
    node_scale = _check_positive("node_scale", node_scale)
    if not np.all(np.isfinite(nodes)):
        raise ValueError("nodes contain NaN or inf")
    if len(struts) and (struts.min() < 0 or struts.max() >= len(nodes)):
        raise ValueError("strut node index out of range")
    a, b = nodes[struts[:, 0]], nodes[struts[:, 1]]
    length = np.linalg.norm(b - a, axis=1)
    real = length > 1e-12 * max(1.0, float(np.abs(nodes).max(initial=0)))
    inset = _inset(radius, node_scale)
    ok = real & (length > 2 * inset)  # shorter struts lie inside their two end spheres
    u = (b[ok] - a[ok]) / length[ok, None]
    cyl = _cylinders(a[ok] + inset * u, b[ok] - inset * u, radius, int(segments))
    sv, sf, inr = _icosphere(int(sphere_subdiv))
    used = np.unique(struts[real]) if real.any() else np.zeros(0, dtype=np.int64)
    sph = nodes[used][:, None] + sv[None] * (node_scale * radius / inr)
    return cyl, _cylinder_template(int(segments)), sph, sf


def _stack(blocks: np.ndarray, template: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    nb, nv = blocks.shape[:2]
    faces = (template[None] + nv * np.arange(nb)[:, None, None]).reshape(-1, 3)
    return blocks.reshape(-1, 3), faces


def strut_mesh(nodes, struts, radius: float, segments: int = 16, sphere_subdiv: int = 2,
               node_scale: float = 1.05) -> tuple[np.ndarray, np.ndarray]:
    """Triangle mesh of cylindrical struts with a sphere at every strut end (pure numpy).

    Each node at a strut end is an icosphere (``20 * 4**sphere_subdiv`` faces) enclosing the
    ball of radius ``s r`` (``s = node_scale``; its face planes touch that ball). Each strut
    is a closed prism with ``segments`` sides (vertices on the circle of radius ``r``) and two
    flat caps, running between points ``d = r sqrt(s^2 - 1) / 2`` inside the end spheres: for
    ``s > 1`` the end rings lie strictly inside the spheres and the caps of collinear struts
    meeting at a node do not touch, so a boolean union sees no coincident faces. Struts
    shorter than ``2 d`` lie inside their end spheres and get no cylinder. Every primitive is a
    closed, consistently outward-oriented solid; the primitives overlap (join them with
    :func:`export_stl`'s boolean union).

    Args:
        nodes: ``[P, 3]`` positions.
        struts: ``[S, 2]`` node indices (zero-length struts are skipped).
        radius: strut radius (unit of ``nodes``).
        segments: sides of each cylinder (``>= 3``).
        sphere_subdiv: icosphere subdivision level (0-5).
        node_scale: node sphere radius / strut radius.

    Returns:
        ``vertices [V, 3]`` float64 and ``faces [F, 3]`` int64 (counter-clockwise seen from
        outside); ``V = 2 S' segments + P' V_s``, ``F = S' (4 segments - 4) + 20 P' 4^subdiv``
        with ``S'`` the struts given a cylinder and ``P'`` the nodes at strut ends.
    """
    cyl, ct, sph, st = _primitives(nodes, struts, radius, segments, sphere_subdiv, node_scale)
    vc, fc = _stack(cyl, ct)
    vs, fs = _stack(sph, st)
    return np.concatenate([vc, vs]), np.concatenate([fc, fs + len(vc)])


def mesh_check(vertices, faces) -> dict:
    """Closedness of a triangle mesh.

    Vertices are identified by index (merge coincident vertices first for meshes read from
    STL). Returns ``{"edge_manifold": every undirected edge is shared by exactly two faces,
    "oriented": every directed edge occurs once (neighbouring faces agree), "watertight": both,
    "shells": connected components of faces through shared edges, "volume": signed volume
    (divergence theorem, positive for outward normals)}``.
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if len(f) == 0:
        return {"edge_manifold": False, "oriented": False, "watertight": False, "shells": 0,
                "volume": 0.0}
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    und, und_idx, counts = np.unique(np.sort(directed, axis=1), axis=0, return_inverse=True,
                                     return_counts=True)
    manifold = bool(np.all(counts == 2))
    oriented = len(np.unique(directed, axis=0)) == len(directed)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    face_of = np.tile(np.arange(len(f)), 3)
    edge_face = coo_matrix((np.ones(len(face_of)), (und_idx.reshape(-1), face_of)),
                           shape=(len(und), len(f))).tocsr()
    shells = connected_components(edge_face.T @ edge_face, directed=False)[0]
    tri = v[f]
    volume = float(np.einsum("fi,fi->f", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)
    return {"edge_manifold": manifold, "oriented": bool(oriented),
            "watertight": manifold and bool(oriented), "shells": int(shells), "volume": volume}


def _normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = vertices[faces]
    nrm = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(nrm, axis=1, keepdims=True)
    return np.divide(nrm, length, out=np.zeros_like(nrm), where=length > 0)


_STL_DTYPE = np.dtype([("normal", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])


def write_stl(path, vertices, faces, binary: bool = True, name: str = "gnn_truss") -> Path:
    """Write a triangle mesh as STL.

    Binary: 80-byte header, uint32 triangle count, then per triangle 12 little-endian float32
    (unit normal, three vertices) and a uint16 attribute (0). ASCII: ``solid NAME`` /
    ``facet normal`` / ``outer loop`` / three ``vertex`` lines per triangle. Normals are the
    right-hand-rule unit normals of ``faces`` (zero for degenerate triangles).

    Args:
        path: output file (parent folders are created; written atomically).
        vertices: ``[V, 3]`` positions; faces: ``[F, 3]`` vertex indices.
        binary: binary (default) or ASCII STL.
        name: solid name (ASCII) / header text (binary).
    """
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if not np.all(np.isfinite(v)):
        raise ValueError("STL vertices contain NaN or inf")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"STL faces refer to vertices outside 0..{len(v) - 1}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nrm = _normals(v, f)
    tmp = path.with_name(path.name + ".tmp")
    if binary:
        rec = np.zeros(len(f), dtype=_STL_DTYPE)
        rec["normal"] = nrm
        rec["v"] = v[f]
        header = f"binary STL {name}".encode("ascii", "replace")[:80].ljust(80, b" ")
        with open(tmp, "wb") as fh:
            fh.write(header)
            fh.write(np.uint32(len(f)).tobytes())
            fh.write(rec.tobytes())
    else:
        tri = v[f]
        with open(tmp, "w") as fh:
            fh.write(f"solid {name}\n")
            for nn, t in zip(nrm, tri):
                fh.write(f"  facet normal {nn[0]:.7e} {nn[1]:.7e} {nn[2]:.7e}\n    outer loop\n")
                fh.writelines(f"      vertex {p[0]:.9e} {p[1]:.9e} {p[2]:.9e}\n" for p in t)
                fh.write("    endloop\n  endfacet\n")
            fh.write(f"endsolid {name}\n")
    os.replace(tmp, path)
    return path


def read_stl(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a binary or ASCII STL: ``vertices [V, 3]`` (coincident corners merged exactly),
    ``faces [F, 3]`` and the stored ``normals [F, 3]``."""
    data = Path(path).read_bytes()
    count = int(np.frombuffer(data[80:84], "<u4")[0]) if len(data) >= 84 else -1
    if count >= 0 and len(data) == 84 + 50 * count:
        rec = np.frombuffer(data[84:], dtype=_STL_DTYPE, count=count)
        corners, normals = rec["v"].astype(np.float64), rec["normal"].astype(np.float64)
    else:
        try:
            text = data.decode("ascii", "strict").split()
        except UnicodeDecodeError:
            text = []  # binary, but its size does not match its triangle count: truncated
        if not text or text[0] != "solid":
            raise ValueError(f"{path}: not an STL file (or a truncated binary STL)")
        corners, normals = [], []
        try:
            for k, tok in enumerate(text):
                if tok == "vertex":
                    corners.append([float(x) for x in text[k + 1:k + 4]])
                elif tok == "normal":
                    normals.append([float(x) for x in text[k + 1:k + 4]])
            corners = np.asarray(corners, dtype=np.float64).reshape(-1, 3, 3)
            normals = np.asarray(normals, dtype=np.float64).reshape(-1, 3)
        except ValueError as exc:
            raise ValueError(f"{path}: malformed ASCII STL ({exc})") from None
    verts, inv = np.unique(corners.reshape(-1, 3), axis=0, return_inverse=True)
    return verts, inv.reshape(-1, 3), normals


# --------------------------------------------------------------------------- boolean union

def has_mesh_boolean() -> bool:
    """True if the optional mesh-boolean dependency ``manifold3d`` is importable."""
    try:
        import manifold3d  # noqa: F401
    except ImportError:
        return False
    return True


def _union(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Boolean union of closed oriented meshes with ``manifold3d`` (double precision)."""
    import manifold3d as m3d

    def manifold(v, f):
        if hasattr(m3d, "Mesh64"):
            mesh = m3d.Mesh64(vert_properties=np.ascontiguousarray(v, dtype=np.float64),
                              tri_verts=np.ascontiguousarray(f, dtype=np.uint64))
        else:  # pragma: no cover - manifold3d < 3
            mesh = m3d.Mesh(vert_properties=np.ascontiguousarray(v, dtype=np.float32),
                            tri_verts=np.ascontiguousarray(f, dtype=np.uint32))
        out = m3d.Manifold(mesh)
        if out.status() != m3d.Error.NoError:
            raise RuntimeError(f"mesh primitive rejected by manifold3d: {out.status()}")
        return out

    result = m3d.Manifold.batch_boolean([manifold(v, f) for v, f in parts], m3d.OpType.Add)
    mesh = result.to_mesh64() if hasattr(result, "to_mesh64") else result.to_mesh()
    return (np.asarray(mesh.vert_properties, dtype=np.float64)[:, :3],
            np.asarray(mesh.tri_verts, dtype=np.int64))


def export_stl(truss, path, density: float = 0.15, n: int = 1, cell_size: float = 1.0,
               union: bool = True, segments: int = 16, sphere_subdiv: int = 2,
               node_scale: float = 1.05, binary: bool = True, validate: bool = True) -> dict:
    """Write a manufacturable STL of the full cell or an ``n x n x n`` tessellation.

    Struts of :func:`full_cell_struts` become cylinders of the density radius (scaled by
    ``cell_size / 2``) and nodes spheres (:func:`strut_mesh`). With ``union`` and the optional
    dependency ``manifold3d`` installed the primitives are joined by a boolean union: the file
    is one watertight, edge-manifold, outward-oriented shell. Without it (or with
    ``union=False``) the file holds the overlapping closed primitives, each watertight by
    itself; the returned ``"unioned"`` says which, and a warning is logged.

    Args:
        truss: the :class:`~gnn_truss.truss.Truss`.
        path: output ``.stl`` file.
        density: relative density in (0, 1) setting the strut radius.
        n, cell_size: tessellation and cell side (length unit of the file, e.g. mm).
        union: boolean union when ``manifold3d`` is available.
        segments, sphere_subdiv, node_scale: mesh resolution (see :func:`strut_mesh`).
        binary: binary (default) or ASCII STL.
        validate: raise ``ValueError`` naming every violated rule of an invalid lattice.

    Returns:
        ``{"path", "triangles", "nodes", "struts", "radius", "unioned", "watertight",
        "shells", "volume"}`` (``volume`` of the union, or the sum of the primitive volumes
        when not unioned; length unit of ``cell_size``).
    """
    n = _check_n(n)
    cell_size = _check_positive("cell_size", cell_size)
    r = _prepare(truss, density, validate) * cell_size / 2.0
    nodes, struts = full_cell_struts(truss, n=n, cell_size=cell_size)
    cyl, ct, sph, st = _primitives(nodes, struts, r, segments, sphere_subdiv, node_scale)
    unioned = bool(union and has_mesh_boolean())
    if unioned:
        v, f = _union([(c, ct) for c in cyl] + [(s, st) for s in sph])
        check = mesh_check(v, f)
    else:
        if union:
            logger.warning("manifold3d is not installed: writing overlapping closed primitives "
                           "without a boolean union (pip install 'gnn_truss[mesh]')")
        vc, fc = _stack(cyl, ct)
        vs, fs = _stack(sph, st)
        v, f = np.concatenate([vc, vs]), np.concatenate([fc, fs + len(vc)])
        check = mesh_check(v, f)
        check["shells"] = len(cyl) + len(sph)
        check["watertight"] = False  # closed parts, but they intersect each other
    write_stl(path, v, f, binary=binary, name="gnn_truss")
    return {"path": Path(path), "triangles": len(f), "nodes": len(nodes), "struts": len(struts),
            "radius": float(r), "unioned": unioned, "watertight": bool(check["watertight"]),
            "shells": check["shells"], "volume": check["volume"]}


# --------------------------------------------------------------------------- CLI glue

def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") \
                from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
        return value
    return parse


def _float_where(ok, expected: str, bad: str):
    """argparse type: a float for which ``ok(value)`` holds."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{bad}, got {value}")
        return value
    return parse


_density = _float_where(lambda v: 0 < v < 1, "a number in (0, 1)",
                        "relative density must lie in (0, 1)")
_positive = _float_where(lambda v: bool(np.isfinite(v) and v > 0), "a positive number",
                         "must be a positive number")


#: One-line help and description for the ``export`` subcommand (for :mod:`gnn_truss.cli`).
EXPORT_HELP = "export a lattice as JSON, CSV or a manufacturable STL"
EXPORT_DESCRIPTION = (
    "Export the full cell of a lattice, or an N x N x N tessellation, as JSON (nodes, struts, "
    "radius, density, material, octant lattice), two CSV files (nodes, struts) or an STL of "
    "cylindrical struts with node spheres. The STL is one watertight solid when the optional "
    "dependency manifold3d is installed (pip install 'gnn_truss[mesh]'); otherwise it holds "
    "overlapping closed primitives. Lengths are in the unit of --cell-size (the cell side).")


def add_export_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the arguments of ``gnn-truss export`` to ``parser`` (a subparser); the caller sets
    ``func=export_main``. Returns ``parser``."""
    parser.add_argument("lattice", help="lattice JSON/NPZ file or an elementary lattice name "
                                        "(sc, sc_2x2x2, bcc, bcc_2x2x2, octet, octet_2x2x2)")
    parser.add_argument("--format", "-f", choices=FORMATS, default=None,
                        help="json, csv or stl (default: from the --out suffix, else stl)")
    parser.add_argument("--out", "-o", help="output file (csv: FILE.csv gives FILE_nodes.csv "
                                            "and FILE_struts.csv, another path is a folder; "
                                            "default: LABEL.FORMAT)")
    parser.add_argument("--n", type=_int_at_least(1), default=1,
                        help="N x N x N tessellation of the full cell (1)")
    parser.add_argument("--density", type=_density, default=0.15,
                        help="relative density in (0, 1), sets the strut radius (0.15)")
    parser.add_argument("--cell-size", type=_positive, default=1.0,
                        help="side of one cell in the length unit of the file, e.g. 10 for "
                             "10 mm (1)")
    parser.add_argument("--E", type=float, default=1.0, help="base Young's modulus (json; 1)")
    parser.add_argument("--nu", type=float, default=0.3, help="base Poisson's ratio (json; 0.3)")
    parser.add_argument("--segments", type=_int_at_least(3), default=16,
                        help="sides of each strut cylinder (stl; 16)")
    parser.add_argument("--sphere-subdiv", type=int, default=2, choices=range(6),
                        help="icosphere subdivisions of the node spheres (stl; 2)")
    parser.add_argument("--ascii", action="store_true", help="ASCII instead of binary STL")
    parser.add_argument("--no-union", action="store_true",
                        help="skip the boolean union even if manifold3d is installed (stl)")
    return parser


def export_main(args) -> int:
    """Run ``gnn-truss export`` for parsed ``args`` (see :func:`add_export_arguments`); prints
    what was written and returns 0. Bad input raises ``ValueError`` naming the problem
    (unknown format, ``n < 1``, density outside (0, 1), the violated rules of an invalid
    lattice)."""
    from .io import resolve_lattice

    fmt = args.format
    out = Path(args.out) if args.out else None
    if fmt is None:
        suffix = out.suffix.lower().lstrip(".") if out else ""
        fmt = suffix if suffix in FORMATS else "stl"
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    _check_n(args.n)
    if not 0 < args.density < 1:
        raise ValueError(f"relative density must lie in (0, 1), got {args.density}")
    truss, label = resolve_lattice(args.lattice)
    bad = truss.validate()
    if bad:
        from .truss import RULES
        raise ValueError(f"{label}: invalid lattice, cannot export: "
                         + "; ".join(f"{r} ({RULES[r]})" for r in bad))
    out = out or Path(f"{label}.{fmt}")
    common = {"density": args.density, "n": args.n, "cell_size": args.cell_size}
    where = f"{args.n}x{args.n}x{args.n}" if args.n > 1 else "full cell"
    if fmt == "json":
        path = write_json(truss, out, E=args.E, nu=args.nu, name=label, **common)
        doc = json.loads(path.read_text())
        print(f"{label} ({where}): {doc['num_nodes']} nodes, {doc['num_struts']} struts, radius "
              f"{doc['radius']:.6g} at rho = {args.density}; wrote {path}")
    elif fmt == "csv":
        pn, ps = write_csv(truss, out, **common)
        print(f"{label} ({where}): wrote {pn} and {ps}")
    else:
        rep = export_stl(truss, out, segments=args.segments, sphere_subdiv=args.sphere_subdiv,
                         union=not args.no_union, binary=not args.ascii, **common)
        state = ("one watertight solid (boolean union)" if rep["watertight"] else
                 "overlapping closed primitives, not unioned" + (
                     "" if args.no_union else " (install manifold3d for a watertight union: "
                                              "pip install 'gnn_truss[mesh]')"))
        print(f"{label} ({where}): {rep['struts']} struts, {rep['nodes']} nodes, radius "
              f"{rep['radius']:.6g}, {rep['triangles']} triangles, {state}; wrote {rep['path']}")
    return 0
