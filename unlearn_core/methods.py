"""Named UNet unlearning methods: our Dynamic Mask method and the baselines, as configurations of
the one trainer in `unet_unlearning` (so they are compared on the same machinery)."""

from __future__ import annotations

import copy

from .losses import ConceptAwareLossConfig
from .masks import MaskConfig
from .unet_unlearning import UnetUnlearnConfig

METHODS = {
    "dynamic_mask": "ours: dynamic gradient mask + concept-aware loss + distillation",
    "paper_code": "the released code's behaviour: dynamic mask + concept-aware loss, no distillation",
    "salun": "SalUn-style: one global static saliency mask (top 50%), same loss as ours",
    "finetune": "no mask: the same loss on all entries of the target layers",
    "esd_x": "ESD on cross-attention (negative guidance), dense",
    "esd_u": "ESD on everything but cross-attention (negative guidance), dense",
}


def method_config(method: str, base: UnetUnlearnConfig | None = None) -> UnetUnlearnConfig:
    """`base` with the mask, loss and target that define `method`; other settings are kept."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    cfg = copy.deepcopy(base) if base is not None else UnetUnlearnConfig()
    mask = cfg.mask
    loss = cfg.loss
    if method == "dynamic_mask":
        cfg.mask = MaskConfig(**{**vars(mask), "kind": "dynamic"})
    elif method == "paper_code":
        cfg.mask = MaskConfig(**{**vars(mask), "kind": "dynamic"})
        cfg.loss = ConceptAwareLossConfig(**{**vars(loss), "distillation_weight": 0.0})
    elif method == "salun":
        cfg.mask = MaskConfig(**{**vars(mask), "kind": "static"})
    elif method == "finetune":
        cfg.mask = MaskConfig(**{**vars(mask), "kind": "none"})
    elif method in ("esd_x", "esd_u"):
        cfg.mask = MaskConfig(**{**vars(mask), "kind": "none"})
        cfg.loss = ConceptAwareLossConfig(**{**vars(loss), "kind": "esd"})
        cfg.target = "cross_attention" if method == "esd_x" else "non_cross_attention"
    return cfg
