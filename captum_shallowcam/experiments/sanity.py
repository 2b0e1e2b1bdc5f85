r"""Sanity checks of the methods over a folder of photos, sharded and resumable.

:func:`run_sanity` is what ``python -m captum_shallowcam sanity`` runs, in one
process or in each process that ``torchrun`` starts. For every photo, layer
and method (a :func:`~captum_shallowcam.methods.make_explainer` name) it
computes the model-parameter randomization curves
(:func:`~captum_shallowcam.metrics.model_randomization`) and the class
sensitivity (:func:`~captum_shallowcam.metrics.class_sensitivity`), explaining
the trained model's predicted class. It shares the benchmark's machinery
(:mod:`.sharding`): batch ``b`` goes to rank ``b % world_size``; each rank
appends one JSON line per (photo, layer, method) to
``<out stem>.shard-<rank>.jsonl``; ``resume=True`` skips the rows already
written and refuses shard files written with other settings
(:data:`MUST_MATCH`), naming the setting; rank 0 merges the rows into one
result (:func:`sanity_result`), the JSON that ``benchmarks/sanity_checks.py``
writes and :func:`plot_cascading` draws::

    {"settings": {...}, "images": [...], "targets": [...], "steps": [...],
     "scores": {method: {layer: {field: one row per image}}}}

with ``targets`` the explained (predicted) classes and the fields
``spearman``, ``spearman_abs``, ``ssim`` (one value per step, output first)
and ``class_sensitivity_second`` / ``_last`` (one value per image). JSON has no NaN: a NaN (a constant map) is written as null.
"""

import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from captum_shallowcam.experiments.ranks import RankInfo, _log, barrier, init_ranks
from captum_shallowcam.experiments.sharding import (
    Key,
    _check_settings,
    _check_unique_names,
    _drop_if_empty,
    _open_shard,
    _rows_done,
    gather_rows,
    read_shards,
    shard_batches,
)
from captum_shallowcam.methods import make_explainer
from captum_shallowcam.metrics import class_sensitivity, model_randomization
from captum_shallowcam.metrics.sanity import randomization_steps

__all__ = [
    "GRANULARITIES",
    "MUST_MATCH",
    "ORDERS",
    "OTHER_CLASSES",
    "block_steps",
    "merge_sanity_shards",
    "method_explain",
    "nan_to_none",
    "plot_cascading",
    "run_sanity",
    "sanity_result",
    "sanity_scores",
    "whole_step",
]

ORDERS = ("cascading", "independent")
#: ``module``: one step per module with parameters (the metric's default);
#: ``block``: one per top-level part of EfficientNet-Lite (:func:`block_steps`);
#: ``whole``: one step that randomizes every module with parameters at once
#: (the end point of the cascade, at a nineteenth of ``block``'s cost);
#: ``none``: no randomization (class sensitivity only).
GRANULARITIES = ("module", "block", "whole", "none")
OTHER_CLASSES = ("second", "last")
RANDOMIZATION_FIELDS = ("spearman", "spearman_abs", "ssim")

#: Settings that must agree between a run and the shard files it resumes.
MUST_MATCH = (
    "kind", "model", "normalization", "images", "labels", "start", "limit",
    "n_images", "layers", "methods", "order", "granularity", "steps", "seed",
    "other",
)  # fmt: skip


def block_steps(model: nn.Module) -> list[str | list[str]]:
    """One randomization step per top-level part of EfficientNet-Lite, from the
    output down: ``_fc``, ``_conv_head`` with ``_bn1``, ``_blocks.15`` ...
    ``_blocks.0``, ``_conv_stem`` with ``_bn0`` (19 steps for Lite0)."""
    if not hasattr(model, "_blocks"):
        raise ValueError(
            f"granularity block names the blocks of EfficientNet-Lite (_blocks), "
            f"which {type(model).__name__} does not have; use granularity module "
            "(one step per module with parameters)."
        )
    blocks = [f"_blocks.{i}" for i in reversed(range(len(model._blocks)))]
    return ["_fc", ["_conv_head", "_bn1"], *blocks, ["_conv_stem", "_bn0"]]


def whole_step(model: nn.Module) -> list[list[str]]:
    """One randomization step: every top-level part of the model at once, so
    every module with parameters (the last step of any cascade)."""
    return [[name for name, _ in model.named_children()]]


def method_explain(method: str, layer_names: Sequence[str]) -> Callable:
    """``explain(model, inputs, target) -> [map per layer]`` of a registry
    method, for any copy of the model (layers found by name)."""

    def explain(model: nn.Module, inputs: Tensor, target: Tensor) -> list[Tensor]:
        layers = [model.get_submodule(name) for name in layer_names]
        return make_explainer(model, layers, method)(inputs, target)

    return explain


def nan_to_none(values: Any) -> Any:
    """JSON has no NaN: a NaN (a constant map) is written as null."""
    if isinstance(values, dict):
        return {key: nan_to_none(v) for key, v in values.items()}
    if isinstance(values, list):
        return [nan_to_none(v) for v in values]
    return None if isinstance(values, float) and math.isnan(values) else values


