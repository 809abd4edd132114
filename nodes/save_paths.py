"""Checking the file-name prefix of Save Unlearned Model (no ComfyUI imports, so it is testable alone)."""

from __future__ import annotations

import re

# Characters Windows refuses in file names, and control characters: refused everywhere so a
# workflow that saves on one system saves on every other.
_FORBIDDEN = re.compile(r'[<>:"|?*\x00-\x1f]')


def check_filename_prefix(prefix: str) -> str:
    """The prefix as a relative path with '/' separators, or ValueError saying what is wrong.

    Both '/' and '\\' separate folders (a workflow written on Windows must not escape the output
    folder on Linux, nor create a file literally named '..\\..\\x'); absolute paths, '~', '.' and
    '..' components and Windows-reserved characters are refused."""
    example = "such as 'unlearned/model'"
    text = prefix.strip()
    if not text:
        raise ValueError(f"filename_prefix is empty; give a relative name {example}")
    parts = re.split(r"[\\/]", text)
    if text.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", text):
        raise ValueError(f"filename_prefix {prefix!r} is an absolute path; give a name relative to the output "
                         f"folder {example}")
    for part in parts:
        if part in ("", ".", "..") or part.startswith("~"):
            raise ValueError(f"filename_prefix {prefix!r} has a folder part {part!r} that is not a plain name "
                             f"(no empty, '.', '..' or '~' parts); give a relative name {example}")
        if _FORBIDDEN.search(part) or part != part.strip() or part.endswith("."):
            raise ValueError(f"filename_prefix {prefix!r}: {part!r} is not a portable file name (no <>:\"|?* or "
                             f"control characters, no leading/trailing spaces or trailing dot); use a name {example}")
    return "/".join(parts)
