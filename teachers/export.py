"""Atomic file writes and ONNX export with onnxruntime verification."""

from __future__ import annotations

import contextlib
import os
import pathlib
import uuid
import warnings

import numpy as np
import torch

ONNX_INPUTS = ("particles", "mask")
ONNX_OUTPUT = "logits"
ONNX_TOLERANCE = 1e-4


@contextlib.contextmanager
def atomic_path(path: pathlib.Path):
    """Yield a temporary path in path's directory; on success os.replace it onto path."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def export_onnx(model: torch.nn.Module, path: pathlib.Path, particles: np.ndarray, mask: np.ndarray) -> float:
    """Export `model` (eval mode) to ONNX at `path`; return max |onnx - torch| on the given batch.

    Inputs: particles (B, P, 4) float32 raw constituents, mask (B, P) float32; output logits (B, n_classes).
    Raises RuntimeError if the difference exceeds ONNX_TOLERANCE.
    """
    import onnxruntime as ort

    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(particles, np.float32))
    m = torch.from_numpy(np.ascontiguousarray(mask, np.float32))
    batch = {name: {0: "batch"} for name in (*ONNX_INPUTS, ONNX_OUTPUT)}
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shapes are fixed except the batch axis
        torch.onnx.export(model, (x[:2], m[:2]), str(tmp), input_names=list(ONNX_INPUTS), output_names=[ONNX_OUTPUT],
                          dynamic_axes=batch, opset_version=17, dynamo=False)
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run([ONNX_OUTPUT], {"particles": x.numpy(), "mask": m.numpy()})[0]
        diff = float(np.max(np.abs(got - model(x, m).numpy())))
        if not diff < ONNX_TOLERANCE:
            raise RuntimeError(f"ONNX export of {path} differs from torch by {diff:.3g} > {ONNX_TOLERANCE}")
    return diff
