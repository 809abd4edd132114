"""`concept-unlearn bench all`: the base-model, UNet, text-encoder and robustness benchmarks in one
run, with one sampling configuration, several training seeds, 95% intervals and a cell cache.

`cells` runs (or reads back from the cache) every cell of the budget; this module assembles the
result files from them — rates, 95% intervals, paired differences from the base model, attribute
preservation — and writes them with SUMMARY.md. Assembling runs on every `bench all`, from cached
cells too, so a change here changes the files without recomputing a cell: this module is left out
of the code hash that keys the cells (`provenance.CODE_HASH_EXCLUDES`).

The attack images (the robustness benchmark's attacks and the text-encoder benchmark's
learned-token attack) are not drawn with the shared sampler: each such row says so, with the
reason (`ATTACK_SAMPLING_WHY`).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from ...atomic import atomic_file
from ..attacks import AttackConfig
from ..toyworld.concepts import OBJECT_BY_NAME, OBJECT_NAMES, concept_kind
from . import preservation, stats
from . import robustness as rob
from . import text_encoder as te
from . import unet
from .cells import (EVAL_SEEDS, PROMPTS, Budget, Runner, Scorer, make_budget,  # noqa: F401  (the suite's API)
                    narrow_budget, open_runner, rob_seeds, unet_seeds)
from .provenance import CellCache
from .summary import PRODUCED_BY

FORMAT = 1
ATTACK_SAMPLING_WHY = (
    "attack images are drawn with AttackConfig's sampler (the model's stored scheduler through "
    "DiffusersAdapter.sample_latents, which takes the learned-token and soft-prompt embeddings); it "
    "draws no per-step noise, so it stays seed-reproducible, and the attack budgets were set for it. "
    "Image i of an attack on concept k starts from seed attack_seed + 1000 * k + i, the same for every "
    "model, so attack rates are paired with the base model's too.")


def _hits(entries: dict, concepts) -> list[int]:
    return [h for c in concepts for h in entries[c]["hits"]]


#: the style each benchmark erases, and the style it is erased onto (its "superclass")
STYLE_ANCHORS = {unet.STYLE[0]: unet.STYLE[1], te.STYLE[0]: te.STYLE[1], rob.STYLE: unet.STYLE[1]}


def _coherent(entries: dict, concepts) -> list[int]:
    """1 for each image of an erased concept that shows a coherent replacement: for an object,
    another member of its superclass (stored by the cell); for a style, its anchor style."""
    out = []
    for c in concepts:
        if "coherent" in entries[c]:
            out += entries[c]["coherent"]
        elif c in STYLE_ANCHORS and "styles" in entries[c]:
            out += [int(s == STYLE_ANCHORS[c]) for s in entries[c]["styles"]]
    return out


def coherence(per_seed_entries: list[dict], erased) -> dict | None:
    """Superclass coherence of the erased concepts' images (one {concept: entry} dict per training
    seed): the share that show another member of an object's superclass, or a style's anchor style.
    None for cells scored before the images' labels were stored."""
    coherent = [_coherent(e, erased) for e in per_seed_entries]
    return stats.rate_interval(coherent) if all(coherent) else None


def _any_erased(entries: dict, erased) -> list[int] | None:
    """1 for each image of an erased object's prompt that shows any erased object (itself or another
    one of the row): an erased prompt drawn as a sibling that was erased too is a leak the residual
    (which counts only the prompt's own object) does not see. None for cells scored before the
    per-image objects were stored, and for rows that erase no object."""
    objects = [c for c in erased if concept_kind(c) == "object"]
    if not objects or not all("objects" in entries[c] for c in objects):
        return None
    kept = set(objects)
    return [int(o in kept) for c in objects for o in entries[c]["objects"]]


def per_concept(entries: list[dict], concepts) -> dict[str, dict]:
    """{concept: rate with interval} from one {concept: {"hits"}} dict per training seed."""
    return {c: stats.rate_interval([e[c]["hits"] for e in entries]) for c in concepts}


def rate_block(per_seed: list[list[int]], base: list[int] | None) -> dict:
    """A rate with its interval, the base model's on the same images, and the paired difference."""
    out = {"value": stats.rate_interval(per_seed)}
    if base is not None:
        out["base"] = stats.rate_interval([base])
        out["delta_vs_base"] = stats.paired_difference(per_seed, [base] * len(per_seed))
    return out


