"""The results page's section on the claim per model: the default (the
split-gated mass reading) and the readings it replaced (the split mass reading,
the sign-aware geometric reading) against LayerCAM, on the 200 development
photos of each model.

Read by ``benchmarks/results_page.py``. Runs (``benchmarks/results/``), all
with each model's own inputs ([-1, 1]) and the labelled class:

* EfficientNet-Lite0, step 1792: ``scale_{a,b}_1792.json`` (LayerCAM, the
  sign-aware LayerCAM and the sign-aware geometric reading;
  ``benchmarks/fusion_benchmark.py``), joined by photo with
  ``candidate_lite0_{a,b}_1792.json`` (the split mass reading and the
  both-signs LayerCAM) and ``gated_lite0_{a,b}_1792.json`` (the default; both
  ``benchmarks/masks_screen.py``);
* EfficientNet-Lite2, step 3584: ``lite2_geometric_{a,b}_3584.json``
  (``python -m captum_shallowcam benchmark``), joined with
  ``candidate_lite2_{a,b}_3584.json`` (the split mass reading),
  ``bothsigns_lite2_{a,b}_3584.json`` (the both-signs LayerCAM) and
  ``gated_lite2_{a,b}_3584.json`` (the default), run in that order;
* EfficientNet-Lite1, step 7168: ``masks_lite1_own_a_1-100_7168.json``
  (the 100 of ``imagenet-samples``: the 24-photo screen
  ``masks_lite1_own_a_7168.json`` and the other 76, five of its readings) and
  ``masks_lite1_own_b_1-100_7168.json`` (the 100 of ``imagenet-samples-b``),
  joined with ``gated_lite1_{a,b}_7168.json`` (the default).

Also Lite1 and Lite2 at step 1792 (``FINE``; the sign-aware and the
both-signs LayerCAM were run there later, ``FINE_LATER``), and ImageNet mean/std inputs
(``IMAGENET``).

``masks_screen.py`` and the other scripts give LayerCAM the same scores on the
same photos (checked here when the runs are joined), so the joined runs pair
photo by photo.
"""

import re
from functools import cache

import numpy as np
from _sign_aware_section import (
    RUNS,
    ahead,
    cell,
    delta,
    layer_cell,
    listed,
    load,
    shown,
)

from captum_shallowcam.experiments import EvaluationResult, merge_results

