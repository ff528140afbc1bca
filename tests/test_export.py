"""Tests for :mod:`gnn_truss.export`.

Node and strut counts of the full cell and its tessellations are checked against hand counts
(cell side L, box [0, n L]^3); meshes are checked as solids (every edge shared by two faces,
consistent orientation, signed volume against the analytic prism / sphere volume); STL files
are read back by the small independent reader below. The boolean-union test needs the
optional dependency manifold3d and is skipped without it.
"""
import argparse
import csv
import json
import logging
import subprocess
import sys

import numpy as np
import pytest

from gnn_truss import design_space as ds
from gnn_truss import export as ex
from gnn_truss.generator import sample_lattice
from gnn_truss.io import load_lattice, save_lattice
from gnn_truss.truss import Truss

# ----------------------------------------------------------------------------- helpers


def random_lattice(seed: int = 6) -> Truss:
    """A seeded generator lattice (seed 6: superposed, two beam crossings, offsets)."""
    return sample_lattice(np.random.default_rng(seed))


def read_stl_independent(path):
    """Minimal STL reader: ``corners [F, 3, 3]``, ``normals [F, 3]``, ``binary``."""
    data = path.read_bytes()
    if not data.startswith(b"solid") or b"facet" not in data[:1000]:
        n = int.from_bytes(data[80:84], "little")
        assert len(data) == 84 + 50 * n
        rec = np.frombuffer(data[84:], dtype=np.dtype([("n", "<f4", 3), ("v", "<f4", 9),
                                                        ("a", "<u2")]))
        return rec["v"].reshape(-1, 3, 3).astype(float), rec["n"].astype(float), True
    lines = [ln.split() for ln in data.decode().splitlines()]
    assert lines[0][0] == "solid" and lines[-1][0] == "endsolid"
    normals = [list(map(float, ln[2:5])) for ln in lines if ln[:2] == ["facet", "normal"]]
    corners = [list(map(float, ln[1:4])) for ln in lines if ln[:1] == ["vertex"]]
    return np.reshape(corners, (-1, 3, 3)), np.asarray(normals), False


def weld(corners):
    """Merge exactly coincident corners: ``[F, 3, 3] -> vertices, faces``."""
    v, inv = np.unique(corners.reshape(-1, 3), axis=0, return_inverse=True)
    return v, inv.reshape(-1, 3)


