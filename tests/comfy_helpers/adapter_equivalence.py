"""Adapter equivalence: the ComfyUI bridge and the diffusers adapter on the same weights.

Loads the tiny SD1.5 checkpoint with ComfyUI, builds a diffusers UNet2DConditionModel + transformers
CLIPTextModel carrying the very same weights (names mapped with comfy.utils.unet_to_diffusers), and
compares prompt encodings, noise predictions, forward noising and the deltas of a short
`unlearn_unet` run on identical latents. Prints one JSON line. Run with ComfyUI's python:

    COMFYUI_PATH=... python adapter_equivalence.py CHECKPOINT
"""

import json
import os
import sys
import types

CKPT = sys.argv[1]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import comfy_env  # noqa: E402  (sets up ComfyUI's modules)

import torch  # noqa: E402

pack = comfy_env.import_pack()
bridge = sys.modules[f"{pack.__name__}.nodes.comfy_bridge"] if f"{pack.__name__}.nodes.comfy_bridge" in sys.modules \
    else __import__(f"{pack.__name__}.nodes.comfy_bridge", fromlist=["x"])
core = __import__(f"{pack.__name__}.unlearn_core.unet_unlearning", fromlist=["x"])
cs_mod = __import__(f"{pack.__name__}.unlearn_core.concept_set", fromlist=["x"])
masks = __import__(f"{pack.__name__}.unlearn_core.masks", fromlist=["x"])
dadapter = __import__(f"{pack.__name__}.unlearn_core.adapters.diffusers_adapter", fromlist=["x"])


def diffusers_twin(model, clip):
    import comfy.utils
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    cfg = model.model.model_config.unet_config
    levels = len(cfg["channel_mult"])
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=cfg["num_res_blocks"][0],
        block_out_channels=tuple(cfg["model_channels"] * m for m in cfg["channel_mult"]),
        down_block_types=("CrossAttnDownBlock2D",) * levels, up_block_types=("CrossAttnUpBlock2D",) * levels,
        cross_attention_dim=cfg["context_dim"], attention_head_dim=cfg["num_heads"])
    mapping = comfy.utils.unet_to_diffusers(cfg)
    comfy_sd = model.model.diffusion_model.state_dict()
    sd = {dk: comfy_sd[ck].float().clone() for dk, ck in mapping.items() if ck in comfy_sd}
    missing, unexpected = unet.load_state_dict(sd, strict=False)
    assert not missing and not unexpected, (missing[:5], unexpected[:5])
    te = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                      num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                                      projection_dim=768))
    clip_sd = {k[len("transformer."):]: v.float().clone() for k, v in clip.cond_stage_model.clip_l.state_dict().items()
               if k.startswith("transformer.")}
    own = te.state_dict()
    if not any(k.startswith("text_model.") for k in own):
        clip_sd = {k[len("text_model."):] if k.startswith("text_model.") else k: v for k, v in clip_sd.items()}
    missing, unexpected = te.load_state_dict({k: v for k, v in clip_sd.items() if k in own}, strict=False)
    assert all("position_ids" in k for k in missing), missing[:5]
    tok = CLIPTokenizer.from_pretrained(os.path.join(comfy_env.COMFYUI_PATH, "comfy", "sd1_tokenizer"))
    tok.model_max_length = 77
    sched = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          prediction_type="epsilon")
    pipe = types.SimpleNamespace(unet=unet, text_encoder=te, tokenizer=tok, vae=torch.nn.Identity(), scheduler=sched)
    return dadapter.DiffusersAdapter(pipe)


