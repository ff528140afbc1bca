"""Hardening sweep (issue #8): bad input at every public entry point gives a clear error
naming the problem (no silent wrong number, no traceback from deep inside numpy or torch), and
interrupted long jobs resume without losing data.

Cases already covered elsewhere are not repeated here (lattice JSON basics in test_io.py, bad
adjacency/offsets in test_truss.py, corrupt shards and resume in test_corpus.py, stiffness
checks in test_properties.py, objectives in test_design.py / test_objectives.py, unknown config
keys and resume with another config in test_training.py, export arguments in test_export.py).
"""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import yaml

from gnn_truss import design_space as ds
from gnn_truss.cli import main
from gnn_truss.corpus import (ADJ_BYTES, MANIFEST, Corpus, build_corpus, load_corpus,
                              read_shard, save_compact, write_shard)
from gnn_truss.dataset import TrussDataset
from gnn_truss.evaluation import evaluate_checkpoint
from gnn_truss.exploration import load_model
from gnn_truss.export import read_stl, to_json, truss_from_json, write_json, write_stl
from gnn_truss.fe import homogenize, homogenize_batch
from gnn_truss.fe.homogenization import Status
from gnn_truss.fe.nonlinear import compress, compression_model
from gnn_truss.io import load_lattice
from gnn_truss.nn import build_model
from gnn_truss.objectives import load_target, parse_objective
from gnn_truss.properties import (all_properties, directional_youngs_modulus, elastic_surface,
                                  stiffness_from_vector, vector_from_stiffness)
from gnn_truss.published import export_published, import_published
from gnn_truss.statistics import corpus_statistics
from gnn_truss.training import load_checkpoint, train, validate_config
from gnn_truss.truss import Truss

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "datasets" / "default" / "raw" / "corpus.npz"
TINY = {"encoder": "gnn", "topology": 2, "shared": 4, "geometry": 2, "hidden": 8, "layers": 1,
        "readout": 16, "decoder_hidden": [16], "offset_hidden": [16], "predictor_hidden": [16]}
CUBIC = stiffness_from_vector([0.05, 0.02, 0.02, 0.05, 0.02, 0.05, 0.01, 0.01, 0.01])


# ----------------------------------------------------------------------------- helpers
def assert_cli_error(capsys, argv, fragment, code=2):
    """``gnn-truss ARGV`` exits with ``code`` and ends stderr with one ``error: ...`` line
    holding ``fragment``, without a traceback."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == code, err
    assert "Traceback" not in err
    assert lines and lines[-1].startswith("error: "), err
    assert fragment in lines[-1], err
    return lines[-1]


def lattice_doc(**over):
    doc = {"format": "gnn_truss.lattice", "version": 1, "edges": [[0, 13], [13, 26]],
           "offsets": [0.0] * ds.NUM_FREE_DOFS}
    doc.update(over)
    return doc


def write_doc(path, doc) -> Path:
    path.write_text(json.dumps(doc))  # json writes NaN / Infinity literals, as other tools do
    return path


def empty_corpus() -> Corpus:
    return Corpus(np.zeros((0, ADJ_BYTES), np.uint8), np.zeros((0, 27), np.float32),
                  np.zeros((0, 9)), None, {})


def shard_rows(n, seed=0) -> dict:
    c = load_corpus(SHIPPED, limit=40)
    idx = np.random.default_rng(seed).choice(len(c), n, replace=False)
    return {"adj": c.adj[idx], "offset": c.offset[idx], "stiffness": c.stiffness[idx]}


@pytest.fixture(scope="module")
def small_corpus():
    return load_corpus(SHIPPED, limit=20)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A valid checkpoint of an untrained tiny model (data root pointing nowhere useful)."""
    d = tmp_path_factory.mktemp("ck")
    cfg = validate_config({"data": {"root": str(d / "data")}, "model": dict(TINY),
                           "out": str(d)})
    torch.manual_seed(0)
    model = build_model(cfg["model"])
    torch.save({"model": model.state_dict(), "config": cfg, "epoch": 0,
                "normalizer": {"scale": 1e-4, "mean": [0.0] * 9, "std": [1.0] * 9},
                "fingerprint": "0" * 40}, d / "tiny.pt")
    return d / "tiny.pt"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """Dataset root holding the first 60 lattices of the shipped corpus."""
    root = tmp_path_factory.mktemp("data")
    save_compact(load_corpus(SHIPPED, limit=60), root / "raw" / "corpus.npz")
    return root


