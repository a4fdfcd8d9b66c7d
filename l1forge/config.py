"""Run configuration: presets (smoke, demo, full) plus an optional YAML file of overrides, validated by pydantic.

Unknown keys and wrong types are errors that name the file and the key (``extra="forbid"`` everywhere).
"""

from __future__ import annotations

import pathlib
from typing import Literal

import pydantic
import yaml

from firmware.hls import FirmwareSettings


class ConfigError(ValueError):
    """A bad configuration; the message is one line naming the file and key."""


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


class DataConfig(_Strict):
    n_per_class: int = pydantic.Field(2000, ge=10)
    seed: int = pydantic.Field(1, ge=1)
    workers: int = pydantic.Field(2, ge=1)
    pt_min: float = 800.0
    pt_max: float = 1200.0
    mpi: bool = True


class TeacherConfig(_Strict):
    kinds: list[Literal["gnn", "transformer"]] = ["gnn", "transformer"]
    size: Literal["smoke", "demo", "full"] = "demo"
    epochs: int = pydantic.Field(10, ge=1)
    batch_size: int = pydantic.Field(256, ge=1)
    lr: float = 1e-3
    max_steps: int | None = None
    jet_features: bool = True  # teachers also see the 16 high-level features the student gets
    seed: int = 0


class StudentConfig(_Strict):
    hidden: list[int] = [64, 32, 32]
    input_type: str = "fixed<16,6,RND_CONV,SAT>"
    weight_bits: int = 6
    weight_integer: int = 0
    activation_bits: int = 6
    activation_integer: int = 0
    teacher: Literal["best", "gnn", "transformer"] = "best"
    temperature: float = pydantic.Field(2.0, gt=0)
    alpha: float = pydantic.Field(0.9, ge=0, le=1)
    epochs: int = pydantic.Field(40, ge=1)
    batch_size: int = pydantic.Field(256, ge=1)
    lr: float = 3e-3
    seed: int = 0


class EmulationConfig(_Strict):
    max_events: int | None = None  # test jets checked against the C-sim (None: all)


class AnomalyConfig(_Strict):
    """The anomaly task: zero-bias stream and signals (events/anomaly.py), student and baseline sizes, L1 rates."""

    n_background: int = pydantic.Field(20000, ge=12)
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


class PileupConfig(_Strict):
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
    student_hidden: list[int] = [64, 32]
    student_pt_power: float = pydantic.Field(1.0, ge=0)  # loss weight pT^power
    student_epochs: int = pydantic.Field(30, ge=1)
    student_batch_size: int = pydantic.Field(1024, ge=1)
    student_max_train: int | None = pydantic.Field(1500000, ge=1)  # training candidates (random subset)
    csim_candidates: int = pydantic.Field(20000, ge=1)  # test candidates checked against the C-sim


class TriggerConfig(_Strict):
    """The algorithm's slot in the 40 MHz trigger (defaults and sources: emulation/lhc.py)."""

    budget_ns: float = pydantic.Field(1000.0, gt=0)
    n_bunches: int = pydantic.Field(2760, ge=1, le=3564)
    pileup: float = pydantic.Field(200.0, gt=0)
    target_rate_khz: float = pydantic.Field(0.001, gt=0)  # 1 Hz: QCD jets of 800-1200 GeV alone give ~11 Hz


class RunConfig(_Strict):
    task: Literal["tagging", "anomaly", "pileup"] = "tagging"
    preset: str = "demo"
    data: DataConfig = DataConfig()
    teachers: TeacherConfig = TeacherConfig()
    student: StudentConfig = StudentConfig()
    firmware: FirmwareSettings = FirmwareSettings()
    emulation: EmulationConfig = EmulationConfig()
    trigger: TriggerConfig = TriggerConfig()
    anomaly: AnomalyConfig = AnomalyConfig()
    pileup: PileupConfig = PileupConfig()


PRESETS: dict[str, dict] = {
    # seconds per stage: for tests and CI
    "smoke": {
        "data": {"n_per_class": 150, "mpi": False},
        "anomaly": {"n_background": 400, "n_signal": 40, "pileup": 10, "library_events": 400, "hard_mpi": False},
        "pileup": {"n_train": 60, "n_test": 24, "train_pileup": 20, "test_pileups": [20, 60], "library_events": 400,
                   "distill_pileups": [60], "n_distill": 24,
                   "hard_mpi": False, "teacher_epochs": 2, "student_epochs": 3, "csim_candidates": 2000},
        "teachers": {"size": "smoke", "epochs": 2, "batch_size": 64},
        "student": {"epochs": 5, "batch_size": 64},
    },
    # minutes: the README's `make run`
    "demo": {
        "data": {"n_per_class": 2000},
        "teachers": {"size": "demo", "epochs": 12, "batch_size": 128, "lr": 3e-3},
        "student": {"epochs": 40},
    },
    # the real thing: >= 100k jets per class, full-size teachers
    "full": {
        "data": {"n_per_class": 100000},
        "anomaly": {"n_background": 100000, "n_signal": 10000},
        "pileup": {"n_train": 20000, "n_test": 5000, "test_pileups": [60, 140, 200], "distill_pileups": [140, 200],
                   "n_distill": 5000, "teacher_epochs": 30,
                   "student_epochs": 60, "student_max_train": 5000000},
        "teachers": {"size": "full", "epochs": 30, "batch_size": 512},
        "student": {"epochs": 100, "batch_size": 1024},
    },
}


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(preset: str = "demo", path: pathlib.Path | None = None, task: str = "tagging") -> RunConfig:
    """The preset, overridden by the YAML file at ``path`` if given."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset '{preset}' (choose from {', '.join(PRESETS)})")
    data = _merge(PRESETS[preset], {"preset": preset, "task": task})
    source = "preset " + preset
    if path is not None:
        source = str(path)
        try:
            extra = yaml.safe_load(pathlib.Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: cannot read YAML ({err.__class__.__name__})") from None
        if not isinstance(extra, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections")
        data = _merge(data, extra)
    try:
        return RunConfig.model_validate(data)
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{source}: key '{key}': {first['msg']}") from None
