"""How evaluation images are sampled: the sampler, its steps and guidance, images and seeds.

Kept apart from `evaluation` (and free of heavy imports) so the CLI can offer the choices
without loading torch or diffusers.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Samplers `SamplingConfig.sampler` can name: a diffusers scheduler class and its extra settings.
#: Each is built from the pipeline's own scheduler config, so the noise schedule stays the model's.
SAMPLERS = {
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "dpm_solver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "sde_dpm_solver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "ddpm": ("DDPMScheduler", {}),
}


@dataclass
class SamplingConfig:
    """How evaluation images are generated.

    The defaults are the toy model's sampler settings: Euler ancestral, 120 steps, guidance 3, the
    best of the samplers compared in the README (base model quality) at six times the cost of 20
    DPM-Solver++ steps; the deterministic solvers draw the prompted style far less often.
    `sampler=None` keeps the pipeline's own scheduler."""

    images_per_prompt: int = 8
    num_inference_steps: int = 120
    guidance_scale: float = 3.0
    seed: int = 0
    batch_size: int = 128
    sampler: str | None = "euler_ancestral"
    # False: image i of every prompt starts from seed `seed + i` — the same noise across prompts and
    # models, for before/after comparisons. True: image i of prompt k from `seed + k *
    # images_per_prompt + i`, every image its own noise — for estimating a rate over many prompts,
    # where shared seeds would make all prompts' images rise and fall together.
    distinct_seeds: bool = False

    def __post_init__(self):
        if self.sampler is not None and self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}: choose one of {', '.join(SAMPLERS)}, "
                             f"or None for the pipeline's own scheduler")
        for name in ("images_per_prompt", "num_inference_steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"SamplingConfig.{name} must be at least 1, got {getattr(self, name)}")


def sampling_scheduler(pipe, sampler: str | None):
    """A fresh scheduler for `sampler` on `pipe`'s noise schedule (`pipe.scheduler` for None)."""
    if sampler is None:
        return pipe.scheduler
    import diffusers

    class_name, extra = SAMPLERS[sampler]
    return getattr(diffusers, class_name).from_config(pipe.scheduler.config, **extra)


def sampler_settings(cfg: SamplingConfig) -> dict:
    """The part of `cfg` that says how an image is drawn (not how many or from which seeds), for
    benchmark records."""
    return {"sampler": cfg.sampler, "num_inference_steps": cfg.num_inference_steps,
            "guidance_scale": cfg.guidance_scale}


#: The defaults, for help texts.
SAMPLING = SamplingConfig()
