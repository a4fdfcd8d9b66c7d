"""ONNX export with onnxruntime verification."""

from __future__ import annotations

import pathlib
import warnings

import numpy as np
import torch

from l1forge.core.artifacts import atomic_path

ONNX_INPUTS = ("particles", "mask", "jet_features")
ONNX_OUTPUT = "logits"
ONNX_TOLERANCE = 1e-4


def export_onnx(model: torch.nn.Module, path: pathlib.Path, particles: np.ndarray, mask: np.ndarray,
                jet_features: np.ndarray | None = None, input_names: tuple = ONNX_INPUTS,
                output_name: str = ONNX_OUTPUT, dynamic_axes: dict | None = None, relative: bool = False) -> float:
    """Export `model` (eval mode) to ONNX at `path`; return max |onnx - torch| on the given batch.

    Inputs: particles (B, P, 4) float32 raw constituents, mask (B, P) float32 and, for teachers that use them,
    jet_features (B, G) float32 (raw, standardised inside); output logits (B, n_classes). The arrays given
    (None skipped) take the first `input_names` in order; `output_name` names the output. `dynamic_axes` (torch's
    format) replaces the default, a dynamic batch axis on every input and the output.
    Raises RuntimeError if the difference reaches ONNX_TOLERANCE, or with `relative` if the difference divided by
    max(1, |torch output|) does (for outputs in the hundreds, where float32 round-off alone exceeds 1e-4).
    """
    import onnxruntime as ort

    model.eval()
    arrays = [a for a in (particles, mask, jet_features) if a is not None]
    tensors = [torch.from_numpy(np.ascontiguousarray(a, np.float32)) for a in arrays]
    names = list(input_names[: len(tensors)])
    axes = dynamic_axes or {name: {0: "batch"} for name in (*names, output_name)}
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shapes are fixed except the dynamic axes
        torch.onnx.export(model, tuple(t[:2] for t in tensors), str(tmp), input_names=names,
                          output_names=[output_name], dynamic_axes=axes, opset_version=17, dynamo=False)
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run([output_name], {n: t.numpy() for n, t in zip(names, tensors)})[0]
        want = model(*tensors).numpy()
        diff = np.abs(got - want)
        scaled = diff / np.maximum(1.0, np.abs(want)) if relative else diff
        if not np.max(scaled) < ONNX_TOLERANCE:
            kind = "relative " if relative else ""
            raise RuntimeError(f"ONNX export of {path} differs from torch by {diff.max():.3g} "
                               f"({kind}>= {ONNX_TOLERANCE})")
    return float(diff.max())
