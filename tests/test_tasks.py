"""The task interface: a new task is one module that the registry finds, configures, runs and reports."""

import json

import numpy as np
import pytest
from conftest import extra_task

import l1forge.tasks as tasks
from l1forge.config import ConfigError, load_config
from l1forge.runner import Runner, run_tasks

TOY = '''
import pydantic
from l1forge.config import Strict
from l1forge.core.artifacts import read_array, write_arrays_atomic
from l1forge.tasks.base import Task


class ToyConfig(Strict):
    n: int = pydantic.Field(100, ge=1)


class Toy(Task):
    """Generates n uniform numbers and measures their mean: the smallest task there is."""

    name = "toy"
    data_file = "toy.h5"
    stages = ("generate",)
    report_template = None
    config_section = ToyConfig
    config_presets = {"smoke": {"n": 1000}}

    def generate(self):
        n = self.cfg.toy.n

        def work():
            x = __import__("numpy").random.default_rng(self.cfg.data.seed).uniform(size=n)
            write_arrays_atomic(self.data_path, {"x": x})
            return {"n": n}

        return self.stage("generate", self.cfg.toy, [], [self.data_path], work)

    def summary(self):
        if "generate" not in self.run.state:
            return {}
        return {"data": self.run.result("generate"), "mean": float(read_array(self.data_path, "x").mean())}


TASK = Toy
'''


@pytest.fixture
def toy_task(tmp_path, monkeypatch):
    """The task package with one more module, toy.py, in a directory of its own."""
    with extra_task(tmp_path / "extra_tasks", monkeypatch, "toy", TOY):
        yield


def test_registry_finds_the_four_tasks():
    assert list(tasks.registry()) == ["anomaly", "chain", "pileup", "tagging"]
    for name, cls in tasks.registry().items():
        assert cls.name == name and set(cls.stages) >= {"generate", "synthesize", "emulate"}


def test_unknown_task_is_a_one_line_error():
    with pytest.raises(ConfigError, match="unknown task 'nope' .*anomaly, chain, pileup, tagging"):
        load_config("smoke", None, "nope")


def test_a_new_task_is_one_module(toy_task, tmp_path):
    assert "toy" in tasks.registry()
    cfg = load_config("smoke", None, "toy")
    assert cfg.toy.n == 1000 and load_config("demo", None, "toy").toy.n == 100  # its own presets
    config = tmp_path / "toy.yaml"
    config.write_text("toy: {n: 0}\n")
    with pytest.raises(ConfigError, match="key 'toy.n'"):
        load_config("smoke", config, "toy")

    summary = Runner(cfg, tmp_path / "run", progress=False).run_all()
    mean = summary["tasks"]["toy"]["mean"]
    assert abs(mean - 0.5) < 0.05 and summary["tasks"]["toy"]["data"]["n"] == 1000
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["tasks"]["toy"]["mean"] == mean
    assert 'id="task-toy"' in (tmp_path / "run" / "report.html").read_text()

    again = Runner(cfg, tmp_path / "run", progress=False)
    assert again.run.done("generate", again.fingerprint("generate", cfg.toy, []), [again.task.data_path])

    combined = run_tasks({"toy": cfg}, tmp_path / "all", progress=False)
    assert (tmp_path / "all" / "toy" / "data" / "toy.h5").exists() and (tmp_path / "all" / "summary.json").exists()
    assert np.isclose(combined["tasks"]["toy"]["mean"], mean) and "toy/generate" in combined["stage_seconds"]
