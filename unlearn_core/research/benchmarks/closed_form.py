"""`concept-unlearn bench real-size --closed-form`: the time of the closed-form edit at SD1.5 size.

No real checkpoint can be downloaded here, so the UNet has SD1.5's architecture (860M parameters,
the real_size benchmark's builder) and the text encoder CLIP-L's (123M parameters, 12 layers,
width 768, 77 positions), both with random weights: the time does not depend on the weights'
values. The tokenizer is a CLIP-format BPE built for the prompts' words (one token per word, as
CLIP's own vocabulary has for common words), so the prompts have realistic token counts. The
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
from .real_size import SD15_UNET

#: ten concepts with their superclasses, the kind a user erases (names, styles, characters, landmarks)
CONCEPTS = (("snoopy", "dog"), ("van gogh", "painting"), ("mickey mouse", "mouse"), ("pikachu", "animal"),
            ("claude monet", "painting"), ("spiderman", "man"), ("eiffel tower", "tower"),
            ("golden gate bridge", "bridge"), ("darth vader", "man"), ("hello kitty", "cat"))
RETAIN = ("a photo of a cat", "a painting by rembrandt", "a photo of a bridge at night")
CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
              num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)


@dataclass
class ClosedFormBenchConfig:
    concept_counts: tuple[int, ...] = (1, 10)
    padding_positions: tuple[int, ...] = field(default_factory=lambda: (ClosedFormConfig().padding_positions, -1))
    repeats: int = 2  # timed runs per row (the fastest is reported; the first run of all is an untimed warm-up)
    seed: int = 0


def _tokenizer(folder: str):
    from ..toyworld.tokenizer import build_tokenizer

    words = set()
    for text in list(GENERIC_PROMPTS) + list(RETAIN) + [w for pair in CONCEPTS for w in pair] + \
            ["a", "photo", "of", "drawing"]:
        words.update(re.findall(r"[a-z0-9]+", text.lower()))
    tok = build_tokenizer(words, folder)
    tok.model_max_length = 77
    return tok


def sd15_clip_l_adapter(seed: int = 0):
    """A DiffusersAdapter over an SD1.5-shaped UNet and a CLIP-L-shaped text encoder (random weights)."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from ...adapters.diffusers_adapter import DiffusersAdapter

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**SD15_UNET).eval()
    text_encoder = CLIPTextModel(CLIPTextConfig(**CLIP_L)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = _tokenizer(tmp)
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    pipe = SimpleNamespace(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, vae=torch.nn.Module(),
                           scheduler=scheduler)
    return DiffusersAdapter(pipe)


def run_closed_form_benchmark(cfg: ClosedFormBenchConfig, log=print) -> dict:
    t0 = time.time()
    adapter = sd15_clip_l_adapter(cfg.seed)
    build_seconds = time.time() - t0
    unet_params = sum(p.numel() for p in adapter.unet.parameters())
    text_params = sum(p.numel() for p in adapter.text_encoder.parameters())
    log(f"built an SD1.5-shaped UNet ({unet_params / 1e6:.0f}M) and a CLIP-L-shaped text encoder "
        f"({text_params / 1e6:.0f}M) in {build_seconds:.0f}s")
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
            row = {"concepts": n, "padding_positions": padding, "seconds": wall,
                   "seconds_text_encoding": result.seconds_data, "seconds_all_runs": [r[0] for r in runs],
                   "edited_weights": len(result.deltas),
                   "concept_tokens": sum(s["tokens"] for s in result.stats),
                   "residual": max(s["residual"] for s in result.stats),
                   "preservation_drift": result.stats[0]["preservation_drift"]}
            rows.append(row)
            log(f"{n} concept(s), padding positions {padding}: {wall:.1f}s end to end "
                f"({result.seconds_data:.1f}s text encoding), {row['concept_tokens']} concept tokens, "
                f"{len(result.deltas)} weights")
    # random weights: no model file to hash (as bench real-size's results say by the same key)
    return {"rows": rows, "settings": asdict(cfg), "unet_parameters": unet_params, "weights": "random",
            "text_encoder_parameters": text_params, "build_seconds": build_seconds,
            "torch_threads": torch.get_num_threads(), "target_seconds_10_concepts": 10.0}


def markdown_table(result: dict) -> str:
    lines = [f"Closed-form edit on an SD1.5-shaped UNet ({result['unet_parameters'] / 1e6:.0f}M parameters) with a "
             f"CLIP-L-shaped text encoder ({result['text_encoder_parameters'] / 1e6:.0f}M), random weights, CPU, "
             f"{result['torch_threads']} torch threads; fastest of {result['settings']['repeats']} runs:", "",
             "| concepts | padding positions | seconds end to end | of which text encoding | edited weights |",
             "|---|---|---|---|---|"]
    for r in result["rows"]:
        padding = "all (77)" if r["padding_positions"] < 0 else str(r["padding_positions"])
        lines.append(f"| {r['concepts']} | {padding} | {r['seconds']:.1f} | {r['seconds_text_encoding']:.1f} "
                     f"| {r['edited_weights']} |")
    return "\n".join(lines) + "\n"
