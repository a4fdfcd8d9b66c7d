"""Fixed-point words of Level-1 particle-flow candidates, as the constituent students receive them.

A jet constituent reaches an L1 jet tagger as the word of an L1 particle-flow (PUPPI) candidate. The widths and
LSBs are those of the CMS Phase-2 correlator (cmssw ``DataFormats/L1TParticleFlow/interface/datatypes.h``, namespace
``l1ct``: ``pt_t = ap_ufixed<14,12,AP_TRN,AP_SAT>``, ``eta_t = phi_t = ap_int<10>`` with
``ETAPHI_LSB = M_PI / 720``), with eta and phi taken relative to the jet axis:

=========  ==================  ===========  ==========================  ============================  =========
field      word type            LSB          range                      network value                  shift
=========  ==================  ===========  ==========================  ============================  =========
pt         ap_ufixed<14,12>     0.25 GeV     0 .. 4095.75 GeV (TRN,SAT)  code * 2^-7 = pT / 32 GeV     7
deta       ap_int<10>           pi/720 rad   -2.234 .. 2.230 (RND,SAT)   code * 2^-5 = deta / 0.1396   5
dphi       ap_int<10>           pi/720 rad   -2.234 .. 2.230 (RND,SAT)   code * 2^-5 = dphi / 0.1396   5
valid      1 bit                -            pT code != 0                0 or 1                        0
=========  ==================  ===========  ==========================  ============================  =========

pT is truncated toward zero (``AP_TRN``) and saturates, as ``pt_t`` does; the angles are rounded to the nearest
LSB (half away from zero) and saturate. The network sees each word with its binary point moved by ``shift``
bits (a wire relabelling in firmware, no logic), chosen so that a typical constituent of a 1 TeV jet gives values
of order one (pT 10-300 GeV -> 0.3-9; |deta| 0.02-0.4 -> 0.14-2.9): with 6-8-bit weights and activations of few
integer bits the network cannot scale tiny inputs up (demo, deep sets N = 16, one training each, +- 0.011: test
accuracy 0.593 with pT / 64 GeV and angles / 0.559, 0.611 with these shifts). Every network value is exactly
representable in the default student input type ``fixed<16,6>`` (10 fractional bits >= 7, angles within +-16); pT
saturates at 1024 GeV there (value 32), far above the constituents of the 800-1200 GeV jets but for the hardest one
of a few jets.

``valid`` is 1 for a candidate and 0 for an empty slot (L1 marks an empty candidate by pT code 0: the OR of the 14
pT bits). It lets a bias-free per-constituent layer have a bias on real constituents only, so padding stays zero
while the layer is no longer positively homogeneous in (pT, deta, dphi) -- without it, a ReLU network without bias
computes phi(a x) = a phi(x) and cannot, e.g., weigh a soft wide-angle constituent differently from a scaled-down
hard central one (same study: 0.582 without the flag, 0.611 with it).

``L1Word.check_input_type`` says whether an input type holds the words exactly.

The jet word (``L1_JET``, the last input slot of the constituent students) carries what the L1 jet builder knows
about the whole jet: its mass (``ap_ufixed<11,9>``, LSB 0.25 GeV, 0 .. 511.75 GeV, TRN, SAT; network value mass /
32 GeV, shift 7) from four running sums over all its candidates (``jet_summary``), its multiplicity
(``ap_ufixed<7,7>``, 0 .. 127 candidates, SAT; value n / 16, shift 4) and a jet flag (1 on the jet's slot); the
mass and multiplicity take the pT and deta columns of the constituents' slots, the flag one more column.

The jet data of l1forge have no particle type (events/README.md: pt, deta, dphi, energy), so the word has no
type bits; a 3-bit ``ParticleID`` as in ``l1ct`` would be one more field here.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from l1forge.quantize.fixed import FixedType

ETAPHI_LSB = math.pi / 720  # rad, l1ct::Scales::ETAPHI_LSB


@dataclasses.dataclass(frozen=True)
class WordField:
    """One field of the word: ``code`` = the physical value of constituent column ``column`` (0 pt, 1 deta, 2 dphi)
    in units of ``scale`` (``unit``) converted into the fixed-point ``type`` (quantize.fixed semantics: its rounding
    and overflow modes); network value ``code * 2**-shift``."""

    name: str
    type: str  # hls4ml syntax, e.g. "ufixed<14,12,TRN,SAT>"
    scale: float  # physical units per integer unit of the type
    unit: str
    shift: int
    column: int

    @property
    def fixed(self) -> FixedType:
        return FixedType.parse(self.type)

    @property
    def width(self) -> int:
        return self.fixed.width

    @property
    def signed(self) -> bool:
        return self.fixed.signed

    @property
    def lsb(self) -> float:
        """One code step in ``unit``."""
        return self.scale * self.fixed.lsb

    @property
    def min_code(self) -> int:
        return self.fixed.min_code

    @property
    def max_code(self) -> int:
        return self.fixed.max_code

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Physical values (``unit``) -> int64 codes of the word (rounded and saturated as ``type`` says)."""
        return self.fixed.from_float(np.asarray(values, np.float64) / self.scale)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


