"""Training and inference throughput of the tagging teachers, per kind and size: jets per second.

    python benchmarks/teacher_throughput.py --data runs/demo/data/jets.h5 --json throughput.json \
        [--kinds gnn,transformer] [--sizes demo,medium] [--device cpu] [--batch-size 128] [--steps 40] [--contend]

Each (kind, size) trains through the public `train_teacher` (`--epochs` epochs of `--steps` optimiser steps of
`--batch-size` real jets, with the 16 jet features, as the flow does) and reports the fastest epoch's jets per
second (the time inside the training loop: data path, forward, backward, optimiser; the fastest epoch is the one
least disturbed by other users of a shared machine); inference is the fastest of `--epochs` `predict_logits` calls
on `--infer-jets` jets of the same file. `--contend` runs a CPU-bound process (`python -c 'while True: pass'`) beside the measurement,
as another user of a shared machine would. `--teachers-dir DIR` measures another checkout's teachers/ (e.g. the code
before a change, from `git worktree add /tmp/before <commit>`) with the same data and settings.

The JSON file is a list of {"kind", "size", "device", "params", "train_jets_per_s", "infer_jets_per_s"} (plus
"train_jets_per_s_epochs", "threads", "contended", "batch_size", "load_average").

Measured here (Intel Xeon, 2 quiet cores, load average 1.2-1.6; real Pythia jets of the demo preset, median 64
constituents; batch 128; `--steps 30 --epochs 2`). "before" is commit 7650d57 (torch's default spinning OpenMP
threads, GNN k = 12, transformer dim 32), run on the same machine and data with `--teachers-dir`; "after" is this
code (2 passive threads, glibc keeping freed memory, GNN k = 8, transformer dim 48, inference = mean of the four
(deta, dphi) reflections):

    kind         size    params before/after   train before  after   infer before  after
    gnn          demo    31557 / 31557         1023          1422    1194          621
    transformer  demo    29655 / 73543         818           918     973           399
    gnn          medium  - / 87013             -             561     -             172
    transformer  medium  - / 196315            -             444     -             152
    with --contend (one more CPU-bound process):
    gnn          demo                          137           894     567           401
    transformer  demo                          109           618     584           278

On the 2-core AMD EPYC of earlier sessions the same steps ran about 2.5x slower (quiet, after: GNN 476,
transformer dim 32 583 train jets/s). On another 2-core AMD EPYC (2026-12-01, load average 1.9), before / after:
GNN train 1091 / 1806 (1.66x), infer 1322 / 860; transformer train 991 / 1229 (1.24x, with 2.5x the parameters),
infer 1449 / 873. With bfloat16 autocast in the training steps (that CPU has avx512_bf16; teachers/train.py
``cpu_bfloat16``): GNN 2834 (2.6x before), transformer 1453 (1.47x); with --contend 2063 and 1265.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import types

import numpy as np


def _load_teachers(directory: pathlib.Path | None):
    """The l1forge.teachers package: the installed one, or the one in `directory` (another checkout)."""
    if directory is not None:
        directory = pathlib.Path(directory).resolve()
        spec = importlib.util.spec_from_file_location("l1forge.teachers", directory / "__init__.py",
                                                      submodule_search_locations=[str(directory)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["l1forge.teachers"] = module
        spec.loader.exec_module(module)
    from l1forge.teachers import models, train

    return models, train


def _subset(jets, split: int, n: int) -> np.ndarray:
    idx = np.flatnonzero(jets.split == split)
    if len(idx) < n:
        idx = np.resize(idx, n)  # reuse jets when the file is small: throughput does not depend on which
    return idx[:n]


def measure(kind: str, size: str, jets, device: str, batch_size: int, steps: int, epochs: int, infer_jets: int,
            teachers, cpu_clock: bool = False) -> dict:
    models, train = teachers
    train_idx, val_idx = _subset(jets, 0, steps * batch_size), _subset(jets, 1, 256)
    idx = np.concatenate([train_idx, val_idx])
    split = np.r_[np.zeros(len(train_idx), np.int8), np.ones(len(val_idx), np.int8)]
    extra = {"device": device} if "device" in inspect.signature(train.train_teacher).parameters else {}
    clock = train.time
    if cpu_clock:  # the training loop's clock becomes this process's CPU time: jets per CPU-second
        train.time = types.SimpleNamespace(time=time.process_time)
    try:
        with tempfile.TemporaryDirectory() as out:
            result = train.train_teacher(kind, jets.constituents[idx], jets.n_constituents[idx], jets.labels[idx],
                                         split, pathlib.Path(out), size=size, epochs=epochs, batch_size=batch_size,
                                         lr=1e-3, seed=0, progress=False, jet_features=jets.features[idx], **extra)
            model = train.load_teacher(pathlib.Path(out))
    finally:
        train.time = clock
    if cpu_clock:
        import torch

        rates = [h["jets_per_s"] for h in result["history"]]
        return {"kind": kind, "size": size, "device": result.get("device", "cpu"), "params": result["params"],
                "train_jets_per_cpu_s": round(max(rates), 1), "threads": torch.get_num_threads(),
                "batch_size": batch_size, "load_average": round(os.getloadavg()[0], 2),
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    infer = _subset(jets, 2, infer_jets)
    extra = {"device": device} if "device" in inspect.signature(train.predict_logits).parameters else {}
    args = (model, jets.constituents[infer[:256]], jets.n_constituents[infer[:256]], jets.features[infer[:256]])
    train.predict_logits(*args, **extra)  # warm-up
    infer_s = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        train.predict_logits(model, jets.constituents[infer], jets.n_constituents[infer], jets.features[infer], **extra)
        infer_s.append(time.perf_counter() - t0)
    import torch

    rates = [h["jets_per_s"] for h in result["history"]]
    return {"kind": kind, "size": size, "device": result.get("device", "cpu"), "params": result["params"],
            "train_jets_per_s": round(max(rates), 1), "infer_jets_per_s": round(len(infer) / min(infer_s), 1),
            "train_jets_per_s_epochs": [round(r, 1) for r in rates], "threads": torch.get_num_threads(),
            "batch_size": batch_size, "load_average": round(os.getloadavg()[0], 2),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=pathlib.Path, default=pathlib.Path("runs/demo/data/jets.h5"))
    p.add_argument("--json", type=pathlib.Path, required=True)
    p.add_argument("--kinds", default="gnn,transformer")
    p.add_argument("--sizes", default="demo,medium")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=15, help="optimiser steps per epoch")
    p.add_argument("--epochs", type=int, default=3, help="epochs (and inference repeats); the fastest counts")
    p.add_argument("--infer-jets", type=int, default=2048)
    p.add_argument("--contend", action="store_true", help="run a CPU-bound process beside the measurement")
    p.add_argument("--cpu-clock", action="store_true",
                   help="time the training loop with this process's CPU time (jets per CPU-second: what a step "
                        "costs, whatever else the machine runs); no inference timing")
    p.add_argument("--teachers-dir", type=pathlib.Path, default=None, help="measure another checkout's teachers/")
    args = p.parse_args(argv)

    from l1forge.events.schema import read_jets

    teachers = _load_teachers(args.teachers_dir)
    jets = read_jets(args.data)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.contend else None
    rows = []
    try:
        for kind in args.kinds.split(","):
            for size in args.sizes.split(","):
                if size not in teachers[0].SIZES[kind]:
                    print(f"{kind}/{size}: no such size in this checkout, skipped", file=sys.stderr)
                    continue
                row = measure(kind, size, jets, args.device, args.batch_size, args.steps, args.epochs, args.infer_jets,
                              teachers, args.cpu_clock)
                row["contended"] = bool(args.contend)
                rows.append(row)
                print(json.dumps(row), flush=True)
                args.json.write_text(json.dumps(rows, indent=1))
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    return rows


if __name__ == "__main__":
    main()
