"""A teacher from elsewhere: any ONNX classifier run on the flow's jet sample, or a file of its precomputed outputs.

    logits = onnx_teacher_predictions("part.onnx", sample, "JetClass_kin.yaml")   # (N, n_classes) float32
    logits = precomputed_teacher_logits("scores.h5", sample)                      # the same from a file
    result = teach_external("part.onnx", sample, out_dir, mapping="JetClass_kin.yaml")  # writes predictions.h5

`sample` is the flow's `events.schema.JetSample`. An ONNX teacher's inputs are built by a mapping
(teachers/mapping.py: a weaver-core data configuration or l1forge's own); without one, the inputs of the flow's own
teacher export (`particles`, `mask`, `jet_features`) are filled. Run batched through onnxruntime
(CUDAExecutionProvider where onnxruntime has it and device is auto or cuda, else CPUExecutionProvider).

The batch: a first dimension fixed to 1 is an export that accepts only batch 1; so is one that declares a dynamic
batch but gives, on a batch of PROBE_JETS jets, an error or other outputs than jet by jet (weaver-core <= 0.5.2
traced its export at batch 1 and some graphs keep that size; ../shared/data-layouts.md 5b). Both are said in one
warning line and run jet by jet (slow, but exact); a first dimension fixed to B > 1 runs in batches of B.

Outputs -> logits (N, n_classes) in the sample's class order: where the export ends in a Softmax (weaver-core's do:
its output `softmax` = torch.softmax in `for_inference` mode), or every row lies in [0, 1] and sums to 1, or the
mapping says `output: probabilities`, logits = log(p) (exact up to a per-jet constant, which softmax and the
distillation loss ignore; p is floored at the float32 tiny). A single score per jet (N,) or (N, 1) on a two-class
sample is the second class's sigmoid probability or logit: logits = (0, logit). The teacher's class names (the
weaver config's `labels.value`, the mapping's `classes`, an HDF5 `class_names` attribute, weaver's `score_<label>`
columns) select and order its columns by the sample's class names (prefixes label_, jet_is, is_, j_ ignored, case
ignored); without names its outputs must be the sample's classes in order.

Bad input is a `TeacherError`, one line naming the file and the input or output, before any student trains: an
ONNX input the mapping does not fill or fills with another shape, a variable the sample cannot provide, a class
count or names that do not match the sample's, NaN/Inf in the inputs or the outputs, a file of outputs with another
number of rows than the sample.
"""

from __future__ import annotations

import logging
import os
import pathlib
import re
import time

import h5py
import numpy as np

from l1forge.core.artifacts import atomic_path

from .mapping import InputMapping, MappingError, build_inputs, flow_mapping, read_mapping

log = logging.getLogger("l1forge")

PROBE_JETS = 4                  # jets run as one batch and one by one to test the batch dimension
PROBE_TOLERANCE = 1e-4          # max |batched - single| / max(1, |single|) of an export that batches
SUM_TOLERANCE = 1e-4            # |row sum - 1| of outputs taken for probabilities
BATCH_SIZE = 1024
ONNX_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
              "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_}
FILE_SUFFIXES = (".npy", ".h5", ".hdf5", ".hdf", ".root", ".parquet")
PROBABILITY_KEYS = ("probabilities", "probs", "softmax")
OUTPUT_KEYS = ("logits", *PROBABILITY_KEYS, "scores", "predictions", "outputs")
_PREFIXES = re.compile(r"^(label_|jet_is|fj_is|is_|j_)")


class TeacherError(ValueError):
    """A teacher that cannot teach on this sample; the message is one line naming the file and the culprit."""


def _fail(path, message):
    raise TeacherError(f"{path}: {message}")


def _shape_text(shape) -> str:
    return "(" + ", ".join("N" if k == 0 and not isinstance(d, int) else str(d) for k, d in enumerate(shape)) + ")"


def onnx_providers(device: str = "auto") -> list[str]:
    """onnxruntime providers for device "auto" (CUDA where available, then CPU), "cpu" or "cuda"."""
    import onnxruntime as ort

    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; expected auto, cpu or cuda")
    available = ort.get_available_providers()
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise TeacherError(f"device cuda requested but onnxruntime {ort.__version__} has no CUDAExecutionProvider "
                           f"(providers: {', '.join(available)}; it comes with onnxruntime-gpu); use device cpu or "
                           "auto")
    cuda = device != "cpu" and "CUDAExecutionProvider" in available
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]


