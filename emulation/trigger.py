"""The 40 MHz trigger model: timing against the board clock, and trigger rates from zero-bias-like scores.

Conventions (shared by every function and by ``StreamingRateCounter``):
- A crossing fires when its score is strictly greater than the threshold (``score > threshold``).
- Rate = firing fraction x n_bunches x 11.2456 kHz (``emulation.lhc``). Background scores stand for zero-bias
  crossings; optional per-crossing weights (e.g. cross-section / N generated of each mixed sample) are relative:
  the firing fraction is sum(w of firing) / sum(w), so only their ratios matter.
- Uncertainties are returned as ``err = [down, up]`` (shape (2,) or (2, n), matplotlib's asymmetric ``yerr``):
  unweighted, the Clopper-Pearson 68.27% interval of the binomial fraction; weighted, the symmetric
  sqrt(sum w^2 of firing) / sum(w).
- Thresholds found for a target rate are the lowest candidate threshold whose rate is <= target. In memory the
  candidates are the distinct scores: the rate is a step function, constant on [s_i, s_i+1) between distinct scores,
  so the returned score is the lowest threshold of all reals meeting the target.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import betaincinv

from l1forge.emulation.lhc import (
    BX_CLOCK_MHZ,
    HL_LHC_BUNCHES,
    HL_LHC_PILEUP,
    SIGMA_INEL_MB,
    AlgorithmBudget,
    clocks_per_crossing,
    zero_bias_rate_khz,
)

ONE_SIGMA_CL = math.erf(1 / math.sqrt(2))  # 0.6827
_DEFAULT = AlgorithmBudget("default")


# ---- input checks ---------------------------------------------------------------------------------------------------
def _scores(x, name: str, allow_empty: bool = False) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {x.shape}")
    if x.size == 0 and not allow_empty:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _weights(w, n: int, name: str = "weights", allow_zero_sum: bool = False) -> np.ndarray | None:
    if w is None:
        return None
    w = _scores(w, name, allow_empty=n == 0)
    if w.shape != (n,):
        raise ValueError(f"{name} has {w.size} entries for {n} scores")
    if np.any(w < 0):
        raise ValueError(f"{name} must be non-negative")
    if not allow_zero_sum and not w.sum() > 0:
        raise ValueError(f"{name} must have a positive sum")
    return w


def _positive(value, name: str) -> float:
    if not (isinstance(value, int | float | np.number) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name}={value!r} must be positive and finite")
    return float(value)


def _target(target_khz, n_bunches: int) -> float:
    zero_bias = zero_bias_rate_khz(n_bunches)
    if not (isinstance(target_khz, int | float | np.number) and 0 <= target_khz < zero_bias):
        raise ValueError(f"target_khz={target_khz!r} must be >= 0 and below the zero-bias rate {zero_bias:.0f} kHz")
    return float(target_khz)


# ---- fractions with uncertainties -----------------------------------------------------------------------------------
def clopper_pearson(k, n, cl: float = ONE_SIGMA_CL) -> tuple[np.ndarray, np.ndarray]:
    """Clopper-Pearson (exact binomial) central interval [low, high] of k successes in n trials (vectorised)."""
    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    alpha = 1.0 - cl
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(k > 0, betaincinv(k, n - k + 1, alpha / 2), 0.0)
        high = np.where(k < n, betaincinv(k + 1, n - k, 1 - alpha / 2), 1.0)
    return low, high


def _fraction(passed, passed_w2, total, weighted: bool) -> tuple[np.ndarray, np.ndarray]:
    """Fraction passed / total and its [down, up] error (see the module conventions)."""
    frac = np.asarray(passed, dtype=np.float64) / total
    if weighted:
        err = np.sqrt(passed_w2) / total
        return frac, np.stack([err, err])
    low, high = clopper_pearson(passed, total)
    return frac, np.stack([frac - low, high - frac])


# ---- timing ---------------------------------------------------------------------------------------------------------
def check_timing(
    latency_ns: float,
    ii_cycles: int,
    clock_mhz: float = _DEFAULT.clock_mhz,
    budget_ns: float = _DEFAULT.latency_budget_ns,
) -> dict:
    """Latency against the budget (latency == budget passes) and II against the cycles per 25 ns crossing.

    ii_max = floor(clock_mhz / 40 MHz) (``emulation.lhc.clocks_per_crossing``): 6 at 240 MHz, 9 at 360 MHz.
    """
    latency_ns, budget_ns = _positive(latency_ns, "latency_ns"), _positive(budget_ns, "budget_ns")
    if isinstance(ii_cycles, bool) or not isinstance(ii_cycles, int | np.integer) or ii_cycles < 1:
        raise ValueError(f"ii_cycles={ii_cycles!r} must be a positive integer")
    ii_max = clocks_per_crossing(clock_mhz)
    return {
        "clock_mhz": float(clock_mhz),
        "budget_ns": budget_ns,
        "latency_ns": latency_ns,
        "latency_ok": latency_ns <= budget_ns,
        "latency_margin_ns": budget_ns - latency_ns,
        "ii_cycles": int(ii_cycles),
        "ii_max": ii_max,
        "ii_ok": int(ii_cycles) <= ii_max,
    }


def candidate_throughput(firmware: dict, candidates_per_crossing: dict[str, float]) -> dict:
    """Candidates one instance of a per-candidate network takes per 25 ns crossing (``clocks_per_crossing`` // II),
    and the instances (and LUTs, absolute and in % of the part) needed for ``candidates_per_crossing`` ({key: the
    candidates of a crossing, e.g. their 99th percentile at a pileup}). ``firmware``: a summary firmware block
    (clock_mhz, ii_cycles, optional resources and utilisation_percent)."""
    per_instance = clocks_per_crossing(firmware["clock_mhz"]) // firmware["ii_cycles"]
    lut = (firmware.get("resources") or {}).get("LUT")
    lut_percent = (firmware.get("utilisation_percent") or {}).get("LUT")
    rows = {}
    for mu, n in candidates_per_crossing.items():
        instances = math.ceil(n / max(per_instance, 1))
        rows[mu] = {"candidates_p99": n, "instances": instances, "LUT": None if lut is None else instances * lut,
                    "LUT_percent_of_part": None if lut_percent is None else instances * lut_percent}
    return {"candidates_per_instance_per_crossing": per_instance, "clock_mhz": firmware["clock_mhz"],
            "ii_cycles": firmware["ii_cycles"], "per_pileup": rows}


# ---- rates in memory ------------------------------------------------------------------------------------------------
def _sums_above(scores, weights, thresholds):
    """(thresholds, firing count or weight, firing sum of w^2, total) at each threshold: one sort, suffix sums."""
    scores = _scores(scores, "scores")
    weights = _weights(weights, scores.size)
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    thresholds = np.unique(ordered) if thresholds is None else _scores(thresholds, "thresholds")
    first_above = np.searchsorted(ordered, thresholds, side="right")  # sorted index of the first score > threshold
    if weights is None:
        return thresholds, scores.size - first_above, None, scores.size
    w = weights[order]
    suffix = np.append(np.cumsum(w[::-1])[::-1], 0.0)  # suffix sums keep small tail rates accurate
    suffix2 = np.append(np.cumsum((w * w)[::-1])[::-1], 0.0)
    return thresholds, suffix[first_above], suffix2[first_above], suffix[0]


def _rates(passed, passed_w2, total, weighted: bool, n_bunches: int):
    frac, err = _fraction(passed, passed_w2, total, weighted)
    zero_bias = zero_bias_rate_khz(n_bunches)
    return frac * zero_bias, err * zero_bias


def _lowest_meeting(thresholds, passed, passed_w2, total, weighted: bool, n_bunches: int, target_khz: float):
    """Lowest threshold with rate <= target: (threshold, rate, [down, up] error), the error computed there only."""
    target_khz = _target(target_khz, n_bunches)
    ok = np.asarray(passed) / total * zero_bias_rate_khz(n_bunches) <= target_khz  # False...False, True...True
    if not ok.any():
        raise ValueError(f"target_khz={target_khz} is below the rate at the highest threshold; extend the thresholds")
    i = int(np.argmax(ok))
    rate, err = _rates(passed[i], None if passed_w2 is None else passed_w2[i], total, weighted, n_bunches)
    return float(thresholds[i]), float(rate), err


def rate_curve(scores, weights=None, n_bunches: int = HL_LHC_BUNCHES, thresholds=None):
    """Rates (kHz) at many thresholds: returns (thresholds, rate, rate_err) with rate_err of shape (2, n).

    thresholds defaults to the distinct scores, ascending; the counts take O((N + n) log N), and unweighted
    Clopper-Pearson errors about 10 us per threshold, so pass a grid for curves of millions of distinct scores.
    """
    thresholds, passed, passed_w2, total = _sums_above(scores, weights, thresholds)
    return (thresholds, *_rates(passed, passed_w2, total, weights is not None, n_bunches))


def rate_khz(scores, threshold: float, weights=None, n_bunches: int = HL_LHC_BUNCHES) -> tuple[float, np.ndarray]:
    """Rate (kHz) of crossings with score > threshold, and its [down, up] error."""
    _, rate, err = rate_curve(scores, weights, n_bunches, thresholds=[threshold])
    return float(rate[0]), err[:, 0]


def threshold_for_rate(
    scores, target_khz: float, weights=None, n_bunches: int = HL_LHC_BUNCHES
) -> tuple[float, float, np.ndarray]:
    """Lowest threshold (a distinct score, see module conventions) with rate <= target_khz.

    Returns (threshold, achieved rate in kHz, its [down, up] error). target_khz must be below the zero-bias rate.
    """
    return _lowest_meeting(*_sums_above(scores, weights, None), weights is not None, n_bunches, target_khz)


def rate_reduction(rate_khz: float, n_bunches: int | None = None) -> float:
    """Input rate / output rate. Default input: the full 40.079 MHz BX clock (every 25 ns slot, as the L1 input is
    usually quoted); with n_bunches, the colliding-crossing rate n_bunches x 11.2456 kHz instead (smaller by 2760/3564).
    """
    rate_khz = _positive(rate_khz, "rate_khz")
    reference = BX_CLOCK_MHZ * 1000.0 if n_bunches is None else zero_bias_rate_khz(n_bunches)
    return reference / rate_khz


def signal_efficiency(signal_scores, threshold: float, weights=None) -> tuple[float, np.ndarray]:
    """Fraction of signal with score > threshold, and its [down, up] error (Clopper-Pearson 68% if unweighted)."""
    scores = _scores(signal_scores, "signal_scores")
    weights = _weights(weights, scores.size)
    above = scores > threshold
    if weights is None:
        frac, err = _fraction(np.count_nonzero(above), None, scores.size, weighted=False)
    else:
        w = weights[above]
        frac, err = _fraction(w.sum(), (w * w).sum(), weights.sum(), weighted=True)
    return float(frac), err


# ---- rates from a stream --------------------------------------------------------------------------------------------
class StreamingRateCounter:
    """Rates from score chunks of a stream longer than memory, exact at a fixed, user-given threshold grid.

    The grid (strictly increasing) doubles as histogram edges: each score is counted in the bin (t_j-1, t_j] it
    falls in (under/overflow included), so the weighted count with score > t_j is exact for every grid threshold,
    memory is O(len(grid)) and ``add`` is O(chunk log grid). Conventions are those of the module; the binning
    approximation is only that thresholds are restricted to the grid:
    - ``rate_khz(t)`` off the grid returns the rate at the highest grid threshold <= t, an upper bound;
    - ``threshold_for_rate`` returns the lowest grid threshold meeting the target; the exact in-memory answer lies in
      (previous grid threshold, returned threshold], so a finer grid only lowers it.
    """

    def __init__(self, thresholds, n_bunches: int = HL_LHC_BUNCHES):
        self.thresholds = _scores(thresholds, "thresholds")
        if np.any(np.diff(self.thresholds) <= 0):
            raise ValueError("thresholds must be strictly increasing")
        zero_bias_rate_khz(n_bunches)  # validates n_bunches
        self.n_bunches = n_bunches
        self.n = 0
        self.weighted: bool | None = None  # fixed by the first non-empty chunk
        self._sum = np.zeros(self.thresholds.size + 1)  # per bin: counts, or sum of weights
        self._sum2 = np.zeros(self.thresholds.size + 1)  # per bin: sum of squared weights

    def add(self, scores_chunk, weights_chunk=None) -> None:
        scores = _scores(scores_chunk, "scores_chunk", allow_empty=True)
        weights = _weights(weights_chunk, scores.size, "weights_chunk", allow_zero_sum=True)
        if scores.size == 0:
            return
        if self.weighted is None:
            self.weighted = weights is not None
        elif self.weighted != (weights is not None):
            raise ValueError("weights_chunk must be given for every chunk or for none")
        bins = np.searchsorted(self.thresholds, scores, side="left")  # number of grid thresholds below each score
        size = self.thresholds.size + 1
        if weights is None:
            self._sum += np.bincount(bins, minlength=size)
        else:
            self._sum += np.bincount(bins, weights=weights, minlength=size)
            self._sum2 += np.bincount(bins, weights=weights * weights, minlength=size)
        self.n += scores.size

    def _sums(self):
        if self.n == 0:
            raise ValueError("no scores added yet")
        total = self._sum.sum()
        if not total > 0:
            raise ValueError("weights_chunk sum to zero over all chunks")
        above = np.cumsum(self._sum[::-1])[::-1][1:]  # above[j] = sum over the bins beyond t_j
        if not self.weighted:  # float counts are exact integers below 2**53
            return self.thresholds, np.rint(above).astype(np.int64), None, self.n
        return self.thresholds, above, np.cumsum(self._sum2[::-1])[::-1][1:], total

    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(thresholds, rate in kHz, [down, up] error) on the grid."""
        thresholds, passed, passed_w2, total = self._sums()
        return (thresholds, *_rates(passed, passed_w2, total, self.weighted, self.n_bunches))

    def rate_khz(self, threshold: float) -> tuple[float, np.ndarray]:
        """Rate at the highest grid threshold <= threshold (exact on the grid), and its [down, up] error."""
        j = int(np.searchsorted(self.thresholds, threshold, side="right")) - 1
        if j < 0:
            raise ValueError(f"threshold={threshold!r} is below the grid, which starts at {self.thresholds[0]}")
        _, passed, passed_w2, total = self._sums()
        passed_w2 = None if passed_w2 is None else passed_w2[j]
        rate, err = _rates(passed[j], passed_w2, total, self.weighted, self.n_bunches)
        return float(rate), err

    def threshold_for_rate(self, target_khz: float) -> tuple[float, float, np.ndarray]:
        """Lowest grid threshold with rate <= target_khz: (threshold, achieved rate, [down, up] error)."""
        return _lowest_meeting(*self._sums(), self.weighted, self.n_bunches, target_khz)


# ---- summary and plot -----------------------------------------------------------------------------------------------
def zero_bias_mixture(samples: dict, pileup: float = HL_LHC_PILEUP, sigma_inel_mb: float = SIGMA_INEL_MB):
    """Scores and weights of a zero-bias stream made of hard-process samples and the crossings they miss.

    ``samples`` maps a name to (scores, cross section in mb of the events those scores stand for). With ``pileup``
    interactions per crossing, a process of cross section sigma occurs in a fraction pileup * sigma / sigma_inel of
    the crossings; each of its N scores gets weight pileup * sigma / sigma_inel / N. Every other crossing is one
    extra entry of weight 1 - sum(weights) scored below everything, so it never fires: the weighted firing
    fraction is then the fraction of all crossings, as ``rate_khz`` expects. Valid while the processes are rare
    (fractions << 1) and a crossing rarely holds two of them.
    """
    scores, weights = [], []
    for name, (s, sigma_mb) in samples.items():
        s = _scores(s, f"scores of '{name}'")
        scores.append(s)
        weights.append(np.full(len(s), _positive(pileup, "pileup") * _positive(sigma_mb, f"sigma of '{name}'")
                               / _positive(sigma_inel_mb, "sigma_inel_mb") / len(s)))
    scores, weights = np.concatenate(scores), np.concatenate(weights)
    quiet = 1.0 - weights.sum()
    if quiet <= 0:
        raise ValueError("the samples fill more than every crossing: they are not rare processes")
    return np.append(scores, scores.min() - 1.0), np.append(weights, quiet)


def trigger_summary(
    background_scores,
    signal_scores: dict[str, np.ndarray],
    latency_ns: float,
    ii_cycles: int,
    clock_mhz: float = _DEFAULT.clock_mhz,
    budget_ns: float = _DEFAULT.latency_budget_ns,
    target_rate_khz: float = _DEFAULT.rate_budget_khz,
    n_bunches: int = HL_LHC_BUNCHES,
    background_weights=None,
) -> dict:
    """The summary.json trigger block: timing, the threshold for the target rate, and signal efficiencies there.

    Errors are [down, up] lists. rate_reduction is against the 40.079 MHz BX clock, None if no background fires.
    """
    if not isinstance(signal_scores, dict) or not signal_scores:
        raise ValueError("signal_scores must be a non-empty dict {sample: scores}")
    timing = check_timing(latency_ns, ii_cycles, clock_mhz, budget_ns)
    threshold, rate, rate_err = threshold_for_rate(background_scores, target_rate_khz, background_weights, n_bunches)
    efficiencies = {name: signal_efficiency(s, threshold) for name, s in signal_scores.items()}
    return {
        "clock_mhz": timing["clock_mhz"],
        "budget_ns": timing["budget_ns"],
        "latency_ns": timing["latency_ns"],
        "latency_ok": timing["latency_ok"],
        "ii_cycles": timing["ii_cycles"],
        "ii_ok": timing["ii_ok"],
        "n_bunches": int(n_bunches),
        "target_rate_khz": float(target_rate_khz),
        "threshold": threshold,
        "rate_khz": rate,
        "rate_reduction": rate_reduction(rate) if rate > 0 else None,
        "signal_efficiency": {name: eff for name, (eff, _) in efficiencies.items()},
        "signal_efficiency_err": {name: err.tolist() for name, (_, err) in efficiencies.items()},
        "rate_khz_err": rate_err.tolist(),
        "latency_margin_ns": timing["latency_margin_ns"],
        "ii_max": timing["ii_max"],
    }


def plot_rate_curve(ax, thresholds, rate, rate_err, target_khz: float | None = None):
    """Draw rate vs threshold on a matplotlib Axes (log y, 68% band, optional target line); returns ax."""
    thresholds, rate, rate_err = np.asarray(thresholds), np.asarray(rate), np.asarray(rate_err)
    shown = rate > 0  # log scale: zero rates are left out
    x, low, high = thresholds[shown], (rate - rate_err[0])[shown], (rate + rate_err[1])[shown]
    ax.step(x, rate[shown], where="post", label="rate")
    ax.fill_between(x, low, high, step="post", alpha=0.3, label="68% interval")
    if target_khz is not None:
        ax.axhline(target_khz, color="k", linestyle="--", label=f"target {target_khz:g} kHz")
    ax.set_yscale("log")
    ax.set_xlabel("threshold (fires if score > threshold)")
    ax.set_ylabel("rate [kHz]")
    ax.legend()
    return ax
