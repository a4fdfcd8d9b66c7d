"""The ``l1forge`` command: every stage of the flow, or all of them (``l1forge run``)."""

from __future__ import annotations

import json
import logging
import os
import pathlib
import sys
import warnings
from typing import Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: see l1forge/teachers/__init__.py

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.logging import RichHandler  # noqa: E402

from l1forge.core import executors  # noqa: E402

warnings.filterwarnings("ignore", category=UserWarning, module="keras")
app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console(stderr=True)

OUT = typer.Option(pathlib.Path("runs/demo"), "--out", "-o", help="Run directory.")
PRESET = typer.Option("demo", "--preset", "-p", help="smoke | demo | medium | full")
CONFIG = typer.Option(None, "--config", "-c", help="YAML file overriding the preset.")
TASK = typer.Option("tagging", "--task", help="Task: tagging | anomaly | pileup | chain.")
TASK_OR_ALL = typer.Option("tagging", "--task", help="Task: tagging | anomaly | pileup | chain, or all (each in OUT/<task>/).")
PROCESS = typer.Option(None, "--process", help="Anomaly task: a file of Pythia settings, one more signal (repeatable).")
DATA = typer.Option(None, "--data", help="Jets from your files (a file or a quoted glob): the hls4ml LHC jet HDF5 or "
                    "OpenML table, top tagging, JetClass ROOT are recognised; other files need --data-mapping.")
STUDENT = typer.Option(None, "--student", help="Your student: a QKeras/Keras model file (architecture and quantizers "
                       "kept, weights distilled) or module:function building one (tagging).")
SEEDS = typer.Option(None, "--seeds", help="Trainings of the student and its label twin (seeds student.seed, +1, ...): "
                     "metrics as mean, spread and statistical error; default: seeds of the config (3, smoke 1).")
TEACHER = typer.Option(None, "--teacher", help="A teacher trained elsewhere (tagging): MODEL.onnx (its inputs from "
                       "--teacher-config) or a file of its logits/probabilities (.npy, .h5, weaver's .root/.parquet).")
TEACHER_CONFIG = typer.Option(None, help="weaver-core data configuration (YAML) or l1forge mapping of --teacher's inputs.")
DATA_MAPPING = typer.Option(None, help="YAML mapping of --data files in no published layout (docs/formats.md).")
EXECUTOR = typer.Option(None, help="Where parallel work runs: local (processes here) | dask; default: data.executor.")
ADDRESS = typer.Option(None, help="A running Dask scheduler, tcp://host:port (dask without it: a cluster of "
                                  "data.workers processes here); default: data.address.")
FORCE = typer.Option(False, "--force", help="Redo stages even if they are up to date.")
DEVICE = typer.Option(None, "--device", help="Where torch teachers train: auto (CUDA when torch sees a GPU) | cpu | "
                                            "cuda; default: device of the config (auto).")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bars.")
MODEL = typer.Option(None, help="A saved QKeras/Keras model (.h5 or SavedModel) instead of the flow's student.")
HLS_CONFIG = typer.Option(None, help="hls4ml config (YAML/JSON) for --model; used as given (--input-type, if given, sets its inputs).")
INPUT_TYPE = typer.Option(None, help="Input type for --model, e.g. 'fixed<16,6,RND_CONV,SAT>'; default: the input quantizer's, else fixed<16,6,RND_CONV,SAT>.")


def _config(task, preset, config, processes=(), executor=None, address=None, device=None, overrides=None,
            defaults=None):
    """The validated configuration with the command's options as overrides (``overrides``: more sections, e.g.
    from ``_brought``)."""
    from l1forge.config import ConfigError, load_config

    if device is not None and device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device: expected auto, cpu or cuda, got {device!r}")
    where = {key: value for key, value in (("executor", executor), ("address", address)) if value is not None}
    options = {**(overrides or {}), **({"device": device} if device is not None else {})}
    options["data"] = {**options.get("data", {}), **where}
    append = {"anomaly": {"processes": list(map(str, processes))}} if processes else None
    cfg = load_config(preset, config, task, overrides=options, defaults=defaults, append=append)
    if cfg.device == "cuda":  # fail now, not after the stages before teach
        from l1forge.teachers.train import resolve_device

        resolve_device("cuda")
    if cfg.anomaly.processes:  # a bad process file fails now (FILE:LINE), not when its task's generate runs
        from l1forge.events.processes import read_process_file

        for path in cfg.anomaly.processes:
            read_process_file(path)
    return cfg


