"""`concept-unlearn bench all`: the cell cache, the image seeds, assembling and rendering (no models),
and a run stopped in the middle that resumes to the same numbers as an uninterrupted one (slow)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from unlearn_core.research.benchmarks import provenance, summary
from unlearn_core.research.benchmarks.provenance import CellCache, files_hash, source_hash

ROOT = Path(__file__).resolve().parents[1]


def _key(**cell):
    return {"cell": {"benchmark": "unet", "method": "dynamic_mask", "scenario": "style", "seed": 0, **cell},
            "settings": {"steps": 4}, "model_hash": "sha256:m", "classifier_hash": "sha256:c", "code": {"v": 1}}


def test_cell_cache_finds_a_cell_only_under_its_exact_key(tmp_path):
    cache = CellCache(tmp_path)
    key = _key()
    assert cache.get(key) is None
    path = cache.put(key, {"hits": [1, 0]})
    assert path.parent == tmp_path / "unet" and path.name.startswith("dynamic_mask_style_0.")
    assert cache.get(key) == {"hits": [1, 0]}
    assert cache.get(_key(seed=1)) is None
    assert cache.get({**key, "model_hash": "sha256:other"}) is None
    assert cache.get({**key, "code": {"v": 2}}) is None
    assert cache.completed() == [path]


def test_a_stopped_write_leaves_no_cell(tmp_path):
    cache = CellCache(tmp_path)
    with pytest.raises(TypeError):  # fails while writing (not JSON): nothing is left
        cache.put(_key(), {"x": object()})
    assert cache.get(_key()) is None and not list(tmp_path.rglob("*.json")) and not list(tmp_path.rglob("*.partial"))
    # what a killed process leaves (a temporary never renamed) is not a cell
    path = cache.path(_key())
    path.parent.mkdir(parents=True, exist_ok=True)
    stray = path.parent / f".{path.name}.abc.partial"
    stray.write_text('{"key": ')
    assert cache.get(_key()) is None and cache.completed() == []
    assert cache.remove_stale_partials() == 0 and stray.exists()  # may belong to a process still writing
    os.utime(stray, (time.time() - 3600, time.time() - 3600))
    assert cache.remove_stale_partials() == 1 and not stray.exists()


def test_stale_cells_are_those_of_another_model_or_code_version_and_nothing_else(tmp_path):
    from unlearn_core.research.benchmarks.suite import stale_cells

    cache = CellCache(tmp_path)
    current = cache.put(_key(), {"hits": [1]})
    old_code = cache.put({**_key(seed=1), "code": {"v": 0}}, {"hits": [0]})
    old_model = cache.put({**_key(seed=2), "model_hash": "sha256:old"}, {"hits": [0]})
    (tmp_path / "unet" / "notes.json").write_text('{"key": {"model_hash": "sha256:old"}}')  # names no cell
    (tmp_path / "unet" / "list.json").write_text('{"key": [1, 2]}')
    moved = tmp_path / "unet" / "renamed.json"  # a cell stored under another name than its key's
    moved.write_text(old_code.read_text())
    provenance = {k: _key()[k] for k in ("model_hash", "classifier_hash", "code")}
    stale = dict(stale_cells(tmp_path, provenance))
    assert sorted(stale) == sorted([old_code, old_model]) and current not in stale
    assert stale[old_code] == "v 0 (now 1)" and stale[old_model] == "model_hash"


def test_prune_cells_deletes_only_what_the_installed_model_and_code_cannot_use(tmp_path):
    from unlearn_core.research.benchmarks.suite import installed_provenance

    cache = CellCache(tmp_path)
    usable = cache.put({**_key(), **installed_provenance()}, {"hits": [1]})
    stale = cache.put({**_key(seed=1), **installed_provenance(), "model_hash": "sha256:old"}, {"hits": [0]})
    cli = [sys.executable, "-m", "unlearn_core.cli", "bench", "prune-cells", "--cache-dir", str(tmp_path)]
    r = subprocess.run(cli + ["--dry-run"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and f"would remove {stale}: model_hash" in r.stdout and stale.exists()
    r = subprocess.run(cli, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "1 stale cells removed" in r.stdout
    assert usable.exists() and not stale.exists()
    r = subprocess.run(cli[:-1] + [str(tmp_path / "missing")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "no cell cache at" in r.stderr


def test_hashes_change_with_any_byte_and_the_code_hash_ignores_the_cli(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "w.bin").write_bytes(b"\x00\x01")
    (tmp_path / "config.json").write_text("{}")
    before = files_hash(tmp_path)
    assert before.startswith("sha256:") and files_hash(tmp_path) == before
    (tmp_path / "a" / "w.bin").write_bytes(b"\x00\x02")
    assert files_hash(tmp_path) != before
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "losses.py").write_text("x = 1\n")
    (pkg / "cli.py").write_text("a = 1\n")
    (pkg / "sub" / "cli.py").write_text("b = 1\n")
    h = source_hash(pkg)
    (pkg / "cli.py").write_text("a = 2\n")
    assert source_hash(pkg) == h
    (pkg / "sub" / "cli.py").write_text("b = 2\n")  # only the top-level command line is left out
    assert source_hash(pkg) != h


def _imported_modules(path: Path, package: str) -> set[str]:
    """Every module a source file imports, at the top or inside a function (relative imports
    resolved against `package`, the file's own package)."""
    import ast

    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)  # `from . import stats` imports a module
    return out


