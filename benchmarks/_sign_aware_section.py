"""The results page's section on the sign-aware mask with √ weights (an earlier default).

Read by ``benchmarks/results_page.py``. Runs:

* ``readings_sqrt_lite0_a_7168.json``: the readings screen on ``imagenet-samples`` (the
  choice), ``benchmarks/readings_screen.py``;
* ``fusion_b_3584.json``: LayerCam, the sign-aware LayerCam and the default on
  ``imagenet-samples-b`` (the confirmation), per layer and fused,
  ``benchmarks/fusion_benchmark.py``;
* ``lite2_b_3584.json``: the same three methods on EfficientNet-Lite2,
  ``python -m captum_shallowcam benchmark --model efficientnet-lite2``.
"""

import json
from pathlib import Path

import numpy as np
from _page import render

from captum_shallowcam.experiments import EvaluationResult, paired_difference

RUNS = Path(__file__).resolve().parent / "results"
PLAIN = "layercam"
SIGN_AWARE = "layercam+sign-aware"
DEFAULT_02 = "shallowcam-v1+clrp+sqrt+sign-aware"
READINGS = {
    "layercam_pos": "sign-aware LayerCAM, Σ S⁺",
    "default_pos": "Σ ReLU(α) S⁺ (α over all positions)",
    "alphaP_pos": "Σ ReLU(α⁺) S⁺ (``channel_weights='positive'``)",
    "sqrt_alphaP_pos": "Σ √ReLU(α⁺) S⁺ (**chosen then**)",
    "lc_x_fg": "sign-aware LayerCAM × relevance pushed from stage7 (FG-CAM)",
    "lc_x_adj": "sign-aware LayerCAM × relevance from the next stage",
}
SCREEN_PLAIN, SCREEN_SIGN_AWARE = "layercam", "layercam_pos"


def load(name: str) -> EvaluationResult:
    return EvaluationResult.from_dict(json.loads((RUNS / f"{name}.json").read_text()))


def listed(layers) -> str:
    """Layer names as inline literals, comma-separated ("none" for none)."""
    return ", ".join(f"``{lay}``" for lay in layers) or "none"


def cell(values, baseline) -> str:
    return shown(paired_difference(values, baseline))


def shown(difference) -> str:
    """A ``paired_difference`` result as "+1.23 [+0.4, +2.0]"."""
    diff, _, low, high = difference
    return f"{diff:+.2f} [{low:+.1f}, {high:+.1f}]"


def delta(result, method, baseline, layer):
    return paired_difference(
        result.scores[method][layer]["overall"],
        result.scores[baseline][layer]["overall"],
    )


def layer_cell(result, method, baseline, layer) -> str:
    """``cell`` of ``method`` against ``baseline`` at ``layer``."""
    return cell(
        result.scores[method][layer]["overall"],
        result.scores[baseline][layer]["overall"],
    )


def ahead(result, method, baseline) -> tuple[list[str], list[str]]:
    """The layers where ``method`` is ahead of / behind ``baseline`` (interval
    above / below 0)."""
    up, down = [], []
    for layer in result.settings["layers"]:
        _, _, low, high = delta(result, method, baseline, layer)
        if low > 0:
            up.append(layer)
        elif high < 0:
            down.append(layer)
    return up, down


def layer_rows(result, layers, method, plain, sign_aware):
    """Per layer: LayerCam's overall, Δ sign-aware vs plain, Δ method vs both."""
    rows = []
    for layer in layers:
        s = {m: result.scores[m][layer]["overall"] for m in (method, plain, sign_aware)}
        rows.append([layer, f"{np.mean(s[plain]):.1f}", cell(s[sign_aware], s[plain]),
                     cell(s[method], s[plain]), cell(s[method], s[sign_aware])])  # fmt: skip
    return rows


def targets(result, layers, method, plain, sign_aware):
    """The issue's targets, counted: (ahead of plain, CI > 0), mean Δ at stages 1-3,
    (ahead of sign-aware), (behind sign-aware)."""
    ahead_plain = [lay for lay in layers if delta(result, method, plain, lay)[2] > 0]
    ahead_sa = [lay for lay in layers if delta(result, method, sign_aware, lay)[2] > 0]
    behind_sa = [lay for lay in layers if delta(result, method, sign_aware, lay)[3] < 0]
    shallow = [delta(result, method, plain, lay)[0] for lay in layers[:3]]
    return ahead_plain, shallow, ahead_sa, behind_sa


def fusion_rows(result, methods, labels):
    layers = [lay for lay in result.settings["layers"] if not lay.startswith("fused")]
    fused = [lay for lay in result.settings["layers"] if lay.startswith("fused")]
    rows = []
    for method in methods:
        means = {lay: np.mean(result.scores[method][lay]["overall"]) for lay in layers}
        best = max(means, key=means.get)
        for f in fused:
            values = result.scores[method][f]["overall"]
            row = [labels[method], f.replace("fused-", ""), f"{np.mean(values):.1f}",
                   f"{best} ({means[best]:.1f})", cell(values, result.scores[method][best]["overall"])]  # fmt: skip
            if method != PLAIN:
                row.append(cell(values, result.scores[PLAIN][f]["overall"]))
            else:
                row.append("—")
            rows.append(row)
    return rows


