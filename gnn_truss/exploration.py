r"""Latent-space exploration of a trained graph VAE: sampling, interpolation, traversal.

Zheng et al. (2023), "Exploration in the latent space of truss lattices" and Supplementary
Note 3 (``SPEC.md`` sections 6-7). Every lattice is decoded with the adjacency threshold 0.5
(``logit > 0``) and offsets clipped to ``[-0.5, 0.5]``
(:func:`gnn_truss.evaluation.decode_trusses`), optionally cleaned by :func:`light_repair`,
checked by :meth:`Truss.validate` and labelled by linear FE homogenization
(:func:`gnn_truss.fe.homogenize_batch`, relative density 0.15, :math:`E_s = 1`,
:math:`\nu_s = 0.3`). Lattices that fail are kept and reported with their status, never
dropped silently.

* :func:`sample`: decode :math:`z \sim N(0, I)`; validity (paper: one connected component;
  strict: :meth:`Truss.validate` passes and the FE stiffness is finite and positive definite)
  before and after repair, uniqueness and novelty.
* :func:`interpolate`: decode along the straight line (:func:`lerp`) or the great circle
  (:func:`slerp`) between the latent means of two lattices.
* :func:`traverse`: move one latent coordinate of a lattice's mean (topology-specific, shared
  or geometry-specific group; ``TrussVAE.sizes``) by ``-span .. span`` prior standard
  deviations.

Shapes: latent vectors are ``[d]`` or ``[T, d]`` with ``d = t + s + g`` (default
8 + 32 + 8 = 48) in the layout ``[topology | shared | geometry]``; stiffnesses ``[6, 6]``
(Voigt, engineering shears) in units of :math:`E_s`.

Everything here is a function of a model, lattices and tensors; only :func:`load_model` reads
a file and nothing writes one (the ``gnn-truss sample | interpolate | traverse`` commands of
:mod:`gnn_truss.cli` do).
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from . import design_space as ds
from .evaluation import STIFFNESS_NAMES
from .geometry import num_components
from .properties import property_names
from .truss import Truss

__all__ = ["GROUPS", "PATH_PROPERTIES", "RepairReport", "light_repair", "topology_hash",
           "corpus_hashes", "corpus_fingerprint", "fingerprint_prefix", "load_model",
           "encode_lattices", "encode_lattice", "decode_latents", "reconstruct_lattices", "lerp",
           "slerp", "group_slice", "axis_sensitivity", "LatentPath", "evaluate_path",
           "interpolate", "traverse", "SampleResult", "sample"]

log = logging.getLogger(__name__)

#: Latent groups, in layout order.
GROUPS = ("topology", "shared", "geometry")
#: Properties recorded along a path: the stiffness 9-vector (units of E_s) and the keys of
#: :func:`gnn_truss.properties.all_properties`.
PATH_PROPERTIES = STIFFNESS_NAMES + property_names()

_SLERP_EPS = 1e-7  # |sin theta| below which slerp falls back to lerp
_REPAIR_BAR_MIN = 5000  # samples from which sample() shows a progress bar for the repair


# --------------------------------------------------------------------------- light repair

@dataclass(frozen=True)
class RepairReport:
    """What :func:`light_repair` removed.

    Attributes:
        dangling_nodes: nodes pruned because they had fewer than two beams in the periodic cell
            (in pruning order).
        component_nodes: nodes dropped with the smaller connected components.
        removed_edges: ``[K, 2]`` beams removed (either reason).
        num_components: connected components after pruning, before the largest was kept.
        long_edges: ``[L, 2]`` beams removed for being longer than ``sqrt(3)/2`` (with
            ``drop_long``) or for joining a pair no offsets bring within it (with
            ``fit_lengths``, :data:`~gnn_truss.design_space.NEAR_NEIGHBOUR_EDGES`).
        fit: :data:`~gnn_truss.decoding.FIT_STATUS` of the length fit (``""`` without
            ``fit_lengths``).
        offset_shift: Euclidean norm of the change of the 27 free offsets made by the length
            fit (octant side 1; 0 when nothing moved).
    """

    dangling_nodes: tuple = ()
    component_nodes: tuple = ()
    removed_edges: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    num_components: int = 0
    long_edges: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    fit: str = ""
    offset_shift: float = 0.0

    @property
    def changed(self) -> bool:
        return len(self.removed_edges) > 0 or self.offset_shift > 0

    def to_dict(self) -> dict:
        return {"dangling_nodes": [int(n) for n in self.dangling_nodes],
                "component_nodes": [int(n) for n in self.component_nodes],
                "removed_edges": self.removed_edges.tolist(),
                "num_components": int(self.num_components),
                "long_edges": np.asarray(self.long_edges).tolist(),
                "fit": self.fit, "offset_shift": float(self.offset_shift)}


def _component_labels(adj: np.ndarray) -> np.ndarray:
    """``[27]`` component label of each node (-1 for unused nodes)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components
    _, lab = connected_components(csr_matrix(adj), directed=False)
    return np.where(adj.any(axis=1), lab, -1)


