import copy

import pytest
import torch

from unlearn_core.concept_set import Concept, ConceptSet, ConceptSetError
from unlearn_core.layer_selection import select_weights
from unlearn_core.masks import MaskConfig
from unlearn_core.methods import method_config
from unlearn_core.training_data import prepare_concept_data, prepare_retain_data
from unlearn_core.unet_unlearning import UnetUnlearnConfig, UnlearnCancelled, unlearn_unet, weights_hash

CONCEPTS = ConceptSet([Concept("star", "symbol", templates=["a {}"]),
                       Concept("hexagon", "polygon", templates=["a {}"])], ["a circle"])


def short_config(**kw):
    base = dict(steps_per_concept=6, batch_size=2, lr=1e-3, images_per_concept=4, retain_images_per_prompt=2,
                sampling_steps=4, mask=MaskConfig(warmup_steps=2, update_interval=2))
    base.update(kw)
    return UnetUnlearnConfig(**base)


@pytest.fixture(scope="module")
def data(adapter):
    cfg = short_config()
    d = [prepare_concept_data(adapter, c, cfg.images_per_concept, seed=i, steps=4) for i, c in enumerate(CONCEPTS.concepts)]
    r = prepare_retain_data(adapter, CONCEPTS.retain_prompts, 2, seed=5, steps=4)
    return d, r


@pytest.mark.slow
def test_training_data_shapes(adapter, data):
    d, r = data
    assert d[0].latents.shape == (4, *adapter.latent_shape)
    assert d[0].superclass_latents.shape == (4, *adapter.latent_shape)
    assert d[0].cond.shape[0] == 1 and r.latents.shape[0] == 2


@pytest.mark.slow
def test_only_target_layers_change_and_base_is_untouched(adapter, data):
    before = weights_hash(adapter.denoiser_weights())
    result = unlearn_unet(adapter, CONCEPTS, short_config(), data=data[0], retain=data[1])
    assert weights_hash(adapter.denoiser_weights()) == before
    expected = set(select_weights(adapter.module_types(), "cross_attention"))
    assert set(result.deltas) == expected
    assert all(".attn2." in n for n in result.deltas)
    assert sum(float(d.abs().sum()) for d in result.deltas.values()) > 0
    assert result.train_steps == 12 and len(result.stats) == 12 + 2 * 2


@pytest.mark.slow
def test_same_seed_same_deltas_and_other_seed_differs(adapter, data):
    a = unlearn_unet(adapter, CONCEPTS, short_config(), data=data[0], retain=data[1])
    b = unlearn_unet(adapter, CONCEPTS, short_config(), data=data[0], retain=data[1])
    c = unlearn_unet(adapter, CONCEPTS, short_config(seed=1), data=data[0], retain=data[1])
    for n in a.deltas:
        assert torch.equal(a.deltas[n], b.deltas[n])
    assert any(not torch.equal(a.deltas[n], c.deltas[n]) for n in a.deltas)


@pytest.mark.slow
def test_mask_density_constant_and_masked_entries_untouched(adapter, data):
    cfg = short_config(steps_per_concept=8, mask=MaskConfig(density=0.3, warmup_steps=2, update_interval=2,
                                                              turnover=0.2))
    single = ConceptSet(CONCEPTS.concepts[:1], CONCEPTS.retain_prompts)
    result = unlearn_unet(adapter, single, cfg, data=data[0][:1], retain=data[1])
    train_rows = [r for r in result.stats if r["phase"] == "train"]
    assert all(abs(r["density"] - 0.3) < 0.01 for r in train_rows)
    assert any(r["turnover"] > 0 for r in train_rows)
    # entries never in the mask stay exactly zero: the union of masks over time is < 100%
    nonzero = sum(int((d != 0).sum()) for d in result.deltas.values())
    total = sum(d.numel() for d in result.deltas.values())
    assert 0.3 * total * 0.9 < nonzero < 0.75 * total


