"""The firmware graph IR and its op table: file round trip, old files, parsed types, derived support and refusals."""

import json

import numpy as np
import pytest

import l1forge.emulation.emulator  # noqa: F401 - the backends register their implementations on import
import l1forge.firmware.estimate  # noqa: F401
import l1forge.rtl.lower  # noqa: F401
from l1forge.emulation.emulator import EmulationError, Emulator
from l1forge.graph import ops
from l1forge.graph.ir import SCHEMA, Graph, GraphError, Layer, read_graph
from l1forge.quantize.fixed import FixedType, FixedTypeError
from l1forge.rtl.lower import RtlError, write_rtl

FX = "fixed<10,4,TRN,WRAP,0>"


def _json(op="relu", **attrs):
    """A graph.json as the writer of schema l1forge.firmware-graph/1 has always written it (key order included)."""
    return {"schema": SCHEMA, "project_name": "p", "io_type": "io_parallel", "inputs": ["x"], "outputs": ["y"],
            "layers": [{"name": "x", "class_name": "InputLayer", "inputs": [], "shape": [3], "result_t": FX, "op": "input"},
                       {"name": "y", "class_name": "Activation", "inputs": ["x"], "shape": [3], "result_t": FX,
                        "op": op, **attrs}]}


def test_file_round_trip_and_old_files(tmp_path):
    (tmp_path / "graph.json").write_text(json.dumps(_json()))
    np.savez(tmp_path / "graph_weights.npz", **{"y/w": np.arange(3.0)})
    graph = read_graph(tmp_path / "graph.json")
    assert [layer.op for layer in graph.layers] == ["input", "relu"] and graph.outputs == ["y"]
    again = read_graph(graph.write(tmp_path / "copy"))
    assert again.to_dict() == graph.to_dict() == {**_json(), "layers": again.to_dict()["layers"]}
    assert json.loads((tmp_path / "copy" / "graph.json").read_text())["layers"][1] == _json()["layers"][1]
    assert np.array_equal(again.weights["y/w"], np.arange(3.0))
    x = np.linspace(-40, 40, 30).reshape(10, 3)
    assert np.array_equal(Emulator(again).run(x), Emulator(_json(), {}).run(x))


def test_other_schema_is_one_line_naming_the_file(tmp_path):
    (tmp_path / "graph.json").write_text(json.dumps({**_json(), "schema": "l1forge.firmware-graph/0"}))
    with pytest.raises(GraphError, match=r"graph\.json: schema 'l1forge.firmware-graph/0' is not"):
        read_graph(tmp_path / "graph.json")


def test_types_are_parsed_once_and_bad_ones_are_named():
    layer = Layer.from_dict({"name": "d", "op": "dense", "inputs": ["x"], "shape": [2], "result_t": FX,
                             "accum_t": "fixed<99999,9>", "weight_t": "fixed<6,1>", "bias_t": "fixed<99,9>"})
    assert layer.type("weight_t") is layer.type("weight_t") and layer.type("weight_t") == FixedType(6, 1)
    assert layer.result_t == FixedType.parse(FX) and layer["shape"] == [2] and layer.size == 2
    assert layer.type("bias_t") == FixedType(99, 9)  # any width ap_fixed has (issue 31)
    with pytest.raises(FixedTypeError, match="fixed<99999,9"):  # wider than any ap_fixed
        layer.type("accum_t")


def test_the_emulator_interprets_every_declared_op():
    """The emulator is the reference interpreter: an op declared in the table without a kernel is a bug."""
    assert set(ops.supported("emulate")) == set(ops.OPS)
    assert {"dense", "conv1d", "softmax", "zeropad1d"} <= set(ops.supported("rtl")) & set(ops.supported("estimate"))


def test_refusals_are_generated_from_the_table(tmp_path):
    mystery = Graph.from_dict(_json(op="mystery"))
    with pytest.raises(EmulationError, match=r"^layer 'y' \(Activation, op 'mystery'\) is not supported by the emulator$"):
        Emulator(mystery)
    with pytest.raises(RtlError, match=r"^layer 'y' \(Activation, op 'mystery'\) is not supported by the RTL writer$"):
        write_rtl(mystery, None, tmp_path / "rtl")
    legacy = Graph.from_dict(_json(op="softmax", implementation="legacy"))
    assert ops.refusal(legacy.layers[1], "rtl") == ("layer 'y' (Activation, op 'softmax'): softmax implementation "
                                                    "'legacy' is not supported by the RTL writer")
    assert ops.refusal(legacy.layers[1], "emulate") is None
    assert not (tmp_path / "rtl").exists()


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown backend 'vhdl'"):
        ops.implements("vhdl", "dense")
