"""`concept-unlearn toy-train`: build the embedded toy model and classifier from scratch.

Stages: train the classifier, render a data set, train the VAE, encode the data set to latents,
pre-train the text encoder on the caption grammar, then train the UNet on random captions (with
caption dropout so classifier-free guidance works) under the frozen text encoder, keeping an EMA
of its weights. Everything is seeded.

The text encoder plays the part of SD's frozen CLIP: it is pre-trained to tell from a caption
which object, superclass, colour and style it names (a linear probe on its mean-pooled output, which
is what an untrained cross-attention layer sees). Trained jointly from scratch instead, it stayed
nearly blind to the object word ("a square" and "" had cosine similarity 0.99) and the UNet learned
to ignore the text.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .captions import HELD_OUT_TEMPLATES, fill_template, all_caption_words, training_caption_and_labels
from .classifier import held_out_accuracy, save_classifier, to_tensor, train_classifier
from .model import (ToyModelConfig, build_sampling_scheduler, build_text_encoder, build_train_scheduler,
                    build_unet, build_vae)
from .concepts import COLOUR_NAMES, OBJECT_BY_NAME, OBJECT_NAMES, STYLES, SUPERCLASS_NAMES, SUPERCLASS_WORDS
from .render import render_batch, sample_scene, sample_scenes
from .tokenizer import build_tokenizer


@dataclass
class ToyTrainConfig:
    output_dir: str
    seed: int = 0
    n_images: int = 40000
    classifier_steps: int = 2000
    classifier_images: int = 40000
    vae_steps: int = 500
    vae_batch: int = 32
    text_steps: int = 500
    text_batch: int = 128
    text_lr: float = 1e-3
    unet_steps: int = 6000
    # optional phase 2: a warm restart of the learning rate from phase 1's EMA weights
    unet_restart_steps: int = 2200
    restart_lr: float = 3e-4
    unet_batch: int = 64
    lr: float = 6e-4
    warmup_steps: int = 200
    ema_decay: float = 0.998
    min_snr_gamma: float = 5.0


def _train_vae(vae, images: torch.Tensor, cfg: ToyTrainConfig, log) -> None:
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=cfg.vae_steps, pct_start=0.05)
    vae.train()
    t0 = time.time()
    for step in range(cfg.vae_steps):
        idx = torch.randint(0, len(images), (cfg.vae_batch,), generator=gen)
        x = images[idx] * 2 - 1
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=gen)).sample
        kl = posterior.kl().mean() / x[0].numel()
        loss = F.l1_loss(recon, x) + F.mse_loss(recon, x) + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0 or step == cfg.vae_steps - 1:
            log(f"vae step {step}/{cfg.vae_steps} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")
    vae.eval()


@torch.no_grad()
def _encode(vae, images: torch.Tensor, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    means, stds = [], []
    for i in range(0, len(images), batch):
        d = vae.encode(images[i:i + batch] * 2 - 1).latent_dist
        means.append(d.mean)
        stds.append(d.std)
    return torch.cat(means), torch.cat(stds)


# Label spaces of the text encoder's pre-training probe; the last class of each is "not mentioned".
_PROBE_LABELS = {"object": OBJECT_NAMES, "superclass": SUPERCLASS_NAMES, "colour": COLOUR_NAMES, "style": STYLES}


def _probe_targets(labels) -> torch.Tensor:
    rows = []
    for lab in labels:
        rows.append([names.index(getattr(lab, field)) if getattr(lab, field) is not None else len(names)
                     for field, names in _PROBE_LABELS.items()])
    return torch.tensor(rows)


def _held_out_probe_batch() -> tuple[list[str], torch.Tensor]:
    """Held-out paraphrases of every object and superclass, with their probe targets."""
    from .captions import CaptionLabels

    captions, labels = [], []
    for name in OBJECT_NAMES:
        sup = OBJECT_BY_NAME[name].superclass
        for template in HELD_OUT_TEMPLATES:
            for word in OBJECT_BY_NAME[name].words:
                captions.append(fill_template(template, word))
                labels.append(CaptionLabels(name, sup, None, None))
    for sup in SUPERCLASS_NAMES:
        for template in HELD_OUT_TEMPLATES:
            for word in SUPERCLASS_WORDS[sup]:
                captions.append(fill_template(template, word))
                labels.append(CaptionLabels(None, sup, None, None))
    return captions, _probe_targets(labels)


def _pretrain_text_encoder(text_encoder, tokenizer, cfg: "ToyTrainConfig", log) -> dict[str, float]:
    """Teach the text encoder what captions say; returns the probe's accuracy on held-out paraphrases."""
    heads = torch.nn.ModuleList(torch.nn.Linear(text_encoder.config.hidden_size, len(names) + 1)
                                for names in _PROBE_LABELS.values())
    params = list(text_encoder.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.text_lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.text_lr, total_steps=cfg.text_steps, pct_start=0.1)
    rng = np.random.default_rng(cfg.seed + 3)

    def encode(captions):
        ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids
        return text_encoder(ids).last_hidden_state.mean(dim=1)

    text_encoder.train()
    t0 = time.time()
    for step in range(cfg.text_steps):
        pairs = [training_caption_and_labels(sample_scene(rng), rng) for _ in range(cfg.text_batch)]
        pooled = encode([c for c, _ in pairs])
        targets = _probe_targets([lab for _, lab in pairs])
        loss = sum(F.cross_entropy(head(pooled), targets[:, i]) for i, head in enumerate(heads))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == cfg.text_steps - 1:
            log(f"text encoder step {step}/{cfg.text_steps} probe loss {loss.item():.4f} ({time.time() - t0:.0f}s)")
    text_encoder.eval()
    captions, targets = _held_out_probe_batch()
    with torch.no_grad():
        pooled = encode(captions)
        accuracy = {field: float((head(pooled).argmax(-1) == targets[:, i]).float().mean())
                    for i, (field, head) in enumerate(zip(_PROBE_LABELS, heads))}
    log(f"text encoder probe accuracy on held-out paraphrases {accuracy}")
    return accuracy


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), model.parameters()):
            pe.lerp_(p, 1.0 - decay)


