"""Differentiable prompt encoding for a transformers CLIPTextModel, with two hooks the text-encoder
methods need: replacing one token's embedding by a learned vector (textual inversion), and
running with substituted weights (base + LoRA delta) without touching the module."""

from __future__ import annotations

import re

import torch
from torch.func import functional_call

from ..protocol import PLACEHOLDER

_LAYER_LINEAR = re.compile(r"(?:^|\.)encoder\.layers\.(\d+)\.(self_attn\.(?:q|k|v|out)_proj|mlp\.fc[12])$")


class ClipTextAdapter:
    """TextEncoderAdapter (unlearn_core/protocol.py) for a transformers CLIPTextModel and its tokenizer."""

    def __init__(self, tokenizer, text_encoder, clip_skip: int = 0, device: str | torch.device = "cpu"):
        """`clip_skip` follows diffusers: 0 = the last layer conditions the UNet, 1 = the penultimate, ..."""
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.clip_skip = clip_skip
        self.device = torch.device(device)
        self.text_encoder.requires_grad_(False)
        self.text_encoder.eval()
        self.num_layers = text_encoder.config.num_hidden_layers
        if not 0 <= clip_skip < self.num_layers:
            raise ValueError(f"clip_skip must be in [0, {self.num_layers - 1}], got {clip_skip}")
        ids = tokenizer(PLACEHOLDER, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise ValueError(f"the placeholder {PLACEHOLDER!r} is not a single token for this tokenizer")
        self.placeholder_id = ids[0]
        self._override: tuple[torch.Tensor, torch.Tensor] | None = None
        embedding = text_encoder.get_input_embeddings()
        embedding.register_forward_hook(self._replace_placeholder)
        self.token_embedding = embedding

    @property
    def used_layer(self) -> int:
        """Index (0-based) of the encoder layer whose output conditions the UNet."""
        return self.num_layers - 1 - self.clip_skip

    def final_layer_names(self, n: int, kinds: tuple[str, ...] = ("self_attn", "mlp")) -> list[str]:
        """Module names of the linear layers of the last `n` layers up to the used one."""
        if not 1 <= n <= self.used_layer + 1:
            raise ValueError(f"num_layers must be in [1, {self.used_layer + 1}] for this encoder "
                             f"(clip_skip={self.clip_skip}), got {n}")
        first = self.used_layer - n + 1
        names = []
        for name, module in self.text_encoder.named_modules():
            m = _LAYER_LINEAR.search(name)
            if m and first <= int(m.group(1)) <= self.used_layer and m.group(2).split(".")[0] in kinds:
                names.append(name)
        return names

    def layer_names(self, layers: list[int], kinds: tuple[str, ...]) -> list[str]:
        names = []
        for name, _ in self.text_encoder.named_modules():
            m = _LAYER_LINEAR.search(name)
            if m and int(m.group(1)) in layers and m.group(2).split(".")[0] in kinds:
                names.append(name)
        return names

    def weights(self) -> dict[str, torch.Tensor]:
        return dict(self.text_encoder.named_parameters())

    def _replace_placeholder(self, module, inputs, output):
        if self._override is None:
            return output
        ids, vectors = self._override
        hit = (ids == self.placeholder_id).unsqueeze(-1)
        return torch.where(hit, vectors[:, None, :].to(output.dtype), output)

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        return self.tokenizer(list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length,
                              truncation=True, return_tensors="pt").input_ids.to(self.device)

    def encode(self, prompts: list[str], weights: dict[str, torch.Tensor] | None = None,
               token_vectors: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states that condition the UNet (differentiable in `weights` and `token_vectors`).

        token_vectors: one vector per prompt, used wherever the prompt has the placeholder '*'."""
        ids = self.tokenize(prompts)
        self._override = (ids, token_vectors) if token_vectors is not None else None
        try:
            kwargs = {"output_hidden_states": self.clip_skip > 0}
            if weights:
                out = functional_call(self.text_encoder, weights, (ids,), kwargs, strict=False)
            else:
                out = self.text_encoder(ids, **kwargs)
        finally:
            self._override = None
        if self.clip_skip == 0:
            return out.last_hidden_state
        hidden = out.hidden_states[-(self.clip_skip + 1)]
        norm = self.text_encoder.final_layer_norm if hasattr(self.text_encoder, "final_layer_norm") \
            else self.text_encoder.text_model.final_layer_norm
        if weights:
            prefix = next(n for n, m in self.text_encoder.named_modules() if m is norm)
            w = {k[len(prefix) + 1:]: v for k, v in weights.items() if k.startswith(prefix + ".")}
            return functional_call(norm, w, (hidden,), strict=False) if w else norm(hidden)
        return norm(hidden)

    def word_embedding(self, text: str) -> torch.Tensor:
        """Mean input embedding of the tokens of `text` (an initial guess for a learned token)."""
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids[0].to(self.device)
        return self.token_embedding.weight[ids].mean(0).detach().clone()
