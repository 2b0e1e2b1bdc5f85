"""The results page's section on the geometric default (the sign-aware mask
with geometric weights, the default before the split mask), from its runs.

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

from _page import render
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
    "mass_sqrt_alphaP_pos": '√(ReLU(α⁺) / T) (**chosen then**, ``"geometric"``)',
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
        f"On {where} the geometric default is ahead of LayerCAM (interval above 0) at "
        f"{len(ahead)} of {len(layers)} stages ({listed(ahead)}{level}), with mean Δ "
        f"{', '.join(f'{d:+.2f}' for d in shallow)} at ``stage1`` to ``stage3`` (the "
        f"paper's best gain is +2.73). Against the sign-aware LayerCAM it is ahead at "
        f"{len(ahead_sa)} ({listed(ahead_sa)}) and behind at {len(behind_sa)} "
        f"({listed(behind_sa)})."
    )


HEADS = ["layer", "LayerCAM overall", "Δ sign-aware LayerCAM vs LayerCAM",
         "Δ geometric default vs LayerCAM",
         "Δ geometric default vs sign-aware LayerCAM"]  # fmt: skip
LABELS = {PLAIN: "LayerCAM", SIGN_AWARE: "sign-aware LayerCAM",
          DEFAULT: "LayerShallowCam (geometric default)"}  # fmt: skip
FUSION_HEADS = ["method", "fusion", "overall", "best single layer",
                "Δ fused vs best layer", "Δ fused vs fused LayerCAM"]  # fmt: skip
METHODS = [PLAIN, SIGN_AWARE, DEFAULT]
#: The main run's photo sets, in the order the page shows them, with their role.
ROLES = {"b": "the confirming set", "a": "the choosing set"}


def _main_run_values(runs, table) -> dict:
    """The main run (both photo sets merged) and its parts, one per set."""
    both = merge_results([runs["b"], runs["a"]])
    layers = [lay for lay in both.settings["layers"] if not lay.startswith("fused")]
    protocol = both.settings["protocol"]
    step = both.settings["step"]
    per_set = "".join(
        render("geometric_set.rst", dict(
            name=PHOTO_SETS[key], role=role, n=len(runs[key].images), key=key,
            table=table(HEADS, layer_rows(runs[key], layers, DEFAULT, PLAIN, SIGN_AWARE)),
            fusion_table=table(FUSION_HEADS, fusion_rows(runs[key], METHODS, LABELS)),
            says=_says(runs[key], layers, len(runs[key].images)),
        ))
        for key, role in ROLES.items()
    )  # fmt: skip
    return dict(
        protocol=protocol[0].upper() + protocol[1:],
        all="all " if len(both.images) == 200 else "",
        n_both=len(both.images),
        n_b=len(runs["b"].images),
        n_a=len(runs["a"].images),
        step=step,
        steps=224 * 224 // step,
        table=table(HEADS, layer_rows(both, layers, DEFAULT, PLAIN, SIGN_AWARE)),
        fusion_table=table(FUSION_HEADS, fusion_rows(both, METHODS, LABELS)),
        says=_says(both, layers, len(both.images)),
        per_set=per_set,
    )


def _screens_values(rst_table) -> dict:
    """The choice screen, its shallow-stage readings and the confirmation."""
    choice = load("readings_geometric_lite0_a_7168")
    shallow = load("readings_geometric_lite0_a_7168_stages1-3")
    confirm = load("readings_geometric_lite0_b_3584")
    stages = list(choice.settings["layers"])
    shallow_stages = list(shallow.scores[SCREEN_SIGN_AWARE])
    confirm_rows = _screen_rows(
        confirm, {"mass_sqrt_alphaP_pos": READINGS["mass_sqrt_alphaP_pos"],
                  "sqrt_density_alphaP_pos": READINGS["sqrt_density_alphaP_pos"]}, stages
    )  # fmt: skip
    return dict(
        n_choice=len(choice.images),
        choice_step=choice.settings["step"],
        choice_table=rst_table(["channel weights"] + stages, _screen_rows(choice, READINGS, stages)),
        shallow_table=rst_table(["reading"] + shallow_stages,
                                _screen_rows(shallow, SHALLOW_READINGS, shallow_stages)),
        n_confirm=len(confirm.images),
        confirm_step=confirm.settings["step"],
        confirm_table=rst_table(["channel weights"] + stages, confirm_rows),
    )  # fmt: skip


def _lite2_values(table) -> dict:
    """EfficientNet-Lite2: both photo sets merged, and each apart."""
    lite2_runs = {key: load(f"lite2_geometric_{key}_3584") for key in PHOTO_SETS}
    lite2 = merge_results(list(lite2_runs.values()))
    layers = list(lite2.settings["layers"])
    return dict(
        lite2_photos=" and ".join(
            f"{len(r.images)} of ``{PHOTO_SETS[key]}``" for key, r in lite2_runs.items()
        ),
        n_lite2=len(lite2.images),
        lite2_step=lite2.settings["step"],
        lite2_files=", ".join(
            f"``benchmarks/results/lite2_geometric_{key}_3584.json``" for key in lite2_runs
        ),
        lite2_table=table(HEADS, layer_rows(lite2, layers, DEFAULT, PLAIN, SIGN_AWARE)),
        lite2_says=_says(lite2, layers, len(lite2.images)),
        lite2_says_sets="".join(
            "\n\n" + _says(r, list(r.settings["layers"]), len(r.images), PHOTO_SETS[key])
            for key, r in lite2_runs.items()
        ),
    )  # fmt: skip


def _markdown(values: dict) -> dict:
    """The same values with markdown's inline code (single backticks)."""
    return {
        k: v.replace("``", "`") if isinstance(v, str) else v for k, v in values.items()
    }


def section(rst_table, md_table):
    """(rst section, README markdown) of the geometric default's results."""
    runs = {"b": load("scale_b_1792"), "a": load("scale_a_1792")}
    nonnegative = load("nonnegative_geometric_b_3584")
    nn_heads, nn_rows, nn_says = nonnegative_table(nonnegative)
    rst = render(
        "geometric.rst",
        dict(
            n_nonnegative=len(nonnegative.images),
            nonnegative_step=nonnegative.settings["step"],
            nonnegative_table=rst_table(nn_heads, nn_rows),
            nonnegative_says=nn_says,
            **_main_run_values(runs, rst_table),
            **_screens_values(rst_table),
            **_lite2_values(rst_table),
        ),
    )
    md = render(
        "geometric.md",
        _markdown({**_main_run_values(runs, md_table), **_lite2_values(md_table)}),
    )
    return rst, md
