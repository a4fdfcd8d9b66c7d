"""The pileup-mitigation flow: hard processes + pileup as L1 candidates -> per-particle GNN and transformer teachers
-> per-particle QKeras student -> firmware -> bit-accurate emulation -> MET and jet resolution versus no mitigation,
CHS and the PUPPI-like baseline, at every test pileup."""

from __future__ import annotations

import math
import pathlib
import time

import numpy as np

from emulation.lhc import clocks_per_crossing
from l1forge.io import read_array, write_arrays_atomic, write_json_atomic
from l1forge.pipeline import Flow

GOAL_FRACTION = 0.95  # of the teacher's MET-resolution gain over PUPPI that the student must keep


def throughput(firmware: dict, candidates_per_crossing: dict[str, float]) -> dict:
    """Candidates one instance of the per-particle network takes per 25 ns crossing (clock cycles per crossing / II),
    and the instances (and LUTs) needed for the candidates of a crossing at each pileup (99th percentile of the
    test crossings)."""
    per_instance = clocks_per_crossing(firmware["clock_mhz"]) // firmware["ii_cycles"]
    lut = (firmware.get("resources") or {}).get("LUT")
    lut_percent = (firmware.get("utilisation_percent") or {}).get("LUT")
    rows = {}
    for mu, n in candidates_per_crossing.items():
        instances = math.ceil(n / max(per_instance, 1))
        rows[mu] = {"candidates_p99": n, "instances": instances, "LUT": None if lut is None else instances * lut,
                    "LUT_percent_of_part": None if lut_percent is None else instances * lut_percent}
    return {"candidates_per_instance_per_crossing": per_instance, "clock_mhz": firmware["clock_mhz"],
            "ii_cycles": firmware["ii_cycles"], "per_pileup": rows}


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


