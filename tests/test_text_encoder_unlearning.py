import copy

import numpy as np
import pytest
import torch
from PIL import Image

from unlearn_core.adapters.clip_text_adapter import ClipTextAdapter
from unlearn_core.concept_set import Concept, ConceptSet, ConceptSetError
from unlearn_core.text_encoder_unlearning import (TextEncoderForgetConfig, forget_text_encoder,
                                                  merge_text_encoder_deltas)
from unlearn_core.research.toyworld.render import render_batch, sample_scenes
from unlearn_core.unet_unlearning import UnlearnCancelled, weights_hash
from unlearn_core.weights_io import read_metadata, save_text_encoder_lora, save_text_encoder_lora_peft

SHORT = dict(ti_steps=3, steps=4, batch_size=2)


@pytest.fixture(scope="module")
def text(toy_pipe):
    return ClipTextAdapter(toy_pipe.tokenizer, toy_pipe.text_encoder)


def star_set(n=5):
    return ConceptSet([Concept("star", "symbol", templates=["a {}", "a photo of a {}"],
                               images=list(render_batch(sample_scenes(n, seed=1, object="star"))))],
                      ["a circle", "a square"])


@pytest.mark.slow
def test_only_the_final_layers_get_the_lora_and_the_base_is_untouched(text, adapter):
    before = weights_hash(text.weights())
    result = forget_text_encoder(text, adapter, star_set(), TextEncoderForgetConfig(num_layers=2, **SHORT))
    assert weights_hash(text.weights()) == before
    layers = {int(m.split("layers.")[1].split(".")[0]) for m in result.lora}
    assert layers == {text.num_layers - 2, text.num_layers - 1}
    assert any(float(b.abs().sum()) > 0 for _, b in result.lora.values())
    assert set(result.tokens) == {"star"}


def test_clip_skip_moves_the_final_layers(toy_pipe, adapter):
    skipped = ClipTextAdapter(toy_pipe.tokenizer, toy_pipe.text_encoder, clip_skip=1)
    assert skipped.used_layer == skipped.num_layers - 2
    names = skipped.final_layer_names(1)
    assert names and all(f"layers.{skipped.num_layers - 2}." in n for n in names)
    # the encoding with clip skip is the penultimate layer's output through the final layer norm
    ids = skipped.tokenize(["a star"])
    out = toy_pipe.text_encoder(ids, output_hidden_states=True)
    expected = toy_pipe.text_encoder.final_layer_norm(out.hidden_states[-2])
    assert torch.allclose(skipped.encode(["a star"]), expected, atol=1e-6)
    with pytest.raises(ValueError, match="num_layers"):
        skipped.final_layer_names(skipped.num_layers)


@pytest.mark.slow
def test_more_layers_than_the_encoder_has_up_to_the_used_one_means_all_of_them(toy_pipe, adapter):
    skipped = ClipTextAdapter(toy_pipe.tokenizer, toy_pipe.text_encoder, clip_skip=1)
    cfg = TextEncoderForgetConfig(num_layers=skipped.num_layers, adversarial_interval=0, **SHORT)
    result = forget_text_encoder(skipped, adapter, star_set(), cfg)
    layers = {int(m.split("layers.")[1].split(".")[0]) for m in result.lora}
    assert layers == set(range(skipped.used_layer + 1))  # every layer up to the used one, none after
    assert result.config["num_layers"] == skipped.used_layer + 1 and cfg.num_layers == skipped.num_layers
    assert any("the LoRA is on all of them" in n for n in result.notes)


@pytest.mark.slow
def test_same_seed_same_lora(text, adapter):
    a = forget_text_encoder(text, adapter, star_set(), TextEncoderForgetConfig(**SHORT))
    b = forget_text_encoder(text, adapter, star_set(), TextEncoderForgetConfig(**SHORT))
    for m in a.lora:
        assert torch.equal(a.lora[m][0], b.lora[m][0]) and torch.equal(a.lora[m][1], b.lora[m][1])
    assert torch.equal(a.tokens["star"], b.tokens["star"])


