r"""Mini-batches sliced straight from a dataset's collated storage.

Every truss graph has the same 27 nodes, and a :class:`~gnn_truss.dataset.TrussDataset` split
keeps all its graphs collated in one ``Data`` (``dataset._data``, cut by ``dataset.slices``).
PyG's ``DataLoader`` still takes each graph out of that storage one at a time and collates
them again (``Batch.from_data_list``), a Python loop over the graphs of every batch: on the
2-core machine a sixth to a quarter of a training step of the default GNN (batches of 256 and
128) and two fifths of the MLP baseline's. :class:`CollatedLoader` builds the same batch with
a few indexing operations over the whole batch:

- node fields (``x [27N, 14]``, ``pos``): rows ``27 i ... 27 i + 26`` of each graph ``i``;
- graph fields (``adj [N, 351]``, ``offset``, ``y``, ``stiffness``, ``curve``, ``idx``, ...):
  row ``i``;
- edge fields (``edge_index``, ``edge_attr``): each graph's run of edges, the node indices
  shifted by 27 times the graph's place in the batch, as PyG's collation shifts them.

The batches are equal to those of ``torch_geometric.loader.DataLoader`` over the same
dataset and sampler, tensor for tensor, with the same ``batch``, ``ptr`` and the slice and
increment records that ``Batch.to_data_list`` and ``get_example`` read (tested), and the
shuffle order is drawn the same way from the same generator. A training run with it is the
run with PyG's loader, bit for bit, only faster.

With ``device`` the storage is moved there once and the batches are cut there: on a GPU
nothing crosses the bus per batch but the indices.

Example::

    from gnn_truss.loader import CollatedLoader
    loader = CollatedLoader(dataset, batch_size=128, shuffle=True,
                            generator=torch.Generator().manual_seed(0))
    for batch in loader:            # DataBatch(x=[27B, 14], edge_index=[2, E], adj=[B, 351], ...)
        ...
"""
from __future__ import annotations

import copy

import torch
from torch.utils.data import BatchSampler, RandomSampler, SequentialSampler
from torch_geometric.data import Batch, Data

from . import design_space as ds
from .dataset import AttachFeatures


def _layout(dataset) -> tuple[Data, dict, dict] | None:
    """``(storage, slices, kinds)`` of a dataset whose graphs can be sliced in bulk, ``kinds``
    mapping each field to ``"node"``, ``"edge"`` or ``"graph"``; ``None`` if it cannot be (not
    an in-memory dataset, an index view, nodes other than 27 per graph, an unknown field or
    transform)."""
    data, slices = getattr(dataset, "_data", None), getattr(dataset, "slices", None)
    if not isinstance(data, Data) or not isinstance(slices, dict) or \
            getattr(dataset, "_indices", None) is not None:
        return None
    transform = getattr(dataset, "transform", None)
    # the one transform a whole batch can be given: it writes a graph-level field by `idx`
    if transform is not None and not isinstance(transform, AttachFeatures):
        return None
    n = len(dataset)
    if n == 0 or "x" not in slices or "edge_index" not in slices:
        return None
    nodes = torch.arange(0, ds.NUM_NODES * (n + 1), ds.NUM_NODES)
    rows = torch.arange(n + 1)
    kinds = {}
    for key, sl in slices.items():
        if key not in data:
            return None
        if torch.equal(sl, nodes) and data[key].shape[0] == ds.NUM_NODES * n:
            kinds[key] = "node"
        elif torch.equal(sl, rows) and data[key].shape[0] == n:
            kinds[key] = "graph"
        elif torch.equal(sl, slices["edge_index"]) and key in ("edge_index", "edge_attr"):
            kinds[key] = "edge"
        else:
            return None
    if kinds.get("x") != "node" or kinds.get("edge_index") != "edge":
        return None
    extra = set(data.keys()) - set(slices) - {"num_nodes"}
    if extra:  # a field PyG would have to guess how to collate
        return None
    return data, slices, kinds


def supports(dataset) -> bool:
    """Whether :class:`CollatedLoader` can batch ``dataset`` (a :class:`TrussDataset` split
    loaded whole: yes; an index view, a foreign transform, a graph of other size: no)."""
    return _layout(dataset) is not None


