"""Top Quark Tagging Reference Dataset (Kasieczka et al., arXiv 1902.09914; Zenodo 2603256), read with pandas.

Layout in ../shared/data-layouts.md section 2: `train.h5`, `val.h5`, `test.h5`, each a pandas HDF5 (PyTables)
frame under key `table` with columns E_i, PX_i, PY_i, PZ_i for i = 0..199 (the leading constituents by pT,
zero-padded, E = 0 marks padding), truthE/PX/PY/PZ, ttv and `is_signal_new` (1 top, 0 QCD). Read in row chunks with
`pandas.HDFStore.select(start, stop)` (fixed or table format). No jet features and no jet four-vector in the file:
the jet is the constituents' sum (as the ParT conversion does) and the 16 features are computed. The file name gives
the split (ttv's code is not documented).
"""

from __future__ import annotations

import pathlib
import warnings

import h5py
import numpy as np
import pandas as pd

from l1forge.events.layout_base import Chunk, Source, check_finite, check_kind, labels_from_index
from l1forge.events.schema import fail

NAME = "toptagging"
KEY, LABEL = "table", "is_signal_new"
CLASSES = ("QCD", "top")                                  # is_signal_new = 0, 1
COMPONENTS = ("PX", "PY", "PZ", "E")
MAX_CONSTITUENTS = 200


def recognise(path: pathlib.Path) -> bool:
    if not h5py.is_hdf5(path):
        return False
    with h5py.File(path, "r") as f:
        return KEY in f and "pandas_type" in f[KEY].attrs


def open_source(path: pathlib.Path, **_) -> Source:
    try:
        with warnings.catch_warnings(), pd.HDFStore(path, "r") as store:
            warnings.simplefilter("ignore")
            head = store.select(KEY, start=0, stop=1) if f"/{KEY}" in store.keys() else None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        fail(path, f"key '{KEY}' is not a readable pandas frame ({' '.join(str(exc).split())})")
    if not isinstance(head, pd.DataFrame):
        fail(path, f"key '{KEY}' is missing or not a pandas frame (top-tagging layout)")
    columns, dtypes = list(head.columns), head.dtypes
    n_const = 0
    while n_const < MAX_CONSTITUENTS and f"E_{n_const}" in columns:
        n_const += 1
    names = [f"{c}_{i}" for c in COMPONENTS for i in range(max(n_const, 1))] + [LABEL]
    for name in names:
        if name not in columns:
            fail(path, f"column '{name}' of key '{KEY}' is missing")
        check_kind(path, f"{KEY}/{name}", dtypes[name], "fiub")
    position = {name: k for k, name in enumerate(columns)}
    p4_cols = np.array([[position[f"{c}_{i}"] for i in range(n_const)] for c in COMPONENTS])
    label_col = position[LABEL]

    def chunks(size):
        with warnings.catch_warnings(), pd.HDFStore(path, "r") as store:
            warnings.simplefilter("ignore")
            a = 0
            while True:
                frame = store.select(KEY, start=a, stop=a + size)
                if not len(frame):
                    return
                values = frame.to_numpy(np.float64)
                p4 = check_finite(path, KEY, values[:, p4_cols.ravel()], a,
                                  [columns[k] for k in p4_cols.ravel()]).reshape(len(frame), 4, n_const)
                labels = labels_from_index(path, f"{KEY}/{LABEL}", values[:, label_col], CLASSES, a)
                px, py, pz, e = np.moveaxis(p4, 1, 0)
                yield Chunk(start=a, labels=labels, p4=(px, py, pz, e), valid=e > 0)
                a += len(frame)

    return Source(path, NAME, list(CLASSES), None, chunks)