@pytest.mark.slow
def test_saved_lora_reproduces_the_merged_encoder(toy_pipe, text, adapter, tmp_path):
    result = forget_text_encoder(text, adapter, star_set(), TextEncoderForgetConfig(**SHORT))
    merged = merge_text_encoder_deltas(toy_pipe, result.deltas())
    ids = text.tokenize(["a star", "a circle in dotted style"])
    with torch.no_grad():
        want = merged.text_encoder(ids).last_hidden_state
        base = toy_pipe.text_encoder(ids).last_hidden_state
    assert (want - base).abs().max() > 1e-4
    # diffusers format
    save_text_encoder_lora(result.lora, tmp_path / "te.safetensors", result.metadata())
    pipe = copy.copy(toy_pipe)
    pipe.register_modules(text_encoder=copy.deepcopy(toy_pipe.text_encoder))
    pipe.load_lora_weights(str(tmp_path), weight_name="te.safetensors")
    with torch.no_grad():
        got = pipe.text_encoder(ids).last_hidden_state
    assert torch.allclose(got, want, atol=1e-5)
    # peft format
    from peft import PeftModel

    save_text_encoder_lora_peft(result.lora, tmp_path / "peft", result.metadata())
    peft_te = PeftModel.from_pretrained(copy.deepcopy(toy_pipe.text_encoder), str(tmp_path / "peft"))
    with torch.no_grad():
        got = peft_te(input_ids=ids).last_hidden_state
    assert torch.allclose(got, want, atol=1e-5)
    # ComfyUI (kohya) keys: lora_down = A, lora_up = B, alpha = rank (scale folded into B)
    save_text_encoder_lora(result.lora, tmp_path / "comfy.safetensors", result.metadata(), fmt="comfy")
    from safetensors.torch import load_file

    sd = load_file(str(tmp_path / "comfy.safetensors"))
    module = next(iter(result.lora))
    key = "lora_te_text_model_" + module.replace(".", "_")
    assert torch.equal(sd[f"{key}.lora_down.weight"], result.lora[module][0])
    assert float(sd[f"{key}.alpha"]) == result.lora[module][0].shape[0]
    assert read_metadata(tmp_path / "comfy.safetensors")["concepts"] == [{"name": "star", "superclass": "symbol"}]


@pytest.mark.slow
def test_bad_inputs(text, adapter, tmp_path):
    with pytest.raises(ConceptSetError, match="needs 4-5 example images"):
        forget_text_encoder(text, adapter, ConceptSet([Concept("star", "symbol")]), TextEncoderForgetConfig(**SHORT))
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(ConceptSetError, match="not a readable image"):
        forget_text_encoder(text, adapter, ConceptSet([Concept("star", "symbol", images=[str(bad)])]),
                            TextEncoderForgetConfig(**SHORT))
    with pytest.raises(ConceptSetError, match="H x W x 3"):
        forget_text_encoder(text, adapter, ConceptSet([Concept("star", "symbol", images=[np.zeros((32, 32), np.uint8)])]),
                            TextEncoderForgetConfig(**SHORT))
    with pytest.raises(ValueError, match="nothing would be forgotten"):
        forget_text_encoder(text, adapter, star_set(), TextEncoderForgetConfig(forget_weight=0, ti_weight=0, **SHORT))
    # RGBA images of another size are converted, with a note
    paths = []
    for i, img in enumerate(render_batch(sample_scenes(3, seed=2, object="star"))):
        p = tmp_path / f"s{i}.png"
        Image.fromarray(img).convert("RGBA").resize((64, 64)).save(p)
        paths.append(str(p))
    result = forget_text_encoder(text, adapter, ConceptSet([Concept("star", "symbol", images=paths)]),
                                 TextEncoderForgetConfig(**SHORT))
    assert any("RGBA to RGB" in n for n in result.notes)
    assert any("only 3 image(s)" in n for n in result.notes)


def test_cancel(text, adapter):
    before = weights_hash(text.weights())
    with pytest.raises(UnlearnCancelled):
        forget_text_encoder(text, adapter, star_set(), TextEncoderForgetConfig(**SHORT), should_cancel=lambda: True)
    assert weights_hash(text.weights()) == before


@pytest.mark.slow
def test_adversarial_training_relearns_a_token_against_the_current_encoder(text, adapter):
    plain = forget_text_encoder(text, adapter, star_set(), TextEncoderForgetConfig(adversarial_interval=0, **SHORT))
    seen = []
    cfg = TextEncoderForgetConfig(adversarial_interval=2, adversarial_steps=3, **SHORT)
    adv = forget_text_encoder(text, adapter, star_set(), cfg, progress=lambda done, total, row: seen.append(total))
    rounds = [r for r in adv.stats if r["stage"] == "adversarial_token"]
    assert len(rounds) == 2 * 3  # 4 LoRA steps, a round every 2 steps, 3 token steps per round
    assert len(adv.stats) == seen[-1] == len(plain.stats) + 6  # progress totals include the rounds
    # the adversarial token's prompts join the forgetting terms, so the LoRA differs
    assert any(not torch.allclose(adv.deltas()[k], plain.deltas()[k]) for k in plain.deltas())
    with pytest.raises(ValueError, match="adversarial_interval"):
        TextEncoderForgetConfig(adversarial_interval=-1).validate()
    with pytest.raises(ValueError, match="include_learned_token"):
        TextEncoderForgetConfig(adversarial_interval=5, include_learned_token=False).validate()