def _brought(data=None, data_mapping=None, teacher=None, teacher_config=None, student=None, seeds=None) -> dict:
    """Configuration overrides for what the user brings (--data, --teacher, --student) and --seeds."""
    out: dict = {}
    if data is not None:
        out["data"] = {"source": "file", "path": str(data), "mapping": str(data_mapping) if data_mapping else None}
    if teacher is not None:
        out["teachers"] = {"source": "onnx" if str(teacher).lower().endswith(".onnx") else "file",
                           "path": str(teacher), "config": str(teacher_config) if teacher_config else None}
    if student is not None:
        out["student"] = {"model": student}
    if seeds is not None:
        out["seeds"] = seeds
    return out


def _runner(task, preset, config, out, force, quiet, processes=(), executor=None, address=None, device=None,
            overrides=None):
    from l1forge.runner import Runner

    _logging()
    return Runner(_config(task, preset, config, processes, executor, address, device, overrides), out,
                  progress=not quiet, force=force)


def _logging():
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[RichHandler(console=console, show_path=False)])
    logging.getLogger("l1forge").setLevel(logging.INFO)


def _stage(name: str):
    def command(out: pathlib.Path = OUT, preset: str = PRESET, config: Optional[pathlib.Path] = CONFIG,
                task: str = TASK, force: bool = FORCE, quiet: bool = QUIET, device: Optional[str] = DEVICE):
        _runner(task, preset, config, out, force, quiet, device=device).run_stage(name)

    command.__doc__ = f"Run the '{name}' stage in the run directory (earlier stages must be done)."
    return command


for _name in ("teach", "report"):
    app.command(_name)(_stage(_name))


@app.command()
def distill(out: pathlib.Path = OUT, preset: str = PRESET, config: Optional[pathlib.Path] = CONFIG, task: str = TASK,
            force: bool = FORCE, quiet: bool = QUIET, device: Optional[str] = DEVICE, student: Optional[str] = STUDENT,
            seeds: Optional[int] = SEEDS, teacher: Optional[pathlib.Path] = TEACHER,
            teacher_config: Optional[pathlib.Path] = TEACHER_CONFIG):
    """Run the 'distill' stage in the run directory (earlier stages must be done)."""
    brought = _brought(teacher=teacher, teacher_config=teacher_config, student=student, seeds=seeds)
    _runner(task, preset, config, out, force, quiet, device=device, overrides=brought).run_stage("distill")


@app.command()
def generate(out: pathlib.Path = OUT, preset: str = PRESET, config: Optional[pathlib.Path] = CONFIG, task: str = TASK,
             force: bool = FORCE, quiet: bool = QUIET, process: Optional[list[pathlib.Path]] = PROCESS,
             executor: Optional[executors.Name] = EXECUTOR, address: Optional[str] = ADDRESS,
             data: Optional[str] = DATA, data_mapping: Optional[pathlib.Path] = DATA_MAPPING):
    """Generate the task's events (Pythia8 + fastjet) into the run directory, or read your jets (--data)."""
    _runner(task, preset, config, out, force, quiet, process or (), executor, address,
            overrides=_brought(data, data_mapping)).run_stage("generate")


