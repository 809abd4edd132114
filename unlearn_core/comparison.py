"""Before/after comparisons of an unlearning run on any model: the prompts to compare and the image grid.

The rows work for any concept set (real checkpoints included): each erased concept's first
prompt, a held-out rewording of it that no training template uses, and every retain prompt.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Rewordings that `ConceptSet` never trains on, so the comparison shows whether the edit
# generalises beyond the training prompts.
HELD_OUT_TEMPLATES = (
    "an image depicting {a} {thing}",
    "there is {a} {thing} here",
    "{a} {thing}, drawn simply",
)


def article(phrase: str) -> str:
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def held_out_paraphrase(words: str, index: int = 0) -> str:
    """A rewording of `words` from a template no training prompt uses."""
    return HELD_OUT_TEMPLATES[index % len(HELD_OUT_TEMPLATES)].format(a=article(words), thing=words)


def comparison_rows(concept_set) -> list[tuple[str, str]]:
    """(kind, prompt) rows of a before/after comparison of a ConceptSet: per erased concept its
    first prompt and a held-out paraphrase, then every retain prompt."""
    concept_set.validate(check_files=False)
    rows = []
    for c in concept_set.concepts:
        rows += [("erased", c.prompts[0]), ("paraphrase", held_out_paraphrase(c.text or c.name))]
    return rows + [("kept", p) for p in concept_set.retain_prompts]


def image_grid(images: np.ndarray, rows: int, scale: int = 2, pad: int = 2) -> Image.Image:
    """Tile N images into `rows` rows (row-major), with a light gap between tiles."""
    n, h, w, _ = images.shape
    cols = int(np.ceil(n / rows))
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 235, dtype=np.uint8)
    for k in range(n):
        r, c = divmod(k, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y:y + h, x:x + w] = images[k]
    img = Image.fromarray(grid)
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale != 1 else img


def save_grid(images: np.ndarray, rows: int, path: str | Path, scale: int = 2) -> None:
    image_grid(images, rows, scale).save(path)


#: Layout of `before_after_grid`: label column width (with labels), header height, gap between halves.
LABEL_WIDTH, HEADER_HEIGHT, HALF_GAP = 160, 18, 16


def before_after_grid(before: np.ndarray, after: np.ndarray, rows: int, labels: list[str] | None = None,
                      scale: int = 2) -> Image.Image:
    """Two grids side by side (before | after) with optional row labels on the left.

    The before half is `image_grid(before, rows, scale)` pasted at (LABEL_WIDTH or 0, HEADER_HEIGHT),
    the after half HALF_GAP pixels to its right."""
    from PIL import ImageDraw

    left, right = image_grid(before, rows, scale), image_grid(after, rows, scale)
    label_w = LABEL_WIDTH if labels else 0
    canvas = Image.new("RGB", (label_w + left.width + HALF_GAP + right.width, left.height + HEADER_HEIGHT),
                       (255, 255, 255))
    canvas.paste(left, (label_w, HEADER_HEIGHT))
    canvas.paste(right, (label_w + left.width + HALF_GAP, HEADER_HEIGHT))
    draw = ImageDraw.Draw(canvas)
    draw.text((label_w + 4, 3), "before", fill=(0, 0, 0))
    draw.text((label_w + left.width + HALF_GAP + 4, 3), "after", fill=(0, 0, 0))
    if labels:
        row_h = left.height / rows
        for r, text in enumerate(labels):
            draw.text((4, HEADER_HEIGHT + int(r * row_h + row_h / 2) - 5), text[:26], fill=(0, 0, 0))
    return canvas
