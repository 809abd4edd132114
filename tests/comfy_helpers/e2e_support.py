"""Running a scratch, headless ComfyUI for end-to-end tests, and small API-graph builders.

Used by tests/test_comfyui_e2e.py and tests/test_comfyui_sdxl_e2e.py (skip logic, scratch folder,
server, graph builders). The server gets a scratch --base-directory whose custom_nodes/ links to
this repository; helper scripts run with ComfyUI's python from ComfyUI's
folder. Nothing is downloaded and nothing is written outside the scratch folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HELPERS = Path(__file__).resolve().parent


#: The pack's folder name in custom_nodes/ (the README's clone command; the Templates browser's tab).
PACK_FOLDER = "comfyui-concept-unlearn"


def skip_or_fail_in_ci(reason: str, module_level: bool = False):
    """Skip a ComfyUI test whose prerequisites are missing — except in CI (CI=true), where the
    ComfyUI tier must run: there it is a failure that says what is missing."""
    import pytest

    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}; .ci/run sets the ComfyUI tier up with .ci/setup_comfyui.sh",
                    pytrace=False)
    pytest.skip(reason, allow_module_level=module_level)


def comfyui_or_skip(what: str) -> tuple[str, str]:
    """(COMFYUI_PATH, COMFYUI_PYTHON) from the environment, or skip the calling test module
    (call at module level) saying what to set; in CI a failure instead."""
    path = os.environ.get("COMFYUI_PATH")
    python = os.environ.get("COMFYUI_PYTHON", "python")
    if not path:
        skip_or_fail_in_ci(f"set COMFYUI_PATH to a ComfyUI checkout (and COMFYUI_PYTHON to its python) to run {what}",
                           module_level=True)
    if not (Path(path) / "main.py").is_file():
        skip_or_fail_in_ci(f"COMFYUI_PATH={path} has no main.py", module_level=True)
    if shutil.which(python) is None and not Path(python).is_file():
        skip_or_fail_in_ci(f"COMFYUI_PYTHON={python} is not an executable", module_level=True)
    return path, python


def comfy_env(comfyui_path: str) -> dict:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1"), "COMFYUI_PATH": comfyui_path,
                "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    return env


def run_helper(python: str, comfyui_path: str, script: str, *args: str, timeout: int) -> subprocess.CompletedProcess:
    """Run tests/comfy_helpers/<script> (niced) with ComfyUI's python from ComfyUI's folder."""
    return subprocess.run(["nice", "-n", "19", python, str(HELPERS / script), *args], cwd=comfyui_path,
                          env=comfy_env(comfyui_path), capture_output=True, text=True, timeout=timeout)


def make_scratch(base: Path) -> Path:
    """A ComfyUI base directory with this repository as its only custom node pack."""
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / PACK_FOLDER).symlink_to(REPO, target_is_directory=True)
    (base / "models" / "checkpoints").mkdir(parents=True)
    (base / "input").mkdir()
    return base


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def comfy_server(python: str, comfyui_path: str, base: Path, timeout: int):
    """`main.py --cpu` on a free port over `base`; yields a ComfyClient once /system_stats answers."""
    import requests
    from client import ComfyClient

    port = _free_port()
    log_path = base / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(["nice", "-n", "19", python, "main.py", "--cpu", "--listen", "127.0.0.1",
                                 "--port", str(port), "--disable-auto-launch", "--base-directory", str(base)],
                                cwd=comfyui_path, env=comfy_env(comfyui_path), stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError("ComfyUI exited:\n" + log_path.read_text()[-3000:])
                try:
                    if requests.get(f"{url}/system_stats", timeout=2).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                if time.time() > deadline:
                    raise RuntimeError("ComfyUI did not start in time:\n" + log_path.read_text()[-3000:])
                time.sleep(1)
            yield ComfyClient(url, timeout=timeout)
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


# ---- API-format graph builders -------------------------------------------------------------------
def loader(nid: str, ckpt: str) -> dict:
    return {nid: {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}}}


def sample(prefix: str, model, clip, nid: str, latent=None, size: int = 64, steps: int = 2, seed: int = 7) -> dict:
    """Nodes that sample size x size with `model` and save the latent under output/latents/<prefix>."""
    g = {
        f"{nid}_pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a cat", "clip": clip}},
        f"{nid}_neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": clip}},
        f"{nid}_k": {"class_type": "KSampler", "inputs": {
            "model": model, "seed": seed, "steps": steps, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal",
            "positive": [f"{nid}_pos", 0], "negative": [f"{nid}_neg", 0], "denoise": 1.0,
            "latent_image": latent or [f"{nid}_empty", 0]}},
        f"{nid}_save": {"class_type": "SaveLatent", "inputs": {"samples": [f"{nid}_k", 0],
                                                               "filename_prefix": f"latents/{prefix}"}},
    }
    if latent is None:
        g[f"{nid}_empty"] = {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size,
                                                                          "batch_size": 1}}
    return g


def concepts(nid: str, concept_lines: str = "cat => animal", retain: str = "a house",
             templates: str = "a photo of a {}", **links) -> dict:
    return {nid: {"class_type": "LoadConceptSet",
                  "inputs": {"concepts": concept_lines, "retain_prompts": retain, "templates": templates, **links}}}


def save(nid: str, model, fmt: str, prefix: str, clip=None, vae=None, rank: int = 64, hash_names: bool = False,
         embed_workflow: bool = False) -> dict:
    inputs = {"model": model, "format": fmt, "filename_prefix": prefix, "lora_rank": rank,
              "hash_concept_names": hash_names, "embed_workflow": embed_workflow}
    if clip:
        inputs["clip"] = clip
    if vae:
        inputs["vae"] = vae
    return {nid: {"class_type": "SaveUnlearnedModel", "inputs": inputs}}


def saved_latent(base: Path, prefix: str):
    from safetensors.torch import load_file

    files = sorted((base / "output" / "latents").glob(f"{prefix}_*.latent"))
    assert files, f"no latent saved under {prefix}"
    return load_file(str(files[-1]))["latent_tensor"]


def assert_ok(entry: dict) -> dict:
    from client import error_of

    err = error_of(entry)
    assert err is None, f"{err['node_type']}: {err['exception_message']}\n{''.join(err['traceback'][-6:])}"
    assert entry["status"]["status_str"] == "success"
    return entry
