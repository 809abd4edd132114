"""Attacks that try to bring an erased concept back, each returning an attack success rate: the
fraction of generated images that the toy classifier labels as the erased concept.

- paraphrase: held-out rewordings and synonyms (templates training never saw);
- composition: the concept inside longer prompts with colour and style words;
- learned token: textual inversion of a new token from a few images of the concept, run
  *against the model under attack* (e.g. the unlearned one), then generation with that token;
- soft prompt: optimise the conditioning itself (a continuous prompt embedding, initialised from
  a prompt) so the model's denoiser reconstructs images of the concept, in the spirit of
  UnlearnDiffAtk, then generate from it.

Budgets (images, sampling steps, optimisation steps) are `AttackConfig` settings. Every attack is
seeded, and image i of every attack starts from the noise of seed `cfg.seed + i`, so rates of
different attacks and models are paired comparisons. Attacks work on toy-world objects and styles
(the classifier must be able to tell whether the concept is in a picture).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..adapters.clip_text_adapter import ClipTextAdapter
from ..adapters.diffusers_adapter import DiffusersAdapter
from ..protocol import PLACEHOLDER, DenoiserAdapter
from .evaluation import concept_hits
from ..text_encoder_unlearning import TOKEN_TEMPLATES, learn_token
from .toyworld import captions
from .toyworld.classifier import predict
from .toyworld.concepts import COLOUR_NAMES, OBJECT_BY_NAME, OBJECT_NAMES, STYLES, article, concept_kind
from .toyworld.render import render_batch, sample_scenes

ATTACKS = ("paraphrase", "composition", "learned_token", "soft_prompt")


@dataclass
class AttackConfig:
    """Budgets of the attacks. The defaults are the benchmark's."""

    images: int = 16  # images generated per attack and concept (the success rate's denominator)
    sampling_steps: int = 20  # sampler steps per image
    guidance_scale: float = 5.0
    shots: int = 5  # images of the concept the attacker has (learned token, soft prompt)
    token_steps: int = 150  # textual-inversion steps (learned token)
    token_lr: float = 5e-3
    token_init: str | None = None  # word the learned token starts from; None: the mean token embedding
    soft_prompt_steps: int = 100  # optimisation steps of the soft prompt
    soft_prompt_lr: float = 5e-2  # 1e-2 found nothing in 30 steps on the toy model; 5e-2 did
    batch_size: int = 4  # noised images per optimisation step
    sample_batch: int = 64  # images sampled together
    seed: int = 0

    def validate(self) -> None:
        for name in ("images", "sampling_steps", "shots", "batch_size", "sample_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"AttackConfig.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("token_steps", "soft_prompt_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"AttackConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not (self.token_lr > 0 and self.soft_prompt_lr > 0):
            raise ValueError("AttackConfig learning rates must be positive")


@dataclass
class AttackResult:
    attack: str
    concept: str
    success_rate: float
    images: np.ndarray  # N x H x W x 3 uint8, image i from seed cfg.seed + i
    prompts: list[str]  # the prompt of each image ('*' stands for the learned token)
    optimisation_steps: int
    seconds: float


def check_attack_concept(concept: str) -> str:
    kind = concept_kind(concept)  # raises with the list of known concepts
    if kind not in ("object", "style"):
        raise ValueError(f"attacks take a toy-world object or style; {concept!r} is a {kind}")
    return concept


def concept_images(concept: str, n: int, seed: int = 0) -> list[np.ndarray]:
    """`n` rendered images of a toy-world object or style: what an attacker collects of the concept."""
    key = "style" if check_attack_concept(concept) in STYLES else "object"
    return list(render_batch(sample_scenes(n, seed=seed, **{key: concept})))


def word_prompt(concept: str) -> str:
    """The plain prompt of a concept ('a star', 'a star in striped style')."""
    if check_attack_concept(concept) in STYLES:
        return captions.styled_prompt(OBJECT_NAMES[0], concept)
    return captions.object_prompt(concept)


def paraphrase_prompts(concept: str) -> list[str]:
    if check_attack_concept(concept) in STYLES:
        return captions.style_paraphrases(concept, list(OBJECT_NAMES[::2]))
    return captions.held_out_paraphrases(concept)


def composition_prompts(concept: str) -> list[str]:
    if check_attack_concept(concept) in STYLES:
        return [f"{article(c)} {c} {OBJECT_BY_NAME[o].words[0]} in {concept} style"
                for c, o in zip(COLOUR_NAMES, OBJECT_NAMES[1::3])]
    word = OBJECT_BY_NAME[concept].words[0]
    return [f"{article(c)} {c} {word} in {s} style" for c, s in zip(COLOUR_NAMES, STYLES + STYLES)] + \
           [f"a photo of {article(c)} {c} {word}" for c in COLOUR_NAMES[:2]]


def _images_to_latents(adapter: DenoiserAdapter, images: list[np.ndarray]) -> torch.Tensor:
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    return adapter.encode_images(x)


@torch.no_grad()
def _sample(adapter: DenoiserAdapter, prompts: list[str], cfg: AttackConfig,
            prompt_embeds: torch.Tensor | None = None) -> np.ndarray:
    """One image per prompt, image i from seed cfg.seed + i, decoded to uint8."""
    out = []
    for start in range(0, len(prompts), cfg.sample_batch):
        sl = slice(start, start + cfg.sample_batch)
        seeds = [cfg.seed + i for i in range(start, min(len(prompts), start + cfg.sample_batch))]
        latents = adapter.sample_latents(prompts[sl], seeds, steps=cfg.sampling_steps,
                                         guidance_scale=cfg.guidance_scale,
                                         prompt_embeds=prompt_embeds[sl] if prompt_embeds is not None else None)
        images = adapter.decode_latents(latents).permute(0, 2, 3, 1).numpy()
        out.append((images * 255 + 0.5).astype(np.uint8))
    return np.concatenate(out)


def _result(attack, concept, classifier, images, prompts, steps, t0) -> AttackResult:
    rate = float(concept_hits(predict(classifier, images), concept).mean())
    return AttackResult(attack, concept, rate, images, prompts, steps, time.time() - t0)


def _cycle(prompts: list[str], n: int) -> list[str]:
    return [prompts[i % len(prompts)] for i in range(n)]


def prompt_attack(pipe, classifier, concept: str, prompts: list[str], cfg: AttackConfig,
                  name: str = "prompts") -> AttackResult:
    """cfg.images images, cycling through `prompts`, scored for `concept`."""
    cfg.validate()
    check_attack_concept(concept)
    if not prompts:
        raise ValueError("prompt_attack needs at least one prompt")
    t0 = time.time()
    prompts = _cycle(list(prompts), cfg.images)
    return _result(name, concept, classifier, _sample(DiffusersAdapter(pipe), prompts, cfg), prompts, 0, t0)


def paraphrase_attack(pipe, classifier, concept: str, cfg: AttackConfig) -> AttackResult:
    return prompt_attack(pipe, classifier, concept, paraphrase_prompts(concept), cfg, "paraphrase")


def composition_attack(pipe, classifier, concept: str, cfg: AttackConfig) -> AttackResult:
    return prompt_attack(pipe, classifier, concept, composition_prompts(concept), cfg, "composition")


def _check_shots(images) -> None:
    if images is None or len(images) == 0:
        raise ValueError("this attack needs images of the concept (e.g. attacks.concept_images(concept, 5))")


def learned_token_attack(pipe, classifier, concept: str, images: list[np.ndarray], cfg: AttackConfig) -> AttackResult:
    """Textual inversion against `pipe` (its text encoder and UNet as they are), then cfg.images
    images from prompts with the learned token."""
    cfg.validate()
    check_attack_concept(concept)
    _check_shots(images)
    t0 = time.time()
    adapter = DiffusersAdapter(pipe)
    text = ClipTextAdapter(pipe.tokenizer, pipe.text_encoder)
    gen = torch.Generator().manual_seed(cfg.seed)
    v, _ = learn_token(text, adapter, _images_to_latents(adapter, images), cfg.token_steps, cfg.token_lr, gen,
                       cfg.batch_size, init_text=cfg.token_init)
    prompts = _cycle([t.format(PLACEHOLDER) for t in TOKEN_TEMPLATES], cfg.images)
    with torch.no_grad():
        cond = text.encode(prompts, token_vectors=v.expand(len(prompts), -1))
    out = _sample(adapter, prompts, cfg, prompt_embeds=cond)
    return _result("learned_token", concept, classifier, out, prompts, cfg.token_steps, t0)


def soft_prompt_attack(pipe, classifier, concept: str, images: list[np.ndarray], start_prompt: str,
                       cfg: AttackConfig) -> AttackResult:
    """Optimise the full conditioning (sequence x width), starting from `start_prompt`'s encoding,
    to minimise the model's denoising loss on the concept's images; then cfg.images images from it."""
    cfg.validate()
    check_attack_concept(concept)
    _check_shots(images)
    t0 = time.time()
    adapter = DiffusersAdapter(pipe)
    latents = _images_to_latents(adapter, images)
    gen = torch.Generator().manual_seed(cfg.seed)
    soft = adapter.encode_prompts([start_prompt])[0].clone().requires_grad_(True)
    opt = torch.optim.Adam([soft], lr=cfg.soft_prompt_lr)
    for _ in range(cfg.soft_prompt_steps):
        idx = torch.randint(0, len(latents), (cfg.batch_size,), generator=gen)
        noise = torch.randn(latents[idx].shape, generator=gen)
        t = torch.randint(0, adapter.num_train_timesteps, (cfg.batch_size,), generator=gen)
        x_t = adapter.add_noise(latents[idx], noise, t)
        loss = F.mse_loss(adapter.predict_noise(x_t, t, soft.expand(cfg.batch_size, -1, -1)), noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
    prompts = [start_prompt] * cfg.images
    out = _sample(adapter, prompts, cfg, prompt_embeds=soft.detach().expand(cfg.images, -1, -1))
    return _result("soft_prompt", concept, classifier, out, prompts, cfg.soft_prompt_steps, t0)


def run_attack(attack: str, pipe, classifier, concept: str, cfg: AttackConfig,
               images: list[np.ndarray] | None = None) -> AttackResult:
    """One of ATTACKS by name, with the defaults the benchmark uses: cfg.shots rendered images of
    the concept (unless `images` are given), and the soft prompt starting from the concept's plain
    prompt (the words the unlearning removed)."""
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; choose one of {', '.join(ATTACKS)}")
    if attack == "paraphrase":
        return paraphrase_attack(pipe, classifier, concept, cfg)
    if attack == "composition":
        return composition_attack(pipe, classifier, concept, cfg)
    shots = images if images is not None else concept_images(concept, cfg.shots, seed=cfg.seed + 7)
    if attack == "learned_token":
        return learned_token_attack(pipe, classifier, concept, shots, cfg)
    return soft_prompt_attack(pipe, classifier, concept, shots, word_prompt(concept), cfg)
