"""The paper's experiment: deletion/insertion per layer and method, paired.

:func:`evaluate` computes, for every image, method and layer, the deletion AUC,
insertion AUC and overall score (:func:`captum_shallowcam.metrics.deletion_insertion`);
:func:`paired_difference` compares two methods on the same images with a
bootstrap interval; :func:`markdown_table` and :func:`overall_plot` report them.
The command line (``python -m captum_shallowcam benchmark``) only calls these.

Methods are named as in the method registry (:mod:`captum_shallowcam.methods`),
e.g. ``layercam``, ``shallowcam``, ``layercam+sign-aware`` or
``shallowcam-v2+positive``.
"""

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from captum_shallowcam.methods import Explainer, make_explainer
from captum_shallowcam.metrics import DeletionInsertionResult, deletion_insertion


@dataclass
class EvaluationResult:
    """Per-image scores: ``scores[method][layer][kind]`` with kind in
    ``deletion``, ``insertion``, ``overall`` (lists aligned with ``images``)."""

    settings: dict[str, object]
    images: list[str] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)
    scores: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)

    def add_scores(
        self, method: str, layer: str, scores: DeletionInsertionResult
    ) -> None:
        """Appends one metric result's per-image AUCs and overall scores."""
        entry = self.scores.setdefault(method, {}).setdefault(
            layer, {"deletion": [], "insertion": [], "overall": []}
        )
        entry["deletion"].extend(scores.deletion_auc.tolist())
        entry["insertion"].extend(scores.insertion_auc.tolist())
        entry["overall"].extend(scores.overall.tolist())

    def to_dict(self) -> dict[str, object]:
        return {
            "settings": self.settings,
            "images": self.images,
            "targets": self.targets,
            "scores": self.scores,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> "EvaluationResult":
        return cls(
            settings=dict(data["settings"]),  # type: ignore[arg-type]
            images=list(data["images"]),  # type: ignore[arg-type]
            targets=list(data["targets"]),  # type: ignore[arg-type]
            scores=dict(data["scores"]),  # type: ignore[arg-type]
        )

    def subset(self, keep: Sequence[int]) -> "EvaluationResult":
        """The same result restricted to the images at positions ``keep``."""
        scores = {
            method: {
                layer: {
                    kind: [values[i] for i in keep] for kind, values in entry.items()
                }
                for layer, entry in per_layer.items()
            }
            for method, per_layer in self.scores.items()
        }
        return EvaluationResult(
            dict(self.settings, n_images=len(keep)),
            [self.images[i] for i in keep],
            [self.targets[i] for i in keep],
            scores,
        )


def merge_results(results: Sequence[EvaluationResult]) -> EvaluationResult:
    """Joins results by image: runs on other images add rows, runs of other
    methods on the same images add methods. Settings that differ (the step, the
    layers) are refused; a method is kept only if it has every image."""
    if not results:
        raise ValueError("Nothing to merge.")
    first = results[0].settings
    for result in results[1:]:
        for key in ("step", "layers", "model", "protocol"):
            if result.settings.get(key) != first.get(key):
                raise ValueError(
                    f"Cannot merge results with different {key}: "
                    f"{first.get(key)!r} vs {result.settings.get(key)!r}."
                )
    images: dict[str, int] = {}
    per_image: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for result in results:
        for i, (name, target) in enumerate(zip(result.images, result.targets)):
            images.setdefault(name, target)
            for method, per_layer in result.scores.items():
                per_image.setdefault(method, {}).setdefault(name, {}).update(
                    {
                        layer: {k: v[i] for k, v in e.items()}
                        for layer, e in per_layer.items()
                    }
                )
    names = list(images)
    layers = list(first["layers"])  # type: ignore[call-overload]
    merged = EvaluationResult(
        dict(first, n_images=len(names), merged_from=len(results)),
        names,
        [images[n] for n in names],
    )
    for method, by_image in per_image.items():
        if set(by_image) != set(names):
            continue
        merged.scores[method] = {
            layer: {
                kind: [by_image[n][layer][kind] for n in names]
                for kind in ("deletion", "insertion", "overall")
            }
            for layer in layers
        }
    return merged


def score_batch(
    model: nn.Module,
    explainers: dict[str, Explainer],
    layer_names: Sequence[str],
    inputs: Tensor,
    targets: Tensor,
    metric_kwargs: dict[str, object] | None = None,
    wanted: Callable[[str, str], bool] | None = None,
) -> Iterable[tuple[str, str, DeletionInsertionResult]]:
    """Yields ``(method, layer, metric result)`` for one batch of images.

    ``wanted(method, layer)`` (default: all) skips what is already known; a
    method none of whose layers is wanted is not even explained.
    """
    for method, explain in explainers.items():
        todo = [wanted is None or wanted(method, layer) for layer in layer_names]
        if not any(todo):
            continue
        maps = explain(inputs, targets)
        for layer, layer_map, needed in zip(layer_names, maps, todo):
            if needed:
                scores = deletion_insertion(
                    model,
                    inputs,
                    layer_map.detach(),
                    target=targets,
                    **(metric_kwargs or {}),
                )
                yield method, layer, scores


def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[list[str], Tensor, Tensor]],
    layers: dict[str, nn.Module],
    methods: Sequence[str],
    step: int = 224,
    max_examples_per_batch: int | None = None,
    settings: dict[str, object] | None = None,
    progress: Callable[[int], None] | None = None,
    metric_kwargs: dict[str, object] | None = None,
) -> EvaluationResult:
    """Deletion/insertion of every method at every layer, image by image.

    Args:
        model (nn.Module): The classifier (eval mode).
        batches (iterable): ``(names, inputs, targets)`` triples, inputs
                    normalised for the model.
        layers (dict[str, nn.Module]): Layers to explain, name -> module.
        methods (list[str]): Method names (see the module docstring).
        step (int, optional): Pixels per deletion/insertion step. Default: 224
        max_examples_per_batch (int, optional): Passed to the metric.
        settings (dict, optional): Recorded with the result.
        progress (callable, optional): Called with the number of
                    (image, method, layer) evaluations just finished.
        metric_kwargs (dict, optional): Further keyword arguments of the
                    metric (substrates, ``autocast_dtype``; see
                    :func:`captum_shallowcam.metrics.protocols.protocol_kwargs`).

    Returns:
        EvaluationResult
    """
    names = list(layers)
    explainers = {m: make_explainer(model, list(layers.values()), m) for m in methods}
    result = EvaluationResult(settings=dict(settings or {}, step=step, layers=names))
    kwargs = dict(
        metric_kwargs or {}, step=step, max_examples_per_batch=max_examples_per_batch
    )
    for method in methods:
        result.scores[method] = {
            layer: {"deletion": [], "insertion": [], "overall": []} for layer in names
        }
    for image_names, inputs, targets in batches:
        result.images.extend(image_names)
        result.targets.extend(int(t) for t in targets)
        for method, layer, scores in score_batch(
            model, explainers, names, inputs, targets, kwargs
        ):
            result.add_scores(method, layer, scores)
            if progress is not None:
                progress(len(image_names))
    return result


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


