"""The results page's paragraph on the second rule for the relevance-carrying
subtraction (``diagnostic:quadrant-mass`` of ``benchmarks/masks_screen.py``):
its runs on every stage of the three models and with ImageNet inputs, against
LayerCAM, the default and the mask-only LayerCAMs on the same photos, and
which of the rule's conditions hold.

Read by ``benchmarks/results_page.py``. Runs (``benchmarks/results/``): the
Lite1 runs of ``_subtraction_section`` that hold the map, then ``RUNS`` in the
order made; each file's settings give its model, photos, input regime and
layers. Each is joined by photo with the claim section's run of the same
model, stage, photo set and input regime.
"""

from functools import cache

import numpy as np
from _claim_section import (
    DEFAULT,
    IMAGENET,
    MODELS,
    PLAIN,
    STAGES,
    _fine_run,
    _masks_beaten,
    _renamed,
    _same_photos,
    _short,
    joined,
    set_name,
    set_run,
    speed_ab_runs,
)
from _sanity_section import _end_points, _load
from _sign_aware_section import delta, load, shown
from _subtraction_section import RUNS_A, RUNS_B

from captum_shallowcam.experiments import EvaluationResult, merge_results

METHOD = "diagnostic:quadrant-mass"
#: The same map as the package's option, in the sanity runs.
SUBTRACTED = "shallowcam+split-subtracted+mass"
#: The runs made for the second rule, in the order made.
RUNS = (
    "quadrant_mass_lite1_stage6_b_1792",
    "quadrant_mass_lite2_stage6-7_a_1792",
    "quadrant_mass_lite1_imagenet_a_7168",
    "quadrant_mass_lite1_stage5_a_1792",
    "quadrant_mass_lite2_stage6-7_b_1792",
    "quadrant_mass_lite1_stage5_b_1792",
    "quadrant_mass_lite0_imagenet_a_7168",
    "quadrant_mass_lite0_stage6-7_a_1792",
    "quadrant_mass_lite1_imagenet_b_7168",
    "quadrant_mass_lite0_stage6-7_b_1792",
    "quadrant_mass_lite0_imagenet_b_7168",
    "quadrant_mass_lite2_imagenet_a_7168",
    "quadrant_mass_lite2_imagenet_b_7168",
    "quadrant_mass_lite0_stage1-3_a_1792",
    "quadrant_mass_lite0_stage1-3_b_1792",
    "quadrant_mass_lite2_stage1-3_a_1792",
    "quadrant_mass_lite2_stage1-3_b_1792",
    "quadrant_mass_lite0_stage4-5_a_1792",
    "quadrant_mass_lite0_stage4-5_b_1792",
    "quadrant_mass_lite2_stage4-5_a_1792",
    "quadrant_mass_lite2_stage4-5_b_1792",
)
#: ``benchmarks/speed_ab.py --base fe0c7eb`` (before the option was added):
#: this tree's default, and ``--mask split-subtracted``; several runs.
SPEED_AB = "speed_ab_subtracted_vs_fe0c7eb"
#: Adebayo et al.'s checks of the option on Lite0's first 50 photos of
#: ``imagenet-samples`` (``python -m captum_shallowcam sanity``; each file's
#: settings give its command), against the stored runs of the default and
#: LayerCAM on the same photos (the same random draw, seed 0).
SANITY = {
    "class": ("sanity_lite0_50_class_subtracted", "sanity_lite0_50_class_gated"),
    "whole": ("sanity_lite0_a_50_whole_subtracted", "sanity_lite0_a_50_whole_gated"),
}
#: LayerCAM's values in a rerun and the stored run may differ by float order
#: (tied map values rank either way): at most this on any photo.
SANITY_AGREEMENT = 0.01
#: The ImageNet-input stages of the claim section's runs.
IMAGENET_STAGES = STAGES[:3]


@cache
def _made() -> tuple[EvaluationResult, ...]:
    """Every stored run of the map."""
    earlier = [n for n in RUNS_A + RUNS_B if n.startswith("quadrant_mass")]
    return tuple(load(n) for n in earlier + list(RUNS))


def _photo_set(run: EvaluationResult) -> int:
    """0 for ``imagenet-samples``, 1 for ``imagenet-samples-b``."""
    return int(set_name(run) == "imagenet-samples-b")


def _claim_run(model: str, photo_set: int, stage: str, imagenet: bool):
    """The claim section's run of LayerCAM, the default (and the mask-only
    LayerCAMs where run) at ``stage`` on one photo set."""
    if imagenet:
        return _renamed(joined(IMAGENET[model][photo_set], IMAGENET_STAGES), [stage])
    if model == "efficientnet-lite0":
        return _renamed(set_run(MODELS[model][1][photo_set]), [stage])
    sets, _ = _fine_run(model, stage)
    return sets[photo_set]


