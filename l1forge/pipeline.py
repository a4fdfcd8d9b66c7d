"""The jet-tagging flow: generate -> teach -> distill -> synthesize -> emulate -> report, resumable stage by stage."""

from __future__ import annotations

import json
import logging
import pathlib
import tempfile
import time

import numpy as np

from l1forge import __version__
from l1forge.config import RunConfig
from l1forge.io import read_array, write_arrays_atomic, write_json_atomic
from l1forge.metrics import classification_metrics
from l1forge.rundir import RunDir

log = logging.getLogger("l1forge")

STAGES = ("generate", "teach", "distill", "synthesize", "emulate", "report")


def _jets(run: RunDir):
    from events.schema import read_jets

    return read_jets(run.data)


def _test_metrics(jets, logits) -> dict:
    test = jets.split == 2
    return classification_metrics(jets.labels[test], logits[test], jets.class_names)


class Flow:
    """Runs stages of one configuration in one run directory, skipping those already done."""

    def __init__(self, cfg: RunConfig, out: pathlib.Path, progress: bool = True, force: bool = False):
        self.cfg, self.run, self.progress, self.force = cfg, RunDir(out), progress, force

    @property
    def data_path(self) -> pathlib.Path:
        return self.run.data

    # ---- bookkeeping ---------------------------------------------------------------------------------
    def _stage(self, name: str, config, upstream: list[str], outputs: list[pathlib.Path], fn) -> dict:
        fingerprint = self.run.fingerprint(name, config, [self.run.state.get(u, {}).get("fingerprint") for u in upstream])
        if not self.force and self.run.done(name, fingerprint, outputs):
            log.info("%s: up to date, skipped", name)
            return self.run.result(name)
        missing = [u for u in upstream if u not in self.run.state]
        if missing:
            raise RuntimeError(f"stage '{name}' needs '{missing[0]}' first (run `l1forge {missing[0].split('.')[0]}`)")
        log.info("%s: running", name)
        start = time.perf_counter()
        result = fn()
        result["stage_seconds"] = time.perf_counter() - start
        self.run.record(name, fingerprint, result)
        return result

    def run_all(self) -> dict:
        for stage in STAGES:
            getattr(self, stage)()
        return self.summary()

    # ---- stages ----------------------------------------------------------------------------------------
    def generate(self) -> dict:
        from events.jets import generate_jets

        d = self.cfg.data

        def work():
            return generate_jets(
                self.run.data, d.n_per_class, seed=d.seed, workers=d.workers,
                pt_range=(d.pt_min, d.pt_max), mpi=d.mpi, progress=self.progress,
            )

        return self._stage("generate", d, [], [self.run.data], work)

    def teach(self) -> dict:
        return {kind: self._teach_one(kind) for kind in self.cfg.teachers.kinds}

    def _teach_one(self, kind: str) -> dict:
        from teachers.train import train_teacher

        t = self.cfg.teachers
        out = self.run.teacher(kind)

        def work():
            jets = _jets(self.run)
            result = train_teacher(
                kind, jets.constituents, jets.n_constituents, jets.labels, jets.split, out,
                size=t.size, epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, seed=t.seed,
                max_steps=t.max_steps, progress=self.progress,
                jet_features=jets.features if t.jet_features else None,
            )
            result["metrics"] = _test_metrics(jets, read_array(out / "predictions.h5", "logits"))
            return result

        return self._stage(f"teach.{kind}", t, ["generate"], [out / "predictions.h5", out / "model.onnx"], work)

    def _chosen_teacher(self) -> str:
        choice = self.cfg.student.teacher
        if choice != "best":
            return choice
        trained = {k: self.run.state[f"teach.{k}"]["result"] for k in self.cfg.teachers.kinds if f"teach.{k}" in self.run.state}
        if not trained:
            raise RuntimeError("stage 'distill' needs a trained teacher first (run `l1forge teach`)")
        return min(trained, key=lambda k: trained[k]["best_val_loss"])

    def _precision(self):
        """The student's bits, from the configuration (quantize/ owns the rules)."""
        from quantize.fixed import FixedType
        from quantize.precision import Precision

        s = self.cfg.student
        return Precision(FixedType.parse(s.input_type), s.weight_bits, s.weight_integer, s.activation_bits, s.activation_integer)

    def distill(self) -> dict:
        from students.distill import train_student

        s = self.cfg.student
        precision = self._precision()

        def work(out: pathlib.Path, teacher: str | None):
            def fn():
                jets = _jets(self.run)
                logits = read_array(self.run.teacher(teacher) / "predictions.h5", "logits") if teacher else None
                result = train_student(
                    jets.features, jets.feature_names, jets.labels, jets.split, out, teacher_logits=logits,
                    precision=precision, hidden=tuple(s.hidden), epochs=s.epochs, batch_size=s.batch_size, lr=s.lr,
                    temperature=s.temperature, alpha=s.alpha, seed=s.seed, progress=self.progress,
                )
                result["teacher"] = teacher
                result["metrics"] = _test_metrics(jets, read_array(out / "predictions.h5", "logits"))
                return result

            return fn

        outputs = lambda out: [out / "model.h5", out / "predictions.h5", out / "preprocess.json"]  # noqa: E731
        teacher = self._chosen_teacher()
        student = self._stage(
            "distill.student", s, ["generate", f"teach.{teacher}"], outputs(self.run.student), work(self.run.student, teacher)
        )
        baseline = self._stage("distill.baseline", s, ["generate"], outputs(self.run.baseline), work(self.run.baseline, None))
        return {"student": student, "baseline": baseline}

    def synthesize(self, vendor: bool = False) -> dict:
        f = self.cfg.firmware

        def work():
            from firmware.build import build_firmware
            from quantize.fixed import FixedType
            from students.model import load_qkeras_model

            model = load_qkeras_model(self.run.student / "model.h5")
            block = build_firmware(model, FixedType.parse(self.cfg.student.input_type), f, self.run.firmware, vendor=vendor)
            if block["source"] == "estimate":  # how far the estimator is from published syntheses
                from firmware.calibration import calibration_error

                block["calibration"] = [
                    {"id": c["id"], "source": c["source"], "relative_error": c["relative_error"]} for c in calibration_error()
                ]
            return block

        outputs = [self.run.firmware / "graph.json", self.run.firmware / "firmware.json", self.run.hls_project]
        return self._stage("synthesize", {"firmware": f, "vendor": vendor}, ["distill.student"], outputs, work)

    def emulate(self) -> dict:
        e = self.cfg.emulation

        def work():
            from students.preprocess import Standardizer

            jets = _jets(self.run)
            index = np.flatnonzero(jets.split == 2)[: e.max_events]
            x = Standardizer.load(self.run.student / "preprocess.json")(jets.features[index]).astype(np.float64)
            stats, emu, csim = self._compare(x, index)
            write_arrays_atomic(self.run.emulation / "outputs.h5", {"emulator": emu, "csim": csim, "index": index})
            stats["metrics"] = classification_metrics(jets.labels[index], emu, jets.class_names)
            stats["trigger"] = self._trigger_rates(jets, index, emu)
            write_json_atomic(self.run.emulation / "emulation.json", stats)
            return stats

        return self._stage("emulate", e, ["synthesize"], [self.run.emulation / "outputs.h5"], work)

    def _compare(self, x: np.ndarray, index: np.ndarray):
        """Emulator vs the compiled C-sim of the firmware project on inputs ``x`` (rows ``index`` of the data)."""
        import hls4ml

        from emulation.compare import compare_with_csim
        from emulation.emulator import Emulator
        from firmware.hls import quiet_call

        emulator = Emulator.from_file(self.run.firmware / "graph.json")
        project = hls4ml.converters.link_existing_project(str(self.run.hls_project))
        quiet_call(project.compile)
        stats, emu, csim = compare_with_csim(emulator, project.predict, x)
        if stats["mismatches"]:
            stats["first_mismatch"] = self._locate_mismatch(emulator, x, stats["first_mismatch"]["event"], index)
        return stats, emu, csim

    def _trigger_rates(self, jets, index: np.ndarray, logits: np.ndarray) -> dict | None:
        """A boosted-top trigger on the emulated firmware: rate from the QCD jets, efficiency for top jets.

        Score: logit_t - max(logit_g, logit_q), computable in firmware without exponentials. The zero-bias stream
        is the QCD (g, q) jets weighted by their Pythia cross sections at the configured pileup, plus the crossings
        without such a jet (emulation.trigger.zero_bias_mixture). Rate curve: emulation/trigger.h5.
        """
        from emulation.trigger import rate_curve, trigger_summary, zero_bias_mixture

        if "jet_cross_section_mb" not in jets.attrs:
            return None
        t, firmware = self.cfg.trigger, self.run.result("synthesize")
        sigma = json.loads(jets.attrs["jet_cross_section_mb"])
        cls = {name: i for i, name in enumerate(jets.class_names)}
        labels = jets.labels[index]
        score = logits[:, cls["t"]] - np.maximum(logits[:, cls["g"]], logits[:, cls["q"]])
        scores, weights = zero_bias_mixture({c: (score[labels == cls[c]], sigma[c]) for c in ("g", "q")}, t.pileup)
        thresholds, rate, err = rate_curve(scores, weights, t.n_bunches, np.unique(score))
        write_arrays_atomic(self.run.emulation / "trigger.h5", {"threshold": thresholds, "rate_khz": rate, "rate_khz_err": err})
        block = trigger_summary(
            scores, {"t": score[labels == cls["t"]]}, firmware["latency_ns"], firmware["ii_cycles"],
            firmware["clock_mhz"], t.budget_ns, t.target_rate_khz, t.n_bunches, weights,
        )
        return {
            **block,
            "score": "logit_t - max(logit_g, logit_q)",
            "background": "QCD jets (g, q) weighted by their Pythia cross sections, plus crossings without one",
            "pileup": t.pileup,
            "qcd_rate_khz": float(rate_curve(scores, weights, t.n_bunches, [scores.min()])[1][0]),
        }

    def _locate_mismatch(self, emulator, x: np.ndarray, event: int, index: np.ndarray) -> dict:
        """Re-convert with tracing in a scratch directory and name the first layer whose output differs."""
        from emulation.compare import first_differing_layer
        from firmware.hls import convert, quiet_call
        from quantize.fixed import FixedType
        from students.model import load_qkeras_model

        model = load_qkeras_model(self.run.student / "model.h5")
        with tempfile.TemporaryDirectory() as tmp:
            hls_model = convert(model, FixedType.parse(self.cfg.student.input_type), self.cfg.firmware, pathlib.Path(tmp) / "p")
            trace = quiet_call(hls_model.trace, x[event : event + 1])[1]
        where = first_differing_layer(emulator, {k: v[0] for k, v in trace.items()}, x[event])
        return {"event": event, "jet_index": int(index[event]), **(where or {"layer": None})}

    def scan(self, weight_bits=(4, 6, 8), reuse_factors=(1, 2, 4), executor=None) -> dict:
        """Design-space scan of the student (not part of ``run``): accuracy vs estimated LUTs vs latency."""
        from l1forge.design_scan import run_scan, scan_points

        points = scan_points(weight_bits, reuse_factors)
        teacher = self._chosen_teacher()
        student = self.cfg.student.model_dump()

        def work():
            result = run_scan(self.run.root, teacher, student, self.cfg.firmware, points, executor)
            write_json_atomic(self.run.root / "scan" / "scan.json", result)
            return result

        config = {"points": [list(p.__dict__.values()) for p in points], "student": student, "firmware": self.cfg.firmware}
        return self._stage("scan", config, ["generate", f"teach.{teacher}"], [self.run.root / "scan" / "scan.json"], work)

    def report(self) -> pathlib.Path:
        from l1forge.report import write_report

        summary = self.summary()
        write_json_atomic(self.run.root / "summary.json", summary)
        return write_report(self.run.root, summary)

    # ---- summary.json --------------------------------------------------------------------------------
    def summary(self) -> dict:
        state = self.run.state
        result = lambda name: state.get(name, {}).get("result")  # noqa: E731
        task: dict = {}
        if data := result("generate"):
            task["data"] = {**data, "files": {"events": str(self.data_path)}}
        teachers = {k: result(f"teach.{k}") for k in ("gnn", "transformer") if result(f"teach.{k}")}
        if teachers:
            task["teachers"] = {
                k: {"params": r["params"], "size": r["size"], "metrics": r["metrics"], "onnx": str(self.run.teacher(k) / "model.onnx"),
                    "onnx_max_abs_diff": r.get("onnx_max_abs_diff"), "train_jets_per_s": r.get("train_jets_per_s")}
                for k, r in teachers.items()
            }
        if student := result("distill.student"):
            baseline = result("distill.baseline") or {}
            task["student"] = {
                "params": student["params"],
                "bits": student["bits"],
                "hidden": student["hidden"],
                "teacher": student["teacher"],
                "metrics": student["metrics"],
                "baseline_metrics": baseline.get("metrics"),
            }
        if firmware := result("synthesize"):
            from emulation.trigger import check_timing

            task["firmware"] = {k: v for k, v in firmware.items() if k != "layers"}
            timing = check_timing(
                firmware["latency_ns"], firmware["ii_cycles"], firmware["clock_mhz"], self.cfg.trigger.budget_ns
            )
            rates = (result("emulate") or {}).get("trigger") or {}
            task["trigger"] = {**rates, **timing, "n_bunches": self.cfg.trigger.n_bunches, "timing_source": firmware["source"]}
        if emulation := result("emulate"):
            task["emulation"] = {k: emulation[k] for k in ("events_checked", "mismatches", "emulator_events_per_s", "csim_events_per_s", "first_mismatch")}
            if "student" in task:
                task["student"]["firmware_metrics"] = emulation["metrics"]
        if scan := result("scan"):
            task["scan"] = {k: scan[k] for k in ("metric", "points", "front")}
        timings = {name: entry["result"].get("stage_seconds") for name, entry in state.items()}
        return {"version": __version__, "preset": self.cfg.preset, "tasks": {self.cfg.task: task}, "stage_seconds": timings}
