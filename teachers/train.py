"""Train a teacher on jet constituents and write model.pt, model.onnx, predictions.h5, history.json."""

from __future__ import annotations

import contextlib
import copy
import json
import os
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


DEVICES = ("auto", "cpu", "cuda")


class DeviceError(RuntimeError):
    """A device that cannot be used; the message is one line saying what torch sees."""


def resolve_device(device: str = "auto") -> torch.device:
    """torch.device for "auto" (CUDA when torch sees a GPU, else CPU), "cpu" or "cuda" (DeviceError without one)."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; expected one of {DEVICES}")
    if device == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device cuda requested but torch sees no CUDA GPU (torch {torch.__version__}, "
                          f"torch.cuda.is_available() = False, torch.cuda.device_count() = {torch.cuda.device_count()}, "
                          f"built with CUDA {torch.version.cuda}); use --device cpu or auto")
    return torch.device("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")


def cpu_threads() -> int:
    """Torch threads for CPU work: L1FORGE_TORCH_THREADS if set, else the cores this process may run on
    (os.sched_getaffinity: a container's or taskset's limit, which torch's default ignores). With OpenMP threads
    that sleep when idle (OMP_WAIT_POLICY=PASSIVE, set by importing l1forge.teachers before torch) all of them
    can be used even when other processes hold some cores; see teachers/__init__.py for the measurement."""
    if os.environ.get("L1FORGE_TORCH_THREADS"):
        return max(1, int(os.environ["L1FORGE_TORCH_THREADS"]))
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads (`cpu_threads()` unless given) and, where still possible, 1 inter-op thread."""
    threads = threads or cpu_threads()
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # only settable before the first inter-op parallel work
        torch.set_num_interop_threads(1)
    return threads


def cpu_bfloat16() -> bool:
    """Whether CPU work autocasts to bfloat16: ``L1FORGE_CPU_BF16=1`` or ``0`` decides; otherwise yes where the CPU
    has native bfloat16 arithmetic (``avx512_bf16`` or ``amx_bf16`` among the /proc/cpuinfo flags), where oneDNN's
    bfloat16 matrix products run at about twice the float32 rate. Measured on a 2-core AMD EPYC with avx512_bf16
    (demo, batch 128, 12 epochs, GNN teacher / transformer): 1740 -> 3504 / 1068 -> 1702 training jets/s, test
    accuracy 0.736 -> 0.737 / 0.730 -> 0.728, top-vs-QCD AUC 0.9761 -> 0.9761 / 0.9757 -> 0.9753. Without native
    support bfloat16 is emulated and slower, so it stays float32."""
    forced = os.environ.get("L1FORGE_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        flags = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


class Precision:
    """Mixed precision: on GPU autocast to bfloat16 where the GPU supports it, else float16 with a GradScaler; on CPU,
    for ``training`` steps, bfloat16 where ``cpu_bfloat16()`` (no scaling needed), else float32. CPU validation and
    predictions stay float32, so the best validation loss is the saved model's and the written predictions are the
    ONNX model's to 1e-4. Weights, optimiser state, losses and the k-NN search stay float32; ONNX export runs from
    the float32 weights."""

    def __init__(self, device: torch.device, training: bool = True):
        self.device_type = device.type
        self.dtype = None
        if device.type == "cuda":
            self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif device.type == "cpu" and training and cpu_bfloat16():
            self.dtype = torch.bfloat16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def out_of_memory(err: BaseException, device: torch.device, batch_setting: str, batch_size: int) -> RuntimeError:
    """One line for a device out of memory: which batch size to lower; the runner redoes only this stage."""
    return RuntimeError(f"{device.type} out of memory at {batch_setting} = {batch_size}: lower it (e.g. to "
                        f"{max(1, batch_size // 2)}) and rerun; finished stages are kept and this one restarts")


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


class JetTensors:
    """Jets as tensors on the training device, built once: constituents (N, P, 4), mask (N, P), jet features
    (N, G) or None, labels (N,); `inputs(idx)` are the model inputs of jets idx (numpy), cropped to the longest
    jet among them (padding never matters), without per-step numpy-to-torch conversion of the data."""

    def __init__(self, constituents, n_constituents, jet_features, labels, device: torch.device):
        self.device = device
        self.n = np.asarray(n_constituents).astype(np.int64)
        mask = make_mask(self.n, constituents.shape[1])
        self.constituents = torch.from_numpy(constituents).to(device)
        self.mask = torch.from_numpy(mask).to(device)
        self.jet_features = None if jet_features is None else torch.from_numpy(jet_features).to(device)
        self.labels = None if labels is None else torch.from_numpy(np.asarray(labels).astype(np.int64)).to(device)

    def index(self, idx: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(idx, np.int64)).to(self.device, non_blocking=True)

    def inputs(self, idx: np.ndarray, index: torch.Tensor | None = None) -> tuple:
        p = max(int(self.n[idx].max()), 1) if len(idx) else 1
        i = self.index(idx) if index is None else index
        out = (self.constituents[:, :p].index_select(0, i), self.mask[:, :p].index_select(0, i))
        return out if self.jet_features is None else (*out, self.jet_features.index_select(0, i))


def _as_float32(array):
    return None if array is None else np.ascontiguousarray(array, np.float32)


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def predict_logits(model: torch.nn.Module, constituents: np.ndarray, n_constituents: np.ndarray,
                   jet_features: np.ndarray | None = None, batch_size: int = 1024,
                   device: str | torch.device | None = None) -> np.ndarray:
    """Logits (N, n_classes) float32 in input order, with the model in eval mode, on `device` ("auto", "cpu",
    "cuda"; None: where the model is). Under autocast on GPU; the logits are returned as float32."""
    device = model_device(model) if device is None else (
        device if isinstance(device, torch.device) else resolve_device(device))
    model.to(device)
    constituents, jet_features = _as_float32(constituents), _as_float32(jet_features)
    data = JetTensors(constituents, n_constituents, jet_features, None, device)
    precision = Precision(device, training=False)
    model.eval()
    out = []
    with torch.no_grad(), precision.autocast():
        for i in range(0, len(constituents), batch_size):
            idx = np.arange(i, min(i + batch_size, len(constituents)))
            out.append(model(*data.inputs(idx)).float().cpu().numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 5), np.float32)


def _evaluate(model, data: JetTensors, idx, batch_size, precision: Precision):
    """{"val_loss": mean cross-entropy, "val_accuracy": accuracy} on jets idx, from one pass per jet (not the mean
    over reflections that predictions use: a quarter of the cost, every epoch)."""
    model.eval()
    loss = torch.zeros((), device=data.device, dtype=torch.float64)
    correct = torch.zeros((), device=data.device, dtype=torch.int64)
    with torch.no_grad(), precision.autocast():
        for i in range(0, len(idx), batch_size):
            b = idx[i : i + batch_size]
            index = data.index(b)
            logits = model(*data.inputs(b, index), average=False).float()  # one pass per jet
            y = data.labels.index_select(0, index)
            loss += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
    return {"val_loss": float(loss) / len(idx), "val_accuracy": int(correct) / len(idx)}


def _save_model(model, kind, size, n_globals, n_classes, path):
    hparams = {**SIZES[kind][size], "n_globals": n_globals, "n_classes": n_classes}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": model.state_dict(), "kind": kind, "size": size, "hyperparameters": hparams}, tmp)


def load_teacher(out_dir: pathlib.Path) -> torch.nn.Module:
    """Rebuild the best model from out_dir/model.pt, in eval mode."""
    ckpt = torch.load(pathlib.Path(out_dir) / "model.pt", weights_only=True, map_location="cpu")
    model = build_model(ckpt["kind"], ckpt["size"], **ckpt["hyperparameters"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def prepare(epochs: int, max_steps: int | None, seed: int, out_dir: pathlib.Path,
            device: str = "auto") -> tuple[pathlib.Path, torch.device]:
    """Check epochs >= 1 and max_steps None or >= 1 (else ValueError) and the device (DeviceError), set the CPU
    threads (`configure_threads`), seed torch (CPU and every GPU: models are built on CPU, then moved, so the initial
    weights do not depend on the device), create out_dir; return it and the torch.device."""
    if epochs < 1 or (max_steps is not None and max_steps < 1):
        raise ValueError(f"need epochs >= 1 and max_steps >= 1 (or None), got {epochs} and {max_steps}")
    device = resolve_device(device)
    configure_threads()
    torch.manual_seed(seed)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir, device


def fit(model, train_idx, batch_loss, evaluate, epochs, batch_size, lr, seed, max_steps, progress, label, unit,
        precision: Precision | None = None, batch_setting: str = "teachers.batch_size",
        batch_value: int | None = None, weight_decay: float = 1e-2, warmup: float = 0.1):
    """Train on shuffled batches of train_idx (AdamW, one-cycle schedule), validating after each epoch.

    batch_loss(idx) is the mean loss of a batch (run under `precision`'s autocast, scaled by its GradScaler);
    evaluate() returns {"val_loss": ..., more metrics}. `max_steps` caps the optimiser steps (training stops
    mid-epoch; that epoch is still validated). `warmup` is the fraction of steps the learning rate rises.
    Leaves the model in eval mode with the state of the lowest val_loss; returns (history, best history
    entry, training `unit`s per second). A device out of memory becomes one RuntimeError line naming
    `batch_setting` (= `batch_value`, default batch_size) to lower.
    """
    precision = precision or Precision(model_device(model))
    try:
        return _fit(model, train_idx, batch_loss, evaluate, epochs, batch_size, lr, seed, max_steps, progress,
                    label, unit, precision, weight_decay, warmup)
    except RuntimeError as err:
        if _is_oom(err):
            raise out_of_memory(err, model_device(model), batch_setting, batch_value or batch_size) from None
        raise


def _fit(model, train_idx, batch_loss, evaluate, epochs, batch_size, lr, seed, max_steps, progress, label, unit,
         precision, weight_decay, warmup):
    rng = np.random.default_rng(seed)
    steps_per_epoch = -(-len(train_idx) // batch_size)
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(total, 1), pct_start=warmup)
    scaler = precision.scaler

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
                with precision.autocast():
                    loss = batch_loss(b)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
                step += 1
                seen += len(b)
                losses.append(loss.detach().float())  # no device sync per step
                if progress and (step % 10 == 0 or step == total):
                    bar.update(task, info=f"epoch {epoch + 1}/{epochs} loss {float(losses[-1]):.3f}")
                bar.update(task, advance=1)
            if precision.device_type == "cuda":
                torch.cuda.synchronize()  # kernels run asynchronously: count them in this epoch's time
            seconds = time.time() - t0
            train_seconds, trained = train_seconds + seconds, trained + seen
            metrics = evaluate()
            train_loss = float(torch.stack(losses).mean())
            history.append({"epoch": epoch + 1, "train_loss": train_loss, **metrics, "seconds": seconds,
                            f"{unit}_per_s": seen / seconds})
            shown = " ".join(f"{k.removeprefix('val_')} {v:.3f}" for k, v in metrics.items())
            bar.update(task, info=f"epoch {epoch + 1}/{epochs} val {shown}")
            if best is None or metrics["val_loss"] < best["val_loss"]:
                best = history[-1]
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    model.load_state_dict(best_state)
    model.eval()
    return history, best, trained / max(train_seconds, 1e-9)


def copy_to_cpu(model: torch.nn.Module) -> torch.nn.Module:
    """A CPU copy of `model` (eval mode), for saving and ONNX export whatever the training device."""
    return copy.deepcopy(model).cpu().eval()


def train_teacher(kind: str, constituents: np.ndarray, n_constituents: np.ndarray, labels: np.ndarray,
                  split: np.ndarray, out_dir: pathlib.Path, size: str = "demo", epochs: int = 10,
                  batch_size: int = 256, lr: float = 1e-3, seed: int = 0, max_steps: int | None = None,
                  progress: bool = True, jet_features: np.ndarray | None = None, device: str = "auto",
                  n_classes: int | None = None,
                  weight_decay: float = 1e-2, warmup: float = 0.1) -> dict:
    """Train on split==0, keep the epoch with the lowest split==1 loss, write artefacts to out_dir.

    `jet_features` (N, G), if given, are high-level jet features the teacher sees beside the constituents.
    `max_steps` caps the total number of optimiser steps (training stops mid-epoch; that
    epoch is still validated). `device`: "auto" (CUDA when torch sees a GPU), "cpu" or "cuda" (mixed precision on
    GPU); model.pt, the ONNX export and its onnxruntime check come from a CPU copy of the trained weights.
    See teachers/README.md for the output files.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown teacher kind {kind!r}; expected one of {KINDS}")
    t_start = time.time()
    out_dir, dev = prepare(epochs, max_steps, seed, out_dir, device)

    constituents, jet_features = _as_float32(constituents), _as_float32(jet_features)
    n_globals = 0 if jet_features is None else jet_features.shape[1]
    mask = make_mask(n_constituents, constituents.shape[1])
    split = np.asarray(split)
    train_idx, val_idx = np.flatnonzero(split == 0), np.flatnonzero(split == 1)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ValueError(f"need training and validation jets, got {len(train_idx)} and {len(val_idx)}")

    n_classes = n_classes or int(labels.max()) + 1
    model = build_model(kind, size, n_globals=n_globals, n_classes=n_classes)  # on CPU: the same initial weights everywhere
    fit_normalization(model, constituents[train_idx], mask[train_idx],
                      None if jet_features is None else jet_features[train_idx])
    model.to(dev)
    data = JetTensors(constituents, n_constituents, jet_features, labels, dev)
    precision = Precision(dev)

    def batch_loss(b):
        index = data.index(b)
        return F.cross_entropy(model(*data.inputs(b, index)).float(), data.labels.index_select(0, index))

    validation = Precision(dev, training=False)
    history, best, jets_per_s = fit(
        model, train_idx, batch_loss, lambda: _evaluate(model, data, val_idx, 4 * batch_size, validation),
        epochs, batch_size, lr, seed, max_steps, progress, f"{kind}/{size}", "jets", precision,
        weight_decay=weight_decay, warmup=warmup)
    try:
        logits = predict_logits(model, constituents, n_constituents, jet_features, 4 * batch_size)
    except RuntimeError as err:
        if _is_oom(err):
            raise out_of_memory(err, dev, "teachers.batch_size", batch_size) from None
        raise
    cpu_model = copy_to_cpu(model)
    _save_model(cpu_model, kind, size, n_globals, n_classes, out_dir / "model.pt")
    check = val_idx[:ONNX_CHECK_JETS]
    onnx_diff = export_onnx(cpu_model, out_dir / "model.onnx", constituents[check], mask[check],
                            None if jet_features is None else jet_features[check])
    with atomic_path(out_dir / "predictions.h5") as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("logits", data=logits)
        f.attrs["kind"], f.attrs["size"] = kind, size
    with atomic_path(out_dir / "history.json") as tmp:
        tmp.write_text(json.dumps(history, indent=1))
    return {"kind": kind, "size": size, "params": count_params(model), "best_epoch": best["epoch"],
            "best_val_loss": best["val_loss"], "history": history, "onnx_max_abs_diff": onnx_diff,
            "train_jets_per_s": jets_per_s, "seconds": time.time() - t_start, "device": str(dev),
            "mixed_precision": None if precision.dtype is None else str(precision.dtype).removeprefix("torch."),
            "threads": torch.get_num_threads()}
