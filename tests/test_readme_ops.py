"""The README's and docs/hardware.md's tables of layers reproduced and refused are generated from the op table
(l1forge.graph.ops): this test fails, printing the block to paste, when either file drifts from it."""

import pathlib

import pytest

import l1forge.emulation.emulator  # noqa: F401 - the backends register their implementations at import
import l1forge.firmware.estimate  # noqa: F401
import l1forge.rtl.lower  # noqa: F401
from l1forge.graph import ops

REPO = pathlib.Path(__file__).resolve().parents[1]
BEGIN = "<!-- layer tables: generated from l1forge.graph.ops (tests/test_readme_ops.py) -->"
END = "<!-- end of the generated layer tables -->"


def generated() -> str:
    return "\n".join([BEGIN, "", ops.layers_table(), "", ops.refused_table(), "", END])


@pytest.mark.parametrize("page", ["README.md", "docs/hardware.md"])
def test_layer_tables_follow_the_op_table(page):
    text = (REPO / page).read_text()
    assert BEGIN in text and END in text, f"{page} has no generated layer tables"
    block = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert block == generated(), f"{page} drifted from the op table; paste:\n{generated()}"


def test_every_op_names_the_hls4ml_layers_it_describes_and_every_refusal_says_what_to_do():
    assert all(op.layers for op in ops.OPS.values())
    assert all(r.why and r.todo for r in ops.REFUSED.values())
