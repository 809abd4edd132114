"""unlearn_core.atomic: the one write-to-a-temporary-then-rename helper (files and folders)."""

import pytest
import torch

from unlearn_core.atomic import atomic_file, atomic_folder
from unlearn_core.concept_set import Concept, ConceptSet
from unlearn_core.weights_io import load_delta, save_delta


class Boom(Exception):
    pass


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_failing_file_write_leaves_neither_target_nor_temporary(tmp_path, error):
    target = tmp_path / "out.bin"
    with pytest.raises(error):
        with atomic_file(target) as tmp:
            assert tmp.parent == tmp_path and tmp != target
            tmp.write_bytes(b"half a file")
            raise error()
    assert _names(tmp_path) == []


def test_failing_file_write_leaves_an_existing_target_untouched(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("the old content")
    with pytest.raises(Boom):
        with atomic_file(target, overwrite=True) as tmp:
            tmp.write_text("new content, never finished")
            raise Boom()
    assert _names(tmp_path) == ["out.txt"] and target.read_text() == "the old content"


def test_successful_file_write_replaces_the_target(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_file(target) as tmp:
        tmp.write_text("one")
        assert not target.exists()  # nothing at the target until the block ends
    with atomic_file(target) as tmp:
        tmp.write_text("two")
    assert target.read_text() == "two" and _names(target.parent) == ["out.txt"]


def test_file_without_overwrite_refuses_an_existing_or_appearing_target(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("keep me")
    with pytest.raises(FileExistsError, match="already exists"):
        with atomic_file(target, overwrite=False):
            pytest.fail("the block must not run when the target exists")
    other = tmp_path / "other.txt"
    with pytest.raises(FileExistsError, match="already exists"):
        with atomic_file(other, overwrite=False) as tmp:
            tmp.write_text("mine")
            other.write_text("someone else's")  # appears while writing
    assert other.read_text() == "someone else's" and target.read_text() == "keep me"
    assert _names(tmp_path) == ["other.txt", "out.txt"]


def test_failing_folder_leaves_nothing_and_an_existing_folder_untouched(tmp_path):
    target = tmp_path / "run"
    with pytest.raises(Boom):
        with atomic_folder(target) as tmp:
            (tmp / "model").mkdir()
            (tmp / "model" / "w.bin").write_bytes(b"x")
            raise Boom()
    assert _names(tmp_path) == []
    target.mkdir()
    (target / "report.json").write_text("old")
    with pytest.raises(Boom):
        with atomic_folder(target, overwrite=True) as tmp:
            (tmp / "report.json").write_text("new")
            raise Boom()
    assert _names(tmp_path) == ["run"] and _names(target) == ["report.json"]
    assert (target / "report.json").read_text() == "old"
    with pytest.raises(FileExistsError, match="already exists"):
        with atomic_folder(target):
            pytest.fail("the block must not run when the folder exists")
    with atomic_folder(target, overwrite=True) as tmp:
        (tmp / "new.json").write_text("new")
    assert _names(tmp_path) == ["run"] and _names(target) == ["new.json"]


def test_writers_use_it_a_failing_save_keeps_the_existing_file(tmp_path):
    path = tmp_path / "d.safetensors"
    deltas = {"a.weight": torch.ones(2, 3)}
    save_delta(deltas, path, {"concepts": []})
    with pytest.raises(TypeError):  # metadata that cannot be serialised: fails while writing
        save_delta({"a.weight": torch.zeros(2, 3)}, path, {"bad": object()}, overwrite=True)
    assert _names(tmp_path) == ["d.safetensors"] and torch.equal(load_delta(path)["a.weight"], torch.ones(2, 3))
    cs_path = tmp_path / "set.json"
    ConceptSet([Concept("star", "symbol")]).save(cs_path)
    assert ConceptSet.load(cs_path).names == ["star"]
    assert _names(tmp_path) == ["d.safetensors", "set.json"]
