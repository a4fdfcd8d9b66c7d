"""Precision rules shared by students (quantization-aware training), firmware (hls4ml config) and emulation.

One ``Precision`` fixes every bit of a student: the fixed-point type of its inputs, and the widths of its weights,
biases and activations. QKeras quantizers and the hls4ml configuration are both derived from it, so the type that
the network is trained for, the type the firmware is built with and the type the emulator reproduces are the same.
"""

from __future__ import annotations

import dataclasses

from l1forge.quantize.fixed import FixedType

DEFAULT_INPUT = FixedType(16, 6, True, "RND_CONV", "SAT")

# (activation bits, integer bits) of each student family where the configuration leaves them unset; a design scan
# (l1forge/tasks/tagging_scan.py) gives the activations its weight width plus the family's integer bits. The HLF MLP (and
# the MLP students of the other tasks) sees standardised features: activations in [0, 1) suffice. The constituent
# students (students/deepsets.py) carry per-constituent values of order 1-10 (the L1 words of quantize/l1words.py)
# and their sums: 2 integer bits (demo, deep sets 32-32 / 32-32 on N = 16 distilled from the GNN, 6-bit weights,
# one training each, +- 0.011: test accuracy 0.583 with 6-bit activations and 0 integer bits, 0.574 with 6 and 2,
# 0.611 with 8 and 2).
FAMILY_ACTIVATIONS = {"hlf": (6, 0), "deepsets": (8, 2), "mixer": (8, 2)}


@dataclasses.dataclass(frozen=True)
class Precision:
    """Bit widths of a QKeras student. ``*_integer`` counts integer bits excluding the sign, as QKeras does."""

    input: FixedType = DEFAULT_INPUT
    weight_bits: int = 6
    weight_integer: int = 0
    activation_bits: int = 6
    activation_integer: int = 0

    @classmethod
    def for_family(cls, family: str = "hlf", input: FixedType = DEFAULT_INPUT, weight_bits: int = 6,
                   weight_integer: int = 0, activation_bits: int | None = None,
                   activation_integer: int | None = None) -> "Precision":
        """The precision of a student family; activation widths left None take ``FAMILY_ACTIVATIONS[family]``
        (ValueError naming an unknown family)."""
        if family not in FAMILY_ACTIVATIONS:
            raise ValueError(f"student family {family!r} has no precision rule; one of {', '.join(FAMILY_ACTIVATIONS)}")
        bits, integer = FAMILY_ACTIVATIONS[family]
        return cls(input, weight_bits, weight_integer, bits if activation_bits is None else activation_bits,
                   integer if activation_integer is None else activation_integer)

    def __post_init__(self):
        if not self.input.signed or self.input.rounding != "RND_CONV" or self.input.overflow != "SAT":
            # QKeras quantized_bits rounds half to even and saturates: only that input type trains as it runs.
            raise ValueError(f"input type {self.input} must be signed with RND_CONV rounding and SAT overflow")
        for name in ("weight_bits", "activation_bits"):
            if not 2 <= getattr(self, name) <= 32:
                raise ValueError(f"{name}={getattr(self, name)} must be between 2 and 32")

    # ---- QKeras quantizers (imported lazily: emulation must not need TensorFlow) ---------------------
    def input_quantizer(self):
        from qkeras import quantized_bits

        return quantized_bits(self.input.width, self.input.integer - 1, alpha=1)

    def weight_quantizer(self):
        from qkeras import quantized_bits

        return quantized_bits(self.weight_bits, self.weight_integer, alpha=1)

    def activation_quantizer(self):
        from qkeras import quantized_relu

        return quantized_relu(self.activation_bits, self.activation_integer)

    def as_dict(self) -> dict:
        return {
            "input": self.input.hls(),
            "weight_bits": self.weight_bits,
            "weight_integer": self.weight_integer,
            "activation_bits": self.activation_bits,
            "activation_integer": self.activation_integer,
        }


def hls_config(
    model, input_type: FixedType | None, reuse_factor: int = 1, strategy: str = "Latency", trace: bool = True
) -> dict:
    """hls4ml configuration for ``model``, per layer by name, with the input type fixed by quantize/ (if given).

    Every other type is inferred by hls4ml's bit-exact precision propagation from the QKeras quantizers, so no
    intermediate result is truncated ('auto' never truncates) and the firmware reproduces the QKeras model.
    A kernel-1 Conv1D under the Latency strategy gets ``ParallelizationFactor`` = its width: hls4ml 1.3.0 then
    computes it as one batched dense over all positions (``BatchedDenseForConv1D``, II = reuse factor) instead of
    one position per cycle (II = width), which a 40 MHz trigger (II <= 6 at 240 MHz) needs.
    """
    import hls4ml

    config = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vitis")
    config["Model"]["ReuseFactor"] = reuse_factor
    config["Model"]["Strategy"] = strategy
    for layer_name, layer in config["LayerName"].items():
        layer["ReuseFactor"] = reuse_factor
        layer["Trace"] = trace
    for layer in model.layers:  # pointwise convolutions (constituent students) on every position at once: II 1
        if getattr(layer, "kernel_size", None) == (1,) and strategy.lower() == "latency" and layer.name in config["LayerName"]:
            config["LayerName"][layer.name]["ParallelizationFactor"] = int(layer.output_shape[1])
    for layer in model.layers:
        q = getattr(layer, "activation", None) if layer.__class__.__name__ == "QActivation" else None
        if q.__class__.__name__ == "quantized_relu" and getattr(q, "negative_slope", 0):
            # hls4ml names this a 'leaky_relu'; its bit-exact inference knows only 'leakyrelu' and fails on the
            # other (passes/bit_exact.py, ParametrizedActivation). The same C++ function either way.
            config["LayerName"].setdefault(layer.name, {})["Activation"] = "leakyrelu"
    if input_type is not None:
        set_input_type(config, model, input_type)
    return config


def input_names(model) -> list[str]:
    """Names of the model's input layers, as hls4ml names its Input layers (one per Keras input)."""
    return [t._keras_history.layer.name if hasattr(t, "_keras_history") else t.name.split(":")[0] for t in model.inputs]


def set_input_type(config: dict, model, input_type: FixedType) -> dict:
    """Fix the type of every model input in an hls4ml ``config`` (in place; returned): a ``LayerName`` entry per
    input with ``Precision.result`` = the type and ``Trusted`` set.

    ``Trusted`` keeps hls4ml's bit-exact precision inference from replacing the type: without it the inference
    widens an input to 126 integer and fractional bits and then looks for a quantizer right after the input to
    narrow it, failing with "Layer <input> (Input) unexpected input layer chain" when the input feeds a
    QDense/QConv/Dense or several branches (passes/bit_exact.py, FixInputPrecision).
    """
    names = config.setdefault("LayerName", {})
    for name in input_names(model):
        entry = names.setdefault(name, {})
        precision = entry.get("Precision")
        entry["Precision"] = {**(precision if isinstance(precision, dict) else {}), "result": input_type.hls()}
        entry["Trusted"] = True
    return config
