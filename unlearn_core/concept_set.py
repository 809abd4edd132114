"""ConceptSet: what to forget (each concept with the superclass/anchor it should turn into), and
what to keep. Loaded from and saved to JSON, YAML or CSV, and validated with messages that say
what is wrong and how to fix it.

A concept's prompts come from templates with a `{}` placeholder: the concept's prompt fills it
with the concept's text, and the paired anchor prompt fills the *same* template with the
superclass's text, so the two differ only in the concept words (the concept-aware loss pulls one
onto the other).

    {"concepts": [{"name": "star", "superclass": "symbol"},
                  {"name": "striped", "superclass": "solid",
                   "templates": ["a star in {} style", "a circle in {} style"]}],
     "retain_prompts": ["a circle", "a square"]}
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_file

DEFAULT_TEMPLATES = ("a {}", "a photo of a {}", "a drawing of a {}")


class ConceptSetError(ValueError):
    """A concept set that cannot be used; the message says what to change."""

    # ComfyUI shows an error's type as `__module__.__qualname__`, and imports a node pack under a
    # module name made from its folder path: the stable import name reads better than the path.
    __module__ = "unlearn_core.concept_set"


@dataclass
class Concept:
    name: str
    superclass: str
    templates: list[str] = field(default_factory=lambda: list(DEFAULT_TEMPLATES))
    # Words that stand for the concept / superclass in prompts (default: the names).
    text: str | None = None
    superclass_text: str | None = None
    # Optional example images: file paths or HxWx3 uint8 arrays (arrays are not serialised).
    images: list[Any] = field(default_factory=list)
    superclass_images: list[Any] = field(default_factory=list)
    # Optional pre-encoded latents (N x C x h x w), e.g. from a ComfyUI LATENT input.
    latents: Any = None
    superclass_latents: Any = None

    @property
    def prompts(self) -> list[str]:
        return [t.format(self.text or self.name) for t in self.templates]

    @property
    def superclass_prompts(self) -> list[str]:
        return [t.format(self.superclass_text or self.superclass) for t in self.templates]

    def to_dict(self) -> dict:
        for label, imgs in (("images", self.images), ("superclass_images", self.superclass_images)):
            if any(not isinstance(i, (str, Path)) for i in imgs):
                raise ConceptSetError(
                    f"concept {self.name!r}: its {label} are in-memory images, which a concept-set file cannot "
                    "hold; save them as image files and list their paths instead")
        if self.latents is not None or self.superclass_latents is not None:
            raise ConceptSetError(f"concept {self.name!r}: in-memory latents cannot be saved to a concept-set file")
        d: dict[str, Any] = {"name": self.name, "superclass": self.superclass}
        if list(self.templates) != list(DEFAULT_TEMPLATES):
            d["templates"] = list(self.templates)
        for key in ("text", "superclass_text"):
            if getattr(self, key):
                d[key] = getattr(self, key)
        if self.images:
            d["images"] = [str(p) for p in self.images]
        if self.superclass_images:
            d["superclass_images"] = [str(p) for p in self.superclass_images]
        return d


@dataclass
class ConceptSet:
    concepts: list[Concept]
    retain_prompts: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.concepts]

    def validate(self, check_files: bool = True) -> "ConceptSet":
        """Raise ConceptSetError on the first problem found; return self when fine."""
        if not self.concepts:
            raise ConceptSetError("the concept set is empty: add at least one concept to forget, "
                                  "e.g. a line 'star => symbol'")
        seen: dict[str, str] = {}
        for i, c in enumerate(self.concepts):
            where = f"concept #{i + 1}"
            if not isinstance(c.name, str) or not c.name.strip():
                raise ConceptSetError(f"{where} has no name")
            where = f"concept {c.name!r}"
            if not isinstance(c.superclass, str) or not c.superclass.strip():
                raise ConceptSetError(f"{where} has no superclass: name what it should turn into "
                                      "(e.g. 'tench => fish', 'van gogh => painting')")
            key = c.name.strip().lower()
            if key in seen:
                raise ConceptSetError(f"{where} is listed twice; list each concept once")
            seen[key] = c.name
            if c.superclass.strip().lower() == key:
                raise ConceptSetError(f"{where} has itself as superclass; the superclass must be a broader concept "
                                      "that stays (e.g. 'tench => fish')")
            if not c.templates:
                raise ConceptSetError(f"{where} has no prompt templates; give at least one, e.g. 'a photo of a {{}}'")
            for t in c.templates:
                if t.count("{}") != 1:
                    raise ConceptSetError(f"{where}: template {t!r} must contain the placeholder {{}} exactly once")
            if check_files:
                for p in list(c.images) + list(c.superclass_images):
                    if isinstance(p, (str, Path)):
                        _check_image_file(Path(p), where)
            for label, lat in (("latents", c.latents), ("superclass_latents", c.superclass_latents)):
                if lat is not None and (getattr(lat, "ndim", 0) != 4 or len(lat) == 0):
                    raise ConceptSetError(f"{where}: {label} must be a non-empty N x C x h x w batch")
        erased = {c.name.strip().lower() for c in self.concepts}
        for c in self.concepts:
            if c.superclass.strip().lower() in erased:
                raise ConceptSetError(f"concept {c.name!r}: its superclass {c.superclass!r} is itself being erased; "
                                      "choose a superclass that stays")
        for p in self.retain_prompts:
            if not isinstance(p, str) or not p.strip():
                raise ConceptSetError("retain prompts must be non-empty strings")
        return self

    # ---- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"concepts": [c.to_dict() for c in self.concepts], "retain_prompts": list(self.retain_prompts)}

    def save(self, path: str | Path) -> None:
        path = Path(path)
        fmt = _format_of(path)
        if fmt == "json":
            text = json.dumps(self.to_dict(), indent=2)
        elif fmt == "yaml":
            import yaml

            text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        else:
            text = self._to_csv()
        with atomic_file(path) as tmp:
            tmp.write_text(text)

    def _to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(_CSV_COLUMNS)
        for c in self.concepts:
            d = c.to_dict()
            w.writerow(["forget", c.name, c.superclass, "|".join(c.templates), "|".join(d.get("images", [])),
                        "|".join(d.get("superclass_images", []))])
        for p in self.retain_prompts:
            w.writerow(["retain", p, "", "", "", ""])
        return buf.getvalue()

    @classmethod
    def from_dict(cls, data: Any, base_dir: Path | None = None) -> "ConceptSet":
        if not isinstance(data, dict) or "concepts" not in data:
            raise ConceptSetError("a concept-set file needs a top-level 'concepts' list "
                                  "(and optionally 'retain_prompts')")
        if not isinstance(data["concepts"], list):
            raise ConceptSetError("'concepts' must be a list of {name, superclass, ...} entries")
        concepts = []
        allowed = {"name", "superclass", "templates", "text", "superclass_text", "images", "superclass_images"}
        for i, entry in enumerate(data["concepts"]):
            if isinstance(entry, str):
                entry = _parse_arrow_line(entry, i + 1)
            if not isinstance(entry, dict):
                raise ConceptSetError(f"concept #{i + 1} must be a mapping with 'name' and 'superclass'")
            unknown = set(entry) - allowed
            if unknown:
                raise ConceptSetError(f"concept #{i + 1} has unknown field(s) {sorted(unknown)}; "
                                      f"allowed: {sorted(allowed)}")
            kw = dict(entry)
            for key in ("images", "superclass_images"):
                if key in kw:
                    kw[key] = [_resolve(p, base_dir) for p in kw[key]]
            if "templates" in kw and isinstance(kw["templates"], str):
                kw["templates"] = [kw["templates"]]
            concepts.append(Concept(**{"name": kw.pop("name", ""), "superclass": kw.pop("superclass", ""), **kw}))
        retain = data.get("retain_prompts", []) or []
        if isinstance(retain, str):
            retain = [retain]
        return cls(concepts, list(retain))

    @classmethod
    def load(cls, path: str | Path, check_files: bool = True) -> "ConceptSet":
        path = Path(path)
        if not path.exists():
            raise ConceptSetError(f"concept-set file {path} does not exist")
        fmt = _format_of(path)
        text = path.read_text()
        try:
            if fmt == "json":
                data = json.loads(text)
            elif fmt == "yaml":
                import yaml

                data = yaml.safe_load(text)
            else:
                data = _parse_csv(text)
        except (json.JSONDecodeError, ValueError) as exc:
            if isinstance(exc, ConceptSetError):
                raise
            raise ConceptSetError(f"cannot parse {path} as {fmt.upper()}: {exc}") from exc
        except Exception as exc:  # yaml.YAMLError and friends
            raise ConceptSetError(f"cannot parse {path} as {fmt.upper()}: {exc}") from exc
        return cls.from_dict(data, base_dir=path.parent).validate(check_files=check_files)

    @classmethod
    def from_text(cls, lines: str, retain_prompts: str = "") -> "ConceptSet":
        """Parse 'concept => superclass' lines (the node widget format); '#' starts a comment."""
        concepts = []
        for n, line in enumerate(lines.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if line:
                concepts.append(Concept(**_parse_arrow_line(line, n)))
        retain = [p.strip() for p in retain_prompts.splitlines() if p.strip()]
        return cls(concepts, retain)


_CSV_COLUMNS = ["kind", "name", "superclass", "templates", "images", "superclass_images"]


def _parse_csv(text: str) -> dict:
    rows = list(csv.DictReader(io.StringIO(text)))
    if rows and set(rows[0]) - set(_CSV_COLUMNS) or not text.strip():
        raise ConceptSetError(f"CSV concept sets need the header {','.join(_CSV_COLUMNS)}")
    concepts, retain = [], []
    for n, row in enumerate(rows, 2):
        kind = (row.get("kind") or "forget").strip()
        if kind == "retain":
            retain.append(row["name"])
        elif kind == "forget":
            entry = {"name": row.get("name", ""), "superclass": row.get("superclass", "")}
            for key in ("templates", "images", "superclass_images"):
                if row.get(key):
                    entry[key] = row[key].split("|")
            concepts.append(entry)
        else:
            raise ConceptSetError(f"CSV line {n}: kind must be 'forget' or 'retain', not {kind!r}")
    return {"concepts": concepts, "retain_prompts": retain}


def _parse_arrow_line(line: str, n: int) -> dict:
    if "=>" not in line:
        raise ConceptSetError(f"line {n}: {line!r} should read 'concept => superclass' (e.g. 'star => symbol')")
    name, sup = (s.strip() for s in line.split("=>", 1))
    return {"name": name, "superclass": sup}


def _format_of(path: Path) -> str:
    ext = path.suffix.lower()
    if ext == ".json":
        return "json"
    if ext in (".yaml", ".yml"):
        return "yaml"
    if ext == ".csv":
        return "csv"
    raise ConceptSetError(f"unsupported concept-set format {ext!r} for {path}; use .json, .yaml/.yml or .csv")


def _resolve(p: Any, base_dir: Path | None) -> Any:
    if isinstance(p, str) and base_dir is not None and not Path(p).is_absolute():
        return str(base_dir / p)
    return p


def _check_image_file(path: Path, where: str) -> None:
    from PIL import Image, UnidentifiedImageError

    if not path.exists():
        raise ConceptSetError(f"{where}: image file {path} does not exist")
    try:
        with Image.open(path) as im:
            im.verify()
    except (UnidentifiedImageError, OSError) as exc:
        raise ConceptSetError(f"{where}: {path} is not a readable image ({exc})") from exc


def load_image(item: Any, size: int, where: str = "image") -> tuple[np.ndarray, str | None]:
    """An image file or array as a size x size x 3 uint8 array, plus a note if it was converted.

    RGBA/greyscale/palette images are converted to RGB and other sizes are centre-cropped and
    resized (safe conversions, reported); arrays of the wrong shape or type are refused."""
    from PIL import Image

    note = None
    if isinstance(item, (str, Path)):
        _check_image_file(Path(item), where)
        with Image.open(item) as im:
            im.load()
            if im.mode != "RGB":
                note = f"{where}: converted {Path(item).name} from {im.mode} to RGB"
                background = Image.new("RGB", im.size, (255, 255, 255))
                if im.mode in ("RGBA", "LA", "P"):
                    rgba = im.convert("RGBA")
                    background.paste(rgba, mask=rgba.split()[-1])
                    im = background
                else:
                    im = im.convert("RGB")
            arr = np.asarray(im)
    else:
        arr = np.asarray(item)
        if arr.dtype != np.uint8:
            if np.issubdtype(arr.dtype, np.floating) and arr.size and 0.0 <= arr.min() and arr.max() <= 1.0:
                arr = (arr * 255 + 0.5).astype(np.uint8)
            else:
                raise ConceptSetError(f"{where}: in-memory images must be uint8 or floats in [0, 1], got {arr.dtype}")
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise ConceptSetError(f"{where}: in-memory images must be H x W x 3 (RGB), got shape {arr.shape}")
        arr = arr[..., :3]
    h, w = arr.shape[:2]
    if (h, w) != (size, size):
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        im = Image.fromarray(np.ascontiguousarray(arr[top:top + s, left:left + s])).resize((size, size), Image.BICUBIC)
        arr = np.asarray(im)
        note = (note + "; " if note else f"{where}: ") + f"resized {w}x{h} to {size}x{size} (centre crop)"
    return np.ascontiguousarray(arr), note
