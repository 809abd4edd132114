"""Turning weight deltas into LoRA / diff file tensors that ComfyUI's LoraLoader reads (no comfy imports).

The SVD extraction is the library's (`unlearn_core.weights_io.low_rank_factors`); this module only
names the tensors the way ComfyUI reads them."""

from __future__ import annotations

import torch

from ..unlearn_core.weights_io import low_rank_factors


def patch_file_tensors(model_deltas: dict[str, torch.Tensor], clip_deltas: dict[str, torch.Tensor], fmt: str,
                       rank: int) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Tensors of a LoRA/diff file with the key names ComfyUI's LoraLoader reads.

    UNet keys 'diffusion_model.<name>' and CLIP keys 'text_encoders.<clip patcher key>' (the generic
    format of comfy.lora's key maps). LoRA: '<base>.lora_up.weight', '<base>.lora_down.weight' and
    '<base>.alpha' (= the factors' rank, so the scale is 1; the rank is at most `rank` and at most
    the delta's numerical rank, see `low_rank_factors`). Diff: '<base>.diff' (exact). 1-D tensors
    are always exact diffs ('.diff', or '.diff_b' for biases)."""
    named = {k: v for k, v in model_deltas.items()}
    named.update({f"text_encoders.{k}": v for k, v in clip_deltas.items()})
    tensors: dict[str, torch.Tensor] = {}
    errors: dict[str, float] = {}
    for key, delta in named.items():
        if key.endswith(".bias"):
            tensors[key[: -len(".bias")] + ".diff_b"] = delta.float().contiguous()
            continue
        if not key.endswith(".weight"):
            continue
        base = key[: -len(".weight")]
        if fmt == "diff" or delta.ndim < 2:
            tensors[f"{base}.diff"] = delta.float().contiguous()
            continue
        down, up, errors[key] = low_rank_factors(delta, rank)
        tensors[f"{base}.lora_down.weight"] = down
        tensors[f"{base}.lora_up.weight"] = up
        tensors[f"{base}.alpha"] = torch.tensor(float(down.shape[0]))
    return tensors, errors
