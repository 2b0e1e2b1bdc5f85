"""Screens LayerCAM's masks and LayerShallowCam's weights on any model and input regime.

One set of passes per batch (:func:`captum_shallowcam.attr.compute_layer_passes`:
activations ``A``, gradients ``G``, CLRP relevance ``R`` at every stage) gives
the maps of eight registered methods, scored by deletion/insertion:

* ``layercam``: ``ReLU(sum_k ReLU(G_k) A_k)``, the published LayerCAM;
* ``layercam+sign-aware``: ``sum_k ReLU(G_k) ReLU(A_k)``;
* ``shallowcam+sign-aware+geometric``: geometric weights on ``alpha+`` times
  the sign-aware mask (the default until the split mask replaced it);
* ``layercam+both-signs``: ``sum_k ReLU(G_k A_k)``;
* ``shallowcam+both-signs+geometric``: geometric weights on ``alpha`` (all
  positions) times the both-signs mask;
* ``shallowcam+both-signs+mass``: the both-signs mask scaled so that each
  channel adds up to its relevance ``ReLU(alpha_k)`` (``channel_weights="mass"``);
* ``shallowcam+split+mass``: the both-signs mask split by the sign of the
  activations, each part adding up to the relevance on its own positions
  (``mask="split"``, :func:`captum_shallowcam.attr.split_terms`);
* ``shallowcam+split-gated+mass``: the same, each part's relevance counted
  only where the part is positive (``mask="split-gated"``): the default.

Three more maps are diagnostics, not options of the package (issue #25: does
LayerCAM's subtraction of ``a-g+``, a negative activation under a positive
gradient, help the default?). With the default's split-gated mass weights
``w+_k``, ``w-_k`` unchanged:

* ``diagnostic:subtraction``: ``ReLU(sum_k [w+_k S+_k + w-_k G_k A_k [A_k < 0]])``,
  LayerCAM's own subtraction kept on the negative side (``a+g-`` ignored, as
  LayerCAM does);
* ``diagnostic:signed``: ``ReLU(sum_k w_k G_k A_k)`` with ``w+_k`` where
  ``A_k >= 0`` and ``w-_k`` where ``A_k < 0``: every counter-evidence
  subtracted at its side's scale;
* ``diagnostic:quadrant-mass``: ``ReLU(sum_k [w+_k S+_k + w-_k S-_k - wd_k D_k])``
  with ``D_k = ReLU(G_k) ReLU(-A_k)`` (LayerCAM's subtracted part) carrying its
  own gated relevance, ``wd_k = ReLU(sum_ij R_k [D_k > 0]) / sum_ij D_k``.

Runs made before the split mask became the default name the sign-aware
geometric reading ``shallowcam`` and the both-signs one ``shallowcam+both-signs``;
the stored ones were renamed (their settings say so).

``--methods`` scores a subset; ``--extend FILE`` adds the scores of
``--methods`` to an earlier result of this script (same photos, targets and
settings, checked) instead of starting a new one.

The eight registered maps equal what ``make_explainer(model, layers, name)`` returns (tested in
``tests/test_sign_aware_and_fusion.py``); computing them from one set of passes
costs an eighth. The result is the benchmark's JSON, so ``python -m
captum_shallowcam report`` and the results page read it. Usage::

    python benchmarks/masks_screen.py --model efficientnet-lite1 \\
        --images ../shared/data/imagenet-samples --limit 16 --step 7168 \\
        --out benchmarks/results/masks_lite1_own_a_7168.json
"""

import argparse
import json
import time
from pathlib import Path

import torch

from captum_shallowcam.attr import (
    channel_sum,
    compute_layer_passes,
    inter_layer_weights,
    spatial_mask,
    split_terms,
)
from captum_shallowcam.experiments import EvaluationResult, image_batches
from captum_shallowcam.experiments.images import read_image_folder
from captum_shallowcam.metrics import deletion_insertion
from captum_shallowcam.metrics.protocols import describe, protocol_kwargs
from captum_shallowcam.models import NORMALIZATIONS, load_model

