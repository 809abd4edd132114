"""`concept-unlearn bench real-size`: the cost of Dynamic-Mask unlearning on an SD1.5-size UNet.

No real checkpoint can be downloaded here, so the UNet has SD1.5's architecture (860M
parameters, cross-attention width 768) and random weights: the time and memory of a training
step do not depend on the weights' values. The training data are random latents and random
conditioning of the right shapes, so the measurement covers the trainer (the concept-aware,
alignment and distillation batches, the teacher pass, the mask and the optimizer), not the
image generation that precedes it. Each row (`bench_rows`) is timed in the same process against a plain
fine-tune of the same weights, and reported as a ratio to it. Runs on the CPU, or on a GPU with
--device cuda.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from types import SimpleNamespace

import torch

from ...concept_set import Concept, ConceptSet
from ...masks import MaskConfig
from ...methods import method_config
from ...training_data import ConceptData, RetainData
from ...unet_unlearning import UnetUnlearnConfig, unlearn_unet
from .memory import PeakMemory

SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)

#: CLIP ViT-L/14's text encoder (SD1.5's, and SDXL's first)
CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
              num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
#: SDXL base 1.0's UNet (2.6B parameters, context 2048 = CLIP-L 768 + OpenCLIP-G 1280), text encoders and VAE
SDXL = {
    "unet": dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
                 use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816),
    "clip_l": CLIP_L,
    "clip_g": dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                   num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu", projection_dim=1280),
    "vae": dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                layers_per_block=2, sample_size=1024, scaling_factor=0.13025),
}
#: the same structure at toy size, for tests (context 64 = 32 + 32; pooled 32 + 6 size ids x 8)
TINY_SDXL = {
    "unet": dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), transformer_layers_per_block=(1, 2),
                 attention_head_dim=(2, 4), cross_attention_dim=64, norm_num_groups=8, use_linear_projection=True,
                 addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=80),
    "clip_l": dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                   max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=32),
    "clip_g": dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                   max_position_embeddings=77, hidden_act="gelu", projection_dim=32),
    "vae": dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64),
                down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                layers_per_block=1, norm_num_groups=8, sample_size=32),
}


def clip_format_tokenizer(words, folder):
    """A CLIP-format BPE tokenizer for `words` (one token per word, as CLIP's vocabulary has for common
    words) with CLIP's 77 positions, written to `folder`."""
    from ..toyworld.tokenizer import build_tokenizer

    tokenizer = build_tokenizer(set(words), str(folder))
    tokenizer.model_max_length = 77
    return tokenizer


def random_sdxl_pipeline(shapes: dict, words, tokenizer_dir, seed: int = 0):
    """A StableDiffusionXLPipeline of the given `shapes` (SDXL or TINY_SDXL) with random weights and a
    CLIP-format tokenizer built for `words` (one token per word, as CLIP's vocabulary has for common
    words), written to `tokenizer_dir`."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = clip_format_tokenizer(words, tokenizer_dir)
    torch.manual_seed(seed)
    vocab = max(len(tokenizer), shapes["clip_l"].get("vocab_size", 0))
    clip_l = CLIPTextModel(CLIPTextConfig(**{**shapes["clip_l"], "vocab_size": vocab})).eval()
    clip_g = CLIPTextModelWithProjection(CLIPTextConfig(**{**shapes["clip_g"], "vocab_size": vocab})).eval()
    unet = UNet2DConditionModel(**shapes["unet"]).eval()
    vae = AutoencoderKL(**shapes["vae"]).eval()
    scheduler = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                       timestep_spacing="leading", steps_offset=1)
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=clip_l, text_encoder_2=clip_g, tokenizer=tokenizer,
                                     tokenizer_2=tokenizer, unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@dataclass
class RealSizeBenchConfig:
    resolution: int = 512  # pixels; latents are resolution / 8
    steps: int = 4  # timed training steps (after one untimed warm-up run of 1 step)
    batch_size: int = 2  # the paper's
    device: str = "cpu"
    seed: int = 0
    distillation_bank: int = 50  # draws banked per concept in the dynamic_mask_bank row (a tenth of 500 steps)


def sd15_shaped_adapter(cfg: RealSizeBenchConfig):
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from ...adapters.diffusers_adapter import DiffusersAdapter

    torch.manual_seed(cfg.seed)
    unet = UNet2DConditionModel(**{**SD15_UNET, "sample_size": cfg.resolution // 8}).to(cfg.device).eval()
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    pipe = SimpleNamespace(unet=unet, text_encoder=torch.nn.Module(), tokenizer=None, vae=torch.nn.Module(),
                           scheduler=scheduler)
    adapter = DiffusersAdapter(pipe, device=cfg.device)
    # No text encoder: every conditioning is a random 77 x 768 tensor, the empty prompt included.
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    empty = torch.randn(1, 77, 768, generator=gen).to(cfg.device)
    adapter.encode_prompts = lambda prompts: empty.expand(len(prompts), -1, -1)
    return adapter


def _random_data(adapter, n: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    shape = (n, *adapter.latent_shape)

    def rand(*s):
        return torch.randn(*s, generator=gen).to(adapter.device)

    concept = Concept("concept", "superclass")
    data = ConceptData(concept, rand(*shape), rand(*shape), rand(2, 77, 768), rand(2, 77, 768))
    retain = RetainData(rand(*shape), rand(n, 77, 768))
    return concept, data, retain


def bench_rows(cfg: RealSizeBenchConfig) -> tuple[tuple[str, str, dict], ...]:
    """(row name, method, overrides): a plain fine-tune of the same weights (the concept-aware loss and
    its alignment term: no mask, no distillation) as the reference, the released code's recipe,
    and ours with the distillation reference run every step, with it banked once per concept, and
    banked with the student's rows run one batch per pass (`student_chunk_rows`)."""
    return (("plain_finetune", "finetune", {"loss.distillation_weight": 0.0}),
            ("paper_code", "paper_code", {}),
            ("dynamic_mask", "dynamic_mask", {}),
            ("dynamic_mask_bank", "dynamic_mask", {"distillation_bank": cfg.distillation_bank}),
            ("dynamic_mask_lean", "dynamic_mask", {"distillation_bank": cfg.distillation_bank,
                                                   "student_chunk_rows": cfg.batch_size}))