def light_repair(truss: Truss, drop_long: bool = False,
                 fit_lengths: bool = False) -> tuple[Truss, RepairReport]:
    """Light post-processing of a decoded lattice (Zheng et al. 2023: "a light post-processing
    step" for a lack of connectivity).

    0. Only with ``drop_long``: remove the beams longer than ``sqrt(3)/2``
       (:data:`~gnn_truss.design_space.R_MAX`; the inverse-design repair,
       :func:`gnn_truss.design.repair_design`). Only with ``fit_lengths``: remove the beams
       on pairs that no offsets bring within ``sqrt(3)/2`` (those not in
       :data:`~gnn_truss.design_space.NEAR_NEIGHBOUR_EDGES`).
    1. Repeatedly remove every used node with fewer than two beams in the periodic cell
       (:meth:`Truss.physical_degree` < 2: a dangling node) together with its beam, until none
       is left. (A node's periodic degree is at least its octant degree, so only octant leaves
       are pruned, and pruning never disconnects the rest.)
    2. Keep only the largest connected component: most beams, then most nodes, then the one
       holding the lowest node index (deterministic).
    3. Only with ``fit_lengths``: move the offsets to the nearest ones under which every beam
       left is at most ``sqrt(3)/2`` (:func:`gnn_truss.decoding.fit_lengths`; the beams
       are kept, the nodes move).

    Beams are never added, and nodes never moved without ``fit_lengths``, so the result can
    still violate other rules of :meth:`Truss.validate` (e.g. ``spans_cell``, or
    ``max_length`` with neither option). Offsets of the removed nodes are set to zero.

    Args:
        truss: a :class:`~gnn_truss.truss.Truss`.
        drop_long: first remove beams longer than ``sqrt(3)/2`` (reported in
            ``long_edges``).
        fit_lengths: shorten over-long beams by moving their nodes (step 3; not together with
            ``drop_long``, which leaves nothing to fit).

    Returns:
        ``(repaired truss, RepairReport)``; a valid lattice comes back unchanged (equal) with an
        empty report (``fit`` then ``"valid"`` with ``fit_lengths``).
    """
    if drop_long and fit_lengths:
        raise ValueError("drop_long and fit_lengths exclude each other: dropping the long "
                         "beams leaves none to shorten")
    adj = truss.adjacency.copy()
    long_edges = np.zeros((0, 2), np.int64)
    if drop_long or fit_lengths:
        i, j = np.nonzero(np.triu(adj, k=1))
        if drop_long:
            pos = truss.positions
            long = np.linalg.norm(pos[j] - pos[i], axis=1) > ds.R_MAX + 1e-9
        else:
            long = ~ds.NEAR_NEIGHBOUR_ADJACENCY[i, j]
        adj[i[long], j[long]] = adj[j[long], i[long]] = 0
        long_edges = np.stack([i[long], j[long]], axis=1).astype(np.int64)
    dangling: list[int] = []
    while True:
        t = Truss(adj, np.where(adj.any(axis=1)[:, None], truss.offsets, 0.0))
        bad = np.flatnonzero(t.used & (t.physical_degree() < 2))
        if len(bad) == 0:
            break
        dangling += bad.tolist()
        adj[bad, :] = 0
        adj[:, bad] = 0
    lab = _component_labels(adj)
    comps = [c for c in np.unique(lab) if c >= 0]
    dropped: list[int] = []
    if len(comps) > 1:
        def size(c):
            nodes = np.flatnonzero(lab == c)
            return (int(adj[np.ix_(nodes, nodes)].sum()) // 2, len(nodes), -int(nodes.min()))
        keep = max(comps, key=size)
        drop = (lab >= 0) & (lab != keep)
        dropped = np.flatnonzero(drop).tolist()
        adj[drop, :] = 0
        adj[:, drop] = 0
    used = adj.any(axis=1)
    out = Truss(adj, np.where(used[:, None], truss.offsets, 0.0))
    removed = ds.adjacency_to_edges(truss.adjacency & ~adj.astype(bool))
    fit, shift = "", 0.0
    if fit_lengths:
        from .decoding import fit_lengths as _fit
        x, fit = _fit(out.adjacency, out.free_offsets)
        if fit in ("projected", "pulled"):
            shift = float(np.linalg.norm(x - out.free_offsets))
            out = out.with_offsets(x)
    return out, RepairReport(tuple(dangling), tuple(dropped), removed, len(comps), long_edges,
                             fit, shift)


# --------------------------------------------------------------------------- identity

def topology_hash(truss: Truss) -> str:
    """SHA-1 of the beams only (the adjacency upper triangle): lattices with the same
    connectivity and any node offsets share it."""
    triu = ds.adjacency_to_triu(truss.adjacency).astype(np.uint8)
    return hashlib.sha1(np.packbits(triu).tobytes()).hexdigest()


def corpus_hashes(corpus, split_seed: int = 0, limit: int | None = None,
                  split: str | None = "train",
                  split_by: str = "permutation") -> tuple[set, set]:
    """Canonical and topology hashes of one split of a corpus, as the dataset makes it.

    Args:
        corpus: a :class:`~gnn_truss.corpus.Corpus`.
        split_seed, limit, split_by: as in the training config's ``data`` section (the
            first ``limit`` lattices, then the seeded 0.8 / 0.1 / 0.1 split of
            :func:`gnn_truss.dataset.corpus_split`).
        split: ``"train"``, ``"val"``, ``"test"`` or ``None`` for the whole corpus.

    Returns:
        ``(canonical hashes, topology hashes)`` (sets of hex strings).
    """
    from .corpus import unpack_adjacency
    from .dataset import corpus_split
    n = len(corpus) if limit is None else min(limit, len(corpus))
    idx = np.arange(n) if split is None else corpus_split(
        corpus if n == len(corpus) else corpus.subset(slice(0, n)), split_seed,
        split_by=split_by)[split]
    canon, topo = set(), set()
    for s in range(0, len(idx), 4096):  # same bytes as Truss.canonical_hash / topology_hash
        rows = idx[s:s + 4096]
        bits = np.ascontiguousarray(corpus.adj[rows])
        used = ds.triu_to_adjacency(unpack_adjacency(bits, square=False)).any(axis=-1)
        free = np.where(used[:, ds.FREE_DOF_NODE], corpus.offset[rows].astype(np.float64), 0.0)
        q = np.rint(free * 1e6).astype(np.int64)
        for b, qi in zip(bits, q):
            h = hashlib.sha1(b.tobytes())
            topo.add(h.hexdigest())
            h.update(qi.tobytes())
            canon.add(h.hexdigest())
    return canon, topo


# --------------------------------------------------------------------------- model I/O

def load_model(checkpoint, device: str | torch.device = "cpu"):
    """Rebuild a :class:`~gnn_truss.nn.TrussVAE` from a checkpoint of
    :func:`gnn_truss.training.train`, in eval mode.

    Returns:
        ``(model, checkpoint dict)``.

    Raises:
        ValueError: missing, unreadable or foreign checkpoint, or weights not matching the
            model config saved in it.
    """
    from .nn import build_model
    from .training import load_checkpoint
    ck = load_checkpoint(checkpoint, map_location=device)  # checks the config sections
    model = build_model(ck["config"]["model"])
    try:
        model.load_state_dict(ck["model"])
    except RuntimeError as exc:
        raise ValueError(f"{checkpoint}: weights do not match the saved model config "
                         f"({exc})") from exc
    return model.to(device).eval(), ck


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def encode_lattices(model, trusses, refine_steps: int = 0) -> torch.Tensor:
    """Latent means of lattices (no sampling).

    Args:
        model: a :class:`~gnn_truss.nn.TrussVAE`.
        trusses: sequence of ``B`` :class:`Truss`.
        refine_steps: refine each mean by this many steps on the lattice's own
            reconstruction loss (:func:`gnn_truss.nn.vae.refine_latent`), so that it
            decodes to the lattice (one pass does for about two thirds of the corpus).
            (default: 0, the means)

    Returns:
        ``mu [B, d]`` float32 on the CPU.
    """
    from torch_geometric.data import Batch

    from .graph import truss_to_data
    from .nn.vae import check_refine
    refine_steps = check_refine(refine_steps, name="refine_steps")
    trusses = list(trusses)
    if not trusses:
        return torch.zeros(0, model.sizes.total)
    model.eval()
    batch = Batch.from_data_list([truss_to_data(t) for t in trusses]).to(_device(model))
    mu, _ = model.encode(batch)
    if refine_steps:
        from .nn.vae import refine_latent
        mu = refine_latent(model, mu, batch.adj, batch.offset, steps=refine_steps)
    return mu.detach().cpu()


def encode_lattice(model, truss: Truss, refine_steps: int = 0) -> torch.Tensor:
    """Latent mean ``mu [d]`` of one lattice (see :func:`encode_lattices`)."""
    return encode_lattices(model, [truss], refine_steps)[0]


@torch.no_grad()
def decode_latents(model, z, threshold: float = 0.5, batch_size: int = 1024,
                   constrained: bool = False) -> list[Truss]:
    """Lattices decoded from latent vectors ``z [B, d]``: adjacency probability above
    ``threshold`` (0.5: ``logit > 0``), offsets clipped to ``[-0.5, 0.5]`` and zeroed on unused
    nodes (:func:`gnn_truss.evaluation.decode_trusses`). With ``constrained``, an adjacency
    that breaks a topology rule is replaced by the most probable one that passes them
    (:func:`gnn_truss.decoding.constrained_adjacency`, on the threshold-shifted logits)."""
    from .evaluation import decode_trusses
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    z = torch.as_tensor(z, dtype=torch.float32)
    if z.ndim != 2 or z.shape[1] != model.sizes.total:
        raise ValueError(f"z must be [B, {model.sizes.total}], got {tuple(z.shape)}")
    model.eval()
    shift = math.log(threshold / (1 - threshold))
    out: list[Truss] = []
    for s in range(0, len(z), batch_size):
        logits, offsets = model.decode(z[s:s + batch_size].to(_device(model)))
        out += decode_trusses(logits - shift, offsets, constrained=constrained)
    return out


@torch.no_grad()
def reconstruct_lattices(model, trusses, symmetrise: str | None = None,
                         batch_size: int = 256, constrained: bool = False) -> list[Truss]:
    """The model's reconstructions of lattices: the decoded latent means (adjacency
    ``logit > 0``, offsets clipped and zeroed on unused nodes,
    :func:`gnn_truss.evaluation.decode_trusses`).

    With ``symmetrise`` (``"axes"``: the 6 axis permutations, ``"axes_mirrors"``: all 48
    symmetries of the cube) every symmetric copy of a lattice is encoded and decoded, and the
    adjacency logits and offsets, mapped back to the lattice's own axes, are averaged before
    decoding (:func:`gnn_truss.symmetry.symmetrised_outputs`): one forward pass per copy, far
    fewer wrong beams (``docs/training.md``), but no longer the decoding of one latent point.

    Args:
        model: a :class:`~gnn_truss.nn.TrussVAE`.
        trusses: sequence of ``B`` :class:`Truss`.
        symmetrise: ``None`` (default), ``"axes"`` or ``"axes_mirrors"``.
        batch_size: lattices per forward pass.
        constrained: decode the adjacency as the most probable one passing the topology
            rules (:func:`gnn_truss.decoding.constrained_adjacency`) instead of by the
            threshold.

    Returns:
        ``B`` :class:`Truss`.
    """
    from torch_geometric.data import Batch

    from .evaluation import decode_trusses
    from .graph import truss_to_data
    from .symmetry import check_symmetrise, symmetrised_outputs
    check_symmetrise(symmetrise, allow_none=True)
    trusses = list(trusses)
    model.eval()
    out: list[Truss] = []
    for s in range(0, len(trusses), batch_size):
        batch = Batch.from_data_list([truss_to_data(t) for t in trusses[s:s + batch_size]])
        batch = batch.to(_device(model))
        if symmetrise is None:
            r = model(batch, sample=False)
        else:
            r = symmetrised_outputs(model, batch, None, "stiffness", symmetrise)
        out += decode_trusses(r["logits"], r["offsets"], constrained=constrained)
    return out


# --------------------------------------------------------------------------- paths

def _path_args(z0, z1, t):
    z0 = torch.as_tensor(z0)
    z1 = torch.as_tensor(z1, dtype=z0.dtype)
    if z0.ndim != 1 or z0.shape != z1.shape:
        raise ValueError(f"z0 and z1 must be two [d] vectors, got {tuple(z0.shape)} and "
                         f"{tuple(z1.shape)}")
    t = torch.as_tensor(t, dtype=z0.dtype).reshape(-1)
    return z0, z1, t


def lerp(z0, z1, t) -> torch.Tensor:
    r"""Linear interpolation :math:`z(t) = (1 - t) z_0 + t z_1`.

    Args:
        z0, z1: ``[d]`` end points.
        t: scalar or ``[T]`` parameters (0 gives ``z0``, 1 gives ``z1``).

    Returns:
        ``[T, d]`` (``T = 1`` for a scalar ``t``).
    """
    z0, z1, t = _path_args(z0, z1, t)
    return (1 - t)[:, None] * z0 + t[:, None] * z1


def slerp(z0, z1, t) -> torch.Tensor:
    r"""Spherical linear interpolation (Shoemake 1985; Zheng et al. 2023, Eq. 6):

    .. math::

        z(t) = \frac{\sin((1 - t)\theta)}{\sin\theta} z_0 + \frac{\sin(t\theta)}{\sin\theta} z_1,
        \qquad \cos\theta = \frac{z_0 \cdot z_1}{\lVert z_0 \rVert \lVert z_1 \rVert}.

    For ``|z0| = |z1|`` the path stays on that sphere and the angle to ``z0`` grows linearly,
    ``t theta``. The angle is computed in float64 as ``atan2(|u1 - (u0.u1) u0|, u0.u1)`` of the
    unit vectors (accurate near 0 and pi). Where ``sin theta`` is below ``1e-7`` (parallel or
    antiparallel end points, or a zero vector) the great circle is undefined and :func:`lerp`
    is returned.

    Args:
        z0, z1: ``[d]`` end points.
        t: scalar or ``[T]`` parameters in ``[0, 1]``.

    Returns:
        ``[T, d]``.
    """
    z0, z1, t = _path_args(z0, z1, t)
    a, b, tt = z0.double(), z1.double(), t.double()
    n0, n1 = torch.linalg.vector_norm(a), torch.linalg.vector_norm(b)
    if n0 == 0 or n1 == 0:
        return lerp(z0, z1, t)
    u0, u1 = a / n0, b / n1
    cos = torch.dot(u0, u1)
    sin = torch.linalg.vector_norm(u1 - cos * u0)  # accurate near 0 and pi, unlike arccos
    theta = torch.atan2(sin, cos)
    s = torch.sin(theta)
    if s < _SLERP_EPS:
        return lerp(z0, z1, t)
    w0 = torch.sin((1 - tt) * theta) / s
    w1 = torch.sin(tt * theta) / s
    return (w0[:, None] * a + w1[:, None] * b).to(z0.dtype)


def group_slice(sizes, group: str) -> slice:
    """Latent indices of ``group`` (one of :data:`GROUPS`) for
    :class:`~gnn_truss.nn.vae.LatentSizes` ``sizes``."""
    if group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}, got {group!r}")
    t, s, g = sizes.topology, sizes.shared, sizes.geometry
    start = {"topology": 0, "shared": t, "geometry": t + s}[group]
    return slice(start, start + {"topology": t, "shared": s, "geometry": g}[group])


