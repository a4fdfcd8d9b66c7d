"""The per-particle pileup student: a QKeras MLP on fixed-size local features regressing the teacher's weight.

Inputs (``student_inputs``, one row per candidate), all computable by firmware that sees the candidate stream:
the candidate's own pT, eta, dz and type (one-hot), and pT sums over its eta-phi neighbourhood within each of
LOCAL_RADII (itself excluded) of PV-compatible tracks, pileup tracks and neutral candidates (events.mitigation:
``local_sums``; adder trees over a window). pT and sums are scaled by PT_SCALE = 2**-3 per GeV (a bit shift), so the
firmware input type fixed<16,6,RND_CONV,SAT> holds them up to 256 GeV in steps of 1/128 GeV; dz (cm) saturates at
+-32 cm. A last input tells the network how busy the crossing is: the pT sum of all pileup tracks of the crossing, scaled by
DENSITY_SCALE = 2**-7 (one adder tree over the crossing's tracks, ready before the candidates are weighted). The
output is the regressed weight, trained with an MSE weighted by pT^pt_power (1: MET and jets are pT-weighted sums;
2 would weight each candidate by the squared MET error it causes; measured no better); the flow clips the output to
[0, 1] after the firmware.
"""

from __future__ import annotations

import pathlib

import numpy as np
import tensorflow as tf

from l1forge.events.mitigation import NEIGHBOUR_SUMS, chs_weights, local_sums, pv_track, regional_cap
from l1forge.events.pfcands import TYPE_NAMES
from l1forge.core.artifacts import atomic_path, write_arrays_atomic, write_json_atomic
from l1forge.quantize.precision import Precision
from l1forge.students.model import build_student
from l1forge.students.training import fit_with_early_stopping

PT_SCALE = 2.0**-3
DENSITY_SCALE = 2.0**-7
LOCAL_RADII = (0.1, 0.4)
INPUT_NAMES = ("pt", "eta", "dz", *(f"is_{t}" for t in TYPE_NAMES),
               *(f"sum_{s}_r{r:g}" for r in LOCAL_RADII for s in NEIGHBOUR_SUMS), "crossing_pu_tracks")


def student_inputs(sample) -> np.ndarray:
    """(n_particles, len(INPUT_NAMES)) float32 firmware inputs of every candidate of a PileupSample."""
    sums = [local_sums(sample, r) * PT_SCALE for r in LOCAL_RADII]
    own = np.stack([sample.pt * PT_SCALE, sample.eta, sample.dz], 1)
    pileup_tracks = sample.has_track & ~pv_track(sample)
    density = np.bincount(sample.event[pileup_tracks], sample.pt[pileup_tracks], sample.n_events)[sample.event]
    return np.concatenate([own, sample.type_onehot(), *sums, density[:, None] * DENSITY_SCALE], axis=1).astype(np.float32)


# The deployable student's readout of a PileupSample. p: its settings, any object with region_eta, region_phi,
# region_cap and student_tracks (the pileup task's configuration section, l1forge.tasks.pileup.PileupConfig).
def region_kept(sample, p) -> np.ndarray:
    """(n_particles,) bool: the candidates the student reads (events.mitigation.regional_cap with the settings' cap;
    every candidate when region_cap is None)."""
    if p.region_cap is None:
        return np.ones(len(sample.pt), bool)
    return regional_cap(sample, p.region_eta, p.region_phi, p.region_cap)


def student_candidates(sample, kept: np.ndarray, p) -> np.ndarray:
    """(n_particles,) bool: the candidates the student's network weighs: those the cap keeps (`kept`,
    ``region_kept``), less the tracks when ``student_tracks`` is 'vertex'."""
    return kept & ~sample.has_track if p.student_tracks == "vertex" else kept


def network_inputs(sample, kept: np.ndarray, p) -> np.ndarray:
    """(n, len(INPUT_NAMES)) float32 network inputs of the ``student_candidates``, in order; their local sums run
    over every candidate the cap keeps (`kept`, ``region_kept``)."""
    capped = sample.select(kept)
    x = student_inputs(capped)
    return x[~capped.has_track] if p.student_tracks == "vertex" else x


