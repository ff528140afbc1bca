"""The ``gnn-truss`` command-line tool.

Thin ``main()`` over library functions: each subcommand parses its arguments, calls the
package, prints a summary and writes files. Errors in user input end with exit status 2 and a
one-line message naming the problem.
"""
from __future__ import annotations

import argparse
import csv
import importlib
import importlib.util
import json
import logging
import math
import sys
from pathlib import Path

import numpy as np

from .paths import DEFAULT_CHECKPOINT, find_checkpoint

__all__ = ["main", "build_parser"]

log = logging.getLogger("gnn_truss")

#: Subcommands implemented in other modules, imported only when run:
#: name -> (module, add-arguments function, main function, help).
_EXTERNAL = {
    "design": ("gnn_truss.design", "add_design_arguments", "design_main",
               "FE-verified inverse design of lattices for a target property"),
    "export": ("gnn_truss.export", "add_export_arguments", "export_main",
               "export a lattice as JSON, CSV or STL"),
}

#: Properties drawn along interpolation and traversal paths.
_PATH_PLOT = ("E1", "E2", "E3", "G23", "G31", "G12", "nu21", "K_V", "A_U")


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


def _cmd_data_buckle(args) -> int:
    from .corpus import buckling_features, write_shard

    out = Path(args.out)
    if out.suffix != ".npz":
        raise ValueError(f"the output must be a .npz file, got {out}")
    work = Path(args.work) if args.work else out.with_name(out.stem + "_shards")
    res = buckling_features(args.corpus, work, shard_size=args.shard_size,
                            num_modes=args.modes, workers=args.workers, limit=args.limit,
                            progress=not args.no_progress, reuse=args.reuse)
    write_shard(out, {k: res[k] for k in ("strains", "modulus", "ok", "row_hash")})
    bad = int((~res["ok"]).sum())
    took = f"{res['reused']} rows taken from {args.reuse}; " if args.reuse else ""
    print(f"wrote the buckling of {len(res['ok'])} lattices to {out} ({bad} could not be "
          f"analysed; {took}shards in {work})")
    return 0


def _cmd_data_unpack(args) -> int:
    from .corpus import unpack_compact

    m = unpack_compact(args.corpus, args.out)
    print(f"unpacked {sum(v['labelled'] for v in m['shards'].values())} lattices into "
          f"{len(m['shards'])} shards in {args.out}; `gnn-truss data build` with the same "
          f"parameters (seed {m.get('seed')}, shard size {m.get('shard_size')}) resumes it")
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


def _add_cell_args(p, lat_help: str) -> None:
    """The lattice, loading axis, mesh and material options of ``compress`` and ``buckle``."""
    p.add_argument("lattice", help=lat_help)
    p.add_argument("--axis", choices=["x", "y", "z"], default="z", help="loading axis (z)")
    p.add_argument("--elements", type=int, default=4, help="elements per strut (4)")
    p.add_argument("--density", type=float, default=0.15, help="relative density (0.15)")
    p.add_argument("--E", type=float, default=1.0, help="base Young's modulus (1)")
    p.add_argument("--nu", type=float, default=0.3, help="base Poisson's ratio (0.3)")


#: Largest ``--modes`` of ``gnn-truss buckle``.
MAX_BUCKLING_MODES = 50


def _cmd_buckle(args) -> int:
    from .fe.buckling import linear_buckling
    from .io import resolve_lattice

    if not 1 <= args.modes <= MAX_BUCKLING_MODES:
        raise ValueError(f"--modes must lie in 1 .. {MAX_BUCKLING_MODES}, got {args.modes}")
    truss, label = resolve_lattice(args.lattice)
    axis = "xyz".index(args.axis)
    try:
        b = linear_buckling(truss, axis=axis, num_modes=args.modes, density=args.density,
                            E=args.E, nu=args.nu, elements_per_strut=args.elements,
                            validate=not args.no_validate)
    except (ValueError, np.linalg.LinAlgError, RuntimeError) as exc:
        # the lattice cannot be analysed (as `homogenize` reports a non-OK status)
        print(f"error: {label}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"lattice": label, "axis": args.axis, "modulus": b.modulus,
                          "critical_strains": [None if not np.isfinite(v) else float(v)
                                               for v in b.strains],
                          "critical_stresses": [None if not np.isfinite(v) else float(v)
                                                for v in b.stresses]}, indent=1))
        return 0
    print(f"lattice {label}: linearised buckling under compression along {args.axis} "
          f"(initial modulus {b.modulus:.6e} E_s)")
    print("  mode   strain %   stress / E_s")
    for k, (e, s) in enumerate(zip(b.strains, b.stresses), 1):
        print(f"  {k:4d}   {100 * e:8.3f}   {s: .6e}")
    return 0


