"""ParticleNet-style teacher: EdgeConv blocks on a dynamic k-NN graph.

The first block finds neighbours in (deta, dphi), later blocks in their input
feature space. Padded particles are pushed to a huge distance and, if still picked
(jets with <= k real particles), marked invalid; outputs are masked and pooled
over real particles only. Works for any number of slots P, so callers may crop
batches to their longest jet.
"""

from __future__ import annotations

import torch
from torch import nn

from .features import JetFeatures, Standardize, particle_features
from .reflections import ReflectionSymmetric

FAR = 1e9


def gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (B, P, C) gathered at idx (B, P, k) -> (B, P, k, C)."""
    b, p, c = x.shape
    base = torch.arange(b, device=idx.device).view(b, 1, 1) * p
    return x.reshape(b * p, c).index_select(0, (idx + base).flatten()).view(b, p, idx.shape[-1], c)


def knn(points: torch.Tensor, mask: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (B, P, k) of each point's nearest other real points, and their validity (B, P, k)."""
    p = points.shape[1]
    with torch.no_grad(), torch.autocast(points.device.type, enabled=False):
        points, mask = points.float(), mask.float()
        sq = (points**2).sum(-1)
        d = sq.unsqueeze(2) + sq.unsqueeze(1) - 2.0 * points @ points.transpose(1, 2)
        d = d + FAR * (1.0 - mask).unsqueeze(1) + FAR * torch.eye(p, dtype=d.dtype, device=d.device)
        idx = d.topk(min(k, p), dim=-1, largest=False).indices
        not_self = (idx != torch.arange(p, device=idx.device).view(1, p, 1)).to(mask.dtype)
        valid = gather(mask.unsqueeze(-1), idx).squeeze(-1) * not_self
    return idx, valid


def _bn(norm: nn.BatchNorm1d, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """BatchNorm over the last dimension of (..., C); in training, statistics from rows where mask (...) > 0 only."""
    flat = x.reshape(-1, x.shape[-1])
    if mask is None or not norm.training:
        return norm(flat).view(x.shape)
    keep = mask.reshape(-1) > 0
    normed = norm(flat[keep])  # float32 under autocast
    return normed.new_zeros(flat.shape).index_put((keep,), normed).view(x.shape)


class EdgeConv(nn.Module):
    """EdgeConv: ReLU MLP on edges (x_i, x_j - x_i), averaged over valid neighbours, plus a shortcut.

    The first edge layer is linear in (x_i, x_j), so it is applied per point and gathered.
    For CPU speed, batch norm acts per point (after aggregation), not per edge; with `masked_norm` its training
    statistics come from real points only.
    """

    def __init__(self, c_in: int, channels: tuple[int, ...], k: int, masked_norm: bool = False):
        super().__init__()
        self.k, self.masked_norm = k, masked_norm
        self.self_lin = nn.Linear(c_in, channels[0])
        self.nbr_lin = nn.Linear(c_in, channels[0], bias=False)
        self.mlp = nn.ModuleList(nn.Linear(a, b) for a, b in zip(channels[:-1], channels[1:]))
        self.norm = nn.BatchNorm1d(channels[-1])
        self.shortcut = nn.Linear(c_in, channels[-1], bias=False)
        self.shortcut_norm = nn.BatchNorm1d(channels[-1])

    def forward(self, points, x, mask):
        """points (B, P, D), x (B, P, C), mask (B, P) -> (B, P, C_out), zero on padded slots."""
        idx, valid = knn(points, mask, self.k)
        nbr = self.nbr_lin(x)
        h = torch.relu((self.self_lin(x) - nbr).unsqueeze(2) + gather(nbr, idx))
        for layer in self.mlp:
            h = torch.relu(layer(h))
        h = (h * valid.unsqueeze(-1)).sum(2) / valid.sum(-1, keepdim=True).clamp(min=1.0)
        m = mask if self.masked_norm else None
        out = torch.relu(_bn(self.norm, h, m) + _bn(self.shortcut_norm, self.shortcut(x), m))
        return out * mask.unsqueeze(-1)


class ParticleNet(ReflectionSymmetric):
    """forward(particles (B, P, 4), mask (B, P)[, jet_features (B, G)]) -> logits (B, n_classes), reflection-symmetric
    (``ReflectionSymmetric``: random reflections in training, the mean of the four in eval)."""

    def __init__(self, k: int = 16, blocks=((64, 64, 64), (128, 128, 128), (256, 256, 256)), fc: int = 256,
                 dropout: float = 0.1, n_classes: int = 5, n_globals: int = 0):
        super().__init__()
        self.features = Standardize(particle_features, 7)
        self.edge_convs = nn.ModuleList()
        c = 7
        for channels in blocks:
            self.edge_convs.append(EdgeConv(c, tuple(channels), k))
            c = channels[-1]
        self.jet = JetFeatures(n_globals, fc) if n_globals else None
        c += fc if n_globals else 0
        self.head = nn.Sequential(nn.Linear(c, fc), nn.ReLU(), nn.Dropout(dropout), nn.Linear(fc, n_classes))

    def logits(self, particles: torch.Tensor, mask: torch.Tensor, jet_features: torch.Tensor | None = None):
        x = self.features(particles, mask)
        points = particles[..., 1:3] * mask.unsqueeze(-1)
        for conv in self.edge_convs:
            x = conv(points, x, mask)
            points = x
        pooled = x.sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        if self.jet is not None:
            pooled = torch.cat([pooled, self.jet(jet_features)], dim=1)
        return self.head(pooled)
