"""Probe (not part of the package): R^2 of the average of two decoded-checkpoint snapshots' one-pass
stiffness predictions (stage 1 and the restart) on the test split, against each alone.

python datasets/checkpoints/decoded/probes/snapshot_ensemble.py STAGE1.pt RESTART.pt
"""
import sys

import numpy as np
import torch
from torch_geometric.loader import DataLoader

from gnn_truss.dataset import TargetNormalizer
from gnn_truss.evaluation import checkpoint_datasets, r2_per_component
from gnn_truss.exploration import load_model

torch.set_num_threads(2)
preds, true = [], None
for path in sys.argv[1:3]:
    model, ck = load_model(path)
    _, ds = checkpoint_datasets(ck, path)
    norm = TargetNormalizer.from_dict(ck["normalizer"])
    p, t = [], []
    with torch.no_grad():
        for b in DataLoader(ds["test"], batch_size=512):
            p.append(norm.inverse(model(b, sample=False)["pred"].double()))
            t.append(b.stiffness.double())
    preds.append(torch.cat(p))
    true = torch.cat(t)
for name, p in (("stage1", preds[0]), ("restart", preds[1]), ("mean", (preds[0] + preds[1]) / 2)):
    r2 = np.array(list(r2_per_component(p, true, range(9)).values()))
    print(name, " ".join(f"{x:.4f}" for x in r2), f"min {r2.min():.4f}")
