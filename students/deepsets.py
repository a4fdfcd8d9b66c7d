"""Constituent students: a quantization-aware QKeras deep-sets network on the L1 words of the leading constituents.

Input: (N, 4) per jet, the words of ``l1forge.quantize.l1words`` (pT, deta, dphi relative to the jet axis, valid
flag) of the N leading constituents, pT-ordered and zero-padded (``ConstituentInputs``); with the jet word
(``student.jet_word``), (N, 5): the last slot holds the jet's mass and multiplicity (in the pT and deta columns) in
place of the N-th constituent, and a jet flag (a fifth column, 0 on the constituents), so the same shared phi layers
embed it and the pooled sum carries it to the head (one input tensor, as hls4ml's single-input firmware path takes;
N stays a power of two, so the pooling's division is exact). Network (Zaheer et al.
2017, "Deep Sets"; the particle-flow network of Komiske, Metodiev, Thaler 2019; its L1 form in arXiv 2402.01876):

    phi:   per-constituent QConv1D(kernel 1) + quantized ReLU blocks, weights shared by all N constituents
    pool:  GlobalAveragePooling1D over the N slots (permutation invariant)
    head:  QDense + quantized ReLU blocks, QDense to the logits

Masking: the phi layers have no bias, so a zero-padded constituent (an all-zero word) stays exactly zero through
every phi layer (ReLU(0) = 0, quantizers keep 0) and adds nothing to the pool: the average over the N slots is
(sum over the real constituents) / N, a constant scale the head absorbs; no mask input or division by the
multiplicity is needed in firmware (with N a power of two, 1/N is exact). The word's valid flag (1 on real
constituents, 0 on padding) gives the first layer a bias on real constituents only, and through its constant
channels every later phi layer too.

hls4ml 1.3.0 converts QConv1D(kernel 1) to a PointwiseConv1D and the average pooling to GlobalPooling1D (io_parallel),
both described by firmware/describe.py and run bit-exactly by the emulator.

The mixer family (``build_mixer``; MLP-Mixer, Tolstikhin et al. 2021, arXiv 2105.01601; linear in N like JEDI-linear,
arXiv 2508.15468) adds mixing across constituents: embed each constituent (pointwise, bias-free), transpose
(Keras Permute, hls4ml Transpose: wiring), a pointwise layer over the N constituent slots of each feature (token
mixing, N -> N, with bias), transpose back, pointwise channel mixing, then the same pooling and head. Token mixing
sees the slots in pT order, so the mixer is not permutation invariant: it uses the ordering L1 delivers.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

from l1forge.core.artifacts import write_json_atomic
from l1forge.quantize.l1words import L1_CONSTITUENT, L1_JET, L1Word, WordField, constituent_inputs
from l1forge.quantize.precision import Precision

FAMILIES = ("hlf", "deepsets", "mixer")


@dataclasses.dataclass
class ConstituentInputs:
    """Preprocessing of a constituent student: constituents (jets, M, F) -> network input (jets, n, word.n_features),
    or with the jet word ``jet`` (jets, n, word.n_features + 1): n - 1 constituents and the jet (quantize/l1words.py
    ``constituent_inputs``).

    Stands where the HLF student's ``Standardizer`` stands (``train_student(..., preprocess=...)``, saved as
    ``preprocess.json``): no statistics, only the fixed-point words of quantize/l1words.py.
    """

    n: int
    word: L1Word = L1_CONSTITUENT
    jet: L1Word | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """The network input of one jet: (slots, values per slot)."""
        if self.jet is None:
            return self.n, self.word.n_features
        return self.n, self.word.n_features + 1

    def __call__(self, constituents: np.ndarray, n_constituents: np.ndarray | None = None) -> np.ndarray:
        """(jets, *shape) float32 network values; constituents past ``n_constituents`` (jets,) are zeroed (None: the
        padding as stored, which events/schema.py guarantees is zero). ValueError: see ``constituent_inputs``."""
        if n_constituents is None:
            n_constituents = (np.asarray(constituents)[..., 0] > 0).sum(axis=1)
        return constituent_inputs(constituents, n_constituents, self.n, self.word, self.jet).astype(np.float32)

    def save(self, path: pathlib.Path):
        jet = {} if self.jet is None else {"jet_word": self.jet.as_dict()}
        write_json_atomic(path, {"kind": "l1_constituents", "n": self.n, "word": self.word.as_dict(), **jet})

    @classmethod
    def load(cls, path) -> "ConstituentInputs":
        data = json.loads(pathlib.Path(path).read_text())
        # files written before fields named their column read pt, deta, dphi in that order
        fields = tuple(WordField(**{"column": i, **f}) for i, f in enumerate(data["word"]["fields"]))
        jet = data.get("jet_word")
        return cls(int(data["n"]), L1Word(fields), jet and L1Word(tuple(WordField(**f) for f in jet["fields"])))


def build_deepsets(n_constituents: int, n_features: int, n_outputs: int, phi=(32, 32), head=(32,),
                   precision: Precision = Precision(), name: str = "deepsets"):
    """The deep-sets student: input (n_constituents, n_features) -> (n_outputs,) logits; see the module docstring."""
    import tensorflow as tf
    from qkeras import QActivation, QConv1D

    from l1forge.students.model import dense_head

    inputs = tf.keras.Input((n_constituents, n_features), name="inputs")
    x = QActivation(precision.input_quantizer(), name="input_quant")(inputs)
    for i, width in enumerate(phi, start=1):
        x = QConv1D(width, 1, use_bias=False, kernel_quantizer=precision.weight_quantizer(),
                    kernel_initializer="lecun_uniform", name=f"phi{i}")(x)
        x = QActivation(precision.activation_quantizer(), name=f"phi_relu{i}")(x)
    x = tf.keras.layers.GlobalAveragePooling1D(name="pool")(x)
    logits = dense_head(x, head, n_outputs, precision, prefix="head", activation="head_relu")
    return tf.keras.Model(inputs, logits, name=name)


def checked_inputs(jets, n: int, input_type=None, word: L1Word = L1_CONSTITUENT,
                   jet: L1Word | None = None) -> ConstituentInputs:
    """``ConstituentInputs(n, word, jet)`` for a ``JetSample`` after the checks that make bad input one line:
    DataError naming the file and ``student.n_constituents`` when n exceeds the stored constituents, or the
    missing features when the file stores fewer constituent features than the word needs; ValueError naming
    ``student.input_type`` when the student's input type (a FixedType, if given) cannot hold the words exactly."""
    from l1forge.events.schema import DataError

    _, stored, n_features = jets.constituents.shape
    if not 1 <= n <= stored:
        raise DataError(f"{jets.path}: student.n_constituents={n} but the file stores {stored} constituents per jet")
    if jet is not None and n < 2:
        raise ValueError(f"student.n_constituents={n}: the jet word (student.jet_word) takes the last slot; use >= 2")
    if n_features < word.n_columns:
        raise DataError(f"{jets.path}: constituents have {n_features} features; the L1 word of a constituent student "
                        f"needs {word.n_columns} ({word.column_names})")
    if input_type is not None:
        try:
            for w in (word,) if jet is None else (word, jet):
                w.check_input_type(input_type)
        except ValueError as err:
            raise ValueError(f"student.input_type: {err}") from None
    return ConstituentInputs(n, word, jet)


