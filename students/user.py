"""A student the user brings: a saved QKeras/Keras model whose architecture and quantizers are kept, or a builder.

``student.model`` (``--student``) is either a model file (``.h5`` or a SavedModel directory), re-initialised from
the student's seed so that the distilled student and its label-trained twin start from the same weights, or
``module:function``, a builder called as ``function(input_shape, n_outputs)`` that returns a Keras/QKeras model.
Distillation then trains its weights (students/distill.py ``train_student(model=...)``).
"""

from __future__ import annotations

import importlib
import pathlib

import tensorflow as tf
from qkeras.utils import _add_supported_quantized_objects

from l1forge.students.model import load_qkeras_model


class StudentError(ValueError):
    """A user student that cannot be built or does not fit the data; one line naming the file or builder."""


def is_builder(spec: str) -> bool:
    """``module:function`` (and not a path that happens to hold a colon)."""
    return ":" in spec and not pathlib.Path(spec).exists()


def build_user_student(spec: str, input_shape: tuple, n_outputs: int, seed: int) -> tf.keras.Model:
    """The user's student for inputs of ``input_shape`` (one event, no batch axis) and ``n_outputs`` logits, its
    weights initialised from ``seed``. StudentError (one line) when it cannot be loaded or built, or its input or
    output shape does not match."""
    tf.keras.utils.set_random_seed(seed)
    if is_builder(spec):
        module, _, name = spec.partition(":")
        try:
            model = getattr(importlib.import_module(module), name)(tuple(input_shape), n_outputs)
        except (ImportError, AttributeError) as err:
            raise StudentError(f"student builder {spec}: {err}") from None
        if not isinstance(model, tf.keras.Model):
            raise StudentError(f"student builder {spec} returned {type(model).__name__}, not a Keras model")
    else:
        if not pathlib.Path(spec).exists():
            raise StudentError(f"{spec}: no such student model file (or module:function builder)")
        try:
            saved = load_qkeras_model(spec)
        except Exception as err:  # noqa: BLE001 - Keras raises many kinds for a file that is not a model
            raise StudentError(f"{spec}: not a Keras/QKeras model ({str(err).splitlines()[0][:200]})") from None
        custom = {}
        _add_supported_quantized_objects(custom)
        with tf.keras.utils.custom_object_scope(custom):
            model = tf.keras.models.clone_model(saved)  # the same layers and quantizers, fresh weights
    got_in, got_out = tuple(model.input_shape[1:]), model.output_shape[-1]
    if len(model.inputs) != 1 or got_in != tuple(input_shape):
        raise StudentError(f"student {spec}: input shape {got_in}, the data give {tuple(input_shape)} per jet")
    if len(model.outputs) != 1 or got_out != n_outputs:
        raise StudentError(f"student {spec}: {got_out} outputs, the data have {n_outputs} classes")
    return model
