"""Self-contained HTML report of a run directory (jet tagging, anomaly detection or pileup mitigation).

Reads `summary.json` blocks (passed in) plus the score files of the run and
renders `report.html` with plots embedded as base64 PNG. Sections whose inputs
are missing are omitted.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import pathlib

import h5py
import jinja2
import matplotlib
import matplotlib.style
import mplhep as hep
import numpy as np
from matplotlib.figure import Figure

from l1forge import metrics
from l1forge.io import atomic_path

log = logging.getLogger(__name__)

CLASSES = ("g", "q", "w", "z", "t")
TEST_SPLIT = 2
MODELS = (  # (label, score file relative to the run dir)
    ("GNN teacher", "teachers/gnn/predictions.h5"),
    ("Transformer teacher", "teachers/transformer/predictions.h5"),
    ("Student (QKeras)", "students/student/predictions.h5"),
    ("Baseline", "students/baseline/predictions.h5"),
)
EMULATED = "Student (firmware emulation)"
RESOURCES = ("LUT", "FF", "DSP", "BRAM")


def _png(fig, rlabel="") -> str:
    """Label the main axes and encode the figure as base64 PNG (Agg, no display)."""
    hep.label.exp_label(exp="l1forge", llabel="Simulation", rlabel=rlabel, ax=fig.axes[0])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _subplots(figsize):
    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def _read(path: pathlib.Path, *names):
    with h5py.File(path, "r") as f:
        return [f[n][()] for n in names]


def _scores(run_dir: pathlib.Path, labels, split):
    """{model label: (labels, logits)} on test jets for every score file present."""
    test = split == TEST_SPLIT if split is not None and (split == TEST_SPLIT).any() else slice(None)
    out = {}
    for name, rel in MODELS:
        path = run_dir / rel
        if not path.exists():
            continue
        (logits,) = _read(path, "logits")
        if len(logits) != len(labels):
            log.warning("%s has %d rows, data has %d: skipped", rel, len(logits), len(labels))
            continue
        out[name] = (labels[test], logits[test])
    emu = run_dir / "emulation/outputs.h5"
    if emu.exists():
        logits, index = _read(emu, "emulator", "index")
        out[EMULATED] = (labels[index], logits)
    return out


def _roc_plot(scores) -> str:
    fig, ax = _subplots((7, 5.5))
    for name, (y, logits) in scores.items():
        eff, rej = metrics.top_vs_qcd_roc(y, logits, CLASSES)
        if len(eff):
            ax.plot(eff, rej, label=name, ls="--" if name == EMULATED else "-")
    ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.set_xlabel("Signal efficiency (t)")
    ax.set_ylabel("Background rejection 1/$\\varepsilon_B$ (g+q)")
    ax.legend(fontsize="small")
    return _png(fig)


def _confusion_plot(y, logits) -> str:
    c = metrics.confusion(y, logits, len(CLASSES))
    fig, ax = _subplots((7.5, 6))
    im = ax.imshow(c, cmap="Blues", vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(c):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=12,
                color="white" if v > 0.5 else "black")
    ax.set_xticks(range(len(CLASSES)), CLASSES)
    ax.set_yticks(range(len(CLASSES)), CLASSES)
    ax.minorticks_off()
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _png(fig)


def _agreement_plot(emulator, csim) -> str:
    fig, ax = _subplots((6, 6))
    names = CLASSES if emulator.shape[1] == len(CLASSES) else [f"output {k}" for k in range(emulator.shape[1])]
    for k, name in enumerate(names):
        ax.scatter(csim[:, k], emulator[:, k], s=6, alpha=0.5, label=name)
    lo, hi = min(csim.min(), emulator.min()), max(csim.max(), emulator.max())
    ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls=":")
    ax.set_xlabel("C-simulation output")
    ax.set_ylabel("Emulator output")
    ax.legend(title="class", fontsize="small", markerscale=2)
    return _png(fig)


def _utilisation_plot(layers: list, part: str, source) -> str:
    """Per-resource utilisation of the part (%), stacked by layer."""
    from firmware.parts import utilisation

    fig, ax = _subplots((8, 4.5))
    left = np.zeros(len(RESOURCES))
    for row in layers:
        pct = utilisation({r: row.get(r, 0) for r in RESOURCES}, part)
        values = np.array([pct[r] for r in RESOURCES])
        if values.any():
            ax.barh(RESOURCES, values, left=left, label=row["name"])
            left += values
    for i, total in enumerate(left):
        ax.text(total, i, f" {total:.2g}%", va="center")
    ax.set_xlabel(f"Utilisation of {part} (%)")
    ax.set_xlim(0, max(left.max(), 1e-3) * 1.3)
    ax.legend(fontsize="xx-small", ncols=2, loc="upper right")
    return _png(fig, rlabel=str(source or ""))


def _trigger_section(run_dir: pathlib.Path, trigger: dict | None) -> dict:
    """Timing checks, and the rate-versus-threshold curve of the emulated trigger score if it was computed."""
    path = run_dir / "emulation" / "trigger.h5"
    if not trigger or "threshold" not in trigger or not path.exists():
        return {"trigger": trigger, "rate_png": None}
    from emulation.trigger import plot_rate_curve

    thresholds, rate, err = _read(path, "threshold", "rate_khz", "rate_khz_err")
    fig, ax = _subplots((8, 5))
    plot_rate_curve(ax, thresholds, rate, err, trigger.get("target_rate_khz"))
    ax.set_xlabel(f"Threshold on {trigger['score']} (firmware emulation)")
    return {"trigger": trigger, "rate_png": _png(fig, rlabel=f"pileup {trigger['pileup']:g}")}


def _scan_section(scan: dict | None) -> dict:
    """Pareto front of the design-space scan (accuracy vs estimated LUTs, latency as colour)."""
    if not scan:
        return {"scan": None}
    from firmware.scan import plot_pareto

    fig, ax = _subplots((8, 5))
    plot_pareto(ax, scan["points"], scan["front"])
    ax.set_ylabel(f"Test {scan['metric']} (QKeras)")
    return {"scan": scan, "scan_png": _png(fig, rlabel="estimate")}


def _data_section(data: dict | None, labels, split):
    """Rows (class, train, val, test, total) from the data file, else from summary."""
    if labels is not None:
        parts = [labels[split == s] for s in range(3)] if split is not None else []
        rows = [[c] + [int((p == k).sum()) for p in parts] + [int((labels == k).sum())]
                for k, c in enumerate(CLASSES)]
        return {"columns": ["train", "val", "test", "total"] if parts else ["total"], "rows": rows}
    if data and data.get("per_class"):
        pc = data["per_class"]
        pc = pc if isinstance(pc, dict) else dict(zip(CLASSES, pc))
        return {"columns": ["total"], "rows": [[c, n] for c, n in pc.items()]}
    return None


def _fmt(value, spec=".3f"):
    """Jinja filter: format a number, em dash for None."""
    if value is None:
        return "\u2014"
    return format(value, spec) if isinstance(value, float) else str(value)


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("l1forge", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = _fmt
    return env


def _model_rows(scores, task):
    """Metrics table rows, with parameter counts from the summary where known."""
    student = task.get("student", {}).get("params")
    params = {
        "GNN teacher": task.get("teachers", {}).get("gnn", {}).get("params"),
        "Transformer teacher": task.get("teachers", {}).get("transformer", {}).get("params"),
        "Student (QKeras)": student,
        "Baseline": student,  # the same network, trained on labels alone
        EMULATED: student,
    }
    return [{"name": n, "params": params.get(n), **metrics.classification_metrics(y, lg, CLASSES)}
            for n, (y, lg) in scores.items()]


def _emulation_section(run_dir: pathlib.Path, emu: dict | None) -> dict:
    ctx = {"emulation": emu, "first_mismatch": None, "agreement_png": None, "max_abs_diff": None}
    if not emu:
        return ctx
    if emu.get("first_mismatch"):
        ctx["first_mismatch"] = json.dumps(emu["first_mismatch"], indent=2)
    outputs = run_dir / "emulation/outputs.h5"
    if outputs.exists():
        with h5py.File(outputs, "r") as f:
            e, c = f["emulator"][()], f["csim"][()] if "csim" in f else None
        if c is not None and c.size and c.shape == e.shape:
            ctx["agreement_png"] = _agreement_plot(e, c)
            ctx["max_abs_diff"] = float(np.abs(e - c).max())
    return ctx


def _firmware_section(run_dir: pathlib.Path, fw: dict | None) -> dict:
    """Totals with their share of the part, per-layer rows (from firmware/firmware.json) and the utilisation plot."""
    res = (fw or {}).get("resources") or {}
    pct = (fw or {}).get("utilisation_percent") or {}
    rows = [(r, res[r], pct.get(r)) for r in RESOURCES if r in res]
    path = run_dir / "firmware" / "firmware.json"
    layers = json.loads(path.read_text()).get("layers", []) if fw and path.exists() else []
    png = _utilisation_plot(layers, fw["part"], fw.get("source")) if layers and pct else None
    return {"firmware": fw, "resources": rows, "layers": layers, "resources_png": png}


def _anomaly_rows(task: dict) -> list:
    """(model, signal, AUC, {rate: efficiency}) for every model and signal of the anomaly task."""
    models = {f"{k.upper() if k == 'gnn' else k.capitalize()} teacher": t.get("metrics") for k, t in task.get("teachers", {}).items()}
    student = task.get("student", {})
    models.update({"Student (QKeras)": student.get("metrics"), "Baseline autoencoder": student.get("baseline_metrics"),
                   EMULATED: student.get("firmware_metrics")})
    return [(name, signal, m["auc"], m["efficiency"])
            for name, metrics in models.items() if metrics for signal, m in metrics["signals"].items()]


PILEUP_METHODS = {"none": "No mitigation", "chs": "CHS", "puppi": "PUPPI-like", "gnn": "GNN teacher",
                  "transformer": "Transformer teacher", "student": "Student (QKeras)", "student_firmware": EMULATED,
                  "truth": "Truth (PV candidates only)"}


def _pileup_section(block: dict | None) -> dict:
    """Resolution table (method x pileup), MET and jet resolution versus pileup, goals and throughput."""
    if not block:
        return {"pileup_rows": None}
    table = block["resolution"]
    pileups = sorted(table, key=float)
    rows = [(PILEUP_METHODS.get(m, m), mu, table[mu][m]) for m in table[pileups[0]] for mu in pileups]
    fig = Figure(figsize=(14, 5.5))
    axes = fig.subplots(1, 2)
    fig.subplots_adjust(wspace=0.3)
    x = [float(mu) for mu in pileups]
    methods = [m for m in table[pileups[0]] if m != "student"]  # the QKeras student: the same as its firmware
    colours = matplotlib.colormaps["tab10"].colors
    for n, method in enumerate(methods):
        for ax, get in zip(axes, (lambda e: e["met"]["resolution_gev"], lambda e: e["jets"]["pt_resolution"])):
            ax.plot(x, [get(table[mu][method]) for mu in pileups], "os^vD<>p"[n % 8] + "-", color=colours[n % 10],
                    label=PILEUP_METHODS.get(method, method))
    axes[0].set_ylabel("MET resolution [GeV]")
    axes[1].set_ylabel("Jet $p_T$ resolution")
    for ax in axes:
        ax.set_xlabel("Pileup")
    axes[1].legend(fontsize=9)
    return {"pileup_rows": rows, "pileup_goals": block["goals"], "pileup_throughput": block["throughput"],
            "pileup_teacher": block["teacher"], "pileup_png": _png(fig)}


def write_report(run_dir: pathlib.Path, summary: dict) -> pathlib.Path:
    """Render `run_dir/report.html` atomically from `summary` and the run's score files."""
    with matplotlib.style.context(hep.style.CMS):
        return _write_report(pathlib.Path(run_dir), summary)


