"""Where the embedded toy model loses object and style accuracy: its VAE, or its UNet and sampler.

1. VAE round trip: 64 fresh renders per object are encoded and decoded by the toy VAE and scored
   by the toy classifier. This is the ceiling any UNet could reach through this VAE.
2. Sampling: `bench base`'s prompts ("a <object>", 16 images each; styled prompts, 2 images each)
   at several guidance scales (20 DPM-Solver++ steps, the default sampler).

3. Samplers (--samplers): the same prompts with other diffusers schedulers, step counts and guidance
   scales: deterministic ODE solvers (DPM-Solver++, Euler) against ancestral (stochastic) ones.

Prints one JSON line per part and writes them all to one file.

    python scripts/base_model_diagnosis.py [--output bench/results/base_model_diagnosis.json] [GUIDANCE ...]
    python scripts/base_model_diagnosis.py --samplers [--output bench/results/base_model_samplers.json]

`--model DIR/toy_sd --classifier DIR/classifier.safetensors` score another toy build, e.g. a fresh
`concept-unlearn toy-train --output DIR` before it is installed.
"""

import json
import sys

import numpy as np
import torch
from diffusers import (DDPMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                       EulerDiscreteScheduler)

from unlearn_core.adapters.diffusers_adapter import DiffusersAdapter
from unlearn_core.evaluation import PromptSet, SamplingConfig, evaluate
from unlearn_core.toyworld import captions
from unlearn_core.toyworld.assets import load_toy_classifier, load_toy_pipeline
from unlearn_core.toyworld.classifier import predict, to_tensor
from unlearn_core.toyworld.concepts import OBJECT_NAMES, STYLES
from unlearn_core.toyworld.model import SCHEDULER_KWARGS
from unlearn_core.toyworld.render import render_batch, sample_scenes

RENDERS_PER_OBJECT = 64
# (label, scheduler class, extra scheduler arguments, steps, guidance); the first is the default
SAMPLERS = [
    ("dpm_solver++", DPMSolverMultistepScheduler, {}, 20, 5.0),
    ("dpm_solver++", DPMSolverMultistepScheduler, {}, 50, 5.0),
    ("euler", EulerDiscreteScheduler, {}, 40, 5.0),
    ("sde_dpm_solver++", DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++"}, 30, 5.0),
    ("ddpm", DDPMScheduler, {}, 100, 5.0),
    ("euler_ancestral", EulerAncestralDiscreteScheduler, {}, 40, 5.0),
    ("euler_ancestral", EulerAncestralDiscreteScheduler, {}, 80, 5.0),
    ("euler_ancestral", EulerAncestralDiscreteScheduler, {}, 80, 3.0),
    ("euler_ancestral", EulerAncestralDiscreteScheduler, {}, 160, 3.0),
]


def vae_round_trip(pipe, classifier) -> dict:
    adapter = DiffusersAdapter(pipe)
    objects, style_hits, style_total = {}, 0, 0
    for i, name in enumerate(OBJECT_NAMES):
        scenes = sample_scenes(RENDERS_PER_OBJECT, seed=1000 + i, object=name)
        rendered = to_tensor(render_batch(scenes))
        predicted = predict(classifier, adapter.decode_latents(adapter.encode_images(rendered)))
        objects[name] = float(np.mean([p == name for p in predicted.object]))
        style_hits += sum(p == s.style for p, s in zip(predicted.style, scenes))
        style_total += len(scenes)
    return {"renders_per_object": RENDERS_PER_OBJECT, "object_accuracy": objects,
            "object_accuracy_mean": float(np.mean(list(objects.values()))),
            "style_accuracy_mean": style_hits / style_total}


def sampled(pipe, classifier, guidance: float, steps: int = 20) -> dict:
    objects, _ = evaluate(pipe, classifier, [PromptSet(o, [captions.object_prompt(o)]) for o in OBJECT_NAMES],
                          SamplingConfig(images_per_prompt=16, guidance_scale=guidance, num_inference_steps=steps))
    styles, _ = evaluate(pipe, classifier,
                         [PromptSet(s, [captions.styled_prompt(o, s) for o in OBJECT_NAMES]) for s in STYLES],
                         SamplingConfig(images_per_prompt=2, guidance_scale=guidance, num_inference_steps=steps))
    return {"guidance_scale": guidance, "object_accuracy": objects.concept_accuracy,
            "object_accuracy_mean": float(np.mean(list(objects.concept_accuracy.values()))),
            "style_accuracy": styles.concept_accuracy,
            "style_accuracy_mean": float(np.mean(list(styles.concept_accuracy.values())))}


def main(output: str, guidances: list[float], model=None, classifier_file=None) -> None:
    torch.set_num_threads(2)
    pipe, classifier = load_toy_pipeline(model), load_toy_classifier(classifier_file)
    result = {"command": " ".join(["python scripts/base_model_diagnosis.py", *sys.argv[1:]]),
              "vae_round_trip": vae_round_trip(pipe, classifier), "sampling": []}
    print(json.dumps({"vae_round_trip": result["vae_round_trip"]}), flush=True)
    for g in guidances:
        result["sampling"].append(sampled(pipe, classifier, g))
        print(json.dumps(result["sampling"][-1]), flush=True)
    with open(output, "w") as f:
        json.dump(result, f, indent=1)


def compare_samplers(output: str, model=None, classifier_file=None) -> None:
    torch.set_num_threads(2)
    pipe, classifier = load_toy_pipeline(model), load_toy_classifier(classifier_file)
    result = {"command": " ".join(["python scripts/base_model_diagnosis.py", *sys.argv[1:]]), "samplers": []}
    for label, scheduler, extra, steps, guidance in SAMPLERS:
        pipe.scheduler = scheduler(**SCHEDULER_KWARGS, **extra)
        row = {"sampler": label, "num_inference_steps": steps, **sampled(pipe, classifier, guidance, steps)}
        result["samplers"].append(row)
        print(json.dumps(row), flush=True)
    with open(output, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Where the toy model loses object and style accuracy.")
    parser.add_argument("guidances", nargs="*", type=float, default=[2.0, 3.0, 4.0, 5.0],
                        help="guidance scales of part 2 (default: 2 3 4 5)")
    parser.add_argument("--samplers", action="store_true", help="part 3 only: compare samplers")
    parser.add_argument("--output", default=None, help="default: bench/results/base_model_diagnosis.json, or "
                                                        "bench/results/base_model_samplers.json with --samplers")
    parser.add_argument("--model", default=None, help="another toy build's toy_sd folder (default: the embedded one)")
    parser.add_argument("--classifier", default=None, help="its classifier.safetensors (default: the embedded one)")
    args = parser.parse_args()
    if args.samplers:
        compare_samplers(args.output or "bench/results/base_model_samplers.json", args.model, args.classifier)
    else:
        main(args.output or "bench/results/base_model_diagnosis.json", args.guidances, args.model, args.classifier)
