"""`concept-unlearn bench memory-accounting`: peak GPU memory of one training step, computed, not run.

No GPU is needed. The UNet (SD1.5- or SDXL-shaped) is built on PyTorch's `meta` device, where
tensors have shapes and dtypes but no memory, and one student forward runs through it the way
`unlearn_unet` runs it (`functional_call` with base + delta for the trained weights, the frozen
weights in the model's dtype). A `saved_tensors_hooks` pair records every tensor autograd keeps for
the backward pass; those are the activations. Attention is counted as a fused GPU kernel (flash /
memory-efficient attention keeps q, k, v, the output and one fp32 log-sum-exp per query, not the
attention matrix): on `meta` PyTorch would otherwise take the math path, which keeps the matrix.

The peak of a step is then
    frozen weights + training state + student weights + saved activations + backward transient
where
- frozen weights: every UNet parameter in the weight dtype (ComfyUI's bridge and the diffusers
  adapter read the loaded weights in place; the bridge trains an fp16 model over an fp32 copy, so
  the default is bf16, which has the same size);
- training state: the trainer's own objects for the trained matrices, built on `meta` and counted:
  the fp32 deltas, their fp32 gradients (twice when the rows run in several passes: the running
  sum and the pass's), the masked Adam moments, the mask (with the dynamic mask's fp32 gradient
  scores) and, from the second concept on, the teacher's weights;
- student weights: base + delta of the trained matrices in the weight dtype (alive for the step);
- backward transient: twice the largest saved activation (an activation's gradient and the
  gradient of its input exist at once while autograd walks back).
Not counted: the CUDA context and kernels' workspaces (a few hundred MB), allocator fragmentation,
the text encoders and VAE (ComfyUI offloads them while the UNet trains), the training latents
and the distillation bank (a few MB at these sizes).

The number of rows the student runs with gradients comes from `student_rows` and `rows_per_pass`,
which mirror how `unlearn_unet` assembles a step (a test checks them against the trainer).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ...checkpointing import CHECKPOINTED_BLOCKS
from ...layer_selection import select_weights, weight_kinds
from ...masks import MaskedAdam, build_mask
from ...unet_unlearning import UnetUnlearnConfig
from .real_size import SD15_UNET, SDXL, row_config

#: model shape and its native resolution
MODELS = {"sd15": (SD15_UNET, 512), "sdxl": (SDXL["unet"], 1024)}
GIB = 2 ** 30


@dataclass
class MemoryAccountingConfig:
    models: tuple[str, ...] = ("sd15", "sdxl")
    batch_size: int = 1  # training images per step
    weight_dtype: str = "bfloat16"  # frozen weights and activations (ComfyUI trains fp16 models in fp32)
    budget_gib: float = 12.0  # the GPU size the table is read against
    rows: tuple[str, ...] = field(default=("plain_finetune", "dynamic_mask", "dynamic_mask_later_concept",
                                           "dynamic_mask_chunked", "dynamic_mask_chunked_checkpointed"))


def student_rows(config: UnetUnlearnConfig, batch_size: int, retain_prompts: bool = True,
                 concepts_erased_before: int = 0) -> int:
    """Rows the student runs with gradients in one step of `unlearn_unet` (concept-aware loss): the
    concept's images (twice with an adversarial conditioning), the superclass images (when the
    alignment term has a weight), and the distillation rows (an earlier concept's images, retained
    images, the empty prompt). `student_chunk_rows` splits them into passes (`rows_per_pass`)."""
    rows = batch_size * (2 if config.adversarial_interval > 0 else 1)
    rows += batch_size * (config.loss.alignment_weight != 0)
    if config.loss.distillation_weight > 0:
        rows += batch_size * (concepts_erased_before > 0)
        rows += batch_size * retain_prompts
        rows += batch_size * config.loss.preserve_unconditional
    return rows


def rows_per_pass(config: UnetUnlearnConfig, rows: int) -> int:
    """The most rows one student pass runs (all of them unless `student_chunk_rows` is set)."""
    return min(rows, config.student_chunk_rows) if config.student_chunk_rows > 0 else rows


class _FusedAttention(torch.autograd.Function):
    """What a flash / memory-efficient attention kernel keeps for backward, on `meta` tensors."""

    @staticmethod
    def forward(ctx, q, k, v):
        out = torch.empty_like(q)
        ctx.save_for_backward(q, k, v, out, torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device))
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k, v, _, _ = ctx.saved_tensors
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _fused_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kwargs):
    if attn_mask is not None or is_causal:
        raise ValueError("memory accounting models unmasked, non-causal attention only (the UNet's)")
    return _FusedAttention.apply(query, key, value)


def _unet_on_meta(model: str, dtype: torch.dtype):
    from diffusers import UNet2DConditionModel

    shape, resolution = MODELS[model]
    with torch.device("meta"):
        unet = UNet2DConditionModel(**{**shape, "sample_size": resolution // 8})
    # frozen, as the adapters hold it: autograd saves no input for a frozen weight's own gradient
    return unet.to(dtype).requires_grad_(False), shape, resolution


def _saved_activations(unet, shape: dict, resolution: int, rows: int, weights: dict, frozen: list,
                       dtype: torch.dtype, checkpointing: bool = False) -> tuple[int, int]:
    """(bytes of the distinct tensors autograd saves in one forward, bytes of the largest), frozen
    weights excluded (they are counted once, as weights).

    With `checkpointing`, as `unlearn_core.checkpointing` runs the step: each checkpointed block
    keeps only its tensor inputs, and the backward pass recomputes one block at a time, so the
    activations are what is saved outside the blocks + every block's inputs + the largest block's
    own saved tensors."""
    frozen_storages = {t.untyped_storage()._cdata for t in frozen}
    saved: dict[int, int] = {}  # storage -> bytes, outside any checkpointed block
    inside: list[dict[int, int]] = []  # per checkpointed block call: its own saved tensors
    inputs: dict[int, int] = {}  # the blocks' tensor inputs
    active: list[int] = []
    # every tensor counted stays referenced until the end, so that no later tensor's storage can take
    # a freed one's address and be merged with it
    held: list[torch.Tensor] = []

    def pack(t):
        held.append(t)
        storage = t.untyped_storage()
        if storage._cdata not in frozen_storages:
            where = inside[active[-1]] if checkpointing and active else saved
            where[storage._cdata] = max(where.get(storage._cdata, 0), storage.nbytes())
        return t

    def enter(module, args, kwargs):
        if not active:
            inside.append({})
            active.append(len(inside) - 1)
            for a in list(args) + list(kwargs.values()):
                if isinstance(a, torch.Tensor):
                    held.append(a)
                    inputs[a.untyped_storage()._cdata] = a.untyped_storage().nbytes()
        else:
            active.append(active[-1])

    def leave(module, args, kwargs, output):
        active.pop()

    hooks = []
    if checkpointing:
        for module in unet.modules():
            if type(module).__name__ in CHECKPOINTED_BLOCKS:
                hooks.append(module.register_forward_pre_hook(enter, with_kwargs=True))
                hooks.append(module.register_forward_hook(leave, with_kwargs=True))

    side = resolution // 8
    meta = {"device": "meta", "dtype": dtype}
    x = torch.empty(rows, shape["in_channels"], side, side, **meta)
    t = torch.zeros(rows, dtype=torch.long, device="meta")
    kwargs = {"encoder_hidden_states": torch.empty(rows, 77, shape["cross_attention_dim"], **meta)}
    if shape.get("addition_embed_type") == "text_time":
        pooled = shape["projection_class_embeddings_input_dim"] - 6 * shape["addition_time_embed_dim"]
        kwargs["added_cond_kwargs"] = {"text_embeds": torch.empty(rows, pooled, **meta),
                                       "time_ids": torch.empty(rows, 6, **meta)}
    # diffusers' attention processors call F.scaled_dot_product_attention by attribute at run time
    original = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = _fused_attention
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            functional_call(unet, weights, (x, t), kwargs, strict=False)
    finally:
        F.scaled_dot_product_attention = original
        for hook in hooks:
            hook.remove()
    if not checkpointing:
        return sum(saved.values()), max(saved.values(), default=0)
    kept = {**saved, **inputs}
    block_peak = max((sum(b.values()) for b in inside), default=0)
    largest = max([*kept.values(), *(v for b in inside for v in b.values())], default=0)
    return sum(kept.values()) + block_peak, largest


def account_row(model: str, row: str, cfg: MemoryAccountingConfig) -> dict:
    """The memory accounting of one (model, row) at the model's native resolution."""
    dtype = getattr(torch, cfg.weight_dtype)
    unet, shape, resolution = _unet_on_meta(model, dtype)
    method, overrides, erased_before = {
        "plain_finetune": ("finetune", {"loss.distillation_weight": 0.0}, 0),
        "dynamic_mask": ("dynamic_mask", {}, 0),
        "dynamic_mask_later_concept": ("dynamic_mask", {}, 1),
        # a later concept (the most rows) in passes of one batch each
        "dynamic_mask_chunked": ("dynamic_mask", {"student_chunk_rows": cfg.batch_size}, 1),
        "dynamic_mask_chunked_checkpointed": ("dynamic_mask", {"student_chunk_rows": cfg.batch_size,
                                                               "gradient_checkpointing": True}, 1),
    }[row]
    tc = row_config(method, overrides, batch_size=cfg.batch_size)
    params = dict(unet.named_parameters())
    names = select_weights(weight_kinds(unet), tc.target)
    weight_bytes = sum(p.numel() * p.element_size() for p in params.values())

    with torch.device("meta"):
        deltas = {n: torch.zeros(params[n].shape, dtype=torch.float32, requires_grad=True) for n in names}
        mask = build_mask(tc.mask, {n: d.shape for n, d in deltas.items()})
        optim = MaskedAdam(deltas, lr=tc.lr)
    state = {
        "deltas": deltas.values(), "gradients": deltas.values(),
        "adam_moments": list(optim.m.values()) + list(optim.v.values()),
        "mask": list(mask.masks.values()) + list(getattr(mask, "scores", {}).values()),
    }
    if erased_before:  # the teacher: base + the earlier concepts' deltas, in the weight dtype
        state["teacher"] = [params[n] for n in names]
    rows = student_rows(tc, cfg.batch_size, retain_prompts=True, concepts_erased_before=erased_before)
    per_pass = rows_per_pass(tc, rows)
    if per_pass < rows:  # a pass's gradients while they are added to the running sum
        state["pass_gradients"] = deltas.values()
    state_bytes = {k: sum(t.numel() * t.element_size() for t in v) for k, v in state.items()}
    student = {n: params[n] + deltas[n].to(dtype) for n in names}
    student_bytes = sum(w.numel() * w.element_size() for w in student.values())
    activations, largest = _saved_activations(unet, shape, resolution, per_pass, student,
                                              list(params.values()) + list(student.values()), dtype,
                                              checkpointing=tc.gradient_checkpointing)
    total = weight_bytes + sum(state_bytes.values()) + student_bytes + activations + 2 * largest
    return {"model": model, "row": row, "trainer_method": method, "overrides": overrides, "resolution": resolution,
            "student_rows": rows, "rows_per_pass": per_pass, "unet_parameters": sum(p.numel() for p in params.values()),
            "trained_parameters": sum(deltas[n].numel() for n in names), "target": tc.target,
            "weights_gib": weight_bytes / GIB, "training_state_gib": {k: v / GIB for k, v in state_bytes.items()},
            "student_weights_gib": student_bytes / GIB, "activations_gib": activations / GIB,
            "backward_transient_gib": 2 * largest / GIB, "peak_gib": total / GIB,
            "fits_budget": total / GIB <= cfg.budget_gib}


