"""Tests of :mod:`gnn_truss.threads`: the BLAS thread limits of the FE workers and of
``gnn-truss --threads``. On this machine numpy and scipy each load their own OpenBLAS."""
import functools
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor

import pytest
import scipy.sparse.linalg  # noqa: F401  (loads scipy's own OpenBLAS)
import torch

from gnn_truss.threads import (blas_libraries, blas_threads, limit_blas_threads,
                               single_thread_worker)

needs_openblas = pytest.mark.skipif(not blas_libraries(), reason="no OpenBLAS found loaded")


@pytest.fixture
def restore_blas(monkeypatch):
    """Put every library's thread count (and the environment) back after the test."""
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    before = blas_threads()
    yield before
    for n in set(before.values()):
        limit_blas_threads(n)


@needs_openblas
def test_limit_sets_every_loaded_openblas(restore_blas):
    """numpy's and scipy's copies are both found and both set, and the environment variable
    for later processes is written; a second call sets a different count."""
    libs = blas_libraries()
    assert any("numpy" in p for p in libs) and any("scipy" in p for p in libs)
    assert limit_blas_threads(1) == len(libs)
    assert set(blas_threads().values()) == {1}
    import os
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    limit_blas_threads(2)
    assert set(blas_threads().values()) == {2}


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_limit_refuses_a_bad_count(bad):
    with pytest.raises(ValueError, match="positive integer"):
        limit_blas_threads(bad)


def _worker_threads():
    return torch.get_num_threads(), blas_threads()


@needs_openblas
def test_fe_workers_run_with_one_thread(restore_blas):
    """A pool started with :func:`single_thread_worker` (as the FE batch functions start
    theirs) runs one torch thread and one BLAS thread per library, whatever the parent
    has."""
    limit_blas_threads(2)
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(1, mp_context=ctx, initializer=single_thread_worker) as ex:
        torch_threads, blas = ex.submit(_worker_threads).result()
    assert torch_threads == 1 and blas and set(blas.values()) == {1}
    assert set(blas_threads().values()) == {2}  # the parent is left alone


def _mark_worker(folder):
    """A stand-in initializer: leaves a file named by the worker's pid."""
    open(os.path.join(folder, f"worker-{os.getpid()}"), "w").close()


@pytest.mark.parametrize("module", ["gnn_truss.fe.buckling", "gnn_truss.fe.homogenization"])
def test_fe_pools_start_their_workers_with_the_initializer(module, tmp_path, monkeypatch):
    """The FE batch functions start their worker processes through
    :func:`single_thread_worker` (replaced here by a marker, which each worker runs once);
    the parent process runs no initializer."""
    import importlib

    from gnn_truss.truss import Truss
    mod = importlib.import_module(module)
    monkeypatch.setattr(mod, "single_thread_worker",
                        functools.partial(_mark_worker, str(tmp_path)))
    lattices = [Truss.elementary(n) for n in ("sc", "bcc", "octet")]
    if module.endswith("buckling"):
        mod.buckling_batch(lattices, workers=2)
    else:
        mod.homogenize_batch(lattices, workers=2, group_size=1)
    marks = [p.name for p in tmp_path.iterdir()]
    assert marks and f"worker-{os.getpid()}" not in marks


@needs_openblas
def test_cli_threads_sets_blas_too(restore_blas, capsys):
    """``gnn-truss --threads 1 ...`` limits BLAS as well as torch."""
    from gnn_truss import cli
    limit_blas_threads(2)
    torch_before = torch.get_num_threads()
    try:
        assert cli.main(["--threads", "1", "buckle", "sc"]) == 0
        assert set(blas_threads().values()) == {1}
    finally:
        torch.set_num_threads(torch_before)
    assert "13.345" in capsys.readouterr().out  # the analysis ran (sc: 13.345 %, twice)
