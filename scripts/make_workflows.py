"""Regenerate the workflow files in workflows/: UI format (<name>.json, for dragging into ComfyUI)
and API format (api/<name>.json, for POST /prompt; in a subfolder because ComfyUI's Templates
browser lists every .json directly in workflows/), from the graphs below.

    python scripts/make_workflows.py OBJECT_INFO.json

OBJECT_INFO.json is GET /object_info of a ComfyUI with this pack installed (it gives input orders
and socket types). tests/test_workflows.py checks that each pair stays in sync.
"""

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "comfy_helpers"))
from workflow_format import api_to_ui, extra_widget_values, input_specs, is_widget  # noqa: E402

CKPT = "v1-5-pruned-emaonly.safetensors"
UNLEARN = {"target": "cross_attention", "mode": "sequential", "steps_per_concept": 500, "learning_rate": 3e-6,
           "batch_size": 2, "images_per_concept": 100, "retain_images_per_prompt": 4, "sampling_steps": 20,
           "sampling_cfg": 5.0, "resolution": 512, "mask": "dynamic", "mask_density": 0.5, "mask_warmup_steps": 50,
           "mask_update_interval": 100, "mask_turnover": 0.2, "adversarial_interval": 0, "distillation_bank": 0,
           "student_chunk_rows": 0, "gradient_checkpointing": False, "seed": 0}


def sampler(first: int, model, clip, prompt: str, seed: int = 42) -> dict:
    """Nodes first..first+4: prompt, negative, empty latent, KSampler, VAEDecode (VAE from node 1)."""
    a, b, c, d, e = (str(first + i) for i in range(5))
    return {
        a: {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": clip}},
        b: {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry, low quality", "clip": clip}},
        c: {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 4}},
        d: {"class_type": "KSampler", "inputs": {"model": model, "seed": seed, "steps": 25, "cfg": 7.0,
                                                 "sampler_name": "euler", "scheduler": "normal", "positive": [a, 0],
                                                 "negative": [b, 0], "latent_image": [c, 0], "denoise": 1.0}},
        e: {"class_type": "VAEDecode", "inputs": {"samples": [d, 0], "vae": ["1", 2]}},
    }


def erase_one_concept():
    g = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
        "2": {"class_type": "LoadConceptSet", "inputs": {
            "concepts": "church => building", "retain_prompts": "a photo of a castle\na photo of a house",
            "templates": "a {}\na photo of a {}\na drawing of a {}"}},
        "3": {"class_type": "ConceptAwareLoss", "inputs": {"kind": "concept_aware", "alignment_weight": 0.25,
                                                           "distillation_weight": 1.0, "esd_negative_guidance": 1.0,
                                                           "preserve_unconditional": True,
                                                           "retain_reference": "base"}},
        "4": {"class_type": "DynamicMaskUnlearn", "inputs": {"model": ["1", 0], "clip": ["1", 1],
                                                             "concept_set": ["2", 0], **UNLEARN, "loss": ["3", 0]}},
        **sampler(10, ["1", 0], ["1", 1], "a photo of a church"),
        **sampler(20, ["4", 0], ["1", 1], "a photo of a church"),
        "30": {"class_type": "ImageBatch", "inputs": {"image1": ["14", 0], "image2": ["24", 0]}},
        "31": {"class_type": "PreviewImage", "inputs": {"images": ["30", 0]}},
        "32": {"class_type": "PreviewAny", "inputs": {"source": ["4", 1]}},
        "33": {"class_type": "PreviewImage", "inputs": {"images": ["4", 2]}},
        "34": {"class_type": "CompareModelWeights", "inputs": {"model_a": ["1", 0], "model_b": ["4", 0]}},
        # a small file to share; loaders list output/loras, so LoraLoader finds it as unlearned/<prefix>_00001_
        "35": {"class_type": "SaveUnlearnedModel", "inputs": {
            "model": ["4", 0], "format": "lora", "filename_prefix": "unlearned/erase_one_concept", "lora_rank": 64,
            "hash_concept_names": False, "embed_workflow": True}},
    }
    titles = {"31": "Before (first 4) / after (last 4)", "32": "Unlearning report", "33": "Loss and mask statistics",
              "35": "Save the edit as a LoRA (output/loras/unlearned)"}
    return g, titles


