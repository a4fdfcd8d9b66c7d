"""Anomaly detection: zero-bias stream and BSM signals -> VAE teachers -> score-regressing QKeras student (and a
QKeras autoencoder baseline) -> firmware -> bit-accurate emulation -> efficiencies at fixed L1 rates."""

from __future__ import annotations

import functools
import pathlib
from typing import Literal

import numpy as np
import pydantic

from l1forge.config import Strict
from l1forge.core.artifacts import read_array, write_arrays_atomic
from l1forge.metrics import anomaly_metrics
from l1forge.tasks.base import Task, mean_auc


class AnomalyConfig(Strict):
    """The anomaly task: zero-bias stream and signals (events/anomaly.py), student and baseline sizes, L1 rates."""

    n_background: int = pydantic.Field(20000, ge=18)
    n_signal: int = pydantic.Field(2000, ge=1)
    pileup: float = pydantic.Field(60.0, ge=0)
    library_events: int = pydantic.Field(20000, ge=1)
    hard_mpi: bool = True
    processes: list[str] = []  # files of Pythia settings: extra signal processes (`l1forge generate --process`)
    student_hidden: list[int] = [32, 16]
    ae_latent: int = 8
    ae_hidden: list[int] = [32]
    rates_khz: list[float] = [1.0, 10.0]
    teacher_pt_target: Literal["log", "linear"] = "linear"  # teachers' pT reconstruction target (autoencoders.py)
    teacher_score: Literal["reco", "latent", "kl"] = "latent"  # the score the student regresses and metrics quote
    student_tail_power: float = pydantic.Field(0.5, ge=0)  # tail weighting of the student's MSE (0: plain MSE)


def _by_signal(sample, score: np.ndarray) -> dict:
    """{signal name: scores of its events} for the signal samples present in ``sample``."""
    return {name: score[sample.is_signal & (sample.sample == i)] for i, name in enumerate(sample.sample_names)
            if np.any(sample.is_signal & (sample.sample == i))}


def test_metrics(sample, score: np.ndarray, rates_khz, n_bunches: int) -> dict:
    """AUC and efficiency at the L1 rates ``rates_khz``, per signal, on the test split (weighted background)."""
    test = sample.subset("test")
    score = score[sample.split == 2]
    bkg = ~test.is_signal
    return anomaly_metrics(score[bkg], test.weight[bkg], _by_signal(test, score), tuple(rates_khz), n_bunches)


def train_seed(data: str, teacher: str | None, teacher_scores: tuple[str, str] | None, anomaly: AnomalyConfig,
               student, precision, n_bunches: int, out: str, seed: int, progress: bool = False) -> dict:
    """One training into ``out`` (model.h5, predictions.h5 with 'score' (events,), preprocess.json, history.json):
    the student regressing ``teacher``'s score (``teacher_scores``: (file, dataset) of its (events,) scores) or,
    for teacher None, the autoencoder baseline, on the crossings of ``data``, initial weights and
    batches from ``seed``. Module-level, with absolute paths, so that an executor's worker runs it. Returns the
    training's result (students/anomaly.py) with the test ``metrics`` (``test_metrics``)."""
    from l1forge.events.anomaly import read_anomaly
    from l1forge.students.anomaly import train_ae_baseline, train_score_student

    a, s, out = anomaly, student, pathlib.Path(out)
    sample = read_anomaly(data)
    common = dict(precision=precision, epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, seed=seed, progress=progress)
    if teacher:
        result = train_score_student(sample.objects, read_array(*teacher_scores), sample.split, out,
                                     ~sample.is_signal, hidden=tuple(a.student_hidden),
                                     tail_power=a.student_tail_power, **common)
        result.update(teacher=teacher, teacher_score=a.teacher_score)
    else:
        result = train_ae_baseline(sample.objects, sample.split, out, ~sample.is_signal, latent=a.ae_latent,
                                   hidden=tuple(a.ae_hidden), **common)
    result.pop("score")  # in memory only; predictions.h5 holds it
    result["metrics"] = test_metrics(sample, read_array(out / "predictions.h5", "score"), a.rates_khz, n_bunches)
    return result


