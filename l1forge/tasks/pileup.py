"""Pileup mitigation: hard processes + pileup as L1 candidates (neutrals from a merged calorimeter by default) ->
per-particle GNN and transformer teachers, each trained on the truth PV fraction and, without truth, by optimal
transport to the paired no-pileup event -> per-particle QKeras student distilled from the optimal-transport teacher
-> firmware -> bit-accurate emulation -> MET and jet resolution versus no mitigation, CHS and the PUPPI-like
baseline, at every test pileup."""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
import pydantic

from l1forge.config import Strict
from l1forge.core.artifacts import read_array
from l1forge.tasks.base import Task


Training = Literal["truth", "optimal_transport"]
OT_SUFFIX = "_ot"  # teachers/<kind>_ot/, stage teach.<kind>_ot: the optimal-transport teacher of each kind


def teacher_name(kind: str, training: str) -> str:
    """The directory and stage name of a teacher: <kind> for truth, <kind>_ot for optimal transport."""
    return kind if training == "truth" else kind + OT_SUFFIX


class PileupConfig(Strict):
    """The pileup-mitigation task: samples (events/pfcands.py), per-particle teachers and student, checks."""

    # neutral candidates: merged = an L1 calorimeter's towers summing every interaction's deposits (PV-fraction
    # truth); particles = one candidate per particle (the samples of before, byte for byte)
    calorimeter: Literal["merged", "particles"] = "merged"
    paired: bool | None = None  # store each crossing's hard scatter without pileup; None: with merged
    # how the teachers train; None: both where the sample is paired, truth alone otherwise
    teacher_trainings: list[Training] | None = None
    # the teachers the student distils from; None: optimal_transport where trained, else truth
    student_teacher_training: Training | None = None

    n_train: int = pydantic.Field(2000, ge=6)  # crossings at train_pileup, 80% train / 20% validation
    n_test: int = pydantic.Field(1000, ge=3)  # test crossings per test pileup
    train_pileup: float = pydantic.Field(60.0, ge=0)
    test_pileups: list[float] = pydantic.Field([60.0, 200.0], min_length=1)
    # crossings at other pileups that the teacher labels for the student (the teacher trains at train_pileup only)
    distill_pileups: list[float] = [200.0]
    n_distill: int = pydantic.Field(500, ge=3)  # per distillation pileup, 80% train / 20% validation
    library_events: int = pydantic.Field(20000, ge=1)
    hard_mpi: bool = True
    teacher_epochs: int = pydantic.Field(3, ge=1)
    teacher_batch_events: int = pydantic.Field(16, ge=1)  # crossings per teacher batch (~900 candidates each at 60)
    # the deployable student (README, "Pileup mitigation"): it reads at most region_cap candidates, the hardest, of
    # each of region_eta x region_phi detector regions (events.mitigation.regional_cap; None: every candidate)
    region_eta: int = pydantic.Field(8, ge=1)
    region_phi: int = pydantic.Field(9, ge=1)
    region_cap: int | None = pydantic.Field(16, ge=1)
    # vertex: tracks the cap keeps take their vertex association (the CHS weight), the network weighs the neutral
    # candidates, as L1 PUPPI does (a learned weight below 1 would shrink every primary-vertex lepton); network: the
    # network weighs every candidate the cap keeps
    student_tracks: Literal["vertex", "network"] = "vertex"
    student_hidden: list[int] = [16, 8]
    student_pt_power: float = pydantic.Field(1.0, ge=0)  # loss weight pT^power
    student_epochs: int = pydantic.Field(30, ge=1)
    student_batch_size: int = pydantic.Field(1024, ge=1)
    student_max_train: int | None = pydantic.Field(1500000, ge=1)  # training candidates (random subset)
    csim_candidates: int = pydantic.Field(20000, ge=1)  # test candidates checked against the C-sim

    @property
    def is_paired(self) -> bool:
        return self.calorimeter == "merged" if self.paired is None else self.paired

    @property
    def trainings(self) -> list[str]:
        if self.teacher_trainings is not None:
            return list(dict.fromkeys(self.teacher_trainings))
        return ["truth", "optimal_transport"] if self.is_paired else ["truth"]

    @property
    def student_training(self) -> str:
        if self.student_teacher_training is not None:
            return self.student_teacher_training
        return "optimal_transport" if "optimal_transport" in self.trainings else "truth"

    @pydantic.model_validator(mode="after")
    def _student_teacher_is_trained(self) -> "PileupConfig":
        if self.student_training not in self.trainings:
            raise ValueError(f"student_teacher_training {self.student_training} is not among teacher_trainings "
                             f"{self.trainings}")
        return self


