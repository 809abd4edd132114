"""Time and score few-shot text-encoder forgetting settings, one concept at a time.

Each run forgets one toy object (5 rendered shots, the six retained objects' prompts as retain
prompts, as `concept-unlearn bench text-encoder` does) and prints one JSON line: wall seconds,
seconds per stage (textual inversion, adversarial token, LoRA) and, with --measure, the benchmark's
scores (residual with the words, held-out paraphrases and a learned-token attack; retained
accuracy; 16 images per prompt).

    python scripts/sweep_text_encoder.py THREADS star,triangle '{"default": {}, "fast": {"ti_steps": 100}}' [--measure]

Settings are fields of TextEncoderForgetConfig, plus "anchor": the word the concept is erased onto
(its superclass by default), one word for every concept or a {concept: word} map; "templates": the
concept's prompt templates (a list with one "{}" each, replacing the benchmark's); "shots_seed": the
seed its five shots are rendered from (default 31 * its position in the list; the benchmark's
`striped` uses 124).
"""

import dataclasses
import json
import sys
import time

import torch

from unlearn_core.adapters.clip_text_adapter import ClipTextAdapter
from unlearn_core.adapters.diffusers_adapter import DiffusersAdapter
from unlearn_core.research.benchmarks.text_encoder import RETAINED, TextEncoderBenchConfig, _concept, _measure
from unlearn_core.concept_set import ConceptSet
from unlearn_core.text_encoder_unlearning import TextEncoderForgetConfig, forget_text_encoder, merge_text_encoder_deltas
from unlearn_core.research.toyworld import captions
from unlearn_core.research.toyworld.assets import load_toy_classifier, load_toy_pipeline


def main(threads: int, names: list[str], settings: dict[str, dict], measure: bool) -> None:
    torch.set_num_threads(threads)
    pipe, classifier = load_toy_pipeline(), load_toy_classifier()
    unet, text = DiffusersAdapter(pipe), ClipTextAdapter(pipe.tokenizer, pipe.text_encoder)
    for label, fields in settings.items():
        fields = dict(fields)
        anchor = fields.pop("anchor", None)
        templates = fields.pop("templates", None)
        shots_seed = fields.pop("shots_seed", None)
        for i, name in enumerate(names):
            concept = _concept(name, 5, seed=31 * i if shots_seed is None else shots_seed)
            word = anchor.get(name) if isinstance(anchor, dict) else anchor
            if word:
                concept = dataclasses.replace(concept, superclass=word)
            if templates:
                concept = dataclasses.replace(concept, templates=list(templates))
            concept_set = ConceptSet([concept], [captions.object_prompt(o) for o in RETAINED])
            t0 = time.time()
            result = forget_text_encoder(text, unet, concept_set, TextEncoderForgetConfig(**fields))
            line = {"setting": label, "concept": name, "anchor": concept.superclass, "threads": threads, "seconds": round(time.time() - t0, 1),
                    "stages": {}}
            for row in result.stats:  # rounded once, at the end: a step takes well under 0.1 s
                line["stages"][row["stage"]] = line["stages"].get(row["stage"], 0) + row["seconds"]
            line["stages"] = {k: round(v, 1) for k, v in line["stages"].items()}
            if measure:
                m = _measure(merge_text_encoder_deltas(pipe, result.deltas()), classifier, [concept],
                             TextEncoderBenchConfig(eval_images_per_prompt=16))
                line.update(words=m["words"][name], paraphrase=m["paraphrase"][name],
                            learned_token=m["learned_token"][name], retained=m["retained_accuracy"])
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(int(sys.argv[1]), sys.argv[2].split(","), json.loads(sys.argv[3]), "--measure" in sys.argv[4:])
