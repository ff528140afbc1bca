"""Probe (not part of the package): curve NRMSE of the average of two curve checkpoints' one-pass
predictions (the same VAE, two Gs trained from different seeds) on the test split, against each
alone, with a paired bootstrap interval of the gain over the first.

python datasets/checkpoints/nonlinear/probes/seed_ensemble.py FIRST.pt SECOND.pt
"""
import sys

import numpy as np
import torch
from torch_geometric.loader import DataLoader

from gnn_truss.dataset import TargetNormalizer
from gnn_truss.evaluation import checkpoint_datasets, nrmse_curves
from gnn_truss.exploration import load_model

torch.set_num_threads(1)
preds, norms, true = [], [], None
for path in sys.argv[1:3]:
    model, ck = load_model(path)
    _, ds = checkpoint_datasets(ck, path)
    norm = TargetNormalizer.from_dict(ck["normalizer"])
    p, t = [], []
    with torch.no_grad():
        for b in DataLoader(ds["test"], batch_size=512):
            p.append(norm.inverse(model(b, sample=False)["pred"].double()))
            t.append(b.curve.double())
    preds.append(torch.cat(p).numpy())
    norms.append(norm)
    true = torch.cat(t).numpy()


def per_curve(p):
    return np.sqrt(np.mean((p - true) ** 2, 1)) / (true.max(1) - true.min(1))


mean = (preds[0] + preds[1]) / 2
# the same average taken on the normalised (asinh) outputs, as a module averaging its heads would
n0 = norms[0]
mean_norm = n0.inverse(sum(n0.transform(torch.from_numpy(p)) for p in preds) / 2).numpy()
for name, p in (("first", preds[0]), ("second", preds[1]), ("mean", mean),
                ("mean (normalised)", mean_norm)):
    print(f"{name:17s} NRMSE {100 * nrmse_curves(p, true):.3f} %")
d = per_curve(mean) - per_curve(preds[0])
rng = np.random.default_rng(0)
boot = [d[rng.integers(0, len(d), len(d))].mean() for _ in range(1000)]
print(f"mean - first: {100 * d.mean():+.3f} points, 95 % interval "
      f"[{100 * np.quantile(boot, 0.025):+.3f}, {100 * np.quantile(boot, 0.975):+.3f}], "
      f"{len(d)} test lattices")
