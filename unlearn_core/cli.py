"""The `concept-unlearn` command."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from .progress import ProgressReporter
from .sampling import SAMPLERS, SAMPLING


def _command_line() -> str:
    return "concept-unlearn " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _set_threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(n)


def cmd_toy_train(args) -> int:
    from .research.toyworld.train import ToyTrainConfig, resume_restart_phase, train_toy_world

    cfg = ToyTrainConfig(output_dir=args.output, seed=args.seed)
    if args.quick:
        cfg.n_images, cfg.classifier_steps, cfg.vae_steps, cfg.unet_steps, cfg.warmup_steps = 2000, 30, 30, 30, 5
        cfg.unet_restart_steps, cfg.classifier_images, cfg.text_steps, cfg.text_batch = 10, 2000, 20, 32
    if args.unet_steps is not None:
        if args.unet_steps < 1:
            raise ValueError(f"--unet-steps must be at least 1, got {args.unet_steps}")
        cfg.unet_steps = args.unet_steps
    if args.unet_restart_steps is not None:
        if args.unet_restart_steps < 0:
            raise ValueError(f"--unet-restart-steps must be 0 or more, got {args.unet_restart_steps}")
        cfg.unet_restart_steps = args.unet_restart_steps
    report = resume_restart_phase(cfg) if args.resume_phase2 else train_toy_world(cfg)
    if args.install:
        import shutil

        from .research.toyworld.assets import WEIGHTS_DIR

        out = Path(args.output)
        WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(WEIGHTS_DIR / "toy_sd", ignore_errors=True)
        shutil.copytree(out / "toy_sd", WEIGHTS_DIR / "toy_sd")
        shutil.copy2(out / "classifier.safetensors", WEIGHTS_DIR / "classifier.safetensors")
        shutil.copy2(out / "toy_train_report.json", WEIGHTS_DIR / "toy_train_report.json")
        print(f"installed the new weights into {WEIGHTS_DIR}")
    print(json.dumps(report["timings"], indent=2))
    return 0


def cmd_bench_base(args) -> int:
    from .research.benchmarks.base_model import bench_base_model
    from .research.benchmarks.results import write_results
    from .research.toyworld.assets import load_toy_classifier, load_toy_pipeline

    sampling = _sampling_config(args, seed=args.seed)
    pipe = load_toy_pipeline(args.model)
    classifier = load_toy_classifier(args.classifier)
    result = bench_base_model(pipe, classifier, images_per_prompt=args.images_per_prompt,
                              styled_images_per_prompt=args.styled_images_per_prompt, sampling=sampling,
                              progress=ProgressReporter("sampling", unit="image", leave=False))
    write_results(result, args.output, _command_line())
    print(f"{'object':<12} accuracy")
    for name, acc in result["object_accuracy"].items():
        print(f"{name:<12} {acc:.3f}")
    print(f"{'mean':<12} {result['object_accuracy_mean']:.3f}")
    for name, acc in result["style_accuracy"].items():
        print(f"style {name:<10} {acc:.3f}")
    print(f"style mean {result['style_accuracy_mean']:.3f}; classifier object {result['classifier_object_accuracy']:.3f}, "
          f"style {result['classifier_style_accuracy']:.3f}; toy FID {result['toy_fid']:.2f}")
    print(f"wrote {args.output}")
    return 0


def cmd_bench_unet(args) -> int:
    from .research.benchmarks.unet import UnetBenchConfig, markdown_table, run_unet_benchmark
    from .research.toyworld.assets import load_toy_classifier, load_toy_pipeline

    if args.merge:
        return _merge_bench(args.merge, args.output, markdown_table)
    cfg = UnetBenchConfig(steps_per_concept=args.steps, seed=args.seed, quick=args.quick,
                          eval_images_per_prompt=args.eval_images, measure_overhead=not args.no_overhead,
                          evaluation_sampling=_sampler_settings(args))
    if args.lr is not None:
        if not args.lr > 0:
            raise ValueError(f"--lr must be positive, got {args.lr}")
        cfg.lr = args.lr
    if args.methods:
        cfg.methods = tuple(m.replace("-", "_") for m in args.methods)
    result = run_unet_benchmark(cfg, load_toy_pipeline(args.model), load_toy_classifier(args.classifier), log=print)
    return _write_bench(result, args.output, markdown_table)


def cmd_bench_text_encoder(args) -> int:
    from .research.benchmarks.text_encoder import TextEncoderBenchConfig, markdown_table, run_text_encoder_benchmark
    from .research.toyworld.assets import load_toy_classifier, load_toy_pipeline

    cfg = TextEncoderBenchConfig(seed=args.seed, quick=args.quick, evaluation_sampling=_sampler_settings(args))
    result = run_text_encoder_benchmark(cfg, load_toy_pipeline(args.model), load_toy_classifier(args.classifier),
                                        log=print)
    return _write_bench(result, args.output, markdown_table)


def cmd_bench_real_size(args) -> int:
    if args.closed_form:
        return cmd_bench_real_size_closed_form(args)
    from .research.benchmarks.real_size import RealSizeBenchConfig, markdown_table, run_real_size_benchmark

    cfg = RealSizeBenchConfig(resolution=args.resolution, steps=args.steps, device=args.device, seed=args.seed,
                              distillation_bank=args.distillation_bank)
    if cfg.resolution % 64 or cfg.resolution < 64:
        raise ValueError(f"--resolution must be a positive multiple of 64, got {cfg.resolution}")
    if cfg.steps < 1 or cfg.distillation_bank < 1:
        raise ValueError(f"--steps and --distillation-bank must be at least 1, got {cfg.steps} and "
                         f"{cfg.distillation_bank}")
    return _write_bench(run_real_size_benchmark(cfg, log=print), args.output or "bench/results/real_size.json",
                        markdown_table)


def cmd_bench_real_size_closed_form(args) -> int:
    from .research.benchmarks.closed_form import ClosedFormBenchConfig, markdown_table, run_closed_form_benchmark

    cfg = ClosedFormBenchConfig(seed=args.seed, repeats=args.repeats)
    if args.models:
        cfg.models = tuple(args.models)
    if args.concepts:
        cfg.concept_counts = tuple(args.concepts)
    if cfg.repeats < 1 or not all(1 <= n <= 10 for n in cfg.concept_counts):
        raise ValueError("--repeats must be at least 1 and --concepts between 1 and 10")
    return _write_bench(run_closed_form_benchmark(cfg, log=print),
                        args.output or "bench/results/real_size_closed_form.json", markdown_table)


def cmd_bench_memory_accounting(args) -> int:
    from .research.benchmarks.memory_accounting import MemoryAccountingConfig, markdown_table, run_memory_accounting

    cfg = MemoryAccountingConfig(batch_size=args.batch_size, weight_dtype=args.weight_dtype, budget_gib=args.budget_gib)
    if args.models:
        cfg.models = tuple(args.models)
    if cfg.batch_size < 1 or cfg.budget_gib <= 0:
        raise ValueError(f"--batch-size must be at least 1 and --budget-gib positive, got {cfg.batch_size} and "
                         f"{cfg.budget_gib}")
    return _write_bench(run_memory_accounting(cfg, log=print), args.output, markdown_table)


def cmd_bench_robustness(args) -> int:
    from .research.attacks import AttackConfig
    from .research.benchmarks.robustness import RobustnessBenchConfig, markdown_table, run_robustness_benchmark
    from .research.toyworld.assets import load_toy_classifier, load_toy_pipeline

    if args.merge:
        return _merge_bench(args.merge, args.output, markdown_table)
    if args.replace_methods:
        from .research.benchmarks.results import replace_method_rows
        from .research.benchmarks.robustness import METHOD_SETTINGS

        result = replace_method_rows(*args.replace_methods, METHOD_SETTINGS)
        return _write_joined(result, args.output, markdown_table,
                             f"replaced the rows of {', '.join(result['replaced_methods'][-1]['methods'])} in")
    cfg = RobustnessBenchConfig(attack=AttackConfig(seed=args.seed), seed=args.seed, quick=args.quick)
    if args.methods:
        cfg.methods = tuple(m.replace("-", "_") for m in args.methods)
    if args.attacks:
        cfg.attacks = tuple(a.replace("-", "_") for a in args.attacks)
    cfg.validate()
    result = run_robustness_benchmark(cfg, load_toy_pipeline(args.model), load_toy_classifier(args.classifier),
                                      log=print)
    return _write_bench(result, args.output, markdown_table)


def cmd_bench_all(args) -> int:
    from .research.benchmarks.suite import bench_all

    bench_all(args.budget, output_dir=args.output_dir, cache_dir=args.cache_dir, command=_command_line(),
              model=args.model, classifier=args.classifier, benchmarks=tuple(args.benchmarks or ()) or None,
              unet_methods=tuple(args.unet_methods or ()) or None,
              unet_scenarios=tuple(args.unet_scenarios or ()) or None,
              robustness_methods=tuple(args.robustness_methods or ()) or None,
              te_scenarios=tuple(args.te_scenarios or ()) or None, sampling_steps=args.sampling_steps, log=print)
    return 0


def cmd_bench_prune_cells(args) -> int:
    from .research.benchmarks.suite import prune_cells

    if not Path(args.cache_dir).is_dir():
        raise FileNotFoundError(f"no cell cache at {args.cache_dir}: pass the --cache-dir a bench all run wrote to")
    prune_cells(args.cache_dir, dry_run=args.dry_run)
    return 0


def cmd_evaluate(args) -> int:
    from .comparison import save_grid
    from .research.evaluation import evaluate, toy_prompt_sets
    from .research.toyworld.assets import load_toy_classifier, load_toy_pipeline

    sets = toy_prompt_sets(args.erased, args.retained)
    sampling = _sampling_config(args, images_per_prompt=args.images_per_prompt, seed=args.seed)
    pipe = load_toy_pipeline(args.model)
    classifier = load_toy_classifier(args.classifier)
    result, images = evaluate(pipe, classifier, sets, sampling,
                              progress=ProgressReporter("sampling", unit="image", leave=False))
    out = Path(args.output)  # created only once there is something to write
    out.mkdir(parents=True, exist_ok=True)
    save_grid(images, rows=sum(len(s.prompts) for s in sets), path=out / "grid.png")
    result.save_json(out / "metrics.json")
    for c, acc in result.concept_accuracy.items():
        print(f"{'erased  ' if c in result.erased else 'retained'} {c:<12} accuracy {acc:.3f}")
    print(f"toy FID {result.toy_fid:.2f}; wrote {out / 'metrics.json'} and {out / 'grid.png'}")
    return 0


# `forget` flags (argparse dest) -> the config field each sets, with dots into nested configs. Their
# defaults and help come from the config dataclasses (unlearn_core.configs): UnetUnlearnConfig() is the
# paper's settings for SD-size models (with --model), UnetUnlearnConfig.toy() those for the embedded toy
# model (without). A flag left out keeps that default, or what the method sets.
UNET_FLAGS = {"mode": "mode", "target": "target", "steps": "steps_per_concept", "batch_size": "batch_size",
              "lr": "lr", "images_per_concept": "images_per_concept", "density": "mask.density",
              "warmup": "mask.warmup_steps", "update_interval": "mask.update_interval", "turnover": "mask.turnover",
              "alignment_weight": "loss.alignment_weight", "distillation_weight": "loss.distillation_weight",
              "adversarial_interval": "adversarial_interval", "distillation_bank": "distillation_bank",
              "student_chunk_rows": "student_chunk_rows", "seed": "seed"}
# ... and for --method text-encoder (--lora-rank also sets lora_alpha = rank, see text_encoder_config_from_args)
TEXT_ENCODER_FLAGS = {"te_layers": "num_layers", "clip_skip": "clip_skip", "steps": "steps",
                      "adversarial_interval": "adversarial_interval", "lora_rank": "lora_rank", "seed": "seed"}
#: rank of the LoRA file `forget` extracts from a UNet edit when --lora-rank is not given
UNET_LORA_RANK = 8


def _set_flags(cfg, args, flags: dict[str, str]):
    from .config_help import set_value

    for dest, path in flags.items():
        value = getattr(args, dest)
        if value is not None:
            set_value(cfg, path, value)
    return cfg


def unet_config_from_args(args):
    from .configs import UnetUnlearnConfig
    from .methods import ROBUST_LR_SCALE, method_config

    base = UnetUnlearnConfig() if args.model is not None else UnetUnlearnConfig.toy()
    cfg = method_config(args.method.replace("-", "_"), base)
    if args.method == "dynamic-mask-robust":
        cfg.lr *= ROBUST_LR_SCALE
    if args.gradient_checkpointing:
        cfg.gradient_checkpointing = True
    # explicit flags win over the defaults and over what the method sets
    return _set_flags(cfg, args, UNET_FLAGS)


def _attach_images(concept_set, folder: str | None):
    """--images DIR: all images for a one-concept set, or one sub-folder per concept name."""
    if not folder:
        return
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"--images {folder}: not a folder")
    exts = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}

    def images_in(d: Path):
        return sorted(str(p) for p in d.iterdir() if p.suffix.lower() in exts)

    subdirs = {d.name: d for d in root.iterdir() if d.is_dir()}
    for c in concept_set.concepts:
        if c.name in subdirs:
            c.images = images_in(subdirs[c.name])
        elif len(concept_set.concepts) == 1:
            c.images = images_in(root)
        else:
            raise ValueError(f"--images {folder}: with several concepts, put each concept's images in a sub-folder "
                             f"named after it (missing: {c.name}/)")
        if not c.images:
            raise ValueError(f"--images {folder}: no images (png/jpg/webp/bmp) found for concept {c.name!r}")


def text_encoder_config_from_args(args):
    from .configs import TextEncoderForgetConfig

    cfg = _set_flags(TextEncoderForgetConfig(), args, TEXT_ENCODER_FLAGS)
    if args.lora_rank is not None:
        cfg.lora_alpha = float(args.lora_rank)  # alpha = rank: the LoRA's scale stays 1, as with the defaults
    return cfg.fast() if args.fast else cfg


def cmd_forget_text_encoder(args, concept_set) -> int:
    from .adapters.clip_text_adapter import ClipTextAdapter
    from .adapters.diffusers_adapter import DiffusersAdapter
    from .forget import write_text_encoder_folder
    from .adapters.diffusers_adapter import load_pipeline
    from .text_encoder_unlearning import forget_text_encoder

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"output folder {out} already exists; choose another or pass --overwrite")
    _attach_images(concept_set, args.images)
    concept_set.validate()
    pipe = load_pipeline(_model_dir(args))
    if getattr(pipe, "text_encoder_2", None) is not None:
        raise ValueError("--method text-encoder edits one CLIP text encoder, and this SDXL model has two; erase from "
                         "its UNet instead (--method dynamic-mask or closed-form)")
    cfg = text_encoder_config_from_args(args)
    bar = ProgressReporter("forgetting", fields=("concept", "stage", "loss"))
    result = forget_text_encoder(ClipTextAdapter(pipe.tokenizer, pipe.text_encoder, clip_skip=cfg.clip_skip),
                                 DiffusersAdapter(pipe), concept_set, cfg, progress=bar)
    bar.close()
    write_text_encoder_folder(pipe, result, out, overwrite=args.overwrite, hash_concept_names=args.hash_concept_names)
    for note in result.notes:
        print(f"note: {note}")
    print(f"erased {', '.join(c['name'] for c in result.concepts)} from the text encoder in {result.seconds:.0f}s "
          f"({result.seconds_per_concept:.1f}s per concept); wrote {out}")
    return 0


def cmd_forget_closed_form(args, concept_set) -> int:
    """forget --method closed-form: the closed-form key/value edit (`unlearn_core.closed_form`, its default
    settings; one solve, no training) written to the same output folder as the other UNet methods."""
    from .adapters.diffusers_adapter import DiffusersAdapter, load_pipeline
    from .closed_form import closed_form_edit
    from .forget import write_unlearned_folder

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"output folder {out} already exists; choose another or pass --overwrite")
    pipe = load_pipeline(_model_dir(args))
    result = closed_form_edit(DiffusersAdapter(pipe), concept_set)
    lora_rank = args.lora_rank if args.lora_rank is not None else UNET_LORA_RANK
    write_unlearned_folder(pipe, result, out, lora_rank, save_merged=not args.no_merged, overwrite=args.overwrite,
                           hash_concept_names=args.hash_concept_names)
    for note in result.notes:
        print(f"note: {note}")
    print(f"erased {', '.join(c['name'] for c in result.concepts)} in {result.seconds:.1f}s (closed form); wrote {out}")
    return 0


def cmd_forget(args) -> int:
    from .concept_set import ConceptSet
    from .forget import forget

    concept_set = ConceptSet.load(args.concepts, check_files=not args.images)
    if args.method == "text-encoder":
        return cmd_forget_text_encoder(args, concept_set)
    if args.method == "closed-form":
        return cmd_forget_closed_form(args, concept_set)
    if args.images:
        _attach_images(concept_set, args.images)
    cfg = unet_config_from_args(args)
    bar = ProgressReporter("unlearning", fields=("concept", "loss"))
    lora_rank = args.lora_rank if args.lora_rank is not None else UNET_LORA_RANK
    result = forget(_model_dir(args), concept_set, cfg, args.output, lora_rank=lora_rank,
                    save_merged=not args.no_merged, overwrite=args.overwrite, progress=bar,
                    hash_concept_names=args.hash_concept_names)
    bar.close()
    for note in result.notes:
        print(f"note: {note}")
    print(f"erased {', '.join(c['name'] for c in result.concepts)} in {result.seconds:.0f}s "
          f"({result.seconds_per_step * 1000:.0f} ms/step); wrote {args.output}")
    return 0


def _model_dir(args) -> Path:
    """--model, or the embedded toy model when none is given."""
    if args.model is not None:
        return Path(args.model)
    from .research.toyworld.assets import TOY_MODEL_DIR

    return TOY_MODEL_DIR


def cmd_demo(args) -> int:
    from .research.demo import run_demo

    run_demo(Path(args.output), images_per_prompt=args.images_per_prompt, steps_per_concept=args.steps, log=print)
    return 0


def _merge_option(parser) -> None:
    parser.add_argument("--merge", nargs="+", default=None, metavar="PART_JSON",
                        help="instead of running: join the result files of one run split by --methods over several "
                             "processes (e.g. two processes with --threads 1 on a 2-core machine)")


def _toy_model_options(parser) -> None:
    parser.add_argument("--model", default=None,
                        help="toy-world diffusers model folder, e.g. a toy-train --output DIR/toy_sd not installed yet "
                             "(default: the embedded toy model)")
    parser.add_argument("--classifier", default=None,
                        help="toy-world classifier that scores it, e.g. DIR/classifier.safetensors of the same build "
                             "(default: the embedded one)")


def _bench_options(parser, output: str) -> None:
    _toy_model_options(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny budgets: a smoke test of the benchmark, not results")
    parser.add_argument("--output", default=output)


def _merge_bench(parts: list[str], output: str, markdown_table) -> int:
    from .research.benchmarks.results import merge_partial_results

    result = merge_partial_results(parts)
    return _write_joined(result, output, markdown_table, f"merged {len(parts)} partial runs into")


def _write_joined(result: dict, output: str, markdown_table, done: str) -> int:
    """Write a result joined from other result files (with this command line) and show its table."""
    from .research.benchmarks.results import write_results

    write_results(result, output, _command_line(), markdown_table(result))
    print(markdown_table(result))
    print(f"{done} {output}")
    return 0


def _write_bench(result: dict, output: str, markdown_table) -> int:
    from .research.benchmarks.results import write_results

    write_results(result, output, _command_line(), markdown_table(result))
    print(markdown_table(result))
    print(f"wrote {output} and {Path(output).with_suffix('.md')}")
    return 0


def _sampling_options(parser) -> None:
    parser.add_argument("--sampler", default=SAMPLING.sampler, choices=[*SAMPLERS, "pipeline"],
                        help="sampler (default: %(default)s; 'pipeline': the model's own scheduler)")
    parser.add_argument("--sampling-steps", type=int, default=SAMPLING.num_inference_steps,
                        help="sampler steps per image (default: %(default)s)")
    parser.add_argument("--guidance", type=float, default=SAMPLING.guidance_scale,
                        help="classifier-free guidance scale (default: %(default)s)")


def _sampling_config(args, **settings):
    from .sampling import SamplingConfig

    return SamplingConfig(num_inference_steps=args.sampling_steps, guidance_scale=args.guidance,
                          sampler=None if args.sampler == "pipeline" else args.sampler, **settings)


def _sampler_settings(args) -> dict:
    from .sampling import sampler_settings

    return sampler_settings(_sampling_config(args))


def _fmt(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _with_default(help_text: str, default: str) -> str:
    # argparse %-formats help strings
    return f"{help_text.rstrip('.')} (default: {default}).".replace("%", "%%")


def _unet_flag_help(path: str, extra: str = "") -> str:
    """The help of the UnetUnlearnConfig field at `path` with its default: one value, or the paper's
    (with --model) and the toy model's, then the methods that set another value."""
    from .config_help import help_of, value_of
    from .configs import UnetUnlearnConfig
    from .methods import METHODS, method_config

    paper, toy = value_of(UnetUnlearnConfig(), path), value_of(UnetUnlearnConfig.toy(), path)
    default = _fmt(paper) if paper == toy else f"{_fmt(paper)} with --model, {_fmt(toy)} on the embedded toy model"
    for method in METHODS:
        value = value_of(method_config(method, UnetUnlearnConfig()), path)
        if value != paper:
            default += f"; {_fmt(value)} for {method.replace('_', '-')}"
    return _with_default(help_of(UnetUnlearnConfig, path), default + extra)


