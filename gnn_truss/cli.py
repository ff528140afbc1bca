"""The ``gnn-truss`` command-line tool.

Thin ``main()`` over library functions: each subcommand parses its arguments, calls the
package, prints a summary and writes files. Errors in user input end with exit status 2 and a
one-line message naming the problem.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

__all__ = ["main", "build_parser"]

log = logging.getLogger("gnn_truss")

_PLANNED = {
    "sample": "decode random latent samples into lattices",
    "interpolate": "interpolate between two lattices in latent space",
    "traverse": "traverse one latent axis from a lattice",
    "design": "FE-verified inverse design of lattices for a target property",
}


def _fmt_matrix(C: np.ndarray) -> str:
    return "\n".join("  " + " ".join(f"{v: .5e}" for v in row) for row in C)


def _cmd_show(args) -> int:
    from .io import resolve_lattice
    from .plotting import plot_lattice

    truss, label = resolve_lattice(args.lattice)
    summary = truss.summary(density=args.density)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"lattice {label}: {summary['num_beams']} beams, {summary['num_used_nodes']} used "
              f"nodes {summary['used_node_types']}")
        print("valid" if summary["valid"] else "INVALID: " + ", ".join(summary["violated_rules"]))
        if summary["num_beams"]:
            print(f"periodic cell: {summary['periodic_nodes']} nodes, "
                  f"{summary['periodic_struts']} struts, {summary['num_crossings']} crossings "
                  f"(octant), total length {summary['total_length']:.4f}, radius "
                  f"{summary['radius']:.4f} at rho = {args.density}")
    out = Path(args.out) if args.out else Path(f"{label}.png")
    plot_lattice(truss, path=out, title=label, density=args.density)
    print(f"saved {out}")
    return 0


def _cmd_homogenize(args) -> int:
    from .fe import homogenize
    from .io import resolve_lattice
    from .properties import all_properties

    truss, label = resolve_lattice(args.lattice)
    res = homogenize(truss, density=args.density, E=args.E, nu=args.nu)
    if not res.ok:
        print(f"error: {label}: {res.status.value}: {res.message}", file=sys.stderr)
        return 1
    props = {k: float(v) for k, v in all_properties(res.C).items()}
    if args.json:
        print(json.dumps({"lattice": label, "density": args.density, "E_s": args.E,
                          "nu_s": args.nu, "radius": res.radius, "C": res.C.tolist(),
                          "S": res.S.tolist(), "properties": props}, indent=1))
    else:
        print(f"lattice {label}, rho = {args.density}, E_s = {args.E}, nu_s = {args.nu}, "
              f"strut radius {res.radius:.5f}")
        print("effective stiffness C (Voigt 11,22,33,23,31,12; engineering shears; units E_s):")
        print(_fmt_matrix(res.C))
        for k, v in props.items():
            print(f"  {k:>6s} = {v: .6g}")
    if args.plot:
        from .plotting import plot_elastic_surface
        plot_elastic_surface(res.C, path=args.plot, title=f"{label}: E(d) / E_s")
        print(f"saved {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _cmd_data_build(args) -> int:
    from .corpus import build_corpus

    if args.n <= 0:
        raise ValueError(f"--n must be positive, got {args.n}")
    if args.shard_size <= 0:
        raise ValueError(f"--shard-size must be positive, got {args.shard_size}")
    m = build_corpus(args.out, n=args.n, seed=args.seed, shard_size=args.shard_size,
                     workers=args.workers, scheduler=args.scheduler, density=args.density,
                     E=args.E, nu=args.nu, nonlinear=args.nonlinear,
                     progress=not args.no_progress)
    c = m["counts"]
    dropped = {k: v for k, v in c.items() if k.startswith("dropped")}
    print(f"corpus {args.out}: {c['unique']} unique labelled lattices "
          f"({c['generated']} generated, dropped {dropped or 'none'}), "
          f"{m['build_seconds_last_run']} s this run")
    return 0


def _cmd_data_pack(args) -> int:
    from .corpus import load_corpus, save_compact

    c = load_corpus(args.corpus, limit=args.limit)
    path = save_compact(c, args.out)
    print(f"wrote {len(c)} lattices to {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


def _cmd_data_export(args) -> int:
    from .corpus import load_corpus
    from .published import export_published

    c = load_corpus(args.corpus, limit=args.limit)
    export_published(c, args.out)
    print(f"exported {len(c)} lattices in the published format to {args.out}")
    return 0


def _cmd_data_import(args) -> int:
    from .corpus import save_compact
    from .published import import_published

    c = import_published(args.src)
    path = save_compact(c, args.out)
    print(f"imported {len(c)} lattices from {args.src} into {path} (node order "
          f"{'canonical' if c.meta['source_node_order'] == list(range(27)) else 'permuted'})")
    return 0


def _cmd_data_stats(args) -> int:
    from .corpus import load_corpus
    from .statistics import corpus_properties, corpus_statistics

    c = load_corpus(args.corpus)
    stats = corpus_statistics(c, geometry_sample=args.geometry_sample)
    text = json.dumps(stats, indent=1)
    if args.json_out:
        Path(args.json_out).write_text(text)
    print(text)
    if args.plot:
        from .plotting import plot_property_histograms, plot_property_projections
        props = corpus_properties(c)
        plot_property_projections(props, path=args.plot)
        hist = Path(args.plot).with_name(Path(args.plot).stem + "_hist.png")
        keys = ["E1", "E2", "E3", "G23", "G31", "G12", "nu12", "nu21", "nu31", "A_U", "KV_GV",
                "K_V"]
        plot_property_histograms({k: np.log10(props[k]) if k[0] in "EGK" and k != "KV_GV"
                                  else props[k] for k in keys}, path=hist,
                                 title="log10 of moduli; ratios and A_U linear")
        print(f"saved {args.plot} and {hist}", file=sys.stderr)
    return 0


def _cmd_compress(args) -> int:
    import torch

    from .fe.nonlinear import LABEL_STRAINS, compress, compression_model
    from .io import resolve_lattice

    torch.set_num_threads(1)
    truss, label = resolve_lattice(args.lattice)
    axis = "xyz".index(args.axis)
    model = compression_model(truss, density=args.density, E=args.E, nu=args.nu,
                              elements_per_strut=args.elements, imperfection=args.imperfection,
                              seed=args.seed)
    snaps = sorted({0.0, *args.snapshot, args.max_strain})
    res = compress(model, axis=axis, max_strain=args.max_strain, max_step=args.max_step,
                   snapshot_strains=snaps, track_stability=args.stability)
    if args.json:
        print(json.dumps({"lattice": label, "axis": args.axis, "ok": res.ok,
                          "message": res.message, "label_strains": LABEL_STRAINS.tolist(),
                          "label": [None if not np.isfinite(v) else float(v)
                                    for v in res.label],
                          "strain": res.strain.tolist(), "stress": res.stress.tolist(),
                          "critical_strains": res.critical_strains,
                          "seconds": round(res.seconds, 2)}, indent=1))
    else:
        print(f"lattice {label}: compression along {args.axis}, {len(model.elements)} elements,"
              f" {res.newton_iterations} evaluations, {res.seconds:.1f} s"
              + ("" if res.ok else f"  NOT CONVERGED: {res.message}"))
        print("  strain %   stress / E_s")
        for e, v in zip(LABEL_STRAINS, res.label):
            print(f"  {100 * e:7.1f}   {v: .6e}")
        if res.critical_strains:
            print("  loss of positive definiteness at strain "
                  + ", ".join(f"{100 * c:.2f} %" for c in res.critical_strains))
    out = Path(args.out) if args.out else Path(f"{label}_compression.png")
    from .plotting import plot_compression
    plot_compression(res, path=out, title=f"{label}: uniaxial compression along {args.axis}")
    print(f"saved {out}", file=sys.stderr if args.json else sys.stdout)
    return 0 if res.ok else 1


def _cmd_train(args) -> int:
    from .training import load_config, train

    cfg = load_config(args.config)
    if args.out:
        cfg["out"] = args.out
    if args.epochs:
        cfg["train"]["epochs"] = args.epochs
    if args.limit:
        cfg["data"]["limit"] = args.limit
    if args.time_limit:
        cfg["train"]["time_limit_minutes"] = args.time_limit
    summary = train(cfg, resume=not args.no_resume, progress=not args.no_progress)
    print(json.dumps(summary, indent=1))
    return 0


def _cmd_evaluate(args) -> int:
    from .evaluation import evaluate_checkpoint

    out = Path(args.out) if args.out else Path(args.checkpoint).with_name("evaluation")
    report = evaluate_checkpoint(args.checkpoint, out, n_samples=args.samples,
                                 split=args.split, limit=args.limit,
                                 fe_check=not args.no_fe)
    print(json.dumps(report.get("summary", report), indent=1))
    print(f"wrote {out / 'report.json'} and figures", file=sys.stderr)
    return 0


def _add_data_parser(sub) -> None:
    d = sub.add_parser("data", help="build, pack, export, import and inspect lattice corpora",
                       description="FE-labelled lattice corpora: build (sharded, resumable, "
                                   "parallel), pack to the compact shipped file, exchange with "
                                   "the published dataset format, statistics.")
    dsub = d.add_subparsers(dest="data_command", metavar="ACTION")
    b = dsub.add_parser("build", help="generate and FE-label N unique lattices",
                        description="Generate N unique valid lattices (paper's perturbation + "
                                    "superposition generator) and label them by linear FE. "
                                    "Shards are written atomically; rerunning the same command "
                                    "resumes an interrupted build.")
    b.add_argument("--n", type=int, required=True, help="unique labelled lattices wanted")
    b.add_argument("--out", required=True, help="corpus directory")
    b.add_argument("--seed", type=int, default=0, help="run seed (0)")
    b.add_argument("--shard-size", type=int, default=2000, help="lattices per shard (2000)")
    b.add_argument("--workers", type=int, default=None, help="local processes (all cores)")
    b.add_argument("--scheduler", help="Dask distributed scheduler address (needs the "
                                       "'dask' extra); shards run on that cluster")
    b.add_argument("--density", type=float, default=0.15, help="relative density (0.15)")
    b.add_argument("--E", type=float, default=1.0, help="base Young's modulus (1)")
    b.add_argument("--nu", type=float, default=0.3, help="base Poisson's ratio (0.3)")
    b.add_argument("--nonlinear", action="store_true",
                   help="also compute the 13-point compression curves")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(func=_cmd_data_build)
    p = dsub.add_parser("pack", help="write a corpus as one compact .npz (shipped format)")
    p.add_argument("corpus", help="corpus directory or compact .npz")
    p.add_argument("out", help="output .npz")
    p.add_argument("--limit", type=int, help="keep the first LIMIT lattices")
    p.set_defaults(func=_cmd_data_pack)
    e = dsub.add_parser("export", help="export to the published dataset format")
    e.add_argument("corpus", help="corpus directory or compact .npz")
    e.add_argument("out", help="output directory")
    e.add_argument("--limit", type=int, help="export the first LIMIT lattices")
    e.set_defaults(func=_cmd_data_export)
    i = dsub.add_parser("import", help="import the published dataset format")
    i.add_argument("src", help="directory with adjacency-matrix.npz, node-offset.npz, "
                               "node-position.npz, stiffness-vec.csv")
    i.add_argument("out", help="output compact .npz")
    i.set_defaults(func=_cmd_data_import)
    s = dsub.add_parser("stats", help="distribution statistics and figures of a corpus")
    s.add_argument("corpus", help="corpus directory or compact .npz")
    s.add_argument("--plot", help="PNG of the E/G projections (histograms beside it)")
    s.add_argument("--json-out", help="also write the statistics to this JSON file")
    s.add_argument("--geometry-sample", type=int, default=5000,
                   help="lattices sampled for crossing and radius statistics (5000)")
    s.set_defaults(func=_cmd_data_stats)
    d.set_defaults(func=lambda a, p=d: (p.print_help(), 0)[1])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gnn-truss",
        description="Graph-based generative design of 3D truss metamaterials.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    lat_help = ("lattice JSON/NPZ file or an elementary lattice name "
                "(sc, sc_2x2x2, bcc, bcc_2x2x2, octet, octet_2x2x2)")
    s = sub.add_parser("show", help="print a lattice summary and save a 3D plot (PNG)",
                       description="Print a lattice summary (validity, periodic nodes and "
                                   "struts, crossings, length, radius) and save a PNG of the "
                                   "octant and the mirrored full cell.")
    s.add_argument("lattice", help=lat_help)
    s.add_argument("--out", "-o", help="PNG path (default: LABEL.png)")
    s.add_argument("--density", type=float, default=0.15, help="relative density (0.15)")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.set_defaults(func=_cmd_show)

    h = sub.add_parser("homogenize", help="effective stiffness of a lattice by FE",
                       description="Linear periodic FE homogenization (Timoshenko beams): "
                                   "prints C and the engineering constants.")
    h.add_argument("lattice", help=lat_help)
    h.add_argument("--density", type=float, default=0.15, help="relative density (0.15)")
    h.add_argument("--E", type=float, default=1.0, help="base Young's modulus (1)")
    h.add_argument("--nu", type=float, default=0.3, help="base Poisson's ratio (0.3)")
    h.add_argument("--plot", help="save the elastic surface E(d) as this PNG")
    h.add_argument("--json", action="store_true", help="print results as JSON")
    h.set_defaults(func=_cmd_homogenize)

    _add_data_parser(sub)

    ev = sub.add_parser("evaluate", help="evaluate a trained checkpoint on the test split",
                        description="Reconstruction (adjacency accuracy, exact match, edge F1, "
                                    "node-position R^2), property R^2 / curve NRMSE, and "
                                    "validity, uniqueness and novelty of N(0, I) samples; "
                                    "writes report.json and PNG figures.")
    ev.add_argument("checkpoint", help="checkpoint file (best.pt or last.pt)")
    ev.add_argument("--out", help="output directory (default: evaluation/ beside it)")
    ev.add_argument("--samples", type=int, default=1000, help="latent samples (1000)")
    ev.add_argument("--split", choices=["train", "val", "test"], default="test")
    ev.add_argument("--limit", type=int, help="evaluate the first LIMIT lattices of the split")
    ev.add_argument("--no-fe", action="store_true",
                    help="skip the FE check in the strict validity")
    ev.set_defaults(func=_cmd_evaluate)

    t = sub.add_parser("train", help="train the graph VAE and property predictor",
                       description="Train from a YAML config (configs/default.yaml, "
                                   "configs/mlp_baseline.yaml, configs/nonlinear.yaml, "
                                   "configs/paper_gpu.yaml). Resumes from OUT/last.pt; "
                                   "multi-process with torchrun.")
    t.add_argument("--config", required=True, help="YAML config file")
    t.add_argument("--out", help="output directory (overrides the config)")
    t.add_argument("--epochs", type=int, help="override train.epochs")
    t.add_argument("--limit", type=int, help="use only the first LIMIT lattices")
    t.add_argument("--time-limit", type=float, help="stop after this many minutes (resumable)")
    t.add_argument("--no-resume", action="store_true", help="ignore OUT/last.pt")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=_cmd_train)

    c = sub.add_parser("compress", help="nonlinear uniaxial compression curve of a lattice",
                       description="Uniaxial compression of the periodic cell to 25 % strain "
                                   "(corotational Timoshenko beams, lateral stresses zero): "
                                   "prints the 13-point label and saves a PNG of the curve and "
                                   "the deformed cell.")
    c.add_argument("lattice", help=lat_help)
    c.add_argument("--axis", choices=["x", "y", "z"], default="z", help="loading axis (z)")
    c.add_argument("--max-strain", type=float, default=0.25, help="final strain (0.25)")
    c.add_argument("--max-step", type=float, default=0.005, help="largest strain step (0.005)")
    c.add_argument("--elements", type=int, default=4, help="elements per strut (4)")
    c.add_argument("--imperfection", type=float, default=0.01,
                   help="imperfection amplitude as a fraction of the strut radius (0.01)")
    c.add_argument("--seed", type=int, default=0, help="seed of the imperfection (0)")
    c.add_argument("--density", type=float, default=0.15, help="relative density (0.15)")
    c.add_argument("--E", type=float, default=1.0, help="base Young's modulus (1)")
    c.add_argument("--nu", type=float, default=0.3, help="base Poisson's ratio (0.3)")
    c.add_argument("--snapshot", type=float, nargs="*", default=[],
                   help="extra strains at which to keep the deformed configuration")
    c.add_argument("--stability", action="store_true",
                   help="track the smallest tangent eigenvalue (bifurcation detection)")
    c.add_argument("--out", "-o", help="PNG path (default: LABEL_compression.png)")
    c.add_argument("--json", action="store_true", help="print results as JSON")
    c.set_defaults(func=_cmd_compress)

    for name, text in _PLANNED.items():
        q = sub.add_parser(name, help=f"{text} (not available yet)",
                           description=f"{text}. Not available in this version.")
        q.set_defaults(func=lambda a, n=name: _not_yet(n))
    return p


def _not_yet(name: str) -> int:
    print(f"error: 'gnn-truss {name}' is not available in this version", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
