import json

import numpy as np
import pytest
from PIL import Image

from unlearn_core.research.evaluation import (PromptSet, SamplingConfig, concept_hits, evaluate, frechet_distance,
                                     generate, reference_images, superclass_coherence, toy_prompt_sets)
from unlearn_core.research.toyworld.classifier import held_out_accuracy, predict
from unlearn_core.research.toyworld.concepts import OBJECT_NAMES


def test_frechet_distance_on_known_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    b = rng.normal(size=(4000, 3)) + np.array([2.0, 0.0, 0.0])
    c = rng.normal(size=(4000, 3)) * 2.0
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, b) == pytest.approx(4.0, rel=0.05)  # |mu_a - mu_b|^2
    assert frechet_distance(a, c) == pytest.approx(3.0, rel=0.1)  # 3 * (1 + 4 - 2*2)


def test_classifier_accuracy_on_fresh_renders(classifier):
    acc = held_out_accuracy(classifier, n=1000, seed=424242)
    assert acc["object"] >= 0.97
    assert acc["style"] >= 0.97
    assert acc["colour"] >= 0.97
    assert acc["superclass"] >= 0.97


@pytest.mark.slow
def test_renders_decoded_through_the_vae_keep_their_labels(toy_pipe, classifier):
    # The ceiling the VAE puts on generated images; scoring raw [-1, 1] decoder output or
    # skipping the decode would give near-chance numbers.
    from unlearn_core.research.toyworld.train import vae_reconstruction_accuracy

    acc = vae_reconstruction_accuracy(toy_pipe.vae, classifier, n=500)
    assert acc["object"] >= 0.93 and acc["style"] >= 0.93, acc


def test_metrics_on_rendered_images_and_on_noise(classifier):
    renders = reference_images(["star"], 64, seed=3)
    pred = predict(classifier, renders)
    assert concept_hits(pred, "star").mean() >= 0.95
    assert superclass_coherence(pred, "star") <= 0.05  # the renders are stars, not other symbols
    noise = np.random.default_rng(0).integers(0, 256, size=(256, 32, 32, 3), dtype=np.uint8)
    pred_noise = predict(classifier, noise)
    hits = [concept_hits(pred_noise, o).mean() for o in OBJECT_NAMES]
    # Noise is not any particular object: for almost every object the hit rate is at or below chance.
    # (The classifier has no "no object" class, so one class absorbs most noise images — see the
    # README's known limitations.)
    assert np.median(hits) <= 1 / len(OBJECT_NAMES)
    assert sum(h > 0.2 for h in hits) <= 1
    ref = predict(classifier, reference_images(["star", "circle"], 128, seed=9)).features
    same = predict(classifier, reference_images(["star", "circle"], 128, seed=10)).features
    assert frechet_distance(same, ref) * 5 < frechet_distance(pred_noise.features, ref)


def test_prompt_sets_for_toy_concepts():
    sets = toy_prompt_sets(["star", "striped"], ["circle"])
    assert [s.concept for s in sets] == ["star", "striped", "circle"]
    assert sets[0].prompts == ["a star"] and sets[0].erased
    assert len(sets[1].prompts) == len(OBJECT_NAMES) and all("striped style" in p for p in sets[1].prompts)
    assert not sets[2].erased
    with pytest.raises(ValueError, match="Known objects"):
        toy_prompt_sets(["pentagram"])


@pytest.mark.slow
def test_generation_is_seeded_per_image(toy_pipe):
    cfg = SamplingConfig(images_per_prompt=2, num_inference_steps=5, seed=11)
    a = generate(toy_pipe, ["a star", "a circle"], cfg)
    b = generate(toy_pipe, ["a circle"], SamplingConfig(images_per_prompt=2, num_inference_steps=5, seed=11, batch_size=1))
    assert a.shape == (4, 32, 32, 3) and a.dtype == np.uint8
    assert np.abs(a[2:].astype(int) - b.astype(int)).max() <= 1  # same seeds -> same images, whatever the batching
    assert not np.array_equal(a[0], a[1])


