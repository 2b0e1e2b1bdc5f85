"""Per-layer and fused maps of several methods, scored by deletion/insertion.

For every image, each method explains all default layers in one call; the
per-layer maps are scored, then fused with
:func:`captum_shallowcam.fuse_layer_maps` (``product``, ``max``, ``mean``, at the
input's resolution) and the fused maps are scored too. The result is the
benchmark's JSON (:class:`~captum_shallowcam.experiments.results.EvaluationResult`), the
fused maps appearing as layers ``fused-product``, ``fused-max``, ``fused-mean``
after the real ones, so ``python -m captum_shallowcam report`` and
``benchmarks/results_page.py`` read it like any run.

Usage::

    python benchmarks/fusion_benchmark.py --images ../shared/data/imagenet-samples-b \\
        --methods layercam,layercam+sign-aware,shallowcam --step 3584 --out fusion_b.json
"""

import argparse
import json
import time

import torch

from captum_shallowcam import fuse_layer_maps
from captum_shallowcam.experiments import EvaluationResult, image_batches
from captum_shallowcam.experiments.images import read_image_folder
from captum_shallowcam.experiments.results import PROTOCOL_BEFORE_PRESETS as PROTOCOL
from captum_shallowcam.methods import make_explainer
from captum_shallowcam.metrics import deletion_insertion
from captum_shallowcam.models import load_model

FUSION_MODES = ("product", "max", "mean")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True)
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--methods", default="layercam,layercam+sign-aware,shallowcam")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--step", type=int, default=3584)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument(
        "--no-fusion", action="store_true", help="score single layers only"
    )
    parser.add_argument(
        "--fusion-modes",
        default=",".join(FUSION_MODES),
        help="comma-separated subset of product,max,mean (default: all three)",
    )
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    loaded = load_model(args.model)
    model = loaded.model.to(memory_format=torch.channels_last)
    names = list(loaded.layers)
    modes = () if args.no_fusion else tuple(args.fusion_modes.split(","))
    unknown = set(modes) - set(FUSION_MODES)
    if unknown:
        parser.error(f"--fusion-modes: unknown {sorted(unknown)}; use {FUSION_MODES}")
    fused = [f"fused-{mode}" for mode in modes]
    methods = args.methods.split(",")
    explainers = {
        m: make_explainer(model, list(loaded.layers.values()), m) for m in methods
    }
    items = read_image_folder(args.images)[args.start : args.start + args.limit]
    settings = {
        "model": args.model,
        "images": args.images,
        "start": args.start,
        "n_images": len(items),
        "protocol": PROTOCOL,
        "step": args.step,
        "layers": names + fused,
        "fusion": "fuse_layer_maps at the input's size, maps scaled per example to [0, 1]",
    }
    result = EvaluationResult(settings=settings)
    for method in methods:
        result.scores[method] = {
            layer: {"deletion": [], "insertion": [], "overall": []}
            for layer in names + fused
        }
    started = time.time()
    for image_names, inputs, targets in image_batches(
        items, loaded.preprocess, model, args.batch_size
    ):
        result.images.extend(image_names)
        result.targets.extend(int(t) for t in targets)
        for method, explain in explainers.items():
            maps = [m.detach() for m in explain(inputs, targets)]
            scored = list(zip(names, maps))
            for mode in modes:
                scored.append(
                    (f"fused-{mode}", fuse_layer_maps(maps, inputs.shape[-2:], mode))
                )
            for layer, layer_map in scored:
                scores = deletion_insertion(
                    model, inputs, layer_map, target=targets, step=args.step
                )
                result.add_scores(method, layer, scores)
        with open(args.out, "w") as f:
            json.dump(result.to_dict(), f)
        print(
            f"{len(result.images)}/{len(items)} images, {time.time() - started:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
