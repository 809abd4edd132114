"""unlearn_core.metadata: concept names as keyed hashes in everything a run saves, when asked."""

import hashlib
import json

import pytest
import torch
from safetensors import safe_open

from unlearn_core.metadata import HASH_PREFIX, hash_concept_name, new_key, redact_concept_names

NAME = "Zorblax Quint"  # appears in no model file, so any occurrence in the output is a leak
RETAIN = "a portrait of Mirelda Voss"


def _meta():
    return {"method": "unet_unlearning", "concepts": [{"name": NAME, "superclass": "person"}],
            "retain_prompts": [RETAIN, "a cat"], "config": {"lr": 1e-3}, "base_model_hash": "abc"}


def test_hash_is_keyed_normalised_and_not_the_plain_hash():
    key = b"k" * 32
    h = hash_concept_name(NAME, key)
    assert h.startswith(HASH_PREFIX) and len(h) == len(HASH_PREFIX) + 16
    assert hash_concept_name("  zorblax QUINT ", key) == h  # the same concept however it is typed
    assert hash_concept_name(NAME, b"another key") != h and hash_concept_name("Zorblax", key) != h
    # the old scheme, reversible by hashing candidate names, is not what is stored
    assert hashlib.sha256(NAME.lower().encode()).hexdigest()[:16] not in h
    assert new_key() != new_key() and len(new_key()) == 32


def test_redact_hashes_names_everywhere_and_keeps_the_rest():
    meta = {**_meta(), "notes": [f"concept '{NAME}' image #1: converted zorblax_quint_1.png from RGBA to RGB"],
            "stats": [{"step": 0, "concept": NAME, "loss": 1.0}]}
    out = redact_concept_names(meta, b"key")
    h = hash_concept_name(NAME, b"key")
    assert out["concepts"] == [{"name": h, "superclass": "person"}]
    assert out["retain_prompts"] == "<2 prompt(s), not stored>"
    assert out["stats"][0] == {"step": 0, "concept": h, "loss": 1.0}
    assert out["notes"] == [f"concept '{h}' image #1: converted {h}_1.png from RGBA to RGB"]
    assert out["config"] == meta["config"] and out["base_model_hash"] == "abc"
    text = json.dumps(out).lower()
    assert "zorblax" not in text and "mirelda" not in text
    assert meta["concepts"][0]["name"] == NAME and meta["retain_prompts"][0] == RETAIN  # input untouched
    # no key: a fresh random one each call, so two calls give unrelated hashes
    assert redact_concept_names(meta)["concepts"][0]["name"] != redact_concept_names(meta)["concepts"][0]["name"]


