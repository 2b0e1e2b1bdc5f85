"""The results page's section on the CAM family the paper compares with.

Read by ``benchmarks/results_page.py``. Runs (``benchmarks/results/``), all
EfficientNet-Lite0, its own inputs ([-1, 1]), the labelled class:

* step 1792, ``stage1`` to ``stage3``: ``family_lite0_b_1792.json`` and
  ``family_lite0_a_1792.json`` (LayerCAM and the eight other registered
  methods besides the default, ``python -m captum_shallowcam benchmark`` in
  runs of 10 photos, merged), each joined by photo with the runs of the
  claim section: ``scale_*_1792.json`` (the geometric default),
  ``candidate_lite0_*_1792.json`` (the split reading, the default when the
  family ran) and ``gated_lite0_*_1792.json`` (the split-gated default);
* step 7168, ``stage4`` to ``stage7``: ``family_lite0_b_7168_stages4-7.json``
  and ``family_lite0_a_1-100_7168_stages4-7.json`` (the nine and the
  geometric default, in runs of 10 photos, merged; set A's first 16 photos
  are the first look's), each joined by photo with the split reading's run,
  ``family_split_lite0_*_7168_stages4-7.json``, and the default's,
  ``family_gated_lite0_*_7168_stages4-7.json``;
* step 7168, the first look: ``family_lite0_a_1-96_7168.json`` (96 photos,
  ``stage1`` to ``stage3``) and ``family_lite0_a_7168_stages4-7.json`` (the
  first 16 of them, ``stage4`` to ``stage7``), joined with the split
  reading's runs on the same photos, ``family_split_lite0_a_*.json``.

Every join checks that the runs give LayerCAM the same scores
(``_claim_section.joined``).
"""

from functools import cache

import numpy as np
from _claim_section import AGREEMENT, DEFAULT, SPLIT, joined, set_name
from _sign_aware_section import RUNS, delta, layer_cell, load

from captum_shallowcam.experiments import merge_results

#: The geometric default the split reading (``SPLIT``, the default when the
#: family ran and the reading of the first look) replaced; ``DEFAULT`` replaced
#: the split reading.
GEOMETRIC = "shallowcam+sign-aware+geometric"
FAMILY = "family_lite0_a_1-96_7168"
#: The same methods at ``stage4`` to ``stage7`` on the first 16 of those photos.
FAMILY_DEEP = "family_lite0_a_7168_stages4-7"
#: The split reading on the same photos and stages, with LayerCAM
#: again to check the pairing (``benchmarks/masks_screen.py``).
FAMILY_SPLIT = {
    FAMILY: "family_split_lite0_a_1-96_7168",
    FAMILY_DEEP: "family_split_lite0_a_7168_stages4-7",
}
#: Step 1792, per photo set (the held-out set first): the family run, then the
#: runs it is joined with (the geometric default, the split reading, the
#: default). A set whose family run is not stored is left out. In both tables'
#: groups the split reading's run is the last but one and the default's last.
FAMILY_1792 = [
    ("family_lite0_b_1792", "scale_b_1792", "candidate_lite0_b_1792",
     "gated_lite0_b_1792"),
    ("family_lite0_a_1792", "scale_a_1792", "candidate_lite0_a_1792",
     "gated_lite0_a_1792"),
]  # fmt: skip
LAYERS_1792 = ["stage1", "stage2", "stage3"]
#: Step 7168, ``stage4`` to ``stage7``, per photo set (the held-out set
#: first): the family run (the nine and the geometric default), then the split
#: reading's run (``benchmarks/masks_screen.py``, with LayerCAM again) and the
#: default's (the same script, run later).
FAMILY_DEEP_200 = [
    ("family_lite0_b_7168_stages4-7", "family_split_lite0_b_7168_stages4-7",
     "family_gated_lite0_b_7168_stages4-7"),
    ("family_lite0_a_1-100_7168_stages4-7", "family_split_lite0_a_1-100_7168_stages4-7",
     "family_gated_lite0_a_1-100_7168_stages4-7"),
]  # fmt: skip
LAYERS_DEEP = ["stage4", "stage5", "stage6", "stage7"]


@cache
def family_run(name: str):
    """The family run ``name`` joined with the split reading's run on its photos."""
    layers = list(load(name).settings["layers"])
    return joined((name, FAMILY_SPLIT[name]), layers)


def _family_only(result, methods):
    """``result`` with ``methods`` only (the joined runs add LayerCAM variants
    that are not in the family)."""
    result.scores = {m: s for m, s in result.scores.items() if m in methods}
    return result


#: The two tables on all photos, by the prefix of their template values:
#: (the groups, their layers).
TABLES = {"fine": (FAMILY_1792, LAYERS_1792), "deep": (FAMILY_DEEP_200, LAYERS_DEEP)}
#: The names of the tables on all photos (keys of ``TABLES``).
FINE, DEEP = "fine", "deep"


def _stored(table: str) -> list[tuple[str, ...]]:
    """The groups of ``table`` whose family run is stored (a photo set not run
    yet is left out)."""
    return [g for g in TABLES[table][0] if (RUNS / f"{g[0]}.json").exists()]


@cache
def sets_of(table: str) -> tuple:
    """Per stored photo set of ``table`` (a key of ``TABLES``): its family run
    joined with the default and the geometric default, family methods only."""
    layers = TABLES[table][1]
    runs = []
    for group in _stored(table):
        methods = {*load(group[0]).scores, DEFAULT, SPLIT, GEOMETRIC}
        runs.append(_family_only(joined(group, layers, on_first=True), methods))
    return tuple(runs)


@cache
def run_of(table: str):
    """Every stored photo set of ``table``, joined."""
    runs = sets_of(table)
    return merge_results(list(runs)) if len(runs) > 1 else runs[0]


