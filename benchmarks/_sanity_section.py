"""The results page's model randomization on 50 photos.

Read by ``benchmarks/results_page.py``. Runs (``benchmarks/results/``), the
first 50 photos of ``imagenet-samples``, EfficientNet-Lite0, ``stage1``,
``stage2``, ``stage4``, ``stage7``, the rank correlation between each method's
map for the trained network and for the randomized one:

* ``sanity_lite0_a_50_cascade.json`` (and ``.png``): ``python -m
  captum_shallowcam sanity --granularity block --other none``, Adebayo et al.'s
  cascade from the output down, 19 steps;
* ``sanity_lite0_a_16_whole_perturbation.json``: ``--granularity whole
  --other last`` for the perturbation CAMs of the family (and LayerCAM and the
  default beside them) on the first 16 photos at ``stage1`` and ``stage2``;
* ``sanity_lite0_a_50_whole.json``: ``--granularity whole``, every module with
  parameters randomized in one step (another draw of the random weights), with
  the split reading ``shallowcam+split+mass`` too;
* ``sanity_lite0_a_50_whole_gated.json``: the same draw (seed 0) rerun with
  LayerCAM, the split reading and the split-gated default, checked to give
  the first two the stored values.
"""

import json
from functools import cache

import numpy as np
from _claim_section import GATED, SPLIT
from _sign_aware_section import RUNS, listed

CASCADE = "sanity_lite0_a_50_cascade"
PERTURBATION = "sanity_lite0_a_16_whole_perturbation"
WHOLE = "sanity_lite0_a_50_whole"
WHOLE_GATED = "sanity_lite0_a_50_whole_gated"
PLAIN, SIGN_AWARE = "layercam", "layercam+sign-aware"
#: The default when these runs were made (``shallowcam`` then; renamed since).
DEFAULT = "shallowcam+sign-aware+geometric"


def as_run(methods) -> str:
    """``methods`` of a run of the geometric-default era as ``--methods`` was
    given (that default was ``shallowcam`` then)."""
    return ",".join("shallowcam" if m == DEFAULT else m for m in methods)


@cache
def _load(run: str) -> dict:
    return json.loads((RUNS / f"{run}.json").read_text())


def _end_points(rows: list) -> np.ndarray:
    """The correlation after the last step, per photo (NaN: a constant map)."""
    return np.array([np.nan if r[-1] is None else r[-1] for r in rows], dtype=float)


def _mean(run: dict, method: str, layer: str) -> float:
    return float(np.nanmean(_end_points(run["scores"][method][layer]["spearman"])))


def _means(run: dict, method: str) -> str:
    return ", ".join(
        f"{_mean(run, method, lay):.2f}" for lay in run["settings"]["layers"]
    )


def end_rows(run: dict) -> list[list[str]]:
    """Per method: the mean rank correlation at each layer once everything is
    randomized, with the number of photos whose randomized map was constant
    (no ranking) where there are any."""
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


def _verdict(run: dict, method: str = DEFAULT) -> tuple[list[str], str]:
    layers = list(run["settings"]["layers"])
    kept = [lay for lay in layers if _mean(run, method, lay) > _mean(run, PLAIN, lay)]
    verdict = (
        "it loses its structure more slowly than LayerCAM there, so the issue's "
        "target (at least as fast as LayerCAM) is not met"
        if kept
        else "it loses its structure at least as fast as LayerCAM at every stage, "
        "the issue's target"
    )
    return kept, verdict


def with_rerun(stored: dict, name: str) -> dict:
    """``stored`` (a ``sanity`` run) with the methods of the later run ``name``
    that it lacks; refused unless ``name`` is on the same photos and gives the
    stored values (on the fields it has) for at least one method and every
    method both hold."""
    run = _load(name)
    shared = [m for m in run["scores"] if m in stored["scores"]]
    if run["images"] != stored["images"] or not shared:
        raise ValueError(f"{name} is not a run on the same photos")
    for method in shared:
        if run["scores"][method] != {
            lay: {k: v for k, v in fields.items() if k in run["scores"][method][lay]}
            for lay, fields in stored["scores"][method].items()
        }:
            raise ValueError(f"{name} does not reproduce {method}")
    new = [m for m in run["scores"] if m not in stored["scores"]]
    settings = dict(stored["settings"], methods=[*stored["settings"]["methods"], *new])
    scores = {**stored["scores"], **{m: run["scores"][m] for m in new}}
    return dict(stored, settings=settings, scores=scores)


