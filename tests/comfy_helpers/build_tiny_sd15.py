"""Build a random-weight checkpoint that ComfyUI detects as SD1.5 (DESIGN.md §4).

Tiny UNet (model_channels 320, context_dim 768, one level, one res block), full CLIP-L text
encoder (transformers), full SD VAE (ComfyUI's AutoencoderKL), all seeded. Written as fp16
safetensors with the original-SD key layout (model.diffusion_model.*, cond_stage_model.transformer.*,
first_stage_model.*). Run with ComfyUI's python from ComfyUI's folder:

    python build_tiny_sd15.py OUT.safetensors
"""

import math
import os
import sys

OUT = sys.argv[1]
sys.argv = sys.argv[:1] + ["--cpu"]  # comfy.cli_args parses sys.argv on import (once enabled)
sys.path.insert(0, os.environ.get("COMFYUI_PATH", os.getcwd()))
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()

import torch  # noqa: E402


def seeded_init(module: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            elif name.endswith("weight"):  # norms
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.01)


def main(out_path: str) -> None:
    import comfy.ops
    from comfy.ldm.models.autoencoder import AutoencoderKL
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    unet = UNetModel(image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[1],
                     channel_mult=[1], num_heads=8, use_spatial_transformer=True,
                     transformer_depth=[1], transformer_depth_output=[1, 1], transformer_depth_middle=1,
                     context_dim=768, use_linear_in_transformer=False, legacy=False,
                     operations=comfy.ops.disable_weight_init)
    seeded_init(unet, 1)
    vae = AutoencoderKL(ddconfig={"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3,
                                  "out_ch": 3, "ch": 128, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2,
                                  "attn_resolutions": [], "dropout": 0.0}, embed_dim=4)
    seeded_init(vae, 2)
    torch.manual_seed(3)
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                                        hidden_act="quick_gelu", projection_dim=768))
    sd = {}
    for k, v in unet.state_dict().items():
        sd[f"model.diffusion_model.{k}"] = v
    for k, v in vae.state_dict().items():
        sd[f"first_stage_model.{k}"] = v
    for k, v in clip.state_dict().items():
        if "position_ids" in k:
            continue
        k = k if k.startswith("text_model.") else f"text_model.{k}"
        sd[f"cond_stage_model.transformer.{k}"] = v
    sd = {k: v.detach().to(torch.float16).contiguous() for k, v in sd.items()}
    tmp = out_path + ".partial"
    save_file(sd, tmp)
    os.replace(tmp, out_path)
    n_unet = sum(v.numel() for k, v in sd.items() if k.startswith("model."))
    print(f"wrote {out_path}: {len(sd)} tensors, UNet {n_unet / 1e6:.1f}M params")


if __name__ == "__main__":
    main(OUT)
