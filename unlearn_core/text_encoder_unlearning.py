"""Few-shot text-encoder forgetting (after arXiv 2505.12395): Textual Inversion + LoRA on the final
layers of the text encoder, UNet and VAE frozen.

Stage 1 learns a token embedding v* for each concept from its 4-5 images (the model's own handle
on the concept, the way an attacker would recover it). Stage 2 trains a low-rank delta on the
linear layers of the last N encoder layers (counted from the layer that conditions the UNet, so
clip-skip aware) with a weighted loss:

- forget (embedding space): the encoder's output for prompts with the concept's words, and with
  v*, is pulled onto the base encoder's output for the same template with the anchor/superclass;
- textual-inversion term (noise space): on the concept's images, the UNet's prediction under the
  word and v* prompts is pulled onto its prediction under the anchor prompt (base encoder);
- preserve: the encoder's output for unrelated prompts stays at the base encoder's.

Optional adversarial training (`adversarial_interval` > 0): an encoder that forgets v* can still
be steered to the concept by a token learned *against the unlearned encoder* (the learned-token
attack). So every few steps an adversarial token is re-learned against the current LoRA (warm
started from the last one) and its prompts join the forgetting terms.

Every target is a fixed tensor computed from the base model, so the forgetting terms are bounded
(no gradient ascent). The base encoder is never modified: the LoRA is applied functionally.

`negated_ti_forget` is the baseline of Fuchi & Takagi (few-shot-erasing): fine-tune the encoder's
MLPs and last self-attention with the *negated* denoising loss on the same images.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import __version__
from .concept_set import ConceptSet, ConceptSetError
from .configs import TextEncoderForgetConfig
from .metadata import redact_concept_names
from .protocol import PLACEHOLDER, DenoiserAdapter, TextEncoderAdapter
from .training_data import check_latents, user_latents
from .unet_unlearning import UnlearnCancelled, weights_hash

TOKEN_TEMPLATES = ("a {}", "a photo of a {}", "a drawing of a {}", "a picture of a {}")


@dataclass
class TextEncoderForgetResult:
    lora: dict[str, tuple[torch.Tensor, torch.Tensor]]  # module name -> (A: r x in, B: out x r), scale folded in B
    tokens: dict[str, torch.Tensor]  # concept -> learned embedding v*
    stats: list[dict]
    config: dict
    concepts: list[dict]
    retain_prompts: list[str]
    base_model_hash: str
    seconds: float
    seconds_per_concept: float
    library_version: str = __version__
    notes: list[str] = field(default_factory=list)

    def deltas(self) -> dict[str, torch.Tensor]:
        """Dense weight deltas (module.weight -> B @ A)."""
        return {f"{m}.weight": b @ a for m, (a, b) in self.lora.items()}

    def metadata(self, hash_concept_names: bool = False, key: bytes | None = None) -> dict:
        """What saved files carry about the run; with hash_concept_names, concept names as keyed
        hashes and no retain prompts (`metadata.redact_concept_names`; `key`: see there)."""
        meta = {"method": "few_shot_text_encoder", "concepts": self.concepts, "retain_prompts": self.retain_prompts,
                "config": self.config, "base_model_hash": self.base_model_hash, "library": "unlearn_core",
                "library_version": self.library_version}
        return redact_concept_names(meta, key) if hash_concept_names else meta


def concept_latents(unet_adapter: DenoiserAdapter, concept, where: str, notes: list[str]) -> torch.Tensor:
    """The concept's example images as latents (given as latents, e.g. by the ComfyUI node, or as
    images); a note when there are fewer than the 4-5 the method wants."""
    if concept.latents is not None:
        latents = check_latents(unet_adapter, concept.latents, where)
    elif not concept.images:
        raise ConceptSetError(f"{where}: few-shot forgetting needs 4-5 example images (or latents) of the concept; "
                              "none were given")
    else:
        latents = user_latents(unet_adapter, concept.images, where, notes)
    if len(latents) < 4:
        notes.append(f"{where}: only {len(latents)} image(s); 4-5 are recommended")
    return latents


def _noised(unet_adapter: DenoiserAdapter, latents, gen, batch):
    idx = torch.randint(0, len(latents), (batch,), generator=gen)
    x0 = latents[idx]
    noise = torch.randn(x0.shape, generator=gen).to(x0)
    t = torch.randint(0, unet_adapter.num_train_timesteps, (batch,), generator=gen).to(x0.device)
    return unet_adapter.add_noise(x0, noise, t), noise, t


def learn_token(text: TextEncoderAdapter, unet_adapter: DenoiserAdapter, latents: torch.Tensor, steps: int,
                lr: float, gen: torch.Generator, batch_size: int = 4, init_text: str | None = None,
                text_weights: dict[str, torch.Tensor] | None = None,
                should_cancel: Callable[[], bool] | None = None,
                init: torch.Tensor | None = None) -> tuple[torch.Tensor, list[float]]:
    """Textual inversion: the embedding v* that makes 'a *' reconstruct `latents` under the model
    (with the encoder's `text_weights` if given, e.g. an unlearned encoder for a recovery attack).
    Starts from `init` if given, else from the embedding of `init_text`, else the mean embedding."""
    if init is not None:
        v = init.detach().clone()
    elif init_text:
        v = text.word_embedding(init_text)
    else:
        v = text.token_embedding.weight.detach().mean(0).clone()
    v.requires_grad_(True)
    opt = torch.optim.Adam([v], lr=lr)
    losses = []
    for _ in range(steps):
        if should_cancel is not None and should_cancel():
            raise UnlearnCancelled("cancelled; nothing was changed or written")
        x_t, noise, t = _noised(unet_adapter, latents, gen, batch_size)
        templates = [TOKEN_TEMPLATES[int(i)] for i in torch.randint(0, len(TOKEN_TEMPLATES), (batch_size,), generator=gen)]
        cond = text.encode([tp.format(PLACEHOLDER) for tp in templates], text_weights, v.expand(batch_size, -1))
        loss = F.mse_loss(unet_adapter.predict_noise(x_t, t, cond), noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return v.detach(), losses


def planned_steps(config: TextEncoderForgetConfig, n_concepts: int) -> int:
    """How many progress steps `forget_text_encoder` reports for `n_concepts` concepts: textual
    inversion, the LoRA steps and the adversarial token rounds."""
    adversarial_rounds = -(-config.steps // config.adversarial_interval) if config.adversarial_interval else 0
    return n_concepts * (config.ti_steps + config.steps + adversarial_rounds * config.adversarial_steps)


def forget_text_encoder(text: TextEncoderAdapter, unet_adapter: DenoiserAdapter, concept_set: ConceptSet,
                        config: TextEncoderForgetConfig | None = None,
                        progress: Callable[[int, int, dict], None] | None = None,
                        should_cancel: Callable[[], bool] | None = None) -> TextEncoderForgetResult:
    config = config or TextEncoderForgetConfig()
    config.validate()
    concept_set.validate(check_files=True)
    t_start = time.time()
    notes: list[str] = []
    latents = {c.name: concept_latents(unet_adapter, c, f"concept {c.name!r}", notes) for c in concept_set.concepts}
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    base = text.weights()
    if config.num_layers > text.used_layer + 1:
        notes.append(f"num_layers {config.num_layers}: this encoder has {text.used_layer + 1} layer(s) up to the one "
                     f"that conditions the model (clip_skip {text.clip_skip}); the LoRA is on all of them")
        config = replace(config, num_layers=text.used_layer + 1)
    modules = text.final_layer_names(config.num_layers)
    base_hash = weights_hash({f"{m}.weight": base[f"{m}.weight"] for m in modules})
    scale = config.lora_alpha / config.lora_rank
    lora = {}
    for m in modules:
        w = base[f"{m}.weight"]
        a = torch.randn(config.lora_rank, w.shape[1], generator=gen) / np.sqrt(w.shape[1])
        lora[m] = (a.requires_grad_(True), torch.zeros(w.shape[0], config.lora_rank, requires_grad=True))
    params = [p for ab in lora.values() for p in ab]
    total = planned_steps(config, len(concept_set.concepts))
    stats: list[dict] = []
    done = 0

    def lora_weights():
        return {f"{m}.weight": base[f"{m}.weight"] + scale * (b @ a) for m, (a, b) in lora.items()}

    def tick(row):
        nonlocal done
        done += 1
        stats.append(row)
        if progress is not None:
            progress(done, total, row)

    # Stage 1: one learned token per concept, against the base model.
    tokens = {}
    for c in concept_set.concepts:
        t0 = time.time()
        v, losses = learn_token(text, unet_adapter, latents[c.name], config.ti_steps, config.ti_lr, gen,
                                config.ti_batch_size, init_text=c.superclass_text or c.superclass,
                                should_cancel=should_cancel)
        tokens[c.name] = v
        for k, loss in enumerate(losses):
            tick({"stage": "textual_inversion", "concept": c.name, "step": k, "loss": loss,
                  "seconds": (time.time() - t0) / max(1, len(losses))})

    # Fixed targets from the base encoder.
    retain = list(concept_set.retain_prompts)
    with torch.no_grad():
        retain_target = text.encode(retain) if retain else None
        anchor = {c.name: text.encode(c.superclass_prompts) for c in concept_set.concepts}
        token_anchor = {c.name: text.encode([tp.format(c.superclass_text or c.superclass) for tp in TOKEN_TEMPLATES])
                        for c in concept_set.concepts}

    # Stage 2: the LoRA, cycling through the concepts.
    opt = torch.optim.Adam(params, lr=config.lr)
    names = [c.name for c in concept_set.concepts]
    adversarial = {}  # concept -> the token an attacker would learn against the current encoder
    for step in range(config.steps * len(names)):
        if should_cancel is not None and should_cancel():
            raise UnlearnCancelled("cancelled; the input encoder is unchanged and nothing was written")
        c = concept_set.concepts[step % len(names)]
        concept_step = step // len(names)
        if config.adversarial_interval and concept_step % config.adversarial_interval == 0:
            t0 = time.time()
            with torch.no_grad():
                current = {k: w.detach() for k, w in lora_weights().items()}
            adversarial[c.name], losses = learn_token(
                text, unet_adapter, latents[c.name], config.adversarial_steps, config.ti_lr, gen,
                config.adversarial_batch_size, text_weights=current, should_cancel=should_cancel,
                init=adversarial.get(c.name, tokens[c.name]))
            for k, loss in enumerate(losses):
                tick({"stage": "adversarial_token", "concept": c.name, "step": k, "loss": loss,
                      "seconds": (time.time() - t0) / max(1, len(losses))})
        t0 = time.time()
        weights = lora_weights()
        b = config.batch_size
        # prompts: the concept's words (its templates) and, optionally, the learned token
        pi = torch.randint(0, len(c.prompts), (b,), generator=gen)
        prompts = [c.prompts[int(i)] for i in pi]
        targets = anchor[c.name][pi]
        token_vecs = None
        if config.include_learned_token:
            ti = torch.randint(0, len(TOKEN_TEMPLATES), (b,), generator=gen)
            prompts += [TOKEN_TEMPLATES[int(i)].format(PLACEHOLDER) for i in ti]
            targets = torch.cat([targets, token_anchor[c.name][ti]])
            dim = text.token_embedding.weight.shape[1]
            learned = tokens[c.name].expand(b, -1)
            if c.name in adversarial:  # half the token prompts use the adversarial token
                learned = torch.stack([adversarial[c.name] if i % 2 else tokens[c.name] for i in range(b)])
            token_vecs = torch.cat([torch.zeros(b, dim), learned])
        hidden = text.encode(prompts, weights, token_vecs)
        terms = {}
        if config.forget_weight > 0:
            terms["forget"] = config.forget_weight * F.mse_loss(hidden, targets)
        if config.ti_weight > 0:
            rows = ti_loss_rows(b, len(prompts), config.ti_loss_prompts)
            x_t, _, t = _noised(unet_adapter, latents[c.name], gen, len(rows))
            with torch.no_grad():
                target_eps = unet_adapter.predict_noise(x_t, t, targets[rows])
            terms["ti"] = config.ti_weight * F.mse_loss(unet_adapter.predict_noise(x_t, t, hidden[rows]), target_eps)
        if retain_target is not None and config.preserve_weight > 0:
            ri = torch.randint(0, len(retain), (b,), generator=gen)
            kept = text.encode([retain[int(i)] for i in ri], weights)
            terms["preserve"] = config.preserve_weight * F.mse_loss(kept, retain_target[ri])
        loss = sum(terms.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        row = {"stage": "lora", "concept": c.name, "step": step, "loss": float(loss.detach()),
               **{f"{k}_loss": float(v.detach()) for k, v in terms.items()}, "seconds": time.time() - t0}
        tick(row)

    seconds = time.time() - t_start
    return TextEncoderForgetResult(
        lora={m: (a.detach().clone(), (scale * b).detach().clone()) for m, (a, b) in lora.items()},
        tokens=tokens, stats=stats, config=asdict(config),
        concepts=[{"name": c.name, "superclass": c.superclass} for c in concept_set.concepts],
        retain_prompts=retain, base_model_hash=base_hash, seconds=seconds,
        seconds_per_concept=seconds / len(names), notes=notes)


def ti_loss_rows(n_words: int, n_prompts: int, limit: int) -> list[int]:
    """Rows of a LoRA step's prompts (words first, then learned-token prompts) that get the
    UNet-level term: all, or `limit` split between the two kinds (words get the odd one)."""
    if limit <= 0 or limit >= n_prompts:
        return list(range(n_prompts))
    n_tokens = n_prompts - n_words
    k_tokens = min(n_tokens, limit // 2)
    k_words = min(n_words, limit - k_tokens)
    return list(range(k_words)) + list(range(n_words, n_words + k_tokens))


@dataclass
class NegatedTIConfig:
    steps: int = 100
    lr: float = 1e-5
    batch_size: int = 4
    seed: int = 0


def negated_ti_forget(text: TextEncoderAdapter, unet_adapter: DenoiserAdapter, concept_set: ConceptSet,
                      config: NegatedTIConfig, progress=None) -> tuple[dict[str, torch.Tensor], float]:
    """Baseline: gradient *ascent* on the denoising loss of the concept prompts, training the
    encoder's MLPs and last self-attention (dense deltas). Returns (deltas, seconds per concept)."""
    concept_set.validate(check_files=True)
    t_start = time.time()
    notes: list[str] = []
    latents = {c.name: concept_latents(unet_adapter, c, f"concept {c.name!r}", notes) for c in concept_set.concepts}
    gen = torch.Generator().manual_seed(config.seed)
    base = text.weights()
    last = text.used_layer
    modules = text.layer_names(list(range(last + 1)), ("mlp",)) + text.layer_names([last], ("self_attn",))
    deltas = {f"{m}.weight": torch.zeros_like(base[f"{m}.weight"], requires_grad=True) for m in modules}
    opt = torch.optim.Adam(list(deltas.values()), lr=config.lr)
    names = [c.name for c in concept_set.concepts]
    total = config.steps * len(names)
    for step in range(total):
        c = concept_set.concepts[step % len(names)]
        weights = {n: base[n] + d for n, d in deltas.items()}
        x_t, noise, t = _noised(unet_adapter, latents[c.name], gen, config.batch_size)
        pi = torch.randint(0, len(c.prompts), (config.batch_size,), generator=gen)
        cond = text.encode([c.prompts[int(i)] for i in pi], weights)
        loss = -F.mse_loss(unet_adapter.predict_noise(x_t, t, cond), noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress is not None:
            progress(step + 1, total, {"concept": c.name, "loss": float(loss.detach())})
    return {n: d.detach().clone() for n, d in deltas.items()}, (time.time() - t_start) / len(names)


def merge_text_encoder_deltas(pipe, deltas: dict[str, torch.Tensor]):
    """A shallow copy of `pipe` with a deep-copied text encoder carrying base + delta."""
    import copy

    te = copy.deepcopy(pipe.text_encoder)
    params = dict(te.named_parameters())
    missing = [n for n in deltas if n not in params]
    if missing:
        raise ValueError(f"delta {missing[0]!r} does not match this text encoder")
    with torch.no_grad():
        for n, d in deltas.items():
            params[n].add_(d.to(params[n].dtype))
    merged = copy.copy(pipe)
    merged.register_modules(text_encoder=te)
    return merged
