"""Per-particle and pairwise input features, computed inside the models.

Constituents arrive as (B, P, 4) = [pt, deta, dphi, energy] relative to the jet
axis, zero-padded, with a float mask (B, P) that is 1 for real particles. Every
function zeroes padded slots first, so their content never matters.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

N_PARTICLES = 64
EPS = 1e-8


def make_mask(n_constituents: np.ndarray, n_particles: int = N_PARTICLES) -> np.ndarray:
    """Float32 mask (N, P): 1 for the first n_constituents slots, else 0."""
    n = np.asarray(n_constituents).astype(np.int64)
    return (np.arange(n_particles)[None, :] < n[:, None]).astype(np.float32)


def _log(x: torch.Tensor) -> torch.Tensor:
    return torch.log(x.clamp(min=EPS))


def particle_features(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw features (B, P, 7) = ln pt, ln E, ln pt/pt_jet, ln E/E_jet, deta, dphi, dR, and their validity (B, P).

    pt_jet is the magnitude of the vector pt sum of the real constituents, E_jet their energy sum.
    """
    x = x * mask.unsqueeze(-1)
    pt, deta, dphi, e = x.unbind(-1)
    jet_pt = torch.sqrt((pt * torch.cos(dphi)).sum(1) ** 2 + (pt * torch.sin(dphi)).sum(1) ** 2)
    jet_e = e.sum(1)
    feats = [
        _log(pt),
        _log(e),
        _log(pt / jet_pt.clamp(min=EPS).unsqueeze(1)),
        _log(e / jet_e.clamp(min=EPS).unsqueeze(1)),
        deta,
        dphi,
        torch.sqrt(deta**2 + dphi**2),
    ]
    return torch.stack(feats, dim=-1), mask


def pair_features(x: torch.Tensor, mask: torch.Tensor,
                  pairs: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw ParT pair features (B, P, P, 4) = ln dR, ln kT, ln z, ln m^2, and their validity (B, P, P).

    The pair mass treats constituents as massless; it is invariant under the boost and
    rotation to the jet frame. Valid pairs are two distinct real particles. With `pairs` = (i, j), index
    tensors (n,), only those pairs: features (B, n, 4) and validity (B, n). All four features are symmetric
    in i and j, so the pairs i < j (`upper_pairs`) determine every pair.
    """
    x = x * mask.unsqueeze(-1)
    pt, eta, phi = x[..., 0], x[..., 1], x[..., 2]
    if pairs is None:
        pick_i, pick_j = (lambda t: t.unsqueeze(2)), (lambda t: t.unsqueeze(1))
    else:
        pick_i, pick_j = (lambda t: t.index_select(1, pairs[0])), (lambda t: t.index_select(1, pairs[1]))
    deta = pick_i(eta) - pick_j(eta)
    dphi = pick_i(phi) - pick_j(phi)
    pti, ptj = pick_i(pt), pick_j(pt)
    dr = torch.sqrt(deta**2 + dphi**2)
    ptmin = torch.minimum(pti, ptj)
    # massless pair mass, cancellation-free: 2 pti ptj (cosh deta - cos dphi)
    m2 = 4.0 * pti * ptj * ((0.5 * (torch.exp(deta / 2) - torch.exp(-deta / 2))) ** 2 + torch.sin(dphi / 2) ** 2)
    feats = torch.stack([_log(dr), _log(ptmin * dr), _log(ptmin / (pti + ptj).clamp(min=EPS)), _log(m2)], dim=-1)
    if pairs is None:
        eye = torch.eye(x.shape[1], dtype=mask.dtype, device=mask.device)
        valid = mask.unsqueeze(2) * mask.unsqueeze(1) * (1.0 - eye)
    else:
        valid = mask.index_select(1, pairs[0]) * mask.index_select(1, pairs[1]) * (pairs[0] != pairs[1]).to(mask.dtype)
    return feats, valid


def upper_pairs(p: int, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Index tensors (i, j) (n,) of the n = p (p - 1) / 2 pairs i < j, and `position` (p * p,): for the pair
    (a, b) in row-major order, the index of (min, max) in that list, n on the diagonal."""
    i, j, position = _upper_pairs(int(p))
    return tuple(torch.from_numpy(a).to(device) for a in (i, j, position))  # constants in an ONNX export


@functools.lru_cache(maxsize=None)
def _upper_pairs(p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    i, j = np.triu_indices(p, 1)
    position = np.full((p, p), len(i), np.int64)
    position[i, j] = position[j, i] = np.arange(len(i))
    return i.astype(np.int64), j.astype(np.int64), position.ravel()


class Standardize(nn.Module):
    """Wraps a raw feature function; standardises with mean/std buffers and zeroes invalid entries.

    `fit` sets mean/std over the valid entries of training jets; until then it is the identity.
    """

    def __init__(self, fn, n_features: int):
        super().__init__()
        self.fn = fn
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    @torch.no_grad()
    def fit(self, constituents: np.ndarray, mask: np.ndarray, chunk: int = 512) -> None:
        s = torch.zeros_like(self.mean, dtype=torch.float64)
        s2 = torch.zeros_like(s)
        n = 0.0
        for i in range(0, len(constituents), chunk):
            f, v = self.fn(torch.from_numpy(constituents[i : i + chunk]), torch.from_numpy(mask[i : i + chunk]))
            f = f.double() * v.unsqueeze(-1)
            s += f.flatten(0, -2).sum(0)
            s2 += (f**2).flatten(0, -2).sum(0)
            n += float(v.sum())
        mean = s / max(n, 1.0)
        std = torch.sqrt((s2 / max(n, 1.0) - mean**2).clamp(min=0.0))
        self.mean.copy_(mean)
        self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, **kwargs) -> torch.Tensor:
        f, v = self.fn(x, mask, **kwargs)
        return (f - self.mean) / self.std * v.unsqueeze(-1)


class JetFeatures(nn.Module):
    """Jet-level (high-level) features: standardised with train-set buffers, then embedded by a small MLP.

    Teachers see them beside the constituents, so a teacher is never blind to what the student is given.
    """

    def __init__(self, n_features: int, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.embed = nn.Sequential(nn.Linear(n_features, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU())

    @torch.no_grad()
    def fit(self, features: np.ndarray) -> None:
        f = torch.from_numpy(np.asarray(features, np.float64))
        std = f.std(0)
        self.mean.copy_(f.mean(0))
        self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.embed((features - self.mean) / self.std)
