"""Any HDF5, ROOT or parquet file, through a short YAML mapping of its arrays (branches, columns) to the sample.

```yaml
tree: Events                  # ROOT only; default: the file's only TTree
constituents:                 # one of: px, py, pz, energy | pt, eta, phi [, energy | mass] | pt, deta, dphi [, ...]
  px: part_px                 # a jagged branch/column, or a padded (N, P) array (padding: pt = 0) ...
  py: "jetConstituentList[1]" # ... or "name[k]": column k of the last axis of an (N, P, C) array
  pz: part_pz
  energy: part_energy
jet: {pt: jet_pt, eta: jet_eta, phi: jet_phi, mass: jet_mass}   # or energy for mass; default: constituents' sum
features: [f0, f1, "hlf[2]", ...]   # 16 refs, or one (N, 16) array; default: the 16 features computed
feature_names: [...]                # default: the refs
labels: {one_hot: [label_a, label_b]}   # or {index: label} with integer codes or strings
classes: [a, b]                         # class names; needed for index labels, default the one_hot refs
weights: weight                         # optional, per jet
split: split                            # optional, per jet: 0 train, 1 val, 2 test
```
"""

from __future__ import annotations

import pathlib
import re

import awkward as ak
import h5py
import numpy as np
import yaml

from l1forge.events.layout_base import (Chunk, Source, check_finite, check_kind, jet_mass_from_energy,
                                         labels_from_index, labels_from_one_hot, p4_from_pt_eta_phi, pad_jagged)
from l1forge.events.layout_jetclass import open_tree, read_branches
from l1forge.events.schema import N_FEATURES, fail, open_h5
from l1forge.events.substructure import wrap_phi

NAME = "mapping"
KEYS = ("tree", "constituents", "jet", "features", "feature_names", "labels", "classes", "weights", "split")
COORDINATES = (("px", "py", "pz", "energy"), ("pt", "eta", "phi"), ("pt", "deta", "dphi"))
JET_KEYS = (("pt", "eta", "phi", "mass"), ("pt", "eta", "phi", "energy"))
_REF = re.compile(r"^\s*([^\[\]]+?)\s*(?:\[\s*(\d+)\s*\])?\s*$")


def recognise(path: pathlib.Path) -> bool:
    return False  # chosen only when a mapping is given


def _ref(origin, key, value):
    """(array name, column or None) of "name" or "name[k]"."""
    match = _REF.match(value) if isinstance(value, str) else None
    if not match:
        fail(origin, f"mapping '{key}': {value!r} is not an array name or name[column]")
    return match[1], None if match[2] is None else int(match[2])


def load_mapping(mapping) -> dict:
    """The mapping (YAML file path or dict), checked and with every reference parsed; DataError naming the key."""
    origin = "mapping"
    if isinstance(mapping, (str, pathlib.Path)):
        origin = pathlib.Path(mapping)
        try:
            mapping = yaml.safe_load(origin.read_text())
        except (OSError, yaml.YAMLError) as exc:
            fail(origin, f"not a readable YAML mapping ({' '.join(str(exc).split())})")
    if not isinstance(mapping, dict):
        fail(origin, "a mapping is a YAML dictionary (constituents, jet, features, labels, ...)")
    for key in mapping:
        if key not in KEYS:
            fail(origin, f"mapping key '{key}' is unknown (keys: {', '.join(KEYS)})")
    m = {"origin": origin, "tree": mapping.get("tree"), "constituents": None, "jet": None, "features": None}
    const = mapping.get("constituents")
    if const is not None:
        coords = next((c for c in COORDINATES if isinstance(const, dict) and all(k in const for k in c)), None)
        extra = set(const) - set(coords or ()) - {"energy", "mass"} if coords else set()
        if coords is None or extra or ("energy" in const and "mass" in const):
            got = sorted(const) if isinstance(const, dict) else const
            fail(origin, f"mapping 'constituents' needs one of {[list(c) for c in COORDINATES]} "
                         f"(plus energy or mass for pt/eta/phi), got {got}")
        m["constituents"] = {k: _ref(origin, f"constituents.{k}", v) for k, v in const.items()}
        m["coordinates"] = coords
    jet = mapping.get("jet")
    if jet is not None:
        if not isinstance(jet, dict) or not any(set(jet) == set(k) for k in JET_KEYS):
            fail(origin, f"mapping 'jet' needs exactly {list(JET_KEYS[0])} or {list(JET_KEYS[1])}, got {jet}")
        m["jet"] = {k: _ref(origin, f"jet.{k}", v) for k, v in jet.items()}
    if const is not None and "deta" in m["coordinates"] and m["jet"] is None:
        fail(origin, "mapping 'constituents' gives deta/dphi: 'jet' (pt, eta, phi, mass) is needed to place them")
    features = mapping.get("features")
    if features is not None:
        refs = [features] if isinstance(features, str) else features
        if not isinstance(refs, list) or len(refs) not in (1, N_FEATURES):
            fail(origin, f"mapping 'features' must be {N_FEATURES} arrays or one (N, {N_FEATURES}) array")
        m["features"] = [_ref(origin, "features", v) for v in refs]
        names = mapping.get("feature_names") or ([f"f{k}" for k in range(N_FEATURES)] if len(refs) == 1 else refs)
        if len(names) != N_FEATURES:
            fail(origin, f"mapping 'feature_names' has {len(names)} names, expected {N_FEATURES}")
        m["feature_names"] = [str(n) for n in names]
    elif const is None:
        fail(origin, "mapping needs 'constituents' or 'features' (or both)")
    labels = mapping.get("labels")
    if not isinstance(labels, dict) or len(labels) != 1 or next(iter(labels)) not in ("one_hot", "index"):
        fail(origin, "mapping 'labels' must be {one_hot: [arrays]} or {index: array}")
    kind, refs = next(iter(labels.items()))
    refs = [refs] if isinstance(refs, str) else refs
    if kind == "index" and len(refs) != 1 or not isinstance(refs, list):
        fail(origin, f"mapping 'labels.{kind}' must name {'one array' if kind == 'index' else 'the label arrays'}")
    m["labels"] = (kind, [_ref(origin, f"labels.{kind}", v) for v in refs])
    classes = mapping.get("classes")
    if classes is None and (kind == "index" or len(refs) == 1):
        fail(origin, "mapping 'classes' (the class names, in label order) is needed for these labels")
    m["classes"] = [str(c) for c in (classes or [r.removeprefix("label_") for r in refs])]
    for key in ("weights", "split"):
        m[key] = _ref(origin, key, mapping[key]) if mapping.get(key) is not None else None
    return m


