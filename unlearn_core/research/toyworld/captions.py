"""Caption grammar of the toy world.

Training captions name the object (or its superclass), and optionally its colour and style, with
a handful of sentence templates and a few synonyms per object. A separate set of *held-out*
paraphrase templates is never used in training: they combine known words in unseen sentences,
which is what a user rewording a prompt does (robustness checks use them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .concepts import OBJECT_BY_NAME, SUPERCLASS_WORDS, article
from .render import Scene

# {thing} is an object or superclass phrase (without article), {a} its article.
_TRAIN_TEMPLATES_PLAIN = (
    "{a} {thing}",
    "a photo of {a} {thing}",
    "a drawing of {a} {thing}",
    "{thing}",
    "a picture of {a} {thing}",
)
_TRAIN_TEMPLATES_COLOUR = (
    "{ca} {colour} {thing}",
    "a photo of {ca} {colour} {thing}",
    "{a} {thing} in {colour}",
)
_TRAIN_TEMPLATES_STYLE = (
    "{a} {thing} in {style} style",
    "{sa} {style} {thing}",
    "a drawing of {a} {thing} in {style} style",
)
_TRAIN_TEMPLATES_BOTH = (
    "{ca} {colour} {thing} in {style} style",
    "{sa} {style} {colour} {thing}",
    "a photo of {ca} {colour} {thing} in {style} style",
)

# Never used for training.
HELD_OUT_TEMPLATES = (
    "an image depicting {a} {thing}",
    "there is {a} {thing} here",
    "{a} {thing}, drawn simply",
    "one {thing} on a plain background",
    "a small picture with {a} {thing} in it",
    "the {thing}",
)

CAPTION_DROPOUT = 0.1


def fill_template(template: str, thing: str, colour: str | None = None, style: str | None = None) -> str:
    colour_phrase = f"{colour} {thing}" if colour else thing
    return template.format(
        a=article(thing), thing=thing, colour=colour, style=style,
        ca=article(colour_phrase) if colour else "", sa=article(style) if style else "",
    ).strip()


@dataclass(frozen=True)
class CaptionLabels:
    """What a training caption says about its scene; None where the caption does not say it."""

    object: str | None
    superclass: str | None
    colour: str | None
    style: str | None


def training_caption_and_labels(scene: Scene, rng: np.random.Generator) -> tuple[str, CaptionLabels]:
    """A random training caption that is true of the scene (or '' for caption dropout), with the
    labels it mentions (the text encoder's pre-training objective predicts them)."""
    if rng.random() < CAPTION_DROPOUT:
        return "", CaptionLabels(None, None, None, None)
    obj = OBJECT_BY_NAME[scene.object]
    superclass_only = rng.random() < 0.15
    words = SUPERCLASS_WORDS[obj.superclass] if superclass_only else obj.words
    # Canonical word half of the time, a synonym otherwise.
    thing = words[0] if rng.random() < 0.5 else words[rng.integers(len(words))]
    with_colour = rng.random() < 0.5
    with_style = rng.random() < 0.5
    if with_colour and with_style:
        templates = _TRAIN_TEMPLATES_BOTH
    elif with_colour:
        templates = _TRAIN_TEMPLATES_COLOUR
    elif with_style:
        templates = _TRAIN_TEMPLATES_STYLE
    else:
        templates = _TRAIN_TEMPLATES_PLAIN
    template = templates[rng.integers(len(templates))]
    colour = scene.colour if with_colour else None
    style = scene.style if with_style else None
    labels = CaptionLabels(None if superclass_only else obj.name, obj.superclass, colour, style)
    return fill_template(template, thing, colour, style), labels


def training_caption(scene: Scene, rng: np.random.Generator) -> str:
    """A random training caption that is true of the scene (or '' for caption dropout)."""
    return training_caption_and_labels(scene, rng)[0]


def object_prompt(name: str) -> str:
    """The evaluation prompt for an object or superclass: 'a <name>'."""
    thing = OBJECT_BY_NAME[name].words[0] if name in OBJECT_BY_NAME else SUPERCLASS_WORDS[name][0]
    return fill_template("{a} {thing}", thing)


def styled_prompt(name: str, style: str) -> str:
    thing = OBJECT_BY_NAME[name].words[0]
    return fill_template("{a} {thing} in {style} style", thing, style=style)


def held_out_paraphrases(name: str) -> list[str]:
    """Prompts for an object that no training caption has: held-out templates x all its words."""
    words = OBJECT_BY_NAME[name].words if name in OBJECT_BY_NAME else SUPERCLASS_WORDS[name]
    return [fill_template(t, w) for t in HELD_OUT_TEMPLATES for w in words]


def style_paraphrases(style: str, things: list[str]) -> list[str]:
    """Held-out phrasings of a style on given objects."""
    out = []
    for name in things:
        thing = OBJECT_BY_NAME[name].words[0]
        out += [f"an image depicting {article(thing)} {thing} with a {style} look",
                f"{article(style)} {style} drawing of {article(thing)} {thing}"]
    return out


def all_caption_words() -> set[str]:
    """Every word the tokenizer must know as a single token."""
    from .concepts import COLOURS, STYLES, OBJECTS

    words: set[str] = set()
    templates = (_TRAIN_TEMPLATES_PLAIN + _TRAIN_TEMPLATES_COLOUR + _TRAIN_TEMPLATES_STYLE
                 + _TRAIN_TEMPLATES_BOTH + HELD_OUT_TEMPLATES)
    for t in templates:
        for tok in t.replace(",", " ").split():
            if not tok.startswith("{"):
                words.add(tok)
    for o in OBJECTS:
        for w in o.words:
            words.update(w.split())
    for ws in SUPERCLASS_WORDS.values():
        for w in ws:
            words.update(w.split())
    words.update(COLOURS)
    words.update(STYLES)
    words.update({"a", "an", "with", "look", "next", "to", "and", "of", "in", "style", "drawing", "the"})
    return words
