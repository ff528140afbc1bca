"""Tests of gnn_truss.loader: batches sliced from the collated storage equal PyG's."""
from pathlib import Path

import pytest
import torch
from torch.utils.data.distributed import DistributedSampler
from torch_geometric.loader import DataLoader

from gnn_truss.corpus import load_corpus, save_compact
from gnn_truss.dataset import AttachFeatures, TrussDataset
from gnn_truss.loader import CollatedLoader, make_loader, supports

REPO = Path(__file__).resolve().parents[1]
CORPORA = {"stiffness": REPO / "datasets" / "default" / "raw" / "corpus.npz",
           "curve": REPO / "datasets" / "nonlinear" / "raw" / "corpus.npz"}


@pytest.fixture(scope="module", params=["stiffness", "curve"])
def split(request, tmp_path_factory):
    """The training split of the first 200 lattices of a shipped corpus (the curve one with a
    feature table attached, as for a predictor with buckling features)."""
    root = tmp_path_factory.mktemp(request.param)
    (root / "raw").mkdir()
    save_compact(load_corpus(CORPORA[request.param], limit=200), root / "raw" / "corpus.npz")
    d = TrussDataset(root, split="train", target=request.param, limit=200)
    if request.param == "curve":
        d.transform = AttachFeatures(torch.randn(200, 5, generator=torch.Generator()
                                                 .manual_seed(0)))
    return d


def _same(a, b):
    """Tensor-for-tensor equality of two batches: fields, dtypes, NaN labels in the same
    places, the graph count and the slice and increment records PyG reads to split them."""
    assert sorted(a.keys()) == sorted(b.keys())
    for k in a.keys():
        x, y = a[k], b[k]
        if torch.is_tensor(x):  # exact, dtype and shape included, NaN where NaN
            torch.testing.assert_close(x, y, rtol=0, atol=0, equal_nan=True, msg=k)
        else:
            assert x == y, k
    assert a.num_graphs == b.num_graphs and a.num_nodes == b.num_nodes
    assert a._slice_dict.keys() == b._slice_dict.keys()
    for k in a._slice_dict:
        assert torch.equal(a._slice_dict[k], b._slice_dict[k]), k
        assert torch.equal(torch.as_tensor(a._inc_dict[k]), torch.as_tensor(b._inc_dict[k])), k


def test_supported_split(split):
    assert supports(split)
    assert isinstance(make_loader(split, 16), CollatedLoader)


def test_shuffled_epochs_equal_pyg_and_leave_the_generator_alike(split):
    """Two shuffled epochs, last batch dropped: the same batches in the same order as PyG's
    loader from the same seed, and the generator in the same state after each epoch (so a
    resumed run's next order is the same too)."""
    g_ours, g_pyg = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    ours = CollatedLoader(split, batch_size=24, shuffle=True, generator=g_ours, drop_last=True)
    pyg = DataLoader(split, batch_size=24, shuffle=True, generator=g_pyg, drop_last=True)
    assert len(ours) == len(pyg) == len(split) // 24
    for _ in range(2):
        a, b = list(pyg), list(ours)
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
        assert torch.equal(g_ours.get_state(), g_pyg.get_state())
    first = [int(i) for i in b[0].idx]
    assert first != sorted(first)  # shuffled indeed


def test_sequential_batches_split_back_into_the_dataset_graphs(split):
    """In order, last batch kept (smaller): each batch equals PyG's, and splitting it back
    (``to_data_list``) gives the dataset's own graphs, edge indices local again."""
    ours = list(CollatedLoader(split, batch_size=50))
    pyg = list(DataLoader(split, batch_size=50))
    assert [b.num_graphs for b in ours] == [b.num_graphs for b in pyg]
    assert ours[-1].num_graphs == len(split) - 50 * (len(ours) - 1) < 50
    for x, y in zip(pyg, ours):
        _same(x, y)
    graphs = [g for b in ours for g in b.to_data_list()]
    assert len(graphs) == len(split)
    for i in (0, 7, len(split) - 1):
        g, ref = graphs[i], split[i]
        assert torch.equal(g.edge_index, ref.edge_index)
        assert torch.equal(g.x, ref.x) and torch.equal(g.adj, ref.adj)
        assert int(g.edge_index.max()) < 27


def test_an_explicit_index_order_and_a_sampler(split):
    """``batch(idx)`` follows the order given, repeats included; a ``DistributedSampler``
    (one of two ranks) gives PyG's batches with the same sampler."""
    idx = [5, 0, 5, 11]
    b = CollatedLoader(split).batch(idx)
    assert [int(i) for i in b.idx] == [int(split[i].idx) for i in idx]
    assert torch.equal(b.edge_index[:, b.batch[b.edge_index[0]] == 2] - 54,
                       split[5].edge_index)
    s1 = DistributedSampler(split, num_replicas=2, rank=1, shuffle=True, seed=4)
    s2 = DistributedSampler(split, num_replicas=2, rank=1, shuffle=True, seed=4)
    for x, y in zip(DataLoader(split, batch_size=16, sampler=s1),
                    CollatedLoader(split, batch_size=16, sampler=s2)):
        _same(x, y)


def test_storage_on_a_device(split):
    b = CollatedLoader(split, batch_size=8, device="cpu").batch([1, 2])
    _same(b, next(iter(DataLoader(split[1:3], batch_size=8))))


def test_storage_moved_to_a_device_leaves_the_dataset_where_it_was(split):
    # PyG's Data.to moves in place; the loader must move a copy ("meta" stands in for a GPU:
    # it has the tensors' shapes and no data)
    before = {k: v.device for k, v in split._data.items() if torch.is_tensor(v)}
    loader = CollatedLoader(split, batch_size=8, device="meta")
    assert loader._data.x.device.type == "meta"
    assert {k: v.device for k, v in split._data.items() if torch.is_tensor(v)} == before
    assert split[0].x.device.type == "cpu"


def test_make_loader_passes_the_device_to_the_sliced_loader(split):
    loader = make_loader(split, 8, device="meta")
    assert isinstance(loader, CollatedLoader) and loader._data.x.device.type == "meta"
    assert torch.equal(make_loader(split, 8, device="cpu").batch([3, 1]).adj,
                       CollatedLoader(split, 8).batch([3, 1]).adj)
    assert isinstance(make_loader(split, 8, num_workers=1, device="meta"), DataLoader)


def test_an_index_view_falls_back_to_pyg(split):
    view = split[:30]
    assert not supports(view)
    loader = make_loader(view, 16)
    assert isinstance(loader, DataLoader)
    with pytest.raises(ValueError, match="cannot slice"):
        CollatedLoader(view, 16)
    assert isinstance(make_loader(split, 16, num_workers=1), DataLoader)  # workers asked for


def test_a_foreign_transform_falls_back(split):
    old = split.transform
    try:
        split.transform = lambda d: d
        assert not supports(split)
    finally:
        split.transform = old


@pytest.mark.parametrize("kw, match", [({"batch_size": 0}, "positive"),
                                       ({"shuffle": True, "sampler": [0, 1]}, "exclusive")])
def test_bad_arguments(split, kw, match):
    with pytest.raises(ValueError, match=match):
        CollatedLoader(split, **{"batch_size": 4, **kw})
    with pytest.raises(ValueError, match="empty"):
        CollatedLoader(split, 4).batch([])
