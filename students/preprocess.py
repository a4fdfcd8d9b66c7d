"""Standardisation of the high-level features that feed the student (and its firmware)."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

from l1forge.core.artifacts import write_json_atomic


@dataclasses.dataclass
class Standardizer:
    """x -> (x - mean) / std with train-split statistics; the firmware input is this, quantized."""

    names: list[str]
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray, names) -> "Standardizer":
        std = features.std(axis=0)
        return cls(list(names), features.mean(axis=0), np.where(std > 0, std, 1.0))

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std).astype(np.float32)

    def save(self, path: pathlib.Path):
        write_json_atomic(path, {"names": self.names, "mean": self.mean.tolist(), "std": self.std.tolist()})

    @classmethod
    def load(cls, path) -> "Standardizer":
        data = json.loads(pathlib.Path(path).read_text())
        return cls(data["names"], np.asarray(data["mean"]), np.asarray(data["std"]))
