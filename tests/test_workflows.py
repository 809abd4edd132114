"""The shipped workflows: every UI-format file has an API-format twin describing the same graph.

These checks need no ComfyUI. The exact UI -> API conversion against /object_info, and running
every workflow, are in test_comfyui_e2e.py (they need a ComfyUI server)."""

import json
from pathlib import Path

import pytest

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"
# API-format twins sit in a subfolder: ComfyUI's Templates browser lists every *.json directly in workflows/
API = WORKFLOWS / "api"
NAMES = sorted(p.stem for p in API.glob("*.json"))


def _is_link(v):
    return isinstance(v, list) and len(v) == 2 and isinstance(v[0], str)


def test_every_ui_workflow_has_an_api_twin():
    ui = sorted(p.stem for p in WORKFLOWS.glob("*.json"))
    assert ui == NAMES and len(NAMES) >= 4


@pytest.mark.parametrize("name", NAMES)
def test_ui_and_api_formats_describe_the_same_graph(name):
    ui = json.loads((WORKFLOWS / f"{name}.json").read_text())
    api = json.loads((API / f"{name}.json").read_text())
    for key in ("nodes", "links", "last_node_id", "last_link_id", "version"):
        assert key in ui, f"UI workflow lacks {key!r}"
    nodes = {str(n["id"]): n for n in ui["nodes"]}
    assert {k: n["type"] for k, n in nodes.items()} == {k: v["class_type"] for k, v in api.items()}
    assert ui["last_node_id"] == max(int(k) for k in api) and ui["last_link_id"] == len(ui["links"])
    # links: the same edges, by input name
    ui_edges = set()
    for link_id, src, src_slot, dst, dst_slot, typ in ui["links"]:
        target = nodes[str(dst)]["inputs"][dst_slot]
        assert target["link"] == link_id
        assert link_id in nodes[str(src)]["outputs"][src_slot]["links"]
        ui_edges.add((str(dst), target["name"], str(src), src_slot))
    api_edges = {(k, name, v[0], v[1]) for k, n in api.items() for name, v in n["inputs"].items() if _is_link(v)}
    assert ui_edges == api_edges
    # widget values: the API's literal inputs appear in the node's widgets_values, in order
    for k, n in api.items():
        literals = [v for v in n["inputs"].values() if not _is_link(v)]
        values = list(nodes[k].get("widgets_values", []))
        pos = 0
        for lit in literals:
            while pos < len(values) and values[pos] != lit:
                pos += 1
            assert pos < len(values), f"{name} node {k} ({n['class_type']}): {lit!r} not in widgets_values {values}"
            pos += 1


@pytest.mark.parametrize("name", NAMES)
def test_workflows_have_an_output_node_and_use_the_pack(name):
    api = json.loads((API / f"{name}.json").read_text())
    types = {n["class_type"] for n in api.values()}
    assert types & {"PreviewImage", "SaveImage", "SaveUnlearnedModel", "PreviewAny", "CompareModelWeights"}
    pack = {"LoadConceptSet", "ConceptAwareLoss", "DynamicMaskUnlearn", "FewShotTextEncoderForget",
            "SaveUnlearnedModel", "CompareModelWeights"}
    assert types & pack or "LoraLoader" in types


def test_templates_browser_sees_exactly_the_ui_workflows():
    """ComfyUI (app/custom_node_manager.py) lists every *.json directly inside a pack's
    example_workflows/, example/, examples/, workflow/ or workflows/ folder in its Templates
    browser, but serves files only from the first of those folders that exists. So the pack has
    exactly one of them, workflows/, and everything listed there is a UI-format workflow."""
    root = WORKFLOWS.parent
    scanned = ["example_workflows", "example", "examples", "workflow", "workflows"]
    assert [name for name in scanned if (root / name).exists()] == ["workflows"]
    listed = sorted(p.stem for p in WORKFLOWS.glob("*.json"))
    assert listed == NAMES
    for name in listed:
        ui = json.loads((WORKFLOWS / f"{name}.json").read_text())
        assert isinstance(ui.get("nodes"), list) and "links" in ui, f"{name}.json is not a UI-format workflow"