def tiny_cfg(root, out, epochs=1) -> dict:
    return {"data": {"root": str(root), "limit": 60}, "model": dict(TINY),
            "train": {"epochs": epochs, "batch_size": 16, "device": "cpu"}, "out": str(out)}


def metric_epochs(out) -> list:
    lines = (Path(out) / "metrics.csv").read_text().splitlines()[1:]
    return [int(line.split(",")[0]) for line in lines]


# ----------------------------------------------------------------------------- lattice files
@pytest.mark.parametrize("over, match", [
    ({"offsets": [float("nan")] + [0.0] * 26}, "NaN or inf"),
    ({"offsets": [0.0] * 26 + [float("inf")]}, "NaN or inf"),
    ({"edges": [[0.5, 13]]}, "integer node indices"),       # was truncated to node 0
    ({"edges": [[0, 13.0001]]}, "integer node indices"),
    ({"edges": [[0, 13, 26]]}, r"shape \[E, 2\]"),
    ({"edges": [0, 13]}, r"shape \[E, 2\]"),                   # a flat pair
    ({"edges": [[0, 13], [26]]}, "malformed"),                 # ragged
    ({"edges": [[0, 13]], "offsets": {"x": 1}}, "malformed"),
    ({"version": 2}, "unsupported lattice file version 2"),
])
def test_bad_lattice_json(tmp_path, over, match):
    p = write_doc(tmp_path / "bad.json", lattice_doc(**over))
    with pytest.raises(ValueError, match=match) as err:
        load_lattice(p)
    assert str(p) in str(err.value)  # the message names the file


def test_lattice_json_not_an_object(tmp_path):
    p = write_doc(tmp_path / "list.json", [[0, 13]])
    with pytest.raises(ValueError, match="not a gnn_truss lattice file"):
        load_lattice(p)


@pytest.mark.parametrize("arrays, match", [
    ({"adjacency": np.triu(np.ones((27, 27)), 1)}, "symmetric"),
    ({"adjacency": np.zeros((26, 26))}, r"shape \(27, 27\)"),
    ({"adjacency": np.zeros((27, 27)), "offsets": np.full((27, 3), np.nan)}, "NaN or inf"),
    ({"adjacency": np.zeros((27, 27)), "offsets": np.zeros((27, 2))}, "offsets must have"),
    ({"adjacency": np.array([{"a": 1}], dtype=object)}, "not a readable npz"),  # pickled
])
def test_bad_lattice_npz(tmp_path, arrays, match):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(ValueError, match=match) as err:
        load_lattice(p)
    assert str(p) in str(err.value)


def test_npz_lattice_that_is_a_single_array(tmp_path):
    p = tmp_path / "single.npz"
    with open(p, "wb") as fh:
        np.save(fh, np.zeros((27, 27)))
    with pytest.raises(ValueError, match="not a readable npz"):
        load_lattice(p)


@pytest.mark.parametrize("edges, match", [
    ([[0.5, 13]], "integer node indices"),
    ([[0, np.nan]], "integer node indices"),
    ([0, 13], r"shape \[E, 2\]"),
    ([[0, 13, 26]], r"shape \[E, 2\]"),
    ([[0, 13], [26]], r"\[E, 2\] array"),
    ([["a", "b"]], "integer node indices"),
])
def test_edges_to_adjacency_rejects_malformed_edge_lists(edges, match):
    with pytest.raises(ValueError, match=match):
        ds.edges_to_adjacency(edges)


@pytest.mark.parametrize("func, arg, match", [
    (ds.adjacency_to_triu, np.zeros((26, 26)), r"\[\.\.\., 27, 27\]"),
    (ds.triu_to_adjacency, np.zeros(350), r"\[\.\.\., 351\]"),
    (ds.unpack_offsets, np.zeros(26), r"\[\.\.\., 27\]"),
    (ds.pack_offsets, np.zeros((27, 2)), r"\[\.\.\., 27, 3\]"),
])
def test_design_space_conversions_check_shapes(func, arg, match):
    with pytest.raises(ValueError, match=match):
        func(arg)


@pytest.mark.parametrize("mutate, match", [
    (lambda p: p.write_text("{not json"), "not a JSON file"),
    (lambda p: p.write_text(json.dumps({"format": "gnn_truss.export", "octant": {"edges": []}})),
     "needs 'edges' and 'offsets'"),
    (lambda p: p.write_text(json.dumps({"format": "gnn_truss.export", "octant": {
        "edges": [[0.5, 13]], "offsets": [0.0] * 27}})), "integer node indices"),
    (lambda p: p.write_text(json.dumps({"format": "gnn_truss.export", "octant": {
        "edges": [[0, 13]], "offsets": [float("nan")] * 27}})), "NaN or inf"),
])
def test_truss_from_bad_export_files(tmp_path, mutate, match):
    p = tmp_path / "export.json"
    mutate(p)
    with pytest.raises(ValueError, match=match) as err:
        truss_from_json(p)
    assert str(p) in str(err.value)


