"""The cells of `concept-unlearn bench all`: what each one trains and scores, and how.

A **cell** is one unit of work whose result is stored on its own: one (method, scenario, training
seed) trained and scored, or the base model scored on a benchmark's prompts. Each finished cell is
written to the cell cache (`provenance.CellCache`) under a key made of the model's and
classifier's hashes, the code version and the cell's settings, so a stopped run resumes where it
stopped. A cell stores, for every scored image, its classifier labels (object, superclass, colour,
style, object confidence) and whether it shows the prompted concept (plus the toy FID, timings and
memory), not rates or intervals: `suite` assembles the result files from the cells on every run,
so the summaries can change without recomputing a cell. `suite`, `summary`, `preservation` and
`stats` are therefore left out of the code hash; what a cell is computed with and what its key
records (the loaded model, its hashes, the code version) is settled here (`open_runner`), inside
the hash, and a test checks that no hashed module imports the left-out ones.

Scoring is the same everywhere: the shared `SamplingConfig` of the budget (the toy model's
evaluation sampler), and image i of prompt p drawn from seed `eval_seed + index(p) * n + i`,
where index(p) is the prompt's place in one fixed list of every prompt the benchmarks score
(`PROMPTS`) and n the images per prompt: every image has its own seed, and the same prompt gets
the same seeds in every model, so an unlearned model and the base model are compared image by
image (paired differences). Training seeds change the training (its data, its random draws), never
the evaluation images.

Not drawn with the shared sampler: the images of the attacks (the robustness benchmark's attacks
and the text-encoder benchmark's learned-token attack), which use `AttackConfig`'s sampler.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ...masks import MaskConfig
from ...sampling import SamplingConfig, sampler_settings
from ..attacks import AttackConfig, concept_images, learned_token_attack, paraphrase_prompts, prompt_attack, run_attack
from ..evaluation import concept_hits, draw_images, frechet_distance, reference_images
from ..toyworld import captions
from ..toyworld.concepts import OBJECT_BY_NAME, OBJECT_NAMES, STYLES, concept_kind
from . import robustness as rob
from . import text_encoder as te
from . import unet
from .provenance import CellCache

BENCHMARKS = ("base_model", "unet", "text_encoder", "robustness")
#: the first evaluation seed of each benchmark (image seeds do not depend on the training seed)
EVAL_SEEDS = {"base_model": 0, "unet": 1234, "text_encoder": 4321, "robustness": 2468}
#: the attacks' seeds: concept k (its place in ATTACK_CONCEPTS) attacks with seed + 1000 * k
ATTACK_SEEDS = {"text_encoder": 4321, "robustness": 0}
ATTACK_CONCEPTS = tuple(OBJECT_NAMES) + tuple(STYLES)
UNET_SCENARIOS = ("sequential", "style", "simultaneous")  # sequential -> rows seq3, seq6, seq10
ROBUSTNESS_SCENARIOS = tuple(name for name, _ in rob.SCENARIOS)



def _all_prompts() -> tuple[str, ...]:
    prompts = [captions.object_prompt(o) for o in OBJECT_NAMES]
    prompts += [captions.styled_prompt(o, s) for s in STYLES for o in OBJECT_NAMES]
    for name in ATTACK_CONCEPTS:
        prompts += paraphrase_prompts(name)
    return tuple(dict.fromkeys(prompts))


#: every prompt the benchmarks score with the shared sampler; a prompt's place fixes its image seeds
PROMPTS = _all_prompts()
PROMPT_INDEX = {p: i for i, p in enumerate(PROMPTS)}


def _refuse_unknown(kind: str, given, allowed) -> None:
    unknown = [g for g in given if g not in allowed]
    if unknown:
        raise ValueError(f"unknown {kind} {unknown[0]!r}; choose from {', '.join(allowed)}")


@dataclass
class Budget:
    """How much a `bench all` run measures. `full` is the published one; `quick` a smoke run of
    every benchmark (1 training seed, few images, tiny training budgets: not results); `tiny` is
    for tests (a few cells)."""

    name: str
    training_seeds: tuple[int, ...]
    sampling: SamplingConfig  # the one sampler of every scored image (distinct_seeds=True)
    paraphrase_images_per_prompt: int
    benchmarks: tuple[str, ...] = BENCHMARKS
    base_objects: tuple[str, ...] = tuple(OBJECT_NAMES)
    base_styles: tuple[str, ...] = tuple(STYLES)
    base_classifier_renders: int = 2000
    unet: unet.UnetBenchConfig = field(default_factory=unet.UnetBenchConfig)
    unet_scenarios: tuple[str, ...] = UNET_SCENARIOS
    unet_data_steps: int = 20  # sampler steps of the training images the base model draws (as `bench unet`)
    text_encoder: te.TextEncoderBenchConfig = field(default_factory=te.TextEncoderBenchConfig)
    te_scenarios: tuple[str, ...] | None = None  # None: all of text_encoder.benchmark_scenarios
    te_methods: tuple[str, ...] = ("few_shot_lora", "negated_ti")
    robustness: rob.RobustnessBenchConfig = field(default_factory=rob.RobustnessBenchConfig)
    robustness_scenarios: tuple[str, ...] = ROBUSTNESS_SCENARIOS

    def __post_init__(self):
        self.sampling = replace(self.sampling, distinct_seeds=True)
        if self.paraphrase_images_per_prompt > self.sampling.images_per_prompt:
            raise ValueError("paraphrase_images_per_prompt may not exceed the sampling's images_per_prompt "
                             "(it spaces the image seeds)")
        # the per-benchmark configs' own scoring fields say what this run scores with
        self.unet.evaluation_sampling = sampler_settings(self.sampling)
        self.unet.eval_images_per_prompt = self.unet.style_eval_images_per_prompt = self.sampling.images_per_prompt
        self.text_encoder.evaluation_sampling = sampler_settings(self.sampling)
        self.text_encoder.eval_images_per_prompt = self.sampling.images_per_prompt
        self.text_encoder.paraphrase_images_per_prompt = self.paraphrase_images_per_prompt
        self.robustness.retained_images_per_prompt = self.sampling.images_per_prompt
        self.robustness.attack = replace(self.robustness.attack, seed=ATTACK_SEEDS["robustness"])
        _refuse_unknown("benchmark", self.benchmarks, BENCHMARKS)
        _refuse_unknown("UNet method", self.unet.methods, unet.METHODS)
        _refuse_unknown("UNet scenario", self.unet_scenarios, UNET_SCENARIOS)
        _refuse_unknown("robustness method", self.robustness.methods, rob.METHODS)

    def settings(self) -> dict:
        return json.loads(json.dumps(asdict(self), default=str))


def make_budget(name: str) -> Budget:
    """The `full`, `quick` or `tiny` budget."""
    if name == "full":
        # 40 Euler-ancestral steps, not the sampler's 120: on the installed model they score the base
        # model as 120 do (paired, same seeds) at 2.6x less time (docs/experiment-log.md, 2026-12-03)
        return Budget("full", training_seeds=(0, 1, 2), sampling=SamplingConfig(images_per_prompt=16, num_inference_steps=40),
                      paraphrase_images_per_prompt=16)
    if name == "quick":
        u = unet.UnetBenchConfig(steps_per_concept=4, images_per_concept=4, mask=MaskConfig(warmup_steps=2, update_interval=2),
                                 measure_overhead=False)
        t = te.TextEncoderBenchConfig(attack_steps=3)
        t.method.ti_steps, t.method.steps, t.method.adversarial_steps, t.baseline.steps = 3, 3, 3, 3
        r = rob.RobustnessBenchConfig()
        r.apply_quick()
        return Budget("quick", training_seeds=(0,), sampling=SamplingConfig(images_per_prompt=2, num_inference_steps=8),
                      paraphrase_images_per_prompt=1, base_classifier_renders=200, unet=u, unet_data_steps=4,
                      text_encoder=t, robustness=r)
    if name == "tiny":
        u = unet.UnetBenchConfig(methods=("dynamic_mask", "closed_form"), steps_per_concept=2, images_per_concept=2, batch_size=2,
                                 mask=MaskConfig(warmup_steps=1, update_interval=1), measure_overhead=False)
        t = te.TextEncoderBenchConfig(shots=2, attack_steps=2)
        t.method.ti_steps, t.method.steps, t.method.adversarial_steps, t.method.batch_size = 2, 2, 2, 2
        t.method.ti_batch_size = t.method.adversarial_batch_size = 2
        r = rob.RobustnessBenchConfig(methods=("base", "dynamic_mask", "closed_form"), attacks=("words", "paraphrase"))
        r.apply_quick()
        return Budget("tiny", training_seeds=(0,), sampling=SamplingConfig(images_per_prompt=2, num_inference_steps=4),
                      paraphrase_images_per_prompt=1, base_objects=("star", "circle"), base_styles=("striped",),
                      base_classifier_renders=50, unet=u, unet_scenarios=("style",), unet_data_steps=2, text_encoder=t,
                      te_scenarios=("single_star",), te_methods=("few_shot_lora",), robustness=r,
                      robustness_scenarios=("style",))
    raise ValueError(f"unknown budget {name!r}: choose full, quick or tiny")


# ----------------------------------------------------------------------------------------- scoring

@dataclass
class Scorer:
    """Draws and classifies images of named concepts with the shared sampler and fixed seeds."""

    classifier: object
    sampling: SamplingConfig
    eval_seed: int

    def seeds(self, prompt: str, n: int) -> list[int]:
        if prompt not in PROMPT_INDEX:
            raise ValueError(f"prompt {prompt!r} is not in cells.PROMPTS: add it there so it gets its own seeds")
        stride = self.sampling.images_per_prompt
        return [self.eval_seed + PROMPT_INDEX[prompt] * stride + i for i in range(n)]

    def score(self, pipe, sets: list[tuple[str, list[str], int]], erased: tuple[str, ...] = (),
              fid_concepts: tuple[str, ...] = ()) -> dict:
        """{"concepts": {concept: `image_labels` of its images}, "toy_fid"}: `sets` are (concept,
        prompts, images per prompt); `erased` names the concepts whose entries also say which images
        show another member of the superclass."""
        from ..toyworld.classifier import predict

        # each set drawn and classified on its own: a concept's images then come from the same
        # computation whichever sets are scored with it (the base model's cells score more sets than
        # a method's), so an unchanged model gives exactly the base model's labels
        out: dict = {"concepts": {}}
        features = {}
        for concept, prompts, n in sets:
            jobs = [(p, s) for p in prompts for s in self.seeds(p, n)]
            pred = predict(self.classifier, draw_images(pipe, jobs, self.sampling))
            out["concepts"][concept] = image_labels(pred, concept, erased=concept in erased)
            features[concept] = pred.features
        if fid_concepts:
            gen = np.concatenate([features[c] for c in fid_concepts])
            ref = reference_images(list(fid_concepts), max(2, len(gen) // len(fid_concepts)))
            out["toy_fid"] = float(frechet_distance(gen, predict(self.classifier, ref).features))
        return out


def object_set(name: str, n: int) -> tuple[str, list[str], int]:
    return name, [captions.object_prompt(name)], n


def word_set(name: str, n: int) -> tuple[str, list[str], int]:
    """An object's plain prompt, or a style's 16 styled prompts."""
    return name, te.word_prompts(name), n


def attack_seed(benchmark: str, concept: str) -> int:
    return ATTACK_SEEDS[benchmark] + 1000 * ATTACK_CONCEPTS.index(concept)


def image_labels(pred, concept: str, erased: bool = False) -> dict:
    """What a cell stores of the images of one concept's prompts (`pred`: their classifier
    predictions): hits[j] is 1 if image j shows the concept; objects, superclasses, colours and
    styles[j] are its labels (compared image by image with the base model's by `preservation`),
    object_confidence[j] the classifier's probability of its object (low: no recognisable object);
    predicted counts the objects; for an erased object, coherent[j] is 1 if image j shows another
    member of its superclass."""
    objects = list(pred.object)
    entry = {"hits": [int(h) for h in concept_hits(pred, concept)], "objects": objects,
             "superclasses": list(pred.superclass), "colours": list(pred.colour), "styles": list(pred.style),
             "object_confidence": [round(float(c), 4) for c in pred.object_confidence],
             "predicted": {o: objects.count(o) for o in sorted(set(objects))}}
    if erased and concept_kind(concept) == "object":
        sup = OBJECT_BY_NAME[concept].superclass
        entry["coherent"] = [int(s == sup and o != concept) for s, o in zip(pred.superclass, objects)]
    return entry


def attack_labels(classifier, images, concept: str) -> dict:
    """`image_labels` of an attack's images of an erased concept."""
    from ..toyworld.classifier import predict

    return image_labels(predict(classifier, images), concept, erased=True)


def narrow_budget(budget: Budget, benchmarks: tuple[str, ...] | None = None,
                  unet_methods: tuple[str, ...] | None = None, unet_scenarios: tuple[str, ...] | None = None,
                  robustness_methods: tuple[str, ...] | None = None) -> Budget:
    """`budget` narrowed to some benchmarks, some of the UNet benchmark's methods and scenarios and
    some of the robustness benchmark's methods (the base model's rows, the reference of every
    attack, are always measured). Budget checks the names."""
    if benchmarks:
        budget = replace(budget, benchmarks=tuple(b.replace("-", "_") for b in benchmarks))
    if unet_methods:
        budget = replace(budget, unet=replace(budget.unet, methods=tuple(unet_methods)))
    if unet_scenarios:
        budget = replace(budget, unet_scenarios=tuple(unet_scenarios))
    if robustness_methods:
        methods = ("base",) + tuple(m for m in robustness_methods if m != "base")
        budget = replace(budget, robustness=replace(budget.robustness, methods=methods))
    return budget


# ------------------------------------------------------------------------------------------ runner

def open_runner(budget: Budget, cache_dir: str | Path | None = None, model: str | Path | None = None,
                classifier: str | Path | None = None, log=print) -> "Runner":
    """The runner of `budget` on a toy model and classifier (default: the installed ones). What the
    cells are computed with and what their keys record (the model's and classifier's hashes, the
    code version) are both settled here, in the code the keys hash."""
    from ..toyworld.assets import load_toy_classifier, load_toy_pipeline
    from .provenance import classifier_hash, code_version, default_cache_dir, toy_model_hash

    cache = CellCache(cache_dir or default_cache_dir())
    cache.remove_stale_partials()
    log(f"bench all: budget {budget.name}, cell cache {cache.root}")
    provenance = {"model_hash": toy_model_hash(model), "classifier_hash": classifier_hash(classifier),
                  "code": code_version()}
    pipe = load_toy_pipeline(model)
    # the toy UNet's convolutions run 1.2x faster channels-last on a CPU (the images differ from the
    # default layout's by rounding only); copies of the UNet that methods train keep the layout
    pipe.unet.to(memory_format=torch.channels_last)
    return Runner(budget, pipe, load_toy_classifier(classifier), cache, provenance, log)


class Runner:
    """Runs the cells of one budget, each from the cache if it is there."""

    def __init__(self, budget: Budget, pipe, classifier, cache: CellCache, provenance: dict, log=print):
        self.budget, self.pipe, self.classifier, self.cache, self.log = budget, pipe, classifier, cache, log
        self.provenance = provenance
        self.counts = {"cached": 0, "computed": 0}
        self.cell_seconds: list[dict] = []
        self.used: dict[str, list[dict]] = {}  # benchmark -> the cells its file is assembled from
        self._unet_data: dict[int, dict] = {}
        self._rob_trainers: dict[int, rob._Trainer] = {}

    def scorer(self, benchmark: str) -> Scorer:
        return Scorer(self.classifier, self.budget.sampling, EVAL_SEEDS[benchmark])

    def cell(self, benchmark: str, method: str, scenario: str, seed: int | None, settings: dict,
             compute: Callable[[], dict]) -> dict:
        cell = {"benchmark": benchmark, "method": method, "scenario": scenario}
        if seed is not None:
            cell["seed"] = seed
        key = {"cell": cell, "settings": json.loads(json.dumps(settings, default=str)),
               "sampling": asdict(self.budget.sampling), "eval_seed": EVAL_SEEDS[benchmark], **self.provenance}
        label = f"{benchmark} {method} {scenario}" + ("" if seed is None else f" seed {seed}")
        found = self.cache.get(key)
        if found is not None:
            self.counts["cached"] += 1
            self.log(f"[cached]   {label}")
            self.used.setdefault(benchmark, []).append(found)
            return found
        import torch

        self.log(f"[start]    {label}")
        t0, cpu0 = time.time(), time.process_time()
        result = compute()
        # wall time depends on what else runs; CPU time (all threads) estimates a quiet machine's
        result["cell_seconds"], result["cell_cpu_seconds"] = time.time() - t0, time.process_time() - cpu0
        result["torch_threads"] = torch.get_num_threads()
        result = json.loads(json.dumps(result, default=_plain))  # what the cache holds: the same numbers either way
        path = self.cache.put(key, result)
        self.counts["computed"] += 1
        self.cell_seconds.append({"cell": label, "seconds": result["cell_seconds"], "cpu_seconds": result["cell_cpu_seconds"]})
        self.log(f"[computed] {label} in {result['cell_seconds']:.0f}s ({result['cell_cpu_seconds']:.0f}s CPU) -> {path}")
        self.used.setdefault(benchmark, []).append(result)
        return result

    def compute_seconds(self, benchmark: str) -> dict:
        """What the cells of a benchmark cost when they were computed (wall and CPU seconds)."""
        cells = self.used.get(benchmark, [])
        return {"cells": len(cells), "wall": sum(c.get("cell_seconds", 0.0) for c in cells),
                "cpu": sum(c.get("cell_cpu_seconds", 0.0) for c in cells),
                "torch_threads": sorted({c.get("torch_threads") for c in cells if c.get("torch_threads")})}

    # ------------------------------------------------------------------------------ base model
    def base_model(self) -> dict:
        b = self.budget
        n = b.sampling.images_per_prompt
        scorer = self.scorer("base_model")
        settings = {"objects": list(b.base_objects), "classifier_renders": b.base_classifier_renders}

        def objects():
            from ..toyworld.classifier import held_out_accuracy

            scored = scorer.score(self.pipe, [object_set(o, n) for o in b.base_objects],
                                  fid_concepts=tuple(b.base_objects))
            scored["classifier"] = held_out_accuracy(self.classifier, n=b.base_classifier_renders)
            return scored

        def styles():
            return scorer.score(self.pipe, [(s, [captions.styled_prompt(o, s) for o in OBJECT_NAMES], n)
                                            for s in b.base_styles])

        return {"objects": self.cell("base_model", "base", "objects", None, settings, objects),
                "styles": self.cell("base_model", "base", "styles", None, {"styles": list(b.base_styles)}, styles)}

    # ------------------------------------------------------------------------------------ unet
    def unet_erased(self, scenario: str) -> tuple[tuple[str, ...], ...]:
        """The erased concepts scored by a scenario's rows (one tuple per row)."""
        if scenario == "sequential":
            return tuple(unet.SEQ10[:k] for k in (3, 6, 10))
        if scenario == "style":
            return ((unet.STYLE[0],),)
        return (tuple(unet.SIMULTANEOUS),)

    def unet_scoring_sets(self, erased: tuple[str, ...]):
        n = self.budget.sampling.images_per_prompt
        return [word_set(c, n) for c in erased] + [object_set(o, n) for o in unet.RETAINED]

    def unet_data(self, seed: int, names: tuple[str, ...] = ()) -> dict:
        """The training data of `seed` (the `bench unet` recipe: concept i of SEQ10 + SIMULTANEOUS +
        the style from seed `seed * 1000 + 17 * i`), each concept's generated on first use."""
        from ...adapters.diffusers_adapter import DiffusersAdapter
        from ...training_data import prepare_concept_data, prepare_retain_data

        if seed not in self._unet_data:
            adapter = DiffusersAdapter(self.pipe)
            concepts = {n: unet.object_concept(n) for n in dict.fromkeys(unet.SEQ10 + unet.SIMULTANEOUS)}
            concepts[unet.STYLE[0]] = unet.style_concept()
            retain_prompts = [captions.object_prompt(o) for o in unet.RETAINED]
            retain = prepare_retain_data(adapter, retain_prompts, 4, seed=seed * 1000 + 999,
                                         steps=self.budget.unet_data_steps)
            self._unet_data[seed] = {"adapter": adapter, "concepts": concepts, "data": {}, "retain": retain,
                                     "retain_prompts": retain_prompts}
        d = self._unet_data[seed]
        order = list(d["concepts"])
        todo = [n for n in names if n not in d["data"]]
        t0 = time.time()
        for name in todo:
            d["data"][name] = prepare_concept_data(d["adapter"], d["concepts"][name], self.budget.unet.images_per_concept,
                                                   seed=seed * 1000 + 17 * order.index(name),
                                                   steps=self.budget.unet_data_steps)
        if todo:
            self.log(f"unet training data of seed {seed} for {', '.join(todo)} generated in {time.time() - t0:.0f}s")
        return d

    def unet_base(self) -> dict:
        erased = tuple(dict.fromkeys(c for sc in self.budget.unet_scenarios for row in self.unet_erased(sc)
                                     for c in row))
        scorer = self.scorer("unet")
        return self.cell("unet", "base", "all", None, {"erased": list(erased), "retained": list(unet.RETAINED)},
                         lambda: scorer.score(self.pipe, self.unet_scoring_sets(erased), erased, tuple(unet.RETAINED)))

    def unet_closed_form_cell(self, scenario: str) -> dict:
        """The closed-form edit (no training, so no training seed): one solve per row, over the
        concepts erased by that row (seq3, seq6, seq10 are three solves of 3, 6 and 10 concepts)."""
        from ...closed_form import ClosedFormConfig, closed_form_edit

        config = ClosedFormConfig()
        scorer = self.scorer("unet")

        def compute():
            from ...adapters.diffusers_adapter import DiffusersAdapter
            from ...concept_set import ConceptSet
            from ...weights_io import merge_unet_deltas
            from .memory import PeakMemory

            adapter = DiffusersAdapter(self.pipe)
            concepts = {n: unet.object_concept(n) for n in dict.fromkeys(unet.SEQ10 + unet.SIMULTANEOUS)}
            concepts[unet.STYLE[0]] = unet.style_concept()
            retain_prompts = [captions.object_prompt(o) for o in unet.RETAINED]
            out = {"rows": {}}
            for erased in self.unet_erased(scenario):
                with PeakMemory() as mem:
                    result = closed_form_edit(adapter, ConceptSet([concepts[n] for n in erased], retain_prompts),
                                              config)
                merged = merge_unet_deltas(self.pipe, result.deltas)
                scored = scorer.score(merged, self.unet_scoring_sets(erased), erased, tuple(unet.RETAINED))
                scored.update(erased=list(erased), seconds_per_concept=result.seconds / len(erased),
                              seconds_per_step=result.seconds, peak_memory_mb=mem.peak_mb)
                out["rows"][row_scenario(scenario, erased)] = scored
                del merged
            return out

        return self.cell("unet", "closed_form", scenario, None, {"closed_form": asdict(config)}, compute)

    def unet_cell(self, method: str, scenario: str, seed: int) -> dict:
        if method in unet.TRAINING_FREE:
            return self.unet_closed_form_cell(scenario)
        cfg = replace(self.budget.unet, seed=seed)
        mode = "simultaneous" if scenario == "simultaneous" else "sequential"
        trainer_cfg = cfg.trainer_config(method, mode)
        settings = {"trainer": asdict(trainer_cfg), "retain_images_per_prompt": 4, "data_steps": self.budget.unet_data_steps}
        scorer = self.scorer("unet")

        def compute():
            from ...concept_set import ConceptSet
            from ...unet_unlearning import unlearn_unet
            from ...weights_io import merge_unet_deltas
            from .memory import PeakMemory

            rows = self.unet_erased(scenario)
            names = rows[-1]
            d = self.unet_data(seed, names)
            cs = ConceptSet([d["concepts"][n] for n in names], d["retain_prompts"])
            snapshots = {}

            def snapshot(erased, deltas):
                if tuple(erased) in rows:
                    snapshots[tuple(erased)] = deltas

            with PeakMemory() as mem:
                result = unlearn_unet(d["adapter"], cs, cfg.trainer_config(method, mode),
                                      data=[d["data"][n] for n in names], retain=d["retain"],
                                      on_phase_end=snapshot if mode == "sequential" else None)
            if mode == "simultaneous":
                snapshots[names] = result.deltas
            out = {"rows": {}}
            for erased in rows:
                merged = merge_unet_deltas(self.pipe, snapshots[erased])
                scored = scorer.score(merged, self.unet_scoring_sets(erased), erased, tuple(unet.RETAINED))
                if mode == "sequential":
                    secs = sum(r["seconds"] for r in result.stats if r["concept"] in erased) / len(erased)
                else:
                    secs = sum(r["seconds"] for r in result.stats) / len(erased)
                scored.update(erased=list(erased), seconds_per_concept=secs, seconds_per_step=result.seconds_per_step,
                              peak_memory_mb=mem.peak_mb)
                out["rows"][row_scenario(scenario, erased)] = scored
                del merged
            return out

        return self.cell("unet", method, scenario, seed, settings, compute)

    def unet_overhead(self) -> dict:
        cfg = replace(self.budget.unet, seed=self.budget.training_seeds[0])

        def compute():
            d = self.unet_data(cfg.seed, (unet.SEQ10[0],))
            return unet.measure_mask_overhead(d["adapter"], d["concepts"], d["data"], d["retain"], d["retain_prompts"],
                                              cfg, self.log)

        return self.cell("unet", "overhead", "mask", None,
                         {"steps": cfg.overhead_steps, "repeats": cfg.overhead_repeats, "data_steps": self.budget.unet_data_steps,
                          "trainer": asdict(cfg.trainer_config("dynamic_mask"))}, compute)

    # ---------------------------------------------------------------------------- text encoder
    def te_scenarios(self) -> list[tuple[str, list[str], bool, dict]]:
        every = te.benchmark_scenarios(self.budget.text_encoder)
        wanted = self.budget.te_scenarios
        if wanted is not None:
            unknown = set(wanted) - {s[0] for s in every}
            if unknown:
                raise ValueError(f"unknown text-encoder scenario {sorted(unknown)[0]!r}")
        return [s for s in every if wanted is None or s[0] in wanted]

    def te_measure(self, pipe, names: tuple[str, ...]) -> dict:
        b, cfg = self.budget, self.budget.text_encoder
        n = b.sampling.images_per_prompt
        scorer = self.scorer("text_encoder")
        words = scorer.score(pipe, [word_set(c, n) for c in names], erased=names)["concepts"]
        para = scorer.score(pipe, [(c, paraphrase_prompts(c), b.paraphrase_images_per_prompt) for c in names],
                            erased=names)["concepts"]
        token = {}
        for c in names:
            attack = replace(self.te_attack(), seed=attack_seed("text_encoder", c))
            shots = concept_images(c, cfg.shots, seed=attack.seed + 7)  # the attacker's images: fixed across seeds
            r = learned_token_attack(pipe, self.classifier, c, shots, attack)
            token[c] = attack_labels(self.classifier, r.images, c)
        retained = scorer.score(pipe, [object_set(o, n) for o in te.RETAINED], fid_concepts=tuple(te.RETAINED))
        return {"words": words, "paraphrase": para, "learned_token": token, "retained": retained["concepts"],
                "toy_fid": retained["toy_fid"]}

    def te_attack(self) -> AttackConfig:
        """The learned-token attack of the text-encoder benchmark: its budget, with the robustness
        benchmark's attack sampler (one attack sampler in the whole run)."""
        cfg, shared = self.budget.text_encoder, self.budget.robustness.attack
        return AttackConfig(images=self.budget.sampling.images_per_prompt, sampling_steps=shared.sampling_steps,
                            guidance_scale=shared.guidance_scale, token_steps=cfg.attack_steps,
                            token_lr=cfg.method.ti_lr, sample_batch=shared.sample_batch)

    def te_base(self) -> dict:
        names = tuple(dict.fromkeys(c for _, ns, _, _ in self.te_scenarios() for c in ns))
        cfg = self.budget.text_encoder
        return self.cell("text_encoder", "base", "all", None,
                         {"concepts": list(names), "shots": cfg.shots, "attack": asdict(self.te_attack()),
                          "paraphrase_images_per_prompt": self.budget.paraphrase_images_per_prompt},
                         lambda: self.te_measure(self.pipe, names))

    def te_cell(self, method: str, scenario: tuple, seed: int) -> dict:
        name, names, sibling, overrides = scenario
        cfg = self.budget.text_encoder
        every = list(dict.fromkeys(c for _, ns, _, _ in te.benchmark_scenarios(cfg) for c in ns))
        method_cfg = replace(cfg.method, seed=seed, **overrides)
        baseline_cfg = replace(cfg.baseline, seed=seed)
        settings = {"names": names, "sibling_anchor": sibling, "shots": cfg.shots, "clip_skip": cfg.method.clip_skip, "shots_seed": [seed * 100 + 31 * every.index(c) for c in names],
                    "method": asdict(method_cfg) if method == "few_shot_lora" else asdict(baseline_cfg),
                    "attack": asdict(self.te_attack()), "paraphrase_images_per_prompt": self.budget.paraphrase_images_per_prompt}

        def compute():
            from ...adapters.clip_text_adapter import ClipTextAdapter
            from ...adapters.diffusers_adapter import DiffusersAdapter
            from ...concept_set import ConceptSet
            from ...text_encoder_unlearning import forget_text_encoder, merge_text_encoder_deltas, negated_ti_forget

            concepts = [te.few_shot_concept(c, cfg.shots, seed=seed * 100 + 31 * every.index(c)) for c in names]
            erased = [te.with_sibling_anchor(c) if sibling else c for c in concepts]
            cs = ConceptSet(erased, [captions.object_prompt(o) for o in te.RETAINED])
            ua = DiffusersAdapter(self.pipe)
            ta = ClipTextAdapter(self.pipe.tokenizer, self.pipe.text_encoder, clip_skip=cfg.method.clip_skip)
            if method == "few_shot_lora":
                result = forget_text_encoder(ta, ua, cs, method_cfg)
                deltas, secs = result.deltas(), result.seconds_per_concept
            else:
                deltas, secs = negated_ti_forget(ta, ua, cs, baseline_cfg)
            merged = merge_text_encoder_deltas(self.pipe, deltas)
            out = self.te_measure(merged, tuple(names))
            out["seconds_per_concept"] = secs
            out["anchor"] = ({c.name: c.superclass_text or c.superclass for c in erased}
                             if method == "few_shot_lora" else None)
            return out

        return self.cell("text_encoder", method, name, seed, settings, compute)

    # ------------------------------------------------------------------------------ robustness
    def rob_trainer(self, seed: int) -> rob._Trainer:
        if seed not in self._rob_trainers:
            self._rob_trainers[seed] = rob._Trainer(self.pipe, replace(self.budget.robustness, seed=seed), self.log)
        return self._rob_trainers[seed]

    def rob_measure(self, model, names: tuple[str, ...]) -> dict:
        cfg = self.budget.robustness
        n = self.budget.sampling.images_per_prompt
        retained = self.scorer("robustness").score(model, [object_set(o, n) for o in te.RETAINED])["concepts"]
        attacks: dict[str, dict] = {a: {} for a in cfg.attacks}
        for c in names:
            acfg = replace(cfg.attack, seed=attack_seed("robustness", c))
            for a in cfg.attacks:
                r = (prompt_attack(model, self.classifier, c, te.word_prompts(c), acfg, "words") if a == "words"
                     else run_attack(a, model, self.classifier, c, acfg))
                attacks[a][c] = attack_labels(self.classifier, r.images, c)
        return {"retained": retained, "attacks": attacks}

    def rob_cell(self, method: str, scenario: str, seed: int | None) -> dict:
        names = dict(rob.SCENARIOS)[scenario]
        cfg = replace(self.budget.robustness, seed=seed or 0)
        settings = {"names": list(names), "attacks": list(cfg.attacks), "attack": asdict(cfg.attack)}
        if method == rob.TEXT_ENCODER_METHOD:
            settings["text_encoder"] = asdict(cfg.text_encoder)
        elif method == rob.CLOSED_FORM_METHOD:
            from ...closed_form import ClosedFormConfig

            settings["closed_form"] = asdict(ClosedFormConfig())
        elif method != "base":
            settings["trainer"] = asdict(cfg.unet_config(method))
            settings["data"] = {"images_per_concept": cfg.unet_images_per_concept,
                                "retain_images_per_prompt": cfg.unet_retain_images_per_prompt,
                                "sampling_steps": cfg.attack.sampling_steps}

        def compute():
            if method == "base":
                return self.rob_measure(self.pipe, names)
            model, train_seconds = self.rob_trainer(seed).unlearned(method, names)
            out = self.rob_measure(model, names)
            out["train_seconds"] = train_seconds
            return out

        return self.cell("robustness", method, scenario, seed, settings, compute)


def _plain(value):
    """numpy scalars as Python numbers for JSON; anything else is an error."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"a cell result holds a {type(value).__name__}, which JSON cannot store")


def row_scenario(scenario: str, erased: tuple[str, ...]) -> str:
    return f"seq{len(erased)}" if scenario == "sequential" else scenario


def unet_seeds(method: str, budget: Budget) -> tuple:
    """The training seeds a UNet method is run with: none for a method that trains nothing."""
    return (None,) if method in unet.TRAINING_FREE else tuple(budget.training_seeds)


def rob_seeds(method: str, budget: Budget) -> tuple:
    """The training seeds a robustness method is run with: none for the closed form, which trains nothing."""
    return (None,) if method == rob.CLOSED_FORM_METHOD else tuple(budget.training_seeds)
