r"""Symmetries of the cubic design space (axis permutations and mirror reflections), and
training-data augmentation by them.

The octant grid ``{0, 0.5, 1}^3`` (:mod:`gnn_truss.design_space`) is mapped onto itself by
every permutation of the three axes, so relabelling the axes of a lattice gives another lattice
of the design space. Its physics follows exactly: with :math:`x'_a = x_{p(a)}` the effective
stiffness transforms as a fourth-order tensor,
:math:`\mathbb{C}'_{abcd} = \mathbb{C}_{p(a)p(b)p(c)p(d)}`, which for the 9 orthotropic
components (C11, C12, C13, C22, C23, C33, C44, C55, C66) is a re-indexing, e.g. swapping x and
y swaps C11 <-> C22, C13 <-> C23 and C44 <-> C55. A compression curve along z is unchanged by
the permutations that keep z (identity and the x <-> y swap) and is undefined for the others.

The grid is also mapped onto itself by the mirror reflection ``x_a -> 1 - x_a`` of any axis
``a`` (a free offset dof, at grid value 0.5, changes sign; the offset range ``[-0.5, 0.5]`` is
symmetric). The lattice in the cell ``[-1, 1]^3`` is mirror-symmetric about ``x_a = 0`` and,
being periodic with period 2, about ``x_a = 1`` too; so reflecting its octant about
``x_a = 1/2`` gives the same infinite lattice translated by one octant along ``a``. Its
effective stiffness and its compression curves are therefore unchanged: the 9 orthotropic
components carry every index an even number of times, so no sign flips either. With the
permutations this is the full symmetry group of the cube, 48 elements, of which 16 keep the z
loading axis of a curve.

So every labelled lattice stands for up to 48 (stiffness) or 16 (curve) labelled lattices, and
:class:`RandomAxisPermutation` draws one of them each time a training graph is read (the
permutations only, 6 or 2, unless ``mirrors=True``): the predictor then sees the symmetry of
the physics rather than having to learn it from data.

The same symmetries make a prediction exactly invariant at test time:
:func:`symmetrised_prediction` runs a model on every symmetric copy of a lattice, maps each
predicted label back to the lattice's own axes and averages them (the group average of the
predictor; a model that is only approximately invariant gets better on average, and costs a
forward pass per symmetry). :func:`symmetrised_outputs` does the same for the reconstruction:
the adjacency logits and offsets of every copy, mapped back and averaged, are an exactly
equivariant self-ensemble of the autoencoder. :func:`symmetrised_dense_prediction` averages a
graph predictor alone over the copies of dense lattices (:func:`permute_dense`), and
:func:`symmetrised_decoded_prediction` applies it to the lattice a model decodes from a latent:
one encoder and decoder pass, an exactly invariant property predictor.

A permutation ``p`` is a tuple of the axes ``(0, 1, 2)``; :data:`AXIS_PERMUTATIONS` lists all 6
(identity first), :data:`Z_PRESERVING` the 2 that keep z. A reflection ``flip`` is a tuple of
3 flags ``(0 or 1)``, applied after the permutation: ``x'_a = 1 - x_{p[a]}`` where
``flip[a]``, else ``x'_a = x_{p[a]}``; :data:`MIRRORS` lists all 8 (identity first).
"""
from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
import torch
from torch_geometric.data import Batch
from torch_geometric.transforms import BaseTransform
from torch_geometric.utils import coalesce

from . import design_space as ds
from .graph import FEATURE_SLICES, NUM_NODE_FEATURES
from .truss import Truss

__all__ = ["AXIS_PERMUTATIONS", "Z_PRESERVING", "MIRRORS", "node_map", "free_dof_map", "pair_map",
           "stiffness_map", "permute_truss", "permute_stiffness", "permute_data",
           "allowed_permutations", "allowed_symmetries", "RandomAxisPermutation",
           "SYMMETRISATIONS", "check_symmetrise", "symmetrised_outputs",
           "symmetrised_prediction", "canonical_keys"]