def _refs(m):
    """Every (name, column) the mapping reads, with the mapping key that reads it."""
    out = [(f"constituents.{k}", r) for k, r in (m["constituents"] or {}).items()]
    out += [(f"jet.{k}", r) for k, r in (m["jet"] or {}).items()]
    out += [("features", r) for r in m["features"] or ()] + [("labels", r) for r in m["labels"][1]]
    return out + [(k, m[k]) for k in ("weights", "split") if m[k] is not None]


def _hdf5_reader(path, m, names):
    with open_h5(path) as f:
        rows = None
        for key, (name, column) in _refs(m):
            if name not in f or not isinstance(f[name], h5py.Dataset):
                fail(path, f"dataset '{name}' (mapping '{key}') is missing")
            ds = f[name]
            check_kind(path, name, ds.dtype, "fiubS" if key in ("labels", "split") else "fiub")
            if column is not None and (ds.ndim < 2 or column >= ds.shape[-1]):
                fail(path, f"dataset '{name}' has shape {ds.shape}: no column {column} (mapping '{key}')")
            if rows is not None and ds.shape[0] != rows:
                fail(path, f"dataset '{name}' has {ds.shape[0]} rows, expected {rows} like the other mapped arrays")
            rows = ds.shape[0]

    def chunks(size):
        with h5py.File(path, "r") as f:
            for a in range(0, rows, size):
                yield a, {name: f[name][a:a + size] for name in names}
    return chunks


def _root_reader(path, m, names):
    tree = open_tree(path, m["tree"])
    for key, (name, _) in _refs(m):
        if name not in tree.keys():
            fail(path, f"branch '{name}' of tree '{tree.name.split(';')[0]}' (mapping '{key}') is missing")
    return lambda size: read_branches(open_tree(path, m["tree"]), names, size)


def _parquet_reader(path, m, names):
    import pyarrow.parquet as pq
    try:
        schema_names = pq.ParquetFile(path).schema_arrow.names
    except Exception as exc:  # pyarrow raises several kinds on a file that is not parquet
        fail(path, f"not a readable parquet file ({' '.join(str(exc).split())})")
    for key, (name, _) in _refs(m):
        if name not in schema_names:
            fail(path, f"column '{name}' (mapping '{key}') is missing")

    def chunks(size):
        a = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=size, columns=list(names)):
            arrays = ak.from_arrow(batch)
            yield a, {name: arrays[name] for name in names}
            a += len(arrays)
    return chunks


READERS = {".h5": _hdf5_reader, ".hdf5": _hdf5_reader, ".root": _root_reader, ".parquet": _parquet_reader}


def _column(data, ref):
    name, column = ref
    return data[name] if column is None else data[name][..., column]


def _numpy(values):
    if not isinstance(values, ak.Array):
        return np.asarray(values)
    return np.asarray(ak.to_list(values)) if values.type.content.parameter("__array__") == "string" else \
        ak.to_numpy(values)


