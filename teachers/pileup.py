"""Train a per-particle pileup-mitigation teacher; write model.pt, model.onnx, weights.h5, history.json.

Data are flat candidate arrays as events.pfcands.read_pileup gives them: features (n, 11) (`sample.features()`),
event e owning rows offsets[e]:offsets[e + 1], per-candidate truth (the primary-vertex fraction in [0, 1]: is_pv,
or a merged tower's PV share) and per-event split (0 train, 1 val, 2 test). Two trainings (TRAININGS): "truth"
fits the truth fraction (binary cross-entropy with soft targets); "optimal_transport" never sees it and fits the
weighted event to the paired no-pileup event (teachers/pileup_ot.py), the truth serving for evaluation only.
Events are sorted by size into batches padded to their longest event, so padding stays small; padded slots never
change a real candidate's output (teachers/pileup_models.py) and carry no loss. The models are in
teachers/pileup_models.py.
"""

from __future__ import annotations

import pathlib
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn

from l1forge.core.artifacts import atomic_path, write_arrays_atomic, write_json_atomic

from .export import export_onnx
from .models import count_params
from .pileup_models import HAS_TRACK, N_INPUTS, SIZES, build_pileup_model
from .pileup_ot import binned, cell_index, cell_points, met, ot_loss
from .train import Precision, _is_oom, copy_to_cpu, fit, model_device, out_of_memory, prepare, resolve_device

KINDS = ("gnn", "transformer")
TRAININGS = ("truth", "optimal_transport")
SLOT_BUDGET = 2**24  # max events x slots^2 per batch (the k-NN distance matrix): one or two events at pileup 200
NORM_CANDIDATES = 500_000  # input standardisation from at most this many training candidates
ONNX_CHECK_EVENTS = 8
ONNX_AXES = {name: {0: "batch", 1: "particles"} for name in ("candidates", "mask", "weight")}


