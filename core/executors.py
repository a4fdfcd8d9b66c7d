"""Where parallel work runs: a process pool on this machine, or a Dask cluster (ground floor: imports no stage).

``executor(name, address, workers)`` is a context manager yielding a ``concurrent.futures.Executor``:

* ``"local"``: a ``ProcessPoolExecutor`` of ``workers`` processes started fresh ("spawn": forking a parent that runs
  TensorFlow or torch can hang);
* ``"dask"``: ``distributed.Client(address).get_executor()`` on a running cluster (``address`` such as
  ``tcp://host:port``, the scheduler's), or, without an address, on a ``distributed.LocalCluster`` of ``workers``
  single-threaded processes started here and closed afterwards.

Work sent to an executor must be picklable: functions are sent by reference, so every worker must import the same
l1forge, and workers of a remote cluster see the caller's files only through a shared file system. ``share`` sends
a large input common to many tasks once per worker where the executor can.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import multiprocessing
import sys
from typing import Any, Iterator, Literal, get_args

Name = Literal["local", "dask"]
NAMES = get_args(Name)


@contextlib.contextmanager
def executor(name: str, address: str | None = None, workers: int = 2) -> Iterator[concurrent.futures.Executor]:
    """The executor called ``name`` (one of NAMES), shut down when the block ends: after its work finishes, or, if
    the block raises, with the work that has not started cancelled.

    ``workers`` (>= 1) is the number of processes of a pool started here (local, or dask without ``address``); a
    running Dask cluster keeps its own. Raises ValueError (one line) for an unknown name, a bad worker count or an
    address given to the local executor; connecting to an unreachable address raises OSError after Dask's timeout.
    """
    if name not in NAMES:
        raise ValueError(f"unknown executor '{name}': expected {' or '.join(NAMES)}")
    if int(workers) < 1:
        raise ValueError(f"executor workers must be >= 1, not {workers}")
    if name == "local":
        if address is not None:
            raise ValueError(f"the local executor takes no address (got {address!r}); an address is for dask")
        pool = concurrent.futures.ProcessPoolExecutor(int(workers), mp_context=multiprocessing.get_context("spawn"))
        with _shut_down_after(pool, cancel_futures=True):
            yield pool
    else:
        with _dask_client(address, int(workers)) as client, _shut_down_after(client.get_executor()) as pool:
            yield pool


@contextlib.contextmanager
def _shut_down_after(pool, **cancel):
    """Yield ``pool``; then ``pool.shutdown(wait=True)``, or on an exception ``pool.shutdown(wait=False, **cancel)``
    (a Dask executor cancels its futures on ``wait=False``; a process pool needs ``cancel_futures=True``)."""
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, **cancel)
        raise
    pool.shutdown(wait=True)


@contextlib.contextmanager
def _dask_client(address: str | None, workers: int):
    """A ``distributed.Client`` of the cluster at ``address``, or of a LocalCluster of ``workers`` processes that is
    closed with the client (its scheduler's HTTP port is any free one, not 8787, which another cluster may hold).
    Dask's INFO messages (a LocalCluster's scheduler and nannies run in this process) are held back meanwhile."""
    from distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        stack.enter_context(_logger_level("distributed", logging.WARNING))
        if address is None:
            address = stack.enter_context(
                LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"))
        yield stack.enter_context(Client(address, set_as_default=False))


@contextlib.contextmanager
def _logger_level(name: str, level: int):
    """Set logger ``name``'s level for the block, then restore it."""
    logger = logging.getLogger(name)
    saved = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(saved)


def share(pool: concurrent.futures.Executor, value: Any) -> Any:
    """``value`` as an argument for many tasks of ``pool``: on a Dask executor it is scattered once to every worker
    and a Dask future is returned (Dask passes the value in its place, also inside lists and dicts of arguments);
    any other executor gets ``value`` itself, pickled with each task."""
    cfexecutor = sys.modules.get("distributed.cfexecutor")  # not imported: pool cannot be a Dask executor
    if cfexecutor is None or not isinstance(pool, cfexecutor.ClientExecutor):
        return value
    # ClientExecutor has no public accessor of its Client; it keeps it as _client
    [future] = pool._client.scatter([value], broadcast=True, hash=False)
    return future