PT = WordField("pt", "ufixed<14,12,TRN,SAT>", 1.0, "GeV", 7, 0)  # l1ct pt_t: LSB 0.25 GeV
DETA = WordField("deta", "fixed<10,10,RND_INF,SAT>", ETAPHI_LSB, "rad", 5, 1)  # l1ct eta_t in ETAPHI_LSB units
DPHI = WordField("dphi", "fixed<10,10,RND_INF,SAT>", ETAPHI_LSB, "rad", 5, 2)
# pT truncated to its 0.25 GeV LSB, saturated at 1: 1 exactly when the pt code is not 0
VALID = WordField("valid", "ufixed<1,1,TRN,SAT>", PT.lsb, "GeV", 0, 0)


@dataclasses.dataclass(frozen=True)
class L1Word:
    """A word of fixed-point fields (a constituent's, or the jet's), in the order the network sees them (last axis
    of the input); each field reads one physical column of the objects it encodes."""

    fields: tuple[WordField, ...] = (PT, DETA, DPHI, VALID)

    @property
    def n_features(self) -> int:
        """Values per constituent the network sees (last axis of its input)."""
        return len(self.fields)

    @property
    def link_fields(self) -> tuple[WordField, ...]:
        """The first field reading each physical column, by column: the fields on the link (a derived field, such
        as the valid flag from pT, costs no link bits)."""
        first = {}
        for f in self.fields:
            first.setdefault(f.column, f)
        return tuple(first[c] for c in sorted(first))

    @property
    def n_columns(self) -> int:
        """Physical constituent columns the word reads (pt, deta, dphi, ...)."""
        return self.link_fields[-1].column + 1

    @property
    def bits(self) -> int:
        """Bits of one word on the link."""
        return sum(f.width for f in self.link_fields)

    def encode(self, constituents: np.ndarray) -> np.ndarray:
        """(..., F>=n_columns) physical values [pt GeV, deta rad, dphi rad, ...] -> (..., n_features) int64 codes.

        Raises ValueError when the last axis has fewer features than the word reads."""
        constituents = np.asarray(constituents)
        if constituents.shape[-1] < self.n_columns:
            raise ValueError(f"constituents have {constituents.shape[-1]} features, the word needs {self.n_columns} "
                             f"({self.column_names})")
        return np.stack([f.encode(constituents[..., f.column]) for f in self.fields], axis=-1)

    @property
    def column_names(self) -> str:
        """The physical columns the word reads, by their link fields' names: "pt, deta, dphi"."""
        return ", ".join(f.name for f in self.link_fields)

    def to_network(self, codes: np.ndarray) -> np.ndarray:
        """int codes (..., n_features) -> float64 network values ``code * 2**-shift`` (exact)."""
        shifts = np.array([2.0 ** -f.shift for f in self.fields])
        return np.asarray(codes, np.float64) * shifts

    def check_input_type(self, input_type: FixedType) -> None:
        """Raise ValueError (one line) unless ``input_type`` holds every network value of every field exactly."""
        for f in self.fields:
            lo, hi = f.min_code * 2.0 ** -f.shift, f.max_code * 2.0 ** -f.shift
            if f.shift > input_type.frac:
                raise ValueError(f"input type {input_type} has {input_type.frac} fractional bits; word field "
                                 f"'{f.name}' needs {f.shift}")
            if f.name != "pt" and (lo < input_type.min_value or hi > input_type.max_value):
                raise ValueError(f"input type {input_type} cannot hold word field '{f.name}' ({lo} .. {hi})")

    def as_dict(self) -> dict:
        return {"bits": self.bits, "fields": [f.as_dict() for f in self.fields]}


L1_CONSTITUENT = L1Word()

