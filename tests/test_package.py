import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirement_name(line: str) -> str:
    return re.split(r"[<>=!~;\[ ]", line.strip(), maxsplit=1)[0].lower()


def test_requirements_do_not_pin_torch():
    """ComfyUI brings its own torch: requirements.txt (what ComfyUI-Manager installs) does not list
    it, and the package accepts any torch 2.x from 2.1 on rather than one version."""
    reqs = [line for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    assert "torch" not in [_requirement_name(line) for line in reqs]
    deps = _pyproject()["project"]["dependencies"]
    torch_deps = [d for d in deps if _requirement_name(d) == "torch"]
    assert torch_deps == ["torch>=2.1,<3"]
    assert "==" not in torch_deps[0]


def test_requirements_txt_matches_project_dependencies():
    reqs = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    deps = [d for d in _pyproject()["project"]["dependencies"] if _requirement_name(d) != "torch"]
    assert sorted(reqs) == sorted(deps)


def test_pyproject_meets_comfy_registry_specification():
    """The fields https://docs.comfy.org/registry/specifications asks for, and how comfy-cli reads
    them. License: the PEP 639 string (comfy-cli publishes it as the license text, like
    `{ text = "Apache-2.0" }`; setuptools deprecates the table forms) plus the full text in LICENSE."""
    data = _pyproject()
    project, comfy = data["project"], data["tool"]["comfy"]

    name = project["name"]
    assert len(name) < 100
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*(?:[-_.][A-Za-z0-9]+)*", name), name  # no leading/double specials
    assert name == name.lower()
    assert re.fullmatch(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)", project["version"])
    assert project["description"].strip()
    assert project["requires-python"].startswith(">=")
    assert project["urls"]["Repository"].startswith("https://github.com/")

    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    license_text = (ROOT / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text

    assert all(c.split(" :: ")[0] in ("Operating System", "Environment", "Programming Language", "License",
                                      "Development Status", "Intended Audience", "Topic")
               for c in project.get("classifiers", []))

    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", comfy["PublisherId"])
    assert comfy["DisplayName"].strip()
    icon = comfy["Icon"]
    prefix = project["urls"]["Repository"].replace("https://github.com/", "https://raw.githubusercontent.com/") + "/main/"
    assert icon.startswith(prefix), icon
    icon_file = ROOT / icon[len(prefix):]
    assert icon_file.suffix.lower() in (".svg", ".png", ".jpg", ".jpeg", ".gif") and icon_file.is_file()
    if icon_file.suffix.lower() != ".svg":
        from PIL import Image

        with Image.open(icon_file) as img:
            assert img.width <= 800 and img.height <= 400, img.size
    assert isinstance(comfy.get("includes", []), list)


# ---- the installed package -------------------------------------------------------------------
_INSTALLED_CHECK = r"""
import importlib, json, pkgutil, sys
import unlearn_core
modules, failed = [], {}
for info in pkgutil.walk_packages(unlearn_core.__path__, "unlearn_core.", onerror=lambda name: failed.setdefault(name, "walk")):
    try:
        importlib.import_module(info.name)
        modules.append(info.name)
    except Exception as e:  # noqa: BLE001 - reported below
        failed[info.name] = repr(e)
from unlearn_core.research.toyworld.assets import TOY_MODEL_DIR, load_toy_pipeline
pipe = load_toy_pipeline()
files = sorted({m.__file__ for name, m in sys.modules.items()
                if name.split(".")[0] == "unlearn_core" and getattr(m, "__file__", None)})
print(json.dumps({"modules": modules, "failed": failed, "files": files, "toy_model_dir": str(TOY_MODEL_DIR),
                  "pipe_path": str(pipe.name_or_path), "unet_size": pipe.unet.config.sample_size}))
"""


def _build_wheel(tmp: Path) -> Path:
    """Build from a copy of the sources so that the build never writes build/ or *.egg-info into the
    shared working tree."""
    import shutil

    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "unlearn_core", src / "unlearn_core",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                          "-q", "-w", str(tmp / "dist"), str(src)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    (wheel,) = (tmp / "dist").glob("*.whl")
    return wheel


@pytest.mark.toy
@pytest.mark.slow
def test_wheel_installs_non_editable(tmp_path):
    """Build the wheel, install it (not editable, --no-deps) into a fresh venv, and use it from there.

    The venv is created with --system-site-packages so torch/diffusers/transformers come from this
    machine. This machine also has the repository installed editable (`pip install -e .`): its
    finder (`__editable___..._finder`) sits on sys.meta_path *after* the path-based finder, and the
    venv's site-packages comes before the system one on sys.path, so the wheel's copy wins. The
    test does not rely on that argument: it runs the venv's python with cwd outside the repository,
    no PYTHONPATH and PYTHONNOUSERSITE=1, and asserts that every loaded unlearn_core module, the
    embedded toy model's folder and the pipeline's source path lie inside the venv and none inside
    the repository."""
    import venv
    import zipfile

    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    for required in ("unlearn_core/research/toyworld/weights/toy_sd/model_index.json",
                     "unlearn_core/research/toyworld/weights/toy_sd/unet/diffusion_pytorch_model.safetensors",
                     "unlearn_core/research/toyworld/weights/classifier.safetensors"):
        assert required in names, f"{required} missing from the wheel"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith(("nodes/", "tests/", "bench/")) for n in names)

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=True).create(env_dir)
    bin_dir = env_dir / "bin"
    python = bin_dir / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PYTHONNOUSERSITE="1", VIRTUAL_ENV=str(env_dir), PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    def run(*cmd, timeout=300):
        out = subprocess.run([str(c) for c in cmd], cwd=run_dir, env=env, capture_output=True, text=True,
                             timeout=timeout)
        assert out.returncode == 0, f"{cmd}: {out.stdout}\n{out.stderr}"
        return out.stdout

    run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--disable-pip-version-check", wheel)
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()).resolve()
    assert site.is_relative_to(env_dir.resolve())
    assert (site / "unlearn_core" / "__init__.py").is_file()
    assert not list(site.glob("__editable__*")), "installed editable"

    result = json.loads(run(python, "-c", _INSTALLED_CHECK).strip().splitlines()[-1])
    assert result["failed"] == {}
    assert len(result["files"]) > 10
    assert "unlearn_core.cli" in result["modules"] and "unlearn_core.research.toyworld.assets" in result["modules"]
    for path in result["files"] + [result["toy_model_dir"], result["pipe_path"]]:
        resolved = Path(path).resolve()
        assert resolved.is_relative_to(site), f"{path} is not the installed copy"
        assert not resolved.is_relative_to(ROOT), f"{path} comes from the repository"
    assert result["unet_size"] > 0

    script = bin_dir / "concept-unlearn"
    assert script.is_file()
    assert "usage: concept-unlearn" in run(script, "--help")
    for command in ("demo", "forget", "bench"):
        assert f"usage: concept-unlearn {command}" in run(script, command, "--help")
