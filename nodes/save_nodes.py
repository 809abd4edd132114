"""SaveUnlearnedModel: write the edited model as a full checkpoint, a LoRA or an exact diff file."""

from __future__ import annotations

import json
import os

import torch
from comfy_api.latest import io, ui

import comfy.model_base
import comfy.model_sampling
import comfy.sd
import folder_paths

from ..unlearn_core import __version__
from ..unlearn_core.atomic import atomic_file
from ..unlearn_core.weights_io import METADATA_KEY, atomic_save_safetensors
from .comfy_bridge import effective_deltas
from .comfy_types import CATEGORY, history_of
from .patch_files import patch_file_tensors
from .reporting import redact_history
from .save_paths import check_filename_prefix

FORMATS = ["checkpoint", "lora", "diff"]


def _unique_path(prefix: str, folder: str) -> tuple[str, str]:
    """(absolute path, path relative to the output folder) that does not exist yet."""
    output_dir = folder_paths.get_output_directory()
    full_folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(f"{folder}/{prefix}", output_dir)
    os.makedirs(full_folder, exist_ok=True)
    while True:
        name = f"{filename}_{counter:05}_.safetensors"
        path = os.path.join(full_folder, name)
        if not os.path.exists(path):
            return path, os.path.relpath(path, output_dir)
        counter += 1


class SaveUnlearnedModel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SaveUnlearnedModel",
            display_name="Save Unlearned Model",
            category=CATEGORY,
            is_output_node=True,
            description="Saves the edited model: a full checkpoint (output/checkpoints), or only the edit as a "
                        "LoRA or an exact diff file (output/loras; both load with Load LoRA). Files are written "
                        "under a new name (never overwriting) and appear complete or not at all.",
            inputs=[
                io.Model.Input("model", tooltip="The edited model (output of an unlearning node)."),
                io.Combo.Input("format", options=FORMATS, default="checkpoint",
                               tooltip="checkpoint: the whole model (needs CLIP and VAE). lora: the edit as a "
                                       "low-rank file (SVD of each change). diff: the exact change per weight."),
                io.String.Input("filename_prefix", default="unlearned/model",
                                tooltip="File name prefix, relative to output/checkpoints or output/loras; a "
                                        "counter is appended so existing files are never overwritten."),
                io.Int.Input("lora_rank", default=64, min=1, max=1024,
                             tooltip="Rank of the LoRA (format 'lora'). Higher is closer to the exact edit; the "
                                     "approximation error per layer is in the report."),
                io.Boolean.Input("hash_concept_names", default=False,
                                 tooltip="Store erased concept names only as keyed hashes in the file's metadata "
                                         "(HMAC-SHA256 under a random key that is kept nowhere, so the names "
                                         "cannot be recovered, not even by trying candidate names), leave out the "
                                         "retain prompts and the workflow, whose text names them."),
                io.Boolean.Input("embed_workflow", default=True,
                                 tooltip="Store the ComfyUI workflow in the metadata, as Checkpoint Save does "
                                         "(always off when hashing concept names)."),
                io.Clip.Input("clip", optional=True,
                              tooltip="Text encoder: required for a checkpoint; for LoRA/diff, its edits (e.g. "
                                      "from Few-Shot Text Encoder Forget) are saved too."),
                io.Vae.Input("vae", optional=True, tooltip="VAE: required for a full checkpoint."),
            ],
            outputs=[io.String.Output(display_name="path", tooltip="Where the file was written (relative to output).")],
        )

    @classmethod
    def execute(cls, model, format, filename_prefix, lora_rank, hash_concept_names, embed_workflow, clip=None,
                vae=None) -> io.NodeOutput:
        filename_prefix = check_filename_prefix(filename_prefix)  # before any work: a bad name fails at once
        history = history_of(model) + (history_of(clip.patcher) if clip is not None else [])
        info = {"library": "unlearn_core", "library_version": __version__, "format": format,
                "history": redact_history(history, hash_concept_names)}
        metadata = {METADATA_KEY: json.dumps(info)}
        if embed_workflow and not hash_concept_names:
            if cls.hidden.prompt is not None:
                metadata["prompt"] = json.dumps(cls.hidden.prompt)
            for k, v in (cls.hidden.extra_pnginfo or {}).items():
                metadata[k] = json.dumps(v)
        if format == "checkpoint":
            if clip is None or vae is None:
                raise ValueError("saving a full checkpoint needs the CLIP and the VAE as well; connect them, or "
                                 "choose format 'lora' or 'diff' to save only the edit")
            path, rel = _unique_path(filename_prefix, "checkpoints")
            cls._save_checkpoint(model, clip, vae, path, metadata)
            summary = f"saved checkpoint {rel}"
        elif format in ("lora", "diff"):
            with torch.inference_mode(False):
                model_deltas = effective_deltas(model, "diffusion_model.")
                clip_deltas = effective_deltas(clip.patcher) if clip is not None else {}
                if not model_deltas and not clip_deltas:
                    raise ValueError("this MODEL (and CLIP) carry no edits to save; connect the output of an "
                                     "unlearning node, or save a full checkpoint")
                tensors, errors = patch_file_tensors(model_deltas, clip_deltas, format, lora_rank)
            path, rel = _unique_path(filename_prefix, "loras")
            if errors:
                info["lora_rank"] = lora_rank
                info["lora_mean_relative_error"] = sum(errors.values()) / len(errors)
                metadata[METADATA_KEY] = json.dumps(info)
            atomic_save_safetensors(tensors, path, metadata, overwrite=False)
            summary = f"saved {format} {rel}: {len(model_deltas)} UNet and {len(clip_deltas)} text-encoder weights"
            if errors:
                worst = max(errors.values())
                summary += (f"; rank {lora_rank}, mean relative error {info['lora_mean_relative_error']:.3g}, "
                            f"worst {worst:.3g}")
        else:
            raise ValueError(f"unknown format {format!r}; choose one of {FORMATS}")
        return io.NodeOutput(rel, ui=ui.PreviewText(summary))

    @staticmethod
    def _save_checkpoint(model, clip, vae, path: str, metadata: dict) -> None:
        extra_keys = {}
        sampling = model.get_model_object("model_sampling")
        model_type = model.model.model_type
        if isinstance(sampling, comfy.model_sampling.ModelSamplingDiscrete) and \
                isinstance(sampling, comfy.model_sampling.V_PREDICTION):
            # a 'ModelSamplingDiscrete' node made this MODEL v-prediction: save what it samples as
            # (ComfyUI reads the v_pred key back for SDXL checkpoints)
            model_type = comfy.model_base.ModelType.V_PREDICTION
        if model_type == comfy.model_base.ModelType.EPS:
            metadata["modelspec.predict_key"] = "epsilon"
        elif model_type == comfy.model_base.ModelType.V_PREDICTION:
            metadata["modelspec.predict_key"] = "v"
            extra_keys["v_pred"] = torch.tensor([])
            if getattr(sampling, "zsnr", False):
                extra_keys["ztsnr"] = torch.tensor([])
        with atomic_file(path, overwrite=False) as tmp:  # refuses a file that appeared meanwhile
            comfy.sd.save_checkpoint(str(tmp), model, clip, vae, metadata=metadata, extra_keys=extra_keys)
