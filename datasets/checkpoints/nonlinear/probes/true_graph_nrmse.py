"""Probe: the curve NRMSE of the G of one or more curve checkpoints read on the *true* graphs of
the test split (each with its buckling features from the table of data.features), for one
copy and averaged over the 16 symmetric copies that keep z (the features are invariant under
them); with several checkpoints also their average (an ensemble).

    python datasets/checkpoints/nonlinear/probes/true_graph_nrmse.py CKPT [CKPT ...] [--split test]
"""
import argparse

import torch
from torch_geometric.loader import DataLoader

from gnn_truss.dataset import TargetNormalizer
from gnn_truss.evaluation import checkpoint_datasets, nrmse_curves
from gnn_truss.exploration import load_model
from gnn_truss.symmetry import allowed_symmetries, permute_data

ap = argparse.ArgumentParser()
ap.add_argument("checkpoints", nargs="+")
ap.add_argument("--split", default="test")
args = ap.parse_args()
torch.set_num_threads(1)
syms = allowed_symmetries("curve")
preds, Y = [], None
for path in args.checkpoints:
    model, ck = load_model(path)
    model.eval()
    cfg, dsets = checkpoint_datasets(ck, path)
    norm = TargetNormalizer.from_dict(ck["normalizer"])
    one, avg, ys = [], [], []
    for b in DataLoader(dsets[args.split], batch_size=256):
        with torch.no_grad():
            copies = [model.predictor(permute_data(b, p, norm, "curve", f)) for p, f in syms]
        one.append(norm.inverse(copies[0].double()))
        avg.append(norm.inverse(torch.stack(copies).double()).mean(0))
        ys.append(b.curve.double())
    one, avg, y = torch.cat(one), torch.cat(avg), torch.cat(ys)
    if Y is not None and not torch.equal(Y, y):
        raise SystemExit("the checkpoints do not share the split")
    Y = y
    preds.append((one, avg))
    print(f"{path}: one copy {100 * nrmse_curves(one, y):.3f} %, 16 copies averaged "
          f"{100 * nrmse_curves(avg, y):.3f} %  ({len(y)} {args.split} lattices)")
if len(preds) > 1:
    one = torch.stack([p[0] for p in preds]).mean(0)
    avg = torch.stack([p[1] for p in preds]).mean(0)
    print(f"ensemble of {len(preds)}: one copy {100 * nrmse_curves(one, Y):.3f} %, "
          f"16 copies averaged {100 * nrmse_curves(avg, Y):.3f} %")
