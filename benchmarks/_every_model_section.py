"""The results page's section on every shipped model, both input regimes, and
the class sensitivity of the masks.

Read by ``benchmarks/results_page.py``. Runs (``benchmarks/results/``), all
``benchmarks/masks_screen.py`` at step 7168 (screens: few photos, a coarse
step), the labelled class:

* ``masks_lite1_own_a_7168.json``: EfficientNet-Lite1, its own inputs
  ([-1, 1]), the first 16 photos of ``imagenet-samples`` (the choice);
* ``masks_lite1_own_b_1-100_7168.json``: the same on the 100 photos of
  ``imagenet-samples-b`` (the confirmation; five of the seven readings);
* ``masks_lite1_imagenet_a_7168.json``, ``masks_lite0_imagenet_a_7168.json``:
  ImageNet mean/std inputs, ``stage1`` to ``stage3``, the first 16 photos of
  ``imagenet-samples``;
* ``sanity_lite0_50_class.json``: class sensitivity on EfficientNet-Lite0,
  ``benchmarks/sanity_checks.py --granularity none``, 50 photos; the candidate
  readings of the screens on the same photos (``sanity_lite0_50_class_candidates.json``)
  and the split-gated default (``sanity_lite0_50_class_gated.json``), both
  ``python -m captum_shallowcam sanity --granularity none``.
"""

import json

import numpy as np
from _claim_section import DEFAULT
from _family_section import readme_line as family_readme_line
from _sanity_section import randomization_line, with_rerun
from _sign_aware_section import RUNS, ahead, cell, delta, layer_cell, listed, load

PLAIN = "layercam"
#: The default when these runs were made (``shallowcam`` then; renamed since).
GEOMETRIC = "shallowcam+sign-aware+geometric"
COLUMNS = {
    "layercam+sign-aware": "sign-aware LayerCAM",
    GEOMETRIC: "sign-aware geometric",
    "layercam+both-signs": "both-signs LayerCAM",
    "shallowcam+both-signs+geometric": "both-signs geometric",
    "shallowcam+both-signs+mass": "both-signs, mass weights",
    "shallowcam+split+mass": "split, mass weights",
}
#: Readings whose relevance weights are set against their own mask alone.
WEIGHTED = {
    "shallowcam+both-signs+geometric": "layercam+both-signs",
    "shallowcam+both-signs+mass": "layercam+both-signs",
    "shallowcam+split+mass": "layercam+both-signs",
}
#: The screens, as the tables name them.
SCREENS = {
    "masks_lite1_own_a_7168": "EfficientNet-Lite1, own inputs, ``imagenet-samples``",
    "masks_lite1_own_b_1-100_7168": "EfficientNet-Lite1, own inputs, ``imagenet-samples-b``",
    "masks_lite1_imagenet_a_7168": "EfficientNet-Lite1, ImageNet mean/std inputs, ``imagenet-samples``",
    "masks_lite0_imagenet_a_7168": "EfficientNet-Lite0, ImageNet mean/std inputs, ``imagenet-samples``",
    "masks_lite0_own_a_7168": "EfficientNet-Lite0, own inputs, ``imagenet-samples``",
    "masks_lite0_own_b_7168": "EfficientNet-Lite0, own inputs, ``imagenet-samples-b``",
    "masks_lite2_own_a_7168": "EfficientNet-Lite2, own inputs, ``imagenet-samples``",
    "masks_lite2_own_b_7168": "EfficientNet-Lite2, own inputs, ``imagenet-samples-b``",
}  # fmt: skip
SANITY = "sanity_lite0_50_class"
SANITY_CANDIDATES = "sanity_lite0_50_class_candidates"
SANITY_GATED = "sanity_lite0_50_class_gated"


def screen_rows(result) -> list[list[str]]:
    """Per layer: LayerCAM's overall score, each method's Δ to it, and the
    both-signs ShallowCam's Δ to the both-signs LayerCAM (what the relevance
    weights add to their mask)."""
    rows = []
    for layer in result.settings["layers"]:
        base = result.scores[PLAIN][layer]["overall"]
        row = [layer, f"{np.mean(base):.1f}"]
        row += [
            cell(result.scores[m][layer]["overall"], base)
            if m in result.scores
            else "—"
            for m in COLUMNS
        ]
        row += [
            cell(
                result.scores[m][layer]["overall"],
                result.scores[mask][layer]["overall"],
            )
            if m in result.scores and mask in result.scores
            else "—"
            for m, mask in WEIGHTED.items()
        ]
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


