"""FewShotTextEncoderForget: forget a concept in the text encoder from 4-5 example images."""

from __future__ import annotations

import time

import torch
from comfy_api.latest import io

from ..unlearn_core.text_encoder_unlearning import TextEncoderForgetConfig, forget_text_encoder, planned_steps
from .comfy_bridge import (BridgeError, ComfyClipTextAdapter, ComfyDenoiserAdapter, out_of_place_clip_layers,
                           single_text_encoder_name, training_mode)
from .comfy_types import CATEGORY, ConceptSetType, record
from .progress import Progress, should_cancel
from .reporting import plot_stats
from .unet_nodes import with_denoiser_latents

# the node's defaults are the library's, so the two cannot drift apart
DEFAULTS = TextEncoderForgetConfig()


def text_encoder_report(result, clip_name: str, used_layer: int) -> str:
    lines = ["Few-shot text-encoder forgetting (textual inversion + LoRA on the final layers)"]
    for c in result.concepts:
        lines.append(f"  forgotten: {c['name']!r} -> {c['superclass']!r}")
    cfg = result.config
    lines.append(f"  encoder: {clip_name}, conditioning layer {used_layer}, LoRA on the last {cfg['num_layers']} "
                 f"layer(s) ({len(result.lora)} linear layers), rank {cfg['lora_rank']}, alpha {cfg['lora_alpha']}")
    lines.append(f"  weights: forget {cfg['forget_weight']}, textual inversion {cfg['ti_weight']}, "
                 f"preserve {cfg['preserve_weight']}; learned token used: {cfg['include_learned_token']}")
    rounds = (f"every {cfg['adversarial_interval']} LoRA steps, {cfg['adversarial_steps']} step(s) x "
              f"{cfg['adversarial_batch_size']} images" if cfg["adversarial_interval"] else "off")
    lines.append(f"  textual inversion: {cfg['ti_steps']} step(s) x {cfg['ti_batch_size']} images; adversarial "
                 f"rounds: {rounds}; LoRA: {cfg['steps']} step(s) x {cfg['batch_size']} prompts per concept")
    lines.append(f"  time: {result.seconds:.1f} s ({result.seconds_per_concept:.1f} s per concept)")
    lora_rows = [s for s in result.stats if s.get("stage") == "lora"]
    if lora_rows:
        last = lora_rows[-1]
        lines.append(f"  final loss {last['loss']:.4g}: " + ", ".join(
            f"{k[:-5]} {v:.4g}" for k, v in last.items() if k.endswith("_loss")))
    for note in result.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


