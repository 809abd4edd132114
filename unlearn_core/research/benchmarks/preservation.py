"""Attribute preservation: does a retained prompt still draw what the base model drew?

Retained accuracy counts only the object. A run can keep every retained object's shape and still
repaint it (a blue ring turned yellow, an outlined star filled in): the user sees damage that
retained accuracy does not. Image i of a prompt is drawn from the same seed in the base model and
in the unlearned one (`cells.Scorer`), so the two images can be compared attribute by attribute:

- **attribute preservation**: the fraction of retained images whose object, colour and style —
  each attribute the row did not erase — all match the base model's image of the same seed (and
  the same fraction per attribute);
- **distribution shift**: the total variation distance between the base model's and the unlearned
  model's histograms of an attribute over the retained images (prompts that name no colour and no
  style, so any shift is collateral).

The attributes are the toy classifier's labels (`toyworld.classifier.predict`).
"""

from __future__ import annotations

from collections import Counter

from ..toyworld.concepts import concept_kind
from . import stats

ATTRIBUTES = ("object", "colour", "style")
#: the per-image label lists a scored concept entry holds, by attribute (`cells.Scorer.score`)
ENTRY_KEYS = {"object": "objects", "colour": "colours", "style": "styles"}


def compared_attributes(erased) -> tuple[str, ...]:
    """The attributes a row must leave as they were on a retained object's image: its object always
    (the prompt names it, and another object was erased), its colour unless the row erased a colour,
    its style unless the row erased a style."""
    erased_kinds = {concept_kind(c) for c in erased}
    return tuple(a for a in ATTRIBUTES if a == "object" or a not in erased_kinds)


def _labels(entries: dict, concepts, attribute: str) -> list[str] | None:
    key = ENTRY_KEYS[attribute]
    if not all(key in entries[c] for c in concepts):
        return None  # a cell scored before the per-image attributes were stored
    return [label for c in concepts for label in entries[c][key]]


def matches(entries: dict, base_entries: dict, concepts, attributes) -> dict[str, list[int]] | None:
    """Per image of `concepts`' prompts, 1 where the attribute matches the base model's image of the
    same seed: {"all": ..., attribute: ...}. None when either side lacks the per-image labels."""
    out: dict[str, list[int]] = {}
    for attribute in attributes:
        mine, base = _labels(entries, concepts, attribute), _labels(base_entries, concepts, attribute)
        if mine is None or base is None:
            return None
        if len(mine) != len(base):
            raise ValueError(f"{attribute}: {len(mine)} images against the base model's {len(base)}; "
                             "attribute preservation compares images of the same seeds")
        out[attribute] = [int(m == b) for m, b in zip(mine, base)]
    out["all"] = [int(all(v)) for v in zip(*(out[a] for a in attributes))]
    return out


def total_variation(a: list[str], b: list[str]) -> float:
    """Total variation distance between the label histograms of `a` and `b` (0: same histogram,
    1: disjoint)."""
    if not a or not b:
        raise ValueError("total_variation needs labels on both sides")
    ca, cb = Counter(a), Counter(b)
    # sorted: a set's order changes with the process's string hashing, and so would the float sum
    return 0.5 * sum(abs(ca[k] / len(a) - cb[k] / len(b)) for k in sorted(set(ca) | set(cb)))


def preservation_block(per_seed_entries: list[dict], base_entries: dict, concepts, erased) -> dict | None:
    """The attribute-preservation figures of one row: `per_seed_entries` holds one scored
    {concept: entry} dict per training seed, `base_entries` the base model's on the same prompts
    and image seeds. None for cells without per-image attributes."""
    attributes = compared_attributes(erased)
    per_seed = [matches(e, base_entries, concepts, attributes) for e in per_seed_entries]
    if any(m is None for m in per_seed):
        return None
    shift = {}
    for attribute in ATTRIBUTES:
        base = _labels(base_entries, concepts, attribute)
        shift[attribute] = stats.mean_interval([total_variation(_labels(e, concepts, attribute), base)
                                                for e in per_seed_entries])
    return {
        "attributes": list(attributes),
        "value": stats.rate_interval([m["all"] for m in per_seed]),
        "per_attribute": {a: stats.rate_interval([m[a] for m in per_seed]) for a in attributes},
        "distribution_shift_tv": shift,
        "prompts": f"the retained objects' plain prompts ({', '.join(concepts)}): they name no colour and no style",
    }
