"""Tests of gnn_truss.training: config, KL schedule, training, checkpoints, resume and DDP."""
import copy
import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from gnn_truss.corpus import load_corpus, save_compact
from gnn_truss.training import (
    DEFAULT_CONFIG,
    WeightAverage,
    kl_beta,
    load_checkpoint,
    load_config,
    train,
    validate_config,
)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "datasets" / "default" / "raw" / "corpus.npz"
TINY_MODEL = {"encoder": "gnn", "topology": 4, "shared": 8, "geometry": 4, "hidden": 16,
              "layers": 2, "readout": 64, "decoder_hidden": [32, 64], "offset_hidden": [32],
              "predictor_hidden": [32]}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """Dataset root holding the first 300 lattices of the shipped corpus."""
    root = tmp_path_factory.mktemp("data")
    (root / "raw").mkdir()
    save_compact(load_corpus(SHIPPED, limit=300), root / "raw" / "corpus.npz")
    return root


def tiny_cfg(root, out, epochs=2, **train_kw):
    return {"data": {"root": str(root), "limit": 300}, "model": dict(TINY_MODEL),
            "train": {"epochs": epochs, "batch_size": 64, "device": "cpu", **train_kw},
            "out": str(out)}


def test_resolve_data_root_only_for_shipped_raw_data(data_root, tmp_path, monkeypatch):
    from gnn_truss import paths
    from gnn_truss.dataset import resolve_data_root
    src = data_root.parent
    monkeypatch.setattr(paths, "SOURCE_ROOT", src)
    monkeypatch.chdir(tmp_path)
    assert resolve_data_root(data_root.name) == data_root         # holds raw/corpus.npz
    (src / "empty_root").mkdir(exist_ok=True)                     # holds no raw data:
    assert resolve_data_root("empty_root") == Path("empty_root")  # a root to create here
    assert resolve_data_root(data_root.name, "published") == Path(data_root.name)
    (tmp_path / data_root.name).mkdir()                           # the working directory's
    assert resolve_data_root(data_root.name) == Path(data_root.name)


def test_build_datasets_finds_a_relative_root_in_the_source_tree(data_root, tmp_path,
                                                                  monkeypatch):
    # a checkpoint's data.root is relative to the clone; read from elsewhere it still loads
    from gnn_truss import paths
    from gnn_truss.training import build_datasets
    monkeypatch.setattr(paths, "SOURCE_ROOT", data_root.parent)
    monkeypatch.chdir(tmp_path)
    cfg = validate_config(tiny_cfg(data_root.name, tmp_path / "out"))
    train, val, test = build_datasets(cfg)
    assert Path(train.root) == data_root and len(train) + len(val) + len(test) == 300
    assert not (tmp_path / data_root.name).exists()


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------ KL schedule
def test_kl_beta_cyclical_by_hand():
    # 100 steps, 4 cycles of 25 steps, rising over the first half (12.5 steps) to beta_max 2
    beta = [kl_beta(s, 100, 4, 0.5, 2.0) for s in range(100)]
    assert beta[0] == 0.0
    assert beta[5] == pytest.approx(2.0 * (5 / 25) / 0.5)    # 0.8
    assert beta[12] == pytest.approx(2.0 * (12 / 25) / 0.5)  # 1.92
    assert beta[13] == beta[24] == 2.0
    assert beta[25] == beta[50] == beta[75] == 0.0           # each cycle restarts at 0
    assert beta[30] == pytest.approx(0.8)
    assert max(beta) == 2.0 and sum(b == 0.0 for b in beta) == 4
    # one cycle, ratio 1: a single linear ramp over the run
    assert kl_beta(50, 100, 1, 1.0, 1.0) == pytest.approx(0.5)
    assert kl_beta(99, 100, 1, 1.0, 1.0) == pytest.approx(0.99)
    # ratio 0.25 over 1 cycle: reaches beta_max at a quarter of the run
    assert kl_beta(25, 100, 1, 0.25, 3.0) == 3.0
    assert kl_beta(10, 100, 1, 0.25, 3.0) == pytest.approx(1.2)


