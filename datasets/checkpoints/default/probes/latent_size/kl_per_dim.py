"""KL divergence per latent dimension of a checkpoint (nats), its latent means' spread and
median posterior sigma, over the training-split lattices among the first 2,000 of
datasets/default (1,600 lattices).

    python kl_per_dim.py CHECKPOINT

Run from the repository root, one thread.
"""
import sys, torch
from gnn_truss.training import load_checkpoint
from gnn_truss.nn import build_model
from gnn_truss.dataset import TrussDataset
from torch_geometric.loader import DataLoader
torch.set_num_threads(1)
ck = load_checkpoint(sys.argv[1]); m = build_model(ck["config"]["model"]); m.load_state_dict(ck["model"]); m.eval()
ds = TrussDataset("datasets/default", limit=2000)
mus, lss = [], []
with torch.no_grad():
    for b in DataLoader(ds, batch_size=500):
        mu, ls = m.encode(b); mus.append(mu); lss.append(ls)
mu, ls = torch.cat(mus), torch.cat(lss)
kl = 0.5 * (torch.exp(2 * ls) + mu ** 2 - 1 - 2 * ls)
k = kl.mean(0)
print("sizes", m.sizes, "total KL", k.sum().item())
print("per-dim KL", " ".join(f"{v:.1f}" for v in k.tolist()))
print("mu std", " ".join(f"{v:.2f}" for v in mu.std(0).tolist()))
print("sigma median", " ".join(f"{v:.3f}" for v in ls.exp().median(0).values.tolist()))
