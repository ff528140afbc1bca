"""Probe (session 46): how many one-pass reconstructions of test lattices break the
``max_length`` rule, and what the length fit (:func:`gnn_truss.decoding.fit_lengths`) does to
their node positions. The first 4,000 lattices of the shipped default checkpoint's test split;
squared position errors summed over the nodes the reconstruction uses.

    python datasets/checkpoints/default/probes/length_fit_reconstructions.py

Results: ``length_fit_reconstructions_results.txt``.
"""
import numpy as np
import torch

from gnn_truss import design_space as ds
from gnn_truss.corpus import load_corpus
from gnn_truss.dataset import split_indices
from gnn_truss.decoding import fit_lengths
from gnn_truss.exploration import load_model, reconstruct_lattices

torch.set_num_threads(1)
out = load_model('datasets/checkpoints/default/model.pt')
model = out[0] if isinstance(out, tuple) else out
c = load_corpus('datasets/default/raw/corpus.npz', quiet=True)
test = split_indices(len(c), 0)['test'][:4000]
true = [c.truss(int(k)) for k in test]
rec = reconstruct_lattices(model, true)
n_long = 0; exact = 0; stats = []
for t, r in zip(true, rec):
    same = np.array_equal(t.adjacency, r.adjacency)
    exact += same
    if 'max_length' in r.validate():
        n_long += 1
        x, st = fit_lengths(r.adjacency, r.free_offsets)
        used = r.used
        e0 = np.sum((r.positions - t.positions)[used] ** 2)
        e1 = np.sum((ds.NODE_GRID + ds.unpack_offsets(x) - t.positions)[used] ** 2)
        stats.append((same, e0, e1, st))
print('test lattices', len(true), 'exact', exact, 'with a long beam', n_long)
s = np.array([(a, b, c_) for a, b, c_, _ in stats])
for flag in (1, 0):
    m = s[:, 0] == flag
    print('exact' if flag else 'wrong', m.sum(), 'pos sq err before', s[m, 1].sum(), 'after', s[m, 2].sum(),
          'worse', int(np.sum(s[m, 2] > s[m, 1] + 1e-12)))
