"""The chain task's block of summary.json (the rates, the pileup student's checks, the latency and LUT budget) and its
report section (the rate versus pileup of every mitigation)."""

from __future__ import annotations

import pathlib

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from l1forge.report import EMULATED, png
from l1forge.tasks import base_report
from l1forge.tasks.base import best_firmware

METHOD_NAMES = {"none": "No mitigation", "chs": "CHS", "puppi": "PUPPI-like", "teacher": "Pileup teacher",
                "student": f"Pileup {EMULATED.lower()}", "truth": "Truth (PV candidates only)"}


def summary(task) -> dict:
    """The blocks every task has and the ``chain`` block; the pileup run's RTL check as it is now."""
    block = base_report.summary(task)
    result = lambda name: task.run.state.get(name, {}).get("result")  # noqa: E731
    if (emulation := result("emulate")) and (weights := result("weights")) and (pileup := result("pileup")):
        if (task.pileup_dir / "state.json").exists():  # its RTL check and open synthesis as they are now
            pileup = task.pileup_runner().summary()["tasks"]["pileup"]
        block["chain"] = {**emulation["chain"], "pileup_run": str(task.pileup_dir),
                          "pileup_student_csim": weights["pileup_student_csim"],
                          "pileup_student_rtl": pileup.get("rtl"),
                          "objects_latency": weights["objects_latency"],
                          "budget": _budget(pileup, weights, block.get("firmware"), task.cfg.trigger.budget_ns)}
    return block


def _budget(pileup: dict, weights: dict, anomaly_firmware: dict | None, budget_ns: float) -> dict:
    """The chain's latency (pileup student + object building + anomaly student, in series) and LUTs (the pileup
    student instances for the largest 99th-percentile crossing over the pileups + the anomaly student) against
    the trigger budget and the part, each student from its best-measured source (``best_firmware``)."""
    from l1forge.emulation.trigger import candidate_throughput
    from l1forge.firmware.parts import part_resources

    part = (pileup.get("firmware") or {}).get("part")
    firmware = best_firmware(pileup.get("firmware") or {})
    anomaly = best_firmware(anomaly_firmware or {})
    p99 = max(weights["student_candidates_p99"].values())
    instances = candidate_throughput(firmware, {"p99": p99})["per_pileup"]["p99"]["instances"]
    parts = {"pileup_student": firmware, "objects": weights["objects_latency"], "anomaly_student": anomaly}
    latency = sum(p.get("latency_ns") or 0.0 for p in parts.values())
    lut = instances * ((firmware.get("resources") or {}).get("LUT") or 0) + \
        (anomaly.get("resources") or {}).get("LUT", 0)
    part_lut = part_resources(part)["LUT"] if part else None
    return {"latency_ns": latency, "budget_ns": budget_ns, "latency_ok": latency <= budget_ns,
            "latency_ns_by_block": {k: p.get("latency_ns") for k, p in parts.items()},
            "sources": {k: p.get("source") for k, p in parts.items()},
            "pileup_student_instances": instances, "candidates_p99": p99, "LUT": lut,
            "LUT_percent_of_part": None if not part_lut else 100.0 * lut / part_lut,
            "fits_part": None if not part_lut else lut <= part_lut, "part": part}


def report_context(run_dir: pathlib.Path, block: dict) -> dict:
    """The ``chain`` block and the rate of every mitigation versus pileup, its threshold set at the reference."""
    chain = block.get("chain")
    if not chain:
        return {"chain": None}
    methods = chain["methods"]
    pileups = sorted(next(iter(methods.values()))["rates"], key=float)
    fig = Figure(figsize=(7, 5))
    ax = fig.subplots()
    colours = matplotlib.colormaps["tab10"].colors
    for n, (method, entry) in enumerate(methods.items()):
        rate = [entry["rates"][mu]["rate_khz"] for mu in pileups]
        err = np.array([entry["rates"][mu]["rate_khz_err"] for mu in pileups]).T
        ax.errorbar([float(mu) for mu in pileups], rate, yerr=err, marker="os^vD"[n % 5], capsize=3,
                    color=colours[n % 10], label=METHOD_NAMES.get(method, method))
    ax.axhline(chain["rate_khz_target"], color="grey", ls="--", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("Pileup")
    ax.set_ylabel(f"Rate [kHz], threshold set for {chain['rate_khz_target']:g} kHz at pileup "
                  f"{chain['reference_pileup']:g}")
    ax.legend(fontsize=9)
    return {"chain": chain, "chain_pileups": pileups, "chain_names": METHOD_NAMES, "chain_png": png(fig)}
