"""The pileup task's block of summary.json and its report section: the resolution table, MET and jet resolution
versus pileup, the goals, the regional cap and the network's throughput."""

from __future__ import annotations

import pathlib

import matplotlib
from matplotlib.figure import Figure

from l1forge.report import EMULATED, png
from l1forge.tasks import base_report

METHODS = {"none": "No mitigation", "chs": "CHS", "puppi": "PUPPI-like", "gnn": "GNN teacher (truth)",
           "transformer": "Transformer teacher (truth)", "gnn_ot": "GNN teacher (optimal transport)",
           "transformer_ot": "Transformer teacher (optimal transport)", "student": "Student (QKeras)",
           "student_firmware": EMULATED, "truth": "Truth (PV fraction)"}


def summary(task) -> dict:
    """The blocks every task has; each teacher (truth and optimal-transport ones) with its ``training``, its
    per-candidate AUCs and training time; the sample's calorimeter model; the ``pileup`` block of the emulate stage."""
    block = base_report.summary(task)
    teachers = {name: task.run.result(f"teach.{name}") for name in task.trained_teachers()}
    if teachers:
        block["teachers"] = {name: {"params": r["params"], "size": r["size"], "training": r.get("training", "truth"),
                                    "metrics": r["metrics"], "onnx": str(task.run.teacher(name) / "model.onnx"),
                                    **{k: r.get(k) for k in ("best_val_loss", "val_auc", "val_auc_neutral",
                                                             "train_seconds", "steps", "device")}}
                             for name, r in teachers.items()}
    if data := block.get("data"):
        data.setdefault("calorimeter", "particles")
        data.setdefault("paired", False)
    if emulation := task.run.state.get("emulate", {}).get("result"):
        block["pileup"] = {k: emulation.get(k) for k in ("resolution", "goals", "throughput", "teacher", "region_cap")}
        block["pileup"]["calorimeter"] = (block.get("data") or {}).get("calorimeter")
        block["emulation"]["emulator_all_candidates_per_s"] = emulation["emulator_all_candidates_per_s"]
    return block


def report_context(run_dir: pathlib.Path, block: dict) -> dict:
    """Resolution table (method x pileup), MET and jet resolution versus pileup, goals and throughput."""
    pileup = block.get("pileup")
    if not pileup:
        return {"pileup_rows": None}
    table = pileup["resolution"]
    pileups = sorted(table, key=float)
    rows = [(METHODS.get(m, m), mu, table[mu][m]) for m in table[pileups[0]] for mu in pileups]
    fig = Figure(figsize=(14, 5.5))
    axes = fig.subplots(1, 2)
    fig.subplots_adjust(wspace=0.3)
    x = [float(mu) for mu in pileups]
    methods = [m for m in table[pileups[0]] if m != "student"]  # the QKeras student: the same as its firmware
    colours = matplotlib.colormaps["tab10"].colors
    for n, method in enumerate(methods):
        for ax, get in zip(axes, (lambda e: e["met"]["resolution_gev"], lambda e: e["jets"]["pt_resolution"])):
            ax.plot(x, [get(table[mu][method]) for mu in pileups], "os^vD<>p"[n % 8] + "-", color=colours[n % 10],
                    label=METHODS.get(method, method))
    axes[0].set_ylabel("MET resolution [GeV]")
    axes[1].set_ylabel("Jet $p_T$ resolution")
    for ax in axes:
        ax.set_xlabel("Pileup")
    axes[1].legend(fontsize=9)
    return {"pileup_rows": rows, "pileup_goals": pileup["goals"], "pileup_throughput": pileup["throughput"],
            "pileup_teacher": pileup["teacher"], "pileup_region_cap": pileup.get("region_cap"), "pileup_png": png(fig)}
