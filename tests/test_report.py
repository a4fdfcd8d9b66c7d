"""Report renderer on a synthetic run directory (random scores are fine here)."""

import copy
import json

import h5py
import numpy as np
import pytest

from l1forge.report import write_report

N, M = 400, 60


def _h5(path, **datasets):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f[name] = value


@pytest.fixture
def run_dir(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, N).astype(np.int8)
    split = rng.choice([0, 1, 2], N, p=[0.6, 0.2, 0.2]).astype(np.int8)
    _h5(tmp_path / "data/jets.h5", labels=labels, split=split)
    for rel in ("teachers/gnn", "teachers/transformer", "students/student", "students/baseline"):
        logits = (rng.normal(size=(N, 5)) + 2 * np.eye(5)[labels]).astype(np.float32)
        _h5(tmp_path / rel / "predictions.h5", logits=logits)
    index = np.flatnonzero(split == 2)[:M].astype(np.int64)
    emu = rng.normal(size=(len(index), 5)) + 2 * np.eye(5)[labels[index]]
    csim = emu.copy()
    csim[3, 1] += 0.125
    _h5(tmp_path / "emulation/outputs.h5", emulator=emu, csim=csim, index=index)
    layers = [{"name": "dense1", "op": "dense", "cycles": 3, "ii": 1, "LUT": 40000, "FF": 20000, "DSP": 300, "BRAM": 0},
              {"name": "relu1", "op": "relu", "cycles": 0, "ii": 1, "LUT": 8213, "FF": 1077, "DSP": 12, "BRAM": 4}]
    (tmp_path / "firmware").mkdir()
    (tmp_path / "firmware" / "firmware.json").write_text(json.dumps({"layers": layers}))
    return tmp_path


SUMMARY = {
    "version": "0.1.0",
    "preset": "tiny",
    "tasks": {"tagging": {
        "data": {"n_jets": N, "per_class": {"g": 80, "q": 80, "w": 80, "z": 80, "t": 80}},
        "teachers": {"gnn": {"params": 12345, "metrics": {}},
                     "transformer": {"params": 23456, "metrics": {}}},
        "student": {"params": 3456, "bits": 8, "metrics": {}, "baseline_metrics": {}},
        "firmware": {"project_dir": "firmware/hls", "backend": "Vitis",
                     "part": "xcvu13p-flga2577-2-e",
                     "clock_mhz": 200.0, "latency_cycles": 17, "latency_ns": 85.0, "ii_cycles": 1,
                     "resources": {"LUT": 48213, "FF": 21077, "DSP": 312, "BRAM": 4},
                     "utilisation_percent": {"LUT": 2.79, "FF": 0.61, "DSP": 2.54, "BRAM": 0.07},
                     "source": "estimate", "method": "hls4ml per-layer model"},
        "emulation": {"events_checked": M, "mismatches": 1, "emulator_events_per_s": 1.5e6,
                      "csim_events_per_s": 2.1e3,
                      "first_mismatch": {"event": 3, "emulator": [0.5], "csim": [0.625]}},
    }},
}
SECTIONS = ("Data", "Metrics", "ROC curves", "Confusion matrix", "C-sim vs emulator agreement",
            "Latency &amp; resources")


def test_full_report(run_dir):
    out = write_report(run_dir, SUMMARY)
    assert out == run_dir / "report.html"
    html = out.read_text()
    for title in SECTIONS:
        assert f">{title}</h2>" in html
    assert html.count("data:image/png;base64,") == 4
    assert "48213" in html and "ESTIMATE" in html and "hls4ml per-layer model" in html
    assert "2.8% of the part" in html and "<td>relu1</td>" in html  # utilisation and the per-layer table
    assert "Mismatching events" in html and f">1</span>\n  out of {M} checked" in html
    assert "First mismatch" in html and "0.625" in html
    for model in ("GNN teacher", "Transformer teacher", "Student (QKeras)", "Baseline",
                  "Student (firmware emulation)"):
        assert f"<td>{model}</td>" in html
    assert "12345" in html and "0.1.0" in html and "tiny" in html
    assert not list(run_dir.glob(".report.*"))  # no temp file left behind


def test_fidelity_to_the_trained_model(run_dir):
    summary = copy.deepcopy(SUMMARY)
    summary["tasks"]["tagging"]["emulation"]["fidelity"] = {
        "keras_mismatches": 7, "keras_max_abs_diff": 0.1875, "argmax_flips": 2, "dropped_quantizers": ["relu3"],
        "first_keras_divergence": {"layer": "dense1", "class_name": "QDense", "cause": "inputs outside the input type"}}
    html = write_report(run_dir, summary).read_text()
    assert "Firmware against the trained model" in html and f">7</span> of\n  {M} events" in html
    assert "0.188" in html and "argmax flips 2" in html and "<code>dense1</code>" in html
    assert "inputs outside the input type" in html and "relu3" in html
    assert "Firmware against the trained model" not in write_report(run_dir, SUMMARY).read_text()


def test_missing_blocks_omitted(run_dir):
    summary = copy.deepcopy(SUMMARY)
    tagging = summary["tasks"]["tagging"]
    del tagging["firmware"], tagging["emulation"]
    (run_dir / "emulation/outputs.h5").unlink()
    (run_dir / "teachers/transformer/predictions.h5").unlink()
    html = write_report(run_dir, summary).read_text()
    assert ">Metrics</h2>" in html and ">ROC curves</h2>" in html
    assert "Latency" not in html and "C-sim vs emulator" not in html
    assert "<td>Transformer teacher</td>" not in html
    assert "<td>Student (firmware emulation)</td>" not in html
    assert "Student (QKeras), row-normalised" in html
    assert html.count("data:image/png;base64,") == 2


def test_empty_run(tmp_path):
    html = write_report(tmp_path, {"version": "0.1.0"}).read_text()
    assert "l1forge report" in html
    assert "<h2" not in html and "data:image/png" not in html


def test_reproducible(run_dir):
    first = write_report(run_dir, SUMMARY).read_bytes()
    assert write_report(run_dir, SUMMARY).read_bytes() == first
