"""UNet unlearning: Dynamic Mask + Concept-Aware Loss (arXiv 2504.09039) and the baselines that
share its machinery (SalUn-style static mask, the released code's behaviour, ESD).

The base model is never modified: the run trains a delta per target weight and evaluates the
model as base + delta through `adapter.predict_noise(..., weights=...)`. The distillation teacher
is the same adapter with the delta as it was before the current concept (no second UNet).

Sequential mode erases the concepts one after another (new mask warm-up, fresh optimizer and a
teacher snapshot per concept; with `distillation_bank`, the teacher's and the base model's
predictions for a set of distillation draws are computed once per concept and reused); simultaneous mode erases them all in one run, cycling through the
concepts step by step.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch

from . import __version__
from .concept_set import ConceptSet
from .checkpointing import checkpointed
from .configs import UnetUnlearnConfig
from .layer_selection import select_weights
from .losses import ConceptAwareLossConfig, alignment_loss, esd_target
from .masks import MaskedAdam, build_mask
from .metadata import redact_concept_names
from .protocol import DenoiserAdapter
from .training_data import ConceptData, RetainData, prepare_concept_data, prepare_retain_data


class UnlearnCancelled(RuntimeError):
    """Raised when `should_cancel()` answers True; the base model is untouched and nothing is written."""


@dataclass
class UnlearnResult:
    deltas: dict[str, torch.Tensor]
    stats: list[dict]
    config: dict
    concepts: list[dict]
    retain_prompts: list[str]
    base_model_hash: str
    seconds: float
    seconds_data: float
    train_steps: int
    library_version: str = __version__
    notes: list[str] = field(default_factory=list)

    @property
    def seconds_per_step(self) -> float:
        train = [s["seconds"] for s in self.stats if s["phase"] == "train"]
        return float(np.mean(train)) if train else float("nan")

    def metadata(self, hash_concept_names: bool = False, key: bytes | None = None) -> dict:
        """What saved files carry about the run; with hash_concept_names, concept names as keyed
        hashes and no retain prompts (`metadata.redact_concept_names`; `key`: see there)."""
        meta = {
            "method": "unet_unlearning", "concepts": self.concepts, "retain_prompts": self.retain_prompts,
            "config": self.config, "base_model_hash": self.base_model_hash,
            "library": "unlearn_core", "library_version": self.library_version,
        }
        return redact_concept_names(meta, key) if hash_concept_names else meta


def weights_hash(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class _Step:
    """Draws the random parts of one training step from a seeded generator."""

    def __init__(self, adapter: DenoiserAdapter, gen: torch.Generator, batch: int):
        self.adapter, self.gen, self.batch = adapter, gen, batch

    def pick(self, n: int) -> torch.Tensor:
        return torch.randint(0, n, (self.batch,), generator=self.gen)

    def noised(self, x0: torch.Tensor):
        noise = torch.randn(x0.shape, generator=self.gen).to(x0)
        t = torch.randint(0, self.adapter.num_train_timesteps, (len(x0),), generator=self.gen).to(x0.device)
        return self.adapter.add_noise(x0, noise, t), noise, t


def concept_phases(config: UnetUnlearnConfig, n_concepts: int) -> list[list[int]]:
    """Which concepts are trained together: one at a time (sequential) or all at once."""
    if config.mode == "sequential":
        return [[i] for i in range(n_concepts)]
    return [list(range(n_concepts))]


def planned_steps(config: UnetUnlearnConfig, n_concepts: int) -> int:
    """How many progress steps `unlearn_unet` reports for `n_concepts` concepts (mask warm-up included)."""
    warmup = config.mask.warmup_steps if config.mask.needs_warmup else 0
    return sum(config.steps_per_concept * len(p) + warmup for p in concept_phases(config, n_concepts))


def unlearn_unet(adapter: DenoiserAdapter, concept_set: ConceptSet, config: UnetUnlearnConfig | None = None,
                 progress: Callable[[int, int, dict], None] | None = None,
                 should_cancel: Callable[[], bool] | None = None,
                 data: list[ConceptData] | None = None, retain: RetainData | None = None,
                 on_phase_end: Callable[[list[str], dict[str, torch.Tensor]], None] | None = None) -> UnlearnResult:
    """Erase `concept_set` from the adapter's denoiser; returns the deltas and per-step statistics.

    `data`/`retain` may be passed to reuse prepared training data across runs (benchmarks);
    `on_phase_end(erased_so_far, deltas)` is called after each concept of a sequential run (once
    for a simultaneous run) with a copy of the deltas at that point."""
    config = config or UnetUnlearnConfig()
    config.validate()
    concept_set.validate(check_files=True)
    t_start = time.time()
    base = adapter.denoiser_weights()
    names = select_weights(adapter.module_types(), config.target)
    base_targets = {n: base[n].detach() for n in names}
    base_hash = weights_hash(base_targets)
    notes: list[str] = []

    if data is None:
        data = [prepare_concept_data(adapter, c, config.images_per_concept, seed=config.seed * 1000 + 17 * i,
                                     steps=config.sampling_steps, guidance=config.sampling_guidance)
                for i, c in enumerate(concept_set.concepts)]
    for d in data:
        notes += d.notes
    if retain is None:
        retain = prepare_retain_data(adapter, concept_set.retain_prompts, config.retain_images_per_prompt,
                                     seed=config.seed * 1000 + 999, steps=config.sampling_steps,
                                     guidance=config.sampling_guidance)
    seconds_data = time.time() - t_start

    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    sampler = _Step(adapter, gen, config.batch_size)
    deltas = {n: torch.zeros_like(base_targets[n], dtype=torch.float32) for n in names}
    if config.warm_start == "closed_form":
        deltas.update(closed_form_warm_start(adapter, concept_set, names, notes))
    for d in deltas.values():
        d.requires_grad_(True)
    needs_uncond = config.loss.kind == "esd" or (config.loss.preserve_unconditional and config.loss.distillation_weight > 0)
    uncond = adapter.encode_prompts([""]) if needs_uncond else None

    def student_weights():
        return {n: base_targets[n] + deltas[n].to(base_targets[n].dtype) for n in names}

    def frozen_weights(snapshot):
        if snapshot is None:
            return None
        return {n: base_targets[n] + snapshot[n].to(base_targets[n].dtype) for n in names}

    # checkpointing wraps the UNet's blocks for the whole loop and unwraps them however it ends
    with checkpointed(adapter.unet) if config.gradient_checkpointing else contextlib.nullcontext():
        phases = concept_phases(config, len(data))
        total_steps = planned_steps(config, len(data))
        stats: list[dict] = []
        done = 0
        train_steps = 0
        erased_before: list[int] = []
        adversarial: dict[int, torch.Tensor] = {}  # concept index -> the attacker's conditioning
        use_adversarial = config.adversarial_interval > 0 and config.loss.kind == "concept_aware"
        for phase in phases:
            steps = config.steps_per_concept * len(phase)
            teacher = frozen_weights({n: d.detach().clone() for n, d in deltas.items()}) if erased_before else None
            mask = build_mask(config.mask, {n: d.shape for n, d in deltas.items()})
            optim = MaskedAdam(deltas, lr=config.lr)
            warmup = config.mask.warmup_steps if config.mask.needs_warmup else 0
            bank = None
            if config.distillation_bank > 0 and config.loss.kind == "concept_aware" and config.loss.distillation_weight > 0:
                bank = _distillation_bank(adapter, sampler, data, phase, erased_before, retain,
                                          uncond if config.loss.preserve_unconditional else None, teacher,
                                          config.loss.retain_reference, config.distillation_bank * len(phase),
                                          should_cancel)
            for step in range(-warmup, steps):
                if should_cancel is not None and should_cancel():
                    raise UnlearnCancelled("unlearning cancelled; the input model is unchanged and nothing was written")
                t0 = time.time()
                ci = phase[(step + warmup) % len(phase)]
                d = data[ci]
                weights = student_weights()
                terms: dict[str, torch.Tensor] = {}
                grads = None  # the concept-aware branch computes its gradients pass by pass
                idx = sampler.pick(len(d.latents))
                x_t, noise, t = sampler.noised(d.latents[idx])
                tmpl = sampler.pick(len(d.cond))
                cond_c = d.cond[tmpl]
                if step < 0:
                    # Warm-up: plain denoising loss on the concept images; gradients only feed the mask.
                    terms["warmup"] = alignment_loss(adapter.predict_noise(x_t, t, cond_c, weights), noise)
                elif config.loss.kind == "esd":
                    with torch.no_grad():
                        ref = adapter.predict_noise(torch.cat([x_t, x_t]), torch.cat([t, t]),
                                                    torch.cat([uncond.expand(len(x_t), -1, -1), cond_c]),
                                                    teacher)  # ESD's reference is the frozen model
                        e_u, e_c = ref.chunk(2)
                    target = esd_target(e_u, e_c, config.loss.esd_negative_guidance)
                    terms["concept"] = torch.nn.functional.mse_loss(adapter.predict_noise(x_t, t, cond_c, weights), target)
                else:
                    if use_adversarial and step % config.adversarial_interval == 0:
                        adversarial[ci] = _adversarial_condition(adapter, sampler, d, adversarial.get(ci), weights, config)
                    with torch.no_grad():
                        target = superclass_target(adapter, x_t, t, d.superclass_cond[tmpl], cond_c, config.loss,
                                                    weights, teacher)
                    concept = StudentTerm("concept", 1.0, x_t, t, cond_c, target)
                    if ci in adversarial:  # the same images under the attacker's conditioning
                        concept = StudentTerm("concept", 1.0, torch.cat([x_t, x_t]), torch.cat([t, t]),
                                              torch.cat([cond_c, adversarial[ci].expand(len(x_t), -1, -1)]),
                                              torch.cat([target, target]))
                    sidx = sampler.pick(len(d.superclass_latents))
                    xs_t, noise_s, t_s = sampler.noised(d.superclass_latents[sidx])
                    student_terms = [concept, StudentTerm("alignment", config.loss.alignment_weight, xs_t, t_s,
                                                          d.superclass_cond[sampler.pick(len(d.superclass_cond))], noise_s)]
                    if bank is not None:  # a draw whose reference prediction was computed when the phase began
                        kd_x, kd_t, kd_c, kd_target = bank[int(torch.randint(0, len(bank), (1,), generator=sampler.gen))]
                    else:
                        kd_x, kd_t, kd_c, kd_prev = _distillation_batch(sampler, data, erased_before, retain, d,
                                                                       uncond if config.loss.preserve_unconditional else None)
                    if kd_x is not None and config.loss.distillation_weight > 0:
                        if bank is None:
                            with torch.no_grad():
                                kd_target = distillation_target(adapter, kd_x, kd_t, kd_c, kd_prev, teacher,
                                                                 config.loss.retain_reference)
                        student_terms.append(StudentTerm("distillation", config.loss.distillation_weight, kd_x, kd_t,
                                                         kd_c, kd_target))
                    grads, values = student_gradients(adapter, student_terms, weights, [deltas[n] for n in names],
                                                      config.student_chunk_rows)
                    terms.update(values)
                loss = sum(terms.values())
                if grads is None:
                    grads = torch.autograd.grad(loss, [deltas[n] for n in names])
                grads = dict(zip(names, grads))
                mask.accumulate(grads)
                row = {"step": done, "phase": "warmup" if step < 0 else "train", "concept": d.concept.name,
                       "loss": float(loss.detach())}
                row.update({f"{k}_loss": float(v.detach()) for k, v in terms.items()})
                if step == -1 or (step == 0 and warmup == 0):
                    mask.initialise()
                if step >= 0:
                    optim.step(grads, None if config.mask.kind == "none" else mask.masks)
                    train_steps += 1
                    if mask.maybe_update(step + 1, steps):
                        optim.reset_entries(mask.grown)
                row["density"] = mask.density()
                row["turnover"] = mask.last_turnover
                row["seconds"] = time.time() - t0
                stats.append(row)
                done += 1
                if progress is not None:
                    progress(done, total_steps, row)
            erased_before += phase
            if on_phase_end is not None:
                on_phase_end([data[i].concept.name for i in erased_before], {n: d.detach().clone() for n, d in deltas.items()})

    result_deltas = {n: d.detach().clone() for n, d in deltas.items()}
    return UnlearnResult(
        deltas=result_deltas, stats=stats, config=config.to_dict(),
        concepts=[{"name": c.name, "superclass": c.superclass} for c in concept_set.concepts],
        retain_prompts=list(concept_set.retain_prompts), base_model_hash=base_hash,
        seconds=time.time() - t_start, seconds_data=seconds_data, train_steps=train_steps, notes=notes,
    )


def closed_form_warm_start(adapter: DenoiserAdapter, concept_set: ConceptSet, names: list[str],
                           notes: list[str]) -> dict[str, torch.Tensor]:
    """The closed-form key/value edit (`unlearn_core.closed_form`, default settings) as the starting
    deltas of a run whose target includes those weights."""
    from .closed_form import closed_form_edit

    edit = closed_form_edit(adapter, concept_set)
    outside = sorted(set(edit.deltas) - set(names))
    if outside:
        raise ValueError(f"warm_start 'closed_form' edits the cross-attention keys and values, which this target "
                         f"does not train (e.g. {outside[0]!r}); use a target that includes them, such as "
                         f"'cross_attention'")
    notes.append(f"warm start: the closed-form edit ({edit.seconds:.1f}s)")
    return {n: d.to(torch.float32).clone() for n, d in edit.deltas.items()}


@dataclass
class StudentTerm:
    """One term of the concept-aware loss: `weight` x the mean squared error between the student's
    prediction on (x, t, cond) and `reference` (a target computed without gradients)."""

    name: str
    weight: float
    x: torch.Tensor
    t: torch.Tensor
    cond: torch.Tensor
    reference: torch.Tensor


def student_gradients(adapter: DenoiserAdapter, terms: list[StudentTerm], weights: dict[str, torch.Tensor],
                      params: list[torch.Tensor], chunk_rows: int = 0) -> tuple[tuple[torch.Tensor, ...], dict]:
    """The gradient of sum(weight x MSE) over `terms` with respect to `params`, and each term's value.

    All rows of all terms run through the student in one batch, or (chunk_rows > 0) in forward and
    backward passes of at most `chunk_rows` rows whose gradients add up: each row's squared error is
    scaled by its term's weight / the term's element count, so the sum over the passes is the same
    loss. Only the activations of one pass are alive at a time. A term of weight 0 runs no rows."""
    terms = [term for term in terms if term.weight != 0]
    x = torch.cat([term.x for term in terms])
    t = torch.cat([term.t for term in terms])
    cond = torch.cat([term.cond for term in terms])
    reference = torch.cat([term.reference for term in terms]).detach()
    scale = torch.cat([torch.full((len(term.x),), term.weight / term.reference.numel(), device=x.device)
                       for term in terms])
    owner = torch.cat([torch.full((len(term.x),), i, dtype=torch.long, device=x.device) for i, term in enumerate(terms)])
    size = chunk_rows if chunk_rows > 0 else len(x)
    grads, values = None, torch.zeros(len(terms), device=x.device)
    for start in range(0, len(x), size):
        rows = slice(start, start + size)
        pred = adapter.predict_noise(x[rows], t[rows], cond[rows], weights)
        per_row = (pred - reference[rows].to(pred.dtype)).pow(2).flatten(1).sum(1) * scale[rows]
        # the student weights' graph (base + delta) is walked once per pass: its add and cast save no
        # tensors, so the walk can repeat
        g = torch.autograd.grad(per_row.sum(), params)
        if grads is None:
            grads = g
        else:
            for total, part in zip(grads, g):
                total.add_(part)  # in place: one extra set of gradients at a time, not two
        values.index_add_(0, owner[rows], per_row.detach().to(values.dtype))
    return grads, {term.name: values[i] for i, term in enumerate(terms)}


def superclass_target(adapter: DenoiserAdapter, x_t, t, superclass_cond, concept_cond, loss: ConceptAwareLossConfig,
                       student, teacher) -> torch.Tensor:
    """The concept-aware loss's target: the superclass prediction of the student or of the frozen
    teacher (loss.superclass_reference; teacher None = the base model), steered away from the
    frozen teacher's prediction for the concept when superclass_guidance > 0. (The concept term
    must come from a frozen model: the student's own would just chase the target.)"""
    reference = student if loss.superclass_reference == "student" else teacher
    g = loss.superclass_guidance
    if g == 0:
        return adapter.predict_noise(x_t, t, superclass_cond, reference)
    if loss.superclass_reference == "teacher":
        eps_s, eps_c = adapter.predict_noise(torch.cat([x_t, x_t]), torch.cat([t, t]),
                                             torch.cat([superclass_cond, concept_cond]), teacher).chunk(2)
    else:
        eps_s = adapter.predict_noise(x_t, t, superclass_cond, student)
        eps_c = adapter.predict_noise(x_t, t, concept_cond, teacher)
    return eps_s - g * (eps_c - eps_s)


