"""Build a random-weight checkpoint that ComfyUI detects as SDXL (model_base.SDXL).

ComfyUI recognises SDXL by the UNet's model_channels 320, context_dim 2048, adm_in_channels 2816,
linear transformer projections and the per-input-block transformer depths [0, 0, 2, 2, 10, 10].
It does not look at the number of levels or the channel multipliers, so this UNet keeps those
six input blocks in ONE level at 320 channels (no 640/1280-channel levels), a middle block with
no transformer and one transformer on the last output block: ~110M parameters instead of 2.6B.
The text encoders are the real sizes (ComfyUI builds CLIP-L and OpenCLIP bigG from fixed configs:
123M + 694M parameters, random), and so is the SD VAE. Keys use the SDXL layout
(model.diffusion_model.*, conditioner.embedders.0.transformer.*, conditioner.embedders.1.model.*,
first_stage_model.*); fp16, about 2 GB. Run with ComfyUI's python from ComfyUI's folder:

    python build_tiny_sdxl.py OUT.safetensors
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import comfy_env  # noqa: E402  (sets up ComfyUI's modules)
from tiny_checkpoints import (clip_g_state_dict, clip_l_state_dict, save_checkpoint, sd_vae_state_dict,  # noqa: E402
                              unet_state_dict)

#: The reduced SDXL UNet (see the module docstring); 24 + 1 transformer blocks, each with one
#: cross-attention (attn2) whose to_q/to_k/to_v/to_out.0 the unlearning edits.
TINY_SDXL_UNET = dict(image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[6],
                      channel_mult=[1], num_heads=-1, num_head_channels=64, use_spatial_transformer=True,
                      transformer_depth=[0, 0, 2, 2, 10, 10], transformer_depth_output=[0, 0, 0, 0, 0, 0, 1],
                      transformer_depth_middle=-1, context_dim=2048, use_linear_in_transformer=True,
                      legacy=False, num_classes="sequential", adm_in_channels=2816)


def main(out_path: str) -> None:
    sd = {f"model.diffusion_model.{k}": v for k, v in unet_state_dict(1, **TINY_SDXL_UNET).items()}
    sd.update({f"first_stage_model.{k}": v for k, v in sd_vae_state_dict(2).items()})
    sd.update({f"conditioner.embedders.0.transformer.{k}": v for k, v in clip_l_state_dict(3).items()})
    sd.update({f"conditioner.embedders.1.model.transformer.{k}": v for k, v in clip_g_state_dict(4).items()})
    save_checkpoint(sd, out_path)
    check(out_path)


def check(path: str) -> None:
    """Load the file the way CheckpointLoaderSimple does and fail unless ComfyUI sees SDXL with both
    text encoders filled from the file."""
    import torch
    from safetensors import safe_open

    import comfy.model_base

    model, clip, _ = comfy_env.load_checkpoint(path)
    if type(model.model) is not comfy.model_base.SDXL:
        raise SystemExit(f"ComfyUI detected {type(model.model).__name__}, not SDXL")
    cond = clip.cond_stage_model
    with safe_open(path, "pt") as f:
        for name, file_prefix in (("clip_l", "conditioner.embedders.0."), ("clip_g", "conditioner.embedders.1.model.")):
            key = f"transformer.text_model.encoder.layers.{10 if name == 'clip_l' else 30}.mlp.fc1.weight"
            loaded = getattr(cond, name).state_dict()[key].float()
            if not torch.equal(loaded, f.get_tensor(file_prefix + key).float()):
                raise SystemExit(f"{name} was not loaded from the checkpoint ({key})")
    print(f"detected: {type(model.model).__name__}, {model.model.model_type.name}, "
          f"encoders {[n for n in ('clip_l', 'clip_g') if hasattr(cond, n)]}")


if __name__ == "__main__":
    main(sys.argv[1])
