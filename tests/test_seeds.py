"""Seeds as an axis of the tagging flow (``seeds: k``): k trainings of the student and of its label twin on the
executor, the median seed's model for the firmware, mean / spread / stat in summary.json, the verdict paired over
seeds; seeds: 1 is the flow as it was. A real smoke run: the session's jets, a smoke GNN teacher, real distillation."""

import json
import shutil

import h5py
import numpy as np
import pytest

from l1forge.config import ConfigError, load_config
from l1forge.core.artifacts import read_array
from l1forge.metrics import classification_metrics, paired_difference
from l1forge.runner import Runner
from l1forge.tasks.base import median_seed
from l1forge.tasks.tagging import TEST_SPLIT

MODEL_FILES = ("model.h5", "predictions.h5", "preprocess.json")


def _cfg(**top):
    return load_config("smoke", overrides={"teachers": {"kinds": ["gnn"]}, "student": {"teacher": "gnn"}, **top})


@pytest.fixture(scope="module")
def taught(smoke_jets, tmp_path_factory):
    """A run directory holding the session's jets (stage generate) and a trained smoke GNN teacher."""
    out = tmp_path_factory.mktemp("seeds") / "taught"
    runner = Runner(_cfg(), out, progress=False)

    def generate():
        runner.task.data_path.parent.mkdir(parents=True)
        shutil.copy(smoke_jets, runner.task.data_path)
        return {"n_jets": len(read_array(smoke_jets, "labels"))}

    runner.stage("generate", runner.cfg.data, [], [runner.task.data_path], generate)
    runner.task.teach_one("gnn")
    return out


def _distilled(taught, out, **top) -> Runner:
    """A copy of ``taught`` with the students distilled (configuration: smoke with the top-level keys ``top``)."""
    shutil.copytree(taught, out)
    runner = Runner(_cfg(**top), out, progress=False)
    runner.task.distill()
    runner.report()
    return runner


@pytest.fixture(scope="module")
def three(taught):
    return _distilled(taught, taught.parent / "three", seeds=3)


def _weights(path) -> list[np.ndarray]:
    with h5py.File(path, "r") as f:
        arrays = []
        f["model_weights"].visititems(lambda _, d: arrays.append(d[()]) if isinstance(d, h5py.Dataset) else None)
    return arrays


def _test_set(run):
    labels, split = read_array(run.task.data_path, "labels"), read_array(run.task.data_path, "split")
    return labels[split == TEST_SPLIT], split == TEST_SPLIT


def test_presets_and_option():
    assert load_config("smoke").seeds == 1 and all(load_config(p).seeds == 3 for p in ("demo", "medium", "full"))
    from l1forge.cli import _brought, _config

    assert _config("tagging", "smoke", None, overrides=_brought(seeds=3)).seeds == 3
    assert _config("tagging", "demo", None).seeds == 3
    with pytest.raises(ConfigError, match="key 'seeds'"):
        _config("tagging", "smoke", None, overrides=_brought(seeds=0))


def test_three_seeds_train_three_students_and_the_firmware_gets_the_median(three):
    run, k = three.run, 3
    labels, test = _test_set(three)
    for model, stage in ((run.student, "distill.student"), (run.baseline, "distill.baseline")):
        result = run.result(stage)
        assert list(result["seeds"]) == ["0", "1", "2"]
        dirs = [model / "seeds" / seed for seed in result["seeds"]]
        weights = [_weights(d / "model.h5") for d in dirs]
        for i in range(k):  # different initialisation and batches: different weights; the same jets: same inputs
            for j in range(i):
                assert any(not np.array_equal(a, b) for a, b in zip(weights[i], weights[j]))
            assert (dirs[i] / "preprocess.json").read_bytes() == (dirs[0] / "preprocess.json").read_bytes()
            logits = read_array(dirs[i] / "predictions.h5", "logits")[test]
            assert classification_metrics(labels, logits, ("g", "q", "w", "z", "t")) == result["seeds"][str(i)]
        accuracy = [result["seeds"][str(i)]["accuracy"] for i in range(k)]
        median = result["median_seed"]
        assert median == median_seed([0, 1, 2], accuracy) and sorted(accuracy)[1] == accuracy[median]
        for name in MODEL_FILES:  # students/<model>/ is the median seed's training
            assert (model / name).read_bytes() == (model / "seeds" / str(median) / name).read_bytes()
        assert result["metrics"] == result["seeds"][str(median)]
    seeds = three.summary()["tasks"]["tagging"]["student"]["seeds"]
    assert seeds["seeds"] == [0, 1, 2] and seeds["firmware_seed"] == run.result("distill.student")["median_seed"]


