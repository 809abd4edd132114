import copy

import pytest
import torch

from unlearn_core.layer_selection import select_weights
from unlearn_core.unet_unlearning import weights_hash
from unlearn_core.weights_io import (extract_lora, load_delta, merge_unet_deltas, read_metadata, save_delta,
                                     save_lora)


def _random_deltas(adapter, target="cross_attention", scale=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = adapter.denoiser_weights()
    return {n: torch.randn(base[n].shape, generator=g) * scale
            for n in select_weights(adapter.module_types(), target)}


def test_svd_lora_is_exact_at_full_rank_and_approximate_below():
    g = torch.Generator().manual_seed(0)
    deltas = {"a.weight": torch.randn(12, 7, generator=g), "conv.weight": torch.randn(6, 3, 3, 3, generator=g)}
    lora, err = extract_lora(deltas, rank=64)
    assert max(err.values()) < 1e-5
    b, a = lora["unet.a.lora_B.weight"], lora["unet.a.lora_A.weight"]
    assert torch.allclose(b @ a, deltas["a.weight"], atol=1e-5)
    bc, ac = lora["unet.conv.lora_B.weight"], lora["unet.conv.lora_A.weight"]
    assert ac.shape == (6, 3, 3, 3) and bc.shape == (6, 6, 1, 1)
    _, err2 = extract_lora(deltas, rank=2)
    _, err4 = extract_lora(deltas, rank=4)
    assert err2["a.weight"] > err4["a.weight"] > 0
    with pytest.raises(ValueError, match="rank"):
        extract_lora(deltas, 0)


def test_merge_does_not_touch_the_input(toy_pipe, adapter):
    deltas = _random_deltas(adapter)
    before = weights_hash(dict(toy_pipe.unet.named_parameters()))
    merged = merge_unet_deltas(toy_pipe, deltas)
    assert weights_hash(dict(toy_pipe.unet.named_parameters())) == before
    name = next(iter(deltas))
    merged_w = dict(merged.unet.named_parameters())[name]
    assert torch.allclose(merged_w, dict(toy_pipe.unet.named_parameters())[name] + deltas[name])
    with pytest.raises(ValueError, match="do not match"):
        merge_unet_deltas(toy_pipe, {"nope.weight": torch.zeros(1)})


def test_delta_file_round_trip_with_metadata(adapter, tmp_path):
    deltas = _random_deltas(adapter)
    meta = {"concepts": [{"name": "star", "superclass": "symbol"}], "base_model_hash": "abc", "library_version": "0.1.0"}
    path = save_delta(deltas, tmp_path / "d.safetensors", meta)
    back = load_delta(path)
    assert set(back) == set(deltas) and all(torch.equal(back[n], deltas[n]) for n in deltas)
    got = read_metadata(path)
    assert got["concepts"] == meta["concepts"] and got["format"] == "diff" and got["base_model_hash"] == "abc"
    with pytest.raises(FileExistsError, match="already exists"):
        save_delta(deltas, path, meta)
    save_delta(deltas, path, meta, overwrite=True)


def test_failed_save_leaves_no_file(adapter, tmp_path):
    deltas = _random_deltas(adapter)
    with pytest.raises(TypeError):
        save_delta(deltas, tmp_path / "d.safetensors", {"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_saved_lora_loads_in_diffusers_and_matches_the_merged_model(toy_pipe, adapter, tmp_path):
    deltas = _random_deltas(adapter, scale=0.02)
    path = tmp_path / "lora.safetensors"
    save_lora(deltas, path, rank=128, metadata={"concepts": []})
    merged = merge_unet_deltas(toy_pipe, deltas)
    pipe = copy.copy(toy_pipe)
    pipe.register_modules(unet=copy.deepcopy(toy_pipe.unet))
    pipe.load_lora_weights(str(tmp_path), weight_name="lora.safetensors")
    x = torch.randn(2, *adapter.latent_shape, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([50, 700])
    cond = adapter.encode_prompts(["a star", "a circle"])
    with torch.no_grad():
        out_lora = pipe.unet(x, t, encoder_hidden_states=cond).sample
        out_merged = merged.unet(x, t, encoder_hidden_states=cond).sample
        out_base = toy_pipe.unet(x, t, encoder_hidden_states=cond).sample
    assert (out_merged - out_base).abs().max() > 1e-3  # the deltas matter
    assert torch.allclose(out_lora, out_merged, atol=1e-4)