@app.command()
def synthesize(
    out: pathlib.Path = OUT, preset: str = PRESET, config: Optional[pathlib.Path] = CONFIG, task: str = TASK,
    force: bool = FORCE, quiet: bool = QUIET,
    model: Optional[pathlib.Path] = MODEL,
    hls_config: Optional[pathlib.Path] = HLS_CONFIG,
    input_type: Optional[str] = INPUT_TYPE,
    reuse_factor: Optional[int] = typer.Option(None, help="Override the reuse factor."),
    strategy: Optional[str] = typer.Option(None, help="Override the strategy (Latency | Resource)."),
    vendor: bool = typer.Option(False, help="Run C synthesis with Vitis/Vivado HLS (must be on PATH) and use its reports."),
):
    """hls4ml project + compiled C-sim + latency/resources, for the flow's student or any model (--model)."""
    overrides = {k: v for k, v in {"reuse_factor": reuse_factor, "strategy": strategy}.items() if v is not None}
    if model is None:
        runner = _runner(task, preset, config, out, force, quiet, overrides={"firmware": overrides})
        runner.run_stage("synthesize", vendor=vendor)
        return
    from l1forge import __version__
    from l1forge.byom import UserModel
    from l1forge.core.artifacts import write_json_atomic
    from l1forge.runner import run_lock

    settings = _config(task, preset, config, overrides={"firmware": overrides}).firmware
    user = UserModel.load(model, hls_config, input_type)
    with run_lock(out):
        block = user.build(settings, out, vendor=vendor)
    for key in ("input_type_note", "conversion_note"):
        if block.get(key):
            console.print(f"note: {block[key]}", highlight=False)
    write_json_atomic(out / "summary.json", {"version": __version__, "tasks": {"user": {"model": str(model), "firmware": block}}})
    typer.echo(json.dumps({k: block[k] for k in ("latency_cycles", "latency_ns", "ii_cycles", "resources", "source")}))


@app.command()
def emulate(
    out: pathlib.Path = OUT, preset: str = PRESET, config: Optional[pathlib.Path] = CONFIG, task: str = TASK,
    force: bool = FORCE, quiet: bool = QUIET,
    model: Optional[pathlib.Path] = MODEL,
    data: Optional[pathlib.Path] = typer.Option(None, help="Inputs for --model: .npy or HDF5."),
    dataset: Optional[str] = typer.Option(None, help="HDF5 dataset key of --data."),
    hls_config: Optional[pathlib.Path] = HLS_CONFIG,
    input_type: Optional[str] = INPUT_TYPE,
    check_csim: bool = typer.Option(False, help="Also compile the hls4ml C-sim, compare every event, exit 1 on any mismatch."),
    output: Optional[pathlib.Path] = typer.Option(None, help="Write the emulated outputs (.npy or .h5)."),
    json_out: Optional[pathlib.Path] = typer.Option(None, "--json", help="Write the check's numbers as JSON."),
):
    """Emulate the flow's firmware bit for bit against its C-sim, or any user model with --model/--data."""
    if model is None:
        _stage("emulate")(out, preset, config, task, force, quiet, None)
        return
    if data is None:
        raise typer.BadParameter("--model needs --data")
    from l1forge.byom import emulate_model, fidelity_warning

    stats = emulate_model(model, data, dataset, hls_config, input_type, check_csim=check_csim, output=output, json_path=json_out)
    typer.echo(json.dumps(stats, indent=2))
    for key in ("input_type_note", "conversion_note"):
        if stats.get(key):
            console.print(f"note: {stats[key]}", highlight=False)
    if warning := fidelity_warning(stats):
        console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True, highlight=False)
    if check_csim and stats["mismatches"]:
        raise typer.Exit(1)


