"""Any saved QKeras/Keras model a user brings: one front (``UserModel``) for ``emulate``, ``synthesize`` and ``rtl``
with ``--model``, and the emulation of it, optionally checked against the C-sim."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import tempfile
import time

import h5py
import numpy as np
import yaml

from l1forge.core.artifacts import atomic_path, write_arrays_atomic, write_json_atomic
from l1forge.emulation.compare import compare_with_csim, first_differing_layer, heads
from l1forge.emulation.emulator import Emulator
from l1forge.emulation.fidelity import fidelity
from l1forge.firmware.describe import write_graph
from l1forge.firmware.hls import (FirmwareSettings, compile_project, convert, has_input_quantizer, quiet_call,
                                  resolve_input_type, traced_config)
from l1forge.quantize.fixed import FixedType, FixedTypeError


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


def load_model_inputs(path, model, dataset: str | None = None):
    """The inputs of ``model`` from ``path``: one array for one model input (``load_inputs``); for several, a list
    in the model's input order, read from the datasets (HDF5) or arrays (.npz) named after the inputs, or named by
    ``dataset`` as a comma-separated list in input order."""
    from l1forge.quantize.precision import input_names

    names = input_names(model)
    if len(names) == 1:
        return load_inputs(path, dataset)
    keys = dataset.split(",") if dataset else names
    if len(keys) != len(names):
        raise InputError(f"--dataset names {len(keys)} datasets, the model has {len(names)} inputs ({', '.join(names)})")
    path = pathlib.Path(path)
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                missing = [k for k in keys if k not in f]
                if missing:
                    raise InputError(f"{path}: no array '{missing[0]}' for the model input (has: {', '.join(f)})")
                return [f[k].astype(np.float64) for k in keys]
        except (ValueError, OSError) as err:
            raise InputError(f"{path}: not a readable .npz file ({err})") from None
    return [load_inputs(path, k) for k in keys]


def load_hls_config(path) -> dict:
    path = pathlib.Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise InputError(f"{path}: cannot read hls4ml config ({err.__class__.__name__})") from None
    if not isinstance(config, dict) or not ({"Model", "LayerName", "LayerType"} & config.keys()):
        raise InputError(f"{path}: not an hls4ml config (needs a 'Model', 'LayerName' or 'LayerType' section)")
    return config


def load_model(path):
    """The Keras/QKeras model saved at ``path`` (.h5 or SavedModel); InputError in one line when it is not one."""
    from l1forge.students.model import load_qkeras_model

    path = pathlib.Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    try:
        return load_qkeras_model(path)
    except Exception as err:  # noqa: BLE001 - Keras raises many kinds for a file that is not a model
        first = (str(err).strip().splitlines() or [err.__class__.__name__])[0][:200]
        raise InputError(f"{path}: not a Keras/QKeras model ({first})") from None


@dataclasses.dataclass
class UserModel:
    """What the three ``--model`` commands take, read and checked once: the Keras model, the user's hls4ml config
    (or None: l1forge's bit-exact name configuration), the input type asked for (``--input-type``, or None) and,
    where l1forge supplies its default input type, the note that says so (``firmware.hls.resolve_input_type``)."""

    path: pathlib.Path
    model: object
    user_config: dict | None
    input_type: FixedType | None
    input_note: str | None

    @classmethod
    def load(cls, model_path, hls_config_path=None, input_type: str | None = None) -> "UserModel":
        """InputError (one line naming the file or option) for a file that is not a model or config, or a bad type."""
        model = load_model(model_path)
        user_config = load_hls_config(hls_config_path) if hls_config_path else None
        try:
            in_type = FixedType.parse(input_type) if input_type else None
        except FixedTypeError as err:
            raise InputError(f"--input-type: {err}") from None
        return cls(pathlib.Path(model_path), model, user_config, in_type,
                   resolve_input_type(model, in_type, user_config)[1])

    def convert(self, settings: FirmwareSettings, project_dir, compile: bool = True, write: bool = True):
        """The hls4ml model (its firmware graph described once, ``.l1forge_graph``)."""
        return convert(self.model, self.input_type, settings, project_dir, compile=compile,
                       user_config=self.user_config, write=write)

    def build(self, settings: FirmwareSettings, out_dir, vendor: bool = False) -> dict:
        """``firmware.build.build_firmware`` of the model into ``out_dir``: the summary.json firmware block."""
        from l1forge.firmware.build import build_firmware

        return build_firmware(self.model, self.input_type, settings, out_dir, user_config=self.user_config,
                              vendor=vendor)


def check_inputs(model, x):
    """InputError when ``x`` (n, ...; a list of them for several model inputs) does not have the model's input
    shapes per event, or the inputs hold different numbers of events."""
    xs = x if isinstance(x, (list, tuple)) else [x]
    for tensor, v in zip(model.inputs, xs):
        expected = tuple(int(d) if d is not None else -1 for d in tensor.shape[1:])
        got = tuple(v.shape[1:])
        if len(got) != len(expected) or any(e not in (-1, g) for e, g in zip(expected, got)):
            raise InputError(f"inputs have shape {got} per event, the model takes {expected}")
    if len({len(v) for v in xs}) > 1:
        raise InputError(f"the model inputs hold different numbers of events: {[len(v) for v in xs]}")


def check_finite(x: np.ndarray, input_type: FixedType):
    """InputError saying what the firmware would see when ``x`` holds NaN or Inf."""
    bad = ~np.isfinite(x)
    if not bad.any():
        return
    event = int(np.argwhere(bad)[0][0])
    t = input_type
    if t.overflow == "WRAP":
        seen = "0"
    else:
        seen = f"+Inf and NaN as {t.max_value:g}, -Inf and -NaN as {t.min_value:g}"
    raise InputError(
        f"inputs hold {int(bad.sum())} NaN/Inf values (first in event {event}): the firmware's input type {t.hls()} "
        f"would see {seen}; replace them before emulating"
    )


def keras_shaped(model, outputs) -> list:
    """Emulator outputs (one array or a list per head) reshaped to the Keras output shapes: a list, one per head."""
    out = heads(outputs)
    shapes = [tuple(int(d) for d in t.shape[1:]) for t in model.outputs]
    if len(shapes) != len(out):
        raise InputError(f"the firmware has {len(out)} outputs, the Keras model {len(shapes)}")
    return [o.reshape((len(o), *shape)) for o, shape in zip(out, shapes)]


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
    fidelity_check: bool = True,
) -> dict:
    """Convert the model, emulate it on the inputs, optionally compare every event with the compiled C-sim, and
    compare the firmware with the Keras model itself (the ``fidelity`` block of emulation/fidelity.py).

    Inputs: ``data_path`` (.npy or HDF5, one array (n, *model input shape); several model inputs: HDF5 datasets or
    .npz arrays named after the inputs, or by ``dataset`` as a comma-separated list, ``load_model_inputs``). The
    input type is ``input_type``, or what the model's input quantizer or the user config (``hls_config_path``) gives, or the l1forge default
    (``stats["input_type_note"]`` says so). Outputs (``output``): .npy for one output head, .h5 with one dataset
    per head (named by the firmware's output layers; one head is ``outputs``), each (n, *Keras output shape).

    Returns the stats (also written to ``json_path``): events, events_checked, mismatches (events whose outputs
    differ from the C-sim in any bit), first_mismatch (event, output, first differing layer), speeds,
    input_type, outputs, and the fidelity keys (keras_mismatches, keras_max_abs_diff, argmax_flips,
    first_keras_divergence). Bad input (shape, NaN/Inf, not a model, unsupported layer, several inputs) raises
    before any compilation, and nothing is written then.
    """
    user = UserModel.load(model_path, hls_config_path, input_type)
    model, user_config, note = user.model, user.user_config, user.input_note
    x = load_model_inputs(data_path, model, dataset)
    several = isinstance(x, list)
    n = len(x[0]) if several else len(x)
    in_type = resolve_input_type(model, user.input_type, user_config)[0]
    settings = settings or FirmwareSettings()
    check_inputs(model, x)
    n_heads = len(model.outputs)
    if output and n_heads > 1 and pathlib.Path(output).suffix == ".npy":
        raise InputError(f"{output}: the model has {n_heads} outputs; write them to .h5 (one dataset per output)")
    with tempfile.TemporaryDirectory(prefix="l1forge-emulate-") as scratch:
        project = pathlib.Path(project_dir) if project_dir else pathlib.Path(scratch) / "hls_project"
        hls_model = user.convert(settings, project, compile=False, write=False)
        emulator = Emulator(hls_model.l1forge_graph)
        for v, t in zip(x if several else [x], emulator.input_types):
            check_finite(v, t)
        if check_csim:  # the log of a failed compilation outlives the scratch project: beside the JSON, or in /tmp
            scratch_log = pathlib.Path(tempfile.gettempdir()) / f"l1forge-build_lib-{os.getpid()}.log"
            keep_log = None if project_dir else (pathlib.Path(json_path).with_suffix(".build_lib.log") if json_path
                                                 else scratch_log)
            compile_project(hls_model, keep_log)
            write_graph(hls_model, project)
            stats, emu, _ = compare_with_csim(emulator, hls_model.predict, x)
            if stats["mismatches"]:
                event = stats["first_mismatch"]["event"]
                traced = _traced_model(model, hls_model, in_type, settings, user_config, pathlib.Path(scratch))
                one = [v[event : event + 1] for v in x] if several else x[event : event + 1]
                trace = quiet_call(traced.trace, one)[1]
                where = first_differing_layer(emulator, {k: v[0] for k, v in trace.items()},
                                              [v[0] for v in one] if several else one[0])
                stats["first_mismatch"].update(where or {"layer": None})
        else:
            start = time.perf_counter()
            emu = emulator.predict(x)
            stats = {"events_checked": 0, "mismatches": None, "csim_events_per_s": None, "first_mismatch": None,
                     "emulator_events_per_s": n / (time.perf_counter() - start)}
    stats.update(events=int(n), input_type=emulator.input_type.hls(), input_type_note=note,
                 input_types=[t.hls() for t in emulator.input_types],
                 conversion_note=hls_model.l1forge_note, outputs=list(emulator.output_names))
    if fidelity_check:
        stats.update(fidelity(model, emulator, x, emu, has_input_quantizer(model)))
    shaped = keras_shaped(model, emu)
    if output:
        _save(output, shaped, emulator.output_names)
    if json_path:
        write_json_atomic(json_path, stats)
    return stats


def fidelity_warning(stats: dict) -> str | None:
    """The terminal line when the firmware differs from the Keras model beyond its own quantization, else None."""
    if not stats.get("keras_mismatches"):
        return None
    where = stats.get("first_keras_divergence") or {}
    flips = f", argmax flips in {stats['argmax_flips']}" if stats.get("argmax_flips") else ""
    layer = f"; first at layer '{where['layer']}'" if where.get("layer") else ""
    cause = f": {where['cause']}" if where.get("cause") else ""
    if stats.get("dropped_quantizers"):
        cause += f" (Keras quantizers with no firmware layer: {', '.join(stats['dropped_quantizers'])})"
    return (f"the firmware differs from the Keras model beyond its own quantization in {stats['keras_mismatches']} "
            f"of {stats.get('keras_events', stats.get('events'))} events (max |diff| {stats['keras_max_abs_diff']:.4g}"
            f"{flips}){layer}{cause}")


def _traced_model(model, hls_model, in_type, settings, user_config, scratch: pathlib.Path):
    """``hls_model`` itself when every layer is traced, else the same conversion with Trace on every layer (a copy
    of the config, compiled in ``scratch``), for ``trace`` to name the first differing layer."""
    config = hls_model.l1forge_config
    names = config.get("LayerName", {})
    if user_config is None or all(names.get(layer.name, {}).get("Trace") for layer in hls_model.get_layers()):
        return hls_model  # l1forge's own config traces every layer
    traced = traced_config(config, hls_model)
    return convert(model, in_type, settings, scratch / "trace", compile=True, user_config=traced)


def _save(path, outputs: list, names: list):
    """One head: .npy, or dataset ``outputs`` of an .h5; several heads: one .h5 dataset per output layer name."""
    path = pathlib.Path(path)
    if path.suffix == ".npy":
        with atomic_path(path, ".npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, outputs[0])
    else:
        write_arrays_atomic(path, {"outputs": outputs[0]} if len(outputs) == 1 else dict(zip(names, outputs)))