METHODS = (
    "layercam",
    "layercam+sign-aware",
    "shallowcam+sign-aware+geometric",
    "layercam+both-signs",
    "shallowcam+both-signs+geometric",
    "shallowcam+both-signs+mass",
    "shallowcam+split+mass",
    "shallowcam+split-gated+mass",
)


def maps(a: torch.Tensor, g: torch.Tensor, r: torch.Tensor) -> dict[str, torch.Tensor]:
    """The eight maps of one layer from its passes."""
    sign_aware = spatial_mask(torch.relu(a), g)
    both_signs = spatial_mask(a, g, "both-signs")
    r_positive = r.masked_fill(a < 0, 0.0)
    return {
        "layercam": channel_sum(spatial_mask(a, g), True),
        "layercam+sign-aware": channel_sum(sign_aware, True),
        "shallowcam+sign-aware+geometric": channel_sum(
            inter_layer_weights(r_positive, "geometric", sign_aware) * sign_aware, True
        ),
        "layercam+both-signs": channel_sum(both_signs, True),
        "shallowcam+both-signs+geometric": channel_sum(
            inter_layer_weights(r, "geometric", both_signs) * both_signs, True
        ),
        "shallowcam+both-signs+mass": channel_sum(
            inter_layer_weights(r, "mass", both_signs) * both_signs, True
        ),
        "shallowcam+split+mass": channel_sum(split_terms(a, g, r, "mass"), True),
        "shallowcam+split-gated+mass": channel_sum(
            split_terms(a, g, r, "mass", gated=True), True
        ),
    }


DIAGNOSTICS = (
    "diagnostic:subtraction",
    "diagnostic:signed",
    "diagnostic:quadrant-mass",
)


