import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unlearn_core.concept_set import Concept, ConceptSet
from unlearn_core.weights_io import read_metadata

CLI = [sys.executable, "-m", "unlearn_core.cli"]


def run(*args, timeout=600):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=timeout)


def test_unknown_concept_error_lists_known_ones(tmp_path):
    r = run("evaluate", "--erased", "pentagram", "--output", str(tmp_path / "e"))
    assert r.returncode == 2
    assert "unknown toy-world concept 'pentagram'" in r.stderr and "star" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.toy
@pytest.mark.slow
def test_evaluate_writes_metrics_and_grid(tmp_path):
    r = run("evaluate", "--erased", "star", "--retained", "circle", "--images-per-prompt", "2", "--output", str(tmp_path / "e"))
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert set(m["concept_accuracy"]) == {"star", "circle"}
    assert m["sampling"]["sampler"] == "euler_ancestral" and m["sampling"]["num_inference_steps"] == 120
    assert (tmp_path / "e" / "grid.png").stat().st_size > 0


@pytest.mark.toy
@pytest.mark.slow
def test_evaluate_takes_the_sampler_settings(tmp_path):
    r = run("evaluate", "--retained", "circle", "--images-per-prompt", "2", "--sampler", "pipeline", "--sampling-steps", "4",
            "--guidance", "6", "--output", str(tmp_path / "e"))
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert (m["sampling"]["sampler"], m["sampling"]["num_inference_steps"], m["sampling"]["guidance_scale"]) == (None, 4, 6.0)
    bad = run("evaluate", "--retained", "circle", "--sampling-steps", "0", "--output", str(tmp_path / "f"))
    assert bad.returncode == 2 and "num_inference_steps must be at least 1" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "f").exists()
    one = run("evaluate", "--retained", "circle", "--images-per-prompt", "1", "--output", str(tmp_path / "g"))
    assert one.returncode == 2 and "toy FID needs at least 2 images of circle" in one.stderr
    assert "Traceback" not in one.stderr and not (tmp_path / "g").exists()


def test_forget_with_a_bad_concept_set_fails_cleanly(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"concepts": [{"name": "star", "superclass": "star"}]}))
    r = run("forget", "--concepts", str(bad), "--output", str(tmp_path / "out"))
    assert r.returncode == 2 and "itself as superclass" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


SHORT = ["--steps", "3", "--images-per-concept", "2", "--warmup", "1", "--update-interval", "1", "--lr", "1e-3",
         "--batch-size", "2"]


@pytest.mark.slow
def test_forget_writes_the_outputs_and_never_overwrites(tmp_path, toy_pipe):
    cs = tmp_path / "set.yaml"
    ConceptSet([Concept("star", "symbol", templates=["a {}"])], ["a circle"]).save(cs)
    out = tmp_path / "out"
    r = run("forget", "--concepts", str(cs), "--output", str(out), "--lora-rank", "4", *SHORT)
    assert r.returncode == 0, r.stderr
    names = {p.name for p in out.iterdir()}
    assert {"unlearned.diff.safetensors", "unlearned_lora.safetensors", "model", "report.json"} <= names
    meta = read_metadata(out / "unlearned_lora.safetensors")
    assert meta["concepts"] == [{"name": "star", "superclass": "symbol"}]
    assert meta["rank"] == 4 and meta["base_model_hash"] and meta["library_version"]
    assert meta["config"]["mask"]["kind"] == "dynamic"
    from unlearn_core.research.toyworld.assets import load_toy_pipeline

    load_toy_pipeline(out / "model")  # the merged model is a loadable diffusers folder
    r = run("forget", "--concepts", str(cs), "--output", str(out), *SHORT)
    assert r.returncode == 2 and "already exists" in r.stderr


