"""Run an unlearning method on a diffusers model folder and write the results to an output folder.

The output folder is assembled under a temporary name and renamed into place only when every
file is written (`atomic.atomic_folder`), so a cancelled or failed run leaves nothing behind, and
the input model folder is only ever read.

Output folder:
    unlearned.diff.safetensors   exact deltas (keys 'unet.<param>'), metadata in the header
    unlearned_lora.safetensors   rank-r LoRA of the deltas (diffusers/peft keys, load_lora_weights)
    model/                       the merged diffusers pipeline (if save_merged)
    report.json                  settings, concepts, per-step statistics, timings

With hash_concept_names=True every file holds the concept names only as keyed hashes
(`metadata.redact_concept_names`).
"""

from __future__ import annotations

import json
from pathlib import Path

from .atomic import atomic_folder
from .concept_set import ConceptSet
from .metadata import hash_concept_name, new_key, redact_concept_names
from .unet_unlearning import UnetUnlearnConfig, UnlearnResult, unlearn_unet
from .weights_io import merge_unet_deltas, save_delta, save_lora


def write_unlearned_folder(pipe, result: UnlearnResult, output_dir: str | Path, lora_rank: int = 8,
                           save_merged: bool = True, overwrite: bool = False,
                           hash_concept_names: bool = False) -> Path:
    """The output folder of a UNet run (top of this module). hash_concept_names: every file holds
    the concept names only as keyed hashes, one random key for the whole folder, stored nowhere
    (`metadata.redact_concept_names`: no retain prompts either)."""
    output_dir = Path(output_dir)
    key = new_key()
    with atomic_folder(output_dir, overwrite) as tmp:
        meta = result.metadata(hash_concept_names, key)
        save_delta(result.deltas, tmp / "unlearned.diff.safetensors", meta)
        errors = save_lora(result.deltas, tmp / "unlearned_lora.safetensors", lora_rank, meta)
        if save_merged:
            merged = merge_unet_deltas(pipe, result.deltas)
            merged.save_pretrained(str(tmp / "model"), safe_serialization=True)
            (tmp / "model" / "unlearn_metadata.json").write_text(json.dumps(meta, indent=2))
        report = {**result.metadata(), "seconds": result.seconds, "seconds_data": result.seconds_data,
                  "seconds_per_step": result.seconds_per_step, "train_steps": result.train_steps,
                  "lora_rank": lora_rank, "lora_mean_relative_error": sum(errors.values()) / max(1, len(errors)),
                  "notes": result.notes, "stats": result.stats}
        if hash_concept_names:  # the same key: each name has the same hash as in the other files
            report = redact_concept_names(report, key)
        (tmp / "report.json").write_text(json.dumps(report, indent=2))
    return output_dir


def write_text_encoder_folder(pipe, result, output_dir: str | Path, overwrite: bool = False,
                              hash_concept_names: bool = False) -> Path:
    """Output folder of a text-encoder run:
        text_encoder_lora.safetensors        diffusers keys (pipe.load_lora_weights)
        text_encoder_lora_comfy.safetensors  kohya keys (ComfyUI's LoraLoader)
        peft/                                a peft adapter folder for the text encoder
        learned_tokens.safetensors           the textual-inversion embeddings learned in stage 1
        model/                               the merged diffusers model
        report.json
    hash_concept_names: as in `write_unlearned_folder` (learned_tokens are keyed by the hashes)."""
    from safetensors.torch import save_file

    from .text_encoder_unlearning import merge_text_encoder_deltas
    from .weights_io import save_text_encoder_lora, save_text_encoder_lora_peft

    output_dir = Path(output_dir)
    key = new_key()
    with atomic_folder(output_dir, overwrite) as tmp:
        meta = result.metadata(hash_concept_names, key)
        save_text_encoder_lora(result.lora, tmp / "text_encoder_lora.safetensors", meta, fmt="diffusers")
        save_text_encoder_lora(result.lora, tmp / "text_encoder_lora_comfy.safetensors", meta, fmt="comfy")
        save_text_encoder_lora_peft(result.lora, tmp / "peft", meta)
        save_file({(hash_concept_name(k, key) if hash_concept_names else k): v.contiguous()
                   for k, v in result.tokens.items()}, str(tmp / "learned_tokens.safetensors"))
        merge_text_encoder_deltas(pipe, result.deltas()).save_pretrained(str(tmp / "model"), safe_serialization=True)
        report = {**result.metadata(), "seconds": result.seconds, "seconds_per_concept": result.seconds_per_concept,
                  "notes": result.notes, "stats": result.stats}
        if hash_concept_names:  # the same key: each name has the same hash as in the other files
            report = redact_concept_names(report, key)
        (tmp / "report.json").write_text(json.dumps(report, indent=2))
    return output_dir


def forget(model_dir: str | Path, concept_set: ConceptSet, config: UnetUnlearnConfig, output_dir: str | Path,
           lora_rank: int = 8, save_merged: bool = True, overwrite: bool = False, progress=None,
           should_cancel=None, hash_concept_names: bool = False) -> UnlearnResult:
    """Erase the concept set from the UNet of the diffusers model in `model_dir` (only read) and
    write the output folder described at the top of this module (with hash_concept_names, the
    files hold the concept names only as keyed hashes: `write_unlearned_folder`)."""
    from .adapters.diffusers_adapter import DiffusersAdapter, load_pipeline

    output_dir = Path(output_dir)
    if output_dir.exists() and not overwrite:  # fail before spending time on training
        raise FileExistsError(f"output folder {output_dir} already exists; choose another or pass --overwrite")
    pipe = load_pipeline(model_dir)
    result = unlearn_unet(DiffusersAdapter(pipe), concept_set, config, progress=progress, should_cancel=should_cancel)
    write_unlearned_folder(pipe, result, output_dir, lora_rank, save_merged, overwrite, hash_concept_names)
    return result