def _final_op(path, output_name: str) -> str | None:
    """The op that computes the ONNX output, looking through Identity/Cast/Reshape/Squeeze/Flatten nodes."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # noqa: BLE001 - onnxruntime read it; an older onnx may not: the numeric test decides
        return None
    producer = {out: node for node in graph.node for out in node.output}
    node, seen = producer.get(output_name), 0
    while node is not None and node.op_type in ("Identity", "Cast", "Reshape", "Squeeze", "Flatten") and seen < 16:
        node, seen = producer.get(node.input[0]), seen + 1
    return None if node is None else node.op_type


def _normal(name: str) -> str:
    return _PREFIXES.sub("", str(name).lower())


def class_columns(path, output: str, n_out: int, teacher_classes, sample_classes) -> tuple[np.ndarray, list]:
    """Teacher columns in the sample's class order, and the teacher's class names (or None)."""
    n_sample = len(sample_classes)
    named = ", ".join(map(str, sample_classes))
    if n_out < n_sample or (teacher_classes is None and n_out != n_sample):
        _fail(path, f"output '{output}' scores {n_out} classes but the jet sample has {n_sample} ({named}): the "
                    "teacher must score the sample's classes (or name its classes, classes: [...], to select them)")
    if teacher_classes is None:
        return np.arange(n_sample), None
    teacher_classes = list(teacher_classes)
    if len(teacher_classes) != n_out:
        _fail(path, f"output '{output}' scores {n_out} classes but the teacher's class names are "
                    f"{len(teacher_classes)} ({', '.join(map(str, teacher_classes))})")
    index = {_normal(c): k for k, c in enumerate(teacher_classes)}
    missing = [c for c in sample_classes if _normal(c) not in index]
    if missing:
        _fail(path, f"the teacher's classes ({', '.join(map(str, teacher_classes))}) do not include the sample's "
                    f"class '{missing[0]}' (sample: {named}); give the teacher's class order (classes: [...])")
    return np.array([index[_normal(c)] for c in sample_classes]), teacher_classes


def outputs_to_logits(path, output: str, raw: np.ndarray, kind: str, teacher_classes, sample_classes,
                      final_op: str | None = None) -> tuple[np.ndarray, dict]:
    """(N, n_classes) float32 logits in the sample's class order from a teacher's raw outputs (N, K), (N, 1) or (N,).

    kind: "logits", "probabilities" or "auto" (probabilities where `final_op` is Softmax/Sigmoid or every row is in
    [0, 1] and sums to 1; a single score in [0, 1] is a probability). Returns (logits, facts for provenance)."""
    raw = np.asarray(raw)
    if raw.ndim == 1:
        raw = raw[:, None]
    if raw.ndim != 2 or not np.issubdtype(raw.dtype, np.number):
        _fail(path, f"output '{output}' has shape {raw.shape} and dtype {raw.dtype}, expected (N, classes) numbers")
    raw = raw.astype(np.float64)
    bad = ~np.isfinite(raw)
    if bad.any():
        _fail(path, f"output '{output}' holds {int(bad.sum())} NaN/Inf values (first at jet "
                    f"{int(np.argwhere(bad)[0][0])})")
    if kind == "auto":
        if final_op in ("Softmax", "Sigmoid"):
            kind, reason = "probabilities", f"the export ends in {final_op}"
        elif final_op == "LogSoftmax":
            kind, reason = "logits", "the export ends in LogSoftmax"
        elif len(raw) and raw.min() >= 0 and raw.max() <= 1 and (
                raw.shape[1] == 1 or np.abs(raw.sum(1) - 1).max() < SUM_TOLERANCE):
            kind, reason = "probabilities", "rows in [0, 1] summing to 1" if raw.shape[1] > 1 else "scores in [0, 1]"
        else:
            kind, reason = "logits", "outputs are not probabilities"
    else:
        reason = "as configured"
    if raw.shape[1] == 1:  # one score per jet: the second class's sigmoid probability or logit
        if len(sample_classes) != 2:
            _fail(path, f"output '{output}' has one score per jet but the jet sample has {len(sample_classes)} "
                        "classes: a single score teaches two classes only")
        score = raw[:, 0]
        if kind == "probabilities":
            p = np.clip(score, np.finfo(np.float32).tiny, 1 - np.finfo(np.float32).eps)
            score = np.log(p) - np.log1p(-p)
        raw = np.stack([np.zeros_like(score), score], 1)
        kind = "logits"
        teacher_classes = teacher_classes if teacher_classes is not None and len(teacher_classes) == 2 else None
    columns, names = class_columns(path, output, raw.shape[1], teacher_classes, sample_classes)
    raw = raw[:, columns]
    logits = np.log(np.maximum(raw, np.finfo(np.float32).tiny)) if kind == "probabilities" else raw
    facts = {"outputs_are": kind, "why": reason, "teacher_classes": names,
             "class_columns": columns.tolist()}
    return logits.astype(np.float32), facts


# ------------------------------------------------------------------------------------------------- ONNX teacher

class ExternalTeacher:
    """An ONNX classifier and the mapping that builds its inputs from the sample.

    model: path of the .onnx file. mapping: a weaver-core data config or l1forge mapping (path, dict or
    InputMapping), or None for the flow's own export inputs. classes: the teacher's output order (overrides the
    mapping's). output: "auto", "logits" or "probabilities" (overrides the mapping's unless "auto").
    Opening checks that the file is a model and that the mapping fills each of its inputs; `check(sample)` builds
    and runs the inputs of PROBE_JETS jets (shapes, batch, classes); `logits(sample)` runs every jet.
    """

    def __init__(self, model, mapping=None, classes=None, output: str = "auto", device: str = "auto",
                 batch_size: int = BATCH_SIZE):
        import onnxruntime as ort

        self.path = pathlib.Path(model)
        if not self.path.is_file():
            _fail(self.path, "no such ONNX model")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # no shape warnings per batch (dynamo exports declare the traced output shape)
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        options.intra_op_num_threads = int(os.environ.get("L1FORGE_TORCH_THREADS", threads))
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=onnx_providers(device))
        except TeacherError:
            raise
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises several kinds on a file that is not a model
            _fail(self.path, f"not a readable ONNX model ({' '.join(str(exc).split())[:300]})")
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        try:
            self.mapping = None if mapping is None else read_mapping(mapping)
        except MappingError as err:
            raise TeacherError(str(err)) from None
        self.classes = classes if classes is not None else (self.mapping.classes if self.mapping else None)
        self.output = output if output != "auto" or self.mapping is None else self.mapping.output
        outputs = [o.name for o in self.session.get_outputs()]
        self.output_name = (self.mapping.output_name if self.mapping else None) or outputs[0]
        if self.output_name not in outputs:
            _fail(self.path, f"has no output '{self.output_name}' (outputs: {', '.join(outputs)})")
        self.batch_size, self.batch_one, self._checked = batch_size, None, None
        if self.mapping is not None:
            self._check_names(self.mapping)

    def describe(self) -> dict:
        """The model's ONNX inputs and outputs (name, shape with N for a dynamic dimension, type), for provenance."""
        def text(args):
            return [{"name": a.name, "shape": [d if isinstance(d, int) else str(d) for d in a.shape], "type": a.type}
                    for a in args]

        return {"inputs": text(self.session.get_inputs()), "outputs": text(self.session.get_outputs()),
                "output": self.output_name, "providers": self.session.get_providers()}

    def _check_names(self, mapping: InputMapping):
        for name, arg in self.inputs.items():
            if name not in mapping.groups:
                _fail(self.path, f"ONNX input '{name}' {_shape_text(arg.shape)} is not filled by the mapping "
                                 f"{mapping.source} (it fills {', '.join(mapping.groups)}); add it to its inputs")
            if arg.type not in ONNX_TYPES:
                _fail(self.path, f"ONNX input '{name}' has type {arg.type}, which l1forge does not fill")

    def mapping_for(self, sample) -> InputMapping:
        if self.mapping is None:
            try:
                self.mapping = flow_mapping(list(self.inputs), sample.feature_names, sample.constituents.shape[1])
            except MappingError as err:
                _fail(self.path, str(err).removeprefix("<flow mapping>: "))
            self._check_names(self.mapping)
        return self.mapping

    def feeds(self, sample, rows) -> dict[str, np.ndarray]:
        """{ONNX input: array} for jets `rows`: built by the mapping, shapes and types checked against the model."""
        mapping = self.mapping_for(sample)
        try:
            built = build_inputs(mapping, sample, rows, list(self.inputs))
        except MappingError as err:
            raise TeacherError(str(err)) from None
        feeds = {}
        for name, array in built.items():
            arg, group = self.inputs[name], mapping.groups[name]
            declared = list(arg.shape)
            if len(declared) == array.ndim - 1:  # a one-channel group fills an input without a channel axis
                axis = 1 if group.channels_first else array.ndim - 1
                if array.shape[axis] == 1:
                    array = np.squeeze(array, axis)
            wrong = len(declared) != array.ndim or any(
                isinstance(d, int) and d != s for d, s in zip(declared[1:], array.shape[1:]))
            if wrong:
                _fail(self.path, f"ONNX input '{name}' has shape {_shape_text(declared)} but the mapping "
                                 f"{mapping.source} fills it with {_shape_text(('N', *array.shape[1:]))}")
            bad = ~np.isfinite(array.reshape(len(array), -1)).all(1)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                jet = np.arange(len(sample.labels))[rows][row]
                _fail(mapping.source, f"input '{name}' holds NaN/Inf for jet {jet} (a variable's expression undefined "
                                      "there, e.g. log of 0)")
            feeds[name] = array.astype(ONNX_TYPES[arg.type], copy=False)
        return feeds

    def _run(self, feeds) -> np.ndarray:
        return self.session.run([self.output_name], feeds)[0]

    def _run_padded(self, feeds, size: int) -> np.ndarray:
        """Outputs of a batch of up to `size` jets for an export whose batch is fixed to `size` (last jet repeated)."""
        n = len(next(iter(feeds.values())))
        if n < size:
            feeds = {k: np.concatenate([v, np.repeat(v[-1:], size - n, 0)]) for k, v in feeds.items()}
        return self._run(feeds)[:n]

    def _fixed_batch(self) -> int | None:
        fixed = {a.shape[0] for a in self.inputs.values() if a.shape and isinstance(a.shape[0], int)}
        return min(fixed) if fixed else None

    def check(self, sample) -> dict:
        """Build and run the inputs of the first PROBE_JETS jets: input shapes, types and values, whether the export
        batches (else `batch_one` says why, and jets run one by one), the output's classes against the sample's.
        Returns describe() plus batch, batch_one, n_outputs. TeacherError on any mismatch."""
        n = min(PROBE_JETS, len(sample.labels))
        if n == 0:
            _fail(self.path, "the jet sample has no jets")
        feeds = self.feeds(sample, np.arange(n))
        fixed = self._fixed_batch()
        try:
            single = self._run_padded(feeds, fixed) if fixed and fixed > 1 else np.concatenate(
                [self._run({k: v[i:i + 1] for k, v in feeds.items()}) for i in range(n)])
        except Exception as exc:  # noqa: BLE001 - onnxruntime's errors name the node
            _fail(self.path, f"running it on the inputs of mapping {self.mapping.source} fails: "
                             f"{' '.join(str(exc).split())[:300]}")
        outputs_to_logits(self.path, self.output_name, single, self.output, self.classes, sample.class_names,
                          _final_op(self.path, self.output_name))  # classes and finite outputs, before the batch
        if fixed == 1:
            self.batch_one = "its inputs declare a fixed first dimension of 1"
        elif fixed is None and n > 1:
            try:
                batched = self._run(feeds)
                diff = np.abs(batched - single) / np.maximum(1, np.abs(single)) if batched.shape == single.shape \
                    else None
                if diff is None:
                    self.batch_one = f"a batch of {n} jets gives outputs of shape {batched.shape}"
                elif not diff.max() < PROBE_TOLERANCE:
                    self.batch_one = f"a batch of {n} jets gives other outputs than jet by jet (max {diff.max():.3g})"
            except Exception as exc:  # noqa: BLE001
                self.batch_one = f"a batch of {n} jets fails ({' '.join(str(exc).split())[:160]})"
        if self.batch_one:
            log.warning("%s: the export accepts only batch 1 (%s; weaver-core <= 0.5.2 traced exports at batch 1): "
                        "running jet by jet; re-export with a dynamic batch (weaver-core >= 0.5.3) to batch it",
                        self.path, self.batch_one)
        facts = {**self.describe(), "batch": 1 if self.batch_one else (fixed or self.batch_size),
                 "batch_one": self.batch_one, "n_outputs": int(np.prod(single.shape[1:]))}
        self._checked = (sample, facts)
        return facts

    def raw_outputs(self, sample) -> np.ndarray:
        """The model's output for every jet of the sample, in order (after `check`)."""
        fixed = self._fixed_batch()
        size = 1 if self.batch_one else (fixed or self.batch_size)
        out, n = [], len(sample.labels)
        for a in range(0, n, size):
            feeds = self.feeds(sample, np.arange(a, min(a + size, n)))
            out.append(self._run_padded(feeds, fixed) if fixed and fixed > 1 else self._run(feeds))
        return np.concatenate(out)

    def logits(self, sample) -> tuple[np.ndarray, dict]:
        """(N, n_classes) float32 logits in the sample's class order, and the facts of the run for provenance."""
        t0 = time.time()
        facts = self._checked[1] if self._checked and self._checked[0] is sample else self.check(sample)
        raw = self.raw_outputs(sample)
        seconds = time.time() - t0
        logits, more = outputs_to_logits(self.path, self.output_name, raw, self.output, self.classes,
                                         sample.class_names, _final_op(self.path, self.output_name))
        return logits, {**facts, **more, "mapping": self.mapping.source, "mapping_format": self.mapping.format,
                        "mapping_notes": self.mapping.notes, "seconds": seconds,
                        "jets_per_s": len(raw) / max(seconds, 1e-9)}


