"""Dask for real: generation and the design-space scan on a two-process distributed.LocalCluster give what the
local runs give, also when a worker is killed in the middle of the work; executors by name."""

import os
import signal
import threading
import time

import psutil
import pytest
from distributed import Client, LocalCluster

from l1forge.core.executors import executor
from l1forge.events.jets import generate_jets
from l1forge.events.pfcands import generate_pileup
from l1forge.firmware.scan import ScanPoint, scan

POINTS = [ScanPoint(4, 4, 1), ScanPoint(8, 6, 2)]


def cheap_evaluate(point: ScanPoint) -> dict:
    """A picklable (module-level) stand-in for the student evaluation: more bits cost LUTs, reuse costs latency."""
    bits = point.weight_bits + point.activation_bits
    return {"metric": 1.0 - 1.0 / bits, "LUT": 100 * bits // point.reuse_factor, "latency_ns": 4.0 * point.reuse_factor}


@pytest.fixture(scope="module")
def cluster():
    """A real Dask cluster of two single-threaded worker processes, shared by the module and closed at its end."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        yield cluster


@pytest.fixture
def dask_pool(cluster):
    """The cluster's executor, reached through its scheduler address as a remote cluster would be."""
    with executor("dask", cluster.scheduler_address) as pool:
        yield pool


def test_jets_on_dask_are_byte_identical_to_one_local_worker(tmp_path, dask_pool):
    kwargs = dict(n_per_class=3, seed=5, pt_range=(400.0, 600.0), mpi=False, progress=False)
    generate_jets(tmp_path / "local.h5", workers=1, **kwargs)
    info = generate_jets(tmp_path / "dask.h5", executor=dask_pool, **kwargs)
    assert info["n_jets"] == 15
    assert (tmp_path / "dask.h5").read_bytes() == (tmp_path / "local.h5").read_bytes()


def test_pileup_on_dask_is_byte_identical_to_one_local_worker(tmp_path, dask_pool, pileup_path, pileup_settings):
    """The pileup library is built on the cluster, then scattered to its workers for the crossings."""
    generate_pileup(tmp_path / "dask.h5", executor=dask_pool, **pileup_settings)
    assert (tmp_path / "dask.h5").read_bytes() == pileup_path.read_bytes()  # conftest: workers=1


def test_scan_on_dask_equals_local(dask_pool):
    rows = scan(POINTS, cheap_evaluate, executor=dask_pool)
    assert rows == scan(POINTS, cheap_evaluate)  # default: local process pool
    assert [(r["weight_bits"], r["reuse_factor"], r["LUT"]) for r in rows] == [(4, 1, 800), (8, 2, 700)]


def _worker_processes(exclude=frozenset()) -> list[psutil.Process]:
    """Processes started below this one (multiprocessing's resource tracker aside), minus `exclude` pids."""
    return [p for p in psutil.Process().children(recursive=True)
            if p.pid not in exclude and "resource_tracker" not in " ".join(p.cmdline())]


def test_dask_without_address_runs_its_own_cluster_and_closes_it():
    before = {p.pid for p in _worker_processes()}
    with executor("dask", None, workers=1) as pool:
        started = _worker_processes(before)
        assert scan(POINTS, cheap_evaluate, executor=pool) == [{**vars(p), **cheap_evaluate(p)} for p in POINTS]
    assert len(started) == 1
    _, alive = psutil.wait_procs(started, timeout=30)
    assert not alive


@pytest.mark.parametrize("name, address, message", [
    ("ray", None, "unknown executor 'ray': expected local or dask"),
    ("local", "tcp://127.0.0.1:8786", "the local executor takes no address"),
])
def test_bad_executor_is_a_one_line_error(name, address, message):
    with pytest.raises(ValueError, match=message) as err:
        with executor(name, address):
            pass
    assert "\n" not in str(err.value)


def slow_evaluate(point: ScanPoint) -> dict:
    """cheap_evaluate that takes long enough for a worker to be killed in the middle of it."""
    time.sleep(0.4)
    return cheap_evaluate(point)


def _kill_a_busy_worker(address: str, done: threading.Event, killed: list):
    """SIGKILL the process of the first worker seen running a task (its nanny starts another)."""
    with Client(address, set_as_default=False) as client:
        while not done.is_set():
            busy = [worker for worker, keys in client.processing().items() if keys]
            if busy:
                pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed.append(client.processing()[busy[0]])  # the tasks it was running when killed
                return
            time.sleep(0.02)


@pytest.mark.parametrize("work", ["generation", "scan"])
def test_a_worker_killed_mid_work_changes_nothing(tmp_path, work):
    """The task of a worker killed while it runs goes to another worker: the jets are byte-identical to a local run,
    the scan rows equal."""
    kwargs = dict(n_per_class=3, seed=5, pt_range=(400.0, 600.0), mpi=False, progress=False)
    points = [ScanPoint(bits, bits, rf) for bits in (4, 6, 8) for rf in (1, 2)]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            executor("dask", cluster.scheduler_address) as pool:
        done, killed = threading.Event(), []
        killer = threading.Thread(target=_kill_a_busy_worker, args=(cluster.scheduler_address, done, killed))
        killer.start()
        try:
            if work == "generation":
                generate_jets(tmp_path / "dask.h5", executor=pool, **kwargs)
            else:
                rows = scan(points, slow_evaluate, executor=pool)
        finally:
            done.set()
            killer.join()
    assert killed and killed[0], "no worker was killed while running a task"
    if work == "generation":
        generate_jets(tmp_path / "local.h5", workers=1, **kwargs)
        assert (tmp_path / "dask.h5").read_bytes() == (tmp_path / "local.h5").read_bytes()
    else:
        assert rows == scan(points, cheap_evaluate)
