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
    "data": "build, export and inspect FE-labelled lattice corpora",
    "compress": "nonlinear uniaxial compression curve of a lattice",
    "train": "train the graph VAE and property predictor from a YAML config",
    "evaluate": "evaluate a trained checkpoint on the held-out test split",
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