GOAL_FRACTION = 0.95  # of the teacher's MET-resolution gain over PUPPI that the student must keep


def cap_cost(test, kept: np.ndarray) -> dict:
    """Per pileup, what the regional cap drops: the fraction of candidates, of primary-vertex pT and of pileup pT."""
    out = {}
    for mu in np.unique(test.pileup):
        rows = test.particle_rows(test.pileup == mu)
        pv_pt = test.pt * test.pv_fraction * rows  # merged towers: their PV share
        pu_pt = test.pt * (1 - test.pv_fraction) * rows
        out[f"{mu:g}"] = {"candidates_dropped": float(1 - kept[rows].mean()),
                          "pv_pt_dropped": float(pv_pt[~kept].sum() / max(pv_pt.sum(), 1e-9)),
                          "pileup_pt_dropped": float(pu_pt[~kept].sum() / max(pu_pt.sum(), 1e-9))}
    return out


def goals(table: dict, teacher: str, student: str, baseline: str = "puppi") -> dict:
    """Per pileup: does the student beat the baseline's MET resolution, and keep >= GOAL_FRACTION of the teacher's
    improvement over it?"""
    out = {}
    for mu, methods in table.items():
        res = {m: methods[m]["met"]["resolution_gev"] for m in (teacher, student, baseline)}
        gain_teacher, gain_student = res[baseline] - res[teacher], res[baseline] - res[student]
        kept = gain_student / gain_teacher if gain_teacher > 0 else float("nan")
        out[mu] = {"met_resolution_gev": res, "student_beats_baseline": bool(res[student] < res[baseline]),
                   "fraction_of_teacher_gain": kept, "keeps_teacher_gain": bool(kept >= GOAL_FRACTION)}
    return out