def _te_flag_help(path: str, extra: str = "") -> str:
    """The help of the TextEncoderForgetConfig field at `path` with its default."""
    from .config_help import default_of, help_of
    from .configs import TextEncoderForgetConfig

    return _with_default(help_of(TextEncoderForgetConfig, path), _fmt(default_of(TextEncoderForgetConfig, path)) + extra)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="concept-unlearn", description="Concept unlearning for text-to-image diffusion models.")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="erase concepts from the embedded toy model and show before/after")
    d.add_argument("--output", default="demo_output", help="output folder (default: %(default)s)")
    d.add_argument("--images-per-prompt", type=int, default=8)
    d.add_argument("--steps", type=int, default=None,
                   help="training steps per concept of both methods (default: the UNet benchmark's and the "
                        "text-encoder method's defaults)")
    d.set_defaults(func=cmd_demo)

    from .methods import ROBUST_LR_SCALE  # light, like the configs the flags take their defaults from

    f = sub.add_parser("forget", help="erase concepts from a diffusers model folder (UNet methods)")
    f.add_argument("--model", default=None, help="diffusers model folder (default: the embedded toy model)")
    f.add_argument("--concepts", required=True, help="concept-set file (.json, .yaml or .csv)")
    f.add_argument("--output", required=True, help="output folder (must not exist unless --overwrite)")
    f.add_argument("--method", default="dynamic-mask",
                   choices=["dynamic-mask", "dynamic-mask-robust", "paper-code", "salun", "finetune", "esd-x", "esd-u",
                            "closed-form", "text-encoder"],
                   help="UNet methods (dynamic-mask-robust: every layer + soft-prompt adversarial training, "
                        "resists learned-token and soft-prompt attacks at a cost in retention and time; closed-form: "
                        "one least-squares edit of the cross-attention keys and values, seconds, no training, "
                        "ClosedFormConfig's defaults), or "
                        "text-encoder (few-shot TI + LoRA on the final text-encoder layers) (default: %(default)s)")
    f.add_argument("--images", default=None,
                   help="folder of example images: for one concept, or one sub-folder per concept name")
    f.add_argument("--te-layers", type=int, default=None, help="Text-encoder method: " + _te_flag_help("num_layers"))
    f.add_argument("--clip-skip", type=int, default=None, help="Text-encoder method: " + _te_flag_help("clip_skip"))
    f.add_argument("--fast", action="store_true",
                   help="text-encoder method: half the textual-inversion steps at twice the images per step "
                        "(less time; see the README's benchmark row three_sibling_anchor_fast)")
    f.add_argument("--adversarial-interval", type=int, default=None,
                   help=f"UNet methods: {_unet_flag_help('adversarial_interval')} "
                        f"Text-encoder method: {_te_flag_help('adversarial_interval')}")
    f.add_argument("--mode", default=None, choices=["sequential", "simultaneous"], help=_unet_flag_help("mode"))
    f.add_argument("--target", default=None, help=_unet_flag_help("target"))
    f.add_argument("--steps", type=int, default=None,
                   help=f"UNet methods: {_unet_flag_help('steps_per_concept')} "
                        f"Text-encoder method: {_te_flag_help('steps')}")
    f.add_argument("--batch-size", type=int, default=None, help=_unet_flag_help("batch_size"))
    f.add_argument("--lr", type=float, default=None,
                   help=_unet_flag_help("lr", f"; x{ROBUST_LR_SCALE:g} for dynamic-mask-robust"))
    f.add_argument("--images-per-concept", type=int, default=None, help=_unet_flag_help("images_per_concept"))
    f.add_argument("--density", type=float, default=None, help=_unet_flag_help("mask.density"))
    f.add_argument("--warmup", type=int, default=None, help=_unet_flag_help("mask.warmup_steps"))
    f.add_argument("--update-interval", type=int, default=None, help=_unet_flag_help("mask.update_interval"))
    f.add_argument("--turnover", type=float, default=None, help=_unet_flag_help("mask.turnover"))
    f.add_argument("--alignment-weight", type=float, default=None, help=_unet_flag_help("loss.alignment_weight"))
    f.add_argument("--distillation-weight", type=float, default=None,
                   help=_unet_flag_help("loss.distillation_weight"))
    f.add_argument("--distillation-bank", type=int, default=None, help=_unet_flag_help("distillation_bank"))
    f.add_argument("--student-chunk-rows", type=int, default=None, help=_unet_flag_help("student_chunk_rows"))
    f.add_argument("--gradient-checkpointing", action="store_true",
                   help=_unet_flag_help("gradient_checkpointing"))
    f.add_argument("--lora-rank", type=int, default=None,
                   help=f"UNet methods: rank of the LoRA file extracted from the edit (default: {UNET_LORA_RANK}). "
                        f"Text-encoder method: {_te_flag_help('lora_rank', '; lora_alpha = rank')}")
    f.add_argument("--no-merged", action="store_true", help="do not write the merged model folder")
    f.add_argument("--hash-concept-names", action="store_true",
                   help="write the erased concepts' names into the output files (safetensors metadata, "
                        "report.json, ...) only as keyed hashes: HMAC-SHA256 under a random key drawn for this run "
                        "and kept nowhere, so the names cannot be read back or recovered by trying candidate "
                        "names; superclasses stay readable, retain prompts are left out (default: off, names in "
                        "clear)")
    f.add_argument("--overwrite", action="store_true")
    f.add_argument("--seed", type=int, default=None, help=_unet_flag_help("seed"))
    f.set_defaults(func=cmd_forget)

    t = sub.add_parser("toy-train", help="rebuild the embedded toy model and classifier from scratch (~1.5 h on 2 CPU cores)")
    t.add_argument("--output", default="toy_build", help="where to write the new model (default: %(default)s)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--install", action="store_true", help="also replace the package's embedded weights with the new ones")
    t.add_argument("--quick", action="store_true", help="a few steps of each stage only (smoke test, useless weights)")
    t.add_argument("--unet-steps", type=int, default=None,
                   help="UNet training steps of phase 1 (default: 6000, the embedded weights' recipe)")
    t.add_argument("--unet-restart-steps", type=int, default=None,
                   help="UNet steps of phase 2, a warm restart of the learning rate from phase 1's EMA (default: "
                        "2200; 0 skips it). The default recipe takes about 85 min in all on a quiet 2-core "
                        "machine, see README")
    t.add_argument("--resume-phase2", action="store_true",
                   help="run only the second UNet phase from OUTPUT/toy_sd_phase1 of an earlier, interrupted run")
    t.set_defaults(func=cmd_toy_train)

    e = sub.add_parser("evaluate", help="score a model on toy-world concepts")
    e.add_argument("--model", default=None, help="diffusers model folder (default: the embedded toy model)")
    e.add_argument("--classifier", default=None, help=argparse.SUPPRESS)
    e.add_argument("--erased", nargs="*", default=[], help="concepts expected to be gone")
    e.add_argument("--retained", nargs="*", default=[], help="concepts expected to stay")
    e.add_argument("--images-per-prompt", type=int, default=8)
    e.add_argument("--seed", type=int, default=0)
    _sampling_options(e)
    e.add_argument("--output", default="evaluation", help="folder for metrics.json and grid.png")
    e.set_defaults(func=cmd_evaluate)

    b = sub.add_parser("bench", help="benchmarks on the toy world")
    bsub = b.add_subparsers(dest="bench", required=True)
    bb = bsub.add_parser("base", help="quality of the embedded toy model (writes bench/results/base_model.json)")
    _toy_model_options(bb)
    bb.add_argument("--images-per-prompt", type=int, default=16)
    bb.add_argument("--styled-images-per-prompt", type=int, default=16)
    bb.add_argument("--seed", type=int, default=0,
                    help="first seed; every image gets its own, SEED + k * images per prompt + i for image i of "
                         "prompt k (default: %(default)s)")
    _sampling_options(bb)
    bb.add_argument("--output", default="bench/results/base_model.json")
    bb.set_defaults(func=cmd_bench_base)
    bu = bsub.add_parser("unet", help="UNet methods side by side (writes bench/results/unet.json and .md)")
    bu.add_argument("--steps", type=int, default=100, help="training steps per concept")
    bu.add_argument("--lr", type=float, default=None, help="learning rate of every method (default: the benchmark's)")
    bu.add_argument("--methods", nargs="*", default=None,
                    help="subset of dynamic-mask paper-code salun esd-x esd-u (default: all)")
    bu.add_argument("--eval-images", type=int, default=16, help="images per object prompt when scoring a model")
    bu.add_argument("--no-overhead", action="store_true",
                    help="skip the mask-overhead timing (e.g. in the second process of a split run)")
    _sampling_options(bu)
    _merge_option(bu)
    _bench_options(bu, "bench/results/unet.json")
    bu.set_defaults(func=cmd_bench_unet)
    bt = bsub.add_parser("text-encoder", help="few-shot text-encoder forgetting vs negated TI (writes bench/results/text_encoder.json)")
    _sampling_options(bt)
    _bench_options(bt, "bench/results/text_encoder.json")
    bt.set_defaults(func=cmd_bench_text_encoder)
    bs = bsub.add_parser("real-size", help="seconds per training step and peak memory of a plain fine-tune, the "
                                           "paper's recipe and ours on an SD1.5-size UNet with random weights "
                                           "(writes bench/results/real_size.json and .md); "
                                           "with --closed-form, seconds of the closed-form edit instead")
    bs.add_argument("--resolution", type=int, default=512, help="image side in pixels (latents are 1/8)")
    bs.add_argument("--steps", type=int, default=4, help="timed training steps per method")
    bs.add_argument("--device", default="cpu", help="cpu or cuda")
    bs.add_argument("--seed", type=int, default=0)
    bs.add_argument("--distillation-bank", type=int, default=50,
                    help="draws banked per concept in the dynamic_mask_bank row (default: %(default)s, a tenth of "
                         "the paper's 500 steps)")
    bs.add_argument("--closed-form", action="store_true",
                    help="time the closed-form edit, text encoding included, on SD1.5- and SDXL-shaped UNets with "
                         "their text encoders (writes bench/results/real_size_closed_form.json and .md)")
    bs.add_argument("--concepts", type=int, nargs="*", default=None,
                    help="with --closed-form: how many concepts per row, each 1-10 (default: 1 and 10)")
    bs.add_argument("--models", nargs="+", default=None, choices=["sd15", "sdxl"],
                    help="with --closed-form: which model shapes to time (default: both; SDXL needs about 14 GB)")
    bs.add_argument("--repeats", type=int, default=2,
                    help="with --closed-form: timed runs per row; the fastest is reported")
    bs.add_argument("--output", default=None,
                    help="result file (default: bench/results/real_size.json, or real_size_closed_form.json)")
    bs.set_defaults(func=cmd_bench_real_size)
    bm = bsub.add_parser("memory-accounting", help="peak GPU memory of one training step of SD1.5 at 512 px and "
                                                   "SDXL at 1024 px, computed on PyTorch's meta device without a "
                                                   "GPU (writes bench/results/memory_accounting.json and .md)")
    bm.add_argument("--models", nargs="+", default=None, choices=["sd15", "sdxl"],
                    help="which model shapes to account for (default: both)")
    bm.add_argument("--batch-size", type=int, default=1, help="training images per step (default: %(default)s)")
    bm.add_argument("--weight-dtype", default="bfloat16", choices=["float16", "bfloat16", "float32"],
                    help="dtype of the frozen weights and the activations (default: %(default)s)")
    bm.add_argument("--budget-gib", type=float, default=12.0,
                    help="GPU memory the table marks each row against (default: %(default)s)")
    bm.add_argument("--output", default="bench/results/memory_accounting.json", help="result file (and .md beside it)")
    bm.set_defaults(func=cmd_bench_memory_accounting)
    br = bsub.add_parser("robustness", help="attacks (paraphrase, composition, learned token, soft prompt) against "
                                           "every method (writes bench/results/robustness.json and .md)")
    br.add_argument("--methods", nargs="*", default=None,
                    help="subset of base dynamic-mask dynamic-mask-robust few-shot-text-encoder salun esd-x esd-u "
                         "(default: all)")
    br.add_argument("--attacks", nargs="*", default=None,
                    help="subset of words paraphrase composition learned-token soft-prompt (default: all)")
    _merge_option(br)
    br.add_argument("--replace-methods", nargs=2, default=None, metavar=("RESULT_JSON", "RERUN_JSON"),
                    help="write RESULT_JSON with the rows of the methods rerun in RERUN_JSON (a --methods run with "
                         "the same settings but those methods' own) swapped in, to --output")
    _bench_options(br, "bench/results/robustness.json")
    br.set_defaults(func=cmd_bench_robustness)
    ba = bsub.add_parser("all", help="the base-model, UNet, text-encoder and robustness benchmarks with one sampler, "
                                     "several training seeds and 95%% intervals; resumable (writes "
                                     "bench/results/<benchmark>.json and SUMMARY.md)")
    ba.add_argument("--budget", default="full", choices=["full", "quick", "tiny"],
                    help="full: the published results (3 training seeds, 16 images per prompt; hours); quick: every "
                         "benchmark with 1 seed, 2 images per prompt and tiny training budgets, a smoke run (not "
                         "results); tiny: a few cells, for tests (default: %(default)s)")
    ba.add_argument("--output-dir", default="bench/results", help="where the result files go (default: %(default)s)")
    ba.add_argument("--cache-dir", default=None,
                    help="where each finished cell is stored, so a stopped run resumes and a rerun is assembled from "
                         "it (default: $CONCEPT_UNLEARN_BENCH_CACHE, else ~/.cache/concept-unlearn/bench)")
    ba.add_argument("--benchmarks", nargs="+", default=None,
                    choices=["base_model", "unet", "text_encoder", "robustness"],
                    help="run and write only these (e.g. one per process, sharing --cache-dir; default: all)")
    ba.add_argument("--unet-methods", nargs="+", default=None, metavar="METHOD",
                    help="score only these methods in the UNet benchmark (dynamic_mask, dynamic_mask_warm, "
                         "dynamic_mask_bank, closed_form, paper_code, salun, esd_x, esd_u; default: all)")
    ba.add_argument("--unet-scenarios", nargs="+", default=None, choices=["sequential", "style", "simultaneous"],
                    help="run only these scenarios of the UNet benchmark (sequential gives the rows seq3, seq6 and "
                         "seq10; default: all)")
    ba.add_argument("--robustness-methods", nargs="+", default=None, metavar="METHOD",
                    help="attack only these methods in the robustness benchmark (dynamic_mask, dynamic_mask_robust, "
                         "closed_form, few_shot_text_encoder, salun, esd_x, esd_u; the base model is always measured; "
                         "default: all)")
    ba.add_argument("--te-scenarios", nargs="+", default=None, metavar="SCENARIO",
                    help="run only these scenarios of the text-encoder benchmark (single_star, ..., style, three, "
                         "the objects' _sibling_anchor rows, style_no_adversarial, three_sibling_anchor_fast; "
                         "default: all; a narrowed run scores its own base cell)")
    ba.add_argument("--sampling-steps", type=int, default=None, metavar="N",
                    help="draw every image scored with the shared sampler (not the attacks' images) with N steps "
                         "instead of the budget's own number (full: 40); part of every cell's key, so cells of "
                         "other step counts are not mixed in")
    _toy_model_options(ba)
    ba.set_defaults(func=cmd_bench_all)
    bp = bsub.add_parser("prune-cells", help="delete the cells of a bench all cache that the installed toy model and "
                                             "this code version cannot use")
    bp.add_argument("--cache-dir", required=True,
                    help="the cell cache to prune, e.g. bench/cells (the published run's); required, because the "
                         "default cache may hold cells of other checkouts")
    bp.add_argument("--dry-run", action="store_true", help="list what would be deleted, and why, without deleting")
    bp.set_defaults(func=cmd_bench_prune_cells)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _set_threads(args.threads)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"concept-unlearn: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("concept-unlearn: interrupted; nothing was written for the unfinished step", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
