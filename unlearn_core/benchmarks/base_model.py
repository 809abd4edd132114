"""Quality of the embedded toy model before any unlearning (`concept-unlearn bench base`)."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from ..evaluation import PromptSet, SamplingConfig, evaluate
from ..toyworld import captions
from ..toyworld.classifier import held_out_accuracy
from ..toyworld.concepts import OBJECT_NAMES, STYLES


def bench_base_model(pipe, classifier, images_per_prompt: int = 16, styled_images_per_prompt: int = 16,
                     sampling: SamplingConfig | None = None, progress=None) -> dict:
    """Object accuracy of "a <object>" prompts and style accuracy of "a <object> in <style> style"
    prompts, with `sampling`'s sampler and seeds (default: the toy model's sampler settings).

    Image i of every prompt shares seed i, so the style estimate rests on `styled_images_per_prompt`
    noise draws: some seeds draw low-contrast images whose texture is lost whatever the prompt (with
    4 seeds, seeds 2 and 3 are such), which is why the default is 16, not 2 or 4."""
    t0 = time.time()
    sampling = sampling or SamplingConfig()
    seed = sampling.seed
    cfg = replace(sampling, images_per_prompt=images_per_prompt)
    objects, _ = evaluate(pipe, classifier, [PromptSet(o, [captions.object_prompt(o)]) for o in OBJECT_NAMES],
                          cfg, progress=progress)
    style_cfg = replace(sampling, images_per_prompt=styled_images_per_prompt)
    styled, _ = evaluate(pipe, classifier,
                         [PromptSet(s, [captions.styled_prompt(o, s) for o in OBJECT_NAMES]) for s in STYLES],
                         style_cfg, progress=progress)
    cls = held_out_accuracy(classifier)
    return {
        "object_accuracy": objects.concept_accuracy,
        "object_accuracy_mean": float(np.mean(list(objects.concept_accuracy.values()))),
        "style_accuracy": styled.concept_accuracy,
        "style_accuracy_mean": float(np.mean(list(styled.concept_accuracy.values()))),
        "classifier_object_accuracy": cls["object"],
        "classifier_style_accuracy": cls["style"],
        "classifier_superclass_accuracy": cls["superclass"],
        "classifier_colour_accuracy": cls["colour"],
        "toy_fid": objects.toy_fid,
        "images_per_prompt": images_per_prompt,
        "seed": seed,
        "styled_images_per_prompt": styled_images_per_prompt,
        "styled_prompts": len(OBJECT_NAMES) * len(STYLES),
        "predicted_objects": objects.predicted_objects,
        "sampling": objects.sampling,
        "seconds": time.time() - t0,
    }