def siblings(erased, retained) -> list[str]:
    """The retained objects that share a superclass with an erased object: the neighbours an edit
    is most likely to damage."""
    superclasses = {OBJECT_BY_NAME[c].superclass for c in erased if concept_kind(c) == "object"}
    return [o for o in retained if OBJECT_BY_NAME[o].superclass in superclasses]


def sibling_block(per_seed_entries: list[dict], base_entries: dict, erased, retained) -> dict | None:
    """Accuracy on the erased objects' retained siblings, with the base model's and the paired
    difference (None when the row erased no object with a retained sibling)."""
    objects = siblings(erased, retained)
    if not objects:
        return None
    return {**rate_block([_hits(e, objects) for e in per_seed_entries], _hits(base_entries, objects)),
            "objects": objects}


def assemble_base_model(cells: dict, budget: Budget) -> dict:
    objects, styles = cells["objects"], cells["styles"]
    obj = {o: stats.rate_interval([objects["concepts"][o]["hits"]]) for o in budget.base_objects}
    sty = {s: stats.rate_interval([styles["concepts"][s]["hits"]]) for s in budget.base_styles}
    return {
        "object_accuracy": {o: v["mean"] for o, v in obj.items()},
        "object_accuracy_interval": obj,
        "object_accuracy_mean": stats.rate_interval([_hits(objects["concepts"], budget.base_objects)]),
        "style_accuracy": {s: v["mean"] for s, v in sty.items()},
        "style_accuracy_interval": sty,
        "style_accuracy_mean": stats.rate_interval([_hits(styles["concepts"], budget.base_styles)]),
        "classifier_accuracy": objects["classifier"],
        "toy_fid": objects["toy_fid"],
        "predicted_objects": {o: objects["concepts"][o]["predicted"] for o in budget.base_objects},
        "images_per_prompt": budget.sampling.images_per_prompt,
        "styled_prompts": len(OBJECT_NAMES) * len(budget.base_styles),
    }


def assemble_unet(base: dict, cells: dict, overhead: dict | None, budget: Budget) -> dict:
    """cells[(method, scenario)] = [cell of each training seed]."""
    bc = base["concepts"]
    rows = []
    for (method, scenario), per_seed in cells.items():
        for row_name in per_seed[0]["rows"]:
            scored = [c["rows"][row_name] for c in per_seed]
            erased = scored[0]["erased"]
            any_erased = [_any_erased(s["concepts"], erased) for s in scored]
            base_any = _any_erased(bc, erased)
            rows.append({
                "method": method, "scenario": row_name, "erased": erased,
                "seeds": [s for s in unet_seeds(method, budget) if s is not None],
                "residual_accuracy": rate_block([_hits(s["concepts"], erased) for s in scored], _hits(bc, erased)),
                "residual_accuracy_per_concept": per_concept([s["concepts"] for s in scored], erased),
                "retained_accuracy": rate_block([_hits(s["concepts"], unet.RETAINED) for s in scored],
                                                _hits(bc, unet.RETAINED)),
                "retained_accuracy_per_object": per_concept([s["concepts"] for s in scored], unet.RETAINED),
                "sibling_accuracy": sibling_block([s["concepts"] for s in scored], bc, erased, unet.RETAINED),
                "attribute_preservation": preservation.preservation_block([s["concepts"] for s in scored], bc,
                                                                          unet.RETAINED, erased),
                "superclass_coherence": coherence([s["concepts"] for s in scored], erased),
                "any_erased_object": (rate_block(any_erased, base_any)
                                      if base_any is not None and all(a is not None for a in any_erased) else None),
                "toy_fid": stats.mean_interval([s["toy_fid"] for s in scored]), "base_toy_fid": base["toy_fid"],
                "seconds_per_concept": float(np.mean([s["seconds_per_concept"] for s in scored])),
                "seconds_per_step": float(np.mean([s["seconds_per_step"] for s in scored])),
                "peak_memory_mb": float(np.mean([s["peak_memory_mb"] for s in scored])),
            })
    out = {"rows": rows, "retained_objects": list(unet.RETAINED)}
    if overhead is not None:
        out["mask_overhead"] = {k: v for k, v in overhead.items()
                                if k not in ("cell_seconds", "cell_cpu_seconds", "torch_threads")}
    return out


