"""Corpus build on a local 2-worker Dask cluster gives the same corpus as a local build."""
import numpy as np
import pytest

from gnn_truss.corpus import build_corpus, load_corpus

distributed = pytest.importorskip("distributed")


def test_dask_build_matches_local(tmp_path):
    kw = dict(n=24, seed=5, shard_size=8, progress=False)
    build_corpus(tmp_path / "local", workers=1, **kw)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        m = build_corpus(tmp_path / "dask", scheduler=cluster.scheduler_address, **kw)
    a, b = load_corpus(tmp_path / "local"), load_corpus(tmp_path / "dask")
    assert len(b) >= 24 and m["counts"]["unique"] == len(b)
    np.testing.assert_array_equal(a.adj, b.adj)
    np.testing.assert_array_equal(a.offset, b.offset)
    np.testing.assert_array_equal(a.stiffness, b.stiffness)
    assert sorted(m["shards"]) == sorted(load_corpus(tmp_path / "local").meta["shards"])


def test_scheduler_unreachable_is_clear_error(tmp_path):
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(ValueError, match="cannot reach the Dask scheduler"):
            build_corpus(tmp_path / "x", n=4, shard_size=4, progress=False,
                         scheduler="tcp://127.0.0.1:1")
