"""The interface every task implements, and the parts the three tasks share (firmware build, C-sim check).

A task is a class with a ``name``, its data file, its stages and, optionally, its own configuration section:

* ``generate``, ``teach_one(kind)``, ``distill``, ``emulate``: the task's stages, each run through
  ``self.stage(name, config, upstream, outputs, fn)`` so that the runner does the bookkeeping;
* ``test_inputs()``: the student's inputs on the test split (what the rtl stage streams through the Verilog);
* ``summary()``: the task's block of ``summary.json``;
* ``report_context(run_dir, block)`` and ``report_template``: the task's section of ``report.html``.

``summary()`` and ``report_context`` call the functions of the same names in the task's ``report_module``, a module
beside its own (``l1forge/tasks/<task>_report.py``; by default ``base_report``, the blocks every task has), so that
the stages and the figures stay apart.

``synthesize`` (the hls4ml project of ``students/student/model.h5``), the emulator-versus-C-sim check and ``rtl``
(Verilog, Verilator against the emulator, Yosys) are shared.
A new task is one module in ``l1forge/tasks/`` that defines ``TASK = <its class>`` (found by ``l1forge.tasks``).
"""

from __future__ import annotations

import contextlib
import importlib
import pathlib
import shutil
import tempfile
from typing import Callable, ClassVar

import numpy as np

from l1forge.core.artifacts import write_json_atomic


SEEDS = "seeds"  # <model>/seeds/<seed>/: one training of a student, a baseline or an autoencoder (seeds: k > 1)