def assemble_text_encoder(base: dict, cells: dict, budget: Budget, pipe_scheduler: str) -> dict:
    rows = []
    for (method, scenario), per_seed in cells.items():
        names = list(per_seed[0]["words"].keys())
        row = {"method": method, "scenario": scenario, "erased": names, "seeds": list(budget.training_seeds),
               "anchor": per_seed[0]["anchor"]}
        for metric in ("words", "paraphrase", "learned_token"):
            row[f"residual_{metric}"] = rate_block([_hits(c[metric], names) for c in per_seed], _hits(base[metric], names))
            row[f"residual_{metric}_per_concept"] = per_concept([c[metric] for c in per_seed], names)
        row["retained_accuracy"] = rate_block([_hits(c["retained"], te.RETAINED) for c in per_seed],
                                              _hits(base["retained"], te.RETAINED))
        row["retained_accuracy_per_object"] = per_concept([c["retained"] for c in per_seed], te.RETAINED)
        row["sibling_accuracy"] = sibling_block([c["retained"] for c in per_seed], base["retained"], names, te.RETAINED)
        row["attribute_preservation"] = preservation.preservation_block([c["retained"] for c in per_seed],
                                                                        base["retained"], te.RETAINED, names)
        row["superclass_coherence"] = coherence([c["words"] for c in per_seed], names)
        row["toy_fid"] = stats.mean_interval([c["toy_fid"] for c in per_seed])
        row["base_toy_fid"] = base["toy_fid"]
        row["seconds_per_concept"] = float(np.mean([c["seconds_per_concept"] for c in per_seed]))
        row["sampling"] = {"words, paraphrase, retained": "shared",
                           "learned_token": attack_sampling(budget.robustness.attack, pipe_scheduler,
                                                            images=budget.sampling.images_per_prompt)}
        rows.append(row)
    return {"rows": rows, "retained_objects": list(te.RETAINED)}


def attack_sampling(attack: AttackConfig, scheduler: str, images: int | None = None) -> dict:
    return {"sampler": f"the model's stored scheduler ({scheduler})", "num_inference_steps": attack.sampling_steps,
            "guidance_scale": attack.guidance_scale, "images_per_concept": images or attack.images,
            "why_not_shared": ATTACK_SAMPLING_WHY}


def assemble_robustness(base: dict, cells: dict, budget: Budget, pipe_scheduler: str) -> dict:
    """base[scenario] = the base model's cell; cells[(method, scenario)] = [cell per seed]."""
    cfg = budget.robustness
    rows = []
    for method in cfg.methods:
        for scenario in budget.robustness_scenarios:
            b = base[scenario]
            per_seed = [b] if method == "base" else cells[(method, scenario)]
            names = list(dict(rob.SCENARIOS)[scenario])
            retained = rate_block([_hits(c["retained"], te.RETAINED) for c in per_seed], _hits(b["retained"], te.RETAINED))
            kept = (None if method == "base" else
                    preservation.preservation_block([c["retained"] for c in per_seed], b["retained"], te.RETAINED, names))
            for attack in cfg.attacks:
                rows.append({
                    "method": method, "scenario": scenario, "erased": names, "attack": attack,
                    "seeds": [] if method == "base" else [s for s in rob_seeds(method, budget) if s is not None],
                    "attack_success_rate": rate_block([_hits(c["attacks"][attack], names) for c in per_seed],
                                                      _hits(b["attacks"][attack], names)),
                    "per_concept": per_concept([s["attacks"][attack] for s in per_seed], names),
                    "superclass_coherence": coherence([c["attacks"][attack] for c in per_seed], names),
                    "retained_accuracy": retained,
                    "sibling_accuracy": sibling_block([c["retained"] for c in per_seed], b["retained"], names, te.RETAINED),
                    "attribute_preservation": kept,
                    "train_seconds": float(np.mean([c.get("train_seconds", 0.0) for c in per_seed])),
                    "sampling": {"retained": "shared", "attack": attack_sampling(cfg.attack, pipe_scheduler)},
                })
    return {"rows": rows, "retained_objects": list(te.RETAINED)}


