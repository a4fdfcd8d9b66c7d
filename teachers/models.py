"""Named model sizes and the model factory."""

from __future__ import annotations

from torch import nn

from .gnn import ParticleNet
from .transformer import ParticleTransformer

SIZES: dict[str, dict[str, dict]] = {
    "gnn": {
        "smoke": dict(k=8, blocks=((16, 16),), fc=16, dropout=0.0),
        "demo": dict(k=8, blocks=((32, 32, 32), (64, 64, 64)), fc=64, dropout=0.1),
        "medium": dict(k=16, blocks=((48, 48, 48), (96, 96, 96)), fc=128, dropout=0.1),
        "full": dict(k=16, blocks=((64, 64, 64), (128, 128, 128), (256, 256, 256)), fc=256, dropout=0.1),
    },
    "transformer": {
        "smoke": dict(dim=16, heads=2, blocks=1, cls_blocks=1, ffn=32, embed=(16,), pair_embed=(8,), dropout=0.0),
        "demo": dict(dim=48, heads=4, blocks=2, cls_blocks=1, ffn=96, embed=(48,), pair_embed=(16, 16), dropout=0.1),
        "medium": dict(dim=64, heads=8, blocks=3, cls_blocks=1, ffn=192, embed=(64,), pair_embed=(32, 32),
                       dropout=0.1),
        "full": dict(dim=128, heads=8, blocks=6, cls_blocks=2, ffn=512, embed=(128, 128), pair_embed=(64, 64, 64),
                     dropout=0.1),
    },
}
_CLASSES = {"gnn": ParticleNet, "transformer": ParticleTransformer}


def build_sized(classes: dict, sizes: dict, kind: str, size: str, what: str, hparams: dict) -> nn.Module:
    """classes[kind] built with the settings of sizes[kind][size], overridden by hparams; ValueError naming `what`."""
    if kind not in sizes:
        raise ValueError(f"unknown {what} kind {kind!r}; expected one of {tuple(sizes)}")
    if size not in sizes[kind]:
        raise ValueError(f"unknown size {size!r}; expected one of {tuple(sizes[kind])}")
    return classes[kind](**{**sizes[kind][size], **hparams})


def build_model(kind: str, size: str = "demo", **hparams) -> nn.Module:
    """Build a teacher from its kind and size name; `hparams` override the size's settings."""
    return build_sized(_CLASSES, SIZES, kind, size, "teacher", hparams)


def fit_normalization(model: nn.Module, constituents, mask, jet_features=None) -> None:
    """Set the model's input standardisation (particle, pair and jet features, where present) from these jets."""
    for norm in (model.features, getattr(model, "pair_features", None)):
        if norm is not None:
            norm.fit(constituents, mask)
    if model.jet is not None:
        model.jet.fit(jet_features)


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
