"""Design-space scan of a student over weight/activation bit widths and reuse factors, and its Pareto front.

``scan`` maps any picklable ``evaluate(point) -> dict`` over the points with an executor that has the
``concurrent.futures.Executor.map`` interface (only ``map`` is used):

* default: a local ``concurrent.futures.ProcessPoolExecutor(max_workers=2)``;
* Dask: ``distributed.Client(address).get_executor()`` (a ``concurrent.futures``-compatible executor,
  https://distributed.dask.org/en/stable/api.html#distributed.Client.get_executor);
* Ray: ``ray.util.multiprocessing.Pool(ray_address=address)`` (the ``multiprocessing.Pool`` API on a Ray cluster,
  https://docs.ray.io/en/latest/ray-more-libs/multiprocessing.html).

``executor_from_name`` builds any of the three; Dask and Ray are imported only when asked for.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import pathlib
import tempfile
from typing import Callable

from l1forge.firmware.hls import FirmwareSettings

REQUIRED = ("metric", "LUT", "latency_ns")


@dataclasses.dataclass(frozen=True)
class ScanPoint:
    """One design: QKeras weight and activation bit widths and the hls4ml reuse factor."""

    weight_bits: int
    activation_bits: int
    reuse_factor: int = 1


def local_executor(max_workers: int = 2) -> concurrent.futures.ProcessPoolExecutor:
    """Process pool whose workers are started fresh ("spawn"): forking a parent that runs TensorFlow can hang."""
    return concurrent.futures.ProcessPoolExecutor(max_workers, mp_context=multiprocessing.get_context("spawn"))


def executor_from_name(name: str, address: str | None = None):
    """An executor by name: local (2 processes), dask (``distributed.Client(address)``; a local cluster when
    ``address`` is None) or ray (``ray_address=address``)."""
    if name == "local":
        return local_executor()
    if name == "dask":
        try:
            from distributed import Client
        except ImportError:
            raise RuntimeError("the dask executor needs the 'distributed' package, which is not installed") from None
        return Client(address).get_executor()
    if name == "ray":
        try:
            from ray.util.multiprocessing import Pool
        except ImportError:
            raise RuntimeError("the ray executor needs the 'ray' package, which is not installed") from None
        return Pool(ray_address=address)
    raise ValueError(f"unknown executor '{name}': expected local, dask or ray")


def scan(points, evaluate: Callable[[ScanPoint], dict], executor=None) -> list[dict]:
    """``evaluate`` every point (in parallel on ``executor``); one dict per point, in order: the point's fields
    and the evaluation, which must hold at least "metric", "LUT" and "latency_ns"."""
    points = list(points)
    if executor is None:
        with local_executor() as pool:
            results = list(pool.map(evaluate, points))
    else:
        results = list(executor.map(evaluate, points))
    rows = []
    for point, result in zip(points, results):
        if missing := [key for key in REQUIRED if key not in result]:
            raise ValueError(f"evaluation of {point} has no {', '.join(missing)}")
        rows.append({**dataclasses.asdict(point), **result})
    return rows


def pareto_front(results, maximize: str = "metric", minimize=("LUT", "latency_ns")) -> list[dict]:
    """The results no other result dominates (at least as good in every objective and better in one), sorted
    by LUT (then the other objectives). Results with equal objectives do not dominate each other: all are kept."""

    def objectives(row):
        return (-row[maximize], *(row[key] for key in minimize))

    scores = [objectives(row) for row in results]
    front = [
        row
        for row, mine in zip(results, scores)
        if not any(all(o <= m for o, m in zip(other, mine)) and other != mine for other in scores)
    ]
    return sorted(front, key=lambda row: (row["LUT"], objectives(row)))


def plot_pareto(ax, results, front, maximize: str = "metric", latency: str = "latency_ns"):
    """Metric against LUTs on ``ax``, coloured by latency, the front ringed in red; returns the scatter of all."""
    points = ax.scatter(
        [row["LUT"] for row in results],
        [row[maximize] for row in results],
        c=[row[latency] for row in results],
        cmap="viridis",
        s=30,
        zorder=2,
    )
    ax.figure.colorbar(points, ax=ax, label=latency.replace("_ns", " [ns]"))
    ax.scatter(  # rings, not a line: with latency as an objective the front is not monotonic in LUT
        [row["LUT"] for row in front],
        [row[maximize] for row in front],
        s=120,
        facecolors="none",
        edgecolors="tab:red",
        label="Pareto front",
        zorder=3,
    )
    ax.set_xlabel("LUT")
    ax.set_ylabel(maximize)
    ax.legend(loc="lower right")
    return points


@dataclasses.dataclass(frozen=True)
class StudentEstimate:
    """Picklable evaluator: the students/model.py student at a point's bits, converted with hls4ml (no compile)
    and costed by firmware/estimate.py; "metric" is ``metric(model)``, the caller's (picklable) function.

    ``metric`` is called on the freshly built model (random weights, ``seed``) before conversion, so a metric
    that trains the model in place is costed with its trained weights.
    """

    metric: Callable
    n_inputs: int = 16
    n_outputs: int = 5
    hidden: tuple = (64, 32, 32)
    settings: FirmwareSettings = dataclasses.field(default_factory=FirmwareSettings)
    seed: int = 0

    def __call__(self, point: ScanPoint) -> dict:
        import tensorflow as tf

        from l1forge.firmware.estimate import estimate
        from l1forge.firmware.graph import describe_model
        from l1forge.firmware.hls import convert
        from l1forge.quantize.precision import Precision
        from l1forge.students.model import build_student

        tf.keras.utils.set_random_seed(self.seed)
        precision = Precision(weight_bits=point.weight_bits, activation_bits=point.activation_bits)
        model = build_student(self.n_inputs, self.n_outputs, self.hidden, precision)
        metric = float(self.metric(model))
        settings = self.settings.model_copy(update={"reuse_factor": point.reuse_factor})
        with tempfile.TemporaryDirectory() as tmp:
            hls_model = convert(model, precision.input, settings, pathlib.Path(tmp) / "hls", compile=False)
            report = estimate(*describe_model(hls_model), settings.clock_mhz)
        return {
            "metric": metric,
            **report["resources"],
            "latency_cycles": report["latency_cycles"],
            "latency_ns": report["latency_ns"],
            "ii_cycles": report["ii_cycles"],
            "source": report["source"],
        }
