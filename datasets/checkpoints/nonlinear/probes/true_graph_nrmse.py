"""Probe: the curve NRMSE of the G of one or more curve checkpoints read on the *true* graphs of
the test split of the first one (each lattice with its buckling features from that
checkpoint's table, data.features), for one copy and averaged over the 16 symmetric copies that
keep z (the features are invariant under them); with several checkpoints also their average
(an ensemble). ``--unseen`` keeps only the lattices that no checkpoint trained or validated on
(checkpoints trained on a prefix of the first one's corpus, as the curve corpus grows at its
end).

    python datasets/checkpoints/nonlinear/probes/true_graph_nrmse.py CKPT [CKPT ...] [--split test] [--unseen]
"""
import argparse

import numpy as np
import torch
from torch_geometric.loader import DataLoader

from gnn_truss.dataset import TargetNormalizer
from gnn_truss.evaluation import checkpoint_datasets, nrmse_curves
from gnn_truss.exploration import load_model
from gnn_truss.symmetry import allowed_symmetries, permute_data

ap = argparse.ArgumentParser()
ap.add_argument("checkpoints", nargs="+")
ap.add_argument("--split", default="test")
ap.add_argument("--unseen", action="store_true",
                help="only the lattices in no checkpoint's train or validation split")
args = ap.parse_args()
torch.set_num_threads(1)
syms = allowed_symmetries("curve")
loaded = [load_model(p) for p in args.checkpoints]
base = checkpoint_datasets(loaded[0][1], args.checkpoints[0])[1][args.split]
idx = np.array([int(d.idx) for d in base])
keep = np.ones(len(idx), dtype=bool)
if args.unseen:
    for path, (_, ck) in zip(args.checkpoints, loaded):
        ds = checkpoint_datasets(ck, path)[1]
        seen = {int(d.idx) for s in ("train", "val") for d in ds[s]}
        keep &= ~np.isin(idx, list(seen))
print(f"{int(keep.sum())} of the {len(idx)} {args.split} lattices of {args.checkpoints[0]}"
      + (" (unseen by every checkpoint)" if args.unseen else ""))
preds, Y = [], None
for path, (model, ck) in zip(args.checkpoints, loaded):
    model.eval()
    norm = TargetNormalizer.from_dict(ck["normalizer"])
    one, avg, ys = [], [], []
    for b in DataLoader(base, batch_size=256):
        with torch.no_grad():
            copies = [model.predictor(permute_data(b, p, norm, "curve", f)) for p, f in syms]
        one.append(norm.inverse(copies[0].double()))
        avg.append(norm.inverse(torch.stack(copies).double()).mean(0))
        ys.append(b.curve.double())
    k = torch.as_tensor(keep)
    one, avg, Y = torch.cat(one)[k], torch.cat(avg)[k], torch.cat(ys)[k]
    preds.append((one, avg))
    print(f"{path}: one copy {100 * nrmse_curves(one, Y):.3f} %, 16 copies averaged "
          f"{100 * nrmse_curves(avg, Y):.3f} %")
if len(preds) > 1:
    one = torch.stack([p[0] for p in preds]).mean(0)
    avg = torch.stack([p[1] for p in preds]).mean(0)
    print(f"ensemble of {len(preds)}: one copy {100 * nrmse_curves(one, Y):.3f} %, "
          f"16 copies averaged {100 * nrmse_curves(avg, Y):.3f} %")
