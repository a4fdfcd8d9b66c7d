"""How far the firmware is from the trained Keras/QKeras model on the same inputs (beside emulator == C-sim).

The emulator reproduces the firmware bit for bit; this module compares the emulator's outputs, and where they
differ its per-layer values, with the Keras model's. A difference counts only beyond the firmware's own
quantization: an output differs when it is a whole step (LSB) of its firmware type or more from the Keras output (a
Keras output rounded into that type stays within a step; a quantized Keras output that lands on another step of
the grid counts); a layer diverges when its firmware value is more than one step, plus 1e-6 (1 + |keras|) for
float32 rounding in Keras, from the Keras value quantized into its type. Needs TensorFlow (imported lazily).

The block (``fidelity``) has:

* ``keras_mismatches``: events where some output differs (an event counts once);
* ``keras_max_abs_diff``: the largest |firmware - keras| over all outputs and events;
* ``argmax_flips``: events whose argmax differs in some vector output (classifiers), None without vector outputs;
* ``dropped_quantizers``: Keras QActivation layers inside the model that have no firmware layer (folded into the
  layer before them, or dropped: hls4ml's passes/linear.py under a name config without bit-exact inference);
* ``first_keras_divergence``: None, or {"layer", "class_name", "events", "of_events", "max_abs_diff", "cause"} for
  the first firmware layer (in execution order) whose values diverge from the Keras layer of the same name on at
  least half of the differing events looked at (``earlier``: {"layer", "events"} of a layer before it diverging on
  fewer; the first layer with any divergence when none reaches half), with
  the known cause where one is recognised (``cause`` None otherwise): inputs outside the input type's range,
  inputs quantized by an input type the model does not have (whatever the first layer: a softmax, a permute hls4ml
  folds into the next layer's weights), a wide type feeding a table, a table-based activation or softmax, an
  argmax softmax (no tables: a one-hot output), a quantizer setting hls4ml implements differently (keep_negative=False, symmetric), a
  value outside the layer's result type, a Keras quantizer with no firmware layer (dropped).
"""

from __future__ import annotations

import numpy as np

from l1forge.emulation.compare import heads
from l1forge.quantize.fixed import FixedType

TRACE_EVENTS = 256
_TABLE_WIDE_BITS = 18  # hls4ml's default table types are 18 bits wide; wider inputs are addressed by top bits only


def _tolerance(lsb: float, keras: np.ndarray) -> np.ndarray:
    return lsb + 1e-6 * (1.0 + np.abs(keras))


def _quantizers(layer) -> dict:
    """QKeras quantizer objects of a Keras layer by role (activation, kernel, bias)."""
    found = {}
    for role, attr in (("activation", "activation"), ("kernel", "kernel_quantizer_internal"),
                       ("bias", "bias_quantizer_internal"), ("kernel", "kernel_quantizer")):
        q = getattr(layer, attr, None)
        if q is not None and hasattr(q, "get_config") and role not in found:
            found[role] = q
    return found


def _quantizer_setting(layer) -> str | None:
    """A QKeras quantizer setting that hls4ml implements differently, described, or None."""
    for role, q in _quantizers(layer).items():
        name = q.__class__.__name__
        if name == "quantized_bits" and getattr(q, "keep_negative", True) in (False, 0):
            return (f"{role} quantizer quantized_bits(keep_negative=False) of '{layer.name}': hls4ml's unsigned type "
                    "keeps a different maximum and rounding (qkeras #71)")
        if name == "quantized_bits" and getattr(q, "symmetric", False):
            return (f"{role} quantizer quantized_bits(symmetric=1) of '{layer.name}': hls4ml uses the full "
                    "two's complement range")
        if name == "quantized_relu" and getattr(q, "negative_slope", 0):
            return f"{role} quantizer quantized_relu(negative_slope) of '{layer.name}': a leaky relu in hls4ml"
    return None


def _feeds_on_input(layer) -> bool:
    import tensorflow as tf

    return all(isinstance(node.inbound_layers, tf.keras.layers.InputLayer) for node in layer._inbound_nodes)


def _keras_ancestors(model, name: str) -> set:
    """Names of the Keras layers upstream of layer ``name``."""
    seen, todo = set(), [model.get_layer(name)]
    while todo:
        for node in todo.pop()._inbound_nodes:
            inbound = node.inbound_layers if isinstance(node.inbound_layers, list) else [node.inbound_layers]
            for up in inbound:
                if up.name not in seen:
                    seen.add(up.name)
                    todo.append(up)
    return seen


