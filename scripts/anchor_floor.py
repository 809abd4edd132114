"""How often the base model draws a concept when asked for its anchor (superclass) instead.

Both methods erase a concept by pulling it onto its anchor ("a triangle" onto "a polygon"), so the
anchor's own rate is a floor for what plain anchor-pulling leaves. The toy world's superclass words
caption a uniform mix of their four members, so "a polygon" draws a triangle about a quarter of the
time by construction; a sibling object ("a square") is scored beside it as the alternative anchor.
Prints a table and writes JSON (the text-encoder benchmark's word prompts and evaluation seed, 16
and 64 images).

    python scripts/anchor_floor.py [--output bench/results/anchor_floor.json]
                                   [--sampler S --sampling-steps N --guidance G]

The sampler options are `bench text-encoder`'s (default: the toy model's settings); give the ones a
text-encoder result was measured with to read it against its floor.
"""

import json
import sys

import torch

from unlearn_core.research.benchmarks.text_encoder import SIBLING_ANCHORS, _score
from unlearn_core.research.toyworld import captions
from unlearn_core.research.toyworld.assets import load_toy_classifier, load_toy_pipeline
from unlearn_core.research.toyworld.concepts import OBJECT_BY_NAME

CONCEPTS = ("star", "circle", "triangle", "bolt")
SEED = 4321  # the text-encoder benchmark's evaluation seed


def main(output: str, sampling: dict) -> None:
    torch.set_num_threads(2)
    pipe, classifier = load_toy_pipeline(), load_toy_classifier()
    rows = []
    for name in CONCEPTS:
        obj = OBJECT_BY_NAME[name]
        prompt = captions.object_prompt(name)
        anchors = {"superclass": prompt.replace(obj.words[0], obj.superclass),
                   "sibling": captions.object_prompt(SIBLING_ANCHORS[name])}
        for images in (16, 64):
            with_prompt = _score(pipe, classifier, name, [prompt], images, SEED, sampling)
            for kind, anchor in anchors.items():
                rows.append({"concept": name, "prompt": prompt, "anchor_kind": kind, "anchor_prompt": anchor,
                             "images": images, "concept_rate_with_prompt": with_prompt,
                             "concept_rate_with_anchor": _score(pipe, classifier, name, [anchor], images, SEED,
                                                                sampling)})
                r = rows[-1]
                print(f"{name:>9} {images:>3} images: {prompt!r} {with_prompt:.3f}  "
                      f"{anchor!r} ({kind}) {r['concept_rate_with_anchor']:.3f}", flush=True)
    with open(output, "w") as f:
        json.dump({"command": " ".join(["python scripts/anchor_floor.py", *sys.argv[1:]]), "seed": SEED,
                   "sampling": sampling, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    import argparse

    from unlearn_core.cli import _sampler_settings, _sampling_options

    parser = argparse.ArgumentParser(description="How often the base model draws a concept when asked for its anchor.")
    parser.add_argument("--output", default="bench/results/anchor_floor.json")
    _sampling_options(parser)
    args = parser.parse_args()
    main(args.output, _sampler_settings(args))
