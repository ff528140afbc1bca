"""Probe, not part of the package: the test R^2 of the graph regressor of graph_regressor.py
(its weights OUT.pt) on the true graphs, plain and averaged over the symmetric copies of each
lattice (gnn_truss.symmetry.symmetrised_prediction: 'axes', the 6 axis permutations, or
'axes_mirrors', all 48 symmetries of the cube), one thread, about 1 and 8 minutes.

python datasets/checkpoints/default/probes/symmetrised_r2.py OUT.pt axes|axes_mirrors
"""
import sys, torch, numpy as np
from torch_geometric.loader import DataLoader
from gnn_truss.dataset import TrussDataset
from gnn_truss.nn.encoder import TrussGNNEncoder
from gnn_truss.symmetry import symmetrised_prediction
from gnn_truss.evaluation import r2_per_component
torch.set_num_threads(1)
ck = torch.load(sys.argv[1], weights_only=False)
mode = sys.argv[2]
enc = TrussGNNEncoder(8, 8, hidden=ck['hidden'], layers=ck.get('layers', 4), readout=ck['readout'], edge_readout=True, physics_readout=True)
enc.heads = torch.nn.Linear(ck['readout'], 9)
enc.load_state_dict(ck['state']); enc.eval()
class Shim(torch.nn.Module):
    def forward(self, g, sample=False):
        B = g.num_graphs
        return {"logits": torch.zeros(B, 351), "offsets": torch.zeros(B, 27), "pred": enc(g).clamp(-8, 8)}
kw = dict(source="corpus", target="stiffness", split_seed=0)
test = TrussDataset("datasets/default", split="test", **kw)
norm = TrussDataset("datasets/default", split="train", **kw).normalizer
P, T, P0 = [], [], []
for b in DataLoader(test, batch_size=2000):
    with torch.no_grad():
        P0.append(norm.inverse(enc(b).clamp(-8, 8).double()))
    P.append(symmetrised_prediction(Shim(), b, norm, "stiffness", mode))
    T.append(b.stiffness.double())
T = torch.cat(T)
print("plain", np.round(list(r2_per_component(torch.cat(P0), T, range(9)).values()), 4))
print(mode, np.round(list(r2_per_component(torch.cat(P), T, range(9)).values()), 4))
