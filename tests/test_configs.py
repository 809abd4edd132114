"""The config dataclasses (unlearn_core/configs.py) are the one source of defaults and help texts."""

import dataclasses
import json
import subprocess
import sys

import pytest

from unlearn_core.config_help import default_of, field_paths, help_of, set_value, value_of
from unlearn_core.configs import ConceptAwareLossConfig, MaskConfig, TextEncoderForgetConfig, UnetUnlearnConfig

CONFIGS = (UnetUnlearnConfig, MaskConfig, ConceptAwareLossConfig, TextEncoderForgetConfig)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.__name__)
def test_every_field_has_a_default_and_a_help_sentence(config):
    for f in dataclasses.fields(config):
        assert f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING, f.name
        text = f.metadata.get("help", "")
        assert text.strip() and not text[0].islower() and text.endswith("."), f"{config.__name__}.{f.name}: {text!r}"
    for path in field_paths(config):
        assert help_of(config, path)


def test_the_trainer_modules_re_export_the_same_classes():
    from unlearn_core import losses, masks, text_encoder_unlearning, unet_unlearning

    assert unet_unlearning.UnetUnlearnConfig is UnetUnlearnConfig and masks.MaskConfig is MaskConfig
    assert losses.ConceptAwareLossConfig is ConceptAwareLossConfig
    assert text_encoder_unlearning.TextEncoderForgetConfig is TextEncoderForgetConfig


def test_config_help_reads_nested_fields():
    assert default_of(UnetUnlearnConfig, "mask.warmup_steps") == MaskConfig().warmup_steps
    assert help_of(UnetUnlearnConfig, "loss.alignment_weight") == help_of(ConceptAwareLossConfig, "alignment_weight")
    cfg = UnetUnlearnConfig()
    set_value(cfg, "mask.density", 0.3)
    assert value_of(cfg, "mask.density") == 0.3 and UnetUnlearnConfig().mask.density == MaskConfig().density
    assert "mask.density" in field_paths(UnetUnlearnConfig) and "mask" not in field_paths(UnetUnlearnConfig)
    with pytest.raises(KeyError):
        help_of(UnetUnlearnConfig, "mask.no_such_field")


def test_the_defaults_are_the_papers_settings_for_sd():
    """Sculpting Memory's settings for SD 1.4 (what `forget --model` used to restate as SD_PRESET)."""
    cfg = UnetUnlearnConfig()
    assert (cfg.steps_per_concept, cfg.batch_size, cfg.lr, cfg.images_per_concept) == (500, 2, 3e-6, 100)
    assert (cfg.mask.warmup_steps, cfg.mask.update_interval, cfg.loss.alignment_weight) == (50, 100, 0.25)
    assert cfg.target == "cross_attention" and cfg.mask.kind == "dynamic" and cfg.mask.density == 0.5


def test_toy_settings_are_the_unet_benchmarks():
    """`UnetUnlearnConfig.toy()` (forget without --model) is what `bench unet` trains with."""
    from unlearn_core.methods import method_config
    from unlearn_core.research.benchmarks.unet import UnetBenchConfig

    assert method_config("dynamic_mask", UnetUnlearnConfig.toy()) == UnetBenchConfig().trainer_config("dynamic_mask")
    toy = UnetUnlearnConfig.toy()
    assert (toy.steps_per_concept, toy.batch_size, toy.lr, toy.images_per_concept) == (100, 4, 1e-3, 32)
    assert (toy.mask.warmup_steps, toy.mask.update_interval, toy.loss.alignment_weight) == (20, 25, 0.0)


def test_configs_and_their_help_load_without_torch():
    code = ("import json, sys\nimport unlearn_core.configs, unlearn_core.config_help, unlearn_core.methods\n"
            "print(json.dumps(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
