"""The QKeras student: an MLP in the size class of the hls4ml jet tagger, every tensor quantized."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from qkeras import QActivation, QDense  # noqa: E402
from qkeras.utils import _add_supported_quantized_objects  # noqa: E402

from l1forge.quantize.precision import Precision  # noqa: E402


def build_student(n_inputs: int, n_outputs: int, hidden=(64, 32, 32), precision: Precision = Precision(), name="student"):
    """Input quantizer, quantized Dense + quantized ReLU blocks, and a quantized Dense returning logits."""
    inputs = tf.keras.Input((n_inputs,), name="inputs")
    x = QActivation(precision.input_quantizer(), name="input_quant")(inputs)
    return tf.keras.Model(inputs, dense_head(x, hidden, n_outputs, precision), name=name)


def dense_head(x, hidden, n_outputs: int, precision: Precision, prefix: str = "dense", activation: str = "relu"):
    """Quantized Dense + quantized ReLU blocks (layers ``{prefix}{i}``, ``{activation}{i}``) of widths ``hidden``
    on ``x``, then a quantized Dense ``logits`` of ``n_outputs``; returns the logits tensor."""
    for i, width in enumerate(hidden, start=1):
        x = QDense(
            width,
            kernel_quantizer=precision.weight_quantizer(),
            bias_quantizer=precision.weight_quantizer(),
            kernel_initializer="lecun_uniform",
            name=f"{prefix}{i}",
        )(x)
        x = QActivation(precision.activation_quantizer(), name=f"{activation}{i}")(x)
    return QDense(
        n_outputs,
        kernel_quantizer=precision.weight_quantizer(),
        bias_quantizer=precision.weight_quantizer(),
        kernel_initializer="lecun_uniform",
        name="logits",
    )(x)


def load_qkeras_model(path):
    """Load a saved QKeras model (.h5 or SavedModel directory) with the QKeras layers registered."""
    custom = {}
    _add_supported_quantized_objects(custom)
    return tf.keras.models.load_model(str(path), custom_objects=custom, compile=False)