#: All 6 permutations of the axes ``(x, y, z) = (0, 1, 2)``, identity first.
AXIS_PERMUTATIONS: tuple[tuple[int, int, int], ...] = tuple(itertools.permutations(range(3)))
#: The permutations that keep the z axis (valid for z-compression curves).
Z_PRESERVING: tuple[tuple[int, int, int], ...] = ((0, 1, 2), (1, 0, 2))
#: All 8 mirror reflections ``flip`` (flags of the reflected axes ``x_a -> 1 - x_a``), identity
#: first.
MIRRORS: tuple[tuple[int, int, int], ...] = tuple(itertools.product((0, 1), repeat=3))

# (normal, normal) index pairs of C11..C33 and the axis pairs of the shears C44, C55, C66
_NORMAL = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))
_SHEAR = ((1, 2), (0, 2), (0, 1))


def _check_perm(perm) -> tuple[int, int, int]:
    try:
        p = tuple(int(a) for a in perm)
    except (TypeError, ValueError):
        raise ValueError(f"an axis permutation is a permutation of (0, 1, 2), got {perm!r}") \
            from None
    if sorted(p) != [0, 1, 2]:
        raise ValueError(f"an axis permutation is a permutation of (0, 1, 2), got {perm!r}")
    return p


def _check_flip(flip) -> tuple[int, int, int]:
    if flip is None:
        return (0, 0, 0)
    try:
        f = tuple(flip)
        ok = len(f) == 3 and all(a in (0, 1) for a in f)
    except (TypeError, ValueError):  # not a sequence, or of arrays
        ok = False
    if not ok:
        raise ValueError(f"a reflection is 3 flags (0 or 1) of the reflected axes, got {flip!r}")
    return tuple(int(a) for a in f)


def _signs(f: tuple[int, int, int]) -> np.ndarray:
    """``[3]`` float: -1 on the reflected axes, +1 on the others."""
    return 1.0 - 2.0 * np.asarray(f, dtype=np.float64)


@lru_cache(maxsize=None)
def _maps(p: tuple[int, int, int], f: tuple[int, int, int] = (0, 0, 0)):
    grid_index = {tuple(g): i for i, g in enumerate(ds.NODE_GRID.tolist())}
    new_grid = ds.NODE_GRID[:, list(p)]
    new_grid = np.where(np.asarray(f, dtype=bool), 1.0 - new_grid, new_grid)  # exact: 0, .5, 1
    nodes = np.array([grid_index[tuple(g)] for g in new_grid.tolist()])
    inv_axis = np.argsort(p)  # new axis a' of old axis a: p[a'] = a
    dof_index = {(int(n), int(a)): k for k, (n, a) in enumerate(zip(ds.FREE_DOF_NODE,
                                                                     ds.FREE_DOF_AXIS))}
    dofs = np.array([dof_index[(int(nodes[n]), int(inv_axis[a]))]
                     for n, a in zip(ds.FREE_DOF_NODE, ds.FREE_DOF_AXIS)])
    pair_index = {(int(i), int(j)): t for t, (i, j) in enumerate(zip(ds.TRIU_I, ds.TRIU_J))}
    pairs = np.array([pair_index[tuple(sorted((int(nodes[i]), int(nodes[j]))))]
                      for i, j in zip(ds.TRIU_I, ds.TRIU_J)])
    normal = {tuple(sorted(q)): k for k, q in enumerate(_NORMAL)}
    shear = {q: 6 + k for k, q in enumerate(_SHEAR)}
    comps = [normal[tuple(sorted((p[a], p[b])))] for a, b in _NORMAL]
    comps += [shear[tuple(sorted((p[a], p[b])))] for a, b in _SHEAR]
    # sign of each old free dof's value in the new lattice: that of its new axis
    dof_signs = _signs(f)[inv_axis[ds.FREE_DOF_AXIS]]
    out = tuple(np.asarray(m, dtype=np.int64) for m in (nodes, dofs, pairs, comps))
    out = out + (dof_signs,)
    for m in out:
        m.setflags(write=False)
    return out


def node_map(perm, flip=None) -> np.ndarray:
    """``[27]`` int: the new index of each old node (old node ``i`` at grid point ``g`` goes to
    the node at ``g[list(perm)]``, reflected to ``1 - g'_a`` on the axes ``a`` of ``flip``)."""
    return _maps(_check_perm(perm), _check_flip(flip))[0]


def free_dof_map(perm, flip=None) -> np.ndarray:
    """``[27]`` int: the new index of each old free offset dof (design-space dof order); a
    reflection changes the sign of the dofs along its axes, not their order."""
    return _maps(_check_perm(perm), _check_flip(flip))[1]


