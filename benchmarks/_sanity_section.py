"""The results page's table of the randomization end point on 50 photos.

Read by ``benchmarks/results_page.py``. Run (``benchmarks/results/``):
``sanity_lite0_a_50_whole.json``, ``python -m captum_shallowcam sanity
--granularity whole --other none`` on the first 50 photos of
``imagenet-samples``: the rank correlation between each method's map for the
trained EfficientNet-Lite0 and for the same network with every module with
parameters randomized at once (the end point of Adebayo et al.'s cascade).
"""

import json

import numpy as np
from _sign_aware_section import RUNS, listed

WHOLE = "sanity_lite0_a_50_whole"
PLAIN, DEFAULT, SIGN_AWARE = "layercam", "shallowcam", "layercam+sign-aware"


def _end_points(rows: list) -> np.ndarray:
    """The correlation after the last step, per photo (NaN: a constant map)."""
    return np.array([np.nan if r[-1] is None else r[-1] for r in rows], dtype=float)


def _mean(run: dict, method: str, layer: str) -> float:
    return float(np.nanmean(_end_points(run["scores"][method][layer]["spearman"])))


def whole_rows(run: dict) -> list[list[str]]:
    """Per method: the mean rank correlation at each layer, with the number of
    photos whose randomized map was constant (no ranking) where there are any."""
    rows = []
    for method in run["settings"]["methods"]:
        row = [method]
        for layer in run["settings"]["layers"]:
            ends = _end_points(run["scores"][method][layer]["spearman"])
            constant = int(np.isnan(ends).sum())
            text = f"{np.nanmean(ends):.2f}" if constant < len(ends) else "—"
            row.append(text + (f" ({constant} constant)" if constant else ""))
        rows.append(row)
    return rows


def whole_values(rst_table) -> dict:
    """The table and the comparison of the default with LayerCAM."""
    run = json.loads((RUNS / f"{WHOLE}.json").read_text())
    layers = list(run["settings"]["layers"])
    kept = [lay for lay in layers if _mean(run, DEFAULT, lay) > _mean(run, PLAIN, lay)]
    verdict = (
        "it loses its structure more slowly than LayerCAM there, so the issue's "
        "target (at least as fast as LayerCAM) is not met"
        if kept
        else "it loses its structure at least as fast as LayerCAM at every stage, "
        "the issue's target"
    )
    return dict(
        whole_verdict=verdict,
        whole_default=", ".join(f"{_mean(run, DEFAULT, lay):.2f}" for lay in layers),
        whole_sign_aware=", ".join(
            f"{_mean(run, SIGN_AWARE, lay):.2f}" for lay in layers
        ),
        whole_run=WHOLE,
        n_whole=len(run["images"]),
        whole_table=rst_table(["method", *layers], whole_rows(run)),
        n_whole_layers=len(layers),
        whole_default_keeps=listed(kept),
        n_whole_default_keeps=len(kept),
    )


def whole_line() -> str:
    """The README's line on the randomization end point (markdown)."""
    values = whole_values(lambda heads, rows: "")
    run = json.loads((RUNS / f"{WHOLE}.json").read_text())
    layercam = ", ".join(
        f"{_mean(run, PLAIN, lay):.2f}" for lay in run["settings"]["layers"]
    )
    return (
        f"**Model randomization** (Adebayo et al.; {values['n_whole']} photos, every "
        "module with parameters randomized at once): the default's maps keep a mean "
        f"rank correlation of {values['whole_default']} with the trained network's at "
        f"{', '.join(run['settings']['layers'])} (LayerCAM: {layercam}; the "
        f"sign-aware LayerCAM: {values['whole_sign_aware']}); "
        f"{values['whole_verdict']}."
    )