def sanity_scores(
    explain: Callable,
    model: nn.Module,
    inputs: Tensor,
    layers: Sequence[str],
    modules: Sequence[str | Sequence[str]] | None,
    *,
    order: str = "cascading",
    seed: int = 0,
    other: Sequence[str] = OTHER_CLASSES,
) -> tuple[dict[str, dict[str, list]], list[str]]:
    """The class sensitivities (for each class of ``other``) and, unless
    ``modules == "none"``, the randomization curves of one batch, per layer
    (``{layer: {field: one row or value per image}}``), and the steps."""
    scores: dict[str, dict[str, list]] = {layer: {} for layer in layers}
    for which in other:
        values = class_sensitivity(model, explain, inputs, other=which)
        for layer, per_image in zip(layers, values):
            scores[layer][f"class_sensitivity_{which}"] = per_image.tolist()
    if modules == "none":
        return scores, []
    randomized = model_randomization(
        model, explain, inputs, order=order, modules=modules, seed=seed
    )
    for layer, result in zip(layers, randomized):
        for field in RANDOMIZATION_FIELDS:
            scores[layer][field] = getattr(result, field).T.tolist()  # N x K
    return scores, randomized[0].modules


def run_sanity(
    model: nn.Module,
    items: Sequence[Any],
    preprocess: Callable[[Any], Tensor],
    layers: dict[str, str],
    methods: Sequence[str],
    out: Path,
    settings: dict[str, Any],
    *,
    order: str = "cascading",
    granularity: str = "module",
    seed: int = 0,
    other: Sequence[str] = OTHER_CLASSES,
    batch_size: int = 4,
    resume: bool = False,
    info: RankInfo | None = None,
) -> dict[str, Any] | None:
    """Scores ``items`` (``.name``, ``.load()``) on this rank's shard; returns
    the merged result (:func:`sanity_result`) on rank 0 and None on the others.

    ``layers`` maps the names the result uses (``stage2``) to module names of
    ``model`` (``_blocks.2``). ``settings`` are recorded, with the options and
    the steps added; a resumed run must have the same (:data:`MUST_MATCH`).
    """
    info = info or init_ranks()
    out = Path(out)
    _check_options(order, granularity, other, items)
    model = model.to(info.device)
    modules: Any = {"block": block_steps, "whole": whole_step, "none": "none"}.get(
        granularity
    )
    if callable(modules):
        modules = modules(model)
    first = preprocess(items[0].load())[None].to(info.device)
    steps = [] if granularity == "none" else randomization_steps(model, first, modules)
    settings = dict(
        settings,
        kind="sanity",
        layers=dict(layers),
        methods=list(methods),
        order=order,
        granularity=granularity,
        steps=steps,
        seed=seed,
        other=list(other),
        target="the trained model's prediction",
    )
    done = _rows_done(out, resume, settings, items, MUST_MATCH)
    barrier(info, "start")  # no rank writes before every rank has read the files
    mine = shard_batches(len(items), batch_size, info.rank, info.world_size)
    _log(info, f"{len(mine)} batches on {info.device}")
    _score_shard(
        model, items, preprocess, layers, methods, out, settings, info, mine, done,
        modules,
    )  # fmt: skip
    rows = gather_rows(info, out)
    if rows is None:
        return None
    return sanity_result(dict(settings, world_size=info.world_size), rows)


def _check_options(
    order: str, granularity: str, other: Sequence[str], items: Sequence[Any]
) -> None:
    for name, value, choices in (
        ("order", order, ORDERS),
        ("granularity", granularity, GRANULARITIES),
    ):
        if value not in choices:
            raise ValueError(
                f"{name} must be one of {', '.join(choices)}; got {value!r}."
            )
    unknown = [o for o in other if o not in OTHER_CLASSES]
    if unknown:
        raise ValueError(
            f"other must name classes among {', '.join(OTHER_CLASSES)}; got {unknown}."
        )
    if granularity == "none" and not other:
        raise ValueError("granularity 'none' and no other class leave nothing to do.")
    if not items:
        raise ValueError("No photos to check.")
    _check_unique_names(items)


def _score_shard(
    model, items, preprocess, layers, methods, out, settings, info, mine, done, modules
) -> None:  # noqa: ANN001
    """This rank's rows, one JSON line per (photo, layer, method) not in ``done``."""
    writer = _open_shard(out, info, settings)
    names = list(layers)
    first_index = int(settings.get("start") or 0)
    start = time.time()
    try:
        for batch in mine:
            chunk = [items[i] for i in batch]
            todo = [
                method
                for method in methods
                if any((item.name, layer, method) not in done
                       for item in chunk for layer in names)
            ]  # fmt: skip
            if not todo:
                continue
            inputs = torch.stack([preprocess(item.load()) for item in chunk])
            inputs = inputs.to(info.device)
            with torch.no_grad():
                predicted = model(inputs).argmax(1).tolist()
            for method in todo:
                explain = method_explain(method, list(layers.values()))
                scores, _ = sanity_scores(
                    explain, model, inputs, names, modules,
                    order=settings["order"], seed=settings["seed"],
                    other=settings["other"],
                )  # fmt: skip
                for k, (i, item) in enumerate(zip(batch, chunk)):
                    for layer in names:
                        if (item.name, layer, method) in done:
                            continue
                        row = {
                            "index": first_index + i,
                            "image": item.name,
                            "target": item.target,  # the label, checked on resume
                            "explained": predicted[k],
                            "layer": layer,
                            "method": method,
                            **{f: v[k] for f, v in scores[layer].items()},
                        }
                        writer.write(nan_to_none(row))
                        done.add((item.name, layer, method))
            _log(
                info, f"batch of {len(chunk)} photos done, {time.time() - start:.0f} s"
            )
    except BaseException:
        _drop_if_empty(writer)
        raise
    finally:
        writer.close()


