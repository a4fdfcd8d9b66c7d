"""Rotations of a jet about its axis: training augmentation of the constituent students.

A boosted jet's class does not depend on the orientation of its constituents in the (deta, dphi) plane about the
jet axis: the teachers use the four reflections of that plane (teachers/reflections.py); the constituent students,
which see far fewer jets' worth of structure than the HLF MLP's engineered features give, use the whole group of
rotations and reflections. Each training epoch sees every training jet turned by its own uniform random angle and
mirrored (dphi -> -dphi) with probability 1/2, before the L1 words are formed, so the network sees real words; the
teacher's logits and the label stay those of the jet. Validation and test jets are never transformed. (The
(eta, phi) plane is Euclidean only approximately; for R = 0.8 jets of 800-1200 GeV the difference is far below the
word's pi/720 LSB for the hard core.)
"""

from __future__ import annotations

import numpy as np


def rotate_about_axis(constituents: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(jets, M, F) constituents [pt, deta, dphi, ...] -> a copy with each jet's (deta, dphi) rotated by a uniform
    random angle and, for half the jets, dphi negated; pT and any further features unchanged, zero padding stays
    zero."""
    constituents = np.asarray(constituents)
    angle = rng.uniform(0.0, 2 * np.pi, (len(constituents), 1))
    mirror = rng.choice(np.array([-1.0, 1.0]), (len(constituents), 1))
    cos, sin = np.cos(angle), np.sin(angle)
    deta, dphi = constituents[..., 1], constituents[..., 2]
    out = constituents.copy()
    out[..., 1] = cos * deta - sin * dphi
    out[..., 2] = mirror * (sin * deta + cos * dphi)
    return out
