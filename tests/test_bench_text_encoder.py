"""Pure logic of the text-encoder benchmark's sibling-anchor scenarios."""

from unlearn_core.research.benchmarks.text_encoder import RETAINED, SIBLING_ANCHORS, few_shot_concept, with_sibling_anchor
from unlearn_core.research.toyworld.concepts import OBJECT_BY_NAME


def test_sibling_anchor_is_an_unretained_member_of_the_same_superclass():
    for name, sibling in SIBLING_ANCHORS.items():
        assert sibling != name
        assert OBJECT_BY_NAME[sibling].superclass == OBJECT_BY_NAME[name].superclass
        assert sibling not in RETAINED  # retention would otherwise be scored on the anchor itself


def test_sibling_anchor_prompts_differ_from_the_concept_prompts_only_in_the_object_words():
    concept = few_shot_concept("bolt", shots=2, seed=0)
    anchored = with_sibling_anchor(concept)
    assert anchored.prompts == concept.prompts and len(anchored.images) == 2
    assert anchored.superclass_prompts == [p.replace("lightning bolt", "chevron") for p in concept.prompts]
    assert concept.superclass == "glyph"  # the input concept is not modified
