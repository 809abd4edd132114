"""Custom socket types shared by the nodes of the pack."""

from comfy_api.latest import io

CATEGORY = "unlearning"

#: an `unlearn_core.concept_set.ConceptSet` (latents inside are raw ComfyUI LATENT samples)
ConceptSetType = io.Custom("CONCEPT_SET")
#: an `unlearn_core.losses.ConceptAwareLossConfig`
UnlearnLossType = io.Custom("UNLEARN_LOSS")

ATTACHMENT_KEY = "concept_unlearn"


def history_of(patcher) -> list[dict]:
    """The unlearning runs recorded on a MODEL/CLIP patcher by earlier nodes (oldest first)."""
    info = patcher.get_attachment(ATTACHMENT_KEY) if hasattr(patcher, "get_attachment") else None
    return list(info.get("history", [])) if info else []


def record(patcher, entry: dict) -> None:
    """Append one run to the patcher's history (a new dict: clones share attachments)."""
    patcher.set_attachments(ATTACHMENT_KEY, {"history": history_of(patcher) + [entry]})
