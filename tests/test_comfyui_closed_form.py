"""The Closed-Form Concept Erase node inside a real, headless ComfyUI (same set-up as
tests/test_comfyui_e2e.py: a random-weight checkpoint ComfyUI detects as SD1.5, a scratch base
directory, API-format graphs posted to /prompt).

    COMFYUI_PATH=/work/comfy-ci/ComfyUI COMFYUI_PYTHON=/work/comfy-ci/venv/bin/python \
        python -m pytest tests/test_comfyui_closed_form.py
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

HELPERS = Path(__file__).resolve().parent / "comfy_helpers"

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]

sys.path.insert(0, str(HELPERS))
import e2e_support as e2e  # noqa: E402

COMFYUI_PATH, COMFYUI_PYTHON = e2e.comfyui_or_skip("the ComfyUI closed-form test")
pytest.importorskip("requests")
torch = pytest.importorskip("torch")
from client import text_output  # noqa: E402

CKPT = "tiny_sd15.safetensors"
TIMEOUT = int(os.environ.get("E2E_TIMEOUT", "1800"))
KEY_VALUE = re.compile(r"^diffusion_model\..*\.attn2\.to_[kv]\.weight$")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    base = e2e.make_scratch(tmp_path_factory.mktemp("comfy_closed_form"))
    proc = e2e.run_helper(COMFYUI_PYTHON, COMFYUI_PATH, "build_tiny_sd15.py",
                          str(base / "models" / "checkpoints" / CKPT), timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return base


@pytest.fixture(scope="module")
def server(scratch):
    with e2e.comfy_server(COMFYUI_PYTHON, COMFYUI_PATH, scratch, TIMEOUT) as client:
        yield client


def test_closed_form_node_edits_only_the_cross_attention_keys_and_values(server, scratch):
    from unlearn_core.closed_form import ClosedFormConfig

    info = server.object_info()["ClosedFormConceptErase"]
    assert info["category"] == "unlearning" and info["display_name"] == "Closed-Form Concept Erase"
    required = info["input"]["required"]
    for name, spec in required.items():
        assert len(spec) > 1 and spec[1].get("tooltip"), f"{name} has no tooltip"
    defaults = ClosedFormConfig()
    for field in ("preserve_weight", "ridge", "generic_prompts", "overshoot", "padding_positions"):
        assert required[field][1]["default"] == getattr(defaults, field), field

    settings = {"preserve_weight": 1.0, "ridge": 0.1, "generic_prompts": True, "overshoot": 1.0, "padding_positions": 8}
    graph = {
        **e2e.loader("1", CKPT),
        **e2e.concepts("c", "cat => animal", "a house", "a photo of a {}"),
        "cf": {"class_type": "ClosedFormConceptErase", "inputs": {"model": ["1", 0], "clip": ["1", 1],
                                                                  "concept_set": ["c", 0], **settings}},
        **e2e.sample("e2e/cf_edited", ["cf", 0], ["1", 1], "s", steps=2),
        **e2e.sample("e2e/cf_input", ["1", 0], ["1", 1], "b", steps=2),
        "cmp": {"class_type": "CompareModelWeights", "inputs": {"model_a": ["1", 0], "model_b": ["cf", 0]}},
        "report": {"class_type": "PreviewAny", "inputs": {"source": ["cf", 1]}},
    }
    entry = e2e.assert_ok(server.run(graph))
    changed = sorted(json.loads(text_output(entry, "cmp"))["model"]["changed"])
    assert len(changed) == 8, changed  # 4 transformer blocks x (to_k, to_v)
    assert all(KEY_VALUE.match(k) for k in changed), changed
    report = "".join(entry["outputs"]["report"]["text"])
    assert "erased: 'cat' -> 'animal'" in report and "residual" in report
    # (prefixes that do not extend one another: saved_latent globs '<prefix>_*')
    edited, base = (e2e.saved_latent(scratch, p) for p in ("e2e/cf_edited", "e2e/cf_input"))
    assert (edited - base).abs().max() > 0, "the edited model samples exactly like the input"


#: run with ComfyUI's python: the bridge's batched token embeddings against its per-prompt encoding,
#: and its token ids against the SD1 tokenizer ComfyUI ships (what DiffusersAdapter would give)
BRIDGE_CHECK = r"""
import json, os, sys
sys.path.insert(0, sys.argv[2])
import comfy_env
pack = comfy_env.import_pack()
bridge = __import__(f"{pack.__name__}.nodes.comfy_bridge", fromlist=["x"])
model, clip, vae = comfy_env.load_checkpoint(sys.argv[1])
prompts = ["a photo of a cat", "a photo of an animal", "", "a watercolor of a garden, detailed"]
with bridge.training_mode():
    adapter = bridge.ComfyDenoiserAdapter(model, clip)
    batched = adapter.token_embeddings(prompts, batch=3)
    short = adapter.token_embeddings(prompts, length=9)
    single = adapter.encode_prompts(prompts)
    ids = adapter.prompt_token_ids(prompts)
from transformers import CLIPTokenizer
tok = CLIPTokenizer.from_pretrained(os.path.join(comfy_env.COMFYUI_PATH, "comfy", "sd1_tokenizer"))
expected = [list(e) for e in tok(prompts, max_length=77, truncation=True).input_ids]
print(json.dumps({"max_diff": float((batched - single).abs().max()), "shape": list(batched.shape),
                  "short": list(short.shape), "short_diff": float((short - single[:, :9]).abs().max()),
                  "ids": ids, "expected": expected}))
"""


def test_bridge_token_embeddings_are_the_conditioning_rows(scratch):
    import subprocess

    proc = subprocess.run(["nice", "-n", "19", COMFYUI_PYTHON, "-c", BRIDGE_CHECK,
                           str(scratch / "models" / "checkpoints" / CKPT), str(HELPERS)],
                          cwd=COMFYUI_PATH, env=e2e.comfy_env(COMFYUI_PATH), capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["shape"] == [4, 77, 768] and out["short"] == [4, 9, 768]
    assert out["max_diff"] < 1e-4 and out["short_diff"] < 1e-4, out
    assert out["ids"] == out["expected"], out
