"""Anomaly-detection autoencoders on L1 objects (ADC2021 layout) and their physics-aware reconstruction loss.

Events are `objects` (B, 19, 4) = [pT, eta, phi, type] with fixed slots: 0 MET, 1-4 e/gamma, 5-8 muons, 9-18 jets.
A slot is real iff pT > 0; padded slots are zeroed before anything else, so their content never matters. The type
column is not read (the slot fixes the type).

Both models are VAEs: encoder -> (mu, logvar) -> z -> decoder -> reconstruction (B, 19, 4) in target space
[t(pT), eta, cos phi, sin phi]. Training samples z; in eval mode z = mu, so scores are deterministic. The pT target
t(pT) is `pt_target`: "log" = log1p(pT / GeV) (default) or "linear" = pT / 16 GeV (the student's input unit: a hard
object's error then grows with its pT, as in the QKeras AE baseline, so the score follows the hard tail that sets
1-10 kHz thresholds instead of the soft pileup objects). The encoder always sees log1p pT.

Reconstruction loss of one event (`reconstruction_loss`), summed over real slots i only:

    L = sum_i [ (r_pt,i - t(pT_i))^2 + e_i (r_eta,i - eta_i)^2 + (r_c,i - cos phi_i)^2 + (r_s,i - sin phi_i)^2 ]

with e_i = 0 for MET (its eta is not measured), else 1. For a unit-length (r_c, r_s) the phi terms equal
4 sin^2(dphi / 2) ~ dphi^2: periodic in phi and on the scale of the eta term. Padded slots add nothing, so more
objects can only add loss. L is the default anomaly score ("reco"); sum(mu^2) ("latent", as CMS AXOL1TL uses) and
the KL term ("kl") are the alternatives. Training minimises the mean of L + beta KL(q(z|x) || N(0, 1)) (beta = 0.01).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .features import Standardize
from .gnn import EdgeConv
from .models import build_sized
from .transformer import NEG, Block

N_SLOTS = 19
SLOT_TYPES = torch.repeat_interleave(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 4, 4, 10]))  # MET, e/gamma, mu, jet
N_FEATURES = 8  # log1p pT, eta, cos phi, sin phi, one-hot type (4)
_TYPE_ONEHOT = F.one_hot(SLOT_TYPES - 1, 4).float()  # (19, 4)
_TARGET_WEIGHT = torch.ones(N_SLOTS, 4)
_TARGET_WEIGHT[0, 1] = 0.0  # MET eta is not measured
PT_TARGETS = ("log", "linear")
LINEAR_PT_SCALE = 2.0**-4  # "linear" pT target unit: 16 GeV (students/anomaly.py PT_SCALE)


def object_mask(objects: torch.Tensor) -> torch.Tensor:
    """Float mask (B, 19): 1 where pT > 0."""
    return (objects[..., 0] > 0).to(objects.dtype)


def targets(objects: torch.Tensor, pt_target: str = "log") -> torch.Tensor:
    """Reconstruction targets (B, 19, 4) = [t(pT), eta, cos phi, sin phi], zero on padded slots (t: `pt_target`)."""
    mask = object_mask(objects).unsqueeze(-1)
    x = objects * mask
    pt = torch.log1p(x[..., 0]) if pt_target == "log" else x[..., 0] * LINEAR_PT_SCALE
    t = torch.stack([pt, x[..., 1], torch.cos(x[..., 2]), torch.sin(x[..., 2])], dim=-1)
    return t * mask


def input_features(objects: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder features (B, 19, 8) = targets and the slot's one-hot type, and their validity (B, 19)."""
    onehot = _TYPE_ONEHOT.to(objects.device).expand(objects.shape[0], -1, -1) * mask.unsqueeze(-1)
    return torch.cat([targets(objects), onehot], dim=-1), mask


def reconstruction_loss(recon: torch.Tensor, objects: torch.Tensor, pt_target: str = "log") -> torch.Tensor:
    """Per-event loss L (B,) of recon (B, 19, 4) in target space against objects (see the module docstring)."""
    err = ((recon.float() - targets(objects, pt_target)) ** 2 * _TARGET_WEIGHT.to(objects.device)).sum(-1)
    return (err * object_mask(objects)).sum(-1)