@torch.no_grad()
def axis_sensitivity(model, mu, group: str, span: float = 3.0, steps: int = 7) -> torch.Tensor:
    r"""How much the decoded lattice changes along each latent axis of ``group``.

    For axis ``k`` the decoder is run at ``mu + a e_k`` for ``steps`` values ``a`` in
    ``[-span, span]``; the sensitivity is the total variation of the decoder output along that
    path, :math:`\sum_m \lVert p_{m+1} - p_m \rVert_1 + \lVert o_{m+1} - o_m \rVert_1`, with
    ``p`` the 351 edge probabilities and ``o`` the 27 offsets.

    Args:
        model: a :class:`~gnn_truss.nn.TrussVAE`.
        mu: ``[d]`` start point.
        group: one of :data:`GROUPS`.

    Returns:
        ``[size of the group]`` sensitivities (an empty group gives an empty tensor).
    """
    sl = group_slice(model.sizes, group)
    n = sl.stop - sl.start
    mu = torch.as_tensor(mu, dtype=torch.float32).reshape(-1)
    if n == 0:
        return torch.zeros(0)
    a = torch.linspace(-span, span, steps)
    z = mu.repeat(n, steps, 1)  # [n, steps, d]
    z[torch.arange(n), :, sl.start + torch.arange(n)] += a
    logits, offsets = model.decode(z.reshape(-1, len(mu)).to(_device(model)))
    out = torch.cat([torch.sigmoid(logits), offsets], dim=-1).cpu().reshape(n, steps, -1)
    return (out[:, 1:] - out[:, :-1]).abs().sum(dim=(1, 2))


