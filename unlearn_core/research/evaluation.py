"""Score a text-to-image pipeline on named concepts with the toy-world classifier.

For each concept, generate N images per prompt with fixed per-image seeds (image i of a prompt
always starts from the same noise, so before/after images are directly comparable), classify
them, and report
- per-concept accuracy: the fraction of images that show the concept (for an erased concept this
  is the residual accuracy, lower is better; for a retained one higher is better);
- superclass coherence for erased objects: the fraction that show another member of the
  concept's superclass (a coherent replacement rather than noise);
- a Fréchet distance between the classifier's features of generated images and of freshly
  rendered images of the same concepts (the toy FID);
- an image grid.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from ..comparison import image_grid, save_grid
from ..sampling import SamplingConfig, sampling_scheduler
from .toyworld import captions
from .toyworld.classifier import Predictions, predict
from .toyworld.concepts import OBJECT_BY_NAME, check_concept, concept_kind, members_of
from .toyworld.render import render_batch, sample_scene


@dataclass
class PromptSet:
    """The prompts that should show one concept, and whether the concept is erased or retained."""

    concept: str
    prompts: list[str]
    erased: bool = False


@dataclass
class EvaluationResult:
    concept_accuracy: dict[str, float]
    erased: list[str]
    retained: list[str]
    residual_accuracy_total: float | None
    retained_accuracy: float | None
    superclass_coherence: dict[str, float]
    toy_fid: float
    images_per_concept: dict[str, int]
    sampling: dict
    seconds: float
    predicted_objects: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))


def toy_prompt_sets(erased: list[str] = (), retained: list[str] = ()) -> list[PromptSet]:
    """Default prompts for toy-world concepts: 'a <object>' for objects and superclasses, and
    '<object> in <style> style' over all objects for a style (colours likewise)."""
    from .toyworld.concepts import OBJECT_NAMES

    sets = []
    for names, is_erased in ((erased, True), (retained, False)):
        for name in names:
            check_concept(name)
            kind = concept_kind(name)
            if kind in ("object", "superclass"):
                prompts = [captions.object_prompt(name)]
            elif kind == "style":
                prompts = [captions.styled_prompt(o, name) for o in OBJECT_NAMES]
            else:
                prompts = [f"a {name} {OBJECT_BY_NAME[o].words[0]}" for o in OBJECT_NAMES]
            sets.append(PromptSet(name, prompts, is_erased))
    return sets


@torch.no_grad()
def generate(pipe, prompts: list[str], cfg: SamplingConfig, negative_prompt: str | None = None,
             progress: Callable[[int, int], None] | None = None, cache: dict | None = None) -> np.ndarray:
    """cfg.images_per_prompt images per prompt, as an N x H x W x 3 uint8 array, prompt-major.

    Image i of every prompt is drawn with the generator of seed cfg.seed + i (its start noise and,
    for an ancestral sampler, the noise of every step), so it does not depend on the batching;
    with cfg.distinct_seeds, image i of prompt k with seed cfg.seed + k * images_per_prompt + i.
    The pipeline's scheduler is swapped for cfg.sampler while sampling and restored afterwards.

    `cache` (a dict the caller keeps for one pipeline, sampling config and negative prompt) holds
    images by (prompt, seed): those found there are not drawn again, new ones are added."""
    n = cfg.images_per_prompt
    all_jobs = [(p, cfg.seed + (k * n + i if cfg.distinct_seeds else i)) for k, p in enumerate(prompts) for i in range(n)]
    return draw_images(pipe, all_jobs, cfg, negative_prompt, progress, cache)


@torch.no_grad()
def draw_images(pipe, all_jobs: list[tuple[str, int]], cfg: SamplingConfig, negative_prompt: str | None = None,
                progress: Callable[[int, int], None] | None = None, cache: dict | None = None) -> np.ndarray:
    """One image per (prompt, seed) job, in order, as an N x H x W x 3 uint8 array: the sampler of
    `generate` with the seeds chosen by the caller (cfg's images_per_prompt, seed and
    distinct_seeds are not used). `cache` as in `generate`."""
    cache = {} if cache is None else cache
    jobs = [job for job in dict.fromkeys(all_jobs) if job not in cache]
    own_scheduler = pipe.scheduler
    pipe.scheduler = sampling_scheduler(pipe, cfg.sampler)
    try:
        for start in range(0, len(jobs), cfg.batch_size):
            chunk = jobs[start:start + cfg.batch_size]
            gens = [torch.Generator().manual_seed(seed) for _, seed in chunk]
            images = pipe(
                [p for p, _ in chunk], num_inference_steps=cfg.num_inference_steps,
                guidance_scale=cfg.guidance_scale,
                negative_prompt=[negative_prompt] * len(chunk) if negative_prompt else None,
                generator=gens, output_type="np",
            ).images
            for job, image in zip(chunk, (np.clip(images, 0, 1) * 255 + 0.5).astype(np.uint8)):
                cache[job] = image
            if progress:
                progress(min(start + cfg.batch_size, len(jobs)), len(jobs))
    finally:
        pipe.scheduler = own_scheduler
    return np.stack([cache[job] for job in all_jobs])


def concept_hits(pred: Predictions, concept: str) -> np.ndarray:
    """Boolean per image: does the image show `concept`?"""
    kind = concept_kind(concept)
    labels = {"object": pred.object, "superclass": pred.superclass, "colour": pred.colour, "style": pred.style}[kind]
    return np.array([lab == concept for lab in labels])


def superclass_coherence(pred: Predictions, concept: str) -> float | None:
    """For an object: the fraction of images showing another member of its superclass."""
    if concept_kind(concept) != "object":
        return None
    sup = OBJECT_BY_NAME[concept].superclass
    return float(np.mean([s == sup and o != concept for s, o in zip(pred.superclass, pred.object)]))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (rows are samples)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr(sqrt(A B)) = sum of sqrt of eigenvalues of sqrt(A) B sqrt(A), which is symmetric PSD.
    w, v = np.linalg.eigh(cov_a)
    sqrt_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    eig = np.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a)
    tr_sqrt = np.sqrt(np.clip(eig, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_sqrt)


def reference_images(concepts: list[str], n_per_concept: int, seed: int = 777) -> np.ndarray:
    """Freshly rendered images that show each concept (object, superclass, style or colour)."""
    rng = np.random.default_rng(seed)
    scenes = []
    for c in concepts:
        kind = concept_kind(c)
        for _ in range(n_per_concept):
            if kind == "object":
                scenes.append(sample_scene(rng, object=c))
            elif kind == "superclass":
                members = members_of(c)
                scenes.append(sample_scene(rng, object=members[rng.integers(len(members))]))
            elif kind == "style":
                scenes.append(sample_scene(rng, style=c))
            else:
                scenes.append(sample_scene(rng, colour=c))
    return render_batch(scenes)


def evaluate(pipe, classifier, prompt_sets: list[PromptSet], cfg: SamplingConfig | None = None,
             grid_path: str | Path | None = None, progress: Callable[[int, int], None] | None = None,
             fid_concepts: list[str] | None = None, image_cache: dict | None = None) -> tuple[EvaluationResult, np.ndarray]:
    """Generate, classify and score. Returns the result and the images (set-major, prompt-major).

    The toy FID compares images of `fid_concepts` (default: the retained concepts, or all if none
    are retained) with renders of those concepts. `image_cache`: see `generate` (same pipeline and
    sampling config only)."""
    cfg = cfg or SamplingConfig()
    if not prompt_sets:
        raise ValueError("nothing to evaluate: give at least one concept with prompts")
    erased = [s.concept for s in prompt_sets if s.erased]
    retained = [s.concept for s in prompt_sets if not s.erased]
    fid_concepts = fid_concepts or retained or erased
    n_fid = sum(len(s.prompts) for s in prompt_sets if s.concept in fid_concepts) * cfg.images_per_prompt
    if n_fid < 2:
        raise ValueError(f"the toy FID needs at least 2 images of {', '.join(fid_concepts)}, this would draw {n_fid}: "
                         f"raise images_per_prompt (--images-per-prompt)")
    t0 = time.time()
    all_prompts = [p for s in prompt_sets for p in s.prompts]
    images = generate(pipe, all_prompts, cfg, progress=progress, cache=image_cache)
    pred = predict(classifier, images)
    accuracy, coherence, counts, confusion = {}, {}, {}, {}
    features: dict[str, np.ndarray] = {}
    start = 0
    for s in prompt_sets:
        n = len(s.prompts) * cfg.images_per_prompt
        sub = Predictions(pred.object[start:start + n], pred.superclass[start:start + n], pred.colour[start:start + n],
                          pred.style[start:start + n], pred.object_confidence[start:start + n],
                          pred.features[start:start + n])
        accuracy[s.concept] = float(concept_hits(sub, s.concept).mean())
        counts[s.concept] = n
        features[s.concept] = sub.features
        confusion[s.concept] = {o: sub.object.count(o) for o in sorted(set(sub.object))}
        if s.erased:
            coh = superclass_coherence(sub, s.concept)
            if coh is not None:
                coherence[s.concept] = coh
        start += n
    gen_feats = np.concatenate([features[c] for c in fid_concepts])
    ref = reference_images(fid_concepts, max(2, len(gen_feats) // len(fid_concepts)))
    fid = frechet_distance(gen_feats, predict(classifier, ref).features)
    result = EvaluationResult(
        concept_accuracy=accuracy, erased=erased, retained=retained,
        residual_accuracy_total=float(np.mean([accuracy[c] for c in erased])) if erased else None,
        retained_accuracy=float(np.mean([accuracy[c] for c in retained])) if retained else None,
        superclass_coherence=coherence, toy_fid=fid, images_per_concept=counts, sampling=asdict(cfg),
        seconds=time.time() - t0, predicted_objects=confusion,
    )
    if grid_path:
        save_grid(images, rows=len(all_prompts), path=grid_path)
    return result, images
