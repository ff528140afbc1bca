"""Probe, not part of the package: how far does a GNN regressor that reads the true graph get
on the stiffness R^2 of the test split, with no latent bottleneck? The body is the VAE's GNN
encoder (4 GINE layers, edge and physics readout), its heads replaced by a linear layer to the
9 normalised components; physical loss (train.property_loss 'physical'), Adam 1e-3 with a
cosine schedule to 1e-5, batch 256, one thread, seed 0. AUGMENT=1 in the environment draws
one of the 48 axis permutations and reflections per lattice and batch (train.augment
'axes_mirrors'). Writes OUT (per-epoch test R^2, JSON) and OUT with .pt (the weights).

python datasets/checkpoints/default/probes/graph_regressor.py OUT EPOCHS [READOUT] [HIDDEN] [LAYERS]
"""
import json
import os
import sys
import time

import numpy as np
import torch
from torch_geometric.loader import DataLoader

from gnn_truss.dataset import TrussDataset
from gnn_truss.nn.encoder import TrussGNNEncoder
from gnn_truss.symmetry import RandomAxisPermutation
from gnn_truss.evaluation import r2_per_component
from gnn_truss.training import physical_loss, physical_scale

torch.set_num_threads(1)
torch.manual_seed(0)
out, epochs = sys.argv[1], int(sys.argv[2])
readout = int(sys.argv[3]) if len(sys.argv) > 3 else 512
hidden = int(sys.argv[4]) if len(sys.argv) > 4 else 64
layers = int(sys.argv[5]) if len(sys.argv) > 5 else 4
kw = dict(source="corpus", target="stiffness", split_seed=0)
train = TrussDataset("datasets/default", split="train", **kw)
test = TrussDataset("datasets/default", split="test", **kw)
norm = train.normalizer
scale = physical_scale(train, "stiffness")
enc = TrussGNNEncoder(8, 8, hidden=hidden, layers=layers, readout=readout, edge_readout=True,
                      physics_readout=True)
enc.heads = torch.nn.Linear(readout, 9)
opt = torch.optim.Adam(enc.parameters(), lr=1e-3)
loader = DataLoader(train, batch_size=256, shuffle=True,
                    generator=torch.Generator().manual_seed(0))
steps = epochs * len(loader)
aug = RandomAxisPermutation(norm, 'stiffness', mirrors=True) if os.environ.get('AUGMENT') else None
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=1e-5)


def r2():
    enc.eval()
    p, t = [], []
    with torch.no_grad():
        for b in DataLoader(test, batch_size=1024):
            p.append(norm.inverse(enc(b).clamp(-8, 8)).double())
            t.append(b.stiffness.double())
    enc.train()
    return list(r2_per_component(torch.cat(p), torch.cat(t), range(9)).values())


log = []
for ep in range(epochs):
    t0, tot, n = time.time(), 0.0, 0
    for b in loader:
        if aug is not None:
            b = aug(b)
        loss = physical_loss(enc(b), b.stiffness.float(), norm, scale)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        tot += float(loss.detach()) * b.num_graphs
        n += b.num_graphs
    r = r2()
    log.append({"epoch": ep, "train_loss": tot / n, "r2": r, "seconds": time.time() - t0})
    print(ep, round(tot / n, 4), np.round(r, 4).tolist(), round(time.time() - t0, 1), flush=True)
    json.dump(log, open(out, "w"), indent=1)
    torch.save({"state": enc.state_dict(), "readout": readout, "hidden": hidden, "layers": layers,
                "scale": scale, "norm": norm.to_dict()}, out.replace(".json", ".pt"))
