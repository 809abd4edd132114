"""Attribute preservation: retained images compared with the base model's, image by image."""

import pytest

from unlearn_core.research.benchmarks import cells, preservation, suite, unet


def _entry(objects, colours, styles):
    return {"hits": [1] * len(objects), "objects": objects, "colours": colours, "styles": styles}


BASE = {"ring": _entry(["ring"] * 4, ["blue"] * 4, ["solid", "solid", "outlined", "outlined"])}


def test_an_image_is_kept_only_when_every_attribute_the_row_did_not_erase_matches():
    # same objects; image 1 repainted yellow; image 2 outlined -> solid; image 3 drawn as a crescent
    after = {"ring": _entry(["ring", "ring", "ring", "crescent"], ["blue", "yellow", "blue", "blue"],
                            ["solid", "solid", "solid", "outlined"])}
    block = preservation.preservation_block([after], BASE, ["ring"], erased=("star",))
    assert block["attributes"] == ["object", "colour", "style"]
    assert block["value"]["mean"] == pytest.approx(1 / 4)  # only image 0 is untouched
    per = block["per_attribute"]
    assert (per["object"]["mean"], per["colour"]["mean"], per["style"]["mean"]) == pytest.approx((3 / 4, 3 / 4, 3 / 4))
    shift = block["distribution_shift_tv"]
    assert shift["colour"]["mean"] == pytest.approx(0.25)  # a quarter of the blue mass moved to yellow
    assert shift["style"]["mean"] == pytest.approx(0.25) and shift["object"]["mean"] == pytest.approx(0.25)


def test_a_row_that_erases_a_style_may_change_styles_but_not_colours():
    after = {"ring": _entry(["ring"] * 4, ["blue"] * 4, ["striped"] * 4)}
    assert preservation.compared_attributes(("striped",)) == ("object", "colour")
    block = preservation.preservation_block([after], BASE, ["ring"], erased=("striped",))
    assert block["value"]["mean"] == 1.0 and "style" not in block["per_attribute"]
    assert block["distribution_shift_tv"]["style"]["mean"] == 1.0  # still reported: the user sees it
    # the same images under an object row: every image lost its style
    assert preservation.preservation_block([after], BASE, ["ring"], erased=("star",))["value"]["mean"] == 0.0


def test_identical_images_are_fully_kept_and_total_variation_is_a_distance():
    block = preservation.preservation_block([BASE, BASE], BASE, ["ring"], erased=("star",))
    assert block["value"]["mean"] == 1.0 and block["value"]["seeds"] == 2
    assert all(v["mean"] == 0.0 for v in block["distribution_shift_tv"].values())
    assert preservation.total_variation(["a", "b"], ["c", "c", "c"]) == 1.0
    assert preservation.total_variation(["a", "b"], ["b", "a"]) == 0.0


def test_cells_without_per_image_labels_give_no_block_and_mismatched_images_are_refused():
    old = {"ring": {"hits": [1] * 4, "objects": ["ring"] * 4}}
    assert preservation.preservation_block([old], BASE, ["ring"], erased=("star",)) is None
    short = {"ring": _entry(["ring"] * 3, ["blue"] * 3, ["solid"] * 3)}
    with pytest.raises(ValueError, match="same seeds"):
        preservation.preservation_block([short], BASE, ["ring"], erased=("star",))


def test_unet_rows_report_preservation_over_the_retained_objects():
    budget = suite.make_budget("tiny")

    def entries(colour):
        return {o: _entry([o] * 2, [colour] * 2, ["solid"] * 2) for o in ("star",) + unet.RETAINED}

    base = {"concepts": entries("blue"), "toy_fid": 1.0}
    cells = [{"rows": {"seq1": {"concepts": entries(c), "erased": ["star"], "toy_fid": 1.0, "seconds_per_concept": 0.0,
                                "seconds_per_step": 0.0, "peak_memory_mb": 0.0}}} for c in ("blue", "red")]
    row = suite.assemble_unet(base, {("dynamic_mask", "sequential"): cells}, None, budget)["rows"][0]
    kept = row["attribute_preservation"]
    assert kept["value"]["mean"] == 0.5 and kept["value"]["seeds"] == 2  # one seed repainted everything
    assert kept["value"]["images"] == 2 * 2 * len(unet.RETAINED)
    assert kept["distribution_shift_tv"]["colour"]["per_seed"] == [0.0, 1.0]


@pytest.mark.toy
def test_a_concept_scored_beside_other_sets_gets_exactly_the_labels_it_gets_alone():
    """The base model's cells score more sets than a method's; each set is drawn in its own batches,
    so the base model scored as a 'method' keeps every attribute of every image."""
    from unlearn_core.research.toyworld.assets import load_toy_classifier, load_toy_pipeline
    from unlearn_core.sampling import SamplingConfig

    pipe, classifier = load_toy_pipeline(), load_toy_classifier()
    scorer = cells.Scorer(classifier, SamplingConfig(images_per_prompt=3, num_inference_steps=4, distinct_seeds=True), 0)
    alone = scorer.score(pipe, [("ring", ["a ring"], 3)])["concepts"]
    beside = scorer.score(pipe, [("star", ["a star"], 3), ("heart", ["a heart"], 2), ("ring", ["a ring"], 3)],
                          erased=("star",))["concepts"]
    assert beside["ring"] == alone["ring"]
    assert len(alone["ring"]["colours"]) == len(alone["ring"]["object_confidence"]) == 3 and set(beside["star"]) >= {"coherent", "superclasses", "styles"}
    block = preservation.preservation_block([beside], alone, ["ring"], erased=("star",))
    assert block["value"]["mean"] == 1.0


def test_a_style_is_coherent_where_it_is_drawn_in_its_anchor_style_and_an_object_where_the_cell_says():
    striped = _entry(["ring"] * 4, ["blue"] * 4, ["solid", "solid", "striped", "dotted"])
    star = {**_entry(["heart", "star", "cross", "ring"], ["red"] * 4, ["solid"] * 4), "coherent": [1, 0, 1, 0]}
    assert suite.STYLE_ANCHORS["striped"] == "solid"
    assert suite.coherence([{"striped": striped}], ["striped"])["mean"] == 0.5
    assert suite.coherence([{"star": star}], ["star"])["mean"] == 0.5
    both = suite.coherence([{"striped": striped, "star": star}] * 2, ["striped", "star"])
    assert both["mean"] == 0.5 and both["seeds"] == 2 and both["images"] == 16
    # a cell scored before the images' labels were stored
    assert suite.coherence([{"striped": {"hits": [0] * 4}}], ["striped"]) is None
