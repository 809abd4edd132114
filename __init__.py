"""ComfyUI entry point of the concept-unlearning node pack.

ComfyUI imports this file when the repository sits in ComfyUI/custom_nodes/. The nodes use the
V3 API, registered through `comfy_entrypoint`; ComfyUI ignores `comfy_entrypoint` when a
package defines NODE_CLASS_MAPPINGS, so that name exists only outside ComfyUI (empty), where
this file must still import cleanly (tests, packaging tools).
Import is cheap: node modules (torch, comfy) load only when ComfyUI asks for the node list.
Relative imports only: ComfyUI has a top-level module called `nodes` of its own.
"""

try:
    import comfy_api.latest  # noqa: F401  (present only inside ComfyUI)
except ImportError:
    NODE_CLASS_MAPPINGS: dict = {}
    NODE_DISPLAY_NAME_MAPPINGS: dict = {}
    __all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
else:
    from .nodes import comfy_entrypoint

    __all__ = ["comfy_entrypoint"]