# ------------------------------------------------------------------ config
@pytest.mark.parametrize("cfg, key", [
    ({"foo": 1}, "foo"),
    ({"data": {"bogus": 1}}, "data.bogus"),
    ({"train": {"lrr": 0.1}}, "train.lrr"),
    ({"model": {"hiden": 64}}, "hiden"),
])
def test_validate_config_rejects_unknown_keys_naming_them(cfg, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        validate_config(cfg)


@pytest.mark.parametrize("train_kw, key", [
    ({"epochs": 0}, "epochs"), ({"epochs": 1.5}, "epochs"), ({"batch_size": -4}, "batch_size"),
    ({"kl_cycles": 0}, "kl_cycles"), ({"lr": -1e-3}, "lr"), ({"lr": float("nan")}, "lr"),
    ({"beta_max": "big"}, "beta_max"), ({"property_weight": float("inf")}, "property_weight"),
    ({"kl_ratio": 0}, "kl_ratio"), ({"kl_ratio": 1.5}, "kl_ratio"),
    ({"kl_ratio": "half"}, "kl_ratio"), ({"augment": "rotations"}, "augment"),
    ({"augment": True}, "augment"), ({"num_workers": -1}, "num_workers"),
    ({"num_workers": 2.5}, "num_workers"), ({"device": "gpu9"}, "device"),
    ({"ema_decay": 1.0}, "ema_decay"), ({"ema_decay": 0}, "ema_decay"),
    ({"ema_decay": True}, "ema_decay"), ({"ema_decay": "slow"}, "ema_decay"),
    ({"precision": "fp16"}, "precision"), ({"precision": None}, "precision"),
])
def test_validate_config_rejects_bad_values(train_kw, key):
    with pytest.raises(ValueError, match=f"train.{key}"):
        validate_config({"train": train_kw})


@pytest.mark.parametrize("cfg", [[1, 2], {"data": 5}, {"train": "fast"}, {"model": None}])
def test_validate_config_rejects_non_mappings(cfg):
    with pytest.raises(ValueError, match="mapping"):
        validate_config(cfg)


def test_validate_config_fills_defaults_without_mutating_them():
    before = copy.deepcopy(DEFAULT_CONFIG)
    cfg = validate_config({"train": {"epochs": 3}, "data": {"target": "curve"}})
    assert cfg["train"]["epochs"] == 3 and cfg["train"]["lr"] == DEFAULT_CONFIG["train"]["lr"]
    assert cfg["model"]["num_targets"] == 13  # curve targets
    assert DEFAULT_CONFIG == before


def test_load_config_from_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  encoder: mlp\ntrain:\n  epochs: 7\n  lr: 0.01\nout: somewhere\n")
    cfg = load_config(p)
    assert cfg["model"]["encoder"] == "mlp" and cfg["train"]["epochs"] == 7
    assert cfg["train"]["lr"] == 0.01 and cfg["out"] == "somewhere"
    assert cfg["data"] == DEFAULT_CONFIG["data"]
    (tmp_path / "bad.yaml").write_text("train: {epochs: [1\n")
    with pytest.raises(ValueError, match="invalid YAML"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ValueError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "unknown.yaml").write_text("train:\n  epoch: 3\n")
    with pytest.raises(ValueError, match=r"'train\.epoch' \(did you mean 'train\.epochs'\?\)"):
        load_config(tmp_path / "unknown.yaml")
    with pytest.raises(ValueError, match=r"'trian' \(did you mean 'train'\?\); allowed in "
                                         r"the top level"):
        validate_config({"trian": {}})
    with pytest.raises(ValueError) as err:
        validate_config({"model": {"encoderr": "gnn", "zzz": 1}})
    assert "keys 'model.encoderr' (did you mean 'model.encoder'?), 'model.zzz';" in str(err.value)


SHIPPED_CONFIGS = sorted(p.stem for p in (REPO / "configs").glob("*.yaml"))


def test_every_documented_config_is_shipped():
    assert {"default", "mlp_baseline", "nonlinear", "paper_gpu", "default_finetune",
            "mlp_finetune", "default_augment", "mlp_augment"} <= set(SHIPPED_CONFIGS)


@pytest.mark.parametrize("name", SHIPPED_CONFIGS)
def test_shipped_configs_validate(name):
    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    from gnn_truss.nn import build_model
    # the paper's 8 / 32 / 8, four times as large in the latent-growth stages
    assert build_model(cfg["model"]).sizes.total == (192 if name.endswith("_latent") else 48)
    if name.endswith("_augment"):
        assert cfg["train"]["augment"] == "axes"
    if name in ("nonlinear", "paper_gpu", "default_mirror", "mlp_mirror", "default_lowbeta",
                "mlp_lowbeta", "default_latent", "mlp_latent"):
        assert cfg["train"]["augment"] == "axes_mirrors"


def test_nonlinear_config_copies_the_shipped_default_encoder_whole():
    """configs/nonlinear.yaml warm-starts from the shipped linear model: every tensor but the
    predictor's output layer (13 curve points instead of 9 stiffness components) must be
    copied, i.e. its readout options follow the shipped checkpoint's."""
    from gnn_truss.nn import build_model
    from gnn_truss.training import init_from_checkpoint
    cfg = load_config(REPO / "configs" / "nonlinear.yaml")
    src = REPO / cfg["train"]["init_from"]
    ck = load_checkpoint(src)
    for key in ("edge_readout", "physics_readout", "hidden", "readout"):
        assert cfg["model"].get(key) == ck["config"]["model"].get(key), key
    model = build_model(cfg["model"])
    _, skipped = init_from_checkpoint(model, src, cfg["model"])
    last = f"predictor.net.{len(model.predictor.net) - 1}"  # the output layer
    assert sorted(skipped) == [f"{last}.bias", f"{last}.weight"]


def test_nonlinear_grown_config_is_the_shipped_curve_checkpoints():
    """configs/nonlinear_grown.yaml is the last stage of the shipped curve checkpoint's chain:
    its data, model and train sections are exactly those the checkpoint stores, so training it
    (from G3, configs/nonlinear_prefix.yaml) reads the whole shipped corpus with the
    checkpoint's split."""
    cfg = load_config(REPO / "configs" / "nonlinear_grown.yaml")
    ck = load_checkpoint(REPO / "datasets" / "checkpoints" / "nonlinear" / "model.pt")
    # train.precision came after the checkpoint, which trained in its default, float32
    stored = {**ck["config"], "train": {"precision": "fp32", **ck["config"]["train"]}}
    for section in ("data", "model", "train"):
        assert cfg[section] == stored[section], section
    assert cfg["data"]["root"] == "datasets/nonlinear" and cfg["data"]["limit"] is None
    assert cfg["train"]["init_from"] == "runs/nonlinear_g3.pt"
    g3 = load_config(REPO / "configs" / "nonlinear_prefix.yaml")  # the stage before
    assert {**g3["data"], "limit": None} == cfg["data"] and g3["model"] == cfg["model"]
    assert cfg["out"] != g3["out"] and g3["out"] == "runs/nl_pfx3_drop"


def test_nonlinear_mlp_baseline_config_reads_the_shipped_curve_checkpoints_data():
    """configs/nonlinear_mlp.yaml, the paper's MLP baseline for the curves, trains on exactly
    the data and split of the shipped curve checkpoint (so `compare` pairs their test
    lattices), with the same curve loss and symmetries, from the shipped MLP baseline VAE."""
    mlp = load_config(REPO / "configs" / "nonlinear_mlp.yaml")
    gnn = load_config(REPO / "configs" / "nonlinear_grown.yaml")
    assert mlp["model"]["encoder"] == "mlp" and mlp["model"]["num_targets"] == 13
    assert {**gnn["data"], "features": None} == mlp["data"]
    for key in ("property_loss", "augment", "freeze"):
        assert mlp["train"][key] == gnn["train"][key], key
    assert mlp["train"]["init_from"] == "datasets/checkpoints/default/mlp_baseline.pt"


FOR_OLDER = {  # config: (data.limit, the fingerprint its checkpoint recorded)
    "nonlinear_decoded": (15799, "2a5b8238623a19747df70788283fddca5562724b"),
    "nonlinear_buckling": (15799, "2a5b8238623a19747df70788283fddca5562724b"),
    "nonlinear_prefix": (29698, "eda385816e0d4b020d1b582ff57a7f60d9a4316f"),  # G3
}


@pytest.mark.parametrize("name", sorted(FOR_OLDER))
def test_configs_of_earlier_curve_checkpoints_read_their_corpus(name):
    """The curve checkpoints before session 40 trained on the first 15,799 curves, the one of
    sessions 40-43 (G3) on the first 29,698: their configs keep reading those (data.limit),
    whose fingerprint is the one they recorded (G3's: git 06fdd57)."""
    from gnn_truss.corpus import load_corpus
    from gnn_truss.exploration import corpus_fingerprint
    limit, fingerprint = FOR_OLDER[name]
    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    assert cfg["data"]["limit"] == limit
    corpus = load_corpus(REPO / cfg["data"]["root"] / "raw" / "corpus.npz", quiet=True)
    assert len(corpus) > limit
    assert corpus_fingerprint(corpus, "curve", cfg["data"]["limit"]) == fingerprint


# ------------------------------------------------------------------ training
def test_tiny_training_run_writes_metrics_and_checkpoints(data_root, tmp_path):
    summary = train(tiny_cfg(data_root, tmp_path / "run"), progress=False)
    assert summary["epochs_done"] == 2 and summary["stopped"] == "completed"
    rows = read_rows(tmp_path / "run" / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert all(float(r["val_score"]) > 0 for r in rows)
    for name in ("last.pt", "best.pt"):
        ck = load_checkpoint(tmp_path / "run" / name)
        assert torch.load(tmp_path / "run" / name, weights_only=True).keys() == ck.keys()
        assert {"model", "config", "normalizer", "fingerprint", "epoch"} <= set(ck)
        assert ck["config"]["model"]["hidden"] == 16
        assert len(ck["normalizer"]["mean"]) == 9 and len(ck["fingerprint"]) == 40
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last["epoch"] == 1 and {"optimizer", "scheduler", "rng", "loader_rng"} <= set(last)
    from gnn_truss.nn import build_model
    build_model(last["config"]["model"]).load_state_dict(last["model"])  # strict


def test_resume_continues_from_last_epoch(data_root, tmp_path, caplog):
    out = tmp_path / "run"
    train(tiny_cfg(data_root, out, epochs=1), progress=False)
    first = read_rows(out / "metrics.csv")
    assert [int(r["epoch"]) for r in first] == [0]
    with caplog.at_level("INFO", logger="gnn_truss.training"):
        summary = train(tiny_cfg(data_root, out, epochs=2), progress=False)
    assert "at epoch 1" in caplog.text
    rows = read_rows(out / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert rows[0] == first[0]  # epoch 0 was not redone
    assert summary["epochs_done"] == 2
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    # nothing left to do: a third call appends no row
    again = train(tiny_cfg(data_root, out, epochs=2), progress=False)
    assert len(read_rows(out / "metrics.csv")) == 2
    assert again["epochs_done"] == 2


def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(data_root, tmp_path, caplog):
    """Stopped by its time limit after the first epoch and resumed, a run (with augmentation,
    which draws from the global RNG, and shuffling, which draws from the loader's generator)
    ends with the very weights and logged losses of the same run done in one go: both RNG
    states are in last.pt."""
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train(tiny_cfg(data_root, whole, epochs=3, augment="axes_mirrors"), progress=False)
    first = train(tiny_cfg(data_root, parts, epochs=3, augment="axes_mirrors",
                           time_limit_minutes=1e-9), progress=False)
    assert first["epochs_done"] == 1 and first["stopped"].startswith("time limit")
    with caplog.at_level("WARNING", logger="gnn_truss.training"):
        train(tiny_cfg(data_root, parts, epochs=3, augment="axes_mirrors"), progress=False)
    assert "shuffle-order" not in caplog.text
    a, b = load_checkpoint(whole / "last.pt"), load_checkpoint(parts / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    ra, rb = read_rows(whole / "metrics.csv"), read_rows(parts / "metrics.csv")
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in ra] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in rb]


def test_resume_from_a_checkpoint_without_loader_state_warns(data_root, tmp_path, caplog):
    out = tmp_path / "run"
    train(tiny_cfg(data_root, out, epochs=1), progress=False)
    ck = torch.load(out / "last.pt", weights_only=True)
    del ck["loader_rng"]  # as written by gnn_truss before the loader state was saved
    torch.save(ck, out / "last.pt")
    with caplog.at_level("WARNING", logger="gnn_truss.training"):
        assert train(tiny_cfg(data_root, out, epochs=2), progress=False)["epochs_done"] == 2
    assert "holds no shuffle-order state" in caplog.text


def test_resume_with_other_model_config_refused(data_root, tmp_path):
    out = tmp_path / "run"
    train(tiny_cfg(data_root, out, epochs=1), progress=False)
    cfg = tiny_cfg(data_root, out, epochs=2)
    cfg["model"]["hidden"] = 32
    with pytest.raises(ValueError, match="different model/data config"):
        train(cfg, progress=False)
    cfg["model"]["hidden"] = 16
    cfg["data"]["limit"] = 250
    with pytest.raises(ValueError, match="different model/data config"):
        train(cfg, progress=False)
    train(cfg, resume=False, progress=False)  # --no-resume starts afresh
    assert load_checkpoint(out / "last.pt")["config"]["data"]["limit"] == 250


def test_load_checkpoint_rejects_garbage(tmp_path):
    (tmp_path / "g.pt").write_bytes(b"\x00not a checkpoint" * 100)
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "g.pt")


# ------------------------------------------------------------------ distributed
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ddp(cfg: dict, tmp_path, timeout=240):
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", str(free_port()), "-m", "gnn_truss.cli", "train", "--config",
         str(path), "--no-progress"],
        check=False, cwd=REPO, env=env, capture_output=True, text=True,
        timeout=timeout)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_ddp_two_cpu_processes(data_root, tmp_path, precision):
    out = tmp_path / "run"
    res = run_ddp(tiny_cfg(data_root, out, epochs=2, precision=precision), tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert [int(r["epoch"]) for r in read_rows(out / "metrics.csv")] == [0, 1]
    assert load_checkpoint(out / "last.pt")["epoch"] == 1


def test_ddp_early_stop_stops_every_rank(data_root, tmp_path):
    # lr = 0: the validation score never improves, so rank 0 stops after epoch 1; the other rank
    # must stop too (it used to run on into epoch 2 and die in the gradient all-reduce)
    out = tmp_path / "run"
    cfg = tiny_cfg(data_root, out, epochs=4, lr=0.0, lr_min=0.0, patience=1)
    res = run_ddp(cfg, tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert [int(r["epoch"]) for r in read_rows(out / "metrics.csv")] == [0, 1]
    assert res.stdout.count("early stop") == 2  # both ranks report it


# ------------------------------------------------------------------ warm start
def test_init_from_copies_matching_tensors_only(data_root, tmp_path):
    from gnn_truss.nn import build_model
    from gnn_truss.training import init_from_checkpoint
    src = tmp_path / "src"
    train(tiny_cfg(data_root, src, epochs=1), progress=False)
    ck = load_checkpoint(src / "last.pt")
    other = build_model({**TINY_MODEL, "num_targets": 13})  # a curve model: other output layer
    before = {k: v.clone() for k, v in other.state_dict().items()}
    copied, skipped = init_from_checkpoint(other, src / "last.pt", {**TINY_MODEL})
    after = other.state_dict()
    assert skipped and all(k.startswith("predictor") for k in skipped)
    for k in copied:
        assert torch.equal(after[k], ck["model"][k])
    for k in skipped:
        if k in after:
            assert torch.equal(after[k], before[k])  # left as initialised
    with pytest.raises(ValueError, match="encoder"):
        init_from_checkpoint(other, src / "last.pt", {**TINY_MODEL, "encoder": "mlp"})


def test_train_init_from_starts_from_the_checkpoint(data_root, tmp_path):
    src = tmp_path / "src"
    train(tiny_cfg(data_root, src, epochs=2), progress=False)
    warm = tmp_path / "warm"
    cold = tmp_path / "cold"
    train(tiny_cfg(data_root, warm, epochs=1, lr=0.0, lr_min=0.0,
                   init_from=str(src / "last.pt")), progress=False)
    train(tiny_cfg(data_root, cold, epochs=1, lr=0.0, lr_min=0.0), progress=False)
    # lr = 0: the warm run's validation loss is that of the source weights, not of a fresh model
    v = lambda p: float(read_rows(p / "metrics.csv")[-1]["val_adj"])  # noqa: E731
    assert v(warm) < v(cold)
    with pytest.raises(ValueError, match="init_from"):
        validate_config(tiny_cfg(data_root, warm, init_from=3))


def test_cli_init_from_overrides_the_config(data_root, tmp_path, capsys):
    from gnn_truss.cli import main

    src = tmp_path / "src"
    train(tiny_cfg(data_root, src, epochs=2), progress=False)
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(tiny_cfg(data_root, tmp_path / "warm", epochs=1, lr=0.0,
                                         lr_min=0.0)))
    assert main(["train", "--config", str(p), "--init-from", str(src / "last.pt"),
                 "--no-progress"]) == 0
    # lr = 0: the validation loss is exactly that of the source's last weights
    v = lambda d: float(read_rows(d / "metrics.csv")[-1]["val_adj"])  # noqa: E731
    assert v(tmp_path / "warm") == pytest.approx(v(src), rel=1e-5)
    assert main(["train", "--config", str(p), "--init-from", str(tmp_path / "none.pt"),
                 "--out", str(tmp_path / "other"), "--no-progress"]) == 2
    assert "--init-from: checkpoint not found" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_loader_workers_change_no_number(data_root, tmp_path, monkeypatch):
    """Worker processes only collate: two epochs with 2 workers (set from the command line,
    PyG's ``DataLoader``) log exactly the numbers of the run without workers, whose batches
    are sliced by :class:`gnn_truss.loader.CollatedLoader`, augmentation included."""
    import torch_geometric.loader as pyg_loader

    import gnn_truss.loader as our_loader
    from gnn_truss.cli import main
    workers = []
    real, real_ours = pyg_loader.DataLoader, our_loader.CollatedLoader

    def spy(*args, **kwargs):
        workers.append(kwargs.get("num_workers", 0))
        return real(*args, **kwargs)

    def spy_ours(*args, **kwargs):
        workers.append("sliced")
        return real_ours(*args, **kwargs)
    monkeypatch.setattr(pyg_loader, "DataLoader", spy)
    monkeypatch.setattr(our_loader, "CollatedLoader", spy_ours)

    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(tiny_cfg(data_root, tmp_path / "w0", epochs=2,
                                         augment="axes_mirrors")))
    assert main(["train", "--config", str(p), "--no-progress"]) == 0
    assert main(["train", "--config", str(p), "--out", str(tmp_path / "w2"),
                 "--loader-workers", "2", "--device", "cpu", "--no-progress"]) == 0
    assert load_checkpoint(tmp_path / "w2" / "last.pt")["config"]["train"]["num_workers"] == 2
    assert workers == ["sliced", "sliced", 2, 2]  # train and validation loaders of each run
    cols = ("train_total", "train_adj", "train_kl", "val_adj", "val_property", "val_exact")
    r0, r2 = (read_rows(tmp_path / d / "metrics.csv") for d in ("w0", "w2"))
    assert [[r[c] for c in cols] for r in r2] == [[r[c] for c in cols] for r in r0]
    assert main(["train", "--config", str(p), "--out", str(tmp_path / "bad"),
                 "--loader-workers", "-1", "--no-progress"]) == 2