@pytest.mark.slow
def test_distillation_term_is_nonzero_and_changes_the_result(adapter, data):
    with_kd = unlearn_unet(adapter, CONCEPTS, short_config(), data=data[0], retain=data[1])
    without = unlearn_unet(adapter, CONCEPTS, method_config("paper_code", short_config()), data=data[0], retain=data[1])
    kd_terms = [r["distillation_loss"] for r in with_kd.stats if "distillation_loss" in r]
    assert kd_terms and max(kd_terms) > 0
    assert all("distillation_loss" not in r for r in without.stats)
    assert any(not torch.equal(with_kd.deltas[n], without.deltas[n]) for n in with_kd.deltas)


@pytest.mark.slow
def test_simultaneous_mode_and_baselines_run(adapter, data):
    for method in ("salun", "esd_x", "esd_u", "finetune"):
        cfg = method_config(method, short_config(mode="simultaneous", steps_per_concept=2))
        result = unlearn_unet(adapter, CONCEPTS, cfg, data=data[0], retain=data[1])
        assert result.train_steps == 4
        if method == "esd_u":
            assert all("attn2" not in n for n in result.deltas)
        assert all(torch.isfinite(d).all() for d in result.deltas.values())


@pytest.mark.slow
def test_cancel_raises_and_leaves_the_model_alone(adapter, data):
    before = weights_hash(adapter.denoiser_weights())
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(UnlearnCancelled):
        unlearn_unet(adapter, CONCEPTS, short_config(), data=data[0], retain=data[1], should_cancel=cancel)
    assert weights_hash(adapter.denoiser_weights()) == before


@pytest.mark.slow
def test_v_prediction_path(toy_pipe, data):
    from unlearn_core.adapters.diffusers_adapter import DiffusersAdapter

    pipe = copy.copy(toy_pipe)
    pipe.scheduler = type(toy_pipe.scheduler).from_config({**toy_pipe.scheduler.config, "prediction_type": "v_prediction"})
    adapter = DiffusersAdapter(pipe)
    assert adapter.prediction_type == "v_prediction"
    x = torch.randn(2, *adapter.latent_shape)
    t = torch.tensor([100, 800])
    cond = adapter.encode_prompts(["a star", "a circle"])
    raw = pipe.unet(x, t, encoder_hidden_states=cond).sample
    a = adapter.alphas_cumprod[t].view(-1, 1, 1, 1)
    expected = a.sqrt() * raw + (1 - a).sqrt() * x
    assert torch.allclose(adapter.predict_noise(x, t, cond), expected, atol=1e-6)
    result = unlearn_unet(adapter, CONCEPTS, short_config(steps_per_concept=2), data=data[0], retain=data[1])
    assert all(torch.isfinite(d).all() for d in result.deltas.values())


def test_bad_inputs_are_rejected(adapter):
    with pytest.raises(ConceptSetError, match="empty"):
        unlearn_unet(adapter, ConceptSet([]), short_config())
    with pytest.raises(ConceptSetError, match="itself as superclass"):
        unlearn_unet(adapter, ConceptSet([Concept("star", "star")]), short_config())
    with pytest.raises(ValueError, match="steps_per_concept"):
        unlearn_unet(adapter, CONCEPTS, short_config(steps_per_concept=0))
    with pytest.raises(ValueError, match="unknown target"):
        unlearn_unet(adapter, CONCEPTS, short_config(target="everything"))
    with pytest.raises(ValueError, match="density"):
        unlearn_unet(adapter, CONCEPTS, short_config(mask=MaskConfig(density=0)))
    with pytest.raises(ConceptSetError, match="latents have shape"):
        bad = Concept("star", "symbol", latents=torch.zeros(2, 4, 8, 8))
        unlearn_unet(adapter, ConceptSet([bad]), short_config())


