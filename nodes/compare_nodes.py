"""CompareModelWeights: which weights differ between two MODELs (and CLIPs), and by how much."""

from __future__ import annotations

import json

import torch
from comfy_api.latest import io, ui

import comfy.lora

from .comfy_bridge import _outside
from .comfy_types import CATEGORY


def _effective(patcher, keys=None) -> dict[str, torch.Tensor]:
    with torch.inference_mode(True):
        key_patches = patcher.get_key_patches()
    out = {}
    for key, entries in key_patches.items():
        if keys is not None and key not in keys:
            continue
        weight, convert = entries[0]
        w = _outside(convert(weight) if convert else weight, torch.device("cpu"), torch.float32)
        out[key] = comfy.lora.calculate_weight(entries[1:], w, key) if len(entries) > 1 else w
    return out


def compare_patchers(a, b) -> dict:
    """{'compared': n, 'changed': {key: max |a-b|}, 'max_abs_diff': x} over the weights of a and b."""
    with torch.inference_mode(False):
        if a.model is b.model:  # clones of one loaded model: only patched weights can differ
            keys = set(a.patches) | set(b.patches)
        else:
            keys = None
        wa, wb = _effective(a, keys), _effective(b, keys)
        changed, missing = {}, sorted(set(wa) ^ set(wb))
        for key in sorted(set(wa) & set(wb)):
            if wa[key].shape != wb[key].shape:
                changed[key] = float("inf")
                continue
            diff = float((wa[key] - wb[key]).abs().max()) if wa[key].numel() else 0.0
            if diff > 0:
                changed[key] = diff
    total = len(a.model.state_dict()) if keys is not None else len(set(wa) | set(wb))
    return {"compared": total, "changed": changed, "only_in_one": missing,
            "max_abs_diff": max(changed.values(), default=0.0)}


class CompareModelWeights(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CompareModelWeights",
            display_name="Compare Model Weights",
            category=CATEGORY,
            is_output_node=True,
            description="Lists the weights that differ between two models (with patches such as LoRAs and "
                        "unlearning edits applied), e.g. to check that an unlearning run changed only the "
                        "layers it targets.",
            inputs=[
                io.Model.Input("model_a", tooltip="First model (e.g. the original)."),
                io.Model.Input("model_b", tooltip="Second model (e.g. the unlearned one)."),
                io.Clip.Input("clip_a", optional=True, tooltip="Optional first text encoder to compare."),
                io.Clip.Input("clip_b", optional=True, tooltip="Optional second text encoder to compare."),
            ],
            outputs=[io.String.Output(display_name="report",
                                      tooltip="JSON: number of weights compared, changed weights with their "
                                              "largest absolute difference.")],
        )

    @classmethod
    def execute(cls, model_a, model_b, clip_a=None, clip_b=None) -> io.NodeOutput:
        report = {"model": compare_patchers(model_a, model_b)}
        if clip_a is not None and clip_b is not None:
            report["clip"] = compare_patchers(clip_a.patcher, clip_b.patcher)
        text = json.dumps(report, indent=1)
        return io.NodeOutput(text, ui=ui.PreviewText(text))