@cache
def whole_run() -> dict:
    """The one-step draw with the split-gated default added from its rerun."""
    return with_rerun(_load(WHOLE), WHOLE_GATED)


def randomization_values(rst_table) -> dict:
    """The cascade's table and figure, the one-step draw's table, and the
    comparison of the default with LayerCAM."""
    cascade, whole = _load(CASCADE), whole_run()
    layers = list(cascade["settings"]["layers"])
    kept, verdict = _verdict(cascade)
    return dict(
        cascade_run=CASCADE,
        n_cascade=len(cascade["images"]),
        n_cascade_steps=len(cascade["steps"]),
        cascade_methods=as_run(cascade["settings"]["methods"]),
        cascade_table=rst_table(["method", *layers], end_rows(cascade)),
        n_layers=len(layers),
        default_keeps=listed(kept),
        n_default_keeps=len(kept),
        verdict=verdict,
        end_default=_means(cascade, DEFAULT),
        end_sign_aware=_means(cascade, SIGN_AWARE),
        whole_run=WHOLE,
        whole_gated_run=WHOLE_GATED,
        n_whole=len(whole["images"]),
        whole_table=rst_table(
            ["method", *whole["settings"]["layers"]], end_rows(whole)
        ),
        n_whole_default_keeps=len(_verdict(whole)[0]),
        n_whole_split_keeps=len(_verdict(whole, SPLIT)[0]),
        n_whole_gated_keeps=len(_verdict(whole, GATED)[0]),
    )


def randomization_line() -> str:
    """The README's line on model randomization (markdown)."""
    run, whole = _load(CASCADE), whole_run()
    _, verdict = _verdict(whole, GATED)
    return (
        f"**Model randomization** ({len(whole['images'])} photos of "
        "EfficientNet-Lite0): once every module with parameters is randomized, "
        f"the default's maps keep a mean rank correlation of {_means(whole, GATED)} "
        f"with the trained network's at {', '.join(whole['settings']['layers'])} "
        f"(LayerCAM: {_means(whole, PLAIN)}; the split reading it replaced: "
        f"{_means(whole, SPLIT)}); {verdict}. In Adebayo et al.'s "
        "cascade, block by block from the output down, the geometric default it "
        f"replaced ends at {_means(run, DEFAULT)} (LayerCAM: {_means(run, PLAIN)}; "
        f"the sign-aware LayerCAM: {_means(run, SIGN_AWARE)})."
    )


def perturbation_rows(run: dict) -> list[list[str]]:
    """Per method: the end point of the randomization and the class
    sensitivity (top against least likely class), per layer."""
    layers = list(run["settings"]["layers"])
    rows = []
    for method, cells in zip(run["settings"]["methods"], end_rows(run)):
        sensitivity = [
            np.nanmean(
                [np.nan if v is None else v for v in
                 run["scores"][method][lay]["class_sensitivity_last"]]
            )
            for lay in layers
        ]  # fmt: skip
        rows.append([*cells, *(f"{v:.2f}" for v in sensitivity)])
    return rows


def perturbation_values(rst_table) -> dict:
    run = _load(PERTURBATION)
    layers = list(run["settings"]["layers"])
    heads = ["method", *(f"randomized, {lay}" for lay in layers),
             *(f"class, {lay}" for lay in layers)]  # fmt: skip
    return dict(
        perturbation_run=PERTURBATION,
        n_perturbation=len(run["images"]),
        perturbation_methods=as_run(run["settings"]["methods"]),
        perturbation_table=rst_table(heads, perturbation_rows(run)),
    )
