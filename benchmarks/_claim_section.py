"""The results page's section on the claim per model: the sign-aware geometric
reading and the split mass reading against LayerCAM, on as many development
photos as each model has been measured on.

Read by ``benchmarks/results_page.py``. Runs (``benchmarks/results/``), all
with each model's own inputs ([-1, 1]) and the labelled class:

* EfficientNet-Lite0, step 1792, 200 photos: ``scale_a_1792.json`` and
  ``scale_b_1792.json`` (LayerCAM, the sign-aware LayerCAM and the sign-aware
  geometric reading; ``benchmarks/fusion_benchmark.py``), joined by photo with
  ``candidate_lite0_a_1792.json`` and ``candidate_lite0_b_1792.json`` (the
  split mass reading and the both-signs LayerCAM; ``benchmarks/masks_screen.py``);
* EfficientNet-Lite2, step 3584, 200 photos: ``lite2_geometric_a_3584.json``
  and ``lite2_geometric_b_3584.json`` (``python -m captum_shallowcam
  benchmark``), joined with ``candidate_lite2_a_3584.json`` and
  ``candidate_lite2_b_3584.json`` (the split mass reading) and
  ``bothsigns_lite2_a_3584.json`` and ``bothsigns_lite2_b_3584.json`` (the
  both-signs LayerCAM, run later);
* EfficientNet-Lite1, step 7168, 200 photos: ``masks_lite1_own_a_1-100_7168.json``
  (the 100 of ``imagenet-samples``: the 24-photo screen
  ``masks_lite1_own_a_7168.json`` and the other 76, five of its readings) and
  ``masks_lite1_own_b_1-100_7168.json`` (the 100 of ``imagenet-samples-b``).

Also at step 1792: Lite1 ``stage7`` (``lite1_stage7_a_1792.json``,
``lite1_stage7_b_1792.json``), and the gated candidate
(``gated_lite0_{a,b}_1792.json``, ``gated_lite1_stage7_{a,b}_1792.json``;
at step 7168 ``gated_lite1_{a,b}_7168.json``, on Lite2 at step 3584
``gated_lite2_{a,b}_3584.json``);
ImageNet mean/std inputs: see ``IMAGENET``.

``masks_screen.py`` and the other scripts give LayerCAM the same scores on the
same photos (checked here when the runs are joined), so the joined runs pair
photo by photo.
"""

from functools import cache

import numpy as np
from _sign_aware_section import ahead, cell, delta, layer_cell, listed, load

from captum_shallowcam.experiments import EvaluationResult, merge_results