def _write_report(run_dir: pathlib.Path, summary: dict) -> pathlib.Path:
    if "pileup" in summary.get("tasks", {}):
        return _render(run_dir, summary, "pileup", _pileup_section(summary["tasks"]["pileup"].get("pileup")))
    if "anomaly" in summary.get("tasks", {}):
        return _render(run_dir, summary, "anomaly", {"anomaly_rows": _anomaly_rows(summary["tasks"]["anomaly"])})
    task = summary.get("tasks", {}).get("tagging", {})
    labels = split = None
    if (run_dir / "data/jets.h5").exists():
        with h5py.File(run_dir / "data/jets.h5", "r") as f:
            labels = f["labels"][()].astype(np.int64)
            split = f["split"][()] if "split" in f else None
    scores = _scores(run_dir, labels, split) if labels is not None else {}
    cm_model = EMULATED if EMULATED in scores else "Student (QKeras)"

    return _render(run_dir, summary, "tagging", {
        "classes": CLASSES,
        "data_info": task.get("data"),
        "data": _data_section(task.get("data"), labels, split),
        "models": _model_rows(scores, task),
        "student_bits": task.get("student", {}).get("bits"),
        "roc_png": _roc_plot(scores) if scores else None,
        "confusion_model": cm_model,
        "confusion_png": _confusion_plot(*scores[cm_model]) if cm_model in scores else None,
    })


def _render(run_dir: pathlib.Path, summary: dict, name: str, task_ctx: dict) -> pathlib.Path:
    """The sections every task shares (emulation, firmware, trigger, scan) plus the task's own, written atomically."""
    task = summary.get("tasks", {}).get(name, {})
    ctx = {
        "version": summary.get("version"),
        "preset": summary.get("preset"),
        "task": name,
        **task_ctx,
        **_emulation_section(run_dir, task.get("emulation")),
        **_firmware_section(run_dir, task.get("firmware")),
        **_trigger_section(run_dir, task.get("trigger")),
        **_scan_section(task.get("scan")),
    }
    html = _env().get_template("report.html.j2").render(**ctx)
    out = run_dir / "report.html"
    with atomic_path(out) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return out