PLAIN = "layercam"
SIGN_AWARE = "layercam+sign-aware"
GEOMETRIC = "shallowcam+sign-aware+geometric"
SPLIT = "shallowcam+split+mass"
GATED = "shallowcam+split-gated+mass"
#: LayerShallowCam's default (``shallowcam``), stored under its options.
DEFAULT = GATED
BOTH_SIGNS = "layercam+both-signs"
#: The mask-only LayerCAMs: LayerCAM and its masks without relevance weights.
MASKS_ONLY = (PLAIN, SIGN_AWARE, BOTH_SIGNS)
LABELS = {
    SIGN_AWARE: "sign-aware LayerCAM",
    GEOMETRIC: "sign-aware, geometric",
    SPLIT: "split, mass",
    GATED: "split-gated, mass (default)",
    BOTH_SIGNS: "both-signs LayerCAM",
}
#: The name of the sign-aware geometric reading in the runs of the main table.
SCREEN_NAMES = {"shallowcam-v1+clrp+geometric+sign-aware": GEOMETRIC}
#: Per model: its label, and the runs joined by photo, one group per photo set
#: (the main run first, the default's run last).
MODELS = {
    "efficientnet-lite0": (
        "EfficientNet-Lite0",
        [("scale_a_1792", "candidate_lite0_a_1792", "gated_lite0_a_1792"),
         ("scale_b_1792", "candidate_lite0_b_1792", "gated_lite0_b_1792")],
    ),
    "efficientnet-lite1": (
        "EfficientNet-Lite1",
        [("masks_lite1_own_a_1-100_7168", "gated_lite1_a_7168"),
         ("masks_lite1_own_b_1-100_7168", "gated_lite1_b_7168")],
    ),
    "efficientnet-lite2": (
        "EfficientNet-Lite2",
        [("lite2_geometric_a_3584", "candidate_lite2_a_3584", "bothsigns_lite2_a_3584",
          "gated_lite2_a_3584"),
         ("lite2_geometric_b_3584", "candidate_lite2_b_3584", "bothsigns_lite2_b_3584",
          "gated_lite2_b_3584")],
    ),
}  # fmt: skip
STAGES = [f"stage{i}" for i in range(1, 8)]
#: Per model at the issue's step 1792, per stage, in the order run: the runs
#: joined by photo, one group per photo set, and why that stage was run first
#: ("" for the stages run after). Lite1 ``stage7``: LayerCAM and the split
#: reading, joined with the gated reading's run; every other stage: LayerCAM
#: and the default in one run each (``masks_screen.py --methods
#: layercam,shallowcam+split-gated+mass``), named ``{model}_{stage}_{a,b}_1792``.
#: Lite2's stages were run in the order of the lower end of the default's
#: interval in its step-3584 table, smallest first.
FINE = {
    "efficientnet-lite1": {
        "stage7": ([("lite1_stage7_a_1792", "gated_lite1_stage7_a_1792"),
                    ("lite1_stage7_b_1792", "gated_lite1_stage7_b_1792")],
                   "where the step-7168 table is not ahead"),
        "stage2": ([("lite1_stage2_a_1792",), ("lite1_stage2_b_1792",)],
                   "where the issue found the default of then behind LayerCAM"),
        "stage1": ([("lite1_stage1_a_1792",), ("lite1_stage1_b_1792",)],
                   "the shallowest stage"),
        "stage3": ([("lite1_stage3_a_1792",), ("lite1_stage3_b_1792",)], ""),
        "stage4": ([("lite1_stage4_a_1792",), ("lite1_stage4_b_1792",)], ""),
        "stage5": ([("lite1_stage5_a_1792",), ("lite1_stage5_b_1792",)], ""),
        "stage6": ([("lite1_stage6_a_1792",), ("lite1_stage6_b_1792",)], ""),
    },
    "efficientnet-lite2": {
        "stage7": ([("lite2_stage7_a_1792",), ("lite2_stage7_b_1792",)],
                   "the lowest end of the default's interval in the step-3584 table"),
        "stage3": ([("lite2_stage3_a_1792",), ("lite2_stage3_b_1792",)],
                   "the second lowest"),
        "stage5": ([("lite2_stage5_a_1792",), ("lite2_stage5_b_1792",)],
                   "the third lowest"),
        "stage4": ([("lite2_stage4_a_1792",), ("lite2_stage4_b_1792",)],
                   "the fourth lowest"),
        "stage2": ([("lite2_stage2_a_1792",), ("lite2_stage2_b_1792",)],
                   "the fifth lowest"),
        "stage6": ([("lite2_stage6_a_1792",), ("lite2_stage6_b_1792",)],
                   "the sixth lowest"),
        "stage1": ([("lite2_stage1_a_1792",), ("lite2_stage1_b_1792",)],
                   "the highest"),
    },
}  # fmt: skip
#: Per model at step 1792: the methods run later at each stage of ``FINE``, in
#: the order run, each alone (``masks_screen.py --methods METHOD``), one run per
#: stage and photo set, named by the pattern with ``STAGE`` and ``SET`` (``a``,
#: ``b``) filled in; joined by photo with that stage's runs where both sets'
#: runs are there.
FINE_LATER = {
    "efficientnet-lite1": ((SIGN_AWARE, "lite1_signaware_STAGE_SET_1792"),
                           (BOTH_SIGNS, "lite1_bothsigns_STAGE_SET_1792")),
    "efficientnet-lite2": ((SIGN_AWARE, "lite2_signaware_STAGE_SET_1792"),
                           (BOTH_SIGNS, "lite2_bothsigns_STAGE_SET_1792")),
}  # fmt: skip
#: The model whose table joins the screens (no runs of its own in this section).
LITE1 = "efficientnet-lite1"
#: ImageNet mean and std inputs (``--normalization imagenet``), ``stage1`` to
#: ``stage3``, step 7168, the runs joined by photo, one group per photo set.
#: Lite0 and Lite1: the 100 of ``imagenet-samples`` (the first 16 from the
#: screens, the other 84 run later with LayerCAM and the split reading only)
#: and the 100 of ``imagenet-samples-b``, each with the default's run (made
#: later). Lite2, run after the default was chosen: one run per set with all
#: three methods.
IMAGENET = {
    "efficientnet-lite0": (("masks_lite0_imagenet_a_1-100_7168",
                            "gated_lite0_imagenet_a_7168"),
                           ("masks_lite0_imagenet_b_7168",
                            "gated_lite0_imagenet_b_7168")),
    "efficientnet-lite1": (("masks_lite1_imagenet_a_1-100_7168",
                            "gated_lite1_imagenet_a_7168"),
                           ("masks_lite1_imagenet_b_7168",
                            "gated_lite1_imagenet_b_7168")),
    "efficientnet-lite2": (("lite2_imagenet_a_7168",), ("lite2_imagenet_b_7168",)),
}  # fmt: skip


def _renamed(result: EvaluationResult, layers: list[str]) -> EvaluationResult:
    """``result`` at ``layers`` only (no fused maps), with the sign-aware
    geometric reading under one name."""
    scores = {
        SCREEN_NAMES.get(m, m): {lay: per_layer[lay] for lay in layers}
        for m, per_layer in result.scores.items()
    }
    settings = dict(result.settings, layers=layers, protocol="captum-shallowcam")
    return EvaluationResult(settings, result.images, result.targets, scores)


#: Per joined group with LayerCAM in two runs: the largest difference of its
#: overall score on one photo, and of its mean at one layer (points).
AGREEMENT: dict[tuple[str, ...], tuple[float, float]] = {}


def _on(result: EvaluationResult, images: list[str]) -> EvaluationResult:
    """``result`` on ``images`` only, in their order."""
    at = [result.images.index(name) for name in images]
    scores = {
        m: {
            lay: {k: [v[i] for i in at] for k, v in e.items()} for lay, e in per.items()
        }
        for m, per in result.scores.items()
    }
    targets = [result.targets[i] for i in at]
    settings = dict(result.settings, n_images=len(images))
    return EvaluationResult(settings, list(images), targets, scores)


def _same_photos(run: EvaluationResult, other: EvaluationResult, what) -> None:
    """Refused unless ``run`` scores ``other``'s photos for the same targets,
    in the same order (``what`` names the runs in the message)."""
    if run.images != other.images or run.targets != other.targets:
        raise ValueError(f"{what}: the runs are not on the same photos")


