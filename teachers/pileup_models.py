"""Per-particle pileup-mitigation networks: PV logit for every L1 particle-flow candidate of a crossing.

Inputs are raw candidates (B, P, 11) in events.pfcands.FEATURE_NAMES order (pt, eta, phi, dz, charge, has_track,
five one-hot types) and a float mask (B, P), 1 for real candidates; padded slots are zeroed first and never reach a
real candidate: they are never valid k-NN neighbours, batch-norm statistics and pooling skip them, and their logits
are set to -1e9 (weight 0). Neighbourhoods are k-NN in (eta, cos phi, sin phi), whose distance^2 is
deta^2 + 4 sin^2(dphi / 2): periodic in phi, ~ dR^2 when close. Both models end in the same head: each candidate's
features joined by their masked mean over the event (event context, e.g. the pileup density), MLP -> logit.
"""

from __future__ import annotations

import torch
from torch import nn

from .features import Standardize
from .gnn import EdgeConv, gather, knn
from .models import build_sized
from .transformer import NEG, Block

N_INPUTS = 11
HAS_TRACK = 5  # input column
N_FEATURES = 12
DZ_SCALE_CM = 1.0  # tanh(dz / 1 cm): fine steps near the vertex (sigma(dz) ~ 0.1-0.3 cm), saturates for pileup


def candidate_features(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (B, P, 12) = ln pt, eta, cos phi, sin phi, tanh(dz / 1 cm), charge, has_track, one-hot type (5)."""
    x = x * mask.unsqueeze(-1)
    pt, eta, phi, dz = x[..., :4].unbind(-1)
    head = torch.stack([torch.log(pt.clamp(min=1e-3)), eta, torch.cos(phi), torch.sin(phi),
                        torch.tanh(dz / DZ_SCALE_CM)], dim=-1)
    return torch.cat([head, x[..., 4:]], dim=-1) * mask.unsqueeze(-1), mask


def eta_phi_points(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, P, 3) = eta, cos phi, sin phi of real candidates, zero on padded slots."""
    eta, phi = x[..., 1], x[..., 2]
    return torch.stack([eta, torch.cos(phi), torch.sin(phi)], dim=-1) * mask.unsqueeze(-1)


class PileupNet(nn.Module):
    """forward(candidates (B, P, 11), mask (B, P)) -> PV logits (B, P); subclasses define `encode` -> (B, P, C)."""

    def __init__(self, channels: int, head: int, dropout: float):
        super().__init__()
        self.features = Standardize(candidate_features, N_FEATURES)
        self.head = nn.Sequential(nn.Linear(2 * channels, head), nn.ReLU(), nn.Dropout(dropout), nn.Linear(head, 1))

    def forward(self, candidates: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.encode(candidates, mask) * mask.unsqueeze(-1)
        context = x.sum(1, keepdim=True) / mask.sum(1).clamp(min=1.0).view(-1, 1, 1)
        logits = self.head(torch.cat([x, context.expand_as(x)], dim=-1)).squeeze(-1).float()  # -1e9 needs float32
        return torch.where(mask > 0, logits, torch.full_like(logits, NEG))


class PileupGNN(PileupNet):
    """ABCNet/ParticleNet-like: EdgeConv blocks, the first on the eta-phi k-NN graph, later ones in feature space."""

    def __init__(self, k: int = 16, blocks=((32, 32), (32, 32)), head: int = 32, dropout: float = 0.0):
        super().__init__(blocks[-1][-1], head, dropout)
        self.convs = nn.ModuleList()
        c = N_FEATURES
        for channels in blocks:
            self.convs.append(EdgeConv(c, tuple(channels), k, masked_norm=True))
            c = channels[-1]

    def encode(self, candidates, mask):
        x, points = self.features(candidates, mask), eta_phi_points(candidates, mask)
        for conv in self.convs:
            x = conv(points, x, mask)
            points = x
        return x


class PileupTransformer(PileupNet):
    """PUMA-like: pre-LN attention blocks in which each candidate attends to itself and its k nearest neighbours in
    eta-phi only (cost ~ N k, the graph is found once), with a per-head logit bias embedded from the pair geometry
    (deta, sin dphi, 1 - cos dphi)."""

    def __init__(self, k: int = 16, dim: int = 32, heads: int = 4, blocks: int = 2, ffn: int = 64,
                 head: int = 32, dropout: float = 0.0):
        super().__init__(dim, head, dropout)
        self.k, self.heads = k, heads
        self.embed = nn.Sequential(nn.Linear(N_FEATURES, dim), nn.GELU(), nn.Linear(dim, dim))
        self.geometry = nn.Sequential(nn.Linear(3, 16), nn.GELU(), nn.Linear(16, heads))
        self.blocks = nn.ModuleList(Block(dim, heads, ffn, dropout) for _ in range(blocks))
        self.norm = nn.LayerNorm(dim)

    def encode(self, candidates, mask):
        b, p = mask.shape
        points = eta_phi_points(candidates, mask)
        idx, valid = knn(points, mask, self.k)
        idx = torch.cat([torch.arange(p, device=idx.device).view(1, p, 1).expand(b, p, 1), idx], dim=-1)  # self first, always valid
        valid = torch.cat([torch.ones_like(valid[..., :1]), valid], dim=-1)
        i, j = points.unsqueeze(2), gather(points, idx)
        cos_dphi = i[..., 1] * j[..., 1] + i[..., 2] * j[..., 2]
        sin_dphi = j[..., 2] * i[..., 1] - j[..., 1] * i[..., 2]
        pair = torch.stack([j[..., 0] - i[..., 0], sin_dphi, 1.0 - cos_dphi], dim=-1)
        bias = self.geometry(pair) + NEG * (1.0 - valid).unsqueeze(-1)  # (B, P, K, H)
        bias = bias.permute(0, 1, 3, 2).reshape(b * p, self.heads, 1, -1)
        x = self.embed(self.features(candidates, mask)) * mask.unsqueeze(-1)
        for block in self.blocks:  # one query per candidate, its neighbourhood as keys
            x = block(x.reshape(b * p, 1, -1), gather(x, idx).flatten(0, 1), bias).view(b, p, -1)
        return self.norm(x)


SIZES: dict[str, dict[str, dict]] = {
    "gnn": {
        "smoke": dict(k=8, blocks=((16, 16),), head=16),
        "demo": dict(k=12, blocks=((32, 32), (32, 32)), head=32),
        "medium": dict(k=16, blocks=((48, 48), (64, 64)), head=64),
        "full": dict(k=16, blocks=((64, 64, 64), (128, 128, 128), (128, 128, 128)), head=128, dropout=0.1),
    },
    "transformer": {
        "smoke": dict(k=8, dim=16, heads=2, blocks=1, ffn=32, head=16),
        "demo": dict(k=16, dim=32, heads=4, blocks=2, ffn=64, head=32),
        "medium": dict(k=16, dim=48, heads=4, blocks=3, ffn=96, head=48),
        "full": dict(k=32, dim=128, heads=8, blocks=4, ffn=256, head=128, dropout=0.1),
    },
}
_CLASSES = {"gnn": PileupGNN, "transformer": PileupTransformer}


def build_pileup_model(kind: str, size: str = "demo", **hparams) -> PileupNet:
    """Build a pileup teacher from its kind and size name; `hparams` override the size's settings."""
    return build_sized(_CLASSES, SIZES, kind, size, "pileup teacher", hparams)
