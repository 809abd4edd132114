"""Procedural renderer of the toy world: one textured, coloured object on a neutral background.

Shapes are polygons in unit coordinates (radius about 1) that get rotated, scaled and placed;
they are drawn at 4x resolution and box-filtered down, so edges are anti-aliased.
Everything is a pure function of a `Scene`, and scenes are drawn from a seeded generator, so a
seed fully determines an image and its labels.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, asdict

import numpy as np
from PIL import Image, ImageDraw

from .concepts import COLOURS, COLOUR_NAMES, OBJECT_BY_NAME, OBJECT_NAMES, STYLES

IMAGE_SIZE = 32
# Objects are drawn upright give or take this many degrees: a full turn makes the shapes much
# harder for a model of this size to learn (and a rotated chevron reads as an arrow).
MAX_ROTATION = 30.0
_SUPERSAMPLE = 4


@dataclass(frozen=True)
class Scene:
    object: str
    colour: str
    style: str
    cx: float  # centre, in pixels of the output image
    cy: float
    radius: float  # in pixels of the output image
    angle: float  # degrees
    background: tuple[float, float, float]  # RGB in [0, 1], low saturation
    gradient: float  # vertical brightness gradient of the background
    texture_angle: float  # degrees, orientation of stripes

    @property
    def superclass(self) -> str:
        return OBJECT_BY_NAME[self.object].superclass

    def labels(self) -> dict[str, str]:
        return {"object": self.object, "superclass": self.superclass, "colour": self.colour, "style": self.style}

    def to_dict(self) -> dict:
        return asdict(self)


def _circle(n: int = 48, r: float = 1.0, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    a = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], 1)


def _regular(n: int, r: float = 1.0, phase: float = -math.pi / 2) -> np.ndarray:
    a = phase + np.arange(n) * 2 * math.pi / n
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


def _star() -> np.ndarray:
    outer = _regular(5, 1.0)
    inner = _regular(5, 0.42, phase=-math.pi / 2 + math.pi / 5)
    return np.stack([outer, inner], 1).reshape(-1, 2)


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, 64, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y + 2.5], 1) / 16.5
    return pts


def _semicircle() -> np.ndarray:
    a = np.linspace(math.pi, 2 * math.pi, 32)
    arc = np.stack([np.cos(a), np.sin(a)], 1)
    return (arc + np.array([0.0, 0.45])) * 1.05


# Each shape is (filled polygons, hole polygons) in unit coordinates, y pointing down.
_SHAPES: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {
    "triangle": ([_regular(3, 1.05, -math.pi / 2) + [0, 0.2]], []),
    "square": ([_regular(4, 1.0, math.pi / 4)], []),
    "pentagon": ([_regular(5, 1.0)], []),
    "hexagon": ([_regular(6, 1.0, 0.0)], []),
    "circle": ([_circle(r=0.9)], []),
    "ring": ([_circle(r=1.0)], [_circle(r=0.5)]),
    "crescent": ([_circle(r=1.0)], [_circle(r=0.85, cx=0.5, cy=-0.15)]),
    "semicircle": ([_semicircle()], []),
    "star": ([_star()], []),
    "heart": ([_heart()], []),
    "cross": ([np.array([[-.3, -1], [.3, -1], [.3, -.3], [1, -.3], [1, .3], [.3, .3], [.3, 1], [-.3, 1],
                         [-.3, .3], [-1, .3], [-1, -.3], [-.3, -.3]])], []),
    "arrow": ([np.array([[-1, -.25], [.1, -.25], [.1, -.7], [1, 0], [.1, .7], [.1, .25], [-1, .25]])], []),
    "bolt": ([np.array([[.2, -1], [-.65, .2], [-.1, .2], [-.35, 1], [.7, -.3], [.12, -.3], [.55, -1]])], []),
    "chevron": ([np.array([[-1, -.75], [-.45, -.75], [0, .0], [.45, -.75], [1, -.75], [0, .85]])], []),
    "zigzag": ([np.array([[-1, 0], [-.5, -.7], [0, 0], [.5, -.7], [1, 0], [1, .75], [.5, .05], [0, .75],
                          [-.5, .05], [-1, .75]])], []),
    "hourglass": ([np.array([[-.8, -1], [.8, -1], [.12, 0], [.8, 1], [-.8, 1], [-.12, 0]])], []),
}
assert set(_SHAPES) == set(OBJECT_NAMES)


def sample_scene(rng: np.random.Generator, object: str | None = None, colour: str | None = None,
                 style: str | None = None) -> Scene:
    """Draw a random scene; any of object/colour/style may be fixed."""
    obj = object if object is not None else OBJECT_NAMES[rng.integers(len(OBJECT_NAMES))]
    col = colour if colour is not None else COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))]
    sty = style if style is not None else STYLES[rng.integers(len(STYLES))]
    radius = float(rng.uniform(9.0, 13.5))
    margin = radius * 0.85
    cx = float(rng.uniform(margin, IMAGE_SIZE - margin))
    cy = float(rng.uniform(margin, IMAGE_SIZE - margin))
    grey = float(rng.uniform(0.08, 0.92))
    tint = rng.uniform(-0.04, 0.04, size=3)
    background = tuple(float(np.clip(grey + t, 0.0, 1.0)) for t in tint)
    return Scene(obj, col, sty, cx, cy, radius, float(rng.uniform(-MAX_ROTATION, MAX_ROTATION)), background,
                 float(rng.uniform(-0.15, 0.15)), float(rng.uniform(0, 180)))


def _polygon_mask(polys: list[np.ndarray], scene: Scene, size: int) -> Image.Image:
    s = _SUPERSAMPLE
    a = math.radians(scene.angle)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    for poly in polys:
        pts = (poly @ rot.T) * scene.radius + np.array([scene.cx, scene.cy])
        draw.polygon([(float(x) * s, float(y) * s) for x, y in pts], fill=255)
    return mask


def _shape_mask(scene: Scene, size: int) -> np.ndarray:
    fills, holes = _SHAPES[scene.object]
    mask = np.asarray(_polygon_mask(fills, scene, size), dtype=np.float32) / 255.0
    if holes:
        mask = mask * (1.0 - np.asarray(_polygon_mask(holes, scene, size), dtype=np.float32) / 255.0)
    return mask


def _erode(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Min filter with a (2p+1)-square window, done separably (PIL's rank filter is slow)."""
    out = mask
    for axis in (0, 1):
        padded = np.pad(out, [(pixels, pixels) if a == axis else (0, 0) for a in (0, 1)], constant_values=0.0)
        n = out.shape[axis]
        result = padded.take(range(0, n), axis=axis)
        for shift in range(1, 2 * pixels + 1):
            result = np.minimum(result, padded.take(range(shift, shift + n), axis=axis))
        out = result
    return out


