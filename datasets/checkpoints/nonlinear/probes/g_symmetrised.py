"""Probe: one pass of the VAE, G averaged over the symmetric copies of the decoded lattice.

``gnn-truss evaluate --symmetrise`` runs the whole model (encode, decode, G) on each symmetric
copy of a lattice: it averages the reconstruction errors of the copies as well as G's. This
probe keeps the single encode and decode of the one pass and averages only G, over the copies
of the lattice that one pass decoded (16 z-keeping symmetries for curves, 6 axis permutations
or all 48 for stiffness; each copy's prediction mapped back to the lattice's axes): an
invariant G at |G| G-passes per lattice and no extra VAE pass. The decoded lattice's buckling
features (curve G) are invariant and computed once, by FE, as the model computes them.

Prints, on the test split of the checkpoint: the one pass (identity copy only; it must equal
``evaluate``'s one-pass figures), the G-only average, both split by whether the one pass
reconstructs the adjacency exactly.

    python datasets/checkpoints/nonlinear/probes/g_symmetrised.py CKPT [--mirrors] [--limit N]
        [--workers W]
"""
import argparse
import time

import numpy as np
import torch

from gnn_truss.dataset import TargetNormalizer
from gnn_truss.evaluation import (checkpoint_datasets, exactly_reconstructed, nrmse_curves,
                                  r2_per_component)
from gnn_truss.exploration import load_model
from gnn_truss.symmetry import _maps, allowed_symmetries, stiffness_map

ap = argparse.ArgumentParser()
ap.add_argument("checkpoint")
ap.add_argument("--mirrors", action="store_true", help="stiffness: all 48 symmetries, "
                "not only the 6 permutations (curves always use their 16)")
ap.add_argument("--limit", type=int, default=None)
ap.add_argument("--workers", type=int, default=1, help="FE processes for the features")
args = ap.parse_args()
torch.set_num_threads(1)
t0 = time.time()
model, ck = load_model(args.checkpoint)
model.feature_workers = args.workers
target = ck["config"]["data"].get("target", "stiffness")
norm = TargetNormalizer.from_dict(ck["normalizer"])
test = checkpoint_datasets(ck, args.checkpoint)[1]["test"]
if args.limit:
    test = test[:args.limit]
ops = allowed_symmetries(target, target == "curve" or args.mirrors)
assert ops[0] == ((0, 1, 2), (0, 0, 0)), "the first symmetry must be the identity"
from torch_geometric.loader import DataLoader  # noqa: E402

one, avg, ys, exact = [], [], [], []
for b in DataLoader(test, batch_size=256):
    with torch.no_grad():
        mu, _ = model.encode(b)
        logits, _ = model.decode(mu)
        A, off, _ = model.decode_lattice(mu, near_only=True)
        feats = model.lattice_features(A, off) if model.reads_features else None
        preds = []
        for perm, flip in ops:
            nodes, dofs, _, _, signs = _maps(perm, flip)
            inv = torch.as_tensor(np.argsort(nodes))
            Ag = A[:, inv][:, :, inv]  # new[nodes[i], nodes[j]] = old[i, j]
            og = (off * torch.as_tensor(np.array(signs), dtype=off.dtype))[:, torch.as_tensor(
                np.argsort(dofs))]  # new[dofs[k]] = sign * old[k]
            p = norm.inverse(model.predictor.forward_dense(Ag, og, feats).double())
            if target == "stiffness":  # back on the lattice's own axes
                p = p[:, torch.as_tensor(np.argsort(stiffness_map(perm)))]
            preds.append(p)
    one.append(preds[0])
    avg.append(torch.stack(preds).mean(0))
    ys.append(norm.inverse(b.y.double()) if target == "stiffness" else b.curve.double())
    exact.append(exactly_reconstructed(logits, b.adj))
one, avg, Y = torch.cat(one), torch.cat(avg), torch.cat(ys)
exact = np.concatenate(exact)
print(f"{args.checkpoint}: {len(Y)} test lattices, {target}, {len(ops)} copies of the decoded "
      f"lattice; {exact.mean():.4f} reconstructed exactly; {time.time() - t0:.0f} s")


def score(p, y):
    if target == "curve":
        return f"NRMSE {100 * nrmse_curves(p, y):.3f} %"
    names = ["C11", "C12", "C13", "C22", "C23", "C33", "C44", "C55", "C66"]
    r2 = r2_per_component(p, y, names)
    return ("R^2 " + " ".join(f"{r2[n]:.4f}" for n in names)
            + f" (min {min(r2.values()):.4f}, mean {np.mean(list(r2.values())):.4f})")


for name, p in (("one pass", one), (f"G over {len(ops)} copies", avg)):
    print(f"{name:>18}: all {score(p, Y)}")
    print(f"{'':>18}  exact ({int(exact.sum())}) {score(p[exact], Y[exact])}")
    print(f"{'':>18}  wrong ({int((~exact).sum())}) {score(p[~exact], Y[~exact])}")
