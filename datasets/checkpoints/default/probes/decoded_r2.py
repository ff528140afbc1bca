"""Probe (not shipped): stiffness R^2 on the test split of F(mu) = G(decode(mu)), G the GNN
regressor of graph_regressor.py (trained on true graphs), decode the VAE of CHECKPOINT; and of
G on the true graphs, and the checkpoint's own predictor, side by side.

python datasets/checkpoints/default/probes/decoded_r2.py OUT.pt CHECKPOINT [LIMIT]

(OUT.pt written by graph_regressor.py; run from the repository root.)
"""
import sys

import numpy as np
import torch
from torch_geometric.loader import DataLoader

from gnn_truss.dataset import TargetNormalizer, TrussDataset
from gnn_truss.design import _relaxed_decode, load_design_model
from gnn_truss.evaluation import r2_per_component
from gnn_truss.nn.encoder import TrussGNNEncoder

torch.set_num_threads(1)
probe = torch.load(sys.argv[1], weights_only=False)
G = TrussGNNEncoder(8, 8, hidden=probe["hidden"], layers=4, readout=probe["readout"],
                    edge_readout=True, physics_readout=True)
G.heads = torch.nn.Linear(probe["readout"], 9)
G.load_state_dict(probe["state"])
G.eval()
gnorm = TargetNormalizer.from_dict(probe["norm"])
model, normalizer = load_design_model(sys.argv[2])[:2]
model.eval()
test = TrussDataset("datasets/default", split="test", source="corpus", target="stiffness",
                    split_seed=0)
limit = int(sys.argv[3]) if len(sys.argv) > 3 else len(test)
test = test[:limit]
t, p_true, p_dec, p_vae, exact = [], [], [], [], []
with torch.no_grad():
    for b in DataLoader(test, batch_size=512):
        t.append(b.stiffness.double())
        p_true.append(gnorm.inverse(G(b).clamp(-8, 8)).double())
        mu, _ = model.encode(b)
        p_vae.append(normalizer.inverse(model.predict(mu)).double())
        A, offsets, _ = _relaxed_decode(model, mu, "straight-through")
        p_dec.append(gnorm.inverse(G.forward_dense(A, offsets).clamp(-8, 8)).double())
        logits, _ = model.decode(mu)
        exact.append(((logits > 0).float() == b.adj).all(-1))
t = torch.cat(t)
exact = torch.cat(exact)


def r2(p, mask=None):
    p = torch.cat(p)
    tt, pp = (t, p) if mask is None else (t[mask], p[mask])
    return np.round(list(r2_per_component(pp, tt, range(9)).values()), 4)


print(f"{limit} test lattices, exact decode {float(exact.float().mean()):.4f}")
print("G on true graphs      ", r2(p_true))
print("G on decoded (F = G.D)", r2(p_dec))
print("VAE predictor on mu   ", r2(p_vae))
print("F on exactly decoded  ", r2(p_dec, exact), " G true on same", r2(p_true, exact))
print("F on wrongly decoded  ", r2(p_dec, ~exact), " G true on same", r2(p_true, ~exact))
