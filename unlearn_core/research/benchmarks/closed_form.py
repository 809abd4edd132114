"""`concept-unlearn bench real-size --closed-form`: the time of the closed-form edit at SD1.5 and SDXL size.

No real checkpoint can be downloaded here, so the models have the real architectures with random
weights: the time does not depend on the weights' values. SD1.5: its UNet (860M parameters, the
real_size benchmark's builder) and CLIP-L (123M parameters, 12 layers, width 768, 77 positions).
SDXL: base 1.0's UNet (2.6B parameters, 140 cross-attention key/value weights of input width
2048) and both its text encoders, CLIP-L and OpenCLIP-G (695M parameters, 32 layers, width 1280),
run through the diffusers adapter's SDXL path as a StableDiffusionXLPipeline. The tokenizer is a
CLIP-format BPE built for the prompts' words (one token per word, as CLIP's own vocabulary has for
common words), so the prompts have realistic token counts. The
timed span is `closed_form_edit` from the prompts to the deltas: tokenizing, text encoding of
every concept, superclass, retain and generic prompt, and the solve.
"""

from __future__ import annotations

import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace

import torch

from ...closed_form import GENERIC_PROMPTS, ClosedFormConfig, closed_form_edit
from ...concept_set import Concept, ConceptSet
from .real_size import CLIP_L, SD15_UNET, SDXL, clip_format_tokenizer, random_sdxl_pipeline

#: ten concepts with their superclasses, the kind a user erases (names, styles, characters, landmarks)
CONCEPTS = (("snoopy", "dog"), ("van gogh", "painting"), ("mickey mouse", "mouse"), ("pikachu", "animal"),
            ("claude monet", "painting"), ("spiderman", "man"), ("eiffel tower", "tower"),
            ("golden gate bridge", "bridge"), ("darth vader", "man"), ("hello kitty", "cat"))
RETAIN = ("a photo of a cat", "a painting by rembrandt", "a photo of a bridge at night")
MODELS = ("sd15", "sdxl")


@dataclass
class ClosedFormBenchConfig:
    models: tuple[str, ...] = MODELS
    concept_counts: tuple[int, ...] = (1, 10)
    padding_positions: tuple[int, ...] = field(default_factory=lambda: (ClosedFormConfig().padding_positions, -1))
    repeats: int = 2  # timed runs per row (the fastest is reported; the first run of all is an untimed warm-up)
    seed: int = 0


def _words() -> set[str]:
    words = set()
    for text in list(GENERIC_PROMPTS) + list(RETAIN) + [w for pair in CONCEPTS for w in pair] + \
            ["a", "photo", "of", "drawing"]:
        words.update(re.findall(r"[a-z0-9]+", text.lower()))
    return words


