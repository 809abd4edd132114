"""Where the embedded toy model loses object and style accuracy: its VAE, or its UNet and sampler.

1. VAE round trip: 64 fresh renders per object are encoded and decoded by the toy VAE and scored
   by the toy classifier. This is the ceiling any UNet could reach through this VAE.
2. Sampling: `bench base`'s prompts ("a <object>", 16 images each; styled prompts, 8 images each)
   at several guidance scales (the default sampler and steps).

3. Samplers (--samplers): the same prompts with other samplers, step counts and guidance scales:
   deterministic ODE solvers (DPM-Solver++, Euler) against ancestral (stochastic) ones.

Parts 2 and 3 score through `bench_base_model`, so every image has its own seed. The committed
results from before that change (bench/results/base_model_samplers*.json, base_model_diagnosis.json)
drew image i of every prompt from seed i, 2 images per styled prompt: their style columns rest on
two noise draws and overstate the style (README: base model quality).

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

from unlearn_core.adapters.diffusers_adapter import DiffusersAdapter
from unlearn_core.research.benchmarks.base_model import bench_base_model
from unlearn_core.sampling import SamplingConfig
from unlearn_core.research.toyworld.assets import load_toy_classifier, load_toy_pipeline
from unlearn_core.research.toyworld.classifier import predict, to_tensor
from unlearn_core.research.toyworld.concepts import OBJECT_NAMES
from unlearn_core.research.toyworld.render import render_batch, sample_scenes

RENDERS_PER_OBJECT = 64
STYLED_IMAGES_PER_PROMPT = 8
# (sampler, steps, guidance); the deterministic solvers first
SAMPLERS = [
    ("dpm_solver++", 20, 5.0),
    ("dpm_solver++", 50, 5.0),
    ("euler", 40, 5.0),
    ("sde_dpm_solver++", 30, 5.0),
    ("ddpm", 100, 5.0),
    ("euler_ancestral", 40, 5.0),
    ("euler_ancestral", 80, 5.0),
    ("euler_ancestral", 80, 3.0),
    ("euler_ancestral", 120, 3.0),
    ("euler_ancestral", 160, 3.0),
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


def sampled(pipe, classifier, sampling: SamplingConfig) -> dict:
    result = bench_base_model(pipe, classifier, styled_images_per_prompt=STYLED_IMAGES_PER_PROMPT, sampling=sampling)
    keep = ("object_accuracy", "object_accuracy_mean", "style_accuracy", "style_accuracy_mean", "sampling")
    return {k: result[k] for k in keep}


def main(output: str, guidances: list[float], model=None, classifier_file=None) -> None:
    torch.set_num_threads(2)
    pipe, classifier = load_toy_pipeline(model), load_toy_classifier(classifier_file)
    result = {"command": " ".join(["python scripts/base_model_diagnosis.py", *sys.argv[1:]]),
              "vae_round_trip": vae_round_trip(pipe, classifier), "sampling": []}
    print(json.dumps({"vae_round_trip": result["vae_round_trip"]}), flush=True)
    for g in guidances:
        result["sampling"].append(sampled(pipe, classifier, SamplingConfig(guidance_scale=g)))
        print(json.dumps(result["sampling"][-1]), flush=True)
    with open(output, "w") as f:
        json.dump(result, f, indent=1)


def compare_samplers(output: str, model=None, classifier_file=None) -> None:
    torch.set_num_threads(2)
    pipe, classifier = load_toy_pipeline(model), load_toy_classifier(classifier_file)
    result = {"command": " ".join(["python scripts/base_model_diagnosis.py", *sys.argv[1:]]), "samplers": []}
    for sampler, steps, guidance in SAMPLERS:
        sampling = SamplingConfig(sampler=sampler, num_inference_steps=steps, guidance_scale=guidance)
        row = {"sampler": sampler, "num_inference_steps": steps, "guidance_scale": guidance,
               **sampled(pipe, classifier, sampling)}
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