def row_config(method: str, overrides: dict, batch_size: int = 2, seed: int = 0, steps: int = 4) -> UnetUnlearnConfig:
    """The trainer's configuration of a row: `method`'s settings, then `overrides` (dotted paths)."""
    from ...config_help import set_value

    base = UnetUnlearnConfig(batch_size=batch_size, seed=seed, mask=MaskConfig(warmup_steps=1, update_interval=100))
    tc = method_config(method, base)
    for path, value in overrides.items():
        set_value(tc, path, value)
    tc.steps_per_concept = steps
    return tc


def run_real_size_benchmark(cfg: RealSizeBenchConfig, log=print) -> dict:
    adapter = sd15_shaped_adapter(cfg)
    params = sum(p.numel() for p in adapter.unet.parameters())
    concept, data, retain = _random_data(adapter, 4, cfg.seed)
    concept_set = ConceptSet([concept], ["retained prompt"])
    rows = []
    for name, method, overrides in bench_rows(cfg):
        tc = row_config(method, overrides, cfg.batch_size, cfg.seed, cfg.steps)
        warmup = replace(tc, steps_per_concept=1, distillation_bank=min(tc.distillation_bank, 1))
        unlearn_unet(adapter, concept_set, warmup, data=[data], retain=retain)  # allocations, kernels
        if cfg.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        with PeakMemory() as mem:
            t0 = time.time()
            result = unlearn_unet(adapter, concept_set, tc, data=[data], retain=retain)
            wall = time.time() - t0
        peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if cfg.device.startswith("cuda") else None
        per_step = result.seconds_per_step
        # what is not a step: the bank's reference passes, once per concept
        setup = max(0.0, wall - sum(r["seconds"] for r in result.stats))
        row = {"method": name, "trainer_method": method, "overrides": overrides, "seconds_per_step": per_step,
               "seconds_setup": setup, "wall_seconds": wall,
               "minutes_per_concept_500_steps": (per_step * 500 + setup) / 60, "peak_cpu_heap_mb": mem.peak_mb,
               "peak_gpu_mb": peak_gpu}
        rows.append(row)
        log(f"{name}: {per_step:.2f} s/step (+{setup:.1f}s setup) -> {row['minutes_per_concept_500_steps']:.0f} min "
            f"per concept at 500 steps; peak heap +{mem.peak_mb:.0f} MB" + (f", GPU {peak_gpu:.0f} MB" if peak_gpu else ""))
    plain = rows[0]
    for row in rows:
        row["step_ratio_to_plain"] = row["seconds_per_step"] / plain["seconds_per_step"]
        row["memory_ratio_to_plain"] = row["peak_cpu_heap_mb"] / max(plain["peak_cpu_heap_mb"], 1e-9)
        if peak_gpu is not None:
            row["gpu_memory_ratio_to_plain"] = row["peak_gpu_mb"] / plain["peak_gpu_mb"]
    # no model file: tests/test_bench_results.py exempts these results from the toy model's hash by this key
    return {"rows": rows, "settings": asdict(cfg), "unet_parameters": params, "weights": "random",
            "torch_threads": torch.get_num_threads()}


def markdown_table(result: dict) -> str:
    s = result["settings"]
    lines = [f"SD1.5-shaped UNet ({result['unet_parameters'] / 1e6:.0f}M parameters, random weights), "
             f"{s['resolution']}×{s['resolution']} px, batch {s['batch_size']}, device {s['device']}, "
             f"{result['torch_threads']} torch threads, {s['steps']} timed steps:", "",
             "| method | s / step | × plain fine-tune | setup s | min per concept (500 steps) | peak heap MB "
             "| × plain | peak GPU MB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        gpu = "–" if r["peak_gpu_mb"] is None else f"{r['peak_gpu_mb']:.0f}"
        lines.append(f"| {r['method']} | {r['seconds_per_step']:.2f} | {r['step_ratio_to_plain']:.2f} "
                     f"| {r['seconds_setup']:.1f} | {r['minutes_per_concept_500_steps']:.0f} "
                     f"| {r['peak_cpu_heap_mb']:.0f} | {r['memory_ratio_to_plain']:.2f} | {gpu} |")
    return "\n".join(lines) + "\n"