def _leaks(folder) -> list[str]:
    """Files under `folder` whose bytes contain a concept name or the retain prompt (any case)."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes().lower()
        if any(s in data for s in (b"zorblax", b"quint", b"mirelda")):
            found.append(str(path.relative_to(folder)))
    return found


def _header(path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["unlearn_core"])


def _unet_result(adapter):
    from unlearn_core.layer_selection import select_weights
    from unlearn_core.unet_unlearning import UnlearnResult

    g = torch.Generator().manual_seed(0)
    base = adapter.denoiser_weights()
    deltas = {n: torch.randn(base[n].shape, generator=g) * 1e-3
              for n in select_weights(adapter.module_types(), "cross_attention")}
    return UnlearnResult(deltas=deltas, stats=[{"step": 0, "phase": "train", "concept": NAME, "loss": 1.0,
                                                "seconds": 0.1}],
                         config={"lr": 1e-3}, concepts=[{"name": NAME, "superclass": "person"}],
                         retain_prompts=[RETAIN], base_model_hash="abc", seconds=1.0, seconds_data=0.5,
                         train_steps=1, notes=[f"concept '{NAME}': converted zorblax_quint.png to RGB"])


@pytest.mark.slow
def test_unet_output_folder_holds_no_concept_name_when_asked(toy_pipe, adapter, tmp_path):
    from unlearn_core.forget import write_unlearned_folder

    result = _unet_result(adapter)
    plain = write_unlearned_folder(toy_pipe, result, tmp_path / "plain", lora_rank=2, save_merged=False)
    assert _leaks(plain) == ["report.json", "unlearned.diff.safetensors", "unlearned_lora.safetensors"]
    out = write_unlearned_folder(toy_pipe, result, tmp_path / "hashed", lora_rank=2, save_merged=True,
                                 hash_concept_names=True)
    assert _leaks(out) == []
    report = json.loads((out / "report.json").read_text())
    h = report["concepts"][0]["name"]
    assert h.startswith(HASH_PREFIX) and report["stats"][0]["concept"] == h and h in report["notes"][0]
    assert report["retain_prompts"] == "<1 prompt(s), not stored>" and report["train_steps"] == 1
    # one key for the whole folder: the same hash in every file
    for name in ("unlearned.diff.safetensors", "unlearned_lora.safetensors"):
        assert _header(out / name)["concepts"] == [{"name": h, "superclass": "person"}]
    assert json.loads((out / "model" / "unlearn_metadata.json").read_text())["concepts"][0]["name"] == h
    assert result.metadata()["concepts"][0]["name"] == NAME  # the result itself is unchanged
    assert result.metadata(hash_concept_names=True, key=b"k")["concepts"][0]["name"] == hash_concept_name(NAME, b"k")


def test_text_encoder_output_folder_holds_no_concept_name_when_asked(toy_pipe, tmp_path):
    from unlearn_core.adapters.clip_text_adapter import ClipTextAdapter
    from unlearn_core.forget import write_text_encoder_folder
    from unlearn_core.text_encoder_unlearning import TextEncoderForgetResult

    text = ClipTextAdapter(toy_pipe.tokenizer, toy_pipe.text_encoder)
    weights = text.weights()
    g = torch.Generator().manual_seed(0)
    lora = {}
    for m in text.final_layer_names(1):
        out_dim, in_dim = weights[f"{m}.weight"].shape
        lora[m] = (torch.randn(2, in_dim, generator=g) * 1e-2, torch.randn(out_dim, 2, generator=g) * 1e-2)
    dim = text.token_embedding.weight.shape[1]
    result = TextEncoderForgetResult(lora=lora, tokens={NAME: torch.randn(dim, generator=g)},
                                     stats=[{"stage": "lora", "concept": NAME, "step": 0, "loss": 1.0}],
                                     config={"lr": 1e-3}, concepts=[{"name": NAME, "superclass": "person"}],
                                     retain_prompts=[RETAIN], base_model_hash="abc", seconds=1.0,
                                     seconds_per_concept=1.0, notes=[])
    out = write_text_encoder_folder(toy_pipe, result, tmp_path / "te", hash_concept_names=True)
    assert _leaks(out) == []
    h = json.loads((out / "report.json").read_text())["concepts"][0]["name"]
    assert h.startswith(HASH_PREFIX)
    for name in ("text_encoder_lora.safetensors", "text_encoder_lora_comfy.safetensors",
                 "peft/adapter_model.safetensors"):
        assert _header(out / name)["concepts"][0]["name"] == h, name
    with safe_open(str(out / "learned_tokens.safetensors"), framework="pt") as f:
        assert list(f.keys()) == [h]


def test_cli_flag_is_documented_and_reaches_forget(monkeypatch, capsys):
    from unlearn_core import cli

    with pytest.raises(SystemExit):
        cli.main(["forget", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--hash-concept-names" in help_text and "HMAC-SHA256" in help_text and "cannot be" in help_text
    seen = {}

    def fake_forget(*args, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    import unlearn_core.forget

    monkeypatch.setattr(unlearn_core.forget, "forget", fake_forget)
    monkeypatch.setattr(cli, "unet_config_from_args", lambda args: None)
    monkeypatch.setattr(unlearn_core.concept_set.ConceptSet, "load", classmethod(lambda cls, *a, **k: None))
    for flags, expected in (([], False), (["--hash-concept-names"], True)):
        with pytest.raises(SystemExit):
            cli.main(["forget", "--concepts", "c.yaml", "--output", "o", *flags])
        assert seen["hash_concept_names"] is expected
