import pytest

from cocosnet.parallel import parallel_map


def square_plus_pid_free(x: int) -> tuple[int, int]:
    return x, x * x


def fails_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("bad item 3")
    return x


ITEMS = list(range(23))
EXPECTED = [square_plus_pid_free(x) for x in ITEMS]


def test_serial_and_process_pool_give_identical_ordered_results():
    assert parallel_map(square_plus_pid_free, ITEMS, workers=1) == EXPECTED
    assert parallel_map(square_plus_pid_free, ITEMS, workers=2, chunksize=3) == EXPECTED


def test_dask_local_cluster_gives_identical_results():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        got = parallel_map(square_plus_pid_free, ITEMS, dask_address=cluster.scheduler_address)
    assert got == EXPECTED


def test_worker_errors_propagate():
    with pytest.raises(ValueError, match="bad item 3"):
        parallel_map(fails_on_three, range(6), workers=2, chunksize=1)