class FewShotTextEncoderForget(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FewShotTextEncoderForget",
            display_name="Few-Shot Text Encoder Forget",
            category=CATEGORY,
            description="Forgets concepts in the text encoder only, from 4-5 example images per concept: learns "
                        "the concept as a token (textual inversion), then trains a LoRA on the final encoder "
                        "layers so the concept's words and the learned token map to the superclass, while "
                        "other prompts keep their encoding. UNet and VAE stay frozen; the input CLIP is unchanged.",
            inputs=[
                io.Clip.Input("clip", tooltip="The text encoder to edit (SD1.x / SD2.x; SDXL's two encoders are not "
                                              "supported: use Dynamic Mask Unlearn). Clip skip set with "
                                              "'CLIP Set Last Layer' is respected."),
                io.Model.Input("model", tooltip="The diffusion model (frozen), used by the textual-inversion terms."),
                io.Vae.Input("vae", tooltip="The VAE (frozen), used to encode the example images."),
                ConceptSetType.Input("concept_set", tooltip="Concepts with 4-5 example images each "
                                                            "(Load Concept Set with 'images' connected)."),
                io.Int.Input("num_layers", default=DEFAULTS.num_layers, min=1, max=48,
                             tooltip="How many final encoder layers (up to the conditioning layer) get the LoRA; "
                                     "an encoder with fewer gets all of its layers."),
                io.Int.Input("lora_rank", default=DEFAULTS.lora_rank, min=1, max=256, tooltip="Rank of the LoRA."),
                io.Float.Input("lora_alpha", default=DEFAULTS.lora_alpha, min=0.01, max=1024.0, step=0.5,
                               tooltip="LoRA scale numerator (scale = alpha / rank)."),
                io.Int.Input("ti_steps", default=DEFAULTS.ti_steps, min=0, max=10000,
                             tooltip="Textual-inversion steps learning the concept's token from the images."),
                io.Float.Input("ti_learning_rate", default=DEFAULTS.ti_lr, min=1e-7, max=1.0, step=1e-4, round=False,
                               tooltip="Learning rate of the textual inversion."),
                io.Int.Input("steps", default=DEFAULTS.steps, min=1, max=100000,
                             tooltip="LoRA training steps per concept."),
                io.Float.Input("learning_rate", default=DEFAULTS.lr, min=1e-8, max=1.0, step=1e-4, round=False,
                               tooltip="Learning rate of the LoRA."),
                io.Int.Input("batch_size", default=DEFAULTS.batch_size, min=1, max=64,
                             tooltip="Prompts per LoRA step (each with a word prompt and a learned-token "
                                     "prompt)."),
                io.Float.Input("forget_weight", default=DEFAULTS.forget_weight, min=0.0, max=100.0, step=0.1,
                               tooltip="Weight of the embedding-space term mapping the concept onto the superclass."),
                io.Float.Input("ti_weight", default=DEFAULTS.ti_weight, min=0.0, max=100.0, step=0.1,
                               tooltip="Weight of the noise-space term on the example images (the UNet's "
                                       "prediction under the concept is pulled onto the superclass's)."),
                io.Float.Input("preserve_weight", default=DEFAULTS.preserve_weight, min=0.0, max=100.0, step=0.1,
                               tooltip="Weight of the term keeping retained prompts' encodings unchanged."),
                io.Boolean.Input("include_learned_token", default=DEFAULTS.include_learned_token,
                                 tooltip="Also forget the learned token (resists textual-inversion recovery)."),
                io.Int.Input("adversarial_interval", default=DEFAULTS.adversarial_interval, min=0,
                             max=10000,
                             tooltip="Every N LoRA steps, re-learn an attacker's token against the encoder as it "
                                     "is now and forget that too (adversarial training against textual-inversion "
                                     "recovery; costs extra steps). 0 = off."),
                io.Int.Input("resolution", default=512, min=64, max=2048, step=64,
                             tooltip="Side in pixels the example images are resized (centre crop) to."),
                io.Int.Input("seed", default=DEFAULTS.seed, min=0, max=2**31 - 1,
                             tooltip="Seed of the run (reproducible)."),
                # last and optional, so graphs saved before it existed still load and validate
                io.Boolean.Input("fast", default=False, optional=True,
                                 tooltip="Half the textual-inversion steps (ti_steps and the adversarial rounds) at "
                                         "twice the images per step: the same images seen in less time."),
            ],
            hidden=[io.Hidden.unique_id],  # the node's id, for its progress text
            outputs=[
                io.Clip.Output(display_name="clip", tooltip="A copy of the CLIP with the concept forgotten "
                                                            "(weight patches over the input)."),
                io.String.Output(display_name="report", tooltip="What was forgotten, settings, losses and time."),
                io.Image.Output(display_name="plot", tooltip="Loss terms over training."),
            ],
        )

    @classmethod
    def execute(cls, clip, model, vae, concept_set, num_layers, lora_rank, lora_alpha, ti_steps, ti_learning_rate,
                steps, learning_rate, batch_size, forget_weight, ti_weight, preserve_weight, include_learned_token,
                adversarial_interval, resolution, seed, fast=False) -> io.NodeOutput:
        config = TextEncoderForgetConfig(num_layers=num_layers, lora_rank=lora_rank, lora_alpha=lora_alpha,
                                         ti_steps=ti_steps, ti_lr=ti_learning_rate, steps=steps, lr=learning_rate,
                                         batch_size=batch_size, forget_weight=forget_weight, ti_weight=ti_weight,
                                         preserve_weight=preserve_weight,
                                         include_learned_token=include_learned_token,
                                         adversarial_interval=adversarial_interval, seed=seed)
        if fast:
            config = config.fast()
        config.validate()
        concept_set.validate(check_files=True)
        single_text_encoder_name(clip)  # refuses SDXL's two encoders before any model is loaded
        for c in concept_set.concepts:
            if c.latents is None and not c.images:
                raise BridgeError(f"concept {c.name!r} has no example images: few-shot forgetting needs 4-5 images "
                                  "of each concept (connect 'images' or 'latents' on Load Concept Set)")
        t0 = time.time()
        with training_mode():
            progress = Progress(0, planned_steps(config, len(concept_set.concepts)), node_id=cls.hidden.unique_id)
            progress.phase("preparing the model (copying weights, encoding the example images)")
            unet = ComfyDenoiserAdapter(model, clip, vae, resolution=resolution, should_cancel=should_cancel)
            text = ComfyClipTextAdapter(clip, device=unet.device)
            cs = with_denoiser_latents(concept_set, unet)
            with out_of_place_clip_layers(text.encoder):
                result = forget_text_encoder(text, unet, cs, config, progress=progress.train_step,
                                             should_cancel=should_cancel)
            del unet
        out = clip.clone()
        patches = {f"{text.clip_name}.{m}.weight": ("diff", ((b @ a).detach().cpu().float().contiguous(),))
                   for m, (a, b) in result.lora.items()}
        accepted = set(out.add_patches(patches, 1.0, 1.0))
        if accepted != set(patches):
            raise BridgeError(f"{len(set(patches) - accepted)} LoRA layer(s) do not match this CLIP")
        record(out.patcher, {**result.metadata(), "seconds": round(time.time() - t0, 2), "edited": "text_encoder"})
        report = text_encoder_report(result, text.clip_name, text.used_layer)
        plot = torch.from_numpy(plot_stats(result.stats)).float().div(255.0).unsqueeze(0)
        return io.NodeOutput(out, report, plot)