def test_export_round_trip_still_reads(tmp_path):
    t = Truss.elementary("octet")
    assert truss_from_json(write_json(t, tmp_path / "o.json")) == t


# ----------------------------------------------------------------------------- corpora
@pytest.mark.parametrize("limit", [-5, 0, 2.5, True, "10"])
def test_load_corpus_rejects_bad_limits(limit):
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        load_corpus(SHIPPED, limit=limit)


def test_truncated_compact_corpus(tmp_path, small_corpus, capsys):
    p = save_compact(small_corpus, tmp_path / "c.npz")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt shard"):
        load_corpus(p)
    assert_cli_error(capsys, ["data", "pack", p, tmp_path / "out.npz"], "corrupt shard")
    assert not (tmp_path / "out.npz").exists()


def test_compact_corpus_with_corrupt_meta(tmp_path, small_corpus):
    p = write_shard(tmp_path / "c.npz", {"adj": small_corpus.adj, "offset": small_corpus.offset,
                                         "stiffness": small_corpus.stiffness,
                                         "meta": np.array("{not json")})
    with pytest.raises(ValueError, match="corrupt 'meta' record"):
        load_corpus(p)


def test_shard_with_inconsistent_row_counts_is_named(tmp_path):
    rows = shard_rows(5)
    rows["offset"] = rows["offset"][:4]
    (tmp_path / MANIFEST).write_text("{}")
    f = write_shard(tmp_path / "shards" / "shard-00000.npz", rows)
    with pytest.raises(ValueError, match=r"'offset' must have shape \[N, 27\] with N = 5") as err:
        load_corpus(tmp_path)
    assert str(f) in str(err.value)
    with pytest.raises(ValueError, match="'adj' must have shape"):
        read_shard(write_shard(tmp_path / "x.npz", {**shard_rows(3), "adj": np.zeros((3, 40),
                                                                                     np.uint8)}))


@pytest.mark.parametrize("content, match", [("{truncated", "corrupt corpus manifest"),
                                            ("[1, 2]", "not a JSON object")])
def test_corrupt_manifest_is_refused_and_shards_kept(tmp_path, content, match):
    f = write_shard(tmp_path / "shards" / "shard-00000.npz", shard_rows(6))
    (tmp_path / MANIFEST).write_text(content)
    before = f.read_bytes()
    with pytest.raises(ValueError, match=match):
        load_corpus(tmp_path)
    with pytest.raises(ValueError, match=match):
        build_corpus(tmp_path, n=6, shard_size=6, workers=1, progress=False)
    assert f.read_bytes() == before and sorted(p.name for p in (tmp_path / "shards").iterdir()) \
        == ["shard-00000.npz"]


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 0}, "n must be a positive integer"),
    ({"n": 2.5}, "n must be a positive integer"),
    ({"shard_size": 0}, "shard_size must be a positive integer"),
    ({"density": 1.5}, "relative density"),
    ({"E": float("nan")}, "Young's modulus"),
    ({"nu": 0.5}, "Poisson's ratio"),
])
def test_build_corpus_rejects_bad_arguments_before_writing(tmp_path, kwargs, match):
    out = tmp_path / "c"
    with pytest.raises(ValueError, match=match):
        build_corpus(out, **{"n": 6, "shard_size": 6, "workers": 1, "progress": False,
                             **kwargs})
    assert not out.exists()


def test_build_corpus_into_an_existing_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="is an existing file"):
        build_corpus(f, n=6, shard_size=6, workers=1, progress=False)
    assert_cli_error(capsys, ["data", "build", "--n", "6", "--out", f], "is an existing file")
    assert f.read_text() == "x"


def test_zero_lattice_shards_give_an_empty_corpus_and_clear_errors(tmp_path, capsys):
    root = tmp_path / "c"
    (root / "shards").mkdir(parents=True)
    (root / MANIFEST).write_text("{}")
    e = empty_corpus()
    write_shard(root / "shards" / "shard-00000.npz",
                {"adj": e.adj, "offset": e.offset, "stiffness": e.stiffness})
    c = load_corpus(root)
    assert len(c) == 0
    with pytest.raises(ValueError, match="corpus is empty"):
        corpus_statistics(c)
    packed = save_compact(c, tmp_path / "empty.npz")
    assert len(load_corpus(packed)) == 0
    assert_cli_error(capsys, ["data", "stats", packed], "corpus is empty")
    raw = tmp_path / "ds" / "raw"
    raw.mkdir(parents=True)
    shutil.copy(packed, raw / "corpus.npz")
    with pytest.raises(ValueError, match="is empty"):
        TrussDataset(tmp_path / "ds")


