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

The same computation, sharded with ``torchrun`` and resumable, is
``python -m captum_shallowcam sanity``; this script calls the same functions
(:mod:`captum_shallowcam.experiments.sanity`) and writes the same JSON.

Usage::

    python benchmarks/sanity_checks.py --images ../shared/data/imagenet-samples \\
        --limit 8 --granularity block
"""

import argparse
import json
import time
from pathlib import Path

import torch

from captum_shallowcam.experiments import image_batches
from captum_shallowcam.experiments.images import read_image_folder
from captum_shallowcam.experiments.sanity import (
    block_steps,
    method_explain,
    nan_to_none,
    plot_cascading,
    sanity_scores,
)
from captum_shallowcam.models import load_model

DEFAULT_METHODS = "layercam,layercam+sign-aware,shallowcam,relevancecam,gradcam"
DEFAULT_LAYERS = "stage1,stage2,stage4,stage7"
RESULTS = Path(__file__).resolve().parent / "results"


def method_scores(explain, model, inputs, layers, modules, seed) -> tuple[dict, list]:
    """Randomization curves (unless ``modules == "none"``) and class
    sensitivities of one batch (:func:`~captum_shallowcam.experiments.sanity.sanity_scores`)."""
    return sanity_scores(explain, model, inputs, layers, modules, seed=seed)


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
    """The cascading curves (:func:`~captum_shallowcam.experiments.sanity.plot_cascading`)."""
    plot_cascading(result, path)


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
