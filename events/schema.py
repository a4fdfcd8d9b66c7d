"""HDF5 jet-sample schema "l1forge.jets/1": atomic writer and validating reader."""

import dataclasses
import pathlib

import h5py
import numpy as np

from l1forge.core.artifacts import atomic_path

SCHEMA = "l1forge.jets/1"
MAX_CONSTITUENTS = 64
N_FEATURES = 16
CONSTITUENT_NAMES = ("pt", "deta", "dphi", "energy")
JET_NAMES = ("pt", "eta", "phi", "mass")
SPLITS = {"train": 0, "val": 1, "test": 2}
# name -> (shape after N, numpy dtype)
DATASETS = {
    "constituents": ((MAX_CONSTITUENTS, len(CONSTITUENT_NAMES)), np.float32),
    "n_constituents": ((), np.int16),
    "features": ((N_FEATURES,), np.float32),
    "labels": ((), np.int8),
    "jet": ((len(JET_NAMES),), np.float32),
    "split": ((), np.int8),
}


class DataError(ValueError):
    """A jet file that does not follow the schema; the message is one line naming the file and the culprit."""


@dataclasses.dataclass
class JetSample:
    path: pathlib.Path
    constituents: np.ndarray
    n_constituents: np.ndarray
    features: np.ndarray
    feature_names: list[str]
    labels: np.ndarray
    class_names: list[str]
    jet: np.ndarray
    split: np.ndarray
    attrs: dict

    def subset(self, which: str) -> "JetSample":
        """The jets of one split: "train", "val" or "test"."""
        if which not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, not {which!r}")
        rows = self.split == SPLITS[which]
        return dataclasses.replace(
            self, constituents=self.constituents[rows], n_constituents=self.n_constituents[rows],
            features=self.features[rows], labels=self.labels[rows], jet=self.jet[rows], split=self.split[rows],
        )


def write_jets(path: pathlib.Path, arrays: dict, feature_names, class_names, attrs: dict) -> None:
    """Write the datasets and attributes atomically (temp file in the same directory, then os.replace).

    Byte-deterministic: no timestamps (track_times=False) and nothing time-dependent in attributes.
    """
    with atomic_path(path, ".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            for name, (_, dtype) in DATASETS.items():
                data = np.ascontiguousarray(arrays[name], dtype=dtype)
                chunked = dict(chunks=True, compression="gzip", compression_opts=4, shuffle=True) if len(data) else {}
                f.create_dataset(name, data=data, track_times=False, **chunked)
            f["features"].attrs["names"] = list(feature_names)
            f["labels"].attrs["class_names"] = list(class_names)
            f["jet"].attrs["names"] = list(JET_NAMES)
            f["constituents"].attrs["names"] = list(CONSTITUENT_NAMES)
            f.attrs["schema"] = SCHEMA
            for key, value in attrs.items():
                f.attrs[key] = value


def write_h5(path: pathlib.Path, arrays: dict, attrs: dict) -> None:
    """Write datasets (gzip, byte-deterministic: no timestamps) and file attributes atomically."""
    with atomic_path(path, ".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            for key, data in arrays.items():
                f.create_dataset(key, data=data, track_times=False, chunks=True, compression="gzip",
                                 compression_opts=4, shuffle=True)
            f.attrs.update(attrs)


def fail(path, message):
    """Raise DataError("path: message")."""
    raise DataError(f"{path}: {message}")


def open_h5(path: pathlib.Path) -> h5py.File:
    """The HDF5 file at `path`, open for reading; DataError if it is not one."""
    try:
        return h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({' '.join(str(exc).split())})") from None


def _shape_text(shape):
    return "(N,)" if not shape else "(N, " + ", ".join(map(str, shape)) + ")"


def checked_dataset(f, path, name: str, shape: tuple, n: int | None, first: str) -> h5py.Dataset:
    """Dataset `name` of f, present with shape (N, *shape) and, unless n is None, N = n rows like dataset `first`."""
    if name not in f or not isinstance(f[name], h5py.Dataset):
        fail(path, f"dataset '{name}' is missing")
    ds = f[name]
    if ds.ndim != 1 + len(shape) or ds.shape[1:] != shape:
        fail(path, f"dataset '{name}' has shape {ds.shape}, expected {_shape_text(shape)}")
    if n is not None and ds.shape[0] != n:
        fail(path, f"dataset '{name}' has {ds.shape[0]} rows, expected N = {n} like '{first}'")
    return ds


def _read_dataset(f, path, name, n):
    """The dataset as a numpy array, checked against DATASETS; n is the row count fixed by earlier datasets."""
    shape, dtype = DATASETS[name]
    ds = checked_dataset(f, path, name, shape, n, "constituents")
    if ds.dtype.kind != np.dtype(dtype).kind:
        fail(path, f"dataset '{name}' has dtype {ds.dtype}, expected {np.dtype(dtype)}")
    return ds[()].astype(dtype, copy=False), ds.shape[0]


def _check_finite(path, name, data):
    bad = ~np.isfinite(data)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        fail(path, f"dataset '{name}' contains {int(bad.sum())} NaN/Inf values (first at row {row})")


def _names(path, obj, dataset, key, count):
    if key not in obj.attrs:
        fail(path, f"dataset '{dataset}' lacks attribute '{key}'")
    names = [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(obj.attrs[key])]
    if count is not None and len(names) != count:
        fail(path, f"attribute '{key}' of dataset '{dataset}' has {len(names)} names, expected {count}")
    return names


def read_jets(path) -> JetSample:
    """Read and validate a jet file; raises DataError on anything that breaks the schema."""
    path = pathlib.Path(path)
    with open_h5(path) as f:
        if f.attrs.get("schema") != SCHEMA:
            fail(path, f"attribute 'schema' is {f.attrs.get('schema')!r}, expected {SCHEMA!r}")
        data, n = {}, None
        for name in DATASETS:
            data[name], n = _read_dataset(f, path, name, n)
        feature_names = _names(path, f["features"], "features", "names", N_FEATURES)
        class_names = _names(path, f["labels"], "labels", "class_names", None)
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
    for name in ("features", "constituents", "jet"):
        _check_finite(path, name, data[name])
    bad = (data["labels"] < 0) | (data["labels"] >= len(class_names))
    if bad.any():
        fail(path, f"dataset 'labels' has {int(bad.sum())} values outside 0..{len(class_names) - 1} "
                    f"(first at row {int(np.argmax(bad))})")
    bad = ~np.isin(data["split"], list(SPLITS.values()))
    if bad.any():
        fail(path, f"dataset 'split' has {int(bad.sum())} values outside {{0, 1, 2}} (first at row {int(np.argmax(bad))})")
    bad = (data["n_constituents"] < 0) | (data["n_constituents"] > MAX_CONSTITUENTS)
    if bad.any():
        fail(path, f"dataset 'n_constituents' has {int(bad.sum())} values outside 0..{MAX_CONSTITUENTS} "
                    f"(first at row {int(np.argmax(bad))})")
    return JetSample(path=path, feature_names=feature_names, class_names=class_names, attrs=attrs, **data)
