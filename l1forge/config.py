"""Run configuration: presets (smoke, demo, medium, full) plus an optional YAML file of overrides, validated by pydantic.

Unknown keys and wrong types are errors that name the file and the key (``extra="forbid"`` everywhere).
"""

from __future__ import annotations

import functools
import pathlib
from typing import Literal

import pydantic
import yaml

from l1forge.firmware.hls import FirmwareSettings


class ConfigError(ValueError):
    """A bad configuration; the message is one line naming the file and key."""


class Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


# a field that says where work runs, not what it computes: left out of every stage's fingerprint (l1forge/runner.py)
PLACEMENT = {"fingerprint": False}


class DataConfig(Strict):
    n_per_class: int = pydantic.Field(2000, ge=10)
    seed: int = pydantic.Field(1, ge=1)
    workers: int = pydantic.Field(2, ge=1, json_schema_extra=PLACEMENT)  # processes here (local, or dask without an address)
    pt_min: float = 800.0
    pt_max: float = 1200.0
    mpi: bool = True
    # where generation runs (l1forge.core.executors): local processes, or Dask; the data do not depend on it
    executor: Literal["local", "dask"] = pydantic.Field("local", json_schema_extra=PLACEMENT)
    # a running Dask scheduler, e.g. tcp://host:8786 (None: a cluster on this machine)
    address: str | None = pydantic.Field(None, json_schema_extra=PLACEMENT)
    # where the tagging jets come from: l1forge's generator, or the user's files (events/external.py: the hls4ml
    # LHC jet HDF5 and OpenML table, top tagging, JetClass, or any HDF5/ROOT/parquet through a YAML mapping)
    source: Literal["generate", "file"] = "generate"
    path: str | None = None  # source file: a file or a glob of files
    mapping: str | None = None  # source file: a YAML mapping for files in no published layout
    layout: Literal["hls4ml", "openml", "toptagging", "jetclass", "mapping"] | None = None  # None: recognised

    @pydantic.model_validator(mode="after")
    def _files_need_a_path(self) -> "DataConfig":
        if self.source == "file" and not self.path:
            raise ValueError("data.source 'file' needs data.path (a file or a glob; or --data FILE)")
        return self


class TeacherConfig(Strict):
    kinds: list[Literal["gnn", "transformer"]] = ["gnn", "transformer"]
    size: Literal["smoke", "demo", "medium", "full"] = "demo"
    epochs: int = pydantic.Field(10, ge=1)
    batch_size: int = pydantic.Field(256, ge=1)
    lr: float = 1e-3
    max_steps: int | None = None
    jet_features: bool = True  # teachers also see the 16 high-level features the student gets
    seed: int = 0
    # a teacher trained elsewhere (teachers/external.py; tagging): an ONNX classifier ("onnx"; its inputs built from
    # the jets by `config`, a weaver-core data configuration or l1forge's mapping) or a file of its outputs ("file")
    source: Literal["train", "onnx", "file"] = "train"
    path: str | None = None
    config: str | None = None

    @pydantic.model_validator(mode="after")
    def _external_needs_a_path(self) -> "TeacherConfig":
        if self.source != "train" and not self.path:
            raise ValueError(f"teachers.source '{self.source}' needs teachers.path (or --teacher FILE)")
        return self


