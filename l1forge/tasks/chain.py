"""Pileup mitigation in front of anomaly detection: zero-bias and signal crossings as L1 candidates at several
pileups -> per-candidate weights (none, CHS, PUPPI-like, the pileup teacher, the pileup student's emulated firmware)
-> fixed-point L1 objects (emulation/objects.py) -> an autoencoder per mitigation, the student chain's in firmware
-> the rate at each pileup for a threshold set at the reference pileup, and efficiencies at a fixed rate.

The pileup teacher and student are the pileup task's: its run directory (``chain.pileup_run``; by default
``<chain run>/pileup``, and ``OUT/pileup`` under ``l1forge run --task all``) is brought up to date first through
its own runner, so the chain resumes with it.
"""

from __future__ import annotations

import functools
import pathlib
import time
from typing import Annotated

import numpy as np
import pydantic

from l1forge.config import Strict
from l1forge.core.artifacts import read_array, write_arrays_atomic
from l1forge.tasks.base import Task, mean_auc

# truth: primary-vertex candidates only, the limit of perfect mitigation. Its rate still grows with pileup, because
# the share of crossings that hold a hard interaction grows with the interactions per crossing (at a fixed bunch
# count, pileup is luminosity): the pileup-free growth every other weighting is measured against. Its objects do not
# depend on the pileup, so its figures at each pileup pool the test crossings of every pileup (POOLED)
METHODS = ("none", "chs", "puppi", "teacher", "student", "truth")
POOLED = ("truth",)
WEIGHT_BLOCK = 2000  # crossings per block of the weights stage: its memory stays bounded at any sample size


def chain_crossings(data, chain: "ChainConfig", seed: int):
    """The crossings of ``data``, their split that of the autoencoders' training pileups (``chain.train_pileups``,
    shared out with the data ``seed``)."""
    from l1forge.events.crossings import read_crossings

    crossings = read_crossings(data)
    train = chain.pileups if chain.train_pileups is None else chain.train_pileups
    crossings.sample.split = crossings.training_split(chain.reference_pileup, train, seed)
    return crossings


def metrics_at(crossings, score: np.ndarray, pileup: float, rate_khz: float, n_bunches: int,
               pooled: bool = False) -> dict:
    """l1forge.metrics.anomaly_metrics at ``rate_khz`` on the test crossings at one pileup (zero-bias weights
    renormalised); pooled: the test crossings of every pileup, standing for the mixture at this one (POOLED)."""
    from l1forge.metrics import anomaly_metrics

    s = crossings.sample
    test = (s.split == 2) & (pooled | (s.pileup == pileup))
    w = crossings.zero_bias_weights(test, pileup if pooled else None)
    bkg = test & ~crossings.is_signal
    signals = {name: score[test & (s.process == i)] for i, name in enumerate(crossings.names)
               if crossings.sample_is_signal[i] and np.any(test & (s.process == i))}
    return anomaly_metrics(score[bkg], w[bkg], signals, (rate_khz,), n_bunches)


def train_autoencoder(data: str, objects: str, method: str, chain: "ChainConfig", student, precision, data_seed: int,
                      n_bunches: int, out: str, seed: int, progress: bool = False) -> dict:
    """One training of the autoencoder behind ``method`` (students/anomaly.py ``train_ae_baseline``) on its objects
    (dataset ``method`` of ``objects``) of the zero-bias training crossings, into ``out``; initial weights and
    batches from ``seed``. Module-level, with absolute paths, so that an executor's worker runs it. Returns the
    training's result with the ``metrics`` at the reference pileup."""
    from l1forge.students.anomaly import train_ae_baseline

    crossings = chain_crossings(data, chain, data_seed)
    result = train_ae_baseline(read_array(objects, method), crossings.sample.split, out, ~crossings.is_signal,
                               precision=precision, latent=chain.ae_latent, hidden=tuple(chain.ae_hidden),
                               epochs=student.epochs, batch_size=student.batch_size, lr=student.lr, seed=seed,
                               progress=progress)
    score = result.pop("score")
    return {**result, "teacher": "none (autoencoder on zero-bias objects)", "mitigation": method,
            "metrics": metrics_at(crossings, score, chain.reference_pileup, chain.rate_khz, n_bunches)}