class _Weights(nn.Module):
    """The exported graph: PV probability (B, P), 0 on padded slots."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, candidates, mask):
        return torch.sigmoid(self.model(candidates, mask))


def size_batches(offsets: np.ndarray, events: np.ndarray, batch_size: int,
                 budget: int = SLOT_BUDGET) -> list[np.ndarray]:
    """`events` sorted by size into batches of at most batch_size events and at most `budget` events x slots^2."""
    counts = np.diff(offsets)
    order = np.asarray(events)[np.argsort(counts[events], kind="stable")]
    batches, start = [], 0
    while start < len(order):
        p = max(int(counts[order[min(start + batch_size, len(order)) - 1]]), 1)
        n = int(np.clip(budget // p**2, 1, batch_size))
        batches.append(order[start : start + n])
        start += n
    return batches


def pad_events(features: np.ndarray, offsets: np.ndarray, events: np.ndarray):
    """Candidates (B, P, 11) and mask (B, P) float32 of `events`, P = their largest size, and the flat row of each
    real slot in mask order (B, P row-major)."""
    counts = offsets[events + 1] - offsets[events]
    p = max(int(counts.max()), 1)
    mask = np.arange(p)[None, :] < counts[:, None]
    rows = (offsets[events][:, None] + np.arange(p)[None, :])[mask]
    x = np.zeros((len(events), p, features.shape[1]), np.float32)
    x[mask] = features[rows]
    return torch.from_numpy(x), torch.from_numpy(mask.astype(np.float32)), rows


def _logits(model, features, offsets, events, batch_size, precision=None):
    """(rows, PV logits) of every candidate of `events`, model in eval mode, on the model's device."""
    device = model_device(model)
    precision = precision or Precision(device, training=False)
    model.eval()
    rows, logits = [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
    with torch.no_grad(), precision.autocast():
        for b in size_batches(offsets, events, batch_size):
            x, mask, r = pad_events(features, offsets, b)
            x, mask = x.to(device), mask.to(device)
            rows.append(r)
            logits.append(model(x, mask)[mask > 0].float().cpu().numpy())
    return np.concatenate(rows), np.concatenate(logits)


def predict_weights(model: nn.Module, features: np.ndarray, offsets: np.ndarray, batch_size: int = 64,
                    device: str | torch.device | None = None) -> np.ndarray:
    """PV probability (n,) float32 of every candidate, in row order; events batched by size, memory bounded by
    SLOT_BUDGET; on `device` ("auto", "cpu", "cuda"; None: where the model is)."""
    if device is not None:
        model.to(device if isinstance(device, torch.device) else resolve_device(device))
    features, offsets = np.ascontiguousarray(features, np.float32), np.asarray(offsets, np.int64)
    weights = np.zeros(len(features), np.float32)
    rows, logits = _logits(model, features, offsets, np.arange(len(offsets) - 1), batch_size)
    weights[rows] = torch.sigmoid(torch.from_numpy(logits)).numpy()
    return weights


def _bce(logits, is_pv, weight):
    """Weighted mean binary cross-entropy."""
    return (F.binary_cross_entropy_with_logits(logits, is_pv, reduction="none") * weight).sum() / weight.sum()


def _auc(is_pv, score, weight=None):
    return float(roc_auc_score(is_pv, score, sample_weight=weight)) if 0 < is_pv.mean() < 1 else float("nan")


def _evaluate(model, features, offsets, is_pv, events, batch_size, pt_weighted, precision=None, paired=None):
    """Validation loss (as trained: the OT loss, averaged over crossings, where `paired` is given), per-candidate
    AUC against the truth (fraction >= 0.5) overall, on candidates without a track, and pT-weighted."""
    rows, logits = _logits(model, features, offsets, events, batch_size, precision)
    y, pt, neutral = is_pv[rows], features[rows, 0], features[rows, HAS_TRACK] == 0
    t = torch.from_numpy
    if paired is None:
        loss = float(_bce(t(logits), t(y), t(pt if pt_weighted else np.ones_like(pt))))
    else:
        weight = np.zeros(len(features), np.float32)
        weight[rows] = torch.sigmoid(t(logits)).numpy()
        loss = float(np.mean(ot_event_losses(weight, features, offsets, events, paired)))
    y = (y >= 0.5).astype(np.float32)
    return {"val_loss": loss, "val_auc": _auc(y, logits), "val_auc_neutral": _auc(y[neutral], logits[neutral]),
            "val_auc_pt": _auc(y, logits, pt)}


def paired_targets(paired: dict, n_events: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_events, G) pT per OT cell and (n_events, 2) MET of the paired no-pileup events (dict of flat "pt", "eta",
    "phi" and "offsets" (n_events + 1), as events.pfcands.NoPileup holds them)."""
    offsets = np.asarray(paired["offsets"], np.int64)
    if len(offsets) != n_events + 1:
        raise ValueError(f"the paired sample has {len(offsets) - 1} events, the crossings {n_events}")
    event = np.repeat(np.arange(n_events), np.diff(offsets))
    pt, phi = np.asarray(paired["pt"], np.float64), np.asarray(paired["phi"], np.float64)
    g = len(cell_points())
    grid = np.bincount(event * g + cell_index(paired["eta"], phi), pt, n_events * g).reshape(n_events, g)
    vector = -np.stack([np.bincount(event, pt * np.cos(phi), n_events),
                        np.bincount(event, pt * np.sin(phi), n_events)], 1)
    return grid.astype(np.float32), vector.astype(np.float32)


def ot_event_losses(weight: np.ndarray, features: np.ndarray, offsets: np.ndarray, events: np.ndarray,
                    paired: tuple[np.ndarray, np.ndarray], block: int = 256) -> np.ndarray:
    """(len(events),) OT loss (teachers/pileup_ot.py) of per-candidate weights (n,) on the chosen events, against
    the paired targets (``paired_targets``), on CPU."""
    out = []
    for lo in range(0, len(events), block):
        ev = np.asarray(events[lo:lo + block])
        rows = np.concatenate([np.arange(offsets[e], offsets[e + 1]) for e in ev]) if len(ev) else np.zeros(0, int)
        local = np.repeat(np.arange(len(ev)), offsets[ev + 1] - offsets[ev])
        ptw = features[rows, 0].astype(np.float64) * weight[rows]
        phi = features[rows, 2].astype(np.float64)
        g = paired[0].shape[1]
        grid = np.bincount(local * g + cell_index(features[rows, 1], phi), ptw, len(ev) * g).reshape(len(ev), g)
        vector = -np.stack([np.bincount(local, ptw * np.cos(phi), len(ev)),
                            np.bincount(local, ptw * np.sin(phi), len(ev))], 1)
        t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
        with torch.no_grad():
            out.append(ot_loss(t(grid), t(paired[0][ev]), t(vector), t(paired[1][ev])).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def _padded_batch(features, offsets, is_pv, events, pt_weighted, device, paired=None):
    """One training batch, padded once, on `device`: (candidates, mask, is_pv target, loss weight), or for OT
    training (`paired`: ``paired_targets``) (candidates, mask, OT cell per slot, target grid, target MET)."""
    x, mask, rows = pad_events(features, offsets, events)
    if paired is not None:
        cell = torch.zeros(mask.shape, dtype=torch.int64)
        cell[mask > 0] = torch.from_numpy(cell_index(features[rows, 1], features[rows, 2]))
        return tuple(t.to(device) for t in (x, mask, cell, torch.from_numpy(paired[0][events]),
                                            torch.from_numpy(paired[1][events])))
    y, w = torch.zeros_like(mask), mask.clone()
    y[mask > 0] = torch.from_numpy(is_pv[rows])
    if pt_weighted:
        w[mask > 0] = torch.from_numpy(features[rows, 0])
    return tuple(t.to(device) for t in (x, mask, y, w))


def _ot_batch_loss(model, x, mask, cell, grid, vector, points):
    """Mean OT loss of one padded batch: the model's weights applied to the candidates' pT."""
    weight = torch.sigmoid(model(x, mask).float()) * mask
    ptw = x[..., 0].float() * weight
    phi = x[..., 2].float()
    return ot_loss(binned(ptw, cell), grid, met(ptw, torch.cos(phi), torch.sin(phi)), vector, points).mean()


def load_pileup_teacher(out_dir: pathlib.Path) -> nn.Module:
    """Rebuild the best model from out_dir/model.pt, in eval mode."""
    ckpt = torch.load(pathlib.Path(out_dir) / "model.pt", weights_only=True, map_location="cpu")
    model = build_pileup_model(ckpt["kind"], ckpt["size"], **ckpt["hyperparameters"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def train_pileup_teacher(kind: str, features: np.ndarray, offsets: np.ndarray, is_pv: np.ndarray, split: np.ndarray,
                         out: pathlib.Path, size: str = "demo", epochs: int = 3, batch_size: int = 16,
                         lr: float = 2e-3, seed: int = 0, max_steps: int | None = None, pt_weighted: bool = False,
                         progress: bool = True, device: str = "auto", training: str = "truth",
                         paired: dict | None = None) -> dict:
    """Train on the events of split 0, keep the epoch with the lowest split-1 loss, write artefacts to `out`.

    `is_pv`: the truth, the PV fraction of each candidate in [0, 1]. `training` "truth": binary cross-entropy on it
    (soft targets) over real candidates, each weighted by its pT if `pt_weighted`; "optimal_transport": the OT loss
    against `paired` (the no-pileup events of every crossing: flat "pt", "eta", "phi", "offsets"), the truth used
    only for the reported AUCs.
    `batch_size` is in events; `max_steps` caps the optimiser steps. Writes (each atomically) model.pt,
    model.onnx (inputs 'candidates' (B, P, 11) raw and 'mask' (B, P), output 'weight' (B, P); dynamic B and P,
    checked against torch with onnxruntime), weights.h5 (dataset 'weight' (n,) float32: PV probability of every
    candidate of every split) and history.json. `device`: "auto" (CUDA when torch sees a GPU), "cpu" or "cuda"
    (mixed precision on GPU); the padded training batches are built once, on the device; model.pt and the ONNX
    export come from a CPU copy.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown pileup teacher kind {kind!r}; expected one of {KINDS}")
    if training not in TRAININGS:
        raise ValueError(f"unknown pileup teacher training {training!r}; expected one of {TRAININGS}")
    if training == "optimal_transport" and paired is None:
        raise ValueError("optimal_transport training needs the paired no-pileup events (paired=...)")
    t_start = time.time()
    out, dev = prepare(epochs, max_steps, seed, out, device)
    features, offsets = np.ascontiguousarray(features, np.float32), np.asarray(offsets, np.int64)
    is_pv, split = np.asarray(is_pv, np.float32), np.asarray(split)
    n = len(features)
    if features.shape != (n, N_INPUTS) or is_pv.shape != (n,) or offsets[-1] != n or split.shape != (len(offsets) - 1,):
        raise ValueError(f"need features (n, {N_INPUTS}), is_pv (n,), offsets (n_events + 1,) ending at n and split "
                         f"(n_events,); got {features.shape}, {is_pv.shape}, {offsets.shape}, {split.shape}")
    train_events, val_events = np.flatnonzero(split == 0), np.flatnonzero(split == 1)
    if len(train_events) == 0 or len(val_events) == 0:
        raise ValueError(f"need training and validation events, got {len(train_events)} and {len(val_events)}")
    if np.any((is_pv < 0) | (is_pv > 1)):
        raise ValueError("is_pv (the truth PV fraction) must lie in [0, 1]")
    targets = None if training == "truth" else paired_targets(paired, len(offsets) - 1)

    model = build_pileup_model(kind, size)  # on CPU: the same initial weights on every device
    train_rows = np.flatnonzero(np.repeat(split == 0, np.diff(offsets)))
    sample = features[train_rows[:: -(-len(train_rows) // NORM_CANDIDATES)], None]
    model.features.fit(sample, np.ones(sample.shape[:2], np.float32), chunk=65536)
    model.to(dev)
    precision = Precision(dev)
    batches = size_batches(offsets, train_events, batch_size)
    try:
        padded = [_padded_batch(features, offsets, is_pv, b, pt_weighted, dev, targets) for b in batches]
    except RuntimeError as err:
        if _is_oom(err):
            raise out_of_memory(err, dev, "pileup.teacher_batch_events", batch_size) from None
        raise

    points = cell_points(dev)

    def batch_loss(i):
        if targets is not None:
            return _ot_batch_loss(model, *padded[int(i[0])], points)
        x, mask, y, w = padded[int(i[0])]
        return _bce(model(x, mask), y, w)

    validation = Precision(dev, training=False)
    history, best, _ = fit(model, np.arange(len(batches)), batch_loss,
                           lambda: _evaluate(model, features, offsets, is_pv, val_events, 4 * batch_size, pt_weighted,
                                             validation, targets),
                           epochs, 1, lr, seed, max_steps, progress, f"pileup {kind}/{size}/{training}", "batches",
                           precision,
                           batch_setting="pileup.teacher_batch_events", batch_value=batch_size)
    weights = predict_weights(model, features, offsets, 4 * batch_size)
    model = copy_to_cpu(model)
    with atomic_path(out / "model.pt") as tmp:
        torch.save({"state_dict": model.state_dict(), "kind": kind, "size": size, "hyperparameters": SIZES[kind][size]},
                   tmp)
    x, mask, _ = pad_events(features, offsets, val_events[:ONNX_CHECK_EVENTS])
    onnx_diff = export_onnx(_Weights(model), out / "model.onnx", x.numpy(), mask.numpy(),
                            input_names=("candidates", "mask"), output_name="weight", dynamic_axes=ONNX_AXES)
    write_arrays_atomic(out / "weights.h5", {"weight": weights},
                        {"kind": kind, "size": size})
    write_json_atomic(out / "history.json", history)
    steps = len(batches) * epochs if max_steps is None else min(max_steps, len(batches) * epochs)
    return {"kind": kind, "size": size, "training": training, "params": count_params(model), "pt_weighted": pt_weighted,
            "best_epoch": best["epoch"], "best_val_loss": best["val_loss"],
            **{k: best[k] for k in ("val_auc", "val_auc_neutral", "val_auc_pt")}, "epochs_run": len(history),
            "steps": steps, "train_seconds": sum(h["seconds"] for h in history), "history": history,
            "onnx_max_abs_diff": onnx_diff, "seconds": time.time() - t_start, "device": str(dev)}
