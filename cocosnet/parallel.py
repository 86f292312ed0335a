"""Map a function over items: in this process, in local worker processes, or on a Dask cluster.

Results always come back in input order, so a stage's output does not depend on how the work
was spread. The function and the items must be picklable (a module-level function and plain
data); workers are started with ``spawn`` so they never inherit a half-initialised thread pool,
and each gets its share of this process's threads (:mod:`cocosnet.cores`), so ``workers``
processes never ask for ``workers`` x the cores.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from tqdm import tqdm

from .cores import limit_threads, process_threads, thread_budget

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int = 1,
    dask_address: str | None = None,
    desc: str | None = None,
    chunksize: int = 8,
) -> list[R]:
    """``[fn(x) for x in items]`` with a progress bar, spread over workers or a Dask cluster."""
    items = list(items)
    if dask_address:
        return _dask_map(fn, items, dask_address, desc)
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in tqdm(items, desc=desc, leave=False)]
    context = multiprocessing.get_context("spawn")
    threads = thread_budget(workers, process_threads())
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=limit_threads, initargs=(threads,)
    ) as pool:
        results = pool.map(fn, items, chunksize=max(1, chunksize))
        return list(tqdm(results, total=len(items), desc=desc, leave=False))


def _dask_map(fn: Callable[[T], R], items: Sequence[T], address: str, desc: str | None) -> list[R]:
    from distributed import Client  # imported only when a cluster is used

    with Client(address, set_as_default=False) as client:
        futures = client.map(fn, items, pure=False)
        # Collected in input order; the bar advances as the head of the queue completes.
        return [f.result() for f in tqdm(futures, desc=desc, leave=False)]
