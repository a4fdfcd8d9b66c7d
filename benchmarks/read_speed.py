"""Constituents per second per core read from HDF5 into the flow's jet sample (events/external.py).

    python benchmarks/read_speed.py [--jets 200000] [--dir DIR] [--json FILE]

Writes synthetic files in two published layouts (../shared/data-layouts.md) into DIR (a temporary folder by
default) and times `read_external` on one core (BLAS/OpenMP threads limited to 1; CPU time, so a shared machine
does not skew it):
- hls4ml: `jetImage_<i>_150p_*.h5` files of 10,000 jets, jetConstituentList (N, 150, 16) float32, jets (N, 59);
  the 16 features come from the file;
- top tagging: `train.h5`, pandas frame under `table` with E/PX/PY/PZ_0..199 float64 and is_signal_new; the file
  has no features, so they are computed (events/substructure.py), timed separately.
Constituents counted are the real (non-padding) ones, about 50 per jet as in the real datasets; "slots" counts
padding too. Goal: >= 1M constituents/s/core.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

MEAN_MULTIPLICITY = 50


def _constituents(rng, n, width):
    """Zero-padded pT-ordered px, py, pz, E (n, width) of ~50 constituents per jet, and the counts."""
    counts = np.clip(rng.normal(MEAN_MULTIPLICITY, 15, n).astype(int), 5, width)
    valid = np.arange(width) < counts[:, None]
    pt = np.where(valid, -np.sort(-rng.exponential(20.0, (n, width))), 0.0) + 0.0
    eta = rng.uniform(-2, 2, (n, 1)) + rng.normal(0, 0.2, (n, width))
    phi = rng.uniform(-np.pi, np.pi, (n, 1)) + rng.normal(0, 0.2, (n, width))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return counts, (px, py, pz, np.where(valid, np.sqrt(px**2 + py**2 + pz**2), 0.0))


def write_hls4ml(folder: pathlib.Path, n_jets: int, rng) -> list[pathlib.Path]:
    from l1forge.events.layout_hls4ml import HLF_NAMES, LABEL_COLUMNS
    names = [f"c{k}" for k in range(59)]
    for k, name in zip([12, *range(34, 47), 48, 52], HLF_NAMES):
        names[k] = f"j_{name}"
    names[1:4], names[53:58] = ["j_pt", "j_eta", "j_mass"], LABEL_COLUMNS
    paths = []
    for i, start in enumerate(range(0, n_jets, 10_000)):
        n = min(10_000, n_jets - start)
        counts, p4 = _constituents(rng, n, 150)
        lists = np.zeros((n, 150, 16), np.float32)
        lists[:, :, :4] = np.stack(p4, axis=2)
        jets = rng.uniform(0, 1, (n, 59)).astype(np.float32)
        jets[:, 53:58] = np.eye(5)[rng.integers(0, 5, n)]
        path = folder / f"jetImage_{i}_150p_{start}_{start + n}.h5"
        with h5py.File(path, "w") as f:
            f["jetConstituentList"], f["jets"] = lists, jets
            f["jetFeatureNames"] = np.array([c.encode() for c in names])
        paths.append(path)
    return paths


def write_toptagging(folder: pathlib.Path, n_jets: int, rng) -> list[pathlib.Path]:
    counts, p4 = _constituents(rng, n_jets, 200)
    columns = {f"{c}_{i}": p4[k][:, i] for i in range(200) for k, c in ((3, "E"), (0, "PX"), (1, "PY"), (2, "PZ"))}
    columns["is_signal_new"] = rng.integers(0, 2, n_jets)
    path = folder / "train.h5"
    pd.DataFrame(columns).to_hdf(path, key="table", mode="w")
    return [path]


def measure(paths, **options) -> dict:
    """CPU seconds of read_external, and of the feature computation within it."""
    from l1forge.events import external
    spent = {"features": 0.0}
    compute = external._features

    def timed(*args):
        start = time.process_time()
        try:
            return compute(*args)
        finally:
            spent["features"] += time.process_time() - start

    external._features = timed
    try:
        with threadpool_limits(1):
            wall, cpu = time.perf_counter(), time.process_time()
            result = external.read_external(paths, **options)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        external._features = compute
    arrays = result["arrays"]
    return {"jets": len(arrays["labels"]), "cpu_s": cpu, "wall_s": wall, "features_cpu_s": spent["features"],
            "result": result}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jets", type=int, default=200_000, help="jets of the hls4ml files (top tagging: a tenth)")
    parser.add_argument("--dir", type=pathlib.Path, default=None, help="folder for the synthetic files")
    parser.add_argument("--json", type=pathlib.Path, default=None)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or pathlib.Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        rows = {}
        for name, writer, n_jets in (("hls4ml", write_hls4ml, args.jets), ("toptagging", write_toptagging,
                                                                             max(args.jets // 10, 1000))):
            (folder / name).mkdir(exist_ok=True)
            paths = writer(folder / name, n_jets, rng)
            measure(paths[:1])  # warm: imports, page cache
            m = measure(paths)
            n_const = int(m["result"]["arrays"]["n_constituents"].sum())  # <= 64 kept of each jet
            slots = 150 if name == "hls4ml" else 200
            total = sum(int(np.count_nonzero(_real(name, p))) for p in paths)
            read_cpu = m["cpu_s"] - m["features_cpu_s"]
            rows[name] = {
                "jets": m["jets"], "constituents": total, "kept_constituents": n_const,
                "cpu_s": round(m["cpu_s"], 3), "features_cpu_s": round(m["features_cpu_s"], 3),
                "constituents_per_s_per_core": round(total / m["cpu_s"]),
                "constituents_per_s_per_core_without_features": round(total / read_cpu),
                "slots_per_s_per_core_without_features": round(m["jets"] * slots / read_cpu),
                "jets_per_s_per_core": round(m["jets"] / m["cpu_s"]),
                "files_mb": round(sum(p.stat().st_size for p in paths) / 1e6, 1),
            }
            print(f"{name:11s} {m['jets']:8d} jets {total:10d} constituents: "
                  f"{total / m['cpu_s'] / 1e6:6.2f} M constituents/s/core in all, "
                  f"{total / read_cpu / 1e6:6.2f} M/s/core reading (features {m['features_cpu_s']:.1f} of "
                  f"{m['cpu_s']:.1f} CPU s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return rows


def _real(layout, path):
    """Non-padding constituents of a file (energies > 0)."""
    if layout == "hls4ml":
        with h5py.File(path, "r") as f:
            return f["jetConstituentList"][:, :, 3]
    return pd.read_hdf(path, "table").filter(regex=r"^E_\d+$").to_numpy()


if __name__ == "__main__":
    main()
