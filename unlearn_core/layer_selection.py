"""Which denoiser weights an unlearning run edits.

Names are matched on their suffixes, which diffusers' UNet2DConditionModel and ComfyUI's
openaimodel UNet share (`...attn2.to_k.weight`), so one setting works through both adapters.
Only weight matrices/kernels are selected; biases and norms are never edited.
"""

from __future__ import annotations

import re

TARGETS = ("cross_attention", "attention", "all_linear_conv", "non_cross_attention")

_CROSS_ATTENTION = re.compile(r"attn2\.(to_q|to_k|to_v|to_out\.0)\.weight$")
_ATTENTION = re.compile(r"attn[12]\.(to_q|to_k|to_v|to_out\.0)\.weight$")


def weight_kinds(module: "torch.nn.Module") -> dict[str, str]:
    """'<module name>.weight' -> 'linear' or 'conv' for every Linear and Conv2d in `module` (ComfyUI's
    operations subclass them): what an adapter's `module_types()` returns for its denoiser."""
    import torch

    kinds = {}
    for name, sub in module.named_modules():
        if isinstance(sub, torch.nn.Linear):
            kinds[f"{name}.weight"] = "linear"
        elif isinstance(sub, torch.nn.Conv2d):
            kinds[f"{name}.weight"] = "conv"
    return kinds


def select_weights(module_types: dict[str, str], target: str) -> list[str]:
    """Names of the weights selected by `target`: one of TARGETS, or 'regex:<pattern>'
    (re.search over the weight names of linear and conv layers)."""
    names = sorted(module_types)
    if target == "cross_attention":
        chosen = [n for n in names if _CROSS_ATTENTION.search(n)]
    elif target == "attention":
        chosen = [n for n in names if _ATTENTION.search(n)]
    elif target == "all_linear_conv":
        chosen = [n for n in names if module_types[n] in ("linear", "conv")]
    elif target == "non_cross_attention":
        chosen = [n for n in names if module_types[n] in ("linear", "conv") and "attn2" not in n]
    elif target.startswith("regex:"):
        try:
            pattern = re.compile(target[len("regex:"):])
        except re.error as exc:
            raise ValueError(f"target {target!r}: invalid regular expression ({exc})") from exc
        chosen = [n for n in names if pattern.search(n)]
    else:
        raise ValueError(f"unknown target {target!r}; use one of {', '.join(TARGETS)} or 'regex:<pattern>'")
    if not chosen:
        raise ValueError(f"target {target!r} selects no weight of this model; "
                         f"examples of weight names: {', '.join(names[:3])}")
    return chosen
