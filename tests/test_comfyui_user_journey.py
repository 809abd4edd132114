"""A new user's first session, end to end, with a real ComfyUI and nothing but what the README says.

1. Install: the pack is cloned (from this repository's committed state) into a ComfyUI
   `custom_nodes/` folder and its requirements.txt installed into ComfyUI's Python.
2. Start ComfyUI and run the shipped erase-one-concept workflow (its API twin, with a tiny
   random-weight SD1.5 checkpoint and few steps); it saves the edit as a LoRA.
3. Load the result with the stock loaders as the README says: LoraLoader lists ComfyUI's
   `output/loras/`, so the file is found as `unlearned/<prefix>_00001_.safetensors` without copying.
4. Sample the erased concept and a retained prompt with the same seed: through the reloaded LoRA
   they equal the workflow's own unlearned model's samples, the erased prompt's differs from the
   base model's, and Compare Model Weights finds changes only in the diffusion model's
   cross-attention (none in the text encoder). The shipped closed-form workflow runs in the same
   session, and its saved LoRA, reloaded, acts on the erased prompt. The tiny checkpoint has random
   weights, so whether a retained prompt samples as before is printed here and measured on the toy
   model (bench all: retained accuracy).

    COMFYUI_PATH=... COMFYUI_PYTHON=... python -m pytest tests/test_comfyui_user_journey.py
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HELPERS = Path(__file__).resolve().parent / "comfy_helpers"

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]

sys.path.insert(0, str(HELPERS))
import e2e_support as e2e  # noqa: E402
from client import text_output  # noqa: E402

COMFYUI_PATH, COMFYUI_PYTHON = e2e.comfyui_or_skip("the user-journey test")
pytest.importorskip("requests")
torch = pytest.importorskip("torch")

CKPT = "tiny_sd15.safetensors"
TIMEOUT = 1800
CROSS_ATTENTION = re.compile(r"^diffusion_model\..*\.attn2\.(to_q|to_k|to_v|to_out\.0)\.(weight|bias)$")


def test_install_as_the_readme_says_erase_save_reload_and_compare(tmp_path):
    base = tmp_path / "comfy"
    (base / "custom_nodes").mkdir(parents=True)
    (base / "models" / "checkpoints").mkdir(parents=True)
    (base / "input").mkdir()
    pack = base / "custom_nodes" / e2e.PACK_FOLDER
    # README, install: clone into custom_nodes/, requirements into ComfyUI's Python
    subprocess.run(["git", "clone", "-q", str(REPO), str(pack)], check=True, timeout=300)
    pip = subprocess.run([COMFYUI_PYTHON, "-m", "pip", "install", "-q", "-r", str(pack / "requirements.txt")],
                         capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr[-3000:]
    proc = e2e.run_helper(COMFYUI_PYTHON, COMFYUI_PATH, "build_tiny_sd15.py", str(base / "models" / "checkpoints" / CKPT),
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]

    workflow = json.loads((pack / "workflows" / "api" / "erase_one_concept_compare.json").read_text())
    save = next(n for n in workflow.values() if n["class_type"] == "SaveUnlearnedModel")
    assert save["inputs"]["format"] == "lora"
    erased_prompt = next(n for n in workflow.values() if n["class_type"] == "CLIPTextEncode")["inputs"]["text"]
    concept_set = next(n for n in workflow.values() if n["class_type"] == "LoadConceptSet")["inputs"]
    retained_prompt = concept_set["retain_prompts"].splitlines()[0]
    _shrink(workflow)

    # the fast path a user tries next: the closed-form workflow, in the same session
    fast = json.loads((pack / "workflows" / "api" / "erase_fast_closed_form.json").read_text())
    fast_save = next(n for n in fast.values() if n["class_type"] == "SaveUnlearnedModel")
    fast_erased = next(n for n in fast.values() if n["class_type"] == "CLIPTextEncode")["inputs"]["text"]
    fast_set = next(n for n in fast.values() if n["class_type"] == "LoadConceptSet")["inputs"]
    fast_retained = fast_set["retain_prompts"].splitlines()[0]
    _shrink(fast)

    unlearn = next(nid for nid, n in workflow.items() if n["class_type"] == "DynamicMaskUnlearn")
    # beside the workflow's own before/after samples: the unlearned MODEL's samples of the erased and a
    # retained prompt, to compare with what the saved file gives after reloading
    for which, prompt in (("erased", erased_prompt), ("retained", retained_prompt)):
        nodes = e2e.sample(f"journey_graph_{which}", [unlearn, 0], ["1", 1], f"graph_{which}", steps=4, seed=11)
        nodes[f"graph_{which}_pos"]["inputs"]["text"] = prompt
        workflow.update(nodes)

    with e2e.comfy_server(COMFYUI_PYTHON, COMFYUI_PATH, base, TIMEOUT) as server:
        assert "DynamicMaskUnlearn" in server.object_info()  # the pack loaded from the clone
        e2e.assert_ok(server.run(workflow))
        e2e.assert_ok(server.run(fast))
        fast_lora = f"{fast_save['inputs']['filename_prefix']}_00001_.safetensors"
        assert (base / "output" / "loras" / fast_lora).is_file()
        saved = sorted(p for p in (base / "output" / "loras").rglob("*.safetensors")
                       if p.relative_to(base / "output" / "loras").as_posix() != fast_lora)
        assert [p.relative_to(base / "output" / "loras").as_posix() for p in saved] == \
            [f"{save['inputs']['filename_prefix']}_00001_.safetensors"]
        lora_name = saved[0].relative_to(base / "output" / "loras").as_posix()
        # README: the stock loaders list output/loras — the saved file is offered without copying it
        listed = server.object_info()["LoraLoader"]["input"]["required"]["lora_name"][0]
        assert lora_name in listed

        graph = {**e2e.loader("1", CKPT),
                 "2": {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "clip": ["1", 1], "lora_name": lora_name,
                                                             "strength_model": 1.0, "strength_clip": 1.0}},
                 "3": {"class_type": "CompareModelWeights", "inputs": {"model_a": ["1", 0], "model_b": ["2", 0],
                                                                       "clip_a": ["1", 1], "clip_b": ["2", 1]}}}
        for tag, model, clip in (("base", ["1", 0], ["1", 1]), ("reloaded", ["2", 0], ["2", 1])):
            for which, prompt in (("erased", erased_prompt), ("retained", retained_prompt)):
                nodes = e2e.sample(f"journey_{tag}_{which}", model, clip, f"{tag}_{which}", steps=4, seed=11)
                nodes[f"{tag}_{which}_pos"]["inputs"]["text"] = prompt
                graph.update(nodes)
        graph["4"] = {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "clip": ["1", 1], "lora_name": fast_lora,
                                                         "strength_model": 1.0, "strength_clip": 1.0}}
        for tag, model in (("fastbase", ["1", 0]), ("fast", ["4", 0])):
            for which, prompt in (("erased", fast_erased), ("retained", fast_retained)):
                nodes = e2e.sample(f"journey_{tag}_{which}", model, ["1", 1], f"{tag}_{which}", steps=4, seed=11)
                nodes[f"{tag}_{which}_pos"]["inputs"]["text"] = prompt
                graph.update(nodes)
        entry = e2e.assert_ok(server.run(graph))
        report = json.loads(text_output(entry, "3"))

    latent = {k: e2e.saved_latent(base, f"journey_{k}") for k in
              ("base_erased", "base_retained", "graph_erased", "graph_retained", "reloaded_erased", "reloaded_retained")}
    # the reloaded file is the edit the workflow made (exact: rank >= every edited matrix's smaller side)
    for which in ("erased", "retained"):
        err = float((latent[f"reloaded_{which}"] - latent[f"graph_{which}"]).abs().max())
        assert err <= 1e-4 * max(1.0, float(latent[f"graph_{which}"].abs().max())), (which, err)
    # it acts on the erased prompt ...
    erased_change = float((latent["reloaded_erased"] - latent["base_erased"]).abs().max())
    assert erased_change > 1e-3 * float(latent["base_erased"].abs().max()), "the saved edit does not act"
    # ... and only through the layers the method edits: cross-attention of the diffusion model, no text encoder
    changed = report["model"]["changed"]
    assert changed and all(CROSS_ATTENTION.match(k) for k in changed), sorted(changed)[:5]
    assert report["clip"]["changed"] == {}
    # A random-weight model has no concepts to keep apart, so this is reported, not asserted: whether
    # retained prompts sample as before is measured on the toy model (bench unet, retained accuracy).
    retained_change = float((latent["reloaded_retained"] - latent["base_retained"]).abs().max())
    print(f"user journey: {len(changed)} cross-attention tensors changed; erased prompt's sample moved "
          f"{erased_change:.4g}, retained prompt's {retained_change:.4g} (random-weight model)")

    # The closed-form edit, saved and reloaded, acts too. Whether a retained prompt samples as before
    # is reported, not asserted, for the same reason as above: on random weights the end and padding
    # tokens of every prompt encode almost alike, so the edit of the concept's moves the retained
    # prompt's as well (measured: erased 46.1, retained 30.6 at latent scale 327).
    fast = {k: e2e.saved_latent(base, f"journey_{k}") for k in
            ("fastbase_erased", "fastbase_retained", "fast_erased", "fast_retained")}
    fast_erased_change = float((fast["fast_erased"] - fast["fastbase_erased"]).abs().max())
    fast_retained_change = float((fast["fast_retained"] - fast["fastbase_retained"]).abs().max())
    print(f"user journey, closed form: erased prompt's sample moved {fast_erased_change:.4g}, retained prompt's "
          f"{fast_retained_change:.4g} (latent scale {float(fast['fastbase_retained'].abs().max()):.4g})")
    assert fast_erased_change > 1e-2 * float(fast["fastbase_erased"].abs().max()), "the closed-form edit does not act"


def _shrink(api: dict) -> None:
    """The workflow at test size: the tiny checkpoint, 64 px, few steps (structure unchanged)."""
    for node in api.values():
        inputs, kind = node["inputs"], node["class_type"]
        if kind == "CheckpointLoaderSimple":
            inputs["ckpt_name"] = CKPT
        elif kind == "EmptyLatentImage":
            inputs.update(width=64, height=64, batch_size=1)
        elif kind == "KSampler":
            inputs["steps"] = 2
        elif kind == "DynamicMaskUnlearn":
            inputs.update(steps_per_concept=6, learning_rate=1e-3, batch_size=1, images_per_concept=2,
                          retain_images_per_prompt=1, sampling_steps=2, resolution=64, mask_warmup_steps=2,
                          mask_update_interval=2)
        elif kind == "SaveUnlearnedModel":
            inputs["lora_rank"] = 320  # full rank of the tiny model's edited matrices: the file is the exact edit
