"""The firmware graph (ground floor: its schema and reader; ``l1forge.firmware.graph`` writes it): a tool-independent description of the datapath hls4ml generated.

``graph.json`` lists the layers in execution order with their operation, input names, shapes and the exact
fixed-point types of the C++ (result, accumulator, weight, bias); ``graph_weights.npz`` holds each weight array
with the values the C++ is initialised with (the text literals hls4ml writes, parsed back). The emulator reads only
these two files, so it needs neither hls4ml nor TensorFlow, and it reproduces the firmware and not the Keras model.

Schema ``l1forge.firmware-graph/1``::

    {"schema", "project_name", "inputs": [layer names], "outputs": [layer names],
     "layers": [{"name", "op", "class_name", "inputs": [names], "shape": [...], "result_t": "fixed<...>",
                 ...op-specific keys...}]}

op ``input``: ``result_t`` is the input type (floats are converted into it as ap_fixed(double) does).
op ``dense``: ``n_in``, ``n_out``, ``accum_t``, ``weight_t``, ``bias_t``, ``product`` (hls4ml product kind),
``strategy``, ``reuse_factor``, ``n_nonzero``; weights ``<name>/weight`` (n_in, n_out) and ``<name>/bias``.
op ``conv1d`` (Conv1D / PointwiseConv1D, io_parallel "linebuffer"): the dense keys plus ``implementation``,
``in_width``, ``n_chan``, ``filt_width``, ``n_filt``, ``stride_width``, ``out_width``, ``pad_left``, ``pad_right``
and ``n_partitions`` (output positions computed one after another: out_width / ParallelizationFactor; absent = out_width);
weight (filt_width * n_chan, n_filt), rows ordered (tap, channel) as the C++ indexes them.
op ``conv2d`` (Conv2D / PointwiseConv2D / Conv2DBatchnorm, io_parallel "linebuffer", channels last): the dense keys
plus ``implementation``, ``in_height``, ``in_width``, ``n_chan``, ``filt_height``, ``filt_width``, ``n_filt``,
``stride_height``, ``stride_width``, ``out_height``, ``out_width``, ``pad_top``, ``pad_bottom``, ``pad_left``,
``pad_right``; weight (filt_height * filt_width * n_chan, n_filt), rows ordered (row, column, channel).
op ``pool2d`` (Pooling2D, channels last): ``pool_op`` (max, average), ``accum_t``, ``count_pad``, ``in_height``,
``in_width``, ``n_filt``, ``pool_height``, ``pool_width``, ``stride_height``, ``stride_width``, ``out_height``,
``out_width``, ``pad_top``, ``pad_bottom``, ``pad_left``, ``pad_right``.
op ``leaky_relu`` (LeakyReLU, quantized_relu with negative_slope): ``alpha`` (float), ``param_t``.
op ``relu`` / ``linear`` / ``reshape`` (Flatten, Reshape): elementwise or a new shape, ``result_t``.
op ``transpose`` (Permute): ``perm``, the permutation of the axes of one event (no batch axis), ``result_t``.
op ``table`` (Activation sigmoid/tanh): ``function``, ``table_size``, ``table_t``.
op ``hard_sigmoid`` / ``hard_tanh`` (QKeras quantized_sigmoid/tanh): ``slope``, ``shift``, ``slope_t``, ``shift_t``.
op ``softmax`` (last axis): ``implementation`` (latency, stable, legacy), ``exp_table_size``, ``inv_table_size``,
``exp_scale``, ``exp_table_t``, ``inv_table_t``, ``accum_t``, ``inv_inp_t``, ``inp_norm_t``, ``table_t`` (legacy),
all read from the C++ config struct hls4ml writes.
op ``batchnorm``: ``scale_t``, ``bias_t``; weights ``<name>/scale`` and ``<name>/bias`` (per channel or element).
op ``global_max`` / ``global_average`` (GlobalPooling1D): ``accum_t``.
op ``add`` / ``subtract`` / ``average`` / ``maximum`` / ``minimum`` (Merge, two inputs) and ``concatenate``
(``axis``, counting the batch axis as Keras does).
Any other layer raises UnsupportedLayerError naming the layer and its class.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

SCHEMA = "l1forge.firmware-graph/1"


def read_graph(path) -> tuple[dict, dict]:
    """(graph dict, weight arrays) from a ``graph.json`` written by ``write_graph``."""
    path = pathlib.Path(path)
    graph = json.loads(path.read_text())
    if graph.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {graph.get('schema')!r} is not {SCHEMA!r}")
    with np.load(path.with_name("graph_weights.npz")) as npz:
        weights = {key: npz[key] for key in npz.files}
    return graph, weights
