"""Save Unlearned Model's file-name prefix check (nodes/save_paths.py needs no ComfyUI)."""

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _check():
    name = "concept_unlearn_pack_save_paths"
    spec = importlib.util.spec_from_file_location(name, REPO / "__init__.py", submodule_search_locations=[str(REPO)])
    pack = importlib.util.module_from_spec(spec)
    sys.modules[name] = pack
    spec.loader.exec_module(pack)
    return importlib.import_module(f"{name}.nodes.save_paths").check_filename_prefix


def test_save_filename_prefix_stays_inside_the_output_folder():
    check = _check()
    assert check("unlearned/model") == "unlearned/model"
    assert check("unlearned\\style_edit") == "unlearned/style_edit"  # a Windows separator is a folder, not a name
    assert check("  my edits/v2 ") == "my edits/v2"
    for bad in ("", "  ", "/etc/evil", "\\evil", "C:\\evil", "c:evil", "..\\..\\evil", "../evil", "a/../../evil",
                "~/evil", "~root/x", "a//b", "./x", "a/b?", "bad:name", "trailing./x", "x\x00y"):
        with pytest.raises(ValueError, match="filename_prefix"):
            check(bad)
