"""Turning an unlearning result (deltas over base weights) into files and models.

- `merge_unet_deltas`: a copy of a diffusers pipeline whose UNet has base + delta (the input
  pipeline is not modified);
- `save_delta`: the exact deltas as a safetensors "diff" file;
- `low_rank_factors`: the one SVD LoRA extraction of a weight delta (truncated at the delta's
  numerical rank), used here and by the node pack's LoRA files;
- `extract_lora` / `save_lora`: a LoRA of rank at most r from the SVD of each delta, in the
  diffusers/peft key format that `StableDiffusionPipeline.load_lora_weights` loads.

Every file carries metadata (concepts, superclasses, settings, base model hash, library version)
as JSON in the safetensors header, and is written through `atomic.atomic_file` (a temporary name
renamed into place), so an interrupted save never leaves a partial file. Existing files are never overwritten unless
asked.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .atomic import atomic_file, atomic_folder

METADATA_KEY = "unlearn_core"


def atomic_save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict,
                            overwrite: bool = False) -> Path:
    """A safetensors file written through `atomic.atomic_file`; metadata values that are not
    strings are stored as JSON."""
    path = Path(path)
    with atomic_file(path, overwrite=overwrite) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
                  metadata={k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})
    return path


def read_metadata(path: str | Path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return json.loads(meta[METADATA_KEY]) if METADATA_KEY in meta else {}


def merge_unet_deltas(pipe, deltas: dict[str, torch.Tensor], scale: float = 1.0):
    """A shallow copy of `pipe` with a deep-copied UNet carrying base + scale * delta."""
    params = dict(pipe.unet.named_parameters())
    missing = [n for n in deltas if n not in params]
    if missing:
        raise ValueError(f"{len(missing)} delta(s) do not match this UNet, e.g. {missing[0]!r}; "
                         "was the result made for another model?")
    unet = copy.deepcopy(pipe.unet)
    new_params = dict(unet.named_parameters())
    with torch.no_grad():
        for name, delta in deltas.items():
            if new_params[name].shape != delta.shape:
                raise ValueError(f"delta {name!r} has shape {tuple(delta.shape)}, the UNet weight "
                                 f"{tuple(new_params[name].shape)}")
            new_params[name].add_(delta.to(new_params[name].dtype) * scale)
    merged = copy.copy(pipe)
    merged.register_modules(unet=unet)
    return merged


def save_delta(deltas: dict[str, torch.Tensor], path: str | Path, metadata: dict, overwrite: bool = False) -> Path:
    """Keys are 'unet.<parameter name>'; the file adds base + delta exactly."""
    tensors = {f"unet.{n}": d.float() for n, d in deltas.items()}
    return atomic_save_safetensors(tensors, path, {METADATA_KEY: {**metadata, "format": "diff"}}, overwrite)


def load_delta(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k[len("unet."):]: v for k, v in load_file(str(path)).items() if k.startswith("unet.")}


def low_rank_factors(delta: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(down, up, relative Frobenius error) with up @ down ~= delta, from one SVD of the delta.

    The rank is at most `rank` and at most the delta's numerical rank (singular values above
    s_max * max(shape) * float32 eps, as numpy's matrix_rank), so a delta that is already low-rank
    (e.g. a rank-1 edit asked at rank 8, or a rank-4 text-encoder LoRA) gets factors of its own rank,
    stored exactly, never zero-padded ones; an all-zero delta gets rank-1 zero factors. The singular
    values are split evenly (up = U sqrt(S), down = sqrt(S) V^T). Conv kernels are flattened as in
    LoRA files: down r x in x kh x kw, up out x r x 1 x 1. Factors are fp32, contiguous."""
    if rank < 1:
        raise ValueError(f"LoRA rank must be at least 1, got {rank}")
    d = delta.detach().float()
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


def extract_lora(deltas: dict[str, torch.Tensor], rank: int) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """`low_rank_factors` of each '.weight' delta: delta ~= B @ A with A (r x in), B (out x r), r at
    most `rank` and at most the delta's numerical rank (ranks may differ between weights; diffusers
    reads each module's rank from its tensors, with alpha = rank, i.e. scale 1).

    Returns the LoRA tensors (diffusers/peft names) and, per weight, the relative Frobenius
    error of the approximation."""
    if rank < 1:
        raise ValueError(f"LoRA rank must be at least 1, got {rank}")
    out: dict[str, torch.Tensor] = {}
    errors: dict[str, float] = {}
    for name, delta in deltas.items():
        if not name.endswith(".weight"):
            continue
        module = name[: -len(".weight")]
        a, b, errors[name] = low_rank_factors(delta, rank)
        out[f"unet.{module}.lora_A.weight"] = a
        out[f"unet.{module}.lora_B.weight"] = b
    return out, errors


#: safetensors header key from which diffusers (0.35 on) reads a LoRA's peft LoraConfig
DIFFUSERS_LORA_CONFIG_KEY = "lora_adapter_metadata"


