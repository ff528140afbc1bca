r"""The FE-labelled truss corpus as a PyG :class:`~torch_geometric.data.InMemoryDataset`.

Each item is the graph of :func:`gnn_truss.graph.truss_to_data` with the raw labels
(``stiffness`` and, when present, ``curve``) and the normalised training target ``y``.

Targets (units of the base Young's modulus :math:`E_s`):

=====================  ========  ============================================================
target                 ``y``     content
=====================  ========  ============================================================
``stiffness``          ``[1,9]`` C11, C12, C13, C22, C23, C33, C44, C55, C66 (Voigt, eng. shear)
``curve``              ``[1,13]`` nominal compressive stress at 0.5 %, 2.5 %, ..., 24.5 % strain
=====================  ========  ============================================================

Normalisation (:class:`TargetNormalizer`, invertible, fitted on the training split and kept in
``processed/``): stiffness spans orders of magnitude and off-diagonal terms change sign, so
:math:`y = (\operatorname{asinh}(v / s) - \mu) / \sigma` per component with a fixed scale
:math:`s` (1e-4 by default: logarithmic above it, linear below) and the training mean and
standard deviation.

Splits are a seeded permutation cut into train / val / test fractions (default 0.8 / 0.1 /
0.1); the corpus holds no duplicates, so the test lattices never occur in training.

Sources: ``"corpus"`` reads ``raw/corpus.npz`` (the compact file of
:func:`gnn_truss.corpus.save_compact`) or a build directory ``raw/corpus/``; ``"published"``
reads the ETH dataset files (:mod:`gnn_truss.published`) placed in ``raw/``.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data, InMemoryDataset
from torch_geometric.transforms import BaseTransform

from .corpus import Corpus, load_corpus, unpack_adjacency
from .graph import collated_graphs, truss_to_data
from .published import PUBLISHED_FILES, import_published
from .truss import Truss

__all__ = ["TrussDataset", "TargetNormalizer", "split_indices", "split_by_content",
           "corpus_split", "parse_split_by", "split_keeping_prefix", "SPLIT_BY", "PUBLISHED_URL",
           "AttachFeatures", "attach_features"]

log = logging.getLogger(__name__)

#: Landing page of the published dataset (the archive is fetched from here by ``download()``).
PUBLISHED_URL = "https://doi.org/10.3929/ethz-b-000618078"
SPLITS = ("train", "val", "test")
#: how a corpus is split (``data.split_by``): ``"permutation"``, a seeded permutation of the
#: corpus' indices (:func:`split_indices`; exact fractions, but a corpus that grows is split
#: anew), or ``"content"``, each lattice by a seeded hash of its stored arrays
#: (:func:`split_by_content`; fractions only on average, but a lattice keeps its split when
#: the corpus grows, so a model trained on the smaller corpus never saw the larger one's
#: validation and test lattices), or ``"prefix:N"``, the first ``N`` lattices as the
#: permutation split of a corpus of ``N`` and the rest by content (:func:`split_keeping_prefix`:
#: a corpus that was split by permutation grows without moving any of its lattices)
SPLIT_BY = ("permutation", "content", "prefix:N")
SOURCES = ("corpus", "published")
TARGETS = ("stiffness", "curve")


@dataclass
class TargetNormalizer:
    """``y = (asinh(v / scale) - mean) / std``, component-wise; works on numpy and torch.

    Attributes: ``scale`` (float), ``mean`` and ``std`` (``[D]`` lists).
    """

    scale: float
    mean: list
    std: list

    @classmethod
    def fit(cls, values: np.ndarray, scale: float = 1e-4) -> "TargetNormalizer":
        z = np.arcsinh(np.asarray(values, dtype=np.float64) / scale)
        std = z.std(axis=0)
        return cls(scale, z.mean(axis=0).tolist(), np.where(std > 0, std, 1.0).tolist())

    def _params(self, like):
        if isinstance(like, torch.Tensor):
            return (torch.as_tensor(self.mean, dtype=like.dtype, device=like.device),
                    torch.as_tensor(self.std, dtype=like.dtype, device=like.device))
        return np.asarray(self.mean), np.asarray(self.std)

    def transform(self, v):
        """Physical values ``[..., D]`` -> normalised."""
        mean, std = self._params(v)
        asinh = torch.asinh if isinstance(v, torch.Tensor) else np.arcsinh
        return (asinh(v / self.scale) - mean) / std

    def inverse(self, y):
        """Normalised ``[..., D]`` -> physical values."""
        mean, std = self._params(y)
        sinh = torch.sinh if isinstance(y, torch.Tensor) else np.sinh
        return sinh(y * std + mean) * self.scale

    def to_dict(self) -> dict:
        return {"scale": self.scale, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> "TargetNormalizer":
        try:
            return cls(float(d["scale"]), list(d["mean"]), list(d["std"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed target normalizer {d!r}") from exc


def split_indices(n: int, seed: int = 0, fractions=(0.8, 0.1, 0.1)) -> dict[str, np.ndarray]:
    """Disjoint train/val/test index arrays covering ``range(n)`` (seeded permutation)."""
    f = _check_fractions(fractions)
    perm = np.random.default_rng(seed).permutation(n)
    a = int(round(f[0] * n))
    b = a + int(round(f[1] * n))
    return {"train": np.sort(perm[:a]), "val": np.sort(perm[a:b]), "test": np.sort(perm[b:])}


def _check_fractions(fractions) -> np.ndarray:
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or np.any(f < 0) or not np.isclose(f.sum(), 1.0):
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, "
                         f"got {fractions}")
    return f


def split_by_content(keys: np.ndarray, seed: int = 0,
                     fractions=(0.8, 0.1, 0.1)) -> dict[str, np.ndarray]:
    """Disjoint train/val/test index arrays covering ``range(N)``, each lattice assigned by its
    content alone.

    Each key is mixed with the seed (the SplitMix64 finaliser) into a number ``u`` uniform in
    [0, 1); a lattice goes to train if ``u < f_train``, to val if ``u < f_train + f_val``, else
    to test. So a lattice's split does not depend on the other lattices: appending lattices to
    a corpus leaves every old lattice where it was, and the fractions hold on average only
    (binomial scatter, about ``sqrt(f (1 - f) / N)``).

    Args:
        keys: uint64 ``[N]`` hashes of the lattices (:func:`gnn_truss.corpus.row_hashes` of the
            stored adjacency and offsets).
        seed: integer; another seed gives an independent split.
        fractions: train / val / test fractions (non-negative, summing to 1).
    """
    f = _check_fractions(fractions)
    x = np.asarray(keys, dtype=np.uint64).copy()
    with np.errstate(over="ignore"):
        x ^= np.uint64((int(seed) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % 2**64)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    u = (x >> np.uint64(11)).astype(np.float64) / float(2 ** 53)
    a, b = f[0], f[0] + f[1]
    return {"train": np.flatnonzero(u < a), "val": np.flatnonzero((u >= a) & (u < b)),
            "test": np.flatnonzero(u >= b)}


def parse_split_by(split_by) -> tuple[str, int | None]:
    """``(mode, N)`` of a ``split_by`` value (one of :data:`SPLIT_BY`; ``N`` is ``None``
    except for ``"prefix:N"``); a clear ``ValueError`` for anything else."""
    if split_by in ("permutation", "content"):
        return split_by, None
    if isinstance(split_by, str) and split_by.startswith("prefix:"):
        n = split_by[len("prefix:"):]
        if n.isascii() and n.isdigit() and n == str(int(n)) and int(n) > 0:
            return "prefix", int(n)  # one spelling per split: no leading zeros
    raise ValueError(f"split_by must be 'permutation', 'content' or 'prefix:N' with N a "
                     f"positive integer (the size of the corpus whose permutation split the "
                     f"first N lattices keep), got {split_by!r}")


def split_keeping_prefix(keys: np.ndarray, prefix: int, seed: int = 0,
                         fractions=(0.8, 0.1, 0.1)) -> dict[str, np.ndarray]:
    """Train/val/test indices of a grown corpus whose first ``prefix`` lattices keep the split
    :func:`split_indices` gave them when the corpus had ``prefix`` lattices.

    The lattices from ``prefix`` on are assigned by :func:`split_by_content` (their own
    content and the seed), so they too keep their split when the corpus grows further. A
    model trained on the permutation split of the first ``prefix`` lattices has therefore
    never seen the validation or test lattices of any grown corpus split this way.

    Args:
        keys: uint64 ``[N]`` hashes of the lattices (only rows ``prefix:`` are read).
        prefix: the size of the corpus whose permutation split is kept, ``<= N``.
        seed, fractions: as in :func:`split_indices` (the same for both parts).
    """
    n = len(keys)
    if prefix > n:
        raise ValueError(f"split_by 'prefix:{prefix}' keeps the split of the first {prefix} "
                         f"lattices, but the corpus has only {n}")
    head = split_indices(prefix, seed, fractions)
    tail = split_by_content(np.asarray(keys)[prefix:], seed, fractions)
    return {s: np.concatenate([head[s], tail[s] + prefix]) for s in SPLITS}


def corpus_split(corpus: Corpus, seed: int = 0, fractions=(0.8, 0.1, 0.1),
                 split_by: str = "permutation") -> dict[str, np.ndarray]:
    """The train/val/test indices of a corpus as :class:`TrussDataset` draws them
    (``split_by``: one of :data:`SPLIT_BY`)."""
    mode, prefix = parse_split_by(split_by)
    if mode == "permutation":
        return split_indices(len(corpus), seed, fractions)
    from .corpus import row_hashes
    keys = row_hashes(corpus.adj, corpus.offset)
    if mode == "content":
        return split_by_content(keys, seed, fractions)
    return split_keeping_prefix(keys, prefix, seed, fractions)


def raw_ready(root, source: str = "corpus") -> bool:
    """Whether ``root/raw`` holds the raw data of ``source``: a compact corpus file or a
    corpus build directory (``"corpus"``), or the published files (``"published"``)."""
    raw = Path(root) / "raw"
    if source == "corpus":
        return (raw / "corpus.npz").exists() or (raw / "corpus" / "manifest.json").exists()
    return all((raw / f).exists() for f in PUBLISHED_FILES)


def resolve_data_root(root, source: str = "corpus") -> Path:
    """The dataset root to read: ``root`` itself, unless it is a relative path missing from the
    working directory whose copy in the package's source tree holds the raw data
    (:func:`gnn_truss.paths.resolve_shipped`: the shipped corpora, read from anywhere). A root
    to be created or filled (a new corpus, a published download) stays where it was given."""
    root = Path(root)
    if root.exists():
        return root
    from .paths import resolve_shipped
    alt = resolve_shipped(root)
    return alt if alt != root and raw_ready(alt, source) else root


class TrussDataset(InMemoryDataset):
    r"""FE-labelled truss lattices (see the module docstring for targets and normalisation).

    Args:
        root: dataset directory (``raw/`` and ``processed/`` inside).
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        source: ``"corpus"`` or ``"published"``.
        target: ``"stiffness"`` or ``"curve"``.
        split_seed: seed of the split.
        split_fractions: train / val / test fractions.
        split_by: ``"permutation"`` (default), ``"content"`` or ``"prefix:N"``, see
            :data:`SPLIT_BY`.
        limit: use only the first ``limit`` lattices of the corpus.
        transform, pre_transform, pre_filter: PyG hooks.
        force_reload: reprocess even if processed files exist.

    Shapes (one item): ``x [27, 14]``, ``edge_index [2, 2E]``, ``edge_attr [2E, 4]``,
    ``adj [1, 351]``, ``offset [1, 27]``, ``stiffness [1, 9]``, ``curve [1, 13]``,
    ``y [1, 9]`` (or ``[1, 13]``).
    """

    def __init__(self, root, split: str = "train", source: str = "corpus",
                 target: str = "stiffness", split_seed: int = 0,
                 split_fractions=(0.8, 0.1, 0.1), limit: int | None = None, transform=None,
                 pre_transform=None, pre_filter=None, force_reload: bool = False,
                 split_by: str = "permutation"):
        if split not in SPLITS + ("all",):
            raise ValueError(f"split must be one of {SPLITS + ('all',)}, got {split!r}")
        if source not in SOURCES:
            raise ValueError(f"source must be 'corpus' or 'published', got {source!r}")
        if target not in TARGETS:
            raise ValueError(f"target must be 'stiffness' or 'curve', got {target!r}")
        if limit is not None and (isinstance(limit, bool) or
                                  not isinstance(limit, (int, np.integer)) or limit < 1):
            raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
        parse_split_by(split_by)
        self.split, self.source, self.target = split, source, target
        self.split_by = split_by
        self.split_seed, self.split_fractions = split_seed, tuple(split_fractions)
        self.limit = limit
        split_indices(1, split_seed, split_fractions)  # validates the fractions early
        super().__init__(str(root), transform, pre_transform, pre_filter,
                         force_reload=force_reload)
        self.load(self.processed_paths[(SPLITS + ("all",)).index(split)])
        meta = json.loads(Path(self.processed_paths[-1]).read_text())
        self.normalizer = TargetNormalizer.from_dict(meta["normalizer"])
        self.fingerprint: str = meta["fingerprint"]
        self.meta: dict = meta

    # ------------------------------------------------------------------ PyG hooks
    @property
    def raw_file_names(self):
        return ["corpus.npz"] if self.source == "corpus" else list(PUBLISHED_FILES)

    def _raw_key(self) -> str:
        """Short digest of the raw files' names, sizes and modification times, so replacing
        the raw data triggers reprocessing."""
        h = hashlib.sha1()
        raw = Path(self.raw_dir)
        files = [raw / f for f in self.raw_file_names] + sorted((raw / "corpus").glob("**/*"))
        for f in files:
            if f.is_file():
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
        return h.hexdigest()[:10]

    @property
    def processed_file_names(self):
        tag = (f"{self.source}_{self.target}_s{self.split_seed}_"
               f"{'-'.join(f'{f:g}' for f in self.split_fractions)}_n{self.limit or 'all'}_"
               f"{self._split_tag()}{self._raw_key()}")
        return [f"{tag}_{s}.pt" for s in SPLITS + ("all",)] + [f"{tag}_meta.json"]

    def _split_tag(self) -> str:
        mode, prefix = parse_split_by(self.split_by)
        return {"permutation": "", "content": "c_", "prefix": f"p{prefix}_"}[mode]

    def _raw_ready(self) -> bool:
        return raw_ready(Path(self.raw_dir).parent, self.source)

    def _download(self):  # a corpus build directory also counts as raw data
        if self._raw_ready():
            return
        if self.source == "corpus":  # nothing to download: say so before creating raw/
            self.download()
        super()._download()

    def download(self):
        raw = Path(self.raw_dir)
        if self.source == "corpus":
            raise FileNotFoundError(
                f"no corpus in {raw}: place a compact corpus file at {raw / 'corpus.npz'} "
                f"(gnn_truss.corpus.save_compact) or a build directory at {raw / 'corpus'} "
                f"(gnn-truss data build --out {raw / 'corpus'})")
        try:  # the public archive, where a network is available
            from torch_geometric.data import download_url, extract_zip
            path = download_url(PUBLISHED_URL, str(raw))
            if path.endswith(".zip"):
                extract_zip(path, str(raw))
        except Exception as exc:
            raise FileNotFoundError(
                f"could not download the published dataset ({exc}). Download it from "
                f"{PUBLISHED_URL} and place {', '.join(PUBLISHED_FILES)} in {raw}") from exc
        if not self._raw_ready():
            raise FileNotFoundError(f"downloaded archive lacks {PUBLISHED_FILES}; place them "
                                    f"in {raw}")

    def _read_corpus(self) -> Corpus:
        raw = Path(self.raw_dir)
        if self.source == "published":
            return import_published(raw)
        if (raw / "corpus.npz").exists():
            return load_corpus(raw / "corpus.npz")
        return load_corpus(raw / "corpus")

    def process(self):
        corpus = self._read_corpus()
        if self.limit is not None:
            corpus = corpus.subset(slice(0, self.limit))
        labels = corpus.stiffness if self.target == "stiffness" else corpus.curve
        if labels is None:
            raise ValueError(f"corpus in {self.raw_dir} has no '{self.target}' labels")
        if len(corpus) == 0:
            raise ValueError(f"corpus in {self.raw_dir} is empty")
        splits = corpus_split(corpus, self.split_seed, self.split_fractions, self.split_by)
        norm = TargetNormalizer.fit(labels[splits["train"]] if len(splits["train"]) else labels)
        keep = np.ones(len(corpus), dtype=bool)
        if self.pre_filter is None and self.pre_transform is None:
            # all graphs at once, collated as InMemoryDataset.save would store them
            adj, offsets, y = corpus.adjacency(), corpus.offsets(), norm.transform(labels)
            for i, s in ((3, "all"), *enumerate(SPLITS)):  # "all" first: errors name the
                idx = splits[s] if s != "all" else np.arange(len(corpus))  # corpus index
                self._save_collated(corpus, adj, offsets, y, idx, self.processed_paths[i])
        else:  # the hooks act on Data objects: one graph at a time
            data_list = self._graphs(corpus, labels, norm)
            if self.pre_filter is not None:
                keep = np.array([bool(self.pre_filter(d)) for d in data_list])
            if self.pre_transform is not None:
                data_list = [self.pre_transform(d) for d in data_list]
            for i, s in enumerate(SPLITS):
                idx = splits[s][keep[splits[s]]]
                self._save([data_list[j] for j in idx], self.processed_paths[i])
            self._save([d for d, k in zip(data_list, keep) if k], self.processed_paths[3])
        h = hashlib.sha1(corpus.adj.tobytes())
        h.update(np.ascontiguousarray(corpus.offset).tobytes())
        h.update(np.ascontiguousarray(labels).tobytes())
        meta = {"normalizer": norm.to_dict(), "fingerprint": h.hexdigest(),
                "num_lattices": len(corpus), "target": self.target,
                "split_sizes": {s: int(keep[splits[s]].sum()) for s in SPLITS},
                "split_seed": self.split_seed, "split_fractions": list(self.split_fractions),
                "split_by": self.split_by,
                "corpus_meta": corpus.meta or {}}
        Path(self.processed_paths[-1]).write_text(json.dumps(meta, indent=1))

    @classmethod
    def _save(cls, data_list: list, path: str) -> None:
        if data_list:
            cls.save(data_list, path)
        else:  # an empty split (zero fraction, or everything filtered): PyG cannot collate []
            torch.save((Data().to_dict(), {}, Data), path)

    @classmethod
    def _save_collated(cls, corpus: Corpus, adj: np.ndarray, offsets: np.ndarray,
                       y: np.ndarray, idx: np.ndarray, path: str) -> None:
        """Write the graphs ``idx`` of the corpus (the file :meth:`_save` writes for
        ``[_graphs(...)[i] for i in idx]``, built without the per-lattice loop)."""
        if len(idx) == 0:
            cls._save([], path)
            return
        data, slices = collated_graphs(
            adj[idx], offsets[idx], corpus.stiffness[idx],
            None if corpus.curve is None else corpus.curve[idx])
        data.y = torch.as_tensor(y[idx], dtype=torch.float32)
        data.idx = torch.as_tensor(idx, dtype=torch.long)
        slices["y"] = torch.arange(len(idx) + 1)
        slices["idx"] = torch.arange(len(idx) + 1)
        torch.save((data.to_dict(), slices, data.__class__), path)

    @staticmethod
    def _graphs(corpus: Corpus, labels: np.ndarray, norm: TargetNormalizer) -> list:
        adj = unpack_adjacency(corpus.adj)
        offsets = corpus.offsets()
        y = norm.transform(labels)
        out = []
        for i in range(len(corpus)):
            d = truss_to_data(Truss(adj[i], offsets[i]), stiffness=corpus.stiffness[i],
                              curve=None if corpus.curve is None else corpus.curve[i])
            d.y = torch.as_tensor(y[i], dtype=torch.float32).view(1, -1)
            d.idx = torch.tensor([i])
            out.append(d)
        return out

    def clear_processed(self) -> None:
        """Delete the processed files of this dataset configuration."""
        for p in self.processed_paths:
            Path(p).unlink(missing_ok=True)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({len(self)}, split={self.split!r}, "
                f"source={self.source!r}, target={self.target!r})")


class AttachFeatures(BaseTransform):
    """Sets ``data.feat [1, F]`` of each graph to row ``data.idx`` (its corpus index) of a
    per-lattice table, the input of a predictor with ``model.predictor_features``.

    Args:
        table: ``[N, F]`` features of the corpus' lattices, row ``i`` for corpus lattice ``i``
            (:func:`gnn_truss.corpus.corpus_descriptors`).
    """

    def __init__(self, table):
        self.table = torch.as_tensor(table, dtype=torch.float32)
        if self.table.ndim != 2:
            raise ValueError(f"a feature table is [N, F], got {tuple(self.table.shape)}")

    def forward(self, data):
        idx = getattr(data, "idx", None)
        if idx is None:
            raise ValueError("graphs need their corpus index `idx` to look up their features")
        if int(idx.max()) >= len(self.table):
            raise ValueError(f"corpus index {int(idx.max())} beyond the feature table's "
                             f"{len(self.table)} rows")
        data.feat = self.table[idx.cpu()].to(idx.device)
        return data

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({tuple(self.table.shape)})"


def attach_features(datasets, path) -> None:
    """Give each graph of the datasets (splits of one :class:`TrussDataset` corpus) its
    buckling descriptors from the table ``path`` of ``gnn-truss data buckle``
    (:func:`gnn_truss.corpus.corpus_descriptors`, matched by lattice hash), as the transform
    :class:`AttachFeatures`.

    Raises:
        ValueError: a table that does not cover the corpus, or a dataset that already has a
            transform.
    """
    from .corpus import corpus_descriptors
    datasets = list(datasets)
    if not datasets:
        return
    corpus = datasets[0]._read_corpus()
    table = AttachFeatures(corpus_descriptors(path, corpus))
    for d in datasets:
        if d.transform is not None:
            raise ValueError(f"{d} already has a transform ({d.transform}); cannot attach "
                             f"features")
        d.transform = table
