"""What every external-file layout reader shares: the chunk it yields, the source it opens, one-line input checks.

A layout module (layout_hls4ml, layout_openml, layout_toptagging, layout_jetclass, layout_mapping) has
``recognise(path) -> bool`` (cheap: suffix, keys or branches) and ``open_source(path, ...) -> Source``, which checks
every key, shape and dtype the layout needs before any data is read. ``Source.chunks(n)`` then yields ``Chunk``s of
at most n jets; events/external.py turns them into the flow's sample.
"""

from __future__ import annotations

import dataclasses
import pathlib
import typing

import awkward as ak
import numpy as np

from l1forge.events.schema import fail

SPLIT_NAMES = {"train": 0, "val": 1, "validation": 1, "test": 2}


@dataclasses.dataclass
class Chunk:
    """Up to n jets of one file. p4 = (px, py, pz, E), each (J, P) with zeros where `valid` is False."""

    start: int                                   # row of the first jet in its file (for messages)
    labels: np.ndarray                           # (J,) int, index into Source.class_names
    p4: tuple | None = None
    valid: np.ndarray | None = None              # (J, P) bool
    jet: np.ndarray | None = None                # (J, 4) pt, eta, phi, mass; None: the constituents' sum
    features: np.ndarray | None = None           # (J, 16); None: computed from the constituents
    weights: np.ndarray | None = None            # (J,)
    split: np.ndarray | None = None              # (J,) 0/1/2 from the file itself


@dataclasses.dataclass
class Source:
    path: pathlib.Path
    layout: str
    class_names: list[str]
    feature_names: list[str] | None              # None: the file has no jet features
    chunks: typing.Callable[[int], typing.Iterator[Chunk]]
    file_split: int | None = None                # 0/1/2 when the file is one split of the dataset (train.h5, ...)


def split_from_name(path: pathlib.Path) -> int | None:
    """0/1/2 when the file's stem (train.h5) or folder (val_5M/...) names a split, else None."""
    for name in (path.stem.lower(), path.parent.name.lower()):
        for word, code in SPLIT_NAMES.items():
            if name == word or name.startswith(word + "_"):
                return code
    return None


def check_kind(path, key: str, dtype, kinds: str = "fiu", what: str = "numeric") -> None:
    """DataError unless dtype is of one of the numpy kinds (f float, i/u integer, b bool)."""
    kind = getattr(dtype, "kind", None) or np.dtype(dtype).kind  # pandas extension dtypes have a kind too
    if kind not in kinds:
        fail(path, f"'{key}' has dtype {dtype}, expected {what}")


def check_finite(path, key: str, values, start: int = 0, columns=None) -> np.ndarray:
    """The values as a numpy array; DataError naming file, key (column) and first row if any is NaN or Inf."""
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            first = np.argwhere(bad)[0]
            where = f"'{key}'" if columns is None else f"column '{columns[first[-1]]}' of '{key}'"
            fail(path, f"{where} contains {int(bad.sum())} NaN/Inf values (first at row {start + int(first[0])})")
    return arr


def labels_from_one_hot(path, key: str, one_hot: np.ndarray, start: int = 0) -> np.ndarray:
    """int8 class index of (J, K) one-hot rows; DataError if a row is NaN or not exactly one 1 among 0s."""
    one_hot = check_finite(path, key, one_hot, start).astype(np.float32, copy=False)
    bad = ~(((one_hot == 0) | (one_hot == 1)).all(axis=1) & (one_hot.sum(axis=1) == 1))
    if bad.any():
        row = int(np.argmax(bad))
        fail(path, f"'{key}' row {start + row} is not one-hot ({one_hot[row].tolist()})")
    return one_hot.argmax(axis=1).astype(np.int8)


def labels_from_index(path, key: str, values, class_names, start: int = 0) -> np.ndarray:
    """int8 class index of integer codes 0..K-1, or of strings/bytes that are among class_names."""
    values = np.asarray(values)
    if values.dtype.kind in "SUO":
        values = np.char.decode(values) if values.dtype.kind == "S" else values.astype(str)
        codes = {name: k for k, name in enumerate(class_names)}
        out = np.array([codes.get(v, -1) for v in values.tolist()], np.int64)
    else:
        values = check_finite(path, key, values, start)
        out = values.astype(np.int64)
        if values.dtype.kind == "f" and (out != values).any():
            fail(path, f"'{key}' has non-integer label {values[np.argmax(out != values)]} "
                       f"(row {start + int(np.argmax(out != values))})")
    bad = (out < 0) | (out >= len(class_names))
    if bad.any():
        row = int(np.argmax(bad))
        fail(path, f"'{key}' has {int(bad.sum())} labels outside the {len(class_names)} classes {list(class_names)} "
                   f"(first at row {start + row}: {values[row]!r})")
    return out.astype(np.int8)


def pad_jagged(path, key: str, values, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(J, P) float numpy array, zero-padded to the longest jet of the chunk, and its (J, P) valid mask."""
    values = ak.Array(values) if not isinstance(values, ak.Array) else values
    if values.ndim != 2:
        fail(path, f"'{key}' has {values.ndim} dimensions, expected a jagged (N, var) list per jet")
    counts = ak.to_numpy(ak.num(values, axis=1))
    flat = ak.to_numpy(ak.flatten(values))
    check_kind(path, key, flat.dtype, "fiub")
    bad = ~np.isfinite(flat)
    if bad.any():
        row = start + int(np.searchsorted(np.cumsum(counts), np.argmax(bad), side="right"))
        fail(path, f"'{key}' contains {int(bad.sum())} NaN/Inf values (first in the jet at row {row})")
    width = int(counts.max()) if len(counts) else 0
    valid = np.arange(width) < counts[:, None]
    out = np.zeros(valid.shape, np.float64)
    out[valid] = flat
    return out, valid


def p4_from_pt_eta_phi(pt, eta, phi, energy=None, mass=None):
    """(px, py, pz, E) of massless (or given energy / mass) constituents."""
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    if energy is None:
        m2 = 0.0 if mass is None else mass**2
        energy = np.sqrt(px**2 + py**2 + pz**2 + m2)
    return px, py, pz, energy


def jet_mass_from_energy(pt, eta, energy):
    """Invariant mass from pt, eta and energy (0 where E < |p|)."""
    p = pt * np.cosh(eta)
    return np.sqrt(np.maximum(energy**2 - p**2, 0.0))
