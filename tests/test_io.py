"""Lattice files: round trips and clear errors on bad files."""
import json

import numpy as np
import pytest

from gnn_truss import design_space as ds
from gnn_truss.io import load_lattice, resolve_lattice, save_lattice
from gnn_truss.truss import Truss


def _random_truss(seed=0):
    rng = np.random.default_rng(seed)
    t = Truss.elementary("octet")
    return t.with_offsets(ds.unpack_offsets(rng.uniform(-0.5, 0.5, 27)) * t.used[:, None])


def test_json_round_trip_exact(tmp_path):
    t = _random_truss()
    p = save_lattice(t, tmp_path / "sub" / "a.json", name="a", meta={"seed": 0})
    assert load_lattice(p) == t
    doc = json.loads(p.read_text())
    assert doc["name"] == "a" and len(doc["offsets"]) == 27
    assert not list(tmp_path.glob("sub/*.tmp"))  # atomic write leaves no temp file


def test_npz_round_trip(tmp_path):
    t = _random_truss(1)
    np.savez(tmp_path / "a.npz", adjacency=t.adjacency, offsets=t.offsets)
    assert load_lattice(tmp_path / "a.npz") == t


def test_resolve_name_and_file(tmp_path):
    t, label = resolve_lattice("bcc")
    assert label == "bcc" and t == Truss.elementary("bcc")
    save_lattice(t, tmp_path / "x.json")
    t2, label2 = resolve_lattice(str(tmp_path / "x.json"))
    assert t2 == t and label2 == "x"
    with pytest.raises(ValueError, match="neither an elementary lattice"):
        resolve_lattice("no_such_lattice")


@pytest.mark.parametrize("content, match", [
    ("{not json", "not a valid lattice JSON"),
    ('{"edges": [[0, 13]]}', "not a gnn_truss lattice file"),
    ('{"format": "gnn_truss.lattice", "edges": [[0, 13]], "offset": []}', "unknown keys"),
    ('{"format": "gnn_truss.lattice"}', "missing 'edges'"),
    ('{"format": "gnn_truss.lattice", "edges": [[0, 99]]}', "outside 0..26"),
    ('{"format": "gnn_truss.lattice", "edges": [[0, 13]], "offsets": [0.1]}', "shape"),
    ('{"format": "gnn_truss.lattice", "edges": [["a", 1]]}', "malformed"),
])
def test_bad_json_files(tmp_path, content, match):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(ValueError, match=match):
        load_lattice(p)


def test_missing_and_corrupt_npz(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_lattice(tmp_path / "nope.json")
    p = tmp_path / "c.npz"
    p.write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(ValueError, match="not a readable npz"):
        load_lattice(p)
    np.savez(tmp_path / "d.npz", offsets=np.zeros((27, 3)))
    with pytest.raises(ValueError, match="adjacency"):
        load_lattice(tmp_path / "d.npz")
