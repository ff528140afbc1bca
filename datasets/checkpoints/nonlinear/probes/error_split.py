"""Probe (not part of the package): the shipped curve checkpoint's one-pass NRMSE split into the
reconstruction's share and G's own (G read on the true graphs), on the test split.

python datasets/checkpoints/nonlinear/probes/error_split.py
"""
import numpy as np
import torch
from torch_geometric.loader import DataLoader
from gnn_truss.dataset import TargetNormalizer
from gnn_truss.evaluation import checkpoint_datasets
from gnn_truss.exploration import load_model
torch.set_num_threads(1)
path='datasets/checkpoints/nonlinear/model.pt'
model, ck = load_model(path); _, ds = checkpoint_datasets(ck, path)
norm = TargetNormalizer.from_dict(ck["normalizer"])
P,G,T,E=[],[],[],[]
with torch.no_grad():
    for b in DataLoader(ds["test"], batch_size=512):
        out = model(b, sample=False)
        P.append(norm.inverse(out["pred"].double())); T.append(b.curve.double())
        G.append(norm.inverse(model.predictor(b).double()))
        E.append(((out["logits"]>0).float()==b.adj).all(-1))
P,G,T,E=[torch.cat(x).numpy() for x in (P,G,T,E)]
def nr(p): return np.sqrt(np.mean((p-T)**2,1))/(T.max(1)-T.min(1))
a,g=nr(P),nr(G)
print("one pass %.2f %%, G on the true graph %.2f %%" % (100*a.mean(), 100*g.mean()))
print("exact decodes %.1f %%: one pass %.2f %% on them, %.2f %% on the rest" % (100*E.mean(), 100*a[E].mean(), 100*a[~E].mean()))
print("median %.2f %%, 90th pct %.2f %%, worst 10 %% of lattices hold %.0f %% of the sum" % (100*np.median(a), 100*np.quantile(a,.9), 100*np.sort(a)[-len(a)//10:].sum()/a.sum()))
