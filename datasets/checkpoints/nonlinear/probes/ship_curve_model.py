"""Make the shipped curve checkpoint from the last stage of its chain (sessions 40 and 44).

``rebuild_g3.sh`` trains G3 into ``runs/nl_pfx3_drop/best.pt`` (shipped in sessions 40-43; that
file came from the session-37 run, which read a copy of the corpus in ``runs/nl_pfx3``) and
then G5, the shipped one since session 44, into ``runs/nl_g5/best.pt`` (``python
ship_curve_model.py runs/nl_g5/best.pt``, the default SOURCE; the script was ``ship_g3.py``
until session 46). This script writes SOURCE to
``datasets/checkpoints/nonlinear/model.pt`` with the config's ``data.root`` pointed at the
shipped corpus (``datasets/nonlinear``; ``data.limit`` selects the lattices a checkpoint
trained on) and ``out`` at the shipped folder; weights, normaliser, epoch and fingerprint are
copied unchanged, and so is ``num_lattices`` where the source has it (checkpoints
written since session 41). Before writing, it checks that the dataset at the new root has the
checkpoint's fingerprint, so the relocated checkpoint reads exactly the data it was trained on.

    python datasets/checkpoints/nonlinear/probes/ship_curve_model.py [SOURCE] [DEST]
"""
import argparse
import copy
from pathlib import Path

from gnn_truss.evaluation import checkpoint_datasets
from gnn_truss.training import _atomic_save, load_checkpoint

ROOT = "datasets/nonlinear"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", nargs="?", default="runs/nl_g5/best.pt")
    p.add_argument("dest", nargs="?", default="datasets/checkpoints/nonlinear/model.pt")
    args = p.parse_args()
    ck = load_checkpoint(args.source)
    out = copy.deepcopy(ck)
    out["config"]["data"]["root"] = ROOT
    out["config"]["out"] = str(Path(args.dest).parent)
    # raises ValueError on a fingerprint mismatch
    checkpoint_datasets(out, args.dest)
    keep = ("model", "epoch", "config", "normalizer", "fingerprint", "num_lattices")
    _atomic_save({k: out[k] for k in keep if k in out}, Path(args.dest))  # never a half-written file
    print(f"{args.source} -> {args.dest}: epoch {out['epoch']}, fingerprint "
          f"{out['fingerprint'][:12]}, data.root {ROOT}")


if __name__ == "__main__":
    main()
