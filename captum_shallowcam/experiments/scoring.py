"""The paper's experiment: deletion/insertion per layer and method, image by image.

:func:`evaluate` computes, for every image, method and layer, the deletion AUC,
insertion AUC and overall score (:func:`captum_shallowcam.metrics.deletion_insertion`)
into an :class:`~captum_shallowcam.experiments.results.EvaluationResult`;
:func:`score_batch` is its loop over one batch, which the sharded run
(:mod:`captum_shallowcam.experiments.sharding`) shares; :func:`image_batches`
and :func:`load_batch` load labelled photos with their targets.
:mod:`~captum_shallowcam.experiments.statistics` compares methods and
:mod:`~captum_shallowcam.experiments.reports` reports them. The command line
(``python -m captum_shallowcam benchmark``) only calls these.

Methods are named as in the method registry (:mod:`captum_shallowcam.methods`),
e.g. ``layercam``, ``shallowcam``, ``layercam+sign-aware`` or
``shallowcam-v2+positive``.
"""

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from captum_shallowcam.experiments.results import EvaluationResult
from captum_shallowcam.methods import Explainer, make_explainer
from captum_shallowcam.metrics import DeletionInsertionResult, deletion_insertion


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


def load_batch(
    items: Sequence, preprocess: Callable, model: nn.Module, device=None
) -> tuple[Tensor, list[int]]:
    """The inputs of :class:`~captum_shallowcam.experiments.images.LabelledImage`
    items (on ``device`` when given) and their targets; an unlabelled image's
    target is the model's predicted class."""
    inputs = torch.stack([preprocess(item.load()) for item in items])
    if device is not None:
        inputs = inputs.to(device)
    targets = [item.target for item in items]
    if any(t is None for t in targets):
        with torch.no_grad():
            predicted = model(inputs).argmax(1).tolist()
        targets = [p if t is None else t for t, p in zip(targets, predicted)]
    return inputs, targets


def image_batches(
    items: Sequence, preprocess: Callable, model: nn.Module, batch_size: int
) -> Iterable[tuple[list[str], Tensor, Tensor]]:
    """Loads :class:`~captum_shallowcam.experiments.images.LabelledImage` items
    in batches; unlabelled images are explained for their predicted class."""
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        inputs, targets = load_batch(chunk, preprocess, model)
        yield [item.name for item in chunk], inputs, torch.tensor(targets)
