"""Probe (session 42): how much of the one-pass stiffness R^2 that the reconstruction loses
could the decoder's own uncertainty win back?  On the test split of a decoded-predictor
checkpoint (one encoder pass, one decoder pass each time), G is read on

- ``hard``: the decoded lattice (logit > 0), the one pass of ``gnn-truss evaluate``;
- ``soft``: the adjacency probabilities themselves (G's dense form accepts weights in [0, 1]);
- ``marginal K``: the mean of G over K adjacencies drawn entry by entry from the decoder's
  Bernoulli probabilities (seeded), a prediction averaged over what the decoder is unsure of;
- ``oracle``: G on the true lattice (graph and offsets) of each lattice the one pass decodes
  wrongly (the bound).

R^2 per component (C11 ... C66) over all lattices, and the one pass on the exactly and the
wrongly decoded ones.

    python datasets/checkpoints/decoded/probes/marginal_r2.py CKPT [--limit N] [--draws K]
"""
import argparse

import torch
from torch_geometric.loader import DataLoader

from gnn_truss import design_space as ds
from gnn_truss.dataset import TargetNormalizer
from gnn_truss.evaluation import checkpoint_datasets
from gnn_truss.exploration import load_model
from gnn_truss.nn.decoder import dense_adjacency
from gnn_truss.nn.encoder import soft_used
from gnn_truss.nn.vae import _near_pairs

ap = argparse.ArgumentParser()
ap.add_argument("checkpoint")
ap.add_argument("--split", default="test")
ap.add_argument("--limit", type=int, default=None)
ap.add_argument("--draws", type=int, default=16)
args = ap.parse_args()
torch.set_num_threads(1)
gen = torch.Generator().manual_seed(0)
model, ck = load_model(args.checkpoint)
model.eval()
_, dsets = checkpoint_datasets(ck, args.checkpoint)
data = dsets[args.split]
if args.limit:
    data = data[:args.limit]
norm = TargetNormalizer.from_dict(ck["normalizer"])
near = torch.tensor(_near_pairs())
node = torch.tensor(ds.FREE_DOF_NODE)


def g(a, offsets):
    A = dense_adjacency(a) * near
    used = soft_used(A)
    return norm.inverse(model.predictor.forward_dense(A, offsets * used[:, node]).double())


def r2(p, y):
    return 1 - ((p - y) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)


out = {k: [] for k in ("hard", "soft", f"marginal {args.draws}", "oracle")}
ys, exact = [], []
for b in DataLoader(data, batch_size=256):
    with torch.no_grad():
        mu = model.encode(b)[0]
        logits, offsets = model.decode(mu)
        p = torch.sigmoid(logits)
        hard = (logits > 0).to(p.dtype)
        ok = (hard == b.adj).all(1)
        ph = g(hard, offsets)
        out["hard"].append(ph)
        out["soft"].append(g(p, offsets))
        draws = [g(torch.bernoulli(p, generator=gen), offsets) for _ in range(args.draws)]
        out[f"marginal {args.draws}"].append(torch.stack(draws).mean(0))
        true = norm.inverse(model.predictor(b).double())
        out["oracle"].append(torch.where(ok[:, None], ph, true))
    ys.append(norm.inverse(b.y.double()))
    exact.append(ok)
y, ok = torch.cat(ys), torch.cat(exact)
print(f"{args.checkpoint}: {len(y)} {args.split} lattices, {ok.float().mean():.4f} decoded exactly")
for k, v in out.items():
    v = torch.cat(v)
    s = r2(v, y)
    print(f"{k:>12}: " + " ".join(f"{x:.4f}" for x in s.tolist()) + f"  min {s.min():.4f}")
h = torch.cat(out["hard"])
for name, m in (("exact", ok), ("wrong", ~ok)):
    s = r2(h[m], y[m])
    print(f"hard, {name:>5} ({int(m.sum())}): " + " ".join(f"{x:.4f}" for x in s.tolist()))
