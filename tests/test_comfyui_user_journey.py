"""A new user's first session, end to end, with a real ComfyUI and nothing but what the README says.

1. Install: the pack is cloned (from this repository's committed state) into a ComfyUI
   `custom_nodes/` folder and its requirements.txt installed into ComfyUI's Python.
2. Start ComfyUI and run the shipped erase-one-concept workflow (its API twin, with a tiny
   random-weight SD1.5 checkpoint and few steps); it saves the edit as a LoRA.
3. Load the result with the stock loaders as the README says: LoraLoader lists ComfyUI's
   `output/loras/`, so the file is found as `unlearned/<prefix>_00001_.safetensors` without copying.
4. Sample the erased concept and a retained prompt with the same seed, with and without the LoRA:
   the erased prompt's sample changes, the retained prompt's stays as it was (within tolerance).

    COMFYUI_PATH=... COMFYUI_PYTHON=... python -m pytest tests/test_comfyui_user_journey.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HELPERS = Path(__file__).resolve().parent / "comfy_helpers"

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]

sys.path.insert(0, str(HELPERS))
import e2e_support as e2e  # noqa: E402

COMFYUI_PATH, COMFYUI_PYTHON = e2e.comfyui_or_skip("the user-journey test")
pytest.importorskip("requests")
torch = pytest.importorskip("torch")

CKPT = "tiny_sd15.safetensors"
TIMEOUT = 1800
#: What "unchanged" means for the retained prompt: its sample moves by at most this fraction of
#: how far the erased prompt's sample moves (same seed, same model, LoRA on vs off).
RETAINED_TO_ERASED_CHANGE = 0.5


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

    with e2e.comfy_server(COMFYUI_PYTHON, COMFYUI_PATH, base, TIMEOUT) as server:
        # the pack loaded from the clone, not from anywhere else
        assert "DynamicMaskUnlearn" in server.object_info()
        e2e.assert_ok(server.run(workflow))
        saved = sorted((base / "output" / "loras").rglob("*.safetensors"))
        assert [p.relative_to(base / "output" / "loras").as_posix() for p in saved] == \
            [f"{save['inputs']['filename_prefix']}_00001_.safetensors"]
        lora_name = saved[0].relative_to(base / "output" / "loras").as_posix()
        # README: the stock loaders list output/loras — the saved file is offered without copying it
        listed = server.object_info()["LoraLoader"]["input"]["required"]["lora_name"][0]
        assert lora_name in listed

        graph = {**e2e.loader("1", CKPT),
                 "2": {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "clip": ["1", 1], "lora_name": lora_name,
                                                             "strength_model": 1.0, "strength_clip": 1.0}}}
        for tag, model, clip in (("base", ["1", 0], ["1", 1]), ("edit", ["2", 0], ["2", 1])):
            for which, prompt in (("erased", erased_prompt), ("retained", retained_prompt)):
                nodes = e2e.sample(f"journey_{tag}_{which}", model, clip, f"{tag}_{which}", steps=4, seed=11)
                nodes[f"{tag}_{which}_pos"]["inputs"]["text"] = prompt
                graph.update(nodes)
        e2e.assert_ok(server.run(graph))

    latent = {k: e2e.saved_latent(base, f"journey_{k}") for k in
              ("base_erased", "edit_erased", "base_retained", "edit_retained")}
    erased_change = float((latent["edit_erased"] - latent["base_erased"]).abs().max())
    retained_change = float((latent["edit_retained"] - latent["base_retained"]).abs().max())
    print(f"user journey: erased prompt's sample moved {erased_change:.4g}, retained prompt's {retained_change:.4g}")
    assert erased_change > 1e-3 * float(latent["base_erased"].abs().max()), "the saved edit does not act"
    assert retained_change <= RETAINED_TO_ERASED_CHANGE * erased_change, \
        f"the retained prompt moved {retained_change:.4g}, the erased one {erased_change:.4g}"


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
            inputs.update(steps_per_concept=12, learning_rate=1e-3, batch_size=1, images_per_concept=2,
                          retain_images_per_prompt=1, sampling_steps=2, resolution=64, mask_warmup_steps=2,
                          mask_update_interval=4)
