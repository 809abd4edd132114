"""CompareModelWeights: which weights differ between two MODELs (and CLIPs), and by how much."""

from __future__ import annotations

import json

import torch
from comfy_api.latest import io, ui

from .comfy_bridge import effective_weights
from .comfy_types import CATEGORY
from .reporting import weight_differences


def compare_patchers(a, b) -> dict:
    """{'compared': n, 'changed': {key: max |a-b|}, 'only_in_one': [...], 'max_abs_diff': x} over the
    effective (patched) weights of a and b (`effective_weights`, differences by `weight_differences`)."""
    with torch.inference_mode(False):
        if a.model is b.model:  # clones of one loaded model: only patched weights can differ
            keys = set(a.patches) | set(b.patches)
        else:
            keys = None
        wa = {key: w for key, _, w in effective_weights(a, keys)}
        wb = {key: w for key, _, w in effective_weights(b, keys)}
        report = weight_differences(wa, wb)
    if keys is not None:
        report["compared"] = len(a.model.state_dict())
    return report


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
