"""hls4ml conversion of a QKeras model into an HLS project with a compiled C-simulation."""

from __future__ import annotations

import contextlib
import copy
import io
import pathlib
import re
import shutil

import pydantic

from l1forge.quantize.fixed import FixedType
from l1forge.quantize.precision import DEFAULT_INPUT, hls_config, input_names, set_input_type


class ConversionError(ValueError):
    """A model hls4ml cannot convert or whose C-simulation does not compile; one line with what to do."""


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
    """hls4ml prints per-layer chatter on stdout; keep the CLI readable. Yields the buffer it went to."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield buffer


_PASS_THROUGH = ("Reshape", "Flatten", "Permute")


def is_quantized(model) -> bool:
    """True when some layer carries a QKeras quantizer (QDense, QConv*, QActivation, ...). hls4ml's bit-exact
    inference derives every type from the quantizers; a plain Keras model has none, and its float weights would keep
    their full width, so the exact sums of a Dense-BatchNorm-Dense chain pass 62 bits. Such a model is converted as
    hls4ml converts it by default (its 'auto' inference: weights ``fixed<16,6>``, sums widened from them)."""
    return any(layer.__class__.__name__.startswith("Q") and layer.__class__.__module__.startswith("qkeras")
               for layer in model.layers)


def has_input_quantizer(model) -> bool:
    """True when every path from every model input reaches a ``QActivation`` before any other layer (Reshape,
    Flatten and Permute pass through): then hls4ml's bit-exact inference takes the input type from the quantizer."""
    def consumers(layer):
        return [node.outbound_layer for node in layer._outbound_nodes]

    def quantized(layer) -> bool:
        nxt = consumers(layer)
        return bool(nxt) and all(
            n.__class__.__name__ == "QActivation" or (n.__class__.__name__ in _PASS_THROUGH and quantized(n)) for n in nxt
        )

    layers = {layer.name: layer for layer in model.layers}
    return all(name in layers and quantized(layers[name]) for name in input_names(model))


def resolve_input_type(model, input_type: FixedType | None, user_config: dict | None = None):
    """(input type to impose or None, note or None) for a conversion.

    An explicit type is used as given. Without one, a user hls4ml config decides, and so does an input quantizer
    (``has_input_quantizer``); otherwise l1forge supplies ``quantize.precision.DEFAULT_INPUT``
    (``fixed<16,6,RND_CONV,SAT>``) and the note says so.
    """
    if input_type is not None or user_config is not None or has_input_quantizer(model):
        return input_type, None
    return DEFAULT_INPUT, (
        f"input type {DEFAULT_INPUT.hls()} (the l1forge default: the model has no input quantizer; "
        "--input-type sets another)"
    )


def conversion_config(model, input_type: FixedType | None, settings: "FirmwareSettings", user_config: dict | None):
    """The hls4ml config a conversion uses: l1forge's name config, or a copy of ``user_config`` with the input type
    (if given) applied to every input layer. The user's dict is never modified."""
    if user_config is None:
        return hls_config(model, input_type, settings.reuse_factor, settings.strategy)
    config = copy.deepcopy(user_config)
    if input_type is not None:
        set_input_type(config, model, input_type)
    return config


def traced_config(config: dict, hls_model) -> dict:
    """A copy of ``config`` with ``Trace: True`` for every layer of ``hls_model`` (for ``hls_model.trace``)."""
    config = copy.deepcopy(config)
    names = config.setdefault("LayerName", {})
    for layer in hls_model.get_layers():
        names.setdefault(layer.name, {})["Trace"] = True
    return config


def _first_error_line(log: str) -> str:
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower():
            return line[:300]
    return (lines[-1] if lines else "no compiler output")[:300]