def pair_map(perm, flip=None) -> np.ndarray:
    """``[351]`` int: the new upper-triangle index of each old node pair."""
    return _maps(_check_perm(perm), _check_flip(flip))[2]


def stiffness_map(perm) -> np.ndarray:
    """``[9]`` int ``src``: permuted stiffness vector = ``C9[..., src]`` (reflections leave the
    9 orthotropic components unchanged)."""
    return _maps(_check_perm(perm))[3]


def permute_stiffness(c9, perm):
    """Stiffness components ``[..., 9]`` (numpy or torch) of the axis-permuted lattice."""
    return c9[..., stiffness_map(perm)]


def permute_truss(truss: Truss, perm, flip=None) -> Truss:
    """The lattice with its axes permuted, ``x'_a = x_{perm[a]}`` for every node position, then
    reflected, ``x'_a -> 1 - x'_a``, on the axes where ``flip`` is 1 (default: none)."""
    f = _check_flip(flip)
    nodes = node_map(perm, f)
    p = list(_check_perm(perm))
    adj = np.zeros_like(truss.adjacency)
    adj[np.ix_(nodes, nodes)] = truss.adjacency
    offsets = np.zeros_like(truss.offsets)
    offsets[nodes] = truss.offsets[:, p] * _signs(f)
    return Truss(adj, offsets)


@lru_cache(maxsize=None)
def _stacked(ops: tuple) -> dict:
    """The maps of every symmetry ``(perm, flip)`` in ``ops`` stacked along a leading dim, as
    torch tensors: node map and its inverse, column orders, scales and shifts of ``x`` /
    ``pos`` / ``edge_attr``, free-dof map and signs, pair and stiffness maps."""
    maps = [_maps(p, f) for p, f in ops]
    perms = [p for p, _ in ops]
    out = {name: torch.stack([torch.from_numpy(m[i].copy()) for m in maps])
           for i, name in enumerate(("nodes", "dofs", "pairs", "comps", "dof_signs"))}
    out["inv"] = torch.argsort(out["nodes"], dim=1)
    signs = torch.as_tensor(np.stack([_signs(f) for _, f in ops]))  # [K, 3] float64
    cols = torch.arange(NUM_NODE_FEATURES).repeat(len(ops), 1)
    scale = torch.ones(len(ops), NUM_NODE_FEATURES, dtype=torch.float64)
    shift = torch.zeros(len(ops), NUM_NODE_FEATURES, dtype=torch.float64)
    for name in ("grid", "offset", "free"):
        s = FEATURE_SLICES[name]
        cols[:, s] = torch.as_tensor([[s.start + a for a in p] for p in perms])
    scale[:, FEATURE_SLICES["grid"]] = signs  # grid g -> 1 - g on a reflected axis
    shift[:, FEATURE_SLICES["grid"]] = (1.0 - signs) / 2.0
    scale[:, FEATURE_SLICES["offset"]] = signs  # offset u -> -u
    out["cols"], out["x_scale"], out["x_shift"] = cols, scale, shift
    out["signs"] = signs
    out["axes"] = torch.as_tensor(perms)
    out["edge_cols"] = torch.cat([torch.zeros(len(ops), 1, dtype=torch.long),
                                  1 + out["axes"]], dim=1)
    out["edge_scale"] = torch.cat([torch.ones(len(ops), 1, dtype=torch.float64), signs], dim=1)
    return out


def _per_graph(value, B: int, check, what: str) -> list:
    """One ``check``-ed item per graph from a single item or a ``[B]`` sequence of them."""
    try:
        arr = np.asarray(value)
    except ValueError:  # ragged
        arr = np.asarray(None)
    if arr.ndim == 2:
        items = [check(v) for v in arr]
        if len(items) != B:
            raise ValueError(f"got {len(items)} {what} for {B} graphs")
        return items
    return [check(arr if arr.ndim == 1 else value)] * B