def shell_labels(f):
    """Shell of each face: faces sharing an edge belong to one shell. ``[F, 3] -> [F]``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    _, edge = np.unique(np.sort(directed, axis=1), axis=0, return_inverse=True)
    face = np.tile(np.arange(len(f)), 3)
    g = coo_matrix((np.ones(face.size), (face, edge.reshape(-1))),
                   shape=(len(f), edge.max() + 1)).tocsr()
    return connected_components(g @ g.T, directed=False)[1]


def shell_faces(f):
    """Face index arrays of the edge-connected shells of a mesh."""
    lab = shell_labels(f)
    return [np.flatnonzero(lab == k) for k in range(lab.max() + 1)]


def solid_check(v, f):
    """(edge-manifold, consistently oriented, number of shells, signed volume)."""
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    _, cnt = np.unique(np.sort(directed, axis=1), axis=0, return_counts=True)
    manifold = bool(np.all(cnt == 2))
    oriented = len(np.unique(directed, axis=0)) == len(directed)
    t = v[f]
    vol = np.einsum("fi,fi->f", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() / 6.0
    return manifold, oriented, int(shell_labels(f).max() + 1), vol


def boundary_weight(nodes, struts, box, tol=1e-9):
    """Share of each strut owned by the box: 1/2 in a boundary face, 1/4 in an edge."""
    a, b = nodes[struts[:, 0]], nodes[struts[:, 1]]
    on = [(np.abs(a[:, d] - s) < tol) & (np.abs(b[:, d] - s) < tol)
          for d in range(3) for s in (0.0, box)]
    return 0.5 ** np.sum(on, axis=0)


# ----------------------------------------------------------------------------- geometry

# (lattice, n, nodes, struts) by hand: sc = cube edges; bcc = centre + 8 half diagonals;
# octet = 8 corners + 6 face centres, 4 struts per face + 12 between face centres.
HAND_COUNTS = [
    ("sc", 1, 8, 12), ("sc", 2, 27, 3 * 2 * 3 * 3), ("sc", 3, 64, 3 * 3 * 4 * 4),
    ("sc_2x2x2", 1, 27, 54),
    ("bcc", 1, 9, 8), ("bcc", 2, 8 + 27, 64), ("bcc_2x2x2", 1, 35, 64),
    ("octet", 1, 14, 6 * 4 + 12), ("octet", 2, 27 + 36, 36 * 4 + 8 * 12),
    ("octet_2x2x2", 1, 63, 240),
]


@pytest.mark.parametrize("name,n,num_nodes,num_struts", HAND_COUNTS)
def test_full_cell_counts(name, n, num_nodes, num_struts):
    nodes, struts = ex.full_cell_struts(Truss.elementary(name), n=n)
    assert nodes.shape == (num_nodes, 3) and struts.shape == (num_struts, 2)


def test_sc_full_cell_is_the_cube_edges():
    nodes, struts = ex.full_cell_struts(Truss.elementary("sc"), cell_size=3.0)
    assert np.allclose(np.unique(nodes), [0.0, 3.0])
    length = np.linalg.norm(nodes[struts[:, 1]] - nodes[struts[:, 0]], axis=1)
    assert np.allclose(length, 3.0)
    # without merging, the struts stay split at the mirror planes and the octant edge nodes
    n2, s2 = ex.full_cell_struts(Truss.elementary("sc"), merge=False)
    assert (len(n2), len(s2)) == (8 + 12 * 3, 12 * 4)


@pytest.mark.parametrize("name", ["sc", "bcc", "octet"])
def test_tessellation_equals_finer_elementary_lattice(name):
    """n = 2 cells of side 1/2 are the 2x2x2 elementary lattice in a cell of side 1."""
    a_nodes, a_struts = ex.full_cell_struts(Truss.elementary(name), n=2, cell_size=0.5)
    b_nodes, b_struts = ex.full_cell_struts(Truss.elementary(name + "_2x2x2"))
    assert np.allclose(a_nodes, b_nodes, atol=1e-12)
    assert np.array_equal(a_struts, b_struts)


@pytest.mark.parametrize("lattice", ["sc", "bcc_2x2x2", "octet", "random"])
@pytest.mark.parametrize("n", [1, 2])
def test_owned_length_is_periodic_length(lattice, n):
    """Struts weighted by the share the box owns (1/2 in a face, 1/4 in an edge) add up to
    n^3 times the physical strut length per cell (SPEC.md section 3), scaled by L / 2."""
    t = random_lattice() if lattice == "random" else Truss.elementary(lattice)
    L = 2.5
    nodes, struts = ex.full_cell_struts(t, n=n, cell_size=L)
    assert nodes.min() >= -1e-12 and nodes.max() <= n * L + 1e-12
    w = boundary_weight(nodes, struts, n * L)
    length = np.linalg.norm(nodes[struts[:, 1]] - nodes[struts[:, 0]], axis=1)
    assert np.isclose(np.sum(w * length), n**3 * t.total_length() * L / 2, rtol=1e-10)
    # a graph: i < j, no repeated strut, no two nodes closer than the merge tolerance
    assert np.all(struts[:, 0] < struts[:, 1])
    assert len(np.unique(struts, axis=0)) == len(struts)
    d = np.linalg.norm(nodes[:, None] - nodes[None], axis=2) + np.eye(len(nodes))
    assert d.min() > 1e-6


def test_bad_arguments():
    t = Truss.elementary("sc")
    for n in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="n must be"):
            ex.full_cell_struts(t, n=n)
    with pytest.raises(ValueError, match="cell_size"):
        ex.full_cell_struts(t, cell_size=-1.0)
    with pytest.raises(ValueError, match="density"):
        ex.to_json(t, density=1.2)
    with pytest.raises(ValueError, match="no struts"):
        ex.to_json(Truss(np.zeros((27, 27))))
    with pytest.raises(ValueError, match="no_dangling"):
        ex.to_json(Truss.from_edges([(0, 13)]))
    with pytest.raises(ValueError, match="segments"):
        ex.strut_mesh(np.eye(3), [[0, 1]], 0.1, segments=2)


# ----------------------------------------------------------------------------- JSON and CSV

@pytest.mark.parametrize("lattice", ["octet", "random"])
def test_json_round_trip(lattice, tmp_path):
    t = random_lattice() if lattice == "random" else Truss.elementary(lattice)
    doc = ex.to_json(t, density=0.1, E=2e9, nu=0.25, n=2, cell_size=10.0, name="x")
    doc = json.loads(json.dumps(doc))  # serialisable, survives a text round trip
    assert doc["format"] == ex.EXPORT_FORMAT and doc["tessellation"] == [2, 2, 2]
    assert doc["material"] == {"E": 2e9, "nu": 0.25} and doc["density"] == 0.1
    assert np.isclose(doc["radius"], t.radius(0.1) * 10.0 / 2)
    nodes, struts = ex.full_cell_struts(t, n=2, cell_size=10.0)
    assert np.allclose(doc["nodes"], nodes) and doc["struts"] == struts.tolist()
    assert doc["num_nodes"] == len(nodes) and doc["num_struts"] == len(struts)
    assert doc["bounding_box"] == [[0.0, 0.0, 0.0], [20.0, 20.0, 20.0]]
    assert ex.truss_from_json(doc).canonical_hash() == t.canonical_hash()
    path = ex.write_json(t, tmp_path / "out" / "lattice.json", n=1)
    assert ex.truss_from_json(path).canonical_hash() == t.canonical_hash()
    # the octant part is a lattice file of gnn_truss.io
    (tmp_path / "octant.json").write_text(json.dumps(doc["octant"]))
    assert load_lattice(tmp_path / "octant.json") == t


def test_truss_from_json_rejects_other_documents():
    with pytest.raises(ValueError, match="gnn_truss.export"):
        ex.truss_from_json({"format": "something else"})


@pytest.mark.parametrize("target", ["cell.csv", "folder"])
def test_csv_columns(target, tmp_path):
    t = Truss.elementary("bcc")
    pn, ps = ex.write_csv(t, tmp_path / target, density=0.2, n=2, cell_size=4.0)
    expected = ((tmp_path / "cell_nodes.csv", tmp_path / "cell_struts.csv")
                if target.endswith(".csv") else
                (tmp_path / "folder" / "nodes.csv", tmp_path / "folder" / "struts.csv"))
    assert (pn, ps) == expected
    with open(pn, newline="") as fh:
        nodes = list(csv.DictReader(fh))
    with open(ps, newline="") as fh:
        struts = list(csv.DictReader(fh))
    assert list(nodes[0]) == ["id", "x", "y", "z"]
    assert list(struts[0]) == ["id", "i", "j", "length", "radius"]
    assert (len(nodes), len(struts)) == (35, 64)
    assert [int(r["id"]) for r in nodes] == list(range(35))
    xyz = np.array([[float(r[k]) for k in "xyz"] for r in nodes])
    for r in struts:
        i, j = int(r["i"]), int(r["j"])
        assert np.isclose(float(r["length"]), np.linalg.norm(xyz[j] - xyz[i]))
        assert np.isclose(float(r["radius"]), t.radius(0.2) * 2.0)
    # bcc half diagonal of a cell of side 4
    assert np.isclose(float(struts[0]["length"]), 2 * np.sqrt(3))


# ----------------------------------------------------------------------------- meshes

def test_each_primitive_is_a_closed_outward_solid():
    """One cylinder per strut and one sphere per end, each closed and outward oriented, with
    the volume of the inscribed prism (exact) and of the faceted sphere (within its facets)."""
    rng = np.random.default_rng(0)
    nodes = np.concatenate([[[0, 0, 0], [0, 0, 2.0], [1.5, 0, 0], [0, -1, 0]],
                            rng.normal(size=(4, 3))])
    struts = np.array([[0, 1], [0, 2], [3, 0], [4, 5], [6, 7]])  # axis-aligned, both senses
    r, m, sub, scale = 0.1, 12, 2, 1.05
    v, f = ex.strut_mesh(nodes, struts, r, segments=m, sphere_subdiv=sub, node_scale=scale)
    parts = shell_faces(f)
    assert len(parts) == len(struts) + len(nodes)
    lengths = sorted(np.linalg.norm(nodes[struts[:, 1]] - nodes[struts[:, 0]], axis=1))
    cyl_vol, sph_vol = [], []
    for faces in parts:
        manifold, oriented, shells, vol = solid_check(v, f[faces])
        assert manifold and oriented and shells == 1 and vol > 0
        (cyl_vol if len(faces) == 4 * m - 4 else sph_vol).append(vol)
    prism = 0.5 * m * np.sin(2 * np.pi / m) * r**2
    inset = r * np.sqrt(scale**2 - 1) / 2  # cylinder ends sit this deep inside the spheres
    assert np.allclose(sorted(cyl_vol), prism * (np.array(lengths) - 2 * inset), rtol=1e-12)
    ball = 4 / 3 * np.pi * (scale * r) ** 3  # the faceted sphere encloses this ball
    assert len(sph_vol) == len(nodes)
    assert np.all((np.array(sph_vol) > ball) & (np.array(sph_vol) < 1.05 * ball))


def test_short_strut_has_no_cylinder():
    """A strut shorter than twice the inset lies inside its two end spheres."""
    r, scale = 0.1, 1.2
    inset = r * np.sqrt(scale**2 - 1) / 2
    nodes = np.array([[0, 0, 0], [0, 0, 1.9 * inset], [0, 0, 1.0]])
    _, f = ex.strut_mesh(nodes, [[0, 1], [1, 2]], r, segments=8, sphere_subdiv=0,
                         node_scale=scale)
    assert sorted(len(c) for c in shell_faces(f)) == [20, 20, 20, 4 * 8 - 4]
    # the skipped strut is covered: its surface points are within s r of the nearer node
    assert np.hypot(1.9 * inset / 2, r) < scale * r


def test_cylinder_volume_converges_to_analytic():
    """Relative error of the inscribed prism ~ (2 pi / m)^2 / 6: slope -2 in log-log."""
    ms = np.array([8, 16, 32, 64])
    err = []
    for m in ms:
        v, f = ex.strut_mesh(np.array([[0, 0, 0], [0.3, 0.4, 1.2]]), [[0, 1]], 0.05,
                             segments=m, node_scale=1.0)
        cyl = next(c for c in shell_faces(f) if len(c) == 4 * m - 4)
        err.append(1 - solid_check(v, f[cyl])[3] / (np.pi * 0.05**2 * 1.3))  # node_scale=1
    slope = np.polyfit(np.log(ms), np.log(err), 1)[0]
    assert abs(slope + 2) < 0.05 and err[-1] < 2e-3


def test_mesh_check():
    cube_v = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    faces = np.where(solid_check(cube_v, faces)[3] < 0, faces[:, ::-1].T, faces.T).T
    rep = ex.mesh_check(cube_v, faces)
    assert rep["watertight"] and rep["shells"] == 1 and np.isclose(rep["volume"], 1.0)
    assert not ex.mesh_check(cube_v, faces[1:])["edge_manifold"]
    flipped = faces.copy()
    flipped[0] = flipped[0, ::-1]
    assert not ex.mesh_check(cube_v, flipped)["oriented"]


@pytest.mark.parametrize("binary", [True, False])
def test_stl_readable(binary, tmp_path):
    t = Truss.elementary("octet")
    nodes, struts = ex.full_cell_struts(t, cell_size=10.0)
    v, f = ex.strut_mesh(nodes, struts, 0.5, segments=8, sphere_subdiv=1)
    path = ex.write_stl(tmp_path / "a.stl", v, f, binary=binary)
    corners, normals, was_binary = read_stl_independent(path)
    assert was_binary == binary and len(corners) == len(f) == 36 * 28 + 14 * 80
    assert np.allclose(corners, v[f], atol=1e-5 * 10)
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
    rh = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    assert np.all(np.einsum("fi,fi->f", rh, normals) > 0)
    # the package reader agrees
    v2, f2, n2 = ex.read_stl(path)
    assert np.allclose(v2[f2], corners) and np.allclose(n2, normals)


def test_export_without_boolean_writes_closed_primitives(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(ex, "has_mesh_boolean", lambda: False)
    with caplog.at_level(logging.WARNING, logger="gnn_truss.export"):
        rep = ex.export_stl(Truss.elementary("bcc"), tmp_path / "bcc.stl", segments=8,
                            sphere_subdiv=1)
    assert "manifold3d is not installed" in caplog.text
    assert not rep["unioned"] and not rep["watertight"] and rep["shells"] == 8 + 9
    corners, _, _ = read_stl_independent(tmp_path / "bcc.stl")
    v, f = weld(corners)
    assert len(shell_faces(f)) == 17
    for faces in shell_faces(f):
        manifold, oriented, shells, vol = solid_check(v, f[faces])
        assert manifold and oriented and shells == 1 and vol > 0


UNION_CASES = [("sc", 1), ("bcc", 1), ("octet", 1), ("octet", 2), ("random", 1)]


@pytest.mark.skipif(not ex.has_mesh_boolean(),
                    reason="optional dependency manifold3d not installed (gnn_truss[mesh])")
@pytest.mark.parametrize("lattice,n", UNION_CASES)
def test_union_is_watertight(lattice, n, tmp_path):
    t = random_lattice() if lattice == "random" else Truss.elementary(lattice)
    L, seg, sub = 10.0, 12, 1
    rep = ex.export_stl(t, tmp_path / "u.stl", n=n, cell_size=L, segments=seg, sphere_subdiv=sub)
    assert rep["unioned"] and rep["watertight"] and rep["shells"] == 1
    corners, _, _ = read_stl_independent(tmp_path / "u.stl")
    v, f = weld(corners)
    manifold, oriented, shells, vol = solid_check(v, f)
    assert manifold and oriented and shells == 1
    nodes, struts = ex.full_cell_struts(t, n=n, cell_size=L)
    pv, pf = ex.strut_mesh(nodes, struts, rep["radius"], segments=seg, sphere_subdiv=sub)
    parts = [solid_check(pv, pf[c])[3] for c in shell_faces(pf)]
    assert 0 < max(parts) < vol < sum(parts)
    assert np.isclose(vol, rep["volume"], rtol=1e-4)
    # the solid stays within one node sphere of the box
    reach = 1.1 * rep["radius"] * 1.05
    assert corners.min() > -reach and corners.max() < n * L + reach


# ----------------------------------------------------------------------------- CLI glue

def parse(argv):
    p = argparse.ArgumentParser(prog="gnn-truss export")
    ex.add_export_arguments(p)
    return p.parse_args(argv)


@pytest.mark.parametrize("fmt", ex.FORMATS)
def test_export_main(fmt, tmp_path, capsys):
    out = tmp_path / f"sc.{fmt}"
    args = parse(["sc", "--format", fmt, "--out", str(out), "--n", "2", "--cell-size", "10",
                  "--segments", "8", "--sphere-subdiv", "0"])
    assert ex.export_main(args) == 0
    text = capsys.readouterr().out
    assert "sc (2x2x2)" in text and "wrote" in text
    if fmt == "json":
        assert json.loads(out.read_text())["num_struts"] == 54
    elif fmt == "csv":
        assert (tmp_path / "sc_nodes.csv").is_file() and (tmp_path / "sc_struts.csv").is_file()
    else:
        assert out.stat().st_size > 84
        assert ("one watertight solid" in text) == ex.has_mesh_boolean()


def test_export_main_infers_format_from_suffix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert ex.export_main(parse(["bcc", "--out", "b.json"])) == 0
    assert json.loads((tmp_path / "b.json").read_text())["num_struts"] == 8


@pytest.mark.parametrize("argv,msg", [
    (["sc", "--format", "obj"], "invalid choice"),
    (["sc", "--n", "0"], "must be an integer >= 1"),
    (["sc", "--density", "1.5"], "relative density must lie in"),
    (["sc", "--cell-size", "-2"], "must be a positive number"),
    (["sc", "--segments", "2"], "must be an integer >= 3"),
    (["sc", "--sphere-subdiv", "9"], "invalid choice"),
])
def test_export_arguments_rejected(argv, msg, capsys):
    with pytest.raises(SystemExit) as exc:
        parse(argv)
    assert exc.value.code == 2 and msg in capsys.readouterr().err


def test_export_main_invalid_lattice(tmp_path):
    path = save_lattice(Truss.from_edges([(0, 13)]), tmp_path / "bad.json")
    with pytest.raises(ValueError, match="invalid lattice.*no_dangling"):
        ex.export_main(parse([str(path), "--out", str(tmp_path / "bad.stl")]))
    assert not (tmp_path / "bad.stl").exists()
    with pytest.raises(ValueError, match="neither an elementary lattice"):
        ex.export_main(parse(["nonexistent_lattice"]))


def test_import_has_no_side_effects():
    code = ("import sys, gnn_truss.export; "
            "print(any(m in sys.modules for m in ('manifold3d', 'matplotlib', 'scipy.spatial')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_design_space_names_in_help():
    p = argparse.ArgumentParser()
    ex.add_export_arguments(p)
    assert all(name in p.format_help() for name in ds.ELEMENTARY_LATTICES)