def test_the_code_hash_leaves_out_only_modules_no_cell_imports():
    """The benchmark modules left out of the code hash (timings, memory accounting, the assembling
    of result files and their statistics) are imported by no module that is in the hash, so
    editing them cannot change what a cached cell holds. The cells themselves live in `cells`."""
    from unlearn_core.research.benchmarks.provenance import CODE_HASH_EXCLUDES

    root = Path(provenance.__file__).resolve().parents[2]
    for path in CODE_HASH_EXCLUDES:
        assert (root / path).is_file(), path
    excluded = {"unlearn_core." + p[:-3].replace("/", ".") for p in CODE_HASH_EXCLUDES if p.startswith("research/")}
    assert "unlearn_core.research.benchmarks.suite" in excluded
    hashed = [p for p in root.rglob("*.py") if p.relative_to(root).as_posix() not in CODE_HASH_EXCLUDES]
    assert root / "research/benchmarks/cells.py" in hashed
    for path in hashed:
        rel = path.relative_to(root.parent).with_suffix("")
        package = ".".join(rel.parts[:-1])  # a module's package, or an __init__'s own
        found = _imported_modules(path, package) & excluded
        assert not found, f"{path.relative_to(root)} imports {sorted(found)}, which the code hash leaves out"
    # and the check sees such an import: suite imports summary and stats
    suite_imports = _imported_modules(root / "research/benchmarks/suite.py", "unlearn_core.research.benchmarks")
    assert {"unlearn_core.research.benchmarks.stats", "unlearn_core.research.benchmarks.summary"} <= suite_imports


@pytest.mark.toy
def test_the_installed_model_hash_is_the_hash_of_its_files():
    from unlearn_core.research.toyworld.assets import CLASSIFIER_PATH, TOY_MODEL_DIR

    assert provenance.toy_model_hash() == files_hash(TOY_MODEL_DIR) == provenance.toy_model_hash(TOY_MODEL_DIR)
    assert provenance.classifier_hash() == files_hash(CLASSIFIER_PATH)


def test_every_image_has_its_own_seed_and_a_prompt_keeps_its_seeds_in_any_set():
    from unlearn_core.research.benchmarks.suite import PROMPTS, Scorer
    from unlearn_core.sampling import SamplingConfig

    scorer = Scorer(None, SamplingConfig(images_per_prompt=16, distinct_seeds=True), 1234)
    seeds = [s for p in PROMPTS for s in scorer.seeds(p, 16)]
    assert len(seeds) == len(set(seeds))
    assert scorer.seeds("a star", 16) == scorer.seeds("a star", 16) and scorer.seeds("a star", 4) == scorer.seeds("a star", 16)[:4]
    with pytest.raises(ValueError, match="not in cells.PROMPTS"):
        scorer.seeds("a purple elephant", 2)
    # the base model benchmark draws image i of object k from seed k * 16 + i, as `bench base` did
    base = Scorer(None, SamplingConfig(images_per_prompt=16), 0)
    from unlearn_core.research.toyworld.concepts import OBJECT_NAMES

    assert base.seeds(f"a {OBJECT_NAMES[3]}", 16) == [3 * 16 + i for i in range(16)]


