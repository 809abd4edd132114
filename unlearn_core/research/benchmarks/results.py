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


def merge_partial_results(paths: list[str | Path]) -> dict:
    """Join result files of one benchmark run split by method over several processes.

    The rows are concatenated; any other key comes from the first file that has it (the mask
    overhead is timed in one part only), and each file's command is kept under "partial_commands". The files must share their settings apart from the methods
    and agree on the base model's scores, or the rows would not be comparable."""
    if len(paths) < 2:
        raise ValueError("give at least two partial result files to merge")
    parts = [json.loads(Path(p).read_text()) for p in paths]
    first = parts[0]
    ignored = {"methods", "measure_overhead"}
    for path, part in zip(paths[1:], parts[1:]):
        if _comparable(part, ignored) != _comparable(first, ignored):
            raise ValueError(f"{path} was run with other settings or another base model than {paths[0]}; "
                             "merge only the parts of one split run")
    merged: dict = {}
    for part in parts:
        for key, value in part.items():
            if key != "command":
                merged.setdefault(key, value)
    merged["rows"] = [row for part in parts for row in part["rows"]]
    merged["settings"] = {**first.get("settings", {}),
                          "methods": [m for part in parts for m in part.get("settings", {}).get("methods", [])]}
    merged["partial_commands"] = [part.get("command") for part in parts]
    return merged


def replace_method_rows(base_path: str | Path, part_path: str | Path, method_settings: dict[str, str]) -> dict:
    """`base_path`'s result with the rows of the methods rerun in `part_path` replaced by the new ones.

    For a method whose defaults changed: rerun only that method (`--methods`) and swap its rows in,
    instead of rerunning every method. `method_settings` names the settings key each method owns
    (e.g. {"few_shot_text_encoder": "text_encoder"}); only those keys may differ between the two
    runs, and both must agree on the base model's scores."""
    base, part = json.loads(Path(base_path).read_text()), json.loads(Path(part_path).read_text())
    methods = list(part.get("settings", {}).get("methods", []))
    if not methods:
        raise ValueError(f"{part_path} names no methods in its settings; rerun with --methods")
    known = {r["method"] for r in base["rows"]}
    missing = [m for m in methods if m not in known]
    if missing:
        raise ValueError(f"{base_path} has no rows of {missing[0]!r} to replace; merge new methods with --merge")
    owned = {method_settings[m] for m in methods if m in method_settings}
    # a setting added to the benchmark after the earlier run is not in its file; it is compared only
    # where both runs recorded it, and listed in the result
    shared = set(base.get("settings", {})) & set(part.get("settings", {}))
    added = sorted(set(part.get("settings", {})) - shared - owned)
    ignored = {"methods"} | owned
    if _comparable(part, ignored, shared) != _comparable(base, ignored, shared):
        raise ValueError(f"{part_path} was run with other settings (beyond those of {', '.join(methods)}) or another "
                         f"base model than {base_path}; rerun the methods with the same benchmark settings")
    rows, placed = [], False
    for row in base["rows"]:
        if row["method"] not in methods:
            rows.append(row)
        elif not placed:  # the new rows go where the first replaced row was
            rows.extend(part["rows"])
            placed = True
    merged = {k: v for k, v in base.items() if k != "command"}
    merged["rows"] = rows
    merged["settings"] = {**base.get("settings", {}), **{k: part["settings"][k] for k in owned}}
    if added:
        merged["settings_not_in_the_earlier_run"] = list(base.get("settings_not_in_the_earlier_run", [])) + added
    merged["partial_commands"] = list(base.get("partial_commands") or [base.get("command")]) + [part.get("command")]
    merged["replaced_methods"] = list(base.get("replaced_methods", [])) + [
        {"methods": methods, "command": part.get("command")}]
    return merged


def _comparable(result: dict, ignored: set[str], only: set[str] | None = None) -> tuple:
    """What two runs must share for their rows to sit in one table: their settings (less `ignored`,
    and limited to `only` if given) and the base model's scores."""
    settings = {k: v for k, v in result.get("settings", {}).items()
                if k not in ignored and (only is None or k in only)}
    base_scores = sorted({(r.get("base_retained_accuracy"), r.get("base_toy_fid")) for r in result["rows"]})
    return json.dumps(settings, sort_keys=True), base_scores
