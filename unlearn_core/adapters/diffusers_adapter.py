"""DenoiserAdapter for a diffusers StableDiffusionPipeline or StableDiffusionXLPipeline.

SD1.x/2.x: the conditioning is the text encoder's last hidden state (77 x 768 or 1024).
SDXL: the conditioning is CLIP-L's and OpenCLIP-G's penultimate hidden states concatenated
(77 x 2048), as StableDiffusionXLPipeline.encode_prompt builds it, and the UNet also takes per
image the pooled, projected OpenCLIP-G output and the size ids (height, width, crop top, crop
left, target height, target width). Those ride along as an extra row of the conditioning tensor
(`conditioning.AdmPacking`) and are split off again right before the UNet call, so the trainers
see one tensor per prompt for both families.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.func import functional_call

from ..conditioning import AdmPacking
from ..layer_selection import weight_kinds
from ..protocol import eps_from_prediction


def load_pipeline(model_dir, dtype=None):
    """A diffusers Stable Diffusion folder as a StableDiffusionPipeline (or StableDiffusionXLPipeline
    when its model_index.json names that class), from local files only.

    The folder is only read. Raises FileNotFoundError with what to give instead when it is not a
    diffusers model folder (a single .safetensors checkpoint is not: ComfyUI loads those)."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    model_dir = Path(model_dir)
    if not (model_dir / "model_index.json").is_file():
        raise FileNotFoundError(
            f"{model_dir} is not a diffusers model folder (no model_index.json). Give the folder that "
            "`save_pretrained` wrote; for a single-file checkpoint use the ComfyUI nodes, or convert it with "
            "diffusers' StableDiffusionPipeline.from_single_file(...).save_pretrained(folder).")
    kind = json.loads((model_dir / "model_index.json").read_text()).get("_class_name", "")
    if kind.startswith("StableDiffusionXL"):
        pipe = StableDiffusionXLPipeline.from_pretrained(str(model_dir), dtype=dtype or torch.float32,
                                                         local_files_only=True)
        pipe.set_progress_bar_config(disable=True)
        return pipe
    pipe = StableDiffusionPipeline.from_pretrained(
        str(model_dir), dtype=dtype or torch.float32, local_files_only=True,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


class DiffusersAdapter:
    """DenoiserAdapter (unlearn_core/protocol.py) for a diffusers StableDiffusionPipeline or
    StableDiffusionXLPipeline (top of this module)."""

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
        # SDXL: a second text encoder, and the pooled embedding + size ids packed after the tokens
        self.text_encoder_2 = getattr(pipe, "text_encoder_2", None)
        self.tokenizer_2 = getattr(pipe, "tokenizer_2", None)
        self.adm = None
        if self.unet.config.get("addition_embed_type") == "text_time":
            if self.text_encoder_2 is None or self.tokenizer_2 is None:
                raise ValueError("this UNet takes SDXL's pooled text embedding and size ids, but the pipeline has no "
                                 "text_encoder_2 / tokenizer_2: load it as a StableDiffusionXLPipeline")
            self.adm = AdmPacking(channels=self.text_encoder_2.config.projection_dim + 6,
                                  width=self.unet.config.cross_attention_dim)
        for module in (self.unet, self.text_encoder, self.text_encoder_2, self.vae):
            if module is not None:
                module.requires_grad_(False)
                module.eval()

    # ---- conditioning -------------------------------------------------------------------
    def _ids(self, tokenizer, prompts: list[str], length: int | None = None) -> torch.Tensor:
        ids = tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids.to(self.device)
        return ids if length is None else ids[:, :max(1, int(length))]

    def _context(self, prompts: list[str], length: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the token rows [B, L, D], SDXL's pooled OpenCLIP-G embedding or None)."""
        if self.adm is None:
            return self.text_encoder(self._ids(self.tokenizer, prompts, length))[0].to(self.dtype), None
        # as StableDiffusionXLPipeline.encode_prompt: penultimate layers, concatenated; the pooled
        # embedding is the projected output at the end token, so it needs the whole sequence
        out_1 = self.text_encoder(self._ids(self.tokenizer, prompts, length), output_hidden_states=True)
        out_2 = self.text_encoder_2(self._ids(self.tokenizer_2, prompts, length), output_hidden_states=True)
        context = torch.cat([out_1.hidden_states[-2], out_2.hidden_states[-2]], dim=-1).to(self.dtype)
        return context, out_2.text_embeds

    def size_ids(self, n: int) -> torch.Tensor:
        """SDXL's time ids for an image of the UNet's size, uncropped: (h, w, 0, 0, h, w) per row."""
        h = w = self.image_size
        return torch.tensor([[h, w, 0, 0, h, w]], dtype=self.dtype, device=self.device).expand(n, -1)

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        context, pooled = self._context(prompts)
        if self.adm is None:
            return context
        return self.adm.pack(context, torch.cat([pooled.to(self.dtype), self.size_ids(len(prompts))], dim=-1))

    def prompt_token_ids(self, prompts: list[str]) -> list[list[int]]:
        tok = self.tokenizer(list(prompts), max_length=self.tokenizer.model_max_length, truncation=True)
        return [list(ids) for ids in tok.input_ids]

    @torch.no_grad()
    def token_embeddings(self, prompts: list[str], length: int | None = None) -> torch.Tensor:
        """`encode_prompts`'s token rows 0..length-1, computed on those positions only (CLIP is causal)."""
        return self._context(prompts, length)[0]

    # ---- denoiser ---------------------------------------------------------------------------
    def _raw(self, x_t, t, cond, weights):
        kwargs = {"encoder_hidden_states": cond}
        if self.adm is not None:
            context, y = self.adm.unpack(cond)
            pooled, size_ids = y.split([y.shape[-1] - 6, 6], dim=-1)
            kwargs = {"encoder_hidden_states": context,
                      "added_cond_kwargs": {"text_embeds": pooled, "time_ids": size_ids}}
        if weights:
            return functional_call(self.unet, weights, (x_t, t), kwargs, strict=False).sample
        return self.unet(x_t, t, **kwargs).sample

    def predict_noise(self, x_t, t, cond, weights=None):
        pred = self._raw(x_t, t, cond, weights)
        return eps_from_prediction(pred, x_t, self.alphas_cumprod[t], self.prediction_type)

    def add_noise(self, x0, noise, t):
        return self.noise_scheduler.add_noise(x0, noise, t)

    def denoiser_weights(self) -> dict[str, torch.Tensor]:
        return {n: p for n, p in self.unet.named_parameters()}

    def module_types(self) -> dict[str, str]:
        return weight_kinds(self.unet)

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
        if self.adm is not None and not negative_prompt and self.pipe.config.get("force_zeros_for_empty_prompt"):
            # as StableDiffusionXLPipeline: no negative prompt means zero context and pooled embedding
            zeros = torch.zeros((len(seeds), self.adm.channels - 6), dtype=self.dtype, device=self.device)
            uncond = self.adm.pack(torch.zeros_like(cond[:, :-self.adm.rows]),
                                   torch.cat([zeros, self.size_ids(len(seeds))], dim=-1))
        else:
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