def test_budgets():
    from unlearn_core.research.benchmarks.suite import make_budget

    full, quick = make_budget("full"), make_budget("quick")
    assert len(full.training_seeds) >= 3 and full.sampling.images_per_prompt >= 16 and full.sampling.distinct_seeds
    assert full.paraphrase_images_per_prompt >= 16
    assert full.sampling.sampler == "euler_ancestral" and full.sampling.num_inference_steps == 40
    assert full.unet.evaluation_sampling == {"sampler": "euler_ancestral", "num_inference_steps": 40, "guidance_scale": 3.0}
    assert quick.training_seeds == (0,) and quick.sampling.distinct_seeds
    with pytest.raises(ValueError, match="unknown budget"):
        make_budget("huge")


# --------------------------------------------------------------- assembling + rendering, synthetic cells

def _scored(concepts, rng, erased=(), fid=None, n=4):
    out = {"concepts": {}}
    for c in concepts:
        entry = {"hits": [int(x) for x in rng.integers(0, 2, n)], "predicted": {c: n},
                 "objects": [str(x) for x in rng.choice(["star", "ring", "bolt"], n)],
                 "colours": [str(x) for x in rng.choice(["red", "blue"], n)],
                 "styles": [str(x) for x in rng.choice(["solid", "striped"], n)]}
        if c in erased:
            entry["coherent"] = [int(x) for x in rng.integers(0, 2, n)]
        out["concepts"][c] = entry
    if fid is not None:
        out["toy_fid"] = fid
    return out


def _synthetic_results(tmp_path, budget_name="full"):
    """Result files assembled by suite's functions from random cells of the tiny budget's shape."""
    from unlearn_core.research.benchmarks import suite
    from unlearn_core.research.benchmarks import text_encoder as te
    from unlearn_core.research.benchmarks import unet

    rng = np.random.default_rng(0)
    budget = suite.make_budget("tiny")
    budget.training_seeds = (0, 1, 2)
    budget.name = budget_name
    base_cells = {"objects": {**_scored(budget.base_objects, rng, fid=12.0), "classifier": {"object": 1.0, "style": 0.9995}},
                  "styles": _scored(budget.base_styles, rng)}
    erased = ("striped",)
    unet_base = _scored(erased + unet.RETAINED, rng, fid=10.0)
    unet_cells = {("dynamic_mask", "style"): [
        {"rows": {"style": {**_scored(erased + unet.RETAINED, rng, fid=11.0 + s), "erased": list(erased),
                            "seconds_per_concept": 1.0, "seconds_per_step": 0.1, "peak_memory_mb": 5.0}}}
        for s in range(3)]}
    # a sequential row too, so the README's seq10 line has something to show
    seq = unet.SEQ10
    unet_base_all = _scored(seq + erased + unet.RETAINED, rng, erased=seq, fid=10.0)
    unet_cells[("dynamic_mask", "sequential")] = [
        {"rows": {f"seq{k}": {**_scored(seq[:k] + unet.RETAINED, rng, erased=seq[:k], fid=11.0), "erased": list(seq[:k]),
                              "seconds_per_concept": 1.0, "seconds_per_step": 0.1, "peak_memory_mb": 5.0}
                  for k in (3, 6, 10)}} for _ in range(3)]
    for c in erased + unet.RETAINED:
        unet_base_all["concepts"][c] = unet_base["concepts"][c]
    names = ("star", "circle", "bolt")

    def te_cell(extra=True):
        d = {m: _scored(names, rng, erased=names if m == "words" else ())["concepts"]
             for m in ("words", "paraphrase", "learned_token")}
        d["retained"] = _scored(te.RETAINED, rng)["concepts"]
        d["toy_fid"] = 9.0
        if extra:
            d.update(seconds_per_concept=2.0, anchor=None)
        return d

    te_base = te_cell(extra=False)
    te_cells = {(m, "three"): [te_cell() for _ in range(3)] for m in ("few_shot_lora", "negated_ti")}

    def rob_cell(names):
        return {"retained": _scored(te.RETAINED, rng)["concepts"],
                "attacks": {a: _scored(names, rng)["concepts"] for a in budget.robustness.attacks}, "train_seconds": 3.0}

    budget.robustness_scenarios = ("objects", "style")
    rob_base = {"objects": rob_cell(("star", "circle", "triangle")), "style": rob_cell(("striped",))}
    rob_cells = {("dynamic_mask", sc): [rob_cell(("star", "circle", "triangle") if sc == "objects" else ("striped",))
                                        for _ in range(3)] for sc in ("objects", "style")}
    for sc in ("objects", "style"):  # no training: one cell, no seed
        rob_cells[("closed_form", sc)] = [rob_cell(("star", "circle", "triangle") if sc == "objects" else ("striped",))]
    results = {
        "base_model": suite.assemble_base_model(base_cells, budget),
        "unet": suite.assemble_unet(unet_base_all, unet_cells, None, budget),
        "text_encoder": suite.assemble_text_encoder(te_base, te_cells, budget, "DPMSolverMultistepScheduler"),
        "robustness": suite.assemble_robustness(rob_base, rob_cells, budget, "DPMSolverMultistepScheduler"),
    }
    header = {"command": "concept-unlearn bench all --budget full --output-dir bench/results",
              "produced_by": suite.PRODUCED_BY, "budget": budget.name, "model_hash": "sha256:" + "ab" * 32,
              "classifier_hash": "sha256:" + "cd" * 32, "sampling": {"sampler": "euler_ancestral",
                                                                    "num_inference_steps": 120, "guidance_scale": 3.0,
                                                                    "images_per_prompt": 4},
              "training_seeds": [0, 1, 2]}
    for name, result in results.items():
        suite.write_json(tmp_path / f"{name}.json", {**header, "benchmark": name, **result})
    return results