def onnx_teacher_predictions(model_onnx, sample, mapping=None, **options) -> np.ndarray:
    """(N, n_classes) float32 logits of an ONNX classifier on every jet of `sample`, inputs built by `mapping`
    (see ExternalTeacher for `options`: classes, output, device, batch_size)."""
    return ExternalTeacher(model_onnx, mapping, **options).logits(sample)[0]


# -------------------------------------------------------------------------------------------- precomputed file

def read_outputs(path, key: str | None = None) -> tuple[np.ndarray, str, list | None, str]:
    """A file of teacher outputs: (array (N, K) or (N,), kind "logits"/"probabilities"/"auto", class names or None,
    the key read). .npy: the array (kind auto). HDF5: dataset `key`, else the first of OUTPUT_KEYS present, else the
    file's only dataset; kind from its name (logits; probabilities, probs, softmax; else auto); class names from its
    `class_names` attribute. .root / .parquet: weaver-core's --predict output, columns score_<label> (probabilities)."""
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        _fail(path, "no such file of teacher outputs")
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False), "auto", None, "array"
        except (OSError, ValueError) as exc:
            _fail(path, f"not a readable .npy array ({' '.join(str(exc).split())})")
    if suffix in (".h5", ".hdf5", ".hdf"):
        try:
            f = h5py.File(path, "r")
        except (OSError, ValueError) as exc:
            _fail(path, f"not a readable HDF5 file ({' '.join(str(exc).split())})")
        with f:
            datasets = [k for k in f if isinstance(f[k], h5py.Dataset)]
            if key is None:
                key = next((k for k in OUTPUT_KEYS if k in datasets), datasets[0] if len(datasets) == 1 else None)
            if key is None or key not in datasets:
                _fail(path, f"no dataset '{key}'" if key else f"no dataset of teacher outputs "
                            f"({' or '.join(OUTPUT_KEYS)}; datasets: {', '.join(datasets) or 'none'}): name one")
            names = f[key].attrs.get("class_names")
            names = None if names is None else [v.decode() if isinstance(v, bytes) else str(v) for v in names]
            kind = "logits" if key == "logits" else "probabilities" if key in PROBABILITY_KEYS else "auto"
            return f[key][()], kind, names, key
    if suffix in (".root", ".parquet"):
        if suffix == ".root":
            from l1forge.events.layout_jetclass import open_tree

            try:
                table = open_tree(path, None).arrays(filter_name="score_*", library="np")
            except ValueError as err:
                raise TeacherError(str(err)) from None
        else:
            import awkward as ak

            array = ak.from_parquet(path)
            table = {k: ak.to_numpy(array[k]) for k in array.fields if k.startswith("score_")}
        if not table:
            _fail(path, "no score_<label> columns (weaver-core's --predict output)")
        names = list(table)
        return np.stack([table[k] for k in names], 1), "probabilities", [k.removeprefix("score_") for k in names], \
            "score_*"
    _fail(path, f"not a teacher: expected an .onnx model or outputs in {', '.join(FILE_SUFFIXES)}")


