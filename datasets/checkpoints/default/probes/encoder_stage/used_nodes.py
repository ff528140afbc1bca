"""Probe (session 42): do the one-pass adjacency errors change which nodes a lattice uses, and
could the decoded offsets tell? On the first 5,000 test lattices of the shipped default model.

    python datasets/checkpoints/default/probes/encoder_stage/used_nodes.py
"""
import numpy as np
import torch
from torch_geometric.loader import DataLoader
from gnn_truss import design_space as ds
from gnn_truss.evaluation import checkpoint_datasets
from gnn_truss.exploration import load_model
torch.set_num_threads(1)
P = "datasets/checkpoints/default/model.pt"
m, ck = load_model(P)
m.eval()
_, d = checkpoint_datasets(ck, P)
L, A, O, TO = [], [], [], []
with torch.no_grad():
    for b in DataLoader(d["test"][:5000], batch_size=500):
        lo, off = m.decode(m.encode(b)[0])
        L.append(lo)
        A.append(b.adj)
        O.append(off)
        TO.append(b.offset)
lo, adj, off, toff = (torch.cat(x).numpy() for x in (L, A, O, TO))
hard = lo > 0
wrong = (hard != (adj > 0.5)).any(1)
def used(tri): return ds.triu_to_adjacency(tri).any(-1)
u_true = np.array([used(a > 0.5) for a in adj]); u_dec = np.array([used(h) for h in hard])
node = np.asarray(ds.FREE_DOF_NODE)
diff = (u_true != u_dec).any(1)
print("lattices", len(adj), "wrong", wrong.sum(), "used-set differs", diff.sum(), "of which wrong", (diff & wrong).sum())
# per free-dof node: max |decoded offset| over its dofs
mag = np.zeros((len(adj), 27))
for k, n in enumerate(node):
    mag[:, n] = np.maximum(mag[:, n], np.abs(off[:, k]))
free_nodes = np.unique(node)
for tau in (0.005, 0.01, 0.02, 0.05):
    pred_used = mag[:, free_nodes] > tau
    acc = (pred_used == u_true[:, free_nodes]).mean()
    acc_dec = (u_dec[:, free_nodes] == u_true[:, free_nodes]).mean()
    # on the nodes where the decoded adjacency's used set is wrong, how often is the offset rule right?
    bad = (u_dec[:, free_nodes] != u_true[:, free_nodes])
    print(f"tau {tau}: offset rule node acc {acc:.5f}, adjacency-used acc {acc_dec:.5f}, on {bad.sum()} wrong-used nodes the offset rule is right {(pred_used == u_true[:, free_nodes])[bad].mean():.3f}")
