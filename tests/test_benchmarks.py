"""The benchmark helpers measure what they claim to (pure logic, no models)."""

import time

import pytest
import torch

from unlearn_core.research.benchmarks.memory import PeakMemory, heap_in_use_bytes


@pytest.mark.skipif(heap_in_use_bytes() is None or torch.cuda.is_available(),
                    reason="needs glibc's mallinfo2 (the CPU measure); on a GPU CUDA's allocator is used")
def test_peak_memory_sees_a_block_peak_after_a_larger_block_was_freed():
    # The resident-set measure failed exactly here: memory freed earlier is reused, so RSS stays flat.
    big = torch.ones(40_000_000)  # 153 MB
    del big
    with PeakMemory() as m:
        block = torch.ones(20_000_000)  # 76 MB
        time.sleep(0.02)
        del block
    assert m.source in ("heap", "cuda")
    assert 60 < m.peak_mb < 120


def test_peak_memory_of_a_block_that_allocates_nothing_is_small():
    with PeakMemory() as m:
        time.sleep(0.01)
    assert m.peak_mb < 5


def _part(tmp_path, name, methods, base_retained=0.9, steps=150):
    import json

    rows = [{"method": m, "scenario": "seq3", "base_retained_accuracy": base_retained, "base_toy_fid": 10.0}
            for m in methods]
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"command": f"bench {name}", "rows": rows, "mask_overhead_ratio": 1.02,
                                "settings": {"methods": methods, "steps_per_concept": steps}}))
    return path


def test_merging_a_split_run_joins_rows_and_keeps_the_commands(tmp_path):
    from unlearn_core.research.benchmarks.results import merge_partial_results

    merged = merge_partial_results([_part(tmp_path, "a", ["dynamic_mask", "salun"]), _part(tmp_path, "b", ["esd_x"])])
    assert [r["method"] for r in merged["rows"]] == ["dynamic_mask", "salun", "esd_x"]
    assert merged["settings"]["methods"] == ["dynamic_mask", "salun", "esd_x"]
    assert merged["partial_commands"] == ["bench a", "bench b"] and merged["mask_overhead_ratio"] == 1.02


def test_merging_refuses_parts_of_different_runs(tmp_path):
    from unlearn_core.research.benchmarks.results import merge_partial_results

    with pytest.raises(ValueError, match="other settings or another base model"):
        merge_partial_results([_part(tmp_path, "a", ["salun"]), _part(tmp_path, "b", ["esd_x"], base_retained=0.5)])
    with pytest.raises(ValueError, match="other settings"):
        merge_partial_results([_part(tmp_path, "a", ["salun"]), _part(tmp_path, "b", ["esd_x"], steps=10)])
    with pytest.raises(ValueError, match="at least two"):
        merge_partial_results([_part(tmp_path, "a", ["salun"])])


def test_merge_takes_the_overhead_timing_from_the_part_that_measured_it(tmp_path):
    import json

    from unlearn_core.research.benchmarks.results import merge_partial_results

    a = _part(tmp_path, "a", ["salun"])
    data = json.loads(a.read_text())
    del data["mask_overhead_ratio"]
    a.write_text(json.dumps(data))
    assert merge_partial_results([a, _part(tmp_path, "b", ["esd_x"])])["mask_overhead_ratio"] == 1.02


def _robustness_result(tmp_path, name, methods, te_steps=150, base_retained=0.75, score=0.5):
    import json

    rows = [{"method": m, "scenario": s, "attack": "words", "attack_success_rate": score if m == "few_shot_text_encoder"
             else 0.1, "base_retained_accuracy": base_retained} for m in methods for s in ("objects", "style")]
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"command": f"bench {name}", "rows": rows,
                                "settings": {"methods": methods, "unet_lr": 1e-3, "text_encoder": {"steps": te_steps}}}))
    return path


def test_replacing_one_methods_rows_keeps_the_others_and_their_order(tmp_path):
    from unlearn_core.research.benchmarks.results import replace_method_rows
    from unlearn_core.research.benchmarks.robustness import METHOD_SETTINGS

    old = _robustness_result(tmp_path, "all", ["base", "few_shot_text_encoder", "salun"])
    rerun = _robustness_result(tmp_path, "te", ["few_shot_text_encoder"], te_steps=75, score=0.0)
    merged = replace_method_rows(old, rerun, METHOD_SETTINGS)
    assert [(r["method"], r["scenario"]) for r in merged["rows"]] == [
        ("base", "objects"), ("base", "style"), ("few_shot_text_encoder", "objects"), ("few_shot_text_encoder", "style"),
        ("salun", "objects"), ("salun", "style")]
    assert all(r["attack_success_rate"] == 0.0 for r in merged["rows"] if r["method"] == "few_shot_text_encoder")
    assert merged["settings"]["text_encoder"] == {"steps": 75} and merged["settings"]["methods"] == [
        "base", "few_shot_text_encoder", "salun"]
    assert merged["partial_commands"] == ["bench all", "bench te"]
    assert merged["replaced_methods"] == [{"methods": ["few_shot_text_encoder"], "command": "bench te"}]
    assert "settings_not_in_the_earlier_run" not in merged


def test_replacing_rows_lists_a_setting_the_earlier_run_did_not_record(tmp_path):
    import json

    from unlearn_core.research.benchmarks.results import replace_method_rows
    from unlearn_core.research.benchmarks.robustness import METHOD_SETTINGS

    old = _robustness_result(tmp_path, "all", ["base", "few_shot_text_encoder"])
    rerun = _robustness_result(tmp_path, "te", ["few_shot_text_encoder"], te_steps=75)
    data = json.loads(rerun.read_text())
    data["settings"]["unet_retain_images_per_prompt"] = 4  # added to the benchmark after the earlier run
    rerun.write_text(json.dumps(data))
    merged = replace_method_rows(old, rerun, METHOD_SETTINGS)
    assert merged["settings_not_in_the_earlier_run"] == ["unet_retain_images_per_prompt"]
    assert "unet_retain_images_per_prompt" not in merged["settings"]


def test_replacing_rows_refuses_other_shared_settings_another_base_or_an_unknown_method(tmp_path):
    import json

    from unlearn_core.research.benchmarks.results import replace_method_rows
    from unlearn_core.research.benchmarks.robustness import METHOD_SETTINGS

    old = _robustness_result(tmp_path, "all", ["base", "few_shot_text_encoder"])
    other_base = _robustness_result(tmp_path, "b", ["few_shot_text_encoder"], base_retained=0.5)
    with pytest.raises(ValueError, match="other settings"):
        replace_method_rows(old, other_base, METHOD_SETTINGS)
    shared = _robustness_result(tmp_path, "c", ["few_shot_text_encoder"])
    data = json.loads(shared.read_text())
    data["settings"]["unet_lr"] = 1e-4  # a setting the text-encoder method does not own
    shared.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="other settings"):
        replace_method_rows(old, shared, METHOD_SETTINGS)
    with pytest.raises(ValueError, match="no rows of 'salun'"):
        replace_method_rows(old, _robustness_result(tmp_path, "d", ["salun"]), METHOD_SETTINGS)