class StudentConfig(Strict):
    # hlf: MLP on the 16 jet features (students/model.py); deepsets / mixer: on the L1 words of the n_constituents
    # leading constituents (students/deepsets.py, words in quantize/l1words.py)
    family: Literal["hlf", "deepsets", "mixer"] = "hlf"
    n_constituents: int = pydantic.Field(16, ge=1)  # deepsets: constituents per jet (8, 16, 32 studied)
    phi: list[int] = [16, 16]  # deepsets: per-constituent layers (bias-free); mixer: embedding, channel mixing
    head: list[int] = [64, 32]  # deepsets / mixer: layers after the pooling (cheap: once per jet, not per constituent)
    # deepsets / mixer: each epoch sees every training jet rotated about its axis by a random angle and mirrored
    # with probability 1/2 (students/augment.py); the HLF features do not change under it
    augment: bool = True
    # deepsets / mixer: the last of the n_constituents slots holds the L1 jet's mass, multiplicity and a jet flag
    # (quantize/l1words.py L1_JET) instead of the n-th constituent, embedded by the same phi layers
    jet_word: bool = True
    hidden: list[int] = [64, 32, 32]  # hlf
    input_type: str = "fixed<16,6,RND_CONV,SAT>"  # signed, RND_CONV, SAT (quantize/precision.py Precision)
    weight_bits: int = 6
    weight_integer: int = 0
    # None: the family's default, quantize/precision.py FAMILY_ACTIVATIONS (hlf, and the other tasks' MLP students:
    # 6 bits, 0 integer; deepsets and mixer: 8 bits, 2 integer)
    activation_bits: int | None = None
    activation_integer: int | None = None
    # your own student (students/user.py): a QKeras/Keras model file (its architecture and quantizers kept, its
    # weights trained by distillation) or module:function, a builder of one; None: the family's student
    model: str | None = None
    teacher: Literal["best", "gnn", "transformer"] = "best"
    temperature: float | None = pydantic.Field(None, gt=0)  # None: the family's, students/distill.py FAMILY_TEMPERATURE
    alpha: float = pydantic.Field(0.9, ge=0, le=1)
    epochs: int = pydantic.Field(40, ge=1)
    batch_size: int = pydantic.Field(256, ge=1)
    lr: float = 3e-3
    seed: int = 0

    @pydantic.field_validator("input_type")
    @classmethod
    def _input_type_trains_as_it_runs(cls, value: str) -> str:
        """Checked when the configuration is read, not after the teachers have trained."""
        from l1forge.quantize.fixed import FixedType
        from l1forge.quantize.precision import Precision

        Precision(input=FixedType.parse(value))  # ValueError: unparsable, or not a type QKeras trains as it runs
        return value

    @pydantic.model_validator(mode="after")
    def _jet_word_needs_a_constituent(self) -> "StudentConfig":
        if self.family != "hlf" and self.jet_word and self.n_constituents < 2:
            raise ValueError(f"n_constituents={self.n_constituents}: the jet word (jet_word) takes the last slot; "
                             "use >= 2 or jet_word: false")
        return self


class EmulationConfig(Strict):
    max_events: int | None = None  # test jets checked against the C-sim (None: all)


class TriggerConfig(Strict):
    """The algorithm's slot in the 40 MHz trigger (defaults and sources: emulation/lhc.py)."""

    budget_ns: float = pydantic.Field(1000.0, gt=0)
    n_bunches: int = pydantic.Field(2760, ge=1, le=3564)
    pileup: float = pydantic.Field(200.0, gt=0)
    target_rate_khz: float = pydantic.Field(0.001, gt=0)  # 1 Hz: QCD jets of 800-1200 GeV alone give ~11 Hz


class RtlConfig(Strict):
    """The open RTL path (rtl/check.py): Verilog of the firmware graph, Verilator against the emulator, Yosys."""

    events: int = pydantic.Field(100_000, ge=1)  # simulated events: the task's test inputs, cycled
    clock_mhz: float | None = pydantic.Field(None, gt=0)  # pipeline target; None: firmware.clock_mhz (240 or 360)
    synthesis: bool = True  # run Yosys (synth_xilinx -family xcup) on the RTL
    yosys_timeout_s: float | None = pydantic.Field(1800.0, gt=0)


class RunConfig(Strict):
    """The sections every task reads; ``run_config_model`` adds each task's own section (``Task.config_section``)."""

    task: str = "tagging"
    preset: str = "demo"
    # where torch teachers train and predict: auto = CUDA when torch sees a GPU (mixed precision), else CPU; not part
    # of any stage's fingerprint (a teacher trained on one device is not redone on another)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # trainings of each student and its label twin or autoencoder baseline (seeds student.seed, +1, ...; same data):
    # summary.json gives each metric as mean, spread between trainings and statistical error, the firmware is built
    # from the median seed (docs/tagging.md, "Seeds"): tagging and anomaly students, the chain's autoencoders
    seeds: int = pydantic.Field(1, ge=1)
    data: DataConfig = DataConfig()
    teachers: TeacherConfig = TeacherConfig()
    student: StudentConfig = StudentConfig()
    firmware: FirmwareSettings = FirmwareSettings()
    emulation: EmulationConfig = EmulationConfig()
    trigger: TriggerConfig = TriggerConfig()
    rtl: RtlConfig = RtlConfig()


