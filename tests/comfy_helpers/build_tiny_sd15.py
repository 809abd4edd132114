"""Build a random-weight checkpoint that ComfyUI detects as SD1.5 (docs/architecture.md, "ComfyUI facts the
bridge relies on").

Tiny UNet (model_channels 320, context_dim 768, one level, one res block), full CLIP-L text
encoder (transformers), full SD VAE (ComfyUI's AutoencoderKL), all seeded. Written as fp16
safetensors with the original-SD key layout (model.diffusion_model.*, cond_stage_model.transformer.*,
first_stage_model.*). Run with ComfyUI's python from ComfyUI's folder:

    python build_tiny_sd15.py OUT.safetensors
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import comfy_env  # noqa: E402,F401  (sets up ComfyUI's modules)
from tiny_checkpoints import clip_l_state_dict, save_checkpoint, sd_vae_state_dict, unet_state_dict  # noqa: E402


def main(out_path: str) -> None:
    unet = unet_state_dict(1, image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[1],
                           channel_mult=[1], num_heads=8, use_spatial_transformer=True,
                           transformer_depth=[1], transformer_depth_output=[1, 1], transformer_depth_middle=1,
                           context_dim=768, use_linear_in_transformer=False, legacy=False)
    sd = {f"model.diffusion_model.{k}": v for k, v in unet.items()}
    sd.update({f"first_stage_model.{k}": v for k, v in sd_vae_state_dict(2).items()})
    sd.update({f"cond_stage_model.transformer.{k}": v for k, v in clip_l_state_dict(3).items()})
    save_checkpoint(sd, out_path)


if __name__ == "__main__":
    main(sys.argv[1])