@torch.no_grad()
def vae_round_trip(vae, images: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    """Images (Nx3xHxW floats in [0, 1]) encoded to their latent means and decoded again."""
    decoded = []
    for i in range(0, len(images), batch_size):
        latents = vae.encode(images[i:i + batch_size] * 2 - 1).latent_dist.mean
        decoded.append(((vae.decode(latents).sample + 1) / 2).clamp(0, 1))
    return torch.cat(decoded)


def vae_reconstruction_accuracy(vae, classifier, n: int = 2000, seed: int = 12345) -> dict[str, float]:
    """The classifier's accuracy on fresh renders passed through the VAE: the ceiling the VAE
    puts on any generated image's score."""
    acc = held_out_accuracy(classifier, n=n, seed=seed, transform=lambda images: vae_round_trip(vae, images))
    return {"object": acc["object"], "style": acc["style"]}


def train_toy_world(cfg: ToyTrainConfig, log=print) -> dict:
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    t_start = time.time()
    timings: dict[str, float] = {}

    t0 = time.time()
    classifier = train_classifier(steps=cfg.classifier_steps, n_images=cfg.classifier_images, seed=cfg.seed + 100,
                                  log=log)
    cls_acc = held_out_accuracy(classifier)
    log(f"classifier held-out accuracy {cls_acc}")
    save_classifier(classifier, out / "classifier.safetensors", {"held_out_accuracy": cls_acc})
    timings["classifier_s"] = time.time() - t0

    t0 = time.time()
    scenes = sample_scenes(cfg.n_images, seed=cfg.seed)
    images = to_tensor(render_batch(scenes))
    timings["render_s"] = time.time() - t0
    log(f"rendered {cfg.n_images} training images in {timings['render_s']:.0f}s")

    model_cfg = ToyModelConfig()
    t0 = time.time()
    vae = build_vae(model_cfg)
    _train_vae(vae, images, cfg, log)
    means, stds = _encode(vae, images)
    scaling = float(1.0 / means.std())
    vae.register_to_config(scaling_factor=scaling)
    timings["vae_s"] = time.time() - t0
    log(f"vae trained, latent scaling factor {scaling:.4f}")
    vae_acc = vae_reconstruction_accuracy(vae, classifier)
    log(f"classifier accuracy on held-out renders decoded through the vae {vae_acc}")

    tokenizer = build_tokenizer(all_caption_words(), out / "tokenizer")
    text_encoder = build_text_encoder(model_cfg, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
    t0 = time.time()
    text_probe = _pretrain_text_encoder(text_encoder, tokenizer, cfg, log)
    text_encoder.requires_grad_(False)
    timings["text_encoder_s"] = time.time() - t0
    unet = build_unet(model_cfg)
    data = _Data(scenes, means, stds, scaling)
    t0 = time.time()
    ema_te, ema_unet = _train_denoiser(
        text_encoder, unet, tokenizer, data, cfg, steps=cfg.unet_steps, lr=cfg.lr, seed=cfg.seed + 2, log=log,
        checkpoint=lambda te, un: save_pipeline(out / "checkpoint", vae, te, tokenizer, un))
    timings["unet_s"] = time.time() - t0
    save_pipeline(out / "toy_sd_phase1", vae, ema_te, tokenizer, ema_unet)
    t0 = time.time()
    ema_te, ema_unet = _restart_phase(vae, ema_te, ema_unet, tokenizer, data, cfg, out, log)
    timings["unet_restart_s"] = time.time() - t0

    save_pipeline(out / "toy_sd", vae, ema_te, tokenizer, ema_unet)
    timings["total_s"] = time.time() - t_start
    report = {"config": asdict(cfg), "timings": timings, "classifier_held_out_accuracy": cls_acc,
              "vae_reconstruction_accuracy": vae_acc, "text_encoder_probe_accuracy_held_out": text_probe}
    (out / "toy_train_report.json").write_text(json.dumps(report, indent=2))
    log(f"toy-train finished in {timings['total_s'] / 60:.1f} min")
    return report


@dataclass
class _Data:
    scenes: list
    means: torch.Tensor
    stds: torch.Tensor
    scaling: float


def _restart_phase(vae, ema_te, ema_unet, tokenizer, data: _Data, cfg: ToyTrainConfig, out: Path, log):
    """Phase 2: a warm restart of the learning rate (SGDR-style), starting from phase 1's EMA."""
    if cfg.unet_restart_steps <= 0:
        return ema_te, ema_unet
    return _train_denoiser(
        ema_te, copy.deepcopy(ema_unet), tokenizer, data, cfg, steps=cfg.unet_restart_steps,
        lr=cfg.restart_lr, seed=cfg.seed + 12, log=log,
        checkpoint=lambda te, un: save_pipeline(out / "checkpoint", vae, te, tokenizer, un))


def resume_restart_phase(cfg: ToyTrainConfig, log=print) -> dict:
    """Run phase 2 from a finished phase 1 in cfg.output_dir/toy_sd_phase1 (same result as the
    uninterrupted command: the data are re-rendered from the same seed and re-encoded)."""
    from diffusers import StableDiffusionPipeline

    out = Path(cfg.output_dir)
    t0 = time.time()
    pipe = StableDiffusionPipeline.from_pretrained(str(out / "toy_sd_phase1"), safety_checker=None,
                                                   requires_safety_checker=False)
    scenes = sample_scenes(cfg.n_images, seed=cfg.seed)
    means, stds = _encode(pipe.vae, to_tensor(render_batch(scenes)))
    data = _Data(scenes, means, stds, float(pipe.vae.config.scaling_factor))
    ema_te, ema_unet = _restart_phase(pipe.vae, pipe.text_encoder, pipe.unet, pipe.tokenizer, data, cfg, out, log)
    save_pipeline(out / "toy_sd", pipe.vae, ema_te, pipe.tokenizer, ema_unet)
    report_path = out / "toy_train_report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {"timings": {}}
    report["config"] = asdict(cfg)
    report["timings"]["unet_restart_s"] = time.time() - t0
    report["timings"]["total_s"] = sum(v for k, v in report["timings"].items() if k.endswith("_s") and k != "total_s")
    report_path.write_text(json.dumps(report, indent=2))
    return report


@torch.no_grad()
def conditioning_gain(unet, text_encoder, tokenizer, data: "_Data", timesteps=(300, 600, 900), n: int = 64,
                      seed: int = 7) -> float:
    """How much the prompt helps the UNet: 1 - (eps-MSE with "a <object>") / (eps-MSE with "").

    Measured on fixed training latents and noise at a few timesteps; near 0 means the UNet
    ignores the text (the symptom of the first toy model), larger is stronger conditioning."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(data.scenes), (n,), generator=gen)
    latents = data.means[idx] * data.scaling
    captions = [f"a {OBJECT_BY_NAME[data.scenes[i].object].words[0]}" for i in idx.tolist()]
    ids = tokenizer(captions + [""] * n, padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids
    hidden = text_encoder(ids).last_hidden_state
    sched = build_train_scheduler()
    cond, uncond = 0.0, 0.0
    for t_value in timesteps:
        t = torch.full((n,), t_value)
        noise = torch.randn(latents.shape, generator=gen)
        noisy = sched.add_noise(latents, noise, t)
        pred = unet(torch.cat([noisy, noisy]), torch.cat([t, t]), hidden).sample
        cond += F.mse_loss(pred[:n], noise).item()
        uncond += F.mse_loss(pred[n:], noise).item()
    return 1.0 - cond / uncond


def _train_denoiser(text_encoder, unet, tokenizer, data: _Data, cfg: ToyTrainConfig, steps: int, lr: float,
                    seed: int, log, checkpoint=None):
    """Train the UNet under the frozen text encoder on random captions; returns the text encoder
    and the UNet's EMA copy."""
    noise_sched = build_train_scheduler()
    text_encoder.eval()
    ema_unet = copy.deepcopy(unet)
    params = list(unet.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        p = (step - cfg.warmup_steps) / max(1, steps - cfg.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    alphas_cumprod = noise_sched.alphas_cumprod
    snr = alphas_cumprod / (1 - alphas_cumprod)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed + 1)
    means, stds, scenes, scaling = data.means, data.stds, data.scenes, data.scaling
    # The text encoder is frozen and the caption grammar is finite: encode each caption once.
    cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def encode_cached(captions: list[str]) -> torch.Tensor:
        new = [c for c in dict.fromkeys(captions) if c not in cache]
        if new:
            ids = tokenizer(new, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                            return_tensors="pt").input_ids
            cache.update(zip(new, text_encoder(ids).last_hidden_state))
        return torch.stack([cache[c] for c in captions])

    t0 = time.time()
    unet.train()
    for step in range(steps):
        idx = torch.randint(0, len(scenes), (cfg.unet_batch,), generator=gen)
        latents = (means[idx] + stds[idx] * torch.randn(means[idx].shape, generator=gen)) * scaling
        captions = [training_caption_and_labels(scenes[i], rng)[0] for i in idx.tolist()]
        hidden = encode_cached(captions)
        noise = torch.randn(latents.shape, generator=gen)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (cfg.unet_batch,), generator=gen)
        noisy = noise_sched.add_noise(latents, noise, t)
        pred = unet(noisy, t, hidden).sample
        # Min-SNR weighting (Hang et al. 2023) converges much faster for small step budgets.
        weight = torch.clamp(snr[t], max=cfg.min_snr_gamma) / snr[t]
        loss = (weight * F.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        _ema_update(ema_unet, unet, decay)
        if step % 100 == 0 or step == steps - 1:
            log(f"unet step {step}/{steps} loss {loss.item():.4f} lr {sched.get_last_lr()[0]:.2e} "
                f"({time.time() - t0:.0f}s)")
        if (step + 1) % 500 == 0 or step == steps - 1:
            ema_unet.eval()
            log(f"unet step {step + 1} conditioning gain (EMA) "
                f"{conditioning_gain(ema_unet, text_encoder, tokenizer, data):.4f}")
        if checkpoint is not None and (step + 1) % 1000 == 0 and step + 1 < steps:
            checkpoint(text_encoder, ema_unet)
    ema_unet.eval()
    return text_encoder, ema_unet


def save_pipeline(path: Path, vae, text_encoder, tokenizer, unet) -> None:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=build_sampling_scheduler(), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(path), safe_serialization=True)
    standardise_text_encoder_keys(Path(path) / "text_encoder" / "model.safetensors")


def standardise_text_encoder_keys(file: Path) -> None:
    """Write the text encoder with the usual 'text_model.' key prefix.

    transformers 5 saves CLIPTextModel without it; transformers 4 (and most other loaders of SD
    text encoders) need it, and transformers 5 reads both."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(file))
    if all(k.startswith("text_model.") for k in state):
        return
    save_file({k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in state.items()}, str(file),
              metadata={"format": "pt"})