class Pileup(Task):
    """Per-particle pileup mitigation: L1 candidates with PV/pileup truth, per-particle teachers and student."""

    name = "pileup"
    data_file = "pileup.h5"
    report_template = "pileup.html.j2"
    report_module = "l1forge.tasks.pileup_report"
    config_section = PileupConfig
    config_presets = {
        "smoke": {"n_train": 60, "n_test": 24, "train_pileup": 20, "test_pileups": [20, 60], "library_events": 400,
                  "distill_pileups": [60], "n_distill": 24, "hard_mpi": False, "teacher_epochs": 2, "student_epochs": 3,
                  "csim_candidates": 2000},
        "full": {"n_train": 20000, "n_test": 5000, "test_pileups": [60, 140, 200], "distill_pileups": [140, 200],
                 "n_distill": 5000, "teacher_epochs": 30, "student_epochs": 60, "student_max_train": 5000000},
    }

    def _sample(self):
        from l1forge.events.pfcands import read_pileup

        return read_pileup(self.data_path)

    # ---- stages ----------------------------------------------------------------------------------------
    def generate(self) -> dict:
        from l1forge.core.executors import executor
        from l1forge.events.pfcands import generate_pileup

        p, d = self.cfg.pileup, self.cfg.data

        def work():
            with executor(d.executor, d.address, d.workers) as pool:
                result = generate_pileup(self.data_path, p.n_train, p.n_test, seed=d.seed,
                                         train_pileup=p.train_pileup, test_pileups=p.test_pileups, workers=d.workers,
                                         hard_mpi=p.hard_mpi, library_events=p.library_events, n_distill=p.n_distill,
                                         distill_pileups=p.distill_pileups, progress=self.progress, executor=pool,
                                         calorimeter=p.calorimeter, paired=p.is_paired)
            return {**result, "path": str(result["path"])}

        config = {"pileup": {**p.model_dump(include={"n_train", "n_test", "train_pileup", "test_pileups",
                                                     "library_events", "hard_mpi", "n_distill", "distill_pileups",
                                                     "calorimeter"}), "paired": p.is_paired}, "seed": d.seed}
        return self.stage("generate", config, [], [self.data_path], work)

    def teach(self) -> dict:
        """Every teacher kind with every training of ``pileup.trainings``: teach.<kind> (truth), teach.<kind>_ot."""
        p = self.cfg.pileup
        return {teacher_name(k, t): self.teach_one(k, t) for k in self.cfg.teachers.kinds for t in p.trainings}

    def teach_one(self, kind: str, training: str = "truth") -> dict:
        from l1forge.events.pfcands import require_paired
        from l1forge.resolution import performance
        from l1forge.teachers.pileup import train_pileup_teacher

        t, p = self.cfg.teachers, self.cfg.pileup
        name = teacher_name(kind, training)
        out = self.run.teacher(name)

        def work():
            sample = self._sample()
            paired = None
            if training == "optimal_transport":
                nopu = require_paired(sample)  # one line naming the file and saying to regenerate
                paired = {"pt": nopu.pt, "eta": nopu.eta, "phi": nopu.phi, "offsets": nopu.offsets}
            train_at = np.where(sample.pileup == p.train_pileup, sample.split, 2)  # both train at train_pileup
            result = train_pileup_teacher(
                kind, sample.features(), sample.offsets, sample.pv_fraction, train_at, out, size=t.size,
                epochs=p.teacher_epochs, batch_size=p.teacher_batch_events, lr=t.lr, seed=t.seed,
                max_steps=t.max_steps, progress=self.progress, device=self.cfg.device, training=training,
                paired=paired)
            result["calorimeter"] = sample.calorimeter
            result["metrics"] = performance(sample, {name: read_array(out / "weights.h5", "weight")})
            return result

        config = {"teachers": t, "epochs": p.teacher_epochs, "batch_events": p.teacher_batch_events,
                  "train_pileup": p.train_pileup, "training": training}
        return self.stage(f"teach.{name}", config, ["generate"], [out / "weights.h5", out / "model.onnx"], work)

    def trained_teachers(self) -> list[str]:
        """Names (``teacher_name``) of the teachers whose teach stage has run."""
        return [teacher_name(k, t) for k in self.cfg.teachers.kinds for t in self.cfg.pileup.trainings
                if f"teach.{teacher_name(k, t)}" in self.run.state]

    def chosen_teacher(self) -> str:
        """The student's teacher: of ``pileup.student_training``, the kind ``student.teacher`` names or, for
        "best", the one with the lowest validation loss (losses of one training compare)."""
        p, choice = self.cfg.pileup, self.cfg.student.teacher
        if choice != "best":
            return teacher_name(choice, p.student_training)
        trained = {k: self.run.result(f"teach.{teacher_name(k, p.student_training)}") for k in self.cfg.teachers.kinds
                   if f"teach.{teacher_name(k, p.student_training)}" in self.run.state}
        if not trained:
            raise RuntimeError("stage 'distill' needs a trained teacher first (run `l1forge teach`)")
        return teacher_name(min(trained, key=lambda k: trained[k]["best_val_loss"]), p.student_training)

    def distill(self) -> dict:
        from l1forge.resolution import performance
        from l1forge.students.pileup import (network_inputs, region_kept, student_candidates, student_weights,
                                             train_weight_student)

        p, s = self.cfg.pileup, self.cfg.student
        teacher = self.chosen_teacher()
        out = self.run.student

        def work():
            full = self._sample()
            kept = region_kept(full, p)
            rows = student_candidates(full, kept, p)
            teacher_weight = read_array(self.run.teacher(teacher) / "weights.h5", "weight")[rows]
            result = train_weight_student(
                network_inputs(full, kept, p), teacher_weight, full.pt[rows],
                full.particle_rows(full.split == 0)[rows], full.particle_rows(full.split == 1)[rows], out,
                precision=self.precision(), hidden=tuple(p.student_hidden), epochs=p.student_epochs,
                batch_size=p.student_batch_size, lr=s.lr, seed=s.seed, max_train=p.student_max_train,
                pt_power=p.student_pt_power, progress=self.progress)
            weight = student_weights(full, kept, p, read_array(out / "predictions.h5", "weight"))
            return {**result, "teacher": teacher, "metrics": performance(full, {"student": weight})}

        config = {"pileup": p, "student": s}
        return {"student": self.stage("distill.student", config, ["generate", f"teach.{teacher}"],
                                       [out / "model.h5", out / "predictions.h5"], work)}

    def test_inputs(self) -> np.ndarray:
        """Network inputs of the test candidates, as ``emulate`` feeds the emulator."""
        from l1forge.students.pileup import network_inputs, region_kept

        test = self._sample()
        test = test.subset(test.split == 2)
        return network_inputs(test, region_kept(test, self.cfg.pileup), self.cfg.pileup).astype(np.float64)

    def emulate(self) -> dict:
        p = self.cfg.pileup

        def work():
            from l1forge.emulation.emulator import Emulator
            from l1forge.emulation.trigger import candidate_throughput
            from l1forge.events.mitigation import candidates_p99, chs_weights, puppi_weights
            from l1forge.resolution import performance
            from l1forge.students.pileup import network_inputs, region_kept, student_candidates, student_weights

            sample = self._sample()
            test = sample.subset(sample.split == 2)
            rows = sample.particle_rows(sample.split == 2)
            kept_all = region_kept(sample, p)  # the cap acts per crossing: the test crossings' share is theirs alone
            kept = kept_all[rows]
            network = student_candidates(test, kept, p)
            x = network_inputs(test, kept, p).astype(np.float64)
            index = np.unique(np.linspace(0, len(x) - 1, min(p.csim_candidates, len(x))).astype(np.int64))
            stats, emu, csim = self.compare(x[index], index)
            emulator = Emulator.from_file(self.run.firmware / "graph.json")
            start = time.perf_counter()
            firmware_weight = emulator.predict(x)[:, 0]
            stats["emulator_all_candidates_per_s"] = len(x) / (time.perf_counter() - start)
            if not np.array_equal(firmware_weight[index], emu[:, 0]):
                raise RuntimeError("emulator fast path and checked path disagree on the C-sim candidates")
            teacher = self.run.result("distill.student")["teacher"]
            predicted = read_array(self.run.student / "predictions.h5", "weight")  # network rows of all splits
            tested = rows[student_candidates(sample, kept_all, p)]
            n = len(test.pt)
            weights = {
                "none": np.ones(n, np.float32), "chs": chs_weights(test), "puppi": puppi_weights(test),
                **{k: read_array(self.run.teacher(k) / "weights.h5", "weight")[rows] for k in self.trained_teachers()},
                "student": student_weights(test, kept, p, predicted[tested]),
                "student_firmware": student_weights(test, kept, p, firmware_weight),
                "truth": test.pv_fraction.astype(np.float32),  # merged towers: their PV share
            }
            table = performance(test, weights)
            p99 = candidates_p99(test, network)
            stats["region_cap"] = cap_cost(test, kept)
            stats["resolution"] = table
            stats["metrics"] = {mu: methods["student_firmware"] for mu, methods in table.items()}
            stats["goals"] = goals(table, teacher, "student_firmware")
            stats["throughput"] = candidate_throughput(self.run.result("synthesize"), p99)
            stats["teacher"] = teacher
            self.write_emulation(stats, emu, csim, index)
            return stats

        config = {"emulation": self.cfg.emulation, "csim_candidates": p.csim_candidates}
        return self.stage("emulate", config, ["synthesize"], [self.run.emulation / "outputs.h5"], work)


TASK = Pileup
