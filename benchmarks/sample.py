"""Wall time of prior sampling with the repair, and of the length fit alone.

Runs :func:`gnn_truss.exploration.sample` (``--n`` samples of N(0, I), decoded, repaired,
validated and FE-checked; novelty skipped) twice, with the length fit (the default) and with
the paper's light repair alone (``fit_lengths=False``), and prints the seconds, samples per
second and strict validity after repair of each. Then it times
:func:`gnn_truss.decoding.fit_lengths` alone on the lattices of the first run that needed it
(milliseconds per lattice, and how many ended ``"projected"`` / ``"pulled"``). One torch
thread and one FE process (``--threads``, ``--workers``).

    python benchmarks/sample.py [--checkpoint datasets/checkpoints/default/model.pt]
        [--n 1000] [--seed 0] [--threads 1] [--workers 1]
"""
from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="datasets/checkpoints/default/model.pt")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()

    import torch

    from gnn_truss.decoding import fit_lengths
    from gnn_truss.exploration import light_repair, load_model, sample

    torch.set_num_threads(args.threads)
    model = load_model(args.checkpoint)
    model = model[0] if isinstance(model, tuple) else model
    runs = {}
    for fit in (True, False):
        t0 = time.perf_counter()
        res = sample(model, n=args.n, seed=args.seed, fit_lengths=fit, workers=args.workers)
        dt = time.perf_counter() - t0
        runs[fit] = res
        s = res.report["summary"]
        print(f"sample, {'light repair + length fit' if fit else 'light repair alone':26s}: "
              f"{dt:6.2f} s for {args.n} ({args.n / dt:7.1f} samples/s), strict validity "
              f"after repair {100 * s['validity_strict_repaired']:.1f} %")
    # the fit alone, on the pruned lattices that needed it
    pruned = [light_repair(t)[0] for t in runs[True].raw]
    todo = [t for t in pruned if "max_length" in t.validate()]
    status: dict = {}
    t0 = time.perf_counter()
    for t in todo:
        _, st = fit_lengths(t.adjacency, t.free_offsets)
        status[st] = status.get(st, 0) + 1
    dt = time.perf_counter() - t0
    if todo:
        print(f"fit_lengths: {len(todo)} lattices with a beam over sqrt(3)/2, "
              f"{1e3 * dt / len(todo):.2f} ms per lattice; {status}")
    else:
        print("fit_lengths: no lattice had a beam over sqrt(3)/2")


if __name__ == "__main__":
    main()
