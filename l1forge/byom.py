"""Emulate any saved QKeras model a user brings (``l1forge emulate --model``), optionally checked against the C-sim."""

from __future__ import annotations

import pathlib
import tempfile
import time

import h5py
import numpy as np
import yaml

from l1forge.emulation.compare import compare_with_csim, first_differing_layer
from l1forge.emulation.emulator import Emulator
from l1forge.firmware.graph import write_graph
from l1forge.firmware.hls import FirmwareSettings, convert, quiet_call
from l1forge.core.artifacts import atomic_path, write_arrays_atomic, write_json_atomic
from l1forge.quantize.fixed import FixedType


class InputError(ValueError):
    """Unreadable or malformed user input; one line naming the file and key."""


def load_inputs(path, dataset: str | None = None) -> np.ndarray:
    """Float64 inputs from a .npy file or an HDF5 dataset (``dataset`` may be omitted if the file has one)."""
    path = pathlib.Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False).astype(np.float64)
        except (ValueError, OSError) as err:
            raise InputError(f"{path}: not a readable .npy array ({err})") from None
    try:
        with h5py.File(path, "r") as f:
            keys = [k for k in f if isinstance(f[k], h5py.Dataset)]
            key = dataset or (keys[0] if len(keys) == 1 else None)
            if key is None:
                raise InputError(f"{path}: name the dataset with --dataset (has: {', '.join(keys)})")
            if key not in f:
                raise InputError(f"{path}: dataset '{key}' is missing (has: {', '.join(keys)})")
            return f[key][()].astype(np.float64)
    except OSError:
        raise InputError(f"{path}: neither .npy nor a readable HDF5 file") from None


def load_hls_config(path) -> dict:
    path = pathlib.Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise InputError(f"{path}: cannot read hls4ml config ({err.__class__.__name__})") from None
    if not isinstance(config, dict) or not ({"Model", "LayerName", "LayerType"} & config.keys()):
        raise InputError(f"{path}: not an hls4ml config (needs a 'Model', 'LayerName' or 'LayerType' section)")
    return config


def emulate_model(
    model_path,
    data_path,
    dataset: str | None = None,
    hls_config_path=None,
    input_type: str | None = None,
    project_dir=None,
    check_csim: bool = False,
    output=None,
    json_path=None,
    settings: FirmwareSettings | None = None,
) -> dict:
    """Convert the model, emulate it on the inputs, optionally compare every event with the compiled C-sim."""
    from l1forge.students.model import load_qkeras_model

    x = load_inputs(data_path, dataset)
    try:
        model = load_qkeras_model(model_path)
    except (OSError, ValueError, ImportError) as err:
        raise InputError(f"{model_path}: cannot load a Keras/QKeras model ({str(err).splitlines()[0][:200]})") from None
    user_config = load_hls_config(hls_config_path) if hls_config_path else None
    settings = settings or FirmwareSettings()
    with tempfile.TemporaryDirectory(prefix="l1forge-emulate-") as scratch:
        project = pathlib.Path(project_dir) if project_dir else pathlib.Path(scratch) / "hls_project"
        in_type = FixedType.parse(input_type) if input_type else None
        hls_model = convert(model, in_type, settings, project, compile=check_csim, user_config=user_config)
        emulator = Emulator.from_file(write_graph(hls_model, project))
        if check_csim:
            stats, emu, _ = compare_with_csim(emulator, hls_model.predict, x)
            if stats["mismatches"]:
                event = stats["first_mismatch"]["event"]
                trace = quiet_call(hls_model.trace, x[event : event + 1])[1]
                where = first_differing_layer(emulator, {k: v[0] for k, v in trace.items()}, x[event])
                stats["first_mismatch"].update(where or {"layer": None})
        else:
            start = time.perf_counter()
            emu = emulator.predict(x)
            stats = {"events_checked": 0, "mismatches": None, "csim_events_per_s": None, "first_mismatch": None,
                     "emulator_events_per_s": len(x) / (time.perf_counter() - start)}
    stats["events"] = int(len(x))
    if output:
        _save(output, emu)
    if json_path:
        write_json_atomic(json_path, stats)
    return stats


def _save(path, outputs: np.ndarray):
    path = pathlib.Path(path)
    if path.suffix == ".npy":
        with atomic_path(path, ".npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, outputs)
    else:
        write_arrays_atomic(path, {"outputs": outputs})
