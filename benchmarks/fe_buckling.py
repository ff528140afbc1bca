"""Throughput of the linearised buckling analysis (:mod:`gnn_truss.fe.buckling`).

Prints the seconds per lattice (median, mean, 90th percentile, max) of the first ``--n``
lattices of the curve corpus in one process with one thread, the failure count, the lattices per
second of :func:`~gnn_truss.fe.buckling.buckling_batch` with ``--workers`` processes, and, for
scale, the cost of one compression curve of the same lattices' first ``--curves``.

    python benchmarks/fe_buckling.py [--n 200] [--workers 2] [--curves 5]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

# one BLAS/OpenMP thread per process: the figures are per core
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402  (after the thread settings)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="corpus lattices (200)")
    ap.add_argument("--corpus", type=Path, default=Path("datasets/nonlinear/raw/corpus.npz"))
    ap.add_argument("--workers", type=int, default=2, help="processes for the batch run (2)")
    ap.add_argument("--curves", type=int, default=5,
                    help="compression curves timed for comparison (5; 0: none)")
    args = ap.parse_args()
    if args.n < 1 or args.workers < 1 or args.curves < 0:
        ap.error("--n and --workers must be positive, --curves not negative")
    import torch

    from gnn_truss.corpus import load_corpus
    from gnn_truss.fe.buckling import buckling_batch, linear_buckling
    from gnn_truss.fe.nonlinear import compress_truss

    torch.set_num_threads(1)
    corpus = load_corpus(args.corpus, limit=args.n)
    lattices = [corpus.truss(i) for i in range(len(corpus))]
    seconds, failed = [], 0
    for t in lattices:
        t0 = time.perf_counter()
        try:
            linear_buckling(t)
        except ValueError:
            failed += 1
        seconds.append(time.perf_counter() - t0)
    s = np.asarray(seconds)
    print(f"linear_buckling, {len(s)} lattices of {args.corpus}, one process: median "
          f"{np.median(s):.3f} s, mean {s.mean():.3f} s, p90 {np.percentile(s, 90):.3f} s, max "
          f"{s.max():.3f} s; {failed} failed")
    t0 = time.perf_counter()
    _, _, ok = buckling_batch(lattices, workers=args.workers)
    dt = time.perf_counter() - t0
    print(f"buckling_batch, {args.workers} workers: {len(lattices) / dt:.2f} lattices/s "
          f"({int(ok.sum())} of {len(ok)} ok)")
    if args.curves:
        c = []
        for t in lattices[:args.curves]:
            t0 = time.perf_counter()
            compress_truss(t)
            c.append(time.perf_counter() - t0)
        print(f"compress_truss, first {len(c)} lattices: mean {np.mean(c):.2f} s a curve, "
              f"{np.mean(c) / s[:len(c)].mean():.0f} times their buckling analyses")


if __name__ == "__main__":
    main()
