"""Generator and corpus-build throughput, uniqueness rate, and corpus statistics.

    python benchmarks/corpus.py [--n 4000] [--workers 2] [--corpus datasets/default/raw/corpus.npz]

Prints: lattices generated per second (one process), the generator's uniqueness rate (share of
distinct canonical hashes among raw draws), lattices labelled per second (batched FE), the
end-to-end build rate of ``build_corpus`` on this machine with the implied time for 100,000
lattices, and (with ``--corpus``) the statistics of a built corpus.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np

from gnn_truss.corpus import build_corpus, load_corpus
from gnn_truss.fe import homogenize_batch
from gnn_truss.generator import GeneratorConfig, generate, sample_lattice, shard_rng


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=4000, help="lattices for the end-to-end build")
    ap.add_argument("--draws", type=int, default=2000, help="raw draws for the uniqueness rate")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--corpus", help="a corpus (.npz or build dir) to print statistics of")
    args = ap.parse_args()
    import torch  # noqa: F401

    rng = shard_rng(123, 0)
    t0 = time.perf_counter()
    raw = [sample_lattice(rng, GeneratorConfig()) for _ in range(args.draws)]
    gen_rate = args.draws / (time.perf_counter() - t0)
    hashes = [t.canonical_hash() for t in raw]
    print(f"generator (1 process): {gen_rate:.1f} valid lattices/s; uniqueness rate "
          f"{len(set(hashes)) / len(hashes):.4f} ({len(set(hashes))} distinct of {len(raw)} "
          f"draws)")
    uniq = generate(1000, shard_rng(123, 1))
    t0 = time.perf_counter()
    res = homogenize_batch(uniq, workers=args.workers)
    lab_rate = len(uniq) / (time.perf_counter() - t0)
    print(f"FE labelling ({args.workers} procs): {lab_rate:.1f} lattices/s; status "
          f"{dict(zip(*np.unique(res.status, return_counts=True)))}")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        m = build_corpus(tmp, n=args.n, seed=7, shard_size=max(250, args.n // 8),
                         workers=args.workers, progress=False)
        dt = time.perf_counter() - t0
    rate = m["counts"]["unique"] / dt
    print(f"end-to-end build ({args.workers} procs): {m['counts']['unique']} unique labelled "
          f"lattices in {dt:.1f} s = {rate:.1f} /s -> 100,000 in {1e5 / rate / 60:.1f} min; "
          f"counts {m['counts']}")
    if args.corpus:
        from gnn_truss.statistics import corpus_statistics
        c = load_corpus(args.corpus)
        print(json.dumps(corpus_statistics(c), indent=1))


if __name__ == "__main__":
    main()
