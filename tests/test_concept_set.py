import numpy as np
import pytest
from PIL import Image

from unlearn_core.concept_set import Concept, ConceptSet, ConceptSetError, load_image


def _example():
    return ConceptSet(
        [Concept("star", "symbol"),
         Concept("striped", "solid", templates=["a star in {} style", "a circle in {} style"])],
        ["a circle", "a square"],
    )


@pytest.mark.parametrize("ext", [".json", ".yaml", ".yml", ".csv"])
def test_round_trip(tmp_path, ext):
    cs = _example()
    path = tmp_path / f"set{ext}"
    cs.save(path)
    back = ConceptSet.load(path)
    assert back.to_dict() == cs.to_dict()
    assert back.concepts[1].prompts == ["a star in striped style", "a circle in striped style"]
    assert back.concepts[1].superclass_prompts == ["a star in solid style", "a circle in solid style"]


def test_image_paths_are_resolved_relative_to_the_file(tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (40, 40), (255, 0, 0)).save(tmp_path / "imgs" / "a.png")
    (tmp_path / "set.json").write_text('{"concepts": [{"name": "star", "superclass": "symbol", "images": ["imgs/a.png"]}]}')
    cs = ConceptSet.load(tmp_path / "set.json")
    assert cs.concepts[0].images == [str(tmp_path / "imgs" / "a.png")]


def test_text_lines():
    cs = ConceptSet.from_text("star => symbol\n# a comment\n  hexagon=>polygon  \n", "a circle\n\na square")
    assert cs.names == ["star", "hexagon"] and cs.concepts[1].superclass == "polygon"
    assert cs.retain_prompts == ["a circle", "a square"]
    with pytest.raises(ConceptSetError, match="concept => superclass"):
        ConceptSet.from_text("star -> symbol")


@pytest.mark.parametrize("concepts,message", [
    ([], "empty"),
    ([Concept("star", "symbol"), Concept("Star", "symbol")], "listed twice"),
    ([Concept("star", "star")], "itself as superclass"),
    ([Concept("star", "")], "no superclass"),
    ([Concept("", "symbol")], "no name"),
    ([Concept("star", "symbol", templates=["a photo"])], "placeholder"),
    ([Concept("star", "symbol"), Concept("symbol", "glyph")], "itself being erased"),
])
def test_bad_sets_are_rejected_with_clear_messages(concepts, message):
    with pytest.raises(ConceptSetError, match=message):
        ConceptSet(concepts).validate()


def test_missing_and_unreadable_images(tmp_path):
    with pytest.raises(ConceptSetError, match="does not exist"):
        ConceptSet([Concept("star", "symbol", images=[str(tmp_path / "nope.png")])]).validate()
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(ConceptSetError, match="not a readable image"):
        ConceptSet([Concept("star", "symbol", images=[str(bad)])]).validate()


def test_bad_files(tmp_path):
    p = tmp_path / "set.txt"
    p.write_text("x")
    with pytest.raises(ConceptSetError, match="unsupported"):
        ConceptSet.load(p)
    p = tmp_path / "set.json"
    p.write_text("{not json")
    with pytest.raises(ConceptSetError, match="cannot parse"):
        ConceptSet.load(p)
    p.write_text('{"concepts": [{"name": "star", "superclass": "symbol", "colour": "red"}]}')
    with pytest.raises(ConceptSetError, match="unknown field"):
        ConceptSet.load(p)
    with pytest.raises(ConceptSetError, match="does not exist"):
        ConceptSet.load(tmp_path / "missing.yaml")


def test_in_memory_images_cannot_be_saved(tmp_path):
    cs = ConceptSet([Concept("star", "symbol", images=[np.zeros((8, 8, 3), np.uint8)])])
    with pytest.raises(ConceptSetError, match="in-memory"):
        cs.save(tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


def test_load_image_converts_safely_and_refuses_the_rest(tmp_path):
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (64, 48), (255, 0, 0, 255)).save(rgba)
    arr, note = load_image(str(rgba), 32)
    assert arr.shape == (32, 32, 3) and "RGBA to RGB" in note and "resized 64x48" in note
    assert (arr[..., 0] > 250).all()
    grey = tmp_path / "grey.png"
    Image.new("L", (32, 32), 128).save(grey)
    arr, note = load_image(str(grey), 32)
    assert arr.shape == (32, 32, 3) and "from L to RGB" in note
    arr, note = load_image(np.full((32, 32, 3), 0.5, np.float32), 32)
    assert arr.dtype == np.uint8 and note is None
    with pytest.raises(ConceptSetError, match="H x W x 3"):
        load_image(np.zeros((32, 32), np.uint8), 32)
    with pytest.raises(ConceptSetError, match="uint8 or floats"):
        load_image(np.full((32, 32, 3), 7, np.int64), 32)


def test_shipped_examples_load():
    from pathlib import Path

    examples = Path(__file__).resolve().parents[1] / "concept_sets"
    files = sorted(examples.glob("toy_*.*"))
    assert len(files) >= 3
    for f in files:
        cs = ConceptSet.load(f)
        assert cs.names and all(c.prompts for c in cs.concepts)


def test_concept_set_error_type_reads_as_its_import_name():
    """ComfyUI shows `__module__.__qualname__` as the error type; imported through the pack the module
    name would be a file-system path."""
    from unlearn_core.concept_set import ConceptSetError

    assert f"{ConceptSetError.__module__}.{ConceptSetError.__qualname__}" == "unlearn_core.concept_set.ConceptSetError"
