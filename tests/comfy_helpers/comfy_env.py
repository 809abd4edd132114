"""Set up ComfyUI's modules in a plain Python process (no server) and import the node pack.

Import this first in helper scripts run with ComfyUI's python: it enables ComfyUI's argument
parsing with --cpu and puts COMFYUI_PATH on sys.path."""

import importlib.util
import os
import sys

COMFYUI_PATH = os.environ.get("COMFYUI_PATH", os.getcwd())
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
_argv = sys.argv
sys.argv = sys.argv[:1] + ["--cpu"]
sys.path.insert(0, COMFYUI_PATH)
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()
import comfy.model_management  # noqa: E402,F401  (parses the arguments now)

sys.argv = _argv


def import_pack(name: str = "concept_unlearn_pack"):
    """The repository root as a package, the way ComfyUI imports a custom-node folder."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "__init__.py"),
                                                  submodule_search_locations=[REPO])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_checkpoint(path: str):
    """(MODEL, CLIP, VAE) as CheckpointLoaderSimple gives them (inside inference mode)."""
    import torch

    import comfy.sd

    with torch.inference_mode():
        out = comfy.sd.load_checkpoint_guess_config(path, output_vae=True, output_clip=True)
    return out[0], out[1], out[2]
