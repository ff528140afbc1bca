"""FE-labelled lattice corpora: sharded, resumable builds and the compact on-disk encoding.

A corpus directory holds::

    manifest.json            generator version, seed, density, material, counts, shard list
    shards/shard-00000.npz   one shard per file, written atomically (temp file + rename)

Shard arrays (compact encoding, read directly by :class:`~gnn_truss.dataset.TrussDataset`):

=============  ===================  ==========================================================
``adj``        uint8 ``[n, 44]``    ``np.packbits`` of the 351 upper-triangle adjacency bits
``offset``     float32 ``[n, 27]``  free-dof offsets (exactly the offsets that were labelled:
                                    generated offsets are rounded to float32 before FE)
``stiffness``  float64 ``[n, 9]``   (C11, C12, C13, C22, C23, C33, C44, C55, C66), units E_s
``curve``      float64 ``[n, 13]``  optional nonlinear labels sigma(0.5 %) .. sigma(24.5 %)
=============  ===================  ==========================================================

Shard ``k`` draws from its own random stream (:func:`~gnn_truss.generator.shard_rng`), so a
build is reproducible whatever the number of workers, and an interrupted build resumes by
skipping the shards already on disk. Lattices whose FE reports a mechanism (or any other non-OK
status) are dropped and counted. Duplicates across shards are removed when the corpus is read
(first occurrence kept).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from . import design_space as ds
from .generator import GENERATOR_VERSION, GeneratorConfig, generate, shard_rng
from .threads import single_thread_worker
from .truss import Truss

__all__ = ["Corpus", "pack_adjacency", "unpack_adjacency", "build_corpus", "load_corpus",
           "write_shard", "read_shard", "save_compact", "unpack_compact", "buckling_features",
           "row_hashes", "corpus_descriptors", "read_buckling_table",
           "MANIFEST", "ADJ_BYTES"]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
ADJ_BYTES = (ds.NUM_PAIRS + 7) // 8  # 44


def pack_adjacency(adj: np.ndarray) -> np.ndarray:
    """``[n, 27, 27]`` (or ``[n, 351]``) binary adjacency -> ``[n, 44]`` uint8 bit-packed."""
    adj = np.asarray(adj)
    triu = adj if adj.shape[-1] == ds.NUM_PAIRS else ds.adjacency_to_triu(adj)
    return np.packbits(triu.astype(np.uint8), axis=-1)


def unpack_adjacency(bits: np.ndarray, square: bool = True) -> np.ndarray:
    """Inverse of :func:`pack_adjacency`: ``[n, 44]`` -> ``[n, 27, 27]`` (or ``[n, 351]``)."""
    triu = np.unpackbits(np.asarray(bits, dtype=np.uint8), axis=-1, count=ds.NUM_PAIRS)
    return ds.triu_to_adjacency(triu) if square else triu


@dataclass
class Corpus:
    """An in-memory corpus in the compact encoding (see module docstring).

    Attributes:
        adj: uint8 ``[N, 44]``; offset: ``[N, 27]`` free-dof offsets (float32 in built and
        shipped corpora, float64 when imported); stiffness: float64 ``[N, 9]``;
        curve: float64 ``[N, 13]`` or None; meta: the manifest dict.
    """

    adj: np.ndarray
    offset: np.ndarray
    stiffness: np.ndarray
    curve: np.ndarray | None = None
    meta: dict | None = None

    def __len__(self) -> int:
        return len(self.adj)

    def truss(self, i: int) -> Truss:
        return Truss(unpack_adjacency(self.adj[i]), self.offset[i].astype(np.float64))

    def adjacency(self) -> np.ndarray:
        """``[N, 27, 27]`` uint8 adjacency matrices."""
        return unpack_adjacency(self.adj)

    def offsets(self) -> np.ndarray:
        """``[N, 27, 3]`` float64 offsets."""
        return ds.unpack_offsets(self.offset.astype(np.float64))

    def subset(self, idx) -> "Corpus":
        return Corpus(self.adj[idx], self.offset[idx], self.stiffness[idx],
                      None if self.curve is None else self.curve[idx], self.meta)

    def validate_arrays(self) -> None:
        """Raise ``ValueError`` if the arrays are inconsistent or hold NaN/inf labels."""
        n = len(self.adj)
        if self.adj.shape != (n, ADJ_BYTES) or self.adj.dtype != np.uint8:
            raise ValueError(f"corpus 'adj' must be uint8 [N, {ADJ_BYTES}], got "
                             f"{self.adj.dtype} {self.adj.shape}")
        if self.offset.shape != (n, ds.NUM_FREE_DOFS):
            raise ValueError(f"corpus 'offset' must be [N, 27], got {self.offset.shape}")
        if self.stiffness.shape != (n, 9):
            raise ValueError(f"corpus 'stiffness' must be [N, 9], got {self.stiffness.shape}")
        if not np.all(np.isfinite(self.offset)) or np.any(np.abs(self.offset) > 0.5):
            raise ValueError("corpus offsets contain NaN/inf or values outside [-0.5, 0.5]")
        if not np.all(np.isfinite(self.stiffness)):
            raise ValueError("corpus stiffness labels contain NaN or inf")
        if self.curve is not None and self.curve.shape != (n, 13):
            raise ValueError(f"corpus 'curve' must be [N, 13], got {self.curve.shape}")
        if self.curve is not None and not np.all(np.isfinite(self.curve)):
            raise ValueError("corpus curve labels contain NaN or inf")


# ----------------------------------------------------------------------------- shard files
def write_shard(path, arrays: dict) -> Path:
    """Write a shard atomically (compressed npz to a temp name, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def read_shard(path) -> dict:
    """Read a shard file; raises ``ValueError`` on a corrupt or incomplete file."""
    path = Path(path)
    try:
        with np.load(path) as z:
            out = {k: z[k] for k in z.files}
    except Exception as exc:  # zipfile / pickle / OS errors of a damaged file
        raise ValueError(f"corrupt shard {path}: {exc}") from exc
    missing = {"adj", "offset", "stiffness"} - set(out)
    if missing:
        raise ValueError(f"shard {path} lacks arrays {sorted(missing)}")
    n = len(out["adj"]) if out["adj"].ndim else -1
    for key, width in (("adj", ADJ_BYTES), ("offset", ds.NUM_FREE_DOFS), ("stiffness", 9),
                       ("curve", 13)):
        if key in out and out[key].shape != (n, width):
            raise ValueError(f"shard {path}: '{key}' must have shape [N, {width}] with N = "
                             f"{n} rows like 'adj', got {out[key].shape}")
    return out


def _read_json(path: Path, what: str):
    """``json.loads`` of a file; a ``ValueError`` naming the file if it is not JSON."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: corrupt {what} ({exc})") from None


def _check_limit(limit) -> None:
    if limit is not None and (isinstance(limit, bool) or
                              not isinstance(limit, (int, np.integer)) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")


def _shard_name(k: int) -> str:
    return f"shard-{k:05d}.npz"


def _quantize(t: Truss) -> Truss | None:
    """The lattice with float32-representable offsets (what the compact file stores), or None
    if rounding makes it invalid."""
    q = t.with_offsets(t.offsets.astype(np.float32).astype(np.float64))
    return q if q == t or q.is_valid else None


def build_shard(k: int, size: int, seed: int, density: float, E: float, nu: float,
                config: dict | None = None, nonlinear: bool = False) -> dict:
    """Generate ``size`` unique valid lattices from stream ``k`` and FE-label them.

    Returns the shard arrays plus ``counts`` (generated, labelled, dropped by status).
    """
    from .fe import homogenize_batch

    cfg = GeneratorConfig(**(config or {}))
    rng = shard_rng(seed, k)
    trusses = []
    seen: set = set()
    while len(trusses) < size:
        for t in generate(size - len(trusses), rng, cfg, seen=seen):
            q = _quantize(t)
            if q is not None:
                trusses.append(q)
    res = homogenize_batch(trusses, density=density, E=E, nu=nu, workers=1)
    ok = res.ok
    counts = {"generated": len(trusses), "labelled": int(ok.sum())}
    for s in np.unique(res.status[~ok]):
        counts[f"dropped_{s}"] = int(np.sum(res.status == s))
    kept = [t for t, g in zip(trusses, ok) if g]
    arrays = {
        "adj": pack_adjacency(np.stack([t.adjacency for t in kept])) if kept
        else np.zeros((0, ADJ_BYTES), np.uint8),
        "offset": np.stack([t.free_offsets for t in kept]).astype(np.float32) if kept
        else np.zeros((0, ds.NUM_FREE_DOFS), np.float32),
        "stiffness": res.S[ok],
    }
    if nonlinear:
        from .fe.nonlinear import compression_labels_batch
        curves, cok = compression_labels_batch(kept)
        arrays = {k2: v[cok] for k2, v in arrays.items()}
        arrays["curve"] = curves[cok]
        counts["dropped_nonlinear"] = int((~cok).sum())
        counts["labelled"] = int(cok.sum())
    arrays["counts"] = np.array(json.dumps(counts))
    return arrays


def _build_and_write(args) -> tuple[int, dict]:
    out, k, size, seed, density, E, nu, config, nonlinear = args
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # shard jobs run side by side; restored for in-process callers
    try:
        arrays = build_shard(k, size, seed, density, E, nu, config, nonlinear)
    finally:
        torch.set_num_threads(threads)
    write_shard(Path(out) / "shards" / _shard_name(k), arrays)
    return k, json.loads(str(arrays["counts"]))


def _write_manifest(out: Path, manifest: dict) -> None:
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, out / MANIFEST)


def build_corpus(out, n: int, seed: int = 0, shard_size: int = 2000, workers: int | None = None,
                 scheduler: str | None = None, density: float = 0.15, E: float = 1.0,
                 nu: float = 0.3, config: dict | None = None, nonlinear: bool = False,
                 progress: bool = True) -> dict:
    """Build (or resume) a corpus of ``n`` unique FE-labelled lattices in ``out``.

    Args:
        out: corpus directory (created).
        n: number of unique labelled lattices wanted.
        seed: run seed; shard ``k`` uses stream ``(seed, k)``.
        shard_size: lattices generated per shard.
        workers: local processes (default: all cores).
        scheduler: address of a Dask distributed scheduler; shards run there instead.
        density, E, nu: FE labelling parameters.
        config: :class:`~gnn_truss.generator.GeneratorConfig` fields.
        nonlinear: also compute the 13-point compression curves.
        progress: tqdm progress bar over shards.

    Returns:
        The manifest dict (also written to ``out/manifest.json``).
    """
    for name, value in (("n", n), ("shard_size", shard_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    from .fe.homogenization import _check_material
    _check_material(density, E, nu)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"corpus directory {out} is an existing file")
    mpath = out / MANIFEST
    old = None
    if mpath.exists():
        old = _read_json(mpath, "corpus manifest (delete it and rerun the same command to "
                                "resume from the shards)")
    if old is not None and not isinstance(old, dict):
        raise ValueError(f"{mpath}: corrupt corpus manifest (not a JSON object)")
    (out / "shards").mkdir(parents=True, exist_ok=True)
    params = {"generator_version": GENERATOR_VERSION, "seed": seed, "shard_size": shard_size,
              "density": density, "material": {"E_s": E, "nu_s": nu},
              "generator": asdict(GeneratorConfig(**(config or {}))), "nonlinear": nonlinear}
    params["generator"]["seeds"] = list(params["generator"]["seeds"])
    params["generator"]["op_weights"] = list(params["generator"]["op_weights"])
    if old is not None:
        for key, val in params.items():
            if old.get(key) != val:
                raise ValueError(f"{out} holds a corpus built with {key}={old.get(key)!r}; "
                                 f"refusing to resume with {key}={val!r} (use another --out)")
    manifest = {**params, "shards": {}, "counts": {}}
    recorded = old.get("shards", {}) if old is not None else {}
    # the shard files on disk are the truth: a shard listed in the manifest but missing or
    # unreadable is rebuilt, one on disk but not listed (interrupted after the rename) is kept
    for f in sorted((out / "shards").glob("shard-*.npz")):
        if f.name.endswith(".tmp.npz"):
            f.unlink()  # a write that never finished
            continue
        k = str(int(f.stem.split("-")[1]))
        try:
            d = read_shard(f)
        except ValueError:
            log.warning("removing unreadable shard %s; it will be rebuilt", f)
            f.unlink()
            continue
        manifest["shards"][k] = (json.loads(str(d["counts"])) if "counts" in d else
                                 recorded.get(k, {"labelled": len(d["adj"])}))
    bar = None
    t0 = time.time()
    while True:
        c = load_corpus(out, limit=None, quiet=True) if manifest["shards"] else None
        have = 0 if c is None else len(c)
        if have >= n:
            break
        done = {int(k) for k in manifest["shards"]}
        per = np.mean([v["labelled"] for v in manifest["shards"].values()]) if done else \
            shard_size
        need = int(np.ceil((n - have) / max(per * 0.9, 1)))
        todo = []
        k = 0
        while len(todo) < need:
            if k not in done:
                todo.append(k)
            k += 1
        if progress and bar is None:
            from .progress import progress_bar
            bar = progress_bar(total=n, initial=min(have, n), desc="corpus", unit="lattice")
        jobs = [(str(out), k, shard_size, seed, density, E, nu, config, nonlinear) for k in todo]
        for k, counts in _run_jobs(jobs, workers, scheduler):
            manifest["shards"][str(k)] = counts
            _write_manifest(out, {**manifest, "counts": _sum_counts(manifest["shards"])})
            if bar:
                bar.update(min(counts["labelled"], max(0, n - bar.n)))
    if bar:
        bar.close()
    manifest["counts"] = _sum_counts(manifest["shards"])
    manifest["counts"]["unique"] = have
    manifest["n_requested"] = n
    manifest["build_seconds_last_run"] = round(time.time() - t0, 1)
    _write_manifest(out, manifest)
    return manifest


def _sum_counts(shards: dict) -> dict:
    total: dict = {}
    for c in shards.values():
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
    return total


def _run_jobs(jobs, workers, scheduler):
    if scheduler:
        try:
            from dask.distributed import Client, as_completed
        except ImportError as exc:
            raise ValueError("--scheduler needs Dask: pip install 'gnn_truss[dask]'") from exc
        try:
            client = Client(scheduler)
        except (OSError, TimeoutError) as exc:
            raise ValueError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
        with client:
            futures = [client.submit(_build_and_write, j, pure=False) for j in jobs]
            for fut in as_completed(futures):
                yield fut.result()
        return
    workers = workers or os.cpu_count() or 1
    if workers <= 1 or len(jobs) == 1:
        for j in jobs:
            yield _build_and_write(j)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed as fut_done
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                             initializer=single_thread_worker) as ex:
        futs = [ex.submit(_build_and_write, j) for j in jobs]
        for f in fut_done(futs):
            yield f.result()


def load_corpus(path, limit: int | None = None, quiet: bool = False) -> Corpus:
    """Read a corpus: a build directory (shards merged in shard order, duplicates across shards
    dropped, first ``limit`` kept) or a compact ``.npz`` written by :func:`save_compact`."""
    _check_limit(limit)
    path = Path(path)
    if path.is_file():
        d = read_shard(path)
        try:
            meta = json.loads(str(d["meta"])) if "meta" in d else {}
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: corrupt 'meta' record ({exc})") from None
        c = Corpus(d["adj"], d["offset"], d["stiffness"].astype(np.float64),
                   d["curve"].astype(np.float64) if "curve" in d else None, meta)
        c.validate_arrays()
        if limit is None or limit >= len(c):
            return c
        # the record (shard counts, ...) describes the whole file: say this is its first part
        return replace(c.subset(slice(0, limit)), meta={**meta, "limit": int(limit)})
    if not (path / MANIFEST).exists():
        raise ValueError(f"{path} is not a corpus (no {MANIFEST} and not a compact .npz file)")
    meta = _read_json(path / MANIFEST, "corpus manifest")
    if not isinstance(meta, dict):
        raise ValueError(f"{path / MANIFEST}: corrupt corpus manifest (not a JSON object)")
    files = sorted((path / "shards").glob("shard-*.npz"), key=lambda f: f.stem)
    files = [f for f in files if not f.name.endswith(".tmp.npz")]
    if not files:
        raise ValueError(f"corpus {path} has no shards yet")
    parts = [read_shard(f) for f in files]
    adj = np.concatenate([p["adj"] for p in parts])
    off = np.concatenate([p["offset"] for p in parts])
    stiff = np.concatenate([p["stiffness"] for p in parts])
    curve = np.concatenate([p["curve"] for p in parts]) if all("curve" in p for p in parts) \
        else None
    key = np.concatenate([adj, off.view(np.uint8).reshape(len(off), off.shape[1] *
                                                           off.itemsize)], axis=1)
    _, first = np.unique(key, axis=0, return_index=True)
    first = np.sort(first)
    if limit is not None and limit < len(first):
        first = first[:limit]
        # the manifest's counts describe the whole build: say that this is its first part
        meta = {**meta, "limit": int(limit)}
    c = Corpus(adj[first], off[first], stiff[first], None if curve is None else curve[first],
               meta)
    c.validate_arrays()
    if not quiet:
        log.info("corpus %s: %d lattices (%d duplicates dropped)", path, len(c),
                 len(adj) - len(first))
    return c


def save_compact(corpus: Corpus, path, stiffness_dtype=np.float64) -> Path:
    """Write a corpus as one compact ``.npz`` (the shipped format)."""
    arrays = {"adj": corpus.adj, "offset": corpus.offset.astype(np.float32),
              "stiffness": corpus.stiffness.astype(stiffness_dtype),
              "meta": np.array(json.dumps(corpus.meta or {}))}
    if corpus.curve is not None:
        arrays["curve"] = corpus.curve.astype(stiffness_dtype)
    return write_shard(path, arrays)


def unpack_compact(path, out) -> dict:
    """Rebuild the build directory of a compact file written from a build (its ``meta`` holds
    the build manifest), so that :func:`build_corpus` with the same parameters resumes it, e.g.
    to add lattices to a shipped corpus whose build directory was not kept.

    Shard ``k`` gets the next ``manifest["shards"][k]["labelled"]`` lattices, in shard order
    (the order :func:`load_corpus` reads a build in). That is exact only if no lattice was
    dropped as a duplicate of another shard's when the file was written, so the per-shard
    counts must add up to the file's length.

    Args:
        path: compact ``.npz`` of :func:`save_compact`.
        out: new corpus directory (must not hold shards yet).

    Returns:
        The manifest written to ``out/manifest.json``.

    Raises:
        ValueError: no build manifest in the file, counts that do not add up, or ``out``
            already holding a corpus.
    """
    c = load_corpus(path, quiet=True)
    meta = c.meta or {}
    shards = meta.get("shards")
    if not isinstance(shards, dict) or not shards:
        raise ValueError(f"{path}: no build manifest in the file (not packed from a build "
                         f"directory), nothing to unpack shard by shard")
    try:
        order = sorted(shards, key=int)
        sizes = [int(shards[k]["labelled"]) for k in order]
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: corrupt shard list in the build manifest ({exc})") from None
    if sum(sizes) != len(c):
        raise ValueError(f"{path}: the shards' counts add up to {sum(sizes)} lattices but the "
                         f"file holds {len(c)} (duplicates across shards were dropped when it "
                         f"was written); the shards cannot be told apart")
    out = Path(out)
    if (out / MANIFEST).exists() or any((out / "shards").glob("shard-*.npz")):
        raise ValueError(f"{out} already holds a corpus; unpack into a new directory")
    (out / "shards").mkdir(parents=True, exist_ok=True)
    start = 0
    for k, n in zip(order, sizes):
        sl = slice(start, start + n)
        arrays = {"adj": c.adj[sl], "offset": c.offset[sl].astype(np.float32),
                  "stiffness": c.stiffness[sl], "counts": np.array(json.dumps(shards[k]))}
        if c.curve is not None:
            arrays["curve"] = c.curve[sl]
        write_shard(out / "shards" / _shard_name(int(k)), arrays)
        start += n
    _write_manifest(out, meta)
    return meta


# ----------------------------------------------------------------------------- buckling features
def _rows_digest(adj: np.ndarray, offset: np.ndarray) -> str:
    h = hashlib.sha1(np.ascontiguousarray(adj).tobytes())
    h.update(np.ascontiguousarray(offset, dtype=np.float32).tobytes())
    return h.hexdigest()


def buckling_features(corpus, work, shard_size: int = 500, num_modes: int = 3,
                      workers: int | None = 1, limit: int | None = None,
                      progress: bool = False, reuse=None) -> dict:
    """Linearised buckling (:func:`gnn_truss.fe.buckling.linear_buckling`) of every lattice of
    a corpus, written in shards and resumable.

    Shard ``k`` (rows ``k * shard_size ..``) goes to ``work/buckling-KKKKK.npz`` atomically,
    with a digest of its lattices; a rerun keeps the shards whose digest matches and recomputes
    missing or corrupt ones. A shard of other lattices (``work`` used for another corpus or
    shard size) is an error, never overwritten.

    Args:
        corpus: a corpus path (directory or compact ``.npz``) or a loaded :class:`Corpus`.
        work: directory of the shards.
        shard_size: lattices per shard.
        num_modes: critical strains per lattice.
        workers: processes per shard (see :func:`~gnn_truss.fe.buckling.buckling_batch`).
        limit: only the first ``limit`` lattices.
        progress: a progress bar over the shards.
        reuse: a table of an earlier ``gnn-truss data buckle`` run (path of its ``.npz``, with
            ``num_modes`` strains): a shard that has to be computed takes the rows of its
            lattices that the table holds (matched by :func:`row_hashes`, any order; rows that
            failed there are analysed again) and analyses only the others, so a table extends
            to a grown corpus without redoing the lattices it covers.

    Returns:
        ``{"strains": [N, num_modes], "modulus": [N], "ok": [N], "row_hash": [N],
        "reused": int}``; rows that could not be analysed are NaN with ``ok`` False (their
        reason is logged); ``reused`` counts the rows taken from ``reuse`` in this call.

    Raises:
        ValueError: for bad arguments, an unreadable ``reuse`` table or one with another
            number of modes, or a shard of other lattices in ``work``.
    """
    from .fe.buckling import _check_args, buckling_batch
    _check_args(2, num_modes, 1e-4)  # num_modes (the rest is fixed here)
    if isinstance(shard_size, bool) or not isinstance(shard_size, (int, np.integer)) \
            or shard_size < 1:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
    _check_limit(limit)
    table = None
    if reuse is not None:
        t = read_buckling_table(reuse, num_modes=num_modes)
        where = {h: i for h, i in _table_rows(t).items() if t["ok"][i]}
        table = (where, t["strains"], t["modulus"])
    c = corpus if isinstance(corpus, Corpus) else load_corpus(corpus, limit=limit, quiet=True)
    n = len(c) if limit is None else min(limit, len(c))
    reused = 0
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    strains = np.full((n, num_modes), np.nan)
    modulus = np.full(n, np.nan)
    ok = np.zeros(n, dtype=bool)
    starts = range(0, n, shard_size)
    bar = None
    if progress:
        from .progress import progress_bar
        bar = progress_bar(total=len(starts), desc="buckling shards", unit="shard")
    for start in starts:
        sl = slice(start, min(start + shard_size, n))
        digest = _rows_digest(c.adj[sl], c.offset[sl])
        path = work / f"buckling-{start // shard_size:05d}.npz"
        saved = None
        if path.exists():
            try:
                with np.load(path) as z:
                    saved = {k: z[k] for k in ("digest", "strains", "modulus", "ok")}
            except Exception as exc:  # damaged or partial file: recompute it
                log.warning("recomputing %s: %s", path, exc)
            k = len(saved["ok"]) if saved is not None else 0
            is_last = not (work / f"buckling-{start // shard_size + 1:05d}.npz").exists()
            if saved is not None and k < sl.stop - sl.start and is_last and \
                    str(saved["digest"]) == _rows_digest(c.adj[sl.start:sl.start + k],
                                                         c.offset[sl.start:sl.start + k]):
                # the partial last shard of this corpus before it grew: complete it
                log.warning("recomputing %s: %d of its rows stored, %d now (the corpus grew)",
                            path, k, sl.stop - sl.start)
                saved = None
            if saved is not None and str(saved["digest"]) != digest:
                raise ValueError(f"{path} holds the buckling of other lattices (another corpus "
                                 f"or shard size); use another work directory")
            if saved is not None and saved["strains"].shape != (sl.stop - sl.start, num_modes):
                log.warning("recomputing %s: %d modes stored, %d asked", path,
                            saved["strains"].shape[-1], num_modes)
                saved = None
        if saved is None:
            k = sl.stop - sl.start
            s, m, good = np.full((k, num_modes), np.nan), np.full(k, np.nan), np.zeros(k, bool)
            todo = np.arange(k)
            if table is not None:
                where, t_strains, t_modulus = table
                rows = np.array([where.get(int(h), -1)
                                 for h in row_hashes(c.adj[sl], c.offset[sl])])
                hit = rows >= 0
                s[hit], m[hit], good[hit] = t_strains[rows[hit]], t_modulus[rows[hit]], True
                todo = np.flatnonzero(~hit)
                reused += int(hit.sum())
            if len(todo):
                s[todo], m[todo], good[todo] = buckling_batch(
                    [c.truss(sl.start + int(i)) for i in todo], num_modes=num_modes,
                    workers=workers)
            saved = {"strains": s, "modulus": m, "ok": good, "digest": np.array(digest)}
            write_shard(path, saved)
        strains[sl], modulus[sl], ok[sl] = saved["strains"], saved["modulus"], saved["ok"]
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return {"strains": strains, "modulus": modulus, "ok": ok,
            "row_hash": row_hashes(c.adj[:n], c.offset[:n]), "reused": reused}


def row_hashes(adj: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each stored lattice (its packed adjacency bytes and float32 offsets),
    the key by which per-lattice tables such as ``buckling.npz`` are matched to a corpus.

    Args:
        adj: uint8 ``[N, 44]`` packed adjacency (:attr:`Corpus.adj`).
        offset: ``[N, 27]`` offsets (:attr:`Corpus.offset`; compared as float32).

    Returns:
        uint64 ``[N]``.
    """
    adj = np.ascontiguousarray(adj, dtype=np.uint8)
    offset = np.ascontiguousarray(offset, dtype=np.float32)
    if adj.ndim != 2 or offset.ndim != 2 or len(adj) != len(offset):
        raise ValueError(f"need adj [N, {ADJ_BYTES}] and offset [N, 27], got {adj.shape} and "
                         f"{offset.shape}")
    out = np.empty(len(adj), dtype=np.uint64)
    for i in range(len(adj)):
        h = hashlib.blake2b(adj[i].tobytes(), digest_size=8)
        h.update(offset[i].tobytes())
        out[i] = np.frombuffer(h.digest(), dtype=np.uint64)[0]
    return out


def read_buckling_table(path, num_modes: int | None = None) -> dict:
    """Read and check a table written by ``gnn-truss data buckle``.

    Args:
        path: the ``.npz``.
        num_modes: the number of critical strains per lattice the table must hold (any when
            ``None``).

    Returns:
        ``{"strains": [M, K], "modulus": [M], "ok": [M] bool, "row_hash": [M] uint64}``
        (``ok`` is derived from finite strains for a table written without it).

    Raises:
        ValueError: an unreadable file, a missing array, inconsistent shapes or types (hashes
            other than uint64, ``ok`` not boolean) or another number of modes, naming the
            problem.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            stored = {k: z[k] for k in ("strains", "modulus", "ok", "row_hash") if k in z.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"cannot read the buckling table {path}: {exc}") from exc
    missing = {"strains", "modulus", "row_hash"} - set(stored)
    if missing:
        raise ValueError(f"{path} is not a buckling table of `gnn-truss data buckle`: "
                         f"{sorted(missing)} missing (a table without 'row_hash' was written "
                         f"before row hashes; rebuild it)")
    strains, modulus, keys = stored["strains"], stored["modulus"], stored["row_hash"]
    if strains.ndim != 2 or modulus.shape != (len(strains),) or keys.shape != (len(strains),) \
            or (num_modes is not None and strains.shape[1] != num_modes):
        want = "M, K" if num_modes is None else f"M, {num_modes}"
        raise ValueError(f"{path}: need strains [{want}], modulus [M] and row_hash [M], got "
                         f"{strains.shape}, {modulus.shape} and {keys.shape}")
    if keys.dtype != np.uint64:
        raise ValueError(f"{path}: row_hash must be the uint64 hashes of row_hashes, got "
                         f"{keys.dtype}")
    ok = stored.get("ok")
    if ok is None:  # derived for a table written without it
        ok = np.isfinite(strains).all(1) & np.isfinite(modulus)
    elif ok.shape != (len(strains),) or ok.dtype != bool:
        raise ValueError(f"{path}: need ok [M] of booleans, got {ok.dtype} {ok.shape}")
    stored["ok"] = ok
    return stored


def _table_rows(table: dict) -> dict:
    """``{row hash: row}`` of a buckling table: for a lattice listed more than once, its first
    analysed row (``ok``), else its first row."""
    where = {}
    for i, (k, good) in enumerate(zip(table["row_hash"].tolist(), table["ok"].tolist())):
        j = where.get(k)
        if j is None or (good and not table["ok"][j]):
            where[k] = i
    return where


def corpus_descriptors(path, corpus) -> np.ndarray:
    """The buckling descriptors (:func:`gnn_truss.fe.buckling.buckling_descriptors`) of every
    lattice of ``corpus``, read from a table written by ``gnn-truss data buckle``.

    The table's rows are matched to the corpus by :func:`row_hashes`, so it may hold more
    lattices than the corpus, in any order; a lattice listed twice reads its first analysed
    row. ``datasets/nonlinear/buckling.npz`` covers all 39,996 lattices of the shipped curve
    corpus, and so every prefix of it that ``data.limit`` reads.

    Args:
        path: the ``.npz`` of ``gnn-truss data buckle`` (``strains [M, 3]``, ``modulus [M]``,
            ``row_hash [M]``).
        corpus: a loaded :class:`Corpus` (or a path).

    Returns:
        ``[N, 5]`` float64, row ``i`` for corpus lattice ``i``; NaN rows for lattices the
        analysis failed on.

    Raises:
        ValueError: a table without row hashes, or a corpus lattice that is not in it.
    """
    from .fe.buckling import buckling_descriptors
    c = corpus if isinstance(corpus, Corpus) else load_corpus(corpus, quiet=True)
    stored = read_buckling_table(path, num_modes=3)
    desc = buckling_descriptors(stored["strains"], stored["modulus"])
    where = _table_rows(stored)
    want = row_hashes(c.adj, c.offset)
    rows = np.array([where.get(int(k), -1) for k in want], dtype=np.int64)
    if np.any(rows < 0):
        bad = np.flatnonzero(rows < 0)
        raise ValueError(f"{path} lacks {len(bad)} of the corpus' {len(c)} lattices (first: "
                         f"row {bad[0]}); it was computed for another corpus: run "
                         f"`gnn-truss data buckle` on this one")
    return desc[rows]
