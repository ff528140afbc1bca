"""Dataset processing speed: building the processed graphs of a corpus.

Prints, for the first ``--limit`` lattices of a corpus (default: the shipped one, all of it),
the wall time and lattices per second of :class:`gnn_truss.dataset.TrussDataset` processing
(the four split files written), (a) by the default batch path
(:func:`gnn_truss.graph.collated_graphs`, all graphs at once) and, unless ``--skip-loop``, (b)
by the one-graph-at-a-time path that a ``pre_transform`` hook forces. Each run processes a
fresh copy of the raw file in a temporary folder, so nothing in ``datasets/`` is touched.

    python benchmarks/dataset.py [--corpus datasets/default/raw/corpus.npz] [--limit N] [--skip-loop]
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def _keep(graph):
    return graph


def _process(corpus: Path, limit: int | None, loop: bool) -> tuple[float, int]:
    from gnn_truss.dataset import TrussDataset
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "raw").mkdir()
        shutil.copy(corpus, Path(tmp) / "raw" / "corpus.npz")
        t0 = time.perf_counter()
        ds = TrussDataset(tmp, split="all", limit=limit, pre_transform=_keep if loop else None)
        return time.perf_counter() - t0, len(ds)


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=root / "datasets/default/raw/corpus.npz")
    ap.add_argument("--limit", type=int, default=None, help="first N lattices (default: all)")
    ap.add_argument("--skip-loop", action="store_true", help="time the batch path only")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    for name, loop in (("batch (default)", False), ("one graph at a time", True)):
        if loop and args.skip_loop:
            continue
        seconds, n = _process(args.corpus, args.limit, loop)
        print(f"{name}: {n} lattices processed in {seconds:.1f} s ({n / seconds:,.0f} "
              f"lattices/s)")


if __name__ == "__main__":
    main()
