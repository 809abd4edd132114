"""unlearn_core: concept unlearning for text-to-image diffusion models, usable without ComfyUI.

Import the submodules you need (`unlearn_core.evaluation`, `unlearn_core.toyworld`, ...);
this package file stays light so that importing it costs nothing.
"""

__version__ = "0.1.0"
