"""Writing benchmark results: a JSON file with the command that made it, and optionally a Markdown table."""

from __future__ import annotations

import json
from pathlib import Path


def write_results(result: dict, json_path: str | Path, command: str, markdown: str | None = None) -> None:
    """`result` as JSON (with "command" first) and, if given, `markdown` beside it as <name>.md."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"command": command, **result}, indent=2))
    if markdown is not None:
        json_path.with_suffix(".md").write_text(f"Command: `{command}`\n\n" + markdown)
