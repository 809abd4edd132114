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

    Every image gets its own seed (`distinct_seeds`): with the evaluation's usual shared seeds (image
    i of every prompt from seed i) a rate over 64 styled prompts rests on only as many noise draws as
    images per prompt, and the seed decides much of the style — some seeds draw low-contrast images
    whose texture is lost whatever the prompt — so 16 shared seeds gave style means of 0.871 (seeds
    0-15) and 0.688 (seeds 1000-1015) for the same model and sampler."""
    t0 = time.time()
    sampling = replace(sampling or SamplingConfig(), distinct_seeds=True)
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
        "seed": sampling.seed,
        "styled_images_per_prompt": styled_images_per_prompt,
        "styled_prompts": len(OBJECT_NAMES) * len(STYLES),
        "predicted_objects": objects.predicted_objects,
        "sampling": objects.sampling,
        "seconds": time.time() - t0,
    }