class ChainConfig(Strict):
    """The chain task: crossings (events/crossings.py), the anomaly models behind each mitigation, the rate."""

    n_zero_bias: int = pydantic.Field(3000, ge=18)  # zero-bias crossings per pileup
    n_signal: int = pydantic.Field(200, ge=1)  # crossings per signal per pileup
    pileups: list[Annotated[float, pydantic.Field(gt=0, allow_inf_nan=False)]] = pydantic.Field([60.0, 140.0, 200.0],
                                                                                              min_length=1)
    reference_pileup: float = pydantic.Field(60.0, gt=0)  # the threshold for the rate is set here
    # the autoencoders train on the zero-bias crossings of these pileups in equal shares (Crossings.training_split);
    # None: every pileup of the chain; [reference_pileup]: there only
    train_pileups: list[float] | None = None
    library_events: int = pydantic.Field(20000, ge=1)
    hard_mpi: bool = True
    rate_khz: float = pydantic.Field(10.0, gt=0)
    ae_latent: int = pydantic.Field(8, ge=1)
    ae_hidden: list[int] = [32]
    csim_candidates: int = pydantic.Field(20000, ge=1)  # chain candidates checked against the pileup student's C-sim
    pileup_run: str | None = None  # the pileup task's run directory; None: <chain run>/pileup

    @pydantic.model_validator(mode="after")
    def _reference_among_distinct_pileups(self) -> "ChainConfig":
        if len(set(self.pileups)) != len(self.pileups) or self.reference_pileup not in self.pileups:
            raise ValueError(f"pileups {self.pileups} must be distinct and include reference_pileup "
                             f"{self.reference_pileup:g}")
        train = self.train_pileups
        if train is not None and (len(set(train)) != len(train) or self.reference_pileup not in train
                                  or not set(train) <= set(self.pileups)):
            raise ValueError(f"train_pileups {train} must be distinct pileups of {self.pileups} including "
                             f"reference_pileup {self.reference_pileup:g}")
        return self


