"""Probe (session 42): one epoch of the decoded checkpoint's G fine-tuned on what the frozen VAE
decodes from the latent means of the training lattices, read as the decoder's adjacency
probabilities (``soft``) or as the thresholded lattice (``hard``); Adam at 1e-4, batches of
256, the loss of ``train.property_loss: physical``, no augmentation, seed 0. Then G's R^2 per
component on the first 3,000 test lattices: on the hard decode, on the soft decode and on the
true graphs.

    python datasets/checkpoints/decoded/probes/soft_finetune.py NTRAIN soft|hard
"""
import sys
import time

import torch
from torch_geometric.loader import DataLoader
from gnn_truss import design_space as ds
from gnn_truss.dataset import TargetNormalizer
from gnn_truss.evaluation import checkpoint_datasets
from gnn_truss.exploration import load_model
from gnn_truss.nn.decoder import dense_adjacency
from gnn_truss.nn.encoder import soft_used
from gnn_truss.nn.vae import _near_pairs
torch.set_num_threads(2); torch.manual_seed(0)
P = "datasets/checkpoints/decoded/model.pt"
model, ck = load_model(P)
_, d = checkpoint_datasets(ck, P)
norm = TargetNormalizer.from_dict(ck["normalizer"])
near = torch.tensor(_near_pairs()); node = torch.tensor(ds.FREE_DOF_NODE)
def g(a, off):
    A = dense_adjacency(a) * near; u = soft_used(A)
    return model.predictor.forward_dense(A, off * u[:, node])
ntrain = int(sys.argv[1]); mode = sys.argv[2]
tr = d["train"][:ntrain]
ys = norm.inverse(torch.cat([b.y for b in DataLoader(tr, batch_size=4096)]).double())
std = ys.std(0).float()
opt = torch.optim.Adam(model.predictor.parameters(), lr=1e-4)
model.eval(); model.predictor.train()
t0 = time.time()
for b in DataLoader(tr, batch_size=256, shuffle=True):
    with torch.no_grad():
        logits, off = model.decode(model.encode(b)[0])
        a = torch.sigmoid(logits) if mode == "soft" else (logits > 0).float()
    p = g(a, off)
    loss = (((norm.inverse(p) - norm.inverse(b.y)) / std) ** 2).sum(-1).mean()
    opt.zero_grad(); loss.backward(); opt.step()
print("train", time.time() - t0)
model.predictor.eval()
def r2(p, y): return 1 - ((p - y) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)
H, S, T, Y = [], [], [], []
with torch.no_grad():
    for b in DataLoader(d["test"][:3000], batch_size=256):
        logits, off = model.decode(model.encode(b)[0])
        H.append(norm.inverse(g((logits > 0).float(), off).double()))
        S.append(norm.inverse(g(torch.sigmoid(logits), off).double()))
        T.append(norm.inverse(model.predictor(b).double()))
        Y.append(norm.inverse(b.y.double()))
y = torch.cat(Y)
for k, v in (("hard", H), ("soft", S), ("true", T)):
    s = r2(torch.cat(v), y); print(f"{mode} {k}: " + " ".join(f"{x:.4f}" for x in s.tolist()) + f" min {s.min():.4f}")