class AnomalyVAE(nn.Module):
    """Shared VAE logic; subclasses define `embed(objects, mask) -> (B, C)`, `to_latent` and `decode(z)`.

    forward(objects (B, 19, 4)) -> reconstruction-loss score (B,), z = mu in eval mode.
    """

    def __init__(self, beta: float, pt_target: str = "log"):
        super().__init__()
        if pt_target not in PT_TARGETS:
            raise ValueError(f"pt_target must be one of {PT_TARGETS}, not {pt_target!r}")
        self.beta, self.pt_target = beta, pt_target
        self.features = Standardize(input_features, N_FEATURES)

    def encode(self, objects: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mu, logvar (B, latent)."""
        mu, logvar = self.to_latent(self.embed(objects, object_mask(objects))).chunk(2, dim=-1)
        return mu, logvar

    def losses(self, objects: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-event reconstruction loss and KL divergence (B,); z is sampled in training mode."""
        mu, logvar = self.encode(objects)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        kl = 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar).sum(-1)
        return reconstruction_loss(self.decode(z), objects, self.pt_target), kl

    def latent_score(self, objects: torch.Tensor) -> torch.Tensor:
        """sum(mu^2) (B,)."""
        return (self.encode(objects)[0] ** 2).sum(-1)

    def kl_score(self, objects: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x) || N(0, 1)) (B,)."""
        mu, logvar = self.encode(objects)
        return 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar).sum(-1)

    def forward(self, objects: torch.Tensor) -> torch.Tensor:
        return reconstruction_loss(self.decode(self.encode(objects)[0]), objects, self.pt_target)


class TransformerVAE(AnomalyVAE):
    """Objects embedded (features + learned slot embedding), masked self-attention blocks, sum-pooled and normalised,
    joined by the object counts per type -> latent; the decoder adds the projected z to learned per-slot queries and
    runs self-attention blocks over the 19 slots."""

    def __init__(self, dim: int = 32, heads: int = 4, blocks: int = 2, decoder_blocks: int = 1, ffn: int = 64,
                 latent: int = 8, beta: float = 0.01, pt_target: str = "log"):
        super().__init__(beta, pt_target)
        self.embed_in = nn.Linear(N_FEATURES, dim)
        self.slot = nn.Parameter(torch.zeros(N_SLOTS, dim))
        self.query = nn.Parameter(torch.zeros(N_SLOTS, dim))
        nn.init.trunc_normal_(self.slot, std=0.02)
        nn.init.trunc_normal_(self.query, std=0.02)
        self.encoder = nn.ModuleList(Block(dim, heads, ffn, 0.0) for _ in range(blocks))
        self.norm = nn.LayerNorm(dim)
        self.to_latent = nn.Linear(dim + 4, 2 * latent)
        self.from_latent = nn.Linear(latent, dim)
        self.decoder = nn.ModuleList(Block(dim, heads, ffn, 0.0) for _ in range(decoder_blocks))
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 4))

    def embed(self, objects, mask):
        m = mask.unsqueeze(-1)
        x = (self.embed_in(self.features(objects, mask)) + self.slot) * m
        bias = (NEG * (1.0 - mask)).view(mask.shape[0], 1, 1, -1)
        for block in self.encoder:
            x = block(x, x, bias)
        return torch.cat([self.norm((x * m).sum(1)), mask @ _TYPE_ONEHOT.to(mask.device)], dim=-1)

    def decode(self, z):
        x = self.query + self.from_latent(z).unsqueeze(1)
        for block in self.decoder:
            x = block(x, x, 0.0)
        return self.head(x)


class GNNVAE(AnomalyVAE):
    """EdgeConv encoder (k-NN in (eta, cos phi, sin phi) first, then in feature space), sum-pooled latent, MLP decoder.

    The first graph's distance^2 is deta^2 + 4 sin^2(dphi / 2): periodic in phi, ~ deta^2 + dphi^2 when close.
    Objects carry their type, not their slot, so the latent (and `latent_score`) is invariant under permutations
    of objects of the same type.
    """

    def __init__(self, k: int = 8, blocks=((32, 32), (64, 64)), decoder=(64, 64), latent: int = 8, beta: float = 0.01,
                 pt_target: str = "log"):
        super().__init__(beta, pt_target)
        self.convs = nn.ModuleList()
        c = N_FEATURES
        for channels in blocks:
            self.convs.append(EdgeConv(c, tuple(channels), k))
            c = channels[-1]
        self.to_latent = nn.Linear(c, 2 * latent)
        dims = (latent, *decoder)
        layers = [m for a, b in zip(dims[:-1], dims[1:]) for m in (nn.Linear(a, b), nn.ReLU())]
        self.decoder = nn.Sequential(*layers, nn.Linear(dims[-1], N_SLOTS * 4))

    def embed(self, objects, mask):
        x = self.features(objects, mask)
        points = targets(objects)[..., 1:]
        for conv in self.convs:
            x = conv(points, x, mask)
            points = x
        return x.sum(1) / N_SLOTS

    def decode(self, z):
        return self.decoder(z).view(-1, N_SLOTS, 4)


SIZES: dict[str, dict[str, dict]] = {
    "transformer": {
        "smoke": dict(dim=16, heads=2, blocks=1, decoder_blocks=1, ffn=32, latent=4),
        "demo": dict(dim=32, heads=4, blocks=2, decoder_blocks=1, ffn=64, latent=8),
        "medium": dict(dim=64, heads=4, blocks=2, decoder_blocks=1, ffn=128, latent=8),
        "full": dict(dim=128, heads=8, blocks=3, decoder_blocks=2, ffn=256, latent=16),
    },
    "gnn": {
        "smoke": dict(k=4, blocks=((16, 16),), decoder=(32,), latent=4),
        "demo": dict(k=8, blocks=((32, 32), (64, 64)), decoder=(64, 64), latent=8),
        "medium": dict(k=8, blocks=((48, 48), (96, 96)), decoder=(128, 128), latent=8),
        "full": dict(k=8, blocks=((64, 64, 64), (128, 128, 128)), decoder=(256, 256), latent=16),
    },
}
_CLASSES = {"transformer": TransformerVAE, "gnn": GNNVAE}


def build_autoencoder(kind: str, size: str = "demo", **hparams) -> AnomalyVAE:
    """Build an anomaly autoencoder from its kind and size name; `hparams` override the size's settings."""
    return build_sized(_CLASSES, SIZES, kind, size, "anomaly teacher", hparams)
