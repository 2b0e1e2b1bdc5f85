"""The benchmark's table (Markdown) and plot (matplotlib)."""

import math

import numpy as np

from captum_shallowcam.experiments.results import EvaluationResult


def markdown_table(rows: list[dict[str, object]], baseline: str = "layercam") -> str:
    """The summary as a markdown table."""
    lines = [
        f"| layer | method | n | deletion AUC ↓ | insertion AUC ↑ | overall ↑ | "
        f"Δ overall vs {baseline} [95% CI] |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        diff = (
            f"{r['diff']:+.2f} [{r['diff_low']:+.2f}, {r['diff_high']:+.2f}]"
            if "diff" in r
            else "—"
        )
        lines.append(
            f"| {r['layer']} | {r['method']} | {r['n']} | {r['deletion']:.4f} | "
            f"{r['insertion']:.4f} | {r['overall']:.2f} | {diff} |"
        )
    return "\n".join(lines)


def overall_plot(result: EvaluationResult, title: str = ""):  # noqa: ANN201
    """Mean overall score per layer and method (error bars: standard error)."""
    import textwrap

    from matplotlib.figure import Figure

    layers = list(result.settings["layers"])  # type: ignore[arg-type]
    # Constrained layout keeps the wrapped title and the legend outside the
    # axes inside the figure.
    fig = Figure(figsize=(min(0.9 * len(layers) + 6.5, 13), 5), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(layers))
    for k, (method, per_layer) in enumerate(result.scores.items()):
        values = [np.asarray(per_layer[layer]["overall"]) for layer in layers]
        means = [v.mean() for v in values]
        errors = [
            v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else 0 for v in values
        ]
        offset = (k - (len(result.scores) - 1) / 2) * 0.06
        ax.errorbar(x + offset, means, yerr=errors, marker="o", capsize=3, label=method)
    ax.set_xticks(x, layers)
    ax.set_xlabel("layer")
    ax.set_ylabel(
        "overall = 100 (insertion AUC − deletion AUC)\nmean ± standard error; higher is better"
    )
    width_chars = int(fig.get_figwidth() * 72 / (0.6 * 10)) - 4
    ax.set_title(textwrap.fill(title, width=width_chars), fontsize=10)
    ax.grid(alpha=0.3)
    # Outside the axes: with several methods a legend inside hides points.
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