def _dropped_first(model, dropped: list) -> list:
    """Dropped quantizers ordered by how likely they explain a difference: a recognised setting first, then those
    inside the model, then input quantizers that became the input type."""
    def rank(name):
        layer = model.get_layer(name)
        return (0 if _quantizer_setting(layer) else 2 if _feeds_on_input(layer) else 1)

    return sorted(dropped, key=rank)


def _dropped_cause(model, emulator, name: str) -> str:
    """Why a Keras quantizer with no firmware layer matters: folded into the input type, or dropped."""

    layer = model.get_layer(name)
    if setting := _quantizer_setting(layer):
        return f"{setting} (hls4ml folded '{name}' into the layer before it)"
    if _feeds_on_input(layer):
        t = emulator.input_type
        how = (" (an integer type: the C++ converts toward zero where QKeras rounds to nearest)" if t.is_int else "")
        return f"the input quantizer '{name}' became the input type {t.hls()}{how}"
    return f"the Keras quantizer '{name}' has no firmware layer (dropped by hls4ml)"


def _keras_layer_outputs(model, x: np.ndarray, names: list[str]) -> dict:
    """{layer name: Keras output (n, ...)} for the named layers that have a single output."""
    import tensorflow as tf

    picked = []
    for name in names:
        try:
            layer = model.get_layer(name)
            if len(layer._inbound_nodes) == 1 and not isinstance(layer, tf.keras.layers.InputLayer):
                picked.append((name, layer.output))
        except (ValueError, AttributeError):
            continue
    if not picked:
        return {}
    probe = tf.keras.Model(model.inputs, [t for _, t in picked])
    outs = probe.predict(x, batch_size=4096, verbose=0)
    outs = outs if isinstance(outs, list) else [outs]
    return {name: np.asarray(o, dtype=np.float64) for (name, _), o in zip(picked, outs)}


def _parts(x) -> list:
    """The model inputs: one array, or a list of them (several model inputs)."""
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _take(x, idx):
    return [v[idx] for v in x] if isinstance(x, (list, tuple)) else x[idx]


def _outside(emulator, x_sel) -> tuple[np.ndarray, FixedType]:
    """Per event: some input value outside its input type's range; and the type of the first input where one is."""
    mask, in_t = np.zeros(len(_parts(x_sel)[0]), dtype=bool), emulator.input_type
    for v, t in zip(_parts(x_sel), emulator.input_types):
        out = np.any((v < t.min_value) | (v > t.max_value), axis=tuple(range(1, v.ndim)))
        in_t = t if out.any() and not mask.any() else in_t
        mask |= out
    return mask, in_t


def _input_outside(emulator, x_sel) -> str | None:
    """The input cause when at least half of the events hold a value outside the input type's range, else None."""
    outside, in_t = _outside(emulator, x_sel)
    if 2 * int(outside.sum()) < len(outside):
        return None
    how = "wrap around" if in_t.overflow == "WRAP" else "saturate"
    return (f"input outside the input type's range: {in_t.hls()} holds [{in_t.min_value:g}, {in_t.max_value:g}] "
            f"and the inputs beyond it {how} ({int(outside.sum())} of {len(outside)} events); scale the inputs or "
            "widen the input type")


