"""Probe helper (session 39): compare two checkpoints (or settings) on the ten curve-design
tasks over several seeds of ``ten_tasks.sh`` (run with ``SEED=S`` and ``--start-noise``, so
that each seed is another draw of the gradient stage). Per task: the best FE-verified NRMSE of
each seed for A and B, their means over the seeds both have, and at the bottom the number of
(task, seed) pairs each wins, the mean paired difference and the means of the six held-out
targets.

    python datasets/checkpoints/nonlinear/probes/ten_tasks_compare.py gn02 g3n02 --seeds 1 2
"""
import argparse
import json
from pathlib import Path

import numpy as np

TASKS = ["t0", "t1", "t2", "t3", "t4", "t5", "stiff1.15", "stiff1.3", "stiff1.5", "soft"]
ap = argparse.ArgumentParser()
ap.add_argument("a", help="tag of ten_tasks.sh for A")
ap.add_argument("b", help="tag for B")
ap.add_argument("--seeds", type=int, nargs="+", default=[0])
ap.add_argument("--runs", default="runs", help="folder of the run folders (runs)")
args = ap.parse_args()


def best(tag, task, seed):
    d = Path(args.runs) / f"des_{tag}_{task}{'' if seed == 0 else f'_s{seed}'}"
    f = d / "summary.json"
    if not f.exists():
        return np.nan
    b = json.loads(f.read_text())["best_design"]
    return np.nan if b is None else 100 * b["value"]


va = np.array([[best(args.a, t, s) for s in args.seeds] for t in TASKS])
vb = np.array([[best(args.b, t, s) for s in args.seeds] for t in TASKS])
seeds = " ".join(map(str, args.seeds))
print(f"task | {args.a} NRMSE % (seeds {seeds}) | {args.b} NRMSE % | mean {args.a} | "
      f"mean {args.b}")
both = np.isfinite(va) & np.isfinite(vb)
for k, t in enumerate(TASKS):
    ma = np.mean(va[k][both[k]]) if both[k].any() else np.nan
    mb = np.mean(vb[k][both[k]]) if both[k].any() else np.nan
    print(f"{t} | {' / '.join(f'{v:.2f}' for v in va[k])} | "
          f"{' / '.join(f'{v:.2f}' for v in vb[k])} | {ma:.2f} | {mb:.2f}")
d = (vb - va)[both]
print(f"pairs: {both.sum()}; {args.a} better in {(d > 0).sum()}, {args.b} better in "
      f"{(d < 0).sum()}, ties {(d == 0).sum()}")
if both.any():
    print(f"mean difference {args.b} - {args.a}: {d.mean():+.2f} points "
          f"(standard error {d.std(ddof=1) / np.sqrt(d.size) if d.size > 1 else np.nan:.2f})")
held = both[:6]
if held.any():
    print(f"held-out targets: mean {args.a} {va[:6][held].mean():.2f} %, "
          f"{args.b} {vb[:6][held].mean():.2f} % over {held.sum()} pairs")