@cache
def _cell(model: str, stage: str, imagenet: bool = False) -> EvaluationResult:
    """The map joined by photo with the claim's runs at ``stage``, both photo
    sets merged; refused unless the map was run there on both sets."""
    per_set = {}
    for run in _made():
        here = run.settings["normalization"] == ("imagenet" if imagenet else "own")
        if run.settings["model"] == model and here and stage in run.settings["layers"]:
            per_set[_photo_set(run)] = _renamed(run, [stage])
    if len(per_set) < 2:
        raise ValueError(f"{model} {stage} (imagenet={imagenet}): not run on both sets")
    sets = []
    for i, run in sorted(per_set.items()):
        claim = _claim_run(model, i, stage, imagenet)
        _same_photos(run, claim, (model, stage, i, imagenet))
        sets.append(merge_results([claim, run]))
    return merge_results(sets)


@cache
def _grid() -> tuple[list[list[str]], list[list[str]], dict, dict]:
    """The table rows (own inputs, then ImageNet inputs) and, per (model,
    stage), the differences: with own inputs, to LayerCAM, the default's to
    LayerCAM, to the default, and whether it is ahead of every mask-only
    LayerCAM; with ImageNet inputs, the first three."""
    rows, imagenet_rows, own, imagenet = [], [], {}, {}
    for model in MODELS:
        for stage in STAGES:
            run = _cell(model, stage)
            diffs = [delta(run, METHOD, PLAIN, stage), delta(run, DEFAULT, PLAIN, stage),
                     delta(run, METHOD, DEFAULT, stage)]  # fmt: skip
            own[model, stage] = (*diffs, _masks_beaten(run, METHOD)[0] == 1)
            rows.append([_short(model), f"``{stage}``", str(len(run.images)),
                         *map(shown, diffs), "yes" if own[model, stage][3] else "no"])  # fmt: skip
        for stage in IMAGENET_STAGES:
            run = _cell(model, stage, imagenet=True)
            diffs = [
                delta(run, METHOD, PLAIN, stage),
                delta(run, DEFAULT, PLAIN, stage),
                delta(run, METHOD, DEFAULT, stage),
            ]
            imagenet[model, stage] = tuple(diffs)
            imagenet_rows.append([_short(model), f"``{stage}``", str(len(run.images)),
                                  *map(shown, diffs)])  # fmt: skip
    return rows, imagenet_rows, own, imagenet


def _listed(cells) -> str:
    return ", ".join(f"{_short(m)} ``{s}``" for m, s in cells)


def _condition(text: str, found: dict, fails) -> tuple[str, bool]:
    """One condition over the cells of ``found``, and whether it failed: not
    met where ``fails`` holds of a cell."""
    failed = [c for c, d in found.items() if fails(d)]
    if failed:
        return f"{text}: not met ({_listed(failed)})", True
    return f"{text}: met", False


def _conditions() -> tuple[str, bool]:
    """The rule's conditions as the runs stand, and whether any failed."""
    _, _, own, imagenet = _grid()
    said = [
        _condition("behind the default nowhere on the 21 stages", own,
                   lambda d: d[2][3] < 0),
        _condition("ahead of LayerCAM wherever the default is", own,
                   lambda d: d[1][2] > 0 and not d[0][2] > 0),
        _condition("behind LayerCAM nowhere with ImageNet inputs (``stage1`` to "
                   "``stage3``)", imagenet, lambda d: d[0][3] < 0),
    ]  # fmt: skip
    counts, short = [], []
    for model in MODELS:
        beaten = sum(own[model, s][3] for s in STAGES)
        counts.append(f"{_short(model)} {beaten} of {len(STAGES)}")
        if beaten < 4:
            short.append(_short(model))
    said.append((
        "ahead of every mask-only LayerCAM at 4 or more stages of each model: "
        + ", ".join(counts) + (f" (not met: {', '.join(short)})" if short else ""),
        bool(short),
    ))  # fmt: skip
    return "; ".join(text for text, _ in said), any(failed for _, failed in said)


def _speed() -> str:
    """The A/B runs' ShallowCam ratios (this / base), per mask and layer."""
    runs = speed_ab_runs(SPEED_AB)
    said = []
    for mask, label in ((None, "the default"), ("split-subtracted", "the option")):
        mine = [(lay, s) for lay, _, m, s, _ in runs if m == mask]
        layers = dict.fromkeys(lay for lay, _ in mine)
        said.append(f"{label} " + "; ".join(
            f"``{lay}`` " + ", ".join(s for la, s in mine if la == lay) for lay in layers
        ))  # fmt: skip
    plain = [float(p) for *_, p in runs]
    return (
        "; ".join(said) + f" (16 rounds each; LayerCam, whose code is the same in "
        f"both, {min(plain):.3f} to {max(plain):.3f}: the noise; "
        f"``benchmarks/results/{SPEED_AB}.txt``)"
    )


