"""How far the default's map is from LayerCAM's, stage by stage.

The deletion/insertion score depends only on the order of the pixels, so a map
that ranks the positions as LayerCAM does scores as LayerCAM does, whatever
its weights. Per photo and stage, from one set of passes per batch
(:func:`captum_shallowcam.attr.compute_layer_passes`), this script records:

* ``rank_correlation``: the Spearman rank correlation of the default's map
  (``shallowcam+split-gated+mass``, as ``masks_screen.py`` builds it) with
  LayerCAM's, over the layer's positions (1: the same order);
* ``relevance_follows_evidence``: the Pearson correlation, over channels and
  positions, of the CLRP relevance ``R`` with the both-signs evidence
  ``ReLU(G A)`` the default's mask is made of (1: the relevance says nothing
  the mask does not);
* ``rank_correlation_where_positive``: the same over the positions where
  LayerCAM's map is above 0 only;
* ``layercam_zero_share``: the share of positions where LayerCAM's map is 0
  (its ReLU cuts them; their order is left to the upsampling), for reading
  the rank correlation.

The result is a JSON file (settings, and per stage the per-photo values) that
the results page reads. Usage::

    python benchmarks/map_agreement.py --model efficientnet-lite1 \\
        --images ../shared/data/imagenet-samples --limit 50 \\
        --out benchmarks/results/agreement_lite1_a_50.json
"""

import argparse
import json

import numpy as np
import torch
from masks_screen import maps
from scipy.stats import spearmanr

from captum_shallowcam.attr import compute_layer_passes
from captum_shallowcam.cli._common import (
    add_layers_argument,
    add_model_argument,
    add_start_limit_arguments,
    select_layers,
)
from captum_shallowcam.experiments import image_batches
from captum_shallowcam.experiments.images import read_image_folder
from captum_shallowcam.models import NORMALIZATIONS, load_model

DEFAULT = "shallowcam+split-gated+mass"
MEASURES = (
    "rank_correlation",
    "rank_correlation_where_positive",
    "relevance_follows_evidence",
    "layercam_zero_share",
)


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    """The Pearson correlation of two tensors' entries."""
    return float(torch.corrcoef(torch.stack([x.flatten(), y.flatten()]))[0, 1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_argument(p)
    p.add_argument("--normalization", default="own", choices=sorted(NORMALIZATIONS))
    p.add_argument("--images", required=True, help="a folder with a labels.csv")
    add_start_limit_arguments(p)
    add_layers_argument(p, "--layers")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out", required=True, help="results JSON")
    args = p.parse_args()
    loaded = load_model(args.model, normalization=args.normalization)
    chosen = select_layers(loaded, args.layers)
    names, layers = list(chosen), list(chosen.values())
    end = None if args.limit is None else args.start + args.limit
    items = read_image_folder(args.images)[args.start : end]
    values = {n: {m: [] for m in MEASURES} for n in names}
    images, targets = [], []
    for image_names, x, t in image_batches(
        items, loaded.preprocess, loaded.model, args.batch_size
    ):
        images += image_names
        targets += t.tolist()
        passes = compute_layer_passes(
            loaded.model, layers, x, target=t, check_conservation=False
        )
        for i, name in enumerate(names):
            a, g, r = passes.activations[i], passes.gradients[i], passes.relevances[i]
            layer_maps = maps(a, g, r)
            evidence = torch.relu(g * a)
            for n in range(len(t)):
                plain = layer_maps["layercam"][n].flatten().detach().numpy()
                default = layer_maps[DEFAULT][n].flatten().detach().numpy()
                positive = plain > 0
                values[name]["rank_correlation"].append(
                    float(spearmanr(plain, default).statistic)
                )
                values[name]["rank_correlation_where_positive"].append(
                    float(spearmanr(plain[positive], default[positive]).statistic)
                    if positive.sum() > 2
                    else float("nan")
                )
                values[name]["relevance_follows_evidence"].append(
                    pearson(r[n].detach(), evidence[n].detach())
                )
                values[name]["layercam_zero_share"].append(float(1 - positive.mean()))
        print(f"{len(images)} images", flush=True)
    settings = {
        "model": args.model,
        "normalization": args.normalization,
        "images": args.images,
        "start": args.start,
        "n_images": len(images),
        "layers": names,
        "default": DEFAULT,
        "script": "benchmarks/map_agreement.py",
    }
    record = {"settings": settings, "images": images, "targets": targets}
    record["values"] = values
    with open(args.out, "w") as f:
        json.dump(record, f)
    for name in names:
        means = {m: float(np.nanmean(v)) for m, v in values[name].items()}
        print(name, " ".join(f"{m} {v:.3f}" for m, v in means.items()))


if __name__ == "__main__":
    main()
