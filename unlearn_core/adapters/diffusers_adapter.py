"""DenoiserAdapter for a diffusers StableDiffusionPipeline (UNet2DConditionModel + CLIP text encoder)."""

from __future__ import annotations

import torch
from torch.func import functional_call

from ..protocol import eps_from_prediction


def load_pipeline(model_dir, dtype=None):
    """A diffusers Stable Diffusion folder as a StableDiffusionPipeline, from local files only.

    The folder is only read. Raises FileNotFoundError with what to give instead when it is not a
    diffusers model folder (a single .safetensors checkpoint is not: ComfyUI loads those)."""
    from pathlib import Path

    from diffusers import StableDiffusionPipeline

    model_dir = Path(model_dir)
    if not (model_dir / "model_index.json").is_file():
        raise FileNotFoundError(
            f"{model_dir} is not a diffusers model folder (no model_index.json). Give the folder that "
            "`save_pretrained` wrote; for a single-file checkpoint use the ComfyUI nodes, or convert it with "
            "diffusers' StableDiffusionPipeline.from_single_file(...).save_pretrained(folder).")
    pipe = StableDiffusionPipeline.from_pretrained(
        str(model_dir), dtype=dtype or torch.float32, local_files_only=True,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


class DiffusersAdapter:
    """DenoiserAdapter (unlearn_core/protocol.py) for a diffusers StableDiffusionPipeline."""

    def __init__(self, pipe, device: str | torch.device = "cpu"):
        from diffusers import DDPMScheduler

        self.pipe = pipe
        self.unet = pipe.unet
        self.text_encoder = pipe.text_encoder
        self.tokenizer = pipe.tokenizer
        self.vae = pipe.vae
        self.device = torch.device(device)
        self.dtype = next(self.unet.parameters()).dtype
        self.noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        self.prediction_type = self.noise_scheduler.config.prediction_type
        self.num_train_timesteps = self.noise_scheduler.config.num_train_timesteps
        self.alphas_cumprod = self.noise_scheduler.alphas_cumprod.to(self.device)
        size = self.unet.config.sample_size
        self.latent_shape = (self.unet.config.in_channels, size, size)
        for module in (self.unet, self.text_encoder, self.vae):
            module.requires_grad_(False)
            module.eval()

    # ---- conditioning -------------------------------------------------------------------
    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(self.device)
        return self.text_encoder(ids)[0].to(self.dtype)

    def prompt_token_ids(self, prompts: list[str]) -> list[list[int]]:
        tok = self.tokenizer(list(prompts), max_length=self.tokenizer.model_max_length, truncation=True)
        return [list(ids) for ids in tok.input_ids]

    @torch.no_grad()
    def token_embeddings(self, prompts: list[str], length: int | None = None) -> torch.Tensor:
        """`encode_prompts`'s rows 0..length-1, computed on those positions only (CLIP is causal)."""
        ids = self.tokenizer(list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(self.device)
        if length is not None:
            ids = ids[:, :max(1, int(length))]
        return self.text_encoder(ids)[0].to(self.dtype)

    # ---- denoiser ---------------------------------------------------------------------------
    def _raw(self, x_t, t, cond, weights):
        if weights:
            return functional_call(self.unet, weights, (x_t, t), {"encoder_hidden_states": cond}, strict=False).sample
        return self.unet(x_t, t, encoder_hidden_states=cond).sample

    def predict_noise(self, x_t, t, cond, weights=None):
        pred = self._raw(x_t, t, cond, weights)
        return eps_from_prediction(pred, x_t, self.alphas_cumprod[t], self.prediction_type)

    def add_noise(self, x0, noise, t):
        return self.noise_scheduler.add_noise(x0, noise, t)

    def denoiser_weights(self) -> dict[str, torch.Tensor]:
        return {n: p for n, p in self.unet.named_parameters()}

    def module_types(self) -> dict[str, str]:
        types = {}
        for name, module in self.unet.named_modules():
            kind = "linear" if isinstance(module, torch.nn.Linear) else "conv" if isinstance(module, torch.nn.Conv2d) else None
            if kind:
                types[f"{name}.weight"] = kind
        return types

    # ---- sampling and images -------------------------------------------------------------------
    @torch.no_grad()
    def sample_latents(self, prompts, seeds, negative_prompt=None, weights=None, steps=20, guidance_scale=5.0,
                       prompt_embeds: torch.Tensor | None = None):
        """Classifier-free-guided sampling with the pipeline's own scheduler type.

        Sample i starts from torch.randn((1, *latent_shape), generator=seed_i), exactly as
        StableDiffusionPipeline does with a list of generators, so the images match.
        `prompt_embeds` (one row per seed) replaces the encoding of `prompts`, e.g. for prompts
        with a learned token or an edited text encoder."""
        sched = type(self.pipe.scheduler).from_config(self.pipe.scheduler.config)
        sched.set_timesteps(steps, device=self.device)
        x = torch.cat([torch.randn((1, *self.latent_shape), generator=torch.Generator().manual_seed(int(s)),
                                   dtype=self.dtype) for s in seeds]).to(self.device)
        x = x * sched.init_noise_sigma
        cond = prompt_embeds.to(self.device, self.dtype) if prompt_embeds is not None else self.encode_prompts(prompts)
        uncond = self.encode_prompts([negative_prompt or ""] * len(seeds))
        context = torch.cat([uncond, cond])
        for t in sched.timesteps:
            xin = sched.scale_model_input(torch.cat([x, x]), t)
            out = self._raw(xin, t.expand(len(xin)), context, weights)
            u, c = out.chunk(2)
            x = sched.step(u + guidance_scale * (c - u), t, x).prev_sample
        return x

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        latents = self.vae.encode(images.to(self.device, self.vae.dtype) * 2 - 1).latent_dist.mean
        return (latents * self.vae.config.scaling_factor).to(self.dtype)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        images = self.vae.decode(latents.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        return ((images + 1) / 2).clamp(0, 1)

    @property
    def image_size(self) -> int:
        return self.latent_shape[1] * 2 ** (len(self.vae.config.block_out_channels) - 1)
