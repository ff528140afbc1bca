"""Throughput and memory of the linear FE homogenization.

Prints lattices per second for (a) the six elementary lattices, (b) lattices drawn by the
corpus generator,
(c) the densest lattice (all 158 near-neighbour beams), on the single (reference) path and the
batched (mirror-sector) path, and the peak memory of a batch of 10,000 lattices.

    python benchmarks/fe_linear.py [--n 2000] [--workers 2] [--memory-batch 10000]
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from gnn_truss import design_space as ds
from gnn_truss.fe import homogenize, homogenize_batch
from gnn_truss.generator import generate, shard_rng
from gnn_truss.truss import Truss


def rate(fn, n: int) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return n / (time.perf_counter() - t0), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000, help="generator lattices (2000)")
    ap.add_argument("--workers", type=int, default=2, help="processes for the batched path")
    ap.add_argument("--single-n", type=int, default=300, help="generator lattices timed on "
                                                              "the single path (300)")
    ap.add_argument("--memory-batch", type=int, default=10_000, help="batch size for the "
                                                                      "memory figure (10000)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch  # noqa: F401  (import cost kept out of the timings)

    print(f"# linear FE homogenization benchmark (rho=0.15), {args.workers} worker(s)")
    elem = [Truss.elementary(n) for n in ds.ELEMENTARY_LATTICES]
    for t in elem:
        homogenize(t)  # warm caches of the value objects fairly for both paths
    reps = 50
    r_single, _ = rate(lambda: [homogenize(t) for t in elem * reps], len(elem) * reps)
    r_batch, _ = rate(lambda: homogenize_batch(elem * reps, workers=1), len(elem) * reps)
    print(f"(a) elementary lattices  single: {r_single:8.1f} /s   batched (1 proc): "
          f"{r_batch:8.1f} /s")

    t0 = time.perf_counter()
    rand = generate(args.n, shard_rng(args.seed, 0))  # the corpus generator's lattices
    gen_t = time.perf_counter() - t0
    nodes = np.mean([len(t.model.nodes) for t in rand])
    beams = np.mean([t.num_edges for t in rand])
    print(f"    generator lattices: {args.n} drawn in {gen_t:.1f} s; mean {beams:.1f} octant beams, "
          f"{nodes:.1f} octant FE nodes")
    fresh = [Truss(t.adjacency, t.offsets) for t in rand]  # no cached models
    sub = fresh[:args.single_n]
    r_single, singles = rate(lambda: [homogenize(t) for t in sub], len(sub))
    fresh = [Truss(t.adjacency, t.offsets) for t in rand]
    r_b1, res1 = rate(lambda: homogenize_batch(fresh, workers=1), len(fresh))
    fresh = [Truss(t.adjacency, t.offsets) for t in rand]
    r_bw, resw = rate(lambda: homogenize_batch(fresh, workers=args.workers), len(fresh))
    C1 = np.array([s.C for s in singles])
    ok = np.array([s.ok for s in singles]) & res1.ok[:len(sub)]
    dev = (np.abs(res1.C[:len(sub)][ok] - C1[ok]).max(axis=(1, 2))
           / np.abs(C1[ok]).max(axis=(1, 2))).max() if ok.any() else float("nan")
    print(f"(b) {args.n} generator lattices  single: {r_single:8.1f} /s   batched 1 proc: "
          f"{r_b1:8.1f} /s   batched {args.workers} procs: {r_bw:8.1f} /s")
    print(f"    status counts: {dict(zip(*np.unique(resw.status, return_counts=True)))}; "
          f"max rel. difference single vs batched: {dev:.2e}")

    dense = Truss.from_edges(ds.NEAR_NEIGHBOUR_EDGES)
    r_single, _ = rate(lambda: [homogenize(Truss(dense.adjacency)) for _ in range(5)], 5)
    r_batch, _ = rate(lambda: homogenize_batch([dense] * 40, workers=1), 40)
    print(f"(c) densest lattice ({dense.num_edges} beams, {dense.model.num_crossings} crossings)"
          f"  single: {r_single:8.1f} /s   batched (1 proc): {r_batch:8.1f} /s")

    big = [rand[i % len(rand)] for i in range(args.memory_batch)]
    big = [Truss(t.adjacency, t.offsets) for t in big]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    r_big, _ = rate(lambda: homogenize_batch(big, workers=args.workers), len(big))
    self_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    print(f"(d) batch of {len(big)}: {r_big:8.1f} /s; peak RSS main {self_peak:.2f} GiB "
          f"(before {before:.2f} GiB), largest worker {child_peak:.2f} GiB")


if __name__ == "__main__":
    main()