@dataclass
class LatentPath:
    """Lattices decoded along a path in latent space, with their FE properties.

    Attributes:
        t: ``[T]`` path parameter (interpolation: ``alpha`` in ``[0, 1]``; traversal: shift of
            the latent coordinate from the lattice's mean, prior standard deviations).
        z: ``[T, d]`` latent vectors.
        raw: decoded lattices before repair.
        trusses: lattices after :func:`light_repair` (``raw`` when repair is off).
        repaired: ``[T]`` bool, repair changed the lattice.
        violations: violated :data:`~gnn_truss.truss.RULES` of each lattice (after repair).
        status: ``"ok"`` or the reason there is no stiffness: ``"invalid"``, an FE
            :class:`~gnn_truss.fe.homogenization.Status` value, or ``"unverified"`` (valid, FE
            skipped).
        messages: detail of each status.
        C: ``[T, 6, 6]`` FE stiffness, units of ``E_s``, NaN where status is not ``"ok"``.
        properties: name -> ``[T]`` (stiffness components and
            :func:`gnn_truss.properties.all_properties`), NaN where not ``"ok"``.
        meta: how the path was made (method, group, dim, ...).
    """

    t: np.ndarray
    z: np.ndarray
    raw: list
    trusses: list
    repaired: np.ndarray
    violations: list
    status: list
    messages: list
    C: np.ndarray
    properties: dict
    meta: dict = field(default_factory=dict)

    @property
    def ok(self) -> np.ndarray:
        """``[T]`` bool: FE stiffness available."""
        return np.array([s == "ok" for s in self.status], dtype=bool)

    def __len__(self) -> int:
        return len(self.t)

    def records(self) -> list[dict]:
        """One plain dict per step (JSON-ready; NaN as ``None``)."""
        out = []
        for k in range(len(self)):
            row = {"step": k, "t": float(self.t[k]), "status": self.status[k],
                   "message": self.messages[k], "repaired": bool(self.repaired[k]),
                   "violations": list(self.violations[k]),
                   "num_beams": self.trusses[k].num_edges,
                   "num_beams_raw": self.raw[k].num_edges}
            for name, v in self.properties.items():
                row[name] = float(v[k]) if np.isfinite(v[k]) else None
            out.append(row)
        return out


