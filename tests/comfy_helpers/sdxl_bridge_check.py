"""The bridge on an SDXL-detected checkpoint agrees with ComfyUI's own SDXL conditioning and sampling math.

For a prompt, the adapter's conditioning must equal what CLIP Text Encode + KSampler feed the
UNet: the context (CLIP-L + CLIP-G penultimate layers) and the ADM vector `y` that
`model.extra_conds` builds (pooled CLIP-G output + size embeddings for a 64x64 image). The
adapter's eps must equal the eps implied by ComfyUI's own model_sampling (calculate_input /
timestep / calculate_denoised) for the eps model and for the same model switched to v-prediction
with the ModelSamplingDiscrete node. Prints one JSON line. Run with ComfyUI's python:

    COMFYUI_PATH=... python sdxl_bridge_check.py CHECKPOINT
"""

import json
import os
import sys

CKPT = sys.argv[1]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import comfy_env  # noqa: E402  (sets up ComfyUI's modules)

import torch  # noqa: E402

pack = comfy_env.import_pack()
bridge = __import__(f"{pack.__name__}.nodes.comfy_bridge", fromlist=["x"])
PROMPT = "a photo of a cat"
RESOLUTION = 64


def comfy_conditioning(model, clip, noise):
    """(context, y) as KSampler builds them from CLIP Text Encode's output."""
    import comfy.samplers

    [[cond, extra]] = clip.encode_from_tokens_scheduled(clip.tokenize(PROMPT))
    conds = [{**extra, "cross_attn": cond, "model_conds": {}}]
    out = comfy.samplers.encode_model_conds(model.model.extra_conds, conds, noise, "cpu", "positive")
    return out[0]["model_conds"]["c_crossattn"].cond, out[0]["model_conds"]["y"].cond


def comfy_eps(patcher, x_t, t, context, y):
    """eps from ComfyUI's own sampling object for the VP latent x_t at integer timestep t."""
    sampling = patcher.get_model_object("model_sampling")
    sigma = sampling.sigmas[t].reshape(1)
    x = x_t * (1 + sigma ** 2).sqrt()  # ComfyUI's variance-exploding latent
    out = patcher.model.diffusion_model(sampling.calculate_input(sigma, x), sampling.timestep(sigma).float(),
                                        context=context, y=y)
    return (x - sampling.calculate_denoised(sigma, out, x)) / sigma


def main():
    from comfy_extras.nodes_model_advanced import ModelSamplingDiscrete

    model, clip, vae = comfy_env.load_checkpoint(CKPT)
    out = {"model_class": type(model.model).__name__}
    x_t = torch.randn(1, 4, RESOLUTION // 8, RESOLUTION // 8, generator=torch.Generator().manual_seed(0))
    t = 600
    with torch.inference_mode():
        context, y = comfy_conditioning(model, clip, x_t)
        v_model = ModelSamplingDiscrete().patch(model, "v_prediction", False)[0]
        refs = {"eps": comfy_eps(model, x_t, t, context, y), "v": comfy_eps(v_model, x_t, t, context, y)}
    with bridge.training_mode():
        for label, patcher in (("eps", model), ("v", v_model)):
            adapter = bridge.ComfyDenoiserAdapter(patcher, clip, vae, resolution=RESOLUTION)
            cond = adapter.encode_prompts([PROMPT])
            ctx, yy = adapter.adm.unpack(cond)
            eps = adapter.predict_noise(x_t, torch.tensor([t]), cond).detach()
            out[f"{label}_prediction_type"] = adapter.prediction_type
            out[f"{label}_eps_max_abs_diff"] = float((eps - refs[label]).abs().max())
            out[f"{label}_eps_scale"] = float(refs[label].abs().max())
        out["cond_shape"] = list(cond.shape)
        out["adm_channels"] = adapter.adm.channels
        out["context_max_abs_diff"] = float((ctx - context.float()).abs().max())
        out["context_scale"] = float(context.float().abs().max())
        out["y_max_abs_diff"] = float((yy - y.float()).abs().max())
        out["y_scale"] = float(y.float().abs().max())
        out["v_differs_from_eps"] = float((refs["v"] - refs["eps"]).abs().max())
        try:
            bridge.single_text_encoder_name(clip)
            out["few_shot_refusal"] = None
        except bridge.BridgeError as exc:
            out["few_shot_refusal"] = str(exc)
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
