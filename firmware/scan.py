"""Design-space scan of a student over weight/activation bit widths and reuse factors, and its Pareto front.

``scan`` maps any picklable ``evaluate(point) -> dict`` over the points with an executor that has the
``concurrent.futures.Executor.map`` interface (only ``map`` is used), by default a local pool of 2 processes; any
executor of ``l1forge.core.executors.executor`` ("local", or "dask": a running Dask cluster by its address, or a
``distributed.LocalCluster`` started for the scan) runs the points there.
"""

from __future__ import annotations

import dataclasses
import pathlib
import tempfile
from typing import Callable

from l1forge.core.executors import executor as named_executor
from l1forge.firmware.hls import FirmwareSettings

REQUIRED = ("metric", "LUT", "latency_ns")


@dataclasses.dataclass(frozen=True)
class ScanPoint:
    """One design: QKeras weight and activation bit widths, the hls4ml reuse factor and the student family
    ("hlf": the MLP on jet features; "deepsets" or "mixer": students/deepsets.py on ``n_constituents`` constituents)."""

    weight_bits: int
    activation_bits: int
    reuse_factor: int = 1
    family: str = "hlf"
    n_constituents: int = 0  # constituent students only


def scan(points, evaluate: Callable[[ScanPoint], dict], executor=None) -> list[dict]:
    """``evaluate`` every point in parallel on ``executor`` (None: a local pool of 2 processes, closed afterwards);
    one dict per point, in order: the point's fields and the evaluation, which must hold at least "metric", "LUT"
    and "latency_ns" (ValueError naming the point otherwise)."""
    points = list(points)
    if executor is None:
        with named_executor("local", None, 2) as pool:
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
    """Metric against LUTs on ``ax``, coloured by latency, one marker per design family (the HLF MLP and each
    deepsets N, labelled when there is more than one), the front ringed in red; returns the last scatter."""
    lat = [row[latency] for row in results]
    designs: dict = {}
    for row in results:
        family = row.get("family", "hlf")
        designs.setdefault(family + (f" N={row['n_constituents']}" if family != "hlf" else " MLP"), []).append(row)
    for (name, rows), marker in zip(designs.items(), "osD^vP*X"):
        points = ax.scatter(
            [row["LUT"] for row in rows],
            [row[maximize] for row in rows],
            c=[row[latency] for row in rows],
            cmap="viridis",
            vmin=min(lat),
            vmax=max(lat),
            s=30,
            marker=marker,
            edgecolors="black" if len(designs) > 1 else "none",
            linewidths=0.4,
            label=name if len(designs) > 1 else None,
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
    that trains the model in place is costed with its trained weights. It returns a number, or a dict holding
    "metric" and any other fields for the result row (e.g. uncertainties, R50). A "deepsets" or "mixer" point
    builds students/deepsets.py ``build_constituent_student`` with ``phi`` and ``head`` on (n_constituents, 4) words
    (with ``jet_word``, (n_constituents, 5): the jet word in the last slot);
    its activations keep the family's integer bits (quantize/precision.py ``FAMILY_ACTIVATIONS``).

    ``synthesize`` (a picklable ``fn(graph, clock_mhz, work_dir)``, e.g. ``l1forge.rtl.check.open_synthesis``)
    costs each point by open synthesis instead: the RTL of the firmware graph through Yosys (one process per
    point: the scan's workers are the parallelism), LUT/FF/DSP/BRAM and latency from that, ``"source": "yosys ... synth_xilinx xcup"``; the estimate's
    LUT, FF and latency stay in the row as ``estimate_*``. The RTL is fully parallel (II 1) whatever the reuse
    factor, so with reuse > 1 the open-synthesis row is the II-1 design (``"rtl_ii_cycles": 1``).
    """

    metric: Callable
    n_inputs: int = 16
    n_outputs: int = 5
    hidden: tuple = (64, 32, 32)
    phi: tuple = (16, 16)
    head: tuple = (32,)
    jet_word: bool = False  # constituent students: the jet word in the last slot (students/deepsets.py)
    settings: FirmwareSettings = dataclasses.field(default_factory=FirmwareSettings)
    seed: int = 0
    synthesize: Callable | None = None  # open synthesis of the point's firmware graph instead of the estimate

    def __call__(self, point: ScanPoint) -> dict:
        import tensorflow as tf

        from l1forge.firmware.estimate import estimate
        from l1forge.firmware.describe import describe_model
        from l1forge.firmware.hls import convert
        from l1forge.quantize.precision import Precision
        from l1forge.students.model import build_student

        tf.keras.utils.set_random_seed(self.seed)
        precision = Precision.for_family(point.family, weight_bits=point.weight_bits,
                                         activation_bits=point.activation_bits)
        if point.family != "hlf":
            from l1forge.quantize.l1words import L1_JET
            from l1forge.students.deepsets import ConstituentInputs, build_constituent_student

            inputs = ConstituentInputs(point.n_constituents, jet=L1_JET if self.jet_word else None)
            model = build_constituent_student(point.family, *inputs.shape, self.n_outputs, self.phi, self.head,
                                              precision)
        else:
            model = build_student(self.n_inputs, self.n_outputs, self.hidden, precision)
        measured = self.metric(model)
        measured = dict(measured) if isinstance(measured, dict) else {"metric": float(measured)}
        settings = self.settings.model_copy(update={"reuse_factor": point.reuse_factor})
        with tempfile.TemporaryDirectory() as tmp:
            hls_model = convert(model, precision.input, settings, pathlib.Path(tmp) / "hls", compile=False)
            graph = describe_model(hls_model)
            report = estimate(graph, clock_mhz=settings.clock_mhz)
            row = {
                **measured,
                "params": int(model.count_params()),
                **report["resources"],
                "latency_cycles": report["latency_cycles"],
                "latency_ns": report["latency_ns"],
                "ii_cycles": report["ii_cycles"],
                "source": report["source"],
            }
            if self.synthesize is not None:
                synth = self.synthesize(graph, settings.clock_mhz, tmp)
                row.update({f"estimate_{k}": row[k] for k in ("LUT", "FF", "DSP", "BRAM", "latency_cycles", "latency_ns")})
                row.update(synth["resources"], latency_cycles=synth["latency_cycles"], latency_ns=synth["latency_ns"],
                           source=synth["source"], CARRY4=synth["CARRY4"], rtl_ii_cycles=synth["ii_cycles"],
                           achievable_clock_mhz=synth["achievable_clock_mhz"], yosys_seconds=synth["seconds"])
        return row
