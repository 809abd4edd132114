"""Extra conditioning carried inside the conditioning tensor.

The trainers pass a prompt's conditioning around as one [tokens, width] tensor: they index it,
concatenate it, expand it. SDXL's UNet also takes a vector per image (its ADM input: the pooled
text embedding and the image-size embedding). `AdmPacking` stores that vector as extra, zero-padded
rows after the token rows, so it follows every operation the trainers apply, and the adapter splits
it off again right before the UNet call. Both the diffusers adapter and the ComfyUI bridge use it.
"""

from __future__ import annotations

import dataclasses
import math

import torch


@dataclasses.dataclass(frozen=True)
class AdmPacking:
    """A vector `y` of `channels` values carried as extra rows (zero-padded) after the token rows of a
    [B, tokens, width] conditioning tensor."""

    channels: int  # values per image (ComfyUI's SDXL: adm_in_channels 2816; diffusers' SDXL: 1280 + 6)
    width: int  # the context dimension (SDXL: 2048)

    @property
    def rows(self) -> int:
        return math.ceil(self.channels / self.width)

    def pack(self, context: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if y.shape[-1] != self.channels:
            raise ValueError(f"the extra conditioning vector has {y.shape[-1]} values, the UNet expects {self.channels}")
        padded = torch.nn.functional.pad(y, (0, self.rows * self.width - self.channels))
        return torch.cat([context, padded.view(len(y), self.rows, self.width).to(context)], dim=1)

    def unpack(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(context [B, tokens, width], y [B, channels])."""
        return cond[:, :-self.rows], cond[:, -self.rows:].reshape(len(cond), -1)[:, :self.channels]
