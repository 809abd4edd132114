"""Where the square frame in generated toy images comes from: renders, the VAE, or the UNet.

Many generated images show a faint rectangular panel a few pixels inside the border, which renders
never have, and the classifier then often reads the image as a "square". This script measures a
*frame score* per image — the mean over the four sides of |mean of the outer 2-pixel strip − mean
of the strip 3–5 pixels in| on the grey level, in 0–255 units (a render's vertical background
gradient alone gives a couple of units) — for
  - fresh renders,
  - the same renders encoded and decoded by the model's VAE,
  - generated images of every "a <object>" prompt at several guidance scales (default sampler
    otherwise, every image its own seed), with the object accuracy and how often a non-square
    prompt was read as "square".

    python scripts/frame_diagnosis.py [--model DIR --classifier FILE] [--output bench/results/frame_diagnosis.json]
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from unlearn_core.research.evaluation import SamplingConfig, generate
from unlearn_core.research.toyworld import captions
from unlearn_core.research.toyworld.assets import load_toy_classifier, load_toy_pipeline
from unlearn_core.research.toyworld.classifier import predict, to_tensor
from unlearn_core.research.toyworld.concepts import OBJECT_NAMES
from unlearn_core.research.toyworld.render import render_batch, sample_scenes
from unlearn_core.research.toyworld.train import vae_round_trip


def frame_score(images: np.ndarray) -> np.ndarray:
    """Per image: mean over the four sides of |outer 2-pixel strip − strip 3–5 pixels in| (grey, 0–255)."""
    x = images.astype(np.float32).mean(-1)
    sides = [
        x[:, :2].mean((1, 2)) - x[:, 3:6].mean((1, 2)),
        x[:, -2:].mean((1, 2)) - x[:, -6:-3].mean((1, 2)),
        x[:, :, :2].mean((1, 2)) - x[:, :, 3:6].mean((1, 2)),
        x[:, :, -2:].mean((1, 2)) - x[:, :, -6:-3].mean((1, 2)),
    ]
    return np.abs(np.stack(sides)).mean(0)


def summary(scores: np.ndarray) -> dict:
    return {"median": float(np.median(scores)), "mean": float(scores.mean()), "images": int(len(scores))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="toy diffusers folder (default: the embedded model)")
    parser.add_argument("--classifier", default=None, help="toy classifier file (default: the embedded one)")
    parser.add_argument("--images-per-prompt", type=int, default=4)
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0, 3.0, 5.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="bench/results/frame_diagnosis.json")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pipe = load_toy_pipeline(args.model)
    classifier = load_toy_classifier(args.classifier)
    renders = render_batch(sample_scenes(256, 11))
    result = {
        "command": " ".join(["python scripts/frame_diagnosis.py", *sys.argv[1:]]),
        "renders": summary(frame_score(renders)),
        "vae_round_trip": summary(frame_score(
            (vae_round_trip(pipe.vae, to_tensor(renders)) * 255).round().permute(0, 2, 3, 1).numpy())),
        "generated": [],
    }
    prompts = [captions.object_prompt(o) for o in OBJECT_NAMES]
    wanted = np.repeat(np.array(OBJECT_NAMES), args.images_per_prompt)
    for guidance in args.guidance:
        cfg = SamplingConfig(images_per_prompt=args.images_per_prompt, distinct_seeds=True, seed=args.seed,
                             guidance_scale=guidance)
        images = generate(pipe, prompts, cfg)
        predicted = np.array(predict(classifier, images).object)
        result["generated"].append({
            "guidance": guidance,
            **summary(frame_score(images)),
            "object_accuracy": float((predicted == wanted).mean()),
            "read_as_square_when_not_prompted": float(((predicted == "square") & (wanted != "square")).mean()),
        })
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'images':<28}{'frame median':>14}{'frame mean':>12}{'object acc':>12}{'read square':>12}")
    for name in ("renders", "vae_round_trip"):
        print(f"{name:<28}{result[name]['median']:>14.2f}{result[name]['mean']:>12.2f}")
    for row in result["generated"]:
        print(f"{'generated, guidance ' + str(row['guidance']):<28}{row['median']:>14.2f}{row['mean']:>12.2f}"
              f"{row['object_accuracy']:>12.3f}{row['read_as_square_when_not_prompted']:>12.3f}")


if __name__ == "__main__":
    main()
