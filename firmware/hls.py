"""hls4ml conversion of a QKeras model into an HLS project with a compiled C-simulation."""

from __future__ import annotations

import contextlib
import io
import pathlib
import shutil

import pydantic

from l1forge.quantize.fixed import FixedType
from l1forge.quantize.precision import hls_config


class FirmwareSettings(pydantic.BaseModel):
    """Target of the firmware: backend, FPGA part, clock and hls4ml implementation choices."""

    model_config = pydantic.ConfigDict(extra="forbid")

    backend: str = "Vitis"
    part: str = "xcvu13p-flga2577-2-e"
    clock_mhz: float = 240.0
    io_type: str = "io_parallel"
    strategy: str = "Latency"
    reuse_factor: int = pydantic.Field(1, ge=1)
    project_name: str = "l1forge_student"

    @property
    def clock_period_ns(self) -> float:
        return 1000.0 / self.clock_mhz


@contextlib.contextmanager
def _quiet():
    """hls4ml prints per-layer chatter on stdout; keep the CLI readable."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def convert(
    model,
    input_type: FixedType | None,
    settings: FirmwareSettings,
    project_dir: pathlib.Path,
    compile: bool = True,
    user_config: dict | None = None,
):
    """Convert ``model`` with hls4ml into ``project_dir`` (replaced if present); optionally compile the C-sim.

    By default conversion uses the per-layer config from quantize/ and ``bit_exact=True``: with both, hls4ml keeps
    the QKeras quantizers (a lone ``bit_exact`` or a lone name config drops some of them) and infers every other
    type exactly. A ``user_config`` (an hls4ml config dict) is used as given, without bit-exact inference, so
    that the precisions it sets are the ones built.
    """
    import hls4ml

    if compile and shutil.which("g++") is None:
        raise RuntimeError("g++ not found on PATH: the hls4ml C-simulation is compiled with it")
    project_dir = pathlib.Path(project_dir)
    if project_dir.exists():
        shutil.rmtree(project_dir)
    config = user_config or hls_config(model, input_type, settings.reuse_factor, settings.strategy)
    with _quiet():
        hls_model = hls4ml.converters.convert_from_keras_model(
            model,
            hls_config=config,
            output_dir=str(project_dir),
            project_name=settings.project_name,
            backend=settings.backend,
            part=settings.part,
            clock_period=settings.clock_period_ns,
            io_type=settings.io_type,
            bit_exact=user_config is None,
        )
        if compile:
            hls_model.compile()
        else:
            hls_model.write()
    return hls_model


def quiet_call(fn, *args):
    """Call an hls4ml method with its stdout chatter suppressed."""
    with _quiet():
        return fn(*args)
