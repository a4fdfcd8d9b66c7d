"""Design-space scan of the flow's student: bit widths x reuse factors -> accuracy vs LUTs vs latency."""

from __future__ import annotations

import dataclasses
import itertools
import pathlib
import tempfile

import numpy as np

from l1forge.firmware.scan import ScanPoint, StudentEstimate, pareto_front, scan
from l1forge.metrics import classification_metrics


@dataclasses.dataclass
class DistilledAccuracy:
    """Picklable metric: distil the given student on the run's data and teacher; test-set accuracy (QKeras)."""

    run_dir: str
    teacher: str
    student: dict  # StudentConfig fields

    def __call__(self, model) -> float:
        from l1forge.events.schema import read_jets
        from l1forge.core.artifacts import read_array
        from l1forge.students.distill import train_student
        from l1forge.students.preprocess import Standardizer

        run = pathlib.Path(self.run_dir)
        jets = read_jets(run / "data" / "jets.h5")
        teacher_logits = read_array(run / "teachers" / self.teacher / "predictions.h5", "logits")
        s = self.student
        with tempfile.TemporaryDirectory() as tmp:
            train_student(
                jets.features, jets.feature_names, jets.labels, jets.split, pathlib.Path(tmp), teacher_logits,
                epochs=s["epochs"], batch_size=s["batch_size"], lr=s["lr"], temperature=s["temperature"],
                alpha=s["alpha"], seed=s["seed"], progress=False, model=model,
            )
            scaler = Standardizer.load(pathlib.Path(tmp) / "preprocess.json")
        test = jets.split == 2
        logits = model.predict(scaler(jets.features[test]), batch_size=4096, verbose=0)
        return classification_metrics(jets.labels[test], np.asarray(logits), jets.class_names)["accuracy"]


def scan_points(weight_bits, reuse_factors) -> list[ScanPoint]:
    """Weights and activations share the bit width; every width with every reuse factor."""
    return [ScanPoint(bits, bits, rf) for bits, rf in itertools.product(weight_bits, reuse_factors)]


def run_scan(run_dir: pathlib.Path, teacher: str, student: dict, settings, points, executor=None) -> dict:
    """Evaluate every point in the workers of ``executor`` (``l1forge.core.executors.executor``; None: a local pool
    of 2 processes) and return {"metric", "points": [...], "front": [...]}. Each point reads ``run_dir``'s data and
    teacher predictions, so the workers of a remote Dask cluster need ``run_dir`` on a shared file system."""
    run_dir = pathlib.Path(run_dir).resolve()  # absolute: a worker's directory may differ
    metric = DistilledAccuracy(str(run_dir), teacher, student)
    evaluate = StudentEstimate(metric=metric, hidden=tuple(student["hidden"]), settings=settings, seed=student["seed"])
    results = scan(points, evaluate, executor)
    return {"metric": "accuracy", "points": results, "front": pareto_front(results)}
