"""`concept-unlearn bench real-size`: the cost of Dynamic-Mask unlearning on an SD1.5-size UNet.

No real checkpoint can be downloaded here, so the UNet has SD1.5's architecture (860M
parameters, cross-attention width 768) and random weights: the time and memory of a training
step do not depend on the weights' values. The training data are random latents and random
conditioning of the right shapes, so the measurement covers the trainer (the concept-aware,
alignment and distillation batches, the teacher pass, the mask and the optimizer), not the
image generation that precedes it. Runs on the CPU, or on a GPU with --device cuda.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
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


@dataclass
class RealSizeBenchConfig:
    resolution: int = 512  # pixels; latents are resolution / 8
    steps: int = 4  # timed training steps (after one untimed warm-up run of 1 step)
    batch_size: int = 2  # the paper's
    device: str = "cpu"
    seed: int = 0


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


def run_real_size_benchmark(cfg: RealSizeBenchConfig, log=print) -> dict:
    adapter = sd15_shaped_adapter(cfg)
    params = sum(p.numel() for p in adapter.unet.parameters())
    concept, data, retain = _random_data(adapter, 4, cfg.seed)
    concept_set = ConceptSet([concept], ["retained prompt"])
    rows = []
    for method in ("dynamic_mask", "paper_code"):
        base = UnetUnlearnConfig(batch_size=cfg.batch_size, seed=cfg.seed, mask=MaskConfig(warmup_steps=1, update_interval=100))
        tc = method_config(method, base)
        tc.steps_per_concept = 1
        unlearn_unet(adapter, concept_set, tc, data=[data], retain=retain)  # warm-up: allocations, kernels
        tc.steps_per_concept = cfg.steps
        if cfg.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        with PeakMemory() as mem:
            t0 = time.time()
            result = unlearn_unet(adapter, concept_set, tc, data=[data], retain=retain)
            wall = time.time() - t0
        peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if cfg.device.startswith("cuda") else None
        per_step = result.seconds_per_step
        row = {"method": method, "seconds_per_step": per_step, "wall_seconds": wall,
               "minutes_per_concept_500_steps": per_step * 500 / 60, "peak_cpu_heap_mb": mem.peak_mb,
               "peak_gpu_mb": peak_gpu}
        rows.append(row)
        log(f"{method}: {per_step:.2f} s/step -> {row['minutes_per_concept_500_steps']:.0f} min per concept at 500 steps; "
            f"peak heap +{mem.peak_mb:.0f} MB" + (f", GPU {peak_gpu:.0f} MB" if peak_gpu else ""))
    # no model file: tests/test_bench_results.py exempts these results from the toy model's hash by this key
    return {"rows": rows, "settings": asdict(cfg), "unet_parameters": params, "weights": "random",
            "torch_threads": torch.get_num_threads()}


def markdown_table(result: dict) -> str:
    s = result["settings"]
    lines = [f"SD1.5-shaped UNet ({result['unet_parameters'] / 1e6:.0f}M parameters, random weights), "
             f"{s['resolution']}×{s['resolution']} px, batch {s['batch_size']}, device {s['device']}, "
             f"{result['torch_threads']} torch threads, {s['steps']} timed steps:", "",
             "| method | s / step | min per concept (500 steps) | peak heap MB | peak GPU MB |",
             "|---|---|---|---|---|"]
    for r in result["rows"]:
        gpu = "–" if r["peak_gpu_mb"] is None else f"{r['peak_gpu_mb']:.0f}"
        lines.append(f"| {r['method']} | {r['seconds_per_step']:.2f} | {r['minutes_per_concept_500_steps']:.0f} "
                     f"| {r['peak_cpu_heap_mb']:.0f} | {gpu} |")
    return "\n".join(lines) + "\n"