def precomputed_teacher_logits(path, sample, key: str | None = None, classes=None,
                               output: str = "auto") -> tuple[np.ndarray, dict]:
    """(N, n_classes) float32 logits from a file of precomputed outputs, one row per jet of `sample` in its order,
    and the facts for provenance. classes / output override what the file says (see `read_outputs`)."""
    raw, kind, names, key = read_outputs(path, key)
    n = len(sample.labels)
    if raw.ndim == 0 or len(raw) != n:
        _fail(path, f"'{key}' has {raw.shape[0] if raw.ndim else 0} rows but the jet sample has {n} jets (one row "
                    "per jet, in the sample's order)")
    logits, facts = outputs_to_logits(path, key, raw, kind if output == "auto" else output,
                                      classes if classes is not None else names, sample.class_names)
    return logits, {**facts, "key": key}


# ----------------------------------------------------------------------------------------------- entry point

def _records(*paths) -> list[dict]:
    from l1forge.events.external import file_records

    return file_records([pathlib.Path(p) for p in paths if p is not None and pathlib.Path(p).is_file()], sha256=True)


def check_external(teacher, sample=None, mapping=None, classes=None, output: str = "auto", key: str | None = None,
                   device: str = "auto") -> dict:
    """Refuse a bad teacher in one line (TeacherError) before anything trains; returns the facts found.

    Without a sample (at configuration time): the file exists and is a teacher (.onnx readable by onnxruntime, whose
    every input the mapping fills; or a file of outputs by its suffix). With the sample: an ONNX teacher's inputs
    are built and run on PROBE_JETS jets (shapes, values, batch, classes: `ExternalTeacher.check`); a file of
    outputs is read whole (rows, classes, NaN/Inf)."""
    teacher = pathlib.Path(teacher)
    if teacher.suffix.lower() == ".onnx":
        model = ExternalTeacher(teacher, mapping, classes, output, device)
        return model.describe() if sample is None else model.check(sample)
    if teacher.suffix.lower() not in FILE_SUFFIXES:
        _fail(teacher, f"not a teacher: expected an .onnx model or outputs in {', '.join(FILE_SUFFIXES)}")
    if not teacher.is_file():
        _fail(teacher, "no such file of teacher outputs")
    return {} if sample is None else precomputed_teacher_logits(teacher, sample, key, classes, output)[1]