def permute_data(data, perm, normalizer=None, target: str = "stiffness", flip=None):
    """The graph(s) of the axis-permuted (and optionally reflected) lattice(s), built from the
    tensors directly (no FE).

    Works on one graph of :func:`gnn_truss.graph.truss_to_data` / a
    :class:`~gnn_truss.dataset.TrussDataset` item, and on a PyG batch of them (every graph has
    27 nodes, so graph ``b`` owns nodes ``27 b .. 27 b + 26``), vectorised over the batch.

    Args:
        data: ``Data`` or ``Batch`` of ``B`` lattice graphs (fields as in :mod:`gnn_truss.graph`).
        perm: one axis permutation for all graphs, or a ``[B]`` sequence of them.
        normalizer: the dataset's :class:`~gnn_truss.dataset.TargetNormalizer`, needed to carry
            a normalised stiffness target ``y`` over (its per-component mean and std differ).
        target: what ``y`` holds, ``"stiffness"`` or ``"curve"``.
        flip: mirror reflection applied after the permutation (module docstring): one
            ``(fx, fy, fz)`` of flags for all graphs or a ``[B]`` sequence of them.
            (default: ``None``, no reflection)

    Returns:
        A new graph / batch (the input is not modified); graph ``b`` equals
        ``truss_to_data(permute_truss(t_b, perm_b, flip_b), ...)`` with the labels permuted
        (reflections leave stiffness and curve labels unchanged). With a stiffness ``target``,
        a known curve of a graph whose permutation moves z becomes NaN (unknown): it does not
        carry over. ``idx`` (the corpus row) is copied and so names the untransformed lattice.

    Raises:
        ValueError: a permutation that moves z with a curve ``target``, a stiffness ``y``
            without ``normalizer``, a malformed permutation or reflection, or graphs that are
            not all of 27 nodes.
    """
    n = int(data.num_nodes)
    if n == 0 or n % ds.NUM_NODES:
        raise ValueError(f"expected lattice graphs of {ds.NUM_NODES} nodes each, got {n} nodes")
    ptr = getattr(data, "ptr", None)
    if ptr is not None and bool((ptr.diff() != ds.NUM_NODES).any()):
        raise ValueError(f"expected lattice graphs of {ds.NUM_NODES} nodes each, got "
                         f"{ptr.diff().tolist()}")
    B = n // ds.NUM_NODES
    perms = _per_graph(perm, B, _check_perm, "permutations")
    flips = _per_graph(flip, B, _check_flip, "reflections")
    moves_z = [p[2] != 2 for p in perms]
    if target == "curve" and any(moves_z):
        bad = perms[moves_z.index(True)]
        raise ValueError(f"axis permutation {bad} moves z: a z-compression curve does not "
                         f"carry over (use one of {Z_PRESERVING})")
    ops = list(zip(perms, flips))
    uniq = tuple(sorted(set(ops)))
    dev = data.x.device
    k = torch.as_tensor([uniq.index(o) for o in ops], device=dev)
    m = {name: t.to(dev) for name, t in _stacked(uniq).items()}
    reflect = any(any(f) for f in flips)
    rows = torch.arange(B, device=dev)[:, None]
    out = data.clone()
    x = data.x.view(B, ds.NUM_NODES, -1)[rows, m["inv"][k]]
    x = torch.gather(x, 2, m["cols"][k][:, None, :].expand_as(x))
    if reflect:
        x = (x.double() * m["x_scale"][k][:, None, :] + m["x_shift"][k][:, None, :]).to(x.dtype)
    out.x = x.reshape(n, -1)
    if getattr(data, "pos", None) is not None:
        pos = data.pos.view(B, ds.NUM_NODES, 3)[rows, m["inv"][k]]
        pos = torch.gather(pos, 2, m["axes"][k][:, None, :].expand_as(pos))
        if reflect:
            s = m["signs"][k][:, None, :]
            pos = (pos.double() * s + (1.0 - s) / 2.0).to(pos.dtype)
        out.pos = pos.reshape(n, 3)
    ei0 = data.edge_index.long()
    g = ei0[0] // ds.NUM_NODES  # graph of each edge
    ei = g * ds.NUM_NODES + m["nodes"][k[g], ei0 % ds.NUM_NODES]
    ea = torch.gather(data.edge_attr, 1, m["edge_cols"][k[g]])
    if reflect:
        ea = (ea.double() * m["edge_scale"][k[g]]).to(ea.dtype)
    ei, out.edge_attr = coalesce(ei, ea, num_nodes=n)
    out.edge_index = ei.to(data.edge_index.dtype)
    out.adj = torch.empty_like(data.adj).scatter_(1, m["pairs"][k], data.adj)
    for key in ("offset", "offset64"):
        v = getattr(data, key, None)
        if v is not None:
            if reflect:
                v = (v.double() * m["dof_signs"][k]).to(v.dtype)
            out[key] = torch.empty_like(v).scatter_(1, m["dofs"][k], v)
    comps = m["comps"][k]
    if getattr(data, "stiffness", None) is not None:
        out.stiffness = torch.gather(data.stiffness, 1, comps)
    curve = getattr(data, "curve", None)
    if curve is not None and any(moves_z):
        out.curve = curve.masked_fill(torch.as_tensor(moves_z, device=dev)[:, None],
                                      float("nan"))
    y = getattr(data, "y", None)
    if y is not None and target == "stiffness":
        if normalizer is None:
            raise ValueError("permute_data: a stiffness target y needs the dataset's normalizer")
        mean = torch.as_tensor(normalizer.mean, dtype=torch.float64, device=dev)
        std = torch.as_tensor(normalizer.std, dtype=torch.float64, device=dev)
        y64 = torch.gather(y.double(), 1, comps)
        out.y = ((y64 * std[comps] + mean[comps] - mean) / std).to(y.dtype)
    return out


