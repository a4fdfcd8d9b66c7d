"""Train a teacher on jet constituents and write model.pt, model.onnx, predictions.h5, history.json."""

from __future__ import annotations

import copy
import json
import pathlib
import time

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from l1forge.core.artifacts import atomic_path

from .export import export_onnx
from .features import make_mask
from .models import SIZES, build_model, count_params, fit_normalization

KINDS = ("gnn", "transformer")
ONNX_CHECK_JETS = 256


def _batch(constituents, mask, jet_features, idx):
    """Model inputs for jets idx, constituents cropped to the longest jet in the batch (padding never matters)."""
    m = mask[idx]
    p = max(int(m.sum(1).max()), 1)
    inputs = (torch.from_numpy(constituents[idx, :p]), torch.from_numpy(m[:, :p]))
    return inputs if jet_features is None else (*inputs, torch.from_numpy(jet_features[idx]))


def _as_float32(array):
    return None if array is None else np.ascontiguousarray(array, np.float32)


def predict_logits(model: torch.nn.Module, constituents: np.ndarray, n_constituents: np.ndarray,
                   jet_features: np.ndarray | None = None, batch_size: int = 1024) -> np.ndarray:
    """Logits (N, n_classes) float32 in input order, with the model in eval mode."""
    constituents, jet_features = _as_float32(constituents), _as_float32(jet_features)
    mask = make_mask(n_constituents, constituents.shape[1])
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(constituents), batch_size):
            idx = np.arange(i, min(i + batch_size, len(mask)))
            out.append(model(*_batch(constituents, mask, jet_features, idx)).numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 5), np.float32)


def _evaluate(model, constituents, mask, jet_features, labels, idx, batch_size):
    """{"val_loss": mean cross-entropy, "val_accuracy": accuracy} on jets idx."""
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(idx), batch_size):
            b = idx[i : i + batch_size]
            logits = model(*_batch(constituents, mask, jet_features, b))
            y = torch.from_numpy(labels[b])
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
    return {"val_loss": loss / len(idx), "val_accuracy": correct / len(idx)}


def _save_model(model, kind, size, n_globals, path):
    hparams = {**SIZES[kind][size], "n_globals": n_globals}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": model.state_dict(), "kind": kind, "size": size, "hyperparameters": hparams}, tmp)


def load_teacher(out_dir: pathlib.Path) -> torch.nn.Module:
    """Rebuild the best model from out_dir/model.pt, in eval mode."""
    ckpt = torch.load(pathlib.Path(out_dir) / "model.pt", weights_only=True)
    model = build_model(ckpt["kind"], ckpt["size"], **ckpt["hyperparameters"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def prepare(epochs: int, max_steps: int | None, seed: int, out_dir: pathlib.Path) -> pathlib.Path:
    """Check epochs >= 1 and max_steps None or >= 1 (else ValueError), seed torch, create and return out_dir."""
    if epochs < 1 or (max_steps is not None and max_steps < 1):
        raise ValueError(f"need epochs >= 1 and max_steps >= 1 (or None), got {epochs} and {max_steps}")
    torch.manual_seed(seed)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def fit(model, train_idx, batch_loss, evaluate, epochs, batch_size, lr, seed, max_steps, progress, label, unit):
    """Train on shuffled batches of train_idx (AdamW, one-cycle schedule), validating after each epoch.

    batch_loss(idx) is the mean loss of a batch; evaluate() returns {"val_loss": ..., more metrics}.
    `max_steps` caps the optimiser steps (training stops mid-epoch; that epoch is still validated).
    Leaves the model in eval mode with the state of the lowest val_loss; returns (history, best history
    entry, training `unit`s per second).
    """
    rng = np.random.default_rng(seed)
    steps_per_epoch = -(-len(train_idx) // batch_size)
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(total, 1), pct_start=0.1)

    history, best, best_state, step, train_seconds, trained = [], None, None, 0, 0.0, 0
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[info]}"))
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task(label, total=total, info="")
        for epoch in range(epochs):
            if step >= total:
                break
            model.train()
            t0, losses, seen = time.time(), [], 0
            order = rng.permutation(train_idx)
            for i in range(0, len(order), batch_size):
                if step >= total:
                    break
                b = order[i : i + batch_size]
                loss = batch_loss(b)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                seen += len(b)
                losses.append(loss.item())
                bar.update(task, advance=1, info=f"epoch {epoch + 1}/{epochs} loss {losses[-1]:.3f}")
            seconds = time.time() - t0
            train_seconds, trained = train_seconds + seconds, trained + seen
            metrics = evaluate()
            history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), **metrics, "seconds": seconds,
                            f"{unit}_per_s": seen / seconds})
            shown = " ".join(f"{k.removeprefix('val_')} {v:.3f}" for k, v in metrics.items())
            bar.update(task, info=f"epoch {epoch + 1}/{epochs} val {shown}")
            if best is None or metrics["val_loss"] < best["val_loss"]:
                best, best_state = history[-1], copy.deepcopy(model.state_dict())

    model.load_state_dict(best_state)
    model.eval()
    return history, best, trained / max(train_seconds, 1e-9)