def teach_external(teacher, sample, out_dir, mapping=None, classes=None, output: str = "auto", key: str | None = None,
                   device: str = "auto", batch_size: int = BATCH_SIZE) -> dict:
    """The flow's teacher artifacts from a teacher trained elsewhere: out_dir/predictions.h5 (dataset `logits`
    float32 (N, n_classes) for every jet in the sample's order, as teachers/train.py writes; attrs kind "external",
    source) and the stage result: kind, source ("onnx" or "file"), files (path, size, sha256 of the model or file
    and the mapping), the ONNX inputs and outputs, batch, batch_one, outputs_are and why, teacher_classes,
    class_columns, seconds, jets_per_s, device. `teacher`: an .onnx model (inputs built by `mapping`) or a file of
    outputs (.npy, .h5, weaver's .root/.parquet predict output; `key` names the dataset)."""
    t0 = time.time()
    teacher = pathlib.Path(teacher)
    if teacher.suffix.lower() == ".onnx":
        model = ExternalTeacher(teacher, mapping, classes, output, device, batch_size)
        logits, facts = model.logits(sample)
        cuda = "CUDAExecutionProvider" in facts["providers"]
        facts = {"source": "onnx", **facts, "device": "cuda" if cuda else "cpu"}
        mapping_file = mapping if isinstance(mapping, (str, pathlib.Path)) else None
    else:
        logits, facts = precomputed_teacher_logits(teacher, sample, key, classes, output)
        facts, mapping_file = {"source": "file", **facts}, None
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "predictions.h5") as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("logits", data=logits)
        f.attrs["kind"], f.attrs["source"] = "external", str(teacher)
    data = teacher.with_name(teacher.name + ".data")  # the weights of a dynamo export, beside it
    return {"kind": "external", **facts, "files": _records(teacher, data, mapping_file), "n_jets": len(logits),
            "n_classes": logits.shape[1], "seconds": time.time() - t0}
