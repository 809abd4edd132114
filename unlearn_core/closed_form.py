"""Closed-form multi-concept erasure: one least-squares edit of the UNet's cross-attention keys and values.

The cross-attention key and value projections (`attn2.to_k`, `attn2.to_v`) are the only places
where the prompt enters the UNet, and they are linear in the text embeddings. So a concept can be
erased by changing each such weight W (out x in) so that the embeddings of the concept's tokens
are projected to what the *superclass's* tokens were projected to (or a step further, away from the
concept), while the embeddings of everything that should stay (the preservation set) keep their
projections:

    minimise  sum_i ||W' c_i - W c*_i||^2  +  lambda sum_j ||W' p_j - W p_j||^2  +  mu ||W' - W||^2
    =>  W' = (W sum_i c*_i c_i^T + lambda W sum_j p_j p_j^T + mu W) (sum_i c_i c_i^T + lambda sum_j p_j p_j^T + mu I)^-1

with c_i the embeddings of the concepts' tokens, s_i the superclass prompts' embeddings at the
same positions, c*_i = s_i + alpha (s_i - c_i) the targets (alpha = `overshoot`), p_j the
preservation embeddings, lambda = `preserve_weight`, mu = `ridge`. Every concept of the set is
erased in the same solve. alpha = 0 is UCE's target, the superclass itself; but a superclass prompt
draws its members, erased ones included (with three of four polygons erased, the toy model's
"a polygon" still drew the erased ones), and overshooting pushes the keys and values away from the
concept as ESD's negative guidance does with noise predictions. Written as a delta over W,

    dW = W' - W = W M A^-1,   M = sum_i (c*_i - c_i) c_i^T,   A = sum_i c_i c_i^T + lambda sum_j p_j p_j^T + mu I,

and M A^-1 depends only on the text embeddings, not on the layer, so it is computed once
(a D x D solve, D = the text embedding width) and every edited weight costs one matrix product.
M has rank at most n, the number of concept token embeddings, so with n < D/2 that product is
taken in two thin factors (W (C* - C)^T) (C A^-1) instead (SDXL: D = 2048, 140 weights).

Which tokens. A concept's prompt and its superclass prompt fill the same template, so they share
the tokens before the concept's words (identical embeddings, since the text encoder is causal)
and the template's tokens after them. The concept side uses the concept's word tokens and every
token after them up to the encoder's length (the end token and the padding, whose embeddings
summarise the prompt and which the UNet attends to, as in UCE), each paired with the superclass
prompt's token at the same position counted from the end of the words (word tokens right-aligned
onto the superclass's words). The preservation set is every token of: the concept set's retain
prompts, the superclass prompts, the empty prompt (classifier-free guidance uses it in every
image) and, unless turned off, a built-in list of common prompts (`GENERIC_PROMPTS`; those that
contain a concept's words are left out).

`padding_positions` limits how many positions after the end token are used per prompt. The text
encoder is causal, so the first positions of a prompt are encoded exactly when it is run on them
alone, at a fraction of the cost; the later padding positions are near copies of the first ones
and follow the same linear edit.

The result is an `UnlearnResult` (deltas keyed by the denoiser's parameter names), so every save
format, the ComfyUI patches and the evaluation take it unchanged.

Re-implemented from the descriptions in
- UCE: R. Gandikota, H. Orgad, Y. Belinkov, J. Materzynska, D. Bau, "Unified Concept Editing in
  Diffusion Models", WACV 2024, arXiv 2308.14761 (code: github.com/rohitgandikota/unified-concept-editing,
  MIT licence) — the closed form above, with the concept's last token and the tokens after it;
- ESD: R. Gandikota, J. Materzynska, J. Fiotto-Kaufman, D. Bau, "Erasing Concepts from Diffusion
  Models", ICCV 2023, arXiv 2303.07345 — the negative-guidance target, here moved into the
  embedding space as `overshoot`;
- SPEED: O. Li et al., "SPEED: Scalable, Precise, and Efficient Concept Erasure for Diffusion
  Models", arXiv 2503.07392 — many concepts in one solve, and keeping the start token and
  non-target knowledge fixed (here through the preservation term rather than a null-space projection);
- ScaPre (scalable and precise closed-form erasure) — a weighted preservation set of generic
  prompts next to the user's.
No code was copied from any of them.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import torch

from .concept_set import ConceptSet
from .configs import ClosedFormConfig  # defined there with its defaults and help; re-exported
from .protocol import DenoiserAdapter
from .unet_unlearning import UnlearnResult, weights_hash

__all__ = ["ClosedFormConfig", "ClosedFormResult", "GENERIC_PROMPTS", "closed_form_edit", "edited_weight_names",
           "aligned_positions"]

#: the weights the edit changes: the cross-attention key and value projections (their input is the text)
KEY_VALUE = re.compile(r"attn2\.to_[kv]\.weight$")

#: Common prompts whose token embeddings the edit keeps (objects, animals, people, places, styles):
#: a broad sample of what a text-to-image model is asked for, written for this library.
GENERIC_PROMPTS: tuple[str, ...] = (
    "a photo of a dog", "a cat sitting on a sofa", "a horse in a field", "a bird on a branch", "a fish in a pond",
    "a cow grazing", "a lion", "an elephant", "a butterfly on a flower", "a rabbit",
    "a portrait of a man", "a portrait of a woman", "a child playing", "an old man smiling", "a group of people",
    "a chef in a kitchen", "a doctor", "a soldier", "a dancer on stage", "a person riding a bicycle",
    "a car on a road", "a red bus", "a train at a station", "an airplane in the sky", "a sailing boat",
    "a house", "a castle on a hill", "a bridge over a river", "a city street at night", "a skyscraper",
    "a mountain landscape", "a beach at sunset", "a forest in autumn", "a desert", "a waterfall",
    "a snowy village", "a field of flowers", "the ocean", "a lake with trees", "a starry night sky",
    "a bowl of fruit", "a cup of coffee", "a pizza", "a birthday cake", "a glass of wine",
    "a chair", "a table with books", "a lamp", "a clock on the wall", "a guitar",
    "a painting", "an oil painting of a landscape", "a watercolor of a garden", "a pencil sketch",
    "a cartoon character", "an anime illustration", "a digital art fantasy scene", "a black and white photograph",
    "a pixel art game", "a sculpture in a museum",
    "a logo", "a map", "a pattern of circles", "text on a sign", "a flag",
    "a tree", "a rose", "the moon", "the sun", "clouds",
    "a robot", "a dragon", "a spaceship", "a knight in armor", "a wizard",
    "a bedroom interior", "a modern kitchen", "a library", "a garden", "a market",
    "high quality, detailed", "a blurry photo", "a close-up photo", "an aerial view", "a wide shot",
)


def edited_weight_names(module_types: dict[str, str]) -> list[str]:
    """The cross-attention key/value projection weights of a denoiser (its `module_types()`)."""
    names = sorted(n for n, kind in module_types.items() if kind == "linear" and KEY_VALUE.search(n))
    if not names:
        raise ValueError("this denoiser has no cross-attention key/value projections (attn2.to_k / attn2.to_v "
                         "weights): the closed-form edit needs a text-conditioned UNet")
    return names


def aligned_positions(concept_ids: list[int], anchor_ids: list[int], length: int) -> list[tuple[int, int]]:
    """(concept position, superclass position) pairs for a concept prompt and its superclass prompt
    (token ids from the start through the end token, no padding) within the first `length` positions.

    The prompts fill one template, so they share a prefix and a suffix of tokens; between them are
    the concept's and the superclass's words. Each concept word token is paired with the superclass
    word token at the same distance from the end of the words (the extra leading tokens of a longer
    concept with the superclass's first word token, or with the token before the words when the
    superclass adds none), and every later position (the template's rest, the end token, the
    padding) with the superclass position the same distance after the words."""
    p = 0
    while p < min(len(concept_ids), len(anchor_ids)) and concept_ids[p] == anchor_ids[p]:
        p += 1
    if p == len(concept_ids) == len(anchor_ids):
        return []  # identical prompts: nothing to move
    k = 0  # shared suffix (the template's tail and the end token)
    while (k < min(len(concept_ids), len(anchor_ids)) - p
           and concept_ids[len(concept_ids) - 1 - k] == anchor_ids[len(anchor_ids) - 1 - k]):
        k += 1
    nc, ns = len(concept_ids) - p - k, len(anchor_ids) - p - k
    pairs = []
    floor = p if ns > 0 else max(p - 1, 0)
    for j in range(nc):  # j-th word token counted from the end of the concept's words
        pairs.append((p + nc - 1 - j, max(p + ns - 1 - j, floor)))
    for qc in range(p + nc, length):
        qa = qc - nc + ns
        if qa >= length:
            break
        pairs.append((qc, qa))
    return sorted(q for q in pairs if q[0] < length and q[1] < length)


def _mentions(prompt: str, words: list[str]) -> bool:
    text = f" {re.sub(r'[^a-z0-9]+', ' ', prompt.lower())} "
    return any(f" {w} " in text for w in words if w)


def _words(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


@dataclass
class ClosedFormResult(UnlearnResult):
    """An `UnlearnResult` whose metadata names the closed-form method; the edit is one solve, no training."""

    def metadata(self, *args, **kwargs) -> dict:
        meta = super().metadata(*args, **kwargs)
        meta["method"] = "closed_form"
        return meta

    @property
    def seconds_per_step(self) -> float:
        return self.seconds  # the whole edit is one step


def _encode(adapter: DenoiserAdapter, prompts: list[str], padding_positions: int, batch: int = 64):
    """{prompt: (embeddings [n, D] of its first n positions, its token ids)} for the unique prompts.

    n is the prompt's length through its end token plus `padding_positions` (all with -1), capped at
    the encoder's length; prompts of similar length are encoded together."""
    unique = list(dict.fromkeys(prompts))
    ids = adapter.prompt_token_ids(unique)
    need = [None if padding_positions < 0 else len(t) + padding_positions for t in ids]
    order = sorted(range(len(unique)), key=lambda i: (need[i] is None, need[i] or 0))
    out = {}
    for start in range(0, len(order), batch):
        chunk = order[start:start + batch]
        n = None if any(need[i] is None for i in chunk) else max(need[i] for i in chunk)
        emb = adapter.token_embeddings([unique[i] for i in chunk], length=n)
        for row, i in enumerate(chunk):
            out[unique[i]] = (emb[row, :need[i]].detach().float().cpu(), ids[i])
    return out


