"""Probe: the stiffness R^2 per component of the G of decoded-predictor checkpoints read on the
*true* graphs of a split (G as a surrogate of the FE of the lattice it reads), against the one
pass through the decoded lattice.

    python datasets/checkpoints/decoded/probes/true_graph_r2.py CKPT [CKPT ...] [--split test]
"""
import argparse

import torch
from torch_geometric.loader import DataLoader

from gnn_truss.dataset import TargetNormalizer
from gnn_truss.evaluation import checkpoint_datasets
from gnn_truss.exploration import load_model

ap = argparse.ArgumentParser()
ap.add_argument("checkpoints", nargs="+")
ap.add_argument("--split", default="test")
args = ap.parse_args()
torch.set_num_threads(1)


def r2(p, y):
    return 1 - ((p - y) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)


for path in args.checkpoints:
    model, ck = load_model(path)
    model.eval()
    cfg, dsets = checkpoint_datasets(ck, path)
    norm = TargetNormalizer.from_dict(ck["normalizer"])
    true, one, ys = [], [], []
    for b in DataLoader(dsets[args.split], batch_size=512):
        with torch.no_grad():
            true.append(norm.inverse(model.predictor(b).double()))
            mu = model.encode(b)[0]
            one.append(norm.inverse(model.predict(mu).double()))
        ys.append(norm.inverse(b.y.double()))
    y = torch.cat(ys)
    for name, p in (("true graphs", torch.cat(true)), ("one pass", torch.cat(one))):
        v = r2(p, y)
        print(f"{path} {name}: " + " ".join(f"{x:.4f}" for x in v.tolist())
              + f"  min {v.min():.4f}")
