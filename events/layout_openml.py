"""hls4ml LHC jet dataset, OpenML table `hls4ml_lhc_jets_hlf` (the hls4ml tutorial's 16 inputs, no constituents).

Layout in ../shared/data-layouts.md section 1b: the 16 feature columns (no "j_" prefix) and the column `class`
with values g, q, t, w, z. ARFF (what `fetch_openml` downloads; .arff or .arff.gz, read with scipy.io.arff) or CSV
(read with pandas, in chunks). Labels are mapped by class name into the order of the HDF5 files (g, q, w, z, t);
the tutorial's LabelEncoder order (g, q, t, w, z) is not used.
"""

from __future__ import annotations

import gzip
import io
import pathlib

import numpy as np
import pandas as pd
from scipy.io import arff

from l1forge.events.layout_base import Chunk, Source, check_finite, check_kind, labels_from_index
from l1forge.events.layout_hls4ml import CLASSES, HLF_NAMES
from l1forge.events.schema import fail

NAME = "openml"
TARGET = "class"
SUFFIXES = (".arff", ".arff.gz", ".csv", ".csv.gz")


def recognise(path: pathlib.Path) -> bool:
    return path.name.lower().endswith(SUFFIXES)


def _read_arff(path) -> pd.DataFrame:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt") as stream:
            data, _ = arff.loadarff(io.StringIO(stream.read()))
    except (OSError, ValueError, arff.ParseArffError) as exc:
        fail(path, f"not a readable ARFF file ({' '.join(str(exc).split())})")
    return pd.DataFrame(data)


def _check_columns(path, columns):
    for name in (*HLF_NAMES, TARGET):
        if name not in columns:
            fail(path, f"column '{name}' is missing (OpenML hls4ml_lhc_jets_hlf layout)")


def _chunk(path, frame: pd.DataFrame, start: int) -> Chunk:
    for name in HLF_NAMES:
        check_kind(path, name, frame[name].dtype, "fiu")
    features = check_finite(path, "table", frame[list(HLF_NAMES)].to_numpy(np.float32), start, HLF_NAMES)
    labels = labels_from_index(path, TARGET, frame[TARGET].to_numpy(), CLASSES, start)
    return Chunk(start=start, labels=labels, features=features)


def open_source(path: pathlib.Path, **_) -> Source:
    if ".arff" in path.name.lower():
        frame = _read_arff(path)
        _check_columns(path, frame.columns)

        def chunks(size):
            for a in range(0, len(frame), size):
                yield _chunk(path, frame.iloc[a:a + size], a)
    else:
        try:
            header = pd.read_csv(path, nrows=0).columns
        except (OSError, ValueError) as exc:
            fail(path, f"not a readable CSV file ({' '.join(str(exc).split())})")
        _check_columns(path, header)

        def chunks(size):
            a = 0
            with pd.read_csv(path, chunksize=size, usecols=[*HLF_NAMES, TARGET], dtype={TARGET: str}) as reader:
                for frame in reader:
                    yield _chunk(path, frame, a)
                    a += len(frame)

    return Source(path, NAME, list(CLASSES), list(HLF_NAMES), chunks)