class CollatedLoader:
    r"""An iterable of :class:`torch_geometric.data.Batch` over a dataset, equal batch for batch
    to ``torch_geometric.loader.DataLoader(dataset, batch_size, shuffle, sampler=sampler,
    generator=generator, drop_last=drop_last)`` with ``num_workers=0``, cut from the
    dataset's collated storage without a per-graph loop (module docstring).

    Args:
        dataset: a :class:`~gnn_truss.dataset.TrussDataset` split (:func:`supports`).
        batch_size: graphs per batch.
        shuffle: draw a random order each epoch (``torch.utils.data.RandomSampler`` with
            ``generator``).
        sampler: an index sampler instead (e.g. a ``DistributedSampler``); excludes
            ``shuffle``.
        generator: the ``torch.Generator`` of the shuffle order. As in torch's loader, each
            pass also draws one number from it (the workers' base seed), so a run's generator
            state after an epoch is the one it has with PyG's loader.
        drop_last: drop the last incomplete batch.
        device: where to keep the storage and cut the batches (default: where it is).

    Raises:
        ValueError: a dataset the loader cannot slice (use PyG's ``DataLoader`` for it), or
            ``shuffle`` with a ``sampler``.
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False, sampler=None,
                 generator: torch.Generator | None = None, drop_last: bool = False,
                 device=None):
        layout = _layout(dataset)
        if layout is None:
            raise ValueError(f"CollatedLoader cannot slice {dataset!r} in bulk (an index view, "
                             f"a transform other than AttachFeatures, or graphs of other "
                             f"than {ds.NUM_NODES} nodes): use torch_geometric.loader."
                             f"DataLoader")
        if shuffle and sampler is not None:
            raise ValueError("shuffle and sampler are mutually exclusive")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.drop_last = bool(drop_last)
        self.generator = generator
        data, slices, self._kinds = layout
        # PyG's Data.to moves in place: move a copy, so the dataset keeps its own storage
        self._data = data if device is None else copy.copy(data).to(device)
        self._edge_slices = slices["edge_index"].to(self._data.x.device)
        if sampler is None:
            sampler = (RandomSampler(dataset, generator=generator) if shuffle
                       else SequentialSampler(dataset))
        self.sampler = sampler
        self.batch_sampler = BatchSampler(sampler, self.batch_size, self.drop_last)
        self.transform = getattr(dataset, "transform", None)

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self):
        # torch's DataLoader draws its workers' base seed from the generator at every pass,
        # workers or not: draw it too, so the generator state (and so the next epoch's order)
        # is the same as with that loader.
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        for idx in self.batch_sampler:
            yield self.batch(idx)

    def batch(self, idx) -> Batch:
        """The batch of the dataset's graphs ``idx`` (a list or ``[B]`` tensor of indices into
        the dataset), in that order."""
        data = self._data
        dev = data.x.device
        idx = torch.as_tensor(idx, dtype=torch.long).to(dev)
        B = int(idx.numel())
        if B == 0:
            raise ValueError("an empty batch")
        n = ds.NUM_NODES
        nodes = (idx[:, None] * n + torch.arange(n, device=dev)).reshape(-1)   # [27B]
        start = self._edge_slices[idx]
        count = self._edge_slices[idx + 1] - start                             # [B]
        cum = torch.zeros(B + 1, dtype=torch.long, device=dev)
        cum[1:] = torch.cumsum(count, 0)
        total = int(cum[-1])
        graph_of_edge = torch.repeat_interleave(torch.arange(B, device=dev), count,
                                                output_size=total)
        edges = torch.arange(total, device=dev) - cum[:-1][graph_of_edge] + start[graph_of_edge]
        ptr = torch.arange(0, n * (B + 1), n, device=dev)
        out = Batch(_base_cls=Data)
        slice_dict, inc_dict = {}, {}
        zeros = torch.zeros(B, dtype=torch.long, device=dev)
        rows = torch.arange(B + 1, device=dev)
        for key, kind in self._kinds.items():
            value = data[key]
            if kind == "node":
                out[key] = value[nodes]
                slice_dict[key], inc_dict[key] = ptr, zeros
            elif kind == "graph":
                out[key] = value[idx]
                slice_dict[key], inc_dict[key] = rows, zeros
            elif key == "edge_index":
                out[key] = value[:, edges] + ptr[:-1][graph_of_edge]
                slice_dict[key], inc_dict[key] = cum, ptr[:-1]
            else:
                out[key] = value[edges]
                slice_dict[key], inc_dict[key] = cum, zeros
        out._store._num_nodes = [n] * B
        out._store.num_nodes = n * B
        out.batch = torch.repeat_interleave(torch.arange(B, device=dev), n)
        out.ptr = ptr
        out._num_graphs = B
        out._slice_dict = slice_dict
        out._inc_dict = inc_dict
        if self.transform is not None:  # graph-level lookups (features by corpus index)
            out = self.transform(out)
            for key in out.keys():
                if key not in slice_dict and key not in ("batch", "ptr", "num_nodes"):
                    slice_dict[key], inc_dict[key] = rows, zeros
        return out

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({len(self.dataset)} graphs, batch_size="
                f"{self.batch_size}, {len(self)} batches)")


def make_loader(dataset, batch_size: int, shuffle: bool = False, sampler=None,
                generator: torch.Generator | None = None, drop_last: bool = False,
                num_workers: int = 0, pin_memory: bool = False, device=None):
    """:class:`CollatedLoader` where it can slice the dataset and no worker processes are
    asked for, else PyG's ``DataLoader`` with the same arguments: the same batches either
    way. ``device``: where the sliced loader keeps the storage and cuts the batches (PyG's
    loader ignores it: its batches are moved by the caller)."""
    if num_workers == 0 and supports(dataset):
        return CollatedLoader(dataset, batch_size, shuffle=shuffle, sampler=sampler,
                              generator=generator, drop_last=drop_last, device=device)
    from torch_geometric.loader import DataLoader
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler,
                      generator=generator, drop_last=drop_last, num_workers=num_workers,
                      pin_memory=pin_memory)