def closed_form_edit(adapter: DenoiserAdapter, concept_set: ConceptSet,
                     config: ClosedFormConfig | None = None) -> ClosedFormResult:
    """Erase every concept of `concept_set` from the adapter's denoiser in one least-squares solve
    (top of this module); returns the deltas of the cross-attention key/value weights.

    `adapter`: a DenoiserAdapter with `prompt_token_ids` and `token_embeddings` (protocol.py). The
    input model is not changed."""
    config = config or ClosedFormConfig()
    config.validate()
    concept_set.validate(check_files=False)  # the edit uses only the prompts
    t_start = time.time()
    names = edited_weight_names(adapter.module_types())
    base = adapter.denoiser_weights()
    weights = {n: base[n].detach() for n in names}

    concept_words = [w for c in concept_set.concepts for w in (_words(c.text or c.name), _words(c.name))]
    pairs = [(c, p, s) for c in concept_set.concepts for p, s in zip(c.prompts, c.superclass_prompts)]
    preserve = list(concept_set.retain_prompts) + [s for _, _, s in pairs] + [""]
    generic = [g for g in GENERIC_PROMPTS if not _mentions(g, concept_words)] if config.generic_prompts else []
    preserve += generic
    notes = []
    for r in concept_set.retain_prompts:
        if _mentions(r, concept_words):
            notes.append(f"retain prompt {r!r} names a concept being erased; the edit trades the two off")
    t_enc = time.time()
    enc = _encode(adapter, [p for _, p, _ in pairs] + preserve, config.padding_positions)
    seconds_encode = time.time() - t_enc

    width = next(iter(enc.values()))[0].shape[1]
    for n, w in weights.items():
        if w.shape[-1] != width:
            raise ValueError(f"{n} takes inputs of width {w.shape[-1]}, but the text embeddings are {width} wide")
    c_in, c_to, owner = [], [], []
    for ci, (c, prompt, anchor) in enumerate(pairs):
        e_c, ids_c = enc[prompt]
        e_a, ids_a = enc[anchor]
        for qc, qa in aligned_positions(ids_c, ids_a, min(len(e_c), len(e_a))):
            c_in.append(e_c[qc])
            c_to.append(e_a[qa])
            owner.append(c.name)
    if not c_in:
        raise ValueError("the concepts' prompts and their superclass prompts are identical: nothing to erase "
                         "(check each concept's text and superclass)")
    c_in = torch.stack(c_in).double()
    c_to = torch.stack(c_to).double()
    # Past the superclass, away from the concept: the superclass prompt itself draws its members,
    # erased ones included, so landing exactly on it leaves the concept a share of the images.
    c_to = c_to + config.overshoot * (c_to - c_in)
    p_all = torch.cat([enc[p][0] for p in dict.fromkeys(preserve)]).double()

    eye = torch.eye(width, dtype=torch.float64)
    a = c_in.T @ c_in + config.preserve_weight * (p_all.T @ p_all) + config.ridge * eye
    try:
        chol = torch.linalg.cholesky(a)
    except RuntimeError as exc:  # only with ridge 0 and too few embeddings to span the space
        raise ValueError("the least-squares system is singular: raise ridge above 0") from exc
    # M^T = C^T Q with Q = c_to - c_in, so (M A^-1)^T = A^-1 C^T Q = P Q: rank at most the number of
    # concept tokens n. Each weight's delta W Q^T P^T then costs 2 n D per output row instead of D^2
    # when n < D / 2 (SDXL: 140 weights of width 2048, one concept ~30 tokens).
    p = torch.cholesky_solve(c_in.T.contiguous(), chol)  # A^-1 C^T, D x n
    q = c_to - c_in
    low_rank = 2 * len(c_in) < width
    g = None if low_rank else p @ q
    deltas = {}
    for n, w in weights.items():
        w64 = w.to("cpu", torch.float64)
        deltas[n] = ((w64 @ q.T) @ p.T if low_rank else w64 @ g.T).to(torch.float32)

    # How well it did, in the embedding space every edited weight shares: W' c - W c* = W (c + K c - c*).
    moved = c_in + (c_in @ p) @ q
    stats = []
    for name in dict.fromkeys(owner):
        rows = torch.tensor([o == name for o in owner])
        before = (c_in[rows] - c_to[rows]).norm(dim=1)
        after = (moved[rows] - c_to[rows]).norm(dim=1)
        stats.append({"step": 0, "phase": "closed_form", "concept": name, "tokens": int(rows.sum()),
                      "residual": float(after.sum() / before.sum().clamp_min(1e-12)), "seconds": 0.0})
    drift = float(((p_all @ p) @ q).norm(dim=1).sum() / p_all.norm(dim=1).sum().clamp_min(1e-12))
    seconds = time.time() - t_start
    for row in stats:
        row["preservation_drift"] = drift
        row["seconds"] = seconds
    return ClosedFormResult(
        deltas=deltas, stats=stats, config={"method": "closed_form", **config.to_dict()},
        concepts=[{"name": c.name, "superclass": c.superclass} for c in concept_set.concepts],
        retain_prompts=list(concept_set.retain_prompts), base_model_hash=weights_hash(weights),
        seconds=seconds, seconds_data=seconds_encode, train_steps=0,
        notes=notes + [f"closed form: {len(c_in)} concept token embeddings, {len(p_all)} preserved "
                       f"({len(generic)} generic prompts), {len(names)} key/value weights; text encoding "
                       f"{seconds_encode:.1f}s of {seconds:.1f}s"],
    )