def _cmd_train(args) -> int:
    from .training import load_config, train

    for name, value in (("--epochs", args.epochs), ("--limit", args.limit)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    if args.time_limit is not None and not (args.time_limit > 0 and
                                            math.isfinite(args.time_limit)):
        raise ValueError(f"--time-limit must be a positive number of minutes, got "
                         f"{args.time_limit}")
    cfg = load_config(args.config)
    if args.out:
        cfg["out"] = args.out
    if args.epochs is not None:
        cfg["train"]["epochs"] = args.epochs
    if args.limit is not None:
        cfg["data"]["limit"] = args.limit
    if args.time_limit is not None:
        cfg["train"]["time_limit_minutes"] = args.time_limit
    if args.device is not None:
        cfg["train"]["device"] = args.device
    if args.loader_workers is not None:
        cfg["train"]["num_workers"] = args.loader_workers
    if args.precision is not None:
        cfg["train"]["precision"] = args.precision
    if args.init_from is not None:
        if not Path(args.init_from).is_file():
            raise ValueError(f"--init-from: checkpoint not found: {args.init_from}")
        cfg["train"]["init_from"] = args.init_from
    summary = train(cfg, resume=not args.no_resume, progress=not args.no_progress)
    print(json.dumps(summary, indent=1))
    return 0


def _cmd_graft(args) -> int:
    from .training import _atomic_save, graft_vae

    ck = graft_vae(args.predictor, args.vae)
    out = Path(args.out)
    if out.resolve() in (Path(args.predictor).resolve(), Path(args.vae).resolve()) \
            and not args.force:
        raise ValueError(f"--out {out} is one of the inputs; pass --force to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_save(ck, out)
    n = sum(1 for k in ck["model"] if k.startswith("predictor."))
    print(f"saved {out}: the VAE of {args.vae} under the predictor of {args.predictor} "
          f"({n} predictor tensors)")
    return 0


def _cmd_info(args) -> int:
    from .training import checkpoint_info

    path = find_checkpoint(args.checkpoint)
    info = checkpoint_info(path)
    if args.json:
        print(json.dumps(info, indent=1, default=str))
        return 0
    lat = info["latent"]
    params = info["parameters"]
    parts = ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in params.items() if k != "total")
    d = info["data"]
    limit = "" if d["limit"] is None else f", first {d['limit']} lattices"
    lines = [
        f"{info['path']} ({info['size_mb']:.1f} MB), saved at epoch {info['epoch']} "
        f"(counted from 0) of its last training run",
        f"  model:     {info['encoder']} encoder, latents {lat['topology']}/{lat['shared']}/"
        f"{lat['geometry']} (topology/shared/geometry), predictor on the "
        f"{'decoded lattice' if info['predictor_input'] == 'decoded' else 'latent mean'}, "
        f"target {info['target']}",
        f"  weights:   {params['total'] / 1e6:.2f} M ({parts})",
        f"  data:      {d['root']} ({d['source']}, split seed {d['split_seed']}, "
        f"{d.get('split_by', 'permutation')}"
        f"{limit}), "
        f"fingerprint {info['fingerprint'][:12]}"
        + ("" if info["num_lattices"] is None else f", {info['num_lattices']} lattices"),
    ]
    for g in info["grafted_vae"] or []:  # the epoch above is then the predictor's
        lines.append(f"  VAE from:  {g['path']} (epoch {g['epoch']}, fingerprint "
                     f"{g['fingerprint'][:12]}); the epoch above is the predictor's")
    changes = info["config_changes"]
    if changes:
        lines.append("  config (differs from the defaults):")
        lines += [f"    {k}: {v}" for k, v in sorted(changes.items())]
    rep = info["report"]
    if rep is None:
        lines.append(f"  no evaluation report of it beside it: gnn-truss evaluate {path} "
                     f"(writes {path.with_name('evaluation') / 'report.json'})")
    else:
        from .evaluation import format_target_check
        lines.append(f"  evaluation: {rep['path']} ({rep['split']} split, "
                     f"{rep['num_lattices']} lattices)")
        lines += ["  " + ln for ln in format_target_check(rep["targets"]).splitlines()]
    print("\n".join(lines))
    return 0


def _add_split_options(parser) -> None:
    """``--split`` and ``--limit`` of the commands that run a model on a data split."""
    parser.add_argument("--split", choices=["train", "val", "test"], default="test")
    parser.add_argument("--limit", type=int, help="use the first LIMIT lattices of the split")


def _cmd_compare(args) -> int:
    from .comparison import compare_checkpoints, paired_table

    res = compare_checkpoints(args.checkpoint_a, args.checkpoint_b, out_dir=args.out,
                              names=args.names, split=args.split, limit=args.limit,
                              draws=args.draws, seed=args.seed, symmetrise=args.symmetrise,
                              constrained=args.constrained, refine_latent=args.refine_latent,
                              refine_lr=args.refine_lr, unseen=args.unseen,
                              data_overrides_b=None if args.corpus_limit_b is None
                              else {"limit": args.corpus_limit_b}, workers=args.workers,
                              progress=not args.no_progress,
                              symmetrise_predictor=args.symmetrise_predictor)
    sym = "" if not args.symmetrise else f", outputs symmetrised ({args.symmetrise})"
    sym += ("" if not args.symmetrise_predictor
            else f", predictor symmetrised ({args.symmetrise_predictor})")
    sym += "" if not args.refine_latent else f", latents refined ({args.refine_latent} steps)"
    sym += ", constrained decoding" if args.constrained else ""
    sym += ", lattices neither checkpoint saw in training" if args.unseen else ""
    print(f"{res['split']} split, {res['num_lattices']} lattices, {res['draws']} paired "
          f"bootstrap draws{sym}")
    print(paired_table(res), end="")
    return 0


def _cmd_evaluate(args) -> int:
    from .evaluation import compare_reports, evaluate_checkpoint, format_target_check

    out = Path(args.out) if args.out else Path(args.checkpoint).with_name("evaluation")
    baseline = None
    if args.baseline:  # read it first: a bad file fails before the long evaluation
        try:
            baseline = json.loads(Path(args.baseline).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"--baseline {args.baseline}: not a readable report.json "
                             f"({type(exc).__name__})") from None
        if not isinstance(baseline, dict) or "adjacency" not in baseline:
            raise ValueError(f"--baseline {args.baseline}: not a report.json of "
                             f"'gnn-truss evaluate'")
    report = evaluate_checkpoint(args.checkpoint, out, n_samples=args.samples,
                                 split=args.split, limit=args.limit,
                                 data_overrides=None if args.corpus_limit is None
                                 else {"limit": args.corpus_limit},
                                 fe_check=not args.no_fe, symmetrise=args.symmetrise,
                                 constrained=args.constrained,
                                 refine_latent=args.refine_latent, refine_lr=args.refine_lr,
                                 workers=args.workers, progress=not args.no_progress,
                                 symmetrise_predictor=args.symmetrise_predictor)
    print(json.dumps(report.get("summary", report), indent=1))
    print(format_target_check(report["targets"]))
    if baseline is not None:
        a, b = _report_name(report), _report_name(baseline)
        if a == b:
            a, b = "this", "baseline"
        table = compare_reports({a: report, b: baseline})
        (out / "comparison.md").write_text(table)
        print(table)
    print(f"wrote {out / 'report.json'} and figures", file=sys.stderr)
    return 0


def _report_name(report: dict) -> str:
    """A column name for a report: its checkpoint file's stem (``mlp_baseline``), or the
    folder's name for the generic stems ``model``, ``best`` and ``last``."""
    path = Path(str(report.get("checkpoint") or "?"))
    if path.stem in ("model", "best", "last", "?", ""):
        return path.parent.name or "model"
    return path.stem


def _add_symmetrise_option(parser, what: str) -> None:
    parser.add_argument("--symmetrise", choices=("axes", "axes_mirrors"), default=None,
                        help=f"{what}: 'axes' (6 axis permutations; the 2 keeping z for "
                             f"curves) or 'axes_mirrors' (with the reflections: 48 / 16); one "
                             f"forward pass each (gnn_truss.symmetry.symmetrised_outputs)")


def _add_symmetrise_predictor_option(parser, what: str) -> None:
    parser.add_argument("--symmetrise-predictor", choices=("axes", "axes_mirrors"),
                        default=None,
                        help=f"checkpoints whose predictor reads the decoded lattice: {what} "
                             f"the one pass with the predictor averaged over the symmetric "
                             f"copies of the decoded lattice ('axes': 6 / 2 for curves; "
                             f"'axes_mirrors': 48 / 16), one encoder and decoder pass "
                             f"(gnn_truss.symmetry.symmetrised_decoded_prediction)")


def _add_refine_option(parser, what: str) -> None:
    parser.add_argument("--refine-latent", type=int, metavar="STEPS",
                        help=f"{what} latents refined from the encoder's means by STEPS Adam "
                             f"steps on each lattice's own reconstruction loss (an iterative "
                             f"encoder for known lattices; gnn_truss.nn.vae.refine_latent; "
                             f"0: off); with --symmetrise, each symmetric copy is refined and "
                             f"the outputs averaged (one refinement per copy)")
    parser.add_argument("--refine-lr", type=float, default=0.01,
                        help="Adam step size of --refine-latent (0.01)")


def _add_constrained_option(parser, what: str) -> None:
    parser.add_argument("--constrained", action="store_true",
                        help=f"{what} the most probable adjacency that passes the topology "
                             f"rules (connected, spans the cell, no dangling node; "
                             f"gnn_truss.decoding)")


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
    bk = dsub.add_parser("buckle", help="linearised buckling of every lattice of a corpus "
                                        "(sharded, resumable)",
                         description="The lowest critical strains under uniaxial compression "
                                     "along z and E3 of every lattice (gnn_truss.fe.buckling), "
                                     "about 0.05 s a lattice, written in shards to --work; "
                                     "rerunning the command resumes.")
    bk.add_argument("corpus", help="corpus directory or compact .npz")
    bk.add_argument("out", help="output .npz (strains [N, modes], modulus [N], ok [N])")
    bk.add_argument("--work", help="shard directory (default: OUT_shards beside OUT)")
    bk.add_argument("--shard-size", type=int, default=500, help="lattices per shard (500)")
    bk.add_argument("--modes", type=int, default=3, help="critical strains per lattice (3)")
    bk.add_argument("--workers", type=int, default=1, help="processes (1)")
    bk.add_argument("--limit", type=int, help="only the first LIMIT lattices")
    bk.add_argument("--reuse", metavar="TABLE",
                    help="an earlier table of this command (it may be OUT itself): the "
                         "lattices it holds are taken from it, matched by their hash, and only "
                         "the others analysed, e.g. to extend a table to a grown corpus")
    bk.add_argument("--no-progress", action="store_true", help="no progress bar")
    bk.set_defaults(func=_cmd_data_buckle)
    u = dsub.add_parser("unpack", help="rebuild the build directory of a packed corpus, to "
                                       "resume (extend) its build",
                        description="Write the shards and manifest of a compact .npz that was "
                                    "packed from a build directory, so that `data build` with "
                                    "the same parameters and a larger --n adds lattices to it.")
    u.add_argument("corpus", help="compact .npz packed from a build directory")
    u.add_argument("out", help="new corpus directory")
    u.set_defaults(func=_cmd_data_unpack)
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


# --------------------------------------------------------------------------- latent exploration

def _load_model(args):
    from .exploration import load_model

    return load_model(find_checkpoint(args.checkpoint))


def _corpus_path(args, ck) -> Path | None:
    """``--corpus`` or the corpus of the checkpoint's dataset (``ROOT/raw/corpus.npz`` or
    ``ROOT/raw/corpus``); ``None`` if there is none."""
    if getattr(args, "corpus", None):
        return Path(args.corpus)
    if ck["config"]["data"].get("source", "corpus") != "corpus":
        return None
    from .design import default_corpus_path
    try:
        return default_corpus_path(ck)
    except ValueError:  # none there: the caller says what it needed it for
        return None


def _resolve_spec(spec: str, args, ck, cache: dict):
    """A lattice from a file, an elementary name or ``corpus:<index>``; ``(truss, label)``."""
    from .io import resolve_lattice

    if not spec.startswith("corpus:"):
        return resolve_lattice(spec)
    try:
        i = int(spec.split(":", 1)[1])
    except ValueError:
        raise ValueError(f"{spec!r}: expected corpus:<index> with an integer index") from None
    if "corpus" not in cache:
        from .corpus import load_corpus
        path = _corpus_path(args, ck)
        if path is None:
            raise ValueError(f"{spec!r}: no corpus found for the checkpoint's dataset "
                             f"({ck['config']['data']['root']}); pass --corpus PATH")
        cache["corpus"] = load_corpus(path, quiet=True)
    c = cache["corpus"]
    if not 0 <= i < len(c):
        raise ValueError(f"{spec!r}: index out of range (the corpus has {len(c)} lattices)")
    return c.truss(i), f"corpus{i}"


def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _novelty_reference(args, ck) -> tuple:
    """``(train hashes, train topology hashes, info dict)`` of the checkpoint's training split,
    or ``(None, None, info)`` when its corpus is not available."""
    from .corpus import load_corpus
    from .exploration import corpus_fingerprint, corpus_hashes

    data = ck["config"]["data"]
    path = _corpus_path(args, ck)
    if path is None:
        return None, None, {"corpus": None, "note": "training corpus not found (pass --corpus):"
                                                    " novelty not computed"}
    c = load_corpus(path, quiet=True)
    limit = data.get("limit")
    try:
        match = corpus_fingerprint(c, data.get("target", "stiffness"), limit) == ck["fingerprint"]
    except ValueError:
        match = False
    canon, topo = corpus_hashes(c, split_seed=data.get("split_seed", 0), limit=limit,
                                split_by=data.get("split_by", "permutation"))
    if not match:
        log.warning("%s is not the corpus the checkpoint was trained on (fingerprint "
                    "mismatch): novelty is measured against its train split anyway", path)
    return canon, topo, {"corpus": str(path), "split": "train", "num_lattices": len(canon),
                         "matches_checkpoint": bool(match)}


def _cmd_sample(args) -> int:
    from .exploration import sample
    from .io import save_lattice
    from .plotting import plot_lattice_grid

    if args.n < 1:
        raise ValueError(f"--n must be positive, got {args.n}")
    if args.save < 0:
        raise ValueError(f"--save must be >= 0, got {args.save}")
    model, ck = _load_model(args)
    canon, topo, ref = (None, None, {"note": "skipped (--no-novelty)"}) if args.no_novelty \
        else _novelty_reference(args, ck)
    res = sample(model, n=args.n, seed=args.seed, repair=not args.no_repair,
                 fit_lengths=not args.keep_long,
                 train_hashes=canon, train_topologies=topo, fe=not args.no_fe,
                 threshold=args.threshold, density=args.density, workers=args.workers,
                 constrained=args.constrained)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seen, picked = set(), []
    for k in np.flatnonzero(res.valid):
        h = res.lattices[k].canonical_hash()
        if h not in seen and len(picked) < args.save:
            seen.add(h)
            picked.append(int(k))
    files = []
    for k in picked:
        f = save_lattice(res.lattices[k], out / "lattices" / f"sample_{k:04d}.json",
                         name=f"sample {k}",
                         meta={"checkpoint": str(args.checkpoint), "seed": args.seed,
                               "sample": k, "repaired": res.lattices[k] != res.raw[k],
                               "z": [round(float(v), 6) for v in res.z[k]]})
        files.append(str(f.relative_to(out)))
    report = {"checkpoint": str(args.checkpoint), "epoch": ck.get("epoch"),
              "novelty_reference": ref, **res.report, "lattice_files": files}
    (out / "report.json").write_text(json.dumps(_json_safe(report), indent=1))
    np.savez_compressed(out / "samples.npz", z=res.z, valid=res.valid,
                        connected=res.connected, status=np.array(res.status))
    if picked:
        plot_lattice_grid([res.lattices[k] for k in picked],
                          [f"#{k}: {res.lattices[k].num_edges} beams" for k in picked],
                          path=out / "samples.png", ncols=4,
                          title=f"valid lattices decoded from N(0, I) (seed {args.seed})")
    s = res.report["summary"]

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f} %"
    print(f"{args.n} samples (seed {args.seed}): validity paper {pct(s['validity_paper_raw'])}, "
          f"strict {pct(s['validity_strict_raw'])} raw"
          + ("" if args.no_repair else
             f", strict {pct(s['validity_strict_repaired'])} after repair"
             + ("" if args.keep_long else " (beams shortened)"))
          + f"; uniqueness {pct(s['uniqueness'])}, novelty {pct(s['novelty'])} (topology "
            f"{pct(s['novelty_topology'])})")
    print(f"wrote {out / 'report.json'}, {len(files)} lattice files"
          + (f" and {out / 'samples.png'}" if picked else ""))
    return 0


