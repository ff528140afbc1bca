"""Probe: train on canonically oriented lattices (one of the 48 symmetric copies, chosen by the
smallest canonical key) instead of random copies. Validation is canonicalised the same way, so
its exact match is that of the model f(x) = g^-1 decode(encode(g x)) with g = canon(x).

usage (from the repository root; session 41):
    python datasets/checkpoints/default/probes/encoder_stage/canonical_train.py CONFIG INIT_FROM
with CONFIG configs/default_physloss.yaml, its out: changed, and INIT_FROM
datasets/checkpoints/default/model.pt. The 48 maps are those of gnn_truss.symmetry.permute_data
(a scatter, signs applied first), not the gather of canonical_keys: the key chosen here names the
op that permute_data must apply.
"""
import sys

import numpy as np
import torch

import gnn_truss.symmetry as sym
import gnn_truss.training as tr
from gnn_truss import design_space as ds


def canonical_ops(adj, offsets, target="stiffness", decimals=6):
    a = np.asarray(adj) != 0
    x = np.asarray(offsets, dtype=np.float64)
    ops = sym.allowed_symmetries(target, True)
    best = None
    arg = np.zeros(len(a), dtype=np.int64)
    for j, (perm, flip) in enumerate(ops):
        _, dofs, pairs, _, signs = sym._maps(sym._check_perm(perm), sym._check_flip(flip))
        xo = np.empty_like(x)
        xo[:, dofs] = x * signs  # as permute_data: scatter, signs before
        ao = np.empty_like(a)
        ao[:, pairs] = a
        xa = np.round(xo, decimals).astype(np.float32) + np.float32(0.0)
        cand = [np.packbits(ai).tobytes() + xi.tobytes() for ai, xi in zip(ao, xa)]
        if best is None:
            best = cand
            continue
        for i, c in enumerate(cand):
            if c < best[i]:
                best[i] = c
                arg[i] = j
    return [ops[j] for j in arg]


class Canonical:
    def __init__(self, normalizer, target="stiffness", mirrors=True):
        self.normalizer, self.target = normalizer, target

    def __call__(self, b):
        ops = canonical_ops(b.adj.cpu().numpy(), b.offset.cpu().numpy(), self.target)
        return sym.permute_data(b, [p for p, _ in ops], self.normalizer, self.target,
                                flip=[f for _, f in ops])


class CanonLoader:
    def __init__(self, dl, normalizer, target):
        self.dl, self.c = dl, Canonical(normalizer, target)

    def __iter__(self):
        for b in self.dl:
            yield self.c(b)

    def __len__(self):
        return len(self.dl)


_orig_eval = tr._evaluate_loss


def _eval(model, loader, device, beta, pw, normalizer=None, kind="normalised",
          target="stiffness", scale=None):
    return _orig_eval(model, CanonLoader(loader, normalizer, target), device, beta, pw,
                      normalizer, kind, target, scale)


if __name__ == "__main__":
    sym.RandomAxisPermutation = Canonical
    tr._evaluate_loss = _eval
    torch.set_num_threads(1)
    cfg = tr.load_config(sys.argv[1])
    cfg["train"]["init_from"] = sys.argv[2]
    tr.train(cfg)
