"""How far the firmware is from the trained Keras/QKeras model on the same inputs (beside emulator == C-sim).

The emulator reproduces the firmware bit for bit; this module compares the emulator's outputs, and where they
differ its per-layer values, with the Keras model's. A difference counts only beyond the firmware's own
quantization: a value differs when it is more than one step (LSB) of the firmware type, plus 1e-6 (1 + |keras|) for
float32 rounding in Keras, from the Keras value quantized into that type. Needs TensorFlow (imported lazily).

The block (``fidelity``) has:

* ``keras_mismatches``: events where some output differs (an event counts once);
* ``keras_max_abs_diff``: the largest |firmware - keras| over all outputs and events;
* ``argmax_flips``: events whose argmax differs in some vector output (classifiers), None without vector outputs;
* ``first_keras_divergence``: None, or {"layer", "class_name", "events", "of_events", "max_abs_diff", "cause"} for
  the first firmware layer (in execution order) whose values diverge from the Keras layer of the same name, with
  the known cause where one is recognised (``cause`` None otherwise): inputs outside the input type's range,
  inputs quantized by an input type the model does not have, a wide type feeding a table, a table-based
  activation or softmax, a quantizer setting hls4ml implements differently (keep_negative=False, symmetric), a
  value outside the layer's result type, a Keras quantizer with no firmware layer (dropped).
"""

from __future__ import annotations

import numpy as np

from l1forge.emulation.compare import heads

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


def _dropped_cause(model, emulator, name: str) -> str:
    """Why a Keras quantizer with no firmware layer matters: folded into the input type, or dropped."""
    import tensorflow as tf

    layer = model.get_layer(name)
    feeds_on_input = all(isinstance(node.inbound_layers, tf.keras.layers.InputLayer) for node in layer._inbound_nodes)
    if feeds_on_input:
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


def _cause(layer, keras_name: str, emulator, model, x_sel: np.ndarray, diverged: np.ndarray, keras_vals: np.ndarray, dropped: list,
           has_input_quantizer: bool) -> str | None:
    in_t = emulator.input_type
    outside = np.any((x_sel < in_t.min_value) | (x_sel > in_t.max_value), axis=tuple(range(1, x_sel.ndim)))
    k = int(outside[diverged].sum())
    if not has_input_quantizer and k and 2 * k >= int(diverged.sum()):  # with one, Keras saturates them alike
        return (f"input outside the input type's range: {in_t.hls()} holds [{in_t.min_value:g}, {in_t.max_value:g}] "
                f"({k} of the {int(diverged.sum())} diverging events)")
    if layer.op in ("softmax", "table"):
        src_t = emulator._types[layer.inputs[0]]
        what = "softmax" if layer.op == "softmax" else layer.spec.get("function", "activation")
        if src_t.width > _TABLE_WIDE_BITS:
            return (f"a wide type {src_t.hls()} (hls4ml 'auto') feeds the table-based {what}, which is addressed by "
                    "its top bits only: set a narrower result type on the layer before it")
        return f"table-based {what}: finite tables (hls4ml #1512, #1443); compare and cut on the logits"
    try:
        keras_layer = model.get_layer(keras_name)
    except ValueError:
        keras_layer = None
    if keras_layer is not None and (setting := _quantizer_setting(keras_layer)):
        return setting
    for name in dropped:
        return _dropped_cause(model, emulator, name)
    result = layer.result
    if np.any((keras_vals < result.min_value) | (keras_vals > result.max_value)):
        return f"values outside the layer's result type {result.hls()} (range [{result.min_value:g}, {result.max_value:g}])"
    if not has_input_quantizer and layer.inputs == emulator.input_names:
        return f"inputs quantized to {in_t.hls()} (the model has no input quantizer)"
    return None


def fidelity(model, emulator, x: np.ndarray, firmware_outputs, has_input_quantizer: bool = True,
             trace_events: int = TRACE_EVENTS) -> dict:
    """The fidelity block (module docstring) of ``emulator`` against Keras ``model`` on inputs ``x`` (n, ...).

    ``firmware_outputs``: what ``emulator.predict(x)`` returned (an array, or a list per output head).
    The per-layer search runs on at most ``trace_events`` differing events.
    """
    x = np.asarray(x, dtype=np.float64)
    keras_heads = heads(model.predict(x, batch_size=4096, verbose=0))
    fw_heads = heads(firmware_outputs)
    n = len(x)
    differs = np.zeros(n, dtype=bool)
    flips = np.zeros(n, dtype=bool)
    max_diff, vector = 0.0, False
    for t, fw, k in zip(emulator.output_types, fw_heads, keras_heads):
        fw, k = fw.reshape(n, -1), np.asarray(k, dtype=np.float64).reshape(n, -1)
        if fw.shape != k.shape:
            raise ValueError(f"firmware output of {fw.shape[1]} values, Keras output of {k.shape[1]}")
        diff = np.abs(fw - k)
        max_diff = max(max_diff, float(diff.max(initial=0.0)))
        differs |= np.any(diff > _tolerance(t.lsb, k), axis=1)
        if k.shape[1] > 1:
            vector = True
            flips |= fw.argmax(axis=1) != k.argmax(axis=1)
    block = {
        "keras_events": int(n),
        "keras_mismatches": int(differs.sum()),
        "keras_max_abs_diff": max_diff,
        "argmax_flips": int(flips.sum()) if vector else None,
        "first_keras_divergence": None,
    }
    if differs.any():
        idx = np.flatnonzero(differs)
        idx = idx[np.unique(np.linspace(0, len(idx) - 1, min(trace_events, len(idx))).astype(int))]  # spread out
        block["first_keras_divergence"] = _first_divergence(model, emulator, x[idx], has_input_quantizer)
    return block


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
    m = len(x_sel)
    for layer in emulator.layers:
        if layer.name not in keras_of:
            continue
        ours = layer.result.to_float(codes[layer.name]).reshape(m, -1)
        theirs = keras_vals[keras_of[layer.name]].reshape(m, -1)
        if ours.shape != theirs.shape or not np.all(np.isfinite(theirs)):
            continue
        diff = np.abs(ours - layer.result.quantize(theirs))
        diverged = np.any(diff > _tolerance(layer.result.lsb, theirs), axis=1)
        if diverged.any():
            return {
                "layer": layer.name,
                "class_name": layer.spec.get("class_name"),
                "events": int(diverged.sum()),
                "of_events": int(m),
                "max_abs_diff": float(np.abs(ours - theirs).max()),
                "cause": _cause(layer, keras_of[layer.name], emulator, model, x_sel, diverged, theirs, dropped, has_input_quantizer),
            }
    # No layer of the firmware diverges from its Keras namesake: the outputs differ after the last of them.
    cause = _dropped_cause(model, emulator, dropped[0]) if dropped else None
    return {"layer": dropped[0] if dropped else None, "class_name": "QActivation" if dropped else None,
            "events": int(m), "of_events": int(m), "max_abs_diff": None, "cause": cause}