@functools.cache
def run_config_model() -> type[RunConfig]:
    """RunConfig with a section per task that has one, named after the task (``anomaly:``, ``pileup:``)."""
    from l1forge.tasks import registry

    sections = {name: (cls.config_section, cls.config_section()) for name, cls in registry().items() if cls.config_section}
    return pydantic.create_model("TaskRunConfig", __base__=RunConfig, **sections)


PRESETS: dict[str, dict] = {
    # seconds per stage: for tests and CI
    "smoke": {
        "seeds": 1,
        "data": {"n_per_class": 150, "mpi": False},
        "teachers": {"size": "smoke", "epochs": 2, "batch_size": 64},
        "student": {"epochs": 5, "batch_size": 64},
        "rtl": {"events": 2000, "synthesis": False},  # Yosys on the full student takes minutes: tests use a tiny one
    },
    # minutes: `make run` (docs/results.md, "Wall times of the two commands")
    "demo": {
        "seeds": 3,  # the seeds train in parallel on data.workers processes (data.executor)
        "data": {"n_per_class": 2000},  # 2000 test jets resolve 0.02 in accuracy; 0.01 needs 7500 per class (docs/results.md)
        "teachers": {"size": "demo", "epochs": 12, "batch_size": 128, "lr": 3e-3},
        # 200 epochs of 64 jets with early stopping (patience 40): distillation keeps improving long after labels
        # alone stop (HLF, GNN teacher: 0.713 -> 0.723 distilled, 0.7145 -> 0.702 on labels, vs 40 epochs of 256);
        # the constituent students need the steps (deep sets 16-16 / 32 on N = 16, valid-flag words: 0.528 -> 0.566).
        # The block is every task's: the demo's anomaly students and chain autoencoders train this way too
        "student": {"epochs": 200, "batch_size": 64},
    },
    # teachers several times the demo's (GNN 87k, transformer 180k parameters) on 3x its jets: both teachers in
    # about an hour on 2 CPU cores (estimate from benchmarks/teacher_throughput.py, docs/results.md), minutes on a GPU
    "medium": {
        "seeds": 3,
        "data": {"n_per_class": 6000},
        "teachers": {"size": "medium", "epochs": 15, "batch_size": 256, "lr": 2e-3},
        "student": {"epochs": 60},
    },
    # the real thing: >= 100k jets per class, full-size teachers
    "full": {
        "seeds": 3,
        "data": {"n_per_class": 100000},
        "teachers": {"size": "full", "epochs": 30, "batch_size": 512},
        "student": {"epochs": 100, "batch_size": 1024},
    },
}


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(preset: str = "demo", path: pathlib.Path | None = None, task: str = "tagging",
                overrides: dict | None = None, defaults: dict | None = None, append: dict | None = None) -> RunConfig:
    """The validated configuration: the preset (with every task's own preset sections), then ``defaults`` (values of
    the command's context, e.g. the chain's pileup run directory), the YAML file at ``path`` if given, then
    ``overrides`` (command-line options), each a nested dict of sections; ``append`` extends lists ({section: {key:
    [items]}}). Nothing edits the configuration after validation."""
    from l1forge.tasks import registry, task_class

    if preset not in PRESETS:
        raise ConfigError(f"unknown preset '{preset}' (choose from {', '.join(PRESETS)})")
    try:
        task_class(task)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    sections = {name: cls.config_presets[preset] for name, cls in registry().items() if preset in cls.config_presets}
    data = _merge(_merge(_merge(PRESETS[preset], sections), {"preset": preset, "task": task}), defaults or {})
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
    data = _merge(data, overrides or {})
    for section, lists in (append or {}).items():
        for key, items in lists.items():
            default = run_config_model().model_fields[section].default
            current = data.get(section, {}).get(key, getattr(default, key))
            data = _merge(data, {section: {key: [*current, *items]}})
    try:
        return run_config_model().model_validate(data)
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message += _did_you_mean(run_config_model(), first["loc"])
        raise ConfigError(f"{source}: key '{key}': {message}") from None


def _did_you_mean(model, loc) -> str:
    """' (did you mean 'jet_word'?)' for the closest key of the section an unknown key ``loc`` sits in, or ''."""
    import difflib

    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        model = getattr(field, "annotation", None) if field else None
        if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
            return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
