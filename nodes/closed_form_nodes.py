"""ClosedFormConceptErase: the closed-form key/value edit (unlearn_core.closed_form) as a node."""

from __future__ import annotations

import time

from comfy_api.latest import io

from ..unlearn_core.closed_form import closed_form_edit
from .comfy_bridge import ComfyDenoiserAdapter, patched_model, training_mode
from .comfy_types import CATEGORY, ConceptSetType, record
from .config_widgets import CLOSED_FORM_WIDGETS


def closed_form_report(result, model_line: str = "") -> str:
    """Human-readable summary of a closed-form `UnlearnResult`."""
    cfg = result.config
    lines = ["Closed-form concept erasure (cross-attention keys and values, one least-squares solve)"]
    for c in result.concepts:
        lines.append(f"  erased: {c['name']!r} -> {c['superclass']!r}")
    if result.retain_prompts:
        lines.append(f"  retained prompts: {len(result.retain_prompts)}")
    lines.append(f"  preserve_weight {cfg['preserve_weight']:g}, ridge {cfg['ridge']:g}, generic prompts "
                 f"{'on' if cfg['generic_prompts'] else 'off'}, overshoot {cfg['overshoot']:g}, padding positions "
                 f"{cfg['padding_positions']}")
    for row in result.stats:
        lines.append(f"  {row['concept']!r}: {row['tokens']} token embeddings, residual {row['residual']:.3f} of "
                     f"the distance to its target (0 = exactly the superclass's keys and values, pushed overshoot "
                     f"times the concept-to-superclass distance further)")
    if result.stats:
        lines.append(f"  preserved embeddings moved by {result.stats[0]['preservation_drift']:.4f} of their size")
    lines.append(f"  changed weight matrices: {len(result.deltas)} (attn2 to_k / to_v); time {result.seconds:.1f} s")
    if model_line:
        lines.append(model_line)
    for note in result.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


class ClosedFormConceptErase(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        w = CLOSED_FORM_WIDGETS  # inputs that set a config field take its default and help from the dataclass
        return io.Schema(
            node_id="ClosedFormConceptErase",
            display_name="Closed-Form Concept Erase",
            category=CATEGORY,
            description="Erases the concepts of a concept set in seconds, without training: one least-squares "
                        "edit of the UNet's cross-attention keys and values maps each concept's prompt tokens onto "
                        "its superclass's while keeping retained, superclass and common prompts (UCE-style). The "
                        "input MODEL is not changed; the output carries the edit as weight patches.",
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model to edit (SD1.x/SD2.x/SDXL)."),
                io.Clip.Input("clip", tooltip="The model's text encoder (frozen), used to encode the concept, "
                                              "superclass and preserved prompts."),
                ConceptSetType.Input("concept_set", tooltip="What to forget and what to keep (Load Concept Set); "
                                                            "only the prompts are used, not example images."),
                io.Float.Input("preserve_weight", min=0.0, max=1000.0, step=0.1, round=False,
                               default=w.default("preserve_weight"), tooltip=w.tooltip("preserve_weight")),
                io.Float.Input("ridge", min=1e-6, max=1000.0, step=0.01, round=False, default=w.default("ridge"),
                               tooltip=w.tooltip("ridge")),
                io.Boolean.Input("generic_prompts", default=w.default("generic_prompts"),
                                 tooltip=w.tooltip("generic_prompts")),
                io.Float.Input("overshoot", min=0.0, max=10.0, step=0.1, round=False,
                               default=w.default("overshoot"), tooltip=w.tooltip("overshoot")),
                io.Int.Input("padding_positions", min=-1, max=1000, default=w.default("padding_positions"),
                             tooltip=w.tooltip("padding_positions")),
            ],
            outputs=[
                io.Model.Output(display_name="model", tooltip="A copy of the model with the concepts erased "
                                                              "(weight patches over the input)."),
                io.String.Output(display_name="report", tooltip="What was erased, how closely, settings and time."),
            ],
        )

    @classmethod
    def execute(cls, model, clip, concept_set, preserve_weight, ridge, generic_prompts, overshoot,
                padding_positions) -> io.NodeOutput:
        config = CLOSED_FORM_WIDGETS.build(locals())  # the widget values by input name
        config.validate()
        concept_set.validate(check_files=False)
        t0 = time.time()
        with training_mode():
            adapter = ComfyDenoiserAdapter(model, clip)
            result = closed_form_edit(adapter, concept_set, config)
            model_line = f"  model: {adapter.describe()}"
            del adapter
        out = patched_model(model, result.deltas)
        record(out, {**result.metadata(), "seconds": round(time.time() - t0, 2), "edited": "unet"})
        return io.NodeOutput(out, closed_form_report(result, model_line))
