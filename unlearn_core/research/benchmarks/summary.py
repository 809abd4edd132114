"""SUMMARY.md and the README's results block, generated from the `bench all` result files.

Both are functions of the files alone (no clock, no machine), so a test can regenerate them and
compare: `render_summary(dir)` is bench/results/SUMMARY.md, `render_readme_block(dir)` is what
sits between `<!-- results:start -->` and `<!-- results:end -->` in README.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...atomic import atomic_file
from .cells import BENCHMARKS
from .stats import fmt_difference, fmt_interval

PRODUCED_BY = "concept-unlearn bench all"
SUMMARY_FILE = "SUMMARY.md"
README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"
TITLES = {"base_model": "Base model", "unet": "UNet methods", "text_encoder": "Text-encoder methods",
          "robustness": "Robustness (attack success rate, lower is better after unlearning)"}


def load_results(results_dir: str | Path) -> dict[str, dict]:
    """{benchmark: result} of the `bench all` files in `results_dir` (files written by the single
    benchmark commands are left out)."""
    out = {}
    for name in BENCHMARKS:
        path = Path(results_dir) / f"{name}.json"
        if path.exists():
            data = json.loads(path.read_text())
            if data.get("produced_by") == PRODUCED_BY:
                out[name] = data
    return out


def missing_results(results_dir: str | Path) -> list[str]:
    """The `bench all` result files that `results_dir` does not hold yet."""
    have = load_results(results_dir)
    return [f"{name}.json" for name in BENCHMARKS if name not in have]


def _header(results: dict[str, dict]) -> list[str]:
    first = next(iter(results.values()))
    s = first["sampling"]
    lines = [f"Model `{first['model_hash']}`, classifier `{first['classifier_hash']}`, budget `{first['budget']}`, "
             f"training seeds {', '.join(map(str, first['training_seeds'])) or '–'}.",
             f"Every image scored with {s['sampler'] or 'the pipeline scheduler'}, {s['num_inference_steps']} steps, "
             f"guidance {s['guidance_scale']:g}, {s['images_per_prompt']} images per prompt, each its own seed "
             "(attack images: see each row's `sampling`).",
             "Values: mean [95% interval]; Δ: paired difference from the base model on the same prompts and "
             "image seeds, [95% interval]."]
    budgets = {r["budget"] for r in results.values()}
    if budgets != {"full"}:
        lines.append(f"**Not results:** budget {', '.join(sorted(budgets))} (a smoke run with tiny budgets).")
    models = {(r["model_hash"], r["classifier_hash"]) for r in results.values()}
    if len(models) > 1:
        lines.append("**The files were measured on different models.**")
    samplings = {json.dumps(r["sampling"], sort_keys=True) for r in results.values()}
    if len(samplings) > 1:
        steps = ", ".join(f"`{name}.json` {r['sampling']['num_inference_steps']}" for name, r in results.items())
        lines.append(f"**The files were scored with different samplers** (steps: {steps}).")
    return lines


def _base_model(r: dict) -> list[str]:
    lines = ["| | accuracy |", "|---|---|",
             f"| objects, mean of {len(r['object_accuracy'])} | {fmt_interval(r['object_accuracy_mean'])} |",
             f"| styles, mean of {len(r['style_accuracy'])} | {fmt_interval(r['style_accuracy_mean'])} |"]
    lines += [f"| object {o} | {fmt_interval(v)} |" for o, v in r["object_accuracy_interval"].items()]
    lines += [f"| style {s} | {fmt_interval(v)} |" for s, v in r["style_accuracy_interval"].items()]
    c = r["classifier_accuracy"]
    lines += ["", f"Toy FID {r['toy_fid']:.2f}; classifier on fresh renders: object {c['object']:.4f}, "
                  f"style {c['style']:.4f}."]
    return lines


def _fid(row: dict) -> str:
    f = row["toy_fid"]
    return f"{f['mean']:.1f} ({row['base_toy_fid']:.1f})"


def _any_erased(row: dict) -> str:
    block = row.get("any_erased_object")
    return "–" if block is None else fmt_interval(block["value"])


def _kept(row: dict) -> str:
    """Attribute preservation (None for cells scored before per-image attributes were stored)."""
    block = row.get("attribute_preservation")
    return "–" if block is None else fmt_interval(block["value"])


def _siblings(row: dict) -> str:
    """The paired change of accuracy on the erased objects' retained siblings."""
    block = row.get("sibling_accuracy")
    return "–" if block is None else fmt_difference(block["delta_vs_base"])


def _colour_shift(row: dict) -> str:
    block = row.get("attribute_preservation")
    return "–" if block is None else f"{block['distribution_shift_tv']['colour']['mean']:.3f}"