def test_rows_carry_intervals_and_paired_deltas(tmp_path):
    results = _synthetic_results(tmp_path)
    row = next(r for r in results["unet"]["rows"] if r["scenario"] == "seq10")
    for block in (row["residual_accuracy"], row["retained_accuracy"]):
        v, b, d = block["value"], block["base"], block["delta_vs_base"]
        assert v["seeds"] == 3 and v["interval"].startswith("bootstrap") and v["lo"] <= v["mean"] <= v["hi"]
        assert b["interval"] == "clopper-pearson" and d["mean"] == pytest.approx(v["mean"] - b["mean"])
    assert row["superclass_coherence"]["seeds"] == 3
    kept = row["attribute_preservation"]
    assert kept["attributes"] == ["object", "colour", "style"] and kept["value"]["seeds"] == 3
    assert kept["value"]["mean"] <= min(v["mean"] for v in kept["per_attribute"].values())
    assert results["text_encoder"]["rows"][0]["attribute_preservation"]["value"]["seeds"] == 3
    te_row = results["text_encoder"]["rows"][0]
    assert te_row["superclass_coherence"] is not None
    # star, circle and bolt erased: their retained siblings are the symbols, the round shape and the glyphs
    assert te_row["sibling_accuracy"]["objects"] == ["semicircle", "cross", "arrow", "zigzag", "hourglass"]
    assert te_row["sibling_accuracy"]["delta_vs_base"]["pairs"] == 3 * 5 * 4  # seeds × objects × images
    style = next(r for r in results["unet"]["rows"] if r["scenario"] == "style")
    assert style["superclass_coherence"]["seeds"] == 3 and style["toy_fid"]["per_seed"] == [11.0, 12.0, 13.0]
    assert style["attribute_preservation"]["attributes"] == ["object", "colour"]  # the style was erased
    assert style["sibling_accuracy"] is None  # a style has no sibling objects
    rob_base = [r for r in results["robustness"]["rows"] if r["method"] == "base"]
    assert rob_base and all(r["attack_success_rate"]["delta_vs_base"]["mean"] == 0.0 for r in rob_base)
    assert all(r["attribute_preservation"] is None for r in rob_base)
    assert all(r["attribute_preservation"]["value"]["images"] > 0 for r in results["robustness"]["rows"]
               if r["method"] != "base")
    assert all("why_not_shared" in r["sampling"]["attack"] and r["sampling"]["retained"] == "shared"
               for r in results["robustness"]["rows"])


