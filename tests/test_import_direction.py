"""The product core (unlearn_core outside unlearn_core.research) never depends on the research harness
(toy world, evaluation, attacks, benchmarks, demo): importing it, building the CLI, and running
`forget` on a model folder load no unlearn_core.research module. Only the CLI may import research
commands, lazily, inside the functions that run them."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "unlearn_core"
RESEARCH_REFERENCE = re.compile(r"from\s+\.+research\b|\bunlearn_core\.research\b|from\s+\.+\s+import\s+research\b")


def _run(code: str, timeout: int = 600) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


_RESEARCH_LOADED = "sorted(m for m in sys.modules if m == 'unlearn_core.research' or m.startswith('unlearn_core.research.'))"


def test_importing_the_core_and_building_the_cli_loads_no_research_module():
    code = f"""
import importlib, json, pkgutil, sys
import unlearn_core
names = []
def walk(package):
    # Not pkgutil.walk_packages: it imports every package it meets, unlearn_core.research included.
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if info.name == "unlearn_core.research":
            continue
        module = importlib.import_module(info.name)
        names.append(info.name)
        if info.ispkg:
            walk(module)
walk(unlearn_core)
from unlearn_core import cli
help_text = cli.build_parser().format_help()
print(json.dumps({{"modules": names, "research": {_RESEARCH_LOADED}, "help": len(help_text)}}))
"""
    result = _run(code)
    assert {"unlearn_core.cli", "unlearn_core.forget", "unlearn_core.unet_unlearning",
            "unlearn_core.adapters.diffusers_adapter"} <= set(result["modules"])
    assert result["help"] > 0
    assert result["research"] == []


@pytest.mark.slow
def test_forget_on_a_model_folder_loads_no_research_module(toy_pipe, tmp_path):
    model_dir = tmp_path / "model"
    toy_pipe.save_pretrained(model_dir)
    code = f"""
import json, sys
from unlearn_core.concept_set import Concept, ConceptSet
from unlearn_core.forget import forget
from unlearn_core.masks import MaskConfig
from unlearn_core.unet_unlearning import UnetUnlearnConfig
cfg = UnetUnlearnConfig(steps_per_concept=2, images_per_concept=2, batch_size=2, lr=1e-4, retain_images_per_prompt=1,
                        sampling_steps=2, mask=MaskConfig(warmup_steps=1, update_interval=1))
concepts = ConceptSet([Concept("star", "symbol", templates=["a {{}}"])], ["a circle"])
result = forget({str(model_dir)!r}, concepts, cfg, {str(tmp_path / "out")!r}, lora_rank=2)
print(json.dumps({{"steps": result.train_steps, "research": {_RESEARCH_LOADED}}}))
"""
    result = _run(code)
    assert result["steps"] >= 2
    assert (tmp_path / "out").is_dir()
    assert result["research"] == []


def _function_line_ranges(tree: ast.Module) -> list[range]:
    return [range(node.lineno, node.end_lineno + 1) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_core_sources_do_not_reference_research_outside_cli_functions():
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[1] == "research":
            continue
        text = path.read_text()
        lines = [n for n, line in enumerate(text.splitlines(), 1) if RESEARCH_REFERENCE.search(line)]
        if rel.as_posix() == "unlearn_core/cli.py":
            tree = ast.parse(text)
            inside = _function_line_ranges(tree)
            lines = [n for n in lines if not any(n in r for r in inside)]
            # Also catch `import` statements the regex misses (e.g. split over lines), at module or class level.
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and not any(node.lineno in r for r in inside):
                    module = node.module or ""
                    if (node.level and (module.split(".")[0] == "research"
                                        or (not module and any(a.name == "research" for a in node.names)))) \
                            or module.startswith("unlearn_core.research"):
                        lines.append(node.lineno)
        offenders += [f"{rel}:{n}" for n in sorted(set(lines))]
    assert offenders == [], "product code refers to unlearn_core.research: " + ", ".join(offenders)