# ------------------------------------------------------------------------------------------ the run

def run_all(runner: Runner, output_dir: str | Path, command: str, log=print) -> dict:
    """Run (or take from the cache) every cell of the runner's budget, then write
    <output_dir>/<benchmark>.json for each benchmark and SUMMARY.md. Returns {"files": [...],
    "counts": {...}, "cells": [...]}."""
    from .summary import write_summary

    budget, provenance = runner.budget, runner.provenance
    model_hash, classifier_hash_ = provenance["model_hash"], provenance["classifier_hash"]
    scheduler = type(runner.pipe.scheduler).__name__
    t0 = time.time()
    results: dict[str, dict] = {}
    if "base_model" in budget.benchmarks:
        results["base_model"] = assemble_base_model(runner.base_model(), budget)
    if "unet" in budget.benchmarks:
        base = runner.unet_base()
        cells = {(m, sc): [runner.unet_cell(m, sc, s) for s in unet_seeds(m, budget)]
                 for m in budget.unet.methods for sc in budget.unet_scenarios}
        overhead = runner.unet_overhead() if budget.unet.measure_overhead else None
        results["unet"] = assemble_unet(base, cells, overhead, budget)
    if "text_encoder" in budget.benchmarks:
        base = runner.te_base()
        cells = {}
        for scenario in runner.te_scenarios():
            for m in te.scenario_methods(scenario[2], scenario[3]):
                if m in budget.te_methods:
                    cells[(m, scenario[0])] = [runner.te_cell(m, scenario, s) for s in budget.training_seeds]
        results["text_encoder"] = assemble_text_encoder(base, cells, budget, scheduler)
    if "robustness" in budget.benchmarks:
        base = {sc: runner.rob_cell("base", sc, None) for sc in budget.robustness_scenarios}
        cells = {(m, sc): [runner.rob_cell(m, sc, s) for s in rob_seeds(m, budget)]
                 for m in budget.robustness.methods if m != "base" for sc in budget.robustness_scenarios}
        results["robustness"] = assemble_robustness(base, cells, budget, scheduler)

    output_dir = Path(output_dir)
    files = []
    header = {"command": command, "produced_by": PRODUCED_BY, "format": FORMAT, "budget": budget.name,
              "model_hash": model_hash, "classifier_hash": classifier_hash_, "code": provenance["code"],
              "sampling": asdict(budget.sampling), "training_seeds": list(budget.training_seeds),
              "interval": "95%: Clopper-Pearson where only images vary (base model, one training seed), else a "
                          "bootstrap over training seeds, then images within seed, at least as wide as the Clopper-Pearson "
                          "interval of all images pooled; deltas are paired differences "
                          "(same prompts and image seeds) with a paired bootstrap",
              "settings": budget.settings()}
    for name, result in results.items():
        path = output_dir / f"{name}.json"
        write_json(path, {**header, "benchmark": name, "eval_seed": EVAL_SEEDS[name],
                          "compute_seconds": runner.compute_seconds(name), **result})
        files.append(path)
    files.append(write_summary(output_dir))
    seconds = time.time() - t0
    log(f"bench all ({budget.name}): {runner.counts['computed']} cells computed, {runner.counts['cached']} from the "
        f"cache, {seconds:.0f}s; wrote {', '.join(str(f) for f in files)}")
    return {"files": [str(f) for f in files], "counts": runner.counts, "cells": runner.cell_seconds, "seconds": seconds}


