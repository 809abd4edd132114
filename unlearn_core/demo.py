"""`concept-unlearn demo`: erase two objects from the embedded toy model and show before/after.

Writes to the output folder:
    before_after.png   rows = prompts (erased first, then retained), same seeds before and after
    metrics.json       accuracy per concept before and after, toy FID, timings, settings
    unlearned/         the delta, a LoRA, the merged diffusers model and a training report
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from .adapters.diffusers_adapter import DiffusersAdapter
from .benchmarks.unet import UnetBenchConfig, _object_concept
from .concept_set import ConceptSet
from .evaluation import SamplingConfig, before_after_grid, evaluate, toy_prompt_sets
from .forget import write_unlearned_folder
from .toyworld import captions
from .toyworld.assets import load_toy_classifier, load_toy_pipeline
from .unet_unlearning import unlearn_unet
from .weights_io import merge_unet_deltas

DEMO_ERASE = ("star", "hexagon")
DEMO_RETAIN = ("circle", "square", "heart", "arrow", "zigzag", "ring")


def run_demo(output: Path, images_per_prompt: int = 8, steps_per_concept: int | None = None, log=print) -> dict:
    from tqdm import tqdm

    t_start = time.time()
    output.mkdir(parents=True, exist_ok=True)
    pipe = load_toy_pipeline()
    classifier = load_toy_classifier()
    sets = toy_prompt_sets(list(DEMO_ERASE), list(DEMO_RETAIN))
    sampling = SamplingConfig(images_per_prompt=images_per_prompt, seed=2024)

    log(f"1/3 sampling the base model: {', '.join(DEMO_ERASE)} (to erase) and {', '.join(DEMO_RETAIN)} (to keep)")
    before, images_before = evaluate(pipe, classifier, sets, sampling)

    bench = UnetBenchConfig()
    config = bench.trainer_config("dynamic_mask")
    if steps_per_concept is not None:
        config.steps_per_concept = steps_per_concept
    concept_set = ConceptSet([_object_concept(n) for n in DEMO_ERASE],
                             [captions.object_prompt(o) for o in DEMO_RETAIN])
    log(f"2/3 erasing {' then '.join(DEMO_ERASE)} with the dynamic mask + concept-aware loss "
        f"({config.steps_per_concept} steps per concept)")
    bar = tqdm(total=1, desc="unlearning", unit="step")

    def progress(done, total, row):
        bar.total = total
        bar.n = done
        bar.set_postfix(concept=row["concept"], phase=row["phase"], refresh=False)
        bar.refresh()

    result = unlearn_unet(DiffusersAdapter(pipe), concept_set, config, progress=progress)
    bar.close()

    log("3/3 sampling the unlearned model with the same seeds")
    merged = merge_unet_deltas(pipe, result.deltas)
    after, images_after = evaluate(merged, classifier, sets, sampling)

    labels = [f"{'ERASED ' if s.erased else ''}{p}" for s in sets for p in s.prompts]
    before_after_grid(images_before, images_after, rows=len(labels), labels=labels).save(output / "before_after.png")
    write_unlearned_folder(pipe, result, output / "unlearned", overwrite=True)
    metrics = {
        "erased": list(DEMO_ERASE), "retained": list(DEMO_RETAIN),
        "before": before.to_dict(), "after": after.to_dict(),
        "unlearning_seconds": result.seconds, "seconds_per_step": result.seconds_per_step,
        "total_seconds": time.time() - t_start, "settings": asdict(config),
    }
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log(f"{'concept':<10} {'before':>7} {'after':>7}")
    for s in sets:
        tag = "erased" if s.erased else "kept"
        log(f"{s.concept:<10} {before.concept_accuracy[s.concept]:>7.2f} {after.concept_accuracy[s.concept]:>7.2f}  ({tag})")
    log(f"toy FID on kept concepts: before {before.toy_fid:.2f}, after {after.toy_fid:.2f}")
    log(f"wrote {output / 'before_after.png'}, {output / 'metrics.json'} and {output / 'unlearned'} "
        f"in {metrics['total_seconds']:.0f}s")
    return metrics