@pytest.mark.slow
def test_user_images_and_latents_are_used(adapter, tmp_path):
    from PIL import Image

    from unlearn_core.research.toyworld.render import render_batch, sample_scenes

    renders = render_batch(sample_scenes(3, seed=1, object="star"))
    Image.fromarray(renders[0]).resize((64, 64)).save(tmp_path / "big.png")
    concept = Concept("star", "symbol", templates=["a {}"], images=[str(tmp_path / "big.png"), renders[1], renders[2]],
                      superclass_latents=torch.zeros(2, *adapter.latent_shape))
    d = prepare_concept_data(adapter, concept, n_images=99, seed=0, steps=2)
    assert d.latents.shape == (3, *adapter.latent_shape)  # the 3 given images, nothing generated
    assert d.superclass_latents.shape == (2, *adapter.latent_shape)
    assert any("resized 64x64 to 32x32" in n for n in d.notes)
    expected = adapter.encode_images(torch.from_numpy(renders[1:]).permute(0, 3, 1, 2).float() / 255)
    assert torch.allclose(d.latents[1:], expected, atol=1e-5)


@pytest.mark.slow
def test_short_forget_run_erases_the_concept_and_keeps_a_retained_one(toy_pipe, adapter, classifier):
    """The whole method on the embedded model: erasing 'star' for a short run makes star prompts stop
    drawing stars, while 'ring' (retained) prompts still draw rings."""
    from unlearn_core.research.evaluation import SamplingConfig, evaluate, toy_prompt_sets
    from unlearn_core.weights_io import merge_unet_deltas

    concepts = ConceptSet([Concept("star", "symbol", templates=["a {}", "a photo of a {}"])], ["a ring", "a heart"])
    cfg = UnetUnlearnConfig(steps_per_concept=60, batch_size=4, lr=1e-3, images_per_concept=12,
                            mask=MaskConfig(warmup_steps=10, update_interval=15), seed=0)
    result = unlearn_unet(adapter, concepts, cfg)
    sets = toy_prompt_sets(erased=["star"], retained=["ring"])
    sampling = SamplingConfig(images_per_prompt=8, seed=99)
    before, _ = evaluate(toy_pipe, classifier, sets, sampling)
    after, _ = evaluate(merge_unet_deltas(toy_pipe, result.deltas), classifier, sets, sampling)
    assert before.concept_accuracy["star"] >= 0.75, "the base model must draw stars for this test to mean anything"
    assert after.concept_accuracy["star"] <= before.concept_accuracy["star"] - 0.5
    assert after.concept_accuracy["ring"] >= before.concept_accuracy["ring"] - 0.25


@pytest.mark.slow
def test_preserving_the_unconditional_prediction_keeps_it_closer_to_the_base(adapter, data):
    """Classifier-free guidance uses the empty prompt's prediction in every image; the distillation
    keeps it at the teacher's unless preserve_unconditional is turned off.

    Measured on 64 noise draws, the drift ratio (with / without) on the 32x32-latent toy model is
    0.64 after 30 steps per concept (0.80 on 8 draws). After 60 steps it flipped (0.020 with,
    0.014 without): in this tiny setting (batch 2, lr 1e-3) the effect is not robust, see README
    Known limitations."""
    from unlearn_core.losses import ConceptAwareLossConfig

    def drift(result):
        gen = torch.Generator().manual_seed(123)
        x = torch.randn(64, *adapter.latent_shape, generator=gen)
        t = torch.randint(0, adapter.num_train_timesteps, (64,), generator=gen)
        uncond = adapter.encode_prompts([""]).expand(64, -1, -1)
        base = adapter.denoiser_weights()
        weights = {n: base[n] + d for n, d in result.deltas.items()}
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(adapter.predict_noise(x, t, uncond, weights),
                                                      adapter.predict_noise(x, t, uncond)))

    runs = {}
    for keep in (True, False):
        cfg = short_config(steps_per_concept=30, loss=ConceptAwareLossConfig(preserve_unconditional=keep))
        runs[keep] = unlearn_unet(adapter, CONCEPTS, cfg, data=data[0], retain=data[1])
    print(f"unconditional drift: {drift(runs[True]):.3g} with, {drift(runs[False]):.3g} without")
    assert drift(runs[True]) < 0.8 * drift(runs[False])


