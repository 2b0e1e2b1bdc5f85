"""Moved to :mod:`captum_shallowcam.experiments`; this name keeps old imports working.

``from captum_shallowcam.evaluation import evaluate`` still works; new code
imports from :mod:`captum_shallowcam.experiments` (or its modules).
"""

from captum_shallowcam.experiments.reports import markdown_table, overall_plot
from captum_shallowcam.experiments.results import EvaluationResult, merge_results
from captum_shallowcam.experiments.scoring import (
    evaluate,
    image_batches,
    load_batch,
    score_batch,
)
from captum_shallowcam.experiments.statistics import paired_difference, summary_rows
from captum_shallowcam.methods import Explainer, make_explainer

__all__ = [
    "EvaluationResult",
    "Explainer",
    "evaluate",
    "image_batches",
    "load_batch",
    "make_explainer",
    "markdown_table",
    "merge_results",
    "overall_plot",
    "paired_difference",
    "score_batch",
    "summary_rows",
]
