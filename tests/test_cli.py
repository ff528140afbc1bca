"""The gnn-truss command line: help, show, homogenize, errors."""
import json
import subprocess
import sys

import matplotlib.image as mpimg
import numpy as np
import pytest

from gnn_truss.cli import main
from gnn_truss.io import save_lattice
from gnn_truss.truss import Truss

EXPLORE = ["sample", "interpolate", "traverse"]


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ["show", "homogenize", "data", "compress", "buckle", "train", "evaluate", "compare", *EXPLORE,
                "design", "export", "info"]:
        assert cmd in out
    assert "not available yet" not in out


# design and export (other modules, imported when run) are tested in test_exploration.py
@pytest.mark.parametrize("cmd", ["show", "homogenize", "data", "compress", "buckle", "train",
                                 "evaluate", "compare", "info", *EXPLORE])
def test_each_subcommand_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert "usage: gnn-truss " + cmd in capsys.readouterr().out


def test_show_prints_summary_and_saves_png(tmp_path, capsys):
    out = tmp_path / "sc.png"
    assert main(["show", "sc", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "10 nodes, 12 struts" in text and "valid" in text
    img = mpimg.imread(out)
    assert img.ndim == 3 and img.shape[0] > 200


def test_show_json(tmp_path, capsys):
    assert main(["show", "bcc", "--json", "--out", str(tmp_path / "b.png")]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[:out.rindex("}") + 1])
    assert summary["periodic_nodes"] == 10 and summary["periodic_struts"] == 16


def test_homogenize_sc_values(capsys):
    assert main(["homogenize", "sc", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["S"][0] == pytest.approx(0.05, rel=1e-9)          # C11 = rho/3
    assert res["S"][6] == pytest.approx(1.04702e-3, rel=1e-5)    # C44 (SPEC.md 3)
    assert res["properties"]["E1"] == pytest.approx(0.05, rel=1e-9)


def test_homogenize_file_with_plot(tmp_path, capsys):
    f = save_lattice(Truss.elementary("octet"), tmp_path / "o.json")
    png = tmp_path / "surf.png"
    assert main(["homogenize", str(f), "--plot", str(png)]) == 0
    assert "C11" not in capsys.readouterr().err
    assert mpimg.imread(png).shape[0] > 200


def test_invalid_lattice_reports_rule(tmp_path, capsys):
    f = save_lattice(Truss.from_edges([(0, 13)]), tmp_path / "dangling.json")
    assert main(["homogenize", str(f)]) == 1
    err = capsys.readouterr().err
    assert "invalid" in err and "no_dangling" in err


def test_bad_inputs_exit_2(tmp_path, capsys):
    assert main(["show", "nonexistent_lattice"]) == 2
    assert "neither an elementary lattice" in capsys.readouterr().err
    assert main(["homogenize", "sc", "--density", "1.5"]) == 2
    assert "relative density" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # --config is required
        main(["train"])
    assert e.value.code == 2
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_threads_option_sets_torch_threads_and_rejects_bad_counts(capsys):
    import torch

    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    try:
        assert main(["--threads", str(target), "homogenize", "sc", "--json"]) == 0
        assert torch.get_num_threads() == target
        capsys.readouterr()
        for bad in ("0", "-2", "two", "1.5"):
            with pytest.raises(SystemExit) as e:
                main(["--threads", bad, "homogenize", "sc"])
            assert e.value.code == 2
            assert "--threads: must be a whole number >= 1" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)


def test_console_script_entry_point():
    r = subprocess.run([sys.executable, "-m", "gnn_truss.cli", "--help"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "homogenize" in r.stdout


def test_data_build_pack_export_import_stats(tmp_path, capsys):
    out = tmp_path / "corpus"
    assert main(["data", "build", "--n", "12", "--out", str(out), "--shard-size", "6",
                 "--workers", "1", "--no-progress"]) == 0
    assert "unique labelled lattices" in capsys.readouterr().out
    packed = tmp_path / "c.npz"
    assert main(["data", "pack", str(out), str(packed)]) == 0
    capsys.readouterr()
    assert main(["data", "unpack", str(packed), str(tmp_path / "unpacked")]) == 0
    n_shards = len(list((out / "shards").glob("shard-*.npz")))
    from gnn_truss.corpus import load_corpus
    assert (f"unpacked {len(load_corpus(packed))} lattices into {n_shards} shards"
            in capsys.readouterr().out)
    assert main(["data", "unpack", str(packed), str(tmp_path / "unpacked")]) == 2
    assert "already holds a corpus" in capsys.readouterr().err
    assert main(["data", "export", str(packed), str(tmp_path / "pub")]) == 0
    assert (tmp_path / "pub" / "stiffness-vec.csv").exists()
    assert main(["data", "import", str(tmp_path / "pub"), str(tmp_path / "back.npz")]) == 0
    capsys.readouterr()
    from gnn_truss.corpus import load_corpus
    a, b = load_corpus(packed), load_corpus(tmp_path / "back.npz")
    np.testing.assert_array_equal(a.adj, b.adj)
    np.testing.assert_allclose(a.stiffness, b.stiffness, rtol=1e-6)
    png = tmp_path / "proj.png"
    assert main(["data", "stats", str(packed), "--plot", str(png), "--geometry-sample",
                 "5", "--json-out", str(tmp_path / "s.json")]) == 0
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["num_lattices"] == len(a)
    assert abs(sum(stats["node_type_share"].values()) - 1) < 1e-12
    assert mpimg.imread(png).shape[0] > 500
    assert (tmp_path / "proj_hist.png").exists()


def test_data_bad_inputs(tmp_path, capsys):
    assert main(["data", "build", "--n", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--n must be positive" in capsys.readouterr().err
    assert main(["data", "stats", str(tmp_path / "nothing")]) == 2
    assert "not a corpus" in capsys.readouterr().err


def test_compress_prints_label_and_saves_png(tmp_path, capsys):
    png = tmp_path / "c.png"
    assert main(["compress", "bcc", "--max-strain", "0.05", "--max-step", "0.01", "--elements",
                 "2", "--json", "--out", str(png)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["ok"] and len(res["label"]) == 13
    assert res["label"][0] == pytest.approx(0.005 * res["stress"][1] / res["strain"][1],
                                            rel=0.05)  # linear at small strain
    assert res["label"][-1] is None  # beyond --max-strain
    assert mpimg.imread(png).shape[0] > 300


def test_compress_bad_axis_and_lattice(capsys):
    with pytest.raises(SystemExit):
        main(["compress", "sc", "--axis", "w"])
    assert main(["compress", "no_such"]) == 2


def test_report_names_of_a_baseline_comparison():
    """The columns of `evaluate --baseline` name the checkpoint file, or its folder for the
    generic file names."""
    from gnn_truss.cli import _report_name
    assert _report_name({"checkpoint": "datasets/checkpoints/default/mlp_baseline.pt"}) == \
        "mlp_baseline"
    assert _report_name({"checkpoint": "datasets/checkpoints/decoded/model.pt"}) == "decoded"
    assert _report_name({"checkpoint": "runs/default/best.pt"}) == "default"
    assert _report_name({}) == "model" and _report_name({"checkpoint": None}) == "model"
