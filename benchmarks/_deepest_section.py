"""The results page's note on the one cell where the default is not ahead of
LayerCAM, EfficientNet-Lite1 ``stage7``: the CAM family at that cell, and how
far the default's map is from LayerCAM's at every stage of the three models.

Read by ``benchmarks/results_page.py`` (into the claim section). Runs
(``benchmarks/results/``), each model's own inputs, the labelled class:

* ``family_lite1_{a,b}_7168_stage7.json``: ``python -m captum_shallowcam
  benchmark --model efficientnet-lite1 --layers stage7 --step 7168
  --channels-last --methods
  layercam,shallowcam,gradcam,gradcam++,groupcam,integrated-gradcam``, in
  runs of 25 to 50 photos merged per set, joined by photo with the claim section's Lite1 runs
  of the same photos (``_claim_section.joined`` checks LayerCAM; here the
  family run's ``shallowcam`` is checked against the default's own run);
* ``agreement_lite{0,1,2}_{a,b}_50.json``: ``benchmarks/map_agreement.py
  --limit 50`` on each photo set.
"""

import json
from functools import cache

import numpy as np
from _claim_section import (
    DEFAULT,
    LITE1,
    MODELS,
    PLAIN,
    _short,
    joined,
    set_name,
    stages_ahead,
)
from _family_section import family_rows, family_says, ranked
from _sign_aware_section import RUNS, ahead, layer_cell, load

from captum_shallowcam.experiments import merge_results

LAYER = "stage7"
#: The family run's name for LayerShallowCam's default.
REGISTRY_DEFAULT = "shallowcam"
#: Per photo set: the family run, then the claim section's runs of Lite1 on
#: the same photos (LayerCAM and the default).
FAMILY_LITE1 = [
    ("family_lite1_a_7168_stage7", *MODELS[LITE1][1][0]),
    ("family_lite1_b_7168_stage7", *MODELS[LITE1][1][1]),
]
#: Per model: its short name and the two photo sets' agreement runs.
AGREEMENT_RUNS = {
    f"Lite{i}": (f"agreement_lite{i}_a_50", f"agreement_lite{i}_b_50") for i in range(3)
}
MEASURES = {
    "rank_correlation": "ρ(default, LayerCAM)",
    "rank_correlation_where_positive": "ρ where LayerCAM > 0",
    "relevance_follows_evidence": "r(R, ReLU(G·A))",
    "layercam_zero_share": "LayerCAM = 0",
}
#: What lies above ``stage7`` in EfficientNet-Lite0, Lite1 and Lite2.
HEAD = "a 1×1 convolution, BatchNorm, ReLU6, global pooling and the classifier"
#: The measures that the reading says are highest at ``stage7`` on every
#: model, and the one it says is lowest there.
HIGHEST = (
    "rank_correlation",
    "rank_correlation_where_positive",
    "relevance_follows_evidence",
)
LOWEST = "layercam_zero_share"


def _default_agreement(result) -> float:
    """The largest difference, on one photo, between the family run's
    ``shallowcam`` and the default's own run (refused above 1 point)."""
    a = np.array(result.scores[REGISTRY_DEFAULT][LAYER]["overall"])
    b = np.array(result.scores[DEFAULT][LAYER]["overall"])
    worst = float(np.abs(a - b).max())
    if worst > 1.0:
        raise ValueError(
            f"the family run's {REGISTRY_DEFAULT} differs from {DEFAULT} by "
            f"{worst:.2f} points on a photo"
        )
    return worst


@cache
def family_sets() -> tuple:
    """Per photo set: the family run joined with the claim section's runs,
    family methods only (the default under its stored name)."""
    runs = []
    for group in FAMILY_LITE1:
        result = joined(group, [LAYER], on_first=True)
        worst = _default_agreement(result)
        methods = [m for m in result.scores if m in _family_methods()]
        result.scores = {
            (DEFAULT if m == REGISTRY_DEFAULT else m): result.scores[m] for m in methods
        }
        result.settings = dict(result.settings, default_agreement=worst)
        runs.append(result)
    return tuple(runs)


@cache
def _family_methods() -> tuple[str, ...]:
    """The methods of the first family run, as stored."""
    return tuple(load(FAMILY_LITE1[0][0]).scores)


@cache
def family_run():
    """Both photo sets' family runs, joined."""
    return merge_results(list(family_sets()))


@cache
def _record(name: str) -> dict:
    """The stored agreement run ``name``."""
    return json.loads((RUNS / f"{name}.json").read_text())


def _agreement(model: str) -> dict[str, dict[str, list[float]]]:
    """Per stage and measure, the values of both photo sets of ``model``."""
    out: dict[str, dict[str, list[float]]] = {}
    for name in AGREEMENT_RUNS[model]:
        record = _record(name)
        for stage, measures in record["values"].items():
            for measure, values in measures.items():
                out.setdefault(stage, {}).setdefault(measure, []).extend(values)
    return out


@cache
def agreement() -> dict:
    """Per model, stage and measure: the mean over both photo sets."""
    return {
        model: {
            stage: {m: float(np.nanmean(v)) for m, v in measures.items()}
            for stage, measures in _agreement(model).items()
        }
        for model in AGREEMENT_RUNS
    }