def _path_notes(p) -> list:
    notes = []
    for k, st in enumerate(p.status):
        if st == "ok":
            notes.append("")
        elif p.trusses[k].num_edges == 0:
            notes.append(f"empty after repair\n({p.raw[k].num_edges} beams decoded)"
                         if p.repaired[k] else "no beams decoded")
        elif st == "invalid":
            notes.append("invalid:\n" + "\n".join(p.violations[k][:3]))
        else:
            notes.append(f"FE: {st}")
    return notes


def _write_path(p, out: Path, title: str, xlabel: str, labels: list, density: float) -> None:
    """Lattice files, properties.csv / .json, strip.png and properties.png of a path."""
    from .io import save_lattice
    from .plotting import plot_path_properties, plot_strip

    out.mkdir(parents=True, exist_ok=True)
    records = p.records()
    for k, rec in enumerate(records):
        f = save_lattice(p.trusses[k], out / "lattices" / f"step_{k:02d}.json",
                         name=f"{title}: {labels[k]}",
                         meta={"t": rec["t"], "status": rec["status"],
                               "repaired": rec["repaired"],
                               "z": [round(float(v), 6) for v in p.z[k]]})
        rec["file"] = str(f.relative_to(out))
    cols = ["step", "t", "status", "repaired", "num_beams", "num_beams_raw", *p.properties,
            "violations", "file"]
    with open(out / "properties.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for rec in records:
            w.writerow(["" if rec[c] is None else (";".join(rec[c]) if c == "violations"
                                                   else rec[c]) for c in cols])
    doc = {"title": title, "meta": p.meta, "property_units": "moduli in units of E_s",
           "records": records}
    (out / "properties.json").write_text(json.dumps(_json_safe(doc), indent=1))
    plot_strip(p.trusses, [c if ok else None for c, ok in zip(p.C, p.ok)], labels,
               path=out / "strip.png", title=title, density=density, notes=_path_notes(p))
    plot_path_properties(p.t, {k: p.properties[k] for k in _PATH_PLOT}, path=out /
                         "properties.png", xlabel=xlabel, title=title, status=p.status)


def _print_path(p) -> None:
    print("  step        t  beams  status        E1          E2          E3          A_U")
    for rec in p.records():
        vals = "".join(f"  {rec[k]:10.4g}" if rec[k] is not None else f"  {'-':>10s}"
                       for k in ("E1", "E2", "E3", "A_U"))
        print(f"  {rec['step']:4d}  {rec['t']:7.3f}  {rec['num_beams']:5d}  "
              f"{rec['status']:<12s}{vals}")


def _cmd_interpolate(args) -> int:
    from .exploration import interpolate

    from .nn.vae import check_refine
    check_refine(args.refine_latent, name="--refine-latent")
    model, ck = _load_model(args)
    cache: dict = {}
    a, la = _resolve_spec(args.a, args, ck, cache)
    b, lb = _resolve_spec(args.b, args, ck, cache)
    p = interpolate(model, a, b, steps=args.steps, method=args.method,
                    refine_steps=args.refine_latent, repair=not args.no_repair,
                    fit_lengths=not args.keep_long, density=args.density,
                    workers=args.workers)
    out = Path(args.out)
    title = f"{la} \u2192 {lb} ({args.method}, {args.steps} steps)"
    _write_path(p, out, title, "interpolation parameter t",
                [f"t = {t:.2f}" for t in p.t], args.density)
    from .io import save_lattice
    save_lattice(a, out / "inputs" / "a.json", name=la)
    save_lattice(b, out / "inputs" / "b.json", name=lb)
    print(f"{title}: {int(p.ok.sum())} of {len(p)} decoded lattices FE-verified")
    _print_path(p)
    print(f"wrote {out}/ (lattices/, properties.csv, properties.json, strip.png, "
          f"properties.png)")
    return 0


def _cmd_traverse(args) -> int:
    from .exploration import GROUPS, traverse

    from .nn.vae import check_refine
    check_refine(args.refine_latent, name="--refine-latent")
    model, ck = _load_model(args)
    truss, label = _resolve_spec(args.lattice, args, ck, {})
    groups = GROUPS if args.group == "all" else (args.group,)
    out = Path(args.out)
    for g in groups:
        p = traverse(model, truss, g, dim=args.dim, span=args.span, steps=args.steps,
                     refine_steps=args.refine_latent, repair=not args.no_repair,
                     fit_lengths=not args.keep_long, density=args.density,
                     workers=args.workers)
        d = p.meta["dim"]
        title = (f"{label}: {g} axis {d} (latent {p.meta['latent_index']}), "
                 f"\u00b1{args.span:g} \u03c3")
        dest = out / g if len(groups) > 1 else out
        _write_path(p, dest, title, "shift of the latent coordinate (prior \u03c3)",
                    [f"{a:+.2f} \u03c3" for a in p.t], args.density)
        print(f"{title}{' (most sensitive axis)' if args.dim is None else ''}: "
              f"{int(p.ok.sum())} of {len(p)} decoded lattices FE-verified")
        _print_path(p)
        print(f"wrote {dest}/")
    from .io import save_lattice
    save_lattice(truss, out / "inputs" / "start.json", name=label)
    return 0


def _add_exploration_parsers(sub, lat_help: str) -> None:
    def common(q):
        q.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT,
                       help=f"trained model (default {DEFAULT_CHECKPOINT})")
        q.add_argument("--out", "-o", required=True, help="output directory")
        q.add_argument("--density", type=float, default=0.15,
                       help="relative density of the FE model (0.15)")
        q.add_argument("--no-repair", action="store_true",
                       help="no repair (pruning dangling nodes and stray components, then "
                            "shortening beams longer than sqrt(3)/2)")
        q.add_argument("--keep-long", action="store_true",
                       help="repair without moving nodes: beams longer than sqrt(3)/2 stay as "
                            "decoded (the paper's light repair alone)")
        q.add_argument("--workers", type=int, default=1, help="FE worker processes (1)")
        q.add_argument("--corpus", help="corpus for corpus:<index> specs and novelty "
                                        "(default: the checkpoint's dataset corpus)")

    spec_help = lat_help.rstrip(")") + ", or corpus:<index>)"
    s = sub.add_parser("sample", help="decode random latent samples into lattices",
                       description="Decode N samples z ~ N(0, I) (adjacency threshold 0.5), "
                                   "repair them (prune dangling nodes, keep the largest "
                                   "component, move nodes to the nearest offsets with every "
                                   "beam at most sqrt(3)/2), validate and FE-check them; "
                                   "report validity "
                                   "(paper: connected; strict: all rules + FE), uniqueness and "
                                   "novelty against the training split. Writes report.json, "
                                   "samples.npz, lattices/*.json and samples.png.")
    s.add_argument("--n", type=int, default=1000, help="number of samples (1000)")
    s.add_argument("--seed", type=int, default=0, help="seed of the latent samples (0)")
    s.add_argument("--save", type=int, default=12,
                   help="distinct valid lattices written as files and drawn (12)")
    s.add_argument("--threshold", type=float, default=0.5,
                   help="edge probability threshold (0.5)")
    _add_constrained_option(s, "decode each sample's adjacency as")
    s.add_argument("--no-fe", action="store_true", help="strict validity without the FE check")
    s.add_argument("--no-novelty", action="store_true",
                   help="do not load the training corpus for novelty")
    common(s)
    s.set_defaults(func=_cmd_sample)

    i = sub.add_parser("interpolate", help="interpolate between two lattices in latent space",
                       description="Encode lattices A and B, decode STEPS points along the "
                                   "slerp (or linear) path between their latent means, repair, "
                                   "validate and FE-homogenize each. Writes lattices/, "
                                   "properties.csv, properties.json, strip.png (lattices and "
                                   "elastic surfaces) and properties.png.")
    i.add_argument("a", help="start lattice: " + spec_help)
    i.add_argument("b", help="end lattice (same forms)")
    i.add_argument("--steps", type=int, default=7, help="points including both ends (7)")
    i.add_argument("--method", choices=["slerp", "linear"], default="slerp",
                   help="interpolation path (slerp)")
    i.add_argument("--refine-latent", type=int, default=0, metavar="STEPS",
                   help="refine both end latents by STEPS steps on their lattices' own "
                        "reconstruction loss, so that the ends decode to A and B (0; 100 is "
                        "a good value)")
    common(i)
    i.set_defaults(func=_cmd_interpolate)

    t = sub.add_parser("traverse", help="traverse one latent axis from a lattice",
                       description="Encode a lattice and move one coordinate of its latent "
                                   "mean (topology-specific, shared or geometry-specific group) "
                                   "from -SPAN to +SPAN prior standard deviations; decode, "
                                   "repair, validate and FE-homogenize each point. Writes the "
                                   "same files as interpolate (one folder per group with "
                                   "--group all).")
    t.add_argument("lattice", help=spec_help)
    t.add_argument("--group", choices=["topology", "shared", "geometry", "all"], default="all",
                   help="latent group (all: one traversal per group)")
    t.add_argument("--dim", type=int, default=None,
                   help="axis inside the group, 0-based (default: the axis along which the "
                        "decoded lattice changes most)")
    t.add_argument("--span", type=float, default=3.0,
                   help="largest shift in prior standard deviations (3)")
    t.add_argument("--steps", type=int, default=7, help="points along the axis (7)")
    t.add_argument("--refine-latent", type=int, default=0, metavar="STEPS",
                   help="refine the start latent by STEPS steps on the lattice's own "
                        "reconstruction loss, so that it decodes to the lattice (0)")
    common(t)
    t.set_defaults(func=_cmd_traverse)