def markdown_table(rows: list[dict[str, object]], baseline: str = "layercam") -> str:
    """The summary as a markdown table."""
    lines = [
        f"| layer | method | n | deletion AUC ↓ | insertion AUC ↑ | overall ↑ | "
        f"Δ overall vs {baseline} [95% CI] |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        diff = (
            f"{r['diff']:+.2f} [{r['diff_low']:+.2f}, {r['diff_high']:+.2f}]"
            if "diff" in r
            else "—"
        )
        lines.append(
            f"| {r['layer']} | {r['method']} | {r['n']} | {r['deletion']:.4f} | "
            f"{r['insertion']:.4f} | {r['overall']:.2f} | {diff} |"
        )
    return "\n".join(lines)


def overall_plot(result: EvaluationResult, title: str = ""):  # noqa: ANN201
    """Mean overall score per layer and method (error bars: standard error)."""
    import textwrap

    from matplotlib.figure import Figure

    layers = list(result.settings["layers"])  # type: ignore[arg-type]
    # Constrained layout keeps the wrapped title and the legend outside the
    # axes inside the figure.
    fig = Figure(figsize=(min(0.9 * len(layers) + 6.5, 13), 5), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(layers))
    for k, (method, per_layer) in enumerate(result.scores.items()):
        values = [np.asarray(per_layer[layer]["overall"]) for layer in layers]
        means = [v.mean() for v in values]
        errors = [
            v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else 0 for v in values
        ]
        offset = (k - (len(result.scores) - 1) / 2) * 0.06
        ax.errorbar(x + offset, means, yerr=errors, marker="o", capsize=3, label=method)
    ax.set_xticks(x, layers)
    ax.set_xlabel("layer")
    ax.set_ylabel(
        "overall = 100 (insertion AUC − deletion AUC)\nmean ± standard error; higher is better"
    )
    width_chars = int(fig.get_figwidth() * 72 / (0.6 * 10)) - 4
    ax.set_title(textwrap.fill(title, width=width_chars), fontsize=10)
    ax.grid(alpha=0.3)
    # Outside the axes: with several methods a legend inside hides points.
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def image_batches(
    items: Sequence, preprocess: Callable, model: nn.Module, batch_size: int
) -> Iterable[tuple[list[str], Tensor, Tensor]]:
    """Loads :class:`~captum_shallowcam.images.LabelledImage` items in batches;
    unlabelled images are explained for their predicted class."""
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        inputs = torch.stack([preprocess(item.load()) for item in chunk])
        targets = [item.target for item in chunk]
        if any(t is None for t in targets):
            with torch.no_grad():
                predicted = model(inputs).argmax(1)
            targets = [
                p if t is None else t for t, p in zip(targets, predicted.tolist())
            ]
        yield [item.name for item in chunk], inputs, torch.tensor(targets)
