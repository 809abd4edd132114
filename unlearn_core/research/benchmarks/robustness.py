"""`concept-unlearn bench robustness`: every attack against every method on the toy world.

Two scenarios: three objects erased together (one after another for the UNet methods) and one
texture style erased on its own. For each method (the base model as the reference, our two
methods and the baselines) and scenario we train once, then run every attack of
`unlearn_core.attacks` on every erased concept, plus the plain words as the no-attack reference,
and measure the accuracy on retained objects. All methods share the training data (generated
once by the base model) and all attacks share the seeds, so the rates are paired comparisons.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ...adapters.clip_text_adapter import ClipTextAdapter
from ...adapters.diffusers_adapter import DiffusersAdapter
from ..attacks import ATTACKS, AttackConfig, prompt_attack, run_attack
from ...closed_form import closed_form_edit
from ...concept_set import ConceptSet
from ..evaluation import PromptSet, SamplingConfig, evaluate
from ...masks import MaskConfig
from ...methods import ROBUST_LR_SCALE
from ...losses import ConceptAwareLossConfig
from ...text_encoder_unlearning import TextEncoderForgetConfig, forget_text_encoder, merge_text_encoder_deltas
from ..toyworld import captions
from ...training_data import prepare_concept_data, prepare_retain_data
from ...unet_unlearning import UnetUnlearnConfig, unlearn_unet
from ...weights_io import merge_unet_deltas
from .text_encoder import RETAINED, word_prompts
from .text_encoder import few_shot_concept
from .unet import object_concept, style_concept, toy_method_config

OBJECTS = ("star", "circle", "triangle")
STYLE = "striped"  # erased onto 'solid'
SCENARIOS = (("objects", OBJECTS), ("style", (STYLE,)))
UNET_METHODS = ("dynamic_mask", "dynamic_mask_robust", "salun", "esd_x", "esd_u")
TEXT_ENCODER_METHOD = "few_shot_text_encoder"
#: the closed-form key/value edit (unlearn_core.closed_form): no training, so no training seed
CLOSED_FORM_METHOD = "closed_form"
METHODS = ("base", "dynamic_mask", "dynamic_mask_robust", CLOSED_FORM_METHOD, TEXT_ENCODER_METHOD, "salun", "esd_x",
           "esd_u")
#: the settings key each method owns alone (`bench robustness --replace-methods` lets it differ)
METHOD_SETTINGS = {TEXT_ENCODER_METHOD: "text_encoder"}
#: "words" is the concept's plain prompt: the residual accuracy without any attack.
BENCH_ATTACKS = ("words",) + ATTACKS


@dataclass
class RobustnessBenchConfig:
    """Budgets of the robustness benchmark; the defaults are those of the committed results."""

    methods: tuple[str, ...] = METHODS
    attacks: tuple[str, ...] = BENCH_ATTACKS
    attack: AttackConfig = field(default_factory=AttackConfig)
    retained_images_per_prompt: int = 16  # per retained object, for the retained accuracy
    # UNet methods (the `bench unet` settings)
    unet_steps_per_concept: int = 150
    unet_batch_size: int = 4
    unet_lr: float = 1e-3
    unet_images_per_concept: int = 32  # training images the base model generates per concept
    unet_retain_images_per_prompt: int = 4  # images per retain prompt for the distillation term
    mask: MaskConfig = field(default_factory=lambda: MaskConfig(warmup_steps=20, update_interval=25))
    alignment_weight: float = 0.0  # as in `bench unet` (see UnetBenchConfig.alignment_weight)
    # few-shot text-encoder method (its own defaults; shots come from `attack.shots`)
    text_encoder: TextEncoderForgetConfig = field(default_factory=TextEncoderForgetConfig)
    seed: int = 0
    quick: bool = False  # a smoke run: tiny budgets, not for results

    def validate(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
        unknown = [a for a in self.attacks if a not in BENCH_ATTACKS]
        if unknown:
            raise ValueError(f"unknown attack {unknown[0]!r}; choose from {', '.join(BENCH_ATTACKS)}")
        self.attack.validate()

    def apply_quick(self) -> None:
        self.attack = AttackConfig(images=2, sampling_steps=2, shots=2, token_steps=2, soft_prompt_steps=2,
                                   batch_size=2, seed=self.attack.seed)
        self.retained_images_per_prompt = 1
        self.unet_steps_per_concept, self.unet_images_per_concept, self.unet_batch_size = 2, 2, 2
        self.mask = MaskConfig(warmup_steps=1, update_interval=1)
        self.text_encoder = dataclasses.replace(self.text_encoder, ti_steps=2, steps=2, batch_size=2,
                                                adversarial_steps=2)

    def unet_config(self, method: str) -> UnetUnlearnConfig:
        base = UnetUnlearnConfig(steps_per_concept=self.unet_steps_per_concept, batch_size=self.unet_batch_size,
                                 lr=self.unet_lr, images_per_concept=self.unet_images_per_concept, seed=self.seed,
                                 mask=MaskConfig(**vars(self.mask)),
                                 loss=ConceptAwareLossConfig(alignment_weight=self.alignment_weight))
        if method == "dynamic_mask_robust":
            base.lr = self.unet_lr * ROBUST_LR_SCALE
        return toy_method_config(method, base)


def retained_accuracy(pipe, classifier, cfg: RobustnessBenchConfig) -> float:
    result, _ = evaluate(pipe, classifier, [PromptSet(o, [captions.object_prompt(o)]) for o in RETAINED],
                         # the attacks' sampler (the pipeline's own), so retained and attacked images match
                         SamplingConfig(images_per_prompt=cfg.retained_images_per_prompt, sampler=None,
                                        num_inference_steps=cfg.attack.sampling_steps,
                                        guidance_scale=cfg.attack.guidance_scale, seed=cfg.seed))
    return float(result.retained_accuracy)


def attack_rates(pipe, classifier, concepts: tuple[str, ...], cfg: RobustnessBenchConfig) -> dict[str, dict[str, float]]:
    """{attack: {concept: success rate}} for every attack of cfg.attacks."""
    rates: dict[str, dict[str, float]] = {a: {} for a in cfg.attacks}
    for c in concepts:
        for a in cfg.attacks:
            if a == "words":
                r = prompt_attack(pipe, classifier, c, word_prompts(c), cfg.attack, "words")
            else:
                r = run_attack(a, pipe, classifier, c, cfg.attack)
            rates[a][c] = r.success_rate
    return rates


class _Trainer:
    """Training data prepared once (lazily) and one unlearned pipeline per (method, scenario)."""

    def __init__(self, pipe, cfg: RobustnessBenchConfig, log):
        self.pipe, self.cfg, self.log = pipe, cfg, log
        self.adapter = DiffusersAdapter(pipe)
        self.retain_prompts = [captions.object_prompt(o) for o in RETAINED]
        self._unet_data = None

    @staticmethod
    def concepts() -> dict:
        names = [n for _, ns in SCENARIOS for n in ns]
        return {n: style_concept() if n == STYLE else object_concept(n) for n in names}

    def unet_data(self):
        if self._unet_data is None:
            t0 = time.time()
            concepts = self.concepts()
            data = {n: prepare_concept_data(self.adapter, c, self.cfg.unet_images_per_concept,
                                            seed=self.cfg.seed * 1000 + 17 * i, steps=self.cfg.attack.sampling_steps)
                    for i, (n, c) in enumerate(concepts.items())}
            retain = prepare_retain_data(self.adapter, self.retain_prompts, self.cfg.unet_retain_images_per_prompt,
                                         seed=self.cfg.seed * 1000 + 999,
                                         steps=self.cfg.attack.sampling_steps)
            self._unet_data = (concepts, data, retain)
            self.log(f"training data for {len(data)} concepts generated in {time.time() - t0:.0f}s")
        return self._unet_data

    def unlearned(self, method: str, names: tuple[str, ...]):
        """(pipeline with `names` erased by `method`, training seconds)."""
        t0 = time.time()
        if method == "base":
            return self.pipe, 0.0
        if method == TEXT_ENCODER_METHOD:
            cs = ConceptSet([few_shot_concept(n, self.cfg.attack.shots, seed=self.cfg.seed * 100 + 31 * i)
                             for i, n in enumerate(names)], self.retain_prompts)
            te_cfg = dataclasses.replace(self.cfg.text_encoder, seed=self.cfg.seed)
            text = ClipTextAdapter(self.pipe.tokenizer, self.pipe.text_encoder, clip_skip=te_cfg.clip_skip)
            result = forget_text_encoder(text, self.adapter, cs, te_cfg)
            return merge_text_encoder_deltas(self.pipe, result.deltas()), time.time() - t0
        if method == CLOSED_FORM_METHOD:
            concepts = self.concepts()
            result = closed_form_edit(self.adapter, ConceptSet([concepts[n] for n in names], self.retain_prompts))
            return merge_unet_deltas(self.pipe, result.deltas), time.time() - t0
        concepts, data, retain = self.unet_data()
        cs = ConceptSet([concepts[n] for n in names], self.retain_prompts)
        result = unlearn_unet(self.adapter, cs, self.cfg.unet_config(method), data=[data[n] for n in names],
                              retain=retain)
        return merge_unet_deltas(self.pipe, result.deltas), time.time() - t0


def run_robustness_benchmark(cfg: RobustnessBenchConfig, pipe, classifier, log=print) -> dict:
    if cfg.quick:
        cfg.apply_quick()
    cfg.validate()
    trainer = _Trainer(pipe, cfg, log)
    base_retained = retained_accuracy(pipe, classifier, cfg)
    base_rates = {scenario: attack_rates(pipe, classifier, names, cfg) for scenario, names in SCENARIOS}
    log(f"base model: retained accuracy {base_retained:.3f}")
    rows = []
    for method in cfg.methods:
        for scenario, names in SCENARIOS:
            if method == "base":
                model, train_seconds, retained, rates = pipe, 0.0, base_retained, base_rates[scenario]
            else:
                model, train_seconds = trainer.unlearned(method, names)
                retained = retained_accuracy(model, classifier, cfg)
                rates = attack_rates(model, classifier, names, cfg)
            for attack in cfg.attacks:
                row = {"method": method, "scenario": scenario, "erased": list(names), "attack": attack,
                       "attack_success_rate": float(np.mean(list(rates[attack].values()))),
                       "retained_accuracy": retained,
                       "per_concept": rates[attack],
                       "base_attack_success_rate": float(np.mean(list(base_rates[scenario][attack].values()))),
                       "base_retained_accuracy": base_retained, "train_seconds": train_seconds}
                rows.append(row)
                log(f"{method:>21} {scenario:>7} {attack:>13}: success {row['attack_success_rate']:.3f} "
                    f"(base {row['base_attack_success_rate']:.3f}) retained {retained:.3f} (base {base_retained:.3f})")
    return {"rows": rows, "settings": asdict(cfg), "retained_objects": list(RETAINED),
            "torch_threads": torch.get_num_threads()}


def markdown_table(result: dict) -> str:
    attacks = list(dict.fromkeys(r["attack"] for r in result["rows"]))
    lines = ["| method | erased | " + " | ".join(attacks) + " | retained acc. (base) |",
             "|---|---|" + "---|" * len(attacks) + "---|"]
    groups: dict[tuple, dict] = {}
    for r in result["rows"]:
        groups.setdefault((r["method"], r["scenario"]), {})[r["attack"]] = r
    for (method, _), by_attack in groups.items():
        first = next(iter(by_attack.values()))
        cells = [f"{by_attack[a]['attack_success_rate']:.3f}" if a in by_attack else "–" for a in attacks]
        lines.append(f"| {method} | {', '.join(first['erased'])} | " + " | ".join(cells)
                     + f" | {first['retained_accuracy']:.3f} ({first['base_retained_accuracy']:.3f}) |")
    lines.append("")
    lines.append("Attack success rate: the fraction of generated images the toy classifier labels as the erased "
                 "concept (lower is better after unlearning; the `base` rows are the model before unlearning). "
                 "`words` is the concept's plain prompt, i.e. no attack.")
    return "\n".join(lines) + "\n"
