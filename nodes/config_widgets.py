"""Node inputs that stand for config fields, so their defaults and tooltips come from the config
dataclasses (`unlearn_core.configs`) and the nodes restate neither.

Each table maps a node's input name to the field it sets (dots into nested configs), which is the
one place where an input named differently from its field (`learning_rate` for `lr`, `mask_density`
for `mask.density`) is tied to it. No comfy imports: the tables can be checked outside ComfyUI.
"""

from __future__ import annotations

from typing import Any

from ..unlearn_core.config_help import default_of, help_of, set_value
from ..unlearn_core.configs import ClosedFormConfig, ConceptAwareLossConfig, TextEncoderForgetConfig, UnetUnlearnConfig


class WidgetTable:
    def __init__(self, config: type, fields: dict[str, str]):
        self.config = config
        self.fields = fields  # input name -> field path

    def default(self, name: str) -> Any:
        """The widget's default: the field's default in the config dataclass."""
        return default_of(self.config, self.fields[name])

    def tooltip(self, name: str) -> str:
        """The widget's tooltip: the field's help text."""
        return help_of(self.config, self.fields[name])

    def build(self, values: dict[str, Any], **fixed):
        """A config from the node's input values (by input name; other keys are ignored), starting
        from the defaults with `fixed` fields set."""
        cfg = self.config(**fixed)
        for name, path in self.fields.items():
            set_value(cfg, path, values[name])
        return cfg


#: DynamicMaskUnlearn
UNET_WIDGETS = WidgetTable(UnetUnlearnConfig, {
    "target": "target", "mode": "mode", "steps_per_concept": "steps_per_concept", "learning_rate": "lr",
    "batch_size": "batch_size", "images_per_concept": "images_per_concept",
    "retain_images_per_prompt": "retain_images_per_prompt", "sampling_steps": "sampling_steps",
    "sampling_cfg": "sampling_guidance", "mask": "mask.kind", "mask_density": "mask.density",
    "mask_warmup_steps": "mask.warmup_steps", "mask_update_interval": "mask.update_interval",
    "mask_turnover": "mask.turnover", "adversarial_interval": "adversarial_interval",
    "distillation_bank": "distillation_bank", "student_chunk_rows": "student_chunk_rows",
    "gradient_checkpointing": "gradient_checkpointing", "seed": "seed",
})

#: ConceptAwareLoss
LOSS_WIDGETS = WidgetTable(ConceptAwareLossConfig, {
    "kind": "kind", "alignment_weight": "alignment_weight", "distillation_weight": "distillation_weight",
    "esd_negative_guidance": "esd_negative_guidance", "preserve_unconditional": "preserve_unconditional",
    "retain_reference": "retain_reference",
})

#: FewShotTextEncoderForget
TEXT_ENCODER_WIDGETS = WidgetTable(TextEncoderForgetConfig, {
    "num_layers": "num_layers", "lora_rank": "lora_rank", "lora_alpha": "lora_alpha", "ti_steps": "ti_steps",
    "ti_learning_rate": "ti_lr", "steps": "steps", "learning_rate": "lr", "batch_size": "batch_size",
    "forget_weight": "forget_weight", "ti_weight": "ti_weight", "preserve_weight": "preserve_weight",
    "include_learned_token": "include_learned_token", "adversarial_interval": "adversarial_interval",
    "seed": "seed",
})

#: ClosedFormConceptErase
CLOSED_FORM_WIDGETS = WidgetTable(ClosedFormConfig, {
    "preserve_weight": "preserve_weight", "ridge": "ridge", "generic_prompts": "generic_prompts",
    "overshoot": "overshoot", "padding_positions": "padding_positions",
})

#: node id -> its table (for the tests)
NODE_WIDGETS = {"DynamicMaskUnlearn": UNET_WIDGETS, "ConceptAwareLoss": LOSS_WIDGETS,
                "FewShotTextEncoderForget": TEXT_ENCODER_WIDGETS}