def convert(
    model,
    input_type: FixedType | None,
    settings: FirmwareSettings,
    project_dir: pathlib.Path,
    compile: bool = True,
    user_config: dict | None = None,
    write: bool = True,
):
    """Convert ``model`` with hls4ml into ``project_dir`` (replaced if present); optionally compile the C-sim.

    By default conversion uses the per-layer config from quantize/ and ``bit_exact=True``: with both, hls4ml keeps
    the QKeras quantizers (a lone ``bit_exact`` or a lone name config drops some of them) and infers every other
    type exactly. A ``user_config`` (an hls4ml config dict) is used as given (a copy, with ``input_type`` applied
    to the inputs when given), without bit-exact inference, so that the precisions it sets are the ones built.
    Without ``input_type`` and user config, a model with no input quantizer gets ``DEFAULT_INPUT``
    (``resolve_input_type``).

    Before anything is written or compiled the converted graph is described (firmware/describe.py; kept as
    ``hls_model.l1forge_graph``), so a layer the emulator cannot reproduce raises UnsupportedLayerError at once.
    A C-sim that does not compile raises ConversionError with the compiler's first error line and the path of
    the full log (``<project_dir>/build_lib.log``). ``write=False`` returns the unwritten hls4ml model.

    hls4ml's broken designs are handled here: where its bit-exact inference cannot convert a layer, or gives a
    power-of-two weight a type its C++ cannot read (``unreadable_weights``), the model is converted with the same
    name configuration without bit-exact inference, and ``hls_model.l1forge_note`` says so (None otherwise); the
    firmware graph is described from what is built, so the emulator stays bit-exact to it.
    """
    from l1forge.firmware.describe import describe_model

    if compile and shutil.which("g++") is None:
        raise RuntimeError("g++ not found on PATH: the hls4ml C-simulation is compiled with it")
    input_type, _ = resolve_input_type(model, input_type, user_config)
    project_dir = pathlib.Path(project_dir)
    if project_dir.exists():
        shutil.rmtree(project_dir)
    config = conversion_config(model, input_type, settings, user_config)
    bit_exact = user_config is None and is_quantized(model)
    notes = [dot] if not bit_exact and (dot := _repair_dot(model, config)) else []
    hls_model = None
    try:
        hls_model = _convert(model, config, project_dir, settings, bit_exact)
    except NotImplementedError as err:  # hls4ml's bit-exact inference knows a fixed list of layers
        kind = re.search(r"\((\w+)\)\s*$", str(err))
        what = f"does not know {kind[1]}" if kind else f"stops on {err}"
        notes.append(f"hls4ml's bit-exact type inference {what}; converted with the name configuration alone "
                     "(bit_exact off): the emulator follows that design")
    if hls_model is not None and (broken := unreadable_weights(hls_model)):
        notes.append(f"hls4ml's bit-exact type inference made {broken} a fixed type that its C++ cannot read "
                     "power-of-two weights into (it would not compile); converted with the name configuration alone "
                     "(bit_exact off): the emulator follows that design")
        hls_model = None
    if hls_model is None:  # the name configuration without bit-exact inference
        notes += [dot] if (dot := _repair_dot(model, config)) else []
        if project_dir.exists():
            shutil.rmtree(project_dir)
        hls_model = _convert(model, config, project_dir, settings, False)
    hls_model.l1forge_note = "; ".join(notes) or None
    hls_model.l1forge_config = config
    if folded := sorted(set(hls_model.inputs) & set(hls_model.outputs)):
        raise ConversionError(
            f"the model only quantizes its input '{folded[0]}': hls4ml folds the quantizer into the input type "
            f"({hls_model.get_input_variables()[0].type.precision}) and names input and output alike, so its C++ "
            "does not compile; there is nothing for the firmware to compute"
        )
    hls_model.l1forge_graph = describe_model(hls_model)  # UnsupportedLayerError now, not after the compilation
    if not write:
        return hls_model
    if compile:
        compile_project(hls_model)
    else:
        with _quiet():
            hls_model.write()
    return hls_model