def _sanity_runs(kind: str) -> tuple[dict, dict]:
    """The option's ``kind`` sanity run and the stored run of the default;
    refused unless they are on the same photos and targets and give LayerCAM
    the same values within ``SANITY_AGREEMENT``."""
    new, stored = (_load(name) for name in SANITY[kind])
    if new["images"] != stored["images"] or new["targets"] != stored["targets"]:
        raise ValueError(f"{SANITY[kind]}: not the same photos")
    for layer, fields in new["scores"][PLAIN].items():
        for field, values in fields.items():
            a = _end_points(values) if kind == "whole" else np.array(values, float)
            b = stored["scores"][PLAIN][layer][field]
            b = _end_points(b) if kind == "whole" else np.array(b, float)
            if np.nanmax(np.abs(a - b)) > SANITY_AGREEMENT:
                raise ValueError(f"{SANITY[kind]}: LayerCAM differs at {layer}")
    return new, stored


@cache
def _sanity_means() -> dict:
    """Per check ("class", "randomized"), stage and map ("option", "default",
    "LayerCAM"): the mean rank correlation over the photos (lower: more
    sensitive), where run."""
    runs = {kind: _sanity_runs(kind) for kind in SANITY}
    means = {}
    for kind, field, label in (("class", "class_sensitivity_last", "class"),
                               ("whole", "spearman", "randomized")):  # fmt: skip
        new, stored = runs[kind]
        for run, method, name in ((new, SUBTRACTED, "option"),
                                  (stored, DEFAULT, "default"),
                                  (new, PLAIN, "LayerCAM")):  # fmt: skip
            for stage, values in run["scores"][method].items():
                ends = values[field]
                ends = _end_points(ends) if kind == "whole" else np.array(ends, float)
                means[label, stage, name] = float(np.nanmean(ends))
    return means


def _sanity_rows() -> list[list[str]]:
    """Per stage, the means of ``_sanity_means`` ("—": not run there)."""
    means = _sanity_means()
    return [
        [f"``{stage}``"]
        + [
            f"{means[check, stage, name]:.2f}" if (check, stage, name) in means else "—"
            for check in ("class", "randomized")
            for name in ("option", "default", "LayerCAM")
        ]
        for stage in STAGES
    ]


def _more_sensitive(check: str, than: str) -> str:
    """The stages where the option's mean is below ``than``'s, of those run."""
    means = _sanity_means()
    run = [s for s in STAGES if (check, s, "option") in means]
    below = [s for s in run if means[check, s, "option"] < means[check, s, than]]
    return f"{len(below)} of {len(run)} ({', '.join(f'``{s}``' for s in below)})"


def values(rst_table) -> dict:
    rows, imagenet_rows, own, _ = _grid()
    rule, failed = _conditions()
    heads = ["model", "stage", "photos", "Δ vs LayerCAM", "default Δ vs LayerCAM",
             "Δ vs default", "ahead of every mask-only"]  # fmt: skip
    return {
        "qm_grid_table": rst_table(heads, rows),
        "qm_imagenet_table": rst_table(heads[:6], imagenet_rows),
        "qm_rule2": rule,
        "qm_ahead": _listed([c for c, d in own.items() if d[2][2] > 0]) or "nowhere",
        "qm_behind": _listed([c for c, d in own.items() if d[2][3] < 0]) or "nowhere",
        "qm_outcome": (
            "A condition failed, so the map does not replace the default; it "
            'stays an option, ``mask="split-subtracted"``.'
            if failed
            else "Every condition holds."
        ),
        "qm_speed": _speed(),
        "qm_agreement": f"{SANITY_AGREEMENT}",
        "qm_class_default": _more_sensitive("class", "default"),
        "qm_class_layercam": _more_sensitive("class", "LayerCAM"),
        "qm_random_default": _more_sensitive("randomized", "default"),
        "qm_random_layercam": _more_sensitive("randomized", "LayerCAM"),
        "qm_sanity_table": rst_table(
            [
                "stage",
                "class: option",
                "class: default",
                "class: LayerCAM",
                "randomized: option",
                "randomized: default",
                "randomized: LayerCAM",
            ],
            _sanity_rows(),
        ),  # fmt: skip
    }
