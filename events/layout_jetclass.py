"""JetClass (Qu et al., arXiv 2202.03772; Zenodo 6619768) ROOT files, read with uproot in entry chunks.

Layout in ../shared/data-layouts.md section 3: TTree `tree`; jagged `part_px, part_py, part_pz, part_energy`;
jet `jet_pt, jet_eta, jet_phi, jet_energy`; ten one-hot `label_*` branches of mixed dtypes (float, bool, int32)
whose order is the weaver class index. The constituents' deta/dphi are recomputed from their momenta
(the file's part_deta is sign-flipped by sign(jet_eta)); the 16 features are computed. The folder
(train_100M, val_5M, test_20M) gives the split.
"""

from __future__ import annotations

import pathlib

import awkward as ak
import numpy as np
import uproot

from l1forge.events.layout_base import (Chunk, Source, check_finite, check_kind, jet_mass_from_energy,
                                         labels_from_one_hot, pad_jagged)
from l1forge.events.schema import fail

NAME = "jetclass"
TREE = "tree"
LABEL_BRANCHES = ("label_QCD", "label_Hbb", "label_Hcc", "label_Hgg", "label_H4q", "label_Hqql", "label_Zqq",
                  "label_Wqq", "label_Tbqq", "label_Tbl")
CLASSES = tuple(b.removeprefix("label_") for b in LABEL_BRANCHES)
P4_BRANCHES = ("part_px", "part_py", "part_pz", "part_energy")
JET_BRANCHES = ("jet_pt", "jet_eta", "jet_phi", "jet_energy")


def recognise(path: pathlib.Path) -> bool:
    return path.suffix.lower() == ".root"


def open_tree(path: pathlib.Path, name: str | None):
    """The TTree (or RNTuple) `name`, default the file's only one; DataError naming the file otherwise."""
    try:
        file = uproot.open(path)
    except Exception as exc:  # uproot raises many kinds on a file that is not ROOT
        fail(path, f"not a readable ROOT file ({' '.join(str(exc).split())})")
    trees = [k.split(";")[0] for k, c in file.classnames().items() if c.startswith(("TTree", "ROOT::RNTuple"))]
    if name is None and len(trees) == 1:
        name = trees[0]
    if name not in trees:
        fail(path, f"tree '{name}' is missing (trees: {sorted(set(trees))})" if name else
             f"no single TTree to read (trees: {sorted(set(trees))}); name one")
    return file[name]


def read_branches(tree, branches, size):
    """(start, {branch: awkward array}) chunks of `size` entries."""
    start = 0
    for arrays in tree.iterate(list(branches), step_size=size, library="ak"):
        yield start, arrays
        start += len(arrays)


def flat_branch(path, name, values, start):
    """1-D numpy array of a scalar branch; DataError if jagged or not numeric."""
    if values.ndim != 1:
        fail(path, f"branch '{name}' has {values.ndim} dimensions, expected one number per jet")
    arr = ak.to_numpy(values)
    check_kind(path, name, arr.dtype, "fiub")
    return check_finite(path, name, arr, start)


def open_source(path: pathlib.Path, **_) -> Source:
    tree = open_tree(path, TREE)
    branches = (*P4_BRANCHES, *JET_BRANCHES, *LABEL_BRANCHES)
    for name in branches:
        if name not in tree.keys():
            fail(path, f"branch '{name}' of tree '{TREE}' is missing (JetClass layout)")

    def chunks(size):
        for a, arrays in read_branches(open_tree(path, TREE), branches, size):
            padded = [pad_jagged(path, name, arrays[name], a) for name in P4_BRANCHES]
            if any(v.shape != padded[0][1].shape or (v != padded[0][1]).any() for _, v in padded):
                fail(path, f"branches {', '.join(P4_BRANCHES)} differ in length per jet (entries {a}..)")
            pt, eta, phi, energy = (flat_branch(path, name, arrays[name], a).astype(np.float64)
                                    for name in JET_BRANCHES)
            one_hot = np.stack([flat_branch(path, b, arrays[b], a).astype(np.float32) for b in LABEL_BRANCHES], 1)
            yield Chunk(start=a, labels=labels_from_one_hot(path, "label_*", one_hot, a),
                        p4=tuple(p for p, _ in padded), valid=padded[0][1],
                        jet=np.stack([pt, eta, phi, jet_mass_from_energy(pt, eta, energy)], axis=1))

    return Source(path, NAME, list(CLASSES), None, chunks)