@pytest.mark.slow
def test_adversarial_training_against_soft_prompts_runs_and_changes_the_result(adapter, data):
    plain = unlearn_unet(adapter, CONCEPTS, short_config(), data=data[0], retain=data[1])
    adv = unlearn_unet(adapter, CONCEPTS, short_config(adversarial_interval=3, adversarial_steps=2),
                       data=data[0], retain=data[1])
    assert adv.train_steps == plain.train_steps
    assert any(not torch.equal(adv.deltas[n], plain.deltas[n]) for n in plain.deltas)
    with pytest.raises(ValueError, match="adversarial_interval"):
        short_config(adversarial_interval=-1).validate()


@pytest.mark.slow
def test_retained_prompts_are_held_at_the_base_model_and_earlier_concepts_at_the_teacher(adapter, data):
    """retain_reference="base": the distillation target of retained / empty prompts is the input
    model's prediction (no drift carried over from earlier concepts); concepts erased earlier stay
    at the teacher (base + earlier deltas). "teacher" holds everything at the teacher."""
    from unlearn_core.losses import ConceptAwareLossConfig
    from unlearn_core.unet_unlearning import distillation_target

    earlier = unlearn_unet(adapter, ConceptSet(CONCEPTS.concepts[:1], CONCEPTS.retain_prompts), short_config(),
                           data=data[0][:1], retain=data[1])
    base = adapter.denoiser_weights()
    teacher = {n: base[n] + d for n, d in earlier.deltas.items()}
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, *adapter.latent_shape, generator=gen)
    t = torch.randint(0, adapter.num_train_timesteps, (4,), generator=gen)
    c = adapter.encode_prompts(["a star", "a star", "a circle", ""])
    with torch.no_grad():
        at_teacher = adapter.predict_noise(x, t, c, teacher)
        at_base = adapter.predict_noise(x, t, c)
        mixed = distillation_target(adapter, x, t, c, 2, teacher, "base")
        all_teacher = distillation_target(adapter, x, t, c, 2, teacher, "teacher")
    # batches of 2 and 4 round differently (up to ~1e-6), the references differ by far more
    assert (at_teacher - at_base).abs().max() > 1e-3
    torch.testing.assert_close(mixed[:2], at_teacher[:2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mixed[2:], at_base[2:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(all_teacher, at_teacher, rtol=1e-5, atol=1e-5)

    # in a sequential run the two references give different second-concept edits
    runs = [unlearn_unet(adapter, CONCEPTS, short_config(loss=ConceptAwareLossConfig(retain_reference=ref)),
                         data=data[0], retain=data[1]) for ref in ("base", "teacher")]
    assert any(not torch.equal(runs[0].deltas[n], runs[1].deltas[n]) for n in runs[0].deltas)
    with pytest.raises(ValueError, match="retain_reference"):
        ConceptAwareLossConfig(retain_reference="student").validate()


@pytest.mark.slow
def test_robust_method_edits_every_layer_with_adversarial_training(adapter, data):
    from unlearn_core.methods import ROBUST_DISTILLATION_WEIGHT

    cfg = method_config("dynamic_mask_robust", short_config(steps_per_concept=4))
    assert cfg.target == "all_linear_conv" and cfg.adversarial_interval > 0
    assert cfg.loss.distillation_weight == ROBUST_DISTILLATION_WEIGHT and cfg.mask.kind == "dynamic"
    cfg.adversarial_interval, cfg.adversarial_steps = 2, 2
    result = unlearn_unet(adapter, CONCEPTS, cfg, data=data[0], retain=data[1])
    changed = [n for n, d in result.deltas.items() if d.abs().sum() > 0]
    # beyond cross-attention: convolutions and self-attention move too
    assert any("conv" in n for n in changed) and any("attn1" in n for n in changed)
    assert all(torch.isfinite(d).all() for d in result.deltas.values())


@pytest.mark.slow
def test_superclass_target_reference_and_guidance(adapter, data):
    """The concept-aware target: the superclass prediction of the student (the paper) or of the
    frozen teacher, steered away from the teacher's concept prediction by superclass_guidance g:
    eps(s) - g * (eps_teacher(c) - eps(s))."""
    from unlearn_core.losses import ConceptAwareLossConfig as Loss
    from unlearn_core.unet_unlearning import superclass_target

    base = adapter.denoiser_weights()
    names = select_weights(adapter.module_types(), "cross_attention")
    gen = torch.Generator().manual_seed(1)
    student = {n: base[n] + 0.05 * torch.randn(base[n].shape, generator=gen) for n in names}
    x = torch.randn(2, *adapter.latent_shape, generator=gen)
    t = torch.randint(0, adapter.num_train_timesteps, (2,), generator=gen)
    s, c = adapter.encode_prompts(["a symbol", "a symbol"]), adapter.encode_prompts(["a star", "a star"])
    with torch.no_grad():
        s_student, s_base = adapter.predict_noise(x, t, s, student), adapter.predict_noise(x, t, s)
        c_base = adapter.predict_noise(x, t, c)  # teacher None = the base model
        assert not torch.allclose(s_student, s_base, atol=1e-4)
        for kw, expected in [({}, s_student),
                             ({"superclass_reference": "teacher"}, s_base),
                             ({"superclass_guidance": 2.0}, s_student - 2.0 * (c_base - s_student)),
                             ({"superclass_reference": "teacher", "superclass_guidance": 2.0},
                              s_base - 2.0 * (c_base - s_base))]:
            torch.testing.assert_close(superclass_target(adapter, x, t, s, c, Loss(**kw), student, None), expected,
                                       rtol=1e-4, atol=1e-5)

    # in a run, a frozen (teacher) superclass target and guidance each change the edit
    runs = {name: unlearn_unet(adapter, CONCEPTS, short_config(loss=Loss(**kw)),
                               data=data[0], retain=data[1])
            for name, kw in {"student": {}, "teacher": {"superclass_reference": "teacher"},
                             "guided": {"superclass_reference": "teacher", "superclass_guidance": 1.0}}.items()}
    for other in ("teacher", "guided"):
        assert any(not torch.equal(runs["student"].deltas[n], runs[other].deltas[n]) for n in runs["student"].deltas)
    assert any(not torch.equal(runs["teacher"].deltas[n], runs["guided"].deltas[n]) for n in runs["teacher"].deltas)
    with pytest.raises(ValueError, match="superclass_reference"):
        Loss(superclass_reference="base").validate()
    with pytest.raises(ValueError, match="superclass_guidance"):
        Loss(superclass_guidance=-1).validate()


class _CountingAdapter:
    """The real adapter, counting the rows it predicts without gradients (reference and target passes)."""

    def __init__(self, adapter):
        self._adapter, self.no_grad_rows, self.grad_calls = adapter, 0, []

    def __getattr__(self, name):
        return getattr(self._adapter, name)

    def predict_noise(self, x_t, t, cond, weights=None):
        if not torch.is_grad_enabled():
            self.no_grad_rows += len(x_t)
        else:
            self.grad_calls.append(len(x_t))
        return self._adapter.predict_noise(x_t, t, cond, weights)


@pytest.mark.slow
def test_memory_accounting_counts_the_rows_the_trainer_runs(adapter, data):
    """`student_rows` and `rows_per_pass` (bench memory-accounting) equal the rows the trainer runs with
    gradients, pass by pass, for the first concept and for a later one (which adds the earlier concept's
    rows); a term of weight 0 (the fine-tune's alignment and distillation) runs no rows."""
    from unlearn_core.research.benchmarks.memory_accounting import rows_per_pass, student_rows

    steps, b = 3, 2
    for method, overrides, chunk in (("finetune", dict(alignment_weight=0.0, distillation_weight=0.0), 0),
                                     ("dynamic_mask", {}, 0), ("dynamic_mask", {}, b)):
        cfg = method_config(method, short_config(steps_per_concept=steps, batch_size=b, student_chunk_rows=chunk))
        cfg.loss = type(cfg.loss)(**{**vars(cfg.loss), **overrides})
        counting = _CountingAdapter(adapter)
        unlearn_unet(counting, CONCEPTS, cfg, data=data[0], retain=data[1])
        warmup = [b] * (cfg.mask.warmup_steps if cfg.mask.needs_warmup else 0)  # the concept's rows only
        expected = []
        for earlier in (0, 1):
            rows = student_rows(cfg, b, True, earlier)
            size = rows_per_pass(cfg, rows)
            passes = [size] * (rows // size) + ([rows % size] if rows % size else [])
            expected += warmup + passes * steps
        assert counting.grad_calls == expected, (method, chunk, counting.grad_calls)


@pytest.mark.slow
def test_student_passes_in_chunks_give_the_same_training(adapter, data):
    """student_chunk_rows runs a step's rows in several passes: the same gradient as one pass (and as
    the weighted sum of each term's mean squared error), so the same losses and, to rounding, the same
    deltas."""
    from unlearn_core.unet_unlearning import StudentTerm, student_gradients

    base = adapter.denoiser_weights()
    names = select_weights(adapter.module_types(), "cross_attention")
    deltas = {n: torch.zeros_like(base[n], requires_grad=True) for n in names}
    weights = {n: base[n] + deltas[n] for n in names}
    gen = torch.Generator().manual_seed(0)
    concepts, retain = data
    terms = [StudentTerm(name, w, lat[:2], torch.randint(0, 1000, (2,), generator=gen), cond[:1].expand(2, -1, -1),
                         torch.randn(2, *lat.shape[1:], generator=gen))
             for name, w, lat, cond in (("concept", 1.0, concepts[0].latents, concepts[0].cond),
                                        ("alignment", 0.25, concepts[0].superclass_latents, concepts[0].superclass_cond),
                                        ("distillation", 2.0, retain.latents, retain.cond))]
    params = [deltas[n] for n in names]
    one, values = student_gradients(adapter, terms, weights, params, 0)
    chunked, chunk_values = student_gradients(adapter, terms, weights, params, 4)
    loss = sum(term.weight * torch.nn.functional.mse_loss(adapter.predict_noise(term.x, term.t, term.cond, weights),
                                                          term.reference) for term in terms)
    plain = torch.autograd.grad(loss, params)
    for a, b, c in zip(one, chunked, plain):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-7)
    assert {k: float(v) for k, v in chunk_values.items()} == pytest.approx({k: float(v) for k, v in values.items()})

    runs = {k: unlearn_unet(adapter, CONCEPTS, short_config(student_chunk_rows=k), data=data[0], retain=data[1])
            for k in (0, 3)}
    for a, c in zip(runs[0].stats, runs[3].stats):
        for key in ("loss", "concept_loss", "alignment_loss", "distillation_loss"):
            if key in a:
                assert c[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), key
    # Adam divides by sqrt(v) and the mask ranks entries: 1e-7 gradient differences move a few entries
    num = sum(float((runs[0].deltas[n] - runs[3].deltas[n]).norm() ** 2) for n in runs[0].deltas) ** 0.5
    den = sum(float(d.norm() ** 2) for d in runs[0].deltas.values()) ** 0.5
    assert den > 0 and num / den < 2e-2
    with pytest.raises(ValueError, match="student_chunk_rows"):
        short_config(student_chunk_rows=-1).validate()


@pytest.mark.slow
def test_gradient_checkpointing_gives_the_same_gradient_from_fewer_saved_tensors(adapter, data):
    """Checkpointed blocks recompute their activations in the backward pass with the weights the
    forward ran with (functional_call has returned by then), so the gradient is unchanged, autograd
    keeps far fewer tensors, and the module is left as it was."""
    from unlearn_core.checkpointing import checkpointed

    base = adapter.denoiser_weights()
    names = select_weights(adapter.module_types(), "cross_attention")
    deltas = {n: (0.01 * torch.randn(base[n].shape, generator=torch.Generator().manual_seed(i))).requires_grad_()
              for i, n in enumerate(names)}
    concept = data[0][0]
    gen = torch.Generator().manual_seed(0)
    x0, noise = concept.latents[:2], torch.randn(concept.latents[:2].shape, generator=gen)
    t = torch.tensor([50, 700])
    x_t = adapter.add_noise(x0, noise, t)

    def gradient():
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda s: saved.append(s) or s, lambda s: s):
            weights = {n: base[n] + deltas[n] for n in names}
            loss = ((adapter.predict_noise(x_t, t, concept.cond[:1].expand(2, -1, -1), weights) - noise) ** 2).mean()
        return torch.autograd.grad(loss, [deltas[n] for n in names]), len(saved)

    plain, kept = gradient()
    with checkpointed(adapter.unet) as blocks:
        recomputed, kept_checkpointed = gradient()
    assert blocks > 0 and kept_checkpointed < kept / 2, (blocks, kept, kept_checkpointed)
    for a, b in zip(plain, recomputed):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-9)
    assert not any("forward" in m.__dict__ for m in adapter.unet.modules())

    runs = {flag: unlearn_unet(adapter, CONCEPTS, short_config(gradient_checkpointing=flag), data=data[0],
                               retain=data[1]) for flag in (False, True)}
    for a, c in zip(runs[False].stats, runs[True].stats):
        assert c["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-7)
    assert not any("forward" in m.__dict__ for m in adapter.unet.modules())


@pytest.mark.slow
def test_distillation_bank_computes_the_reference_once_per_concept(adapter, data):
    """With a bank of k draws, the frozen reference runs on k distillation batches per concept instead of
    one per step; every banked target is the reference's prediction for its inputs."""
    from unlearn_core.unet_unlearning import _distillation_bank, _Step, distillation_target

    steps, bank, b = 6, 2, 2
    counts = {}
    for size in (0, bank):
        counting = _CountingAdapter(adapter)
        unlearn_unet(counting, CONCEPTS, short_config(steps_per_concept=steps, distillation_bank=size),
                     data=data[0], retain=data[1])
        counts[size] = counting.no_grad_rows
    # distillation rows per step: retained + empty prompt (b each), plus b of the earlier concept in phase 2
    rows_per_step = [2 * b, 3 * b]
    assert counts[0] - counts[bank] == sum((steps - bank) * r for r in rows_per_step)

    base = adapter.denoiser_weights()
    teacher = {n: base[n] + 0.01 for n in select_weights(adapter.module_types(), "cross_attention")}
    uncond = adapter.encode_prompts([""])
    entries = _distillation_bank(adapter, _Step(adapter, torch.Generator().manual_seed(0), b), data[0], [1], [0],
                                 data[1], uncond, teacher, "base", 3)
    assert len(entries) == 3
    for x, t, c, target in entries:
        assert len(x) == 3 * b
        with torch.no_grad():
            torch.testing.assert_close(target, distillation_target(adapter, x, t, c, b, teacher, "base"))
    with pytest.raises(ValueError, match="distillation_bank"):
        short_config(distillation_bank=-1).validate()
