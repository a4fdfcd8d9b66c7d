"""The anomaly task's block of summary.json (the one every task has) and its report section: AUC and efficiencies
at the L1 rates of every model and signal."""

from __future__ import annotations

import pathlib

import numpy as np

from l1forge.report import EMULATED
from l1forge.tasks import base_report


def summary(task) -> dict:
    """The blocks every task has (the student's metrics and trigger block carry the anomaly figures) and, for
    ``seeds: k > 1``, ``student.seeds``."""
    block = base_report.summary(task)
    student, baseline = (task.run.state.get(f"distill.{m}", {}).get("result") or {} for m in ("student", "baseline"))
    if "student" in block and "seeds" in student and "seeds" in baseline:
        block["student"]["seeds"] = seeds_block(student, baseline)
    return block


def seeds_block(student: dict, baseline: dict) -> dict:
    """The k trainings of the student and of the autoencoder baseline: the seeds, the one the firmware was built
    from, and per model and signal the AUC and the efficiency at each rate as ``base_report.spread`` (stat of an
    efficiency: the mean half-width of its 68% Clopper-Pearson intervals; AUC: None), and per signal and rate the
    verdict on student minus baseline efficiency paired over seeds (``base_report.paired_over_seeds``; the error of
    each difference adds both intervals' half-widths in quadrature, ignoring their correlation: conservative)."""
    half = lambda m, rate: float(np.mean(m["efficiency_err"][rate]))  # noqa: E731
    per_seed = {name: [r["signals"] for r in result["seeds"].values()]
                for name, result in (("student", student), ("baseline", baseline))}
    block = {"seeds": [int(seed) for seed in student["seeds"]], "firmware_seed": student["median_seed"],
             "baseline_median_seed": baseline["median_seed"], "student_vs_baseline": {}}
    for name, seeds in per_seed.items():
        block[name] = {signal: {"auc": base_report.spread([s[signal]["auc"] for s in seeds], [None] * len(seeds)),
                                **{f"efficiency_{rate}": base_report.spread([s[signal]["efficiency"][rate] for s in seeds],
                                                                            [half(s[signal], rate) for s in seeds])
                                   for rate in seeds[0][signal]["efficiency"]}}
                       for signal in seeds[0]}
    for signal, first in per_seed["student"][0].items():
        pairs = list(zip(per_seed["student"], per_seed["baseline"]))
        block["student_vs_baseline"][signal] = {
            rate: base_report.paired_over_seeds([a[signal]["efficiency"][rate] - b[signal]["efficiency"][rate]
                                                 for a, b in pairs],
                                                [float(np.hypot(half(a[signal], rate), half(b[signal], rate)))
                                                 for a, b in pairs])
            for rate in first["efficiency"]}
    return block


def report_context(run_dir: pathlib.Path, block: dict) -> dict:
    """``anomaly_rows``: (model, signal, AUC, {rate: efficiency}) for every model and signal."""
    models = {f"{k.upper() if k == 'gnn' else k.capitalize()} teacher": t.get("metrics")
              for k, t in block.get("teachers", {}).items()}
    student = block.get("student", {})
    models.update({"Student (QKeras)": student.get("metrics"), "Baseline autoencoder": student.get("baseline_metrics"),
                   EMULATED: student.get("firmware_metrics")})
    return {"anomaly_rows": [(name, signal, m["auc"], m["efficiency"]) for name, metrics in models.items() if metrics
                             for signal, m in metrics["signals"].items()],
            "anomaly_seeds": student.get("seeds")}
