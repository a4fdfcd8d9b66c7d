"""Bit-for-bit comparison of the emulator with the hls4ml C-simulation of the same firmware."""

from __future__ import annotations

import time

import numpy as np

from l1forge.emulation.emulator import Emulator


def heads(outputs) -> list:
    """The outputs of a model as a list of arrays, one per output head (a single array is one head)."""
    return [np.asarray(o) for o in outputs] if isinstance(outputs, (list, tuple)) else [np.asarray(outputs)]


def compare_with_csim(emulator: Emulator, csim_predict, x: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray]:
    """Run both on ``x`` (float64), time them, and count events whose outputs differ in any bit.

    ``csim_predict`` is the compiled C-simulation's ``predict`` (hls4ml returns the ap_fixed outputs as doubles,
    exact for widths up to 53 bits), so equality of doubles is equality of bits. With several outputs both return
    one array per head; an event counts once however many heads or values differ. Returns (stats, emulator
    outputs, C-sim outputs), the outputs as ``emulator.predict`` gives them (an array, or a list per head).
    Raises ValueError when the C-sim returns another number of heads than the emulator. Several model inputs: ``x``
    is a list of arrays, one per input (hls4ml's ``predict`` takes the same list).
    """
    several = isinstance(x, (list, tuple))
    x = [np.ascontiguousarray(v, dtype=np.float64) for v in x] if several else np.ascontiguousarray(x, dtype=np.float64)
    n = len(x[0]) if several else len(x)
    start = time.perf_counter()
    emu = emulator.predict(x)
    t_emu = time.perf_counter() - start
    start = time.perf_counter()
    csim_raw = csim_predict(x)
    t_csim = time.perf_counter() - start
    emu_heads, csim_heads = heads(emu), heads(csim_raw)
    if len(emu_heads) != len(csim_heads):
        raise ValueError(f"the C-sim returns {len(csim_heads)} outputs, the emulator {len(emu_heads)}")
    csim_heads = [np.asarray(c, dtype=np.float64).reshape(e.shape) for e, c in zip(emu_heads, csim_heads)]
    differs = np.zeros(n, dtype=bool)
    first_head = {}
    for name, e, c in zip(emulator.output_names, emu_heads, csim_heads):
        d = np.any(e != c, axis=tuple(range(1, e.ndim)))
        for i in np.flatnonzero(d & ~differs)[:1]:
            first_head[int(i)] = name
        differs |= d
    bad = np.flatnonzero(differs)
    stats = {
        "events_checked": int(n),
        "mismatches": int(len(bad)),
        "emulator_events_per_s": n / t_emu,
        "csim_events_per_s": n / t_csim,
        "first_mismatch": None if len(bad) == 0 else {"event": int(bad[0]), "output": first_head.get(int(bad[0]))},
    }
    csim = csim_heads if isinstance(emu, list) else csim_heads[0]
    return stats, emu, csim


def first_differing_layer(emulator: Emulator, trace: dict, x_event: np.ndarray) -> dict | None:
    """Compare one event layer by layer with an hls4ml ``trace`` ({layer name: outputs}) of the same event.

    Returns {"layer", "index", "emulator", "csim"} for the first layer (in execution order) that differs.
    ``x_event``: one event's input, or a list of them (several model inputs).
    """
    one = [np.asarray(v, dtype=np.float64)[None] for v in x_event] if isinstance(x_event, (list, tuple)) else \
        np.asarray(x_event, dtype=np.float64)[None]
    _, values = emulator.run(one, keep_layers=True)
    for layer in emulator.layers:
        if layer.name not in trace:
            continue
        ours = layer.result.to_float(values[layer.name][0]).ravel()
        theirs = np.asarray(trace[layer.name], dtype=np.float64).reshape(-1)[: ours.size]
        diff = np.flatnonzero(ours != theirs)
        if diff.size:
            i = int(diff[0])
            return {"layer": layer.name, "index": i, "emulator": float(ours[i]), "csim": float(theirs[i])}
    return None