def joined(
    names: tuple[str, ...], layers: list[str] = STAGES, on_first: bool = False
) -> EvaluationResult:
    """The runs ``names`` of the same photos joined, at ``layers``; refused
    unless they score the same photos for the same targets, and every run that
    has LayerCAM gives it the same scores: within 1 point on every photo and
    0.05 in the mean (the scripts batch the photos differently, and maps equal
    up to float rounding can order pixels of equal value differently).
    ``on_first``: the later runs may hold more photos; only the first run's
    are kept."""
    runs = [_renamed(load(n), layers) for n in names]
    if on_first:
        runs = runs[:1] + [_on(run, runs[0].images) for run in runs[1:]]
    for run in runs[1:]:
        _same_photos(run, runs[0], names)
        if PLAIN in run.scores and PLAIN in runs[0].scores:
            a = np.array([run.scores[PLAIN][s]["overall"] for s in layers])
            b = np.array([runs[0].scores[PLAIN][s]["overall"] for s in layers])
            photo, mean = np.abs(a - b).max(), np.abs(a.mean(1) - b.mean(1)).max()
            if photo > 1.0 or mean > 0.05:
                raise ValueError(
                    f"{names}: LayerCAM's scores differ between the runs (by up to "
                    f"{photo:.2f} points on a photo, {mean:.3f} in a mean)"
                )
            AGREEMENT[names] = (float(photo), float(mean))
    return merge_results(runs) if len(runs) > 1 else runs[0]


@cache
def set_run(group: tuple[str, ...]) -> EvaluationResult:
    """One photo set's runs of ``MODELS``, joined."""
    return joined(group)


@cache
def model_run(model: str) -> EvaluationResult:
    """All photos of ``model``'s runs, both sets, joined."""
    _, groups = MODELS[model]
    return merge_results([set_run(group) for group in groups])


def rows(result: EvaluationResult) -> list[list[str]]:
    """Per stage: LayerCAM's overall score, each reading's Δ to it, and the
    default's Δ to its own mask alone (the both-signs LayerCAM) and to the
    split reading it replaced."""
    out = []
    for layer in STAGES:
        s = {m: result.scores[m][layer]["overall"] for m in result.scores}
        row = [layer, f"{np.mean(s[PLAIN]):.1f}"]
        row += [cell(s[m], s[PLAIN]) if m in s else "—" for m in LABELS]
        row += [
            cell(s[DEFAULT], s[base]) if base in s else "—"
            for base in (BOTH_SIGNS, SPLIT)
        ]
        out.append(row)
    return out


HEADS = [
    "stage",
    "LayerCAM",
    *(f"Δ {label}" for label in LABELS.values()),
    "Δ default vs both-signs LayerCAM",
    "Δ default vs split, mass",
]


def _against_layercam(result: EvaluationResult, method: str) -> str:
    """ "ahead of LayerCAM at 6 of 7 stages (not ahead: ``stage7`` +0.49 [...])"."""
    up, down = ahead(result, method, PLAIN)
    layers = result.settings["layers"]
    rest = [s for s in layers if s not in up]
    of = f"{len(layers)} stage{'s' if len(layers) > 1 else ''}"
    return (
        f"ahead of LayerCAM at {len(up)} of {of}"
        + (f", behind at {listed(down)}" if down else "")
        + (
            " (not ahead: "
            + "; ".join(f"``{s}`` {layer_cell(result, method, PLAIN, s)}" for s in rest)
            + ")"
            if rest
            else ""
        )
    )


def says(result: EvaluationResult) -> str:
    """Where the default and the readings it replaced are ahead of LayerCAM,
    where the default's weights are ahead of their mask alone and of every
    mask-only LayerCAM, and how it compares with the split reading."""
    parts = [f"The default is {_against_layercam(result, DEFAULT)}."]
    parts.append(
        "The readings it replaced: the split reading "
        f"{_against_layercam(result, SPLIT)}; the sign-aware geometric reading "
        f"{_against_layercam(result, GEOMETRIC)}."
    )
    if BOTH_SIGNS in result.scores:
        up, down = ahead(result, DEFAULT, BOTH_SIGNS)
        beaten, n, names = _masks_beaten(result)
        parts.append(
            "The default's relevance weights are ahead of their mask alone (the "
            f"both-signs LayerCAM) at {len(up)} stages ({listed(up)})"
            + (f" and behind at {listed(down)}" if down else "")
            + f", the split reading's at {len(ahead(result, SPLIT, BOTH_SIGNS)[0])}; "
            f"ahead of every mask-only LayerCAM at once ({names}) at {beaten} of {n}."
        )
    up, down = ahead(result, DEFAULT, SPLIT)
    parts.append(
        f"Against the split reading the default is ahead at {len(up)} stages"
        + (f" ({listed(up)})" if up else "")
        + f" and behind at {listed(down) if down else 'none'}."
    )
    return " ".join(parts)


def set_name(result: EvaluationResult) -> str:
    """The photo folder's name, e.g. ``imagenet-samples-b``."""
    return str(result.settings["images"]).rstrip("/").split("/")[-1]


def _photo_counts(runs: list[EvaluationResult]) -> str:
    """ "100 of ``imagenet-samples`` and 100 of ``imagenet-samples-b``"."""
    return " and ".join(f"{len(r.images)} of ``{set_name(r)}``" for r in runs)