def ranked(result, layer: str) -> tuple[dict[str, float], list[str]]:
    """Each method's mean overall score at ``layer``, and the methods best first."""
    means = {m: float(np.mean(s[layer]["overall"])) for m, s in result.scores.items()}
    return means, sorted(means, key=lambda m: -means[m])


def family_rows(result, default: str = DEFAULT, step: bool = False) -> list[list[str]]:
    """Per layer and method: the mean overall score, its rank at that layer, and
    the ``default``'s paired Δ to it; ``step``: the run's step after the layer."""
    rows = []
    for layer in result.settings["layers"]:
        means, order = ranked(result, layer)
        head = [layer] + ([str(result.settings["step"])] if step else [])
        for method in order:
            delta_cell = (
                "—" if method == default else layer_cell(result, default, method, layer)
            )
            rank = str(order.index(method) + 1)
            rows.append(head + [method, f"{means[method]:.1f}", rank, delta_cell])
    return rows


def family_says(result, default: str = DEFAULT) -> str:
    """Where ``default`` ranks at each layer, and whom it is ahead of / behind."""
    parts = []
    for layer in result.settings["layers"]:
        _, order = ranked(result, layer)
        ahead, level, behind = [], [], []
        for method in order:
            if method == default:
                continue
            _, _, low, high = delta(result, default, method, layer)
            (ahead if low > 0 else behind if high < 0 else level).append(method)
        parts.append(
            f"at ``{layer}`` ``{default}`` ranks {order.index(default) + 1} of "
            f"{len(order)}"
            + (f" (first: {order[0]})" if order[0] != default else "")
            + ", ahead (interval above 0) of "
            f"{len(ahead)} and behind {len(behind)}"
            + (f" ({', '.join(behind)})" if behind else "")
            + (f", level with {', '.join(level)}" if level else "")
        )
    return "; ".join(parts)


@cache
def says(name: str) -> str:
    """``family_says`` of the run ``name`` (``FAMILY``, ``FAMILY_DEEP``, or a
    table, ``FINE`` or ``DEEP``), computed once for the page and the README."""
    if name in TABLES:
        return family_says(run_of(name))
    return family_says(family_run(name), SPLIT)


def photos(table: str) -> str:
    """ "the 100 photos of ``imagenet-samples-b`` and the first 40 of
    ``imagenet-samples``"."""
    parts = []
    for run in sets_of(table):
        n, name = len(run.images), set_name(run)
        parts.append(
            f"the {n} photos of ``{name}``" if n == 100 else f"{n} photos of ``{name}``"
        )
    return " and ".join(parts)


def _table_values(table: str) -> dict:
    """The template values of one table on all photos, prefixed with its name
    (``fine_`` or ``deep_``)."""
    sets = sets_of(table)
    stored = _stored(table)
    agreement = [AGREEMENT[g] for g in stored]
    values = dict(
        photos=photos(table),
        step=run_of(table).settings["step"],
        methods=",".join(load(stored[0][0]).scores),
        runs=", ".join(f"``{g[0]}.json``" for g in stored),
        split_runs=", ".join(f"``{g[-2]}.json``" for g in stored),
        default_runs=", ".join(f"``{g[-1]}.json``" for g in stored),
        agreement=f"{max(v[0] for v in agreement):.2f}",
        says=says(table),
        per_set="".join(
            f" On the {len(run.images)} of ``{set_name(run)}`` alone: "
            f"{family_says(run)}."
            for run in (sets if len(sets) > 1 else ())
        ),
    )
    return {f"{table}_{k}": v for k, v in values.items()}


def values(rst_table, as_run) -> dict:
    """The template values of ``page/family.rst``."""
    family, deep = family_run(FAMILY), family_run(FAMILY_DEEP)
    n_deep = len(deep.images)
    if (family.images[:n_deep], family.targets[:n_deep]) != (deep.images, deep.targets):
        raise ValueError(f"{FAMILY_DEEP} must hold the first photos of {FAMILY}")
    heads = ["layer", "method", "overall", "rank", "Δ default vs method"]
    whole = family_rows(run_of(FINE), step=True) + family_rows(run_of(DEEP), step=True)
    return dict(
        **_table_values(FINE),
        **_table_values(DEEP),
        whole_table=rst_table(heads[:1] + ["step"] + heads[1:], whole),
        n_family=len(family.images),
        n_family_deep=n_deep,
        family_step=family.settings["step"],
        family_methods=as_run(load(FAMILY).scores),
        family_run=FAMILY,
        family_deep_run=FAMILY_DEEP,
        family_split_run=FAMILY_SPLIT[FAMILY],
        family_deep_split_run=FAMILY_SPLIT[FAMILY_DEEP],
        family_agreement=f"{max(AGREEMENT[(n, FAMILY_SPLIT[n])][0] for n in FAMILY_SPLIT):.2f}",
        family_says=says(FAMILY),
        family_deep_says=says(FAMILY_DEEP),
        family_table=rst_table(
            heads[:-1] + ["Δ split vs method"],
            family_rows(family, SPLIT) + family_rows(deep, SPLIT),
        ),
    )


def readme_line() -> str:
    """The README's paragraph on the family (markdown)."""
    return (
        f"**The CAM family** (EfficientNet-Lite0, all ten registered methods, the "
        f"default, and the split and geometric readings it replaced): at step {run_of(FINE).settings['step']} on "
        f"{photos(FINE)}, stage1 to "
        f"stage3: {says(FINE)}. At stage4 to stage7, step "
        f"{run_of(DEEP).settings['step']}, on {photos(DEEP)}: {says(DEEP)}."
    ).replace("``", "`")
