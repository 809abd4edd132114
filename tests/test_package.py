import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_root_package_imports_cleanly_and_lightly():
    """ComfyUI imports the repo root as a package; it must work without ComfyUI and without
    importing torch/diffusers at import time."""
    code = f"""
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("concept_unlearn_pack", {str(ROOT / "__init__.py")!r},
                                              submodule_search_locations=[{str(ROOT)!r}])
mod = importlib.util.module_from_spec(spec)
sys.modules["concept_unlearn_pack"] = mod
spec.loader.exec_module(mod)
print(json.dumps({{"mappings": isinstance(mod.NODE_CLASS_MAPPINGS, dict),
                   "heavy": sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules)}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["mappings"] is True
    assert result["heavy"] == []


def test_library_import_is_light():
    out = subprocess.run([sys.executable, "-c", "import sys, unlearn_core; print('torch' in sys.modules)"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False"


def test_requirements_do_not_pin_torch():
    reqs = (ROOT / "requirements.txt").read_text()
    assert "torch" not in [line.split(">")[0].split("=")[0].strip() for line in reqs.splitlines()]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"torch>=2.1,<3"' in pyproject and "[tool.comfy]" in pyproject
