import numpy as np
import pytest

from unlearn_core.research.toyworld import captions
from unlearn_core.research.toyworld.concepts import (COLOURS, OBJECT_NAMES, OBJECTS, STYLES, SUPERCLASS_NAMES,
                                            UnknownConceptError, check_concept, members_of)
from unlearn_core.research.toyworld.render import render_batch, render_scene, sample_scene, sample_scenes


def test_world_size():
    assert len(OBJECT_NAMES) >= 16
    assert len(SUPERCLASS_NAMES) >= 4
    assert len(COLOURS) >= 6
    assert len(STYLES) >= 4
    for sup in SUPERCLASS_NAMES:
        assert len(members_of(sup)) >= 2
    assert all(len(o.words) >= 3 for o in OBJECTS)  # a name and at least two synonyms


def test_renderer_is_deterministic_from_seed():
    a = render_batch(sample_scenes(20, seed=5))
    b = render_batch(sample_scenes(20, seed=5))
    c = render_batch(sample_scenes(20, seed=6))
    assert a.shape == (20, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_scenes_vary_position_size_rotation_background():
    scenes = sample_scenes(200, seed=1)
    for attr in ("cx", "cy", "radius", "angle", "gradient"):
        assert np.std([getattr(s, attr) for s in scenes]) > 0.05
    assert np.std([s.background[0] for s in scenes]) > 0.1
    assert {s.object for s in scenes} == set(OBJECT_NAMES)


def _colour_pixels(img, colour):
    target = np.array(COLOURS[colour], dtype=np.float32)
    return (np.abs(img.astype(np.float32) - target).sum(-1) < 30).sum()


@pytest.mark.parametrize("colour", list(COLOURS))
def test_label_colour_is_the_colour_drawn(colour):
    rng = np.random.default_rng(3)
    scene = sample_scene(rng, object="square", colour=colour, style="solid")
    img = render_scene(scene)
    counts = {c: _colour_pixels(img, c) for c in COLOURS}
    assert max(counts, key=counts.get) == colour
    assert counts[colour] > 40  # a solid square of radius >= 9 covers well over 40 pixels


def test_style_labels_match_the_amount_of_paint():
    rng = np.random.default_rng(4)
    base = sample_scene(rng, object="circle", colour="red", style="solid")
    paint = {}
    for style in STYLES:
        scene = type(base)(**{**base.to_dict(), "style": style})
        paint[style] = _colour_pixels(render_scene(scene), "red")
    # solid fills everything; striped/dotted fill part of the interior; outlined only the rim
    assert paint["solid"] > paint["striped"] > paint["outlined"]
    assert paint["solid"] > paint["dotted"] > paint["outlined"]


@pytest.mark.parametrize("obj", OBJECT_NAMES)
def test_every_textured_render_shows_its_texture(obj):
    # Thin shapes (bolt, zigzag) are only a few pixels wide: a striped or dotted one must still
    # show paint inside its outline, or its image would look outlined under a textured label.
    rng = np.random.default_rng(11)
    for _ in range(20):
        scene = sample_scene(rng, object=obj, colour="red", style="outlined")
        outlined = _colour_pixels(render_scene(scene), "red")
        for style in ("striped", "dotted"):
            textured = _colour_pixels(render_scene(type(scene)(**{**scene.to_dict(), "style": style})), "red")
            assert textured >= outlined + 2, (obj, style, scene)


def test_shapes_differ_from_each_other():
    rng = np.random.default_rng(0)
    base = sample_scene(rng, colour="blue", style="solid")
    masks = {}
    for obj in OBJECT_NAMES:
        scene = type(base)(**{**base.to_dict(), "object": obj, "angle": 0.0, "cx": 16.0, "cy": 16.0, "radius": 12.0})
        masks[obj] = _colour_pixels(render_scene(scene), "blue") > 0, render_scene(scene)
    imgs = {o: m[1].astype(np.int32) for o, m in masks.items()}
    for i, a in enumerate(OBJECT_NAMES):
        for b in OBJECT_NAMES[i + 1:]:
            assert np.abs(imgs[a] - imgs[b]).sum() > 0, (a, b)


def test_training_captions_are_true_and_never_use_held_out_templates():
    rng = np.random.default_rng(0)
    scenes = sample_scenes(3000, seed=2)
    caps = [captions.training_caption(s, rng) for s in scenes]
    held_out = {p for o in OBJECT_NAMES for p in captions.held_out_paraphrases(o)}
    assert not held_out & set(caps)
    assert 0.05 < np.mean([c == "" for c in caps]) < 0.15  # caption dropout for classifier-free guidance
    from unlearn_core.research.toyworld.concepts import OBJECT_BY_NAME, SUPERCLASS_WORDS

    for s, c in zip(scenes, caps):
        if not c:
            continue
        words = OBJECT_BY_NAME[s.object].words + SUPERCLASS_WORDS[s.superclass]
        assert any(w in c for w in words), (c, s.object)
        for colour in COLOURS:
            if f" {colour} " in f" {c} ":
                assert colour == s.colour
        for style in STYLES:
            if style in c.split():
                assert style == s.style


def test_held_out_paraphrases_use_only_known_words():
    words = captions.all_caption_words()
    for o in OBJECT_NAMES:
        paraphrases = captions.held_out_paraphrases(o)
        assert len(paraphrases) >= 6
        for p in paraphrases:
            assert set(p.replace(",", " ").split()) <= words


def test_unknown_concept_lists_the_known_ones():
    with pytest.raises(UnknownConceptError) as err:
        check_concept("pentagram")
    msg = str(err.value)
    assert "pentagram" in msg and "star" in msg and "striped" in msg and "polygon" in msg


def test_tokenizer_has_one_token_per_caption_word(toy_pipe):
    tok = toy_pipe.tokenizer
    for w in sorted(captions.all_caption_words()):
        assert len(tok(w).input_ids) == 3, w  # <bos> word <eos>