def nonnegative_table(result):
    """(heads, rows, sentence) of a ``benchmarks/nonnegative_layers.py`` run:
    the default at run time (``shallowcam``, or its stored name since, the
    first method after LayerCAM) and the 0.1 default against LayerCAM."""
    layers = result.settings["layers"]
    method = [m for m in result.scores if m != PLAIN][0]
    rows = []
    for lay in layers:
        base = result.scores[PLAIN][lay]["overall"]
        rows.append([lay, f"{np.mean(base):.1f}",
                     cell(result.scores[method][lay]["overall"], base),
                     cell(result.scores["shallowcam-v1+clrp+positive"][lay]["overall"], base)])  # fmt: skip
    heads = ["layer (ReLU6 output)", "LayerCAM overall", "Δ default",
             "Δ 0.1 default (linear weights)"]  # fmt: skip
    default = {lay: delta(result, method, PLAIN, lay) for lay in layers}
    ahead = [lay for lay, d in default.items() if d[2] > 0]
    behind = [lay for lay, d in default.items() if d[3] < 0]
    if ahead or behind:
        verdict = (
            f"ahead of LayerCAM at {listed(ahead)}, behind at "
            f"{listed(behind)}, level elsewhere"
        )
    else:
        verdict = "level with LayerCAM at every layer (every interval contains 0)"
    says = f"Here the relevance weights alone decide. The default is {verdict}."
    return heads, rows, says


def target_values(prefix, result, layers, method, plain, sign_aware) -> dict:
    """The counts of :func:`targets` as template values named ``<prefix>_...``."""
    ahead, shallow, ahead_sa, behind_sa = targets(
        result, layers, method, plain, sign_aware
    )
    return {
        f"{prefix}_n_ahead": len(ahead),
        f"{prefix}_ahead": listed(ahead),
        f"{prefix}_shallow": ", ".join(f"{d:+.2f}" for d in shallow),
        f"{prefix}_n_ahead_sa": len(ahead_sa),
        f"{prefix}_ahead_sa": listed(ahead_sa),
        f"{prefix}_n_behind_sa": len(behind_sa),
        f"{prefix}_behind_sa": listed(behind_sa),
    }


HEADS_LAYERS = ["layer", "LayerCAM overall", "Δ sign-aware LayerCAM vs LayerCAM",
                "Δ default vs LayerCAM", "Δ default vs sign-aware LayerCAM"]  # fmt: skip
HEADS_FUSION = ["method", "fusion", "overall", "best single layer", "Δ fused vs best layer",
                "Δ fused vs fused LayerCAM"]  # fmt: skip
LABELS = {
    PLAIN: "LayerCAM",
    SIGN_AWARE: "sign-aware LayerCAM",
    DEFAULT_02: "LayerShallowCam (default)",
}


def _screen_values(screen, rst_table) -> dict:
    """The choice screen's step and its two tables of readings."""
    stages = list(screen.settings["layers"])

    def readings_rows(baseline):
        rows = []
        for key, label in READINGS.items():
            if key == baseline:
                continue
            rows.append([label] + [cell(screen.scores[key][lay]["overall"],
                                        screen.scores[baseline][lay]["overall"]) for lay in stages])  # fmt: skip
        return rows

    return dict(
        n_a=len(screen.images),
        screen_step=screen.settings["step"],
        screen_steps=224 * 224 // screen.settings["step"],
        readings_vs_layercam=rst_table(["reading"] + stages, readings_rows(SCREEN_PLAIN)),
        readings_vs_sign_aware=rst_table(["reading"] + stages, readings_rows(SCREEN_SIGN_AWARE)),
        **target_values("a", screen, stages, "sqrt_alphaP_pos", SCREEN_PLAIN, SCREEN_SIGN_AWARE),
    )  # fmt: skip


def _run_values(prefix, result, layers, rst_table) -> dict:
    """A run of the three methods: its step, its per-layer and fusion tables
    (when it has fused maps), and its counts."""
    values = {
        f"{prefix}_step": result.settings["step"],
        f"{prefix}_table": rst_table(
            HEADS_LAYERS, layer_rows(result, layers, DEFAULT_02, PLAIN, SIGN_AWARE)
        ),
    }
    if any(lay.startswith("fused") for lay in result.settings["layers"]):
        fusion = fusion_rows(result, [PLAIN, SIGN_AWARE, DEFAULT_02], LABELS)
        values[f"{prefix}_fusion_table"] = rst_table(HEADS_FUSION, fusion)
    return values


def section(rst_table):
    """The rst section of the √-weights default's results."""
    screen = load("readings_sqrt_lite0_a_7168")
    confirm = load("fusion_b_3584")
    chosen = load("fusion_a_3584")
    lite2 = load("lite2_b_3584")
    nonnegative = load("nonnegative_b_3584")
    layers_b = [
        lay for lay in confirm.settings["layers"] if not lay.startswith("fused")
    ]
    nn_heads, nn_rows, nn_says = nonnegative_table(nonnegative)
    return render(
        "sign_aware.rst",
        dict(
            protocol=confirm.settings["protocol"],
            n_b=len(confirm.images),
            n_layers_b=len(layers_b),
            n_chosen=len(chosen.images),
            n_lite2=len(lite2.images),
            n_nonnegative=len(nonnegative.images),
            nonnegative_step=nonnegative.settings["step"],
            nonnegative_table=rst_table(nn_heads, nn_rows),
            nonnegative_says=nn_says,
            **_screen_values(screen, rst_table),
            **_run_values("confirm", confirm, layers_b, rst_table),
            **_run_values("chosen", chosen, layers_b, rst_table),
            **_run_values("lite2", lite2, list(lite2.settings["layers"]), rst_table),
            **target_values("b", confirm, layers_b, DEFAULT_02, PLAIN, SIGN_AWARE),
            **target_values("chosen", chosen, layers_b, DEFAULT_02, PLAIN, SIGN_AWARE),
        ),
    )