def test_summary_and_readme_block_render_from_the_files(tmp_path):
    _synthetic_results(tmp_path)
    text = summary.render_summary(tmp_path)
    assert text == summary.render_summary(tmp_path)
    for title in summary.TITLES.values():
        assert f"## {title}" in text
    assert "Not results" not in text
    block = summary.render_readme_block(tmp_path)
    assert block.startswith("\n") and block.endswith("\n") and "dynamic_mask" in block
    readme = f"# x\n{summary.README_START}{block}{summary.README_END}\nrest\n"
    assert summary.readme_block(readme) == block
    assert summary.missing_results(tmp_path) == []
    (tmp_path / "unet.json").unlink()
    assert summary.missing_results(tmp_path) == ["unet.json"]
    assert "`unet.json`: not run yet." in summary.render_summary(tmp_path)
    with pytest.raises(FileNotFoundError, match="unet"):
        summary.render_readme_block(tmp_path)


def test_a_quick_run_is_marked_as_not_results(tmp_path):
    _synthetic_results(tmp_path, budget_name="quick")
    assert "**Not results:** budget quick" in summary.render_summary(tmp_path)


# ------------------------------------------------------------------------------ interrupted and resumed

TIMING = {"seconds_per_concept", "seconds_per_step", "peak_memory_mb", "train_seconds", "mask_overhead",
          "compute_seconds"}


