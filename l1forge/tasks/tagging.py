"""Jet tagging: generate -> teach -> distill -> synthesize -> emulate, and a boosted-top trigger on the firmware."""

from __future__ import annotations

import functools
import json
import pathlib

import numpy as np

from l1forge.core.artifacts import read_array, write_arrays_atomic, write_json_atomic
from l1forge.metrics import classification_metrics
from l1forge.tasks.base import Task

TEST_SPLIT = 2


def _test_metrics(jets, logits) -> dict:
    test = jets.split == TEST_SPLIT
    return classification_metrics(jets.labels[test], logits[test], jets.class_names)


def _file_stamp(spec: str | None):
    """(size, modification time) of a user's student file, so that a new file reruns the distillation."""
    from l1forge.students.user import is_builder

    if spec is None or is_builder(spec) or not pathlib.Path(spec).exists():
        return None
    stat = pathlib.Path(spec).stat()
    return [stat.st_size, stat.st_mtime_ns]


def distill_seed(data: str, teacher: str | None, teacher_predictions: str | None, out: str, student, precision,
                 seed: int, progress: bool = False) -> dict:
    """One training of the student (``student``: StudentConfig; ``precision``: its bits) into ``out``: model.h5,
    predictions.h5 (logits, (jets, classes)), preprocess.json, history.json. Distilled from ``teacher``'s logits
    (``teacher_predictions``, (jets, classes)), or on labels alone (None: the baseline); initial weights and batches
    from ``seed``, the jets of ``data`` as they are. Module-level, with absolute paths, so that an executor's worker
    runs it. Returns the training's result (students/distill.py ``train_student``) with the test ``metrics``."""
    import tensorflow as tf

    from l1forge.events.schema import read_jets
    from l1forge.students.deepsets import build_constituent_student, student_inputs
    from l1forge.students.distill import family_settings, train_student
    from l1forge.students.user import build_user_student

    s, out = student, pathlib.Path(out)
    jets = read_jets(data)
    logits = read_array(teacher_predictions, "logits") if teacher else None
    features, names, preprocess = student_inputs(s.family, jets, s.n_constituents, precision.input, s.jet_word)
    n_classes = len(jets.class_names)
    model = None  # hlf: train_student builds the MLP from the seed
    if s.model:
        shape = preprocess.shape if preprocess is not None else features.shape[1:]
        model = build_user_student(s.model, shape, n_classes, seed)
    elif preprocess is not None:
        tf.keras.utils.set_random_seed(seed)  # the constituent student's initial weights
        model = build_constituent_student(s.family, *preprocess.shape, n_classes, s.phi, s.head, precision)
    result = train_student(
        features, names, jets.labels, jets.split, out, teacher_logits=logits,
        precision=precision, hidden=tuple(s.hidden), epochs=s.epochs, batch_size=s.batch_size, lr=s.lr,
        alpha=s.alpha, seed=seed, progress=progress, model=model, preprocess=preprocess, n_classes=n_classes,
        **family_settings(s.family, s.temperature, s.augment),
    )
    result.update(teacher=teacher, family=s.family, **({"model": s.model} if s.model else {}))
    if preprocess is not None:  # constituent students: phi layers, pooling, head
        result.update(hidden=[*s.phi, *s.head], phi=list(s.phi), head=list(s.head),
                      n_constituents=s.n_constituents, input_word=preprocess.word.as_dict(),
                      jet_word=preprocess.jet and preprocess.jet.as_dict())
    result["metrics"] = _test_metrics(jets, read_array(out / "predictions.h5", "logits"))
    return result


