"""Wall time of FE-verified inverse design end to end.

Runs :func:`gnn_truss.design.run_design` (default: ``max-E22``, 100 starts x 1,000 Adam steps,
all 100 latents as one batch, then decode, repair, validate and FE-verify every candidate,
ten rounds of FE-guided latent refinement, the FE-driven polish of the 3 best designs (offset
steps and strut moves), and rank them) and prints the total and the per-stage seconds, the
time per optimisation step and the FE-verified result. Model loading and corpus reading are
timed separately (they are not part of a design run). Target: under 2 minutes on the 2-core
development machine, using both cores (the default: one torch thread and one FE process per
core; ``--threads 1 --workers 1`` measures a single core).

    python benchmarks/design.py [--checkpoint datasets/checkpoints/default/model.pt]
        [--objective max-E22] [--starts 100] [--steps 1000] [--refine-rounds 10]
        [--polish-generations 40] [--threads N] [--workers N]
"""
from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="datasets/checkpoints/default/model.pt")
    ap.add_argument("--corpus", default=None, help="default: the checkpoint's data.root")
    ap.add_argument("--objective", default="max-E22")
    ap.add_argument("--target", default=None, help="target of match objectives (JSON)")
    ap.add_argument("--starts", type=int, default=100)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--encode-refine", type=int, default=0,
                    help="latent refinement steps of the start and parent latents (0)")
    ap.add_argument("--path-candidates", type=int, default=None)
    ap.add_argument("--refine-rounds", type=int, default=None,
                    help="FE-guided refinement rounds (default: run_design's, 10 for stiffness)")
    ap.add_argument("--polish-generations", type=int, default=None,
                    help="polish generations (default: run_design's, 40 for "
                         "stiffness)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: one per core)")
    ap.add_argument("--workers", type=int, default=None,
                    help="FE processes (default: as many as torch threads)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None, help="also write the results here")
    ap.add_argument("--json", action="store_true", help="print the timings as JSON")
    args = ap.parse_args()

    import torch

    from gnn_truss.corpus import load_corpus
    from gnn_truss.design import (default_corpus_path, load_design_model, load_target,
                                  parse_objective, run_design, write_design)

    args.threads = args.threads or os.cpu_count() or 1
    args.workers = args.workers or args.threads
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model, normalizer, ck = load_design_model(args.checkpoint, args.device)
    t_model = time.perf_counter() - t0
    t0 = time.perf_counter()
    corpus = load_corpus(args.corpus or default_corpus_path(ck), quiet=True)
    t_corpus = time.perf_counter() - t0
    target = load_target(args.target) if args.target else None
    objective = parse_objective(args.objective, target)

    t0 = time.perf_counter()
    res = run_design(model, normalizer, corpus, objective, starts=args.starts, steps=args.steps,
                     lr=args.lr, path_candidates=args.path_candidates,
                     refine_rounds=args.refine_rounds,
                     polish_generations=args.polish_generations, workers=args.workers,
                     encode_refine=args.encode_refine)
    total = time.perf_counter() - t0
    timings = {"total": total, **res.timings}
    best = res.best
    report = {
        "checkpoint": args.checkpoint, "objective": objective.spec, "starts": args.starts,
        "steps": args.steps, "threads": args.threads, "device": args.device,
        "lr": args.lr, "encode_refine": args.encode_refine,
        "load_model_s": t_model, "load_corpus_s": t_corpus, "corpus_size": len(corpus),
        "seconds": timings, "ms_per_step": 1e3 * res.timings["optimize"] / (args.steps + 1),
        "candidates_verified": res.num_candidates, "distinct": len(res.candidates),
        "fe_ok": sum(c.status == "ok" for c in res.candidates),
        "dataset_best": res.dataset_best_value,
        "best_fe": None if best is None else best.fe_value,
        "improvement_percent": None if best is None else best.improvement,
    }
    if args.out:
        labels = corpus.stiffness if objective.label == "stiffness" else corpus.curve
        write_design(res, args.out, labels)
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"# inverse design benchmark: {objective.spec}, {args.starts} starts x {args.steps} "
          f"steps, torch threads {args.threads}, device {args.device}")
    print(f"load model {t_model:.2f} s, corpus ({len(corpus)} lattices) {t_corpus:.2f} s "
          f"(not counted)")
    print(f"end to end: {total:.1f} s")
    for k, v in res.timings.items():
        print(f"  {k:14s} {v:8.2f} s")
    print(f"  per step       {report['ms_per_step']:8.1f} ms (decode, re-encode, predict, "
          f"backward, Adam; {args.starts} latents)")
    print(f"candidates verified {res.num_candidates} ({len(res.candidates)} distinct, "
          f"{report['fe_ok']} FE ok)")
    if best is None:
        print("no FE-valid design")
    else:
        print(f"{objective.value_name}: dataset best {res.dataset_best_value:.5g}, best design "
              f"{best.fe_value:.5g} (FE), improvement {best.improvement:+.1f} %")


if __name__ == "__main__":
    main()