def _stiffness_back(pred: torch.Tensor, perm) -> torch.Tensor:
    """``[B, 9]`` stiffness predicted for the copy permuted by ``perm`` (whose C9 is
    ``c[..., stiffness_map(perm)]``), put back on the lattice's own axes."""
    return pred[:, torch.as_tensor(np.argsort(stiffness_map(perm)), device=pred.device)]


def require_decoded_predictor(model, what: str) -> None:
    """Raise ``ValueError`` naming ``what`` unless the model's predictor reads the decoded
    lattice (``model.predictor_input: decoded``), which the predictor-only symmetrisation
    needs."""
    kind = getattr(model, "predictor_input", None)
    if kind != "decoded":
        raise ValueError(f"{what}: the predictor reads the latent (model.predictor_input "
                         f"{kind!r}), not the decoded lattice (predictor_input 'decoded'); "
                         f"symmetrise averages the whole model over the copies instead")


def permute_dense(adj: torch.Tensor, offsets: torch.Tensor, perm, flip=None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense lattices mapped by one symmetry, as :func:`permute_truss` maps a truss.

    Args:
        adj: ``[B, 27, 27]`` adjacency or ``[B, 351]`` upper triangles (any values: 0/1,
            probabilities or logits; differentiable).
        offsets: ``[B, 27]`` free-dof offsets.
        perm, flip: the symmetry (:func:`permute_truss`).

    Returns:
        ``(adj, offsets)`` of the transformed lattices, in the input shapes: the entry of node
        pair ``(i, j)`` moved to the pair of the mapped nodes, each free dof to its new dof
        with the reflection's sign.
    """
    nodes, dofs, pairs, _, signs = _maps(_check_perm(perm), _check_flip(flip))
    if offsets.dim() != 2 or offsets.shape[-1] != ds.NUM_FREE_DOFS:
        raise ValueError(f"offsets must be [B, {ds.NUM_FREE_DOFS}], got "
                         f"{tuple(offsets.shape)}")
    dev = offsets.device
    if adj.dim() == 3 and adj.shape[1:] == (ds.NUM_NODES, ds.NUM_NODES):
        inv = torch.as_tensor(np.argsort(nodes), device=dev)
        new_adj = adj[:, inv][:, :, inv]  # new[nodes[i], nodes[j]] = old[i, j]
    elif adj.dim() == 2 and adj.shape[1] == ds.NUM_PAIRS:
        new_adj = adj[:, torch.as_tensor(np.argsort(pairs), device=dev)]
    else:
        raise ValueError(f"adj must be [B, {ds.NUM_NODES}, {ds.NUM_NODES}] or "
                         f"[B, {ds.NUM_PAIRS}], got {tuple(adj.shape)}")
    sign = torch.as_tensor(np.array(signs), dtype=offsets.dtype, device=dev)
    new_off = (offsets * sign)[:, torch.as_tensor(np.argsort(dofs), device=dev)]
    return new_adj, new_off


def symmetrised_dense_prediction(predictor, adj: torch.Tensor, offsets: torch.Tensor,
                                 normalizer, target: str = "stiffness",
                                 symmetrise: str = "axes", features=None) -> torch.Tensor:
    r"""A graph predictor averaged over the symmetric copies of dense lattices:
    :math:`\frac{1}{|G|} \sum_g g^{-1} G(g L)`, exactly invariant (stiffness: equivariant,
    the components re-indexed with the axes).

    Args:
        predictor: a :class:`~gnn_truss.nn.predictor.GraphPropertyPredictor` (its
            ``forward_dense(adj, offsets, features)`` gives normalised properties).
        adj, offsets: ``[B, 27, 27]`` (or ``[B, 351]``) and ``[B, 27]`` dense lattices.
        normalizer: the checkpoint's :class:`~gnn_truss.dataset.TargetNormalizer` (the copies
            are averaged in physical units).
        target: ``"stiffness"`` or ``"curve"`` (the group, :func:`allowed_symmetries`).
        symmetrise: ``"axes"`` (6 or 2 permutations) or ``"axes_mirrors"`` (48 or 16).
        features: ``[B, num_features]`` lattice features for a predictor that reads them;
            they must be invariant under the group (the buckling features of a curve are).

    Returns:
        ``[B, K]`` float64 in physical units (stiffness in ``E_s``), differentiable.
    """
    check_symmetrise(symmetrise)
    if normalizer is None:
        raise ValueError("symmetrised_dense_prediction needs the checkpoint's normalizer")
    ops = allowed_symmetries(target, symmetrise == "axes_mirrors")
    total = None
    for perm, flip in ops:
        a, o = permute_dense(adj, offsets, perm, flip)
        pred = normalizer.inverse(predictor.forward_dense(a, o, features).double())
        if target == "stiffness":
            pred = _stiffness_back(pred, perm)
        total = pred if total is None else total + pred
    return total / len(ops)


def symmetrised_decoded_prediction(model, mu: torch.Tensor, normalizer,
                                   target: str = "stiffness", symmetrise: str = "axes",
                                   features=None) -> torch.Tensor:
    """The prediction of a model whose predictor reads the decoded lattice
    (``model.predictor_input: decoded``), averaged over the symmetric copies of that lattice.

    One decoder pass (:meth:`~gnn_truss.nn.TrussVAE.decode_lattice`, as
    :meth:`~gnn_truss.nn.TrussVAE.predict`), then :func:`symmetrised_dense_prediction`: unlike
    :func:`symmetrised_outputs` no copy is encoded or decoded again, so the reconstruction is
    the one pass's and only the predictor's own symmetry error is averaged out.

    Args:
        model: a :class:`~gnn_truss.nn.TrussVAE` with ``predictor_input="decoded"``.
        mu: ``[B, d]`` latents.
        normalizer, target, symmetrise: as :func:`symmetrised_dense_prediction`.
        features: ``[B, num_features]`` features of the decoded lattices for a predictor that
            reads them (``None``: computed by finite elements,
            :meth:`~gnn_truss.nn.TrussVAE.lattice_features`, once for all copies).

    Returns:
        ``[B, K]`` float64, physical units; with the identity alone it is
        ``normalizer.inverse(model.predict(mu))``.
    """
    require_decoded_predictor(model, "symmetrised_decoded_prediction")
    adj, offsets, _ = model.decode_lattice(mu, near_only=True)
    if model.reads_features and features is None:
        features = model.lattice_features(adj, offsets)
    return symmetrised_dense_prediction(model.predictor, adj, offsets, normalizer, target,
                                        symmetrise, features)


def allowed_permutations(target: str) -> tuple[tuple[int, int, int], ...]:
    """The permutations that carry a ``target`` label over: all 6 for ``"stiffness"``, the 2
    that keep z for ``"curve"``."""
    if target == "stiffness":
        return AXIS_PERMUTATIONS
    if target == "curve":
        return Z_PRESERVING
    raise ValueError(f"target must be 'stiffness' or 'curve', got {target!r}")


def allowed_symmetries(target: str, mirrors: bool = True) -> tuple:
    """The symmetries ``(perm, flip)`` that carry a ``target`` label over: the allowed
    permutations (:func:`allowed_permutations`), each with all 8 reflections if ``mirrors``
    (48 for ``"stiffness"``, 16 for ``"curve"``; identity first) or with none (6 or 2)."""
    flips = MIRRORS if mirrors else (MIRRORS[0],)
    return tuple((p, f) for p in allowed_permutations(target) for f in flips)


def canonical_keys(adj: np.ndarray, offsets: np.ndarray, target: str = "curve",
                   decimals: int = 6) -> list[bytes]:
    """A key of each lattice that is the same for all its copies under the symmetries that
    carry ``target`` over (:func:`allowed_symmetries` with mirrors: 16 for ``"curve"``, 48 for
    ``"stiffness"``): the smallest byte string of the mapped copies' adjacency bits and
    offsets (rounded to ``decimals``). Lattices with equal keys have equal labels.

    Args:
        adj: ``[B, 351]`` upper-triangle adjacency (nonzero = beam).
        offsets: ``[B, 27]`` free-dof offsets.

    Returns:
        ``B`` byte strings.
    """
    a = np.asarray(adj) != 0
    x = np.asarray(offsets, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != ds.NUM_PAIRS or x.shape != (len(a), ds.NUM_FREE_DOFS):
        raise ValueError(f"need adj [B, {ds.NUM_PAIRS}] and offsets [B, {ds.NUM_FREE_DOFS}], "
                         f"got {a.shape} and {x.shape}")
    keys = None
    for perm, flip in allowed_symmetries(target, True):
        _, dofs, pairs, _, signs = _maps(_check_perm(perm), _check_flip(flip))
        xa = np.round(x[:, dofs] * signs, decimals).astype(np.float32) + np.float32(0.0)
        cand = [np.packbits(ai[pairs]).tobytes() + xi.tobytes()
                for ai, xi in zip(a, xa)]
        keys = cand if keys is None else [min(k, c) for k, c in zip(keys, cand)]
    return keys


class RandomAxisPermutation(BaseTransform):
    r"""Relabels the axes of each lattice graph by a permutation drawn uniformly from those its
    target allows (:func:`allowed_permutations`), and with ``mirrors=True`` also reflects it
    by one of the 8 mirror reflections (:data:`MIRRORS`), labels transformed exactly
    (:func:`permute_data`). Apply it to a whole training batch (one draw per graph, vectorised)
    or to single graphs. Draws from torch's global generator, so ``torch.manual_seed`` makes
    it reproducible.

    Args:
        normalizer: the dataset's target normaliser (``dataset.normalizer``).
        target: ``"stiffness"`` (6 permutations, 48 symmetries with mirrors) or ``"curve"``
            (2, 16 with mirrors).
        mirrors: also draw a reflection (default: ``False``).
    """

    def __init__(self, normalizer, target: str = "stiffness", mirrors: bool = False):
        self.normalizer = normalizer
        self.target = target
        self.mirrors = bool(mirrors)
        self.ops = allowed_symmetries(target, self.mirrors)

    def forward(self, data):
        B = int(data.num_nodes) // ds.NUM_NODES
        draw = torch.randint(len(self.ops), (B,)).tolist()
        return permute_data(data, [self.ops[i][0] for i in draw], self.normalizer, self.target,
                            flip=[self.ops[i][1] for i in draw] if self.mirrors else None)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(target={self.target!r}, {len(self.ops)} "
                f"symmetries)")


#: values of ``symmetrise`` of :func:`symmetrised_prediction` (and of the ``--symmetrise`` options
#: of ``gnn-truss evaluate`` / ``compare``): the permutations only, or with the reflections.
SYMMETRISATIONS = ("axes", "axes_mirrors")


def check_symmetrise(symmetrise, allow_none: bool = False) -> None:
    """Raise ``ValueError`` unless ``symmetrise`` is one of :data:`SYMMETRISATIONS` (or
    ``None`` where allowed)."""
    if symmetrise is None and allow_none:
        return
    if symmetrise not in SYMMETRISATIONS:
        extra = "None or " if allow_none else ""
        raise ValueError(f"symmetrise must be {extra}one of {SYMMETRISATIONS}, got "
                         f"{symmetrise!r}")


def symmetrised_outputs(model, data, normalizer, target: str = "stiffness",
                        symmetrise: str = "axes", refine_steps: int | None = None,
                        refine_lr: float = 0.01) -> dict:
    r"""The model's outputs averaged over the symmetric copies of each lattice.

    For every symmetry ``g = (perm, flip)`` that carries the label over
    (:func:`allowed_symmetries`), the model is run on the transformed lattice (latent means, no
    sampling) and each output is mapped back to the lattice's own axes:

    * ``"pred"``: the property prediction in physical units (stiffness: the inverse component
      permutation; curves along z: unchanged);
    * ``"logits"``: the adjacency logits, each node pair's logit read at the pair it went to
      (:func:`pair_map`);
    * ``"offsets"``: the free-dof offsets, each dof read at the dof it went to
      (:func:`free_dof_map`), with the reflection's sign undone.

    Each is the mean over the group, :math:`\frac{1}{|G|} \sum_g g^{-1} f(g x)`: the
    prediction is exactly invariant under ``G`` and the reconstruction exactly equivariant
    (the reconstruction of a transformed lattice is the transformed reconstruction). The
    logits are averaged as logits, so the decoded adjacency (``logit > 0``) is that of the
    geometric mean of the odds: a vote of the copies weighted by their confidence. The result
    is no longer one latent point's decoding; it is the self-ensemble of ``|G|`` passes.

    With ``refine_steps`` each copy's latent mean is first refined on that copy's own
    reconstruction loss (:func:`gnn_truss.nn.vae.refine_latent`) and the outputs are read at the
    refined latent: the self-ensemble of the refined passes, ``|G|`` refinements per lattice.

    Args:
        model: a :class:`~gnn_truss.nn.TrussVAE` (its ``forward(batch, sample=False)`` gives
            ``"pred"`` (normalised), ``"logits"`` and ``"offsets"``), in eval mode.
        data: ``Data`` or ``Batch`` of ``B`` lattice graphs.
        normalizer: the checkpoint's :class:`~gnn_truss.dataset.TargetNormalizer`, or
            ``None`` for the reconstruction only (graphs without a label ``y``; no ``"pred"``).
        target: ``"stiffness"`` or ``"curve"`` (selects the group, see
            :func:`allowed_symmetries`).
        symmetrise: ``"axes"`` (6 or 2 permutations) or ``"axes_mirrors"`` (48 or 16).
        refine_steps: Adam steps of latent refinement per copy (``None`` or 0: the means).
        refine_lr: the refinement's step size.

    Returns:
        ``{"pred": [B, K] float64 (E_s), "logits": [B, 351] float64, "offsets": [B, 27]
        float64}`` (``"pred"`` only with a ``normalizer``).
    """
    check_symmetrise(symmetrise)
    ops = allowed_symmetries(target, symmetrise == "axes_mirrors")
    if not isinstance(data, Batch):  # one graph: the models read batches
        data = Batch.from_data_list([data])
    total: dict = {}
    with torch.no_grad():
        for perm, flip in ops:
            g = permute_data(data, perm, normalizer, target, flip=flip)
            out = model(g, sample=False)
            if refine_steps:
                from .nn.vae import refine_latent
                z = refine_latent(model, out["mu"], g.adj, g.offset, refine_steps, refine_lr)
                logits, offsets = model.decode(z)
                out = {"logits": logits, "offsets": offsets, "pred": model.predict(z)}
            device = out["logits"].device
            _, dofs, pairs, _, signs = (torch.tensor(m, device=device)
                                        for m in _maps(_check_perm(perm), _check_flip(flip)))
            back = {"logits": out["logits"].double()[:, pairs],  # new[pairs[t]] = old[t]
                    "offsets": out["offsets"].double()[:, dofs] * signs}
            if normalizer is not None:
                pred = normalizer.inverse(out["pred"].double())
                if target == "stiffness":  # the copy's C9 is c[..., src]: put it back
                    pred = _stiffness_back(pred, perm)
                back["pred"] = pred
            for k, v in back.items():
                total[k] = v if k not in total else total[k] + v
    return {k: v / len(ops) for k, v in total.items()}


def symmetrised_prediction(model, data, normalizer, target: str = "stiffness",
                           symmetrise: str = "axes"):
    """The ``"pred"`` of :func:`symmetrised_outputs`: the property prediction averaged over
    the symmetric copies of each lattice, ``[B, K]`` float64 in physical units (``E_s``),
    exactly invariant under the group. Arguments as :func:`symmetrised_outputs` (a
    ``normalizer`` is required)."""
    return symmetrised_outputs(model, data, normalizer, target, symmetrise)["pred"]
