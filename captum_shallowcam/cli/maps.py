"""Explain, score and draw a few photos: what ``demo`` and ``explain`` share."""

from collections.abc import Sequence
from pathlib import Path

import torch

from captum_shallowcam.cli._common import SCORE, class_name
from captum_shallowcam.experiments.images import LabelledImage, sample_images
from captum_shallowcam.methods import make_explainer
from captum_shallowcam.metrics import deletion_insertion
from captum_shallowcam.metrics.protocols import (
    DEFAULT_PROTOCOL,
    describe,
    protocol_kwargs,
)
from captum_shallowcam.visualization import layer_map_figure


def _photo_name(item: LabelledImage) -> str:
    """A photo is named by its file name, bundled or not (``chelsea_cat``)."""
    return item.path.stem


def _bundled_label(item: LabelledImage) -> int | None:
    """The label of a bundled photo (the class the demo explains), else None."""
    bundled = {i.path.resolve(): i.target for i in sample_images()}
    return bundled.get(item.path.resolve())


def _explain_and_score(
    loaded,
    items: Sequence[LabelledImage],
    layers,
    methods,
    step: int,
    out: Path,
    target_source: str,
) -> dict[str, list[list[float]]]:
    """Explains, scores and draws ``items``; returns ``scores[method][layer][photo]``.
    An item's ``target`` of None means its predicted class; ``target_source`` says
    where the other targets come from."""
    inputs = torch.stack([loaded.preprocess(item.load()) for item in items])
    with torch.no_grad():
        probabilities = loaded.model(inputs).softmax(dim=1)
    predicted = probabilities.argmax(dim=1).tolist()
    targets = torch.tensor(
        [p if item.target is None else item.target for item, p in zip(items, predicted)]
    )
    names = [_photo_name(item) for item in items]
    _print_classes(loaded, items, names, targets, probabilities, target_source)
    maps = {
        m: make_explainer(loaded.model, list(layers.values()), m)(inputs, targets)
        for m in methods
    }
    scores: dict[str, list[list[float]]] = {
        method: [
            deletion_insertion(
                loaded.model, inputs, m, target=targets, step=step
            ).overall.tolist()
            for m in per_layer
        ]
        for method, per_layer in maps.items()
    }
    _print_scores(names, list(layers), scores, step, inputs.shape[-2:])
    labels = [f"{n}\n{class_name(loaded, t)}" for n, t in zip(names, targets.tolist())]
    title = (
        f"{loaded.name}: {', '.join(methods)}; panel titles: layer (map size), "
        f"{SCORE}, step {step}; colours: map scaled to [0, 1]"
    )
    fig = layer_map_figure(
        loaded.unnormalize(inputs), maps, list(layers), row_labels=labels,
        scores=scores, title=title,
    )  # fmt: skip
    fig.savefig(out, dpi=100)
    print(f"\nfigure: {out}")
    return scores


def _print_classes(loaded, items, names, targets, probabilities, target_source):
    """One line per photo: the class explained, where it comes from, its
    probability, and the prediction or the label when they differ."""
    predicted = probabilities.argmax(dim=1).tolist()
    width = max(len(n) for n in names) + 2
    print("class explained per photo:")
    for item, name, target, p, probs in zip(
        items, names, targets.tolist(), predicted, probabilities
    ):
        if item.target is None:
            source = f"the prediction, p = {probs[p]:.2f}"
            label = _bundled_label(item)
            if label is not None and label != p:
                source += (
                    f"; its label is {class_name(loaded, label)}: --target {label}"
                )
        else:
            source = f"{target_source}, p = {probs[target]:.2f}; " + (
                "also the prediction"
                if p == target
                else f"predicted: {class_name(loaded, p)}"
            )
        print(f"  {name:<{width}}{class_name(loaded, target)} ({source})")


def _print_scores(names, layer_names, scores, step, size) -> None:
    """The table of overall scores: one row per (photo, method), one column per layer."""
    n_points = -(-size[0] * size[1] // step) + 1
    metric = describe(DEFAULT_PROTOCOL, protocol_kwargs(DEFAULT_PROTOCOL, step=step))
    print(f"\ndeletion/insertion score per layer: {SCORE}")
    print(f"step {step} pixels ({n_points} points per curve); {metric}")
    width = max(len(n) for n in names) + 2
    method_width = max(len("method"), *(len(m) for m in scores)) + 2
    print(
        f"{'photo':<{width}}{'method':<{method_width}}"
        + "".join(f"{n:>10}" for n in layer_names)
    )
    for i, name in enumerate(names):
        for method, per_layer in scores.items():
            print(
                f"{name:<{width}}{method:<{method_width}}"
                + "".join(f"{per_image[i]:>10.2f}" for per_image in per_layer)
            )
