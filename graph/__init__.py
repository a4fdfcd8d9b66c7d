"""The firmware graph (floor 1): l1forge's intermediate representation of an hls4ml io_parallel design.

``l1forge.graph.ir`` holds the typed in-memory ``Graph`` of ``Layer`` s and its versioned file format
(``graph.json`` + ``graph_weights.npz``); ``l1forge.graph.ops`` is the op table, where every operation is declared
once and the emulator kernels, the estimate's costs and the RTL lowerings register.
"""
