"""ONNX export with onnxruntime verification."""

from __future__ import annotations

import pathlib
import warnings

import numpy as np
import torch

from l1forge.core.artifacts import atomic_path

ONNX_INPUTS = ("particles", "mask", "jet_features")
ONNX_OUTPUT = "logits"
ONNX_TOLERANCE = 1e-4  # per output row: max |onnx - torch| (relative: divided by max(1, |torch|))
# k-NN teachers rank neighbours by distances that can tie to float round-off; torch and onnxruntime round differently
# (their matrix products sum in different orders), so at a near-tie they may pick another neighbour for one jet:
# measured 1 jet in 2048 (demo GNN, one of its four reflections), logits off by 5e-4. Such rows are tolerated up to
# ONNX_NEAR_TIE_ROWS of the batch and ONNX_NEAR_TIE_TOLERANCE each; a wrong export differs on most rows.
ONNX_NEAR_TIE_ROWS = 0.01
ONNX_NEAR_TIE_TOLERANCE = 1e-2


def check_onnx(got: np.ndarray, want: np.ndarray, path, relative: bool = False) -> float:
    """max |got - want| over onnxruntime outputs `got` and torch outputs `want` (B, ...), after checking them.

    RuntimeError (naming `path`) if more than ONNX_NEAR_TIE_ROWS of the B rows differ by ONNX_TOLERANCE or more, or
    any row by ONNX_NEAR_TIE_TOLERANCE or more; with `relative` the difference is divided by max(1, |want|) first.
    """
    diff = np.abs(got - want)
    scaled = diff / np.maximum(1.0, np.abs(want)) if relative else diff
    rows = scaled.reshape(len(scaled), -1).max(1)
    off = int(np.sum(~(rows < ONNX_TOLERANCE)))
    if off > ONNX_NEAR_TIE_ROWS * len(rows) or not np.max(rows) < ONNX_NEAR_TIE_TOLERANCE:
        kind = "relative " if relative else ""
        raise RuntimeError(f"ONNX export of {path} differs from torch: max {kind}difference {np.max(rows):.3g}, "
                           f"{off} of {len(rows)} rows >= {ONNX_TOLERANCE}")
    return float(diff.max())


def export_onnx(model: torch.nn.Module, path: pathlib.Path, particles: np.ndarray, mask: np.ndarray,
                jet_features: np.ndarray | None = None, input_names: tuple = ONNX_INPUTS,
                output_name: str = ONNX_OUTPUT, dynamic_axes: dict | None = None, relative: bool = False) -> float:
    """Export `model` (eval mode) to ONNX at `path`; return max |onnx - torch| on the given batch.

    Inputs: particles (B, P, 4) float32 raw constituents, mask (B, P) float32 and, for teachers that use them,
    jet_features (B, G) float32 (raw, standardised inside); output logits (B, n_classes). The arrays given
    (None skipped) take the first `input_names` in order; `output_name` names the output. `dynamic_axes` (torch's
    format) replaces the default, a dynamic batch axis on every input and the output.
    Raises RuntimeError as ``check_onnx`` does (`relative`: for outputs in the hundreds, where float32 round-off
    alone exceeds 1e-4).
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
        return check_onnx(got, want, path, relative)