def write_json(path: str | Path, data: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.chmod(0o644)


#: the parts of a cell's key that say what it was computed on and with
PROVENANCE_KEYS = ("model_hash", "classifier_hash", "code")


def installed_provenance() -> dict:
    """The installed toy model's and classifier's hashes and this code version, as in a cell's key."""
    from .provenance import classifier_hash, code_version, toy_model_hash

    return {"model_hash": toy_model_hash(), "classifier_hash": classifier_hash(), "code": code_version()}


def stale_cells(cache_root: str | Path, provenance: dict) -> list[tuple[Path, str]]:
    """The cells in `cache_root` computed on another model or classifier or by another code version
    (library sources or torch/diffusers/transformers/numpy versions) than `provenance`'s, each with
    what differs. Only files that are cells (a key naming a cell, stored under that key's own file
    name) are listed; anything else in the folder is left out."""
    cache, out = CellCache(cache_root), []
    for path in cache.completed():
        try:
            key = json.loads(path.read_text())["key"]
            if not isinstance(key, dict) or "cell" not in key or cache.path(key) != path:
                continue
        except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            continue
        differs = []
        for k in PROVENANCE_KEYS:
            if k == "code" and isinstance(key.get("code"), dict):
                differs += [f"{name} {key['code'].get(name)} (now {value})" for name, value in provenance["code"].items()
                            if key["code"].get(name) != value]
            elif key.get(k) != provenance[k]:
                differs.append(k)
        if differs:
            out.append((path, ", ".join(differs)))
    return out


def prune_cells(cache_root: str | Path, dry_run: bool = False, log=print) -> list[Path]:
    """Delete the cells in `cache_root` that the installed model and this code version cannot use
    (`stale_cells`); with `dry_run`, only list them. Returns their paths."""
    stale = stale_cells(cache_root, installed_provenance())
    for path, why in stale:
        log(f"{'would remove' if dry_run else 'removed'} {path}: {why}")
        if not dry_run:
            path.unlink(missing_ok=True)
    log(f"{len(stale)} stale cells {'found' if dry_run else 'removed'} in {cache_root}")
    return [path for path, _ in stale]


def bench_all(budget: str | Budget = "full", output_dir: str | Path = "bench/results", cache_dir: str | Path | None = None,
              command: str = "", model: str | Path | None = None, classifier: str | Path | None = None,
              benchmarks: tuple[str, ...] | None = None, unet_methods: tuple[str, ...] | None = None,
              unet_scenarios: tuple[str, ...] | None = None, robustness_methods: tuple[str, ...] | None = None,
              te_scenarios: tuple[str, ...] | None = None, sampling_steps: int | None = None, log=print) -> dict:
    """The whole `bench all` command: load the toy model and classifier, run, write. `benchmarks`,
    `unet_methods`, `unet_scenarios` and `robustness_methods` narrow the budget to some benchmarks,
    some of the UNet benchmark's methods and scenarios and some of the robustness benchmark's
    methods (the base model's rows, the reference of every attack, are always measured).
    `te_scenarios` narrows the text-encoder benchmark to some of its scenarios.
    `sampling_steps` replaces the number of steps of the budget's one sampler (the cells' keys hold
    the sampling configuration, so cells of different step counts never mix)."""
    budget = make_budget(budget) if isinstance(budget, str) else budget
    if sampling_steps is not None:
        if sampling_steps < 1:
            raise ValueError(f"--sampling-steps must be at least 1, got {sampling_steps}")
        # copies of the per-benchmark configs: Budget.__post_init__ writes the sampling into them
        budget = replace(budget, sampling=replace(budget.sampling, num_inference_steps=sampling_steps),
                         unet=copy.deepcopy(budget.unet), text_encoder=copy.deepcopy(budget.text_encoder),
                         robustness=copy.deepcopy(budget.robustness))
    if te_scenarios:
        known = [name for name, _, _, _ in te.benchmark_scenarios(budget.text_encoder)]
        unknown = [s for s in te_scenarios if s not in known]
        if unknown:
            raise ValueError(f"unknown text-encoder scenario {unknown[0]!r}; choose from {', '.join(known)}")
        budget = replace(budget, te_scenarios=tuple(te_scenarios))
    budget = narrow_budget(budget, benchmarks, unet_methods, unet_scenarios, robustness_methods)
    runner = open_runner(budget, cache_dir, model, classifier, log)
    stale = stale_cells(runner.cache.root, runner.provenance)
    if stale:
        # hours of cells can miss silently when, say, a newer transformers was installed
        log(f"bench all: {len(stale)} cells in {runner.cache.root} were computed on another model or by another code "
            f"version and will not be used (first: {stale[0][0].name}: {stale[0][1]}); to use them, install the "
            "versions they name (bench/constraints.txt holds the published run's)")
    return run_all(runner, output_dir, command, log)
