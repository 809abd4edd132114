"""What a benchmark number was measured on, and the cell cache of `bench all`.

- `toy_model_hash` / `classifier_hash`: SHA-256 over the weight and config files of a toy model
  folder (relative path and bytes of every file, sorted) and of the classifier file. Every result
  file records both; `tests/test_bench_results.py` compares them with the installed weights.
- `code_version`: the library version plus a hash of the library's Python sources (not of git:
  the same hash in a checkout, an sdist or a wheel), and the versions of the libraries that
  compute the numbers (torch, diffusers, transformers, numpy).
- `CellCache`: one JSON file per finished cell, keyed by the model and classifier hashes, the code
  version and the cell's settings; written atomically (`unlearn_core.atomic`), so a run stopped
  at any moment leaves complete cells or none, and a rerun skips the complete ones.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

from ...atomic import atomic_file

#: the source files (paths relative to the package) that do not change what a cell computes:
#: argument parsing, progress display, the benchmarks that run no cells (the real-size timings and
#: the memory accounting) and what `bench all` does with finished cells (assembling the result
#: files from them, the statistics, SUMMARY.md): a test checks that no other module imports them
CODE_HASH_EXCLUDES = ("cli.py", "progress.py", "research/benchmarks/real_size.py",
                      "research/benchmarks/closed_form.py", "research/benchmarks/memory_accounting.py",
                      "research/benchmarks/suite.py", "research/benchmarks/summary.py",
                      "research/benchmarks/preservation.py", "research/benchmarks/stats.py")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def files_hash(root: str | Path) -> str:
    """'sha256:<hex>' of a file, or of a folder: every file under it (hidden files and __pycache__
    left out) as its relative POSIX path and the SHA-256 of its bytes, in sorted order."""
    root = Path(root)
    if root.is_file():
        return "sha256:" + _sha256_file(root)
    if not root.is_dir():
        raise FileNotFoundError(f"nothing to hash at {root}")
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        h.update(f"{rel.as_posix()}\0{_sha256_file(path)}\n".encode())
    return "sha256:" + h.hexdigest()


@lru_cache(maxsize=None)
def _cached_hash(path: str, mtimes: tuple) -> str:
    return files_hash(path)


def _stat_key(root: Path) -> tuple:
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)


def toy_model_hash(model_dir: str | Path | None = None) -> str:
    """Hash of a toy model folder (default: the installed one), see `files_hash`."""
    from ..toyworld.assets import TOY_MODEL_DIR, locate

    root = locate(model_dir, TOY_MODEL_DIR).resolve()
    return _cached_hash(str(root), _stat_key(root))


def classifier_hash(path: str | Path | None = None) -> str:
    """Hash of a toy classifier file (default: the installed one)."""
    from ..toyworld.assets import CLASSIFIER_PATH, locate

    file = locate(path, CLASSIFIER_PATH).resolve()
    return _cached_hash(str(file), _stat_key(file))


def source_hash(package_dir: str | Path | None = None) -> str:
    """'sha256:<hex>' of the library's .py files (relative path and bytes), less CODE_HASH_EXCLUDES."""
    root = Path(package_dir) if package_dir else Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if "__pycache__" in rel.parts or rel.as_posix() in CODE_HASH_EXCLUDES:
            continue
        h.update(f"{rel.as_posix()}\0{_sha256_file(path)}\n".encode())
    return "sha256:" + h.hexdigest()


def code_version() -> dict:
    """The library version, its source hash and the versions of the numeric libraries."""
    import diffusers
    import numpy
    import torch
    import transformers

    from ... import __version__

    return {"unlearn_core": __version__, "source_hash": source_hash(), "torch": torch.__version__,
            "diffusers": diffusers.__version__, "transformers": transformers.__version__,
            "numpy": numpy.__version__}


def default_cache_dir() -> Path:
    """$CONCEPT_UNLEARN_BENCH_CACHE, else $XDG_CACHE_HOME/concept-unlearn/bench (~/.cache/...)."""
    if os.environ.get("CONCEPT_UNLEARN_BENCH_CACHE"):
        return Path(os.environ["CONCEPT_UNLEARN_BENCH_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "concept-unlearn" / "bench"


def cell_key(key: dict) -> str:
    """The hex digest that names a cell: SHA-256 of its key as canonical JSON."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class CellCache:
    """Finished cells as `<dir>/<benchmark>/<label>.<digest[:20]>.json`, each holding its full key
    and its result. A cell is found only if the stored key equals the asked one."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, key: dict) -> Path:
        label = "_".join(str(key["cell"][k]) for k in ("method", "scenario", "seed") if k in key["cell"])
        label = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in label)
        return self.root / str(key["cell"]["benchmark"]) / f"{label}.{cell_key(key)[:20]}.json"

    def get(self, key: dict) -> dict | None:
        path = self.path(key)
        try:
            stored = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):  # cannot happen with atomic writes; recompute
            return None
        return stored["result"] if stored.get("key") == key else None

    def put(self, key: dict, result: dict) -> Path:
        path = self.path(key)
        with atomic_file(path) as tmp:
            tmp.write_text(json.dumps({"key": key, "result": result}))
        return path

    def completed(self) -> list[Path]:
        return sorted(self.root.rglob("*.json")) if self.root.exists() else []

    def remove_stale_partials(self, older_than_s: float = 600.0) -> int:
        """Remove the temporaries of writes that a killed process never finished (a cell is written
        in well under a second, so one older than `older_than_s` belongs to no running process)."""
        import time

        removed = 0
        for tmp in self.root.rglob(".*.partial") if self.root.exists() else ():
            try:
                if time.time() - tmp.stat().st_mtime > older_than_s:
                    tmp.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed
