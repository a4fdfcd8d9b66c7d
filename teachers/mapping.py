"""The inputs of a teacher trained elsewhere, built from the flow's jet sample by a mapping.

A mapping (`InputMapping`) names, per ONNX input, the sample variables that fill it, their length, padding and
standardisation. It is read (`read_mapping`) from either

- a **weaver-core data configuration** (YAML; keys in ../shared/data-layouts.md section 5a, read in WC4
  `weaver/utils/data/config.py::DataConfig`): `inputs: {name: {length, pad_mode, vars: [[var, center, scale, min,
  max, pad_value], ...]}}`, `new_variables: {name: expression}`, `preprocess: {method, params}`, `labels`; or
- **l1forge's own mapping** (YAML): `inputs: {name: {columns: [...], length: L, padding: 0, channels: last}}`,
  optional `variables: {name: expression}`, `classes: [...]`, `output: auto|logits|probabilities`.

`build_inputs(mapping, sample, rows)` returns {input name: float32 array}: weaver groups channels-first
(N, C, length) (a group without length: (N, C), or (N,) for one variable), l1forge groups channels-last
(N, length, C) unless `channels: first`. Per variable, as weaver's `_finalize_inputs` (WC4 weaver/utils/dataset.py)
does on each chunk: x -> clip((x - center) * scale, min, max) where center is not None (the defaults: scale 1,
min -5, max 5, pad_value 0); NaN -> 0 (np.nan_to_num) where any appears; then truncation or padding to `length`:
`constant` fills pad_value, `wrap` fills each padded slot (i, j) with element i * length + j of the rows' real
values flattened and tiled (weaver `_repeat_pad`; here the rows of one onnxruntime batch stand for weaver's chunk).

Variables of the sample (`sample_variables`), per constituent (N, P) and per jet (N, 1):
- the sample's columns `pt, deta, dphi, energy` (eta, phi relative to the jet axis), `mask` (1 real, 0 padding),
  `eta, phi, px, py, pz` (eta = jet_eta + deta, phi = jet_phi + dphi);
- JetClass / ParT names (data-layouts.md 3, 5c): `part_px, part_py, part_pz, part_energy, part_pt, part_eta,
  part_phi, part_dphi` and `part_deta` = deta * sign(jet_eta) (the sign flip of the JetClass files and of ParT's
  top-tagging conversion, PT utils/convert_top_datasets.py; sign 0 counts as +1);
- per jet: `jet_pt, jet_eta, jet_phi, jet_mass, jet_energy, jet_nparticles` and the sample's features by name.
Derived variables are expressions (`new_variables` / `variables`) evaluated on these: numbers, + - * / **,
`np.`/`numpy.`/`ak.`/`awkward.`/`math.` functions in `FUNCTIONS`, and the variables above or defined before;
ParT's standard configs (5c: part_mask, part_pt, part_pt_log, part_e_log, part_logptrel, part_logerel,
part_deltaR) evaluate; an expression needing anything else (part_d0val, part_charge, ...) is refused in one line
naming the variable. The sample keeps the 64 leading constituents by pT: a teacher trained at length 128 sees at
most 64 real particles here.
"""

from __future__ import annotations

import ast
import dataclasses
import pathlib

import numpy as np
import yaml

PARTICLE_COLUMNS = ("pt", "deta", "dphi", "energy", "mask", "eta", "phi", "px", "py", "pz")
PART_NAMES = ("part_px", "part_py", "part_pz", "part_energy", "part_pt", "part_eta", "part_phi", "part_deta",
              "part_dphi")
JET_NAMES = ("jet_pt", "jet_eta", "jet_phi", "jet_mass", "jet_energy", "jet_nparticles")
FUNCTIONS = {name: getattr(np, name) for name in (
    "log", "log10", "log1p", "log2", "exp", "expm1", "sqrt", "abs", "absolute", "hypot", "tanh", "sinh", "cosh",
    "arcsinh", "arccosh", "arctanh", "sin", "cos", "tan", "arcsin", "arccos", "arctan", "arctan2", "sign",
    "minimum", "maximum", "clip", "ones_like", "zeros_like", "nan_to_num", "square", "power")}
FUNCTIONS.update(fabs=np.abs, atan=np.arctan, atan2=np.arctan2, asinh=np.arcsinh, pow=np.power)
MODULES = ("np", "numpy", "ak", "awkward", "math")
CONSTANTS = {"pi": np.pi, "e": np.e, "inf": np.inf}
_OPS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.true_divide, ast.Pow: np.power}


class MappingError(ValueError):
    """A mapping that cannot fill the teacher's inputs from the sample: one line naming the file and the culprit."""


@dataclasses.dataclass
class Variable:
    """One variable of an input group; `center` None: no transformation (weaver's `[name, null]`)."""
    name: str
    center: float | None = None
    scale: float = 1.0
    min: float = -5.0
    max: float = 5.0
    pad_value: float = 0.0


@dataclasses.dataclass
class InputGroup:
    """One ONNX input: its variables stacked on the channel axis, padded or truncated to `length` (None: per jet)."""
    name: str
    variables: list[Variable]
    length: int | None
    pad_mode: str = "constant"          # or "wrap"
    channels_first: bool = True         # (N, C, length) as weaver; False: (N, length, C)

    def shape(self) -> tuple:
        """Shape after N: (C, length), (length, C), (C,), or () for one per-jet variable."""
        c = len(self.variables)
        if self.length is None:
            return () if c == 1 and self.channels_first else (c,)
        return (c, self.length) if self.channels_first else (self.length, c)


@dataclasses.dataclass
class InputMapping:
    """How a teacher's ONNX inputs are built from the sample; see the module docstring."""
    source: str                         # the file (or "<flow>") it was read from, for messages
    format: str                         # "weaver" or "l1forge"
    groups: dict[str, InputGroup]
    expressions: dict[str, str] = dataclasses.field(default_factory=dict)
    classes: list[str] | None = None    # the teacher's output order, when known
    output: str = "auto"                # "auto", "logits" or "probabilities"
    output_name: str | None = None      # which ONNX output (default the first)
    notes: list[str] = dataclasses.field(default_factory=list)


def _fail(source, message):
    raise MappingError(f"{source}: {message}")


def _number(source, where, value, default):
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(source, f"{where} is {value!r}, expected a number")
    return float(value)


def _length(source, where, value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        _fail(source, f"{where}: length is {value!r}, expected a positive integer or null")
    return value


def _weaver_variable(source, group, entry, params, auto):
    """weaver's `[name, center, scale, min, max, pad_value]` (or a bare name), or its `preprocess.params` entry."""
    entry = entry if isinstance(entry, list) else [entry]
    if not entry or not isinstance(entry[0], str):
        _fail(source, f"inputs.{group}.vars: entry {entry!r} does not start with a variable name")
    name = entry[0]
    if params is not None:
        if name not in params or not isinstance(params[name], dict):
            _fail(source, f"preprocess.params has no entry for variable '{name}' of input '{group}'")
        p = params[name]
        values = [p.get("center"), p.get("scale"), p.get("min"), p.get("max"), p.get("pad_value")]
    else:
        values = (entry[1:] + [None] * 5)[:5]
        if len(entry) < 2 and auto:
            values[0] = "auto"
    if values[0] == "auto":
        _fail(source, f"variable '{name}' of input '{group}' is standardised automatically (preprocess method "
                      "auto) but the file holds no params: give the <config>.<hash>.auto.yaml weaver-core wrote "
                      "beside the data config when it trained the model")
    where = f"inputs.{group} variable '{name}'"
    return Variable(name, None if values[0] is None else _number(source, f"{where} center", values[0], None),
                    _number(source, f"{where} scale", values[1], 1.0), _number(source, f"{where} min", values[2], -5.0),
                    _number(source, f"{where} max", values[3], 5.0),
                    _number(source, f"{where} pad_value", values[4], 0.0))


def _weaver_mapping(source, cfg) -> InputMapping:
    """weaver-core DataConfig keys (WC4 config.py): inputs, new_variables, preprocess, labels."""
    preprocess = cfg.get("preprocess") or {}
    auto = str(preprocess.get("method", "manual")).lower().startswith("auto")
    params = preprocess.get("params")
    groups = {}
    for name, spec in cfg["inputs"].items():
        if not isinstance(spec, dict) or not isinstance(spec.get("vars"), list) or not spec["vars"]:
            _fail(source, f"inputs.{name} needs a non-empty 'vars' list (weaver data config)")
        pad_mode = str(spec.get("pad_mode", "constant")).lower()
        if pad_mode not in ("constant", "wrap"):
            _fail(source, f"inputs.{name}: pad_mode is {pad_mode!r}, expected constant or wrap")
        if name.endswith("_mask") and pad_mode != "constant":
            _fail(source, f"inputs.{name}: a mask input must have pad_mode constant (as weaver-core requires)")
        variables = [_weaver_variable(source, name, v, params, auto) for v in spec["vars"]]
        groups[name] = InputGroup(name, variables, _length(source, f"inputs.{name}", spec.get("length")), pad_mode)
    labels = cfg.get("labels") or {}
    classes = list(labels["value"]) if labels.get("type") == "simple" and isinstance(labels.get("value"), list) \
        else None
    notes = [f"the data config's {key} is not applied: the teacher scores every jet of the sample"
             for key in ("selection", "test_time_selection") if cfg.get(key)]
    return InputMapping(source, "weaver", groups, _expressions(source, cfg.get("new_variables"), "new_variables"),
                        classes, notes=notes)


def _expressions(source, block, key) -> dict[str, str]:
    if block is None:
        return {}
    if not isinstance(block, dict) or not all(isinstance(v, (str, int, float)) for v in block.values()):
        _fail(source, f"'{key}' must map names to expressions")
    return {str(k): str(v) for k, v in block.items() if str(k) != str(v)}


def _l1forge_mapping(source, cfg) -> InputMapping:
    """l1forge's own mapping: inputs {name: {columns, length, padding, channels}}, variables, classes, output."""
    groups = {}
    for name, spec in cfg["inputs"].items():
        if not isinstance(spec, dict) or not isinstance(spec.get("columns"), list) or not spec["columns"]:
            _fail(source, f"inputs.{name} needs a non-empty 'columns' list")
        channels = spec.get("channels", "last")
        if channels not in ("first", "last"):
            _fail(source, f"inputs.{name}: channels is {channels!r}, expected first or last")
        pad = _number(source, f"inputs.{name} padding", spec.get("padding"), 0.0)
        variables = [Variable(str(c), pad_value=pad) for c in spec["columns"]]
        groups[name] = InputGroup(name, variables, _length(source, f"inputs.{name}", spec.get("length")),
                                  "constant", channels == "first")
    output = cfg.get("output", "auto")
    if output not in ("auto", "logits", "probabilities"):
        _fail(source, f"output is {output!r}, expected auto, logits or probabilities")
    classes = cfg.get("classes")
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        _fail(source, "classes must be a list of class names (the teacher's output order)")
    return InputMapping(source, "l1forge", groups, _expressions(source, cfg.get("variables"), "variables"),
                        classes, output, cfg.get("output_name"))


def read_mapping(mapping) -> InputMapping:
    """An InputMapping from a YAML file (weaver-core data config or l1forge's own), a dict, or an InputMapping."""
    if isinstance(mapping, InputMapping):
        return mapping
    source = "<mapping>"
    if isinstance(mapping, (str, pathlib.Path)):
        source = str(mapping)
        try:
            mapping = yaml.safe_load(pathlib.Path(mapping).read_text())
        except OSError as exc:
            _fail(source, f"cannot read the mapping ({exc.strerror or exc})")
        except yaml.YAMLError as exc:
            _fail(source, f"not valid YAML ({' '.join(str(exc).split())})")
    if not isinstance(mapping, dict) or not isinstance(mapping.get("inputs"), dict) or not mapping["inputs"]:
        _fail(source, "needs an 'inputs' section (a weaver-core data config, or l1forge's {name: {columns: ...}})")
    first = next(iter(mapping["inputs"].values()))
    weaver = isinstance(first, dict) and "vars" in first
    return _weaver_mapping(source, mapping) if weaver else _l1forge_mapping(source, mapping)


def flow_mapping(input_names, feature_names, width: int) -> InputMapping:
    """The mapping of the flow's own teacher exports (teachers/export.py): `particles` (N, width, 4) = pt, deta,
    dphi, energy, `mask` (N, width), `jet_features` (N, 16); for a model.onnx written by another l1forge run."""
    columns = {"particles": list(PARTICLE_COLUMNS[:4]), "mask": ["mask"], "jet_features": list(feature_names)}
    groups = {}
    for name in input_names:
        if name not in columns:
            raise MappingError(f"<flow mapping>: ONNX input '{name}' is not one of l1forge's teacher inputs "
                               f"({', '.join(columns)}): give a mapping (a weaver-core data config or l1forge's own)")
        groups[name] = InputGroup(name, [Variable(c) for c in columns[name]], None if name == "jet_features" else width,
                                  channels_first=False)
    return InputMapping("<flow mapping>", "l1forge", groups)


# ------------------------------------------------------------------------------------------ sample variables

class SampleVariables:
    """Variables of jets `rows` of a JetSample, evaluated on demand: per constituent (n, P) float64 (padded slots
    hold values that padding later replaces), per jet (n, 1); expressions of `mapping` resolved recursively."""

    def __init__(self, sample, rows, mapping: InputMapping):
        self.mapping = mapping
        c = np.asarray(sample.constituents[rows], np.float64)
        self.count = np.asarray(sample.n_constituents[rows]).astype(np.int64)
        jet = np.asarray(sample.jet[rows], np.float64)
        self.n, self.width = c.shape[0], c.shape[1]
        pt, deta, dphi, energy = np.moveaxis(c, 2, 0)
        jpt, jeta, jphi, jmass = (jet[:, k:k + 1] for k in range(4))
        eta, phi = jeta + deta, jphi + dphi
        sign = np.where(jeta < 0, -1.0, 1.0)
        self.values = {
            "pt": pt, "deta": deta, "dphi": dphi, "energy": energy, "eta": eta, "phi": phi,
            "px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta),
            "mask": (np.arange(self.width) < self.count[:, None]).astype(np.float64),
            "jet_pt": jpt, "jet_eta": jeta, "jet_phi": jphi, "jet_mass": jmass,
            "jet_energy": np.sqrt((jpt * np.cosh(jeta)) ** 2 + jmass ** 2),
            "jet_nparticles": self.count[:, None].astype(np.float64),
        }
        for name in PART_NAMES:
            self.values[name] = self.values[name.removeprefix("part_")]
        self.values["part_deta"] = deta * sign
        features = np.asarray(sample.features[rows], np.float64)
        self.n_features = len(sample.feature_names)
        for k, name in enumerate(sample.feature_names):
            self.values.setdefault(name, features[:, k:k + 1])
        self._busy = set()

    def available(self) -> str:
        names = [*PARTICLE_COLUMNS, *PART_NAMES, *JET_NAMES]
        return ", ".join(names) + f" and the sample's {self.n_features} jet features by name"

    def get(self, name: str, needed_by: str) -> np.ndarray:
        if name in self.values:
            return self.values[name]
        expr = self.mapping.expressions.get(name)
        if expr is None:
            _fail(self.mapping.source, f"{needed_by} needs '{name}', which the jet sample does not provide (it "
                                       f"has {self.available()}): a teacher that needs it cannot run on this "
                                       "sample; give its outputs as a precomputed file instead")
        if name in self._busy:
            _fail(self.mapping.source, f"new variable '{name}' is defined through itself")
        self._busy.add(name)
        value = np.asarray(self._eval(name, expr), np.float64)
        self._busy.discard(name)
        if value.ndim != 2:  # a constant expression: one value per jet
            value = np.full((self.n, 1), float(value))
        self.values[name] = value
        return value

    def level(self, values: np.ndarray) -> str:
        return "particle" if values.shape[1] == self.width and self.width != 1 else "jet"

    def counts(self, values: np.ndarray) -> np.ndarray:
        return self.count if self.level(values) == "particle" else np.ones(self.n, np.int64)

    def _eval(self, name, expr):
        refuse = lambda what: _fail(  # noqa: E731
            self.mapping.source, f"new variable '{name}' = '{expr}' uses {what}, which l1forge does not evaluate "
            "(numbers, + - * / **, np/ak/math functions of the sample's variables); compute it into the "
            "teacher's precomputed outputs instead")
        try:
            tree = ast.parse(expr, mode="eval")
        except SyntaxError:
            refuse("invalid Python")

        def ev(node):
            if isinstance(node, ast.Expression):
                return ev(node.body)
            if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                    and not isinstance(node.value, bool):
                return float(node.value)
            if isinstance(node, ast.Name):
                return self.get(node.id, f"new variable '{name}' = '{expr}'")
            if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
                return _OPS[type(node.op)](ev(node.left), ev(node.right))
            if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
                value = ev(node.operand)
                return -value if isinstance(node.op, ast.USub) else value
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in MODULES \
                    and node.attr in CONSTANTS:
                return CONSTANTS[node.attr]
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in MODULES and not node.keywords:
                args = [ev(a) for a in node.args]
                if node.func.attr == "num" and node.func.value.id in ("ak", "awkward") and len(args) == 1:
                    return self.counts(args[0])[:, None].astype(np.float64)
                if node.func.attr in FUNCTIONS:
                    return FUNCTIONS[node.func.attr](*args)
                refuse(f"'{node.func.value.id}.{node.func.attr}'")
            refuse(f"'{ast.unparse(node)}'")

        with np.errstate(all="ignore"):
            return ev(tree)


# ------------------------------------------------------------------------------------------- weaver's transform

def finalize_variable(values: np.ndarray, counts: np.ndarray, var: Variable, length: int | None,
                      pad_mode: str) -> np.ndarray:
    """One variable as weaver's `_finalize_inputs` leaves it (WC4 dataset.py, tools.py `_clip`, `_pad`,
    `_repeat_pad`): values (n, K) whose first counts[i] entries of row i are real; returns (n, length) float64, or
    (n,) for a per-jet variable when length is None."""
    n, width = values.shape
    real = np.arange(width) < counts[:, None]
    if var.center is not None:
        with np.errstate(invalid="ignore"):
            values = np.clip((values - var.center) * var.scale, var.min, var.max)
    if np.isnan(values[real]).any():  # weaver: "Found NaN in ..., silently converting it to 0."
        values = np.nan_to_num(values)
    if length is None:
        return values[:, 0]
    if pad_mode == "wrap":
        flat = values[real]
        fill = np.tile(flat, -(-n * length // len(flat)))[:n * length].reshape(n, length) if len(flat) \
            else np.zeros((n, length))
    else:
        fill = np.full((n, length), var.pad_value)
    m = min(width, length)
    fill[:, :m] = np.where(real[:, :m], values[:, :m], fill[:, :m])
    return fill


def build_inputs(mapping: InputMapping, sample, rows, names=None) -> dict[str, np.ndarray]:
    """{input name: float32 array} for jets `rows` of `sample` (an index array or slice), for the groups `names`
    (default all); shapes (n, *group.shape())."""
    variables = SampleVariables(sample, rows, mapping)
    out = {}
    for name in names or mapping.groups:
        group = mapping.groups[name]
        columns = []
        for var in group.variables:
            values = variables.get(var.name, f"input '{name}'")
            if group.length is None and variables.level(values) == "particle":
                _fail(mapping.source, f"input '{name}' has no length but its variable '{var.name}' is per "
                                      "constituent: give the input a length")
            columns.append(finalize_variable(values, variables.counts(values), var, group.length, group.pad_mode))
        if group.length is None and len(columns) == 1 and group.channels_first:
            array = columns[0]
        else:
            array = np.stack(columns, axis=1 if group.channels_first else -1)
        out[name] = array.astype(np.float32)
    return out
