"""Stage 2: affine maps mu_g -> z* (least squares on the train subset), averaged on test."""
import sys
import numpy as np
import torch
from gnn_truss.exploration import load_model

torch.set_num_threads(1)
ntr, nte = int(sys.argv[1]), int(sys.argv[2])
model, ck = load_model("datasets/checkpoints/default/model.pt"); model.eval()
tr = torch.load(f"runs/probe47/mu_train{ntr}.pt"); te = torch.load(f"runs/probe47/mu_test{nte}.pt")
zs = torch.load(f"runs/probe47/zstar_train{ntr}.pt")
G = tr["mu"].shape[0]

def exact(z, adj):
    with torch.no_grad():
        logits, off = model.decode(z)
    dec = (logits > 0).float()
    return float((dec == adj).all(1).float().mean()), float((dec == adj).float().mean())

print("identity mean, test:", exact(te["mu"][0], te["adj"]))
print("identity mean, train:", exact(tr["mu"][0], tr["adj"]), "z* train:", exact(zs, tr["adj"]))
for target_name, Z in (("zstar", zs), ("mu_e", tr["mu"][0])):
    for ridge in (0.0, 1e-2):
        maps = []
        for g in range(G):
            X = torch.cat([tr["mu"][g], torch.ones(ntr, 1)], 1).double()
            A = X.T @ X + ridge * torch.eye(X.shape[1], dtype=torch.float64)
            W = torch.linalg.solve(A, X.T @ Z.double())
            maps.append(W)
        zt = [torch.cat([te["mu"][g], torch.ones(nte, 1)], 1).double() @ maps[g] for g in range(G)]
        singles = [exact(z.float(), te["adj"])[0] for z in zt[:6]]
        avg = torch.stack(zt).mean(0).float()
        resid = float(torch.stack([((z - zt[0]) ** 2).sum(1).mean() for z in zt[1:]]).mean())
        print(target_name, "ridge", ridge, "single mapped copies (first 6):",
              [round(s, 4) for s in singles], "averaged over 48:", exact(avg, te["adj"]),
              "mean sq spread", round(resid, 4), flush=True)
        # also: average of the first 6 (axis permutations only)
        print("   averaged over first 6 ops:", exact(torch.stack(zt[:6]).mean(0).float(), te["adj"]))
