"""Probe (not part of the package): the shipped curve G given the linearised buckling of the
lattice it reads (gnn_truss.fe.buckling) as five extra numbers, fine-tuned on the train split.

The extra branch reads G's 512-number readout and the features
f = standardised [log eps_1, log eps_2, log eps_3, log E3, log(E3 eps_1)] and adds its output to
G's head; its last layer starts at zero, so training starts from the shipped G's function.
Training as the shipped recipe (true graphs of the train split, 16 z-preserving symmetries,
range-scaled curve loss, batch 128, Adam, cosine) at 1e-4 -> 1e-5 for EPOCHS epochs; the best
validation epoch is kept. Test split: G read on the true graphs (with the true lattices'
features) and one pass (G and the FE features on the lattice decoded from the latent mean,
analysed without the design-space validity check; a decoded lattice the FE cannot analyse is
read by G's head alone). EPOCHS 0 evaluates a saved OUT.pt.

python datasets/checkpoints/nonlinear/probes/buckling_features.py EPOCHS OUT.pt
"""
import copy
import sys
import time

import numpy as np
import torch
from torch import nn
from torch_geometric.loader import DataLoader

from gnn_truss.dataset import TargetNormalizer
from gnn_truss.design_space import unpack_offsets
from gnn_truss.evaluation import checkpoint_datasets
from gnn_truss.exploration import load_model
from gnn_truss.fe.buckling import buckling_batch
from gnn_truss.symmetry import RandomAxisPermutation
from gnn_truss.training import curve_range_loss
from gnn_truss.truss import Truss

torch.set_num_threads(1)
torch.manual_seed(0)
EPOCHS, OUT = int(sys.argv[1]), sys.argv[2]
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


class Branch(nn.Module):
    def __init__(self, width=512, nf=5, hidden=256, out=13):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width + nf, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, out))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, h, f):
        return self.net(torch.cat([h, f], dim=-1))


branch = Branch()


def predict_graph(b, f):
    h = G.graph_embedding(b)
    return G.heads(h) + branch(h, f)


def evaluate_graph(split):
    G.eval(); branch.eval()
    P, T = [], []
    with torch.no_grad():
        for b in DataLoader(ds[split], batch_size=512):
            P.append(norm.inverse(predict_graph(b, FEAT_T[b.idx]).double()))
            T.append(b.curve.double())
    return nrmse(torch.cat(P).numpy(), torch.cat(T).numpy())


def nrmse(P, T):
    return np.sqrt(np.mean((P - T) ** 2, 1)) / (T.max(1) - T.min(1))


if EPOCHS == 0:  # evaluate a saved run
    saved = torch.load(OUT, weights_only=False)
    G.load_state_dict(saved["G"]); branch.load_state_dict(saved["branch"])
augment = RandomAxisPermutation(norm, "curve", mirrors=True)
params = list(G.parameters()) + list(branch.parameters())
opt = torch.optim.Adam(params, lr=1e-4)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, EPOCHS, eta_min=1e-5)
base_val = evaluate_graph("val").mean()
print(f"start: validation NRMSE {100 * base_val:.3f} % (G read on the true graphs)", flush=True)
best = (base_val, copy.deepcopy(G.state_dict()), copy.deepcopy(branch.state_dict()), -1)
for ep in range(EPOCHS):
    t0 = time.time()
    G.train(); branch.train()
    tot, n = 0.0, 0
    for b in DataLoader(ds["train"], batch_size=128, shuffle=True):
        f = FEAT_T[b.idx]
        b = augment(b)
        loss = curve_range_loss(predict_graph(b, f), b.curve, norm)
        opt.zero_grad(); loss.backward(); opt.step()
        tot += float(loss) * b.num_graphs; n += b.num_graphs
    sched.step()
    v = evaluate_graph("val").mean()
    if v < best[0]:
        best = (v, copy.deepcopy(G.state_dict()), copy.deepcopy(branch.state_dict()), ep)
    print(f"epoch {ep}: train loss {tot / n:.4f}, validation NRMSE {100 * v:.3f} % "
          f"({time.time() - t0:.0f} s)", flush=True)
if EPOCHS:
    G.load_state_dict(best[1]); branch.load_state_dict(best[2])
    torch.save({"G": best[1], "branch": best[2], "mu": MU, "sd": SD, "epoch": best[3]}, OUT)
    print(f"best epoch {best[3]}: validation {100 * best[0]:.3f} %")
print(f"test, G on the true graphs: {100 * evaluate_graph('test').mean():.3f} %", flush=True)

# one pass: G and the FE features on the lattice decoded from the latent mean
G.eval(); branch.eval(); model.eval()
P, T, okall = [], [], []
t0 = time.time()
with torch.no_grad():
    for b in DataLoader(ds["test"], batch_size=256):
        mu = model(b, sample=False)["mu"]
        A, off, _ = model.decode_lattice(mu, near_only=True)
        trusses = [Truss(a.numpy() > 0.5, unpack_offsets(o.numpy())) for a, o in zip(A, off)]
        s, m, ok = buckling_batch(trusses, num_modes=3, workers=2, validate=False)
        f = torch.tensor((raw_features(np.where(ok[:, None], s, 1.0), np.where(ok, m, 1.0)) - MU)
                         / SD, dtype=torch.float32)
        h = G.dense_embedding(A, off)
        y = G.heads(h) + branch(h, f) * torch.tensor(ok, dtype=torch.float32)[:, None]
        P.append(norm.inverse(y.double())); T.append(b.curve.double()); okall.append(ok)
P, T, okall = torch.cat(P).numpy(), torch.cat(T).numpy(), np.concatenate(okall)
e = nrmse(P, T)
np.savez(OUT.replace(".pt", "_onepass.npz"), P=P, T=T, ok=okall)
print(f"test, one pass: {100 * e.mean():.3f} % ({okall.mean() * 100:.1f} % of the decoded "
      f"lattices analysed, the rest read by G alone; {time.time() - t0:.0f} s)")
