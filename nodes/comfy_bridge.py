"""The bridge between ComfyUI's MODEL / CLIP / VAE objects and `unlearn_core`.

`ComfyDenoiserAdapter` implements the `DenoiserAdapter` protocol (unlearn_core/protocol.py) for a
ComfyUI ModelPatcher, so `unlearn_unet(...)` runs through it unchanged, and
`ComfyClipTextAdapter` implements `TextEncoderAdapter` for a ComfyUI CLIP, the differentiable
encoder the few-shot text-encoder method is written against (as `ClipTextAdapter` does for
transformers).

Facts about ComfyUI this relies on (docs/architecture.md, "ComfyUI facts the bridge relies on"):
- nodes run inside `torch.inference_mode()`: the loaded weights are inference tensors, which
  autograd refuses to save for backward. The adapter takes an ordinary tensor over each loaded
  weight's memory (`shared_view`: no copy, the model's own dtype; after loading the MODEL with
  its patches baked in) and runs the UNet with `torch.func.functional_call`, so the gradient path
  never touches an inference tensor, the shared module is never modified and only the trained
  matrices' fp32 deltas and optimizer state are added to the model's own memory. fp16 models are
  the exception: they train in fp32 over a converted copy (fp16 gradients underflow without loss
  scaling); bf16 and fp32 models are shared.
  Everything ComfyUI does that writes to weights (loading, patching) runs back inside
  inference mode; its outputs are cloned outside it.
- ComfyUI's schedule is variance-exploding (x = x0 + sigma * eps); the trainers work in the DDPM
  (variance-preserving) parametrisation with integer timesteps. alpha_bar = 1 / (1 + sigma^2),
  and the raw UNet sees exactly the VP latent x_t = x / sqrt(1 + sigma^2) with timestep t, so the
  adapter calls `diffusion_model(x_t, t, context=cond)` directly: output eps (or v).
- VAE latents are stored raw; `process_latent_in` scales them into the denoiser's space.
- SDXL (model_base.SDXL): the context is CLIP-L and OpenCLIP-G's penultimate layers concatenated
  (77 x 2048, what the CLIP object returns), and the UNet also takes an ADM vector `y` =
  pooled CLIP-G output + embeddings of (height, width, crop 0, 0, target height, width), made by
  the model's own `encode_adm` exactly as KSampler does for an image of `resolution` pixels. The
  trainers pass conditioning around as one tensor per prompt, so `y` rides along as extra rows
  of that tensor (`AdmPacking`) and is split off again in `predict_noise`.

This module imports `comfy` and is only imported inside ComfyUI (or scripts that set it up).
"""

from __future__ import annotations

import contextlib
import re
from typing import Callable, Iterable, Iterator

import torch
from torch.func import functional_call

import comfy.model_base
import comfy.model_management
import comfy.model_sampling

from ..unlearn_core.conditioning import AdmPacking
from ..unlearn_core.layer_selection import weight_kinds
from ..unlearn_core.protocol import PLACEHOLDER, eps_from_prediction


class BridgeError(ValueError):
    """A MODEL/CLIP/VAE this bridge cannot train on; the message says why."""

    # shown by ComfyUI as the error's type: the pack's name instead of its folder path (see ConceptSetError)
    __module__ = "comfyui-concept-unlearn"


