r"""Why the sign-aware mask loses where it loses: the four sign quadrants of G * A.

At a layer whose activations ``A`` can be negative (EfficientNet-Lite's stage
outputs are linear bottlenecks), each term ``G_k(i,j) A_k(i,j)`` of gradient
times activation falls in one of four quadrants:

* ``a+g+`` (``A > 0``, ``G > 0``): evidence for the class; every mask keeps it;
* ``a-g+`` (``A < 0``, ``G > 0``): the activation holds the score down; LayerCAM's
  ``ReLU(G) A`` subtracts it, the sign-aware mask ``ReLU(G) ReLU(A)`` drops it;
* ``a-g-`` (``A < 0``, ``G < 0``): ``G A > 0``, so to first order the negative
  activation raises the score; LayerCAM and the sign-aware mask ignore it, the
  both-signs mask ``ReLU(G A)`` keeps it;
* ``a+g-`` (``A > 0``, ``G < 0``): counter-evidence that every mask ignores.

Per layer it prints the share of negative activations, each quadrant's share
of the total ``|G A|`` and of the CLRP relevance, and the overall
deletion/insertion score of maps built from the quadrants, as the mean paired
difference to LayerCAM with a 95% bootstrap interval:

* ``sign-aware``: ``sum_k a+g+`` (LayerCAM without its subtraction);
* ``subtraction``: ``sum_k |a-g+|``, the part LayerCAM subtracts, as a map of
  its own (a low score says those positions are not evidence);
* ``negative-evidence``: ``sum_k a-g-`` alone: is a negative activation under a
  negative gradient evidence for the class?
* ``both-signs``: ``sum_k (a+g+ + a-g-)``;
* ``gradient-x-activation``: ``ReLU(sum_k G_k A_k)``, all four with their signs;
* ``random``: uniform noise at the layer's resolution (seed 0), the score of a
  map that knows nothing: a map below it ranks counter-evidence first.

The maps are diagnostics, not options of the package. Usage::

    python benchmarks/sign_quadrants.py --model efficientnet-lite1 \\
        --images ../shared/data/imagenet-samples --limit 16 --layers stage2,stage7 \\
        --step 7168 --out benchmarks/results/sign_quadrants_lite1_own_a_7168.json
"""

import argparse
import json

import torch

from captum_shallowcam.attr import channel_sum, compute_layer_passes, spatial_mask
from captum_shallowcam.experiments import image_batches, paired_difference
from captum_shallowcam.experiments.images import read_image_folder
from captum_shallowcam.metrics import deletion_insertion
from captum_shallowcam.metrics.protocols import describe, protocol_kwargs
from captum_shallowcam.models import NORMALIZATIONS, load_model

QUADRANTS = ("a+g+", "a-g+", "a-g-", "a+g-")
MAPS = ("layercam", "sign-aware", "subtraction", "negative-evidence", "both-signs",
        "gradient-x-activation", "random")  # fmt: skip


def quadrant_masks(a: torch.Tensor, g: torch.Tensor) -> dict[str, torch.Tensor]:
    """0/1 masks (N x K x h x w) of the four quadrants; zeros fall in none."""
    return {
        "a+g+": (a > 0) & (g > 0),
        "a-g+": (a < 0) & (g > 0),
        "a-g-": (a < 0) & (g < 0),
        "a+g-": (a > 0) & (g < 0),
    }


def quadrant_maps(
    a: torch.Tensor, g: torch.Tensor, noise: torch.Generator
) -> dict[str, torch.Tensor]:
    """The diagnostic maps (N x 1 x h x w) of the module docstring."""
    a, g = a.detach(), g.detach()
    terms, q = g * a, quadrant_masks(a, g)
    evidence = channel_sum(terms * q["a+g+"], False)
    negative = channel_sum(terms * q["a-g-"], False)
    return {
        "layercam": channel_sum(spatial_mask(a, g), True),
        "sign-aware": evidence,
        "subtraction": channel_sum(terms.abs() * q["a-g+"], False),
        "negative-evidence": negative,
        "both-signs": evidence + negative,
        "gradient-x-activation": channel_sum(terms, True),
        "random": torch.rand(evidence.shape, generator=noise).to(evidence),
    }


