"""A student the user brings (students/user.py): a model file re-initialised with its quantizers kept, a builder,
and one-line refusals for what does not fit the data."""

import numpy as np
import pytest
import tensorflow as tf
from qkeras import QActivation, QDense, quantized_bits, quantized_relu

from l1forge.students.user import StudentError, build_user_student

Q = dict(kernel_quantizer=quantized_bits(4, 0, alpha=1), bias_quantizer=quantized_bits(4, 0, alpha=1))


def _saved(path, n_in=16, n_out=3):
    inp = tf.keras.Input((n_in,))
    out = QDense(n_out, name="out", **Q)(QActivation(quantized_relu(6, 0), name="act")(QDense(8, name="h", **Q)(inp)))
    model = tf.keras.Model(inp, out)
    model.set_weights([np.full(w.shape, 0.25) for w in model.get_weights()])
    model.save(path)
    return model


def test_a_model_file_keeps_its_quantizers_and_starts_from_the_seed(tmp_path):
    _saved(tmp_path / "s.h5")
    a, b = (build_user_student(str(tmp_path / "s.h5"), (16,), 3, seed=7) for _ in range(2))
    c = build_user_student(str(tmp_path / "s.h5"), (16,), 3, seed=8)
    assert [layer.name for layer in a.layers[1:]] == ["h", "act", "out"]
    assert a.get_layer("h").kernel_quantizer_internal.bits == 4 and a.get_layer("act").quantizer.bits == 6
    assert all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))  # same seed, same start
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])
    assert not np.allclose(a.get_weights()[0], 0.25)  # re-initialised, not the saved weights


def test_a_builder_is_called_with_the_input_shape_and_classes(tmp_path, monkeypatch):
    (tmp_path / "my_students.py").write_text(
        "import tensorflow as tf\n"
        "def tiny(input_shape, n_outputs):\n"
        "    inp = tf.keras.Input(input_shape)\n"
        "    return tf.keras.Model(inp, tf.keras.layers.Dense(n_outputs)(inp))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = build_user_student("my_students:tiny", (16,), 5, seed=0)
    assert model.input_shape == (None, 16) and model.output_shape == (None, 5)


def test_what_does_not_fit_is_one_line(tmp_path):
    _saved(tmp_path / "s.h5")
    (tmp_path / "junk.h5").write_text("not a model")
    cases = [(str(tmp_path / "s.h5"), (20,), 3, "input shape (16,), the data give (20,)"),
             (str(tmp_path / "s.h5"), (16,), 5, "3 outputs, the data have 5 classes"),
             (str(tmp_path / "junk.h5"), (16,), 3, "not a Keras/QKeras model"),
             (str(tmp_path / "missing.h5"), (16,), 3, "no such student model file"),
             ("no_such_module_x:f", (16,), 3, "No module named 'no_such_module_x'")]
    for spec, shape, n, message in cases:
        with pytest.raises(StudentError) as err:
            build_user_student(spec, shape, n, seed=0)
        assert message in str(err.value) and "\n" not in str(err.value)


def test_a_class_missing_from_a_small_sample_keeps_its_output(tmp_path):
    """A user's small file may lack a class (400 JetClass jets without Tbl): the student still has one output per
    class name and distils from a teacher with as many, instead of a shape error in the loss."""
    from l1forge.students.distill import train_student

    rng = np.random.default_rng(0)
    labels, x = rng.integers(0, 9, 120), rng.normal(size=(120, 16)).astype(np.float32)
    result = train_student(x, [f"f{k}" for k in range(16)], labels, np.tile([0, 0, 1, 2], 30), tmp_path,
                           teacher_logits=rng.normal(size=(120, 10)), hidden=(8,), epochs=1, progress=False,
                           n_classes=10)
    import h5py

    with h5py.File(tmp_path / "predictions.h5") as f:
        assert f["logits"].shape == (120, 10) and result["params"] == 16 * 8 + 8 + 8 * 10 + 10