@pytest.mark.toy
@pytest.mark.slow
def test_interrupted_forget_writes_nothing(tmp_path):
    cs = tmp_path / "set.json"
    ConceptSet([Concept("star", "symbol", templates=["a {}"])]).save(cs)
    out = tmp_path / "out"
    args = ["forget", "--concepts", str(cs), "--output", str(out), "--steps", "100000", "--images-per-concept", "2",
            "--warmup", "1"]
    # A suite started in the background (`nohup ... &`) hands its children SIGINT ignored, and
    # Python then never raises KeyboardInterrupt: give the CLI the default disposition, as a terminal would.
    proc = subprocess.Popen(CLI + args, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        seen = ""
        deadline = time.time() + 300
        while "unlearning" not in seen and time.time() < deadline:
            seen += proc.stderr.read(1)
        assert "unlearning" in seen
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert "interrupted" in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["set.json"]


@pytest.mark.toy
@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    r = run("demo", "--output", str(out), "--images-per-prompt", "2", "--steps", "5")
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["erased"] and m["before"]["concept_accuracy"] and m["after"]["concept_accuracy"]
    assert (out / "before_after.png").stat().st_size > 0
    assert (out / "unlearned" / "unlearned_lora.safetensors").exists()
    # the few-shot text-encoder part: its shots on disk, its grid, its LoRA, and its numbers
    te = m["text_encoder"]
    assert te["erased"] == ["bolt"] and len(te["shots"]) == 5 and all(Path(p).exists() for p in te["shots"])
    assert te["settings"]["steps"] == 5 and set(te["after"]["concept_accuracy"]) == {"bolt", *m["retained"]}
    assert (out / "text_encoder_before_after.png").stat().st_size > 0
    assert (out / "unlearned_text_encoder" / "text_encoder_lora_comfy.safetensors").exists()
    assert "5/5 sampling the model with the edited text encoder" in r.stdout


@pytest.mark.toy
@pytest.mark.slow
def test_bench_base_writes_the_result_file(tmp_path):
    path = tmp_path / "base.json"
    r = run("bench", "base", "--images-per-prompt", "1", "--styled-images-per-prompt", "1", "--sampler", "dpm_solver++",
            "--sampling-steps", "10", "--guidance", "4", "--seed", "5", "--output", str(path))
    assert r.returncode == 0, r.stderr
    res = json.loads(path.read_text())
    for key in ("object_accuracy", "object_accuracy_mean", "style_accuracy_mean", "classifier_object_accuracy",
                "classifier_style_accuracy", "toy_fid", "images_per_prompt", "command"):
        assert key in res
    assert len(res["object_accuracy"]) == 16 and res["command"].startswith("concept-unlearn bench base")
    s = res["sampling"]
    assert (s["sampler"], s["num_inference_steps"], s["guidance_scale"], s["seed"]) == ("dpm_solver++", 10, 4.0, 5)
    assert s["distinct_seeds"]  # a rate over many prompts needs more than images-per-prompt noise draws


@pytest.mark.toy
@pytest.mark.slow
def test_benchmarks_load_the_model_and_classifier_they_are_given(tmp_path):
    """--model / --classifier reach every benchmark's loader: a path that does not exist is named in the error."""
    missing = tmp_path / "no_such_build"
    for bench in ("base", "unet", "text-encoder", "robustness"):
        r = run("bench", bench, "--model", str(missing / "toy_sd"), "--output", str(tmp_path / "x.json"))
        assert r.returncode == 2 and f"no toy-world model or classifier at {missing / 'toy_sd'}" in r.stderr, bench
        r = run("bench", bench, "--classifier", str(missing / "c.safetensors"), "--output", str(tmp_path / "x.json"))
        assert r.returncode == 2 and f"no toy-world model or classifier at {missing / 'c.safetensors'}" in r.stderr
    assert not (tmp_path / "x.json").exists()


@pytest.mark.toy
@pytest.mark.slow
def test_bench_robustness_quick_writes_a_row_per_method_scenario_and_attack(tmp_path):
    path = tmp_path / "robustness.json"
    r = run("bench", "robustness", "--quick", "--methods", "base", "dynamic-mask", "--attacks", "words", "learned-token",
            "--output", str(path))
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(path.read_text())
    assert res["command"].startswith("concept-unlearn bench robustness")
    got = {(row["method"], row["scenario"], row["attack"]) for row in res["rows"]}
    assert got == {(m, s, a) for m in ("base", "dynamic_mask") for s in ("objects", "style")
                   for a in ("words", "learned_token")}
    for row in res["rows"]:
        assert 0 <= row["attack_success_rate"] <= 1 and 0 <= row["retained_accuracy"] <= 1
        assert set(row["per_concept"]) == set(row["erased"])
        assert row["erased"] == (["star", "circle", "triangle"] if row["scenario"] == "objects" else ["striped"])
    assert "| dynamic_mask | striped |" in path.with_suffix(".md").read_text()
    # rerun one method and swap its rows in
    part, merged = tmp_path / "dm.json", tmp_path / "merged.json"
    r = run("bench", "robustness", "--quick", "--methods", "dynamic-mask", "--attacks", "words", "learned-token",
            "--output", str(part))
    assert r.returncode == 0, r.stderr[-2000:]
    r = run("bench", "robustness", "--replace-methods", str(path), str(part), "--output", str(merged))
    assert r.returncode == 0, r.stderr[-2000:]
    res_merged = json.loads(merged.read_text())
    assert [row["method"] for row in res_merged["rows"]] == [row["method"] for row in res["rows"]]
    assert res_merged["replaced_methods"][0]["methods"] == ["dynamic_mask"]
    assert res_merged["command"].startswith("concept-unlearn bench robustness --replace-methods")
    r = run("bench", "robustness", "--attacks", "jailbreak", "--output", str(tmp_path / "x.json"))
    assert r.returncode == 2 and "unknown attack 'jailbreak'" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_toy_train_refuses_bad_unet_step_counts(tmp_path):
    r = run("toy-train", "--unet-steps", "0", "--output", str(tmp_path / "toy"))
    assert r.returncode == 2 and "--unet-steps must be at least 1, got 0" in r.stderr
    assert not (tmp_path / "toy").exists()
    r = run("toy-train", "--unet-restart-steps", "-1", "--output", str(tmp_path / "toy"))
    assert r.returncode == 2 and "--unet-restart-steps must be 0 or more, got -1" in r.stderr
    assert not (tmp_path / "toy").exists()


@pytest.mark.toy
@pytest.mark.slow
def test_toy_train_quick_builds_a_loadable_model(tmp_path):
    """The reproduction command end to end, with tiny budgets (the weights are useless)."""
    out = tmp_path / "toy"
    r = run("--threads", "2", "toy-train", "--quick", "--unet-steps", "12", "--unet-restart-steps", "4", "--output", str(out), timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((out / "toy_train_report.json").read_text())
    assert report["config"]["unet_steps"] == 12 and report["config"]["unet_restart_steps"] == 4
    for key in ("classifier_s", "vae_s", "unet_s", "unet_restart_s", "total_s"):
        assert key in report["timings"]
    assert set(report["vae_reconstruction_accuracy"]) == {"object", "style"}
    assert all(0.0 <= v <= 1.0 for v in report["vae_reconstruction_accuracy"].values())
    from unlearn_core.research.toyworld.assets import load_toy_classifier, load_toy_pipeline

    pipe = load_toy_pipeline(out / "toy_sd")
    assert pipe.unet.config.sample_size * pipe.vae_scale_factor == 32  # the UNet's latents match the 32x32 images
    load_toy_classifier(out / "classifier.safetensors")
    from safetensors import safe_open

    with safe_open(str(out / "toy_sd" / "text_encoder" / "model.safetensors"), "pt") as f:
        assert all(k.startswith("text_model.") for k in f.keys())
    # The new build can be scored before it is installed: 30 UNet steps draw nothing recognisable,
    # so it scores far worse than the embedded model with the same prompts, seeds and (embedded) classifier.
    scores = {}
    for name, extra in (("new", ["--model", str(out / "toy_sd")]), ("embedded", [])):
        r = run("bench", "base", *extra, "--images-per-prompt", "2", "--styled-images-per-prompt", "1",
                "--sampling-steps", "30", "--output", str(tmp_path / f"{name}.json"))
        assert r.returncode == 0, r.stderr[-2000:]
        scores[name] = json.loads((tmp_path / f"{name}.json").read_text())
    print({k: (v["toy_fid"], v["object_accuracy_mean"]) for k, v in scores.items()})
    assert str(out / "toy_sd") in scores["new"]["command"]
    assert scores["new"]["toy_fid"] > scores["embedded"]["toy_fid"] + 20


def test_bench_memory_accounting_adds_up_the_parts_of_a_training_step(tmp_path):
    """Computed on the meta device (no memory, no GPU): each part follows from the model's and the
    trainer's sizes, and the activations grow with the rows the trainer runs with gradients."""
    out = tmp_path / "memory_accounting.json"
    r = run("bench", "memory-accounting", "--models", "sd15", "--output", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(out.read_text())
    rows = {row["row"]: row for row in result["rows"]}
    assert list(rows) == ["plain_finetune", "dynamic_mask", "dynamic_mask_later_concept", "dynamic_mask_chunked",
                          "dynamic_mask_chunked_checkpointed"]
    plain, ours, later, chunked, checkpointed = rows.values()
    # batch 1: the fine-tune runs the concept's and the superclass's image; ours adds retained and
    # empty-prompt rows and, for a later concept, an earlier concept's; chunked, one row per pass
    assert [r["student_rows"] for r in rows.values()] == [2, 4, 5, 5, 5]
    assert [r["rows_per_pass"] for r in rows.values()] == [2, 4, 5, 1, 1]
    gib = 2 ** 30
    assert plain["unet_parameters"] > 800e6 and plain["resolution"] == 512
    assert plain["weights_gib"] == pytest.approx(plain["unet_parameters"] * 2 / gib)  # bf16, read in place
    trained = plain["trained_parameters"]
    # bytes per trained entry: fp32 delta, gradient, two Adam moments, a bool mask; + fp32 mask scores
    # for the dynamic mask; + the teacher's weight (base + earlier deltas, bf16) for a later concept
    assert sum(plain["training_state_gib"].values()) == pytest.approx(trained * 17 / gib)
    assert sum(ours["training_state_gib"].values()) == pytest.approx(trained * 21 / gib)
    assert sum(later["training_state_gib"].values()) == pytest.approx(trained * 23 / gib)
    assert ours["activations_gib"] == pytest.approx(2 * plain["activations_gib"], rel=0.01)
    assert later["activations_gib"] == pytest.approx(2.5 * plain["activations_gib"], rel=0.01)
    assert chunked["activations_gib"] == pytest.approx(0.5 * plain["activations_gib"], rel=0.01)
    # in passes: one more set of fp32 gradients (the pass's, added to the running sum)
    assert sum(chunked["training_state_gib"].values()) == pytest.approx(trained * 27 / gib)
    assert checkpointed["training_state_gib"] == chunked["training_state_gib"]
    # checkpointing keeps the blocks' inputs and one block's activations at a time
    assert checkpointed["activations_gib"] < 0.5 * chunked["activations_gib"]
    for row in rows.values():
        parts = (row["weights_gib"] + sum(row["training_state_gib"].values()) + row["student_weights_gib"]
                 + row["activations_gib"] + row["backward_transient_gib"])
        assert row["peak_gib"] == pytest.approx(parts)
    assert (tmp_path / "memory_accounting.md").read_text().count("| sd15 (512 px) |") == 5
    assert result["command"].startswith("concept-unlearn bench memory-accounting")
    bad = run("bench", "memory-accounting", "--batch-size", "0", "--output", str(tmp_path / "x.json"))
    assert bad.returncode == 2 and "--batch-size" in bad.stderr and not (tmp_path / "x.json").exists()


@pytest.mark.slow
def test_bench_real_size_times_both_methods_on_an_sd15_shaped_unet(tmp_path):
    out = tmp_path / "real_size.json"
    r = run("--threads", "2", "bench", "real-size", "--resolution", "64", "--steps", "1", "--distillation-bank", "3",
            "--output", str(out), timeout=1200)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["unet_parameters"] > 800e6  # SD1.5's UNet is 860M parameters
    assert [row["method"] for row in result["rows"]] == ["plain_finetune", "paper_code", "dynamic_mask",
                                                         "dynamic_mask_bank", "dynamic_mask_lean"]
    assert all(row["seconds_per_step"] > 0 for row in result["rows"])
    assert result["rows"][0]["step_ratio_to_plain"] == 1.0
    # the banked row ran the reference up front (setup time), the others have no bank to build
    assert result["rows"][3]["seconds_setup"] > result["rows"][2]["seconds_setup"]
    assert result["rows"][3]["overrides"] == {"distillation_bank": 3}
    assert result["rows"][4]["overrides"] == {"distillation_bank": 3, "student_chunk_rows": 2}
    assert (tmp_path / "real_size.md").read_text().count("| dynamic_mask |") == 1
    bad = run("bench", "real-size", "--resolution", "100", "--output", str(tmp_path / "x.json"))
    assert bad.returncode == 2 and "multiple of 64" in bad.stderr and not (tmp_path / "x.json").exists()


@pytest.mark.slow
def test_bench_real_size_closed_form_times_the_edit_with_text_encoding(tmp_path):
    """On the SD1.5 shape only (the SDXL shape needs about 14 GB; its adapter path is tested on a tiny
    SDXL pipeline in test_sdxl_diffusers.py)."""
    out = tmp_path / "cf.json"
    r = run("--threads", "2", "bench", "real-size", "--closed-form", "--models", "sd15", "--concepts", "2",
            "--repeats", "1", "--output", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["models"]["sd15"]["unet_parameters"] > 800e6 and result["weights"] == "random"
    assert [(row["model"], row["concepts"]) for row in result["rows"]] == [("sd15", 2), ("sd15", 2)]
    for row in result["rows"]:  # 16 cross-attention blocks x (to_k, to_v); encoding is part of the time
        assert row["edited_weights"] == 32 and 0 < row["seconds_text_encoding"] < row["seconds"]
    assert (tmp_path / "cf.md").read_text().count("| sd15 | 2 |") == 2


def test_forget_options_for_the_robust_method_reach_the_config():
    from unlearn_core.cli import unet_config_from_args, build_parser
    from unlearn_core.configs import UnetUnlearnConfig
    from unlearn_core.methods import ROBUST_LR_SCALE

    def config(*flags):
        return unet_config_from_args(build_parser().parse_args(["forget", "--concepts", "c.yaml", "--output", "o",
                                                                *flags]))

    robust = config("--method", "dynamic-mask-robust")
    assert robust.target == "all_linear_conv" and robust.adversarial_interval == 10
    assert robust.lr == UnetUnlearnConfig.toy().lr * ROBUST_LR_SCALE and robust.loss.distillation_weight == 3.0
    explicit = config("--method", "dynamic-mask-robust", "--lr", "0.002", "--distillation-weight", "0.5",
                      "--adversarial-interval", "0", "--target", "attention")
    assert (explicit.lr, explicit.loss.distillation_weight, explicit.adversarial_interval, explicit.target) == \
        (0.002, 0.5, 0, "attention")
    plain = config()
    assert plain.target == "cross_attention" and plain.adversarial_interval == 0 and plain.loss.distillation_weight == 1.0


def test_forget_fast_flag_reaches_the_text_encoder_config():
    from unlearn_core.cli import text_encoder_config_from_args, build_parser
    from unlearn_core.text_encoder_unlearning import TextEncoderForgetConfig

    def config(*flags):
        return text_encoder_config_from_args(build_parser().parse_args(
            ["forget", "--method", "text-encoder", "--concepts", "c.yaml", "--output", "o", *flags]))

    default, fast = config(), config("--fast", "--adversarial-interval", "10")
    assert default.ti_steps == TextEncoderForgetConfig.ti_steps and default.ti_batch_size == TextEncoderForgetConfig.ti_batch_size
    assert (fast.ti_steps, fast.ti_batch_size) == (default.ti_steps // 2, 2 * default.ti_batch_size)
    assert (fast.adversarial_steps, fast.adversarial_batch_size, fast.adversarial_interval) == \
        (default.adversarial_steps // 2, 2 * default.adversarial_batch_size, 10)


def _forget(*flags):
    from unlearn_core.cli import build_parser

    return build_parser().parse_args(["forget", "--concepts", "c.yaml", "--output", "o", *flags])


def test_forget_defaults_are_the_config_dataclasses():
    """No flag given: the paper's settings with --model, the toy settings without, for every method (the
    method's own changes on top); the text-encoder method gets TextEncoderForgetConfig's defaults."""
    from unlearn_core.cli import text_encoder_config_from_args, unet_config_from_args
    from unlearn_core.configs import TextEncoderForgetConfig, UnetUnlearnConfig
    from unlearn_core.methods import ROBUST_LR_SCALE, method_config

    for method in ("dynamic-mask", "dynamic-mask-robust", "paper-code", "salun", "finetune", "esd-x", "esd-u"):
        for model, base in ((["--model", "m"], UnetUnlearnConfig()), ([], UnetUnlearnConfig.toy())):
            expected = method_config(method.replace("-", "_"), base)
            if method == "dynamic-mask-robust":
                expected.lr *= ROBUST_LR_SCALE
            assert unet_config_from_args(_forget("--method", method, *model)) == expected, (method, model)
    assert unet_config_from_args(_forget("--model", "m")) == method_config("dynamic_mask", UnetUnlearnConfig())
    assert text_encoder_config_from_args(_forget("--method", "text-encoder")) == TextEncoderForgetConfig()


def test_forget_flags_set_the_config_fields_they_name():
    from unlearn_core.cli import UNET_FLAGS, text_encoder_config_from_args, unet_config_from_args
    from unlearn_core.config_help import value_of

    values = {"mode": "simultaneous", "target": "attention", "steps": 7, "batch_size": 3, "lr": 0.002,
              "images_per_concept": 9, "density": 0.3, "warmup": 4, "update_interval": 6, "turnover": 0.1,
              "alignment_weight": 0.7, "distillation_weight": 0.5, "adversarial_interval": 5, "distillation_bank": 8,
              "student_chunk_rows": 2,
              "seed": 11}
    assert set(values) == set(UNET_FLAGS)
    flags = [x for dest, v in values.items() for x in (f"--{dest.replace('_', '-')}", str(v))]
    for model in (["--model", "m"], []):
        cfg = unet_config_from_args(_forget(*flags, *model))
        assert {dest: value_of(cfg, path) for dest, path in UNET_FLAGS.items()} == values
        assert not cfg.gradient_checkpointing
        assert unet_config_from_args(_forget("--gradient-checkpointing", *model)).gradient_checkpointing
    te = text_encoder_config_from_args(_forget("--method", "text-encoder", "--te-layers", "2", "--clip-skip", "1",
                                               "--steps", "9", "--adversarial-interval", "3", "--lora-rank", "16",
                                               "--seed", "4"))
    assert (te.num_layers, te.clip_skip, te.steps, te.adversarial_interval, te.lora_rank, te.lora_alpha, te.seed) == \
        (2, 1, 9, 3, 16, 16.0, 4)


def test_forget_help_shows_every_default():
    """Each option of `forget --help` that has a default states it, taken from the config dataclasses."""
    import re

    from unlearn_core.cli import UNET_FLAGS
    from unlearn_core.config_help import default_of, value_of
    from unlearn_core.configs import TextEncoderForgetConfig, UnetUnlearnConfig

    r = run("forget", "--help", timeout=120)
    assert r.returncode == 0, r.stderr
    options = {}
    for block in re.split(r"\n(?=  -)", r.stdout.split("options:", 1)[1]):
        words = block.split()
        if words:
            options[words[0].rstrip(",")] = " ".join(words)

    def fmt(v):
        return f"{v:g}" if isinstance(v, float) else str(v)

    for dest, path in UNET_FLAGS.items():
        paper, toy = value_of(UnetUnlearnConfig(), path), value_of(UnetUnlearnConfig.toy(), path)
        shown = fmt(paper) if paper == toy else f"{fmt(paper)} with --model, {fmt(toy)} on the embedded toy model"
        assert f"(default: {shown}" in options[f"--{dest.replace('_', '-')}"], dest
    for flag, field in (("--te-layers", "num_layers"), ("--clip-skip", "clip_skip"), ("--steps", "steps"),
                        ("--adversarial-interval", "adversarial_interval"), ("--lora-rank", "lora_rank")):
        assert f"(default: {fmt(default_of(TextEncoderForgetConfig, field))}" in options[flag], flag
    assert "3e-06 with --model, 0.001 on the embedded toy model; x0.1 for dynamic-mask-robust" in options["--lr"]
    assert "(default: 1; 3 for dynamic-mask-robust; 0 for paper-code)" in options["--distillation-weight"]
    without_default = {"-h", "--concepts", "--output", "--images", "--fast", "--no-merged", "--overwrite"}
    assert [o for o, text in options.items() if o not in without_default and "default:" not in text] == []
