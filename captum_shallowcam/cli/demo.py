"""``demo``: LayerCam and LayerShallowCam on the bundled photos."""

import argparse
import textwrap
import time
from pathlib import Path

from captum_shallowcam.cli import maps
from captum_shallowcam.cli._common import (
    PROG,
    UsageError,
    check_step,
    load,
    prepare_out,
)
from captum_shallowcam.experiments.images import sample_images

HELP = "LayerCam vs LayerShallowCam on the bundled photos"


def add_parser(commands) -> argparse.ArgumentParser:
    p = commands.add_parser(
        "demo",
        help=HELP,
        description="LayerCam and LayerShallowCam at the seven stages of EfficientNet-Lite0 "
        "on the three bundled photos, each explained for its label; prints the "
        "deletion/insertion scores and writes a figure into --out.",
    )
    p.add_argument(
        "--out", default="shallowcam_demo",
        help="output folder; the figure is OUT/layer_maps.png (default: shallowcam_demo)",
    )  # fmt: skip
    p.add_argument(
        "--step", type=int, default=7168,
        help="deletion/insertion step in pixels (default: 7168; the paper's, 224, is "
        "about 30 times slower)",
    )  # fmt: skip
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> None:
    start = time.time()
    check_step(args.step)
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(
            f"--out {out_dir} is a file; give a folder (default: shallowcam_demo)"
        )
    figure = out_dir / "layer_maps.png"
    prepare_out(figure, "figure")
    loaded = load("efficientnet-lite0")
    layers = dict(loaded.layers)
    print(f"EfficientNet-Lite0 (ImageNet weights), layers: {', '.join(layers)}")
    scores = maps._explain_and_score(
        loaded, sample_images(), layers, ["layercam", "shallowcam"], args.step, figure,
        target_source="the photo's label",
    )  # fmt: skip
    print("\n" + textwrap.fill(_what_few_photos_show(scores, "shallowcam", "layercam")))
    print(f"\ndone in {time.time() - start:.0f} s")


def _what_few_photos_show(
    scores: dict[str, list[list[float]]], method: str, baseline: str
) -> str:
    """The demo's caveat: how often ``method`` leads ``baseline`` here, and why
    that is no ranking."""
    diffs = [
        a - b
        for per_layer, base_layer in zip(scores[method], scores[baseline])
        for a, b in zip(per_layer, base_layer)
    ]
    ahead = sum(d > 0 for d in diffs)
    n_photos = len(scores[method][0])
    return (
        f"what {n_photos} photos can show: {method} is ahead of {baseline} in {ahead} of "
        f"{len(diffs)} (photo, layer) pairs here, with differences from "
        f"{min(diffs):+.1f} to {max(diffs):+.1f} points. From photo to photo such "
        "differences change sign, so a handful of photos cannot rank two methods; "
        "they show what the maps look like. The ranking comes from paired "
        "comparisons on 200 photos with 95% intervals (the README's table and "
        "docs/results.rst); run it on your own photos with "
        f"'{PROG} benchmark --images FOLDER'."
    )