class Chain(Task):
    """Pileup student -> weighted L1 objects -> anomaly student, and the trigger rate as pileup rises."""

    name = "chain"
    data_file = "crossings.h5"
    report_template = "chain.html.j2"
    report_module = "l1forge.tasks.chain_report"
    config_section = ChainConfig
    config_presets = {
        "smoke": {"n_zero_bias": 120, "n_signal": 8, "pileups": [20, 60], "reference_pileup": 20,
                  "library_events": 400, "hard_mpi": False, "csim_candidates": 2000},
        "full": {"n_zero_bias": 40000, "n_signal": 2000},
    }
    stages = ("generate", "pileup", "weights", "distill", "synthesize", "emulate", "rtl")

    @property
    def pileup_dir(self) -> pathlib.Path:
        where = self.cfg.chain.pileup_run
        return pathlib.Path(where) if where else self.run.root / "pileup"

    @property
    def objects_path(self) -> pathlib.Path:
        return self.run.data("objects.h5")

    def _crossings(self):
        """The crossings, their split that of the autoencoders' training pileups (``chain_crossings``)."""
        return chain_crossings(self.data_path, self.cfg.chain, self.cfg.data.seed)

    def _ae_dir(self, method: str) -> pathlib.Path:
        return self.run.student if method == "student" else self.run.root / "students" / f"ae_{method}"

    # ---- stages ----------------------------------------------------------------------------------------
    def generate(self) -> dict:
        from l1forge.core.executors import executor
        from l1forge.events.crossings import generate_crossings
        from l1forge.events.processes import read_process_file

        c, d = self.cfg.chain, self.cfg.data
        processes = self.cfg.anomaly.processes

        def work():
            extra = {pathlib.Path(p).stem: read_process_file(p) for p in processes}
            with executor(d.executor, d.address, d.workers) as pool:
                result = generate_crossings(self.data_path, c.n_zero_bias, c.n_signal, c.pileups, c.reference_pileup,
                                            seed=d.seed, workers=d.workers, extra_processes=extra or None,
                                            hard_mpi=c.hard_mpi, library_events=c.library_events,
                                            progress=self.progress, executor=pool,
                                            calorimeter=self.cfg.pileup.calorimeter)
            return {**result, "path": str(result["path"])}

        config = {"chain": c.model_dump(include={"n_zero_bias", "n_signal", "pileups", "reference_pileup",
                                                 "library_events", "hard_mpi"}), "processes": processes, "seed": d.seed,
                  "calorimeter": self.cfg.pileup.calorimeter}  # the pileup task's, whose student weighs these
        return self.stage("generate", config, [], [self.data_path], work)

    def pileup_runner(self):
        """The runner of the pileup task's run directory (``pileup_dir``)."""
        from l1forge.runner import Runner

        return Runner(self.cfg.model_copy(update={"task": "pileup"}), self.pileup_dir, self.progress, self.runner.force)

    def pileup(self) -> dict:
        """Bring the pileup task's run (teachers, student, firmware) up to date, through its own runner."""
        nested = self.pileup_runner()
        block = nested.run_all()["tasks"]["pileup"]
        # what the weights depend on: not the RTL check of the student's firmware (summary() reads that live)
        fingerprints = {k: v["fingerprint"] for k, v in nested.run.state.items() if k != "rtl"}

        def work():
            keep = ("student", "firmware", "emulation", "rtl", "pileup")
            return {"run": str(self.pileup_dir), **{k: block.get(k) for k in keep}}

        return self.stage("pileup", fingerprints, [], [self.pileup_dir / "state.json"], work)

    def weights(self) -> dict:
        """Per-candidate weights of every mitigation on every crossing, and the L1 objects each gives
        (data/objects.h5: one (n_crossings, 19, 4) dataset per method), WEIGHT_BLOCK crossings at a time."""

        def work():
            from l1forge.emulation.objects import latency_estimate
            from l1forge.events.mitigation import candidates_p99
            from l1forge.teachers.pileup import load_pileup_teacher

            sample = self._crossings().sample
            pileup = self.run.result("pileup")
            teacher = pileup["student"]["teacher"]
            model = load_pileup_teacher(self.pileup_dir / "teachers" / teacher)
            emulator, csim = self._pileup_student_firmware()
            kept, network = np.zeros(len(sample.pt), bool), np.zeros(len(sample.pt), bool)
            objects, check, seconds = {m: [] for m in METHODS}, {"events_checked": 0, "mismatches": 0}, [0.0, 0.0]
            quota = self.cfg.chain.csim_candidates  # spread over the blocks in proportion to their crossings
            for first in range(0, sample.n_events, WEIGHT_BLOCK):
                last = min(first + WEIGHT_BLOCK, sample.n_events)
                rows = slice(sample.offsets[first], sample.offsets[last])
                n_check = round(quota * last / sample.n_events) - round(quota * first / sample.n_events)
                block = self._weigh_block(sample.subset(slice(first, last)), model, emulator, csim, n_check)
                kept[rows], network[rows] = block["kept"], block["network"]
                for m in METHODS:
                    objects[m].append(block["objects"][m])
                for key in check:
                    check[key] += block["csim"][key]
                seconds = [a + b for a, b in zip(seconds, block["seconds"])]
            write_arrays_atomic(self.objects_path, {m: np.concatenate(v) for m, v in objects.items()})
            p99 = candidates_p99(sample, network)  # what the network instances serve
            read = candidates_p99(sample, kept)  # what the object builder reads
            clock = (pileup.get("firmware") or {}).get("clock_mhz") or self.cfg.firmware.clock_mhz
            return {"teacher": teacher, "pileup_student_csim": check, "student_candidates_p99": p99,
                    "objects_latency": latency_estimate(int(max(read.values())), clock),
                    "weights_seconds": seconds[0], "objects_crossings_per_s": sample.n_events / seconds[1]}

        return self.stage("weights", {"pileup": self.cfg.pileup, "csim": self.cfg.chain.csim_candidates},
                          ["generate", "pileup"], [self.objects_path], work)

    def _weigh_block(self, sample, teacher, emulator, csim, n_check: int) -> dict:
        """One block of crossings: "objects" ({method: its L1 objects}), the cap's "kept" and the "network"
        candidates (students.pileup ``region_kept``, ``student_candidates``), "csim" (the pileup student's emulated
        firmware against its C-sim on n_check of its candidates: events_checked, mismatches) and "seconds"
        (weighting, object building)."""
        from l1forge.emulation.compare import compare_with_csim
        from l1forge.emulation.objects import build_objects
        from l1forge.events.mitigation import chs_weights, puppi_weights
        from l1forge.events.pfcands import ELECTRON, MUON, PHOTON
        from l1forge.students.pileup import network_inputs, region_kept, student_candidates, student_weights
        from l1forge.teachers.pileup import predict_weights

        p, check = self.cfg.pileup, {"events_checked": 0, "mismatches": 0}
        start = time.perf_counter()
        kept = region_kept(sample, p)
        x = network_inputs(sample, kept, p).astype(np.float64)
        network = emulator.predict(x)[:, 0]
        if n_check > 0 and len(x):
            index = np.unique(np.linspace(0, len(x) - 1, min(n_check, len(x))).astype(np.int64))
            stats, emu, _ = compare_with_csim(emulator, csim, x[index])
            if not np.array_equal(emu[:, 0], network[index]):
                raise RuntimeError("pileup student: emulator outputs differ between the full pass and the C-sim check")
            check = {key: stats[key] for key in check}
        weights = {"none": np.ones(len(sample.pt), np.float32), "chs": chs_weights(sample),
                   "puppi": puppi_weights(sample),
                   "teacher": predict_weights(teacher, sample.features(), sample.offsets),
                   "student": student_weights(sample, kept, p, np.clip(network, 0, 1).astype(np.float32)),
                   "truth": sample.pv_fraction.astype(np.float32)}  # merged towers: their PV share
        weighting = time.perf_counter() - start
        egamma, muon = np.isin(sample.type, (ELECTRON, PHOTON)), sample.type == MUON
        start = time.perf_counter()
        objects = {m: build_objects(sample.offsets, sample.pt, sample.eta, sample.phi, w, egamma, muon)
                   for m, w in weights.items()}
        return {"objects": objects, "kept": kept, "network": student_candidates(sample, kept, p), "csim": check,
                "seconds": (weighting, time.perf_counter() - start)}

    def _pileup_student_firmware(self):
        """The pileup student's emulator and its compiled C-sim's predict, from the pileup run's firmware."""
        import hls4ml

        from l1forge.emulation.emulator import Emulator
        from l1forge.firmware.hls import quiet_call

        emulator = Emulator.from_file(self.pileup_dir / "firmware" / "graph.json")
        project = hls4ml.converters.link_existing_project(str(self.pileup_dir / "firmware" / "hls_project"))
        quiet_call(project.compile)
        return emulator, project.predict

    def _distill_stage(self, method: str) -> str:
        return "distill.student" if method == "student" else f"distill.ae_{method}"

    def distill(self) -> dict:
        """An autoencoder (``train_autoencoder``) per mitigation, on the zero-bias training crossings of
        chain.train_pileups, each trained ``seeds`` times (``Task.seeded``: the median seed by mean AUC at the
        reference pileup); the student chain's is the anomaly student that goes to firmware."""
        c, s = self.cfg.chain, self.cfg.student
        train = functools.partial(train_autoencoder, str(self.data_path.resolve()), str(self.objects_path.resolve()))
        common = (c, s, self.precision(), self.cfg.data.seed, self.cfg.trigger.n_bunches)
        models = {self._distill_stage(m): (self._ae_dir(m), ["weights"], functools.partial(train, m, *common))
                  for m in METHODS}
        results = self.seeded(models, {"chain": c, "student": s}, lambda out: [out / "model.h5", out / "predictions.h5"],
                              mean_auc)
        return {m: results[self._distill_stage(m)] for m in METHODS}

    def _anomaly_metrics(self, crossings, score: np.ndarray, pileup: float, pooled: bool = False) -> dict:
        """``metrics_at`` chain.rate_khz."""
        return metrics_at(crossings, score, pileup, self.cfg.chain.rate_khz, self.cfg.trigger.n_bunches, pooled)

    def test_inputs(self) -> np.ndarray:
        """Flattened L1 objects of the student chain on the test crossings, as ``emulate`` feeds the emulator."""
        from l1forge.students.anomaly import flatten_objects

        split = self._crossings().sample.split
        return flatten_objects(read_array(self.objects_path, "student")[split == 2]).astype(np.float64)

    def emulate(self) -> dict:
        def work():
            from l1forge.emulation.emulator import Emulator
            from l1forge.students.anomaly import flatten_objects, reconstruction_loss

            crossings = self._crossings()
            s = crossings.sample
            index = np.flatnonzero(s.split == 2)
            x = flatten_objects(read_array(self.objects_path, "student")).astype(np.float64)
            stats, emu, csim = self.compare(x[index], index)
            emulator = Emulator.from_file(self.run.firmware / "graph.json")
            x_q = self.precision().input.quantize(x)
            scores = {"student": reconstruction_loss(x_q, emulator.predict(x)).numpy().astype(np.float64)}
            for method in (m for m in METHODS if m != "student"):
                scores[method] = self._keras_score(method, self._ae_dir(method))
            stats["chain"] = self._measure(crossings, scores)
            if self.cfg.seeds > 1:
                stats["chain"]["seeds"] = self._seeds(crossings, scores["student"])
            stats["metrics"] = self._anomaly_metrics(crossings, scores["student"], self.cfg.chain.reference_pileup)
            self.write_emulation(stats, emu, csim, index)
            return stats

        return self.stage("emulate", {"emulation": self.cfg.emulation, "trigger": self.cfg.trigger},
                          ["synthesize", "weights"], [self.run.emulation / "outputs.h5"], work)

    def _keras_score(self, method: str, folder: pathlib.Path) -> np.ndarray:
        """Reconstruction loss of the QKeras autoencoder in ``folder`` on ``method``'s objects of every crossing."""
        from l1forge.students.anomaly import flatten_objects, reconstruction_loss
        from l1forge.students.model import load_qkeras_model

        x = flatten_objects(read_array(self.objects_path, method))
        recon = load_qkeras_model(folder / "model.h5").predict(x, batch_size=8192, verbose=0)
        return reconstruction_loss(self.precision().input.quantize(x), recon).numpy()

    def _seeds(self, crossings, firmware_score: np.ndarray) -> dict:
        """The chain's rates over the k trainings of every autoencoder (``seeds: k > 1``): per method and pileup the
        rate as ``base_report.spread`` (stat: the mean half-width of its 68% interval), and per method and pileup the
        rate minus PUPPI-like's, paired seed by seed (``base_report.paired_over_seeds``; "higher" / "lower" / "tie"
        beyond 2 sigma; the error of each difference adds both intervals' half-widths in quadrature). The student
        chain's firmware seed is scored by the emulator (``firmware_score``), every other training by its QKeras
        model."""
        from l1forge.tasks.base import seed_dirs
        from l1forge.tasks.base_report import paired_over_seeds, spread

        results = {m: self.run.result(self._distill_stage(m)) for m in METHODS}
        folders = {m: seed_dirs(self._ae_dir(m), results[m]) for m in METHODS}  # in the order of the seeds
        seeds = list(results["student"]["seeds"])
        firmware = seeds.index(str(results["student"]["median_seed"]))
        measured = []
        for i in range(len(seeds)):
            scores = {m: firmware_score if (m, i) == ("student", firmware) else self._keras_score(m, folders[m][i])
                      for m in METHODS}
            measured.append(self._measure(crossings, scores)["methods"])
        half = lambda r: float(np.mean(r["rate_khz_err"]))  # noqa: E731
        pileups = list(measured[0]["none"]["rates"])
        block = {"seeds": [int(seed) for seed in seeds], "firmware_seed": int(seeds[firmware]),
                 "scores": "student chain: the firmware seed by the emulator, the other trainings by their QKeras "
                           "models; every other chain: QKeras models",
                 "rates": {m: {mu: spread([r[m]["rates"][mu]["rate_khz"] for r in measured],
                                          [half(r[m]["rates"][mu]) for r in measured]) for mu in pileups}
                           for m in METHODS},
                 "minus_puppi": {}}
        words = {"A": "higher", "B": "lower", "tie": "tie"}
        for m in (m for m in METHODS if m != "puppi"):
            block["minus_puppi"][m] = {}
            for mu in pileups:
                pair = [(r[m]["rates"][mu], r["puppi"]["rates"][mu]) for r in measured]
                verdict = paired_over_seeds([a["rate_khz"] - b["rate_khz"] for a, b in pair],
                                            [float(np.hypot(half(a), half(b))) for a, b in pair])
                block["minus_puppi"][m][mu] = {**verdict, "verdict": words[verdict["verdict"]]}
        return block

    def _measure(self, crossings, scores: dict) -> dict:
        """Per method: the threshold for chain.rate_khz at the reference pileup and the rate it gives at every
        pileup (with its error, effective crossings above it and its ratio to the truth weighting's rate,
        ``over_truth``), and per pileup the metrics at a fixed rate. POOLED methods use the test crossings of every
        pileup at each one."""
        from l1forge.emulation.trigger import rate_khz, threshold_for_rate
        from l1forge.metrics import RESOLVED_CROSSINGS

        c, t, s = self.cfg.chain, self.cfg.trigger, crossings.sample
        bkg = (s.split == 2) & ~crossings.is_signal
        out = {"rate_khz_target": c.rate_khz, "reference_pileup": c.reference_pileup,
               "train_pileups": c.pileups if c.train_pileups is None else c.train_pileups, "methods": {}}
        for method, score in scores.items():
            pooled = method in POOLED

            def zero_bias(mu, pooled=pooled, score=score):  # the scores and rate weights standing for pileup mu
                rows = bkg & (pooled | (s.pileup == mu))
                return score[rows], crossings.zero_bias_weights(rows, mu if pooled else None)[rows]

            values, weight = zero_bias(c.reference_pileup)
            threshold, _, _ = threshold_for_rate(values, c.rate_khz, weight, t.n_bunches)
            rates = {}
            for mu in c.pileups:
                values, weight = zero_bias(mu)
                rate, err = rate_khz(values, threshold, weight, t.n_bunches)
                w = weight[values > threshold]
                n_eff = float(w.sum() ** 2 / (w**2).sum()) if len(w) else 0.0
                rates[f"{mu:g}"] = {"rate_khz": rate, "rate_khz_err": [float(e) for e in err],
                                    "n_crossings": len(values), "n_above": int(len(w)), "n_effective_above": n_eff,
                                    "resolved": n_eff >= RESOLVED_CROSSINGS}
            fixed = {f"{mu:g}": self._anomaly_metrics(crossings, score, mu, pooled) for mu in c.pileups}
            out["methods"][method] = {"threshold": float(threshold), "rates": rates, "fixed_rate": fixed,
                                      "pooled_pileups": pooled}
        if truth := out["methods"].get("truth"):  # each rate over the pileup-free one (module note on METHODS)
            for entry in out["methods"].values():
                for mu, r in entry["rates"].items():
                    base = truth["rates"][mu]["rate_khz"]
                    r["over_truth"] = r["rate_khz"] / base if base > 0 else None
        return out


TASK = Chain
