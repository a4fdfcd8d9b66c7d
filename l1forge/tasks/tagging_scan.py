"""Design-space scan of the flow's student: family x constituents x bit widths x reuse factors -> accuracy vs LUTs
vs latency."""

from __future__ import annotations

import dataclasses
import itertools
import pathlib
import tempfile

import numpy as np

from l1forge.firmware.scan import ScanPoint, StudentEstimate, pareto_front, scan
from l1forge.metrics import classification_metrics
from l1forge.rtl.check import open_synthesis


@dataclasses.dataclass
class DistilledAccuracy:
    """Picklable metric: distil the given student on the run's data and teacher; test-set accuracy (QKeras)."""

    run_dir: str
    teacher: str
    student: dict  # StudentConfig fields

    def __call__(self, model) -> dict:
        """{"metric": test accuracy, "accuracy_err", "rejection_at_50", "rejection_at_50_err",
        "rejection_at_50_lower_bound", "top_vs_qcd_auc"} of the model trained in place (QKeras, float)."""
        from l1forge.events.schema import read_jets
        from l1forge.core.artifacts import read_array
        from l1forge.students.deepsets import student_inputs
        from l1forge.students.distill import family_settings, train_student

        run = pathlib.Path(self.run_dir)
        jets = read_jets(run / "data" / "jets.h5")
        teacher_logits = read_array(run / "teachers" / self.teacher / "predictions.h5", "logits")
        s = self.student
        family = "deepsets" if len(model.input_shape) == 3 else "hlf"  # (None, slots, F) words (deepsets, mixer alike)
        features, names, preprocess = student_inputs(family, jets, model.input_shape[1], None, s.get("jet_word", False))
        with tempfile.TemporaryDirectory() as tmp:
            train_student(
                features, names, jets.labels, jets.split, pathlib.Path(tmp), teacher_logits,
                epochs=s["epochs"], batch_size=s["batch_size"], lr=s["lr"], alpha=s["alpha"], seed=s["seed"],
                progress=False, model=model, preprocess=preprocess, n_classes=len(jets.class_names),
                **family_settings(family, s["temperature"], s["augment"]),
            )
            logits = read_array(pathlib.Path(tmp) / "predictions.h5", "logits")
        test = jets.split == 2
        m = classification_metrics(jets.labels[test], np.asarray(logits)[test], jets.class_names)
        keys = ("accuracy_err", "top_vs_qcd_auc", "rejection_at_50", "rejection_at_50_err", "rejection_at_50_lower_bound")
        return {"metric": m["accuracy"], **{k: m[k] for k in keys}}


def scan_points(weight_bits, reuse_factors, families=("hlf",), n_constituents=(16,)) -> list[ScanPoint]:
    """Every weight width with every reuse factor, for every family (the constituent families, deepsets and mixer, once
    per number of constituents); the activations have the weights' width plus the family's integer bits
    (quantize/precision.py ``FAMILY_ACTIVATIONS``: the same for the HLF MLP, 2 more for the constituent students)."""
    from l1forge.quantize.precision import FAMILY_ACTIVATIONS

    designs = [(f, n) for f in families for n in (n_constituents if f != "hlf" else (0,))]
    return [ScanPoint(bits, bits + FAMILY_ACTIVATIONS[family][1], rf, family, n)
            for (family, n), bits, rf in itertools.product(designs, weight_bits, reuse_factors)]


def run_scan(run_dir: pathlib.Path, teacher: str, student: dict, settings, points, executor=None,
             synthesis: str = "estimate") -> dict:
    """Evaluate every point in the workers of ``executor`` (``l1forge.core.executors.executor``; None: a local pool
    of 2 processes) and return {"metric", "points": [...], "front": [...]}. Each point reads ``run_dir``'s data and
    teacher predictions, so the workers of a remote Dask cluster need ``run_dir`` on a shared file system.
    ``synthesis``: "estimate" (firmware/estimate.py) or "open" (Yosys on the RTL of each point, in its worker)."""
    if synthesis not in ("estimate", "open"):
        raise ValueError(f"synthesis must be 'estimate' or 'open', not {synthesis!r}")
    run_dir = pathlib.Path(run_dir).resolve()  # absolute: a worker's directory may differ
    metric = DistilledAccuracy(str(run_dir), teacher, student)
    evaluate = StudentEstimate(metric=metric, hidden=tuple(student["hidden"]), settings=settings, seed=student["seed"],
                               phi=tuple(student.get("phi", (16, 16))), head=tuple(student.get("head", (32,))),
                               jet_word=student.get("jet_word", False),
                               synthesize=open_synthesis if synthesis == "open" else None)
    results = scan(points, evaluate, executor)
    return {"metric": "accuracy", "points": results, "front": pareto_front(results)}