def _says(result) -> str:
    """What one screen shows, in numbers: where the default and the both-signs
    ShallowCam are ahead of LayerCAM and where not, and what the relevance
    weights add to the both-signs mask."""
    n, layers = len(result.images), result.settings["layers"]
    parts = []
    for method, label in (
        (GEOMETRIC, "The sign-aware geometric reading (the default then)"),
        (
            "shallowcam+both-signs+geometric",
            "The both-signs mask with geometric weights",
        ),
        ("shallowcam+both-signs+mass", "The both-signs mask with mass weights"),
        ("shallowcam+split+mass", "The split mask with mass weights (the default now)"),
    ):
        if method not in result.scores:
            continue
        up, down = ahead(result, method, PLAIN)
        not_ahead = [lay for lay in layers if lay not in up]
        where = "; ".join(
            f"``{lay}`` {layer_cell(result, method, PLAIN, lay)}" for lay in not_ahead
        )
        parts.append(
            f"{label} is ahead of LayerCAM at {len(up)} of {len(layers)} layers"
            + (f", behind at {listed(down)}" if down else "")
            + (f" (not ahead: {where})" if not_ahead else "")
            + "."
        )
    for method, mask in WEIGHTED.items():
        if method not in result.scores or mask not in result.scores:
            continue
        weights_ahead, weights_behind = ahead(result, method, mask)
        parts.append(
            f"The relevance weights of ``{method}`` are ahead of their own mask "
            f"alone at {listed(weights_ahead)}"
            + (f" and behind at {listed(weights_behind)}" if weights_behind else "")
            + "."
        )
    parts.append(f"({n} photos.)")
    return " ".join(parts)


CANDIDATE = "shallowcam+split+mass"


def _candidate_screens(own_only: bool = False):
    """``(title, result, {method: [paired Δ to LayerCAM per layer]})`` for the
    default and the candidate, per screen that has the candidate."""
    for name, title in SCREENS.items():
        result = load(name)
        if CANDIDATE not in result.scores:
            continue
        if own_only and result.settings["normalization"] != "own":
            continue
        yield (
            title,
            result,
            {
                method: [
                    delta(result, method, PLAIN, lay)
                    for lay in result.settings["layers"]
                ]
                for method in (GEOMETRIC, CANDIDATE)
            },
        )


def candidate_rows() -> list[list[str]]:
    """Per screen that has the candidate: for the default and the candidate,
    the layers with a mean Δ to LayerCAM above 0, the layers with the interval
    above 0, and the lowest mean Δ."""
    rows = []
    for title, result, deltas in _candidate_screens():
        for method, cells in deltas.items():
            rows.append(
                [
                    f"{title} ({len(result.images)})",
                    method,
                    f"{sum(d[0] > 0 for d in cells)} of {len(cells)}",
                    f"{sum(d[2] > 0 for d in cells)} of {len(cells)}",
                    f"{min(d[0] for d in cells):+.2f}",
                ]
            )
    return rows


def candidate_table(rst_table) -> str:
    return rst_table(
        [
            "screen (photos)",
            "method",
            "mean Δ > 0",
            "interval > 0",
            "lowest mean Δ",
        ],
        candidate_rows(),
    )


def section(rst_table) -> tuple[str, str, int]:
    """The screens (a table and a paragraph each) and the class-sensitivity table."""
    heads = [
        "layer",
        "LayerCAM",
        *(f"Δ {c}" for c in COLUMNS.values()),
        *(f"Δ {COLUMNS[m]} vs mask alone" for m in WEIGHTED),
    ]
    parts = []
    for name, title in SCREENS.items():
        result = load(name)
        parts.append(
            f"{title} ({len(result.images)} photos), step {result.settings['step']}:\n\n"
            f"{rst_table(heads, screen_rows(result))}\n{_says(result)}\n"
        )
    sanity = json.loads((RUNS / f"{SANITY}.json").read_text())
    layers = list(sanity["settings"]["layers"])
    rows = sensitivity_rows(sanity) + candidate_sensitivity_rows(sanity)
    sensitivity = rst_table(["method", *layers], rows)
    return "\n".join(parts), sensitivity, sanity["settings"]["n_images"]