def _cause(layer, keras_name: str, emulator, model, x_sel: np.ndarray, diverged: np.ndarray, keras_vals: np.ndarray,
           dropped: list, has_input_quantizer: bool, first_on_path: bool) -> str | None:
    """The known cause of a divergence first seen at firmware ``layer`` (Keras layer ``keras_name``), or None.
    ``first_on_path``: no compared layer lies between the model input and this one."""
    outside, in_t = _outside(emulator, x_sel)
    k = int(outside[diverged].sum())
    if not has_input_quantizer and k and 2 * k >= int(diverged.sum()):  # with one, Keras saturates them alike
        how = "wrap around" if in_t.overflow == "WRAP" else "saturate"
        return (f"input outside the input type's range: {in_t.hls()} holds [{in_t.min_value:g}, {in_t.max_value:g}] "
                f"({k} of the {int(diverged.sum())} diverging events; they {how} in the firmware)")
    if in_t.overflow == "WRAP" and k and 2 * k >= int(diverged.sum()) and first_on_path:
        return (f"inputs outside the input type's range wrap around: {in_t.hls()} holds [{in_t.min_value:g}, "
                f"{in_t.max_value:g}] ({k} of the {int(diverged.sum())} diverging events); use a saturating input type")
    if layer.op == "softmax" and layer.spec.get("implementation") == "argmax":
        return ("argmax softmax (no tables): the firmware outputs 1 at the first maximum and 0 elsewhere, Keras the "
                "probabilities; compare the argmax, or use the latency/stable softmax for probabilities")
    if layer.op in ("softmax", "table"):
        src_t = emulator._types[layer.inputs[0]]
        what = "softmax" if layer.op == "softmax" else layer.spec.get("function", "activation")
        # latency softmax: the exp table is addressed by the top bits of the input type; stable: of inp_norm_t
        address_t = FixedType.parse(layer.spec["inp_norm_t"]) if layer.spec.get("implementation") == "stable" else src_t
        if layer.op == "softmax" and address_t.width > _TABLE_WIDE_BITS:
            return (f"a wide type {address_t.hls()} (hls4ml 'auto') addresses the table-based softmax by its top "
                    f"bits only (input {src_t.hls()}): set a narrower result type on the layer before it")
        return f"table-based {what}: finite tables (hls4ml #1512, #1443); compare and cut on the logits"
    try:
        keras_layer = model.get_layer(keras_name)
    except ValueError:
        keras_layer = None
    if keras_layer is not None and (setting := _quantizer_setting(keras_layer)):
        return setting
    upstream = _keras_ancestors(model, keras_name) if keras_layer is not None else set()
    upstream_dropped = _dropped_first(model, [d for d in dropped if d in upstream])
    for name in upstream_dropped:
        if not _feeds_on_input(model.get_layer(name)):  # input quantizers folded into the input type: below
            return _dropped_cause(model, emulator, name)
    result = layer.result
    if not has_input_quantizer and first_on_path and np.any(outside[diverged]):
        return (f"input outside the input type's range: {in_t.hls()} holds [{in_t.min_value:g}, {in_t.max_value:g}] "
                f"({k} of the {int(diverged.sum())} diverging events), and inputs quantized to it")
    if np.any((keras_vals < result.min_value) | (keras_vals > result.max_value)):
        wraps = ", which wraps (ap_int and WRAP types do; QKeras quantizers saturate)" if result.overflow == "WRAP" else ""
        return (f"values outside the layer's result type {result.hls()} (range [{result.min_value:g}, "
                f"{result.max_value:g}]){wraps}")
    if not has_input_quantizer and first_on_path:
        return f"inputs quantized to {in_t.hls()} (the model has no input quantizer)"
    for name in upstream_dropped:
        if emulator.input_type.is_int:  # the known case: an integer input type converts toward zero
            return _dropped_cause(model, emulator, name)
    return None


def fidelity(model, emulator, x: np.ndarray, firmware_outputs, has_input_quantizer: bool = True,
             trace_events: int = TRACE_EVENTS) -> dict:
    """The fidelity block (module docstring) of ``emulator`` against Keras ``model`` on inputs ``x`` (n, ...).

    ``firmware_outputs``: what ``emulator.predict(x)`` returned (an array, or a list per output head).
    The per-layer search runs on at most ``trace_events`` differing events.
    """
    x = [np.asarray(v, dtype=np.float64) for v in x] if isinstance(x, (list, tuple)) else np.asarray(x, np.float64)
    keras_heads = heads(model.predict(x, batch_size=4096, verbose=0))
    fw_heads = heads(firmware_outputs)
    n = len(_parts(x)[0])
    differs = np.zeros(n, dtype=bool)
    flips = np.zeros(n, dtype=bool)
    max_diff, vector = 0.0, False
    for t, fw, k in zip(emulator.output_types, fw_heads, keras_heads):
        fw, k = fw.reshape(n, -1), np.asarray(k, dtype=np.float64).reshape(n, -1)
        if fw.shape != k.shape:
            raise ValueError(f"firmware output of {fw.shape[1]} values, Keras output of {k.shape[1]}")
        diff = np.abs(fw - k)
        max_diff = max(max_diff, float(diff.max(initial=0.0)))
        differs |= np.any(diff >= t.lsb * (1 - 2**-20), axis=1)  # a whole step of the output type or more
        if k.shape[1] > 1:
            vector = True
            flips |= fw.argmax(axis=1) != k.argmax(axis=1)
    block = {
        "keras_events": int(n),
        "keras_mismatches": int(differs.sum()),
        "keras_max_abs_diff": max_diff,
        "argmax_flips": int(flips.sum()) if vector else None,
        "first_keras_divergence": None,
        "dropped_quantizers": _dropped_inside(model, emulator),
    }
    if differs.any():
        idx = np.flatnonzero(differs)
        idx = idx[np.unique(np.linspace(0, len(idx) - 1, min(trace_events, len(idx))).astype(int))]  # spread out
        block["first_keras_divergence"] = _first_divergence(model, emulator, _take(x, idx), has_input_quantizer)
    return block