def student_inputs(family: str, jets, n_constituents: int, input_type=None, jet_word: bool = False):
    """(raw inputs, feature names, preprocess) of a student family for ``train_student``: the 16 jet features with
    a fitted Standardizer (preprocess None) for "hlf"; the stored constituents (jets, 64, F) with their
    ``checked_inputs`` for the constituent students ("deepsets", "mixer"), with the jet word in the last slot
    (quantize/l1words.py ``L1_JET``) if ``jet_word``."""
    if family == "hlf":
        return jets.features, jets.feature_names, None
    if family in ("deepsets", "mixer"):
        jet = L1_JET if jet_word else None
        return jets.constituents, None, checked_inputs(jets, n_constituents, input_type, jet=jet)
    raise ValueError(f"student.family={family!r}: one of {', '.join(FAMILIES)}")


def load_preprocess(path):
    """The saved preprocessing of a student (``preprocess.json``): ConstituentInputs or Standardizer."""
    from l1forge.students.preprocess import Standardizer

    kind = json.loads(pathlib.Path(path).read_text()).get("kind")
    return ConstituentInputs.load(path) if kind == "l1_constituents" else Standardizer.load(path)


def build_mixer(n_constituents: int, n_features: int, n_outputs: int, phi=(16, 16), head=(32,),
                precision: Precision = Precision(), name: str = "mixer"):
    """The mixer student: input (n_constituents, n_features) -> (n_outputs,) logits. ``phi[0]`` is the embedding
    width, one token-mixing layer (N -> N over the constituent slots) follows it, then a channel-mixing layer per
    further ``phi`` entry; pooling and head as ``build_deepsets``."""
    import tensorflow as tf
    from qkeras import QActivation, QConv1D

    from l1forge.students.model import dense_head

    def pointwise(x, width, name, bias):
        x = QConv1D(width, 1, use_bias=bias, kernel_quantizer=precision.weight_quantizer(),
                    bias_quantizer=precision.weight_quantizer() if bias else None,
                    kernel_initializer="lecun_uniform", name=name)(x)
        return QActivation(precision.activation_quantizer(), name=f"{name}_relu")(x)

    inputs = tf.keras.Input((n_constituents, n_features), name="inputs")
    x = QActivation(precision.input_quantizer(), name="input_quant")(inputs)
    x = pointwise(x, phi[0], "embed", False)
    x = tf.keras.layers.Permute((2, 1), name="to_slots")(x)  # (features, constituents)
    x = pointwise(x, n_constituents, "token_mix", True)
    x = tf.keras.layers.Permute((2, 1), name="to_features")(x)  # (constituents, features)
    for i, width in enumerate(phi[1:], start=1):
        x = pointwise(x, width, f"channel_mix{i}", False)
    x = tf.keras.layers.GlobalAveragePooling1D(name="pool")(x)
    logits = dense_head(x, head, n_outputs, precision, prefix="head", activation="head_relu")
    return tf.keras.Model(inputs, logits, name=name)


def build_constituent_student(family: str, n_constituents: int, n_features: int, n_outputs: int, phi=(16, 16),
                              head=(32,), precision: Precision = Precision()):
    """``build_deepsets`` or ``build_mixer`` by family name; ValueError for any other."""
    builders = {"deepsets": build_deepsets, "mixer": build_mixer}
    if family not in builders:
        raise ValueError(f"student.family={family!r} is not a constituent student ({', '.join(builders)})")
    return builders[family](n_constituents, n_features, n_outputs, phi, head, precision)
