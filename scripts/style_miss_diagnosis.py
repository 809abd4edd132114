"""Why the embedded toy model misses styles: per style, per colour, per object/background contrast.

Prompts "a <colour> <object> in <style> style" for every colour, object and style (384 prompts,
one image each, every image its own seed) with the default sampler settings, scored by the toy
classifier. Contrast is |luminance(prompted colour) - luminance(background)|, the background
estimated as the median of the two-pixel border. Writes the numbers as JSON and a PNG of up to 32
textured (striped/dotted) images whose style was missed.

    python scripts/style_miss_diagnosis.py [--seed 5000] [--output bench/results/style_miss_diagnosis.json]
"""

import argparse
import json
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from unlearn_core.research.evaluation import SamplingConfig, generate
from unlearn_core.research.toyworld.assets import load_toy_classifier, load_toy_pipeline
from unlearn_core.research.toyworld.classifier import predict
from unlearn_core.research.toyworld.concepts import COLOUR_NAMES, COLOURS, OBJECT_NAMES, STYLES, article


def luminance(rgb: np.ndarray) -> np.ndarray:
    return (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=5000)
    parser.add_argument("--output", default="bench/results/style_miss_diagnosis.json")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pipe, classifier = load_toy_pipeline(), load_toy_classifier()
    jobs = [(o, c, s) for s in STYLES for c in COLOUR_NAMES for o in OBJECT_NAMES]
    prompts = [f"{article(c)} {c} {o} in {s} style" for o, c, s in jobs]
    sampling = replace(SamplingConfig(), images_per_prompt=1, distinct_seeds=True, seed=args.seed)
    images = generate(pipe, prompts, sampling)
    pred = predict(classifier, images)

    border = np.concatenate([images[:, :2].reshape(len(images), -1, 3), images[:, -2:].reshape(len(images), -1, 3)], 1)
    background = luminance(np.median(border, 1).astype(float))
    contrast = np.abs(background - np.array([luminance(np.array(COLOURS[c], float)) for _, c, _ in jobs]))
    hit = np.array([p == s for p, (_, _, s) in zip(pred.style, jobs)])
    textured = np.array([s in ("striped", "dotted") for _, _, s in jobs])

    result = {"command": f"python scripts/style_miss_diagnosis.py --seed {args.seed} --output {args.output}",
              "sampling": asdict(sampling),
              "style_accuracy": float(hit.mean()),
              "colour_accuracy": float(np.mean([p == c for p, (_, c, _) in zip(pred.colour, jobs)])),
              "by_style": {s: float(hit[[j[2] == s for j in jobs]].mean()) for s in STYLES},
              "by_colour": {c: float(hit[[j[1] == c for j in jobs]].mean()) for c in COLOUR_NAMES},
              "by_contrast": {}, "misread_as": {}}
    edges = [0.0, 0.1, 0.2, 0.3, 0.5, 1.01]
    for lo, hi in zip(edges, edges[1:]):
        m = (contrast >= lo) & (contrast < hi)
        result["by_contrast"][f"{lo}-{hi}"] = {
            "images": int(m.sum()), "style_accuracy": float(hit[m].mean()) if m.any() else None,
            "textured_images": int((m & textured).sum()),
            "textured_style_accuracy": float(hit[m & textured].mean()) if (m & textured).any() else None}
    for s in STYLES:
        missed = np.array([j[2] == s for j in jobs]) & ~hit
        result["misread_as"][s] = dict(Counter(np.array(pred.style)[missed].tolist()))
    print(json.dumps(result, indent=1))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))

    missed = np.where(~hit & textured)[0][:32]
    rows = len(missed) // 8
    if rows:
        grid = np.concatenate([np.concatenate(list(images[missed[r * 8:(r + 1) * 8]]), 1) for r in range(rows)], 0)
        Image.fromarray(grid).resize((grid.shape[1] * 4, grid.shape[0] * 4), Image.NEAREST).save(out.with_suffix(".png"))


if __name__ == "__main__":
    main()
