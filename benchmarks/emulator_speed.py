"""Emulator vs hls4ml C-sim vs QKeras, side by side on the same events, for the jet-tagger-sized student.

    python benchmarks/emulator_speed.py [--events 1000000] [--csim-events 50000] [--json FILE] [--run DIR]

The student is the flow's 16-64-32-32-5 network with 6-bit weights and activations: with ``--run DIR`` the trained
student of that run directory (its firmware graph, compiled HLS project and QKeras model), otherwise one with
random weights and biases. The emulator's outputs are checked bit for bit against the C-sim on the events the
C-sim runs; the benchmark fails if any differs.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def _rate(fn, x, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - start)
    return len(x) / best


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--csim-events", type=int, default=50_000)
    parser.add_argument("--hidden", default="64,32,32")
    parser.add_argument("--json", type=pathlib.Path)
    parser.add_argument("--run", type=pathlib.Path, help="a run directory whose trained student to measure")
    args = parser.parse_args(argv)

    from l1forge.emulation.compare import compare_with_csim
    from l1forge.emulation.emulator import Emulator
    from l1forge.firmware.describe import write_graph
    from l1forge.firmware.hls import FirmwareSettings, convert
    from l1forge.quantize.precision import Precision
    from l1forge.students.model import build_student

    rng = np.random.default_rng(0)
    x = rng.normal(scale=2.0, size=(args.events, 16))
    with tempfile.TemporaryDirectory() as tmp:
        if args.run:
            import hls4ml

            from l1forge.firmware.hls import quiet_call
            from l1forge.students.model import load_qkeras_model

            model = load_qkeras_model(args.run / "students" / "student" / "model.h5")
            hls_model = hls4ml.converters.link_existing_project(str(args.run / "firmware" / "hls_project"))
            quiet_call(hls_model.compile)
            emulator = Emulator.from_file(args.run / "firmware" / "graph.json")
        else:
            model = build_student(16, 5, tuple(int(h) for h in args.hidden.split(",")))
            model.set_weights([rng.normal(scale=0.5, size=w.shape) for w in model.get_weights()])
            hls_model = convert(model, Precision().input, FirmwareSettings(), pathlib.Path(tmp) / "hls")
            emulator = Emulator.from_file(write_graph(hls_model, pathlib.Path(tmp) / "hls"))
        check, _, _ = compare_with_csim(emulator, hls_model.predict, x[: args.csim_events])
    if check["mismatches"]:
        raise SystemExit(f"emulator differs from the C-sim on {check['mismatches']} events: {check['first_mismatch']}")
    result = {
        "events": args.events,
        "csim_events": args.csim_events,
        "emulator_events_per_s": _rate(emulator.predict, x, repeat=3),
        "csim_events_per_s": check["csim_events_per_s"],
        "qkeras_events_per_s": _rate(lambda v: model.predict(v, batch_size=8192, verbose=0), x),
        "mismatches": check["mismatches"],
        "model": str(args.run / "students" / "student" / "model.h5") if args.run else "random weights",
        "cores": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
