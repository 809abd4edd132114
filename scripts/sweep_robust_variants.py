"""Sweep Dynamic-Mask variants against the attacks of `concept-unlearn bench robustness`.

The benchmark's "objects" scenario (star, circle, triangle erased one after another), its
training data, seeds and scoring; one JSON line per variant with the retained accuracy and the
success rate of the words, learned-token and soft-prompt attacks. This produced the variant table
of the README's Robustness section (and chose `dynamic_mask_robust`).

    python scripts/sweep_robust_variants.py [--retain-images N] [--train-seed S] cross_attention:150:1e-3 all_linear_conv:150:1e-4:10:3

A variant is TARGET:STEPS:LR[:ADVERSARIAL_INTERVAL[:DISTILLATION_WEIGHT[:MASK_DENSITY[:ADVERSARIAL_STEPS]]]]; --retain-images sets the
images per retain prompt (the benchmark's 4 by default); --train-seed reseeds the trainer's
draws (batches, noise, timesteps) while the training data and the attacks keep the benchmark's seeds. Append +name=value for a ConceptAwareLossConfig
field, e.g. all_linear_conv:150:2e-4:10:3:0.1+superclass_reference=teacher+superclass_guidance=1. About 10 minutes each on one thread.
"""

import json
import sys
import time

import torch

from unlearn_core.research.benchmarks.robustness import (OBJECTS, RobustnessBenchConfig, _Trainer, attack_rates,
                                                retained_accuracy)
from unlearn_core.research.toyworld.assets import load_toy_classifier, load_toy_pipeline


def main(variants: list[str], retain_images: int, train_seed: int | None) -> None:
    torch.set_num_threads(1)
    pipe, classifier = load_toy_pipeline(), load_toy_classifier()
    cfg = RobustnessBenchConfig(attacks=("words", "learned_token", "soft_prompt"),
                                unet_retain_images_per_prompt=retain_images)
    trainer = _Trainer(pipe, cfg, print)
    bench_config = cfg.unet_config
    for variant in variants:
        spec, *loss_fields = variant.split("+")
        target, steps, lr, *extra = spec.split(":")
        cfg.unet_steps_per_concept, cfg.unet_lr = int(steps), float(lr)

        def variant_config(method, target=target, extra=extra, loss_fields=loss_fields):
            c = bench_config(method)  # the bench's dynamic_mask settings, then the variant's
            c.target = target
            c.adversarial_interval = int(extra[0]) if extra else 0
            if train_seed is not None:  # the trainer's own draws only; data and attacks keep theirs
                c.seed = train_seed
            if len(extra) > 1:
                c.loss.distillation_weight = float(extra[1])
            if len(extra) > 2:
                c.mask.density = float(extra[2])
            if len(extra) > 3:
                c.adversarial_steps = int(extra[3])
            for field in loss_fields:  # +name=value: a ConceptAwareLossConfig field
                name, value = field.split("=")
                setattr(c.loss, name, type(getattr(c.loss, name))(value))
            return c

        cfg.unet_config = variant_config
        t0 = time.time()
        model, train_seconds = trainer.unlearned("dynamic_mask", OBJECTS)
        rates = attack_rates(model, classifier, OBJECTS, cfg)
        print(json.dumps({"variant": variant, "train_seed": train_seed, "retained": retained_accuracy(model, classifier, cfg),
                          **{a: round(sum(v.values()) / len(v), 3) for a, v in rates.items()},
                          "per_concept": rates, "train_seconds": round(train_seconds),
                          "seconds": round(time.time() - t0)}), flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    options = {"--retain-images": 4, "--train-seed": None}
    while args[:1] and args[0] in options:
        options[args[0]], args = int(args[1]), args[2:]
    if not args:
        sys.exit(__doc__)
    main(args, options["--retain-images"], options["--train-seed"])