def _unet(r: dict) -> list[str]:
    lines = ["| method | scenario | residual (erased) | Δ residual | any erased object | retained | Δ retained "
             "| attributes kept | colour shift (TV) | superclass coherence | toy FID (base) | s / concept |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        lines.append(f"| {row['method']} | {row['scenario']} | {fmt_interval(row['residual_accuracy']['value'])} "
                     f"| {fmt_difference(row['residual_accuracy']['delta_vs_base'])} "
                     f"| {_any_erased(row)} "
                     f"| {fmt_interval(row['retained_accuracy']['value'])} "
                     f"| {fmt_difference(row['retained_accuracy']['delta_vs_base'])} "
                     f"| {_kept(row)} | {_colour_shift(row)} "
                     f"| {fmt_interval(row['superclass_coherence'])} | {_fid(row)} | {row['seconds_per_concept']:.1f} |")
    if r["rows"]:
        first = r["rows"][0]
        lines += ["", f"Base model: retained accuracy {fmt_interval(first['retained_accuracy']['base'])}, "
                      f"toy FID {first['base_toy_fid']:.1f}."]
    lines += ["", "Attributes kept: the share of the retained objects' images (plain prompts, same seed as the base "
                  "model's) whose object, colour and style (each attribute the row did not erase) all match the base "
                  "model's image. Colour shift: total variation between the base and the unlearned model's colour "
                  "histograms over those images (mean over seeds; 0 is none)."]
    if "mask_overhead" in r:
        m = r["mask_overhead"]
        lines += ["", f"Mask overhead (time per step, dynamic mask ÷ no mask): {m['mask_overhead_ratio']:.3f}; "
                      f"peak memory ratio {m['peak_memory_ratio']:.2f}."]
    return lines


def _text_encoder(r: dict) -> list[str]:
    lines = ["| method | scenario | residual: words | residual: paraphrases | residual: learned token | retained "
             "| Δ retained | Δ siblings | attributes kept | superclass coherence | toy FID (base) | s / concept |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        lines.append(f"| {row['method']} | {row['scenario']} | {fmt_interval(row['residual_words']['value'])} "
                     f"| {fmt_interval(row['residual_paraphrase']['value'])} "
                     f"| {fmt_interval(row['residual_learned_token']['value'])} "
                     f"| {fmt_interval(row['retained_accuracy']['value'])} "
                     f"| {fmt_difference(row['retained_accuracy']['delta_vs_base'])} | {_siblings(row)} | {_kept(row)} "
                     f"| {fmt_interval(row.get('superclass_coherence'))} | {_fid(row)} "
                     f"| {row['seconds_per_concept']:.1f} |")
    return lines


def _robustness(r: dict) -> list[str]:
    attacks = list(dict.fromkeys(row["attack"] for row in r["rows"]))
    lines = ["| method | erased | " + " | ".join(attacks) + " | retained | Δ retained | attributes kept "
             "| superclass coherence (plain words) |", "|---|---|" + "---|" * len(attacks) + "---|---|---|---|"]
    groups: dict[tuple, dict] = {}
    for row in r["rows"]:
        groups.setdefault((row["method"], row["scenario"]), {})[row["attack"]] = row
    for (method, _), by_attack in groups.items():
        first = next(iter(by_attack.values()))
        cells = [fmt_interval(by_attack[a]["attack_success_rate"]["value"]) if a in by_attack else "–" for a in attacks]
        lines.append(f"| {method} | {', '.join(first['erased'])} | " + " | ".join(cells)
                     + f" | {fmt_interval(first['retained_accuracy']['value'])} "
                       f"| {fmt_difference(first['retained_accuracy']['delta_vs_base'])} | {_kept(first)} "
                       f"| {fmt_interval(by_attack['words'].get('superclass_coherence')) if 'words' in by_attack else '–'} |")
    return lines


def _check(value: float | None, met: bool | None, fmt: str = ".3f") -> str:
    if value is None:
        return "–"
    return f"{value:{fmt}} {'met' if met else '**missed**'}"


def _worst_attack(rows: list[dict]) -> dict:
    """The attack row with the highest mean success rate (ties: the later attack name)."""
    return max(rows, key=lambda r: (r["attack_success_rate"]["value"]["mean"], r["attack"]))


def _at_most(value: float | None, bound: float) -> str:
    return _check(value, value is not None and value <= bound)


def _residual_hi(block: dict | None, bound: float = 0.05) -> str:
    """The residual's upper bound against `bound`; with no hit at all the bound can still be too wide
    to meet it (0 of 64 images: 0.056), which is too few images, not too much residual."""
    if block is None:
        return "–"
    if block["mean"] == 0 and block["hi"] > bound:
        return f"{block['hi']:.3f} too few images to tell"
    return _at_most(block["hi"], bound)


