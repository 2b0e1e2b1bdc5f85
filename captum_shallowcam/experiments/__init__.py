"""The experiments around the library: what the benchmark runs and reports.

The library (:mod:`captum_shallowcam.attr`, :mod:`captum_shallowcam.metrics`,
:mod:`captum_shallowcam.models`, :mod:`captum_shallowcam.methods`) imports
nothing from here. One module per concern:

=============================  ===================================================
:mod:`.results`                :class:`EvaluationResult` (per-image scores) and
                               :func:`merge_results`
:mod:`.scoring`                :func:`evaluate`, :func:`score_batch`, the batches
                               of photos and their targets
:mod:`.statistics`             :func:`paired_difference` (bootstrap),
                               :func:`summary_rows`
:mod:`.reports`                :func:`markdown_table`, :func:`overall_plot`
:mod:`.images`                 the bundled photos and the labelled-folder readers
:mod:`.sharding`               the resumable run over shards (:func:`run_benchmark`)
:mod:`.ranks`                  ranks and collectives under ``torchrun``
:mod:`.measure`                the benchmark scripts' steady allocator and peak
                               memory
:mod:`.sanity`                 the ``sanity`` command's run over shards
                               (:func:`~.sanity.run_sanity`) and its plot
=============================  ===================================================
"""

from captum_shallowcam.experiments.images import (
    SAMPLE_IMAGES,
    LabelledImage,
    read_image_folder,
    read_imagenet_val,
    sample_images,
)
from captum_shallowcam.experiments.reports import markdown_table, overall_plot
from captum_shallowcam.experiments.results import EvaluationResult, merge_results
from captum_shallowcam.experiments.scoring import (
    evaluate,
    image_batches,
    load_batch,
    score_batch,
)
from captum_shallowcam.experiments.statistics import paired_difference, summary_rows

__all__ = [
    "SAMPLE_IMAGES",
    "EvaluationResult",
    "LabelledImage",
    "evaluate",
    "image_batches",
    "load_batch",
    "markdown_table",
    "merge_results",
    "overall_plot",
    "paired_difference",
    "read_image_folder",
    "read_imagenet_val",
    "sample_images",
    "score_batch",
    "summary_rows",
]
