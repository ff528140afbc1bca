"""Mesh convergence of the nonlinear compression curve (elements per strut).

For each lattice (octet, bcc, sc and ``--n-random`` generator lattices) the 13-point label of
:func:`gnn_truss.fe.nonlinear.compress_truss` is computed with ``elements_per_strut`` in
``--epc`` (default 2, 3, 4, 6, 8; default imperfection and seed, so the same imperfection shape
on every mesh). Printed per lattice and mesh: the max relative change of the curve versus the
finest mesh, ``max_k |label_k - label_k(finest)| / max_k |label_k(finest)|``, and the CPU
seconds per curve (one process, one torch thread; CPU rather than wall time because wall times
on a shared machine vary several-fold with the load).

    python benchmarks/fe_nonlinear_convergence.py [--epc 2 3 4 6 8] [--n-random 3] [--seed 0]
"""
from __future__ import annotations

import argparse
import os
import time

# one BLAS thread: the timings are per core (the dense paths would oversubscribe otherwise)
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402  (after the thread settings)


def curve(truss, epc: int) -> tuple[np.ndarray, float, bool, str]:
    """13-point label, seconds, ok flag and message of one lattice and mesh."""
    from gnn_truss.fe.nonlinear import compress_truss

    t0 = time.process_time()
    res = compress_truss(truss, elements_per_strut=epc)
    ok = res.ok and bool(np.all(np.isfinite(res.label)))
    return res.label, time.process_time() - t0, ok, res.message


def max_rel_change(label: np.ndarray, ref: np.ndarray) -> float:
    """``max |label - ref| / max |ref|`` (NaN if either curve is incomplete)."""
    if not (np.all(np.isfinite(label)) and np.all(np.isfinite(ref))):
        return float("nan")
    return float(np.max(np.abs(label - ref)) / np.max(np.abs(ref)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epc", type=int, nargs="+", default=[2, 3, 4, 6, 8],
                    help="elements per strut; the largest is the reference (2 3 4 6 8)")
    ap.add_argument("--n-random", type=int, default=3, help="generator lattices (3)")
    ap.add_argument("--seed", type=int, default=0, help="generator seed (0)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from gnn_truss.generator import generate, shard_rng
    from gnn_truss.truss import Truss

    epcs = sorted(set(args.epc))
    lattices = [(name, Truss.elementary(name)) for name in ("octet", "bcc", "sc")]
    rand = generate(args.n_random, shard_rng(args.seed, 0))
    lattices += [(f"random{k} ({t.num_edges} beams)", t) for k, t in enumerate(rand)]

    print(f"# nonlinear compression: mesh convergence versus epc={epcs[-1]} "
          f"(max |d label| / max |label|), CPU seconds per 13-point curve; 1 process, 1 thread")
    head = "".join(f"{'epc=' + str(e):>18}" for e in epcs)
    print(f"{'lattice':<24}{head}")
    errors = {e: [] for e in epcs}
    seconds = {e: [] for e in epcs}
    for name, t in lattices:
        labels, cells = {}, {}
        for e in epcs:
            labels[e], sec, ok, msg = curve(t, e)
            seconds[e].append(sec)
            cells[e] = (sec, ok, msg)
        ref = labels[epcs[-1]]
        row = []
        for e in epcs:
            err = max_rel_change(labels[e], ref)
            errors[e].append(err)
            sec, ok, _ = cells[e]
            row.append(f"{err:9.2e} {sec:6.1f}s" + ("" if ok else "!"))
        print(f"{name:<24}" + "".join(f"{c:>18}" for c in row), flush=True)
        for e in epcs:
            if not cells[e][1]:
                print(f"    ! epc={e}: {cells[e][2]}")
    print(f"{'max (s: median)':<24}" + "".join(
        f"{f'{np.nanmax(errors[e]):9.2e} {np.median(seconds[e]):6.1f}s':>18}" for e in epcs))


if __name__ == "__main__":
    main()
