"""`concept-unlearn demo`: erase concepts from the embedded toy model with both methods and show
before/after.

1. The UNet method (dynamic mask + concept-aware loss) erases two objects.
2. The few-shot text-encoder method erases a third object from five example images.

Writes to the output folder:
    before_after.png                 UNet method: rows = prompts (erased first, then retained), same
                                     seeds before and after
    unlearned/                       its delta, a LoRA, the merged diffusers model and a training report
    text_encoder_shots/              the five example images the text-encoder method learns from
    text_encoder_before_after.png    text-encoder method, laid out like before_after.png
    unlearned_text_encoder/          its LoRA (diffusers, ComfyUI and peft formats), learned token, merged
                                     model and report
    metrics.json                     accuracy per concept before and after, toy FID, timings, settings
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from ..adapters.clip_text_adapter import ClipTextAdapter
from ..adapters.diffusers_adapter import DiffusersAdapter
from .benchmarks.text_encoder import SIBLING_ANCHORS
from .benchmarks.unet import UnetBenchConfig, object_concept
from ..concept_set import Concept, ConceptSet
from ..comparison import before_after_grid
from .evaluation import SamplingConfig, evaluate, toy_prompt_sets
from ..forget import write_text_encoder_folder, write_unlearned_folder
from ..progress import ProgressReporter
from .toyworld import captions
from .toyworld.assets import load_toy_classifier, load_toy_pipeline
from .toyworld.concepts import OBJECT_BY_NAME
from .toyworld.render import render_batch, sample_scenes
from ..text_encoder_unlearning import (TOKEN_TEMPLATES, TextEncoderForgetConfig, forget_text_encoder,
                                      merge_text_encoder_deltas)
from ..unet_unlearning import unlearn_unet
from ..weights_io import merge_unet_deltas

DEMO_ERASE = ("star", "hexagon")
DEMO_RETAIN = ("circle", "square", "heart", "arrow", "zigzag", "ring")
# erased by the text-encoder method from five images, onto the benchmark's sibling anchor (a
# chevron: the model never draws it as a bolt, README: anchors)
DEMO_FEW_SHOT = "bolt"
DEMO_SAMPLING_STEPS = 60


def run_demo(output: Path, images_per_prompt: int = 8, steps_per_concept: int | None = None, log=print) -> dict:
    t_start = time.time()
    output.mkdir(parents=True, exist_ok=True)
    pipe = load_toy_pipeline()
    classifier = load_toy_classifier()
    sets = toy_prompt_sets(list(DEMO_ERASE), list(DEMO_RETAIN))
    # 60 Euler-ancestral steps (the benchmarks use 120) and batches of 32 (on 2 CPU cores faster than
    # 128): the demo is the first thing a newcomer runs, so it must stay within about five minutes
    sampling = SamplingConfig(images_per_prompt=images_per_prompt, seed=2024, num_inference_steps=DEMO_SAMPLING_STEPS,
                              batch_size=32)

    log(f"1/5 sampling the base model: {', '.join(DEMO_ERASE)} (to erase) and {', '.join(DEMO_RETAIN)} (to keep)")
    # the base model's images, kept by (prompt, seed): the text-encoder part compares against the
    # same retained prompts and seeds, so they are drawn once
    base_images: dict = {}
    before, images_before = evaluate(pipe, classifier, sets, sampling, image_cache=base_images)

    bench = UnetBenchConfig()
    config = bench.trainer_config("dynamic_mask")
    if steps_per_concept is not None:
        config.steps_per_concept = steps_per_concept
    concept_set = ConceptSet([object_concept(n) for n in DEMO_ERASE],
                             [captions.object_prompt(o) for o in DEMO_RETAIN])
    log(f"2/5 erasing {' then '.join(DEMO_ERASE)} with the dynamic mask + concept-aware loss "
        f"({config.steps_per_concept} steps per concept)")
    bar = ProgressReporter("unlearning", fields=("concept", "phase"))
    result = unlearn_unet(DiffusersAdapter(pipe), concept_set, config, progress=bar)
    bar.close()

    log("3/5 sampling the unlearned model with the same seeds")
    merged = merge_unet_deltas(pipe, result.deltas)
    after, images_after = evaluate(merged, classifier, sets, sampling)

    _save_grid(sets, images_before, images_after, output / "before_after.png")
    write_unlearned_folder(pipe, result, output / "unlearned", overwrite=True)
    metrics = {
        "erased": list(DEMO_ERASE), "retained": list(DEMO_RETAIN),
        "before": before.to_dict(), "after": after.to_dict(),
        "unlearning_seconds": result.seconds, "seconds_per_step": result.seconds_per_step,
        "settings": asdict(config),
    }
    _log_table(log, sets, before, after)

    metrics["text_encoder"] = _few_shot_text_encoder_part(pipe, classifier, sampling, output, steps_per_concept, log,
                                                          base_images)
    metrics["total_seconds"] = time.time() - t_start
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log(f"wrote {output / 'before_after.png'}, {output / 'text_encoder_before_after.png'}, "
        f"{output / 'metrics.json'}, {output / 'unlearned'} and {output / 'unlearned_text_encoder'} "
        f"in {metrics['total_seconds']:.0f}s")
    return metrics


def _few_shot_text_encoder_part(pipe, classifier, sampling: SamplingConfig, output: Path,
                                steps_per_concept: int | None, log, base_images: dict) -> dict:
    from PIL import Image

    name, anchor = DEMO_FEW_SHOT, SIBLING_ANCHORS[DEMO_FEW_SHOT]
    shots_dir = output / "text_encoder_shots"
    shots_dir.mkdir(exist_ok=True)
    paths = []
    for i, image in enumerate(render_batch(sample_scenes(5, seed=7, object=name))):
        paths.append(shots_dir / f"{name}_{i}.png")
        Image.fromarray(image).save(paths[-1])
    concept = Concept(name, anchor, templates=list(TOKEN_TEMPLATES),
                      text=OBJECT_BY_NAME[name].words[0], superclass_text=OBJECT_BY_NAME[anchor].words[0],
                      images=[str(p) for p in paths])
    concept_set = ConceptSet([concept], [captions.object_prompt(o) for o in DEMO_RETAIN])
    config = TextEncoderForgetConfig()
    if steps_per_concept is not None:
        config.steps = steps_per_concept
    sets = toy_prompt_sets([name], list(DEMO_RETAIN))

    log(f"4/5 erasing {name} from the text encoder, from the 5 images in {shots_dir} (onto {anchor!r}): "
        f"textual inversion, then a LoRA on the last {config.num_layers} encoder layers")
    before, images_before = evaluate(pipe, classifier, sets, sampling, image_cache=base_images)
    bar = ProgressReporter("forgetting", fields=("concept", "stage"))
    text = ClipTextAdapter(pipe.tokenizer, pipe.text_encoder, clip_skip=config.clip_skip)
    result = forget_text_encoder(text, DiffusersAdapter(pipe), concept_set, config, progress=bar)
    bar.close()

    log("5/5 sampling the model with the edited text encoder, same seeds")
    after, images_after = evaluate(merge_text_encoder_deltas(pipe, result.deltas()), classifier, sets, sampling)
    _save_grid(sets, images_before, images_after, output / "text_encoder_before_after.png")
    write_text_encoder_folder(pipe, result, output / "unlearned_text_encoder", overwrite=True)
    _log_table(log, sets, before, after)
    return {"erased": [name], "anchor": anchor, "shots": [str(p) for p in paths], "retained": list(DEMO_RETAIN),
            "before": before.to_dict(), "after": after.to_dict(), "unlearning_seconds": result.seconds,
            "settings": asdict(config)}


def _save_grid(sets, images_before, images_after, path: Path) -> None:
    labels = [f"{'ERASED ' if s.erased else ''}{p}" for s in sets for p in s.prompts]
    before_after_grid(images_before, images_after, rows=len(labels), labels=labels).save(path)


def _log_table(log, sets, before, after) -> None:
    log(f"{'concept':<10} {'before':>7} {'after':>7}")
    for s in sets:
        tag = "erased" if s.erased else "kept"
        b, a = before.concept_accuracy[s.concept], after.concept_accuracy[s.concept]
        log(f"{s.concept:<10} {b:>7.2f} {a:>7.2f}  ({tag})")
    log(f"toy FID on kept concepts: before {before.toy_fid:.2f}, after {after.toy_fid:.2f}")
