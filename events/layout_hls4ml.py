"""hls4ml LHC jet dataset, HDF5 files (Zenodo 3602260): `jetConstituentList`, `jets`, `jetFeatureNames`.

Layout in ../shared/data-layouts.md section 1a. `jetConstituentList` (N, P, 16), P = 30/50/100/150, zero-padded;
axis 2 starts j1_px, j1_py, j1_pz, j1_e (by position: `particleFeatureNames` may list j1_pdgid, which has no column).
`jets` (N, 59) with its column names in `jetFeatureNames`: the 16 classic inputs, j_pt/j_eta/j_mass and the
one-hot labels j_g, j_q, j_w, j_z, j_t are taken by name.
"""

from __future__ import annotations

import pathlib

import h5py
import numpy as np

from l1forge.events.layout_base import Chunk, Source, check_finite, check_kind, labels_from_one_hot
from l1forge.events.schema import fail, open_h5
from l1forge.events.substructure import wrap_phi

NAME = "hls4ml"
CLASSES = ("g", "q", "w", "z", "t")                      # one-hot column order of `jets`, = the flow's classes
LABEL_COLUMNS = tuple(f"j_{c}" for c in CLASSES)
# The 16 inputs of the 16-64-32-32-5 benchmark, in the OpenML table's order and names (HDF5: "j_" + name).
HLF_NAMES = ("zlogz", "c1_b0_mmdt", "c1_b1_mmdt", "c1_b2_mmdt", "c2_b1_mmdt", "c2_b2_mmdt", "d2_b1_mmdt",
             "d2_b2_mmdt", "d2_a1_b1_mmdt", "d2_a1_b2_mmdt", "m2_b1_mmdt", "m2_b2_mmdt", "n2_b1_mmdt", "n2_b2_mmdt",
             "mass_mmdt", "multiplicity")
JET_COLUMNS = ("j_pt", "j_eta", "j_mass")
CONSTITUENTS, JETS, NAMES = "jetConstituentList", "jets", "jetFeatureNames"
N_PARTICLE_FEATURES = 16                                  # j1_px, j1_py, j1_pz, j1_e, j1_erel, j1_pt, ...


def recognise(path: pathlib.Path) -> bool:
    if not h5py.is_hdf5(path):
        return False
    with h5py.File(path, "r") as f:
        return CONSTITUENTS in f or NAMES in f


def _dataset(f, path, key, ndim):
    if key not in f or not isinstance(f[key], h5py.Dataset):
        fail(path, f"dataset '{key}' is missing (hls4ml layout)")
    ds = f[key]
    if ds.ndim != ndim:
        fail(path, f"dataset '{key}' has shape {ds.shape}, expected {ndim} dimensions")
    return ds


def open_source(path: pathlib.Path, **_) -> Source:
    with open_h5(path) as f:
        const, jets, names = _dataset(f, path, CONSTITUENTS, 3), _dataset(f, path, JETS, 2), _dataset(f, path, NAMES, 1)
        if const.shape[2] != N_PARTICLE_FEATURES:
            fail(path, f"dataset '{CONSTITUENTS}' has shape {const.shape}, expected (N, P, {N_PARTICLE_FEATURES})")
        if jets.shape[0] != const.shape[0]:
            fail(path, f"dataset '{JETS}' has {jets.shape[0]} rows, expected N = {const.shape[0]} "
                       f"like '{CONSTITUENTS}'")
        for ds in (const, jets):
            check_kind(path, ds.name.lstrip("/"), ds.dtype, "f", "floating point")
        columns = [v.decode() if isinstance(v, bytes) else str(v) for v in names[()]]
        if len(columns) != jets.shape[1]:
            fail(path, f"dataset '{NAMES}' has {len(columns)} names for the {jets.shape[1]} columns of '{JETS}'")
        index = {}
        for name in (*(f"j_{n}" for n in HLF_NAMES), *JET_COLUMNS, *LABEL_COLUMNS):
            if name not in columns:
                fail(path, f"dataset '{NAMES}' lacks column '{name}'")
            index[name] = columns.index(name)
        n_jets = const.shape[0]
    hlf = [index[f"j_{n}"] for n in HLF_NAMES]
    jet_cols, label_cols = [index[c] for c in JET_COLUMNS], [index[c] for c in LABEL_COLUMNS]

    def chunks(size):
        with h5py.File(path, "r") as f:
            for a in range(0, n_jets, size):
                c = check_finite(path, CONSTITUENTS, f[CONSTITUENTS][a:a + size, :, :4], a)
                j = f[JETS][a:a + size]
                labels = labels_from_one_hot(path, f"{JETS}[j_g..j_t]", j[:, label_cols], a)
                features = check_finite(path, JETS, j[:, hlf], a, [f"j_{n}" for n in HLF_NAMES])
                pt, eta, mass = check_finite(path, JETS, j[:, jet_cols], a, JET_COLUMNS).T
                px, py, pz, e = np.moveaxis(c, 2, 0)
                phi = wrap_phi(np.arctan2(py.sum(axis=1, dtype=np.float64), px.sum(axis=1, dtype=np.float64)))
                yield Chunk(start=a, labels=labels, p4=(px, py, pz, e), valid=(px != 0) | (py != 0),
                            jet=np.stack([pt, eta, phi, mass], axis=1), features=features)

    return Source(path, NAME, list(CLASSES), list(HLF_NAMES), chunks)