@pytest.mark.parametrize("option, extra", [("edge_readout", 351), ("physics_readout", 13)])
def test_init_from_widens_the_readout_without_changing_the_function(data_root, tmp_path,
                                                                     option, extra):
    """A model with ``edge_readout`` (or ``physics_readout``) warm-started from one without
    computes the same latents: the readout's old columns are copied and the new (adjacency or
    physics-feature) columns start at zero."""
    from torch_geometric.loader import DataLoader

    from gnn_truss.dataset import TrussDataset
    from gnn_truss.nn import build_model
    from gnn_truss.training import init_from_checkpoint

    src = tmp_path / "src"
    train(tiny_cfg(data_root, src, epochs=1), progress=False)
    old = build_model(TINY_MODEL)
    old.load_state_dict(load_checkpoint(src / "last.pt")["model"])
    wide = build_model({**TINY_MODEL, option: True})
    copied, skipped = init_from_checkpoint(wide, src / "last.pt", TINY_MODEL)
    assert "encoder.readout.0.weight" in copied and skipped == []
    w = wide.encoder.readout[0].weight
    assert w.shape[1] == old.encoder.readout[0].weight.shape[1] + extra
    assert torch.count_nonzero(w[:, -extra:]) == 0
    batch = next(iter(DataLoader(TrussDataset(data_root, limit=300), batch_size=32)))
    with torch.no_grad():
        for a, b in zip(old.eval().encode(batch), wide.eval().encode(batch)):
            assert torch.allclose(a, b, atol=1e-6)
    # a predictor reading a smaller latent starts afresh
    smaller = build_model({**TINY_MODEL, "shared": TINY_MODEL["shared"] - 2})
    _, skipped = init_from_checkpoint(smaller, src / "last.pt", TINY_MODEL)
    assert "predictor.net.0.weight" in skipped


def _trained_source(data_root, tmp_path, model_cfg: dict):
    """One epoch of a tiny run with ``model_cfg``: its folder and the model loaded from it."""
    from gnn_truss.nn import build_model

    src = tmp_path / "src"
    cfg = tiny_cfg(data_root, src, epochs=1)
    cfg["model"] = dict(model_cfg)
    train(cfg, progress=False)
    old = build_model(model_cfg)
    old.load_state_dict(load_checkpoint(src / "last.pt")["model"])
    return src, old


def test_init_from_places_a_new_middle_block_without_changing_the_function(data_root,
                                                                           tmp_path):
    """``edge_readout`` switched on after ``physics_readout``: the adjacency block goes between
    the node embeddings and the physics features, so the source's physics columns must move
    to the end (appending zeros would feed them the adjacency). Narrowing is refused."""
    from torch_geometric.loader import DataLoader

    from gnn_truss.dataset import TrussDataset
    from gnn_truss.nn import build_model
    from gnn_truss.nn.encoder import readout_blocks
    from gnn_truss.training import init_from_checkpoint

    src_model = {**TINY_MODEL, "physics_readout": True}
    src, old = _trained_source(data_root, tmp_path, src_model)
    both = {**src_model, "edge_readout": True}
    wide = build_model(both)
    copied, skipped = init_from_checkpoint(wide, src / "last.pt", both)
    assert "encoder.readout.0.weight" in copied and skipped == []
    blocks = readout_blocks(TINY_MODEL["hidden"], True, True)
    w, w0 = wide.encoder.readout[0].weight, old.encoder.readout[0].weight
    assert torch.count_nonzero(w[:, blocks["adjacency"]]) == 0
    assert torch.equal(w[:, blocks["physics"]], w0[:, -13:])
    assert torch.equal(w[:, blocks["nodes"]], w0[:, :blocks["nodes"].stop])
    batch = next(iter(DataLoader(TrussDataset(data_root, limit=300), batch_size=32)))
    with torch.no_grad():
        for a, b in zip(old.eval().encode(batch), wide.eval().encode(batch)):
            assert torch.allclose(a, b, atol=1e-6)
    # without the config, the blocks still come from the model as built
    again = build_model(both)
    init_from_checkpoint(again, src / "last.pt")
    assert torch.equal(again.encoder.readout[0].weight, w)
    # narrowing (dropping the physics block) would change the function: left fresh
    narrow = build_model(TINY_MODEL)
    _, skipped = init_from_checkpoint(narrow, src / "last.pt", TINY_MODEL)
    assert "encoder.readout.0.weight" in skipped


@pytest.mark.parametrize("encoder", ["gnn", "mlp"])
def test_init_from_grows_hidden_widths_without_changing_the_function(data_root, tmp_path,
                                                                     encoder):
    """Wider hidden layers (readout / MLP body, both decoders, predictor) warm-started from a
    narrower checkpoint compute the same latents, logits, offsets and predictions; the new
    units keep their fresh weights, the weights reading them start at zero; a narrower model
    or a larger latent is not grown."""
    from torch_geometric.loader import DataLoader

    from gnn_truss.dataset import TrussDataset
    from gnn_truss.nn import build_model
    from gnn_truss.training import init_from_checkpoint

    small = {**TINY_MODEL, "encoder": encoder, "mlp_hidden": [48, 40]}
    src, old = _trained_source(data_root, tmp_path, small)
    big = {**small, "readout": 96, "mlp_hidden": [64, 56], "decoder_hidden": [40, 80],
           "offset_hidden": [48], "predictor_hidden": [40, 24]}
    torch.manual_seed(0)
    wide = build_model(big)
    fresh = {k: v.clone() for k, v in wide.state_dict().items()}
    copied, skipped = init_from_checkpoint(wide, src / "last.pt", big)
    # the checkpoint's predictor has one layer fewer: its layers do not correspond, so the
    # whole predictor starts afresh (an output layer is not grown into a hidden one)
    assert skipped == ["predictor.net.0.weight", "predictor.net.0.bias",
                       "predictor.net.2.weight", "predictor.net.2.bias"], skipped
    state = wide.state_dict()
    body = "encoder.readout" if encoder == "gnn" else "encoder.body"
    w0, w2 = state[f"{body}.0.weight"], state[f"{body}.2.weight"]
    n0 = old.state_dict()[f"{body}.0.weight"].shape[0]
    assert torch.equal(w0[n0:], fresh[f"{body}.0.weight"][n0:])  # new units: fresh rows
    assert torch.count_nonzero(w2[:, n0:]) == 0  # nothing reads them yet
    assert torch.count_nonzero(state["encoder.heads.topology.weight"][:, -8:]) == 0
    n = old.adj_decoder.net[2].weight.shape[0]
    assert torch.count_nonzero(state["adj_decoder.net.4.weight"][:, n:]) == 0
    # the predictor grew a layer (a different depth): compare everything but its output
    batch = next(iter(DataLoader(TrussDataset(data_root, limit=300), batch_size=32)))
    old.eval(), wide.eval()
    with torch.no_grad():
        for a, b in zip(old.encode(batch), wide.encode(batch)):
            assert torch.allclose(a, b, atol=1e-6)
        mu = old.encode(batch)[0]
        assert torch.allclose(old.adj_decoder(mu[:, :12]), wide.adj_decoder(mu[:, :12]),
                              atol=1e-5)
        assert torch.allclose(old.offset_decoder(mu[:, 4:]), wide.offset_decoder(mu[:, 4:]),
                              atol=1e-6)
    # same depth, wider predictor: predictions equal
    same = {**big, "predictor_hidden": [40]}
    pred = build_model(same)
    _, skipped = init_from_checkpoint(pred, src / "last.pt", same)
    assert skipped == []
    with torch.no_grad():
        assert torch.allclose(old.predict(mu), pred.eval().predict(mu), atol=1e-6)
    # narrower is not grown (left fresh and reported), nor a smaller latent
    narrow = build_model({**small, "decoder_hidden": [16, 64]})
    _, skipped = init_from_checkpoint(narrow, src / "last.pt", small)
    assert "adj_decoder.net.0.weight" in skipped and "adj_decoder.net.2.weight" in skipped
    smaller_latent = build_model({**big, "topology": 3})
    copied, skipped = init_from_checkpoint(smaller_latent, src / "last.pt", big)
    assert "adj_decoder.net.0.weight" in skipped and "encoder.heads.topology.weight" in skipped
    assert "offset_decoder.net.0.weight" in copied  # shared + geometry: the same input
    # and the grown model trains from there
    out = tmp_path / "grown"
    cfg = tiny_cfg(data_root, out, epochs=1, init_from=str(src / "last.pt"))
    cfg["model"] = dict(same)
    train(cfg, progress=False)
    assert load_checkpoint(out / "last.pt")["model"]["encoder.heads.topology.weight"].shape[1] \
        == (96 if encoder == "gnn" else 56)


