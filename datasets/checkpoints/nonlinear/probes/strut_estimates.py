"""Per-strut Euler estimates of the corpus lattices (session 31 probe, not shipped): 8 numbers a
lattice from the pre-buckling axial forces of linear_buckling (z compression), with the strut's
pinned-pinned Euler load pi^2 E I / L^2: the log of the three lowest strut buckling strains
(capped at 1), the log of their median over the compressed struts, the length fractions of the
struts within 20 % of the lowest and of the compressed struts, the struts' share of the axial
strain energy, and the log of the lowest strut strain over the cell's first critical strain.

    python datasets/checkpoints/nonlinear/probes/strut_estimates.py OUT.npy   (8 min, 2 cores)
"""
import sys
from concurrent.futures import ProcessPoolExecutor
import numpy as np
from gnn_truss.corpus import load_corpus
from gnn_truss.fe.buckling import linear_buckling
from gnn_truss.threads import single_thread_worker
from gnn_truss.truss import Truss

def feats(args):
    adj, off = args
    t = Truss(adj, off)
    try:
        b = linear_buckling(t)
    except Exception:
        return np.full(8, np.nan)
    pt = t.periodic()
    r = t.radius(0.15)
    L = np.linalg.norm(pt.chords, axis=1)
    EA, EI = np.pi * r**2, np.pi * r**4 / 4
    c = -b.strut_forces
    PE = np.pi**2 * EI / L**2
    comp = c > 1e-9 * EA
    e = np.full(len(L), 1.0)
    e[comp] = np.minimum(PE[comp] / c[comp], 1.0)
    es = np.sort(e)
    three = np.concatenate([es[:3], np.full(max(0, 3 - len(es)), es[-1])])[:3]
    med = np.median(e[comp]) if comp.any() else 1.0
    near = np.sum(L[e <= 1.2 * es[0]]) / L.sum()
    fcomp = np.sum(L[comp]) / L.sum()
    share = np.sum(b.strut_forces**2 * L / (2 * EA)) / (0.5 * b.modulus * pt.volume)
    return np.array([*np.log(three), np.log(med), near, fcomp, share,
                     np.log(es[0] / min(b.strains[0], 1.0))])

if __name__ == "__main__":
    c = load_corpus("datasets/nonlinear/raw/corpus.npz", limit=15799, quiet=True)  # the corpus of the probe
    items = [(c.truss(i).adjacency, c.truss(i).offsets) for i in range(len(c))]
    with ProcessPoolExecutor(2, initializer=single_thread_worker) as ex:
        out = np.array(list(ex.map(feats, items, chunksize=32)))
    np.save(sys.argv[1], out)
    print(out.shape, "NaN rows", int(np.isnan(out).any(1).sum()))
    print("means", np.round(np.nanmean(out, 0), 4))