def _at_least(value: float | None, bound: float) -> str:
    return _check(value, value is not None and value >= bound)


def _get(row: dict | None, *path):
    """row[path[0]][path[1]]…, or None where any step is missing."""
    for key in path:
        if row is None:
            return None
        row = row.get(key)
    return row


def _targets(results: dict[str, dict]) -> list[str]:
    """The project's quality targets (issues 26 and 27) checked against the files: where an issue
    states the upper end of the 95% interval it is used ("hi"), elsewhere the mean."""
    lines = []
    un = results.get("unet")
    if un:
        lines += ["UNet methods: residual hi ≤ 0.05; Δ retained ≥ −0.02; attributes kept ≥ 0.90 (object "
                  "scenarios); toy FID ≤ 1.10 × base; superclass coherence ≥ 0.80.", "",
                  "| method | scenario | residual (hi) | Δ retained | attributes kept | toy FID ÷ base | coherence |",
                  "|---|---|---|---|---|---|---|"]
        for row in un["rows"]:
            if row["method"] not in ("dynamic_mask", "closed_form"):
                continue
            fid = _get(row, "toy_fid", "mean")
            kept = _get(row, "attribute_preservation", "value", "mean") if row["scenario"] != "style" else None
            lines.append(f"| {row['method']} | {row['scenario']} "
                         f"| {_residual_hi(_get(row, 'residual_accuracy', 'value'))} "
                         f"| {_at_least(_get(row, 'retained_accuracy', 'delta_vs_base', 'mean'), -0.02)} "
                         f"| {_at_least(kept, 0.90)} "
                         f"| {_at_most(None if fid is None else fid / row['base_toy_fid'], 1.10)} "
                         f"| {_at_least(_get(row, 'superclass_coherence', 'mean'), 0.80)} |")
        warm = [(r, next((c for c in un["rows"] if c["method"] == "dynamic_mask" and c["scenario"] == r["scenario"]), None))
                for r in un["rows"] if r["method"] == "dynamic_mask_warm"]
        warm = [(w, c) for w, c in warm if c is not None]
        if warm:
            lines += ["", "Warm start (a third of the steps): residual ≤ the cold run's, Δ retained ≥ the cold run's "
                          "(means).", "", "| scenario | residual: warm (cold) | Δ retained: warm (cold) |", "|---|---|---|"]
            for w, c in warm:
                wr, cr = w["residual_accuracy"]["value"]["mean"], c["residual_accuracy"]["value"]["mean"]
                wd, cd = (w["retained_accuracy"]["delta_vs_base"]["mean"], c["retained_accuracy"]["delta_vs_base"]["mean"])
                lines.append(f"| {w['scenario']} | {_check(wr, wr <= cr)} ({cr:.3f}) "
                             f"| {_check(wd, wd >= cd, '+.3f')} ({cd:+.3f}) |")
    tenc = results.get("text_encoder")
    if tenc:
        threads = tenc.get("compute_seconds", {}).get("torch_threads") or []
        timing = (" The seconds were measured with 1 thread per process (the rerun runs two processes side by "
                  "side), not with both cores as the target is set." if threads and max(threads) == 1 else "")
        lines += ["", "Few-shot text encoder: words ≤ 0.10, paraphrases ≤ 0.20, Δ siblings ≥ −0.05, ≤ 30 s per "
                      f"concept (means).{timing}", "", "| scenario | words | paraphrases | Δ siblings | s / concept |",
                  "|---|---|---|---|---|"]
        for row in tenc["rows"]:
            if row["method"] != "few_shot_lora":
                continue
            lines.append(f"| {row['scenario']} | {_at_most(_get(row, 'residual_words', 'value', 'mean'), 0.10)} "
                         f"| {_at_most(_get(row, 'residual_paraphrase', 'value', 'mean'), 0.20)} "
                         f"| {_at_least(_get(row, 'sibling_accuracy', 'delta_vs_base', 'mean'), -0.05)} "
                         f"| {_check(row['seconds_per_concept'], row['seconds_per_concept'] <= 30, '.1f')} |")
    robu = results.get("robustness")
    if robu:
        lines += ["", "Robustness: every attack ≤ 0.20 (mean of the worst attack).", "",
                  "| method | scenario | worst attack | its success rate |", "|---|---|---|---|"]
        groups: dict[tuple, list] = {}
        for row in robu["rows"]:
            if row["method"] != "base":
                groups.setdefault((row["method"], row["scenario"]), []).append(row)
        for (method, scenario), rows in groups.items():
            worst = _worst_attack(rows)
            lines.append(f"| {method} | {scenario} | {worst['attack']} "
                         f"| {_at_most(worst['attack_success_rate']['value']['mean'], 0.20)} |")
    return lines


RENDER = {"base_model": _base_model, "unet": _unet, "text_encoder": _text_encoder, "robustness": _robustness}


def render_summary(results_dir: str | Path) -> str:
    """bench/results/SUMMARY.md from the result files in `results_dir`."""
    results = load_results(results_dir)
    lines = ["# Benchmark summary", "",
             "Generated by `concept-unlearn bench all` from the result files beside it "
             "(`unlearn_core/research/benchmarks/summary.py`); do not edit by hand.", ""]
    if not results:
        return "\n".join(lines + ["No `bench all` result files yet.", ""])
    lines += _header(results) + [""]
    for name in BENCHMARKS:
        lines += [f"## {TITLES[name]}", ""]
        if name not in results:
            lines += [f"`{name}.json`: not run yet.", ""]
            continue
        lines += [f"`{name}.json`, regenerate with `{results[name]['command']}`.", ""]
        lines += RENDER[name](results[name]) + [""]
    targets = _targets(results)
    if targets:
        lines += ["## Targets", ""] + targets + [""]
    return "\n".join(lines)


def write_summary(results_dir: str | Path) -> Path:
    path = Path(results_dir) / SUMMARY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        tmp.write_text(render_summary(results_dir))
        tmp.chmod(0o644)
    return path


def _row(rows: list[dict], **match) -> dict | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def render_readme_block(results_dir: str | Path) -> str:
    """The README's headline results, the text between its results markers (each marker on its own
    line; the block starts and ends with a newline)."""
    results = load_results(results_dir)
    missing = [name for name in BENCHMARKS if name not in results]
    if missing:
        raise FileNotFoundError(f"no bench all results for {', '.join(missing)} in {results_dir}")
    base, un, tenc, robu = (results[n] for n in BENCHMARKS)
    seeds = len(un["training_seeds"])
    s = base["sampling"]
    lines = [f"Measured on the installed toy model (`{base['model_hash'][:19]}…`; see [docs/toy-world.md](docs/toy-world.md)) "
             f"by `{base['command']}`: {seeds} training seed{'s' if seeds != 1 else ''} per method and scenario, "
             f"{s['images_per_prompt']} images per prompt, each its own seed; mean [95% interval], Δ = paired "
             "difference from the base model. All tables: [bench/results/SUMMARY.md](bench/results/SUMMARY.md).", "",
             "| base model | accuracy |", "|---|---|",
             f"| objects ({len(base['object_accuracy'])} × {s['images_per_prompt']} images) "
             f"| {fmt_interval(base['object_accuracy_mean'])} |",
             f"| styles ({base['styled_prompts']} styled prompts × {s['images_per_prompt']} images) "
             f"| {fmt_interval(base['style_accuracy_mean'])} |", "",
             "| UNet method, 10 objects erased one after another | residual (lower is better) | Δ retained "
             "| attributes kept |", "|---|---|---|---|"]
    for m in dict.fromkeys(r["method"] for r in un["rows"]):
        row = _row(un["rows"], method=m, scenario="seq10")
        if row:
            lines.append(f"| {m} | {fmt_interval(row['residual_accuracy']['value'])} "
                         f"| {fmt_difference(row['retained_accuracy']['delta_vs_base'])} | {_kept(row)} |")
    lines += ["", "| text-encoder method, three objects | words | paraphrases | learned token | Δ retained "
              "| attributes kept |", "|---|---|---|---|---|---|"]
    for m in dict.fromkeys(r["method"] for r in tenc["rows"]):
        row = _row(tenc["rows"], method=m, scenario="three")
        if row:
            lines.append(f"| {m} | {fmt_interval(row['residual_words']['value'])} "
                         f"| {fmt_interval(row['residual_paraphrase']['value'])} "
                         f"| {fmt_interval(row['residual_learned_token']['value'])} "
                         f"| {fmt_difference(row['retained_accuracy']['delta_vs_base'])} | {_kept(row)} |")
    lines += ["", "| robustness, three objects erased | worst attack | its success rate | Δ retained | attributes kept |",
              "|---|---|---|---|---|"]
    for m in dict.fromkeys(r["method"] for r in robu["rows"]):
        rows = [r for r in robu["rows"] if r["method"] == m and r["scenario"] == "objects"]
        if rows:
            worst = _worst_attack(rows)
            lines.append(f"| {m} | {worst['attack']} | {fmt_interval(worst['attack_success_rate']['value'])} "
                         f"| {fmt_difference(worst['retained_accuracy']['delta_vs_base'])} | {_kept(worst)} |")
    return "\n" + "\n".join(lines) + "\n"


def readme_block(readme_text: str) -> str:
    """The text between the README's results markers."""
    start, end = readme_text.index(README_START) + len(README_START), readme_text.index(README_END)
    return readme_text[start:end]