def diffusers_lora_config(tensors: dict[str, torch.Tensor], prefix: str = "unet") -> dict:
    """The LoraConfig of `extract_lora`'s tensors as diffusers reads it from a file's header:
    alpha = rank for every module (scale 1), per-module ranks in rank_pattern/alpha_pattern.

    Diffusers before 0.42 infers alpha from the first module's rank when the header has no config,
    which scales modules of another rank wrongly; the truncated ranks make mixed ranks common."""
    suffix = ".lora_A.weight"
    ranks = {k[len(prefix) + 1: -len(suffix)]: int(v.shape[0]) for k, v in tensors.items()
             if k.startswith(f"{prefix}.") and k.endswith(suffix)}
    counts: dict[int, int] = {}
    for r in ranks.values():
        counts[r] = counts.get(r, 0) + 1
    common = max(counts, key=lambda r: (counts[r], r)) if counts else 1
    pattern = {m: r for m, r in ranks.items() if r != common}
    return {f"{prefix}.{k}": v for k, v in {"r": common, "lora_alpha": common, "rank_pattern": pattern,
                                             "alpha_pattern": dict(pattern), "target_modules": sorted(ranks)}.items()}


def save_lora(deltas: dict[str, torch.Tensor], path: str | Path, rank: int, metadata: dict,
              overwrite: bool = False) -> dict[str, float]:
    """`extract_lora` written as a diffusers LoRA file (`pipe.load_lora_weights`); returns the
    relative error per weight. The header also carries the LoraConfig (see `diffusers_lora_config`)."""
    tensors, errors = extract_lora(deltas, rank)
    mean_err = sum(errors.values()) / max(1, len(errors))
    atomic_save_safetensors(tensors, path, {METADATA_KEY: {**metadata, "format": "lora", "rank": rank,
                                                           "mean_relative_error": mean_err},
                                            DIFFUSERS_LORA_CONFIG_KEY: diffusers_lora_config(tensors)}, overwrite)
    return errors


# ---- text-encoder LoRA -------------------------------------------------------------------------
def _standard_te_name(module: str) -> str:
    """transformers 5 names CLIPTextModel modules without the 'text_model.' level that SD files use."""
    return module if module.startswith("text_model.") else f"text_model.{module}"


def save_text_encoder_lora(lora: dict[str, tuple[torch.Tensor, torch.Tensor]], path: str | Path, metadata: dict,
                           fmt: str = "diffusers", overwrite: bool = False) -> Path:
    """One safetensors file with the encoder LoRA (the scale is folded into B, so alpha = rank).

    fmt='diffusers': 'text_encoder.text_model.<module>.lora_A/lora_B.weight' (pipe.load_lora_weights);
    fmt='comfy': kohya names 'lora_te_text_model_<module>.lora_down/lora_up.weight' + '.alpha',
    which ComfyUI's LoraLoader (and most SD tools) read for the SD1.x text encoder."""
    tensors: dict[str, torch.Tensor] = {}
    for module, (a, b) in lora.items():
        std = _standard_te_name(module)
        if fmt == "diffusers":
            tensors[f"text_encoder.{std}.lora_A.weight"] = a
            tensors[f"text_encoder.{std}.lora_B.weight"] = b
        elif fmt == "comfy":
            key = "lora_te_" + std.replace(".", "_")
            tensors[f"{key}.lora_down.weight"] = a
            tensors[f"{key}.lora_up.weight"] = b
            tensors[f"{key}.alpha"] = torch.tensor(float(a.shape[0]))
        else:
            raise ValueError(f"unknown LoRA format {fmt!r}; use 'diffusers' or 'comfy'")
    return atomic_save_safetensors(tensors, path, {METADATA_KEY: {**metadata, "format": f"text_encoder_lora_{fmt}"}},
                                   overwrite)


def save_text_encoder_lora_peft(lora: dict[str, tuple[torch.Tensor, torch.Tensor]], folder: str | Path,
                                metadata: dict, overwrite: bool = False) -> Path:
    """A peft adapter folder (adapter_config.json + adapter_model.safetensors) for the encoder as
    loaded here: `PeftModel.from_pretrained(text_encoder, folder)` applies it."""
    from peft import LoraConfig

    folder = Path(folder)
    rank = next(iter(lora.values()))[0].shape[0]
    with atomic_folder(folder, overwrite=overwrite) as tmp:
        LoraConfig(r=rank, lora_alpha=rank, target_modules=sorted(lora), lora_dropout=0.0).save_pretrained(str(tmp))
        tensors = {}
        for module, (a, b) in lora.items():
            tensors[f"base_model.model.{module}.lora_A.weight"] = a
            tensors[f"base_model.model.{module}.lora_B.weight"] = b
        atomic_save_safetensors(tensors, tmp / "adapter_model.safetensors", {METADATA_KEY: {**metadata, "format": "peft"}})
    return folder