@pytest.mark.parametrize("encoder", ["gnn", "mlp"])
def test_init_from_grows_the_latent_without_changing_the_function(data_root, tmp_path,
                                                                  encoder):
    """A larger latent (each part grown, and the adjacency decoder widened at the same time)
    warm-started from a smaller one: the old dims keep their values at the start of each
    part's block, so the reconstructions and predictions are the source's whatever the new
    dims hold; the new mu rows stay fresh, the new log-sigma rows read nothing and start at
    GROWN_LOGSIG; the decoders and the predictor read the new dims through zero weights."""
    from torch_geometric.loader import DataLoader

    from gnn_truss.dataset import TrussDataset
    from gnn_truss.nn import build_model
    from gnn_truss.training import GROWN_LOGSIG, init_from_checkpoint

    small = {**TINY_MODEL, "encoder": encoder, "mlp_hidden": [48, 40]}  # latent 4 / 8 / 4
    src, old = _trained_source(data_root, tmp_path, small)
    big = {**small, "topology": 6, "shared": 11, "geometry": 5, "decoder_hidden": [40, 64],
           "readout": 80, "mlp_hidden": [48, 52]}  # the heads' input grows too
    torch.manual_seed(0)
    grown = build_model(big)
    fresh = {k: v.clone() for k, v in grown.state_dict().items()}
    copied, skipped = init_from_checkpoint(grown, src / "last.pt", big)
    assert skipped == [], skipped
    # old positions in the new layout [t 6 | s 11 | g 5]
    pos = torch.tensor([0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13, 17, 18, 19, 20])
    new_dims = torch.tensor([4, 5, 14, 15, 16, 21])
    state = grown.state_dict()
    w = state["encoder.heads.topology.weight"]  # rows [mu 17 | log sigma 17]
    b = state["encoder.heads.topology.bias"]
    assert torch.equal(w[[4, 5, 14, 15, 16]], fresh["encoder.heads.topology.weight"][
        [4, 5, 14, 15, 16]])  # new mu rows: fresh features of the readout
    new_logsig = torch.tensor([4, 5, 14, 15, 16]) + 17
    assert torch.count_nonzero(w[new_logsig]) == 0
    assert torch.all(b[new_logsig] == GROWN_LOGSIG)
    n = old.adj_decoder.net[0].weight.shape[0]  # old hidden units: zero on the new dims
    assert torch.count_nonzero(state["adj_decoder.net.0.weight"][:n, [4, 5, 14, 15, 16]]) == 0
    assert torch.count_nonzero(state["offset_decoder.net.0.weight"][:, [8, 9, 10, 15]]) == 0
    assert torch.count_nonzero(state["predictor.net.0.weight"][:, new_dims]) == 0
    # the widened decoder's new units: fresh rows, read by the next layer through zeros
    assert torch.equal(state["adj_decoder.net.0.weight"][n:],
                       fresh["adj_decoder.net.0.weight"][n:])
    assert torch.count_nonzero(state["adj_decoder.net.2.weight"][:, n:]) == 0

    batch = next(iter(DataLoader(TrussDataset(data_root, limit=300), batch_size=32)))
    old.eval(), grown.eval()
    with torch.no_grad():
        mu_old, ls_old = old.encode(batch)
        mu, ls = grown.encode(batch)
        assert torch.allclose(mu[:, pos], mu_old, atol=1e-6)
        assert torch.allclose(ls[:, pos], ls_old, atol=1e-6)
        assert torch.allclose(ls[:, new_dims], torch.full_like(ls[:, new_dims], GROWN_LOGSIG))
        assert mu[:, new_dims].std() > 0.01  # data-dependent from the start
        z = mu.clone()
        z[:, new_dims] = torch.randn(len(z), len(new_dims))  # the new dims are not read yet
        for a, c in zip(old.decode(mu_old), grown.decode(z)):
            assert torch.allclose(a, c, atol=1e-5)
        assert torch.allclose(old.predict(mu_old), grown.predict(z), atol=1e-5)
    # the heads' new input units do not reach the old latent
    i_old = old.encoder.heads.topology.weight.shape[1]
    assert w.shape[1] > i_old and torch.count_nonzero(w[:4, i_old:]) == 0
    # one part grown and another shrunk: every layer of a changed part starts afresh
    mixed = {**small, "topology": 6, "shared": 6}
    _, skipped = init_from_checkpoint(build_model(mixed), src / "last.pt", mixed)
    for name in ("encoder.heads.topology.weight", "encoder.heads.geometry.weight",
                 "adj_decoder.net.0.weight", "offset_decoder.net.0.weight",
                 "predictor.net.0.weight"):
        assert name in skipped, name
    # and the grown model trains from there
    out = tmp_path / "grown"
    cfg = tiny_cfg(data_root, out, epochs=1, init_from=str(src / "last.pt"))
    cfg["model"] = dict(big)
    train(cfg, progress=False)
    assert load_checkpoint(out / "last.pt")["model"]["predictor.net.0.weight"].shape[1] == 22


def test_train_freeze_holds_the_named_parts_fixed(data_root, tmp_path):
    src = tmp_path / "src"
    train(tiny_cfg(data_root, src, epochs=1), progress=False)
    out = tmp_path / "frozen"
    train(tiny_cfg(data_root, out, epochs=1, init_from=str(src / "last.pt"),
                   freeze=["encoder", "adj_decoder"]), progress=False)
    before = load_checkpoint(src / "last.pt")["model"]
    after = load_checkpoint(out / "last.pt")["model"]
    for name, value in after.items():
        same = torch.equal(value, before[name])
        if name.startswith(("encoder.", "adj_decoder.")):
            assert same, name  # frozen
    assert not all(torch.equal(after[n], before[n]) for n in after
                   if n.startswith(("predictor.", "offset_decoder.")))  # trained
    for bad, match in ((["decoder"], "train.freeze"), ("encoder", "train.freeze"),
                       (["encoder", "adj_decoder", "offset_decoder", "predictor"],
                        "nothing to train")):
        with pytest.raises(ValueError, match=match):
            validate_config(tiny_cfg(data_root, out, freeze=bad))


def test_train_sample_latent_false_decodes_the_mean(data_root, tmp_path, monkeypatch):
    from gnn_truss.nn.vae import TrussVAE
    calls = []
    original = TrussVAE.reparameterize

    def spy(mu, logsig):
        calls.append(mu.shape[0])
        return original(mu, logsig)

    monkeypatch.setattr(TrussVAE, "reparameterize", staticmethod(spy))
    src = tmp_path / "src"
    train(tiny_cfg(data_root, src, epochs=1), progress=False)
    assert calls == [64, 64, 64]  # by default every training batch decodes a sample
    calls.clear()
    out = tmp_path / "mean"
    train(tiny_cfg(data_root, out, epochs=1, init_from=str(src / "last.pt"),
                   freeze=["adj_decoder", "offset_decoder"], sample_latent=False),
          progress=False)
    assert calls == []  # the mean, never a sample (validation decodes the mean anyway)
    before = load_checkpoint(src / "last.pt")["model"]
    after = load_checkpoint(out / "last.pt")["model"]
    assert all(torch.equal(after[n], before[n]) for n in after if "decoder." in n)
    assert not all(torch.equal(after[n], before[n]) for n in after if n.startswith("encoder."))
    for bad in ("no", 0, None):
        with pytest.raises(ValueError, match="train.sample_latent"):
            validate_config(tiny_cfg(data_root, out, sample_latent=bad))


def test_train_precision_bf16_runs_the_forward_pass_in_bfloat16(data_root, tmp_path,
                                                                 monkeypatch):
    """train.precision 'bf16': the network's linear layers compute in bfloat16 in training
    (autocast), the outputs reach the loss in float32, and the weights, optimiser state and
    validation stay float32; 'fp32' (the default) never touches bfloat16."""
    from gnn_truss.nn.vae import TrussVAE
    seen = {"linear": set(), "loss": set(), "grad": set(), "eval": set()}
    original_loss = TrussVAE.loss

    def spy_loss(self, out, batch, *args, **kw):
        seen["loss"].update(v.dtype for v in out.values()
                            if torch.is_tensor(v) and v.is_floating_point())
        if torch.is_grad_enabled():  # training steps only (validation runs without grad)
            seen["grad"].add(torch.is_autocast_enabled("cpu"))
        return original_loss(self, out, batch, *args, **kw)

    def hook(module, inputs, output):
        seen["linear" if module.training else "eval"].add(output.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda m, i, o: hook(m, i, o) if isinstance(m, torch.nn.Linear) else None)
    monkeypatch.setattr(TrussVAE, "loss", spy_loss)
    try:
        train(tiny_cfg(data_root, tmp_path / "fp32", epochs=1), progress=False)
        assert seen == {"linear": {torch.float32}, "loss": {torch.float32}, "grad": {False},
                        "eval": {torch.float32}}
        for v in seen.values():
            v.clear()
        summary = train(tiny_cfg(data_root, tmp_path / "bf16", epochs=1, precision="bf16"),
                        progress=False)
    finally:
        handle.remove()
    assert seen["linear"] == {torch.bfloat16}           # the products ran in bfloat16
    assert seen["loss"] == {torch.float32}              # the loss reads float32 outputs
    assert seen["grad"] == {False}                      # and is computed outside autocast
    assert seen["eval"] == {torch.float32}              # validation runs in float32
    assert np.isfinite(summary["best_val_score"])
    ck = load_checkpoint(tmp_path / "bf16" / "last.pt")
    assert all(v.dtype == torch.float32 for v in ck["model"].values() if v.is_floating_point())
    assert ck["config"]["train"]["precision"] == "bf16"
    # the same start and seed in float32 gives nearby, not identical, weights after one epoch
    ref = load_checkpoint(tmp_path / "fp32" / "last.pt")["model"]
    diffs = [float((ck["model"][k] - ref[k]).abs().max()) for k in ref
             if ref[k].is_floating_point()]
    assert 0 < max(diffs) < 0.05


def test_as_float32_casts_half_precision_outputs_only():
    from gnn_truss.training import _as_float32
    out = _as_float32({"a": torch.ones(2, dtype=torch.bfloat16), "b": torch.ones(2,
                       dtype=torch.float64), "c": torch.ones(2, dtype=torch.long), "d": None})
    assert out["a"].dtype == torch.float32 and out["b"].dtype == torch.float64
    assert out["c"].dtype == torch.long and out["d"] is None


