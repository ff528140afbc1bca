"""Probe: the curve NRMSE of curve checkpoints' G on FE-verified *designed* lattices, off the
corpus (the ``designs/rank*.json`` that ``gnn-truss design --objective match-curve`` writes,
each with its FE curve in ``meta.fe_label``), G read on the lattice's true graph with its
buckling numbers computed by FE (as the design loop does for a decoded lattice).

    python datasets/checkpoints/nonlinear/probes/designed_nrmse.py DESIGN_DIR [...] --checkpoints CKPT [CKPT ...]
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Batch

from gnn_truss.dataset import TargetNormalizer
from gnn_truss.evaluation import nrmse_curves
from gnn_truss.exploration import load_model
from gnn_truss.fe.buckling import lattice_descriptors
from gnn_truss.graph import truss_to_data
from gnn_truss.io import load_lattice

ap = argparse.ArgumentParser()
ap.add_argument("design_dirs", nargs="+")
ap.add_argument("--checkpoints", nargs="+", required=True)
args = ap.parse_args()
torch.set_num_threads(1)
trusses, curves, where = [], [], []
for d in args.design_dirs:
    for f in sorted(Path(d, "designs").glob("rank*.json")):
        trusses.append(load_lattice(f))
        curves.append(json.loads(f.read_text())["meta"]["fe_label"])
        where.append(Path(d).name)
curves = torch.tensor(np.array(curves, dtype=np.float64))
feats = lattice_descriptors(trusses, workers=1)
ok = np.isfinite(feats).all(1)
print(f"{len(trusses)} designed lattices from {len(args.design_dirs)} runs; "
      f"{int(ok.sum())} with buckling numbers")
graphs = []
for t, f in zip(trusses, feats):
    g = truss_to_data(t)
    g.feat = torch.as_tensor(f, dtype=torch.float32)[None]
    graphs.append(g)
keep = torch.as_tensor(ok)
batch = Batch.from_data_list([g for g, k in zip(graphs, ok) if k])
runs = np.array(where)[ok]
for path in args.checkpoints:
    model, ck = load_model(path)
    model.eval()
    norm = TargetNormalizer.from_dict(ck["normalizer"])
    with torch.no_grad():
        pred = norm.inverse(model.predictor(batch).double())
    e = [float(nrmse_curves(pred[i:i + 1], curves[keep][i:i + 1])) for i in range(len(pred))]
    e = np.array(e)
    per_run = ", ".join(f"{r} {100 * e[runs == r].mean():.2f}" for r in dict.fromkeys(runs))
    print(f"{path}: {100 * nrmse_curves(pred, curves[keep]):.2f} % over all; per run: "
          f"{per_run}")
