"""Paired comparisons of methods on the same images, with bootstrap intervals."""

import math
from collections.abc import Sequence

import numpy as np

from captum_shallowcam.experiments.results import EvaluationResult


def paired_difference(
    values: Sequence[float],
    baseline: Sequence[float],
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float, float]:
    """Mean paired difference ``values - baseline`` with a bootstrap interval.

    Returns:
        (mean, standard error, lower, upper): the interval is the percentile
        bootstrap interval of the mean over ``resamples`` resamples of images.
    """
    diff = np.asarray(values, dtype=float) - np.asarray(baseline, dtype=float)
    if diff.size == 0:
        raise ValueError("No paired values to compare.")
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(resamples, diff.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    se = diff.std(ddof=1) / math.sqrt(diff.size) if diff.size > 1 else float("nan")
    return float(diff.mean()), float(se), float(low), float(high)


def summary_rows(
    result: EvaluationResult,
    baseline: str = "layercam",
    subset: Sequence[int] | None = None,
) -> list[dict[str, object]]:
    """One row per (layer, method): means and the paired difference to ``baseline``."""
    rows = []
    index = list(range(len(result.images))) if subset is None else list(subset)
    layers = result.settings["layers"]
    for layer in layers:  # type: ignore[union-attr]
        for method, per_layer in result.scores.items():
            entry = {k: np.asarray(v)[index] for k, v in per_layer[layer].items()}
            row: dict[str, object] = {
                "layer": layer,
                "method": method,
                "n": len(index),
                "deletion": float(entry["deletion"].mean()),
                "insertion": float(entry["insertion"].mean()),
                "overall": float(entry["overall"].mean()),
            }
            if baseline in result.scores and method != baseline:
                base = np.asarray(result.scores[baseline][layer]["overall"])[index]
                mean, se, low, high = paired_difference(entry["overall"], base)
                row.update(diff=mean, diff_se=se, diff_low=low, diff_high=high)
            rows.append(row)
    return rows
