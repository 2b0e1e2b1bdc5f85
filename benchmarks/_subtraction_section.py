"""The results page's paragraph on LayerCAM's subtraction inside the default:
three diagnostic maps of ``benchmarks/masks_screen.py`` (``DIAGNOSTICS``) on
EfficientNet-Lite1 at the issue's step 1792, against LayerCAM and the default
on the same photos.

Read by ``benchmarks/results_page.py``. Runs (``benchmarks/results/``), each
model's own inputs, the labelled class, 100 photos per set: ``RUNS_A`` on
``imagenet-samples``, ``RUNS_B`` on ``imagenet-samples-b``, each joined by photo
with the claim section's run of the same stage and set (LayerCAM and the
default, ``_claim_section.FINE``).
"""

from functools import cache

from _claim_section import (
    DEFAULT,
    LITE1,
    PLAIN,
    STAGES,
    _fine_run,
    _renamed,
    _same_photos,
)
from _sign_aware_section import delta, load, shown

from captum_shallowcam.experiments import EvaluationResult, merge_results

#: The diagnostic maps, as the page names them.
LABELS = {
    "diagnostic:subtraction": "LayerCAM's subtraction kept",
    "diagnostic:signed": "every counter-evidence subtracted",
    "diagnostic:quadrant-mass": "the subtracted part with its own relevance",
}
#: Per photo set, the runs in the order made (each file's settings give its
#: layers, methods and command).
RUNS_A = (
    "subtraction_lite1_stage7_a_1792",
    "subtraction_lite1_stage2_a_1792",
    "subtraction_lite1_stage1-6_a_1792",
    "quadrant_mass_lite1_stage6-7_a_1792",
    "subtraction_lite1_stage3-5_a_1792",
    "quadrant_mass_lite1_stage1-2_a_1792",
    "quadrant_mass_lite1_stage3-4_a_1792",
)
RUNS_B = (
    "subtraction_lite1_stage7_b_1792",
    "quadrant_mass_lite1_stage7_b_1792",
    "subtraction_lite1_stage1-2_b_1792",
    "subtraction_lite1_stage3-6_b_1792",
    "quadrant_mass_lite1_stage1-2_b_1792",
    "quadrant_mass_lite1_stage3-4_b_1792",
)
SETS = {"a": RUNS_A, "b": RUNS_B}


@cache
def _runs(photo_set: str, stage: str) -> EvaluationResult | None:
    """LayerCAM, the default and the diagnostics run at ``stage`` on one
    photo set, joined by photo (None where no diagnostic was run there)."""
    runs = [load(name) for name in SETS[photo_set]]
    found = [_renamed(r, [stage]) for r in runs if stage in r.settings["layers"]]
    if not found:
        return None
    sets, _ = _fine_run(LITE1, stage)
    claim_run = sets["ab".index(photo_set)]
    for run in found:
        _same_photos(run, claim_run, (photo_set, stage))
    return merge_results([claim_run, *found])


def _cells() -> list[tuple[str, str, str, EvaluationResult]]:
    """(method, stage, photos, run) for each diagnostic run at a stage: each
    photo set, and both together where both were run."""
    cells = []
    for stage in STAGES:
        per_set = {s: _runs(s, stage) for s in SETS}
        for method in LABELS:
            have = [s for s, run in per_set.items() if run and method in run.scores]
            for s in have:
                cells.append((method, stage, s, per_set[s]))
            if len(have) == 2:
                both = merge_results([_only(per_set[s], method) for s in have])
                cells.append((method, stage, "a+b", both))
    return cells


def _only(run: EvaluationResult, method: str) -> EvaluationResult:
    """``run`` with LayerCAM, the default and ``method`` only."""
    scores = {m: run.scores[m] for m in (PLAIN, DEFAULT, method)}
    return EvaluationResult(run.settings, run.images, run.targets, scores)


@cache
def _table_rows() -> tuple[list[list[str]], dict]:
    rows, verdicts = [], {}
    for method, stage, photos, run in _cells():
        (layer,) = run.settings["layers"]
        to_plain = delta(run, method, PLAIN, layer)
        to_default = delta(run, method, DEFAULT, layer)
        rows.append([LABELS[method], f"``{stage}``", f"{photos} ({len(run.images)})",
                     shown(to_plain), shown(to_default)])  # fmt: skip
        verdicts[method, stage, photos] = (to_plain, to_default)
    return rows, verdicts


def _where(method: str, against: int, holds) -> str:
    """The stages and photo sets where ``holds`` is true of ``method``'s
    difference to LayerCAM (``against`` 0) or the default (1)."""
    found = [
        f"``{stage}`` ({photos})"
        for (m, stage, photos), pair in _widest().items()
        if m == method and holds(pair[against])
    ]
    return ", ".join(found) or "nowhere"


def _above(difference) -> bool:
    return difference[2] > 0


def _below(difference) -> bool:
    return difference[3] < 0


def _widest() -> dict:
    """The verdicts of each map and stage on the most photos run there: both
    sets together where both were run, else the one set."""
    _, verdicts = _table_rows()
    return {
        key: pair
        for key, pair in verdicts.items()
        if key[2] == "a+b" or (key[0], key[1], "a+b") not in verdicts
    }


def _rule() -> str:
    """The screen rule for the quadrant-mass map (written before its set-b
    run): which of its three conditions hold so far."""
    _, verdicts = _table_rows()
    method = "diagnostic:quadrant-mass"
    conditions = {
        "(1) not behind the default at ``stage6`` and ``stage7`` of "
        "``imagenet-samples``": [(method, s, "a") for s in ("stage6", "stage7")],
        "(2) not behind the default at ``stage7`` of ``imagenet-samples-b``": [
            (method, "stage7", "b")
        ],
    }
    said = []
    for text, keys in conditions.items():
        if not all(k in verdicts for k in keys):
            said.append(f"{text}: not run yet")
            continue
        behind = [k[1] for k in keys if _below(verdicts[k][1])]
        said.append(f"{text}: {'not met' if behind else 'met'}")
    key = (method, "stage7", "a+b")
    if key in verdicts:
        above = _above(verdicts[key][0])
        said.append(
            "(3) ahead of LayerCAM at ``stage7`` on the 200 photos (interval above "
            f"0): {'met' if above else 'not met'} ({shown(verdicts[key][0])})"
        )
    else:
        said.append(
            "(3) ahead of LayerCAM at ``stage7`` on the 200 photos: not run yet"
        )
    return "; ".join(said)


def values(rst_table) -> dict:
    rows, verdicts = _table_rows()
    out = {
        "subtraction_table": rst_table(
            ["map", "stage", "photos (n)", "Δ vs LayerCAM", "Δ vs default"], rows
        )
    }
    for key, method in (("sub", "diagnostic:subtraction"),
                        ("signed", "diagnostic:signed"),
                        ("qm", "diagnostic:quadrant-mass")):  # fmt: skip
        out[f"{key}_above_default"] = _where(method, 1, _above)
        out[f"{key}_below_default"] = _where(method, 1, _below)
    out["sub_above_layercam"] = _where("diagnostic:subtraction", 0, _above)
    out["sub_not_above_layercam"] = _where(
        "diagnostic:subtraction", 0, lambda d: not _above(d)
    )
    out["qm_rule"] = _rule()
    out["stage7_vs_default"] = "; ".join(
        f"{LABELS[m]} {shown(pair[1])}"
        for (m, stage, photos), pair in verdicts.items()
        if stage == "stage7" and photos == "a+b"
    )
    return out
