"""The interfaces the trainers are written against.

A trainer never touches a model's weights: it asks the adapter for the *base* tensors of the
layers it edits, keeps its own delta tensors, and calls `predict_noise(..., weights=base+delta)`.
With `weights=None` the adapter runs the untouched base model (the distillation teacher of the
first concept is free). One adapter wraps diffusers/transformers models, another ComfyUI's
MODEL/CLIP; the same trainer code runs through both.

- `DenoiserAdapter`: the UNet, its noise schedule, the frozen text encoder that conditions it and
  the VAE (`unet_unlearning`, `training_data`, `closed_form`, the UNet side of
  `text_encoder_unlearning`, and the research attacks). Implemented by `adapters.diffusers_adapter.DiffusersAdapter` and
  `nodes/comfy_bridge.py`'s `ComfyDenoiserAdapter`.
- `TextEncoderAdapter`: a differentiable, clip-skip-aware text encoder with a placeholder token
  for textual inversion (`text_encoder_unlearning`). Implemented by
  `adapters.clip_text_adapter.ClipTextAdapter` and `ComfyClipTextAdapter`.

Trainers are typed against these protocols only; they construct no adapter themselves.
"""

from __future__ import annotations

from typing import Protocol

import torch

#: The text a learned token takes in prompts (one BPE token in every CLIP vocabulary): a text
#: encoder adapter replaces its embedding by the vector given for the prompt.
PLACEHOLDER = "*"


class DenoiserAdapter(Protocol):
    #: "epsilon" or "v_prediction"; `predict_noise` always answers in eps space.
    prediction_type: str
    num_train_timesteps: int
    #: latent shape of one image, e.g. (4, 64, 64)
    latent_shape: tuple[int, int, int]
    device: torch.device
    dtype: torch.dtype
    #: the denoiser module `predict_noise` runs (never written; `checkpointing.checkpointed` wraps its
    #: blocks' forward while a run with gradient_checkpointing lasts)
    unet: torch.nn.Module

    @property
    def image_size(self) -> int:
        """Side in pixels of the images `encode_images` takes; user images are resized to it."""

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """Conditioning for the denoiser (frozen text encoder), one row per prompt."""

    def prompt_token_ids(self, prompts: list[str]) -> list[list[int]]:
        """Each prompt's token ids as `encode_prompts` encodes them, from the start token through the
        end token, without padding (token i is row i of the prompt's conditioning). Used by the
        closed-form edit to find a concept's words."""

    def token_embeddings(self, prompts: list[str], length: int | None = None) -> torch.Tensor:
        """The text encoder's output at the token positions only [B, L, D]: the rows of
        `encode_prompts` that the cross-attention keys and values see (no extra conditioning rows),
        the first `length` of them (all with None). A causal text encoder gives the first positions
        exactly when run on them alone, so a short `length` costs less."""

    def predict_noise(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
                      weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The model's noise prediction (eps) for noised latents x_t at integer timesteps t.

        `weights` maps parameter names (as in `denoiser_weights`) to tensors used instead of the
        stored ones for this call; gradients flow into them."""

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Forward diffusion q(x_t | x_0) at integer timesteps t."""

    def denoiser_weights(self) -> dict[str, torch.Tensor]:
        """Name -> base tensor of every weight of the denoiser (read-only use)."""

    def module_types(self) -> dict[str, str]:
        """Name of each weight -> 'linear', 'conv' or 'other', for layer selection."""

    def sample_latents(self, prompts: list[str], seeds: list[int], negative_prompt: str | None = None,
                       weights: dict[str, torch.Tensor] | None = None, steps: int = 20,
                       guidance_scale: float = 5.0, prompt_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Generate clean latents (one per prompt/seed pair) with the model itself; sample i starts
        from torch.randn((1, *latent_shape), generator=seed i). `prompt_embeds` (one row per seed)
        replaces the encoding of `prompts`, e.g. for prompts with a learned token."""

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Nx3xHxW images in [0, 1] -> latents in the denoiser's space (scaled)."""

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents in the denoiser's space -> Nx3xHxW images in [0, 1]."""


class TokenEmbedding(Protocol):
    """What a trainer reads of a text encoder's input embedding table."""

    @property
    def weight(self) -> torch.Tensor:
        """vocabulary x width."""


class TextEncoderAdapter(Protocol):
    #: 0 = the last encoder layer conditions the UNet, 1 = the penultimate, ...
    clip_skip: int

    @property
    def used_layer(self) -> int:
        """Index (0-based) of the encoder layer whose output conditions the UNet."""

    @property
    def token_embedding(self) -> TokenEmbedding:
        """The input embedding table (its `.weight`, e.g. the mean embedding a learned token starts from)."""

    def weights(self) -> dict[str, torch.Tensor]:
        """Name -> base tensor of every weight of the encoder (read-only use); LoRA targets are
        '<module name>.weight' of these."""

    def final_layer_names(self, n: int, kinds: tuple[str, ...] = ("self_attn", "mlp")) -> list[str]:
        """Module names of the linear layers of the last `n` layers up to the used one."""

    def layer_names(self, layers: list[int], kinds: tuple[str, ...]) -> list[str]:
        """Module names of the linear layers (of `kinds`) of the given layers."""

    def encode(self, prompts: list[str], weights: dict[str, torch.Tensor] | None = None,
               token_vectors: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states that condition the UNet, differentiable in `weights` (used instead of the
        stored ones) and `token_vectors` (one per prompt, used wherever it has PLACEHOLDER)."""

    def word_embedding(self, text: str) -> torch.Tensor:
        """Mean input embedding of the tokens of `text` (an initial guess for a learned token)."""


def eps_from_prediction(pred: torch.Tensor, x_t: torch.Tensor, alphas_cumprod_t: torch.Tensor,
                        prediction_type: str) -> torch.Tensor:
    """Convert a model output to eps. v = sqrt(a) eps - sqrt(1-a) x0  =>  eps = sqrt(a) v + sqrt(1-a) x_t."""
    if prediction_type == "epsilon":
        return pred
    if prediction_type == "v_prediction":
        a = alphas_cumprod_t.view(-1, 1, 1, 1).to(pred.dtype)
        return a.sqrt() * pred + (1 - a).sqrt() * x_t
    raise ValueError(f"unsupported prediction type {prediction_type!r} (use 'epsilon' or 'v_prediction')")
