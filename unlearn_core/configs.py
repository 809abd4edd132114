"""The settings of the unlearning methods: the single source of their defaults and help texts.

Every field carries its default and `metadata={"help": ...}`; the ComfyUI nodes take their widget
defaults and tooltips from here, and the `concept-unlearn` CLI its flag defaults and help
(`unlearn_core.config_help` reads them). The code that applies a config lives elsewhere
(`unet_unlearning`, `masks`, `losses`, `text_encoder_unlearning`, `closed_form`, which re-export these
classes). This module imports nothing heavy, so the CLI can show its help without loading torch.

The defaults of the UNet method are the paper's settings for SD-size models (Sculpting Memory,
arXiv 2504.09039, SD 1.4); `UnetUnlearnConfig.toy()` is the variant for the embedded toy model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace


@dataclass
class MaskConfig:
    kind: str = field(default="dynamic", metadata={"help": (
        "Which entries of each edited matrix are trained: 'dynamic' (the paper: the top |gradient| entries "
        "per matrix, pruned and regrown during training), 'static' (one global SalUn-style mask set after the "
        "warm-up) or 'none' (every entry).")})
    density: float = field(default=0.5, metadata={"help": (
        "Fraction of each edited matrix that the mask trains, in (0, 1]; lower edits fewer weights "
        "(less side effect, weaker erasure).")})
    warmup_steps: int = field(default=50, metadata={"help": (
        "Steps before training that only accumulate gradients to build the first mask (not counted in "
        "the training steps; 0 = the first training step's gradients).")})
    update_interval: int = field(default=100, metadata={"help": (
        "Training steps between two prune-and-regrow updates of the dynamic mask (at least 1).")})
    turnover: float = field(default=0.2, metadata={"help": (
        "Fraction of the active entries swapped at the first mask update, in [0, 1); it decays to 0 "
        "by a cosine.")})
    stop_fraction: float = field(default=0.8, metadata={"help": (
        "Fraction of the training steps after which the dynamic mask stops changing, in [0, 1].")})

    def validate(self) -> None:
        if self.kind not in ("dynamic", "static", "none"):
            raise ValueError(f"mask kind must be 'dynamic', 'static' or 'none', not {self.kind!r}")
        if not 0.0 < self.density <= 1.0:
            raise ValueError(f"mask density must be in (0, 1], got {self.density}")
        if self.warmup_steps < 0 or self.update_interval < 1:
            raise ValueError("mask warmup_steps must be >= 0 and update_interval >= 1")
        if not 0.0 <= self.turnover < 1.0 or not 0.0 <= self.stop_fraction <= 1.0:
            raise ValueError("mask turnover must be in [0, 1) and stop_fraction in [0, 1]")

    @property
    def needs_warmup(self) -> bool:
        return self.kind in ("dynamic", "static") and self.warmup_steps > 0


@dataclass
class ConceptAwareLossConfig:
    kind: str = field(default="concept_aware", metadata={"help": (
        "'concept_aware' pulls the concept's prediction onto its superclass's (Sculpting Memory); 'esd' "
        "pushes it away from the concept with negative guidance (ESD).")})
    alignment_weight: float = field(default=0.25, metadata={"help": (
        "Weight of the plain denoising loss on superclass images, which keeps the superclass itself intact "
        "(the paper: 0.25; 0 = off).")})
    distillation_weight: float = field(default=1.0, metadata={"help": (
        "Weight of the term that keeps concepts erased earlier erased and retained prompts unchanged "
        "(see retain_reference); 0 turns it off.")})
    # toy model, 3 objects erased: retained accuracy 0.56 -> 0.71 with it
    preserve_unconditional: bool = field(default=True, metadata={"help": (
        "The distillation also keeps the empty prompt's prediction unchanged: classifier-free guidance uses "
        "it in every image, so letting it drift changes everything else too (needs distillation_weight > 0).")})
    retain_reference: str = field(default="base", metadata={"help": (
        "What retained prompts and the empty prompt are held at: 'base' (the input model, so drift does not "
        "pile up over many concepts erased one after another) or 'teacher' (the model before the current "
        "concept, the paper's); concepts erased earlier are always held at the teacher.")})
    superclass_reference: str = field(default="student", metadata={"help": (
        "Which model gives the superclass target: 'student' (the model being trained, the paper's; when every "
        "layer is trained its superclass prediction can drift towards the concept) or 'teacher' (frozen: the "
        "model before the current concept).")})
    # toy model: "a polygon" draws a triangle in 9 of 32 images, a floor for what pulling onto it can erase
    superclass_guidance: float = field(default=0.0, metadata={"help": (
        "Guidance g >= 0 steering the superclass target away from the concept, eps(s) - g * (eps_teacher(c) - eps(s)); "
        "raise it when the superclass prompt itself sometimes draws the concept (0 = the plain superclass).")})
    esd_negative_guidance: float = field(default=1.0, metadata={"help": (
        "Only for kind 'esd': how far the target is pushed away from the concept, "
        "eps(empty) - eta * (eps(concept) - eps(empty)).")})

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


@dataclass
class UnetUnlearnConfig:
    """Settings of the UNet methods; the defaults are the paper's for SD-size models."""

    target: str = field(default="cross_attention", metadata={"help": (
        "Which weights are edited: 'cross_attention' (the paper), 'attention', 'all_linear_conv', "
        "'non_cross_attention', or 'regex:<pattern>' over the weight names.")})
    mode: str = field(default="sequential", metadata={"help": (
        "'sequential' erases the concepts one after another (a mask, optimizer and teacher per concept); "
        "'simultaneous' erases them together in one run.")})
    steps_per_concept: int = field(default=500, metadata={"help": (
        "Training steps per concept (the paper: 500); more erases more thoroughly at a cost in time and "
        "retention.")})
    batch_size: int = field(default=2, metadata={"help": "Images per loss term in each training step."})
    lr: float = field(default=3e-6, metadata={"help": (
        "Adam learning rate of the weight edits (the paper: 3e-6 for SD 1.4); lower it when retained "
        "content changes, raise it when the concept survives.")})
    images_per_concept: int = field(default=100, metadata={"help": (
        "Training images the model generates per concept and per superclass when none are given "
        "(the paper: 100).")})
    retain_images_per_prompt: int = field(default=4, metadata={"help": (
        "Images generated per retain prompt for the distillation term (0 = none).")})
    sampling_steps: int = field(default=20, metadata={"help": (
        "Sampler steps per generated training image.")})
    sampling_guidance: float = field(default=5.0, metadata={"help": (
        "Classifier-free guidance scale used to generate the training images.")})
    seed: int = field(default=0, metadata={"help": (
        "Seed of the training images, noise and timesteps (the same seed and settings give the same run).")})
    mask: MaskConfig = field(default_factory=MaskConfig, metadata={"help": "The gradient mask (MaskConfig)."})
    loss: ConceptAwareLossConfig = field(default_factory=ConceptAwareLossConfig, metadata={"help": (
        "The loss terms and their weights (ConceptAwareLossConfig).")})
    # the attacker's conditioning starts from the concept's prompt; the concept-aware term then also
    # pulls the prediction under it onto the superclass
    adversarial_interval: int = field(default=0, metadata={"help": (
        "Adversarial training against prompt-recovery attacks: every this many steps an attacker's soft "
        "prompt is optimised to bring the concept back, and the concept is erased under it too (concept-aware "
        "loss only; 0 = off; about 2x the time). On the toy world, every 10 steps with target "
        "'all_linear_conv', a tenth of the learning rate and distillation 3 stopped the learned-token and "
        "soft-prompt attacks, at a cost in retention (README, Robustness).")})
    adversarial_steps: int = field(default=10, metadata={"help": (
        "Adam steps of the attacker's soft prompt in each adversarial round.")})
    adversarial_lr: float = field(default=5e-2, metadata={"help": (
        "Adam learning rate of the attacker's soft prompt.")})
    warm_start: str = field(default="none", metadata={"help": (
        "Where training starts: 'none' (the input model) or 'closed_form' (the closed-form key/value edit, "
        "computed in seconds with its default settings, then trained further; the target must include the "
        "cross-attention keys and values).")})
    distillation_bank: int = field(default=0, metadata={"help": (
        "How many distillation draws (noised images of retained prompts, of the empty prompt and of concepts "
        "erased earlier) are drawn per concept (in simultaneous mode, times the number of concepts), with the "
        "frozen reference's predictions for them computed once; each step then takes one of them instead of "
        "running the reference again. The reference is "
        "fixed for the whole concept, so this only changes how often a draw is reused (0 = a fresh draw and a "
        "reference pass every step).")})

    student_chunk_rows: int = field(default=0, metadata={"help": (
        "At most this many images per forward and backward pass of the model being trained (0 = all of a "
        "step's images in one pass: the concept's, the superclass's and the distillation images, 4x "
        "batch_size, 5x from the second concept on). The gradient is the same up to rounding; the "
        "activation memory is that of this many images, at some cost in speed where larger batches run "
        "faster (GPUs).")})

    gradient_checkpointing: bool = field(default=False, metadata={"help": (
        "Recompute each transformer and residual block's activations in the backward pass instead of "
        "keeping them: the same gradient with much less activation memory, at the cost of running each "
        "block's forward pass twice per step (large models on small GPUs).")})

    @classmethod
    def toy(cls) -> "UnetUnlearnConfig":
        """The settings for the embedded toy model (what `concept-unlearn forget` uses without --model,
        and `bench unet` runs): a tiny model needs far fewer images, steps and mask updates and a much
        larger learning rate than SD. Alignment 0: on the toy model the alignment term (plain denoising
        loss on the model's own superclass images) costs retention, 3 objects erased at lr 1e-3: retained
        accuracy 0.69 with 0.25 vs 0.88 with 0 (base 0.85), toy FID 73 vs 63."""
        return cls(steps_per_concept=100, batch_size=4, lr=1e-3, images_per_concept=32,
                   mask=MaskConfig(warmup_steps=20, update_interval=25),
                   loss=ConceptAwareLossConfig(alignment_weight=0.0))

    def validate(self) -> None:
        if self.mode not in ("sequential", "simultaneous"):
            raise ValueError(f"mode must be 'sequential' or 'simultaneous', not {self.mode!r}")
        if self.steps_per_concept < 1:
            raise ValueError(f"steps_per_concept must be at least 1, got {self.steps_per_concept}")
        if self.batch_size < 1 or self.images_per_concept < 1:
            raise ValueError("batch_size and images_per_concept must be at least 1")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.adversarial_interval < 0 or self.adversarial_steps < 1 or not self.adversarial_lr > 0:
            raise ValueError("adversarial_interval must be >= 0 (0 = off), adversarial_steps >= 1 and "
                             "adversarial_lr > 0")
        if self.student_chunk_rows < 0:
            raise ValueError(f"student_chunk_rows must be >= 0 (0 = one pass), got {self.student_chunk_rows}")
        if self.distillation_bank < 0:
            raise ValueError(f"distillation_bank must be >= 0 (0 = no bank), got {self.distillation_bank}")
        if self.warm_start not in ("none", "closed_form"):
            raise ValueError(f"warm_start must be 'none' or 'closed_form', not {self.warm_start!r}")
        self.mask.validate()
        self.loss.validate()

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TextEncoderForgetConfig:
    """Settings of the few-shot text-encoder method. Defaults from the toy benchmark (README): with four
    final layers (all of the toy encoder's) and preserve_weight 3 the style is erased in held-out
    phrasings too (paraphrase residual 0.375 with two layers, 0.000 with four) and retention stays
    within 2 points with adversarial rounds on; textual inversion as 75 steps x 8 images instead of
    150 x 4 (the same images, about 0.8x the time)."""

    num_layers: int = field(default=4, metadata={"help": (
        "How many final encoder layers (counted back from the one that conditions the UNet, so clip-skip "
        "aware) get the LoRA; an encoder with fewer gets all of its layers.")})
    lora_rank: int = field(default=4, metadata={"help": "Rank of the LoRA on the encoder's linear layers."})
    lora_alpha: float = field(default=4.0, metadata={"help": (
        "LoRA scale numerator: the weight delta is (alpha / rank) * B @ A.")})
    clip_skip: int = field(default=0, metadata={"help": (
        "Which encoder layer conditions the UNet, counted back from the last: 0 = the last layer "
        "(diffusers' clip_skip).")})
    ti_steps: int = field(default=75, metadata={"help": (
        "Textual-inversion steps learning each concept's token from its example images (stage 1).")})
    ti_lr: float = field(default=5e-3, metadata={"help": (
        "Adam learning rate of the textual inversion (stage 1 and the adversarial rounds).")})
    steps: int = field(default=150, metadata={"help": "LoRA training steps per concept (stage 2)."})
    lr: float = field(default=2e-3, metadata={"help": "Adam learning rate of the LoRA."})
    batch_size: int = field(default=4, metadata={"help": (
        "Prompts per LoRA step (each with a word prompt and, with include_learned_token, a learned-token "
        "prompt).")})
    ti_batch_size: int = field(default=8, metadata={"help": "Example images per textual-inversion step."})
    forget_weight: float = field(default=1.0, metadata={"help": (
        "Weight of the embedding-space term mapping the concept's prompts onto the superclass's encodings.")})
    ti_weight: float = field(default=1.0, metadata={"help": (
        "Weight of the noise-space term on the example images (the UNet's prediction under the concept is "
        "pulled onto the superclass's).")})
    preserve_weight: float = field(default=3.0, metadata={"help": (
        "Weight of the term keeping retained prompts' encodings unchanged; raise it when unrelated prompts "
        "drift.")})
    include_learned_token: bool = field(default=True, metadata={"help": (
        "Also forget the learned token (resists recovery by textual inversion).")})
    # toy model, one object: learned-token attack success 0.75 -> 0.12 for the star, 0.69 -> 0.25 for
    # the triangle, at about 1.5x the time
    adversarial_interval: int = field(default=15, metadata={"help": (
        "Every this many LoRA steps per concept, re-learn an attacker's token against the encoder as it is "
        "now and forget that too (adversarial training against textual-inversion recovery; costs extra "
        "steps; 0 = off).")})
    adversarial_steps: int = field(default=15, metadata={"help": (
        "Textual-inversion steps of each adversarial round.")})
    adversarial_batch_size: int = field(default=8, metadata={"help": (
        "Example images per adversarial textual-inversion step.")})
    ti_loss_prompts: int = field(default=0, metadata={"help": (
        "How many of a LoRA step's prompts also get the UNet-level term, half from the concept's words and "
        "half from the learned token (0 = all); lower it to save time.")})
    seed: int = field(default=0, metadata={"help": "Seed of the run (runs are reproducible)."})

    def fast(self) -> "TextEncoderForgetConfig":
        """These settings with half the textual-inversion steps at twice the images per step (stage 1
        and the adversarial rounds): the same number of images seen, in less time (README, speed).
        The defaults are already this applied once to 150 x 4 and 30 x 4."""
        return replace(self, ti_steps=self.ti_steps // 2, ti_batch_size=2 * self.ti_batch_size,
                       adversarial_steps=max(1, self.adversarial_steps // 2),
                       adversarial_batch_size=2 * self.adversarial_batch_size)

    def validate(self) -> None:
        if self.lora_rank < 1 or self.num_layers < 1:
            raise ValueError("lora_rank and num_layers must be at least 1")
        if self.steps < 1 or self.ti_steps < 0:
            raise ValueError("steps must be >= 1 and ti_steps >= 0")
        for name in ("batch_size", "ti_batch_size", "adversarial_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.ti_loss_prompts < 0:
            raise ValueError(f"ti_loss_prompts must be >= 0 (0 = all prompts), got {self.ti_loss_prompts}")
        if self.adversarial_interval < 0 or self.adversarial_steps < 1:
            raise ValueError("adversarial_interval must be >= 0 (0 = off) and adversarial_steps >= 1")
        if self.adversarial_interval and not self.include_learned_token:
            raise ValueError("adversarial training needs include_learned_token=True (the adversarial token is "
                             "forgotten through the learned-token prompts)")
        for name in ("forget_weight", "ti_weight", "preserve_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.forget_weight == 0 and self.ti_weight == 0:
            raise ValueError("forget_weight and ti_weight are both 0: nothing would be forgotten")


@dataclass
class ClosedFormConfig:
    """Settings of the closed-form edit (`unlearn_core.closed_form`): one least-squares solve over the
    cross-attention key/value weights, no training."""

    # toy model: 3 objects erased, residual accuracy 0.25 at 0.1 vs 0.375 at 1, retained 0.896 both
    # (base 0.917); one object: 0.12 vs 0.25, retained 0.94 vs 0.96 (docs/methods.md)
    preserve_weight: float = field(default=0.1, metadata={"help": (
        "Weight (lambda) of each preserved token embedding against each concept token embedding in the "
        "least-squares objective: higher keeps retained, superclass and common prompts closer to the input "
        "model, lower erases more exactly (0 = no preservation term).")})
    ridge: float = field(default=0.1, metadata={"help": (
        "Ridge term (mu) that keeps the edited weights near the input's wherever the prompts say nothing; "
        "must be above 0.")})
    generic_prompts: bool = field(default=True, metadata={"help": (
        "Also preserve a built-in list of 85 common prompts (objects, animals, people, places, styles) "
        "besides the retain and superclass prompts; those that name a concept being erased are left out.")})
    # toy model, bench all's image seeds, 16 images per prompt (the edit is deterministic): 10 objects
    # erased, residual accuracy 0.29 / 0.025 / 0.025 / 0.031 at overshoot 0 / 0.5 / 1 / 2, superclass
    # coherence 0.69 / 0.91 / 0.79 / 0.64, retained 0.906 / 0.938 / 0.917 / 0.896 (base 0.917); 4 objects
    # at once, residual 0.20 / 0.00 / 0.05 at 0 / 0.5 / 1 (docs/experiment-log.md, 2026-12-03)
    overshoot: float = field(default=0.5, metadata={"help": (
        "How far past the superclass each concept token is sent, away from the concept: the target is "
        "superclass + overshoot x (superclass - concept) in the text-embedding space. 0 = onto the superclass "
        "(UCE); above 0 also stops the superclass's own images from drawing the concept (a superclass prompt "
        "draws its members, the erased ones among them).")})
    padding_positions: int = field(default=8, metadata={"help": (
        "How many token positions after a prompt's end token are used (the padding the UNet also attends to); "
        "-1 = all up to the encoder's length (77 for CLIP), slower: the text encoding is most of the time.")})

    def validate(self) -> None:
        if not self.preserve_weight >= 0:
            raise ValueError(f"preserve_weight must be >= 0, got {self.preserve_weight}")
        if not self.ridge > 0:
            raise ValueError(f"ridge must be above 0 (it keeps the solve well posed), got {self.ridge}")
        if not self.overshoot >= 0:
            raise ValueError(f"overshoot must be >= 0 (0 = onto the superclass), got {self.overshoot}")
        if self.padding_positions < -1:
            raise ValueError(f"padding_positions must be >= 0, or -1 for all, got {self.padding_positions}")

    def to_dict(self) -> dict:
        return asdict(self)