@pytest.mark.parametrize("sample", [0, -3, 2.5])
def test_statistics_geometry_sample(small_corpus, sample):
    with pytest.raises(ValueError, match="geometry_sample must be a positive integer"):
        corpus_statistics(small_corpus, geometry_sample=sample)


@pytest.mark.parametrize("limit", [0, -5, 1.5])
def test_dataset_rejects_bad_limit_before_processing(tmp_path, limit):
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        TrussDataset(tmp_path, limit=limit)
    assert not (tmp_path / "processed").exists()


def test_interrupted_build_resumes_without_loss(tmp_path, monkeypatch):
    import gnn_truss.corpus as corpus_mod

    kw = dict(n=12, seed=3, shard_size=6, workers=1, progress=False)
    ref = build_corpus(tmp_path / "ref", **kw)
    real = corpus_mod._build_and_write
    calls = []

    def killed_during_second_shard(job):
        calls.append(job[1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(corpus_mod, "_build_and_write", killed_during_second_shard)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        build_corpus(run, **kw)
    first = run / "shards" / "shard-00000.npz"
    saved = first.read_bytes()
    assert json.loads((run / MANIFEST).read_text())["shards"].keys() == {"0"}
    monkeypatch.setattr(corpus_mod, "_build_and_write", real)
    m = build_corpus(run, **kw)
    assert first.read_bytes() == saved  # the shard built before the interruption is kept
    a, b = load_corpus(tmp_path / "ref"), load_corpus(run)
    for key in ("adj", "offset", "stiffness"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert m["counts"] == ref["counts"] and len(b) >= 12


def test_cli_interrupt_is_reported_not_a_traceback(tmp_path, monkeypatch, capsys):
    import gnn_truss.corpus as corpus_mod

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(corpus_mod, "build_corpus", interrupted)
    line = assert_cli_error(capsys, ["data", "build", "--n", "5", "--out", tmp_path / "c"],
                            "interrupted", code=130)
    assert "rerun the same command" in line


# ----------------------------------------------------------------------------- published format
@pytest.fixture
def published(tmp_path):
    c = load_corpus(SHIPPED, limit=5)
    return c, export_published(c, tmp_path / "pub")


def test_published_node_outside_the_octant_is_refused(published):
    c, out = published
    t = c.truss(0)
    k = int(np.flatnonzero(t.used[ds.FREE_DOF_NODE])[0])
    node, axis = ds.FREE_DOF_NODE[k], ds.FREE_DOF_AXIS[k]
    pos = sp.load_npz(out / "node-position.npz").toarray().reshape(-1, 27, 3)
    pos[0, node, axis] = 1.3  # was silently clipped back into the octant
    sp.save_npz(out / "node-position.npz", sp.csr_matrix(pos.reshape(-1, 3)))
    with pytest.raises(ValueError, match=f"outside the octant.*lattice 0, node {node}"):
        import_published(out)


def test_published_corrupt_manifest(published):
    _, out = published
    (out / "manifest.json").write_text("{broken")
    with pytest.raises(ValueError, match="manifest.json: corrupt manifest"):
        import_published(out)


def test_published_without_lattices(published, capsys, tmp_path):
    _, out = published
    sp.save_npz(out / "adjacency-matrix.npz", sp.csr_matrix(np.zeros((0, 27))))
    sp.save_npz(out / "node-position.npz", sp.csr_matrix(np.zeros((0, 3))))
    (out / "stiffness-vec.csv").write_text("")
    with pytest.raises(ValueError, match="holds no lattices"):
        import_published(out)
    assert_cli_error(capsys, ["data", "import", out, tmp_path / "x.npz"], "holds no lattices")


# ----------------------------------------------------------------------------- checkpoints
def test_truncated_checkpoint(tiny_checkpoint, tmp_path, capsys):
    bad = tmp_path / "trunc.pt"
    data = tiny_checkpoint.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_model(bad)
    # torch's message spans several lines; the CLI prints it on one
    assert_cli_error(capsys, ["sample", "--n", "2", "--checkpoint", bad, "--out",
                              tmp_path / "s"], "not a readable checkpoint")
    assert_cli_error(capsys, ["evaluate", bad, "--out", tmp_path / "e"],
                     "not a readable checkpoint")


def test_checkpoint_without_model_and_data_config(tmp_path):
    p = tmp_path / "odd.pt"
    torch.save({"model": {}, "config": {"model": "gnn"}, "normalizer": {},
                "fingerprint": ""}, p)
    with pytest.raises(ValueError, match="not a gnn_truss checkpoint"):
        load_model(p)
    with pytest.raises(ValueError, match="not a gnn_truss checkpoint"):
        evaluate_checkpoint(p, tmp_path / "e", n_samples=0)


def test_checkpoint_weights_of_another_model_config(tiny_checkpoint, tmp_path):
    ck = torch.load(tiny_checkpoint, weights_only=True)
    ck["config"]["model"]["hidden"] = 16  # the weights are those of hidden = 8
    torch.save(ck, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="weights do not match the saved model config"):
        load_model(tmp_path / "other.pt")


def test_checkpoint_that_is_not_a_dict(tmp_path):
    torch.save(5, tmp_path / "five.pt")
    with pytest.raises(ValueError, match="not a gnn_truss checkpoint"):
        load_checkpoint(tmp_path / "five.pt")


def test_load_checkpoint_checks_the_config_sections(tmp_path):
    torch.save({"model": {}, "config": "x", "normalizer": {}, "fingerprint": ""},
               tmp_path / "c.pt")
    with pytest.raises(ValueError, match="not a gnn_truss checkpoint"):
        load_checkpoint(tmp_path / "c.pt")


def test_unreadable_checkpoint_message_is_short_and_safe(tmp_path):
    p = tmp_path / "config.pt"  # e.g. a YAML config passed as the checkpoint
    p.write_text("version: 1\nmodel: {hidden: 64}\n")
    with pytest.raises(ValueError, match="not a readable checkpoint") as err:
        load_checkpoint(p)
    assert "weights_only" not in str(err.value) and "\n" not in str(err.value)


# ----------------------------------------------------------------------------- configs
@pytest.mark.parametrize("model, key", [
    ({"hidden": "64"}, "model.hidden"), ({"layers": 0}, "model.layers"),
    ({"readout": -1}, "model.readout"), ({"hidden": True}, "model.hidden"),
    ({"topology": 2.5}, "model.topology"), ({"decoder_hidden": 64}, "model.decoder_hidden"),
    ({"offset_hidden": [32, 0]}, "model.offset_hidden"),
    ({"offset_weight": float("nan")}, "model.offset_weight"),
    ({"num_targets": 0}, "model.num_targets"),
])
def test_build_model_names_the_bad_value(model, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        build_model(model)


@pytest.mark.parametrize("cfg, key", [
    ({"train": {"patience": "10"}}, "train.patience"),
    ({"train": {"seed": 1.5}}, "train.seed"),
    ({"train": {"device": "gpu"}}, "train.device"),
    ({"train": {"time_limit_minutes": -1}}, "train.time_limit_minutes"),
    ({"train": {"weight_decay": -1.0}}, "train.weight_decay"),
    ({"train": {"lr_min": "small"}}, "train.lr_min"),
    ({"train": {"grad_clip": "x"}}, "train.grad_clip"),
    ({"train": {"epochs": True}}, "train.epochs"),
    ({"data": {"limit": -5}}, "data.limit"),
    ({"data": {"split_seed": "a"}}, "data.split_seed"),
    ({"data": {"source": "eth"}}, "data.source"),
    ({"data": {"target": "stress"}}, "data.target"),
    ({"data": {"root": None}}, "data.root"),
    ({"out": 5}, "out"),
    ({"model": {"hidden": "64"}}, "model.hidden"),
])
def test_validate_config_checks_every_value(cfg, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        validate_config(cfg)


def test_yaml_config_that_is_not_a_mapping(tmp_path, capsys):
    p = tmp_path / "scalar.yaml"
    p.write_text("just a string\n")
    assert_cli_error(capsys, ["train", "--config", p], "config must be a mapping")


@pytest.mark.parametrize("argv, match", [
    (["--epochs", "0"], "--epochs must be a positive integer"),    # was silently ignored
    (["--limit", "-5"], "--limit must be a positive integer"),     # was: all but the last 5
    (["--limit", "0"], "--limit must be a positive integer"),
    (["--time-limit", "-1"], "--time-limit must be a positive number"),
    (["--time-limit", "nan"], "--time-limit must be a positive number"),
])
def test_train_cli_rejects_bad_overrides(tmp_path, capsys, argv, match):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"data": {"root": str(tmp_path / "no_data")},
                                 "out": str(tmp_path / "run")}))
    assert_cli_error(capsys, ["train", "--config", p, *argv], match)
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- training runs
def test_cli_training_resumes_and_refuses_another_config(data_root, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = tiny_cfg(data_root, out)
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(p), "--no-progress"]) == 0
    first = (out / "metrics.csv").read_text().splitlines()
    (out / "last.pt.tmp").write_bytes(b"half a checkpoint")  # killed during a save
    assert main(["train", "--config", str(p), "--epochs", "2", "--no-progress"]) == 0
    capsys.readouterr()
    assert metric_epochs(out) == [0, 1]
    assert (out / "metrics.csv").read_text().splitlines()[:2] == first  # epoch 0 kept
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    other = {**cfg, "model": {**cfg["model"], "hidden": 16}}
    p.write_text(yaml.safe_dump(other))
    assert_cli_error(capsys, ["train", "--config", p, "--epochs", "3", "--no-progress"],
                     "different model/data config")
    assert metric_epochs(out) == [0, 1]
    p.write_text(yaml.safe_dump({**cfg, "model": {**cfg["model"], "hidden": "8"}}))
    assert_cli_error(capsys, ["train", "--config", p, "--no-resume", "--no-progress"],
                     "model.hidden must be a positive integer")


def test_training_refuses_a_corrupt_last_checkpoint(data_root, tmp_path):
    out = tmp_path / "run"
    train(tiny_cfg(data_root, out), progress=False)
    data = (out / "last.pt").read_bytes()
    (out / "last.pt").write_bytes(data[: len(data) // 2])
    metrics = (out / "metrics.csv").read_text()
    best = (out / "best.pt").read_bytes()
    with pytest.raises(ValueError, match="last.pt: not a readable checkpoint"):
        train(tiny_cfg(data_root, out, epochs=2), progress=False)
    assert (out / "metrics.csv").read_text() == metrics and (out / "best.pt").read_bytes() == best


def test_resume_after_a_kill_between_metrics_and_checkpoint(data_root, tmp_path):
    out = tmp_path / "run"
    train(tiny_cfg(data_root, out), progress=False)
    shutil.copy(out / "last.pt", tmp_path / "epoch0.pt")
    train(tiny_cfg(data_root, out, epochs=2), progress=False)
    shutil.copy(tmp_path / "epoch0.pt", out / "last.pt")  # row of epoch 1 written, not its .pt
    train(tiny_cfg(data_root, out, epochs=2), progress=False)
    assert metric_epochs(out) == [0, 1]


# ----------------------------------------------------------------------------- linear FE
def test_homogenize_rejects_non_lattices_and_non_numbers():
    with pytest.raises(ValueError, match="expected a Truss, got ndarray"):
        homogenize(np.zeros((27, 27)))
    with pytest.raises(ValueError, match="relative density must be a real number"):
        homogenize(Truss.elementary("bcc"), density="0.15")
    with pytest.raises(ValueError, match="Young's modulus must be a real number"):
        homogenize(Truss.elementary("bcc"), E=None)


def test_homogenize_batch_rejects_malformed_batches():
    t = Truss.elementary("bcc")
    adj = np.stack([t.adjacency] * 2)
    with pytest.raises(ValueError, match=r"offsets must have shape \(2, 27, 3\)"):
        homogenize_batch((adj, np.zeros((1, 27, 3))), workers=1)
    with pytest.raises(ValueError, match=r"adjacency must have shape \(B, 27, 27\)"):
        homogenize_batch((np.zeros((2, 27, 26)), np.zeros((2, 27, 3))), workers=1)
    off = np.zeros((2, 27, 3))
    off[1, 13, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        homogenize_batch((adj, off), workers=1)
    with pytest.raises(ValueError, match="item 1 is a str"):
        homogenize_batch([t, "octet"], workers=1)


def test_mechanism_gives_a_status_not_garbage():
    """Two collinear struts along an edge of the octant: connected but spinning freely."""
    t = Truss.from_edges([(8, 17), (17, 26)])
    assert homogenize(t).status is Status.INVALID  # the rules catch it first
    res = homogenize(t, validate=False)
    assert res.status is Status.MECHANISM and np.all(np.isnan(res.C)) and not res.ok
    with pytest.raises(ValueError, match="homogenization failed: mechanism"):
        res.raise_for_status()
    with pytest.raises(ValueError, match="NaN"):
        all_properties(res.C)
    batch = homogenize_batch([t, Truss.elementary("bcc")], validate=False, workers=1)
    assert list(batch.status) == ["mechanism", "ok"] and np.all(np.isnan(batch.C[0]))


# ----------------------------------------------------------------------------- nonlinear FE
@pytest.mark.parametrize("kwargs, match", [
    ({"E": float("nan")}, "Young's modulus"), ({"E": -1.0}, "Young's modulus"),
    ({"nu": 0.5}, "Poisson's ratio"), ({"nu": float("inf")}, "Poisson's ratio"),
    ({"density": float("nan")}, "relative density"),
    ({"imperfection": float("nan")}, "imperfection"),
    ({"elements_per_strut": 2.5}, "elements_per_strut"),
])
def test_compression_model_rejects_bad_material(kwargs, match):
    with pytest.raises(ValueError, match=match):
        compression_model(Truss.elementary("bcc"), **kwargs)


def test_compression_model_rejects_non_lattices():
    with pytest.raises(ValueError, match="expected a Truss"):
        compression_model(np.zeros((27, 27)))


@pytest.mark.parametrize("kwargs, match", [
    ({"snapshot_strains": [0.5]}, r"snapshot strains must lie in \[0, 0.25\]"),
    ({"snapshot_strains": [-0.01]}, "snapshot strains"),
    ({"snapshot_strains": [float("nan")]}, "snapshot strains"),
    ({"strains": [0.02, 0.01]}, "increasing"),
    ({"strains": [0.01, float("nan")]}, "increasing"),
    ({"strains": []}, "increasing"),
    ({"max_strain": float("nan")}, "max_strain"),
])
def test_compress_rejects_bad_strains(kwargs, match):
    model = compression_model(Truss.elementary("bcc"), elements_per_strut=1)
    with pytest.raises(ValueError, match=match):
        compress(model, **kwargs)


# ----------------------------------------------------------------------------- exports
@pytest.mark.parametrize("kwargs, match", [
    ({"E": float("nan")}, "Young's modulus"), ({"E": 0.0}, "Young's modulus"),
    ({"nu": 0.7}, "Poisson's ratio"), ({"nu": float("nan")}, "Poisson's ratio"),
    ({"density": float("nan")}, "relative density"),
    ({"cell_size": float("inf")}, "cell_size"),
])
def test_json_export_rejects_non_finite_numbers(kwargs, match):
    with pytest.raises(ValueError, match=match):
        to_json(Truss.elementary("octet"), **kwargs)


def test_write_stl_rejects_bad_meshes(tmp_path):
    v = np.eye(3)
    with pytest.raises(ValueError, match="NaN or inf"):
        write_stl(tmp_path / "a.stl", np.where(v == 1, np.nan, v), [[0, 1, 2]])
    with pytest.raises(ValueError, match="outside 0..2"):
        write_stl(tmp_path / "b.stl", v, [[0, 1, 3]])
    assert not list(tmp_path.iterdir())


def test_read_stl_rejects_damaged_files(tmp_path):
    good = write_stl(tmp_path / "good.stl", np.eye(3), [[0, 1, 2]] * 4)
    data = good.read_bytes()
    (tmp_path / "cut.stl").write_bytes(data[:-20])  # truncated binary
    with pytest.raises(ValueError, match="truncated binary STL"):
        read_stl(tmp_path / "cut.stl")
    (tmp_path / "bad.stl").write_text("solid x\n facet normal 0 0 one\n")
    with pytest.raises(ValueError, match="malformed ASCII STL"):
        read_stl(tmp_path / "bad.stl")


# ----------------------------------------------------------------------------- properties
def test_directional_modulus_rejects_non_finite_directions():
    with pytest.raises(ValueError, match="directions contains NaN or inf"):
        directional_youngs_modulus(CUBIC, [[1.0, 0.0, 0.0], [np.nan, 1.0, 0.0]])
    with pytest.raises(ValueError, match="directions contains NaN or inf"):
        directional_youngs_modulus(CUBIC, torch.tensor([[np.inf, 0.0, 0.0]]))


@pytest.mark.parametrize("func", [elastic_surface, vector_from_stiffness])
def test_non_finite_stiffness_is_refused(func):
    C = CUBIC.copy()
    C[0, 1] = C[1, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        func(C)


def test_target_file_with_nan_is_refused(tmp_path):
    p = tmp_path / "target.csv"
    p.write_text("0.05, 0.02, 0.02, 0.05, 0.02, 0.05, 0.01, nan, 0.01\n")
    with pytest.raises(ValueError, match="NaN or inf"):
        parse_objective("match-stiffness", load_target(str(p)))


def test_corrupt_npy_target_names_the_file(tmp_path):
    p = tmp_path / "target.npy"
    p.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="target.npy"):
        load_target(str(p))


# ----------------------------------------------------------------------------- every subcommand
@pytest.mark.parametrize("argv, fragment", [
    (["show", "sc", "--density", "nan"], "relative density"),
    (["homogenize", "sc", "--nu", "0.5"], "Poisson's ratio"),
    (["data", "build", "--n", "6", "--out", "{tmp}/c", "--density", "1.5"], "relative density"),
    (["data", "pack", str(SHIPPED), "{tmp}/p.npz", "--limit", "-5"], "limit must be"),
    (["data", "export", str(SHIPPED), "{tmp}/pub", "--limit", "0"], "limit must be"),
    (["data", "import", "{tmp}/nothing", "{tmp}/i.npz"], "missing published-format files"),
    (["data", "stats", str(SHIPPED), "--geometry-sample", "0"], "geometry_sample"),
    (["compress", "bcc", "--E", "nan"], "Young's modulus"),
    (["compress", "bcc", "--imperfection", "nan"], "imperfection"),
    (["compress", "bcc", "--max-strain", "0.05", "--snapshot", "0.1"], "snapshot strains"),
    (["export", "octet", "--E", "nan", "--out", "{tmp}/o.json"], "Young's modulus"),
    (["evaluate", "{tmp}/missing.pt"], "checkpoint not found"),
    (["evaluate", "{tmp}/missing.pt", "--samples", "-1"], "n_samples must be"),
    (["sample", "--save", "-1", "--out", "{tmp}/s"], "--save must be >= 0"),
    (["interpolate", "sc", "bcc", "--checkpoint", "{tmp}/missing.pt", "--out", "{tmp}/i"],
     "checkpoint not found"),
    (["traverse", "sc", "--checkpoint", "{tmp}/missing.pt", "--out", "{tmp}/t"],
     "checkpoint not found"),
    (["design", "--objective", "max-E99", "--out", "{tmp}/d", "--no-progress"],
     "unknown property"),
    (["design", "--objective", "match-stiffness", "--target", "[1, 2, NaN]", "--out", "{tmp}/d",
      "--no-progress"], "NaN or inf"),
    (["design", "--objective", "match-curve", "--target", "softening", "--feature-every", "0",
      "--out", "{tmp}/d", "--no-progress"], "--feature-every must be positive"),
    (["evaluate", "{tmp}/missing.pt", "--workers", "0"], "workers must be"),
])
def test_cli_bad_arguments_give_one_line(tmp_path, capsys, monkeypatch, argv, fragment):
    monkeypatch.chdir(tmp_path)  # default outputs (LABEL.png, ...) would land here
    assert_cli_error(capsys, [a.replace("{tmp}", str(tmp_path)) for a in argv], fragment)
    assert not list(tmp_path.iterdir())  # nothing written


def test_cli_bad_lattice_files(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = write_doc(tmp_path / "nan.json", lattice_doc(offsets=[float("nan")] * 27))
    for cmd in (["show", bad, "--out", tmp_path / "x.png"], ["homogenize", bad],
                ["compress", bad, "--out", tmp_path / "c.png"],
                ["export", bad, "--out", tmp_path / "x.json"]):
        line = assert_cli_error(capsys, cmd, "NaN or inf")
        assert str(bad) in line
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "gnn_truss.lattice", "edges": [[0, ')
    assert_cli_error(capsys, ["show", broken], "not a valid lattice JSON file")
    assert not list(tmp_path.glob("*.png"))


def test_cli_file_system_errors_are_one_line(tmp_path, capsys, small_corpus):
    packed = save_compact(small_corpus, tmp_path / "c.npz")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_cli_error(capsys, ["data", "export", packed, blocker], "File exists")
    assert_cli_error(capsys, ["data", "pack", packed, blocker / "sub" / "p.npz"],
                     "Not a directory")


def test_cli_exploration_with_a_checkpoint(tiny_checkpoint, tmp_path, capsys):
    ck = str(tiny_checkpoint)
    assert_cli_error(capsys, ["interpolate", "sc", "corpus:abc", "--checkpoint", ck, "--out",
                              tmp_path / "i"], "expected corpus:<index> with an integer index")
    assert_cli_error(capsys, ["traverse", "sc", "--group", "shared", "--dim", "99",
                              "--checkpoint", ck, "--out", tmp_path / "t"],
                     "dim must be an integer in 0..3")
    assert_cli_error(capsys, ["sample", "--n", "2", "--threshold", "1.5", "--no-novelty",
                              "--checkpoint", ck, "--out", tmp_path / "s"], "threshold")
    assert not (tmp_path / "i").exists() and not (tmp_path / "t").exists()