def _numbers(path: Path):
    """A result file without its command line and timings (which differ between runs)."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in TIMING and k != "command"}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return strip(json.loads(path.read_text()))


def _bench_all(out: Path, cache: Path):
    return [sys.executable, "-m", "unlearn_core.cli", "--threads", "1", "bench", "all", "--budget", "tiny",
            "--output-dir", str(out), "--cache-dir", str(cache)]


def _env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
@pytest.mark.toy
def test_bench_all_killed_after_its_first_cell_resumes_to_the_numbers_of_an_uninterrupted_run(tmp_path):
    out_a, cache_a, out_b, cache_b = (tmp_path / n for n in ("out_a", "cache_a", "out_b", "cache_b"))
    # 1. start, and kill (SIGKILL: no clean-up runs) as soon as the first cell is in the cache
    proc = subprocess.Popen(_bench_all(out_a, cache_a), cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 600
    try:
        while not CellCache(cache_a).completed():
            assert proc.poll() is None, f"bench all ended before caching a cell:\n{proc.stdout.read()}"
            assert time.time() < deadline, "no cell cached within 10 minutes"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    first = CellCache(cache_a).completed()
    assert not out_a.exists() or not list(out_a.glob("*.json")), "result files appeared before the run ended"
    for cell in first:
        json.loads(cell.read_text())  # complete, not torn
    stamp = {p: p.stat().st_mtime_ns for p in first}

    # 2. rerun into the same cache: the cached cells are taken, not recomputed
    resumed = subprocess.run(_bench_all(out_a, cache_a), cwd=ROOT, env=_env(), capture_output=True, text=True,
                             timeout=1200)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.count("[cached]") >= len(first), resumed.stdout
    assert {p: p.stat().st_mtime_ns for p in first} == stamp

    # 3. an uninterrupted run with its own cache
    clean = subprocess.run(_bench_all(out_b, cache_b), cwd=ROOT, env=_env(), capture_output=True, text=True,
                           timeout=1200)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "[cached]" not in clean.stdout

    names = sorted(p.name for p in out_b.glob("*.json"))
    assert names == ["base_model.json", "robustness.json", "text_encoder.json", "unet.json"]
    assert sorted(p.name for p in out_a.glob("*.json")) == names
    for name in names:
        assert _numbers(out_a / name) == _numbers(out_b / name), name
        data = json.loads((out_a / name).read_text())
        assert data["model_hash"] == provenance.toy_model_hash() and data["budget"] == "tiny"
        assert data["command"].startswith("concept-unlearn ") and "bench all --budget tiny" in data["command"]
    # the real cells store each image's labels, so every trained row reports attribute preservation,
    # and the erased objects' coherence
    unet_rows = json.loads((out_b / "unet.json").read_text())["rows"]
    te_rows = json.loads((out_b / "text_encoder.json").read_text())["rows"]
    rob_rows = [r for r in json.loads((out_b / "robustness.json").read_text())["rows"] if r["method"] != "base"]
    assert unet_rows and te_rows and rob_rows
    for row in unet_rows + te_rows + rob_rows:
        kept = row["attribute_preservation"]
        assert kept is not None and 0.0 <= kept["value"]["mean"] <= 1.0, row["method"]
        assert kept["value"]["images"] == row["retained_accuracy"]["value"]["images"]
    assert all(r["superclass_coherence"] is not None for r in te_rows)  # the tiny budget erases a star
    assert (out_a / "SUMMARY.md").read_text() == summary.render_summary(out_a)

    # 4. a third run finds every cell cached and writes the same files
    again = subprocess.run(_bench_all(out_a, cache_a), cwd=ROOT, env=_env(), capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0 and "[computed]" not in again.stdout, again.stdout + again.stderr


def test_closed_form_has_one_cell_per_scenario_and_the_warm_and_bank_variants_change_one_setting():
    from unlearn_core.research.benchmarks import suite, unet

    full = suite.make_budget("full")
    assert suite.unet_seeds("closed_form", full) == (None,)  # no training: the seed would change nothing
    assert suite.unet_seeds("dynamic_mask", full) == (0, 1, 2)
    assert {"closed_form", "dynamic_mask_warm", "dynamic_mask_bank", "dynamic_mask"} <= set(full.unet.methods)
    bank = full.unet.trainer_config("dynamic_mask_bank")
    assert bank.distillation_bank == full.unet.steps_per_concept // 10 and bank.warm_start == "none"
    cold = full.unet.trainer_config("dynamic_mask")
    warm = full.unet.trainer_config("dynamic_mask_warm")
    assert cold.warm_start == "none" and warm.warm_start == "closed_form"
    assert warm.steps_per_concept == cold.steps_per_concept // 3
    # everything else as the cold run, so the rows compare the start alone
    assert (warm.mask, warm.loss, warm.target, warm.lr, warm.batch_size) == \
        (cold.mask, cold.loss, cold.target, cold.lr, cold.batch_size)
    tiny = suite.make_budget("tiny")
    assert "closed_form" in tiny.unet.methods and "closed_form" in tiny.robustness.methods  # the slow resume test runs them
    assert suite.rob_seeds("closed_form", full) == (None,) and suite.rob_seeds("dynamic_mask", full) == (0, 1, 2)
    assert "closed_form" in full.robustness.methods


def test_bench_all_refuses_an_unknown_method_or_scenario_before_loading_anything(tmp_path):
    from unlearn_core.research.benchmarks import suite

    with pytest.raises(ValueError, match="unknown UNet method 'closedform'; choose from dynamic_mask"):
        suite.bench_all("tiny", output_dir=tmp_path / "out", cache_dir=tmp_path / "cache", unet_methods=("closedform",))
    with pytest.raises(ValueError, match="unknown UNet scenario 'seq10'; choose from sequential"):
        suite.bench_all("tiny", output_dir=tmp_path / "out", cache_dir=tmp_path / "cache", unet_scenarios=("seq10",))
    with pytest.raises(ValueError, match="unknown robustness method 'closedform'; choose from base"):
        suite.bench_all("tiny", output_dir=tmp_path / "out", cache_dir=tmp_path / "cache",
                        robustness_methods=("closedform",))
    with pytest.raises(ValueError, match="unknown text-encoder scenario 'three_sibling'; choose from single_star"):
        suite.bench_all("tiny", output_dir=tmp_path / "out", cache_dir=tmp_path / "cache", te_scenarios=("three_sibling",))
    with pytest.raises(ValueError, match="--sampling-steps must be at least 1"):
        suite.bench_all("tiny", output_dir=tmp_path / "out", cache_dir=tmp_path / "cache", sampling_steps=0)
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_fewer_sampling_steps_reach_every_scored_image_and_every_cell_key():
    """`--sampling-steps` replaces the budget's one sampler's steps; the per-benchmark configs follow
    it (Budget.__post_init__), and the cells' keys hold the sampling, so no cell of another step
    count is reused."""
    from dataclasses import asdict, replace

    from unlearn_core.research.benchmarks import suite

    full = suite.make_budget("full")
    fewer = replace(full, sampling=replace(full.sampling, num_inference_steps=20))
    assert fewer.sampling.distinct_seeds and fewer.sampling.images_per_prompt == 16
    for cfg in (fewer.unet.evaluation_sampling, fewer.text_encoder.evaluation_sampling):
        assert cfg["num_inference_steps"] == 20
    assert asdict(fewer.sampling) != asdict(suite.make_budget("full").sampling)


def test_the_summary_says_when_files_were_scored_with_different_samplers(tmp_path):
    from unlearn_core.research.benchmarks import summary

    _synthetic_results(tmp_path)
    assert "different samplers" not in summary.render_summary(tmp_path)
    data = json.loads((tmp_path / "unet.json").read_text())
    data["sampling"] = {**data["sampling"], "num_inference_steps": 40}
    (tmp_path / "unet.json").write_text(json.dumps(data))
    assert "**The files were scored with different samplers** (steps: `base_model.json` 120, `unet.json` 40" in \
        summary.render_summary(tmp_path)


def test_an_erased_prompt_drawn_as_another_erased_object_counts_as_a_leak():
    """The residual counts only the prompt's own object; `any_erased_object` also counts a sibling
    that the same row erased (a pentagon prompt drawn as an erased triangle)."""
    from unlearn_core.research.benchmarks import suite, unet

    budget = suite.make_budget("tiny")
    erased = ("triangle", "pentagon")

    def entry(objects, own):
        return {"hits": [int(o == own) for o in objects], "objects": objects, "predicted": {}}

    concepts = {"triangle": entry(["triangle", "hexagon", "hexagon", "hexagon"], "triangle"),
                "pentagon": entry(["triangle", "triangle", "triangle", "hexagon"], "pentagon")}
    base = {"concepts": {"triangle": entry(["triangle"] * 4, "triangle"), "pentagon": entry(["pentagon"] * 4, "pentagon"),
                         **{o: entry([o] * 4, o) for o in unet.RETAINED}}, "toy_fid": 1.0}
    cell = {"rows": {"seq2": {"concepts": {**concepts, **{o: entry([o] * 4, o) for o in unet.RETAINED}},
                              "erased": list(erased), "toy_fid": 1.0, "seconds_per_concept": 0.0,
                              "seconds_per_step": 0.0, "peak_memory_mb": 0.0}}}
    row = suite.assemble_unet(base, {("closed_form", "sequential"): [cell]}, None, budget)["rows"][0]
    assert row["residual_accuracy"]["value"]["mean"] == pytest.approx(1 / 8)  # one triangle drawn as a triangle
    leak = row["any_erased_object"]
    assert leak["value"]["mean"] == pytest.approx(4 / 8) and leak["base"]["mean"] == 1.0
    assert leak["delta_vs_base"]["mean"] == pytest.approx(-0.5)
    # a cell scored before the per-image objects were stored has no such row entry, and renders as a dash
    for c in concepts.values():
        del c["objects"]
    old = suite.assemble_unet(base, {("closed_form", "sequential"): [cell]}, None, budget)["rows"][0]
    assert old["any_erased_object"] is None


def test_the_summary_checks_the_targets_against_the_files(tmp_path):
    from unlearn_core.research.benchmarks import summary

    results = _synthetic_results(tmp_path)
    text = summary.render_summary(tmp_path)
    targets = text[text.index("## Targets"):]
    row = next(r for r in results["unet"]["rows"] if r["scenario"] == "seq10")
    hi = row["residual_accuracy"]["value"]["hi"]
    line = next(ln for ln in targets.splitlines() if ln.startswith("| dynamic_mask | seq10 |"))
    assert line.split(" | ")[2] == f"{hi:.3f} " + ("met" if hi <= 0.05 else "**missed**")
    style_line = next(ln for ln in targets.splitlines() if ln.startswith("| dynamic_mask | style |"))
    assert style_line.split(" | ")[4] == "–"  # attributes kept is an object-scenario target
    te_lines = [ln for ln in targets.splitlines() if ln.startswith("| three |")]
    assert len(te_lines) == 1 and "s / concept" in targets  # few_shot_lora only, not the baseline
    assert "| dynamic_mask | objects |" in targets and "| closed_form | style |" in targets
    # seconds measured with one thread per process are not the two-core setting the target names
    te_file = tmp_path / "text_encoder.json"
    data = json.loads(te_file.read_text())
    for threads, said in (([2], False), ([1], True)):
        data["compute_seconds"] = {"cells": 1, "wall": 1.0, "cpu": 1.0, "torch_threads": threads}
        te_file.write_text(json.dumps(data))
        assert ("measured with 1 thread per process" in summary.render_summary(tmp_path)) == said