def _fe_labels(trusses, violations, fe: bool, density: float, workers: int | None):
    """Status, message and ``C [T, 6, 6]`` of lattices whose violations are known."""
    from .fe.homogenization import homogenize_batch
    T = len(trusses)
    status = ["invalid" if v else ("ok" if fe else "unverified") for v in violations]
    msgs = ["violates " + ", ".join(v) if v else "" for v in violations]
    C = np.full((T, 6, 6), np.nan)
    todo = [k for k in range(T) if status[k] == "ok"]
    if todo:
        res = homogenize_batch([trusses[k] for k in todo], density=density, workers=workers)
        for j, k in enumerate(todo):
            status[k] = str(res.status[j])
            msgs[k] = res.messages[j] if j < len(res.messages) else ""
            if status[k] == "ok":
                C[k] = res.C[j]
    return status, msgs, C


def _properties(C: np.ndarray, ok: np.ndarray) -> dict:
    from .fe.homogenization import stiffness_vector
    from .properties import all_properties
    T = len(C)
    props = {n: np.full(T, np.nan) for n in PATH_PROPERTIES}
    for k in np.flatnonzero(ok):
        for n, v in zip(STIFFNESS_NAMES, stiffness_vector(C[k])):
            props[n][k] = v
        try:
            for n, v in all_properties(C[k]).items():
                props[n][k] = float(v)
        except ValueError as exc:  # a numerically singular C slipped through
            log.warning("properties of step %d: %s", k, exc)
    return props


def evaluate_path(model, z, t, repair: bool = True, fe: bool = True, density: float = 0.15,
                  workers: int | None = 1, threshold: float = 0.5,
                  meta: dict | None = None, fit_lengths: bool = True) -> LatentPath:
    """Decode ``z [T, d]``, repair (optional), validate and FE-label every lattice.

    Args:
        model: a :class:`~gnn_truss.nn.TrussVAE`.
        z: ``[T, d]`` latent vectors.
        t: ``[T]`` path parameters stored with them.
        repair: apply :func:`light_repair`.
        fe: run linear FE homogenization on the valid lattices.
        density: relative density of the FE model (0.15).
        workers: FE worker processes (1; ``None``: all cores).
        threshold: adjacency probability threshold (0.5).
        meta: stored in :attr:`LatentPath.meta`.
        fit_lengths: the repair also shortens beams longer than ``sqrt(3)/2`` by moving their
            nodes (:func:`light_repair`, ``fit_lengths``). (default: ``True``)
    """
    z = torch.as_tensor(z, dtype=torch.float32)
    raw = decode_latents(model, z, threshold=threshold)
    trusses, repaired = [], []
    for tr in raw:
        fixed, rep = light_repair(tr, fit_lengths=fit_lengths) if repair \
            else (tr, RepairReport())
        trusses.append(fixed)
        repaired.append(rep.changed)
    violations = [tr.validate() for tr in trusses]
    status, msgs, C = _fe_labels(trusses, violations, fe, density, workers)
    ok = np.array([s == "ok" for s in status], dtype=bool)
    return LatentPath(t=np.asarray(t, dtype=np.float64).reshape(-1), z=z.numpy().copy(),
                      raw=raw, trusses=trusses, repaired=np.array(repaired, dtype=bool),
                      violations=violations, status=status, messages=msgs, C=C,
                      properties=_properties(C, ok),
                      meta={"repair": repair, "fit_lengths": bool(repair and fit_lengths),
                            "fe": fe, "density": density, "threshold": threshold,
                            **(meta or {})})


