"""Where the embedded toy model and classifier live, and how to load them offline."""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
TOY_MODEL_DIR = WEIGHTS_DIR / "toy_sd"
CLASSIFIER_PATH = WEIGHTS_DIR / "classifier.safetensors"


def locate(path: str | Path | None, embedded: Path) -> Path:
    """`path` if given, else the embedded file; either must exist."""
    if path:
        if not Path(path).exists():
            raise FileNotFoundError(f"no toy-world model or classifier at {path}: give the toy_sd folder or the "
                                    "classifier.safetensors file a `concept-unlearn toy-train --output DIR` wrote")
        return Path(path)
    if not embedded.exists():
        raise FileNotFoundError(
            f"the embedded toy-world weights are missing ({embedded}). They ship with the package; "
            "rebuild them with `concept-unlearn toy-train --install`."
        )
    return embedded


def load_toy_pipeline(path: str | Path | None = None, dtype=None):
    """The tiny Stable Diffusion as a diffusers StableDiffusionPipeline (no network access)."""
    from ...adapters.diffusers_adapter import load_pipeline

    return load_pipeline(locate(path, TOY_MODEL_DIR), dtype)


def load_toy_classifier(path: str | Path | None = None):
    from .classifier import load_classifier

    return load_classifier(locate(path, CLASSIFIER_PATH))
