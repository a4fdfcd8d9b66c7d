"""The anomaly task's block of summary.json (the one every task has) and its report section: AUC and efficiencies
at the L1 rates of every model and signal."""

from __future__ import annotations

import pathlib

from l1forge.report import EMULATED
from l1forge.tasks import base_report


def summary(task) -> dict:
    """The blocks every task has (the student's metrics and trigger block carry the anomaly figures)."""
    return base_report.summary(task)


def report_context(run_dir: pathlib.Path, block: dict) -> dict:
    """``anomaly_rows``: (model, signal, AUC, {rate: efficiency}) for every model and signal."""
    models = {f"{k.upper() if k == 'gnn' else k.capitalize()} teacher": t.get("metrics")
              for k, t in block.get("teachers", {}).items()}
    student = block.get("student", {})
    models.update({"Student (QKeras)": student.get("metrics"), "Baseline autoencoder": student.get("baseline_metrics"),
                   EMULATED: student.get("firmware_metrics")})
    return {"anomaly_rows": [(name, signal, m["auc"], m["efficiency"]) for name, metrics in models.items() if metrics
                             for signal, m in metrics["signals"].items()]}
