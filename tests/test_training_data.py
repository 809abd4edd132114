"""training_data.generation_batches: the sampler calls preparing the training data makes, as the
preparation itself makes them (the ComfyUI node sizes its progress bar from it)."""

import torch

from unlearn_core.concept_set import Concept, ConceptSet
from unlearn_core.training_data import GENERATION_BATCH, generation_batches, prepare_concept_data, prepare_retain_data


class RecordingAdapter:
    """Just enough of a DenoiserAdapter to prepare training data; records each sampler call."""

    latent_shape = (4, 2, 2)
    dtype = torch.float32
    device = torch.device("cpu")
    image_size = 8

    def __init__(self):
        self.calls: list[tuple[list[str], list[int]]] = []

    def sample_latents(self, prompts, seeds, negative_prompt=None, steps=20, guidance_scale=5.0, **kw):
        assert len(prompts) == len(seeds)
        self.calls.append((list(prompts), list(seeds)))
        return torch.zeros(len(seeds), *self.latent_shape)

    def encode_prompts(self, prompts):
        return torch.zeros(len(prompts), 3, 5)


def test_generation_batches_are_the_sampler_calls_of_the_preparation():
    given = torch.zeros(2, 4, 2, 2)
    cs = ConceptSet([Concept("star", "symbol", templates=["a {}", "a photo of a {}"]),
                     Concept("circle", "shape", latents=given),  # only its superclass images are generated
                     Concept("square", "shape", latents=given, superclass_latents=given)],  # nothing generated
                    ["a house", "a tree", "a car"])
    n_images, per_prompt = GENERATION_BATCH * 2 + 3, 25
    adapter = RecordingAdapter()
    for i, c in enumerate(cs.concepts):
        prepare_concept_data(adapter, c, n_images, seed=17 * i, steps=2)
    prepare_retain_data(adapter, cs.retain_prompts, per_prompt, seed=999, steps=2)
    made = [len(seeds) for _, seeds in adapter.calls]
    assert generation_batches(cs, n_images, per_prompt) == made
    assert made == [64, 64, 3] * 3 + [64, 11]
    # the seeds of consecutive calls continue where the last one stopped (the batching is only a split)
    assert adapter.calls[1][1][0] == adapter.calls[0][1][-1] + 1
    assert generation_batches(cs, n_images, 0)[-1] == 3 and generation_batches(ConceptSet(cs.concepts[2:]), 5, 0) == []