def erase_several_save_checkpoint():
    g = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
        "2": {"class_type": "LoadConceptSet", "inputs": {
            "concepts": "tench => fish\nchurch => building\ngarbage truck => vehicle",
            "retain_prompts": "a photo of a dog\na photo of a golf ball",
            "templates": "a {}\na photo of a {}\na drawing of a {}"}},
        "3": {"class_type": "DynamicMaskUnlearn", "inputs": {"model": ["1", 0], "clip": ["1", 1],
                                                             "concept_set": ["2", 0], **UNLEARN}},
        "4": {"class_type": "SaveUnlearnedModel", "inputs": {
            "model": ["3", 0], "format": "checkpoint", "filename_prefix": "unlearned/erase_several",
            "lora_rank": 64, "hash_concept_names": False, "embed_workflow": True, "clip": ["1", 1], "vae": ["1", 2]}},
        "5": {"class_type": "PreviewAny", "inputs": {"source": ["3", 1]}},
        **sampler(10, ["3", 0], ["1", 1], "a photo of a garbage truck"),
        "15": {"class_type": "PreviewImage", "inputs": {"images": ["14", 0]}},
    }
    return g, {"5": "Unlearning report", "15": "After: a garbage truck"}


def few_shot_text_encoder_lora():
    g = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "concept_1.png"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "concept_2.png"}},
        "4": {"class_type": "LoadImage", "inputs": {"image": "concept_3.png"}},
        "5": {"class_type": "LoadImage", "inputs": {"image": "concept_4.png"}},
        "6": {"class_type": "ImageBatch", "inputs": {"image1": ["2", 0], "image2": ["3", 0]}},
        "7": {"class_type": "ImageBatch", "inputs": {"image1": ["6", 0], "image2": ["4", 0]}},
        "8": {"class_type": "ImageBatch", "inputs": {"image1": ["7", 0], "image2": ["5", 0]}},
        "9": {"class_type": "LoadConceptSet", "inputs": {
            "concepts": "my character => person", "retain_prompts": "a photo of a woman\na photo of a man\na cat",
            "templates": "a {}\na photo of a {}\na drawing of a {}", "images": ["8", 0]}},
        "10": {"class_type": "FewShotTextEncoderForget", "inputs": {
            "clip": ["1", 1], "model": ["1", 0], "vae": ["1", 2], "concept_set": ["9", 0], "num_layers": 4,
            "lora_rank": 4, "lora_alpha": 4.0, "ti_steps": 75, "ti_learning_rate": 5e-3, "steps": 150,
            "learning_rate": 2e-3, "batch_size": 4, "forget_weight": 1.0, "ti_weight": 1.0, "preserve_weight": 3.0,
            "include_learned_token": True, "adversarial_interval": 15, "resolution": 512, "seed": 0, "fast": False}},
        "11": {"class_type": "SaveUnlearnedModel", "inputs": {
            "model": ["1", 0], "format": "lora", "filename_prefix": "unlearned/text_encoder_forget", "lora_rank": 64,
            "hash_concept_names": True, "embed_workflow": False, "clip": ["10", 0]}},
        "12": {"class_type": "PreviewAny", "inputs": {"source": ["10", 1]}},
        **sampler(20, ["1", 0], ["10", 0], "a photo of my character"),
        "25": {"class_type": "PreviewImage", "inputs": {"images": ["24", 0]}},
    }
    return g, {"12": "Forgetting report", "25": "After: the concept's prompt"}


def erase_fast_closed_form():
    g = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
        "2": {"class_type": "LoadConceptSet", "inputs": {
            "concepts": "church => building\ngarbage truck => vehicle",
            "retain_prompts": "a photo of a castle\na photo of a house\na photo of a bus",
            "templates": "a {}\na photo of a {}\na drawing of a {}"}},
        "3": {"class_type": "ClosedFormConceptErase", "inputs": {
            "model": ["1", 0], "clip": ["1", 1], "concept_set": ["2", 0], "preserve_weight": 0.1, "ridge": 0.1,
            "generic_prompts": True, "overshoot": 0.5, "padding_positions": 8}},
        **sampler(10, ["1", 0], ["1", 1], "a photo of a church"),
        **sampler(20, ["3", 0], ["1", 1], "a photo of a church"),
        "30": {"class_type": "ImageBatch", "inputs": {"image1": ["14", 0], "image2": ["24", 0]}},
        "31": {"class_type": "PreviewImage", "inputs": {"images": ["30", 0]}},
        "32": {"class_type": "PreviewAny", "inputs": {"source": ["3", 1]}},
        "33": {"class_type": "SaveUnlearnedModel", "inputs": {
            "model": ["3", 0], "format": "lora", "filename_prefix": "unlearned/erase_fast", "lora_rank": 64,
            "hash_concept_names": False, "embed_workflow": True}},
    }
    return g, {"3": "Closed-form erase (seconds, no training)", "31": "Before (first 4) / after (last 4)",
               "32": "Erase report", "33": "Save the edit as a LoRA (output/loras/unlearned)"}