def test_train_refine_target_pulls_the_mean_towards_refined_latents(data_root, tmp_path,
                                                                   monkeypatch):
    from gnn_truss import training
    from gnn_truss.nn import vae
    src = tmp_path / "src"
    train(tiny_cfg(data_root, src, epochs=1), progress=False)
    seen = []
    original = vae.refine_latent

    def spy(model, z0, adj, offsets, steps=100, lr=0.01):
        out = original(model, z0, adj, offsets, steps, lr)
        seen.append((z0.shape[0], steps, z0.requires_grad, float((out - z0).abs().max())))
        return out

    monkeypatch.setattr(vae, "refine_latent", spy)
    kw = dict(init_from=str(src / "last.pt"), freeze=["adj_decoder", "offset_decoder"],
              sample_latent=False, lr=1e-3)
    train(tiny_cfg(data_root, tmp_path / "on", epochs=1, refine_target_steps=3,
                   refine_target_weight=5.0, **kw), progress=False)
    # every training batch refined 3 steps from its detached means (validation never)
    assert [(n, k, g) for n, k, g, _ in seen] == [(64, 3, False)] * 3
    assert all(moved > 0 for *_, moved in seen)
    # one gradient step of the term alone moves the encoder's means towards their refined
    # latents (a wrong sign or an undetached target would not)
    from gnn_truss.nn import build_model
    from torch_geometric.loader import DataLoader
    from gnn_truss.dataset import TrussDataset
    m = build_model(TINY_MODEL)
    m.load_state_dict(load_checkpoint(src / "last.pt")["model"])
    b = next(iter(DataLoader(TrussDataset(str(data_root), split="train", limit=300),
                             batch_size=16)))
    mu = m.encode(b)[0]
    z = original(m, mu.detach(), b.adj, b.offset, 3)
    term = training._refine_target_term(m, mu, b, 3)
    assert term.requires_grad and float(term.detach()) > 0
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    opt.zero_grad()
    term.backward()
    assert all(p.grad is None or not p.grad.abs().any() for n, p in m.named_parameters()
               if "decoder." in n)  # the target is detached: no gradient reaches the decoders
    opt.step()
    with torch.no_grad():
        after = ((m.encode(b)[0] - z) ** 2).sum(-1).mean()
    assert float(after) < 0.9 * float(term.detach())
    with pytest.raises(ValueError, match="train.refine_target_steps.*diverged"):
        training._refine_target_term(m, mu.detach() * float("nan"), b, 3)
    seen.clear()
    train(tiny_cfg(data_root, tmp_path / "off", epochs=1, **kw), progress=False)
    assert seen == []  # off by default
    on = load_checkpoint(tmp_path / "on" / "last.pt")["model"]
    off = load_checkpoint(tmp_path / "off" / "last.pt")["model"]
    assert not all(torch.equal(on[n], off[n]) for n in on if n.startswith("encoder."))
    with pytest.raises(ValueError, match="holds the encoder fixed"):
        validate_config(tiny_cfg(data_root, tmp_path, refine_target_steps=2, init_from="x",
                                 freeze=["encoder"]))
    for key, bad in (("refine_target_steps", -1), ("refine_target_steps", 2.5),
                     ("refine_target_weight", -1.0), ("refine_target_weight", float("nan"))):
        with pytest.raises(ValueError, match=f"train.{key}"):
            validate_config(tiny_cfg(data_root, tmp_path, **{key: bad}))


def test_train_augment_axes_permutes_every_training_batch(data_root, tmp_path, monkeypatch):
    from gnn_truss import symmetry
    seen = []
    original = symmetry.permute_data

    def spy(data, perm, normalizer=None, target="stiffness", flip=None):
        out = original(data, perm, normalizer, target, flip=flip)
        seen.append((data.num_graphs, [tuple(p) for p in perm],
                     None if flip is None else [tuple(f) for f in flip], target,
                     torch.equal(out.y, data.y)))
        return out

    monkeypatch.setattr(symmetry, "permute_data", spy)
    train(tiny_cfg(data_root, tmp_path / "aug", epochs=1, augment="axes"), progress=False)
    # 240 training lattices in batches of 64 (last one dropped): 3 permuted batches, each graph
    # with its own draw among all six permutations
    assert [n for n, *_ in seen] == [64, 64, 64]
    assert all(t == "stiffness" and not same for *_, t, same in seen)
    assert len({p for _, perms, *_ in seen for p in perms}) == 6
    assert all(flips is None for _, _, flips, *_ in seen)  # no reflections with "axes"
    seen.clear()
    train(tiny_cfg(data_root, tmp_path / "mirror", epochs=1, augment="axes_mirrors"),
          progress=False)
    # with mirrors: each graph draws one of the 48 (permutation, reflection) pairs
    assert [n for n, *_ in seen] == [64, 64, 64]
    ops = {(p, f) for _, perms, flips, *_ in seen for p, f in zip(perms, flips)}
    assert len({f for _, f in ops}) == 8 and len({p for p, _ in ops}) == 6 and len(ops) > 40
    seen.clear()
    train(tiny_cfg(data_root, tmp_path / "plain", epochs=1), progress=False)
    assert seen == []  # off by default


# ------------------------------------------------------------------ curve-range property loss
NONLINEAR = REPO / "datasets" / "nonlinear" / "raw" / "corpus.npz"


def test_curve_range_loss_by_hand():
    import numpy as np

    from gnn_truss.dataset import TargetNormalizer
    from gnn_truss.training import curve_range_loss
    rng = np.random.default_rng(0)
    # two curves three orders of magnitude apart: the loss sees only relative (range) errors
    strain = np.linspace(0.005, 0.245, 13)
    curves = np.stack([1e-3 * np.minimum(strain / 0.05, 1.0), 1e-6 * strain / 0.245 + 2e-7])
    norm = TargetNormalizer.fit(rng.uniform(1e-5, 3e-3, (50, 13)))
    c = torch.tensor(curves, dtype=torch.float64)
    rngs = c.max(-1, keepdim=True).values - c.min(-1, keepdim=True).values
    exact = norm.transform(c)
    assert float(curve_range_loss(exact, c, norm)) == pytest.approx(0.0, abs=1e-18)
    # every point off by 10 % of its curve's range: 13 * 0.1^2 per lattice, whatever the scale
    shifted = norm.transform(c + 0.1 * rngs)
    assert float(curve_range_loss(shifted, c, norm)) == pytest.approx(0.13, rel=1e-9)
    # off by 10 % on the first curve and 30 % (of its range) on one point of the second
    d = torch.zeros_like(c)
    d[0] = 0.1 * rngs[0]
    d[1, 4] = 0.3 * rngs[1, 0]
    loss = curve_range_loss(norm.transform(c + d), c, norm)
    assert float(loss) == pytest.approx((13 * 0.01 + 0.09) / 2, rel=1e-9)
    # an untrained head's wild outputs are clamped, not overflowed
    assert torch.isfinite(curve_range_loss(torch.full_like(c, 1e4), c, norm))


@pytest.mark.parametrize("cfg, match", [
    ({"train": {"property_loss": "mae"}}, "train.property_loss must be one of"),
    ({"train": {"property_loss": "curve_range"}}, "needs data.target 'curve'"),
])
def test_validate_config_property_loss(cfg, match):
    with pytest.raises(ValueError, match=match):
        validate_config(cfg)
    ok = validate_config({"train": {"property_loss": "curve_range"}, "data": {"target": "curve"}})
    assert ok["train"]["property_loss"] == "curve_range"
    assert validate_config({})["train"]["property_loss"] == "normalised"  # the default


def best_model(run):
    """``(metrics rows, best.pt dict, its model in eval mode)`` of a finished run."""
    from gnn_truss.nn import build_model
    ck = load_checkpoint(run / "best.pt")
    model = build_model(ck["config"]["model"])
    model.load_state_dict(ck["model"])
    return read_rows(run / "metrics.csv"), ck, model.eval()


def test_physical_loss_is_the_sum_of_one_minus_r2():
    """Predicting each component's mean gives R^2 = 0 per component, so the loss is D; a
    prediction with residual r gives sum_j mean(r_j^2) / var_j = sum_j (1 - R^2_j)."""
    from gnn_truss.dataset import TargetNormalizer
    import numpy as np

    from gnn_truss.training import physical_loss
    g = np.random.default_rng(0)
    true = np.exp(g.normal(-5, 0.4, (500, 9)))
    norm = TargetNormalizer.fit(true)
    t = torch.tensor(true)
    scale = t.std(0, unbiased=False)
    mean_pred = norm.transform(t.mean(0).expand_as(t))
    assert float(physical_loss(mean_pred, t, norm, scale)) == pytest.approx(9.0, rel=1e-9)
    assert float(physical_loss(norm.transform(t), t, norm, scale)) == pytest.approx(0.0, abs=1e-18)
    noisy = true * (1 + 0.1 * g.normal(size=true.shape))
    r2 = 1 - ((noisy - true) ** 2).mean(0) / true.var(0)
    got = float(physical_loss(norm.transform(torch.tensor(noisy)), t, norm, scale))
    assert got == pytest.approx(float((1 - r2).sum()), rel=1e-9)


def test_train_with_physical_loss_logs_the_metric_it_names(data_root, tmp_path):
    """train.property_loss 'physical': the logged validation property loss is the scaled
    physical error of the best checkpoint, recomputed here with the training split's standard
    deviations, and not the normalised error of the default."""
    from torch_geometric.loader import DataLoader

    from gnn_truss.training import build_datasets, physical_loss
    cfg = tiny_cfg(data_root, tmp_path / "run", epochs=3, property_loss="physical",
                   augment="axes_mirrors")
    train(cfg, progress=False)
    rows, ck, model = best_model(tmp_path / "run")
    tr, val, _ = build_datasets(ck["config"])
    stiff = torch.cat([b.stiffness.double() for b in DataLoader(tr, batch_size=64)])
    scale = stiff.std(0, unbiased=False).float()
    b = next(iter(DataLoader(val, batch_size=len(val))))
    with torch.no_grad():
        pred = model(b, sample=False)["pred"]
    expect = float(physical_loss(pred, b.stiffness, val.normalizer, scale))
    assert float(rows[ck["epoch"]]["val_property"]) == pytest.approx(expect, rel=1e-4)
    assert abs(float(((pred - b.y) ** 2).sum(-1).mean()) - expect) > 0.1 * expect


def test_physical_loss_drives_the_training_steps(data_root, tmp_path, monkeypatch):
    """Every training step's property term is the physical loss (called with gradients on,
    on the batch's physical stiffness), and the logged training property loss is its mean."""
    import gnn_truss.training as tr
    calls = []
    real = tr.physical_loss

    def spy(pred, true, normalizer, scale):
        value = real(pred, true, normalizer, scale)
        calls.append((torch.is_grad_enabled(), tuple(true.shape), float(value.detach())))
        return value

    monkeypatch.setattr(tr, "physical_loss", spy)
    train(tiny_cfg(data_root, tmp_path / "run", epochs=1, property_loss="physical"),
          progress=False)
    steps = [c for c in calls if c[0]]
    assert len(steps) == 240 // 64  # 240 training lattices of 300, batches of 64, drop_last
    assert all(shape == (64, 9) for _, shape, _ in steps)
    logged = float(read_rows(tmp_path / "run" / "metrics.csv")[0]["train_property"])
    assert logged == pytest.approx(np.mean([v for *_, v in steps]), rel=1e-6)


