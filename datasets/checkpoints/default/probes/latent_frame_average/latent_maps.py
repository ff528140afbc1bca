"""Probe (session 47): can the 48 symmetric copies' latents be averaged into ONE latent?

For each symmetry g, encode g x (latent mean mu_g). Fit an affine map A_g: mu_g -> target
latent of x on a training subset (target: the identity copy's refined latent z*), apply it on
test lattices, average the mapped latents over g and decode that one latent.
Stage 1: compute and cache mu_g for train subset and test subset, and z* for the train subset.
"""
import sys, time
from pathlib import Path
import numpy as np
import torch
from torch_geometric.data import Batch

from gnn_truss.dataset import TrussDataset
from gnn_truss.exploration import load_model
from gnn_truss.symmetry import allowed_symmetries, permute_data
from gnn_truss.nn.vae import refine_latent

torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
OUT = Path("runs/probe47")
model, ck = load_model("datasets/checkpoints/default/model.pt")
model.eval()
ops = allowed_symmetries("stiffness", True)
print("symmetries", len(ops), flush=True)

def encode_all(ds, n, tag):
    f = OUT / f"mu_{tag}.pt"
    if f.exists():
        return torch.load(f)
    mus = torch.zeros(len(ops), n, model.sizes.total)
    adj = torch.zeros(n, 351); off = torch.zeros(n, 27)
    t0 = time.time()
    for s in range(0, n, 1000):
        b = Batch.from_data_list([ds[i] for i in range(s, min(n, s + 1000))])
        adj[s:s + len(b.adj)] = b.adj; off[s:s + len(b.adj)] = b.offset
        with torch.no_grad():
            for k, (perm, flip) in enumerate(ops):
                g = permute_data(b, perm, ds.normalizer, "stiffness", flip=flip) if k else b
                mus[k, s:s + len(b.adj)] = model(g, sample=False)["mu"]
        print(tag, s + len(b.adj), f"{time.time() - t0:.0f}s", flush=True)
    res = {"mu": mus, "adj": adj, "offset": off}
    torch.save(res, f)
    return res

ntr, nte = int(sys.argv[1]), int(sys.argv[2])
test = encode_all(TrussDataset("datasets/default", split="test"), nte, f"test{nte}")
train = encode_all(TrussDataset("datasets/default", split="train"), ntr, f"train{ntr}")
f = OUT / f"zstar_train{ntr}.pt"
if not f.exists():
    mu0 = train["mu"][0]
    zs = torch.cat([refine_latent(model, mu0[s:s + 2000], train["adj"][s:s + 2000],
                                  train["offset"][s:s + 2000], 100, 0.01)
                    for s in range(0, ntr, 2000)])
    torch.save(zs, f)
print("done", flush=True)
