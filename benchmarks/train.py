"""Training and inference throughput of the graph VAE (GNN encoder and the MLP baseline).

Prints, for each encoder of ``--configs``: (a) training graphs per second (data loading and
PyG collation, forward, loss, backward and Adam step, as in :func:`gnn_truss.training.train`),
(b) inference lattices per second (encode to the latent mean, decode adjacency and offsets,
predict the properties; no gradients, after one untimed warm-up pass), (c) the number of
parameters. A config with ``train.augment`` (``configs/default_augment.yaml``) includes the
augmentation in (a); ``train.freeze`` and ``train.predictor_on`` are honoured too
(``configs/default_decoded.yaml``: a frozen VAE, the predictor on the true graphs in (a), on
the decoded lattice in (b)). For a curve predictor with buckling features
(``configs/nonlinear_buckling.yaml``) (b) is split in two: the network with the features given,
and the FE analysis that gives them, timed on ``--fe-lattices`` test lattices on one process
(a prediction costs both). One process with ``--threads`` torch threads on the first
``--limit`` lattices of the config's corpus. The batches come from the loader training
uses (``--loader sliced``: :class:`gnn_truss.loader.CollatedLoader`, cut from the split's
collated storage) or from PyG's ``DataLoader`` (``--loader pyg``, which collates each batch
graph by graph, as training did before): the same batches, so the difference between the two
is the collation's cost. ``--precision bf16`` times (a) with the forward pass in bfloat16
(``train.precision: bf16``; (b) stays float32, as evaluation does); by default each config's
own ``train.precision``.

    python benchmarks/train.py [--limit 8000] [--threads 1] [--batches 30] [--configs ...]
                               [--fe-lattices 100] [--loader sliced|pyg] [--precision bf16]
"""
from __future__ import annotations

import argparse
import os
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import torch  # noqa: E402


def _throughput(cfg: dict, limit: int, batches: int, fe_lattices: int = 100,
                loader: str = "sliced", precision: str | None = None) -> dict:
    from torch_geometric.loader import DataLoader

    from gnn_truss.loader import CollatedLoader
    from gnn_truss.nn import build_model
    from gnn_truss.training import _as_float32, build_datasets, validate_config

    cfg = validate_config({**cfg, "data": {**cfg["data"], "limit": limit}})
    train_ds, _, test_ds = build_datasets(cfg)
    t = cfg["train"]
    bf16 = (precision or t["precision"]) == "bf16"
    torch.manual_seed(0)
    model = build_model(cfg["model"])
    for part in t["freeze"]:
        getattr(model, part).requires_grad_(False)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=t["lr"])
    gen = torch.Generator().manual_seed(0)
    Loader = CollatedLoader if loader == "sliced" else DataLoader
    dl = Loader(train_ds, batch_size=t["batch_size"], shuffle=True, generator=gen,
                drop_last=True)
    augment = None
    if t["augment"]:  # the training loop's random axis permutation (and mirror), per batch
        from gnn_truss.symmetry import RandomAxisPermutation
        augment = RandomAxisPermutation(train_ds.normalizer, cfg["data"]["target"],
                                        mirrors=t["augment"] == "axes_mirrors")
    model.train()
    seen, t0, done = 0, None, 0
    while done < batches + 2:
        for b in dl:
            if done == 2:  # two warm-up batches
                t0, seen = time.perf_counter(), 0
            if augment is not None:
                b = augment(b)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(b, predict_from=t["predictor_on"])
            out = _as_float32(out) if bf16 else out
            loss = model.loss(out, b, beta=t["beta_max"], property_weight=t["property_weight"])
            opt.zero_grad()
            loss["total"].backward()
            opt.step()
            seen += b.num_graphs
            done += 1
            if done >= batches + 2:
                break
    train_rate = seen / (time.perf_counter() - t0)
    model.eval()
    dl = Loader(test_ds, batch_size=1024)
    n = 0
    reads = model.reads_features

    def predict(b, mu):  # with features: those of the batch's lattices, from the table
        return model.predict(mu, b.feat) if reads else model.predict(mu)
    with torch.no_grad():
        b = next(iter(dl))  # warm-up pass (first-call allocations), not timed
        predict(b, model.encode(b)[0])
        t0 = time.perf_counter()
        for b in dl:
            mu, _ = model.encode(b)
            model.decode(mu)
            predict(b, mu)
            n += b.num_graphs
        infer_rate = n / (time.perf_counter() - t0)
    fe = None
    if reads:
        from gnn_truss.fe.buckling import lattice_descriptors
        from gnn_truss.graph import data_to_truss
        trusses = [data_to_truss(test_ds[i]) for i in range(min(fe_lattices, len(test_ds)))]
        t0 = time.perf_counter()
        lattice_descriptors(trusses, workers=1)
        fe = (time.perf_counter() - t0) / len(trusses)
    return {"train": train_rate, "infer": infer_rate, "bf16": bf16, "n_infer": n, "fe_seconds": fe,
            "params": sum(p.numel() for p in model.parameters())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+",
                    default=["configs/default.yaml", "configs/mlp_baseline.yaml"])
    ap.add_argument("--limit", type=int, default=8000, help="corpus lattices loaded (8000)")
    ap.add_argument("--batches", type=int, default=30, help="timed training batches (30)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    ap.add_argument("--fe-lattices", type=int, default=100,
                    help="test lattices whose buckling features are timed (100)")
    ap.add_argument("--loader", choices=("sliced", "pyg"), default="sliced",
                    help="batches sliced from the collated storage, as training does "
                         "(default), or collated graph by graph by PyG's DataLoader")
    ap.add_argument("--precision", choices=("fp32", "bf16"),
                    help="the training forward pass's arithmetic (default: each config's "
                         "train.precision)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import yaml

    print(f"# graph VAE throughput, {args.threads} torch thread(s), CPU, {args.loader} "
          f"batches")
    for path in args.configs:
        with open(path) as fh:
            cfg = yaml.safe_load(fh)
        r = _throughput(cfg, args.limit, args.batches, args.fe_lattices, args.loader,
                        args.precision)
        print(f"{path}: encoder {cfg['model'].get('encoder', 'gnn')}, predictor "
              f"{cfg['model'].get('predictor_input', 'latent')}, {r['params']:,} "
              f"parameters: (a) training {r['train']:.0f} graphs/s "
              f"(batch {cfg.get('train', {}).get('batch_size', 256)}"
              f"{', bfloat16' if r['bf16'] else ''}), "
              f"(b) inference {r['infer']:.0f} lattices/s ({r['n_infer']} test lattices)")
        if r["fe_seconds"] is not None:
            total = 1.0 / (1.0 / r["infer"] + r["fe_seconds"])
            print(f"  (b) needs the buckling features of each decoded lattice: FE "
                  f"{r['fe_seconds']:.3f} s a lattice on one process, so "
                  f"{total:.1f} lattices/s in all")


if __name__ == "__main__":
    main()
