"""Where do LayerCam and LayerShallowCam lose on layers with signed activations?

EfficientNet-Lite0's stage outputs are linear bottlenecks (a projection conv and
BatchNorm, no activation, often plus a residual): about half of their
activations are negative. LayerCAM's mask ``ReLU(G) * A`` then counts a negative
activation under a positive gradient as negative evidence, and z+ relevance
(which credits ``(a w)+``, so negative activations with negative weights too)
puts about half of the relevance on negative activations, which the mask does
not show. This script measures both effects on real images, from one set of
passes per batch (the maps are built here from the activations ``A``, gradients
``G`` and CLRP relevance ``R`` that ``LayerShallowCam`` computes):

* ``layercam``: ``ReLU(sum_k S_k)`` with ``S_k = ReLU(G_k) A_k`` (the baseline);
* ``default``: LayerShallowCam's 0.1 default, ``ReLU(sum_k alpha_k S_k)``,
  ``alpha_k = sum_ij R_k(i,j)``;
* ``alpha_on_positive_acts``: ``alpha_k`` summed only where ``A_k > 0``;
* ``sqrt_alpha``: ``sqrt(alpha_k)`` (is the loss one of over-concentration?);
* ``layercam_positive_acts``: LayerCam with ``S_k^+ = ReLU(G_k) ReLU(A_k)``;
* ``default_positive_acts``: the default with ``S_k^+``.

It prints the mean paired difference of the overall deletion/insertion score to
``layercam`` per layer, and per layer the share of negative activations, the
share of relevance on them, and the effective number of channels
(inverse participation ratio of ``alpha``). These are diagnostics for the
results page, not options of the package.

Usage::

    python benchmarks/signed_layers_analysis.py --images ../shared/data/imagenet-samples \\
        --start 20 --limit 40 --layers stage1,stage2,stage4,stage6 --step 3584 --out held_out.json
"""

import argparse
import json

import numpy as np
import torch

from captum_shallowcam.attr import channel_sum, compute_layer_passes, spatial_mask
from captum_shallowcam.experiments import image_batches, paired_difference
from captum_shallowcam.experiments.images import read_image_folder
from captum_shallowcam.metrics import deletion_insertion
from captum_shallowcam.models import load_model


def participation(weights: torch.Tensor) -> list[float]:
    """Effective number of channels, 1 / sum(p_k^2) with p = alpha / sum(alpha)."""
    p = weights / weights.sum(1, keepdim=True).clamp_min(1e-30)
    return (1 / (p**2).sum(1).clamp_min(1e-30)).tolist()


def maps_from_passes(
    a: torch.Tensor, g: torch.Tensor, r: torch.Tensor
) -> dict[str, torch.Tensor]:
    mask = spatial_mask(a, g)
    mask_pos = mask.clamp(min=0)  # ReLU(G) * ReLU(A)
    positive = (a > 0).to(a.dtype)
    alpha = r.sum((2, 3), keepdim=True)
    alpha_pos = (r * positive).sum((2, 3), keepdim=True)
    return {
        "layercam": channel_sum(mask, True),
        "default": channel_sum(alpha * mask, True),
        "alpha_on_positive_acts": channel_sum(alpha_pos * mask, True),
        "sqrt_alpha": channel_sum(alpha.sqrt() * mask, True),
        "layercam_positive_acts": channel_sum(mask_pos, True),
        "default_positive_acts": channel_sum(alpha * mask_pos, True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--layers", default="stage1,stage4")
    parser.add_argument("--step", type=int, default=3584)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="JSON with per-image scores")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model("efficientnet-lite0")
    model = loaded.model.to(memory_format=torch.channels_last)
    names = args.layers.split(",")
    layers = [loaded.layers[n] for n in names]
    items = read_image_folder(args.images)[args.start : args.start + args.limit]
    scores: dict[str, dict[str, list[float]]] = {}
    diag = {n: {"negative_acts": [], "relevance_on_negative": [], "channels": [], "channels_pos": []}
            for n in names}  # fmt: skip
    for _, x, t in image_batches(items, loaded.preprocess, model, 4):
        passes = compute_layer_passes(
            model, layers, x, target=t, check_conservation=False
        )
        for name, a, g, r in zip(
            names, passes.activations, passes.gradients, passes.relevances
        ):
            negative = (a <= 0).to(a.dtype)
            d = diag[name]
            d["negative_acts"] += negative.mean((1, 2, 3)).tolist()
            d["relevance_on_negative"] += (
                (r * negative).sum((1, 2, 3)) / r.sum((1, 2, 3)).clamp_min(1e-30)
            ).tolist()
            d["channels"] += participation(r.sum((2, 3)))
            d["channels_pos"] += participation((r * (1 - negative)).sum((2, 3)))
            for method, layer_map in maps_from_passes(a, g, r).items():
                result = deletion_insertion(
                    model, x, layer_map.detach(), target=t, step=args.step
                )
                scores.setdefault(method, {}).setdefault(name, []).extend(
                    result.overall.tolist()
                )
        print(f"{len(scores['layercam'][names[0]])} images", flush=True)
    print(
        f"\n{len(items)} images from #{args.start}, step {args.step}; Δ overall vs layercam [95% CI]"
    )
    for method in scores:
        if method == "layercam":
            continue
        cells = []
        for name in names:
            mean, _, low, high = paired_difference(
                scores[method][name], scores["layercam"][name]
            )
            cells.append(f"{name} {mean:+.2f} [{low:+.1f},{high:+.1f}]")
        print(f"  {method:<24} " + "  ".join(cells))
    print(
        "\nlayer: negative activations, relevance on them, effective channels (alpha / alpha on A>0)"
    )
    for name in names:
        d = {k: float(np.mean(v)) for k, v in diag[name].items()}
        print(
            f"  {name}: {d['negative_acts']:.2f}, {d['relevance_on_negative']:.2f}, "
            f"{d['channels']:.1f} / {d['channels_pos']:.1f}"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(
                {"settings": vars(args), "scores": scores, "diagnostics": diag}, f
            )


if __name__ == "__main__":
    main()
