"""ComfyUI nodes of the pack (V3 API), one small module per node family:

- concept_nodes: LoadConceptSet, ConceptAwareLoss
- unet_nodes: DynamicMaskUnlearn
- closed_form_nodes: ClosedFormConceptErase
- text_encoder_nodes: FewShotTextEncoderForget
- save_nodes: SaveUnlearnedModel
- compare_nodes: CompareModelWeights
- evaluate_nodes: EvaluateUnlearning
- comfy_bridge: the DenoiserAdapter / text-encoder adapter over ComfyUI's MODEL, CLIP and VAE

Node modules import ComfyUI (`comfy`, `comfy_api`), so they are imported only when ComfyUI asks
for the node list. Relative imports only: ComfyUI has a top-level module called `nodes` too.
"""


def node_list() -> list:
    from .closed_form_nodes import ClosedFormConceptErase
    from .compare_nodes import CompareModelWeights
    from .concept_nodes import ConceptAwareLoss, LoadConceptSet
    from .evaluate_nodes import EvaluateUnlearning
    from .save_nodes import SaveUnlearnedModel
    from .text_encoder_nodes import FewShotTextEncoderForget
    from .unet_nodes import DynamicMaskUnlearn

    return [LoadConceptSet, ConceptAwareLoss, DynamicMaskUnlearn, ClosedFormConceptErase, FewShotTextEncoderForget,
            SaveUnlearnedModel, CompareModelWeights, EvaluateUnlearning]


async def comfy_entrypoint():
    """V3 entry point: ComfyUI awaits this and asks the extension for its nodes."""
    from comfy_api.latest import ComfyExtension

    class ConceptUnlearnExtension(ComfyExtension):
        async def get_node_list(self) -> list:
            return node_list()

    return ConceptUnlearnExtension()
