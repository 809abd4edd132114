"""Loss terms of the UNet unlearning methods, all in eps space.

- concept-aware loss (Sculpting Memory): pull the model's prediction for the concept onto its
  prediction for the superclass at the same x_t and t, with a stop-gradient on the target;
- alignment/retention: plain denoising loss on superclass images with the superclass prompt;
- knowledge distillation: keep the student's predictions for earlier-erased concepts and retained
  prompts at the teacher's (the model as it was before the current concept);
- ESD (Gandikota et al. 2023): pull the concept's prediction onto negatively guided base
  predictions, eps(x,∅) - eta * (eps(x,c) - eps(x,∅)).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class ConceptAwareLossConfig:
    kind: str = "concept_aware"  # or "esd"
    alignment_weight: float = 0.25
    distillation_weight: float = 1.0
    # The distillation also keeps the unconditional prediction (the empty prompt) at the teacher's:
    # classifier-free guidance uses it in every image, so letting it drift changes retained
    # concepts too (toy model, 3 objects erased: retained accuracy 0.56 -> 0.71 with it).
    preserve_unconditional: bool = True
    # What retained prompts (and the empty prompt) are held at: "base" = the input model, so
    # drift does not pile up over a long sequential run; "teacher" = base + the deltas of the
    # concepts erased before this one (the paper's teacher, which carries earlier drift along).
    # Concepts erased earlier are always held at the teacher, so they stay erased.
    retain_reference: str = "base"
    # Which model gives the superclass target: "student" = the model being trained (the paper;
    # its superclass prediction is free to drift, and when every layer is trained it can drift
    # towards the concept instead of the concept moving to it), "teacher" = frozen, the model as
    # it was before the current concept.
    superclass_reference: str = "student"
    # The superclass prompt itself sometimes draws the concept (toy model: "a polygon" is a
    # triangle in 9 of 32 images), which is a floor for what pulling onto it can erase. With
    # g > 0 the target is the superclass steered away from the concept, ESD-style:
    # eps(s) - g * (eps_teacher(c) - eps(s)), eps(s) from the superclass_reference model and the
    # concept's prediction always from the frozen teacher. 0 = plain.
    superclass_guidance: float = 0.0
    esd_negative_guidance: float = 1.0

    def validate(self) -> None:
        if self.kind not in ("concept_aware", "esd"):
            raise ValueError(f"loss kind must be 'concept_aware' or 'esd', not {self.kind!r}")
        if self.retain_reference not in ("base", "teacher"):
            raise ValueError(f"loss retain_reference must be 'base' or 'teacher', not {self.retain_reference!r}")
        if self.superclass_reference not in ("student", "teacher"):
            raise ValueError(f"loss superclass_reference must be 'student' or 'teacher', "
                             f"not {self.superclass_reference!r}")
        for name in ("alignment_weight", "distillation_weight", "esd_negative_guidance", "superclass_guidance"):
            if getattr(self, name) < 0:
                raise ValueError(f"loss {name} must be >= 0, got {getattr(self, name)}")


def concept_aware_loss(eps_concept: torch.Tensor, eps_superclass: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(eps_concept, eps_superclass.detach())


def alignment_loss(eps_superclass: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(eps_superclass, noise)


def distillation_loss(eps_student: torch.Tensor, eps_teacher: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(eps_student, eps_teacher.detach())


def esd_target(eps_uncond: torch.Tensor, eps_concept: torch.Tensor, negative_guidance: float) -> torch.Tensor:
    return (eps_uncond - negative_guidance * (eps_concept - eps_uncond)).detach()
