"""Turning weight deltas into LoRA / diff file tensors that ComfyUI's LoraLoader reads (no comfy imports)."""

from __future__ import annotations

import torch


def low_rank(delta: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(down, up, relative Frobenius error) with up @ down ~= delta, from one SVD.

    The rank is at most `rank` and at most the delta's numerical rank, so a delta that is
    already low-rank (e.g. a rank-4 text-encoder LoRA) is stored exactly and compactly. Conv
    kernels are flattened as in LoRA files (down: r x in x kh x kw, up: out x r x 1 x 1)."""
    d = delta.float()
    mat = d.reshape(d.shape[0], -1)
    u, s, vh = torch.linalg.svd(mat, full_matrices=False)
    tol = (s[0] * max(mat.shape) * torch.finfo(torch.float32).eps) if s.numel() else 0.0
    r = max(1, min(rank, int((s > tol).sum())))
    root = s[:r].sqrt()
    up, down = u[:, :r] * root, root[:, None] * vh[:r]
    norm = mat.norm()
    err = float((mat - up @ down).norm() / norm) if norm > 0 else 0.0
    if d.ndim == 4:
        down = down.reshape(r, *d.shape[1:])
        up = up.reshape(d.shape[0], r, 1, 1)
    return down.contiguous(), up.contiguous(), err


def patch_file_tensors(model_deltas: dict[str, torch.Tensor], clip_deltas: dict[str, torch.Tensor], fmt: str,
                       rank: int) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Tensors of a LoRA/diff file with the key names ComfyUI's LoraLoader reads.

    UNet keys 'diffusion_model.<name>' and CLIP keys 'text_encoders.<clip patcher key>' (the generic
    format of comfy.lora's key maps). LoRA: '<base>.lora_up.weight', '<base>.lora_down.weight' and
    '<base>.alpha' (= rank, so the scale is 1). Diff: '<base>.diff' (exact). 1-D tensors are always
    exact diffs ('.diff', or '.diff_b' for biases)."""
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
        down, up, errors[key] = low_rank(delta, rank)
        tensors[f"{base}.lora_down.weight"] = down
        tensors[f"{base}.lora_up.weight"] = up
        tensors[f"{base}.alpha"] = torch.tensor(float(down.shape[0]))
    return tensors, errors
