"""Probe: curve-design tasks whose targets are reachable but unseen, for comparing curve
checkpoints by what the design loop makes of them rather than by one out-of-range target.

Writes, into OUT:
  - ``corpus.npz``: the train and validation lattices of the permutation split (seed 0) of the
    first ``--prefix`` lattices of CORPUS, the lattices every checkpoint of the shipped
    lineage has trained or validated on (the design starts come from here);
  - ``target_K.npy``: the FE curves (13 stresses, units of E_s) of ``--n`` lattices drawn
    (``--seed``) from that split's test lattices, which none of them has seen; ``targets.json``
    names their corpus rows.

A design run per target and checkpoint (``gnn-truss design --objective match-curve --target
OUT/target_K.npy --corpus OUT/corpus.npz --checkpoint C``) then says how close each
checkpoint's designs come to a curve some lattice of the design space is known to have.

    python datasets/checkpoints/nonlinear/probes/heldout_targets.py CORPUS OUT [--prefix 15799] [--n 8]
"""
import argparse
import json
from pathlib import Path

import numpy as np

from gnn_truss.corpus import load_corpus, save_compact
from gnn_truss.dataset import split_indices

ap = argparse.ArgumentParser()
ap.add_argument("corpus")
ap.add_argument("out")
ap.add_argument("--prefix", type=int, default=15799)
ap.add_argument("--n", type=int, default=8)
ap.add_argument("--seed", type=int, default=0)
args = ap.parse_args()
corpus = load_corpus(args.corpus, limit=args.prefix, quiet=True)
if corpus.curve is None:
    raise SystemExit(f"{args.corpus} has no curves")
split = split_indices(len(corpus), 0)
seen = np.sort(np.concatenate([split["train"], split["val"]]))
rows = np.sort(np.random.default_rng(args.seed).choice(split["test"], args.n, replace=False))
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
save_compact(corpus.subset(seen), out / "corpus.npz")
for k, i in enumerate(rows):
    np.save(out / f"target_{k}.npy", corpus.curve[i])
(out / "targets.json").write_text(json.dumps(
    {"corpus": str(args.corpus), "prefix": args.prefix, "seed": args.seed,
     "rows": rows.tolist(), "corpus_size": int(len(seen))}, indent=1))
print(f"{len(seen)} start lattices, {len(rows)} targets (rows {rows.tolist()}) in {out}")
