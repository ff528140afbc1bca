"""Probe (not part of the package): the linearised buckling of each training lattice
(gnn_truss.fe.buckling) as an auxiliary training target of the curve G, not an input: G stays a
pure network on the lattice (no FE at prediction time, differentiable for design).

A linear head on G's 512-number readout predicts the five standardised features
f = [log eps_1, log eps_2, log eps_3, log E3, log(E3 eps_1)]; the loss is the range-scaled curve
loss + WEIGHT x the mean squared error of that head. Otherwise as buckling_features.py
(fine-tuned from the shipped G, the shipped recipe at 1e-4 -> 1e-5 for EPOCHS epochs, best
validation epoch kept). Test split: G read on the true graphs and one pass (G on the lattice
decoded from the latent mean).

python datasets/checkpoints/nonlinear/probes/buckling_target.py EPOCHS WEIGHT OUT.pt
"""
import copy
import sys
import time

import numpy as np
import torch
from torch import nn
from torch_geometric.loader import DataLoader

from gnn_truss.dataset import TargetNormalizer
from gnn_truss.evaluation import checkpoint_datasets
from gnn_truss.exploration import load_model
from gnn_truss.symmetry import RandomAxisPermutation
from gnn_truss.training import curve_range_loss

torch.set_num_threads(1)
torch.manual_seed(0)
EPOCHS, WEIGHT, OUT = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
path = "datasets/checkpoints/nonlinear/model.pt"
model, ck = load_model(path)
_, ds = checkpoint_datasets(ck, path)
norm = TargetNormalizer.from_dict(ck["normalizer"])
G = model.predictor
buck = np.load("datasets/nonlinear/buckling.npz")


def raw_features(strains, modulus):
    s = np.minimum(np.asarray(strains, dtype=float), 1.0)  # inf (no critical strain) -> 1
    m = np.asarray(modulus, dtype=float)[:, None]
    return np.concatenate([np.log(s), np.log(m), np.log(m * s[:, :1])], axis=1)


FEAT = raw_features(buck["strains"], buck["modulus"])
train_idx = np.concatenate([b.idx.numpy() for b in DataLoader(ds["train"], batch_size=4096)])
MU, SD = FEAT[train_idx].mean(0), FEAT[train_idx].std(0)
FEAT_T = torch.tensor((FEAT - MU) / SD, dtype=torch.float32)


aux = nn.Linear(512, 5)


def nrmse(P, T):
    return np.sqrt(np.mean((P - T) ** 2, 1)) / (T.max(1) - T.min(1))


def evaluate(split, one_pass=False):
    G.eval(); model.eval()
    P, T = [], []
    with torch.no_grad():
        for b in DataLoader(ds[split], batch_size=512):
            y = model(b, sample=False)["pred"] if one_pass else G(b)
            P.append(norm.inverse(y.double())); T.append(b.curve.double())
    return nrmse(torch.cat(P).numpy(), torch.cat(T).numpy())


augment = RandomAxisPermutation(norm, "curve", mirrors=True)
opt = torch.optim.Adam(list(G.parameters()) + list(aux.parameters()), lr=1e-4)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, EPOCHS, eta_min=1e-5)
base_val = evaluate("val").mean()
print(f"start: validation NRMSE {100 * base_val:.3f} % (G read on the true graphs)", flush=True)
best = (base_val, copy.deepcopy(G.state_dict()), -1)
for ep in range(EPOCHS):
    t0 = time.time()
    G.train(); aux.train()
    tot, ta, n = 0.0, 0.0, 0
    for b in DataLoader(ds["train"], batch_size=128, shuffle=True):
        f = FEAT_T[b.idx]
        b = augment(b)
        h = G.graph_embedding(b)
        lc = curve_range_loss(G.heads(h), b.curve, norm)
        la = ((aux(h) - f) ** 2).mean()
        loss = lc + WEIGHT * la
        opt.zero_grad(); loss.backward(); opt.step()
        tot += float(lc.detach()) * b.num_graphs; ta += float(la.detach()) * b.num_graphs
        n += b.num_graphs
    sched.step()
    v = evaluate("val").mean()
    if v < best[0]:
        best = (v, copy.deepcopy(G.state_dict()), ep)
    print(f"epoch {ep}: train curve loss {tot / n:.4f}, feature MSE {ta / n:.3f}, validation "
          f"NRMSE {100 * v:.3f} % ({time.time() - t0:.0f} s)", flush=True)
G.load_state_dict(best[1])
torch.save({"G": best[1], "epoch": best[2]}, OUT)
print(f"best epoch {best[2]}: validation {100 * best[0]:.3f} %")
print(f"test, G on the true graphs: {100 * evaluate('test').mean():.3f} %")
print(f"test, one pass: {100 * evaluate('test', one_pass=True).mean():.3f} %", flush=True)
