"""The flow's jet sample from files in their published layouts: `read_external` (arrays) and `convert_external` (file).

    result = read_external("data/train/*.h5", seed=1)          # layout recognised from each file's keys/branches
    schema.write_jets(out, **result)                            # = convert_external("data/train/*.h5", out)

Layouts (events/README.md, "Data from files"): hls4ml LHC jet HDF5, its OpenML table, the top-tagging reference
dataset, JetClass ROOT files, and any HDF5/ROOT/parquet file through a YAML mapping (events/layout_mapping.py).
Every file's keys, shapes and dtypes are checked before any data is read, and every chunk's values before it is
kept; a bad input raises schema.DataError, one line naming the file and key, and nothing is written.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import json
import pathlib

import awkward as ak
import numpy as np

from l1forge.events import (layout_hls4ml, layout_jetclass, layout_mapping, layout_openml, layout_toptagging,
                            schema)
from l1forge.events.layout_base import split_from_name
from l1forge.events.schema import DataError, fail
from l1forge.events.substructure import FEATURE_NAMES, jet_features, pt_eta_phi, wrap_phi

LAYOUTS = {m.NAME: m for m in (layout_hls4ml, layout_toptagging, layout_jetclass, layout_openml, layout_mapping)}
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)  # train, val, test, per class, as the generator's
CHUNK_JETS = 20_000                # jets read at a time: memory holds one chunk of the input besides the sample
FEATURE_BATCH = 256                # jets per jet_features call (its correlation matrices are batch x P x P)
MIN_CONSTITUENTS = 3               # jet_features needs 3 exclusive subjets; the generator applies the same cut


def expand_paths(paths) -> list[pathlib.Path]:
    """Files of a path, a glob or a list of them, sorted within each pattern; DataError if a pattern matches none."""
    out = []
    for pattern in [paths] if isinstance(paths, (str, pathlib.Path)) else list(paths):
        pattern = str(pattern)
        found = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        found = [pathlib.Path(p) for p in found if pathlib.Path(p).is_file()]
        if not found:
            raise DataError(f"{pattern}: no such file")
        out += found
    return out


def detect_layout(path: pathlib.Path) -> str:
    """The published layout of a file, from its suffix and keys or branches (a mapping is never guessed)."""
    for name, module in LAYOUTS.items():
        if module.recognise(path):
            return name
    fail(path, f"not a published layout ({', '.join(n for n in LAYOUTS if n != 'mapping')}): give a mapping")


def file_records(paths, sha256: bool = False) -> list[dict]:
    """[{"path", "size"(, "sha256")}] of each input file, for provenance."""
    records = []
    for path in paths:
        record = {"path": str(path), "size": path.stat().st_size}
        if sha256:
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    digest.update(block)
            record["sha256"] = digest.hexdigest()
        records.append(record)
    return records


def stratified_split(labels: np.ndarray, n_classes: int, seed: int, fractions=SPLIT_FRACTIONS) -> np.ndarray:
    """0/1/2 per jet: each class shuffled with SeedSequence([seed, n_classes]) and cut by the fractions."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, n_classes]))
    split = np.empty(len(labels), np.int8)
    for c in range(n_classes):
        rows = np.flatnonzero(labels == c)
        rows = rows[rng.permutation(len(rows))]
        n_train, n_val = round(fractions[0] * len(rows)), round(fractions[1] * len(rows))
        split[rows[:n_train]], split[rows[n_train:n_train + n_val]], split[rows[n_train + n_val:]] = 0, 1, 2
    return split


def _jet_from_sum(px, py, pz, e):
    sums = [a.sum(axis=1, dtype=np.float64) for a in (px, py, pz, e)]
    pt, eta, phi = pt_eta_phi(*sums[:3])
    mass = np.sqrt(np.maximum(sums[3]**2 - sums[0]**2 - sums[1]**2 - sums[2]**2, 0.0))
    return np.stack([pt, eta, phi, mass], axis=1)


