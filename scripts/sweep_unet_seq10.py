"""Sweep Dynamic-Mask settings on the benchmark's seq10 (ten objects erased one after another).

The same training data, seeds and scoring as `concept-unlearn bench unet` (seq10 only, 8 images
per prompt); scores after 3 and after 10 concepts; one JSON line per setting.

    python scripts/sweep_unet_seq10.py THREADS '[{"name": "a", "steps": 100},
        {"name": "b", "lr": 5e-4, "loss": {"retain_reference": "teacher"}}]'

Keys: steps, lr, retain_n (retain images per prompt), loss / mask / train (fields of
ConceptAwareLossConfig, MaskConfig, UnetUnlearnConfig). A setting takes 5-9 minutes on one thread.
"""

import json
import sys
import time

import torch

from unlearn_core.adapters.diffusers_adapter import DiffusersAdapter
from unlearn_core.research.benchmarks.unet import RETAINED, SEQ10, UnetBenchConfig, _evaluate, object_concept
from unlearn_core.concept_set import ConceptSet
from unlearn_core.research.toyworld import captions
from unlearn_core.research.toyworld.assets import load_toy_classifier, load_toy_pipeline
from unlearn_core.training_data import prepare_concept_data, prepare_retain_data
from unlearn_core.unet_unlearning import unlearn_unet
from unlearn_core.weights_io import merge_unet_deltas


def main(threads: int, grid: list[dict]) -> None:
    torch.set_num_threads(threads)
    pipe, classifier = load_toy_pipeline(), load_toy_classifier()
    adapter = DiffusersAdapter(pipe)
    concepts = [object_concept(n) for n in SEQ10]
    data = [prepare_concept_data(adapter, c, 32, seed=17 * i) for i, c in enumerate(concepts)]  # as the bench
    retain_prompts = [captions.object_prompt(o) for o in RETAINED]
    retain_sets = {}
    for setting in grid:
        bench = UnetBenchConfig(eval_images_per_prompt=8, lr=setting.get("lr", 1e-3),
                                steps_per_concept=setting.get("steps", 100))
        n = setting.get("retain_n", 4)
        if n not in retain_sets:
            retain_sets[n] = prepare_retain_data(adapter, retain_prompts, n, seed=999)
        config = bench.trainer_config("dynamic_mask")
        for section, target in (("loss", config.loss), ("mask", config.mask), ("train", config)):
            for key, value in setting.get(section, {}).items():
                setattr(target, key, value)
        snapshots = {}

        def keep(erased, deltas):
            if len(erased) in (3, 10):
                snapshots[len(erased)] = deltas

        t0 = time.time()
        unlearn_unet(adapter, ConceptSet(concepts, retain_prompts), config, data=data, retain=retain_sets[n],
                     on_phase_end=keep)
        out = {**setting, "seconds": round(time.time() - t0)}
        for k, deltas in sorted(snapshots.items()):
            ev = _evaluate(merge_unet_deltas(pipe, deltas), classifier, list(SEQ10[:k]), bench)
            out[f"seq{k}"] = {"residual": round(ev.residual_accuracy_total, 3),
                              "retained": round(ev.retained_accuracy, 3), "toy_fid": round(ev.toy_fid, 1),
                              "retained_per_object": {o: round(ev.concept_accuracy[o], 2) for o in RETAINED}}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), json.loads(sys.argv[2]))
