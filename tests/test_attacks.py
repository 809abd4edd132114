"""The attacks of unlearn_core.research.attacks on the embedded toy model (no mocks).

Success rates are compared with a control on the same model and the same seeds, so the tests hold
for a weak and a strong toy model alike: on the base model an attack must find the concept
clearly more often than the same attack aimed at an unrelated object (prompt attacks), or than
the same attack with no optimisation steps from an unrelated starting point (learned token, soft
prompt). Budgets are checked by counting UNet passes and images, not by wall time."""

import dataclasses

import numpy as np
import pytest

from unlearn_core.research import attacks as A
from unlearn_core.research.toyworld import captions
from unlearn_core.research.toyworld.concepts import OBJECT_BY_NAME

CONCEPT, CONTROL = "zigzag", "square"  # different superclasses; the control is never drawn as the concept
# Small budgets: the tests run on a CPU.
CFG = A.AttackConfig(images=12, sampling_steps=10, shots=5, token_steps=30, token_lr=2e-2, token_init=CONTROL,
                     soft_prompt_steps=30, seed=0)
MARGIN = 0.25


@pytest.fixture
def unet_passes(toy_pipe):
    """Counts UNet forward passes and the images in each (a forward hook on the real UNet)."""
    calls = []
    handle = toy_pipe.unet.register_forward_hook(lambda m, args, out: calls.append(out.sample.shape[0]))
    yield calls
    handle.remove()


@pytest.fixture(scope="module")
def shots():
    return A.concept_images(CONCEPT, CFG.shots, seed=3)


@pytest.mark.slow
@pytest.mark.parametrize("attack", ["paraphrase", "composition"])
def test_prompt_attacks_find_the_concept_more_often_than_a_control(toy_pipe, classifier, attack):
    prompts = {"paraphrase": A.paraphrase_prompts, "composition": A.composition_prompts}[attack]
    hit = A.prompt_attack(toy_pipe, classifier, CONCEPT, prompts(CONCEPT), CFG, attack)
    control = A.prompt_attack(toy_pipe, classifier, CONCEPT, prompts(CONTROL), CFG, attack)
    print(f"{attack}: {hit.success_rate:.3f} vs control {control.success_rate:.3f}")
    assert hit.success_rate >= control.success_rate + MARGIN


@pytest.mark.slow
def test_learned_token_finds_the_concept_its_starting_word_does_not_show(toy_pipe, classifier, shots):
    # 30 steps found the zigzag in 2 of 12 images on the 10000-step toy model (0 at 0 steps): a token
    # started at "square" needs more steps on a model that holds its words more firmly
    trained = A.learned_token_attack(toy_pipe, classifier, CONCEPT, shots, dataclasses.replace(CFG, token_steps=80))
    untrained = A.learned_token_attack(toy_pipe, classifier, CONCEPT, shots, dataclasses.replace(CFG, token_steps=0))
    print(f"learned token: {trained.success_rate:.3f} vs 0 steps {untrained.success_rate:.3f}")
    assert trained.success_rate >= untrained.success_rate + MARGIN


@pytest.mark.slow
def test_soft_prompt_finds_the_concept_its_starting_prompt_does_not_show(toy_pipe, classifier, shots):
    start = A.word_prompt(CONTROL)
    trained = A.soft_prompt_attack(toy_pipe, classifier, CONCEPT, shots, start, CFG)
    untrained = A.soft_prompt_attack(toy_pipe, classifier, CONCEPT, shots, start,
                                     dataclasses.replace(CFG, soft_prompt_steps=0))
    print(f"soft prompt: {trained.success_rate:.3f} vs 0 steps {untrained.success_rate:.3f}")
    assert trained.success_rate >= untrained.success_rate + MARGIN


TINY = A.AttackConfig(images=3, sampling_steps=2, shots=2, token_steps=3, soft_prompt_steps=2, batch_size=2,
                      sample_batch=2)


@pytest.mark.slow
def test_budgets_bound_the_work(toy_pipe, classifier, unet_passes):
    # prompt attacks: exactly `images` images (more prompts than images), sampled in chunks of sample_batch;
    # every sampler step is one pass over the chunk with and without the prompt (guidance)
    r = A.paraphrase_attack(toy_pipe, classifier, CONCEPT, TINY)
    assert len(A.paraphrase_prompts(CONCEPT)) > TINY.images
    assert r.images.shape[0] == len(r.prompts) == TINY.images and r.optimisation_steps == 0
    assert unet_passes == [4, 4, 2, 2]  # 2 steps x chunk of 2 (x2 for guidance), 2 steps x chunk of 1
    # learned token: token_steps training passes of batch_size, then the same sampling
    unet_passes.clear()
    r = A.learned_token_attack(toy_pipe, classifier, CONCEPT, A.concept_images(CONCEPT, 2), TINY)
    assert unet_passes == [2] * TINY.token_steps + [4, 4, 2, 2]
    assert r.images.shape[0] == TINY.images and all("*" in p for p in r.prompts)
    # soft prompt
    unet_passes.clear()
    r = A.soft_prompt_attack(toy_pipe, classifier, CONCEPT, A.concept_images(CONCEPT, 2), "a square", TINY)
    assert unet_passes == [2] * TINY.soft_prompt_steps + [4, 4, 2, 2]
    assert r.optimisation_steps == TINY.soft_prompt_steps and r.images.shape[0] == TINY.images


@pytest.mark.slow
@pytest.mark.parametrize("attack", A.ATTACKS)
def test_same_seed_same_images_other_seed_other_images(toy_pipe, classifier, attack):
    a = A.run_attack(attack, toy_pipe, classifier, CONCEPT, TINY)
    b = A.run_attack(attack, toy_pipe, classifier, CONCEPT, TINY)
    c = A.run_attack(attack, toy_pipe, classifier, CONCEPT, dataclasses.replace(TINY, seed=1))
    assert np.array_equal(a.images, b.images) and a.success_rate == b.success_rate
    assert not np.array_equal(a.images, c.images)


def test_attack_prompts_for_objects_and_styles():
    para = A.paraphrase_prompts("star")
    assert para and all("star" in p for p in para)
    words = OBJECT_BY_NAME["star"].words
    trained = {captions.fill_template(t, w) for t in captions._TRAIN_TEMPLATES_PLAIN for w in words}
    assert not trained & set(para), "a paraphrase is a training caption"
    for prompts in (A.paraphrase_prompts("striped"), A.composition_prompts("striped"), A.composition_prompts("star")):
        word = "striped" if "striped" in prompts[0] else "star"
        assert len(prompts) >= 5 and all(word in p for p in prompts)
    imgs = A.concept_images("striped", 3)
    assert len(imgs) == 3 and imgs[0].dtype == np.uint8


def test_bad_inputs_fail_clearly(toy_pipe, classifier):
    with pytest.raises(ValueError, match="unknown toy-world concept 'dragon'"):
        A.paraphrase_attack(toy_pipe, classifier, "dragon", TINY)
    with pytest.raises(ValueError, match="object or style; 'symbol' is a superclass"):
        A.composition_attack(toy_pipe, classifier, "symbol", TINY)
    with pytest.raises(ValueError, match="images must be at least 1"):
        A.paraphrase_attack(toy_pipe, classifier, CONCEPT, dataclasses.replace(TINY, images=0))
    with pytest.raises(ValueError, match="needs images of the concept"):
        A.learned_token_attack(toy_pipe, classifier, CONCEPT, [], TINY)
    with pytest.raises(ValueError, match="unknown attack 'jailbreak'"):
        A.run_attack("jailbreak", toy_pipe, classifier, CONCEPT, TINY)
