"""Train an anomaly-detection teacher on background L1 objects; write model.pt, model.onnx, scores.h5, history.json.

The models and the reconstruction loss are in teachers/autoencoders.py.
"""

from __future__ import annotations

import pathlib
import time

import numpy as np
import torch

from l1forge.core.artifacts import atomic_path, write_arrays_atomic, write_json_atomic

from .autoencoders import N_SLOTS, SIZES, build_autoencoder
from .export import export_onnx
from .models import count_params
from .train import Precision, copy_to_cpu, fit, model_device, prepare, resolve_device

AE_KINDS = ("transformer", "gnn")
SCORES = ("reco", "latent", "kl")  # reconstruction loss (default, the ONNX output), sum(mu^2) or the KL term
SCORE_DATASETS = {"reco": "score", "latent": "latent_score", "kl": "kl_score"}  # in scores.h5
ONNX_CHECK_EVENTS = 256


def _objects(objects) -> np.ndarray:
    objects = np.ascontiguousarray(objects, np.float32)
    if objects.ndim != 3 or objects.shape[1:] != (N_SLOTS, 4):
        raise ValueError(f"objects must have shape (N, {N_SLOTS}, 4), got {objects.shape}")
    return objects


def anomaly_scores(model: torch.nn.Module, objects: np.ndarray, batch_size: int = 4096,
                   score: str = "reco", device: str | torch.device | None = None) -> np.ndarray:
    """Anomaly scores (N,) float32 in input order, model in eval mode: "reco" (default), "latent" (sum mu^2) or "kl";
    on `device` ("auto", "cpu", "cuda"; None: where the model is), in float32 (scores are sums of squares)."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, not {score!r}")
    objects = _objects(objects)
    device = model_device(model) if device is None else (
        device if isinstance(device, torch.device) else resolve_device(device))
    model.to(device)
    x = torch.from_numpy(objects).to(device)
    fn = {"reco": model, "latent": model.latent_score, "kl": model.kl_score}[score]
    model.eval()
    with torch.no_grad():
        out = [fn(x[i : i + batch_size]).float().cpu().numpy() for i in range(0, len(objects), batch_size)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def _evaluate(model, x, w, idx, batch_size, precision):
    """{"val_loss": weighted mean reco + beta KL, "val_score": weighted mean reco} on events idx, with z = mu."""
    model.eval()
    loss = torch.zeros((), dtype=torch.float64, device=x.device)
    reco = torch.zeros_like(loss)
    with torch.no_grad(), precision.autocast():
        for i in range(0, len(idx), batch_size):
            b = torch.from_numpy(idx[i : i + batch_size]).to(x.device)
            r, kl = model.losses(x[b])
            wb = w[b]
            loss += (wb * (r.float() + model.beta * kl.float())).sum()
            reco += (wb * r.float()).sum()
    loss, reco = float(loss), float(reco)
    total = float(w[idx].sum())
    return {"val_loss": loss / total, "val_score": reco / total}


def load_anomaly_teacher(out_dir: pathlib.Path) -> torch.nn.Module:
    """Rebuild the best model from out_dir/model.pt, in eval mode."""
    ckpt = torch.load(pathlib.Path(out_dir) / "model.pt", weights_only=True, map_location="cpu")
    model = build_autoencoder(ckpt["kind"], ckpt["size"], **ckpt["hyperparameters"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def train_anomaly_teacher(kind: str, objects: np.ndarray, split: np.ndarray, out_dir: pathlib.Path,
                          size: str = "demo", epochs: int = 10, batch_size: int = 256, lr: float = 1e-3,
                          seed: int = 0, max_steps: int | None = None, weights: np.ndarray | None = None,
                          progress: bool = True, background: np.ndarray | None = None, pt_target: str = "log",
                          device: str = "auto") -> dict:
    """Train on background events of split==0, keep the epoch with the lowest weighted split==1 background loss.

    `background` (N,) bool marks the events to learn from (None: all); signal events are only scored.
    `weights` (N,) per-event weights of the background (None: equal) weight the loss means.
    `max_steps` caps the total number of optimiser steps. `pt_target` ("log", "linear") is the reconstruction target
    of pT (teachers/autoencoders.py). `device`: "auto" (CUDA when torch sees a GPU), "cpu" or "cuda" (mixed precision
    on GPU); model.pt and the ONNX export come from a CPU copy. Writes to out_dir (each file atomically):
    model.pt, model.onnx (input 'objects' (B, 19, 4), output 'score' (B,) = reconstruction loss),
    scores.h5 (datasets 'score', 'latent_score' and 'kl_score', (N,) float32 for all events given), history.json.
    """
    if kind not in AE_KINDS:
        raise ValueError(f"unknown anomaly teacher kind {kind!r}; expected one of {AE_KINDS}")
    t_start = time.time()
    out_dir, dev = prepare(epochs, max_steps, seed, out_dir, device)

    objects, split = _objects(objects), np.asarray(split)
    bkg = np.ones(len(objects), bool) if background is None else np.asarray(background, bool)
    w = np.ones(len(objects)) if weights is None else np.asarray(weights, np.float64)
    if not (len(split) == len(bkg) == len(w) == len(objects)):
        raise ValueError("objects, split, weights and background must have the same length")
    train_idx, val_idx = np.flatnonzero((split == 0) & bkg), np.flatnonzero((split == 1) & bkg)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ValueError(f"need training and validation background, got {len(train_idx)} and {len(val_idx)} events")
    x = torch.from_numpy(objects).to(dev)  # built once on the device; batches are index_select-ed from it
    w = torch.from_numpy((w / w[train_idx].mean()).astype(np.float32)).to(dev)

    model = build_autoencoder(kind, size, pt_target=pt_target)  # on CPU: the same initial weights on every device
    model.features.fit(objects[train_idx], (objects[train_idx, :, 0] > 0).astype(np.float32))
    model.to(dev)
    precision = Precision(dev)

    def batch_loss(b):
        i = torch.from_numpy(b).to(dev, non_blocking=True)
        reco, kl = model.losses(x.index_select(0, i))
        wb = w.index_select(0, i)
        return (wb * (reco.float() + model.beta * kl.float())).sum() / wb.sum()

    validation = Precision(dev, training=False)
    history, best, events_per_s = fit(model, train_idx, batch_loss,
                                      lambda: _evaluate(model, x, w, val_idx, 4 * batch_size, validation), epochs,
                                      batch_size, lr, seed, max_steps, progress, f"anomaly {kind}/{size}", "events",
                                      precision)
    scores = {name: anomaly_scores(model, objects, 4 * batch_size, score=score) for score, name in SCORE_DATASETS.items()}
    model = copy_to_cpu(model)
    with atomic_path(out_dir / "model.pt") as tmp:
        torch.save({"state_dict": model.state_dict(), "kind": kind, "size": size,
                    "hyperparameters": {**SIZES[kind][size], "pt_target": pt_target}}, tmp)
    # relative check: scores of a linear-pT teacher reach hundreds
    onnx_diff = export_onnx(model, out_dir / "model.onnx", objects[val_idx[:ONNX_CHECK_EVENTS]], None,
                            input_names=("objects",), output_name="score", relative=True)
    write_arrays_atomic(out_dir / "scores.h5", scores, {"kind": kind, "size": size, "score": "reco",
                                                        "pt_target": pt_target})
    write_json_atomic(out_dir / "history.json", history)
    return {"kind": kind, "size": size, "pt_target": pt_target, "params": count_params(model), "best_epoch": best["epoch"],
            "best_val_loss": best["val_loss"], "history": history, "onnx_max_abs_diff": onnx_diff,
            "train_events_per_s": events_per_s, "seconds": time.time() - t_start, "device": str(dev)}