def _features(p4, valid, count, jet):
    """(J, 16) features of events/substructure.py, from all valid constituents; jets in batches of like size."""
    out = np.zeros((len(count), schema.N_FEATURES))
    order = np.argsort(count, kind="stable")
    for b in range(0, len(order), FEATURE_BATCH):
        rows = order[b:b + FEATURE_BATCH]
        v = valid[rows]
        fields = {k: np.asarray(c[rows][v], np.float64) for k, c in zip(("px", "py", "pz", "E"), p4)}
        consts = ak.unflatten(ak.zip(fields), count[rows])
        out[rows] = jet_features(consts, jet[rows, 1], jet[rows, 2], jet[rows, 3])
    return out


def _sample_chunk(source, chunk, compute_features: bool) -> dict:
    """The flow's arrays for one chunk: constituents (pt-sorted, 64, deta/dphi to the jet axis), jet, features."""
    n = len(chunk.labels)
    out = {"labels": chunk.labels, "split": chunk.split, "weights": chunk.weights}
    if chunk.p4 is None:
        if compute_features:
            fail(source.path, f"no constituents ({source.layout} layout) to compute the 16 features from")
        out.update(constituents=np.zeros((n, schema.MAX_CONSTITUENTS, 4), np.float32),
                   n_constituents=np.zeros(n, np.int16), features=chunk.features,
                   jet=np.zeros((n, 4)) if chunk.jet is None else chunk.jet)
        return out
    px, py, pz, e = chunk.p4
    pt = np.hypot(px, py)
    valid = chunk.valid & (pt > 0)
    pt = np.where(valid, pt, 0)
    count = valid.sum(axis=1)
    p4 = (px, py, pz, e)  # entries outside `valid` are never used: pt = 0 sorts them last, sums and features skip them
    jet = _jet_from_sum(*(np.where(valid, c, 0) for c in p4)) if chunk.jet is None else chunk.jet
    order = np.argsort(-pt, axis=1, kind="stable")[:, :schema.MAX_CONSTITUENTS]
    spt, spx, spy, spz, se, sval = (np.take_along_axis(a, order, axis=1) for a in (pt, *p4, valid))
    _, eta, phi = pt_eta_phi(spx, spy, spz)
    table = np.stack([spt, eta - jet[:, 1:2], wrap_phi(phi - jet[:, 2:3]), se], axis=2) * sval[:, :, None]
    constituents = np.zeros((n, schema.MAX_CONSTITUENTS, 4), np.float32)
    constituents[:, :table.shape[1]] = table
    out.update(constituents=constituents, n_constituents=np.minimum(count, schema.MAX_CONSTITUENTS), jet=jet)
    if chunk.features is not None and not compute_features:
        out["features"] = chunk.features
        return out
    keep = count >= MIN_CONSTITUENTS
    if not keep.all():
        out = {k: v if v is None else v[keep] for k, v in out.items()}
        p4, valid, count, jet = tuple(c[keep] for c in p4), valid[keep], count[keep], jet[keep]
    out["features"] = _features(p4, valid, count, jet)
    out["dropped"] = int((~keep).sum())
    return out


def _open(path, layout, mapping):
    name = layout or ("mapping" if mapping is not None else detect_layout(path))
    if name not in LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, not {name!r}")
    return LAYOUTS[name].open_source(path, mapping=mapping)


