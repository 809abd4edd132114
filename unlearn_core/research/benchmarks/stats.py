"""Intervals for the benchmark's rates: numpy only, deterministic (fixed bootstrap seed).

A rate is the fraction of images the toy classifier labels as a concept. Its sources of variation
are the training seed (a method trained again with another seed erases a little differently) and
the images (each drawn from its own noise seed). The data of one rate are therefore a list with
one 0/1 array per training seed, the images that seed's model drew:

- `rate_interval`: the mean over all images and a 95% interval — exact Clopper–Pearson where only
  images vary (one training seed, or a model that was not trained: the base model), else a
  two-level percentile bootstrap (resample the training seeds, then the images within each chosen
  seed), widened where needed to the Clopper–Pearson interval of all images pooled: at 0 or all
  hits every resample repeats the data and the bootstrap alone would claim certainty (0 of 48
  images is [0, 0] by bootstrap, [0, 0.074] exactly);
- `paired_difference`: the mean of (a − b) over pairs of the same prompt and image seed (the
  unlearned model and the base model draw image i from the same noise), with the same bootstrap
  over seeds, then image pairs within seed — so the noise shared by the two images cancels;
- `mean_interval`: a continuous value per training seed (the toy FID): the mean and a bootstrap
  over the seeds (degenerate with one seed).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

LEVEL = 0.95
N_BOOT = 4000
BOOT_SEED = 0


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The exact (Clopper–Pearson) interval of a binomial proportion k / n."""
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"clopper_pearson needs 0 <= k <= n and n >= 1, got k={k}, n={n}")
    alpha = 1.0 - level
    lo = 0.0 if k == 0 else _beta_ppf(alpha / 2, k, n - k + 1)
    hi = 1.0 if k == n else _beta_ppf(1 - alpha / 2, k + 1, n - k)
    return lo, hi


def _beta_ppf(q: float, a: float, b: float) -> float:
    """Quantile of the Beta(a, b) distribution by bisection of the regularized incomplete beta."""
    lo, hi = 0.0, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if _betainc(a, b, mid) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) (continued fraction, Numerical Recipes' betacf)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _betainc(b, a, 1.0 - x)
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 500):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < eps:
            break
    return math.exp(ln_front) * f / a


def _per_seed(values: Sequence) -> list[np.ndarray]:
    arrays = [np.asarray(v, dtype=float).ravel() for v in values]
    if not arrays or any(len(a) == 0 for a in arrays):
        raise ValueError("an interval needs at least one training seed with at least one image")
    return arrays


def bootstrap_means(values: Sequence, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> np.ndarray:
    """`n_boot` means of two-level resamples: training seeds with replacement, then the values
    within each chosen seed with replacement (all values of a resample weigh the same)."""
    arrays = _per_seed(values)
    rng = np.random.default_rng(seed)
    s = len(arrays)
    pick = rng.integers(s, size=(n_boot, s))
    if len({len(a) for a in arrays}) == 1:  # the usual case, vectorised
        data = np.stack(arrays)
        n = data.shape[1]
        inner = rng.integers(n, size=(n_boot, s, n))
        return data[pick[:, :, None], inner].mean(axis=(1, 2))
    out = np.empty(n_boot)
    for b in range(n_boot):
        chosen = [arrays[j] for j in pick[b]]
        out[b] = np.concatenate([a[rng.integers(len(a), size=len(a))] for a in chosen]).mean()
    return out


def _percentiles(samples: np.ndarray, level: float) -> tuple[float, float]:
    alpha = 1.0 - level
    lo, hi = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def rate_interval(hits: Sequence, level: float = LEVEL, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> dict:
    """Mean and `level` interval of a rate from 0/1 outcomes, one array per training seed."""
    arrays = _per_seed(hits)
    flat = np.concatenate(arrays)
    if not np.isin(flat, (0.0, 1.0)).all():
        raise ValueError("rate_interval takes 0/1 outcomes")
    k, n = int(flat.sum()), len(flat)
    if len(arrays) == 1:
        lo, hi = clopper_pearson(k, n, level)
        method = "clopper-pearson"
    else:
        lo, hi = _percentiles(bootstrap_means(arrays, n_boot, seed), level)
        exact_lo, exact_hi = clopper_pearson(k, n, level)
        lo, hi = min(lo, exact_lo), max(hi, exact_hi)
        method = "bootstrap: seeds, then images within seed; at least the pooled Clopper-Pearson interval"
    return {"mean": k / n, "lo": lo, "hi": hi, "level": level, "interval": method,
            "seeds": len(arrays), "images": n}


def paired_difference(a: Sequence, b: Sequence, level: float = LEVEL, n_boot: int = N_BOOT,
                      seed: int = BOOT_SEED) -> dict:
    """Mean of a − b over pairs (a[s][i], b[s][i]: the same prompt and image seed) and a bootstrap
    interval over training seeds, then pairs within seed (over pairs alone with one seed)."""
    a_arrays, b_arrays = _per_seed(a), _per_seed(b)
    if [len(x) for x in a_arrays] != [len(x) for x in b_arrays]:
        raise ValueError("paired_difference needs a and b of the same shape: one pair per prompt and image seed")
    diffs = [x - y for x, y in zip(a_arrays, b_arrays)]
    lo, hi = _percentiles(bootstrap_means(diffs, n_boot, seed), level)
    flat = np.concatenate(diffs)
    return {"mean": float(flat.mean()), "lo": lo, "hi": hi, "level": level,
            "interval": "paired bootstrap: seeds, then image pairs within seed", "seeds": len(diffs),
            "pairs": len(flat)}


def mean_interval(per_seed: Sequence[float], level: float = LEVEL, n_boot: int = N_BOOT,
                  seed: int = BOOT_SEED) -> dict:
    """A value measured once per training seed (e.g. the toy FID): its mean, the per-seed values and
    a bootstrap interval over the seeds (lo = hi = the value with one seed: no interval)."""
    values = np.asarray(per_seed, dtype=float)
    if values.size == 0:
        raise ValueError("mean_interval needs at least one value")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(len(values), size=(n_boot, len(values)))].mean(axis=1)
    lo, hi = _percentiles(means, level)
    return {"mean": float(values.mean()), "lo": lo, "hi": hi, "level": level, "interval": "bootstrap over seeds",
            "per_seed": [float(v) for v in values]}


def fmt_interval(stat: dict | None, digits: int = 3) -> str:
    """'0.125 [0.031, 0.250]' (or '–' for None)."""
    if stat is None:
        return "–"
    f = f"{{:.{digits}f}}"
    return f"{f.format(stat['mean'])} [{f.format(stat['lo'])}, {f.format(stat['hi'])}]"


def fmt_difference(stat: dict | None, digits: int = 3) -> str:
    """'-0.021 [-0.062, +0.010]' (signed, or '–' for None)."""
    if stat is None:
        return "–"
    f = f"{{:+.{digits}f}}"
    return f"{f.format(stat['mean'])} [{f.format(stat['lo'])}, {f.format(stat['hi'])}]"
