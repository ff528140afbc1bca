"""Throughput and robustness of the nonlinear compression labels (13-point curves).

Prints (a) the median seconds per curve of the six elementary lattices, (b) the median (and
spread of) seconds per curve of the first ``--n`` corpus lattices (``--corpus``; lattices from
the generator if that file is absent), one process with one torch thread, (c) the convergence
failure rate (``result.ok`` False or a non-finite label) with the failure messages, and (d)
curves per second with ``--workers`` processes (``fork``, one torch thread each) on the same
lattices.

    python benchmarks/fe_nonlinear.py [--n 200] [--workers 2] [--epc 4]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# one BLAS/OpenMP thread per process: the figures are per core, and the parallel run would
# oversubscribe the cores otherwise
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402  (after the thread settings)

_EPC = 4


def _init_worker(epc: int) -> None:
    import torch

    global _EPC
    torch.set_num_threads(1)
    _EPC = epc


def one_curve(truss) -> dict:
    """Label one lattice; seconds, success flag, Newton evaluations and message."""
    from gnn_truss.fe.nonlinear import compress_truss

    t0, c0 = time.perf_counter(), time.process_time()
    try:
        res = compress_truss(truss, elements_per_strut=_EPC)
        ok = res.ok and bool(np.all(np.isfinite(res.label)))
        msg, iters = res.message, res.newton_iterations
        switches, unstable = len(res.branch_switches), len(res.unstable_strains)
    except ValueError as exc:  # invalid lattice
        ok, msg, iters, switches, unstable = False, f"ValueError: {exc}", 0, 0, 0
    return {"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0, "ok": ok,
            "message": msg, "iterations": iters, "switches": switches, "unstable": unstable}


def load_lattices(path: Path, n: int, seed: int):
    """First ``n`` lattices of the corpus file, or ``n`` generator lattices if it is absent."""
    if path.is_file():
        from gnn_truss.corpus import load_corpus

        corpus = load_corpus(path, limit=n)
        return [corpus.truss(i) for i in range(len(corpus))], f"corpus {path}"
    from gnn_truss.generator import generate, shard_rng

    return generate(n, shard_rng(seed, 0)), f"generator (seed {seed}; {path} not found)"


def describe(seconds) -> str:
    s = np.asarray(seconds)
    return (f"median {np.median(s):6.2f} s  mean {s.mean():6.2f} s  p90 "
            f"{np.percentile(s, 90):6.2f} s  max {s.max():6.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="corpus lattices (200)")
    ap.add_argument("--corpus", type=Path, default=Path("datasets/default/raw/corpus.npz"))
    ap.add_argument("--workers", type=int, default=2, help="processes for (d) (2)")
    ap.add_argument("--epc", type=int, default=4, help="elements per strut (4)")
    ap.add_argument("--seed", type=int, default=0, help="generator seed if no corpus (0)")
    args = ap.parse_args()

    _init_worker(args.epc)
    from gnn_truss import design_space as ds
    from gnn_truss.truss import Truss

    print(f"# nonlinear compression benchmark: 13-point curves to 25 %, rho = 0.15, "
          f"{args.epc} elements per strut")
    elem = {name: Truss.elementary(name) for name in ds.ELEMENTARY_LATTICES}
    runs = {name: one_curve(t) for name, t in elem.items()}
    print("(a) elementary lattices, 1 process (wall / CPU s): " + ", ".join(
        f"{k} {r['seconds']:.1f}/{r['cpu']:.1f}" + ("" if r["ok"] else " (failed)")
        for k, r in runs.items()))
    print(f"    median {np.median([r['seconds'] for r in runs.values()]):.2f} s per curve (wall), "
          f"{np.median([r['cpu'] for r in runs.values()]):.2f} s (CPU)")

    lattices, source = load_lattices(args.corpus, args.n, args.seed)
    edges = np.array([t.num_edges for t in lattices])
    print(f"(b) {len(lattices)} lattices from {source}; octant beams: median "
          f"{np.median(edges):.0f}, max {edges.max()}")
    t0 = time.perf_counter()
    serial = [one_curve(t) for t in lattices]
    wall1 = time.perf_counter() - t0
    secs = [r["seconds"] for r in serial]
    print(f"    1 process, wall: {describe(secs)}; {len(lattices) / wall1:.3f} curves/s")
    print(f"    1 process, CPU:  {describe([r['cpu'] for r in serial])}; mean Newton "
          f"evaluations {np.mean([r['iterations'] for r in serial]):.0f}")
    rho = np.corrcoef(edges, secs)[0, 1] if len(lattices) > 2 else float("nan")
    print(f"    correlation of seconds with the number of beams: {rho:.2f}")

    failed = [(i, r) for i, r in enumerate(serial) if not r["ok"]]
    print(f"(c) convergence failures: {len(failed)} / {len(lattices)} "
          f"({100 * len(failed) / len(lattices):.1f} %)")
    sw = sum(r["switches"] > 0 for r in serial)
    un = sum(r["unstable"] > 0 for r in serial)
    print(f"    branch switches (unstable Newton solution moved to a stable one) on {sw} / "
          f"{len(serial)} lattices; paths with a state where no stable equilibrium was found: "
          f"{un} / {len(serial)}")
    kinds = Counter(r["message"].split(" at ")[0] for _, r in failed)
    for kind, count in kinds.items():
        print(f"    {count} x {kind}")
    for i, r in failed:
        print(f"    lattice {i} ({edges[i]} beams): {r['message']}")

    ctx = mp.get_context("fork")
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(args.epc,)) as pool:
        par = list(pool.map(one_curve, lattices, chunksize=1))
    wall = time.perf_counter() - t0
    same = sum(a["ok"] == b["ok"] for a, b in zip(serial, par))
    print(f"(d) {args.workers} processes (fork, 1 thread each): {len(lattices) / wall:.3f} "
          f"curves/s ({wall:.0f} s wall; speed-up {wall1 / wall:.2f} over 1 process); per "
          f"curve {describe([r['seconds'] for r in par])}; same ok flags: {same}/{len(par)}")


if __name__ == "__main__":
    main()