def per_set(model: str) -> str:
    """On each photo set apart (``imagenet-samples-b`` played no part in any
    choice): how many stages the default is ahead of LayerCAM at, and where it
    is ahead of and behind the split reading."""
    _, groups = MODELS[model]
    parts = []
    for group in groups:
        run = set_run(group)
        up = ahead(run, DEFAULT, PLAIN)[0]
        above, below = ahead(run, DEFAULT, SPLIT)
        parts.append(
            f"on the {len(run.images)} of ``{set_name(run)}`` ahead of LayerCAM "
            f"at {len(up)} of 7, of the split reading at {len(above)}, behind it at "
            f"{len(below)}"
        )
    return "Photo sets apart, the default is " + "; ".join(parts) + "."


def setting(model: str) -> str:
    """ "200 photos, step 1792" and which photo set gave how many."""
    result = model_run(model)
    _, groups = MODELS[model]
    sets = [load(group[0]) for group in groups]
    counts = _photo_counts(sets)
    return f"{len(result.images)} photos ({counts}), step {result.settings['step']}"


def _short(model: str) -> str:
    return MODELS[model][0].replace("EfficientNet-", "")


@cache
def stages_ahead(model: str, method: str = DEFAULT) -> tuple[str, ...]:
    """The stages of ``model``'s table where ``method`` is ahead of LayerCAM
    (interval above 0); bootstrapped once for every section that asks."""
    return tuple(ahead(model_run(model), method, PLAIN)[0])


@cache
def summary() -> str:
    """Over the three models: how many stages each reading is ahead of
    LayerCAM at, where the default is not, and what its relevance weights add
    to its mask."""
    runs = {model: model_run(model) for model in MODELS}
    ahead_of = {
        m: {model: stages_ahead(model, m) for model in MODELS}
        for m in (GEOMETRIC, SPLIT, DEFAULT)
    }
    total = 7 * len(MODELS)

    def count(method: str) -> str:
        per = ahead_of[method]
        return (
            f"{sum(map(len, per.values()))} of {total} stages ("
            + ", ".join(f"{_short(m)} {len(v)}" for m, v in per.items())
            + ")"
        )

    misses = "; ".join(
        f"{_short(model)} ``{s}`` {layer_cell(runs[model], DEFAULT, PLAIN, s)}"
        for model in MODELS
        for s in STAGES
        if s not in ahead_of[DEFAULT][model]
    )
    weights = "; ".join(
        f"{_short(m)} {len(ahead(run, DEFAULT, BOTH_SIGNS)[0])} of 7"
        for m, run in runs.items()
    )
    masks_only = "; ".join(
        f"{_short(m)} {_masks_beaten(run)[0]} of 7" for m, run in runs.items()
    )
    split_masks = "; ".join(
        f"{_short(m)} {_masks_beaten(run, SPLIT)[0]} of 7" for m, run in runs.items()
    )
    return (
        "Over the three models the default is ahead of LayerCAM (interval above "
        f"0) at {count(DEFAULT)}, the split reading at {count(SPLIT)}, the "
        f"sign-aware geometric reading at {count(GEOMETRIC)}. Where the default "
        f"is not ahead: {misses or 'nowhere'}. Its relevance weights against their "
        f"own mask alone (the both-signs LayerCAM), stages ahead: {weights}; "
        "against every mask-only LayerCAM at once (LayerCAM, sign-aware, "
        f"both-signs): {masks_only} (the split reading: {split_masks})."
    )


@cache
def _fine_run(
    model: str, stage: str
) -> tuple[list[EvaluationResult], EvaluationResult]:
    """``FINE[model][stage]``: each photo set's joined run, and both merged."""
    groups, _ = FINE[model][stage]
    later = _later(model, stage).values()
    sets = [
        joined(group + tuple(names[i] for names in later), [stage])
        for i, group in enumerate(groups)
    ]
    return sets, merge_results(sets)


@cache
def _later(model: str, stage: str) -> dict[str, list[str]]:
    """Per method of ``FINE_LATER[model]`` run at ``stage``: its runs, one per
    photo set (a method is left out unless every set's run is there)."""
    found = {}
    for method, pattern in FINE_LATER.get(model, ()):
        names = [pattern.replace("STAGE", stage).replace("SET", x) for x in "ab"]
        if all((RUNS / f"{n}.json").exists() for n in names):
            found[method] = names
    return found


def _fine_methods(model: str, stage: str) -> tuple[str, list[str]]:
    """How ``FINE[model][stage]`` was run: ``--methods`` of the first run, and
    the methods run later."""
    groups, _ = FINE[model][stage]
    _, run = _fine_run(model, stage)
    methods = [m for m in (DEFAULT, SPLIT) if m in run.scores]
    in_first = load(groups[0][0]).scores
    first = ",".join([PLAIN] + [m for m in methods if m in in_first])
    return first, [m for m in methods if m not in in_first]