def sd15_clip_l_adapter(seed: int = 0):
    """A DiffusersAdapter over an SD1.5-shaped UNet and a CLIP-L-shaped text encoder (random weights)."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from ...adapters.diffusers_adapter import DiffusersAdapter

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**SD15_UNET).eval()
    text_encoder = CLIPTextModel(CLIPTextConfig(**CLIP_L)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = clip_format_tokenizer(_words(), tmp)
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    pipe = SimpleNamespace(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, vae=torch.nn.Module(),
                           scheduler=scheduler)
    return DiffusersAdapter(pipe)


def sdxl_adapter(seed: int = 0):
    """A DiffusersAdapter over an SDXL-shaped StableDiffusionXLPipeline (random weights)."""
    from ...adapters.diffusers_adapter import DiffusersAdapter

    with tempfile.TemporaryDirectory() as tmp:
        pipe = random_sdxl_pipeline(SDXL, _words(), tmp, seed)
    return DiffusersAdapter(pipe)


def _time_model(model: str, cfg: ClosedFormBenchConfig, log) -> tuple[dict, list[dict]]:
    t0 = time.time()
    adapter = sd15_clip_l_adapter(cfg.seed) if model == "sd15" else sdxl_adapter(cfg.seed)
    build_seconds = time.time() - t0
    encoders = [adapter.text_encoder] + ([adapter.text_encoder_2] if adapter.text_encoder_2 is not None else [])
    info = {"unet_parameters": sum(p.numel() for p in adapter.unet.parameters()),
            "text_encoder_parameters": sum(p.numel() for e in encoders for p in e.parameters()),
            "build_seconds": build_seconds}
    log(f"{model}: built a UNet of {info['unet_parameters'] / 1e6:.0f}M parameters and text encoder(s) of "
        f"{info['text_encoder_parameters'] / 1e6:.0f}M in {build_seconds:.0f}s")
    closed_form_edit(adapter, ConceptSet([Concept(*CONCEPTS[0])]))  # warm-up: allocations, kernels
    rows = []
    for n in cfg.concept_counts:
        cs = ConceptSet([Concept(name, sup) for name, sup in CONCEPTS[:n]], list(RETAIN))
        for padding in cfg.padding_positions:
            config = ClosedFormConfig(padding_positions=padding)
            runs = []
            for _ in range(cfg.repeats):
                start = time.time()
                result = closed_form_edit(adapter, cs, config)
                runs.append((time.time() - start, result))
            wall, result = min(runs, key=lambda r: r[0])
            row = {"model": model, "concepts": n, "padding_positions": padding, "seconds": wall,
                   "seconds_text_encoding": result.seconds_data, "seconds_all_runs": [r[0] for r in runs],
                   "edited_weights": len(result.deltas),
                   "concept_tokens": sum(s["tokens"] for s in result.stats),
                   "residual": max(s["residual"] for s in result.stats),
                   "preservation_drift": result.stats[0]["preservation_drift"]}
            rows.append(row)
            log(f"{model}, {n} concept(s), padding positions {padding}: {wall:.1f}s end to end "
                f"({result.seconds_data:.1f}s text encoding), {row['concept_tokens']} concept tokens, "
                f"{len(result.deltas)} weights")
    return info, rows


def run_closed_form_benchmark(cfg: ClosedFormBenchConfig, log=print) -> dict:
    unknown = [m for m in cfg.models if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model shape {unknown[0]!r}; choose from {', '.join(MODELS)}")
    models, rows = {}, []
    for model in cfg.models:  # one at a time: the SDXL-shaped models take about 14 GB in fp32
        models[model], model_rows = _time_model(model, cfg, log)
        rows += model_rows
    # random weights: no model file to hash (as bench real-size's results say by the same key)
    return {"rows": rows, "settings": asdict(cfg), "models": models, "weights": "random",
            "unet_parameters": {m: info["unet_parameters"] for m, info in models.items()},
            "torch_threads": torch.get_num_threads(), "target_seconds_10_concepts": 10.0}


NAMES = {"sd15": "SD1.5-shaped UNet with a CLIP-L-shaped text encoder",
         "sdxl": "SDXL-shaped UNet with CLIP-L- and OpenCLIP-G-shaped text encoders"}


def markdown_table(result: dict) -> str:
    models = result["models"]
    lines = [f"Closed-form edit, random weights, CPU, {result['torch_threads']} torch threads; fastest of "
             f"{result['settings']['repeats']} runs; "
             + "; ".join(f"{m}: {NAMES[m]} ({info['unet_parameters'] / 1e6:.0f}M + "
                         f"{info['text_encoder_parameters'] / 1e6:.0f}M parameters)" for m, info in models.items())
             + ":", "",
             "| model | concepts | padding positions | seconds end to end | of which text encoding | edited weights |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        padding = "all (77)" if r["padding_positions"] < 0 else str(r["padding_positions"])
        lines.append(f"| {r['model']} | {r['concepts']} | {padding} | {r['seconds']:.1f} | "
                     f"{r['seconds_text_encoding']:.1f} | {r['edited_weights']} |")
    return "\n".join(lines) + "\n"
