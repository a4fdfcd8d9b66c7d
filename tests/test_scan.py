"""Design-space scan: process-pool results equal serial ones, Pareto front, plotting (Dask: test_dask.py)."""

import dataclasses
import math
import pathlib

import pytest

from l1forge.core.executors import executor
from l1forge.tasks.tagging_scan import run_scan
from l1forge.firmware.hls import FirmwareSettings
from l1forge.firmware.scan import ScanPoint, StudentEstimate, pareto_front, plot_pareto, scan
from l1forge.rtl.check import open_synthesis


def tiny_evaluate(point: ScanPoint) -> dict:
    """Cheap, deterministic and picklable (module level): more bits cost LUTs, reuse costs latency."""
    bits = point.weight_bits + point.activation_bits
    return {
        "metric": 1.0 - 1.0 / bits,
        "LUT": 100 * bits // point.reuse_factor,
        "latency_ns": 4.0 * (3 + point.reuse_factor),
        "bits": bits,
    }


def parameter_count(model) -> float:
    """A caller's metric for the real evaluator (the lead will pass a trained-accuracy metric here)."""
    return model.count_params()


POINTS = [ScanPoint(4, 4, 1), ScanPoint(6, 6, 2), ScanPoint(8, 6, 4)]


def test_scan_process_pool_equals_serial():
    expected = [{**vars(p), **tiny_evaluate(p)} for p in POINTS]
    assert scan(POINTS, tiny_evaluate) == expected


def test_scan_with_a_given_executor_and_missing_keys():
    with executor("local") as pool:
        assert scan(POINTS[:2], tiny_evaluate, executor=pool) == scan(POINTS[:2], tiny_evaluate, executor=_Serial())
    with pytest.raises(ValueError, match=r"evaluation of ScanPoint\(.*\) has no LUT, latency_ns"):
        scan(POINTS[:1], _metric_only, executor=_Serial())


def _metric_only(point):
    return {"metric": 1.0}


class _Serial:
    """The smallest executor: the concurrent.futures ``map`` interface, in this process."""

    def map(self, fn, *iterables):
        return map(fn, *iterables)


def test_pareto_front_removes_dominated_and_keeps_ties():
    rows = [
        {"name": "a", "metric": 0.90, "LUT": 1000, "latency_ns": 50},
        {"name": "b", "metric": 0.80, "LUT": 500, "latency_ns": 50},
        {"name": "c", "metric": 0.80, "LUT": 600, "latency_ns": 50},  # dominated by b (more LUT)
        {"name": "d", "metric": 0.85, "LUT": 1000, "latency_ns": 60},  # dominated by a
        {"name": "e", "metric": 0.95, "LUT": 2000, "latency_ns": 20},
        {"name": "f", "metric": 0.80, "LUT": 500, "latency_ns": 50},  # tie with b: neither dominates
        {"name": "g", "metric": 0.80, "LUT": 500, "latency_ns": 55},  # dominated by b (slower only)
    ]
    assert [r["name"] for r in pareto_front(rows)] == ["b", "f", "a", "e"]
    # without latency, g ties b and f; c and d stay dominated
    assert [r["name"] for r in pareto_front(rows, minimize=("LUT",))] == ["b", "f", "g", "a", "e"]
    assert pareto_front([]) == []


def test_plot_pareto(tmp_path):
    from matplotlib.figure import Figure

    rows = scan(POINTS, tiny_evaluate, executor=_Serial())
    fig = Figure()
    ax = fig.add_subplot()
    points = plot_pareto(ax, rows, pareto_front(rows))
    assert len(points.get_offsets()) == len(rows)
    assert ax.get_xlabel() == "LUT" and ax.get_legend() is not None
    fig.savefig(tmp_path / "pareto.png")


def test_real_student_point_end_to_end():
    """One point through the real evaluator, in the default (spawned) process pool, equals the serial call."""
    evaluate = StudentEstimate(parameter_count, n_inputs=8, n_outputs=3, hidden=(8,))
    point = ScanPoint(weight_bits=4, activation_bits=4, reuse_factor=2)
    [row] = scan([point], evaluate)
    assert row == {**vars(point), **evaluate(point)}
    assert row["metric"] == 8 * 8 + 8 + 8 * 3 + 3
    assert row["source"] == "estimate" and row["ii_cycles"] == 2
    assert row["LUT"] > 0 and math.isclose(row["latency_ns"], row["latency_cycles"] * 1000 / 240.0)


def test_constituent_points_on_the_same_scan():
    """family x N x bits: the deepsets student (phi 4-4, head 4) is costed at II 1 (pointwise convolutions on every
    constituent at once), its parameters do not depend on N, its LUTs grow with N; the plot marks each design."""
    from matplotlib.figure import Figure

    from l1forge.tasks.tagging_scan import scan_points

    points = scan_points((4,), (1,), ("hlf", "deepsets"), (4, 8))
    assert [(p.family, p.n_constituents) for p in points] == [("hlf", 0), ("deepsets", 4), ("deepsets", 8)]
    assert [p.activation_bits for p in points] == [4, 6, 6]  # constituent activations: 2 integer bits on top
    evaluate = StudentEstimate(parameter_count, n_inputs=8, n_outputs=3, hidden=(8,), phi=(4, 4), head=(4,))
    rows = scan(points, evaluate, executor=_Serial())
    hlf, ds4, ds8 = rows
    assert ds4["params"] == ds8["params"] == 4 * 4 + 4 * 4 + (4 * 4 + 4) + (4 * 3 + 3) == ds4["metric"]  # 4-value words
    assert hlf["params"] == 8 * 8 + 8 + 8 * 3 + 3
    assert ds4["ii_cycles"] == ds8["ii_cycles"] == 1 and ds4["LUT"] < ds8["LUT"]
    with_jet = dataclasses.replace(evaluate, jet_word=True)(points[1])  # 5-value words: the jet flag's column
    assert with_jet["params"] == 5 * 4 + 4 * 4 + (4 * 4 + 4) + (4 * 3 + 3) and with_jet["LUT"] > ds4["LUT"]
    fig = Figure()
    ax = fig.add_subplot()
    plot_pareto(ax, rows, pareto_front(rows))
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"hlf MLP", "deepsets N=4", "deepsets N=8"}


def test_open_synthesis_per_point():
    """synthesis='open': each point's RTL through Yosys in the scan's executor; the estimate kept beside it."""
    evaluate = StudentEstimate(parameter_count, n_inputs=4, n_outputs=2, hidden=(3,), synthesize=open_synthesis)
    point = ScanPoint(weight_bits=4, activation_bits=4, reuse_factor=1)
    [row] = scan([point], evaluate, executor=_Serial())
    assert row["source"].startswith("yosys 0.") and row["source"].endswith("synth_xilinx xcup")
    assert row["LUT"] > 0 and row["CARRY4"] > 0 and row["FF"] > 0 and row["rtl_ii_cycles"] == 1
    assert row["estimate_LUT"] > 0 and row["latency_cycles"] >= 2
    assert math.isclose(row["latency_ns"], row["latency_cycles"] * 1000 / 240.0, rel_tol=1e-3)
    with pytest.raises(ValueError, match="'estimate' or 'open'"):
        run_scan(pathlib.Path("."), "gnn", {"hidden": [3], "seed": 0}, FirmwareSettings(), [point], synthesis="vivado")