def _adversarial_condition(adapter: DenoiserAdapter, sampler: _Step, d: ConceptData, start: torch.Tensor | None,
                           weights: dict[str, torch.Tensor], config: UnetUnlearnConfig) -> torch.Tensor:
    """The soft-prompt attacker's move against the current model: a conditioning (warm-started
    from the last one, else the concept's first prompt) optimised so the model reconstructs the
    concept's images. Returns it detached (1 x L x D)."""
    frozen = {n: w.detach() for n, w in weights.items()}
    soft = (start if start is not None else d.cond[:1]).detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([soft], lr=config.adversarial_lr)
    for _ in range(config.adversarial_steps):
        x_t, noise, t = sampler.noised(d.latents[sampler.pick(len(d.latents))])
        loss = torch.nn.functional.mse_loss(adapter.predict_noise(x_t, t, soft.expand(len(x_t), -1, -1), frozen), noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return soft.detach()


def distillation_target(adapter: DenoiserAdapter, x, t, c, n_prev: int, teacher,
                        retain_reference: str) -> torch.Tensor:
    """The first `n_prev` rows (concepts erased earlier) are held at the teacher; the rest
    (retained prompts, empty prompt) at the teacher or at the base model (`weights=None`)."""
    if retain_reference == "teacher" or teacher is None or n_prev == len(x):
        return adapter.predict_noise(x, t, c, teacher)
    rest = adapter.predict_noise(x[n_prev:], t[n_prev:], c[n_prev:], None)
    if n_prev == 0:
        return rest
    return torch.cat([adapter.predict_noise(x[:n_prev], t[:n_prev], c[:n_prev], teacher), rest])


def _distillation_bank(adapter: DenoiserAdapter, sampler: _Step, data: list[ConceptData], phase: list[int],
                       erased_before: list[int], retain: RetainData | None, uncond: torch.Tensor | None, teacher,
                       retain_reference: str, size: int,
                       should_cancel: Callable[[], bool] | None = None) -> list[tuple] | None:
    """`size` distillation batches (as `_distillation_batch` draws them, cycling through the phase's
    concepts) with their reference predictions: (x_t, t, cond, target) each. The reference of every
    row is frozen while the phase lasts (the teacher snapshot, or the base model), so a target
    computed now is the one a later step would compute. None when there is nothing to distil."""
    bank = []
    with torch.no_grad():
        for i in range(size):
            if should_cancel is not None and should_cancel():
                raise UnlearnCancelled("unlearning cancelled; the input model is unchanged and nothing was written")
            x, t, c, n_prev = _distillation_batch(sampler, data, erased_before, retain, data[phase[i % len(phase)]],
                                                  uncond)
            if x is None:
                return None
            bank.append((x, t, c, distillation_target(adapter, x, t, c, n_prev, teacher, retain_reference)))
    return bank


def _distillation_batch(sampler: _Step, data: list[ConceptData], erased_before: list[int],
                        retain: RetainData | None, current: ConceptData, uncond: torch.Tensor | None):
    """Noised latents + conditioning on which the student must match its reference: images of a
    concept erased earlier (with its own prompt, so it stays erased), retained prompts, and (if
    `uncond` is given) the empty prompt on retained images, or on the current concept's
    superclass images when there are no retain prompts. The last value is how many leading rows
    are concepts erased earlier."""
    xs, ts, cs = [], [], []
    if erased_before:
        j = erased_before[int(torch.randint(0, len(erased_before), (1,), generator=sampler.gen))]
        prev = data[j]
        x_t, _, t = sampler.noised(prev.latents[sampler.pick(len(prev.latents))])
        xs.append(x_t), ts.append(t), cs.append(prev.cond[sampler.pick(len(prev.cond))])
    if retain is not None:
        idx = sampler.pick(len(retain.latents))
        x_t, _, t = sampler.noised(retain.latents[idx])
        xs.append(x_t), ts.append(t), cs.append(retain.cond[idx])
    if uncond is not None:
        pool = retain.latents if retain is not None and len(retain.latents) else current.superclass_latents
        x_t, _, t = sampler.noised(pool[sampler.pick(len(pool))])
        xs.append(x_t), ts.append(t), cs.append(uncond.expand(len(x_t), -1, -1))
    if not xs:
        return None, None, None, 0
    n_prev = len(xs[0]) if erased_before else 0
    return torch.cat(xs), torch.cat(ts), torch.cat(cs), n_prev
