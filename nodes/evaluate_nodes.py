"""EvaluateUnlearning: a seeded before/after grid of the base and the unlearned model."""

from __future__ import annotations

import json

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import numpy as np
import torch
from comfy_api.latest import io, ui

from ..unlearn_core.comparison import before_after_grid, comparison_rows
from .comfy_types import CATEGORY, ConceptSetType
from .progress import should_cancel


def sample_image(model, clip, vae, prompt: str, seed: int, steps: int, cfg: float, sampler_name: str,
                 scheduler: str, size: int) -> torch.Tensor:
    """One image [1, H, W, 3], exactly as CLIPTextEncode (prompt and an empty negative) ->
    EmptyLatentImage (batch 1) -> KSampler(seed) -> VAEDecode would make it."""
    positive = clip.encode_from_tokens_scheduled(clip.tokenize(prompt))
    negative = clip.encode_from_tokens_scheduled(clip.tokenize(""))
    latent = torch.zeros([1, 4, size // 8, size // 8], device=comfy.model_management.intermediate_device())
    latent = comfy.sample.fix_empty_latent_channels(model, latent)
    noise = comfy.sample.prepare_noise(latent, seed)
    samples = comfy.sample.sample(model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent,
                                  denoise=1.0, disable_pbar=True, seed=seed)
    images = vae.decode(samples)
    return images.reshape(-1, *images.shape[-3:])


def _uint8(images: torch.Tensor) -> np.ndarray:
    return np.clip(images.cpu().float().numpy() * 255.0 + 0.5, 0, 255).astype(np.uint8)


class EvaluateUnlearning(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="EvaluateUnlearning",
            display_name="Evaluate Unlearning (before/after grid)",
            category=CATEGORY,
            is_output_node=True,
            description="Renders the same prompts with the base and the unlearned model side by side: for each "
                        "erased concept its prompt and a held-out paraphrase (a rewording attack), then the retain "
                        "prompts. Image i of every row uses seed + i, so each cell is what KSampler (batch 1, "
                        "empty negative prompt) gives with that seed.",
            inputs=[
                io.Model.Input("base_model", tooltip="The model before unlearning (the 'before' column)."),
                io.Clip.Input("base_clip", tooltip="The text encoder before unlearning."),
                io.Model.Input("unlearned_model", tooltip="The model after unlearning (the 'after' column)."),
                io.Vae.Input("vae", tooltip="Decodes the samples of both models."),
                ConceptSetType.Input("concept_set", tooltip="The concepts that were erased and the retain prompts "
                                                            "(Load Concept Set); one grid row per prompt."),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1,
                             tooltip="Seed of the first image of every row; image i uses seed + i."),
                io.Int.Input("steps", default=20, min=1, max=200, tooltip="Sampler steps per image."),
                io.Float.Input("cfg", default=7.0, min=0.0, max=30.0, step=0.5,
                               tooltip="Classifier-free guidance scale."),
                io.Int.Input("images_per_prompt", default=2, min=1, max=16,
                             tooltip="Images per prompt and model (grid columns per half)."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default="euler",
                               tooltip="Sampler, as in KSampler."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="normal",
                               tooltip="Noise schedule, as in KSampler."),
                io.Int.Input("resolution", default=512, min=64, max=2048, step=64,
                             tooltip="Side of the square images in pixels (512 for SD1.x, 768 for SD2.x 768-v)."),
                io.Clip.Input("unlearned_clip", optional=True,
                              tooltip="The text encoder after unlearning; leave empty when only the UNet was "
                                      "edited (the base CLIP is used)."),
            ],
            outputs=[
                io.Image.Output(display_name="grid", tooltip="Rows: prompts (labelled); left half before, right "
                                                             "half after."),
                io.Image.Output(display_name="before", tooltip="The base model's images, row by row."),
                io.Image.Output(display_name="after", tooltip="The unlearned model's images, row by row."),
                io.String.Output(display_name="rows", tooltip="JSON: each row's kind (erased, paraphrase, kept), "
                                                              "prompt and seeds."),
            ],
        )

    @classmethod
    def execute(cls, base_model, base_clip, unlearned_model, vae, concept_set, seed, steps, cfg, images_per_prompt,
                sampler_name, scheduler, resolution, unlearned_clip=None) -> io.NodeOutput:
        rows = comparison_rows(concept_set)
        seeds = [seed + i for i in range(images_per_prompt)]
        bar = comfy.utils.ProgressBar(2 * len(rows) * images_per_prompt)
        halves = []
        after_clip = base_clip if unlearned_clip is None else unlearned_clip
        for model, clip in ((base_model, base_clip), (unlearned_model, after_clip)):
            images = []
            for _, prompt in rows:
                for s in seeds:
                    should_cancel()
                    images.append(sample_image(model, clip, vae, prompt, s, steps, cfg, sampler_name, scheduler,
                                               resolution))
                    bar.update(1)
            halves.append(torch.cat(images))
        before, after = halves
        labels = [f"{kind}: {prompt}" for kind, prompt in rows]
        grid = before_after_grid(_uint8(before), _uint8(after), rows=len(rows), labels=labels, scale=1)
        grid_t = torch.from_numpy(np.asarray(grid, dtype=np.float32) / 255.0)[None]
        report = json.dumps([{"kind": k, "prompt": p, "seeds": seeds} for k, p in rows], indent=1)
        return io.NodeOutput(grid_t, before, after, report, ui=ui.PreviewImage(grid_t, cls=cls))