def median_seed(seeds: list[int], scores: list[float]) -> int:
    """The seed whose score (test accuracy, mean AUC, ...) is the median of the k trainings (even k: the lower of the
    two middle ones; equal scores ordered by seed)."""
    ranked = sorted(zip(scores, seeds))
    return ranked[(len(ranked) - 1) // 2][1]


def keep_median_seed(out: pathlib.Path, seeds: list[int], results: list[dict], rank: Callable[[dict], float]) -> dict:
    """Copy the median seed's files (by ``rank`` of each result) from ``out``/seeds/<seed>/ into ``out`` (each file
    atomically); its result, with ``median_seed`` and ``seeds``: {seed: test metrics} of every training."""
    from l1forge.core.artifacts import atomic_path

    median = median_seed(seeds, [rank(r) for r in results])
    for path in sorted((out / SEEDS / str(median)).iterdir()):
        with atomic_path(out / path.name, path.suffix) as tmp:
            shutil.copyfile(path, tmp)
    return {**results[seeds.index(median)], "median_seed": median,
            "seeds": {str(seed): r["metrics"] for seed, r in zip(seeds, results)}}


def mean_auc(result: dict) -> float:
    """The mean AUC over the signals of a training's test ``metrics`` (which seed is the median one)."""
    return float(np.mean([m["auc"] for m in result["metrics"]["signals"].values()]))


def seed_dirs(model: pathlib.Path, result: dict) -> list[pathlib.Path]:
    """The directories of a model's trainings: ``model``/seeds/<seed>/ of each seed its stage trained (``seeds: k >
    1``), else ``model`` itself."""
    return [model / SEEDS / seed for seed in result["seeds"]] if "seeds" in result else [model]


def best_firmware(firmware: dict) -> dict:
    """The best-measured source of a summary ``firmware`` block: vendor reports > open synthesis of l1forge's RTL
    (``open_synthesis``) > the hls4ml-path estimate, as {"latency_ns", "ii_cycles", "clock_mhz", "resources",
    "source"}."""
    measured = firmware.get("open_synthesis") if firmware.get("source") == "estimate" else None
    best = measured or firmware
    return {k: best.get(k) for k in ("latency_ns", "ii_cycles", "clock_mhz", "resources", "source")}


class Task:
    name: ClassVar[str]
    data_file: ClassVar[str]  # under data/ of the run directory
    stages: ClassVar[tuple[str, ...]] = ("generate", "teach", "distill", "synthesize", "emulate", "rtl")
    report_template: ClassVar[str]  # a template in l1forge/templates/ for the task's own report section
    report_module: ClassVar[str] = "l1forge.tasks.base_report"  # its summary block and report section (matplotlib)
    config_section: ClassVar[type | None] = None  # pydantic model of the task's section of the configuration
    config_presets: ClassVar[dict[str, dict]] = {}  # {preset: overrides of that section}

    def __init__(self, runner):
        self.runner, self.cfg, self.run, self.progress = runner, runner.cfg, runner.run, runner.progress
        self.stage = runner.stage

    @property
    def data_path(self) -> pathlib.Path:
        return self.run.data(self.data_file)

    # ---- stages ------------------------------------------------------------------------------------------
    def generate(self) -> dict:
        raise NotImplementedError

    def teach(self) -> dict:
        return {kind: self.teach_one(kind) for kind in self.cfg.teachers.kinds}

    def teach_one(self, kind: str) -> dict:
        raise NotImplementedError

    def distill(self) -> dict:
        raise NotImplementedError

    def synthesize(self, vendor: bool = False) -> dict:
        """hls4ml project + compiled C-sim of the student, firmware graph and latency/resources (firmware/)."""
        f = self.cfg.firmware

        def work():
            from l1forge.firmware.build import build_firmware
            from l1forge.quantize.fixed import FixedType
            from l1forge.students.model import load_qkeras_model

            model = load_qkeras_model(self.run.student / "model.h5")
            block = build_firmware(model, FixedType.parse(self.cfg.student.input_type), f, self.run.firmware, vendor=vendor)
            if block["source"] == "estimate":  # how far the estimator is from published syntheses
                from l1forge.firmware.calibration import calibration_error

                block["calibration"] = [
                    {"id": c["id"], "source": c["source"], "relative_error": c["relative_error"]} for c in calibration_error()
                ]
            return block

        outputs = [self.run.firmware / "graph.json", self.run.firmware / "firmware.json", self.run.hls_project]
        return self.stage("synthesize", {"firmware": f, "vendor": vendor}, ["distill.student"], outputs, work)

    def emulate(self) -> dict:
        raise NotImplementedError

    def test_inputs(self) -> np.ndarray:
        """The student's float inputs on the test split, (events, *input shape), as ``emulate`` feeds the emulator."""
        raise NotImplementedError

    def rtl(self) -> dict:
        """Verilog of the firmware graph (firmware/rtl/: with the Verilator build and Yosys work files), Verilator
        against the emulator on ``rtl.events`` events (the test inputs, cycled), Yosys open synthesis (rtl/check.py),
        and the deliverable alone, self-contained, in the run directory's ``rtl/`` (recorded as the stage's output;
        a student the writer cannot build leaves the one-line reason there)."""
        r = self.cfg.rtl
        clock = r.clock_mhz or self.cfg.firmware.clock_mhz

        def work():
            import logging

            from l1forge.graph.ir import read_graph
            from l1forge.rtl.lower import RtlError, check_supported
            from l1forge.rtl.check import check_rtl

            try:  # a student the RTL writer cannot build (e.g. conv1d) is named in one line; the run goes on
                check_supported(read_graph(self.run.firmware / "graph.json"))
            except RtlError as err:
                logging.getLogger("l1forge").warning("rtl: %s", err)
                package.mkdir(parents=True, exist_ok=True)
                (package / "UNSUPPORTED.txt").write_text(f"{err}\n")
                return {"rtl": {"unsupported": str(err)}, "open_synthesis": None}
            return check_rtl(self.run.firmware / "graph.json", self.test_inputs(), self.run.firmware / "rtl", r.events,
                             clock, synthesis=r.synthesis, yosys_timeout_s=r.yosys_timeout_s, package_dir=package)

        package = self.run.root / "rtl"
        return self.stage("rtl", {"rtl": r, "clock_mhz": clock}, ["synthesize"],
                          [self.run.firmware / "graph.json", package], work)

    # ---- shared helpers ------------------------------------------------------------------------------------
    def seeded(self, models: dict, config: dict, outputs: Callable[[pathlib.Path], list],
               rank: Callable[[dict], float]) -> dict:
        """Stages that train a model ``seeds`` times (k; seeds student.seed + i: other initial weights and batches,
        the same data). ``models``: {stage: (directory, upstream stages, train)}; ``train(out=, seed=, progress=)``
        trains one model into the directory ``out`` and returns its result with test ``metrics`` (a picklable
        callable: module-level, absolute paths, so that an executor's worker runs it). k = 1: trained here, into the
        directory. k > 1: the trainings of every stage that must run share the executor (data.executor, data.workers
        processes), each into <directory>/seeds/<seed>/; the directory holds a copy of the median seed's files by
        ``rank(result)`` (``keep_median_seed``), so that the stages after it build one real design. Returns {stage:
        result}."""
        from l1forge.core.executors import executor

        k, first = self.cfg.seeds, self.cfg.student.seed
        config = {**config, **({"seeds": k} if k > 1 else {})}
        out_files = lambda out: [*outputs(out), *([out / SEEDS] if k > 1 else [])]  # noqa: E731
        if k == 1:
            def once(out, train):
                def fn():
                    shutil.rmtree(out / SEEDS, ignore_errors=True)  # a former run's with more seeds
                    return train(out=str(out.resolve()), seed=first, progress=self.progress)

                return fn

            return {name: self.stage(name, config, upstream, out_files(out), once(out, train))
                    for name, (out, upstream, train) in models.items()}

        seeds = [first + i for i in range(k)]
        with contextlib.ExitStack() as stack:
            pool, trainings = None, {}

            def submit(name):
                nonlocal pool
                if pool is None:
                    d = self.cfg.data
                    pool = stack.enter_context(executor(d.executor, d.address, d.workers))
                out, _, train = models[name]
                shutil.rmtree(out / SEEDS, ignore_errors=True)
                trainings[name] = [pool.submit(train, out=str((out / SEEDS / str(seed)).resolve()), seed=seed)
                                   for seed in seeds]

            for name, (out, upstream, _) in models.items():  # every stage's trainings share the pool's workers
                if all(u in self.run.state for u in upstream) and (self.runner.force or not self.run.done(
                        name, self.runner.fingerprint(name, config, upstream), out_files(out), upstream)):
                    submit(name)

            def work(name):
                def fn():
                    if name not in trainings:
                        submit(name)
                    return keep_median_seed(models[name][0], seeds, [t.result() for t in trainings[name]], rank)

                return fn

            return {name: self.stage(name, config, upstream, out_files(out), work(name))
                    for name, (out, upstream, _) in models.items()}

    def chosen_teacher(self) -> str:
        """``student.teacher``, or for "best" the trained teacher with the lowest validation loss."""
        if self.cfg.teachers.source != "train":
            return "external"
        choice = self.cfg.student.teacher
        if choice != "best":
            return choice
        trained = {k: self.run.result(f"teach.{k}") for k in self.cfg.teachers.kinds if f"teach.{k}" in self.run.state}
        if not trained:
            raise RuntimeError("stage 'distill' needs a trained teacher first (run `l1forge teach`)")
        return min(trained, key=lambda k: trained[k]["best_val_loss"])

    def precision(self, family: str = "hlf"):
        """The student's bits, from the configuration; activation widths it leaves unset follow ``family``'s rule
        (quantize/precision.py ``FAMILY_ACTIVATIONS``: the MLP students of every task are "hlf")."""
        from l1forge.quantize.fixed import FixedType
        from l1forge.quantize.precision import Precision

        s = self.cfg.student
        return Precision.for_family(family, FixedType.parse(s.input_type), s.weight_bits, s.weight_integer,
                                    s.activation_bits, s.activation_integer)

    def compare(self, x: np.ndarray, index: np.ndarray):
        """Emulator vs the compiled C-sim of the firmware project on inputs ``x`` (rows ``index`` of the data):
        (stats, emulator outputs, C-sim outputs); a mismatch is located at its first differing layer."""
        import hls4ml

        from l1forge.emulation.compare import compare_with_csim
        from l1forge.emulation.emulator import Emulator
        from l1forge.firmware.hls import quiet_call

        emulator = Emulator.from_file(self.run.firmware / "graph.json")
        project = hls4ml.converters.link_existing_project(str(self.run.hls_project))
        quiet_call(project.compile)
        stats, emu, csim = compare_with_csim(emulator, project.predict, x)
        if stats["mismatches"]:
            stats["first_mismatch"] = self._locate_mismatch(emulator, x, stats["first_mismatch"]["event"], index)
        stats["fidelity"] = self.fidelity(emulator, x, emu)
        return stats, emu, csim

    def fidelity(self, emulator, x: np.ndarray, emu) -> dict:
        """The firmware against the student's own Keras model on the same inputs (emulation/fidelity.py block);
        a warning is logged when they differ beyond the firmware's own quantization."""
        import logging

        from l1forge.byom import fidelity_warning
        from l1forge.emulation.fidelity import fidelity
        from l1forge.firmware.hls import has_input_quantizer
        from l1forge.students.model import load_qkeras_model

        model = load_qkeras_model(self.run.student / "model.h5")
        block = fidelity(model, emulator, x, emu, has_input_quantizer(model))
        if warning := fidelity_warning(block):
            logging.getLogger("l1forge").warning("student: %s", warning)
        return block

    def _locate_mismatch(self, emulator, x: np.ndarray, event: int, index: np.ndarray) -> dict:
        """Re-convert with tracing in a scratch directory and name the first layer whose output differs."""
        from l1forge.emulation.compare import first_differing_layer
        from l1forge.firmware.hls import convert, quiet_call
        from l1forge.quantize.fixed import FixedType
        from l1forge.students.model import load_qkeras_model

        model = load_qkeras_model(self.run.student / "model.h5")
        with tempfile.TemporaryDirectory() as tmp:
            hls_model = convert(model, FixedType.parse(self.cfg.student.input_type), self.cfg.firmware, pathlib.Path(tmp) / "p")
            trace = quiet_call(hls_model.trace, x[event : event + 1])[1]
        where = first_differing_layer(emulator, {k: v[0] for k, v in trace.items()}, x[event])
        return {"event": event, "jet_index": int(index[event]), **(where or {"layer": None})}

    def write_emulation(self, stats: dict, emu: np.ndarray, csim: np.ndarray, index: np.ndarray):
        from l1forge.core.artifacts import write_arrays_atomic

        write_arrays_atomic(self.run.emulation / "outputs.h5", {"emulator": emu, "csim": csim, "index": index})
        write_json_atomic(self.run.emulation / "emulation.json", stats)

    # ---- summary.json and report.html: the task's report module ---------------------------------------------------
    def summary(self) -> dict:
        """The task's block of ``summary.json`` (``summary`` of its report module)."""
        return importlib.import_module(self.report_module).summary(self)

    @classmethod
    def report_context(cls, run_dir: pathlib.Path, block: dict) -> dict:
        """Template variables of the task's own report section, from its summary block and run directory
        (``report_context`` of its report module)."""
        return importlib.import_module(cls.report_module).report_context(run_dir, block)
