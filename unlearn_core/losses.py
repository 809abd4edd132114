"""Loss terms of the UNet unlearning methods, all in eps space.

- concept-aware loss (Sculpting Memory): pull the model's prediction for the concept onto its
  prediction for the superclass at the same x_t and t, with a stop-gradient on the target;
- alignment/retention: plain denoising loss on superclass images with the superclass prompt;
- knowledge distillation: keep the student's predictions for earlier-erased concepts and retained
  prompts at the teacher's (the model as it was before the current concept);
- ESD (Gandikota et al. 2023): pull the concept's prediction onto negatively guided base
  predictions, eps(x,∅) - eta * (eps(x,c) - eps(x,∅)).

The first three are each a mean squared error between the student's prediction and a reference
computed without gradients (superclass prediction, noise, teacher prediction); the trainer runs them
as one weighted sum, in one or several passes (`unet_unlearning.StudentTerm`, `student_gradients`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .configs import ConceptAwareLossConfig  # noqa: F401  (defined there with its defaults and help)


def alignment_loss(eps_superclass: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(eps_superclass, noise)


def esd_target(eps_uncond: torch.Tensor, eps_concept: torch.Tensor, negative_guidance: float) -> torch.Tensor:
    return (eps_uncond - negative_guidance * (eps_concept - eps_uncond)).detach()