@cache
def _fine(model: str) -> tuple:
    """``model`` at step 1792: the stages run, the table's heads and rows (per
    stage LayerCAM's score, the default's Δ on all photos, on each set apart
    and in the model's table), the stages where it is ahead, and the largest
    difference of its Δ between the two steps, and a note where the sets apart
    give the same Δ to two decimals, which reads like a copied number, and per
    method of ``FINE_LATER[model]`` run at some stage, the stages where it was
    run (computed once for the page and the README)."""
    stages = [s for s in STAGES if s in FINE[model]]
    table = model_run(model)
    sets = _fine_run(model, stages[0])[0]
    with_later = {
        method: [s for s in stages if method in _later(model, s)]
        for method, _ in FINE_LATER.get(model, ())
    }
    with_later = {method: ran for method, ran in with_later.items() if ran}
    heads = [
        "stage",
        "LayerCAM",
        *(f"Δ {LABELS[m]}" for m in with_later),
        "Δ default",
        *(f"Δ default, {set_name(r)}" for r in sets),
        f"Δ default, step {table.settings['step']} (table above)",
        *(f"Δ default vs {LABELS[m]}" for m in with_later),
    ]
    table_rows, up, gap, same = [], [], 0.0, []
    coarse_sets = [set_run(group) for group in MODELS[model][1]]
    for stage in stages:
        apart, run = _fine_run(model, stage)
        plain = run.scores[PLAIN][stage]["overall"]
        # the default's Δ on all photos, each set apart, and in the table
        fine, *sets_apart, coarse = (
            delta(r, DEFAULT, PLAIN, stage) for r in [run, *apart, table]
        )
        # each later method's Δ to LayerCAM, and the default's Δ to it
        to_plain = [
            layer_cell(run, m, PLAIN, stage) if stage in ran else "—"
            for m, ran in with_later.items()
        ]
        to_default = [
            layer_cell(run, DEFAULT, m, stage) if stage in ran else "—"
            for m, ran in with_later.items()
        ]
        table_rows.append(
            [stage, f"{np.mean(plain):.1f}", *to_plain]
            + [shown(d) for d in (fine, *sets_apart, coarse)]
            + to_default
        )
        if fine[2] > 0:
            up.append(stage)
        gap = max(gap, abs(fine[0] - coarse[0]))
        means = [d[0] for d in sets_apart]
        if len({f"{m:.2f}" for m in means}) == 1:
            at = [delta(r, DEFAULT, PLAIN, stage)[0] for r in coarse_sets]
            same.append(
                f"at ``{stage}`` the sets apart agree to two decimals by chance: "
                f"to four, {' and '.join(f'{m:.4f}' for m in means)} "
                f"(step {table.settings['step']}: "
                f"{' and '.join(f'{m:.4f}' for m in at)})"
            )
    return stages, heads, table_rows, up, gap, same, with_later


def _later_says(model: str, later: dict[str, list[str]]) -> str:
    """Per method of ``later`` (the methods of ``FINE_LATER[model]`` run, and
    their stages): where it is ahead of and behind LayerCAM (200 photos, each
    set apart too), and the default ahead of and behind it; then where the
    default is ahead of every mask-only LayerCAM at once; "" where none was
    run."""
    if not later:
        return ""

    def where(stages: list[str], method: str, baseline: str) -> str:
        # each stage's verdict on all photos, then on each photo set apart
        runs = [_fine_run(model, s) for s in stages]
        verdicts = [ahead(run, method, baseline) for _, run in runs]
        up = [s for s, (u, _) in zip(stages, verdicts) if u]
        down = [s for s, (_, d) in zip(stages, verdicts) if d]
        apart = [
            sum(bool(ahead(sets[i], method, baseline)[0]) for sets, _ in runs)
            for i in range(len(runs[0][0]))
        ]
        return (
            f"ahead at {len(up)} of {len(stages)}"
            + (f" ({listed(up)})" if up else "")
            + f", behind at {len(down)}"
            + (f" ({listed(down)})" if down else "")
            + ", on each photo set apart ahead at "
            + " and ".join(map(str, apart))
        )

    parts = [
        f"The {LABELS[m]} against LayerCAM: {where(ran, m, PLAIN)}. The default "
        f"against the {LABELS[m]}: {where(ran, DEFAULT, m)}"
        for m, ran in later.items()
    ]
    every, at_once = _fine_at_once(model)
    step = _fine_run(model, next(iter(FINE[model])))[1].settings["step"]
    missing = [
        s for s in STAGES if s in FINE[model] and s not in later.get(BOTH_SIGNS, [])
    ]
    return (
        ". ".join(parts)
        + (
            ". The default is ahead of every mask-only LayerCAM at once ("
            + _masks_beaten(_fine_run(model, every[0])[1])[2]
            + f") at {len(at_once)} of {len(every)}"
            + (f" ({listed(at_once)})" if at_once else "")
            if every
            else ""
        )
        + (
            f"; the {LABELS[BOTH_SIGNS]}, the default's own mask, was not run at "
            f"step {step}"
            + ("" if len(missing) == len(FINE[model]) else f" at {listed(missing)}")
            if missing
            else ""
        )
    )


@cache
def _fine_at_once(model: str) -> tuple[list[str], list[str]]:
    """The stages of ``FINE[model]`` where every mask-only LayerCAM (LayerCAM,
    sign-aware, both-signs) was run at step 1792, and those where the default
    is ahead of them all at once (bootstrapped once for the page, the README
    and the summary)."""
    masks = set(MASKS_ONLY)
    runs = {s: _fine_run(model, s)[1] for s in _fine(model)[0]}
    every = [s for s, run in runs.items() if masks <= set(run.scores)]
    return every, [s for s in every if _masks_beaten(runs[s])[0]]