def train_teacher(kind: str, constituents: np.ndarray, n_constituents: np.ndarray, labels: np.ndarray,
                  split: np.ndarray, out_dir: pathlib.Path, size: str = "demo", epochs: int = 10,
                  batch_size: int = 256, lr: float = 1e-3, seed: int = 0, max_steps: int | None = None,
                  progress: bool = True, jet_features: np.ndarray | None = None) -> dict:
    """Train on split==0, keep the epoch with the lowest split==1 loss, write artefacts to out_dir.

    `jet_features` (N, G), if given, are high-level jet features the teacher sees beside the constituents.
    `max_steps` caps the total number of optimiser steps (training stops mid-epoch; that
    epoch is still validated). See teachers/README.md for the output files.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown teacher kind {kind!r}; expected one of {KINDS}")
    t_start = time.time()
    out_dir = prepare(epochs, max_steps, seed, out_dir)

    constituents, jet_features = _as_float32(constituents), _as_float32(jet_features)
    n_globals = 0 if jet_features is None else jet_features.shape[1]
    mask = make_mask(n_constituents, constituents.shape[1])
    labels = np.asarray(labels).astype(np.int64)
    split = np.asarray(split)
    train_idx, val_idx = np.flatnonzero(split == 0), np.flatnonzero(split == 1)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ValueError(f"need training and validation jets, got {len(train_idx)} and {len(val_idx)}")

    model = build_model(kind, size, n_globals=n_globals)
    fit_normalization(model, constituents[train_idx], mask[train_idx],
                      None if jet_features is None else jet_features[train_idx])

    def batch_loss(b):
        return F.cross_entropy(model(*_batch(constituents, mask, jet_features, b)), torch.from_numpy(labels[b]))

    history, best, jets_per_s = fit(
        model, train_idx, batch_loss,
        lambda: _evaluate(model, constituents, mask, jet_features, labels, val_idx, 4 * batch_size),
        epochs, batch_size, lr, seed, max_steps, progress, f"{kind}/{size}", "jets")
    _save_model(model, kind, size, n_globals, out_dir / "model.pt")
    check = val_idx[:ONNX_CHECK_JETS]
    onnx_diff = export_onnx(model, out_dir / "model.onnx", constituents[check], mask[check],
                            None if jet_features is None else jet_features[check])
    logits = predict_logits(model, constituents, n_constituents, jet_features)
    with atomic_path(out_dir / "predictions.h5") as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("logits", data=logits)
        f.attrs["kind"], f.attrs["size"] = kind, size
    with atomic_path(out_dir / "history.json") as tmp:
        tmp.write_text(json.dumps(history, indent=1))
    return {"kind": kind, "size": size, "params": count_params(model), "best_epoch": best["epoch"],
            "best_val_loss": best["val_loss"], "history": history, "onnx_max_abs_diff": onnx_diff,
            "train_jets_per_s": jets_per_s, "seconds": time.time() - t_start}
