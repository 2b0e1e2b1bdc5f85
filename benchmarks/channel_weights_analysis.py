"""Why does re-weighting LayerCAM's channels by relevance lose? A diagnostic.

For each layer, on real images and their labels, prints:

* the share of channels with negative relevance weight (alpha_k <= 0);
* the effective number of channels that make up the map, exp(entropy) of each
  channel's share of the map's total mass, for LayerCam (equal weights) and for
  LayerShallowCam v1 with positive weights; a drop means the relevance puts the
  map on fewer channels;
* the Pearson correlation of the two maps, and the share of LayerCam's map mass
  that falls inside LayerShallowCam's top-10% pixels.

Usage::

    python benchmarks/channel_weights_analysis.py --images ../shared/data/imagenet-samples --limit 20
"""

import argparse

import torch

from captum_shallowcam import LayerCam
from captum_shallowcam.attr import compute_layer_passes, spatial_mask
from captum_shallowcam.experiments.images import read_image_folder
from captum_shallowcam.models import load_model


def effective_channels(contributions: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of the channels' shares of the positive map mass (N,)."""
    mass = contributions.clamp(min=0).sum(dim=(2, 3))
    share = mass / mass.sum(1, keepdim=True).clamp_min(1e-30)
    entropy = -(share * share.clamp_min(1e-30).log()).sum(1)
    return entropy.exp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument(
        "--initial-relevance",
        default="contrastive",
        choices=["contrastive", "target", "clrp"],
    )
    args = parser.parse_args()
    loaded = load_model("efficientnet-lite0")
    items = read_image_folder(args.images)[: args.limit]
    x = torch.stack([loaded.preprocess(i.load()) for i in items])
    targets = torch.tensor([i.target for i in items])
    layers = list(loaded.layers.values())
    names = list(loaded.layers)
    # The relevance and the gradient at each layer, from the passes the
    # methods are built from.
    passes = compute_layer_passes(
        loaded.model,
        layers,
        x,
        target=targets,
        initial_relevance=args.initial_relevance,
        check_conservation=False,
    )
    layer_cam_maps = LayerCam(loaded.model, layers).attribute(x, target=targets)
    print(
        f"{len(items)} images, EfficientNet-Lite0, {args.initial_relevance} relevance, z+ rules"
    )
    print(
        f"{'layer':<8}{'K':>6}{'alpha<=0':>10}{'eff. ch. LayerCam':>19}"
        f"{'eff. ch. v1+pos':>17}{'corr':>7}{'LayerCam mass in top10%':>25}"
    )
    for name, a, g, r, lc in zip(
        names, passes.activations, passes.gradients, passes.relevances, layer_cam_maps
    ):
        alpha = r.sum(dim=(2, 3), keepdim=True)
        mask = spatial_mask(a, g)
        shallow = torch.relu((alpha.clamp(min=0) * mask).sum(1, keepdim=True))
        negative = (alpha <= 0).float().mean().item()
        eff_lc = effective_channels(mask).mean().item()
        eff_sc = effective_channels(alpha.clamp(min=0) * mask).mean().item()
        lc_flat, sc_flat = lc.flatten(1), shallow.flatten(1)
        corr = (
            torch.stack(
                [
                    torch.corrcoef(torch.stack([p, q]))[0, 1]
                    for p, q in zip(lc_flat, sc_flat)
                ]
            )
            .nanmean()
            .item()
        )
        top = sc_flat >= sc_flat.quantile(0.9, dim=1, keepdim=True)
        inside = (
            ((lc_flat * top).sum(1) / lc_flat.sum(1).clamp_min(1e-30)).mean().item()
        )
        print(
            f"{name:<8}{a.shape[1]:>6}{negative:>10.2f}{eff_lc:>19.1f}{eff_sc:>17.1f}"
            f"{corr:>7.2f}{inside:>25.2f}"
        )


if __name__ == "__main__":
    main()