def student_weights(sample, kept: np.ndarray, p, network: np.ndarray) -> np.ndarray:
    """(n_particles,) float32 weights of the student: the network's outputs (one per ``student_candidates`` row,
    clipped to [0, 1]), the CHS weight on the tracks the cap keeps (`kept`; 'vertex'), 0 on those it drops."""
    weight = np.zeros(len(sample.pt), np.float32)
    if p.student_tracks == "vertex":
        tracks = kept & sample.has_track
        weight[tracks] = chs_weights(sample)[tracks]
    weight[student_candidates(sample, kept, p)] = np.clip(network, 0.0, 1.0)
    return weight


def train_weight_student(x: np.ndarray, teacher_weight: np.ndarray, pt: np.ndarray, train: np.ndarray,
                         val: np.ndarray, out_dir: pathlib.Path, precision: Precision = Precision(), hidden=(32, 16),
                         epochs: int = 20, batch_size: int = 1024, lr: float = 3e-3, seed: int = 0,
                         max_train: int | None = None, pt_power: float = 1.0, progress: bool = True) -> dict:
    """Regress teacher_weight (MSE weighted by pT**pt_power) on candidates `train` (bool mask), early stopping on
    `val`.

    max_train caps the training candidates (a random subset, fixed by seed). Writes out_dir/{model.h5,
    predictions.h5 ('weight' (n,) = student output for every candidate), preprocess.json, history.json}; returns
    params, bits, best_val_loss, history, seconds and val_mse_teacher_vs_constant (the loss of a constant guess).
    """
    tf.keras.utils.set_random_seed(seed)
    x = np.asarray(x, np.float32)
    y = np.asarray(teacher_weight, np.float32)
    if x.ndim != 2 or x.shape[1] != len(INPUT_NAMES) or y.shape != (len(x),) or len(pt) != len(x):
        raise ValueError(f"need x (n, {len(INPUT_NAMES)}), teacher_weight (n,) and pt (n,); got {x.shape}, {y.shape}, "
                         f"{np.shape(pt)}")
    if not (np.all(np.isfinite(y)) and np.all((y >= 0) & (y <= 1))):
        raise ValueError("teacher_weight must lie in [0, 1]")
    train, val = np.flatnonzero(train), np.flatnonzero(val)
    if not len(train) or not len(val):
        raise ValueError(f"need training and validation candidates, got {len(train)} and {len(val)}")
    if max_train is not None and len(train) > max_train:
        train = np.sort(np.random.default_rng(seed).choice(train, max_train, replace=False))
    sample_weight = np.asarray(pt, np.float64) ** pt_power
    sample_weight = (sample_weight / np.mean(sample_weight[train])).astype(np.float32)
    model = build_student(x.shape[1], 1, hidden, precision, name="pileup_student")
    model.compile(optimizer=tf.keras.optimizers.Adam(lr), loss="mse", weighted_metrics=[])
    fitted = fit_with_early_stopping(model, (x[train], y[train], sample_weight[train]),
                                     (x[val], y[val], sample_weight[val]), epochs, batch_size, progress, "pileup student")
    weight = model.predict(x, batch_size=16384, verbose=0)[:, 0].astype(np.float32)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "model.h5", ".h5") as tmp:
        model.save(tmp, include_optimizer=False, save_format="h5")
    write_arrays_atomic(out_dir / "predictions.h5", {"weight": weight})
    write_json_atomic(out_dir / "preprocess.json", {"inputs": list(INPUT_NAMES), "pt_scale": PT_SCALE,
                                                    "local_radii": list(LOCAL_RADII), "input_type": precision.input.hls()})
    constant = float(np.average((y[val] - np.average(y[val], weights=sample_weight[val])) ** 2,
                                weights=sample_weight[val]))
    result = {"kind": "pileup_student", "target": f"teacher PV probability (MSE weighted by pT^{pt_power:g})",
              "hidden": list(hidden), "pt_power": pt_power,
              "params": int(model.count_params()), "bits": precision.as_dict(), "n_train": int(len(train)),
              "val_mse_constant": constant, **fitted}
    write_json_atomic(out_dir / "history.json", result)
    return result
