"""A small CNN that labels toy-world images (object, superclass, colour, style).

It is the analogue of the ImageNet classifier the unlearning papers use to score generated
images, and its pooled features are the embedding for the toy Fréchet distance.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from .concepts import COLOUR_NAMES, OBJECT_BY_NAME, OBJECT_NAMES, STYLES, SUPERCLASS_NAMES
from .render import render_batch, sample_scenes

FEATURE_DIM = 128

# object index -> superclass index, used to read superclass probabilities off the object head
_SUPER_OF_OBJECT = torch.tensor([SUPERCLASS_NAMES.index(OBJECT_BY_NAME[o].superclass) for o in OBJECT_NAMES])


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ToyClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            _block(3, 32), _block(32, 32), nn.MaxPool2d(2),
            _block(32, 64), nn.MaxPool2d(2),
            _block(64, 128), nn.MaxPool2d(2),
            _block(128, FEATURE_DIM), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.object_head = nn.Linear(FEATURE_DIM, len(OBJECT_NAMES))
        self.colour_head = nn.Linear(FEATURE_DIM, len(COLOUR_NAMES))
        self.style_head = nn.Linear(FEATURE_DIM, len(STYLES))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images: Nx3xHxW floats in [0, 1]. Returns logits per head and the pooled features."""
        feats = self.body(images * 2.0 - 1.0)
        return {
            "features": feats,
            "object": self.object_head(feats),
            "colour": self.colour_head(feats),
            "style": self.style_head(feats),
        }


@dataclass
class Predictions:
    object: list[str]
    superclass: list[str]
    colour: list[str]
    style: list[str]
    object_confidence: np.ndarray
    features: np.ndarray


def to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 NxHxWx3 array, or a float Nx3xHxW tensor in [0,1], to a float Nx3xHxW tensor."""
    if isinstance(images, torch.Tensor):
        return images.float()
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


@torch.no_grad()
def predict(model: ToyClassifier, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> Predictions:
    model.eval()
    x = to_tensor(images)
    outs: dict[str, list[torch.Tensor]] = {"object": [], "colour": [], "style": [], "features": []}
    for i in range(0, len(x), batch_size):
        o = model(x[i:i + batch_size])
        for k in outs:
            outs[k].append(o[k])
    cat = {k: torch.cat(v) for k, v in outs.items()}
    obj_prob = cat["object"].softmax(-1)
    sup_prob = torch.zeros(len(x), len(SUPERCLASS_NAMES)).index_add_(1, _SUPER_OF_OBJECT, obj_prob)
    return Predictions(
        object=[OBJECT_NAMES[i] for i in obj_prob.argmax(-1).tolist()],
        superclass=[SUPERCLASS_NAMES[i] for i in sup_prob.argmax(-1).tolist()],
        colour=[COLOUR_NAMES[i] for i in cat["colour"].argmax(-1).tolist()],
        style=[STYLES[i] for i in cat["style"].argmax(-1).tolist()],
        object_confidence=obj_prob.max(-1).values.numpy(),
        features=cat["features"].numpy().astype(np.float64),
    )


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Blur and noise, so that slightly soft decoded images are classified like renders."""
    n = x.shape[0]
    sigma = torch.rand(n, generator=gen) * 0.5
    r = torch.arange(-2, 3, dtype=torch.float32)
    k1 = torch.exp(-(r[None, :] ** 2) / (2 * sigma[:, None].clamp_min(1e-3) ** 2))
    k1 = k1 / k1.sum(-1, keepdim=True)
    k2 = (k1[:, :, None] * k1[:, None, :])  # n x 5 x 5
    weight = k2[:, None].repeat_interleave(3, 0)  # (n*3) x 1 x 5 x 5
    blurred = F.conv2d(F.pad(x.reshape(1, n * 3, *x.shape[2:]), (2, 2, 2, 2), mode="replicate"), weight, groups=n * 3)
    x = blurred.reshape_as(x)
    noise = torch.randn(x.shape, generator=gen) * (torch.rand(n, 1, 1, 1, generator=gen) * 0.04)
    return (x + noise).clamp(0, 1)


def train_classifier(steps: int = 1500, batch_size: int = 128, n_images: int = 40000, seed: int = 1,
                     log=print) -> ToyClassifier:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.time()
    scenes = sample_scenes(n_images, seed=seed)
    images = to_tensor(render_batch(scenes))
    labels = {
        "object": torch.tensor([OBJECT_NAMES.index(s.object) for s in scenes]),
        "colour": torch.tensor([COLOUR_NAMES.index(s.colour) for s in scenes]),
        "style": torch.tensor([STYLES.index(s.style) for s in scenes]),
    }
    log(f"classifier: rendered {n_images} images in {time.time() - t0:.0f}s")
    model = ToyClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    model.train()
    for step in range(steps):
        idx = torch.randint(0, n_images, (batch_size,), generator=gen)
        x = _augment(images[idx], gen)
        out = model(x)
        loss = sum(F.cross_entropy(out[k], labels[k][idx]) for k in labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps - 1:
            log(f"classifier step {step}/{steps} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")
    model.eval()
    return model


def held_out_accuracy(model: ToyClassifier, n: int = 2000, seed: int = 12345,
                      transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, float]:
    """Accuracy on freshly rendered images from a seed the training never used; `transform`, if
    given, maps the renders (Nx3xHxW floats in [0, 1]) to what is classified, e.g. a VAE round trip."""
    scenes = sample_scenes(n, seed=seed)
    images = to_tensor(render_batch(scenes))
    pred = predict(model, transform(images) if transform else images)
    return {
        "object": float(np.mean([p == s.object for p, s in zip(pred.object, scenes)])),
        "superclass": float(np.mean([p == s.superclass for p, s in zip(pred.superclass, scenes)])),
        "colour": float(np.mean([p == s.colour for p, s in zip(pred.colour, scenes)])),
        "style": float(np.mean([p == s.style for p, s in zip(pred.style, scenes)])),
    }


def save_classifier(model: ToyClassifier, path: str | Path, metadata: dict | None = None) -> None:
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(path), metadata=meta)


def load_classifier(path: str | Path) -> ToyClassifier:
    model = ToyClassifier()
    model.load_state_dict(load_file(str(path)))
    model.eval()
    return model
