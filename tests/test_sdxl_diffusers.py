"""The diffusers adapter on an SDXL pipeline (two text encoders, pooled embedding and size ids).

A tiny StableDiffusionXLPipeline with random weights (real diffusers classes, SDXL's structure)
stands in for a checkpoint: the adapter must condition the UNet exactly as the pipeline does, so
its samples equal the pipeline's own, and the trainers and the closed-form edit must run on it.
"""

import pytest
import torch

from unlearn_core.adapters.diffusers_adapter import DiffusersAdapter, load_pipeline
from unlearn_core.closed_form import closed_form_edit
from unlearn_core.concept_set import Concept, ConceptSet

WORDS = ["a", "photo", "of", "cat", "dog", "animal", "painting", "by", "monet", "house"]


@pytest.fixture(scope="module")
def sdxl_pipe(tmp_path_factory):
    from unlearn_core.research.benchmarks.real_size import TINY_SDXL, random_sdxl_pipeline

    return random_sdxl_pipeline(TINY_SDXL, WORDS, tmp_path_factory.mktemp("tok"), seed=0)


def test_the_adapter_samples_exactly_what_the_sdxl_pipeline_samples(sdxl_pipe):
    adapter = DiffusersAdapter(sdxl_pipe)
    assert adapter.adm is not None and adapter.adm.rows == 1
    seeds = [3, 4]
    ours = adapter.sample_latents(["a photo of a cat", "a painting by monet"], seeds, steps=3, guidance_scale=5.0)
    theirs = sdxl_pipe(["a photo of a cat", "a painting by monet"], num_inference_steps=3, guidance_scale=5.0,
                       generator=[torch.Generator().manual_seed(s) for s in seeds], output_type="latent").images
    assert ours.shape == theirs.shape
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()
    # and the conditioning is the pipeline's: penultimate layers concatenated, pooled embedding packed after them
    embeds, _, pooled, _ = sdxl_pipe.encode_prompt("a photo of a cat", do_classifier_free_guidance=False)
    cond = adapter.encode_prompts(["a photo of a cat"])
    context, y = adapter.adm.unpack(cond)
    assert torch.allclose(context, embeds, atol=1e-6)
    assert torch.allclose(y[:, :-6], pooled, atol=1e-6)
    assert y[0, -6:].tolist() == [adapter.image_size, adapter.image_size, 0, 0, adapter.image_size, adapter.image_size]
    # token_embeddings: the token rows only, and a prefix is computed exactly on the prefix
    assert torch.allclose(adapter.token_embeddings(["a photo of a cat"]), context, atol=1e-6)
    assert torch.allclose(adapter.token_embeddings(["a photo of a cat"], length=5), context[:, :5], atol=1e-5)


def test_closed_form_edit_and_a_weight_override_run_on_sdxl(sdxl_pipe):
    adapter = DiffusersAdapter(sdxl_pipe)
    before = {n: p.detach().clone() for n, p in sdxl_pipe.unet.named_parameters()}
    result = closed_form_edit(adapter, ConceptSet([Concept("cat", "animal")], ["a painting by monet"]))
    assert result.deltas and all("attn2.to_" in n for n in result.deltas)
    width = sdxl_pipe.unet.config.cross_attention_dim
    assert all(d.shape[-1] == width for d in result.deltas.values())
    assert all(torch.equal(before[n], p) for n, p in sdxl_pipe.unet.named_parameters())  # input model unchanged
    # the edit changes the prediction for the concept's prompt through predict_noise(weights=...)
    x = torch.randn(1, *adapter.latent_shape, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500])
    cond = adapter.encode_prompts(["a photo of a cat"])
    weights = {n: before[n] + d for n, d in result.deltas.items()}
    base_eps = adapter.predict_noise(x, t, cond)
    edited_eps = adapter.predict_noise(x, t, cond, weights)
    assert not torch.allclose(base_eps, edited_eps)


@pytest.mark.slow
def test_load_pipeline_reads_an_sdxl_folder_as_an_sdxl_pipeline(sdxl_pipe, tmp_path):
    sdxl_pipe.save_pretrained(tmp_path / "sdxl")
    pipe = load_pipeline(tmp_path / "sdxl")
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    assert DiffusersAdapter(pipe).adm is not None


def test_an_sdxl_unet_without_its_second_text_encoder_is_refused_with_a_fix(sdxl_pipe):
    from types import SimpleNamespace

    half = SimpleNamespace(unet=sdxl_pipe.unet, text_encoder=sdxl_pipe.text_encoder, tokenizer=sdxl_pipe.tokenizer,
                           vae=sdxl_pipe.vae, scheduler=sdxl_pipe.scheduler)
    with pytest.raises(ValueError, match="load it as a StableDiffusionXLPipeline"):
        DiffusersAdapter(half)


@pytest.mark.slow
def test_cli_closed_form_on_an_sdxl_folder_writes_a_loadable_sdxl_model(sdxl_pipe, tmp_path):
    """`concept-unlearn forget --method closed-form` on a saved SDXL folder: the merged model is an SDXL
    folder whose cross-attention keys/values moved and nothing else did; the input folder is unchanged."""
    import subprocess
    import sys

    model = tmp_path / "sdxl"
    sdxl_pipe.save_pretrained(model)
    files_before = {p: p.read_bytes() for p in model.rglob("*") if p.is_file()}
    cs = tmp_path / "set.json"
    ConceptSet([Concept("cat", "animal")], ["a painting by monet"]).save(cs)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "unlearn_core.cli", "forget", "--model", str(model), "--concepts", str(cs),
                        "--method", "closed-form", "--output", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert {p: p.read_bytes() for p in model.rglob("*") if p.is_file()} == files_before
    merged = load_pipeline(out / "model")
    assert type(merged).__name__ == "StableDiffusionXLPipeline"
    base = dict(sdxl_pipe.unet.named_parameters())
    changed = {n for n, p in merged.unet.named_parameters() if not torch.equal(p, base[n])}
    assert changed and all("attn2.to_k" in n or "attn2.to_v" in n for n in changed)

    r = subprocess.run([sys.executable, "-m", "unlearn_core.cli", "forget", "--model", str(model), "--concepts", str(cs),
                        "--method", "text-encoder", "--output", str(tmp_path / "te")], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 2 and "this SDXL model has two" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "te").exists()


@pytest.mark.slow
def test_dynamic_mask_trains_on_sdxl_through_the_diffusers_adapter(sdxl_pipe):
    """A short run: the training images are sampled with SDXL's conditioning, every loss term (concept,
    alignment, distillation with the empty prompt) runs, and only the cross-attention weights move."""
    from unlearn_core.masks import MaskConfig
    from unlearn_core.unet_unlearning import UnetUnlearnConfig, unlearn_unet

    adapter = DiffusersAdapter(sdxl_pipe)
    cfg = UnetUnlearnConfig(steps_per_concept=2, batch_size=1, lr=1e-3, images_per_concept=2, retain_images_per_prompt=1,
                            sampling_steps=2, mask=MaskConfig(warmup_steps=1, update_interval=1))
    result = unlearn_unet(adapter, ConceptSet([Concept("cat", "animal")], ["a painting by monet"]), cfg)
    train = [s for s in result.stats if s["phase"] == "train"]
    assert len(train) == 2 and all(s["distillation_loss"] > 0 and s["concept_loss"] > 0 for s in train)
    assert all("attn2" in n for n in result.deltas) and any(d.abs().sum() > 0 for d in result.deltas.values())