@contextlib.contextmanager
def training_mode():
    """Leave ComfyUI's inference mode and enable autograd (ordinary tensors from here on)."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def shared_view(t: torch.Tensor, device: torch.device, dtype: torch.dtype,
                keep_dtypes: tuple[torch.dtype, ...] = ()) -> torch.Tensor:
    """An ordinary tensor over `t`'s own memory, for a frozen weight on the gradient path.

    `t` may be an inference tensor (ComfyUI loads weights inside inference mode); a tensor made
    outside inference mode and pointed at the same storage with `set_` is not one, so autograd
    may save it for backward, and nothing is copied. The weights are only ever read through it.
    `t` is shared when it is on `device` and in `dtype` or one of `keep_dtypes` (the types the
    module casts from by itself); otherwise (fp8 weights, a text encoder held in fp16) a copy
    converted to `dtype` is made. Call outside inference mode."""
    plain = type(t) in (torch.Tensor, torch.nn.Parameter)  # not a quantized / GGUF tensor subclass
    if not plain or t.device != device or (t.dtype != dtype and t.dtype not in keep_dtypes):
        return detached_copy(t, device, dtype)
    view = torch.empty(0, dtype=t.dtype, device=t.device)
    return view.set_(t.untyped_storage(), t.storage_offset(), t.size(), t.stride())


def detached_copy(t: torch.Tensor, device=None, dtype=None) -> torch.Tensor:
    """An ordinary (non-inference) copy of `t`, detached from any autograd graph (ComfyUI's
    parameters never receive gradients), on `device` / in `dtype` if given; call outside
    inference mode."""
    return t.detach().to(device=device or t.device, dtype=dtype or t.dtype, copy=True)


def prediction_type_of(model_sampling) -> str:
    if not isinstance(model_sampling, comfy.model_sampling.ModelSamplingDiscrete) or \
            isinstance(model_sampling, (comfy.model_sampling.EDM, comfy.model_sampling.X0)) or \
            not hasattr(model_sampling, "sigmas"):
        raise BridgeError(
            f"this MODEL's sampling ({type(model_sampling).__name__}) is not a discrete-timestep eps or "
            "v-prediction schedule; the unlearning nodes support Stable Diffusion 1.x/2.x and SDXL style models")
    if isinstance(model_sampling, comfy.model_sampling.V_PREDICTION):
        return "v_prediction"
    if isinstance(model_sampling, comfy.model_sampling.EPS):
        return "epsilon"
    raise BridgeError(f"unsupported prediction type of {type(model_sampling).__name__}")


def adm_packing_of(base_model) -> AdmPacking | None:
    """None for models conditioned on the context only (SD1.x/2.x); the packing for SDXL; an error
    for other models that need an ADM vector (its recipe differs per model family)."""
    unet = base_model.diffusion_model
    if getattr(unet, "num_classes", None) is None:
        return None
    if type(base_model) is not comfy.model_base.SDXL or unet.num_classes != "sequential":
        raise BridgeError(f"this MODEL ({type(base_model).__name__}) needs extra (ADM) conditioning of a kind the "
                          "unlearning nodes do not build; supported are Stable Diffusion 1.x/2.x and SDXL models")
    return AdmPacking(channels=unet.label_emb[0][0].in_features,
                      width=base_model.model_config.unet_config["context_dim"])


class ComfyDenoiserAdapter:
    """DenoiserAdapter over a ComfyUI MODEL (ModelPatcher), with a CLIP for prompts and an optional VAE.

    Create it and use it inside `training_mode()`. Weight names are ComfyUI's names inside the
    diffusion model (`input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight`); the MODEL's
    state-dict key of a weight is 'diffusion_model.' + name.
    """

    def __init__(self, model, clip, vae=None, resolution: int = 512, sample_batch: int = 4,
                 should_cancel: Callable[[], bool] | None = None,
                 on_sample_step: Callable[[], None] | None = None):
        if clip is None:
            raise BridgeError("a CLIP is needed to encode the concept prompts")
        self.patcher = model.clone()
        with torch.inference_mode(True):
            comfy.model_management.load_models_gpu([self.patcher], force_full_load=True)
        base_model = self.patcher.model
        self.base_model = base_model
        self.unet = base_model.diffusion_model
        self.adm = adm_packing_of(base_model)
        self.model_sampling = self.patcher.get_model_object("model_sampling")
        self.prediction_type = prediction_type_of(self.model_sampling)
        self.device = torch.device(self.patcher.load_device)
        # the dtype the UNet computes in: its weights' own, unless ComfyUI casts them layer by layer;
        # fp32 instead of fp16, whose gradients underflow without loss scaling (bf16 has fp32's range)
        self.dtype = base_model.manual_cast_dtype or base_model.get_dtype()
        if self.dtype == torch.float16:
            self.dtype = torch.float32
        sigmas = self.model_sampling.sigmas.detach().to(torch.float64).cpu()
        self.num_train_timesteps = int(len(sigmas))
        self.alphas_cumprod = detached_copy((1.0 / (1.0 + sigmas ** 2)).float(), self.device)
        factor = 8
        if vae is not None and isinstance(getattr(vae, "downscale_ratio", None), int):
            factor = vae.downscale_ratio
        if resolution % factor:
            raise BridgeError(f"resolution {resolution} must be a multiple of {factor}")
        channels = base_model.latent_format.latent_channels
        self.latent_shape = (channels, resolution // factor, resolution // factor)
        self.resolution = resolution
        self.clip = clip
        self.vae = vae
        self.sample_batch = max(1, int(sample_batch))
        self.should_cancel = should_cancel
        self.on_sample_step = on_sample_step
        # Ordinary tensors over the loaded weights (no copy): the gradient path never sees an
        # inference tensor, and the shared module's weights are never written. A manual-cast
        # model's layers cast each fp16/bf16/fp32 weight to the compute dtype as they run.
        keep = (torch.float16, torch.bfloat16, torch.float32) if base_model.manual_cast_dtype is not None else ()
        self.params = {n: shared_view(p, self.device, self.dtype, keep) for n, p in self.unet.named_parameters()}
        self.buffers = {n: detached_copy(b, self.device) for n, b in self.unet.named_buffers()}
        self._prompt_cache: dict[str, torch.Tensor] = {}

    def describe(self) -> str:
        """One line for reports: the model class, prediction type and conditioning."""
        conditioning = "text context + ADM vector (pooled CLIP-G + size)" if self.adm else "text context"
        return f"{type(self.base_model).__name__}, {self.prediction_type}, conditioning: {conditioning}"

    # ---- conditioning -------------------------------------------------------------------
    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """Frozen CLIP conditioning, one [77, D] row per prompt (the first 77-token chunk); for SDXL
        [77 + adm.rows, D] with the ADM vector packed after the tokens (see AdmPacking)."""
        rows = []
        for p in prompts:
            if p not in self._prompt_cache:
                tokens = self.clip.tokenize(p)
                tokens = {k: v[:1] for k, v in tokens.items()} if isinstance(tokens, dict) else tokens
                with torch.inference_mode(True):
                    cond, pooled = self.clip.encode_from_tokens(tokens, return_pooled=True)
                    y = None if self.adm is None else self.base_model.encode_adm(
                        pooled_output=pooled, width=self.resolution, height=self.resolution, device=self.device)
                cond = detached_copy(cond, self.device, torch.float32)
                if y is not None:
                    cond = self.adm.pack(cond, detached_copy(y, self.device, torch.float32))
                self._prompt_cache[p] = cond[0]
            rows.append(self._prompt_cache[p])
        return torch.stack(rows)

    def _first_chunk_ids(self, prompt: str) -> list[int]:
        """The ids of the first 77-token chunk of `prompt` as CLIP.tokenize gives them (padded)."""
        tokens = self.clip.tokenize(prompt)
        chunks = tokens[next(iter(tokens))] if isinstance(tokens, dict) else tokens
        return [int(t[0]) if isinstance(t[0], int) else -1 for t in chunks[0]]

    def prompt_token_ids(self, prompts: list[str]) -> list[list[int]]:
        """Each prompt's first chunk from its start token through its end token (without padding);
        the end token is the one the empty prompt has after its start token."""
        end = self._first_chunk_ids("")[1]
        out = []
        for p in prompts:
            ids = self._first_chunk_ids(p)
            stop = ids.index(end, 1) + 1 if end in ids[1:] else len(ids)
            out.append(ids[:stop])
        return out

    def token_embeddings(self, prompts: list[str], length: int | None = None, batch: int = 16) -> torch.Tensor:
        """The token rows of `encode_prompts` (no ADM rows), the first `length` of them.

        Up to `batch` prompts are encoded in one call, as the 77-token sections of one token list:
        CLIP encodes a long prompt's sections as one batch and joins their outputs along the tokens
        (sd1_clip.encode_token_weights), so section k's rows are prompt k's own encoding."""
        out = []
        for start in range(0, len(prompts), batch):
            chunk = [self.clip.tokenize(p) for p in list(prompts)[start:start + batch]]
            if isinstance(chunk[0], dict):
                tokens = {k: [t[k][0] for t in chunk] for k in chunk[0]}
            else:
                tokens = [t[0] for t in chunk]
            with torch.inference_mode(True):
                cond = self.clip.encode_from_tokens(tokens)
            cond = detached_copy(cond, self.device, torch.float32)
            out.append(cond.reshape(len(chunk), -1, cond.shape[-1]))
        cond = torch.cat(out)
        return cond if length is None else cond[:, :max(1, min(int(length), cond.shape[1]))]

    # ---- denoiser ---------------------------------------------------------------------------
    def _raw(self, x_t, t, cond, weights=None):
        params = self.params if not weights else {**self.params, **weights}
        kwargs = {"timesteps": t.to(self.device).float(), "transformer_options": {}}
        if self.adm is None:
            kwargs["context"] = cond.to(self.dtype)
        else:
            context, y = self.adm.unpack(cond.to(self.dtype))
            kwargs.update(context=context, y=y)
        return functional_call(self.unet, {**params, **self.buffers}, (x_t.to(self.dtype),), kwargs, strict=False)

    def predict_noise(self, x_t, t, cond, weights=None):
        pred = self._raw(x_t, t, cond, weights).float()
        return eps_from_prediction(pred, x_t, self.alphas_cumprod[t.to(self.device)], self.prediction_type)

    def add_noise(self, x0, noise, t):
        a = self.alphas_cumprod[t.to(self.device)].to(x0.dtype).view(-1, *([1] * (x0.ndim - 1)))
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def denoiser_weights(self) -> dict[str, torch.Tensor]:
        return self.params

    def module_types(self) -> dict[str, str]:
        return weight_kinds(self.unet)

    # ---- sampling and images -------------------------------------------------------------------
    def ddim_timesteps(self, steps: int) -> list[int]:
        steps = max(1, min(int(steps), self.num_train_timesteps))
        return torch.linspace(self.num_train_timesteps - 1, 0, steps).round().long().tolist()

    @torch.no_grad()
    def sample_latents(self, prompts, seeds, negative_prompt=None, weights=None, steps=20, guidance_scale=5.0,
                       prompt_embeds: torch.Tensor | None = None):
        """Deterministic DDIM (eta 0) with classifier-free guidance over the model's own schedule.

        Sample i starts from torch.randn((1, *latent_shape), generator=seed_i). Returns clean
        latents in the denoiser's space (process_latent_in applied)."""
        out = []
        for start in range(0, len(seeds), self.sample_batch):
            sl = slice(start, start + self.sample_batch)
            embeds = prompt_embeds[sl] if prompt_embeds is not None else None
            out.append(self._sample_chunk(list(prompts)[sl], list(seeds)[sl], negative_prompt, weights, steps,
                                          guidance_scale, embeds))
        return torch.cat(out)

    def _sample_chunk(self, prompts, seeds, negative_prompt, weights, steps, guidance, embeds):
        x = torch.cat([torch.randn((1, *self.latent_shape), generator=torch.Generator().manual_seed(int(s)))
                       for s in seeds]).to(self.device)  # the sampler's state stays fp32; _raw casts
        cond = embeds.to(self.device, torch.float32) if embeds is not None else self.encode_prompts(prompts)
        uncond = self.encode_prompts([negative_prompt or ""] * len(seeds))
        context = torch.cat([uncond, cond])
        ts = self.ddim_timesteps(steps)
        for i, t in enumerate(ts):
            if self.should_cancel is not None and self.should_cancel():
                from ..unlearn_core.unet_unlearning import UnlearnCancelled

                raise UnlearnCancelled("cancelled while generating training images; nothing was changed")
            tt = torch.full((2 * len(x),), t, device=self.device, dtype=torch.long)
            eps = self.predict_noise(torch.cat([x, x]), tt, context, weights)
            e_u, e_c = eps.chunk(2)
            eps = e_u + guidance * (e_c - e_u)
            a = self.alphas_cumprod[t]
            a_prev = self.alphas_cumprod[ts[i + 1]] if i + 1 < len(ts) else torch.ones((), device=self.device)
            x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
            x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
            if self.on_sample_step is not None:
                self.on_sample_step()
        return x

    @property
    def image_size(self) -> int:
        return self.resolution

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Nx3xHxW images in [0, 1] -> latents in the denoiser's space."""
        if self.vae is None:
            raise BridgeError("example images were given but no VAE is connected to encode them")
        with torch.inference_mode(True):
            raw = self.vae.encode(images.permute(0, 2, 3, 1).contiguous()[..., :3])
        return self.latents_from_comfy(detached_copy(raw))

    def latents_from_comfy(self, samples: torch.Tensor) -> torch.Tensor:
        """A LATENT's raw samples -> the denoiser's space (process_latent_in)."""
        samples = detached_copy(samples, self.device, torch.float32)
        return self.base_model.process_latent_in(samples)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents in the denoiser's space -> Nx3xHxW images in [0, 1], as the protocol says
        (ComfyUI's IMAGE layout [B, H, W, C] is this permuted by (0, 2, 3, 1))."""
        if self.vae is None:
            raise BridgeError("no VAE to decode images with")
        raw = self.base_model.process_latent_out(latents.detach().float())
        with torch.inference_mode(True):
            images = self.vae.decode(raw)
        return detached_copy(images)[..., :3].permute(0, 3, 1, 2).clamp(0, 1)


def patched_model(model, deltas: dict[str, torch.Tensor], prefix: str = "diffusion_model."):
    """A clone of `model` with each delta added as a ("diff", (delta,)) patch; the input is untouched."""
    m = model.clone()
    patches = {f"{prefix}{n}": ("diff", (d.detach().to("cpu", torch.float32).contiguous(),)) for n, d in deltas.items()}
    accepted = set(m.add_patches(patches, 1.0, 1.0))
    missing = sorted(set(patches) - accepted)
    if missing:
        raise BridgeError(f"{len(missing)} delta(s) do not match this model, e.g. {missing[0]!r}")
    return m


def effective_weights(patcher, keys: Iterable[str] | None = None,
                      prefix: str | None = None) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    """(key, base, effective) for the weights of a ModelPatcher (MODEL, or a CLIP's `.patcher`),
    one key at a time, as ordinary fp32 CPU tensors: `base` is the weight the MODEL/CLIP was
    loaded with, `effective` that weight with this patcher's patches applied (every patch type
    ComfyUI knows: diffs, LoRAs, unlearning edits), i.e. the weight it samples with; the same
    tensor as `base` for a key without patches. Only `keys` (if given) and keys starting with
    `prefix` (if given). Call outside inference mode.

    The one place the node pack computes a patched weight (Compare Model Weights and the deltas
    Save Unlearned Model writes). Clones of one model share ComfyUI's backup of the unpatched
    weights, so `base` is right even while another clone's patches are applied in place."""
    import comfy.lora

    with torch.inference_mode(True):
        key_patches = patcher.get_key_patches(prefix)
    wanted = None if keys is None else set(keys)
    for key, entries in key_patches.items():
        if wanted is not None and key not in wanted:
            continue
        weight, convert = entries[0]
        base = detached_copy(convert(weight) if convert else weight, torch.device("cpu"), torch.float32)
        # calculate_weight adds some patch types in place: give it its own copy
        effective = comfy.lora.calculate_weight(entries[1:], base.clone(), key) if len(entries) > 1 else base
        yield key, base, effective


def effective_deltas(patcher, prefix: str | None = None) -> dict[str, torch.Tensor]:
    """Per patched weight key: (weight with this patcher's patches) - (weight without them), fp32 on
    CPU (`effective_weights`); keys whose patches cancel out are left out.

    Works for every patch type ComfyUI knows (diff, LoRA, ...), so a LoRA loaded before an
    unlearning node ends up in the saved difference too: the difference is always relative to
    the weights the MODEL/CLIP was loaded with."""
    patched = [k for k in patcher.patches if prefix is None or k.startswith(prefix)]
    out = {}
    for key, base, effective in effective_weights(patcher, patched, prefix):
        delta = (effective - base).float()
        if torch.count_nonzero(delta):
            out[key] = delta
    return out


# ---- text encoder ------------------------------------------------------------------------------
_LAYER_LINEAR = re.compile(r"(?:^|\.)encoder\.layers\.(\d+)\.(self_attn\.(?:q|k|v|out)_proj|mlp\.fc[12])$")


def _out_of_place_clip_layer_forward(self, x, mask=None, optimized_attention=None):
    x = x + self.self_attn(self.layer_norm1(x), mask, optimized_attention)
    x = x + self.mlp(self.layer_norm2(x))
    return x


@contextlib.contextmanager
def out_of_place_clip_layers(module: torch.nn.Module):
    """ComfyUI's CLIPLayer adds its residuals in place, which breaks backward: swap in an
    out-of-place forward on this module's layers (instances only) for the duration."""
    import comfy.clip_model

    layers = [m for m in module.modules() if isinstance(m, comfy.clip_model.CLIPLayer)]
    for m in layers:
        m.forward = _out_of_place_clip_layer_forward.__get__(m)
    try:
        yield
    finally:
        for m in layers:
            del m.forward


def single_text_encoder_name(clip) -> str:
    """The one text encoder ('clip_l' for SD1.x, 'clip_h' for SD2.x) of a CLIP, or a BridgeError
    that says why the few-shot text-encoder method cannot edit this CLIP."""
    names = [n for n in ("clip_l", "clip_h", "clip_g") if hasattr(clip.cond_stage_model, n)]
    if len(names) == 1:
        return names[0]
    if names == ["clip_l", "clip_g"]:
        raise BridgeError(
            "this CLIP has two text encoders (CLIP-L + OpenCLIP-G: an SDXL model). Few-shot text-encoder "
            "forgetting edits one encoder (SD1.x CLIP-L, SD2.x OpenCLIP-H); for SDXL both encoders' penultimate "
            "layers and CLIP-G's pooled output condition the UNet, which this method does not model. To erase a "
            "concept from an SDXL model use Dynamic Mask Unlearn (UNet), which supports SDXL.")
    raise BridgeError("few-shot text-encoder forgetting supports CLIPs with one text encoder (SD1.x CLIP-L, "
                      f"SD2.x OpenCLIP-H); this CLIP has {names or 'none of clip_l/clip_h'}")


class ComfyClipTextAdapter:
    """Differentiable prompt encoding through a ComfyUI CLIP (SD1.x 'clip_l' / SD2.x 'clip_h'): the
    TextEncoderAdapter protocol (unlearn_core/protocol.py), as unlearn_core's ClipTextAdapter:
    `encode(prompts, weights, token_vectors)`, `final_layer_names`, `weights()`, `token_embedding`,
    `word_embedding`.

    Weight names are relative to the encoder (`clip_l`): 'transformer.text_model.encoder.layers.11.mlp.fc1.weight';
    the CLIP patcher key is '<clip_name>.' + name. Use inside `training_mode()` and
    `out_of_place_clip_layers(adapter.encoder)`."""

    def __init__(self, clip, device=None):
        self.clip = clip
        self.clip_name = single_text_encoder_name(clip)
        self.patcher = clip.patcher.clone()
        with torch.inference_mode(True):
            comfy.model_management.load_models_gpu([self.patcher], force_full_load=True)
        self.encoder = getattr(clip.cond_stage_model, self.clip_name)  # SDClipModel
        self.device = torch.device(device or self.patcher.load_device)
        text_model = self.encoder.transformer.text_model
        self.num_layers = len(text_model.encoder.layers)
        default_layer, default_idx = self.encoder.options_default[:2]
        idx = clip.layer_idx if clip.layer_idx is not None else (default_idx if default_layer == "hidden" else None)
        if idx is None or abs(idx) > self.num_layers:
            self.used_layer, self.final_norm = self.num_layers - 1, True
        else:
            self.used_layer = idx % self.num_layers
            self.final_norm = self.used_layer == self.num_layers - 1 or bool(self.encoder.layer_norm_hidden_state)
        self.clip_skip = self.num_layers - 1 - self.used_layer
        self.params = {n: shared_view(p, self.device, torch.float32) for n, p in self.encoder.named_parameters()}
        self.buffers = {n: detached_copy(b, self.device) for n, b in self.encoder.named_buffers()}
        self._embedding_name = next(n for n in self.params if n.endswith("embeddings.token_embedding.weight"))
        self.token_embedding = _EmbeddingView(self.params[self._embedding_name])
        self.tokenizer_key = None
        tokens = clip.tokenize(PLACEHOLDER)
        self.tokenizer_key = next(iter(tokens)) if isinstance(tokens, dict) else None
        ids = [t for t, _ in self._first_chunk(tokens)]
        end = ids[-1]
        inner = [t for t in ids[1:] if t != end]
        if len(inner) != 1:
            raise BridgeError(f"the placeholder {PLACEHOLDER!r} is not a single token for this tokenizer")
        self.placeholder_id = inner[0]

    def _first_chunk(self, tokens):
        chunks = tokens[self.tokenizer_key] if self.tokenizer_key is not None else tokens
        return chunks[0]

    def weights(self) -> dict[str, torch.Tensor]:
        return self.params

    def final_layer_names(self, n: int, kinds: tuple[str, ...] = ("self_attn", "mlp")) -> list[str]:
        if not 1 <= n <= self.used_layer + 1:
            raise ValueError(f"num_layers must be in [1, {self.used_layer + 1}] for this encoder "
                             f"(clip_skip={self.clip_skip}), got {n}")
        first = self.used_layer - n + 1
        return self._names(lambda i: first <= i <= self.used_layer, kinds)

    def layer_names(self, layers: list[int], kinds: tuple[str, ...]) -> list[str]:
        return self._names(lambda i: i in layers, kinds)

    def _names(self, pick, kinds):
        names = []
        for name, _ in self.encoder.named_modules():
            m = _LAYER_LINEAR.search(name)
            if m and pick(int(m.group(1))) and m.group(2).split(".")[0] in kinds:
                names.append(name)
        return names

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        rows = []
        for p in prompts:
            rows.append([int(t) for t, _ in self._first_chunk(self.clip.tokenize(p))])
        return torch.tensor(rows, device=self.device)

    def encode(self, prompts: list[str], weights: dict[str, torch.Tensor] | None = None,
               token_vectors: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states that condition the UNet (after the final layer norm, clip-skip aware),
        differentiable in `weights` and `token_vectors` (one vector per prompt, used where the
        prompt has the placeholder '*')."""
        ids = self.tokenize(prompts)
        params = {**self.params, **(weights or {})}
        text_model = self.encoder.transformer.text_model
        prefix = "transformer.text_model."
        sub = {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
        emb_w = sub["embeddings.token_embedding.weight"]
        x = torch.nn.functional.embedding(ids, emb_w)
        if token_vectors is not None:
            hit = (ids == self.placeholder_id).unsqueeze(-1)
            x = torch.where(hit, token_vectors.to(x)[:, None, :], x)
        x = x + sub["embeddings.position_embedding.weight"][: ids.shape[1]].to(x)
        mask = torch.full((ids.shape[1], ids.shape[1]), -torch.finfo(x.dtype).max, device=x.device).triu_(1)
        from comfy.ldm.modules.attention import optimized_attention_for_device

        attention = optimized_attention_for_device(x.device, mask=True, small_input=True)
        for i, layer in enumerate(text_model.encoder.layers[: self.used_layer + 1]):
            lw = {k[len(f"encoder.layers.{i}."):]: v for k, v in sub.items() if k.startswith(f"encoder.layers.{i}.")}
            x = functional_call(layer, lw, (x,), {"mask": mask, "optimized_attention": attention}, strict=False)
        if not self.final_norm:
            return x
        lnw = {k[len("final_layer_norm."):]: v for k, v in sub.items() if k.startswith("final_layer_norm.")}
        return functional_call(text_model.final_layer_norm, lnw, (x,), strict=False)

    def word_embedding(self, text: str) -> torch.Tensor:
        ids = [t for t in self.tokenize([text])[0].tolist()]
        end = ids[-1]
        inner = [t for t in ids[1:] if t != end] or [end]
        return self.params[self._embedding_name][torch.tensor(inner, device=self.device)].mean(0).detach().clone()


class _EmbeddingView:
    """What forget_text_encoder reads of `text.token_embedding`: its `.weight`."""

    def __init__(self, weight: torch.Tensor):
        self.weight = weight