def read_external(paths, layout: str | None = None, mapping=None, seed: int = 1, split: str = "auto",
                  split_fractions=SPLIT_FRACTIONS, chunk_jets: int = CHUNK_JETS, compute_features: bool = False,
                  sha256: bool = False) -> dict:
    """The flow's jet sample (schema l1forge.jets/1) from files in a published layout or through a mapping.

    paths: a file, a glob, or a list of them. layout: None (recognised per file from its keys or branches), or
    one of LAYOUTS. mapping: a YAML file or dict (events/layout_mapping.py) for any HDF5/ROOT/parquet file.
    split: "auto" (the files' own split when they hold all three of train/val/test, else seeded), "files" or
    "seeded" (stratified by class with `split_fractions` from `seed`). compute_features: compute the 16 features
    of events/substructure.py from the constituents even where the file has features of its own.
    Returns {"arrays", "feature_names", "class_names", "attrs"}: `schema.write_jets(out, **result)` writes it.
    arrays holds the six schema datasets, plus "weights" (N,) when the mapping names them.
    """
    if split not in ("auto", "files", "seeded"):
        raise ValueError(f"split must be 'auto', 'files' or 'seeded', not {split!r}")
    files = expand_paths(paths)
    sources = [_open(path, layout, mapping) for path in files]  # every header checked before any data is read
    first = sources[0]
    for src in sources[1:]:
        for what in ("layout", "class_names", "feature_names"):
            if getattr(src, what) != getattr(first, what):
                fail(src.path, f"{what} {getattr(src, what)} differ from {getattr(first, what)} of {first.path}")
    parts = []
    for src in sources:
        code = split_from_name(src.path)
        for chunk in src.chunks(chunk_jets):
            part = _sample_chunk(src, chunk, compute_features)
            parts.append(part)
            if part["split"] is None:
                part["split"] = np.full(len(part["labels"]), -1 if code is None else code, np.int8)
    names = tuple(schema.DATASETS)
    arrays = {k: np.concatenate([p[k] for p in parts]) if parts else np.zeros((0, *schema.DATASETS[k][0]))
              for k in names}
    arrays = {k: np.asarray(v, schema.DATASETS[k][1]) for k, v in arrays.items()}
    if parts and all(p["weights"] is not None for p in parts):
        arrays["weights"] = np.concatenate([p["weights"] for p in parts]).astype(np.float32)
    own = arrays["split"]
    has_own = bool(len(own)) and (own >= 0).all() and set(np.unique(own)) == {0, 1, 2}
    if split == "files" and not has_own:
        bad = next((s.path for s in sources if split_from_name(s.path) is None), files[0])
        fail(bad, "split='files', but the files do not name all of train, val and test for every jet")
    if split == "seeded" or not has_own:
        arrays["split"] = stratified_split(arrays["labels"], len(first.class_names), seed, split_fractions)
    computed = first.feature_names is None or compute_features
    attrs = {
        "source_layout": first.layout,
        "source_files": json.dumps(file_records(files, sha256)),
        "split_source": "files" if split != "seeded" and has_own else "seeded",
        "split_fractions": json.dumps(list(split_fractions)),
        "seed": int(seed),
        "features_source": "computed" if computed else "file",
        "constituents_available": int(arrays["n_constituents"].any()),
        "dropped_jets_fewer_than_3_constituents": int(sum(p.get("dropped", 0) for p in parts)),
        "l1forge_version": importlib.metadata.version("l1forge"),
    }
    if first.layout == "mapping":
        attrs["source_mapping"] = str(mapping) if isinstance(mapping, (str, pathlib.Path)) else json.dumps(mapping)
    return {"arrays": arrays, "feature_names": list(FEATURE_NAMES if computed else first.feature_names),
            "class_names": list(first.class_names), "attrs": attrs}


def convert_external(paths, out: pathlib.Path, **options) -> dict:
    """read_external(paths, **options), written atomically to `out` as an l1forge.jets/1 file.

    Returns {"path", "n_jets", "layout", "class_names"}. Nothing is written, and a previous `out` stays, on DataError.
    """
    result = read_external(paths, **options)
    schema.write_jets(pathlib.Path(out), **result)
    return {"path": pathlib.Path(out), "n_jets": len(result["arrays"]["labels"]),
            "layout": result["attrs"]["source_layout"], "class_names": result["class_names"]}