@cache
def family_ahead_of_layercam() -> tuple[str, ...]:
    """The family's methods ahead of LayerCAM at Lite1 ``stage7`` (interval above 0)."""
    run = family_run()
    return tuple(
        m for m in run.scores if m != PLAIN and LAYER in ahead(run, m, PLAIN)[0]
    )


def _span(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f} to {high:.2f}"


def _at(measure: str, deepest: bool) -> list[float]:
    """The means of ``measure`` over the three models at ``stage7``
    (``deepest``) or at every other stage."""
    return [
        v[measure]
        for stages in agreement().values()
        for stage, v in stages.items()
        if (stage == LAYER) == deepest
    ]


def agreement_says() -> str:
    """The deepest stage against the others, per measure, over the three models."""
    return "; ".join(
        f"{label} {_span(_at(measure, True))} at ``{LAYER}``, "
        f"{_span(_at(measure, False))} at the other stages"
        for measure, label in MEASURES.items()
    )


def agreement_rows() -> list[list[str]]:
    return [
        [model, stage] + [f"{values[m]:.2f}" for m in MEASURES]
        for model, stages in agreement().items()
        for stage, values in stages.items()
    ]


def values(rst_table) -> dict:
    """The template values of ``page/deepest.rst``."""
    run = family_run()
    sets = family_sets()
    photos = " and ".join(f"the {len(r.images)} of ``{set_name(r)}``" for r in sets)
    n_agreement = {
        len(_record(n)["images"]) for runs in AGREEMENT_RUNS.values() for n in runs
    }
    return dict(
        family_photos=photos,
        family_step=run.settings["step"],
        family_methods=",".join(_family_methods()),
        family_runs=", ".join(f"``{g[0]}.json``" for g in FAMILY_LITE1),
        default_agreement=f"{max(r.settings['default_agreement'] for r in sets):.2f}",
        family_says=family_says(run),
        family_ahead=", ".join(family_ahead_of_layercam()) or "none",
        family_default=layer_cell(run, DEFAULT, PLAIN, LAYER),
        family_table=rst_table(
            ["layer", "method", "overall", "rank", "Δ default vs method"],
            family_rows(run),
        ),
        agreement_photos=", ".join(str(n) for n in sorted(n_agreement)),
        agreement_runs=", ".join(
            f"``{n}.json``" for runs in AGREEMENT_RUNS.values() for n in runs
        ),
        agreement_table=rst_table(
            ["model", "stage", *MEASURES.values()], agreement_rows()
        ),
        agreement_says=agreement_says(),
        reading=reading(),
    )


def reading() -> str:
    """The page's reading of the two looks; refused (ValueError) where the
    numbers stop bearing it out, so that the prose cannot outlive them."""
    for model, stages in agreement().items():
        for measure, sign in [(m, 1) for m in HIGHEST] + [(LOWEST, -1)]:
            deepest = sign * stages[LAYER][measure]
            if any(
                sign * v[measure] >= deepest for s, v in stages.items() if s != LAYER
            ):
                raise ValueError(
                    f"{model}: {measure} is not {'highest' if sign > 0 else 'lowest'} "
                    f"at {LAYER}; rewrite the reading in _deepest_section.reading"
                )
    ahead_models = [_short(m) for m in MODELS if LAYER in stages_ahead(m)]
    family_ahead = family_ahead_of_layercam()
    return (
        f"A reading of these numbers, not a proof: at ``{LAYER}`` only {HEAD} "
        "lie above the layer. There, on every model, LayerCAM's ReLU cuts fewer "
        "positions, the relevance follows the evidence more closely, and the "
        "default's map orders the positions more as LayerCAM's does, than at any "
        "other stage: the split mask and the relevance weights have less "
        "to change. What they change gives an interval above 0 on "
        f"{' and '.join(ahead_models) or 'no model'}; on Lite1 it does not, and "
        + (
            "no method of the family is ahead of LayerCAM there either."
            if not family_ahead
            else f"of the family {', '.join(family_ahead)} is ahead of LayerCAM there."
        )
    )


def readme_line() -> str:
    """The README's sentence on the cell (markdown)."""
    run = family_run()
    _, order = ranked(run, LAYER)
    others = [m for m in run.scores if m not in (PLAIN, DEFAULT)]
    family_ahead = family_ahead_of_layercam()
    return (
        f"At Lite1 `{LAYER}`, the one cell where the default is not ahead, "
        + (
            "no method of the CAM family is ahead of LayerCAM either"
            if not family_ahead
            else f"of the CAM family {', '.join(family_ahead)} is ahead of LayerCAM"
        )
        + f" ({', '.join(others)}; {len(run.images)} photos, step "
        f"{run.settings['step']}; the default ranks {order.index(DEFAULT) + 1} of "
        f"{len(order)}), and at `{LAYER}` of every model the default's map orders "
        "the positions much as LayerCAM's does (mean rank correlation "
        f"{_span(_at('rank_correlation', True))}, against "
        f"{_span(_at('rank_correlation', False))} at the other stages, "
        f"{_span(_at('rank_correlation_where_positive', False))} there on the "
        "positions LayerCAM's ReLU keeps)."
    )
