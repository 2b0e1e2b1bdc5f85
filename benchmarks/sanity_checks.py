"""Sanity checks (Adebayo et al., NeurIPS 2018) of the CAM methods on EfficientNet-Lite0.

For each method (a ``make_explainer`` name) and each explained layer, the
cascading model-parameter randomization curves (``metrics.model_randomization``:
rank correlation and SSIM between the trained model's map and the map after
each step, maps at the layer's resolution) and the class sensitivity
(``metrics.class_sensitivity``: rank correlation between the maps of the top
class and of the second and the last class). The explained class is the
trained model's prediction. ``--granularity block`` randomizes one step per
top-level part (``_fc``, ``_conv_head`` with ``_bn1``, ``_blocks.15`` ...
``_blocks.0``, ``_conv_stem`` with ``_bn0``: 19 steps) instead of one per
module (99 steps); ``--granularity none`` computes the class sensitivity only
(no randomization: cheap). Writes ``sanity_lite0_<n>.json`` (``_module``,
``_class`` for the other granularities) and a PNG of the curves.

Usage::

    python benchmarks/sanity_checks.py --images ../shared/data/imagenet-samples \\
        --limit 8 --granularity block
"""

import argparse
import json
import math
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch import nn

from captum_shallowcam.experiments import image_batches
from captum_shallowcam.experiments.images import read_image_folder
from captum_shallowcam.methods import make_explainer
from captum_shallowcam.metrics import class_sensitivity, model_randomization
from captum_shallowcam.models import load_model

DEFAULT_METHODS = "layercam,layercam+sign-aware,shallowcam,relevancecam,gradcam"
DEFAULT_LAYERS = "stage1,stage2,stage4,stage7"
RESULTS = Path(__file__).resolve().parent / "results"


def block_steps(model: nn.Module) -> list[str | list[str]]:
    """One step per top-level part of EfficientNet-Lite, from the output down."""
    blocks = [f"_blocks.{i}" for i in reversed(range(len(model._blocks)))]
    return ["_fc", ["_conv_head", "_bn1"], *blocks, ["_conv_stem", "_bn0"]]


def method_explain(method: str, layer_names: list[str]):
    """``explain(model, inputs, target) -> [map per layer]`` for any model copy."""

    def explain(model: nn.Module, inputs, target):
        layers = [model.get_submodule(name) for name in layer_names]
        return make_explainer(model, layers, method)(inputs, target)

    return explain


def nan_to_none(values):
    """JSON has no NaN: a NaN (a constant map) is written as null."""
    if isinstance(values, dict):
        return {key: nan_to_none(v) for key, v in values.items()}
    if isinstance(values, list):
        return [nan_to_none(v) for v in values]
    return None if math.isnan(values) else values


def method_scores(explain, model, inputs, layers, modules, seed) -> tuple[dict, list]:
    """Randomization curves (unless ``modules == "none"``) and class
    sensitivities of one batch, per layer (``{layer: {field: rows}}``, one row or
    value per image), and the steps."""
    second = class_sensitivity(model, explain, inputs, other="second")
    last = class_sensitivity(model, explain, inputs, other="last")
    scores = {
        layer: {
            "class_sensitivity_second": sec.tolist(),
            "class_sensitivity_last": lst.tolist(),
        }
        for layer, sec, lst in zip(layers, second, last)
    }
    if modules == "none":
        return scores, []
    randomized = model_randomization(model, explain, inputs, modules=modules, seed=seed)
    for layer, result in zip(layers, randomized):
        scores[layer].update(
            {
                field: getattr(result, field).T.tolist()  # N x K
                for field in ("spearman", "spearman_abs", "ssim")
            }
        )
    return scores, randomized[0].modules


def run(args: argparse.Namespace, items: list, save) -> dict:
    """Every method on every batch; ``save(result)`` after each method, so a
    long run leaves the methods it finished."""
    loaded = load_model("efficientnet-lite0")
    model = loaded.model
    module_names = {module: name for name, module in model.named_modules()}
    layers = args.layers.split(",")
    layer_names = [module_names[loaded.layers[layer]] for layer in layers]
    modules = {"block": block_steps(model), "none": "none"}.get(args.granularity)
    result = {
        "settings": {
            "model": "efficientnet-lite0",
            "images": str(args.images),
            "start": args.start,
            "n_images": len(items),
            "layers": dict(zip(layers, layer_names)),
            "methods": args.methods.split(","),
            "order": "cascading",
            "granularity": args.granularity,
            "seed": args.seed,
            "target": "the trained model's prediction",
            "torch_threads": torch.get_num_threads(),
            "note": "scores[method][layer][field]: one row per image; the "
            "randomization fields have one value per step (steps, from the "
            "output down); NaN (a constant map) is written as null",
        },
        "images": [item.name for item in items],
        "seconds": {},
        "scores": {},
    }
    for method in result["settings"]["methods"]:
        explain = method_explain(method, layer_names)
        started = time.perf_counter()
        per_layer = {layer: {} for layer in layers}
        for _, inputs, _ in image_batches(
            items, loaded.preprocess, model, args.batch_size
        ):
            scores, result["steps"] = method_scores(
                explain, model, inputs, layers, modules, args.seed
            )
            for layer in layers:
                for field, rows in scores[layer].items():
                    per_layer[layer].setdefault(field, []).extend(rows)
        result["seconds"][method] = time.perf_counter() - started
        result["scores"][method] = nan_to_none(per_layer)
        print(f"{method}: {result['seconds'][method]:.0f} s", flush=True)
        save(result)
    return result


def plot(result: dict, path: Path) -> None:
    """Mean rank correlation (top row) and SSIM (bottom row) against the number
    of randomized steps, one line per method, one panel per layer; a dotted
    line marks the first step that randomizes the explained layer's block."""
    layers = list(result["settings"]["layers"].items())
    steps = ["trained", *result["steps"]]
    fig, axes = plt.subplots(
        2, len(layers), figsize=(4.2 * len(layers), 7.5), squeeze=False
    )
    for column, (layer, module) in enumerate(layers):
        for row, field in enumerate(("spearman", "ssim")):
            ax = axes[row][column]
            for method, per_layer in result["scores"].items():
                rows = per_layer[layer][field]
                values = torch.tensor(
                    [[math.nan if v is None else v for v in r] for r in rows],
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
    n = result["settings"]["n_images"]
    fig.suptitle(
        f"Cascading randomization, EfficientNet-Lite0, {n} photos "
        f"({result['settings']['granularity']} steps, output first)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--layers", default=DEFAULT_LAYERS)
    parser.add_argument(
        "--granularity", choices=("module", "block", "none"), default="block"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    items = read_image_folder(args.images)[args.start : args.start + args.limit]
    stem = f"sanity_lite0_{len(items)}"
    if args.granularity != "block":
        stem += {"module": "_module", "none": "_class"}[args.granularity]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()

    def save(result: dict) -> None:
        result["wall_seconds"] = time.time() - started
        with open(args.out_dir / f"{stem}.json", "w") as f:
            json.dump(result, f)
        if args.granularity != "none":
            plot(result, args.out_dir / f"{stem}.png")

    run(args, items, save)
    print(
        f"wrote {args.out_dir / stem}.json (and .png) in {time.time() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
