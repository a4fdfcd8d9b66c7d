"""The Keras training loop shared by every student: early stopping on validation loss, a rich progress bar."""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf


class RichProgress(tf.keras.callbacks.Callback):
    """One rich progress bar over the epochs, showing the validation loss."""

    def __init__(self, epochs: int, label: str):
        from rich.progress import Progress

        self.progress = Progress(transient=False)
        self.epochs, self.label = epochs, label

    def on_train_begin(self, logs=None):
        self.progress.start()
        self.task = self.progress.add_task(self.label, total=self.epochs)

    def on_epoch_end(self, epoch, logs=None):
        self.progress.update(self.task, advance=1, description=f"{self.label} val_loss={logs.get('val_loss', 0):.4f}")

    def on_train_end(self, logs=None):
        self.progress.stop()


class AugmentedBatches(tf.keras.utils.Sequence):
    """Training batches drawn anew each epoch: ``preprocess(augment(raw[batch], rng))`` with targets ``y[batch]``,
    the jets shuffled every epoch; ``augment`` maps raw inputs to randomly transformed ones (students/augment.py)."""

    def __init__(self, raw: np.ndarray, y: np.ndarray, preprocess, augment, batch_size: int, seed: int):
        super().__init__()
        self.raw, self.y, self.preprocess, self.augment, self.batch_size = raw, y, preprocess, augment, batch_size
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(raw))

    def __len__(self) -> int:
        return -(-len(self.raw) // self.batch_size)

    def __getitem__(self, i: int):
        batch = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        return self.preprocess(self.augment(self.raw[batch], self.rng)), self.y[batch]

    def on_epoch_end(self):
        self.order = self.rng.permutation(len(self.raw))


def fit_with_early_stopping(model, train, val: tuple, epochs: int, batch_size: int, progress: bool, label: str) -> dict:
    """Fit a compiled model, keep the weights with the best validation loss; the history block of history.json.

    train is (x, y), (x, y, sample_weight) or a keras Sequence of batches (``AugmentedBatches``: its own batch size
    and shuffling); val is (x, y) or (x, y, sample_weight)."""
    callbacks = [
        tf.keras.callbacks.EarlyStopping(monitor="val_loss", patience=max(3, epochs // 5), restore_best_weights=True),
        tf.keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=max(2, epochs // 10)),
    ]
    if progress:
        callbacks.append(RichProgress(epochs, label))
    start = time.perf_counter()
    data = {"x": train} if isinstance(train, tf.keras.utils.Sequence) else {
        "x": train[0], "y": train[1], "sample_weight": train[2] if len(train) > 2 else None,
        "batch_size": batch_size, "shuffle": True}
    history = model.fit(**data, validation_data=val, epochs=epochs, callbacks=callbacks, verbose=0).history
    val_loss = history["val_loss"]
    return {
        "epochs_run": len(val_loss),
        "best_epoch": int(np.argmin(val_loss)),
        "best_val_loss": float(np.min(val_loss)),
        "seconds": time.perf_counter() - start,
        "history": {k: [float(v) for v in vals] for k, vals in history.items()},
    }
