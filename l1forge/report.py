"""Self-contained HTML report of a run: a section per task, plots embedded as base64 PNG.

Each section is the task's own part (``Task.report_context`` and its template) followed by the parts every task
shares: C-sim agreement, latency and resources, the 40 MHz trigger and the design-space scan. Sections whose
inputs are missing are omitted.
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

from l1forge.core.artifacts import atomic_path

log = logging.getLogger(__name__)

EMULATED = "Student (firmware emulation)"
RESOURCES = ("LUT", "FF", "DSP", "BRAM")


def png(fig, rlabel="") -> str:
    """Label the main axes and encode the figure as base64 PNG (Agg, no display)."""
    hep.label.exp_label(exp="l1forge", llabel="Simulation", rlabel=rlabel, ax=fig.axes[0])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def subplots(figsize):
    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def read_h5(path: pathlib.Path, *names):
    with h5py.File(path, "r") as f:
        return [f[n][()] for n in names]


def _agreement_plot(emulator, csim, names=None) -> str:
    fig, ax = subplots((6, 6))
    if names is None or len(names) != emulator.shape[1]:
        names = [f"output {k}" for k in range(emulator.shape[1])]
    for k, name in enumerate(names):
        ax.scatter(csim[:, k], emulator[:, k], s=6, alpha=0.5, label=name)
    lo, hi = min(csim.min(), emulator.min()), max(csim.max(), emulator.max())
    ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls=":")
    ax.set_xlabel("C-simulation output")
    ax.set_ylabel("Emulator output")
    ax.legend(title="class", fontsize="small", markerscale=2)
    return png(fig)


def _utilisation_plot(layers: list, part: str, source) -> str:
    """Per-resource utilisation of the part (%), stacked by layer."""
    from l1forge.firmware.parts import utilisation

    fig, ax = subplots((8, 4.5))
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
    return png(fig, rlabel=str(source or ""))


def _trigger_section(run_dir: pathlib.Path, trigger: dict | None) -> dict:
    """Timing checks, and the rate-versus-threshold curve of the emulated trigger score if it was computed."""
    path = run_dir / "emulation" / "trigger.h5"
    if not trigger or "threshold" not in trigger or not path.exists():
        return {"trigger": trigger, "rate_png": None}
    from l1forge.emulation.trigger import plot_rate_curve

    thresholds, rate, err = read_h5(path, "threshold", "rate_khz", "rate_khz_err")
    fig, ax = subplots((8, 5))
    plot_rate_curve(ax, thresholds, rate, err, trigger.get("target_rate_khz"))
    ax.set_xlabel(f"Threshold on {trigger['score']} (firmware emulation)")
    return {"trigger": trigger, "rate_png": png(fig, rlabel=f"pileup {trigger['pileup']:g}")}


def _scan_section(scan: dict | None) -> dict:
    """Pareto front of the design-space scan (accuracy vs estimated LUTs, latency as colour)."""
    if not scan:
        return {"scan": None}
    from l1forge.firmware.scan import plot_pareto

    fig, ax = subplots((8, 5))
    plot_pareto(ax, scan["points"], scan["front"])
    ax.set_ylabel(f"Test {scan['metric']} (QKeras)")
    return {"scan": scan, "scan_png": png(fig, rlabel="estimate")}


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


def _emulation_section(run_dir: pathlib.Path, emu: dict | None, output_names=None) -> dict:
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
            ctx["agreement_png"] = _agreement_plot(e, c, output_names)
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
    return {"firmware": fw, "resources": rows, "layers": layers, "resources_png": png,
            "side_by_side": _side_by_side(fw)}


def _side_by_side(fw: dict | None) -> list | None:
    """Rows (quantity, hls4ml-path figure, open synthesis of our RTL) when the rtl stage ran, with % of the part."""
    synth = (fw or {}).get("open_synthesis")
    if not synth:
        return None
    from l1forge.firmware.parts import utilisation

    pct = utilisation(synth["resources"], fw["part"])
    own = fw.get("utilisation_percent") or {}
    cell = lambda v, p: "n/a" if v is None else f"{v:,.0f}" + (f" ({p:.2g}%)" if p is not None else "")  # noqa: E731
    rows = [(r, cell(fw["resources"].get(r), own.get(r)), cell(synth["resources"].get(r), pct.get(r))) for r in RESOURCES]
    rows += [("CARRY4 / CARRY8", "n/a", f"{synth['CARRY4']:,} / {synth['CARRY8']:,}"),
             ("LUTs by inputs", "n/a", " ".join(f"{k}:{v}" for k, v in synth["LUT_by_inputs"].items() if v)),
             ("Latency", f"{fw['latency_cycles']} cycles / {fw['latency_ns']:.4g} ns",
              f"{synth['latency_cycles']} cycles / {synth['latency_ns']:.4g} ns"),
             ("II", f"{fw['ii_cycles']} cycles", f"{synth['ii_cycles']} cycles"),
             ("Clock", f"{fw['clock_mhz']:.4g} MHz (target)",
              f"{synth['clock_mhz']:.4g} MHz target, achievable ~{synth['achievable_clock_mhz']:.4g} MHz "
              f"({synth['logic_levels']} logic levels, {synth['critical_path_ns']:.3g} ns critical path)"),
             ("Source", str(fw.get("source")), f"{synth['source']} ({synth['seconds']:.0f} s)")]
    return rows


def write_report(root: pathlib.Path, summary: dict, task_dirs: dict | None = None) -> pathlib.Path:
    """Render ``root/report.html`` atomically from ``summary``: a section per task of ``summary["tasks"]``, each
    reading the plots' inputs from its run directory (``task_dirs[name]``, default ``root``)."""
    from l1forge.tasks import registry

    root = pathlib.Path(root)
    tasks = registry()
    env = _env()
    sections = []
    with matplotlib.style.context(hep.style.CMS):
        for name, block in summary.get("tasks", {}).items():
            run_dir = pathlib.Path((task_dirs or {}).get(name, root))
            task = tasks.get(name)
            own = task.report_context(run_dir, block) if task else {}
            ctx = {
                "task": name,
                "task_template": task.report_template if task else None,
                **own,
                **_emulation_section(run_dir, block.get("emulation"), own.get("classes")),
                **_firmware_section(run_dir, block.get("firmware")),
                "rtl": block.get("rtl"),
                "anchors": block.get("side_by_side"),
                **_trigger_section(run_dir, block.get("trigger")),
                **_scan_section(block.get("scan")),
            }
            sections.append(env.get_template("task.html.j2").render(**ctx))
    html = env.get_template("report.html.j2").render(
        version=summary.get("version"), preset=summary.get("preset"), tasks=list(summary.get("tasks", {})),
        sections=sections,
    )
    out = root / "report.html"
    with atomic_path(out) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return out
