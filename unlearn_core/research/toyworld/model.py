"""Architecture of the embedded tiny Stable Diffusion (diffusers format).

Same component types as SD 1.x (AutoencoderKL, UNet2DConditionModel with cross-attention,
CLIP text encoder, CLIP BPE tokenizer), shrunk so that training and unlearning run on a CPU:
32x32 RGB images and 32x32x4 latents (the VAE does not downsample, so the UNet draws the 4-pixel
textures at their own resolution), a 4-layer text encoder of width 128, a 4-level UNet
(32, 16, 8, 4) with cross-attention at the 8x8 and 4x4 levels.
"""

from __future__ import annotations

from dataclasses import dataclass

from diffusers import AutoencoderKL, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from .render import IMAGE_SIZE


@dataclass(frozen=True)
class ToyModelConfig:
    text_width: int = 128
    text_layers: int = 4
    text_heads: int = 4
    unet_channels: tuple[int, ...] = (16, 32, 64, 128)
    unet_heads: int = 4
    unet_norm_groups: int = 8
    # cross- and self-attention only at UNet levels this small or smaller
    unet_attention_max_size: int = 8
    # one level: no downsampling, latents at the image's resolution
    vae_channels: tuple[int, ...] = (64,)
    latent_channels: int = 4
    max_length: int = 32


SCHEDULER_KWARGS = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    prediction_type="epsilon", steps_offset=1,
)


def build_vae(cfg: ToyModelConfig) -> AutoencoderKL:
    n = len(cfg.vae_channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=cfg.latent_channels,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=cfg.vae_channels, layers_per_block=1, norm_num_groups=32, sample_size=IMAGE_SIZE,
        mid_block_add_attention=False,
    )


def build_text_encoder(cfg: ToyModelConfig, vocab_size: int, bos_id: int, eos_id: int) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=cfg.text_width, intermediate_size=cfg.text_width * 4,
        num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads,
        max_position_embeddings=cfg.max_length, projection_dim=cfg.text_width,
        bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=eos_id, hidden_act="quick_gelu",
    )
    return CLIPTextModel(config)


def build_unet(cfg: ToyModelConfig) -> UNet2DConditionModel:
    # AutoencoderKL halves the resolution between its levels, so the latents are this size
    latent_size = IMAGE_SIZE // 2 ** (len(cfg.vae_channels) - 1)
    sizes = [latent_size // 2 ** i for i in range(len(cfg.unet_channels))]
    # No attention at the fine levels: it costs most of the time there, and the conditioning
    # (which object, colour, style) is placed well from the coarser levels.
    attends = [size <= cfg.unet_attention_max_size for size in sizes]
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attends)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attends))
    return UNet2DConditionModel(
        sample_size=latent_size, in_channels=cfg.latent_channels, out_channels=cfg.latent_channels,
        down_block_types=down, up_block_types=up, block_out_channels=cfg.unet_channels,
        layers_per_block=1, cross_attention_dim=cfg.text_width, attention_head_dim=cfg.unet_heads,
        norm_num_groups=cfg.unet_norm_groups,
    )


def build_train_scheduler() -> DDPMScheduler:
    return DDPMScheduler(**SCHEDULER_KWARGS)


def build_sampling_scheduler() -> DPMSolverMultistepScheduler:
    return DPMSolverMultistepScheduler(**SCHEDULER_KWARGS)