# The jet word: what the L1 jet builder knows about the whole jet and the N leading constituents do not show. The
# jet's mass sets W/Z/top apart (a pair sum over all its candidates, which a deep set of the leading ones does not
# learn: float study, 32 constituents, 0.695 -> 0.729 with mass and multiplicity); the multiplicity sets quark from
# gluon jets. Columns of ``jet_summary``: 0 mass (GeV), 1 multiplicity (candidates).
MASS = WordField("mass", "ufixed<11,9,TRN,SAT>", 1.0, "GeV", 7, 0)  # LSB 0.25 GeV, 0 .. 511.75; value mass / 32 GeV
MULTIPLICITY = WordField("multiplicity", "ufixed<7,7,TRN,SAT>", 1.0, "candidates", 4, 1)  # 0 .. 127; value n / 16
# the jet flag, last: 1 on the jet's slot (multiplicity >= 1, saturated), 0 on the constituents' slots: the jet
# slot's own bias, as VALID is a constituent's
JET = WordField("jet", "ufixed<1,1,TRN,SAT>", 1.0, "candidates", 0, 1)
L1_JET = L1Word((MASS, MULTIPLICITY, JET))


def jet_summary(constituents: np.ndarray, n_constituents: np.ndarray) -> np.ndarray:
    """(jets, 2) [mass GeV, multiplicity] of each jet from its candidates (jets, M, F) [pt, deta, dphi, ...] (all M
    stored, rows past ``n_constituents`` ignored): the candidates counted, and the mass of massless candidates in
    the small-angle limit, m^2 = sum_{i<j} pt_i pt_j dR_ij^2 = S0 S2 - |S1|^2 with S0 = sum pt, S1 = sum pt (deta,
    dphi), S2 = sum pt (deta^2 + dphi^2): four running sums over the candidates, as a jet builder accumulates its
    pT. Invariant under rotations of the (deta, dphi) plane about the axis."""
    c = np.asarray(constituents, np.float64)
    real = np.arange(c.shape[1])[None, :] < np.asarray(n_constituents)[:, None]
    pt, deta, dphi = (np.where(real, c[..., i], 0.0) for i in range(3))
    m2 = pt.sum(1) * (pt * (deta**2 + dphi**2)).sum(1) - (pt * deta).sum(1) ** 2 - (pt * dphi).sum(1) ** 2
    return np.stack([np.sqrt(np.maximum(m2, 0.0)), real.sum(1)], axis=1)


def constituent_inputs(constituents: np.ndarray, n_constituents: np.ndarray, n: int,
                       word: L1Word = L1_CONSTITUENT, jet: L1Word | None = None) -> np.ndarray:
    """The network input of ``n`` slots per jet: (jets, n, word.n_features) float64, the words of the ``n`` leading
    constituents; with a jet word ``jet`` (its last field a flag, as ``L1_JET``'s), (jets, n, word.n_features + 1):
    slots 0..n-2 the words of the ``n - 1`` leading constituents and 0 in the last column, slot n-1 the jet's word
    (``jet_summary``): its other fields in the first columns (the mass where a constituent has pT, the multiplicity
    where it has deta), zeros, and its flag (1) in the last column. The jet takes the last constituent's slot, so the
    slot count, and the firmware's division in the average pooling, stay a power of two (exact: the firmware equals
    the QKeras model bit for bit; with an (n + 1)-th slot it truncates the mean over n + 1, and 3% of the demo's test
    jets differed), and sharing the columns keeps the first layer's multipliers (deep sets, 16 constituents, two
    seeds each: 0.651 this way, 0.647 with the jet word in columns of its own, 0.621 without it).

    ``constituents`` (jets, M, F) physical values, pT-ordered (decreasing), zero-padded beyond ``n_constituents``
    (jets,); rows past ``n_constituents`` are set to zero whatever they hold, so padding is all-zero words. Raises
    ValueError when ``n`` > M (more constituents asked than stored), ``n`` < 2 with a jet word, or F <
    word.n_columns.
    """
    constituents = np.asarray(constituents)
    if constituents.ndim != 3:
        raise ValueError(f"constituents must be (jets, constituents, features), got shape {constituents.shape}")
    if n < 1 or n > constituents.shape[1]:
        raise ValueError(f"n_constituents={n} but {constituents.shape[1]} constituents are stored per jet")
    if jet is not None and n < 2:
        raise ValueError(f"n_constituents={n}: the jet word takes the last of the n slots, so n must be at least 2")
    k = n if jet is None else n - 1  # constituent slots
    codes = word.encode(constituents[:, :k])
    real = np.arange(k)[None, :] < np.asarray(n_constituents)[:, None]
    x = word.to_network(np.where(real[..., None], codes, 0))
    if jet is None:
        return x
    jet_values = jet.to_network(jet.encode(jet_summary(constituents, n_constituents)))
    out = np.zeros((len(x), n, word.n_features + 1))
    out[:, :k, :-1] = x
    out[:, k, : jet.n_features - 1] = jet_values[:, :-1]
    out[:, k, -1] = jet_values[:, -1]
    return out
