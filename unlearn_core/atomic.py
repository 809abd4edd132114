"""Files and folders that appear complete or not at all: the one write-to-a-temporary-then-rename
helper of the library and the node pack.

    with atomic_file("out/model.safetensors") as tmp:
        save_file(tensors, str(tmp))          # write to `tmp`, never to the target
    with atomic_folder("out/run") as tmp:
        (tmp / "report.json").write_text(...)  # assemble the folder under `tmp`

The temporary lives next to the target (same folder, so the final rename is a same-filesystem
rename, atomic for files), is named `.<target name>.<random>.partial`, and is renamed onto the
target only when the block ends without an exception. On any exception (including
KeyboardInterrupt) the temporary is removed and the target is left as it was: an existing target
is untouched, a missing one stays missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

SUFFIX = ".partial"


def _refuse_existing(target: Path, what: str) -> None:
    raise FileExistsError(f"{what} {target} already exists; choose another name or pass overwrite=True (--overwrite)")


def _discard(tmp: Path) -> None:
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def _temporary_sibling(target: Path, overwrite: bool, folder: bool, what: str) -> Iterator[Path]:
    if target.exists() and not overwrite:  # fail before the caller spends time writing
        _refuse_existing(target, what)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}."
    if folder:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=SUFFIX, dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=SUFFIX, dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if target.exists() and not overwrite:  # appeared while writing: never clobber it
            _refuse_existing(target, what)
        if folder:
            _replace_folder(tmp, target)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists() or tmp.is_symlink():
            _discard(tmp)


def _replace_folder(tmp: Path, target: Path) -> None:
    """Rename `tmp` onto `target`; an existing target is moved aside first and removed only after
    the new folder is in place (restored if that rename fails)."""
    if not target.exists():
        tmp.rename(target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    old.rmdir()
    target.rename(old)
    try:
        tmp.rename(target)
    except BaseException:
        old.rename(target)
        raise
    _discard(old)


@contextlib.contextmanager
def atomic_file(target: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path (an empty file, same folder as `target`) to write the file to; it is
    `os.replace`d onto `target` when the block succeeds and removed when it fails.

    overwrite=False raises FileExistsError if `target` exists before the block (nothing is
    written) or has appeared when it ends (the temporary is removed, the other file kept)."""
    with _temporary_sibling(Path(target), overwrite, folder=False, what="file") as tmp:
        yield tmp


@contextlib.contextmanager
def atomic_folder(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary empty folder (next to `target`) to assemble a folder in; it is renamed to
    `target` when the block succeeds (replacing an existing `target` only if overwrite=True) and
    removed with everything in it when the block fails."""
    with _temporary_sibling(Path(target), overwrite, folder=True, what="folder") as tmp:
        yield tmp
