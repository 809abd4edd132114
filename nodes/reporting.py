"""Pure helpers of the nodes (no ComfyUI imports): text reports, the statistics plot, metadata
(concept-name hashing is the library's, `unlearn_core.metadata`), the arithmetic of weight
comparisons.

Kept free of `comfy` so the default test suite covers them without a ComfyUI checkout.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from ..unlearn_core.metadata import new_key, redact_concept_names


def redact_history(history: list[dict], hash_names: bool, key: bytes | None = None) -> list[dict]:
    """The unlearning history (one metadata dict per run) with concept names replaced by keyed
    hashes if asked: the library's `redact_concept_names`, one key (random unless given, never
    stored) for the whole history, so a name has one hash in the file.

    Superclasses stay readable (they are what the concepts turned into); retain prompts are
    dropped when hashing, since they often name related people or styles."""
    if not hash_names:
        return history
    key = new_key() if key is None else key
    return [redact_concept_names(entry, key) for entry in history]


def weight_differences(wa: Mapping, wb: Mapping) -> dict:
    """Compare two {key: weight tensor} maps (Compare Model Weights): {'compared': keys in either,
    'changed': {key: max |a - b|} for every key whose tensors differ at all, 'only_in_one': keys in
    one map only, 'max_abs_diff': the largest difference (0.0 when none)}.

    Any difference counts (no threshold), computed in float64 whatever the tensors' dtypes, so a
    difference far below fp16 resolution (e.g. 3.5e-5 on weights of magnitude 1) is reported
    exactly; a shape mismatch counts as an infinite difference; NaN in one tensor where the other
    has a number counts as infinite, NaN in both as equal."""
    changed: dict[str, float] = {}
    for key in sorted(set(wa) & set(wb)):
        a, b = wa[key].detach(), wb[key].detach()
        if a.shape != b.shape:
            changed[key] = float("inf")
            continue
        if a.numel() == 0:
            continue
        d = (a.double() - b.double()).abs()
        d = d.masked_fill(a.isnan() & b.isnan(), 0.0).nan_to_num(nan=float("inf"))
        diff = float(d.max())
        if diff > 0:
            changed[key] = diff
    return {"compared": len(set(wa) | set(wb)), "changed": changed, "only_in_one": sorted(set(wa) ^ set(wb)),
            "max_abs_diff": max(changed.values(), default=0.0)}


def _fmt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def unet_report(result, target_names: list[str], deltas: dict) -> str:
    """Human-readable summary of an `UnlearnResult`."""
    lines = ["Dynamic-mask concept unlearning (Sculpting Memory)"]
    for c in result.concepts:
        lines.append(f"  erased: {c['name']!r} -> {c['superclass']!r}")
    if result.retain_prompts:
        lines.append(f"  retained prompts: {len(result.retain_prompts)}")
    cfg = result.config
    lines.append(f"  target: {cfg['target']} ({len(target_names)} weight matrices), mode: {cfg['mode']}, "
                 f"loss: {cfg['loss']['kind']}, mask: {cfg['mask']['kind']} (density {cfg['mask']['density']})")
    lines.append(f"  steps: {result.train_steps} training + warm-up, lr {cfg['lr']}, batch {cfg['batch_size']}, "
                 f"seed {cfg['seed']}")
    if cfg.get("adversarial_interval"):
        lines.append(f"  adversarial training: a soft prompt re-optimised every {cfg['adversarial_interval']} steps "
                     f"({cfg['adversarial_steps']} attacker steps each)")
    lines.append(f"  time: {result.seconds:.1f} s ({result.seconds_data:.1f} s generating training images, "
                 f"{_fmt(result.seconds_per_step)} s per training step)")
    train = [s for s in result.stats if s["phase"] == "train"]
    if train:
        first, last = train[0], train[-1]
        lines.append(f"  loss: {_fmt(first['loss'])} at the first step, {_fmt(last['loss'])} at the last")
        for key in sorted(k for k in last if k.endswith("_loss")):
            lines.append(f"    {key}: {_fmt(last[key])}")
        lines.append(f"  mask density at the end: {_fmt(last['density'])}")
    norms = sorted(((float(d.float().norm()), n) for n, d in deltas.items()), reverse=True)
    changed = sum(1 for v, _ in norms if v > 0)
    lines.append(f"  changed weight matrices: {changed} of {len(norms)}; largest edits:")
    for v, n in norms[:5]:
        lines.append(f"    {n}: |delta| = {v:.3g}")
    for note in result.notes:
        lines.append(f"  note: {note}")
    lines.append(f"  base model hash (target weights): {result.base_model_hash}")
    return "\n".join(lines)


# ---- plot -------------------------------------------------------------------------------------
_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]


def plot_stats(stats: list[dict], width: int = 640, height: int = 400) -> np.ndarray:
    """A small two-panel line plot (loss terms on top, mask density/turnover below) as HxWx3 uint8."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    panels = [
        ("loss (log10)", [k for k in ("loss", "concept_loss", "alignment_loss", "distillation_loss", "warmup_loss",
                                      "forget_loss", "ti_loss", "preserve_loss") if any(k in s for s in stats)], True),
        ("mask density / turnover", [k for k in ("density", "turnover") if any(k in s for s in stats)], False),
    ]
    margin_l, margin_r, top = 60, 10, 8
    panel_h = (height - 2 * top) // len(panels)
    n = max(1, len(stats) - 1)
    for p, (title, keys, log) in enumerate(panels):
        y0 = top + p * panel_h
        x0, x1, y1 = margin_l, width - margin_r, y0 + panel_h - 24
        draw.rectangle([x0, y0 + 14, x1, y1], outline=(0, 0, 0))
        draw.text((x0, y0), title, fill=(0, 0, 0))
        series = {}
        for k in keys:
            pts = [(i, s[k]) for i, s in enumerate(stats) if k in s and s[k] is not None]
            if log:
                pts = [(i, math.log10(v)) for i, v in pts if v > 0]
            pts = [(i, v) for i, v in pts if math.isfinite(v)]
            if pts:
                series[k] = pts
        values = [v for pts in series.values() for _, v in pts]
        if not values:
            draw.text((x0 + 10, y0 + 30), "no data", fill=(0, 0, 0))
            continue
        lo, hi = min(values), max(values)
        if hi - lo < 1e-12:
            lo, hi = lo - 0.5, hi + 0.5
        draw.text((4, y0 + 14), _fmt(hi), fill=(80, 80, 80))
        draw.text((4, y1 - 10), _fmt(lo), fill=(80, 80, 80))

        def to_xy(i, v):
            return (x0 + (x1 - x0) * i / n, y1 - (y1 - (y0 + 14)) * (v - lo) / (hi - lo))

        for c, (k, pts) in enumerate(series.items()):
            colour = _COLOURS[c % len(_COLOURS)]
            xy = [to_xy(i, v) for i, v in pts]
            if len(xy) == 1:
                draw.ellipse([xy[0][0] - 2, xy[0][1] - 2, xy[0][0] + 2, xy[0][1] + 2], fill=colour)
            else:
                draw.line(xy, fill=colour, width=2)
            draw.text((x0 + 6 + 110 * c, y1 + 4), k, fill=colour)
    return np.asarray(img)