def _check_steps(steps: int) -> int:
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 2:
        raise ValueError(f"steps must be an integer >= 2, got {steps!r}")
    return int(steps)


def interpolate(model, a: Truss, b: Truss, steps: int = 7, method: str = "slerp",
                refine_steps: int = 0, **kwargs) -> LatentPath:
    """Lattices along a latent path between the means of lattices ``a`` and ``b``.

    ``t = linspace(0, 1, steps)``; ``z(t)`` by :func:`slerp` (default, as the paper) or
    :func:`lerp` between ``mu(a)`` and ``mu(b)`` (:func:`encode_lattice`). The first and last
    lattices are the model's reconstructions of ``a`` and ``b``.

    Args:
        model: a :class:`~gnn_truss.nn.TrussVAE`.
        a, b: end lattices.
        steps: number of points including both ends (>= 2).
        method: ``"slerp"`` or ``"linear"``.
        refine_steps: refine both end latents (:func:`encode_lattices`) so that the ends
            decode to ``a`` and ``b`` themselves. (default: 0)
        **kwargs: passed to :func:`evaluate_path` (``repair``, ``fe``, ``density``, ...).

    Returns:
        :class:`LatentPath` with ``meta = {"method": ...}``.
    """
    steps = _check_steps(steps)
    if method not in ("slerp", "linear"):
        raise ValueError(f"method must be 'slerp' or 'linear', got {method!r}")
    mu = encode_lattices(model, [a, b], refine_steps)
    t = np.linspace(0.0, 1.0, steps)
    z = (slerp if method == "slerp" else lerp)(mu[0], mu[1], torch.from_numpy(t).float())
    z[0], z[-1] = mu[0], mu[1]  # exact end points despite round-off
    return evaluate_path(model, z, t, meta={"kind": "interpolation", "method": method,
                                            "refine_steps": refine_steps}, **kwargs)


def traverse(model, truss: Truss, group: str, dim: int | None = None, span: float = 3.0,
             steps: int = 7, refine_steps: int = 0, **kwargs) -> LatentPath:
    """Lattices along one latent axis through the mean of ``truss`` (Zheng et al. 2023,
    Fig. 3).

    ``z(a) = mu + a e_k`` for ``a`` in ``linspace(-span, span, steps)`` (prior standard
    deviations), ``k`` the ``dim``-th coordinate of ``group``; all other coordinates stay at
    ``mu``. By default ``dim`` is the axis of the group along which the decoded lattice changes
    most (:func:`axis_sensitivity`).

    Args:
        model: a :class:`~gnn_truss.nn.TrussVAE`.
        truss: start lattice.
        group: ``"topology"``, ``"shared"`` or ``"geometry"``.
        dim: index inside the group (0-based) or ``None``.
        span: largest shift, prior standard deviations (> 0).
        steps: number of points (>= 2; odd counts include ``mu`` itself).
        refine_steps: refine the start latent (:func:`encode_lattices`) so that it decodes
            to ``truss`` itself. (default: 0)
        **kwargs: passed to :func:`evaluate_path`.

    Returns:
        :class:`LatentPath` (``t`` = the shifts ``a``) with ``meta`` holding ``group``,
        ``dim``, the absolute latent index ``latent_index``, ``span`` and the sensitivities.
    """
    steps = _check_steps(steps)
    sl = group_slice(model.sizes, group)
    size = sl.stop - sl.start
    if size == 0:
        raise ValueError(f"the model has no {group} latent dimensions")
    if not (isinstance(span, (int, float)) and math.isfinite(span) and span > 0):
        raise ValueError(f"span must be a positive finite number, got {span!r}")
    mu = encode_lattice(model, truss, refine_steps)
    sens = axis_sensitivity(model, mu, group, span, steps)
    if dim is None:
        dim = int(torch.argmax(sens))
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or not 0 <= dim < size:
        raise ValueError(f"dim must be an integer in 0..{size - 1} for the {group} group "
                         f"({size} dims), got {dim!r}")
    k = sl.start + int(dim)
    a = np.linspace(-span, span, steps)
    z = mu.repeat(steps, 1)
    z[:, k] = mu[k] + torch.from_numpy(a).float()
    return evaluate_path(model, z, a,
                         meta={"kind": "traversal", "group": group, "dim": int(dim),
                               "latent_index": k, "span": float(span),
                               "mu_k": float(mu[k]),
                               "sensitivity": [float(v) for v in sens]}, **kwargs)


# --------------------------------------------------------------------------- sampling

@dataclass
class SampleResult:
    """Lattices decoded from prior samples (see :func:`sample`).

    Attributes:
        z: ``[n, d]`` latent samples.
        raw: decoded lattices; ``lattices``: after repair (``raw`` when repair is off).
        connected: ``[n]`` bool, the raw lattice is one connected component (paper validity).
        valid: ``[n]`` bool, the final lattice is strictly valid (rules + FE).
        status: ``[n]`` ``"ok"``, ``"empty"``, ``"invalid"`` or an FE status, of the final
            lattice; ``messages`` the details.
        C: ``[n, 6, 6]`` FE stiffness of the final lattices, NaN unless ``"ok"``.
        report: the summary dict (see :func:`sample`).
    """

    z: np.ndarray
    raw: list
    lattices: list
    connected: np.ndarray
    valid: np.ndarray
    status: list
    messages: list
    C: np.ndarray
    report: dict


