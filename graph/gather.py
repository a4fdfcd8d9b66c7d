"""Where each output element of a data-movement op comes from: ZeroPadding2D, Cropping1D/2D and UpSampling1D/2D
(hls4ml ``Resize``, nearest) move values without arithmetic, so each is an index map (output element -> flat
input element, -1 for a zero), shared by the emulator, the estimate and the RTL writer.

The maps repeat the loops of hls4ml 1.3.0's nnet_utils kernels (channels last): ``nnet_padding.h zeropad2d_cl``,
``nnet_cropping.h cropping1d_cl / cropping2d_cl`` and ``nnet_image.h resize_nearest`` (its 16-bit fixed-point
ratio ``((in << 16) / out) + 1`` and ``(j * ratio) >> 16``, as written).
"""

from __future__ import annotations

import numpy as np

GATHER_OPS = ("zeropad2d", "cropping1d", "cropping2d", "resize")


def _nearest(n_in: int, n_out: int) -> np.ndarray:
    """``resize_nearest``: the source row/column of each output one."""
    ratio = ((n_in << 16) // n_out) + 1
    return (np.arange(n_out) * ratio) >> 16


def source_index(layer) -> np.ndarray:
    """For each flat output element of ``layer`` (a ``l1forge.graph.ir.Layer`` of a ``GATHER_OPS`` op), the flat
    index of the input element it is a cast of, or -1 where it is zero."""
    s = layer
    h_in, w_in = s.get("in_height", 1), s["in_width"]
    h_out, w_out, c = s.get("out_height", 1), s["out_width"], s["n_chan"]
    if s.op == "resize":
        rows, cols = _nearest(h_in, h_out), _nearest(w_in, w_out)
    else:
        sign = 1 if s.op == "zeropad2d" else -1  # padding moves the input down/right, cropping up/left
        top, left = sign * s.get("pad_top", s.get("crop_top", 0)), sign * s.get("pad_left", s.get("crop_left", 0))
        rows, cols = np.arange(h_out) - top, np.arange(w_out) - left
    inside = ((rows >= 0) & (rows < h_in))[:, None] & ((cols >= 0) & (cols < w_in))[None, :]
    pixel = np.where(inside, rows[:, None] * w_in + cols[None, :], -1)
    index = pixel[:, :, None] * c + np.arange(c)
    return np.where(pixel[:, :, None] >= 0, index, -1).ravel()