class Tagging(Task):
    """Five jet classes (g, q, W, Z, t); teachers on constituents, an HLF QKeras student, top-tagging trigger."""

    name = "tagging"
    data_file = "jets.h5"
    report_template = "tagging.html.j2"
    report_module = "l1forge.tasks.tagging_report"

    def jets(self):
        from l1forge.events.schema import read_jets

        return read_jets(self.data_path)

    def generate(self) -> dict:
        """The jets: generated (Pythia8 + fastjet), or read from the user's files (``data.source: file``)."""
        from l1forge.core.executors import executor
        from l1forge.events.jets import generate_jets

        d = self.cfg.data
        if d.source == "file":
            return self._read_files(d)

        def work():
            with executor(d.executor, d.address, d.workers) as pool:
                return generate_jets(
                    self.data_path, d.n_per_class, seed=d.seed, workers=d.workers,
                    pt_range=(d.pt_min, d.pt_max), mpi=d.mpi, progress=self.progress, executor=pool,
                )

        return self.stage("generate", d, [], [self.data_path], work)

    def _read_files(self, d) -> dict:
        """The user's files into the flow's sample (events/external.py); provenance (path, size, sha256 of each file,
        the layout) in the stage's result. Its fingerprint holds each file's path, size and modification time."""
        from l1forge.events.external import convert_external, expand_paths, file_records

        files = expand_paths(d.path)

        def work():
            info = convert_external(d.path, self.data_path, layout=d.layout, mapping=d.mapping, seed=d.seed,
                                    sha256=True)
            return {"source": "file", "layout": info["layout"], "n_jets": info["n_jets"],
                    "class_names": info["class_names"], "source_files": json.loads(self.jets().attrs["source_files"])}

        stamp = [(r["path"], r["size"], pathlib.Path(r["path"]).stat().st_mtime_ns) for r in file_records(files)]
        config = {"path": d.path, "mapping": d.mapping, "layout": d.layout, "seed": d.seed, "files": stamp}
        return self.stage("generate", config, [], [self.data_path], work)

    def teach(self) -> dict:
        self.check_user_student()
        if self.cfg.teachers.source != "train":
            return {"external": self.teach_external()}
        return super().teach()

    def teach_external(self) -> dict:
        """The predictions of a teacher trained elsewhere (``teachers.source`` onnx or file, teachers/external.py) on
        every jet, and its test metrics, in teachers/external/; its fingerprint holds the files' sizes and times."""
        from l1forge.teachers.external import teach_external

        t, out = self.cfg.teachers, self.run.teacher("external")

        def work():
            jets = self.jets()
            result = teach_external(t.path, jets, out, mapping=t.config, classes=jets.class_names,
                                    device=self.cfg.device)
            result["metrics"] = _test_metrics(jets, read_array(out / "predictions.h5", "logits"))
            return result

        config = {"teacher": t, "files": [_file_stamp(f) for f in (t.path, t.config)]}
        return self.stage("teach.external", config, ["generate"], [out / "predictions.h5"], work)

    def check_user_student(self) -> None:
        """Refuse, before any training, a user's student (``student.model``) that hls4ml would not convert: built for
        the data and converted once per file and process (teach and distill share the check). Raises StudentError
        or the converter's one-line refusal naming the layer."""
        s = self.cfg.student
        key = (s.model, _file_stamp(s.model))
        if s.model is None or getattr(self, "_checked_student", None) == key:
            return
        import tempfile

        from l1forge.firmware.hls import convert
        from l1forge.students.deepsets import student_inputs
        from l1forge.students.user import StudentError, build_user_student

        jets = self.jets()
        features, _, preprocess = student_inputs(s.family, jets, s.n_constituents, None, s.jet_word)
        shape = preprocess.shape if preprocess is not None else features.shape[1:]
        model = build_user_student(s.model, shape, len(jets.class_names), s.seed)
        with tempfile.TemporaryDirectory(prefix="l1forge-student-") as tmp:
            try:
                convert(model, self.precision(s.family).input, self.cfg.firmware, pathlib.Path(tmp), compile=False,
                        write=False)
            except ValueError as err:  # UnsupportedLayerError, ConversionError: one line naming the layer
                raise StudentError(f"student {s.model} does not convert: {err}") from None
        self._checked_student = key

    def teach_one(self, kind: str) -> dict:
        from l1forge.teachers.train import train_teacher

        t = self.cfg.teachers
        out = self.run.teacher(kind)

        def work():
            jets = self.jets()
            result = train_teacher(
                kind, jets.constituents, jets.n_constituents, jets.labels, jets.split, out,
                size=t.size, epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, seed=t.seed,
                max_steps=t.max_steps, progress=self.progress,
                jet_features=jets.features if t.jet_features else None, device=self.cfg.device,
                n_classes=len(jets.class_names),
            )
            result["metrics"] = _test_metrics(jets, read_array(out / "predictions.h5", "logits"))
            return result

        return self.stage(f"teach.{kind}", t, ["generate"], [out / "predictions.h5", out / "model.onnx"], work)

    def distill(self) -> dict:
        """The student distilled from the chosen teacher, and its label twin (baseline), each trained ``seeds`` times
        (``Task.seeded``: k > 1 on the executor, students/<model>/seeds/<seed>/, the median seed by test accuracy
        copied into students/<model>/ for synthesize, emulate and rtl; the stage result has every seed's metrics)."""
        s = self.cfg.student
        precision = self.precision(s.family)
        teacher = self.chosen_teacher()
        self.check_user_student()
        data = str(self.data_path.resolve())
        train = lambda teacher: functools.partial(  # noqa: E731
            distill_seed, data, teacher, teacher and str((self.run.teacher(teacher) / "predictions.h5").resolve()),
            student=s, precision=precision)
        models = {"distill.student": (self.run.student, ["generate", f"teach.{teacher}"], train(teacher)),
                  "distill.baseline": (self.run.baseline, ["generate"], train(None))}
        results = self.seeded(models, {"student": s, "model_file": _file_stamp(s.model)},
                              lambda out: [out / "model.h5", out / "predictions.h5", out / "preprocess.json"],
                              lambda result: result["metrics"]["accuracy"])
        return {name.split(".")[1]: result for name, result in results.items()}

    def test_inputs(self) -> np.ndarray:
        """The student's input on the test jets (``student_x``), as ``emulate`` feeds the emulator."""
        jets = self.jets()
        index = np.flatnonzero(jets.split == TEST_SPLIT)
        return self.student_x(jets, index)

    def student_x(self, jets, index: np.ndarray) -> np.ndarray:
        """Float64 firmware input of jets ``index`` as the trained student's ``preprocess.json`` defines it: (events,
        16) standardized features (hlf) or (events, n, 4) L1 constituent words (deepsets, mixer; (events, n, 5) with
        the jet word)."""
        from l1forge.students.deepsets import ConstituentInputs, load_preprocess

        prep = load_preprocess(self.run.student / "preprocess.json")
        if isinstance(prep, ConstituentInputs):
            return prep(jets.constituents[index], jets.n_constituents[index]).astype(np.float64)
        return prep(jets.features[index]).astype(np.float64)

    def emulate(self) -> dict:
        e = self.cfg.emulation

        def work():
            jets = self.jets()
            index = np.flatnonzero(jets.split == TEST_SPLIT)[: e.max_events]
            x = self.student_x(jets, index)
            stats, emu, csim = self.compare(x, index)
            stats["metrics"] = classification_metrics(jets.labels[index], emu, jets.class_names)
            stats["trigger"] = self._trigger_rates(jets, index, emu)
            self.write_emulation(stats, emu, csim, index)
            return stats

        return self.stage("emulate", e, ["synthesize"], [self.run.emulation / "outputs.h5"], work)

    def _trigger_rates(self, jets, index: np.ndarray, logits: np.ndarray) -> dict | None:
        """A boosted-top trigger on the emulated firmware: rate from the QCD jets, efficiency for top jets.

        Score: logit_t - max(logit_g, logit_q), computable in firmware without exponentials. The zero-bias stream
        is the QCD (g, q) jets weighted by their Pythia cross sections at the configured pileup, plus the crossings
        without such a jet (emulation.trigger.zero_bias_mixture). Rate curve: emulation/trigger.h5.
        """
        from l1forge.emulation.trigger import rate_curve, trigger_summary, zero_bias_mixture

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

    def scan(self, weight_bits=(4, 6, 8), reuse_factors=(1, 2, 4), executor=None, families=("hlf",),
             n_constituents=(16,), synthesis: str = "estimate") -> dict:
        """Design-space scan of the student (not part of ``run``): accuracy vs LUTs vs latency, for every family
        (deepsets at every number of constituents) on the same plot; LUTs and latency from the estimate or, with
        synthesis="open", from Yosys on each point's RTL."""
        from l1forge.tasks.tagging_scan import run_scan, scan_points

        points = scan_points(weight_bits, reuse_factors, families, n_constituents)
        teacher = self.chosen_teacher()
        student = self.cfg.student.model_dump()

        def work():
            result = run_scan(self.run.root, teacher, student, self.cfg.firmware, points, executor, synthesis)
            write_json_atomic(self.run.root / "scan" / "scan.json", result)
            return result

        config = {"points": [list(p.__dict__.values()) for p in points], "student": student, "firmware": self.cfg.firmware,
                  "synthesis": synthesis}
        return self.stage("scan", config, ["generate", f"teach.{teacher}"], [self.run.root / "scan" / "scan.json"], work)


TASK = Tagging