def _connected(t: Truss) -> bool:
    """Paper validity: at least one beam, and the used nodes form one connected component."""
    return t.num_edges > 0 and num_components(ds.NUM_NODES, t.edges, np.flatnonzero(t.used)) == 1


def _validity_block(trusses, connected, violations, fe_ok) -> dict:
    n = len(trusses)
    connected = int(np.sum(connected))
    rules_ok = [not v for v in violations]
    strict = sum(r and f for r, f in zip(rules_ok, fe_ok))
    counts: dict = {}
    for v in violations:
        for r in v:
            counts[r] = counts.get(r, 0) + 1
    return {"num_connected": int(connected), "validity_paper": connected / n,
            "num_rules_ok": int(sum(rules_ok)), "num_valid": int(strict),
            "validity_strict": strict / n, "violations": counts,
            "mean_beams": float(np.mean([t.num_edges for t in trusses]))}


def _repair_counts(reps) -> dict:
    return {"num_changed": int(sum(r.changed for r in reps)),
            "dangling_nodes_removed": int(sum(len(r.dangling_nodes) for r in reps)),
            "component_nodes_removed": int(sum(len(r.component_nodes) for r in reps)),
            "beams_removed": int(sum(len(r.removed_edges) for r in reps)),
            "num_multi_component": int(sum(r.num_components > 1 for r in reps)),
            "long_beams_removed": int(sum(len(r.long_edges) for r in reps)),
            "offsets_fitted": int(sum(r.offset_shift > 0 for r in reps)),
            "offsets_pulled": int(sum(r.fit == "pulled" for r in reps)),
            "mean_offset_shift": float(np.mean([r.offset_shift for r in reps
                                                if r.offset_shift > 0] or [0.0]))}


def _diversity(good, train_hashes, train_topologies) -> dict:
    """Uniqueness and novelty of the strictly valid lattices ``good``."""
    canon = {t.canonical_hash() for t in good}
    topo = {topology_hash(t) for t in good}
    novel = None if train_hashes is None else len(canon - set(train_hashes))
    novel_t = None if train_topologies is None else len(topo - set(train_topologies))
    return {"num_valid": len(good), "num_unique": len(canon),
            "num_unique_topologies": len(topo),
            "uniqueness": len(canon) / len(good) if good else None,
            "num_novel": novel,
            "novelty": None if novel is None or not canon else novel / len(canon),
            "num_novel_topologies": novel_t,
            "novelty_topology": None if novel_t is None or not topo else novel_t / len(topo)}


