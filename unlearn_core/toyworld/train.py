"""`concept-unlearn toy-train`: build the embedded toy model and classifier from scratch.

Stages: render a data set, train the classifier, train the VAE, encode the data set to latents,
then train the text encoder and the UNet together on random captions (with caption dropout so
classifier-free guidance works), keeping an EMA of their weights. Everything is seeded.
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

from .captions import all_caption_words, training_caption
from .classifier import held_out_accuracy, save_classifier, to_tensor, train_classifier
from .model import (ToyModelConfig, build_sampling_scheduler, build_text_encoder, build_train_scheduler,
                    build_unet, build_vae)
from .render import render_batch, sample_scenes
from .tokenizer import build_tokenizer


@dataclass
class ToyTrainConfig:
    output_dir: str
    seed: int = 0
    n_images: int = 40000
    classifier_steps: int = 2000
    classifier_images: int = 40000
    vae_steps: int = 700
    vae_batch: int = 32
    unet_steps: int = 3400
    # phase 2: warm restart of the learning rate from phase 1's EMA weights
    unet_restart_steps: int = 2400
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


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), model.parameters()):
            pe.lerp_(p, 1.0 - decay)


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

    tokenizer = build_tokenizer(all_caption_words(), out / "tokenizer")
    text_encoder = build_text_encoder(model_cfg, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
    unet = build_unet(model_cfg, vae_scale=2 ** (len(model_cfg.vae_channels) - 1))
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
    report = {"config": asdict(cfg), "timings": timings, "classifier_held_out_accuracy": cls_acc}
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
        copy.deepcopy(ema_te), copy.deepcopy(ema_unet), tokenizer, data, cfg, steps=cfg.unet_restart_steps,
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


def _train_denoiser(text_encoder, unet, tokenizer, data: _Data, cfg: ToyTrainConfig, steps: int, lr: float,
                    seed: int, log, checkpoint=None):
    """Train text encoder + UNet jointly on random captions; returns their EMA copies."""
    noise_sched = build_train_scheduler()
    ema_te, ema_unet = copy.deepcopy(text_encoder), copy.deepcopy(unet)
    params = list(text_encoder.parameters()) + list(unet.parameters())
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
    t0 = time.time()
    unet.train()
    text_encoder.train()
    for step in range(steps):
        idx = torch.randint(0, len(scenes), (cfg.unet_batch,), generator=gen)
        latents = (means[idx] + stds[idx] * torch.randn(means[idx].shape, generator=gen)) * scaling
        captions = [training_caption(scenes[i], rng) for i in idx.tolist()]
        ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids
        noise = torch.randn(latents.shape, generator=gen)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (cfg.unet_batch,), generator=gen)
        noisy = noise_sched.add_noise(latents, noise, t)
        hidden = text_encoder(ids).last_hidden_state
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
        _ema_update(ema_te, text_encoder, decay)
        if step % 100 == 0 or step == steps - 1:
            log(f"unet step {step}/{steps} loss {loss.item():.4f} lr {sched.get_last_lr()[0]:.2e} "
                f"({time.time() - t0:.0f}s)")
        if checkpoint is not None and (step + 1) % 1000 == 0 and step + 1 < steps:
            checkpoint(ema_te, ema_unet)
    ema_te.eval()
    ema_unet.eval()
    return ema_te, ema_unet


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