# --------------------------------------------------------------------------- external commands

def _add_external_parser(sub, name: str) -> None:
    """Register a subcommand whose module is imported only when it runs (its arguments are
    parsed then), so ``gnn-truss --help`` works without it."""
    module, _, _, text = _EXTERNAL[name]
    present = importlib.util.find_spec(module) is not None
    q = sub.add_parser(name, add_help=False,
                       help=text if present else f"{text} (not available: {module} missing)")
    q.set_defaults(func=lambda a, n=name: _run_external(n, a), passthrough=True)


def _run_external(name: str, args) -> int:
    module, add_name, main_name, text = _EXTERNAL[name]
    try:
        mod = importlib.import_module(module)
        add, run = getattr(mod, add_name), getattr(mod, main_name)
    except (ImportError, AttributeError) as exc:
        print(f"error: 'gnn-truss {name}' is not available in this installation ({exc})",
              file=sys.stderr)
        return 2
    p = argparse.ArgumentParser(prog=f"gnn-truss {name}", description=text)
    add(p)
    sub_args = p.parse_args(args.extra)
    sub_args.verbose = args.verbose
    return int(run(sub_args) or 0)


def _thread_count(text: str) -> int:
    """``--threads``: a whole number >= 1."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gnn-truss",
        description="Graph-based generative design of 3D truss metamaterials.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    p.add_argument("--threads", type=_thread_count, default=None, metavar="N",
                   help="CPU threads of torch and of numpy's and scipy's BLAS (default: "
                        "the libraries' own choice, one per core; FE worker processes use one "
                        "each); "
                        "give each of several jobs sharing a machine its share, e.g. "
                        "'gnn-truss --threads 1 train ...': jobs whose threads outnumber the "
                        "cores slow each other down several times")
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
    ev.add_argument("--workers", type=int, default=None,
                    help="processes of the FE analyses that give a predictor with lattice "
                         "features (model.predictor_features) those of each decoded lattice "
                         "(default: all cores)")
    _add_split_options(ev)
    ev.add_argument("--no-fe", action="store_true",
                    help="skip the FE check in the strict validity")
    ev.add_argument("--corpus-limit", type=int, metavar="N",
                    help="read the checkpoint's data as the first N lattices of its corpus (a "
                         "checkpoint trained before its corpus grew; the dataset fingerprint "
                         "confirms it)")
    ev.add_argument("--baseline", metavar="REPORT",
                    help="report.json of another model on the same split: also write "
                         "OUT/comparison.md, the two side by side")
    _add_symmetrise_option(ev, "also report the reconstruction and property metrics of the "
                               "outputs averaged over each lattice's symmetric copies")
    _add_constrained_option(ev, "also report the adjacency metrics of")
    _add_refine_option(ev, "also report every reconstruction and property metric at")
    _add_symmetrise_predictor_option(ev, "also report")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    ev.set_defaults(func=_cmd_evaluate)

    cp = sub.add_parser("compare", help="paired comparison of two checkpoints on the test "
                        "split, with bootstrap intervals",
                        description="Runs both checkpoints on the same lattices and reports, "
                                    "for every reconstruction and property metric, both values, "
                                    "their difference and its paired-bootstrap interval; writes "
                                    "paired.json and paired.md.")
    cp.add_argument("checkpoint_a", help="first checkpoint (e.g. the GNN)")
    cp.add_argument("checkpoint_b", help="second checkpoint (e.g. the MLP baseline)")
    cp.add_argument("--names", nargs=2, metavar=("A", "B"),
                    help="display names (default: the checkpoints' folder names)")
    cp.add_argument("--out", help="output directory (default: print only)")
    _add_split_options(cp)
    cp.add_argument("--draws", type=int, default=1000, help="bootstrap resamples (1000)")
    cp.add_argument("--workers", type=int, default=None,
                    help="processes of the FE analyses of a predictor with lattice features "
                         "(default: all cores)")
    cp.add_argument("--seed", type=int, default=0, help="resampling seed (0)")
    cp.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_symmetrise_option(cp, "compare the outputs (adjacency logits, offsets, property) "
                               "averaged over each lattice's symmetric copies")
    _add_constrained_option(cp, "decode both models' adjacency as")
    _add_refine_option(cp, "compare both models' outputs at")
    _add_symmetrise_predictor_option(cp, "compare")
    cp.add_argument("--unseen", action="store_true",
                    help="checkpoints trained on different corpora (e.g. a grown one): compare "
                         "on the lattices of the first one's split that neither was trained "
                         "or validated on (recognised by content)")
    cp.add_argument("--corpus-limit-b", type=int, metavar="N",
                    help="with --unseen: read the second checkpoint's data as the first N "
                         "lattices of its corpus (a checkpoint trained before its corpus grew)")
    cp.set_defaults(func=_cmd_compare)

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
    t.add_argument("--device", help="override train.device (auto, cpu, cuda, cuda:1, ...)")
    t.add_argument("--loader-workers", type=int, metavar="N",
                   help="override train.num_workers: data-loader worker processes that collate "
                        "the batches (0: in the training process; the numbers do not change)")
    t.add_argument("--precision", choices=["fp32", "bf16"],
                   help="override train.precision: bf16 runs the forward pass's matrix "
                        "products in bfloat16 (1.6-1.8x faster on a CPU with AVX-512 BF16; "
                        "weights, losses and validation stay float32)")
    t.add_argument("--init-from", metavar="CHECKPOINT",
                   help="override train.init_from: warm-start from this checkpoint "
                        "(configs/default_finetune.yaml continues a finished run)")
    t.add_argument("--no-resume", action="store_true", help="ignore OUT/last.pt")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=_cmd_train)

    g = sub.add_parser("graft", help="put a lattice predictor on another checkpoint's VAE",
                       description="Write a checkpoint with the encoder and decoders of VAE and "
                                   "the property predictor (model.predictor_input: decoded, a "
                                   "GNN on the decoded lattice), config, normaliser and "
                                   "fingerprint of PREDICTOR (the config's VAE keys, encoder, "
                                   "latent sizes and widths, are VAE's, which may differ): a "
                                   "predictor trained on lattices stays valid when the VAE "
                                   "under it is retrained.")
    g.add_argument("predictor", help="checkpoint whose predictor (a GNN on lattices) is kept")
    g.add_argument("vae", help="checkpoint whose encoder and decoders are taken")
    g.add_argument("--out", "-o", required=True, help="path of the new checkpoint")
    g.add_argument("--force", action="store_true", help="allow --out to be one of the inputs")
    g.set_defaults(func=_cmd_graft)

    i = sub.add_parser("info", help="what a checkpoint holds: model, data, config, evaluation",
                       description="Print a checkpoint's model (encoder, latent sizes, "
                                   "parameters per part), its training data (root, split, "
                                   "fingerprint), the config entries that differ from the "
                                   "defaults and, where its evaluation report lies beside it, "
                                   "the one-pass figures against the paper's.")
    i.add_argument("checkpoint", nargs="?", default=DEFAULT_CHECKPOINT,
                   help=f"checkpoint (default {DEFAULT_CHECKPOINT})")
    i.add_argument("--json", action="store_true", help="print everything as JSON")
    i.set_defaults(func=_cmd_info)

    c = sub.add_parser("compress", help="nonlinear uniaxial compression curve of a lattice",
                       description="Uniaxial compression of the periodic cell to 25 % strain "
                                   "(corotational Timoshenko beams, lateral stresses zero): "
                                   "prints the 13-point label and saves a PNG of the curve and "
                                   "the deformed cell.")
    _add_cell_args(c, lat_help)
    c.add_argument("--max-strain", type=float, default=0.25, help="final strain (0.25)")
    c.add_argument("--max-step", type=float, default=0.005, help="largest strain step (0.005)")
    c.add_argument("--imperfection", type=float, default=0.01,
                   help="imperfection amplitude as a fraction of the strut radius (0.01)")
    c.add_argument("--seed", type=int, default=0, help="seed of the imperfection (0)")
    c.add_argument("--snapshot", type=float, nargs="*", default=[],
                   help="extra strains at which to keep the deformed configuration")
    c.add_argument("--stability", action="store_true",
                   help="track the smallest tangent eigenvalue (bifurcation detection)")
    c.add_argument("--out", "-o", help="PNG path (default: LABEL_compression.png)")
    c.add_argument("--json", action="store_true", help="print results as JSON")
    c.set_defaults(func=_cmd_compress)

    bk = sub.add_parser("buckle", help="linearised buckling strains of a lattice's cell",
                        description="Linear buckling analysis of the periodic cell under "
                                    "uniaxial compression (the mesh and loading of `compress`, "
                                    "no imperfection): the lowest critical strains and the "
                                    "stresses modulus x strain, about 0.1 s a lattice.")
    _add_cell_args(bk, lat_help)
    bk.add_argument("--modes", type=int, default=3,
                    help=f"number of critical strains (3, at most {MAX_BUCKLING_MODES})")
    bk.add_argument("--no-validate", action="store_true",
                    help="analyse a lattice that breaks the design-space rules as it is")
    bk.add_argument("--json", action="store_true", help="print results as JSON")
    bk.set_defaults(func=_cmd_buckle)

    _add_exploration_parsers(sub, lat_help)
    for name in _EXTERNAL:
        _add_external_parser(sub, name)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.threads is not None:
        import torch

        from .threads import limit_blas_threads

        torch.set_num_threads(args.threads)
        limit_blas_threads(args.threads)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:  # bad input, or a file that cannot be read / written
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted (rerun the same command to resume a data build or a "
              "training run)", file=sys.stderr)
        return 130


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (messages of torch and numpy span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
