"""ComfyUI nodes of the pack. Each node family lives in its own module.

No node is registered yet: the mappings are empty so ComfyUI loads the pack cleanly.
"""

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
