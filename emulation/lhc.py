"""LHC and Level-1 trigger constants, in one place.

Sources:
- LHC Design Report vol. 1, CERN-2004-003: 400.79 MHz RF, bunch spacing 25 ns, so a bunch-crossing (BX) clock of
  40.079 MHz; 3564 bunch slots per turn, so a revolution frequency of 40.079 MHz / 3564 = 11.2455 kHz. The project
  convention (shared/README.md) is 11.2456 kHz, which changes rates by 1e-5 relative.
- HL-LHC Technical Design Report, CERN-2020-010, table 1-1: 2760 bunches per beam in the 25 ns baseline
  (2748 of them collide at IP1/IP5). The project convention counts 2760 colliding bunches.
- Run 2/3: 2556 bunches per beam with 2544 colliding at IP1/IP5 in the 2018 filling schemes, the usual reference for
  converting L1 rates; Run-3 fills varied around it (roughly 2400-2500). Pass the number of the fill you model.
- CMS Phase-2 L1 trigger TDR, CERN-LHCC-2020-004: 750 kHz accept rate within 12.5 us latency.
  Run 3 (CMS Phase-1 L1 upgrade TDR, CERN-LHCC-2013-011): about 100 kHz within about 4 us.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

BX_CLOCK_MHZ = 40.079  # bunch-crossing clock: 25 ns spacing (LHC Design Report)
NOMINAL_BX_MHZ = 40.0  # the "40 MHz" that trigger-board clocks are quoted as multiples of
BUNCH_SLOTS = 3564  # 25 ns slots per turn
REVOLUTION_KHZ = 11.2456  # project convention; 40.079 MHz / 3564 = 11.2455 kHz
HL_LHC_BUNCHES = 2760  # HL-LHC TDR, CERN-2020-010 (project default)
RUN3_BUNCHES = 2544  # 2018 filling schemes, colliding at IP1/IP5
HL_LHC_PILEUP = 200  # HL-LHC ultimate: about 200 pp interactions per crossing (HL-LHC TDR, CERN-2020-010)
SIGMA_INEL_MB = 78.93  # pp inelastic cross section at 14 TeV, Pythia8 SoftQCD:inelastic (shared/pythia_cards.md)


@dataclasses.dataclass(frozen=True)
class L1System:
    """A Level-1 trigger system: colliding bunches, total accept rate and total latency."""

    name: str
    n_bunches: int
    accept_rate_khz: float
    latency_ns: float


PHASE2 = L1System("Phase-2 (HL-LHC)", HL_LHC_BUNCHES, 750.0, 12_500.0)  # CERN-LHCC-2020-004
RUN3 = L1System("Run 3", RUN3_BUNCHES, 100.0, 4_000.0)  # CERN-LHCC-2013-011


def zero_bias_rate_khz(n_bunches: int = HL_LHC_BUNCHES) -> float:
    """Rate of colliding crossings: n_bunches x 11.2456 kHz (31 038 kHz for 2760 bunches)."""
    if isinstance(n_bunches, bool) or not isinstance(n_bunches, numbers.Integral) or not 1 <= n_bunches <= BUNCH_SLOTS:
        raise ValueError(f"n_bunches={n_bunches!r} must be an integer between 1 and {BUNCH_SLOTS}")
    return int(n_bunches) * REVOLUTION_KHZ


def clocks_per_crossing(clock_mhz: float) -> int:
    """Clock cycles between two bunch crossings: floor(clock_mhz / 40 MHz), the largest II that serves every BX.

    Board clocks are quoted as multiples of the nominal 40 MHz (240 MHz -> 6, 360 MHz -> 9); their true values are
    the same multiples of 40.079 MHz, and floor(clock / 40) gives the same integer for either (6 x 40.079 / 40 = 6.01).
    """
    if not (math.isfinite(clock_mhz) and clock_mhz >= NOMINAL_BX_MHZ):
        raise ValueError(f"clock_mhz={clock_mhz!r} must be a finite clock of at least {NOMINAL_BX_MHZ} MHz")
    return math.floor(clock_mhz / NOMINAL_BX_MHZ + 1e-9)


@dataclasses.dataclass(frozen=True)
class AlgorithmBudget:
    """What one trigger algorithm may spend; every default is a configurable project choice.

    - clock_mhz = 240: the Phase-2 trigger boards' 240 MHz (or 360 MHz) processing clock (shared/README.md).
    - latency_budget_ns = 1000: the Phase-2 L1 TDR (CERN-LHCC-2020-004) shares 12.5 us among the trigger layers,
      O(1 us) per processing stage such as the correlator or the Global Trigger; 1 us is this project's default
      for one correlator/GT-level algorithm, not a figure read from a TDR table. Set the budget of your slot.
    - rate_budget_khz = 10: an illustrative allocation for one trigger seed, 1.3% of the 750 kHz Phase-2 accept rate.
    """

    name: str
    clock_mhz: float = 240.0
    latency_budget_ns: float = 1000.0
    rate_budget_khz: float = 10.0
    system: L1System = PHASE2

    def __post_init__(self):
        clocks_per_crossing(self.clock_mhz)
        for field in ("latency_budget_ns", "rate_budget_khz"):
            value = getattr(self, field)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{field}={value!r} must be positive and finite")

    @property
    def ii_max(self) -> int:
        """Largest initiation interval (clock cycles) that accepts a new crossing every 25 ns."""
        return clocks_per_crossing(self.clock_mhz)