def test_physical_scale_refuses_labels_it_cannot_scale(data_root, tmp_path):
    from gnn_truss.training import build_datasets, physical_scale, validate_config
    tr, _, _ = build_datasets(validate_config(tiny_cfg(data_root, tmp_path / "run")))
    sd = physical_scale(tr, "stiffness")
    assert sd.shape == (9,) and (sd > 0).all()
    with pytest.raises(ValueError, match="curve label; some are NaN"):
        physical_scale(tr, "curve")  # the stiffness corpus has no curves: NaN
    one = tr[:1]
    with pytest.raises(ValueError, match="component 0 has no spread over the 1 training"):
        physical_scale(one, "stiffness")


def test_resume_with_another_property_loss_refused(data_root, tmp_path):
    out = tmp_path / "run"
    train(tiny_cfg(data_root, out, epochs=1), progress=False)
    with pytest.raises(ValueError, match="property_loss 'normalised', not 'physical'"):
        train(tiny_cfg(data_root, out, epochs=2, property_loss="physical"), progress=False)


def test_train_with_curve_range_loss_logs_the_metric_it_names(tmp_path):
    """The validation property loss in metrics.csv is the range-scaled curve error of the best
    checkpoint, recomputed here from its predictions."""
    from gnn_truss.training import build_datasets, curve_range_loss
    root = tmp_path / "nl"
    (root / "raw").mkdir(parents=True)
    save_compact(load_corpus(NONLINEAR, limit=200), root / "raw" / "corpus.npz")
    cfg = tiny_cfg(root, tmp_path / "run", epochs=3, property_loss="curve_range",
                   property_weight=10.0)
    cfg["data"].update(target="curve", limit=200)
    cfg["model"]["num_targets"] = 13
    train(cfg, progress=False)
    rows, ck, model = best_model(tmp_path / "run")
    _, val, _ = build_datasets(ck["config"])
    from torch_geometric.loader import DataLoader
    b = next(iter(DataLoader(val, batch_size=len(val))))
    with torch.no_grad():
        pred = model(b, sample=False)["pred"]
    expect = float(curve_range_loss(pred, b.curve, val.normalizer))
    logged = float(rows[ck["epoch"]]["val_property"])
    assert logged == pytest.approx(expect, rel=1e-4)
    # and it is not the normalised squared error the default loss would log
    assert abs(float(((pred - b.y) ** 2).sum(-1).mean()) - expect) > 0.1 * expect


# ------------------------------------------------------------------ decoded-lattice predictor
def decoded_model():
    m = {k: v for k, v in TINY_MODEL.items() if k != "predictor_hidden"}
    return {**m, "predictor_input": "decoded", "predictor_gnn_hidden": 16,
            "predictor_gnn_layers": 2, "predictor_gnn_readout": 32}


def test_predictor_on_graph_trains_the_lattice_predictor_on_the_true_graphs(data_root, tmp_path,
                                                                            monkeypatch):
    """train.predictor_on 'graph' beside a frozen VAE: every training step runs the predictor
    on the batch's own graph (with gradients), validation on the decoded latent mean (dense
    path, no gradients); the VAE stays that of the source checkpoint, the predictor learns."""
    from gnn_truss.nn.predictor import GraphPropertyPredictor
    src = tmp_path / "src"
    train(tiny_cfg(data_root, src, epochs=1), progress=False)
    calls = []
    sparse, dense = GraphPropertyPredictor.forward, GraphPropertyPredictor.forward_dense

    def spy_sparse(self, batch):
        calls.append(("graph", torch.is_grad_enabled(), batch.num_graphs))
        return sparse(self, batch)

    def spy_dense(self, adj, offsets, all_pairs=False):
        calls.append(("decoded", torch.is_grad_enabled(), adj.shape[0]))
        return dense(self, adj, offsets, all_pairs)

    monkeypatch.setattr(GraphPropertyPredictor, "forward", spy_sparse)
    monkeypatch.setattr(GraphPropertyPredictor, "forward_dense", spy_dense)
    cfg = tiny_cfg(data_root, tmp_path / "dec", epochs=2, init_from=str(src / "last.pt"),
                   freeze=["encoder", "adj_decoder", "offset_decoder"], predictor_on="graph",
                   property_loss="physical")
    cfg["model"] = decoded_model()
    train(cfg, progress=False)
    steps = 240 // 64
    assert calls.count(("graph", True, 64)) == 2 * steps
    assert sum(c[2] for c in calls if c[0] == "decoded" and not c[1]) == 2 * 30  # val split
    assert all(c[0] == "decoded" for c in calls if not c[1])
    before = load_checkpoint(src / "last.pt")["model"]
    after = load_checkpoint(tmp_path / "dec" / "last.pt")["model"]
    vae = [n for n in after if not n.startswith("predictor.")]
    assert vae and all(torch.equal(after[n], before[n]) for n in vae)
    fresh = build_model_like(cfg).predictor.state_dict()
    assert any(not torch.equal(after["predictor." + n], v) for n, v in fresh.items())


def build_model_like(cfg):
    from gnn_truss.nn import build_model
    torch.manual_seed(validate_config(cfg)["train"]["seed"])
    return build_model(validate_config(cfg)["model"])


def test_predictor_on_is_checked(data_root, tmp_path):
    cfg = tiny_cfg(data_root, tmp_path, predictor_on="graph")
    with pytest.raises(ValueError, match="predictor_input 'decoded'"):
        validate_config(cfg)  # the latent MLP cannot read graphs
    cfg["model"] = decoded_model()
    assert validate_config(cfg)["train"]["predictor_on"] == "graph"
    cfg["train"]["predictor_on"] = "lattice"
    with pytest.raises(ValueError, match="train.predictor_on"):
        validate_config(cfg)


def test_frozen_parts_need_a_checkpoint_and_graph_training_a_live_predictor(data_root, tmp_path,
                                                                            capsys):
    from gnn_truss.cli import main
    cfg = tiny_cfg(data_root, tmp_path / "run", epochs=1, freeze=["encoder"])
    with pytest.raises(ValueError, match="train.init_from"):
        train(cfg, progress=False)  # it would hold random weights fixed
    assert not (tmp_path / "run").exists()
    # the checkpoint may come from the command line after the config is read
    src = tmp_path / "src"
    train(tiny_cfg(data_root, src, epochs=1), progress=False)
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(p), "--no-progress"]) == 2
    assert "train.init_from" in capsys.readouterr().err
    assert main(["train", "--config", str(p), "--init-from", str(src / "last.pt"),
                 "--no-progress"]) == 0
    after = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    before = load_checkpoint(src / "last.pt")["model"]
    assert all(torch.equal(after[n], before[n]) for n in after if n.startswith("encoder."))
    cfg["train"]["init_from"] = "some/checkpoint.pt"
    cfg["model"] = decoded_model()
    cfg["train"].update(predictor_on="graph", freeze=["encoder", "predictor"])
    with pytest.raises(ValueError, match="holds it fixed"):
        validate_config(cfg)


def test_init_from_copies_a_layer_whole_or_not_at_all(data_root, tmp_path):
    """A wider GNN predictor readout: its readout and head weights cannot be copied, so the
    head's bias (same shape) starts fresh with them, while the predictor's message-passing
    body is copied."""
    from gnn_truss.nn import build_model
    from gnn_truss.training import init_from_checkpoint
    src = tmp_path / "src"
    cfg = tiny_cfg(data_root, src, epochs=1)
    cfg["model"] = decoded_model()
    train(cfg, progress=False)
    wide = {**decoded_model(), "predictor_gnn_readout": 48}
    torch.manual_seed(1)
    model = build_model(wide)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    copied, skipped = init_from_checkpoint(model, src / "last.pt", wide)
    after, theirs = model.state_dict(), load_checkpoint(src / "last.pt")["model"]
    assert {"predictor.heads.weight", "predictor.heads.bias"} <= set(skipped)
    assert torch.equal(after["predictor.heads.bias"], fresh["predictor.heads.bias"])
    assert not torch.equal(after["predictor.heads.bias"], theirs["predictor.heads.bias"])
    assert "predictor.convs.0.nn.0.weight" in copied
    assert torch.equal(after["predictor.convs.0.nn.0.weight"],
                       theirs["predictor.convs.0.nn.0.weight"])


# ------------------------------------------------------------------ grafting a lattice predictor
def _save_ck(path, model_cfg, seed):
    from gnn_truss.nn import build_model
    torch.manual_seed(seed)
    model = build_model(model_cfg)
    torch.save({"model": model.state_dict(), "epoch": seed, "config": {
        "model": dict(model_cfg), "data": {"root": "somewhere"}, "train": {}},
        "normalizer": {"seed": seed}, "fingerprint": f"data{seed}"}, path)
    return model