@app.command()
def rtl(
    out: pathlib.Path = OUT, preset: str = PRESET, config: Optional[pathlib.Path] = CONFIG, task: str = TASK,
    force: bool = FORCE, quiet: bool = QUIET,
    model: Optional[pathlib.Path] = MODEL,
    data: Optional[pathlib.Path] = typer.Option(None, help="Inputs for --model (.npy or HDF5); default: random inputs "
                                                           "spanning the input type (saturation included)."),
    dataset: Optional[str] = typer.Option(None, help="HDF5 dataset key of --data."),
    hls_config: Optional[pathlib.Path] = HLS_CONFIG,
    input_type: Optional[str] = INPUT_TYPE,
    events: Optional[int] = typer.Option(None, help="Events to simulate (default: rtl.events of the config)."),
    clock_mhz: Optional[float] = typer.Option(None, help="Pipeline clock (default: rtl.clock_mhz, else firmware.clock_mhz)."),
    synthesis: Optional[bool] = typer.Option(None, "--synthesis/--no-synthesis",
                                             help="Run Yosys open synthesis (default: rtl.synthesis of the config)."),
):
    """Verilog of the firmware graph, simulated with Verilator against the emulator bit for bit, and Yosys open
    synthesis: the 'rtl' stage of the run directory, or any model that `synthesize --model` accepts (--model)."""
    from l1forge.byom import UserModel
    from l1forge.rtl.lower import RtlError
    from l1forge.rtl.verilator import ToolError

    updates = {k: v for k, v in {"events": events, "clock_mhz": clock_mhz, "synthesis": synthesis}.items() if v is not None}
    try:
        if model is None:
            runner = _runner(task, preset, config, out, force, quiet, overrides={"rtl": updates})
            result = runner.run_stage("rtl")
            if "unsupported" in result["rtl"]:
                raise RtlError(result["rtl"]["unsupported"])
        else:
            from l1forge.runner import run_lock

            with run_lock(out):
                cfg = _config(task, preset, config, overrides={"rtl": updates})
                result = _rtl_model(UserModel.load(model, hls_config, input_type), data, dataset, out, cfg)
    except (RtlError, ToolError) as err:
        console.print(f"[red]error:[/] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps({"rtl": {k: v for k, v in result["rtl"].items() if k != "seconds"},
                           "open_synthesis": {k: v for k, v in (result["open_synthesis"] or {}).items()
                                              if k not in ("cells", "delay_model", "LUT_by_inputs")} or None}, indent=1))
    if result["rtl"]["mismatches"]:
        raise typer.Exit(1)