@torch.no_grad()
def sample(model, n: int = 1000, seed: int = 0, repair: bool = True, train_hashes=None,
           fe: bool = True, train_topologies=None, threshold: float = 0.5,
           density: float = 0.15, workers: int | None = 1,
           constrained: bool = False, fit_lengths: bool = True) -> SampleResult:
    r"""Decode ``n`` samples :math:`z \sim N(0, I)` and measure their quality.

    Validity (``SPEC.md`` section 6), each before and after :func:`light_repair`:

    * paper: the used nodes and beams form one connected component (at least one beam);
    * strict: :meth:`Truss.validate` passes and (``fe``) linear FE homogenization gives a
      finite positive-definite stiffness.

    Of the strictly valid final lattices: uniqueness = distinct canonical hashes / valid;
    novelty = share of the distinct ones whose canonical hash (beams + offsets rounded to 1e-6)
    is not in ``train_hashes``; topology novelty = share whose beams alone
    (:func:`topology_hash`) are not in ``train_topologies``. After repair every non-empty
    lattice is connected, so the paper validity after repair mostly counts non-empty decodes.

    Args:
        model: a :class:`~gnn_truss.nn.TrussVAE`.
        n: number of samples.
        seed: seed of the ``torch.Generator`` (CPU) drawing ``z``.
        repair: apply :func:`light_repair` (the report always has the raw numbers too).
        train_hashes, train_topologies: hash sets of the training lattices
            (:func:`corpus_hashes`); ``None`` skips that novelty.
        fe: FE check for strict validity.
        threshold: adjacency probability threshold (0.5).
        density: relative density of the FE model.
        workers: FE worker processes.
        constrained: decode with the topology constraint (:func:`decode_latents`); the
            ``raw`` block then describes those decodes.
        fit_lengths: the repair also shortens beams longer than ``sqrt(3)/2`` by moving their
            nodes to the nearest admissible offsets (:func:`light_repair`). Prior samples break
            that rule more often than any other. (default: ``True``)

    Returns:
        :class:`SampleResult`; ``report`` has the settings, the ``raw`` and ``repaired``
        validity blocks (``None`` without repair), ``repair_counts``, ``num_valid``,
        ``num_unique``, ``uniqueness``, ``num_novel``, ``novelty``, ``novelty_topology``,
        ``status`` (final status -> count) and a ``summary``.
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    model.eval()
    gen = torch.Generator().manual_seed(int(seed))
    z = torch.randn(int(n), model.sizes.total, generator=gen)
    raw = decode_latents(model, z, threshold=threshold, constrained=constrained)
    raw_viol = [t.validate() for t in raw]
    if repair:
        from .progress import progress_bar
        fixed = [light_repair(t, fit_lengths=fit_lengths)
                 for t in progress_bar(iterable=raw, desc="repair", unit="lattice",
                                       disable=len(raw) < _REPAIR_BAR_MIN)]
        final = [f[0] for f in fixed]
        reps = [f[1] for f in fixed]
        fin_viol = [rv if not rp.changed else t.validate()
                    for t, rv, rp in zip(final, raw_viol, reps)]
    else:
        final, reps, fin_viol = raw, [RepairReport()] * len(raw), raw_viol
    status, msgs, C = _fe_labels(final, fin_viol, fe, density, workers)
    for k, t in enumerate(final):
        if t.num_edges == 0:
            status[k], msgs[k] = "empty", "no beams"
    fin_ok = [s == "ok" or s == "unverified" for s in status]
    # a raw lattice that passes validate() is left unchanged by the repair: same FE result
    raw_fe_ok = [fo and not rp.changed for fo, rp in zip(fin_ok, reps)]
    raw_conn = np.array([_connected(t) for t in raw], dtype=bool)
    raw_block = _validity_block(raw, raw_conn, raw_viol, raw_fe_ok)
    fin_block = _validity_block(final, [_connected(t) for t in final], fin_viol, fin_ok) \
        if repair else None
    valid = np.array([not v and ok for v, ok in zip(fin_viol, fin_ok)], dtype=bool)
    report = {"num_samples": int(n), "seed": int(seed), "threshold": threshold,
              "constrained": bool(constrained), "repair": repair,
              "fit_lengths": bool(repair and fit_lengths), "fe_check": fe, "density": density,
              "raw": raw_block, "repaired": fin_block, "repair_counts": _repair_counts(reps),
              **_diversity([final[k] for k in np.flatnonzero(valid)], train_hashes,
                           train_topologies)}
    report["status"] = {s: status.count(s) for s in sorted(set(status))}
    final_block = fin_block or raw_block
    report["summary"] = {
        "validity_paper_raw": raw_block["validity_paper"],
        "validity_strict_raw": raw_block["validity_strict"],
        "validity_paper_repaired": None if fin_block is None else fin_block["validity_paper"],
        "validity_strict_repaired": None if fin_block is None else fin_block["validity_strict"],
        "uniqueness": report["uniqueness"], "novelty": report["novelty"],
        "novelty_topology": report["novelty_topology"],
        "mean_beams": final_block["mean_beams"]}
    return SampleResult(z=z.numpy(), raw=raw, lattices=final, connected=raw_conn, valid=valid,
                        status=status, messages=msgs, C=C, report=report)


def corpus_fingerprint(corpus, target: str = "stiffness", limit: int | None = None) -> str:
    """The dataset fingerprint that :class:`~gnn_truss.dataset.TrussDataset` stores for the
    first ``limit`` lattices of ``corpus`` with training target ``target`` (SHA-1 of the packed
    adjacency, the offsets and the labels), to check that a corpus is the one a checkpoint was
    trained on."""
    c = corpus if limit is None else corpus.subset(slice(0, limit))
    labels = c.stiffness if target == "stiffness" else c.curve
    if labels is None:
        raise ValueError(f"corpus has no '{target}' labels")
    h = hashlib.sha1(c.adj.tobytes())
    h.update(np.ascontiguousarray(c.offset).tobytes())
    h.update(np.ascontiguousarray(labels).tobytes())
    return h.hexdigest()


def fingerprint_prefix(corpus, fingerprint: str, target: str = "stiffness",
                       budget_s: float = 5.0, first: int | None = None) -> int | None:
    """The number ``N`` of first lattices of ``corpus`` whose fingerprint
    (:func:`corpus_fingerprint`) is ``fingerprint``, or ``None``: how a checkpoint trained
    before its corpus grew finds its data again (``data.limit: N``).

    ``first``, the number of lattices a checkpoint records it was trained on
    (``num_lattices``, which :func:`gnn_truss.training.train` saves), is tried first and
    returned when that prefix has the fingerprint. Otherwise, as for checkpoints that do not
    record it: corpora grow by whole shards, so the candidates are the ends of the shards
    recorded in ``corpus.meta["shards"]`` (their ``labelled`` counts, in shard order) and the
    whole corpus. Packing drops lattices repeated across shards, which moves the ends after a
    repeat down by up to the number dropped (the labelled total minus ``len(corpus)``), so
    each end is tried with those shifts too. Candidates are hashed from the last one down
    until ``budget_s`` seconds have passed (all 297 shard ends of the shipped curve corpus
    take 0.7 s). A corpus without ``target`` labels gives ``None``, and so does one without a
    shard record unless ``first`` matched.
    """
    labels = corpus.stiffness if target == "stiffness" else corpus.curve
    if labels is None:
        return None
    if first is not None and 0 < int(first) <= len(corpus) and \
            corpus_fingerprint(corpus, target, int(first)) == fingerprint:
        return int(first)
    shards = (corpus.meta or {}).get("shards")
    if not isinstance(shards, dict):
        return None
    try:
        counts = [int(shards[k]["labelled"]) for k in sorted(shards, key=int)]
    except (KeyError, TypeError, ValueError):
        return None
    n_all = len(corpus)
    dropped = max(0, int(np.sum(counts)) - n_all)
    cands = {n_all}
    for end in np.cumsum(counts):
        cands.update(int(end) - k for k in range(dropped + 1))
    deadline = time.monotonic() + budget_s
    for n in sorted((n for n in cands if 0 < n <= n_all), reverse=True):
        if corpus_fingerprint(corpus, target, n) == fingerprint:
            return n
        if time.monotonic() > deadline:
            break
    return None
