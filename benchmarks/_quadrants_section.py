"""The results page's paragraph on why the sign-aware mask loses where it loses:
the sign quadrants of gradient times activation (``benchmarks/sign_quadrants.py``).

Read by ``benchmarks/results_page.py``. Runs (``benchmarks/results/``), the
first 16 photos of ``imagenet-samples``, step 7168, the labelled class:
``sign_quadrants_lite0_own_a_7168.json``, ``sign_quadrants_lite1_own_a_7168.json``
(``stage2`` and ``stage7``) and ``sign_quadrants_lite1_imagenet_a_7168.json``
(``stage2``, ImageNet mean/std inputs).
"""

import json
from functools import cache

import numpy as np
from _page import render
from _sign_aware_section import RUNS, cell

from captum_shallowcam.experiments import paired_difference

QUADRANT_RUNS = {
    "lite0": ("sign_quadrants_lite0_own_a_7168", "Lite0"),
    "lite1": ("sign_quadrants_lite1_own_a_7168", "Lite1"),
    "lite1in": ("sign_quadrants_lite1_imagenet_a_7168", "Lite1, ImageNet inputs"),
}
QUADRANTS = ("a+g+", "a-g+", "a-g-", "a+g-")
MAPS = {
    "sign-aware": "sign-aware",
    "subtraction": "LayerCAM's subtracted part",
    "negative-evidence": "negative evidence",
    "both-signs": "both-signs",
    "gradient-x-activation": "G·A with its sign",
    "random": "random map",
}


@cache
def _load(run: str) -> dict:
    return json.loads((RUNS / f"{run}.json").read_text())


def _mean(values) -> float:
    return float(np.mean(values))


def share_rows() -> list[list[str]]:
    """Per run and layer: negative activations, and each quadrant's share of
    ``|G A|`` and of the CLRP relevance (as "|GA| / R")."""
    rows = []
    for run, label in QUADRANT_RUNS.values():
        for layer, shares in _load(run)["shares"].items():
            row = [
                f"{label} ``{layer}``",
                f"{_mean(shares['negative activations']):.2f}",
            ]
            row += [
                f"{_mean(shares[f'|GA| {q}']):.2f} / {_mean(shares[f'R {q}']):.2f}"
                for q in QUADRANTS
            ]
            rows.append(row)
    return rows


def score_rows() -> list[list[str]]:
    """Per run and layer: LayerCAM's overall score and each map's Δ to it."""
    rows = []
    for run, label in QUADRANT_RUNS.values():
        scores = _load(run)["scores"]
        for layer, base in scores["layercam"].items():
            row = [f"{label} ``{layer}``", f"{_mean(base):.1f}"]
            row += [cell(scores[m][layer], base) for m in MAPS]
            rows.append(row)
    return rows


def _delta(key: str, method: str, layer: str = "stage2", baseline="layercam") -> str:
    scores = _load(QUADRANT_RUNS[key][0])["scores"]
    return cell(scores[method][layer], scores[baseline][layer])


def _counter_relevance(key: str, layer: str) -> str:
    """The share of the relevance on positions where ``G A < 0``."""
    shares = _load(QUADRANT_RUNS[key][0])["shares"][layer]
    return f"{_mean(shares['R a-g+']) + _mean(shares['R a+g-']):.2f}"


def _above_random(key: str, method: str, layer: str = "stage2") -> str:
    scores = _load(QUADRANT_RUNS[key][0])["scores"]
    diff = paired_difference(scores[method][layer], scores["random"][layer])[0]
    return f"{diff:.1f}"


def section(rst_table) -> str:
    """The paragraph, with its two tables."""
    shares = rst_table(
        ["layer", "negative activations", *(f"{q}: \\|GA\\| / R" for q in QUADRANTS)],
        share_rows(),
    )
    scores = rst_table(["layer", "LayerCAM", *(f"Δ {m}" for m in MAPS.values())],
                       score_rows())  # fmt: skip
    values = dict(
        shares_table=shares,
        scores_table=scores,
        n_photos=len(_load(QUADRANT_RUNS["lite1"][0])["images"]),
        **{
            f"{key}_{name}": _delta(key, method)
            for key in QUADRANT_RUNS
            for name, method in (
                ("sa", "sign-aware"),
                ("sub", "subtraction"),
                ("neg", "negative-evidence"),
            )  # fmt: skip
        },
        lite1_sub_above_random=_above_random("lite1", "subtraction"),
        lite1in_sub_above_random=_above_random("lite1in", "subtraction"),
        lite0_counter=_counter_relevance("lite0", "stage2"),
        lite1_counter=_counter_relevance("lite1", "stage2"),
        lite1_counter7=_counter_relevance("lite1", "stage7"),
    )
    return render("quadrants.rst", values)