def _fine_model(model: str, table) -> str:
    """``model`` at step 1792 on the 200 photos, at the stages of
    ``FINE[model]``: how they were run, a table (``table``: the rst or
    markdown table writer) and where the default is ahead of LayerCAM."""
    stages, heads, table_rows, up, gap, same, ran_later = _fine(model)
    sets, run = _fine_run(model, stages[0])
    step = run.settings["step"]
    short = _short(model)
    fine = FINE[model]
    usual = [s for s in stages if len(fine[s][0][0]) == 1]
    other = [s for s in stages if s not in usual]
    for stage in usual:
        names = [group[0] for group in fine[stage][0]]
        if names != [f"{short.lower()}_{stage}_{x}_{step}" for x in ("a", "b")]:
            raise ValueError(
                f"{stage}: the runs {names} are not named as the page says"
            )
    span = STAGES[STAGES.index(stages[0]) : STAGES.index(stages[-1]) + 1]
    how = (
        f"``{stages[0]}`` to ``{stages[-1]}``"
        if stages == span and len(stages) > 1
        else listed(stages)
    )
    command = (
        f"``benchmarks/masks_screen.py --model {model} --step "
        f"{step} --layers STAGE --methods {{}}``"
    )
    runs = (
        [
            command.format(_fine_methods(model, usual[0])[0])
            + f" (``{short.lower()}_STAGE_{{a,b}}_{step}.json``)"
        ]
        if usual
        else []
    )
    for s in other:
        first, later = _fine_methods(model, s)
        runs.append(
            f"at ``{s}`` "
            + command.format(first).replace("STAGE", s)
            + "".join(f", and ``--methods {m}`` later" for m in later)
            + " ("
            + ", ".join(f"``{n}.json``" for g in fine[s][0] for n in g)
            + "; each file's settings give the command)"
        )
    patterns = dict(FINE_LATER.get(model, ()))
    for method, ran in ran_later.items():
        runs.append(
            f"``--methods {method}`` later, "
            + ("at every stage" if ran == stages else f"at {listed(ran)}")
            + ", one run per stage and photo set (``"
            + patterns[method].replace("SET", "{a,b}")
            + ".json``)"
        )
    whys = [f"``{s}`` ({why})" for s, (_, why) in fine.items() if why]
    order = (
        (
            ". Run first, in this order: "
            if len(whys) < len(fine)
            else ". Run in this order: "
        )
        + "; ".join(whys)
        + ("; the others after" if len(whys) < len(fine) else "")
        if whys
        else ""
    )
    text = (
        f"**{short} at the issue's step {step}**, {how} "
        f"({len(run.images)} photos, {_photo_counts(sets)}): "
        + "; ".join(runs)
        + order
        + ".\n\n"
        + table(heads, table_rows)
        + f"\nAt step {step} the default is ahead of LayerCAM (interval above 0) "
        f"at {len(up)} of {len(stages)} stage{'s' if len(stages) > 1 else ''} "
        f"of {short} run there"
        + (
            " (not ahead: " + "; ".join(f"``{s}``" for s in stages if s not in up) + ")"
            if len(up) < len(stages)
            else ""
        )
        + f"; the default's Δ differs from the step-"
        f"{model_run(model).settings['step']} "
        f"table's by {gap:.2f} points at most" + "".join(f"; {note}" for note in same)
    )
    rest = [s for s in STAGES if s not in stages]
    if rest:
        text += (
            f". {short} {listed(rest)} {'was' if len(rest) == 1 else 'were'} not "
            f"run at step {step}"
        )
    later_says = _later_says(model, ran_later)
    return text + "." + (f" {later_says}." if later_says else "")


def fine_check(table) -> str:
    """Each model of ``FINE`` at step 1792 (``_fine_model``), and over the
    three models where the default is ahead of LayerCAM: at step 1792 where
    that stage was run there, at its table's step elsewhere (said as "every
    stage at step 1792" once every stage of every model was run there)."""
    parts = [_fine_model(model, table) for model in FINE]
    first = next(iter(FINE))
    fine_step = _fine_run(first, _fine(first)[0][0])[1].settings["step"]
    ahead_at, at_steps = {}, {}
    for model in MODELS:
        fine = _fine(model)[0] if model in FINE else []
        up = set(_fine(model)[3]) if fine else set()
        ahead_at[model] = up | {s for s in stages_ahead(model) if s not in fine}
        steps = {fine_step: len(fine)}
        coarse = model_run(model).settings["step"]
        steps[coarse] = steps.get(coarse, 0) + len(STAGES) - len(fine)
        at_steps[model] = {step: n for step, n in steps.items() if n}
    everywhere = all(steps == {fine_step: len(STAGES)} for steps in at_steps.values())
    where = [
        f"{_short(model)} {len(ahead_at[model])}"
        + (
            ""
            if everywhere
            else " ("
            + ", ".join(
                f"{'all 7 stages' if n == len(STAGES) else n} at step {step}"
                for step, n in at_steps[model].items()
            )
            + ")"
        )
        for model in MODELS
    ]
    masks = {model: _masks_at(model, fine_step) for model in MODELS}
    parts.append(
        "Over the three models, "
        + (
            f"every stage at step {fine_step}"
            if everywhere
            else f"each stage at step {fine_step} where it was run there and at "
            "its table's step elsewhere"
        )
        + ", the default is ahead of LayerCAM "
        f"(interval above 0) at {sum(map(len, ahead_at.values()))} of "
        f"{len(STAGES) * len(MODELS)} stages: "
        + ", ".join(where)
        + (
            f"; ahead of every mask-only LayerCAM at once (LayerCAM, sign-aware, "
            f"both-signs) at step {fine_step}: "
            + "; ".join(f"{_short(m)} {n} of {len(STAGES)}" for m, n in masks.items())
            if None not in masks.values()
            else ""
        )
        + "."
    )
    return "\n\n".join(parts)