class PileupFlow(Flow):
    """Same stages, bookkeeping and firmware build as the tagging flow; per-particle data, models and metrics."""

    @property
    def data_path(self) -> pathlib.Path:
        return self.run.root / "data" / "pileup.h5"

    def _sample(self):
        from events.pfcands import read_pileup

        return read_pileup(self.data_path)

    # ---- stages ----------------------------------------------------------------------------------------
    def generate(self) -> dict:
        from events.pfcands import generate_pileup

        p, d = self.cfg.pileup, self.cfg.data

        def work():
            result = generate_pileup(self.data_path, p.n_train, p.n_test, seed=d.seed, train_pileup=p.train_pileup,
                                     test_pileups=p.test_pileups, workers=d.workers, hard_mpi=p.hard_mpi,
                                     library_events=p.library_events, n_distill=p.n_distill,
                                     distill_pileups=p.distill_pileups, progress=self.progress)
            return {**result, "path": str(result["path"])}

        config = {"pileup": p.model_dump(include={"n_train", "n_test", "train_pileup", "test_pileups", "library_events",
                                                  "hard_mpi", "n_distill", "distill_pileups"}), "seed": d.seed}
        return self._stage("generate", config, [], [self.data_path], work)

    def _teach_one(self, kind: str) -> dict:
        from l1forge.resolution import performance
        from teachers.pileup import train_pileup_teacher

        t, p = self.cfg.teachers, self.cfg.pileup
        out = self.run.teacher(kind)

        def work():
            sample = self._sample()
            labelled = np.where(sample.pileup == p.train_pileup, sample.split, 2)  # truth only at train_pileup
            result = train_pileup_teacher(
                kind, sample.features(), sample.offsets, sample.is_pv, labelled, out, size=t.size,
                epochs=p.teacher_epochs, batch_size=p.teacher_batch_events, lr=t.lr, seed=t.seed,
                max_steps=t.max_steps, progress=self.progress)
            result["metrics"] = performance(sample, {kind: read_array(out / "weights.h5", "weight")})
            return result

        config = {"teachers": t, "epochs": p.teacher_epochs, "batch_events": p.teacher_batch_events,
                  "train_pileup": p.train_pileup}
        return self._stage(f"teach.{kind}", config, ["generate"], [out / "weights.h5", out / "model.onnx"], work)

    def distill(self) -> dict:
        from l1forge.resolution import performance
        from students.pileup import student_inputs, train_weight_student

        p, s = self.cfg.pileup, self.cfg.student
        teacher = self._chosen_teacher()
        out = self.run.student

        def work():
            sample = self._sample()
            teacher_weight = read_array(self.run.teacher(teacher) / "weights.h5", "weight")
            result = train_weight_student(
                student_inputs(sample), teacher_weight, sample.pt, sample.particle_rows(sample.split == 0),
                sample.particle_rows(sample.split == 1), out, precision=self._precision(), hidden=tuple(p.student_hidden),
                epochs=p.student_epochs, batch_size=p.student_batch_size, lr=s.lr, seed=s.seed,
                max_train=p.student_max_train, pt_power=p.student_pt_power, progress=self.progress)
            weight = np.clip(read_array(out / "predictions.h5", "weight"), 0.0, 1.0)
            return {**result, "teacher": teacher, "metrics": performance(sample, {"student": weight})}

        config = {"pileup": p, "student": s}
        return {"student": self._stage("distill.student", config, ["generate", f"teach.{teacher}"],
                                       [out / "model.h5", out / "predictions.h5"], work)}

    def emulate(self) -> dict:
        p = self.cfg.pileup

        def work():
            from emulation.emulator import Emulator
            from events.mitigation import chs_weights, puppi_weights
            from l1forge.resolution import performance
            from students.pileup import student_inputs

            sample = self._sample()
            test = sample.subset(sample.split == 2)
            rows = sample.particle_rows(sample.split == 2)
            x = student_inputs(test).astype(np.float64)
            index = np.unique(np.linspace(0, len(x) - 1, min(p.csim_candidates, len(x))).astype(np.int64))
            stats, emu, csim = self._compare(x[index], index)
            write_arrays_atomic(self.run.emulation / "outputs.h5", {"emulator": emu, "csim": csim, "index": index})
            emulator = Emulator.from_file(self.run.firmware / "graph.json")
            start = time.perf_counter()
            firmware_weight = emulator.predict(x)[:, 0]
            stats["emulator_all_candidates_per_s"] = len(x) / (time.perf_counter() - start)
            if not np.array_equal(firmware_weight[index], emu[:, 0]):
                raise RuntimeError("emulator fast path and checked path disagree on the C-sim candidates")
            teacher = self.run.result("distill.student")["teacher"]
            weights = {
                "none": np.ones(len(x), np.float32), "chs": chs_weights(test), "puppi": puppi_weights(test),
                **{k: read_array(self.run.teacher(k) / "weights.h5", "weight")[rows] for k in self.cfg.teachers.kinds
                   if f"teach.{k}" in self.run.state},
                "student": np.clip(read_array(self.run.student / "predictions.h5", "weight")[rows], 0, 1),
                "student_firmware": np.clip(firmware_weight, 0, 1),
                "truth": test.is_pv.astype(np.float32),
            }
            table = performance(test, weights)
            counts = np.diff(test.offsets)
            p99 = {f"{m:g}": float(np.percentile(counts[test.pileup == m], 99)) for m in np.unique(test.pileup)}
            stats["resolution"] = table
            stats["metrics"] = {mu: methods["student_firmware"] for mu, methods in table.items()}
            stats["goals"] = goals(table, teacher, "student_firmware")
            stats["throughput"] = throughput(self.run.result("synthesize"), p99)
            stats["teacher"] = teacher
            write_json_atomic(self.run.emulation / "emulation.json", stats)
            return stats

        config = {"emulation": self.cfg.emulation, "csim_candidates": p.csim_candidates}
        return self._stage("emulate", config, ["synthesize"], [self.run.emulation / "outputs.h5"], work)

    # ---- summary.json --------------------------------------------------------------------------------
    def summary(self) -> dict:
        summary = super().summary()
        task = summary["tasks"][self.cfg.task]
        state = self.run.state
        teachers = {k: state[f"teach.{k}"]["result"] for k in ("gnn", "transformer") if f"teach.{k}" in state}
        if teachers:
            keep = ("params", "size", "val_auc", "val_auc_neutral", "train_seconds", "metrics")
            task["teachers"] = {k: {**{f: r.get(f) for f in keep}, "onnx": str(self.run.teacher(k) / "model.onnx")}
                                for k, r in teachers.items()}
        if emulation := state.get("emulate", {}).get("result"):
            task["pileup"] = {k: emulation[k] for k in ("resolution", "goals", "throughput", "teacher")}
            task["emulation"]["emulator_all_candidates_per_s"] = emulation["emulator_all_candidates_per_s"]
        return summary
