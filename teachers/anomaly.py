"""Train an anomaly-detection teacher on background L1 objects; write model.pt, model.onnx, scores.h5, history.json.

The models and the reconstruction loss are in teachers/autoencoders.py.
"""

from __future__ import annotations

import copy
import pathlib
import time

import numpy as np
import onnx
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from l1forge.io import atomic_path, write_arrays_atomic, write_json_atomic

from .autoencoders import N_SLOTS, SIZES, build_autoencoder
from .export import ONNX_INPUTS, ONNX_OUTPUT, export_onnx
from .models import count_params

AE_KINDS = ("transformer", "gnn")
SCORES = ("reco", "latent")  # reconstruction loss (default, the ONNX output) or sum(mu^2)
ONNX_CHECK_EVENTS = 256


def _objects(objects) -> np.ndarray:
    objects = np.ascontiguousarray(objects, np.float32)
    if objects.ndim != 3 or objects.shape[1:] != (N_SLOTS, 4):
        raise ValueError(f"objects must have shape (N, {N_SLOTS}, 4), got {objects.shape}")
    return objects


def anomaly_scores(model: torch.nn.Module, objects: np.ndarray, batch_size: int = 4096,
                   score: str = "reco") -> np.ndarray:
    """Anomaly scores (N,) float32 in input order, model in eval mode: "reco" (default) or "latent" (sum mu^2)."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, not {score!r}")
    objects = _objects(objects)
    fn = model if score == "reco" else model.latent_score
    model.eval()
    with torch.no_grad():
        out = [fn(torch.from_numpy(objects[i : i + batch_size])).numpy() for i in range(0, len(objects), batch_size)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def _evaluate(model, x, w, idx, batch_size):
    """Weighted mean loss (reco + beta KL) and weighted mean reco score on events idx, with z = mu."""
    model.eval()
    loss = reco = 0.0
    with torch.no_grad():
        for i in range(0, len(idx), batch_size):
            b = idx[i : i + batch_size]
            r, kl = model.losses(x[b])
            loss += float((w[b] * (r + model.beta * kl)).sum())
            reco += float((w[b] * r).sum())
    total = float(w[idx].sum())
    return loss / total, reco / total


def _export(model, path, check):
    """ONNX with input 'objects' (B, 19, 4) and output 'score' (B,); returns max |onnx - torch| on `check`.

    export_onnx names its tensors for jet taggers, so they are renamed here.
    """
    diff = export_onnx(model, path, check, None)
    names = {ONNX_INPUTS[0]: "objects", ONNX_OUTPUT: "score"}
    proto = onnx.load(str(path))
    graph = proto.graph
    for value in (*graph.input, *graph.output):
        value.name = names.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]
    onnx.checker.check_model(proto)
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
    return diff


def load_anomaly_teacher(out_dir: pathlib.Path) -> torch.nn.Module:
    """Rebuild the best model from out_dir/model.pt, in eval mode."""
    ckpt = torch.load(pathlib.Path(out_dir) / "model.pt", weights_only=True)
    model = build_autoencoder(ckpt["kind"], ckpt["size"], **ckpt["hyperparameters"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def train_anomaly_teacher(kind: str, objects: np.ndarray, split: np.ndarray, out_dir: pathlib.Path,
                          size: str = "demo", epochs: int = 10, batch_size: int = 256, lr: float = 1e-3,
                          seed: int = 0, max_steps: int | None = None, weights: np.ndarray | None = None,
                          progress: bool = True, background: np.ndarray | None = None) -> dict:
    """Train on background events of split==0, keep the epoch with the lowest weighted split==1 background loss.

    `background` (N,) bool marks the events to learn from (None: all); signal events are only scored.
    `weights` (N,) per-event weights of the background (None: equal) weight the loss means.
    `max_steps` caps the total number of optimiser steps. Writes to out_dir (each file atomically):
    model.pt, model.onnx (input 'objects' (B, 19, 4), output 'score' (B,) = reconstruction loss),
    scores.h5 (datasets 'score' and 'latent_score', (N,) float32 for all events given), history.json.
    """
    if kind not in AE_KINDS:
        raise ValueError(f"unknown anomaly teacher kind {kind!r}; expected one of {AE_KINDS}")
    if epochs < 1 or (max_steps is not None and max_steps < 1):
        raise ValueError(f"need epochs >= 1 and max_steps >= 1 (or None), got {epochs} and {max_steps}")
    t_start = time.time()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    objects, split = _objects(objects), np.asarray(split)
    bkg = np.ones(len(objects), bool) if background is None else np.asarray(background, bool)
    w = np.ones(len(objects)) if weights is None else np.asarray(weights, np.float64)
    if not (len(split) == len(bkg) == len(w) == len(objects)):
        raise ValueError("objects, split, weights and background must have the same length")
    train_idx, val_idx = np.flatnonzero((split == 0) & bkg), np.flatnonzero((split == 1) & bkg)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ValueError(f"need training and validation background, got {len(train_idx)} and {len(val_idx)} events")
    x = torch.from_numpy(objects)
    w = torch.from_numpy((w / w[train_idx].mean()).astype(np.float32))

    model = build_autoencoder(kind, size)
    model.features.fit(objects[train_idx], (objects[train_idx, :, 0] > 0).astype(np.float32))
    steps_per_epoch = -(-len(train_idx) // batch_size)
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.1)

    history, best, best_state, step, train_seconds, train_events = [], None, None, 0, 0.0, 0
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[info]}"))
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task(f"anomaly {kind}/{size}", total=total, info="")
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
                reco, kl = model.losses(x[b])
                loss = (w[b] * (reco + model.beta * kl)).sum() / w[b].sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                seen += len(b)
                losses.append(loss.item())
                bar.update(task, advance=1, info=f"epoch {epoch + 1}/{epochs} loss {losses[-1]:.3f}")
            seconds = time.time() - t0
            train_seconds, train_events = train_seconds + seconds, train_events + seen
            val_loss, val_score = _evaluate(model, x, w, val_idx, 4 * batch_size)
            history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_loss": val_loss,
                            "val_score": val_score, "seconds": seconds, "events_per_s": seen / seconds})
            bar.update(task, info=f"epoch {epoch + 1}/{epochs} val loss {val_loss:.3f}")
            if best is None or val_loss < best["val_loss"]:
                best, best_state = history[-1], copy.deepcopy(model.state_dict())

    model.load_state_dict(best_state)
    model.eval()
    with atomic_path(out_dir / "model.pt") as tmp:
        torch.save({"state_dict": model.state_dict(), "kind": kind, "size": size,
                    "hyperparameters": SIZES[kind][size]}, tmp)
    onnx_diff = _export(model, out_dir / "model.onnx", objects[val_idx[:ONNX_CHECK_EVENTS]])
    scores = {"score": anomaly_scores(model, objects, 4 * batch_size),
              "latent_score": anomaly_scores(model, objects, 4 * batch_size, score="latent")}
    write_arrays_atomic(out_dir / "scores.h5", scores, {"kind": kind, "size": size, "score": "reco"})
    write_json_atomic(out_dir / "history.json", history)
    return {"kind": kind, "size": size, "params": count_params(model), "best_epoch": best["epoch"],
            "best_val_loss": best["val_loss"], "history": history, "onnx_max_abs_diff": onnx_diff,
            "train_events_per_s": train_events / max(train_seconds, 1e-9), "seconds": time.time() - t_start}
