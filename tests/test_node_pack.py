"""Fast checks of the node pack that need no ComfyUI: the package imports cleanly outside it,
the node modules use relative imports only, and the pure helpers (report, plot, metadata) work."""

import ast
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _import_root(name="concept_unlearn_pack_outside"):
    spec = importlib.util.spec_from_file_location(name, REPO / "__init__.py", submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_root_package_imports_outside_comfyui():
    if importlib.util.find_spec("comfy_api") is not None:
        import pytest

        pytest.skip("comfy_api is importable here; this checks the behaviour outside ComfyUI")
    pack = _import_root()
    assert pack.NODE_CLASS_MAPPINGS == {} and pack.NODE_DISPLAY_NAME_MAPPINGS == {}
    assert not hasattr(pack, "comfy_entrypoint")


def test_node_modules_use_relative_imports_only():
    for path in sorted((REPO / "nodes").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for n in names:
                top = n.split(".")[0]
                assert top not in ("nodes", "unlearn_core"), f"{path.name}: absolute import of {n!r}"


def test_every_node_input_has_a_tooltip_in_source():
    """Every io.*.Input(...) call in the node modules passes tooltip=."""
    for path in sorted((REPO / "nodes").glob("*_nodes.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "Input":
                kws = {k.arg for k in node.keywords}
                assert "tooltip" in kws, f"{path.name}:{node.lineno} input without tooltip"


def _reporting():
    """nodes/reporting.py, imported as part of the pack (it imports the library relatively, no comfy)."""
    pack = _import_root("concept_unlearn_pack_reporting")
    return importlib.import_module(f"{pack.__name__}.nodes.reporting")


def test_redact_history_hashes_names_and_drops_retain_prompts():
    from unlearn_core.metadata import hash_concept_name

    rep = _reporting()
    history = [{"concepts": [{"name": "Some Person", "superclass": "person"}], "retain_prompts": ["a cat"]}]
    out = rep.redact_history(history, True, key=b"a key")
    assert out[0]["concepts"][0]["name"] == hash_concept_name("some person", b"a key")
    # without a key, a random one per call: the hash is not the one a guessed key or a plain hash gives
    again = rep.redact_history(history + history, True)
    assert again[0]["concepts"][0]["name"] == again[1]["concepts"][0]["name"] != out[0]["concepts"][0]["name"]
    assert out[0]["concepts"][0]["superclass"] == "person"
    assert "Some Person" not in json.dumps(out) and "a cat" not in json.dumps(out)
    assert history[0]["concepts"][0]["name"] == "Some Person"  # input not modified
    assert rep.redact_history(history, False) is history


def test_weight_differences_reports_every_difference_at_full_precision():
    """The arithmetic of Compare Model Weights: two checkpoints that differ in 16 tensors by at most
    3.5e-5 are reported as 16 changed tensors with that largest difference, whatever the dtypes."""
    import torch

    rep = _reporting()
    gen = torch.Generator().manual_seed(0)
    base = {f"diffusion_model.b{i}.attn2.to_{p}.weight": torch.randn(64, 32, generator=gen).half()
            for i in range(4) for p in ("q", "k", "v", "out")}
    base["diffusion_model.out.2.bias"] = torch.randn(4, generator=gen).half()
    other = {k: v.float() for k, v in base.items()}  # the second checkpoint, stored in fp32
    for k in base:
        if ".attn2." in k:
            other[k] = other[k] + (torch.rand(other[k].shape, generator=gen) * 2 - 1) * 3.5e-5
    report = rep.weight_differences(base, other)
    assert sorted(report["changed"]) == sorted(k for k in base if ".attn2." in k) and len(report["changed"]) == 16
    assert 3.0e-5 < report["max_abs_diff"] < 3.6e-5 and report["compared"] == 17 and report["only_in_one"] == []
    assert rep.weight_differences(base, {k: v.float() for k, v in base.items()})["changed"] == {}
    # one bf16 ulp at magnitude 1, and a 3.5e-5 change of a weight of magnitude 1 in fp32
    one = torch.ones(3, dtype=torch.bfloat16)
    assert rep.weight_differences({"w": one}, {"w": one + 2 ** -7})["max_abs_diff"] == 2 ** -7
    fp32 = torch.ones(3)
    assert abs(rep.weight_differences({"w": fp32}, {"w": fp32 + 3.5e-5})["max_abs_diff"] - 3.5e-5) < 1e-7
    # shapes, keys and NaN
    nan = torch.tensor([float("nan"), 1.0])
    report = rep.weight_differences({"s": torch.zeros(2), "n": nan, "m": nan, "a": fp32},
                                    {"s": torch.zeros(3), "n": nan.clone(), "m": torch.ones(2), "b": fp32})
    assert report["changed"] == {"s": float("inf"), "m": float("inf")} and report["only_in_one"] == ["a", "b"]


def test_plot_stats_draws_an_image():
    rep = _reporting()
    stats = [{"step": i, "phase": "train", "loss": 1.0 / (i + 1), "concept_loss": 0.5 / (i + 1),
              "density": 0.5, "turnover": 0.1 if i % 3 == 0 else 0.0} for i in range(20)]
    img = rep.plot_stats(stats)
    assert img.shape == (400, 640, 3) and img.dtype == np.uint8
    assert (img < 250).any()  # something was drawn
    assert rep.plot_stats([]).shape == (400, 640, 3)


def _patch_files():
    """nodes/patch_files.py, imported as part of the pack (it imports the library relatively, no comfy)."""
    pack = _import_root("concept_unlearn_pack_patch_files")
    return importlib.import_module(f"{pack.__name__}.nodes.patch_files")


def test_patch_file_keys_follow_comfyui_lora_names():
    import torch

    pf = _patch_files()
    unet = {"diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": torch.ones(4, 6),
            "diffusion_model.out.2.bias": torch.ones(4)}
    clip = {"clip_l.transformer.text_model.encoder.layers.11.mlp.fc1.weight": torch.ones(8, 4)}
    tensors, errors = pf.patch_file_tensors(unet, clip, "lora", 16)
    base = "diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k"
    te = "text_encoders.clip_l.transformer.text_model.encoder.layers.11.mlp.fc1"
    assert set(tensors) == {f"{base}.lora_up.weight", f"{base}.lora_down.weight", f"{base}.alpha",
                            f"{te}.lora_up.weight", f"{te}.lora_down.weight", f"{te}.alpha",
                            "diffusion_model.out.2.diff_b"}
    assert float(tensors[f"{base}.alpha"]) == tensors[f"{base}.lora_down.weight"].shape[0] == 1
    assert torch.allclose(tensors[f"{base}.lora_up.weight"] @ tensors[f"{base}.lora_down.weight"], torch.ones(4, 6))
    tensors, errors = pf.patch_file_tensors(unet, {}, "diff", 16)
    assert set(tensors) == {f"{base}.diff", "diffusion_model.out.2.diff_b"} and errors == {}


def test_evaluate_node_rows_are_erased_paraphrase_and_kept_prompts():
    from unlearn_core.comparison import HELD_OUT_TEMPLATES, comparison_rows, held_out_paraphrase
    from unlearn_core.concept_set import DEFAULT_TEMPLATES, Concept, ConceptSet

    cs = ConceptSet([Concept("star", "symbol", templates=["a photo of a {}"]),
                     Concept("van gogh", "painting", templates=["a painting by {}"])], ["a circle", "a square"])
    rows = comparison_rows(cs)
    assert [k for k, _ in rows] == ["erased", "paraphrase", "erased", "paraphrase", "kept", "kept"]
    assert rows[0][1] == "a photo of a star" and rows[2][1] == "a painting by van gogh"
    # the paraphrase is a rewording no training template produces, the same for any model (no toy-world captions)
    assert rows[1][1] == "an image depicting a star"
    default = Concept("star", "symbol")
    assert list(default.templates) == list(DEFAULT_TEMPLATES)
    assert not {held_out_paraphrase("star", i) for i in range(len(HELD_OUT_TEMPLATES))} & set(default.prompts)
    assert rows[3][1] == "an image depicting a van gogh"
    assert [p for _, p in rows[4:]] == ["a circle", "a square"]


def test_before_after_grid_layout_puts_the_before_half_where_documented():
    from unlearn_core.comparison import HALF_GAP, HEADER_HEIGHT, LABEL_WIDTH, before_after_grid, image_grid

    rng = np.random.default_rng(0)
    before = rng.integers(0, 255, (6, 8, 8, 3), dtype=np.uint8)  # 3 rows x 2 images
    after = rng.integers(0, 255, (6, 8, 8, 3), dtype=np.uint8)
    grid = np.asarray(before_after_grid(before, after, rows=3, labels=["a", "b", "c"], scale=1))
    half = np.asarray(image_grid(before, 3, scale=1))
    assert grid.shape == (HEADER_HEIGHT + half.shape[0], LABEL_WIDTH + 2 * half.shape[1] + HALF_GAP, 3)
    assert np.array_equal(grid[HEADER_HEIGHT:, LABEL_WIDTH:LABEL_WIDTH + half.shape[1]], half)
    right = grid[HEADER_HEIGHT:, LABEL_WIDTH + half.shape[1] + HALF_GAP:]
    assert np.array_equal(right, np.asarray(image_grid(after, 3, scale=1)))


# ---- node inputs that set config fields ------------------------------------------------------
CONFIG_NODES = {"DynamicMaskUnlearn": "unet_nodes.py", "ConceptAwareLoss": "concept_nodes.py",
                "FewShotTextEncoderForget": "text_encoder_nodes.py"}


def _config_widgets():
    """nodes/config_widgets.py, imported as part of the pack (it has no comfy imports)."""
    pack = _import_root("concept_unlearn_pack_config_widgets")
    return importlib.import_module(f"{pack.__name__}.nodes.config_widgets")


def _node_class(node_id: str) -> ast.ClassDef:
    tree = ast.parse((REPO / "nodes" / CONFIG_NODES[node_id]).read_text())
    for cls in tree.body:
        if isinstance(cls, ast.ClassDef) and any(isinstance(k, ast.keyword) and k.arg == "node_id"
                                                 and getattr(k.value, "value", None) == node_id
                                                 for k in ast.walk(cls)):
            return cls
    raise AssertionError(f"no class defines node {node_id}")


def _method(cls: ast.ClassDef, name: str) -> ast.FunctionDef:
    return next(f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == name)


def test_node_inputs_that_set_config_fields_take_the_dataclass_default_and_tooltip():
    """Each such input passes `default=<table>.default("<input>")` and `tooltip=<table>.tooltip("<input>")`,
    where the table (nodes/config_widgets.py) maps it to a config field and answers that field's
    dataclass default and help text; no input named like a config field is left out of the table,
    and `execute` takes every input the table builds the config from."""
    import dataclasses

    from unlearn_core.config_help import field_paths

    cw = _config_widgets()
    for node_id, table in cw.NODE_WIDGETS.items():
        cls = _node_class(node_id)
        schema = _method(cls, "define_schema")
        aliases = {t.id: a.value.id for a in ast.walk(schema) if isinstance(a, ast.Assign)
                   for t in a.targets if isinstance(t, ast.Name) and isinstance(a.value, ast.Name)}
        inputs = {}
        for call in ast.walk(schema):
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "Input" \
                    and call.args and isinstance(call.args[0], ast.Constant):
                inputs[call.args[0].value] = {k.arg: k.value for k in call.keywords}
        paths = field_paths(table.config)
        default_config = table.config()
        assert set(table.fields) <= set(inputs), f"{node_id}: table names no input {set(table.fields) - set(inputs)}"
        for name, path in table.fields.items():
            assert path in paths, f"{node_id}.{name}: {path!r} is no field of {table.config.__name__}"
            *parents, last = path.split(".")
            holder = default_config
            for p in parents:
                holder = getattr(holder, p)
            field = next(f for f in dataclasses.fields(holder) if f.name == last)
            assert table.default(name) == getattr(holder, last), f"{node_id}.{name}"
            assert table.tooltip(name) == field.metadata["help"], f"{node_id}.{name}"
            for keyword in ("default", "tooltip"):
                value = inputs[name].get(keyword)
                assert isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute), \
                    f"{node_id}.{name}: {keyword}= is not taken from the config table"
                assert value.func.attr == keyword and [a.value for a in value.args] == [name], f"{node_id}.{name}"
                receiver = value.func.value.id
                assert getattr(cw, aliases.get(receiver, receiver)) is table, f"{node_id}.{name}: wrong table"
        top_level = {p for p in paths if "." not in p}  # not `mask`/`loss`: nested configs come over sockets
        unmapped = [n for n in inputs if n in top_level and n not in table.fields]
        assert unmapped == [], f"{node_id}: inputs named like config fields but not in the table: {unmapped}"
        execute_args = {a.arg for a in _method(cls, "execute").args.args}
        assert set(table.fields) <= execute_args, f"{node_id}: execute lacks {set(table.fields) - execute_args}"


def test_config_widget_tables_build_the_configs_the_nodes_built_before():
    from unlearn_core.configs import ConceptAwareLossConfig, MaskConfig, TextEncoderForgetConfig, UnetUnlearnConfig

    cw = _config_widgets()
    values = {"target": "attention", "mode": "simultaneous", "steps_per_concept": 7, "learning_rate": 1e-4,
              "batch_size": 3, "images_per_concept": 9, "retain_images_per_prompt": 2, "sampling_steps": 11,
              "sampling_cfg": 4.5, "resolution": 256, "mask": "static", "mask_density": 0.3, "mask_warmup_steps": 4,
              "mask_update_interval": 6, "mask_turnover": 0.1, "adversarial_interval": 5, "distillation_bank": 4,
              "student_chunk_rows": 2, "gradient_checkpointing": True, "seed": 8, "cls": None}
    loss = ConceptAwareLossConfig(alignment_weight=0.5)
    # built by the widget table's class, so compare field by field with the explicit construction
    expected = UnetUnlearnConfig(target="attention", mode="simultaneous", steps_per_concept=7, batch_size=3, lr=1e-4,
                                 images_per_concept=9, retain_images_per_prompt=2, sampling_steps=11,
                                 sampling_guidance=4.5, seed=8, adversarial_interval=5, distillation_bank=4,
                                 student_chunk_rows=2, gradient_checkpointing=True,
                                 mask=MaskConfig(kind="static", density=0.3, warmup_steps=4, update_interval=6,
                                                 turnover=0.1), loss=loss)
    assert cw.UNET_WIDGETS.build(values, loss=loss).to_dict() == expected.to_dict()
    te = cw.TEXT_ENCODER_WIDGETS.build({"num_layers": 2, "lora_rank": 8, "lora_alpha": 8.0, "ti_steps": 5,
                                        "ti_learning_rate": 1e-2, "steps": 6, "learning_rate": 1e-3, "batch_size": 2,
                                        "forget_weight": 0.5, "ti_weight": 0.0, "preserve_weight": 1.0,
                                        "include_learned_token": False, "adversarial_interval": 0, "seed": 3})
    assert vars(te) == vars(TextEncoderForgetConfig(num_layers=2, lora_rank=8, lora_alpha=8.0, ti_steps=5, ti_lr=1e-2,
                                                    steps=6, lr=1e-3, batch_size=2, forget_weight=0.5, ti_weight=0.0,
                                                    preserve_weight=1.0, include_learned_token=False,
                                                    adversarial_interval=0, seed=3))
    lc = cw.LOSS_WIDGETS.build({"kind": "esd", "alignment_weight": 0.1, "distillation_weight": 2.0,
                                "esd_negative_guidance": 3.0, "preserve_unconditional": False,
                                "retain_reference": "teacher"})
    assert vars(lc) == vars(ConceptAwareLossConfig(kind="esd", alignment_weight=0.1, distillation_weight=2.0,
                                                   esd_negative_guidance=3.0, preserve_unconditional=False,
                                                   retain_reference="teacher"))