PLAIN = "layercam"
SIGN_AWARE = "layercam+sign-aware"
GEOMETRIC = "shallowcam+sign-aware+geometric"
SPLIT = "shallowcam+split+mass"
BOTH_SIGNS = "layercam+both-signs"
LABELS = {
    SIGN_AWARE: "sign-aware LayerCAM",
    GEOMETRIC: "sign-aware, geometric",
    SPLIT: "split, mass",
    BOTH_SIGNS: "both-signs LayerCAM",
}
#: The name of the sign-aware geometric reading in the runs of the main table.
SCREEN_NAMES = {"shallowcam-v1+clrp+geometric+sign-aware": GEOMETRIC}
#: Per model: its label, and the runs joined by photo, one group per photo set.
MODELS = {
    "efficientnet-lite0": (
        "EfficientNet-Lite0",
        [("scale_a_1792", "candidate_lite0_a_1792"),
         ("scale_b_1792", "candidate_lite0_b_1792")],
    ),
    "efficientnet-lite1": (
        "EfficientNet-Lite1",
        [("masks_lite1_own_a_1-100_7168",), ("masks_lite1_own_b_1-100_7168",)],
    ),
    "efficientnet-lite2": (
        "EfficientNet-Lite2",
        [("lite2_geometric_a_3584", "candidate_lite2_a_3584", "bothsigns_lite2_a_3584"),
         ("lite2_geometric_b_3584", "candidate_lite2_b_3584", "bothsigns_lite2_b_3584")],
    ),
}  # fmt: skip
STAGES = [f"stage{i}" for i in range(1, 8)]
GATED = "shallowcam+split-gated+mass"
#: The gated candidate, joined by photo with the runs that hold LayerCAM, the
#: split default and the both-signs LayerCAM on the same photos, per model and
#: step: Lite0 at all 7 stages (step 1792; the choice and its check), Lite1 at
#: all 7 stages (step 7168, its table's step) and at ``stage7`` (step 1792);
#: one group per photo set.
GATED_RUNS = {
    "lite0": ("efficientnet-lite0",
              [("scale_a_1792", "candidate_lite0_a_1792", "gated_lite0_a_1792"),
               ("scale_b_1792", "candidate_lite0_b_1792", "gated_lite0_b_1792")]),
    "lite1": ("efficientnet-lite1",
              [("masks_lite1_own_a_1-100_7168", "gated_lite1_a_7168"),
               ("masks_lite1_own_b_1-100_7168", "gated_lite1_b_7168")]),
    "lite1_stage7": ("efficientnet-lite1",
                     [("lite1_stage7_a_1792", "gated_lite1_stage7_a_1792"),
                      ("lite1_stage7_b_1792", "gated_lite1_stage7_b_1792")]),
    "lite2": ("efficientnet-lite2",
              [(*MODELS["efficientnet-lite2"][1][0], "gated_lite2_a_3584"),
               (*MODELS["efficientnet-lite2"][1][1], "gated_lite2_b_3584")]),
}  # fmt: skip
#: The model whose table joins the screens (no runs of its own in this section).
LITE1 = "efficientnet-lite1"
#: ImageNet mean and std inputs (``--normalization imagenet``), ``stage1`` to
#: ``stage3``, step 7168, the runs joined by photo, one group per photo set: the
#: 100 of ``imagenet-samples`` (the first 16 from the screens, the other 84 run
#: later with LayerCAM and the default only) and the 100 of
#: ``imagenet-samples-b``, each with the gated candidate's run (made later).
IMAGENET = {
    "efficientnet-lite0": (("masks_lite0_imagenet_a_1-100_7168",
                            "gated_lite0_imagenet_a_7168"),
                           ("masks_lite0_imagenet_b_7168",
                            "gated_lite0_imagenet_b_7168")),
    "efficientnet-lite1": (("masks_lite1_imagenet_a_1-100_7168",
                            "gated_lite1_imagenet_a_7168"),
                           ("masks_lite1_imagenet_b_7168",
                            "gated_lite1_imagenet_b_7168")),
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
        if run.images != runs[0].images or run.targets != runs[0].targets:
            raise ValueError(f"{names}: the runs are not on the same photos")
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
    """Per stage: LayerCAM's overall score, each reading's Δ to it, the split
    reading's Δ to its own mask alone (the both-signs LayerCAM) and to the
    sign-aware geometric reading."""
    out = []
    for layer in STAGES:
        s = {m: result.scores[m][layer]["overall"] for m in result.scores}
        row = [layer, f"{np.mean(s[PLAIN]):.1f}"]
        row += [cell(s[m], s[PLAIN]) if m in s else "—" for m in LABELS]
        row += [
            cell(s[SPLIT], s[base]) if base in s else "—"
            for base in (BOTH_SIGNS, GEOMETRIC)
        ]
        out.append(row)
    return out


HEADS = [
    "stage",
    "LayerCAM",
    *(f"Δ {label}" for label in LABELS.values()),
    "Δ split, mass vs both-signs LayerCAM",
    "Δ split, mass vs sign-aware, geometric",
]


def says(result: EvaluationResult) -> str:
    """Where each reading is ahead of LayerCAM, where the split reading's
    weights are ahead of their mask alone, and how it compares with the
    sign-aware geometric reading."""
    parts = []
    for method in (GEOMETRIC, SPLIT):
        up, down = ahead(result, method, PLAIN)
        rest = [s for s in STAGES if s not in up]
        parts.append(
            f"The {LABELS[method]} reading is ahead of LayerCAM at {len(up)} of 7 "
            "stages"
            + (f", behind at {listed(down)}" if down else "")
            + (
                " (not ahead: "
                + "; ".join(
                    f"``{s}`` {layer_cell(result, method, PLAIN, s)}" for s in rest
                )
                + ")"
                if rest
                else ""
            )
            + "."
        )
    if BOTH_SIGNS in result.scores:
        up, down = ahead(result, SPLIT, BOTH_SIGNS)
        parts.append(
            "Its relevance weights are ahead of their mask alone (the both-signs "
            f"LayerCAM) at {len(up)} stages ({listed(up)})"
            + (f" and behind at {listed(down)}" if down else "")
            + "."
        )
    up, down = ahead(result, SPLIT, GEOMETRIC)
    parts.append(
        f"Against the sign-aware geometric reading it is ahead at {listed(up)} and "
        f"behind at {listed(down)}."
    )
    return " ".join(parts)


def _set_name(result: EvaluationResult) -> str:
    """The photo folder's name, e.g. ``imagenet-samples-b``."""
    return str(result.settings["images"]).rstrip("/").split("/")[-1]


def _photo_counts(runs: list[EvaluationResult]) -> str:
    """ "100 of ``imagenet-samples`` and 100 of ``imagenet-samples-b``"."""
    return " and ".join(f"{len(r.images)} of ``{_set_name(r)}``" for r in runs)


def per_set(model: str) -> str:
    """How many stages the split reading is ahead of LayerCAM at on each photo
    set apart (``imagenet-samples-b`` played no part in any choice)."""
    _, groups = MODELS[model]
    parts = []
    for group in groups:
        run = set_run(group)
        up = ahead(run, SPLIT, PLAIN)[0]
        parts.append(f"{len(up)} of 7 on the {len(run.images)} of ``{_set_name(run)}``")
    return "Photo sets apart, the split reading is ahead at " + ", ".join(parts) + "."


def setting(model: str) -> str:
    """ "200 photos, step 1792" and which photo set gave how many."""
    result = model_run(model)
    _, groups = MODELS[model]
    sets = [load(group[0]) for group in groups]
    counts = _photo_counts(sets)
    return f"{len(result.images)} photos ({counts}), step {result.settings['step']}"


def _short(model: str) -> str:
    return MODELS[model][0].replace("EfficientNet-", "")


def summary() -> str:
    """Over the three models: how many stages each reading is ahead of
    LayerCAM at, and where the split reading is not."""
    runs = {model: model_run(model) for model in MODELS}
    ahead_of = {
        m: {model: ahead(run, m, PLAIN)[0] for model, run in runs.items()}
        for m in (GEOMETRIC, SPLIT)
    }
    total = 7 * len(MODELS)
    misses = "; ".join(
        f"{_short(model)} ``{s}`` {layer_cell(runs[model], SPLIT, PLAIN, s)}"
        for model in MODELS
        for s in STAGES
        if s not in ahead_of[SPLIT][model]
    )
    measured = [m for m, run in runs.items() if BOTH_SIGNS in run.scores]
    weights = "; ".join(
        f"ahead at {len(ahead(runs[m], SPLIT, BOTH_SIGNS)[0])} of 7 stages on {_short(m)}"
        for m in measured
    ) + "".join(f"; not measured on {_short(m)}" for m in runs if m not in measured)
    masks_only = "; ".join(_over_masks(model, run) for model, run in runs.items())
    return (
        f"Over the three models the split reading is ahead of LayerCAM (interval "
        f"above 0) at {sum(map(len, ahead_of[SPLIT].values()))} of {total} stages "
        f"({', '.join(f'{_short(m)} {len(v)}' for m, v in ahead_of[SPLIT].items())}), "
        "the sign-aware geometric reading at "
        f"{sum(map(len, ahead_of[GEOMETRIC].values()))} "
        f"({', '.join(f'{_short(m)} {len(v)}' for m, v in ahead_of[GEOMETRIC].items())}). "
        f"Where the split reading is not ahead: {misses or 'nowhere'}. "
        "Its relevance weights against their own mask alone (the both-signs "
        f"LayerCAM): {weights}. Ahead of every mask-only LayerCAM measured on the "
        f"model at once (interval above 0 against each): {masks_only}."
    )


@cache
def fine_check() -> str:
    """Lite1 ``stage7`` at step 1792 on the 200 photos (the runs the gated
    candidate is joined with there): LayerCAM's score and the split reading's
    Δ to it, on all photos and on each set apart."""
    _, sets, run = gated_runs()["lite1_stage7"]
    files = [group[0] for group in GATED_RUNS["lite1_stage7"][1]]
    layers = list(run.settings["layers"])
    cells = "; ".join(
        f"``{lay}``: LayerCAM {np.mean(run.scores[PLAIN][lay]['overall']):.1f}, "
        f"Δ {layer_cell(run, SPLIT, PLAIN, lay)}"
        for lay in layers
    )
    apart = ", ".join(
        f"{layer_cell(r, SPLIT, PLAIN, lay)} on the {len(r.images)} of "
        f"``{_set_name(r)}``"
        for r in sets
        for lay in layers
    )
    return (
        f"At the issue's step {run.settings['step']}, {_short(LITE1)} at "
        f"{', '.join(f'``{lay}``' for lay in layers)} only (where the step-"
        f"{model_run(LITE1).settings['step']} table is not ahead; "
        f"{len(run.images)} photos, ``benchmarks/masks_screen.py --model "
        f"efficientnet-lite1 --step {run.settings['step']} --layers "
        f"{','.join(layers)} --methods layercam,shallowcam+split+mass``; "
        f"{', '.join(f'``{n}.json``' for n in files)}): {cells} ({apart}). "
        f"The other {len(STAGES) - len(layers)} stages of {_short(LITE1)} were not "
        f"run at step {run.settings['step']}, so the count above stays at the "
        "tables' steps."
    )


@cache
def gated_runs() -> dict[str, tuple[str, list[EvaluationResult], EvaluationResult]]:
    """Per entry of ``GATED_RUNS``: the model, each photo set's joined run of
    the gated candidate, and both sets merged."""
    out = {}
    for key, (model, groups) in GATED_RUNS.items():
        layers = list(load(groups[0][-1]).settings["layers"])
        sets = [joined(group, layers) for group in groups]
        out[key] = (model, sets, merge_results(sets))
    return out


GATED_BASES = {SPLIT: "the split default", BOTH_SIGNS: "both-signs LayerCAM",
               PLAIN: "LayerCAM"}  # fmt: skip


def gated_table(table) -> str:
    """Per model and stage: the gated candidate's Δ to the split default, to
    its mask alone (the both-signs LayerCAM) and to LayerCAM, with the split
    default's Δ to its mask alone beside it."""
    heads = ["model", "stage", "step",
             *(f"Δ gated vs {b}" for b in GATED_BASES.values()),
             "Δ split vs both-signs LayerCAM"]  # fmt: skip
    table_rows = []
    for model, _, run in gated_runs().values():
        for lay in run.settings["layers"]:
            table_rows.append(
                [_short(model), lay, str(run.settings["step"])]
                + [layer_cell(run, GATED, base, lay) if base in run.scores else "—"
                   for base in GATED_BASES]
                + [layer_cell(run, SPLIT, BOTH_SIGNS, lay) if BOTH_SIGNS in run.scores
                   else "—"]
            )  # fmt: skip
    return table(heads, table_rows)


def _where(found: list[str], layers: list[str]) -> str:
    """ " (``stage2``, ``stage3``)", or nothing for none or a single stage."""
    return f" ({listed(found)})" if found and len(layers) > 1 else ""


@cache
def gated_says() -> str:
    """Where the gated candidate is ahead of / behind the split default (on
    all photos and on each set apart), its mask alone and every mask-only
    LayerCAM, and LayerCAM."""
    parts = []
    for model, sets, run in gated_runs().values():
        layers = run.settings["layers"]
        of = f"of {len(layers)} stage{'s' if len(layers) > 1 else ''}"

        up, down = ahead(run, GATED, SPLIT)
        apart = [(r, ahead(r, GATED, SPLIT)) for r in sets]
        text = (
            f"{_short(model)} (``{layers[0]}``"
            + (f" to ``{layers[-1]}``" if len(layers) > 1 else "")
            + f"; "
            f"{len(run.images)} photos, step {run.settings['step']}): the gated "
            f"reading is ahead of the split default at {len(up)} {of}{_where(up, layers)} "
            f"and behind at {len(down)}; photo sets apart, ahead at "
            + " and ".join(
                f"{len(u)} on the {len(r.images)} of ``{_set_name(r)}``"
                for r, (u, _) in apart
            )
            + ", behind at "
            + " and ".join(str(len(d)) for _, (_, d) in apart)
            + "."
        )
        if BOTH_SIGNS in run.scores:
            mine = ahead(run, GATED, BOTH_SIGNS)[0]
            gated_up, n, names = _masks_beaten(run, GATED)
            split_up = _masks_beaten(run)[0]
            text += (
                " Its relevance weights are ahead of their mask alone (the "
                f"both-signs LayerCAM) at {len(mine)} {of}{_where(mine, layers)}, the split "
                f"default's at {len(ahead(run, SPLIT, BOTH_SIGNS)[0])}. Ahead of "
                f"every mask-only LayerCAM of these runs at once: {gated_up} of {n} "
                f"(against {names}); the split default {split_up} of {n}."
            )
        up_plain = ahead(run, GATED, PLAIN)[0]
        text += f" Ahead of LayerCAM at {len(up_plain)} {of}" + (
            ""
            if len(up_plain) == len(layers)
            else " (not ahead: "
            + "; ".join(
                f"``{lay}`` {layer_cell(run, GATED, PLAIN, lay)}"
                for lay in layers
                if lay not in up_plain
            )
            + ")"
        )
        parts.append(text + ".")
    return " ".join(parts)


def _masks_beaten(run: EvaluationResult, method: str = SPLIT) -> tuple[int, int, str]:
    """The stages where ``method`` is ahead of each mask-only LayerCAM of
    ``run`` at once: their count, the number of stages, and the masks' names."""
    masks = [m for m in (PLAIN, SIGN_AWARE, BOTH_SIGNS) if m in run.scores]
    layers = run.settings["layers"]
    up = [s for s in layers if all(delta(run, method, m, s)[2] > 0 for m in masks)]
    names = ", ".join("LayerCAM" if m == PLAIN else LABELS[m] for m in masks)
    return len(up), len(layers), names


def _over_masks(model: str, run: EvaluationResult) -> str:
    """ "Lite0 5 of 7 (against LayerCAM, sign-aware, both-signs)": the split
    reading against each mask-only LayerCAM of ``run`` at once."""
    up, n, names = _masks_beaten(run)
    return f"{_short(model)} {up} of {n} (against {names})"


def _verdicts(
    runs: dict[str, EvaluationResult], layers: list[str], method: str = SPLIT
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
IMAGENET_READINGS = {SPLIT: "split, mass", GATED: "gated"}


@cache
def _imagenet() -> tuple:
    """The ImageNet-input runs' layers, table heads and rows, where each
    reading is behind / ahead of LayerCAM on all photos (and the split reading
    on each set apart), and the photos (computed once for the page and the
    README)."""
    layers = list(load(IMAGENET[LITE1][0][0]).settings["layers"])
    sets = {
        model: [joined(group, layers) for group in groups]
        for model, groups in IMAGENET.items()
    }
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
    first = next(iter(sets.values()))
    per_set = "; ".join(
        f"on the {len(run.images)} of ``{_set_name(run)}`` "
        + _verdicts({m: group[i] for m, group in sets.items()}, layers)
        for i, run in enumerate(first)
    )
    photos = f"{len(next(iter(runs.values())).images)} photos ({_photo_counts(first)})"
    says = {m: _verdicts(runs, layers, m) for m in IMAGENET_READINGS}
    return layers, heads, table_rows, says, per_set, photos


def imagenet_values(table) -> dict:
    """The ImageNet-input check: per stage and model, LayerCAM's overall score
    and the split and gated readings' Δ to it (``table``: the rst or markdown
    table writer), and where each is behind and ahead, on all photos (the
    split reading on each set apart too)."""
    layers, heads, table_rows, says, per_set, photos = _imagenet()
    return dict(
        imagenet_photos=photos,
        imagenet_layers=f"``{layers[0]}`` to ``{layers[-1]}``",
        imagenet_table=table(heads, table_rows),
        imagenet_says=says[SPLIT],
        imagenet_gated_says=says[GATED],
        imagenet_sets=per_set,
    )


def values(rst_table) -> dict:
    """The section's template values (``page/claim.rst``)."""
    files = sorted(
        {
            f"``{n}.json``"
            for _, groups in MODELS.values()
            for g in groups
            for n in g[1:]
        }
    )
    with_both = [
        _short(m) for m in MODELS if m != LITE1 and BOTH_SIGNS in model_run(m).scores
    ]
    return dict(
        claim_files=", ".join(files),
        both_signs=f" (and ``layercam+both-signs`` on {', '.join(with_both)})"
        if with_both
        else "",
        tables=section(rst_table),
        summary=summary(),
        fine_check=fine_check(),
        gated_table=gated_table(rst_table),
        gated_says=gated_says(),
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
    """The README's table (stage x model: the split reading's Δ to LayerCAM)
    and summary, in markdown."""
    runs = {model: model_run(model) for model in MODELS}
    heads = ["stage"] + [
        f"{_short(model)} ({len(run.images)} photos, step {run.settings['step']})"
        for model, run in runs.items()
    ]
    table_rows = [
        [f"`{s}`"] + [layer_cell(run, SPLIT, PLAIN, s) for run in runs.values()]
        for s in STAGES
    ]
    imagenet = {k: v.replace("``", "`") for k, v in imagenet_values(md_table).items()}
    return dict(
        table=md_table(heads, table_rows),
        summary=summary().replace("``", "`"),
        fine_check=fine_check().replace("``", "`"),
        gated_says=gated_says().replace("``", "`"),
        **imagenet,
    )
