"""The vocabulary of the toy concept world: objects, superclasses, colours, styles and their words.

Every image the renderer draws has exactly one object (which belongs to exactly one superclass),
one colour and one texture style, so every concept has a known ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectClass:
    name: str
    superclass: str
    # Words the training captions use for this object; the first one is the canonical name.
    words: tuple[str, ...]


SUPERCLASS_WORDS: dict[str, tuple[str, ...]] = {
    "polygon": ("polygon", "polygonal shape"),
    "round shape": ("round shape", "rounded shape"),
    "symbol": ("symbol", "icon"),
    "glyph": ("glyph", "sign"),
}

OBJECTS: tuple[ObjectClass, ...] = (
    ObjectClass("triangle", "polygon", ("triangle", "trigon", "three sided figure")),
    ObjectClass("square", "polygon", ("square", "box", "quadrate")),
    ObjectClass("pentagon", "polygon", ("pentagon", "pentagonal figure", "five sided figure")),
    ObjectClass("hexagon", "polygon", ("hexagon", "hexagonal figure", "six sided figure")),
    ObjectClass("circle", "round shape", ("circle", "disc", "disk")),
    ObjectClass("ring", "round shape", ("ring", "donut", "annulus")),
    ObjectClass("crescent", "round shape", ("crescent", "moon", "crescent moon")),
    ObjectClass("semicircle", "round shape", ("semicircle", "half circle", "half disc")),
    ObjectClass("star", "symbol", ("star", "five pointed star", "starburst")),
    ObjectClass("heart", "symbol", ("heart", "love heart", "valentine")),
    ObjectClass("cross", "symbol", ("cross", "plus sign", "plus")),
    ObjectClass("arrow", "symbol", ("arrow", "pointer", "arrowhead")),
    ObjectClass("bolt", "glyph", ("lightning bolt", "bolt", "thunderbolt")),
    ObjectClass("chevron", "glyph", ("chevron", "caret", "v shape")),
    ObjectClass("zigzag", "glyph", ("zigzag", "zig zag line", "sawtooth")),
    ObjectClass("hourglass", "glyph", ("hourglass", "bowtie", "sand glass")),
)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 200, 30),
    "purple": (140, 50, 180),
    "orange": (240, 130, 20),
}

STYLES: tuple[str, ...] = ("solid", "striped", "dotted", "outlined")

OBJECT_NAMES: tuple[str, ...] = tuple(o.name for o in OBJECTS)
SUPERCLASS_NAMES: tuple[str, ...] = tuple(SUPERCLASS_WORDS)
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
OBJECT_BY_NAME: dict[str, ObjectClass] = {o.name: o for o in OBJECTS}


def members_of(superclass: str) -> tuple[str, ...]:
    """Object names that belong to a superclass."""
    check_concept(superclass, kinds=("superclass",))
    return tuple(o.name for o in OBJECTS if o.superclass == superclass)


def concept_kind(name: str) -> str:
    """'object', 'superclass', 'colour' or 'style' for a known concept name."""
    if name in OBJECT_BY_NAME:
        return "object"
    if name in SUPERCLASS_WORDS:
        return "superclass"
    if name in COLOURS:
        return "colour"
    if name in STYLES:
        return "style"
    raise UnknownConceptError(name, ("object", "superclass", "colour", "style"))


class UnknownConceptError(ValueError):
    def __init__(self, name: str, kinds: tuple[str, ...]):
        known = []
        for kind in kinds:
            known.append(f"{kind}s: {', '.join(_NAMES_BY_KIND[kind])}")
        super().__init__(
            f"unknown toy-world concept {name!r}. Known " + "; ".join(known) + "."
        )
        self.name = name


_NAMES_BY_KIND = {
    "object": OBJECT_NAMES,
    "superclass": SUPERCLASS_NAMES,
    "colour": COLOUR_NAMES,
    "style": STYLES,
}


def check_concept(name: str, kinds: tuple[str, ...] = ("object", "superclass", "colour", "style")) -> str:
    """Return `name` if it is a known concept of one of `kinds`, else raise a message listing them."""
    for kind in kinds:
        if name in _NAMES_BY_KIND[kind]:
            return name
    raise UnknownConceptError(name, kinds)


def article(phrase: str) -> str:
    return "an" if phrase[0] in "aeiou" else "a"