@functools.lru_cache(maxsize=4)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of the supersampled grid in output-pixel units (read-only, cached)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / _SUPERSAMPLE
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


def render_scene(scene: Scene, image_size: int = IMAGE_SIZE) -> np.ndarray:
    """Render a scene to an HxWx3 uint8 array."""
    s = _SUPERSAMPLE
    size = image_size * s
    scale = image_size / IMAGE_SIZE
    if scale != 1.0:
        scene = Scene(**{**scene.to_dict(), "cx": scene.cx * scale, "cy": scene.cy * scale,
                         "radius": scene.radius * scale})
    mask = _shape_mask(scene, size)
    yy, xx = _pixel_grid(size)
    if scene.style == "solid":
        alpha = mask
    else:
        px = max(1, int(round(scale * s)))  # one output pixel at supersampled resolution
        # A one-pixel outline: thin shapes (zigzag, chevron, ring) stay hollow when outlined.
        outline = mask - _erode(mask, px)
        if scene.style == "outlined":
            alpha = outline
        elif scene.style == "striped":
            t = math.radians(scene.texture_angle)
            phase = (xx * math.cos(t) + yy * math.sin(t)) / scale
            stripes = ((phase % 4.0) < 2.0).astype(np.float32)
            alpha = np.maximum(outline, mask * stripes)
        elif scene.style == "dotted":
            period = 4.0
            dx = (xx / scale % period) - period / 2
            dy = (yy / scale % period) - period / 2
            dots = ((dx * dx + dy * dy) < 1.1 ** 2).astype(np.float32)
            alpha = np.maximum(outline, mask * dots)
        else:
            raise ValueError(f"unknown style {scene.style!r}")
    bg = np.array(scene.background, dtype=np.float32)
    ramp = 1.0 + scene.gradient * (yy / image_size - 0.5) * 2
    background = np.clip(bg[None, None, :] * ramp[..., None], 0.0, 1.0)
    colour = np.array(COLOURS[scene.colour], dtype=np.float32) / 255.0
    img = background * (1.0 - alpha[..., None]) + colour[None, None, :] * alpha[..., None]
    img = img.reshape(image_size, s, image_size, s, 3).mean(axis=(1, 3))
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def render_batch(scenes: list[Scene], image_size: int = IMAGE_SIZE) -> np.ndarray:
    """Render scenes to an NxHxWx3 uint8 array."""
    return np.stack([render_scene(sc, image_size) for sc in scenes])


def sample_scenes(n: int, seed: int, **fixed) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, **fixed) for _ in range(n)]
