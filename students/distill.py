"""Knowledge distillation of a teacher into a QKeras student, with quantization-aware training.

The loss is ``alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * CE(labels, student)``
(Hinton et al. 2015). With no teacher (``teacher_logits=None``) the same network is trained on the hard labels
alone: that is the baseline distillation has to beat.
"""

from __future__ import annotations

import pathlib

import numpy as np
import tensorflow as tf

from l1forge.core.artifacts import atomic_path, write_arrays_atomic, write_json_atomic
from l1forge.quantize.precision import Precision
from l1forge.students.model import build_student
from l1forge.students.preprocess import Standardizer
from l1forge.students.training import AugmentedBatches, fit_with_early_stopping


# The distillation temperature of each student family where the configuration leaves it unset (demo, GNN teacher,
# alpha 0.9, 200 epochs of 64 jets). HLF MLP: 2 (0.723 distilled against 0.702 on labels). Deep sets N = 16, five
# seeds (mean +- its error): T = 1 0.620 +- 0.004, T = 2 0.613 +- 0.004, labels alone 0.604 +- 0.005; paired over
# the seeds T = 1 - labels = +0.016 +- 0.007 and T = 1 - T = 2 = +0.007 +- 0.003. Mixer N = 16, three seeds: T = 1
# better in each (+0.010, +0.005, +0.011). The constituent students cannot follow the finer structure of a teacher
# that sees all constituents and the jet features: a sharper target pays.
FAMILY_TEMPERATURE = {"hlf": 2.0, "deepsets": 1.0, "mixer": 1.0}


def family_settings(family: str, temperature: float | None, augment: bool) -> dict:
    """The ``train_student`` keywords a student family takes where the configuration leaves them open: the
    temperature (``FAMILY_TEMPERATURE`` when None) and, for the constituent families with ``augment`` on, rotations
    about the jet axis (students/augment.py; the HLF features do not change under them)."""
    from l1forge.students.augment import rotate_about_axis

    return {"temperature": temperature or FAMILY_TEMPERATURE[family],
            "augment": rotate_about_axis if augment and family != "hlf" else None}


def distillation_loss(n_classes: int, temperature: float, alpha: float):
    """Loss on ``y = [one-hot labels | teacher logits]`` (teacher part ignored when alpha == 0)."""

    def loss(y, logits):
        hard = tf.keras.losses.categorical_crossentropy(y[:, :n_classes], logits, from_logits=True)
        if alpha == 0:
            return hard
        soft_teacher = tf.nn.softmax(y[:, n_classes:] / temperature)
        log_student = tf.nn.log_softmax(logits / temperature)
        kl = tf.reduce_sum(soft_teacher * (tf.math.log(soft_teacher + 1e-12) - log_student), axis=-1)
        return alpha * temperature**2 * kl + (1 - alpha) * hard

    return loss


def train_student(
    features: np.ndarray,
    feature_names,
    labels: np.ndarray,
    split: np.ndarray,
    out_dir: pathlib.Path,
    teacher_logits: np.ndarray | None = None,
    precision: Precision = Precision(),
    hidden=(64, 32, 32),
    epochs: int = 30,
    batch_size: int = 256,
    lr: float = 3e-3,
    temperature: float = 2.0,
    alpha: float = 0.9,
    seed: int = 0,
    progress: bool = True,
    model=None,
    preprocess=None,
    augment=None,
    n_classes: int | None = None,
) -> dict:
    """Train on split 0, keep the weights with the best validation loss, write model, logits and history.

    ``features`` are (jets, ...) raw inputs, ``preprocess`` maps them to the network input and is saved as
    ``preprocess.json`` (an object with ``__call__(features)`` and ``save(path)``); None: a ``Standardizer`` fitted on
    the training split of 2-D features. ``model`` (built by ``build_student``, or another family such as
    students/deepsets.py ``build_deepsets``) is trained in place if given; otherwise an MLP is built from ``hidden``
    and ``precision``. ``augment`` (students/augment.py ``rotate_about_axis``, or None) transforms the raw training
    jets afresh each epoch (validation and predictions see them untouched); history.json records its name.
    ``n_classes``: the outputs (the data's class names, so that a class a small sample lacks keeps its output);
    None: the largest label + 1.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tf.keras.utils.set_random_seed(seed)
    n_classes = int(labels.max()) + 1 if n_classes is None else n_classes
    train, val = split == 0, split == 1
    scaler = preprocess if preprocess is not None else Standardizer.fit(features[train], feature_names)
    x = scaler(features)
    y = np.eye(n_classes, dtype=np.float32)[labels]
    alpha_used = alpha if teacher_logits is not None else 0.0
    if teacher_logits is not None:
        y = np.concatenate([y, teacher_logits.astype(np.float32)], axis=1)

    model = model or build_student(x.shape[1], n_classes, hidden, precision)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(lr),
        loss=distillation_loss(n_classes, temperature, alpha_used),
    )
    training = (x[train], y[train]) if augment is None else AugmentedBatches(
        features[train], y[train], scaler, augment, batch_size, seed)
    fitted = fit_with_early_stopping(
        model, training, (x[val], y[val]), epochs, batch_size, progress, "distill" if alpha_used else "baseline"
    )
    logits = model.predict(x, batch_size=4096, verbose=0)

    with atomic_path(out_dir / "model.h5", ".h5") as tmp:
        model.save(tmp, include_optimizer=False, save_format="h5")
    scaler.save(out_dir / "preprocess.json")
    write_arrays_atomic(out_dir / "predictions.h5", {"logits": logits.astype(np.float32)})
    result = {
        "params": int(model.count_params()),
        "bits": precision.as_dict(),
        "hidden": list(hidden),
        "distilled": teacher_logits is not None,
        "temperature": temperature,
        "alpha": alpha_used,
        "augment": getattr(augment, "__name__", None),
        **fitted,
    }
    write_json_atomic(out_dir / "history.json", result)
    return result