class Anomaly(Task):
    """Model-independent triggers: VAE teachers on zero-bias crossings, a score-regressing QKeras student."""

    name = "anomaly"
    data_file = "anomaly.h5"
    report_template = "anomaly.html.j2"
    report_module = "l1forge.tasks.anomaly_report"
    config_section = AnomalyConfig
    config_presets = {"smoke": {"n_background": 400, "n_signal": 40, "pileup": 10, "library_events": 400, "hard_mpi": False},
                      "full": {"n_background": 100000, "n_signal": 10000}}

    def _sample(self):
        from l1forge.events.anomaly import read_anomaly

        return read_anomaly(self.data_path)

    def _metrics(self, sample, score: np.ndarray) -> dict:
        """``test_metrics`` at the configured L1 rates."""
        return test_metrics(sample, score, self.cfg.anomaly.rates_khz, self.cfg.trigger.n_bunches)

    # ---- stages ----------------------------------------------------------------------------------------
    def generate(self) -> dict:
        from l1forge.core.executors import executor
        from l1forge.events.anomaly import generate_anomaly
        from l1forge.events.processes import read_process_file

        a, d = self.cfg.anomaly, self.cfg.data

        def work():
            extra = {pathlib.Path(p).stem: read_process_file(p) for p in a.processes}
            with executor(d.executor, d.address, d.workers) as pool:
                result = generate_anomaly(
                    self.data_path, a.n_background, a.n_signal, seed=d.seed, pileup=a.pileup, workers=d.workers,
                    extra_processes=extra or None, hard_mpi=a.hard_mpi, library_events=a.library_events,
                    progress=self.progress, executor=pool,
                )
            return {**result, "path": str(result["path"])}

        return self.stage("generate", {"anomaly": a, "seed": d.seed}, [], [self.data_path], work)

    def chosen_teacher(self) -> str:
        """student.teacher, or for "best" the GNN when trained (background-only validation losses of two different
        models do not rank anomaly detectors; the GNN's latent score measured best, see README)."""
        choice = self.cfg.student.teacher
        if choice == "best" and "teach.gnn" in self.run.state:
            return "gnn"
        return super().chosen_teacher()

    def _teacher_score(self, kind: str) -> np.ndarray:
        from l1forge.teachers.anomaly import SCORE_DATASETS

        return read_array(self.run.teacher(kind) / "scores.h5", SCORE_DATASETS[self.cfg.anomaly.teacher_score])

    def teach_one(self, kind: str) -> dict:
        from l1forge.teachers.anomaly import SCORE_DATASETS, train_anomaly_teacher

        t, a = self.cfg.teachers, self.cfg.anomaly
        out = self.run.teacher(kind)

        def work():
            sample = self._sample()
            result = train_anomaly_teacher(
                kind, sample.objects, sample.split, out, size=t.size, epochs=t.epochs, batch_size=t.batch_size,
                lr=t.lr, seed=t.seed, max_steps=t.max_steps, progress=self.progress, background=~sample.is_signal,
                pt_target=a.teacher_pt_target, device=self.cfg.device,
            )
            result["score"] = a.teacher_score
            by_score = {k: self._metrics(sample, read_array(out / "scores.h5", name)) for k, name in SCORE_DATASETS.items()}
            result["metrics"], result["metrics_by_score"] = by_score[a.teacher_score], by_score
            return result

        config = {"teachers": t, "pt_target": a.teacher_pt_target, "score": a.teacher_score}
        return self.stage(f"teach.{kind}", config, ["generate"], [out / "scores.h5", out / "model.onnx"], work)

    def distill(self) -> dict:
        """The score-regressing student of the chosen teacher and the autoencoder baseline, each trained ``seeds``
        times (``Task.seeded``; the median seed by mean AUC over the signals goes to the firmware)."""
        from l1forge.teachers.anomaly import SCORE_DATASETS

        a, s = self.cfg.anomaly, self.cfg.student
        teacher = self.chosen_teacher()
        scores = (str((self.run.teacher(teacher) / "scores.h5").resolve()), SCORE_DATASETS[a.teacher_score])
        train = lambda teacher, scores=None: functools.partial(  # noqa: E731
            train_seed, str(self.data_path.resolve()), teacher, scores, a, s, self.precision(),
            self.cfg.trigger.n_bunches)
        models = {"distill.student": (self.run.student, ["generate", f"teach.{teacher}"], train(teacher, scores)),
                  "distill.baseline": (self.run.baseline, ["generate"], train(None))}
        results = self.seeded(models, {"anomaly": a, "student": s}, lambda out: [out / "model.h5", out / "predictions.h5"],
                              mean_auc)
        return {name.split(".")[1]: result for name, result in results.items()}

    def test_inputs(self) -> np.ndarray:
        """Flattened L1 objects of the test crossings, as ``emulate`` feeds the emulator."""
        from l1forge.students.anomaly import flatten_objects

        sample = self._sample()
        return flatten_objects(sample.objects[np.flatnonzero(sample.split == 2)]).astype(np.float64)

    def emulate(self) -> dict:
        def work():
            from l1forge.emulation.trigger import rate_curve, trigger_summary
            from l1forge.students.anomaly import flatten_objects

            sample = self._sample()
            index = np.flatnonzero(sample.split == 2)
            stats, emu, csim = self.compare(flatten_objects(sample.objects[index]).astype(np.float64), index)
            score = np.zeros(len(sample.split))
            score[index] = emu[:, 0]
            stats["metrics"] = self._metrics(sample, score)
            test = sample.subset("test")
            bkg, w = emu[~test.is_signal, 0], test.weight[~test.is_signal]
            t, firmware = self.cfg.trigger, self.run.result("synthesize")
            thresholds, rate, err = rate_curve(bkg, w, t.n_bunches, np.unique(bkg))
            write_arrays_atomic(self.run.emulation / "trigger.h5", {"threshold": thresholds, "rate_khz": rate, "rate_khz_err": err})
            signals = _by_signal(test, emu[:, 0])
            stats["trigger"] = {
                **trigger_summary(bkg, signals, firmware["latency_ns"], firmware["ii_cycles"], firmware["clock_mhz"],
                                  t.budget_ns, max(self.cfg.anomaly.rates_khz), t.n_bunches, w),
                "score": f"student output (regressed log1p {self.cfg.anomaly.teacher_score} score of the teacher)",
                "background": "zero-bias crossings (minimum bias + weighted hard SM processes, pileup overlaid)",
                "pileup": self.cfg.anomaly.pileup,
            }
            self.write_emulation(stats, emu, csim, index)
            return stats

        return self.stage("emulate", self.cfg.emulation, ["synthesize"], [self.run.emulation / "outputs.h5"], work)


TASK = Anomaly
