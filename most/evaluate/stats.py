"""Bootstrap confidence intervals over test items (utterances, questions, pairs), seeded."""

from __future__ import annotations

import numpy as np


def bootstrap_ratio(numerators, denominators, seed: int, samples: int = 1000, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of sum(numerators) / sum(denominators) over items resampled with
    replacement: corpus-level WER (errors / reference words), or accuracy (correct / 1)."""
    top, bottom = np.asarray(numerators, float), np.asarray(denominators, float)
    draws = np.random.default_rng(seed).integers(0, len(top), size=(samples, len(top)))
    ratios = top[draws].sum(1) / np.maximum(bottom[draws].sum(1), 1e-12)
    return _interval(ratios, level)


def paired_bootstrap_difference(a: tuple, b: tuple, seed: int, samples: int = 1000, level: float = 0.95) -> tuple[float, float]:
    """Interval of ratio(a) - ratio(b), each a (numerators, denominators) pair over the same items
    (each resample draws the same items for both): an interval that excludes 0 separates them."""
    (top_a, bottom_a), (top_b, bottom_b) = ([np.asarray(v, float) for v in pair] for pair in (a, b))
    draws = np.random.default_rng(seed).integers(0, len(top_a), size=(samples, len(top_a)))

    def ratio(top, bottom):
        return top[draws].sum(1) / np.maximum(bottom[draws].sum(1), 1e-12)

    return _interval(ratio(top_a, bottom_a) - ratio(top_b, bottom_b), level)


def chance_pairing(items: list) -> list:
    """Each item's reference replaced by the next item's (the last by the first): scored against
    these, the same outputs give the chance baseline; outputs and references keep their distributions,
    only which belongs to which is lost."""
    return items[1:] + items[:1]


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_macro_mean(groups: list, seed: int, samples: int = 1000, level: float = 0.95) -> tuple[float, float]:
    """Interval of the mean over groups of each group's mean item (a macro average), resampling the
    items within each group: the audio-LM average over sWUGGY, sBLIMP and StoryCloze."""
    rng = np.random.default_rng(seed)
    means = np.zeros(samples)
    for values in groups:
        values = np.asarray(values, float)
        means += values[rng.integers(0, len(values), size=(samples, len(values)))].mean(1)
    return _interval(means / len(groups), level)


def bootstrap_over_seeds_and_items(
    runs: tuple, seed: int, baseline: tuple | None = None, samples: int = 1000, level: float = 0.95
) -> tuple[float, float]:
    """Interval of the mean over training seeds of each seed's ratio (sum of numerators / sum of
    denominators over the test items), resampling both the seeds and the items: `runs` is
    (numerators, denominators), each seeds x items. With `baseline` (same shape, the same seeds in the
    same order and the same items), the interval of the paired difference runs - baseline: each
    resample draws the same seeds and items for both, so seed-to-seed and item-to-item variation
    that both share cancels."""
    top, bottom = (np.asarray(values, float) for values in runs)
    if top.ndim != 2 or top.shape != bottom.shape:
        raise ValueError(f"runs must be two seeds x items arrays of one shape, got {top.shape} and {bottom.shape}")
    seeds, items = top.shape
    rng = np.random.default_rng(seed)
    # how often each item is drawn, per resample: one matrix product sums every seed's draw at once
    item_counts = np.stack([np.bincount(row, minlength=items) for row in rng.integers(0, items, size=(samples, items))]).astype(float)
    seed_draws = rng.integers(0, seeds, size=(samples, seeds))

    def means(top, bottom):
        ratios = (item_counts @ top.T) / np.maximum(item_counts @ bottom.T, 1e-12)  # resamples x seeds
        return np.take_along_axis(ratios, seed_draws, axis=1).mean(1)

    values = means(top, bottom)
    if baseline is not None:
        base_top, base_bottom = (np.asarray(values, float) for values in baseline)
        if base_top.shape != top.shape or base_bottom.shape != top.shape:
            raise ValueError(f"baseline runs have shape {base_top.shape}, the variant's {top.shape}: pair the same seeds and items")
        values = values - means(base_top, base_bottom)
    return _interval(values, level)