def candidate_sensitivity_rows(sanity: dict) -> list[list[str]]:
    """The rows of the candidate readings and of the default from the
    ``sanity`` command's later runs (``python -m captum_shallowcam sanity
    --granularity none``) on the same photos, each checked against the values
    stored before it (:func:`_sanity_section.with_rerun`)."""
    known, rows = sanity, []
    for name in (SANITY_CANDIDATES, SANITY_GATED):
        merged = with_rerun(known, name)
        new = {m: v for m, v in merged["scores"].items() if m not in known["scores"]}
        rows += sensitivity_rows({"settings": sanity["settings"], "scores": new})
        known = merged
    return rows


def less_sensitive_than_layercam(method: str, run: str = SANITY) -> list[str]:
    """The layers where ``method``'s maps for the top and the last class agree
    more than LayerCAM's (it is less class-sensitive there), in ``run``."""
    sanity = json.loads((RUNS / f"{run}.json").read_text())
    scores = sanity["scores"]

    def mean(m, layer):
        values = scores[m][layer]["class_sensitivity_last"]
        return float(np.nanmean([np.nan if v is None else v for v in values]))

    return [
        lay
        for lay in sanity["settings"]["layers"]
        if mean(method, lay) > mean(PLAIN, lay)
    ]


def largest_screen_values() -> dict:
    """The screen with the most photos: how many layers the default and the
    candidate are ahead of LayerCAM at, and the candidate's weights ahead of
    their own mask alone (intervals above 0)."""
    name = max(SCREENS, key=lambda n: len(load(n).images))
    result = load(name)
    return dict(
        largest_title=SCREENS[name],
        largest_n=len(result.images),
        largest_note="none of them used in the choice"
        if str(result.settings["images"]).rstrip("/").endswith("-b")
        else "the set the choice was made on",
        largest_layers=len(result.settings["layers"]),
        largest_default=len(ahead(result, GEOMETRIC, PLAIN)[0]),
        largest_candidate=len(ahead(result, CANDIDATE, PLAIN)[0]),
        largest_weights=listed(ahead(result, CANDIDATE, WEIGHTED[CANDIDATE])[0]),
    )


def screen_photos() -> str:
    """The fewest and the most photos of the screens, as "16 to 24"."""
    counts = [len(load(name).images) for name in SCREENS]
    low, high = min(counts), max(counts)
    return f"{low}" if low == high else f"{low} to {high}"


def readme_lines() -> str:
    """The README's lines on the screens and on class sensitivity (markdown)."""
    lines = [
        f"**The screens** ({screen_photos()} photos at step 7168, "
        "`benchmarks/masks_screen.py`; own and ImageNet mean/std inputs), on where "
        "the geometric default, the split reading and the other readings are and "
        "are not ahead of LayerCAM:"
    ]
    for name, title in SCREENS.items():
        result = load(name)
        says = _says(result).split(" The relevance weights")[0]
        n = len(result.images)
        lines.append(
            f"- {title.replace('``', '`')} ({n} photos): {says.replace('``', '`')}"
        )
    lines.append(f"\n{family_readme_line()}")
    less = less_sensitive_than_layercam(DEFAULT, SANITY_GATED)
    less_split = less_sensitive_than_layercam(CANDIDATE, SANITY_CANDIDATES)
    less_geometric = less_sensitive_than_layercam(GEOMETRIC)
    lines.append(
        f"\n**Class sensitivity**: the default's maps for the predicted and the least "
        f"likely class agree more than LayerCAM's at {len(less)} of 7 stages of "
        "EfficientNet-Lite0 (50 photos; the split reading it replaced: "
        f"{len(less_split)} of 7; the geometric default before it: "
        f"{len(less_geometric)} of 7): its deletion/insertion gain comes with maps "
        "that depend less on the class. Details in "
        "[docs/results.rst](docs/results.rst)."
    )
    lines.append(f"\n{randomization_line()}\n\n")
    return "\n".join(lines)
