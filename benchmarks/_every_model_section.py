"""The results page's section on every shipped model, both input regimes, and
the class sensitivity of the masks.

Read by ``benchmarks/results_page.py``. Runs (``benchmarks/results/``), all
``benchmarks/masks_screen.py`` at step 7168 (screens: few photos, a coarse
step), the labelled class:

* ``masks_lite1_own_a_7168.json``: EfficientNet-Lite1, its own inputs
  ([-1, 1]), the first 16 photos of ``imagenet-samples`` (the choice);
* ``masks_lite1_own_b_7168.json``: the same on the first 16 photos of
  ``imagenet-samples-b`` (the confirmation);
* ``masks_lite1_imagenet_a_7168.json``, ``masks_lite0_imagenet_a_7168.json``:
  ImageNet mean/std inputs, ``stage1`` to ``stage3``, the first 16 photos of
  ``imagenet-samples``;
* ``sanity_lite0_50_class.json``: class sensitivity on EfficientNet-Lite0,
  ``benchmarks/sanity_checks.py --granularity none``, 50 photos.
"""

import numpy as np
from _sign_aware_section import cell, load

PLAIN = "layercam"
COLUMNS = {
    "layercam+sign-aware": "sign-aware LayerCAM",
    "shallowcam": "default",
    "layercam+both-signs": "both-signs LayerCAM",
    "shallowcam+both-signs": "both-signs ShallowCam",
}
#: The screens, as the tables name them.
SCREENS = {
    "masks_lite1_own_a_7168": "EfficientNet-Lite1, own inputs, ``imagenet-samples`` (16 photos)",
    "masks_lite1_own_b_7168": "EfficientNet-Lite1, own inputs, ``imagenet-samples-b`` (16 photos)",
    "masks_lite1_imagenet_a_7168": "EfficientNet-Lite1, ImageNet mean/std inputs, ``imagenet-samples`` (16 photos)",
    "masks_lite0_imagenet_a_7168": "EfficientNet-Lite0, ImageNet mean/std inputs, ``imagenet-samples`` (16 photos)",
}  # fmt: skip
SANITY = "sanity_lite0_50_class"


def screen_rows(result) -> list[list[str]]:
    """Per layer: LayerCAM's overall score, each method's Δ to it, and the
    both-signs ShallowCam's Δ to the both-signs LayerCAM (what the relevance
    weights add to their mask)."""
    rows = []
    for layer in result.settings["layers"]:
        base = result.scores[PLAIN][layer]["overall"]
        row = [layer, f"{np.mean(base):.1f}"]
        row += [cell(result.scores[m][layer]["overall"], base) for m in COLUMNS]
        row.append(
            cell(
                result.scores["shallowcam+both-signs"][layer]["overall"],
                result.scores["layercam+both-signs"][layer]["overall"],
            )
        )
        rows.append(row)
    return rows


def sensitivity_rows(result: dict) -> list[list[str]]:
    """Per method: the mean rank correlation between the maps of the top and
    the least likely class, at each layer (lower: more class-sensitive)."""
    layers = list(result["settings"]["layers"])
    rows = []
    for method, per_layer in result["scores"].items():
        cells = []
        for layer in layers:
            values = np.array(
                [
                    np.nan if v is None else v
                    for v in per_layer[layer]["class_sensitivity_last"]
                ]
            )
            cells.append(f"{np.nanmean(values):+.2f}")
        rows.append([method, *cells])
    return rows


def section(rst_table) -> str:
    import json
    from pathlib import Path

    heads = [
        "layer",
        "LayerCAM",
        *(f"Δ {c}" for c in COLUMNS.values()),
        "Δ both-signs: weights",
    ]
    parts = []
    for name, title in SCREENS.items():
        result = load(name)
        parts.append(
            f"{title}, step {result.settings['step']}:\n\n{rst_table(heads, screen_rows(result))}"
        )
    sanity = json.loads(
        (Path(__file__).parent / "results" / f"{SANITY}.json").read_text()
    )
    layers = list(sanity["settings"]["layers"])
    sensitivity = rst_table(["method", *layers], sensitivity_rows(sanity))
    return "\n".join(parts), sensitivity, sanity["settings"]["n_images"]