def test_summary_mean_spread_stat_and_the_paired_verdict_over_seeds(three):
    run = three.run
    block = json.loads((run.root / "summary.json").read_text())["tasks"]["tagging"]
    labels, test = _test_set(three)
    for name, stage in (("student", "distill.student"), ("baseline", "distill.baseline")):
        per_seed = list(run.result(stage)["seeds"].values())
        for metric in ("accuracy", "top_vs_qcd_auc"):
            entry, values = block["student"]["seeds"][name][metric], [m[metric] for m in per_seed]
            assert entry["values"] == values and entry["mean"] == pytest.approx(np.mean(values))
            assert entry["spread"] == pytest.approx(np.std(values, ddof=1)) and entry["spread"] > 0
            assert entry["stat"] == pytest.approx(np.mean([m[f"{metric}_err"] for m in per_seed]))
    logits = lambda model, seed: read_array(model / "seeds" / str(seed) / "predictions.h5", "logits")[test]  # noqa: E731
    for metric in ("accuracy", "top_vs_qcd_auc"):
        verdict = block["student"]["distilled_vs_baseline"][metric]
        each = [paired_difference(labels, logits(run.student, s), logits(run.baseline, s), ("g", "q", "w", "z", "t"),
                                  metric) for s in range(3)]
        differences = [e["difference"] for e in each]
        err = np.hypot(np.std(differences, ddof=1) / np.sqrt(3), np.mean([e["difference_err"] for e in each]))
        assert verdict["differences"] == pytest.approx(differences) and verdict["seeds"] == 3
        assert verdict["difference"] == pytest.approx(np.mean(differences))
        assert verdict["difference_err"] == pytest.approx(err)
        mean = np.mean(differences)
        assert verdict["verdict"] == ("tie" if abs(mean) <= 2 * err else "A" if mean > 0 else "B")
    html = (run.root / "report.html").read_text()
    assert ">Trainings (seeds)</h2>" in html and 'alt="Metrics per seed"' in html


def test_three_seeds_are_up_to_date_on_a_rerun(three):
    before = {p: p.stat().st_mtime_ns for p in three.run.student.rglob("*") if p.is_file()}
    Runner(_cfg(seeds=3), three.run.root, progress=False).task.distill()
    assert {p: p.stat().st_mtime_ns for p in three.run.student.rglob("*") if p.is_file()} == before


def test_one_seed_is_the_flow_as_it_was(taught, three):
    plain = _distilled(taught, taught.parent / "plain")  # no seeds key: smoke's 1
    s = plain.cfg.student  # the stage's configuration as before seeds: the same fingerprint
    assert plain.run.state["distill.student"]["fingerprint"] == plain.fingerprint(
        "distill.student", {"student": s, "model_file": None}, ["generate", "teach.gnn"])
    assert not (plain.run.student / "seeds").exists() and "seeds" not in plain.run.result("distill.student")
    files = {p: p.stat().st_mtime_ns for p in plain.run.root.joinpath("students").rglob("*")}
    one = Runner(_cfg(seeds=1), plain.run.root, progress=False)
    one.task.distill()  # seeds: 1 is the run without the key: up to date, nothing rewritten
    assert {p: p.stat().st_mtime_ns for p in plain.run.root.joinpath("students").rglob("*")} == files
    block = plain.summary()["tasks"]["tagging"]
    assert one.summary()["tasks"]["tagging"] == block and "seeds" not in block["student"]
    assert block["student"]["distilled_vs_baseline"]["accuracy"].keys() == {
        "metric", "difference", "difference_err", "n_sigma", "verdict"}
    # seed 0 of three, trained in a worker process, is the single training of seeds: 1, trained here
    for name in MODEL_FILES:
        assert (plain.run.student / name).read_bytes() == (three.run.student / "seeds" / "0" / name).read_bytes()
