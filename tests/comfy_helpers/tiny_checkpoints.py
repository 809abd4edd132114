"""Random-weight parts of checkpoints that ComfyUI detects as real model families (docs/architecture.md,
"ComfyUI facts the bridge relies on").

Shared by build_tiny_sd15.py and build_tiny_sdxl.py. Every part is seeded. The UNets are small
(ComfyUI's detection keys on a few config values, not on the depth), while the text encoders and
the VAE have their fixed real sizes, because ComfyUI builds those from fixed configs. Import
after comfy_env (ComfyUI's modules must be importable).
"""

from __future__ import annotations

import math
import os

import torch


def init_value(name: str, shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
    """The seeded value of one parameter: randn/sqrt(fan_in) for matrices and kernels, 1 for norm
    weights, small noise for biases and other vectors."""
    if len(shape) >= 2:
        return torch.randn(shape, generator=gen) / math.sqrt(math.prod(shape[1:]))
    if name.endswith("weight"):
        return torch.ones(shape)
    return torch.randn(shape, generator=gen) * 0.01


def seeded_init(module: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(init_value(name, p.shape, gen))


def unet_state_dict(seed: int, **config) -> dict[str, torch.Tensor]:
    """ComfyUI's own UNetModel with `config`, seeded."""
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    unet = UNetModel(operations=comfy.ops.disable_weight_init, **config)
    seeded_init(unet, seed)
    return unet.state_dict()


def sd_vae_state_dict(seed: int) -> dict[str, torch.Tensor]:
    """The full SD VAE (ComfyUI's AutoencoderKL; SD1.x, SD2.x and SDXL share its shape)."""
    from comfy.ldm.models.autoencoder import AutoencoderKL

    vae = AutoencoderKL(ddconfig={"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3,
                                  "out_ch": 3, "ch": 128, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2,
                                  "attn_resolutions": [], "dropout": 0.0}, embed_dim=4)
    seeded_init(vae, seed)
    return vae.state_dict()


def clip_l_state_dict(seed: int) -> dict[str, torch.Tensor]:
    """Full CLIP-L text model (transformers' layout, 'text_model.*'), transformers' own init."""
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                                        hidden_act="quick_gelu", projection_dim=768))
    out = {}
    for k, v in clip.state_dict().items():
        if "position_ids" not in k:
            out[k if k.startswith("text_model.") else f"text_model.{k}"] = v
    return out


def clip_g_state_dict(seed: int, dtype=torch.float16) -> dict[str, torch.Tensor]:
    """Full OpenCLIP bigG text model with projection (SDXL's second encoder, 694M parameters) in
    transformers' layout ('text_model.*', 'text_projection.weight'), seeded. The shapes come from
    a model on the meta device, so the fp32 model is never materialised."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                            num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu",
                            projection_dim=1280)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in CLIPTextModelWithProjection(config).state_dict().items()
                  if "position_ids" not in k}
    gen = torch.Generator().manual_seed(seed)
    return {k: init_value(k, s, gen).to(dtype) for k, s in shapes.items()}


def save_checkpoint(sd: dict[str, torch.Tensor], out_path: str) -> None:
    """fp16 safetensors, written to a temporary name and renamed (never a partial file)."""
    from safetensors.torch import save_file

    sd = {k: v.detach().to(torch.float16).contiguous() for k, v in sd.items()}
    tmp = out_path + ".partial"
    save_file(sd, tmp)
    os.replace(tmp, out_path)
    n_unet = sum(v.numel() for k, v in sd.items() if k.startswith("model."))
    print(f"wrote {out_path}: {len(sd)} tensors, UNet {n_unet / 1e6:.1f}M params")