def _per_jet(path, key, values, start):
    """1-D float array of one value per jet."""
    values = _numpy(values)
    if values.ndim != 1:
        fail(path, f"'{key}' has shape {values.shape}, expected one value per jet")
    check_kind(path, key, values.dtype, "fiub")
    return check_finite(path, key, values, start).astype(np.float64)


def _per_constituent(path, key, values, start):
    """(J, P) float array and its valid mask (None for padded arrays)."""
    if isinstance(values, ak.Array):
        if values.ndim == 2 and not isinstance(values.type.content, ak.types.RegularType):
            return pad_jagged(path, key, values, start)
        values = ak.to_numpy(values)
    if values.ndim != 2:
        fail(path, f"'{key}' has shape {values.shape}, expected (N, P) constituents per jet")
    check_kind(path, key, values.dtype, "fiub")
    return check_finite(path, key, values, start).astype(np.float64), None


def open_source(path: pathlib.Path, mapping=None) -> Source:
    if mapping is None:
        fail(path, "not a published layout (hls4ml, OpenML, top tagging, JetClass): give a mapping")
    m = mapping if isinstance(mapping, dict) and "origin" in mapping else load_mapping(mapping)
    suffix = path.suffix.lower()
    if suffix not in READERS:
        fail(path, f"a mapping reads {', '.join(READERS)} files, not '{suffix}'")
    names = sorted({name for _, (name, _) in _refs(m)})
    reader = READERS[suffix](path, m, names)

    def chunks(size):
        for a, data in reader(size):
            kind, label_refs = m["labels"]
            if kind == "index":
                labels = labels_from_index(path, label_refs[0][0], _numpy(_column(data, label_refs[0])),
                                           m["classes"], a)
            else:
                cols = [_numpy(_column(data, r)) for r in label_refs]
                one_hot = cols[0] if len(cols) == 1 else np.stack(cols, axis=1)
                if one_hot.ndim != 2 or one_hot.shape[1] != len(m["classes"]):
                    fail(path, f"labels {[r[0] for r in label_refs]} have shape {one_hot.shape}, expected "
                               f"(N, {len(m['classes'])}) for the classes {m['classes']}")
                labels = labels_from_one_hot(path, ",".join(r[0] for r in label_refs), one_hot, a)
            chunk = Chunk(start=a, labels=labels)
            if m["jet"] is not None:
                jet = {k: _per_jet(path, r[0], _column(data, r), a) for k, r in m["jet"].items()}
                mass = jet["mass"] if "mass" in jet else jet_mass_from_energy(jet["pt"], jet["eta"], jet["energy"])
                chunk.jet = np.stack([jet["pt"], jet["eta"], jet["phi"], mass], axis=1)
            if m["constituents"] is not None:
                cols, valid = {}, None
                for k, r in m["constituents"].items():
                    cols[k], v = _per_constituent(path, r[0], _column(data, r), a)
                    if len({c.shape for c in cols.values()}) != 1 or (
                            v is not None and valid is not None and not np.array_equal(v, valid)):
                        fail(path, f"constituent arrays {[r[0] for r in m['constituents'].values()]} differ in "
                                   f"length per jet (rows {a}..)")
                    valid = v if valid is None else valid
                if "px" in cols:
                    p4 = (cols["px"], cols["py"], cols["pz"], cols["energy"])
                else:
                    eta = cols["eta"] if "eta" in cols else cols["deta"] + chunk.jet[:, 1:2]
                    phi = cols["phi"] if "phi" in cols else wrap_phi(cols["dphi"] + chunk.jet[:, 2:3])
                    p4 = p4_from_pt_eta_phi(cols["pt"], eta, phi, cols.get("energy"), cols.get("mass"))
                    p4 = tuple(np.where(cols["pt"] > 0, c, 0.0) for c in p4)
                chunk.p4 = p4
                chunk.valid = np.ones(p4[0].shape, bool) if valid is None else valid
            if m["features"] is not None:
                if len(m["features"]) == 1:
                    feats = _numpy(_column(data, m["features"][0]))
                    if feats.ndim != 2 or feats.shape[1] != N_FEATURES:
                        fail(path, f"'{m['features'][0][0]}' has shape {feats.shape}, expected (N, {N_FEATURES})")
                    chunk.features = check_finite(path, m["features"][0][0], feats, a, m["feature_names"])
                else:
                    chunk.features = np.stack([_per_jet(path, r[0], _column(data, r), a) for r in m["features"]], 1)
            if m["weights"] is not None:
                chunk.weights = _per_jet(path, m["weights"][0], _column(data, m["weights"]), a)
            if m["split"] is not None:
                chunk.split = labels_from_index(path, m["split"][0], _numpy(_column(data, m["split"])),
                                                ("train", "val", "test"), a)
            yield chunk

    feature_names = m.get("feature_names")
    return Source(path, NAME, m["classes"], feature_names, chunks)
