"""FewShotTextEncoderForget: forget a concept in the text encoder from 4-5 example images."""

from __future__ import annotations

import time

import torch
from comfy_api.latest import io

from ..unlearn_core.text_encoder_unlearning import forget_text_encoder, planned_steps
from .comfy_bridge import (BridgeError, ComfyClipTextAdapter, ComfyDenoiserAdapter, out_of_place_clip_layers,
                           single_text_encoder_name, training_mode)
from .comfy_types import CATEGORY, ConceptSetType, record
from .config_widgets import TEXT_ENCODER_WIDGETS
from .progress import Progress, should_cancel
from .reporting import plot_stats
from .unet_nodes import with_denoiser_latents


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
        w = TEXT_ENCODER_WIDGETS  # inputs that set a config field take its default and help from the dataclass
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
                io.Int.Input("num_layers", min=1, max=48, default=w.default("num_layers"),
                             tooltip=w.tooltip("num_layers")),
                io.Int.Input("lora_rank", min=1, max=256, default=w.default("lora_rank"),
                             tooltip=w.tooltip("lora_rank")),
                io.Float.Input("lora_alpha", min=0.01, max=1024.0, step=0.5, default=w.default("lora_alpha"),
                               tooltip=w.tooltip("lora_alpha")),
                io.Int.Input("ti_steps", min=0, max=10000, default=w.default("ti_steps"),
                             tooltip=w.tooltip("ti_steps")),
                io.Float.Input("ti_learning_rate", min=1e-7, max=1.0, step=1e-4, round=False,
                               default=w.default("ti_learning_rate"), tooltip=w.tooltip("ti_learning_rate")),
                io.Int.Input("steps", min=1, max=100000, default=w.default("steps"), tooltip=w.tooltip("steps")),
                io.Float.Input("learning_rate", min=1e-8, max=1.0, step=1e-4, round=False,
                               default=w.default("learning_rate"), tooltip=w.tooltip("learning_rate")),
                io.Int.Input("batch_size", min=1, max=64, default=w.default("batch_size"),
                             tooltip=w.tooltip("batch_size")),
                io.Float.Input("forget_weight", min=0.0, max=100.0, step=0.1, default=w.default("forget_weight"),
                               tooltip=w.tooltip("forget_weight")),
                io.Float.Input("ti_weight", min=0.0, max=100.0, step=0.1, default=w.default("ti_weight"),
                               tooltip=w.tooltip("ti_weight")),
                io.Float.Input("preserve_weight", min=0.0, max=100.0, step=0.1, default=w.default("preserve_weight"),
                               tooltip=w.tooltip("preserve_weight")),
                io.Boolean.Input("include_learned_token", default=w.default("include_learned_token"),
                                 tooltip=w.tooltip("include_learned_token")),
                io.Int.Input("adversarial_interval", min=0, max=10000, default=w.default("adversarial_interval"),
                             tooltip=w.tooltip("adversarial_interval")),
                io.Int.Input("resolution", default=512, min=64, max=2048, step=64,
                             tooltip="Side in pixels the example images are resized (centre crop) to."),
                io.Int.Input("seed", min=0, max=2**31 - 1, default=w.default("seed"), tooltip=w.tooltip("seed")),
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
        # the widget values by input name (locals() holds exactly the arguments here)
        config = TEXT_ENCODER_WIDGETS.build(locals())
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
