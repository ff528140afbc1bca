"""Where the shipped default checkpoint's one-pass adjacency errors are (test split, latent
means decoded at logit 0): wrong entries per lattice, false positives and negatives, error rate
per pair length, confidence of the wrong entries. Run from the repository root (session 41;
about 1 min on one thread). Output: error_count_results.txt."""
import numpy as np, torch
torch.set_num_threads(1)
from torch_geometric.loader import DataLoader
from gnn_truss.exploration import load_model
import gnn_truss.training as tr
from gnn_truss import design_space as ds
model, ck = load_model("datasets/checkpoints/default/model.pt"); model.eval()
cfg = tr.validate_config(ck["config"])
_, _, test = tr.build_datasets(cfg)
L, A, S = [], [], []
with torch.no_grad():
    for b in DataLoader(test, batch_size=1024):
        mu, ls = model.encode(b); lg, _ = model.decode(mu)
        L.append(lg); A.append(b.adj); S.append(ls)
lg = torch.cat(L).numpy(); a = torch.cat(A).numpy() > 0.5; ls = torch.cat(S).numpy()
pred = lg > 0
wrong = pred != a
nw = wrong.sum(1)
print("lattices", len(a), "exact", (nw == 0).mean())
print("wrong-entry histogram", np.bincount(nw)[:8], "mean wrong per wrong lattice", nw[nw>0].mean())
print("FP", (wrong & pred).sum(), "FN", (wrong & ~pred).sum(), "edges per lattice", a.sum(1).mean())
iu = np.triu_indices(27, 1)
g = np.asarray(ds.NODE_GRID, dtype=float)
d = np.linalg.norm(g[iu[0]] - g[iu[1]], axis=1)
for dv in np.unique(np.round(d, 3)):
    m = np.isclose(d, dv, atol=1e-3)
    print(f"len {dv:.3f} pairs {m.sum():3d} edge rate {a[:, m].mean():.4f} err rate {wrong[:, m].mean():.5f} share of errors {wrong[:, m].sum()/wrong.sum():.3f}")
am = np.abs(lg)
print("|logit| of wrong entries: quantiles", np.quantile(am[wrong], [0.1, 0.5, 0.9]))
print("min |logit| per lattice, exact vs not:", np.median(am.min(1)[nw==0]), np.median(am.min(1)[nw>0]))
# how many lattices would be fixed if we knew which single entry to flip: the closest-to-zero entry
amin = am.argmin(1)
fix1 = (nw == 1) & wrong[np.arange(len(a)), amin]
print("one-wrong lattices whose wrong entry is the least confident:", fix1.sum(), "of", (nw == 1).sum())
print("sigma (mean over dims) median", np.median(np.exp(ls).mean(1)))

