"""KL divergence per latent dimension of a checkpoint (nats), its latent means' spread and
median posterior sigma, over the training-split lattices among the first 2,000 of
datasets/default (1,600 lattices).

    python datasets/checkpoints/default/probes/latent_size/kl_per_dim.py CHECKPOINT

Run from the repository root, one thread.
"""
import sys

import torch
from torch_geometric.loader import DataLoader

from gnn_truss.dataset import TrussDataset
from gnn_truss.exploration import load_model

torch.set_num_threads(1)
model, _ = load_model(sys.argv[1])
mus, logsigs = [], []
with torch.no_grad():
    for b in DataLoader(TrussDataset("datasets/default", limit=2000), batch_size=500):
        mu, logsig = model.encode(b)
        mus.append(mu)
        logsigs.append(logsig)
mu, logsig = torch.cat(mus), torch.cat(logsigs)
kl = [model.kl_loss(mu[:, j:j + 1], logsig[:, j:j + 1]).item() for j in range(mu.shape[1])]
print("sizes", model.sizes, "total KL", sum(kl))
print("per-dim KL", " ".join(f"{v:.1f}" for v in kl))
print("mu std", " ".join(f"{v:.2f}" for v in mu.std(0).tolist()))
print("sigma median", " ".join(f"{v:.3f}" for v in logsig.exp().median(0).values.tolist()))