def main():
    model, clip, vae = comfy_env.load_checkpoint(CKPT)
    out = {}
    with torch.inference_mode():
        with bridge.training_mode():
            comfy_ad = bridge.ComfyDenoiserAdapter(model, clip, vae, resolution=64)
            diff_ad = diffusers_twin(model, clip)
            # the bridge reads the loaded weights in place (no copy) and never writes them
            loaded = dict(comfy_ad.unet.named_parameters())
            before = {n: p.detach().clone() for n, p in loaded.items()}
            out["frozen_total"] = len(loaded)
            out["frozen_shared"] = sum(comfy_ad.params[n].data_ptr() == p.data_ptr() for n, p in loaded.items())
            out["frozen_inference"] = sum(p.is_inference() for p in loaded.values())
            prompts = ["a photo of a cat", "a photo of an animal"]
            cc, cd = comfy_ad.encode_prompts(prompts), diff_ad.encode_prompts(prompts)
            out["cond_max_abs_diff"] = float((cc - cd).abs().max())
            gen = torch.Generator().manual_seed(0)
            x0 = torch.randn(2, 4, 8, 8, generator=gen)
            noise = torch.randn(2, 4, 8, 8, generator=gen)
            t = torch.tensor([3, 640])
            xc, xd = comfy_ad.add_noise(x0, noise, t), diff_ad.add_noise(x0, noise, t)
            out["add_noise_max_abs_diff"] = float((xc - xd).abs().max())
            ec, ed = comfy_ad.predict_noise(xc, t, cc), diff_ad.predict_noise(xc, t, cc)
            out["eps_max_abs_diff"] = float((ec - ed).abs().max().detach())
            out["eps_scale"] = float(ed.abs().max().detach())
            # gradients of one loss with respect to the same target weights, through both adapters
            import comfy.utils

            mapping = comfy.utils.unet_to_diffusers(model.model.model_config.unet_config)
            back = {v: k for k, v in mapping.items()}
            names = [n for n in comfy_ad.module_types() if "attn2" in n and n.endswith(".weight")]
            grads = {}
            for label, ad, key in (("comfy", comfy_ad, lambda n: n), ("diffusers", diff_ad, lambda n: back[n])):
                base = ad.denoiser_weights()
                d = {n: torch.zeros_like(base[key(n)], requires_grad=True) for n in names}
                w = {key(n): base[key(n)].detach() + d[n] for n in names}
                loss = ((ad.predict_noise(xc, t, cc, w) - noise) ** 2).mean()
                grads[label] = dict(zip(names, torch.autograd.grad(loss, [d[n] for n in names])))
            num = sum(float((grads["comfy"][n] - grads["diffusers"][n]).norm() ** 2) for n in names) ** 0.5
            den = sum(float(grads["diffusers"][n].norm() ** 2) for n in names) ** 0.5
            out["grad_relative_error"] = num / den
            # gradient checkpointing through the bridge: the same gradient, the module left as it was
            checkpointing = __import__(f"{pack.__name__}.unlearn_core.checkpointing", fromlist=["x"])

            def bridge_grads():
                base = comfy_ad.denoiser_weights()
                d = {n: torch.zeros_like(base[n], requires_grad=True) for n in names}
                w = {n: base[n].detach() + d[n] for n in names}
                loss = ((comfy_ad.predict_noise(xc, t, cc, w) - noise) ** 2).mean()
                return torch.autograd.grad(loss, [d[n] for n in names])

            plain = bridge_grads()
            with checkpointing.checkpointed(comfy_ad.unet) as blocks:
                recomputed = bridge_grads()
            out["checkpointed_blocks"] = blocks
            out["checkpoint_grad_relative_error"] = sum(float((a - b).norm() ** 2) for a, b in zip(plain, recomputed)) ** 0.5 \
                / sum(float(a.norm() ** 2) for a in plain) ** 0.5
            out["checkpoint_restored"] = not any("forward" in m.__dict__ for m in comfy_ad.unet.modules())
            # the differentiable text-encoder path equals ComfyUI's own encoding, with and without clip skip
            for skip in (-1, -2):
                c = clip.clone()
                c.clip_layer(skip)
                text = bridge.ComfyClipTextAdapter(c)
                with bridge.out_of_place_clip_layers(text.encoder):
                    h = text.encode(prompts)
                ref = bridge.ComfyDenoiserAdapter(model, c, vae, resolution=64).encode_prompts(prompts)
                out[f"text_encode_skip{-skip}_max_abs_diff"] = float((h - ref).abs().max().detach())
                out[f"text_used_layer_skip{-skip}"] = text.used_layer
            # v-prediction: the same UNet read as a v model (ModelSamplingDiscrete node vs a
            # v_prediction scheduler) must give the same eps
            from comfy_extras.nodes_model_advanced import ModelSamplingDiscrete

            with torch.inference_mode(True):
                v_model = ModelSamplingDiscrete().patch(model, "v_prediction", False)[0]
            v_comfy = bridge.ComfyDenoiserAdapter(v_model, clip, vae, resolution=64)
            out["v_prediction_type"] = v_comfy.prediction_type
            diff_ad.prediction_type = "v_prediction"
            ev_c, ev_d = v_comfy.predict_noise(xc, t, cc), diff_ad.predict_noise(xc, t, cc)
            diff_ad.prediction_type = "epsilon"
            out["v_eps_max_abs_diff"] = float((ev_c - ev_d).abs().max().detach())
            out["v_eps_differs_from_eps"] = float((ev_c - ec).abs().max().detach())
            out["same_weight_names"] = sorted(
                n for n in comfy_ad.module_types() if "attn2" in n)[:1]

            def run(adapter, mask_kind):
                concept = cs_mod.Concept("cat", "animal", templates=["a photo of a {}", "a drawing of a {}"],
                                         latents=torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(1)),
                                         superclass_latents=torch.randn(4, 4, 8, 8,
                                                                        generator=torch.Generator().manual_seed(2)))
                cfg = core.UnetUnlearnConfig(steps_per_concept=6, batch_size=2, lr=1e-4, seed=0,
                                             mask=masks.MaskConfig(kind=mask_kind, warmup_steps=2, update_interval=3))
                return core.unlearn_unet(adapter, cs_mod.ConceptSet([concept]), cfg)

            for kind in ("none", "dynamic"):
                rc, rd = run(comfy_ad, kind), run(diff_ad, kind)
                # diffusers names -> comfy names for the same weights
                import comfy.utils

                mapping = comfy.utils.unet_to_diffusers(model.model.model_config.unet_config)
                dd = {mapping[k]: v for k, v in rd.deltas.items()}
                assert set(dd) == set(rc.deltas), (sorted(dd)[:3], sorted(rc.deltas)[:3])
                scale = max(float(v.abs().max()) for v in dd.values())
                worst = max(float((rc.deltas[k] - dd[k]).abs().max()) for k in dd)
                entries = sum(v.numel() for v in dd.values())
                off = sum(int(((rc.deltas[k] - dd[k]).abs() > 1e-3 * scale).sum()) for k in dd)
                out[f"{kind}_delta_scale"] = scale
                out[f"{kind}_delta_max_abs_diff"] = worst
                out[f"{kind}_entries_off"] = off
                num = sum(float((rc.deltas[k] - dd[k]).norm() ** 2) for k in dd) ** 0.5
                out[f"{kind}_delta_relative_error"] = num / sum(float(v.norm() ** 2) for v in dd.values()) ** 0.5
                out[f"{kind}_entries"] = entries
                out[f"{kind}_layers"] = len(dd)
                out[f"{kind}_loss_max_abs_diff"] = max(abs(a["loss"] - b["loss"]) for a, b in zip(rc.stats, rd.stats))
            out["loaded_weights_unchanged"] = all(torch.equal(before[n], p) for n, p in loaded.items())

            # a model loaded in bf16 trains over its own bf16 weights; the deltas stay fp32
            import comfy.sd

            with torch.inference_mode(True):
                half = comfy.sd.load_checkpoint_guess_config(CKPT, output_vae=True, output_clip=True,
                                                             model_options={"dtype": torch.bfloat16})[0]
            half_ad = bridge.ComfyDenoiserAdapter(half, clip, vae, resolution=64)
            half_loaded = dict(half_ad.unet.named_parameters())
            out["bf16_dtype"] = str(half_ad.dtype)
            out["bf16_compute_dtype"] = str(half.model.manual_cast_dtype or half.model.get_dtype())
            out["bf16_weight_dtypes"] = sorted({str(p.dtype) for p in half_loaded.values()})
            out["bf16_shared"] = sum(half_ad.params[n].data_ptr() == p.data_ptr() for n, p in half_loaded.items())
            eh = half_ad.predict_noise(xc, t, cc)
            out["bf16_eps_dtype"] = str(eh.dtype)
            out["bf16_eps_relative_error"] = float((eh - ec).norm() / ec.norm())
            rh = run(half_ad, "dynamic")
            out["bf16_delta_dtypes"] = sorted({str(d.dtype) for d in rh.deltas.values()})
            out["bf16_delta_finite_nonzero"] = all(bool(torch.isfinite(d).all()) for d in rh.deltas.values()) and \
                max(float(d.abs().max()) for d in rh.deltas.values()) > 0
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
