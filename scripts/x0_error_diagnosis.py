"""How far a toy model's image estimate is off at each noise level, and what the schedule does to it.

An epsilon-predicting UNet gives the image estimate x0 = (x_t − sqrt(1 − ᾱ_t)·ε̂) / sqrt(ᾱ_t), so its
noise error reaches the image divided by sqrt(ᾱ_t). The sampler's first steps lean on that
estimate. For held-out renders (encoded by the model's own VAE, prompt "a <object>") this prints
and stores, per timestep, the ε-MSE and the x0-MSE of the conditional and the guided (scale 3)
prediction, beside Var(x0) — the x0-MSE of simply predicting zero. Each model uses the noise
schedule stored with it.

    python scripts/x0_error_diagnosis.py [--model DIR ...] [--output bench/results/x0_error_diagnosis.json]
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from diffusers import DDPMScheduler

from unlearn_core.research.toyworld import captions as toy_captions
from unlearn_core.research.toyworld.assets import load_toy_pipeline
from unlearn_core.research.toyworld.classifier import to_tensor
from unlearn_core.research.toyworld.render import render_batch, sample_scenes

TIMESTEPS = (999, 950, 900, 800, 600, 300)
GUIDANCE = 3.0


@torch.no_grad()
def x0_errors(pipe, images: torch.Tensor, captions: list[str], seed: int) -> dict:
    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    x0 = pipe.vae.encode(images * 2 - 1).latent_dist.mean * pipe.vae.config.scaling_factor
    ids = pipe.tokenizer(captions + [""] * len(captions), padding="max_length",
                         max_length=pipe.tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
    hidden = pipe.text_encoder(ids).last_hidden_state
    gen = torch.Generator().manual_seed(seed)
    n = len(captions)
    rows = []
    for t_value in TIMESTEPS:
        t = torch.full((n,), t_value)
        noise = torch.randn(x0.shape, generator=gen)
        x_t = sched.add_noise(x0, noise, t)
        eps = pipe.unet(torch.cat([x_t, x_t]), torch.cat([t, t]), hidden).sample
        a = sched.alphas_cumprod[t_value]
        row = {"timestep": t_value, "sqrt_alpha_bar": a.sqrt().item()}
        for name, e in (("cond", eps[:n]), ("guided", eps[n:] + GUIDANCE * (eps[:n] - eps[n:]))):
            x0_hat = (x_t - (1 - a).sqrt() * e) / a.sqrt()
            row[f"{name}_eps_mse"] = ((e - noise) ** 2).mean().item()
            row[f"{name}_x0_mse"] = ((x0_hat - x0) ** 2).mean().item()
        rows.append(row)
    return {"beta_end": pipe.scheduler.config.beta_end, "x0_variance": x0.var().item(), "timesteps": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=[None],
                        help="toy diffusers folders (default: the embedded model)")
    parser.add_argument("--images", type=int, default=128, help="held-out renders per model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="bench/results/x0_error_diagnosis.json")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    scenes = sample_scenes(args.images, seed=999)
    images = to_tensor(render_batch(scenes))
    captions = [toy_captions.object_prompt(s.object) for s in scenes]
    result = {"command": " ".join(["python scripts/x0_error_diagnosis.py", *sys.argv[1:]]),
              "images": args.images, "guidance": GUIDANCE, "models": {}}
    for model in args.model:
        name = model or "embedded"
        entry = x0_errors(load_toy_pipeline(model), images, captions, args.seed)
        result["models"][name] = entry
        print(f"{name}: beta_end {entry['beta_end']}, Var(x0) {entry['x0_variance']:.3f}")
        print("  timestep  sqrt(abar)  eps-MSE  x0-MSE  guided x0-MSE")
        for r in entry["timesteps"]:
            print(f"  {r['timestep']:8d}  {r['sqrt_alpha_bar']:10.4f}  {r['cond_eps_mse']:7.4f}  "
                  f"{r['cond_x0_mse']:6.3f}  {r['guided_x0_mse']:13.3f}")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