def diagnostic_maps(
    a: torch.Tensor, g: torch.Tensor, r: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The three diagnostic maps of one layer (see the module docstring)."""
    positive_part = torch.relu(g) * torch.relu(a)
    negative_part = torch.relu(-g) * torch.relu(-a)
    w_positive, w_negative = (
        inter_layer_weights(r * (part > 0), "mass", part)
        for part in (positive_part, negative_part)
    )
    ga = g * a
    negative_side = (w_negative * ga).masked_fill(a >= 0, 0.0)
    return {
        "diagnostic:subtraction": channel_sum(
            w_positive * positive_part + negative_side, True
        ),
        "diagnostic:signed": channel_sum(
            torch.where(a >= 0, w_positive * ga, w_negative * ga), True
        ),
        # the package's mask="split-subtracted"
        "diagnostic:quadrant-mass": channel_sum(
            split_terms(a, g, r, "mass", gated=True, subtract=True), True
        ),
    }


def print_signs(model, layers, names, items, preprocess, batch_size) -> None:
    """Per layer: the share of negative activations, and the share of the CLRP
    relevance that falls on them, over all photos."""
    totals = {n: torch.zeros(4, dtype=torch.float64) for n in names}
    for _, x, t in image_batches(items, preprocess, model, batch_size):
        passes = compute_layer_passes(
            model, layers, x, target=t, check_conservation=False
        )
        for n, a, r in zip(names, passes.activations, passes.relevances):
            negative = a < 0
            totals[n] += torch.tensor(
                [negative.sum(), a.numel(), r[negative].sum(), r.sum()],
                dtype=torch.float64,
            )
    for n, (neg, size, r_neg, r_all) in totals.items():
        print(
            f"{n}: negative activations {neg / size:.0%}, relevance on them {r_neg / r_all:.0%}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="efficientnet-lite0")
    p.add_argument("--normalization", default="own", choices=sorted(NORMALIZATIONS))
    p.add_argument("--images", required=True)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--limit", type=int, default=16)
    p.add_argument("--step", type=int, default=7168)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--layers", default=None, help="comma-separated; default all")
    p.add_argument("--out", default=None, help="results JSON (required unless --signs)")
    p.add_argument(
        "--methods", default=",".join(METHODS), help="comma-separated; default all"
    )
    p.add_argument(
        "--extend",
        default=None,
        help="an earlier result of this script: add --methods' scores to it",
    )
    p.add_argument(
        "--signs",
        action="store_true",
        help="print, per layer, the share of negative activations and of the CLRP "
        "relevance on them, and exit (no scores)",
    )
    args = p.parse_args()
    if args.out is None and not args.signs:
        p.error("--out is required (or give --signs)")
    loaded = load_model(args.model, normalization=args.normalization)
    model = loaded.model.to(memory_format=torch.channels_last)
    names = args.layers.split(",") if args.layers else list(loaded.layers)
    layers = [loaded.layers[n] for n in names]
    items = read_image_folder(args.images)[args.start : args.start + args.limit]
    metric_kwargs = protocol_kwargs("captum-shallowcam", step=args.step)
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in (*METHODS, *DIAGNOSTICS)]
    if unknown:
        p.error(
            f"--methods: unknown {unknown}; choose among "
            f"{', '.join((*METHODS, *DIAGNOSTICS))}"
        )
    result = EvaluationResult(
        settings={
            "model": args.model,
            "normalization": args.normalization,
            "images": args.images,
            "start": args.start,
            "n_images": len(items),
            "protocol": "captum-shallowcam",
            "metric": describe("captum-shallowcam", metric_kwargs),
            "step": args.step,
            "layers": names,
            "methods": methods,
            "channels_last": True,
            "script": "benchmarks/masks_screen.py",
        }
    )
    if args.signs:
        print_signs(model, layers, names, items, loaded.preprocess, args.batch_size)
        return
    started = time.time()
    for image_names, x, t in image_batches(
        items, loaded.preprocess, model, args.batch_size
    ):
        result.images += image_names
        result.targets += t.tolist()
        passes = compute_layer_passes(
            model, layers, x, target=t, check_conservation=False
        )
        for i, name in enumerate(names):
            a, g, r = passes.activations[i], passes.gradients[i], passes.relevances[i]
            built = maps(a, g, r)
            if any(m in DIAGNOSTICS for m in methods):
                built |= diagnostic_maps(a, g, r)
            for method, layer_map in built.items():
                if method not in methods:
                    continue
                scores = deletion_insertion(
                    model, x, layer_map.detach(), target=t, **metric_kwargs
                )
                result.add_scores(method, name, scores)
        print(f"{len(result.images)} images {time.time() - started:.0f} s", flush=True)
        record = result.to_dict()
        if args.extend:
            record = extended(json.loads(Path(args.extend).read_text()), record)
        with open(args.out, "w") as f:
            json.dump(record, f)


def extended(earlier: dict, new: dict) -> dict:
    """``earlier`` with the scores of ``new``'s methods added, after checking
    that both score the same photos for the same targets under the same
    settings (``new`` may have scored the first photos only, so far)."""
    ignore = {"methods", "n_images", "script"}
    for key in set(earlier["settings"]) | set(new["settings"]):
        if key not in ignore and earlier["settings"].get(key) != new["settings"].get(
            key
        ):
            raise SystemExit(f"--extend: setting {key!r} differs from the earlier run")
    n = len(new["images"])
    if (earlier["images"][:n], earlier["targets"][:n]) != (
        new["images"],
        new["targets"],
    ):
        raise SystemExit("--extend: the photos or targets differ from the earlier run")
    merged = json.loads(json.dumps(earlier))
    for method in new["settings"]["methods"]:
        if method in merged["scores"]:
            raise SystemExit(f"--extend: the earlier run has {method} already")
        merged["scores"][method] = new["scores"][method]
        merged["settings"]["methods"].append(method)
    return merged


if __name__ == "__main__":
    main()
