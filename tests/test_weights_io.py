import copy

import pytest
import torch

from unlearn_core.layer_selection import select_weights
from unlearn_core.unet_unlearning import weights_hash
from unlearn_core.weights_io import (extract_lora, load_delta, low_rank_factors, merge_unet_deltas, read_metadata,
                                     save_delta, save_lora)


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


def test_low_rank_is_exact_for_low_rank_deltas_and_truncates_others():
    # (moved from test_node_pack: the node pack's LoRA files use this library function)
    gen = torch.Generator().manual_seed(0)
    rank4 = torch.randn(64, 4, generator=gen) @ torch.randn(4, 48, generator=gen)
    down, up, err = low_rank_factors(rank4, 16)
    assert down.shape == (4, 48) and up.shape == (64, 4)  # numerical rank, not the requested 16
    assert err < 1e-5 and torch.allclose(up @ down, rank4, atol=1e-4)
    full = torch.randn(32, 24, generator=gen)
    down, up, err = low_rank_factors(full, 8)
    assert down.shape == (8, 24) and 0.1 < err < 1.0
    conv = torch.randn(8, 4, 3, 3, generator=gen)
    down, up, err = low_rank_factors(conv, 64)
    assert down.shape == (8, 4, 3, 3) and up.shape == (8, 8, 1, 1) and err < 1e-5


def test_lora_of_a_low_rank_delta_has_truncated_factors_and_is_exact():
    """A rank-1 delta asked at rank 8 gives rank-1 factors (not zero-padded rank-8 ones) that
    reconstruct it exactly, through the library's extract_lora; an all-zero delta gives rank 1."""
    gen = torch.Generator().manual_seed(1)
    rank1 = torch.randn(40, 1, generator=gen) @ torch.randn(1, 24, generator=gen)
    conv1 = (torch.randn(6, 1, generator=gen) @ torch.randn(1, 3 * 3 * 3, generator=gen)).reshape(6, 3, 3, 3)
    deltas = {"lin.weight": rank1, "conv.weight": conv1, "zero.weight": torch.zeros(5, 7)}
    lora, err = extract_lora(deltas, rank=8)
    a, b = lora["unet.lin.lora_A.weight"], lora["unet.lin.lora_B.weight"]
    assert a.shape == (1, 24) and b.shape == (40, 1)
    assert torch.allclose(b @ a, rank1, atol=1e-5) and err["lin.weight"] < 1e-5
    ac, bc = lora["unet.conv.lora_A.weight"], lora["unet.conv.lora_B.weight"]
    assert ac.shape == (1, 3, 3, 3) and bc.shape == (6, 1, 1, 1)
    assert torch.allclose((bc.flatten(1) @ ac.flatten(1)).reshape(conv1.shape), conv1, atol=1e-5)
    az, bz = lora["unet.zero.lora_A.weight"], lora["unet.zero.lora_B.weight"]
    assert az.shape == (1, 7) and bz.shape == (5, 1) and not (bz @ az).any() and err["zero.weight"] == 0.0


@pytest.mark.slow
def test_lora_with_truncated_ranks_loads_in_diffusers_and_matches_the_merged_model(toy_pipe, adapter, tmp_path):
    """Weights whose deltas have different ranks (1 and 3 here, asked at 8) get LoRA modules of
    different ranks; diffusers loads them at scale 1 each, so the LoRA model equals base + delta."""
    g = torch.Generator().manual_seed(3)
    base = adapter.denoiser_weights()
    deltas = {}
    for i, n in enumerate(select_weights(adapter.module_types(), "cross_attention")):
        r = 1 if i % 2 else 3
        out_dim, in_dim = base[n].shape
        deltas[n] = 0.05 * (torch.randn(out_dim, r, generator=g) @ torch.randn(r, in_dim, generator=g)) / r
    errors = save_lora(deltas, tmp_path / "lora.safetensors", rank=8, metadata={"concepts": []})
    assert max(errors.values()) < 1e-5
    from safetensors.torch import load_file

    ranks = {k: v.shape[0] for k, v in load_file(str(tmp_path / "lora.safetensors")).items() if "lora_A" in k}
    assert set(ranks.values()) == {1, 3}
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


@pytest.mark.slow
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