def _convert(model, config: dict, project_dir: pathlib.Path, settings: FirmwareSettings, bit_exact: bool):
    import hls4ml

    with _quiet():
        try:
            return hls4ml.converters.convert_from_keras_model(
                model,
                hls_config=copy.deepcopy(config),
                output_dir=str(project_dir),
                project_name=settings.project_name,
                backend=settings.backend,
                part=settings.part,
                clock_period=settings.clock_period_ns,
                io_type=settings.io_type,
                bit_exact=bit_exact,
            )
        except ValueError as err:
            if "unexpected input layer chain" in str(err):
                raise ConversionError(f"hls4ml: {err} Give the input type with --input-type.") from None
            raise
        except AssertionError as err:  # an internal check of hls4ml's passes: the model, not l1forge, is the cause
            if bit_exact:
                raise NotImplementedError(f"an assertion of its passes ({_where(err)}: {err})") from None
            raise ConversionError(f"hls4ml cannot convert this model: an assertion of its passes fails at "
                                  f"{_where(err)} ({err or 'no message'}); the layer there is not convertible by "
                                  "hls4ml 1.3.0 as configured") from None


def _where(err: BaseException) -> str:
    """file:line (function) of the innermost hls4ml frame of ``err``'s traceback."""
    import traceback

    frames = [f for f in traceback.extract_tb(err.__traceback__) if "hls4ml" in f.filename] or \
        traceback.extract_tb(err.__traceback__)
    f = frames[-1]
    return f"hls4ml/{f.filename.rsplit('hls4ml/', 1)[-1]}:{f.lineno} ({f.name})"


def _repair_dot(model, config: dict) -> str | None:
    """hls4ml's precision inference without bit-exact inference asserts on a Dot layer whose accumulator is 'auto'
    (infer_precision.py ``_infer_dot_precision``): set it, in ``config``, to the model's default precision (what
    hls4ml gives every untyped layer). Returns the note saying so, or None when no Dot needed it."""
    default = config.get("Model", {}).get("Precision", "fixed<16,6>")
    default = default.get("default", "fixed<16,6>") if isinstance(default, dict) else default
    repaired = []
    for layer in model.layers:
        if layer.__class__.__name__ != "Dot":
            continue
        precision = config.setdefault("LayerName", {}).setdefault(layer.name, {}).setdefault("Precision", {})
        if isinstance(precision, dict) and precision.get("accum", "auto") == "auto":
            precision["accum"] = default
            repaired.append(layer.name)
    return (f"hls4ml infers no accumulator for Dot layer{'s' * (len(repaired) > 1)} {', '.join(repaired)} without "
            f"bit-exact inference (it would stop on an assertion): accum set to the model default {default}"
            if repaired else None)


def unreadable_weights(hls_model) -> str | None:
    """The first weight hls4ml writes as {sign, exponent} pairs (power-of-two quantizers: QKeras alpha='auto_po2')
    while its type is a fixed-point one, as its bit-exact inference leaves an ApplyAlpha scale: the C++ reads the
    pairs into the type's ``sign`` and ``weight`` members, which a fixed type lacks ("``ap_ufixed<2,-1>`` has no
    member named ``sign``"). Named as "layer 'L' weight 'scale' (ap_ufixed<2,1>)", or None."""
    from hls4ml.model.types import ExponentPrecisionType

    for layer in hls_model.get_layers():
        for key, var in layer.weights.items():
            if next(iter(var), "").startswith("{") and not isinstance(var.type.precision, ExponentPrecisionType):
                return f"layer '{layer.name}' weight '{key}' ({var.type.precision})"
    return None


def compile_project(hls_model, keep_log=None):
    """Write (if needed) and compile the C-simulation of a converted hls4ml model; returns the model.

    Raises ConversionError with the compiler's first error line and the path of the full log when it does not
    compile: ``<output dir>/build_lib.log``, or ``keep_log`` (a path outside a project that is about to be deleted).
    """
    with _quiet() as log:
        try:
            hls_model.compile()
        except Exception as err:  # noqa: BLE001 - hls4ml raises a bare Exception and prints the compiler output
            path = pathlib.Path(keep_log or pathlib.Path(hls_model.config.get_output_dir()) / "build_lib.log")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(log.getvalue())
            raise ConversionError(
                f"the hls4ml C-simulation does not compile: {_first_error_line(log.getvalue())} (full log: {path})"
            ) from err
    return hls_model


def quiet_call(fn, *args):
    """Call an hls4ml method with its stdout chatter suppressed."""
    with _quiet():
        return fn(*args)