def _dropped_inside(model, emulator) -> list:
    """Keras QActivation layers inside the model (not on its input) with no firmware layer of their name."""
    names = {layer.name for layer in emulator.layers}
    return [layer.name for layer in model.layers if layer.__class__.__name__ == "QActivation"
            and layer.name not in names and not _feeds_on_input(layer)]


def _fw_ancestors(emulator, name: str) -> set:
    """Names of the firmware layers upstream of layer ``name``."""
    by_name = {layer.name: layer for layer in emulator.layers}
    seen, todo = set(), [name]
    while todo:
        for up in by_name[todo.pop()].inputs:
            if up in by_name and up not in seen:
                seen.add(up)
                todo.append(up)
    return seen


def _first_divergence(model, emulator, x_sel: np.ndarray, has_input_quantizer: bool) -> dict:
    fw_names = [layer.name for layer in emulator.layers]
    keras_q = [layer.name for layer in model.layers if layer.__class__.__name__ == "QActivation"]
    dropped = [name for name in keras_q if name not in fw_names]
    keras_vals = _keras_layer_outputs(model, x_sel, [name for name in fw_names if name not in emulator.input_names])
    # hls4ml splits a layer's activation into '<name>_<activation>' (d1 -> d1, d1_relu): the Keras output of d1
    # is the split layer's output.
    keras_of = {name: name for name in keras_vals}
    for layer in emulator.layers:
        src = layer.inputs[0] if len(layer.inputs) == 1 else None
        if src in keras_vals and layer.name.startswith(src + "_") and layer.name not in keras_vals:
            keras_of.pop(src, None)
            keras_of[layer.name] = src
    _, codes = emulator.run(x_sel, keep_layers=True)
    m = len(_parts(x_sel)[0])
    found = []
    for layer in emulator.layers:
        if layer.name not in keras_of:
            continue
        ours = layer.result.to_float(codes[layer.name]).reshape(m, -1)
        theirs = keras_vals[keras_of[layer.name]].reshape(m, -1)
        if ours.shape != theirs.shape or not np.all(np.isfinite(theirs)):
            continue
        # Keras rounded into the layer's type, saturated: a wrap in the firmware is a divergence, not quantization.
        r = layer.result
        diff = np.abs(ours - FixedType(r.width, r.integer, r.signed, r.rounding, "SAT").quantize(theirs))
        diverged = np.any(diff > _tolerance(layer.result.lsb, theirs), axis=1)
        if diverged.any():
            found.append({
                "layer": layer.name,
                "class_name": layer.spec.get("class_name"),
                "events": int(diverged.sum()),
                "of_events": int(m),
                "max_abs_diff": float(np.abs(ours - theirs).max()),
                "cause": _cause(layer, keras_of[layer.name], emulator, model, x_sel, diverged, theirs, dropped,
                                has_input_quantizer, not (_fw_ancestors(emulator, layer.name) & set(keras_of))),
            })
            if 2 * found[-1]["events"] >= m:
                break
    if found:
        # The first layer where most of the differing events diverge; a layer before it that diverges on a few
        # events only (e.g. float32 rounding of the inputs in Keras crossing a rounding boundary) is named beside.
        main = next((f for f in found if 2 * f["events"] >= m), found[0])
        if main is not found[0]:
            main["earlier"] = {k: found[0][k] for k in ("layer", "events")}
        return main
    # No layer of the firmware diverges from its Keras namesake: the outputs differ after the last of them.
    dropped = _dropped_first(model, dropped)
    cause = _dropped_cause(model, emulator, dropped[0]) if dropped else None
    if cause is None and (outside := _input_outside(emulator, x_sel)):  # whatever the first layer is
        first = next(layer for layer in emulator.layers if layer.op != "input")
        return {"layer": first.name, "class_name": first.spec.get("class_name"), "events": int(m), "of_events": int(m),
                "max_abs_diff": None, "cause": outside}
    return {"layer": dropped[0] if dropped else None, "class_name": "QActivation" if dropped else None,
            "events": int(m), "of_events": int(m), "max_abs_diff": None, "cause": cause}
