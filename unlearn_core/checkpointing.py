"""Gradient checkpointing for a UNet that the trainers run through `torch.func.functional_call`.

Inside `checkpointed(unet)`, each transformer and residual block runs under
`torch.utils.checkpoint` (non-reentrant): the backward pass recomputes the block's activations
instead of keeping them, so a training step keeps only the blocks' inputs and the activations of
one block at a time. The names match diffusers' blocks (`BasicTransformerBlock`, `ResnetBlock2D`)
and ComfyUI's (`BasicTransformerBlock`, `ResBlock`).

`functional_call` puts the student's weights into the module only while the forward call runs;
the backward pass, and with it the recomputation, comes after it has returned. So each block
captures the tensors it ran with (its parameters and buffers as `functional_call` set them) and
recomputes with exactly those, not with whatever the module holds by then.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch.func import functional_call
from torch.utils.checkpoint import checkpoint

#: class names of the blocks that are checkpointed (diffusers and ComfyUI UNets)
CHECKPOINTED_BLOCKS = ("BasicTransformerBlock", "ResnetBlock2D", "ResBlock")


def _checkpointed_forward(module: torch.nn.Module, forward):
    recomputing = [False]

    def run(tensors, *args, **kwargs):
        recomputing[0] = True  # the call below reaches this wrapper again: run the block itself
        try:
            return functional_call(module, tensors, args, kwargs, strict=False)
        finally:
            recomputing[0] = False

    def wrapper(*args, **kwargs):
        if recomputing[0] or not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        tensors = {**dict(module.named_parameters()), **dict(module.named_buffers())}
        return checkpoint(run, tensors, *args, use_reentrant=False, **kwargs)

    return wrapper


@contextlib.contextmanager
def checkpointed(unet: torch.nn.Module, block_names: tuple[str, ...] = CHECKPOINTED_BLOCKS) -> Iterator[int]:
    """Checkpoint every block of `unet` whose class is named in `block_names` while the context
    lasts (yields how many); the blocks' own `forward` is restored when it ends, also on errors."""
    patched = []
    try:
        for module in unet.modules():
            if type(module).__name__ in block_names:
                patched.append((module, module.__dict__.get("forward")))
                module.forward = _checkpointed_forward(module, module.forward)
        yield len(patched)
    finally:
        for module, own in patched:
            if own is None:
                del module.forward
            else:
                module.forward = own