def _masks_at(model: str, step: int) -> int | None:
    """The stages of ``model`` where the default is ahead of every mask-only
    LayerCAM at once at ``step``; None unless each was run at every stage
    there (in ``model``'s table or in ``FINE``)."""
    masks = set(MASKS_ONLY)
    if model not in FINE:
        run = model_run(model)
        whole = run.settings["step"] == step and masks <= set(run.scores)
        return _masks_beaten(run)[0] if whole else None
    every, at_once = _fine_at_once(model)
    return len(at_once) if every == STAGES else None


@cache
def switch_says() -> str:
    """The switching rule's first test: per model, where the default is ahead
    of and behind the split reading, on all photos and on each set apart
    (and Lite1 ``stage7`` at step 1792)."""
    entries = [
        (model, [set_run(g) for g in MODELS[model][1]], model_run(model))
        for model in MODELS
    ]
    entries.append((LITE1, *_fine_run(LITE1, "stage7")))
    parts = []
    for model, sets, run in entries:
        layers = run.settings["layers"]
        up, down = ahead(run, DEFAULT, SPLIT)
        apart = [ahead(r, DEFAULT, SPLIT) for r in sets]
        parts.append(
            f"{_short(model)} (``{layers[0]}``"
            + (f" to ``{layers[-1]}``" if len(layers) > 1 else "")
            + f", {len(run.images)} photos, step {run.settings['step']}): ahead at "
            f"{len(up)} of {len(layers)}"
            + (f" ({listed(up)})" if up and len(layers) > 1 else "")
            + f", behind at {len(down)}; photo sets apart ahead at "
            + " and ".join(str(len(u)) for u, _ in apart)
            + ", behind at "
            + " and ".join(str(len(d)) for _, d in apart)
        )
    return "; ".join(parts) + "."


def _masks_beaten(run: EvaluationResult, method: str = DEFAULT) -> tuple[int, int, str]:
    """The stages where ``method`` is ahead of each mask-only LayerCAM of
    ``run`` at once: their count, the number of stages, and the masks' names."""
    masks = [m for m in MASKS_ONLY if m in run.scores]
    layers = run.settings["layers"]
    up = [s for s in layers if all(delta(run, method, m, s)[2] > 0 for m in masks)]
    names = ", ".join("LayerCAM" if m == PLAIN else LABELS[m] for m in masks)
    return len(up), len(layers), names


def _verdicts(
    runs: dict[str, EvaluationResult], layers: list[str], method: str = DEFAULT
) -> str:
    """ "behind LayerCAM ... at no stage; ahead ... at Lite0 3 of 3, ...": where
    ``method`` is behind and ahead of LayerCAM in each model's run."""
    verdicts = {_short(m): ahead(run, method, PLAIN) for m, run in runs.items()}
    behind = [f"{m} ``{s}``" for m, (_, down) in verdicts.items() for s in down]
    return (
        f"behind LayerCAM (interval below 0) at {', '.join(behind) or 'no stage'}; "
        "ahead (interval above 0) at "
        + ", ".join(
            f"{m} {len(up)} of {len(layers)}" for m, (up, _) in verdicts.items()
        )
    )


#: The readings of the ImageNet-input table, by column label.
IMAGENET_READINGS = {DEFAULT: "default", SPLIT: "split, mass"}


@cache
def _imagenet() -> tuple:
    """The ImageNet-input runs' layers, table heads and rows, where each
    reading is behind / ahead of LayerCAM on all photos (and the default on
    each set apart), and the photos (computed once for the page and the
    README)."""
    layers = list(load(IMAGENET[LITE1][0][0]).settings["layers"])
    sets = {
        model: [joined(group, layers) for group in groups]
        for model, groups in IMAGENET.items()
    }
    first = next(iter(sets.values()))
    # the photo counts and the per-set verdicts below hold for every model
    for model, group in sets.items():
        for run, base in zip(group, first, strict=True):
            _same_photos(run, base, f"{model}'s ImageNet-input runs and the first's")
    runs = {model: merge_results(group) for model, group in sets.items()}
    heads = ["stage"] + [
        f"{_short(m)}: {col}"
        for m in runs
        for col in ("LayerCAM", *(f"Δ {x}" for x in IMAGENET_READINGS.values()))
    ]
    table_rows = []
    for layer in layers:
        row = [layer]
        for run in runs.values():
            plain = run.scores[PLAIN][layer]["overall"]
            row += [f"{np.mean(plain):.1f}"]
            row += [layer_cell(run, m, PLAIN, layer) for m in IMAGENET_READINGS]
        table_rows.append(row)
    per_set = "; ".join(
        f"on the {len(run.images)} of ``{set_name(run)}`` "
        + _verdicts({m: group[i] for m, group in sets.items()}, layers)
        for i, run in enumerate(first)
    )
    photos = f"{len(next(iter(runs.values())).images)} photos ({_photo_counts(first)})"
    says = {m: _verdicts(runs, layers, m) for m in IMAGENET_READINGS}
    return layers, heads, table_rows, says, per_set, photos