@pytest.mark.slow
def test_distinct_seeds_give_every_image_its_own_noise(toy_pipe):
    """Image i of prompt k is drawn from seed + k * images_per_prompt + i: the circle's two images
    (prompt 1) are what seeds 13 and 14 draw with shared seeds, not what seeds 11 and 12 draw."""
    kwargs = dict(images_per_prompt=2, num_inference_steps=5)
    distinct = generate(toy_pipe, ["a star", "a circle"], SamplingConfig(**kwargs, seed=11, distinct_seeds=True))
    from_13 = generate(toy_pipe, ["a circle"], SamplingConfig(**kwargs, seed=13))
    from_11 = generate(toy_pipe, ["a circle"], SamplingConfig(**kwargs, seed=11))
    assert np.abs(distinct[2:].astype(int) - from_13.astype(int)).max() <= 1
    assert np.abs(distinct[2:].astype(int) - from_11.astype(int)).mean() > 5


@pytest.mark.slow
def test_samplers_are_swapped_in_for_sampling_and_the_pipeline_keeps_its_own(toy_pipe):
    """The default sampler is Euler ancestral; `sampler=None` is the pipeline's own scheduler (for the
    toy model DPM-Solver++, so naming it gives the same images); the pipeline's scheduler object is
    back in place afterwards."""
    own = toy_pipe.scheduler
    assert type(own).__name__ == "DPMSolverMultistepScheduler"
    kwargs = dict(images_per_prompt=2, num_inference_steps=6, seed=3)
    ancestral = generate(toy_pipe, ["a heart"], SamplingConfig(**kwargs))
    assert toy_pipe.scheduler is own
    named = generate(toy_pipe, ["a heart"], SamplingConfig(**kwargs, sampler="dpm_solver++"))
    pipeline = generate(toy_pipe, ["a heart"], SamplingConfig(**kwargs, sampler=None))
    assert np.abs(named.astype(int) - pipeline.astype(int)).max() <= 1
    assert np.abs(ancestral.astype(int) - pipeline.astype(int)).mean() > 5
    assert toy_pipe.scheduler is own


def test_sampling_config_rejects_unknown_samplers_and_empty_budgets():
    with pytest.raises(ValueError, match="unknown sampler 'heun'.*euler_ancestral"):
        SamplingConfig(sampler="heun")
    with pytest.raises(ValueError, match="num_inference_steps must be at least 1"):
        SamplingConfig(num_inference_steps=0)


@pytest.mark.slow
def test_evaluate_end_to_end(toy_pipe, classifier, tmp_path):
    sets = [PromptSet("star", ["a star"], erased=True), PromptSet("circle", ["a circle"])]
    result, images = evaluate(toy_pipe, classifier, sets, SamplingConfig(images_per_prompt=4, num_inference_steps=10),
                              grid_path=tmp_path / "grid.png")
    assert images.shape == (8, 32, 32, 3)
    assert set(result.concept_accuracy) == {"star", "circle"}
    assert result.erased == ["star"] and result.retained == ["circle"]
    assert result.residual_accuracy_total == result.concept_accuracy["star"]
    assert "star" in result.superclass_coherence and result.toy_fid >= 0
    result.save_json(tmp_path / "m.json")
    back = json.loads((tmp_path / "m.json").read_text())
    assert back["concept_accuracy"] == result.concept_accuracy
    grid = Image.open(tmp_path / "grid.png")
    assert grid.size == (2 * (4 * 34 + 2), 2 * (2 * 34 + 2))


@pytest.mark.slow
def test_generate_reuses_cached_images_by_prompt_and_seed(toy_pipe):
    cfg = SamplingConfig(images_per_prompt=2, num_inference_steps=4, seed=5)
    cache = {}
    first = generate(toy_pipe, ["a star", "a circle"], cfg, cache=cache)
    assert set(cache) == {("a star", 5), ("a star", 6), ("a circle", 5), ("a circle", 6)}
    calls = []
    # "a circle" (both seeds) comes from the cache; only "a heart" is drawn, in one batch of two
    again = generate(toy_pipe, ["a circle", "a heart"], cfg, cache=cache, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(2, 2)]
    assert np.array_equal(again[:2], first[2:])
    assert np.array_equal(again[2:], generate(toy_pipe, ["a heart"], cfg))
