"""Nothing stale can be published: every committed benchmark result names the model it scored (the
installed toy model, hashed as `bench all` hashes it) and the command that regenerates it, and the
generated documents (bench/results/SUMMARY.md, the README's results block) equal what the result
files give."""

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from unlearn_core.research.benchmarks import summary
from unlearn_core.research.benchmarks.provenance import classifier_hash, toy_model_hash

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
FULL_RERUN = "concept-unlearn bench all --budget full --cache-dir bench/cells --output-dir bench/results"


def _tracked_json(folder: str, recursive: bool) -> list[Path]:
    """The .json files under `folder` (relative to the repository) that git tracks, directly in it or
    at any depth; every such file on disk outside a git checkout."""
    try:
        out = subprocess.run(["git", "ls-files", "--", folder], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
        files = [ROOT / f for f in out if f.endswith(".json") and (recursive or "/" not in f[len(folder) + 1:])]
    except (OSError, subprocess.CalledProcessError):
        files = sorted((ROOT / folder).rglob("*.json") if recursive else (ROOT / folder).glob("*.json"))
    return sorted(f for f in files if f.exists())


def committed_results() -> list[Path]:
    """bench/results/*.json that git tracks."""
    return _tracked_json("bench/results", recursive=False)


#: result files of benchmarks that load no toy model (random weights, or none at all), by file-name
#: prefix: the bench subcommand that writes them
NO_TOY_MODEL = {"real_size": "real-size", "memory_accounting": "memory-accounting"}


def _is_real_size(path: Path) -> bool:
    return any(path.name.startswith(prefix) for prefix in NO_TOY_MODEL)


def test_there_are_committed_results_to_check():
    assert [p for p in committed_results() if not _is_real_size(p)], "no bench/results/*.json found"


@pytest.mark.parametrize("path", [p for p in committed_results() if not _is_real_size(p)], ids=lambda p: p.name)
def test_a_committed_result_records_the_installed_model_and_a_command(path):
    data = json.loads(path.read_text())
    for key, installed in (("model_hash", toy_model_hash()), ("classifier_hash", classifier_hash())):
        assert key in data, (f"{path.name} does not record the {key} of what it scored; rerun it "
                             f"({FULL_RERUN}) instead of publishing it")
        assert data[key] == installed, (f"{path.name} was measured on another toy model or classifier "
                                        f"({key} {data[key]}, installed {installed}): it is stale; rerun {FULL_RERUN}")
    command = data.get("regenerate_command") or data.get("command")
    assert command and command.startswith("concept-unlearn "), f"{path.name} records no concept-unlearn command"
    words = shlex.split(command)
    assert "--model" not in words and "--classifier" not in words, (
        f"{path.name}: the command {command!r} scores another model than the installed one; record a "
        "regenerate_command that runs on the installed model")
    if data.get("produced_by") == summary.PRODUCED_BY:
        assert data["budget"] == "full", f"{path.name} comes from a --budget {data['budget']} run: not results"


def committed_cells() -> list[Path]:
    """bench/cells/**/*.json that git tracks: the cells the published files were assembled from."""
    return _tracked_json("bench/cells", recursive=True)


def test_committed_cells_are_full_budget_cells_of_the_installed_model():
    from dataclasses import asdict

    from unlearn_core.research.benchmarks.cells import make_budget

    installed, full_sampling = (toy_model_hash(), classifier_hash()), asdict(make_budget("full").sampling)
    stale, other_budget = [], []
    for path in committed_cells():
        key = json.loads(path.read_text()).get("key")
        assert isinstance(key, dict) and "cell" in key, f"{path} is not a cell (no key naming one): remove it"
        if (key["model_hash"], key["classifier_hash"]) != installed:
            stale.append(path.relative_to(ROOT).as_posix())
        if key["sampling"] != full_sampling:
            other_budget.append(path.relative_to(ROOT).as_posix())
    assert not stale, (f"{len(stale)} committed cells were computed on another toy model or classifier "
                       f"(first: {stale[0] if stale else ''}); remove them with "
                       "`concept-unlearn bench prune-cells --cache-dir bench/cells`")
    assert not other_budget, (f"{len(other_budget)} committed cells were scored with another sampler than the full "
                              f"budget's (first: {other_budget[0] if other_budget else ''}): bench/cells holds only "
                              "the published run's cells")


@pytest.mark.parametrize("path", [p for p in committed_results() if _is_real_size(p)], ids=lambda p: p.name)
def test_real_size_results_are_exempt_because_they_use_random_weights(path):
    # bench real-size times an SD1.5-shaped UNet with random weights, bench memory-accounting builds one
    # on the meta device: there is no model file to hash. The exemption holds only for what those
    # commands write.
    data = json.loads(path.read_text())
    words = shlex.split(data["command"])
    subcommand = next(v for k, v in NO_TOY_MODEL.items() if path.name.startswith(k))
    assert words[0] == "concept-unlearn" and "bench" in words and words[words.index("bench") + 1] == subcommand, \
        path.name
    assert "model_hash" not in data
    if subcommand == "real-size":
        assert "unet_parameters" in data and data.get("weights", "random") == "random"
    else:
        assert data["weights"] == "none (meta device)" and all("unet_parameters" in r for r in data["rows"])


def test_summary_is_generated_from_the_result_files():
    path = RESULTS / summary.SUMMARY_FILE
    if not path.exists():
        pytest.skip(f"bench/results/SUMMARY.md does not exist yet: `{FULL_RERUN}` writes it")
    assert path.read_text() == summary.render_summary(RESULTS), (
        "bench/results/SUMMARY.md differs from what the result files give: rerun bench all, or regenerate it "
        "with python -c 'from unlearn_core.research.benchmarks.summary import write_summary; "
        "write_summary(\"bench/results\")'")


def test_readme_results_block_is_generated_from_the_result_files():
    missing = summary.missing_results(RESULTS)
    if missing:
        pytest.skip(f"bench all has not written {', '.join('bench/results/' + m for m in missing)} yet "
                    f"(`{FULL_RERUN}`); until then the README's results block is not checked")
    readme = (ROOT / "README.md").read_text()
    assert summary.readme_block(readme) == summary.render_readme_block(RESULTS), (
        "README.md's block between <!-- results:start --> and <!-- results:end --> differs from "
        "summary.render_readme_block('bench/results'): paste the function's output there")