def test_graft_vae_puts_the_lattice_predictor_on_the_new_vae(tmp_path):
    from gnn_truss.nn import build_model
    from gnn_truss.training import graft_vae
    decoded = {**TINY_MODEL, "predictor_input": "decoded", "predictor_gnn_hidden": 16,
               "predictor_gnn_layers": 2, "predictor_gnn_readout": 32}
    decoded.pop("predictor_hidden")
    p_model = _save_ck(tmp_path / "pred.pt", decoded, seed=1)
    v_model = _save_ck(tmp_path / "vae.pt", TINY_MODEL, seed=2)  # a latent-MLP VAE checkpoint
    ck = graft_vae(tmp_path / "pred.pt", tmp_path / "vae.pt")
    assert ck["config"]["model"] == decoded and ck["normalizer"] == {"seed": 1}
    assert ck["fingerprint"] == "data1"
    assert ck["grafted_vae"] == [{"path": str(tmp_path / "vae.pt"), "fingerprint": "data2",
                                  "epoch": 2}]
    model = build_model(ck["config"]["model"])
    model.load_state_dict(ck["model"])  # every tensor present, right shapes
    for part in ("encoder", "adj_decoder", "offset_decoder"):
        for (n, a), b in zip(getattr(model, part).state_dict().items(),
                             getattr(v_model, part).state_dict().values()):
            assert torch.equal(a, b), n
    for a, b in zip(model.predictor.state_dict().values(), p_model.predictor.state_dict().values()):
        assert torch.equal(a, b)
    # F(mu) = G(decode(mu)) with the new VAE's decoders and the old G
    model.eval(), p_model.eval(), v_model.eval()
    mu = torch.randn(5, model.sizes.total, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        A, off, _ = v_model.decode_lattice(mu, near_only=True)
        assert torch.allclose(model.predict(mu), p_model.predictor.forward_dense(A, off))
    torch.save(ck, tmp_path / "grafted.pt")
    assert "grafted_vae" in load_checkpoint(tmp_path / "grafted.pt")  # weights_only loads it
    # grafted again: the history is kept
    _save_ck(tmp_path / "vae3.pt", TINY_MODEL, seed=3)
    again = graft_vae(tmp_path / "grafted.pt", tmp_path / "vae3.pt")
    assert [g["fingerprint"] for g in again["grafted_vae"]] == ["data2", "data3"]


def test_graft_vae_warns_about_other_data_and_drops_the_run_state(tmp_path, caplog):
    from gnn_truss.training import graft_vae
    decoded = {**TINY_MODEL, "predictor_input": "decoded"}
    decoded.pop("predictor_hidden")
    _save_ck(tmp_path / "pred.pt", decoded, seed=1)
    ck = torch.load(tmp_path / "pred.pt", weights_only=True)
    ck.update(best=1.5, bad_epochs=3, optimizer={"state": {}})
    torch.save(ck, tmp_path / "pred.pt")
    # a key written out at its default on one side only is the same architecture
    _save_ck(tmp_path / "vae.pt", {**TINY_MODEL, "edge_readout": False}, seed=2)
    with caplog.at_level("WARNING", logger="gnn_truss.training"):
        out = graft_vae(tmp_path / "pred.pt", tmp_path / "vae.pt")
    assert "trained on other data" in caplog.text and "data2" in caplog.text
    assert not {"best", "bad_epochs", "optimizer"} & set(out)
    caplog.clear()
    _save_ck(tmp_path / "same.pt", TINY_MODEL, seed=1)  # same fingerprint "data1": no warning
    with caplog.at_level("WARNING", logger="gnn_truss.training"):
        graft_vae(tmp_path / "pred.pt", tmp_path / "same.pt")
    assert caplog.text == ""


def test_graft_vae_keys_are_all_the_model_keys_that_shape_the_vae():
    """Every model key outside VAE_KEYS leaves the encoder and decoders unchanged (so a graft may
    take it from the predictor's config), and each VAE key that shapes tensors changes them."""
    from gnn_truss.nn import build_model
    from gnn_truss.nn.vae import MODEL_KEYS
    from gnn_truss.training import VAE_KEYS, VAE_PARTS

    def vae_shapes(cfg):
        return {n: tuple(v.shape) for n, v in build_model(cfg).state_dict().items()
                if n.startswith(VAE_PARTS)}
    base = {**TINY_MODEL, "predictor_input": "decoded"}
    base.pop("predictor_hidden")
    ref = vae_shapes(base)
    other = {"num_targets": 13, "predictor_gnn_hidden": 24, "predictor_gnn_layers": 3,
             "predictor_gnn_readout": 48, "predictor_features": "buckling",
             "predictor_dropout": 0.1, "predictor_input": "latent", "predictor_hidden": [16]}
    assert set(other) == set(MODEL_KEYS) - set(VAE_KEYS)
    for key, value in other.items():
        cfg = {**base, key: value}
        if key == "predictor_hidden":
            cfg["predictor_input"] = "latent"
        if key == "predictor_features":
            cfg["num_targets"] = 13
        assert vae_shapes(cfg) == ref, key
    shaping = {"topology": 5, "shared": 9, "geometry": 3, "hidden": 24, "layers": 3,
               "readout": 72, "decoder_hidden": [24, 40], "offset_hidden": [40],
               "edge_readout": True, "physics_readout": True}
    for key, value in shaping.items():
        assert vae_shapes({**base, key: value}) != ref, key


def test_graft_vae_refuses_a_latent_predictor_and_a_corrupt_checkpoint(tmp_path):
    from gnn_truss.training import graft_vae
    _save_ck(tmp_path / "vae.pt", TINY_MODEL, seed=2)
    with pytest.raises(ValueError, match="reads the latent mean"):
        graft_vae(tmp_path / "vae.pt", tmp_path / "vae.pt")
    decoded = {**TINY_MODEL, "predictor_input": "decoded"}
    decoded.pop("predictor_hidden")
    _save_ck(tmp_path / "pred.pt", decoded, seed=1)
    _save_ck(tmp_path / "cut.pt", TINY_MODEL, seed=4)
    cut = torch.load(tmp_path / "cut.pt", weights_only=True)
    del cut["model"][next(n for n in cut["model"] if n.startswith("adj_decoder."))]
    torch.save(cut, tmp_path / "cut.pt")
    with pytest.raises(ValueError, match="cut.pt: corrupt checkpoint.*adj_decoder"):
        graft_vae(tmp_path / "pred.pt", tmp_path / "cut.pt")
    # weights of another shape than the checkpoint's own config builds
    _save_ck(tmp_path / "odd.pt", TINY_MODEL, seed=5)
    odd = torch.load(tmp_path / "odd.pt", weights_only=True)
    odd["config"]["model"]["hidden"] = 32
    torch.save(odd, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match=r"odd.pt: corrupt checkpoint, tensor\(s\) \['encoder"):
        graft_vae(tmp_path / "pred.pt", tmp_path / "odd.pt")
    bad = torch.load(tmp_path / "pred.pt", weights_only=True)
    del bad["model"][next(n for n in bad["model"] if n.startswith("predictor."))]
    torch.save(bad, tmp_path / "badpred.pt")
    with pytest.raises(ValueError, match="badpred.pt: corrupt checkpoint.*predictor"):
        graft_vae(tmp_path / "badpred.pt", tmp_path / "vae.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        graft_vae(tmp_path / "pred.pt", tmp_path / "junk.pt")


@pytest.mark.parametrize("vae_cfg", [{"shared": 6, "topology": 7}, {"hidden": 32},
                                     {"encoder": "mlp", "mlp_hidden": [24], "offset_weight": 3.0}],
                         ids=["latent", "width", "mlp"])
def test_graft_vae_takes_another_vae_architecture(tmp_path, vae_cfg):
    """The predictor reads the decoded lattice, so a VAE of another architecture (latent
    sizes, widths, encoder kind) carries it: the result's config takes the VAE's keys, its
    predictor keys and weights stay the predictor's, and F(mu) = G(decode(mu)) holds with the
    new VAE."""
    from gnn_truss.nn import build_model
    from gnn_truss.training import graft_vae
    decoded = {**TINY_MODEL, "predictor_input": "decoded", "predictor_gnn_hidden": 16,
               "predictor_gnn_layers": 2, "predictor_gnn_readout": 32}
    decoded.pop("predictor_hidden")
    p_model = _save_ck(tmp_path / "pred.pt", decoded, seed=1)
    v_cfg = {**TINY_MODEL, **vae_cfg}
    v_model = _save_ck(tmp_path / "vae.pt", v_cfg, seed=2)
    ck = graft_vae(tmp_path / "pred.pt", tmp_path / "vae.pt")
    cfg = ck["config"]["model"]
    assert {k: cfg[k] for k in vae_cfg} == vae_cfg
    assert cfg["predictor_input"] == "decoded" and cfg["predictor_gnn_hidden"] == 16
    assert "predictor_hidden" not in cfg
    model = build_model(cfg)
    model.load_state_dict(ck["model"])  # strict: every tensor present, right shapes
    assert model.sizes == v_model.sizes
    model.eval(), p_model.eval(), v_model.eval()
    mu = torch.randn(5, model.sizes.total, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        A, off, _ = v_model.decode_lattice(mu, near_only=True)
        assert torch.allclose(model.predict(mu), p_model.predictor.forward_dense(A, off))
        for a, b in zip(model.encoder.state_dict().values(),
                        v_model.encoder.state_dict().values()):
            assert torch.equal(a, b)


def test_cli_graft_writes_the_checkpoint_and_refuses_to_overwrite_an_input(tmp_path, capsys):
    from gnn_truss.cli import main
    decoded = {**TINY_MODEL, "predictor_input": "decoded"}
    decoded.pop("predictor_hidden")
    _save_ck(tmp_path / "pred.pt", decoded, seed=1)
    _save_ck(tmp_path / "vae.pt", TINY_MODEL, seed=2)
    assert main(["graft", str(tmp_path / "pred.pt"), str(tmp_path / "vae.pt"),
                 "--out", str(tmp_path / "g" / "model.pt")]) == 0
    assert load_checkpoint(tmp_path / "g" / "model.pt")["grafted_vae"][-1]["fingerprint"] == "data2"
    before = (tmp_path / "pred.pt").read_bytes()
    assert main(["graft", str(tmp_path / "pred.pt"), str(tmp_path / "vae.pt"),
                 "--out", str(tmp_path / "pred.pt")]) == 2
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / "pred.pt").read_bytes() == before


def test_resume_with_a_changed_latent_option_warns(data_root, tmp_path, caplog):
    out = tmp_path / "run"
    train(tiny_cfg(data_root, out, epochs=1), progress=False)
    with caplog.at_level("WARNING", logger="gnn_truss.training"):
        train(tiny_cfg(data_root, out, epochs=2, sample_latent=False), progress=False)
    assert "train.sample_latent False (it was trained with True)" in caplog.text
    assert len(read_rows(out / "metrics.csv")) == 2  # resumed, not restarted


# ------------------------------------------------------------------ weight average


def test_weight_average_by_hand():
    """The average follows w_avg <- d w_avg + (1 - d) w with d = min(decay, (1+n)/(10+n)),
    skips frozen parameters, and applied() lends the averages and restores the weights."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    net[1].bias.requires_grad_(False)
    ema = WeightAverage(net, 0.5)
    assert set(ema.shadow) == {"0.weight", "0.bias", "1.weight"}
    w0 = net[0].weight.detach().clone()
    expect = w0.clone()
    rng = np.random.default_rng(0)
    for n in range(1, 5):  # d = min(0.5, (1+n)/(10+n)): 2/11, 3/12, 4/13, 5/14
        with torch.no_grad():
            net[0].weight.copy_(torch.tensor(rng.normal(size=(3, 2)), dtype=torch.float32))
        ema.update(net)
        d = min(0.5, (1 + n) / (10 + n))
        expect = d * expect + (1 - d) * net[0].weight.detach()
    assert ema.updates == 4
    torch.testing.assert_close(ema.shadow["0.weight"], expect)
    own = net[0].weight.detach().clone()
    with ema.applied(net):
        torch.testing.assert_close(net[0].weight.detach(), expect)
    assert torch.equal(net[0].weight.detach(), own)  # restored
    with pytest.raises(RuntimeError, match="boom"), ema.applied(net):
        raise RuntimeError("boom")
    assert torch.equal(net[0].weight.detach(), own)  # restored after an error too
    again = WeightAverage(net, 0.5)
    again.load_state_dict(ema.state_dict())
    assert again.updates == 4 and torch.equal(again.shadow["0.weight"], ema.shadow["0.weight"])
    net[1].weight.requires_grad_(False)
    with pytest.raises(ValueError, match="other parameters"):
        WeightAverage(net, 0.5).load_state_dict(ema.state_dict())
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="decay"):
            WeightAverage(net, bad)


def test_train_ema_validates_and_keeps_the_averaged_weights(data_root, tmp_path):
    out = tmp_path / "run"
    train(tiny_cfg(data_root, out, epochs=1, ema_decay=0.9), progress=False)
    last, best = load_checkpoint(out / "last.pt"), load_checkpoint(out / "best.pt")
    assert best["epoch"] == last["epoch"] == 0
    shadow = last["ema"]["shadow"]
    steps = len(read_rows(out / "metrics.csv")) * 3  # 3 full batches of 64 an epoch
    assert last["ema"]["updates"] == steps
    moved = 0
    for name, value in best["model"].items():
        if name in shadow:  # the averaged weights are the ones best.pt keeps
            assert torch.equal(value, shadow[name]), name
            moved += not torch.equal(value, last["model"][name])
        else:  # buffers: the model's own
            assert torch.equal(value, last["model"][name]), name
    assert moved > 0  # and they are not the last iterate
    # the validation row is that of the averaged weights
    from gnn_truss.nn import build_model
    from gnn_truss.training import _evaluate_loss, build_datasets
    from torch_geometric.loader import DataLoader
    cfg = validate_config(tiny_cfg(data_root, out, epochs=1, ema_decay=0.9))
    tr, va, _ = build_datasets(cfg)
    model = build_model(cfg["model"])
    model.load_state_dict(best["model"])
    res = _evaluate_loss(model, DataLoader(va, batch_size=1024), torch.device("cpu"),
                         cfg["train"]["beta_max"], 1.0, tr.normalizer)
    row = read_rows(out / "metrics.csv")[0]
    assert float(row["val_score"]) == pytest.approx(res["score"], rel=1e-6)


def test_ema_run_resumed_equals_an_uninterrupted_one(data_root, tmp_path, caplog):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train(tiny_cfg(data_root, whole, epochs=2, ema_decay=0.9), progress=False)
    train(tiny_cfg(data_root, parts, epochs=2, ema_decay=0.9, time_limit_minutes=1e-9),
          progress=False)
    train(tiny_cfg(data_root, parts, epochs=2, ema_decay=0.9), progress=False)
    a, b = load_checkpoint(whole / "last.pt"), load_checkpoint(parts / "last.pt")
    assert a["ema"]["updates"] == b["ema"]["updates"] == 6  # 3 steps an epoch
    for k, v in a["ema"]["shadow"].items():
        assert torch.equal(v, b["ema"]["shadow"][k]), k
    # a run without an average, resumed with one, says where the average starts
    plain = tmp_path / "plain"
    train(tiny_cfg(data_root, plain, epochs=1), progress=False)
    with caplog.at_level("WARNING", logger="gnn_truss.training"):
        train(tiny_cfg(data_root, plain, epochs=2, ema_decay=0.9), progress=False)
    assert "holds no weight average" in caplog.text
    assert "train.ema_decay 0.9 (it was trained with None)" in caplog.text


# ------------------------------------------------------------------ content split


def test_data_split_by_content_trains_and_old_checkpoints_resume(data_root, tmp_path):
    """data.split_by: checked; a content-split run trains on the content split's lattices; a
    last.pt whose config predates the key (no data.split_by) resumes as a permutation split."""
    from gnn_truss.dataset import corpus_split
    with pytest.raises(ValueError, match="data.split_by"):
        validate_config({"data": {"split_by": "hash"}})
    with pytest.raises(ValueError, match="data.split_by"):
        validate_config({"data": {"split_by": "prefix:x"}})
    with pytest.raises(ValueError, match="data.limit is 100"):
        validate_config({"data": {"split_by": "prefix:200", "limit": 100}})
    assert validate_config({"data": {"split_by": "prefix:200"}})["data"]["split_by"] \
        == "prefix:200"
    assert validate_config({})["data"]["split_by"] == "permutation"
    cfg = tiny_cfg(data_root, tmp_path / "content", epochs=1)
    cfg["data"]["split_by"] = "content"
    train(cfg, progress=False)
    from gnn_truss.training import build_datasets
    tr, va, te = build_datasets(validate_config(cfg))
    split = corpus_split(load_corpus(data_root / "raw" / "corpus.npz", limit=300),
                         split_by="content")
    for d, name in ((tr, "train"), (va, "val"), (te, "test")):
        assert sorted(int(g.idx) for g in d) == split[name].tolist(), name
    assert load_checkpoint(tmp_path / "content" / "best.pt")["config"]["data"]["split_by"] \
        == "content"
    out = tmp_path / "old"
    train(tiny_cfg(data_root, out, epochs=1), progress=False)
    ck = torch.load(out / "last.pt", weights_only=True)
    del ck["config"]["data"]["split_by"]  # as written before data.split_by existed
    torch.save(ck, out / "last.pt")
    assert train(tiny_cfg(data_root, out, epochs=2), progress=False)["epochs_done"] == 2
    assert len(read_rows(out / "metrics.csv")) == 2  # resumed, not refused or restarted


# ------------------------------------------------------------------ checkpoint_info
SHIPPED_CK = REPO / "datasets" / "checkpoints" / "default" / "model.pt"


def test_checkpoint_info_of_the_shipped_checkpoint():
    from gnn_truss.evaluation import target_check
    from gnn_truss.nn import build_model
    from gnn_truss.training import checkpoint_info
    info = checkpoint_info(SHIPPED_CK)
    ck = load_checkpoint(SHIPPED_CK)
    model = build_model(ck["config"]["model"])
    sd = model.state_dict()
    assert info["parameters"]["total"] == sum(t.numel() for t in sd.values())
    assert info["parameters"]["encoder"] == sum(t.numel() for k, t in sd.items()
                                                if k.startswith("encoder."))
    assert info["latent"] == {"topology": 8, "shared": 32, "geometry": 8}
    assert info["encoder"] == "gnn" and info["predictor_input"] == "latent"
    assert info["epoch"] == ck["epoch"] and info["fingerprint"] == ck["fingerprint"]
    ch = info["config_changes"]
    assert ch["model.edge_readout"] is True and ch["train.property_loss"] == "physical"
    assert ch["train.beta_max"] == 0.0005
    assert "model.hidden" not in ch and "model.encoder" not in ch  # the defaults (64, gnn)
    report = json.loads((SHIPPED_CK.parent / "report.json").read_text())
    assert info["report"]["path"] == str(SHIPPED_CK.parent / "report.json")
    assert info["report"]["targets"] == target_check(report)


def test_checkpoint_info_ignores_a_report_of_another_checkpoint(tmp_path):
    import shutil
    from gnn_truss.training import checkpoint_info
    ck = tmp_path / "model.pt"
    shutil.copy(SHIPPED_CK, ck)
    rep = json.loads((SHIPPED_CK.parent / "report.json").read_text())
    (tmp_path / "report.json").write_text(json.dumps({**rep, "epoch": rep["epoch"] + 1}))
    assert checkpoint_info(ck)["report"] is None
    # same data and epoch, another file: a fine-tuning stage's report (the baseline's here)
    (tmp_path / "report.json").write_text(json.dumps({**rep, "checkpoint": "x/best.pt"}))
    assert checkpoint_info(ck)["report"] is None
    graft = {**rep, "grafted_vae": [{"path": "v.pt", "fingerprint": "f", "epoch": 3}]}
    (tmp_path / "report.json").write_text(json.dumps(graft))
    assert checkpoint_info(ck)["report"] is None
    (tmp_path / "evaluation").mkdir()  # where 'gnn-truss evaluate' writes by default
    (tmp_path / "evaluation" / "report.json").write_text(json.dumps(rep))
    assert checkpoint_info(ck)["report"]["path"] == str(tmp_path / "evaluation" / "report.json")
    (tmp_path / "model_report.json").write_text(json.dumps(rep))   # <stem>_report.json first
    assert checkpoint_info(ck)["report"]["path"] == str(tmp_path / "model_report.json")
    (tmp_path / "model_report.json").write_text("{not json")
    assert checkpoint_info(ck)["report"]["path"] == str(tmp_path / "evaluation" / "report.json")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        (tmp_path / "bad.pt").write_bytes(b"garbage")
        checkpoint_info(tmp_path / "bad.pt")


def test_cli_info(capsys, tmp_path):
    from gnn_truss.cli import main
    assert main(["info", str(SHIPPED_CK)]) == 0
    out = capsys.readouterr().out
    assert "gnn encoder, latents 8/32/8" in out and "2.01 M" in out
    assert "train.property_loss: physical" in out
    assert "exact-lattice match" in out and "(target >= 0.95: not met)" in out
    assert main(["info", str(SHIPPED_CK), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"]["total"] > 2_000_000 and info["report"]["split"] == "test"
    assert main(["info", str(tmp_path / "none.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["info", str(tmp_path)]) == 2
    assert "is a folder, not a file" in capsys.readouterr().err


def test_config_changes_reads_yaml_lists_as_the_tuple_defaults():
    from gnn_truss.nn.vae import MODEL_DEFAULTS
    from gnn_truss.training import _config_changes
    base = {**DEFAULT_CONFIG, "model": {**MODEL_DEFAULTS, **DEFAULT_CONFIG["model"]}}
    cfg = validate_config({"model": {"encoder": "mlp", "mlp_hidden": [512, 512],
                                     "decoder_hidden": [256, 256]}, "train": {"lr": 0.01}})
    assert _config_changes(cfg, base) == {"model.encoder": "mlp",
                                          "model.decoder_hidden": [256, 256],
                                          "train.lr": 0.01}


def test_device_under_torchrun_is_the_local_rank_gpu(monkeypatch):
    from gnn_truss import training
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert training._device("auto") == torch.device("cuda")
    assert training._device("cpu") == torch.device("cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert training._device("auto") == torch.device("cuda", 1)
    assert training._device("cuda") == torch.device("cuda", 1)
    assert training._device("cuda:0") == torch.device("cuda", 0)   # as asked
    assert training._device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert training._device("auto") == torch.device("cpu")


def test_dist_selects_the_local_rank_gpu_before_nccl(monkeypatch):
    import torch.distributed as dist
    from gnn_truss import training
    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", d)))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group",
                        lambda backend: calls.append(("init", backend)))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    assert training._dist() == (1, 2)
    assert calls == [("set_device", 1), ("init", "nccl")]
