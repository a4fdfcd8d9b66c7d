"""One firmware build: hls4ml project + compiled C-sim + firmware graph + latency/resource numbers."""

from __future__ import annotations

import pathlib
import time

from l1forge.firmware.estimate import estimate
from l1forge.graph.ir import read_graph
from l1forge.firmware.describe import write_graph
from l1forge.firmware.hls import FirmwareSettings, convert, resolve_input_type
from l1forge.firmware.parts import utilisation
from l1forge.firmware.vendor import require_vendor_tools, run_vendor_synthesis
from l1forge.core.artifacts import write_json_atomic
from l1forge.quantize.fixed import FixedType


def build_firmware(
    model,
    input_type: FixedType | None,
    settings: FirmwareSettings,
    out_dir: pathlib.Path,
    user_config: dict | None = None,
    vendor: bool = False,
) -> dict:
    """Build ``model`` into ``out_dir/hls_project`` and write ``out_dir/{graph.json, firmware.json}``.

    Without ``input_type`` a model with no input quantizer gets the l1forge default (firmware/hls.py
    ``resolve_input_type``; the block's ``input_type_note`` says so). Returns the summary.json firmware block. Latency and resources come from the vendor reports when
    ``vendor`` is set (C synthesis with the vendor tool, which must be on PATH), otherwise from the estimate.
    """
    if vendor:
        require_vendor_tools(settings.backend)  # before minutes of conversion, not after
    out_dir = pathlib.Path(out_dir)
    project = out_dir / "hls_project"
    start = time.perf_counter()
    input_type, note = resolve_input_type(model, input_type, user_config)
    hls_model = convert(model, input_type, settings, project, user_config=user_config)
    compile_s = time.perf_counter() - start
    report = estimate(read_graph(write_graph(hls_model, out_dir)), clock_mhz=settings.clock_mhz)
    if vendor:
        report = {**run_vendor_synthesis(hls_model), "layers": report["layers"], "estimate": report["resources"]}
    block = {
        "project_dir": str(project),
        "backend": settings.backend,
        "part": settings.part,
        "clock_mhz": settings.clock_mhz,
        "io_type": settings.io_type,
        "strategy": settings.strategy,
        "reuse_factor": settings.reuse_factor,
        **report,
        "utilisation_percent": utilisation(report["resources"], settings.part),
        "convert_compile_seconds": compile_s,
        "input_type": str(hls_model.get_input_variables()[0].type.precision),
        "input_type_note": note,
        "conversion_note": hls_model.l1forge_note,
    }
    write_json_atomic(out_dir / "firmware.json", block)
    return block
