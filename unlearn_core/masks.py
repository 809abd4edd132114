"""Gradient masks over the trained delta tensors.

`DynamicMask` (Sculpting Memory, arXiv 2504.09039): per weight matrix, an importance score
accumulates the raw gradient (A += dL/dW). After a warm-up the top `density` fraction of |A| in
each matrix becomes the mask; every `update_interval` steps (until `stop_fraction` of training)
the n weakest active entries are dropped and the n strongest inactive ones grown, with
n = tau * #active and tau decaying from `turnover` to 0 by a cosine, so the density stays
constant. A is reset after each mask decision.

`StaticMask` (SalUn-style): one *global* top-`density` threshold over all matrices, computed
once after the warm-up and never changed.

`FullMask`: every entry trainable (a plain fine-tune of the target layers).
"""

from __future__ import annotations

import math

import torch

from .configs import MaskConfig  # noqa: F401  (defined there with its defaults and help)


def _top_fraction(score: torch.Tensor, fraction: float) -> torch.Tensor:
    k = max(1, int(round(fraction * score.numel())))
    flat = torch.zeros(score.numel(), dtype=torch.bool, device=score.device)
    flat[torch.topk(score.flatten(), k, sorted=False).indices] = True
    return flat.view_as(score)


class FullMask:
    """No masking: every entry of every target matrix is trained."""

    def __init__(self, shapes: dict[str, torch.Size], device=None):
        self.masks = {n: torch.ones(s, dtype=torch.bool, device=device) for n, s in shapes.items()}
        self.last_turnover = 0.0
        self.grown: dict[str, torch.Tensor] = {}

    def accumulate(self, grads: dict[str, torch.Tensor]) -> None:
        pass

    def initialise(self) -> None:
        pass

    def maybe_update(self, step: int, total_steps: int) -> bool:
        return False

    def density(self) -> float:
        total = sum(m.numel() for m in self.masks.values())
        return sum(int(m.sum()) for m in self.masks.values()) / total


class DynamicMask(FullMask):
    def __init__(self, shapes: dict[str, torch.Size], config: MaskConfig, device=None):
        super().__init__(shapes, device)
        self.config = config
        self.scores = {n: torch.zeros(s, device=device) for n, s in shapes.items()}

    def accumulate(self, grads: dict[str, torch.Tensor]) -> None:
        for name, g in grads.items():
            self.scores[name] += g

    def _reset_scores(self) -> None:
        for s in self.scores.values():
            s.zero_()

    def initialise(self) -> None:
        """Top-`density` of |A| per matrix, then reset A."""
        for name, score in self.scores.items():
            self.masks[name] = _top_fraction(score.abs(), self.config.density)
        self._reset_scores()

    def turnover_at(self, step: int, total_steps: int) -> float:
        stop = self.config.stop_fraction * total_steps
        if step >= stop or stop <= 0:
            return 0.0
        return self.config.turnover * 0.5 * (1 + math.cos(math.pi * step / stop))

    def maybe_update(self, step: int, total_steps: int) -> bool:
        """Prune-and-regrow every `update_interval` steps; returns True if the mask changed.

        Returns the grown entries through `self.grown` so the optimizer can reset their state."""
        self.grown = {}
        self.last_turnover = 0.0
        if step == 0 or step % self.config.update_interval:
            return False
        tau = self.turnover_at(step, total_steps)
        if tau <= 0:
            return False
        changed = 0
        for name, mask in self.masks.items():
            score = self.scores[name].abs().flatten()
            active = mask.flatten()
            n_active = int(active.sum())
            n = min(int(round(tau * n_active)), n_active, active.numel() - n_active)
            if n <= 0:
                continue
            inf = torch.tensor(float("inf"), device=score.device)
            drop = torch.topk(torch.where(active, score, inf), n, largest=False).indices
            grow = torch.topk(torch.where(active, -inf, score), n, largest=True).indices
            new = active.clone()
            new[drop] = False
            new[grow] = True
            self.masks[name] = new.view_as(mask)
            grown = torch.zeros_like(active)
            grown[grow] = True
            self.grown[name] = grown.view_as(mask)
            changed += n
        total_active = sum(int(m.sum()) for m in self.masks.values())
        self.last_turnover = changed / max(1, total_active)
        self._reset_scores()
        return changed > 0


class StaticMask(DynamicMask):
    """SalUn-style: one global threshold on |A| over all matrices, set once after warm-up."""

    def initialise(self) -> None:
        names = list(self.scores)
        flat = torch.cat([self.scores[n].abs().flatten() for n in names])
        keep = _top_fraction(flat, self.config.density)
        start = 0
        for n in names:
            size = self.scores[n].numel()
            self.masks[n] = keep[start:start + size].view_as(self.scores[n])
            start += size
        self._reset_scores()

    def maybe_update(self, step: int, total_steps: int) -> bool:
        self.grown = {}
        self.last_turnover = 0.0
        return False


def build_mask(config: MaskConfig, shapes: dict[str, torch.Size], device=None) -> FullMask:
    config.validate()
    if config.kind == "dynamic":
        return DynamicMask(shapes, config, device)
    if config.kind == "static":
        return StaticMask(shapes, config, device)
    return FullMask(shapes, device)


class MaskedAdam:
    """Adam on delta tensors where masked-out entries get *no* update.

    Semantics: the gradient is multiplied by the mask; the first and second moments are updated
    only where the mask is on (an inactive entry keeps its moments and its current value frozen);
    the step is applied only where the mask is on. Entries grown into the mask start with fresh
    moments. Biases are never masked (they are not in the target set)."""

    def __init__(self, params: dict[str, torch.Tensor], lr: float, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        self.params = params
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.m = {n: torch.zeros_like(p) for n, p in params.items()}
        self.v = {n: torch.zeros_like(p) for n, p in params.items()}
        self.step_count = 0

    def reset_entries(self, entries: dict[str, torch.Tensor]) -> None:
        for n, sel in entries.items():
            self.m[n][sel] = 0
            self.v[n][sel] = 0

    def reset(self) -> None:
        for n in self.params:
            self.m[n].zero_()
            self.v[n].zero_()
        self.step_count = 0

    @torch.no_grad()
    def step(self, grads: dict[str, torch.Tensor], masks: dict[str, torch.Tensor] | None) -> None:
        """One Adam step; `masks=None` is plain Adam on every entry (no masking cost at all)."""
        self.step_count += 1
        b1, b2 = self.betas
        bc1 = 1 - b1 ** self.step_count
        bc2 = 1 - b2 ** self.step_count
        for n, p in self.params.items():
            g = grads[n]
            if self.weight_decay:
                g = g + self.weight_decay * p
            if masks is None:
                self.m[n].mul_(b1).add_(g, alpha=1 - b1)
                self.v[n].mul_(b2).addcmul_(g, g, value=1 - b2)
                p.sub_(self.lr * (self.m[n] / bc1) / ((self.v[n] / bc2).sqrt() + self.eps))
                continue
            # In place, with the mask as a 0/1 interpolation weight: m <- m + (1-b1)·mask·(g - m)
            # is b1·m + (1-b1)·g where the mask is on and m where it is off (no temporaries of
            # torch.where; this runs every step on every target matrix).
            on = masks[n].to(p.dtype)
            self.m[n].lerp_(g, on * (1 - b1))
            self.v[n].lerp_(g * g, on * (1 - b2))
            denom = (self.v[n] / bc2).sqrt_().add_(self.eps)
            p.addcdiv_(self.m[n] * on, denom, value=-self.lr / bc1)