def _rtl_model(user, data, dataset, out: pathlib.Path, cfg) -> dict:
    """The rtl check of a user model (``byom.UserModel``): its firmware built as `synthesize --model` builds it,
    into ``out``."""
    import numpy as np

    from l1forge.byom import load_inputs
    from l1forge.graph.ir import read_graph
    from l1forge.rtl.check import check_rtl
    from l1forge.rtl.lower import check_supported

    r = cfg.rtl
    user.build(cfg.firmware, out)
    graph = read_graph(out / "graph.json")
    check_supported(graph)
    if data is not None:
        x = load_inputs(data, dataset).astype(np.float64)
    else:  # inputs spanning the input type, a tenth beyond its range (saturation)
        t = graph.layers[0].result_t
        rng = np.random.default_rng(0)
        x = rng.uniform(t.min_value, t.max_value, size=(min(r.events, 100_000), *graph.layers[0].shape))
        x[: len(x) // 10] *= 1.5
    return check_rtl(out / "graph.json", x, out / "rtl", r.events, r.clock_mhz or cfg.firmware.clock_mhz,
                     synthesis=r.synthesis, yosys_timeout_s=r.yosys_timeout_s)


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {text!r}") from None


@app.command()
def scan(
    out: pathlib.Path = OUT, preset: str = PRESET, config: Optional[pathlib.Path] = CONFIG, task: str = TASK,
    force: bool = FORCE, quiet: bool = QUIET,
    bits: str = typer.Option("4,6,8", help="Weight bit widths, comma-separated; activations as wide (2 bits wider, the integer bits, for deepsets/mixer)."),
    reuse: str = typer.Option("1,2,4", help="Reuse factors, comma-separated."),
    executor: Optional[executors.Name] = EXECUTOR, address: Optional[str] = ADDRESS,
    families: str = typer.Option("hlf", help="Student families, comma-separated: hlf, deepsets, mixer."),
    constituents: str = typer.Option("16", help="Constituents per jet of the deepsets/mixer families, comma-separated."),
    synthesis: str = typer.Option("estimate", help="Cost of each point: 'estimate' (firmware/estimate.py) or 'open' "
                                  "(Yosys on the point's RTL, in the scan's workers; slower, measured)."),
):
    """Scan family x constituents x bit widths x reuse factors of the student; Pareto front of accuracy vs LUTs vs
    latency (report)."""
    runner = _runner(task, preset, config, out, force, quiet, executor=executor, address=address)
    if not hasattr(runner.task, "scan"):
        raise typer.BadParameter(f"task '{task}' has no design-space scan (tagging has)")
    d = runner.cfg.data
    with executors.executor(d.executor, d.address, d.workers) as pool:
        names = tuple(f.strip() for f in families.split(",") if f.strip())
        if unknown := set(names) - {"hlf", "deepsets", "mixer"}:
            raise typer.BadParameter(f"--families: unknown {', '.join(sorted(unknown))} (hlf, deepsets, mixer)")
        if synthesis not in ("estimate", "open"):
            raise typer.BadParameter(f"--synthesis: {synthesis!r} is neither 'estimate' nor 'open'")
        result = runner.task.scan(_ints(bits), _ints(reuse), pool, names, _ints(constituents), synthesis)
    runner.report()
    for point in result["front"]:
        family = point.get("family", "hlf") + (f" N={point['n_constituents']}" if point.get("family", "hlf") != "hlf" else "")
        console.print(f"front: {family}, {point['weight_bits']}/{point['activation_bits']} bits, reuse {point['reuse_factor']}: accuracy {point['metric']:.3f}, "
                      f"{point['LUT']:.0f} LUT, {point['latency_ns']:.1f} ns", highlight=False)


@app.command()
def run(out: pathlib.Path = OUT, preset: str = PRESET, config: Optional[pathlib.Path] = CONFIG, task: str = TASK_OR_ALL,
        force: bool = FORCE, quiet: bool = QUIET, process: Optional[list[pathlib.Path]] = PROCESS,
        executor: Optional[executors.Name] = EXECUTOR, address: Optional[str] = ADDRESS,
        data: Optional[str] = DATA, data_mapping: Optional[pathlib.Path] = DATA_MAPPING,
        student: Optional[str] = STUDENT, seeds: Optional[int] = SEEDS, teacher: Optional[pathlib.Path] = TEACHER,
        teacher_config: Optional[pathlib.Path] = TEACHER_CONFIG):
    """Run the whole flow; stages whose inputs and configuration did not change are skipped."""
    brought = _brought(data, data_mapping, teacher, teacher_config, student, seeds)
    if task == "all":
        from l1forge.runner import run_tasks
        from l1forge.tasks import registry

        _logging()
        reuse = {"chain": {"pileup_run": str(out / "pileup")}}  # the chain reuses the pileup task's run
        configs = {name: _config(name, preset, config, process or (), executor, address, overrides=brought,
                                 defaults=reuse if name == "chain" else None) for name in registry()}
        summary = run_tasks(configs, out, progress=not quiet, force=force)
    else:
        summary = _runner(task, preset, config, out, force, quiet, process or (), executor, address,
                          overrides=brought).run_all()
    checks = ", ".join(f"{name} {block.get('emulation', {}).get('mismatches')} of {block.get('emulation', {}).get('events_checked')}"
                       for name, block in summary["tasks"].items())
    console.print(f"[bold]done[/]: {out}/summary.json, {out}/report.html; C-sim mismatches: {checks}", highlight=False)


@app.command()
def ops():
    """The op table of the firmware graph: each op, the hls4ml layers it describes, its attributes, and whether the
    emulator, the estimate and the RTL writer implement it (Markdown)."""
    import l1forge.emulation.emulator  # noqa: F401 - importing a backend registers its implementations
    import l1forge.firmware.estimate  # noqa: F401
    import l1forge.rtl.lower  # noqa: F401
    from l1forge.graph.ops import table

    print(table())


def main():
    """Entry point: any failure becomes one line on stderr and exit code 1 (tracebacks with L1FORGE_DEBUG=1)."""
    try:
        app()
    except Exception as err:  # noqa: BLE001 - the CLI boundary turns every failure into one line
        if os.environ.get("L1FORGE_DEBUG"):
            raise
        console.print(f"[red]error:[/] {err}", soft_wrap=True, highlight=False)
        sys.exit(1)