def imagenet_values(table) -> dict:
    """The ImageNet-input check: per stage and model, LayerCAM's overall score
    and the default's and the split reading's Δ to it (``table``: the rst or
    markdown table writer), and where each is behind and ahead, on all photos
    (the default on each set apart too)."""
    layers, heads, table_rows, says, per_set, photos = _imagenet()
    return dict(
        imagenet_photos=photos,
        imagenet_layers=f"``{layers[0]}`` to ``{layers[-1]}``",
        imagenet_table=table(heads, table_rows),
        imagenet_says=says[DEFAULT],
        imagenet_split_says=says[SPLIT],
        imagenet_sets=per_set,
    )


#: ``benchmarks/speed_ab.py --base 7b80a0d`` (the split reading the default's
#: code then had), this tree the gated default; several runs.
SPEED_AB = "speed_ab_gated_vs_7b80a0d"
#: ``benchmarks/speed_ab.py --base 08e673a`` (the sign-aware geometric default
#: before the split reading replaced it), this tree the gated default; several
#: runs.
SPEED_AB_ISSUE = "speed_ab_default_vs_08e673a"


def speed_ab_runs(name: str) -> list[tuple[str, str, str | None, str, str]]:
    """The runs of a stored ``benchmarks/speed_ab.py`` output: per run, the
    layer, the rounds, this tree's mask (None: its default) and the ShallowCam
    and LayerCam ratios (this / base)."""
    text = (RUNS / f"{name}.txt").read_text()
    runs = re.findall(
        r"at (\w+), batch \d+, (\d+) interleaved rounds([^\n]*)\n.*?"
        r"shallowcam: this / base ([\d.]+)\s+layercam: this / base ([\d.]+)",
        text,
        re.S,
    )
    return [
        (layer, n, (re.findall(r"mask='([\w-]+)'", head) or [None])[0], s, p)
        for layer, n, head, s, p in runs
    ]


def speed_ab(name: str = SPEED_AB, base: str = "the split reading's commit") -> str:
    """The A/B runs' ShallowCam and LayerCam ratios (this / ``base``), per
    layer, from the stored output ``name``."""
    runs = [(lay, n, s, p) for lay, n, _, s, p in speed_ab_runs(name)]
    layers = dict.fromkeys(layer for layer, *_ in runs)
    shallow = "; ".join(
        f"``{lay}`` "
        + ", ".join(f"{s} ({n} rounds)" for la, n, s, _ in runs if la == lay)
        for lay in layers
    )
    plain = [float(p) for *_, p in runs]
    within = sum(float(s) <= 1.05 for _, _, s, _ in runs)
    return (
        f"at most 1.05 in {within} of {len(runs)} runs; this tree over {base}, "
        f"ShallowCam: {shallow}; "
        "LayerCam, whose code is the same in both, "
        f"{min(plain):.3f} to {max(plain):.3f} in the same runs (its spread is "
        f"the noise; ``benchmarks/results/{name}.txt``)"
    )


def values(rst_table) -> dict:
    """The section's template values (``page/claim.rst``)."""
    groups = [g for _, model_groups in MODELS.values() for g in model_groups]
    files = sorted({f"``{n}.json``" for g in groups for n in g[1:-1]})
    default_files = sorted(f"``{g[-1]}.json``" for g in groups)
    with_both = [
        _short(m) for m in MODELS if m != LITE1 and BOTH_SIGNS in model_run(m).scores
    ]
    return dict(
        claim_files=", ".join(files),
        default_files=", ".join(default_files),
        both_signs=f" (and ``layercam+both-signs`` on {', '.join(with_both)})"
        if with_both
        else "",
        tables=section(rst_table),
        summary=summary(),
        fine_check=fine_check(rst_table),
        switch_says=switch_says(),
        speed_ab=speed_ab(),
        speed_ab_issue=speed_ab(SPEED_AB_ISSUE, "that commit"),
        **imagenet_values(rst_table),
    )


def section(rst_table) -> str:
    """One table and one paragraph per model."""
    parts = []
    for model, (label, _) in MODELS.items():
        result = model_run(model)
        parts.append(
            f"**{label}**, {setting(model)}:\n\n"
            f"{rst_table(HEADS, rows(result))}\n{says(result)} {per_set(model)}\n"
        )
    return "\n".join(parts)


def readme_values(md_table) -> dict:
    """The README's table (stage x model: the default's Δ to LayerCAM) and
    summary, in markdown."""
    runs = {model: model_run(model) for model in MODELS}
    heads = ["stage"] + [
        f"{_short(model)} ({len(run.images)} photos, step {run.settings['step']})"
        for model, run in runs.items()
    ]
    table_rows = [
        [f"`{s}`"] + [layer_cell(run, DEFAULT, PLAIN, s) for run in runs.values()]
        for s in STAGES
    ]
    imagenet = {k: v.replace("``", "`") for k, v in imagenet_values(md_table).items()}
    return dict(
        table=md_table(heads, table_rows),
        summary=summary().replace("``", "`"),
        fine_check=fine_check(md_table).replace("``", "`"),
        switch_says=switch_says().replace("``", "`"),
        **imagenet,
    )
