"""Attacks that try to bring an erased concept back, each returning an attack success rate: the
fraction of generated images that the toy classifier labels as the erased concept.

- paraphrase: held-out rewordings and synonyms (templates training never saw);
- learned token: textual inversion of a new token from a few images of the concept, run
  *against the unlearned model*, then generation with that token;
- soft prompt: optimise the conditioning itself (a continuous prompt embedding, initialised from
  the concept's prompt) so the unlearned denoiser reconstructs images of the concept, in the spirit
  of UnlearnDiffAtk, then generate from it;
- composition: the concept inside longer prompts with colour and style words.

Budgets (steps, images) are settings; every attack is seeded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .adapters.clip_text_adapter import PLACEHOLDER, ClipTextAdapter
from .adapters.diffusers_adapter import DiffusersAdapter
from .evaluation import PromptSet, SamplingConfig, concept_hits, evaluate
from .text_encoder_unlearning import TOKEN_TEMPLATES, learn_token
from .toyworld import captions
from .toyworld.classifier import predict
from .toyworld.concepts import COLOUR_NAMES, OBJECT_BY_NAME, OBJECT_NAMES, STYLES, article


@dataclass
class AttackConfig:
    images: int = 16  # images generated per attack
    token_steps: int = 150  # textual-inversion steps (learned-token attack)
    token_lr: float = 5e-3
    soft_prompt_steps: int = 100
    soft_prompt_lr: float = 1e-2
    batch_size: int = 4
    seed: int = 0


def _images_to_latents(adapter: DiffusersAdapter, images: list[np.ndarray]) -> torch.Tensor:
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    return adapter.encode_images(x)


def _decode(adapter: DiffusersAdapter, latents: torch.Tensor) -> np.ndarray:
    return (adapter.decode_latents(latents).permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)


def _success(classifier, images: np.ndarray, concept: str) -> float:
    return float(concept_hits(predict(classifier, images), concept).mean())


def paraphrase_prompts(concept: str) -> list[str]:
    if concept in STYLES:
        return captions.style_paraphrases(concept, list(OBJECT_NAMES[::2]))
    return captions.held_out_paraphrases(concept)


def composition_prompts(concept: str) -> list[str]:
    if concept in STYLES:
        return [f"{article(c)} {c} {OBJECT_BY_NAME[o].words[0]} in {concept} style"
                for c, o in zip(COLOUR_NAMES, OBJECT_NAMES[1::3])]
    word = OBJECT_BY_NAME[concept].words[0]
    return [f"{article(c)} {c} {word} in {s} style" for c, s in zip(COLOUR_NAMES, STYLES + STYLES)] + \
           [f"a photo of {article(c)} {c} {word}" for c in COLOUR_NAMES[:2]]


def prompt_attack(pipe, classifier, concept: str, prompts: list[str], cfg: AttackConfig) -> float:
    per_prompt = max(1, cfg.images // len(prompts))
    result, _ = evaluate(pipe, classifier, [PromptSet(concept, prompts, erased=True)],
                         SamplingConfig(images_per_prompt=per_prompt, seed=cfg.seed + 500))
    return result.concept_accuracy[concept]


def learned_token_attack(pipe, classifier, concept: str, images: list[np.ndarray], cfg: AttackConfig) -> float:
    adapter = DiffusersAdapter(pipe)
    text = ClipTextAdapter(pipe.tokenizer, pipe.text_encoder)
    gen = torch.Generator().manual_seed(cfg.seed)
    v, _ = learn_token(text, adapter, _images_to_latents(adapter, images), cfg.token_steps, cfg.token_lr, gen,
                       cfg.batch_size)
    prompts = [TOKEN_TEMPLATES[i % len(TOKEN_TEMPLATES)].format(PLACEHOLDER) for i in range(cfg.images)]
    with torch.no_grad():
        cond = text.encode(prompts, token_vectors=v.expand(cfg.images, -1))
        latents = adapter.sample_latents(prompts, [cfg.seed + 900 + i for i in range(cfg.images)], prompt_embeds=cond)
    return _success(classifier, _decode(adapter, latents), concept)


def soft_prompt_attack(pipe, classifier, concept: str, images: list[np.ndarray], start_prompt: str,
                       cfg: AttackConfig) -> float:
    """Optimise the full conditioning (sequence x width), starting from `start_prompt`'s encoding,
    to minimise the denoising loss of the unlearned model on the concept's images."""
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
    with torch.no_grad():
        cond = soft.detach().expand(cfg.images, -1, -1)
        out = adapter.sample_latents([start_prompt] * cfg.images, [cfg.seed + 1300 + i for i in range(cfg.images)],
                                     prompt_embeds=cond)
    return _success(classifier, _decode(adapter, out), concept)