def run_memory_accounting(cfg: MemoryAccountingConfig, log=print) -> dict:
    rows = []
    for model in cfg.models:
        for row in cfg.rows:
            r = account_row(model, row, cfg)
            rows.append(r)
            log(f"{model} {row}: {r['peak_gib']:.1f} GiB ({r['student_rows']} rows, {r['rows_per_pass']} per pass, at "
                f"{r['resolution']} px; "
                f"weights {r['weights_gib']:.1f}, state {sum(r['training_state_gib'].values()):.1f}, "
                f"activations {r['activations_gib']:.1f})")
    # computed, no model file: tests/test_bench_results.py exempts these results from the toy model's hash
    return {"rows": rows, "settings": asdict(cfg), "weights": "none (meta device)", "device": "none: computed"}


def markdown_table(result: dict) -> str:
    s = result["settings"]
    lines = [f"Peak GPU memory of one training step, computed on PyTorch's meta device (no GPU run): batch "
             f"{s['batch_size']}, weights and activations in {s['weight_dtype']}, fused attention, each model at "
             f"its native resolution. GiB. Not counted: CUDA context, kernel workspaces, fragmentation, text "
             f"encoders and VAE. Budget {s['budget_gib']:g} GiB.", "",
             "| model | row | rows with gradients (per pass) | trained params | weights | training state | student weights "
             "| activations | backward transient | **peak** | fits |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['model']} ({r['resolution']} px) | {r['row']} | {r['student_rows']} ({r['rows_per_pass']}) | "
                     f"{r['trained_parameters'] / 1e6:.0f}M | {r['weights_gib']:.2f} | "
                     f"{sum(r['training_state_gib'].values()):.2f} | {r['student_weights_gib']:.2f} | "
                     f"{r['activations_gib']:.2f} | {r['backward_transient_gib']:.2f} | **{r['peak_gib']:.1f}** | "
                     f"{'yes' if r['fits_budget'] else 'no'} |")
    return "\n".join(lines) + "\n"