def apply_saved_lora():
    g = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
        "2": {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "clip": ["1", 1],
                                                     "lora_name": "unlearned/text_encoder_forget_00001_.safetensors",
                                                     "strength_model": 1.0, "strength_clip": 1.0}},
        **sampler(10, ["2", 0], ["2", 1], "a photo of my character"),
        "15": {"class_type": "SaveImage", "inputs": {"images": ["14", 0], "filename_prefix": "unlearned_lora_test"}},
    }
    return g, {"2": "Load the saved unlearning LoRA"}


WORKFLOWS = {
    "erase_one_concept_compare": erase_one_concept,
    "erase_several_save_checkpoint": erase_several_save_checkpoint,
    "few_shot_text_encoder_lora": few_shot_text_encoder_lora,
    "erase_fast_closed_form": erase_fast_closed_form,
    "apply_saved_lora": apply_saved_lora,
}


#: Sizes used for laying out nodes; generous, so that the frontend's own sizes (which it computes
#: from the widgets when it loads the file) never make two nodes overlap.
NODE_WIDTH, COLUMN_GAP, ROW_GAP = 360.0, 90.0, 50.0
TALL_NODES = {"PreviewImage": 320.0, "SaveImage": 320.0, "PreviewAny": 220.0, "LoadImage": 340.0}


def node_height(node: dict, info: dict) -> float:
    """Title, one row per input/output socket, one per widget (multiline text: several)."""
    if node["class_type"] in TALL_NODES:
        return TALL_NODES[node["class_type"]]
    sockets, widgets = 0, 0.0
    for name, typ, opts in input_specs(info):
        value = node["inputs"].get(name)
        linked = isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
        if is_widget(typ, opts) and not linked:
            widgets += 4.0 if opts.get("multiline") else 1.0
            widgets += len(extra_widget_values(name, typ, opts))
        elif linked or name in info["input"].get("required", {}):
            sockets += 1
    sockets = max(sockets, len(info["output"]))
    return 50.0 + 24.0 * sockets + 28.0 * widgets


def layout(api: dict, object_info: dict) -> tuple[dict, dict]:
    """(positions, sizes): columns by depth in the graph; within a column, nodes ordered by where
    their inputs come from (fewer crossing wires) and stacked by their estimated heights."""
    depth = {}

    def d(nid):
        if nid not in depth:
            depth[nid] = 1 + max((d(s) for s in sources(nid)), default=-1)
        return depth[nid]

    def sources(nid):
        return [v[0] for v in api[nid]["inputs"].values() if isinstance(v, list) and len(v) == 2
                and isinstance(v[0], str)]

    sizes = {nid: (NODE_WIDTH, node_height(api[nid], object_info[api[nid]["class_type"]])) for nid in api}
    pos: dict[str, tuple[float, float]] = {}
    for col in range(max(d(n) for n in api) + 1):
        members = [n for n in sorted(api, key=int) if d(n) == col]
        # a node sits near the (first) node it reads from; ties keep id order
        members.sort(key=lambda n: (min((pos[s][1] for s in sources(n) if s in pos), default=0.0), int(n)))
        y = 50.0
        for nid in members:
            pos[nid] = (50.0 + (NODE_WIDTH + COLUMN_GAP) * col, y)
            y += sizes[nid][1] + ROW_GAP
    return pos, sizes


def main(object_info_path: str) -> None:
    info = json.loads(Path(object_info_path).read_text())
    out = REPO / "workflows"
    (out / "api").mkdir(parents=True, exist_ok=True)
    for name, build in WORKFLOWS.items():
        api, titles = build()
        positions, sizes = layout(api, info)
        ui = api_to_ui(api, info, positions, titles, sizes)
        (out / f"{name}.json").write_text(json.dumps(ui, indent=1) + "\n")
        (out / "api" / f"{name}.json").write_text(json.dumps(api, indent=1) + "\n")
        print(f"wrote workflows/{name}.json and workflows/api/{name}.json ({len(api)} nodes)")


if __name__ == "__main__":
    main(sys.argv[1])