def test_ti_loss_prompts_picks_words_and_learned_token_rows():
    from unlearn_core.text_encoder_unlearning import ti_loss_rows

    assert ti_loss_rows(4, 8, 0) == list(range(8))  # 0 = all
    assert ti_loss_rows(4, 8, 4) == [0, 1, 4, 5]  # two word prompts, two learned-token prompts
    assert ti_loss_rows(4, 8, 3) == [0, 1, 4]
    assert ti_loss_rows(4, 4, 2) == [0, 1]  # no learned-token prompts
    assert ti_loss_rows(4, 8, 20) == list(range(8))
    with pytest.raises(ValueError, match="ti_loss_prompts"):
        TextEncoderForgetConfig(ti_loss_prompts=-1).validate()


@pytest.mark.slow
def test_fewer_ti_loss_prompts_still_train_and_change_the_lora(text, adapter):
    full = forget_text_encoder(text, adapter, star_set(), TextEncoderForgetConfig(adversarial_interval=0, **SHORT))
    part = forget_text_encoder(text, adapter, star_set(),
                               TextEncoderForgetConfig(adversarial_interval=0, ti_loss_prompts=2, **SHORT))
    assert all("ti_loss" in r for r in part.stats if r["stage"] == "lora")
    assert any(not torch.allclose(part.deltas()[k], full.deltas()[k]) for k in full.deltas())


class _BatchSpy:
    """The real adapter, recording the batch size of every UNet call."""

    def __init__(self, adapter):
        self._adapter, self.batches = adapter, []

    def __getattr__(self, name):
        return getattr(self._adapter, name)

    def predict_noise(self, x_t, t, cond, weights=None):
        self.batches.append(x_t.shape[0])
        return self._adapter.predict_noise(x_t, t, cond, weights)


@pytest.mark.slow
def test_textual_inversion_batch_sizes_are_separate_settings(text, adapter):
    spy = _BatchSpy(adapter)
    cfg = TextEncoderForgetConfig(ti_steps=3, steps=4, batch_size=2, ti_batch_size=3,
                                  adversarial_interval=2, adversarial_steps=3, adversarial_batch_size=5)
    forget_text_encoder(text, spy, star_set(), cfg)
    # stage 1: 3 steps of 3 images; 2 adversarial rounds of 3 steps of 5 images; 4 LoRA steps with
    # 2 word + 2 learned-token prompts, each a target (no grad) and a trained prediction
    assert spy.batches == [3] * 3 + [5] * 3 + [4] * 4 + [5] * 3 + [4] * 4
    for name in ("batch_size", "ti_batch_size", "adversarial_batch_size"):
        with pytest.raises(ValueError, match=name):
            TextEncoderForgetConfig(**{name: 0}).validate()


def test_fast_settings_halve_the_token_steps_and_double_their_batch():
    base = TextEncoderForgetConfig(ti_steps=150, ti_batch_size=4, adversarial_steps=30, adversarial_batch_size=4,
                                   lr=1e-3)
    fast = base.fast()
    assert (fast.ti_steps, fast.ti_batch_size, fast.adversarial_steps, fast.adversarial_batch_size) == (75, 8, 15, 8)
    assert fast.ti_steps * fast.ti_batch_size == base.ti_steps * base.ti_batch_size  # same images seen
    assert fast.lr == 1e-3 and fast.steps == base.steps and base.ti_steps == 150  # the rest kept, input unchanged
    fast.validate()


def test_fewer_than_four_examples_get_the_note_whether_given_as_images_or_latents(adapter):
    """The ComfyUI node hands the example images over as latents; one image must get the same
    '4-5 are recommended' note as three images given as files."""
    from unlearn_core.concept_set import Concept
    from unlearn_core.text_encoder_unlearning import concept_latents

    for n in (1, 3):
        notes = []
        concept = Concept("bolt", "chevron", latents=torch.zeros(n, *adapter.latent_shape))
        assert concept_latents(adapter, concept, "concept 'bolt'", notes).shape[0] == n
        assert notes == [f"concept 'bolt': only {n} image(s); 4-5 are recommended"]
    notes = []
    concept_latents(adapter, Concept("bolt", "chevron", latents=torch.zeros(4, *adapter.latent_shape)), "c", notes)
    assert notes == []