def shares(a, g, r) -> dict[str, list[float]]:
    """Per image: negative activations, and each quadrant's share of |G A| and of R."""
    terms, q = (g * a).abs(), quadrant_masks(a, g)
    out = {"negative activations": (a < 0).float().mean((1, 2, 3)).tolist()}
    for name, mask in q.items():
        out[f"|GA| {name}"] = (
            (terms * mask).sum((1, 2, 3)) / terms.sum((1, 2, 3)).clamp_min(1e-30)
        ).tolist()
        out[f"R {name}"] = (
            (r * mask).sum((1, 2, 3)) / r.sum((1, 2, 3)).clamp_min(1e-30)
        ).tolist()
    return out


def run(args: argparse.Namespace) -> dict:
    loaded = load_model(args.model, normalization=args.normalization)
    model = loaded.model.to(memory_format=torch.channels_last)
    names = args.layers.split(",")
    layers = [loaded.layers[n] for n in names]
    items = read_image_folder(args.images)[args.start : args.start + args.limit]
    metric_kwargs = protocol_kwargs("captum-shallowcam", step=args.step)
    settings = {**vars(args), "n_images": len(items),
                "metric": describe("captum-shallowcam", metric_kwargs)}  # fmt: skip
    record: dict = {"settings": settings, "images": [], "scores": {}, "shares": {}}
    noise = torch.Generator().manual_seed(0)
    for image_names, x, t in image_batches(
        items, loaded.preprocess, model, args.batch_size
    ):
        record["images"] += image_names
        passes = compute_layer_passes(
            model, layers, x, target=t, check_conservation=False
        )
        for name, a, g, r in zip(
            names, passes.activations, passes.gradients, passes.relevances
        ):
            for key, values in shares(a, g, r).items():
                record["shares"].setdefault(name, {}).setdefault(key, []).extend(values)
            for method, layer_map in quadrant_maps(a, g, noise).items():
                if method not in args.maps.split(","):
                    continue
                overall = deletion_insertion(
                    model, x, layer_map, target=t, **metric_kwargs
                ).overall
                record["scores"].setdefault(method, {}).setdefault(name, []).extend(
                    overall.tolist()
                )
        print(f"{len(record['images'])} images", flush=True)
    return record


def print_record(record: dict) -> None:
    scores = record["scores"]
    for name, values in record["shares"].items():
        mean = {k: sum(v) / len(v) for k, v in values.items()}
        print(f"\n{name}: negative activations {mean['negative activations']:.2f}")
        for quadrant in QUADRANTS:
            print(f"  {quadrant}: |G A| {mean[f'|GA| {quadrant}']:.2f}, "
                  f"R {mean[f'R {quadrant}']:.2f}")  # fmt: skip
        base = scores["layercam"][name]
        print(f"  layercam overall {sum(base) / len(base):.2f}")
        for method in scores:
            if method == "layercam":
                continue
            d, _, low, high = paired_difference(scores[method][name], base)
            print(f"  {method:<22} {d:+.2f} [{low:+.1f}, {high:+.1f}]")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="efficientnet-lite0")
    p.add_argument("--normalization", default="own", choices=sorted(NORMALIZATIONS))
    p.add_argument("--images", required=True)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--limit", type=int, default=16)
    p.add_argument("--layers", default="stage2,stage7")
    p.add_argument("--step", type=int, default=7168)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument(
        "--maps", default=",".join(MAPS), help=f"comma-separated, among {MAPS}"
    )
    p.add_argument("--out", required=True, help="JSON: per-image scores and shares")
    args = p.parse_args()
    maps = args.maps.split(",")
    if "layercam" not in maps or not set(maps) <= set(MAPS):
        p.error(f"--maps: names among {', '.join(MAPS)}, layercam included")
    record = run(args)
    with open(args.out, "w") as f:
        json.dump(record, f)
    print_record(record)


if __name__ == "__main__":
    main()
