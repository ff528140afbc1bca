"""Probe helper (session 37): one table row per curve-design run folder (``summary.json`` and
``table.csv`` of ``gnn-truss design``): the dataset best, the best design of the gradient stage
(candidates that are neither refined nor polished), the best design, its source, how many
distinct candidates beat the dataset best, and the run time.

    python datasets/checkpoints/nonlinear/probes/ten_tasks_table.py 'runs/des_ship_*' 'runs/des_g3_*'
"""
import argparse
import csv
import glob
import json
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("patterns", nargs="+", help="run folders or glob patterns")
args = ap.parse_args()
folders = sorted({Path(f) for p in args.patterns for f in glob.glob(p)
                  if (Path(f) / "summary.json").exists()})
if not folders:
    raise SystemExit("no run folder with a summary.json matches")
print("run | dataset best % | gradient stage % | best design % (source) | beating dataset | s")
for d in folders:
    s = json.loads((d / "summary.json").read_text())
    col = f"fe_{s['value_name']}"
    with open(d / "table.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["kind"] == "designed" and r["status"] == "ok"]
    grad = [float(r[col]) for r in rows if r["source"] not in ("refine", "polish")]
    best = s["best_design"]
    cells = [d.name, f"{100 * s['dataset_best']['value']:.2f}",
             f"{100 * min(grad):.2f}" if grad else "-",
             f"{100 * best['value']:.2f} ({best['source']})" if best else "-",
             str(s["better_than_dataset"]), f"{sum(s['timings_seconds'].values()):.0f}"]
    print(" | ".join(cells))