def sanity_result(
    settings: dict[str, Any], rows: dict[Key, dict[str, Any]]
) -> dict[str, Any]:
    """The result of the photos that have every (layer, method) row, in photo
    order: ``settings``, ``images``, ``targets``, ``steps`` and
    ``scores[method][layer][field]`` (one entry per image)."""
    layers, methods = list(settings["layers"]), list(settings["methods"])
    photos: dict[str, tuple[int, int]] = {}
    for (image, _, _), row in rows.items():
        photos.setdefault(image, (row["index"], row["explained"]))
    complete = [
        image
        for image in sorted(photos, key=lambda name: photos[name][0])
        if all((image, layer, m) in rows for layer in layers for m in methods)
    ]
    if len(complete) < len(photos):
        print(
            f"{len(photos) - len(complete)} photos lack some (layer, method) rows and "
            "are left out (a run still going, or one to finish with --resume).",
            file=sys.stderr,
        )
    fields = [f"class_sensitivity_{o}" for o in settings["other"]]
    if settings["granularity"] != "none":
        fields += list(RANDOMIZATION_FIELDS)
    return {
        "settings": dict(settings, n_images=len(complete)),
        "images": complete,
        "targets": [photos[image][1] for image in complete],
        "steps": list(settings["steps"]),
        "scores": {
            method: {
                layer: {
                    field: [rows[(image, layer, method)][field] for image in complete]
                    for field in fields
                }
                for layer in layers
            }
            for method in methods
        },
    }


def merge_sanity_shards(paths: Sequence[Path]) -> dict[str, Any]:
    """Merges shard files of a sanity run (and its resumptions) into its
    result (:func:`sanity_result`); refuses files of two runs' settings."""
    previous, rows = read_shards(paths)
    if not previous or any(s.get("kind") != "sanity" for s in previous):
        raise ValueError(
            f"{', '.join(map(str, paths))} are not shard files written by sanity."
        )
    _check_settings(previous[1:], previous[0], MUST_MATCH)
    settings = {k: v for k, v in previous[0].items() if k != "rank"}
    return sanity_result(settings, rows)


def plot_cascading(result: dict[str, Any], path: Path) -> None:
    """Mean rank correlation (top row) and SSIM (bottom row) against the number
    of randomized steps, one line per method, one panel per layer; a dotted
    line marks the first step that randomizes the explained layer's block.
    Reads the result of :func:`run_sanity` or ``benchmarks/sanity_checks.py``."""
    import matplotlib.pyplot as plt

    layers = list(result["settings"]["layers"].items())
    steps = ["trained", *result["steps"]]
    fig, axes = plt.subplots(
        2, len(layers), figsize=(4.2 * len(layers), 7.5), squeeze=False
    )
    for column, (layer, module) in enumerate(layers):
        for row, field in enumerate(("spearman", "ssim")):
            ax = axes[row][column]
            for method, per_layer in result["scores"].items():
                values = torch.tensor(
                    [
                        [math.nan if v is None else v for v in image_row]
                        for image_row in per_layer[layer][field]
                    ],
                    dtype=torch.float64,
                )
                curve = [1.0, *torch.nanmean(values, dim=0).tolist()]
                ax.plot(range(len(steps)), curve, marker=".", label=method)
            reached = [
                i
                for i, step in enumerate(steps)
                if any(
                    p == module or p.startswith(module + ".") for p in step.split("+")
                )
            ]
            if reached:
                ax.axvline(reached[0], color="grey", linestyle=":", linewidth=1)
            ax.axhline(0, color="black", linewidth=0.5)
            ax.set_ylim(top=1.05)
            ax.set_title(f"{layer} ({module})" if row == 0 else "")
            ax.set_ylabel("mean Spearman" if field == "spearman" else "mean SSIM")
            ax.set_xticks(range(len(steps)))
            ax.set_xticklabels(
                [s.replace("_blocks.", "b") for s in steps], rotation=90, fontsize=6
            )
    axes[0][0].legend(fontsize=7)
    s = result["settings"]
    fig.suptitle(
        f"{s.get('order', 'cascading').capitalize()} randomization, {s['model']}, "
        f"{s['n_images']} photos ({s['granularity']} steps, output first)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
