"""The summary blocks every task has, and the report module of a task without one of its own.

A task's report module (``Task.report_module``) defines ``summary(task)``, its block of ``summary.json``, and
``report_context(run_dir, block)``, the template variables of its section of ``report.html``; the figures are drawn
there, so that a task's stages never import matplotlib.
"""

from __future__ import annotations

import pathlib

import numpy as np

from l1forge.tasks.base import best_firmware


def spread(values: list[float], errors: list, lower_bound: bool = False) -> dict:
    """One metric over k trainings: {"mean", "spread" (standard deviation between the trainings), "stat"
    (statistical error of one training: the mean of the trainings' own ``errors``; None where one is unknown or
    ``lower_bound``), "values" (one per seed), "lower_bound" (some values are only 1-sigma lower bounds)}."""
    stat = None if lower_bound or None in errors else float(np.mean(errors))
    return {"mean": float(np.mean(values)), "spread": float(np.std(values, ddof=1)), "stat": stat,
            "values": [float(v) for v in values], "lower_bound": bool(lower_bound)}


def paired_over_seeds(differences: list[float], errors: list[float], n_sigma: float = 2.0) -> dict:
    """A verdict on A - B from k paired trainings (one difference per seed, each with its statistical error): the
    mean difference with the uncertainty sqrt(spread^2 / k + stat^2) (spread: the differences' standard deviation,
    0 for k = 1; stat: the mean of their errors, which the trainings on the same events share); "A" = A wins beyond
    ``n_sigma`` sigma, "B" = B wins, else "tie"."""
    k = len(differences)
    spread_ = float(np.std(differences, ddof=1)) if k > 1 else 0.0
    stat, mean = float(np.mean(errors)), float(np.mean(differences))
    err = float(np.hypot(spread_ / np.sqrt(k), stat))
    verdict = "tie" if abs(mean) <= n_sigma * err else ("A" if mean > 0 else "B")
    return {"difference": mean, "difference_err": err, "n_sigma": n_sigma, "verdict": verdict, "seeds": k,
            "differences": [float(d) for d in differences], "spread": spread_, "stat": stat}


def teacher_results(task) -> dict:
    """{kind: result of its teach stage} for the teachers ``task`` trained."""
    return {k: task.run.result(f"teach.{k}") for k in ("gnn", "transformer", "external")
            if f"teach.{k}" in task.run.state}


def summary(task) -> dict:
    """The blocks every task has: data, teachers, student, firmware, trigger timing, emulation, rtl."""
    result = lambda name: task.run.state.get(name, {}).get("result")  # noqa: E731
    block: dict = {}
    if data := result("generate"):
        # "path" is where generation wrote (stale in a copied run directory); "files" is where the data are now
        block["data"] = {**{k: v for k, v in data.items() if k != "path"}, "files": {"events": str(task.data_path)}}
    if teachers := teacher_results(task):
        block["teachers"] = {k: {"params": r["params"], "size": r["size"], "metrics": r["metrics"],
                                 "onnx": str(task.run.teacher(k) / "model.onnx")} if k != "external" else r
                             for k, r in teachers.items()}
    if student := result("distill.student"):
        baseline = result("distill.baseline") or {}
        block["student"] = {"params": student["params"], "bits": student["bits"], "hidden": student["hidden"],
                            "teacher": student["teacher"], "metrics": student["metrics"],
                            "baseline_metrics": baseline.get("metrics")}
    if firmware := result("synthesize"):
        from l1forge.emulation.trigger import check_timing

        block["firmware"] = {k: v for k, v in firmware.items() if k != "layers"}
        rates = (result("emulate") or {}).get("trigger") or {}
        if measured := (result("rtl") or {}).get("open_synthesis"):
            block["firmware"]["open_synthesis"] = measured
        best = best_firmware(block["firmware"])
        timing = check_timing(best["latency_ns"], best["ii_cycles"], best["clock_mhz"], task.cfg.trigger.budget_ns)
        block["trigger"] = {**rates, **timing, "n_bunches": task.cfg.trigger.n_bunches,
                            "timing_source": best["source"]}
    if emulation := result("emulate"):
        block["emulation"] = {k: emulation[k] for k in ("events_checked", "mismatches", "emulator_events_per_s",
                                                        "csim_events_per_s", "first_mismatch")}
        if "fidelity" in emulation:  # the firmware against the student's Keras model
            block["emulation"]["fidelity"] = emulation["fidelity"]
        if "student" in block:
            block["student"]["firmware_metrics"] = emulation["metrics"]
    if rtl := result("rtl"):
        block["rtl"] = {k: rtl["rtl"][k] for k in ("events_checked", "mismatches", "sim_events_per_s", "first_mismatch",
                                                   "latency_cycles", "clock_mhz", "unsupported", "layers")
                        if k in rtl["rtl"]}
        if package := rtl["rtl"].get("package"):
            block["rtl"]["package"] = package["dir"]
    if "firmware" in block:  # estimate, open synthesis and the published anchors, each with its stage and source
        from l1forge.rtl.anchors import side_by_side

        block["side_by_side"] = side_by_side(block["firmware"])
    return block


def report_context(run_dir: pathlib.Path, block: dict) -> dict:
    """No section of its own: the report shows the parts every task shares."""
    return {}
