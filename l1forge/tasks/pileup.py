"""Pileup mitigation: hard processes + pileup as L1 candidates -> per-particle GNN and transformer teachers ->
per-particle QKeras student -> firmware -> bit-accurate emulation -> MET and jet resolution versus no mitigation,
CHS and the PUPPI-like baseline, at every test pileup."""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
import pydantic

from l1forge.config import Strict
from l1forge.core.artifacts import read_array
from l1forge.tasks.base import Task


class PileupConfig(Strict):
    """The pileup-mitigation task: samples (events/pfcands.py), per-particle teachers and student, checks."""

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


GOAL_FRACTION = 0.95  # of the teacher's MET-resolution gain over PUPPI that the student must keep


def cap_cost(test, kept: np.ndarray) -> dict:
    """Per pileup, what the regional cap drops: the fraction of candidates, of primary-vertex pT and of pileup pT."""
    out = {}
    for mu in np.unique(test.pileup):
        rows = test.particle_rows(test.pileup == mu)
        pv, pu = rows & test.is_pv, rows & ~test.is_pv
        out[f"{mu:g}"] = {"candidates_dropped": float(1 - kept[rows].mean()),
                          "pv_pt_dropped": float(test.pt[pv & ~kept].sum() / max(test.pt[pv].sum(), 1e-9)),
                          "pileup_pt_dropped": float(test.pt[pu & ~kept].sum() / max(test.pt[pu].sum(), 1e-9))}
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
                                         distill_pileups=p.distill_pileups, progress=self.progress, executor=pool)
            return {**result, "path": str(result["path"])}

        config = {"pileup": p.model_dump(include={"n_train", "n_test", "train_pileup", "test_pileups", "library_events",
                                                  "hard_mpi", "n_distill", "distill_pileups"}), "seed": d.seed}
        return self.stage("generate", config, [], [self.data_path], work)

    def teach_one(self, kind: str) -> dict:
        from l1forge.resolution import performance
        from l1forge.teachers.pileup import train_pileup_teacher

        t, p = self.cfg.teachers, self.cfg.pileup
        out = self.run.teacher(kind)

        def work():
            sample = self._sample()
            labelled = np.where(sample.pileup == p.train_pileup, sample.split, 2)  # truth only at train_pileup
            result = train_pileup_teacher(
                kind, sample.features(), sample.offsets, sample.is_pv, labelled, out, size=t.size,
                epochs=p.teacher_epochs, batch_size=p.teacher_batch_events, lr=t.lr, seed=t.seed,
                max_steps=t.max_steps, progress=self.progress, device=self.cfg.device)
            result["metrics"] = performance(sample, {kind: read_array(out / "weights.h5", "weight")})
            return result

        config = {"teachers": t, "epochs": p.teacher_epochs, "batch_events": p.teacher_batch_events,
                  "train_pileup": p.train_pileup}
        return self.stage(f"teach.{kind}", config, ["generate"], [out / "weights.h5", out / "model.onnx"], work)

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
                **{k: read_array(self.run.teacher(k) / "weights.h5", "weight")[rows] for k in self.cfg.teachers.kinds
                   if f"teach.{k}" in self.run.state},
                "student": student_weights(test, kept, p, predicted[tested]),
                "student_firmware": student_weights(test, kept, p, firmware_weight),
                "truth": test.is_pv.astype(np.float32),
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
