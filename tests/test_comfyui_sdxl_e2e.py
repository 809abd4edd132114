"""SDXL and v-prediction end to end, in a real headless ComfyUI, on a random-weight SDXL checkpoint.

The checkpoint (tests/comfy_helpers/build_tiny_sdxl.py, built at test time, ~2 GB in the pytest
temp folder) is detected by ComfyUI as SDXL (model_base.SDXL, two text encoders, ADM `y`), with a
reduced UNet (~110M parameters: the six SDXL input blocks in one 320-channel level) so it runs on
a small CPU; the text encoders (CLIP-L + OpenCLIP bigG) and the VAE have their real sizes.

- the bridge's SDXL conditioning (context + ADM vector) and eps equal ComfyUI's own (eps and v);
- DynamicMaskUnlearn through the real nodes: only cross-attention weights change, the input MODEL
  samples as before, the saved diff file reloaded with LoraLoader samples like the in-graph model;
- v-prediction: the same SDXL switched to v-prediction with the stock ModelSamplingDiscrete node,
  unlearned, saved as a checkpoint (with ComfyUI's `v_pred` key) and reloaded with
  CheckpointLoaderSimple, which must give the same sample;
- FewShotTextEncoderForget refuses SDXL's two encoders with a clear message.

Needs COMFYUI_PATH (and COMFYUI_PYTHON); slow on a small CPU (~10-20 minutes, mostly the 694M
CLIP-G and loading the 2 GB checkpoint).

    COMFYUI_PATH=/work/comfyui COMFYUI_PYTHON=/work/comfyui_venv/bin/python python -m pytest tests/test_comfyui_sdxl_e2e.py
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "comfy_helpers"))
from e2e_support import (assert_ok, comfy_server, comfyui_or_skip, concepts, loader, make_scratch,  # noqa: E402
                         run_helper, sample, save, saved_latent)

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]
COMFYUI_PATH, COMFYUI_PYTHON = comfyui_or_skip("the ComfyUI SDXL / v-prediction end-to-end tests")
pytest.importorskip("requests")
torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
from client import PromptRejected, error_of, text_output  # noqa: E402

CKPT = "tiny_sdxl.safetensors"
TIMEOUT = int(os.environ.get("E2E_TIMEOUT", "3600"))
#: 24 + 1 transformer blocks in the reduced SDXL UNet, each with to_q/to_k/to_v/to_out.0 in attn2
CROSS_ATTENTION_WEIGHTS = 25 * 4
CROSS_ATTENTION = re.compile(r"^diffusion_model\..*\.attn2\.(to_q|to_k|to_v|to_out\.0)\.weight$")
#: reloaded / LoRA-applied samples equal the in-graph sample to this fraction of its largest value
SAMPLE_RELATIVE_TOLERANCE = 1e-4
SETTINGS = {"target": "cross_attention", "mode": "sequential", "steps_per_concept": 3, "learning_rate": 1e-3,
            "batch_size": 1, "images_per_concept": 1, "retain_images_per_prompt": 1, "sampling_steps": 2,
            "sampling_cfg": 5.0, "resolution": 64, "mask": "dynamic", "mask_density": 0.5, "mask_warmup_steps": 1,
            "mask_update_interval": 2, "mask_turnover": 0.2, "adversarial_interval": 0, "distillation_bank": 0,
            "student_chunk_rows": 1, "gradient_checkpointing": True, "seed": 0}


def _helper(script: str, *args: str):
    return run_helper(COMFYUI_PYTHON, COMFYUI_PATH, script, *args, timeout=TIMEOUT)


def _result(proc) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[len("RESULT "):])


def _assert_close(prefix: str, got, want, base) -> None:
    err = float((got - want).abs().max())
    gap = float((want - base).abs().max())
    print(f"{prefix}: max |sample - unlearned sample| = {err:.3g} (unlearned vs base: {gap:.3g})")
    assert err <= SAMPLE_RELATIVE_TOLERANCE * max(1.0, float(want.abs().max())), (prefix, err, gap)


def _unlearn(nid: str, model, **settings) -> dict:
    return {nid: {"class_type": "DynamicMaskUnlearn",
                  "inputs": {"model": model, "clip": ["1", 1], "concept_set": ["c", 0], **SETTINGS, **settings}}}


def _changed_only_cross_attention(entry: dict, node: str) -> None:
    changed = sorted(json.loads(text_output(entry, node))["model"]["changed"])
    assert len(changed) == CROSS_ATTENTION_WEIGHTS, changed
    assert all(CROSS_ATTENTION.match(k) for k in changed), [k for k in changed if not CROSS_ATTENTION.match(k)]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    base = make_scratch(tmp_path_factory.mktemp("comfy_sdxl"))
    proc = _helper("build_tiny_sdxl.py", str(base / "models" / "checkpoints" / CKPT))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "detected: SDXL, EPS" in proc.stdout, proc.stdout
    return base


@pytest.fixture(scope="module")
def server(scratch):
    with comfy_server(COMFYUI_PYTHON, COMFYUI_PATH, scratch, TIMEOUT) as client:
        yield client


def test_bridge_sdxl_conditioning_matches_comfyui(scratch):
    r = _result(_helper("sdxl_bridge_check.py", str(scratch / "models" / "checkpoints" / CKPT)))
    print("SDXL bridge check:", json.dumps({k: v for k, v in r.items() if k != "few_shot_refusal"}))
    assert r["model_class"] == "SDXL"
    assert r["cond_shape"] == [1, 77 + 2, 2048] and r["adm_channels"] == 2816  # 2816 ADM values in 2 extra rows
    assert r["context_max_abs_diff"] <= 1e-5 * r["context_scale"]
    assert r["y_max_abs_diff"] <= 1e-5 * r["y_scale"]
    assert (r["eps_prediction_type"], r["v_prediction_type"]) == ("epsilon", "v_prediction")
    assert r["eps_eps_max_abs_diff"] <= 1e-4 * max(1.0, r["eps_eps_scale"])
    assert r["v_eps_max_abs_diff"] <= 1e-4 * max(1.0, r["v_eps_scale"])
    assert r["v_differs_from_eps"] > 1e-2
    assert "Dynamic Mask Unlearn" in r["few_shot_refusal"]


def test_sdxl_dynamic_mask_unlearn_and_diff_reload(server, scratch):
    assert_ok(server.run({**loader("1", CKPT), **sample("sdxl/base", ["1", 0], ["1", 1], nid="b")}))
    graph = {
        **loader("1", CKPT), **concepts("c"), **_unlearn("u", ["1", 0]),
        **sample("sdxl/unlearned", ["u", 0], ["1", 1], nid="un"),
        # the input MODEL sampled again after the unlearning ran (its latent derives from the
        # unlearned sample): it must equal the first base sample
        "zero": {"class_type": "LatentMultiply", "inputs": {"samples": ["un_k", 0], "multiplier": 0.0}},
        **sample("sdxl/base_after", ["1", 0], ["1", 1], latent=["zero", 0], nid="ba"),
        **save("save_diff", ["u", 0], "diff", "sdxl/diff"),
        "cmp": {"class_type": "CompareModelWeights", "inputs": {"model_a": ["1", 0], "model_b": ["u", 0]}},
        "report": {"class_type": "PreviewAny", "inputs": {"source": ["u", 1]}},
    }
    entry = assert_ok(server.run(graph))
    base, after, unlearned = (saved_latent(scratch, p) for p in ("sdxl/base", "sdxl/base_after", "sdxl/unlearned"))
    assert torch.equal(base, after), "sampling the input SDXL MODEL changed after the unlearning node ran"
    assert (base - unlearned).abs().max() > 1e-4, "the unlearned SDXL model samples exactly like the base model"
    _changed_only_cross_attention(entry, "cmp")
    assert "erased: 'cat' -> 'animal'" in "".join(entry["outputs"]["report"]["text"])
    diff = sorted((scratch / "output" / "loras" / "sdxl").glob("diff_*.safetensors"))
    assert len(diff) == 1
    graph = {**loader("1", CKPT),
             "lora": {"class_type": "LoraLoader", "inputs": {
                 "model": ["1", 0], "clip": ["1", 1], "lora_name": f"sdxl/{diff[0].name}",
                 "strength_model": 1.0, "strength_clip": 1.0}},
             **sample("sdxl/via_diff", ["lora", 0], ["lora", 1], nid="vd")}
    assert_ok(server.run(graph))
    _assert_close("sdxl/via_diff", saved_latent(scratch, "sdxl/via_diff"), unlearned, base)


def test_sdxl_v_prediction_unlearn_and_checkpoint_reload(server, scratch):
    from safetensors import safe_open

    v_model = {"v": {"class_type": "ModelSamplingDiscrete",
                     "inputs": {"model": ["1", 0], "sampling": "v_prediction", "zsnr": False}}}
    graph = {
        # with adversarial training: the attacker's soft prompt is an SDXL conditioning (context + ADM rows)
        **loader("1", CKPT), **v_model, **concepts("c"), **_unlearn("u", ["v", 0], adversarial_interval=2),
        **sample("sdxl_v/base", ["v", 0], ["1", 1], nid="vb"),
        **sample("sdxl_v/unlearned", ["u", 0], ["1", 1], nid="vu"),
        **save("save_ckpt", ["u", 0], "checkpoint", "sdxl_v/ckpt", clip=["1", 1], vae=["1", 2]),
        "cmp": {"class_type": "CompareModelWeights", "inputs": {"model_a": ["v", 0], "model_b": ["u", 0]}},
        "report": {"class_type": "PreviewAny", "inputs": {"source": ["u", 1]}},
    }
    entry = assert_ok(server.run(graph))
    assert "v_prediction" in "".join(entry["outputs"]["report"]["text"])
    assert "adversarial training: a soft prompt re-optimised every 2 steps" in "".join(entry["outputs"]["report"]["text"])
    _changed_only_cross_attention(entry, "cmp")
    ckpt = sorted((scratch / "output" / "checkpoints" / "sdxl_v").glob("ckpt_*.safetensors"))
    assert len(ckpt) == 1
    with safe_open(str(ckpt[0]), "pt") as f:
        assert "v_pred" in f.keys() and f.metadata()["modelspec.predict_key"] == "v"
    # ComfyUI reads the v_pred key back (SDXL.model_type): the reloaded file samples as the in-graph model
    assert_ok(server.run({**loader("r", f"sdxl_v/{ckpt[0].name}"),
                          **sample("sdxl_v/reloaded", ["r", 0], ["r", 1], nid="rl")}))
    base, unlearned = saved_latent(scratch, "sdxl_v/base"), saved_latent(scratch, "sdxl_v/unlearned")
    assert (base - unlearned).abs().max() > 1e-4, "the unlearned v-prediction model samples like the base"
    _assert_close("sdxl_v/reloaded", saved_latent(scratch, "sdxl_v/reloaded"), unlearned, base)


def test_few_shot_text_encoder_forget_refuses_sdxl(server):
    graph = {**loader("1", CKPT), **concepts("c"),
             "f": {"class_type": "FewShotTextEncoderForget", "inputs": {
                 "clip": ["1", 1], "model": ["1", 0], "vae": ["1", 2], "concept_set": ["c", 0],
                 "num_layers": 2, "lora_rank": 4, "lora_alpha": 4.0, "ti_steps": 1, "ti_learning_rate": 5e-3,
                 "steps": 1, "learning_rate": 2e-3, "batch_size": 1, "forget_weight": 1.0, "ti_weight": 1.0,
                 "preserve_weight": 1.0, "include_learned_token": True, "adversarial_interval": 0, "resolution": 64, "seed": 0}},
             **save("s", ["1", 0], "lora", "sdxl/bad", clip=["f", 0])}
    try:
        entry = server.run(graph)
    except PromptRejected as exc:  # pragma: no cover - the refusal happens at execution
        pytest.fail(f"rejected at validation: {exc}")
    err = error_of(entry)
    assert err is not None and err["node_type"] == "FewShotTextEncoderForget"
    assert "two text encoders" in err["exception_message"] and "Dynamic Mask Unlearn" in err["exception_message"]
