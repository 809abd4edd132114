"""ComfyUI entry point of the concept-unlearning node pack.

ComfyUI imports this file when the repository sits in ComfyUI/custom_nodes/. It must import
cleanly and cheaply: the node modules import torch/ComfyUI lazily.
Relative imports only: ComfyUI has a top-level module called `nodes` of its own.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
